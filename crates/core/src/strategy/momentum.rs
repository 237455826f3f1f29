//! Momentum: RSI leaving oversold (buy) or overbought (sell), confirmed by the MACD histogram.
//!
//! Buy when the RSI crosses up through `oversold` (previous bar ≤ oversold < this bar) and the
//! histogram confirms upward momentum: it is positive **or** rising (greater than on the
//! previous bar). Requiring a positive histogram alone would come days late after a selloff,
//! because the histogram turns up well before it crosses zero. Sell is the mirror: RSI crosses
//! down through `overbought` with the histogram negative or falling.
//!
//! Strength is 1.0 when both confirmations hold (sign and slope), 0.5 when only one does.

use super::{Direction, MomentumParams, Reason, Signal, Strategy};
use crate::decision::Inputs;
use crate::indicators::{price_f64, Macd, MacdOutput, Rsi};
use crate::types::Bar;

pub struct Momentum {
    p: MomentumParams,
    rsi: Rsi,
    macd: Macd,
    prev_rsi: Option<f64>,
    prev_hist: Option<f64>,
    warmup: usize,
    seen: usize,
}

impl Momentum {
    pub fn new(p: MomentumParams) -> Self {
        let rsi = Rsi::new(p.rsi_period);
        let macd = Macd::new(p.macd_fast, p.macd_slow, p.macd_signal);
        // A cross needs the previous RSI; a rising histogram needs the previous histogram.
        let warmup = (rsi.warmup_period() + 1).max(macd.warmup_period() + 1);
        Momentum {
            p,
            rsi,
            macd,
            prev_rsi: None,
            prev_hist: None,
            warmup,
            seen: 0,
        }
    }

    /// How many of the two confirmations (sign, slope) the histogram gives in `dir`.
    fn confirmations(dir: Direction, hist: f64, prev_hist: f64) -> u8 {
        let (sign, slope) = match dir {
            Direction::Buy => (hist > 0.0, hist > prev_hist),
            Direction::Sell => (hist < 0.0, hist < prev_hist),
            Direction::Hold => (false, false),
        };
        u8::from(sign) + u8::from(slope)
    }
}

impl Strategy for Momentum {
    fn name(&self) -> &'static str {
        "momentum"
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
        let prev_rsi = self.prev_rsi;
        let prev_hist = self.prev_hist;
        let rsi = self.rsi.update(close);
        let macd = self.macd.update(close);
        self.prev_rsi = rsi;
        self.prev_hist = macd.map(|m| m.histogram);

        let (
            Some(rsi),
            Some(prev_rsi),
            Some(MacdOutput {
                histogram: hist, ..
            }),
            Some(prev_hist),
        ) = (rsi, prev_rsi, macd, prev_hist)
        else {
            return Signal::WARMING_UP;
        };
        if !self.is_ready() {
            return Signal::WARMING_UP;
        }

