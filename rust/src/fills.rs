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
use std::ops::Range;

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
///
/// Many fills go in parallel when they cut into runs that touch disjoint
/// balances (see [`independent_parts`]): each run is filled in order as
/// below, and if any is refused every run is undone and the first refused
/// leg is reported, as filling them all in order would.
pub fn fill_in_full(cash: &mut [i64], holdings: &mut [i64], fills: &FullFills<'_>) -> Result<(Vec<i64>, Vec<i64>)> {
    let n = fills.slots.len();
    let (mut costs, mut fees) = (vec![0; 2 * n], vec![0; 2 * n]);
    fill_in_full_on(cash, holdings, fills, Out::Words { costs: &mut costs, fees: &mut fees }, crate::workers::inline(n, INLINE_FILLS))?;
    Ok((costs, fees))
}

/// Float copies of the balances: `cash` by slot, `amounts` by row.
pub struct FloatCopies<'a> {
    pub cash: &'a mut [f64],
    pub amounts: &'a mut [f64],
}

/// [`fill_in_full`] that also refreshes the float copies of the cash and
/// holdings it writes (`Amount::to_f64` of the words after the fills), all
/// or nothing with them, and returns each fill's cost and fee as those floats.
pub fn fill_in_full_with_floats(cash: &mut [i64], holdings: &mut [i64], floats: FloatCopies<'_>, fills: &FullFills<'_>) -> Result<(Vec<f64>, Vec<f64>)> {
    fill_in_full_with_floats_on(cash, holdings, floats, fills, crate::workers::inline(fills.slots.len(), INLINE_FILLS))
}

fn fill_in_full_with_floats_on(cash: &mut [i64], holdings: &mut [i64], copies: FloatCopies<'_>, fills: &FullFills<'_>, inline: bool) -> Result<(Vec<f64>, Vec<f64>)> {
    if 2 * copies.cash.len() != cash.len() || 2 * copies.amounts.len() != holdings.len() {
        let lengths = format!("{} cash floats, {} amount floats", copies.cash.len(), copies.amounts.len());
        let wanted = format!("one per cash slot ({}) and per holding row ({})", cash.len() / 2, holdings.len() / 2);
        return Err(CoreError::config("cash_float", lengths, wanted));
    }
    let n = fills.slots.len();
    let (mut costs, mut fees) = (vec![0.0; n], vec![0.0; n]);
    fill_in_full_on(cash, holdings, fills, Out::Floats { costs: &mut costs, fees: &mut fees, copies }, inline)?;
    Ok((costs, fees))
}

/// Below this many fills (about 0.1 µs each) a call fills on the calling
/// thread (see [`crate::workers::inline`]). Measured on 2 vCPUs, in order
/// against parallel: from a thread outside the pool, even at 9,600 fills and
/// 1.4–1.7× faster at 19,200; from a thread that joined one, even at 1,200
/// and 1.1–1.7× faster from 2,400 (slower at 600).
const INLINE_FILLS: usize = 16_384;

/// Fills per parallel task, at least: a task costs a map of decimals and a
/// few pieces of the columns.
const MIN_PART: usize = 256;

/// What fills write besides the balances: each fill's cost and fee as words
/// (two per fill), or as floats with the float copies of the balances
/// written as they go (by slot and row, from `at` in [`fill_part`]).
enum Out<'a> {
    Words { costs: &'a mut [i64], fees: &'a mut [i64] },
    Floats { costs: &'a mut [f64], fees: &'a mut [f64], copies: FloatCopies<'a> },
}

impl Out<'_> {
    /// One piece for each of `parts`, in order.
    fn split(&mut self, parts: &[Part]) -> Vec<Out<'_>> {
        let spans = |span: fn(&Part) -> Range<usize>| parts.iter().map(span);
        match self {
            Out::Words { costs, fees } => {
                let (costs, fees) = (pieces(costs, 2, spans(|p| p.fills.clone())), pieces(fees, 2, spans(|p| p.fills.clone())));
                costs.into_iter().zip(fees).map(|(costs, fees)| Out::Words { costs, fees }).collect()
            }
            Out::Floats { costs, fees, copies } => {
                let (costs, fees) = (pieces(costs, 1, spans(|p| p.fills.clone())), pieces(fees, 1, spans(|p| p.fills.clone())));
                let (cash, amounts) = (pieces(copies.cash, 1, spans(|p| p.slots.clone())), pieces(copies.amounts, 1, spans(|p| p.rows.clone())));
                let copies = cash.into_iter().zip(amounts).map(|(cash, amounts)| FloatCopies { cash, amounts });
                costs.into_iter().zip(fees).zip(copies).map(|((costs, fees), copies)| Out::Floats { costs, fees, copies }).collect()
            }
        }
    }
}

