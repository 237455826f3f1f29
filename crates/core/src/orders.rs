//! The order manager: one state machine per order, client order ids that resume across
//! restarts, and fill idempotency keyed by [`ExecId`].
//!
//! Brokers deliver status and fills out of order (a fill before the ack, an ack after the
//! fill, the same execution twice after a reconnect). The manager accepts every legal order
//! of arrival, lets terminal states absorb late news, and says exactly what each message did.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::events::{BrokerStatus, OrderUpdate};
use crate::types::{ClientOrderId, ExecId, Fill, OrderRequest, Price, Qty, SymbolId, Ts};

/// An order's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    New,
    Submitted,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
}

impl OrderState {
    /// Still working (or about to be): New, Submitted or PartiallyFilled.
    pub const fn is_open(self) -> bool {
        matches!(
            self,
            OrderState::New | OrderState::Submitted | OrderState::PartiallyFilled
        )
    }
    /// Filled, Cancelled or Rejected: nothing moves it any more.
    pub const fn is_terminal(self) -> bool {
        !self.is_open()
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderState::New => "new",
            OrderState::Submitted => "submitted",
            OrderState::PartiallyFilled => "partially_filled",
            OrderState::Filled => "filled",
            OrderState::Cancelled => "cancelled",
            OrderState::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "new" => Some(OrderState::New),
            "submitted" => Some(OrderState::Submitted),
            "partially_filled" => Some(OrderState::PartiallyFilled),
            "filled" => Some(OrderState::Filled),
            "cancelled" => Some(OrderState::Cancelled),
            "rejected" => Some(OrderState::Rejected),
            _ => None,
        }
    }
}

impl std::fmt::Display for OrderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order and everything known about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedOrder {
    pub req: OrderRequest,
    pub state: OrderState,
    /// Shares filled so far.
    pub filled: Qty,
    /// Volume-weighted average fill price; `None` before the first fill.
    pub avg_fill_price: Option<Price>,
    pub broker_id: Option<compact_str::CompactString>,
    /// Why it was cancelled or rejected.
    pub reason: Option<String>,
    /// Time of the last change.
    pub updated: Ts,
}

impl ManagedOrder {
    pub fn new(req: OrderRequest) -> Self {
        ManagedOrder {
            req,
            state: OrderState::New,
            filled: 0,
            avg_fill_price: None,
            broker_id: None,
            reason: None,
            updated: req.ts,
        }
    }
    /// Shares still to fill.
    pub fn remaining(&self) -> Qty {
        (self.req.qty - self.filled).max(0)
    }
}

/// What a status update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    Changed {
        from: OrderState,
        to: OrderState,
    },
    /// Already in that state, or a terminal state absorbed it (e.g. a late ack).
    Unchanged,
    UnknownOrder,
    /// Not applied: e.g. Cancelled after Filled.
    IllegalTransition {
        from: OrderState,
        to: OrderState,
    },
}

/// What a fill did to its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillOutcome {
    /// Counted against the order (`from == to` when a terminal order received a late fill).
    Applied { from: OrderState, to: OrderState },
    /// This exec id was seen before: ignore the fill everywhere.
    Duplicate,
    /// No such order in memory (the exec id is still recorded).
    UnknownOrder,
    /// More shares than the order has left (or a non-positive quantity): not counted against
    /// the order; reported.
    Overfill,
}

impl FillOutcome {
    /// True for every fill seen for the first time: a real execution the ledger must book,
    /// whatever the order's bookkeeping made of it.
    pub const fn is_new_execution(self) -> bool {
        !matches!(self, FillOutcome::Duplicate)
    }
}

/// Finished orders kept in memory (for late fills and status reads) before the oldest are
/// dropped; the store keeps all of them. A late fill comes seconds after its order
/// finished, hundreds of orders sooner than this; one for an order already dropped is
/// still booked (as an execution of an unknown order) and still deduplicated by exec id.
/// Kept small on purpose: the map then stays in the CPU's near caches, which the engine
/// benchmark measured at about a fifth of its time per bar against 4096.
pub const KEEP_CLOSED: usize = 256;

/// Exec ids the seen set holds before it first grows. It never shrinks (a duplicate must be
/// caught however late it comes), so growing it moves every id; starting at 16 Ki means a
/// day's trading, or a long backtest, rarely pays that (about 0.5 MiB reserved, resident as
/// it fills).
const SEEN_RESERVE: usize = 16 * 1024;

