//! Orders filled in full at known prices, applied exactly: what a simulated
//! venue (a backtest, a paper account) does to a Book, with no Python object
//! per fill.
//!
//! A fill's cost is amount × price, where the price (and the fee rate) is the
//! decimal its float's shortest repr reads as (0.1 is 1/10), computed in 256
//! bits and rounded to an atom (1e-18) against the user: a buy costs the
//! larger neighbour, a sell yields the smaller; the fee, in the quote asset,
//! is rounded up.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use ethnum::U256;

use crate::error::{CoreError, Result};
use crate::lots::Amount;

/// Legs to fill: for each, the portfolio's slot (its cash), the holding row,
/// the side, the exact amount (two words) and the fill's price and fee rate.
pub struct FullFills<'a> {
    pub slots: &'a [i64],
    pub rows: &'a [i64],
    pub buy: &'a [bool],
    pub amount: &'a [i64],
    pub price: &'a [f64],
    pub fee_rate: &'a [f64],
}

/// Cost and fee of each leg (two words each), after writing the new cash and
/// holdings. All or nothing: a balance that would go below zero (or a bad
/// price or fee rate) is an error naming the leg, and the legs written
/// before it are undone.
pub fn fill_in_full(cash: &mut [i64], holdings: &mut [i64], fills: &FullFills<'_>) -> Result<(Vec<i64>, Vec<i64>)> {
    let n = fills.slots.len();
    let lengths = [fills.rows.len(), fills.buy.len(), fills.amount.len() / 2, fills.price.len(), fills.fee_rate.len()];
    if lengths.iter().any(|&len| len != n) {
        return Err(CoreError::config("fills", format!("{lengths:?}"), format!("one value per fill ({n} fills)")));
    }
    let mut decimals: IndexMap<u64, Fraction> = IndexMap::default();
    // Field names are built only for an error: most calls make none.
    let mut fraction_of = |x: f64, field: &dyn Fn() -> String| -> Result<Fraction> {
        if let Some(&f) = decimals.get(&x.to_bits()) {
            return Ok(f);
        }
        // The float's shortest digits, truncated past 18 decimals: a simulated
        // fill's price (e.g. moved by slippage) is a float, not a decimal given.
        let parsed = Amount::from_f64(x).map_err(|e| CoreError::amount(field(), x, e.to_string()))?;
        if parsed.is_negative() {
            return Err(CoreError::amount(field(), x, "must not be negative"));
        }
        let f = Fraction::of_atoms(parsed.atoms() as u128);
        decimals.insert(x.to_bits(), f);
        Ok(f)
    };
    let mut costs = Vec::with_capacity(2 * n);
    let mut fees = Vec::with_capacity(2 * n);
    // Each fill is written in place once worked out (a later fill of the same
    // slot or row builds on it), its old words kept in an undo log that is
    // replayed backwards if a later fill is refused: all or nothing, without
    // a map of balances to probe per fill.
    let mut undo: Vec<(bool, usize, [i64; 2])> = Vec::with_capacity(2 * n);
    for k in 0..n {
        match fill_one(cash, holdings, fills, k, &mut fraction_of) {
            Ok(Filled { slot, row, cash_after, held_after, cost, fee }) => {
                undo.push((true, slot, [cash[2 * slot], cash[2 * slot + 1]]));
                undo.push((false, row, [holdings[2 * row], holdings[2 * row + 1]]));
                cash[2 * slot..2 * slot + 2].copy_from_slice(&split(cash_after));
                holdings[2 * row..2 * row + 2].copy_from_slice(&split(held_after));
                costs.extend(split(cost));
                fees.extend(split(fee));
            }
            Err(e) => {
                for &(is_cash, i, old) in undo.iter().rev() {
                    let words = if is_cash { &mut *cash } else { &mut *holdings };
                    words[2 * i..2 * i + 2].copy_from_slice(&old);
                }
                return Err(e);
            }
        }
    }
    Ok((costs, fees))
}

