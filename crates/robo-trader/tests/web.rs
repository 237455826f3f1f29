//! The web side of `run`: REST (values recomputed by hand from the fills written), control
//! (token, Origin, the Control that reaches the trading thread, what is recorded), the
//! WebSocket stream (snapshot, heartbeat, no rebroadcast, slow clients dropped), `/metrics`,
//! health and readiness. Each test has its own database and ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

use robo_core::events::{OperatorCommand, Record, RiskEvent};
use robo_core::risk::{RefuseReason, RiskCheck};
use robo_core::types::{Bar, ClientOrderId, ExecId, Fill, Side, SymbolId, TradingState, Ts};
use robo_trader::config::WebConfig;
use robo_trader::runner::{Bus, BusEvent, Control};
use robo_trader::store::{Store, WriteOp, WriterOptions};
use robo_trader::web::{self, WebContext};

const T0: i64 = 1_704_205_800; // 2024-01-02T14:30:00Z = 09:30 New York, a Tuesday
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const DAY: i64 = 86_400;

struct Server {
    _dir: tempfile::TempDir,
    db: PathBuf,
    bus: Bus,
    ctl: Receiver<Control>,
    dash: SocketAddr,
    ws: SocketAddr,
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
        exec_id: ExecId(exec.into()),
        order_id: ClientOrderId(order),
        symbol: SymbolId(sym),
        side,
        qty,
        price,
        commission: comm,
        ts: Ts::from_secs(T0 + secs),
    }
}

fn equity(secs: i64, e: Decimal) -> Record {
    Record::Equity {
        ts: Ts::from_secs(T0 + secs),
        cash: e,
        equity: e,
        realized: Decimal::ZERO,
        unrealized: Decimal::ZERO,
    }
}

/// The ledger every test starts from:
/// AAPL buy 10 @ 100 (comm 1), sell 10 @ 110 (comm 1): a closed trade of 100 − 2 = +98.
/// MSFT buy 20 @ 50 (comm 2), sell 10 @ 45 (comm 1): a closed trade of −50 − 1 − 1 = −52,
/// 10 shares left at 50, marked at 45 by the last fill.
/// Equity snapshots: day 1 100000 then 102000, day 2 99960, day 3 99995.
fn seed(store: &Store) {
    store.init_starting_cash(dec!(100000)).unwrap();
    let writer = store.start_writer(WriterOptions::default()).unwrap();
    let fills = [
        (
            fill("e1", 1, 0, Side::Buy, 10, dec!(100), dec!(1), 60),
            "AAPL",
        ),
        (
            fill("e2", 2, 0, Side::Sell, 10, dec!(110), dec!(1), 120),
            "AAPL",
        ),
        (
            fill("e3", 3, 1, Side::Buy, 20, dec!(50), dec!(2), 180),
            "MSFT",
        ),
        (
            fill("e4", 4, 1, Side::Sell, 10, dec!(45), dec!(1), DAY + 60),
            "MSFT",
        ),
    ];
    for (f, sym) in fills {
        writer.send(WriteOp::Record {
            rec: Record::Fill(f),
            symbol: sym.into(),
        });
    }
    for rec in [
        equity(0, dec!(100000)),
        equity(300, dec!(102000)),
        equity(DAY + 300, dec!(99960)),
        equity(2 * DAY + 300, dec!(99995)),
    ] {
        writer.send(WriteOp::Record {
            rec,
            symbol: String::new(),
        });
    }
    for i in 0..3 {
        writer.send(WriteOp::Record {
            rec: Record::Risk(RiskEvent {
                symbol: SymbolId(0),
                ts: Ts::from_secs(T0 + i),
                check: RiskCheck::OrderNotional,
                reason: RefuseReason::OverLimit {
                    value: dec!(12000),
                    limit: dec!(10000),
                },
            }),
            symbol: "AAPL".into(),
        });
    }
    writer.flush(Duration::from_secs(10)).unwrap();
    writer.shutdown(Duration::from_secs(10)).unwrap();
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("robo.db");
    seed(&Store::open(&db).unwrap());
    let (bus, _) = tokio::sync::broadcast::channel(4096);
    let (tx, ctl) = std::sync::mpsc::channel();
    let cfg = WebConfig {
        dash_host: "127.0.0.1".into(),
        dash_port: 0,
        ws_port: 0,
        api_token: None,
    };
    let h = web::start(
        &cfg,
        WebContext {
            db: db.clone(),
            bus: bus.clone(),
            control: tx,
            token: TOKEN.into(),
            mode: "sim".into(),
            config_toml: "[risk]\nmax_order_notional = \"10000\"\nmax_open_positions = 5\n".into(),
        },
    )
    .await
    .unwrap();
    Server {
        _dir: dir,
        db,
        bus,
        ctl,
        dash: h.dash,
        ws: h.ws,
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http(addr, "GET", path, &[], "").await;
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
    )
}

