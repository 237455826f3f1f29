//! What the web side learns from the bus rather than the database: the last bar and signal
//! per symbol and the sim clock, plus the Prometheus metrics (one recorder per server, so
//! several servers in one test process do not share counters).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use robo_core::events::{Record, Update};
use robo_core::orders::OrderState;
use robo_core::types::{Bar, Price, Ts};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, AppState};
use crate::runner::BusEvent;
use crate::store::Store;

/// The last bar of one symbol, and the close before it (for the watchlist's change).
#[derive(Debug, Clone, Copy)]
pub struct BarSeen {
    pub bar: Bar,
    pub prev_close: Option<Price>,
}

#[derive(Default)]
pub struct LiveState {
    /// The sim (or real) clock from the last `Clock` event.
    pub clock: Option<Ts>,
    pub bars: BTreeMap<String, BarSeen>,
    /// The last non-hold signal per symbol, as sent on the stream.
    pub signals: BTreeMap<String, Value>,
    /// Orders seen on the bus and not acknowledged yet (for the ack latency).
    pending_acks: HashMap<u64, Instant>,
    /// The IB connection generation of the last heartbeat (a higher one = reconnected).
    ib_generation: Option<u64>,
}

#[derive(Default)]
pub struct Live(Mutex<LiveState>);

impl Live {
    pub fn lock(&self) -> MutexGuard<'_, LiveState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// The clock to show: the bus's, else the wall clock.
    pub fn now(&self) -> (Ts, &'static str) {
        match self.lock().clock {
            Some(t) => (t, "bus"),
            None => (Ts::from_utc(chrono::Utc::now()), "wall"),
        }
    }
}

/// The latency histograms' buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

pub struct Metrics {
    recorder: PrometheusRecorder,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("latency_seconds".into()), &LATENCY_BUCKETS)
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        Metrics { recorder }
    }

    /// Runs metric macros against this server's recorder.
    pub fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        metrics::with_local_recorder(&self.recorder, f)
    }

    pub fn render(&self) -> String {
        let handle = self.recorder.handle();
        handle.run_upkeep();
        handle.render()
    }
}

