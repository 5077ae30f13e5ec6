//! A backtest's metrics stream (see `crate::metrics`): the series are
//! float64 numpy arrays, the running ones written in place.

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::python::book::{not_writable, slice};
use crate::error::CoreError;
use crate::python::errors::{guarded, IntoPyResult};

/// This tick's return factors, `values / (last + inflow)` where both are
/// positive, else 1; `last` (written in place) becomes `values`.
#[pyfunction]
#[pyo3(signature = (values, last, inflow=None))]
pub fn return_factors<'py>(
    py: Python<'py>,
    values: PyReadonlyArray1<'py, f64>,
    last: &Bound<'py, PyArray1<f64>>,
    inflow: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let mut last = last.try_readwrite().map_err(|_| not_writable(py, "last"))?;
    let last = last.as_slice_mut().map_err(|_| not_writable(py, "last"))?;
    let values = slice(py, &values, "values")?;
    let inflow = match &inflow {
        Some(inflow) => Some(slice(py, inflow, "inflow")?),
        None => None,
    };
    let factors = py.detach(|| guarded(|| crate::metrics::return_factors(values, last, inflow)))?.or_raise(py)?;
    Ok(PyArray1::from_vec(py, factors))
}

/// Adds the log returns to `growth` and their squares to `sum_sq`, raises
/// `peak`, and writes growth − peak over `log_returns` (all in place).
#[pyfunction]
pub fn add_log_returns<'py>(
    py: Python<'py>,
    log_returns: &Bound<'py, PyArray1<f64>>,
    growth: &Bound<'py, PyArray1<f64>>,
    sum_sq: &Bound<'py, PyArray1<f64>>,
    peak: &Bound<'py, PyArray1<f64>>,
) -> PyResult<()> {
    let mut r = log_returns.try_readwrite().map_err(|_| not_writable(py, "log_returns"))?;
    let mut g = growth.try_readwrite().map_err(|_| not_writable(py, "growth"))?;
    let mut s = sum_sq.try_readwrite().map_err(|_| not_writable(py, "sum_sq"))?;
    let mut p = peak.try_readwrite().map_err(|_| not_writable(py, "peak"))?;
    let r = r.as_slice_mut().map_err(|_| not_writable(py, "log_returns"))?;
    let g = g.as_slice_mut().map_err(|_| not_writable(py, "growth"))?;
    let s = s.as_slice_mut().map_err(|_| not_writable(py, "sum_sq"))?;
    let p = p.as_slice_mut().map_err(|_| not_writable(py, "peak"))?;
    py.detach(|| guarded(|| crate::metrics::add_log_returns(r, g, s, p)))?.or_raise(py)
}

/// Raises `max_drawdown` (in place) to 1 − `drawdown_factor`.
#[pyfunction]
pub fn deepen_drawdowns<'py>(py: Python<'py>, max_drawdown: &Bound<'py, PyArray1<f64>>, drawdown_factor: PyReadonlyArray1<'py, f64>) -> PyResult<()> {
    let mut deepest = max_drawdown.try_readwrite().map_err(|_| not_writable(py, "max_drawdown"))?;
    let deepest = deepest.as_slice_mut().map_err(|_| not_writable(py, "max_drawdown"))?;
    let factor = slice(py, &drawdown_factor, "drawdown_factor")?;
    py.detach(|| guarded(|| crate::metrics::deepen_drawdowns(deepest, factor)))?.or_raise(py)
}

/// One tick of each series' max drawdown (see `crate::metrics::track_drawdowns`):
/// `peak`, `level` and `max_drawdown` are written in place.
#[pyfunction]
pub fn track_drawdowns<'py>(
    py: Python<'py>,
    value: PyReadonlyArray1<'py, f64>,
    mask: PyReadonlyArray1<'py, bool>,
    peak: &Bound<'py, PyArray1<f64>>,
    level: &Bound<'py, PyArray1<f64>>,
    max_drawdown: &Bound<'py, PyArray1<f64>>,
) -> PyResult<()> {
    let mut p = peak.try_readwrite().map_err(|_| not_writable(py, "peak"))?;
    let mut l = level.try_readwrite().map_err(|_| not_writable(py, "level"))?;
    let mut d = max_drawdown.try_readwrite().map_err(|_| not_writable(py, "max_drawdown"))?;
    let p = p.as_slice_mut().map_err(|_| not_writable(py, "peak"))?;
    let l = l.as_slice_mut().map_err(|_| not_writable(py, "level"))?;
    let d = d.as_slice_mut().map_err(|_| not_writable(py, "max_drawdown"))?;
    let (value, mask) = (slice(py, &value, "value")?, slice(py, &mask, "mask")?);
    py.detach(|| guarded(|| crate::metrics::track_drawdowns(value, mask, p, l, d)))?.or_raise(py)
}

/// The smallest of `values` where `mask` is set (None where it is nowhere):
/// one branch-free pass, where numpy gathers the masked values first or
/// runs a masked loop (7–10 ms for a million against ~0.5).
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
/// `|` and `&` and `flatnonzero` are five (3 ms for a million).
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
