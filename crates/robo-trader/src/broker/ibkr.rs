//! The adapter over `ibapi` 5.5 — the only module that names ibapi types. It connects (bounded),
//! heartbeats and reads notices for the supervisor, and gives the runner contracts, historical
//! bars (paced, bounded, cancelled on timeout), realtime 5 s bars folded into 1-minute bars,
//! orders (client order id ↔ IB order id; `orderRef` = our id), fills keyed by IB's exec id,
//! positions, open orders, executions since an exec id, and the account summary. Floats from
//! the wire become `Decimal` here and nowhere else.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use ibapi::market_data::historical::{BarSize, ToDuration, WhatToShow};
use ibapi::market_data::TradingHours;
use ibapi::orders::{
    Action, ExecutionFilter, ExecutionSide, Executions, Order, OrderStatusKind,
    OrderUpdate as IbOrderUpdate, Orders, TimeInForce,
};
use ibapi::subscriptions::SubscriptionItem;
use ibapi::{Client, RateLimiter};
use robo_core::events::{BrokerStatus, OrderUpdate};
use robo_core::types::{
    Bar, ClientOrderId, ExecId, Fill, OrderKind, OrderRequest, Side, SymbolId, Tif, Ts, Universe,
};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use tokio::sync::mpsc;

use super::pacing::{HistKey, HistPacer};
use super::session::Session;
use super::{BrokerError, ConnectError, OrderRefusal};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Connection primitives for the supervisor (and doctor).

pub(crate) struct ConnectParams {
    pub addr: String,
    pub client_id: i32,
    /// TCP connect + handshake, up to nextValidId and managedAccounts.
    pub bound: Duration,
    pub messages_per_second: u32,
    pub request_timeout: Duration,
}

/// One established ibapi connection.
#[derive(Clone)]
pub(crate) struct IbConn {
    client: Arc<Client>,
}

/// A gateway notice without a request id (system, farm, 1300 …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayNotice {
    pub code: i32,
    pub message: String,
}

pub(crate) struct NoticeRx(ibapi::subscriptions::NoticeStream);

impl NoticeRx {
    /// The next notice; `None` once the connection is gone (reconnection is off).
    pub async fn next(&mut self) -> Option<GatewayNotice> {
        self.0.next().await.map(|n| GatewayNotice {
            code: n.code,
            message: n.message,
        })
    }
}

/// One bounded connection attempt. On timeout the ibapi future is dropped, which drops its
/// socket: no half-open connection is left behind.
pub(crate) async fn connect(p: &ConnectParams) -> Result<(IbConn, NoticeRx), ConnectError> {
    let builder = Client::builder()
        .address(p.addr.clone())
        .client_id(p.client_id)
        .max_reconnect_attempts(0)
        .rate_limiter(RateLimiter::per_second(p.messages_per_second.max(1)))
        .one_shot_timeout(p.request_timeout);
    match tokio::time::timeout(p.bound, builder.connect_with_notice_stream()).await {
        Err(_) => Err(ConnectError::Timeout {
            addr: p.addr.clone(),
            secs: p.bound.as_secs(),
        }),
        Ok(Ok((client, notices))) => Ok((
            IbConn {
                client: Arc::new(client),
            },
            NoticeRx(notices),
        )),
        Ok(Err(e)) => Err(map_connect_error(&p.addr, e)),
    }
}

fn map_connect_error(addr: &str, e: ibapi::Error) -> ConnectError {
    match e {
        ibapi::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            ConnectError::Refused {
                addr: addr.to_string(),
                detail: io.to_string(),
            }
        }
        ibapi::Error::Io(io) => ConnectError::Closed {
            addr: addr.to_string(),
            detail: io.to_string(),
        },
        ibapi::Error::ServerVersion(_, theirs, _) => ConnectError::ServerVersion { theirs },
        ibapi::Error::ClientIdInUse { client_id } => ConnectError::ClientIdInUse { client_id },
        ibapi::Error::ConnectionRejected(d) => ConnectError::Closed {
            addr: addr.to_string(),
            detail: d,
        },
        ibapi::Error::ConnectionReset | ibapi::Error::ConnectionFailed => ConnectError::Closed {
            addr: addr.to_string(),
            detail: e.to_string(),
        },
        other => ConnectError::Other(other.to_string()),
    }
}

impl IbConn {
    pub fn client_id(&self) -> i32 {
        self.client.client_id()
    }
    pub fn server_version(&self) -> i32 {
        self.client.server_version()
    }
    pub fn accounts(&self) -> Vec<String> {
        self.client.handshake_managed_accounts().to_vec()
    }
    /// Server time, Unix seconds.
    pub async fn server_time(&self) -> Result<i64, BrokerError> {
        self.client
            .server_time()
            .await
            .map(|t| t.unix_timestamp())
            .map_err(|e| map_request_error("server_time", e))
    }
    pub async fn disconnect(&self) {
        self.client.disconnect().await;
    }
    fn client(&self) -> &Client {
        &self.client
    }
}

fn map_request_error(what: &str, e: ibapi::Error) -> BrokerError {
    match e {
        ibapi::Error::ConnectionReset
        | ibapi::Error::ConnectionFailed
        | ibapi::Error::Shutdown
        | ibapi::Error::InvalidFrame(_) => BrokerError::ConnectionLost(what.to_string()),
        ibapi::Error::Io(_) => BrokerError::ConnectionLost(what.to_string()),
        ibapi::Error::Timeout => BrokerError::Timeout {
            what: what.to_string(),
            secs: 0,
        },
        ibapi::Error::Notice(n) => BrokerError::Gateway {
            code: n.code,
            message: n.message,
        },
        other => BrokerError::Other(format!("{what}: {other}")),
    }
}

