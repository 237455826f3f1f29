//! Engine scenarios, driven through the same `PaperSession` that `run` and `backtest` use:
//! stops fire and then cool down, automatic state transitions persist until an operator moves
//! them, halting cancels entries, a restart re-arms stops and never reuses an order id, decision
//! records carry every check, and a disconnected engine places nothing.

use robo_core::decision::Action;
use robo_core::engine::{Engine, EngineConfig, RestoreState};
use robo_core::events::{Command, Event, OperatorCommand, Record};
use robo_core::paper::{PaperBroker, PaperConfig};
use robo_core::risk::{RiskCheck, Verdict};
use robo_core::session::{PaperSession, SessionHooks};
use robo_core::sizing::SizingConfig;
use robo_core::stops::StopConfig;
use robo_core::strategy::{SmaCrossoverParams, StrategyConfig};
use robo_core::types::{
    Bar, ConnectionState, OrderPurpose, OrderRequest, SymbolId, TradingState, Ts,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const T0: i64 = 1_764_253_800; // 2025-11-27 14:30:00 UTC, a Thursday (any instant works)

#[derive(Default)]
struct Rec {
    placed: Vec<OrderRequest>,
    records: Vec<Record>,
    /// `Publish` commands seen (live updates).
    published: usize,
}

impl SessionHooks for Rec {
    fn after_place(&mut self, req: &OrderRequest) {
        self.placed.push(*req);
    }
    fn command(&mut self, cmd: &Command) {
        match cmd {
            Command::Persist(r) => self.records.push(r.clone()),
            Command::Publish(_) => self.published += 1,
            _ => {}
        }
    }
    fn decision(&mut self, d: &robo_core::decision::Decision) {
        self.records.push(Record::Decision(Box::new(*d)));
    }
}

impl Rec {
    fn fills(&self) -> usize {
        self.records
            .iter()
            .filter(|r| matches!(r, Record::Fill(_)))
            .count()
    }
    fn decisions(&self) -> Vec<&robo_core::decision::Decision> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Decision(d) => Some(&**d),
                _ => None,
            })
            .collect()
    }
}

fn bar(minute: i64, o: Decimal, h: Decimal, l: Decimal, c: Decimal) -> Bar {
    Bar {
        symbol: SymbolId(0),
        ts: Ts::from_secs(T0 + 60 * minute),
        open: o,
        high: h,
        low: l,
        close: c,
        volume: 1_000,
    }
}

fn flat(minute: i64, p: Decimal) -> Bar {
    bar(minute, p, p, p, p)
}

fn cfg() -> EngineConfig {
    EngineConfig {
        strategy: StrategyConfig::SmaCrossover(SmaCrossoverParams { fast: 1, slow: 2 }),
        ..EngineConfig::default()
    }
}

fn session(cfg: EngineConfig) -> PaperSession {
    PaperSession::new(
        Engine::new(cfg, 1),
        PaperBroker::new(PaperConfig::default(), 1),
    )
}

/// 100, 99 sets fast < slow; 101 crosses up → buy; the next bar's open fills it.
fn enter(s: &mut PaperSession, rec: &mut Rec) {
    s.on_bar(&flat(0, dec!(100)), rec);
    s.on_bar(&flat(1, dec!(99)), rec);
    s.on_bar(&flat(2, dec!(101)), rec);
    s.on_bar(&flat(3, dec!(101)), rec);
}

#[test]
fn entry_is_sized_to_two_percent_and_filled_at_the_next_open() {
    let mut s = session(cfg());
    let mut rec = Rec::default();
    enter(&mut s, &mut rec);
    assert_eq!(rec.placed.len(), 1);
    assert_eq!(rec.placed[0].purpose, OrderPurpose::Entry);
    // 2% of $100,000 at $101 = 19.8 → 19 shares.
    assert_eq!(rec.placed[0].qty, 19);
    assert_eq!(s.engine.ledger().qty(SymbolId(0)), 19);
    // $0.005 × 19 < $1 minimum, under the 1% cap: commission $1.00.
    assert_eq!(
        s.engine.ledger().cash(),
        dec!(100000) - dec!(1919) - dec!(1)
    );
}