const AUTH: (&str, &str) = ("Authorization", "Bearer 0123456789abcdef0123456789abcdef");

fn recv_control(ctl: &Receiver<Control>) -> Control {
    ctl.recv_timeout(Duration::from_secs(5))
        .expect("a Control message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_needs_the_token_and_reaches_the_trading_thread() {
    let s = server().await;
    let body = r#"{"state":"halted"}"#;
    let (st, b) = http(s.dash, "POST", "/api/control/kill-switch", &[], body).await;
    assert_eq!(st, 401, "{b}");
    let (st, _) = http(
        s.dash,
        "POST",
        "/api/control/kill-switch",
        &[("Authorization", "Bearer 0123456789abcdef0123456789abcdeX")],
        body,
    )
    .await;
    assert_eq!(st, 401);
    let (st, _) = http(
        s.dash,
        "POST",
        "/api/control/flatten",
        &[("Authorization", TOKEN)],
        "",
    )
    .await;
    assert_eq!(st, 401, "the Bearer scheme is required");
    assert!(
        s.ctl.try_recv().is_err(),
        "nothing reaches the trading thread without the token"
    );
    assert_eq!(
        Store::open_read_only(&s.db)
            .unwrap()
            .trading_state()
            .unwrap(),
        TradingState::Active
    );

    let (st, b) = http(s.dash, "POST", "/api/control/kill-switch", &[AUTH], body).await;
    assert_eq!(st, 200, "{b}");
    assert!(matches!(
        recv_control(&s.ctl),
        Control::SetState(TradingState::Halted)
    ));
    let store = Store::open_read_only(&s.db).unwrap();
    assert_eq!(store.trading_state().unwrap(), TradingState::Halted);
    let action: Value =
        serde_json::from_str(&store.meta("operator_action:1").unwrap().unwrap()).unwrap();
    assert_eq!(action["action"], "kill_switch");
    assert_eq!(action["state"], "halted");
    let status = store.status_json().unwrap();
    assert_eq!(
        status["trading_state_detail"]["cause"],
        "operator: dashboard"
    );
    assert_eq!(status["trading_state_detail"]["source"], "web");

    let (st, _) = http(s.dash, "POST", "/api/control/flatten", &[AUTH], "").await;
    assert_eq!(st, 200);
    assert!(matches!(
        recv_control(&s.ctl),
        Control::Operator(OperatorCommand::Flatten)
    ));
    let (st, _) = http(s.dash, "POST", "/api/control/cancel-all", &[AUTH], "").await;
    assert_eq!(st, 200);
    assert!(matches!(
        recv_control(&s.ctl),
        Control::Operator(OperatorCommand::CancelAll)
    ));
    let (st, _) = http(s.dash, "POST", "/api/control/resume", &[AUTH], "").await;
    assert_eq!(st, 200);
    assert!(matches!(
        recv_control(&s.ctl),
        Control::SetState(TradingState::Active)
    ));
    let (st, _) = http(s.dash, "POST", "/api/control/pause", &[AUTH], "").await;
    assert_eq!(st, 200);
    assert!(matches!(
        recv_control(&s.ctl),
        Control::SetState(TradingState::Halted)
    ));
    let store = Store::open_read_only(&s.db).unwrap();
    assert_eq!(
        store.meta("operator_action_seq").unwrap().as_deref(),
        Some("5")
    );
    let a2: Value =
        serde_json::from_str(&store.meta("operator_action:2").unwrap().unwrap()).unwrap();
    assert_eq!(a2["action"], "flatten");

    let (st, b) = http(
        s.dash,
        "POST",
        "/api/control/kill-switch",
        &[AUTH],
        r#"{"state":"off"}"#,
    )
    .await;
    assert_eq!(st, 400);
    assert!(b.contains("`state`"), "{b}");
    let (st, b) = http(
        s.dash,
        "POST",
        "/api/control/kill-switch",
        &[AUTH],
        r#"{"state":"halted","x":1}"#,
    )
    .await;
    assert_eq!(st, 400);
    assert!(b.contains("`x`"), "{b}");
    assert!(s.ctl.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origin_is_forbidden() {
    let s = server().await;
    let (st, b) = http(
        s.dash,
        "POST",
        "/api/control/flatten",
        &[AUTH, ("Origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(st, 403, "{b}");
    assert!(serde_json::from_str::<Value>(&b).unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("evil.example"));
    assert!(s.ctl.try_recv().is_err());
    let (st, _) = http(
        s.dash,
        "POST",
        "/api/control/flatten",
        &[AUTH, ("Origin", "http://localhost:9999")],
        "",
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = http(
        s.dash,
        "POST",
        "/api/control/cancel-all",
        &[AUTH, ("Origin", "http://[::1]:5555")],
        "",
    )
    .await;
    assert_eq!(st, 200);

    for addr in [format!("ws://{}/", s.ws), format!("ws://{}/ws", s.dash)] {
        let mut req = addr.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("Origin", "http://evil.example".parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
            other => panic!("{addr}: expected 403, got {:?}", other.map(|_| ())),
        }
        let mut req = addr.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("Origin", "http://127.0.0.1:1".parse().unwrap());
        assert!(
            tokio_tungstenite::connect_async(req).await.is_ok(),
            "{addr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_are_400_and_named() {
    let s = server().await;
    for (path, name) in [
        ("/api/fills?foo=1", "`foo`"),
        ("/api/status?x=", "`x`"),
        ("/api/logs?level=loud", "`level`"),
        ("/api/decisions?symbol=bad!sym", "`symbol`"),
        ("/api/decisions?symbol=", "`symbol`"),
        ("/api/fills?limit=0", "`limit`"),
        ("/api/orders?state=closed", "`state`"),
        ("/api/fills?symbol=AAPL&symbol=MSFT", "`symbol`"),
    ] {
        let (st, v) = get_json(s.dash, path).await;
        assert_eq!(st, 400, "{path}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(name), "{path}: {e}");
    }
    let (st, v) = get_json(s.dash, "/api/fills?symbol=aapl").await;
    assert_eq!(st, 200);
    assert_eq!(v["fills"].as_array().unwrap().len(), 2);
    let (st, v) = get_json(s.dash, "/api/nope").await;
    assert_eq!(st, 404);
    assert!(v["error"].as_str().unwrap().contains("/api/nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn performance_and_positions_equal_the_hand_computed_ledger() {
    let s = server().await;
    let (st, p) = get_json(s.dash, "/api/positions").await;
    assert_eq!(st, 200);
    assert_eq!(
        p,
        json!({"positions": [{
            "symbol": "MSFT", "quantity": 10, "avg_cost": "50", "market_price": "45",
            "mark_ts": "2024-01-03T14:31:00.000Z", "market_value": "450", "unrealized_pnl": "-50",
        }]})
    );
    let (st, v) = get_json(s.dash, "/api/performance").await;
    assert_eq!(st, 200, "{v}");
    // Realized: AAPL 100 − 2 commissions = 98; MSFT −50 − 3 commissions = −53.
    assert_eq!(v["realized_pnl"], "45");
    assert_eq!(v["unrealized_pnl"], "-50");
    // Cash 100000 − 1001 + 1099 − 1002 + 449 = 99545; + 450 market value.
    assert_eq!(v["equity"], "99995");
    assert_eq!(v["total_pnl"], "-5");
    assert_eq!(v["trades"]["count"], 2);
    assert_eq!(v["trades"]["wins"], 1);
    assert_eq!(v["trades"]["gross_profit"], "98");
    assert_eq!(v["trades"]["gross_loss"], "52");
    assert_eq!(v["trades"]["win_rate"], 0.5);
    assert!((v["trades"]["profit_factor"].as_f64().unwrap() - 98.0 / 52.0).abs() < 1e-12);
    let daily: Vec<(&str, &str)> = v["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["date"].as_str().unwrap(), d["pnl"].as_str().unwrap()))
        .collect();
    assert_eq!(
        daily,
        [
            ("2024-01-02", "2000"),
            ("2024-01-03", "-2040"),
            ("2024-01-04", "35")
        ]
    );
    assert_eq!(v["day_pnl"], "35");
    assert_eq!(v["max_drawdown"]["amount"], "2040");
    assert!((v["max_drawdown"]["fraction"].as_f64().unwrap() - 0.02).abs() < 1e-12);
    let r = [0.02, 99960.0 / 102000.0 - 1.0, 99995.0 / 99960.0 - 1.0];
    let mean = r.iter().sum::<f64>() / 3.0;
    let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    assert!((v["sharpe"].as_f64().unwrap() - mean / sd * 252f64.sqrt()).abs() < 1e-9);
    assert_eq!(v["equity_curve"].as_array().unwrap().len(), 4);

    let (_, risk) = get_json(s.dash, "/api/risk").await;
    let refusals = risk["refusals"].as_array().unwrap();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0]["check"], "order_notional");
    assert_eq!(refusals[0]["count"], 3);
    let limit = |name: &str| {
        risk["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(limit("max_order_notional")["limit"], "10000");
    assert_eq!(limit("max_open_positions")["limit"], 5);
    assert_eq!(limit("max_open_positions")["use"], 1);
    // Leverage: 450 / 99995.
    assert!((limit("max_leverage")["use"].as_f64().unwrap() - 450.0 / 99995.0).abs() < 1e-12);

    let (_, orders) = get_json(s.dash, "/api/orders").await;
    assert_eq!(orders, json!({"orders": []}));
    let (_, fills) = get_json(s.dash, "/api/fills?limit=1").await;
    assert_eq!(fills["fills"][0]["exec_id"], "e4");
    let (st, _) = get_json(s.dash, "/api/decisions?symbol=MSFT").await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_uses_the_bus_clock_and_the_calendar() {
    let s = server().await;
    let (_, v) = get_json(s.dash, "/api/status").await;
    assert_eq!(v["connection"]["state"], "ready");
    assert_eq!(v["mode"], "sim");
    assert_eq!(v["clock"]["source"], "wall");
    assert_eq!(v["kill_switch"]["engaged"], false);
    // 2024-01-02 11:30 New York: a Tuesday, regular session.
    s.bus
        .send(Arc::new(BusEvent::Clock {
            now: Ts::from_secs(T0 + 7200),
        }))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, v) = get_json(s.dash, "/api/status").await;
        if v["clock"]["source"] == "bus" {
            assert_eq!(v["clock"]["now"], "2024-01-02T16:30:00.000Z");
            assert_eq!(v["market"]["session"], "regular");
            assert_eq!(v["market"]["is_open"], true);
            assert_eq!(v["market"]["next_open"], "2024-01-03T09:30:00-05:00");
            assert_eq!(v["equity"], "99995");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bus clock never reached the API"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bar(sym: u16, secs: i64, close: Decimal) -> Bar {
    Bar {
        symbol: SymbolId(sym),
        ts: Ts::from_secs(T0 + secs),
        open: close,
        high: close,
        low: close,
        close,
        volume: 100,
    }
}

fn send_bar(bus: &Bus, symbol: &str, secs: i64, close: Decimal) {
    let _ = bus.send(Arc::new(BusEvent::Bar {
        symbol: symbol.into(),
        bar: bar(0, secs, close),
        at: Instant::now(),
    }));
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws, within: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(within, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_snapshot_heartbeat_and_deltas() {
    let s = server().await;
    for url in [format!("ws://{}/", s.ws), format!("ws://{}/ws", s.dash)] {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let snap = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
        assert_eq!(snap["type"], "snapshot", "{snap}");
        assert_eq!(snap["v"], 1);
        assert_eq!(snap["fills"].as_array().unwrap().len(), 4);
        assert_eq!(snap["positions"][0]["symbol"], "MSFT");
        assert_eq!(snap["status"]["equity"], "99995");
        let conn = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
        assert_eq!(conn["type"], "connection");
        assert_eq!(conn["state"], "ready");
        let t = Instant::now();
        loop {
            let m = next_json(&mut ws, Duration::from_millis(2500))
                .await
                .expect("a message");
            if m["type"] == "heartbeat" {
                assert_eq!(m["v"], 1);
                break;
            }
        }
        assert!(t.elapsed() < Duration::from_millis(2500));
        send_bar(&s.bus, "AAPL", 60, dec!(101.25));
        loop {
            let m = next_json(&mut ws, Duration::from_secs(5))
                .await
                .expect("the bar");
            if m["type"] == "market" {
                assert_eq!(m["symbol"], "AAPL");
                assert_eq!(m["close"], "101.25");
                assert_eq!(m["ts"], "2024-01-02T14:31:00.000Z");
                break;
            }
        }
    }
    // The next snapshot carries the last bar.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", s.ws))
        .await
        .unwrap();
    let snap = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(snap["bars"][0]["close"], "101.25");
    let (_, m) = get_json(s.dash, "/api/market").await;
    let aapl = m["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["symbol"] == "AAPL")
        .unwrap()
        .clone();
    assert_eq!(aapl["source"], "bus");
    assert_eq!(aapl["close"], "101.25");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_client_sends_is_never_rebroadcast() {
    let s = server().await;
    let (mut a, _) = tokio_tungstenite::connect_async(format!("ws://{}/", s.ws))
        .await
        .unwrap();
    let (mut b, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", s.dash))
        .await
        .unwrap();
    let forged =
        json!({"type": "fill", "v": 1, "symbol": "AAPL", "exec_id": "forged", "price": "1"});
    for _ in 0..5 {
        a.send(Message::text(forged.to_string())).await.unwrap();
    }
    send_bar(&s.bus, "AAPL", 60, dec!(100));
    let mut seen_bar = false;
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        for ws in [&mut a, &mut b] {
            if let Some(m) = next_json(ws, Duration::from_millis(100)).await {
                assert_ne!(m["type"], "fill", "a client's message was rebroadcast: {m}");
                assert!(!m.to_string().contains("forged"), "{m}");
                seen_bar |= m["type"] == "market";
            }
        }
    }
    assert!(seen_bar, "the bus still flows to both clients");
    let (_, f) = get_json(s.dash, "/api/fills").await;
    assert_eq!(f["fills"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_and_never_blocks_the_bus() {
    let s = server().await;
    // Connects, then never reads a byte.
    let (stuck, _) = tokio_tungstenite::connect_async(format!("ws://{}/", s.ws))
        .await
        .unwrap();
    let (mut healthy, _) = tokio_tungstenite::connect_async(format!("ws://{}/", s.ws))
        .await
        .unwrap();
    let _ = next_json(&mut healthy, Duration::from_secs(5))
        .await
        .unwrap();
    let big = Decimal::new(123_456_789_012, 6);
    let t = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..50_000 {
        let one = Instant::now();
        send_bar(&s.bus, "AAPL", i, big);
        slowest = slowest.max(one.elapsed());
        if i % 1000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(
        slowest < Duration::from_millis(50),
        "a bus send took {slowest:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "sending took {:?}",
        t.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = http(s.dash, "GET", "/metrics", &[], "").await;
        let dropped = text
            .lines()
            .find(|l| l.starts_with("robo_websocket_disconnects_total{reason=\"too_slow\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if dropped >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stuck client was not dropped:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stuck);
    // A fresh client still gets served.
    let (mut fresh, _) = tokio_tungstenite::connect_async(format!("ws://{}/", s.ws))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut fresh, Duration::from_secs(5)).await.unwrap()["type"],
        "snapshot"
    );
}

fn check_exposition(text: &str) {
    let mut samples = 0;
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name_labels, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "{line}"
        );
        let name = name_labels.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = name_labels.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
        }
        samples += 1;
    }
    assert!(samples > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness() {
    let s = server().await;
    let (st, h) = get_json(s.dash, "/healthz").await;
    assert_eq!((st, h), (200, json!({"status": "alive"})));
    let (st, r) = get_json(s.dash, "/readyz").await;
    assert_eq!(st, 503);
    assert!(r["reasons"].to_string().contains("no bar"), "{r}");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", s.ws))
        .await
        .unwrap();
    let _ = next_json(&mut ws, Duration::from_secs(5)).await;
    s.bus
        .send(Arc::new(BusEvent::Clock {
            now: Ts::from_secs(T0 + 120),
        }))
        .unwrap();
    send_bar(&s.bus, "AAPL", 60, dec!(100));
    send_bar(&s.bus, "AAPL", 60, dec!(100));
    // Wait until the client has the bar, so the latency histogram has a sample.
    while next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["type"] != "market" {}
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (st, r) = get_json(s.dash, "/readyz").await;
    assert_eq!(st, 200, "{r}");

    let (st, text) = http(s.dash, "GET", "/metrics", &[], "").await;
    assert_eq!(st, 200);
    check_exposition(&text);
    for want in [
        "robo_bars_received_total{symbol=\"AAPL\"} 2",
        // The clock (T0 + 120) less the bar's open time (T0 + 60).
        "robo_data_age_seconds{symbol=\"AAPL\"} 60",
        "robo_connection_state{state=\"ready\"} 1",
        "robo_connection_reconnects 0",
        "robo_equity_dollars 99995",
        "robo_day_pnl_dollars 35",
        "robo_websocket_clients 1",
        "robo_trading_state{state=\"active\"} 1",
        "robo_bar_to_websocket_latency_seconds_bucket",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(want)),
            "missing {want:?} in\n{text}"
        );
    }
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            // promtool exits 3 for lint warnings only (e.g. a counter without _total).
            assert!(
                out.status.code() == Some(0) || out.status.code() == Some(3),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) if std::env::var_os("CI").is_some() => panic!("promtool is required when CI is set"),
        Err(_) => eprintln!("notice: promtool not installed; skipped `promtool check metrics`"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_charts_openapi_and_logs() {
    let s = server().await;
    let (st, page) = http(s.dash, "GET", "/", &[], "").await;
    assert_eq!(st, 200);
    for tab in [
        "Overview",
        "Watchlist",
        "Positions",
        "Orders &amp; Fills",
        "Decisions",
        "Performance",
        "Risk",
        "Logs",
    ] {
        assert!(page.contains(tab), "{tab}");
    }
    let (_, js) = http(s.dash, "GET", "/app.js", &[], "").await;
    let (_, css) = http(s.dash, "GET", "/style.css", &[], "").await;
    for asset in [&page, &js, &css] {
        assert!(
            !asset.contains("http://") && !asset.contains("https://"),
            "no external requests"
        );
    }
    assert!(js.contains("\"/ws\""));
    for chart in ["/api/charts/equity.svg", "/api/charts/drawdown.svg"] {
        let (st, svg) = http(s.dash, "GET", chart, &[], "").await;
        assert_eq!(st, 200);
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{chart}");
        assert!(
            svg.contains("<polyline") || svg.contains("<path"),
            "{chart}: no line drawn"
        );
    }
    let (_, doc) = get_json(s.dash, "/api/openapi.json").await;
    assert_eq!(doc["openapi"], "3.0.3");
    for (path, method, _) in web::openapi::ENDPOINTS {
        assert!(doc["paths"][path][method].is_object(), "{path}");
        if *method == "get" && *path != "/ws" {
            let (st, _) = http(s.dash, "GET", path, &[], "").await;
            assert!(
                st == 200 || (*path == "/readyz" && st == 503),
                "{path}: {st}"
            );
        } else if *method == "post" {
            let (st, _) = http(s.dash, "POST", path, &[], "").await;
            assert_eq!(st, 401, "{path}");
        }
    }
    let (_, cfg) = get_json(s.dash, "/api/config").await;
    assert!(cfg["toml"]
        .as_str()
        .unwrap()
        .contains("max_open_positions = 5"));

    robo_trader::logging::publish_log_line(robo_trader::logging::LogLine {
        ts: "2024-01-02T14:30:00.000Z".into(),
        level: "WARN".into(),
        target: "test".into(),
        message: "web-test warning line".into(),
    });
    robo_trader::logging::publish_log_line(robo_trader::logging::LogLine {
        ts: "2024-01-02T14:30:00.000Z".into(),
        level: "DEBUG".into(),
        target: "test".into(),
        message: "web-test debug line".into(),
    });
    let (_, l) = get_json(s.dash, "/api/logs?level=warn").await;
    let text = l.to_string();
    assert!(
        text.contains("web-test warning line") && !text.contains("web-test debug line"),
        "{text}"
    );
    let (_, l) = get_json(s.dash, "/api/logs?level=DEBUG").await;
    assert!(l.to_string().contains("web-test debug line"));
}
