//! Protective broker stops (`[ib] broker_stops`): which GTC stop orders we hold at IB, one per
//! symbol, and what each symbol needs so its position is covered by exactly one of them.
//!
//! The engine does not track these orders (its own stops stay in force and fire first or not at
//! all); this book does, and the trading thread carries out its verdicts. Pure: no I/O.

use robo_core::stops::ArmedStop;
use robo_core::types::{
    ClientOrderId, OrderKind, OrderPurpose, OrderRequest, Price, Qty, Side, SymbolId, Tif, Ts,
};
use rust_decimal::{Decimal, RoundingStrategy};

/// One protective stop working at IB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerStop {
    pub id: ClientOrderId,
    /// Shares it sells (long) or buys back (short); always positive.
    pub qty: Qty,
    /// Shares of it already executed.
    pub filled: Qty,
}

/// What a symbol needs to be covered by exactly one stop of the right size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Nothing,
    /// No stop for an open position.
    Place,
    /// A stop for a flat symbol.
    Cancel(ClientOrderId),
    /// A stop whose size is not the position's.
    Replace(ClientOrderId),
}

/// The protective stops we hold, by symbol.
#[derive(Debug, Clone, Default)]
pub struct StopBook {
    by_sym: Vec<Option<BrokerStop>>,
    /// The position size at which IB refused a stop for the symbol: not asked again for that
    /// size until the next (re)connect ([`StopBook::clear_refusals`]), so a refusal is not
    /// repeated on every bar.
    refused: Vec<Option<Qty>>,
}

impl StopBook {
    pub fn new(n_symbols: usize) -> Self {
        StopBook {
            by_sym: vec![None; n_symbols],
            refused: vec![None; n_symbols],
        }
    }

    pub fn get(&self, sym: SymbolId) -> Option<BrokerStop> {
        self.by_sym.get(sym.index()).copied().flatten()
    }

    pub fn set(&mut self, sym: SymbolId, stop: Option<BrokerStop>) {
        if let Some(slot) = self.by_sym.get_mut(sym.index()) {
            *slot = stop;
        }
    }

    /// The symbol whose stop has id `id`.
    pub fn symbol_of(&self, id: ClientOrderId) -> Option<SymbolId> {
        self.by_sym
            .iter()
            .position(|s| s.is_some_and(|s| s.id == id))
            .and_then(|i| u16::try_from(i).ok())
            .map(SymbolId)
    }

    /// Books a fill of stop `id`; returns its symbol and whether the stop is now done.
    pub fn on_fill(&mut self, id: ClientOrderId, qty: Qty) -> Option<(SymbolId, bool)> {
        let sym = self.symbol_of(id)?;
        let slot = self.by_sym.get_mut(sym.index())?;
        let s = slot.as_mut()?;
        s.filled = s.filled.saturating_add(qty);
        let done = s.filled >= s.qty;
        if done {
            *slot = None;
        }
        Some((sym, done))
    }

    /// IB refused a stop for `sym` while the position was `position`.
    pub fn refused(&mut self, sym: SymbolId, position: Qty) {
        if let Some(r) = self.refused.get_mut(sym.index()) {
            *r = Some(position);
        }
    }

    pub fn clear_refusals(&mut self) {
        self.refused.iter_mut().for_each(|r| *r = None);
    }

    /// What `sym` needs for a position of `position` shares (signed).
    pub fn need(&self, sym: SymbolId, position: Qty) -> Need {
        let refused = self.refused.get(sym.index()).copied().flatten() == Some(position);
        match (self.get(sym), position) {
            (None, 0) => Need::Nothing,
            (None, _) if refused => Need::Nothing,
            (None, _) => Need::Place,
            (Some(s), 0) => Need::Cancel(s.id),
            (Some(s), p) if s.qty - s.filled != p.abs() => Need::Replace(s.id),
            (Some(_), _) => Need::Nothing,
        }
    }
}

/// The engine's stop level at entry: the tighter of the fixed stop and the trailing stop (the
/// higher for a long, the lower for a short), on the price grid IB accepts (a cent at or above
/// $1, 0.0001 below), rounded away from the market so it never sits on the wrong side of it.
pub fn level(armed: &ArmedStop) -> Option<Price> {
    let raw = match (armed.stop, armed.trailing()) {
        (Some(f), Some(t)) => Some(if armed.long { f.max(t) } else { f.min(t) }),
        (f, t) => f.or(t),
    }?;
    if raw <= Decimal::ZERO {
        return None;
    }
    let dp = if raw >= Decimal::ONE { 2 } else { 4 };
    let strategy = if armed.long {
        RoundingStrategy::ToNegativeInfinity
    } else {
        RoundingStrategy::ToPositiveInfinity
    };
    let p = raw.round_dp_with_strategy(dp, strategy);
    (p > Decimal::ZERO).then_some(p)
}

