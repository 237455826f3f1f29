//! The SQLite store: migrations, durable intents, batched records, idempotent fills, FIFO
//! positions, the status summary, the process lock, the trading state, and crash atomicity.
//! Every test uses its own temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command as Proc;
use std::time::Duration;

use rusqlite::Connection;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::json;

use robo_core::decision::{Action, Checks, Decision, Inputs};
use robo_core::events::{Record, RiskEvent, StateCause, StateChange};
use robo_core::ledger::Ledger;
use robo_core::orders::OrderState;
use robo_core::risk::{CheckOutcome, RefuseReason, RiskCheck, Verdict};
use robo_core::strategy::{Reason, Signal};
use robo_core::types::{
    ClientOrderId, ConnectionState, ExecId, Fill, OrderKind, OrderPurpose, OrderRequest, Side,
    SymbolId, Tif, TradingState, Ts, Universe,
};
use robo_trader::lock::{LockError, ProcessLock};
use robo_trader::store::{
    PositionRow, RunInfo, Store, StoreError, StoreWriter, WriteOp, WriterOptions, SCHEMA_VERSION,
};

const T0: i64 = 1_704_205_800; // 2024-01-02T14:30:00Z
const FLUSH: Duration = Duration::from_secs(10);

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("robo.db")
}

fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn count(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn req(id: u64, symbol: u16, side: Side, qty: i64, kind: OrderKind) -> OrderRequest {
    OrderRequest {
        id: ClientOrderId(id),
        symbol: SymbolId(symbol),
        side,
        qty,
        kind,
        tif: Tif::Day,
        purpose: OrderPurpose::Entry,
        ts: Ts::from_secs(T0),
    }
}

#[allow(clippy::too_many_arguments)]
fn fill(
    exec: &str,
    order: u64,
    sym: u16,
    side: Side,
    qty: i64,
    price: Decimal,
    comm: Decimal,
    secs: i64,
) -> Fill {
    Fill {
        exec_id: ExecId::from(exec),
        order_id: ClientOrderId(order),
        symbol: SymbolId(sym),
        side,
        qty,
        price,
        commission: comm,
        ts: Ts::from_secs(T0 + secs),
    }
}

fn fill_op(f: Fill, name: &str) -> WriteOp {
    WriteOp::Record {
        rec: Record::Fill(f),
        symbol: name.to_string(),
    }
}

/// A writer that holds a batch open for 10 s, so only a barrier (flush, intent) commits it.
fn slow_writer(store: &Store) -> StoreWriter {
    store
        .start_writer(WriterOptions {
            linger: Duration::from_secs(10),
            ..WriterOptions::default()
        })
        .unwrap()
}

#[test]
fn migrations_are_idempotent_and_set_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        let s = Store::open(&path).unwrap();
        s.set_trading_state(TradingState::Halted, "test", "test", Ts::from_secs(T0))
            .unwrap();
    }
    let s = Store::open(&path).unwrap();
    drop(s);
    let c = raw(&path);
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 2);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // The second open re-ran nothing: the seeded state row was not reset to 'active'.
    assert_eq!(count(&c, "trading_state"), 1);
    let st: String = c
        .query_row("SELECT state FROM trading_state", [], |r| r.get(0))
        .unwrap();
    assert_eq!(st, "halted");
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        tables,
        [
            "broker_account",
            "connection_events",
            "decisions",
            "equity",
            "fills",
            "lots",
            "marks",
            "meta",
            "orders",
            "positions",
            "risk_events",
            "runs",
            "symbol_feeds",
            "trading_state",
            "trading_state_history",
        ]
    );
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    Store::open(&path).unwrap();
    raw(&path).pragma_update(None, "user_version", 99).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooNew {
                found: 99,
                supported: 2
            }
        ),
        "{err}"
    );
    let err = Store::open_read_only(&path).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn intent_is_committed_before_return() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Store::open(&path).unwrap();
    let writer = slow_writer(&store);
    let r = OrderRequest {
        tif: Tif::Gtc,
        ..req(
            7,
            0,
            Side::Buy,
            10,
            OrderKind::StopLimit {
                stop: dec!(101.5),
                limit: dec!(101.75),
            },
        )
    };
    writer.commit_intent(&r, "AAPL").unwrap();

    let other = raw(&path);
    use rusqlite::types::Value as V;
    let t = |s: &str| V::Text(s.to_string());
    let row: Vec<V> = other
        .query_row(
            "SELECT id, seq, symbol, side, quantity, order_type, limit_price, stop_price, tif,
                    purpose, state, filled_qty, created_ts, broker_id FROM orders",
            [],
            |r| (0..14).map(|i| r.get::<_, V>(i)).collect(),
        )
        .unwrap();
    assert_eq!(
        row,
        [
            t("C7"),
            V::Integer(7),
            t("AAPL"),
            t("BUY"),
            V::Integer(10),
            t("STP LMT"),
            t("101.75"),
            t("101.5"),
            t("GTC"),
            t("entry"),
            t("new"),
            V::Integer(0),
            t("2024-01-02T14:30:00.000Z"),
            V::Null,
        ]
    );
    let next: String = other
        .query_row(
            "SELECT value FROM meta WHERE key = 'next_order_seq'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(next, "8");

    // The direct path too, and a reused id is refused.
    store
        .commit_intent(&req(8, 1, Side::Sell, 5, OrderKind::Market), "MSFT")
        .unwrap();
    assert_eq!(count(&other, "orders"), 2);
    let err = writer.commit_intent(&r, "AAPL").unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateOrder(ref id) if id == "C7"),
        "{err}"
    );
    assert_eq!(store.load_state().unwrap().next_order_seq, 9);
    writer.shutdown(FLUSH).unwrap();
}

