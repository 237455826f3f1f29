//! The world over the wire: historical and realtime bars, quotes, the order lifecycle, and
//! positions / executions / open orders / account summary after fills. AAPL is flat at 100.00.

mod common;

use common::*;
use fake_ibgw::{proto, Request, RequestKind, ServerMsg, ServerMsgKind as K};
use std::time::Duration;

fn kinds(msgs: &[ServerMsg]) -> Vec<K> {
    msgs.iter().map(|m| m.kind()).collect()
}

#[tokio::test]
async fn historical_answer_then_end() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(historical(
        4,
        "AAPL",
        "20260101 00:10:00 UTC",
        "1 min",
        "180 S",
    ))
    .await;
    let msgs = c.take(2).await;
    let ServerMsg::HistoricalData(d) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!(d.req_id, Some(4));
    let dates: Vec<&str> = d
        .historical_data_bars
        .iter()
        .map(|b| b.date.as_deref().unwrap())
        .collect();
    // 00:07, 00:08, 00:09 on 2026-01-01 as epoch seconds.
    assert_eq!(dates, ["1767226020", "1767226080", "1767226140"]);
    assert!(d
        .historical_data_bars
        .iter()
        .all(|b| b.open == Some(100.0) && b.close == Some(100.0)));
    let ServerMsg::HistoricalDataEnd(e) = &msgs[1] else {
        panic!()
    };
    assert_eq!(
        (
            e.req_id,
            e.start_date_str.as_deref(),
            e.end_date_str.as_deref()
        ),
        (
            Some(4),
            Some("20260101-00:07:00"),
            Some("20260101-00:10:00")
        )
    );
    c.send(historical(5, "ZZZZ", "", "1 min", "180 S")).await;
    let ServerMsg::Error(err) = c.recv().await else {
        panic!()
    };
    assert_eq!((err.id, err.error_code), (Some(5), Some(200)));
    gw.shutdown().await;
}

#[tokio::test]
async fn market_order_full_sequence() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 7).await;
    c.send(order(1, "BUY", "100", "MKT", None)).await;
    let msgs = c.take(6).await;
    assert_eq!(
        kinds(&msgs),
        [
            K::OpenOrder,
            K::OrderStatus,
            K::OrderStatus,
            K::OrderStatus,
            K::ExecutionDetails,
            K::CommissionReport
        ]
    );
    let statuses: Vec<&str> = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMsg::OrderStatus(s) => s.status.as_deref(),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, ["PreSubmitted", "Submitted", "Filled"]);
    let ServerMsg::OrderStatus(filled) = &msgs[3] else {
        panic!()
    };
    assert_eq!(
        (
            filled.filled.as_deref(),
            filled.remaining.as_deref(),
            filled.avg_fill_price
        ),
        (Some("100"), Some("0"), Some(100.0))
    );
    let ServerMsg::ExecutionDetails(x) = &msgs[4] else {
        panic!()
    };
    let exec = x.execution.as_ref().unwrap();
    assert_eq!(x.req_id, Some(-1));
    assert_eq!(
        (
            exec.order_id,
            exec.side.as_deref(),
            exec.shares.as_deref(),
            exec.price
        ),
        (Some(1), Some("BOT"), Some("100"), Some(100.0))
    );
    assert_eq!(
        (exec.client_id, exec.order_ref.as_deref()),
        (Some(7), Some("coid-1"))
    );
    let exec_id = exec.exec_id.clone().unwrap();
    assert!(
        exec_id.starts_with("0000e1a7.") && exec_id.ends_with(".01.01"),
        "{exec_id}"
    );
    let ServerMsg::CommissionReport(r) = &msgs[5] else {
        panic!()
    };
    // 100 shares × 0.005 = 0.50 → IB's 1.00 minimum; an opening fill has no realized P&L (f64::MAX).
    assert_eq!(
        (r.exec_id.as_deref(), r.commission_and_fees, r.realized_pnl),
        (Some(exec_id.as_str()), Some(1.0), Some(f64::MAX))
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn limit_order_rests_then_fills_when_price_crosses() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(order(1, "BUY", "10", "LMT", Some(99.0))).await;
    assert_eq!(
        kinds(&c.take(3).await),
        [K::OpenOrder, K::OrderStatus, K::OrderStatus]
    );
    assert!(
        matches!(
            c.recv_within(Duration::from_millis(300)).await,
            Recv::Timeout
        ),
        "not marketable at 100.00"
    );
    assert!(gw.set_price("AAPL", 9_890));
    let fill = c.take(3).await;
    assert_eq!(
        kinds(&fill),
        [K::OrderStatus, K::ExecutionDetails, K::CommissionReport]
    );
    let ServerMsg::ExecutionDetails(x) = &fill[1] else {
        panic!()
    };
    assert_eq!(x.execution.as_ref().unwrap().price, Some(98.9));
    gw.shutdown().await;
}