fn fill_in_full_on(cash: &mut [i64], holdings: &mut [i64], fills: &FullFills<'_>, mut out: Out<'_>, inline: bool) -> Result<()> {
    let n = fills.slots.len();
    let lengths = [fills.rows.len(), fills.buy.len(), fills.amount.len() / 2, fills.price.len(), fills.fee_rate.len()];
    if lengths.iter().any(|&len| len != n) {
        return Err(CoreError::config("fills", format!("{lengths:?}"), format!("one value per fill ({n} fills)")));
    }
    let tasks = (PARTS_PER_THREAD * rayon::current_num_threads()).min(n / MIN_PART);
    let parts = if inline || tasks < 2 { None } else { independent_parts(fills, cash.len() / 2, holdings.len() / 2, tasks) };
    let Some(parts) = parts else {
        fill_part(cash, holdings, (0, 0), fills, 0..n, &mut out)?;
        return Ok(());
    };
    let cash_pieces = pieces(cash, 2, parts.iter().map(|p| p.slots.clone()));
    let held_pieces = pieces(holdings, 2, parts.iter().map(|p| p.rows.clone()));
    let tasks: Vec<_> = parts.iter().zip(cash_pieces.into_iter().zip(held_pieces)).zip(out.split(&parts)).collect();
    let done = crate::batch::run_tasks(tasks, false, || (), |_, (_, ((part, (cash, holdings)), mut out))| {
        fill_part(cash, holdings, (part.slots.start, part.rows.start), fills, part.fills.clone(), &mut out)
    });
    if done.iter().any(Result::is_err) {
        // The parts are in fill order: the first refused holds the first refused leg.
        let mut refused = None;
        for (part, done) in parts.iter().zip(done) {
            match done {
                Ok(undo) => undo_writes(cash, holdings, &mut out, (part.slots.start, part.rows.start), &undo),
                Err(e) => _ = refused.get_or_insert(e),
            }
        }
        if let Some(e) = refused {
            return Err(e);
        }
    }
    Ok(())
}

/// Parallel tasks per thread: enough that a thread slowed (by another
/// process on its core) leaves its share to the others.
const PARTS_PER_THREAD: usize = 8;

/// A run of fills (`fills`, by position) and the slots and rows it touches
/// (the least to the greatest).
struct Part {
    fills: Range<usize>,
    slots: Range<usize>,
    rows: Range<usize>,
}

