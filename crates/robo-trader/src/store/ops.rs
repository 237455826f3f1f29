//! The SQL behind every write: one function per [`WriteOp`], the order intent, and the
//! durable-transaction wrapper. Shared by the writer thread and `Store`'s direct writes.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use robo_core::decision::Decision;
use robo_core::events::{Record, RiskEvent, StateCause};
use robo_core::orders::OrderState;
use robo_core::risk::Verdict;
use robo_core::types::{
    ClientOrderId, ConnectionState, Fill, Money, OrderRequest, Price, TradingState, Ts,
};

use super::codec::{dec_text, kind_columns, order_id_text, tif_text, ts_text};
use super::fifo::{apply_fill, FifoFill};
use super::StoreError;

/// One write for the batching writer. Every op is applied atomically (its own savepoint);
/// a batch of ops commits as one transaction.
///
/// `Record` is large (a `Decision` is about 1 KB, allocation-free by design); it stays unboxed
/// so queuing a record costs no extra allocation, at the price of a bigger queue slot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Something the engine asked to persist. `symbol` is the name of the record's symbol
    /// (ignored by records that have none: state changes, order status, equity).
    Record { rec: Record, symbol: String },
    /// A trading-state change from the shell (an operator command, a reconciliation verdict).
    TradingState {
        state: TradingState,
        cause: String,
        source: String,
        ts: Ts,
    },
    /// The broker session changed state.
    Connection {
        state: ConnectionState,
        reason: String,
        ts: Ts,
    },
    /// The broker's id for one of our orders.
    BrokerId {
        order_id: ClientOrderId,
        broker_id: String,
        ts: Ts,
    },
    /// Last prices (symbol name, price, time), e.g. from bars; decisions and fills update
    /// marks on their own. Also records the simulated clock and the engine's equity peak
    /// (`meta.sim_clock`, `meta.peak_equity`), which a restart resumes from.
    Marks {
        marks: Vec<(String, Price, Ts)>,
        sim_clock: Ts,
        peak_equity: Money,
    },
    /// The watchlist as this run starts: every symbol tradeable on live data, none dropped.
    SymbolFeedsReset { symbols: Vec<String>, ts: Ts },
    /// One symbol's market data changed (delayed, untradeable, dropped, or back to normal).
    SymbolFeed {
        symbol: String,
        state: SymbolFeedState,
        delayed: bool,
        reason: String,
        ts: Ts,
    },
    /// The broker's account as just read, compared with the ledger.
    BrokerAccount(BrokerAccountRow),
    /// The run ended; `exit_reason` is what `status` shows next time.
    RunEnded {
        run_id: i64,
        ended: Ts,
        exit_reason: String,
    },
}

/// One reading of the broker's account and its comparison with the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAccountRow {
    pub account: String,
    pub net_liquidation: Money,
    pub total_cash: Option<Money>,
    pub buying_power: Option<Money>,
    pub ledger_equity: Money,
    pub tolerance: Money,
    pub ts: Ts,
}

impl BrokerAccountRow {
    pub fn difference(&self) -> Money {
        self.net_liquidation - self.ledger_equity
    }
    pub fn within_tolerance(&self) -> bool {
        self.difference().abs() <= self.tolerance
    }
}

/// Whether a watchlist symbol can take new entries, as far as its market data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolFeedState {
    Tradeable,
    /// Its data stopped or is not permitted: no new entries (exits still allowed).
    Untradeable,
    /// Not resolvable at IB (unknown, delisted, ambiguous): off the watchlist for this run.
    Dropped,
}

impl SymbolFeedState {
    pub const fn as_str(self) -> &'static str {
        match self {
            SymbolFeedState::Tradeable => "tradeable",
            SymbolFeedState::Untradeable => "untradeable",
            SymbolFeedState::Dropped => "dropped",
        }
    }
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction committed with `synchronous=FULL`, so it is on
/// disk when this returns; the connection goes back to NORMAL afterwards.
pub(crate) fn durably<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    let result = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    })();
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    result
}

