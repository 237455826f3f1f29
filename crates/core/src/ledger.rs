//! The ledger: FIFO lots per symbol, cash, commissions, realized and unrealized P&L, and
//! equity marked to market. Positions exist only as the sum of applied fills.
//!
//! Every amount is an exact `Decimal`, so `equity − starting_cash == realized + unrealized`
//! holds to the last digit. Per-symbol state lives in a `Vec` indexed by [`SymbolId`]; `mark`
//! is a single store and `equity` walks only the symbols with an open position.
//!
//! The ledger keeps its amounts unpacked (`Amt`: an `i64` mantissa and a scale), so a fill
//! is a handful of integer operations; each still yields the very `Decimal` (value, scale and
//! sign) that `rust_decimal` would, and a `Decimal` is built only when a value is read. The
//! `exact` module does the same on `Decimal` operands for the rest of the crate.
//!
//! Next to the `Decimal`s the ledger keeps fixed-point shadows (integers of 10^-8, see
//! [`fx`]) of the cash and the marks, so that the engine's per-bar and per-order questions
//! (equity, gross exposure, cash) are a few integer operations: [`Ledger::equity_fixed`] and
//! friends. A shadow is `None` when its value has no exact fixed-point form, and so is every
//! answer built from it; the caller then asks for the `Decimal`.

use std::collections::VecDeque;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::indicators::exact_sma::fx;
use crate::risk::exact as below_2_96;
use crate::types::{Fill, Money, Position, Price, Qty, Side, SymbolId, Ts};

use crate::amount::Amt;

/// One open lot: shares bought (or sold short) together at one price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    /// Signed: positive long, negative short.
    pub qty: Qty,
    pub price: Price,
    pub ts: Ts,
}

/// Round-trip statistics: one trade per fill that closes quantity.
#[derive(Default, Clone, Copy, Debug, PartialEq)]
pub struct TradeStats {
    pub trades: u32,
    /// Trades with P&L (after that fill's commission) above zero.
    pub wins: u32,
    /// Trades with P&L below zero. A trade of exactly zero is neither.
    pub losses: u32,
    pub gross_win: Money,
    /// Sum of losing trades' P&L, as a positive number.
    pub gross_loss: Money,
}

/// What one fill did to its symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FillEffect {
    /// FIFO P&L of the closed part, before commission.
    pub realized: Money,
    /// Shares closed (always >= 0).
    pub closed_qty: Qty,
    /// Shares opened on the fill's side (always >= 0).
    pub opened_qty: Qty,
    /// Signed position after the fill.
    pub position_after: Qty,
}

/// Why [`Ledger::try_apply_fill`] refused a fill.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    #[error("fill {exec_id}: qty {qty} must be between 1 and {max}")]
    BadQty { exec_id: String, qty: Qty, max: Qty },
    #[error("fill {exec_id}: price {price} must be between 0 and {max}")]
    BadPrice {
        exec_id: String,
        price: Price,
        max: Price,
    },
    #[error("fill {exec_id}: commission {commission} is out of range")]
    BadCommission { exec_id: String, commission: Money },
    #[error("fill {exec_id}: position in symbol {symbol} would overflow")]
    PositionOverflow { exec_id: String, symbol: u16 },
}

/// Bounds on a single fill, far beyond any real trade, so that no sum of fills the ledger
/// will ever see can overflow `Decimal` (about 7.9e28).
pub const MAX_FILL_QTY: Qty = 1_000_000_000_000;
pub const MAX_FILL_PRICE: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// `MAX_FILL_PRICE × 10^s` for every scale `s`: `|d| > MAX_FILL_PRICE` is then one integer
/// comparison of `d`'s mantissa.
const MAX_FILL_PRICE_AT_SCALE: [u128; 29] = {
    assert!(MAX_FILL_PRICE.scale() == 0);
    let mut t = [MAX_FILL_PRICE.mantissa().unsigned_abs(); 29];
    let mut s = 1;
    while s < 29 {
        t[s] = t[s - 1] * 10;
        s += 1;
    }
    t
};

#[derive(Debug, Clone, PartialEq, Default)]
struct SymState {
    /// Cached Σ lot.qty.
    qty: Qty,
    /// Cached Σ lot.qty × lot.price (signed cost basis), so valuing an unmarked position
    /// needs no division.
    cost: Amt,
    /// Cached `cost / qty` (0 when flat), recomputed when the lots change, so reading a
    /// position needs no division either.
    avg_cost: Price,
    lots: VecDeque<Lot>,
    mark: Option<Price>,
    /// `fx(mark)`: `None` when unmarked or not exact at the fixed scale.
    mark_fx: Option<i64>,
}

impl SymState {
    /// Value at the mark, or at cost when never marked (so unmarked positions show zero
    /// unrealized P&L).
    #[inline(always)]
    fn value(&self) -> Money {
        match self.mark {
            Some(m) => m.saturating_mul(Decimal::from(self.qty)),
            None => self.cost.to_dec(),
        }
    }
}

/// [`TradeStats`] as read (the sizing reads it for every entry), and its sums unpacked for
/// the next trade's arithmetic.
#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct Stats {
    read: TradeStats,
    gross_win: Amt,
    gross_loss: Amt,
}

/// Cash, positions and P&L for one account.
#[derive(Debug, Clone, PartialEq)]
pub struct Ledger {
    syms: Vec<SymState>,
    /// Indices of symbols with a non-zero position, ascending, so aggregates skip flat ones.
    open: Vec<usize>,
    starting_cash: Money,
    cash: Amt,
    /// `cash` as read: every order's risk check reads it (and `equity`), a fill writes it.
    cash_read: Money,
    commissions: Amt,
    /// Σ FIFO lot P&L, before commissions.
    lot_pnl: Amt,
    stats: Stats,
    /// `fx(cash)`.
    cash_fx: Option<i64>,
}

