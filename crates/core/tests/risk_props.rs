//! Property tests for the risk gate, the state escalations and the stop book: whatever the
//! account and order, an approved entry stays inside every limit, and nothing panics.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use robo_core::decision::Checks;
use robo_core::risk::{CheckOutcome, OrderCheck, RiskContext, RiskGate, RiskLimits, Verdict};
use robo_core::stops::{StopBook, StopConfig};
use robo_core::types::{Bar, OrderPurpose, Side, SymbolId, TradingState, Ts};
use robo_core::Decimal;

const NOW: i64 = 1_700_000_000;

fn cents(lo: i64, hi: i64) -> impl Strategy<Value = Decimal> {
    (lo..hi).prop_map(|c| Decimal::new(c, 2))
}

fn state() -> impl Strategy<Value = TradingState> {
    prop_oneof![
        12 => Just(TradingState::Active),
        1 => Just(TradingState::ReduceOnly),
        1 => Just(TradingState::Halted),
    ]
}

fn purpose() -> impl Strategy<Value = OrderPurpose> {
    prop_oneof![
        6 => Just(OrderPurpose::Entry),
        1 => Just(OrderPurpose::SignalExit),
        1 => Just(OrderPurpose::StopLoss),
        1 => Just(OrderPurpose::TrailingStop),
        1 => Just(OrderPurpose::TakeProfit),
        1 => Just(OrderPurpose::Flatten),
    ]
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

/// Realistic accounts near the default limits, so that many entries are approved and many
/// are refused right at a boundary.
fn context() -> impl Strategy<Value = RiskContext> {
    (
        (
            state(),
            cents(5_000_000, 20_000_000),
            cents(-100_000, 20_000_000),
        ),
        (
            cents(0, 40_000),
            cents(0, 1_500_000),
            prop_oneof![1 => Just(0i64), 2 => -10i64..25],
            18u32..23,
        ),
        (
            cents(0, 12_000_000),
            cents(0, 11_000_000),
            proptest::bool::weighted(0.1),
        ),
        (
            proptest::option::of(0i64..3000),
            proptest::option::weighted(0.95, 0i64..200),
            prop_oneof![Just(60i64), Just(300)],
            proptest::option::of(cents(9_000, 11_000)),
        ),
    )
        .prop_map(
            |(
                (st, equity, cash),
                (sod_loss, peak_gain, pos, open),
                (gross, daily, pending),
                (exit_ago, price_ago, bar, prev),
            )| {
                RiskContext {
                    state: st,
                    equity,
                    cash,
                    start_of_day_equity: equity + sod_loss,
                    peak_equity: equity + peak_gain,
                    position_qty: pos,
                    open_positions: if pos != 0 { open.max(1) } else { open },
                    gross_exposure: gross,
                    daily_notional: daily,
                    pending_order: pending,
                    last_exit: exit_ago.map(|s| Ts::from_secs(NOW - s)),
                    last_price_ts: price_ago.map(|s| Ts::from_secs(NOW - s)),
                    bar_interval_secs: bar,
                    prev_close: prev,
                }
            },
        )
}

fn order() -> impl Strategy<Value = OrderCheck> {
    (side(), 1i64..25, cents(8_000, 13_000), purpose()).prop_map(|(side, qty, price, purpose)| {
        OrderCheck {
            symbol: SymbolId(0),
            side,
            qty,
            price,
            purpose,
            now: Ts::from_secs(NOW),
        }
    })
}

fn limits() -> impl Strategy<Value = RiskLimits> {
    any::<bool>().prop_map(|allow_short| RiskLimits {
        allow_short,
        ..RiskLimits::default()
    })
}

/// Any Decimal at all, including zero, negatives, and the extremes.
fn any_decimal() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            0u32..=28
        )
            .prop_map(|(lo, mid, hi, neg, scale)| Decimal::from_parts(lo, mid, hi, neg, scale)),
        Just(Decimal::ZERO),
        Just(Decimal::MAX),
        Just(Decimal::MIN),
        (-1000i64..1000).prop_map(Decimal::from),
    ]
}

