//! The hold benchmark: what each portfolio's buys would be worth had they
//! never been rebalanced — a fixed basket of coins (`width` columns per
//! portfolio, asset -1 for an unused column) plus cash, valued at a tick's
//! prices.
//!
//! The Engine valued it in numpy as `(amount * price[asset]).sum(axis=1) +
//! cash`; this gives the same floats bit for bit (a backtest's results must
//! not move by a rounding), by summing each row in numpy's pairwise order.

use rayon::prelude::*;

use crate::batch::{chunk_size, INLINE_PORTFOLIOS};
use crate::error::{CoreError, Result};

/// Value of the baskets of `slots` (row-major `asset` and `amount`, `width`
/// per slot) plus their `cash`, at `prices`. An unused column (asset -1) is
/// worth nothing; any other asset must have a price.
pub fn basket_values(asset: &[i32], amount: &[f64], cash: &[f64], width: usize, slots: &[usize], prices: &[f64]) -> Result<Vec<f64>> {
    let n = cash.len();
    if asset.len() != n * width || amount.len() != n * width {
        return Err(CoreError::config("hold_amount", amount.len(), format!("{width} values per portfolio ({n} portfolios)")));
    }
    if let Some(&slot) = slots.iter().find(|&&slot| slot >= n) {
        return Err(CoreError::config("slots", slot, format!("a slot below {n}")));
    }
    // Prices by asset + 1: an unused column (asset -1) reads the 0 in front.
    let priced: Vec<f64> = std::iter::once(0.0).chain(prices.iter().copied()).collect();
    let unpriced = |a: i32| CoreError::price("prices", prices.len(), format!("a price for every held asset (asset index {a})"));
    let value = |slots: &[usize]| -> Result<Vec<f64>> {
        let mut worth = vec![0.0; width];
        let mut values = Vec::with_capacity(slots.len());
        for &slot in slots {
            let row = slot * width..(slot + 1) * width;
            for ((w, &a), &held) in worth.iter_mut().zip(&asset[row.clone()]).zip(&amount[row]) {
                let price = usize::try_from(a + 1).ok().and_then(|i| priced.get(i)).ok_or_else(|| unpriced(a))?;
                *w = held * price;
            }
            values.push(numpy_sum(&worth) + cash[slot]);
        }
        Ok(values)
    };
    if crate::workers::inline(slots.len(), INLINE_PORTFOLIOS) {
        return value(slots);
    }
    // In chunks, in order: the first bad holding is the one named, as inline.
    let parts: Vec<Result<Vec<f64>>> = slots.par_chunks(chunk_size(slots.len())).map(value).collect();
    let mut values = Vec::with_capacity(slots.len());
    for part in parts {
        values.extend(part?);
    }
    Ok(values)
}

/// The sum numpy's `add.reduce` makes of a contiguous row: 0 + the pairwise
/// sum, eight partial sums at a time in blocks of up to 128, plainly below
/// eight (from 0, so the 0 in front changes nothing there).
#[inline]
fn numpy_sum(x: &[f64]) -> f64 {
    if x.len() < 8 {
        x.iter().fold(0.0, |sum, &v| sum + v)
    } else {
        0.0 + pairwise_sum(x)
    }
}

fn pairwise_sum(x: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = x.len();
    if n < 8 {
        x.iter().fold(-0.0, |sum, &v| sum + v)
    } else if n <= BLOCK {
        let mut r = [0.0; 8];
        r.copy_from_slice(&x[..8]);
        let whole = n - n % 8;
        for chunk in x[8..whole].chunks_exact(8) {
            for (r, &v) in r.iter_mut().zip(chunk) {
                *r += v;
            }
        }
        let sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        x[whole..].iter().fold(sum, |sum, &v| sum + v)
    } else {
        let half = n / 2;
        let half = half - half % 8;
        pairwise_sum(&x[..half]) + pairwise_sum(&x[half..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_basket_is_its_coins_at_the_prices_plus_its_cash() {
        // Two portfolios of width 3: BTC and ETH, then ETH alone (two unused columns).
        let asset = [0, 1, -1, 1, -1, -1];
        let amount = [0.5, 2.0, 0.0, 1.0, 0.0, 0.0];
        let values = basket_values(&asset, &amount, &[10.0, 0.0], 3, &[1, 0], &[100.0, 20.0]).expect("values");
        assert_eq!(values, vec![20.0, 0.5 * 100.0 + 2.0 * 20.0 + 10.0]);
    }

    #[test]
    fn an_asset_without_a_price_is_refused() {
        assert!(basket_values(&[2], &[1.0], &[0.0], 1, &[0], &[1.0, 2.0]).is_err_and(|e| e.to_string().contains("asset index 2")));
        // The first unpriced holding in slot order is named, a bad index below -1 too.
        let named = |asset: &[i32], slots: &[usize]| basket_values(asset, &[1.0; 4], &[0.0; 2], 2, slots, &[1.0]).expect_err("unpriced").to_string();
        assert!(named(&[0, 5, -2, 0], &[1, 0]).contains("asset index -2"));
        assert!(named(&[0, 5, -2, 0], &[0, 1]).contains("asset index 5"));
        assert!(basket_values(&[0], &[1.0], &[0.0], 1, &[1], &[1.0]).is_err());
    }

    #[test]
    fn a_large_book_is_valued_in_parallel_as_one_by_one() {
        // Enough slots for the pool; the bad asset sits in a late chunk, and
        // the error names the first bad holding, as valuing in order does.
        let (n, width) = (100_000, 3);
        let asset: Vec<i32> = (0..n * width).map(|k| if k % 7 == 0 { -1 } else { (k % 5) as i32 }).collect();
        let amount: Vec<f64> = (0..n * width).map(|k| k as f64 * 0.37).collect();
        let cash: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let slots: Vec<usize> = (0..n).rev().collect();
        let prices = [3.0, 0.5, 7.25, 1e-3, 42.0];
        let all = basket_values(&asset, &amount, &cash, width, &slots, &prices).expect("values");
        for (&slot, &value) in slots.iter().zip(&all) {
            let one = basket_values(&asset, &amount, &cash, width, &[slot], &prices).expect("value");
            assert_eq!(one[0].to_bits(), value.to_bits());
        }
        let mut bad = asset.clone();
        (bad[width * 10], bad[width * (n - 10)]) = (9, 8);
        let first = basket_values(&bad, &amount, &cash, width, &slots, &prices).expect_err("no price").to_string();
        assert!(first.contains("asset index 8"), "{first}");
    }

    #[test]
    fn sums_in_numpy_order() {
        // 1e16 and nineteen ones: added one by one, each 1 is lost against 1e16
        // (a tie, rounded to even); numpy's seven other lanes keep theirs
        // (`numpy.ones(20)` with 1e16 first sums to 1.0000000000000016e16).
        let mut x = vec![1.0; 20];
        x[0] = 1e16;
        assert_eq!(x.iter().fold(0.0, |s, &v| s + v), 1e16);
        assert_eq!(numpy_sum(&x), 1.0000000000000016e16);
    }
}
