//! Position sizing: how many shares an entry buys (fixed fraction, ATR risk, half-Kelly or a
//! fixed quantity). Sizes round down to whole shares and err towards zero.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde::{Deserialize, Serialize};

use crate::indicators::exact_sma::fx;
use crate::ledger::TradeStats;
use crate::risk::{exact, E8};
use crate::types::{Money, Price, Qty};

/// Sizing modes, chosen in config (`[sizing] mode = "fixed_fraction"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum SizingConfig {
    /// Spend `fraction` of equity.
    FixedFraction { fraction: Decimal },
    /// Risk `risk_fraction` of equity with a stop `atr_multiple` ATRs away.
    AtrRisk {
        risk_fraction: Decimal,
        atr_multiple: Decimal,
    },
    /// Half-Kelly from closed trades, capped at `cap_fraction`; fixed fraction (the cap) until
    /// `min_trades` closed trades exist.
    HalfKelly {
        cap_fraction: Decimal,
        min_trades: u32,
    },
    /// Always the same number of shares.
    FixedQty { qty: Qty },
}

impl Default for SizingConfig {
    fn default() -> Self {
        SizingConfig::FixedFraction {
            fraction: dec!(0.02),
        }
    }
}

/// Why a [`SizingConfig`] was refused, naming the `[sizing]` key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sizing.{field} {problem}")]
pub struct SizingConfigError {
    pub field: &'static str,
    pub problem: &'static str,
}

impl SizingConfig {
    /// Checks the mode's parameters: fractions in (0, 1], multiples and quantities positive.
    pub fn validate(&self) -> Result<(), SizingConfigError> {
        let fraction_ok = |f: Decimal| f > Decimal::ZERO && f <= Decimal::ONE;
        let bad = |field, problem| Err(SizingConfigError { field, problem });
        match *self {
            SizingConfig::FixedFraction { fraction } if !fraction_ok(fraction) => {
                bad("fraction", "must be in (0, 1]")
            }
            SizingConfig::AtrRisk { risk_fraction, .. } if !fraction_ok(risk_fraction) => {
                bad("risk_fraction", "must be in (0, 1]")
            }
            SizingConfig::AtrRisk { atr_multiple, .. } if atr_multiple <= Decimal::ZERO => {
                bad("atr_multiple", "must be positive")
            }
            SizingConfig::HalfKelly { cap_fraction, .. } if !fraction_ok(cap_fraction) => {
                bad("cap_fraction", "must be in (0, 1]")
            }
            SizingConfig::FixedQty { qty } if qty <= 0 => bad("qty", "must be positive"),
            _ => Ok(()),
        }
    }
}

/// Whole shares that `budget` buys at `price`, rounded down; 0 on overflow or non-positive
/// inputs, because a wrong size must err small.
fn shares(budget: Money, price: Price) -> Qty {
    if budget <= Decimal::ZERO || price <= Decimal::ZERO {
        return 0;
    }
    budget
        .checked_div(price)
        .and_then(|q| q.floor().to_i64())
        .unwrap_or(0)
}

/// Full Kelly f* = W − (1 − W) / R (W the win rate, R the average win over the average loss)
/// as an exact ratio `(num, den)`: multiplied out so that the size needs a single division,
/// and half of 1/6 of $120,000 at $100 is 100 shares, not 99 after a rounded 0.0833…
/// f* = wins·(gross_win·losses − (trades − wins)·gross_loss) / (trades·gross_win·losses).
/// `None` without trades, wins or losses, or on overflow.
fn kelly_ratio(stats: &TradeStats) -> Option<(Decimal, Decimal)> {
    if stats.trades == 0 || stats.wins == 0 || stats.losses == 0 {
        return None;
    }
    let (gw, gl) = (stats.gross_win, stats.gross_loss);
    if gw <= Decimal::ZERO || gl <= Decimal::ZERO {
        return None;
    }
    let non_wins = Decimal::from(i64::from(stats.trades) - i64::from(stats.wins));
    let losses = Decimal::from(stats.losses);
    let edge = gw
        .checked_mul(losses)?
        .checked_sub(non_wins.checked_mul(gl)?)?;
    let num = Decimal::from(stats.wins).checked_mul(edge)?;
    let den = Decimal::from(stats.trades)
        .checked_mul(gw)?
        .checked_mul(losses)?;
    Some((num, den))
}

