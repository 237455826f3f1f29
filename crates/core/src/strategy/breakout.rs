//! Breakout: a close beyond the Donchian channel of the previous `period` bars.
//!
//! The channel is the one **before** this bar (a bar cannot break out of a range that already
//! includes it). Buy when the close is above that channel's high and this bar's volume is at
//! least `volume_factor` × the mean volume of the previous `volume_period` bars. Sell when the
//! close is below the channel's low (no volume condition: exits should not wait for volume).
//! When the previous bars traded no volume at all, the volume condition is trivially met.
//!
//! Buy strength is 0.5 at exactly `volume_factor` × average volume, rising to 1.0 at twice
//! that. Sell strength is 0.5 plus half the penetration below the low as a fraction of the
//! channel's width (1.0 for a zero-width channel).

use super::{BreakoutParams, Reason, Signal, Strategy};
use crate::decision::Inputs;
use crate::indicators::{price_f64, Bands, Donchian, Sma};
use crate::types::Bar;

/// The state the signal was judged on, kept for `inputs()`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Basis {
    channel: Bands,
    volume: f64,
    avg_volume: f64,
}

pub struct Breakout {
    p: BreakoutParams,
    channel: Donchian,
    volume: Sma,
    basis: Option<Basis>,
    warmup: usize,
    seen: usize,
}

impl Breakout {
    pub fn new(p: BreakoutParams) -> Self {
        let channel = Donchian::new(p.period);
        let volume = Sma::new(p.volume_period);
        // The first bar that can break out follows a full channel and a full volume window.
        let warmup = channel.warmup_period().max(volume.warmup_period()) + 1;
        Breakout {
            p,
            channel,
            volume,
            basis: None,
            warmup,
            seen: 0,
        }
    }
}