#[tokio::test]
async fn cancel_gives_cancelled_and_202_and_leaves_no_open_order() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(order(3, "SELL", "5", "LMT", Some(150.0))).await;
    c.take(3).await;
    c.send(Request::OpenOrders(proto::Empty {})).await;
    let open = c.take(3).await;
    assert_eq!(
        kinds(&open),
        [K::OpenOrder, K::OrderStatus, K::OpenOrderEnd]
    );
    c.send(Request::CancelOrder(proto::CancelOrderRequest {
        order_id: Some(3),
        order_cancel: None,
    }))
    .await;
    let msgs = c.take(2).await;
    assert!(
        matches!(&msgs[0], ServerMsg::OrderStatus(s) if s.status.as_deref() == Some("Cancelled") && s.order_id == Some(3))
    );
    assert!(
        matches!(&msgs[1], ServerMsg::Error(e) if e.error_code == Some(202) && e.id == Some(3))
    );
    c.send(Request::OpenOrders(proto::Empty {})).await;
    assert_eq!(kinds(&c.take(1).await), [K::OpenOrderEnd]);
    assert_eq!(gw.requests_of(RequestKind::CancelOrder).len(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn positions_executions_and_account_after_a_fill() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 7).await;
    c.send(order(1, "BUY", "100", "MKT", None)).await;
    c.take(6).await;

    c.send(Request::Positions(proto::Empty {})).await;
    let msgs = c.take(2).await;
    let ServerMsg::Position(p) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    // avgCost includes the commission: (10 000.00 + 1.00) / 100.
    assert_eq!(
        (p.account.as_deref(), p.position.as_deref(), p.avg_cost),
        (Some("DU1234567"), Some("100"), Some(100.01))
    );
    assert_eq!(p.contract.as_ref().unwrap().con_id, Some(265_598));
    assert_eq!(msgs[1].kind(), K::PositionEnd);

    let req = |id, client| {
        Request::Executions(proto::ExecutionRequest {
            req_id: Some(id),
            execution_filter: Some(proto::ExecutionFilter {
                client_id: Some(client),
                ..Default::default()
            }),
        })
    };
    c.send(req(42, 7)).await;
    let msgs = c.take(3).await;
    assert_eq!(
        kinds(&msgs),
        [
            K::ExecutionDetails,
            K::CommissionReport,
            K::ExecutionDetailsEnd
        ]
    );
    assert!(matches!(&msgs[0], ServerMsg::ExecutionDetails(x) if x.req_id == Some(42)));
    c.send(req(43, 8)).await;
    assert_eq!(
        c.recv().await,
        ServerMsg::ExecutionDetailsEnd(proto::ReqId { req_id: Some(43) })
    );

    c.send(Request::AccountSummary(proto::AccountSummaryRequest {
        req_id: Some(5),
        group: Some("All".into()),
        tags: Some("NetLiquidation,TotalCashValue".into()),
    }))
    .await;
    let rows: Vec<(String, String)> = c
        .until(|m| m.kind() == K::AccountSummaryEnd)
        .await
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::AccountSummary(a) => Some((a.tag.unwrap(), a.value.unwrap())),
            _ => None,
        })
        .collect();
    // Cash 100 000 − 10 000 − 1 = 89 999; net liq adds 100 × 100.00.
    assert_eq!(
        rows,
        [
            ("NetLiquidation".to_string(), "99999.00".to_string()),
            ("TotalCashValue".into(), "89999.00".into())
        ]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_fill_during_a_disconnect_shows_up_in_reconciliation() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 7).await;
    c.send(order(1, "BUY", "10", "LMT", Some(99.0))).await;
    c.take(3).await;
    drop(c);
    gw.set_price("AAPL", 9_800);
    tokio::time::sleep(Duration::from_millis(300)).await; // a few 100 ms ticks
    let (mut c, startup) = RawClient::connect(gw.addr(), 7).await;
    assert_eq!(
        startup[0],
        ServerMsg::NextValidId(proto::NextValidId { order_id: Some(2) })
    );
    c.send(Request::OpenOrders(proto::Empty {})).await;
    assert_eq!(kinds(&c.take(1).await), [K::OpenOrderEnd]);
    c.send(Request::Executions(proto::ExecutionRequest {
        req_id: Some(1),
        execution_filter: None,
    }))
    .await;
    let msgs = c.take(3).await;
    let ServerMsg::ExecutionDetails(x) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!(x.execution.as_ref().unwrap().price, Some(98.0));
    gw.shutdown().await;
}