/// Shares at half of full Kelly: floor(equity × num / (2 × den × price)).
fn half_kelly_shares(stats: &TradeStats, equity: Money, price: Price) -> Qty {
    let Some((num, den)) = kelly_ratio(stats) else {
        return 0;
    };
    if num <= Decimal::ZERO {
        return 0;
    }
    let top = equity.checked_mul(num);
    let bottom = den
        .checked_mul(Decimal::TWO)
        .and_then(|d| d.checked_mul(price));
    match (top, bottom) {
        (Some(t), Some(b)) => shares(t, b),
        _ => 0,
    }
}

/// The largest dividend (at scale 16: $10^10) and divisor the fixed-point path divides. A
/// `Decimal` quotient carries about 28 significant digits (at most 28 decimal places), so
/// below these its rounding error is far under 1/divisor, the least distance from a quotient
/// that is not whole to the next whole number: its floor is the exact floor.
const MAX_DIVIDEND: i128 = 10i128.pow(26);
const MAX_DIVISOR: i128 = 10i128.pow(27);

/// floor(top / bottom) for positive integers at the same scale; `None` past the bounds above.
fn floor_div(top: i128, bottom: i128) -> Option<Qty> {
    if top >= MAX_DIVIDEND || bottom >= MAX_DIVISOR {
        return None;
    }
    Qty::try_from(top / bottom).ok()
}

/// `a × b` when `Decimal` computes it exactly too (see [`exact`]).
fn mul(a: i128, b: i128) -> Option<i128> {
    a.checked_mul(b).and_then(exact)
}

/// [`shares`] of `equity × fraction` at `price`, all at scale 8.
fn fraction_shares(equity: i128, fraction: i128, price: i128) -> Option<Qty> {
    if let Some(q) = fraction_shares_small(equity, fraction, price) {
        return Some(q);
    }
    let budget = mul(equity, fraction)?;
    if budget <= 0 {
        return Some(0);
    }
    floor_div(budget, price * E8)
}

/// [`fraction_shares`] in `i64` for positive inputs: the same quotient with the powers of two
/// that `fraction` shares with 10^8 cancelled, so real budgets fit and divide in one
/// instruction rather than through 128-bit routines. `None` when something does not fit. When
/// it answers, the budget is below 2^63 × 2^8, far inside [`MAX_DIVIDEND`] and 2^96, and the
/// divisor (price × 10^8, price an `i64`) inside [`MAX_DIVISOR`]: the general path would
/// have divided too, to the same floor.
#[inline]
fn fraction_shares_small(equity: i128, fraction: i128, price: i128) -> Option<Qty> {
    let (e, f, p) = (
        i64::try_from(equity).ok()?,
        i64::try_from(fraction).ok()?,
        i64::try_from(price).ok()?,
    );
    if e <= 0 || f <= 0 || p <= 0 {
        return None;
    }
    let k = f.trailing_zeros().min(8);
    let top = e.checked_mul(f >> k)?;
    let bottom = p.checked_mul(E8 as i64 >> k)?;
    Some(top / bottom)
}

/// [`half_kelly_shares`] at scale 8, step by step the same products.
fn half_kelly_fixed(stats: &TradeStats, equity: i128, price: i128) -> Option<Qty> {
    if stats.trades == 0 || stats.wins == 0 || stats.losses == 0 {
        return Some(0);
    }
    let (gw, gl) = (fixed(stats.gross_win)?, fixed(stats.gross_loss)?);
    if gw <= 0 || gl <= 0 {
        return Some(0);
    }
    let non_wins = i128::from(stats.trades) - i128::from(stats.wins);
    let losses = i128::from(stats.losses);
    let edge = exact(mul(gw, losses)? - mul(non_wins, gl)?)?;
    let num = mul(i128::from(stats.wins), edge)?;
    if num <= 0 {
        return Some(0);
    }
    let den = mul(mul(i128::from(stats.trades), gw)?, losses)?;
    floor_div(mul(equity, num)?, mul(mul(den, 2)?, price)?)
}

fn fixed(d: Decimal) -> Option<i128> {
    fx(d).map(i128::from)
}