static NO_LOTS: VecDeque<Lot> = VecDeque::new();

impl Ledger {
    pub fn new(n_symbols: usize, starting_cash: Money) -> Self {
        Ledger {
            syms: vec![SymState::default(); n_symbols],
            open: Vec::new(),
            starting_cash,
            cash: Amt::from_dec(starting_cash),
            cash_read: starting_cash,
            commissions: Amt::ZERO,
            lot_pnl: Amt::ZERO,
            stats: Stats::default(),
            cash_fx: fx(starting_cash),
        }
    }

    fn sym_mut(&mut self, sym: SymbolId) -> &mut SymState {
        let i = sym.index();
        if i >= self.syms.len() {
            self.syms.resize(i + 1, SymState::default());
        }
        &mut self.syms[i]
    }

    /// Checks a fill without applying it: quantity and price within sane bounds, and the
    /// position would not overflow.
    pub fn check_fill(&self, fill: &Fill) -> Result<(), FillError> {
        self.check_unpacked(
            fill,
            Amt::from_dec(fill.price),
            Amt::from_dec(fill.commission),
        )
    }

    /// [`Ledger::check_fill`] with the fill's price and commission already unpacked.
    #[inline(always)]
    fn check_unpacked(&self, fill: &Fill, price: Amt, commission: Amt) -> Result<(), FillError> {
        let exec_id = || fill.exec_id.0.to_string();
        if fill.qty <= 0 || fill.qty > MAX_FILL_QTY {
            return Err(FillError::BadQty {
                exec_id: exec_id(),
                qty: fill.qty,
                max: MAX_FILL_QTY,
            });
        }
        // Integer forms of `price < 0 || price > MAX_FILL_PRICE` and `|commission| >
        // MAX_FILL_PRICE`: a negative zero is not below zero.
        if price.is_negative() || price.magnitude_above(&MAX_FILL_PRICE_AT_SCALE) {
            return Err(FillError::BadPrice {
                exec_id: exec_id(),
                price: fill.price,
                max: MAX_FILL_PRICE,
            });
        }
        if commission.magnitude_above(&MAX_FILL_PRICE_AT_SCALE) {
            return Err(FillError::BadCommission {
                exec_id: exec_id(),
                commission: fill.commission,
            });
        }
        if self.qty(fill.symbol).checked_add(fill.qty).is_none()
            || self.qty(fill.symbol).checked_sub(fill.qty).is_none()
        {
            return Err(FillError::PositionOverflow {
                exec_id: exec_id(),
                symbol: fill.symbol.0,
            });
        }
        Ok(())
    }

    /// Applies a fill, or says why it cannot. Does not deduplicate: the order manager does.
    pub fn try_apply_fill(&mut self, fill: &Fill) -> Result<FillEffect, FillError> {
        let price = Amt::from_dec(fill.price);
        let commission = Amt::from_dec(fill.commission);
        self.check_unpacked(fill, price, commission)?;
        Ok(self.apply_checked(fill, price, commission))
    }

    /// Applies a fill: closes opposite lots FIFO, then opens the remainder on the fill's side
    /// (so a fill can cross through zero). A fill that [`Ledger::check_fill`] refuses changes
    /// nothing and returns an empty effect; call `try_apply_fill` to learn why.
    pub fn apply_fill(&mut self, fill: &Fill) -> FillEffect {
        self.try_apply_fill(fill).unwrap_or_default()
    }

    fn apply_checked(&mut self, fill: &Fill, price: Amt, commission: Amt) -> FillEffect {
        let side_sign = fill.side.sign();
        let idx = fill.symbol.index();
        let st = self.sym_mut(fill.symbol);
        let was_flat = st.qty == 0;

        let mut remaining = fill.qty; // > 0, in shares
        let mut realized = Amt::ZERO;
        let mut closed = 0;
        // Close lots on the other side, oldest first.
        while remaining > 0 {
            let last = st.lots.len() == 1;
            let Some(front) = st.lots.front_mut() else {
                break;
            };
            if front.qty.signum() == side_sign {
                break;
            }
            let take = remaining.min(front.qty.abs());
            // A closed long earns (price − lot price) per share; a covered short the reverse.
            let signed_closed = take * front.qty.signum();
            let lot_price = Amt::from_dec(front.price);
            realized = realized.add(price.sub(lot_price).mul_int(signed_closed));
            let emptied = front.qty == signed_closed;
            // Closing the last lot with nothing left to open resets the cost basis below, so
            // its cost arithmetic would be thrown away.
            if !(emptied && last && take == remaining) {
                st.cost = st.cost.sub(lot_price.mul_int(signed_closed));
            }
            st.qty -= signed_closed;
            front.qty -= signed_closed;
            if emptied {
                st.lots.pop_front();
            }
            remaining -= take;
            closed += take;
        }
        let opened = remaining;
        if opened > 0 {
            let signed = opened * side_sign;
            st.lots.push_back(Lot {
                qty: signed,
                price: fill.price,
                ts: fill.ts,
            });
            st.cost = st.cost.add(price.mul_int(signed));
            st.qty += signed;
        }
        if st.lots.is_empty() {
            // Exact anyway; reset so no residue of scale lingers.
            st.cost = Amt::ZERO;
            st.avg_cost = Decimal::ZERO;
        } else {
            st.avg_cost = st.cost.div_int(st.qty);
        }
        let position_after = st.qty;

        // `Fill::cash_flow`, step for step.
        let notional = price.mul_int(fill.qty);
        let flow = match fill.side {
            Side::Buy => notional.neg().sub(commission),
            Side::Sell => notional.sub(commission),
        };
        self.cash = self.cash.add(flow);
        self.cash_read = self.cash.to_dec();
        self.cash_fx = self.cash.fx();
        self.commissions = self.commissions.add(commission);
        self.lot_pnl = self.lot_pnl.add(realized);

        if was_flat != (position_after == 0) {
            match self.open.binary_search(&idx) {
                // The last one (always, with one symbol) needs no shift.
                Ok(p) if position_after == 0 && p + 1 == self.open.len() => {
                    self.open.pop();
                }
                Ok(p) if position_after == 0 => {
                    self.open.remove(p);
                }
                Err(p) if position_after != 0 => self.open.insert(p, idx),
                _ => {}
            }
        }

        if closed > 0 {
            let pnl = realized.sub(commission);
            let s = &mut self.stats;
            s.read.trades += 1;
            // `pnl > 0` / `pnl < 0`; a negative zero is neither.
            if !pnl.is_zero() {
                if pnl.is_negative() {
                    s.read.losses += 1;
                    s.gross_loss = s.gross_loss.sub(pnl);
                    s.read.gross_loss = s.gross_loss.to_dec();
                } else {
                    s.read.wins += 1;
                    s.gross_win = s.gross_win.add(pnl);
                    s.read.gross_win = s.gross_win.to_dec();
                }
            }
        }

        FillEffect {
            realized: realized.to_dec(),
            closed_qty: closed,
            opened_qty: opened,
            position_after,
        }
    }

