//! `robo-trader backtest`, `optimize` and `data import`: the live engine over history.
//!
//! A backtest drives the very `PaperSession` (engine + paper broker) that `run` uses, so the
//! two cannot disagree. Semantics (see docs/BACKTEST.md):
//! - Bars are used as given, merged across symbols in (time, symbol) order. `--calendar nyse`
//!   drops bars outside the NYSE regular session; otherwise nothing is filtered.
//! - A signal on bar t becomes a market order that fills at bar t+1's open of the same symbol
//!   (`--fill next_open`, the default; t+1 is the next bar in the file whatever its date) or at
//!   bar t's close (`--fill close`), less `--slippage-bps` against the trader, with the
//!   `--commission` model rounded to the cent.
//! - SMA crossover = a change of sign of (fast − slow); an exact tie keeps the previous sign.
//!   Long only unless `--allow-short`; fixed size `--param qty=N` (default 100).
//! - `--no-risk` turns the risk gate off; stops are off unless `--stop-loss`/`--trailing`/
//!   `--take-profit` are given.
//! - At the end nothing is closed: positions are marked at their last close and an order still
//!   working never fills. `final_equity` = cash + positions at the last close.
//!
//! - Settings layer like `run`'s: flags > the config file (`--config`, else
//!   `./robo-trader.toml`) > the backtest defaults above; see docs/BACKTEST.md.
//!
//! Input problems (bad CSV, unknown parameter, bad date, bad config…) print one line and exit
//! with 2.

pub mod data;
pub mod metrics;
pub mod optimize;
pub mod report;
pub mod run;
pub mod tally;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use chrono::{DateTime, NaiveDate};
use clap::{Args, Subcommand, ValueEnum};
use robo_core::calendar;
use robo_core::commission::CommissionModel;
use robo_core::paper::{FillPolicy, PaperConfig};
use robo_core::risk::RiskLimits;
use robo_core::sizing::SizingConfig;
use robo_core::stops::StopConfig;
use robo_core::strategy::StrategyConfig;
use robo_core::types::Ts;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::config::Config;
use crate::data::csv::ReadOptions;
use data::{DataError, DataSource, Residency, StreamFilter};
use run::{RunResult, RunSettings};

/// When market orders fill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum FillArg {
    /// At the next bar's open.
    #[default]
    #[value(name = "next_open", alias = "next-open")]
    NextOpen,
    /// At the signal bar's close.
    Close,
}

/// Which bars count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CalendarArg {
    /// Only bars inside the NYSE regular session (holidays and early closes included).
    Nyse,
}

/// The options `backtest` and `optimize` share.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct SimArgs {
    /// A CSV file or a directory of `SYMBOL.csv` files (or a binary cache from `data import`).
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    /// Only these symbols (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "SYM")]
    pub symbols: Vec<String>,
    /// sma_crossover, momentum, mean_reversion, breakout or combined (all four through the
    /// combiner) [default: the config's strategy, else sma_crossover].
    #[arg(long)]
    pub strategy: Option<String>,
    /// A strategy parameter `name=value` (repeatable); `qty=N` sets the fixed order size.
    #[arg(long = "param", value_name = "K=V")]
    pub params: Vec<String>,
    /// First day (YYYY-MM-DD, New York) or instant (RFC 3339), inclusive.
    #[arg(long)]
    pub from: Option<String>,
    /// Last day (YYYY-MM-DD, inclusive) or instant (RFC 3339, exclusive).
    #[arg(long)]
    pub to: Option<String>,
    /// Starting cash [default: the config's starting_cash, else 100000].
    #[arg(long)]
    pub cash: Option<Decimal>,
    /// When market orders fill [default: the config's paper.fill, else next_open].
    #[arg(long, value_enum)]
    pub fill: Option<FillArg>,
    /// Adverse slippage in basis points of the fill price [default: the config's, else 0].
    #[arg(long)]
    pub slippage_bps: Option<Decimal>,
    /// ib-fixed, per-share:RATE, bps:BPS or zero [default: the config's, else ib-fixed].
    #[arg(long)]
    pub commission: Option<String>,
    /// Turn the risk gate off.
    #[arg(long)]
    pub no_risk: bool,
    /// Allow short entries on sell signals.
    #[arg(long)]
    pub allow_short: bool,
    /// Stop-loss as a fraction below entry (e.g. 0.02); off by default.
    #[arg(long)]
    pub stop_loss: Option<Decimal>,
    /// Trailing stop as a fraction below the high-water mark; off by default.
    #[arg(long)]
    pub trailing: Option<Decimal>,
    /// Take-profit as a fraction above entry; off by default.
    #[arg(long)]
    pub take_profit: Option<Decimal>,
    /// Count and skip malformed CSV rows instead of failing.
    #[arg(long)]
    pub skip_bad_rows: bool,
    /// Keep only bars inside this exchange calendar's regular sessions.
    #[arg(long, value_enum)]
    pub calendar: Option<CalendarArg>,
    /// Annual risk-free rate for Sharpe and Sortino (0.04 = 4%).
    #[arg(long, default_value = "0")]
    pub risk_free: f64,
    /// Bars before this instant (RFC 3339) or day only warm the strategies up, as `run`'s
    /// history sessions do: no orders, no fills, no curve.
    #[arg(long, value_name = "WHEN")]
    pub trade_from: Option<String>,
}

