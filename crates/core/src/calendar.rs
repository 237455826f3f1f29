//! The NYSE market calendar: which days the exchange trades, its session hours in New York time
//! (pre-market 04:00–09:30, regular 09:30–16:00, after-hours 16:00–20:00; regular ends 13:00 and
//! after-hours 17:00 on early-close days), and the instant arithmetic built on them.
//!
//! Coverage: the rules reproduce NYSE's published full-day closures and 13:00 early closes for
//! 2000–2035 (New Year's Day is not moved back to Friday when Jan 1 is a Saturday; Juneteenth from
//! 2022; before 2013 the early close around a Thursday July 4 was Friday July 5, since then it is
//! Wednesday July 3). Unscheduled closures are a table of known one-offs up to 2025; a future
//! one-off must be added there. Beyond 2035 the same rules keep applying; wall time is converted
//! with chrono-tz, whose New York table has DST transitions only up to 2099 (later years are read
//! as EST). Not modelled: delayed openings (e.g. 2002-09-11 at 12:00, moments of silence) and
//! pre-2000 history.
//!
//! Every search is capped at [`SEARCH_CAP_DAYS`] days, and instants whose New York wall time
//! cannot be represented as an `i64` of nanoseconds saturate to `Ts(i64::MIN)` / `Ts(i64::MAX)`,
//! so no input instant or date can make these functions loop forever or panic.

use std::fmt;

use chrono::{
    Datelike, LocalResult, NaiveDate, NaiveDateTime, SecondsFormat, TimeDelta, TimeZone, Weekday,
};
use chrono_tz::America::New_York;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::types::Ts;

/// How many days any forward/backward search looks before giving up. The longest real gap
/// between NYSE sessions since 2000 is 2001-09-10 to 2001-09-17 (7 days).
pub const SEARCH_CAP_DAYS: u32 = 20;

/// Full-day closures that no rule predicts.
const ONE_OFF_CLOSURES: &[((i32, u32, u32), &str)] = &[
    ((2001, 9, 11), "September 11 attacks"),
    ((2001, 9, 12), "September 11 attacks"),
    ((2001, 9, 13), "September 11 attacks"),
    ((2001, 9, 14), "September 11 attacks"),
    ((2004, 6, 11), "National Day of Mourning for Ronald Reagan"),
    ((2007, 1, 2), "National Day of Mourning for Gerald Ford"),
    ((2012, 10, 29), "Hurricane Sandy"),
    ((2012, 10, 30), "Hurricane Sandy"),
    (
        (2018, 12, 5),
        "National Day of Mourning for George H. W. Bush",
    ),
    ((2025, 1, 9), "National Day of Mourning for Jimmy Carter"),
];

/// 13:00 early closes that no rule predicts.
const ONE_OFF_EARLY_CLOSES: &[(i32, u32, u32)] = &[(2003, 12, 26)];

const NEW_YEARS_DAY: &str = "New Year's Day";
const MLK_DAY: &str = "Martin Luther King Jr. Day";
const WASHINGTONS_BIRTHDAY: &str = "Washington's Birthday";
const GOOD_FRIDAY: &str = "Good Friday";
const MEMORIAL_DAY: &str = "Memorial Day";
const JUNETEENTH: &str = "Juneteenth National Independence Day";
const INDEPENDENCE_DAY: &str = "Independence Day";
const LABOR_DAY: &str = "Labor Day";
const THANKSGIVING: &str = "Thanksgiving Day";
const CHRISTMAS: &str = "Christmas Day";

/// Which trading session an instant falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Session {
    PreMarket,
    Regular,
    AfterHours,
    Closed,
}

impl Session {
    pub fn as_str(self) -> &'static str {
        match self {
            Session::PreMarket => "pre_market",
            Session::Regular => "regular",
            Session::AfterHours => "after_hours",
            Session::Closed => "closed",
        }
    }
}

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of the market state at an instant, for status displays and the API.
/// Times are RFC 3339 with the New York offset, e.g. `"2026-11-27T13:00:00-05:00"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarketHours {
    pub session: Session,
    /// True in the regular session only.
    pub is_open: bool,
    /// Regular open of today if today trades, otherwise of the next trading day.
    pub open: String,
    /// Regular close of the same day as `open`.
    pub close: String,
    /// The first regular open strictly after the instant.
    pub next_open: String,
}

