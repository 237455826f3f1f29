//! Property tests: random fill streams (several symbols, both sides, partial and crossing
//! fills, duplicated and replayed executions, marks) fed through `OrderManager` + `Ledger`,
//! checked against an independent per-share FIFO model kept in integer cents.

use std::collections::VecDeque;

use proptest::prelude::*;
use robo_core::ledger::Ledger;
use robo_core::orders::{FillOutcome, OrderManager, OrderState};
use robo_core::types::{
    ClientOrderId, ExecId, Fill, OrderKind, OrderPurpose, OrderRequest, Qty, Side, SymbolId, Tif,
    Ts,
};
use robo_core::Decimal;

const N_SYMS: u16 = 3;
/// $100,000.00.
const START_CENTS: i64 = 10_000_000;

fn cents(c: i64) -> Decimal {
    Decimal::new(c, 2)
}

#[derive(Debug, Clone)]
enum Op {
    /// A new execution against order `order` (an index past the orders = unknown order).
    Fill {
        order: usize,
        qty: Qty,
        price_c: i64,
        comm_c: i64,
    },
    /// Re-deliver an earlier execution (picked modulo the number so far).
    Replay(usize),
    Mark {
        sym: u16,
        price_c: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..7, 1i64..250, 1i64..50_000, 0i64..300).prop_map(|(order, qty, price_c, comm_c)| {
            Op::Fill { order, qty, price_c, comm_c }
        }),
        2 => any::<usize>().prop_map(Op::Replay),
        2 => (0..N_SYMS + 1, 1i64..50_000).prop_map(|(sym, price_c)| Op::Mark { sym, price_c }),
    ]
}

fn orders() -> impl Strategy<Value = Vec<(u16, bool, Qty)>> {
    prop::collection::vec((0..N_SYMS, any::<bool>(), 1i64..400), 1..6)
}

/// The reference: one entry per share, signed, FIFO, integer cents.
#[derive(Default)]
struct Model {
    shares: Vec<VecDeque<(i64, i64)>>, // (sign, price cents)
    realized_c: i64,
    cash_c: i64,
    comm_c: i64,
    marks_c: Vec<Option<i64>>,
}

