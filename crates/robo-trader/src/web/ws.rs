//! The WebSocket stream: a snapshot on connect, then typed deltas from the bus and the log,
//! and a heartbeat every second. Every message is `{"type": ..., "v": 1, ...}`.
//!
//! Each client has three parts: a forwarder (subscribes to the bus, turns events into JSON,
//! and `try_send`s them into the client's bounded queue), a writer (drains the queue onto the
//! socket) and a reader (discards whatever the client sends: clients cannot publish). A full
//! queue or a lagged bus subscription drops the client; nothing here can make the trading
//! thread wait.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use robo_core::events::{Record, Update};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::live::ts_text;
use super::{origin_allowed, ApiError, AppState};
use crate::runner::BusEvent;

/// Messages a client may have queued before it counts as too slow.
pub const CLIENT_QUEUE: usize = 1024;
/// How often a heartbeat goes out.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Protocol version in every message.
pub const VERSION: u32 = 1;
/// Fills in the snapshot.
const SNAPSHOT_FILLS: usize = 50;

/// One queued message, with the bar's arrival time for the latency histogram.
struct Out {
    text: Utf8Bytes,
    bar_at: Option<Instant>,
}

fn msg(kind: &str, mut body: Value) -> Value {
    if let Value::Object(m) = &mut body {
        m.insert("type".into(), json!(kind));
        m.insert("v".into(), json!(VERSION));
    }
    body
}

/// `GET /` on the WebSocket port and `GET /ws` on the dashboard port.
pub async fn upgrade(
    State(shared): State<AppState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if let Err(origin) = origin_allowed(&headers) {
        tracing::warn!(origin = %origin, "WebSocket refused: foreign Origin");
        return ApiError {
            status: StatusCode::FORBIDDEN,
            message: format!("Origin {origin:?} is not loopback"),
        }
        .into_response();
    }
    let Ok(ws) = ws else {
        return ApiError::bad_request("this endpoint speaks WebSocket only (Upgrade: websocket)")
            .into_response();
    };
    ws.on_upgrade(move |socket| serve(shared, socket))
}

/// The message for one bus event, if clients get one.
fn event_message(ev: &BusEvent) -> Option<Value> {
    Some(match ev {
        BusEvent::Clock { .. } | BusEvent::Heartbeat { .. } => return None,
        BusEvent::Bar { symbol, bar, .. } => msg(
            "market",
            json!({
                "symbol": symbol, "ts": ts_text(bar.ts),
                "open": bar.open.normalize().to_string(), "high": bar.high.normalize().to_string(),
                "low": bar.low.normalize().to_string(), "close": bar.close.normalize().to_string(),
                "volume": bar.volume,
            }),
        ),
        BusEvent::Update { symbol, update } => match update {
            Update::Signal { ts, signal, .. } => msg(
                "signal",
                json!({
                    "symbol": symbol, "ts": ts_text(*ts),
                    "direction": signal.direction.as_str(), "strength": signal.strength,
                    "reason": signal.reason.to_string(),
                }),
            ),
            Update::Position(p) => msg(
                "position",
                json!({
                    "symbol": symbol, "quantity": p.qty,
                    "avg_cost": p.avg_cost.normalize().to_string(),
                    "mark": p.mark.normalize().to_string(),
                    "market_value": p.market_value().normalize().to_string(),
                    "unrealized_pnl": p.unrealized().normalize().to_string(),
                }),
            ),
        },
        BusEvent::Record { symbol, record } => match record {
            Record::Decision(d) => {
                let mut body = serde_json::to_value(d).ok()?;
                body["symbol"] = json!(symbol);
                body["ts"] = json!(ts_text(d.ts));
                msg("decision", body)
            }
            Record::Risk(r) => msg(
                "risk",
                json!({
                    "event": "refusal", "symbol": symbol, "ts": ts_text(r.ts),
                    "check": r.check.as_str(),
                    "reason": serde_json::to_value(r.reason).unwrap_or(Value::Null),
                }),
            ),
            Record::State(s) => msg(
                "risk",
                json!({
                    "event": "trading_state", "ts": ts_text(s.ts),
                    "from": s.from.as_str(), "to": s.to.as_str(),
                    "cause": serde_json::to_value(s.cause).unwrap_or(Value::Null),
                }),
            ),
            Record::OrderStatus {
                order_id,
                state,
                filled_qty,
                reason,
                ts,
            } => msg(
                "order",
                json!({
                    "order_id": order_id.to_string(), "symbol": symbol, "state": state.as_str(),
                    "filled": filled_qty, "reason": reason, "ts": ts_text(*ts),
                }),
            ),
            Record::Fill(f) => msg(
                "fill",
                json!({
                    "exec_id": f.exec_id.0, "order_id": f.order_id.to_string(), "symbol": symbol,
                    "side": f.side.as_str(), "quantity": f.qty,
                    "price": f.price.normalize().to_string(),
                    "commission": f.commission.normalize().to_string(), "ts": ts_text(f.ts),
                }),
            ),
            Record::Equity {
                ts,
                cash,
                equity,
                realized,
                unrealized,
            } => msg(
                "performance",
                json!({
                    "ts": ts_text(*ts), "cash": cash.normalize().to_string(),
                    "equity": equity.normalize().to_string(),
                    "realized_pnl": realized.normalize().to_string(),
                    "unrealized_pnl": unrealized.normalize().to_string(),
                }),
            ),
        },
    })
}

