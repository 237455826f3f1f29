//! The tokio shell: a listener, one task per connection speaking the handshake and the request
//! loop, a ticker that pushes realtime bars and quotes and fills resting orders, and the
//! [`Handle`] through which tests script faults and read the request log.

use crate::clock::{self, SimClock};
use crate::codec::{self, FrameReader};
use crate::faults::{ConnBehavior, FaultState, Pacer, PacingViolation, RateCounter};
use crate::messages::{Request, RequestKind, ServerMsg};
use crate::proto;
use crate::world::{World, WorldConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

/// Everything `FakeGateway::start` needs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// 0 = an ephemeral port on 127.0.0.1.
    pub port: u16,
    pub server_version: i32,
    pub world: WorldConfig,
    /// Real time between pushed 5-second bars; market time runs 5 s per interval, so a 100 ms
    /// interval makes the market 50× faster.
    pub bar_interval: Duration,
    /// The per-connection behaviour queue (empty = all `Normal`).
    pub behaviors: Vec<ConnBehavior>,
    /// Answer 326 when a client id is already held by a live connection, as TWS does.
    pub enforce_unique_client_ids: bool,
    /// Market time at start, Unix ms (default: the wall clock).
    pub origin_unix_ms: Option<i64>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            port: 0,
            server_version: 213,
            world: WorldConfig::default(),
            bar_interval: Duration::from_secs(5),
            behaviors: Vec::new(),
            enforce_unique_client_ids: true,
            origin_unix_ms: None,
        }
    }
}

/// One request as the gateway received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// 0-based index of the accepted connection.
    pub conn_id: u64,
    /// tokio time of arrival.
    pub at: Instant,
    /// Market time of arrival, Unix ms.
    pub market_time_ms: i64,
    /// The client id from startApi, once sent.
    pub client_id: Option<i32>,
    pub request: Request,
}

impl RecordedRequest {
    pub fn kind(&self) -> RequestKind {
        self.request.kind()
    }
}

#[allow(clippy::large_enum_variant)] // short-lived, one per frame
enum Outbound {
    Msg(ServerMsg),
    /// Bytes written verbatim (garbage frames).
    Raw(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Drop,
    Reset,
    Stall,
}

/// How a connection task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Close,
    Reset,
}

