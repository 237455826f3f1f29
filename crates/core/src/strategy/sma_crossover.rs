//! SMA crossover, the old system's baseline: buy when the fast SMA crosses above the slow one,
//! sell when it crosses below.
//!
//! A crossover is a change of sign of (fast − slow). An exact tie keeps the previous sign, as
//! backtrader's `CrossOver` does, and ties are exact because the averages are computed on
//! integers (see [`ExactSma`]). The first bar on which both averages are warm sets the sign and
//! never signals by itself.

use std::cmp::Ordering;

use super::{Reason, Signal, SmaCrossoverParams, Strategy};
use crate::decision::Inputs;
use crate::indicators::exact_sma::{cmp_averages, to_fixed, ExactSma};
use crate::types::Bar;

pub struct SmaCrossover {
    fast: ExactSma,
    slow: ExactSma,
    /// Sign of (fast − slow) at the last bar where they differed.
    last_sign: Option<Ordering>,
}

impl SmaCrossover {
    pub fn new(p: SmaCrossoverParams) -> Self {
        SmaCrossover {
            fast: ExactSma::new(p.fast),
            slow: ExactSma::new(p.slow),
            last_sign: None,
        }
    }

    /// Strength grows with the gap between the averages: a 1% gap is full strength, and a
    /// fresh cross is never below 0.1 so it still reads as a signal.
    fn strength(&self) -> f64 {
        match (self.fast.value_f64(), self.slow.value_f64()) {
            (Some(f), Some(s)) if s > 0.0 => ((f / s - 1.0).abs() * 100.0).clamp(0.1, 1.0),
            _ => 0.1,
        }
    }

    fn args(&self) -> [f64; 3] {
        [
            self.fast.value_f64().unwrap_or(0.0),
            self.slow.value_f64().unwrap_or(0.0),
            0.0,
        ]
    }
}

impl Strategy for SmaCrossover {
    fn name(&self) -> &'static str {
        "sma_crossover"
    }

    fn warmup_bars(&self) -> usize {
        self.slow.period().max(self.fast.period())
    }

    fn is_ready(&self) -> bool {
        self.slow.is_ready() && self.fast.is_ready()
    }

    #[inline]
    fn on_bar(&mut self, bar: &Bar) -> Signal {
        let close = to_fixed(bar.close);
        self.fast.update_fixed(close);
        self.slow.update_fixed(close);
        let Some(now) = cmp_averages(&self.fast, &self.slow) else {
            return Signal::WARMING_UP;
        };
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

    fn inputs(&self, out: &mut Inputs) {
        if let Some(f) = self.fast.value_f64() {
            out.push("sma_fast", f);
        }
        if let Some(s) = self.slow.value_f64() {
            out.push("sma_slow", s);
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
}