/// The NYSE calendar. Stateless today; a struct so that other venues or an extra closure table
/// can be added without changing callers.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    _nyse: (),
}

/// The four session boundaries of one trading day.
#[derive(Debug, Clone, Copy)]
struct DayBounds {
    pre_open: Ts,
    open: Ts,
    close: Ts,
    after_close: Ts,
}

impl Calendar {
    pub fn nyse() -> Self {
        Calendar::default()
    }

    /// The name of the full-day closure on `d`, or `None` if `d` is a weekday the exchange trades
    /// or a weekend (weekends are closed but not holidays).
    pub fn holiday(&self, d: NaiveDate) -> Option<&'static str> {
        if is_weekend(d) {
            return None;
        }
        one_off_closure(d).or_else(|| rule_holiday(d))
    }

    pub fn is_trading_day(&self, d: NaiveDate) -> bool {
        !is_weekend(d) && self.holiday(d).is_none()
    }

    /// True if `d` trades and the regular session ends at 13:00.
    pub fn is_early_close(&self, d: NaiveDate) -> bool {
        self.is_trading_day(d) && (rule_early_close(d) || one_off_early_close(d))
    }

    /// The regular session `(open, close)` of `d`, or `None` if the exchange is closed that day.
    pub fn regular_hours(&self, d: NaiveDate) -> Option<(Ts, Ts)> {
        self.bounds(d).map(|b| (b.open, b.close))
    }

    pub fn session_at(&self, t: Ts) -> Session {
        let Some(b) = self.bounds(ny_date(t)) else {
            return Session::Closed;
        };
        if t < b.pre_open {
            Session::Closed
        } else if t < b.open {
            Session::PreMarket
        } else if t < b.close {
            Session::Regular
        } else if t < b.after_close {
            Session::AfterHours
        } else {
            Session::Closed
        }
    }

    /// True in the regular session.
    pub fn is_open(&self, t: Ts) -> bool {
        self.session_at(t) == Session::Regular
    }

    /// The first regular-session open strictly after `t`; `Ts(i64::MAX)` if none is found within
    /// [`SEARCH_CAP_DAYS`] (only possible at the edge of the representable range).
    pub fn next_open(&self, t: Ts) -> Ts {
        self.first_after(t, |(open, _)| open)
    }

    /// The first regular-session close strictly after `t`; saturates like [`Calendar::next_open`].
    pub fn next_close(&self, t: Ts) -> Ts {
        self.first_after(t, |(_, close)| close)
    }

    /// The first trading day strictly after `d`. If the search cap or the end of the date range is
    /// hit (impossible under the rules), returns the last date examined.
    pub fn next_trading_day(&self, d: NaiveDate) -> NaiveDate {
        self.step_to_trading_day(d, NaiveDate::succ_opt)
    }

    /// The last trading day strictly before `d`; bounded like [`Calendar::next_trading_day`].
    pub fn prev_trading_day(&self, d: NaiveDate) -> NaiveDate {
        self.step_to_trading_day(d, NaiveDate::pred_opt)
    }

    pub fn market_hours(&self, t: Ts) -> MarketHours {
        let today = ny_date(t);
        let day = if self.is_trading_day(today) {
            today
        } else {
            self.next_trading_day(today)
        };
        let b = day_bounds(day, self.is_early_close(day));
        let session = self.session_at(t);
        MarketHours {
            session,
            is_open: session == Session::Regular,
            open: rfc3339_ny(b.open),
            close: rfc3339_ny(b.close),
            next_open: rfc3339_ny(self.next_open(t)),
        }
    }

    /// Every full-day closure in `year` that falls on a weekday, in date order.
    pub fn holidays_in_year(&self, year: i32) -> Vec<(NaiveDate, &'static str)> {
        days_of_year(year)
            .filter_map(|d| self.holiday(d).map(|name| (d, name)))
            .collect()
    }

    /// Every early-close trading day in `year`, in date order.
    pub fn early_closes_in_year(&self, year: i32) -> Vec<NaiveDate> {
        days_of_year(year)
            .filter(|&d| self.is_early_close(d))
            .collect()
    }

    /// Number of trading days in `year`.
    pub fn trading_days_in_year(&self, year: i32) -> usize {
        days_of_year(year)
            .filter(|&d| self.is_trading_day(d))
            .count()
    }

    fn bounds(&self, d: NaiveDate) -> Option<DayBounds> {
        self.is_trading_day(d)
            .then(|| day_bounds(d, self.is_early_close(d)))
    }

    fn first_after(&self, t: Ts, pick: impl Fn((Ts, Ts)) -> Ts) -> Ts {
        let mut d = ny_date(t);
        for _ in 0..=SEARCH_CAP_DAYS {
            if let Some(edge) = self.regular_hours(d).map(&pick) {
                if edge > t {
                    return edge;
                }
            }
            match d.succ_opt() {
                Some(next) => d = next,
                None => break,
            }
        }
        Ts(i64::MAX)
    }

    fn step_to_trading_day(
        &self,
        d: NaiveDate,
        step: fn(&NaiveDate) -> Option<NaiveDate>,
    ) -> NaiveDate {
        let mut cur = d;
        for _ in 0..SEARCH_CAP_DAYS {
            match step(&cur) {
                Some(next) => cur = next,
                None => return cur,
            }
            if self.is_trading_day(cur) {
                return cur;
            }
        }
        cur
    }
}

