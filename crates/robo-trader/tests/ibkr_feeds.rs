//! `run --broker ibkr` market data against the in-process fake gateway: a symbol without a
//! real-time permission falls back to delayed data (or becomes untradeable, as configured), an
//! unknown ticker is dropped and shown on the status, a silent feed is re-requested exactly once
//! and then marked untradeable, and after a reconnect the missed minutes come from history so
//! that the engine sees every bar exactly once.

mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use fake_ibgw::world::{SymbolSpec, WorldConfig};
use fake_ibgw::{FakeGateway, GatewayConfig, Handle, Request, RequestKind};
use harness::{count, open_db, ready_count, robo, runtime, Proc};
use serde_json::Value;

/// Trades often, never pauses for the restart window (the fake never restarts).
const BASE_CONFIG: &str = r#"
[strategy]
name = "sma_crossover"
fast = 2
slow = 4

[risk]
reentry_cooldown_secs = 0
daily_loss_pct = 0.9
max_drawdown_pct = 0.95
max_position_pct = 0.5

[ib]
restart_window = false
"#;

/// What these tests read from a run.
impl Proc {
    /// `robo-trader status --json` on this run's database; `None` until it is created.
    fn try_status(&self) -> Option<Value> {
        let out = robo(&self.dir)
            .args(["status", "--json", "--db"])
            .arg(&self.db)
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).expect("status JSON"))
    }

    fn status(&self) -> Value {
        self.try_status().expect("status --json succeeds")
    }

    fn symbol_status(&self, symbol: &str) -> Option<Value> {
        self.try_status()?["symbols"]
            .as_array()?
            .iter()
            .find(|s| s["symbol"] == symbol)
            .cloned()
    }

    /// Decision timestamps (one per bar the engine saw) per symbol, in arrival order.
    fn decisions(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let Some(c) = open_db(&self.db) else {
            return out;
        };
        let Ok(mut st) = c.prepare("SELECT symbol, ts FROM decisions ORDER BY id") else {
            return out;
        };
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .unwrap();
        for r in rows {
            let (s, ts) = r.unwrap();
            out.entry(s).or_default().push(ts);
        }
        out
    }
}

async fn gateway(symbols: &[&str]) -> Handle {
    let all = [
        SymbolSpec::new("AAPL", 265_598, 19_000, 2),
        SymbolSpec::new("MSFT", 272_093, 42_000, 4),
        SymbolSpec::new("SPY", 756_733, 58_000, 3),
    ];
    let config = GatewayConfig {
        world: WorldConfig {
            symbols: all
                .into_iter()
                .filter(|s| symbols.contains(&s.symbol.as_str()))
                .collect(),
            ..WorldConfig::default()
        },
        // 5-second bars every 100 ms: a minute bar every 1.2 s.
        bar_interval: Duration::from_millis(100),
        ..GatewayConfig::default()
    };
    FakeGateway::start(config).await.expect("gateway starts")
}