/// [`size`] for the fraction modes in integers of 10^-8 (`equity` and `price` are `fx` of
/// the `Decimal`s), which return the same share count for a fraction of `Decimal`'s cost.
/// `None` for the other modes and whenever a number does not fit exactly; the caller then
/// takes [`size_exact`].
fn size_in_fixed(
    cfg: &SizingConfig,
    equity: i128,
    price: i128,
    stats: &TradeStats,
    max_fraction: Decimal,
) -> Option<Qty> {
    let fraction = match *cfg {
        SizingConfig::FixedFraction { fraction } => fraction,
        SizingConfig::HalfKelly { cap_fraction, .. } => cap_fraction,
        SizingConfig::AtrRisk { .. } | SizingConfig::FixedQty { .. } => return None,
    };
    if equity <= 0 || price <= 0 {
        return Some(0);
    }
    let capped = fraction_shares(equity, fixed(fraction)?.min(fixed(max_fraction)?), price)?;
    match *cfg {
        SizingConfig::HalfKelly { min_trades, .. }
            if stats.trades >= min_trades && stats.losses != 0 =>
        {
            Some(half_kelly_fixed(stats, equity, price)?.min(capped))
        }
        _ => Some(capped),
    }
}

/// How many shares an entry buys. Never negative; 0 means "do not trade". `max_fraction` is
/// the position-size limit as a fraction of equity, so a size never fails the risk gate's
/// position check on its own.
///
/// - `FixedFraction`: floor(equity × min(fraction, max_fraction) / price).
/// - `AtrRisk`: floor(equity × risk_fraction / (atr_multiple × atr)), capped at
///   max_fraction of equity; no ATR (or ATR ≤ 0) → 0.
/// - `HalfKelly`: from `min_trades` closed trades on, the half-Kelly fraction clamped to
///   [0, min(cap, max_fraction)]; before that, or with no losing trade yet, the cap.
/// - `FixedQty`: `qty`.
pub fn size(
    cfg: &SizingConfig,
    equity: Money,
    price: Price,
    atr: Option<f64>,
    stats: &TradeStats,
    max_fraction: Decimal,
) -> Qty {
    fixed(equity)
        .zip(fixed(price))
        .and_then(|(e, p)| size_in_fixed(cfg, e, p, stats, max_fraction))
        .unwrap_or_else(|| size_exact(cfg, equity, price, atr, stats, max_fraction))
}

/// [`size`] for a caller that keeps equity and price in fixed point: `equity_fixed` and
/// `price_fixed` must be `fx` of the `Decimal`s. The same answer; `equity` is asked for the
/// `Decimal` only when the fixed-point path cannot decide.
#[allow(clippy::too_many_arguments)]
pub fn size_fixed(
    cfg: &SizingConfig,
    equity_fixed: i128,
    equity: impl FnOnce() -> Money,
    price_fixed: i128,
    price: Price,
    atr: Option<f64>,
    stats: &TradeStats,
    max_fraction: Decimal,
) -> Qty {
    size_in_fixed(cfg, equity_fixed, price_fixed, stats, max_fraction)
        .unwrap_or_else(|| size_exact(cfg, equity(), price, atr, stats, max_fraction))
}

