//! Core errors become the exception classes of `rebal.exceptions`, which
//! carry `field` and `value`. The hierarchy is defined in Python because bad
//! input must be both a `rebal.RebalError` and a `ValueError`.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{CoreError, ErrorKind};

fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Config => "ConfigError",
        ErrorKind::Price => "PriceError",
        ErrorKind::Amount => "AmountError",
        ErrorKind::Market => "MarketError",
    }
}

/// Raises `rebal.exceptions.<Kind>Error(message, field=..., value=...)`.
pub fn to_pyerr(py: Python<'_>, e: CoreError) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = py.import("rebal.exceptions")?.getattr(class_name(e.kind))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("field", &e.field)?;
        kwargs.set_item("value", &e.value)?;
        Ok(PyErr::from_value(class.call((e.to_string(),), Some(&kwargs))?))
    };
    build().unwrap_or_else(|import_error| import_error)
}

/// Runs core work, turning a panic (a bug) into a Python exception rather
/// than letting it unwind through the interpreter.
pub fn guarded<T>(work: impl FnOnce() -> T) -> PyResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        PyRuntimeError::new_err(format!("rebal internal error (please report): {what}"))
    })
}

pub trait IntoPyResult<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, CoreError> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_pyerr(py, e))
    }
}
