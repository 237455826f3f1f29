//! The IB session supervisor and adapter against the fake gateway, one test per fault, each
//! asserting the recovery and that at most one socket was ever open. Real (short) delays:
//! ibapi's internals run on real sockets, so the paused clock is not used here.

use std::time::Duration;

use fake_ibgw::world::{SymbolSpec, WorldConfig};
use fake_ibgw::{ConnBehavior, FakeGateway, GatewayConfig, Handle, RequestKind};
use robo_core::types::{
    ClientOrderId, ConnectionState, OrderKind, OrderPurpose, OrderRequest, Side, SymbolId, Tif, Ts,
    Universe,
};
use robo_trader::broker::ibkr::HistBarSize;
use robo_trader::broker::{
    BrokerError, BrokerEvent, DegradedCause, FatalReason, HistQuery, IbkrBroker, OrderRefusal,
    Session, SessionConfig, SessionState,
};
use rust_decimal_macros::dec;

const ORIGIN_S: i64 = 1_767_225_600;

async fn gateway(behaviors: Vec<ConnBehavior>) -> Handle {
    let config = GatewayConfig {
        world: WorldConfig {
            symbols: vec![SymbolSpec::flat("AAPL", 265_598, 10_000)],
            ..WorldConfig::default()
        },
        bar_interval: Duration::from_millis(100),
        origin_unix_ms: Some(ORIGIN_S * 1000),
        behaviors,
        ..GatewayConfig::default()
    };
    FakeGateway::start(config).await.expect("gateway starts")
}

fn config(gw: &Handle) -> SessionConfig {
    SessionConfig {
        host: "127.0.0.1".into(),
        port: gw.port(),
        client_ids: vec![10],
        connect_timeout: Duration::from_millis(500),
        handshake_timeout: Duration::from_millis(1000),
        heartbeat_interval: Duration::from_millis(300),
        // Generous: on a loaded 2-core CI box a 600 ms answer can be late, and a spurious
        // reconnect would break the tests that count requests per connection. The stall test
        // sets its own short bound.
        heartbeat_timeout: Duration::from_secs(3),
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_millis(800),
        restart_window: None,
        require_reconcile: false,
        request_timeout: Duration::from_secs(3),
        ..SessionConfig::default()
    }
}

fn ready(s: &SessionState) -> bool {
    *s == SessionState::Ready
}

async fn expect_state(
    session: &Session,
    within: Duration,
    pred: impl Fn(&SessionState) -> bool,
    what: &str,
) {
    assert!(
        session.wait_for(within, pred).await.is_some(),
        "{what}: state stayed {:?}",
        session.state()
    );
}

