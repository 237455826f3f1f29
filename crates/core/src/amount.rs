//! The ledger's amounts, kept unpacked between fills.
//!
//! An [`Amt`] holds any `Decimal` losslessly in 16 bytes. The common form is a signed `i64`
//! mantissa and a scale, on which a fill adds and multiplies directly; every other value
//! (a mantissa beyond `i64`, or a negative zero, which `rust_decimal` tells from `0`) is
//! kept as the `Decimal`'s raw parts and computed through the `Decimal` operators. A
//! `Decimal` is assembled only when a value is read.
//!
//! Each operation follows `rust_decimal` bit for bit. Zero operands take its rules (`0 ± b`
//! is `±b` at `b`'s scale, `a ± 0` is `a`, a product with a zero is a scale-0 zero). For
//! non-zero operands whose mantissas fit an `i64` and whose scales differ by at most 18,
//! `rust_decimal` adds the aligned mantissas exactly (it does so whenever both fit 64 bits,
//! the scales differ by at most 19 and the sum's magnitude is below 2^96) and builds the
//! result at the larger scale, a zero sum as a positive zero; so does [`Amt::add`] when the
//! sum fits an `i64`. Products whose mantissa fits an `i64` are exact at the operand's
//! scale. Everything else goes through the `Decimal` operator and is unpacked again.

use rust_decimal::Decimal;

use crate::exact::{parts, POW10};
use crate::indicators::exact_sma::{fx, SCALE as FX_SCALE};

/// In `flags`: the value is in the raw form.
const RAW: u32 = 1 << 31;
/// In `flags` of the raw form: the sign bit.
const NEG: u32 = 1 << 30;

#[derive(Clone, Copy, Default)]
pub(super) struct Amt {
    /// Plain form: the signed mantissa. Raw form: the low 64 bits of the magnitude.
    m: i64,
    /// The scale, plus [`RAW`] and [`NEG`] in the raw form.
    flags: u32,
    /// Raw form: the high 32 bits of the magnitude; 0 in the plain form.
    hi: u32,
}

/// By value, as `Decimal` compares.
impl PartialEq for Amt {
    fn eq(&self, other: &Self) -> bool {
        self.to_dec() == other.to_dec()
    }
}

impl std::fmt::Debug for Amt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_dec().fmt(f)
    }
}

#[cold]
#[inline(never)]
fn add_slow(a: Amt, b: Amt, subtract: bool) -> Amt {
    let (a, b) = (a.to_dec(), b.to_dec());
    Amt::from_dec(if subtract { a - b } else { a + b })
}

#[cold]
#[inline(never)]
fn mul_int_slow(a: Amt, q: i64) -> Amt {
    Amt::from_dec(a.to_dec() * Decimal::from(q))
}

#[cold]
#[inline(never)]
fn div_int_slow(a: Amt, q: i64) -> Decimal {
    a.to_dec() / Decimal::from(q)
}

#[cold]
#[inline(never)]
fn neg_slow(a: Amt) -> Amt {
    Amt::from_dec(-a.to_dec())
}

#[cold]
#[inline(never)]
fn raw_from_dec(d: Decimal) -> Amt {
    let u = d.unpack();
    Amt {
        m: (u64::from(u.mid) << 32 | u64::from(u.lo)) as i64,
        flags: RAW | if u.negative { NEG } else { 0 } | u.scale,
        hi: u.hi,
    }
}

#[cold]
#[inline(never)]
fn raw_to_dec(a: Amt) -> Decimal {
    let lo = a.m as u64;
    let mut d = Decimal::from_parts(
        lo as u32,
        (lo >> 32) as u32,
        a.hi,
        false,
        a.flags & !(RAW | NEG),
    );
    d.set_sign_negative(a.flags & NEG != 0);
    d
}

impl Amt {
    pub const ZERO: Amt = Amt {
        m: 0,
        flags: 0,
        hi: 0,
    };

    #[inline(always)]
    fn plain(self) -> bool {
        self.flags & RAW == 0
    }

    #[inline(always)]
    pub fn from_dec(d: Decimal) -> Amt {
        match parts(d) {
            // A negative zero keeps its sign only in the raw form.
            Some((m, scale)) if m != 0 || !d.is_sign_negative() => Amt {
                m,
                flags: scale,
                hi: 0,
            },
            _ => raw_from_dec(d),
        }
    }

    #[inline(always)]
    pub fn to_dec(self) -> Decimal {
        if !self.plain() {
            return raw_to_dec(self);
        }
        let mag = self.m.unsigned_abs();
        // The sign set apart: `from_parts` would test for a zero, which is never negative here.
        let mut d = Decimal::from_parts(mag as u32, (mag >> 32) as u32, 0, false, self.flags);
        d.set_sign_negative(self.m < 0);
        d
    }

