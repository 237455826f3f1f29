//! Performance statistics from the ledger: closed trades as FIFO round trips of the fills,
//! daily P&L and the equity curve's drawdown and Sharpe ratio.
//!
//! Money stays exact (`Decimal`); ratios (win rate, profit factor, Sharpe, drawdown %) are
//! `f64` because they are statistics, not amounts.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::NaiveDate;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use robo_core::calendar::ny_date;
use robo_core::types::{Money, Price, Qty, Side, Ts};

use crate::store::FillRow;

/// One closed round trip: shares opened by one fill and closed by a later one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub symbol: String,
    /// `Buy` for a long trade, `Sell` for a short one.
    pub side: Side,
    pub qty: Qty,
    pub entry_price: Price,
    pub exit_price: Price,
    pub entry_ts: Ts,
    pub exit_ts: Ts,
    /// Price P&L minus both fills' commissions, each shared pro rata by shares.
    pub pnl: Money,
}

struct Lot {
    side: Side,
    remaining: Qty,
    price: Price,
    ts: Ts,
    /// The opening fill's commission and size, for the pro-rata share.
    fill_commission: Money,
    fill_qty: Qty,
}

fn share(commission: Money, part: Qty, whole: Qty) -> Money {
    if whole <= 0 {
        return Decimal::ZERO;
    }
    commission * Decimal::from(part) / Decimal::from(whole)
}

/// Matches fills first-in first-out per symbol, in the order given (arrival order).
pub fn round_trips(fills: &[FillRow]) -> Vec<Trade> {
    let mut books: HashMap<&str, VecDeque<Lot>> = HashMap::new();
    let mut out = Vec::new();
    for f in fills {
        if f.qty <= 0 {
            continue;
        }
        let book = books.entry(f.symbol.as_str()).or_default();
        let mut left = f.qty;
        while left > 0 {
            let Some(lot) = book.front_mut() else { break };
            if lot.side == f.side {
                break;
            }
            let m = left.min(lot.remaining);
            let per_share = match lot.side {
                Side::Buy => f.price - lot.price,
                Side::Sell => lot.price - f.price,
            };
            let pnl = per_share * Decimal::from(m)
                - share(lot.fill_commission, m, lot.fill_qty)
                - share(f.commission, m, f.qty);
            out.push(Trade {
                symbol: f.symbol.clone(),
                side: lot.side,
                qty: m,
                entry_price: lot.price,
                exit_price: f.price,
                entry_ts: lot.ts,
                exit_ts: f.ts,
                pnl,
            });
            lot.remaining -= m;
            left -= m;
            if lot.remaining == 0 {
                book.pop_front();
            }
        }
        if left > 0 {
            book.push_back(Lot {
                side: f.side,
                remaining: left,
                price: f.price,
                ts: f.ts,
                fill_commission: f.commission,
                fill_qty: f.qty,
            });
        }
    }
    out
}

/// Win rate and profit factor over closed trades.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeStats {
    pub trades: usize,
    pub wins: usize,
    pub losses: usize,
    pub gross_profit: Money,
    /// Positive: the sum of the losing trades' losses.
    pub gross_loss: Money,
    /// `None` without trades.
    pub win_rate: Option<f64>,
    /// `None` without a losing trade (undefined).
    pub profit_factor: Option<f64>,
}

pub fn trade_stats(trades: &[Trade]) -> TradeStats {
    let mut s = TradeStats {
        trades: trades.len(),
        wins: 0,
        losses: 0,
        gross_profit: Decimal::ZERO,
        gross_loss: Decimal::ZERO,
        win_rate: None,
        profit_factor: None,
    };
    for t in trades {
        if t.pnl > Decimal::ZERO {
            s.wins += 1;
            s.gross_profit += t.pnl;
        } else if t.pnl < Decimal::ZERO {
            s.losses += 1;
            s.gross_loss -= t.pnl;
        }
    }
    if s.trades > 0 {
        s.win_rate = Some(s.wins as f64 / s.trades as f64);
    }
    if s.gross_loss > Decimal::ZERO {
        s.profit_factor = (s.gross_profit / s.gross_loss).to_f64();
    }
    s
}

/// One New York day's closing equity and P&L against the previous close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub date: NaiveDate,
    pub close: Money,
    pub pnl: Money,
}

/// Closing equity per NY trading date; the first day's P&L is against `starting` (or the
/// day's first snapshot when the starting cash is unknown).
pub fn daily(curve: &[(Ts, Money)], starting: Option<Money>) -> Vec<Day> {
    let mut closes: BTreeMap<NaiveDate, Money> = BTreeMap::new();
    let mut first: Option<Money> = None;
    for (ts, e) in curve {
        first.get_or_insert(*e);
        closes.insert(ny_date(*ts), *e);
    }
    let mut prev = starting.or(first);
    closes
        .into_iter()
        .map(|(date, close)| {
            let pnl = close - prev.unwrap_or(close);
            prev = Some(close);
            Day { date, close, pnl }
        })
        .collect()
}

/// The worst fall from a running peak, in dollars and as a fraction of that peak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drawdown {
    pub amount: Money,
    pub fraction: f64,
}

