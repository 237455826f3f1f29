//! The risk gate: every order passes through it, and its answer is a [`Verdict`].
//!
//! The verdict types live here; the gate's checks are in [`RiskGate`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::Money;

/// Each check the gate runs, named so refusals can be counted by check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskCheck {
    /// NaN, zero or negative inputs (price, quantity, equity).
    InvalidInput,
    /// `ReduceOnly` refuses entries; `Halted` refuses everything new.
    TradingState,
    /// Max share of equity in one position (default 2%).
    PositionSize,
    /// Max open positions (default 20).
    OpenPositions,
    /// Max notional of one order (default $10,000).
    OrderNotional,
    /// Max notional traded in a day (default $100,000).
    DailyNotional,
    /// Daily loss limit, marked to market (default 0.5% of start-of-day equity).
    DailyLoss,
    /// Max drawdown from the equity peak (default 10%).
    Drawdown,
    /// Gross exposure beyond equity (no leverage by default).
    Leverage,
    /// Short selling (off by default).
    ShortSelling,
    /// An order for the symbol is already pending.
    PendingOrder,
    /// Re-entry cooldown after an exit (default 10 minutes).
    Cooldown,
    /// The last price is older than the allowed number of bars.
    StalePrice,
    /// The price moved more than the allowed share from the last close.
    ImplausiblePrice,
}

impl RiskCheck {
    pub const ALL: [RiskCheck; 14] = [
        RiskCheck::InvalidInput,
        RiskCheck::TradingState,
        RiskCheck::PositionSize,
        RiskCheck::OpenPositions,
        RiskCheck::OrderNotional,
        RiskCheck::DailyNotional,
        RiskCheck::DailyLoss,
        RiskCheck::Drawdown,
        RiskCheck::Leverage,
        RiskCheck::ShortSelling,
        RiskCheck::PendingOrder,
        RiskCheck::Cooldown,
        RiskCheck::StalePrice,
        RiskCheck::ImplausiblePrice,
    ];
    pub const fn as_str(self) -> &'static str {
        match self {
            RiskCheck::InvalidInput => "invalid_input",
            RiskCheck::TradingState => "trading_state",
            RiskCheck::PositionSize => "position_size",
            RiskCheck::OpenPositions => "open_positions",
            RiskCheck::OrderNotional => "order_notional",
            RiskCheck::DailyNotional => "daily_notional",
            RiskCheck::DailyLoss => "daily_loss",
            RiskCheck::Drawdown => "drawdown",
            RiskCheck::Leverage => "leverage",
            RiskCheck::ShortSelling => "short_selling",
            RiskCheck::PendingOrder => "pending_order",
            RiskCheck::Cooldown => "cooldown",
            RiskCheck::StalePrice => "stale_price",
            RiskCheck::ImplausiblePrice => "implausible_price",
        }
    }
}

impl fmt::Display for RiskCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a check refused, with the numbers behind it. `Copy` and allocation-free; `Display`
/// renders the human sentence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RefuseReason {
    /// A named input was NaN, zero or negative.
    InvalidInput { field: &'static str },
    /// The trading state forbids this order.
    State { state: crate::types::TradingState },
    /// A money amount over its limit.
    OverLimit { value: Money, limit: Money },
    /// A count over its limit.
    CountOverLimit { value: u32, limit: u32 },
    /// Seconds still to wait.
    CooldownSecs { remaining: i64 },
    /// Price age in bars over the limit.
    PriceAgeBars { age: u32, limit: u32 },
    /// Relative move from the last close over the limit (fractions, e.g. 0.25 vs 0.20).
    PriceMove { moved: f64, limit: f64 },
    /// A ratio over its limit (fractions).
    RatioOverLimit { value: f64, limit: f64 },
    /// Shorting is disabled.
    ShortingDisabled,
    /// An order for this symbol is still working.
    OrderPending,
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefuseReason::InvalidInput { field } => {
                write!(f, "{field} is NaN, zero or negative")
            }
            RefuseReason::State { state } => write!(f, "trading state is {state}"),
            RefuseReason::OverLimit { value, limit } => {
                write!(f, "${} exceeds the limit of ${}", value.round_dp(2), limit.round_dp(2))
            }
            RefuseReason::CountOverLimit { value, limit } => {
                write!(f, "{value} exceeds the limit of {limit}")
            }
            RefuseReason::CooldownSecs { remaining } => {
                write!(f, "re-entry cooldown: {remaining} s left")
            }
            RefuseReason::PriceAgeBars { age, limit } => {
                write!(f, "last price is {age} bars old (limit {limit})")
            }
            RefuseReason::PriceMove { moved, limit } => write!(
                f,
                "price moved {:.1}% from the last close (limit {:.1}%)",
                moved * 100.0,
                limit * 100.0
            ),
            RefuseReason::RatioOverLimit { value, limit } => {
                write!(f, "{:.2}% exceeds the limit of {:.2}%", value * 100.0, limit * 100.0)
            }
            RefuseReason::ShortingDisabled => f.write_str("short selling is disabled"),
            RefuseReason::OrderPending => f.write_str("an order for this symbol is pending"),
        }
    }
}

/// The gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    Refused { check: RiskCheck, reason: RefuseReason },
}

impl Verdict {
    pub const fn is_approved(&self) -> bool {
        matches!(self, Verdict::Approved)
    }
}

/// One check's result, as recorded in a decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CheckOutcome {
    Pass,
    Fail { reason: RefuseReason },
}

/// The gate's limits. Defaults are the product's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskLimits {
    /// Run the gate at all (`--no-risk` in backtests turns it off).
    pub enabled: bool,
    /// Max position value as a fraction of equity.
    pub max_position_pct: rust_decimal::Decimal,
    pub max_open_positions: u32,
    pub max_order_notional: Money,
    pub max_daily_notional: Money,
    /// Daily loss limit as a fraction of start-of-day equity, marked to market.
    pub daily_loss_pct: rust_decimal::Decimal,
    /// Drawdown from the equity peak that halts trading.
    pub max_drawdown_pct: rust_decimal::Decimal,
    /// Gross exposure / equity allowed (1 = no leverage).
    pub max_leverage: rust_decimal::Decimal,
    pub allow_short: bool,
    pub reentry_cooldown_secs: i64,
    /// A price older than this many bars blocks entries.
    pub max_price_age_bars: u32,
    /// A move larger than this fraction from the last close blocks entries.
    pub max_price_move_pct: rust_decimal::Decimal,
}

impl Default for RiskLimits {
    fn default() -> Self {
        use rust_decimal_macros::dec;
        RiskLimits {
            enabled: true,
            max_position_pct: dec!(0.02),
            max_open_positions: 20,
            max_order_notional: dec!(10000),
            max_daily_notional: dec!(100000),
            daily_loss_pct: dec!(0.005),
            max_drawdown_pct: dec!(0.10),
            max_leverage: dec!(1),
            allow_short: false,
            reentry_cooldown_secs: 600,
            max_price_age_bars: 2,
            max_price_move_pct: dec!(0.20),
        }
    }
}
