//! Wire compatibility: the real `ibapi` 5.5.0 async client connects to the fake, reads the
//! server time, fetches historical bars, places an order and reads positions. Every call is
//! bounded by `tokio::time::timeout` because ibapi has no connect timeout of its own.

mod common;

use common::*;
use fake_ibgw::RequestKind;
use ibapi::prelude::*;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ibapi_connects_reads_time_and_fetches_three_bars() {
    let gw = flat_gateway(|c| c.bar_interval = Duration::from_secs(5)).await;
    let addr = gw.addr().to_string();
    let client = tokio::time::timeout(BOUND, Client::connect(&addr, 7))
        .await
        .expect("connect in time")
        .expect("connect");
    assert_eq!(client.server_version(), 213);
    assert_eq!(gw.client_ids_seen(), [7]);

    let t = tokio::time::timeout(BOUND, client.server_time())
        .await
        .expect("in time")
        .expect("server_time");
    assert!(
        (ORIGIN_S..ORIGIN_S + 10).contains(&t.unix_timestamp()),
        "{t}"
    );

    let contract = Contract::stock("AAPL").build();
    let data = tokio::time::timeout(
        BOUND,
        client
            .historical_data(&contract, HistoricalBarSize::Min)
            .duration(180.seconds())
            .fetch(),
    )
    .await
    .expect("in time")
    .expect("historical fetch");
    assert_eq!(data.bars.len(), 3, "{:?}", data.bars);
    assert!(data
        .bars
        .iter()
        .all(|b| b.open == 100.0 && b.close == 100.0 && b.high == 100.0 && b.low == 100.0));
    let req = &gw.requests_of(RequestKind::HistoricalData)[0];
    let fake_ibgw::Request::HistoricalData(h) = &req.request else {
        unreachable!()
    };
    assert_eq!(h.bar_size_setting.as_deref(), Some("1 min"));
    assert_eq!(h.duration.as_deref(), Some("180 S"));
    assert_eq!(
        h.contract.as_ref().and_then(|c| c.symbol.as_deref()),
        Some("AAPL")
    );

    client.disconnect().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ibapi_sees_refused_and_client_id_in_use() {
    let gw = flat_gateway(|c| c.behaviors = vec![fake_ibgw::ConnBehavior::ClientIdInUse]).await;
    let addr = gw.addr().to_string();
    let err = tokio::time::timeout(BOUND, Client::connect(&addr, 9))
        .await
        .expect("in time")
        .err()
        .expect("refused");
    assert!(
        matches!(err, Error::ClientIdInUse { client_id: 9 }),
        "{err:?}"
    );
    gw.set_refusing(true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = tokio::time::timeout(BOUND, Client::connect(&addr, 9))
        .await
        .expect("in time")
        .err()
        .expect("refused");
    assert!(
        matches!(err, Error::Io(ref e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );
    gw.shutdown().await;
}
