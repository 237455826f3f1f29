//! The fake's market clock and the date/duration strings of the TWS API. Market time runs on
//! tokio time (so `tokio::time::pause` fast-forwards it) at a configurable speed, starting from a
//! configured Unix time. All times are UTC; calendar math is Howard Hinnant's civil-date algorithm.

use std::time::Duration;
use tokio::time::Instant;

/// Simulated market time: `origin + (tokio now − start) × speed`.
#[derive(Debug, Clone)]
pub struct SimClock {
    origin_ms: i64,
    start: Instant,
    speed: f64,
}

impl SimClock {
    /// `speed` = simulated seconds per real second (1.0 = real time).
    pub fn new(origin_unix_ms: i64, speed: f64) -> Self {
        Self {
            origin_ms: origin_unix_ms,
            start: Instant::now(),
            speed: speed.max(0.0),
        }
    }

    pub fn now_ms(&self) -> i64 {
        let real = self.start.elapsed().as_secs_f64() * 1000.0;
        self.origin_ms + (real * self.speed) as i64
    }

    pub fn now_s(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// Wall-clock Unix milliseconds (the default origin).
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `YYYYMMDD`.
pub fn yyyymmdd(unix_s: i64) -> String {
    let (y, m, d) = civil_from_days(unix_s.div_euclid(86_400));
    format!("{y:04}{m:02}{d:02}")
}

/// `YYYYMMDD HH:MM:SS` (UTC, no zone).
pub fn date_time(unix_s: i64) -> String {
    let secs = unix_s.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        yyyymmdd(unix_s),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `YYYYMMDD-HH:MM:SS`, the zone-less UTC form IB uses (and ibapi parses) in HistoricalDataEnd.
pub fn dashed_date_time(unix_s: i64) -> String {
    date_time(unix_s).replacen(' ', "-", 1)
}

/// Parses `YYYYMMDD HH:MM:SS[ zone]`, `YYYYMMDD-HH:MM:SS` or `YYYYMMDD` into Unix seconds.
/// The zone is ignored: the fake's market runs on UTC.
pub fn parse_date_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let date = text.get(..8)?;
    if !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = date[..4].parse().ok()?;
    let m: u32 = date[4..6].parse().ok()?;
    let d: u32 = date[6..8].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = days_from_civil(y, m, d) * 86_400;
    let rest = text[8..].trim_start_matches([' ', '-']);
    if rest.is_empty() {
        return Some(day);
    }
    let hms = rest.split(' ').next()?;
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (parts.next()??, parts.next()??, parts.next()??);
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(day + h * 3600 + mi * 60 + s)
}

/// Parses a historical `duration` (`"<n> S|D|W|M|Y"`) into seconds; a month is 30 days, a year 365.
pub fn parse_duration(text: &str) -> Option<i64> {
    let (n, unit) = text.trim().split_once(' ')?;
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    let unit_s = match unit.trim() {
        "S" => 1,
        "D" => 86_400,
        "W" => 7 * 86_400,
        "M" => 30 * 86_400,
        "Y" => 365 * 86_400,
        _ => return None,
    };
    n.checked_mul(unit_s)
}

/// Parses a bar size setting (`"1 secs"`, `"5 mins"`, `"1 hour"`, `"1 day"`, `"1 week"`,
/// `"1 month"`) into seconds.
pub fn parse_bar_size(text: &str) -> Option<i64> {
    let (n, unit) = text.trim().split_once(' ')?;
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    let unit = unit.trim().trim_end_matches('s');
    let unit_s = match unit {
        "sec" => 1,
        "min" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "week" => 7 * 86_400,
        "month" => 30 * 86_400,
        _ => return None,
    };
    n.checked_mul(unit_s)
}

/// How many simulated seconds one real `interval` represents when 5-second bars are pushed
/// every `interval`.
pub fn speed_for_bar_interval(interval: Duration) -> f64 {
    let ms = interval.as_secs_f64() * 1000.0;
    if ms <= 0.0 {
        1.0
    } else {
        5000.0 / ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_and_known_dates() {
        // 2026-01-01 is 20454 days after the epoch (56 years, 14 leap days: 56*365+14).
        assert_eq!(days_from_civil(2026, 1, 1), 56 * 365 + 14);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(date_time(1_767_225_600 + 3661), "20260101 01:01:01");
        assert_eq!(dashed_date_time(1_767_225_600), "20260101-00:00:00");
    }

    #[test]
    fn parses_tws_date_forms() {
        let t = 1_767_225_600 + 12 * 3600;
        assert_eq!(parse_date_time("20260101 12:00:00"), Some(t));
        assert_eq!(parse_date_time("20260101 12:00:00 US/Eastern"), Some(t));
        assert_eq!(parse_date_time("20260101-12:00:00"), Some(t));
        assert_eq!(parse_date_time("20260101"), Some(1_767_225_600));
        assert_eq!(parse_date_time("2026010"), None);
        assert_eq!(parse_date_time("20261301 00:00:00"), None);
        assert_eq!(parse_date_time("20260101 25:00:00"), None);
    }

    #[test]
    fn parses_durations_and_bar_sizes() {
        assert_eq!(parse_duration("1 D"), Some(86_400));
        assert_eq!(parse_duration("3600 S"), Some(3600));
        assert_eq!(parse_duration("2 W"), Some(14 * 86_400));
        assert_eq!(parse_duration("0 D"), None);
        assert_eq!(parse_duration("1 X"), None);
        assert_eq!(parse_bar_size("1 min"), Some(60));
        assert_eq!(parse_bar_size("5 mins"), Some(300));
        assert_eq!(parse_bar_size("5 secs"), Some(5));
        assert_eq!(parse_bar_size("1 hour"), Some(3600));
        assert_eq!(parse_bar_size("1 day"), Some(86_400));
        assert_eq!(parse_bar_size("1 fortnight"), None);
    }
}
