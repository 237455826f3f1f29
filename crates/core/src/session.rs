//! A paper-trading session: the engine wired to the in-process paper broker.
//!
//! This is the loop that the simulated market, the CSV replay and `backtest` all run, so they
//! cannot disagree. The shell plugs in through [`SessionHooks`]: it commits each order intent
//! before the order reaches the broker, and persists or publishes everything else.

use crate::decision::Decision;
use crate::engine::Engine;
use crate::events::{BrokerStatus, Command, Event, OrderUpdate};
use crate::paper::PaperBroker;
use crate::types::{Bar, OrderRequest, Ts};

/// What the shell does around the core. Every method has a no-op default (a backtest).
pub trait SessionHooks {
    /// Called before an order is handed to the broker. The intent must be durable when this
    /// returns `Ok` (the shell commits it to the store); an `Err` keeps the order from the
    /// broker and rejects it with that reason.
    fn before_place(&mut self, _req: &OrderRequest) -> Result<(), String> {
        Ok(())
    }
    /// Called after the broker took the order.
    fn after_place(&mut self, _req: &OrderRequest) {}
    /// Every other command: persist a record, publish an update.
    fn command(&mut self, _cmd: &Command) {}
    /// A decision record (only when they are switched on). Borrowed from the engine's
    /// buffer, so a hook that keeps it copies it.
    fn decision(&mut self, _d: &Decision) {}
    /// Every event the engine handled, in order (the event log).
    fn event(&mut self, _ev: &Event) {}
    /// A bar the engine handled directly (the common case); by default it is logged like any
    /// other event. Separate so that hooks which log nothing cost nothing per bar.
    #[inline]
    fn bar(&mut self, bar: &Bar) {
        self.event(&Event::Bar(*bar));
    }
}

/// Hooks that do nothing: a bare backtest.
pub struct NoHooks;
impl SessionHooks for NoHooks {}

/// The engine and the paper broker, stepped together.
pub struct PaperSession {
    pub engine: Engine,
    pub broker: PaperBroker,
    /// Events waiting for the engine, in arrival order: the broker's answers and anything
    /// the shell hands in.
    pending: Vec<Event>,
    /// The batch being handled; what it causes lands in `pending`, behind it. Handling batch
    /// after batch is a FIFO queue without moving each event twice.
    batch: Vec<Event>,
    cmds: Vec<Command>,
    last_ts: Ts,
}

impl PaperSession {
    pub fn new(engine: Engine, broker: PaperBroker) -> Self {
        PaperSession {
            engine,
            broker,
            pending: Vec::with_capacity(16),
            batch: Vec::with_capacity(16),
            cmds: Vec::with_capacity(16),
            last_ts: Ts(i64::MIN),
        }
    }

    /// A new bar: the broker fills working orders at its open first, then the engine sees it.
    #[inline]
    pub fn on_bar(&mut self, bar: &Bar, hooks: &mut impl SessionHooks) {
        self.last_ts = bar.ts;
        self.broker.on_bar(bar, &mut self.pending);
        if self.pending.is_empty() {
            // The common case: nothing filled, so the bar goes straight in without queueing.
            hooks.bar(bar);
            self.engine.on_bar(bar, &mut self.cmds);
            self.decisions(hooks);
            if self.cmds.is_empty() {
                return;
            }
            self.route(hooks);
        } else {
            self.pending.push(Event::Bar(*bar));
        }
        self.drain(hooks);
    }

    /// Any other event (clock, operator command, connection state).
    pub fn on_event(&mut self, ev: Event, hooks: &mut impl SessionHooks) {
        self.pending.push(ev);
        self.drain(hooks);
    }

    /// Expires DAY orders at the session close.
    pub fn on_session_close(&mut self, ts: Ts, hooks: &mut impl SessionHooks) {
        self.last_ts = ts;
        self.broker.expire_day_orders(ts, &mut self.pending);
        self.drain(hooks);
    }

    fn drain(&mut self, hooks: &mut impl SessionHooks) {
        while !self.pending.is_empty() {
            std::mem::swap(&mut self.pending, &mut self.batch);
            let mut batch = std::mem::take(&mut self.batch);
            // Read in place, not moved out: an event was just written field by field, and
            // copying it whole right after stalls on every piece.
            for ev in &batch {
                hooks.event(ev);
                self.engine.handle(ev, &mut self.cmds);
                self.decisions(hooks);
                self.route(hooks);
            }
            // The emptied buffer goes back, so its capacity is reused.
            batch.clear();
            self.batch = batch;
        }
    }

    #[inline]
    fn decisions(&mut self, hooks: &mut impl SessionHooks) {
        if !self.engine.has_decisions() {
            return;
        }
        for d in self.engine.drain_decisions() {
            hooks.decision(&d);
        }
    }

    /// Carries out the engine's commands; broker answers are queued as new events.
    fn route(&mut self, hooks: &mut impl SessionHooks) {
        // Borrowed, not drained: a command is 88 bytes and most are only looked at.
        for cmd in &self.cmds {
            match cmd {
                Command::Place(req) => match hooks.before_place(req) {
                    Ok(()) => {
                        self.broker.place(req, &mut self.pending);
                        hooks.after_place(req);
                    }
                    Err(reason) => self.pending.push(Event::OrderUpdate(OrderUpdate {
                        order_id: req.id,
                        status: BrokerStatus::Rejected { reason },
                        ts: req.ts,
                    })),
                },
                Command::Cancel(id) => self.broker.cancel(*id, self.last_ts, &mut self.pending),
                _ => hooks.command(cmd),
            }
        }
        self.cmds.clear();
    }
}
