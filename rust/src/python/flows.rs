//! Money in and out over a Book dict (see `crate::flows`): `invest`,
//! `exit`, `values` and `add_amounts`. Columns are read in place as in
//! `tick`; the work runs with the GIL released.

use numpy::{Ix1, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::CoreError;
use crate::flows::{self, Flow};
use crate::python::book::{column, legs, markets, slice, Columns};
use crate::python::errors::{guarded, to_pyerr, IntoPyResult};
use crate::python::market::PyMarket;

/// Buys that invest the free cash of the portfolios at `slots` into their
/// underweight assets: `{"orders": {...}, "skipped": {...}}` as in `tick`.
#[pyfunction]
pub fn invest<'py>(
    py: Python<'py>,
    columns: &Bound<'py, PyDict>,
    markets: Vec<PyRef<'py, PyMarket>>,
    prices: PyReadonlyArray1<'py, f64>,
    slots: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyDict>> {
    flow(py, columns, &markets, &prices, &slots, Flow::Invest)
}

/// Sells of every holding of the portfolios at `slots` (exit mode "sell"):
/// `{"orders": {...}, "skipped": {...}}` as in `tick`.
#[pyfunction]
pub fn exit<'py>(
    py: Python<'py>,
    columns: &Bound<'py, PyDict>,
    markets: Vec<PyRef<'py, PyMarket>>,
    prices: PyReadonlyArray1<'py, f64>,
    slots: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyDict>> {
    flow(py, columns, &markets, &prices, &slots, Flow::Exit)
}

fn flow<'py>(
    py: Python<'py>,
    columns: &Bound<'py, PyDict>,
    markets: &[PyRef<'py, PyMarket>],
    prices: &PyReadonlyArray1<'py, f64>,
    slots: &PyReadonlyArray1<'py, i64>,
    flow: Flow,
) -> PyResult<Bound<'py, PyDict>> {
    let markets = self::markets(markets);
    let read = Columns::read(py, columns)?;
    let book = read.book(py)?;
    let prices = slice(py, prices, "prices")?;
    let slots = slice(py, slots, "slots")?;
    let epoch_column = column::<u32, Ix1>(py, columns, "epoch")?;
    let epoch = slice(py, &epoch_column, "epoch")?;
    if epoch.len() != book.len() {
        let e = CoreError::config("epoch", epoch.len(), format!("one value per portfolio ({} portfolios)", book.len()));
        return Err(to_pyerr(py, e));
    }
    let (orders, skips) = py
        .detach(|| {
            guarded(|| {
                let slots = flows::check_slots(&book, slots)?;
                let quotes = flows::quotes(&book, &slots, &markets, prices, flow)?;
                Ok(match flow {
                    Flow::Invest => flows::invest(&book, &slots, &quotes, epoch),
                    Flow::Exit => flows::exit(&book, &slots, &quotes, epoch),
                })
            })
        })?
        .or_raise(py)?;
    let out = PyDict::new(py);
    out.set_item("orders", legs(py, orders)?)?;
    out.set_item("skipped", legs(py, skips)?)?;
    Ok(out)
}

/// Refuses (naming the asset) a price that new-money buys at `invest` or
/// exit sells at `exit` would need, before a host changes anything.
#[pyfunction]
pub fn check_prices<'py>(
    py: Python<'py>,
    columns: &Bound<'py, PyDict>,
    markets: Vec<PyRef<'py, PyMarket>>,
    prices: PyReadonlyArray1<'py, f64>,
    invest: PyReadonlyArray1<'py, i64>,
    exit: PyReadonlyArray1<'py, i64>,
) -> PyResult<()> {
    let markets = self::markets(&markets);
    let read = Columns::read(py, columns)?;
    let book = read.book(py)?;
    let prices = slice(py, &prices, "prices")?;
    let (invest, exit) = (slice(py, &invest, "slots")?, slice(py, &exit, "slots")?);
    py.detach(|| {
        guarded(|| {
            for (slots, flow) in [(invest, Flow::Invest), (exit, Flow::Exit)] {
                flows::quotes(&book, &flows::check_slots(&book, slots)?, &markets, prices, flow)?;
            }
            Ok(())
        })
    })?
    .or_raise(py)
}

