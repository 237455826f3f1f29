//! The typed configuration: built-in defaults, overlaid by a TOML file, overlaid by CLI flags and
//! environment variables, then validated as a whole.
//!
//! Precedence is CLI > env > file > defaults. The file is `--config PATH`, else
//! `./robo-trader.toml` when it exists. The CLI side ([`RunArgs`]) holds only `Option`s; clap
//! folds each env var into its flag and prefers the flag, so overlaying every `Some(..)` onto
//! the file gives the whole order (see [`crate::cli`]).
//!
//! The core's own settings ([`RiskLimits`], [`SizingConfig`], [`StopConfig`], [`PaperConfig`],
//! [`StrategyConfig`]) are embedded as they are, so a key the core does not know is refused
//! here, by name, before anything runs. Every error names the key (or the flag and its env var)
//! and the form it expects; nothing here panics on any input.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::ValueEnum;
use robo_core::paper::PaperConfig;
use robo_core::risk::RiskLimits;
use robo_core::sizing::SizingConfig;
use robo_core::stops::StopConfig;
use robo_core::strategy::StrategyConfig;
use robo_core::types::Universe;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub use crate::cli::RunArgs;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "robo-trader.toml";

/// The watchlist the old system traded (handoff 2025-09-18).
pub const DEFAULT_SYMBOLS: [&str; 22] = [
    "AAPL", "NVDA", "TSLA", "IXHL", "NUAI", "BZAI", "ELTP", "OPEN", "CEG", "VRT", "PLTR", "UPST",
    "TEM", "HTFL", "SDGR", "APLD", "SOFI", "CORZ", "WULF", "QQQ", "SPY", "MSFT",
];

/// What `redacted_toml` prints instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Where market data and orders go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BrokerKind {
    /// The built-in synthetic (or replayed) market with the in-process paper broker.
    #[default]
    Sim,
    /// IB Gateway / TWS.
    Ibkr,
}

/// Which clock drives a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ClockKind {
    /// Simulated time, accelerated by `sim.speed`.
    Sim,
    /// The wall clock.
    Real,
}

impl ClockKind {
    /// A gateway runs in real time; the simulated market defaults to its own clock.
    pub const fn default_for(broker: BrokerKind) -> Self {
        match broker {
            BrokerKind::Sim => ClockKind::Sim,
            BrokerKind::Ibkr => ClockKind::Real,
        }
    }
}

/// How fast simulated time runs: a factor of real time, or as fast as the machine allows.
/// Written `speed = 60` or `speed = "max"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SimSpeed {
    Factor(f64),
    Max,
}

impl Default for SimSpeed {
    fn default() -> Self {
        SimSpeed::Factor(60.0)
    }
}

impl SimSpeed {
    /// `Some(problem)` unless this is `max` or a finite factor of at least 1.
    fn problem(self) -> Option<String> {
        match self {
            SimSpeed::Max => None,
            SimSpeed::Factor(f) if f.is_finite() && f >= 1.0 => None,
            SimSpeed::Factor(f) => Some(format!(
                "expected a speed factor >= 1 (like 60) or \"max\", got {f}"
            )),
        }
    }
}

impl fmt::Display for SimSpeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimSpeed::Factor(x) => write!(f, "{x}"),
            SimSpeed::Max => f.write_str("max"),
        }
    }
}

impl FromStr for SimSpeed {
    type Err = String;
    /// Parses `max` or a number; the range is checked by validation, which names the key.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("max") {
            return Ok(SimSpeed::Max);
        }
        match t.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(SimSpeed::Factor(f)),
            _ => Err(format!(
                "expected a speed factor >= 1 (like 60) or \"max\", got {s:?}"
            )),
        }
    }
}

impl Serialize for SimSpeed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SimSpeed::Factor(f) => s.serialize_f64(*f),
            SimSpeed::Max => s.serialize_str("max"),
        }
    }
}

