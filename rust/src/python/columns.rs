//! One-pass reductions over the Engine's per-portfolio columns, for its
//! policies (auto-invest's next cycle, the exit and drawdown levels
//! reached): numpy needs several passes and temporaries for each.

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;

use rayon::prelude::*;

use crate::batch::{Status, INLINE_PORTFOLIOS};
use crate::workers::{inline, PASS_BLOCK};
use crate::error::CoreError;
use crate::python::book::slice;
use crate::python::errors::IntoPyResult;

/// The smallest of `values` where `mask` is set (None where it is nowhere):
/// one pass, where numpy gathers the masked values first or runs a masked
/// loop (a million values: 6.8–10 ms against 0.8).
#[pyfunction]
pub fn earliest<'py>(py: Python<'py>, values: PyReadonlyArray1<'py, i64>, mask: PyReadonlyArray1<'py, bool>) -> PyResult<Option<i64>> {
    let (values, mask) = (slice(py, &values, "values")?, slice(py, &mask, "mask")?);
    if values.len() != mask.len() {
        let lengths = format!("{} values, {} in the mask", values.len(), mask.len());
        return Err(CoreError::config("mask", lengths, "one per value")).or_raise(py);
    }
    let least_of = |(values, mask): (&[i64], &[bool])| {
        values.iter().zip(mask).fold((i64::MAX, false), |(least, any), (&v, &on)| (if on { least.min(v) } else { least }, any | on))
    };
    let both = |a: (i64, bool), b: (i64, bool)| (a.0.min(b.0), a.1 | b.1);
    let (least, any) = py.detach(|| {
        if inline(values.len(), INLINE_PORTFOLIOS) {
            least_of((values, mask))
        } else {
            values.par_chunks(PASS_BLOCK).zip(mask.par_chunks(PASS_BLOCK)).map(least_of).reduce(|| (i64::MAX, false), both)
        }
    });
    Ok(any.then_some(least))
}

/// The positions where `mask` is set and `value` has reached a level: at or
/// above `up`, or at or below `down` (either may be left out; a NaN level is
/// never reached), in order. One pass, where numpy's comparisons, their
/// `|` and `&` and `flatnonzero` are five (a million values with a few
/// thousand reached: 3.1 ms against 2.1, the columns' reading most of it;
/// with 200,000 reached, a branch per position made it 4.8 ms).
#[pyfunction]
#[pyo3(signature = (value, mask, up=None, down=None))]
pub fn reached<'py>(
    py: Python<'py>,
    value: PyReadonlyArray1<'py, f64>,
    mask: PyReadonlyArray1<'py, bool>,
    up: Option<PyReadonlyArray1<'py, f64>>,
    down: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (value, mask) = (slice(py, &value, "value")?, slice(py, &mask, "mask")?);
    let up = up.as_ref().map(|up| slice(py, up, "up")).transpose()?;
    let down = down.as_ref().map(|down| slice(py, down, "down")).transpose()?;
    for (field, len) in [("mask", Some(mask.len())), ("up", up.map(<[f64]>::len)), ("down", down.map(<[f64]>::len))] {
        if len.is_some_and(|len| len != value.len()) {
            let lengths = format!("{} values, {}", value.len(), len.unwrap_or_default());
            return Err(CoreError::config(field, lengths, "one per value")).or_raise(py);
        }
    }
    let n = value.len();
    let positions = py.detach(|| match (up, down) {
        (Some(up), Some(down)) => set_positions(n, |i| mask[i] & ((value[i] >= up[i]) | (value[i] <= down[i]))),
        (Some(up), None) => set_positions(n, |i| mask[i] & (value[i] >= up[i])),
        (None, Some(down)) => set_positions(n, |i| mask[i] & (value[i] <= down[i])),
        (None, None) => vec![],
    });
    Ok(PyArray1::from_vec(py, positions))
}

/// Auto-invest's cycles due at `now_ms` (see `rebal.policies.auto_invest.due`),
/// in order: the portfolios whose `dca_state` is `on`, past `next_ms`, in
/// the stage `running`, free (`locked` unset), scanned and not about to
/// rebalance (their scan `status` is neither inactive nor rebalance), and
/// at or below their `level` (a NaN level is never reached). One pass over
/// the columns, where numpy's comparisons, masks and `reached` took seven
/// (a million portfolios: 7.3 ms against 3.0).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn cycles_due<'py>(
    py: Python<'py>,
    now_ms: i64,
    next_ms: PyReadonlyArray1<'py, i64>,
    dca_state: PyReadonlyArray1<'py, u8>,
    on: u8,
    stage: PyReadonlyArray1<'py, u8>,
    running: u8,
    status: PyReadonlyArray1<'py, u8>,
    locked: PyReadonlyArray1<'py, bool>,
    value: PyReadonlyArray1<'py, f64>,
    level: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (next_ms, dca_state, stage) = (slice(py, &next_ms, "next_ms")?, slice(py, &dca_state, "dca_state")?, slice(py, &stage, "stage")?);
    let (status, locked) = (slice(py, &status, "status")?, slice(py, &locked, "locked")?);
    let (value, level) = (slice(py, &value, "value")?, slice(py, &level, "level")?);
    let lengths = [("dca_state", dca_state.len()), ("stage", stage.len()), ("status", status.len()), ("locked", locked.len()), ("value", value.len()), ("level", level.len())];
    for (field, len) in lengths {
        if len != next_ms.len() {
            let lengths = format!("{} in next_ms, {len}", next_ms.len());
            return Err(CoreError::config(field, lengths, "one per portfolio")).or_raise(py);
        }
    }
    let (inactive, rebalance) = (Status::Inactive as u8, Status::Rebalance as u8);
    let due = |i: usize| {
        let waiting = (next_ms[i] <= now_ms) & (dca_state[i] == on) & (stage[i] == running) & !locked[i];
        let scanned = (status[i] != inactive) & (status[i] != rebalance);
        waiting & scanned & (value[i] <= level[i])
    };
    let slots = py.detach(|| set_positions(next_ms.len(), due));
    Ok(PyArray1::from_vec(py, slots))
}

/// The positions `0..n` where `test` holds, in order, for tests that rarely
/// hold; blocks of [`PASS_BLOCK`] in parallel for a large `n`.
fn set_positions(n: usize, test: impl Fn(usize) -> bool + Sync) -> Vec<i64> {
    if inline(n, INLINE_PORTFOLIOS) {
        return positions_in(0..n, &test);
    }
    let parts: Vec<Vec<i64>> =
        (0..n.div_ceil(PASS_BLOCK)).into_par_iter().map(|b| positions_in(b * PASS_BLOCK..n.min((b + 1) * PASS_BLOCK), &test)).collect();
    parts.concat()
}

/// [`set_positions`] over `range` (its start a multiple of 64): each block
/// of 64 is tested without a branch into a word of bits (no push or
/// mispredict per position), and only set bits are visited.
fn positions_in(range: std::ops::Range<usize>, test: &impl Fn(usize) -> bool) -> Vec<i64> {
    let (mut positions, n) = (Vec::new(), range.end);
    for start in range.step_by(64) {
        let mut bits = 0u64;
        for (j, i) in (start..n.min(start + 64)).enumerate() {
            bits |= u64::from(test(i)) << j;
        }
        while bits != 0 {
            positions.push((start + bits.trailing_zeros() as usize) as i64);
            bits &= bits - 1;
        }
    }
    positions
}
