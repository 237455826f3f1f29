//! The `run` loop: the engine and the paper broker on the simulated market, paced by a clock
//! that follows the NYSE calendar, persisted through the store.
//!
//! The loop runs on one dedicated thread that owns the engine. It sleeps on its control channel
//! (`recv_timeout`), so a shutdown or a kill-switch change wakes it at once, and off hours it
//! sleeps until the calendar's next open instead of polling.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::Context;
use robo_core::calendar::{self, Calendar};
use robo_core::engine::{Engine, EngineConfig, RestoreState};
use robo_core::events::{Command, Event, OperatorCommand, Record};
use robo_core::orders::OrderState;
use robo_core::paper::PaperBroker;
use robo_core::session::{PaperSession, SessionHooks};
use robo_core::types::{Bar, OrderRequest, TradingState, Ts, Universe};
use tracing::{info, warn};

use crate::config::{ClockKind, Config, SimSpeed};
use crate::sim::market::SimMarket;
use crate::store::{failpoint, PersistedState, Store, StoreWriter, WriteOp};

/// Messages to the trading thread.
#[derive(Debug, Clone)]
pub enum Control {
    /// Stop new orders, drain, flush, exit.
    Shutdown {
        reason: String,
    },
    /// The persisted trading state changed (kill-switch CLI or dashboard).
    SetState(TradingState),
    Operator(OperatorCommand),
}

/// What the trading thread tells the dashboard, the WebSocket and the metrics. It goes out on a
/// bounded broadcast channel: a slow receiver lags and is dropped by its owner; the trading
/// thread never waits for one.
// Events travel inside an `Arc`, so the large decision record is never copied per receiver.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum BusEvent {
    /// A new bar; `at` is when the trading thread had it, for bar-to-client latency.
    Bar {
        symbol: String,
        bar: Bar,
        at: Instant,
    },
    /// A record the engine persisted: decision, fill, order status, risk event, state change,
    /// equity snapshot.
    Record { symbol: String, record: Record },
    /// A position or signal update.
    Update {
        symbol: String,
        update: robo_core::events::Update,
    },
    /// Sim (or real) time advanced to this instant.
    Clock { now: Ts },
    /// The IB session answered a heartbeat (`server_time`) after `latency`, on its
    /// `generation`-th connection (a higher generation than before = a reconnect).
    Heartbeat {
        latency: std::time::Duration,
        generation: u64,
    },
}

/// The sending side of the bus.
pub type Bus = tokio::sync::broadcast::Sender<std::sync::Arc<BusEvent>>;

/// How the loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub exit_reason: String,
}

/// Maps sim time to wall time. `None` speed = as fast as possible.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    speed: Option<f64>,
    wall0: Instant,
    sim0: Ts,
}

impl Pacer {
    pub fn new(speed: SimSpeed, sim0: Ts) -> Self {
        let speed = match speed {
            SimSpeed::Max => None,
            SimSpeed::Factor(f) => Some(f.max(1e-6)),
        };
        Pacer {
            speed,
            wall0: Instant::now(),
            sim0,
        }
    }
    /// The wall instant at which sim time `t` is reached.
    pub fn deadline(&self, t: Ts) -> Option<Instant> {
        let speed = self.speed?;
        let sim_secs = (t.0.saturating_sub(self.sim0.0)) as f64 / 1e9;
        let wall = (sim_secs / speed).clamp(0.0, 1e9);
        Some(self.wall0 + Duration::from_secs_f64(wall))
    }
}

/// Why a wait ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interrupt {
    /// Shut down, for this reason.
    Stop(String),
    /// Controls arrived that the engine must apply now (the kill switch within a second).
    Apply,
}

/// Something that can wait until a sim instant, handling controls meanwhile. The production
/// waiter sleeps on the control channel; tests use a counting fake.
pub trait Waiter {
    /// Sim time starts at `t` now (the pacing origin).
    fn anchor(&mut self, _t: Ts) {}
    /// Returns when sim time `t` is reached, after applying any controls via `on_control`.
    fn wait_until(
        &mut self,
        t: Ts,
        on_control: &mut dyn FnMut(Control) -> Option<Interrupt>,
    ) -> Result<(), Interrupt>;
    /// Gets past a closed market to `t`. The default waits for it like any other instant (the
    /// real clock sleeps until the open); a simulated clock may compress the gap.
    fn skip_closed(
        &mut self,
        t: Ts,
        on_control: &mut dyn FnMut(Control) -> Option<Interrupt>,
    ) -> Result<(), Interrupt> {
        self.wait_until(t, on_control)
    }
}