/// The exchange-local (New York) calendar date of an instant.
pub fn ny_date(t: Ts) -> NaiveDate {
    ny_datetime(t).date_naive()
}

/// An instant as New York wall time.
pub fn ny_datetime(t: Ts) -> chrono::DateTime<Tz> {
    t.to_utc().with_timezone(&New_York)
}

/// The instant at New York wall time `h:m` on `d`. Hours past 23 or minutes past 59 roll into
/// later days. A wall time skipped by the spring-forward change is read with the pre-change
/// offset (02:30 becomes 03:30 EDT); a repeated one in the autumn takes the earlier instant.
/// Saturates at the ends of the `Ts` range.
pub fn ny_local_to_ts(d: NaiveDate, h: u32, m: u32) -> Ts {
    let saturated = if d.year() >= 1970 {
        Ts(i64::MAX)
    } else {
        Ts(i64::MIN)
    };
    let offset = TimeDelta::try_hours(i64::from(h))
        .zip(TimeDelta::try_minutes(i64::from(m)))
        .and_then(|(hh, mm)| hh.checked_add(&mm));
    let Some(naive) = offset.and_then(|o| d.and_time(chrono::NaiveTime::MIN).checked_add_signed(o))
    else {
        return saturated;
    };
    resolve_ny(naive)
        .and_then(|dt| dt.timestamp_nanos_opt())
        .map_or(saturated, Ts)
}

fn resolve_ny(naive: NaiveDateTime) -> Option<chrono::DateTime<Tz>> {
    match New_York.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Some(dt),
        LocalResult::Ambiguous(earlier, _) => Some(earlier),
        LocalResult::None => {
            // In a spring-forward gap: the same instant is one wall-clock hour later.
            let later = naive.checked_add_signed(TimeDelta::hours(1))?;
            New_York.from_local_datetime(&later).earliest()
        }
    }
}

