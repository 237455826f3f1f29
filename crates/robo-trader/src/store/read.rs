//! Reads: the state a restarting runner resumes from ([`PersistedState`]) and the `status`
//! summary. Both are computed from the fills (cash) and the derived lots (positions), marked at
//! the last known price per symbol.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use robo_core::orders::{ManagedOrder, OrderState};
use robo_core::types::{
    ExecId, Fill, Money, OrderRequest, Price, Qty, Side, TradingState, Ts, Universe,
};

use super::codec::{
    dec_text, parse_dec, parse_kind, parse_order_id, parse_order_state, parse_purpose, parse_side,
    parse_tif, parse_trading_state, parse_ts, At, OPEN_STATES_SQL,
};
use super::ops::meta_get;
use super::StoreError;

/// A fill as stored: like [`Fill`], but with the symbol's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillRow {
    pub exec_id: ExecId,
    pub order_id: robo_core::types::ClientOrderId,
    pub symbol: String,
    pub side: Side,
    pub qty: Qty,
    pub price: Price,
    pub commission: Money,
    pub ts: Ts,
}

impl FillRow {
    /// The core's fill, or `None` if the symbol is not in today's universe.
    pub fn to_fill(&self, universe: &Universe) -> Option<Fill> {
        let symbol = universe.id(&self.symbol)?;
        Some(Fill {
            exec_id: self.exec_id.clone(),
            order_id: self.order_id,
            symbol,
            side: self.side,
            qty: self.qty,
            price: self.price,
            commission: self.commission,
            ts: self.ts,
        })
    }
}

/// An order as stored: like [`ManagedOrder`], but with the symbol's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: robo_core::types::ClientOrderId,
    pub symbol: String,
    pub side: Side,
    pub qty: Qty,
    pub kind: robo_core::types::OrderKind,
    pub tif: robo_core::types::Tif,
    pub purpose: robo_core::types::OrderPurpose,
    pub state: OrderState,
    pub filled: Qty,
    /// Volume-weighted over the order's fills; `None` before the first.
    pub avg_fill_price: Option<Price>,
    pub broker_id: Option<String>,
    pub reason: Option<String>,
    pub created: Ts,
    pub updated: Ts,
}

impl OrderRow {
    pub fn to_managed(&self, universe: &Universe) -> Result<ManagedOrder, StoreError> {
        let symbol = universe
            .id(&self.symbol)
            .ok_or_else(|| StoreError::UnknownSymbol {
                symbol: self.symbol.clone(),
                context: format!("order {}", self.id),
            })?;
        Ok(ManagedOrder {
            req: OrderRequest {
                id: self.id,
                symbol,
                side: self.side,
                qty: self.qty,
                kind: self.kind,
                tif: self.tif,
                purpose: self.purpose,
                ts: self.created,
            },
            state: self.state,
            filled: self.filled,
            avg_fill_price: self.avg_fill_price,
            broker_id: self.broker_id.as_deref().map(Into::into),
            reason: self.reason.clone(),
            updated: self.updated,
        })
    }
}

/// One run of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: i64,
    pub started: Ts,
    pub ended: Option<Ts>,
    pub pid: i64,
    pub exit_reason: Option<String>,
    pub config_fingerprint: String,
    pub version: String,
}

/// Everything a restarting runner resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedState {
    /// From `meta.starting_cash`; `None` before the first run recorded it.
    pub starting_cash: Option<Money>,
    /// Starting cash plus every fill's cash flow; `None` without a starting cash.
    pub cash: Option<Money>,
    /// Every fill, in arrival order (replay them into the ledger).
    pub fills: Vec<FillRow>,
    /// Orders in state new, submitted or partially filled, oldest first.
    pub open_orders: Vec<OrderRow>,
    pub seen_exec_ids: HashSet<ExecId>,
    /// The next client order id's number: past every order ever recorded.
    pub next_order_seq: u64,
    pub trading_state: TradingState,
    /// The previous run, if any.
    pub last_run: Option<RunRow>,
    /// The previous run's exit reason, or a sentence saying it never recorded one (it
    /// crashed or was killed).
    pub last_exit_reason: Option<String>,
    /// Last known price per symbol: (name, price, time), by name.
    pub marks: Vec<(String, Price, Ts)>,
    /// The engine's equity peak, as last recorded by `WriteOp::Marks`.
    pub peak_equity: Option<Money>,
    /// The simulated clock, as last recorded by `WriteOp::Marks`.
    pub sim_clock: Option<Ts>,
}

