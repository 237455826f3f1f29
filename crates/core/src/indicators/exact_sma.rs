//! An exact simple moving average over decimal prices.
//!
//! Prices are held as integers at a fixed scale (10^-8 dollars), so sums are exact and two SMAs
//! can be compared without division: `sign(fast - slow) = sign(fast_sum * slow_n - slow_sum * fast_n)`.
//! That makes crossover ties exact, as the backtest semantics require, and keeps the hot path to
//! integer arithmetic. Prices with more than 8 decimal places are rounded to 8.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::exact::{parts, POW10};

/// Fixed scale of the integer representation: 8 decimal places.
pub const SCALE: u32 = 8;
/// A decimal price as an integer number of 10^-8 dollars. Prices that fit [`fx`] (all real
/// ones) take its `i64` arithmetic; the rest the `i128` one.
#[inline]
pub fn to_fixed(d: Decimal) -> i128 {
    to_fixed_given(d, fx(d))
}

/// [`to_fixed`] for a caller that already has `fx(d)`.
#[inline]
pub fn to_fixed_given(d: Decimal, fx_d: Option<i64>) -> i128 {
    fx_d.map_or_else(|| to_fixed_wide(d), i128::from)
}

fn to_fixed_wide(d: Decimal) -> i128 {
    scaled(d, RoundingStrategy::MidpointNearestEven)
}

/// `d × 10^8` as an integer, rounded with `strategy` when `d` has more than 8 decimals. A
/// 96-bit mantissa times at most 10^8 stays far inside an `i128`.
fn scaled(d: Decimal, strategy: RoundingStrategy) -> i128 {
    let r = if d.scale() <= SCALE {
        d
    } else {
        d.round_dp_with_strategy(SCALE, strategy)
    };
    r.mantissa() * i128::from(POW10[(SCALE - r.scale()) as usize])
}

/// A decimal price as an `i64` number of 10^-8 dollars when that is exact (at most 8 decimal
/// places, under about $92 billion); `None` otherwise, and the caller takes its `Decimal` path.
///
/// Reads the 96-bit mantissa's words directly: this runs several times per bar.
#[inline]
pub fn fx(d: Decimal) -> Option<i64> {
    let (m, scale) = parts(d)?;
    m.checked_mul(*POW10.get(SCALE.checked_sub(scale)? as usize)?)
}

/// `floor(d × 10^8)`: the largest fixed-point value at or below `d`, exact whatever its
/// decimals.
pub fn floor_fixed(d: Decimal) -> i128 {
    scaled(d, RoundingStrategy::ToNegativeInfinity)
}

/// An integer back to a decimal.
pub fn from_fixed(v: i128) -> Decimal {
    Decimal::from_i128_with_scale(v, SCALE)
}

/// Streaming SMA with exact sums.
#[derive(Debug, Clone)]
pub struct ExactSma {
    period: usize,
    buf: Vec<i128>,
    head: usize,
    count: usize,
    sum: i128,
}

impl ExactSma {
    /// `period` of 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        ExactSma {
            period,
            buf: vec![0; period],
            head: 0,
            count: 0,
            sum: 0,
        }
    }
    pub fn period(&self) -> usize {
        self.period
    }
    /// Adds a fixed-point value (see [`to_fixed`]).
    #[inline]
    pub fn update_fixed(&mut self, v: i128) {
        let old = std::mem::replace(&mut self.buf[self.head], v);
        self.sum += v - old;
        self.head += 1;
        if self.head == self.period {
            self.head = 0;
        }
        if self.count < self.period {
            self.count += 1;
        }
    }
    #[inline]
    pub fn update(&mut self, price: Decimal) {
        self.update_fixed(to_fixed(price));
    }
    #[inline]
    pub fn is_ready(&self) -> bool {
        self.count == self.period
    }
    pub fn warmup_period(&self) -> usize {
        self.period
    }
    /// The window's sum at the fixed scale, once warm.
    #[inline]
    pub fn sum_fixed(&self) -> Option<i128> {
        self.is_ready().then_some(self.sum)
    }
    /// The average, exact to 28 significant digits, once warm.
    pub fn value(&self) -> Option<Decimal> {
        self.sum_fixed()
            .map(|s| from_fixed(s) / Decimal::from(self.period as u64))
    }
    pub fn value_f64(&self) -> Option<f64> {
        self.sum_fixed()
            .map(|s| s as f64 / 1e8 / self.period as f64)
    }
    pub fn reset(&mut self) {
        self.buf.iter_mut().for_each(|v| *v = 0);
        self.head = 0;
        self.count = 0;
        self.sum = 0;
    }
}