/// Sleeps on the control channel until the paced deadline.
pub struct ChannelWaiter {
    pub pacer: Pacer,
    pub rx: Receiver<Control>,
    /// Longest single sleep; a long wait is split so the log shows the loop is alive.
    pub max_sleep: Duration,
    /// With the simulated clock, a closed market (night, weekend, holiday) passes in at most
    /// this much wall time, so a new user sees trading resume; `None` (the real clock) sleeps
    /// until the open.
    pub closed_pause: Option<Duration>,
}

impl Waiter for ChannelWaiter {
    fn anchor(&mut self, t: Ts) {
        self.pacer.sim0 = t;
        self.pacer.wall0 = Instant::now();
    }

    fn skip_closed(
        &mut self,
        t: Ts,
        on_control: &mut dyn FnMut(Control) -> Option<Interrupt>,
    ) -> Result<(), Interrupt> {
        let Some(pause) = self.closed_pause else {
            return self.wait_until(t, on_control);
        };
        let (Some(speed), Some(deadline)) = (self.pacer.speed, self.pacer.deadline(t)) else {
            return self.wait_until(t, on_control);
        };
        let cap = Instant::now() + pause;
        if deadline > cap {
            // Sleep the short pause (still answering controls), then jump: sim time `t` is now.
            let sim_at_cap =
                Ts(t.0.saturating_sub(((deadline - cap).as_secs_f64() * speed * 1e9) as i64));
            self.wait_until(sim_at_cap, on_control)?;
            self.anchor(t);
            return Ok(());
        }
        self.wait_until(t, on_control)
    }

    fn wait_until(
        &mut self,
        t: Ts,
        on_control: &mut dyn FnMut(Control) -> Option<Interrupt>,
    ) -> Result<(), Interrupt> {
        loop {
            let Some(deadline) = self.pacer.deadline(t) else {
                // Max speed: never sleep, but still take controls.
                while let Ok(c) = self.rx.try_recv() {
                    if let Some(i) = on_control(c) {
                        return Err(i);
                    }
                }
                return Ok(());
            };
            let now = Instant::now();
            if now >= deadline {
                while let Ok(c) = self.rx.try_recv() {
                    if let Some(i) = on_control(c) {
                        return Err(i);
                    }
                }
                return Ok(());
            }
            match self.rx.recv_timeout((deadline - now).min(self.max_sleep)) {
                Ok(c) => {
                    if let Some(i) = on_control(c) {
                        return Err(i);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Interrupt::Stop("control channel closed".into()))
                }
            }
        }
    }
}

/// One step of the market clock: trade a session, or sleep until the next open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Session { open: Ts, close: Ts },
    Closed { until: Ts },
}

/// What the clock does next from sim time `t`.
pub fn next_step(cal: &Calendar, t: Ts) -> Step {
    let day = calendar::ny_date(t);
    if let Some((open, close)) = cal.regular_hours(day) {
        if t < close && t >= open {
            return Step::Session { open, close };
        }
        if t < open {
            return Step::Closed { until: open };
        }
    }
    Step::Closed {
        until: cal.next_open(t),
    }
}

/// The default sim start: the most recent regular open at or before `now`.
pub fn default_sim_start(cal: &Calendar, now: Ts) -> Ts {
    let mut d = calendar::ny_date(now);
    for _ in 0..20 {
        if let Some((open, _)) = cal.regular_hours(d) {
            if open <= now {
                return open;
            }
        }
        d = cal.prev_trading_day(d);
    }
    cal.next_open(now)
}

/// The shell side of the session: commit intents, log orders and fills, queue records.
pub(crate) struct ShellHooks<'a> {
    pub(crate) writer: &'a StoreWriter,
    pub(crate) bus: Option<&'a Bus>,
    pub(crate) universe: &'a Universe,
    pub(crate) fills: u64,
    pub(crate) orders: u64,
}

