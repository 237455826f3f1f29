//! A fake IB Gateway: the server side of the TWS API at server version 213+ (protobuf framing),
//! with a small simulated market and scriptable connection faults, for tests and for running
//! robo-trader without a real gateway.

pub mod clock;
pub mod codec;
pub mod faults;
pub mod messages;
pub mod proto;
pub mod server;
pub mod world;

pub use faults::{ConnBehavior, PacingViolation};
pub use messages::{Request, RequestKind, ServerMsg, ServerMsgKind};
pub use server::{FakeGateway, GatewayConfig, Handle, RecordedRequest};
pub use world::{SymbolSpec, WorldConfig};