/// The fills cut into about `tasks` runs of equal length, each cut moved on
/// to where the slot changes (a portfolio's fills come together, its sells
/// before its buys), when that makes runs that can be filled apart: the
/// slots of each run lie in a span no other run's slots reach, and so do its
/// rows. Then no run reads or writes a word another run writes, and filling
/// the runs in any order (or at once) writes what filling the fills in order
/// does. Otherwise (a slot's fills apart, a row in two runs, an index out of
/// range: the error is the sequential pass's to report) None.
fn independent_parts(fills: &FullFills<'_>, slot_count: usize, row_count: usize, tasks: usize) -> Option<Vec<Part>> {
    let n = fills.slots.len();
    let span = |column: &[i64], fills: &Range<usize>, count: usize| {
        let (least, greatest) = column[fills.clone()].iter().fold((i64::MAX, i64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        (least >= 0 && greatest < count as i64).then(|| least as usize..greatest as usize + 1)
    };
    let mut parts = Vec::with_capacity(tasks);
    let mut start = 0;
    for t in 1..=tasks {
        let mut end = (n * t / tasks).max(start);
        while end > 0 && end < n && fills.slots[end] == fills.slots[end - 1] {
            end += 1;
        }
        if end > start {
            let run = start..end;
            parts.push(Part { slots: span(fills.slots, &run, slot_count)?, rows: span(fills.rows, &run, row_count)?, fills: run });
            start = end;
        }
    }
    let apart = |span: fn(&Part) -> Range<usize>| {
        let mut spans: Vec<Range<usize>> = parts.iter().map(span).collect();
        spans.sort_unstable_by_key(|s| s.start);
        spans.windows(2).all(|w| w[0].end <= w[1].start)
    };
    (apart(|p| p.slots.clone()) && apart(|p| p.rows.clone())).then_some(parts)
}

/// `words` (`width` per index) cut into the pieces at `spans` (of indices,
/// disjoint, in any order), returned in the order of `spans`.
fn pieces<T>(mut words: &mut [T], width: usize, spans: impl Iterator<Item = Range<usize>>) -> Vec<&mut [T]> {
    let spans: Vec<Range<usize>> = spans.collect();
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_unstable_by_key(|&i| spans[i].start);
    let mut cut: Vec<(usize, &mut [T])> = Vec::with_capacity(spans.len());
    let mut at = 0;
    for i in order {
        let (_, rest) = std::mem::take(&mut words).split_at_mut(width * spans[i].start - at);
        let (piece, rest) = rest.split_at_mut(width * spans[i].len());
        cut.push((i, piece));
        (words, at) = (rest, width * spans[i].end);
    }
    cut.sort_unstable_by_key(|&(i, _)| i);
    cut.into_iter().map(|(_, piece)| piece).collect()
}

/// Old words of a slot (`true`) or row written by a fill, by index in the
/// pieces filled, and its old float copy (with [`Out::Floats`]).
type Undo = Vec<(bool, usize, [i64; 2], f64)>;

/// Fills `ks` in order against `cash` and `holdings`, the columns' pieces
/// from slot `at.0` and row `at.1`, their costs and fees into `out` (its
/// pieces for `ks`, its float copies from `at` too). Returns what undoes its
/// writes; if a fill is refused, its writes are undone and its error returned.
fn fill_part(cash: &mut [i64], holdings: &mut [i64], at: (usize, usize), fills: &FullFills<'_>, ks: Range<usize>, out: &mut Out<'_>) -> Result<Undo> {
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
    let float = |atoms: i128| Amount::from_atoms(atoms).to_f64();
    // Each fill is written in place once worked out (a later fill of the same
    // slot or row builds on it), its old words kept in an undo log that is
    // replayed backwards if a later fill is refused: all or nothing, without
    // a map of balances to probe per fill.
    let first = ks.start;
    let mut undo: Undo = Vec::with_capacity(2 * ks.len());
    for k in ks {
        match fill_one(cash, holdings, at, fills, k, &mut fraction_of) {
            Ok(Filled { slot, row, cash_after, held_after, cost, fee }) => {
                let i = k - first;
                let old_floats = match out {
                    Out::Words { costs, fees } => {
                        costs[2 * i..2 * i + 2].copy_from_slice(&split(cost));
                        fees[2 * i..2 * i + 2].copy_from_slice(&split(fee));
                        (0.0, 0.0)
                    }
                    Out::Floats { costs, fees, copies } => {
                        (costs[i], fees[i]) = (float(cost), float(fee));
                        let old = (copies.cash[slot], copies.amounts[row]);
                        (copies.cash[slot], copies.amounts[row]) = (float(cash_after), float(held_after));
                        old
                    }
                };
                undo.push((true, slot, [cash[2 * slot], cash[2 * slot + 1]], old_floats.0));
                undo.push((false, row, [holdings[2 * row], holdings[2 * row + 1]], old_floats.1));
                cash[2 * slot..2 * slot + 2].copy_from_slice(&split(cash_after));
                holdings[2 * row..2 * row + 2].copy_from_slice(&split(held_after));
            }
            Err(e) => {
                undo_writes(cash, holdings, out, (0, 0), &undo);
                return Err(e);
            }
        }
    }
    Ok(undo)
}

/// Replays `undo` backwards on the columns (or pieces of them) from slot
/// `at.0` and row `at.1`, and on the float copies of `out` (if any).
fn undo_writes(cash: &mut [i64], holdings: &mut [i64], out: &mut Out<'_>, at: (usize, usize), undo: &Undo) {
    for &(is_cash, i, old, old_float) in undo.iter().rev() {
        let (words, i) = if is_cash { (&mut *cash, at.0 + i) } else { (&mut *holdings, at.1 + i) };
        words[2 * i..2 * i + 2].copy_from_slice(&old);
        if let Out::Floats { copies, .. } = out {
            *if is_cash { &mut copies.cash[i] } else { &mut copies.amounts[i] } = old_float;
        }
    }
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
    at: (usize, usize),
    fills: &FullFills<'_>,
    k: usize,
    fraction_of: &mut impl FnMut(f64, &dyn Fn() -> String) -> Result<Fraction>,
) -> Result<Filled> {
    let field = || format!("fills[{k}]");
    let (slot, row) = (fills.slots[k], fills.rows[k]);
    // By index in the pieces given, which start at slot `at.0` and row `at.1`.
    let local = |i: i64, from: usize, words: &[i64]| usize::try_from(i).ok().and_then(|i| i.checked_sub(from)).filter(|&i| i < words.len() / 2);
    let (Some(slot), Some(row)) = (local(slot, at.0, cash), local(row, at.1, holdings)) else {
        return Err(CoreError::config(field(), format!("slot {slot}, row {row}"), "out of range"));
    };
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
    let cost = fraction_of(price, &|| format!("{}.price", field()))?.atoms(amount.atoms() as u128, buy, &field)?;
    let fee = fraction_of(rate, &|| format!("{}.fee", field()))?.atoms(cost as u128, true, &field)?;
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

    /// [`Fraction::times`] as an amount's atoms (refused past i128): the
    /// usual product, within 128 bits, never goes through 256.
    #[inline]
    fn atoms(self, x: u128, up: bool, field: &dyn Fn() -> String) -> Result<i128> {
        let Some(product) = x.checked_mul(self.num) else { return narrow(self.times(x, up), field) };
        let (q, r) = self.divisor.div_rem(product);
        // (q + 1 cannot overflow: r ≠ 0 only for den ≥ 10, so q < 2^128 / 10.)
        let q = q + u128::from(up && r != 0);
        i128::try_from(q).map_err(|_| CoreError::amount(field(), q, "too large for an amount"))
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
        // As atoms: the same on both paths, and refused past i128 on both.
        let field = || "f".to_string();
        assert_eq!(half.atoms(small, true, &field).expect("fits"), 500_001);
        assert_eq!(half.atoms(small, false, &field).expect("fits"), 500_000);
        assert_eq!(half.atoms(u128::MAX / 5 * 2, false, &field).expect("fits"), (u128::MAX / 5) as i128);
        assert!(Fraction::of_atoms(10u128.pow(18)).atoms(u128::MAX / 2 + 1, false, &field).is_err()); // × 1: 128 bits, past i128
        assert!(Fraction::of_atoms(3 * 10u128.pow(18)).atoms(u128::MAX / 2, false, &field).is_err()); // × 3: 256 bits
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

    #[test]
    fn a_refusal_undoes_a_slot_filled_again_after_another() {
        let mut cash: Vec<i64> = [words("10"), words("10")].concat();
        let mut held: Vec<i64> = [words("1"), words("1"), words("0")].concat();
        let amount = [words("1"), words("1"), words("1"), words("100")].concat();
        // Slot 0 sells, slot 1 buys, slot 0 sells again and then buys past its cash: nothing is written.
        let fills = FullFills { slots: &[0, 1, 0, 0], rows: &[0, 2, 1, 0], buy: &[false, true, false, true], amount: &amount, price: &[2.0; 4], fee_rate: &[0.001; 4] };
        let (cash_before, held_before) = (cash.clone(), held.clone());
        let refused = fill_in_full(&mut cash, &mut held, &fills).expect_err("past the cash");
        assert_eq!(refused.field, "fills[3]");
        assert_eq!((cash, held), (cash_before, held_before));
    }

    /// Fills of `slots` portfolios of four holdings each, every third one
    /// selling two holdings and buying a third (in that order), from a seed.
    struct Case {
        cash: Vec<i64>,
        held: Vec<i64>,
        slots: Vec<i64>,
        rows: Vec<i64>,
        buy: Vec<bool>,
        amount: Vec<i64>,
        price: Vec<f64>,
        fee_rate: Vec<f64>,
    }

    /// Costs and fees (or the error), then the cash and holdings.
    type Outcome = (Result<(Vec<i64>, Vec<i64>)>, Vec<i64>, Vec<i64>);

    impl Case {
        fn new(slots: usize, seed: u64) -> Case {
            let mut state = seed | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let atoms = |x: u64| split(i128::from(x) * 1_000_000_000_000);
            let mut case = Case { cash: vec![], held: vec![], slots: vec![], rows: vec![], buy: vec![], amount: vec![], price: vec![], fee_rate: vec![] };
            for s in 0..slots {
                case.cash.extend(atoms(100_000_000_000 + next() % 100_000_000_000));
                for _ in 0..4 {
                    case.held.extend(atoms(3_000_000 + next() % 5_000_000));
                }
                let legs = if s % 3 == 0 { &[(0, false), (1, false), (2, true)][..] } else { &[] };
                for &(leg, buy) in legs {
                    case.slots.push(s as i64);
                    case.rows.push((4 * s + leg) as i64);
                    case.buy.push(buy);
                    case.amount.extend(atoms(next() % 3_000_000));
                    case.price.push([0.1, 7.25, 31_000.5, 1.01, 0.000_123][(next() % 5) as usize]);
                    case.fee_rate.push([0.001, 0.0, 0.000_75][(next() % 3) as usize]);
                }
            }
            case
        }

        fn fills(&self) -> FullFills<'_> {
            FullFills { slots: &self.slots, rows: &self.rows, buy: &self.buy, amount: &self.amount, price: &self.price, fee_rate: &self.fee_rate }
        }

        /// The outcome and the balances after, in order on this thread or in parallel on two.
        fn fill(&self, inline: bool) -> Outcome {
            let (mut cash, mut held) = (self.cash.clone(), self.held.clone());
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a pool");
            let n = self.slots.len();
            let (mut costs, mut fees) = (vec![0; 2 * n], vec![0; 2 * n]);
            let out = Out::Words { costs: &mut costs, fees: &mut fees };
            let done = pool.install(|| fill_in_full_on(&mut cash, &mut held, &self.fills(), out, inline));
            (done.map(|()| (costs, fees)), cash, held)
        }

        fn parts(&self) -> Option<Vec<Part>> {
            independent_parts(&self.fills(), self.cash.len() / 2, self.held.len() / 2, 8)
        }
    }

    #[test]
    fn fills_in_parallel_write_what_fills_in_order_do() {
        for seed in 1..20 {
            let case = Case::new(3000, seed);
            assert!(case.parts().is_some_and(|parts| parts.len() == 8), "the fills go in parallel");
            let (in_order, parallel) = (case.fill(true), case.fill(false));
            assert!(in_order.0.is_ok(), "seed {seed}: {:?}", in_order.0);
            assert_eq!(in_order, parallel, "seed {seed}");
            assert_ne!(in_order.1, case.cash);
        }
    }

    #[test]
    fn fills_that_do_not_cut_apart_are_filled_in_order() {
        let mut case = Case::new(3000, 7);
        // A slot's fills apart (its last fill moved to the end), then a row in two slots' runs.
        let last = case.slots.len() - 1;
        case.slots.swap(2, last);
        case.rows.swap(2, last);
        case.buy.swap(2, last);
        assert!(case.parts().is_none());
        assert_eq!(case.fill(true), case.fill(false));
        let mut case = Case::new(3000, 7);
        case.rows[case.slots.len() - 1] = 5;
        assert!(case.parts().is_none());
        assert_eq!(case.fill(true), case.fill(false));
        // An index out of range anywhere: the error of the fills in order.
        let mut case = Case::new(3000, 7);
        case.slots[2000] = 3000;
        assert!(case.parts().is_none());
        let (done, cash, held) = case.fill(false);
        assert_eq!(done.expect_err("out of range").field, "fills[2000]");
        assert_eq!((cash, held), (case.cash.clone(), case.held.clone()));
    }

    #[test]
    fn a_refusal_in_a_late_part_undoes_every_part() {
        let case = Case::new(3000, 3);
        let n = case.slots.len();
        let too_much = split(i128::from(u64::MAX) << 20);
        for refused in [vec![n - 1], vec![n - 2, 5], vec![n / 2 + 1, n - 3, 2 * n / 3]] {
            let mut case = Case::new(3000, 3);
            for &k in &refused {
                // A buy of more than the cash (or a sell of more than is held); a bad price for the last.
                case.amount[2 * k..2 * k + 2].copy_from_slice(&too_much);
            }
            case.price[*refused.last().expect("one")] = f64::NAN;
            assert!(case.parts().is_some());
            let (in_order, parallel) = (case.fill(true), case.fill(false));
            let first = refused.iter().min().expect("one");
            assert!(in_order.0.as_ref().is_err_and(|e| e.field.starts_with(&format!("fills[{first}]"))), "{:?}", in_order.0);
            assert_eq!(in_order, parallel);
            assert_eq!((parallel.1, parallel.2), (case.cash.clone(), case.held.clone()), "nothing written");
        }
    }

    #[test]
    fn the_float_copies_are_those_of_the_words_written() {
        let case = Case::new(3000, 11);
        let (words, cash, held) = case.fill(true);
        let (costs, fees) = words.expect("fills");
        let floats = |words: &[i64]| (0..words.len() / 2).map(|i| Amount::from_atoms(words_at(words, i)).to_f64()).collect::<Vec<f64>>();
        // What the binding wrote after the fills in order: the copies of each fill's slot and row.
        let (mut cash_floats, mut amount_floats) = (vec![-1.0; case.cash.len() / 2], vec![-1.0; case.held.len() / 2]);
        for (&slot, &row) in case.slots.iter().zip(&case.rows) {
            cash_floats[slot as usize] = floats(&cash)[slot as usize];
            amount_floats[row as usize] = floats(&held)[row as usize];
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a pool");
        for inline in [true, false] {
            let (mut c, mut h) = (case.cash.clone(), case.held.clone());
            let (mut cf, mut af) = (vec![-1.0; c.len() / 2], vec![-1.0; h.len() / 2]);
            let fill = || fill_in_full_with_floats_on(&mut c, &mut h, FloatCopies { cash: &mut cf, amounts: &mut af }, &case.fills(), inline);
            let (cost_floats, fee_floats) = pool.install(fill).expect("fills");
            assert_eq!((&c, &h), (&cash, &held));
            let bits = |x: &[f64]| x.iter().map(|f| f.to_bits()).collect::<Vec<u64>>();
            assert_eq!((bits(&cost_floats), bits(&fee_floats)), (bits(&floats(&costs)), bits(&floats(&fees))));
            assert_eq!((bits(&cf), bits(&af)), (bits(&cash_floats), bits(&amount_floats)));
        }
        // A refusal writes no copy; copies of the wrong length are refused first.
        let mut case = Case::new(3000, 11);
        case.price[2900] = -1.0;
        let (mut cf, mut af) = (vec![-1.0; case.cash.len() / 2], vec![-1.0; case.held.len() / 2]);
        let (mut c, mut h) = (case.cash.clone(), case.held.clone());
        assert!(case.parts().is_some());
        for inline in [true, false] {
            let refused = pool.install(|| fill_in_full_with_floats_on(&mut c, &mut h, FloatCopies { cash: &mut cf, amounts: &mut af }, &case.fills(), inline));
            assert_eq!(refused.expect_err("a bad price").field, "fills[2900].price");
            assert!(cf.iter().chain(&af).all(|&x| x == -1.0) && (&c, &h) == (&case.cash, &case.held));
        }
        let short = fill_in_full_with_floats(&mut c, &mut h, FloatCopies { cash: &mut [], amounts: &mut af }, &case.fills());
        assert_eq!(short.expect_err("no copies").field, "cash_float");
    }
}