impl<'a> ShellHooks<'a> {
    pub(crate) fn new(
        writer: &'a StoreWriter,
        bus: Option<&'a Bus>,
        universe: &'a Universe,
    ) -> Self {
        ShellHooks {
            writer,
            bus,
            universe,
            fills: 0,
            orders: 0,
        }
    }
}

impl SessionHooks for ShellHooks<'_> {
    fn before_place(&mut self, req: &OrderRequest) -> Result<(), String> {
        self.writer
            .commit_intent(req, self.universe.name(req.symbol))
            .map_err(|e| format!("order intent not persisted: {e}"))?;
        failpoint("after_intent_commit_hook");
        // The intent is durable: tell the web side (the order-ack latency starts here). The row
        // itself is already in the store, so this goes on the bus only.
        if let Some(bus) = self.bus {
            let _ = bus.send(std::sync::Arc::new(BusEvent::Record {
                symbol: self.universe.name(req.symbol).to_string(),
                record: Record::OrderStatus {
                    order_id: req.id,
                    state: OrderState::New,
                    filled_qty: 0,
                    reason: None,
                    ts: req.ts,
                },
            }));
        }
        Ok(())
    }

    fn after_place(&mut self, req: &OrderRequest) {
        self.orders += 1;
        info!(
            order_id = %req.id, symbol = self.universe.name(req.symbol), side = %req.side,
            qty = req.qty, kind = req.kind.as_str(), purpose = req.purpose.as_str(), "order placed"
        );
        failpoint("after_send");
    }

    fn decision(&mut self, d: &robo_core::decision::Decision) {
        self.command(&Command::Persist(Record::Decision(Box::new(*d))));
    }

    fn command(&mut self, cmd: &Command) {
        if let (Some(bus), Command::Publish(update)) = (self.bus, cmd) {
            let symbol = match update {
                robo_core::events::Update::Position(p) => self.universe.name(p.symbol),
                robo_core::events::Update::Signal { symbol, .. } => self.universe.name(*symbol),
            };
            let _ = bus.send(std::sync::Arc::new(BusEvent::Update {
                symbol: symbol.to_string(),
                update: *update,
            }));
        }
        if let Command::Persist(rec) = cmd {
            let symbol = match rec {
                Record::Decision(d) => self.universe.name(d.symbol).to_string(),
                Record::Risk(r) => self.universe.name(r.symbol).to_string(),
                Record::Fill(f) => {
                    self.fills += 1;
                    info!(
                        exec_id = %f.exec_id, order_id = %f.order_id,
                        symbol = self.universe.name(f.symbol), side = %f.side, qty = f.qty,
                        price = %f.price, commission = %f.commission, "fill"
                    );
                    failpoint("after_fill");
                    self.universe.name(f.symbol).to_string()
                }
                _ => String::new(),
            };
            if let Some(bus) = self.bus {
                let _ = bus.send(std::sync::Arc::new(BusEvent::Record {
                    symbol: symbol.clone(),
                    record: rec.clone(),
                }));
            }
            // Operator changes were persisted by whoever issued them (the kill-switch CLI, the
            // dashboard); writing the engine's echo would only double the history.
            if matches!(rec, Record::State(c) if matches!(c.cause, robo_core::events::StateCause::Operator))
            {
                return;
            }
            self.writer.send(WriteOp::Record {
                rec: rec.clone(),
                symbol,
            });
        }
    }
}

/// Everything the trading thread needs.
pub struct TraderParts {
    pub cfg: Config,
    pub store: Store,
    pub writer: StoreWriter,
    /// Live updates for the web side; `None` when nobody listens (tests).
    pub bus: Option<Bus>,
}