impl<'de> Deserialize<'de> for SimSpeed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SimSpeed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a speed factor >= 1 (like 60) or \"max\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SimSpeed, E> {
                Ok(SimSpeed::Factor(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SimSpeed, E> {
                Ok(SimSpeed::Factor(v as f64))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<SimSpeed, E> {
                Ok(SimSpeed::Factor(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SimSpeed, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `[sim]`: the simulated market and its clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    pub speed: SimSpeed,
    /// Simulated start, RFC 3339; `None` starts at the next session.
    pub start: Option<String>,
    /// Seed of the synthetic market, so a run can be repeated exactly.
    pub seed: u64,
    /// Replay the CSV bars in this directory instead of synthesizing.
    pub data: Option<PathBuf>,
    /// Sessions of history generated before the start, to warm up the strategies.
    pub history_sessions: u32,
    /// `None` follows the broker ([`ClockKind::default_for`]); [`load`] always fills it in.
    pub clock: Option<ClockKind>,
    /// Stop the synthetic market once its clock reaches this instant (RFC 3339); `None` runs
    /// until told to stop.
    pub until: Option<String>,
    /// Write every bar fed to the engine (warm-up history included) as `SYMBOL.csv` files in
    /// this directory, in the format `backtest --data` reads, prices exact.
    pub record_bars: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            speed: SimSpeed::default(),
            start: None,
            seed: 42,
            data: None,
            history_sessions: 2,
            clock: None,
            until: None,
            record_bars: None,
        }
    }
}

/// `[web]`: the dashboard and the WebSocket feed. Port 0 picks a free port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub dash_host: String,
    pub dash_port: u16,
    pub ws_port: u16,
    /// The token that state-changing requests must carry. Secret: redacted by
    /// [`redacted_toml`]. `None` lets the shell make one per run and print it once to the
    /// terminal (never to the log file).
    pub api_token: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            dash_host: "127.0.0.1".into(),
            dash_port: 5555,
            ws_port: 8765,
            api_token: None,
        }
    }
}

/// `[log]`: stderr always; a size-rotated file when `file` is set. At most
/// `(max_files + 1) × max_file_mb` MB on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub file: Option<PathBuf>,
    /// A level (`info`) or an `EnvFilter` directive (`robo_trader=debug,info`).
    pub level: String,
    pub max_file_mb: u32,
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            file: None,
            level: "info".into(),
            max_file_mb: 10,
            max_files: 5,
        }
    }
}

/// `[ib]`: the IB Gateway session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IbConfig {
    pub host: String,
    /// 4002 is the paper gateway (4001 live, 7497/7496 TWS).
    pub port: u16,
    /// One fixed client id for the whole session.
    pub client_id: i32,
    /// Ids to rotate through on error 326 (client id in use), after `client_id`.
    pub client_ids: Vec<i32>,
    /// The account to trade. Secret-ish: redacted by [`redacted_toml`].
    pub account: Option<String>,
    /// Where `--broker ibkr` sends orders: filled in-process on IB's market data, or to the
    /// gateway's account.
    pub orders: IbOrders,
    /// Refuse orders (and expect drops) inside IB Gateway's nightly restart window,
    /// 23:45–01:45 New York. Off only for gateways that do not restart (the fake one).
    pub restart_window: bool,
    /// What a symbol without a real-time data permission (errors 354, 10089, 10167) gets:
    /// delayed data (flagged `delayed` on the status), or no trading at all.
    pub market_data_fallback: MarketDataFallback,
    /// The stale-feed detector: this many bar intervals without a bar means one resubscribe,
    /// and as many again means untradeable. 0 turns the detector off.
    pub stale_feed_intervals: u32,
    /// One bar interval on the wall clock, in ms (the live bars are minute bars).
    pub stale_feed_interval_ms: u64,
    /// Count only inside NYSE regular hours (wall clock); false counts at all hours.
    pub stale_feed_regular_hours_only: bool,
    /// `--ib-orders paper`: IB's net liquidation value drives sizing and the start-of-day
    /// equity while it is within this fraction of the ledger's equity; beyond it the
    /// difference is logged and shown on the status, and the ledger's figures are used.
    pub account_tolerance_pct: Decimal,
    /// `--ib-orders paper`: after each entry fill a GTC protective stop is placed at IB at the
    /// engine's stop level, and reconciled after every (re)connect, so a crash or a drop never
    /// leaves a position unprotected.
    pub broker_stops: bool,
    /// Set only by `--live`: a live-money port (4001, 7496) is refused without it. Never read
    /// from a file, so no config can enable real money by itself.
    #[serde(skip)]
    pub live: bool,
}

/// Where `--broker ibkr` sends orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IbOrders {
    /// IB market data; orders filled by the in-process paper broker (nothing reaches IB).
    #[default]
    Local,
    /// Orders go to the gateway's account (use the paper gateway, port 4002).
    Paper,
}

/// What a symbol without a real-time market data permission falls back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MarketDataFallback {
    /// reqMarketDataType 3 and resubscribe; the symbol trades on delayed data, flagged.
    #[default]
    Delayed,
    /// No fallback: the symbol is untradeable (bars that still come are shown, no entries).
    Untradeable,
}

/// Ports where IB Gateway (4001) and TWS (7496) trade real money.
pub const LIVE_PORTS: [u16; 2] = [4001, 7496];

impl Default for IbConfig {
    fn default() -> Self {
        IbConfig {
            host: "127.0.0.1".into(),
            port: 4002,
            client_id: 10,
            client_ids: Vec::new(),
            account: None,
            orders: IbOrders::Local,
            restart_window: true,
            market_data_fallback: MarketDataFallback::Delayed,
            stale_feed_intervals: 2,
            stale_feed_interval_ms: 60_000,
            stale_feed_regular_hours_only: true,
            account_tolerance_pct: Decimal::new(5, 3),
            broker_stops: false,
            live: false,
        }
    }
}