    /// Records the latest price for a symbol. Hot path: one store (plus a resize the first
    /// time an unknown symbol shows up).
    #[inline]
    pub fn mark(&mut self, sym: SymbolId, price: Price) {
        self.mark_given(sym, price, fx(price));
    }

    /// [`Ledger::mark`] for a caller that already has `fx(price)`.
    #[inline]
    pub fn mark_given(&mut self, sym: SymbolId, price: Price, price_fx: Option<i64>) {
        let st = match self.syms.get_mut(sym.index()) {
            Some(st) => st,
            None => self.sym_mut(sym),
        };
        st.mark = Some(price);
        st.mark_fx = price_fx;
    }

    pub fn mark_of(&self, sym: SymbolId) -> Option<Price> {
        self.syms.get(sym.index()).and_then(|s| s.mark)
    }

    pub fn cash(&self) -> Money {
        self.cash_read
    }

    pub fn starting_cash(&self) -> Money {
        self.starting_cash
    }

    /// Total commissions paid.
    pub fn commissions(&self) -> Money {
        self.commissions.to_dec()
    }

    /// Σ FIFO lot P&L − Σ all commissions (including those of fills that only opened).
    pub fn realized(&self) -> Money {
        self.lot_pnl.sub(self.commissions).to_dec()
    }

    /// Σ FIFO lot P&L of closed quantity, before commissions.
    pub fn realized_before_commissions(&self) -> Money {
        self.lot_pnl.to_dec()
    }

    /// Σ (mark − lot price) × qty over open lots; a never-marked position contributes 0.
    pub fn unrealized(&self) -> Money {
        self.open.iter().fold(Decimal::ZERO, |acc, &i| {
            let st = &self.syms[i];
            acc.saturating_add(st.value().saturating_sub(st.cost.to_dec()))
        })
    }

    /// Cash plus every position at its mark (at cost when never marked).
    pub fn equity(&self) -> Money {
        self.open.iter().fold(self.cash_read, |acc, &i| {
            acc.saturating_add(self.syms[i].value())
        })
    }

    /// Σ |qty × mark|.
    pub fn gross_exposure(&self) -> Money {
        self.open.iter().fold(Decimal::ZERO, |acc, &i| {
            acc.saturating_add(self.syms[i].value().abs())
        })
    }

    /// `cash()` in integers of 10^-8, when exact there.
    #[inline]
    pub fn cash_fixed(&self) -> Option<i64> {
        self.cash_fx
    }

    /// `equity()` in integers of 10^-8: `Some` only when every open position is marked, every
    /// shadow exact and every partial sum below 2^95 at the fixed scale. Then every partial
    /// sum and every position value (the difference of two partial sums) is below 2^96, so
    /// the `Decimal` fold computed each step exactly too (a mantissa at a scale of at most 8
    /// is no larger than the fixed value: no rounding, no saturation) and `equity()` equals
    /// it in value. Runs on every bar with a position: one bound test per position.
    #[inline]
    pub fn equity_fixed(&self) -> Option<i128> {
        let mut eq = i128::from(self.cash_fx?);
        for &i in &self.open {
            let st = &self.syms[i];
            // |eq| < 2^95 and |qty × mark| < 2^126: no overflow.
            eq += i128::from(st.qty) * i128::from(st.mark_fx?);
            if eq.unsigned_abs() >= 1 << 95 {
                return None;
            }
        }
        Some(eq)
    }

    /// [`Self::equity_fixed`] when every product and partial sum fits an `i64`: the same
    /// value, in 64-bit arithmetic (a backtest reads it at every timestamp).
    #[inline]
    pub fn equity_fixed_i64(&self) -> Option<i64> {
        let mut eq = self.cash_fx?;
        for &i in &self.open {
            let st = &self.syms[i];
            eq = eq.checked_add(st.qty.checked_mul(st.mark_fx?)?)?;
        }
        Some(eq)
    }

    /// `gross_exposure()` in integers of 10^-8, exact as [`Self::equity_fixed`]: the partial
    /// sums grow, so each value and partial sum is below the bounded total.
    #[inline]
    pub fn gross_exposure_fixed(&self) -> Option<i128> {
        let mut gross = 0i128;
        for &i in &self.open {
            let st = &self.syms[i];
            gross += (i128::from(st.qty) * i128::from(st.mark_fx?)).abs();
            below_2_96(gross)?;
        }
        Some(gross)
    }