struct ConnEntry {
    client_id: Option<i32>,
    out: mpsc::UnboundedSender<Outbound>,
    ctl: mpsc::UnboundedSender<Control>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubKind {
    RealTimeBars,
    MarketData,
}

struct Subscription {
    conn_id: u64,
    req_id: i32,
    symbol: String,
    kind: SubKind,
}

struct Shared {
    config: GatewayConfig,
    addr: SocketAddr,
    clock: SimClock,
    world: Mutex<World>,
    faults: Mutex<FaultState>,
    pacer: Mutex<Pacer>,
    conns: Mutex<BTreeMap<u64, ConnEntry>>,
    subs: Mutex<Vec<Subscription>>,
    log: Mutex<Vec<RecordedRequest>>,
    log_changed: Notify,
    client_ids_seen: Mutex<Vec<i32>>,
    accepted: AtomicU64,
    active: AtomicUsize,
    max_active: AtomicUsize,
    refusing: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
}

/// Locks, recovering the data if a panicking thread poisoned the mutex (state stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Entry point.
pub struct FakeGateway;

impl FakeGateway {
    /// Binds 127.0.0.1:`config.port` and starts serving.
    pub async fn start(config: GatewayConfig) -> std::io::Result<Handle> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], config.port)))?;
        let addr = listener.local_addr()?;
        let speed = clock::speed_for_bar_interval(config.bar_interval);
        let origin = config.origin_unix_ms.unwrap_or_else(clock::wall_clock_ms);
        let shared = Arc::new(Shared {
            clock: SimClock::new(origin, speed),
            world: Mutex::new(World::new(config.world.clone())),
            config,
            addr,
            faults: Mutex::new(FaultState::default()),
            pacer: Mutex::new(Pacer::default()),
            conns: Mutex::new(BTreeMap::new()),
            subs: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            log_changed: Notify::new(),
            client_ids_seen: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            refusing: watch::channel(false).0,
            shutdown: watch::channel(false).0,
        });
        tracing::info!(%addr, server_version = shared.config.server_version, "fake-ibgw listening");
        tokio::spawn(accept_loop(shared.clone(), listener));
        tokio::spawn(ticker(shared.clone()));
        Ok(Handle { shared })
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // Rebinding the same port after a Refuse window must not trip over TIME_WAIT sockets.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(64)
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut listener = Some(listener);
    let mut refusing = shared.refusing.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let mut cursor = 0usize;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let behavior = behavior_at(&shared.config.behaviors, cursor);
        if let ConnBehavior::RefuseFor(d) = behavior {
            listener = None;
            tracing::info!(?d, "refusing connections (listener closed)");
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = shutdown.changed() => return,
            }
            cursor += 1;
            continue;
        }
        if *refusing.borrow_and_update() {
            if listener.take().is_some() {
                tracing::info!("refusing connections (listener closed)");
            }
            tokio::select! {
                _ = refusing.changed() => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let Some(l) = listener.as_ref() else {
            match bind(shared.addr) {
                Ok(l) => {
                    tracing::info!(addr = %shared.addr, "listening again");
                    listener = Some(l);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rebind failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => match accepted {
                Ok((stream, peer)) => {
                    let conn_id = shared.accepted.fetch_add(1, Ordering::SeqCst);
                    cursor += 1;
                    tracing::info!(conn_id, %peer, ?behavior, "accepted");
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(run_conn(shared.clone(), conn_id, stream, behavior));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            _ = refusing.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn behavior_at(queue: &[ConnBehavior], n: usize) -> ConnBehavior {
    queue
        .get(n)
        .or(queue.last())
        .cloned()
        .unwrap_or(ConnBehavior::Normal)
}

/// Decrements the active count and forgets the connection however its task ends.
struct ActiveGuard {
    shared: Arc<Shared>,
    conn_id: u64,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        lock(&self.shared.conns).remove(&self.conn_id);
        lock(&self.shared.subs).retain(|s| s.conn_id != self.conn_id);
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
        tracing::info!(conn_id = self.conn_id, "connection closed");
    }
}

async fn run_conn(
    shared: Arc<Shared>,
    conn_id: u64,
    mut stream: TcpStream,
    behavior: ConnBehavior,
) {
    let now_active = shared.active.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_active.fetch_max(now_active, Ordering::SeqCst);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    lock(&shared.conns).insert(
        conn_id,
        ConnEntry {
            client_id: None,
            out: out_tx.clone(),
            ctl: ctl_tx,
        },
    );
    let _guard = ActiveGuard {
        shared: shared.clone(),
        conn_id,
    };
    let mut conn = Conn {
        shared: shared.clone(),
        conn_id,
        behavior,
        client_id: None,
        out: out_tx,
        rate: RateCounter::default(),
        market_data_type: 1,
    };
    let end = conn.serve(&mut stream, out_rx, ctl_rx).await;
    // The session is over: free its client id and subscriptions before the socket finishes closing.
    lock(&shared.conns).remove(&conn_id);
    lock(&shared.subs).retain(|s| s.conn_id != conn_id);
    if end == End::Close {
        // Closing with unread bytes in the receive buffer makes the kernel send RST, not FIN;
        // send FIN first and drain briefly so the peer sees a clean EOF.
        let _ = stream.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(100), async {
            while matches!(tokio::io::AsyncReadExt::read_buf(&mut stream, &mut sink).await, Ok(n) if n > 0) {
                sink.clear();
            }
        })
        .await;
    }
    if end == End::Reset {
        // SO_LINGER 0: close() sends RST instead of FIN.
        if let Err(e) = stream.set_zero_linger() {
            tracing::warn!(conn_id, error = %e, "could not set SO_LINGER 0");
        }
        tracing::info!(conn_id, "resetting connection");
    }
}

struct Conn {
    shared: Arc<Shared>,
    conn_id: u64,
    behavior: ConnBehavior,
    client_id: Option<i32>,
    out: mpsc::UnboundedSender<Outbound>,
    rate: RateCounter,
    market_data_type: i32,
}

/// What the request loop does after a frame.
enum Step {
    Continue,
    /// Write what is queued, then close.
    FlushAndClose,
    /// Close at once, answering nothing.
    Close,
}

impl Conn {
    async fn serve(
        &mut self,
        stream: &mut TcpStream,
        mut out_rx: mpsc::UnboundedReceiver<Outbound>,
        mut ctl_rx: mpsc::UnboundedReceiver<Control>,
    ) -> End {
        let mut shutdown = self.shared.shutdown.subscribe();
        let (mut rd, mut wr) = stream.split();
        let mut reader = FrameReader::new();
        let conn_id = self.conn_id;

        if self.behavior == ConnBehavior::CloseImmediately {
            return End::Close;
        }
        if self.behavior == ConnBehavior::AcceptAndHang {
            return hang(&mut rd, &mut ctl_rx, &mut shutdown).await;
        }

        let hello = tokio::select! {
            h = reader.read_hello(&mut rd) => h,
            c = ctl_rx.recv() => return control_end(c),
            _ = shutdown.changed() => return End::Close,
        };
        let hello = match hello {
            Ok(Some(h)) => h,
            Ok(None) => return End::Close,
            Err(e) => {
                tracing::warn!(conn_id, error = %e, "bad client hello; closing");
                return End::Close;
            }
        };
        let version = match self.behavior {
            ConnBehavior::ServerVersion(v) => v,
            _ => self.shared.config.server_version,
        };
        if !matches!(self.behavior, ConnBehavior::ServerVersion(_)) && !hello.accepts(version) {
            tracing::warn!(
                conn_id,
                ?hello,
                version,
                "client does not accept our server version; closing"
            );
            return End::Close;
        }
        let conn_time = format!("{} UTC", clock::date_time(self.shared.clock.now_s()));
        let reply = codec::frame(&codec::handshake_reply_body(version, &conn_time));
        if let Ok(bytes) = reply {
            if wr.write_all(&bytes).await.is_err() {
                return End::Close;
            }
        }
        tracing::info!(conn_id, version, client_range = ?(hello.min_version, hello.max_version), "handshake");
        if self.behavior == ConnBehavior::HandshakeThenHang {
            return hang(&mut rd, &mut ctl_rx, &mut shutdown).await;
        }

        let mut stalled = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return End::Close,
                c = ctl_rx.recv() => match c {
                    Some(Control::Stall) => {
                        tracing::info!(conn_id, "stalled");
                        stalled = true;
                    }
                    other => return control_end(other),
                },
                o = out_rx.recv(), if !stalled => {
                    let Some(o) = o else { return End::Close };
                    if write_outbound(&mut wr, o).await.is_err() {
                        return End::Close;
                    }
                }
                f = reader.read_frame(&mut rd), if !stalled => match f {
                    Ok(Some(body)) => match self.on_frame(&body) {
                        Step::Continue => {}
                        Step::Close => return End::Close,
                        Step::FlushAndClose => {
                            while let Ok(o) = out_rx.try_recv() {
                                if write_outbound(&mut wr, o).await.is_err() {
                                    break;
                                }
                            }
                            let _ = wr.flush().await;
                            return End::Close;
                        }
                    },
                    Ok(None) => {
                        tracing::info!(conn_id, "client closed");
                        return End::Close;
                    }
                    Err(e) => {
                        tracing::warn!(conn_id, error = %e, "bad frame; closing");
                        return End::Close;
                    }
                },
            }
        }
    }

    fn send(&self, msg: ServerMsg) {
        let _ = self.out.send(Outbound::Msg(msg));
    }

    fn error(&self, id: i32, code: i32, text: impl Into<String>) -> ServerMsg {
        ServerMsg::error(id, code, text, self.shared.clock.now_ms())
    }

    fn on_frame(&mut self, body: &[u8]) -> Step {
        let request = match Request::decode(body) {
            Ok(r) => r,
            Err(e) => Request::Malformed {
                wire_id: 0,
                error: e.to_string(),
            },
        };
        let kind = request.kind();
        tracing::debug!(conn_id = self.conn_id, ?kind, "request");
        lock(&self.shared.log).push(RecordedRequest {
            conn_id: self.conn_id,
            at: Instant::now(),
            market_time_ms: self.shared.clock.now_ms(),
            client_id: self.client_id,
            request: request.clone(),
        });
        self.shared.log_changed.notify_waiters();

        if let Request::StartApi(start) = &request {
            return self.on_start_api(start);
        }
        let Some(client_id) = self.client_id else {
            // TWS ignores everything before startApi.
            return Step::Continue;
        };

        let (delay, ignored, drop_now, rate_limit) = {
            let mut f = lock(&self.shared.faults);
            let drop_now = match f.drop_when.iter().position(|k| *k == kind) {
                Some(i) => {
                    f.drop_when.remove(i);
                    true
                }
                None => false,
            };
            (
                f.delays.get(&kind).copied(),
                f.ignored.contains(&kind),
                drop_now,
                f.rate_limit,
            )
        };
        if drop_now {
            tracing::info!(
                conn_id = self.conn_id,
                ?kind,
                "drop_when fired: closing instead of answering"
            );
            return Step::Close;
        }
        if let Some(limit) = rate_limit {
            let seen = self.rate.hit(Instant::now());
            if seen > limit as usize {
                self.send(self.error(
                    -1,
                    100,
                    format!(
                        "Max rate of messages per second has been exceeded:max={limit} rec={seen}"
                    ),
                ));
                return Step::Continue;
            }
        }
        if ignored {
            tracing::info!(conn_id = self.conn_id, ?kind, "ignored by fault");
            return Step::Continue;
        }
        let replies = self.answer(client_id, &request);
        match delay {
            Some(d) if !replies.is_empty() => {
                let out = self.out.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    for m in replies {
                        let _ = out.send(Outbound::Msg(m));
                    }
                });
            }
            _ => replies.into_iter().for_each(|m| self.send(m)),
        }
        Step::Continue
    }

    fn on_start_api(&mut self, start: &proto::StartApiRequest) -> Step {
        if self.client_id.is_some() {
            return Step::Continue;
        }
        let client_id = start.client_id.unwrap_or(0);
        lock(&self.shared.client_ids_seen).push(client_id);
        let held_elsewhere = self.shared.config.enforce_unique_client_ids
            && lock(&self.shared.conns)
                .iter()
                .any(|(id, c)| *id != self.conn_id && c.client_id == Some(client_id));
        let refused = match &self.behavior {
            ConnBehavior::ClientIdInUse => true,
            ConnBehavior::ClientIdInUseFor(ids) => ids.contains(&client_id),
            _ => held_elsewhere,
        };
        if refused {
            tracing::info!(
                conn_id = self.conn_id,
                client_id,
                "client id in use: 326 then close"
            );
            self.send(self.error(
                -1,
                326,
                "Unable to connect as the client id is already in use. Retry with a unique client id.",
            ));
            return Step::FlushAndClose;
        }
        self.client_id = Some(client_id);
        if let Some(c) = lock(&self.shared.conns).get_mut(&self.conn_id) {
            c.client_id = Some(client_id);
        }
        let (next_id, account) = {
            let mut w = lock(&self.shared.world);
            (w.next_order_id(client_id), w.account().to_string())
        };
        tracing::info!(
            conn_id = self.conn_id,
            client_id,
            next_id,
            "session started"
        );
        self.send(ServerMsg::NextValidId(proto::NextValidId {
            order_id: Some(next_id),
        }));
        self.send(ServerMsg::ManagedAccounts(proto::ManagedAccounts {
            accounts_list: Some(account),
        }));
        for (code, text) in FARM_OK {
            self.send(self.error(-1, code, text));
        }
        Step::Continue
    }

    /// The reply to one request (empty when TWS sends nothing back).
    fn answer(&mut self, client_id: i32, request: &Request) -> Vec<ServerMsg> {
        let now_s = self.shared.clock.now_s();
        let now_ms = self.shared.clock.now_ms();
        let reject =
            |r: crate::world::Reject| vec![ServerMsg::error(r.id, r.code, r.message, now_ms)];
        match request {
            Request::Ids(_) => {
                let id = lock(&self.shared.world).next_order_id(client_id);
                vec![ServerMsg::NextValidId(proto::NextValidId {
                    order_id: Some(id),
                })]
            }
            Request::CurrentTime(_) => vec![ServerMsg::CurrentTime(proto::CurrentTime {
                current_time: Some(now_s),
            })],
            Request::ManagedAccounts(_) => {
                let account = lock(&self.shared.world).account().to_string();
                vec![ServerMsg::ManagedAccounts(proto::ManagedAccounts {
                    accounts_list: Some(account),
                })]
            }
            Request::HistoricalData(r) => {
                if lock(&self.shared.faults).pacing {
                    if let Err(v) = lock(&self.shared.pacer).check(pacing_key(r), Instant::now()) {
                        let why = match v {
                            PacingViolation::IdenticalWithin15s => {
                                "identical request within 15 seconds"
                            }
                            PacingViolation::MoreThan60In10Min => {
                                "more than 60 requests within 10 minutes"
                            }
                        };
                        tracing::info!(conn_id = self.conn_id, why, "pacing violation");
                        return vec![self.error(
                            r.req_id.unwrap_or(-1),
                            162,
                            format!("Historical Market Data Service error message:Historical data request pacing violation ({why})"),
                        )];
                    }
                }
                lock(&self.shared.world)
                    .historical(r, now_s)
                    .unwrap_or_else(reject)
            }
            Request::RealTimeBars(r) => {
                if let Some(refusal) = self.realtime_refusal(r.req_id, r.contract.as_ref(), now_ms)
                {
                    return vec![refusal];
                }
                self.subscribe(r.req_id, r.contract.as_ref(), SubKind::RealTimeBars, now_ms)
            }
            Request::MarketData(r) => {
                let req_id = r.req_id.unwrap_or(-1);
                let symbol = match lock(&self.shared.world).resolve(req_id, r.contract.as_ref()) {
                    Ok(s) => s.symbol.clone(),
                    Err(e) => return reject(e),
                };
                let mut out = vec![ServerMsg::MarketDataType(proto::MarketDataType {
                    req_id: Some(req_id),
                    market_data_type: Some(self.market_data_type),
                })];
                out.extend(lock(&self.shared.world).quote(req_id, &symbol, now_s));
                if r.snapshot.unwrap_or(false) {
                    out.push(ServerMsg::TickSnapshotEnd(proto::ReqId {
                        req_id: Some(req_id),
                    }));
                } else {
                    lock(&self.shared.subs).push(Subscription {
                        conn_id: self.conn_id,
                        req_id,
                        symbol,
                        kind: SubKind::MarketData,
                    });
                }
                out
            }
            Request::CancelRealTimeBars(r) | Request::CancelMarketData(r) => {
                let conn_id = self.conn_id;
                lock(&self.shared.subs)
                    .retain(|s| !(s.conn_id == conn_id && Some(s.req_id) == r.req_id));
                Vec::new()
            }
            Request::MarketDataType(r) => {
                self.market_data_type = r.market_data_type.unwrap_or(1);
                Vec::new()
            }
            Request::PlaceOrder(r) => {
                let read_only =
                    self.behavior == ConnBehavior::ReadOnly || lock(&self.shared.faults).read_only;
                if read_only {
                    return vec![self.error(
                        r.order_id.unwrap_or(-1),
                        321,
                        "Error validating request.-'bO' : cause - The API interface is currently in Read-Only mode.",
                    )];
                }
                let placed = lock(&self.shared.world).place_order(client_id, r, now_s);
                match placed {
                    Ok(msgs) => self.route(msgs),
                    Err(e) => reject(e),
                }
            }
            Request::CancelOrder(r) => {
                lock(&self.shared.world).cancel_order(client_id, r.order_id.unwrap_or(-1), now_ms)
            }
            Request::GlobalCancel(_) => {
                let msgs = lock(&self.shared.world).global_cancel(now_ms);
                self.route(msgs)
            }
            Request::OpenOrders(_) => lock(&self.shared.world).open_orders(Some(client_id)),
            Request::AllOpenOrders(_) => lock(&self.shared.world).open_orders(None),
            Request::Positions(_) => lock(&self.shared.world).position_msgs(),
            Request::AccountSummary(r) => lock(&self.shared.world).account_summary(r, now_s),
            Request::Executions(r) => lock(&self.shared.world).execution_msgs(r),
            Request::ContractDetails(r) => lock(&self.shared.world)
                .contract_details(r)
                .unwrap_or_else(reject),
            Request::CancelHistoricalData(_)
            | Request::CancelAccountSummary(_)
            | Request::CancelPositions(_)
            | Request::StartApi(_)
            | Request::Unknown { .. }
            | Request::Malformed { .. } => Vec::new(),
        }
    }

    /// The permission error for a realtime request on a symbol without live data, while this
    /// connection still asks for live data.
    fn realtime_refusal(
        &self,
        req_id: Option<i32>,
        contract: Option<&proto::Contract>,
        now_ms: i64,
    ) -> Option<ServerMsg> {
        if matches!(self.market_data_type, 3 | 4) {
            return None;
        }
        let symbol = lock(&self.shared.world)
            .resolve(req_id.unwrap_or(-1), contract)
            .ok()?
            .symbol
            .clone();
        let code = *lock(&self.shared.faults).no_realtime.get(&symbol)?;
        let text = match code {
            10089 => "Requested market data requires additional subscription for API. See link in 'Market Data Connections' dialog for more details.Delayed market data is available.",
            10167 => "Requested market data is not subscribed. Displaying delayed market data.",
            _ => "Requested market data is not subscribed.",
        };
        Some(ServerMsg::error(
            req_id.unwrap_or(-1),
            code,
            format!("{text} {symbol} NASDAQ.NMS/TOP/ALL"),
            now_ms,
        ))
    }

    fn subscribe(
        &mut self,
        req_id: Option<i32>,
        contract: Option<&proto::Contract>,
        kind: SubKind,
        now_ms: i64,
    ) -> Vec<ServerMsg> {
        let req_id = req_id.unwrap_or(-1);
        let resolved = lock(&self.shared.world)
            .resolve(req_id, contract)
            .map(|s| s.symbol.clone());
        match resolved {
            Ok(symbol) => {
                lock(&self.shared.subs).push(Subscription {
                    conn_id: self.conn_id,
                    req_id,
                    symbol,
                    kind,
                });
                Vec::new()
            }
            Err(e) => vec![ServerMsg::error(e.id, e.code, e.message, now_ms)],
        }
    }

    /// Keeps messages for this session's client id; sends the rest to their owners' sessions.
    fn route(&self, msgs: Vec<(i32, ServerMsg)>) -> Vec<ServerMsg> {
        let mut mine = Vec::new();
        for (client_id, m) in msgs {
            if Some(client_id) == self.client_id {
                mine.push(m);
            } else {
                deliver_to_client(&self.shared, client_id, m);
            }
        }
        mine
    }
}

const FARM_OK: [(i32, &str); 3] = [
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
];

fn pacing_key(r: &proto::HistoricalDataRequest) -> String {
    let c = r.contract.clone().unwrap_or_default();
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        c.con_id,
        c.symbol,
        c.sec_type,
        c.exchange,
        r.end_date_time,
        r.bar_size_setting,
        r.duration,
        r.what_to_show,
        r.use_rth
    )
}