fn dec(field: &'static str, x: f64) -> Result<Decimal, BrokerError> {
    Decimal::from_f64(x)
        .map(|d| d.round_dp(6).normalize())
        .ok_or(BrokerError::BadValue {
            field,
            value: x.to_string(),
        })
}

// ---------------------------------------------------------------------------------------------
// The adapter.

/// A stock as IB knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedContract {
    pub symbol: String,
    pub con_id: i32,
    pub primary_exchange: String,
    pub currency: String,
}

/// Bar sizes we ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistBarSize {
    Min1,
    Min5,
    Day1,
}

/// One historical request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistQuery {
    pub bar: HistBarSize,
    /// Ending now. (An explicit end needs the `time` crate as a direct dependency.)
    pub duration_secs: i32,
    pub regular_hours_only: bool,
}

/// What the adapter reports on its event channel.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerEvent {
    Order(OrderUpdate),
    /// First sighting of an exec id (with its commission).
    Fill(Fill),
    /// A symbol's market data changed kind.
    Feed(FeedEvent),
}

/// Gateway errors meaning "this symbol has no real-time data permission": 354 (not
/// subscribed), 10089 (needs an API subscription; delayed available), 10167 (delayed shown).
pub const NO_REALTIME_CODES: [i32; 3] = [354, 10089, 10167];

