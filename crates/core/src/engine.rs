//! The engine: `handle(event) -> commands`. It owns the per-symbol strategies, the risk gate,
//! the stops, the order manager and the ledger, and it is the only place where they meet.
//!
//! Order of work for a bar: roll the trading day if needed, mark the ledger, evaluate the
//! account-level limits once per timestamp, check the stops, run the strategy, turn its signal
//! into at most one order through the risk gate, and (optionally) write a decision record.
//! Fills arrive separately and are applied once per execution id.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::calendar;
use crate::decision::{Action, Checks, Decision, Inputs};
use crate::events::{
    Command, Event, OperatorCommand, OrderUpdate, Record, RiskEvent, StateCause, StateChange,
    Update,
};
use crate::exact;
use crate::indicators::exact_sma::{floor_fixed, fx};
use crate::ledger::Ledger;
use crate::orders::{FillOutcome, ManagedOrder, OrderManager, UpdateOutcome};
use crate::risk::{
    FixedContext, OrderCheck, PlainContext, RiskContext, RiskGate, RiskLimits, Verdict,
};
use crate::sizing::{self, SizingConfig};
use crate::stops::{StopBook, StopConfig};
use crate::strategy::{AnyStrategy, Direction, Signal, Strategy, StrategyConfig};
use crate::types::{
    Bar, ClientOrderId, ConnectionState, ExecId, Fill, Money, OrderKind, OrderPurpose,
    OrderRequest, Price, Qty, Quote, Side, SymbolId, Tif, TradingState, Ts,
};

/// Everything the engine needs to know up front.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    pub strategy: StrategyConfig,
    pub risk: RiskLimits,
    pub sizing: SizingConfig,
    pub stops: StopConfig,
    pub starting_cash: Money,
    /// The strategy bar size, for price-age checks.
    pub bar_seconds: i64,
    /// Write a decision record for every bar and symbol.
    pub decisions: bool,
    /// Write an equity snapshot at most this often (seconds of event time); 0 = only at the
    /// start of each day. `run` uses 60; backtests keep their own curve.
    pub equity_every_secs: i64,
    /// Time in force of the orders the engine places.
    pub tif: Tif,
    /// Emit `Command::Publish` live updates (signals, positions) for the dashboard and
    /// WebSocket. A backtest has no subscribers and turns them off; persisted records are
    /// unaffected.
    #[serde(default = "publish_default")]
    pub publish: bool,
}

fn publish_default() -> bool {
    true
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            strategy: StrategyConfig::default(),
            risk: RiskLimits::default(),
            sizing: SizingConfig::default(),
            stops: StopConfig::default(),
            starting_cash: Decimal::from(100_000),
            bar_seconds: 60,
            decisions: true,
            equity_every_secs: 0,
            tif: Tif::Day,
            publish: true,
        }
    }
}

/// What the store hands back after a restart.
#[derive(Debug, Clone, Default)]
pub struct RestoreState {
    /// Every fill, in time order.
    pub fills: Vec<Fill>,
    /// Orders that were still open.
    pub open_orders: Vec<ManagedOrder>,
    /// Execution ids already applied (normally the fills' own ids).
    pub seen_execs: Vec<ExecId>,
    /// The next client order sequence number.
    pub next_order_seq: u64,
    pub trading_state: TradingState,
    /// Last known price per symbol.
    pub marks: Vec<(SymbolId, Price, Ts)>,
    /// Equity peak so far, if recorded (for the drawdown limit).
    pub peak_equity: Option<Money>,
}

/// Per-symbol market state the risk gate needs.
#[derive(Debug, Clone, Copy, Default)]
struct SymbolState {
    last_price: Option<Price>,
    last_price_ts: Option<Ts>,
    prev_close: Option<Price>,
    last_exit: Option<Ts>,
}