fn control_end(c: Option<Control>) -> End {
    match c {
        Some(Control::Reset) => End::Reset,
        _ => End::Close,
    }
}

async fn write_outbound(
    wr: &mut tokio::net::tcp::WriteHalf<'_>,
    o: Outbound,
) -> std::io::Result<()> {
    let bytes = match o {
        Outbound::Msg(m) => match m.encode_frame() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot frame outgoing message; skipped");
                return Ok(());
            }
        },
        Outbound::Raw(b) => b,
    };
    wr.write_all(&bytes).await
}

/// Reads and discards until EOF, a drop/reset, or shutdown; never writes.
async fn hang(
    rd: &mut tokio::net::tcp::ReadHalf<'_>,
    ctl_rx: &mut mpsc::UnboundedReceiver<Control>,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let mut sink = Vec::new();
    loop {
        tokio::select! {
            c = ctl_rx.recv() => match c {
                Some(Control::Stall) => {}
                other => return control_end(other),
            },
            _ = shutdown.changed() => return End::Close,
            r = tokio::io::AsyncReadExt::read_buf(rd, &mut sink) => {
                sink.clear();
                if !matches!(r, Ok(n) if n > 0) {
                    return End::Close;
                }
            }
        }
    }
}

fn deliver_to_client(shared: &Shared, client_id: i32, msg: ServerMsg) {
    let conns = lock(&shared.conns);
    match conns.values().find(|c| c.client_id == Some(client_id)) {
        Some(c) => {
            let _ = c.out.send(Outbound::Msg(msg));
        }
        None => {
            tracing::debug!(client_id, kind = ?msg.kind(), "no live session for client id; message dropped")
        }
    }
}

