//! Money in and out over a Book dict (see `crate::flows`): `invest`,
//! `exit`, `values` and `add_amounts`. Columns are read in place as in
//! `tick`; the work runs with the GIL released.

use numpy::{Ix1, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1, PyUntypedArrayMethods};
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
///
/// With `fees_paid` (by slot, written in place) each slot's fees are added to
/// it; with `turnover` its costs, those of the fills whose `purpose` is 0 (a
/// rebalance) when `purpose` is given. Both as numpy's
/// `column += np.bincount(slots, weights=values, minlength=len(column))`:
/// each slot's sum from 0 in fill order, then one add per slot, so the
/// floats are the same.
#[pyfunction]
#[pyo3(signature = (cash, holdings, cash_float, amount_float, slots, rows, buy, amount, price, fee_rate, fees_paid=None, turnover=None, purpose=None))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
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
    fees_paid: Option<&Bound<'py, PyArray1<f64>>>,
    turnover: Option<&Bound<'py, PyArray1<f64>>>,
    purpose: Option<PyReadonlyArray1<'py, u8>>,
) -> PyResult<(Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>)> {
    let bad = |name: &str| to_pyerr(py, CoreError::config(name, "read-only or strided", "must be a writable contiguous (n, 2) array"));
    // The totals are checked first: a fill never lands without them.
    let slot_count = cash.shape()[0];
    let (mut fees_paid, mut turnover) = (total_column(py, fees_paid, slot_count, "fees_paid")?, total_column(py, turnover, slot_count, "turnover")?);
    let fees_paid = fees_paid.as_mut().map(|column| column.as_slice_mut()).transpose().map_err(|_| not_a_total(py, "fees_paid"))?;
    let turnover = turnover.as_mut().map(|column| column.as_slice_mut()).transpose().map_err(|_| not_a_total(py, "turnover"))?;
    let purpose = match &purpose {
        Some(purpose) => Some(slice(py, purpose, "purpose")?),
        None => None,
    };
    if purpose.is_some_and(|purpose| purpose.len() != slots.len()) {
        return Err(to_pyerr(py, CoreError::config("purpose", purpose.map_or(0, <[u8]>::len), format!("one per fill ({})", slots.len()))));
    }
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
    let (costs, fees) = py
        .detach(|| {
            guarded(|| {
                let (costs, fees) = crate::fills::fill_in_full_with_floats(cash, holdings, floats, &fills)?;
                if let Some(column) = fees_paid {
                    add_by_slot(column, fills.slots, &fees, None);
                }
                if let Some(column) = turnover {
                    add_by_slot(column, fills.slots, &costs, purpose);
                }
                Ok((costs, fees))
            })
        })?
        .or_raise(py)?;
    Ok((PyArray1::from_vec(py, costs), PyArray1::from_vec(py, fees)))
}

/// A total by cash slot that full fills add to (in place): writable, one per slot.
fn total_column<'py>(py: Python<'py>, column: Option<&Bound<'py, PyArray1<f64>>>, slots: usize, name: &str) -> PyResult<Option<PyReadwriteArray1<'py, f64>>> {
    column.map(|column| if column.len() == slots { column.try_readwrite().map_err(|_| not_a_total(py, name)) } else { Err(not_a_total(py, name)) }).transpose()
}

fn not_a_total(py: Python<'_>, name: &str) -> PyErr {
    to_pyerr(py, CoreError::config(name, "read-only, strided or of another length", "must be a writable contiguous array, one per cash slot"))
}

/// `column += np.bincount(slots[chosen], weights=values[chosen], minlength=len(column))`,
/// chosen: every fill, or those whose `purpose` is 0. The slots are in range
/// (the fills wrote their cash).
fn add_by_slot(column: &mut [f64], slots: &[i64], values: &[f64], purpose: Option<&[u8]>) {
    let chosen = |k: usize| purpose.is_none_or(|purpose| purpose[k] == 0);
    if !slots.is_sorted() {
        let mut sums = vec![0.0; column.len()];
        for (k, (&slot, &value)) in slots.iter().zip(values).enumerate() {
            if chosen(k) {
                sums[slot as usize] += value;
            }
        }
        for (total, sum) in column.iter_mut().zip(sums) {
            *total += sum;
        }
        return;
    }
    // A batch's fills, each slot's together: its sum is added at the end of
    // its run. numpy adds 0 to every other slot, which turns a -0 into 0:
    // so does this first pass (and 0 + x is x for every sum after it).
    for total in column.iter_mut() {
        *total += 0.0;
    }
    let mut k = 0;
    while k < slots.len() {
        let slot = slots[k];
        let mut sum = 0.0;
        while k < slots.len() && slots[k] == slot {
            if chosen(k) {
                sum += values[k];
            }
            k += 1;
        }
        column[slot as usize] += sum;
    }
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
