//! SMA crossover, the old system's baseline: buy when the fast SMA crosses above the slow one,
//! sell when it crosses below.
//!
//! A crossover is a change of sign of (fast − slow). An exact tie keeps the previous sign, as
//! backtrader's `CrossOver` does, and ties are exact because the averages are computed on
//! integers (see [`crate::indicators::exact_sma`]). The first bar on which both averages are warm sets the sign and
//! never signals by itself.

use std::cmp::Ordering;
use std::ops::{Add, Mul, Sub};

use super::{Reason, Signal, SmaCrossoverParams, Strategy};
use crate::decision::Inputs;
use crate::indicators::exact_sma::{fx, to_fixed_given};
use crate::types::Bar;
use rust_decimal::Decimal;

/// Both averages over one ring of closes at the fixed scale (see
/// [`to_fixed`](crate::indicators::exact_sma::to_fixed)): the shorter window is a suffix of the
/// longer, so one store per bar feeds both running sums.
///
/// The ring starts in `i64` and moves to `i128` for good the first time a close is too large
/// for every sum and cross-product to stay inside an `i64` (above about $230M a share with
/// the default periods). Both are exact, so the switch changes no answer, only the width.
pub struct SmaCrossover {
    ring: Sums,
    fast_n: usize,
    slow_n: usize,
    /// The largest |close| the `i64` ring takes (see [`Ring::<i64>::limit`]).
    narrow_limit: u64,
    /// Sign of (fast − slow) at the last bar where they differed.
    last_sign: Option<Ordering>,
}

enum Sums {
    Narrow(Ring<i64>),
    Wide(Ring<i128>),
}

/// The window of closes and the two running sums, in `T`.
///
/// The buffer's length is a power of two, at least the longer period, so that a close's slot
/// is its sequence number masked: one counter instead of three wrapping cursors. A slot not
/// yet written holds zero, so a window that is not full subtracts nothing.
struct Ring<T> {
    buf: Box<[T]>,
    /// Closes seen; the next one goes to slot `seq & mask`.
    seq: usize,
    mask: usize,
    /// The periods as counts, and as `T` for the cross-products.
    fast_k: usize,
    slow_k: usize,
    /// The longer period: both averages are warm once `seq` reaches it.
    len: usize,
    fast_n: T,
    slow_n: T,
    fast_sum: T,
    slow_sum: T,
}

impl<T> Ring<T>
where
    T: Copy + Ord + Add<Output = T> + Sub<Output = T> + Mul<Output = T>,
{
    #[inline(always)]
    fn push(&mut self, v: T) {
        let at = |k: usize| self.seq.wrapping_sub(k) & self.mask;
        let (f, s) = (self.buf[at(self.fast_k)], self.buf[at(self.slow_k)]);
        self.fast_sum = self.fast_sum + (v - f);
        self.slow_sum = self.slow_sum + (v - s);
        self.buf[self.seq & self.mask] = v;
        self.seq = self.seq.wrapping_add(1);
    }

    /// Closes in the window: `seq`, capped at the longer period.
    fn count(&self) -> usize {
        self.seq.min(self.len)
    }

    /// sign(fast average − slow average), without division, once both windows are full.
    #[inline(always)]
    fn warm_cmp(&self) -> Option<Ordering> {
        (self.seq >= self.len)
            .then(|| (self.fast_sum * self.slow_n).cmp(&(self.slow_sum * self.fast_n)))
    }
}

impl Ring<i64> {
    fn new(fast_n: usize, slow_n: usize) -> Self {
        let len = fast_n.max(slow_n);
        let cap = len.next_power_of_two();
        let n = |k: usize| i64::try_from(k).unwrap_or(i64::MAX);
        Ring {
            buf: vec![0; cap].into_boxed_slice(),
            seq: 0,
            mask: cap - 1,
            fast_k: fast_n,
            slow_k: slow_n,
            len,
            fast_n: n(fast_n),
            slow_n: n(slow_n),
            fast_sum: 0,
            slow_sum: 0,
        }
    }

    /// The largest |close| for which a sum (at most `len` closes) times a period (at most
    /// `len`) stays inside an `i64`.
    fn limit(&self) -> u64 {
        let len = self.len as u64;
        i64::MAX as u64 / len.saturating_mul(len).max(1)
    }

