//! One portfolio as borrowed columns, its validation and valuation.
//!
//! A portfolio is a row range of the Book's holdings columns plus its free
//! quote cash. Asset indices point into the tick's price vector and the
//! market list, so one portfolio costs no allocation to look at.

use crate::error::{CoreError, Result};
use crate::lots::Amount;
use crate::market::Market;
use crate::trigger::{Band, Edge};

/// Tolerance on "weights sum to 1": far below any weight a user can set.
pub const WEIGHT_SUM_TOLERANCE: f64 = 1e-9;

#[derive(Copy, Clone, Debug)]
pub struct PortfolioRef<'a> {
    /// Index of each held asset into `prices` and `markets`.
    pub assets: &'a [u32],
    /// Exact amount held of each asset.
    pub amounts: &'a [Amount],
    /// Target weight of each asset, as a fraction of the portfolio value.
    pub targets: &'a [f64],
    /// Free cash in the quote asset.
    pub cash: Amount,
    /// Target weight of the quote asset itself (0 unless it is one of the coins).
    pub cash_target: f64,
}

impl PortfolioRef<'_> {
    pub fn len(&self) -> usize {
        self.assets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    /// Checks everything the planner relies on; nothing is planned on bad input.
    pub fn validate(&self, prices: &[f64], markets: &[Market]) -> Result<()> {
        self.validate_holdings(markets)?;
        if prices.len() < markets.len() {
            return Err(CoreError::price("prices", prices.len(), format!("one price per market ({} markets)", markets.len())));
        }
        for (i, &asset) in self.assets.iter().enumerate() {
            check_price(prices[asset as usize], &format!("prices[{}]", asset_name(self.assets[i], markets)))?;
        }
        Ok(())
    }

    /// Checks the holdings and weights alone (no prices): what a Book checks
    /// when a portfolio is added or changed.
    pub fn validate_holdings(&self, markets: &[Market]) -> Result<()> {
        let n = self.assets.len();
        if self.amounts.len() != n || self.targets.len() != n {
            return Err(CoreError::config(
                "holdings",
                format!("{} assets, {} amounts, {} targets", n, self.amounts.len(), self.targets.len()),
                "assets, amounts and targets must have the same length",
            ));
        }
        let name = |i: usize| asset_name(self.assets[i], markets);
        for (i, &asset) in self.assets.iter().enumerate() {
            if asset as usize >= markets.len() {
                return Err(CoreError::config(
                    format!("assets[{i}]"),
                    asset,
                    format!("asset index out of range ({} markets)", markets.len()),
                ));
            }
            if self.assets[..i].contains(&asset) {
                return Err(CoreError::config(format!("assets[{}]", name(i)), asset, "asset listed twice"));
            }
        }
        let mut sum = self.cash_target;
        for (i, &t) in self.targets.iter().enumerate() {
            if !(t.is_finite() && t > 0.0) {
                return Err(CoreError::config(format!("targets[{}]", name(i)), t, "target weight must be > 0"));
            }
            sum += t;
        }
        if !(0.0..1.0).contains(&self.cash_target) {
            return Err(CoreError::config("cash_target", self.cash_target, "must be in [0, 1)"));
        }
        if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
            return Err(CoreError::config("targets", sum, "target weights must sum to 1 (100 %)"));
        }
        for (i, amount) in self.amounts.iter().enumerate() {
            if amount.is_negative() {
                return Err(CoreError::amount(format!("holdings[{}]", name(i)), amount, "amount must be >= 0"));
            }
        }
        if self.cash.is_negative() {
            return Err(CoreError::amount("cash", self.cash, "cash must be >= 0"));
        }
        Ok(())
    }

    /// Total value in the quote asset at `prices`: cash + Σ amount·price.
    pub fn value(&self, prices: &[f64]) -> f64 {
        self.cash.to_f64()
            + self
                .assets
                .iter()
                .zip(self.amounts)
                .map(|(&a, q)| q.to_f64() * prices[a as usize])
                .sum::<f64>()
    }
}

/// How far a portfolio is from its targets.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Drift {
    /// Largest |weight − target|, in weight points.
    pub deviation: f64,
    /// Largest |weight − target| / target.
    pub relative: f64,
    /// Some weight is on or outside `band` around its target.
    pub breached: bool,
}

impl Drift {
    /// Measures (value, target) pairs of a portfolio worth `value` (> 0).
    /// The planner and the Book's scan both call this, so a tick triggers
    /// exactly the portfolios the planner would.
    #[inline]
    pub fn measure(held: impl Iterator<Item = (f64, f64)>, value: f64, band: Option<Band>) -> Drift {
        Drift::measure_to(held, value, Edge::of(band))
    }

    /// [`Drift::measure`] against a band's [`Edge`]: one loop for every kind of band.
    #[inline]
    pub fn measure_to(held: impl Iterator<Item = (f64, f64)>, value: f64, edge: Edge) -> Drift {
        Drift::measure_by(held, value, move |d, target| edge.exceeded_by(d, target))
    }

    /// [`Drift::measure`] with `breached(d, target)` telling whether a
    /// deviation `d` from `target` is on or outside the band.
    #[inline(always)]
    fn measure_by(held: impl Iterator<Item = (f64, f64)>, value: f64, breached: impl Fn(f64, f64) -> bool) -> Drift {
        let inverse = 1.0 / value; // one division per portfolio, not per holding
        // `fold`, not `for`: a chained cash row becomes a second loop instead
        // of a check on every holding. Breaches are or-ed into a byte, not
        // the bool field: LLVM re-masks a bool to one bit on every holding.
        let (drift, hits) = held.fold((Drift::default(), 0u8), |(mut drift, mut hits), (held, target)| {
            let d = (held * inverse - target).abs();
            if d > drift.deviation {
                drift.deviation = d;
            }
            if target > 0.0 {
                let relative = d / target;
                if relative > drift.relative {
                    drift.relative = relative;
                }
                hits |= u8::from(breached(d, target));
            }
            (drift, hits)
        });
        Drift { breached: hits != 0, ..drift }
    }
}

/// A usable price is finite and > 0; anything else is refused by name.
pub fn check_price(price: f64, field: &str) -> Result<()> {
    if price.is_nan() {
        Err(CoreError::price(field, price, "price is NaN"))
    } else if price.is_infinite() {
        Err(CoreError::price(field, price, "price is infinite"))
    } else if price <= 0.0 {
        Err(CoreError::price(field, price, "price must be > 0"))
    } else {
        Ok(())
    }
}

/// How errors name an asset: its market's base, or its index.
pub fn asset_name(asset: u32, markets: &[Market]) -> String {
    markets.get(asset as usize).map_or_else(|| asset.to_string(), |m| m.base.clone())
}
