//! Running statistics of many value series, a tick at a time: the
//! arithmetic of a backtest's metrics stream (`rebal.backtest.metrics.Stream`)
//! between numpy's log and exp, one pass over the series each instead of a
//! numpy pass per operation. Every float is the one the numpy operations
//! give, in their order (+, −, ×, ÷ are exact IEEE operations, and max is
//! numpy's, NaN first); the log and the exp stay numpy's, whose last bits
//! Rust's would not match.

use rayon::prelude::*;

use crate::error::{CoreError, Result};

/// This tick's return factor of each series: `values / (last + inflow)`
/// where both are positive, else 1 (no return: its log is 0); `last` becomes
/// `values`. `inflow` (money added since the last tick, no return) is 0
/// when there is none.
pub fn return_factors(values: &[f64], last: &mut [f64], inflow: Option<&[f64]>) -> Result<Vec<f64>> {
    same_length("last", last.len(), values.len())?;
    if let Some(inflow) = inflow {
        same_length("inflow", inflow.len(), values.len())?;
    }
    let factors = values
        .iter()
        .zip(last.iter_mut())
        .enumerate()
        .map(|(i, (&value, last))| {
            let base = *last + inflow.map_or(0.0, |inflow| inflow[i]);
            *last = value;
            if base > 0.0 && value > 0.0 {
                value / base
            } else {
                1.0
            }
        })
        .collect();
    Ok(factors)
}

/// Adds this tick's log returns to `growth` (the time-weighted growth) and
/// their squares to `sum_sq`, raises `peak` to the growth, and writes over
/// each log return the log drawdown, growth − peak (≤ 0).
pub fn add_log_returns(log_returns: &mut [f64], growth: &mut [f64], sum_sq: &mut [f64], peak: &mut [f64]) -> Result<()> {
    let n = log_returns.len();
    same_length("growth", growth.len(), n)?;
    same_length("sum_sq", sum_sq.len(), n)?;
    same_length("peak", peak.len(), n)?;
    for (((r, growth), sum_sq), peak) in log_returns.iter_mut().zip(growth).zip(sum_sq).zip(peak) {
        *growth += *r;
        *sum_sq += *r * *r;
        *peak = maximum(*peak, *growth);
        *r = *growth - *peak;
    }
    Ok(())
}

/// Raises each `max_drawdown` to 1 − `drawdown_factor` (the exp of the log
/// drawdown: the value over its peak).
pub fn deepen_drawdowns(max_drawdown: &mut [f64], drawdown_factor: &[f64]) -> Result<()> {
    same_length("drawdown_factor", drawdown_factor.len(), max_drawdown.len())?;
    for (deepest, &factor) in max_drawdown.iter_mut().zip(drawdown_factor) {
        *deepest = maximum(*deepest, 1.0 - factor);
    }
    Ok(())
}

/// The max drawdown from the highest value so far, one tick on, for the
/// series in `mask` at `value`: a new high raises `peak` and sets `level`,
/// the value below which the drawdown deepens, to peak × (1 − max drawdown);
/// a value below `level` deepens `max_drawdown` to 1 − value / peak and
/// becomes the level. So a tick compares twice and works out only the new
/// highs and lows (a NaN value is neither).
pub fn track_drawdowns(value: &[f64], mask: &[bool], peak: &mut [f64], level: &mut [f64], max_drawdown: &mut [f64]) -> Result<()> {
    let n = value.len();
    same_length("mask", mask.len(), n)?;
    same_length("peak", peak.len(), n)?;
    same_length("level", level.len(), n)?;
    same_length("max_drawdown", max_drawdown.len(), n)?;
    // Each series on its own: blocks of a large book in parallel (a pass bound by memory).
    if crate::workers::inline(n, crate::batch::INLINE_PORTFOLIOS) {
        track_block(value, mask, peak, level, max_drawdown);
    } else {
        let block = crate::workers::PASS_BLOCK;
        value
            .par_chunks(block)
            .zip(mask.par_chunks(block))
            .zip(peak.par_chunks_mut(block))
            .zip(level.par_chunks_mut(block))
            .zip(max_drawdown.par_chunks_mut(block))
            .for_each(|((((value, mask), peak), level), deepest)| track_block(value, mask, peak, level, deepest));
    }
    Ok(())
}

