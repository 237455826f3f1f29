//! NYSE calendar against literal tables taken from NYSE's published holiday and early-close
//! calendars, with instants written in UTC by hand.

use chrono::{NaiveDate, TimeZone, Utc};
use robo_core::calendar::{ny_date, ny_datetime, ny_local_to_ts, Calendar, MarketHours, Session};
use robo_core::types::Ts;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn dates(y: i32, md: &[(u32, u32)]) -> Vec<NaiveDate> {
    md.iter().map(|&(m, d)| date(y, m, d)).collect()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Ts {
    Ts::from_utc(Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap())
}

fn holiday_dates(cal: &Calendar, y: i32) -> Vec<NaiveDate> {
    cal.holidays_in_year(y)
        .into_iter()
        .map(|(d, _)| d)
        .collect()
}

fn check_year(y: i32, holidays: &[(u32, u32)], early: &[(u32, u32)]) {
    let cal = Calendar::nyse();
    let holidays = dates(y, holidays);
    let early = dates(y, early);
    assert_eq!(holiday_dates(&cal, y), holidays, "holidays {y}");
    assert_eq!(cal.early_closes_in_year(y), early, "early closes {y}");
    for &d in &holidays {
        assert!(!cal.is_trading_day(d), "{d} should be closed");
        assert!(cal.holiday(d).is_some(), "{d} should be named");
        assert_eq!(cal.regular_hours(d), None, "{d}");
        assert!(!cal.is_early_close(d), "{d}");
    }
    for &d in &early {
        assert!(cal.is_trading_day(d), "{d} should trade");
        assert!(cal.is_early_close(d), "{d} should close early");
        let (open, close) = cal.regular_hours(d).unwrap();
        assert_eq!(open, ny_local_to_ts(d, 9, 30));
        assert_eq!(close, ny_local_to_ts(d, 13, 0));
    }
}

#[test]
fn nyse_2024() {
    check_year(
        2024,
        &[
            (1, 1),
            (1, 15),
            (2, 19),
            (3, 29),
            (5, 27),
            (6, 19),
            (7, 4),
            (9, 2),
            (11, 28),
            (12, 25),
        ],
        &[(7, 3), (11, 29), (12, 24)],
    );
}

#[test]
fn nyse_2025() {
    check_year(
        2025,
        &[
            (1, 1),
            (1, 9),
            (1, 20),
            (2, 17),
            (4, 18),
            (5, 26),
            (6, 19),
            (7, 4),
            (9, 1),
            (11, 27),
            (12, 25),
        ],
        &[(7, 3), (11, 28), (12, 24)],
    );
    let cal = Calendar::nyse();
    assert_eq!(
        cal.holiday(date(2025, 1, 9)),
        Some("National Day of Mourning for Jimmy Carter")
    );
    assert_eq!(cal.holiday(date(2025, 4, 18)), Some("Good Friday"));
}

#[test]
fn nyse_2026() {
    // July 4 is a Saturday: observed Friday July 3, and no early close on July 2.
    check_year(
        2026,
        &[
            (1, 1),
            (1, 19),
            (2, 16),
            (4, 3),
            (5, 25),
            (6, 19),
            (7, 3),
            (9, 7),
            (11, 26),
            (12, 25),
        ],
        &[(11, 27), (12, 24)],
    );
    let cal = Calendar::nyse();
    assert!(!cal.is_early_close(date(2026, 7, 2)));
    assert_eq!(cal.holiday(date(2026, 7, 3)), Some("Independence Day"));
}

#[test]
fn nyse_2027() {
    // Juneteenth (Sat) observed Fri 18; July 4 (Sun) observed Mon 5; Christmas (Sat) Fri 24.
    check_year(
        2027,
        &[
            (1, 1),
            (1, 18),
            (2, 15),
            (3, 26),
            (5, 31),
            (6, 18),
            (7, 5),
            (9, 6),
            (11, 25),
            (12, 24),
        ],
        &[(11, 26)],
    );
}

#[test]
fn historical_one_off_closures() {
    let cal = Calendar::nyse();
    let closed = [
        date(2001, 9, 11),
        date(2001, 9, 12),
        date(2001, 9, 13),
        date(2001, 9, 14),
        date(2004, 6, 11),
        date(2007, 1, 2),
        date(2012, 10, 29),
        date(2012, 10, 30),
        date(2018, 12, 5),
        date(2025, 1, 9),
    ];
    for d in closed {
        assert!(!cal.is_trading_day(d), "{d}");
        assert!(cal.holiday(d).is_some(), "{d}");
    }
    assert!(cal.is_trading_day(date(2001, 9, 10)));
    assert!(cal.is_trading_day(date(2001, 9, 17)));
    assert!(cal.is_trading_day(date(2012, 10, 31)));
    assert_eq!(cal.next_trading_day(date(2001, 9, 10)), date(2001, 9, 17));
    assert_eq!(cal.prev_trading_day(date(2001, 9, 17)), date(2001, 9, 10));
}

#[test]
fn historical_early_close_quirks() {
    let cal = Calendar::nyse();
    // July 4 2002 was a Thursday: the early close was Friday July 5, July 3 was a full day.
    assert_eq!(
        cal.early_closes_in_year(2002),
        dates(2002, &[(7, 5), (11, 29), (12, 24)])
    );
    // 2003 had a one-off early close on Friday Dec 26.
    assert_eq!(
        cal.early_closes_in_year(2003),
        dates(2003, &[(7, 3), (11, 28), (12, 24), (12, 26)])
    );
    // Since 2013 a Thursday July 4 gives an early close on Wednesday July 3.
    assert_eq!(
        cal.early_closes_in_year(2013),
        dates(2013, &[(7, 3), (11, 29), (12, 24)])
    );
    assert_eq!(
        cal.early_closes_in_year(2019),
        dates(2019, &[(7, 3), (11, 29), (12, 24)])
    );
}

#[test]
fn saturday_new_year_is_not_observed_on_friday() {
    let cal = Calendar::nyse();
    assert!(cal.is_trading_day(date(2021, 12, 31)));
    assert!(cal.is_trading_day(date(2010, 12, 31)));
    assert!(cal.is_trading_day(date(2027, 12, 31)));
    assert!(cal.is_trading_day(date(2022, 1, 3)));
    // Sunday New Year's Day moves to Monday.
    assert_eq!(cal.holiday(date(2023, 1, 2)), Some("New Year's Day"));
    assert_eq!(cal.holiday(date(2017, 1, 2)), Some("New Year's Day"));
}

#[test]
fn juneteenth_starts_2022() {
    let cal = Calendar::nyse();
    assert!(cal.is_trading_day(date(2021, 6, 18)));
    assert_eq!(
        cal.holiday(date(2022, 6, 20)),
        Some("Juneteenth National Independence Day")
    );
}

#[test]
fn weekends_are_closed_but_not_holidays() {
    let cal = Calendar::nyse();
    for d in [
        date(2026, 3, 7),
        date(2026, 3, 8),
        date(2026, 11, 28),
        date(2026, 11, 29),
    ] {
        assert!(!cal.is_trading_day(d), "{d}");
        assert_eq!(cal.holiday(d), None, "{d}");
        assert_eq!(cal.regular_hours(d), None, "{d}");
    }
    // Saturday 2026-03-07 noon EST.
    assert_eq!(cal.session_at(utc(2026, 3, 7, 17, 0)), Session::Closed);
    assert!(!cal.is_open(utc(2026, 3, 7, 17, 0)));
}

#[test]
fn trading_day_counts() {
    let cal = Calendar::nyse();
    // Weekdays minus weekday closures, counted by hand from the holiday lists.
    let expected = [
        (2020, 253),
        (2021, 252),
        (2022, 251),
        (2023, 250),
        (2024, 252),
        (2025, 250),
        (2026, 251),
        (2027, 251),
        (2028, 251),
        (2029, 251),
        (2030, 251),
    ];
    for (y, n) in expected {
        assert_eq!(cal.trading_days_in_year(y), n, "{y}");
    }
}

#[test]
fn dst_edges() {
    let cal = Calendar::nyse();
    // Spring change on Sunday 2026-03-08.
    assert_eq!(
        cal.regular_hours(date(2026, 3, 6)),
        Some((utc(2026, 3, 6, 14, 30), utc(2026, 3, 6, 21, 0)))
    );
    assert_eq!(
        cal.regular_hours(date(2026, 3, 9)),
        Some((utc(2026, 3, 9, 13, 30), utc(2026, 3, 9, 20, 0)))
    );
    // Autumn change on Sunday 2026-11-01.
    assert_eq!(
        cal.regular_hours(date(2026, 10, 30)),
        Some((utc(2026, 10, 30, 13, 30), utc(2026, 10, 30, 20, 0)))
    );
    assert_eq!(
        cal.regular_hours(date(2026, 11, 2)),
        Some((utc(2026, 11, 2, 14, 30), utc(2026, 11, 2, 21, 0)))
    );
    // next_open across the spring weekend.
    assert_eq!(
        cal.next_open(utc(2026, 3, 6, 21, 0)),
        utc(2026, 3, 9, 13, 30)
    );
}

#[test]
fn session_boundaries_regular_day() {
    let cal = Calendar::nyse();
    // Monday 2026-06-15, EDT (UTC-4).
    let cases = [
        ((7, 59), Session::Closed),
        ((8, 0), Session::PreMarket),
        ((13, 29), Session::PreMarket),
        ((13, 30), Session::Regular),
        ((19, 59), Session::Regular),
        ((20, 0), Session::AfterHours),
        ((23, 59), Session::AfterHours),
    ];
    for ((h, m), s) in cases {
        assert_eq!(cal.session_at(utc(2026, 6, 15, h, m)), s, "{h}:{m}");
    }
    // 20:00 EDT is 00:00 UTC the next day.
    assert_eq!(cal.session_at(utc(2026, 6, 16, 0, 0)), Session::Closed);
    assert!(cal.is_open(utc(2026, 6, 15, 13, 30)));
    assert!(!cal.is_open(utc(2026, 6, 15, 20, 0)));
}

#[test]
fn session_boundaries_early_close_and_holiday() {
    let cal = Calendar::nyse();
    // Friday 2026-11-27, EST (UTC-5), closes 13:00, after-hours until 17:00.
    let cases = [
        ((9, 0), Session::PreMarket),
        ((14, 30), Session::Regular),
        ((17, 59), Session::Regular),
        ((18, 0), Session::AfterHours),
        ((21, 59), Session::AfterHours),
        ((22, 0), Session::Closed),
    ];
    for ((h, m), s) in cases {
        assert_eq!(cal.session_at(utc(2026, 11, 27, h, m)), s, "{h}:{m}");
    }
    // Thanksgiving 2026-11-26 10:00 EST.
    assert_eq!(cal.session_at(utc(2026, 11, 26, 15, 0)), Session::Closed);
}

#[test]
fn next_open_skips_holidays_and_weekends() {
    let cal = Calendar::nyse();
    // Wed 2026-11-25 17:00 EST -> Fri 2026-11-27 09:30 EST.
    assert_eq!(
        cal.next_open(utc(2026, 11, 25, 22, 0)),
        utc(2026, 11, 27, 14, 30)
    );
    // Good Friday 2026-04-03 noon EDT -> Mon 2026-04-06 09:30 EDT.
    assert_eq!(
        cal.next_open(utc(2026, 4, 3, 16, 0)),
        utc(2026, 4, 6, 13, 30)
    );
    // Friday after the close -> Monday.
    assert_eq!(
        cal.next_open(utc(2026, 1, 9, 21, 0)),
        utc(2026, 1, 12, 14, 30)
    );
    // Before today's open -> today's open; exactly at the open -> strictly later, tomorrow.
    assert_eq!(
        cal.next_open(utc(2026, 1, 8, 12, 0)),
        utc(2026, 1, 8, 14, 30)
    );
    assert_eq!(
        cal.next_open(utc(2026, 1, 8, 14, 30)),
        utc(2026, 1, 9, 14, 30)
    );
    // Independence Day 2026 observed Friday: Thursday evening -> Monday July 6.
    assert_eq!(
        cal.next_open(utc(2026, 7, 2, 21, 0)),
        utc(2026, 7, 6, 13, 30)
    );
}

#[test]
fn next_close_on_early_close_day() {
    let cal = Calendar::nyse();
    // Fri 2026-11-27 10:00 EST -> 13:00 EST.
    assert_eq!(
        cal.next_close(utc(2026, 11, 27, 15, 0)),
        utc(2026, 11, 27, 18, 0)
    );
    // Christmas Eve 2026 (Thu) pre-market -> 13:00 EST.
    assert_eq!(
        cal.next_close(utc(2026, 12, 24, 12, 0)),
        utc(2026, 12, 24, 18, 0)
    );
    // Exactly at that close -> next trading day's close (Christmas Fri and weekend skipped).
    assert_eq!(
        cal.next_close(utc(2026, 12, 24, 18, 0)),
        utc(2026, 12, 28, 21, 0)
    );
    // A normal day's close.
    assert_eq!(
        cal.next_close(utc(2026, 6, 15, 14, 0)),
        utc(2026, 6, 15, 20, 0)
    );
}

#[test]
fn trading_day_steps() {
    let cal = Calendar::nyse();
    assert_eq!(cal.next_trading_day(date(2026, 4, 2)), date(2026, 4, 6));
    assert_eq!(cal.prev_trading_day(date(2026, 4, 6)), date(2026, 4, 2));
    assert_eq!(cal.prev_trading_day(date(2026, 1, 2)), date(2025, 12, 31));
    assert_eq!(cal.next_trading_day(date(2025, 12, 31)), date(2026, 1, 2));
    assert_eq!(cal.next_trading_day(date(2026, 6, 15)), date(2026, 6, 16));
}

#[test]
fn ny_date_and_datetime() {
    // 2026-11-27 03:00 UTC is still Thanksgiving evening in New York.
    assert_eq!(ny_date(utc(2026, 11, 27, 3, 0)), date(2026, 11, 26));
    assert_eq!(ny_date(utc(2026, 11, 27, 5, 0)), date(2026, 11, 27));
    assert_eq!(
        ny_datetime(utc(2026, 7, 1, 16, 0)).to_rfc3339(),
        "2026-07-01T12:00:00-04:00"
    );
    assert_eq!(
        ny_local_to_ts(date(2026, 7, 1), 12, 0),
        utc(2026, 7, 1, 16, 0)
    );
}

#[test]
fn market_hours_on_early_close_day() {
    let cal = Calendar::nyse();
    let mh = cal.market_hours(utc(2026, 11, 27, 15, 0));
    assert_eq!(
        mh,
        MarketHours {
            session: Session::Regular,
            is_open: true,
            open: "2026-11-27T09:30:00-05:00".into(),
            close: "2026-11-27T13:00:00-05:00".into(),
            next_open: "2026-11-30T09:30:00-05:00".into(),
        }
    );
}

#[test]
fn market_hours_on_holiday_and_weekend() {
    let cal = Calendar::nyse();
    let mh = cal.market_hours(utc(2026, 11, 26, 15, 0));
    assert_eq!(mh.session, Session::Closed);
    assert!(!mh.is_open);
    assert_eq!(mh.next_open, "2026-11-27T09:30:00-05:00");
    assert_eq!(mh.open, "2026-11-27T09:30:00-05:00");
    assert_eq!(mh.close, "2026-11-27T13:00:00-05:00");

    // Saturday noon -> Monday's hours.
    let mh = cal.market_hours(utc(2026, 11, 28, 17, 0));
    assert_eq!(mh.session, Session::Closed);
    assert_eq!(mh.open, "2026-11-30T09:30:00-05:00");
    assert_eq!(mh.close, "2026-11-30T16:00:00-05:00");
    assert_eq!(mh.next_open, "2026-11-30T09:30:00-05:00");

    // After the close on a trading day: today's hours, tomorrow's open.
    let mh = cal.market_hours(utc(2026, 11, 25, 22, 0));
    assert_eq!(mh.session, Session::AfterHours);
    assert_eq!(mh.open, "2026-11-25T09:30:00-05:00");
    assert_eq!(mh.close, "2026-11-25T16:00:00-05:00");
    assert_eq!(mh.next_open, "2026-11-27T09:30:00-05:00");

    // Pre-market in summer: next_open is today's open.
    let mh = cal.market_hours(utc(2026, 6, 15, 12, 0));
    assert_eq!(mh.session, Session::PreMarket);
    assert_eq!(mh.next_open, "2026-06-15T09:30:00-04:00");
}

#[test]
fn serde_names() {
    assert_eq!(
        serde_json::to_string(&Session::PreMarket).unwrap(),
        "\"pre_market\""
    );
    assert_eq!(
        serde_json::to_string(&Session::AfterHours).unwrap(),
        "\"after_hours\""
    );
    let back: Session = serde_json::from_str("\"regular\"").unwrap();
    assert_eq!(back, Session::Regular);
    assert_eq!(Session::Closed.as_str(), "closed");
    assert_eq!(Session::PreMarket.as_str(), "pre_market");

    let mh = Calendar::nyse().market_hours(utc(2026, 11, 27, 15, 0));
    let v: serde_json::Value = serde_json::to_value(&mh).unwrap();
    assert_eq!(v["session"], "regular");
    assert_eq!(v["is_open"], true);
    assert_eq!(v["close"], "2026-11-27T13:00:00-05:00");
}

/// Weekday full-day closures 2000-01-03..=2035-12-31 from the `exchange_calendars` Python package
/// (4.13.2, calendar XNYS): business days minus its sessions. 342 dates.
const XNYS_CLOSED_2000_2035: &str = "
2000-01-17 2000-02-21 2000-04-21 2000-05-29 2000-07-04 2000-09-04 2000-11-23 2000-12-25
2001-01-01 2001-01-15 2001-02-19 2001-04-13 2001-05-28 2001-07-04 2001-09-03 2001-09-11
2001-09-12 2001-09-13 2001-09-14 2001-11-22 2001-12-25 2002-01-01 2002-01-21 2002-02-18
2002-03-29 2002-05-27 2002-07-04 2002-09-02 2002-11-28 2002-12-25 2003-01-01 2003-01-20
2003-02-17 2003-04-18 2003-05-26 2003-07-04 2003-09-01 2003-11-27 2003-12-25 2004-01-01
2004-01-19 2004-02-16 2004-04-09 2004-05-31 2004-06-11 2004-07-05 2004-09-06 2004-11-25
2004-12-24 2005-01-17 2005-02-21 2005-03-25 2005-05-30 2005-07-04 2005-09-05 2005-11-24
2005-12-26 2006-01-02 2006-01-16 2006-02-20 2006-04-14 2006-05-29 2006-07-04 2006-09-04
2006-11-23 2006-12-25 2007-01-01 2007-01-02 2007-01-15 2007-02-19 2007-04-06 2007-05-28
2007-07-04 2007-09-03 2007-11-22 2007-12-25 2008-01-01 2008-01-21 2008-02-18 2008-03-21
2008-05-26 2008-07-04 2008-09-01 2008-11-27 2008-12-25 2009-01-01 2009-01-19 2009-02-16
2009-04-10 2009-05-25 2009-07-03 2009-09-07 2009-11-26 2009-12-25 2010-01-01 2010-01-18
2010-02-15 2010-04-02 2010-05-31 2010-07-05 2010-09-06 2010-11-25 2010-12-24 2011-01-17
2011-02-21 2011-04-22 2011-05-30 2011-07-04 2011-09-05 2011-11-24 2011-12-26 2012-01-02
2012-01-16 2012-02-20 2012-04-06 2012-05-28 2012-07-04 2012-09-03 2012-10-29 2012-10-30
2012-11-22 2012-12-25 2013-01-01 2013-01-21 2013-02-18 2013-03-29 2013-05-27 2013-07-04
2013-09-02 2013-11-28 2013-12-25 2014-01-01 2014-01-20 2014-02-17 2014-04-18 2014-05-26
2014-07-04 2014-09-01 2014-11-27 2014-12-25 2015-01-01 2015-01-19 2015-02-16 2015-04-03
2015-05-25 2015-07-03 2015-09-07 2015-11-26 2015-12-25 2016-01-01 2016-01-18 2016-02-15
2016-03-25 2016-05-30 2016-07-04 2016-09-05 2016-11-24 2016-12-26 2017-01-02 2017-01-16
2017-02-20 2017-04-14 2017-05-29 2017-07-04 2017-09-04 2017-11-23 2017-12-25 2018-01-01
2018-01-15 2018-02-19 2018-03-30 2018-05-28 2018-07-04 2018-09-03 2018-11-22 2018-12-05
2018-12-25 2019-01-01 2019-01-21 2019-02-18 2019-04-19 2019-05-27 2019-07-04 2019-09-02
2019-11-28 2019-12-25 2020-01-01 2020-01-20 2020-02-17 2020-04-10 2020-05-25 2020-07-03
2020-09-07 2020-11-26 2020-12-25 2021-01-01 2021-01-18 2021-02-15 2021-04-02 2021-05-31
2021-07-05 2021-09-06 2021-11-25 2021-12-24 2022-01-17 2022-02-21 2022-04-15 2022-05-30
2022-06-20 2022-07-04 2022-09-05 2022-11-24 2022-12-26 2023-01-02 2023-01-16 2023-02-20
2023-04-07 2023-05-29 2023-06-19 2023-07-04 2023-09-04 2023-11-23 2023-12-25 2024-01-01
2024-01-15 2024-02-19 2024-03-29 2024-05-27 2024-06-19 2024-07-04 2024-09-02 2024-11-28
2024-12-25 2025-01-01 2025-01-09 2025-01-20 2025-02-17 2025-04-18 2025-05-26 2025-06-19
2025-07-04 2025-09-01 2025-11-27 2025-12-25 2026-01-01 2026-01-19 2026-02-16 2026-04-03
2026-05-25 2026-06-19 2026-07-03 2026-09-07 2026-11-26 2026-12-25 2027-01-01 2027-01-18
2027-02-15 2027-03-26 2027-05-31 2027-06-18 2027-07-05 2027-09-06 2027-11-25 2027-12-24
2028-01-17 2028-02-21 2028-04-14 2028-05-29 2028-06-19 2028-07-04 2028-09-04 2028-11-23
2028-12-25 2029-01-01 2029-01-15 2029-02-19 2029-03-30 2029-05-28 2029-06-19 2029-07-04
2029-09-03 2029-11-22 2029-12-25 2030-01-01 2030-01-21 2030-02-18 2030-04-19 2030-05-27
2030-06-19 2030-07-04 2030-09-02 2030-11-28 2030-12-25 2031-01-01 2031-01-20 2031-02-17
2031-04-11 2031-05-26 2031-06-19 2031-07-04 2031-09-01 2031-11-27 2031-12-25 2032-01-01
2032-01-19 2032-02-16 2032-03-26 2032-05-31 2032-06-18 2032-07-05 2032-09-06 2032-11-25
2032-12-24 2033-01-17 2033-02-21 2033-04-15 2033-05-30 2033-06-20 2033-07-04 2033-09-05
2033-11-24 2033-12-26 2034-01-02 2034-01-16 2034-02-20 2034-04-07 2034-05-29 2034-06-19
2034-07-04 2034-09-04 2034-11-23 2034-12-25 2035-01-01 2035-01-15 2035-02-19 2035-03-23
2035-05-28 2035-06-19 2035-07-04 2035-09-03 2035-11-22 2035-12-25
";

/// 13:00 early closes 2000..=2035 from the same `exchange_calendars` XNYS calendar. 79 dates.
const XNYS_EARLY_2000_2035: &str = "
2000-07-03 2000-11-24 2001-07-03 2001-11-23 2001-12-24 2002-07-05 2002-11-29 2002-12-24
2003-07-03 2003-11-28 2003-12-24 2003-12-26 2004-11-26 2005-11-25 2006-07-03 2006-11-24
2007-07-03 2007-11-23 2007-12-24 2008-07-03 2008-11-28 2008-12-24 2009-11-27 2009-12-24
2010-11-26 2011-11-25 2012-07-03 2012-11-23 2012-12-24 2013-07-03 2013-11-29 2013-12-24
2014-07-03 2014-11-28 2014-12-24 2015-11-27 2015-12-24 2016-11-25 2017-07-03 2017-11-24
2018-07-03 2018-11-23 2018-12-24 2019-07-03 2019-11-29 2019-12-24 2020-11-27 2020-12-24
2021-11-26 2022-11-25 2023-07-03 2023-11-24 2024-07-03 2024-11-29 2024-12-24 2025-07-03
2025-11-28 2025-12-24 2026-11-27 2026-12-24 2027-11-26 2028-07-03 2028-11-24 2029-07-03
2029-11-23 2029-12-24 2030-07-03 2030-11-29 2030-12-24 2031-07-03 2031-11-28 2031-12-24
2032-11-26 2033-11-25 2034-07-03 2034-11-24 2035-07-03 2035-11-23 2035-12-24
";

fn parse_dates(s: &str) -> Vec<NaiveDate> {
    s.split_whitespace()
        .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap())
        .collect()
}

#[test]
fn matches_exchange_calendars_reference_2000_2035() {
    let cal = Calendar::nyse();
    let mut closed = Vec::new();
    let mut early = Vec::new();
    for y in 2000..=2035 {
        closed.extend(holiday_dates(&cal, y));
        early.extend(cal.early_closes_in_year(y));
    }
    let want_closed = parse_dates(XNYS_CLOSED_2000_2035);
    let want_early = parse_dates(XNYS_EARLY_2000_2035);
    assert_eq!(want_closed.len(), 342);
    assert_eq!(want_early.len(), 79);
    assert_eq!(closed, want_closed);
    assert_eq!(early, want_early);
}
