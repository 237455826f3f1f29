//! Performance statistics of a backtest: an online accumulator over the equity curve (returns,
//! Sharpe, Sortino, drawdown) and the FIFO round-trip trade book (win rate, profit factor).
//!
//! Definitions (also in docs/BACKTEST.md):
//! - Period return `r_i = E_i / E_{i-1} − 1`, one per distinct bar timestamp; `E_0` is the
//!   starting cash.
//! - Sharpe = `(mean(r) − rf/P) / stdev(r) × √P`, sample standard deviation (n − 1); Sortino =
//!   `(mean(r) − rf/P) / √(mean(min(0, r − rf/P)²)) × √P`, where `P` is the periods per year
//!   ([`periods_per_year`]) and `rf` the annual risk-free rate.
//! - CAGR = `(E_end / E_0)^(1/years) − 1` with calendar years between the first and last bar
//!   (365.25 days); Calmar = CAGR / max drawdown.
//! - Max drawdown = the largest `1 − E / peak`; its duration runs from the peak to the
//!   recovery (the first point back at or above the peak), or to the end if it never recovers.
//! - A closed trade is one FIFO match between an opening lot and a closing fill; its P&L is net
//!   of both legs' commissions (each leg's commission split pro rata by shares).
//!
//! Curves are f64 (statistics), money stays `Decimal` (the trade book, final equity).

use std::collections::VecDeque;

use robo_core::types::{Side, Ts};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;

const SECS_PER_YEAR: f64 = 365.25 * 86_400.0;

/// Periods per year for a bar spacing: daily bars 252, weekly 52, monthly 12, and intraday
/// bars 252 × (6.5 h / spacing), so minute bars give 252 × 390.
pub fn periods_per_year(spacing_secs: i64) -> f64 {
    let s = spacing_secs.max(1) as f64;
    if s >= 25.0 * 86_400.0 {
        12.0
    } else if s >= 5.0 * 86_400.0 {
        52.0
    } else if s >= 20.0 * 3_600.0 {
        252.0
    } else {
        252.0 * (23_400.0 / s).max(1.0)
    }
}

/// The equity-curve accumulator: feed one point per timestamp, in time order.
#[derive(Debug, Clone)]
pub struct CurveStats {
    start: f64,
    ppy: f64,
    rf_per_period: f64,
    first_ts: Option<Ts>,
    last_ts: Ts,
    prev: f64,
    n: u64,
    sum_r: f64,
    /// The first return: the variance's sums are of `r − shift`, so a large common level of
    /// the returns does not cancel away its digits. (The mean sums `r` itself: returns are
    /// near zero, and shifting them would cancel away the mean's digits instead.)
    shift: f64,
    sum_x: f64,
    sum_xx: f64,
    downside_sq: f64,
    sum_equity: f64,
    peak: f64,
    peak_ts: Ts,
    /// The drawdown episode in progress: its deepest point.
    ep_depth: f64,
    ep_trough: Ts,
    ep_is_max: bool,
    in_dd: bool,
    max_dd: f64,
    max_dd_peak: Option<Ts>,
    max_dd_trough: Option<Ts>,
    max_dd_recovery: Option<Ts>,
    longest_dd_secs: i64,
}

/// The curve statistics at the end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveSummary {
    pub periods: u64,
    pub periods_per_year: f64,
    pub total_return: f64,
    pub cagr: Option<f64>,
    pub volatility: Option<f64>,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    pub calmar: Option<f64>,
    /// As a positive fraction (0.25 = 25% below the peak).
    pub max_drawdown: f64,
    pub max_drawdown_peak: Option<String>,
    pub max_drawdown_trough: Option<String>,
    pub max_drawdown_recovery: Option<String>,
    /// Peak to recovery (or to the end) of the deepest drawdown.
    pub max_drawdown_duration_s: i64,
    /// The longest time spent below a previous peak.
    pub longest_drawdown_s: i64,
    pub avg_equity: f64,
}

