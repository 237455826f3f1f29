//! Property tests of the whole core over random event sequences: random prices on three
//! symbols, fills replayed as duplicates, operator state changes. After every step:
//! position = Σ fills per symbol, cash = start + Σ cash flows, no client order id is placed
//! twice, at most one open order per symbol, and the risk limits hold.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use robo_core::engine::{Engine, EngineConfig};
use robo_core::events::{Command, Event, OperatorCommand};
use robo_core::paper::{PaperBroker, PaperConfig};
use robo_core::session::{PaperSession, SessionHooks};
use robo_core::strategy::{SmaCrossoverParams, StrategyConfig};
use robo_core::types::{
    Bar, ClientOrderId, ExecId, Fill, OrderRequest, Side, SymbolId, TradingState, Ts,
};
use rust_decimal::Decimal;

#[derive(Default)]
struct Recorder {
    placed: Vec<OrderRequest>,
    fills: Vec<Fill>,
    /// The close of the bar being handled: the engine's reference price for its orders.
    close: Decimal,
    entry_notional: Decimal,
}

impl SessionHooks for Recorder {
    fn after_place(&mut self, req: &OrderRequest) {
        self.placed.push(*req);
        if req.purpose.is_entry() {
            self.entry_notional += self.close * Decimal::from(req.qty);
        }
    }
    fn command(&mut self, cmd: &Command) {
        if let Command::Persist(robo_core::events::Record::Fill(f)) = cmd {
            self.fills.push(f.clone());
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// Price moves in cents for each of the 3 symbols.
    Bar([i8; 3]),
    /// Re-deliver the n-th fill seen so far (mod count).
    DuplicateFill(usize),
    SetState(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => prop::array::uniform3(-60i8..=60).prop_map(Step::Bar),
        2 => any::<usize>().prop_map(Step::DuplicateFill),
        1 => (0u8..3).prop_map(Step::SetState),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn core_invariants_hold(steps in prop::collection::vec(step(), 50..400)) {
        let n = 3;
        let mut cfg = EngineConfig {
            strategy: StrategyConfig::SmaCrossover(SmaCrossoverParams { fast: 2, slow: 4 }),
            ..EngineConfig::default()
        };
        cfg.risk.reentry_cooldown_secs = 120;
        let start = cfg.starting_cash;
        let max_daily = cfg.risk.max_daily_notional;
        let max_open = cfg.risk.max_open_positions;
        let mut s = PaperSession::new(Engine::new(cfg, n), PaperBroker::new(PaperConfig::default(), n));
        let mut rec = Recorder::default();
        let mut px = [5_000i64, 12_000, 800];
        let mut minute = 0i64;
        for st in steps {
            match st {
                Step::Bar(moves) => {
                    minute += 1;
                    for (i, m) in moves.iter().enumerate() {
                        let open = px[i];
                        px[i] = (px[i] + i64::from(*m)).max(100);
                        let close = px[i];
                        let bar = Bar {
                            symbol: SymbolId(i as u16),
                            ts: Ts::from_secs(1_704_205_800 + 60 * minute),
                            open: Decimal::new(open, 2),
                            high: Decimal::new(open.max(close) + 3, 2),
                            low: Decimal::new((open.min(close) - 3).max(1), 2),
                            close: Decimal::new(close, 2),
                            volume: 10_000,
                        };
                        rec.close = bar.close;
                        s.on_bar(&bar, &mut rec);
                    }
                }
                Step::DuplicateFill(k) => {
                    if !rec.fills.is_empty() {
                        let f = rec.fills[k % rec.fills.len()].clone();
                        let before = rec.fills.len();
                        s.on_event(Event::Fill(f), &mut rec);
                        prop_assert_eq!(rec.fills.len(), before, "a duplicated fill was applied again");
                    }
                }
                Step::SetState(k) => {
                    let state = [TradingState::Active, TradingState::ReduceOnly, TradingState::Halted][k as usize];
                    s.on_event(Event::Operator { command: OperatorCommand::SetTradingState { state }, ts: Ts::from_secs(1_704_205_800 + 60 * minute) }, &mut rec);
                }
            }

            // Distinct fills by exec id.
            let mut seen: HashSet<ExecId> = HashSet::new();
            let mut qty: HashMap<u16, i64> = HashMap::new();
            let mut cash = start;
            for f in &rec.fills {
                prop_assert!(seen.insert(f.exec_id.clone()), "exec id {} recorded twice", f.exec_id);
                *qty.entry(f.symbol.0).or_default() += f.side.sign() * f.qty;
                cash += f.cash_flow();
            }
            let ledger = s.engine.ledger();
            for i in 0..n as u16 {
                prop_assert_eq!(ledger.qty(SymbolId(i)), qty.get(&i).copied().unwrap_or(0));
                prop_assert!(ledger.qty(SymbolId(i)) >= 0, "short position while shorting is off");
            }
            prop_assert_eq!(ledger.cash(), cash);
            prop_assert_eq!(ledger.equity() - start, ledger.realized() + ledger.unrealized());

            let ids: HashSet<ClientOrderId> = rec.placed.iter().map(|r| r.id).collect();
            prop_assert_eq!(ids.len(), rec.placed.len(), "a client order id was placed twice");
            let mut open_per_symbol: HashMap<u16, usize> = HashMap::new();
            for o in s.engine.orders().open_orders() {
                *open_per_symbol.entry(o.req.symbol.0).or_default() += 1;
            }
            prop_assert!(open_per_symbol.values().all(|c| *c <= 1), "two open orders for one symbol");
            // All bars fall on one exchange day; exits may pass the limit, entries may not.
            prop_assert!(rec.entry_notional <= max_daily, "entries traded {} > {}", rec.entry_notional, max_daily);
            prop_assert!(ledger.open_positions() <= max_open);
            for r in &rec.placed {
                if r.purpose.is_entry() {
                    prop_assert_eq!(r.side, Side::Buy);
                }
            }
        }
    }
}
