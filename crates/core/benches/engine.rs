//! Engine throughput: the SMA crossover with risk gate, stops, order manager, paper broker and
//! ledger, through the same `PaperSession` that `run` and `backtest` use.
//!
//! Run with `cargo bench -p robo-core --bench engine`. Criterion reports elements/s = bars/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use robo_core::engine::{Engine, EngineConfig};
use robo_core::paper::{PaperBroker, PaperConfig};
use robo_core::session::{NoHooks, PaperSession};
use robo_core::types::{Bar, SymbolId, Ts};
use rust_decimal::Decimal;

/// A deterministic random walk in cents, interleaved across symbols minute by minute.
fn bars(n_symbols: usize, per_symbol: usize) -> Vec<Bar> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut px: Vec<i64> = (0..n_symbols).map(|i| 5_000 + 1_000 * i as i64).collect();
    let mut out = Vec::with_capacity(n_symbols * per_symbol);
    for k in 0..per_symbol {
        for (s, p) in px.iter_mut().enumerate() {
            let step = (next() % 21) as i64 - 10;
            let open = *p;
            *p = (*p + step).max(100);
            let close = *p;
            let hi = open.max(close) + (next() % 5) as i64;
            let lo = (open.min(close) - (next() % 5) as i64).max(1);
            out.push(Bar {
                symbol: SymbolId(s as u16),
                ts: Ts::from_secs(1_704_205_800 + 60 * k as i64),
                open: Decimal::new(open, 2),
                high: Decimal::new(hi, 2),
                low: Decimal::new(lo, 2),
                close: Decimal::new(close, 2),
                volume: 1_000 + next() % 10_000,
            });
        }
    }
    out
}

/// The product defaults, except that the daily-loss and drawdown limits cannot latch: on a
/// random walk they would switch the engine to reduce-only early and leave most bars
/// untraded, which would flatter the figure. Every check still runs on every order.
fn bench_config(decisions: bool) -> EngineConfig {
    let mut cfg = EngineConfig {
        decisions,
        ..EngineConfig::default()
    };
    cfg.risk.daily_loss_pct = rust_decimal::Decimal::new(99, 2);
    cfg.risk.max_drawdown_pct = rust_decimal::Decimal::new(99, 2);
    cfg
}

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
