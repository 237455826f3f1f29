//! `run --broker ibkr`: the engine on IB Gateway market data, driven by the real clock.
//!
//! One dedicated thread owns the engine, as in the sim. The session supervisor, the bar
//! subscriptions and the order listener run on the tokio runtime and feed the thread through
//! one channel; the thread calls the broker with `block_on` (it is not a runtime thread).
//!
//! Orders go either to the in-process paper broker, filled on IB's minute bars
//! ([`IbOrders::Local`]), or to the gateway's account ([`IbOrders::Paper`]). Every session
//! transition is recorded in `connection_events` and given to the engine, which refuses orders
//! unless Ready. After every (re)connect the account is reconciled (fills since the last exec
//! id, applied once by exec id) before the session may become Ready.
//!
//! With `[ib] broker_stops` each position is also covered by one GTC stop at IB
//! ([`crate::broker_stops`]), placed after the entry fill and checked again on every bar and
//! after every (re)connect. Before any exit of a covered symbol the stop is cancelled and its
//! confirmation awaited (bounded); if the stop filled instead, the exit is dropped, so no
//! shares are sold twice. SIGTERM and Halted keep the stops.
//!
//! In regular hours (NYSE calendar, wall clock) a symbol without a minute bar for two intervals
//! is re-requested once; silent for two more it is untradeable (recorded in
//! `connection_events`, entries refused, exits and bars still flow) until a bar arrives. With
//! in-process fills, DAY orders expire at the regular close.

use std::collections::{HashSet, VecDeque};
use std::io::BufRead;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use robo_core::engine::Engine;
use robo_core::events::{BrokerStatus, Command, Event, OperatorCommand, OrderUpdate, Record};
use robo_core::orders::OrderState;
use robo_core::paper::PaperBroker;
use robo_core::session::{PaperSession, SessionHooks};
use robo_core::types::{
    Bar, ClientOrderId, ConnectionState, Fill, OrderRequest, SymbolId, Ts, Universe,
};
use tokio::runtime::Handle as RtHandle;
use tracing::{error, info, warn};

use crate::broker::ibkr::HistBarSize;
use crate::broker::{
    AccountSummary, BrokerError, BrokerEvent, FeedEvent, HistQuery, IbkrBroker, Reconciliation,
    Session, SessionConfig, SessionState, Transition,
};
use crate::broker_stops::{self, BrokerStop, Need, StopBook};
use crate::config::{Config, IbOrders, MarketDataFallback};
use crate::runner::{BusEvent, Control, RunOutcome, ShellHooks, TraderParts};
use crate::store::{StoreWriter, SymbolFeedState, WriteOp};

/// History asked per symbol at start to warm the strategies (one day of 1-minute bars).
const BACKFILL_SECS: i32 = 86_400;
/// Bound of one order or cancel request as seen from the trading thread.
const ORDER_BOUND: Duration = Duration::from_secs(5);
/// Bound of one reconciliation; a failure is retried while the session stays Syncing.
const RECONCILE_BOUND: Duration = Duration::from_secs(15);
const RECONCILE_RETRY: Duration = Duration::from_secs(1);
/// How long shutdown waits for the gateway to confirm cancels and report last fills.
const DRAIN_BOUND: Duration = Duration::from_millis(1500);
/// How long an exit waits for the cancel of its symbol's broker stop to be confirmed.
const STOP_CANCEL_BOUND: Duration = Duration::from_secs(3);
/// After IB refuses to cancel a stop, how long a fill of it is waited for.
const STOP_REJECT_GRACE: Duration = Duration::from_secs(1);
/// How often the account summary is read in `--ib-orders paper` mode (retried every second
/// until the first answer of each connection).
const ACCOUNT_EVERY: Duration = Duration::from_secs(30);
/// The exact text `--live` asks to be typed.
pub const LIVE_CONFIRMATION: &str = "LIVE";

/// Before anything starts: with `--live`, asks for the typed confirmation on stdin (or
/// `ROBO_LIVE_CONFIRM=LIVE` for an unattended start).
pub fn preflight(cfg: &Config) -> anyhow::Result<()> {
    if !cfg.ib.live {
        return Ok(());
    }
    if std::env::var("ROBO_LIVE_CONFIRM").ok().as_deref() == Some(LIVE_CONFIRMATION) {
        warn!(
            port = cfg.ib.port,
            "live trading confirmed by ROBO_LIVE_CONFIRM"
        );
        return Ok(());
    }
    eprintln!(
        "robo-trader: --live: orders may reach a REAL-MONEY account through {}:{}.\n\
         Type {LIVE_CONFIRMATION} and press Enter to continue:",
        cfg.ib.host, cfg.ib.port
    );
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the --live confirmation")?;
    if line.trim() != LIVE_CONFIRMATION {
        anyhow::bail!("--live was not confirmed (expected {LIVE_CONFIRMATION:?}); nothing started");
    }
    Ok(())
}

/// The session settings `run` uses for `cfg`.
pub fn session_config(cfg: &Config) -> SessionConfig {
    let mut sc = SessionConfig::from_ib(&cfg.ib);
    if !cfg.ib.restart_window {
        sc.restart_window = None;
    }
    // With in-process fills the gateway only gives data: there is no account to reconcile.
    sc.require_reconcile = cfg.ib.orders == IbOrders::Paper;
    sc
}

/// Where one symbol's live bar feed stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeedHealth {
    Flowing,
    /// Stale once; its bars were re-requested.
    Resubscribed,
    /// Stale again after the resubscribe: no new entries until a bar arrives.
    Untradeable,
    /// No market data permission it may trade on: no new entries for the rest of the run.
    Refused,
    /// Not resolvable at IB: off the watchlist for the rest of the run.
    Dropped,
}

impl FeedHealth {
    /// Set for the run; bars do not lift it and the detector leaves it alone.
    const fn is_final(self) -> bool {
        matches!(self, FeedHealth::Refused | FeedHealth::Dropped)
    }
}

/// What the detector asks the trader to do for one symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeedAction {
    Resubscribe(usize),
    MarkUntradeable(usize),
}

/// Per symbol: the last bar's arrival and the feed's health. Only regular hours count; outside
/// them the clocks restart, so the first check after the open allows a full grace period.
struct FeedWatch {
    /// How long without a bar before acting (each of the two steps); `None` = detector off.
    stale_after: Option<Duration>,
    last: Vec<Instant>,
    health: Vec<FeedHealth>,
}

impl FeedWatch {
    fn new(symbols: usize, stale_after: Option<Duration>, now: Instant) -> Self {
        FeedWatch {
            stale_after,
            last: vec![now; symbols],
            health: vec![FeedHealth::Flowing; symbols],
        }
    }

    /// A bar arrived; returns the health it had (an `Untradeable` one recovers).
    fn on_bar(&mut self, i: usize, now: Instant) -> Option<FeedHealth> {
        let was = *self.health.get(i)?;
        if !was.is_final() {
            self.health[i] = FeedHealth::Flowing;
        }
        self.last[i] = now;
        Some(was)
    }

    fn check(&mut self, now: Instant, regular_hours: bool) -> Vec<FeedAction> {
        let mut out = Vec::new();
        let Some(stale_after) = self.stale_after else {
            return out;
        };
        for (i, (last, health)) in self.last.iter_mut().zip(self.health.iter_mut()).enumerate() {
            if !regular_hours {
                *last = now;
                continue;
            }
            if now.saturating_duration_since(*last) < stale_after {
                continue;
            }
            match health {
                FeedHealth::Flowing => {
                    *health = FeedHealth::Resubscribed;
                    *last = now;
                    out.push(FeedAction::Resubscribe(i));
                }
                FeedHealth::Resubscribed => {
                    *health = FeedHealth::Untradeable;
                    out.push(FeedAction::MarkUntradeable(i));
                }
                FeedHealth::Untradeable | FeedHealth::Refused | FeedHealth::Dropped => {}
            }
        }
        out
    }

