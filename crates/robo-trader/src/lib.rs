//! robo-trader: the I/O shell around `robo-core`. Config, CLI, the supervised runner, the
//! simulated market, the SQLite store, logging and the process lock.

pub mod backtest;
pub mod broker;
pub mod broker_stops;
pub mod cli;
pub mod config;
pub mod data;
pub mod doctor;
pub mod lock;
pub mod logging;
pub mod runner;
pub mod runner_ibkr;
pub mod sim;
pub mod store;
pub mod web;
