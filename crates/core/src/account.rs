//! The broker's own account figures (IB's account summary), given to the engine by the shell
//! when orders go to a real account. They replace the ledger's equity for sizing and set the
//! start-of-day equity; the ledger still books every fill.

use crate::types::{Money, Ts};

/// One reading of the broker's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSnapshot {
    /// NetLiquidation: what sizing uses as equity.
    pub net_liquidation: Money,
    /// TotalCashValue, if reported.
    pub total_cash: Option<Money>,
    /// BuyingPower, if reported.
    pub buying_power: Option<Money>,
    /// When it was read.
    pub ts: Ts,
}