/// The engine from config and the database: fills replayed, executions, marks and the trading
/// state restored. With `keep_open` the open orders are restored too (at a real broker they
/// may still be working; reconciliation settles the rest); the sim settles them instead.
pub fn build_engine(
    cfg: &Config,
    universe: &Universe,
    persisted: &PersistedState,
    keep_open: bool,
) -> Engine {
    let ecfg = EngineConfig {
        strategy: cfg.strategy.clone(),
        risk: cfg.risk.clone(),
        sizing: cfg.sizing,
        stops: cfg.stops,
        starting_cash: persisted.starting_cash.unwrap_or(cfg.starting_cash),
        bar_seconds: i64::from(cfg.bar_seconds),
        decisions: cfg.decisions,
        equity_every_secs: 60,
        tif: robo_core::types::Tif::Day,
        publish: true,
    };
    let mut engine = Engine::new(ecfg, universe.len());
    let open_orders = if keep_open {
        persisted
            .open_orders
            .iter()
            .filter_map(|o| match o.to_managed(universe) {
                Ok(m) => Some(m),
                Err(e) => {
                    warn!(order_id = %o.id, "open order not restored: {e}");
                    None
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    engine.restore(RestoreState {
        fills: persisted
            .fills
            .iter()
            .filter_map(|f| f.to_fill(universe))
            .collect(),
        open_orders,
        seen_execs: persisted.seen_exec_ids.iter().cloned().collect(),
        next_order_seq: persisted.next_order_seq,
        trading_state: persisted.trading_state,
        marks: persisted
            .marks
            .iter()
            .filter_map(|(name, price, ts)| universe.id(name).map(|id| (id, *price, *ts)))
            .collect(),
        peak_equity: persisted.peak_equity,
    });
    engine
}

/// Bar-to-decision latency samples (microseconds), bounded: the most recent 100,000.
#[derive(Debug, Default)]
pub struct Latency {
    samples: Vec<u32>,
    next: usize,
}

impl Latency {
    const CAP: usize = 100_000;
    fn record(&mut self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        if self.samples.len() < Self::CAP {
            self.samples.push(us);
        } else {
            self.samples[self.next] = us;
            self.next = (self.next + 1) % Self::CAP;
        }
    }
    /// (p50, p99, count) in microseconds.
    pub fn percentiles(&self) -> Option<(u32, u32, usize)> {
        if self.samples.is_empty() {
            return None;
        }
        let mut v = self.samples.clone();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some((at(0.50), at(0.99), v.len()))
    }
}

/// The running trader: the session plus what the shell keeps around it.
struct Trader<'a> {
    session: PaperSession,
    hooks: ShellHooks<'a>,
    writer: &'a StoreWriter,
    universe: &'a Universe,
    latency: Latency,
    last_marks: Instant,
    t: Ts,
}

impl Trader<'_> {
    /// Feeds one step's bars (one per symbol, same timestamp) and measures how long each bar
    /// took from arrival to its decision.
    fn step(&mut self, bars: &[Bar], step_end: Ts, force_marks: bool) {
        let arrived = Instant::now();
        if let Some(bus) = self.hooks.bus {
            for b in bars {
                let symbol = self.universe.name(b.symbol).to_string();
                let _ = bus.send(std::sync::Arc::new(BusEvent::Bar {
                    symbol,
                    bar: *b,
                    at: arrived,
                }));
            }
            let _ = bus.send(std::sync::Arc::new(BusEvent::Clock { now: step_end }));
        }
        for b in bars {
            self.session.on_bar(b, &mut self.hooks);
            self.latency.record(arrived.elapsed());
        }
        self.t = step_end;
        if force_marks || self.last_marks.elapsed() >= Duration::from_millis(250) {
            self.last_marks = Instant::now();
            self.writer.send(WriteOp::Marks {
                marks: bars
                    .iter()
                    .map(|b| (self.universe.name(b.symbol).to_string(), b.close, b.ts))
                    .collect(),
                sim_clock: step_end,
                peak_equity: self.session.engine.peak_equity(),
            });
        }
    }

    fn wait(&mut self, waiter: &mut dyn Waiter, t: Ts) -> Result<(), String> {
        wait(waiter, self.t, t, false, &mut self.session, &mut self.hooks)
    }

    fn skip_closed(&mut self, waiter: &mut dyn Waiter, t: Ts) -> Result<(), String> {
        wait(waiter, self.t, t, true, &mut self.session, &mut self.hooks)
    }
}

/// The trading thread: restore, warm up, then trade sessions until told to stop.
pub fn trade(parts: TraderParts, waiter: &mut dyn Waiter) -> anyhow::Result<RunOutcome> {
    let TraderParts {
        cfg,
        store,
        writer,
        bus,
    } = parts;
    let persisted = store.load_state().context("loading the database")?;
    let replay = match &cfg.sim.data {
        Some(dir) => Some(load_replay(dir, &cfg.symbols)?),
        None => None,
    };
    let universe = match &replay {
        Some((u, _)) => u.clone(),
        None => Universe::new(&cfg.symbols).context("symbols")?,
    };
    let cal = Calendar::nyse();

    // Orders still open belonged to the previous process's in-process paper broker, which did
    // not survive it: settle them as cancelled so none is lost silently or sent twice.
    for o in &persisted.open_orders {
        warn!(order_id = %o.id, "settling an order left open by the previous run: cancelled");
        writer.send(WriteOp::Record {
            rec: Record::OrderStatus {
                order_id: o.id,
                state: OrderState::Cancelled,
                filled_qty: o.filled,
                reason: Some("open at restart; the in-process paper broker did not survive".into()),
                ts: o.updated,
            },
            symbol: o.symbol.clone(),
        });
    }

    let engine = build_engine(&cfg, &universe, &persisted, false);
    let broker = PaperBroker::new(cfg.paper, universe.len());
    let session = PaperSession::new(engine, broker);
    let now = Ts::from_utc(chrono::Utc::now());
    // Resume after the latest thing recorded: the sim-clock mark is written periodically and
    // can lag the last fills after a crash; bars are never traded twice.
    let resume = match (
        persisted.sim_clock,
        store.latest_activity().context("reading the database")?,
    ) {
        (Some(a), Some(b)) => Some(a.max(next_minute(b))),
        (a, b) => a.or(b.map(next_minute)),
    };
    let start = match (cfg.clock(), &resume, &cfg.sim.start) {
        (ClockKind::Real, _, _) => now,
        (_, Some(r), Some(s)) => {
            let asked = parse_start(s)?;
            if asked < *r {
                warn!(asked = %asked, resume = %r, "--sim-start is before what this database already traded; resuming instead (use a new --db to start over)");
            }
            asked.max(*r)
        }
        (_, None, Some(s)) => parse_start(s)?,
        (_, Some(t), None) => *t,
        (_, None, None) => match &replay {
            Some((_, bars)) => bars.first().map_or(now, |b| b.ts),
            None => default_sim_start(&cal, now),
        },
    };
    let mut tr = Trader {
        session,
        hooks: ShellHooks::new(&writer, bus.as_ref(), &universe),
        writer: &writer,
        universe: &universe,
        latency: Latency::default(),
        last_marks: Instant::now() - Duration::from_secs(10),
        t: start,
    };

    let outcome = match replay {
        Some((_, bars)) => replay_loop(&mut tr, waiter, &bars, start, i64::from(cfg.bar_seconds)),
        None => synthetic_loop(&mut tr, waiter, &cfg, &persisted, &cal, start),
    };

    // Shutdown: no new orders, cancel what is working (DAY orders of an in-process broker cannot
    // outlive us), drain, flush the last marks.
    let t = tr.t;
    tr.session.on_event(
        Event::Operator {
            command: OperatorCommand::CancelAll,
            ts: t,
        },
        &mut tr.hooks,
    );
    writer.send(WriteOp::Marks {
        marks: universe
            .ids()
            .filter_map(|id| {
                tr.session
                    .engine
                    .ledger()
                    .mark_of(id)
                    .map(|p| (universe.name(id).to_string(), p, t))
            })
            .collect(),
        sim_clock: t,
        peak_equity: tr.session.engine.peak_equity(),
    });
    if let Some((p50, p99, n)) = tr.latency.percentiles() {
        info!(
            p50_us = p50,
            p99_us = p99,
            bars = n,
            "bar-to-decision latency"
        );
    }
    info!(reason = %outcome, orders = tr.hooks.orders, fills = tr.hooks.fills, "trading loop stopped");
    Ok(RunOutcome {
        exit_reason: outcome,
    })
}

/// The synthetic market: warm up on generated history, then trade each session of the
/// calendar, sleeping through nights, weekends and holidays. Returns the stop reason.
fn synthetic_loop(
    tr: &mut Trader<'_>,
    waiter: &mut dyn Waiter,
    cfg: &Config,
    persisted: &PersistedState,
    cal: &Calendar,
    start: Ts,
) -> String {
    let universe = tr.universe;
    let mut market = SimMarket::new(cfg.sim.seed, universe.names());
    for (name, price, _) in &persisted.marks {
        if let Some(id) = universe.id(name) {
            market.set_last_close(id.index(), *price);
        }
    }
    // Validated with the config.
    let stop_at = cfg.sim.until.as_deref().and_then(|u| parse_start(u).ok());
    let mut recorder = match &cfg.sim.record_bars {
        Some(dir) => {
            let names: Vec<&str> = universe.ids().map(|id| universe.name(id)).collect();
            match crate::data::record::BarRecorder::create(dir, &names) {
                Ok(r) => Some(r),
                Err(e) => return format!("--record-bars {}: {e}", dir.display()),
            }
        }
        None => None,
    };
    let reason = synthetic_sessions(
        tr,
        waiter,
        cfg,
        cal,
        start,
        &mut market,
        stop_at,
        recorder.as_mut(),
    );
    if let Some(Err(e)) = recorder.as_mut().map(|r| r.finish()) {
        warn!("recording bars failed: {e}");
    }
    reason
}

/// [`synthetic_loop`] after the market is set up: warm-up, then the sessions.
#[allow(clippy::too_many_arguments)]
fn synthetic_sessions(
    tr: &mut Trader<'_>,
    waiter: &mut dyn Waiter,
    cfg: &Config,
    cal: &Calendar,
    start: Ts,
    market: &mut SimMarket,
    stop_at: Option<Ts>,
    mut recorder: Option<&mut crate::data::record::BarRecorder>,
) -> String {
    let universe = tr.universe;
    // Warm the strategies on history generated just before the start, so the first live bars
    // can already trade. Warm-up changes nothing in the ledger or the store.
    let mut bars: Vec<Bar> = Vec::with_capacity(universe.len());
    let mut day = calendar::ny_date(start);
    let mut hist_days = Vec::new();
    for _ in 0..cfg.sim.history_sessions {
        day = cal.prev_trading_day(day);
        hist_days.push(day);
    }
    for d in hist_days.iter().rev() {
        if let Some((open, close)) = cal.regular_hours(*d) {
            market.begin_session(open, minutes_between(open, close));
            while !market.session_done() {
                market.next_bars(&mut bars);
                for b in &bars {
                    tr.session.engine.warm_up(b);
                    if let Some(r) = recorder.as_deref_mut() {
                        r.record(b);
                    }
                }
            }
        }
    }
    info!(start = %start, symbols = universe.len(), "sim market ready");
    waiter.anchor(start);
    let mut t = start;
    loop {
        match next_step(cal, t) {
            Step::Closed { until } if stop_at.is_some_and(|s| s <= until) => {
                return "sim end (--sim-until) reached".into();
            }
            Step::Closed { until } => {
                info!(next_open = %calendar::ny_datetime(until).to_rfc3339(), "market closed; sleeping until the next open");
                if let Err(r) = tr.skip_closed(waiter, until) {
                    return r;
                }
                t = until;
                tr.t = t;
            }
            Step::Session { open, close } => {
                info!(
                    open = %calendar::ny_datetime(open).to_rfc3339(),
                    close = %calendar::ny_datetime(close).to_rfc3339(),
                    "market open: trading the session"
                );
                market.begin_session(open, minutes_between(open, close));
                // Resuming mid-session: regenerate the minutes already past without trading them.
                for _ in 0..minutes_between(open, t) {
                    market.next_bars(&mut bars);
                }
                while !market.session_done() {
                    let bar_open = Ts(open.0 + i64::from(market.minute()) * NANOS_PER_MIN);
                    let bar_end = bar_open.plus_secs(60);
                    if stop_at.is_some_and(|s| bar_end > s) {
                        return "sim end (--sim-until) reached".into();
                    }
                    if let Err(r) = tr.wait(waiter, bar_end) {
                        return r;
                    }
                    market.next_bars(&mut bars);
                    if let Some(r) = recorder.as_deref_mut() {
                        for b in &bars {
                            r.record(b);
                        }
                    }
                    tr.step(&bars, bar_end, market.session_done());
                }
                tr.session.on_session_close(close, &mut tr.hooks);
                tr.session.engine.prune_closed_orders();
                t = close;
                tr.t = t;
            }
        }
    }
}

/// Replays CSV bars as given (no calendar), paced like the synthetic market; bars before the
/// resume point are skipped. Returns the stop reason.
fn replay_loop(
    tr: &mut Trader<'_>,
    waiter: &mut dyn Waiter,
    bars: &[Bar],
    start: Ts,
    bar_secs: i64,
) -> String {
    waiter.anchor(start);
    let mut i = bars.partition_point(|b| b.ts < start);
    info!(bars = bars.len() - i, "replaying CSV bars");
    while i < bars.len() {
        let ts = bars[i].ts;
        let j = i + bars[i..].partition_point(|b| b.ts == ts);
        let end = ts.plus_secs(bar_secs);
        if let Err(r) = tr.wait(waiter, end) {
            return r;
        }
        tr.step(&bars[i..j], end, j == bars.len());
        i = j;
    }
    "replay finished".into()
}

/// Loads a CSV directory for replay: the symbols present in the files (those of the watchlist
/// if any match), bars merged in time order.
fn load_replay(
    dir: &std::path::Path,
    watchlist: &[String],
) -> anyhow::Result<(Universe, Vec<Bar>)> {
    use crate::data::csv::{read_path, ReadOptions};
    let (sets, report) = read_path(dir, &ReadOptions::default())
        .with_context(|| format!("--sim-data {}", dir.display()))?;
    let matching: Vec<_> = sets
        .iter()
        .filter(|s| watchlist.iter().any(|w| w.eq_ignore_ascii_case(&s.symbol)))
        .collect();
    let chosen: Vec<_> = if matching.is_empty() {
        sets.iter().collect()
    } else {
        matching
    };
    let universe =
        Universe::new(chosen.iter().map(|s| s.symbol.as_str())).context("--sim-data symbols")?;
    let mut bars = Vec::with_capacity(chosen.iter().map(|s| s.bars.len()).sum());
    for (k, s) in chosen.iter().enumerate() {
        let symbol = robo_core::types::SymbolId(k as u16);
        bars.extend(s.bars.iter().map(|r| r.with_symbol(symbol)));
    }
    bars.sort_by_key(|b| (b.ts, b.symbol));
    info!(
        files = report.files,
        rows = report.rows,
        symbols = universe.len(),
        "replay data loaded"
    );
    Ok((universe, bars))
}

const NANOS_PER_MIN: i64 = 60_000_000_000;

/// The start of the minute after the one containing `t`.
fn next_minute(t: Ts) -> Ts {
    Ts((t.0.div_euclid(NANOS_PER_MIN) + 1) * NANOS_PER_MIN)
}

fn minutes_between(a: Ts, b: Ts) -> u32 {
    u32::try_from(((b.0 - a.0) / NANOS_PER_MIN).max(0)).unwrap_or(u32::MAX)
}

fn parse_start(s: &str) -> anyhow::Result<Ts> {
    crate::cli::parse_rfc3339(s)
        .map(Ts::from_utc)
        .map_err(|e| anyhow::anyhow!("--sim-start: {e}, got {s:?}"))
}

/// Waits until sim time `t`, applying controls as they arrive; returns the shutdown reason.
fn wait(
    waiter: &mut dyn Waiter,
    now: Ts,
    t: Ts,
    closed: bool,
    session: &mut PaperSession,
    hooks: &mut ShellHooks<'_>,
) -> Result<(), String> {
    let mut pending: Vec<Event> = Vec::new();
    loop {
        let mut handle = |c| match c {
            Control::Shutdown { reason } => Some(Interrupt::Stop(reason)),
            Control::SetState(state) => {
                pending.push(Event::Operator {
                    command: OperatorCommand::SetTradingState { state },
                    ts: now,
                });
                Some(Interrupt::Apply)
            }
            Control::Operator(command) => {
                pending.push(Event::Operator { command, ts: now });
                Some(Interrupt::Apply)
            }
        };
        let r = if closed {
            waiter.skip_closed(t, &mut handle)
        } else {
            waiter.wait_until(t, &mut handle)
        };
        for ev in pending.drain(..) {
            info!(event = ?ev, "operator control applied");
            session.on_event(ev, hooks);
        }
        match r {
            Ok(()) => return Ok(()),
            Err(Interrupt::Apply) => continue,
            Err(Interrupt::Stop(reason)) => return Err(reason),
        }
    }
}