/// The snapshot: status, positions, recent fills and the last bars; then the connection.
async fn snapshot(shared: &AppState) -> Vec<Value> {
    let status = match super::api::status_value(shared).await {
        Ok(s) => s,
        Err(e) => return vec![msg("snapshot", json!({ "error": e.message }))],
    };
    let db = shared.ctx.db.clone();
    let fills = tokio::task::spawn_blocking(move || {
        crate::store::Store::open_read_only(&db).and_then(|s| s.fills())
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    let skip = fills.len().saturating_sub(SNAPSHOT_FILLS);
    let fills: Vec<Value> = fills.iter().skip(skip).map(super::api::fill_json).collect();
    let bars: Vec<Value> = shared
        .live
        .lock()
        .bars
        .iter()
        .map(|(s, b)| {
            json!({
                "symbol": s, "ts": ts_text(b.bar.ts),
                "open": b.bar.open.normalize().to_string(), "high": b.bar.high.normalize().to_string(),
                "low": b.bar.low.normalize().to_string(), "close": b.bar.close.normalize().to_string(),
                "volume": b.bar.volume,
                "prev_close": b.prev_close.map(|p| p.normalize().to_string()),
            })
        })
        .collect();
    let connection = msg("connection", status["connection"].clone());
    vec![
        msg(
            "snapshot",
            json!({
                "positions": status["positions"].clone(),
                "fills": fills,
                "bars": bars,
                "status": status,
            }),
        ),
        connection,
    ]
}

async fn serve(shared: AppState, socket: WebSocket) {
    // Subscribe first, so nothing published while the snapshot is read is missed.
    let mut bus = shared.ctx.bus.subscribe();
    let mut logs = crate::logging::subscribe_logs();
    let (tx, rx) = mpsc::channel::<Out>(CLIENT_QUEUE);
    let (sink, mut stream) = socket.split();
    let shared_w = shared.clone();
    let mut writer = tokio::spawn(write_loop(shared_w, sink, rx));
    // Whatever a client sends is read and dropped; a close or error ends the session.
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    });
    shared
        .metrics
        .with(|| metrics::gauge!("robo_websocket_clients").increment(1.0));
    let why = forward(&shared, &tx, &mut bus, &mut logs, &mut writer, &mut reader).await;
    writer.abort();
    reader.abort();
    shared.metrics.with(|| {
        metrics::gauge!("robo_websocket_clients").decrement(1.0);
        metrics::counter!("robo_websocket_disconnects_total", "reason" => why.as_str())
            .increment(1);
    });
    tracing::debug!(reason = why.as_str(), "WebSocket client gone");
}

/// Why a client's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// It closed the connection or the socket failed.
    Closed,
    /// Its queue filled up or it fell behind the bus: dropped.
    TooSlow,
    /// The server is shutting down.
    BusClosed,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Ended::Closed => "closed",
            Ended::TooSlow => "too_slow",
            Ended::BusClosed => "shutdown",
        }
    }
}

