//! The IB Gateway session supervisor: one persistent connection with a fixed client id, our own
//! connect/handshake timeouts (ibapi has none), a `server_time` heartbeat, capped jittered
//! backoff, client-id rotation on 326, a fatal stop on a server version we cannot speak, and
//! gateway notices (1100/1101/1102, farm 2103–2108/2157/2158) mapped to [`SessionState`].
//! Every transition carries a reason and is published on a `watch` (current state) and a
//! `broadcast` (history, for `connection_events`). ibapi's own reconnection is off, so a drop
//! ends the connection and this loop — the only policy — builds a new one after closing the old.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Timelike, Utc};
use robo_core::types::ConnectionState;
use tokio::sync::{broadcast, watch, Notify};

use super::backoff::Backoff;
use super::ibkr::{self, ConnectParams, IbConn};
use super::pacing::PacingConfig;
use super::{ConnectError, OUR_MAX_SERVER_VERSION, OUR_MIN_SERVER_VERSION};

/// The gateway's daily restart, in a named zone; may wrap midnight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub tz: chrono_tz::Tz,
}

impl Default for RestartWindow {
    /// 23:45–01:45 New York: IBG's default auto-restart plus IB's nightly server reset.
    fn default() -> Self {
        Self {
            start: NaiveTime::from_hms_opt(23, 45, 0).unwrap_or_default(),
            end: NaiveTime::from_hms_opt(1, 45, 0).unwrap_or_default(),
            tz: chrono_tz::America::New_York,
        }
    }
}

impl RestartWindow {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.tz).time();
        let t =
            NaiveTime::from_hms_opt(local.hour(), local.minute(), local.second()).unwrap_or(local);
        if self.start <= self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

/// Everything the supervisor needs. `Default` is production's values.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub host: String,
    pub port: u16,
    /// The fixed id first; the rest are rotated to on error 326.
    pub client_ids: Vec<i32>,
    /// TCP connect; loopback refusals are immediate, this bounds a black-holed host.
    pub connect_timeout: Duration,
    /// From TCP up to nextValidId + managedAccounts.
    pub handshake_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub restart_window: Option<RestartWindow>,
    /// Stay in `Syncing` after a connect until the runner has reconciled
    /// ([`super::IbkrBroker::reconcile`]); false for data-only sessions.
    pub require_reconcile: bool,
    /// Everything sent goes through ibapi's limiter at this rate (IB's limit is 50).
    pub messages_per_second: u32,
    /// Bound of one-shot requests (historical bars, contract details …).
    pub request_timeout: Duration,
    pub pacing: PacingConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 4002,
            client_ids: vec![10],
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            restart_window: Some(RestartWindow::default()),
            require_reconcile: true,
            messages_per_second: 45,
            request_timeout: Duration::from_secs(30),
            pacing: PacingConfig::default(),
        }
    }
}

impl SessionConfig {
    /// From the `[ib]` config section.
    pub fn from_ib(ib: &crate::config::IbConfig) -> Self {
        let mut ids = vec![ib.client_id];
        ids.extend(ib.client_ids.iter().copied().filter(|i| *i != ib.client_id));
        Self {
            host: ib.host.clone(),
            port: ib.port,
            client_ids: ids,
            ..Self::default()
        }
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why the session is degraded (connected, but not fit to trade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DegradedCause {
    /// 1100: the gateway lost its link to IB.
    IbLinkLost,
    /// 2103/2105/2157: a data farm is down (codes still broken, in order).
    FarmBroken { codes: Vec<i32>, detail: String },
}

/// Why the session stopped for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FatalReason {
    ServerVersionUnsupported {
        ours_min: i32,
        ours_max: i32,
        theirs: i32,
    },
}

impl std::fmt::Display for FatalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FatalReason::ServerVersionUnsupported {
                ours_min,
                ours_max,
                theirs,
            } => write!(
                f,
                "IB Gateway speaks server version {theirs}; robo-trader needs {ours_min}..{ours_max}. Upgrade IB Gateway (10.4x or later)"
            ),
        }
    }
}

/// The supervisor's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    Disconnected {
        reason: String,
    },
    Connecting {
        client_id: i32,
        attempt: u32,
    },
    /// Connected; waiting for reconciliation before orders.
    Syncing {
        client_id: i32,
    },
    Ready,
    Degraded {
        cause: DegradedCause,
    },
    /// Inside the daily restart window and not connected; reconnects continue.
    RestartWindow,
    Fatal {
        reason: FatalReason,
    },
}

