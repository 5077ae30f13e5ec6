//! Exact amounts and lot arithmetic.
//!
//! An [`Amount`] is a signed integer number of atoms, 10^-18 of a unit: the
//! same layout as Arrow's `decimal128(38, 18)`, exact for every balance an
//! exchange reports (up to ~1.7e20 units). Amounts are parsed from and
//! printed as exact decimal strings; floats enter through their shortest
//! round-trip decimal (`0.3`, never `0.299999999999999988897769753748`).
//! Lots are integer multiples of a market's step, truncated toward zero as
//! exchanges and ccxt do.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::error::{CoreError, Result};

/// Decimal places of an [`Amount`].
pub const DECIMALS: u32 = 18;
const UNIT: i128 = 1_000_000_000_000_000_000;

/// An exact amount of an asset (coins or quote cash), in atoms of 10^-18.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i128);

/// Why a decimal string is not an [`Amount`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ParseAmountError {
    Invalid,
    TooPrecise,
    Overflow,
}

impl fmt::Display for ParseAmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Invalid => "not a decimal number",
            Self::TooPrecise => "more than 18 decimal places",
            Self::Overflow => "too large for an amount",
        })
    }
}

impl Amount {
    pub const ZERO: Amount = Amount(0);
    pub const MAX: Amount = Amount(i128::MAX);

    pub const fn from_atoms(atoms: i128) -> Self {
        Amount(atoms)
    }
    pub const fn atoms(self) -> i128 {
        self.0
    }