/// RFC 3339 UTC text of a timestamp.
pub fn ts_text(t: Ts) -> String {
    t.to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl CurveStats {
    pub fn new(start_equity: f64, periods_per_year: f64, risk_free_annual: f64) -> Self {
        CurveStats {
            start: start_equity,
            ppy: periods_per_year,
            rf_per_period: risk_free_annual / periods_per_year,
            first_ts: None,
            last_ts: Ts(0),
            prev: start_equity,
            n: 0,
            sum_r: 0.0,
            shift: 0.0,
            sum_x: 0.0,
            sum_xx: 0.0,
            downside_sq: 0.0,
            sum_equity: 0.0,
            peak: start_equity,
            peak_ts: Ts(i64::MIN),
            ep_depth: 0.0,
            ep_trough: Ts(0),
            ep_is_max: false,
            in_dd: false,
            max_dd: 0.0,
            max_dd_peak: None,
            max_dd_trough: None,
            max_dd_recovery: None,
            longest_dd_secs: 0,
        }
    }

    /// Adds the equity at `ts`. Inlined: a backtest pushes two curves per timestamp, and
    /// their independent chains then interleave.
    #[inline]
    pub fn push(&mut self, ts: Ts, equity: f64) {
        if self.first_ts.is_none() {
            self.first_ts = Some(ts);
            self.peak_ts = ts;
        }
        self.last_ts = ts;
        if self.prev > 0.0 {
            let r = equity / self.prev - 1.0;
            // Shifted sums, not Welford's update: its division by n sat on the chain from one
            // point to the next, and this runs once per timestamp.
            if self.n == 0 {
                self.shift = r;
            }
            self.n += 1;
            self.sum_r += r;
            let x = r - self.shift;
            self.sum_x += x;
            self.sum_xx += x * x;
            let ex = r - self.rf_per_period;
            if ex < 0.0 {
                self.downside_sq += ex * ex;
            }
        }
        self.prev = equity;
        self.sum_equity += equity;

        if equity >= self.peak {
            if self.in_dd {
                self.longest_dd_secs = self.longest_dd_secs.max(secs(self.peak_ts, ts));
                if self.ep_is_max {
                    self.max_dd_recovery = Some(ts);
                }
                self.in_dd = false;
                self.ep_is_max = false;
            }
            self.peak = equity;
            self.peak_ts = ts;
        } else if self.peak > 0.0 {
            let dd = 1.0 - equity / self.peak;
            if !self.in_dd {
                self.in_dd = true;
                self.ep_depth = 0.0;
            }
            if dd > self.ep_depth {
                self.ep_depth = dd;
                self.ep_trough = ts;
            }
            if dd > self.max_dd {
                self.max_dd = dd;
                self.max_dd_peak = Some(self.peak_ts);
                self.max_dd_trough = Some(ts);
                self.max_dd_recovery = None;
                self.ep_is_max = true;
            }
        }
    }

    pub fn finish(&self) -> CurveSummary {
        let end = self.prev;
        let total_return = if self.start > 0.0 {
            end / self.start - 1.0
        } else {
            0.0
        };
        let years = self
            .first_ts
            .map(|f| secs(f, self.last_ts) as f64 / SECS_PER_YEAR)
            .unwrap_or(0.0);
        let cagr = (years > 0.0 && self.start > 0.0 && end > 0.0)
            .then(|| (end / self.start).powf(1.0 / years) - 1.0);
        let n = self.n as f64;
        let mean_x = if self.n > 0 { self.sum_x / n } else { 0.0 };
        let m2 = (self.sum_xx - self.sum_x * mean_x).max(0.0);
        let std = (self.n > 1).then(|| (m2 / (n - 1.0)).sqrt());
        let mean = if self.n > 0 { self.sum_r / n } else { 0.0 };
        let ex_mean = mean - self.rf_per_period;
        let sharpe = std
            .filter(|s| *s > 0.0)
            .map(|s| ex_mean / s * self.ppy.sqrt());
        let dd_dev = (self.n > 0).then(|| (self.downside_sq / self.n as f64).sqrt());
        let sortino = dd_dev
            .filter(|d| *d > 0.0)
            .map(|d| ex_mean / d * self.ppy.sqrt());
        let calmar = cagr.filter(|_| self.max_dd > 0.0).map(|c| c / self.max_dd);
        let mut longest = self.longest_dd_secs;
        if self.in_dd {
            longest = longest.max(secs(self.peak_ts, self.last_ts));
        }
        let max_dur = match (self.max_dd_peak, self.max_dd_recovery) {
            (Some(p), Some(r)) => secs(p, r),
            (Some(p), None) => secs(p, self.last_ts),
            _ => 0,
        };
        CurveSummary {
            periods: self.n,
            periods_per_year: self.ppy,
            total_return,
            cagr,
            volatility: std.map(|s| s * self.ppy.sqrt()),
            sharpe,
            sortino,
            calmar,
            max_drawdown: self.max_dd,
            max_drawdown_peak: self.max_dd_peak.map(ts_text),
            max_drawdown_trough: self.max_dd_trough.map(ts_text),
            max_drawdown_recovery: self.max_dd_recovery.map(ts_text),
            max_drawdown_duration_s: max_dur,
            longest_drawdown_s: longest,
            avg_equity: if self.n > 0 {
                self.sum_equity / self.n as f64
            } else {
                self.start
            },
        }
    }
}

fn secs(a: Ts, b: Ts) -> i64 {
    (b.0.saturating_sub(a.0)) / Ts::NANOS_PER_SEC
}

/// One closed FIFO round trip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClosedTrade {
    pub symbol: String,
    /// "long" or "short".
    pub side: &'static str,
    pub qty: i64,
    pub entry_ts: String,
    pub entry_price: Decimal,
    pub exit_ts: String,
    pub exit_price: Decimal,
    /// Net of both legs' commissions.
    pub pnl: Decimal,
    pub commission: Decimal,
}