fn decision(sym: u16, secs: i64, close: Decimal) -> Decision {
    let mut inputs = Inputs::default();
    inputs.push("fast", 101.5);
    inputs.push("slow", 100.25);
    let refusal = RefuseReason::OverLimit {
        value: dec!(12000),
        limit: dec!(10000),
    };
    let mut checks = Checks::default();
    checks.push(RiskCheck::TradingState, CheckOutcome::Pass);
    checks.push(
        RiskCheck::OrderNotional,
        CheckOutcome::Fail { reason: refusal },
    );
    Decision {
        symbol: SymbolId(sym),
        ts: Ts::from_secs(T0 + secs),
        close,
        inputs,
        signal: Signal::buy(
            0.75,
            Reason::new("fast {0} above slow {1}", [101.5, 100.25, 0.0]),
        ),
        action: Action::Refused,
        verdict: Some(Verdict::Refused {
            check: RiskCheck::OrderNotional,
            reason: refusal,
        }),
        checks,
    }
}

#[test]
fn batched_records_land_after_flush_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Store::open(&path).unwrap();
    let writer = slow_writer(&store);
    let other = raw(&path);

    for i in 0..3 {
        writer.send(WriteOp::Record {
            rec: Record::Decision(Box::new(decision(0, 60 * i, dec!(100.5)))),
            symbol: "AAPL".into(),
        });
    }
    writer.send(WriteOp::Record {
        rec: Record::Risk(RiskEvent {
            symbol: SymbolId(0),
            ts: Ts::from_secs(T0 + 120),
            check: RiskCheck::OrderNotional,
            reason: RefuseReason::OverLimit {
                value: dec!(12000),
                limit: dec!(10000),
            },
        }),
        symbol: "AAPL".into(),
    });
    writer.send(WriteOp::Record {
        rec: Record::Equity {
            ts: Ts::from_secs(T0 + 120),
            cash: dec!(99000.5),
            equity: dec!(100001.25),
            realized: dec!(1.25),
            unrealized: dec!(0),
        },
        symbol: String::new(),
    });
    writer.send(WriteOp::Connection {
        state: ConnectionState::Degraded,
        reason: "farm 2103".into(),
        ts: Ts::from_secs(T0),
    });
    std::thread::sleep(Duration::from_millis(200));
    // The batch is still lingering: nothing is visible yet.
    assert_eq!(count(&other, "decisions"), 0);

    writer.flush(FLUSH).unwrap();
    assert_eq!(count(&other, "decisions"), 3);
    assert_eq!(count(&other, "risk_events"), 1);
    assert_eq!(count(&other, "equity"), 1);
    assert_eq!(count(&other, "connection_events"), 1);
    let stats = writer.stats();
    assert_eq!(
        (stats.committed, stats.failed, stats.transactions),
        (6, 0, 1)
    );

    let d: (
        String,
        String,
        f64,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    ) = other
        .query_row(
            "SELECT ts, close, strength, reason, action, verdict, refused_check, refused_reason,
                    inputs, checks FROM decisions ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(d.0, "2024-01-02T14:32:00.000Z");
    assert_eq!(d.1, "100.5");
    assert_eq!(d.2, 0.75);
    assert_eq!(d.3, "fast 101.50 above slow 100.25");
    assert_eq!(
        (d.4.as_str(), d.5.as_str(), d.6.as_str()),
        ("refused", "refused", "order_notional")
    );
    assert_eq!(d.7, "$12000 exceeds the limit of $10000");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&d.8).unwrap(),
        json!({"fast": 101.5, "slow": 100.25})
    );
    let checks: serde_json::Value = serde_json::from_str(&d.9).unwrap();
    assert_eq!(checks[0]["check"], "trading_state");
    assert_eq!(checks[0]["result"], "pass");
    assert_eq!(checks[1]["check"], "order_notional");
    assert_eq!(checks[1]["result"], "fail");
    let r: (String, String) = other
        .query_row("SELECT check_name, reason FROM risk_events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        r,
        (
            "order_notional".into(),
            "$12000 exceeds the limit of $10000".into()
        )
    );
    let detail: String = other
        .query_row("SELECT detail FROM risk_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&detail).unwrap(),
        json!({"kind": "over_limit", "value": "12000", "limit": "10000"})
    );
    let e: (String, String) = other
        .query_row("SELECT cash, equity FROM equity", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(e, ("99000.5".into(), "100001.25".into()));
    writer.shutdown(FLUSH).unwrap();
    assert!(matches!(
        writer.try_send(WriteOp::Marks {
            marks: vec![],
            sim_clock: Ts(0),
            peak_equity: dec!(0)
        }),
        Err(StoreError::WriterGone)
    ));
}

