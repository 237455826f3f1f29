//! Protective exits: fixed stop-loss, trailing stop (ratchets up only) and optional take-profit.
//!
//! [`StopBook`] holds one armed stop per symbol, in a `Vec` indexed by [`SymbolId`], and checks
//! each bar or price against it. Levels are exact decimals. A stop is armed on an entry fill
//! and re-armed from the positions after a restart, so it survives the process.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde::{Deserialize, Serialize};

use crate::types::{Bar, OrderPurpose, Price, SymbolId};

/// Stop settings (`[stops]` in config). `None` switches one off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StopConfig {
    /// Exit when the price falls this fraction below the entry (2%).
    pub stop_loss_pct: Option<Decimal>,
    /// Exit when the price falls this fraction below the high-water mark (5%).
    pub trailing_pct: Option<Decimal>,
    /// Exit when the price rises this fraction above the entry (off).
    pub take_profit_pct: Option<Decimal>,
}

impl Default for StopConfig {
    fn default() -> Self {
        StopConfig {
            stop_loss_pct: Some(dec!(0.02)),
            trailing_pct: Some(dec!(0.05)),
            take_profit_pct: None,
        }
    }
}

/// Why a [`StopConfig`] was refused, naming the `[stops]` key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stops.{field} must be a fraction in (0, 1), got {value}")]
pub struct StopConfigError {
    pub field: &'static str,
    pub value: Decimal,
}

impl StopConfig {
    /// No level is on: there is nothing to arm (a bare-strategy backtest).
    pub fn is_off(&self) -> bool {
        self.stop_loss_pct.is_none()
            && self.trailing_pct.is_none()
            && self.take_profit_pct.is_none()
    }

    /// Every level that is on must be a fraction strictly between 0 and 1.
    pub fn validate(&self) -> Result<(), StopConfigError> {
        let fields = [
            ("stop_loss_pct", self.stop_loss_pct),
            ("trailing_pct", self.trailing_pct),
            ("take_profit_pct", self.take_profit_pct),
        ];
        for (field, pct) in fields {
            if let Some(value) = pct {
                if value <= Decimal::ZERO || value >= Decimal::ONE {
                    return Err(StopConfigError { field, value });
                }
            }
        }
        Ok(())
    }
}

/// The stop levels of one position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmedStop {
    pub long: bool,
    pub entry: Price,
    /// The fixed stop: entry × (1 − stop_loss_pct) for longs, × (1 + ..) for shorts.
    pub stop: Option<Price>,
    /// The best price seen since entry: the high for longs, the low for shorts.
    pub high_water: Price,
    /// entry × (1 + take_profit_pct) for longs, × (1 − ..) for shorts.
    pub take_profit: Option<Price>,
    trailing_pct: Option<Decimal>,
}

/// A stop that was crossed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopHit {
    /// `StopLoss`, `TrailingStop` or `TakeProfit`.
    pub purpose: OrderPurpose,
    /// The level that was crossed.
    pub level: Price,
    /// The first price at or through the level: the level itself when the bar traded through
    /// it, the open when the bar gapped past it, the price itself for a quote.
    pub price: Price,
}

/// Armed stops for every symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct StopBook {
    cfg: StopConfig,
    slots: Vec<Option<ArmedStop>>,
    /// Integer copies of each armed stop's levels, so the common bar (nothing crossed) is
    /// answered, and a new extreme ratcheted, with integer arithmetic instead of `Decimal`.
    quiet: Vec<Quiet>,
    /// The trailing fraction as `num / den` (den a power of ten), when it has at most 8
    /// decimals; otherwise the fast path is off and every bar takes the exact one.
    trail: Option<Trail>,
}

