//! `plan_portfolio`: the single-portfolio planner behind `rebal.plan`.

use pyo3::prelude::*;

use crate::lots::Amount;
use crate::plan::{Destination, PlanParams};
use crate::portfolio::PortfolioRef;
use crate::python::convert::{amount, decimal};
use crate::python::errors::{guarded, IntoPyResult};
use crate::python::market::PyMarket;
use crate::trigger::{Band, BandKind};
use crate::CoreError;

pub fn band_kind(kind: &str) -> Result<BandKind, CoreError> {
    match kind {
        "absolute" => Ok(BandKind::Absolute),
        "relative" => Ok(BandKind::Relative),
        other => Err(CoreError::config("threshold_kind", other, "must be 'absolute' or 'relative'")),
    }
}

pub fn destination(name: &str, k: Option<f64>) -> Result<Destination, CoreError> {
    match (name, k) {
        ("target", _) => Ok(Destination::Target),
        ("band_edge", _) => Ok(Destination::BandEdge),
        ("inner_band", Some(k)) => Ok(Destination::InnerBand(k)),
        (other, _) => Err(CoreError::config(
            "destination",
            other,
            "must be 'target', 'band_edge' or 'inner_band(k)' with 0 <= k <= 1",
        )),
    }
}

pub type LegRow<'py> = (u32, &'static str, Bound<'py, PyAny>, f64, f64, f64);
pub type SkipRow<'py> = (u32, &'static str, Bound<'py, PyAny>, &'static str);
pub type OutcomeRow = (f64, f64, f64, bool, f64, f64, f64);

/// Plans one portfolio. Assets are positions `0..n` into `markets`,
/// `prices`, `amounts` and `targets`. Returns (outcome, legs, skips) as
/// tuples; `rebal.plan` dresses them as msgspec Structs.
#[pyfunction]
#[pyo3(signature = (markets, prices, amounts, targets, cash, *, cash_target=0.0, destination="target",
                    inner_k=None, threshold=None, threshold_kind="absolute", fee_rate=None))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn plan_portfolio<'py>(
    py: Python<'py>,
    markets: Vec<PyRef<'py, PyMarket>>,
    prices: Vec<f64>,
    amounts: Vec<Bound<'py, PyAny>>,
    targets: Vec<f64>,
    cash: &Bound<'py, PyAny>,
    cash_target: f64,
    destination: &str,
    inner_k: Option<f64>,
    threshold: Option<f64>,
    threshold_kind: &str,
    fee_rate: Option<f64>,
) -> PyResult<(OutcomeRow, Vec<LegRow<'py>>, Vec<SkipRow<'py>>)> {
    let markets: Vec<_> = markets.iter().map(|m| m.inner.clone()).collect();
    let names: Vec<String> = markets.iter().map(|m| m.base.clone()).collect();
    let amounts = amounts
        .iter()
        .enumerate()
        .map(|(i, a)| amount(py, a, &format!("holdings[{}]", names.get(i).map_or("?", |s| s.as_str()))))
        .collect::<PyResult<Vec<Amount>>>()?;
    let cash = amount(py, cash, "cash")?;
    let band = threshold.map(|t| Band::new_checked(t, band_kind(threshold_kind)?)).transpose().or_raise(py)?;
    let params = PlanParams { destination: self::destination(destination, inner_k).or_raise(py)?, band, fee_rate };
    let assets: Vec<u32> = (0..markets.len() as u32).collect();
    let portfolio = PortfolioRef { assets: &assets, amounts: &amounts, targets: &targets, cash, cash_target };
    let (outcome, legs, skips) =
        py.detach(|| guarded(|| crate::plan::plan(&portfolio, &prices, &markets, &params)))?.or_raise(py)?;
    let legs = legs
        .into_iter()
        .map(|l| Ok((l.position, l.side.as_str(), decimal(py, l.amount)?, l.price, l.notional, l.fee)))
        .collect::<PyResult<Vec<_>>>()?;
    let skips = skips
        .into_iter()
        .map(|s| Ok((s.position, s.side.as_str(), decimal(py, s.amount)?, s.reason.as_str())))
        .collect::<PyResult<Vec<_>>>()?;
    let o = outcome;
    Ok((
        (o.value, o.max_deviation, o.max_relative_deviation, o.triggered, o.value_after, o.cash_after, o.fees),
        legs,
        skips,
    ))
}

/// Deterministic client order id for (portfolio, rebalance epoch, leg).
#[pyfunction]
pub fn client_order_id(portfolio: u64, epoch: u32, leg: u32) -> String {
    crate::plan::client_order_id(portfolio, epoch, leg)
}
