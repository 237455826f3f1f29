//! `robo-trader doctor`: a read-only diagnosis of the IB Gateway over one connection with its
//! own client id (default: the trader's + 100), closed cleanly at the end. Each check has a
//! verdict code and the next step; the whole run is bounded at 15 s whatever the gateway does.
//! It never places an order, so Read-Only API mode is reported as unknown.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use crate::broker::ibkr::{self, ConnectParams};
use crate::broker::{ConnectError, OUR_MAX_SERVER_VERSION, OUR_MIN_SERVER_VERSION};

/// `robo-trader doctor [--json]`
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct DoctorArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// IB Gateway host [default: 127.0.0.1].
    #[arg(long, env = "IB_HOST", value_name = "HOST")]
    pub ib_host: Option<String>,
    /// IB Gateway API port [default: 4002].
    #[arg(
        long,
        env = "IB_PORT",
        value_name = "PORT",
        allow_negative_numbers = true
    )]
    pub ib_port: Option<i64>,
    /// API client id for the diagnosis [default: the trader's id + 100].
    #[arg(
        long,
        env = "IB_CLIENT_ID",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub client_id: Option<i64>,
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    NotRunning,
    Timeout,
    ConnectionClosed,
    ServerVersionUnsupported,
    ClientIdInUse,
    ReadOnly,
    NoAnswer,
    FarmBroken,
    NoMarketData,
    ClockSkew,
    /// Informational (e.g. a live account, read-only state unknown): not a failure.
    Note,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::NotRunning => "not_running",
            Verdict::Timeout => "timeout",
            Verdict::ConnectionClosed => "connection_closed",
            Verdict::ServerVersionUnsupported => "server_version_unsupported",
            Verdict::ClientIdInUse => "client_id_in_use",
            Verdict::ReadOnly => "read_only",
            Verdict::NoAnswer => "no_answer",
            Verdict::FarmBroken => "farm_broken",
            Verdict::NoMarketData => "no_market_data",
            Verdict::ClockSkew => "clock_skew",
            Verdict::Note => "note",
        }
    }
    pub fn is_failure(self) -> bool {
        !matches!(self, Verdict::Ok | Verdict::Note)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    pub code: Verdict,
    pub detail: String,
    pub next_step: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub ok: bool,
    pub server_version: Option<i32>,
    pub accounts: Vec<String>,
}

/// Where and how to diagnose.
#[derive(Debug, Clone)]
pub struct DoctorTarget {
    pub host: String,
    pub port: u16,
    pub client_id: i32,
    pub symbols: Vec<String>,
    /// The whole run's bound.
    pub deadline: Duration,
}

fn check(name: &str, code: Verdict, detail: impl Into<String>, next: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        code,
        detail: detail.into(),
        next_step: next.into(),
    }
}

