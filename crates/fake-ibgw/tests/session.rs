//! Handshake, startup sequence, request recording and connection counting over a raw socket.

mod common;

use common::*;
use fake_ibgw::{proto, Request, RequestKind, ServerMsg};
use std::time::Duration;

#[tokio::test]
async fn handshake_then_next_valid_id_accounts_and_farm_notices() {
    let gw = flat_gateway(|_| {}).await;
    let mut c = RawClient::hello(gw.addr(), 213, 226).await.unwrap();
    let (version, time) = c.read_handshake().await.unwrap();
    assert_eq!(version, 213);
    // Market time starts at ORIGIN_S = 2026-01-01 00:00:00 UTC; a handshake takes far under a
    // market minute even at the 50x speed of 100 ms bars.
    assert!(
        time.starts_with("20260101 00:0") && time.ends_with(" UTC"),
        "{time:?}"
    );
    c.start_api(7).await;
    let startup = c.take(5).await;
    assert_eq!(
        startup[0],
        ServerMsg::NextValidId(proto::NextValidId { order_id: Some(1) })
    );
    assert_eq!(
        startup[1],
        ServerMsg::ManagedAccounts(proto::ManagedAccounts {
            accounts_list: Some("DU1234567".into())
        })
    );
    let notices: Vec<(i32, i32)> = startup[2..]
        .iter()
        .map(|m| match m {
            ServerMsg::Error(e) => (e.id.unwrap(), e.error_code.unwrap()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(notices, [(-1, 2104), (-1, 2106), (-1, 2158)]);
    assert_eq!(gw.client_ids_seen(), [7]);
    assert_eq!(gw.requests_of(RequestKind::StartApi).len(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn client_range_without_our_version_is_closed_unanswered() {
    let gw = flat_gateway(|_| {}).await;
    let mut c = RawClient::hello(gw.addr(), 100, 187).await.unwrap();
    assert!(c.sees_eof_within(WAIT).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn current_time_is_market_time() {
    let gw = flat_gateway(|c| c.bar_interval = Duration::from_secs(5)).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(current_time()).await;
    let ServerMsg::CurrentTime(t) = c.recv().await else {
        panic!()
    };
    let t = t.current_time.unwrap();
    assert!((ORIGIN_S..ORIGIN_S + 5).contains(&t), "{t}");
    gw.shutdown().await;
}

#[tokio::test]
async fn order_ids_persist_per_client_id_across_sessions() {
    let gw = flat_gateway(|_| {}).await;
    let (mut a, startup) = RawClient::connect(gw.addr(), 7).await;
    assert_eq!(
        startup[0],
        ServerMsg::NextValidId(proto::NextValidId { order_id: Some(1) })
    );
    a.send(order(5, "BUY", "1", "MKT", None)).await;
    a.until(|m| matches!(m, ServerMsg::CommissionReport(_)))
        .await;
    a.send(Request::Ids(proto::IdsRequest { num_ids: Some(1) }))
        .await;
    assert_eq!(
        a.recv().await,
        ServerMsg::NextValidId(proto::NextValidId { order_id: Some(6) })
    );
    drop(a);
    wait_until(|| gw.active_connections() == 0).await;
    let (_b, startup) = RawClient::connect(gw.addr(), 7).await;
    assert_eq!(
        startup[0],
        ServerMsg::NextValidId(proto::NextValidId { order_id: Some(6) })
    );
    let (_c, startup) = RawClient::connect(gw.addr(), 8).await;
    assert_eq!(
        startup[0],
        ServerMsg::NextValidId(proto::NextValidId { order_id: Some(1) })
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn counts_connections_and_simultaneous_peak() {
    let gw = flat_gateway(|_| {}).await;
    let (a, _) = RawClient::connect(gw.addr(), 1).await;
    let (b, _) = RawClient::connect(gw.addr(), 2).await;
    let (c, _) = RawClient::connect(gw.addr(), 3).await;
    assert_eq!(gw.active_connections(), 3);
    drop((a, b));
    wait_until(|| gw.active_connections() == 1).await;
    let (d, _) = RawClient::connect(gw.addr(), 4).await;
    assert_eq!(gw.connection_count(), 4);
    assert_eq!(gw.max_simultaneous_connections(), 3);
    assert_eq!(gw.client_ids_seen(), [1, 2, 3, 4]);
    drop((c, d));
    gw.shutdown().await;
    assert_eq!(gw.active_connections(), 0);
}

#[tokio::test]
async fn unknown_and_malformed_frames_are_recorded_and_the_session_survives() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send_raw(&[0, 0, 3, 0xE7, 1, 2, 3]).await; // wire id 999
    c.send_raw(&[0, 0, 0, 220, 0x12, 0x05, 1]).await; // historical with a truncated field
    c.send_raw(&[0, 0, 0, 71, b'2', 0]).await; // a text-framed startApi
    c.send(current_time()).await;
    assert!(matches!(c.recv().await, ServerMsg::CurrentTime(_)));
    let kinds: Vec<RequestKind> = gw.requests().iter().map(|r| r.kind()).collect();
    assert_eq!(
        kinds,
        [
            RequestKind::StartApi,
            RequestKind::Unknown,
            RequestKind::Malformed,
            RequestKind::Unknown,
            RequestKind::CurrentTime
        ]
    );
    let rec = &gw.requests()[4];
    assert_eq!((rec.conn_id, rec.client_id), (0, Some(1)));
    gw.shutdown().await;
}

#[tokio::test]
async fn requests_before_start_api_are_recorded_not_answered() {
    let gw = flat_gateway(|_| {}).await;
    let mut c = RawClient::hello(gw.addr(), 213, 226).await.unwrap();
    c.read_handshake().await.unwrap();
    c.send(current_time()).await;
    assert!(matches!(
        c.recv_within(Duration::from_millis(200)).await,
        Recv::Timeout
    ));
    assert_eq!(gw.requests_of(RequestKind::CurrentTime)[0].client_id, None);
    gw.shutdown().await;
}

pub async fn wait_until(cond: impl Fn() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 3 s");
}