pub(crate) fn fills(conn: &Connection) -> Result<Vec<FillRow>, StoreError> {
    let mut st = conn.prepare(
        "SELECT exec_id, order_id, symbol, side, quantity, price, commission, ts
         FROM fills ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (exec_id, order_id, symbol, side, qty, price, commission, ts) = row?;
        let at = |column| At {
            table: "fills",
            column,
            row: &exec_id,
        };
        out.push(FillRow {
            order_id: parse_order_id(&order_id, at("order_id"))?,
            side: parse_side(&side, at("side"))?,
            qty,
            price: parse_dec(&price, at("price"))?,
            commission: parse_dec(&commission, at("commission"))?,
            ts: parse_ts(&ts, at("ts"))?,
            symbol,
            exec_id: ExecId::from(exec_id),
        });
    }
    Ok(out)
}

fn opt_dec(s: Option<String>, at: At<'_>) -> Result<Option<Decimal>, StoreError> {
    s.map(|s| parse_dec(&s, at)).transpose()
}

struct RawOrder {
    id: String,
    symbol: String,
    side: String,
    qty: i64,
    order_type: String,
    limit: Option<String>,
    stop: Option<String>,
    tif: String,
    purpose: String,
    state: String,
    filled: i64,
    broker_id: Option<String>,
    reason: Option<String>,
    created: String,
    updated: String,
}

pub(crate) fn orders(conn: &Connection, only_open: bool) -> Result<Vec<OrderRow>, StoreError> {
    let filter = if only_open {
        format!("WHERE state IN {OPEN_STATES_SQL}")
    } else {
        String::new()
    };
    let mut st = conn.prepare(&format!(
        "SELECT id, symbol, side, quantity, order_type, limit_price, stop_price, tif, purpose,
                state, filled_qty, broker_id, reason, created_ts, updated_ts
         FROM orders {filter} ORDER BY seq"
    ))?;
    let rows = st.query_map([], |r| {
        Ok(RawOrder {
            id: r.get(0)?,
            symbol: r.get(1)?,
            side: r.get(2)?,
            qty: r.get(3)?,
            order_type: r.get(4)?,
            limit: r.get(5)?,
            stop: r.get(6)?,
            tif: r.get(7)?,
            purpose: r.get(8)?,
            state: r.get(9)?,
            filled: r.get(10)?,
            broker_id: r.get(11)?,
            reason: r.get(12)?,
            created: r.get(13)?,
            updated: r.get(14)?,
        })
    })?;
    let mut out = Vec::new();
    for row in rows {
        let o = row?;
        let at = |column| At {
            table: "orders",
            column,
            row: &o.id,
        };
        let limit = opt_dec(o.limit.clone(), at("limit_price"))?;
        let stop = opt_dec(o.stop.clone(), at("stop_price"))?;
        out.push(OrderRow {
            id: parse_order_id(&o.id, at("id"))?,
            symbol: o.symbol.clone(),
            side: parse_side(&o.side, at("side"))?,
            qty: o.qty,
            kind: parse_kind(&o.order_type, limit, stop, at("order_type"))?,
            tif: parse_tif(&o.tif, at("tif"))?,
            purpose: parse_purpose(&o.purpose, at("purpose"))?,
            state: parse_order_state(&o.state, at("state"))?,
            filled: o.filled,
            avg_fill_price: avg_fill_price(conn, &o.id)?,
            broker_id: o.broker_id.clone(),
            reason: o.reason.clone(),
            created: parse_ts(&o.created, at("created_ts"))?,
            updated: parse_ts(&o.updated, at("updated_ts"))?,
        });
    }
    Ok(out)
}

