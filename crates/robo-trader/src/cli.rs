//! The command line: `robo-trader [--config PATH] <command>`, defined with clap's derive API.
//!
//! Precedence is CLI > env > file > defaults. Every override below is an `Option` with no clap
//! default, so [`crate::config::load`] can tell "not given" from "given": the file overlays the
//! built-in defaults, then every `Some(..)` here overlays the file. clap merges each env var
//! into its flag (`env = ".."`) and prefers the flag when both are set, which gives CLI > env
//! without the config layer having to know where a value came from. The defaults shown in the
//! help text live in [`crate::config::Config::default`], not in clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rust_decimal::Decimal;

use crate::config::{BrokerKind, ClockKind, IbOrders, MarketDataFallback, SimSpeed};

/// robo-trader: an automated trading system for Interactive Brokers.
#[derive(Debug, Clone, Parser)]
#[command(name = "robo-trader", version, about, propagate_version = true)]
pub struct Cli {
    /// The TOML config file [default: ./robo-trader.toml if it exists].
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Trade the watchlist: engine, broker session, dashboard and WebSocket, supervised.
    Run(RunArgs),
    /// Show the trading state, positions and P&L from the database.
    Status(StatusArgs),
    /// Set the trading state: `on` halts everything new, `reduce-only` allows exits only,
    /// `off` resumes trading.
    KillSwitch(KillSwitchArgs),
    /// Is the US equity market open (holidays and early closes included)?
    MarketHours(MarketHoursArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the live engine over historical bars and report honest metrics.
    Backtest(crate::backtest::BacktestArgs),
    /// Grid search and walk-forward analysis over strategy parameters.
    Optimize(crate::backtest::OptimizeArgs),
    /// Market data files: convert CSV to the binary cache.
    #[command(subcommand)]
    Data(crate::backtest::DataCommand),
    /// Read-only diagnosis of the IB Gateway connection, account and permissions.
    Doctor(crate::doctor::DoctorArgs),
}

#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective config as TOML (secrets redacted). Takes the same overrides as `run`,
    /// so it shows exactly what `run` would use.
    Show(RunArgs),
}