impl SessionState {
    /// The engine's view.
    pub fn connection_state(&self) -> ConnectionState {
        match self {
            SessionState::Disconnected { .. } | SessionState::Fatal { .. } => {
                ConnectionState::Disconnected
            }
            SessionState::Connecting { .. } => ConnectionState::Connecting,
            SessionState::Syncing { .. } => ConnectionState::Syncing,
            SessionState::Ready => ConnectionState::Ready,
            SessionState::Degraded { .. } => ConnectionState::Degraded,
            SessionState::RestartWindow => ConnectionState::RestartWindow,
        }
    }

    /// A live connection exists (requests may be sent).
    pub fn is_connected(&self) -> bool {
        matches!(
            self,
            SessionState::Syncing { .. } | SessionState::Ready | SessionState::Degraded { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            SessionState::Disconnected { .. } => "disconnected",
            SessionState::Connecting { .. } => "connecting",
            SessionState::Syncing { .. } => "syncing",
            SessionState::Ready => "ready",
            SessionState::Degraded { .. } => "degraded",
            SessionState::RestartWindow => "restart_window",
            SessionState::Fatal { .. } => "fatal",
        }
    }
}

/// One answered heartbeat: the `server_time()` round trip on connection `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub latency: Duration,
    pub generation: u64,
    /// Answered heartbeats since the session started (changes on every sample).
    pub seq: u64,
}

/// One state change, with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: SessionState,
    pub to: SessionState,
    pub reason: String,
    pub at: DateTime<Utc>,
    /// Which connection (1 = the first successful one).
    pub generation: u64,
}

