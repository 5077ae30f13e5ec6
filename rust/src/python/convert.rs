//! Exact amounts in and out of Python: `str`, `int`, `decimal.Decimal` and
//! `float` in (floats through their shortest repr), `decimal.Decimal` out.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyFloat, PyString, PyType};

use crate::error::CoreError;
use crate::lots::Amount;
use crate::python::errors::to_pyerr;

static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Reads an exact amount, naming `field` if it is not one.
pub fn amount(py: Python<'_>, value: &Bound<'_, PyAny>, field: &str) -> PyResult<Amount> {
    let bad = |shown: String, reason: &str| to_pyerr(py, CoreError::amount(field, shown, reason));
    if value.is_instance_of::<PyBool>() {
        return Err(bad(value.repr()?.to_string(), "an amount must be a number, not a bool"));
    }
    let text = if let Ok(f) = value.cast::<PyFloat>() {
        let x = f.value();
        if !x.is_finite() {
            return Err(bad(x.to_string(), "amount must be finite"));
        }
        return Amount::from_f64(x).map_err(|e| bad(x.to_string(), &e.to_string()));
    } else if let Ok(s) = value.cast::<PyString>() {
        s.to_string()
    } else {
        value.str()?.to_string() // int, Decimal
    };
    Amount::parse(&text).map_err(|e| bad(text.clone(), &e.to_string()))
}

pub fn optional_amount(py: Python<'_>, value: Option<&Bound<'_, PyAny>>, field: &str) -> PyResult<Option<Amount>> {
    value.filter(|v| !v.is_none()).map(|v| amount(py, v, field)).transpose()
}

/// An amount as `decimal.Decimal`, exact.
pub fn decimal<'py>(py: Python<'py>, value: Amount) -> PyResult<Bound<'py, PyAny>> {
    DECIMAL.import(py, "decimal", "Decimal")?.call1((value.to_string(),))
}
