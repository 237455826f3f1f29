//! `Engine::set_account`: the broker's net liquidation value becomes the start-of-day equity
//! once per exchange day (the first reading after the engine rolled the day), and the latest
//! reading is kept.

use robo_core::account::AccountSnapshot;
use robo_core::engine::{Engine, EngineConfig};
use robo_core::events::Event;
use robo_core::types::{Bar, SymbolId, Ts};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

/// 2024-01-02 14:30 UTC, a Tuesday's open.
const T0: i64 = 1_704_205_800;

fn snap(nlv: Decimal, ts: i64) -> AccountSnapshot {
    AccountSnapshot {
        net_liquidation: nlv,
        total_cash: Some(nlv),
        buying_power: None,
        ts: Ts::from_secs(ts),
    }
}

fn bar(ts: i64) -> Event {
    let p = dec!(100);
    Event::Bar(Bar {
        symbol: SymbolId(0),
        ts: Ts::from_secs(ts),
        open: p,
        high: p,
        low: p,
        close: p,
        volume: 1_000,
    })
}

#[test]
fn the_first_reading_of_each_day_sets_the_start_of_day_equity() {
    let mut e = Engine::new(EngineConfig::default(), 1);
    let mut out = Vec::new();
    assert_eq!(e.start_of_day_equity(), dec!(100000));
    assert_eq!(e.account(), None);
    e.handle(&bar(T0), &mut out);
    // The first bar rolled the day from the ledger (100 000); IB's reading replaces it.
    e.set_account(snap(dec!(123456.78), T0 + 1));
    assert_eq!(e.start_of_day_equity(), dec!(123456.78));
    // Later readings the same day are kept but do not move the start of the day.
    e.set_account(snap(dec!(120000), T0 + 60));
    assert_eq!(e.start_of_day_equity(), dec!(123456.78));
    assert_eq!(e.account().unwrap().net_liquidation, dec!(120000));
    // The next day's first bar rolls from the ledger; the next reading sets it again.
    e.handle(&bar(T0 + 86_400), &mut out);
    assert_eq!(e.start_of_day_equity(), dec!(100000));
    e.set_account(snap(dec!(119000), T0 + 86_401));
    assert_eq!(e.start_of_day_equity(), dec!(119000));
}