    /// Signed shares held.
    #[inline]
    pub fn qty(&self, sym: SymbolId) -> Qty {
        self.syms.get(sym.index()).map_or(0, |s| s.qty)
    }

    /// The position in one symbol (flat positions included): `avg_cost` is the weighted
    /// average of open lots (0 when flat), `mark` the last mark or else `avg_cost`.
    pub fn position(&self, sym: SymbolId) -> Position {
        let Some(st) = self.syms.get(sym.index()) else {
            return Position {
                symbol: sym,
                qty: 0,
                avg_cost: Decimal::ZERO,
                mark: Decimal::ZERO,
            };
        };
        Position {
            symbol: sym,
            qty: st.qty,
            avg_cost: st.avg_cost,
            mark: st.mark.unwrap_or(st.avg_cost),
        }
    }

    /// Non-zero positions, in symbol order.
    pub fn positions(&self) -> impl Iterator<Item = Position> + '_ {
        self.open.iter().map(|&i| self.position(SymbolId(i as u16)))
    }

    /// Indices of the symbols with a non-zero position, ascending.
    pub fn open_symbols(&self) -> &[usize] {
        &self.open
    }

    pub fn open_positions(&self) -> u32 {
        self.open.len() as u32
    }

    /// Open lots, oldest first.
    pub fn lots(&self, sym: SymbolId) -> &VecDeque<Lot> {
        self.syms.get(sym.index()).map_or(&NO_LOTS, |s| &s.lots)
    }

    pub fn trade_stats(&self) -> TradeStats {
        self.stats.read
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact;
    use crate::types::{ClientOrderId, ExecId, Side};
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    const A: SymbolId = SymbolId(0);
    const B: SymbolId = SymbolId(1);

    fn fill(sym: SymbolId, side: Side, qty: Qty, price: Decimal, comm: Decimal, t: i64) -> Fill {
        Fill {
            exec_id: ExecId::from(format!("e{t}")),
            order_id: ClientOrderId(t as u64),
            symbol: sym,
            side,
            qty,
            price,
            commission: comm,
            ts: Ts(t),
        }
    }

    fn assert_identity(l: &Ledger) {
        assert_eq!(
            l.equity() - l.starting_cash(),
            l.realized() + l.unrealized()
        );
    }

    #[test]
    fn fifo_across_multiple_lots_with_partial_close() {
        let mut l = Ledger::new(2, dec!(10000));
        l.apply_fill(&fill(A, Side::Buy, 10, dec!(100), dec!(1), 1));
        l.apply_fill(&fill(A, Side::Buy, 20, dec!(110), dec!(1), 2));
        assert_eq!(l.qty(A), 30);
        // avg = (1000 + 2200) / 30 = 106.666…
        assert_eq!(l.position(A).avg_cost.round_dp(4), dec!(106.6667));
        // Sell 15 at 120: all 10 of lot 1, then 5 of lot 2.
        let e = l.apply_fill(&fill(A, Side::Sell, 15, dec!(120), dec!(1), 3));
        // lot1: 10 × (120 − 100) = 200; lot2: 5 × (120 − 110) = 50.
        assert_eq!(
            e,
            FillEffect {
                realized: dec!(250),
                closed_qty: 15,
                opened_qty: 0,
                position_after: 15
            }
        );
        let lots: Vec<_> = l.lots(A).iter().copied().collect();
        assert_eq!(
            lots,
            vec![Lot {
                qty: 15,
                price: dec!(110),
                ts: Ts(2)
            }]
        );
        // cash: 10000 − 1001 − 2201 + 1799 = 8597.
        assert_eq!(l.cash(), dec!(8597));
        assert_eq!(l.commissions(), dec!(3));
        assert_eq!(l.realized(), dec!(247));
        // Unmarked: valued at cost, unrealized 0; equity = 8597 + 15 × 110 = 10247.
        assert_eq!(l.unrealized(), dec!(0));
        assert_eq!(l.equity(), dec!(10247));
        assert_identity(&l);
        l.mark(A, dec!(105));
        // 15 × (105 − 110) = −75; equity = 8597 + 1575 = 10172.
        assert_eq!(l.unrealized(), dec!(-75));
        assert_eq!(l.equity(), dec!(10172));
        assert_eq!(l.gross_exposure(), dec!(1575));
        assert_identity(&l);
        let p = l.position(A);
        assert_eq!((p.qty, p.avg_cost, p.mark), (15, dec!(110), dec!(105)));
    }

    #[test]
    fn short_then_cover() {
        let mut l = Ledger::new(1, dec!(5000));
        let e = l.apply_fill(&fill(A, Side::Sell, 100, dec!(50), dec!(1), 1));
        assert_eq!((e.opened_qty, e.position_after), (100, -100));
        // Short proceeds go to cash: 5000 + 5000 − 1.
        assert_eq!(l.cash(), dec!(9999));
        l.mark(A, dec!(48));
        // (48 − 50) × −100 = +200.
        assert_eq!(l.unrealized(), dec!(200));
        // equity = 9999 − 4800 = 5199.
        assert_eq!(l.equity(), dec!(5199));
        assert_eq!(l.gross_exposure(), dec!(4800));
        assert_identity(&l);
        let e = l.apply_fill(&fill(A, Side::Buy, 100, dec!(45), dec!(1), 2));
        assert_eq!(
            e,
            FillEffect {
                realized: dec!(500),
                closed_qty: 100,
                opened_qty: 0,
                position_after: 0
            }
        );
        assert_eq!(l.cash(), dec!(5498));
        assert_eq!(l.realized(), dec!(498));
        assert_eq!(l.open_positions(), 0);
        assert_eq!(l.positions().count(), 0);
        assert_eq!(l.equity(), dec!(5498));
        assert_eq!(l.unrealized(), dec!(0));
        assert_identity(&l);
        assert_eq!(
            l.trade_stats(),
            TradeStats {
                trades: 1,
                wins: 1,
                losses: 0,
                gross_win: dec!(499),
                gross_loss: dec!(0)
            }
        );
        let p = l.position(A);
        assert_eq!((p.qty, p.avg_cost), (0, dec!(0)));
    }

    #[test]
    fn crossing_through_zero_opens_remainder_on_other_side() {
        let mut l = Ledger::new(1, dec!(0));
        l.apply_fill(&fill(A, Side::Buy, 30, dec!(10), dec!(0), 1));
        l.apply_fill(&fill(A, Side::Buy, 20, dec!(12), dec!(0), 2));
        // Sell 80 at 11: close 30 @10 (+30), 20 @12 (−20), open 30 short @11.
        let e = l.apply_fill(&fill(A, Side::Sell, 80, dec!(11), dec!(2), 3));
        assert_eq!(
            e,
            FillEffect {
                realized: dec!(10),
                closed_qty: 50,
                opened_qty: 30,
                position_after: -30
            }
        );
        let lots: Vec<_> = l.lots(A).iter().copied().collect();
        assert_eq!(
            lots,
            vec![Lot {
                qty: -30,
                price: dec!(11),
                ts: Ts(3)
            }]
        );
        let p = l.position(A);
        assert_eq!((p.qty, p.avg_cost, p.mark), (-30, dec!(11), dec!(11)));
        // cash: −300 − 240 + 880 − 2 = 338.
        assert_eq!(l.cash(), dec!(338));
        assert_eq!(l.realized(), dec!(8));
        assert_identity(&l);
        // Buy 50 at 9: cover 30 (+60), open 20 long.
        let e = l.apply_fill(&fill(A, Side::Buy, 50, dec!(9), dec!(0), 4));
        assert_eq!(
            (e.realized, e.closed_qty, e.opened_qty, e.position_after),
            (dec!(60), 30, 20, 20)
        );
        assert_eq!(l.realized(), dec!(68));
        l.mark(A, dec!(10));
        assert_eq!(l.unrealized(), dec!(20));
        // cash 338 − 450 = −112; equity = −112 + 200 = 88 = 68 + 20.
        assert_eq!(l.equity(), dec!(88));
        assert_identity(&l);
        // Trades: fill 3 (10 − 2 = 8, win) and fill 4 (60, win).
        let s = l.trade_stats();
        assert_eq!(
            (s.trades, s.wins, s.losses, s.gross_win),
            (2, 2, 0, dec!(68))
        );
    }

    #[test]
    fn trade_stats_counts_losses_after_commission() {
        let mut l = Ledger::new(1, dec!(1000));
        l.apply_fill(&fill(A, Side::Buy, 10, dec!(20), dec!(1), 1));
        // Closing 5 at 20.10: +0.50 gross, −1 commission → −0.50: a loss.
        l.apply_fill(&fill(A, Side::Sell, 5, dec!(20.10), dec!(1), 2));
        // Closing 5 at 20.20: +1.00 − 1.00 = 0: neither.
        l.apply_fill(&fill(A, Side::Sell, 5, dec!(20.20), dec!(1), 3));
        assert_eq!(
            l.trade_stats(),
            TradeStats {
                trades: 2,
                wins: 0,
                losses: 1,
                gross_win: dec!(0),
                gross_loss: dec!(0.50)
            }
        );
        assert_eq!(l.commissions(), dec!(3));
        // 0.50 + 1.00 − 3.
        assert_eq!(l.realized(), dec!(-1.50));
        assert_eq!(l.equity(), dec!(998.50));
        assert_identity(&l);
    }

    #[test]
    fn several_symbols_and_unknown_symbol_grows() {
        let mut l = Ledger::new(1, dec!(1000));
        l.apply_fill(&fill(B, Side::Buy, 2, dec!(100), dec!(0), 1));
        l.apply_fill(&fill(A, Side::Sell, 3, dec!(10), dec!(0), 2));
        l.mark(SymbolId(7), dec!(1));
        assert_eq!(l.mark_of(SymbolId(7)), Some(dec!(1)));
        assert_eq!(l.mark_of(SymbolId(9)), None);
        assert_eq!(l.qty(SymbolId(300)), 0);
        assert_eq!(l.lots(SymbolId(300)).len(), 0);
        let ps: Vec<_> = l.positions().map(|p| (p.symbol, p.qty)).collect();
        assert_eq!(ps, vec![(A, -3), (B, 2)]);
        assert_eq!(l.open_positions(), 2);
        l.mark(A, dec!(12));
        l.mark(B, dec!(90));
        // 1000 − 200 + 30 = 830; equity = 830 − 36 + 180 = 974.
        assert_eq!(l.equity(), dec!(974));
        // A: (12 − 10) × −3 = −6; B: (90 − 100) × 2 = −20.
        assert_eq!(l.unrealized(), dec!(-26));
        assert_eq!(l.gross_exposure(), dec!(216));
        assert_identity(&l);
    }

    #[test]
    fn invalid_fills_change_nothing() {
        let mut l = Ledger::new(1, dec!(1000));
        let before = l.clone();
        let bad = fill(A, Side::Buy, 0, dec!(10), dec!(0), 1);
        assert_eq!(l.apply_fill(&bad), FillEffect::default());
        assert!(matches!(
            l.try_apply_fill(&bad),
            Err(FillError::BadQty { .. })
        ));
        let neg = fill(A, Side::Buy, 5, dec!(-1), dec!(0), 2);
        assert!(matches!(
            l.try_apply_fill(&neg),
            Err(FillError::BadPrice { .. })
        ));
        let huge = fill(A, Side::Buy, i64::MAX, dec!(1), dec!(0), 3);
        assert!(l.try_apply_fill(&huge).is_err());
        assert_eq!(l, before);
        // Huge marks saturate instead of panicking.
        l.apply_fill(&fill(
            A,
            Side::Buy,
            MAX_FILL_QTY,
            MAX_FILL_PRICE,
            dec!(0),
            4,
        ));
        l.mark(A, Decimal::MAX);
        let _ = (l.equity(), l.unrealized(), l.gross_exposure());
    }

    /// A `Decimal` of any shape: small and huge mantissas, every scale, and negative zeros.
    fn any_dec() -> impl Strategy<Value = Decimal> {
        let mantissa = prop_oneof![
            3 => -10_000i128..10_000,
            3 => any::<i64>().prop_map(i128::from),
            1 => prop::sample::select(vec![
                i128::from(i64::MAX),
                i128::from(i64::MIN),
                1 << 63,
                (1 << 96) - 1,
                -((1 << 96) - 1),
                1 << 95,
            ]),
            1 => (any::<u128>(), any::<bool>())
                .prop_map(|(m, neg)| {
                    let m = (m % (1u128 << 96)) as i128;
                    if neg { -m } else { m }
                }),
        ];
        (mantissa, 0u32..=28, any::<bool>()).prop_map(|(m, scale, neg_zero)| {
            let mut d = Decimal::from_i128_with_scale(m, scale);
            if m == 0 && neg_zero {
                d.set_sign_negative(true);
            }
            d
        })
    }

    fn any_int() -> impl Strategy<Value = i64> {
        prop_oneof![-1_000i64..1_000, any::<i64>(), Just(i64::MIN), Just(0)]
    }

    /// Bit for bit: value, scale and sign (so `-0` and `0.00` are told apart).
    fn bits(d: Option<Decimal>) -> Option<[u8; 16]> {
        d.map(|d| d.serialize())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Every fast path returns exactly what the `Decimal` operator returns.
        #[test]
        fn exact_ops_equal_decimal_ops(a in any_dec(), b in any_dec(), q in any_int()) {
            if let Some(r) = a.checked_add(b) {
                prop_assert_eq!(bits(Some(exact::add(a, b))), bits(Some(r)));
            }
            if let Some(r) = a.checked_sub(b) {
                prop_assert_eq!(bits(Some(exact::sub(a, b))), bits(Some(r)));
            }
            let qd = Decimal::from(q);
            if let Some(r) = a.checked_mul(qd) {
                prop_assert_eq!(bits(Some(exact::mul_int(a, q))), bits(Some(r)));
            }
            prop_assert_eq!(bits(exact::checked_mul(a, b)), bits(a.checked_mul(b)));
            // A price times a stop factor (1 ± pct): the stops' case.
            let factor = Decimal::ONE - Decimal::new(q.rem_euclid(10_000), 4);
            prop_assert_eq!(bits(exact::checked_mul(a, factor)), bits(a.checked_mul(factor)));
        }

        /// Every [`Amt`] operation returns exactly what the `Decimal` operator returns, also
        /// for sums that cancel (a zero at some scale) and operands at the `i64` edges.
        #[test]
        fn amt_ops_equal_decimal_ops(
            a in any_dec(),
            b in any_dec(),
            q in any_int(),
            extra in 0u32..20,
        ) {
            let ua = Amt::from_dec(a);
            prop_assert_eq!(bits(Some(ua.to_dec())), bits(Some(a)));
            prop_assert_eq!(bits(Some(ua.neg().to_dec())), bits(Some(-a)));
            prop_assert_eq!(ua.fx(), fx(a));
            prop_assert_eq!(ua.is_zero(), a.is_zero());
            prop_assert_eq!(ua.is_negative(), a < Decimal::ZERO);
            let above = ua.magnitude_above(&MAX_FILL_PRICE_AT_SCALE);
            prop_assert_eq!(above, a.abs() > MAX_FILL_PRICE);
            let mut cancel = -a;
            cancel.rescale((a.scale() + extra).min(28));
            for b in [b, a, -a, cancel, b.normalize()] {
                let ub = Amt::from_dec(b);
                if let Some(r) = a.checked_add(b) {
                    prop_assert_eq!(bits(Some(ua.add(ub).to_dec())), bits(Some(r)));
                }
                if let Some(r) = a.checked_sub(b) {
                    prop_assert_eq!(bits(Some(ua.sub(ub).to_dec())), bits(Some(r)));
                }
            }
            let qd = Decimal::from(q);
            if let Some(r) = a.checked_mul(qd) {
                prop_assert_eq!(bits(Some(ua.mul_int(q).to_dec())), bits(Some(r)));
            }
            if q != 0 {
                if let Some(r) = a.checked_div(qd) {
                    prop_assert_eq!(bits(Some(ua.div_int(q))), bits(Some(r)));
                }
            }
        }

        /// Bounds right at the edge of `MAX_FILL_PRICE`, at every scale.
        #[test]
        fn max_fill_price_edge(scale in 0u32..=28, delta in -3i128..=3) {
            let Some(m) = 1_000_000_000i128.checked_mul(10i128.pow(scale)) else { return Ok(()) };
            if let Ok(d) = Decimal::try_from_i128_with_scale(m + delta, scale) {
                let above = |d| Amt::from_dec(d).magnitude_above(&MAX_FILL_PRICE_AT_SCALE);
                prop_assert_eq!(above(d), d.abs() > MAX_FILL_PRICE);
                prop_assert_eq!(above(-d), d.abs() > MAX_FILL_PRICE);
            }
        }

        /// The ledger answers, field by field and scale by scale, as the plain `Decimal`
        /// ledger it replaced: random fills (huge, tiny, many decimals, zero prices and
        /// commissions, shorts, fills crossing through zero) and marks.
        #[test]
        fn ledger_equals_decimal_reference(ops in prop::collection::vec(ref_op(), 1..40)) {
            let mut fast = Ledger::new(2, dec!(100000.00));
            let mut slow = RefLedger::new(2, dec!(100000.00));
            for (t, op) in ops.into_iter().enumerate() {
                match op {
                    RefOp::Fill { sym, buy, qty, price, comm } => {
                        let side = if buy { Side::Buy } else { Side::Sell };
                        let f = fill(SymbolId(sym), side, qty, price, comm, t as i64);
                        let got = fast.try_apply_fill(&f);
                        let want = slow.try_apply_fill(&f);
                        prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
                    }
                    RefOp::Mark { sym, price } => {
                        fast.mark(SymbolId(sym), price);
                        slow.mark(SymbolId(sym), price);
                    }
                }
                prop_assert_eq!(format!("{:?}", slow.summary()), format!("{:?}", summary(&fast)));
                shadows_agree(&fast)?;
            }
        }
    }

    /// The fixed-point shadows equal the `Decimal` answers whenever they are `Some`, and are
    /// `Some` whenever every input is exact and small.
    fn shadows_agree(l: &Ledger) -> Result<(), TestCaseError> {
        let at = |v: i128| Decimal::from_i128_with_scale(v, 8);
        prop_assert_eq!(l.cash_fixed(), fx(l.cash()));
        if let Some(e) = l.equity_fixed() {
            prop_assert_eq!(at(e), l.equity());
        }
        if let Some(e) = l.equity_fixed_i64() {
            prop_assert_eq!(Some(i128::from(e)), l.equity_fixed());
        } else if l.equity_fixed().is_some() {
            // The 64-bit form gives up only where a product or a partial sum is too wide.
            let mut sum = i128::from(l.cash_fixed().unwrap_or(0));
            let mut wide = false;
            for &i in l.open_symbols() {
                let s = SymbolId(i as u16);
                let m = l.mark_of(s).and_then(fx).unwrap_or(0);
                let p = i128::from(l.qty(s)) * i128::from(m);
                sum += p;
                wide |= i64::try_from(p).is_err() || i64::try_from(sum).is_err();
            }
            prop_assert!(wide);
        }
        if let Some(g) = l.gross_exposure_fixed() {
            prop_assert_eq!(at(g), l.gross_exposure());
        }
        let small = l.open_symbols().iter().all(|&i| {
            let s = SymbolId(i as u16);
            l.mark_of(s)
                .and_then(fx)
                .is_some_and(|m| (i128::from(m) * i128::from(l.qty(s))).abs() < 1 << 90)
        });
        if small {
            prop_assert!(l.gross_exposure_fixed().is_some());
            prop_assert_eq!(l.equity_fixed().is_some(), l.cash_fixed().is_some());
        }
        Ok(())
    }

    #[derive(Debug, Clone)]
    enum RefOp {
        Fill {
            sym: u16,
            buy: bool,
            qty: Qty,
            price: Decimal,
            comm: Decimal,
        },
        Mark {
            sym: u16,
            price: Decimal,
        },
    }

    fn price() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            4 => (1i64..10_000, 0u32..3).prop_map(|(m, s)| Decimal::new(m, s)),
            2 => (0i64..1_000_000_000_000, 0u32..12).prop_map(|(m, s)| Decimal::new(m, s)),
            1 => (0i64..=1_000_000_000, 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
            1 => (1i128..(1i128 << 96), 18u32..=28)
                .prop_map(|(m, s)| Decimal::from_i128_with_scale(m, s)),
            1 => Just(Decimal::ZERO),
            1 => (0u32..=28).prop_map(|s| Decimal::new(0, s)),
            1 => Just(MAX_FILL_PRICE),
        ]
    }

    fn ref_op() -> impl Strategy<Value = RefOp> {
        let qty = prop_oneof![4 => 1i64..300, 1 => 1i64..=MAX_FILL_QTY, 1 => Just(0i64)];
        let comm = prop_oneof![
            3 => (0i64..500, 0u32..4).prop_map(|(m, s)| Decimal::new(m, s)),
            1 => price().prop_map(|p| -p),
            1 => price(),
        ];
        prop_oneof![
            4 => (0u16..3, any::<bool>(), qty, price(), comm)
                .prop_map(|(sym, buy, qty, price, comm)| RefOp::Fill { sym, buy, qty, price, comm }),
            1 => (0u16..3, price()).prop_map(|(sym, price)| RefOp::Mark { sym, price }),
            1 => (0u16..3, price()).prop_map(|(sym, price)| RefOp::Mark { sym, price: -price }),
        ]
    }

    /// Everything the ledger reports, in `Debug` form.
    fn summary(l: &Ledger) -> String {
        let syms = (0..3).map(SymbolId);
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            l.cash(),
            l.commissions(),
            l.realized(),
            l.realized_before_commissions(),
            l.equity(),
            l.unrealized(),
            l.gross_exposure(),
            l.trade_stats(),
            syms.clone().map(|s| l.position(s)).collect::<Vec<_>>(),
            syms.map(|s| l.lots(s).clone()).collect::<Vec<_>>(),
            l.open_symbols(),
        )
    }

    /// The ledger as it was before the integer fast paths: every amount a plain `Decimal`
    /// operation, `avg_cost` divided on every read.
    struct RefLedger {
        syms: Vec<(Qty, Decimal, VecDeque<Lot>, Option<Decimal>)>,
        open: Vec<usize>,
        cash: Decimal,
        commissions: Decimal,
        lot_pnl: Decimal,
        stats: TradeStats,
    }

    impl RefLedger {
        fn new(n: usize, cash: Decimal) -> Self {
            RefLedger {
                syms: vec![(0, Decimal::ZERO, VecDeque::new(), None); n],
                open: Vec::new(),
                cash,
                commissions: Decimal::ZERO,
                lot_pnl: Decimal::ZERO,
                stats: TradeStats::default(),
            }
        }

        fn grow(&mut self, i: usize) {
            if i >= self.syms.len() {
                self.syms
                    .resize(i + 1, (0, Decimal::ZERO, VecDeque::new(), None));
            }
        }

        fn mark(&mut self, sym: SymbolId, p: Decimal) {
            self.grow(sym.index());
            self.syms[sym.index()].3 = Some(p);
        }

        fn try_apply_fill(&mut self, fill: &Fill) -> Result<FillEffect, FillError> {
            let held = self.syms.get(fill.symbol.index()).map_or(0, |s| s.0);
            let e = fill.exec_id.0.to_string();
            if fill.qty <= 0 || fill.qty > MAX_FILL_QTY {
                return Err(FillError::BadQty {
                    exec_id: e,
                    qty: fill.qty,
                    max: MAX_FILL_QTY,
                });
            }
            if fill.price < Decimal::ZERO || fill.price > MAX_FILL_PRICE {
                return Err(FillError::BadPrice {
                    exec_id: e,
                    price: fill.price,
                    max: MAX_FILL_PRICE,
                });
            }
            if fill.commission.abs() > MAX_FILL_PRICE {
                return Err(FillError::BadCommission {
                    exec_id: e,
                    commission: fill.commission,
                });
            }
            if held.checked_add(fill.qty).is_none() || held.checked_sub(fill.qty).is_none() {
                return Err(FillError::PositionOverflow {
                    exec_id: e,
                    symbol: fill.symbol.0,
                });
            }
            let (price, side_sign, idx) = (fill.price, fill.side.sign(), fill.symbol.index());
            self.grow(idx);
            let (qty, cost, lots, _) = &mut self.syms[idx];
            let was_flat = *qty == 0;
            let (mut remaining, mut realized, mut closed) = (fill.qty, Decimal::ZERO, 0);
            while remaining > 0 {
                let Some(front) = lots.front_mut() else { break };
                if front.qty.signum() == side_sign {
                    break;
                }
                let take = remaining.min(front.qty.abs());
                let signed_closed = take * front.qty.signum();
                let q = Decimal::from(signed_closed);
                realized += (price - front.price) * q;
                *cost -= front.price * q;
                *qty -= signed_closed;
                front.qty -= signed_closed;
                if front.qty == 0 {
                    lots.pop_front();
                }
                remaining -= take;
                closed += take;
            }
            let opened = remaining;
            if opened > 0 {
                let signed = opened * side_sign;
                lots.push_back(Lot {
                    qty: signed,
                    price,
                    ts: fill.ts,
                });
                *cost += price * Decimal::from(signed);
                *qty += signed;
            }
            if lots.is_empty() {
                *cost = Decimal::ZERO;
            }
            let position_after = *qty;
            let notional = fill.price * Decimal::from(fill.qty);
            self.cash += match fill.side {
                Side::Buy => -notional - fill.commission,
                Side::Sell => notional - fill.commission,
            };
            self.commissions += fill.commission;
            self.lot_pnl += realized;
            if was_flat != (position_after == 0) {
                match self.open.binary_search(&idx) {
                    Ok(p) if position_after == 0 => {
                        self.open.remove(p);
                    }
                    Err(p) if position_after != 0 => self.open.insert(p, idx),
                    _ => {}
                }
            }
            if closed > 0 {
                let pnl = realized - fill.commission;
                let s = &mut self.stats;
                s.trades += 1;
                if pnl > Decimal::ZERO {
                    s.wins += 1;
                    s.gross_win += pnl;
                } else if pnl < Decimal::ZERO {
                    s.losses += 1;
                    s.gross_loss -= pnl;
                }
            }
            Ok(FillEffect {
                realized,
                closed_qty: closed,
                opened_qty: opened,
                position_after,
            })
        }

        fn value(&self, i: usize) -> Decimal {
            let (qty, cost, _, mark) = &self.syms[i];
            match mark {
                Some(m) => m.saturating_mul(Decimal::from(*qty)),
                None => *cost,
            }
        }

        fn summary(&self) -> String {
            let equity = self
                .open
                .iter()
                .fold(self.cash, |acc, &i| acc.saturating_add(self.value(i)));
            let unrealized = self.open.iter().fold(Decimal::ZERO, |acc, &i| {
                acc.saturating_add(self.value(i).saturating_sub(self.syms[i].1))
            });
            let gross = self.open.iter().fold(Decimal::ZERO, |acc, &i| {
                acc.saturating_add(self.value(i).abs())
            });
            let positions: Vec<_> = (0..3u16)
                .map(|s| {
                    let (qty, cost, _, mark) =
                        self.syms.get(s as usize).cloned().unwrap_or_default();
                    let avg_cost = if qty == 0 {
                        Decimal::ZERO
                    } else {
                        cost / Decimal::from(qty)
                    };
                    Position {
                        symbol: SymbolId(s),
                        qty,
                        avg_cost,
                        mark: mark.unwrap_or(avg_cost),
                    }
                })
                .collect();
            let lots: Vec<_> = (0..3usize)
                .map(|s| self.syms.get(s).map(|x| x.2.clone()).unwrap_or_default())
                .collect();
            format!(
                "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                self.cash,
                self.commissions,
                self.lot_pnl - self.commissions,
                self.lot_pnl,
                equity,
                unrealized,
                gross,
                self.stats,
                positions,
                lots,
                self.open,
            )
        }
    }
}
