//! The risk gate: every order passes through it, and its answer is a [`Verdict`].
//!
//! The verdict types live here; the gate's checks are in [`RiskGate`], which also owns the
//! automatic trading-state escalations ([`RiskGate::evaluate`]).
//!
//! Entries run every check in [`RiskGate::ENTRY_ORDER`]; exits (signal exits, stops,
//! take-profits, flatten) run only [`RiskGate::EXIT_ORDER`], because a gate that can trap a
//! position is a risk of its own. The verdict is the first failure in that order.

use std::fmt;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::decision::Checks;
use crate::events::StateCause;
use crate::indicators::exact_sma::fx;
use crate::types::{Money, OrderPurpose, Price, Qty, Side, SymbolId, TradingState, Ts};

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
    /// The broker session is not ready (disconnected, reconciling, restart window). Checked by
    /// the engine before the gate, so it is not in [`RiskCheck::ALL`].
    Connection,
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
            RiskCheck::Connection => "connection",
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
    /// The broker session is in this state, not ready.
    NotConnected {
        state: crate::types::ConnectionState,
    },
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefuseReason::InvalidInput { field } => {
                write!(f, "{field} is NaN, zero or negative")
            }
            RefuseReason::State { state } => write!(f, "trading state is {state}"),
            RefuseReason::OverLimit { value, limit } => {
                write!(
                    f,
                    "${} exceeds the limit of ${}",
                    value.round_dp(2),
                    limit.round_dp(2)
                )
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
                write!(
                    f,
                    "{:.2}% exceeds the limit of {:.2}%",
                    value * 100.0,
                    limit * 100.0
                )
            }
            RefuseReason::ShortingDisabled => f.write_str("short selling is disabled"),
            RefuseReason::OrderPending => f.write_str("an order for this symbol is pending"),
            RefuseReason::NotConnected { state } => {
                write!(f, "the broker session is {}, not ready", state.as_str())
            }
        }
    }
}

/// The gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    Refused {
        check: RiskCheck,
        reason: RefuseReason,
    },
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

/// Why a [`RiskLimits`] value was refused, naming the `[risk]` key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("risk.{field} {problem}")]
pub struct LimitsError {
    pub field: &'static str,
    pub problem: &'static str,
}

impl RiskLimits {
    /// Checks that every limit can be met by some order: fractions in range, counts and
    /// notionals positive.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let zero = Decimal::ZERO;
        let one = Decimal::ONE;
        let bad = |field, problem| Err(LimitsError { field, problem });
        if self.max_position_pct <= zero || self.max_position_pct > one {
            return bad("max_position_pct", "must be in (0, 1]");
        }
        if self.max_open_positions == 0 {
            return bad("max_open_positions", "must be at least 1");
        }
        if self.max_order_notional <= zero {
            return bad("max_order_notional", "must be positive");
        }
        if self.max_daily_notional <= zero {
            return bad("max_daily_notional", "must be positive");
        }
        if self.daily_loss_pct <= zero || self.daily_loss_pct >= one {
            return bad("daily_loss_pct", "must be in (0, 1)");
        }
        if self.max_drawdown_pct <= zero || self.max_drawdown_pct >= one {
            return bad("max_drawdown_pct", "must be in (0, 1)");
        }
        if self.max_leverage <= zero {
            return bad("max_leverage", "must be positive");
        }
        if self.reentry_cooldown_secs < 0 {
            return bad("reentry_cooldown_secs", "must not be negative");
        }
        if self.max_price_age_bars == 0 {
            return bad("max_price_age_bars", "must be at least 1");
        }
        if self.max_price_move_pct <= zero {
            return bad("max_price_move_pct", "must be positive");
        }
        Ok(())
    }
}

/// What the order is.
#[derive(Debug, Clone, Copy)]
pub struct OrderCheck {
    pub symbol: SymbolId,
    pub side: Side,
    /// Shares, > 0; the direction is `side`.
    pub qty: Qty,
    /// Reference price: the last close or quote.
    pub price: Price,
    pub purpose: OrderPurpose,
    pub now: Ts,
}

/// The account and market state around the order (the engine fills this from the ledger and
/// the order manager).
#[derive(Debug, Clone, Copy)]
pub struct RiskContext {
    pub state: TradingState,
    pub equity: Money,
    pub cash: Money,
    pub start_of_day_equity: Money,
    pub peak_equity: Money,
    /// Signed shares held in this symbol.
    pub position_qty: Qty,
    pub open_positions: u32,
    /// Sum of |position value| over all symbols.
    pub gross_exposure: Money,
    /// Notional traded so far today.
    pub daily_notional: Money,
    /// An order for this symbol is open.
    pub pending_order: bool,
    pub last_exit: Option<Ts>,
    pub last_price_ts: Option<Ts>,
    pub bar_interval_secs: i64,
    /// The close before the reference price.
    pub prev_close: Option<Price>,
}

/// The fields of a [`RiskContext`] that are not money: what every check but the money ones
/// reads. [`RiskGate::clears`] takes these with the money in fixed point, so the engine's
/// common case builds no `Decimal` figures.
#[derive(Debug, Clone, Copy)]
pub struct PlainContext {
    pub state: TradingState,
    pub position_qty: Qty,
    pub open_positions: u32,
    pub pending_order: bool,
    pub last_exit: Option<Ts>,
    pub last_price_ts: Option<Ts>,
    pub bar_interval_secs: i64,
    pub prev_close: Option<Price>,
}

impl RiskContext {
    pub fn plain(&self) -> PlainContext {
        PlainContext {
            state: self.state,
            position_qty: self.position_qty,
            open_positions: self.open_positions,
            pending_order: self.pending_order,
            last_exit: self.last_exit,
            last_price_ts: self.last_price_ts,
            bar_interval_secs: self.bar_interval_secs,
            prev_close: self.prev_close,
        }
    }

    /// `plain` with the money figures.
    #[allow(clippy::too_many_arguments)]
    pub fn with_money(
        plain: PlainContext,
        equity: Money,
        cash: Money,
        start_of_day_equity: Money,
        peak_equity: Money,
        gross_exposure: Money,
        daily_notional: Money,
    ) -> Self {
        RiskContext {
            state: plain.state,
            equity,
            cash,
            start_of_day_equity,
            peak_equity,
            position_qty: plain.position_qty,
            open_positions: plain.open_positions,
            gross_exposure,
            daily_notional,
            pending_order: plain.pending_order,
            last_exit: plain.last_exit,
            last_price_ts: plain.last_price_ts,
            bar_interval_secs: plain.bar_interval_secs,
            prev_close: plain.prev_close,
        }
    }
}

/// The money figures of a [`RiskContext`], and the order's price, as exact integers of 10^-8
/// ([`fx`] of each), for a caller that keeps them in fixed point already:
/// [`RiskGate::check_fixed`] then converts none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedContext {
    pub price: i64,
    pub equity: i64,
    pub cash: i64,
    pub start_of_day_equity: i64,
    pub peak_equity: i64,
    pub gross_exposure: i64,
    pub daily_notional: i64,
}

impl FixedContext {
    /// `fx` of every figure; `None` when one is not exact at the fixed scale.
    pub fn of(o: &OrderCheck, c: &RiskContext) -> Option<Self> {
        Some(FixedContext {
            price: fx(o.price)?,
            equity: fx(c.equity)?,
            cash: fx(c.cash)?,
            start_of_day_equity: fx(c.start_of_day_equity)?,
            peak_equity: fx(c.peak_equity)?,
            gross_exposure: fx(c.gross_exposure)?,
            daily_notional: fx(c.daily_notional)?,
        })
    }
}

/// The pre-trade risk gate. Pure: the same order and context always get the same verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskGate {
    limits: RiskLimits,
    /// `limits` in fixed point, derived once in [`RiskGate::new`] (the limits never change
    /// after it); `None` when one of them does not fit, and every check runs in `Decimal`.
    fixed: Option<FixedLimits>,
}

const NANOS: i128 = Ts::NANOS_PER_SEC as i128;

/// 10^8: one unit at the `fx` scale, and the factor from scale 8 to scale 16.
pub(crate) const E8: i128 = 100_000_000;