    fn widen(&self) -> Ring<i128> {
        Ring {
            buf: self.buf.iter().map(|v| i128::from(*v)).collect(),
            seq: self.seq,
            mask: self.mask,
            fast_k: self.fast_k,
            slow_k: self.slow_k,
            len: self.len,
            fast_n: i128::from(self.fast_n),
            slow_n: i128::from(self.slow_n),
            fast_sum: i128::from(self.fast_sum),
            slow_sum: i128::from(self.slow_sum),
        }
    }
}

impl Sums {
    fn len(&self) -> usize {
        match self {
            Sums::Narrow(r) => r.len,
            Sums::Wide(r) => r.len,
        }
    }
    fn count(&self) -> usize {
        match self {
            Sums::Narrow(r) => r.count(),
            Sums::Wide(r) => r.count(),
        }
    }
    /// The two sums as `f64`: the same rounding from either width, and from `i64` it is one
    /// instruction instead of a library call.
    fn sums_f64(&self) -> (f64, f64) {
        match self {
            Sums::Narrow(r) => (r.fast_sum as f64, r.slow_sum as f64),
            Sums::Wide(r) => (r.fast_sum as f64, r.slow_sum as f64),
        }
    }
}

impl SmaCrossover {
    /// Periods of 0 are treated as 1.
    pub fn new(p: SmaCrossoverParams) -> Self {
        let (fast_n, slow_n) = (p.fast.max(1), p.slow.max(1));
        let ring = Ring::new(fast_n, slow_n);
        SmaCrossover {
            narrow_limit: ring.limit(),
            ring: Sums::Narrow(ring),
            fast_n,
            slow_n,
            last_sign: None,
        }
    }

    /// Stores the next close and answers sign(fast − slow) once both averages are warm.
    #[inline]
    fn push(&mut self, v: i128) -> Option<Ordering> {
        match i64::try_from(v) {
            Ok(n) => self.push_fx(n),
            Err(_) => self.push_wide(v),
        }
    }

    /// [`Self::push`] of a close that fits an `i64`: the narrow sums take it while it is
    /// within their limit. Always inlined: it is the whole per-bar path of the strategy.
    #[inline(always)]
    fn push_fx(&mut self, n: i64) -> Option<Ordering> {
        match &mut self.ring {
            Sums::Narrow(r) if n.unsigned_abs() <= self.narrow_limit => {
                r.push(n);
                r.warm_cmp()
            }
            _ => self.push_wide(i128::from(n)),
        }
    }

    /// A close the narrow sums cannot take: they widen for good (once), then take it.
    fn push_wide(&mut self, v: i128) -> Option<Ordering> {
        match &mut self.ring {
            Sums::Narrow(r) => {
                let mut w = r.widen();
                w.push(v);
                let ready = w.warm_cmp();
                self.ring = Sums::Wide(w);
                ready
            }
            Sums::Wide(r) => {
                r.push(v);
                r.warm_cmp()
            }
        }
    }

    fn average_f64(sum: f64, n: usize) -> f64 {
        sum / 1e8 / n as f64
    }

    /// The two averages once both are warm.
    fn averages_f64(&self) -> Option<(f64, f64)> {
        self.is_ready().then(|| {
            let (f, s) = self.ring.sums_f64();
            (
                Self::average_f64(f, self.fast_n),
                Self::average_f64(s, self.slow_n),
            )
        })
    }

    /// Strength grows with the gap between the averages: a 1% gap is full strength, and a
    /// fresh cross is never below 0.1 so it still reads as a signal. The reason's arguments
    /// are the two averages.
    fn strength_and_args(&self) -> (f64, [f64; 3]) {
        match self.averages_f64() {
            Some((f, s)) => {
                let strength = if s > 0.0 {
                    ((f / s - 1.0).abs() * 100.0).clamp(0.1, 1.0)
                } else {
                    0.1
                };
                (strength, [f, s, 0.0])
            }
            None => (0.1, [0.0; 3]),
        }
    }
}

impl Strategy for SmaCrossover {
    fn name(&self) -> &'static str {
        "sma_crossover"
    }

    fn warmup_bars(&self) -> usize {
        self.ring.len()
    }

    #[inline]
    fn is_ready(&self) -> bool {
        self.ring.count() == self.ring.len()
    }

    #[inline]
    fn on_bar(&mut self, bar: &Bar) -> Signal {
        self.on_close_given(bar.close, fx(bar.close))
    }

    fn inputs(&self, out: &mut Inputs) {
        // Each average is reported from its own warm-up on.
        let count = self.ring.count();
        let (f, s) = self.ring.sums_f64();
        if count >= self.fast_n {
            out.push("sma_fast", Self::average_f64(f, self.fast_n));
        }
        if count >= self.slow_n {
            out.push("sma_slow", Self::average_f64(s, self.slow_n));
        }
    }
}

