//! The Book's columns in and out: `rebal.Book` (Python) owns them as numpy
//! arrays in a dict; these functions read them in place (zero copy), run the
//! core with the GIL released, and hand the results back as numpy arrays
//! that take over the Rust vectors (no copy either).

use numpy::ndarray::Dimension;
use numpy::{Ix1, Ix2, PyArray, PyArray1, PyArrayMethods, PyReadonlyArray, PyReadonlyArray1, PyReadwriteArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::batch::{self, LegColumns};
use crate::book::{amount_at, amount_words, BookRef, StateMut, StateRef};
use crate::error::CoreError;
use crate::market::Market;
use crate::python::convert::amount;
use crate::python::errors::{guarded, to_pyerr, IntoPyResult};
use crate::python::market::PyMarket;

/// A column of the dict by name, with the dtype and shape the Book gives it.
fn typed<'py, T: numpy::Element, D: Dimension>(
    py: Python<'py>,
    columns: &Bound<'py, PyDict>,
    name: &str,
) -> PyResult<Bound<'py, PyArray<T, D>>> {
    let missing = || to_pyerr(py, CoreError::config(name, "missing", "the Book has no such column"));
    let array = columns.get_item(name)?.ok_or_else(missing)?;
    array.cast_into::<PyArray<T, D>>().map_err(|e| {
        let shown = e.into_inner().getattr("dtype").map_or("?".into(), |d| d.to_string());
        to_pyerr(py, CoreError::config(name, shown, "wrong dtype or shape"))
    })
}

pub(super) fn column<'py, T: numpy::Element, D: Dimension>(py: Python<'py>, columns: &Bound<'py, PyDict>, name: &str) -> PyResult<PyReadonlyArray<'py, T, D>> {
    Ok(typed::<T, D>(py, columns, name)?.readonly())
}

fn column_mut<'py, T: numpy::Element>(py: Python<'py>, columns: &Bound<'py, PyDict>, name: &str) -> PyResult<PyReadwriteArray1<'py, T>> {
    Ok(typed::<T, Ix1>(py, columns, name)?.readwrite())
}

pub(super) fn slice<'a, T: numpy::Element, D: Dimension>(py: Python<'_>, array: &'a PyReadonlyArray<'_, T, D>, name: &str) -> PyResult<&'a [T]> {
    array.as_slice().map_err(|_| to_pyerr(py, CoreError::config(name, "strided", "column must be contiguous")))
}

/// The read-only columns of a Book dict, borrowed for the duration of a call.
pub(super) struct Columns<'py> {
    id: PyReadonlyArray1<'py, u64>,
    start: PyReadonlyArray1<'py, i64>,
    stop: PyReadonlyArray1<'py, i64>,
    cash: PyReadonlyArray<'py, i64, Ix2>,
    cash_float: PyReadonlyArray1<'py, f64>,
    cash_target: PyReadonlyArray1<'py, f64>,
    active: PyReadonlyArray1<'py, bool>,
    trigger: PyReadonlyArray1<'py, u8>,
    threshold_kind: PyReadonlyArray1<'py, u8>,
    threshold: PyReadonlyArray1<'py, f64>,
    interval_ms: PyReadonlyArray1<'py, i64>,
    cooldown_ms: PyReadonlyArray1<'py, i64>,
    destination: PyReadonlyArray1<'py, u8>,
    inner_k: PyReadonlyArray1<'py, f64>,
    fee_rate: PyReadonlyArray1<'py, f64>,
    asset: PyReadonlyArray1<'py, i32>,
    amount: PyReadonlyArray<'py, i64, Ix2>,
    amount_float: PyReadonlyArray1<'py, f64>,
    target: PyReadonlyArray1<'py, f64>,
}

impl<'py> Columns<'py> {
    /// Exact columns (cash, amount) are (n, 2) int64, read flat as words.
    pub(super) fn read(py: Python<'py>, c: &Bound<'py, PyDict>) -> PyResult<Self> {
        Ok(Columns {
            id: column::<_, Ix1>(py, c, "id")?,
            start: column::<_, Ix1>(py, c, "start")?,
            stop: column::<_, Ix1>(py, c, "stop")?,
            cash: column::<_, Ix2>(py, c, "cash")?,
            cash_float: column::<_, Ix1>(py, c, "cash_float")?,
            cash_target: column::<_, Ix1>(py, c, "cash_target")?,
            active: column::<_, Ix1>(py, c, "active")?,
            trigger: column::<_, Ix1>(py, c, "trigger")?,
            threshold_kind: column::<_, Ix1>(py, c, "threshold_kind")?,
            threshold: column::<_, Ix1>(py, c, "threshold")?,
            interval_ms: column::<_, Ix1>(py, c, "interval_ms")?,
            cooldown_ms: column::<_, Ix1>(py, c, "cooldown_ms")?,
            destination: column::<_, Ix1>(py, c, "destination")?,
            inner_k: column::<_, Ix1>(py, c, "inner_k")?,
            fee_rate: column::<_, Ix1>(py, c, "fee_rate")?,
            asset: column::<_, Ix1>(py, c, "asset")?,
            amount: column::<_, Ix2>(py, c, "amount")?,
            amount_float: column::<_, Ix1>(py, c, "amount_float")?,
            target: column::<_, Ix1>(py, c, "target")?,
        })
    }