/// Decimal mantissas are below 2^96. A product or sum of `fx` values whose magnitude at its
/// fixed scale (8 or 16) is below this was computed exactly by the `Decimal` path too, since
/// its mantissa at the natural scale is no larger; above it `Decimal` may have rounded, so the
/// fast path hands the order to that path instead of guessing.
const EXACT: i128 = 1 << 96;

pub(crate) fn exact(v: i128) -> Option<i128> {
    (v.unsigned_abs() < EXACT as u128).then_some(v)
}

const fn bit(check: RiskCheck) -> u16 {
    1 << check as u16
}

/// `check`'s [`bit`] when it failed, else 0: masks are these or'd together.
const fn bit_if(check: RiskCheck, failed: bool) -> u16 {
    (failed as u16) << check as u16
}

/// A fraction limit `v / 10^8` (`v` its [`fx`]) in lowest terms, `num / den`, so that
/// comparing with it multiplies small numbers: `a × 10^8 ⋚ v × b` ⇔ `a × den ⋚ num × b`
/// (both sides divided by the positive `10^8 / den`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ratio {
    num: i64,
    den: i64,
}

impl Ratio {
    fn new(v: i64) -> Self {
        let (mut a, mut b) = (v.unsigned_abs(), E8 as u64);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        // `a` divides 10^8, so it is positive and both quotients exact.
        let g = a as i64;
        Ratio {
            num: v / g,
            den: E8 as i64 / g,
        }
    }

    /// `a` against `fraction × b`; `None` on overflow. When it answers, the `Decimal`
    /// product `fraction × b` was exact too: it is `(10^8 / den) × num × b`, below
    /// 2^27 × 2^63 < 2^96 (see [`EXACT`]).
    #[inline]
    fn cmp(self, a: i64, b: i64) -> Option<std::cmp::Ordering> {
        Some(a.checked_mul(self.den)?.cmp(&self.num.checked_mul(b)?))
    }
}

/// The money limits at the fixed scale: amounts as integers of 10^-8, fractions as [`Ratio`]s.
///
/// With them [`RiskGate::check`] decides the money checks in `i64` on the common path and
/// computes the `Decimal` numbers of a refusal only for a check that fails, so a verdict and
/// its reason are the same as the `Decimal` path's, bit for bit, at a fraction of the cost.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FixedLimits {
    max_position_pct: Ratio,
    max_order_notional: i64,
    max_daily_notional: i64,
    daily_loss_pct: Ratio,
    max_drawdown_pct: Ratio,
    max_leverage: Ratio,
    /// `max_leverage <= 1`: buys must be paid in cash.
    unlevered: bool,
    max_price_move_pct: Ratio,
}

impl FixedLimits {
    fn new(l: &RiskLimits) -> Option<Self> {
        let r = |d: Decimal| fx(d).map(Ratio::new);
        Some(FixedLimits {
            max_position_pct: r(l.max_position_pct)?,
            max_order_notional: fx(l.max_order_notional)?,
            max_daily_notional: fx(l.max_daily_notional)?,
            daily_loss_pct: r(l.daily_loss_pct)?,
            max_drawdown_pct: r(l.max_drawdown_pct)?,
            max_leverage: r(l.max_leverage)?,
            unlevered: fx(l.max_leverage)? <= E8 as i64,
            max_price_move_pct: r(l.max_price_move_pct)?,
        })
    }

    /// The money checks a validated entry fails, as a mask of [`bit`]s; `None` when a number
    /// overflows an `i64` (far beyond any real account), and the caller decides in `Decimal`.
    /// Each comparison mirrors one in [`RiskGate::entry_check`], exact in integers; the sums
    /// and products that `Decimal` computes there are below 2^96 whenever these fit an `i64`,
    /// so `Decimal` computed them exactly too.
    fn breaches(
        &self,
        o: &OrderCheck,
        c: &PlainContext,
        x: &FixedContext,
        position_after: Qty,
    ) -> Option<u16> {
        use std::cmp::Ordering::{Greater, Less};
        let price = x.price;
        let notional = o.qty.checked_mul(price)?;
        let held = position_after.checked_abs()?.checked_mul(price)?;
        let daily = x.daily_notional.checked_add(notional)?;
        let gross = x.gross_exposure.checked_add(notional)?;
        let moved = match c.prev_close {
            Some(prev) => {
                let prev = fx(prev)?;
                let change = price.checked_sub(prev)?.checked_abs()?;
                self.max_price_move_pct.cmp(change, prev)? == Greater
            }
            None => false,
        };
        let (equity, sod, peak) = (x.equity, x.start_of_day_equity, x.peak_equity);
        let cash_short = o.side == Side::Buy && self.unlevered && notional > x.cash;
        let position = self.max_position_pct.cmp(held, equity)? == Greater;
        let daily_loss = self.daily_loss_pct.cmp(sod.checked_sub(equity)?, sod)? != Less;
        let drawdown = self.max_drawdown_pct.cmp(peak.checked_sub(equity)?, peak)? != Less;
        let leverage = self.max_leverage.cmp(gross, equity)? == Greater || cash_short;
        Some(
            bit_if(RiskCheck::PositionSize, position)
                | bit_if(RiskCheck::OrderNotional, notional > self.max_order_notional)
                | bit_if(RiskCheck::DailyNotional, daily > self.max_daily_notional)
                | bit_if(RiskCheck::DailyLoss, daily_loss)
                | bit_if(RiskCheck::Drawdown, drawdown)
                | bit_if(RiskCheck::Leverage, leverage)
                | bit_if(RiskCheck::ImplausiblePrice, moved),
        )
    }
}

/// `a × b`, saturating instead of overflowing: inputs come from data, and a panic in the
/// gate would take the engine down.
fn sat_mul(a: Decimal, b: Decimal) -> Decimal {
    a.checked_mul(b)
        .unwrap_or(if a.is_sign_negative() != b.is_sign_negative() {
            Decimal::MIN
        } else {
            Decimal::MAX
        })
}

fn sat_add(a: Decimal, b: Decimal) -> Decimal {
    a.checked_add(b).unwrap_or(if a.is_sign_negative() {
        Decimal::MIN
    } else {
        Decimal::MAX
    })
}

/// `d <= 0`, from the sign bit and mantissa alone: the same answer as `Decimal`'s comparison
/// with zero, which the gate asks of every input, without its dispatch.
fn non_positive(d: Decimal) -> bool {
    d.is_zero() || d.is_sign_negative()
}

/// `d < 0`, as [`non_positive`].
fn negative(d: Decimal) -> bool {
    !d.is_zero() && d.is_sign_negative()
}

fn ratio_f64(num: Decimal, den: Decimal) -> f64 {
    num.checked_div(den)
        .and_then(|r| r.to_f64())
        .unwrap_or(f64::MAX)
}

fn frac_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::MAX)
}

impl RiskGate {
    /// The order in which entries are checked; the first failure is the verdict.
    pub const ENTRY_ORDER: [RiskCheck; 14] = RiskCheck::ALL;
    /// The order in which exits are checked. Exits skip the exposure, loss and price checks:
    /// they can only reduce risk.
    pub const EXIT_ORDER: [RiskCheck; 3] = [
        RiskCheck::InvalidInput,
        RiskCheck::TradingState,
        RiskCheck::PendingOrder,
    ];

    pub fn new(limits: RiskLimits) -> Self {
        let fixed = FixedLimits::new(&limits);
        RiskGate { limits, fixed }
    }

    pub fn limits(&self) -> &RiskLimits {
        &self.limits
    }

    /// Runs the checks for one order.
    ///
    /// With `record = Some(checks)` every applicable check runs and its outcome is appended to
    /// `checks` (the caller clears it), except that a failed `InvalidInput` ends the run: the
    /// other checks are meaningless on bad numbers. With `None` the run stops at the first
    /// failure. Either way the verdict is the first failure in [`Self::ENTRY_ORDER`] (entries)
    /// or [`Self::EXIT_ORDER`] (exits), else `Approved`. With `limits.enabled == false` the
    /// verdict is always `Approved` and nothing is recorded.
    ///
    /// Exits are validated on qty, price, side and size only (not equity), so that an account
    /// with broken equity can still close positions.
    pub fn check(
        &self,
        order: &OrderCheck,
        ctx: &RiskContext,
        record: Option<&mut Checks>,
    ) -> Verdict {
        self.check_with(order, ctx, None, record)
    }