/// The deterministic trading core.
pub struct Engine {
    cfg: EngineConfig,
    strategies: Vec<AnyStrategy>,
    syms: Vec<SymbolState>,
    ledger: Ledger,
    orders: OrderManager,
    gate: RiskGate,
    stops: StopBook,
    state: TradingState,
    connection: ConnectionState,
    /// Start of the current exchange day's successor: a bar at or after it rolls the day.
    day_end: Ts,
    start_of_day_equity: Money,
    peak_equity: Money,
    /// Equity at or below which the account limits must be evaluated (see
    /// `RiskGate::trigger_equity`); above it nothing can change, so the hot path compares once.
    trigger_equity: Money,
    /// Floors of the peak and the trigger at the fixed scale (see `exact_sma::fx`), so the
    /// per-bar "can anything change?" test is integer arithmetic against the ledger's equity
    /// shadow: for an integer `e`, `e <= floor(p)` ⇔ `e <= p` and `e > floor(t)` ⇔ `e > t`,
    /// so the band test stays exact whatever their decimals. The exact `Decimal` evaluation
    /// runs whenever it might.
    peak_fixed: i128,
    trigger_fixed: i128,
    /// `fx` of the start-of-day equity, the peak and the daily notional, for the risk gate's
    /// fixed-point path (`None` where not exact: then the gate converts the `Decimal`s).
    sod_fx: Option<i64>,
    peak_fx: Option<i64>,
    daily_notional_fx: Option<i64>,
    daily_notional: Money,
    /// Timestamp of the last account-level evaluation (once per timestamp, not per symbol).
    last_eval_ts: Ts,
    last_equity_record: Ts,
    bars_seen: u64,
    checks: Checks,
    /// Decision records of the events handled since the last drain (capacity reused).
    decisions: Vec<Decision>,
    /// The broker's account, when the shell gives it (`set_account`); `None` = the ledger's.
    account: Option<crate::account::AccountSnapshot>,
    /// The `day_end` for which the start-of-day equity was last taken from `account`.
    account_sod_day_end: Option<Ts>,
}

impl Engine {
    pub fn new(cfg: EngineConfig, n_symbols: usize) -> Self {
        let strategies = (0..n_symbols).map(|_| cfg.strategy.build_any()).collect();
        let cash = cfg.starting_cash;
        Engine {
            strategies,
            syms: vec![SymbolState::default(); n_symbols],
            ledger: Ledger::new(n_symbols, cash),
            orders: OrderManager::new(1),
            gate: RiskGate::new(cfg.risk.clone()),
            stops: StopBook::new(n_symbols, cfg.stops),
            state: TradingState::Active,
            connection: ConnectionState::Ready,
            day_end: Ts(i64::MIN),
            start_of_day_equity: cash,
            peak_equity: cash,
            trigger_equity: Decimal::MAX,
            peak_fixed: floor_fixed(cash),
            trigger_fixed: i128::MAX,
            sod_fx: fx(cash),
            peak_fx: fx(cash),
            daily_notional_fx: Some(0),
            daily_notional: Decimal::ZERO,
            last_eval_ts: Ts(i64::MIN),
            last_equity_record: Ts(i64::MIN),
            bars_seen: 0,
            checks: Checks::default(),
            decisions: Vec::new(),
            account: None,
            account_sod_day_end: None,
            cfg,
        }
    }

    /// Rebuilds the state after a restart: replays the fills into the ledger, restores open
    /// orders and seen executions, and re-arms the stops from the positions.
    pub fn restore(&mut self, r: RestoreState) {
        self.orders = OrderManager::new(r.next_order_seq.max(1));
        for f in &r.fills {
            self.orders.mark_exec_seen(&f.exec_id);
            let before = self.ledger.qty(f.symbol);
            let eff = self.ledger.apply_fill(f);
            if let Some(s) = self.syms.get_mut(f.symbol.index()) {
                if before != 0 && eff.position_after == 0 {
                    s.last_exit = Some(f.ts);
                }
            }
        }
        for e in &r.seen_execs {
            self.orders.mark_exec_seen(e);
        }
        for (sym, price, ts) in &r.marks {
            self.ledger.mark(*sym, *price);
            if let Some(s) = self.syms.get_mut(sym.index()) {
                s.last_price = Some(*price);
                s.last_price_ts = Some(*ts);
            }
        }
        for o in r.open_orders {
            self.orders.restore(o);
        }
        self.state = r.trading_state;
        let eq = self.ledger.equity();
        self.start_of_day_equity = eq;
        self.peak_equity = r.peak_equity.unwrap_or(eq).max(eq);
        self.refresh_trigger();
        self.rearm_stops();
    }

    fn rearm_stops(&mut self) {
        let positions: Vec<_> = self.ledger.positions().collect();
        for p in positions {
            let long = p.qty > 0;
            let hw = if long {
                p.avg_cost.max(p.mark)
            } else {
                p.avg_cost.min(p.mark)
            };
            self.stops.arm(p.symbol, long, p.avg_cost, hw);
        }
    }