/// One fill worked out against the balances as they stand: its slot and
/// row, their words after it, its cost and fee (atoms).
struct Filled {
    slot: usize,
    row: usize,
    cash_after: i128,
    held_after: i128,
    cost: i128,
    fee: i128,
}

fn fill_one(
    cash: &[i64],
    holdings: &[i64],
    fills: &FullFills<'_>,
    k: usize,
    fraction_of: &mut impl FnMut(f64, &dyn Fn() -> String) -> Result<Fraction>,
) -> Result<Filled> {
    let field = || format!("fills[{k}]");
    let (slot, row) = (fills.slots[k], fills.rows[k]);
    if slot < 0 || 2 * slot as usize + 1 >= cash.len() || row < 0 || 2 * row as usize + 1 >= holdings.len() {
        return Err(CoreError::config(field(), format!("slot {slot}, row {row}"), "out of range"));
    }
    let (slot, row) = (slot as usize, row as usize);
    let price = fills.price[k];
    if !(price.is_finite() && price > 0.0) {
        return Err(CoreError::price(format!("{}.price", field()), price, "must be a finite price > 0"));
    }
    let rate = fills.fee_rate[k];
    if !(rate.is_finite() && (0.0..1.0).contains(&rate)) {
        return Err(CoreError::amount(format!("{}.fee", field()), rate, "a fee rate in [0, 1)"));
    }
    let amount = Amount::from_atoms(i128::from(fills.amount[2 * k] as u64) | (i128::from(fills.amount[2 * k + 1]) << 64));
    if amount.is_negative() {
        return Err(CoreError::amount(format!("{}.amount", field()), amount, "must not be negative"));
    }
    let buy = fills.buy[k];
    let cost = fraction_of(price, &|| format!("{}.price", field()))?.times(amount.atoms() as u128, buy);
    let cost = narrow(cost, &field)?;
    let fee = narrow(fraction_of(rate, &|| format!("{}.fee", field()))?.times(cost as u128, true), &field)?;
    let (cash_now, held_now) = (words_at(cash, slot), words_at(holdings, row));
    let (cash_after, held_after) = if buy {
        (cash_now.checked_sub(cost).and_then(|c| c.checked_sub(fee)), held_now.checked_add(amount.atoms()))
    } else {
        (cash_now.checked_add(cost).and_then(|c| c.checked_sub(fee)), held_now.checked_sub(amount.atoms()))
    };
    match (cash_after, held_after) {
        (Some(cash_after), Some(held_after)) if cash_after >= 0 && held_after >= 0 => Ok(Filled { slot, row, cash_after, held_after, cost, fee }),
        _ => Err(CoreError::amount(field(), amount, "would take the portfolio's cash or holding below zero")),
    }
}

/// A map keyed by float bits (the fills' prices and fee rates): keys from
/// this process, not from an adversary, so one multiply (the Fx hash)
/// instead of SipHash; it is probed twice per fill.
type IndexMap<K, V> = HashMap<K, V, BuildHasherDefault<IndexHasher>>;

#[derive(Default)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A decimal as num / den with den a power of ten, reduced (50000 is 50000/1,
/// 0.001 is 1/1000), so most products fit 128 bits.
#[derive(Copy, Clone)]
struct Fraction {
    num: u128,
    den: u128,
    divisor: Divisor,
}

impl Fraction {
    fn of_atoms(atoms: u128) -> Fraction {
        let (mut num, mut den) = (atoms, 10u128.pow(18));
        while den > 1 && num % 10 == 0 {
            num /= 10;
            den /= 10;
        }
        Fraction { num, den, divisor: Divisor::new(den as u64) }
    }

    /// x × num / den, rounded up or down: in 128 bits when the product fits, else 256.
    fn times(self, x: u128, up: bool) -> U256 {
        match x.checked_mul(self.num) {
            Some(product) => {
                let (q, r) = self.divisor.div_rem(product);
                U256::from(if up && r != 0 { q + 1 } else { q })
            }
            None => {
                let (product, den) = (U256::from(x) * U256::from(self.num), U256::from(self.den));
                let (q, r) = (product / den, product % den);
                if up && r != U256::ZERO {
                    q + U256::ONE
                } else {
                    q
                }
            }
        }
    }
}