/// A closed FIFO round trip as the book produces it: no text, so a run that only counts
/// trades (no report) allocates nothing per trade. [`RoundTrip::to_closed`] names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundTrip {
    pub symbol: usize,
    pub long: bool,
    pub qty: i64,
    pub entry_ts: Ts,
    pub entry_price: Decimal,
    pub exit_ts: Ts,
    pub exit_price: Decimal,
    /// Net of both legs' commissions.
    pub pnl: Decimal,
    pub commission: Decimal,
}

impl RoundTrip {
    /// The trade as the report and the JSON show it.
    pub fn to_closed(&self, symbol: &str) -> ClosedTrade {
        ClosedTrade {
            symbol: symbol.to_string(),
            side: if self.long { "long" } else { "short" },
            qty: self.qty,
            entry_ts: ts_text(self.entry_ts),
            entry_price: self.entry_price,
            exit_ts: ts_text(self.exit_ts),
            exit_price: self.exit_price,
            pnl: self.pnl,
            commission: self.commission,
        }
    }
}

#[derive(Debug, Clone)]
struct Lot {
    /// Signed: > 0 long.
    qty: i64,
    price: Decimal,
    /// Commission still attached to this lot.
    commission: Decimal,
    ts: Ts,
}

/// FIFO lots per symbol, producing [`RoundTrip`]s.
#[derive(Debug, Clone, Default)]
pub struct TradeBook {
    lots: Vec<VecDeque<Lot>>,
    pub closed: Vec<RoundTrip>,
}

