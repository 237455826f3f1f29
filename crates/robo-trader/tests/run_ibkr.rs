//! `robo-trader run --broker ibkr --ib-orders paper` against the in-process fake gateway: it
//! trades, survives two forced drops (reconciling after each), stops cleanly on SIGTERM, and
//! its ledger ends equal to the gateway's executions, with every order sent exactly once.

mod harness;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use fake_ibgw::world::{ExecRecord, Side as GwSide, SymbolSpec, WorldConfig};
use fake_ibgw::{FakeGateway, GatewayConfig, Handle, Request, RequestKind};
use harness::{count, open_db, ready_count, robo, runtime, try_count, Proc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const SYMBOLS: [&str; 3] = ["AAPL", "MSFT", "SPY"];
const STARTING_CASH: Decimal = dec!(100000);

/// The sma_crossover on 2/4 minute bars trades every few bars; no cooldown, loose loss limits,
/// no restart-window pause (the fake never restarts).
const CONFIG: &str = r#"
[strategy]
name = "sma_crossover"
fast = 2
slow = 4

[risk]
reentry_cooldown_secs = 0
daily_loss_pct = 0.5
max_drawdown_pct = 0.9

[ib]
restart_window = false
"#;

/// One execution as both sides can state it: (exec id, order ref, symbol, signed qty, price,
/// commission).
type Exec = (String, String, String, i64, Decimal, Decimal);

fn db_fills(db: &Path) -> Vec<Exec> {
    let c = open_db(db).expect("database");
    let mut st = c
        .prepare(
            "SELECT exec_id, order_id, symbol, side, quantity, price, commission FROM fills ORDER BY id",
        )
        .unwrap();
    let rows = st
        .query_map([], |r| {
            let side: String = r.get(3)?;
            let qty: i64 = r.get(4)?;
            let price: String = r.get(5)?;
            let commission: String = r.get(6)?;
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                if side == "BUY" { qty } else { -qty },
                price.parse::<Decimal>().expect("price"),
                commission.parse::<Decimal>().expect("commission"),
            ))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn gw_exec(e: &ExecRecord) -> Exec {
    (
        e.exec_id.clone(),
        e.order_ref.clone().unwrap_or_default(),
        e.symbol.clone(),
        match e.side {
            GwSide::Buy => e.quantity,
            GwSide::Sell => -e.quantity,
        },
        Decimal::new(e.price_cents, 2),
        Decimal::new(e.commission_micros, 6),
    )
}

fn normalized(mut v: Vec<Exec>) -> Vec<Exec> {
    for e in &mut v {
        e.4 = e.4.normalize();
        e.5 = e.5.normalize();
    }
    v.sort();
    v
}

fn filled_count(db: &Path) -> i64 {
    count(db, "SELECT COUNT(*) FROM orders WHERE state = 'filled'")
}

async fn gateway() -> Handle {
    let config = GatewayConfig {
        world: WorldConfig {
            symbols: vec![
                SymbolSpec::new("AAPL", 265_598, 19_000, 2),
                SymbolSpec::new("MSFT", 272_093, 42_000, 4),
                SymbolSpec::new("SPY", 756_733, 58_000, 3),
            ],
            ..WorldConfig::default()
        },
        // 5-second bars every 100 ms: a minute bar every 1.2 s.
        bar_interval: Duration::from_millis(100),
        ..GatewayConfig::default()
    };
    FakeGateway::start(config).await.expect("gateway starts")
}

/// Starts `robo-trader run --broker ibkr --ib-orders <orders>` against `gw`.
fn start(dir: &Path, gw: &Handle, orders: &str) -> Proc {
    let port = gw.port().to_string();
    let symbols = SYMBOLS.join(",");
    Proc::run(
        dir,
        CONFIG,
        &[
            "--broker",
            "ibkr",
            "--ib-orders",
            orders,
            "--ib-port",
            &port,
            "--symbols",
            &symbols,
        ],
        &[],
    )
}

fn place_requests(gw: &Handle) -> usize {
    gw.requests_of(RequestKind::PlaceOrder).len()
}

#[test]
fn trades_through_two_drops_and_matches_the_gateway() {
    let rt = runtime();
    let gw = rt.block_on(gateway());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("robo.db");
    let mut p = start(dir.path(), &gw, "paper");

    p.wait_for("the first Ready", Duration::from_secs(15), |_| {
        ready_count(&db) >= 1
    });
    p.wait_for("10 filled orders", Duration::from_secs(30), |_| {
        filled_count(&db) >= 10
    });

    // Drop 1: a plain drop between orders.
    let before = ready_count(&db);
    gw.drop_now();
    p.wait_for("reconnection 1", Duration::from_secs(15), |_| {
        gw.connection_count() > 1 && ready_count(&db) > before
    });
    // Drop 2: with fills in flight. The gateway executes the next order at once but holds its
    // answers; the drop loses them, so only reconciliation can book those fills.
    let before = ready_count(&db);
    let sent = place_requests(&gw);
    gw.delay(RequestKind::PlaceOrder, Duration::from_secs(3));
    p.wait_for("an order to hold", Duration::from_secs(60), |_| {
        place_requests(&gw) > sent
    });
    gw.drop_now();
    gw.clear_delay(RequestKind::PlaceOrder);
    p.wait_for("reconnection 2", Duration::from_secs(15), |_| {
        gw.connection_count() > 2 && ready_count(&db) > before
    });
    let after_drops = filled_count(&db);
    p.wait_for("trading after the drops", Duration::from_secs(60), |_| {
        filled_count(&db) >= after_drops + 3
    });
    p.stop();

    // One socket at a time, three connections (the first and two reconnects), one client id.
    assert_eq!(gw.max_simultaneous_connections(), 1);
    assert_eq!(gw.connection_count(), 3, "log:\n{}", p.log_tail());
    assert!(gw.client_ids_seen().iter().all(|id| *id == 10));

    // The ledger equals the gateway's executions, fill by fill.
    let ours = normalized(db_fills(&db));
    let theirs = normalized(gw.with_world(|w| w.executions().iter().map(gw_exec).collect()));
    assert!(ours.len() >= 13, "only {} fills", ours.len());
    assert_eq!(ours, theirs);

    // Positions and cash, computed from our fills by hand, equal the gateway's account.
    let mut qty: BTreeMap<String, i64> = BTreeMap::new();
    let mut cash = STARTING_CASH;
    for (_, _, sym, q, price, commission) in &ours {
        *qty.entry(sym.clone()).or_default() += q;
        cash -= Decimal::from(*q) * price + commission;
    }
    qty.retain(|_, q| *q != 0);
    let (gw_qty, gw_cash) = gw.with_world(|w| {
        let q: BTreeMap<String, i64> = w
            .positions()
            .iter()
            .filter(|(_, p)| p.quantity != 0)
            .map(|(s, p)| (s.clone(), p.quantity))
            .collect();
        (q, Decimal::new(w.cash_micros(), 6))
    });
    assert_eq!(qty, gw_qty);
    assert_eq!(cash.normalize(), gw_cash.normalize());
    // The held fills came from reconciliation (and, by the equality above, exactly once).
    let log = std::fs::read_to_string(&p.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("reconciled") && !l.contains("fills=0 ")),
        "no reconciliation booked a fill; log:\n{}",
        p.log_tail()
    );

    // No order sent twice: each orderRef placed once, and each is an order we recorded.
    let refs: Vec<String> = gw
        .requests_of(RequestKind::PlaceOrder)
        .iter()
        .filter_map(|r| match &r.request {
            Request::PlaceOrder(p) => p.order.as_ref().and_then(|o| o.order_ref.clone()),
            _ => None,
        })
        .collect();
    let unique: HashSet<&String> = refs.iter().collect();
    assert_eq!(
        unique.len(),
        refs.len(),
        "an orderRef was sent twice: {refs:?}"
    );
    let sent_in_db = try_count(
        &db,
        "SELECT COUNT(*) FROM orders WHERE broker_id IS NOT NULL",
    )
    .unwrap();
    assert_eq!(refs.len() as i64, sent_in_db);

    // Both drops are in the connection history, each followed by a new Ready.
    assert_eq!(ready_count(&db), 3);
    let shut = try_count(
        &db,
        "SELECT COUNT(*) FROM connection_events WHERE reason LIKE '%shut down%'",
    )
    .unwrap();
    assert!(shut >= 1, "the final disconnect is recorded");
    rt.block_on(gw.shutdown());
}

#[test]
fn local_orders_fill_in_process_and_never_reach_the_gateway() {
    let rt = runtime();
    let gw = rt.block_on(gateway());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("robo.db");
    let mut p = start(dir.path(), &gw, "local");
    p.wait_for("3 filled orders", Duration::from_secs(40), |_| {
        filled_count(&db) >= 3
    });
    // The kill switch applies as in the sim: halted within a second, no new entries after.
    let out = robo(dir.path())
        .args(["kill-switch", "on", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sleep(Duration::from_secs(1));
    let entries = || count(&db, "SELECT COUNT(*) FROM orders WHERE purpose = 'entry'");
    let entries_at_halt = entries();
    // Three more minute bars (1.2 s each) with the switch on.
    sleep(Duration::from_millis(3600));
    assert_eq!(entries(), entries_at_halt, "an entry after the kill switch");
    p.stop();
    assert_eq!(place_requests(&gw), 0);
    assert!(gw.with_world(|w| w.executions().is_empty()));
    // Data only: no reconciliation step, straight to Ready.
    assert_eq!(
        try_count(
            &db,
            "SELECT COUNT(*) FROM connection_events WHERE state = 'syncing'"
        ),
        Some(0)
    );
    assert_eq!(ready_count(&db), 1);
    assert_eq!(gw.max_simultaneous_connections(), 1);
    rt.block_on(gw.shutdown());
}

#[test]
fn live_ports_need_live() {
    let dir = tempfile::tempdir().unwrap();
    for port in ["4001", "7496"] {
        let out = robo(dir.path())
            .args(["config", "show", "--broker", "ibkr", "--ib-port", port])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "port {port}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("ib.port") && err.contains("--live"), "{err}");
        let ok = robo(dir.path())
            .args([
                "config",
                "show",
                "--broker",
                "ibkr",
                "--live",
                "--ib-port",
                port,
            ])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }
    // The paper gateway needs nothing, and the sim ignores the ib port.
    for args in [
        ["--broker", "ibkr", "--ib-port", "4002"],
        ["--broker", "sim", "--ib-port", "4001"],
    ] {
        let out = robo(dir.path())
            .args(["config", "show"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
    }
}