#[test]
fn stop_loss_fires_at_two_percent_then_cooldown_blocks_reentry() {
    let mut s = session(cfg());
    let mut rec = Rec::default();
    enter(&mut s, &mut rec);
    // Stop at 101 × 0.98 = 98.98. A bar trading down to 98.90 triggers it.
    s.on_bar(
        &bar(4, dec!(100), dec!(100), dec!(98.90), dec!(99)),
        &mut rec,
    );
    assert_eq!(rec.placed.len(), 2);
    assert_eq!(rec.placed[1].purpose, OrderPurpose::StopLoss);
    assert_eq!(rec.placed[1].qty, 19);
    let d = *rec.decisions().last().unwrap();
    assert_eq!(d.action, Action::StopTriggered);
    s.on_bar(&flat(5, dec!(98.5)), &mut rec);
    assert_eq!(s.engine.ledger().qty(SymbolId(0)), 0);
    // A new cross up two minutes later is refused by the 10-minute cooldown, and recorded.
    s.on_bar(&flat(6, dec!(98)), &mut rec);
    s.on_bar(&flat(7, dec!(99)), &mut rec);
    let d = *rec.decisions().last().unwrap();
    assert_eq!(d.action, Action::Refused);
    assert!(matches!(
        d.verdict,
        Some(Verdict::Refused {
            check: RiskCheck::Cooldown,
            ..
        })
    ));
    assert!(rec
        .records
        .iter()
        .any(|r| matches!(r, Record::Risk(e) if e.check == RiskCheck::Cooldown)));
    assert_eq!(rec.placed.len(), 2);
}

#[test]
fn trailing_stop_ratchets_with_the_high() {
    let mut c = cfg();
    c.stops = StopConfig {
        stop_loss_pct: None,
        trailing_pct: Some(dec!(0.05)),
        take_profit_pct: None,
    };
    let mut s = session(c);
    let mut rec = Rec::default();
    enter(&mut s, &mut rec);
    // High of 120 moves the trailing level to 114; a later low of 113.9 exits.
    s.on_bar(
        &bar(4, dec!(101), dec!(120), dec!(101), dec!(119)),
        &mut rec,
    );
    // Closes keep rising so the crossover itself never exits.
    s.on_bar(
        &bar(5, dec!(119), dec!(119.5), dec!(114.5), dec!(119.5)),
        &mut rec,
    );
    assert_eq!(rec.placed.len(), 1, "114.5 is above the trailing level");
    s.on_bar(
        &bar(6, dec!(119.5), dec!(120), dec!(113.9), dec!(120)),
        &mut rec,
    );
    assert_eq!(
        rec.placed.last().unwrap().purpose,
        OrderPurpose::TrailingStop
    );
}