/// How long a client may stay backed up (queue over half full) before it counts as slow.
const CONGESTED_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// How often coalesced messages go out to a congested client.
const COALESCE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// `(type, symbol)` for the message kinds where only the latest per symbol matters.
fn coalesce_key(m: &Value) -> Option<(String, String)> {
    let kind = m.get("type")?.as_str()?;
    if !matches!(kind, "market" | "decision" | "signal") {
        return None;
    }
    Some((kind.to_string(), m.get("symbol")?.as_str()?.to_string()))
}

fn enqueue(tx: &mpsc::Sender<Out>, v: &Value, bar_at: Option<Instant>) -> Result<(), Ended> {
    let text = Utf8Bytes::from(v.to_string());
    tx.try_send(Out { text, bar_at }).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => Ended::TooSlow,
        mpsc::error::TrySendError::Closed(_) => Ended::Closed,
    })
}

async fn forward(
    shared: &AppState,
    tx: &mpsc::Sender<Out>,
    bus: &mut tokio::sync::broadcast::Receiver<Arc<BusEvent>>,
    logs: &mut tokio::sync::broadcast::Receiver<Arc<crate::logging::LogLine>>,
    writer: &mut tokio::task::JoinHandle<()>,
    reader: &mut tokio::task::JoinHandle<()>,
) -> Ended {
    for m in snapshot(shared).await {
        if let Err(e) = enqueue(tx, &m, None) {
            return e;
        }
    }
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut logs_open = true;
    // When a client's queue is half full (a fast sim, a busy browser), bars, decisions and
    // signals are coalesced to the latest per symbol and sent every 250 ms, instead of
    // dropping a healthy client; fills, orders, positions and risk events are never coalesced.
    let mut pending: HashMap<(String, String), (Value, Option<Instant>)> = HashMap::new();
    let mut congested_since: Option<Instant> = None;
    let mut flush = tokio::time::interval(COALESCE_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let step = tokio::select! {
            ev = bus.recv() => match ev {
                Ok(ev) => match event_message(&ev) {
                    Some(m) => {
                        let at = match &*ev { BusEvent::Bar { at, .. } => Some(*at), _ => None };
                        match coalesce_key(&m) {
                            Some(key) if tx.capacity() < CLIENT_QUEUE / 2 => {
                                pending.insert(key, (m, at));
                                Ok(())
                            }
                            _ => enqueue(tx, &m, at),
                        }
                    }
                    None => Ok(()),
                },
                Err(RecvError::Lagged(_)) => Err(Ended::TooSlow),
                Err(RecvError::Closed) => Err(Ended::BusClosed),
            },
            line = logs.recv(), if logs_open => match line {
                Ok(l) => enqueue(tx, &msg("log", json!(*l)), None),
                // A lagging log stream loses lines, not the client.
                Err(RecvError::Lagged(_)) => Ok(()),
                Err(RecvError::Closed) => { logs_open = false; Ok(()) }
            },
            _ = flush.tick() => {
                // A client that stays backed up for CONGESTED_LIMIT is slow, not busy: drop it.
                if tx.capacity() < CLIENT_QUEUE / 2 {
                    let since = *congested_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > CONGESTED_LIMIT {
                        return Ended::TooSlow;
                    }
                } else {
                    congested_since = None;
                }
                if !pending.is_empty() && tx.capacity() > pending.len() {
                    pending.drain().try_for_each(|(_, (m, at))| enqueue(tx, &m, at))
                } else {
                    Ok(())
                }
            }
            _ = beat.tick() => {
                let (now, source) = shared.live.now();
                let m = msg("heartbeat", json!({
                    "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "clock": ts_text(now), "clock_source": source,
                }));
                enqueue(tx, &m, None)
            }
            _ = &mut *writer => Err(Ended::Closed),
            _ = &mut *reader => Err(Ended::Closed),
        };
        if let Err(why) = step {
            return why;
        }
    }
}

async fn write_loop(
    shared: AppState,
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Out>,
) {
    // Feed everything already queued, then flush once: one write per burst instead of one per
    // message keeps a fast market from outrunning a healthy client.
    let mut batch: Vec<Out> = Vec::with_capacity(64);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        for out in &batch {
            if sink.feed(Message::Text(out.text.clone())).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
        for out in batch.drain(..) {
            if let Some(at) = out.bar_at {
                let secs = at.elapsed().as_secs_f64();
                shared.metrics.with(|| {
                    metrics::histogram!("robo_bar_to_websocket_latency_seconds").record(secs)
                });
            }
        }
    }
    let _ = sink.close().await;
}