/// `robo-trader run --broker ibkr --ib-orders <orders>` on `symbols`, with `extra_ib` appended
/// to the `[ib]` table and `env` set.
fn start(
    dir: &Path,
    gw: &Handle,
    orders: &str,
    symbols: &str,
    extra_ib: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> Proc {
    let port = gw.port().to_string();
    let mut all = vec![
        "--broker",
        "ibkr",
        "--ib-orders",
        orders,
        "--ib-port",
        &port,
        "--symbols",
        symbols,
    ];
    all.extend_from_slice(args);
    Proc::run(dir, &format!("{BASE_CONFIG}{extra_ib}\n"), &all, env)
}

fn contract_symbol(r: &Request) -> Option<String> {
    let c = match r {
        Request::RealTimeBars(r) => r.contract.as_ref(),
        Request::HistoricalData(r) => r.contract.as_ref(),
        Request::ContractDetails(r) => r.contract.as_ref(),
        _ => None,
    }?;
    c.symbol.clone()
}

/// How many requests of `kind` named `symbol`.
fn requests_for(gw: &Handle, kind: RequestKind, symbol: &str) -> usize {
    gw.requests_of(kind)
        .iter()
        .filter(|r| contract_symbol(&r.request).as_deref() == Some(symbol))
        .count()
}

fn market_data_types(gw: &Handle) -> Vec<i32> {
    gw.requests_of(RequestKind::MarketDataType)
        .iter()
        .filter_map(|r| match &r.request {
            Request::MarketDataType(m) => m.market_data_type,
            _ => None,
        })
        .collect()
}

#[test]
fn no_realtime_permission_falls_back_to_delayed_data() {
    let rt = runtime();
    let gw = rt.block_on(gateway(&["AAPL", "MSFT"]));
    gw.set_no_realtime("MSFT", Some(10089));
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(dir.path(), &gw, "local", "AAPL,MSFT", "", &[], &[]);

    p.wait_for("MSFT flagged delayed", Duration::from_secs(60), |p| {
        p.symbol_status("MSFT")
            .is_some_and(|s| s["delayed"] == true)
    });
    // Delayed bars reach the engine: decisions for MSFT keep coming.
    let before = p.decisions().get("MSFT").map_or(0, Vec::len);
    p.wait_for("delayed MSFT bars", Duration::from_secs(10), |p| {
        p.decisions().get("MSFT").map_or(0, Vec::len) >= before + 3
    });
    let st = p.status();
    let msft = p.symbol_status("MSFT").unwrap();
    assert_eq!(msft["state"], "tradeable", "{st:#}");
    assert!(msft["reason"].as_str().unwrap().contains("10089"), "{msft}");
    let aapl = p.symbol_status("AAPL").unwrap();
    assert_eq!(aapl["delayed"], false);
    assert_eq!(aapl["state"], "tradeable");
    p.stop();
    // One refused live request, then type 3, then one delayed request that stuck.
    assert_eq!(requests_for(&gw, RequestKind::RealTimeBars, "MSFT"), 2);
    assert_eq!(requests_for(&gw, RequestKind::RealTimeBars, "AAPL"), 1);
    assert!(
        market_data_types(&gw).contains(&3),
        "{:?}",
        market_data_types(&gw)
    );
    rt.block_on(gw.shutdown());
}

#[test]
fn untradeable_fallback_refuses_the_symbol_and_its_entries() {
    let rt = runtime();
    let gw = rt.block_on(gateway(&["AAPL", "MSFT"]));
    gw.set_no_realtime("MSFT", Some(354));
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(
        dir.path(),
        &gw,
        "paper",
        "AAPL,MSFT",
        "",
        &[("IB_MARKET_DATA_FALLBACK", "untradeable")],
        &[],
    );
    p.wait_for("MSFT untradeable", Duration::from_secs(60), |p| {
        p.symbol_status("MSFT")
            .is_some_and(|s| s["state"] == "untradeable")
    });
    // AAPL keeps trading meanwhile.
    p.wait_for("AAPL orders", Duration::from_secs(60), |p| {
        count(
            &p.db,
            "SELECT COUNT(*) FROM orders WHERE symbol = 'AAPL' AND broker_id IS NOT NULL",
        ) >= 2
    });
    let msft = p.symbol_status("MSFT").unwrap();
    assert_eq!(msft["delayed"], false);
    assert!(msft["reason"].as_str().unwrap().contains("354"), "{msft}");
    p.stop();
    assert!(!market_data_types(&gw).contains(&3));
    assert_eq!(requests_for(&gw, RequestKind::RealTimeBars, "MSFT"), 1);
    // No MSFT order reached the gateway.
    let msft_orders = gw
        .requests_of(RequestKind::PlaceOrder)
        .iter()
        .filter(|r| match &r.request {
            Request::PlaceOrder(o) => {
                o.contract.as_ref().and_then(|c| c.symbol.as_deref()) == Some("MSFT")
            }
            _ => false,
        })
        .count();
    assert_eq!(msft_orders, 0);
    rt.block_on(gw.shutdown());
}

#[test]
fn an_unknown_ticker_is_dropped_and_reported() {
    let rt = runtime();
    let gw = rt.block_on(gateway(&["AAPL", "MSFT"]));
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(dir.path(), &gw, "local", "AAPL,MSFT,ZZZQ", "", &[], &[]);
    p.wait_for("the drop on the status", Duration::from_secs(60), |p| {
        p.try_status().is_some_and(|s| {
            s["dropped_symbols"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
        })
    });
    p.wait_for("bars for the others", Duration::from_secs(15), |p| {
        let d = p.decisions();
        d.get("AAPL").map_or(0, Vec::len) >= 2 && d.get("MSFT").map_or(0, Vec::len) >= 2
    });
    let st = p.status();
    let dropped = st["dropped_symbols"].as_array().unwrap();
    assert_eq!(dropped.len(), 1, "{st:#}");
    assert_eq!(dropped[0]["symbol"], "ZZZQ");
    let reason = dropped[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("ZZZQ") && reason.contains("200"),
        "the reason names the symbol and IB's error: {reason}"
    );
    assert_eq!(p.symbol_status("ZZZQ").unwrap()["state"], "dropped");
    assert_eq!(p.symbol_status("AAPL").unwrap()["state"], "tradeable");
    // The plain status text lists it too.
    let out = robo(dir.path())
        .args(["status", "--db"])
        .arg(&p.db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ZZZQ") && text.contains("dropped"), "{text}");
    p.stop();
    // Asked once, never subscribed nor backfilled.
    assert_eq!(requests_for(&gw, RequestKind::ContractDetails, "ZZZQ"), 1);
    assert_eq!(requests_for(&gw, RequestKind::RealTimeBars, "ZZZQ"), 0);
    assert_eq!(requests_for(&gw, RequestKind::HistoricalData, "ZZZQ"), 0);
    assert!(!p.decisions().contains_key("ZZZQ"));
    rt.block_on(gw.shutdown());
}

#[test]
fn a_silent_feed_is_resubscribed_once_then_untradeable() {
    let rt = runtime();
    let gw = rt.block_on(gateway(&["AAPL", "MSFT", "SPY"]));
    gw.set_silent("SPY", true);
    let dir = tempfile::tempdir().unwrap();
    // A minute bar every 1.2 s: stale after 2 × 1.5 s, at any hour.
    let ib = "stale_feed_interval_ms = 1500\nstale_feed_intervals = 2\nstale_feed_regular_hours_only = false";
    let mut p = start(dir.path(), &gw, "local", "AAPL,MSFT,SPY", ib, &[], &[]);
    p.wait_for("SPY untradeable", Duration::from_secs(30), |p| {
        p.symbol_status("SPY")
            .is_some_and(|s| s["state"] == "untradeable")
    });
    assert_eq!(
        requests_for(&gw, RequestKind::RealTimeBars, "SPY"),
        2,
        "one request and exactly one resubscribe"
    );
    // Three more stale periods: nothing more is asked for SPY.
    sleep(Duration::from_secs(9));
    assert_eq!(requests_for(&gw, RequestKind::RealTimeBars, "SPY"), 2);
    let spy = p.symbol_status("SPY").unwrap();
    assert!(spy["reason"].as_str().unwrap().contains("stale"), "{spy}");
    assert_eq!(p.symbol_status("AAPL").unwrap()["state"], "tradeable");
    // Bars come back: tradeable again.
    gw.set_silent("SPY", false);
    p.wait_for("SPY tradeable again", Duration::from_secs(10), |p| {
        p.symbol_status("SPY")
            .is_some_and(|s| s["state"] == "tradeable")
    });
    p.stop();
    rt.block_on(gw.shutdown());
}

/// Minutes since the epoch of an RFC 3339 decision timestamp.
fn minute(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .expect("rfc3339")
        .timestamp()
        .div_euclid(60)
}

#[test]
fn after_a_reconnect_every_missed_bar_is_seen_exactly_once() {
    let rt = runtime();
    let gw = rt.block_on(gateway(&["AAPL", "MSFT"]));
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(dir.path(), &gw, "local", "AAPL,MSFT", "", &[], &[]);
    p.wait_for("live bars", Duration::from_secs(60), |p| {
        p.decisions().values().all(|v| v.len() >= 3) && p.decisions().len() == 2
    });
    // Down for ~5 s of real time: ~4 minutes of the fake's market pass without us.
    let t_drop = gw.market_time_ms();
    gw.set_refusing(true);
    gw.drop_now();
    sleep(Duration::from_secs(5));
    let t_back = gw.market_time_ms();
    let missed_min = (t_back - t_drop) / 60_000;
    assert!(missed_min >= 3, "the world moved {missed_min} minutes");
    gw.set_refusing(false);
    p.wait_for("reconnected", Duration::from_secs(60), |p| {
        ready_count(&p.db) >= 2
    });
    // Live minutes well after the outage, for both symbols.
    let back_min = t_back.div_euclid(60_000);
    p.wait_for(
        "live bars after the reconnect",
        Duration::from_secs(15),
        |p| {
            let d = p.decisions();
            d.len() == 2
                && d.values()
                    .all(|v| v.last().is_some_and(|t| minute(t) >= back_min + 2))
        },
    );
    p.stop();
    let log = std::fs::read_to_string(&p.log).unwrap();
    // Both symbols' missed minutes came from history (the minute in progress comes live).
    let filled: i64 = log
        .lines()
        .filter(|l| l.contains("gap since the last bar filled"))
        .filter_map(|l| {
            l.split("bars=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<i64>()
                .ok()
        })
        .sum();
    assert!(
        filled >= 2 * (missed_min - 1),
        "{filled} bars from history; {}",
        p.log_tail()
    );
    for (symbol, ts) in p.decisions() {
        let mins: Vec<i64> = ts.iter().map(|t| minute(t)).collect();
        for w in mins.windows(2) {
            assert_eq!(
                w[1],
                w[0] + 1,
                "{symbol}: bars must be consecutive minutes, each once: {ts:?}"
            );
        }
        // Consecutive, and spanning the outage: every missed minute was seen, once.
        assert!(
            mins.first().is_some_and(|m| *m < t_drop.div_euclid(60_000))
                && mins.last().is_some_and(|m| *m >= back_min + 2),
            "{symbol}: {ts:?}"
        );
    }
    rt.block_on(gw.shutdown());
}

/// Entry fills as (quantity × price) notionals, and every fill's (exec id, commission).
fn entry_notionals(db: &Path) -> Vec<rust_decimal::Decimal> {
    let c = open_db(db).unwrap();
    let mut st = c
        .prepare(
            "SELECT f.quantity, f.price FROM fills f JOIN orders o ON o.id = f.order_id
             WHERE o.purpose = 'entry' ORDER BY f.id",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (q, p) = r.unwrap();
            rust_decimal::Decimal::from(q) * p.parse::<rust_decimal::Decimal>().unwrap()
        })
        .collect()
}

fn commissions(db: &Path) -> BTreeMap<String, rust_decimal::Decimal> {
    let c = open_db(db).unwrap();
    let mut st = c.prepare("SELECT exec_id, commission FROM fills").unwrap();
    st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (e, c) = r.unwrap();
            (e, c.parse::<rust_decimal::Decimal>().unwrap().normalize())
        })
        .collect()
}

/// The ledger starts at 60 000, the gateway's account at 100 000. `tolerance` decides whether
/// IB's figures are taken.
fn paper_account_run(
    tolerance: &str,
) -> (Proc, Handle, tokio::runtime::Runtime, tempfile::TempDir) {
    let rt = runtime();
    let gw = rt.block_on(gateway(&["AAPL", "MSFT"]));
    let dir = tempfile::tempdir().unwrap();
    // The estimate would be zero: any commission booked is IB's.
    let extra = format!(
        "account_tolerance_pct = {tolerance}\n[paper]\ncommission = {{ model = \"bps\", bps = \"0\" }}"
    );
    let mut p = start(
        dir.path(),
        &gw,
        "paper",
        "AAPL,MSFT",
        &extra,
        &[],
        &["--cash", "60000"],
    );
    p.wait_for("the account on the status", Duration::from_secs(60), |p| {
        p.try_status()
            .is_some_and(|s| !s["broker_account"].is_null())
    });
    p.wait_for("6 entry fills", Duration::from_secs(40), |p| {
        count(
            &p.db,
            "SELECT COUNT(*) FROM fills f JOIN orders o ON o.id = f.order_id WHERE o.purpose = 'entry'",
        ) >= 6
    });
    (p, gw, rt, dir)
}

fn dec(s: &Value) -> rust_decimal::Decimal {
    s.as_str().unwrap().parse().unwrap()
}

#[test]
fn ib_account_values_drive_sizing_when_they_agree_and_ib_commissions_are_booked() {
    let (mut p, gw, rt, _dir) = paper_account_run("1.0");
    let acct = p.status()["broker_account"].clone();
    assert_eq!(acct["account"], "DU1234567", "{acct}");
    assert_eq!(acct["within_tolerance"], true, "{acct}");
    let diff = dec(&acct["difference"]);
    assert!(
        diff > rust_decimal::Decimal::from(35_000) && diff < rust_decimal::Decimal::from(45_000),
        "{acct}"
    );
    assert_eq!(
        dec(&acct["difference"]),
        dec(&acct["net_liquidation"]) - dec(&acct["ledger_equity"])
    );
    p.stop();
    // 2 % of IB's ~100 000, not of the ledger's ~60 000: the later entries are ~2 000 each.
    let n = entry_notionals(&p.db);
    let big = n
        .iter()
        .filter(|x| **x > rust_decimal::Decimal::from(1_500))
        .count();
    assert!(big >= 4, "entries sized on IB's net liquidation: {n:?}");
    assert!(
        n.iter().all(|x| *x < rust_decimal::Decimal::from(2_700)),
        "{n:?}"
    );
    // Every commission is IB's (the local estimate is zero), exec by exec.
    let ours = commissions(&p.db);
    let theirs: BTreeMap<String, rust_decimal::Decimal> = gw.with_world(|w| {
        w.executions()
            .iter()
            .map(|e| {
                (
                    e.exec_id.clone(),
                    rust_decimal::Decimal::new(e.commission_micros, 6).normalize(),
                )
            })
            .collect()
    });
    assert_eq!(ours, theirs);
    assert!(ours.values().all(|c| *c >= rust_decimal::Decimal::ONE));
    rt.block_on(gw.shutdown());
}

#[test]
fn an_account_beyond_the_tolerance_is_reported_and_the_ledger_sizes() {
    let (mut p, gw, rt, _dir) = paper_account_run("0.005");
    let acct = p.status()["broker_account"].clone();
    assert_eq!(acct["within_tolerance"], false, "{acct}");
    assert_eq!(
        dec(&acct["tolerance"]),
        (dec(&acct["ledger_equity"]) * rust_decimal_macros::dec!(0.005)).round_dp(2)
    );
    p.stop();
    let n = entry_notionals(&p.db);
    assert!(
        n.iter().all(|x| *x <= rust_decimal::Decimal::from(1_300)),
        "entries sized on the ledger's ~60 000: {n:?}"
    );
    let log = std::fs::read_to_string(&p.log).unwrap();
    assert_eq!(
        log.matches("differs from the ledger beyond the tolerance")
            .count(),
        1,
        "logged once"
    );
    rt.block_on(gw.shutdown());
}