#[test]
fn daily_loss_switches_to_reduce_only_and_it_persists_until_an_operator_resumes() {
    let mut c = cfg();
    c.stops = StopConfig {
        stop_loss_pct: None,
        trailing_pct: None,
        take_profit_pct: None,
    };
    c.sizing = SizingConfig::FixedFraction {
        fraction: dec!(0.05),
    };
    c.risk.max_position_pct = dec!(0.05);
    let mut s = session(c);
    let mut rec = Rec::default();
    enter(&mut s, &mut rec);
    let qty = s.engine.ledger().qty(SymbolId(0));
    assert_eq!(qty, 49); // 5% of 100k at 101
                         // A 15% gap down: 49 × 15.15 ≈ $742 > 0.5% of start-of-day equity. The limit is checked
                         // before the strategy runs, so the crossover's exit on this bar meets a reduce-only gate.
    s.on_bar(&flat(4, dec!(85.85)), &mut rec);
    assert_eq!(s.engine.trading_state(), TradingState::ReduceOnly);
    assert!(rec
        .records
        .iter()
        .any(|r| matches!(r, Record::State(c) if c.to == TradingState::ReduceOnly)));
    // Exits still work in reduce-only.
    assert_eq!(rec.placed.last().unwrap().purpose, OrderPurpose::SignalExit);
    assert_eq!(rec.decisions().last().unwrap().action, Action::Exited);
    s.on_bar(&flat(5, dec!(86)), &mut rec);
    assert_eq!(s.engine.ledger().qty(SymbolId(0)), 0);
    // Next day: still reduce-only (automatic moves persist), and a new cross up is refused.
    s.on_bar(&flat(60 * 24, dec!(85)), &mut rec);
    s.on_bar(&flat(60 * 24 + 20, dec!(87)), &mut rec);
    assert_eq!(s.engine.trading_state(), TradingState::ReduceOnly);
    let d = *rec.decisions().last().unwrap();
    assert!(matches!(
        d.verdict,
        Some(Verdict::Refused {
            check: RiskCheck::TradingState,
            ..
        })
    ));
    s.on_event(
        Event::Operator {
            command: OperatorCommand::SetTradingState {
                state: TradingState::Active,
            },
            ts: Ts::from_secs(T0 + 86_400 + 120),
        },
        &mut rec,
    );
    assert_eq!(s.engine.trading_state(), TradingState::Active);
}

#[test]
fn drawdown_halts() {
    let mut c = cfg();
    c.stops = StopConfig {
        stop_loss_pct: None,
        trailing_pct: None,
        take_profit_pct: None,
    };
    c.sizing = SizingConfig::FixedQty { qty: 900 };
    c.risk.max_position_pct = dec!(1);
    c.risk.max_order_notional = dec!(1000000);
    c.risk.max_daily_notional = dec!(1000000);
    let mut s = session(c);
    let mut rec = Rec::default();
    enter(&mut s, &mut rec);
    assert_eq!(s.engine.ledger().qty(SymbolId(0)), 900);
    // 900 × (101 − 89) = $10,800 > 10% of equity.
    s.on_bar(&flat(4, dec!(95)), &mut rec);
    s.on_bar(&flat(5, dec!(89)), &mut rec);
    assert_eq!(s.engine.trading_state(), TradingState::Halted);
}

#[test]
fn halting_cancels_open_entry_orders() {
    let mut s = session(cfg());
    let mut rec = Rec::default();
    s.on_bar(&flat(0, dec!(100)), &mut rec);
    s.on_bar(&flat(1, dec!(99)), &mut rec);
    s.on_bar(&flat(2, dec!(101)), &mut rec);
    assert_eq!(rec.placed.len(), 1);
    s.on_event(
        Event::Operator {
            command: OperatorCommand::SetTradingState {
                state: TradingState::Halted,
            },
            ts: Ts::from_secs(T0 + 150),
        },
        &mut rec,
    );
    let order = s
        .engine
        .orders()
        .get(rec.placed[0].id)
        .expect("order known");
    assert_eq!(order.state, robo_core::orders::OrderState::Cancelled);
    s.on_bar(&flat(3, dec!(101)), &mut rec);
    assert_eq!(
        s.engine.ledger().qty(SymbolId(0)),
        0,
        "the cancelled entry never filled"
    );
    assert_eq!(rec.fills(), 0);
}

#[test]
fn a_duplicated_fill_is_applied_once() {
    let mut s = session(cfg());
    let mut rec = Rec::default();
    enter(&mut s, &mut rec);
    let fill = rec.records.iter().find_map(|r| match r {
        Record::Fill(f) => Some(f.clone()),
        _ => None,
    });
    let fill = fill.expect("the entry filled");
    let cash = s.engine.ledger().cash();
    s.on_event(Event::Fill(fill), &mut rec);
    assert_eq!(rec.fills(), 1);
    assert_eq!(s.engine.ledger().cash(), cash);
    assert_eq!(s.engine.ledger().qty(SymbolId(0)), 19);
}