#[test]
fn a_bad_op_rolls_back_alone_and_flush_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Store::open(&path).unwrap();
    let writer = slow_writer(&store);
    writer.send(fill_op(
        fill("E1", 1, 0, Side::Buy, 10, dec!(100), dec!(1), 0),
        "AAPL",
    ));
    writer.send(fill_op(
        fill("E2", 1, 0, Side::Buy, 0, dec!(100), dec!(1), 1),
        "AAPL",
    ));
    writer.send(fill_op(
        fill("E3", 1, 0, Side::Buy, 5, dec!(100), dec!(1), 2),
        "AAPL",
    ));
    let err = writer.flush(FLUSH).unwrap_err();
    assert!(
        matches!(err, StoreError::WriteFailed { count: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("E2"), "{err}");
    let ids: Vec<String> = store
        .fills()
        .unwrap()
        .into_iter()
        .map(|f| f.exec_id.0.to_string())
        .collect();
    assert_eq!(ids, ["E1", "E3"]);
    assert_eq!(store.positions().unwrap()[0].quantity, 15);
    // Reported once: the next flush is clean.
    writer.flush(FLUSH).unwrap();
    writer.shutdown(FLUSH).unwrap();
}

#[test]
fn duplicate_fill_exec_id_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Store::open(&path).unwrap();
    let writer = store.start_writer(WriterOptions::default()).unwrap();
    let f = fill("E1", 1, 0, Side::Buy, 10, dec!(100), dec!(1), 0);
    writer.send(fill_op(f.clone(), "AAPL"));
    writer.send(fill_op(f.clone(), "AAPL"));
    writer.flush(FLUSH).unwrap();
    // Again in a later batch, with different numbers: the first record wins.
    writer.send(fill_op(Fill { qty: 99, ..f }, "AAPL"));
    writer.flush(FLUSH).unwrap();
    let c = raw(&path);
    assert_eq!(count(&c, "fills"), 1);
    assert_eq!(count(&c, "lots"), 1);
    let q: i64 = c
        .query_row(
            "SELECT quantity FROM positions WHERE symbol = 'AAPL'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(q, 10);
    writer.shutdown(FLUSH).unwrap();
}

/// AAPL: buy 10 @ 100, buy 10 @ 110, sell 15 @ 120, sell 10 @ 125 (flips to 5 short),
/// buy 2 @ 118. MSFT: buy 5 @ 200. Commission 1 per fill.
fn trading_fills() -> Vec<(Fill, &'static str)> {
    vec![
        (
            fill("A1", 1, 0, Side::Buy, 10, dec!(100), dec!(1), 0),
            "AAPL",
        ),
        (
            fill("M1", 2, 1, Side::Buy, 5, dec!(200), dec!(1), 30),
            "MSFT",
        ),
        (
            fill("A2", 3, 0, Side::Buy, 10, dec!(110), dec!(1), 60),
            "AAPL",
        ),
        (
            fill("A3", 4, 0, Side::Sell, 15, dec!(120), dec!(1), 120),
            "AAPL",
        ),
        (
            fill("A4", 5, 0, Side::Sell, 10, dec!(125), dec!(1), 180),
            "AAPL",
        ),
        (
            fill("A5", 6, 0, Side::Buy, 2, dec!(118), dec!(1), 240),
            "AAPL",
        ),
    ]
}

#[test]
fn positions_rebuilt_from_fills_equal_the_incremental_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Store::open(&path).unwrap();
    let writer = store.start_writer(WriterOptions::default()).unwrap();
    for (f, name) in trading_fills() {
        writer.send(fill_op(f, name));
    }
    writer.shutdown(FLUSH).unwrap();

    let incremental = store.positions().unwrap();
    let lots = store.lots().unwrap();
    // By hand: AAPL sells 15 @ 120 close 10 @ 100 (+200) and 5 @ 110 (+50); sell 10 @ 125
    // closes 5 @ 110 (+75) and opens 5 short @ 125; buy 2 @ 118 covers 2 (+14).
    // Lot P&L 339, commissions 5 -> realized 334. Left: 3 short @ 125.
    assert_eq!(
        incremental,
        vec![
            PositionRow {
                symbol: "AAPL".into(),
                quantity: -3,
                avg_cost: dec!(125),
                cost_basis: dec!(-375),
                realized_pnl: dec!(334),
                commissions: dec!(5),
            },
            PositionRow {
                symbol: "MSFT".into(),
                quantity: 5,
                avg_cost: dec!(200),
                cost_basis: dec!(1000),
                realized_pnl: dec!(-1),
                commissions: dec!(1),
            },
        ]
    );
    let remaining: Vec<(String, i64)> = lots
        .iter()
        .map(|l| (l.open_exec_id.clone(), l.remaining))
        .collect();
    assert_eq!(
        remaining,
        [
            ("A1".into(), 0),
            ("M1".into(), 5),
            ("A2".into(), 0),
            ("A4".into(), 3)
        ]
    );
    assert_eq!(lots[3].side, Side::Sell);

    // Wreck the derived tables, then rebuild them from the fills alone.
    raw(&path)
        .execute_batch("DELETE FROM lots; UPDATE positions SET quantity = 999;")
        .unwrap();
    assert_eq!(store.rebuild_positions().unwrap(), 6);
    assert_eq!(store.positions().unwrap(), incremental);
    assert_eq!(store.lots().unwrap(), lots);

    // The core ledger agrees.
    let universe = Universe::new(["AAPL", "MSFT"]).unwrap();
    let mut ledger = Ledger::new(2, dec!(100000));
    for f in store.fills().unwrap() {
        ledger.apply_fill(&f.to_fill(&universe).unwrap());
    }
    assert_eq!(ledger.qty(SymbolId(0)), -3);
    assert_eq!(ledger.realized(), dec!(334) + dec!(-1));
    assert_eq!(ledger.position(SymbolId(1)).avg_cost, dec!(200));

    // And plain SQL over the fills gives the same quantities (the documented query).
    let c = raw(&path);
    let q: Vec<(String, i64)> = c
        .prepare(
            "SELECT symbol, SUM(CASE side WHEN 'BUY' THEN quantity ELSE -quantity END)
             FROM fills GROUP BY symbol ORDER BY symbol",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(q, [("AAPL".into(), -3), ("MSFT".into(), 5)]);
}

#[test]
fn status_json_numbers_match_hand_computation() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.init_starting_cash(dec!(100000)).unwrap(),
        dec!(100000)
    );
    // A later run's config does not rewrite history.
    assert_eq!(store.init_starting_cash(dec!(5)).unwrap(), dec!(100000));
    store
        .commit_intent(
            &req(1, 0, Side::Buy, 50, OrderKind::Limit { limit: dec!(99.5) }),
            "AAPL",
        )
        .unwrap();
    let writer = store.start_writer(WriterOptions::default()).unwrap();
    let fills = [
        (
            fill("A1", 2, 0, Side::Buy, 10, dec!(100), dec!(1), 0),
            "AAPL",
        ),
        (
            fill("A2", 3, 0, Side::Buy, 10, dec!(110), dec!(1), 60),
            "AAPL",
        ),
        (
            fill("A3", 4, 0, Side::Sell, 15, dec!(120), dec!(1.5), 120),
            "AAPL",
        ),
        (
            fill("M1", 5, 1, Side::Buy, 5, dec!(200), dec!(1), 180),
            "MSFT",
        ),
    ];
    for (f, n) in fills {
        writer.send(fill_op(f, n));
    }
    writer.send(WriteOp::Marks {
        marks: vec![
            ("AAPL".into(), dec!(125), Ts::from_secs(T0 + 300)),
            ("MSFT".into(), dec!(190), Ts::from_secs(T0 + 300)),
        ],
        sim_clock: Ts::from_secs(T0 + 300),
        peak_equity: dec!(100300),
    });
    // An older mark must not overwrite a newer one.
    writer.send(WriteOp::Marks {
        marks: vec![("AAPL".into(), dec!(1), Ts::from_secs(T0 + 1))],
        sim_clock: Ts::from_secs(T0 + 300),
        peak_equity: dec!(100300),
    });
    writer.shutdown(FLUSH).unwrap();

    let reader = Store::open_read_only(&path).unwrap();
    let s = reader.status_json().unwrap();
    // cash = 100000 - 1000 - 1100 + 1800 - 1000 - 4.5 = 98695.5
    // AAPL: 5 @ 110 left, realized 200 + 50 - 3.5 = 246.5; MSFT realized -1.
    // value = 5*125 + 5*190 = 1575; unrealized = 5*(125-110) + 5*(190-200) = 25.
    assert_eq!(s["starting_cash"], "100000");
    assert_eq!(s["cash"], "98695.5");
    assert_eq!(s["equity"], "100270.5");
    assert_eq!(s["realized_pnl"], "245.5");
    assert_eq!(s["unrealized_pnl"], "25");
    assert_eq!(s["commissions"], "4.5");
    assert_eq!(s["fills"], 4);
    assert_eq!(
        s["positions"],
        json!([
            {"symbol": "AAPL", "quantity": 5, "avg_cost": "110", "market_price": "125",
             "mark_ts": "2024-01-02T14:35:00.000Z", "market_value": "625", "unrealized_pnl": "75"},
            {"symbol": "MSFT", "quantity": 5, "avg_cost": "200", "market_price": "190",
             "mark_ts": "2024-01-02T14:35:00.000Z", "market_value": "950", "unrealized_pnl": "-50"},
        ])
    );
    assert_eq!(s["open_orders"][0]["id"], "C1");
    assert_eq!(s["open_orders"][0]["limit_price"], "99.5");
    assert_eq!(s["open_orders"].as_array().unwrap().len(), 1);
    assert_eq!(s["trading_state"], "active");
    assert_eq!(s["last_exit_reason"], serde_json::Value::Null);

    // The documented sqlite3 cash identity reads the same number through CAST(... AS REAL).
    let cash: f64 = raw(&path)
        .query_row(
            "SELECT (SELECT CAST(value AS REAL) FROM meta WHERE key = 'starting_cash')
                  - COALESCE(SUM(CASE side WHEN 'BUY' THEN quantity * CAST(price AS REAL) ELSE 0 END), 0)
                  + COALESCE(SUM(CASE side WHEN 'SELL' THEN quantity * CAST(price AS REAL) ELSE 0 END), 0)
                  - COALESCE(SUM(CAST(commission AS REAL)), 0)
             FROM fills",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!((cash - 98695.5).abs() < 1e-6, "{cash}");
    assert!(matches!(
        reader.set_trading_state(TradingState::Halted, "x", "x", Ts(0)),
        Err(StoreError::ReadOnly)
    ));
}