    /// Parses a decimal string (`"0.3"`, `"-12"`, `"1e-05"`, `"1.5E+3"`) exactly.
    pub fn parse(s: &str) -> std::result::Result<Amount, ParseAmountError> {
        let s = s.trim();
        let (negative, body) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exponent) = match body.find(['e', 'E']) {
            Some(i) => {
                let exp: i32 = body[i + 1..].parse().map_err(|_| ParseAmountError::Invalid)?;
                (&body[..i], exp)
            }
            None => (body, 0),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(ParseAmountError::Invalid);
        }
        let digits = int_part.bytes().chain(frac_part.bytes());
        // Significant digits without leading zeros, and the power of ten of the last one.
        let mut value: i128 = 0;
        let mut seen_nonzero = false;
        let mut kept_digits: Vec<u8> = Vec::with_capacity(mantissa.len());
        for b in digits {
            if !b.is_ascii_digit() {
                return Err(ParseAmountError::Invalid);
            }
            if b != b'0' || seen_nonzero {
                seen_nonzero = true;
                kept_digits.push(b - b'0');
            }
        }
        // Trailing zeros change nothing but the scale; drop them so "1.500000000000000000000" parses.
        let mut scale = frac_part.len() as i64 - exponent as i64;
        while kept_digits.last() == Some(&0) {
            kept_digits.pop();
            scale -= 1;
        }
        if kept_digits.is_empty() {
            return Ok(Amount::ZERO);
        }
        if scale > DECIMALS as i64 {
            return Err(ParseAmountError::TooPrecise);
        }
        for d in &kept_digits {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(*d as i128))
                .ok_or(ParseAmountError::Overflow)?;
        }
        let shift = (DECIMALS as i64 - scale) as u32;
        let atoms = 10i128
            .checked_pow(shift)
            .and_then(|p| value.checked_mul(p))
            .ok_or(ParseAmountError::Overflow)?;
        Ok(Amount(if negative { -atoms } else { atoms }))
    }

    /// Parses `s`, naming `field` in the error.
    pub fn parse_field(s: &str, field: &str) -> Result<Amount> {
        Amount::parse(s).map_err(|e| CoreError::amount(field, s, e.to_string()))
    }

    /// The exact decimal a float stands for: its shortest round-trip digits,
    /// truncated toward zero past 18 decimals (a float is an approximation
    /// already; a decimal string finer than 18 places is refused instead).
    pub fn from_f64(x: f64) -> std::result::Result<Amount, ParseAmountError> {
        if !x.is_finite() {
            return Err(ParseAmountError::Invalid);
        }
        // Rust's Display for f64 prints the shortest digits that round-trip, without exponent.
        let digits = format!("{x}");
        let cut = match digits.find('.') {
            Some(dot) if digits.len() - dot - 1 > DECIMALS as usize => &digits[..dot + 1 + DECIMALS as usize],
            _ => &digits,
        };
        Amount::parse(cut)
    }

    /// Nearest float, for valuation only (never for an order amount).
    pub fn to_f64(self) -> f64 {
        // Three signed 64-bit conversions (one instruction each, no branch on
        // the low word's top bit) instead of the software i128 → f64, and a
        // multiplication instead of a division: within a few units in the
        // last place of the exact value, which valuation does not notice.
        const TWO32: f64 = 4_294_967_296.0;
        let low = self.0 as u64;
        let high = (self.0 >> 64) as i64 as f64 * TWO32 + (low >> 32) as i64 as f64;
        (high * TWO32 + (low & 0xffff_ffff) as i64 as f64) * 1e-18
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// Whole lots of `step` in this amount, truncated toward zero.
    #[inline]
    pub fn lots(self, step: Amount) -> i128 {
        debug_assert!(step.0 > 0);
        // The usual case, a holding under ~1.7e20 units of a step under
        // ~18 units: a float estimate corrected exactly with 64×64→128-bit
        // products, cheaper than a hardware or software division.
        if let (Ok(amount), Ok(step)) = (u128::try_from(self.0), u64::try_from(step.0)) {
            // (u64 → f64 twice: u128 → f64 would be a software call.)
            let amount_f = (amount >> 64) as u64 as f64 * 18_446_744_073_709_551_616.0 + amount as u64 as f64;
            let estimate = amount_f / step as f64;
            // Five roundings of at most 2^-53 each (under 6e-16 in all): under
            // 1e15 lots the estimate is within one lot, so one correction makes
            // it exact (no loop: LLVM vectorizes one into hundreds of instructions).
            if estimate < 1.0e15 && step > 0 {
                let (mut n, step) = (estimate as u64, step as u128);
                if n as u128 * step > amount {
                    n -= 1; // n ≥ 1 here: 0 lots never exceed an amount ≥ 0
                } else if (n as u128 + 1) * step <= amount {
                    n += 1;
                }
                debug_assert!(n as u128 * step <= amount && amount < (n as u128 + 1) * step);
                return n as i128;
            }
        }
        self.lots_rare(step)
    }

    /// [`Amount::lots`] given a float estimate of the count (a holding's value
    /// over its lot value, which the planner has anyway): exact whatever the
    /// estimate, and within a lot of the count it costs one 64×64-bit product
    /// and no conversion of the amount to a float nor division.
    #[inline]
    pub fn lots_near(self, step: Amount, estimate: f64) -> i128 {
        if let (Ok(amount), Ok(step64), true) = (u128::try_from(self.0), u64::try_from(step.0), (0.0..1.0e15).contains(&estimate)) {
            let (n, step) = (estimate as i64 as u64, step64 as u128); // (a signed conversion is one instruction)
            let low = n as u128 * step;
            // The count is n, or one either side, when that lot's bracket holds the amount.
            if low > amount {
                if low - step <= amount {
                    return n as i128 - 1;
                }
            } else if amount < low + step {
                return n as i128;
            } else if amount < low + 2 * step {
                return n as i128 + 1;
            }
        }
        self.lots(step)
    }

    /// [`Amount::lots`] past the float estimate's range, or of a negative amount.
    #[cold]
    #[inline(never)]
    fn lots_rare(self, step: Amount) -> i128 {
        match (u64::try_from(self.0), u64::try_from(step.0)) {
            (Ok(amount), Ok(step)) => (amount / step) as i128,
            _ if self.0 > 0 && step.0 > 0 && self.to_f64() / step.to_f64() < 9.0e15 => {
                // A float estimate (off by at most one here), corrected
                // exactly: no software 128-bit division on the hot path.
                let mut n = (self.to_f64() / step.to_f64()) as i128;
                while n > 0 && n.checked_mul(step.0).is_none_or(|v| v > self.0) {
                    n -= 1;
                }
                while (n + 1).checked_mul(step.0).is_some_and(|v| v <= self.0) {
                    n += 1;
                }
                n
            }
            _ => self.0 / step.0,
        }
    }
    /// `n` lots of `step`, or `None` on overflow.
    pub fn of_lots(n: i128, step: Amount) -> Option<Amount> {
        n.checked_mul(step.0).map(Amount)
    }
    /// This amount truncated toward zero to a multiple of `step`.
    pub fn truncate_to(self, step: Amount) -> Amount {
        Amount(self.lots(step) * step.0)
    }

    /// Exact decimal for the fallback comparisons (`None` if its significant
    /// digits pass 96 bits, ~28 digits).
    pub fn to_decimal(self) -> Option<Decimal> {
        // Drop trailing zeros first: 1e11 whole coins is 1e29 atoms but 12
        // digits. In 64 bits when the atoms fit: LLVM turns those divisions
        // into multiplications, where a 128-bit one is a library call (hot
        // in the planner's exact settle).
        let (atoms, scale) = match u64::try_from(self.0) {
            Ok(small) => {
                let (small, scale) = strip_zeros(small, DECIMALS);
                (i128::from(small), scale)
            }
            Err(_) => strip_zeros(self.0, DECIMALS),
        };
        Decimal::try_from_i128_with_scale(atoms, scale).ok()
    }
}