fn avg_fill_price(conn: &Connection, order_id: &str) -> Result<Option<Price>, StoreError> {
    let mut st = conn.prepare_cached("SELECT quantity, price FROM fills WHERE order_id = ?1")?;
    let rows = st.query_map([order_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let (mut qty, mut notional) = (0i64, Decimal::ZERO);
    for row in rows {
        let (q, p) = row?;
        let p = parse_dec(
            &p,
            At {
                table: "fills",
                column: "price",
                row: order_id,
            },
        )?;
        qty = qty.saturating_add(q);
        notional = notional.checked_add(p * Decimal::from(q)).ok_or_else(|| {
            StoreError::Invalid(format!("order {order_id}: fill notional overflows"))
        })?;
    }
    Ok((qty > 0).then(|| (notional / Decimal::from(qty)).round_dp(6).normalize()))
}

pub(crate) fn starting_cash(conn: &Connection) -> Result<Option<Money>, StoreError> {
    meta_get(conn, "starting_cash")?
        .map(|s| {
            parse_dec(
                &s,
                At {
                    table: "meta",
                    column: "value",
                    row: "starting_cash",
                },
            )
        })
        .transpose()
}

pub(crate) fn next_order_seq(conn: &Connection) -> Result<u64, StoreError> {
    let from_meta = match meta_get(conn, "next_order_seq")? {
        Some(s) => s.trim().parse::<u64>().map_err(|_| {
            At {
                table: "meta",
                column: "value",
                row: "next_order_seq",
            }
            .err(&s, "a positive integer")
        })?,
        None => 1,
    };
    let max_seq: Option<i64> = conn.query_row("SELECT MAX(seq) FROM orders", [], |r| r.get(0))?;
    let from_orders = max_seq.map_or(1, |m| u64::try_from(m).unwrap_or(0).saturating_add(1));
    Ok(from_meta.max(from_orders).max(1))
}

/// The current trading state and its version counter.
pub(crate) fn trading_state(conn: &Connection) -> Result<(TradingState, i64), StoreError> {
    let (s, v): (String, i64) = conn.query_row(
        "SELECT state, version FROM trading_state WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((
        parse_trading_state(
            &s,
            At {
                table: "trading_state",
                column: "state",
                row: "1",
            },
        )?,
        v,
    ))
}

pub(crate) fn last_run(conn: &Connection) -> Result<Option<RunRow>, StoreError> {
    let row = conn
        .query_row(
            "SELECT id, started, ended, pid, exit_reason, config_fingerprint, version
             FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            },
        )
        .optional()?;
    let Some((id, started, ended, pid, exit_reason, config_fingerprint, version)) = row else {
        return Ok(None);
    };
    let idt = id.to_string();
    let at = |column| At {
        table: "runs",
        column,
        row: &idt,
    };
    Ok(Some(RunRow {
        id,
        started: parse_ts(&started, at("started"))?,
        ended: ended.map(|e| parse_ts(&e, at("ended"))).transpose()?,
        pid,
        exit_reason,
        config_fingerprint,
        version,
    }))
}

fn exit_reason_of(run: &RunRow) -> String {
    match (&run.ended, &run.exit_reason) {
        (Some(_), Some(r)) => r.clone(),
        (Some(_), None) => "ended without a reason".to_string(),
        (None, _) => format!(
            "run {} (pid {}) recorded no exit: it crashed or was killed",
            run.id, run.pid
        ),
    }
}

pub(crate) fn load_state(conn: &Connection) -> Result<PersistedState, StoreError> {
    let starting_cash = starting_cash(conn)?;
    let fills = fills(conn)?;
    let cash = match starting_cash {
        Some(start) => Some(cash_from(start, &fills)?),
        None => None,
    };
    let seen_exec_ids = fills.iter().map(|f| f.exec_id.clone()).collect();
    let last_run = last_run(conn)?;
    Ok(PersistedState {
        starting_cash,
        cash,
        open_orders: orders(conn, true)?,
        seen_exec_ids,
        next_order_seq: next_order_seq(conn)?,
        trading_state: trading_state(conn)?.0,
        last_exit_reason: last_run.as_ref().map(exit_reason_of),
        last_run,
        fills,
        marks: marks(conn)?,
        peak_equity: meta_get(conn, "peak_equity")?
            .map(|s| {
                parse_dec(
                    &s,
                    At {
                        table: "meta",
                        column: "value",
                        row: "peak_equity",
                    },
                )
            })
            .transpose()?,
        sim_clock: meta_get(conn, "sim_clock")?
            .map(|s| {
                parse_ts(
                    &s,
                    At {
                        table: "meta",
                        column: "value",
                        row: "sim_clock",
                    },
                )
            })
            .transpose()?,
    })
}

pub(crate) fn marks(conn: &Connection) -> Result<Vec<(String, Price, Ts)>, StoreError> {
    let mut st = conn.prepare("SELECT symbol, price, ts FROM marks ORDER BY symbol")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (symbol, price, ts) = row?;
        let at = |column| At {
            table: "marks",
            column,
            row: &symbol,
        };
        out.push((
            symbol.clone(),
            parse_dec(&price, at("price"))?,
            parse_ts(&ts, at("ts"))?,
        ));
    }
    Ok(out)
}