#[test]
fn load_state_resumes_orders_seq_marks_and_exit_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Store::open(&path).unwrap();
    let empty = store.load_state().unwrap();
    assert_eq!(
        (
            empty.next_order_seq,
            empty.cash,
            empty.last_exit_reason.clone()
        ),
        (1, None, None)
    );

    store.init_starting_cash(dec!(1000)).unwrap();
    let run = store
        .begin_run(&RunInfo {
            started: Ts::from_secs(T0),
            pid: 4242,
            config_fingerprint: "abc".into(),
            version: "0.1.0".into(),
        })
        .unwrap();
    let writer = store.start_writer(WriterOptions::default()).unwrap();
    for id in 1..=3 {
        writer
            .commit_intent(&req(id, 0, Side::Buy, 10, OrderKind::Market), "AAPL")
            .unwrap();
    }
    let status = |id, state, filled| WriteOp::Record {
        rec: Record::OrderStatus {
            order_id: ClientOrderId(id),
            state,
            filled_qty: filled,
            reason: None,
            ts: Ts::from_secs(T0 + 9),
        },
        symbol: String::new(),
    };
    writer.send(WriteOp::BrokerId {
        order_id: ClientOrderId(2),
        broker_id: "IB-77".into(),
        ts: Ts::from_secs(T0 + 1),
    });
    writer.send(fill_op(
        fill("E1", 1, 0, Side::Buy, 10, dec!(10), dec!(0.5), 2),
        "AAPL",
    ));
    writer.send(status(1, OrderState::Filled, 10));
    writer.send(fill_op(
        fill("E2", 2, 0, Side::Buy, 4, dec!(10.5), dec!(0.5), 3),
        "AAPL",
    ));
    writer.send(fill_op(
        fill("E3", 2, 0, Side::Buy, 2, dec!(11), dec!(0.5), 4),
        "AAPL",
    ));
    writer.send(status(2, OrderState::PartiallyFilled, 6));
    writer.send(WriteOp::Marks {
        marks: vec![],
        sim_clock: Ts::from_secs(T0 + 60),
        peak_equity: dec!(1002.5),
    });
    writer.shutdown(FLUSH).unwrap();

    // The run never ended: it looks crashed.
    let st = store.load_state().unwrap();
    assert_eq!(st.next_order_seq, 4);
    assert_eq!(
        st.cash,
        Some(dec!(1000) - dec!(100) - dec!(42) - dec!(22) - dec!(1.5))
    );
    assert_eq!(st.fills.len(), 3);
    assert!(st.seen_exec_ids.contains(&ExecId::from("E3")));
    let open: Vec<(String, OrderState, i64)> = st
        .open_orders
        .iter()
        .map(|o| (o.id.to_string(), o.state, o.filled))
        .collect();
    assert_eq!(
        open,
        [
            ("C2".into(), OrderState::PartiallyFilled, 6),
            ("C3".into(), OrderState::New, 0)
        ]
    );
    // (4 x 10.5 + 2 x 11) / 6 = 64 / 6 = 10.666667 to six places.
    assert_eq!(st.open_orders[0].avg_fill_price, Some(dec!(10.666667)));
    assert_eq!(st.open_orders[0].broker_id.as_deref(), Some("IB-77"));
    assert_eq!(
        st.marks,
        [("AAPL".to_string(), dec!(11), Ts::from_secs(T0 + 4))]
    );
    assert_eq!(st.peak_equity, Some(dec!(1002.5)));
    assert_eq!(st.sim_clock, Some(Ts::from_secs(T0 + 60)));
    assert_eq!(
        st.last_exit_reason.as_deref(),
        Some("run 1 (pid 4242) recorded no exit: it crashed or was killed")
    );
    let universe = Universe::new(["MSFT", "AAPL"]).unwrap();
    let m = st.open_orders[0].to_managed(&universe).unwrap();
    assert_eq!(
        (m.req.symbol, m.req.id, m.filled),
        (SymbolId(1), ClientOrderId(2), 6)
    );
    assert!(st.fills[0]
        .to_fill(&Universe::new(["MSFT"]).unwrap())
        .is_none());

    store
        .end_run(run, Ts::from_secs(T0 + 100), "signal: SIGTERM")
        .unwrap();
    let st = store.load_state().unwrap();
    assert_eq!(st.last_exit_reason.as_deref(), Some("signal: SIGTERM"));
    assert_eq!(
        store.status_json().unwrap()["last_exit_reason"],
        "signal: SIGTERM"
    );
}