impl TradeBook {
    pub fn new(n_symbols: usize) -> Self {
        TradeBook {
            lots: vec![VecDeque::new(); n_symbols],
            closed: Vec::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn fill(
        &mut self,
        sym: usize,
        side: Side,
        qty: i64,
        price: Decimal,
        commission: Decimal,
        ts: Ts,
    ) {
        if qty <= 0 {
            return;
        }
        if sym >= self.lots.len() {
            self.lots.resize(sym + 1, VecDeque::new());
        }
        let signed = match side {
            Side::Buy => qty,
            Side::Sell => -qty,
        };
        let mut left = qty;
        let mut comm_left = commission;
        let lots = &mut self.lots[sym];
        while left > 0 {
            let Some(lot) = lots.front_mut() else { break };
            if lot.qty.signum() == signed.signum() {
                break;
            }
            let m = left.min(lot.qty.abs());
            let entry_c = if m == lot.qty.abs() {
                lot.commission
            } else {
                lot.commission * Decimal::from(m) / Decimal::from(lot.qty.abs())
            };
            let exit_c = if m == left {
                comm_left
            } else {
                comm_left * Decimal::from(m) / Decimal::from(left)
            };
            let long = lot.qty > 0;
            let gross = (price - lot.price) * Decimal::from(if long { m } else { -m });
            self.closed.push(RoundTrip {
                symbol: sym,
                long,
                qty: m,
                entry_ts: lot.ts,
                entry_price: lot.price,
                exit_ts: ts,
                exit_price: price,
                pnl: gross - entry_c - exit_c,
                commission: entry_c + exit_c,
            });
            lot.commission -= entry_c;
            lot.qty -= m * lot.qty.signum();
            if lot.qty == 0 {
                lots.pop_front();
            }
            left -= m;
            comm_left -= exit_c;
        }
        if left > 0 {
            lots.push_back(Lot {
                qty: left * signed.signum(),
                price,
                commission: comm_left,
                ts,
            });
        }
    }
}

/// Statistics of the closed trades.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TradeSummary {
    pub trades: usize,
    pub wins: usize,
    pub losses: usize,
    pub win_rate: Option<f64>,
    pub gross_profit: Decimal,
    pub gross_loss: Decimal,
    /// Gross profit / |gross loss|; `None` without a losing trade.
    pub profit_factor: Option<f64>,
    pub avg_win: Option<Decimal>,
    pub avg_loss: Option<Decimal>,
    pub net_pnl: Decimal,
}

/// Running totals of closed trades (so a long run need not keep every trade).
#[derive(Debug, Clone, Default)]
pub struct TradeStatsAcc {
    trades: usize,
    wins: usize,
    gross_profit: Decimal,
    gross_loss: Decimal,
}

impl TradeStatsAcc {
    /// Wins are trades with P&L > 0; everything else (including break-even) is a loss.
    pub fn add(&mut self, pnl: Decimal) {
        self.trades += 1;
        if pnl > Decimal::ZERO {
            self.wins += 1;
            self.gross_profit += pnl;
        } else {
            self.gross_loss += pnl;
        }
    }