impl Strategy for Breakout {
    fn name(&self) -> &'static str {
        "breakout"
    }
    fn warmup_bars(&self) -> usize {
        self.warmup
    }
    fn is_ready(&self) -> bool {
        self.seen >= self.warmup
    }
    fn on_bar(&mut self, bar: &Bar) -> Signal {
        self.seen = self.seen.saturating_add(1);
        let (high, low, close) = (
            price_f64(bar.high),
            price_f64(bar.low),
            price_f64(bar.close),
        );
        let volume = bar.volume as f64;
        let prior_channel = self.channel.value();
        let prior_avg_volume = self.volume.value();
        self.channel.update(high, low);
        self.volume.update(volume);

        let (Some(channel), Some(avg_volume)) = (prior_channel, prior_avg_volume) else {
            self.basis = None;
            return Signal::WARMING_UP;
        };
        self.basis = Some(Basis {
            channel,
            volume,
            avg_volume,
        });
        if !self.is_ready() {
            return Signal::WARMING_UP;
        }

        let ratio = if avg_volume > 0.0 {
            volume / avg_volume
        } else {
            0.0
        };
        if close > channel.upper {
            if volume >= self.p.volume_factor * avg_volume {
                let strength = if avg_volume > 0.0 {
                    0.5 * ratio / self.p.volume_factor
                } else {
                    0.5
                };
                return Signal::buy(
                    strength,
                    Reason::new(
                        "close {0} above prior high {1} on {2}x average volume",
                        [close, channel.upper, ratio],
                    ),
                );
            }
            return Signal::hold(Reason::new(
                "close {0} above prior high {1} but volume only {2}x average",
                [close, channel.upper, ratio],
            ));
        }
        if close < channel.lower {
            let width = channel.upper - channel.lower;
            let depth = if width > 0.0 {
                (channel.lower - close) / width
            } else {
                1.0
            };
            return Signal::sell(
                0.5 + 0.5 * depth.min(1.0),
                Reason::new(
                    "close {0} below prior low {1}; channel high {2}",
                    [close, channel.lower, channel.upper],
                ),
            );
        }
        Signal::hold(Reason::new(
            "close {0} inside prior channel {1}..{2}",
            [close, channel.lower, channel.upper],
        ))
    }
    fn inputs(&self, out: &mut Inputs) {
        if let Some(b) = self.basis {
            out.push("channel_high", b.channel.upper);
            out.push("channel_low", b.channel.lower);
            out.push("volume", b.volume);
            out.push("avg_volume", b.avg_volume);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Direction;
    use crate::types::{SymbolId, Ts};
    use rust_decimal::Decimal;

    fn bar(i: usize, high: i64, low: i64, close: i64, volume: u64) -> Bar {
        Bar {
            symbol: SymbolId(0),
            ts: Ts::from_secs(86_400 * i as i64),
            open: Decimal::new(close, 2),
            high: Decimal::new(high, 2),
            low: Decimal::new(low, 2),
            close: Decimal::new(close, 2),
            volume,
        }
    }

    /// 25 bars ranging 99.00..101.00 (highs alternate 100.50/101.00, lows 99.00/99.50),
    /// volume alternating 800/1200 (mean 1000), then `last`.
    fn range_then(last: (i64, i64, i64, u64)) -> Vec<Signal> {
        let mut s = Breakout::new(BreakoutParams::default());
        let mut out = Vec::new();
        for i in 0..25 {
            let (h, l, v) = if i % 2 == 0 {
                (10_050, 9_900, 800)
            } else {
                (10_100, 9_950, 1_200)
            };
            out.push(s.on_bar(&bar(i, h, l, 10_000, v)));
        }
        let (h, l, c, v) = last;
        out.push(s.on_bar(&bar(25, h, l, c, v)));
        out
    }

    #[test]
    fn warm_up_needs_a_full_prior_channel() {
        let s = Breakout::new(BreakoutParams::default());
        assert_eq!(s.warmup_bars(), 21);
        let sig = range_then((10_000, 10_000, 10_000, 1_000));
        assert!(sig[..20].iter().all(|s| *s == Signal::WARMING_UP));
        assert_ne!(sig[20], Signal::WARMING_UP);
    }

    #[test]
    fn buys_a_breakout_on_volume() {
        // The last 20 volumes (bars 5..=24) are ten 800s and ten 1200s: mean 1000.
        let sig = range_then((10_350, 10_050, 10_300, 1_800));
        let s = sig[25];
        assert_eq!(s.direction, Direction::Buy);
        assert_eq!(s.reason.args, [103.0, 101.0, 1.8]);
        assert!((s.strength - 0.6).abs() < 1e-12); // 0.5 × 1.8 / 1.5
        assert_eq!(
            s.reason.to_string(),
            "close 103.00 above prior high 101.00 on 1.80x average volume"
        );
        assert!(sig[..25].iter().all(|s| s.direction == Direction::Hold));
    }

    #[test]
    fn the_breakout_bar_is_not_in_its_own_channel() {
        // A high of 105 on the bar itself must not raise the bar it has to beat.
        let sig = range_then((10_500, 10_050, 10_200, 3_000));
        assert_eq!(sig[25].direction, Direction::Buy);
        assert_eq!(sig[25].reason.args[1], 101.0);
        assert_eq!(sig[25].strength, 1.0);
    }

    #[test]
    fn no_buy_without_volume() {
        let sig = range_then((10_350, 10_050, 10_300, 1_499));
        assert_eq!(sig[25].direction, Direction::Hold);
        assert!(
            sig[25].reason.to_string().contains("but volume only 1.50x"),
            "{}",
            sig[25].reason
        );
    }

    #[test]
    fn sells_below_the_prior_low() {
        // Width 101 − 99 = 2; close 98 is 1 below → strength 0.5 + 0.5 × 0.5.
        let sig = range_then((9_950, 9_750, 9_800, 500));
        let s = sig[25];
        assert_eq!(s.direction, Direction::Sell);
        assert_eq!(s.reason.args, [98.0, 99.0, 101.0]);
        assert!((s.strength - 0.75).abs() < 1e-12);
    }

    #[test]
    fn inside_the_range_holds() {
        let sig = range_then((10_100, 9_900, 10_099, 5_000));
        assert!(sig.iter().all(|s| s.direction == Direction::Hold));
        let mut s = Breakout::new(BreakoutParams::default());
        for i in 0..60 {
            assert_eq!(
                s.on_bar(&bar(i, 10_000, 10_000, 10_000, 1_000)).direction,
                Direction::Hold
            );
        }
    }

    #[test]
    fn inputs_show_the_prior_channel() {
        let mut s = Breakout::new(BreakoutParams::default());
        for i in 0..25 {
            let (h, l, v) = if i % 2 == 0 {
                (10_050, 9_900, 800)
            } else {
                (10_100, 9_950, 1_200)
            };
            s.on_bar(&bar(i, h, l, 10_000, v));
        }
        s.on_bar(&bar(25, 10_500, 9_000, 10_000, 2_000));
        let mut inp = Inputs::default();
        s.inputs(&mut inp);
        assert_eq!(inp.get("channel_high"), Some(101.0));
        assert_eq!(inp.get("channel_low"), Some(99.0));
        assert_eq!(inp.get("volume"), Some(2_000.0));
        assert_eq!(inp.get("avg_volume"), Some(1_000.0));
    }
}
