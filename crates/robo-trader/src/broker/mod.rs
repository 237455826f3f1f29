//! Broker adapters behind one trait. (The IB Gateway session is being built.)
