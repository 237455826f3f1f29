//! `robo-trader backtest`, `optimize` and `data import`: the live engine over history.
//! (Being built; the argument types below are the CLI contract.)

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// `robo-trader backtest --data PATH ...`
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct BacktestArgs {
    /// A CSV file or a directory of `SYMBOL.csv` files (or a binary cache from `data import`).
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
}

/// `robo-trader optimize --data PATH ...`
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct OptimizeArgs {
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
}

/// `robo-trader data ...`
#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum DataCommand {
    /// Convert CSV bars to the compact binary cache.
    Import {
        /// CSV file or directory.
        input: PathBuf,
        /// Output cache file.
        #[arg(long, short)]
        output: PathBuf,
    },
}

pub fn cmd_backtest(_config: Option<&Path>, _args: &BacktestArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("backtest is not built yet")
}

pub fn cmd_optimize(_config: Option<&Path>, _args: &OptimizeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("optimize is not built yet")
}

pub fn cmd_data(_cmd: &DataCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("data import is not built yet")
}
