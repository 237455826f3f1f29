//! The engine benchmark's workload, shared by `benches/engine.rs` and
//! `examples/profile_engine.rs`, so the profile measures exactly what the benchmark does.

use robo_core::engine::EngineConfig;
use robo_core::types::{Bar, SymbolId, Ts};
use rust_decimal::Decimal;

/// A deterministic random walk in cents, interleaved across symbols minute by minute.
pub fn bars(n_symbols: usize, per_symbol: usize) -> Vec<Bar> {
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

/// The product defaults as `backtest` runs them (no live updates to publish, see
/// `EngineConfig::publish`), except that the daily-loss and drawdown limits cannot latch: on
/// a random walk they would switch the engine to reduce-only early and leave most bars
/// untraded, which would flatter the figure. Every check still runs on every order.
/// `PUBLISH=1` in the environment turns the updates back on, to show what they cost.
pub fn bench_config(decisions: bool) -> EngineConfig {
    let mut cfg = EngineConfig {
        decisions,
        publish: std::env::var_os("PUBLISH").is_some(),
        ..EngineConfig::default()
    };
    cfg.risk.daily_loss_pct = Decimal::new(99, 2);
    cfg.risk.max_drawdown_pct = Decimal::new(99, 2);
    cfg
}