/// The band inside which a bar triggers nothing, at the fixed scale of
/// [`crate::indicators::exact_sma::fx`]. For a long: the low stays above `stop`, `low × den`
/// above `trail_rhs` = high-water × (den − num) (the low above the trailing level, compared
/// exactly without dividing), and the high under `tp`. Shorts mirror it. A product that
/// would leave an `i64` makes the bar take the exact path, never skip it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Quiet {
    armed: bool,
    /// Fast path usable: armed, and every level exact at the fixed scale.
    on: bool,
    long: bool,
    stop: i64,
    hw: i64,
    trail_rhs: i64,
    tp: i64,
}

/// The trailing fraction num/den (den a power of ten) as the factors of [`Quiet`]:
/// `den`, and high-water multipliers `den − num` (longs) and `den + num` (shorts).
/// `num = 0` is trailing off.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trail {
    num: i64,
    den: i64,
    k_long: i64,
    k_short: i64,
}

impl Trail {
    fn new(num: i128, den: i128) -> Option<Trail> {
        let (num, den) = (i64::try_from(num).ok()?, i64::try_from(den).ok()?);
        Some(Trail {
            num,
            den,
            k_long: den.checked_sub(num)?,
            k_short: den.checked_add(num)?,
        })
    }

    /// hw × k for the band, or the bound that keeps every bar on the exact path when the
    /// product leaves an `i64`; the never-trigger bound when trailing is off.
    #[inline]
    fn rhs(&self, hw: i64, long: bool) -> i64 {
        match (self.num, long) {
            (0, true) => i64::MIN,
            (0, false) => i64::MAX,
            (_, true) => hw.checked_mul(self.k_long).unwrap_or(i64::MAX),
            (_, false) => hw.checked_mul(self.k_short).unwrap_or(i64::MIN),
        }
    }

    /// True when `adverse` is strictly on the safe side of the trailing level.
    #[inline(always)]
    fn clear(&self, adverse: i64, rhs: i64, long: bool) -> bool {
        match adverse.checked_mul(self.den) {
            Some(a) if long => a > rhs,
            Some(a) => a < rhs,
            None => false,
        }
    }
}

/// `price × (1 + sign × pct)`, or `None` when off or on overflow (a price that large is not a
/// price, and a stop there would never trigger anyway).
fn level(price: Price, pct: Option<Decimal>, up: bool) -> Option<Price> {
    let pct = pct?;
    let factor = if up {
        crate::exact::add(Decimal::ONE, pct)
    } else {
        crate::exact::sub(Decimal::ONE, pct)
    };
    crate::exact::checked_mul(price, factor)
}

impl ArmedStop {
    fn new(cfg: &StopConfig, long: bool, entry: Price, high_water: Price) -> Self {
        let high_water = if long {
            high_water.max(entry)
        } else {
            high_water.min(entry)
        };
        ArmedStop {
            long,
            entry,
            stop: level(entry, cfg.stop_loss_pct, !long),
            high_water,
            take_profit: level(entry, cfg.take_profit_pct, long),
            trailing_pct: cfg.trailing_pct,
        }
    }

    /// high_water × (1 − trailing_pct) for longs, × (1 + ..) for shorts; it only ever
    /// tightens, because the high-water mark only moves one way. Derived, never stored, so
    /// ratcheting on a bar is one store.
    pub fn trailing(&self) -> Option<Price> {
        level(self.high_water, self.trailing_pct, !self.long)
    }

    /// The tighter of the fixed and trailing stops (the higher for longs, the lower for
    /// shorts); on a tie the fixed stop.
    fn protective(&self) -> Option<(OrderPurpose, Price)> {
        let fixed = self.stop.map(|p| (OrderPurpose::StopLoss, p));
        let trail = self.trailing().map(|p| (OrderPurpose::TrailingStop, p));
        match (fixed, trail) {
            (Some(f), Some(t)) => {
                let trail_tighter = if self.long { t.1 > f.1 } else { t.1 < f.1 };
                Some(if trail_tighter { t } else { f })
            }
            (f, t) => f.or(t),
        }
    }

