//! Commission models: IB fixed pricing (default), per share, and basis points.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How commissions are estimated for paper fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommissionModel {
    /// IB fixed: $0.005/share, minimum $1.00, maximum 1% of trade value.
    #[default]
    IbFixed,
    /// `rate` dollars per share.
    PerShare { rate: Decimal },
    /// `bps` basis points of trade value.
    Bps { bps: Decimal },
    Zero,
}
