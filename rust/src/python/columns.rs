//! One-pass reductions over the Engine's per-portfolio columns, for its
//! policies (auto-invest's next cycle, the exit and drawdown levels
//! reached): numpy needs several passes and temporaries for each.

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;

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
    let (least, any) = values
        .iter()
        .zip(mask)
        .fold((i64::MAX, false), |(least, any), (&v, &on)| (if on { least.min(v) } else { least }, any | on));
    Ok(any.then_some(least))
}

/// The positions where `mask` is set and `value` has reached a level: at or
/// above `up`, or at or below `down` (either may be left out; a NaN level is
/// never reached), in order. One pass, where numpy's comparisons, their
/// `|` and `&` and `flatnonzero` are five (a million values with a few
/// thousand reached: 3.1 ms against 2.2, the columns' reading most of it).
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
    let nan = std::iter::repeat(f64::NAN);
    let positions = py.detach(|| match (up, down) {
        (Some(up), Some(down)) => reached_in(value, mask, up.iter().copied(), down.iter().copied()),
        (Some(up), None) => reached_in(value, mask, up.iter().copied(), nan),
        (None, Some(down)) => reached_in(value, mask, nan, down.iter().copied()),
        (None, None) => vec![],
    });
    Ok(PyArray1::from_vec(py, positions))
}

/// [`reached`]'s pass. Few positions are kept (a tick's exits and
/// auto-invest cycles), so the branch on each is well predicted, and the
/// positions' column is not made (and zero-filled) for every value.
fn reached_in(value: &[f64], mask: &[bool], up: impl Iterator<Item = f64>, down: impl Iterator<Item = f64>) -> Vec<i64> {
    let mut positions = Vec::new();
    for (i, (((&v, &on), up), down)) in value.iter().zip(mask).zip(up).zip(down).enumerate() {
        if on & ((v >= up) | (v <= down)) {
            positions.push(i as i64);
        }
    }
    positions
}