/// Everything `run` needs to know. See the module docs for where values come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub symbols: Vec<String>,
    pub db: PathBuf,
    pub broker: BrokerKind,
    pub starting_cash: Decimal,
    pub bar_seconds: u32,
    /// Record a decision row (inputs, signal, every risk check) per bar and symbol.
    pub decisions: bool,
    #[serde(deserialize_with = "de_strategy")]
    pub strategy: StrategyConfig,
    pub risk: RiskLimits,
    #[serde(deserialize_with = "de_sizing")]
    pub sizing: SizingConfig,
    pub stops: StopConfig,
    #[serde(deserialize_with = "de_paper")]
    pub paper: PaperConfig,
    pub sim: SimConfig,
    pub web: WebConfig,
    pub log: LogConfig,
    pub ib: IbConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            symbols: DEFAULT_SYMBOLS.iter().map(|s| s.to_string()).collect(),
            db: PathBuf::from("./robo-trader.db"),
            broker: BrokerKind::Sim,
            starting_cash: Decimal::from(100_000),
            bar_seconds: 60,
            decisions: true,
            strategy: StrategyConfig::default(),
            risk: RiskLimits::default(),
            sizing: SizingConfig::default(),
            stops: StopConfig::default(),
            paper: PaperConfig::default(),
            sim: SimConfig::default(),
            web: WebConfig::default(),
            log: LogConfig::default(),
            ib: IbConfig::default(),
        }
    }
}

impl Config {
    /// The watchlist as the core's [`Universe`].
    pub fn universe(&self) -> Result<Universe, ConfigError> {
        Universe::new(&self.symbols).map_err(|e| ConfigError::invalid("symbols", e.to_string()))
    }

    /// The clock this run uses: `sim.clock`, else the broker's default.
    pub fn clock(&self) -> ClockKind {
        self.sim
            .clock
            .unwrap_or(ClockKind::default_for(self.broker))
    }

