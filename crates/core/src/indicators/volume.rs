//! Volume indicators: on-balance volume and the session VWAP.

/// On-balance volume (TA-Lib convention): starts at the first bar's volume, then adds the
/// volume on an up close, subtracts it on a down close, and keeps it on an unchanged one.
#[derive(Debug, Clone, PartialEq)]
pub struct Obv {
    prev_close: Option<f64>,
    last: Option<f64>,
}

impl Default for Obv {
    fn default() -> Self {
        Obv::new()
    }
}

impl Obv {
    pub fn new() -> Self {
        Obv {
            prev_close: None,
            last: None,
        }
    }
    pub fn update(&mut self, close: f64, volume: f64) -> Option<f64> {
        let obv = match (self.prev_close, self.last) {
            (Some(pc), Some(obv)) if close > pc => obv + volume,
            (Some(pc), Some(obv)) if close < pc => obv - volume,
            (Some(_), Some(obv)) => obv,
            _ => volume,
        };
        self.prev_close = Some(close);
        self.last = Some(obv);
        self.last
    }
    pub fn value(&self) -> Option<f64> {
        self.last
    }
    pub fn is_ready(&self) -> bool {
        self.last.is_some()
    }
    pub fn warmup_period(&self) -> usize {
        1
    }
    pub fn reset(&mut self) {
        *self = Obv::new();
    }
}

/// Volume-weighted average price since the last [`Vwap::reset`]: Σ typical × volume / Σ volume,
/// typical = (high + low + close) / 3. Call `reset()` at each session open. Until some volume
/// has traded there is no VWAP.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vwap {
    price_volume: f64,
    volume: f64,
    last: Option<f64>,
}

impl Vwap {
    pub fn new() -> Self {
        Vwap::default()
    }
    pub fn update(&mut self, high: f64, low: f64, close: f64, volume: f64) -> Option<f64> {
        self.price_volume += (high + low + close) / 3.0 * volume;
        self.volume += volume;
        if self.volume > 0.0 {
            self.last = Some(self.price_volume / self.volume);
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
        1
    }
    /// Starts a new session.
    pub fn reset(&mut self) {
        *self = Vwap::default();
    }
}