/// Division by a divisor below 2^64 through its precomputed reciprocal
/// (Möller and Granlund, "Improved division by invariant integers", 2011,
/// algorithm 4): two multiplications per 64-bit limb instead of a 128-bit
/// division, which was a third of a fill. A fraction's denominator is a power
/// of ten, at most 10^18; the reciprocal is worked out once per fraction.
#[derive(Copy, Clone)]
struct Divisor {
    /// The divisor shifted left until its top bit is set.
    normalized: u64,
    shift: u32,
    reciprocal: u64,
}

impl Divisor {
    fn new(d: u64) -> Divisor {
        let shift = d.leading_zeros();
        let normalized = d << shift;
        // ⌊(2^128 − 1) / d⌋ − 2^64, which fits 64 bits for a normalized d.
        let reciprocal = (u128::MAX / u128::from(normalized) - (1u128 << 64)) as u64;
        Divisor { normalized, shift, reciprocal }
    }

    /// (x / d, x % d).
    fn div_rem(self, x: u128) -> (u128, u64) {
        let s = self.shift;
        let shifted = x << s;
        let top = if s == 0 { 0 } else { (x >> (128 - s)) as u64 };
        let (q1, r1) = self.div_limbs(top, (shifted >> 64) as u64);
        let (q0, r0) = self.div_limbs(r1, shifted as u64);
        ((u128::from(q1) << 64) | u128::from(q0), r0 >> s)
    }

    /// (high·2^64 + low) / d and the remainder, for high < d (normalized).
    fn div_limbs(self, high: u64, low: u64) -> (u64, u64) {
        let d = self.normalized;
        let estimate = (u128::from(self.reciprocal) * u128::from(high)).wrapping_add((u128::from(high) << 64) | u128::from(low));
        let mut q = ((estimate >> 64) as u64).wrapping_add(1);
        let mut r = low.wrapping_sub(q.wrapping_mul(d));
        if r > estimate as u64 {
            q = q.wrapping_sub(1);
            r = r.wrapping_add(d);
        }
        if r >= d {
            q += 1;
            r -= d;
        }
        (q, r)
    }
}

fn narrow(x: U256, field: &dyn Fn() -> String) -> Result<i128> {
    if x > U256::from(i128::MAX as u128) {
        return Err(CoreError::amount(field(), x.to_string(), "too large for an amount"));
    }
    Ok(x.as_u128() as i128)
}

fn words_at(words: &[i64], i: usize) -> i128 {
    i128::from(words[2 * i] as u64) | (i128::from(words[2 * i + 1]) << 64)
}