/// `robo-trader backtest --data PATH ...`
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct BacktestArgs {
    #[command(flatten)]
    pub sim: SimArgs,
    /// Write a self-contained HTML report (SVG charts, metrics, trades).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write every decision and fill as JSON lines to FILE (the fields `run` stores).
    #[arg(long, value_name = "FILE")]
    pub decisions_out: Option<PathBuf>,
}

/// `robo-trader optimize --data PATH ...`
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct OptimizeArgs {
    #[command(flatten)]
    pub sim: SimArgs,
    /// A parameter grid `name=v1,v2,...` (repeatable); every combination is run.
    #[arg(long = "grid", value_name = "K=V1,V2")]
    pub grid: Vec<String>,
    /// Rank by: sharpe, sortino, total_return, cagr or calmar.
    #[arg(long, default_value = "sharpe")]
    pub metric: String,
    /// Walk-forward: choose on each training window, report the following test window.
    #[arg(long)]
    pub walk_forward: bool,
    /// Training window in bars (timestamps).
    #[arg(long, default_value_t = 252)]
    pub train: usize,
    /// Test window in bars.
    #[arg(long, default_value_t = 63)]
    pub test: usize,
    /// Bars between window starts [default: the test length].
    #[arg(long)]
    pub step: Option<usize>,
    /// Training windows all start at the first bar (growing) instead of sliding.
    #[arg(long)]
    pub anchored: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
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
        /// Count and skip malformed rows instead of failing.
        #[arg(long)]
        skip_bad_rows: bool,
    },
    /// Read and check every bar (CSV or cache) without running anything: the load-only rate.
    Check {
        /// CSV file, directory or cache file.
        input: PathBuf,
        /// Count and skip malformed rows instead of failing.
        #[arg(long)]
        skip_bad_rows: bool,
    },
}

/// A problem with the command line or the input data: one line, exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Data(#[from] DataError),
}

fn usage(msg: impl Into<String>) -> InputError {
    InputError::Usage(msg.into())
}

/// Prints an input error and maps it to exit code 2; anything else goes to `main`.
fn finish(r: anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    match r {
        Err(e) => match e.downcast::<InputError>() {
            Ok(ie) => {
                eprintln!("robo-trader: {ie}");
                Ok(ExitCode::from(2))
            }
            Err(e) => Err(e),
        },
        ok => ok,
    }
}

/// Applies `--param k=v` overrides to the named strategy's defaults. Returns the strategy and
/// the order size if `qty` was given.
pub fn strategy_from(
    name: &str,
    params: &[String],
) -> Result<(StrategyConfig, Option<i64>), InputError> {
    let name = if name.is_empty() {
        "sma_crossover"
    } else {
        name
    };
    let base = StrategyConfig::default_for(name).ok_or_else(|| {
        usage(format!(
            "unknown strategy {name:?} (expected one of {})",
            StrategyConfig::NAMES.join(", ")
        ))
    })?;
    apply_params(base, params)
}