    /// True when [`RiskGate::check`] would approve, judged from the fixed-point money alone;
    /// false when a check fails or might (then ask `check`, which also names the reason).
    /// The engine's fast path for an order with decision records off: an approval has no
    /// reason to write, so it needs no `Decimal` figure.
    pub fn clears(&self, o: &OrderCheck, c: &PlainContext, x: &FixedContext) -> bool {
        if !self.limits.enabled {
            return true;
        }
        let entry = o.purpose.is_entry();
        let Ok(after) = Self::validate_order(o, c.position_qty, x.price > 0, entry) else {
            return false;
        };
        if !entry {
            return Self::exit_allowed(c.state, o.purpose) && !c.pending_order;
        }
        // `validate`'s money inputs, read from the fixed point (the signs agree exactly).
        let inputs_ok = x.equity > 0
            && x.start_of_day_equity > 0
            && x.peak_equity > 0
            && x.gross_exposure >= 0
            && x.daily_notional >= 0
            && Self::validate_entry_market(c.bar_interval_secs, c.prev_close).is_ok();
        let Some(f) = &self.fixed else {
            return false;
        };
        inputs_ok && self.plain_fails(o, c, after) == 0 && f.breaches(o, c, x, after) == Some(0)
    }

    /// [`Self::check`], for a caller that has the context's money figures in fixed point:
    /// `fixed` must be [`FixedContext::of`]`(order, ctx)`. The same verdict and records, with
    /// no conversion of those figures.
    pub fn check_fixed(
        &self,
        order: &OrderCheck,
        ctx: &RiskContext,
        fixed: &FixedContext,
        record: Option<&mut Checks>,
    ) -> Verdict {
        debug_assert_eq!(FixedContext::of(order, ctx).as_ref(), Some(fixed));
        self.check_with(order, ctx, Some(fixed), record)
    }

    #[inline(always)]
    fn check_with(
        &self,
        order: &OrderCheck,
        ctx: &RiskContext,
        fixed: Option<&FixedContext>,
        mut record: Option<&mut Checks>,
    ) -> Verdict {
        if !self.limits.enabled {
            return Verdict::Approved;
        }
        let entry = order.purpose.is_entry();
        let position_after = match self.validate(order, ctx, entry) {
            Ok(p) => p,
            Err(field) => {
                let reason = RefuseReason::InvalidInput { field };
                if let Some(r) = record {
                    r.push(RiskCheck::InvalidInput, CheckOutcome::Fail { reason });
                }
                return Verdict::Refused {
                    check: RiskCheck::InvalidInput,
                    reason,
                };
            }
        };
        if let Some(r) = record.as_deref_mut() {
            r.push(RiskCheck::InvalidInput, CheckOutcome::Pass);
        }
        let list: &[RiskCheck] = if entry {
            &Self::ENTRY_ORDER
        } else {
            &Self::EXIT_ORDER
        };
        // The checks that may fail, when the fixed-point path can tell: the money checks it
        // cannot clear and the others that fail. A check outside the mask passes without
        // `Decimal` arithmetic; one inside gets its verdict and reason from `entry_check`.
        let candidates = match &self.fixed {
            Some(f) if entry => match fixed {
                Some(x) => f.breaches(order, &ctx.plain(), x, position_after),
                None => FixedContext::of(order, ctx)
                    .and_then(|x| f.breaches(order, &ctx.plain(), &x, position_after)),
            }
            .map(|m| m | self.plain_fails(order, &ctx.plain(), position_after)),
            _ => None,
        };
        if let (Some(mut m), None) = (candidates, record.as_deref()) {
            // Bits ascend in `ENTRY_ORDER`, so the first real failure is the verdict.
            while let Some(&check) = RiskCheck::ALL.get(m.trailing_zeros() as usize) {
                if let Some(reason) = self.entry_check(check, order, ctx, position_after) {
                    return Verdict::Refused { check, reason };
                }
                m &= m - 1;
            }
            return Verdict::Approved;
        }
        let mut verdict = Verdict::Approved;
        // Index 0 is InvalidInput in both lists, done above.
        for &check in list.iter().skip(1) {
            let failed = if !entry {
                Self::exit_check(check, order, ctx)
            } else if candidates.is_some_and(|m| m & bit(check) == 0) {
                None
            } else {
                self.entry_check(check, order, ctx, position_after)
            };
            match (failed, record.as_deref_mut()) {
                (None, Some(r)) => r.push(check, CheckOutcome::Pass),
                (None, None) => {}
                (Some(reason), Some(r)) => {
                    r.push(check, CheckOutcome::Fail { reason });
                    if verdict.is_approved() {
                        verdict = Verdict::Refused { check, reason };
                    }
                }
                (Some(reason), None) => return Verdict::Refused { check, reason },
            }
        }
        verdict
    }

    /// The checks other than the money ones that an entry fails, as a mask of [`bit`]s: the
    /// conditions of [`Self::entry_check`] without the reasons.
    fn plain_fails(&self, o: &OrderCheck, c: &PlainContext, position_after: Qty) -> u16 {
        let l = &self.limits;
        let since = |t: Ts| i128::from(o.now.0) - i128::from(t.0);
        let wait = i128::from(l.reentry_cooldown_secs) * NANOS;
        let max_age = i128::from(l.max_price_age_bars) * i128::from(c.bar_interval_secs) * NANOS;
        let cooling = c.last_exit.is_some_and(|t| since(t) < wait);
        let stale = c.last_price_ts.is_none_or(|t| since(t) > max_age);
        bit_if(RiskCheck::TradingState, c.state != TradingState::Active)
            | bit_if(
                RiskCheck::OpenPositions,
                c.position_qty == 0 && c.open_positions >= l.max_open_positions,
            )
            | bit_if(
                RiskCheck::ShortSelling,
                o.side == Side::Sell && position_after < 0 && !l.allow_short,
            )
            | bit_if(RiskCheck::PendingOrder, c.pending_order)
            | bit_if(RiskCheck::Cooldown, cooling)
            | bit_if(RiskCheck::StalePrice, stale)
    }