/// Inserts the order row in state `new` and advances `meta.next_order_seq` past its id.
pub(crate) fn write_intent(
    conn: &Connection,
    req: &OrderRequest,
    symbol: &str,
) -> Result<(), StoreError> {
    if req.qty <= 0 {
        return Err(StoreError::Invalid(format!(
            "order {}: quantity {} must be positive",
            req.id, req.qty
        )));
    }
    let seq = i64::try_from(req.id.0)
        .map_err(|_| StoreError::Invalid(format!("order id {} is too large", req.id)))?;
    let (order_type, limit, stop) = kind_columns(&req.kind);
    let ts = ts_text(req.ts);
    let inserted = conn
        .prepare_cached(
            "INSERT INTO orders (id, seq, symbol, side, quantity, order_type, limit_price,
                                 stop_price, tif, purpose, state, filled_qty, created_ts,
                                 updated_ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'new', 0, ?11, ?11)
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            order_id_text(req.id),
            seq,
            symbol,
            req.side.as_str(),
            req.qty,
            order_type,
            limit.map(dec_text),
            stop.map(dec_text),
            tif_text(req.tif),
            req.purpose.as_str(),
            ts,
        ])?;
    if inserted == 0 {
        return Err(StoreError::DuplicateOrder(req.id.to_string()));
    }
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('next_order_seq', ?1)
         ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), ?1)",
    )?
    .execute([seq.saturating_add(1)])?;
    Ok(())
}

/// Sets the current trading state, appends it to the history and bumps the version.
pub(crate) fn write_trading_state(
    conn: &Connection,
    state: TradingState,
    cause: &str,
    source: &str,
    ts: Ts,
) -> Result<(), StoreError> {
    let ts = ts_text(ts);
    conn.prepare_cached(
        "UPDATE trading_state SET state = ?1, cause = ?2, source = ?3, ts = ?4,
                version = version + 1 WHERE id = 1",
    )?
    .execute(params![state.as_str(), cause, source, ts])?;
    conn.prepare_cached(
        "INSERT INTO trading_state_history (ts, state, cause, source) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![ts, state.as_str(), cause, source])?;
    Ok(())
}

/// What the schema's TEXT columns hold for a serde-named enum (e.g. `Action::WarmingUp` ->
/// "warming_up").
fn serde_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("<unserializable: {e}>"),
    }
}

fn json_text<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("cannot encode JSON: {e}")))
}

/// The human sentence for an engine-made state change.
pub(crate) fn cause_text(c: &StateCause) -> String {
    match c {
        StateCause::Operator => "operator".to_string(),
        StateCause::DailyLoss { loss, limit } => {
            // Cents, rounded half away from zero as people expect (not banker's rounding).
            let cents = |d: &Money| {
                d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
            };
            format!(
                "daily loss ${} reached the limit of ${}",
                cents(loss),
                cents(limit)
            )
        }
        StateCause::Drawdown {
            drawdown_pct,
            limit_pct,
        } => format!(
            "drawdown {:.2}% reached the limit of {:.2}%",
            drawdown_pct * 100.0,
            limit_pct * 100.0
        ),
        StateCause::Reconciliation => "reconciliation found an unexplained difference".to_string(),
    }
}

fn upsert_mark(conn: &Connection, symbol: &str, price: Price, ts: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO marks (symbol, price, ts) VALUES (?1, ?2, ?3)
         ON CONFLICT (symbol) DO UPDATE SET price = excluded.price, ts = excluded.ts
         WHERE excluded.ts >= marks.ts",
    )?
    .execute(params![symbol, dec_text(price), ts])?;
    Ok(())
}

fn write_decision(conn: &Connection, d: &Decision, symbol: &str) -> Result<(), StoreError> {
    let ts = ts_text(d.ts);
    let (verdict, check, reason) = match &d.verdict {
        None => (None, None, None),
        Some(Verdict::Approved) => (Some("approved"), None, None),
        Some(Verdict::Refused { check, reason }) => (
            Some("refused"),
            Some(check.as_str()),
            Some(reason.to_string()),
        ),
    };
    // `Checks` serializes as {"items": [...]}; the column holds just the array.
    let checks = match serde_json::to_value(d.checks) {
        Ok(serde_json::Value::Object(mut m)) => m.remove("items").unwrap_or_default(),
        Ok(v) => v,
        Err(e) => return Err(StoreError::Invalid(format!("cannot encode checks: {e}"))),
    };
    let strength = d.signal.strength.is_finite().then_some(d.signal.strength);
    conn.prepare_cached(
        "INSERT INTO decisions (ts, symbol, close, signal, strength, reason, action, verdict,
                                refused_check, refused_reason, inputs, checks)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        ts,
        symbol,
        dec_text(d.close),
        d.signal.direction.as_str(),
        strength,
        d.signal.reason.to_string(),
        serde_name(&d.action),
        verdict,
        check,
        reason,
        json_text(&d.inputs)?,
        checks.to_string(),
    ])?;
    if d.close > Price::ZERO {
        upsert_mark(conn, symbol, d.close, &ts)?;
    }
    Ok(())
}