#[test]
fn lock_conflict_names_the_pid_and_leaves_the_database_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Store::open(&path).unwrap();
    let lock = ProcessLock::acquire(&path).unwrap();
    assert_eq!(lock.path(), dir.path().join("robo.db.lock"));
    let pid = std::process::id();
    assert_eq!(
        std::fs::read_to_string(lock.path()).unwrap().trim(),
        pid.to_string()
    );

    let err = ProcessLock::acquire(&path).unwrap_err();
    match &err {
        LockError::Held { pid: held, .. } => assert_eq!(*held, Some(pid)),
        other => panic!("expected Held, got {other:?}"),
    }
    assert!(
        err.to_string().starts_with(&format!(
            "another robo-trader (pid {pid}) is running on this database; stop it first"
        )),
        "{err}"
    );
    // Readers are not locked out.
    store
        .set_trading_state(TradingState::ReduceOnly, "t", "t", Ts(0))
        .unwrap();
    assert_eq!(
        Store::open_read_only(&path)
            .unwrap()
            .trading_state()
            .unwrap(),
        TradingState::ReduceOnly
    );

    drop(lock);
    let again = ProcessLock::acquire(&path).unwrap();
    drop(again);
}

#[test]
fn trading_state_round_trips_and_bumps_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let runner = Store::open(&path).unwrap();
    assert_eq!(runner.trading_state().unwrap(), TradingState::Active);
    let v0 = runner.trading_state_version().unwrap();

    // The kill-switch CLI: another handle, as another process would have.
    let cli = Store::open(&path).unwrap();
    cli.set_trading_state(
        TradingState::Halted,
        "operator: kill-switch on",
        "cli",
        Ts::from_secs(T0),
    )
    .unwrap();
    assert_eq!(runner.trading_state().unwrap(), TradingState::Halted);
    let v1 = runner.trading_state_version().unwrap();
    assert_eq!(v1, v0 + 1);

    // The engine's own change, through the writer.
    let writer = runner.start_writer(WriterOptions::default()).unwrap();
    writer.send(WriteOp::Record {
        rec: Record::State(StateChange {
            from: TradingState::Halted,
            to: TradingState::ReduceOnly,
            cause: StateCause::DailyLoss {
                loss: dec!(512.345),
                limit: dec!(500),
            },
            ts: Ts::from_secs(T0 + 60),
        }),
        symbol: String::new(),
    });
    writer.send(WriteOp::TradingState {
        state: TradingState::Active,
        cause: "operator".into(),
        source: "dashboard".into(),
        ts: Ts::from_secs(T0 + 120),
    });
    writer.shutdown(FLUSH).unwrap();
    assert_eq!(cli.trading_state().unwrap(), TradingState::Active);
    assert_eq!(cli.trading_state_version().unwrap(), v1 + 2);

    let hist: Vec<(String, String, String)> = raw(&path)
        .prepare("SELECT state, cause, source FROM trading_state_history ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        hist,
        [
            (
                "halted".into(),
                "operator: kill-switch on".into(),
                "cli".into()
            ),
            (
                "reduce_only".into(),
                "daily loss $512.35 reached the limit of $500".into(),
                "engine".into()
            ),
            ("active".into(), "operator".into(), "dashboard".into()),
        ]
    );
    // It persists across a reopen.
    drop(runner);
    assert_eq!(
        Store::open(&path)
            .unwrap()
            .load_state()
            .unwrap()
            .trading_state,
        TradingState::Active
    );
}