    /// Why entries in symbol `i` are refused, if they are.
    fn refusal(&self, i: usize) -> Option<&'static str> {
        match self.health.get(i)? {
            FeedHealth::Untradeable => {
                Some("no market data for this symbol (stale feed): entries refused")
            }
            FeedHealth::Refused => {
                Some("no market data permission this symbol may trade on: entries refused")
            }
            FeedHealth::Dropped => Some("symbol not found at IB (dropped from the watchlist)"),
            FeedHealth::Flowing | FeedHealth::Resubscribed => None,
        }
    }

    #[cfg(test)]
    fn untradeable(&self, i: usize) -> bool {
        self.refusal(i).is_some()
    }

    /// Marks symbol `i` refused or dropped for the rest of the run.
    fn finalize(&mut self, i: usize, health: FeedHealth) {
        if let Some(h) = self.health.get_mut(i) {
            if !h.is_final() || health == FeedHealth::Dropped {
                *h = health;
            }
        }
    }

    fn is_dropped(&self, i: usize) -> bool {
        self.health.get(i) == Some(&FeedHealth::Dropped)
    }

    /// The status row's state.
    fn state(&self, i: usize) -> SymbolFeedState {
        match self.health.get(i) {
            Some(FeedHealth::Dropped) => SymbolFeedState::Dropped,
            Some(FeedHealth::Untradeable | FeedHealth::Refused) => SymbolFeedState::Untradeable,
            _ => SymbolFeedState::Tradeable,
        }
    }
}

/// When the in-process broker's DAY orders expire: the regular close, on the wall clock.
struct CloseClock {
    calendar: robo_core::calendar::Calendar,
    next: Ts,
}

impl CloseClock {
    fn new(calendar: robo_core::calendar::Calendar, now: Ts) -> Self {
        let next = calendar.next_close(now);
        CloseClock { calendar, next }
    }

    /// The close passed since the last call, if one did (once each, even after a long pause).
    fn due(&mut self, now: Ts) -> Option<Ts> {
        if now < self.next {
            return None;
        }
        let close = self.next;
        self.next = self.calendar.next_close(now);
        Some(close)
    }
}

/// The shell's hooks, plus the refusal of new entries in symbols whose feed went stale.
struct GatedHooks<'h, 'a> {
    inner: &'h mut ShellHooks<'a>,
    feeds: &'h FeedWatch,
}

impl SessionHooks for GatedHooks<'_, '_> {
    fn before_place(&mut self, req: &OrderRequest) -> Result<(), String> {
        if req.purpose.is_entry() {
            if let Some(why) = self.feeds.refusal(req.symbol.index()) {
                return Err(why.into());
            }
        }
        self.inner.before_place(req)
    }
    fn after_place(&mut self, req: &OrderRequest) {
        self.inner.after_place(req)
    }
    fn command(&mut self, cmd: &Command) {
        self.inner.command(cmd)
    }
    fn decision(&mut self, d: &robo_core::decision::Decision) {
        self.inner.decision(d)
    }
    fn event(&mut self, ev: &Event) {
        self.inner.event(ev)
    }
}

/// What reaches the trading thread from the runtime.
// Bars are small and frequent; boxing them would allocate per bar.
#[allow(clippy::large_enum_variant)]
enum Input {
    Bar(Bar),
    Broker(BrokerEvent),
    Transition(Transition),
    /// IB's account summary (`--ib-orders paper`).
    Account(AccountSummary),
    /// Re-read the current state: at start, or when transitions were lost (the thread lagged).
    Resync(&'static str),
}

/// The engine and where its orders go.
// One of each per run; the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Exec {
    /// In-process fills on IB's bars: the sim's loop, fed by the gateway.
    Local(PaperSession),
    /// Orders to the gateway; statuses and fills come back as broker events.
    Gateway {
        engine: Engine,
        queue: VecDeque<Event>,
        cmds: Vec<Command>,
    },
}

impl Exec {
    fn engine(&self) -> &Engine {
        match self {
            Exec::Local(s) => &s.engine,
            Exec::Gateway { engine, .. } => engine,
        }
    }

    fn engine_mut(&mut self) -> &mut Engine {
        match self {
            Exec::Local(s) => &mut s.engine,
            Exec::Gateway { engine, .. } => engine,
        }
    }
}

/// The trading thread's state.
struct Trader<'a> {
    exec: Exec,
    hooks: ShellHooks<'a>,
    broker: IbkrBroker,
    rt: &'a RtHandle,
    universe: &'a Universe,
    /// Latest event time: the last bar's, or the wall clock before any bar.
    t: Ts,
    /// Per symbol, the newest bar the strategies have seen; older live bars are skipped.
    seen_until: Vec<Option<Ts>>,
    /// The exec id reconciliation continues after.
    last_exec: Option<String>,
    last_marks: Instant,
    /// A failed reconciliation is retried at this instant (while still Syncing).
    reconcile_retry: Option<Instant>,
    subscribed: bool,
    /// The session state and connection generation last applied.
    applied: Option<(SessionState, u64)>,
    /// The connection generation whose gap since the last bar has been filled from history;
    /// live bars of a newer connection wait in `held` until it is.
    filled_gen: u64,
    held: Vec<Bar>,
    feeds: FeedWatch,
    /// Regular hours on the wall clock; `None` checks feeds at all hours.
    calendar: Option<robo_core::calendar::Calendar>,
    close: CloseClock,
    /// `ib.account_tolerance_pct`.
    account_tolerance_pct: rust_decimal::Decimal,
    /// Whether the last account reading agreed with the ledger (a change is logged once).
    account_agrees: Option<bool>,
    /// The protective stops at IB; `None` unless `[ib] broker_stops` with gateway orders.
    stops: Option<StopBook>,
    /// Rows of broker stops left open by a previous run, settled at the first reconciliation.
    stop_rows: Vec<(ClientOrderId, String, i64)>,
    /// What the runtime sends the trading thread.
    inbox: Receiver<Input>,
    /// Inputs taken from `inbox` while waiting for a stop's cancel, handled next.
    deferred: VecDeque<Input>,
}

/// How the cancel of a broker stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Confirmed cancelled with nothing executed.
    Cancelled,
    /// Some or all of it executed: the position is not what the exit was sized on.
    Filled,
    /// No confirmation in time: it may still be working.
    Unconfirmed,
}

/// Cancels broker stop `id` and waits (bounded) for IB's answer. Inputs that are not about
/// this stop are kept in `deferred`, in order; the stop's fills are returned to be booked.
fn cancel_and_wait(
    rt: &RtHandle,
    broker: &IbkrBroker,
    inbox: &Receiver<Input>,
    deferred: &mut VecDeque<Input>,
    id: ClientOrderId,
) -> (Settled, Vec<Fill>) {
    let mut fills = Vec::new();
    let mut verdict = None;
    // Answers already taken from the inbox come first.
    let mut keep = VecDeque::with_capacity(deferred.len());
    for input in deferred.drain(..) {
        match input {
            Input::Broker(BrokerEvent::Fill(f)) if f.order_id == id => fills.push(f),
            Input::Broker(BrokerEvent::Order(u))
                if u.order_id == id && matches!(u.status, BrokerStatus::Cancelled { .. }) =>
            {
                verdict = Some(Settled::Cancelled);
            }
            other => keep.push_back(other),
        }
    }
    *deferred = keep;
    if let Some(v) = verdict {
        // Already cancelled (a late answer to an earlier cancel).
        let v = if fills.is_empty() { v } else { Settled::Filled };
        return (v, fills);
    }
    let sent =
        rt.block_on(async { tokio::time::timeout(ORDER_BOUND, broker.cancel_order(id)).await });
    if !matches!(sent, Ok(Ok(()))) {
        warn!(order_id = %id, "broker stop: cancel not sent");
        let v = if fills.is_empty() {
            Settled::Unconfirmed
        } else {
            Settled::Filled
        };
        return (v, fills);
    }
    let mut deadline = Instant::now() + STOP_CANCEL_BOUND;
    let mut rejected = false;
    while verdict.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match inbox.recv_timeout(left) {
            Ok(Input::Broker(BrokerEvent::Fill(f))) if f.order_id == id => fills.push(f),
            Ok(Input::Broker(BrokerEvent::Order(u))) if u.order_id == id => match u.status {
                BrokerStatus::Cancelled { .. } => verdict = Some(Settled::Cancelled),
                // IB would not cancel it (e.g. 161): if it executed, the fill follows at
                // once; if none comes it is not working.
                BrokerStatus::Rejected { .. } => {
                    deadline = deadline.min(Instant::now() + STOP_REJECT_GRACE);
                    rejected = true;
                }
                _ => {}
            },
            Ok(other) => deferred.push_back(other),
            Err(_) => break,
        }
    }
    let v = match (verdict, fills.is_empty()) {
        (_, false) => Settled::Filled,
        (Some(v), true) => v,
        (None, true) if rejected => Settled::Cancelled,
        (None, true) => Settled::Unconfirmed,
    };
    (v, fills)
}

