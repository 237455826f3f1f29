//! Oscillators: RSI (Wilder), MACD and rate of change, all in TA-Lib's conventions.

use super::average::{Ema, Sma};
use super::window::Window;

/// Relative strength index with Wilder smoothing (TA-Lib convention).
///
/// The first value comes after `period + 1` inputs: the average gain and loss of the first
/// `period` changes, then `avg = (avg × (period − 1) + change) / period`.
/// RSI = 100 × avg_gain / (avg_gain + avg_loss). Where nothing has moved at all (both averages
/// exactly 0) this returns 50, the neutral reading; TA-Lib returns 0 there, which would read
/// a flat market as deeply oversold.
#[derive(Debug, Clone, PartialEq)]
pub struct Rsi {
    period: usize,
    prev: Option<f64>,
    changes: usize,
    avg_gain: f64,
    avg_loss: f64,
    last: Option<f64>,
}

impl Rsi {
    /// `period` 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        Rsi {
            period: period.max(1),
            prev: None,
            changes: 0,
            avg_gain: 0.0,
            avg_loss: 0.0,
            last: None,
        }
    }
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let prev = self.prev.replace(x)?;
        let change = x - prev;
        let (gain, loss) = if change < 0.0 {
            (0.0, -change)
        } else {
            (change, 0.0)
        };
        let n = self.period as f64;
        if self.changes < self.period {
            // Seeding: plain sums, divided once the first `period` changes are in.
            self.avg_gain += gain;
            self.avg_loss += loss;
            self.changes += 1;
            if self.changes < self.period {
                return None;
            }
            self.avg_gain /= n;
            self.avg_loss /= n;
        } else {
            self.avg_gain = (self.avg_gain * (n - 1.0) + gain) / n;
            self.avg_loss = (self.avg_loss * (n - 1.0) + loss) / n;
        }
        let total = self.avg_gain + self.avg_loss;
        let rsi = if total > 0.0 {
            100.0 * (self.avg_gain / total)
        } else {
            50.0
        };
        self.last = Some(rsi);
        self.last
    }
    pub fn value(&self) -> Option<f64> {
        self.last
    }
    pub fn is_ready(&self) -> bool {
        self.last.is_some()
    }
    pub fn warmup_period(&self) -> usize {
        self.period + 1
    }
    pub fn reset(&mut self) {
        *self = Rsi::new(self.period);
    }
}

/// One MACD reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MacdOutput {
    /// Fast EMA − slow EMA.
    pub macd: f64,
    /// EMA of `macd` over the signal period.
    pub signal: f64,
    /// `macd − signal`.
    pub histogram: f64,
}

/// MACD(fast, slow, signal) in TA-Lib's convention: both EMAs start on the `slow`-th input,
/// the slow one seeded with the SMA of all `slow` inputs and the fast one with the SMA of the
/// last `fast` of them; the signal EMA is seeded with the SMA of the first `signal` MACD
/// values. The first output comes after `slow + signal − 1` inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Macd {
    fast: usize,
    slow: usize,
    signal_period: usize,
    fast_seed: Sma,
    slow_seed: Sma,
    lines: Option<(Ema, Ema)>,
    signal: Ema,
    last: Option<MacdOutput>,
}

impl Macd {
    /// Periods of 0 are treated as 1; a fast period longer than the slow one is swapped with
    /// it, as TA-Lib does.
    pub fn new(fast: usize, slow: usize, signal: usize) -> Self {
        let (fast, slow) = (fast.max(1).min(slow.max(1)), fast.max(1).max(slow.max(1)));
        let signal_period = signal.max(1);
        Macd {
            fast,
            slow,
            signal_period,
            fast_seed: Sma::new(fast),
            slow_seed: Sma::new(slow),
            lines: None,
            signal: Ema::new(signal_period),
            last: None,
        }
    }
    pub fn update(&mut self, x: f64) -> Option<MacdOutput> {
        let macd = match &mut self.lines {
            Some((fast, slow)) => fast.update(x)? - slow.update(x)?,
            None => {
                let f = self.fast_seed.update(x);
                let s = self.slow_seed.update(x);
                let (Some(f), Some(s)) = (f, s) else {
                    return None;
                };
                self.lines = Some((Ema::seeded(self.fast, f), Ema::seeded(self.slow, s)));
                f - s
            }
        };
        let signal = self.signal.update(macd)?;
        self.last = Some(MacdOutput {
            macd,
            signal,
            histogram: macd - signal,
        });
        self.last
    }
    pub fn value(&self) -> Option<MacdOutput> {
        self.last
    }
    pub fn is_ready(&self) -> bool {
        self.last.is_some()
    }
    pub fn warmup_period(&self) -> usize {
        self.slow + self.signal_period - 1
    }
    pub fn reset(&mut self) {
        *self = Macd::new(self.fast, self.slow, self.signal_period);
    }
}

/// Rate of change in percent: `(x / x_{period ago} − 1) × 100`. Like TA-Lib, a zero base
/// gives 0 rather than infinity.
#[derive(Debug, Clone, PartialEq)]
pub struct Roc {
    past: Window,
    last: Option<f64>,
}

impl Roc {
    /// `period` 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        Roc {
            past: Window::new(period),
            last: None,
        }
    }
    pub fn update(&mut self, x: f64) -> Option<f64> {
        if self.past.is_full() {
            if let Some(base) = self.past.oldest() {
                self.last = Some(if base != 0.0 {
                    (x / base - 1.0) * 100.0
                } else {
                    0.0
                });
            }
        }
        self.past.push(x);
        self.last
    }
    pub fn value(&self) -> Option<f64> {
        self.last
    }
    pub fn is_ready(&self) -> bool {
        self.last.is_some()
    }
    pub fn warmup_period(&self) -> usize {
        self.past.capacity() + 1
    }
    pub fn reset(&mut self) {
        self.past.clear();
        self.last = None;
    }
}
