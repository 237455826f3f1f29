//! Moving averages: simple (SMA) and exponential (EMA, seeded with an SMA like TA-Lib).

use super::window::RollingStats;

/// Simple moving average of the last `period` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Sma {
    stats: RollingStats,
    last: Option<f64>,
}

impl Sma {
    /// `period` 0 is treated as 1 (configs are validated before they get here).
    pub fn new(period: usize) -> Self {
        Sma {
            stats: RollingStats::new(period),
            last: None,
        }
    }
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.stats.push(x);
        self.last = self.stats.is_full().then(|| self.stats.mean());
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

/// Exponential moving average, alpha = 2 / (period + 1). The first value, after `period`
/// inputs, is the SMA of those inputs (TA-Lib's seeding).
#[derive(Debug, Clone, PartialEq)]
pub struct Ema {
    period: usize,
    alpha: f64,
    seen: usize,
    seed_sum: f64,
    last: Option<f64>,
}

impl Ema {
    /// `period` 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Ema {
            period,
            alpha: 2.0 / (period as f64 + 1.0),
            seen: 0,
            seed_sum: 0.0,
            last: None,
        }
    }
    /// An EMA that starts from `seed` instead of averaging its own first inputs (MACD seeds
    /// its fast line from a window that ends where the slow one's does).
    pub(crate) fn seeded(period: usize, seed: f64) -> Self {
        let mut e = Ema::new(period);
        e.seen = e.period;
        e.last = Some(seed);
        e
    }
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    pub fn update(&mut self, x: f64) -> Option<f64> {
        match self.last {
            // TA-Lib's operation order, so results agree to the last bits.
            Some(prev) => self.last = Some((x - prev) * self.alpha + prev),
            None => {
                self.seen += 1;
                self.seed_sum += x;
                if self.seen >= self.period {
                    self.last = Some(self.seed_sum / self.period as f64);
                }
            }
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
        self.period
    }
    pub fn reset(&mut self) {
        self.seen = 0;
        self.seed_sum = 0.0;
        self.last = None;
    }
}