/// A multiplicative hash for client order ids: sequential integers, not attacker-chosen.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHasher(u64);

/// The odd multiplier (2^64 / φ) the id hashes mix with.
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(MIX);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(MIX);
    }
}

type IdBuild = std::hash::BuildHasherDefault<IdHasher>;

/// An exec id with its hash, worked out once: the seen set only grows, and growing it
/// rehashes every member, which then costs a load instead of hashing text again. Equality
/// is still the id's, so the set stays exact.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenExec {
    hash: u64,
    id: ExecId,
}

impl SeenExec {
    fn new(id: ExecId) -> Self {
        use std::hash::Hasher;
        let hash = sequential_hash(id.as_str()).unwrap_or_else(|| {
            let mut h = crate::types::TextHasher::default();
            h.write(id.as_str().as_bytes());
            h.finish()
        });
        SeenExec { hash, id }
    }
}

/// The paper broker's exec ids, `P-C<order>-<fill>`, arrive in order-number order. Hashed by
/// those numbers (low bits: order × 4 + fill, which the table picks buckets with; top 7
/// bits: a mix, the buckets' tags), consecutive fills land in neighbouring buckets, so the
/// set, which grows by every fill of a long backtest, is written like an array instead of at
/// random. Only the bucket changes: equality is still the whole id. Other ids (IB's) take
/// the text hash.
pub(crate) fn sequential_hash(id: &str) -> Option<u64> {
    let rest = id
        .as_bytes()
        .strip_prefix(crate::paper::EXEC_ID_PREFIX.as_bytes())?;
    // One pass: 1 to 18 digits, a '-', then 1 to 18 digits and nothing else.
    let number = |s: &[u8]| -> Option<(u64, usize)> {
        let mut n = 0u64;
        let mut len = 0;
        for &b in s {
            if !b.is_ascii_digit() {
                break;
            }
            if len == 18 {
                return None;
            }
            n = n * 10 + u64::from(b - b'0');
            len += 1;
        }
        (len > 0).then_some((n, len))
    };
    let (order, used) = number(rest)?;
    let tail = rest[used..].strip_prefix(b"-")?;
    let (fill, used) = number(tail)?;
    if used != tail.len() {
        return None;
    }
    let n = order.wrapping_mul(4).wrapping_add(fill & 3);
    Some(n ^ (n.wrapping_mul(MIX) & (0x7F << 57)))
}

impl std::hash::Hash for SeenExec {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hands a [`SeenExec`]'s stored hash to the table unchanged.
#[derive(Debug, Clone, Copy, Default)]
struct StoredHash(u64);

impl std::hash::Hasher for StoredHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `SeenExec` only calls `write_u64`; anything else is still mixed in, not dropped.
        let mut h = IdHasher(self.0);
        h.write(bytes);
        self.0 = h.finish();
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// All orders in memory, their states, and the exec ids already seen.
#[derive(Debug, Clone, Default)]
pub struct OrderManager {
    next_seq: u64,
    orders: HashMap<ClientOrderId, ManagedOrder, IdBuild>,
    /// Finished orders in the order they finished; beyond [`KEEP_CLOSED`] the oldest leave
    /// memory, so a long backtest holds a bounded number of orders.
    closed: VecDeque<ClientOrderId>,
    /// The highest id dropped from memory: an `insert` at or below it is a replay, not a new
    /// intent.
    dropped_up_to: Option<ClientOrderId>,
    seen: HashSet<SeenExec, std::hash::BuildHasherDefault<StoredHash>>,
    /// Open orders per symbol, indexed by `SymbolId`.
    open_per_sym: Vec<u32>,
}

impl OrderManager {
    /// A manager whose first new id is `ClientOrderId(next_seq)`.
    pub fn new(next_seq: u64) -> Self {
        // Sized for the orders kept in memory, so a backtest does not rehash them (nor the
        // first `SEEN_RESERVE` exec ids) while it warms up; the space is reserved, and only
        // pages that are written become resident.
        OrderManager {
            next_seq,
            orders: HashMap::with_capacity_and_hasher(KEEP_CLOSED + 64, IdBuild::default()),
            closed: VecDeque::with_capacity(KEEP_CLOSED + 1),
            seen: HashSet::with_capacity_and_hasher(SEEN_RESERVE, Default::default()),
            ..Default::default()
        }
    }