    /// `run` creates the database but not its directory: a missing one is a bad `--db`,
    /// refused before the lock file or the log is touched.
    pub fn check_db_dir(&self) -> Result<(), ConfigError> {
        match self.db.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(ConfigError::invalid(
                "db (--db/ROBO_DB)",
                format!(
                    "the directory {} does not exist (robo-trader creates the database, not its directory)",
                    dir.display()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Checks every value, naming the first bad key. [`load`] calls it after layering.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.universe()?;
        if self.bar_seconds == 0 || self.bar_seconds > 86_400 {
            return Err(ConfigError::invalid(
                "bar_seconds",
                format!("expected 1 to 86400 seconds, got {}", self.bar_seconds),
            ));
        }
        check_cash("starting_cash", self.starting_cash)?;
        self.strategy
            .validate()
            .map_err(|e| ConfigError::invalid(format!("strategy.{}", e.param), e.problem))?;
        self.risk
            .validate()
            .map_err(|e| ConfigError::invalid(format!("risk.{}", e.field), e.problem))?;
        self.sizing
            .validate()
            .map_err(|e| ConfigError::invalid(format!("sizing.{}", e.field), e.problem))?;
        self.stops.validate().map_err(|e| {
            ConfigError::invalid(
                format!("stops.{}", e.field),
                format!("must be a fraction in (0, 1), got {}", e.value),
            )
        })?;
        self.validate_paper()?;
        if let Some(p) = self.sim.speed.problem() {
            return Err(ConfigError::invalid("sim.speed", p));
        }
        if let Some(start) = &self.sim.start {
            check_rfc3339("sim.start", start)?;
        }
        if let Some(until) = &self.sim.until {
            check_rfc3339("sim.until", until)?;
        }
        if self.broker == BrokerKind::Ibkr && self.sim.clock == Some(ClockKind::Sim) {
            return Err(ConfigError::invalid(
                "sim.clock",
                "`sim` needs broker = \"sim\" (a gateway runs in real time); use \"real\"",
            ));
        }
        check_host("web.dash_host", &self.web.dash_host)?;
        if self.web.dash_port != 0 && self.web.dash_port == self.web.ws_port {
            return Err(ConfigError::invalid(
                "web.ws_port",
                format!(
                    "{} is also web.dash_port; the two need different ports",
                    self.web.ws_port
                ),
            ));
        }
        check_log_level("log.level", &self.log.level)?;
        if self.log.max_file_mb == 0 || self.log.max_file_mb > 4096 {
            return Err(ConfigError::invalid(
                "log.max_file_mb",
                format!("expected 1 to 4096, got {}", self.log.max_file_mb),
            ));
        }
        if self.log.max_files == 0 || self.log.max_files > 1000 {
            return Err(ConfigError::invalid(
                "log.max_files",
                format!("expected 1 to 1000, got {}", self.log.max_files),
            ));
        }
        check_host("ib.host", &self.ib.host)?;
        if self.ib.port == 0 {
            return Err(ConfigError::invalid("ib.port", "expected 1-65535, got 0"));
        }
        check_client_id("ib.client_id", i64::from(self.ib.client_id))?;
        for (i, id) in self.ib.client_ids.iter().enumerate() {
            check_client_id(&format!("ib.client_ids[{i}]"), i64::from(*id))?;
        }
        if self.ib.stale_feed_interval_ms < 100 || self.ib.stale_feed_interval_ms > 86_400_000 {
            return Err(ConfigError::invalid(
                "ib.stale_feed_interval_ms",
                format!(
                    "expected 100 to 86400000 ms (one bar interval; 60000 for minute bars), got {}",
                    self.ib.stale_feed_interval_ms
                ),
            ));
        }
        if self.ib.account_tolerance_pct < Decimal::ZERO
            || self.ib.account_tolerance_pct > Decimal::ONE
        {
            return Err(ConfigError::invalid(
                "ib.account_tolerance_pct",
                format!(
                    "must be a fraction in [0, 1] like 0.005, got {}",
                    self.ib.account_tolerance_pct
                ),
            ));
        }
        if self.ib.stale_feed_intervals > 1000 {
            return Err(ConfigError::invalid(
                "ib.stale_feed_intervals",
                format!(
                    "expected 0 (off) to 1000 intervals, got {}",
                    self.ib.stale_feed_intervals
                ),
            ));
        }
        if self.broker == BrokerKind::Ibkr && LIVE_PORTS.contains(&self.ib.port) && !self.ib.live {
            return Err(ConfigError::invalid(
                "ib.port",
                format!(
                    "{} is a live-money port (4001 IB Gateway, 7496 TWS); pass --live to trade real \
                     money, or use the paper gateway (4002)",
                    self.ib.port
                ),
            ));
        }
        Ok(())
    }

    fn validate_paper(&self) -> Result<(), ConfigError> {
        use robo_core::commission::CommissionModel;
        let p = &self.paper;
        if p.slippage_bps < Decimal::ZERO {
            return Err(ConfigError::invalid(
                "paper.slippage_bps",
                format!("must be 0 or more, got {}", p.slippage_bps),
            ));
        }
        match p.commission {
            CommissionModel::PerShare { rate } if rate < Decimal::ZERO => {
                return Err(ConfigError::invalid(
                    "paper.commission.rate",
                    format!("must be 0 or more, got {rate}"),
                ));
            }
            CommissionModel::Bps { bps } if bps < Decimal::ZERO => {
                return Err(ConfigError::invalid(
                    "paper.commission.bps",
                    format!("must be 0 or more, got {bps}"),
                ));
            }
            _ => {}
        }
        if let Some(v) = p.max_volume_pct {
            if v <= Decimal::ZERO || v > Decimal::ONE {
                return Err(ConfigError::invalid(
                    "paper.max_volume_pct",
                    format!("must be in (0, 1], got {v}"),
                ));
            }
        }
        Ok(())
    }
}

/// Where an error was found: a file and line, or nowhere in particular (a flag).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(p), Some(l)) => write!(f, " (at {}:{l})", p.display()),
            (Some(p), None) => write!(f, " (in {})", p.display()),
            (None, Some(l)) => write!(f, " (line {l})"),
            (None, None) => Ok(()),
        }
    }
}

/// Why the configuration was refused. Every variant names the key or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config error: cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML; `message` is toml's, with line, column and a snippet.
    #[error("config error: {} is not valid TOML: {message}", file.display())]
    Syntax { file: PathBuf, message: String },
    #[error("config error: unknown key `{key}` (expected one of: {expected}){at}")]
    UnknownKey {
        key: String,
        expected: String,
        at: Location,
    },
    /// `key` is a dotted config key (`risk.max_position_pct`) or a flag and its env var
    /// (`--dash-port/DASH_PORT`).
    #[error("config error: {key}: {problem}{at}")]
    Invalid {
        key: String,
        problem: String,
        at: Location,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
            at: Location::default(),
        }
    }

    /// The key or flag at fault, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }

    /// The process exit code for a configuration error (usage error, like clap's).
    pub fn exit_code(&self) -> i32 {
        2
    }
}

/// Builds the effective config: defaults, overlaid by the file (`cli_config_path`, else
/// `./robo-trader.toml` if it exists), overlaid by every flag or env var that was given, then
/// validated.
pub fn load(cli_config_path: Option<&Path>, args: &RunArgs) -> Result<Config, ConfigError> {
    let path = match cli_config_path {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_FILE);
            default.is_file().then_some(default)
        }
    };
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            load_from_str(&text, Some(&path), args)
        }
        None => finish(Config::default(), args),
    }
}