impl Trader<'_> {
    /// One event through the engine, then the broker stops of the symbols it filled.
    fn feed(&mut self, ev: Event) {
        let filled = self.feed_inner(ev);
        for sym in filled {
            self.protect(sym);
        }
    }

    /// One event through the engine; in gateway mode the commands are carried out here.
    /// Returns the symbols of the fills it booked.
    fn feed_inner(&mut self, ev: Event) -> Vec<SymbolId> {
        let mut filled = Vec::new();
        let rt = self.rt;
        let broker = &self.broker;
        let universe = self.universe;
        let stops = &mut self.stops;
        let inbox = &self.inbox;
        let deferred = &mut self.deferred;
        let last_exec = &mut self.last_exec;
        let hooks = &mut GatedHooks {
            inner: &mut self.hooks,
            feeds: &self.feeds,
        };
        let (engine, queue, cmds) = match &mut self.exec {
            Exec::Local(s) => {
                s.on_event(ev, hooks);
                return filled;
            }
            Exec::Gateway {
                engine,
                queue,
                cmds,
            } => (engine, queue, cmds),
        };
        queue.push_back(ev);
        while let Some(ev) = queue.pop_front() {
            if let Event::Fill(f) = &ev {
                if !filled.contains(&f.symbol) {
                    filled.push(f.symbol);
                }
            }
            hooks.event(&ev);
            engine.handle(&ev, cmds);
            for d in engine.drain_decisions() {
                hooks.decision(&d);
            }
            for cmd in cmds.drain(..) {
                match cmd {
                    Command::Place(req) => {
                        // A covered symbol's exit waits for its broker stop to be cancelled.
                        let stop = stops
                            .as_ref()
                            .filter(|_| !req.purpose.is_entry())
                            .and_then(|b| b.get(req.symbol));
                        if let Some(stop) = stop {
                            let (settled, fills) =
                                cancel_and_wait(rt, broker, inbox, deferred, stop.id);
                            for f in fills {
                                *last_exec = Some(f.exec_id.0.to_string());
                                if let Some(b) = stops.as_mut() {
                                    note_stop_fill(b, hooks.inner.writer, universe, &f);
                                }
                                queue.push_back(Event::Fill(f));
                            }
                            let refusal = match settled {
                                Settled::Cancelled => {
                                    if let Some(b) = stops.as_mut() {
                                        b.set(req.symbol, None);
                                    }
                                    record_stop_status(
                                        hooks.inner.writer,
                                        universe.name(req.symbol),
                                        stop.id,
                                        OrderState::Cancelled,
                                        stop.filled,
                                        "cancelled before an exit",
                                    );
                                    None
                                }
                                Settled::Filled => Some(
                                    "the broker stop executed first: exit dropped (not sold twice)",
                                ),
                                Settled::Unconfirmed => Some(
                                    "the broker stop's cancel was not confirmed: exit not sent (not sold twice)",
                                ),
                            };
                            if let Some(why) = refusal {
                                warn!(order_id = %req.id, stop = %stop.id, "{why}");
                                queue.push_back(rejected(&req, why.into()));
                                continue;
                            }
                        }
                        if let Err(reason) = hooks.before_place(&req) {
                            queue.push_back(rejected(&req, reason));
                            continue;
                        }
                        let sent = rt.block_on(async {
                            tokio::time::timeout(ORDER_BOUND, broker.place_order(&req)).await
                        });
                        match sent {
                            Ok(Ok(ib_id)) => {
                                hooks.inner.writer.send(WriteOp::BrokerId {
                                    order_id: req.id,
                                    broker_id: ib_id.to_string(),
                                    ts: req.ts,
                                });
                                hooks.after_place(&req);
                            }
                            // Never resent: if it did reach the gateway, its fills still come
                            // back (by orderRef) and are booked on the rejected order.
                            Ok(Err(refusal)) => {
                                warn!(order_id = %req.id, "order not sent: {refusal}");
                                queue.push_back(rejected(&req, refusal.to_string()));
                            }
                            Err(_) => {
                                warn!(order_id = %req.id, "the gateway did not take the order in time");
                                queue.push_back(rejected(
                                    &req,
                                    format!(
                                        "no answer from the gateway within {} s (not resent)",
                                        ORDER_BOUND.as_secs()
                                    ),
                                ));
                            }
                        }
                    }
                    Command::Cancel(id) => {
                        let r = rt.block_on(async {
                            tokio::time::timeout(ORDER_BOUND, broker.cancel_order(id)).await
                        });
                        match r {
                            Ok(Ok(())) => info!(order_id = %id, "cancel sent"),
                            Ok(Err(e)) => warn!(order_id = %id, "cancel not sent: {e}"),
                            Err(_) => warn!(order_id = %id, "cancel: no answer in time"),
                        }
                    }
                    other => hooks.command(&other),
                }
            }
        }
        filled
    }

    /// Makes `sym` covered by exactly one broker stop of the position's size (when enabled,
    /// Ready, and no exit is in flight: the exit decides the position).
    fn protect(&mut self, sym: SymbolId) {
        let Some(book) = &self.stops else { return };
        let Exec::Gateway { engine, .. } = &self.exec else {
            return;
        };
        if self.broker.session().state() != SessionState::Ready {
            return;
        }
        if engine
            .orders()
            .open_orders()
            .any(|o| o.req.symbol == sym && !o.req.purpose.is_entry())
        {
            return;
        }
        match book.need(sym, engine.ledger().qty(sym)) {
            Need::Nothing => {}
            Need::Place => self.place_stop(sym),
            Need::Cancel(id) => {
                self.cancel_stop(sym, id, "the position is flat");
            }
            Need::Replace(id) => {
                if self.cancel_stop(sym, id, "replaced: the position's size changed")
                    == Settled::Cancelled
                {
                    self.place_stop(sym);
                }
            }
        }
    }

    fn protect_all(&mut self) {
        if self.stops.is_none() {
            return;
        }
        for sym in self.universe.ids() {
            self.protect(sym);
        }
    }

    /// Cancels broker stop `id` of `sym`, waiting for the answer; fills that come are booked.
    fn cancel_stop(&mut self, sym: SymbolId, id: ClientOrderId, why: &str) -> Settled {
        let (settled, fills) =
            cancel_and_wait(self.rt, &self.broker, &self.inbox, &mut self.deferred, id);
        let name = self.universe.name(sym);
        for f in fills {
            self.last_exec = Some(f.exec_id.0.to_string());
            if let Some(b) = self.stops.as_mut() {
                note_stop_fill(b, self.hooks.writer, self.universe, &f);
            }
            self.feed_inner(Event::Fill(f));
        }
        if settled == Settled::Cancelled {
            let filled = self
                .stops
                .as_ref()
                .and_then(|b| b.get(sym))
                .map_or(0, |s| s.filled);
            if let Some(b) = self.stops.as_mut() {
                b.set(sym, None);
            }
            info!(symbol = name, order_id = %id, "broker stop cancelled: {why}");
            record_stop_status(
                self.hooks.writer,
                name,
                id,
                OrderState::Cancelled,
                filled,
                why,
            );
        } else {
            warn!(symbol = name, order_id = %id, ?settled, "broker stop not cancelled ({why})");
        }
        settled
    }

    /// Places a GTC stop for `sym`'s position at the engine's stop level, persisted first.
    fn place_stop(&mut self, sym: SymbolId) {
        let Exec::Gateway { engine, .. } = &mut self.exec else {
            return;
        };
        let position = engine.ledger().qty(sym);
        if position == 0 {
            return;
        }
        // No stop configured (or not armed): nothing to mirror.
        let Some(level) = engine.armed_stop(sym).and_then(broker_stops::level) else {
            return;
        };
        let req = broker_stops::request(engine.reserve_order_id(), sym, position, level, self.t);
        let name = self.universe.name(sym);
        if let Err(e) = self.hooks.before_place(&req) {
            warn!(symbol = name, "broker stop not placed: {e}");
            return;
        }
        let sent = self.rt.block_on(async {
            tokio::time::timeout(ORDER_BOUND, self.broker.place_protective_stop(&req, name)).await
        });
        let stop = BrokerStop {
            id: req.id,
            qty: req.qty,
            filled: 0,
        };
        match sent {
            Ok(Ok(ib_id)) => {
                self.hooks.writer.send(WriteOp::BrokerId {
                    order_id: req.id,
                    broker_id: ib_id.to_string(),
                    ts: req.ts,
                });
                record_stop_status(
                    self.hooks.writer,
                    name,
                    req.id,
                    OrderState::Submitted,
                    0,
                    "protective broker stop",
                );
                self.hooks.after_place(&req);
                info!(symbol = name, order_id = %req.id, qty = req.qty, %level, "broker stop placed (GTC)");
                if let Some(b) = self.stops.as_mut() {
                    b.set(sym, Some(stop));
                }
            }
            Ok(Err(refusal)) => {
                warn!(symbol = name, order_id = %req.id, "broker stop not sent: {refusal}");
                if let Some(b) = self.stops.as_mut() {
                    b.refused(sym, position);
                }
                record_stop_status(
                    self.hooks.writer,
                    name,
                    req.id,
                    OrderState::Rejected,
                    0,
                    &refusal.to_string(),
                );
            }
            // It may have reached IB: counted as working; the next reconciliation knows.
            Err(_) => {
                warn!(symbol = name, order_id = %req.id, "broker stop: no answer in time (reconciled on reconnect)");
                if let Some(b) = self.stops.as_mut() {
                    b.set(sym, Some(stop));
                }
            }
        }
    }

    /// The next input: one deferred by a stop's cancel, else from the runtime.
    fn next_input(&mut self, timeout: Duration) -> Result<Input, RecvTimeoutError> {
        match self.deferred.pop_front() {
            Some(i) => Ok(i),
            None => self.inbox.recv_timeout(timeout),
        }
    }

    fn on_bar(&mut self, bar: Bar) {
        if self.subscribed && self.broker.session().generation() != self.filled_gen {
            // A new connection's bars wait for the gap before them to be filled.
            self.held.push(bar);
            return;
        }
        let i = bar.symbol.index();
        if self
            .seen_until
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|s| bar.ts <= s)
        {
            return;
        }
        if let Some(s) = self.seen_until.get_mut(i) {
            *s = Some(bar.ts);
        }
        let arrived = Instant::now();
        if self.feeds.on_bar(i, arrived) == Some(FeedHealth::Untradeable) {
            let symbol = self.universe.name(bar.symbol);
            info!(symbol, "bars are back: the symbol is tradeable again");
            self.hooks.writer.send(WriteOp::Connection {
                state: self.broker.session().connection_state(),
                reason: format!("feed {symbol}: bars are back, tradeable again"),
                ts: Ts::from_utc(chrono::Utc::now()),
            });
            self.publish_feed(bar.symbol, "bars are back".into());
        }
        if let Some(bus) = self.hooks.bus {
            let _ = bus.send(Arc::new(BusEvent::Bar {
                symbol: self.universe.name(bar.symbol).to_string(),
                bar,
                at: arrived,
            }));
            let _ = bus.send(Arc::new(BusEvent::Clock {
                now: bar.ts.plus_secs(60),
            }));
        }
        self.t = self.t.max(bar.ts);
        match &mut self.exec {
            Exec::Local(s) => s.on_bar(
                &bar,
                &mut GatedHooks {
                    inner: &mut self.hooks,
                    feeds: &self.feeds,
                },
            ),
            Exec::Gateway { .. } => {
                let sym = bar.symbol;
                self.feed(Event::Bar(bar));
                // Covers what an earlier refusal or a dropped exit left uncovered.
                self.protect(sym);
            }
        }
        self.write_marks(false);
    }

    fn write_marks(&mut self, force: bool) {
        if !force && self.last_marks.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last_marks = Instant::now();
        let engine = self.exec.engine();
        let marks = self
            .universe
            .ids()
            .filter_map(|id| {
                engine
                    .ledger()
                    .mark_of(id)
                    .map(|p| (self.universe.name(id).to_string(), p, self.t))
            })
            .collect();
        self.hooks.writer.send(WriteOp::Marks {
            marks,
            sim_clock: self.t,
            peak_equity: engine.peak_equity(),
        });
    }

    /// Records a transition and acts on it. `Err` = the session stopped for good.
    fn on_transition(&mut self, tr: &Transition) -> Result<(), String> {
        // The start-up resync and the supervisor's own transition can both report the same
        // state of the same connection, in either order; the second changes nothing, and
        // recording it would put a false "ready -> ready" in the connection history.
        let applied = (tr.to.clone(), tr.generation);
        if self.applied.as_ref() == Some(&applied) {
            return Ok(());
        }
        self.applied = Some(applied);
        let state = tr.to.connection_state();
        let ts = Ts::from_utc(tr.at);
        record_transition(self.hooks.writer, tr);
        if let SessionState::Fatal { reason } = &tr.to {
            self.feed(Event::Connection { state, ts });
            return Err(format!("IB session stopped: {reason}"));
        }
        if tr.to.is_connected() {
            let generation = self.broker.session().generation();
            if !self.subscribed {
                self.filled_gen = generation;
                self.backfill_and_subscribe();
            } else if generation != self.filled_gen {
                self.fill_gap(generation);
            }
        }
        self.feed(Event::Connection { state, ts });
        if matches!(tr.to, SessionState::Syncing { .. }) {
            self.reconcile();
        }
        if tr.to == SessionState::Ready {
            if let Some(b) = self.stops.as_mut() {
                b.clear_refusals();
            }
            self.protect_all();
        }
        Ok(())
    }

    /// Records and applies the current state (at start, or after lost transitions).
    fn resync(&mut self, why: &str) -> Result<(), String> {
        let now = chrono::Utc::now();
        let to = self.broker.session().state();
        self.on_transition(&Transition {
            from: to.clone(),
            to,
            reason: why.to_string(),
            at: now,
            generation: self.broker.session().generation(),
        })
    }

    /// Warms every strategy on a day of 1-minute history, then subscribes to live bars.
    fn backfill_and_subscribe(&mut self) {
        self.subscribed = true;
        self.resolve_watchlist();
        let q = HistQuery {
            bar: HistBarSize::Min1,
            duration_secs: BACKFILL_SECS,
            regular_hours_only: false,
        };
        for id in self.universe.ids() {
            if self.feeds.is_dropped(id.index()) {
                continue;
            }
            let got = self.rt.block_on(self.broker.historical_bars(id, &q));
            match got {
                Ok(mut bars) => {
                    bars.sort_by_key(|b| b.ts);
                    // The newest bar ending "now" may be a minute still in progress.
                    bars.pop();
                    for b in &bars {
                        self.exec.engine_mut().warm_up(b);
                    }
                    if let (Some(last), Some(s)) =
                        (bars.last(), self.seen_until.get_mut(id.index()))
                    {
                        *s = Some(last.ts);
                        self.t = self.t.max(last.ts);
                    }
                    info!(
                        symbol = self.universe.name(id),
                        bars = bars.len(),
                        "history loaded"
                    );
                }
                Err(e) => warn!(
                    symbol = self.universe.name(id),
                    "no history (the strategy warms up on live bars): {e}"
                ),
            }
        }
    }

    /// Resolves every symbol once (conId, primary exchange). One IB does not know, or knows
    /// several of, is dropped from the watchlist with the gateway's reason; a timeout or a
    /// drop leaves the symbol in (its requests then name it by symbol).
    fn resolve_watchlist(&mut self) {
        for id in self.universe.ids() {
            let symbol = self.universe.name(id).to_string();
            match self.rt.block_on(self.broker.resolve(&symbol)) {
                Ok(c) => info!(
                    symbol,
                    con_id = c.con_id,
                    primary = %c.primary_exchange,
                    "contract resolved"
                ),
                Err(
                    e @ (BrokerError::UnknownContract { .. }
                    | BrokerError::AmbiguousContract { .. }),
                ) => {
                    error!(symbol, "dropped from the watchlist: {e}");
                    self.feeds.finalize(id.index(), FeedHealth::Dropped);
                    self.publish_feed(id, e.to_string());
                }
                Err(e) => warn!(
                    symbol,
                    "contract not resolved (kept, retried by symbol): {e}"
                ),
            }
        }
    }

    /// After a reconnect: the minutes missed since each symbol's last bar, from history
    /// (paced, bounded), in order, then the live bars that arrived meanwhile. `on_bar` skips
    /// anything at or before a symbol's last bar, so nothing is seen twice.
    fn fill_gap(&mut self, generation: u64) {
        self.filled_gen = generation;
        let now = match self.rt.block_on(self.broker.server_time()) {
            Ok(t) => t,
            Err(e) => {
                warn!("gap after reconnect not filled (no server time): {e}");
                Ts::from_utc(chrono::Utc::now()).secs()
            }
        };
        let mut filled = 0usize;
        for id in self.universe.ids() {
            if self.feeds.is_dropped(id.index()) {
                continue;
            }
            let Some(last) = self.seen_until.get(id.index()).copied().flatten() else {
                continue;
            };
            // The bar after `last` is complete only once two minutes have passed since it.
            let gap = now - last.secs();
            if gap < 120 {
                continue;
            }
            let duration = ((gap + 59) / 60 * 60 + 60).min(i64::from(BACKFILL_SECS));
            let q = HistQuery {
                bar: HistBarSize::Min1,
                duration_secs: i32::try_from(duration).unwrap_or(BACKFILL_SECS),
                regular_hours_only: false,
            };
            match self.rt.block_on(self.broker.historical_bars(id, &q)) {
                Ok(mut bars) => {
                    bars.sort_by_key(|b| b.ts);
                    bars.pop(); // the minute in progress comes live
                    for b in bars.into_iter().filter(|b| b.ts > last) {
                        filled += 1;
                        self.on_bar(b);
                    }
                }
                Err(e) => warn!(
                    symbol = self.universe.name(id),
                    "gap after reconnect not filled: {e}"
                ),
            }
        }
        let mut held = std::mem::take(&mut self.held);
        held.sort_by_key(|b| b.ts);
        let held_n = held.len();
        for b in held {
            self.on_bar(b);
        }
        info!(
            bars = filled,
            held = held_n,
            "gap since the last bar filled from history"
        );
    }

    /// Persists symbol `id`'s feed status (shown by `status` and the dashboard).
    fn publish_feed(&self, id: robo_core::types::SymbolId, reason: String) {
        self.hooks.writer.send(WriteOp::SymbolFeed {
            symbol: self.universe.name(id).to_string(),
            state: self.feeds.state(id.index()),
            delayed: self.broker.is_delayed(id),
            reason,
            ts: Ts::from_utc(chrono::Utc::now()),
        });
    }

    fn on_feed_event(&mut self, ev: FeedEvent) {
        match ev {
            FeedEvent::Delayed {
                symbol,
                code,
                message,
            } => {
                warn!(
                    symbol = self.universe.name(symbol),
                    code, "no real-time data permission: falling back to delayed data ({message})"
                );
                self.publish_feed(
                    symbol,
                    format!("delayed data: no real-time permission (error {code})"),
                );
            }
            FeedEvent::Refused {
                symbol,
                code,
                message,
            } => {
                let i = symbol.index();
                if matches!(self.feeds.health.get(i), Some(FeedHealth::Refused)) {
                    return; // said once
                }
                error!(
                    symbol = self.universe.name(symbol),
                    code, "no market data permission: untradeable ({message})"
                );
                self.feeds.finalize(i, FeedHealth::Refused);
                self.publish_feed(
                    symbol,
                    format!("no market data permission (error {code}): {message}"),
                );
            }
        }
    }

    /// IB's account against the ledger: within tolerance, its net liquidation value drives
    /// sizing and the start-of-day equity; beyond it the difference is logged (once per change)
    /// and the ledger's figures stay in use. Either way the reading is on the status.
    fn on_account(&mut self, a: AccountSummary) {
        let Some(net) = a.net_liquidation else {
            warn!("account summary without NetLiquidation: ignored");
            return;
        };
        let ledger_equity = self.exec.engine().ledger().equity();
        let row = crate::store::BrokerAccountRow {
            account: a.account.clone(),
            net_liquidation: net,
            total_cash: a.total_cash,
            buying_power: a.buying_power,
            ledger_equity,
            tolerance: (ledger_equity.abs() * self.account_tolerance_pct).round_dp(2),
            ts: Ts::from_utc(chrono::Utc::now()),
        };
        let agrees = row.within_tolerance();
        if agrees {
            self.exec
                .engine_mut()
                .set_account(robo_core::account::AccountSnapshot {
                    net_liquidation: net,
                    total_cash: a.total_cash,
                    buying_power: a.buying_power,
                    ts: row.ts,
                });
        }
        if self.account_agrees != Some(agrees) {
            if agrees {
                info!(account = %a.account, net_liquidation = %net, %ledger_equity,
                    "IB account agrees with the ledger: its net liquidation value drives sizing");
            } else {
                error!(account = %a.account, net_liquidation = %net, %ledger_equity,
                    difference = %row.difference(), tolerance = %row.tolerance,
                    "IB account differs from the ledger beyond the tolerance: sizing stays on the ledger");
            }
            self.account_agrees = Some(agrees);
        }
        self.hooks.writer.send(WriteOp::BrokerAccount(row));
    }

    /// Applies a reconciliation: fills once each by exec id, engine orders no longer open at the
    /// broker settled, positions compared. Then the session may become Ready.
    fn reconcile(&mut self) {
        if !matches!(self.exec, Exec::Gateway { .. }) {
            return;
        }
        let last = self.last_exec.clone();
        let got = self.rt.block_on(async {
            tokio::time::timeout(RECONCILE_BOUND, self.broker.reconcile(last.as_deref())).await
        });
        let rec = match got {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                warn!("reconciliation failed (retrying): {e}");
                self.reconcile_retry = Some(Instant::now() + RECONCILE_RETRY);
                return;
            }
            Err(_) => {
                warn!(
                    "reconciliation took longer than {} s (retrying)",
                    RECONCILE_BOUND.as_secs()
                );
                self.reconcile_retry = Some(Instant::now() + RECONCILE_RETRY);
                return;
            }
        };
        self.reconcile_retry = None;
        self.apply_reconciliation(rec);
    }

    fn apply_reconciliation(&mut self, rec: Reconciliation) {
        let n_fills = rec.fills.len();
        for f in rec.fills {
            self.last_exec = Some(f.exec_id.0.to_string());
            if let Some(b) = self.stops.as_mut() {
                note_stop_fill(b, self.hooks.writer, self.universe, &f);
            }
            self.feed(Event::Fill(f));
        }
        self.adopt_broker_stops(&rec.open_orders);
        let open_at_broker: HashSet<ClientOrderId> = rec
            .open_orders
            .iter()
            .filter_map(|o| o.client_order_id)
            .collect();
        let gone = self
            .exec
            .engine()
            .orders()
            .open_ids_where(|o| !open_at_broker.contains(&o.req.id));
        for id in gone {
            self.feed(Event::OrderUpdate(OrderUpdate {
                order_id: id,
                status: BrokerStatus::Cancelled {
                    reason: "not open at the broker after reconnecting".into(),
                },
                ts: self.t,
            }));
        }
        let ledger = self.exec.engine().ledger();
        for id in self.universe.ids() {
            let name = self.universe.name(id);
            let broker_qty: i64 = rec
                .positions
                .iter()
                .filter(|p| p.symbol.eq_ignore_ascii_case(name))
                .map(|p| p.qty)
                .sum();
            if broker_qty != ledger.qty(id) {
                warn!(
                    symbol = name,
                    broker = broker_qty,
                    ledger = ledger.qty(id),
                    "position differs from the broker's after reconciliation"
                );
            }
        }
        info!(
            fills = n_fills,
            open_orders = open_at_broker.len(),
            "reconciled"
        );
    }

    /// After the fills of a reconciliation: the broker stops are what IB holds. One protective
    /// order per symbol is kept (ours first), extra ones are cancelled, ours that IB no longer
    /// holds are settled. Placing what is missing waits for Ready ([`Self::protect_all`]).
    fn adopt_broker_stops(&mut self, open: &[crate::broker::OpenOrder]) {
        let Some(book) = self.stops.as_mut() else {
            return;
        };
        let mut extra = Vec::new();
        let mut kept: HashSet<ClientOrderId> = HashSet::new();
        for sym in self.universe.ids() {
            let name = self.universe.name(sym);
            let at_ib: Vec<(ClientOrderId, i64)> = open
                .iter()
                .filter(|o| o.protective && o.symbol.eq_ignore_ascii_case(name))
                .filter_map(|o| o.client_order_id.map(|id| (id, o.qty)))
                .collect();
            let ours = book.get(sym);
            let keep = at_ib
                .iter()
                .find(|(id, _)| ours.is_some_and(|s| s.id == *id))
                .or_else(|| at_ib.first())
                .copied();
            if let Some(s) = ours.filter(|s| keep.is_none_or(|(id, _)| id != s.id)) {
                record_stop_status(
                    self.hooks.writer,
                    name,
                    s.id,
                    OrderState::Cancelled,
                    s.filled,
                    "not open at the broker after reconnecting",
                );
            }
            book.set(
                sym,
                keep.map(|(id, qty)| BrokerStop {
                    id,
                    qty,
                    filled: ours.filter(|s| s.id == id).map_or(0, |s| s.filled),
                }),
            );
            kept.extend(keep.map(|(id, _)| id));
            extra.extend(
                at_ib
                    .iter()
                    .filter(|(id, _)| keep.is_none_or(|(k, _)| k != *id))
                    .map(|(id, _)| *id),
            );
        }
        // Rows a previous run left open: adopted above, or settled now.
        for (id, name, filled) in std::mem::take(&mut self.stop_rows) {
            if !kept.contains(&id) && !extra.contains(&id) {
                record_stop_status(
                    self.hooks.writer,
                    &name,
                    id,
                    OrderState::Cancelled,
                    filled,
                    "not open at the broker at restart",
                );
            }
        }
        for id in extra {
            warn!(order_id = %id, "a second broker stop for one symbol: cancelled");
            let _ = self.rt.block_on(async {
                tokio::time::timeout(ORDER_BOUND, self.broker.cancel_order(id)).await
            });
        }
    }

    fn on_input(&mut self, input: Input) -> Result<(), String> {
        match input {
            Input::Bar(b) => self.on_bar(b),
            Input::Broker(BrokerEvent::Order(u)) => {
                let stop_sym = self.stops.as_ref().and_then(|b| b.symbol_of(u.order_id));
                match (stop_sym, &u.status) {
                    (
                        Some(sym),
                        BrokerStatus::Cancelled { reason } | BrokerStatus::Rejected { reason },
                    ) => {
                        let name = self.universe.name(sym);
                        let filled = self
                            .stops
                            .as_ref()
                            .and_then(|b| b.get(sym))
                            .map_or(0, |s| s.filled);
                        warn!(symbol = name, order_id = %u.order_id, "broker stop ended at IB: {reason}");
                        if let Some(b) = self.stops.as_mut() {
                            b.set(sym, None);
                        }
                        let rejected = matches!(u.status, BrokerStatus::Rejected { .. });
                        if rejected {
                            let position = self.exec.engine().ledger().qty(sym);
                            if let Some(b) = self.stops.as_mut() {
                                b.refused(sym, position);
                            }
                        }
                        let state = if rejected {
                            OrderState::Rejected
                        } else {
                            OrderState::Cancelled
                        };
                        record_stop_status(
                            self.hooks.writer,
                            name,
                            u.order_id,
                            state,
                            filled,
                            reason,
                        );
                    }
                    (Some(_), _) => {}
                    (None, _) => self.feed(Event::OrderUpdate(u)),
                }
            }
            Input::Broker(BrokerEvent::Fill(f)) => {
                self.last_exec = Some(f.exec_id.0.to_string());
                if let Some(b) = self.stops.as_mut() {
                    note_stop_fill(b, self.hooks.writer, self.universe, &f);
                }
                self.feed(Event::Fill(f));
            }
            Input::Broker(BrokerEvent::Feed(ev)) => self.on_feed_event(ev),
            Input::Transition(t) => self.on_transition(&t)?,
            Input::Account(a) => self.on_account(a),
            Input::Resync(why) => self.resync(why)?,
        }
        Ok(())
    }

    /// Stale feeds: re-request once, then mark the symbol untradeable (recorded).
    fn check_feeds(&mut self) {
        if !self.subscribed {
            // The clocks start when the bars are requested.
            self.feeds.check(Instant::now(), false);
            return;
        }
        let now = chrono::Utc::now();
        let regular = self
            .calendar
            .as_ref()
            .is_none_or(|c| c.is_open(Ts::from_utc(now)));
        // Only a live connection can deliver bars; a drop is the session's business.
        let live = self.broker.session().state().is_connected();
        let stale_s = self.feeds.stale_after.unwrap_or_default().as_secs_f64();
        for action in self.feeds.check(Instant::now(), regular && live) {
            match action {
                FeedAction::Resubscribe(i) => {
                    let Some(id) = self.universe.ids().nth(i) else {
                        continue;
                    };
                    let symbol = self.universe.name(id);
                    warn!(symbol, "no bar for {stale_s:.1} s: resubscribing");
                    self.broker.resubscribe_bars(id);
                }
                FeedAction::MarkUntradeable(i) => {
                    let Some(id) = self.universe.ids().nth(i) else {
                        continue;
                    };
                    let symbol = self.universe.name(id);
                    error!(
                        symbol,
                        "still no minute bar after resubscribing: untradeable (no new entries)"
                    );
                    let reason =
                        format!("stale feed: no bars for {stale_s:.1} s after a resubscribe");
                    self.hooks.writer.send(WriteOp::Connection {
                        state: self.broker.session().connection_state(),
                        reason: format!("feed {symbol}: {reason}, untradeable"),
                        ts: Ts::from_utc(now),
                    });
                    self.publish_feed(id, reason);
                }
            }
        }
    }

    /// At the regular close, the in-process broker's DAY orders expire (as IB's would).
    fn check_close(&mut self) {
        let Some(close) = self.close.due(Ts::from_utc(chrono::Utc::now())) else {
            return;
        };
        if let Exec::Local(s) = &mut self.exec {
            info!(close = %close, "regular close: DAY orders expire");
            s.on_session_close(
                close,
                &mut GatedHooks {
                    inner: &mut self.hooks,
                    feeds: &self.feeds,
                },
            );
        }
    }

    fn on_control(&mut self, c: Control) -> Option<String> {
        let ev = match c {
            Control::Shutdown { reason } => return Some(reason),
            Control::SetState(state) => Event::Operator {
                command: OperatorCommand::SetTradingState { state },
                ts: self.t,
            },
            Control::Operator(command) => Event::Operator {
                command,
                ts: self.t,
            },
        };
        info!(event = ?ev, "operator control applied");
        self.feed(ev);
        None
    }
}