    /// Warms a strategy with history without trading on it (no orders, no records).
    pub fn warm_up(&mut self, bar: &Bar) {
        if let Some(s) = self.strategies.get_mut(bar.symbol.index()) {
            s.on_bar(bar);
        }
        if let Some(st) = self.syms.get_mut(bar.symbol.index()) {
            st.prev_close = st.last_price;
            st.last_price = Some(bar.close);
            st.last_price_ts = Some(bar.ts);
        }
        self.ledger.mark(bar.symbol, bar.close);
    }

    /// The decision records written since the last call, oldest first. Callers drain after
    /// every `handle` (when decision records are on), or the buffer grows.
    pub fn drain_decisions(&mut self) -> std::vec::Drain<'_, Decision> {
        self.decisions.drain(..)
    }

    #[inline]
    pub fn has_decisions(&self) -> bool {
        !self.decisions.is_empty()
    }

    /// Drops finished orders from memory (they are in the store); keeps seen executions.
    pub fn prune_closed_orders(&mut self) {
        self.orders.prune_closed();
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    pub fn orders(&self) -> &OrderManager {
        &self.orders
    }
    pub fn trading_state(&self) -> TradingState {
        self.state
    }
    pub fn connection(&self) -> ConnectionState {
        self.connection
    }
    pub fn bars_seen(&self) -> u64 {
        self.bars_seen
    }
    pub fn peak_equity(&self) -> Money {
        self.peak_equity
    }
    pub fn start_of_day_equity(&self) -> Money {
        self.start_of_day_equity
    }
    pub fn daily_notional(&self) -> Money {
        self.daily_notional
    }
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
    pub fn strategy_ready(&self, sym: SymbolId) -> bool {
        self.strategies
            .get(sym.index())
            .is_some_and(|s| s.is_ready())
    }

    /// The one entry point: apply an event, append the resulting commands to `out`.
    pub fn handle(&mut self, ev: &Event, out: &mut Vec<Command>) {
        match ev {
            Event::Bar(b) => self.on_bar(b, out),
            Event::Quote(q) => self.on_quote(q, out),
            Event::Clock(ts) => self.on_clock(*ts, out),
            Event::OrderUpdate(u) => self.on_order_update(u, out),
            Event::Fill(f) => self.on_fill(f, out),
            Event::Connection { state, .. } => self.connection = *state,
            Event::Operator { command, ts } => self.on_operator(*command, *ts, out),
        }
    }

    #[inline]
    fn roll_day_if_needed(&mut self, ts: Ts, out: &mut Vec<Command>) {
        if ts >= self.day_end {
            self.roll_day(ts, out);
        }
    }

    #[cold]
    fn roll_day(&mut self, ts: Ts, out: &mut Vec<Command>) {
        let date = calendar::ny_date(ts);
        let next = date.succ_opt().unwrap_or(date);
        self.day_end = calendar::ny_local_to_ts(next, 0, 0);
        self.daily_notional = Decimal::ZERO;
        self.start_of_day_equity = self.ledger.equity();
        self.refresh_trigger();
        self.record_equity(ts, out);
    }

    fn refresh_trigger(&mut self) {
        self.trigger_equity = self
            .gate
            .trigger_equity(self.start_of_day_equity, self.peak_equity);
        self.trigger_fixed = floor_fixed(self.trigger_equity);
        self.peak_fixed = floor_fixed(self.peak_equity);
        // Every change of these three ends here (a new day, a new peak, a restore), except
        // the daily notional's growth, which `try_place` shadows itself.
        self.sod_fx = fx(self.start_of_day_equity);
        self.peak_fx = fx(self.peak_equity);
        self.daily_notional_fx = fx(self.daily_notional);
    }

    fn record_equity(&mut self, ts: Ts, out: &mut Vec<Command>) {
        self.last_equity_record = ts;
        out.push(Command::Persist(Record::Equity {
            ts,
            cash: self.ledger.cash(),
            equity: self.ledger.equity(),
            realized: self.ledger.realized(),
            unrealized: self.ledger.unrealized(),
        }));
    }

    /// Account-level limits, once per timestamp: daily loss → ReduceOnly, drawdown → Halted.
    ///
    /// With no open position equity only moves on fills, so bars skip the work unless
    /// `after_fill` says a fill just changed it.
    #[inline]
    fn evaluate_account(&mut self, ts: Ts, after_fill: bool, out: &mut Vec<Command>) {
        if ts == self.last_eval_ts && !after_fill {
            return;
        }
        self.last_eval_ts = ts;
        if self.cfg.equity_every_secs == 0 && self.account_quiet(after_fill) {
            return;
        }
        self.evaluate_account_slow(ts, after_fill, out);
    }

    /// True when nothing can change: equity above the trigger and at or below the peak, or,
    /// between fills, no open position (equity then only moves on fills).
    #[inline]
    fn account_quiet(&self, after_fill: bool) -> bool {
        if !after_fill && self.ledger.open_positions() == 0 {
            return true;
        }
        // The 64-bit sum first: the same value when it fits (every account's equity does),
        // and cheaper than the 128-bit one with its bound test per position.
        let equity = match self.ledger.equity_fixed_i64() {
            Some(e) => Some(i128::from(e)),
            None => self.ledger.equity_fixed(),
        };
        matches!(equity, Some(eq) if eq > self.trigger_fixed && eq <= self.peak_fixed)
    }

    #[inline(never)]
    fn evaluate_account_slow(&mut self, ts: Ts, after_fill: bool, out: &mut Vec<Command>) {
        let periodic = self.cfg.equity_every_secs > 0
            && ts.0.saturating_sub(self.last_equity_record.0)
                >= self.cfg.equity_every_secs.saturating_mul(Ts::NANOS_PER_SEC);
        if !periodic && self.account_quiet(after_fill) {
            return;
        }
        let equity = self.ledger.equity();
        if equity > self.peak_equity {
            self.peak_equity = equity;
            self.refresh_trigger();
        }
        if self.cfg.risk.enabled && equity <= self.trigger_equity {
            if let Some((to, cause)) = self.gate.evaluate(
                self.state,
                equity,
                self.start_of_day_equity,
                self.peak_equity,
            ) {
                self.set_state(to, cause, ts, out);
            }
        }
        if periodic {
            self.record_equity(ts, out);
        }
    }

    fn set_state(&mut self, to: TradingState, cause: StateCause, ts: Ts, out: &mut Vec<Command>) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        out.push(Command::Persist(Record::State(StateChange {
            from,
            to,
            cause,
            ts,
        })));
        if to == TradingState::Halted {
            self.cancel_where(out, |o| o.req.purpose.is_entry());
        }
    }

    fn cancel_where(&mut self, out: &mut Vec<Command>, pred: impl Fn(&ManagedOrder) -> bool) {
        for id in self.orders.open_ids_where(pred) {
            out.push(Command::Cancel(id));
        }
    }

    /// The same as `handle(&Event::Bar(*bar), out)`, without building the event.
    #[inline]
    pub fn on_bar(&mut self, bar: &Bar, out: &mut Vec<Command>) {
        let i = bar.symbol.index();
        if i >= self.strategies.len() {
            return;
        }
        self.bars_seen += 1;
        self.roll_day_if_needed(bar.ts, out);
        // One conversion of the close serves the ledger's mark and the strategy.
        let close_fx = fx(bar.close);
        self.ledger.mark_given(bar.symbol, bar.close, close_fx);
        {
            let st = &mut self.syms[i];
            st.prev_close = st.last_price;
            st.last_price = Some(bar.close);
            st.last_price_ts = Some(bar.ts);
        }
        self.evaluate_account(bar.ts, false, out);

        let decisions = self.cfg.decisions;
        if decisions {
            self.checks.clear();
        }
        let mut verdict = None;
        let mut action = Action::None;

        if let Some(hit) = self.stops.on_bar(bar) {
            action = self.exit_on_stop(
                bar.symbol,
                hit.purpose,
                bar.close,
                bar.ts,
                out,
                &mut verdict,
            );
        }

        let signal = self.strategies[i].on_bar_given(bar, close_fx);
        if action == Action::None {
            // A strategy only signals once warm, so readiness is asked only when a decision
            // record needs the distinction (it is a virtual call per bar otherwise).
            if signal.direction == Direction::Hold {
                if decisions && !self.strategies[i].is_ready() {
                    action = Action::WarmingUp;
                }
            } else if self.strategies[i].is_ready() {
                if self.cfg.publish {
                    out.push(Command::Publish(Update::Signal {
                        symbol: bar.symbol,
                        ts: bar.ts,
                        signal,
                    }));
                }
                action =
                    self.act_on_signal(bar.symbol, &signal, bar.close, bar.ts, out, &mut verdict);
            }
        }

        if decisions {
            let mut inputs = Inputs::default();
            self.strategies[i].inputs(&mut inputs);
            self.decisions.push(Decision {
                symbol: bar.symbol,
                ts: bar.ts,
                close: bar.close,
                inputs,
                signal,
                action,
                verdict,
                checks: self.checks,
            });
        }
    }

    fn on_quote(&mut self, q: &Quote, out: &mut Vec<Command>) {
        let i = q.symbol.index();
        if i >= self.syms.len() || q.last <= Decimal::ZERO {
            return;
        }
        self.roll_day_if_needed(q.ts, out);
        self.ledger.mark(q.symbol, q.last);
        self.syms[i].last_price = Some(q.last);
        self.syms[i].last_price_ts = Some(q.ts);
        self.evaluate_account(q.ts, false, out);
        if let Some(hit) = self.stops.on_price(q.symbol, q.last) {
            let mut verdict = None;
            self.exit_on_stop(q.symbol, hit.purpose, q.last, q.ts, out, &mut verdict);
        }
    }

    fn on_clock(&mut self, ts: Ts, out: &mut Vec<Command>) {
        self.roll_day_if_needed(ts, out);
        self.evaluate_account(ts, false, out);
    }

    fn exit_on_stop(
        &mut self,
        sym: SymbolId,
        purpose: OrderPurpose,
        price: Price,
        ts: Ts,
        out: &mut Vec<Command>,
        verdict: &mut Option<Verdict>,
    ) -> Action {
        let qty = self.ledger.qty(sym);
        if qty == 0 || self.orders.has_open_for(sym) {
            return Action::None;
        }
        let side = if qty > 0 { Side::Sell } else { Side::Buy };
        match self.try_place(sym, side, qty.abs(), purpose, price, ts, out) {
            Verdict::Approved => {
                *verdict = Some(Verdict::Approved);
                Action::StopTriggered
            }
            v => {
                *verdict = Some(v);
                Action::Refused
            }
        }
    }

    fn act_on_signal(
        &mut self,
        sym: SymbolId,
        signal: &Signal,
        price: Price,
        ts: Ts,
        out: &mut Vec<Command>,
        verdict: &mut Option<Verdict>,
    ) -> Action {
        let pos = self.ledger.qty(sym);
        let (side, qty, purpose) = match (signal.direction, pos.signum()) {
            (Direction::Buy, 0) => (Side::Buy, self.entry_size(sym, price), OrderPurpose::Entry),
            (Direction::Buy, -1) => (Side::Buy, -pos, OrderPurpose::SignalExit),
            (Direction::Sell, 1) => (Side::Sell, pos, OrderPurpose::SignalExit),
            (Direction::Sell, 0) if self.cfg.risk.allow_short => {
                (Side::Sell, self.entry_size(sym, price), OrderPurpose::Entry)
            }
            _ => return Action::None,
        };
        if qty <= 0 {
            return Action::None;
        }
        let v = self.try_place(sym, side, qty, purpose, price, ts, out);
        *verdict = Some(v);
        match (v, purpose.is_entry()) {
            (Verdict::Approved, true) => Action::Entered,
            (Verdict::Approved, false) => Action::Exited,
            _ => Action::Refused,
        }
    }

    fn entry_size(&self, _sym: SymbolId, price: Price) -> Qty {
        let cap = if self.cfg.risk.enabled {
            self.cfg.risk.max_position_pct
        } else {
            Decimal::ONE
        };
        let equity = || {
            self.account
                .map_or_else(|| self.ledger.equity(), |a| a.net_liquidation)
        };
        let stats = &self.ledger.trade_stats();
        // The ledger's shadow is the sizing equity unless the broker's account stands in.
        let equity_fixed = match self.account {
            None => self.ledger.equity_fixed(),
            Some(a) => fx(a.net_liquidation).map(i128::from),
        };
        match (equity_fixed, fx(price)) {
            (Some(e), Some(p)) => {
                let p = i128::from(p);
                sizing::size_fixed(&self.cfg.sizing, e, equity, p, price, None, stats, cap)
            }
            _ => sizing::size(&self.cfg.sizing, equity(), price, None, stats, cap),
        }
    }

    /// Risk-checks an order and, if approved, registers it and asks the shell to place it.
    /// Refusals are always recorded.
    #[allow(clippy::too_many_arguments)]
    fn try_place(
        &mut self,
        sym: SymbolId,
        side: Side,
        qty: Qty,
        purpose: OrderPurpose,
        price: Price,
        ts: Ts,
        out: &mut Vec<Command>,
    ) -> Verdict {
        let st = self.syms[sym.index()];
        let order = OrderCheck {
            symbol: sym,
            side,
            qty,
            price,
            purpose,
            now: ts,
        };
        let price_fx = fx(price);
        // The money figures from the shadows, when all of them are exact.
        let fixed = (|| {
            Some(FixedContext {
                price: price_fx?,
                equity: i64::try_from(self.ledger.equity_fixed()?).ok()?,
                cash: self.ledger.cash_fixed()?,
                start_of_day_equity: self.sod_fx?,
                peak_equity: self.peak_fx?,
                gross_exposure: i64::try_from(self.ledger.gross_exposure_fixed()?).ok()?,
                daily_notional: self.daily_notional_fx?,
            })
        })();
        let plain = PlainContext {
            state: self.state,
            position_qty: self.ledger.qty(sym),
            open_positions: self.ledger.open_positions(),
            pending_order: self.orders.has_open_for(sym),
            last_exit: st.last_exit,
            last_price_ts: st.last_price_ts,
            bar_interval_secs: self.cfg.bar_seconds,
            prev_close: st.prev_close,
        };
        let ready = self.connection == ConnectionState::Ready;
        let verdict = match fixed {
            // Most orders pass: with no record to write, an approval needs no `Decimal`.
            Some(x) if ready && !self.cfg.decisions && self.gate.clears(&order, &plain, &x) => {
                debug_assert_eq!(
                    self.check_in_full(&order, plain, Some(&x)),
                    Verdict::Approved
                );
                Verdict::Approved
            }
            _ => self.check_in_full(&order, plain, fixed.as_ref()),
        };
        match verdict {
            Verdict::Approved => {
                let id = self.orders.next_id();
                let req = OrderRequest {
                    id,
                    symbol: sym,
                    side,
                    qty,
                    kind: OrderKind::Market,
                    tif: self.cfg.tif,
                    purpose,
                    ts,
                };
                self.orders.insert(req);
                let notional = exact::mul_int(price, qty);
                self.daily_notional = exact::add(self.daily_notional, notional);
                self.daily_notional_fx = price_fx
                    .zip(self.daily_notional_fx)
                    .and_then(|(p, d)| d.checked_add(p.checked_mul(qty)?));
                out.push(Command::Place(req));
            }
            Verdict::Refused { check, reason } => {
                out.push(Command::Persist(Record::Risk(RiskEvent {
                    symbol: sym,
                    ts,
                    check,
                    reason,
                })));
            }
        }
        verdict
    }

    /// The gate's full verdict, with the `Decimal` figures that name a refusal's reason and
    /// fill a decision record.
    fn check_in_full(
        &mut self,
        order: &OrderCheck,
        plain: PlainContext,
        fixed: Option<&FixedContext>,
    ) -> Verdict {
        if self.connection != ConnectionState::Ready {
            // Not connected: nothing leaves the core, whatever the gate would say.
            return Verdict::Refused {
                check: crate::risk::RiskCheck::Connection,
                reason: crate::risk::RefuseReason::NotConnected {
                    state: self.connection,
                },
            };
        }
        let ctx = RiskContext::with_money(
            plain,
            self.ledger.equity(),
            self.ledger.cash(),
            self.start_of_day_equity,
            self.peak_equity,
            self.ledger.gross_exposure(),
            self.daily_notional,
        );
        let record = if self.cfg.decisions {
            Some(&mut self.checks)
        } else {
            None
        };
        match fixed {
            Some(x) => self.gate.check_fixed(order, &ctx, x, record),
            None => self.gate.check(order, &ctx, record),
        }
    }

    fn on_order_update(&mut self, u: &OrderUpdate, out: &mut Vec<Command>) {
        if let UpdateOutcome::Changed { to, .. } = self.orders.on_update(u) {
            self.persist_order(u.order_id, to, u.ts, out);
        }
    }

    fn persist_order(
        &self,
        id: ClientOrderId,
        state: crate::orders::OrderState,
        ts: Ts,
        out: &mut Vec<Command>,
    ) {
        let (filled_qty, reason) = self
            .orders
            .get(id)
            .map(|o| (o.filled, o.reason.clone()))
            .unwrap_or((0, None));
        out.push(Command::Persist(Record::OrderStatus {
            order_id: id,
            state,
            filled_qty,
            reason,
            ts,
        }));
    }

    fn on_fill(&mut self, f: &Fill, out: &mut Vec<Command>) {
        let outcome = self.orders.on_fill(f);
        if outcome == FillOutcome::Duplicate {
            return;
        }
        let i = f.symbol.index();
        if i >= self.syms.len() {
            return;
        }
        let before = self.ledger.qty(f.symbol);
        // A fill the ledger cannot book (zero quantity, absurd price) is not an execution; it
        // is dropped here and never persisted, so the store and the ledger stay equal.
        let Ok(eff) = self.ledger.try_apply_fill(f) else {
            return;
        };
        if self.ledger.mark_of(f.symbol).is_none() {
            self.ledger.mark(f.symbol, f.price);
        }
        out.push(Command::Persist(Record::Fill(f.clone())));
        if let FillOutcome::Applied { from, to } = outcome {
            if from != to || to == crate::orders::OrderState::PartiallyFilled {
                self.persist_order(f.order_id, to, f.ts, out);
            }
        }
        let after = eff.position_after;
        if after == 0 {
            self.stops.disarm(f.symbol);
            if before != 0 {
                self.syms[i].last_exit = Some(f.ts);
            }
        } else if before == 0 || before.signum() != after.signum() || after.abs() > before.abs() {
            let p = self.ledger.position(f.symbol);
            let long = after > 0;
            let hw = if long {
                p.avg_cost.max(f.price)
            } else {
                p.avg_cost.min(f.price)
            };
            self.stops.arm(f.symbol, long, p.avg_cost, hw);
        }
        if self.cfg.publish {
            out.push(Command::Publish(Update::Position(
                self.ledger.position(f.symbol),
            )));
        }
        self.evaluate_account(f.ts, true, out);
    }

    fn on_operator(&mut self, cmd: OperatorCommand, ts: Ts, out: &mut Vec<Command>) {
        match cmd {
            OperatorCommand::SetTradingState { state } => {
                self.set_state(state, StateCause::Operator, ts, out)
            }
            OperatorCommand::CancelAll => self.cancel_where(out, |_| true),
            OperatorCommand::Flatten => {
                self.cancel_where(out, |o| o.req.purpose.is_entry());
                let positions: Vec<_> = self.ledger.positions().collect();
                for p in positions {
                    if self.orders.has_open_for(p.symbol) {
                        continue;
                    }
                    let side = if p.qty > 0 { Side::Sell } else { Side::Buy };
                    let price = self.syms[p.symbol.index()].last_price.unwrap_or(p.avg_cost);
                    self.try_place(
                        p.symbol,
                        side,
                        p.qty.abs(),
                        OrderPurpose::Flatten,
                        price,
                        ts,
                        out,
                    );
                }
            }
        }
    }

    /// The broker's account figures (see [`crate::account`]): from now on sizing uses its net
    /// liquidation value, and the first reading of each exchange day (after the engine rolled
    /// the day) becomes the start-of-day equity. The shell gives it only while the account
    /// agrees with the ledger, so the loss limits compare like with like.
    pub fn set_account(&mut self, snapshot: crate::account::AccountSnapshot) {
        self.account = Some(snapshot);
        if self.account_sod_day_end != Some(self.day_end) {
            self.account_sod_day_end = Some(self.day_end);
            self.start_of_day_equity = snapshot.net_liquidation;
            self.refresh_trigger();
        }
    }

    /// The last account reading given by [`Engine::set_account`].
    pub fn account(&self) -> Option<crate::account::AccountSnapshot> {
        self.account
    }
    /// The engine's stop levels for `sym` while it holds a position (the shell mirrors them as
    /// protective orders at the broker).
    pub fn armed_stop(&self, sym: SymbolId) -> Option<&crate::stops::ArmedStop> {
        self.stops.armed(sym)
    }

    /// A fresh client order id from the engine's sequence, for an order the shell places on
    /// its own (a protective broker stop); the engine does not track that order.
    pub fn reserve_order_id(&mut self) -> ClientOrderId {
        self.orders.next_id()
    }
}