/// [`load`] with the file's text given directly; `origin` only labels errors.
pub fn load_from_str(
    text: &str,
    origin: Option<&Path>,
    args: &RunArgs,
) -> Result<Config, ConfigError> {
    finish(parse_toml(text, origin)?, args)
}

fn finish(mut cfg: Config, args: &RunArgs) -> Result<Config, ConfigError> {
    apply_overrides(&mut cfg, args)?;
    cfg.validate()?;
    // Store the names the way the universe spells them, and pin the clock, so that what
    // `config show` prints is exactly what runs.
    cfg.symbols = cfg.universe()?.names().to_vec();
    cfg.sim.clock = Some(cfg.clock());
    Ok(cfg)
}

/// Parses a config file's text over the defaults, without validating values. Type errors and
/// unknown keys name the dotted key and, when known, the line.
pub fn parse_toml(text: &str, origin: Option<&Path>) -> Result<Config, ConfigError> {
    let label = origin
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("<config>"));
    let de = toml::de::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
        file: label.clone(),
        message: e.to_string(),
    })?;
    serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
        let mut path = e.path().to_string();
        let inner = e.into_inner();
        let at = Location {
            file: origin.map(Path::to_path_buf),
            line: inner.span().map(|s| line_of(text, s.start)),
        };
        let mut message = inner.message();
        if let Some((sub, rest)) = split_subpath(message) {
            if !sub.is_empty() {
                path = format!("{path}.{sub}");
            }
            message = rest;
        }
        describe(&path, message, at)
    })
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()
        .get(..end)
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
        + 1
}

/// Turns serde's messages into ones that name the key and the expected form.
fn describe(path: &str, message: &str, at: Location) -> ConfigError {
    let path = if path == "." || path == "?" { "" } else { path };
    let join = |field: &str| {
        if path.is_empty() || path == field || path.ends_with(&format!(".{field}")) {
            if path.is_empty() {
                field.to_string()
            } else {
                path.to_string()
            }
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, tail)) = rest.split_once('`') {
            let expected = match tail.split_once("expected ") {
                Some((_, list)) => backticked_list(list),
                None => "(none)".to_string(),
            };
            return ConfigError::UnknownKey {
                key: join(field),
                expected,
                at,
            };
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        return ConfigError::Invalid {
            key: join(field),
            problem: "is required".into(),
            at,
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((got, tail)) = rest.split_once('`') {
            let expected = match tail.split_once("expected ") {
                Some((_, list)) => backticked_list(list),
                None => "(none)".to_string(),
            };
            let key = match tag_key(path) {
                Some(tag) => join(tag),
                None if path.is_empty() => "(top level)".to_string(),
                None => path.to_string(),
            };
            return ConfigError::Invalid {
                key,
                problem: format!("expected one of: {expected}; got {got:?}"),
                at,
            };
        }
    }
    let key = if path.is_empty() {
        "(top level)".to_string()
    } else {
        path.to_string()
    };
    let problem = ["invalid type: ", "invalid value: "]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split_once(", expected "))
        .map(|(got, expected)| type_problem(got, expected))
        .unwrap_or_else(|| message.to_string());
    ConfigError::Invalid { key, problem, at }
}

/// The tag key of the core's internally tagged tables, where an unknown variant is written.
fn tag_key(path: &str) -> Option<&'static str> {
    if path == "strategy" || path.starts_with("strategy.members") {
        Some("name")
    } else if path == "sizing" {
        Some("mode")
    } else if path == "paper.commission" {
        Some("model")
    } else {
        None
    }
}

/// "`a`, `b` or `c`" / "one of `a`, `b`" → "a, b, c".
fn backticked_list(list: &str) -> String {
    let list = list.strip_prefix("one of ").unwrap_or(list);
    list.replace(" or ", ", ").replace('`', "")
}

