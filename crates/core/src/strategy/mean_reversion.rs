//! Mean reversion: fade closes outside the Bollinger bands when RSI and z-score agree, and
//! take profit on a long when price is back at the mean.
//!
//! - Buy: close < lower band, RSI < `rsi_low` and z-score < −`z_entry`.
//! - Sell: close > upper band, RSI > `rsi_high` and z-score > `z_entry`.
//! - Exit: after this strategy said buy, the first close at or above the middle band says sell
//!   (strength 0.5) — the reversion it bet on has happened. It tracks its own buys, not the
//!   account: if the buy was refused, the engine gets a sell while flat, which it ignores
//!   unless shorting is on. No mirror "cover" buy is emitted, since on a long-only account
//!   that would open a position.
//!
//! Entry strength grows with the stretch: 0.5 at |z| = z_entry, 1.0 at |z| ≥ 2 × z_entry.

use super::{MeanReversionParams, Reason, Signal, Strategy};
use crate::decision::Inputs;
use crate::indicators::{price_f64, Bands, Bollinger, Rsi, ZScore};
use crate::types::Bar;

/// What the strategy last told the engine to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stance {
    Flat,
    /// Bought below the lower band; waiting for the middle band.
    Long,
}

pub struct MeanReversion {
    p: MeanReversionParams,
    bb: Bollinger,
    rsi: Rsi,
    z: ZScore,
    stance: Stance,
    warmup: usize,
    seen: usize,
}

impl MeanReversion {
    pub fn new(p: MeanReversionParams) -> Self {
        let bb = Bollinger::new(p.bb_period, p.bb_k);
        let rsi = Rsi::new(p.rsi_period);
        let z = ZScore::new(p.z_period);
        let warmup = bb
            .warmup_period()
            .max(rsi.warmup_period())
            .max(z.warmup_period());
        MeanReversion {
            p,
            bb,
            rsi,
            z,
            stance: Stance::Flat,
            warmup,
            seen: 0,
        }
    }

    fn strength(&self, z: f64) -> f64 {
        0.5 * z.abs() / self.p.z_entry
    }
}

