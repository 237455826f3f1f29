//! Engine throughput: the SMA crossover with risk gate, stops, order manager, paper broker and
//! ledger, through the same `PaperSession` that `run` and `backtest` use.
//!
//! Run with `cargo bench -p robo-core --bench engine`. Criterion reports elements/s = bars/s;
//! at the end the bench prints each benchmark that ran as ns per bar, from criterion's own
//! estimates (the time per iteration it reports, with its 95% interval, divided by the bars
//! of an iteration), with the host's effective clock just before and after each benchmark
//! (see `support/clock.rs`: this host's speed swings up to 2x between seconds and minutes,
//! and bars/s with it).

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use robo_core::engine::Engine;
use robo_core::paper::{PaperBroker, PaperConfig};
use robo_core::session::{NoHooks, PaperSession};
use robo_core::types::Bar;

#[path = "support/clock.rs"]
mod clock;
#[path = "support/workload.rs"]
mod workload;
use workload::{bars, bench_config};

/// A benchmark's criterion id, and the effective clock (G cycles/s) before and after it.
type Probed = (String, Option<f64>, Option<f64>);
static CLOCKS: std::sync::Mutex<Vec<Probed>> = std::sync::Mutex::new(Vec::new());

fn run(bars: &[Bar], n_symbols: usize, decisions: bool) -> u64 {
    let engine = Engine::new(bench_config(decisions), n_symbols);
    let broker = PaperBroker::new(PaperConfig::default(), n_symbols);
    let mut s = PaperSession::new(engine, broker);
    for b in bars {
        s.on_bar(b, &mut NoHooks);
    }
    s.engine.bars_seen()
}

/// Each benchmark's criterion id, symbols, and bars per symbol: one iteration runs them all.
const WORKLOADS: [(&str, usize, usize); 2] = [
    ("sma_1_symbol_1M_bars", 1, 1_000_000),
    ("sma_22_symbols_1.1M_bars", 22, 50_000),
];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    let data: Vec<Vec<Bar>> = WORKLOADS
        .iter()
        .map(|&(_, symbols, per_symbol)| bars(symbols, per_symbol))
        .collect();
    for decisions in [false, true] {
        let tag = if decisions {
            "decisions_on"
        } else {
            "decisions_off"
        };
        for (&(name, symbols, _), bars) in WORKLOADS.iter().zip(&data) {
            g.throughput(Throughput::Elements(bars.len() as u64));
            let before = clock::effective_ghz();
            g.bench_with_input(BenchmarkId::new(name, tag), bars, |b, bars| {
                b.iter(|| run(bars, symbols, decisions))
            });
            let after = clock::effective_ghz();
            if let Ok(mut c) = CLOCKS.lock() {
                c.push((format!("{name}/{tag}"), before, after));
            }
        }
    }
    g.finish();
}

/// Where criterion keeps its estimates, found as criterion finds it: `$CRITERION_HOME`, else
/// `criterion` in `$CARGO_TARGET_DIR` or in the target directory `cargo metadata` names,
/// else `target/criterion`.
fn criterion_home() -> std::path::PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return h.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let out = std::process::Command::new(std::env::var_os("CARGO")?)
                .args(["metadata", "--format-version", "1", "--no-deps"])
                .output()
                .ok()?;
            let meta: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            Some(meta["target_directory"].as_str()?.into())
        });
    target.map_or_else(|| "target/criterion".into(), |t| t.join("criterion"))
}

/// Prints ns per bar for each benchmark this run measured (estimates written since `start`;
/// a filtered run skips the others rather than show stale figures).
fn ns_per_bar(start: std::time::SystemTime) {
    let home = criterion_home();
    let mut lines = Vec::new();
    for (name, symbols, per_symbol) in WORKLOADS {
        let n = symbols * per_symbol;
        for tag in ["decisions_off", "decisions_on"] {
            let path = home
                .join("engine")
                .join(name)
                .join(tag)
                .join("new/estimates.json");
            let fresh = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= start);
            let Some(est) = fresh
                .then(|| std::fs::read(&path).ok())
                .flatten()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            else {
                continue;
            };
            let ns = |v: &serde_json::Value| v.as_f64().map(|t| t / n as f64);
            // Criterion's own "typical" figure: the slope in linear sampling, else the mean.
            let typical = if est["slope"].is_object() {
                &est["slope"]
            } else {
                &est["mean"]
            };
            let ci = &typical["confidence_interval"];
            if let (Some(m), Some(lo), Some(hi)) = (
                ns(&typical["point_estimate"]),
                ns(&ci["lower_bound"]),
                ns(&ci["upper_bound"]),
            ) {
                let id = format!("{name}/{tag}");
                lines.push(format!(
                    "  {id:<40} {m:6.1} ns/bar  [{lo:.1} {hi:.1}]  {:5.1}M bars/s  {}",
                    1e3 / m,
                    clock_text(&id)
                ));
            }
        }
    }
    if !lines.is_empty() {
        println!(
            "\nns per bar (criterion's time per iteration over its bars, [95% interval]), and \
             the host's\neffective clock just before and after the benchmark (G cycles/s):"
        );
        println!("{}", lines.join("\n"));
    }
}

/// "clock 2.71-2.77 G/s" for one benchmark, from the probes around it.
fn clock_text(id: &str) -> String {
    let clocks = CLOCKS.lock().map(|c| c.clone()).unwrap_or_default();
    match clocks.iter().find(|(i, ..)| i == id) {
        Some((_, Some(a), Some(b))) => format!("clock {a:.2}-{b:.2} G/s"),
        _ => "clock not probed".into(),
    }
}

criterion_group!(benches, bench);

fn main() {
    let start = std::time::SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    ns_per_bar(start);
}
