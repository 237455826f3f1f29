//! SMA crossover, the old system's baseline: buy when the fast SMA crosses above the slow one,
//! sell when it crosses below.
//!
//! A crossover is a change of sign of (fast − slow). An exact tie keeps the previous sign, as
//! backtrader's `CrossOver` does, and ties are exact because the averages are computed on
//! integers (see [`crate::indicators::exact_sma`]). The first bar on which both averages are warm sets the sign and
//! never signals by itself.

use std::cmp::Ordering;

use super::{Reason, Signal, SmaCrossoverParams, Strategy};
use crate::decision::Inputs;
use crate::indicators::exact_sma::to_fixed;
use crate::types::Bar;

/// Both averages over one ring of closes at the fixed scale (see [`to_fixed`]): the shorter
/// window is a suffix of the longer, so one store per bar feeds both running sums.
pub struct SmaCrossover {
    ring: Box<[i128]>,
    head: usize,
    /// Where the value leaving each window sits when the next close is stored at `head`.
    fast_tail: usize,
    slow_tail: usize,
    /// Closes seen, capped at the ring's length.
    count: usize,
    fast_n: usize,
    slow_n: usize,
    fast_sum: i128,
    slow_sum: i128,
    /// Sign of (fast − slow) at the last bar where they differed.
    last_sign: Option<Ordering>,
}

impl SmaCrossover {
    /// Periods of 0 are treated as 1.
    pub fn new(p: SmaCrossoverParams) -> Self {
        let (fast_n, slow_n) = (p.fast.max(1), p.slow.max(1));
        let len = fast_n.max(slow_n);
        SmaCrossover {
            ring: vec![0; len].into_boxed_slice(),
            head: 0,
            fast_tail: (len - fast_n) % len,
            slow_tail: (len - slow_n) % len,
            count: 0,
            fast_n,
            slow_n,
            fast_sum: 0,
            slow_sum: 0,
            last_sign: None,
        }
    }

    #[inline]
    fn advance(i: &mut usize, len: usize) {
        *i += 1;
        if *i == len {
            *i = 0;
        }
    }

    #[inline]
    fn push(&mut self, v: i128) {
        let len = self.ring.len();
        let at = |i: usize| self.ring.get(i).copied().unwrap_or(0);
        self.fast_sum += v - at(self.fast_tail);
        self.slow_sum += v - at(self.slow_tail);
        if let Some(slot) = self.ring.get_mut(self.head) {
            *slot = v;
        }
        Self::advance(&mut self.head, len);
        Self::advance(&mut self.fast_tail, len);
        Self::advance(&mut self.slow_tail, len);
        if self.count < len {
            self.count += 1;
        }
    }

    fn average_f64(sum: i128, n: usize) -> f64 {
        sum as f64 / 1e8 / n as f64
    }

    /// The two averages once both are warm.
    fn averages_f64(&self) -> Option<(f64, f64)> {
        self.is_ready().then(|| {
            (
                Self::average_f64(self.fast_sum, self.fast_n),
                Self::average_f64(self.slow_sum, self.slow_n),
            )
        })
    }

    /// Strength grows with the gap between the averages: a 1% gap is full strength, and a
    /// fresh cross is never below 0.1 so it still reads as a signal.
    fn strength(&self) -> f64 {
        match self.averages_f64() {
            Some((f, s)) if s > 0.0 => ((f / s - 1.0).abs() * 100.0).clamp(0.1, 1.0),
            _ => 0.1,
        }
    }

    fn args(&self) -> [f64; 3] {
        let (f, s) = self.averages_f64().unwrap_or((0.0, 0.0));
        [f, s, 0.0]
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
        self.count == self.ring.len()
    }

    #[inline]
    fn on_bar(&mut self, bar: &Bar) -> Signal {
        self.on_close_fixed(to_fixed(bar.close))
    }

    fn inputs(&self, out: &mut Inputs) {
        // Each average is reported from its own warm-up on.
        if self.count >= self.fast_n {
            out.push("sma_fast", Self::average_f64(self.fast_sum, self.fast_n));
        }
        if self.count >= self.slow_n {
            out.push("sma_slow", Self::average_f64(self.slow_sum, self.slow_n));
        }
    }
}

impl SmaCrossover {
    /// The signal for the next close, given at the fixed scale ([`to_fixed`]).
    #[inline]
    pub fn on_close_fixed(&mut self, close: i128) -> Signal {
        self.push(close);
        if !self.is_ready() {
            return Signal::WARMING_UP;
        }
        // sign(fast_avg − slow_avg) without division.
        let now = (self.fast_sum * self.slow_n as i128).cmp(&(self.slow_sum * self.fast_n as i128));
        if now == Ordering::Equal {
            return Signal::hold(Reason::text(
                "fast SMA equals slow SMA; the previous side holds",
            ));
        }
        let before = self.last_sign.replace(now);
        match (before, now) {
            (Some(Ordering::Less), Ordering::Greater) => Signal::buy(
                self.strength(),
                Reason::new("fast SMA {0} crossed above slow SMA {1}", self.args()),
            ),
            (Some(Ordering::Greater), Ordering::Less) => Signal::sell(
                self.strength(),
                Reason::new("fast SMA {0} crossed below slow SMA {1}", self.args()),
            ),
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

    proptest::proptest! {
        /// The shared-ring averages give the same signals and inputs as two independent
        /// exact SMAs compared by `cmp_averages`, for any periods (fast above slow too).
        #[test]
        fn matches_two_independent_exact_smas(
            fast in 1usize..12,
            slow in 1usize..25,
            closes in proptest::collection::vec(1i64..400, 0..120),
        ) {
            use crate::indicators::exact_sma::{cmp_averages, ExactSma};
            let mut s = SmaCrossover::new(SmaCrossoverParams { fast, slow });
            let (mut f, mut sl) = (ExactSma::new(fast), ExactSma::new(slow));
            let mut last = None;
            for (i, c) in closes.iter().enumerate() {
                // Two decimals, so ties are common.
                let px = Decimal::new(*c, 1);
                let got = s.on_bar(&bar(i as i64, px)).direction;
                f.update(px);
                sl.update(px);
                let want = match (cmp_averages(&f, &sl), last) {
                    (Some(Ordering::Greater), Some(Ordering::Less)) => Direction::Buy,
                    (Some(Ordering::Less), Some(Ordering::Greater)) => Direction::Sell,
                    _ => Direction::Hold,
                };
                if let Some(o) = cmp_averages(&f, &sl).filter(|o| *o != Ordering::Equal) {
                    last = Some(o);
                }
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