    /// Checks one price range [low, high] that opened at `open`, against the levels as they
    /// stand. A gap through a level on the open is decided first (it happened first); inside
    /// the bar the stop is assumed to come before the take-profit, the cautious reading.
    fn check(&self, open: Price, low: Price, high: Price) -> Option<StopHit> {
        let (adverse, favorable) = if self.long { (low, high) } else { (high, low) };
        // `below(a, b)`: a ≤ b for longs, a ≥ b for shorts ("at or below" in the long sense).
        let below = |a: Price, b: Price| if self.long { a <= b } else { a >= b };
        let hit = |purpose, level: Price, gapped: bool| StopHit {
            purpose,
            level,
            price: if gapped { open } else { level },
        };
        if let Some(tp) = self.take_profit {
            if below(tp, open) {
                return Some(hit(OrderPurpose::TakeProfit, tp, true));
            }
        }
        if let Some((purpose, lvl)) = self.protective() {
            if below(adverse, lvl) {
                return Some(hit(purpose, lvl, below(open, lvl)));
            }
        }
        match self.take_profit {
            Some(tp) if below(tp, favorable) => Some(hit(OrderPurpose::TakeProfit, tp, false)),
            _ => None,
        }
    }

    /// Moves the high-water mark with a new extreme (the trailing level follows it).
    fn ratchet(&mut self, extreme: Price) {
        let better = if self.long {
            extreme > self.high_water
        } else {
            extreme < self.high_water
        };
        if better {
            self.high_water = extreme;
        }
    }
}

/// `pct` as (num, den) with den = 10^scale, when the scale is at most 8.
fn ratio(pct: Option<Decimal>) -> Option<(i128, i128)> {
    let p = pct?;
    if p.scale() > 8 {
        return None;
    }
    Some((p.mantissa(), 10i128.pow(p.scale())))
}

impl StopBook {
    pub fn new(n_symbols: usize, cfg: StopConfig) -> Self {
        StopBook {
            cfg,
            slots: vec![None; n_symbols],
            quiet: vec![Quiet::default(); n_symbols],
            trail: match cfg.trailing_pct {
                None => Trail::new(0, 1),
                pct => ratio(pct)
                    .filter(|&(num, _)| num != 0)
                    .and_then(|(n, d)| Trail::new(n, d)),
            },
        }
    }

    pub fn config(&self) -> &StopConfig {
        &self.cfg
    }