/// `x` / 10^scale with the trailing zeros of `x` dropped (down to scale 0):
/// nine, three, then one at a time, so few divisions.
fn strip_zeros<T>(mut x: T, mut scale: u32) -> (T, u32)
where
    T: Copy + PartialEq + From<u32> + std::ops::Rem<Output = T> + std::ops::Div<Output = T>,
{
    for (power, digits) in [(1_000_000_000, 9), (1_000, 3), (10, 1)] {
        let power = T::from(power);
        while scale >= digits && x % power == T::from(0) {
            x = x / power;
            scale -= digits;
        }
    }
    (x, scale)
}

impl FromStr for Amount {
    type Err = ParseAmountError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Amount::parse(s)
    }
}

impl fmt::Display for Amount {
    /// Exact, shortest: `0.3`, `5`, `-0.00001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let abs = self.0.unsigned_abs();
        let unit = UNIT as u128;
        let (int, frac) = (abs / unit, abs % unit);
        if self.0 < 0 {
            f.write_str("-")?;
        }
        write!(f, "{int}")?;
        if frac != 0 {
            let digits = format!("{frac:018}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

/// The exact decimal a float price stands for (its shortest round-trip digits).
pub fn price_decimal(price: f64) -> Option<Decimal> {
    Decimal::from_str(&format!("{price}")).ok()
}

/// Relative margin inside which a float money comparison is re-done exactly.
pub const FLOAT_DOUBT: f64 = 1e-9;

/// Exact comparison of `amount × price` with `value` (all as exact decimals).
/// Floats decide when the answer is clear; the decimal path decides the rest.
pub fn cmp_notional(amount: Amount, price: f64, value: Amount) -> Ordering {
    let (n, v) = (amount.to_f64() * price, value.to_f64());
    let float_cmp = n.partial_cmp(&v).unwrap_or(Ordering::Equal);
    if (n - v).abs() > FLOAT_DOUBT * n.abs().max(v.abs()) {
        return float_cmp;
    }
    match (amount.to_decimal(), price_decimal(price), value.to_decimal()) {
        (Some(a), Some(p), Some(v)) => a.checked_mul(p).map_or(float_cmp, |n| n.cmp(&v)),
        _ => float_cmp,
    }
}

/// Exactly whether `amount × price ≥ threshold`.
pub fn notional_at_least(amount: Amount, price: f64, threshold: Amount) -> bool {
    cmp_notional(amount, price, threshold) != Ordering::Less
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Amount {
        Amount::parse(s).expect("valid amount")
    }

    #[test]
    fn parses_and_prints_exactly() {
        for (input, shown) in [
            ("0.3", "0.3"),
            ("0.30000000", "0.3"),
            ("1e-05", "0.00001"),
            ("1.5E+3", "1500"),
            ("-0.000000000000000001", "-0.000000000000000001"),
            ("0", "0"),
            ("-0", "0"),
            (".5", "0.5"),
            ("7.", "7"),
            ("9000.00000000", "9000"),
        ] {
            assert_eq!(a(input).to_string(), shown, "{input}");
        }
        assert_eq!(Amount::parse("0.0000000000000000001"), Err(ParseAmountError::TooPrecise));
        assert_eq!(Amount::parse("1e30"), Err(ParseAmountError::Overflow));
        for bad in ["", "-", "abc", "1.2.3", "1e", "e5", "0x10", "1,5", "."] {
            assert_eq!(Amount::parse(bad), Err(ParseAmountError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn floats_enter_as_their_shortest_decimal() {
        assert_eq!(Amount::from_f64(0.3).map(|x| x.to_string()), Ok("0.3".into()));
        assert_eq!(Amount::from_f64(0.1 + 0.2).map(|x| x.to_string()), Ok("0.30000000000000004".into()));
        assert_eq!(Amount::from_f64(1e-5).map(|x| x.to_string()), Ok("0.00001".into()));
        assert!(Amount::from_f64(f64::NAN).is_err());
        assert!(Amount::from_f64(1e300).is_err());
        assert_eq!(Amount::from_f64(2.220446049250313e-16).map(|x| x.to_string()), Ok("0.000000000000000222".into()));
        assert_eq!(Amount::from_f64(1e-19).map(|x| x.to_string()), Ok("0".into()));
        assert_eq!(Amount::from_f64(1.5e-17).map(|x| x.to_string()), Ok("0.000000000000000015".into()));
    }

    #[test]
    fn holding_exactly_point_three_is_three_lots_of_point_one() {
        assert_eq!(a("0.3").lots(a("0.1")), 3);
        assert_eq!(a("0.29999").lots(a("0.1")), 2);
        assert_eq!(a("0.3").truncate_to(a("0.1")).to_string(), "0.3");
        assert_eq!(a("1.23456789").truncate_to(a("0.00001")).to_string(), "1.23456");
        assert_eq!(a("-1.25").truncate_to(a("0.1")).to_string(), "-1.2");
    }

    #[test]
    fn lots_agree_with_exact_division() {
        // Multiples of the step and one atom either side, across the fast
        // path's range and past it (u64 and u128 amounts, coarse and fine steps).
        let steps = [1i128, 7, 10_000_000_000, 1_000_000_000_000_000, 123_456_789_012_345_678, 18_000_000_000_000_000_000];
        let counts = [0i128, 1, 2, 3, 999, 123_456_789, 999_999_999_999_999, 1_000_000_000_000_000, 9_000_000_000_000_001];
        for &step in &steps {
            for &n in &counts {
                for delta in [-1i128, 0, 1] {
                    let Some(atoms) = n.checked_mul(step).and_then(|x| x.checked_add(delta)) else { continue };
                    if atoms < 0 {
                        continue;
                    }
                    let (amount, step) = (Amount::from_atoms(atoms), Amount::from_atoms(step));
                    assert_eq!(amount.lots(step), atoms / step.atoms(), "{atoms} / {}", step.atoms());
                    // Exact from any estimate: near, far, or none at all.
                    for estimate in [n as f64, n as f64 - 0.999, n as f64 + 0.999, n as f64 + 1.5, 0.0, -1.0, 1e300, f64::NAN] {
                        assert_eq!(amount.lots_near(step, estimate), atoms / step.atoms(), "{atoms} / {} near {estimate}", step.atoms());
                    }
                }
            }
        }
    }

    #[test]
    fn large_whole_amounts_still_convert_exactly() {
        assert_eq!(a("170000000000").to_decimal().map(|d| d.to_string()), Some("170000000000".into()));
        assert_eq!(a("0.000000000000000001").to_decimal().map(|d| d.to_string()), Some("0.000000000000000001".into()));
        // Both sides of the 64-bit fast path give the fewest digits.
        for text in ["0", "12.5", "18.446744073709551615", "18.446744073709551616", "-3.20", "10000", "0.00010000"] {
            let exact = Decimal::from_str(text).expect("decimal").normalize();
            let d = a(text).to_decimal().expect("fits");
            assert_eq!((d, d.scale()), (exact, exact.scale()), "{text}");
        }
    }

    #[test]
    fn notional_comparison_is_exact_at_the_boundary() {
        // 0.1 × 50 = 5 exactly in decimals; in floats 0.1 * 50.0 happens to be 5.0, but
        // 0.07 × 100 = 7.000000000000001 in floats and exactly 7 in decimals.
        assert!(notional_at_least(a("0.07"), 100.0, a("7")));
        assert!(!notional_at_least(a("0.06999"), 100.0, a("7")));
        assert!(notional_at_least(a("0.00001"), 500000.0, a("5")));
        assert!(!notional_at_least(a("0.00001"), 499999.99, a("5")));
    }
}
