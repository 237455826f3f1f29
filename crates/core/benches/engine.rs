//! Engine throughput: the SMA crossover with risk gate, stops, order manager, paper broker and
//! ledger, through the same `PaperSession` that `run` and `backtest` use.
//!
//! Run with `cargo bench -p robo-core --bench engine`. Criterion reports elements/s = bars/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use robo_core::engine::Engine;
use robo_core::paper::{PaperBroker, PaperConfig};
use robo_core::session::{NoHooks, PaperSession};
use robo_core::types::Bar;

#[path = "support/workload.rs"]
mod workload;
use workload::{bars, bench_config};

fn run(bars: &[Bar], n_symbols: usize, decisions: bool) -> u64 {
    let engine = Engine::new(bench_config(decisions), n_symbols);
    let broker = PaperBroker::new(PaperConfig::default(), n_symbols);
    let mut s = PaperSession::new(engine, broker);
    for b in bars {
        s.on_bar(b, &mut NoHooks);
    }
    s.engine.bars_seen()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    let one = bars(1, 1_000_000);
    let many = bars(22, 50_000);
    for decisions in [false, true] {
        let tag = if decisions {
            "decisions_on"
        } else {
            "decisions_off"
        };
        g.throughput(Throughput::Elements(one.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("sma_1_symbol_1M_bars", tag),
            &one,
            |b, bars| b.iter(|| run(bars, 1, decisions)),
        );
        g.throughput(Throughput::Elements(many.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("sma_22_symbols_1.1M_bars", tag),
            &many,
            |b, bars| b.iter(|| run(bars, 22, decisions)),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
