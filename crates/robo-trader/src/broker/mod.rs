//! Broker adapters. `session` supervises the one IB Gateway connection (timeouts, heartbeat,
//! backoff, client-id rotation, notices → states); `ibkr` is the adapter over `ibapi` (the only
//! module that names ibapi types); `pacing` and `backoff` are the pure rule books they use.

pub mod backoff;
pub mod ibkr;
pub mod pacing;
pub mod session;

pub use ibkr::{
    AccountSummary, BrokerEvent, BrokerPosition, FeedEvent, HistQuery, IbkrBroker, OpenOrder,
    Reconciliation, ResolvedContract, NO_REALTIME_CODES,
};
pub use session::{
    DegradedCause, FatalReason, Heartbeat, RestartWindow, Session, SessionConfig, SessionState,
    Transition,
};

/// The server versions ibapi 5.5 speaks (it offers `v213..226` in the handshake).
pub const OUR_MIN_SERVER_VERSION: i32 = 213;
pub const OUR_MAX_SERVER_VERSION: i32 = 226;

/// Why one connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("nothing is listening on {addr} ({detail})")]
    Refused { addr: String, detail: String },
    #[error("no handshake from {addr} within {secs} s (accepted TCP but never answered, or never sent nextValidId/managedAccounts)")]
    Timeout { addr: String, secs: u64 },
    #[error("the gateway at {addr} closed the connection during the handshake ({detail})")]
    Closed { addr: String, detail: String },
    #[error("server version {theirs} is not supported: this build speaks {OUR_MIN_SERVER_VERSION}..{OUR_MAX_SERVER_VERSION}; upgrade IB Gateway (10.4x or later)")]
    ServerVersion { theirs: i32 },
    #[error("client id {client_id} is already in use (error 326)")]
    ClientIdInUse { client_id: i32 },
    #[error("connect failed: {0}")]
    Other(String),
}

/// Why a request to the broker failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    #[error("not connected to the gateway (session is {0})")]
    NotConnected(String),
    #[error("{what} got no answer within {secs} s (cancelled)")]
    Timeout { what: String, secs: u64 },
    #[error("the connection dropped during {0}")]
    ConnectionLost(String),
    #[error("unknown contract {symbol}: {detail}")]
    UnknownContract { symbol: String, detail: String },
    #[error("ambiguous contract {symbol}: {count} matches ({detail})")]
    AmbiguousContract {
        symbol: String,
        count: usize,
        detail: String,
    },
    #[error("symbol id {0} is not in the universe")]
    UnknownSymbol(u16),
    #[error("gateway error {code}: {message}")]
    Gateway { code: i32, message: String },
    #[error("bad value from the gateway in {field}: {value}")]
    BadValue { field: &'static str, value: String },
    #[error("{0}")]
    Other(String),
}

/// Why an order was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderRefusal {
    #[error("session not ready ({0})")]
    NotReady(String),
    #[error("inside the gateway's daily restart window")]
    RestartWindow,
    #[error("the gateway is in Read-Only API mode (error 321); untick 'Read-Only API' in the gateway's API settings")]
    ReadOnly,
    #[error("order {0} was already sent")]
    Duplicate(String),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}
