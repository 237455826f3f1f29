//! A minimal raw-socket TWS client built on the crate's own codec, for driving the fake in tests.
#![allow(dead_code)]

use fake_ibgw::codec::{self, CodecError, FrameReader};
use fake_ibgw::proto;
use fake_ibgw::world::{SymbolSpec, WorldConfig};
use fake_ibgw::{FakeGateway, GatewayConfig, Handle, Request, ServerMsg};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(3);
/// 2026-01-01 00:00:00 UTC.
pub const ORIGIN_S: i64 = 1_767_225_600;

/// A gateway with one flat-priced symbol (AAPL at 100.00), 100 ms bars, market time from ORIGIN_S.
pub async fn flat_gateway(mutate: impl FnOnce(&mut GatewayConfig)) -> Handle {
    let mut config = GatewayConfig {
        world: WorldConfig {
            symbols: vec![SymbolSpec::flat("AAPL", 265_598, 10_000)],
            ..WorldConfig::default()
        },
        bar_interval: Duration::from_millis(100),
        origin_unix_ms: Some(ORIGIN_S * 1000),
        ..GatewayConfig::default()
    };
    mutate(&mut config);
    FakeGateway::start(config).await.expect("gateway starts")
}

#[allow(clippy::large_enum_variant)]
pub enum Recv {
    Msg(ServerMsg),
    Eof,
    Timeout,
    Error(CodecError),
}

pub struct RawClient {
    pub stream: TcpStream,
    reader: FrameReader,
}

impl RawClient {
    /// TCP connect and send the `API\0` hello with the given version range.
    pub async fn hello(addr: SocketAddr, min: i32, max: i32) -> std::io::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(&codec::client_hello_bytes(min, max))
            .await?;
        Ok(Self {
            stream,
            reader: FrameReader::new(),
        })
    }

    /// Reads the handshake reply: (server version, connection time).
    pub async fn read_handshake(&mut self) -> Option<(i32, String)> {
        let body = tokio::time::timeout(WAIT, self.reader.read_frame(&mut self.stream))
            .await
            .ok()?
            .ok()??;
        codec::parse_handshake_reply(&body).ok()
    }

    pub async fn send(&mut self, req: Request) {
        let frame = req.encode_frame().expect("small frame");
        self.stream.write_all(&frame).await.expect("write");
    }

    pub async fn send_raw(&mut self, body: &[u8]) {
        self.stream
            .write_all(&codec::frame(body).unwrap())
            .await
            .expect("write");
    }

    pub async fn start_api(&mut self, client_id: i32) {
        self.send(Request::StartApi(proto::StartApiRequest {
            client_id: Some(client_id),
            optional_capabilities: None,
        }))
        .await;
    }

    /// Handshake + startApi + the five startup messages (9, 15, 2104, 2106, 2158).
    pub async fn connect(addr: SocketAddr, client_id: i32) -> (Self, Vec<ServerMsg>) {
        let mut c = Self::hello(addr, 213, 226).await.expect("tcp connect");
        c.read_handshake().await.expect("handshake reply");
        c.start_api(client_id).await;
        let startup = c.take(5).await;
        (c, startup)
    }

    pub async fn recv_within(&mut self, d: Duration) -> Recv {
        match tokio::time::timeout(d, self.reader.read_frame(&mut self.stream)).await {
            Err(_) => Recv::Timeout,
            Ok(Ok(None)) => Recv::Eof,
            Ok(Err(CodecError::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                Recv::Error(CodecError::Io(e))
            }
            Ok(Err(e)) => Recv::Error(e),
            Ok(Ok(Some(body))) => {
                Recv::Msg(ServerMsg::decode(&body).expect("decodable server message"))
            }
        }
    }

    /// The next message, panicking on EOF/timeout.
    pub async fn recv(&mut self) -> ServerMsg {
        match self.recv_within(WAIT).await {
            Recv::Msg(m) => m,
            Recv::Eof => panic!("unexpected EOF"),
            Recv::Timeout => panic!("no message within {WAIT:?}"),
            Recv::Error(e) => panic!("read error: {e}"),
        }
    }

    pub async fn take(&mut self, n: usize) -> Vec<ServerMsg> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.recv().await);
        }
        v
    }

    /// Messages up to and including the first one matching `last`.
    pub async fn until(&mut self, last: impl Fn(&ServerMsg) -> bool) -> Vec<ServerMsg> {
        let mut v = Vec::new();
        loop {
            let m = self.recv().await;
            let done = last(&m);
            v.push(m);
            if done {
                return v;
            }
        }
    }

    /// True when the server closes the connection within `d` (FIN).
    pub async fn sees_eof_within(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match self
                .recv_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .await
            {
                Recv::Eof => return true,
                Recv::Msg(_) => continue,
                _ => return false,
            }
        }
    }
}

pub fn stk(symbol: &str) -> proto::Contract {
    proto::Contract {
        symbol: Some(symbol.into()),
        sec_type: Some("STK".into()),
        exchange: Some("SMART".into()),
        currency: Some("USD".into()),
        ..Default::default()
    }
}

pub fn historical(req_id: i32, symbol: &str, end: &str, bar: &str, duration: &str) -> Request {
    Request::HistoricalData(proto::HistoricalDataRequest {
        req_id: Some(req_id),
        contract: Some(stk(symbol)),
        end_date_time: Some(end.into()),
        bar_size_setting: Some(bar.into()),
        duration: Some(duration.into()),
        use_rth: Some(true),
        what_to_show: Some("TRADES".into()),
        format_date: Some(2),
        ..Default::default()
    })
}

pub fn order(
    order_id: i32,
    action: &str,
    qty: &str,
    order_type: &str,
    lmt: Option<f64>,
) -> Request {
    Request::PlaceOrder(proto::PlaceOrderRequest {
        order_id: Some(order_id),
        contract: Some(stk("AAPL")),
        order: Some(proto::Order {
            action: Some(action.into()),
            total_quantity: Some(qty.into()),
            order_type: Some(order_type.into()),
            lmt_price: lmt,
            tif: Some("DAY".into()),
            order_ref: Some(format!("coid-{order_id}")),
            ..Default::default()
        }),
    })
}

pub fn current_time() -> Request {
    Request::CurrentTime(proto::Empty {})
}

pub fn error_code(m: &ServerMsg) -> Option<i32> {
    m.error_code()
}