/// What the gateway's answer to a symbol's realtime bars request did to that symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// No real-time permission: the connection switched to delayed data (reqMarketDataType 3)
    /// and the bars were requested again.
    Delayed {
        symbol: SymbolId,
        code: i32,
        message: String,
    },
    /// No data the symbol may trade on: refused again on delayed data, or the fallback is
    /// `untradeable`.
    Refused {
        symbol: SymbolId,
        code: i32,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerPosition {
    pub account: String,
    pub symbol: String,
    pub qty: i64,
    pub avg_cost: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOrder {
    pub ib_order_id: i32,
    /// Parsed from `orderRef`; `None` for orders we did not place.
    pub client_order_id: Option<ClientOrderId>,
    /// Our protective broker stop (its `orderRef` says so, see [`protective_order_ref`]).
    pub protective: bool,
    pub symbol: String,
    pub side: Side,
    pub qty: i64,
    pub status: String,
}

/// Everything found after a (re)connect, to apply idempotently (fills keyed by exec id).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reconciliation {
    pub fills: Vec<Fill>,
    pub open_orders: Vec<OpenOrder>,
    pub positions: Vec<BrokerPosition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountSummary {
    pub account: String,
    pub net_liquidation: Option<Decimal>,
    pub total_cash: Option<Decimal>,
    pub buying_power: Option<Decimal>,
}

#[derive(Default)]
struct OrderBook {
    by_client: HashMap<ClientOrderId, i32>,
    by_ib: HashMap<i32, ClientOrderId>,
    fills_seen: HashSet<String>,
    /// Executions waiting for their commission report.
    pending_exec: HashMap<String, Fill>,
}

struct Inner {
    session: Session,
    universe: Universe,
    pacer: HistPacer,
    contracts: Mutex<HashMap<String, ResolvedContract>>,
    orders: Mutex<OrderBook>,
    events: mpsc::UnboundedSender<BrokerEvent>,
    /// Per symbol (by index): bumped to re-request that symbol's realtime bars alone.
    bar_kicks: Vec<tokio::sync::watch::Sender<u64>>,
    /// Per symbol: on delayed data (asked again with market data type 3 on every connection).
    delayed: Vec<AtomicBool>,
    /// Fall back to delayed data on a missing real-time permission (else: refuse the symbol).
    fallback_delayed: AtomicBool,
}

/// The IB broker over a supervised [`Session`].
#[derive(Clone)]
pub struct IbkrBroker {
    inner: Arc<Inner>,
}

impl IbkrBroker {
    /// The adapter and its event stream (order updates and fills). Starts the order-update
    /// listener, which follows the session across reconnects.
    pub fn new(
        session: Session,
        universe: Universe,
    ) -> (Self, mpsc::UnboundedReceiver<BrokerEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pacer = HistPacer::new(session.config().pacing.clone());
        let universe_len = universe.len();
        let bar_kicks = (0..universe_len)
            .map(|_| tokio::sync::watch::channel(0).0)
            .collect();
        let inner = Arc::new(Inner {
            session,
            universe,
            pacer,
            contracts: Mutex::new(HashMap::new()),
            orders: Mutex::new(OrderBook::default()),
            events: tx,
            bar_kicks,
            delayed: (0..universe_len).map(|_| AtomicBool::new(false)).collect(),
            fallback_delayed: AtomicBool::new(true),
        });
        tokio::spawn(order_listener(Arc::downgrade(&inner)));
        (IbkrBroker { inner }, rx)
    }

    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// Whether a symbol without a real-time permission falls back to delayed data (the
    /// default) or is refused.
    pub fn set_delayed_fallback(&self, on: bool) {
        self.inner.fallback_delayed.store(on, Ordering::Relaxed);
    }

    /// Whether `symbol`'s bars are delayed data.
    pub fn is_delayed(&self, symbol: SymbolId) -> bool {
        self.inner
            .delayed
            .get(symbol.index())
            .is_some_and(|d| d.load(Ordering::Relaxed))
    }

    /// The gateway's clock, Unix seconds (bounded by the request timeout).
    pub async fn server_time(&self) -> Result<i64, BrokerError> {
        let conn = self.conn()?;
        bounded("server time", self.request_timeout(), conn.server_time())
            .await
            .inspect_err(|e| self.lost(e))
    }

    fn conn(&self) -> Result<IbConn, BrokerError> {
        self.inner
            .session
            .conn()
            .ok_or_else(|| BrokerError::NotConnected(self.inner.session.state().name().to_string()))
    }

    fn name(&self, id: SymbolId) -> Result<String, BrokerError> {
        self.inner
            .universe
            .names()
            .get(id.index())
            .cloned()
            .ok_or(BrokerError::UnknownSymbol(id.0))
    }

    fn request_timeout(&self) -> Duration {
        self.inner.session.config().request_timeout
    }

    fn lost(&self, e: &BrokerError) {
        if matches!(e, BrokerError::ConnectionLost(_)) {
            self.inner.session.report_connection_lost();
        }
    }

    fn contract_for(&self, symbol: &str) -> ibapi::contracts::Contract {
        let cached = lock(&self.inner.contracts).get(symbol).cloned();
        let mut c = ibapi::contracts::Contract::stock(symbol).build();
        if let Some(r) = cached {
            c.contract_id = r.con_id;
            c.primary_exchange = ibapi::contracts::Exchange::from(r.primary_exchange.as_str());
        }
        c
    }

    /// conId, primary exchange and currency of a US stock on SMART.
    pub async fn resolve(&self, symbol: &str) -> Result<ResolvedContract, BrokerError> {
        if let Some(r) = lock(&self.inner.contracts).get(symbol).cloned() {
            return Ok(r);
        }
        let conn = self.conn()?;
        let query = ibapi::contracts::Contract::stock(symbol).build();
        let details = tokio::time::timeout(
            self.request_timeout(),
            conn.client().contract_details(&query),
        )
        .await
        .map_err(|_| BrokerError::Timeout {
            what: format!("contract details for {symbol}"),
            secs: self.request_timeout().as_secs(),
        })?
        .map_err(|e| match map_request_error("contract details", e) {
            BrokerError::Gateway { code: 200, message } => BrokerError::UnknownContract {
                symbol: symbol.to_string(),
                detail: format!("error 200: {message}"),
            },
            other => other,
        })
        .inspect_err(|e| self.lost(e))?;
        let usd: Vec<_> = details
            .iter()
            .filter(|d| d.contract.currency.as_str() == "USD")
            .collect();
        let found = match usd.as_slice() {
            [] => {
                return Err(BrokerError::UnknownContract {
                    symbol: symbol.to_string(),
                    detail: "no USD stock with this symbol on SMART".into(),
                })
            }
            [one] => *one,
            many => {
                return Err(BrokerError::AmbiguousContract {
                    symbol: symbol.to_string(),
                    count: many.len(),
                    detail: many
                        .iter()
                        .map(|d| {
                            format!(
                                "conId {} on {}",
                                d.contract.contract_id, d.contract.primary_exchange
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        };
        let r = ResolvedContract {
            symbol: symbol.to_string(),
            con_id: found.contract.contract_id,
            primary_exchange: found.contract.primary_exchange.to_string(),
            currency: found.contract.currency.to_string(),
        };
        lock(&self.inner.contracts).insert(symbol.to_string(), r.clone());
        Ok(r)
    }

    /// Historical bars, paced and bounded. A dropped connection is retried once on the next
    /// connection, never sooner than the pacing rules allow for the identical request.
    pub async fn historical_bars(
        &self,
        symbol: SymbolId,
        q: &HistQuery,
    ) -> Result<Vec<Bar>, BrokerError> {
        match self.historical_once(symbol, q).await {
            Err(BrokerError::ConnectionLost(what)) => {
                let wait = self.inner.session.config().handshake_timeout
                    + self.inner.session.config().backoff_cap;
                self.inner
                    .session
                    .wait_for(wait, |s| s.is_connected())
                    .await
                    .ok_or(BrokerError::ConnectionLost(what))?;
                self.historical_once(symbol, q).await
            }
            other => other,
        }
    }

    async fn historical_once(
        &self,
        symbol: SymbolId,
        q: &HistQuery,
    ) -> Result<Vec<Bar>, BrokerError> {
        let name = self.name(symbol)?;
        let key = HistKey {
            contract: format!("{name}/SMART/TRADES"),
            params: format!(
                "{:?}/{}/now/{}",
                q.bar, q.duration_secs, q.regular_hours_only
            ),
        };
        let _permit = self.inner.pacer.acquire(&key).await;
        let conn = self.conn()?;
        let contract = self.contract_for(&name);
        let bar = match q.bar {
            HistBarSize::Min1 => BarSize::Min,
            HistBarSize::Min5 => BarSize::Min5,
            HistBarSize::Day1 => BarSize::Day,
        };
        let b = conn
            .client()
            .historical_data(&contract, bar)
            .what_to_show(WhatToShow::Trades)
            .duration(q.duration_secs.seconds())
            .trading_hours(if q.regular_hours_only {
                TradingHours::Regular
            } else {
                TradingHours::Extended
            });
        let bound = self.request_timeout();
        // ibapi's one_shot_timeout (set to the same bound) cancels at the gateway; this outer
        // bound only guards against that machinery itself hanging.
        let data = tokio::time::timeout(bound + Duration::from_secs(2), b.fetch())
            .await
            .map_err(|_| BrokerError::Timeout {
                what: format!("historical bars for {name}"),
                secs: bound.as_secs(),
            })?
            .map_err(|e| match map_request_error("historical bars", e) {
                BrokerError::Timeout { .. } => BrokerError::Timeout {
                    what: format!("historical bars for {name}"),
                    secs: bound.as_secs(),
                },
                other => other,
            })
            .inspect_err(|e| self.lost(e))?;
        data.bars
            .iter()
            .map(|b| {
                let ts = match b.date {
                    ibapi::market_data::historical::BarTimestamp::DateTime(t) => {
                        Ts(i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX))
                    }
                    ibapi::market_data::historical::BarTimestamp::Date(d) => {
                        Ts::from_secs(d.midnight().assume_utc().unix_timestamp())
                    }
                };
                Ok(Bar {
                    symbol,
                    ts,
                    open: dec("bar open", b.open)?,
                    high: dec("bar high", b.high)?,
                    low: dec("bar low", b.low)?,
                    close: dec("bar close", b.close)?,
                    volume: if b.volume.is_finite() && b.volume > 0.0 {
                        b.volume as u64
                    } else {
                        0
                    },
                })
            })
            .collect()
    }

    /// Realtime 5 s bars for `symbols`, folded into 1-minute bars (`ts` = the minute's open).
    /// Re-requested after every reconnect and after 1101. The task ends when the receiver drops.
    pub fn subscribe_minute_bars(&self, symbols: Vec<SymbolId>) -> mpsc::Receiver<Bar> {
        let (tx, rx) = mpsc::channel(1024);
        for symbol in symbols {
            let me = self.clone();
            let tx = tx.clone();
            tokio::spawn(async move { me.realtime_loop(symbol, tx).await });
        }
        rx
    }

    /// Cancels and re-requests the realtime bars of `symbol` alone (a stale feed); false if
    /// the symbol is not in the universe.
    pub fn resubscribe_bars(&self, symbol: SymbolId) -> bool {
        match self.inner.bar_kicks.get(symbol.index()) {
            Some(k) => {
                k.send_modify(|n| *n += 1);
                true
            }
            None => false,
        }
    }

    async fn realtime_loop(self, symbol: SymbolId, tx: mpsc::Sender<Bar>) {
        let Ok(name) = self.name(symbol) else { return };
        let mut resub = self.inner.session.resubscribe_signal();
        let Some(mut kick) = self
            .inner
            .bar_kicks
            .get(symbol.index())
            .map(|k| k.subscribe())
        else {
            return;
        };
        let mut agg = MinuteAggregator::new(symbol);
        loop {
            if tx.is_closed() {
                return;
            }
            resub.borrow_and_update();
            kick.borrow_and_update();
            let sub = match self.conn() {
                Ok(conn) => {
                    if self.is_delayed(symbol) {
                        // Per connection; type 3 still gives live data where it is permitted.
                        if let Err(e) = conn
                            .client()
                            .switch_market_data_type(ibapi::market_data::MarketDataType::Delayed)
                            .await
                        {
                            tracing::warn!(symbol = %name, "reqMarketDataType 3 not sent: {e}");
                        }
                    }
                    let contract = self.contract_for(&name);
                    conn.client()
                        .realtime_bars(&contract)
                        .what_to_show(ibapi::market_data::realtime::WhatToShow::Trades)
                        .trading_hours(TradingHours::Extended)
                        .subscribe()
                        .await
                        .ok()
                }
                Err(_) => None,
            };
            let Some(mut sub) = sub else {
                if resub.changed().await.is_err() {
                    return;
                }
                continue;
            };
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    changed = resub.changed() => {
                        if changed.is_err() { return; }
                        break; // new connection or 1101: request again
                    }
                    kicked = kick.changed() => {
                        if kicked.is_err() { return; }
                        tracing::info!(symbol = %name, "realtime bars re-requested (stale feed)");
                        break;
                    }
                    item = sub.next() => match item {
                        Some(Ok(SubscriptionItem::Data(b))) => {
                            let five = match (dec("rt open", b.open), dec("rt high", b.high), dec("rt low", b.low), dec("rt close", b.close)) {
                                (Ok(o), Ok(h), Ok(l), Ok(c)) => Bar {
                                    symbol,
                                    ts: Ts::from_secs(b.date.unix_timestamp()),
                                    open: o, high: h, low: l, close: c,
                                    volume: if b.volume.is_finite() && b.volume > 0.0 { b.volume as u64 } else { 0 },
                                },
                                _ => continue,
                            };
                            if let Some(done) = agg.push(five) {
                                if tx.send(done).await.is_err() { return; }
                            }
                        }
                        Some(Ok(SubscriptionItem::Notice(n))) if NO_REALTIME_CODES.contains(&n.code) => {
                            if self.no_permission(symbol, n.code, n.message) {
                                break; // on delayed data now: request again
                            }
                            if wait_for_retry(&mut resub, &mut kick).await.is_err() { return; }
                            break;
                        }
                        Some(Err(ibapi::Error::Notice(n))) if NO_REALTIME_CODES.contains(&n.code) => {
                            if self.no_permission(symbol, n.code, n.message) {
                                break;
                            }
                            if wait_for_retry(&mut resub, &mut kick).await.is_err() { return; }
                            break;
                        }
                        Some(Ok(SubscriptionItem::Notice(n))) => tracing::debug!(code = n.code, "realtime bars notice"),
                        Some(Err(_)) | None => {
                            // The subscription ended (connection gone): wait for the next one.
                            if resub.changed().await.is_err() { return; }
                            break;
                        }
                    }
                }
            }
            drop(sub);
        }
    }

    /// A realtime request was refused for want of a permission. Switches the symbol to delayed
    /// data and returns true (request again), or reports it refused and returns false.
    fn no_permission(&self, symbol: SymbolId, code: i32, message: String) -> bool {
        let Some(delayed) = self.inner.delayed.get(symbol.index()) else {
            return false;
        };
        let fallback = self.inner.fallback_delayed.load(Ordering::Relaxed);
        if fallback && !delayed.swap(true, Ordering::Relaxed) {
            let _ = self
                .inner
                .events
                .send(BrokerEvent::Feed(FeedEvent::Delayed {
                    symbol,
                    code,
                    message,
                }));
            return true;
        }
        let _ = self
            .inner
            .events
            .send(BrokerEvent::Feed(FeedEvent::Refused {
                symbol,
                code,
                message,
            }));
        false
    }

    /// Sends an order. Refused with a typed reason unless the session is Ready, outside the
    /// restart window, and not read-only.
    pub async fn place_order(&self, req: &OrderRequest) -> Result<i32, OrderRefusal> {
        self.place_with_ref(req, req.id.to_string()).await
    }

    /// Sends a protective stop for `symbol` (GTC STP at the request's stop price); its
    /// `orderRef` marks it as ours and protective ([`protective_order_ref`]).
    pub async fn place_protective_stop(
        &self,
        req: &OrderRequest,
        symbol: &str,
    ) -> Result<i32, OrderRefusal> {
        self.place_with_ref(req, protective_order_ref(req.id, symbol))
            .await
    }

    async fn place_with_ref(
        &self,
        req: &OrderRequest,
        order_ref: String,
    ) -> Result<i32, OrderRefusal> {
        self.inner.session.trading_gate()?;
        if lock(&self.inner.orders).by_client.contains_key(&req.id) {
            return Err(OrderRefusal::Duplicate(req.id.to_string()));
        }
        let name = self.name(req.symbol)?;
        let conn = self.conn()?;
        let contract = self.contract_for(&name);
        let mut order = Order {
            action: match req.side {
                Side::Buy => Action::Buy,
                Side::Sell => Action::Sell,
            },
            total_quantity: req.qty as f64,
            order_type: req.kind.as_str().to_string(),
            tif: match req.tif {
                Tif::Day => TimeInForce::Day,
                Tif::Gtc => TimeInForce::GoodTillCanceled,
            },
            order_ref,
            transmit: true,
            ..Order::default()
        };
        let px = |p: Decimal| rust_decimal::prelude::ToPrimitive::to_f64(&p);
        match req.kind {
            OrderKind::Market => {}
            OrderKind::Limit { limit } => order.limit_price = px(limit),
            OrderKind::Stop { stop } => order.aux_price = px(stop),
            OrderKind::StopLimit { stop, limit } => {
                order.limit_price = px(limit);
                order.aux_price = px(stop);
            }
        }
        if let Some(acct) = self.inner.session.accounts().first() {
            order.account = acct.clone();
        }
        let ib_id = conn.client().next_order_id();
        {
            let mut book = lock(&self.inner.orders);
            book.by_client.insert(req.id, ib_id);
            book.by_ib.insert(ib_id, req.id);
        }
        conn.client()
            .submit_order(ib_id, &contract, &order)
            .await
            .map_err(|e| map_request_error("place order", e))
            .inspect_err(|e| self.lost(e))?;
        Ok(ib_id)
    }

    pub async fn cancel_order(&self, id: ClientOrderId) -> Result<(), BrokerError> {
        let ib_id = lock(&self.inner.orders)
            .by_client
            .get(&id)
            .copied()
            .ok_or_else(|| BrokerError::Other(format!("order {id} is not known to the broker")))?;
        let conn = self.conn()?;
        let sub = conn
            .client()
            .cancel_order(ib_id, "")
            .await
            .map_err(|e| map_request_error("cancel order", e))
            .inspect_err(|e| self.lost(e))?;
        // Statuses arrive on the order-update stream too; this subscription is not needed.
        drop(sub);
        Ok(())
    }

    /// All positions of the account(s).
    pub async fn positions(&self) -> Result<Vec<BrokerPosition>, BrokerError> {
        let conn = self.conn()?;
        let bound = self.request_timeout();
        let fut = async {
            let mut sub = conn
                .client()
                .positions()
                .await
                .map_err(|e| map_request_error("positions", e))?;
            let mut out = Vec::new();
            while let Some(item) = sub.next().await {
                match item {
                    Ok(SubscriptionItem::Data(ibapi::accounts::PositionUpdate::Position(p))) => out
                        .push(BrokerPosition {
                            account: p.account,
                            symbol: p.contract.symbol.to_string(),
                            qty: p.position as i64,
                            avg_cost: dec("position avg cost", p.average_cost)?,
                        }),
                    Ok(SubscriptionItem::Data(ibapi::accounts::PositionUpdate::PositionEnd)) => {
                        return Ok(out)
                    }
                    Ok(SubscriptionItem::Notice(_)) => {}
                    Err(e) => return Err(map_request_error("positions", e)),
                }
            }
            Err(BrokerError::ConnectionLost("positions".into()))
        };
        bounded("positions", bound, fut)
            .await
            .inspect_err(|e| self.lost(e))
    }

    /// Every open order of the account (all client ids).
    pub async fn open_orders(&self) -> Result<Vec<OpenOrder>, BrokerError> {
        let conn = self.conn()?;
        let bound = self.request_timeout();
        let fut = async {
            let mut sub = conn
                .client()
                .all_open_orders()
                .await
                .map_err(|e| map_request_error("open orders", e))?;
            let mut out: Vec<OpenOrder> = Vec::new();
            while let Some(item) = sub.next().await {
                match item {
                    Ok(SubscriptionItem::Data(Orders::OrderData(d))) => out.push(OpenOrder {
                        ib_order_id: d.order_id,
                        client_order_id: parse_order_ref(&d.order.order_ref),
                        protective: is_protective_ref(&d.order.order_ref),
                        symbol: d.contract.symbol.to_string(),
                        side: if matches!(d.order.action, Action::Buy) {
                            Side::Buy
                        } else {
                            Side::Sell
                        },
                        qty: d.order.total_quantity as i64,
                        status: format!("{:?}", d.order_state.status),
                    }),
                    Ok(SubscriptionItem::Data(Orders::OrderStatus(_)))
                    | Ok(SubscriptionItem::Notice(_)) => {}
                    Err(ibapi::Error::EndOfStream) => break,
                    Err(e) => return Err(map_request_error("open orders", e)),
                }
            }
            Ok(out)
        };
        bounded("open orders", bound, fut)
            .await
            .inspect_err(|e| self.lost(e))
    }

    /// Executions (with commissions) after `last_exec` in IB's order; all of today's when `None`
    /// or when `last_exec` is not among them.
    pub async fn executions_since(
        &self,
        last_exec: Option<&str>,
    ) -> Result<Vec<Fill>, BrokerError> {
        let conn = self.conn()?;
        let bound = self.request_timeout();
        let fut = async {
            let mut sub = conn
                .client()
                .executions(ExecutionFilter::default())
                .await
                .map_err(|e| map_request_error("executions", e))?;
            let mut execs: Vec<(String, ibapi::orders::ExecutionData)> = Vec::new();
            let mut commissions: HashMap<String, f64> = HashMap::new();
            while let Some(item) = sub.next().await {
                match item {
                    Ok(SubscriptionItem::Data(Executions::ExecutionData(d))) => {
                        execs.push((d.execution.execution_id.clone(), d))
                    }
                    Ok(SubscriptionItem::Data(Executions::CommissionReport(c))) => {
                        commissions.insert(c.execution_id, c.commission);
                    }
                    Ok(SubscriptionItem::Notice(_)) => {}
                    Err(ibapi::Error::EndOfStream) => break,
                    Err(e) => return Err(map_request_error("executions", e)),
                }
            }
            Ok((execs, commissions))
        };
        let (execs, commissions) = bounded("executions", bound, fut)
            .await
            .inspect_err(|e| self.lost(e))?;
        let start = last_exec
            .and_then(|l| execs.iter().position(|(id, _)| id == l).map(|i| i + 1))
            .unwrap_or(0);
        let mut out = Vec::new();
        for (id, d) in execs.into_iter().skip(start) {
            let commission = commissions.get(&id).copied().unwrap_or(0.0);
            match self.fill_from(&d, commission) {
                Ok(f) => out.push(f),
                Err(e) => tracing::warn!(exec_id = %id, "execution skipped: {e}"),
            }
        }
        Ok(out)
    }

    fn fill_from(
        &self,
        d: &ibapi::orders::ExecutionData,
        commission: f64,
    ) -> Result<Fill, BrokerError> {
        let e = &d.execution;
        let order_id = parse_order_ref(&e.order_reference)
            .or_else(|| lock(&self.inner.orders).by_ib.get(&e.order_id).copied())
            .ok_or_else(|| BrokerError::BadValue {
                field: "execution orderRef",
                value: e.order_reference.clone(),
            })?;
        let symbol_name = d.contract.symbol.to_string();
        let symbol = self
            .inner
            .universe
            .id(&symbol_name)
            .ok_or(BrokerError::UnknownContract {
                symbol: symbol_name,
                detail: "not in the watchlist".into(),
            })?;
        Ok(Fill {
            exec_id: ExecId::from(e.execution_id.clone()),
            order_id,
            symbol,
            side: match e.side {
                ExecutionSide::Bought => Side::Buy,
                ExecutionSide::Sold => Side::Sell,
            },
            qty: e.shares as i64,
            price: dec("execution price", e.price)?,
            commission: dec("commission", commission)?,
            ts: parse_exec_time(&e.time).unwrap_or_default(),
        })
    }

    /// After every (re)connect, before any order: positions, open orders, executions since
    /// `last_exec`. Fills already reported on the event stream are still returned (apply by
    /// exec id); they are marked seen so the live stream will not repeat them. On success the
    /// session may become Ready.
    pub async fn reconcile(&self, last_exec: Option<&str>) -> Result<Reconciliation, BrokerError> {
        let generation = self.inner.session.generation();
        let positions = self.positions().await?;
        let open_orders = self.open_orders().await?;
        let fills = self.executions_since(last_exec).await?;
        {
            let mut book = lock(&self.inner.orders);
            for f in &fills {
                book.fills_seen.insert(f.exec_id.0.to_string());
            }
            // Anything held while unreconciled is covered by IB's execution list.
            book.pending_exec.clear();
            for o in &open_orders {
                if let Some(c) = o.client_order_id {
                    book.by_client.insert(c, o.ib_order_id);
                    book.by_ib.insert(o.ib_order_id, c);
                }
            }
        }
        self.inner.session.mark_reconciled(generation);
        Ok(Reconciliation {
            fills,
            open_orders,
            positions,
        })
    }

    pub async fn account_summary(&self) -> Result<AccountSummary, BrokerError> {
        let conn = self.conn()?;
        let bound = self.request_timeout();
        let group = ibapi::accounts::types::AccountGroup("All".into());
        let tags = ["NetLiquidation", "TotalCashValue", "BuyingPower"];
        let fut = async {
            let mut sub = conn
                .client()
                .account_summary(&group, &tags)
                .await
                .map_err(|e| map_request_error("account summary", e))?;
            let mut s = AccountSummary::default();
            while let Some(item) = sub.next().await {
                match item {
                    Ok(SubscriptionItem::Data(ibapi::accounts::AccountSummaryResult::Summary(
                        r,
                    ))) => {
                        s.account = r.account.clone();
                        let v = r.value.parse::<Decimal>().ok();
                        match r.tag.as_str() {
                            "NetLiquidation" => s.net_liquidation = v,
                            "TotalCashValue" => s.total_cash = v,
                            "BuyingPower" => s.buying_power = v,
                            _ => {}
                        }
                    }
                    Ok(SubscriptionItem::Data(ibapi::accounts::AccountSummaryResult::End)) => {
                        return Ok(s)
                    }
                    Ok(SubscriptionItem::Notice(_)) => {}
                    Err(e) => return Err(map_request_error("account summary", e)),
                }
            }
            Ok(s)
        };
        bounded("account summary", bound, fut)
            .await
            .inspect_err(|e| self.lost(e))
    }

    fn on_order_update(&self, u: IbOrderUpdate) {
        let now = Ts::from_utc(chrono::Utc::now());
        match u {
            IbOrderUpdate::OrderStatus(s) => {
                let Some(id) = lock(&self.inner.orders).by_ib.get(&s.order_id).copied() else {
                    return;
                };
                let status = match s.status {
                    OrderStatusKind::PreSubmitted | OrderStatusKind::Submitted => {
                        BrokerStatus::Submitted {
                            broker_id: Some(s.order_id.to_string().into()),
                        }
                    }
                    OrderStatusKind::Cancelled | OrderStatusKind::ApiCancelled => {
                        BrokerStatus::Cancelled {
                            reason: "cancelled at the broker".into(),
                        }
                    }
                    OrderStatusKind::Inactive => BrokerStatus::Rejected {
                        reason: "inactive at the broker".into(),
                    },
                    _ => return,
                };
                let _ = self.inner.events.send(BrokerEvent::Order(OrderUpdate {
                    order_id: id,
                    status,
                    ts: now,
                }));
            }
            IbOrderUpdate::ExecutionData(d) => match self.fill_from(&d, 0.0) {
                Ok(f) => {
                    let mut book = lock(&self.inner.orders);
                    if !book.fills_seen.contains(f.exec_id.as_str()) {
                        book.pending_exec.insert(f.exec_id.0.to_string(), f);
                    }
                }
                Err(e) => tracing::warn!("execution not mapped: {e}"),
            },
            IbOrderUpdate::CommissionReport(c) => {
                // Until this connection is reconciled, fills stay pending: reconciliation
                // returns them, and reporting them here too would count them twice.
                let live = self.inner.session.is_reconciled();
                let fill = {
                    let mut book = lock(&self.inner.orders);
                    if !live || book.fills_seen.contains(&c.execution_id) {
                        None
                    } else {
                        match book.pending_exec.remove(&c.execution_id) {
                            Some(mut f) => {
                                book.fills_seen.insert(f.exec_id.0.to_string());
                                f.commission = dec("commission", c.commission).unwrap_or_default();
                                Some(f)
                            }
                            None => None,
                        }
                    }
                };
                if let Some(f) = fill {
                    let _ = self.inner.events.send(BrokerEvent::Fill(f));
                }
            }
            _ => {}
        }
    }

    fn on_order_notice(&self, order_id: Option<i32>, code: i32, message: String) {
        let Some(ib_id) = order_id else { return };
        let Some(id) = lock(&self.inner.orders).by_ib.get(&ib_id).copied() else {
            return;
        };
        if code == 321 {
            self.inner.session.note_read_only();
        }
        if code == 202 {
            return; // the Cancelled status carries it
        }
        if (100..1000).contains(&code) {
            let _ = self.inner.events.send(BrokerEvent::Order(OrderUpdate {
                order_id: id,
                status: BrokerStatus::Rejected {
                    reason: format!("{code}: {message}"),
                },
                ts: Ts::from_utc(chrono::Utc::now()),
            }));
        }
    }
}

/// Order updates for every connection of the session; ends when the broker is dropped.
async fn order_listener(weak: std::sync::Weak<Inner>) {
    let mut resub = match weak.upgrade() {
        Some(i) => i.session.resubscribe_signal(),
        None => return,
    };
    let mut last_generation = 0;
    loop {
        let (broker, generation) = match weak.upgrade() {
            Some(inner) => {
                let g = inner.session.generation();
                (IbkrBroker { inner }, g)
            }
            None => return,
        };
        let sub = if generation != last_generation {
            match broker.conn() {
                Ok(c) => c.client().order_update_stream().await.ok(),
                Err(_) => None,
            }
        } else {
            None
        };
        drop(broker);
        if let Some(mut sub) = sub {
            last_generation = generation;
            while let Some(item) = sub.next().await {
                let Some(inner) = weak.upgrade() else { return };
                let broker = IbkrBroker { inner };
                match item {
                    Ok(SubscriptionItem::Data(u)) => broker.on_order_update(u),
                    Ok(SubscriptionItem::Notice(n)) => {
                        broker.on_order_notice(n.request_id, n.code, n.message)
                    }
                    Err(ibapi::Error::Notice(n)) => {
                        broker.on_order_notice(n.request_id, n.code, n.message)
                    }
                    Err(_) => break,
                }
            }
        }
        if resub.changed().await.is_err() {
            return;
        }
    }
}

/// After a refusal: wait for a new connection (or 1101) or an explicit re-request.
async fn wait_for_retry(
    resub: &mut tokio::sync::watch::Receiver<u64>,
    kick: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<(), ()> {
    tokio::select! {
        r = resub.changed() => r.map_err(|_| ()),
        r = kick.changed() => r.map_err(|_| ()),
    }
}

async fn bounded<T>(
    what: &str,
    bound: Duration,
    fut: impl std::future::Future<Output = Result<T, BrokerError>>,
) -> Result<T, BrokerError> {
    tokio::time::timeout(bound, fut)
        .await
        .map_err(|_| BrokerError::Timeout {
            what: what.to_string(),
            secs: bound.as_secs(),
        })?
}

/// Our `orderRef` is the client order id's display form, `C<n>`; a protective broker stop's
/// adds `:STOP:<symbol>` ([`protective_order_ref`]).
fn parse_order_ref(s: &str) -> Option<ClientOrderId> {
    let id = s.split(':').next()?;
    id.strip_prefix('C')?.parse().ok().map(ClientOrderId)
}

/// The `orderRef` of our protective stop for `symbol`: `C<n>:STOP:<symbol>`.
pub fn protective_order_ref(id: ClientOrderId, symbol: &str) -> String {
    format!("{id}:STOP:{symbol}")
}

fn is_protective_ref(s: &str) -> bool {
    parse_order_ref(s).is_some() && s.split(':').nth(1) == Some("STOP")
}

/// IB's execution time: `yyyymmdd hh:mm:ss [zone]` or epoch seconds.
fn parse_exec_time(s: &str) -> Option<Ts> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Some(Ts::from_secs(secs));
    }
    let head: String = s.chars().take(17).collect();
    let naive = chrono::NaiveDateTime::parse_from_str(&head, "%Y%m%d %H:%M:%S").ok()?;
    Some(Ts::from_utc(naive.and_utc()))
}

/// Folds 5-second bars into 1-minute bars; a minute is emitted when a later minute begins.
#[derive(Debug)]
pub struct MinuteAggregator {
    symbol: SymbolId,
    current: Option<Bar>,
}

impl MinuteAggregator {
    pub fn new(symbol: SymbolId) -> Self {
        Self {
            symbol,
            current: None,
        }
    }

    /// Adds one 5 s bar; returns the finished minute if this bar starts a new one.
    pub fn push(&mut self, b: Bar) -> Option<Bar> {
        let minute = Ts::from_secs(b.ts.secs().div_euclid(60) * 60);
        match &mut self.current {
            Some(cur) if cur.ts == minute => {
                cur.high = cur.high.max(b.high);
                cur.low = cur.low.min(b.low);
                cur.close = b.close;
                cur.volume = cur.volume.saturating_add(b.volume);
                None
            }
            Some(cur) if cur.ts > minute => None, // late bar of a finished minute: dropped
            _ => {
                let done = self.current.take();
                self.current = Some(Bar {
                    symbol: self.symbol,
                    ts: minute,
                    ..b
                });
                done
            }
        }
    }
}

/// `doctor`'s real-time permission probe: realtime bars for every symbol at once, each
/// cancelled after `wait`; returns the symbols refused for want of a real-time permission
/// (354/10089/10167), with IB's code and text. A symbol that merely sends nothing in `wait`
/// counts as permitted.
pub(crate) async fn probe_realtime(
    conn: &IbConn,
    symbols: &[String],
    wait: Duration,
) -> Vec<(String, i32, String)> {
    let probes = symbols.iter().map(|symbol| async move {
        let contract = ibapi::contracts::Contract::stock(symbol).build();
        let mut sub = conn
            .client()
            .realtime_bars(&contract)
            .what_to_show(ibapi::market_data::realtime::WhatToShow::Trades)
            .trading_hours(TradingHours::Extended)
            .subscribe()
            .await
            .ok()?;
        let first = tokio::time::timeout(wait, sub.next()).await.ok()??;
        let n = match first {
            Ok(SubscriptionItem::Notice(n)) | Err(ibapi::Error::Notice(n)) => n,
            _ => return None,
        };
        NO_REALTIME_CODES
            .contains(&n.code)
            .then(|| (symbol.clone(), n.code, n.message))
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// `doctor`'s market-data probe: one historical 1-minute bar for `symbol`, bounded.
pub(crate) async fn probe_history(
    conn: &IbConn,
    symbol: &str,
    bound: Duration,
) -> Result<usize, BrokerError> {
    let contract = ibapi::contracts::Contract::stock(symbol).build();
    let fut = conn
        .client()
        .historical_data(&contract, BarSize::Min)
        .what_to_show(WhatToShow::Trades)
        .duration(60.seconds())
        .trading_hours(TradingHours::Extended)
        .fetch();
    match tokio::time::timeout(bound, fut).await {
        Err(_) => Err(BrokerError::Timeout {
            what: format!("a historical bar for {symbol}"),
            secs: bound.as_secs(),
        }),
        Ok(Ok(d)) => Ok(d.bars.len()),
        Ok(Err(e)) => Err(map_request_error("historical probe", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn five(ts: i64, o: Decimal, h: Decimal, l: Decimal, c: Decimal, v: u64) -> Bar {
        Bar {
            symbol: SymbolId(0),
            ts: Ts::from_secs(ts),
            open: o,
            high: h,
            low: l,
            close: c,
            volume: v,
        }
    }

    #[test]
    fn twelve_five_second_bars_make_one_minute() {
        let mut agg = MinuteAggregator::new(SymbolId(0));
        let t0 = 1_767_225_600; // a whole minute
        assert_eq!(
            agg.push(five(t0, dec!(10), dec!(11), dec!(9.5), dec!(10.5), 100)),
            None
        );
        assert_eq!(
            agg.push(five(t0 + 5, dec!(10.5), dec!(12), dec!(10), dec!(11), 50)),
            None
        );
        for k in 2..12 {
            assert_eq!(
                agg.push(five(t0 + 5 * k, dec!(11), dec!(11), dec!(11), dec!(11), 1)),
                None
            );
        }
        let done = agg
            .push(five(t0 + 60, dec!(11), dec!(11), dec!(11), dec!(11), 7))
            .expect("minute done");
        assert_eq!(
            done,
            Bar {
                symbol: SymbolId(0),
                ts: Ts::from_secs(t0),
                open: dec!(10),
                high: dec!(12),
                low: dec!(9.5),
                close: dec!(11),
                volume: 160
            }
        );
    }

    #[test]
    fn order_ref_round_trips() {
        assert_eq!(
            parse_order_ref(&ClientOrderId(42).to_string()),
            Some(ClientOrderId(42))
        );
        assert_eq!(parse_order_ref("x42"), None);
        let stop = protective_order_ref(ClientOrderId(7), "AAPL");
        assert_eq!(stop, "C7:STOP:AAPL");
        assert_eq!(parse_order_ref(&stop), Some(ClientOrderId(7)));
        assert!(is_protective_ref(&stop) && !is_protective_ref("C7"));
        assert_eq!(parse_order_ref(""), None);
    }

    #[test]
    fn exec_time_formats() {
        assert_eq!(
            parse_exec_time("1767225600"),
            Some(Ts::from_secs(1_767_225_600))
        );
        assert_eq!(
            parse_exec_time("20260101 00:00:00 UTC"),
            Some(Ts::from_secs(1_767_225_600))
        );
        assert_eq!(parse_exec_time("garbage"), None);
    }
}