struct Shared {
    cfg: SessionConfig,
    state: watch::Sender<SessionState>,
    events: broadcast::Sender<Transition>,
    conn: Mutex<Option<IbConn>>,
    generation: AtomicU64,
    /// Bumped whenever market data must be requested again (new connection, or 1101).
    resubscribe: watch::Sender<u64>,
    /// The last answered heartbeat.
    heartbeat: watch::Sender<Option<Heartbeat>>,
    shutdown: watch::Sender<bool>,
    /// Set by the adapter when a request proves the connection dead.
    kill: Notify,
    reconciled: AtomicBool,
    ib_link_lost: AtomicBool,
    farms_broken: Mutex<BTreeSet<i32>>,
    read_only: AtomicBool,
    server_version: AtomicI32,
    accounts: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Handle to the supervised session. Cheap to clone.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Session {
    /// Starts the supervisor task (call inside a tokio runtime).
    pub fn start(cfg: SessionConfig) -> Session {
        let (state, _) = watch::channel(SessionState::Disconnected {
            reason: "not started".into(),
        });
        let (events, _) = broadcast::channel(256);
        let (resubscribe, _) = watch::channel(0);
        let (shutdown, _) = watch::channel(false);
        let (heartbeat, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            cfg,
            state,
            events,
            conn: Mutex::new(None),
            generation: AtomicU64::new(0),
            resubscribe,
            heartbeat,
            shutdown,
            kill: Notify::new(),
            reconciled: AtomicBool::new(false),
            ib_link_lost: AtomicBool::new(false),
            farms_broken: Mutex::new(BTreeSet::new()),
            read_only: AtomicBool::new(false),
            server_version: AtomicI32::new(0),
            accounts: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(supervise(shared.clone()));
        Session {
            shared,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.shared.cfg
    }

    pub fn state(&self) -> SessionState {
        self.shared.state.borrow().clone()
    }

    pub fn connection_state(&self) -> ConnectionState {
        self.state().connection_state()
    }

    /// The current state, and every change.
    pub fn watch(&self) -> watch::Receiver<SessionState> {
        self.shared.state.subscribe()
    }

    /// Every transition with its reason (for `connection_events`). Lagging receivers lose the
    /// oldest entries, never block the supervisor.
    pub fn transitions(&self) -> broadcast::Receiver<Transition> {
        self.shared.events.subscribe()
    }

    /// Waits until `pred` holds for the state, up to `within`.
    pub async fn wait_for(
        &self,
        within: Duration,
        pred: impl Fn(&SessionState) -> bool,
    ) -> Option<SessionState> {
        let mut rx = self.watch();
        tokio::time::timeout(within, async {
            loop {
                let s = rx.borrow_and_update().clone();
                if pred(&s) {
                    return Some(s);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// How many connections have been established so far.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::SeqCst)
    }

    /// Changes whenever subscriptions must be re-requested (each new connection, and 1101).
    pub fn resubscribe_signal(&self) -> watch::Receiver<u64> {
        self.shared.resubscribe.subscribe()
    }

    /// The last answered heartbeat, and every new one (for the latency histogram).
    pub fn heartbeats(&self) -> watch::Receiver<Option<Heartbeat>> {
        self.shared.heartbeat.subscribe()
    }

    pub fn server_version(&self) -> Option<i32> {
        Some(self.shared.server_version.load(Ordering::SeqCst)).filter(|v| *v > 0)
    }

    pub fn accounts(&self) -> Vec<String> {
        lock(&self.shared.accounts).clone()
    }

    /// True once the gateway answered an order with 321 (Read-Only API).
    pub fn read_only_seen(&self) -> bool {
        self.shared.read_only.load(Ordering::SeqCst)
    }

    pub(crate) fn note_read_only(&self) {
        if !self.shared.read_only.swap(true, Ordering::SeqCst) {
            tracing::error!("the gateway refused an order with 321: Read-Only API is on");
        }
    }

    /// The live connection, if any.
    pub(crate) fn conn(&self) -> Option<IbConn> {
        lock(&self.shared.conn).clone()
    }

    /// A request saw the connection die; the supervisor closes it and reconnects.
    pub(crate) fn report_connection_lost(&self) {
        self.shared.kill.notify_one();
    }

    /// Fills may be reported live: this connection was reconciled (or needs no reconciling).
    pub(crate) fn is_reconciled(&self) -> bool {
        !self.shared.cfg.require_reconcile || self.shared.reconciled.load(Ordering::SeqCst)
    }

    /// Reconciliation finished on this generation: orders may go.
    pub(crate) fn mark_reconciled(&self, generation: u64) {
        if generation == self.generation() && self.state().is_connected() {
            self.shared.reconciled.store(true, Ordering::SeqCst);
            refresh_connected_state(&self.shared, "reconciled");
        }
    }

    /// Orders may be sent now, or the reason why not.
    pub fn trading_gate(&self) -> Result<(), super::OrderRefusal> {
        if let Some(w) = &self.shared.cfg.restart_window {
            if w.contains(Utc::now()) {
                return Err(super::OrderRefusal::RestartWindow);
            }
        }
        if self.read_only_seen() {
            return Err(super::OrderRefusal::ReadOnly);
        }
        match self.state() {
            SessionState::Ready => Ok(()),
            s => Err(super::OrderRefusal::NotReady(s.name().to_string())),
        }
    }

    /// Stops the supervisor and closes the connection.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let task = lock(&self.task).take();
        if let Some(t) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let conn = lock(&self.shared.conn).take();
        if let Some(c) = conn {
            c.disconnect().await;
        }
    }
}

fn set_state(shared: &Shared, to: SessionState, reason: impl Into<String>) {
    let reason = reason.into();
    let from = shared.state.borrow().clone();
    if from == to {
        return;
    }
    tracing::info!(from = from.name(), to = to.name(), %reason, "ib session");
    shared.state.send_replace(to.clone());
    let _ = shared.events.send(Transition {
        from,
        to,
        reason,
        at: Utc::now(),
        generation: shared.generation.load(Ordering::SeqCst),
    });
}

/// Recomputes the state of a live connection from its flags.
fn refresh_connected_state(shared: &Shared, reason: &str) {
    let state = if shared.ib_link_lost.load(Ordering::SeqCst) {
        SessionState::Degraded {
            cause: DegradedCause::IbLinkLost,
        }
    } else if !shared.cfg.require_reconcile || shared.reconciled.load(Ordering::SeqCst) {
        let broken: Vec<i32> = lock(&shared.farms_broken).iter().copied().collect();
        if broken.is_empty() {
            SessionState::Ready
        } else {
            SessionState::Degraded {
                cause: DegradedCause::FarmBroken {
                    detail: farm_detail(&broken),
                    codes: broken,
                },
            }
        }
    } else {
        let client_id = lock(&shared.conn)
            .as_ref()
            .map(|c| c.client_id())
            .unwrap_or(0);
        SessionState::Syncing { client_id }
    };
    set_state(shared, state, reason);
}

fn farm_detail(codes: &[i32]) -> String {
    codes
        .iter()
        .map(|c| match c {
            2103 => "market data farm broken",
            2105 => "historical data farm broken",
            2157 => "security definition farm broken",
            _ => "farm broken",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a gateway notice means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoticeEffect {
    IbLinkLost,
    RestoredDataLost,
    RestoredDataKept,
    FarmBroken(i32),
    /// The farm with this "broken" code is OK again.
    FarmOk(i32),
    SocketReset,
    None,
}

pub(crate) fn classify_notice(code: i32) -> NoticeEffect {
    match code {
        1100 | 2110 => NoticeEffect::IbLinkLost,
        1101 => NoticeEffect::RestoredDataLost,
        1102 => NoticeEffect::RestoredDataKept,
        1300 => NoticeEffect::SocketReset,
        2103 | 2105 | 2157 => NoticeEffect::FarmBroken(code),
        2104 => NoticeEffect::FarmOk(2103),
        2106 => NoticeEffect::FarmOk(2105),
        2158 => NoticeEffect::FarmOk(2157),
        // 2107/2108: farm inactive but available on demand — not a fault.
        _ => NoticeEffect::None,
    }
}

fn in_restart_window(shared: &Shared) -> bool {
    shared
        .cfg
        .restart_window
        .as_ref()
        .is_some_and(|w| w.contains(Utc::now()))
}

async fn supervise(shared: Arc<Shared>) {
    let seed = Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 ^ std::process::id() as u64;
    let mut backoff = Backoff::new(shared.cfg.backoff_base, shared.cfg.backoff_cap, seed);
    let mut shutdown = shared.shutdown.subscribe();
    let ids = if shared.cfg.client_ids.is_empty() {
        vec![0]
    } else {
        shared.cfg.client_ids.clone()
    };
    let mut id_index = 0usize;
    let mut attempt = 0u32;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let client_id = ids[id_index % ids.len()];
        attempt += 1;
        set_state(
            &shared,
            SessionState::Connecting { client_id, attempt },
            format!("connecting to {} as client {client_id}", shared.cfg.addr()),
        );
        let params = ConnectParams {
            addr: shared.cfg.addr(),
            client_id,
            bound: shared.cfg.connect_timeout + shared.cfg.handshake_timeout,
            messages_per_second: shared.cfg.messages_per_second,
            request_timeout: shared.cfg.request_timeout,
        };
        let outcome = tokio::select! {
            r = ibkr::connect(&params) => Some(r),
            _ = shutdown.changed() => None,
        };
        let failure = match outcome {
            None => break,
            Some(Ok((conn, notices))) => {
                attempt = 0;
                let reason = run_connection(&shared, conn, notices, &mut backoff).await;
                if *shutdown.borrow() {
                    break;
                }
                reason
            }
            Some(Err(ConnectError::ServerVersion { theirs })) => {
                let reason = FatalReason::ServerVersionUnsupported {
                    ours_min: OUR_MIN_SERVER_VERSION,
                    ours_max: OUR_MAX_SERVER_VERSION,
                    theirs,
                };
                tracing::error!("{reason}");
                shared.server_version.store(theirs, Ordering::SeqCst);
                let text = reason.to_string();
                set_state(&shared, SessionState::Fatal { reason }, text);
                return;
            }
            Some(Err(e @ ConnectError::ClientIdInUse { .. })) => {
                if ids.len() > 1 {
                    id_index = (id_index + 1) % ids.len();
                }
                e.to_string()
            }
            Some(Err(e)) => e.to_string(),
        };
        let delay = backoff.next_delay();
        let next = if in_restart_window(&shared) {
            SessionState::RestartWindow
        } else {
            SessionState::Disconnected {
                reason: failure.clone(),
            }
        };
        set_state(
            &shared,
            next,
            format!("{failure}; retrying in {:.1} s", delay.as_secs_f64()),
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
    }
    let conn = lock(&shared.conn).take();
    if let Some(c) = conn {
        c.disconnect().await;
    }
    set_state(
        &shared,
        SessionState::Disconnected {
            reason: "shut down".into(),
        },
        "shut down",
    );
}

/// Runs one established connection until it dies; returns why. The socket is closed on return.
async fn run_connection(
    shared: &Arc<Shared>,
    conn: IbConn,
    mut notices: ibkr::NoticeRx,
    backoff: &mut Backoff,
) -> String {
    let generation = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
    shared
        .server_version
        .store(conn.server_version(), Ordering::SeqCst);
    *lock(&shared.accounts) = conn.accounts();
    shared.reconciled.store(false, Ordering::SeqCst);
    shared.ib_link_lost.store(false, Ordering::SeqCst);
    lock(&shared.farms_broken).clear();
    *lock(&shared.conn) = Some(conn.clone());
    refresh_connected_state(
        shared,
        &format!(
            "connected as client {} (server version {}, accounts {})",
            conn.client_id(),
            conn.server_version(),
            conn.accounts().join(",")
        ),
    );
    shared.resubscribe.send_modify(|n| *n += 1);

    let mut shutdown = shared.shutdown.subscribe();
    let mut heartbeat = tokio::time::interval(shared.cfg.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await; // the first tick is immediate
    let reason = loop {
        tokio::select! {
            _ = shutdown.changed() => break "shut down".to_string(),
            _ = shared.kill.notified() => break "a request found the connection dead".to_string(),
            _ = heartbeat.tick() => {
                let sent = std::time::Instant::now();
                match tokio::time::timeout(shared.cfg.heartbeat_timeout, conn.server_time()).await {
                    Ok(Ok(_)) => {
                        backoff.reset();
                        let latency = sent.elapsed();
                        shared.heartbeat.send_modify(|h| {
                            let seq = h.map_or(1, |h| h.seq + 1);
                            *h = Some(Heartbeat { latency, generation, seq });
                        });
                    }
                    Ok(Err(e)) => break format!("heartbeat failed: {e}"),
                    Err(_) => break format!(
                        "heartbeat: no answer to server_time within {} s",
                        shared.cfg.heartbeat_timeout.as_secs_f64()
                    ),
                }
            }
            n = notices.next() => {
                let Some(n) = n else { break "connection closed by the gateway".to_string() };
                match classify_notice(n.code) {
                    NoticeEffect::IbLinkLost => {
                        shared.ib_link_lost.store(true, Ordering::SeqCst);
                        refresh_connected_state(shared, &format!("{}: {}", n.code, n.message));
                    }
                    NoticeEffect::RestoredDataKept => {
                        shared.ib_link_lost.store(false, Ordering::SeqCst);
                        refresh_connected_state(shared, &format!("{}: {}", n.code, n.message));
                    }
                    NoticeEffect::RestoredDataLost => {
                        shared.ib_link_lost.store(false, Ordering::SeqCst);
                        refresh_connected_state(shared, &format!("{}: {} (resubscribing)", n.code, n.message));
                        shared.resubscribe.send_modify(|n| *n += 1);
                    }
                    NoticeEffect::FarmBroken(code) => {
                        lock(&shared.farms_broken).insert(code);
                        refresh_connected_state(shared, &format!("{}: {}", n.code, n.message));
                    }
                    NoticeEffect::FarmOk(code) => {
                        let was = lock(&shared.farms_broken).remove(&code);
                        if was {
                            refresh_connected_state(shared, &format!("{}: {}", n.code, n.message));
                        }
                    }
                    NoticeEffect::SocketReset => break format!("{}: {}", n.code, n.message),
                    NoticeEffect::None => tracing::debug!(code = n.code, msg = %n.message, "gateway notice"),
                }
            }
        }
    };
    lock(&shared.conn).take();
    conn.disconnect().await;
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn restart_window_wraps_midnight_in_new_york() {
        let w = RestartWindow::default();
        // 2026-01-15 is EST (UTC-5): 23:50 ET = 04:50 UTC next day.
        assert!(w.contains(Utc.with_ymd_and_hms(2026, 1, 16, 4, 50, 0).unwrap()));
        // 01:44 ET = 06:44 UTC.
        assert!(w.contains(Utc.with_ymd_and_hms(2026, 1, 16, 6, 44, 0).unwrap()));
        // 01:45 ET is outside.
        assert!(!w.contains(Utc.with_ymd_and_hms(2026, 1, 16, 6, 45, 0).unwrap()));
        // 12:00 ET.
        assert!(!w.contains(Utc.with_ymd_and_hms(2026, 1, 16, 17, 0, 0).unwrap()));
    }

    #[test]
    fn notices_map_to_effects() {
        assert_eq!(classify_notice(1100), NoticeEffect::IbLinkLost);
        assert_eq!(classify_notice(1101), NoticeEffect::RestoredDataLost);
        assert_eq!(classify_notice(1102), NoticeEffect::RestoredDataKept);
        assert_eq!(classify_notice(2103), NoticeEffect::FarmBroken(2103));
        assert_eq!(classify_notice(2104), NoticeEffect::FarmOk(2103));
        assert_eq!(classify_notice(2158), NoticeEffect::FarmOk(2157));
        assert_eq!(classify_notice(2107), NoticeEffect::None);
    }

    #[test]
    fn states_map_to_the_engine_view() {
        assert_eq!(
            SessionState::Ready.connection_state(),
            ConnectionState::Ready
        );
        assert_eq!(
            SessionState::Syncing { client_id: 1 }.connection_state(),
            ConnectionState::Syncing
        );
        assert_eq!(
            SessionState::Fatal {
                reason: FatalReason::ServerVersionUnsupported {
                    ours_min: 213,
                    ours_max: 226,
                    theirs: 187
                }
            }
            .connection_state(),
            ConnectionState::Disconnected
        );
    }
}