    pub(super) fn book(&self, py: Python<'_>) -> PyResult<BookRef<'_>> {
        Ok(BookRef {
            id: slice(py, &self.id, "id")?,
            start: slice(py, &self.start, "start")?,
            stop: slice(py, &self.stop, "stop")?,
            cash: slice(py, &self.cash, "cash")?,
            cash_float: slice(py, &self.cash_float, "cash_float")?,
            cash_target: slice(py, &self.cash_target, "cash_target")?,
            active: slice(py, &self.active, "active")?,
            trigger: slice(py, &self.trigger, "trigger")?,
            threshold_kind: slice(py, &self.threshold_kind, "threshold_kind")?,
            threshold: slice(py, &self.threshold, "threshold")?,
            interval_ms: slice(py, &self.interval_ms, "interval_ms")?,
            cooldown_ms: slice(py, &self.cooldown_ms, "cooldown_ms")?,
            destination: slice(py, &self.destination, "destination")?,
            inner_k: slice(py, &self.inner_k, "inner_k")?,
            fee_rate: slice(py, &self.fee_rate, "fee_rate")?,
            asset: slice(py, &self.asset, "asset")?,
            amount: slice(py, &self.amount, "amount")?,
            amount_float: slice(py, &self.amount_float, "amount_float")?,
            target: slice(py, &self.target, "target")?,
        })
    }
}

pub(super) fn markets(markets: &[PyRef<'_, PyMarket>]) -> Vec<Market> {
    markets.iter().map(|m| m.inner.clone()).collect()
}

/// Checks a Book's columns (all of them, in parallel) against `markets`.
#[pyfunction]
pub fn validate_book(py: Python<'_>, columns: &Bound<'_, PyDict>, markets: Vec<PyRef<'_, PyMarket>>) -> PyResult<()> {
    let markets = self::markets(&markets);
    let columns = Columns::read(py, columns)?;
    let book = columns.book(py)?;
    py.detach(|| guarded(|| book.validate(&markets)))?.or_raise(py)
}

/// One tick over a Book dict: returns a dict of numpy columns (see `rebal.OrderBatch`).
#[pyfunction]
#[pyo3(signature = (columns, markets, prices, now_ms, commit=true))]
pub fn tick<'py>(
    py: Python<'py>,
    columns: &Bound<'py, PyDict>,
    markets: Vec<PyRef<'py, PyMarket>>,
    prices: PyReadonlyArray1<'py, f64>,
    now_ms: i64,
    commit: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let markets = self::markets(&markets);
    let read = Columns::read(py, columns)?;
    let book = read.book(py)?;
    let prices = slice(py, &prices, "prices")?;
    let mut cells = StateColumns::borrow(py, columns)?;
    let state = cells.state(py)?;
    let batch = py.detach(|| guarded(|| batch::tick(&book, state, &markets, prices, now_ms, commit)))?.or_raise(py)?;
    let out = per_portfolio(py, batch.portfolios)?;
    out.set_item("orders", legs(py, batch.orders)?)?;
    out.set_item("skipped", legs(py, batch.skips)?)?;
    Ok(out)
}

/// The first half of a tick (see `batch::scan`): value, deviations and
/// status per portfolio; nothing planned, nothing changed.
#[pyfunction]
pub fn scan<'py>(
    py: Python<'py>,
    columns: &Bound<'py, PyDict>,
    markets: Vec<PyRef<'py, PyMarket>>,
    prices: PyReadonlyArray1<'py, f64>,
    now_ms: i64,
) -> PyResult<Bound<'py, PyDict>> {
    let markets = self::markets(&markets);
    let read = Columns::read(py, columns)?;
    let book = read.book(py)?;
    let prices = slice(py, &prices, "prices")?;
    let last = column::<i64, Ix1>(py, columns, "last_rebalance_ms")?;
    let next = column::<i64, Ix1>(py, columns, "next_check_ms")?;
    let locked = column::<bool, Ix1>(py, columns, "locked")?;
    let state = StateRef {
        last_rebalance_ms: slice(py, &last, "last_rebalance_ms")?,
        next_check_ms: slice(py, &next, "next_check_ms")?,
        locked: slice(py, &locked, "locked")?,
    };
    let found = py.detach(|| guarded(|| batch::scan(&book, state, &markets, prices, now_ms)))?.or_raise(py)?;
    per_portfolio(py, found)
}

