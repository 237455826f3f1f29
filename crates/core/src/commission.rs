//! Commission models: IB fixed pricing (default), per share, and basis points.
//!
//! Every estimate is rounded to the cent, midpoint away from zero, the way a broker statement
//! shows it, so paper fills carry the same kind of numbers as real ones.
//!
//! IB fixed (the default, charged on every paper fill) has an exact integer fast path that
//! returns the very `Decimal` (value and scale) the `Decimal` arithmetic does; inputs it
//! cannot hold exactly go the `Decimal` way.

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
        if *self == CommissionModel::IbFixed {
            if let Some(c) = ib_fixed_fast(qty.unsigned_abs(), price) {
                return c;
            }
        }
        self.commission_exact(qty, price)
    }

    /// The `Decimal` definition of [`Self::commission`]; the fast path must equal it.
    fn commission_exact(&self, qty: Qty, price: Price) -> Money {
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

/// IB fixed in integers: `min(max(0.005 × shares, 1.00), 0.01 × shares × |price|)` to the
/// cent, with the scale each `Decimal` step would give (0.005 × n has scale 3, 1.00 scale 2,
/// the cap the price's scale + 2; ties keep what `Ord::max`/`min` keep; rounding only ever
/// lowers a scale to 2). `None` when a product might not be exact in 96 bits, or for zero.
fn ib_fixed_fast(shares: u64, price: Price) -> Option<Money> {
    const MAX_SHARES: u64 = 1 << 40;
    let price_scale = price.scale();
    let m = price.mantissa().unsigned_abs();
    if shares == 0 || shares > MAX_SHARES || m == 0 || price_scale > 16 {
        return None;
    }
    let shares = u128::from(shares);
    let cap = shares.checked_mul(m).filter(|v| v >> 96 == 0)?;
    let cap_scale = price_scale + 2;
    let per_share = 5 * shares;
    // max(0.005 × shares, 1.00): on a tie `max` returns 1.00.
    let floored = if per_share > 1000 {
        (per_share, 3)
    } else {
        (100, 2)
    };
    // min(floored, cap): on a tie `min` returns `floored`.
    let (mant, scale) = if greater(floored, (cap, cap_scale)) {
        (cap, cap_scale)
    } else {
        floored
    };
    let (mant, scale) = round_half_away(mant, scale, 2);
    Decimal::try_from_i128_with_scale(i128::try_from(mant).ok()?, scale).ok()
}

/// 10^k as `u64` (the crate's one table; its powers are positive).
fn pow10(k: u32) -> u64 {
    crate::exact::POW10[k as usize].unsigned_abs()
}

/// `a > b` for non-negative (mantissa, scale) pairs whose scales are at most 18 and whose
/// mantissas are below 2^96, so rescaling stays within u128.
fn greater(a: (u128, u32), b: (u128, u32)) -> bool {
    let s = a.1.max(b.1);
    let up = |(m, sc): (u128, u32)| m * u128::from(pow10(s - sc));
    up(a) > up(b)
}

/// Rounds a non-negative (mantissa, scale) to `dp` places, midpoint away from zero, as
/// `Decimal::round_dp_with_strategy` does: a scale already at most `dp` is kept. The scale
/// is at most `dp` + 18.
fn round_half_away(mant: u128, scale: u32, dp: u32) -> (u128, u32) {
    if scale <= dp {
        return (mant, scale);
    }
    let div = pow10(scale - dp);
    let q = match u64::try_from(mant) {
        // The common case, without a 128-bit division.
        Ok(m) => u128::from(m / div + u64::from(m % div >= div - m % div)),
        Err(_) => {
            let (q, r) = (mant / u128::from(div), mant % u128::from(div));
            q + u128::from(r >= u128::from(div) - r)
        }
    };
    (q, dp)
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

    fn any_price() -> impl proptest::strategy::Strategy<Value = Decimal> {
        use proptest::prelude::*;
        prop_oneof![
            // Everyday prices: cents to thousands of dollars, 0-8 places.
            (1i64..100_000_000_000, 0u32..=8).prop_map(|(m, s)| Decimal::new(m, s)),
            // Anything a Decimal can hold, of either sign.
            (any::<i64>(), any::<i64>(), 0u32..=28).prop_map(|(a, b, s)| {
                let m = (i128::from(a) << 32 ^ i128::from(b)) % (1i128 << 96);
                Decimal::from_i128_with_scale(m, s)
            }),
            Just(Decimal::ZERO),
            Just(Decimal::MAX),
            Just(Decimal::MIN),
            Just(dec!(0.50)),
            Just(dec!(0.5000)),
            Just(dec!(-0.00)),
        ]
    }

    fn any_qty() -> impl proptest::strategy::Strategy<Value = Qty> {
        use proptest::prelude::*;
        prop_oneof![
            0i64..5_000,
            195i64..205,
            any::<i64>(),
            Just(i64::MIN),
            Just(1 << 40),
            Just((1 << 40) + 1),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// The integer path returns the same Decimal, value and scale, as the Decimal path.
        #[test]
        fn ib_fixed_fast_path_is_exact(qty in any_qty(), price in any_price()) {
            let fast = CommissionModel::IbFixed.commission(qty, price);
            let exact = CommissionModel::IbFixed.commission_exact(qty, price);
            proptest::prop_assert_eq!(fast, exact);
            proptest::prop_assert_eq!(fast.scale(), exact.scale());
            proptest::prop_assert_eq!(fast.is_sign_negative(), exact.is_sign_negative());
        }
    }

    #[test]
    fn ib_fixed_fast_path_ties_and_scales() {
        // Ties between the per-share amount, the $1 minimum and the cap, at several scales.
        for (qty, price) in [
            (200, dec!(0.5)),
            (200, dec!(0.50)),
            (200, dec!(0.500)),
            (200, dec!(50)),
            (100, dec!(1)),
            (100, dec!(1.0000)),
            (201, dec!(0.5)),
            (1, dec!(100)),
            (1, dec!(0.005)),
            (3, dec!(1.23456789)),
        ] {
            let fast = CommissionModel::IbFixed.commission(qty, price);
            let exact = CommissionModel::IbFixed.commission_exact(qty, price);
            assert_eq!(
                (fast, fast.scale()),
                (exact, exact.scale()),
                "{qty} @ {price}"
            );
        }
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