impl Strategy for MeanReversion {
    fn name(&self) -> &'static str {
        "mean_reversion"
    }
    fn warmup_bars(&self) -> usize {
        self.warmup
    }
    fn is_ready(&self) -> bool {
        self.seen >= self.warmup
    }
    fn on_bar(&mut self, bar: &Bar) -> Signal {
        self.seen = self.seen.saturating_add(1);
        let close = price_f64(bar.close);
        let bands = self.bb.update(close);
        let rsi = self.rsi.update(close);
        let z = self.z.update(close);
        let (
            Some(Bands {
                upper,
                middle,
                lower,
            }),
            Some(rsi),
            Some(z),
        ) = (bands, rsi, z)
        else {
            return Signal::WARMING_UP;
        };
        if !self.is_ready() {
            return Signal::WARMING_UP;
        }

        if close < lower && rsi < self.p.rsi_low && z < -self.p.z_entry {
            self.stance = Stance::Long;
            return Signal::buy(
                self.strength(z),
                Reason::new(
                    "close below lower band {0}; RSI {1}; z-score {2}",
                    [lower, rsi, z],
                ),
            );
        }
        if close > upper && rsi > self.p.rsi_high && z > self.p.z_entry {
            self.stance = Stance::Flat;
            return Signal::sell(
                self.strength(z),
                Reason::new(
                    "close above upper band {0}; RSI {1}; z-score {2}",
                    [upper, rsi, z],
                ),
            );
        }
        if self.stance == Stance::Long && close >= middle {
            self.stance = Stance::Flat;
            return Signal::sell(
                0.5,
                Reason::new(
                    "close {0} back at middle band {1}; z-score {2}",
                    [close, middle, z],
                ),
            );
        }
        Signal::hold(Reason::new(
            "RSI {0}, z-score {1}, middle band {2}: no entry",
            [rsi, z, middle],
        ))
    }
    fn inputs(&self, out: &mut Inputs) {
        if let Some(b) = self.bb.value() {
            out.push("bb_upper", b.upper);
            out.push("bb_middle", b.middle);
            out.push("bb_lower", b.lower);
        }
        if let Some(rsi) = self.rsi.value() {
            out.push("rsi", rsi);
        }
        if let Some(z) = self.z.value() {
            out.push("zscore", z);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Direction;
    use crate::types::{SymbolId, Ts};
    use rust_decimal::Decimal;

    fn bar(i: usize, cents: i64) -> Bar {
        let px = Decimal::new(cents, 2);
        Bar {
            symbol: SymbolId(0),
            ts: Ts::from_secs(86_400 * i as i64),
            open: px,
            high: px,
            low: px,
            close: px,
            volume: 1_000,
        }
    }

    /// 100 ± 0.2 for 30 bars, a drop to 97 and 96.50, then back up to 100.50.
    fn drop_and_recover() -> Vec<i64> {
        let mut p: Vec<i64> = (0..30).map(|i| 10_000 + ((i * 7) % 5 - 2) * 10).collect();
        p.extend([9_700, 9_650, 9_800, 9_950, 10_050]);
        p
    }

    fn run(prices: &[i64]) -> Vec<Signal> {
        let mut s = MeanReversion::new(MeanReversionParams::default());
        prices
            .iter()
            .enumerate()
            .map(|(i, &c)| s.on_bar(&bar(i, c)))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn warm_up_is_the_longest_indicator() {
        let s = MeanReversion::new(MeanReversionParams::default());
        assert_eq!(s.warmup_bars(), 20);
        let sig = run(&drop_and_recover());
        assert!(sig[..19].iter().all(|s| *s == Signal::WARMING_UP));
        assert_ne!(sig[19], Signal::WARMING_UP);
    }

    #[test]
    fn buys_the_drop_and_exits_at_the_middle_band() {
        let sig = run(&drop_and_recover());
        // TA-Lib on the same closes, bar 30: BBANDS(20, 2) lower 98.52074647657734,
        // RSI(14) 26.20027363813057, (close − SMA20) / STDDEV20 = −4.271035991289916.
        let s = sig[30];
        assert_eq!(s.direction, Direction::Buy);
        assert!(close(s.reason.args[0], 98.52074647657734), "{:?}", s.reason);
        assert!(close(s.reason.args[1], 26.20027363813057), "{:?}", s.reason);
        assert!(
            close(s.reason.args[2], -4.271035991289916),
            "{:?}",
            s.reason
        );
        assert!(close(s.strength, 1.0));
        // Bar 31: 96.50 < lower 97.70, RSI 24.10, z −3.2152 → buys again (0.5 × 3.2152 / 2).
        assert_eq!(sig[31].direction, Direction::Buy);
        assert!(close(sig[31].strength, 0.5 * 3.215244984572734 / 2.0));
        // Bars 32, 33 below the middle band (99.575, 99.555); bar 34 closes 100.50 ≥ 99.575.
        assert_eq!(sig[32].direction, Direction::Hold);
        assert_eq!(sig[33].direction, Direction::Hold);
        let exit = sig[34];
        assert_eq!(exit.direction, Direction::Sell);
        assert!(close(exit.reason.args[1], 99.575), "{:?}", exit.reason);
        assert_eq!(
            exit.reason.to_string(),
            "close 100.50 back at middle band 99.58; z-score 0.87"
        );
        assert!(sig[..30].iter().all(|s| s.direction == Direction::Hold));
    }

    #[test]
    fn sells_the_spike() {
        let prices: Vec<i64> = drop_and_recover().iter().map(|c| 20_000 - c).collect();
        let sig = run(&prices);
        let s = sig[30];
        assert_eq!(s.direction, Direction::Sell);
        assert!(
            close(s.reason.args[0], 101.47925352342266),
            "{:?}",
            s.reason
        );
        assert!(close(s.reason.args[1], 73.79972636186942), "{:?}", s.reason);
        assert!(close(s.reason.args[2], 4.271035991289916), "{:?}", s.reason);
        // No long was opened, so the return to the middle is not an exit.
        assert_eq!(sig[34].direction, Direction::Hold);
    }

    #[test]
    fn steady_trend_is_not_stretched_enough() {
        // A straight line sits 1.65 std devs from its 20-bar mean: never past 2.
        let line: Vec<i64> = (0..100).map(|i| 10_000 + 10 * i).collect();
        assert!(run(&line).iter().all(|s| s.direction == Direction::Hold));
        let down: Vec<i64> = (0..100).map(|i| 10_000 - 10 * i).collect();
        assert!(run(&down).iter().all(|s| s.direction == Direction::Hold));
        assert!(run(&[10_000; 60])
            .iter()
            .all(|s| s.direction == Direction::Hold));
    }

    #[test]
    fn inputs_report_bands_rsi_and_z() {
        let mut s = MeanReversion::new(MeanReversionParams::default());
        for (i, &c) in drop_and_recover()[..31].iter().enumerate() {
            s.on_bar(&bar(i, c));
        }
        let mut inp = Inputs::default();
        s.inputs(&mut inp);
        assert!(close(inp.get("bb_lower").unwrap(), 98.52074647657734));
        assert!(close(inp.get("bb_middle").unwrap(), 99.86));
        assert!(close(inp.get("zscore").unwrap(), -4.271035991289916));
        assert!(close(inp.get("rsi").unwrap(), 26.20027363813057));
    }
}