/// Orders filled in full at `price` with `fee_rate` (see `crate::fills`):
/// writes the new cash ((n, 2) words by slot) and holdings ((m, 2) words by
/// row) in place, all or nothing, and their float copies (`cash_float`,
/// `amount_float`: `Amount::to_f64`, as `amount_floats`); returns each
/// fill's cost and fee as those floats (what the accounting adds up).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn fill_in_full<'py>(
    py: Python<'py>,
    cash: &Bound<'py, PyArray2<i64>>,
    holdings: &Bound<'py, PyArray2<i64>>,
    cash_float: &Bound<'py, PyArray1<f64>>,
    amount_float: &Bound<'py, PyArray1<f64>>,
    slots: PyReadonlyArray1<'py, i64>,
    rows: PyReadonlyArray1<'py, i64>,
    buy: PyReadonlyArray1<'py, bool>,
    amount: PyReadonlyArray2<'py, i64>,
    price: PyReadonlyArray1<'py, f64>,
    fee_rate: PyReadonlyArray1<'py, f64>,
) -> PyResult<(Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>)> {
    let bad = |name: &str| to_pyerr(py, CoreError::config(name, "read-only or strided", "must be a writable contiguous (n, 2) array"));
    let mut cash = cash.try_readwrite().map_err(|_| bad("cash"))?;
    let mut holdings = holdings.try_readwrite().map_err(|_| bad("holdings"))?;
    let cash = cash.as_slice_mut().map_err(|_| bad("cash"))?;
    let holdings = holdings.as_slice_mut().map_err(|_| bad("holdings"))?;
    let mut cash_float = cash_float.try_readwrite().map_err(|_| bad("cash_float"))?;
    let mut amount_float = amount_float.try_readwrite().map_err(|_| bad("amount_float"))?;
    let cash_float = cash_float.as_slice_mut().map_err(|_| bad("cash_float"))?;
    let amount_float = amount_float.as_slice_mut().map_err(|_| bad("amount_float"))?;
    let fills = crate::fills::FullFills {
        slots: slice(py, &slots, "slots")?,
        rows: slice(py, &rows, "rows")?,
        buy: slice(py, &buy, "buy")?,
        amount: slice(py, &amount, "amount")?,
        price: slice(py, &price, "price")?,
        fee_rate: slice(py, &fee_rate, "fee_rate")?,
    };
    let floats = crate::fills::FloatCopies { cash: cash_float, amounts: amount_float };
    let (costs, fees) = py.detach(|| guarded(|| crate::fills::fill_in_full_with_floats(cash, holdings, floats, &fills)))?.or_raise(py)?;
    Ok((PyArray1::from_vec(py, costs), PyArray1::from_vec(py, fees)))
}

/// Value of every portfolio (by slot): cash + Σ amount·price, as floats.
#[pyfunction]
pub fn values<'py>(py: Python<'py>, columns: &Bound<'py, PyDict>, prices: PyReadonlyArray1<'py, f64>) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let read = Columns::read(py, columns)?;
    let book = read.book(py)?;
    let prices = slice(py, &prices, "prices")?;
    let values = py.detach(|| guarded(|| flows::values(&book, prices)))?.or_raise(py)?;
    Ok(PyArray1::from_vec(py, values))
}

/// Value of the hold benchmark of `slots` (default: every slot) at `prices`
/// (see `crate::hold`): the baskets `hold_asset`, `hold_amount` ((n, width)
/// each) plus `hold_cash`.
#[pyfunction]
#[pyo3(signature = (hold_asset, hold_amount, hold_cash, prices, slots=None))]
pub fn hold_values<'py>(
    py: Python<'py>,
    hold_asset: PyReadonlyArray2<'py, i32>,
    hold_amount: PyReadonlyArray2<'py, f64>,
    hold_cash: PyReadonlyArray1<'py, f64>,
    prices: PyReadonlyArray1<'py, f64>,
    slots: Option<PyReadonlyArray1<'py, i64>>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let width = hold_amount.shape()[1];
    let (asset, amount) = (slice(py, &hold_asset, "hold_asset")?, slice(py, &hold_amount, "hold_amount")?);
    let (cash, prices) = (slice(py, &hold_cash, "hold_cash")?, slice(py, &prices, "prices")?);
    let slots: Vec<usize> = match &slots {
        Some(slots) => slots.as_array().iter().map(|&s| usize::try_from(s).unwrap_or(usize::MAX)).collect(),
        None => (0..cash.len()).collect(),
    };
    let values = py.detach(|| guarded(|| crate::hold::basket_values(asset, amount, cash, width, &slots, prices)))?.or_raise(py)?;
    Ok(PyArray1::from_vec(py, values))
}

/// Adds `deltas` ((m, 2) int64 words, signed) to the exact amounts at `rows`
/// of `words` ((n, 2) int64, written in place), all or nothing.
#[pyfunction]
pub fn add_amounts<'py>(
    py: Python<'py>,
    words: &Bound<'py, PyArray2<i64>>,
    rows: PyReadonlyArray1<'py, i64>,
    deltas: PyReadonlyArray2<'py, i64>,
    field: &str,
) -> PyResult<()> {
    let bad = |value: String, reason: &str| to_pyerr(py, CoreError::config(field, value, reason));
    if words.shape()[1] != 2 {
        return Err(bad(format!("{:?}", words.shape()), "amounts must be an (n, 2) array of words"));
    }
    if deltas.shape()[1] != 2 {
        return Err(bad(format!("{:?}", deltas.shape()), "deltas must be an (m, 2) array of words"));
    }
    let mut writable = words.try_readwrite().map_err(|_| bad("read-only".into(), "amounts must be writable"))?;
    let words = writable.as_slice_mut().map_err(|_| bad("strided".into(), "amounts must be contiguous"))?;
    let rows = slice(py, &rows, "rows")?;
    let deltas = slice(py, &deltas, "deltas")?;
    py.detach(|| guarded(|| flows::add_amounts(words, rows, deltas, field)))?.or_raise(py)
}
