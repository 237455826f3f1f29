//! robo-core: the deterministic trading core.
//!
//! No I/O, no clock, no threads: [`engine::Engine::handle`] takes an [`events::Event`] and
//! returns [`events::Command`]s. Live trading, the simulated market and backtests all run this
//! same code, so a backtest is the live engine over history.

pub mod account;
mod amount;
pub mod calendar;
pub mod commission;
pub mod decision;
pub mod engine;
pub mod events;
pub(crate) mod exact;
pub mod indicators;
pub mod ledger;
pub mod orders;
pub mod paper;
pub mod risk;
pub mod session;
pub mod sizing;
pub mod stops;
pub mod strategy;
pub mod types;

pub use rust_decimal::Decimal;
