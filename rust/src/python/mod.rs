//! Python bindings (`rebal._rebal`), behind the `python` feature.
//!
//! Only conversions live here: Python values in, core calls (with panics
//! caught, so none crosses the FFI), Python values out.

mod book;
mod columns;
mod convert;
mod errors;
mod flows;
mod market;
mod metrics;
mod plan;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

/// Makes the calling thread a worker of its own pool, so its parallel calls
/// start at once (see `rebal::workers`); returns whether it joined one.
#[pyfunction]
fn join_pool() -> PyResult<bool> {
    crate::workers::join_pool().map_err(|e| PyOSError::new_err(format!("could not start a thread pool: {e}")))
}

#[pymodule]
fn _rebal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("AMOUNT_DECIMALS", crate::lots::DECIMALS)?;
    m.add_class::<market::PyMarket>()?;
    m.add_function(wrap_pyfunction!(plan::plan_portfolio, m)?)?;
    m.add_function(wrap_pyfunction!(plan::client_order_id, m)?)?;
    m.add_function(wrap_pyfunction!(book::validate_book, m)?)?;
    m.add_function(wrap_pyfunction!(book::tick, m)?)?;
    m.add_function(wrap_pyfunction!(book::scan, m)?)?;
    m.add_function(wrap_pyfunction!(book::plan, m)?)?;
    m.add_function(wrap_pyfunction!(book::amount_words_of, m)?)?;
    m.add_function(wrap_pyfunction!(book::amount_strings, m)?)?;
    m.add_function(wrap_pyfunction!(book::amount_floats, m)?)?;
    m.add_function(wrap_pyfunction!(book::client_order_ids, m)?)?;
    m.add_function(wrap_pyfunction!(flows::invest, m)?)?;
    m.add_function(wrap_pyfunction!(flows::exit, m)?)?;
    m.add_function(wrap_pyfunction!(flows::values, m)?)?;
    m.add_function(wrap_pyfunction!(flows::check_prices, m)?)?;
    m.add_function(wrap_pyfunction!(flows::fill_in_full, m)?)?;
    m.add_function(wrap_pyfunction!(flows::add_amounts, m)?)?;
    m.add_function(wrap_pyfunction!(flows::hold_values, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::return_factors, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::add_log_returns, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::deepen_drawdowns, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::track_drawdowns, m)?)?;
    m.add_function(wrap_pyfunction!(columns::earliest, m)?)?;
    m.add_function(wrap_pyfunction!(columns::reached, m)?)?;
    m.add_function(wrap_pyfunction!(columns::cycles_due, m)?)?;
    m.add_function(wrap_pyfunction!(join_pool, m)?)?;
    Ok(())
}