fn any_context() -> impl Strategy<Value = RiskContext> {
    (
        (
            state(),
            any_decimal(),
            any_decimal(),
            any_decimal(),
            any_decimal(),
        ),
        (
            any::<i64>(),
            any::<u32>(),
            any_decimal(),
            any_decimal(),
            any::<bool>(),
        ),
        (
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<i64>()),
            any::<i64>(),
            proptest::option::of(any_decimal()),
        ),
    )
        .prop_map(
            |(
                (state, equity, cash, sod, peak),
                (pos, open, gross, daily, pending),
                (exit, px, bar, prev),
            )| {
                RiskContext {
                    state,
                    equity,
                    cash,
                    start_of_day_equity: sod,
                    peak_equity: peak,
                    position_qty: pos,
                    open_positions: open,
                    gross_exposure: gross,
                    daily_notional: daily,
                    pending_order: pending,
                    last_exit: exit.map(Ts),
                    last_price_ts: px.map(Ts),
                    bar_interval_secs: bar,
                    prev_close: prev,
                }
            },
        )
}

fn any_order() -> impl Strategy<Value = OrderCheck> {
    (side(), any::<i64>(), any_decimal(), purpose(), any::<i64>()).prop_map(
        |(side, qty, price, purpose, now)| OrderCheck {
            symbol: SymbolId(0),
            side,
            qty,
            price,
            purpose,
            now: Ts(now),
        },
    )
}

/// The position after the order, signed.
fn after(o: &OrderCheck, c: &RiskContext) -> i64 {
    c.position_qty + o.side.sign() * o.qty
}

/// Recording and not recording give the same verdict, and the recorded outcomes agree with it.
fn assert_record_agrees(g: &RiskGate, o: &OrderCheck, c: &RiskContext) -> Verdict {
    let fast = g.check(o, c, None);
    let mut checks = Checks::default();
    let full = g.check(o, c, Some(&mut checks));
    assert_eq!(fast, full);
    let first_fail = checks.iter().find_map(|(check, out)| match out {
        CheckOutcome::Fail { reason } => Some(Verdict::Refused {
            check: *check,
            reason: *reason,
        }),
        CheckOutcome::Pass => None,
    });
    assert_eq!(first_fail.unwrap_or(Verdict::Approved), full);
    full
}