/// The overrides `run` (and `config show`) accept. All optional; see the module docs for the
/// precedence.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct RunArgs {
    /// SQLite database [default: ./robo-trader.db].
    #[arg(long, env = "ROBO_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Comma-separated watchlist, e.g. AAPL,MSFT,SPY [default: the 22 built-in symbols].
    #[arg(long, env = "ROBO_SYMBOLS", value_name = "A,B,C")]
    pub symbols: Option<String>,

    /// Where market data and orders go [default: sim].
    #[arg(long, env = "ROBO_BROKER", value_enum)]
    pub broker: Option<BrokerKind>,

    /// Strategy by name: sma_crossover, momentum, mean_reversion, breakout, combined
    /// [default: sma_crossover].
    #[arg(long, env = "ROBO_STRATEGY", value_name = "NAME")]
    pub strategy: Option<String>,

    /// Starting cash for the paper account [default: 100000].
    #[arg(long, env = "ROBO_CASH", value_name = "DECIMAL")]
    pub cash: Option<Decimal>,

    /// Simulated-clock speed: a factor >= 1 or `max` [default: 60].
    #[arg(long, env = "ROBO_SIM_SPEED", value_name = "N|max")]
    pub sim_speed: Option<SimSpeed>,

    /// Simulated start time, RFC 3339 (e.g. 2025-03-03T14:30:00Z) [default: the next session].
    #[arg(long, env = "ROBO_SIM_START", value_name = "RFC3339")]
    pub sim_start: Option<String>,

    /// Stop the synthetic market when its clock reaches this instant, RFC 3339 (e.g. the
    /// session close, 2025-03-03T21:00:00Z, for one sim day) [default: run until stopped].
    #[arg(long, value_name = "RFC3339")]
    pub sim_until: Option<String>,

    /// Record every bar fed to the engine (warm-up history included) as SYMBOL.csv files in
    /// DIR, in the format `backtest --data` reads.
    #[arg(long, value_name = "DIR")]
    pub record_bars: Option<PathBuf>,

    /// Seed of the synthetic market [default: 42].
    #[arg(long, env = "ROBO_SIM_SEED", value_name = "N")]
    pub sim_seed: Option<u64>,

    /// Replay the CSV bars in this directory instead of the synthetic market.
    #[arg(long, env = "ROBO_SIM_DATA", value_name = "DIR")]
    pub sim_data: Option<PathBuf>,

    /// Which clock drives the run [default: sim for --broker sim, real for ibkr].
    #[arg(long, env = "ROBO_CLOCK", value_enum)]
    pub clock: Option<ClockKind>,

    /// Dashboard listen address [default: 127.0.0.1].
    #[arg(long, env = "DASH_HOST", value_name = "HOST")]
    pub dash_host: Option<String>,

    /// Dashboard port, 0 picks a free one [default: 5555].
    #[arg(
        long,
        env = "DASH_PORT",
        value_name = "PORT",
        allow_negative_numbers = true
    )]
    pub dash_port: Option<i64>,

    /// WebSocket port, 0 picks a free one [default: 8765].
    #[arg(
        long,
        env = "WS_PORT",
        value_name = "PORT",
        allow_negative_numbers = true
    )]
    pub ws_port: Option<i64>,

    /// Also log to this file, size-rotated [default: stderr only].
    #[arg(long, env = "LOG_FILE", value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Log level or filter directive, e.g. `debug` or `robo_trader=debug,info` [default: info].
    #[arg(long, env = "ROBO_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// IB Gateway host [default: 127.0.0.1].
    #[arg(long, env = "IB_HOST", value_name = "HOST")]
    pub ib_host: Option<String>,

    /// IB Gateway API port [default: 4002, the paper gateway].
    #[arg(
        long,
        env = "IB_PORT",
        value_name = "PORT",
        allow_negative_numbers = true
    )]
    pub ib_port: Option<i64>,

    /// IB API client id, fixed for the whole session [default: 10].
    #[arg(
        long,
        env = "IB_CLIENT_ID",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub client_id: Option<i64>,

    /// With --broker ibkr: `local` fills orders in-process on IB's market data, `paper` sends
    /// them to the gateway's account [default: local].
    #[arg(long, env = "IB_ORDERS", value_enum)]
    pub ib_orders: Option<IbOrders>,

    /// With --broker ibkr: what a symbol without a real-time data permission (354/10089/10167)
    /// gets: `delayed` data (flagged on the status) or `untradeable` [default: delayed].
    #[arg(long, env = "IB_MARKET_DATA_FALLBACK", value_enum)]
    pub market_data_fallback: Option<MarketDataFallback>,

    /// With --broker ibkr --ib-orders paper: keep a GTC protective stop at IB for every
    /// position, placed after each entry fill and reconciled on every reconnect [default: false].
    #[arg(long, env = "IB_BROKER_STOPS", value_name = "BOOL", num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    pub broker_stops: Option<bool>,

    /// Allow a live-money gateway port (4001, 7496); `run` then asks for a typed confirmation.
    #[arg(long)]
    pub live: bool,

    /// Do not record a decision row per bar and symbol.
    #[arg(long)]
    pub no_decisions: bool,
}

impl RunArgs {
    /// Only a database override: what `status` and `kill-switch` pass to
    /// [`crate::config::load`] so they find the same database `run` uses.
    pub fn with_db(db: Option<PathBuf>) -> Self {
        RunArgs {
            db,
            ..RunArgs::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// SQLite database [default: from config, else ./robo-trader.db].
    #[arg(long, env = "ROBO_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
}

/// The kill switch's positions, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KillSwitchSetting {
    /// Halt: nothing new, open entry orders cancelled.
    On,
    /// Exits only.
    ReduceOnly,
    /// Resume normal trading.
    Off,
}

impl KillSwitchSetting {
    /// The trading state this setting puts the system in.
    pub const fn trading_state(self) -> robo_core::types::TradingState {
        use robo_core::types::TradingState;
        match self {
            KillSwitchSetting::On => TradingState::Halted,
            KillSwitchSetting::ReduceOnly => TradingState::ReduceOnly,
            KillSwitchSetting::Off => TradingState::Active,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct KillSwitchArgs {
    #[arg(value_enum)]
    pub setting: KillSwitchSetting,
    /// SQLite database [default: from config, else ./robo-trader.db].
    #[arg(long, env = "ROBO_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct MarketHoursArgs {
    /// The instant to ask about, RFC 3339 [default: now].
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Parses an RFC 3339 instant (any offset) into UTC.
pub fn parse_rfc3339(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("expected an RFC 3339 time like 2025-03-03T14:30:00Z ({e})"))
}