fn write_risk(conn: &Connection, e: &RiskEvent, symbol: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO risk_events (ts, symbol, check_name, reason, detail)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        ts_text(e.ts),
        symbol,
        e.check.as_str(),
        e.reason.to_string(),
        json_text(&e.reason)?,
    ])?;
    Ok(())
}

/// Inserts the fill unless its exec id is known; a new fill also moves lots, positions, the
/// mark and its order's filled quantity. Returns whether it was new.
pub(crate) fn write_fill(conn: &Connection, f: &Fill, symbol: &str) -> Result<bool, StoreError> {
    if f.qty <= 0 {
        return Err(StoreError::Invalid(format!(
            "fill {}: quantity {} must be positive",
            f.exec_id, f.qty
        )));
    }
    if f.price <= Price::ZERO || f.commission < Money::ZERO {
        return Err(StoreError::Invalid(format!(
            "fill {}: price {} must be positive and commission {} not negative",
            f.exec_id, f.price, f.commission
        )));
    }
    let ts = ts_text(f.ts);
    let order_id = order_id_text(f.order_id);
    let inserted = conn
        .prepare_cached(
            "INSERT INTO fills (exec_id, order_id, symbol, side, quantity, price, commission, ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (exec_id) DO NOTHING",
        )?
        .execute(params![
            f.exec_id.as_str(),
            order_id,
            symbol,
            f.side.as_str(),
            f.qty,
            dec_text(f.price),
            dec_text(f.commission),
            ts,
        ])?;
    if inserted == 0 {
        return Ok(false);
    }
    apply_fill(
        conn,
        &FifoFill {
            exec_id: &f.exec_id.0,
            symbol,
            side: f.side,
            qty: f.qty,
            price: f.price,
            commission: f.commission,
            ts: &ts,
        },
    )?;
    upsert_mark(conn, symbol, f.price, &ts)?;
    conn.prepare_cached(
        "UPDATE orders SET filled_qty = MAX(filled_qty,
                (SELECT COALESCE(SUM(quantity), 0) FROM fills WHERE order_id = ?1))
         WHERE id = ?1",
    )?
    .execute([&order_id])?;
    Ok(true)
}

fn write_order_status(
    conn: &Connection,
    order_id: ClientOrderId,
    state: OrderState,
    filled_qty: i64,
    reason: Option<&str>,
    ts: Ts,
) -> Result<(), StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE orders SET state = ?2, filled_qty = MAX(?3, 0), reason = COALESCE(?4, reason),
                    updated_ts = ?5
             WHERE id = ?1",
        )?
        .execute(params![
            order_id_text(order_id),
            state.as_str(),
            filled_qty,
            reason,
            ts_text(ts)
        ])?;
    if n == 0 {
        // Not an error worth failing a batch for: e.g. an order placed by a build that did not
        // record intents. Say so and move on.
        tracing::warn!(order = %order_id, state = %state, "order status for an order with no intent row");
    }
    Ok(())
}