#[test]
fn status_reads_while_another_connection_holds_the_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Store::open(&path).unwrap();
    store.init_starting_cash(dec!(100000)).unwrap();
    store
        .write(&fill_op(
            fill("E1", 1, 0, Side::Buy, 10, dec!(50), dec!(0), 0),
            "AAPL",
        ))
        .unwrap();

    let writer = raw(&path);
    writer
        .execute_batch("BEGIN IMMEDIATE; DELETE FROM fills;")
        .unwrap();
    let reader = Store::open_read_only(&path).unwrap();
    let started = std::time::Instant::now();
    let s = reader.status_json().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(s["cash"], "99500");
    assert_eq!(s["fills"], 1);
    writer.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn read_only_open_of_a_missing_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open_read_only(&db(&dir)).unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(!db(&dir).exists());
}

// --- Crash atomicity: a child process (this test binary) dies at a failpoint. ---

const CHILD_ENV: &str = "ROBO_STORE_TEST_CHILD_DB";

/// Runs only as the child of the crash tests.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let path = PathBuf::from(path);
    // Held until the abort: the kernel must release it.
    let _lock = ProcessLock::acquire(&path).unwrap();
    let store = Store::open(&path).unwrap();
    let writer = slow_writer(&store);
    writer
        .commit_intent(&req(1, 0, Side::Buy, 10, OrderKind::Market), "AAPL")
        .unwrap();
    for i in 0..10 {
        writer.send(WriteOp::Connection {
            state: ConnectionState::Ready,
            reason: format!("op {i}"),
            ts: Ts::from_secs(T0),
        });
    }
    writer.flush(FLUSH).unwrap();
    // Not reached when a failpoint fires.
    std::process::exit(3);
}