#[tokio::test]
async fn realtime_bars_every_interval_until_cancelled() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(Request::RealTimeBars(proto::RealTimeBarsRequest {
        req_id: Some(11),
        contract: Some(stk("AAPL")),
        bar_size: Some(5),
        what_to_show: Some("TRADES".into()),
        use_rth: Some(false),
        ..Default::default()
    }))
    .await;
    let bars = c.take(3).await;
    let times: Vec<i64> = bars
        .iter()
        .map(|m| match m {
            ServerMsg::RealTimeBar(b) => {
                assert_eq!((b.req_id, b.close), (Some(11), Some(100.0)));
                b.time.unwrap()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    // 100 ms real = 5 s market per bar: consecutive bars are 5 s apart, on the 5 s grid.
    assert!(times.iter().all(|t| t % 5 == 0), "{times:?}");
    assert!(times.windows(2).all(|w| w[1] - w[0] == 5), "{times:?}");
    c.send(Request::CancelRealTimeBars(proto::ReqId {
        req_id: Some(11),
    }))
    .await;
    gw.expect(RequestKind::CancelRealTimeBars, WAIT)
        .await
        .expect("cancel recorded");
    tokio::time::sleep(Duration::from_millis(150)).await;
    while let Recv::Msg(_) = c.recv_within(Duration::from_millis(10)).await {}
    assert!(matches!(
        c.recv_within(Duration::from_millis(300)).await,
        Recv::Timeout
    ));
    gw.shutdown().await;
}

#[tokio::test]
async fn market_data_snapshot_and_contract_details() {
    let gw = flat_gateway(|_| {}).await;
    let (mut c, _) = RawClient::connect(gw.addr(), 1).await;
    c.send(Request::MarketData(proto::MarketDataRequest {
        req_id: Some(3),
        contract: Some(stk("AAPL")),
        snapshot: Some(true),
        ..Default::default()
    }))
    .await;
    let msgs = c.until(|m| m.kind() == K::TickSnapshotEnd).await;
    let prices: Vec<(i32, f64)> = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMsg::TickPrice(t) => Some((t.tick_type.unwrap(), t.price.unwrap())),
            _ => None,
        })
        .collect();
    assert_eq!(prices, [(1, 99.99), (2, 100.01), (4, 100.0)]);
    assert_eq!(msgs[0].kind(), K::MarketDataType);

    c.send(Request::ContractDetails(proto::ContractDataRequest {
        req_id: Some(8),
        contract: Some(stk("aapl")),
    }))
    .await;
    let msgs = c.take(2).await;
    let ServerMsg::ContractData(d) = &msgs[0] else {
        panic!()
    };
    assert_eq!(d.contract.as_ref().unwrap().con_id, Some(265_598));
    assert_eq!(
        msgs[1],
        ServerMsg::ContractDataEnd(proto::ReqId { req_id: Some(8) })
    );
    c.send(Request::ContractDetails(proto::ContractDataRequest {
        req_id: Some(9),
        contract: Some(stk("NOPE")),
    }))
    .await;
    assert_eq!(c.recv().await.error_code(), Some(200));
    gw.shutdown().await;
}