fn split(x: i128) -> [i64; 2] {
    [x as u64 as i64, (x >> 64) as i64]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(x: &str) -> [i64; 2] {
        split(Amount::parse(x).expect("amount").atoms())
    }

    #[test]
    fn a_buy_and_a_sell_settle_exactly() {
        let mut cash: Vec<i64> = words("1000").to_vec();
        let mut held: Vec<i64> = [words("0"), words("2")].concat();
        let amount = [words("0.3"), words("1")].concat();
        let fills = FullFills { slots: &[0, 0], rows: &[0, 1], buy: &[true, false], amount: &amount, price: &[0.1, 7.0], fee_rate: &[0.001, 0.001] };
        let (cost, fee) = fill_in_full(&mut cash, &mut held, &fills).expect("fills");
        // 0.3 × 0.1 = 0.03 (the decimal 0.1, not the binary one); fee 0.00003. 1 × 7 = 7; fee 0.007.
        assert_eq!(words_at(&cost, 0), Amount::parse("0.03").expect("a").atoms());
        assert_eq!(words_at(&fee, 0), Amount::parse("0.00003").expect("a").atoms());
        assert_eq!(words_at(&cost, 1), Amount::parse("7").expect("a").atoms());
        assert_eq!(words_at(&cash, 0), Amount::parse("1006.96297").expect("a").atoms());
        assert_eq!(words_at(&held, 0), Amount::parse("0.3").expect("a").atoms());
        assert_eq!(words_at(&held, 1), Amount::parse("1").expect("a").atoms());
    }

    #[test]
    fn rounding_goes_against_the_user() {
        let mut cash: Vec<i64> = words("10").to_vec();
        let mut held: Vec<i64> = words("1").to_vec();
        // 0.000000000000000001 × 0.5 = 5e-19: a buy pays one atom, a sell gets none.
        let tiny = words("0.000000000000000001");
        let buy = FullFills { slots: &[0], rows: &[0], buy: &[true], amount: &tiny, price: &[0.5], fee_rate: &[0.0] };
        let (cost, _) = fill_in_full(&mut cash, &mut held, &buy).expect("buy");
        assert_eq!(words_at(&cost, 0), 1);
        let sell = FullFills { slots: &[0], rows: &[0], buy: &[false], amount: &tiny, price: &[0.5], fee_rate: &[0.0] };
        let (cost, _) = fill_in_full(&mut cash, &mut held, &sell).expect("sell");
        assert_eq!(words_at(&cost, 0), 0);
    }

    #[test]
    fn products_past_128_bits_are_exact_too() {
        let half = Fraction::of_atoms(500_000_000_000_000_000); // 0.5 = 5/10
        let big = u128::MAX - 1; // × 5 overflows 128 bits: the 256-bit path
        assert_eq!(half.times(big, false), U256::from(big / 2));
        assert_eq!(half.times(big - 1, true), U256::from((big - 1) / 2 + 1));
        let small = 1_000_001u128; // the 128-bit path, same rounding
        assert_eq!(half.times(small, true), U256::from(500_001u128));
        assert_eq!(half.times(small, false), U256::from(500_000u128));
    }

    proptest::proptest! {
        #[test]
        fn division_by_a_reciprocal_is_exact(x: u128, d in 1u64.., k in 0u32..19, small: u64) {
            for (x, d) in [(x, d), (x, 10u64.pow(k)), (u128::from(small), 10u64.pow(k)), (u128::MAX - u128::from(small), d)] {
                let (q, r) = Divisor::new(d).div_rem(x);
                proptest::prop_assert_eq!((q, u128::from(r)), (x / u128::from(d), x % u128::from(d)));
            }
        }
    }

    #[test]
    fn a_fill_past_the_cash_writes_nothing() {
        let mut cash: Vec<i64> = words("10").to_vec();
        let mut held: Vec<i64> = [words("0"), words("1")].concat();
        let amount = [words("1"), words("2")].concat();
        // The sell is fine, the buy is not: neither is written.
        let fills = FullFills { slots: &[0, 0], rows: &[1, 0], buy: &[false, true], amount: &amount, price: &[1.0, 100.0], fee_rate: &[0.0, 0.0] };
        assert!(fill_in_full(&mut cash, &mut held, &fills).is_err());
        assert_eq!(words_at(&cash, 0), Amount::parse("10").expect("a").atoms());
        assert_eq!(words_at(&held, 1), Amount::parse("1").expect("a").atoms());
        assert_eq!(words_at(&held, 0), 0);
    }

    #[test]
    fn a_refused_fill_undoes_the_same_row_filled_twice_before_it() {
        let mut cash: Vec<i64> = words("10").to_vec();
        let mut held: Vec<i64> = words("1").to_vec();
        let amount = [words("0.5"), words("0.5"), words("0.5")].concat();
        // Two sells of the same row go through; a third would sell more than is held.
        let fills = FullFills { slots: &[0, 0, 0], rows: &[0, 0, 0], buy: &[false; 3], amount: &amount, price: &[2.0; 3], fee_rate: &[0.001; 3] };
        assert!(fill_in_full(&mut cash, &mut held, &fills).is_err());
        assert_eq!(words_at(&cash, 0), Amount::parse("10").expect("a").atoms());
        assert_eq!(words_at(&held, 0), Amount::parse("1").expect("a").atoms());
    }
}