fn run_child(failpoint: &str) -> (PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let mut cmd = Proc::new(std::env::current_exe().unwrap());
    // No core dump from the deliberate abort.
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let zero = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &zero);
            Ok(())
        });
    }
    let status = cmd
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .env("ROBO_FAILPOINT", failpoint)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        !status.success() && status.code() != Some(3),
        "child should have aborted: {status:?}"
    );
    (path, dir)
}

#[test]
fn crash_mid_batch_commits_nothing_of_that_batch() {
    let (path, _dir) = run_child("mid_batch");
    // The aborted child's lock is gone, though its pid is still in the file.
    assert!(!std::fs::read_to_string(path.with_extension("db.lock"))
        .unwrap()
        .trim()
        .is_empty());
    let lock = ProcessLock::acquire(&path).unwrap();
    assert_eq!(
        std::fs::read_to_string(lock.path()).unwrap().trim(),
        std::process::id().to_string()
    );
    let store = Store::open(&path).unwrap();
    // The intent committed before the batch survives; no half of the batch does.
    assert_eq!(store.orders().unwrap().len(), 1);
    assert_eq!(count(&raw(&path), "connection_events"), 0);
}

#[test]
fn crash_right_after_an_intent_commit_keeps_the_intent() {
    let (path, _dir) = run_child("after_intent_commit");
    let store = Store::open(&path).unwrap();
    let orders = store.orders().unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(
        (orders[0].id, orders[0].state),
        (ClientOrderId(1), OrderState::New)
    );
    assert_eq!(store.load_state().unwrap().next_order_seq, 2);
}