/// The strategy a run starts from: `--strategy` (its defaults), else the config's, else
/// sma_crossover.
pub fn base_strategy(sim: &SimArgs, cfg: Option<&Config>) -> Result<StrategyConfig, InputError> {
    match (&sim.strategy, cfg) {
        (Some(name), _) => Ok(strategy_from(name, &[])?.0),
        (None, Some(c)) => Ok(c.strategy.clone()),
        (None, None) => Ok(strategy_from("sma_crossover", &[])?.0),
    }
}

/// Applies `--param k=v` overrides to `base`; `qty=N` is returned apart.
pub fn apply_params(
    base: StrategyConfig,
    params: &[String],
) -> Result<(StrategyConfig, Option<i64>), InputError> {
    let mut v = serde_json::to_value(&base).map_err(|e| usage(e.to_string()))?;
    let mut qty = None;
    let Some(obj) = v.as_object_mut() else {
        return Err(usage("strategy parameters are not a table"));
    };
    for p in params {
        let Some((k, val)) = p.split_once('=') else {
            return Err(usage(format!("--param {p:?}: expected name=value")));
        };
        let (k, val) = (k.trim(), val.trim());
        if k == "qty" {
            qty =
                Some(val.parse::<i64>().ok().filter(|q| *q > 0).ok_or_else(|| {
                    usage(format!("--param qty={val}: must be a positive integer"))
                })?);
            continue;
        }
        if k == "name" || !obj.contains_key(k) {
            let mut known: Vec<&str> = obj
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "name")
                .collect();
            known.push("qty");
            return Err(usage(format!(
                "unknown parameter {k:?} for strategy {} (known: {})",
                base.name(),
                known.join(", ")
            )));
        }
        let parsed = serde_json::from_str::<Value>(val).unwrap_or(Value::String(val.to_string()));
        obj.insert(k.to_string(), parsed);
    }
    let cfg: StrategyConfig = serde_json::from_value(v)
        .map_err(|e| usage(format!("strategy {} parameters: {e}", base.name())))?;
    cfg.validate()
        .map_err(|e| usage(format!("strategy {}: {e}", base.name())))?;
    Ok((cfg, qty))
}

/// `--from`/`--to` text to an instant. A date is New York midnight; `end` moves a date to the
/// next midnight so the day is included.
pub fn parse_when(flag: &str, text: &str, end: bool) -> Result<Ts, InputError> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let d = if end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(calendar::ny_local_to_ts(d, 0, 0));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(Ts::from_utc(dt.to_utc()));
    }
    Err(usage(format!(
        "{flag} {text:?}: expected YYYY-MM-DD or an RFC 3339 instant"
    )))
}

/// The config file `run` would read (`--config`, else ./robo-trader.toml if present), or
/// `None` when there is none: then a backtest uses its own defaults (fixed 100 shares, no
/// stops, next-open fills, ib-fixed commission, $100,000).
pub fn load_config(path: Option<&Path>) -> Result<Option<Config>, InputError> {
    let exists = path.is_some() || Path::new(crate::config::DEFAULT_CONFIG_FILE).is_file();
    if !exists {
        return Ok(None);
    }
    crate::config::load(path, &crate::cli::RunArgs::default())
        .map(Some)
        .map_err(|e| usage(format!("config: {e}")))
}