/// The order for a protective stop on `position` shares (signed) at `stop`.
pub fn request(
    id: ClientOrderId,
    sym: SymbolId,
    position: Qty,
    stop: Price,
    ts: Ts,
) -> OrderRequest {
    OrderRequest {
        id,
        symbol: sym,
        side: if position > 0 { Side::Sell } else { Side::Buy },
        qty: position.abs(),
        kind: OrderKind::Stop { stop },
        tif: Tif::Gtc,
        purpose: OrderPurpose::StopLoss,
        ts,
    }
}

/// A stored order row of ours that is a protective broker stop (the engine's orders are never
/// GTC stops).
pub fn is_broker_stop(kind: OrderKind, tif: Tif) -> bool {
    matches!(kind, OrderKind::Stop { .. }) && tif == Tif::Gtc
}

#[cfg(test)]
mod tests {
    use super::*;
    use robo_core::stops::{StopBook as EngineStops, StopConfig};
    use rust_decimal_macros::dec;

    fn armed(
        long: bool,
        entry: Price,
        hw: Price,
        sl: Option<Decimal>,
        tr: Option<Decimal>,
    ) -> Option<ArmedStop> {
        let mut b = EngineStops::new(
            1,
            StopConfig {
                stop_loss_pct: sl,
                trailing_pct: tr,
                take_profit_pct: None,
            },
        );
        b.arm(SymbolId(0), long, entry, hw);
        b.armed(SymbolId(0)).copied()
    }

    #[test]
    fn level_is_the_tighter_stop_on_the_price_grid() {
        // Long at 190: fixed 2 % = 186.20; trailing 5 % of 190 = 180.50 → 186.20.
        let a = armed(
            true,
            dec!(190),
            dec!(190),
            Some(dec!(0.02)),
            Some(dec!(0.05)),
        )
        .unwrap();
        assert_eq!(level(&a), Some(dec!(186.20)));
        // Trailing tighter: 1 % of 190.37 = 188.4663 → down to 188.46.
        let a = armed(
            true,
            dec!(190.37),
            dec!(190.37),
            Some(dec!(0.05)),
            Some(dec!(0.01)),
        )
        .unwrap();
        assert_eq!(level(&a), Some(dec!(188.46)));
        // Short at 50.01: fixed 2 % above = 51.0102 → up to 51.02.
        let a = armed(false, dec!(50.01), dec!(50.01), Some(dec!(0.02)), None).unwrap();
        assert_eq!(level(&a), Some(dec!(51.02)));
        // No stop configured: the engine arms nothing, so there is nothing to place.
        assert_eq!(armed(true, dec!(10), dec!(10), None, None), None);
    }

    #[test]
    fn needs_follow_the_position() {
        let s = SymbolId(1);
        let mut b = StopBook::new(2);
        assert_eq!(b.need(s, 0), Need::Nothing);
        assert_eq!(b.need(s, 100), Need::Place);
        // Refused at 100 shares: not asked again at that size until the next connection.
        b.refused(s, 100);
        assert_eq!(b.need(s, 100), Need::Nothing);
        assert_eq!(b.need(s, 150), Need::Place);
        b.clear_refusals();
        assert_eq!(b.need(s, 100), Need::Place);
        b.set(
            s,
            Some(BrokerStop {
                id: ClientOrderId(9),
                qty: 100,
                filled: 0,
            }),
        );
        assert_eq!(b.need(s, 100), Need::Nothing);
        assert_eq!(b.need(s, -100), Need::Nothing);
        assert_eq!(b.need(s, 150), Need::Replace(ClientOrderId(9)));
        assert_eq!(b.need(s, 0), Need::Cancel(ClientOrderId(9)));
        // A partial fill of 40 leaves 60 covered; the rest completes it.
        assert_eq!(b.on_fill(ClientOrderId(9), 40), Some((s, false)));
        assert_eq!(b.need(s, 60), Need::Nothing);
        assert_eq!(b.on_fill(ClientOrderId(9), 60), Some((s, true)));
        assert_eq!(b.get(s), None);
        assert_eq!(b.on_fill(ClientOrderId(9), 1), None);
    }
}
