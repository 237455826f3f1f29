//! Runs the engine benchmark's workload once, for profilers (`perf record`, callgrind).
use robo_core::engine::{Engine, EngineConfig};
use robo_core::paper::{PaperBroker, PaperConfig};
use robo_core::session::{NoHooks, PaperSession};
use robo_core::types::{Bar, SymbolId, Ts};
use rust_decimal::Decimal;

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

/// As in the criterion benchmark: product defaults with non-latching loss limits.
fn bench_config(decisions: bool) -> EngineConfig {
    let mut cfg = EngineConfig {
        decisions,
        ..EngineConfig::default()
    };
    cfg.risk.daily_loss_pct = rust_decimal::Decimal::new(99, 2);
    cfg.risk.max_drawdown_pct = rust_decimal::Decimal::new(99, 2);
    cfg
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let bars = bars(1, n);
    let t = std::time::Instant::now();
    let cfg = bench_config(false);
    let mut s = PaperSession::new(
        Engine::new(cfg, 1),
        PaperBroker::new(PaperConfig::default(), 1),
    );
    for b in &bars {
        s.on_bar(b, &mut NoHooks);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} bars in {:.3} s = {:.0} bars/s; orders {}; state {}",
        n,
        secs,
        n as f64 / secs,
        s.engine.orders().next_seq() - 1,
        s.engine.trading_state()
    );
}
