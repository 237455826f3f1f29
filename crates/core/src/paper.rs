//! The paper broker: fills orders against bars and quotes, deterministically, with no I/O.
//!
//! It answers like a real broker (a `Submitted` ack, then fills with exec ids, commissions and
//! adverse slippage), so the engine cannot tell it from one. Working orders are kept per
//! symbol, so a bar for a symbol with nothing working costs one length check and two stores
//! (inlined into the caller; the matching is out of line).

use compact_str::CompactString;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use rust_decimal_macros::dec;
use serde::{Deserialize, Serialize};

use crate::commission::CommissionModel;
use crate::events::{BrokerStatus, Event, OrderUpdate};
use crate::types::{
    Bar, ClientOrderId, ExecId, Fill, IdText, OrderKind, OrderRequest, Price, Qty, Quote, Side,
    SymbolId, Tif, Ts,
};

/// When a market order fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FillPolicy {
    /// At the open of the symbol's next bar (a signal on bar t fills at bar t+1's open).
    #[default]
    NextOpen,
    /// At the close of the bar the order was placed on.
    Close,
    /// At the last quote (ask for buys, bid for sells); the next open when there is none.
    Quote,
}

/// Paper broker settings (`[paper]` in config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PaperConfig {
    pub fill: FillPolicy,
    /// Adverse slippage in basis points of the fill price.
    pub slippage_bps: Decimal,
    pub commission: CommissionModel,
    /// Optional partial fills: at most this fraction of a bar's volume fills per bar.
    pub max_volume_pct: Option<Decimal>,
}

/// An order the paper broker is holding.
#[derive(Debug, Clone, PartialEq)]
struct Working {
    req: OrderRequest,
    remaining: Qty,
    /// Fills so far; numbers the exec ids.
    fills: u32,
    /// `P-C<order>-1`, the first exec id, written once at placement: most orders fill once,
    /// and later fills reuse all but its last digit.
    first_exec: CompactString,
    /// A stop (or stop-limit) has been touched: from now on it is a market (or limit) order.
    triggered: bool,
}