#[test]
fn restore_rebuilds_the_ledger_rearms_stops_and_resumes_order_ids() {
    let mut s = session(cfg());
    let mut rec = Rec::default();
    enter(&mut s, &mut rec);
    let fills: Vec<_> = rec
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Fill(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    let last_id = rec.placed.last().unwrap().id.0;

    let mut engine = Engine::new(cfg(), 1);
    engine.restore(RestoreState {
        fills,
        next_order_seq: last_id + 1,
        marks: vec![(SymbolId(0), dec!(101), Ts::from_secs(T0 + 180))],
        ..RestoreState::default()
    });
    assert_eq!(engine.ledger().cash(), s.engine.ledger().cash());
    assert_eq!(engine.ledger().qty(SymbolId(0)), 19);
    let mut s2 = PaperSession::new(engine, PaperBroker::new(PaperConfig::default(), 1));
    let mut rec2 = Rec::default();
    // The stop was re-armed from the position: a fall to 98.9 exits with a fresh order id.
    s2.on_bar(
        &bar(4, dec!(100), dec!(100), dec!(98.90), dec!(99)),
        &mut rec2,
    );
    assert_eq!(rec2.placed.len(), 1);
    assert_eq!(rec2.placed[0].purpose, OrderPurpose::StopLoss);
    assert!(
        rec2.placed[0].id.0 > last_id,
        "order id reused after restart"
    );
}

#[test]
fn decision_records_carry_every_check_and_can_be_switched_off() {
    let mut s = session(cfg());
    let mut rec = Rec::default();
    enter(&mut s, &mut rec);
    let ds = rec.decisions();
    assert_eq!(ds.len(), 4, "one decision per bar");
    assert_eq!(ds[0].action, Action::WarmingUp);
    let entry = ds[2];
    assert_eq!(entry.action, Action::Entered);
    assert_eq!(entry.checks.iter().count(), RiskCheck::ALL.len());
    assert_eq!(entry.inputs.get("sma_fast"), Some(101.0));
    assert!(entry.signal.reason.to_string().contains("crossed above"));

    let mut c = cfg();
    c.decisions = false;
    let mut s = session(c);
    let mut rec = Rec::default();
    enter(&mut s, &mut rec);
    assert!(rec.decisions().is_empty());
    assert_eq!(
        rec.placed.len(),
        1,
        "trading is the same without decision records"
    );
}

#[test]
fn nothing_is_placed_while_the_broker_is_not_ready() {
    let mut s = session(cfg());
    let mut rec = Rec::default();
    s.on_event(
        Event::Connection {
            state: ConnectionState::Disconnected,
            ts: Ts::from_secs(T0),
        },
        &mut rec,
    );
    enter(&mut s, &mut rec);
    assert!(rec.placed.is_empty());
    assert!(rec
        .records
        .iter()
        .any(|r| matches!(r, Record::Risk(e) if e.check == RiskCheck::Connection)));
}

/// Switching live updates off (as `backtest` does) drops only the `Publish` commands: the
/// orders, fills and every persisted record are the same.
#[test]
fn publish_off_changes_no_record() {
    let run = |publish: bool| {
        let mut s = session(EngineConfig { publish, ..cfg() });
        let mut rec = Rec::default();
        enter(&mut s, &mut rec);
        for (m, px) in [(4, dec!(99)), (5, dec!(98)), (6, dec!(97)), (7, dec!(100))] {
            s.on_bar(&flat(m, px), &mut rec);
        }
        rec
    };
    let (on, off) = (run(true), run(false));
    assert!(on.published > 0, "updates are published by default");
    assert_eq!(off.published, 0);
    assert_eq!(on.placed, off.placed);
    assert!(on.fills() > 0);
    assert_eq!(format!("{:?}", on.records), format!("{:?}", off.records));
}