fn rfc3339_ny(t: Ts) -> String {
    ny_datetime(t).to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn day_bounds(d: NaiveDate, early: bool) -> DayBounds {
    let (close_h, after_h) = if early { (13, 17) } else { (16, 20) };
    DayBounds {
        pre_open: ny_local_to_ts(d, 4, 0),
        open: ny_local_to_ts(d, 9, 30),
        close: ny_local_to_ts(d, close_h, 0),
        after_close: ny_local_to_ts(d, after_h, 0),
    }
}

fn days_of_year(year: i32) -> impl Iterator<Item = NaiveDate> {
    let first = NaiveDate::from_ymd_opt(year, 1, 1);
    (0..366u64)
        .filter_map(move |i| first.and_then(|f| f.checked_add_days(chrono::Days::new(i))))
        .filter(move |d| d.year() == year)
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

fn ymd(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

fn one_off_closure(d: NaiveDate) -> Option<&'static str> {
    ONE_OFF_CLOSURES
        .iter()
        .find(|((y, m, day), _)| ymd(*y, *m, *day) == Some(d))
        .map(|(_, name)| *name)
}

fn one_off_early_close(d: NaiveDate) -> bool {
    ONE_OFF_EARLY_CLOSES
        .iter()
        .any(|(y, m, day)| ymd(*y, *m, *day) == Some(d))
}

/// A fixed-date holiday on a weekend is observed on the Friday before or the Monday after.
fn observed(d: NaiveDate) -> Option<NaiveDate> {
    match d.weekday() {
        Weekday::Sat => d.pred_opt(),
        Weekday::Sun => d.succ_opt(),
        _ => Some(d),
    }
}

fn nth_weekday(y: i32, m: u32, wd: Weekday, n: u8) -> Option<NaiveDate> {
    NaiveDate::from_weekday_of_month_opt(y, m, wd, n)
}

fn last_weekday(y: i32, m: u32, wd: Weekday) -> Option<NaiveDate> {
    nth_weekday(y, m, wd, 5).or_else(|| nth_weekday(y, m, wd, 4))
}

fn thanksgiving(y: i32) -> Option<NaiveDate> {
    nth_weekday(y, 11, Weekday::Thu, 4)
}

/// Gregorian Easter Sunday (anonymous Gregorian algorithm, Meeus/Jones/Butcher).
fn easter_sunday(y: i32) -> Option<NaiveDate> {
    let a = y.rem_euclid(19);
    let b = y.div_euclid(100);
    let c = y.rem_euclid(100);
    let h = (19 * a + b - b / 4 - (b - (b + 8) / 25 + 1) / 3 + 15).rem_euclid(30);
    let l = (32 + 2 * (b % 4) + 2 * (c / 4) - h - c % 4).rem_euclid(7);
    let m = (a + 11 * h + 22 * l) / 451;
    let n = h + l - 7 * m + 114;
    ymd(
        y,
        u32::try_from(n / 31).ok()?,
        u32::try_from(n % 31 + 1).ok()?,
    )
}

fn good_friday(y: i32) -> Option<NaiveDate> {
    easter_sunday(y)?.checked_sub_days(chrono::Days::new(2))
}

/// The rule-based holiday observed on weekday `d`, if any.
fn rule_holiday(d: NaiveDate) -> Option<&'static str> {
    let y = d.year();
    let is = |date: Option<NaiveDate>| date == Some(d);
    let hit = match d.month() {
        // NYSE Rule 7.2: a Saturday New Year's Day is not observed on Friday Dec 31.
        1 if is(ymd(y, 1, 1)
            .filter(|j| j.weekday() != Weekday::Sat)
            .and_then(observed)) =>
        {
            NEW_YEARS_DAY
        }
        1 if y >= 1998 && is(nth_weekday(y, 1, Weekday::Mon, 3)) => MLK_DAY,
        2 if is(nth_weekday(y, 2, Weekday::Mon, 3)) => WASHINGTONS_BIRTHDAY,
        3 | 4 if is(good_friday(y)) => GOOD_FRIDAY,
        5 if is(last_weekday(y, 5, Weekday::Mon)) => MEMORIAL_DAY,
        6 if y >= 2022 && is(ymd(y, 6, 19).and_then(observed)) => JUNETEENTH,
        7 if is(ymd(y, 7, 4).and_then(observed)) => INDEPENDENCE_DAY,
        9 if is(nth_weekday(y, 9, Weekday::Mon, 1)) => LABOR_DAY,
        11 if is(thanksgiving(y)) => THANKSGIVING,
        12 if is(ymd(y, 12, 25).and_then(observed)) => CHRISTMAS,
        _ => return None,
    };
    Some(hit)
}

/// Rule-based 13:00 early closes (the caller checks that `d` trades at all).
fn rule_early_close(d: NaiveDate) -> bool {
    let wd = d.weekday();
    match (d.month(), d.day()) {
        (11, _) => thanksgiving(d.year()).and_then(|t| t.succ_opt()) == Some(d),
        // A Friday Dec 24 is the observed Christmas holiday instead.
        (12, 24) => matches!(
            wd,
            Weekday::Mon | Weekday::Tue | Weekday::Wed | Weekday::Thu
        ),
        // July 3 closes early when July 4 is Tue/Wed/Fri; when July 4 is a Thursday the early
        // close was Friday July 5 until 2012 and is Wednesday July 3 since 2013. A Friday July 3
        // is the observed holiday, and a Monday July 4 has no early close before it.
        (7, 3) => match wd {
            Weekday::Mon | Weekday::Tue | Weekday::Thu => true,
            Weekday::Wed => d.year() >= 2013,
            _ => false,
        },
        (7, 5) => wd == Weekday::Fri && d.year() < 2013,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Ts {
        Ts::from_utc(Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap())
    }

    #[test]
    fn easter_matches_published_dates() {
        let known = [
            (2000, 4, 23),
            (2001, 4, 15),
            (2008, 3, 23),
            (2011, 4, 24),
            (2019, 4, 21),
            (2024, 3, 31),
            (2025, 4, 20),
            (2026, 4, 5),
            (2027, 3, 28),
            (2028, 4, 16),
            (2029, 4, 1),
            (2030, 4, 21),
            (2035, 3, 25),
            (2038, 4, 25),
        ];
        for (y, m, d) in known {
            assert_eq!(easter_sunday(y), Some(date(y, m, d)), "Easter {y}");
        }
    }

    #[test]
    fn weekday_helpers() {
        assert_eq!(
            nth_weekday(2026, 1, Weekday::Mon, 3),
            Some(date(2026, 1, 19))
        );
        assert_eq!(last_weekday(2027, 5, Weekday::Mon), Some(date(2027, 5, 31)));
        assert_eq!(last_weekday(2026, 5, Weekday::Mon), Some(date(2026, 5, 25)));
        assert_eq!(thanksgiving(2026), Some(date(2026, 11, 26)));
        assert_eq!(observed(date(2026, 7, 4)), Some(date(2026, 7, 3)));
        assert_eq!(observed(date(2027, 7, 4)), Some(date(2027, 7, 5)));
    }

    #[test]
    fn local_time_in_dst_gap_and_overlap() {
        // 2026-03-08 02:30 does not exist in New York; read as 02:30 EST = 07:30 UTC.
        assert_eq!(
            ny_local_to_ts(date(2026, 3, 8), 2, 30),
            utc(2026, 3, 8, 7, 30)
        );
        // 2026-11-01 01:30 happens twice; the earlier one is EDT = 05:30 UTC.
        assert_eq!(
            ny_local_to_ts(date(2026, 11, 1), 1, 30),
            utc(2026, 11, 1, 5, 30)
        );
        // Hour 24 rolls into the next day.
        assert_eq!(
            ny_local_to_ts(date(2026, 1, 5), 24, 0),
            utc(2026, 1, 6, 5, 0)
        );
    }

    #[test]
    fn extreme_inputs_do_not_panic_or_loop() {
        let cal = Calendar::nyse();
        for t in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            let t = Ts(t);
            let _ = cal.session_at(t);
            let _ = cal.next_open(t);
            let _ = cal.next_close(t);
            let _ = cal.market_hours(t);
        }
        assert_eq!(cal.next_open(Ts(i64::MAX)), Ts(i64::MAX));
        for d in [NaiveDate::MIN, NaiveDate::MAX] {
            let _ = cal.next_trading_day(d);
            let _ = cal.prev_trading_day(d);
            let _ = cal.regular_hours(d);
            let _ = cal.is_early_close(d);
            let _ = ny_local_to_ts(d, u32::MAX, u32::MAX);
        }
        assert_eq!(ny_local_to_ts(NaiveDate::MAX, 9, 30), Ts(i64::MAX));
        assert_eq!(ny_local_to_ts(NaiveDate::MIN, 9, 30), Ts(i64::MIN));
        let _ = cal.trading_days_in_year(i32::MAX);
    }

    #[test]
    fn far_future_still_follows_rules() {
        let cal = Calendar::nyse();
        // 2099-07-03 is a Friday, so July 3 is the observed holiday; 2098-07-03 is a Thursday.
        assert_eq!(cal.holiday(date(2099, 7, 3)), Some(INDEPENDENCE_DAY));
        assert!(cal.is_early_close(date(2098, 7, 3)));
        assert_eq!(
            cal.regular_hours(date(2098, 7, 3)),
            Some((utc(2098, 7, 3, 13, 30), utc(2098, 7, 3, 17, 0)))
        );
        // 2200-07-04 is a Friday. chrono-tz has New York DST transitions only up to 2099, so
        // 2200 is read as EST all year: 09:30 is 14:30 UTC.
        assert_eq!(cal.holiday(date(2200, 7, 4)), Some(INDEPENDENCE_DAY));
        assert!(cal.is_early_close(date(2200, 7, 3)));
        assert_eq!(
            cal.regular_hours(date(2200, 7, 3)),
            Some((utc(2200, 7, 3, 14, 30), utc(2200, 7, 3, 18, 0)))
        );
    }
}