/// [`size`] in `Decimal`: the reference the fixed-point path must match, and its fallback.
fn size_exact(
    cfg: &SizingConfig,
    equity: Money,
    price: Price,
    atr: Option<f64>,
    stats: &TradeStats,
    max_fraction: Decimal,
) -> Qty {
    if equity <= Decimal::ZERO || price <= Decimal::ZERO {
        return 0;
    }
    let budget = |fraction: Decimal| equity.checked_mul(fraction).unwrap_or(Decimal::ZERO);
    match *cfg {
        SizingConfig::FixedFraction { fraction } => {
            shares(budget(fraction.min(max_fraction)), price)
        }
        SizingConfig::AtrRisk {
            risk_fraction,
            atr_multiple,
        } => {
            let Some(atr) = atr.and_then(|a| Decimal::try_from(a).ok()) else {
                return 0;
            };
            let stop_distance = atr_multiple.checked_mul(atr).unwrap_or(Decimal::ZERO);
            if stop_distance <= Decimal::ZERO {
                return 0;
            }
            let by_risk = shares(budget(risk_fraction), stop_distance);
            by_risk.min(shares(budget(max_fraction), price))
        }
        SizingConfig::HalfKelly {
            cap_fraction,
            min_trades,
        } => {
            let cap = cap_fraction.min(max_fraction);
            let capped = shares(budget(cap), price);
            // Too few trades to estimate, or no loss yet to scale the edge by: the cap.
            if stats.trades < min_trades || stats.losses == 0 {
                capped
            } else {
                half_kelly_shares(stats, equity, price).min(capped)
            }
        }
        SizingConfig::FixedQty { qty } => qty.max(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_stats() -> TradeStats {
        TradeStats::default()
    }

    fn ff(fraction: Decimal) -> SizingConfig {
        SizingConfig::FixedFraction { fraction }
    }

    #[test]
    fn fixed_fraction() {
        let s = no_stats();
        // 2% of 100,000 = 2,000 / 150 = 13.33 → 13.
        assert_eq!(
            size(
                &ff(dec!(0.02)),
                dec!(100000),
                dec!(150),
                None,
                &s,
                dec!(0.02)
            ),
            13
        );
        // The position limit caps a larger fraction.
        assert_eq!(
            size(
                &ff(dec!(0.05)),
                dec!(100000),
                dec!(150),
                None,
                &s,
                dec!(0.02)
            ),
            13
        );
        // 1% = 1,000 / 150 = 6.67 → 6.
        assert_eq!(
            size(
                &ff(dec!(0.01)),
                dec!(100000),
                dec!(150),
                None,
                &s,
                dec!(0.02)
            ),
            6
        );
        // Exactly whole: 2,000 / 100 = 20.
        assert_eq!(
            size(
                &ff(dec!(0.02)),
                dec!(100000),
                dec!(100),
                None,
                &s,
                dec!(0.02)
            ),
            20
        );
        assert_eq!(
            size(&ff(dec!(0.02)), dec!(1000), dec!(150), None, &s, dec!(0.02)),
            0
        );
    }

    #[test]
    fn atr_risk() {
        let cfg = SizingConfig::AtrRisk {
            risk_fraction: dec!(0.01),
            atr_multiple: dec!(2),
        };
        let s = no_stats();
        // Risk 1,000 over a stop 2 × 2.5 = 5 away: 200 shares; cap 50% of 100,000 / 50 = 1,000.
        assert_eq!(
            size(&cfg, dec!(100000), dec!(50), Some(2.5), &s, dec!(0.5)),
            200
        );
        // Capped at 2%: 2,000 / 50 = 40.
        assert_eq!(
            size(&cfg, dec!(100000), dec!(50), Some(2.5), &s, dec!(0.02)),
            40
        );
        // 1,000 / (2 × 3) = 166.67 → 166.
        assert_eq!(
            size(&cfg, dec!(100000), dec!(50), Some(3.0), &s, dec!(1)),
            166
        );
        for atr in [
            None,
            Some(0.0),
            Some(-1.0),
            Some(f64::NAN),
            Some(f64::INFINITY),
        ] {
            assert_eq!(
                size(&cfg, dec!(100000), dec!(50), atr, &s, dec!(1)),
                0,
                "{atr:?}"
            );
        }
    }

    fn stats(
        trades: u32,
        wins: u32,
        losses: u32,
        gross_win: Money,
        gross_loss: Money,
    ) -> TradeStats {
        TradeStats {
            trades,
            wins,
            losses,
            gross_win,
            gross_loss,
        }
    }

    #[test]
    fn half_kelly_capped() {
        // W = 24/40 = 0.6, R = 200/100 = 2, f* = 0.6 − 0.4/2 = 0.4, half 0.2.
        let s = stats(40, 24, 16, dec!(4800), dec!(1600));
        let cfg = SizingConfig::HalfKelly {
            cap_fraction: dec!(0.25),
            min_trades: 30,
        };
        // Capped at max_fraction 0.02: 2,000 / 100 = 20.
        assert_eq!(
            size(&cfg, dec!(100000), dec!(100), None, &s, dec!(0.02)),
            20
        );
        // Uncapped: 0.2 × 100,000 / 100 = 200.
        assert_eq!(size(&cfg, dec!(100000), dec!(100), None, &s, dec!(1)), 200);
        // cap_fraction 0.1 binds: 100.
        let tight = SizingConfig::HalfKelly {
            cap_fraction: dec!(0.1),
            min_trades: 30,
        };
        assert_eq!(
            size(&tight, dec!(100000), dec!(100), None, &s, dec!(1)),
            100
        );
    }

    #[test]
    fn half_kelly_exact_thirds() {
        // W = 0.5, R = 150/100 = 1.5, f* = 0.5 − 0.5/1.5 = 1/6, half 1/12: 120,000/12/100 = 100.
        let s = stats(40, 20, 20, dec!(3000), dec!(2000));
        let cfg = SizingConfig::HalfKelly {
            cap_fraction: dec!(0.25),
            min_trades: 30,
        };
        assert_eq!(size(&cfg, dec!(120000), dec!(100), None, &s, dec!(1)), 100);
    }

    #[test]
    fn half_kelly_edge_cases() {
        let cfg = SizingConfig::HalfKelly {
            cap_fraction: dec!(0.05),
            min_trades: 30,
        };
        // Below min_trades: the cap as a fixed fraction, 5,000 / 100 = 50.
        let few = stats(10, 9, 1, dec!(900), dec!(10));
        assert_eq!(size(&cfg, dec!(100000), dec!(100), None, &few, dec!(1)), 50);
        // ...and min(cap, max_fraction): 20.
        assert_eq!(
            size(&cfg, dec!(100000), dec!(100), None, &few, dec!(0.02)),
            20
        );
        // No losses yet: the cap.
        let lucky = stats(35, 35, 0, dec!(3500), dec!(0));
        assert_eq!(
            size(&cfg, dec!(100000), dec!(100), None, &lucky, dec!(1)),
            50
        );
        // Negative edge: W = 0.3, R = 1, f* = 0.3 − 0.7 < 0 → 0.
        let bad = stats(40, 12, 28, dec!(1200), dec!(2800));
        assert_eq!(size(&cfg, dec!(100000), dec!(100), None, &bad, dec!(1)), 0);
        // No wins at all → 0.
        let none = stats(40, 0, 40, dec!(0), dec!(4000));
        assert_eq!(size(&cfg, dec!(100000), dec!(100), None, &none, dec!(1)), 0);
    }

    #[test]
    fn fixed_qty_and_bad_inputs() {
        let q = SizingConfig::FixedQty { qty: 7 };
        let s = no_stats();
        assert_eq!(size(&q, dec!(100000), dec!(100), None, &s, dec!(0.02)), 7);
        assert_eq!(
            size(
                &SizingConfig::FixedQty { qty: -3 },
                dec!(1),
                dec!(1),
                None,
                &s,
                dec!(1)
            ),
            0
        );
        let modes = [
            ff(dec!(0.02)),
            SizingConfig::AtrRisk {
                risk_fraction: dec!(0.01),
                atr_multiple: dec!(2),
            },
            SizingConfig::HalfKelly {
                cap_fraction: dec!(0.05),
                min_trades: 0,
            },
            q,
        ];
        for m in modes {
            for (eq, px) in [
                (dec!(0), dec!(100)),
                (dec!(-5), dec!(100)),
                (dec!(1000), dec!(0)),
            ] {
                assert_eq!(
                    size(&m, eq, px, Some(1.0), &s, dec!(1)),
                    0,
                    "{m:?} {eq} {px}"
                );
            }
        }
        // Absurd numbers size to zero rather than overflow.
        assert_eq!(
            size(
                &ff(dec!(1)),
                Decimal::MAX,
                dec!(0.0000001),
                None,
                &s,
                dec!(1)
            ),
            0
        );
    }

    #[test]
    fn validate_names_the_field() {
        assert_eq!(SizingConfig::default().validate(), Ok(()));
        let field = |c: SizingConfig| c.validate().map_err(|e| e.field);
        assert_eq!(field(ff(dec!(0))), Err("fraction"));
        assert_eq!(field(ff(dec!(1.5))), Err("fraction"));
        let atr = |r, m| SizingConfig::AtrRisk {
            risk_fraction: r,
            atr_multiple: m,
        };
        assert_eq!(field(atr(dec!(0.01), dec!(0))), Err("atr_multiple"));
        assert_eq!(field(atr(dec!(-0.01), dec!(2))), Err("risk_fraction"));
        let hk = SizingConfig::HalfKelly {
            cap_fraction: dec!(0),
            min_trades: 30,
        };
        assert_eq!(field(hk), Err("cap_fraction"));
        assert_eq!(field(SizingConfig::FixedQty { qty: 0 }), Err("qty"));
        assert_eq!(
            ff(dec!(2)).validate().unwrap_err().to_string(),
            "sizing.fraction must be in (0, 1]"
        );
    }
}

#[cfg(test)]
mod fast_path_props {
    use super::*;
    use proptest::prelude::*;

    /// Decimals from every regime: small ones, money at up to 8 places, and rarely `i64`
    /// mantissas with up to 12 places, full 96-bit mantissas at any scale and the extremes.
    fn any_dec() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            10 => (-5i64..300, 0u32..3).prop_map(|(m, s)| Decimal::new(m, s)),
            10 => (0i64..10_000_000_000_000, 0u32..=8).prop_map(|(m, s)| Decimal::new(m, s)),
            2 => (any::<i64>(), 0u32..=12).prop_map(|(m, s)| Decimal::new(m, s)),
            1 => (any::<i128>(), 0u32..=28)
                .prop_map(|(m, s)| Decimal::from_i128_with_scale(m % (1 << 96), s)),
            1 => prop_oneof![
                Just(Decimal::ZERO),
                Just(Decimal::MAX),
                Just(Decimal::MIN),
                Just(Decimal::new(1, 28)),
            ],
        ]
    }

    fn pos_dec() -> impl Strategy<Value = Decimal> {
        prop_oneof![9 => any_dec().prop_map(|d| d.abs()), 1 => any_dec()]
    }

    fn frac_dec() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            8 => (-5i64..20_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s)),
            1 => any_dec(),
        ]
    }

    fn config() -> impl Strategy<Value = SizingConfig> {
        prop_oneof![
            frac_dec().prop_map(|fraction| SizingConfig::FixedFraction { fraction }),
            (frac_dec(), 0u32..60).prop_map(|(cap_fraction, min_trades)| {
                SizingConfig::HalfKelly {
                    cap_fraction,
                    min_trades,
                }
            }),
            (frac_dec(), frac_dec()).prop_map(|(risk_fraction, atr_multiple)| {
                SizingConfig::AtrRisk {
                    risk_fraction,
                    atr_multiple,
                }
            }),
            (-3i64..100).prop_map(|qty| SizingConfig::FixedQty { qty }),
        ]
    }

    fn trade_stats() -> impl Strategy<Value = TradeStats> {
        let count = prop_oneof![4 => 0u32..80, 1 => any::<u32>()];
        (count.clone(), count.clone(), count, pos_dec(), pos_dec()).prop_map(
            |(trades, wins, losses, gross_win, gross_loss)| TradeStats {
                trades,
                wins,
                losses,
                gross_win,
                gross_loss,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// The fixed-point path sizes exactly as the `Decimal` path.
        #[test]
        fn fast_size_equals_exact(
            cfg in config(),
            equity in pos_dec(),
            price in pos_dec(),
            atr in prop::option::of(0.0f64..10.0),
            stats in trade_stats(),
            max_fraction in frac_dec(),
        ) {
            let want = size_exact(&cfg, equity, price, atr, &stats, max_fraction);
            prop_assert_eq!(size(&cfg, equity, price, atr, &stats, max_fraction), want);
            if let (Some(e), Some(p)) = (fixed(equity), fixed(price)) {
                let got = size_fixed(&cfg, e, || equity, p, price, atr, &stats, max_fraction);
                prop_assert_eq!(got, want);
            }
        }

        /// Realistic accounts: the fast path must size a fixed fraction itself (and agree,
        /// whole-share ties included); half-Kelly's larger products may fall back.
        #[test]
        fn fast_size_decides_realistic_accounts(
            cents in 1i64..100_000_000,
            price_cents in 1i64..1_000_000,
            fraction in 1i64..=100,
            trades in 0u32..80,
            wins in 0u32..80,
            gross_win in 1i64..10_000_000,
            gross_loss in 1i64..10_000_000,
        ) {
            let stats = TradeStats {
                trades,
                wins: wins.min(trades),
                losses: trades - wins.min(trades),
                gross_win: Decimal::new(gross_win, 2),
                gross_loss: Decimal::new(gross_loss, 2),
            };
            let (equity, price) = (Decimal::new(cents, 2), Decimal::new(price_cents, 2));
            let ff = SizingConfig::FixedFraction { fraction: Decimal::new(fraction, 2) };
            let (e, p) = (fixed(equity).unwrap(), fixed(price).unwrap());
            prop_assert_eq!(
                size_in_fixed(&ff, e, p, &stats, dec!(0.5)),
                Some(size_exact(&ff, equity, price, None, &stats, dec!(0.5)))
            );
            let hk = SizingConfig::HalfKelly { cap_fraction: Decimal::new(fraction, 2), min_trades: 30 };
            prop_assert_eq!(
                size(&hk, equity, price, None, &stats, dec!(0.5)),
                size_exact(&hk, equity, price, None, &stats, dec!(0.5))
            );
        }
    }
}