/// [`track_drawdowns`] over one block of series (the columns of one length).
fn track_block(value: &[f64], mask: &[bool], peak: &mut [f64], level: &mut [f64], max_drawdown: &mut [f64]) {
    for ((((&value, &mask), peak), level), deepest) in value.iter().zip(mask).zip(peak).zip(level).zip(max_drawdown) {
        if mask && value > *peak {
            *peak = value;
            *level = value * (1.0 - *deepest);
        }
        if mask && value < *level {
            *deepest = 1.0 - value / *peak;
            *level = value;
        }
    }
}

/// `np.maximum`: the first if it is not smaller or is NaN, else the second
/// (so a NaN either side is the result; `f64::max` would drop it).
fn maximum(a: f64, b: f64) -> f64 {
    if a >= b || a.is_nan() {
        a
    } else {
        b
    }
}

fn same_length(field: &str, len: usize, n: usize) -> Result<()> {
    if len != n {
        return Err(CoreError::config(field, len, format!("one value per series ({n} series)")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpriced_series_return_nothing_and_last_moves_on() {
        let mut last = vec![100.0, 0.0, 50.0, f64::NAN];
        let factors = return_factors(&[110.0, 5.0, 0.0, 3.0], &mut last, Some(&[10.0, 0.0, 0.0, 0.0])).expect("factors");
        assert_eq!(factors, [1.0, 1.0, 1.0, 1.0], "110 / (100 + 10), then no price before, none now, NaN before");
        assert_eq!(last, [110.0, 5.0, 0.0, 3.0]);
        let factors = return_factors(&[121.0, 6.0, 1.0, 3.3], &mut last, None).expect("factors");
        assert_eq!(factors, [121.0 / 110.0, 6.0 / 5.0, 1.0, 3.3 / 3.0]);
        assert!(return_factors(&[1.0], &mut last, None).is_err());
    }

    #[test]
    fn growth_peak_and_drawdown_follow_the_log_returns() {
        let (mut growth, mut sum_sq, mut peak) = (vec![0.0, 0.5], vec![0.0, 0.1], vec![0.0, 0.7]);
        let mut r = vec![0.25, -0.5];
        add_log_returns(&mut r, &mut growth, &mut sum_sq, &mut peak).expect("add");
        assert_eq!((growth.clone(), sum_sq.clone(), peak.clone()), (vec![0.25, 0.0], vec![0.0625, 0.35], vec![0.25, 0.7]));
        assert_eq!(r, [0.0, -0.7], "growth − peak");
        let mut deepest = vec![0.1, 0.1, f64::NAN];
        deepen_drawdowns(&mut deepest, &[1.0, 0.5, 0.5]).expect("deepen");
        assert_eq!(deepest[..2], [0.1, 0.5]);
        assert!(deepest[2].is_nan(), "a NaN stays, as np.maximum keeps it");
        assert_eq!(maximum(1.0, f64::NAN).to_bits(), f64::NAN.to_bits());
    }

    #[test]
    fn drawdowns_follow_new_highs_and_new_lows() {
        // A new high, a fall below the level, a rise that is no high, a NaN, one left out.
        let value = [120.0, 80.0, 95.0, f64::NAN, 50.0];
        let mask = [true, true, true, true, false];
        let (mut peak, mut level, mut deepest) = (vec![100.0; 5], vec![90.0; 5], vec![0.1; 5]);
        track_drawdowns(&value, &mask, &mut peak, &mut level, &mut deepest).expect("track");
        assert_eq!(peak, [120.0, 100.0, 100.0, 100.0, 100.0]);
        assert_eq!(level, [120.0 * (1.0 - 0.1), 80.0, 90.0, 90.0, 90.0]);
        assert_eq!(deepest, [0.1, 1.0 - 80.0 / 100.0, 0.1, 0.1, 0.1]);
        assert!(track_drawdowns(&value, &mask[..4], &mut peak, &mut level, &mut deepest).is_err());
    }
}
