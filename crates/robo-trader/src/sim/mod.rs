//! The simulated market.
pub mod market;