/// The drawdown at each point (as a fraction of the running peak) and the maximum.
pub fn drawdowns(curve: &[(Ts, Money)]) -> (Vec<(Ts, f64)>, Drawdown) {
    let mut peak: Option<Money> = None;
    let mut max = Drawdown {
        amount: Decimal::ZERO,
        fraction: 0.0,
    };
    let mut series = Vec::with_capacity(curve.len());
    for (ts, e) in curve {
        let p = match peak {
            Some(p) if p >= *e => p,
            _ => *e,
        };
        peak = Some(p);
        let amount = p - e;
        let fraction = if p > Decimal::ZERO {
            (amount / p).to_f64().unwrap_or(0.0)
        } else {
            0.0
        };
        if fraction > max.fraction || amount > max.amount {
            max = Drawdown {
                amount: max.amount.max(amount),
                fraction: max.fraction.max(fraction),
            };
        }
        series.push((*ts, fraction));
    }
    (series, max)
}

/// Annualised Sharpe ratio (risk-free 0) of the daily returns of `days`, the first against
/// `starting`: mean / sample standard deviation × √252. `None` with fewer than two returns
/// or no variation.
pub fn sharpe(days: &[Day], starting: Option<Money>) -> Option<f64> {
    let mut prev = starting.and_then(|s| s.to_f64());
    let mut returns = Vec::with_capacity(days.len());
    for d in days {
        let close = d.close.to_f64()?;
        if let Some(p) = prev {
            if p != 0.0 {
                returns.push(close / p - 1.0);
            }
        }
        prev = Some(close);
    }
    if returns.len() < 2 {
        return None;
    }
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let sd = var.sqrt();
    (sd > 0.0 && sd.is_finite()).then(|| mean / sd * 252f64.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use robo_core::types::{ClientOrderId, ExecId};
    use rust_decimal_macros::dec;

    fn f(sym: &str, side: Side, qty: i64, price: Decimal, comm: Decimal, secs: i64) -> FillRow {
        FillRow {
            exec_id: ExecId::from(format!("{sym}{secs}")),
            order_id: ClientOrderId(1),
            symbol: sym.into(),
            side,
            qty,
            price,
            commission: comm,
            ts: Ts::from_secs(secs),
        }
    }

    #[test]
    fn fifo_round_trips_split_lots_and_commissions() {
        // Long 10 @ 10 (comm 1) and 10 @ 12 (comm 1); sell 15 @ 13 (comm 3):
        // 10 × 3 − 1 − 2 = 27, then 5 × 1 − 0.5 − 1 = 3.5; 5 shares stay open.
        // Then a short: sell 4 @ 20, buy 4 @ 22 (no commission) = −8.
        let fills = [
            f("A", Side::Buy, 10, dec!(10), dec!(1), 1),
            f("A", Side::Buy, 10, dec!(12), dec!(1), 2),
            f("A", Side::Sell, 15, dec!(13), dec!(3), 3),
            f("B", Side::Sell, 4, dec!(20), dec!(0), 4),
            f("B", Side::Buy, 4, dec!(22), dec!(0), 5),
        ];
        let t = round_trips(&fills);
        let pnl: Vec<Decimal> = t.iter().map(|t| t.pnl).collect();
        assert_eq!(pnl, [dec!(27), dec!(3.5), dec!(-8)]);
        assert_eq!(t[1].qty, 5);
        assert_eq!(t[2].side, Side::Sell);
        let s = trade_stats(&t);
        assert_eq!((s.trades, s.wins, s.losses), (3, 2, 1));
        assert_eq!(s.gross_profit, dec!(30.5));
        assert_eq!(s.gross_loss, dec!(8));
        assert_eq!(s.profit_factor, Some(30.5 / 8.0));
        assert_eq!(s.win_rate, Some(2.0 / 3.0));
    }

    #[test]
    fn drawdown_and_days() {
        // 2024-01-02 14:30Z is 09:30 New York.
        let t0 = 1_704_205_800;
        let curve = [
            (Ts::from_secs(t0), dec!(100)),
            (Ts::from_secs(t0 + 60), dec!(120)),
            (Ts::from_secs(t0 + 86_400), dec!(90)),
            (Ts::from_secs(t0 + 2 * 86_400), dec!(110)),
        ];
        let (series, max) = drawdowns(&curve);
        assert_eq!(max.amount, dec!(30));
        assert_eq!(max.fraction, 0.25);
        assert_eq!(series.len(), 4);
        let days = daily(&curve, Some(dec!(100)));
        let pnl: Vec<Decimal> = days.iter().map(|d| d.pnl).collect();
        assert_eq!(pnl, [dec!(20), dec!(-30), dec!(20)]);
        // Returns 0.2, -0.25, 0.2222…: mean 0.0574074, sd 0.2626…
        let r = [0.2, 90.0 / 120.0 - 1.0, 110.0 / 90.0 - 1.0];
        let mean = r.iter().sum::<f64>() / 3.0;
        let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        let want = mean / sd * 252f64.sqrt();
        assert!((sharpe(&days, Some(dec!(100))).unwrap() - want).abs() < 1e-12);
        assert_eq!(sharpe(&days[..1], Some(dec!(100))), None);
    }
}
