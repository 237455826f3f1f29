//! Volatility: average true range (Wilder, TA-Lib convention) and annualised historical
//! volatility of log returns.

use super::window::RollingStats;

/// Average true range. True range needs the previous close, so the first bar only primes it;
/// the first ATR, after `period + 1` bars, is the mean of `period` true ranges, then
/// `atr = (atr × (period − 1) + tr) / period` (TA-Lib).
#[derive(Debug, Clone, PartialEq)]
pub struct Atr {
    period: usize,
    prev_close: Option<f64>,
    ranges: usize,
    acc: f64,
    last: Option<f64>,
}

impl Atr {
    /// `period` 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        Atr {
            period: period.max(1),
            prev_close: None,
            ranges: 0,
            acc: 0.0,
            last: None,
        }
    }
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let pc = self.prev_close.replace(close)?;
        let tr = (high - low).max((pc - high).abs()).max((pc - low).abs());
        let n = self.period as f64;
        match self.last {
            Some(atr) => self.last = Some((atr * (n - 1.0) + tr) / n),
            None => {
                self.acc += tr;
                self.ranges += 1;
                if self.ranges >= self.period {
                    self.last = Some(self.acc / n);
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
        self.period + 1
    }
    pub fn reset(&mut self) {
        *self = Atr::new(self.period);
    }
}

/// Historical volatility: sample std dev (ddof 1) of the last `period` log returns ×
/// √periods_per_year. A close that is not positive contributes a 0 return, so one bad bar
/// cannot turn the window into NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct HistVol {
    returns: RollingStats,
    annualise: f64,
    periods_per_year: f64,
    prev_close: Option<f64>,
    last: Option<f64>,
}

impl HistVol {
    /// `period` below 2 is treated as 2 (a sample std dev needs two returns).
    pub fn new(period: usize, periods_per_year: f64) -> Self {
        HistVol {
            returns: RollingStats::new(period.max(2)),
            annualise: periods_per_year.max(0.0).sqrt(),
            periods_per_year,
            prev_close: None,
            last: None,
        }
    }
    pub fn update(&mut self, close: f64) -> Option<f64> {
        let pc = self.prev_close.replace(close)?;
        let r = if pc > 0.0 && close > 0.0 {
            (close / pc).ln()
        } else {
            0.0
        };
        self.returns.push(r);
        if self.returns.is_full() {
            self.last = Some(self.returns.variance_sample().sqrt() * self.annualise);
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
        self.returns.period() + 1
    }
    pub fn reset(&mut self) {
        *self = HistVol::new(self.returns.period(), self.periods_per_year);
    }
}