/// The second half of a tick (see `batch::plan`): carries out each
/// portfolio's action (0 none, 1 rebalance, 2 invest, 3 exit), updating
/// `status` in place; returns {"orders": ..., "skipped": ...}.
#[pyfunction]
#[pyo3(signature = (columns, markets, prices, now_ms, action, status, commit=true))]
#[allow(clippy::too_many_arguments)]
pub fn plan<'py>(
    py: Python<'py>,
    columns: &Bound<'py, PyDict>,
    markets: Vec<PyRef<'py, PyMarket>>,
    prices: PyReadonlyArray1<'py, f64>,
    now_ms: i64,
    action: PyReadonlyArray1<'py, u8>,
    status: &Bound<'py, PyArray1<u8>>,
    commit: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let markets = self::markets(&markets);
    let read = Columns::read(py, columns)?;
    let book = read.book(py)?;
    let prices = slice(py, &prices, "prices")?;
    let action = slice(py, &action, "action")?;
    let mut status = status.try_readwrite().map_err(|_| not_writable(py, "status"))?;
    let status = status.as_slice_mut().map_err(|_| not_writable(py, "status"))?;
    let mut cells = StateColumns::borrow(py, columns)?;
    let state = cells.state(py)?;
    let (orders, skips) =
        py.detach(|| guarded(|| batch::plan(&book, state, &markets, prices, now_ms, commit, action, status)))?.or_raise(py)?;
    let out = PyDict::new(py);
    out.set_item("orders", legs(py, orders)?)?;
    out.set_item("skipped", legs(py, skips)?)?;
    Ok(out)
}

/// The state columns a plan writes, borrowed writable for one call.
struct StateColumns<'py> {
    last: PyReadwriteArray1<'py, i64>,
    next: PyReadwriteArray1<'py, i64>,
    locked: PyReadwriteArray1<'py, bool>,
    epoch: PyReadwriteArray1<'py, u32>,
}

impl<'py> StateColumns<'py> {
    fn borrow(py: Python<'py>, columns: &Bound<'py, PyDict>) -> PyResult<Self> {
        Ok(StateColumns {
            last: column_mut(py, columns, "last_rebalance_ms")?,
            next: column_mut(py, columns, "next_check_ms")?,
            locked: column_mut(py, columns, "locked")?,
            epoch: column_mut(py, columns, "epoch")?,
        })
    }

