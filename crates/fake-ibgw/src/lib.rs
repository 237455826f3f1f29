//! The fake IB Gateway (being built).
