//! The market clock off hours: from Saturday noon the trading loop must sleep once until
//! Monday's open, not poll. A counting fake waiter stands in for the wall clock, so a whole
//! weekend passes instantly and every wake-up is counted.

use robo_core::types::Ts;
use robo_trader::config::Config;
use robo_trader::runner::{self, Control, Interrupt, TraderParts, Waiter};
use robo_trader::store::{Store, WriterOptions};

/// Counts waits; stops the run once asked to wait past `stop_after`.
struct CountingWaiter {
    waits: Vec<Ts>,
    stop_after: Ts,
}

impl Waiter for CountingWaiter {
    fn wait_until(
        &mut self,
        t: Ts,
        _on_control: &mut dyn FnMut(Control) -> Option<Interrupt>,
    ) -> Result<(), Interrupt> {
        self.waits.push(t);
        if t > self.stop_after {
            return Err(Interrupt::Stop("test over".into()));
        }
        Ok(())
    }
}

fn ts(rfc3339: &str) -> Ts {
    Ts::from_utc(
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&chrono::Utc),
    )
}

fn run_from(start: &str, stop_after: &str) -> Vec<Ts> {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        db: dir.path().join("t.db"),
        symbols: vec!["AAPL".into(), "SPY".into()],
        ..Config::default()
    };
    cfg.sim.start = Some(start.into());
    cfg.sim.history_sessions = 1;
    let store = Store::open(&cfg.db).unwrap();
    store.init_starting_cash(cfg.starting_cash).unwrap();
    let writer = store.start_writer(WriterOptions::default()).unwrap();
    let mut waiter = CountingWaiter {
        waits: Vec::new(),
        stop_after: ts(stop_after),
    };
    let out = runner::trade(
        TraderParts {
            cfg,
            store,
            writer: writer.clone(),
            bus: None,
        },
        &mut waiter,
    )
    .unwrap();
    assert_eq!(out.exit_reason, "test over");
    writer.shutdown(std::time::Duration::from_secs(5)).unwrap();
    waiter.waits
}

#[test]
fn a_weekend_is_one_sleep() {
    // Saturday 2026-11-28 12:00 ET to Monday 2026-11-30 09:31 ET.
    let waits = run_from("2026-11-28T12:00:00-05:00", "2026-11-30T09:31:00-05:00");
    let monday_open = ts("2026-11-30T09:30:00-05:00");
    let before_open = waits.iter().filter(|t| **t <= monday_open).count();
    assert_eq!(
        waits[0], monday_open,
        "the first wait is straight to Monday's open"
    );
    assert!(
        before_open <= 2,
        "{before_open} wake-ups over the weekend: {waits:?}"
    );
    // Then the loop paces minute bars: the first bar ends at 09:31.
    assert_eq!(waits[1], ts("2026-11-30T09:31:00-05:00"));
}

#[test]
fn a_holiday_and_an_early_close_are_skipped_in_one_sleep_each() {
    // Wednesday 2026-11-25 after the close → Thanksgiving closed → Friday's 09:30 open.
    let waits = run_from("2026-11-25T16:30:00-05:00", "2026-11-27T09:31:00-05:00");
    assert_eq!(waits[0], ts("2026-11-27T09:30:00-05:00"));
    // Friday is an early close: from 13:00 ET the next wait is Monday's open.
    let waits = run_from("2026-11-27T12:58:00-05:00", "2026-11-30T09:30:00-05:00");
    assert_eq!(
        waits,
        vec![
            ts("2026-11-27T12:59:00-05:00"),
            ts("2026-11-27T13:00:00-05:00"),
            ts("2026-11-30T09:30:00-05:00"),
            ts("2026-11-30T09:31:00-05:00"),
        ]
    );
}