    pub fn finish(&self) -> TradeSummary {
        let losses = self.trades - self.wins;
        TradeSummary {
            trades: self.trades,
            wins: self.wins,
            losses,
            win_rate: (self.trades > 0).then(|| self.wins as f64 / self.trades as f64),
            gross_profit: self.gross_profit,
            gross_loss: self.gross_loss,
            profit_factor: (self.gross_loss < Decimal::ZERO)
                .then(|| (self.gross_profit / -self.gross_loss).to_f64())
                .flatten(),
            avg_win: (self.wins > 0).then(|| self.gross_profit / Decimal::from(self.wins)),
            avg_loss: (losses > 0).then(|| self.gross_loss / Decimal::from(losses)),
            net_pnl: self.gross_profit + self.gross_loss,
        }
    }
}

/// [`TradeStatsAcc`] over a list.
pub fn trade_summary(trades: &[RoundTrip]) -> TradeSummary {
    let mut acc = TradeStatsAcc::default();
    trades.iter().for_each(|t| acc.add(t.pnl));
    acc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    const DAY: i64 = 86_400;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn periods_per_year_from_spacing() {
        assert_eq!(periods_per_year(60), 252.0 * 390.0);
        assert_eq!(periods_per_year(DAY), 252.0);
        assert_eq!(periods_per_year(300), 252.0 * 78.0);
        assert_eq!(periods_per_year(7 * DAY), 52.0);
        assert_eq!(periods_per_year(30 * DAY), 12.0);
    }

    #[test]
    fn returns_sharpe_sortino_by_hand() {
        // Equity 100 → 110 → 99 → 108.9: returns +10%, −10%, +10%.
        let mut c = CurveStats::new(100.0, 252.0, 0.0);
        c.push(Ts::from_secs(0), 110.0);
        c.push(Ts::from_secs(DAY), 99.0);
        c.push(Ts::from_secs(2 * DAY), 108.9);
        let s = c.finish();
        assert_eq!(s.periods, 3);
        assert!(close(s.total_return, 0.089));
        // mean = 0.1/3; sample var = ((2/30)² + (4/30)² + (2/30)²)/2 = (24/900)/2 = 0.013333…
        let mean = 0.1 / 3.0;
        let sd = (0.04f64 / 3.0).sqrt();
        assert!(close(s.sharpe.unwrap(), mean / sd * 252f64.sqrt()));
        // Downside: only −0.1 → sqrt(0.01 / 3).
        let dd = (0.01f64 / 3.0).sqrt();
        assert!(close(s.sortino.unwrap(), mean / dd * 252f64.sqrt()));
        // Max drawdown 110 → 99 = 10%, from day 0, trough day 1, never recovered (108.9 < 110).
        assert!(close(s.max_drawdown, 0.1));
        assert_eq!(s.max_drawdown_peak.as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            s.max_drawdown_trough.as_deref(),
            Some("1970-01-02T00:00:00Z")
        );
        assert_eq!(s.max_drawdown_recovery, None);
        assert_eq!(s.max_drawdown_duration_s, 2 * DAY);
    }

    proptest::proptest! {
        /// The one-pass sums give the two-pass mean and standard deviation, also for returns
        /// with a large common level.
        #[test]
        fn sharpe_matches_two_pass(
            level in -0.01f64..0.01,
            noise in proptest::collection::vec((-0.02f64..0.02, proptest::bool::weighted(0.3)), 2..400),
        ) {
            // Some points repeat the last equity exactly (a flat book).
            let r: Vec<f64> = noise.iter().map(|&(x, flat)| if flat { 0.0 } else { level + x }).collect();
            let mut c = CurveStats::new(100.0, 252.0, 0.0);
            let mut e = 100.0;
            let mut got = Vec::new();
            for (i, x) in r.iter().enumerate() {
                let next = e * (1.0 + x);
                got.push(next / e - 1.0);
                e = next;
                c.push(Ts::from_secs(i as i64 * DAY), e);
            }
            let n = got.len() as f64;
            let mean = got.iter().sum::<f64>() / n;
            let var = got.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
            let s = c.finish();
            // The deepest drawdown, by brute force over the same points.
            let (mut peak, mut deepest, mut e) = (100.0f64, 0.0f64, 100.0);
            for x in &r {
                e *= 1.0 + x;
                if e >= peak {
                    peak = e;
                } else {
                    deepest = deepest.max(1.0 - e / peak);
                }
            }
            proptest::prop_assert_eq!(s.max_drawdown.to_bits(), deepest.to_bits());
            let want_vol = var.sqrt() * 252f64.sqrt();
            proptest::prop_assert!(close(s.volatility.unwrap(), want_vol));
            if var > 1e-12 {
                let want = mean / var.sqrt() * 252f64.sqrt();
                proptest::prop_assert!(close(s.sharpe.unwrap(), want), "{:?} vs {}", s.sharpe, want);
            }
        }
    }

    #[test]
    fn risk_free_rate_lowers_sharpe() {
        // Returns +2%, 0%, +1%, rf 2.52% a year over 252 periods = 0.0001 a period.
        let mut c = CurveStats::new(100.0, 252.0, 0.0252);
        c.push(Ts::from_secs(0), 102.0);
        c.push(Ts::from_secs(DAY), 102.0);
        c.push(Ts::from_secs(2 * DAY), 103.02);
        let s = c.finish();
        let r = [0.02, 0.0, 0.01];
        let mean = 0.01;
        let var = r.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 2.0;
        assert!(close(
            s.sharpe.unwrap(),
            (mean - 0.0001) / var.sqrt() * 252f64.sqrt()
        ));
        // Downside: only the 0% period is below rf: (−0.0001)² / 3.
        let dd = (0.0001f64 * 0.0001 / 3.0).sqrt();
        assert!(close(
            s.sortino.unwrap(),
            (mean - 0.0001) / dd * 252f64.sqrt()
        ));
    }

    #[test]
    fn cagr_calmar_and_drawdown_recovery() {
        // 100 → 150 at +1 day; dip to 120 (20% dd) at +100 days; back to 150 at +200 days;
        // 121 at two years (365.25 × 2 days) after the first point.
        let mut c = CurveStats::new(100.0, 252.0, 0.0);
        let t0 = 1_000 * DAY;
        c.push(Ts::from_secs(t0), 100.0);
        c.push(Ts::from_secs(t0 + DAY), 150.0);
        c.push(Ts::from_secs(t0 + 100 * DAY), 120.0);
        c.push(Ts::from_secs(t0 + 200 * DAY), 150.0);
        let two_years = (2.0 * 365.25 * DAY as f64) as i64;
        c.push(Ts::from_secs(t0 + two_years), 121.0);
        let s = c.finish();
        // CAGR: 1.21^(1/2) − 1 = 10%.
        assert!(close(s.cagr.unwrap(), 0.1));
        // Deepest: 150 → 121 = 19.333…% (deeper than the 20%? no: 1 − 121/150 = 0.19333).
        // So the max is the first episode, 20%, peak +1d, trough +100d, recovered at +200d.
        assert!(close(s.max_drawdown, 0.2));
        assert_eq!(s.max_drawdown_duration_s, 199 * DAY);
        assert!(s.max_drawdown_recovery.is_some());
        // The longest episode is the second, still open: +200d to the end.
        assert_eq!(s.longest_drawdown_s, two_years - 200 * DAY);
        assert!(close(s.calmar.unwrap(), 0.1 / 0.2));
    }

    #[test]
    fn flat_curve_has_no_ratios() {
        let mut c = CurveStats::new(100.0, 252.0, 0.0);
        for i in 0..5 {
            c.push(Ts::from_secs(i * DAY), 100.0);
        }
        let s = c.finish();
        assert_eq!(s.total_return, 0.0);
        assert_eq!(s.sharpe, None);
        assert_eq!(s.sortino, None);
        assert_eq!(s.max_drawdown, 0.0);
        assert_eq!(s.calmar, None);
    }

    #[test]
    fn fifo_round_trips_with_commissions() {
        let mut b = TradeBook::new(1);
        let t = Ts::from_secs;
        // Buy 100 @ 10 ($1), buy 100 @ 12 ($1), sell 150 @ 13 ($1.50).
        b.fill(0, Side::Buy, 100, dec!(10), dec!(1), t(1));
        b.fill(0, Side::Buy, 100, dec!(12), dec!(1), t(2));
        b.fill(0, Side::Sell, 150, dec!(13), dec!(1.50), t(3));
        assert_eq!(b.closed.len(), 2);
        // Lot 1: 100 × 3 = 300 − 1 (entry) − 1.00 (100/150 of 1.50) = 298.
        assert_eq!(b.closed[0].qty, 100);
        assert_eq!(b.closed[0].pnl, dec!(298));
        // Lot 2 (50 of 100): 50 × 1 = 50 − 0.50 − 0.50 = 49.
        assert_eq!(b.closed[1].qty, 50);
        assert_eq!(b.closed[1].pnl, dec!(49));
        // Sell the last 50 @ 11 ($1): 50 × −1 = −50 − 0.50 − 1 = −51.50.
        b.fill(0, Side::Sell, 50, dec!(11), dec!(1), t(4));
        assert_eq!(b.closed[2].pnl, dec!(-51.50));
        let s = trade_summary(&b.closed);
        assert_eq!((s.trades, s.wins, s.losses), (3, 2, 1));
        assert_eq!(s.win_rate, Some(2.0 / 3.0));
        assert_eq!(s.gross_profit, dec!(347));
        assert_eq!(s.gross_loss, dec!(-51.50));
        assert_eq!(s.avg_win, Some(dec!(173.5)));
        assert_eq!(s.avg_loss, Some(dec!(-51.50)));
        assert!(close(s.profit_factor.unwrap(), 347.0 / 51.5));
        assert_eq!(s.net_pnl, dec!(295.5));
    }

    #[test]
    fn short_round_trip() {
        let mut b = TradeBook::new(1);
        b.fill(0, Side::Sell, 10, dec!(20), dec!(1), Ts(1));
        b.fill(0, Side::Buy, 10, dec!(18), dec!(1), Ts(2));
        assert!(!b.closed[0].long);
        assert_eq!(b.closed[0].pnl, dec!(18));
        let shown = b.closed[0].to_closed("A");
        assert_eq!((shown.symbol.as_str(), shown.side), ("A", "short"));
        assert_eq!(shown.entry_ts, ts_text(Ts(1)));
    }
}
