//! Protective exits: fixed stop-loss, trailing stop (ratchets up only) and optional take-profit.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde::{Deserialize, Serialize};

/// Stop settings (`[stops]` in config). `None` switches one off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StopConfig {
    /// Exit when the price falls this fraction below the entry (2%).
    pub stop_loss_pct: Option<Decimal>,
    /// Exit when the price falls this fraction below the high-water mark (5%).
    pub trailing_pct: Option<Decimal>,
    /// Exit when the price rises this fraction above the entry (off).
    pub take_profit_pct: Option<Decimal>,
}

impl Default for StopConfig {
    fn default() -> Self {
        StopConfig { stop_loss_pct: Some(dec!(0.02)), trailing_pct: Some(dec!(0.05)), take_profit_pct: None }
    }
}
