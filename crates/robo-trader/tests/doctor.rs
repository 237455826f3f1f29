//! `doctor` against the fake gateway: each fault gives its verdict code within 15 s, and a
//! healthy gateway passes every check with its server version and accounts reported.

use std::time::{Duration, Instant};

use fake_ibgw::world::{SymbolSpec, WorldConfig};
use fake_ibgw::{ConnBehavior, FakeGateway, GatewayConfig, Handle};
use robo_trader::doctor::{diagnose, render_text, DoctorTarget, Report, Verdict};

async fn gateway(behaviors: Vec<ConnBehavior>) -> Handle {
    FakeGateway::start(GatewayConfig {
        world: WorldConfig {
            symbols: vec![SymbolSpec::flat("AAPL", 265_598, 10_000)],
            ..WorldConfig::default()
        },
        // Market time at wall-clock speed, so the clock-skew check sees no skew.
        bar_interval: Duration::from_secs(5),
        behaviors,
        ..GatewayConfig::default()
    })
    .await
    .expect("gateway starts")
}

fn target(port: u16) -> DoctorTarget {
    DoctorTarget {
        host: "127.0.0.1".into(),
        port,
        client_id: 110,
        symbols: vec!["AAPL".into()],
        deadline: Duration::from_secs(14),
    }
}

async fn run(port: u16) -> (Report, Duration) {
    let t0 = Instant::now();
    let r = diagnose(&target(port)).await;
    (r, t0.elapsed())
}

fn gateway_code(r: &Report) -> Verdict {
    r.checks
        .iter()
        .find(|c| c.name == "gateway")
        .expect("gateway check")
        .code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_gateway_passes_and_closes_its_socket() {
    let gw = gateway(vec![]).await;
    let (r, took) = run(gw.port()).await;
    assert!(r.ok, "{}", render_text(&r));
    assert!(took < Duration::from_secs(15));
    assert_eq!(r.server_version, Some(213));
    assert_eq!(r.accounts, vec!["DU1234567".to_string()]);
    let codes: Vec<(&str, Verdict)> = r.checks.iter().map(|c| (c.name.as_str(), c.code)).collect();
    assert_eq!(
        codes,
        vec![
            ("gateway", Verdict::Ok),
            ("server_version", Verdict::Ok),
            ("accounts", Verdict::Ok),
            ("mode", Verdict::Ok),
            ("read_only", Verdict::Note),
            ("farms", Verdict::Ok),
            ("clock_skew", Verdict::Ok),
            ("market_data:AAPL", Verdict::Ok),
        ]
    );
    assert_eq!(gw.client_ids_seen(), vec![110]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gw.active_connections(), 0, "closed cleanly");
    assert_eq!(gw.max_simultaneous_connections(), 1);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["checks"][0]["code"], "ok");
    assert_eq!(json["ok"], true);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_not_running_with_how_to_start() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (r, took) = run(port).await;
    assert!(!r.ok);
    assert_eq!(gateway_code(&r), Verdict::NotRunning);
    assert!(
        r.checks[0].next_step.contains("start IB Gateway"),
        "{:?}",
        r.checks[0]
    );
    assert!(took < Duration::from_secs(2));
    assert!(render_text(&r).contains("not_running"));
}

async fn fault(b: ConnBehavior, expected: Verdict) {
    let gw = gateway(vec![b.clone()]).await;
    let (r, took) = run(gw.port()).await;
    assert!(!r.ok, "{b:?}");
    assert_eq!(gateway_code(&r), expected, "{b:?}: {}", render_text(&r));
    assert!(took < Duration::from_secs(15), "{b:?} took {took:?}");
    assert!(gw.max_simultaneous_connections() <= 1);
    assert!(gw.connection_count() <= 1, "doctor makes one connection");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_and_hang_is_timeout() {
    fault(ConnBehavior::AcceptAndHang, Verdict::Timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_then_hang_is_timeout() {
    fault(ConnBehavior::HandshakeThenHang, Verdict::Timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_immediately_is_connection_closed() {
    fault(ConnBehavior::CloseImmediately, Verdict::ConnectionClosed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_server_version_is_unsupported() {
    fault(
        ConnBehavior::ServerVersion(187),
        Verdict::ServerVersionUnsupported,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_id_in_use_is_reported() {
    fault(ConnBehavior::ClientIdInUse, Verdict::ClientIdInUse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_history_is_no_answer_within_the_budget() {
    let gw = gateway(vec![]).await;
    gw.ignore(fake_ibgw::RequestKind::HistoricalData);
    let (r, took) = run(gw.port()).await;
    assert!(!r.ok);
    assert!(took < Duration::from_secs(15), "{took:?}");
    let md = r
        .checks
        .iter()
        .find(|c| c.name == "market_data:AAPL")
        .unwrap();
    assert_eq!(md.code, Verdict::NoAnswer);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symbol_without_real_time_permission_is_a_note_not_a_failure() {
    let gw = gateway(vec![]).await;
    gw.set_no_realtime("AAPL", Some(10089));
    let (r, took) = run(gw.port()).await;
    assert!(r.ok, "{}", render_text(&r));
    assert!(took < Duration::from_secs(15), "{took:?}");
    let rt = r
        .checks
        .iter()
        .find(|c| c.name == "realtime:AAPL")
        .expect("a realtime check for AAPL");
    assert_eq!(rt.code, Verdict::Note);
    assert!(rt.detail.contains("10089"), "{}", rt.detail);
    assert!(render_text(&r).contains("realtime:AAPL"));
    gw.shutdown().await;
}