    /// Hands out the next client order id.
    pub fn next_id(&mut self) -> ClientOrderId {
        let id = ClientOrderId(self.next_seq);
        self.next_seq = self.next_seq.saturating_add(1);
        id
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn bump_seq_past(&mut self, id: ClientOrderId) {
        if id.0 >= self.next_seq {
            self.next_seq = id.0.saturating_add(1);
        }
    }

    fn count_open(&mut self, sym: SymbolId, delta: i32) {
        let i = sym.index();
        if i >= self.open_per_sym.len() {
            self.open_per_sym.resize(i + 1, 0);
        }
        let c = &mut self.open_per_sym[i];
        *c = c.saturating_add_signed(delta);
    }

    /// Remembers that `id` finished, and lets the oldest finished orders go.
    fn note_closed(&mut self, id: ClientOrderId) {
        self.closed.push_back(id);
        while self.closed.len() > KEEP_CLOSED {
            let Some(old) = self.closed.pop_front() else {
                break;
            };
            // Still terminal (restore may have replaced it), so it is safe to forget.
            if let Entry::Occupied(e) = self.orders.entry(old) {
                if e.get().state.is_open() {
                    continue;
                }
                e.remove();
                if self.dropped_up_to.is_none_or(|d| old > d) {
                    self.dropped_up_to = Some(old);
                }
            }
        }
    }

    /// Tracks an order in state New. A second insert of the same id changes nothing, so one
    /// intent never becomes two orders (also after the first has left memory).
    pub fn insert(&mut self, req: OrderRequest) {
        if self.dropped_up_to.is_some_and(|d| req.id <= d) {
            return;
        }
        match self.orders.entry(req.id) {
            Entry::Occupied(_) => return,
            Entry::Vacant(v) => {
                v.insert(ManagedOrder::new(req));
            }
        }
        self.bump_seq_past(req.id);
        self.count_open(req.symbol, 1);
    }

    /// Puts back an order loaded from the store after a restart (replacing any in memory).
    pub fn restore(&mut self, order: ManagedOrder) {
        self.bump_seq_past(order.req.id);
        let (id, open) = (order.req.id, order.state.is_open());
        if open {
            self.count_open(order.req.symbol, 1);
        }
        if let Some(old) = self.orders.insert(id, order) {
            if old.state.is_open() {
                self.count_open(old.req.symbol, -1);
            }
        }
        if !open {
            self.note_closed(id);
        }
    }

    /// Records an exec id loaded from the store, so a replayed fill is a Duplicate.
    pub fn mark_exec_seen(&mut self, exec: &ExecId) {
        self.seen.insert(SeenExec::new(exec.clone()));
    }

    pub fn exec_seen(&self, exec: &ExecId) -> bool {
        self.seen.contains(&SeenExec::new(exec.clone()))
    }

    /// Book-keeping after `id` (of `sym`) went from `from` to `to` (the caller set the state
    /// through the reference it already had, so the map is searched once per message).
    fn after_state_change(
        &mut self,
        id: ClientOrderId,
        sym: SymbolId,
        from: OrderState,
        to: OrderState,
    ) {
        if from.is_open() && !to.is_open() {
            self.count_open(sym, -1);
            self.note_closed(id);
        }
    }

    /// Applies a broker status update.
    pub fn on_update(&mut self, u: &OrderUpdate) -> UpdateOutcome {
        let Some(o) = self.orders.get_mut(&u.order_id) else {
            return UpdateOutcome::UnknownOrder;
        };
        let from = o.state;
        // The reason is only copied once the transition is known to apply.
        let (to, reason): (_, Option<&str>) = match &u.status {
            BrokerStatus::Submitted { broker_id } => {
                // Keep the broker's id whenever it comes, even on a late ack.
                if o.broker_id.is_none() {
                    o.broker_id.clone_from(broker_id);
                }
                if from != OrderState::New {
                    // Already working, filling or done: the ack adds nothing.
                    return UpdateOutcome::Unchanged;
                }
                (OrderState::Submitted, None)
            }
            BrokerStatus::Cancelled { reason } => (OrderState::Cancelled, Some(reason)),
            BrokerStatus::Rejected { reason } => (OrderState::Rejected, Some(reason)),
            BrokerStatus::Expired => (OrderState::Cancelled, Some("expired")),
        };
        if from == to {
            return UpdateOutcome::Unchanged;
        }
        if from.is_terminal() {
            return UpdateOutcome::IllegalTransition { from, to };
        }
        o.reason = reason.map(str::to_owned);
        o.updated = u.ts;
        o.state = to;
        let sym = o.req.symbol;
        self.after_state_change(u.order_id, sym, from, to);
        UpdateOutcome::Changed { from, to }
    }

    /// Applies a fill to its order, once per exec id.
    pub fn on_fill(&mut self, f: &Fill) -> FillOutcome {
        // One probe: `insert` says whether the id was new (an inline id clones for free).
        if !self.seen.insert(SeenExec::new(f.exec_id.clone())) {
            return FillOutcome::Duplicate;
        }
        let Some(o) = self.orders.get_mut(&f.order_id) else {
            return FillOutcome::UnknownOrder;
        };
        let from = o.state;
        let filled = match o.filled.checked_add(f.qty) {
            Some(n) if f.qty > 0 && n <= o.req.qty => n,
            _ => return FillOutcome::Overfill,
        };
        o.avg_fill_price = Some(avg_after(
            o.avg_fill_price,
            o.filled,
            f.price,
            f.qty,
            filled,
        ));
        o.filled = filled;
        o.updated = f.ts;
        // A late fill on a cancelled or rejected order is booked but does not revive it.
        let to = if from.is_terminal() {
            from
        } else if filled == o.req.qty {
            OrderState::Filled
        } else {
            OrderState::PartiallyFilled
        };
        o.state = to;
        let sym = o.req.symbol;
        self.after_state_change(f.order_id, sym, from, to);
        FillOutcome::Applied { from, to }
    }

    pub fn get(&self, id: ClientOrderId) -> Option<&ManagedOrder> {
        self.orders.get(&id)
    }

    /// New, Submitted or PartiallyFilled orders, in id order (sorted here: the map is not,
    /// and the engine's commands must be deterministic).
    pub fn open_orders(&self) -> impl Iterator<Item = &ManagedOrder> {
        let mut open: Vec<&ManagedOrder> =
            self.orders.values().filter(|o| o.state.is_open()).collect();
        open.sort_unstable_by_key(|o| o.req.id);
        open.into_iter()
    }

    /// Whether any order for `sym` is still open. O(1).
    #[inline]
    pub fn has_open_for(&self, sym: SymbolId) -> bool {
        self.open_per_sym.get(sym.index()).is_some_and(|&c| c > 0)
    }

    /// Ids of open orders matching `pred`, in id order.
    pub fn open_ids_where(&self, pred: impl Fn(&ManagedOrder) -> bool) -> Vec<ClientOrderId> {
        self.open_orders()
            .filter(|o| pred(o))
            .map(|o| o.req.id)
            .collect()
    }

    /// Drops terminal orders from memory (the store has them). Exec ids are kept so a
    /// replayed fill is still a Duplicate.
    pub fn prune_closed(&mut self) {
        let mut top = self.dropped_up_to;
        self.orders.retain(|id, o| {
            let keep = o.state.is_open();
            if !keep && top.is_none_or(|d| *id > d) {
                top = Some(*id);
            }
            keep
        });
        self.dropped_up_to = top;
        self.closed.clear();
    }

    /// Orders in memory (open and not yet pruned).
    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }
}

/// The average fill price after `qty` more at `price` (`filled` in all, `prev_filled` before).
/// A first fill's average is its price, value and scale (price × qty / qty is exact), which
/// spares the `Decimal` division on almost every order.
fn avg_after(
    prev_avg: Option<Price>,
    prev_filled: Qty,
    price: Price,
    qty: Qty,
    filled: Qty,
) -> Price {
    if prev_avg.is_none() && prev_filled == 0 && first_fill_is_exact(price, qty) {
        return price;
    }
    avg_after_exact(prev_avg, prev_filled, price, qty, filled)
}

/// Whether price × qty is exact in a `Decimal` (so dividing by qty gives the price back).
fn first_fill_is_exact(price: Price, qty: Qty) -> bool {
    let m = price.mantissa();
    qty > 0
        && m > 0
        && u128::try_from(m)
            .ok()
            .and_then(|m| m.checked_mul(u128::from(qty.unsigned_abs())))
            .is_some_and(|v| v >> 96 == 0)
}

fn avg_after_exact(
    prev_avg: Option<Price>,
    prev_filled: Qty,
    price: Price,
    qty: Qty,
    filled: Qty,
) -> Price {
    let prev_value = prev_avg.map_or(Price::ZERO, |p| p.saturating_mul(Price::from(prev_filled)));
    // Saturating: a garbage price must not panic; the average is informational.
    let value = prev_value.saturating_add(price.saturating_mul(Price::from(qty)));
    value / Price::from(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{OrderKind, OrderPurpose, Side, Tif};
    use rust_decimal_macros::dec;

    fn req(id: u64, sym: u16, qty: Qty) -> OrderRequest {
        OrderRequest {
            id: ClientOrderId(id),
            symbol: SymbolId(sym),
            side: Side::Buy,
            qty,
            kind: OrderKind::Market,
            tif: Tif::Day,
            purpose: OrderPurpose::Entry,
            ts: Ts(0),
        }
    }

    fn fill(exec: &str, id: u64, qty: Qty, price: Price, t: i64) -> Fill {
        Fill {
            exec_id: ExecId(exec.into()),
            order_id: ClientOrderId(id),
            symbol: SymbolId(0),
            side: Side::Buy,
            qty,
            price,
            commission: dec!(1),
            ts: Ts(t),
        }
    }

    fn upd(id: u64, status: BrokerStatus, t: i64) -> OrderUpdate {
        OrderUpdate {
            order_id: ClientOrderId(id),
            status,
            ts: Ts(t),
        }
    }

    fn submitted(id: u64) -> OrderUpdate {
        upd(
            id,
            BrokerStatus::Submitted {
                broker_id: Some(format!("B{id}").into()),
            },
            1,
        )
    }

    use OrderState::*;

    #[test]
    fn ids_resume_and_insert_is_idempotent() {
        let mut m = OrderManager::new(41);
        assert_eq!(m.next_id(), ClientOrderId(41));
        assert_eq!(m.next_id(), ClientOrderId(42));
        assert_eq!(m.next_seq(), 43);
        m.insert(req(42, 0, 10));
        m.insert(OrderRequest {
            qty: 99,
            ..req(42, 0, 10)
        });
        assert_eq!(m.get(ClientOrderId(42)).map(|o| o.req.qty), Some(10));
        assert_eq!(m.open_orders().count(), 1);
        assert!(m.has_open_for(SymbolId(0)));
        // An inserted id beyond the sequence pushes the sequence past it.
        m.insert(req(100, 1, 5));
        assert_eq!(m.next_seq(), 101);
    }

    #[test]
    fn happy_path_with_partial_fills_and_average_price() {
        let mut m = OrderManager::new(1);
        m.insert(req(1, 0, 100));
        assert_eq!(
            m.on_update(&submitted(1)),
            UpdateOutcome::Changed {
                from: New,
                to: Submitted
            }
        );
        assert_eq!(
            m.on_fill(&fill("x1", 1, 40, dec!(10), 2)),
            FillOutcome::Applied {
                from: Submitted,
                to: PartiallyFilled
            }
        );
        assert_eq!(
            m.on_fill(&fill("x2", 1, 60, dec!(10.50), 3)),
            FillOutcome::Applied {
                from: PartiallyFilled,
                to: Filled
            }
        );
        let o = m.get(ClientOrderId(1)).unwrap();
        // (40 × 10 + 60 × 10.5) / 100 = 10.30.
        assert_eq!(o.avg_fill_price, Some(dec!(10.30)));
        assert_eq!(
            (o.filled, o.updated, o.broker_id.as_deref()),
            (100, Ts(3), Some("B1"))
        );
        assert!(!m.has_open_for(SymbolId(0)));
        assert_eq!(m.open_orders().count(), 0);
    }

    #[test]
    fn duplicate_fills_are_ignored() {
        let mut m = OrderManager::new(1);
        m.insert(req(1, 0, 100));
        let f = fill("x1", 1, 40, dec!(10), 2);
        assert!(matches!(m.on_fill(&f), FillOutcome::Applied { .. }));
        let before = m.get(ClientOrderId(1)).cloned();
        assert_eq!(m.on_fill(&f), FillOutcome::Duplicate);
        assert_eq!(m.get(ClientOrderId(1)).cloned(), before);
        assert!(!FillOutcome::Duplicate.is_new_execution());
        // Seen exec ids restored from the store are duplicates too.
        m.mark_exec_seen(&ExecId::from("old"));
        assert_eq!(
            m.on_fill(&fill("old", 1, 1, dec!(10), 3)),
            FillOutcome::Duplicate
        );
        // Unknown order: recorded, so the repeat is a duplicate.
        let u = fill("x9", 77, 5, dec!(1), 4);
        assert_eq!(m.on_fill(&u), FillOutcome::UnknownOrder);
        assert!(m.exec_seen(&u.exec_id));
        assert_eq!(m.on_fill(&u), FillOutcome::Duplicate);
    }

    /// Beyond `KEEP_CLOSED` finished orders the oldest leave memory, and nothing about them
    /// can be doubled: a replayed fill is a Duplicate, a new execution is still reported
    /// (as an unknown order's, which the engine books), and its id cannot be placed again.
    #[test]
    fn orders_beyond_the_closed_window_leave_memory_safely() {
        let mut m = OrderManager::new(1);
        let n = KEEP_CLOSED as u64 + 10;
        for id in 1..=n {
            m.insert(req(id, 0, 10));
            let f = fill(&format!("x{id}"), id, 10, dec!(5), id as i64);
            assert!(matches!(m.on_fill(&f), FillOutcome::Applied { .. }));
        }
        assert!(m.get(ClientOrderId(1)).is_none(), "the oldest left memory");
        assert!(m.get(ClientOrderId(n)).is_some(), "the newest stays");
        assert_eq!(
            m.on_fill(&fill("x1", 1, 10, dec!(5), 1)),
            FillOutcome::Duplicate
        );
        assert_eq!(
            m.on_fill(&fill("late", 1, 1, dec!(5), 99)),
            FillOutcome::UnknownOrder
        );
        m.insert(req(1, 0, 10));
        assert!(
            m.get(ClientOrderId(1)).is_none(),
            "a replayed intent is not a new order"
        );
        assert!(!m.has_open_for(SymbolId(0)));
    }

    #[test]
    fn paper_exec_ids_hash_by_their_numbers() {
        let key = |s: &str| sequential_hash(s).map(|h| h & !(0x7F << 57));
        assert_eq!(key("P-C123-1"), Some(123 * 4 + 1));
        assert_eq!(key("P-C124-2"), Some(124 * 4 + 2));
        for other in [
            "P-C-1",
            "P-C12-",
            "P-C1x-1",
            "X-C1-1",
            "0000e0d5.65b3a1c2.01.01",
            "",
        ] {
            assert_eq!(sequential_hash(other), None, "{other}");
        }
        assert_eq!(sequential_hash("P-C1234567890123456789-1"), None);
    }

    proptest::proptest! {
        /// The one-pass parser accepts exactly what the split-and-check reading did.
        #[test]
        fn exec_id_parser_matches_the_plain_reading(id in "(P-C|P-|X-C)?[0-9x-]{0,24}") {
            let plain = |id: &str| -> Option<u64> {
                let (order, fill) = id.strip_prefix(crate::paper::EXEC_ID_PREFIX)?.split_once('-')?;
                let digits = |s: &str| {
                    (!s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| s.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0')))
                };
                let n = digits(order)?.wrapping_mul(4).wrapping_add(digits(fill)? & 3);
                Some(n ^ (n.wrapping_mul(MIX) & (0x7F << 57)))
            };
            proptest::prop_assert_eq!(sequential_hash(&id), plain(&id));
        }
    }

    #[test]
    fn fill_before_ack_then_late_ack() {
        let mut m = OrderManager::new(1);
        m.insert(req(1, 0, 10));
        assert_eq!(
            m.on_fill(&fill("x1", 1, 10, dec!(5), 2)),
            FillOutcome::Applied {
                from: New,
                to: Filled
            }
        );
        // Late ack after Filled: absorbed, but the broker id is kept.
        assert_eq!(m.on_update(&submitted(1)), UpdateOutcome::Unchanged);
        let o = m.get(ClientOrderId(1)).unwrap();
        assert_eq!((o.state, o.broker_id.as_deref()), (Filled, Some("B1")));

        m.insert(req(2, 0, 10));
        assert_eq!(
            m.on_fill(&fill("x2", 2, 3, dec!(5), 2)),
            FillOutcome::Applied {
                from: New,
                to: PartiallyFilled
            }
        );
        assert_eq!(m.on_update(&submitted(2)), UpdateOutcome::Unchanged);
        assert_eq!(m.get(ClientOrderId(2)).unwrap().state, PartiallyFilled);
    }

    #[test]
    fn cancels_rejects_expiry_and_terminal_absorption() {
        let mut m = OrderManager::new(1);
        m.insert(req(1, 0, 10));
        m.insert(req(2, 0, 10));
        m.insert(req(3, 1, 10));
        m.on_update(&submitted(1));
        let cancel = upd(
            1,
            BrokerStatus::Cancelled {
                reason: "user".into(),
            },
            5,
        );
        assert_eq!(
            m.on_update(&cancel),
            UpdateOutcome::Changed {
                from: Submitted,
                to: Cancelled
            }
        );
        assert_eq!(m.on_update(&cancel), UpdateOutcome::Unchanged);
        assert_eq!(
            m.get(ClientOrderId(1)).unwrap().reason.as_deref(),
            Some("user")
        );
        let reject = upd(
            2,
            BrokerStatus::Rejected {
                reason: "margin".into(),
            },
            5,
        );
        assert_eq!(
            m.on_update(&reject),
            UpdateOutcome::Changed {
                from: New,
                to: Rejected
            }
        );
        assert!(!m.has_open_for(SymbolId(0)));
        assert_eq!(
            m.on_update(&upd(2, BrokerStatus::Cancelled { reason: "x".into() }, 6)),
            UpdateOutcome::IllegalTransition {
                from: Rejected,
                to: Cancelled
            }
        );
        assert_eq!(
            m.get(ClientOrderId(2)).unwrap().reason.as_deref(),
            Some("margin")
        );
        m.on_fill(&fill("x3", 3, 4, dec!(1), 6));
        assert_eq!(
            m.on_update(&upd(3, BrokerStatus::Expired, 7)),
            UpdateOutcome::Changed {
                from: PartiallyFilled,
                to: Cancelled
            }
        );
        let o = m.get(ClientOrderId(3)).unwrap();
        assert_eq!(
            (o.reason.as_deref(), o.updated, o.filled),
            (Some("expired"), Ts(7), 4)
        );
        assert!(!m.has_open_for(SymbolId(1)));
        assert_eq!(
            m.on_update(&upd(99, BrokerStatus::Expired, 7)),
            UpdateOutcome::UnknownOrder
        );
        // Cancelled after Filled is illegal and not applied.
        m.insert(req(4, 0, 1));
        m.on_fill(&fill("x4", 4, 1, dec!(1), 8));
        assert_eq!(
            m.on_update(&upd(
                4,
                BrokerStatus::Cancelled {
                    reason: "late".into()
                },
                9
            )),
            UpdateOutcome::IllegalTransition {
                from: Filled,
                to: Cancelled
            }
        );
        assert_eq!(m.get(ClientOrderId(4)).unwrap().state, Filled);
    }

    #[test]
    fn late_fill_on_cancelled_order_is_booked_without_reviving_it() {
        let mut m = OrderManager::new(1);
        m.insert(req(1, 0, 10));
        m.on_update(&upd(1, BrokerStatus::Cancelled { reason: "c".into() }, 2));
        assert_eq!(
            m.on_fill(&fill("x1", 1, 10, dec!(3), 3)),
            FillOutcome::Applied {
                from: Cancelled,
                to: Cancelled
            }
        );
        assert_eq!(m.get(ClientOrderId(1)).unwrap().filled, 10);
        assert!(!m.has_open_for(SymbolId(0)));
    }

    #[test]
    fn overfill_is_reported_not_applied() {
        let mut m = OrderManager::new(1);
        m.insert(req(1, 0, 10));
        m.on_fill(&fill("x1", 1, 8, dec!(2), 2));
        assert_eq!(
            m.on_fill(&fill("x2", 1, 3, dec!(2), 3)),
            FillOutcome::Overfill
        );
        assert!(FillOutcome::Overfill.is_new_execution());
        assert_eq!(
            m.on_fill(&fill("x2", 1, 3, dec!(2), 3)),
            FillOutcome::Duplicate
        );
        assert_eq!(
            m.on_fill(&fill("x3", 1, 0, dec!(2), 3)),
            FillOutcome::Overfill
        );
        assert_eq!(
            m.on_fill(&fill("x4", 1, i64::MAX, dec!(2), 3)),
            FillOutcome::Overfill
        );
        let o = m.get(ClientOrderId(1)).unwrap();
        assert_eq!(
            (o.state, o.filled, o.avg_fill_price),
            (PartiallyFilled, 8, Some(dec!(2)))
        );
        assert_eq!(o.remaining(), 2);
    }

    #[test]
    fn restore_prune_and_queries() {
        let mut m = OrderManager::new(1);
        let mut o = ManagedOrder::new(req(50, 2, 10));
        o.state = Submitted;
        m.restore(o.clone());
        assert_eq!(m.next_seq(), 51);
        assert!(m.has_open_for(SymbolId(2)));
        // Restoring the same order again does not double-count it.
        m.restore(o.clone());
        m.on_update(&upd(50, BrokerStatus::Cancelled { reason: "c".into() }, 2));
        assert!(!m.has_open_for(SymbolId(2)));
        m.restore(ManagedOrder {
            state: Filled,
            ..ManagedOrder::new(req(7, 2, 1))
        });
        assert_eq!(m.next_seq(), 51);
        m.insert(req(51, 0, 5));
        m.insert(OrderRequest {
            side: Side::Sell,
            ..req(52, 1, 5)
        });
        m.insert(req(53, 1, 5));
        let sells = m.open_ids_where(|o| o.req.side == Side::Sell);
        assert_eq!(sells, vec![ClientOrderId(52)]);
        let open: Vec<_> = m.open_orders().map(|o| o.req.id.0).collect();
        assert_eq!(open, vec![51, 52, 53]);
        m.on_fill(&fill("f", 51, 5, dec!(1), 3));
        assert_eq!(m.len(), 5);
        m.prune_closed();
        assert_eq!(m.len(), 2);
        assert!(m.get(ClientOrderId(50)).is_none());
        assert_eq!(
            m.on_fill(&fill("f", 51, 5, dec!(1), 3)),
            FillOutcome::Duplicate
        );
        assert!(m.has_open_for(SymbolId(1)));
        assert!(!m.has_open_for(SymbolId(0)));
        assert!(!m.has_open_for(SymbolId(999)));
    }

    #[test]
    fn state_names_round_trip() {
        for s in [New, Submitted, PartiallyFilled, Filled, Cancelled, Rejected] {
            assert_eq!(OrderState::parse(s.as_str()), Some(s));
            assert_eq!(s.is_open(), !s.is_terminal());
        }
        assert_eq!(OrderState::parse("done"), None);
    }

    fn any_price() -> impl proptest::strategy::Strategy<Value = Price> {
        use proptest::prelude::*;
        prop_oneof![
            (1i64..100_000_000_000, 0u32..=8).prop_map(|(m, s)| Price::new(m, s)),
            (any::<i64>(), any::<i64>(), 0u32..=28).prop_map(|(a, b, s)| {
                let m = (i128::from(a) << 32 ^ i128::from(b)) % (1i128 << 96);
                Price::from_i128_with_scale(m, s)
            }),
            Just(Price::MAX),
            Just(dec!(-0.00)),
            Just(dec!(10.50)),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// A first fill's average (the fast path) is the Decimal division's, value and scale.
        #[test]
        fn first_fill_average_is_exact(
            price in any_price(),
            qty in proptest::prop_oneof![1i64..100_000, 1i64..=i64::MAX],
        ) {
            let fast = avg_after(None, 0, price, qty, qty);
            let exact = avg_after_exact(None, 0, price, qty, qty);
            proptest::prop_assert_eq!(fast, exact);
            proptest::prop_assert_eq!(fast.scale(), exact.scale());
        }

        /// The seen set is exact whatever the hash does: every distinct id is new once.
        #[test]
        fn seen_exec_ids_are_exact(ids in proptest::collection::vec("[A-Za-z0-9.-]{0,30}", 1..60)) {
            seen_matches_a_set(&ids)?;
        }
    }

    /// Feeds `ids` as fills: each is a Duplicate exactly when a set has seen it before.
    fn seen_matches_a_set(ids: &[String]) -> Result<(), proptest::test_runner::TestCaseError> {
        let mut m = OrderManager::new(1);
        let mut mine = std::collections::BTreeSet::new();
        for id in ids {
            let dup = m.on_fill(&fill(id, 1, 1, dec!(1), 0)) == FillOutcome::Duplicate;
            proptest::prop_assert_eq!(dup, !mine.insert(id.clone()));
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// The same for the paper broker's form, which hashes by its numbers: collisions
        /// (order × 4 + fill), near-misses (leading zeros, empty or huge numbers, a stray
        /// letter) and text ids mixed.
        #[test]
        fn paper_exec_ids_are_exact(ids in proptest::collection::vec(
            proptest::prop_oneof![
                "P-C[0-9]{0,3}-[0-9]{0,2}",
                "P-C0?[0-9]{1,2}-[0-9]{1,2}x?",
                "P-C[0-9]{17,21}-[0-9]",
                "[A-Za-z0-9.-]{0,12}",
            ],
            1..120,
        )) {
            seen_matches_a_set(&ids)?;
        }
    }
}