proptest! {
    #![proptest_config(Config { cases: 2000, ..Config::default() })]

    #[test]
    fn approved_entries_stay_inside_the_limits(l in limits(), c in context(), o in order()) {
        let g = RiskGate::new(l.clone());
        let v = assert_record_agrees(&g, &o, &c);
        if v.is_approved() && o.purpose == OrderPurpose::Entry {
            let qty = Decimal::from(o.qty);
            let notional = qty * o.price;
            let pos_after = after(&o, &c);
            prop_assert_eq!(c.state, TradingState::Active);
            prop_assert!(!c.pending_order);
            prop_assert!(Decimal::from(pos_after.abs()) * o.price <= l.max_position_pct * c.equity);
            prop_assert!(notional <= l.max_order_notional);
            prop_assert!(c.daily_notional + notional <= l.max_daily_notional);
            prop_assert!(c.gross_exposure + notional <= l.max_leverage * c.equity);
            if o.side == Side::Buy {
                prop_assert!(notional <= c.cash);
            }
            if c.position_qty == 0 {
                // Never position #21.
                prop_assert!(c.open_positions < l.max_open_positions);
            }
            if !l.allow_short && o.side == Side::Sell {
                prop_assert!(pos_after >= 0);
            }
            prop_assert!(c.start_of_day_equity - c.equity < l.daily_loss_pct * c.start_of_day_equity);
            prop_assert!(c.peak_equity - c.equity < l.max_drawdown_pct * c.peak_equity);
        }
    }

    #[test]
    fn approved_exits_only_reduce(l in limits(), c in context(), o in order()) {
        let g = RiskGate::new(l);
        let v = assert_record_agrees(&g, &o, &c);
        if v.is_approved() && o.purpose != OrderPurpose::Entry {
            let pos_after = after(&o, &c);
            prop_assert!(pos_after.abs() < c.position_qty.abs());
            prop_assert!(pos_after == 0 || pos_after.signum() == c.position_qty.signum());
            prop_assert!(!(c.state == TradingState::Halted && o.purpose == OrderPurpose::SignalExit));
        }
    }

    #[test]
    fn check_never_panics(
        enabled in any::<bool>(),
        short in any::<bool>(),
        cooldown in any::<i64>(),
        age in any::<u32>(),
        pct in any_decimal(),
        c in any_context(),
        o in any_order(),
    ) {
        let l = RiskLimits {
            enabled,
            allow_short: short,
            reentry_cooldown_secs: cooldown,
            max_price_age_bars: age,
            max_position_pct: pct,
            max_price_move_pct: pct,
            max_leverage: pct,
            daily_loss_pct: pct,
            max_drawdown_pct: pct,
            ..RiskLimits::default()
        };
        let g = RiskGate::new(l);
        let v = assert_record_agrees(&g, &o, &c);
        if enabled && v.is_approved() {
            prop_assert!(o.qty > 0 && o.price > Decimal::ZERO);
        }
        let _ = g.evaluate(c.state, c.equity, c.start_of_day_equity, c.peak_equity);
    }

    #[test]
    fn evaluate_only_escalates(
        st in state(),
        equity in any_decimal(),
        sod in any_decimal(),
        peak in any_decimal(),
    ) {
        let rank = |s: TradingState| match s {
            TradingState::Active => 0,
            TradingState::ReduceOnly => 1,
            TradingState::Halted => 2,
        };
        if let Some((to, _)) = RiskGate::new(RiskLimits::default()).evaluate(st, equity, sod, peak) {
            prop_assert!(rank(to) > rank(st));
        }
    }

    #[test]
    fn trailing_level_never_loosens(
        long in any::<bool>(),
        moves in proptest::collection::vec((-300i64..300, 0i64..200, 0i64..200), 1..60),
    ) {
        let mut book = StopBook::new(1, StopConfig::default());
        let sym = SymbolId(0);
        book.arm(sym, long, Decimal::from(100), Decimal::from(100));
        let mut mid = Decimal::from(100);
        for (step, up, down) in moves {
            let before = *book.armed(sym).unwrap();
            mid = (mid + Decimal::new(step, 2)).max(Decimal::ONE);
            let bar = Bar {
                symbol: sym,
                ts: Ts(0),
                open: mid,
                high: mid + Decimal::new(up, 2),
                low: (mid - Decimal::new(down, 2)).max(Decimal::new(1, 2)),
                close: mid,
                volume: 1,
            };
            let hit = book.on_bar(&bar);
            let now = *book.armed(sym).unwrap();
            let (b, n) = (before.trailing().unwrap(), now.trailing().unwrap());
            if long {
                prop_assert!(n >= b && now.high_water >= before.high_water);
            } else {
                prop_assert!(n <= b && now.high_water <= before.high_water);
            }
            prop_assert_eq!(now.stop, before.stop);
            if let Some(h) = hit {
                // The reported price is at or through the level, and within the bar.
                let through = if long { h.price <= h.level } else { h.price >= h.level };
                prop_assert!(through);
                prop_assert!(h.price >= bar.low && h.price <= bar.high);
            }
        }
    }
}

/// The entry property is not vacuous: the generator yields plenty of approvals and refusals.
#[test]
fn generator_hits_both_verdicts() {
    let mut runner = TestRunner::deterministic();
    let strat = (limits(), context(), order());
    let (mut approved, mut refused) = (0, 0);
    for _ in 0..2000 {
        let (l, c, o) = strat.new_tree(&mut runner).unwrap().current();
        if o.purpose != OrderPurpose::Entry {
            continue;
        }
        match RiskGate::new(l).check(&o, &c, None) {
            Verdict::Approved => approved += 1,
            Verdict::Refused { .. } => refused += 1,
        }
    }
    assert!(approved >= 100, "only {approved} approved entries");
    assert!(refused >= 200, "only {refused} refused entries");
}
