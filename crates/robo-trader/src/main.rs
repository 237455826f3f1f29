//! The `robo-trader` binary: parses the command line and runs one subcommand. Errors reach
//! the user as one line; a bad config exits with code 2.

use std::io::Write;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use robo_core::calendar::Calendar;
use robo_core::types::Ts;
use robo_trader::cli::{
    Cli, Command, ConfigCommand, KillSwitchArgs, MarketHoursArgs, RunArgs, StatusArgs,
};
use robo_trader::config::{self, BrokerKind, ClockKind, Config, SimSpeed};
use robo_trader::lock::ProcessLock;
use robo_trader::logging;
use robo_trader::runner::{self, ChannelWaiter, Control, Pacer, TraderParts};
use robo_trader::store::{RunInfo, Store, WriteOp, WriterOptions};
use robo_trader::web;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd_run(cli.config.as_deref(), &args),
        Command::Status(args) => cmd_status(cli.config.as_deref(), &args),
        Command::KillSwitch(args) => cmd_kill_switch(cli.config.as_deref(), &args),
        Command::MarketHours(args) => cmd_market_hours(&args),
        Command::Config(ConfigCommand::Show(args)) => cmd_config_show(cli.config.as_deref(), &args),
        Command::Backtest(args) => {
            robo_trader::backtest::cmd_backtest(cli.config.as_deref(), &args)
        }
        Command::Optimize(args) => {
            robo_trader::backtest::cmd_optimize(cli.config.as_deref(), &args)
        }
        Command::Data(cmd) => robo_trader::backtest::cmd_data(&cmd),
        Command::Doctor(args) => robo_trader::doctor::cmd_doctor(cli.config.as_deref(), &args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<config::ConfigError>() {
                eprintln!("robo-trader: {ce}");
                return ExitCode::from(ce.exit_code() as u8);
            }
            eprintln!("robo-trader: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined with ": ", leaving out a cause whose text the message
/// before it already quotes (an I/O error named in its wrapper's message would show twice).
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn load_config(path: Option<&std::path::Path>, args: &RunArgs) -> anyhow::Result<Config> {
    Ok(config::load(path, args)?)
}

fn cmd_config_show(path: Option<&std::path::Path>, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path, args)?;
    print!("{}", config::redacted_toml(&cfg));
    Ok(ExitCode::SUCCESS)
}

fn cmd_market_hours(args: &MarketHoursArgs) -> anyhow::Result<ExitCode> {
    let at = args.at.unwrap_or_else(chrono::Utc::now);
    let mh = Calendar::nyse().market_hours(Ts::from_utc(at));
    if args.json {
        println!("{}", serde_json::to_string(&mh)?);
    } else {
        println!("session:   {}", mh.session.as_str());
        println!("open now:  {}", if mh.is_open { "yes" } else { "no" });
        println!("open:      {}", mh.open);
        println!("close:     {}", mh.close);
        println!("next open: {}", mh.next_open);
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_status(path: Option<&std::path::Path>, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path, &RunArgs::with_db(args.db.clone()))?;
    let store = Store::open_read_only(&cfg.db)?;
    let status = store.status_json()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    let s = |k: &str| {
        status
            .get(k)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_default()
    };
    println!("database:        {}", cfg.db.display());
    println!("trading state:   {}", s("trading_state"));
    println!("cash:            ${}", s("cash"));
    println!("equity:          ${}", s("equity"));
    println!("realized P&L:    ${}", s("realized_pnl"));
    println!("unrealized P&L:  ${}", s("unrealized_pnl"));
    println!("fills:           {}", s("fills"));
    println!(
        "open orders:     {}",
        status
            .get("open_orders")
            .and_then(|v| v.as_array())
            .map_or(0, Vec::len)
    );
    println!("last exit:       {}", s("last_exit_reason"));
    if let Some(ps) = status.get("positions").and_then(|v| v.as_array()) {
        if !ps.is_empty() {
            println!(
                "\n{:<8} {:>8} {:>12} {:>12} {:>12}",
                "symbol", "qty", "avg cost", "price", "unrealized"
            );
        }
        for p in ps {
            let f = |k: &str| {
                p.get(k)
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .unwrap_or_default()
            };
            println!(
                "{:<8} {:>8} {:>12} {:>12} {:>12}",
                f("symbol"),
                f("quantity"),
                f("avg_cost"),
                f("market_price"),
                f("unrealized_pnl")
            );
        }
    }
    // Only the symbols that are not simply tradeable on live data.
    if let Some(syms) = status.get("symbols").and_then(|v| v.as_array()) {
        let notable: Vec<_> = syms
            .iter()
            .filter(|s| s["state"] != "tradeable" || s["delayed"] == true)
            .collect();
        if !notable.is_empty() {
            println!("\n{:<8} {:<12} {:<8} reason", "symbol", "state", "data");
        }
        for s in notable {
            println!(
                "{:<8} {:<12} {:<8} {}",
                s["symbol"].as_str().unwrap_or(""),
                s["state"].as_str().unwrap_or(""),
                if s["delayed"] == true {
                    "delayed"
                } else {
                    "live"
                },
                s["reason"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_kill_switch(
    path: Option<&std::path::Path>,
    args: &KillSwitchArgs,
) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path, &RunArgs::with_db(args.db.clone()))?;
    // Never create a database here: a mistyped --db would report success while the real
    // trader kept trading.
    if !cfg.db.exists() {
        anyhow::bail!(
            "no database at {}; pass the --db the trader uses (or start `robo-trader run` first)",
            cfg.db.display()
        );
    }
    let store = Store::open(&cfg.db)?;
    let state = args.setting.trading_state();
    store.set_trading_state(
        state,
        "operator: kill-switch command",
        "cli",
        Ts::from_utc(chrono::Utc::now()),
    )?;
    println!("trading state set to {state} in {}", cfg.db.display());
    Ok(ExitCode::SUCCESS)
}

fn cmd_run(path: Option<&std::path::Path>, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path, args)?;
    if cfg.broker == BrokerKind::Ibkr {
        robo_trader::runner_ibkr::preflight(&cfg)?;
    }
    cfg.check_db_dir()?;
    // Take the lock before anything touches the database or the log, so a second `run` on the
    // same database refuses at once instead of fighting.
    let lock = ProcessLock::acquire(&cfg.db)?;
    let _log = logging::init(&cfg.log)?;
    let store = Store::open(&cfg.db).with_context(|| format!("opening {}", cfg.db.display()))?;
    let starting_cash = store.init_starting_cash(cfg.starting_cash)?;
    if starting_cash != cfg.starting_cash {
        tracing::warn!(
            database = %starting_cash, config = %cfg.starting_cash,
            "the database already has a starting cash; it wins (use a new --db to start over)"
        );
    }
    let (tx, rx) = mpsc::channel::<Control>();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The handlers go in before the run is recorded: from then on a SIGTERM (a supervisor's
    // stop, however early) drains and ends the run instead of killing the process with its
    // run left open. Registering them inside the spawned task would leave that window open
    // until the task first ran.
    #[cfg(unix)]
    let signals = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    });
    let (bus, _) = tokio::sync::broadcast::channel(4096);
    let (token, token_created) = web::load_or_create_token(&cfg.db)?;
    let web_handle = rt.block_on(web::start(
        &cfg.web,
        web::WebContext {
            db: cfg.db.clone(),
            bus: bus.clone(),
            control: tx.clone(),
            token: token.clone(),
            mode: match cfg.broker {
                BrokerKind::Sim => "sim".into(),
                BrokerKind::Ibkr => "ibkr".into(),
            },
            config_toml: config::redacted_toml(&cfg),
        },
    ))?;
    if !web::is_loopback(&cfg.web.dash_host) {
        tracing::warn!(host = %cfg.web.dash_host, "THE DASHBOARD IS LISTENING BEYOND THIS MACHINE (not loopback); control endpoints still need the token");
    }

    // The run is recorded only once the ports are bound: a dashboard port in use is refused
    // before any run row exists, so it cannot leave a run that never ends.
    let started = Ts::from_utc(chrono::Utc::now());
    let run_id = store.begin_run(&RunInfo {
        started,
        pid: std::process::id(),
        config_fingerprint: config_fingerprint(&cfg),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })?;
    let writer = match store.start_writer(WriterOptions::default()) {
        Ok(w) => w,
        Err(e) => {
            let _ = store.end_run(
                run_id,
                Ts::from_utc(chrono::Utc::now()),
                &format!("error: {e}"),
            );
            return Err(e.into());
        }
    };

    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "robo-trader {}: {} broker, {} symbols, strategy {}, database {}\n\
         dashboard: http://{}/   WebSocket: ws://{}/\n\
         clock: {}, speed {}. Stop with Ctrl-C.",
        env!("CARGO_PKG_VERSION"),
        match cfg.broker {
            BrokerKind::Sim => "sim",
            BrokerKind::Ibkr => "ibkr",
        },
        cfg.symbols.len(),
        cfg.strategy.name(),
        cfg.db.display(),
        web_handle.dash,
        web_handle.ws,
        match cfg.clock() {
            ClockKind::Sim => "simulated",
            ClockKind::Real => "real",
        },
        cfg.sim.speed,
    );
    drop(err);
    if token_created {
        logging::print_once_to_terminal(&format!(
            "control token (printed once; stored beside the database with mode 0600): {token}"
        ));
    }

    // Signals: SIGINT and SIGTERM both drain and stop.
    let sig_tx = tx.clone();
    rt.spawn(async move {
        #[cfg(unix)]
        {
            let (mut term, mut int) = match signals {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install signal handlers");
                    return;
                }
            };
            let reason = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(
                signal = reason,
                "stopping: no new orders, draining, flushing"
            );
            let _ = sig_tx.send(Control::Shutdown {
                reason: format!("signal {reason}"),
            });
        }
    });

    // The kill switch: another process writes the state; we notice within a quarter second.
    let ks_tx = tx.clone();
    let db = cfg.db.clone();
    rt.spawn(async move {
        let Ok(reader) = Store::open_read_only(&db) else {
            return;
        };
        let mut last = reader.trading_state_version().ok();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let v = reader.trading_state_version().ok();
            if v != last {
                last = v;
                if let Ok(state) = reader.trading_state() {
                    if ks_tx.send(Control::SetState(state)).is_err() {
                        return;
                    }
                }
            }
        }
    });

    let now = Ts::from_utc(chrono::Utc::now());
    let clock = cfg.clock();
    let (speed, sim0) = match clock {
        ClockKind::Real => (SimSpeed::Factor(1.0), now),
        ClockKind::Sim => (cfg.sim.speed, Ts(i64::MIN)),
    };
    let writer_for_trader = writer.clone();
    let cfg_for_trader = cfg.clone();
    let rt_handle = rt.handle().clone();
    let handle = std::thread::Builder::new()
        .name("trader".into())
        .spawn(move || {
            if cfg_for_trader.broker == BrokerKind::Ibkr {
                return robo_trader::runner_ibkr::trade(
                    TraderParts {
                        cfg: cfg_for_trader,
                        store,
                        writer: writer_for_trader,
                        bus: Some(bus),
                    },
                    rx,
                    rt_handle,
                );
            }
            let mut waiter = ChannelWaiter {
                pacer: Pacer::new(speed, sim0),
                rx,
                max_sleep: Duration::from_secs(3600),
                closed_pause: match clock {
                    ClockKind::Sim => Some(Duration::from_secs(2)),
                    ClockKind::Real => None,
                },
            };
            runner::trade(
                TraderParts {
                    cfg: cfg_for_trader,
                    store,
                    writer: writer_for_trader,
                    bus: Some(bus),
                },
                &mut waiter,
            )
        });
    let handle = match handle {
        Ok(h) => h,
        Err(e) => {
            let reason = format!("error: cannot start the trading thread: {e}");
            let _ = end_run(&writer, run_id, reason);
            return Err(e).context("starting the trading thread");
        }
    };
    drop(tx);
    let outcome = handle
        .join()
        .map_err(|_| anyhow::anyhow!("the trading thread panicked"));

    let exit_reason = match &outcome {
        Ok(Ok(o)) => o.exit_reason.clone(),
        Ok(Err(e)) => format!("error: {e:#}"),
        Err(e) => format!("error: {e}"),
    };
    end_run(&writer, run_id, exit_reason.clone())?;
    rt.shutdown_timeout(Duration::from_millis(200));
    drop(lock);
    tracing::info!(reason = %exit_reason, "robo-trader stopped");
    match outcome {
        Ok(Ok(_)) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(e),
    }
}

/// Records the run's end through the writer, then flushes and stops it.
fn end_run(
    writer: &robo_trader::store::StoreWriter,
    run_id: i64,
    exit_reason: String,
) -> anyhow::Result<()> {
    writer.send(WriteOp::RunEnded {
        run_id,
        ended: Ts::from_utc(chrono::Utc::now()),
        exit_reason,
    });
    writer
        .shutdown(Duration::from_secs(3))
        .context("flushing the database")
}

/// A short, stable fingerprint of the effective config, recorded per run.
fn config_fingerprint(cfg: &Config) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    config::redacted_toml(cfg).hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn error_text_names_each_cause_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        // A message that quotes its source: the source is not repeated.
        let quoted = anyhow::Error::new(robo_trader::lock::LockError::Io {
            path: "/x/r.db.lock".into(),
            source: io(),
        });
        assert_eq!(
            error_text(&quoted),
            "cannot use the lock file /x/r.db.lock: no such file"
        );
        // Context that does not quote it: every cause, in order.
        let wrapped = anyhow::Error::new(io()).context("opening /x/r.db");
        assert_eq!(error_text(&wrapped), "opening /x/r.db: no such file");
    }
}
