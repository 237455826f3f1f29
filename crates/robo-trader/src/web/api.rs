//! The REST API: read endpoints over the ledger (fresh read-only connections per request, on
//! the blocking pool) and the control endpoints.
//!
//! Control actions are recorded twice over: a state change goes through
//! `Store::set_trading_state` (its history table), and every action, state change or not,
//! gets a `meta` row `operator_action:<n>` = `{"action", "source", "ts", ...}` with
//! `operator_action_seq` holding the last `n`; each is also logged at `warn`.

use std::collections::BTreeMap;
use std::path::Path;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use robo_core::calendar::{ny_date, Calendar};
use robo_core::events::OperatorCommand;
use robo_core::types::{Money, TradingState, Ts, Universe};

use super::live::ts_text;
use super::perf::{daily, drawdowns, round_trips, sharpe, trade_stats};
use super::{check_control_access, AccessVerdict, ApiError, AppState};
use crate::runner::Control;
use crate::store::Store;

/// The query string as pairs, or why it did not parse.
pub type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query's parameters, refusing any not in `allowed` or given twice.
pub fn params(q: RawQuery, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let Query(pairs) = q.map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            let known = if allowed.is_empty() {
                "this endpoint takes none".to_string()
            } else {
                format!("known: {}", allowed.join(", "))
            };
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{k}` ({known})"
            )));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter `{k}` given more than once"
            )));
        }
    }
    Ok(out)
}

/// `symbol`, validated and upper-cased like the config's symbol list.
fn symbol_param(p: &BTreeMap<String, String>) -> Result<Option<String>, ApiError> {
    let Some(s) = p.get("symbol") else {
        return Ok(None);
    };
    Universe::new([s])
        .map(|u| u.names().first().cloned())
        .map_err(|e| ApiError::bad_request(format!("query parameter `symbol`: {e}")))
}

/// `limit`, 1..=max, default `default`.
fn limit_param(
    p: &BTreeMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match p.get("limit") {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "query parameter `limit`: expected a whole number from 1 to {max}, got {s:?}"
            ))),
        },
    }
}

/// A read-only raw connection, for tables the store has no reader for.
pub fn raw_conn(db: &Path) -> Result<Connection, ApiError> {
    if !db.exists() {
        return Err(crate::store::StoreError::NotFound(db.to_path_buf()).into());
    }
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The store and a raw connection, both read-only.
pub struct Db {
    pub store: Store,
    pub conn: Connection,
}

/// Idle connections kept for reuse; more than this are closed after use.
const POOL_MAX: usize = 8;

/// Runs `f` on the blocking pool against read-only connections, reused from the pool (each
/// request still sees the latest committed data: WAL readers start a fresh snapshot per
/// statement outside a transaction).
async fn with_db<T: Send + 'static>(
    shared: &AppState,
    f: impl FnOnce(&Db) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let pooled = shared.db_pool.lock().ok().and_then(|mut p| p.pop());
        let db = match pooled {
            Some(db) => db,
            None => Db {
                store: Store::open_read_only(&shared.ctx.db)?,
                conn: raw_conn(&shared.ctx.db)?,
            },
        };
        let out = f(&db);
        // A connection that just failed is dropped rather than reused.
        if out.is_ok() {
            if let Ok(mut p) = shared.db_pool.lock() {
                if p.len() < POOL_MAX {
                    p.push(db);
                }
            }
        }
        out
    })
    .await
    .map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
}

fn money(d: Decimal) -> String {
    d.normalize().to_string()
}

fn parse_money(s: &str, what: &str) -> Result<Money, ApiError> {
    s.parse::<Decimal>()
        .map_err(|_| ApiError::internal(format!("{what}: {s:?} is not a decimal")))
}

/// The broker session's state: the last `connection_events` row, or for the sim broker
/// (which never records one) "ready" since this server started.
pub fn connection_state(
    conn: &Connection,
    mode: &str,
    started: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(String, Option<String>, String), ApiError> {
    let row: Option<(String, String, Option<String>)> = conn
        .query_row(
            "SELECT state, ts, reason FROM connection_events ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(match row {
        Some((state, ts, reason)) => (state, Some(ts), reason.unwrap_or_default()),
        None if mode == "sim" => (
            "ready".into(),
            started.map(|s| s.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            "simulated broker: always connected".into(),
        ),
        None => (
            "disconnected".into(),
            None,
            "no connection event recorded yet".into(),
        ),
    })
}

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

/// Ready to trade: the ledger reads, the broker is ready, the state is active and a bar came.
pub async fn readyz(State(shared): State<AppState>) -> Response {
    let mode = shared.ctx.mode.clone();
    let started = shared.started;
    let have_bar = !shared.live.lock().bars.is_empty();
    let read = with_db(&shared, move |db| {
        let state = db.store.trading_state()?;
        let (conn_state, _, reason) = connection_state(&db.conn, &mode, Some(started))?;
        Ok((state, conn_state, reason))
    })
    .await;
    let mut reasons = Vec::new();
    match read {
        Ok((state, conn_state, reason)) => {
            match state {
                TradingState::Active => {}
                TradingState::ReduceOnly => {
                    reasons.push("trading state is reduce_only (exits only)".to_string())
                }
                TradingState::Halted => reasons.push("trading state is halted".to_string()),
            }
            if conn_state != "ready" {
                reasons.push(format!("broker connection is {conn_state}: {reason}"));
            }
        }
        Err(e) => reasons.push(format!("cannot read the ledger: {}", e.message)),
    }
    if !have_bar {
        reasons.push("no bar received yet".to_string());
    }
    let ready = reasons.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready, "reasons": reasons }))).into_response()
}

pub async fn status(State(shared): State<AppState>, q: RawQuery) -> Result<Json<Value>, ApiError> {
    params(q, &[])?;
    Ok(Json(status_value(&shared).await?))
}

/// The `/api/status` document (also the WebSocket snapshot's `status`).
pub async fn status_value(shared: &AppState) -> Result<Value, ApiError> {
    let (now, clock_source) = shared.live.now();
    let mode = shared.ctx.mode.clone();
    let started = shared.started;
    let (mut status, connection) = with_db(shared, move |db| {
        let status = db.store.status_json()?;
        let conn = connection_state(&db.conn, &mode, Some(started))?;
        Ok((status, conn))
    })
    .await?;
    let market = serde_json::to_value(Calendar::nyse().market_hours(now))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let detail = status["trading_state_detail"].clone();
    let state = status["trading_state"].as_str().unwrap_or("").to_string();
    if let Value::Object(m) = &mut status {
        m.insert("mode".into(), json!(shared.ctx.mode));
        m.insert(
            "clock".into(),
            json!({ "now": ts_text(now), "source": clock_source }),
        );
        m.insert(
            "connection".into(),
            json!({ "state": connection.0, "since": connection.1, "reason": connection.2 }),
        );
        m.insert("market".into(), market);
        m.insert(
            "kill_switch".into(),
            json!({
                "state": state,
                "engaged": state != "active",
                "cause": detail["cause"],
                "source": detail["source"],
                "since": detail["ts"],
            }),
        );
    }
    Ok(status)
}

pub async fn positions(
    State(shared): State<AppState>,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
    params(q, &[])?;
    let status = with_db(&shared, |db| Ok(db.store.status_json()?)).await?;
    Ok(Json(json!({ "positions": status["positions"] })))
}

pub async fn orders(State(shared): State<AppState>, q: RawQuery) -> Result<Json<Value>, ApiError> {
    let p = params(q, &["symbol", "limit", "state"])?;
    let symbol = symbol_param(&p)?;
    let limit = limit_param(&p, 500, 100_000)?;
    let open_only = match p.get("state").map(String::as_str) {
        None | Some("all") => false,
        Some("open") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter `state`: expected open or all, got {other:?}"
            )))
        }
    };
    let rows = with_db(&shared, move |db| Ok(db.store.orders()?)).await?;
    let list: Vec<Value> = rows
        .iter()
        .filter(|o| symbol.as_ref().is_none_or(|s| &o.symbol == s))
        .filter(|o| !open_only || o.state.is_open())
        .map(|o| {
            json!({
                "id": o.id.to_string(),
                "symbol": o.symbol,
                "side": o.side.as_str(),
                "quantity": o.qty,
                "filled": o.filled,
                "type": o.kind.as_str(),
                "tif": format!("{:?}", o.tif).to_uppercase(),
                "purpose": o.purpose.as_str(),
                "state": o.state.as_str(),
                "avg_fill_price": o.avg_fill_price.map(money),
                "broker_id": o.broker_id,
                "reason": o.reason,
                "created": ts_text(o.created),
                "updated": ts_text(o.updated),
            })
        })
        .collect();
    let skip = list.len().saturating_sub(limit);
    Ok(Json(
        json!({ "orders": list.into_iter().skip(skip).collect::<Vec<_>>() }),
    ))
}

pub fn fill_json(f: &crate::store::FillRow) -> Value {
    json!({
        "exec_id": f.exec_id.0,
        "order_id": f.order_id.to_string(),
        "symbol": f.symbol,
        "side": f.side.as_str(),
        "quantity": f.qty,
        "price": money(f.price),
        "commission": money(f.commission),
        "ts": ts_text(f.ts),
    })
}

pub async fn fills(State(shared): State<AppState>, q: RawQuery) -> Result<Json<Value>, ApiError> {
    let p = params(q, &["symbol", "limit"])?;
    let symbol = symbol_param(&p)?;
    let limit = limit_param(&p, 500, 100_000)?;
    let rows = with_db(&shared, move |db| Ok(db.store.fills()?)).await?;
    let list: Vec<Value> = rows
        .iter()
        .filter(|f| symbol.as_ref().is_none_or(|s| &f.symbol == s))
        .map(fill_json)
        .collect();
    let skip = list.len().saturating_sub(limit);
    Ok(Json(
        json!({ "fills": list.into_iter().skip(skip).collect::<Vec<_>>() }),
    ))
}

fn decision_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let parse = |s: Option<String>| {
        s.and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .unwrap_or(Value::Null)
    };
    Ok(json!({
        "id": r.get::<_, i64>(0)?,
        "ts": r.get::<_, String>(1)?,
        "symbol": r.get::<_, String>(2)?,
        "close": r.get::<_, String>(3)?,
        "signal": r.get::<_, Option<String>>(4)?,
        "strength": r.get::<_, Option<f64>>(5)?,
        "reason": r.get::<_, Option<String>>(6)?,
        "action": r.get::<_, Option<String>>(7)?,
        "verdict": r.get::<_, Option<String>>(8)?,
        "refused_check": r.get::<_, Option<String>>(9)?,
        "refused_reason": r.get::<_, Option<String>>(10)?,
        "inputs": parse(r.get::<_, Option<String>>(11)?),
        "checks": parse(r.get::<_, Option<String>>(12)?),
    }))
}

const DECISION_COLS: &str = "id, ts, symbol, close, signal, strength, reason, action, verdict, \
                             refused_check, refused_reason, inputs, checks";

pub async fn decisions(
    State(shared): State<AppState>,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = params(q, &["symbol", "limit"])?;
    let symbol = symbol_param(&p)?;
    let limit = limit_param(&p, 100, 5000)?;
    let out = with_db(&shared, move |db| {
        let c = &db.conn;
        let mut recent = Vec::new();
        let sql = format!(
            "SELECT {DECISION_COLS} FROM decisions WHERE (?1 IS NULL OR symbol = ?1)
             ORDER BY id DESC LIMIT ?2"
        );
        let mut st = c.prepare(&sql)?;
        for row in st.query_map(rusqlite::params![symbol, limit as i64], decision_row)? {
            recent.push(row?);
        }
        recent.reverse();
        let sql = format!(
            "SELECT {DECISION_COLS} FROM decisions WHERE id IN
             (SELECT MAX(id) FROM decisions WHERE (?1 IS NULL OR symbol = ?1) GROUP BY symbol)
             ORDER BY symbol"
        );
        let mut st = c.prepare(&sql)?;
        let mut latest = Vec::new();
        for row in st.query_map(rusqlite::params![symbol], decision_row)? {
            latest.push(row?);
        }
        Ok(json!({ "latest": latest, "decisions": recent }))
    })
    .await?;
    Ok(Json(out))
}

/// The equity table as (ts, equity), oldest first.
fn equity_curve(conn: &Connection) -> Result<Vec<(Ts, Money)>, ApiError> {
    let mut st = conn.prepare("SELECT ts, equity FROM equity ORDER BY ts, id")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (ts, e) = row?;
        let t = chrono::DateTime::parse_from_rfc3339(&ts)
            .map_err(|_| ApiError::internal(format!("equity.ts: {ts:?} is not a time")))?;
        out.push((
            Ts::from_utc(t.with_timezone(&chrono::Utc)),
            parse_money(&e, "equity.equity")?,
        ));
    }
    Ok(out)
}

pub fn equity_points(db: &Path) -> Result<Vec<(Ts, Money)>, ApiError> {
    equity_curve(&raw_conn(db)?)
}

/// The `/api/performance` document.
pub fn performance_json(store: &Store, conn: &Connection) -> Result<Value, ApiError> {
    let status = store.status_json()?;
    let starting = store.starting_cash()?;
    let fills = store.fills()?;
    let curve = equity_curve(conn)?;
    let trades = round_trips(&fills);
    let stats = trade_stats(&trades);
    let days = daily(&curve, starting);
    let (_, max_dd) = drawdowns(&curve);
    let equity = status["equity"]
        .as_str()
        .map(|s| parse_money(s, "equity"))
        .transpose()?;
    let total = match (equity, starting) {
        (Some(e), Some(s)) => Some(money(e - s)),
        _ => None,
    };
    // Without any snapshot, the whole history is the first day.
    let day_pnl = match days.last() {
        Some(d) => Some(money(d.pnl)),
        None => total.clone(),
    };
    let recent_trades: Vec<Value> = trades
        .iter()
        .rev()
        .take(200)
        .rev()
        .map(|t| {
            json!({
                "symbol": t.symbol,
                "direction": if t.side == robo_core::types::Side::Buy { "long" } else { "short" },
                "quantity": t.qty,
                "entry_price": money(t.entry_price),
                "exit_price": money(t.exit_price),
                "entry_ts": ts_text(t.entry_ts),
                "exit_ts": ts_text(t.exit_ts),
                "pnl": money(t.pnl),
            })
        })
        .collect();
    let skip = curve.len().saturating_sub(2000);
    Ok(json!({
        "starting_cash": starting.map(money),
        "equity": status["equity"],
        "realized_pnl": status["realized_pnl"],
        "unrealized_pnl": status["unrealized_pnl"],
        "commissions": status["commissions"],
        "total_pnl": total,
        "day_pnl": day_pnl,
        "daily": days.iter().map(|d| json!({
            "date": d.date.to_string(), "close": money(d.close), "pnl": money(d.pnl),
        })).collect::<Vec<_>>(),
        "equity_curve": curve.iter().skip(skip).map(|(t, e)| json!({
            "ts": ts_text(*t), "equity": money(*e),
        })).collect::<Vec<_>>(),
        "equity_points": curve.len(),
        "max_drawdown": { "amount": money(max_dd.amount), "fraction": max_dd.fraction },
        "sharpe": sharpe(&days, starting),
        "trades": {
            "count": stats.trades,
            "wins": stats.wins,
            "losses": stats.losses,
            "win_rate": stats.win_rate,
            "profit_factor": stats.profit_factor,
            "gross_profit": money(stats.gross_profit),
            "gross_loss": money(stats.gross_loss),
        },
        "closed_trades": recent_trades,
    }))
}

pub async fn performance(
    State(shared): State<AppState>,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
    params(q, &[])?;
    let v = with_db(&shared, |db| performance_json(&db.store, &db.conn)).await?;
    Ok(Json(v))
}

/// The `[risk]` table of the effective config, keyed by setting.
fn risk_config(config_toml: &str) -> Map<String, Value> {
    let defaults = robo_core::risk::RiskLimits::default();
    let mut m = Map::new();
    m.insert("enabled".into(), json!(defaults.enabled));
    m.insert(
        "max_position_pct".into(),
        json!(defaults.max_position_pct.to_string()),
    );
    m.insert(
        "max_open_positions".into(),
        json!(defaults.max_open_positions),
    );
    m.insert(
        "max_order_notional".into(),
        json!(defaults.max_order_notional.to_string()),
    );
    m.insert(
        "max_daily_notional".into(),
        json!(defaults.max_daily_notional.to_string()),
    );
    m.insert(
        "daily_loss_pct".into(),
        json!(defaults.daily_loss_pct.to_string()),
    );
    m.insert(
        "max_drawdown_pct".into(),
        json!(defaults.max_drawdown_pct.to_string()),
    );
    m.insert(
        "max_leverage".into(),
        json!(defaults.max_leverage.to_string()),
    );
    m.insert("allow_short".into(), json!(defaults.allow_short));
    m.insert(
        "reentry_cooldown_secs".into(),
        json!(defaults.reentry_cooldown_secs),
    );
    m.insert(
        "max_price_age_bars".into(),
        json!(defaults.max_price_age_bars),
    );
    m.insert(
        "max_price_move_pct".into(),
        json!(defaults.max_price_move_pct.to_string()),
    );
    if let Ok(t) = config_toml.parse::<toml::Table>() {
        if let Some(toml::Value::Table(risk)) = t.get("risk") {
            for (k, v) in risk {
                let v = match v {
                    toml::Value::String(s) => json!(s),
                    toml::Value::Integer(i) => json!(i),
                    toml::Value::Float(f) => json!(f.to_string()),
                    toml::Value::Boolean(b) => json!(b),
                    other => json!(other.to_string()),
                };
                m.insert(k.clone(), v);
            }
        }
    }
    m
}

fn dec_of(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

fn ratio(a: Decimal, b: Decimal) -> Option<f64> {
    if b.is_zero() {
        return None;
    }
    (a / b).to_f64()
}

pub async fn risk(State(shared): State<AppState>, q: RawQuery) -> Result<Json<Value>, ApiError> {
    params(q, &[])?;
    let cfg = risk_config(&shared.ctx.config_toml);
    let (now, _) = shared.live.now();
    let v = with_db(&shared, move |db| {
        let status = db.store.status_json()?;
        let equity = dec_of(&status["equity"]);
        let perf = performance_json(&db.store, &db.conn)?;
        let today = ny_date(now);
        let mut gross = Decimal::ZERO;
        let mut biggest = Decimal::ZERO;
        let mut open = 0u32;
        for p in status["positions"].as_array().into_iter().flatten() {
            let mv = dec_of(&p["market_value"]).unwrap_or_default().abs();
            gross += mv;
            biggest = biggest.max(mv);
            open += 1;
        }
        let mut day_notional = Decimal::ZERO;
        let mut per_order: BTreeMap<String, Decimal> = BTreeMap::new();
        for f in db.store.fills()? {
            if ny_date(f.ts) == today {
                let n = f.price * Decimal::from(f.qty);
                day_notional += n;
                *per_order.entry(f.order_id.to_string()).or_default() += n;
            }
        }
        let biggest_order = per_order.values().copied().max().unwrap_or_default();
        let day_pnl = dec_of(&perf["day_pnl"]).unwrap_or_default();
        let day_loss = (-day_pnl).max(Decimal::ZERO);
        let prev_close = equity.map(|e| e - day_pnl);
        // The peak the engine recorded, or the best equity seen, whichever is higher.
        let mut peak = db
            .store
            .meta("peak_equity")?
            .and_then(|s| s.parse::<Decimal>().ok());
        for point in perf["equity_curve"].as_array().into_iter().flatten() {
            if let Some(e) = dec_of(&point["equity"]) {
                peak = Some(peak.map_or(e, |p| p.max(e)));
            }
        }
        if let Some(e) = equity {
            peak = Some(peak.map_or(e, |p| p.max(e)));
        }
        let drawdown = match (peak, equity) {
            (Some(p), Some(e)) => ratio(p - e, p),
            _ => None,
        };
        let limit = |k: &str| cfg.get(k).cloned().unwrap_or(Value::Null);
        let limits = vec![
            json!({"name": "max_position_pct", "limit": limit("max_position_pct"), "unit": "fraction of equity",
                   "use": equity.and_then(|e| ratio(biggest, e)), "detail": "largest position's market value / equity"}),
            json!({"name": "max_open_positions", "limit": limit("max_open_positions"), "unit": "positions",
                   "use": open, "detail": "open positions"}),
            json!({"name": "max_order_notional", "limit": limit("max_order_notional"), "unit": "dollars",
                   "use": money(biggest_order), "detail": "largest order's filled notional today"}),
            json!({"name": "max_daily_notional", "limit": limit("max_daily_notional"), "unit": "dollars",
                   "use": money(day_notional), "detail": "filled notional today"}),
            json!({"name": "daily_loss_pct", "limit": limit("daily_loss_pct"), "unit": "fraction of start-of-day equity",
                   "use": prev_close.and_then(|p| ratio(day_loss, p)), "detail": "today's loss / previous close"}),
            json!({"name": "max_drawdown_pct", "limit": limit("max_drawdown_pct"), "unit": "fraction of peak equity",
                   "use": drawdown, "detail": "current fall from the equity peak"}),
            json!({"name": "max_leverage", "limit": limit("max_leverage"), "unit": "gross exposure / equity",
                   "use": equity.and_then(|e| ratio(gross, e)), "detail": "sum of |market value| / equity"}),
            json!({"name": "allow_short", "limit": limit("allow_short"), "unit": "flag", "use": Value::Null,
                   "detail": "checked per order"}),
            json!({"name": "reentry_cooldown_secs", "limit": limit("reentry_cooldown_secs"), "unit": "seconds",
                   "use": Value::Null, "detail": "checked per order"}),
            json!({"name": "max_price_age_bars", "limit": limit("max_price_age_bars"), "unit": "bars",
                   "use": Value::Null, "detail": "checked per order"}),
            json!({"name": "max_price_move_pct", "limit": limit("max_price_move_pct"), "unit": "fraction",
                   "use": Value::Null, "detail": "checked per order"}),
        ];
        let mut st = db.conn.prepare(
            "SELECT r.check_name, COUNT(*), MAX(r.ts),
                    (SELECT reason FROM risk_events x WHERE x.check_name = r.check_name
                     ORDER BY x.id DESC LIMIT 1)
             FROM risk_events r GROUP BY r.check_name ORDER BY COUNT(*) DESC, r.check_name",
        )?;
        let mut refusals = Vec::new();
        for row in st.query_map([], |r| {
            Ok(json!({
                "check": r.get::<_, String>(0)?,
                "count": r.get::<_, i64>(1)?,
                "last_ts": r.get::<_, Option<String>>(2)?,
                "last_reason": r.get::<_, Option<String>>(3)?,
            }))
        })? {
            refusals.push(row?);
        }
        Ok(json!({
            "enabled": cfg.get("enabled").cloned().unwrap_or(Value::Bool(true)),
            "trading_state": status["trading_state"],
            "kill_switch": status["trading_state_detail"],
            "limits": limits,
            "refusals": refusals,
        }))
    })
    .await?;
    Ok(Json(v))
}

pub async fn market(State(shared): State<AppState>, q: RawQuery) -> Result<Json<Value>, ApiError> {
    let p = params(q, &["symbol"])?;
    let symbol = symbol_param(&p)?;
    let (bars, signals) = {
        let live = shared.live.lock();
        (live.bars.clone(), live.signals.clone())
    };
    let (marks, positions) = with_db(&shared, |db| {
        let mut st = db
            .conn
            .prepare("SELECT symbol, price, ts FROM marks ORDER BY symbol")?;
        let marks: Vec<(String, String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let positions: BTreeMap<String, i64> = db
            .store
            .positions()?
            .into_iter()
            .map(|p| (p.symbol, p.quantity))
            .collect();
        Ok((marks, positions))
    })
    .await?;
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (sym, price, ts) in marks {
        out.insert(
            sym.clone(),
            json!({ "symbol": sym, "source": "marks", "ts": ts, "close": price,
                    "open": null, "high": null, "low": null, "volume": null,
                    "prev_close": null, "change": null, "change_pct": null }),
        );
    }
    for (sym, seen) in &bars {
        let b = seen.bar;
        let change = seen.prev_close.map(|p| b.close - p);
        let change_pct = seen.prev_close.and_then(|p| ratio(b.close - p, p));
        out.insert(
            sym.clone(),
            json!({ "symbol": sym, "source": "bus", "ts": ts_text(b.ts),
                    "open": money(b.open), "high": money(b.high), "low": money(b.low),
                    "close": money(b.close), "volume": b.volume,
                    "prev_close": seen.prev_close.map(money), "change": change.map(money),
                    "change_pct": change_pct }),
        );
    }
    let list: Vec<Value> = out
        .into_iter()
        .filter(|(s, _)| symbol.as_ref().is_none_or(|want| want == s))
        .map(|(s, mut v)| {
            v["position"] = json!(positions.get(&s).copied().unwrap_or(0));
            v["signal"] = signals.get(&s).cloned().unwrap_or(Value::Null);
            v
        })
        .collect();
    Ok(Json(json!({ "symbols": list })))
}

/// Levels from most to least severe.
const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

pub fn level_rank(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| l.eq_ignore_ascii_case(level))
}

pub async fn logs(q: RawQuery) -> Result<Json<Value>, ApiError> {
    let p = params(q, &["level", "limit"])?;
    let max_rank = match p.get("level") {
        None => LEVELS.len() - 1,
        Some(l) => level_rank(l).ok_or_else(|| {
            ApiError::bad_request(format!(
                "query parameter `level`: {l:?} is not one of error, warn, info, debug, trace"
            ))
        })?,
    };
    let limit = limit_param(&p, 500, crate::logging::LOG_RING)?;
    let lines: Vec<Value> = crate::logging::recent_logs()
        .iter()
        .filter(|l| level_rank(&l.level).is_some_and(|r| r <= max_rank))
        .map(|l| json!(**l))
        .collect();
    let skip = lines.len().saturating_sub(limit);
    Ok(Json(
        json!({ "logs": lines.into_iter().skip(skip).collect::<Vec<_>>() }),
    ))
}

pub async fn config(State(shared): State<AppState>, q: RawQuery) -> Result<Json<Value>, ApiError> {
    params(q, &[])?;
    Ok(Json(json!({ "toml": shared.ctx.config_toml })))
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no such endpoint: {}", uri.path()),
    }
}

/// An operator action from the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    KillSwitch(TradingState),
    Pause,
    Resume,
    Flatten,
    CancelAll,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::KillSwitch(_) => "kill_switch",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Flatten => "flatten",
            Action::CancelAll => "cancel_all",
        }
    }
    /// The trading state this action sets, if any.
    fn state(self) -> Option<TradingState> {
        match self {
            Action::KillSwitch(s) => Some(s),
            Action::Pause => Some(TradingState::Halted),
            Action::Resume => Some(TradingState::Active),
            Action::Flatten | Action::CancelAll => None,
        }
    }
}

fn authorize(shared: &AppState, headers: &HeaderMap, what: &str) -> Result<(), ApiError> {
    match check_control_access(headers, &shared.ctx.token) {
        AccessVerdict::Allowed => Ok(()),
        AccessVerdict::ForeignOrigin(o) => {
            tracing::warn!(origin = %o, action = what, "control request refused: foreign Origin");
            Err(ApiError {
                status: StatusCode::FORBIDDEN,
                message: format!(
                    "Origin {o:?} is not loopback; control is only allowed from this machine"
                ),
            })
        }
        AccessVerdict::BadToken => {
            tracing::warn!(
                action = what,
                "control request refused: missing or wrong token"
            );
            Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: "missing or wrong bearer token (Authorization: Bearer <token>)".into(),
            })
        }
    }
}

/// Persists, logs and sends one action.
async fn perform(shared: &AppState, action: Action) -> Result<Json<Value>, ApiError> {
    let _one_at_a_time = shared.control_lock.lock().await;
    let (now, _) = shared.live.now();
    let db = shared.ctx.db.clone();
    let record = tokio::task::spawn_blocking(move || -> Result<String, ApiError> {
        let store = Store::open(&db)?;
        if let Some(state) = action.state() {
            let cause = match action {
                Action::KillSwitch(_) => "operator: dashboard".to_string(),
                other => format!("operator: dashboard {}", other.name()),
            };
            store.set_trading_state(state, &cause, "web", now)?;
        }
        let seq = store
            .meta("operator_action_seq")?
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        let key = format!("operator_action:{seq}");
        let value = json!({
            "action": action.name(),
            "state": action.state().map(TradingState::as_str),
            "source": "web",
            "ts": ts_text(now),
        });
        store.set_meta(&key, &value.to_string())?;
        store.set_meta("operator_action_seq", &seq.to_string())?;
        Ok(key)
    })
    .await
    .map_err(|e| ApiError::internal(format!("control task failed: {e}")))??;
    let control = match action {
        Action::Flatten => Control::Operator(OperatorCommand::Flatten),
        Action::CancelAll => Control::Operator(OperatorCommand::CancelAll),
        other => match other.state() {
            Some(s) => Control::SetState(s),
            None => Control::Operator(OperatorCommand::CancelAll),
        },
    };
    let state = action.state().map(TradingState::as_str);
    tracing::warn!(action = action.name(), state = ?state, record = %record, "operator action from the dashboard");
    if shared.ctx.control.send(control).is_err() {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "recorded as {record}, but the trading thread is not running to apply it"
            ),
        });
    }
    Ok(Json(
        json!({ "ok": true, "action": action.name(), "state": state, "recorded": record }),
    ))
}

pub async fn kill_switch(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&shared, &headers, "kill_switch")?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body: expected JSON {{\"state\": \"active|reduce_only|halted\"}}: {e}"
        ))
    })?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("body: expected a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "state") {
        return Err(ApiError::bad_request(format!(
            "body: unknown field `{k}` (only `state`)"
        )));
    }
    let state = obj
        .get("state")
        .and_then(Value::as_str)
        .and_then(|s| match s {
            "active" => Some(TradingState::Active),
            "reduce_only" => Some(TradingState::ReduceOnly),
            "halted" => Some(TradingState::Halted),
            _ => None,
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "body field `state`: expected \"active\", \"reduce_only\" or \"halted\"",
            )
        })?;
    perform(&shared, Action::KillSwitch(state)).await
}

pub async fn pause(
    State(shared): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&shared, &headers, "pause")?;
    perform(&shared, Action::Pause).await
}

pub async fn resume(
    State(shared): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&shared, &headers, "resume")?;
    perform(&shared, Action::Resume).await
}

pub async fn flatten(
    State(shared): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&shared, &headers, "flatten")?;
    perform(&shared, Action::Flatten).await
}

pub async fn cancel_all(
    State(shared): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&shared, &headers, "cancel_all")?;
    perform(&shared, Action::CancelAll).await
}
