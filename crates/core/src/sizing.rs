//! Position sizing: how many shares an entry buys.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde::{Deserialize, Serialize};

use crate::types::Qty;

/// Sizing modes, chosen in config (`[sizing] mode = "fixed_fraction"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum SizingConfig {
    /// Spend `fraction` of equity.
    FixedFraction { fraction: Decimal },
    /// Risk `risk_fraction` of equity with a stop `atr_multiple` ATRs away.
    AtrRisk { risk_fraction: Decimal, atr_multiple: Decimal },
    /// Half-Kelly from closed trades, capped at `cap_fraction`; fixed fraction (the cap) until
    /// `min_trades` closed trades exist.
    HalfKelly { cap_fraction: Decimal, min_trades: u32 },
    /// Always the same number of shares.
    FixedQty { qty: Qty },
}

impl Default for SizingConfig {
    fn default() -> Self {
        SizingConfig::FixedFraction { fraction: dec!(0.02) }
    }
}
