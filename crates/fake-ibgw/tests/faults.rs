//! Every fault's observable behaviour, seen from a raw socket.

mod common;

use common::*;
use fake_ibgw::codec::CodecError;
use fake_ibgw::{proto, ConnBehavior, Request, RequestKind, ServerMsg};
use std::time::Duration;
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_millis(250);

async fn connect_err_kind(addr: std::net::SocketAddr) -> Option<std::io::ErrorKind> {
    TcpStream::connect(addr).await.err().map(|e| e.kind())
}

#[tokio::test]
async fn set_refusing_closes_and_reopens_the_listener() {
    let gw = flat_gateway(|_| {}).await;
    gw.set_refusing(true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        connect_err_kind(gw.addr()).await,
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    gw.set_refusing(false);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_c, startup) = RawClient::connect(gw.addr(), 1).await;
    assert_eq!(startup.len(), 5);
    gw.shutdown().await;
}

#[tokio::test]
async fn refuse_for_entry_refuses_then_serves_next_entry() {
    let gw = flat_gateway(|c| {
        c.behaviors = vec![
            ConnBehavior::RefuseFor(Duration::from_millis(300)),
            ConnBehavior::Normal,
        ]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        connect_err_kind(gw.addr()).await,
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_c, startup) = RawClient::connect(gw.addr(), 1).await;
    assert_eq!(startup.len(), 5);
    assert_eq!(gw.connection_count(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn behavior_queue_nth_connection_takes_nth_entry_last_repeats() {
    let gw =
        flat_gateway(|c| c.behaviors = vec![ConnBehavior::CloseImmediately, ConnBehavior::Normal])
            .await;
    let mut first = RawClient::hello(gw.addr(), 213, 226).await.unwrap();
    assert!(first.sees_eof_within(WAIT).await, "early eof");
    for id in [1, 2] {
        let (_c, startup) = RawClient::connect(gw.addr(), id).await;
        assert_eq!(startup.len(), 5);
    }
    assert_eq!(gw.connection_count(), 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn accept_and_hang_never_writes_until_dropped() {
    let gw = flat_gateway(|c| c.behaviors = vec![ConnBehavior::AcceptAndHang]).await;
    let mut c = RawClient::hello(gw.addr(), 213, 226).await.unwrap();
    assert!(matches!(c.recv_within(SHORT).await, Recv::Timeout));
    assert_eq!(gw.active_connections(), 1);
    gw.drop_now();
    assert!(c.sees_eof_within(WAIT).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn handshake_then_hang_sends_version_but_no_startup() {
    let gw = flat_gateway(|c| c.behaviors = vec![ConnBehavior::HandshakeThenHang]).await;
    let mut c = RawClient::hello(gw.addr(), 213, 226).await.unwrap();
    assert_eq!(c.read_handshake().await.unwrap().0, 213);
    c.start_api(1).await;
    assert!(matches!(c.recv_within(SHORT).await, Recv::Timeout));
    gw.shutdown().await;
}

#[tokio::test]
async fn server_version_fault_replies_old_version_regardless_of_range() {
    let gw = flat_gateway(|c| c.behaviors = vec![ConnBehavior::ServerVersion(187)]).await;
    let mut c = RawClient::hello(gw.addr(), 213, 226).await.unwrap();
    assert_eq!(c.read_handshake().await.unwrap().0, 187);
    gw.shutdown().await;
}

#[tokio::test]
async fn client_id_in_use_sends_326_then_closes() {
    let gw = flat_gateway(|c| c.behaviors = vec![ConnBehavior::ClientIdInUse]).await;
    let mut c = RawClient::hello(gw.addr(), 213, 226).await.unwrap();
    c.read_handshake().await.unwrap();
    c.start_api(7).await;
    let m = c.recv().await;
    assert!(
        matches!(&m, ServerMsg::Error(e) if e.error_code == Some(326) && e.id == Some(-1)),
        "{m:?}"
    );
    assert!(c.sees_eof_within(WAIT).await);
    assert_eq!(gw.client_ids_seen(), [7]);
    gw.shutdown().await;
}

#[tokio::test]
async fn client_id_in_use_for_listed_ids_only() {
    let gw = flat_gateway(|c| c.behaviors = vec![ConnBehavior::ClientIdInUseFor(vec![7])]).await;
    let (_ok, startup) = RawClient::connect(gw.addr(), 8).await;
    assert!(matches!(startup[0], ServerMsg::NextValidId(_)));
    let mut c = RawClient::hello(gw.addr(), 213, 226).await.unwrap();
    c.read_handshake().await.unwrap();
    c.start_api(7).await;
    assert_eq!(c.recv().await.error_code(), Some(326));
    assert!(c.sees_eof_within(WAIT).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_client_id_held_by_a_live_session_gets_326() {
    let gw = flat_gateway(|_| {}).await;
    let (_first, _) = RawClient::connect(gw.addr(), 7).await;
    let mut c = RawClient::hello(gw.addr(), 213, 226).await.unwrap();
    c.read_handshake().await.unwrap();
    c.start_api(7).await;
    assert_eq!(c.recv().await.error_code(), Some(326));
    assert!(c.sees_eof_within(WAIT).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn read_only_rejects_orders_with_321() {
    let gw = flat_gateway(|c| c.behaviors = vec![ConnBehavior::ReadOnly]).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(order(3, "BUY", "10", "MKT", None)).await;
    let ServerMsg::Error(e) = c.recv().await else {
        panic!()
    };
    assert_eq!((e.id, e.error_code), (Some(3), Some(321)));
    assert!(gw.with_world(|w| w.executions().is_empty()));
    gw.shutdown().await;
}

#[tokio::test]
async fn runtime_read_only_switch() {
    let gw = flat_gateway(|_| {}).await;
    gw.set_read_only(true);
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(order(1, "BUY", "10", "MKT", None)).await;
    assert_eq!(c.recv().await.error_code(), Some(321));
    gw.shutdown().await;
}

#[tokio::test]
async fn drop_now_closes_with_fin() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    gw.drop_now();
    assert!(c.sees_eof_within(WAIT).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn reset_now_sends_rst() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    gw.reset_now();
    match c.recv_within(WAIT).await {
        Recv::Error(CodecError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        Recv::Eof => panic!("got FIN, wanted RST"),
        _ => panic!("no reset"),
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn drop_when_historical_closes_instead_of_answering_once() {
    let gw = flat_gateway(|_| {}).await;
    gw.drop_when(RequestKind::HistoricalData);
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(current_time()).await;
    assert!(
        matches!(c.recv().await, ServerMsg::CurrentTime(_)),
        "other requests still answered"
    );
    c.send(historical(1, "AAPL", "", "1 min", "180 S")).await;
    assert!(c.sees_eof_within(WAIT).await, "closed without bars");
    assert_eq!(gw.requests_of(RequestKind::HistoricalData).len(), 1);
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(historical(2, "AAPL", "", "1 min", "180 S")).await;
    assert!(
        matches!(c.recv().await, ServerMsg::HistoricalData(_)),
        "one-shot"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn stall_stops_answering_but_keeps_the_socket() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    gw.stall();
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.send(current_time()).await;
    assert!(
        matches!(c.recv_within(SHORT).await, Recv::Timeout),
        "no answer, no EOF"
    );
    assert_eq!(gw.active_connections(), 1);
    gw.drop_now();
    assert!(c.sees_eof_within(WAIT).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn garbage_frame_has_an_oversized_length() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    gw.garbage_frame();
    assert!(matches!(
        c.recv_within(WAIT).await,
        Recv::Error(CodecError::FrameTooLarge { len: 0xFFFF_FFFF })
    ));
    gw.shutdown().await;
}

#[tokio::test]
async fn system_notices_farm_flaps_and_custom_errors_keep_the_session() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    gw.system(1100);
    gw.system(1102);
    gw.farm_broken();
    gw.farm_ok();
    gw.send_error(17, 366, "No historical data query found for ticker id:17");
    let got: Vec<(i32, i32)> = c
        .take(5)
        .await
        .iter()
        .map(|m| match m {
            ServerMsg::Error(e) => (e.id.unwrap(), e.error_code.unwrap()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [(-1, 1100), (-1, 1102), (-1, 2103), (-1, 2104), (17, 366)]
    );
    c.send(current_time()).await;
    assert!(matches!(c.recv().await, ServerMsg::CurrentTime(_)));
    gw.shutdown().await;
}

#[tokio::test]
async fn delay_postpones_the_answer() {
    let gw = flat_gateway(|_| {}).await;
    gw.delay(RequestKind::CurrentTime, Duration::from_millis(400));
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(current_time()).await;
    assert!(matches!(
        c.recv_within(Duration::from_millis(200)).await,
        Recv::Timeout
    ));
    assert!(matches!(
        c.recv_within(Duration::from_millis(600)).await,
        Recv::Msg(ServerMsg::CurrentTime(_))
    ));
    gw.shutdown().await;
}

#[tokio::test]
async fn ignored_historical_is_never_answered_and_the_cancel_is_recorded() {
    let gw = flat_gateway(|_| {}).await;
    gw.ignore(RequestKind::HistoricalData);
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(historical(9, "AAPL", "", "1 min", "180 S")).await;
    assert!(matches!(c.recv_within(SHORT).await, Recv::Timeout));
    c.send(Request::CancelHistoricalData(proto::ReqId {
        req_id: Some(9),
    }))
    .await;
    let cancel = gw
        .expect(RequestKind::CancelHistoricalData, WAIT)
        .await
        .expect("cancel seen");
    assert_eq!(cancel.request.req_id(), Some(9));
    gw.shutdown().await;
}

#[tokio::test]
async fn pacing_rejects_an_identical_historical_request_within_15s() {
    let gw = flat_gateway(|_| {}).await;
    gw.set_pacing(true);
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(historical(1, "AAPL", "20260101 00:10:00", "1 min", "180 S"))
        .await;
    assert_eq!(
        c.take(2).await[1].kind(),
        fake_ibgw::ServerMsgKind::HistoricalDataEnd
    );
    c.send(historical(2, "AAPL", "20260101 00:10:00", "1 min", "180 S"))
        .await;
    let ServerMsg::Error(e) = c.recv().await else {
        panic!()
    };
    assert_eq!((e.id, e.error_code), (Some(2), Some(162)));
    c.send(historical(3, "AAPL", "20260101 00:10:00", "1 min", "240 S"))
        .await;
    assert!(
        matches!(c.recv().await, ServerMsg::HistoricalData(_)),
        "a different request is fine"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_excess_messages_with_error_100() {
    let gw = flat_gateway(|_| {}).await;
    gw.set_rate_limit(Some(5));
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    for _ in 0..8 {
        c.send(current_time()).await;
    }
    let msgs = c.take(8).await;
    let times = msgs
        .iter()
        .filter(|m| matches!(m, ServerMsg::CurrentTime(_)))
        .count();
    let errors = msgs.iter().filter(|m| m.error_code() == Some(100)).count();
    assert_eq!((times, errors), (5, 3));
    gw.shutdown().await;
}
