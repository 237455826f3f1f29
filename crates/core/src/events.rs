//! What goes into the engine ([`Event`]) and what comes out of it ([`Command`]).
//!
//! The shell turns sockets, timers and the database into events, feeds them to
//! `Engine::handle`, and carries out the commands. Nothing here does I/O.

use serde::{Deserialize, Serialize};

use crate::decision::Decision;
use crate::risk::{RefuseReason, RiskCheck};
use crate::types::{
    Bar, ClientOrderId, ConnectionState, Fill, Money, OrderRequest, Quote, SymbolId, TradingState,
    Ts,
};

/// A broker's word on an order's status (fills come separately, as [`Fill`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderUpdate {
    pub order_id: ClientOrderId,
    pub status: BrokerStatus,
    pub ts: Ts,
}

/// Order statuses a broker reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BrokerStatus {
    /// Accepted by the broker, working.
    Submitted {
        broker_id: Option<compact_str::CompactString>,
    },
    Cancelled {
        reason: String,
    },
    Rejected {
        reason: String,
    },
    /// A DAY order that reached the close.
    Expired,
}

/// Operator commands: the kill switch and the control buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum OperatorCommand {
    SetTradingState {
        state: TradingState,
    },
    /// Cancel every open order.
    CancelAll,
    /// Close every position at market (exits are allowed in any state).
    Flatten,
}

/// Everything the engine reacts to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Bar(Bar),
    Quote(Quote),
    /// Time passed with no market event (session boundaries, cooldowns, expiries).
    Clock(Ts),
    OrderUpdate(OrderUpdate),
    Fill(Fill),
    Connection {
        state: ConnectionState,
        ts: Ts,
    },
    Operator {
        command: OperatorCommand,
        ts: Ts,
    },
}

/// A change the engine made to its own trading state, and why.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    pub from: TradingState,
    pub to: TradingState,
    pub cause: StateCause,
    pub ts: Ts,
}

/// Why the trading state changed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum StateCause {
    Operator,
    DailyLoss {
        loss: Money,
        limit: Money,
    },
    Drawdown {
        drawdown_pct: f64,
        limit_pct: f64,
    },
    /// Reconciliation found something it could not explain.
    Reconciliation,
}

/// A risk refusal, recorded with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RiskEvent {
    pub symbol: SymbolId,
    pub ts: Ts,
    pub check: RiskCheck,
    pub reason: RefuseReason,
}

/// Things the shell writes down. Batched by the store.
///
/// The engine never emits `Decision` through a [`Command`]: decision records go to the
/// engine's own reusable buffer (see `Engine::drain_decisions`), so the hot path neither
/// allocates nor moves a kilobyte per command. The shell boxes them here when it persists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Record {
    Decision(Box<Decision>),
    Risk(RiskEvent),
    State(StateChange),
    /// An order status change (the intent itself is written by the shell before `Place`).
    OrderStatus {
        order_id: ClientOrderId,
        state: crate::orders::OrderState,
        filled_qty: i64,
        reason: Option<String>,
        ts: Ts,
    },
    /// A fill the engine accepted (first time seen).
    Fill(Fill),
    Equity {
        ts: Ts,
        cash: Money,
        equity: Money,
        realized: Money,
        unrealized: Money,
    },
}

/// Live updates for dashboards and streams that are not records (the shell also publishes
/// every record).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Update {
    /// A position after a fill changed it (quantity 0 = closed).
    Position(crate::types::Position),
    /// A non-hold signal.
    Signal {
        symbol: SymbolId,
        ts: Ts,
        signal: crate::strategy::Signal,
    },
}

/// What the engine asks the shell to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Command {
    /// Commit the intent durably, then hand the order to the broker.
    Place(OrderRequest),
    Cancel(ClientOrderId),
    Persist(Record),
    Publish(Update),
}