/// Reads the account summary once the session is Ready (retrying every second), then every
/// [`ACCOUNT_EVERY`], again after each reconnect. Ends when the trading thread is gone.
async fn account_poller(broker: IbkrBroker, tx: mpsc::Sender<Input>) {
    // (connection generation, when) of the last successful read.
    let mut last: Option<(u64, Instant)> = None;
    loop {
        let session = broker.session();
        let generation = session.generation();
        let due = last.is_none_or(|(g, at)| g != generation || at.elapsed() >= ACCOUNT_EVERY);
        if due && session.state() == SessionState::Ready {
            match broker.account_summary().await {
                Ok(a) => {
                    if tx.send(Input::Account(a)).is_err() {
                        return; // the trading thread is gone
                    }
                    last = Some((generation, Instant::now()));
                }
                Err(e) => warn!("account summary not read (retrying): {e}"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One row of `connection_events`.
fn record_transition(writer: &StoreWriter, t: &Transition) {
    writer.send(WriteOp::Connection {
        state: t.to.connection_state(),
        reason: format!("{} -> {}: {}", t.from.name(), t.to.name(), t.reason),
        ts: Ts::from_utc(t.at),
    });
}

/// Books a fill of a broker stop in the stop book, and its order row once it is done.
fn note_stop_fill(book: &mut StopBook, writer: &StoreWriter, universe: &Universe, f: &Fill) {
    let Some((sym, done)) = book.on_fill(f.order_id, f.qty) else {
        return;
    };
    let name = universe.name(sym);
    info!(symbol = name, order_id = %f.order_id, qty = f.qty, price = %f.price, "broker stop executed at IB");
    if done {
        record_stop_status(
            writer,
            name,
            f.order_id,
            OrderState::Filled,
            f.qty,
            "protective broker stop executed",
        );
    }
}

/// A broker stop's order row (the engine does not track these orders).
fn record_stop_status(
    writer: &StoreWriter,
    symbol: &str,
    id: ClientOrderId,
    state: OrderState,
    filled_qty: i64,
    reason: &str,
) {
    writer.send(WriteOp::Record {
        rec: Record::OrderStatus {
            order_id: id,
            state,
            filled_qty,
            reason: Some(reason.to_string()),
            ts: Ts::from_utc(chrono::Utc::now()),
        },
        symbol: symbol.to_string(),
    });
}

fn rejected(req: &OrderRequest, reason: String) -> Event {
    Event::OrderUpdate(OrderUpdate {
        order_id: req.id,
        status: BrokerStatus::Rejected { reason },
        ts: req.ts,
    })
}

/// The trading thread for `--broker ibkr`: connect, backfill, trade until told to stop.
/// `controls` carries shutdown and the kill switch, as in the sim; `rt` runs the session.
pub fn trade(
    parts: TraderParts,
    controls: Receiver<Control>,
    rt: RtHandle,
) -> anyhow::Result<RunOutcome> {
    let TraderParts {
        cfg,
        store,
        writer,
        bus,
    } = parts;
    let persisted = store.load_state().context("loading the database")?;
    let universe = cfg.universe().context("symbols")?;
    let gateway_orders = cfg.ib.orders == IbOrders::Paper;

    if !gateway_orders {
        // The in-process broker of a previous run did not survive it.
        for o in &persisted.open_orders {
            warn!(order_id = %o.id, "settling an order left open by the previous run: cancelled");
            writer.send(WriteOp::Record {
                rec: Record::OrderStatus {
                    order_id: o.id,
                    state: OrderState::Cancelled,
                    filled_qty: o.filled,
                    reason: Some(
                        "open at restart; the in-process paper broker did not survive".into(),
                    ),
                    ts: o.updated,
                },
                symbol: o.symbol.clone(),
            });
        }
    }
    // Broker stops are not the engine's orders: they stay out of it, and are adopted or
    // settled at the first reconciliation.
    let broker_stops_on = gateway_orders && cfg.ib.broker_stops;
    let mut persisted = persisted;
    let mut stop_rows = Vec::new();
    if gateway_orders {
        persisted.open_orders.retain(|o| {
            if broker_stops::is_broker_stop(o.kind, o.tif) {
                stop_rows.push((o.id, o.symbol.clone(), o.filled));
                false
            } else {
                true
            }
        });
    }
    if cfg.ib.broker_stops && !gateway_orders {
        warn!("[ib] broker_stops needs --ib-orders paper: off");
    }
    if broker_stops_on && cfg.stops.stop_loss_pct.is_none() && cfg.stops.trailing_pct.is_none() {
        warn!("[ib] broker_stops: no stop_loss_pct or trailing_pct configured, nothing to place");
    }
    let engine = crate::runner::build_engine(&cfg, &universe, &persisted, gateway_orders);
    let exec = if gateway_orders {
        Exec::Gateway {
            engine,
            queue: VecDeque::new(),
            cmds: Vec::new(),
        }
    } else {
        Exec::Local(PaperSession::new(
            engine,
            PaperBroker::new(cfg.paper, universe.len()),
        ))
    };

    let (in_tx, in_rx) = mpsc::channel::<Input>();
    let sc = session_config(&cfg);
    info!(
        addr = %sc.addr(), client_id = cfg.ib.client_id,
        orders = ?cfg.ib.orders, "connecting to IB Gateway"
    );
    let broker = rt.block_on(async {
        let session = Session::start(sc);
        let mut transitions = session.transitions();
        // Whatever happened before the subscription is covered by re-reading the state.
        let _ = in_tx.send(Input::Resync("session started"));
        if let Some(bus) = bus.clone() {
            // Heartbeats go straight to the bus (metrics only); the trading thread never sees them.
            let mut beats = session.heartbeats();
            tokio::spawn(async move {
                while beats.changed().await.is_ok() {
                    let beat = *beats.borrow_and_update();
                    if let Some(h) = beat {
                        let _ = bus.send(Arc::new(BusEvent::Heartbeat {
                            latency: h.latency,
                            generation: h.generation,
                        }));
                    }
                }
            });
        }
        let (broker, mut events) = IbkrBroker::new(session, universe.clone());
        broker.set_delayed_fallback(cfg.ib.market_data_fallback == MarketDataFallback::Delayed);
        let tx = in_tx.clone();
        tokio::spawn(async move {
            loop {
                match transitions.recv().await {
                    Ok(t) => {
                        if tx.send(Input::Transition(t)).is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if tx
                            .send(Input::Resync("state re-read: transitions were lost"))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        if gateway_orders {
            tokio::spawn(account_poller(broker.clone(), in_tx.clone()));
        }
        // Feed events come in both modes; order events only when orders go to the gateway.
        let tx = in_tx.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if !gateway_orders && !matches!(e, BrokerEvent::Feed(_)) {
                    continue;
                }
                if tx.send(Input::Broker(e)).is_err() {
                    return;
                }
            }
        });
        broker
    });

    let mut tr = Trader {
        exec,
        hooks: ShellHooks::new(&writer, bus.as_ref(), &universe),
        broker,
        rt: &rt,
        universe: &universe,
        t: Ts::from_utc(chrono::Utc::now()),
        seen_until: vec![None; universe.len()],
        last_exec: persisted.fills.last().map(|f| f.exec_id.0.to_string()),
        last_marks: Instant::now(),
        reconcile_retry: None,
        subscribed: false,
        applied: None,
        filled_gen: 0,
        held: Vec::new(),
        feeds: FeedWatch::new(
            universe.len(),
            (cfg.ib.stale_feed_intervals > 0).then(|| {
                Duration::from_millis(cfg.ib.stale_feed_interval_ms) * cfg.ib.stale_feed_intervals
            }),
            Instant::now(),
        ),
        calendar: cfg
            .ib
            .stale_feed_regular_hours_only
            .then(robo_core::calendar::Calendar::nyse),
        close: CloseClock::new(
            robo_core::calendar::Calendar::nyse(),
            Ts::from_utc(chrono::Utc::now()),
        ),
        account_tolerance_pct: cfg.ib.account_tolerance_pct,
        account_agrees: None,
        stops: broker_stops_on.then(|| StopBook::new(universe.len())),
        stop_rows,
        inbox: in_rx,
        deferred: VecDeque::new(),
    };
    writer.send(WriteOp::SymbolFeedsReset {
        symbols: universe.names().to_vec(),
        ts: tr.t,
    });
    // Nothing leaves the engine before the session says Ready.
    tr.feed(Event::Connection {
        state: ConnectionState::Disconnected,
        ts: tr.t,
    });

    let mut bars_started = false;
    let outcome: Result<String, String> = loop {
        match controls.try_recv() {
            Ok(c) => {
                if let Some(reason) = tr.on_control(c) {
                    break Ok(reason);
                }
                continue;
            }
            Err(TryRecvError::Disconnected) => break Ok("control channel closed".into()),
            Err(TryRecvError::Empty) => {}
        }
        if tr.subscribed && !bars_started {
            bars_started = true;
            // The subscription spawns its tasks on the runtime.
            let _in_rt = rt.enter();
            let wanted = universe
                .ids()
                .filter(|id| !tr.feeds.is_dropped(id.index()))
                .collect::<Vec<_>>();
            let mut bars = tr.broker.subscribe_minute_bars(wanted);
            let tx = in_tx.clone();
            rt.spawn(async move {
                while let Some(b) = bars.recv().await {
                    if tx.send(Input::Bar(b)).is_err() {
                        return;
                    }
                }
            });
        }
        if tr.reconcile_retry.is_some_and(|at| Instant::now() >= at) {
            tr.reconcile_retry = None;
            if matches!(tr.broker.session().state(), SessionState::Syncing { .. }) {
                tr.reconcile();
            }
        }
        tr.check_feeds();
        tr.check_close();
        match tr.next_input(Duration::from_millis(25)) {
            Ok(input) => {
                if let Err(e) = tr.on_input(input) {
                    break Err(e);
                }
            }
            Err(RecvTimeoutError::Timeout) => tr.write_marks(false),
            Err(RecvTimeoutError::Disconnected) => break Ok("the session tasks ended".into()),
        }
    };

    shutdown(&mut tr);
    let session = tr.broker.session().clone();
    let _ = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(2), session.shutdown()).await });
    // The supervisor's last transitions (down to "shut down") belong in the history too. They
    // are forwarded by another task, so wait briefly for the final one; if it is late, record
    // the end of the session ourselves rather than leave the history open.
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut closed = false;
    while !closed {
        let left = deadline.saturating_duration_since(Instant::now());
        match tr.next_input(left) {
            Ok(Input::Transition(t)) => {
                closed = t.reason.contains("shut down");
                record_transition(&writer, &t);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if !closed {
        writer.send(WriteOp::Connection {
            state: robo_core::types::ConnectionState::Disconnected,
            reason: "shut down".into(),
            ts: Ts::from_utc(chrono::Utc::now()),
        });
    }
    info!(
        orders = tr.hooks.orders,
        fills = tr.hooks.fills,
        "trading loop stopped"
    );
    match outcome {
        Ok(reason) => Ok(RunOutcome {
            exit_reason: reason,
        }),
        Err(e) => {
            error!("{e}");
            Err(anyhow::anyhow!(e))
        }
    }
}

/// No new orders; cancel working entries (orders of the in-process broker cannot outlive us,
/// so all of those); keep protective exits at the broker; take the gateway's last answers.
fn shutdown(tr: &mut Trader<'_>) {
    let t = tr.t;
    tr.feed(Event::Connection {
        state: ConnectionState::Disconnected,
        ts: t,
    });
    match &tr.exec {
        Exec::Local(_) => tr.feed(Event::Operator {
            command: OperatorCommand::CancelAll,
            ts: t,
        }),
        Exec::Gateway { .. } => {
            let entries = tr
                .exec
                .engine()
                .orders()
                .open_ids_where(|o| o.req.purpose.is_entry());
            for id in entries {
                let r = tr.rt.block_on(async {
                    tokio::time::timeout(ORDER_BOUND, tr.broker.cancel_order(id)).await
                });
                if !matches!(r, Ok(Ok(()))) {
                    warn!(order_id = %id, "shutdown: entry order could not be cancelled");
                }
            }
            // Market orders fill at once and cancels are confirmed quickly: wait for those
            // answers so the ledger ends equal to the broker's, bounded.
            let awaited = |o: &robo_core::orders::ManagedOrder| {
                o.req.purpose.is_entry() || o.req.kind == robo_core::types::OrderKind::Market
            };
            let deadline = Instant::now() + DRAIN_BOUND;
            while tr.exec.engine().orders().open_orders().any(awaited) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match tr.next_input(left) {
                    Ok(Input::Broker(BrokerEvent::Order(u))) => tr.feed(Event::OrderUpdate(u)),
                    Ok(Input::Broker(BrokerEvent::Fill(f))) => {
                        if let Some(b) = tr.stops.as_mut() {
                            note_stop_fill(b, tr.hooks.writer, tr.universe, &f);
                        }
                        tr.feed(Event::Fill(f))
                    }
                    Ok(Input::Transition(t)) => record_transition(tr.hooks.writer, &t),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let still: Vec<String> = tr
                .exec
                .engine()
                .orders()
                .open_orders()
                .map(|o| o.req.id.to_string())
                .collect();
            if !still.is_empty() {
                info!(orders = %still.join(","), "left working at the broker");
            }
        }
    }
    tr.write_marks(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(120);

    #[test]
    fn day_orders_expire_once_per_regular_close() {
        use chrono::NaiveDate;
        use robo_core::calendar::{ny_local_to_ts, Calendar};
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        // Wed 2026-11-25 10:00 NY: the close is 16:00 that day.
        let mut c = CloseClock::new(Calendar::nyse(), ny_local_to_ts(d(11, 25), 10, 0));
        assert_eq!(c.due(ny_local_to_ts(d(11, 25), 15, 59)), None);
        assert_eq!(
            c.due(ny_local_to_ts(d(11, 25), 16, 0)),
            Some(ny_local_to_ts(d(11, 25), 16, 0))
        );
        assert_eq!(c.due(ny_local_to_ts(d(11, 25), 16, 1)), None);
        // Thanksgiving (26th) is closed; Friday the 27th closes early at 13:00.
        assert_eq!(c.due(ny_local_to_ts(d(11, 27), 12, 59)), None);
        // Asleep over the whole weekend: that close is reported once, then Monday's is next.
        assert_eq!(
            c.due(ny_local_to_ts(d(11, 29), 12, 0)),
            Some(ny_local_to_ts(d(11, 27), 13, 0))
        );
        assert_eq!(c.due(ny_local_to_ts(d(11, 30), 15, 59)), None);
        assert_eq!(
            c.due(ny_local_to_ts(d(11, 30), 16, 0)),
            Some(ny_local_to_ts(d(11, 30), 16, 0))
        );
    }

    #[test]
    fn a_silent_symbol_is_resubscribed_then_untradeable_then_recovers() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = FeedWatch::new(2, Some(STALE), t0);
        // Symbol 1 keeps getting bars; symbol 0 never does.
        w.on_bar(1, at(100));
        assert_eq!(w.check(at(119), true), vec![]);
        assert_eq!(w.check(at(120), true), vec![FeedAction::Resubscribe(0)]);
        // The resubscribe restarts symbol 0's clock: nothing until 120 + 120.
        w.on_bar(1, at(200));
        assert_eq!(w.check(at(239), true), vec![]);
        assert!(!w.untradeable(0));
        assert_eq!(w.check(at(240), true), vec![FeedAction::MarkUntradeable(0)]);
        assert!(w.untradeable(0) && !w.untradeable(1));
        // Said once, not on every check; symbol 1 last saw a bar at 200, stale only at 320.
        assert_eq!(w.check(at(300), true), vec![]);
        assert_eq!(w.on_bar(0, at(301)), Some(FeedHealth::Untradeable));
        assert!(!w.untradeable(0));
        assert_eq!(w.check(at(320), true), vec![FeedAction::Resubscribe(1)]);
        assert_eq!(w.on_bar(7, at(320)), None);
    }

    #[test]
    fn outside_regular_hours_nothing_is_stale_and_the_open_gets_a_grace_period() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = FeedWatch::new(1, Some(STALE), t0);
        assert_eq!(w.check(at(10_000), false), vec![]);
        // The open at 10 000 s: a full 120 s before the first resubscribe.
        assert_eq!(w.check(at(10_119), true), vec![]);
        assert_eq!(w.check(at(10_120), true), vec![FeedAction::Resubscribe(0)]);
    }
}
