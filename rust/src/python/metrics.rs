//! A backtest's metrics stream (see `crate::metrics`): the series are
//! float64 numpy arrays, the running ones written in place.

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::python::book::{not_writable, slice};
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