/// Runs every check against `t`. Finishes within `t.deadline` (plus the socket close).
pub async fn diagnose(t: &DoctorTarget) -> Report {
    let start = Instant::now();
    let deadline = start + t.deadline;
    let addr = format!("{}:{}", t.host, t.port);
    let mut checks = Vec::new();
    let params = ConnectParams {
        addr: addr.clone(),
        client_id: t.client_id,
        bound: t.deadline.mul_f64(0.55),
        messages_per_second: 45,
        request_timeout: Duration::from_secs(3),
    };
    let start_hint = format!(
        "start IB Gateway (or TWS), log in, and enable the API on port {} (Configure > Settings > API > Settings); or point --ib-host/--ib-port at it",
        t.port
    );
    let (conn, mut notices) = match ibkr::connect(&params).await {
        Ok(c) => c,
        Err(e) => {
            let (code, next) = match &e {
                ConnectError::Refused { .. } => (Verdict::NotRunning, start_hint.clone()),
                ConnectError::Timeout { .. } => (
                    Verdict::Timeout,
                    "the port accepts connections but the API never answers: restart IB Gateway (a wedged gateway needs a restart), and check it is logged in".to_string(),
                ),
                ConnectError::Closed { .. } => (
                    Verdict::ConnectionClosed,
                    "the gateway closed the socket: add this host to 'Trusted IPs' or tick 'Allow connections from localhost only', and check the API is enabled".to_string(),
                ),
                ConnectError::ServerVersion { .. } => (
                    Verdict::ServerVersionUnsupported,
                    format!("upgrade IB Gateway to a build that speaks server version {OUR_MIN_SERVER_VERSION}..{OUR_MAX_SERVER_VERSION} (10.4x or later)"),
                ),
                ConnectError::ClientIdInUse { .. } => (
                    Verdict::ClientIdInUse,
                    "another program holds this client id: pass --client-id N with a free id, or close the other connection".to_string(),
                ),
                ConnectError::Other(_) => (Verdict::ConnectionClosed, start_hint.clone()),
            };
            checks.push(check("gateway", code, format!("{addr}: {e}"), next));
            let server_version = match e {
                ConnectError::ServerVersion { theirs } => Some(theirs),
                _ => None,
            };
            return Report {
                ok: false,
                checks,
                server_version,
                accounts: Vec::new(),
            };
        }
    };
    let version = conn.server_version();
    let accounts = conn.accounts();
    checks.push(check(
        "gateway",
        Verdict::Ok,
        format!(
            "{addr}: handshake done as client {} in {} ms",
            t.client_id,
            start.elapsed().as_millis()
        ),
        "",
    ));
    checks.push(check("server_version", Verdict::Ok, format!("server version {version} (we speak {OUR_MIN_SERVER_VERSION}..{OUR_MAX_SERVER_VERSION})"), ""));
    if accounts.is_empty() {
        checks.push(check(
            "accounts",
            Verdict::NoAnswer,
            "the gateway listed no managed accounts",
            "log in to IB Gateway with a trading account",
        ));
    } else {
        checks.push(check("accounts", Verdict::Ok, accounts.join(","), ""));
    }
    let live_port = matches!(t.port, 4001 | 7496);
    let live_account = accounts.iter().any(|a| !a.starts_with("DU"));
    if live_port || live_account {
        checks.push(check(
            "mode",
            Verdict::Note,
            format!("LIVE (port {}, accounts {})", t.port, accounts.join(",")),
            "this is a live-money gateway: use the paper gateway (port 4002, a DU account) unless you mean it",
        ));
    } else {
        checks.push(check("mode", Verdict::Ok, "paper", ""));
    }
    checks.push(check(
        "read_only",
        Verdict::Note,
        "unknown: doctor places no orders, and the gateway only reveals Read-Only API (error 321) on an order",
        "to trade through IB, untick 'Read-Only API' in the gateway's API settings",
    ));

    // Farm notices: the handshake burst is already queued on the notice stream.
    let mut broken = std::collections::BTreeSet::new();
    let mut seen = Vec::new();
    let farm_until = (Instant::now() + Duration::from_millis(500)).min(deadline);
    while let Ok(Some(n)) = tokio::time::timeout_at(farm_until, notices.next()).await {
        match n.code {
            2103 | 2105 | 2157 => {
                broken.insert(n.code);
            }
            2104 => {
                broken.remove(&2103);
            }
            2106 => {
                broken.remove(&2105);
            }
            2158 => {
                broken.remove(&2157);
            }
            _ => {}
        }
        if (2100..2200).contains(&n.code) {
            seen.push(n.code.to_string());
        }
    }
    if broken.is_empty() {
        checks.push(check(
            "farms",
            Verdict::Ok,
            format!(
                "farm notices: {}",
                if seen.is_empty() {
                    "none".into()
                } else {
                    seen.join(",")
                }
            ),
            "",
        ));
    } else {
        checks.push(check(
            "farms",
            Verdict::FarmBroken,
            format!("broken: {}", broken.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")),
            "IB's data farms are down or the gateway lost its link: wait, or check IB's system status page",
        ));
    }

    // Clock skew.
    let remaining = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(remaining.min(Duration::from_secs(3)), conn.server_time()).await {
        Ok(Ok(server)) => {
            let skew = chrono::Utc::now().timestamp() - server;
            if skew.abs() > 2 {
                checks.push(check(
                    "clock_skew",
                    Verdict::ClockSkew,
                    format!("local clock is {skew} s off the gateway's"),
                    "sync this machine's clock (chrony/NTP)",
                ));
            } else {
                checks.push(check("clock_skew", Verdict::Ok, format!("{skew} s"), ""));
            }
        }
        Ok(Err(e)) => checks.push(check(
            "clock_skew",
            Verdict::NoAnswer,
            format!("server_time failed: {e}"),
            "restart IB Gateway",
        )),
        Err(_) => checks.push(check(
            "clock_skew",
            Verdict::NoAnswer,
            "server_time got no answer",
            "the gateway accepts requests but does not answer: restart it",
        )),
    }

    // Market data permission: one historical bar per symbol, bounded.
    for sym in &t.symbols {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let name = format!("market_data:{sym}");
        if remaining < Duration::from_millis(200) {
            checks.push(check(
                &name,
                Verdict::NoAnswer,
                "not checked: doctor's 15 s budget ran out",
                "run doctor again, or check this symbol alone",
            ));
            continue;
        }
        match ibkr::probe_history(&conn, sym, remaining.min(Duration::from_secs(3))).await {
            Ok(n) if n > 0 => checks.push(check(&name, Verdict::Ok, format!("{n} bar(s)"), "")),
            Ok(_) => checks.push(check(
                &name,
                Verdict::NoMarketData,
                "no bars returned",
                "check the market data subscription for this symbol in Account Management",
            )),
            Err(crate::broker::BrokerError::Timeout { .. }) => checks.push(check(
                &name,
                Verdict::NoAnswer,
                "no historical answer in time",
                "the historical data farm may be down; try again later",
            )),
            Err(e) => checks.push(check(
                &name,
                Verdict::NoMarketData,
                e.to_string(),
                "check the market data subscription and the symbol",
            )),
        }
    }

    // Real-time permission, all symbols at once: `run` falls back to delayed data (or, with
    // `market_data_fallback = "untradeable"`, skips the symbol), so this is a note.
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining >= Duration::from_millis(300) {
        let wait = remaining
            .saturating_sub(Duration::from_millis(200))
            .min(Duration::from_millis(1500));
        for (sym, code, message) in ibkr::probe_realtime(&conn, &t.symbols, wait).await {
            checks.push(check(
                &format!("realtime:{sym}"),
                Verdict::Note,
                format!("no real-time data permission (error {code}: {message})"),
                "run trades it on delayed data (flagged `delayed`), or not at all with \
                 --market-data-fallback untradeable; subscribe to its market data in Account \
                 Management for live data",
            ));
        }
    }

    conn.disconnect().await;
    let ok = checks.iter().all(|c| !c.code.is_failure());
    Report {
        checks,
        ok,
        server_version: Some(version),
        accounts,
    }
}

/// The text form: one line per check, same words as the JSON.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    if let Some(v) = r.server_version {
        out.push_str(&format!("server version: {v}\n"));
    }
    if !r.accounts.is_empty() {
        out.push_str(&format!("accounts: {}\n", r.accounts.join(",")));
    }
    for c in &r.checks {
        out.push_str(&format!(
            "{:<22} {:<27} {}\n",
            c.name,
            c.code.as_str(),
            c.detail
        ));
        if !c.next_step.is_empty() {
            out.push_str(&format!("{:<22} next: {}\n", "", c.next_step));
        }
    }
    out.push_str(if r.ok { "ok: true\n" } else { "ok: false\n" });
    out
}