/// Follows the bus for as long as the server runs. A lag only loses metric samples; the task
/// carries on.
pub async fn track(shared: AppState, mut rx: tokio::sync::broadcast::Receiver<Arc<BusEvent>>) {
    loop {
        match rx.recv().await {
            Ok(ev) => observe(&shared, &ev),
            Err(RecvError::Lagged(n)) => {
                shared
                    .metrics
                    .with(|| metrics::counter!("robo_bus_lagged_events_total").increment(n));
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn observe(shared: &AppState, ev: &BusEvent) {
    let m = &shared.metrics;
    match ev {
        BusEvent::Clock { now } => shared.live.lock().clock = Some(*now),
        BusEvent::Heartbeat {
            latency,
            generation,
        } => observe_heartbeat(&shared.live, m, *latency, *generation),
        BusEvent::Bar { symbol, bar, .. } => {
            {
                let mut live = shared.live.lock();
                let prev_close = live.bars.get(symbol).map(|b| b.bar.close);
                live.bars.insert(
                    symbol.clone(),
                    BarSeen {
                        bar: *bar,
                        prev_close,
                    },
                );
                if live.clock.is_none_or(|c| c < bar.ts) {
                    live.clock = Some(bar.ts);
                }
            }
            m.with(|| {
                metrics::counter!("robo_bars_received_total", "symbol" => symbol.clone())
                    .increment(1)
            });
        }
        BusEvent::Update { symbol, update } => {
            if let Update::Signal { ts, signal, .. } = update {
                shared.live.lock().signals.insert(
                    symbol.clone(),
                    json!({
                        "ts": ts_text(*ts),
                        "direction": signal.direction.as_str(),
                        "strength": signal.strength,
                        "reason": signal.reason.to_string(),
                    }),
                );
            }
        }
        BusEvent::Record { symbol, record } => match record {
            Record::OrderStatus {
                order_id, state, ..
            } => {
                let outcome = state.as_str();
                m.with(|| {
                    metrics::counter!("robo_orders_total", "outcome" => outcome).increment(1)
                });
                let mut live = shared.live.lock();
                match state {
                    OrderState::New => {
                        live.pending_acks.insert(order_id.0, Instant::now());
                    }
                    _ => {
                        if let Some(at) = live.pending_acks.remove(&order_id.0) {
                            let secs = at.elapsed().as_secs_f64();
                            m.with(|| {
                                metrics::histogram!("robo_order_ack_latency_seconds").record(secs)
                            });
                        }
                    }
                }
                // Bounded: an order that never gets acknowledged must not leak forever.
                if live.pending_acks.len() > 10_000 {
                    live.pending_acks.clear();
                }
            }
            Record::Fill(f) => {
                let side = f.side.as_str();
                m.with(|| {
                    metrics::counter!("robo_fills_total", "symbol" => symbol.clone(), "side" => side)
                        .increment(1)
                });
            }
            Record::Risk(r) => {
                let check = r.check.as_str();
                m.with(|| {
                    metrics::counter!("robo_risk_refusals_total", "check" => check).increment(1)
                });
            }
            _ => {}
        },
    }
}

/// The heartbeat round trip into `robo_heartbeat_latency_seconds`; each new connection
/// generation after the first one seen counts in `robo_ib_reconnects_total`.
fn observe_heartbeat(live: &Live, m: &Metrics, latency: Duration, generation: u64) {
    let reconnects = {
        let mut l = live.lock();
        let new = match l.ib_generation {
            Some(g) if generation > g => generation - g,
            _ => 0,
        };
        if l.ib_generation.is_none_or(|g| generation > g) {
            l.ib_generation = Some(generation);
        }
        new
    };
    m.with(|| {
        metrics::histogram!("robo_heartbeat_latency_seconds").record(latency.as_secs_f64());
        // Registered at zero so the series exists before the first reconnect.
        metrics::counter!("robo_ib_reconnects_total").increment(reconnects);
    });
}

pub fn ts_text(t: Ts) -> String {
    t.to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `GET /metrics`: gauges read from the database at scrape time, then the whole registry.
pub async fn metrics_text(State(shared): State<AppState>) -> Result<Response, ApiError> {
    let db = shared.ctx.db.clone();
    let mode = shared.ctx.mode.clone();
    let ledger = tokio::task::spawn_blocking(move || scrape_db(&db, &mode))
        .await
        .map_err(|e| ApiError::internal(format!("metrics task failed: {e}")))??;
    let m = &shared.metrics;
    let (now, _) = shared.live.now();
    let ages: Vec<(String, f64)> = shared
        .live
        .lock()
        .bars
        .iter()
        .map(|(s, b)| (s.clone(), (now.0 - b.bar.ts.0) as f64 / 1e9))
        .collect();
    m.with(|| {
        for (symbol, age) in ages {
            metrics::gauge!("robo_data_age_seconds", "symbol" => symbol).set(age.max(0.0));
        }
        for state in [
            "disconnected",
            "connecting",
            "syncing",
            "ready",
            "degraded",
            "restart_window",
        ] {
            let v = if state == ledger.connection_state {
                1.0
            } else {
                0.0
            };
            metrics::gauge!("robo_connection_state", "state" => state).set(v);
        }
        metrics::gauge!("robo_connection_reconnects").set(ledger.reconnects as f64);
        for state in ["active", "reduce_only", "halted"] {
            let v = if state == ledger.trading_state {
                1.0
            } else {
                0.0
            };
            metrics::gauge!("robo_trading_state", "state" => state).set(v);
        }
        if let Some(e) = ledger.equity {
            metrics::gauge!("robo_equity_dollars").set(e);
        }
        if let Some(p) = ledger.day_pnl {
            metrics::gauge!("robo_day_pnl_dollars").set(p);
        }
        metrics::gauge!("robo_fills_in_ledger").set(ledger.fills as f64);
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
        .into_response())
}

struct Scrape {
    connection_state: String,
    reconnects: i64,
    trading_state: String,
    equity: Option<f64>,
    day_pnl: Option<f64>,
    fills: i64,
}

fn scrape_db(db: &std::path::Path, mode: &str) -> Result<Scrape, ApiError> {
    let store = Store::open_read_only(db)?;
    let status = store.status_json()?;
    let conn = super::api::raw_conn(db)?;
    let (connection_state, _, _) = super::api::connection_state(&conn, mode, None)?;
    // A reconnect is every `ready` after the first.
    let readies: i64 = conn.query_row(
        "SELECT COUNT(*) FROM connection_events WHERE state = 'ready'",
        [],
        |r| r.get(0),
    )?;
    let perf = super::api::performance_json(&store, &conn)?;
    let num = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    Ok(Scrape {
        connection_state,
        reconnects: (readies - 1).max(0),
        trading_state: status["trading_state"].as_str().unwrap_or("").to_string(),
        equity: num(&status["equity"]),
        day_pnl: num(&perf["day_pnl"]),
        fills: status["fills"].as_i64().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, prefix: &str) -> Option<String> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }

    #[test]
    fn heartbeats_fill_the_histogram_and_count_reconnects() {
        let live = Live::default();
        let m = Metrics::new();
        observe_heartbeat(&live, &m, Duration::from_millis(3), 1);
        observe_heartbeat(&live, &m, Duration::from_millis(200), 1);
        // Connection 3 after 1: two reconnects (the second one's heartbeats were missed).
        observe_heartbeat(&live, &m, Duration::from_millis(40), 3);
        // A late sample of an older generation is not a reconnect.
        observe_heartbeat(&live, &m, Duration::from_millis(40), 2);
        let text = m.render();
        let h = "robo_heartbeat_latency_seconds";
        assert_eq!(
            line_value(&text, &format!("{h}_count")).as_deref(),
            Some("4")
        );
        // 3 ms is above the 2.5 ms bucket, below 5 ms; 40 ms twice below 50 ms; 200 ms below 250.
        assert_eq!(
            line_value(&text, &format!("{h}_bucket{{le=\"0.0025\"}}")).as_deref(),
            Some("0")
        );
        assert_eq!(
            line_value(&text, &format!("{h}_bucket{{le=\"0.005\"}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            line_value(&text, &format!("{h}_bucket{{le=\"0.05\"}}")).as_deref(),
            Some("3")
        );
        assert_eq!(
            line_value(&text, &format!("{h}_bucket{{le=\"0.25\"}}")).as_deref(),
            Some("4")
        );
        assert_eq!(
            line_value(&text, "robo_ib_reconnects_total").as_deref(),
            Some("2")
        );
    }
}
