//! Streaming technical indicators: each takes one observation per `update`, costs O(1) per
//! update (Donchian: amortised O(1)), and answers `None` until it has seen
//! `warmup_period()` observations. Values are `f64`; conventions follow TA-Lib (see each type).
//!
//! Every indicator has `new(params)`, `update(..) -> Option<Output>`, `value()`, `is_ready()`,
//! `warmup_period()` and `reset()`.

pub mod average;
pub mod bands;
pub mod exact_sma;
pub mod oscillators;
pub mod volatility;
pub mod volume;
pub mod window;

pub use average::{Ema, Sma};
pub use bands::{Bands, Bollinger, Donchian, ZScore};
pub use oscillators::{Macd, MacdOutput, Roc, Rsi};
pub use volatility::{Atr, HistVol};
pub use volume::{Obv, Vwap};
pub use window::{RollingStats, Window};

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// A bar price as the `f64` the indicators take. Every `Decimal` converts; NaN is only a
/// guard and would show up as a missing reading rather than a panic.
pub fn price_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}