/// Resolves the target from config and flags. The flags go through the same config layering
/// and validation as `run`'s (`--ib-host`, `--ib-port`, `--client-id`), so both commands accept
/// and refuse exactly the same values.
pub fn target(config: Option<&Path>, args: &DoctorArgs) -> anyhow::Result<DoctorTarget> {
    let overrides = crate::cli::RunArgs {
        ib_host: args.ib_host.clone(),
        ib_port: args.ib_port,
        client_id: args.client_id,
        ..crate::cli::RunArgs::default()
    };
    let cfg = crate::config::load(config, &overrides)?;
    // Without an explicit id, stay clear of the trader's own so both can be connected at once.
    let client_id = match args.client_id {
        Some(_) => cfg.ib.client_id,
        None => cfg.ib.client_id.saturating_add(100),
    };
    Ok(DoctorTarget {
        host: cfg.ib.host,
        port: cfg.ib.port,
        client_id,
        symbols: cfg.symbols,
        deadline: Duration::from_secs(14),
    })
}

pub fn cmd_doctor(config: Option<&Path>, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let t = target(config, args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        // A last-resort bound on top of the per-step ones.
        tokio::time::timeout(t.deadline + Duration::from_millis(900), diagnose(&t)).await
    });
    rt.shutdown_timeout(Duration::from_millis(100));
    let report = report.unwrap_or_else(|_| Report {
        checks: vec![check(
            "gateway",
            Verdict::Timeout,
            "doctor ran out of its 15 s budget",
            "restart IB Gateway",
        )],
        ok: false,
        server_version: None,
        accounts: Vec::new(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&report));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