/// The loaded data and the settings for a run, from the shared options layered over the
/// config (CLI > config file > backtest defaults).
pub fn prepare(
    sim: &SimArgs,
    cfg: Option<&Config>,
    residency: Residency,
) -> Result<(DataSource, RunSettings, u64), InputError> {
    let (strategy, qty) = apply_params(base_strategy(sim, cfg)?, &sim.params)?;
    let sizing = match (qty, cfg) {
        (Some(q), _) => SizingConfig::FixedQty { qty: q },
        (None, Some(c)) => c.sizing,
        (None, None) => SizingConfig::FixedQty { qty: 100 },
    };
    let base_paper = cfg.map_or(
        PaperConfig {
            fill: FillPolicy::NextOpen,
            slippage_bps: Decimal::ZERO,
            commission: CommissionModel::IbFixed,
            max_volume_pct: None,
        },
        |c| c.paper,
    );
    let commission = match &sim.commission {
        Some(text) => {
            CommissionModel::parse(text).map_err(|e| usage(format!("--commission: {e}")))?
        }
        None => base_paper.commission,
    };
    let cash = sim
        .cash
        .or(cfg.map(|c| c.starting_cash))
        .unwrap_or(Decimal::from(100_000));
    if cash <= Decimal::ZERO {
        return Err(usage(format!("--cash {cash}: must be positive")));
    }
    let slippage_bps = sim.slippage_bps.unwrap_or(base_paper.slippage_bps);
    if slippage_bps < Decimal::ZERO {
        return Err(usage("--slippage-bps: must not be negative"));
    }
    if !sim.risk_free.is_finite() {
        return Err(usage("--risk-free: must be a number"));
    }
    let base_stops = cfg.map_or(
        StopConfig {
            stop_loss_pct: None,
            trailing_pct: None,
            take_profit_pct: None,
        },
        |c| c.stops,
    );
    let stops = StopConfig {
        stop_loss_pct: sim.stop_loss.or(base_stops.stop_loss_pct),
        trailing_pct: sim.trailing.or(base_stops.trailing_pct),
        take_profit_pct: sim.take_profit.or(base_stops.take_profit_pct),
    };
    stops.validate().map_err(|e| usage(format!("stops: {e}")))?;
    let from = sim
        .from
        .as_deref()
        .map(|t| parse_when("--from", t, false))
        .transpose()?;
    let to = sim
        .to
        .as_deref()
        .map(|t| parse_when("--to", t, true))
        .transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(usage("--from must be before --to"));
        }
    }
    let symbols: Vec<String> = sim
        .symbols
        .iter()
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    let opts = ReadOptions {
        skip_bad_rows: sim.skip_bad_rows,
        symbol_filter: None,
        from,
        to,
    };
    let (src, report) = DataSource::open(
        &sim.data,
        (!symbols.is_empty()).then_some(symbols.as_slice()),
        &opts,
        residency,
    )?;
    if src.symbols().is_empty() {
        return Err(DataError::NoBars.into());
    }
    let mut src = src;
    if let Some(c) = cfg {
        src.reorder(&c.symbols);
    }
    let spacing = src.bar_spacing_secs()?.unwrap_or(86_400);
    let mut risk = cfg.map_or_else(RiskLimits::default, |c| c.risk.clone());
    if sim.allow_short {
        risk.allow_short = true;
    }
    if sim.no_risk {
        risk.enabled = false;
    }
    let trade_from = sim
        .trade_from
        .as_deref()
        .map(|t| parse_when("--trade-from", t, false))
        .transpose()?;
    let settings = RunSettings {
        strategy,
        sizing,
        cash,
        paper: PaperConfig {
            fill: match sim.fill {
                Some(FillArg::NextOpen) => FillPolicy::NextOpen,
                Some(FillArg::Close) => FillPolicy::Close,
                None => base_paper.fill,
            },
            slippage_bps,
            commission,
            max_volume_pct: base_paper.max_volume_pct,
        },
        risk,
        stops,
        filter: StreamFilter {
            from,
            to,
            nyse_only: sim.calendar == Some(CalendarArg::Nyse),
        },
        risk_free: sim.risk_free,
        periods_per_year: metrics::periods_per_year(spacing),
        // The strategy bar size the config declares (price-age checks), else the data's.
        bar_seconds: cfg.map_or(spacing, |c| i64::from(c.bar_seconds)),
        trade_from,
        detail: false,
        decisions_out: None,
    };
    Ok((src, settings, report.skipped as u64))
}

fn opt_f(x: Option<f64>) -> Value {
    x.filter(|v| v.is_finite())
        .map_or(Value::Null, |v| json!(v))
}