/// "expected X, got Y" in words a user writes TOML in.
fn type_problem(got: &str, expected: &str) -> String {
    let got_int = got
        .strip_prefix("integer `")
        .and_then(|g| g.strip_suffix('`'))
        .and_then(|g| g.parse::<i128>().ok());
    let int_range = match expected {
        "u8" => Some((0, i128::from(u8::MAX))),
        "u16" => Some((0, i128::from(u16::MAX))),
        "u32" => Some((0, i128::from(u32::MAX))),
        "u64" | "usize" => Some((0, i128::from(u64::MAX))),
        "i32" => Some((i128::from(i32::MIN), i128::from(i32::MAX))),
        "i64" | "isize" => Some((i128::from(i64::MIN), i128::from(i64::MAX))),
        _ => None,
    };
    let range = |lo: i128, hi: i128| {
        if hi == i128::from(u64::MAX) {
            "0 or more".to_string()
        } else if lo < 0 {
            format!("{lo} to {hi}")
        } else {
            format!("{lo}-{hi}")
        }
    };
    if let (Some(n), Some((lo, hi))) = (got_int, int_range) {
        return format!("{n} is out of range ({})", range(lo, hi));
    }
    let expected = if expected.contains("Decimal") {
        "a decimal number like 0.02".to_string()
    } else if let Some((lo, hi)) = int_range {
        format!("a whole number ({})", range(lo, hi))
    } else if expected == "a boolean" {
        "true or false".to_string()
    } else if expected == "f64" || expected == "f32" {
        "a number".to_string()
    } else if expected.starts_with("struct ")
        || expected.contains("tagged enum")
        || expected.starts_with("a map")
    {
        "a table".to_string()
    } else if expected.starts_with("a sequence") {
        "an array".to_string()
    } else {
        expected.to_string()
    };
    let got = unexpected_value(got);
    format!("expected {expected}, got {got}")
}

/// serde's `Unexpected` text ("string \"abc\"", "integer `5`") → the value as TOML writes it.
fn unexpected_value(got: &str) -> String {
    for prefix in ["integer `", "floating point `", "boolean `"] {
        if let Some(v) = got.strip_prefix(prefix).and_then(|v| v.strip_suffix('`')) {
            return v.to_string();
        }
    }
    if let Some(v) = got.strip_prefix("string ") {
        return v.to_string();
    }
    match got {
        "map" => "a table".into(),
        "sequence" => "an array".into(),
        other => other.into(),
    }
}

/// Applies every flag or env var that was given, checking each as it goes so an error names
/// the flag rather than the key it lands in.
pub fn apply_overrides(cfg: &mut Config, a: &RunArgs) -> Result<(), ConfigError> {
    if let Some(db) = &a.db {
        if db.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "--db/ROBO_DB",
                "expected a file path, got \"\"",
            ));
        }
        cfg.db = db.clone();
    }
    if let Some(list) = &a.symbols {
        let names: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if names.is_empty() {
            return Err(ConfigError::invalid(
                "--symbols/ROBO_SYMBOLS",
                "the list is empty",
            ));
        }
        let universe = Universe::new(&names)
            .map_err(|e| ConfigError::invalid("--symbols/ROBO_SYMBOLS", e.to_string()))?;
        cfg.symbols = universe.names().to_vec();
    }
    if let Some(b) = a.broker {
        cfg.broker = b;
    }
    if let Some(name) = &a.strategy {
        let name = name.trim().to_ascii_lowercase().replace('-', "_");
        let Some(fresh) = StrategyConfig::default_for(&name) else {
            return Err(ConfigError::invalid(
                "--strategy/ROBO_STRATEGY",
                format!(
                    "expected one of: {}; got {name:?}",
                    StrategyConfig::NAMES.join(", ")
                ),
            ));
        };
        // Same strategy as the file: keep the file's parameters; another one: its defaults.
        if fresh.name() != cfg.strategy.name() {
            cfg.strategy = fresh;
        }
    }
    if let Some(cash) = a.cash {
        check_cash("--cash/ROBO_CASH", cash)?;
        cfg.starting_cash = cash;
    }
    if let Some(speed) = a.sim_speed {
        if let Some(p) = speed.problem() {
            return Err(ConfigError::invalid("--sim-speed/ROBO_SIM_SPEED", p));
        }
        cfg.sim.speed = speed;
    }
    if let Some(start) = &a.sim_start {
        check_rfc3339("--sim-start/ROBO_SIM_START", start)?;
        cfg.sim.start = Some(start.trim().to_string());
    }
    if let Some(until) = &a.sim_until {
        check_rfc3339("--sim-until", until)?;
        cfg.sim.until = Some(until.trim().to_string());
    }
    if let Some(dir) = &a.record_bars {
        cfg.sim.record_bars = Some(dir.clone());
    }
    if let Some(seed) = a.sim_seed {
        cfg.sim.seed = seed;
    }
    if let Some(dir) = &a.sim_data {
        cfg.sim.data = Some(dir.clone());
    }
    if let Some(clock) = a.clock {
        cfg.sim.clock = Some(clock);
    }
    if let Some(host) = &a.dash_host {
        check_host("--dash-host/DASH_HOST", host)?;
        cfg.web.dash_host = host.trim().to_string();
    }
    if let Some(p) = a.dash_port {
        cfg.web.dash_port = port("--dash-port/DASH_PORT", p, true)?;
    }
    if let Some(p) = a.ws_port {
        cfg.web.ws_port = port("--ws-port/WS_PORT", p, true)?;
    }
    if let Some(file) = &a.log_file {
        if file.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "--log-file/LOG_FILE",
                "expected a file path, got \"\"",
            ));
        }
        cfg.log.file = Some(file.clone());
    }
    if let Some(level) = &a.log_level {
        check_log_level("--log-level/ROBO_LOG_LEVEL", level)?;
        cfg.log.level = level.trim().to_string();
    }
    if let Some(host) = &a.ib_host {
        check_host("--ib-host/IB_HOST", host)?;
        cfg.ib.host = host.trim().to_string();
    }
    if let Some(p) = a.ib_port {
        cfg.ib.port = port("--ib-port/IB_PORT", p, false)?;
    }
    if let Some(id) = a.client_id {
        cfg.ib.client_id = check_client_id("--client-id/IB_CLIENT_ID", id)?;
    }
    if let Some(orders) = a.ib_orders {
        cfg.ib.orders = orders;
    }
    if let Some(f) = a.market_data_fallback {
        cfg.ib.market_data_fallback = f;
    }
    if let Some(on) = a.broker_stops {
        cfg.ib.broker_stops = on;
    }
    cfg.ib.live = a.live;
    if a.no_decisions {
        cfg.decisions = false;
    }
    Ok(())
}