    /// Arms (or re-arms, replacing) the stop of `sym`: on an entry fill, and from the
    /// positions after a restart with `high_water` the best mark seen (it is never taken
    /// below the entry for longs, above it for shorts). A non-positive entry is not a price
    /// and arms nothing.
    pub fn arm(&mut self, sym: SymbolId, long: bool, entry: Price, high_water: Price) {
        // With every level off a stop could never trigger; arming it would only cost a
        // check per bar.
        if entry <= Decimal::ZERO || self.cfg.is_off() {
            return;
        }
        let i = sym.index();
        if i >= self.slots.len() {
            self.slots.resize(i + 1, None);
        }
        let armed = ArmedStop::new(&self.cfg, long, entry, high_water);
        self.set_quiet(i, Some(&armed));
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(armed);
        }
    }

    fn set_quiet(&mut self, i: usize, armed: Option<&ArmedStop>) {
        if i >= self.quiet.len() {
            self.quiet.resize(i + 1, Quiet::default());
        }
        self.quiet[i] = armed.map_or(Quiet::default(), |a| self.quiet_of(a));
    }

    /// The integer band of an armed stop; `on: false` when a level is not exact at the
    /// fixed scale (then every bar takes the `Decimal` path).
    fn quiet_of(&self, a: &ArmedStop) -> Quiet {
        use crate::indicators::exact_sma::fx;
        let long = a.long;
        // A level that is off never triggers: put it beyond any price.
        let (never_exit, never_tp) = if long {
            (i64::MIN, i64::MAX)
        } else {
            (i64::MAX, i64::MIN)
        };
        let lvl = |p: Option<Price>, never: i64| match p {
            None => Some(never),
            Some(p) => fx(p),
        };
        let (Some(stop), Some(tp), Some(hw), Some(trail)) = (
            lvl(a.stop, never_exit),
            lvl(a.take_profit, never_tp),
            fx(a.high_water),
            self.trail,
        ) else {
            return Quiet {
                armed: true,
                ..Quiet::default()
            };
        };
        Quiet {
            armed: true,
            on: true,
            long,
            stop,
            hw,
            trail_rhs: trail.rhs(hw, long),
            tp,
        }
    }

    /// Removes the stop of `sym` (the position closed).
    pub fn disarm(&mut self, sym: SymbolId) {
        if let Some(slot) = self.slots.get_mut(sym.index()) {
            *slot = None;
        }
        if let Some(q) = self.quiet.get_mut(sym.index()) {
            *q = Quiet::default();
        }
    }

    pub fn armed(&self, sym: SymbolId) -> Option<&ArmedStop> {
        self.slots.get(sym.index()).and_then(Option::as_ref)
    }

    /// Checks a bar against the levels as they were before it (longs: the low against the
    /// stops, the high against the take-profit; shorts mirrored), then ratchets the
    /// high-water mark with the bar's extreme. A hit does not disarm: the stop keeps
    /// reporting while the price stays through it, so an exit that failed is retried; disarm
    /// when the position closes. Bars with non-positive prices are ignored.
    #[inline]
    pub fn on_bar(&mut self, bar: &Bar) -> Option<StopHit> {
        match self.quiet.get(bar.symbol.index()) {
            Some(q) if q.armed => self.on_bar_armed(bar),
            _ => None,
        }
    }

    #[inline(always)]
    fn on_bar_armed(&mut self, bar: &Bar) -> Option<StopHit> {
        let i = bar.symbol.index();
        let q = self.quiet.get(i)?;
        if !q.on {
            return self.on_bar_slow(bar);
        }
        let Some((o, h, l)) = crate::exact::fx3(bar.open, bar.high, bar.low) else {
            return self.on_bar_slow(bar);
        };
        if o <= 0 || h <= 0 || l <= 0 {
            return None;
        }
        let Some(trail) = self.trail else {
            return self.on_bar_slow(bar);
        };
        let (low, high) = (l.min(o), h.max(o));
        let (quiet, better, extreme) = if q.long {
            let clear = low > q.stop && trail.clear(low, q.trail_rhs, true);
            (clear && high < q.tp, high > q.hw, high)
        } else {
            let clear = high < q.stop && trail.clear(high, q.trail_rhs, false);
            (clear && low > q.tp, low < q.hw, low)
        };
        if !quiet {
            return self.on_bar_slow(bar);
        }
        if better {
            if let (Some(q), Some(Some(a))) = (self.quiet.get_mut(i), self.slots.get_mut(i)) {
                q.hw = extreme;
                q.trail_rhs = trail.rhs(extreme, a.long);
                // `Decimal::max`/`min` on the bar, decided by the exact integer copies.
                a.high_water = match (a.long, h < o, l > o) {
                    (true, true, _) | (false, _, true) => bar.open,
                    (true, false, _) => bar.high,
                    (false, _, false) => bar.low,
                };
            }
        }
        None
    }

    /// A bar the integer band cannot answer: the exact evaluation, then a fresh band.
    fn on_bar_slow(&mut self, bar: &Bar) -> Option<StopHit> {
        let i = bar.symbol.index();
        let hit = self.on_bar_exact(bar);
        let armed = self.slots.get(i).and_then(Option::as_ref).copied();
        self.set_quiet(i, armed.as_ref());
        hit
    }

    /// The exact (`Decimal`) evaluation behind [`Self::on_bar`].
    fn on_bar_exact(&mut self, bar: &Bar) -> Option<StopHit> {
        let armed = self.slots.get_mut(bar.symbol.index())?.as_mut()?;
        let zero = Decimal::ZERO;
        if bar.open <= zero || bar.low <= zero || bar.high <= zero {
            return None;
        }
        // Tolerate a bar whose open lies outside [low, high].
        let low = bar.low.min(bar.open);
        let high = bar.high.max(bar.open);
        let hit = armed.check(bar.open, low, high);
        armed.ratchet(if armed.long { high } else { low });
        hit
    }

    /// Checks a single price (a quote's last, a trade), then ratchets with it. Non-positive
    /// prices are ignored.
    pub fn on_price(&mut self, sym: SymbolId, price: Price) -> Option<StopHit> {
        let armed = self.slots.get_mut(sym.index())?.as_mut()?;
        if price <= Decimal::ZERO {
            return None;
        }
        let hit = armed.check(price, price, price);
        armed.ratchet(price);
        let armed = *armed;
        self.set_quiet(sym.index(), Some(&armed));
        hit
    }
}

