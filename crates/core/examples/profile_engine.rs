//! The engine benchmark's workload as a plain binary, for `valgrind --tool=callgrind` and
//! `perf`: `cargo run --release -p robo-core --example profile_engine -- [symbols] [bars] [decisions]`.
//! Prints what the run did (orders, fills, refusals), so a speed-up that trades less is visible;
//! `DIGEST=1` adds a hash of every command and decision record, so one that changes any output
//! shows too. `NO_CASH=1` starts with no cash, so nothing trades: the per-bar floor on its own.

use robo_core::engine::Engine;
use robo_core::events::{Command, Record};
use robo_core::paper::{PaperBroker, PaperConfig};
use robo_core::session::{PaperSession, SessionHooks};
use robo_core::types::Bar;
use rust_decimal::Decimal;

#[path = "../benches/support/workload.rs"]
mod workload;
use workload::{bars, bench_config};

#[derive(Default)]
struct Count {
    placed: u64,
    fills: u64,
    refused: u64,
    other: u64,
    /// With `DIGEST=1`: a hash of every command's `Debug` text (values and their decimal
    /// scales), so an optimisation that changes any output, not just the counts, shows.
    digest: Option<u64>,
}

fn mix(h: &mut u64, text: &str) {
    for b in text.bytes() {
        *h = (*h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
}

impl SessionHooks for Count {
    fn after_place(&mut self, req: &robo_core::types::OrderRequest) {
        self.placed += 1;
        if let Some(h) = self.digest.as_mut() {
            mix(h, &format!("{req:?}"));
        }
    }
    fn decision(&mut self, d: &robo_core::decision::Decision) {
        if let Some(h) = self.digest.as_mut() {
            mix(h, &format!("{d:?}"));
        }
    }
    fn command(&mut self, cmd: &Command) {
        if let Some(h) = self.digest.as_mut() {
            mix(h, &format!("{cmd:?}"));
        }
        match cmd {
            Command::Persist(Record::Fill(_)) => self.fills += 1,
            Command::Persist(Record::Risk(_)) => self.refused += 1,
            _ => self.other += 1,
        }
    }
}

fn main() {
    sizes();
    let args: Vec<String> = std::env::args().collect();
    let n_symbols: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let n_bars: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let decisions = args.get(3).is_some_and(|s| s == "on");
    let data = bars(n_symbols, n_bars / n_symbols);
    let mut cfg = bench_config(decisions);
    if std::env::var("NO_CASH").is_ok() {
        cfg.starting_cash = Decimal::ZERO;
    }
    let engine = Engine::new(cfg, n_symbols);
    let broker = PaperBroker::new(PaperConfig::default(), n_symbols);
    let mut s = PaperSession::new(engine, broker);
    let mut hooks = Count {
        digest: std::env::var("DIGEST").ok().map(|_| 0xcbf2_9ce4_8422_2325),
        ..Count::default()
    };
    let t = std::time::Instant::now();
    run_loop(&mut s, &data, &mut hooks);
    let dt = t.elapsed().as_secs_f64();
    println!(
        "bars={} placed={} fills={} refused={} other_cmds={} equity={}{} {:.2}M bars/s",
        data.len(),
        hooks.placed,
        hooks.fills,
        hooks.refused,
        hooks.other,
        s.engine.ledger().equity(),
        hooks
            .digest
            .map_or(String::new(), |h| format!(" digest={h:016x}")),
        data.len() as f64 / dt / 1e6
    );
}

/// The measured loop, out of line so that callgrind can count it alone
/// (`--toggle-collect=*run_loop*`).
#[inline(never)]
fn run_loop(s: &mut PaperSession, data: &[Bar], hooks: &mut Count) {
    for b in data {
        s.on_bar(b, hooks);
    }
}

#[allow(dead_code)]
pub fn sizes() {
    use std::mem::size_of;
    eprintln!(
        "Command={} Event={} Bar={} Signal={} Decision={} Fill={} OrderRequest={} ManagedOrder={} Record={} Update={}",
        size_of::<Command>(),
        size_of::<robo_core::events::Event>(),
        size_of::<Bar>(),
        size_of::<robo_core::strategy::Signal>(),
        size_of::<robo_core::decision::Decision>(),
        size_of::<robo_core::types::Fill>(),
        size_of::<robo_core::types::OrderRequest>(),
        size_of::<robo_core::orders::ManagedOrder>(),
        size_of::<Record>(),
        size_of::<robo_core::events::Update>(),
    );
}