fn port(key: &str, p: i64, zero_ok: bool) -> Result<u16, ConfigError> {
    let lo = if zero_ok { 0 } else { 1 };
    match u16::try_from(p) {
        Ok(v) if i64::from(v) >= lo => Ok(v),
        _ => Err(ConfigError::invalid(
            key,
            format!("{p} is out of range ({lo}-65535)"),
        )),
    }
}

fn check_cash(key: &str, cash: Decimal) -> Result<(), ConfigError> {
    if cash <= Decimal::ZERO {
        return Err(ConfigError::invalid(
            key,
            format!("must be a positive amount like 100000, got {cash}"),
        ));
    }
    Ok(())
}

fn check_rfc3339(key: &str, s: &str) -> Result<(), ConfigError> {
    crate::cli::parse_rfc3339(s).map(|_| ()).map_err(|_| {
        ConfigError::invalid(
            key,
            format!("expected an RFC 3339 time like 2025-03-03T14:30:00Z, got {s:?}"),
        )
    })
}

fn check_host(key: &str, host: &str) -> Result<(), ConfigError> {
    let h = host.trim();
    if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            key,
            format!("expected a host name or IP address like 127.0.0.1, got {host:?}"),
        ));
    }
    Ok(())
}

fn check_log_level(key: &str, level: &str) -> Result<(), ConfigError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let l = level.trim();
    // EnvFilter reads a bare word as a target name, so `inf` would silently log nothing; a
    // directive without `=` or `[` must be a level.
    let bare_word_ok = l.split(',').map(str::trim).all(|d| {
        d.contains('=') || d.contains('[') || LEVELS.contains(&d.to_ascii_lowercase().as_str())
    });
    if l.is_empty() || !bare_word_ok || tracing_subscriber::EnvFilter::try_new(l).is_err() {
        return Err(ConfigError::invalid(
            key,
            format!(
                "expected trace, debug, info, warn, error, off or a filter like \
                 robo_trader=debug,info; got {level:?}"
            ),
        ));
    }
    Ok(())
}

fn check_client_id(key: &str, id: i64) -> Result<i32, ConfigError> {
    match i32::try_from(id) {
        Ok(v) if v >= 0 => Ok(v),
        _ => Err(ConfigError::invalid(
            key,
            format!("{id} is out of range (0-2147483647)"),
        )),
    }
}

/// The effective config as TOML, with every secret (`ib.account`, `web.api_token`) shown as
/// `"<redacted>"`. Decimals are written as strings (`"0.02"`) so they stay exact; the output
/// parses back with [`parse_toml`].
pub fn redacted_toml(cfg: &Config) -> String {
    let mut shown = cfg.clone();
    for secret in [&mut shown.ib.account, &mut shown.web.api_token] {
        if secret.is_some() {
            *secret = Some(REDACTED.to_string());
        }
    }
    toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
}

// The core's tagged enums (`[sizing] mode = ..`, `[paper.commission] model = ..`) are read
// through serde's buffered content, which with rust_decimal's `serde-str` feature only accepts
// decimals written as strings, and which loses the key of a bad value. These readers check the
// decimal keys of those tables themselves and restate TOML numbers as strings, so
// `fraction = 0.02` works as well as `fraction = "0.02"` and `fraction = "abc"` is named.

/// Prefixes an error raised below a field with the rest of its path, for [`parse_toml`].
const SUBPATH: char = '\u{1}';

fn sub_error<E: serde::de::Error>(subpath: &str, message: &str) -> E {
    E::custom(format!("{SUBPATH}{subpath}{SUBPATH}{message}"))
}

/// Splits a message made by [`sub_error`] into its subpath and the message.
fn split_subpath(message: &str) -> Option<(&str, &str)> {
    message.strip_prefix(SUBPATH)?.split_once(SUBPATH)
}