#[cfg(test)]
mod off {
    use super::*;
    use crate::types::Ts;

    #[test]
    fn with_every_level_off_nothing_is_armed() {
        let off = StopConfig {
            stop_loss_pct: None,
            trailing_pct: None,
            take_profit_pct: None,
        };
        assert!(off.is_off());
        let mut book = StopBook::new(1, off);
        let sym = SymbolId(0);
        book.arm(sym, true, Decimal::new(100, 0), Decimal::new(100, 0));
        assert_eq!(book.armed(sym), None);
        let crash = Bar {
            symbol: sym,
            ts: Ts(0),
            open: Decimal::new(1, 0),
            high: Decimal::new(1, 0),
            low: Decimal::new(1, 0),
            close: Decimal::new(1, 0),
            volume: 1,
        };
        assert_eq!(book.on_bar(&crash), None);
        let on = StopConfig {
            trailing_pct: Some(Decimal::new(5, 2)),
            ..off
        };
        assert!(!on.is_off());
    }
}

#[cfg(test)]
mod fast_path_props {
    use super::*;
    use crate::types::Ts;
    use proptest::prelude::*;

    proptest! {
        /// The integer fast path answers exactly as the `Decimal` evaluation, bar after bar,
        /// for longs and shorts, with every level on or off.
        #[test]
        fn fast_path_equals_exact(
            long in any::<bool>(),
            entry in 1_000i64..20_000,
            sl in prop::option::of(1u32..500),
            tr in prop::option::of(1u32..500),
            tp in prop::option::of(1u32..500),
            moves in prop::collection::vec((-300i64..300, 0i64..200, 0i64..200, -300i64..300), 1..80),
            // Extra decimal places per field (same value): bars whose prices differ in scale.
            extra in prop::collection::vec(0u32..3, 3),
            // Per bar: 0 leaves it; 1, 2, 3 put its adverse extreme exactly on the trailing
            // level, the fixed stop, or its favourable one on the take-profit, where an
            // off-by-one band would show.
            snaps in prop::collection::vec(prop_oneof![2 => Just(0u8), 1 => 1u8..4], 80),
        ) {
            let pct = |bp: Option<u32>| bp.map(|b| Decimal::new(i64::from(b), 4));
            let cfg = StopConfig { stop_loss_pct: pct(sl), trailing_pct: pct(tr), take_profit_pct: pct(tp) };
            let sym = SymbolId(0);
            let mut fast = StopBook::new(1, cfg);
            let mut exact = StopBook::new(1, cfg);
            let e = Decimal::new(entry, 2);
            fast.arm(sym, long, e, e);
            exact.arm(sym, long, e, e);
            let mut px = entry;
            for (k, (dopen, up, down, dclose)) in moves.into_iter().enumerate() {
                let open = (px + dopen).max(1);
                let close = (open + dclose).max(1);
                let high = open.max(close) + up;
                let low = (open.min(close) - down).max(1);
                px = close;
                let px_at = |v: i64, k: u32| Decimal::new(v * 10i64.pow(k), 2 + k);
                let b = Bar { symbol: sym, ts: Ts(0), open: px_at(open, extra[0]), high: px_at(high, extra[1]),
                              low: px_at(low, extra[2]), close: Decimal::new(close, 2), volume: 1 };
                let mut b = b;
                let armed = exact.armed(sym).copied();
                let level = armed.and_then(|a| match snaps[k] {
                    1 => a.trailing(),
                    2 => a.stop,
                    3 => a.take_profit,
                    _ => None,
                });
                if let Some(lv) = level.filter(|l| *l > Decimal::ZERO) {
                    let favourable = snaps[k] == 3;
                    // For a long the adverse extreme is the low; for a short the high.
                    if long != favourable {
                        b.low = lv;
                        b.high = b.high.max(lv);
                        b.open = b.open.max(lv);
                    } else {
                        b.high = lv;
                        b.low = b.low.min(lv);
                        b.open = b.open.min(lv);
                    }
                }
                prop_assert_eq!(fast.on_bar(&b), exact.on_bar_exact(&b));
                prop_assert_eq!(fast.armed(sym), exact.armed(sym));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Ts;

    const S: SymbolId = SymbolId(1);

    fn bar(open: Decimal, high: Decimal, low: Decimal, close: Decimal) -> Bar {
        Bar {
            symbol: S,
            ts: Ts(0),
            open,
            high,
            low,
            close,
            volume: 100,
        }
    }

    fn book() -> StopBook {
        StopBook::new(3, StopConfig::default())
    }

    fn hit(purpose: OrderPurpose, level: Decimal, price: Decimal) -> Option<StopHit> {
        Some(StopHit {
            purpose,
            level,
            price,
        })
    }

    #[test]
    fn arm_computes_exact_levels() {
        let mut b = book();
        b.arm(S, true, dec!(100), dec!(100));
        let a = *b.armed(S).unwrap();
        assert_eq!(a.stop, Some(dec!(98)));
        assert_eq!(a.trailing(), Some(dec!(95)));
        assert_eq!(a.take_profit, None);
        assert_eq!(a.high_water, dec!(100));
    }

    #[test]
    fn fixed_stop_triggers_at_exactly_two_percent() {
        let mut b = book();
        b.arm(S, true, dec!(100), dec!(100));
        assert_eq!(b.on_price(S, dec!(98.01)), None);
        assert_eq!(
            b.on_price(S, dec!(98)),
            hit(OrderPurpose::StopLoss, dec!(98), dec!(98))
        );
        let mut b = book();
        b.arm(S, true, dec!(100), dec!(100));
        assert_eq!(
            b.on_bar(&bar(dec!(99), dec!(99.5), dec!(98.01), dec!(99))),
            None
        );
        assert_eq!(
            b.on_bar(&bar(dec!(99), dec!(99.5), dec!(98), dec!(99))),
            hit(OrderPurpose::StopLoss, dec!(98), dec!(98))
        );
    }

    #[test]
    fn trailing_ratchets_up_never_down() {
        let mut b = book();
        b.arm(S, true, dec!(100), dec!(100));
        // The bar's own high does not judge its low: 113 is checked against 95, then 120 ratchets.
        assert_eq!(
            b.on_bar(&bar(dec!(101), dec!(120), dec!(113), dec!(118))),
            None
        );
        assert_eq!(b.armed(S).unwrap().trailing(), Some(dec!(114)));
        assert_eq!(b.armed(S).unwrap().high_water, dec!(120));
        // A lower high leaves it.
        assert_eq!(
            b.on_bar(&bar(dec!(118), dec!(119), dec!(115), dec!(116))),
            None
        );
        assert_eq!(b.armed(S).unwrap().trailing(), Some(dec!(114)));
        assert_eq!(b.on_price(S, dec!(114.5)), None);
        assert_eq!(b.armed(S).unwrap().trailing(), Some(dec!(114)));
        // Both levels crossed: the tighter (trailing 114 > fixed 98) is reported.
        assert_eq!(
            b.on_bar(&bar(dec!(115), dec!(115), dec!(97), dec!(97))),
            hit(OrderPurpose::TrailingStop, dec!(114), dec!(114))
        );
    }

    #[test]
    fn fixed_stop_wins_when_tighter() {
        let mut b = book();
        b.arm(S, true, dec!(100), dec!(100));
        // Trailing 95 is below the fixed 98; a bar to 94 crosses both.
        assert_eq!(
            b.on_bar(&bar(dec!(99), dec!(99), dec!(94), dec!(94))),
            hit(OrderPurpose::StopLoss, dec!(98), dec!(98))
        );
    }

    #[test]
    fn gap_reports_the_open() {
        let mut b = book();
        b.arm(S, true, dec!(100), dec!(100));
        assert_eq!(
            b.on_bar(&bar(dec!(90), dec!(91), dec!(89), dec!(90.5))),
            hit(OrderPurpose::StopLoss, dec!(98), dec!(90))
        );
        // The hit does not disarm: it keeps reporting until the position closes.
        assert!(b
            .on_bar(&bar(dec!(90), dec!(91), dec!(89), dec!(90.5)))
            .is_some());
        b.disarm(S);
        assert_eq!(
            b.on_bar(&bar(dec!(90), dec!(91), dec!(89), dec!(90.5))),
            None
        );
    }

    #[test]
    fn take_profit() {
        let cfg = StopConfig {
            take_profit_pct: Some(dec!(0.05)),
            ..StopConfig::default()
        };
        let mut b = StopBook::new(3, cfg);
        b.arm(S, true, dec!(100), dec!(100));
        assert_eq!(b.armed(S).unwrap().take_profit, Some(dec!(105)));
        assert_eq!(
            b.on_bar(&bar(dec!(101), dec!(104.99), dec!(100), dec!(104))),
            None
        );
        assert_eq!(
            b.on_bar(&bar(dec!(104), dec!(105), dec!(103), dec!(104))),
            hit(OrderPurpose::TakeProfit, dec!(105), dec!(105))
        );
        // Gap over the target fills at the open.
        b.arm(S, true, dec!(100), dec!(100));
        assert_eq!(
            b.on_bar(&bar(dec!(107), dec!(108), dec!(106), dec!(107))),
            hit(OrderPurpose::TakeProfit, dec!(105), dec!(107))
        );
        // Both the stop and the target inside one bar: the stop, the cautious reading.
        b.arm(S, true, dec!(100), dec!(100));
        assert_eq!(
            b.on_bar(&bar(dec!(100), dec!(106), dec!(97), dec!(100))),
            hit(OrderPurpose::StopLoss, dec!(98), dec!(98))
        );
    }

    #[test]
    fn shorts_are_mirrored() {
        let cfg = StopConfig {
            take_profit_pct: Some(dec!(0.1)),
            ..StopConfig::default()
        };
        let mut b = StopBook::new(3, cfg);
        b.arm(S, false, dec!(100), dec!(100));
        let a = *b.armed(S).unwrap();
        assert_eq!(
            (a.stop, a.trailing(), a.take_profit),
            (Some(dec!(102)), Some(dec!(105)), Some(dec!(90)))
        );
        // The low ratchets the low-water mark down: trailing 92 × 1.05 = 96.6.
        assert_eq!(b.on_bar(&bar(dec!(99), dec!(99), dec!(92), dec!(93))), None);
        assert_eq!(b.armed(S).unwrap().trailing(), Some(dec!(96.6)));
        assert_eq!(b.armed(S).unwrap().high_water, dec!(92));
        // A higher low leaves it.
        assert_eq!(b.on_bar(&bar(dec!(93), dec!(95), dec!(94), dec!(94))), None);
        assert_eq!(b.armed(S).unwrap().trailing(), Some(dec!(96.6)));
        assert_eq!(
            b.on_bar(&bar(dec!(95), dec!(96.6), dec!(95), dec!(96))),
            hit(OrderPurpose::TrailingStop, dec!(96.6), dec!(96.6))
        );
        // Gap up through the stop fills at the open.
        b.arm(S, false, dec!(100), dec!(100));
        assert_eq!(
            b.on_bar(&bar(dec!(110), dec!(111), dec!(109), dec!(110))),
            hit(OrderPurpose::StopLoss, dec!(102), dec!(110))
        );
        b.arm(S, false, dec!(100), dec!(100));
        assert_eq!(
            b.on_price(S, dec!(89)),
            hit(OrderPurpose::TakeProfit, dec!(90), dec!(89))
        );
    }

    #[test]
    fn rearm_from_a_position() {
        let mut b = book();
        // After a restart: long at 100, marked up to 120 since.
        b.arm(S, true, dec!(100), dec!(120));
        let a = *b.armed(S).unwrap();
        assert_eq!(
            (a.stop, a.trailing(), a.high_water),
            (Some(dec!(98)), Some(dec!(114)), dec!(120))
        );
        assert_eq!(
            b.on_price(S, dec!(114)),
            hit(OrderPurpose::TrailingStop, dec!(114), dec!(114))
        );
        // A mark below the entry never loosens the trailing level below entry-based.
        b.arm(S, true, dec!(100), dec!(90));
        assert_eq!(b.armed(S).unwrap().high_water, dec!(100));
        assert_eq!(b.armed(S).unwrap().trailing(), Some(dec!(95)));
        // Shorts: the low-water is never above the entry.
        b.arm(S, false, dec!(100), dec!(110));
        assert_eq!(b.armed(S).unwrap().high_water, dec!(100));
    }

    #[test]
    fn unarmed_unknown_and_bad_data() {
        let mut b = book();
        assert_eq!(b.on_bar(&bar(dec!(1), dec!(1), dec!(1), dec!(1))), None);
        assert_eq!(b.on_price(SymbolId(999), dec!(1)), None);
        assert_eq!(b.armed(SymbolId(999)), None);
        b.disarm(SymbolId(999));
        b.arm(S, true, dec!(0), dec!(0));
        assert_eq!(b.armed(S), None);
        // A symbol beyond the initial size can still be armed.
        b.arm(SymbolId(10), true, dec!(50), dec!(50));
        assert_eq!(b.armed(SymbolId(10)).unwrap().stop, Some(dec!(49)));
        // A zero price is bad data, not a crash through the stop.
        b.arm(S, true, dec!(100), dec!(100));
        assert_eq!(b.on_price(S, dec!(0)), None);
        assert_eq!(b.on_bar(&bar(dec!(99), dec!(99), dec!(0), dec!(99))), None);
    }

    #[test]
    fn switched_off_levels() {
        let cfg = StopConfig {
            stop_loss_pct: None,
            trailing_pct: None,
            take_profit_pct: None,
        };
        let mut b = StopBook::new(3, cfg);
        b.arm(S, true, dec!(100), dec!(100));
        assert_eq!(b.on_price(S, dec!(1)), None);
        let only_trail = StopConfig {
            stop_loss_pct: None,
            ..StopConfig::default()
        };
        let mut b = StopBook::new(3, only_trail);
        b.arm(S, true, dec!(100), dec!(100));
        assert_eq!(
            b.on_price(S, dec!(95)),
            hit(OrderPurpose::TrailingStop, dec!(95), dec!(95))
        );
    }

    #[test]
    fn validate_names_the_field() {
        assert_eq!(StopConfig::default().validate(), Ok(()));
        let c = StopConfig {
            stop_loss_pct: Some(dec!(0)),
            ..StopConfig::default()
        };
        assert_eq!(c.validate().map_err(|e| e.field), Err("stop_loss_pct"));
        let c = StopConfig {
            trailing_pct: Some(dec!(1)),
            ..StopConfig::default()
        };
        assert_eq!(c.validate().map_err(|e| e.field), Err("trailing_pct"));
        let c = StopConfig {
            take_profit_pct: Some(dec!(-0.1)),
            ..StopConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "stops.take_profit_pct must be a fraction in (0, 1), got -0.1"
        );
    }
}
