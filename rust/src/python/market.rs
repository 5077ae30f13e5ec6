//! `rebal.Market`: one trading pair's rules. `Market.from_ccxt` is added in
//! `rebal/market.py`, which subclasses this.

use pyo3::prelude::*;

use crate::lots::Amount;
use crate::market::Market;
use crate::python::convert::{amount, decimal, optional_amount};
use crate::python::errors::IntoPyResult;

#[pyclass(name = "Market", module = "rebal", subclass, frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PyMarket {
    pub inner: Market,
}

#[pymethods]
impl PyMarket {
    #[new]
    #[pyo3(signature = (symbol, base, quote, step, *, min_amount=None, max_amount=None, min_notional=None,
                        max_notional=None, price_tick=None, maker_fee=0.0, taker_fee=0.0, active=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        symbol: &str,
        base: &str,
        quote: &str,
        step: &Bound<'_, PyAny>,
        min_amount: Option<&Bound<'_, PyAny>>,
        max_amount: Option<&Bound<'_, PyAny>>,
        min_notional: Option<&Bound<'_, PyAny>>,
        max_notional: Option<&Bound<'_, PyAny>>,
        price_tick: Option<&Bound<'_, PyAny>>,
        maker_fee: f64,
        taker_fee: f64,
        active: bool,
    ) -> PyResult<Self> {
        let field = |name: &str| format!("markets[{symbol}].{name}");
        let mut m = Market::new(symbol, base, quote, amount(py, step, &field("step"))?);
        m.min_amount = optional_amount(py, min_amount, &field("min_amount"))?.unwrap_or(Amount::ZERO);
        m.max_amount = optional_amount(py, max_amount, &field("max_amount"))?;
        m.min_notional = optional_amount(py, min_notional, &field("min_notional"))?.unwrap_or(Amount::ZERO);
        m.max_notional = optional_amount(py, max_notional, &field("max_notional"))?;
        m.price_tick = optional_amount(py, price_tick, &field("price_tick"))?;
        m.maker_fee = maker_fee;
        m.taker_fee = taker_fee;
        m.active = active;
        m.validate().or_raise(py)?;
        Ok(PyMarket { inner: m })
    }

    #[getter]
    fn symbol(&self) -> &str {
        &self.inner.symbol
    }
    #[getter]
    fn base(&self) -> &str {
        &self.inner.base
    }
    #[getter]
    fn quote(&self) -> &str {
        &self.inner.quote
    }
    #[getter]
    fn step<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        decimal(py, self.inner.step)
    }
    #[getter]
    fn min_amount<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        decimal(py, self.inner.min_amount)
    }
    #[getter]
    fn max_amount<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner.max_amount.map(|a| decimal(py, a)).transpose()
    }
    #[getter]
    fn min_notional<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        decimal(py, self.inner.min_notional)
    }
    #[getter]
    fn max_notional<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner.max_notional.map(|a| decimal(py, a)).transpose()
    }
    #[getter]
    fn price_tick<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner.price_tick.map(|a| decimal(py, a)).transpose()
    }
    #[getter]
    fn maker_fee(&self) -> f64 {
        self.inner.maker_fee
    }
    #[getter]
    fn taker_fee(&self) -> f64 {
        self.inner.taker_fee
    }
    #[getter]
    fn active(&self) -> bool {
        self.inner.active
    }

    /// `amount` truncated toward zero to a whole number of lots, exactly.
    fn amount_to_precision<'py>(&self, py: Python<'py>, amount_: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let a = amount(py, amount_, "amount")?;
        decimal(py, self.inner.amount_to_precision(a))
    }

    /// Whole lots in `amount` (truncated toward zero).
    fn lots(&self, py: Python<'_>, amount_: &Bound<'_, PyAny>) -> PyResult<i128> {
        Ok(amount(py, amount_, "amount")?.lots(self.inner.step))
    }

    /// Smallest number of lots an order may carry at `price`.
    fn min_lots(&self, py: Python<'_>, price: f64) -> PyResult<i128> {
        crate::portfolio::check_price(price, "price").or_raise(py)?;
        Ok(self.inner.min_lots(price))
    }

    fn __repr__(&self) -> String {
        let m = &self.inner;
        format!(
            "Market({:?}, step={}, min_amount={}, min_notional={}, taker_fee={}{})",
            m.symbol,
            m.step,
            m.min_amount,
            m.min_notional,
            m.taker_fee,
            if m.active { "" } else { ", active=False" }
        )
    }
}