    fn state(&mut self, py: Python<'_>) -> PyResult<StateMut<'_>> {
        Ok(StateMut {
            last_rebalance_ms: self.last.as_slice_mut().map_err(|_| not_writable(py, "last_rebalance_ms"))?,
            next_check_ms: self.next.as_slice_mut().map_err(|_| not_writable(py, "next_check_ms"))?,
            locked: self.locked.as_slice_mut().map_err(|_| not_writable(py, "locked"))?,
            epoch: self.epoch.as_slice_mut().map_err(|_| not_writable(py, "epoch"))?,
        })
    }
}

pub(super) fn not_writable(py: Python<'_>, name: &str) -> PyErr {
    to_pyerr(py, CoreError::config(name, "strided or read-only", "column must be contiguous and writable"))
}

/// The per-portfolio columns of a tick or a scan, as a dict of numpy arrays.
fn per_portfolio(py: Python<'_>, found: batch::Scanned) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("value", PyArray1::from_vec(py, found.value))?;
    out.set_item("max_deviation", PyArray1::from_vec(py, found.max_deviation))?;
    out.set_item("max_relative_deviation", PyArray1::from_vec(py, found.max_relative_deviation))?;
    out.set_item("status", PyArray1::from_vec(py, found.status))?;
    Ok(out)
}

pub(super) fn legs(py: Python<'_>, legs: LegColumns) -> PyResult<Bound<'_, PyDict>> {
    let n = legs.len();
    let out = PyDict::new(py);
    out.set_item("portfolio", PyArray1::from_vec(py, legs.portfolio))?;
    out.set_item("portfolio_id", PyArray1::from_vec(py, legs.portfolio_id))?;
    out.set_item("leg", PyArray1::from_vec(py, legs.leg))?;
    out.set_item("asset", PyArray1::from_vec(py, legs.asset))?;
    out.set_item("side", PyArray1::from_vec(py, legs.side))?;
    out.set_item("lots", PyArray1::from_vec(py, legs.lots))?;
    out.set_item("amount", PyArray1::from_vec(py, legs.amount).reshape([n, 2])?)?;
    out.set_item("price", PyArray1::from_vec(py, legs.price))?;
    out.set_item("notional", PyArray1::from_vec(py, legs.notional))?;
    out.set_item("fee", PyArray1::from_vec(py, legs.fee))?;
    out.set_item("epoch", PyArray1::from_vec(py, legs.epoch))?;
    out.set_item("purpose", PyArray1::from_vec(py, legs.purpose))?;
    Ok(out)
}

/// Exact amounts from Python values (str, int, Decimal, float by shortest
/// repr) or a float64 array, as an (n, 2) int64 array of words.
#[pyfunction]
pub fn amount_words_of<'py>(py: Python<'py>, values: &Bound<'py, PyAny>, field: &str) -> PyResult<Bound<'py, PyAny>> {
    let mut words = Vec::new();
    if let Ok(floats) = values.extract::<PyReadonlyArray1<'py, f64>>() {
        let floats = floats.as_array();
        let converted = py.detach(|| {
            guarded(|| {
                let mut words = Vec::with_capacity(2 * floats.len());
                for (i, &x) in floats.iter().enumerate() {
                    let bad = |reason: String| CoreError::amount(format!("{field}[{i}]"), x, reason);
                    if !x.is_finite() {
                        return Err(bad("amount must be finite".into()));
                    }
                    let a = crate::lots::Amount::from_f64(x).map_err(|e| bad(e.to_string()))?;
                    words.extend(amount_words(a));
                }
                Ok(words)
            })
        })?;
        words = converted.or_raise(py)?;
    } else {
        for (i, value) in values.try_iter()?.enumerate() {
            words.extend(amount_words(amount(py, &value?, &format!("{field}[{i}]"))?));
        }
    }
    let n = words.len() / 2;
    Ok(PyArray1::from_vec(py, words).reshape([n, 2])?.into_any())
}

/// The floats the valuation uses for an (n, 2) int64 word array (`Amount::to_f64`).
#[pyfunction]
pub fn amount_floats<'py>(py: Python<'py>, words: PyReadonlyArray<'py, i64, Ix2>) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let words = slice(py, &words, "amount")?;
    Ok(PyArray1::from_vec(py, (0..words.len() / 2).map(|i| amount_at(words, i).to_f64()).collect()))
}

/// Exact decimal strings of an (n, 2) int64 word array, as one bytes buffer
/// of fixed-width fields (for `numpy.frombuffer(..., dtype=f"S{width}")`).
#[pyfunction]
pub fn amount_strings<'py>(py: Python<'py>, words: PyReadonlyArray<'py, i64, Ix2>) -> PyResult<(Bound<'py, PyBytes>, usize)> {
    let words = slice(py, &words, "amount")?;
    let texts: Vec<String> = (0..words.len() / 2).map(|i| amount_at(words, i).to_string()).collect();
    Ok(fixed_width(py, &texts))
}

/// Client order ids rb{id}-{epoch}-{leg}, as fixed-width bytes (see `amount_strings`).
#[pyfunction]
pub fn client_order_ids<'py>(
    py: Python<'py>,
    ids: PyReadonlyArray1<'py, u64>,
    epochs: PyReadonlyArray1<'py, u32>,
    legs: PyReadonlyArray1<'py, u8>,
) -> PyResult<(Bound<'py, PyBytes>, usize)> {
    let (ids, epochs, legs) = (ids.as_array(), epochs.as_array(), legs.as_array());
    if ids.len() != epochs.len() || ids.len() != legs.len() {
        return Err(to_pyerr(py, CoreError::config("client_order_ids", ids.len(), "ids, epochs and legs differ in length")));
    }
    let texts: Vec<String> = (0..ids.len()).map(|i| crate::plan::client_order_id(ids[i], epochs[i], legs[i] as u32)).collect();
    Ok(fixed_width(py, &texts))
}

fn fixed_width<'py>(py: Python<'py>, texts: &[String]) -> (Bound<'py, PyBytes>, usize) {
    let width = texts.iter().map(String::len).max().unwrap_or(0).max(1);
    let mut buffer = vec![0u8; width * texts.len()];
    for (cell, text) in buffer.chunks_mut(width).zip(texts) {
        cell[..text.len()].copy_from_slice(text.as_bytes());
    }
    (PyBytes::new(py, &buffer), width)
}