impl Model {
    fn apply(&mut self, sym: usize, sign: i64, qty: Qty, price_c: i64, comm_c: i64) {
        let q = &mut self.shares[sym];
        for _ in 0..qty {
            match q.front() {
                Some(&(s, p)) if s != sign => {
                    q.pop_front();
                    // Closing a long share earns price − cost; covering a short the reverse.
                    self.realized_c += s * (price_c - p);
                }
                _ => q.push_back((sign, price_c)),
            }
        }
        self.cash_c += -sign * qty * price_c - comm_c;
        self.comm_c += comm_c;
    }
    fn qty(&self, sym: usize) -> i64 {
        self.shares[sym].iter().map(|s| s.0).sum()
    }
    fn unrealized_c(&self) -> i64 {
        (0..self.shares.len())
            .map(|i| match self.marks_c[i] {
                Some(m) => self.shares[i].iter().map(|&(s, p)| s * (m - p)).sum(),
                None => 0,
            })
            .sum()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn ledger_matches_fifo_model(orders in orders(), ops in prop::collection::vec(op(), 1..60)) {
        let mut om = OrderManager::new(1);
        let mut reqs = Vec::new();
        for (sym, buy, qty) in &orders {
            let id = om.next_id();
            let req = OrderRequest {
                id,
                symbol: SymbolId(*sym),
                side: if *buy { Side::Buy } else { Side::Sell },
                qty: *qty,
                kind: OrderKind::Market,
                tif: Tif::Gtc,
                purpose: OrderPurpose::Entry,
                ts: Ts(0),
            };
            om.insert(req);
            reqs.push(req);
        }
        // Fewer symbols than used: the ledger must grow.
        let mut ledger = Ledger::new(1, cents(START_CENTS));
        let n = N_SYMS as usize + 1;
        let mut model = Model {
            shares: vec![VecDeque::new(); n],
            cash_c: START_CENTS,
            marks_c: vec![None; n],
            ..Model::default()
        };
        let mut delivered: Vec<Fill> = Vec::new();
        let mut order_filled = vec![0i64; reqs.len()];
        let mut fill_sum = vec![0i64; n];

        for (k, op) in ops.iter().enumerate() {
            match *op {
                Op::Mark { sym, price_c } => {
                    ledger.mark(SymbolId(sym), cents(price_c));
                    model.marks_c[sym as usize] = Some(price_c);
                }
                Op::Replay(i) => {
                    if delivered.is_empty() {
                        continue;
                    }
                    let f = delivered[i % delivered.len()].clone();
                    let (before_l, before_o) = (ledger.clone(), om.get(f.order_id).cloned());
                    prop_assert_eq!(om.on_fill(&f), FillOutcome::Duplicate);
                    // The engine books only new executions, so nothing may move.
                    prop_assert_eq!(&ledger, &before_l);
                    prop_assert_eq!(om.get(f.order_id).cloned(), before_o);
                }
                Op::Fill { order, qty, price_c, comm_c } => {
                    // Unknown orders trade symbol 3, side by parity.
                    let (oid, sym, side) = match reqs.get(order) {
                        Some(r) => (r.id, r.symbol, r.side),
                        None => (
                            ClientOrderId(1000 + order as u64),
                            SymbolId(N_SYMS),
                            if k % 2 == 0 { Side::Buy } else { Side::Sell },
                        ),
                    };
                    let f = Fill {
                        exec_id: ExecId::from(format!("x{k}")),
                        order_id: oid,
                        symbol: sym,
                        side,
                        qty,
                        price: cents(price_c),
                        commission: cents(comm_c),
                        ts: Ts(k as i64),
                    };
                    let outcome = om.on_fill(&f);
                    prop_assert!(outcome.is_new_execution());
                    match reqs.get(order) {
                        None => prop_assert_eq!(outcome, FillOutcome::UnknownOrder),
                        Some(r) if order_filled[order] + qty > r.qty => {
                            prop_assert_eq!(outcome, FillOutcome::Overfill)
                        }
                        Some(r) => {
                            order_filled[order] += qty;
                            let want = if order_filled[order] == r.qty {
                                OrderState::Filled
                            } else {
                                OrderState::PartiallyFilled
                            };
                            let got = match outcome {
                                FillOutcome::Applied { to, .. } => Some(to),
                                _ => None,
                            };
                            prop_assert_eq!(got, Some(want));
                        }
                    }
                    let effect = ledger.apply_fill(&f);
                    let sign = side.sign();
                    model.apply(sym.index(), sign, qty, price_c, comm_c);
                    fill_sum[sym.index()] += sign * qty;
                    prop_assert_eq!(effect.position_after, model.qty(sym.index()));
                    prop_assert_eq!(effect.closed_qty + effect.opened_qty, qty);
                    delivered.push(f);
                    // A second delivery right away is a duplicate too.
                    let again = delivered[delivered.len() - 1].clone();
                    let before = ledger.clone();
                    prop_assert_eq!(om.on_fill(&again), FillOutcome::Duplicate);
                    prop_assert_eq!(&ledger, &before);
                }
            }
            // The accounting identity holds after every event, exactly.
            prop_assert_eq!(
                ledger.equity() - ledger.starting_cash(),
                ledger.realized() + ledger.unrealized()
            );
        }

        let flows: Decimal = delivered.iter().map(Fill::cash_flow).sum();
        prop_assert_eq!(ledger.cash(), cents(START_CENTS) + flows);
        prop_assert_eq!(ledger.cash(), cents(model.cash_c));
        prop_assert_eq!(ledger.commissions(), cents(model.comm_c));
        prop_assert_eq!(ledger.realized(), cents(model.realized_c - model.comm_c));
        prop_assert_eq!(ledger.unrealized(), cents(model.unrealized_c()));
        let mut open = 0;
        for (s, &want_qty) in fill_sum.iter().enumerate() {
            let sym = SymbolId(s as u16);
            prop_assert_eq!(ledger.qty(sym), want_qty);
            prop_assert_eq!(ledger.qty(sym), model.qty(s));
            prop_assert_eq!(ledger.lots(sym).iter().map(|l| l.qty).sum::<i64>(), want_qty);
            prop_assert_eq!(ledger.position(sym).qty, want_qty);
            // Lots of one symbol are all on the position's side.
            prop_assert!(ledger.lots(sym).iter().all(|l| l.qty.signum() == want_qty.signum()));
            open += u32::from(want_qty != 0);
            let any_open = reqs.iter().zip(&order_filled).any(|(r, f)| r.symbol == sym && *f < r.qty);
            prop_assert_eq!(om.has_open_for(sym), any_open);
        }
        prop_assert_eq!(ledger.open_positions(), open);
        prop_assert_eq!(ledger.positions().count() as u32, open);
        for (r, f) in reqs.iter().zip(&order_filled) {
            prop_assert_eq!(om.get(r.id).map(|o| o.filled), Some(*f));
        }
        // Equity is cash plus positions at their marks (at cost when never marked).
        let held: i64 = (0..n)
            .map(|i| match model.marks_c[i] {
                Some(m) => model.qty(i) * m,
                None => model.shares[i].iter().map(|&(s, p)| s * p).sum(),
            })
            .sum();
        prop_assert_eq!(ledger.equity(), cents(model.cash_c + held));
    }
}
