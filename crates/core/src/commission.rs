//! Commission models: IB fixed pricing (default), per share, and basis points.
//!
//! Every estimate is rounded to the cent, midpoint away from zero, the way a broker statement
//! shows it, so paper fills carry the same kind of numbers as real ones.

use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use rust_decimal_macros::dec;
use serde::{Deserialize, Serialize};

use crate::types::{Money, Price, Qty};

/// How commissions are estimated for paper fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommissionModel {
    /// IB fixed: $0.005/share, minimum $1.00, maximum 1% of trade value.
    #[default]
    IbFixed,
    /// `rate` dollars per share.
    PerShare {
        rate: Decimal,
    },
    /// `bps` basis points of trade value.
    Bps {
        bps: Decimal,
    },
    Zero,
}

/// Why a commission model string was refused. Each variant carries the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommissionParseError {
    #[error("unknown commission model {0:?} (expected \"ib-fixed\", \"per-share:<rate>\", \"bps:<bps>\" or \"zero\")")]
    UnknownModel(String),
    #[error("commission model {model:?}: {text:?} is not a decimal number")]
    BadNumber { model: &'static str, text: String },
    #[error("commission model {model:?}: {text:?} is negative")]
    Negative { model: &'static str, text: String },
    #[error("commission model {model:?} needs a value, as in \"{model}:<value>\"")]
    MissingValue { model: &'static str },
}

const IB_PER_SHARE: Decimal = dec!(0.005);
const IB_MIN: Decimal = dec!(1.00);
const IB_MAX_FRACTION: Decimal = dec!(0.01);
const BPS_PER_UNIT: Decimal = dec!(10000);

impl CommissionModel {
    /// The commission for trading `qty` shares at `price`, rounded to the cent. The sign of
    /// `qty` is ignored (fills carry positive quantities; positions are signed).
    pub fn commission(&self, qty: Qty, price: Price) -> Money {
        let shares = Decimal::from(qty.unsigned_abs());
        // Saturating so absurd input cannot panic; real orders are nowhere near the bounds.
        let value = shares.saturating_mul(price.abs());
        let raw = match *self {
            CommissionModel::IbFixed => {
                let per_share = IB_PER_SHARE.saturating_mul(shares).max(IB_MIN);
                per_share.min(IB_MAX_FRACTION.saturating_mul(value))
            }
            CommissionModel::PerShare { rate } => rate.saturating_mul(shares),
            CommissionModel::Bps { bps } => (bps / BPS_PER_UNIT).saturating_mul(value),
            CommissionModel::Zero => Decimal::ZERO,
        };
        raw.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
    }

    /// Parses `"ib-fixed"`, `"per-share:0.01"`, `"bps:1.5"` or `"zero"` (case-insensitive;
    /// `_` may stand for `-`).
    pub fn parse(s: &str) -> Result<Self, CommissionParseError> {
        let text = s.trim();
        let (name, value) = match text.split_once(':') {
            Some((n, v)) => (n, Some(v.trim())),
            None => (text, None),
        };
        let name = name.trim().to_ascii_lowercase().replace('_', "-");
        match (name.as_str(), value) {
            ("ib-fixed" | "ib" | "ibkr-fixed", None) => Ok(CommissionModel::IbFixed),
            ("zero" | "none", None) => Ok(CommissionModel::Zero),
            ("per-share", v) => Ok(CommissionModel::PerShare {
                rate: parse_rate("per-share", v)?,
            }),
            ("bps", v) => Ok(CommissionModel::Bps {
                bps: parse_rate("bps", v)?,
            }),
            _ => Err(CommissionParseError::UnknownModel(text.to_string())),
        }
    }
}

fn parse_rate(model: &'static str, v: Option<&str>) -> Result<Decimal, CommissionParseError> {
    let v = match v {
        Some(v) if !v.is_empty() => v,
        _ => return Err(CommissionParseError::MissingValue { model }),
    };
    let d = Decimal::from_str(v).map_err(|_| CommissionParseError::BadNumber {
        model,
        text: v.to_string(),
    })?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(CommissionParseError::Negative {
            model,
            text: v.to_string(),
        });
    }
    Ok(d)
}

impl FromStr for CommissionModel {
    type Err = CommissionParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CommissionModel::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ib(qty: Qty, price: Decimal) -> Decimal {
        CommissionModel::IbFixed.commission(qty, price)
    }

    #[test]
    fn ib_fixed_minimum_per_share_and_cap() {
        // 100 × 0.005 = 0.50 → minimum 1.00; cap 1% × 5000 = 50.
        assert_eq!(ib(100, dec!(50)), dec!(1.00));
        // 1000 × 0.005 = 5.00; cap 500.
        assert_eq!(ib(1000, dec!(50)), dec!(5.00));
        // 10 × 0.005 = 0.05 → min 1.00, but 1% × 50 = 0.50 caps it.
        assert_eq!(ib(10, dec!(5)), dec!(0.50));
        // 201 × 0.005 = 1.005 → rounds away from zero to 1.01.
        assert_eq!(ib(201, dec!(100)), dec!(1.01));
        // 1 share at $0.10: 1% of $0.10 = $0.001 → rounds to 0.00.
        assert_eq!(ib(1, dec!(0.10)), dec!(0.00));
        // 1 share at $0.50: 1% = 0.005 → midpoint away from zero = 0.01.
        assert_eq!(ib(1, dec!(0.50)), dec!(0.01));
        // Sign of qty does not matter.
        assert_eq!(ib(-1000, dec!(50)), dec!(5.00));
        assert_eq!(ib(0, dec!(50)), dec!(0));
    }

    #[test]
    fn per_share_and_bps() {
        let ps = CommissionModel::PerShare { rate: dec!(0.01) };
        assert_eq!(ps.commission(150, dec!(20)), dec!(1.50));
        let ps = CommissionModel::PerShare { rate: dec!(0.0035) };
        // 0.0035 × 3 = 0.0105 → 0.01; × 5 = 0.0175 → 0.02.
        assert_eq!(ps.commission(3, dec!(20)), dec!(0.01));
        assert_eq!(ps.commission(5, dec!(20)), dec!(0.02));
        let bps = CommissionModel::Bps { bps: dec!(1.5) };
        // 1.5 bps of 100 × 33.33 = 3333 → 0.49995 → 0.50.
        assert_eq!(bps.commission(100, dec!(33.33)), dec!(0.50));
        // 1.5 bps of 10 000 → 1.50.
        assert_eq!(bps.commission(100, dec!(100)), dec!(1.50));
        assert_eq!(CommissionModel::Zero.commission(1000, dec!(99)), dec!(0));
    }

    #[test]
    fn absurd_input_does_not_panic() {
        let _ = ib(i64::MAX, Decimal::MAX);
        let _ = ib(i64::MIN, Decimal::MIN);
        let _ = CommissionModel::Bps { bps: Decimal::MAX }.commission(i64::MAX, Decimal::MAX);
    }

    #[test]
    fn parse_accepts_each_model() {
        assert_eq!(
            CommissionModel::parse("ib-fixed"),
            Ok(CommissionModel::IbFixed)
        );
        assert_eq!(
            CommissionModel::parse(" IB_FIXED "),
            Ok(CommissionModel::IbFixed)
        );
        assert_eq!(CommissionModel::parse("zero"), Ok(CommissionModel::Zero));
        assert_eq!(
            CommissionModel::parse("per-share:0.01"),
            Ok(CommissionModel::PerShare { rate: dec!(0.01) })
        );
        assert_eq!(
            "bps:1.5".parse::<CommissionModel>(),
            Ok(CommissionModel::Bps { bps: dec!(1.5) })
        );
    }

    #[test]
    fn parse_errors_name_the_bad_text() {
        let e = CommissionModel::parse("ib-flat").unwrap_err();
        assert_eq!(e, CommissionParseError::UnknownModel("ib-flat".into()));
        assert!(e.to_string().contains("ib-flat"));
        let e = CommissionModel::parse("bps:abc").unwrap_err();
        assert_eq!(
            e,
            CommissionParseError::BadNumber {
                model: "bps",
                text: "abc".into()
            }
        );
        assert!(e.to_string().contains("abc"));
        let e = CommissionModel::parse("per-share:-0.01").unwrap_err();
        assert!(e.to_string().contains("-0.01"));
        assert_eq!(
            CommissionModel::parse("bps"),
            Err(CommissionParseError::MissingValue { model: "bps" })
        );
        assert_eq!(
            CommissionModel::parse("zero:1"),
            Err(CommissionParseError::UnknownModel("zero:1".into()))
        );
    }
}