fn cash_from(start: Money, fills: &[FillRow]) -> Result<Money, StoreError> {
    let mut cash = start;
    for f in fills {
        let notional = f.price.checked_mul(Decimal::from(f.qty)).ok_or_else(|| {
            StoreError::Invalid(format!("fill {}: notional overflows", f.exec_id))
        })?;
        let signed = match f.side {
            Side::Buy => -notional,
            Side::Sell => notional,
        };
        let flow = ck(signed.checked_sub(f.commission), "cash", &f.symbol)?;
        cash = cash
            .checked_add(flow)
            .ok_or_else(|| StoreError::Invalid("cash overflows".to_string()))?;
    }
    Ok(cash)
}

fn ck(v: Option<Decimal>, what: &str, symbol: &str) -> Result<Decimal, StoreError> {
    v.ok_or_else(|| StoreError::Invalid(format!("{what} overflows (symbol {symbol})")))
}

fn money(d: Decimal) -> Value {
    Value::String(dec_text(d))
}

/// The `status` summary. Money is decimal text in dollars.
pub(crate) fn status_json(conn: &Connection) -> Result<Value, StoreError> {
    let start = starting_cash(conn)?;

    // Open lots per symbol, exact, marked at the last known price.
    let mut st = conn.prepare(
        "SELECT p.symbol, p.quantity, p.avg_cost, p.cost_basis, m.price, m.ts
         FROM positions p LEFT JOIN marks m ON m.symbol = p.symbol
         WHERE p.quantity != 0 ORDER BY p.symbol",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    })?;
    let mut positions = Vec::new();
    let (mut market_value, mut unrealized) = (Decimal::ZERO, Decimal::ZERO);
    for row in rows {
        let (symbol, qty, avg_cost, cost_basis, mark, mark_ts) = row?;
        let at = |column| At {
            table: "positions",
            column,
            row: &symbol,
        };
        let avg_cost = parse_dec(&avg_cost, at("avg_cost"))?;
        let cost_basis = parse_dec(&cost_basis, at("cost_basis"))?;
        // With no mark yet, value the position at cost rather than invent a price.
        let price = match mark {
            Some(m) => parse_dec(
                &m,
                At {
                    table: "marks",
                    column: "price",
                    row: &symbol,
                },
            )?,
            None => avg_cost,
        };
        let value = ck(
            price.checked_mul(Decimal::from(qty)),
            "market value",
            &symbol,
        )?;
        let upl = ck(value.checked_sub(cost_basis), "unrealized P&L", &symbol)?;
        market_value = ck(market_value.checked_add(value), "market value", &symbol)?;
        unrealized = ck(unrealized.checked_add(upl), "unrealized P&L", &symbol)?;
        positions.push(json!({
            "symbol": symbol,
            "quantity": qty,
            "avg_cost": money(avg_cost),
            "market_price": money(price),
            "mark_ts": mark_ts,
            "market_value": money(value),
            "unrealized_pnl": money(upl),
        }));
    }
    // Per-symbol totals, maintained with every fill: O(symbols), not O(fills), so the status
    // stays cheap on a long-lived database. By the FIFO identity (store/fifo.rs),
    // cash = starting cash + Σ realized_pnl − Σ cost_basis of the open lots.
    let (mut realized, mut basis, mut commissions) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    {
        let mut st =
            conn.prepare("SELECT symbol, realized_pnl, cost_basis, commissions FROM positions")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (sym, r, b, c) = row?;
            let at = |column| At {
                table: "positions",
                column,
                row: &sym,
            };
            realized = ck(
                realized.checked_add(parse_dec(&r, at("realized_pnl"))?),
                "realized P&L",
                &sym,
            )?;
            basis = ck(
                basis.checked_add(parse_dec(&b, at("cost_basis"))?),
                "cost basis",
                &sym,
            )?;
            commissions = ck(
                commissions.checked_add(parse_dec(&c, at("commissions"))?),
                "commissions",
                &sym,
            )?;
        }
    }
    let cash = start
        .map(|s| {
            ck(
                s.checked_add(realized).and_then(|v| v.checked_sub(basis)),
                "cash",
                "all",
            )
        })
        .transpose()?;
    let fill_count: i64 = conn.query_row("SELECT COUNT(*) FROM fills", [], |r| r.get(0))?;
    let equity = cash
        .map(|c| ck(c.checked_add(market_value), "equity", "all"))
        .transpose()?;

    let open: Vec<Value> = orders(conn, true)?
        .iter()
        .map(|o| {
            let (order_type, limit, stop) = super::codec::kind_columns(&o.kind);
            json!({
                "id": o.id.to_string(),
                "symbol": o.symbol,
                "side": o.side.as_str(),
                "quantity": o.qty,
                "filled": o.filled,
                "type": order_type,
                "limit_price": limit.map(dec_text),
                "stop_price": stop.map(dec_text),
                "purpose": o.purpose.as_str(),
                "state": o.state.as_str(),
                "broker_id": o.broker_id,
                "created": super::codec::ts_text(o.created),
            })
        })
        .collect();
    let (state, version) = trading_state(conn)?;
    let (cause, source, state_ts): (String, String, String) = conn.query_row(
        "SELECT cause, source, ts FROM trading_state WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let run = last_run(conn)?;
    let last_exit_reason = last_ended_exit_reason(conn)?;
    let symbols = symbol_feeds(conn)?;
    let dropped: Vec<Value> = symbols
        .iter()
        .filter(|s| s["state"] == "dropped")
        .map(|s| json!({ "symbol": s["symbol"], "reason": s["reason"], "since": s["since"] }))
        .collect();

    Ok(json!({
        "starting_cash": start.map(money),
        "cash": cash.map(money),
        "equity": equity.map(money),
        "market_value": money(market_value),
        "realized_pnl": money(realized),
        "unrealized_pnl": money(unrealized),
        "commissions": money(commissions),
        "positions": positions,
        "open_orders": open,
        "fills": fill_count,
        "trading_state": state.as_str(),
        "trading_state_detail": {
            "state": state.as_str(),
            "cause": cause,
            "source": source,
            "ts": state_ts,
            "version": version,
        },
        "last_run": run.as_ref().map(|r| json!({
            "id": r.id,
            "pid": r.pid,
            "started": super::codec::ts_text(r.started),
            "ended": r.ended.map(super::codec::ts_text),
            "exit_reason": r.exit_reason,
            "version": r.version,
            "config_fingerprint": r.config_fingerprint,
        })),
        "last_exit_reason": last_exit_reason,
        "symbols": symbols,
        "dropped_symbols": dropped,
        "broker_account": broker_account(conn)?,
    }))
}

/// The broker's account as last read by an `--ib-orders paper` run, with its difference from
/// the ledger; `null` when none was read.
fn broker_account(conn: &Connection) -> Result<Value, StoreError> {
    Ok(conn
        .query_row(
            "SELECT account, net_liquidation, total_cash, buying_power, ledger_equity,
                    difference, tolerance, within_tolerance, ts
             FROM broker_account WHERE id = 1",
            [],
            |r| {
                Ok(json!({
                    "account": r.get::<_, String>(0)?,
                    "net_liquidation": r.get::<_, String>(1)?,
                    "total_cash": r.get::<_, Option<String>>(2)?,
                    "buying_power": r.get::<_, Option<String>>(3)?,
                    "ledger_equity": r.get::<_, String>(4)?,
                    "difference": r.get::<_, String>(5)?,
                    "tolerance": r.get::<_, String>(6)?,
                    "within_tolerance": r.get::<_, i64>(7)? != 0,
                    "ts": r.get::<_, String>(8)?,
                }))
            },
        )
        .optional()?
        .unwrap_or(Value::Null))
}

/// Per watchlist symbol of the last IB run: tradeable / untradeable / dropped, delayed data
/// or not, and why. Empty for the simulated market.
fn symbol_feeds(conn: &Connection) -> Result<Vec<Value>, StoreError> {
    let mut st = conn
        .prepare("SELECT symbol, state, delayed, reason, ts FROM symbol_feeds ORDER BY symbol")?;
    let rows = st.query_map([], |r| {
        Ok(json!({
            "symbol": r.get::<_, String>(0)?,
            "state": r.get::<_, String>(1)?,
            "delayed": r.get::<_, i64>(2)? != 0,
            "reason": r.get::<_, String>(3)?,
            "since": r.get::<_, String>(4)?,
        }))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The exit reason of the latest run that recorded an end (the current run, while running,
/// has none yet).
fn last_ended_exit_reason(conn: &Connection) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT exit_reason FROM runs WHERE ended IS NOT NULL ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get::<_, Option<String>>(0),
        )
        .optional()?
        .flatten())
}
