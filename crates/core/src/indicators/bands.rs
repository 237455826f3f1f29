//! Bands around price: Bollinger (mean ± k population std devs), the rolling z-score, and the
//! Donchian channel (highest high / lowest low).

use std::collections::VecDeque;

use super::window::RollingStats;

/// An upper, middle and lower line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bands {
    pub upper: f64,
    pub middle: f64,
    pub lower: f64,
}

/// Bollinger bands: SMA(period) ± k × population std dev (ddof 0, as TA-Lib's BBANDS).
#[derive(Debug, Clone, PartialEq)]
pub struct Bollinger {
    stats: RollingStats,
    k: f64,
    last: Option<Bands>,
}

impl Bollinger {
    /// `period` 0 is treated as 1.
    pub fn new(period: usize, k: f64) -> Self {
        Bollinger {
            stats: RollingStats::new(period),
            k,
            last: None,
        }
    }
    pub fn update(&mut self, x: f64) -> Option<Bands> {
        self.stats.push(x);
        if self.stats.is_full() {
            let middle = self.stats.mean();
            let width = self.k * self.stats.variance_pop().sqrt();
            self.last = Some(Bands {
                upper: middle + width,
                middle,
                lower: middle - width,
            });
        }
        self.last
    }
    pub fn value(&self) -> Option<Bands> {
        self.last
    }
    pub fn is_ready(&self) -> bool {
        self.last.is_some()
    }
    pub fn warmup_period(&self) -> usize {
        self.stats.period()
    }
    pub fn reset(&mut self) {
        self.stats.clear();
        self.last = None;
    }
}

/// Rolling z-score: `(x − mean) / std` over the last `period` values including `x`, with the
/// population std dev; 0 when the window is flat.
#[derive(Debug, Clone, PartialEq)]
pub struct ZScore {
    stats: RollingStats,
    last: Option<f64>,
}

impl ZScore {
    /// `period` 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        ZScore {
            stats: RollingStats::new(period),
            last: None,
        }
    }
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.stats.push(x);
        if self.stats.is_full() {
            let std = self.stats.variance_pop().sqrt();
            self.last = Some(if std > 0.0 {
                (x - self.stats.mean()) / std
            } else {
                0.0
            });
        }
        self.last
    }
    pub fn value(&self) -> Option<f64> {
        self.last
    }
    pub fn is_ready(&self) -> bool {
        self.last.is_some()
    }
    pub fn warmup_period(&self) -> usize {
        self.stats.period()
    }
    pub fn reset(&mut self) {
        self.stats.clear();
        self.last = None;
    }
}

/// Donchian channel over the last `period` bars including the current one: upper = highest
/// high, lower = lowest low, middle = their mean. Monotonic deques make each update amortised
/// O(1).
#[derive(Debug, Clone, PartialEq)]
pub struct Donchian {
    period: usize,
    seen: u64,
    /// (bar number, high), highs strictly decreasing from front to back.
    highs: VecDeque<(u64, f64)>,
    /// (bar number, low), lows strictly increasing from front to back.
    lows: VecDeque<(u64, f64)>,
    last: Option<Bands>,
}

impl Donchian {
    /// `period` 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Donchian {
            period,
            seen: 0,
            highs: VecDeque::with_capacity(period + 1),
            lows: VecDeque::with_capacity(period + 1),
            last: None,
        }
    }
    pub fn update(&mut self, high: f64, low: f64) -> Option<Bands> {
        let bar = self.seen;
        self.seen += 1;
        while self.highs.back().is_some_and(|&(_, h)| h <= high) {
            self.highs.pop_back();
        }
        self.highs.push_back((bar, high));
        while self.lows.back().is_some_and(|&(_, l)| l >= low) {
            self.lows.pop_back();
        }
        self.lows.push_back((bar, low));
        // Keep only bars newer than `bar − period`.
        let period = self.period as u64;
        while self.highs.front().is_some_and(|&(i, _)| i + period <= bar) {
            self.highs.pop_front();
        }
        while self.lows.front().is_some_and(|&(i, _)| i + period <= bar) {
            self.lows.pop_front();
        }
        if self.seen >= period {
            if let (Some(&(_, upper)), Some(&(_, lower))) = (self.highs.front(), self.lows.front())
            {
                self.last = Some(Bands {
                    upper,
                    middle: (upper + lower) / 2.0,
                    lower,
                });
            }
        }
        self.last
    }
    pub fn value(&self) -> Option<Bands> {
        self.last
    }
    pub fn is_ready(&self) -> bool {
        self.last.is_some()
    }
    pub fn warmup_period(&self) -> usize {
        self.period
    }
    pub fn reset(&mut self) {
        self.seen = 0;
        self.highs.clear();
        self.lows.clear();
        self.last = None;
    }
}