async fn finish(session: Session, gw: Handle) {
    session.shutdown().await;
    assert!(
        gw.max_simultaneous_connections() <= 1,
        "{} sockets at once",
        gw.max_simultaneous_connections()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_then_listening_connects_with_backoff() {
    let gw = gateway(vec![
        ConnBehavior::RefuseFor(Duration::from_millis(1200)),
        ConnBehavior::Normal,
    ])
    .await;
    let session = Session::start(config(&gw));
    let mut transitions = session.transitions();
    expect_state(&session, Duration::from_secs(8), ready, "after the refusal").await;
    let mut saw_refused = false;
    while let Ok(t) = transitions.try_recv() {
        saw_refused |= t.reason.contains("nothing is listening");
    }
    assert!(saw_refused, "a refused attempt is reported with its reason");
    assert_eq!(session.connection_state(), ConnectionState::Ready);
    assert_eq!(gw.connection_count(), 1);
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_and_hang_times_out_closes_and_retries() {
    let gw = gateway(vec![ConnBehavior::AcceptAndHang, ConnBehavior::Normal]).await;
    let session = Session::start(config(&gw));
    let t0 = std::time::Instant::now();
    expect_state(&session, Duration::from_secs(8), ready, "after the hang").await;
    // Our 1.5 s bound fired (ibapi alone would wait forever).
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(gw.connection_count(), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gw.active_connections(), 1, "the hung socket was closed");
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_then_hang_times_out_and_retries() {
    let gw = gateway(vec![ConnBehavior::HandshakeThenHang, ConnBehavior::Normal]).await;
    let session = Session::start(config(&gw));
    expect_state(
        &session,
        Duration::from_secs(8),
        ready,
        "after the handshake hang",
    )
    .await;
    assert_eq!(gw.connection_count(), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gw.active_connections(), 1);
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_version_187_is_fatal_without_retries() {
    let gw = gateway(vec![ConnBehavior::ServerVersion(187)]).await;
    let session = Session::start(config(&gw));
    expect_state(
        &session,
        Duration::from_secs(5),
        |s| matches!(s, SessionState::Fatal { .. }),
        "fatal",
    )
    .await;
    let SessionState::Fatal { reason } = session.state() else {
        unreachable!()
    };
    assert_eq!(
        reason,
        FatalReason::ServerVersionUnsupported {
            ours_min: 213,
            ours_max: 226,
            theirs: 187
        }
    );
    let text = reason.to_string();
    assert!(text.contains("187") && text.contains("213..226"), "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        gw.connection_count() <= 2,
        "retry storm: {} connections",
        gw.connection_count()
    );
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_id_in_use_rotates_to_the_next_id() {
    let gw = gateway(vec![ConnBehavior::ClientIdInUseFor(vec![10])]).await;
    let mut cfg = config(&gw);
    cfg.client_ids = vec![10, 11];
    let session = Session::start(cfg);
    expect_state(&session, Duration::from_secs(6), ready, "after 326").await;
    assert_eq!(gw.client_ids_seen(), vec![10, 11]);
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_is_caught_by_the_heartbeat_and_the_session_rebuilt() {
    let gw = gateway(vec![]).await;
    let mut cfg = config(&gw);
    // The first retry comes 0.5–1 s after the drop, after the gateway reaped the old socket.
    cfg.backoff_base = Duration::from_secs(1);
    cfg.heartbeat_timeout = Duration::from_millis(600);
    let session = Session::start(cfg);
    expect_state(&session, Duration::from_secs(5), ready, "first connect").await;
    assert_eq!(session.generation(), 1);
    gw.stall();
    let t0 = std::time::Instant::now();
    // interval 0.3 s + timeout 0.6 s (≈ 0.9 s): well under the 40 s production bound (30 + 10);
    // the bound below leaves room for a loaded machine.
    expect_state(
        &session,
        Duration::from_secs(6),
        |s| !s.is_connected(),
        "stall detected",
    )
    .await;
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // A stalled gateway reads nothing, so it never sees our FIN and keeps the session (and its
    // client id) until it notices; the fake models that moment with drop_now.
    gw.drop_now();
    expect_state(
        &session,
        Duration::from_secs(6),
        |s| *s == SessionState::Ready,
        "rebuilt",
    )
    .await;
    assert_eq!(session.generation(), 2);
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frame_forces_a_reconnect() {
    let gw = gateway(vec![]).await;
    let session = Session::start(config(&gw));
    expect_state(&session, Duration::from_secs(5), ready, "first connect").await;
    gw.garbage_frame();
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while session.generation() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(session.generation(), 2);
    assert_eq!(gw.connection_count(), 2);
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_lost_degrades_and_1101_resubscribes() {
    let gw = gateway(vec![]).await;
    let session = Session::start(config(&gw));
    let universe = Universe::new(["AAPL"]).unwrap();
    let (broker, _events) = IbkrBroker::new(session.clone(), universe);
    expect_state(&session, Duration::from_secs(5), ready, "first connect").await;
    let mut bars = broker.subscribe_minute_bars(vec![SymbolId(0)]);
    gw.wait_for_requests(RequestKind::RealTimeBars, 1, Duration::from_secs(3))
        .await
        .expect("subscribed");

    gw.system(1100);
    expect_state(
        &session,
        Duration::from_secs(2),
        |s| {
            *s == SessionState::Degraded {
                cause: DegradedCause::IbLinkLost,
            }
        },
        "1100",
    )
    .await;
    assert_eq!(session.connection_state(), ConnectionState::Degraded);
    gw.system(1102);
    expect_state(&session, Duration::from_secs(2), ready, "1102").await;
    assert_eq!(
        gw.requests_of(RequestKind::RealTimeBars).len(),
        1,
        "1102 keeps the data"
    );

    gw.system(1101);
    let again = gw
        .wait_for_requests(RequestKind::RealTimeBars, 2, Duration::from_secs(3))
        .await;
    assert!(again.is_some(), "1101 re-requests realtime bars");
    assert_eq!(session.generation(), 1, "on the same connection");
    // 100 ms per 5 s bar: a minute bar (12 five-second bars) arrives in ~1.3 s.
    let bar = tokio::time::timeout(Duration::from_secs(5), bars.recv())
        .await
        .expect("a minute bar")
        .expect("open");
    assert_eq!(
        (bar.open, bar.close, bar.ts.secs() % 60),
        (dec!(100), dec!(100), 0)
    );
    finish(session, gw).await;
}

fn hist() -> HistQuery {
    HistQuery {
        bar: HistBarSize::Min1,
        duration_secs: 180,
        regular_hours_only: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_historical_is_bounded_and_cancelled() {
    let gw = gateway(vec![]).await;
    let mut cfg = config(&gw);
    cfg.request_timeout = Duration::from_secs(1);
    let session = Session::start(cfg);
    let (broker, _events) = IbkrBroker::new(session.clone(), Universe::new(["AAPL"]).unwrap());
    expect_state(&session, Duration::from_secs(5), ready, "connect").await;
    gw.delay(RequestKind::HistoricalData, Duration::from_secs(5));
    let t0 = std::time::Instant::now();
    let r = broker.historical_bars(SymbolId(0), &hist()).await;
    assert!(matches!(r, Err(BrokerError::Timeout { .. })), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    assert!(
        gw.expect(RequestKind::CancelHistoricalData, Duration::from_secs(2))
            .await
            .is_some(),
        "the fake saw the cancel"
    );
    assert_eq!(gw.requests_of(RequestKind::HistoricalData).len(), 1);
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn historical_fetch_returns_exact_prices() {
    let gw = gateway(vec![]).await;
    let session = Session::start(config(&gw));
    let (broker, _events) = IbkrBroker::new(session.clone(), Universe::new(["AAPL"]).unwrap());
    expect_state(&session, Duration::from_secs(5), ready, "connect").await;
    let bars = broker
        .historical_bars(SymbolId(0), &hist())
        .await
        .expect("bars");
    assert_eq!(bars.len(), 3);
    assert!(bars
        .iter()
        .all(|b| b.open == dec!(100) && b.close == dec!(100) && b.symbol == SymbolId(0)));
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_mid_historical_re_requests_once_after_fifteen_seconds() {
    let gw = gateway(vec![]).await;
    let mut cfg = config(&gw);
    cfg.request_timeout = Duration::from_secs(5);
    let session = Session::start(cfg);
    let (broker, _events) = IbkrBroker::new(session.clone(), Universe::new(["AAPL"]).unwrap());
    expect_state(&session, Duration::from_secs(5), ready, "connect").await;
    gw.drop_when(RequestKind::HistoricalData);
    let bars = tokio::time::timeout(
        Duration::from_secs(25),
        broker.historical_bars(SymbolId(0), &hist()),
    )
    .await
    .expect("bounded")
    .expect("bars after the reconnect");
    assert_eq!(bars.len(), 3);
    let reqs = gw.requests_of(RequestKind::HistoricalData);
    assert_eq!(reqs.len(), 2, "exactly one re-request");
    assert_ne!(reqs[0].conn_id, reqs[1].conn_id);
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_secs(15),
        "identical request after only {gap:?}"
    );
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_error_162_is_returned_not_retried() {
    let gw = gateway(vec![]).await;
    gw.set_pacing(true);
    let mut cfg = config(&gw);
    // Our pacer deliberately looser than IB's so the gateway's rule fires.
    cfg.pacing.identical_window = Duration::from_millis(100);
    let session = Session::start(cfg);
    let (broker, _events) = IbkrBroker::new(session.clone(), Universe::new(["AAPL"]).unwrap());
    expect_state(&session, Duration::from_secs(5), ready, "connect").await;
    broker
        .historical_bars(SymbolId(0), &hist())
        .await
        .expect("first is fine");
    let r = broker.historical_bars(SymbolId(0), &hist()).await;
    assert!(
        matches!(r, Err(BrokerError::Gateway { code: 162, .. })),
        "{r:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        gw.requests_of(RequestKind::HistoricalData).len(),
        2,
        "no retry storm"
    );
    assert_eq!(session.state(), SessionState::Ready);
    finish(session, gw).await;
}

fn buy(id: u64, kind: OrderKind) -> OrderRequest {
    OrderRequest {
        id: ClientOrderId(id),
        symbol: SymbolId(0),
        side: Side::Buy,
        qty: 10,
        kind,
        tif: Tif::Day,
        purpose: OrderPurpose::Entry,
        ts: Ts::from_secs(ORIGIN_S),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_321_is_reported_and_not_retried() {
    let gw = gateway(vec![ConnBehavior::ReadOnly]).await;
    let session = Session::start(config(&gw));
    let (broker, mut events) = IbkrBroker::new(session.clone(), Universe::new(["AAPL"]).unwrap());
    expect_state(&session, Duration::from_secs(5), ready, "connect").await;
    broker
        .place_order(&buy(1, OrderKind::Market))
        .await
        .expect("sent");
    // Generous: the answer comes in milliseconds, but a loaded CI machine must not fail it.
    let ev = tokio::time::timeout(Duration::from_secs(15), events.recv())
        .await
        .expect("an event")
        .expect("open");
    let BrokerEvent::Order(u) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(u.order_id, ClientOrderId(1));
    assert!(
        matches!(&u.status, robo_core::events::BrokerStatus::Rejected { reason } if reason.starts_with("321")),
        "{u:?}"
    );
    assert!(session.read_only_seen());
    let again = broker.place_order(&buy(2, OrderKind::Market)).await;
    assert_eq!(again, Err(OrderRefusal::ReadOnly));
    assert_eq!(gw.requests_of(RequestKind::PlaceOrder).len(), 1);
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_wait_for_reconciliation_and_a_fill_during_a_disconnect_is_recovered_once() {
    let gw = gateway(vec![]).await;
    let mut cfg = config(&gw);
    cfg.require_reconcile = true;
    let session = Session::start(cfg);
    let (broker, mut events) = IbkrBroker::new(session.clone(), Universe::new(["AAPL"]).unwrap());
    expect_state(
        &session,
        Duration::from_secs(5),
        |s| matches!(s, SessionState::Syncing { .. }),
        "syncing",
    )
    .await;
    assert_eq!(
        broker
            .place_order(&buy(1, OrderKind::Limit { limit: dec!(99) }))
            .await,
        Err(OrderRefusal::NotReady("syncing".into()))
    );
    let rec = broker.reconcile(None).await.expect("reconcile");
    assert_eq!(rec, Default::default());
    assert_eq!(session.state(), SessionState::Ready);

    broker
        .place_order(&buy(1, OrderKind::Limit { limit: dec!(99) }))
        .await
        .expect("sent");
    gw.wait_for_requests(RequestKind::PlaceOrder, 1, Duration::from_secs(2))
        .await
        .expect("placed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.set_refusing(true);
    gw.drop_now();
    expect_state(
        &session,
        Duration::from_secs(3),
        |s| !s.is_connected(),
        "dropped",
    )
    .await;
    assert!(gw.set_price("AAPL", 9_800));
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while gw.with_world(|w| w.executions().len()) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        gw.with_world(|w| w.executions().len()),
        1,
        "filled while we were away"
    );
    gw.set_refusing(false);
    expect_state(
        &session,
        Duration::from_secs(6),
        |s| matches!(s, SessionState::Syncing { .. }),
        "reconnected",
    )
    .await;
    let rec = broker.reconcile(None).await.expect("reconcile");
    assert_eq!(rec.fills.len(), 1, "{rec:?}");
    let f = &rec.fills[0];
    assert_eq!(
        (f.order_id, f.side, f.qty),
        (ClientOrderId(1), Side::Buy, 10)
    );
    assert!(f.price <= dec!(99), "{}", f.price);
    assert_eq!(
        rec.positions
            .iter()
            .map(|p| (p.symbol.as_str(), p.qty))
            .collect::<Vec<_>>(),
        vec![("AAPL", 10)]
    );
    assert!(rec.open_orders.is_empty());
    // Reconciling again from the last exec id finds nothing new.
    let again = broker
        .reconcile(Some(&f.exec_id.0))
        .await
        .expect("reconcile");
    assert!(again.fills.is_empty());
    // The live stream never reports that fill a second time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(ev) = events.try_recv() {
        assert!(
            !matches!(&ev, BrokerEvent::Fill(x) if x.exec_id == f.exec_id),
            "fill repeated: {ev:?}"
        );
    }
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_publish_their_round_trip_and_generation() {
    let gw = gateway(vec![]).await;
    let mut cfg = config(&gw);
    cfg.heartbeat_interval = Duration::from_millis(100);
    let session = Session::start(cfg);
    let mut beats = session.heartbeats();
    assert_eq!(*beats.borrow(), None, "no sample before the first answer");
    expect_state(&session, Duration::from_secs(5), ready, "connect").await;
    // The first tick is skipped (it is immediate): samples at ~0.1 s, ~0.2 s, ~0.3 s.
    let third = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            beats.changed().await.expect("session alive");
            if let Some(h) = *beats.borrow_and_update() {
                if h.seq >= 3 {
                    return h;
                }
            }
        }
    })
    .await
    .expect("three heartbeats within 3 s");
    assert_eq!(third.generation, 1);
    // A loopback round trip is well under the 600 ms heartbeat timeout.
    assert!(
        third.latency < Duration::from_millis(600),
        "{:?}",
        third.latency
    );
    assert!(gw.requests_of(RequestKind::CurrentTime).len() >= 3);
    finish(session, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_symbol_is_re_requested_alone() {
    let gw = gateway(vec![]).await;
    let session = Session::start(config(&gw));
    let universe = Universe::new(["AAPL"]).unwrap();
    let (broker, _events) = IbkrBroker::new(session.clone(), universe);
    expect_state(&session, Duration::from_secs(5), ready, "connect").await;
    // The first request is never answered: the feed is stale.
    gw.ignore(RequestKind::RealTimeBars);
    let mut bars = broker.subscribe_minute_bars(vec![SymbolId(0)]);
    gw.wait_for_requests(RequestKind::RealTimeBars, 1, Duration::from_secs(3))
        .await
        .expect("subscribed");
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), bars.recv())
            .await
            .is_err(),
        "no bar from an ignored request"
    );
    gw.unignore(RequestKind::RealTimeBars);
    assert!(!broker.resubscribe_bars(SymbolId(1)), "not in the universe");
    assert!(broker.resubscribe_bars(SymbolId(0)));
    gw.wait_for_requests(RequestKind::RealTimeBars, 2, Duration::from_secs(3))
        .await
        .expect("re-requested");
    assert_eq!(session.generation(), 1, "on the same connection");
    // ibapi sends the cancel when the old subscription is dropped, possibly after the new one.
    gw.wait_for_requests(RequestKind::CancelRealTimeBars, 1, Duration::from_secs(3))
        .await
        .expect("the stale request is cancelled");
    assert_eq!(gw.requests_of(RequestKind::CancelRealTimeBars).len(), 1);
    let bar = tokio::time::timeout(Duration::from_secs(5), bars.recv())
        .await
        .expect("a minute bar after the resubscribe")
        .expect("open");
    assert_eq!((bar.open, bar.close), (dec!(100), dec!(100)));
    finish(session, gw).await;
}