fn decimals_as_strings<E: serde::de::Error>(
    table: &mut toml::Table,
    keys: &[&str],
    prefix: &str,
) -> Result<(), E> {
    for key in keys {
        let Some(v) = table.get_mut(*key) else {
            continue;
        };
        let text = match v {
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::String(s) => {
                if Decimal::from_str(s.trim()).is_err() {
                    let msg = format!("invalid value: string {s:?}, expected a Decimal type");
                    return Err(sub_error(&format!("{prefix}{key}"), &msg));
                }
                s.trim().to_string()
            }
            other => {
                let msg = format!(
                    "invalid type: {}, expected a Decimal type",
                    other.type_str()
                );
                return Err(sub_error(&format!("{prefix}{key}"), &msg));
            }
        };
        *v = toml::Value::String(text);
    }
    Ok(())
}

/// `a.b`, or whichever is not empty.
fn subjoin(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}.{b}"),
    }
}

/// Deserializes `T` from a TOML value found at `at`; an error comes back as (path, message).
fn value_into<T: serde::de::DeserializeOwned>(
    v: toml::Value,
    at: &str,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let path = if path == "." || path == "?" {
            ""
        } else {
            path.as_str()
        };
        (subjoin(at, path), inner.message().to_string())
    })
}

/// Deserializes `T` from a TOML value, keeping the path of an error inside it.
fn reread<T: serde::de::DeserializeOwned, E: serde::de::Error>(v: toml::Value) -> Result<T, E> {
    value_into(v, "").map_err(|(path, msg)| sub_error(&path, &msg))
}

fn de_strategy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<StrategyConfig, D::Error> {
    let v = toml::Value::deserialize(d)?;
    strategy_from_value(v, "").map_err(|(path, msg)| sub_error(&path, &msg))
}

/// Reads `[strategy]` by its `name`, so an error in a parameter names the parameter (serde's
/// own reader of tagged tables cannot). Combined strategies recurse into `members`. A name this
/// does not know goes to the core's reader, which knows every strategy.
fn strategy_from_value(v: toml::Value, at: &str) -> Result<StrategyConfig, (String, String)> {
    use robo_core::strategy::CombinerParams;
    let toml::Value::Table(mut t) = v else {
        let got = v.type_str();
        return Err((
            at.to_string(),
            format!("expected a table with `name = ..`, got {got}"),
        ));
    };
    let name = match t.remove("name") {
        None => return Err((at.to_string(), "missing field `name`".to_string())),
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            let got = other.type_str();
            let names = StrategyConfig::NAMES.join(", ");
            return Err((
                subjoin(at, "name"),
                format!("expected one of: {names}; got {got}"),
            ));
        }
    };
    Ok(match name.as_str() {
        "sma_crossover" => StrategyConfig::SmaCrossover(value_into(toml::Value::Table(t), at)?),
        "momentum" => StrategyConfig::Momentum(value_into(toml::Value::Table(t), at)?),
        "mean_reversion" => StrategyConfig::MeanReversion(value_into(toml::Value::Table(t), at)?),
        "breakout" => StrategyConfig::Breakout(value_into(toml::Value::Table(t), at)?),
        "combined" => {
            let members = match t.remove("members") {
                None => None,
                Some(toml::Value::Array(items)) => Some(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, m)| {
                            strategy_from_value(m, &subjoin(at, &format!("members[{i}]")))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some(other) => {
                    let got = other.type_str();
                    let key = subjoin(at, "members");
                    return Err((
                        key,
                        format!("expected an array of strategy tables, got {got}"),
                    ));
                }
            };
            let mut p: CombinerParams = value_into(toml::Value::Table(t), at)?;
            if let Some(m) = members {
                p.members = m;
            }
            StrategyConfig::Combined(p)
        }
        _ => {
            t.insert("name".to_string(), toml::Value::String(name));
            value_into(toml::Value::Table(t), at)?
        }
    })
}

const SIZING_DECIMALS: [&str; 4] = ["fraction", "risk_fraction", "atr_multiple", "cap_fraction"];
const COMMISSION_DECIMALS: [&str; 2] = ["rate", "bps"];

fn de_sizing<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SizingConfig, D::Error> {
    let mut v = toml::Value::deserialize(d)?;
    if let toml::Value::Table(t) = &mut v {
        decimals_as_strings(t, &SIZING_DECIMALS, "")?;
    }
    reread(v)
}

fn de_paper<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PaperConfig, D::Error> {
    let mut v = toml::Value::deserialize(d)?;
    if let Some(toml::Value::Table(c)) = v.get_mut("commission") {
        decimals_as_strings(c, &COMMISSION_DECIMALS, "commission.")?;
    }
    reread(v)
}