    /// Also true of a negative zero.
    #[inline(always)]
    pub fn is_zero(self) -> bool {
        self.m == 0 && self.hi == 0
    }

    /// `self < 0`.
    #[inline(always)]
    pub fn is_negative(self) -> bool {
        if self.plain() {
            self.m < 0
        } else {
            self.flags & NEG != 0 && !self.is_zero()
        }
    }

    /// `|self| > bound`, given the bound's mantissa at every scale.
    #[inline(always)]
    pub fn magnitude_above(self, bound_at_scale: &[u128; 29]) -> bool {
        // The bound at scale 0 is the smallest.
        if self.plain() && u128::from(self.m.unsigned_abs()) <= bound_at_scale[0] {
            false
        } else if self.plain() {
            u128::from(self.m.unsigned_abs()) > bound_at_scale[self.flags as usize]
        } else {
            let d = self.to_dec();
            d.mantissa().unsigned_abs() > bound_at_scale[d.scale() as usize]
        }
    }

    /// `exact_sma::fx(self.to_dec())`, without the `Decimal` when plain.
    #[inline(always)]
    pub fn fx(self) -> Option<i64> {
        if !self.plain() {
            return fx(self.to_dec());
        }
        let p = *POW10.get(FX_SCALE.checked_sub(self.flags)? as usize)?;
        // `fx` takes no mantissa of magnitude 2^63.
        if self.m == i64::MIN {
            return None;
        }
        self.m.checked_mul(p)
    }

    /// `-self`, as `Decimal`'s `Neg` (a zero's sign flips too).
    #[inline(always)]
    pub fn neg(self) -> Amt {
        match self.m.checked_neg() {
            Some(m) if self.plain() && m != 0 => Amt { m, ..self },
            _ => neg_slow(self),
        }
    }

    #[inline(always)]
    fn add_sub(self, b: Amt, subtract: bool) -> Amt {
        // Plain operands at one scale need no zero rules: `0 ± b`, `a ± 0` and a sum
        // that cancels all come out of the integer sum as `rust_decimal` builds them.
        if self.flags == b.flags && self.plain() {
            let r = if subtract {
                self.m.checked_sub(b.m)
            } else {
                self.m.checked_add(b.m)
            };
            if let Some(m) = r {
                return Amt { m, ..self };
            }
        } else if (self.flags | b.flags) & RAW == 0 {
            if self.m == 0 {
                if !subtract || b.m == 0 {
                    return b;
                }
                if let Some(m) = b.m.checked_neg() {
                    return Amt { m, ..b };
                }
            } else if b.m == 0 {
                return self;
            } else {
                let (sa, sb) = (self.flags, b.flags);
                let y = if subtract {
                    b.m.checked_neg()
                } else {
                    Some(b.m)
                };
                let r = y.and_then(|y| {
                    if sa > sb {
                        self.m
                            .checked_add(y.checked_mul(*POW10.get((sa - sb) as usize)?)?)
                    } else {
                        self.m
                            .checked_mul(*POW10.get((sb - sa) as usize)?)?
                            .checked_add(y)
                    }
                });
                if let Some(m) = r {
                    return Amt {
                        m,
                        flags: sa.max(sb),
                        hi: 0,
                    };
                }
            }
        }
        add_slow(self, b, subtract)
    }

    /// `self + b`, as `Decimal` adds.
    #[inline(always)]
    pub fn add(self, b: Amt) -> Amt {
        self.add_sub(b, false)
    }

    /// `self − b`, as `Decimal` subtracts.
    #[inline(always)]
    pub fn sub(self, b: Amt) -> Amt {
        self.add_sub(b, true)
    }

    /// `self × Decimal::from(q)`.
    #[inline(always)]
    pub fn mul_int(self, q: i64) -> Amt {
        if self.plain() {
            // A zero product is `rust_decimal`'s scale-0 zero.
            match self.m.checked_mul(q) {
                Some(0) => return Amt::ZERO,
                Some(m) => return Amt { m, ..self },
                None => {}
            }
        }
        mul_int_slow(self, q)
    }

    /// `self ÷ Decimal::from(q)` for `q ≠ 0`: an exact quotient keeps the scale, as
    /// `rust_decimal` leaves it; an inexact one is `rust_decimal`'s to round.
    #[inline(always)]
    pub fn div_int(self, q: i64) -> Decimal {
        if self.plain() {
            if self.m == 0 {
                return Decimal::ZERO;
            }
            if self.m.checked_rem(q) == Some(0) {
                return Amt {
                    m: self.m / q,
                    ..self
                }
                .to_dec();
            }
        }
        div_int_slow(self, q)
    }
}
