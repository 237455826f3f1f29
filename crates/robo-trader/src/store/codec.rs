//! How domain values are written as SQLite text and read back: decimal money, RFC 3339
//! timestamps, and the enum spellings the schema's CHECK constraints accept.
//!
//! Every reader returns a [`StoreError::Corrupt`] that names the table, column and row, so a
//! hand-edited database fails with a sentence instead of a panic.

use std::str::FromStr;

use robo_core::orders::OrderState;
use robo_core::types::{
    ClientOrderId, OrderKind, OrderPurpose, Price, Side, Tif, TradingState, Ts,
};
use rust_decimal::Decimal;

use super::StoreError;

/// Where a value came from, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row: &'a str,
}

impl At<'_> {
    pub(crate) fn err(&self, value: &str, expected: &str) -> StoreError {
        StoreError::Corrupt {
            table: self.table.to_string(),
            column: self.column.to_string(),
            row: self.row.to_string(),
            detail: format!("{value:?} is not {expected}"),
        }
    }
}

/// Exact decimal text: normalized (no trailing zeros), never an exponent, never "-0".
pub(crate) fn dec_text(d: Decimal) -> String {
    let n = d.normalize();
    if n.is_zero() {
        "0".to_string()
    } else {
        n.to_string()
    }
}

pub(crate) fn parse_dec(s: &str, at: At<'_>) -> Result<Decimal, StoreError> {
    Decimal::from_str(s.trim()).map_err(|_| at.err(s, "a decimal number"))
}

/// RFC 3339 UTC with exactly three fractional digits, so text order is time order.
pub(crate) fn ts_text(ts: Ts) -> String {
    ts.to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn parse_ts(s: &str, at: At<'_>) -> Result<Ts, StoreError> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|dt| Ts::from_utc(dt.with_timezone(&chrono::Utc)))
        .map_err(|_| at.err(s, "an RFC 3339 timestamp"))
}

pub(crate) fn order_id_text(id: ClientOrderId) -> String {
    id.to_string()
}

pub(crate) fn parse_order_id(s: &str, at: At<'_>) -> Result<ClientOrderId, StoreError> {
    s.strip_prefix('C')
        .and_then(|n| n.parse::<u64>().ok())
        .map(ClientOrderId)
        .ok_or_else(|| at.err(s, "a client order id like \"C12\""))
}

pub(crate) fn parse_side(s: &str, at: At<'_>) -> Result<Side, StoreError> {
    match s {
        "BUY" => Ok(Side::Buy),
        "SELL" => Ok(Side::Sell),
        _ => Err(at.err(s, "BUY or SELL")),
    }
}

pub(crate) fn tif_text(t: Tif) -> &'static str {
    match t {
        Tif::Day => "DAY",
        Tif::Gtc => "GTC",
    }
}

pub(crate) fn parse_tif(s: &str, at: At<'_>) -> Result<Tif, StoreError> {
    match s {
        "DAY" => Ok(Tif::Day),
        "GTC" => Ok(Tif::Gtc),
        _ => Err(at.err(s, "DAY or GTC")),
    }
}

pub(crate) fn parse_purpose(s: &str, at: At<'_>) -> Result<OrderPurpose, StoreError> {
    const ALL: [OrderPurpose; 6] = [
        OrderPurpose::Entry,
        OrderPurpose::SignalExit,
        OrderPurpose::StopLoss,
        OrderPurpose::TrailingStop,
        OrderPurpose::TakeProfit,
        OrderPurpose::Flatten,
    ];
    ALL.into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| at.err(s, "an order purpose (entry, signal_exit, stop_loss, ...)"))
}

/// The order type and its (limit, stop) prices as columns.
pub(crate) fn kind_columns(k: &OrderKind) -> (&'static str, Option<Price>, Option<Price>) {
    match *k {
        OrderKind::Market => ("MKT", None, None),
        OrderKind::Limit { limit } => ("LMT", Some(limit), None),
        OrderKind::Stop { stop } => ("STP", None, Some(stop)),
        OrderKind::StopLimit { stop, limit } => ("STP LMT", Some(limit), Some(stop)),
    }
}

pub(crate) fn parse_kind(
    order_type: &str,
    limit: Option<Decimal>,
    stop: Option<Decimal>,
    at: At<'_>,
) -> Result<OrderKind, StoreError> {
    let need = |p: Option<Decimal>, col: &'static str| {
        p.ok_or_else(|| StoreError::Corrupt {
            table: at.table.to_string(),
            column: col.to_string(),
            row: at.row.to_string(),
            detail: format!("a {order_type} order needs {col}"),
        })
    };
    match order_type {
        "MKT" => Ok(OrderKind::Market),
        "LMT" => Ok(OrderKind::Limit {
            limit: need(limit, "limit_price")?,
        }),
        "STP" => Ok(OrderKind::Stop {
            stop: need(stop, "stop_price")?,
        }),
        "STP LMT" => Ok(OrderKind::StopLimit {
            stop: need(stop, "stop_price")?,
            limit: need(limit, "limit_price")?,
        }),
        _ => Err(at.err(order_type, "MKT, LMT, STP or STP LMT")),
    }
}

pub(crate) fn parse_order_state(s: &str, at: At<'_>) -> Result<OrderState, StoreError> {
    OrderState::parse(s).ok_or_else(|| at.err(s, "an order state (new, submitted, ..., rejected)"))
}

/// The states in which an order may still fill; the SQL list matches `OPEN_STATES_SQL`.
pub(crate) const OPEN_STATES_SQL: &str = "('new', 'submitted', 'partially_filled')";

pub(crate) fn parse_trading_state(s: &str, at: At<'_>) -> Result<TradingState, StoreError> {
    TradingState::parse(s).ok_or_else(|| at.err(s, "active, reduce_only or halted"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    const AT: At<'static> = At {
        table: "t",
        column: "c",
        row: "1",
    };

    #[test]
    fn decimal_text_is_plain_and_normalized() {
        assert_eq!(dec_text(dec!(100.500)), "100.5");
        assert_eq!(dec_text(dec!(-0.00)), "0");
        assert_eq!(dec_text(dec!(1e-10)), "0.0000000001");
        assert_eq!(parse_dec(" 12.34 ", AT).unwrap(), dec!(12.34));
        assert!(matches!(
            parse_dec("abc", AT),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn timestamps_sort_as_text_and_round_trip_to_the_millisecond() {
        let a = Ts::from_secs(1_704_205_800);
        assert_eq!(ts_text(a), "2024-01-02T14:30:00.000Z");
        assert_eq!(parse_ts(&ts_text(a), AT).unwrap(), a);
        let b = Ts::from_millis(1_704_205_800_500);
        assert!(ts_text(a) < ts_text(b));
        assert_eq!(parse_ts("2024-01-02T09:30:00-05:00", AT).unwrap(), a);
    }

    #[test]
    fn order_ids_parse() {
        assert_eq!(parse_order_id("C12", AT).unwrap(), ClientOrderId(12));
        assert!(parse_order_id("12", AT).is_err());
        assert!(parse_order_id("C-1", AT).is_err());
    }
}
