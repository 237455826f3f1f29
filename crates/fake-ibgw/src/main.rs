//! `fake-ibgw`: run the fake IB Gateway on a port so robo-trader (or any TWS API 213+ client)
//! can connect to it, e.g. `fake-ibgw --port 4002 --bar-interval-ms 1000`.

use clap::Parser;
use fake_ibgw::world::{spec_for, WorldConfig};
use fake_ibgw::{ConnBehavior, FakeGateway, GatewayConfig};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    about = "A fake IB Gateway (TWS API server version 213+, protobuf) with scriptable faults"
)]
struct Args {
    /// TCP port on 127.0.0.1 (4002 = IB Gateway paper).
    #[arg(long, default_value_t = 4002)]
    port: u16,
    /// Comma-separated symbols to trade (known ones get real con ids).
    #[arg(long, value_delimiter = ',', default_value = "AAPL,MSFT,SPY,QQQ,NVDA")]
    symbols: Vec<String>,
    /// Real milliseconds between 5-second bars; below 5000 the market runs faster than real time.
    #[arg(long, default_value_t = 5000)]
    bar_interval_ms: u64,
    #[arg(long, default_value_t = 213)]
    server_version: i32,
    #[arg(long, default_value = "DU1234567")]
    account: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Per-connection behaviour, in order; the last repeats. One of: normal, close-immediately,
    /// accept-and-hang, handshake-then-hang, server-version=<v>, client-id-in-use,
    /// client-id-in-use=<id,id..>, read-only, refuse=<ms>. Runtime switches: pacing, rate-limit=<n>,
    /// no-realtime=<SYMBOL>[:<354|10089|10167>] (no live-data permission: delayed only),
    /// silent=<SYMBOL> (its realtime bars never come).
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// Drop every connection this often (ms), to exercise reconnects.
    #[arg(long)]
    drop_every_ms: Option<u64>,
    /// Log every request.
    #[arg(long)]
    verbose: bool,
}

enum Fault {
    Behavior(ConnBehavior),
    Pacing,
    RateLimit(u32),
    NoRealtime(String, i32),
    Silent(String),
}

fn parse_fault(text: &str) -> anyhow::Result<Fault> {
    let (name, value) = match text.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (text, None),
    };
    let need = |what: &str| anyhow::anyhow!("--fault {name} needs ={what}");
    Ok(match name {
        "normal" => Fault::Behavior(ConnBehavior::Normal),
        "close-immediately" => Fault::Behavior(ConnBehavior::CloseImmediately),
        "accept-and-hang" => Fault::Behavior(ConnBehavior::AcceptAndHang),
        "handshake-then-hang" => Fault::Behavior(ConnBehavior::HandshakeThenHang),
        "read-only" => Fault::Behavior(ConnBehavior::ReadOnly),
        "server-version" => Fault::Behavior(ConnBehavior::ServerVersion(
            value.ok_or_else(|| need("<version>"))?.parse()?,
        )),
        "client-id-in-use" => match value {
            None => Fault::Behavior(ConnBehavior::ClientIdInUse),
            Some(ids) => Fault::Behavior(ConnBehavior::ClientIdInUseFor(
                ids.split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?,
            )),
        },
        "refuse" => Fault::Behavior(ConnBehavior::RefuseFor(Duration::from_millis(
            value.ok_or_else(|| need("<ms>"))?.parse()?,
        ))),
        "pacing" => Fault::Pacing,
        "rate-limit" => Fault::RateLimit(value.ok_or_else(|| need("<msgs per second>"))?.parse()?),
        "no-realtime" => {
            let v = value.ok_or_else(|| need("<SYMBOL>[:<code>]"))?;
            let (sym, code) = match v.split_once(':') {
                Some((s, c)) => (s, c.trim().parse()?),
                None => (v, 354),
            };
            if ![354, 10089, 10167].contains(&code) {
                anyhow::bail!("--fault no-realtime: code {code} is not 354, 10089 or 10167");
            }
            Fault::NoRealtime(sym.trim().to_string(), code)
        }
        "silent" => Fault::Silent(value.ok_or_else(|| need("<SYMBOL>"))?.trim().to_string()),
        other => anyhow::bail!("unknown --fault {other:?} (see --help)"),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let level = if args.verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    tracing_subscriber::fmt().with_max_level(level).init();

    let mut behaviors = Vec::new();
    let (mut pacing, mut rate_limit) = (false, None);
    let (mut no_realtime, mut silent) = (Vec::new(), Vec::new());
    for f in &args.faults {
        match parse_fault(f)? {
            Fault::Behavior(b) => behaviors.push(b),
            Fault::Pacing => pacing = true,
            Fault::RateLimit(n) => rate_limit = Some(n),
            Fault::NoRealtime(s, code) => no_realtime.push((s, code)),
            Fault::Silent(s) => silent.push(s),
        }
    }
    let symbols = args
        .symbols
        .iter()
        .filter(|s| !s.trim().is_empty())
        .enumerate()
        .map(|(i, s)| spec_for(s.trim(), i))
        .collect();
    let config = GatewayConfig {
        port: args.port,
        server_version: args.server_version,
        world: WorldConfig {
            symbols,
            account: args.account,
            seed: args.seed,
            ..WorldConfig::default()
        },
        bar_interval: Duration::from_millis(args.bar_interval_ms.max(1)),
        behaviors,
        ..GatewayConfig::default()
    };
    let handle = FakeGateway::start(config).await?;
    handle.set_pacing(pacing);
    handle.set_rate_limit(rate_limit);
    for (s, code) in &no_realtime {
        handle.set_no_realtime(s, Some(*code));
    }
    for s in &silent {
        handle.set_silent(s, true);
    }
    tracing::info!(addr = %handle.addr(), "ready; Ctrl-C to stop");

    if let Some(ms) = args.drop_every_ms {
        let h = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(ms.max(1)));
            every.tick().await;
            loop {
                every.tick().await;
                h.drop_now();
            }
        });
    }
    tokio::signal::ctrl_c().await?;
    tracing::info!(
        connections = handle.connection_count(),
        requests = handle.requests().len(),
        "shutting down"
    );
    handle.shutdown().await;
    Ok(())
}