/// Every bar interval: fill resting orders, push realtime bars and quote updates.
async fn ticker(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut interval =
        tokio::time::interval(shared.config.bar_interval.max(Duration::from_millis(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now_s = shared.clock.now_s();
        let fills = lock(&shared.world).tick(now_s);
        for (client_id, m) in fills {
            deliver_to_client(&shared, client_id, m);
        }
        let pushes: Vec<(u64, Vec<ServerMsg>)> = {
            let silent = lock(&shared.faults).silent.clone();
            let world = lock(&shared.world);
            lock(&shared.subs)
                .iter()
                .filter(|s| !(s.kind == SubKind::RealTimeBars && silent.contains(&s.symbol)))
                .map(|s| {
                    let msgs = match s.kind {
                        SubKind::RealTimeBars => world
                            .realtime_bar(s.req_id, &s.symbol, now_s)
                            .into_iter()
                            .collect(),
                        SubKind::MarketData => world.quote(s.req_id, &s.symbol, now_s),
                    };
                    (s.conn_id, msgs)
                })
                .collect()
        };
        let conns = lock(&shared.conns);
        for (conn_id, msgs) in pushes {
            if let Some(c) = conns.get(&conn_id) {
                for m in msgs {
                    let _ = c.out.send(Outbound::Msg(m));
                }
            }
        }
    }
}

/// Control and inspection of a running fake gateway. Cloneable; runtime faults apply to every
/// live connection at the moment of the call.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn port(&self) -> u16 {
        self.shared.addr.port()
    }

    /// Stops listening and closes every connection; waits (up to 1 s) for them to go.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.active_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Connections accepted so far.
    pub fn connection_count(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    pub fn max_simultaneous_connections(&self) -> usize {
        self.shared.max_active.load(Ordering::SeqCst)
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).clone()
    }

    pub fn requests_of(&self, kind: RequestKind) -> Vec<RecordedRequest> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.kind() == kind)
            .cloned()
            .collect()
    }

    /// Waits until at least `count` requests of `kind` have been received; returns them, or
    /// `None` on timeout (tokio time).
    pub async fn wait_for_requests(
        &self,
        kind: RequestKind,
        count: usize,
        timeout: Duration,
    ) -> Option<Vec<RecordedRequest>> {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.shared.log_changed.notified();
                let seen = self.requests_of(kind);
                if seen.len() >= count {
                    return seen;
                }
                notified.await;
            }
        })
        .await
        .ok()
    }

    /// Waits for the first request of `kind` (the "expect … within" assertion).
    pub async fn expect(&self, kind: RequestKind, within: Duration) -> Option<RecordedRequest> {
        self.wait_for_requests(kind, 1, within)
            .await
            .and_then(|v| v.into_iter().next())
    }

    /// Client ids of every startApi, in order (including refused ones).
    pub fn client_ids_seen(&self) -> Vec<i32> {
        lock(&self.shared.client_ids_seen).clone()
    }

    /// Market time now, Unix ms.
    pub fn market_time_ms(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// Reads the world (positions, executions, cash …).
    pub fn with_world<R>(&self, f: impl FnOnce(&World) -> R) -> R {
        f(&lock(&self.shared.world))
    }

    /// Moves `symbol`'s price path so its price now is `cents`; false for an unknown symbol.
    pub fn set_price(&self, symbol: &str, cents: i64) -> bool {
        let now = self.shared.clock.now_s();
        lock(&self.shared.world).set_price(symbol, cents, now)
    }

    // ---- runtime faults ----

    /// Close the listener (the OS then refuses) or reopen it on the same port.
    pub fn set_refusing(&self, refusing: bool) {
        self.shared.refusing.send_replace(refusing);
    }

    fn control(&self, c: Control) {
        for entry in lock(&self.shared.conns).values() {
            let _ = entry.ctl.send(c);
        }
    }

    fn broadcast(&self, make: impl Fn() -> Outbound) {
        for entry in lock(&self.shared.conns).values() {
            let _ = entry.out.send(make());
        }
    }

    /// Close every connection (FIN).
    pub fn drop_now(&self) {
        tracing::info!("fault: drop_now");
        self.control(Control::Drop);
    }

    /// Reset every connection (RST via SO_LINGER 0).
    pub fn reset_now(&self) {
        tracing::info!("fault: reset_now");
        self.control(Control::Reset);
    }

    /// Stop reading and writing on every connection, keeping the sockets open.
    pub fn stall(&self) {
        tracing::info!("fault: stall");
        self.control(Control::Stall);
    }

    /// The next request of `kind` (on any connection) closes that connection unanswered.
    pub fn drop_when(&self, kind: RequestKind) {
        lock(&self.shared.faults).drop_when.push(kind);
    }

    /// Send a frame whose length prefix (0xFFFFFFFF) exceeds the 16 MiB limit, desyncing the client.
    pub fn garbage_frame(&self) {
        tracing::info!("fault: garbage_frame");
        self.broadcast(|| Outbound::Raw(vec![0xFF, 0xFF, 0xFF, 0xFF, 0xDE, 0xAD, 0xBE, 0xEF]));
    }

    /// Send an error frame to every session.
    pub fn send_error(&self, id: i32, code: i32, msg: &str) {
        let now_ms = self.shared.clock.now_ms();
        let msg = msg.to_string();
        self.broadcast(|| Outbound::Msg(ServerMsg::error(id, code, msg.clone(), now_ms)));
    }

    /// A system notice with TWS's text: 1100 lost, 1101 restored (data lost), 1102 restored
    /// (data kept), 1300 socket port reset, 2110 TWS-server connectivity broken.
    pub fn system(&self, code: i32) {
        let text = match code {
            1100 => "Connectivity between IB and Trader Workstation has been lost.",
            1101 => "Connectivity between IB and TWS has been restored- data lost.",
            1102 => "Connectivity between IB and TWS has been restored- data maintained.",
            1300 => "TWS socket port has been reset and this connection is being dropped. Please reconnect on the new port",
            2110 => "Connectivity between TWS and server is broken. It will be restored automatically.",
            _ => "System message",
        };
        self.send_error(-1, code, text);
    }

    /// Farm flap: 2103 "market data farm connection is broken".
    pub fn farm_broken(&self) {
        self.send_error(-1, 2103, "Market data farm connection is broken:usfarm");
    }

    /// Farm flap: 2104 "market data farm connection is OK".
    pub fn farm_ok(&self) {
        self.send_error(-1, 2104, "Market data farm connection is OK:usfarm");
    }

    /// Answer requests of `kind` only after `d`.
    pub fn delay(&self, kind: RequestKind, d: Duration) {
        lock(&self.shared.faults).delays.insert(kind, d);
    }

    pub fn clear_delay(&self, kind: RequestKind) {
        lock(&self.shared.faults).delays.remove(&kind);
    }

    /// Never answer requests of `kind`.
    pub fn ignore(&self, kind: RequestKind) {
        lock(&self.shared.faults).ignored.insert(kind);
    }

    pub fn unignore(&self, kind: RequestKind) {
        lock(&self.shared.faults).ignored.remove(&kind);
    }

    /// placeOrder gets error 321 on every connection.
    pub fn set_read_only(&self, on: bool) {
        lock(&self.shared.faults).read_only = on;
    }

    /// `symbol` has no real-time data permission: its realtime-bars requests get error `code`
    /// (354, 10089 or 10167) until the connection switches to delayed data (type 3 or 4).
    /// `None` restores the permission.
    pub fn set_no_realtime(&self, symbol: &str, code: Option<i32>) {
        let symbol = symbol.to_ascii_uppercase();
        let mut f = lock(&self.shared.faults);
        match code {
            Some(c) => f.no_realtime.insert(symbol, c),
            None => f.no_realtime.remove(&symbol),
        };
    }

    /// Stop (or resume) pushing realtime bars for `symbol`; requests are still accepted.
    pub fn set_silent(&self, symbol: &str, silent: bool) {
        let symbol = symbol.to_ascii_uppercase();
        let mut f = lock(&self.shared.faults);
        if silent {
            f.silent.insert(symbol);
        } else {
            f.silent.remove(&symbol);
        }
    }

    /// Emulate IB's historical pacing (error 162).
    pub fn set_pacing(&self, on: bool) {
        lock(&self.shared.faults).pacing = on;
    }

    /// Error 100 for messages beyond `limit` per second per connection (`None` = unlimited).
    pub fn set_rate_limit(&self, limit: Option<u32>) {
        lock(&self.shared.faults).rate_limit = limit;
    }
}
