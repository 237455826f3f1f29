//! `Decimal` arithmetic, bit for bit as `rust_decimal` does it, with an integer fast path.
//!
//! When the operands' mantissas, aligned to a common scale, and the result fit in an `i64`
//! (every price, cash balance and P&L a real account produces) the result is computed in
//! `i64` and assembled directly; `rust_decimal` computes such results exactly too, so value,
//! scale and sign agree. Zero operands follow
//! `rust_decimal`'s own rules (`0 ± b` is `±b` at `b`'s scale, `a ± 0` is `a`, a product with
//! a zero is a scale-0 zero). Anything else (a zero sum, whose sign depends on `rust_decimal`'s
//! internal path; anything that would overflow an `i64`) returns `None` and the caller
//! falls back to the `Decimal` operator, so the fast path never changes an answer.

use rust_decimal::Decimal;

/// 10^k for k = 0..=18, every power that fits an `i64`: the one table the crate's
/// fixed-point code aligns scales with.
pub(crate) const POW10: [i64; 19] = {
    let mut t = [1i64; 19];
    let mut k = 1;
    while k < 19 {
        t[k] = t[k - 1] * 10;
        k += 1;
    }
    t
};

/// The signed mantissa and scale of `d`, when the mantissa fits in an `i64`.
#[inline(always)]
pub(crate) fn parts(d: Decimal) -> Option<(i64, u32)> {
    let u = d.unpack();
    if u.hi != 0 || u.mid > i32::MAX as u32 {
        return None;
    }
    let mag = magnitude(u.mid, u.lo);
    Some((if u.negative { -mag } else { mag }, u.scale))
}

/// A mantissa's low 64 bits from its middle and low words; the callers have checked that
/// the high word is zero and the middle one below 2^31, so it is non-negative.
#[inline(always)]
fn magnitude(mid: u32, lo: u32) -> i64 {
    (u64::from(mid) << 32 | u64::from(lo)) as i64
}

/// `fx` of a bar's open, high and low at once. They nearly always share a scale and sign,
/// and then one check and one table lookup serve all three.
#[inline(always)]
pub(crate) fn fx3(a: Decimal, b: Decimal, c: Decimal) -> Option<(i64, i64, i64)> {
    use crate::indicators::exact_sma::{fx, SCALE};
    let (x, y, z) = (a.unpack(), b.unpack(), c.unpack());
    let same = x.scale == y.scale && x.scale == z.scale && !(x.negative | y.negative | z.negative);
    if !same || (x.hi | y.hi | z.hi) != 0 || (x.mid | y.mid | z.mid) > i32::MAX as u32 {
        return Some((fx(a)?, fx(b)?, fx(c)?));
    }
    let k = *POW10.get(SCALE.checked_sub(x.scale)? as usize)?;
    Some((
        magnitude(x.mid, x.lo).checked_mul(k)?,
        magnitude(y.mid, y.lo).checked_mul(k)?,
        magnitude(z.mid, z.lo).checked_mul(k)?,
    ))
}

/// `m` must be non-zero (a zero would need `rust_decimal`'s choice of scale and sign).
#[inline(always)]
fn build(m: i64, scale: u32) -> Decimal {
    let mag = m.unsigned_abs();
    Decimal::from_parts(mag as u32, (mag >> 32) as u32, 0, m < 0, scale)
}

#[inline(always)]
fn add_sub(a: Decimal, b: Decimal, subtract: bool) -> Option<Decimal> {
    let (ma, sa) = parts(a)?;
    let (mb, sb) = parts(b)?;
    if ma == 0 {
        return Some(if subtract && mb != 0 { -b } else { b });
    }
    if mb == 0 {
        return Some(a);
    }
    let mb = if subtract { mb.checked_neg()? } else { mb };
    let r = if sa == sb {
        ma.checked_add(mb)?
    } else if sa > sb {
        ma.checked_add(mb.checked_mul(*POW10.get((sa - sb) as usize)?)?)?
    } else {
        ma.checked_mul(*POW10.get((sb - sa) as usize)?)?
            .checked_add(mb)?
    };
    (r != 0).then(|| build(r, sa.max(sb)))
}

#[cold]
#[inline(never)]
fn add_slow(a: Decimal, b: Decimal) -> Decimal {
    a + b
}

#[cold]
#[inline(never)]
fn sub_slow(a: Decimal, b: Decimal) -> Decimal {
    a - b
}

/// `a + b`.
#[inline]
pub fn add(a: Decimal, b: Decimal) -> Decimal {
    add_sub(a, b, false).unwrap_or_else(|| add_slow(a, b))
}

/// `a − b`.
#[inline]
pub fn sub(a: Decimal, b: Decimal) -> Decimal {
    add_sub(a, b, true).unwrap_or_else(|| sub_slow(a, b))
}

#[inline(always)]
fn mul_int_fast(a: Decimal, q: i64) -> Option<Decimal> {
    let (m, scale) = parts(a)?;
    if m == 0 || q == 0 {
        return Some(Decimal::ZERO);
    }
    Some(build(m.checked_mul(q)?, scale))
}

#[cold]
#[inline(never)]
fn mul_int_slow(a: Decimal, q: i64) -> Decimal {
    a * Decimal::from(q)
}

/// `a.checked_mul(b)`: the product of two mantissas that fits an `i64`, at the sum of the
/// scales when that is at most 28, is what `rust_decimal` returns too.
#[inline]
pub fn checked_mul(a: Decimal, b: Decimal) -> Option<Decimal> {
    let fast = || {
        let ((ma, sa), (mb, sb)) = (parts(a)?, parts(b)?);
        if ma == 0 || mb == 0 {
            return Some(Decimal::ZERO);
        }
        let scale = sa + sb;
        (scale <= 28).then_some(())?;
        Some(build(ma.checked_mul(mb)?, scale))
    };
    fast().or_else(|| checked_mul_slow(a, b))
}

#[cold]
#[inline(never)]
fn checked_mul_slow(a: Decimal, b: Decimal) -> Option<Decimal> {
    a.checked_mul(b)
}

/// `a × Decimal::from(q)`.
#[inline]
pub fn mul_int(a: Decimal, q: i64) -> Decimal {
    mul_int_fast(a, q).unwrap_or_else(|| mul_int_slow(a, q))
}