/// The JSON summary of a run.
pub fn summary_json(r: &RunResult, s: &RunSettings, elapsed_s: f64, skipped: u64) -> Value {
    let c = &r.curve;
    let b = &r.benchmark;
    let t = &r.trades;
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("bars", json!(r.bars));
    put("symbols", json!(r.symbols));
    put("fills", json!(r.fills));
    put("refusals", json!(r.refusals));
    put("starting_cash", json!(s.cash));
    put("final_equity", json!(r.final_equity.normalize()));
    put("cash", json!(r.cash.normalize()));
    put("commissions", json!(r.commissions.normalize()));
    put(
        "open_positions",
        json!(r
            .open_positions
            .iter()
            .map(|(s, q)| json!({"symbol": s, "qty": q}))
            .collect::<Vec<_>>()),
    );
    put("elapsed_s", json!(elapsed_s));
    put("sim_s", json!(r.sim_s));
    put(
        "bars_per_s",
        json!(if elapsed_s > 0.0 {
            r.bars as f64 / elapsed_s
        } else {
            0.0
        }),
    );
    put("skipped_rows", json!(skipped + r.skipped_rows));
    put("off_calendar_bars", json!(r.off_calendar));
    put("first_bar", json!(run::when(r.first_ts)));
    put("last_bar", json!(run::when(r.last_ts)));
    put("strategy", json!(s.strategy));
    put(
        "qty",
        match s.sizing {
            SizingConfig::FixedQty { qty } => json!(qty),
            _ => Value::Null,
        },
    );
    put("sizing", json!(s.sizing));
    put("fill", json!(s.paper.fill));
    put("periods_per_year", json!(c.periods_per_year));
    put("total_return", json!(c.total_return));
    put("cagr", json!(opt_f(c.cagr)));
    put("volatility", json!(opt_f(c.volatility)));
    put("sharpe", json!(opt_f(c.sharpe)));
    put("sortino", json!(opt_f(c.sortino)));
    put("calmar", json!(opt_f(c.calmar)));
    put("max_drawdown", json!(c.max_drawdown));
    put("max_drawdown_peak", json!(c.max_drawdown_peak));
    put("max_drawdown_trough", json!(c.max_drawdown_trough));
    put("max_drawdown_recovery", json!(c.max_drawdown_recovery));
    put("max_drawdown_duration_s", json!(c.max_drawdown_duration_s));
    put("longest_drawdown_s", json!(c.longest_drawdown_s));
    put("trades", json!(t.trades));
    put("wins", json!(t.wins));
    put("losses", json!(t.losses));
    put("win_rate", json!(opt_f(t.win_rate)));
    put("profit_factor", json!(opt_f(t.profit_factor)));
    put("avg_win", json!(t.avg_win.map(|d| d.round_dp(4))));
    put("avg_loss", json!(t.avg_loss.map(|d| d.round_dp(4))));
    put("net_trade_pnl", json!(t.net_pnl));
    put("exposure", json!(r.exposure));
    put("turnover", json!(r.turnover));
    put("traded_notional", json!(r.traded_notional.normalize()));
    put(
        "benchmark",
        json!({"kind": "equal-weight buy and hold", "total_return": b.total_return, "cagr": opt_f(b.cagr), "sharpe": opt_f(b.sharpe), "sortino": opt_f(b.sortino), "max_drawdown": b.max_drawdown,}),
    );
    Value::Object(m)
}

fn print_text(v: &Value) {
    let keys = [
        "bars",
        "symbols",
        "first_bar",
        "last_bar",
        "fills",
        "refusals",
        "trades",
        "starting_cash",
        "final_equity",
        "commissions",
        "total_return",
        "cagr",
        "sharpe",
        "sortino",
        "calmar",
        "max_drawdown",
        "max_drawdown_peak",
        "max_drawdown_trough",
        "max_drawdown_duration_s",
        "win_rate",
        "profit_factor",
        "avg_win",
        "avg_loss",
        "exposure",
        "turnover",
        "elapsed_s",
        "bars_per_s",
    ];
    for k in keys {
        if let Some(x) = v.get(k) {
            println!("{k:<24} {x}");
        }
    }
    if let Some(b) = v.get("benchmark") {
        println!(
            "{:<24} total_return {} sharpe {} max_drawdown {}",
            "buy_and_hold", b["total_return"], b["sharpe"], b["max_drawdown"]
        );
    }
}