impl SmaCrossover {
    /// The signal for the next close. `close_fx` is `fx(close)`, which the engine already has
    /// for the ledger's mark: when it is `Some` the close goes into the narrow sums without a
    /// round trip through `i128`; `None` takes the exact wide conversion
    /// ([`to_fixed`](crate::indicators::exact_sma::to_fixed)).
    #[inline]
    pub fn on_close_given(&mut self, close: Decimal, close_fx: Option<i64>) -> Signal {
        let ready = match close_fx {
            Some(n) => self.push_fx(n),
            None => self.push(to_fixed_given(close, None)),
        };
        self.signal_for(ready)
    }

    /// The signal once the close is in: `ready` is sign(fast − slow) when both are warm.
    #[inline]
    fn signal_for(&mut self, ready: Option<Ordering>) -> Signal {
        let Some(now) = ready else {
            return Signal::WARMING_UP;
        };
        if now == Ordering::Equal {
            return Signal::hold(Reason::text(
                "fast SMA equals slow SMA; the previous side holds",
            ));
        }
        let before = self.last_sign.replace(now);
        match (before, now) {
            (Some(Ordering::Less), Ordering::Greater) => {
                let (strength, args) = self.strength_and_args();
                Signal::buy(
                    strength,
                    Reason::new("fast SMA {0} crossed above slow SMA {1}", args),
                )
            }
            (Some(Ordering::Greater), Ordering::Less) => {
                let (strength, args) = self.strength_and_args();
                Signal::sell(
                    strength,
                    Reason::new("fast SMA {0} crossed below slow SMA {1}", args),
                )
            }
            (_, Ordering::Greater) => {
                Signal::hold(Reason::text("fast SMA above slow SMA, no cross"))
            }
            _ => Signal::hold(Reason::text("fast SMA below slow SMA, no cross")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Direction;
    use crate::types::{SymbolId, Ts};
    use rust_decimal::Decimal;

    fn bar(i: i64, close: Decimal) -> Bar {
        Bar {
            symbol: SymbolId(0),
            ts: Ts::from_secs(i * 60),
            open: close,
            high: close,
            low: close,
            close,
            volume: 100,
        }
    }

    fn run(closes: &[i64], fast: usize, slow: usize) -> Vec<Direction> {
        let mut s = SmaCrossover::new(SmaCrossoverParams { fast, slow });
        closes
            .iter()
            .enumerate()
            .map(|(i, c)| s.on_bar(&bar(i as i64, Decimal::from(*c))).direction)
            .collect()
    }

    #[test]
    fn fires_on_cross_up_and_down() {
        // fast=2, slow=3. Falling then rising then falling.
        let d = run(&[10, 9, 8, 7, 8, 10, 12, 9, 6, 5], 2, 3);
        // bar 2: warm (fast 8.5 < slow 9) sets the sign; bar 4: fast 7.5 > slow 7.67? no (7.5 < 7.67);
        // bar 5: fast 9 > slow 8.33 → buy; bar 8: fast 7.5 < slow 9 → sell.
        assert_eq!(d[..2], [Direction::Hold, Direction::Hold]);
        assert_eq!(d.iter().position(|x| *x == Direction::Buy), Some(5));
        assert_eq!(d.iter().position(|x| *x == Direction::Sell), Some(8));
        assert_eq!(d.iter().filter(|x| **x != Direction::Hold).count(), 2);
    }

    #[test]
    fn does_not_fire_on_a_steady_trend() {
        let closes: Vec<i64> = (0..100).map(|i| 100 + i).collect();
        assert!(run(&closes, 10, 20).iter().all(|d| *d == Direction::Hold));
    }

    #[test]
    fn a_tie_keeps_the_previous_sign() {
        // fast=1, slow=2: prices 3,1 → fast<slow; 1 → tie (1 vs 1); 1 again tie; 2 → fast>slow → buy.
        let d = run(&[3, 1, 1, 1, 2], 1, 2);
        assert_eq!(
            d,
            vec![
                Direction::Hold,
                Direction::Hold,
                Direction::Hold,
                Direction::Hold,
                Direction::Buy
            ]
        );
        // Touching without crossing: below, tie, below again → no signal.
        let d = run(&[3, 1, 1, 0], 1, 2);
        assert!(d.iter().all(|x| *x == Direction::Hold));
    }

    #[test]
    fn reason_carries_the_averages() {
        let mut s = SmaCrossover::new(SmaCrossoverParams { fast: 1, slow: 2 });
        let mut last = Signal::default();
        for (i, c) in [3, 1, 2].iter().enumerate() {
            last = s.on_bar(&bar(i as i64, Decimal::from(*c)));
        }
        assert_eq!(last.direction, Direction::Buy);
        assert_eq!(
            last.reason.to_string(),
            "fast SMA 2.00 crossed above slow SMA 1.50"
        );
    }

    /// The reference crossover: the direction two independent exact SMAs give at this bar,
    /// given the side they were last on, which a tie keeps.
    fn reference(
        f: &crate::indicators::exact_sma::ExactSma,
        sl: &crate::indicators::exact_sma::ExactSma,
        last: &mut Option<Ordering>,
    ) -> Direction {
        let now = crate::indicators::exact_sma::cmp_averages(f, sl);
        let want = match (now, *last) {
            (Some(Ordering::Greater), Some(Ordering::Less)) => Direction::Buy,
            (Some(Ordering::Less), Some(Ordering::Greater)) => Direction::Sell,
            _ => Direction::Hold,
        };
        if let Some(o) = now.filter(|o| *o != Ordering::Equal) {
            *last = Some(o);
        }
        want
    }

    proptest::proptest! {
        /// Closes from cents to beyond what an `i64` holds at the fixed scale: the ring
        /// widens on the first close too large for it, and the signals match the narrow-only
        /// reference on every bar before and after.
        #[test]
        fn widening_changes_no_signal(
            fast in 1usize..12,
            slow in 1usize..25,
            closes in proptest::collection::vec(
                proptest::prop_oneof![1i64..400, 1_000_000_000i64..2_000_000_000_000],
                0..80,
            ),
        ) {
            use crate::indicators::exact_sma::ExactSma;
            let mut s = SmaCrossover::new(SmaCrossoverParams { fast, slow });
            let (mut f, mut sl) = (ExactSma::new(fast), ExactSma::new(slow));
            let mut last = None;
            for (i, c) in closes.iter().enumerate() {
                let px = Decimal::new(*c, 0);
                let got = s.on_bar(&bar(i as i64, px));
                f.update(px);
                sl.update(px);
                let want = reference(&f, &sl, &mut last);
                proptest::prop_assert_eq!(got.direction, want);
                if want != Direction::Hold {
                    let (a, b) = (f.value_f64().unwrap_or(0.0), sl.value_f64().unwrap_or(0.0));
                    proptest::prop_assert_eq!(got.reason.args, [a, b, 0.0]);
                }
            }
        }
    }

    proptest::proptest! {
        /// The shared-ring averages give the same signals and inputs as two independent
        /// exact SMAs compared by `cmp_averages`, for any periods (fast above slow too).
        #[test]
        fn matches_two_independent_exact_smas(
            fast in 1usize..12,
            slow in 1usize..25,
            closes in proptest::collection::vec(1i64..400, 0..120),
        ) {
            use crate::indicators::exact_sma::ExactSma;
            let mut s = SmaCrossover::new(SmaCrossoverParams { fast, slow });
            let (mut f, mut sl) = (ExactSma::new(fast), ExactSma::new(slow));
            let mut last = None;
            for (i, c) in closes.iter().enumerate() {
                // Two decimals, so ties are common.
                let px = Decimal::new(*c, 1);
                let got = s.on_bar(&bar(i as i64, px)).direction;
                f.update(px);
                sl.update(px);
                let want = reference(&f, &sl, &mut last);
                proptest::prop_assert_eq!(got, want);
                let mut inputs = Inputs::default();
                s.inputs(&mut inputs);
                let mut expect = Inputs::default();
                if let Some(v) = f.value_f64() {
                    expect.push("sma_fast", v);
                }
                if let Some(v) = sl.value_f64() {
                    expect.push("sma_slow", v);
                }
                proptest::prop_assert_eq!(inputs, expect);
            }
        }
    }
}