/// Applies one op. The caller wraps it in a savepoint.
pub(crate) fn apply_op(conn: &Connection, op: &WriteOp) -> Result<(), StoreError> {
    match op {
        WriteOp::Record { rec, symbol } => match rec {
            Record::Decision(d) => write_decision(conn, d, symbol),
            Record::Risk(e) => write_risk(conn, e, symbol),
            Record::State(sc) => {
                write_trading_state(conn, sc.to, &cause_text(&sc.cause), "engine", sc.ts)
            }
            Record::OrderStatus {
                order_id,
                state,
                filled_qty,
                reason,
                ts,
            } => write_order_status(conn, *order_id, *state, *filled_qty, reason.as_deref(), *ts),
            Record::Fill(f) => write_fill(conn, f, symbol).map(|_| ()),
            Record::Equity {
                ts,
                cash,
                equity,
                realized,
                unrealized,
            } => {
                conn.prepare_cached(
                    "INSERT INTO equity (ts, cash, equity, realized, unrealized)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    ts_text(*ts),
                    dec_text(*cash),
                    dec_text(*equity),
                    dec_text(*realized),
                    dec_text(*unrealized)
                ])?;
                Ok(())
            }
        },
        WriteOp::TradingState {
            state,
            cause,
            source,
            ts,
        } => write_trading_state(conn, *state, cause, source, *ts),
        WriteOp::Connection { state, reason, ts } => {
            conn.prepare_cached(
                "INSERT INTO connection_events (ts, state, reason) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![ts_text(*ts), state.as_str(), reason])?;
            Ok(())
        }
        WriteOp::BrokerId {
            order_id,
            broker_id,
            ts,
        } => {
            conn.prepare_cached("UPDATE orders SET broker_id = ?2, updated_ts = ?3 WHERE id = ?1")?
                .execute(params![order_id_text(*order_id), broker_id, ts_text(*ts)])?;
            Ok(())
        }
        WriteOp::Marks {
            marks,
            sim_clock,
            peak_equity,
        } => {
            for (symbol, price, ts) in marks {
                upsert_mark(conn, symbol, *price, &ts_text(*ts))?;
            }
            meta_set(conn, "sim_clock", &ts_text(*sim_clock))?;
            meta_set(conn, "peak_equity", &dec_text(*peak_equity))?;
            Ok(())
        }
        WriteOp::SymbolFeedsReset { symbols, ts } => {
            conn.execute("DELETE FROM symbol_feeds", [])?;
            for symbol in symbols {
                conn.prepare_cached(
                    "INSERT INTO symbol_feeds (symbol, state, delayed, reason, ts)
                     VALUES (?1, 'tradeable', 0, '', ?2)",
                )?
                .execute(params![symbol, ts_text(*ts)])?;
            }
            Ok(())
        }
        WriteOp::SymbolFeed {
            symbol,
            state,
            delayed,
            reason,
            ts,
        } => {
            conn.prepare_cached(
                "INSERT INTO symbol_feeds (symbol, state, delayed, reason, ts)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (symbol) DO UPDATE SET state = excluded.state,
                     delayed = excluded.delayed, reason = excluded.reason, ts = excluded.ts",
            )?
            .execute(params![
                symbol,
                state.as_str(),
                i64::from(*delayed),
                reason,
                ts_text(*ts)
            ])?;
            Ok(())
        }
        WriteOp::BrokerAccount(a) => {
            conn.prepare_cached(
                "INSERT INTO broker_account (id, account, net_liquidation, total_cash,
                     buying_power, ledger_equity, difference, tolerance, within_tolerance, ts)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET account = excluded.account,
                     net_liquidation = excluded.net_liquidation, total_cash = excluded.total_cash,
                     buying_power = excluded.buying_power, ledger_equity = excluded.ledger_equity,
                     difference = excluded.difference, tolerance = excluded.tolerance,
                     within_tolerance = excluded.within_tolerance, ts = excluded.ts",
            )?
            .execute(params![
                a.account,
                dec_text(a.net_liquidation),
                a.total_cash.map(dec_text),
                a.buying_power.map(dec_text),
                dec_text(a.ledger_equity),
                dec_text(a.difference()),
                dec_text(a.tolerance),
                i64::from(a.within_tolerance()),
                ts_text(a.ts)
            ])?;
            Ok(())
        }
        WriteOp::RunEnded {
            run_id,
            ended,
            exit_reason,
        } => {
            conn.prepare_cached("UPDATE runs SET ended = ?2, exit_reason = ?3 WHERE id = ?1")?
                .execute(params![run_id, ts_text(*ended), exit_reason])?;
            Ok(())
        }
    }
}

/// A value from `meta`, if set.
pub(crate) fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub(crate) fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}