pub fn cmd_backtest(config: Option<&Path>, args: &BacktestArgs) -> anyhow::Result<ExitCode> {
    finish(backtest_main(config, args))
}

fn backtest_main(config: Option<&Path>, args: &BacktestArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let cfg = load_config(config)?;
    let (src, mut settings, skipped) = prepare(&args.sim, cfg.as_ref(), Residency::Stream)?;
    settings.detail = args.report.is_some();
    settings.decisions_out.clone_from(&args.decisions_out);
    let r = run::run(&src, &settings).map_err(InputError::from)?;
    if r.bars == 0 {
        return Err(InputError::Data(DataError::NoBars).into());
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let v = summary_json(&r, &settings, elapsed, skipped);
    if let Some(path) = &args.report {
        let html = report::html(&r, &settings, &v);
        std::fs::write(path, html)
            .map_err(|e| anyhow::anyhow!("--report {}: {e}", path.display()))?;
    }
    if args.json {
        println!("{v}");
    } else {
        print_text(&v);
        if let Some(p) = &args.report {
            println!("{:<24} {}", "report", p.display());
        }
    }
    if let Some(hint) = no_fill_hint(&r) {
        eprintln!("{hint}");
    }
    Ok(ExitCode::SUCCESS)
}

/// When nothing filled because the risk gate refused every order, say which check did and
/// what changes it, instead of leaving a row of zeros to puzzle over.
fn no_fill_hint(r: &run::RunResult) -> Option<String> {
    if r.fills > 0 {
        return None;
    }
    let (check, n) = r.refusals.iter().max_by_key(|(_, n)| **n)?;
    let fix = match *check {
        "position_size" | "order_notional" | "daily_notional" | "leverage" => {
            concat!(
                "the order size is over a limit: lower --param qty, raise --cash, ",
                "use a config's [sizing]/[risk], or --no-risk for the bare strategy"
            )
        }
        _ => "see the [risk] limits in the config, or --no-risk for the bare strategy",
    };
    Some(format!(
        "note: no fills; the risk gate refused {n} order(s) on {check}: {fix}"
    ))
}

pub fn cmd_optimize(config: Option<&Path>, args: &OptimizeArgs) -> anyhow::Result<ExitCode> {
    finish(optimize::optimize_main(config, args))
}

pub fn cmd_data(cmd: &DataCommand) -> anyhow::Result<ExitCode> {
    finish(match cmd {
        DataCommand::Import {
            input,
            output,
            skip_bad_rows,
        } => (|| {
            let t0 = Instant::now();
            let r = data::import(input, output, *skip_bad_rows).map_err(InputError::from)?;
            println!(
                "{}",
                json!({
                    "files": r.files, "symbols": r.symbols, "bars": r.bars,
                    "skipped_rows": r.skipped, "bytes": r.bytes,
                    "elapsed_s": t0.elapsed().as_secs_f64(),
                    "output": output.display().to_string(),
                })
            );
            Ok(ExitCode::SUCCESS)
        })(),
        DataCommand::Check {
            input,
            skip_bad_rows,
        } => (|| {
            let t0 = Instant::now();
            let opts = ReadOptions {
                skip_bad_rows: *skip_bad_rows,
                ..ReadOptions::default()
            };
            let (src, report) = DataSource::open(input, None, &opts, Residency::Stream)
                .map_err(InputError::from)?;
            let mut feed = src
                .feed(&StreamFilter::default())
                .map_err(InputError::from)?;
            let (mut bars, mut first, mut last) = (0u64, None, None);
            while let Some(b) = feed.next_bar().map_err(InputError::from)? {
                bars += 1;
                first.get_or_insert(b.ts);
                last = Some(b.ts);
            }
            let elapsed = t0.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({
                    "symbols": src.symbols(), "bars": bars,
                    "skipped_rows": report.skipped as u64 + feed.skipped(),
                    "first_bar": run::when(first), "last_bar": run::when(last),
                    "elapsed_s": elapsed,
                    "bars_per_s": if elapsed > 0.0 { bars as f64 / elapsed } else { 0.0 },
                })
            );
            Ok(ExitCode::SUCCESS)
        })(),
    })
}