/// The prices one market event offers for matching.
#[derive(Clone, Copy)]
enum Tape<'a> {
    Bar(&'a Bar),
    /// One traded price (a quote's `last`) for limits and stops, and the touch for markets.
    Quote(&'a Quote),
}

/// One symbol's working orders and last market data, together so a bar touches one entry.
#[derive(Debug, Clone, Default)]
struct SymBook {
    /// Oldest first (so earlier orders fill first).
    orders: Vec<Working>,
    last_close: Option<Price>,
    last_volume: u64,
    last_quote: Option<Quote>,
}

/// The in-process paper broker.
#[derive(Debug, Clone)]
pub struct PaperBroker {
    cfg: PaperConfig,
    /// What a buy's and a sell's price is multiplied by (1 ± bps / 10000), worked out once;
    /// `None` without slippage.
    slip: Option<(Decimal, Decimal)>,
    /// Indexed by `SymbolId`.
    syms: Vec<SymBook>,
    n_working: usize,
}

const BPS_PER_UNIT: Decimal = dec!(10000);

impl PaperBroker {
    pub fn new(cfg: PaperConfig, n_symbols: usize) -> Self {
        let slip = (!cfg.slippage_bps.is_zero()).then(|| {
            let f = cfg.slippage_bps / BPS_PER_UNIT;
            (Decimal::ONE + f, Decimal::ONE - f)
        });
        PaperBroker {
            cfg,
            slip,
            syms: vec![SymBook::default(); n_symbols],
            n_working: 0,
        }
    }

    pub fn config(&self) -> &PaperConfig {
        &self.cfg
    }

    /// Orders still working.
    pub fn working(&self) -> usize {
        self.n_working
    }

    /// Whether an order is still working here.
    pub fn is_working(&self, id: ClientOrderId) -> bool {
        self.n_working > 0
            && self
                .syms
                .iter()
                .any(|s| s.orders.iter().any(|w| w.req.id == id))
    }

    /// The last close seen for a symbol.
    pub fn last_close(&self, sym: SymbolId) -> Option<Price> {
        self.syms.get(sym.index()).and_then(|s| s.last_close)
    }

    fn ensure(&mut self, i: usize) {
        if i >= self.syms.len() {
            self.syms.resize(i + 1, SymBook::default());
        }
    }

    /// Accepts (or rejects) an order. Market orders fill at once under `FillPolicy::Close`
    /// (at the last close) and `FillPolicy::Quote` (at the last quote) when there is one.
    pub fn place(&mut self, req: &OrderRequest, out: &mut Vec<Event>) {
        if let Some(reason) = self.invalid_reason(req) {
            out.push(update(req.id, BrokerStatus::Rejected { reason }, req.ts));
            return;
        }
        let i = req.symbol.index();
        self.ensure(i);
        let (first_exec, broker_id) = paper_ids(req.id);
        out.push(update(
            req.id,
            BrokerStatus::Submitted {
                broker_id: Some(broker_id),
            },
            req.ts,
        ));
        let mut w = Working {
            req: *req,
            remaining: req.qty,
            fills: 0,
            first_exec,
            triggered: false,
        };
        if req.kind == OrderKind::Market {
            match self.cfg.fill {
                FillPolicy::NextOpen => {}
                FillPolicy::Close => {
                    if let Some(close) = self.syms[i].last_close {
                        let cap = self.volume_cap(self.syms[i].last_volume);
                        let qty = w.remaining.min(cap);
                        fill(&self.cfg, self.slip, &mut w, qty, close, req.ts, out);
                    }
                }
                FillPolicy::Quote => {
                    if let Some(price) = self.syms[i].last_quote.and_then(|q| touch(&q, req.side)) {
                        let qty = w.remaining;
                        fill(&self.cfg, self.slip, &mut w, qty, price, req.ts, out);
                    }
                }
            }
        }
        if w.remaining > 0 {
            self.syms[i].orders.push(w);
            self.n_working += 1;
        }
    }

    fn invalid_reason(&self, req: &OrderRequest) -> Option<String> {
        if req.qty <= 0 {
            return Some(format!("qty must be > 0, got {}", req.qty));
        }
        let positive = |name: &str, p: Price| {
            (p <= Decimal::ZERO).then(|| format!("{name} price must be > 0, got {p}"))
        };
        let bad = match req.kind {
            OrderKind::Market => None,
            OrderKind::Limit { limit } => positive("limit", limit),
            OrderKind::Stop { stop } => positive("stop", stop),
            OrderKind::StopLimit { stop, limit } => {
                positive("stop", stop).or_else(|| positive("limit", limit))
            }
        };
        if bad.is_some() {
            return bad;
        }
        if self.is_working(req.id) {
            return Some(format!("duplicate order id {}", req.id));
        }
        None
    }

    /// Cancels a working order; does nothing for unknown or finished orders.
    pub fn cancel(&mut self, id: ClientOrderId, ts: Ts, out: &mut Vec<Event>) {
        for orders in self.syms.iter_mut().map(|s| &mut s.orders) {
            if let Some(pos) = orders.iter().position(|w| w.req.id == id) {
                orders.remove(pos);
                self.n_working -= 1;
                let reason = "cancelled by request".to_string();
                out.push(update(id, BrokerStatus::Cancelled { reason }, ts));
                return;
            }
        }
    }

    /// Expires every working DAY order (call at the session close).
    pub fn expire_day_orders(&mut self, ts: Ts, out: &mut Vec<Event>) {
        for orders in self.syms.iter_mut().map(|s| &mut s.orders) {
            orders.retain(|w| {
                if w.req.tif == Tif::Day {
                    out.push(update(w.req.id, BrokerStatus::Expired, ts));
                    false
                } else {
                    true
                }
            });
        }
        self.n_working = self.syms.iter().map(|s| s.orders.len()).sum();
    }

    /// Matches this symbol's working orders against a bar (before the engine sees the bar),
    /// then remembers its close.
    #[inline]
    pub fn on_bar(&mut self, bar: &Bar, out: &mut Vec<Event>) {
        match self.syms.get_mut(bar.symbol.index()) {
            Some(s) if s.orders.is_empty() => {
                s.last_close = Some(bar.close);
                s.last_volume = bar.volume;
            }
            _ => self.on_bar_matching(bar, out),
        }
    }

    /// The rest of `on_bar`, out of line so the inlined part stays a few instructions.
    #[inline(never)]
    fn on_bar_matching(&mut self, bar: &Bar, out: &mut Vec<Event>) {
        let i = bar.symbol.index();
        self.ensure(i);
        if !self.syms[i].orders.is_empty() {
            let budget = self.volume_cap(bar.volume);
            self.match_orders(i, Tape::Bar(bar), budget, bar.ts, out);
        }
        let s = &mut self.syms[i];
        s.last_close = Some(bar.close);
        s.last_volume = bar.volume;
    }

    /// Remembers the quote; under `FillPolicy::Quote` also matches: market buys at the ask,
    /// sells at the bid, limits and stops against `last`.
    pub fn on_quote(&mut self, q: &Quote, out: &mut Vec<Event>) {
        let i = q.symbol.index();
        self.ensure(i);
        self.syms[i].last_quote = Some(*q);
        if self.cfg.fill == FillPolicy::Quote && !self.syms[i].orders.is_empty() {
            self.match_orders(i, Tape::Quote(q), Qty::MAX, q.ts, out);
        }
    }

    fn match_orders(
        &mut self,
        i: usize,
        tape: Tape<'_>,
        mut budget: Qty,
        ts: Ts,
        out: &mut Vec<Event>,
    ) {
        let (cfg, slip) = (&self.cfg, self.slip);
        let Some(book) = self.syms.get_mut(i) else {
            return;
        };
        // Orders this pass fills completely: usually all of them, which spares the `retain`.
        let mut done = 0;
        for w in &mut book.orders {
            if budget <= 0 {
                break;
            }
            if let Some(price) = match_price(w, tape) {
                let qty = w.remaining.min(budget);
                budget -= qty;
                fill(cfg, slip, w, qty, price, ts, out);
                done += usize::from(w.remaining == 0);
            }
        }
        if done == book.orders.len() {
            book.orders.clear();
        } else if done > 0 {
            book.orders.retain(|w| w.remaining > 0);
        }
        self.n_working -= done;
    }

    /// Shares that may fill from one bar of `volume`: unlimited without `max_volume_pct`,
    /// else floor(pct × volume), at least 1.
    fn volume_cap(&self, volume: u64) -> Qty {
        match self.cfg.max_volume_pct {
            None => Qty::MAX,
            Some(p) => Decimal::from(volume)
                .saturating_mul(p)
                .floor()
                .to_i64()
                .unwrap_or(if p > Decimal::ZERO { Qty::MAX } else { 1 })
                .max(1),
        }
    }
}

/// Fills `qty` of `w` at `price` (slipped), numbering the exec id. A free function so the
/// matching can borrow one symbol's orders and the settings at once.
fn fill(
    cfg: &PaperConfig,
    slip: Option<(Decimal, Decimal)>,
    w: &mut Working,
    qty: Qty,
    price: Price,
    ts: Ts,
    out: &mut Vec<Event>,
) {
    if qty <= 0 {
        return;
    }
    let price = slipped(slip, price, w.req.side);
    w.fills += 1;
    w.remaining -= qty;
    // `P-C<order>-<k>`: unique across restarts because client order ids are.
    let exec_id = if w.fills == 1 {
        w.first_exec.clone()
    } else {
        let f = w.first_exec.as_str();
        let mut id = CompactString::new(f.get(..f.len() - 1).unwrap_or_default());
        push_digits(&mut id, w.fills);
        id
    };
    out.push(Event::Fill(Fill {
        exec_id: ExecId(exec_id),
        order_id: w.req.id,
        symbol: w.req.symbol,
        side: w.req.side,
        qty,
        price,
        commission: cfg.commission.commission(qty, price),
        ts,
    }));
}

/// Moves the price against the trader by the slippage (`slip`, see [`PaperBroker`]), to 4 dp.
fn slipped(slip: Option<(Decimal, Decimal)>, price: Price, side: Side) -> Price {
    let Some((buy, sell)) = slip else {
        return price;
    };
    let factor = match side {
        Side::Buy => buy,
        Side::Sell => sell,
    };
    price
        .saturating_mul(factor)
        .round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
}

/// What every paper exec id starts with: `P-C<order>-<fill>` (the order manager's seen set
/// hashes that form by its numbers).
pub(crate) const EXEC_ID_PREFIX: &str = "P-C";

/// The first exec id `P-C<order>-1` and the broker id `P<order>`, written side by side with
/// the digits copied, so both cost one UTF-8 check and no `push_str`.
fn paper_ids(id: ClientOrderId) -> (CompactString, CompactString) {
    let mut t = IdText::new();
    t.push_ascii(EXEC_ID_PREFIX);
    t.push_u64(id.0);
    let digits_end = t.len();
    t.push_ascii("-1P");
    t.push_copy(3, digits_end);
    let (exec, broker) = t
        .as_str()
        .split_at_checked(digits_end + 2)
        .unwrap_or_default();
    (CompactString::new(exec), CompactString::new(broker))
}

/// Appends the decimal digits of `n`; a fill number is nearly always one digit.
fn push_digits(s: &mut CompactString, n: u32) {
    if n >= 10 {
        push_digits(s, n / 10);
    }
    s.push(char::from(b'0' + (n % 10) as u8));
}

fn update(order_id: ClientOrderId, status: BrokerStatus, ts: Ts) -> Event {
    Event::OrderUpdate(OrderUpdate {
        order_id,
        status,
        ts,
    })
}

/// The quote price a market order takes: the ask for a buy, the bid for a sell.
fn touch(q: &Quote, side: Side) -> Option<Price> {
    let p = match side {
        Side::Buy => q.ask,
        Side::Sell => q.bid,
    };
    (p > Decimal::ZERO).then_some(p)
}

/// The price `w` fills at on this tape, if it fills; records a stop's trigger.
fn match_price(w: &mut Working, tape: Tape<'_>) -> Option<Price> {
    let buy = w.req.side == Side::Buy;
    match tape {
        Tape::Bar(b) => match w.req.kind {
            OrderKind::Market => Some(b.open),
            OrderKind::Limit { limit } => bar_limit(b, buy, limit),
            OrderKind::Stop { stop } => {
                if w.triggered {
                    return Some(b.open);
                }
                if buy && b.high >= stop {
                    w.triggered = true;
                    Some(b.open.max(stop))
                } else if !buy && b.low <= stop {
                    w.triggered = true;
                    Some(b.open.min(stop))
                } else {
                    None
                }
            }
            OrderKind::StopLimit { stop, limit } => {
                if w.triggered {
                    return bar_limit(b, buy, limit);
                }
                let (hit, at_open) = if buy {
                    (b.high >= stop, b.open >= stop)
                } else {
                    (b.low <= stop, b.open <= stop)
                };
                if !hit {
                    return None;
                }
                w.triggered = true;
                if at_open {
                    // Live from the first trade of the bar: a plain limit for the whole bar.
                    bar_limit(b, buy, limit)
                } else {
                    // Triggered mid-bar at the stop; what came before the trigger is unknown,
                    // so only the stop price itself is sure to have traded afterwards.
                    let ok = if buy { stop <= limit } else { stop >= limit };
                    ok.then_some(stop)
                }
            }
        },
        Tape::Quote(q) => {
            let last = q.last;
            match w.req.kind {
                OrderKind::Market => touch(q, w.req.side),
                _ if last <= Decimal::ZERO => None,
                OrderKind::Limit { limit } => last_limit(last, buy, limit),
                OrderKind::Stop { stop } => {
                    if !w.triggered && (if buy { last >= stop } else { last <= stop }) {
                        w.triggered = true;
                    }
                    w.triggered.then_some(last)
                }
                OrderKind::StopLimit { stop, limit } => {
                    if !w.triggered && (if buy { last >= stop } else { last <= stop }) {
                        w.triggered = true;
                    }
                    if w.triggered {
                        last_limit(last, buy, limit)
                    } else {
                        None
                    }
                }
            }
        }
    }
}

fn bar_limit(b: &Bar, buy: bool, limit: Price) -> Option<Price> {
    if buy {
        (b.low <= limit).then(|| b.open.min(limit))
    } else {
        (b.high >= limit).then(|| b.open.max(limit))
    }
}

fn last_limit(last: Price, buy: bool, limit: Price) -> Option<Price> {
    let ok = if buy { last <= limit } else { last >= limit };
    ok.then_some(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::OrderPurpose;

    const S: SymbolId = SymbolId(0);

    fn cfg(fill: FillPolicy) -> PaperConfig {
        PaperConfig {
            fill,
            slippage_bps: Decimal::ZERO,
            commission: CommissionModel::Zero,
            max_volume_pct: None,
        }
    }

    fn order(id: u64, side: Side, qty: Qty, kind: OrderKind) -> OrderRequest {
        OrderRequest {
            id: ClientOrderId(id),
            symbol: S,
            side,
            qty,
            kind,
            tif: Tif::Gtc,
            purpose: OrderPurpose::Entry,
            ts: Ts(5),
        }
    }

    fn bar(t: i64, o: Decimal, h: Decimal, l: Decimal, c: Decimal) -> Bar {
        Bar {
            symbol: S,
            ts: Ts(t),
            open: o,
            high: h,
            low: l,
            close: c,
            volume: 1_000_000,
        }
    }

    /// (exec id, qty, price, commission, ts) of each fill.
    fn fills(ev: &[Event]) -> Vec<(String, Qty, Decimal, Decimal, Ts)> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Fill(f) => {
                    Some((f.exec_id.0.to_string(), f.qty, f.price, f.commission, f.ts))
                }
                _ => None,
            })
            .collect()
    }

    fn prices(ev: &[Event]) -> Vec<Decimal> {
        fills(ev).into_iter().map(|f| f.2).collect()
    }

    fn statuses(ev: &[Event]) -> Vec<BrokerStatus> {
        ev.iter()
            .filter_map(|e| match e {
                Event::OrderUpdate(u) => Some(u.status.clone()),
                _ => None,
            })
            .collect()
    }

    /// Places one order, runs the bars, returns the fill prices.
    fn run(kind: OrderKind, side: Side, bars: &[Bar]) -> Vec<Decimal> {
        let mut p = PaperBroker::new(cfg(FillPolicy::NextOpen), 1);
        let mut ev = Vec::new();
        p.place(&order(1, side, 10, kind), &mut ev);
        for b in bars {
            p.on_bar(b, &mut ev);
        }
        prices(&ev)
    }

    #[test]
    fn market_next_open_with_ib_commission() {
        let mut p = PaperBroker::new(
            PaperConfig {
                commission: CommissionModel::IbFixed,
                ..cfg(FillPolicy::NextOpen)
            },
            1,
        );
        let mut ev = Vec::new();
        p.place(&order(7, Side::Buy, 100, OrderKind::Market), &mut ev);
        assert_eq!(
            ev,
            vec![Event::OrderUpdate(OrderUpdate {
                order_id: ClientOrderId(7),
                status: BrokerStatus::Submitted {
                    broker_id: Some("P7".into())
                },
                ts: Ts(5)
            })]
        );
        assert_eq!(p.working(), 1);
        ev.clear();
        // Another symbol's bar does not touch it.
        p.on_bar(
            &Bar {
                symbol: SymbolId(3),
                ..bar(60, dec!(1), dec!(1), dec!(1), dec!(1))
            },
            &mut ev,
        );
        assert!(ev.is_empty());
        p.on_bar(&bar(60, dec!(10), dec!(11), dec!(9), dec!(10.5)), &mut ev);
        // 100 × 0.005 = 0.50 → $1.00 minimum (cap 1% × 1000 = 10).
        assert_eq!(
            fills(&ev),
            vec![("P-C7-1".to_string(), 100, dec!(10), dec!(1.00), Ts(60))]
        );
        assert_eq!(p.working(), 0);
        assert_eq!(p.last_close(S), Some(dec!(10.5)));
    }

    #[test]
    fn close_policy_fills_at_last_close_or_waits_for_open() {
        let mut p = PaperBroker::new(cfg(FillPolicy::Close), 1);
        let mut ev = Vec::new();
        // No close seen yet: waits for the next bar's open.
        p.place(&order(1, Side::Buy, 10, OrderKind::Market), &mut ev);
        assert_eq!(p.working(), 1);
        p.on_bar(&bar(60, dec!(20), dec!(21), dec!(19), dec!(20.5)), &mut ev);
        assert_eq!(prices(&ev), vec![dec!(20)]);
        ev.clear();
        p.place(&order(2, Side::Sell, 10, OrderKind::Market), &mut ev);
        assert!(
            matches!(&ev[0], Event::OrderUpdate(u) if matches!(u.status, BrokerStatus::Submitted { .. }))
        );
        assert_eq!(
            fills(&ev),
            vec![("P-C2-1".to_string(), 10, dec!(20.5), dec!(0), Ts(5))]
        );
        assert_eq!(p.working(), 0);
        // Limits are not filled at placement.
        ev.clear();
        p.place(
            &order(3, Side::Buy, 10, OrderKind::Limit { limit: dec!(25) }),
            &mut ev,
        );
        assert_eq!(fills(&ev), vec![]);
        assert_eq!(p.working(), 1);
    }

    #[test]
    fn limit_orders() {
        let l = OrderKind::Limit { limit: dec!(9.50) };
        assert_eq!(
            run(
                l,
                Side::Buy,
                &[bar(1, dec!(10), dec!(10.2), dec!(9.6), dec!(10))]
            ),
            vec![]
        );
        assert_eq!(
            run(
                l,
                Side::Buy,
                &[bar(1, dec!(10), dec!(10.2), dec!(9.4), dec!(10))]
            ),
            vec![dec!(9.50)]
        );
        assert_eq!(
            run(
                l,
                Side::Buy,
                &[bar(1, dec!(9), dec!(9.2), dec!(8.9), dec!(9))]
            ),
            vec![dec!(9)]
        );
        let l = OrderKind::Limit { limit: dec!(10.50) };
        assert_eq!(
            run(
                l,
                Side::Sell,
                &[bar(1, dec!(10), dec!(10.4), dec!(9.9), dec!(10))]
            ),
            vec![]
        );
        assert_eq!(
            run(
                l,
                Side::Sell,
                &[bar(1, dec!(10), dec!(10.6), dec!(9.9), dec!(10))]
            ),
            vec![dec!(10.50)]
        );
        assert_eq!(
            run(
                l,
                Side::Sell,
                &[bar(1, dec!(11), dec!(11.5), dec!(10.9), dec!(11))]
            ),
            vec![dec!(11)]
        );
    }

    #[test]
    fn stop_orders() {
        let s = OrderKind::Stop { stop: dec!(10.50) };
        assert_eq!(
            run(
                s,
                Side::Buy,
                &[bar(1, dec!(10), dec!(10.4), dec!(9.9), dec!(10))]
            ),
            vec![]
        );
        assert_eq!(
            run(
                s,
                Side::Buy,
                &[bar(1, dec!(10), dec!(10.6), dec!(9.9), dec!(10))]
            ),
            vec![dec!(10.50)]
        );
        assert_eq!(
            run(
                s,
                Side::Buy,
                &[bar(1, dec!(11), dec!(11.2), dec!(10.9), dec!(11))]
            ),
            vec![dec!(11)]
        );
        let s = OrderKind::Stop { stop: dec!(9.50) };
        assert_eq!(
            run(
                s,
                Side::Sell,
                &[bar(1, dec!(10), dec!(10.1), dec!(9.6), dec!(10))]
            ),
            vec![]
        );
        assert_eq!(
            run(
                s,
                Side::Sell,
                &[bar(1, dec!(10), dec!(10.1), dec!(9.4), dec!(10))]
            ),
            vec![dec!(9.50)]
        );
        assert_eq!(
            run(
                s,
                Side::Sell,
                &[bar(1, dec!(9), dec!(9.1), dec!(8.8), dec!(9))]
            ),
            vec![dec!(9)]
        );
    }

    #[test]
    fn stop_limit_orders() {
        // Triggered mid-bar at 10.50, within the 10.70 limit: fills at the stop.
        let k = OrderKind::StopLimit {
            stop: dec!(10.50),
            limit: dec!(10.70),
        };
        assert_eq!(
            run(
                k,
                Side::Buy,
                &[bar(1, dec!(10), dec!(10.6), dec!(9.9), dec!(10))]
            ),
            vec![dec!(10.50)]
        );
        // Gap above the stop: a limit for the whole bar, min(open 10.80, limit 10.70).
        assert_eq!(
            run(
                k,
                Side::Buy,
                &[bar(1, dec!(10.8), dec!(11), dec!(10.6), dec!(10.9))]
            ),
            vec![dec!(10.70)]
        );
        // Gap above the stop and the limit, never back down: triggered, not filled, until a
        // later bar trades at the limit: min(open 10.65, 10.70).
        let bars = [
            bar(1, dec!(10.8), dec!(11), dec!(10.75), dec!(10.9)),
            bar(2, dec!(10.65), dec!(10.66), dec!(10.6), dec!(10.6)),
        ];
        assert_eq!(run(k, Side::Buy, &bars), vec![dec!(10.65)]);
        // Stop above limit, triggered mid-bar: no fill that bar; a limit afterwards.
        let k = OrderKind::StopLimit {
            stop: dec!(10.50),
            limit: dec!(10.40),
        };
        let bars = [
            bar(1, dec!(10), dec!(10.6), dec!(9.9), dec!(10.45)),
            bar(2, dec!(10.3), dec!(10.35), dec!(10.2), dec!(10.3)),
        ];
        assert_eq!(run(k, Side::Buy, &bars[..1]), vec![]);
        assert_eq!(run(k, Side::Buy, &bars), vec![dec!(10.3)]);
        // Untouched stop: nothing even if the limit would be marketable.
        assert_eq!(run(k, Side::Buy, &bars[1..]), vec![]);
        // Sell side: stop 9.50, limit 9.40, triggered mid-bar → 9.50.
        let k = OrderKind::StopLimit {
            stop: dec!(9.50),
            limit: dec!(9.40),
        };
        assert_eq!(
            run(
                k,
                Side::Sell,
                &[bar(1, dec!(10), dec!(10.1), dec!(9.45), dec!(9.6))]
            ),
            vec![dec!(9.50)]
        );
        // Gap below: limit for the bar, max(open 9.30, 9.40) needs high >= 9.40.
        assert_eq!(
            run(
                k,
                Side::Sell,
                &[bar(1, dec!(9.3), dec!(9.45), dec!(9.2), dec!(9.3))]
            ),
            vec![dec!(9.40)]
        );
        assert_eq!(
            run(
                k,
                Side::Sell,
                &[bar(1, dec!(9.3), dec!(9.35), dec!(9.2), dec!(9.3))]
            ),
            vec![]
        );
    }

    #[test]
    fn adverse_slippage_rounds_to_4dp_away_from_zero() {
        let mk = |bps: Decimal| {
            PaperBroker::new(
                PaperConfig {
                    slippage_bps: bps,
                    ..cfg(FillPolicy::NextOpen)
                },
                1,
            )
        };
        let mut ev = Vec::new();
        let mut p = mk(dec!(10));
        p.place(&order(1, Side::Buy, 1, OrderKind::Market), &mut ev);
        p.place(&order(2, Side::Sell, 1, OrderKind::Market), &mut ev);
        p.on_bar(&bar(1, dec!(10), dec!(10), dec!(10), dec!(10)), &mut ev);
        // 10 × 1.001 = 10.01; 10 × 0.999 = 9.99.
        assert_eq!(prices(&ev), vec![dec!(10.01), dec!(9.99)]);
        ev.clear();
        p.place(&order(3, Side::Sell, 1, OrderKind::Market), &mut ev);
        p.on_bar(
            &bar(2, dec!(33.333), dec!(34), dec!(33), dec!(33.5)),
            &mut ev,
        );
        // 33.333 × 0.999 = 33.299667 → 33.2997.
        assert_eq!(prices(&ev), vec![dec!(33.2997)]);
        ev.clear();
        let mut p = mk(dec!(2));
        p.place(&order(4, Side::Buy, 1, OrderKind::Market), &mut ev);
        p.on_bar(
            &bar(1, dec!(1.25), dec!(1.3), dec!(1.2), dec!(1.25)),
            &mut ev,
        );
        // 1.25 × 1.0002 = 1.25025: a midpoint, away from zero → 1.2503 (banker's: 1.2502).
        assert_eq!(prices(&ev), vec![dec!(1.2503)]);
        ev.clear();
        // 0 bps keeps the exact price, even past 4 dp.
        let mut p = mk(dec!(0));
        p.place(&order(5, Side::Buy, 1, OrderKind::Market), &mut ev);
        p.on_bar(
            &bar(1, dec!(1.23456), dec!(1.3), dec!(1.2), dec!(1.25)),
            &mut ev,
        );
        assert_eq!(prices(&ev), vec![dec!(1.23456)]);
    }

    #[test]
    fn partial_fills_by_volume() {
        let mut p = PaperBroker::new(
            PaperConfig {
                max_volume_pct: Some(dec!(0.1)),
                ..cfg(FillPolicy::NextOpen)
            },
            1,
        );
        let mut ev = Vec::new();
        p.place(&order(1, Side::Buy, 60, OrderKind::Market), &mut ev);
        let b = |t: i64, v: u64| Bar {
            volume: v,
            ..bar(t, dec!(10), dec!(10), dec!(10), dec!(10))
        };
        // 10% of 250 = 25 per bar: 25, 25, 10.
        for t in 1..=3 {
            p.on_bar(&b(t, 250), &mut ev);
        }
        let got: Vec<_> = fills(&ev).into_iter().map(|f| (f.0, f.1, f.4)).collect();
        assert_eq!(
            got,
            vec![
                ("P-C1-1".to_string(), 25, Ts(1)),
                ("P-C1-2".to_string(), 25, Ts(2)),
                ("P-C1-3".to_string(), 10, Ts(3)),
            ]
        );
        assert_eq!(p.working(), 0);
        // The budget is shared, oldest order first: 20 then 5 of 20.
        ev.clear();
        p.place(&order(2, Side::Buy, 20, OrderKind::Market), &mut ev);
        p.place(&order(3, Side::Sell, 20, OrderKind::Market), &mut ev);
        p.on_bar(&b(4, 259), &mut ev);
        let got: Vec<_> = fills(&ev).into_iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(
            got,
            vec![("P-C2-1".to_string(), 20), ("P-C3-1".to_string(), 5)]
        );
        assert_eq!(p.working(), 1);
        // Tiny volume: floor(0.1 × 5) = 0 → at least 1 share.
        ev.clear();
        p.on_bar(&b(5, 5), &mut ev);
        assert_eq!(
            fills(&ev).into_iter().map(|f| f.1).collect::<Vec<_>>(),
            vec![1]
        );
    }

    proptest::proptest! {
        /// The two ids written side by side are exactly the formatted ones, for any id.
        #[test]
        fn paper_ids_match_format(id: u64) {
            let (exec, broker) = paper_ids(ClientOrderId(id));
            proptest::prop_assert_eq!(&exec, &format!("P-C{id}-1"));
            proptest::prop_assert_eq!(broker, format!("P{id}"));
            // The order manager's seen set reads this form by its numbers (up to 18 digits).
            if id < 10u64.pow(18) {
                let low = |h: u64| h & !(0x7F << 57);
                let key = crate::orders::sequential_hash(&exec).map(low);
                proptest::prop_assert_eq!(key, Some(low(id.wrapping_mul(4).wrapping_add(1))));
            }
        }
    }

    #[test]
    fn a_pass_that_fills_some_orders_keeps_the_rest_working() {
        let mut p = PaperBroker::new(
            PaperConfig {
                max_volume_pct: Some(dec!(0.01)),
                ..cfg(FillPolicy::NextOpen)
            },
            1,
        );
        let mut ev = Vec::new();
        p.place(&order(1, Side::Buy, 5, OrderKind::Market), &mut ev);
        p.place(
            &order(2, Side::Buy, 5, OrderKind::Limit { limit: dec!(1) }),
            &mut ev,
        );
        p.place(&order(3, Side::Sell, 8, OrderKind::Market), &mut ev);
        p.place(&order(4, Side::Sell, 2, OrderKind::Market), &mut ev);
        ev.clear();
        // A budget of 10: order 1 fills, the limit does not match, order 3 gets 5 of 8, and
        // the budget is gone before order 4.
        p.on_bar(
            &Bar {
                volume: 1000,
                ..bar(1, dec!(10), dec!(10), dec!(10), dec!(10))
            },
            &mut ev,
        );
        let got: Vec<_> = fills(&ev).into_iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(
            got,
            vec![("P-C1-1".to_string(), 5), ("P-C3-1".to_string(), 5)]
        );
        assert_eq!(p.working(), 3);
        assert!(!p.is_working(ClientOrderId(1)));
        for id in [2, 3, 4] {
            assert!(p.is_working(ClientOrderId(id)));
        }
    }

    #[test]
    fn fill_numbers_past_nine_keep_all_digits() {
        for n in [0u32, 1, 9, 10, 11, 99, 100, 12345, u32::MAX] {
            let mut s = CompactString::const_new("P-C7-");
            push_digits(&mut s, n);
            assert_eq!(s, format!("P-C7-{n}"));
        }
    }

    #[test]
    fn exec_ids_number_every_fill() {
        let mut p = PaperBroker::new(
            PaperConfig {
                max_volume_pct: Some(dec!(0.0001)),
                ..cfg(FillPolicy::NextOpen)
            },
            1,
        );
        let mut ev = Vec::new();
        p.place(&order(123456, Side::Buy, 12, OrderKind::Market), &mut ev);
        assert_eq!(
            statuses(&ev),
            vec![BrokerStatus::Submitted {
                broker_id: Some("P123456".into())
            }]
        );
        // One share per bar: volume 10 allows floor(0.001) = 0, raised to 1.
        for t in 1..=12 {
            let b = Bar {
                volume: 10,
                ..bar(t, dec!(10), dec!(10), dec!(10), dec!(10))
            };
            p.on_bar(&b, &mut ev);
        }
        let ids: Vec<_> = fills(&ev).into_iter().map(|f| f.0).collect();
        let want: Vec<_> = (1..=12).map(|k| format!("P-C123456-{k}")).collect();
        assert_eq!(ids, want);
    }

    #[test]
    fn triggered_stop_remainder_fills_at_later_opens() {
        let mut p = PaperBroker::new(
            PaperConfig {
                max_volume_pct: Some(dec!(0.01)),
                ..cfg(FillPolicy::NextOpen)
            },
            1,
        );
        let mut ev = Vec::new();
        p.place(
            &order(1, Side::Sell, 15, OrderKind::Stop { stop: dec!(9.5) }),
            &mut ev,
        );
        let b1 = Bar {
            volume: 1000,
            ..bar(1, dec!(10), dec!(10), dec!(9.4), dec!(9.6))
        };
        let b2 = Bar {
            volume: 1000,
            ..bar(2, dec!(9.8), dec!(9.9), dec!(9.7), dec!(9.8))
        };
        p.on_bar(&b1, &mut ev);
        p.on_bar(&b2, &mut ev);
        let got: Vec<_> = fills(&ev).into_iter().map(|f| (f.1, f.2)).collect();
        assert_eq!(got, vec![(10, dec!(9.5)), (5, dec!(9.8))]);
    }

    #[test]
    fn day_orders_expire_gtc_stay() {
        let mut p = PaperBroker::new(cfg(FillPolicy::NextOpen), 2);
        let mut ev = Vec::new();
        let day = OrderRequest {
            tif: Tif::Day,
            ..order(1, Side::Buy, 5, OrderKind::Limit { limit: dec!(1) })
        };
        p.place(&day, &mut ev);
        p.place(
            &order(2, Side::Buy, 5, OrderKind::Limit { limit: dec!(1) }),
            &mut ev,
        );
        let day2 = OrderRequest {
            symbol: SymbolId(1),
            ..day
        };
        let day2 = OrderRequest {
            id: ClientOrderId(3),
            ..day2
        };
        p.place(&day2, &mut ev);
        ev.clear();
        p.expire_day_orders(Ts(99), &mut ev);
        let ids: Vec<_> = ev
            .iter()
            .map(|e| match e {
                Event::OrderUpdate(u) => (u.order_id.0, u.status.clone(), u.ts),
                _ => panic!("unexpected {e:?}"),
            })
            .collect();
        assert_eq!(
            ids,
            vec![
                (1, BrokerStatus::Expired, Ts(99)),
                (3, BrokerStatus::Expired, Ts(99))
            ]
        );
        assert_eq!(p.working(), 1);
        assert!(p.is_working(ClientOrderId(2)));
    }

    #[test]
    fn cancel_and_reject() {
        let mut p = PaperBroker::new(cfg(FillPolicy::NextOpen), 1);
        let mut ev = Vec::new();
        p.place(
            &order(1, Side::Buy, 5, OrderKind::Limit { limit: dec!(1) }),
            &mut ev,
        );
        ev.clear();
        p.cancel(ClientOrderId(1), Ts(9), &mut ev);
        assert_eq!(
            statuses(&ev),
            vec![BrokerStatus::Cancelled {
                reason: "cancelled by request".into()
            }]
        );
        assert_eq!(p.working(), 0);
        ev.clear();
        p.cancel(ClientOrderId(1), Ts(9), &mut ev);
        p.cancel(ClientOrderId(42), Ts(9), &mut ev);
        assert!(ev.is_empty());

        let reasons = |p: &mut PaperBroker, r: OrderRequest| {
            let mut ev = Vec::new();
            p.place(&r, &mut ev);
            match statuses(&ev).as_slice() {
                [BrokerStatus::Rejected { reason }] => reason.clone(),
                other => panic!("expected a rejection, got {other:?}"),
            }
        };
        assert!(reasons(&mut p, order(2, Side::Buy, 0, OrderKind::Market)).contains("qty"));
        assert!(reasons(
            &mut p,
            order(3, Side::Buy, 1, OrderKind::Limit { limit: dec!(-1) })
        )
        .contains("limit"));
        assert!(reasons(
            &mut p,
            order(4, Side::Buy, 1, OrderKind::Stop { stop: dec!(0) })
        )
        .contains("stop"));
        let sl = OrderKind::StopLimit {
            stop: dec!(1),
            limit: dec!(0),
        };
        assert!(reasons(&mut p, order(5, Side::Buy, 1, sl)).contains("limit"));
        assert_eq!(p.working(), 0);
        p.place(
            &order(6, Side::Buy, 1, OrderKind::Limit { limit: dec!(1) }),
            &mut ev,
        );
        assert!(reasons(&mut p, order(6, Side::Buy, 1, OrderKind::Market)).contains("duplicate"));
        assert_eq!(p.working(), 1);
    }

    #[test]
    fn quote_policy() {
        let mut p = PaperBroker::new(cfg(FillPolicy::Quote), 1);
        let q = |t: i64, bid: Decimal, ask: Decimal, last: Decimal| Quote {
            symbol: S,
            ts: Ts(t),
            bid,
            ask,
            last,
        };
        let mut ev = Vec::new();
        // No quote yet: the buy waits, then takes the ask of the next quote.
        p.place(&order(1, Side::Buy, 10, OrderKind::Market), &mut ev);
        assert_eq!(p.working(), 1);
        p.on_quote(&q(7, dec!(9.9), dec!(10.1), dec!(10)), &mut ev);
        assert_eq!(
            fills(&ev),
            vec![("P-C1-1".to_string(), 10, dec!(10.1), dec!(0), Ts(7))]
        );
        ev.clear();
        // With a quote known, a sell fills at once at the bid.
        p.place(&order(2, Side::Sell, 10, OrderKind::Market), &mut ev);
        assert_eq!(prices(&ev), vec![dec!(9.9)]);
        ev.clear();
        // Limits and stops work against `last`.
        p.place(
            &order(3, Side::Buy, 10, OrderKind::Limit { limit: dec!(10) }),
            &mut ev,
        );
        p.place(
            &order(4, Side::Sell, 10, OrderKind::Stop { stop: dec!(9.5) }),
            &mut ev,
        );
        p.on_quote(&q(8, dec!(9.99), dec!(10.01), dec!(10.05)), &mut ev);
        assert_eq!(prices(&ev), vec![]);
        p.on_quote(&q(9, dec!(9.97), dec!(9.99), dec!(9.98)), &mut ev);
        assert_eq!(prices(&ev), vec![dec!(9.98)]);
        p.on_quote(&q(10, dec!(9.3), dec!(9.5), dec!(9.4)), &mut ev);
        assert_eq!(prices(&ev), vec![dec!(9.98), dec!(9.4)]);
        assert_eq!(p.working(), 0);
        // Bars still fill what quotes have not.
        ev.clear();
        let mut p = PaperBroker::new(cfg(FillPolicy::Quote), 1);
        p.place(&order(5, Side::Buy, 10, OrderKind::Market), &mut ev);
        p.on_bar(&bar(11, dec!(12), dec!(12), dec!(12), dec!(12)), &mut ev);
        assert_eq!(prices(&ev), vec![dec!(12)]);
    }

    #[test]
    fn quotes_do_not_fill_under_bar_policies() {
        let mut p = PaperBroker::new(cfg(FillPolicy::NextOpen), 1);
        let mut ev = Vec::new();
        p.place(&order(1, Side::Buy, 10, OrderKind::Market), &mut ev);
        let q = Quote {
            symbol: S,
            ts: Ts(7),
            bid: dec!(9),
            ask: dec!(10),
            last: dec!(9.5),
        };
        p.on_quote(&q, &mut ev);
        assert_eq!(prices(&ev), vec![]);
        assert_eq!(p.working(), 1);
    }
}