/// Sign of `a_avg - b_avg` for two exact SMAs, without division. None until both are warm.
#[inline]
pub fn cmp_averages(a: &ExactSma, b: &ExactSma) -> Option<std::cmp::Ordering> {
    let (sa, sb) = (a.sum_fixed()?, b.sum_fixed()?);
    Some((sa * b.period as i128).cmp(&(sb * a.period as i128)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use std::cmp::Ordering;

    proptest::proptest! {
        /// `fx` is exactly the decimal at 10^-8 units whenever that fits an `i64`.
        #[test]
        fn fx_is_the_exact_fixed_value(
            lo in proptest::prelude::any::<u32>(),
            mid in proptest::prelude::any::<u32>(),
            hi in proptest::prelude::prop_oneof![proptest::prelude::Just(0u32), proptest::prelude::any::<u32>()],
            neg in proptest::prelude::any::<bool>(),
            scale in 0u32..=28,
        ) {
            let d = Decimal::from_parts(lo, mid, hi, neg, scale);
            let want = (scale <= SCALE)
                .then(|| d.mantissa() * i128::from(POW10[(SCALE - scale) as usize]))
                .and_then(|v| i64::try_from(v).ok());
            match fx(d) {
                Some(v) => proptest::prop_assert_eq!(Some(v), want),
                // Only -2^63 itself is exact yet refused (its magnitude does not fit).
                None => proptest::prop_assert!(want.is_none() || want == Some(i64::MIN)),
            }
        }
    }

    proptest::proptest! {
        /// `fx3` is `fx` three times: shared scales and signs take its one-check path, the
        /// rest the per-value one.
        #[test]
        fn fx3_is_fx_three_times(
            words in proptest::collection::vec(
                (proptest::prelude::any::<u32>(), 0u32..4, proptest::prelude::prop_oneof![
                    proptest::prelude::Just(0u32), proptest::prelude::any::<u32>()]),
                3,
            ),
            negs in proptest::collection::vec(proptest::prelude::prop_oneof![
                8 => proptest::prelude::Just(false), 1 => proptest::prelude::Just(true)], 3),
            scales in proptest::collection::vec(proptest::prelude::prop_oneof![
                6 => proptest::prelude::Just(2u32), 1 => 0u32..=10], 3),
        ) {
            let d: Vec<Decimal> = (0..3)
                .map(|i| Decimal::from_parts(words[i].0, words[i].1, words[i].2, negs[i], scales[i]))
                .collect();
            let want = fx(d[0]).zip(fx(d[1])).zip(fx(d[2])).map(|((a, b), c)| (a, b, c));
            proptest::prop_assert_eq!(crate::exact::fx3(d[0], d[1], d[2]), want);
        }
    }

    #[test]
    fn floor_fixed_rounds_down() {
        assert_eq!(floor_fixed(dec!(1.5)), 150_000_000);
        assert_eq!(floor_fixed(dec!(0.123456789)), 12_345_678);
        assert_eq!(floor_fixed(dec!(-0.123456781)), -12_345_679);
        assert_eq!(floor_fixed(dec!(-2)), -200_000_000);
    }

    #[test]
    fn fixed_roundtrip_and_rounding() {
        assert_eq!(to_fixed(dec!(1.5)), 150_000_000);
        assert_eq!(to_fixed(dec!(100)), 10_000_000_000);
        assert_eq!(to_fixed(dec!(0.123456789)), 12_345_679);
        assert_eq!(from_fixed(150_000_000), dec!(1.5));
    }

    #[test]
    fn sma_is_exact_and_warms_up() {
        let mut s = ExactSma::new(3);
        s.update(dec!(1.1));
        s.update(dec!(2.2));
        assert_eq!(s.value(), None);
        s.update(dec!(3.3));
        assert_eq!(s.value(), Some(dec!(2.2)));
        s.update(dec!(4.4));
        assert_eq!(s.value(), Some(dec!(3.3)));
    }

    #[test]
    fn exact_tie_compares_equal() {
        // (1+2)/2 == (1+2+1.5)/3 exactly; in f64 a naive mean of 0.1-style values can drift.
        let mut a = ExactSma::new(2);
        let mut b = ExactSma::new(3);
        for p in [dec!(1.5), dec!(1), dec!(2)] {
            a.update(p);
            b.update(p);
        }
        assert_eq!(cmp_averages(&a, &b), Some(Ordering::Equal));
        let mut a = ExactSma::new(3);
        let mut b = ExactSma::new(10);
        for _ in 0..10 {
            a.update(dec!(0.1));
            b.update(dec!(0.1));
        }
        assert_eq!(cmp_averages(&a, &b), Some(Ordering::Equal));
    }
}