/// Not a test: prints what `synchronous=FULL` costs per commit on this disk.
/// `cargo test -p robo-trader --test store measure_sync -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_sync_cost() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = db(&dir);
    let store = Store::open(&path).unwrap();
    let n = 200u64;
    let t = std::time::Instant::now();
    for i in 1..=n {
        store
            .commit_intent(&req(i, 0, Side::Buy, 1, OrderKind::Market), "AAPL")
            .unwrap();
    }
    let full = t.elapsed() / n as u32;
    let t = std::time::Instant::now();
    for i in 0..n {
        store
            .write(&WriteOp::Connection {
                state: ConnectionState::Ready,
                reason: i.to_string(),
                ts: Ts(0),
            })
            .unwrap();
    }
    let normal = t.elapsed() / n as u32;
    let writer = store.start_writer(WriterOptions::default()).unwrap();
    let t = std::time::Instant::now();
    for i in 0..10_000 {
        writer.send(WriteOp::Connection {
            state: ConnectionState::Ready,
            reason: i.to_string(),
            ts: Ts(0),
        });
    }
    writer.flush(FLUSH).unwrap();
    let batched = t.elapsed() / 10_000;
    println!(
        "per commit: FULL intent {full:?}, NORMAL single op {normal:?}; batched per op {batched:?}"
    );
}