    /// Names the first input the checks cannot work with; else the position after the order
    /// fills, signed.
    fn validate(&self, o: &OrderCheck, c: &RiskContext, entry: bool) -> Result<Qty, &'static str> {
        let position_after =
            Self::validate_order(o, c.position_qty, !non_positive(o.price), entry)?;
        if entry {
            if non_positive(c.equity) {
                return Err("equity");
            }
            if non_positive(c.start_of_day_equity) {
                return Err("start_of_day_equity");
            }
            if non_positive(c.peak_equity) {
                return Err("peak_equity");
            }
            if negative(c.gross_exposure) {
                return Err("gross_exposure");
            }
            if negative(c.daily_notional) {
                return Err("daily_notional");
            }
            Self::validate_entry_market(c.bar_interval_secs, c.prev_close)?;
        }
        Ok(position_after)
    }

    /// The order's own inputs and, for an exit, that it reduces the position without
    /// reversing through zero: the signed position after it fills, or the field at fault.
    /// `price_positive` is the caller's reading of the price, `Decimal` or fixed point.
    fn validate_order(
        o: &OrderCheck,
        position_qty: Qty,
        price_positive: bool,
        entry: bool,
    ) -> Result<Qty, &'static str> {
        if o.qty <= 0 {
            return Err("qty");
        }
        if !price_positive {
            return Err("price");
        }
        let position_after = position_qty
            .checked_add(o.side.sign().saturating_mul(o.qty))
            .ok_or("qty")?;
        if !entry {
            if position_qty == 0 || o.qty > position_qty.saturating_abs() {
                return Err("qty");
            }
            if o.side.sign() == position_qty.signum() {
                return Err("side");
            }
        }
        Ok(position_after)
    }

    /// The market inputs an entry's checks divide by or compare with.
    fn validate_entry_market(
        bar_interval_secs: i64,
        prev_close: Option<Price>,
    ) -> Result<(), &'static str> {
        if bar_interval_secs <= 0 {
            return Err("bar_interval_secs");
        }
        if prev_close.is_some_and(non_positive) {
            return Err("prev_close");
        }
        Ok(())
    }

    /// Whether the trading state lets an exit of this purpose out: Halted still lets
    /// protection and the operator's flatten out.
    fn exit_allowed(state: TradingState, purpose: OrderPurpose) -> bool {
        match state {
            TradingState::Active | TradingState::ReduceOnly => true,
            TradingState::Halted => purpose != OrderPurpose::SignalExit,
        }
    }

    fn exit_check(check: RiskCheck, o: &OrderCheck, c: &RiskContext) -> Option<RefuseReason> {
        match check {
            RiskCheck::TradingState => (!Self::exit_allowed(c.state, o.purpose))
                .then_some(RefuseReason::State { state: c.state }),
            RiskCheck::PendingOrder => c.pending_order.then_some(RefuseReason::OrderPending),
            _ => None,
        }
    }

    fn entry_check(
        &self,
        check: RiskCheck,
        o: &OrderCheck,
        c: &RiskContext,
        position_after: Qty,
    ) -> Option<RefuseReason> {
        let l = &self.limits;
        // qty × price, saturating at `Decimal::MAX`.
        let notional = || sat_mul(Decimal::from(o.qty), o.price);
        let over = |value: Money, limit: Money| {
            (value > limit).then_some(RefuseReason::OverLimit { value, limit })
        };
        match check {
            // Connection is the engine's check, made before the gate is asked.
            RiskCheck::InvalidInput | RiskCheck::Connection => None,
            RiskCheck::TradingState => {
                (c.state != TradingState::Active).then_some(RefuseReason::State { state: c.state })
            }
            RiskCheck::PositionSize => {
                let shares = Decimal::from(position_after.saturating_abs());
                over(
                    sat_mul(shares, o.price),
                    sat_mul(l.max_position_pct, c.equity),
                )
            }
            RiskCheck::OpenPositions => (c.position_qty == 0
                && c.open_positions >= l.max_open_positions)
                .then_some(RefuseReason::CountOverLimit {
                    value: c.open_positions.saturating_add(1),
                    limit: l.max_open_positions,
                }),
            RiskCheck::OrderNotional => over(notional(), l.max_order_notional),
            RiskCheck::DailyNotional => {
                over(sat_add(c.daily_notional, notional()), l.max_daily_notional)
            }
            RiskCheck::DailyLoss => {
                let loss = c.start_of_day_equity - c.equity;
                let limit = sat_mul(l.daily_loss_pct, c.start_of_day_equity);
                // At the limit counts as over: the state switch may not have happened yet.
                (loss >= limit).then_some(RefuseReason::OverLimit { value: loss, limit })
            }
            RiskCheck::Drawdown => self
                .drawdown_breach(c.equity, c.peak_equity)
                .map(|(value, limit)| RefuseReason::RatioOverLimit { value, limit }),
            RiskCheck::Leverage => {
                let notional = notional();
                let gross = sat_add(c.gross_exposure, notional);
                over(gross, sat_mul(l.max_leverage, c.equity)).or_else(|| {
                    // Without leverage a buy must be paid for in cash; with it, margin may.
                    if o.side == Side::Buy && l.max_leverage <= Decimal::ONE {
                        over(notional, c.cash)
                    } else {
                        None
                    }
                })
            }
            RiskCheck::ShortSelling => {
                (o.side == Side::Sell && position_after < 0 && !l.allow_short)
                    .then_some(RefuseReason::ShortingDisabled)
            }
            RiskCheck::PendingOrder => c.pending_order.then_some(RefuseReason::OrderPending),
            RiskCheck::Cooldown => {
                let exit = c.last_exit?;
                let wait = i128::from(l.reentry_cooldown_secs) * NANOS;
                let elapsed = i128::from(o.now.0) - i128::from(exit.0);
                (elapsed < wait).then(|| {
                    let left = (wait - elapsed + NANOS - 1) / NANOS;
                    RefuseReason::CooldownSecs {
                        remaining: i64::try_from(left).unwrap_or(i64::MAX),
                    }
                })
            }
            RiskCheck::StalePrice => {
                let limit = l.max_price_age_bars;
                let Some(ts) = c.last_price_ts else {
                    return Some(RefuseReason::PriceAgeBars {
                        age: u32::MAX,
                        limit,
                    });
                };
                let bar = i128::from(c.bar_interval_secs) * NANOS;
                let age = i128::from(o.now.0) - i128::from(ts.0);
                (age > i128::from(limit) * bar).then(|| {
                    let bars = (age + bar - 1) / bar;
                    RefuseReason::PriceAgeBars {
                        age: u32::try_from(bars).unwrap_or(u32::MAX),
                        limit,
                    }
                })
            }
            RiskCheck::ImplausiblePrice => {
                let prev = c.prev_close?;
                let moved = (o.price - prev).abs();
                (moved > sat_mul(l.max_price_move_pct, prev)).then(|| RefuseReason::PriceMove {
                    moved: ratio_f64(moved, prev),
                    limit: frac_f64(l.max_price_move_pct),
                })
            }
        }
    }

    /// `Some((drawdown, limit))` as fractions when (peak − equity) / peak ≥ max_drawdown_pct.
    fn drawdown_breach(&self, equity: Money, peak: Money) -> Option<(f64, f64)> {
        let dd = peak - equity;
        (dd >= sat_mul(self.limits.max_drawdown_pct, peak))
            .then(|| (ratio_f64(dd, peak), frac_f64(self.limits.max_drawdown_pct)))
    }

    /// The highest equity at which [`Self::evaluate`] could change the state, given the
    /// start-of-day equity and the peak: `max(sod × (1 − daily_loss_pct), peak × (1 − max_drawdown_pct))`.
    /// The engine compares equity with this one number on every bar and asks `evaluate` only
    /// at or below it.
    /// A disabled gate changes no state: no equity triggers it (`Decimal::MIN`).
    pub fn trigger_equity(&self, start_of_day_equity: Money, peak_equity: Money) -> Money {
        if !self.limits.enabled {
            return Decimal::MIN;
        }
        let daily = start_of_day_equity - sat_mul(self.limits.daily_loss_pct, start_of_day_equity);
        let drawdown = peak_equity - sat_mul(self.limits.max_drawdown_pct, peak_equity);
        daily.max(drawdown)
    }

    /// Automatic trading-state transitions; they only escalate. A drawdown of
    /// `max_drawdown_pct` from the peak halts; a marked-to-market daily loss of
    /// `daily_loss_pct` of start-of-day equity switches `Active` to `ReduceOnly`. Returns the
    /// new state and its cause when it changes. Non-positive equity, start-of-day equity or
    /// peak, or a disabled gate, change nothing. Only an operator de-escalates.
    pub fn evaluate(
        &self,
        state: TradingState,
        equity: Money,
        start_of_day_equity: Money,
        peak_equity: Money,
    ) -> Option<(TradingState, StateCause)> {
        let zero = Decimal::ZERO;
        if !self.limits.enabled
            || state == TradingState::Halted
            || equity <= zero
            || start_of_day_equity <= zero
            || peak_equity <= zero
        {
            return None;
        }
        if let Some((drawdown_pct, limit_pct)) = self.drawdown_breach(equity, peak_equity) {
            return Some((
                TradingState::Halted,
                StateCause::Drawdown {
                    drawdown_pct,
                    limit_pct,
                },
            ));
        }
        let loss = start_of_day_equity - equity;
        let limit = sat_mul(self.limits.daily_loss_pct, start_of_day_equity);
        if state == TradingState::Active && loss >= limit {
            return Some((
                TradingState::ReduceOnly,
                StateCause::DailyLoss { loss, limit },
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    const NOW: Ts = Ts::from_secs(1_700_000_000);

    fn gate() -> RiskGate {
        RiskGate::new(RiskLimits::default())
    }

    /// $100k account, flat, fresh price: a 20-share buy at $100 is exactly 2%.
    fn ctx() -> RiskContext {
        RiskContext {
            state: TradingState::Active,
            equity: dec!(100000),
            cash: dec!(100000),
            start_of_day_equity: dec!(100000),
            peak_equity: dec!(100000),
            position_qty: 0,
            open_positions: 0,
            gross_exposure: dec!(0),
            daily_notional: dec!(0),
            pending_order: false,
            last_exit: None,
            last_price_ts: Some(NOW),
            bar_interval_secs: 60,
            prev_close: Some(dec!(100)),
        }
    }

    fn buy(qty: Qty) -> OrderCheck {
        OrderCheck {
            symbol: SymbolId(0),
            side: Side::Buy,
            qty,
            price: dec!(100),
            purpose: OrderPurpose::Entry,
            now: NOW,
        }
    }

    fn exit(side: Side, qty: Qty, purpose: OrderPurpose) -> OrderCheck {
        OrderCheck {
            side,
            qty,
            purpose,
            ..buy(qty)
        }
    }

    fn refused(check: RiskCheck, reason: RefuseReason) -> Verdict {
        Verdict::Refused { check, reason }
    }

    fn over(value: Money, limit: Money) -> RefuseReason {
        RefuseReason::OverLimit { value, limit }
    }

    #[test]
    fn clean_entry_passes_every_check_in_order() {
        let mut checks = Checks::default();
        assert_eq!(
            gate().check(&buy(20), &ctx(), Some(&mut checks)),
            Verdict::Approved
        );
        let got: Vec<_> = checks.iter().copied().collect();
        let want: Vec<_> = RiskCheck::ALL
            .iter()
            .map(|c| (*c, CheckOutcome::Pass))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn position_size_boundary() {
        let g = gate();
        assert_eq!(g.check(&buy(20), &ctx(), None), Verdict::Approved);
        assert_eq!(
            g.check(&buy(21), &ctx(), None),
            refused(RiskCheck::PositionSize, over(dec!(2100), dec!(2000)))
        );
        // Adding counts the shares already held.
        let c = RiskContext {
            position_qty: 15,
            open_positions: 1,
            ..ctx()
        };
        assert_eq!(g.check(&buy(5), &c, None), Verdict::Approved);
        assert_eq!(
            g.check(&buy(6), &c, None),
            refused(RiskCheck::PositionSize, over(dec!(2100), dec!(2000)))
        );
    }

    #[test]
    fn open_positions_boundary() {
        let g = gate();
        let c19 = RiskContext {
            open_positions: 19,
            ..ctx()
        };
        assert_eq!(g.check(&buy(10), &c19, None), Verdict::Approved);
        let c20 = RiskContext {
            open_positions: 20,
            ..ctx()
        };
        assert_eq!(
            g.check(&buy(10), &c20, None),
            refused(
                RiskCheck::OpenPositions,
                RefuseReason::CountOverLimit {
                    value: 21,
                    limit: 20
                }
            )
        );
        // Adding to one of the 20 opens nothing new.
        let adding = RiskContext {
            position_qty: 10,
            ..c20
        };
        assert_eq!(g.check(&buy(10), &adding, None), Verdict::Approved);
    }

    #[test]
    fn order_and_daily_notional_boundaries() {
        let g = RiskGate::new(RiskLimits {
            max_position_pct: dec!(1),
            ..RiskLimits::default()
        });
        assert_eq!(g.check(&buy(100), &ctx(), None), Verdict::Approved);
        assert_eq!(
            g.check(&buy(101), &ctx(), None),
            refused(RiskCheck::OrderNotional, over(dec!(10100), dec!(10000)))
        );
        let c = RiskContext {
            daily_notional: dec!(90000),
            ..ctx()
        };
        assert_eq!(g.check(&buy(100), &c, None), Verdict::Approved);
        let c = RiskContext {
            daily_notional: dec!(90000.01),
            ..ctx()
        };
        assert_eq!(
            g.check(&buy(100), &c, None),
            refused(
                RiskCheck::DailyNotional,
                over(dec!(100000.01), dec!(100000))
            )
        );
    }

    #[test]
    fn daily_loss_refuses_at_the_limit() {
        let g = gate();
        // 0.5% of 100,000 = 500.
        let at = RiskContext {
            equity: dec!(99500),
            cash: dec!(99500),
            ..ctx()
        };
        assert_eq!(
            g.check(&buy(10), &at, None),
            refused(RiskCheck::DailyLoss, over(dec!(500), dec!(500)))
        );
        let under = RiskContext {
            equity: dec!(99500.01),
            ..at
        };
        assert_eq!(g.check(&buy(10), &under, None), Verdict::Approved);
    }

    #[test]
    fn drawdown_refuses_at_the_limit() {
        let g = gate();
        let at = RiskContext {
            equity: dec!(90000),
            cash: dec!(90000),
            start_of_day_equity: dec!(90000),
            ..ctx()
        };
        assert_eq!(
            g.check(&buy(10), &at, None),
            refused(
                RiskCheck::Drawdown,
                RefuseReason::RatioOverLimit {
                    value: 0.1,
                    limit: 0.1
                }
            )
        );
        let under = RiskContext {
            equity: dec!(90000.01),
            ..at
        };
        assert_eq!(g.check(&buy(10), &under, None), Verdict::Approved);
    }

    #[test]
    fn leverage_and_cash_boundaries() {
        let g = gate();
        let c = RiskContext {
            gross_exposure: dec!(99000),
            ..ctx()
        };
        assert_eq!(g.check(&buy(10), &c, None), Verdict::Approved);
        let c = RiskContext {
            gross_exposure: dec!(99000.01),
            ..ctx()
        };
        assert_eq!(
            g.check(&buy(10), &c, None),
            refused(RiskCheck::Leverage, over(dec!(100000.01), dec!(100000)))
        );
        let c = RiskContext {
            cash: dec!(1000),
            ..ctx()
        };
        assert_eq!(g.check(&buy(10), &c, None), Verdict::Approved);
        let c = RiskContext {
            cash: dec!(999.99),
            ..ctx()
        };
        assert_eq!(
            g.check(&buy(10), &c, None),
            refused(RiskCheck::Leverage, over(dec!(1000), dec!(999.99)))
        );
        // With leverage allowed, margin may pay for a buy.
        let g2 = RiskGate::new(RiskLimits {
            max_leverage: dec!(2),
            ..RiskLimits::default()
        });
        let c = RiskContext {
            cash: dec!(0),
            gross_exposure: dec!(150000),
            ..ctx()
        };
        assert_eq!(g2.check(&buy(10), &c, None), Verdict::Approved);
    }

    #[test]
    fn short_selling_needs_allow_short() {
        let sell = OrderCheck {
            side: Side::Sell,
            ..buy(10)
        };
        assert_eq!(
            gate().check(&sell, &ctx(), None),
            refused(RiskCheck::ShortSelling, RefuseReason::ShortingDisabled)
        );
        let g = RiskGate::new(RiskLimits {
            allow_short: true,
            ..RiskLimits::default()
        });
        assert_eq!(g.check(&sell, &ctx(), None), Verdict::Approved);
        // A sell entry that ends flat shorts nothing.
        let long = RiskContext {
            position_qty: 10,
            open_positions: 1,
            ..ctx()
        };
        assert_eq!(gate().check(&sell, &long, None), Verdict::Approved);
    }

    #[test]
    fn pending_order_refuses_entries_and_exits() {
        let c = RiskContext {
            pending_order: true,
            position_qty: 10,
            ..ctx()
        };
        let pending = refused(RiskCheck::PendingOrder, RefuseReason::OrderPending);
        assert_eq!(gate().check(&buy(5), &c, None), pending);
        let stop = exit(Side::Sell, 10, OrderPurpose::StopLoss);
        assert_eq!(gate().check(&stop, &c, None), pending);
    }

    #[test]
    fn cooldown_boundary() {
        let g = gate();
        let c = RiskContext {
            last_exit: Some(Ts(NOW.0 - 600 * Ts::NANOS_PER_SEC)),
            ..ctx()
        };
        assert_eq!(g.check(&buy(10), &c, None), Verdict::Approved);
        let c = RiskContext {
            last_exit: Some(Ts(NOW.0 - 599 * Ts::NANOS_PER_SEC)),
            ..ctx()
        };
        assert_eq!(
            g.check(&buy(10), &c, None),
            refused(
                RiskCheck::Cooldown,
                RefuseReason::CooldownSecs { remaining: 1 }
            )
        );
        // 599.5 s elapsed: half a second left rounds up to 1.
        let c = RiskContext {
            last_exit: Some(Ts(NOW.0 - 599_500_000_000)),
            ..ctx()
        };
        assert_eq!(
            g.check(&buy(10), &c, None),
            refused(
                RiskCheck::Cooldown,
                RefuseReason::CooldownSecs { remaining: 1 }
            )
        );
        let c = RiskContext {
            last_exit: Some(NOW.plus_secs(-10)),
            ..ctx()
        };
        assert_eq!(
            g.check(&buy(10), &c, None),
            refused(
                RiskCheck::Cooldown,
                RefuseReason::CooldownSecs { remaining: 590 }
            )
        );
    }

    #[test]
    fn stale_price_boundary() {
        let g = gate();
        // Two 60 s bars old is still fresh.
        let c = RiskContext {
            last_price_ts: Some(NOW.plus_secs(-120)),
            ..ctx()
        };
        assert_eq!(g.check(&buy(10), &c, None), Verdict::Approved);
        let c = RiskContext {
            last_price_ts: Some(NOW.plus_secs(-121)),
            ..ctx()
        };
        assert_eq!(
            g.check(&buy(10), &c, None),
            refused(
                RiskCheck::StalePrice,
                RefuseReason::PriceAgeBars { age: 3, limit: 2 }
            )
        );
        let c = RiskContext {
            last_price_ts: None,
            ..ctx()
        };
        assert_eq!(
            g.check(&buy(10), &c, None),
            refused(
                RiskCheck::StalePrice,
                RefuseReason::PriceAgeBars {
                    age: u32::MAX,
                    limit: 2
                }
            )
        );
    }

    #[test]
    fn implausible_price_boundary() {
        let g = gate();
        let at = |p: Price| OrderCheck {
            price: p,
            ..buy(10)
        };
        assert_eq!(g.check(&at(dec!(120)), &ctx(), None), Verdict::Approved);
        assert_eq!(g.check(&at(dec!(80)), &ctx(), None), Verdict::Approved);
        match g.check(&at(dec!(125)), &ctx(), None) {
            Verdict::Refused {
                check: RiskCheck::ImplausiblePrice,
                reason: RefuseReason::PriceMove { moved, limit },
            } => {
                assert!((moved - 0.25).abs() < 1e-12, "{moved}");
                assert!((limit - 0.20).abs() < 1e-12, "{limit}");
            }
            v => panic!("{v:?}"),
        }
        assert!(!g.check(&at(dec!(120.01)), &ctx(), None).is_approved());
        assert!(!g.check(&at(dec!(79.99)), &ctx(), None).is_approved());
        let no_ref = RiskContext {
            prev_close: None,
            ..ctx()
        };
        let one = OrderCheck {
            qty: 1,
            ..at(dec!(500))
        };
        assert_eq!(g.check(&one, &no_ref, None), Verdict::Approved);
    }

    #[test]
    fn entries_need_active() {
        for state in [TradingState::ReduceOnly, TradingState::Halted] {
            let c = RiskContext { state, ..ctx() };
            assert_eq!(
                gate().check(&buy(10), &c, None),
                refused(RiskCheck::TradingState, RefuseReason::State { state })
            );
        }
    }

    #[test]
    fn exits_in_reduce_only_and_halted() {
        let g = gate();
        let long = RiskContext {
            position_qty: 50,
            open_positions: 1,
            ..ctx()
        };
        let all = [
            OrderPurpose::SignalExit,
            OrderPurpose::StopLoss,
            OrderPurpose::TrailingStop,
            OrderPurpose::TakeProfit,
            OrderPurpose::Flatten,
        ];
        let reduce = RiskContext {
            state: TradingState::ReduceOnly,
            ..long
        };
        for p in all {
            assert_eq!(
                g.check(&exit(Side::Sell, 50, p), &reduce, None),
                Verdict::Approved,
                "{p:?}"
            );
        }
        let halted = RiskContext {
            state: TradingState::Halted,
            ..long
        };
        assert_eq!(
            g.check(
                &exit(Side::Sell, 50, OrderPurpose::SignalExit),
                &halted,
                None
            ),
            refused(
                RiskCheck::TradingState,
                RefuseReason::State {
                    state: TradingState::Halted
                }
            )
        );
        for p in &all[1..] {
            assert_eq!(
                g.check(&exit(Side::Sell, 50, *p), &halted, None),
                Verdict::Approved
            );
        }
        // A short is covered by a buy.
        let short = RiskContext {
            position_qty: -30,
            ..halted
        };
        let cover = exit(Side::Buy, 30, OrderPurpose::StopLoss);
        assert_eq!(g.check(&cover, &short, None), Verdict::Approved);
    }

    #[test]
    fn exits_skip_entry_checks() {
        // Over every entry limit at once, yet a partial exit goes through.
        let c = RiskContext {
            position_qty: 1000,
            open_positions: 40,
            equity: dec!(1),
            cash: dec!(-5000),
            start_of_day_equity: dec!(0),
            peak_equity: dec!(0),
            daily_notional: dec!(1e9),
            last_exit: Some(NOW),
            last_price_ts: None,
            prev_close: Some(dec!(1)),
            ..ctx()
        };
        let mut checks = Checks::default();
        let o = exit(Side::Sell, 400, OrderPurpose::SignalExit);
        assert_eq!(gate().check(&o, &c, Some(&mut checks)), Verdict::Approved);
        let got: Vec<_> = checks.iter().map(|(c, _)| *c).collect();
        assert_eq!(got, RiskGate::EXIT_ORDER.to_vec());
    }

    #[test]
    fn exits_may_not_reverse() {
        let g = gate();
        let long = RiskContext {
            position_qty: 50,
            ..ctx()
        };
        let invalid = |field| {
            refused(
                RiskCheck::InvalidInput,
                RefuseReason::InvalidInput { field },
            )
        };
        let sell = |q| exit(Side::Sell, q, OrderPurpose::Flatten);
        assert_eq!(g.check(&sell(51), &long, None), invalid("qty"));
        assert_eq!(
            g.check(&exit(Side::Buy, 10, OrderPurpose::StopLoss), &long, None),
            invalid("side")
        );
        assert_eq!(g.check(&sell(1), &ctx(), None), invalid("qty"));
    }

    #[test]
    fn invalid_inputs_refused_without_panic() {
        let g = gate();
        let invalid = |field| {
            refused(
                RiskCheck::InvalidInput,
                RefuseReason::InvalidInput { field },
            )
        };
        assert_eq!(g.check(&buy(0), &ctx(), None), invalid("qty"));
        assert_eq!(g.check(&buy(-5), &ctx(), None), invalid("qty"));
        assert_eq!(
            g.check(
                &OrderCheck {
                    price: dec!(0),
                    ..buy(1)
                },
                &ctx(),
                None
            ),
            invalid("price")
        );
        assert_eq!(
            g.check(
                &OrderCheck {
                    price: dec!(-1),
                    ..buy(1)
                },
                &ctx(),
                None
            ),
            invalid("price")
        );
        let cases: [(RiskContext, &str); 6] = [
            (
                RiskContext {
                    equity: dec!(0),
                    ..ctx()
                },
                "equity",
            ),
            (
                RiskContext {
                    equity: dec!(-10),
                    ..ctx()
                },
                "equity",
            ),
            (
                RiskContext {
                    start_of_day_equity: dec!(0),
                    ..ctx()
                },
                "start_of_day_equity",
            ),
            (
                RiskContext {
                    peak_equity: dec!(0),
                    ..ctx()
                },
                "peak_equity",
            ),
            (
                RiskContext {
                    bar_interval_secs: 0,
                    ..ctx()
                },
                "bar_interval_secs",
            ),
            (
                RiskContext {
                    prev_close: Some(dec!(0)),
                    ..ctx()
                },
                "prev_close",
            ),
        ];
        for (c, field) in cases {
            let mut checks = Checks::default();
            assert_eq!(g.check(&buy(1), &c, Some(&mut checks)), invalid(field));
            // Nothing after a failed InvalidInput is meaningful, so nothing else is recorded.
            assert_eq!(checks.iter().count(), 1);
        }
        // Absurd sizes saturate instead of overflowing.
        let huge = OrderCheck {
            qty: i64::MAX,
            price: Decimal::MAX,
            ..buy(1)
        };
        assert!(!g.check(&huge, &ctx(), None).is_approved());
        let c = RiskContext {
            position_qty: i64::MAX,
            ..ctx()
        };
        assert_eq!(g.check(&buy(1), &c, None), invalid("qty"));
    }

    #[test]
    fn record_runs_every_check_and_verdict_is_the_first_failure() {
        let c = RiskContext {
            state: TradingState::ReduceOnly,
            pending_order: true,
            last_price_ts: None,
            ..ctx()
        };
        let mut checks = Checks::default();
        let v = gate().check(&buy(10), &c, Some(&mut checks));
        let reduce = RefuseReason::State {
            state: TradingState::ReduceOnly,
        };
        assert_eq!(v, refused(RiskCheck::TradingState, reduce));
        assert_eq!(gate().check(&buy(10), &c, None), v);
        let failed: Vec<_> = checks
            .iter()
            .filter(|(_, o)| matches!(o, CheckOutcome::Fail { .. }))
            .map(|(c, _)| *c)
            .collect();
        assert_eq!(
            failed,
            [
                RiskCheck::TradingState,
                RiskCheck::PendingOrder,
                RiskCheck::StalePrice
            ]
        );
        assert_eq!(checks.iter().count(), 14);
    }

    #[test]
    fn disabled_gate_approves_everything_and_records_nothing() {
        let g = RiskGate::new(RiskLimits {
            enabled: false,
            ..RiskLimits::default()
        });
        let mut checks = Checks::default();
        let c = RiskContext {
            state: TradingState::Halted,
            equity: dec!(0),
            ..ctx()
        };
        assert_eq!(g.check(&buy(-1), &c, Some(&mut checks)), Verdict::Approved);
        assert_eq!(checks.iter().count(), 0);
    }

    #[test]
    fn evaluate_escalates() {
        let g = gate();
        let (a, r, h) = (
            TradingState::Active,
            TradingState::ReduceOnly,
            TradingState::Halted,
        );
        let k = dec!(100000);
        assert_eq!(
            g.evaluate(a, dec!(99500), k, k),
            Some((
                r,
                StateCause::DailyLoss {
                    loss: dec!(500),
                    limit: dec!(500)
                }
            ))
        );
        assert_eq!(g.evaluate(a, dec!(99500.01), k, k), None);
        assert_eq!(
            g.evaluate(a, dec!(90000), dec!(90000), k),
            Some((
                h,
                StateCause::Drawdown {
                    drawdown_pct: 0.1,
                    limit_pct: 0.1
                }
            ))
        );
        assert_eq!(g.evaluate(a, dec!(90000.01), dec!(90000.01), k), None);
        // Drawdown wins over a same-moment daily loss, and escalates ReduceOnly further.
        assert!(matches!(
            g.evaluate(a, dec!(80000), k, k),
            Some((TradingState::Halted, _))
        ));
        assert!(matches!(
            g.evaluate(r, dec!(80000), k, k),
            Some((TradingState::Halted, _))
        ));
        // Already there: no change.
        assert_eq!(g.evaluate(r, dec!(99000), k, k), None);
        assert_eq!(g.evaluate(h, dec!(50000), k, k), None);
        // Invalid inputs change nothing.
        assert_eq!(g.evaluate(a, dec!(0), k, k), None);
        assert_eq!(g.evaluate(a, k, dec!(0), k), None);
        assert_eq!(g.evaluate(a, k, k, dec!(-1)), None);
    }

    proptest::proptest! {
        /// Above the trigger nothing escalates, with the gate on or off; off, nothing ever does.
        #[test]
        fn nothing_escalates_above_the_trigger(
            eq in 1i64..20_000_000,
            sod in 1i64..20_000_000,
            peak_extra in 0i64..5_000_000,
            enabled: bool,
        ) {
            let g = RiskGate::new(RiskLimits { enabled, ..RiskLimits::default() });
            let (eq, sod) = (Decimal::new(eq, 2), Decimal::new(sod, 2));
            let peak = eq.max(sod) + Decimal::new(peak_extra, 2);
            let t = g.trigger_equity(sod, peak);
            let moved = g.evaluate(TradingState::Active, eq, sod, peak);
            if eq > t {
                proptest::prop_assert_eq!(moved, None);
            }
            if !enabled {
                proptest::prop_assert_eq!(t, Decimal::MIN);
            }
        }
    }

    #[test]
    fn evaluate_never_deescalates() {
        let g = gate();
        let k = dec!(100000);
        // A full recovery leaves ReduceOnly and Halted as they are.
        for state in [TradingState::ReduceOnly, TradingState::Halted] {
            assert_eq!(g.evaluate(state, dec!(120000), k, dec!(120000)), None);
        }
        let rank = |s: TradingState| match s {
            TradingState::Active => 0,
            TradingState::ReduceOnly => 1,
            TradingState::Halted => 2,
        };
        for state in [
            TradingState::Active,
            TradingState::ReduceOnly,
            TradingState::Halted,
        ] {
            for eq in [
                dec!(1),
                dec!(50000),
                dec!(89000),
                dec!(99400),
                dec!(100000),
                dec!(200000),
            ] {
                if let Some((to, _)) = g.evaluate(state, eq, k, k) {
                    assert!(rank(to) > rank(state), "{state:?} -> {to:?}");
                }
            }
        }
    }

    #[test]
    fn limits_validate_names_the_field() {
        assert_eq!(RiskLimits::default().validate(), Ok(()));
        let bad = RiskLimits {
            max_position_pct: dec!(1.5),
            ..RiskLimits::default()
        };
        assert_eq!(bad.validate().map_err(|e| e.field), Err("max_position_pct"));
        let bad = RiskLimits {
            max_open_positions: 0,
            ..RiskLimits::default()
        };
        assert_eq!(
            bad.validate().map_err(|e| e.field),
            Err("max_open_positions")
        );
        let bad = RiskLimits {
            daily_loss_pct: dec!(0),
            ..RiskLimits::default()
        };
        assert_eq!(
            bad.validate().map_err(|e| e.to_string()),
            Err("risk.daily_loss_pct must be in (0, 1)".to_string())
        );
    }
}

#[cfg(test)]
mod fast_path_props {
    use super::*;
    use proptest::prelude::*;

    /// Decimals from every regime: small ones that tie with limits, money at up to 8 places,
    /// and rarely (so that most cases reach the fast path) `i64` mantissas with up to 12
    /// places (past the fixed scale), full 96-bit mantissas at any scale (past `EXACT`) and
    /// the extremes.
    fn any_dec() -> BoxedStrategy<Decimal> {
        prop_oneof![
            20 => (-5i64..300, 0u32..3).prop_map(|(m, s)| Decimal::new(m, s)),
            20 => (0i64..1_000_000_000, 0u32..=8).prop_map(|(m, s)| Decimal::new(m, s)),
            1 => (any::<i64>(), 0u32..=12).prop_map(|(m, s)| Decimal::new(m, s)),
            1 => (any::<i128>(), 0u32..=28)
                .prop_map(|(m, s)| Decimal::from_i128_with_scale(m % (1 << 96), s)),
            1 => prop_oneof![
                Just(Decimal::ZERO),
                Just(-Decimal::ZERO),
                Just(Decimal::MAX),
                Just(Decimal::MIN),
                Just(Decimal::new(1, 28)),
            ],
        ]
        .boxed()
    }

    /// Mostly positive, as the gate's inputs usually are, so most cases get past validation.
    fn pos_dec() -> BoxedStrategy<Decimal> {
        prop_oneof![19 => any_dec().prop_map(|d| d.abs()), 1 => any_dec()].boxed()
    }

    /// A fraction limit: mostly small, as configured ones are, else anything.
    fn frac_dec() -> BoxedStrategy<Decimal> {
        prop_oneof![
            8 => (0i64..2_000, 0u32..=5).prop_map(|(m, s)| Decimal::new(m, s)),
            1 => pos_dec(),
        ]
        .boxed()
    }

    fn qty() -> impl Strategy<Value = Qty> {
        prop_oneof![4 => -3i64..200, 1 => any::<i64>()]
    }

    fn ts() -> impl Strategy<Value = Option<Ts>> {
        let now = 1_700_000_000 * Ts::NANOS_PER_SEC;
        prop::option::weighted(
            0.9,
            prop_oneof![
                (-1_000i64..1_000).prop_map(move |s| Ts(now + s * Ts::NANOS_PER_SEC)),
                any::<i64>().prop_map(Ts),
            ],
        )
    }

    fn limits() -> impl Strategy<Value = RiskLimits> {
        (
            (
                prop::bool::weighted(0.95),
                frac_dec(),
                0u32..30,
                pos_dec(),
                pos_dec(),
            ),
            (frac_dec(), frac_dec(), frac_dec(), any::<bool>()),
            (-10i64..1_000, 0u32..5, frac_dec()),
        )
            .prop_map(
                |((en, mpp, mop, mon, mdn), (dlp, mdd, lev, short), (cd, age, mpm))| RiskLimits {
                    enabled: en,
                    max_position_pct: mpp,
                    max_open_positions: mop,
                    max_order_notional: mon,
                    max_daily_notional: mdn,
                    daily_loss_pct: dlp,
                    max_drawdown_pct: mdd,
                    max_leverage: lev,
                    allow_short: short,
                    reentry_cooldown_secs: cd,
                    max_price_age_bars: age,
                    max_price_move_pct: mpm,
                },
            )
    }

    fn order() -> impl Strategy<Value = OrderCheck> {
        let purpose = prop_oneof![
            6 => Just(OrderPurpose::Entry),
            1 => Just(OrderPurpose::SignalExit),
            1 => Just(OrderPurpose::StopLoss),
            1 => Just(OrderPurpose::Flatten),
        ];
        (any::<bool>(), qty(), pos_dec(), purpose).prop_map(|(buy, qty, price, purpose)| {
            OrderCheck {
                symbol: SymbolId(0),
                side: if buy { Side::Buy } else { Side::Sell },
                qty,
                price,
                purpose,
                now: Ts(1_700_000_000 * Ts::NANOS_PER_SEC),
            }
        })
    }

    fn context() -> impl Strategy<Value = RiskContext> {
        let state = prop_oneof![
            8 => Just(TradingState::Active),
            1 => Just(TradingState::ReduceOnly),
            1 => Just(TradingState::Halted),
        ];
        (
            (state, pos_dec(), pos_dec(), pos_dec(), pos_dec()),
            (
                qty(),
                0u32..30,
                pos_dec(),
                pos_dec(),
                prop::bool::weighted(0.2),
            ),
            (
                ts(),
                ts(),
                -1i64..120,
                prop::option::weighted(0.9, pos_dec()),
            ),
        )
            .prop_map(
                |(
                    (state, eq, cash, sod, peak),
                    (pos, open, gross, daily, pending),
                    (exit, last, bar, prev),
                )| {
                    RiskContext {
                        state,
                        equity: eq,
                        cash,
                        start_of_day_equity: sod,
                        peak_equity: peak,
                        position_qty: pos,
                        open_positions: open,
                        gross_exposure: gross,
                        daily_notional: daily,
                        pending_order: pending,
                        last_exit: exit,
                        last_price_ts: last,
                        bar_interval_secs: bar,
                        prev_close: prev,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// The fixed-point path gives the `Decimal` path's verdict and records, down to the
        /// scale of every number in a reason.
        #[test]
        fn fast_check_equals_exact(l in limits(), o in order(), c in context()) {
            let fast = RiskGate::new(l.clone());
            let exact = RiskGate { limits: l, fixed: None };
            let v = fast.check(&o, &c, None);
            prop_assert_eq!(format!("{v:?}"), format!("{:?}", exact.check(&o, &c, None)));
            if let Some(x) = FixedContext::of(&o, &c) {
                // Clearing is never wrong; it may only decline an order `check` approves.
                if fast.clears(&o, &c.plain(), &x) {
                    prop_assert_eq!(v, Verdict::Approved);
                }
                let mut a = Checks::default();
                prop_assert_eq!(fast.check_fixed(&o, &c, &x, None), v);
                let va = fast.check_fixed(&o, &c, &x, Some(&mut a));
                let mut b = Checks::default();
                let vb = exact.check(&o, &c, Some(&mut b));
                prop_assert_eq!(format!("{va:?} {a:?}"), format!("{vb:?} {b:?}"));
            }
            let (mut a, mut b) = (Checks::default(), Checks::default());
            let va = fast.check(&o, &c, Some(&mut a));
            let vb = exact.check(&o, &c, Some(&mut b));
            prop_assert_eq!(va, v);
            prop_assert_eq!(format!("{va:?} {a:?}"), format!("{vb:?} {b:?}"));
        }

        /// Realistic accounts and orders near every limit: the fast path must decide them
        /// (not fall back) and agree at the boundaries.
        #[test]
        fn fast_check_equals_exact_near_limits(
            qty in 1i64..60,
            cents in 9_000i64..11_000,
            eq_cents in 9_000_000i64..10_100_000,
            gross in 0i64..10_000_000,
            daily in 0i64..10_000_000,
            pos in -30i64..30,
            prev in 9_000i64..11_000,
        ) {
            let d = |c: i64| Decimal::new(c, 2);
            let o = OrderCheck {
                symbol: SymbolId(0),
                side: if pos < 0 { Side::Sell } else { Side::Buy },
                qty,
                price: d(cents),
                purpose: OrderPurpose::Entry,
                now: Ts(0),
            };
            let c = RiskContext {
                state: TradingState::Active,
                equity: d(eq_cents),
                cash: d(eq_cents - gross),
                start_of_day_equity: d(10_000_000),
                peak_equity: d(10_050_000),
                position_qty: pos,
                open_positions: 1,
                gross_exposure: d(gross),
                daily_notional: d(daily),
                pending_order: false,
                last_exit: None,
                last_price_ts: Some(Ts(0)),
                bar_interval_secs: 60,
                prev_close: Some(d(prev)),
            };
            let l = RiskLimits { allow_short: true, ..RiskLimits::default() };
            let fast = RiskGate::new(l.clone());
            let x = FixedContext::of(&o, &c).unwrap();
            prop_assert!(fast.fixed.unwrap().breaches(&o, &c.plain(), &x, pos + qty).is_some());
            let exact = RiskGate { limits: l, fixed: None };
            // Near every limit the fast path clears exactly the orders `check` approves.
            prop_assert_eq!(
                fast.clears(&o, &c.plain(), &x),
                exact.check(&o, &c, None) == Verdict::Approved
            );
            prop_assert_eq!(fast.check(&o, &c, None), exact.check(&o, &c, None));
            prop_assert_eq!(fast.check_fixed(&o, &c, &x, None), exact.check(&o, &c, None));
        }
    }

    proptest! {
        /// A limit in lowest terms compares as the limit itself, at scale 16 in `i128`.
        #[test]
        fn ratio_compares_as_the_fraction(
            v in prop_oneof![-1_000i64..200_000_000, any::<i64>()],
            a in prop_oneof![-1_000_000i64..1_000_000, any::<i64>()],
            b in prop_oneof![-1_000_000_000_000i64..1_000_000_000_000, any::<i64>()],
        ) {
            let r = Ratio::new(v);
            prop_assert_eq!(i128::from(r.num) * E8, i128::from(v) * i128::from(r.den));
            if let Some(ord) = r.cmp(a, b) {
                let want = (i128::from(a) * E8).cmp(&(i128::from(v) * i128::from(b)));
                prop_assert_eq!(ord, want);
                prop_assert!(exact(i128::from(v) * i128::from(b)).is_some());
            }
        }
    }

    #[test]
    fn mask_bits_follow_entry_order() {
        for (i, c) in RiskGate::ENTRY_ORDER.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