        let (oversold, overbought) = (self.p.oversold, self.p.overbought);
        if prev_rsi <= oversold && rsi > oversold {
            let args = [rsi, oversold, hist];
            return match Self::confirmations(Direction::Buy, hist, prev_hist) {
                0 => Signal::hold(Reason::new(
                    "RSI {0} crossed up through {1}; MACD hist {2} neither positive nor rising",
                    args,
                )),
                n => Signal::buy(
                    f64::from(n) / 2.0,
                    Reason::new(
                        "RSI {0} crossed up through {1}; MACD hist {2} confirms",
                        args,
                    ),
                ),
            };
        }
        if prev_rsi >= overbought && rsi < overbought {
            let args = [rsi, overbought, hist];
            return match Self::confirmations(Direction::Sell, hist, prev_hist) {
                0 => Signal::hold(Reason::new(
                    "RSI {0} crossed down through {1}; MACD hist {2} neither negative nor falling",
                    args,
                )),
                n => Signal::sell(
                    f64::from(n) / 2.0,
                    Reason::new(
                        "RSI {0} crossed down through {1}; MACD hist {2} confirms",
                        args,
                    ),
                ),
            };
        }
        Signal::hold(Reason::new(
            "RSI {0} (was {1}), MACD hist {2}: no cross",
            [rsi, prev_rsi, hist],
        ))
    }
    fn inputs(&self, out: &mut Inputs) {
        if let Some(rsi) = self.rsi.value() {
            out.push("rsi", rsi);
        }
        if let Some(m) = self.macd.value() {
            out.push("macd", m.macd);
            out.push("macd_signal", m.signal);
            out.push("macd_hist", m.histogram);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// 100 ± 0.6 for 40 bars, ten falls of 1.50, then rises of 3.00.
    fn selloff_and_rebound() -> Vec<i64> {
        let mut p: Vec<i64> = (0..40).map(|i| 10_000 + ((i * 7) % 5 - 2) * 30).collect();
        for _ in 0..10 {
            p.push(p[p.len() - 1] - 150);
        }
        for _ in 0..6 {
            p.push(p[p.len() - 1] + 300);
        }
        p
    }

    fn run(prices: &[i64]) -> Vec<Signal> {
        let mut s = Momentum::new(MomentumParams::default());
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
    fn warms_up_for_macd_plus_one() {
        let s = Momentum::new(MomentumParams::default());
        // MACD(12, 26, 9) first histogram on bar 34, previous histogram needed → 35.
        assert_eq!(s.warmup_bars(), 35);
        let sig = run(&selloff_and_rebound());
        assert!(sig[..34].iter().all(|s| *s == Signal::WARMING_UP));
        assert_ne!(sig[34], Signal::WARMING_UP);
    }

    #[test]
    fn buys_when_rsi_leaves_oversold_with_rising_histogram() {
        let sig = run(&selloff_and_rebound());
        // TA-Lib on the same closes: bar 49 RSI 15.7203, bar 50 RSI 30.0597;
        // histogram −1.35332 → −1.12089 (rising, still negative: one confirmation).
        let fired: Vec<usize> = (0..sig.len())
            .filter(|&i| sig[i].direction != Direction::Hold)
            .collect();
        assert_eq!(fired, vec![50]);
        let s = sig[50];
        assert_eq!(s.direction, Direction::Buy);
        assert_eq!(s.strength, 0.5);
        assert!(close(s.reason.args[0], 30.05973644286041), "{:?}", s.reason);
        assert_eq!(s.reason.args[1], 30.0);
        assert!(
            close(s.reason.args[2], -1.1208908384836387),
            "{:?}",
            s.reason
        );
        assert_eq!(
            s.reason.to_string(),
            "RSI 30.06 crossed up through 30.00; MACD hist -1.12 confirms"
        );
    }

    #[test]
    fn sells_when_rsi_leaves_overbought_with_falling_histogram() {
        let prices: Vec<i64> = selloff_and_rebound().iter().map(|c| 20_000 - c).collect();
        let sig = run(&prices);
        let s = sig[50];
        assert_eq!(s.direction, Direction::Sell);
        assert!(close(s.reason.args[0], 69.94026355713959), "{:?}", s.reason);
        assert_eq!(s.reason.args[1], 70.0);
        assert!(
            close(s.reason.args[2], 1.1208908384836387),
            "{:?}",
            s.reason
        );
        assert_eq!(
            sig.iter()
                .filter(|s| s.direction != Direction::Hold)
                .count(),
            1
        );
    }

    #[test]
    fn an_rsi_cross_against_the_histogram_holds() {
        // Six falls of 1.00, then a 0.20 uptick. TA-Lib: RSI 30.4442 (crossed up through 30)
        // but the histogram fell from −0.60043 to −0.62111.
        let mut p: Vec<i64> = (0..40).map(|i| 10_000 + ((i * 7) % 5 - 2) * 30).collect();
        for _ in 0..6 {
            p.push(p[p.len() - 1] - 100);
        }
        p.push(p[p.len() - 1] + 20);
        let sig = run(&p);
        assert!(sig.iter().all(|s| s.direction == Direction::Hold));
        let last = sig[46].reason;
        assert!(close(last.args[0], 30.444200181333798), "{last:?}");
        assert!(close(last.args[2], -0.6211111974554672), "{last:?}");
        assert!(
            last.to_string().contains("neither positive nor rising"),
            "{last}"
        );
    }

    #[test]
    fn gentle_uptrend_and_flat_market_never_fire() {
        // TA-Lib RSI(14) of this series stays within 53.7..60.4 after bar 35.
        let gentle: Vec<i64> = (0..200)
            .map(|i| 10_000 + 2 * i + ((i * 7) % 5 - 2) * 6)
            .collect();
        assert!(run(&gentle).iter().all(|s| s.direction == Direction::Hold));
        let flat = vec![10_000; 100];
        let sig = run(&flat);
        assert!(sig.iter().all(|s| s.direction == Direction::Hold));
        assert!(
            sig[99].reason.to_string().starts_with("RSI 50.00"),
            "{}",
            sig[99].reason
        );
    }

    #[test]
    fn inputs_report_the_indicators() {
        let mut s = Momentum::new(MomentumParams::default());
        for (i, &c) in selloff_and_rebound()[..51].iter().enumerate() {
            s.on_bar(&bar(i, c));
        }
        let mut inp = Inputs::default();
        s.inputs(&mut inp);
        assert!(close(inp.get("rsi").unwrap(), 30.05973644286041));
        assert!(close(inp.get("macd_hist").unwrap(), -1.1208908384836387));
        assert!(inp.get("macd").is_some() && inp.get("macd_signal").is_some());
    }
}
