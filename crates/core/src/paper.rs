//! The paper broker: fills orders against bars and quotes, deterministically, with no I/O.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::commission::CommissionModel;

/// When a market order fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FillPolicy {
    /// At the open of the symbol's next bar (a signal on bar t fills at bar t+1's open).
    #[default]
    NextOpen,
    /// At the close of the bar the order was placed on.
    Close,
    /// At the last quote (ask for buys, bid for sells); the next open when there is none.
    Quote,
}

/// Paper broker settings (`[paper]` in config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PaperConfig {
    pub fill: FillPolicy,
    /// Adverse slippage in basis points of the fill price.
    pub slippage_bps: Decimal,
    pub commission: CommissionModel,
    /// Optional partial fills: at most this fraction of a bar's volume fills per bar.
    pub max_volume_pct: Option<Decimal>,
}
