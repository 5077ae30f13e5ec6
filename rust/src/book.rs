//! The Book as borrowed columns: N portfolios as a struct of arrays, their
//! holdings as rows `start[i]..stop[i]` of three row columns. The host owns
//! the memory (numpy arrays in Python) and the core reads it in place.
//!
//! Exact amounts (holdings, cash) are stored two `i64` per value, low word
//! first: the little-endian `i128` of Arrow's decimal128(38, 18), in atoms
//! of 10⁻¹⁸, so a host can hand the same buffer to Arrow without a copy.

use rayon::prelude::*;

use crate::error::{CoreError, Result};
use crate::lots::Amount;
use crate::market::Market;
use crate::plan::{Destination, PlanParams};
use crate::portfolio::PortfolioRef;
use crate::trigger::{Band, BandKind};

/// Column codes of `trigger`.
pub const TRIGGER_THRESHOLD: u8 = 0;
pub const TRIGGER_CALENDAR: u8 = 1;
/// Column codes of `threshold_kind`.
pub const KIND_ABSOLUTE: u8 = 0;
pub const KIND_RELATIVE: u8 = 1;
/// Column codes of `destination` (`inner_band` reads k from `inner_k`).
pub const DESTINATION_TARGET: u8 = 0;
pub const DESTINATION_BAND_EDGE: u8 = 1;
pub const DESTINATION_INNER_BAND: u8 = 2;
/// Holdings one portfolio may have: a leg number of a client order id is one byte.
pub const MAX_HOLDINGS: usize = 255;
/// `last_rebalance_ms` of a portfolio that never rebalanced.
pub const NEVER: i64 = i64::MIN;

/// The exact amount at `i` of a two-words-per-value column.
#[inline]
pub fn amount_at(column: &[i64], i: usize) -> Amount {
    Amount::from_atoms(((column[2 * i + 1] as i128) << 64) | (column[2 * i] as u64 as i128))
}

/// The two words of `amount` in the column layout (low, high).
pub fn amount_words(amount: Amount) -> [i64; 2] {
    let atoms = amount.atoms();
    [atoms as u64 as i64, (atoms >> 64) as i64]
}

/// The configuration and holdings of every portfolio (read-only in a tick).
#[derive(Copy, Clone)]
pub struct BookRef<'a> {
    /// The host's portfolio ids, used in client order ids and errors.
    pub id: &'a [u64],
    /// Rows `start[i]..stop[i]` of the holdings columns are portfolio i's.
    pub start: &'a [i64],
    pub stop: &'a [i64],
    /// Free quote cash, exact (two words per portfolio).
    pub cash: &'a [i64],
    /// `cash` as a float ([`Amount::to_f64`]), kept by the Book beside the
    /// exact words so the scan reads 8 bytes and converts nothing.
    pub cash_float: &'a [f64],
    /// Target weight of the quote asset itself (0 unless it is one of the coins).
    pub cash_target: &'a [f64],
    /// Removed or paused portfolios are skipped by the tick.
    pub active: &'a [bool],
    pub trigger: &'a [u8],
    pub threshold_kind: &'a [u8],
    /// θ of the threshold trigger, or the calendar's deviation gate (0 = none).
    pub threshold: &'a [f64],
    /// Calendar interval (ignored for threshold triggers).
    pub interval_ms: &'a [i64],
    pub cooldown_ms: &'a [i64],
    pub destination: &'a [u8],
    pub inner_k: &'a [f64],
    /// One fee rate for the portfolio's orders; NaN uses each market's taker fee.
    pub fee_rate: &'a [f64],
    /// Holdings rows: asset index into prices and markets, exact amount, target weight.
    pub asset: &'a [i32],
    pub amount: &'a [i64],
    /// `amount` as a float, like `cash_float`.
    pub amount_float: &'a [f64],
    pub target: &'a [f64],
}

/// What a scan reads of the state (see [`StateMut`]).
#[derive(Copy, Clone)]
pub struct StateRef<'a> {
    pub last_rebalance_ms: &'a [i64],
    pub next_check_ms: &'a [i64],
    pub locked: &'a [bool],
}

/// What the tick reads and, when it commits, writes back per portfolio.
pub struct StateMut<'a> {
    pub last_rebalance_ms: &'a mut [i64],
    /// Next calendar check (ignored for threshold triggers).
    pub next_check_ms: &'a mut [i64],
    /// Orders out: not planned again until the host unlocks it.
    pub locked: &'a mut [bool],
    /// Rebalances so far; the next one's client ids carry `epoch + 1`.
    pub epoch: &'a mut [u32],
}

/// When a portfolio rebalances.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Trigger {
    Threshold(Band),
    /// Checked every `interval_ms`; rebalances if the gate is breached (or always, without one).
    Calendar { interval_ms: i64, gate: Option<Band> },
}

/// One portfolio's strategy, decoded from its columns.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Strategy {
    pub trigger: Trigger,
    pub cooldown_ms: i64,
    pub params: PlanParams,
}

impl<'a> BookRef<'a> {
    pub fn len(&self) -> usize {
        self.id.len()
    }
    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
    }
    /// Portfolios `span` alone (their holdings stay where they are: `start`
    /// and `stop` still index the whole holdings columns). A loop over a
    /// chunk indexes columns of the chunk's length, checked once each.
    pub fn portfolios(&self, span: std::ops::Range<usize>) -> BookRef<'a> {
        let (p, words) = (span.clone(), 2 * span.start..2 * span.end);
        BookRef {
            id: &self.id[p.clone()],
            start: &self.start[p.clone()],
            stop: &self.stop[p.clone()],
            cash: &self.cash[words],
            cash_float: &self.cash_float[p.clone()],
            cash_target: &self.cash_target[p.clone()],
            active: &self.active[p.clone()],
            trigger: &self.trigger[p.clone()],
            threshold_kind: &self.threshold_kind[p.clone()],
            threshold: &self.threshold[p.clone()],
            interval_ms: &self.interval_ms[p.clone()],
            cooldown_ms: &self.cooldown_ms[p.clone()],
            destination: &self.destination[p.clone()],
            inner_k: &self.inner_k[p.clone()],
            fee_rate: &self.fee_rate[p],
            ..*self
        }
    }

    pub fn rows(&self, i: usize) -> std::ops::Range<usize> {
        self.start[i] as usize..self.stop[i] as usize
    }

    /// The band the scan checks: the threshold, or the calendar's gate (none
    /// without one). Not validated: the Book checked it when it was written.
    #[inline]
    pub fn band(&self, i: usize) -> Option<Band> {
        let width = self.threshold[i];
        let kind = if self.threshold_kind[i] == KIND_RELATIVE { BandKind::Relative } else { BandKind::Absolute };
        (self.trigger[i] != TRIGGER_CALENDAR || width != 0.0).then_some(Band { width, kind })
    }

    /// The band kind's code decoded (None: out of range).
    #[inline]
    fn band_kind(&self, i: usize) -> Option<BandKind> {
        match self.threshold_kind[i] {
            KIND_ABSOLUTE => Some(BandKind::Absolute),
            KIND_RELATIVE => Some(BandKind::Relative),
            _ => None,
        }
    }

    /// The destination's code decoded (None: out of range).
    #[inline]
    fn destination(&self, i: usize) -> Option<Destination> {
        match self.destination[i] {
            DESTINATION_TARGET => Some(Destination::Target),
            DESTINATION_BAND_EDGE => Some(Destination::BandEdge),
            DESTINATION_INNER_BAND => Some(Destination::InnerBand(self.inner_k[i])),
            _ => None,
        }
    }

    /// The plan parameters of a decoded band and destination, with the
    /// portfolio's own fee rate (NaN: each market's taker fee).
    #[inline]
    fn params(&self, i: usize, band: Option<Band>, destination: Destination) -> PlanParams {
        let fee = self.fee_rate[i];
        PlanParams { destination, band, fee_rate: if fee.is_nan() { None } else { Some(fee) } }
    }

    /// Decodes portfolio i's strategy, refusing codes and values out of range.
    pub fn strategy(&self, i: usize) -> Result<Strategy> {
        let Some(kind) = self.band_kind(i) else {
            return Err(CoreError::config("threshold_kind", self.threshold_kind[i], "must be 0 (absolute) or 1 (relative)"));
        };
        let width = self.threshold[i];
        let trigger = match self.trigger[i] {
            TRIGGER_THRESHOLD => Trigger::Threshold(Band::new_checked(width, kind)?),
            TRIGGER_CALENDAR => {
                let interval_ms = self.interval_ms[i];
                if interval_ms <= 0 {
                    return Err(CoreError::config("interval", interval_ms, "calendar interval must be > 0 ms"));
                }
                let gate = if width == 0.0 {
                    None
                } else {
                    Some(Band::new_checked(width, kind).map_err(|e| CoreError { field: "gate".into(), ..e })?)
                };
                Trigger::Calendar { interval_ms, gate }
            }
            other => return Err(CoreError::config("trigger", other, "must be 0 (threshold) or 1 (calendar)")),
        };
        let Some(destination) = self.destination(i) else {
            return Err(CoreError::config("destination", self.destination[i], "must be 0 (target), 1 (band_edge) or 2 (inner_band)"));
        };
        let cooldown_ms = self.cooldown_ms[i];
        if cooldown_ms < 0 {
            return Err(CoreError::config("cooldown", cooldown_ms, "cooldown must be >= 0 ms"));
        }
        let band = match trigger {
            Trigger::Threshold(band) => Some(band),
            Trigger::Calendar { gate, .. } => gate,
        };
        let params = self.params(i, band, destination);
        params.validate()?;
        Ok(Strategy { trigger, cooldown_ms, params })
    }

    /// Portfolio i's plan parameters, or `None` where [`BookRef::strategy`]
    /// refuses it: the same checks, with no trigger built and no error text
    /// (a tick decodes one per portfolio it plans).
    #[inline]
    pub(crate) fn plan_params(&self, i: usize) -> Option<PlanParams> {
        let kind = self.band_kind(i)?;
        let width = self.threshold[i];
        let banded = Band::valid(width, kind).then_some(Band { width, kind });
        let band = match self.trigger[i] {
            TRIGGER_THRESHOLD => Some(banded?),
            TRIGGER_CALENDAR if self.interval_ms[i] > 0 => {
                if width == 0.0 {
                    None // no gate
                } else {
                    Some(banded?)
                }
            }
            _ => return None,
        };
        let params = self.params(i, band, self.destination(i)?);
        (self.cooldown_ms[i] >= 0 && params.validate().is_ok()).then_some(params)
    }

    /// Checks every column before any work: lengths, row ranges, holdings,
    /// weights, amounts and strategies. The error names the portfolio by id.
    pub fn validate(&self, markets: &[Market]) -> Result<()> {
        let n = self.len();
        let per_portfolio = [
            ("start", self.start.len()),
            ("stop", self.stop.len()),
            ("cash", self.cash.len() / 2),
            ("cash_float", self.cash_float.len()),
            ("cash_target", self.cash_target.len()),
            ("active", self.active.len()),
            ("trigger", self.trigger.len()),
            ("threshold_kind", self.threshold_kind.len()),
            ("threshold", self.threshold.len()),
            ("interval", self.interval_ms.len()),
            ("cooldown", self.cooldown_ms.len()),
            ("destination", self.destination.len()),
            ("inner_k", self.inner_k.len()),
            ("fee_rate", self.fee_rate.len()),
        ];
        for (field, len) in per_portfolio {
            if len != n {
                return Err(CoreError::config(field, len, format!("one value per portfolio ({n} portfolios)")));
            }
        }
        if self.cash.len() != 2 * n {
            return Err(CoreError::amount("cash", self.cash.len(), "two words per portfolio"));
        }
        let rows = self.asset.len();
        if self.target.len() != rows || self.amount.len() != 2 * rows || self.amount_float.len() != rows {
            return Err(CoreError::config(
                "holdings",
                format!("{rows} assets, {} amounts, {} targets", self.amount.len() / 2, self.target.len()),
                "asset, amount and target must have one value per holding",
            ));
        }
        for market in markets {
            market.validate()?;
        }
        let first_error = (0..n)
            .into_par_iter()
            .map_init(|| (Vec::new(), Vec::new()), |(assets, amounts), i| (i, self.check_portfolio(i, markets, assets, amounts)))
            .filter_map(|(i, checked)| checked.err().map(|e| (i, e)))
            .min_by_key(|(i, _)| *i);
        match first_error {
            Some((i, e)) => Err(CoreError { field: format!("portfolios[{}].{}", self.id[i], e.field), ..e }),
            None => Ok(()),
        }
    }

    fn check_portfolio(&self, i: usize, markets: &[Market], assets: &mut Vec<u32>, amounts: &mut Vec<Amount>) -> Result<()> {
        let (start, stop, rows) = (self.start[i], self.stop[i], self.asset.len() as i64);
        if !(0 <= start && start < stop && stop <= rows) {
            return Err(CoreError::config(
                "rows",
                format!("{start}..{stop}"),
                format!("holdings must be a non-empty range within the {rows} rows (offsets increasing)"),
            ));
        }
        if stop - start > MAX_HOLDINGS as i64 {
            return Err(CoreError::config("rows", stop - start, format!("at most {MAX_HOLDINGS} holdings per portfolio")));
        }
        self.strategy(i)?;
        let range = self.rows(i);
        assets.clear();
        amounts.clear();
        let stale = |float: f64, exact: Amount| float.to_bits() != exact.to_f64().to_bits();
        if stale(self.cash_float[i], amount_at(self.cash, i)) {
            return Err(CoreError::amount("cash_float", self.cash_float[i], "must be the exact cash as a float"));
        }
        for r in range.clone() {
            if stale(self.amount_float[r], amount_at(self.amount, r)) {
                return Err(CoreError::amount("amount_float", self.amount_float[r], "must be the exact amount as a float"));
            }
            let asset = self.asset[r];
            if asset < 0 {
                return Err(CoreError::config(format!("assets[{}]", r - range.start), asset, "asset index must be >= 0"));
            }
            assets.push(asset as u32);
            amounts.push(amount_at(self.amount, r));
        }
        let cash_target = self.cash_target[i];
        if !(cash_target.is_finite() && (0.0..1.0).contains(&cash_target)) {
            return Err(CoreError::config("cash_target", cash_target, "must be in [0, 1)"));
        }
        let p = PortfolioRef { assets, amounts, targets: &self.target[range], cash: amount_at(self.cash, i), cash_target };
        p.validate_holdings(markets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_params_refuse_what_strategy_refuses() {
        // Every code, in range and out, and each value either side of its limits.
        let widths = [0.0, 0.05, 1.0, 1.5, -0.1, f64::NAN, f64::INFINITY];
        let (intervals, ks, cooldowns, fees) = ([0, 1, -1], [0.5, 1.5, f64::NAN], [0, -1], [f64::NAN, 0.002, 1.0, -0.5]);
        let mut valid = 0;
        for (kind, trigger, destination) in (0..3u8).flat_map(|a| (0..3u8).flat_map(move |b| (0..4u8).map(move |c| (a, b, c)))) {
            for &width in &widths {
                for &interval in &intervals {
                    for &k in &ks {
                        for &cooldown in &cooldowns {
                            for &fee in &fees {
                                let book = BookRef {
                                    id: &[1],
                                    start: &[0],
                                    stop: &[1],
                                    cash: &[0, 0],
                                    cash_float: &[0.0],
                                    cash_target: &[0.0],
                                    active: &[true],
                                    trigger: &[trigger],
                                    threshold_kind: &[kind],
                                    threshold: &[width],
                                    interval_ms: &[interval],
                                    cooldown_ms: &[cooldown],
                                    destination: &[destination],
                                    inner_k: &[k],
                                    fee_rate: &[fee],
                                    asset: &[0],
                                    amount: &[0, 0],
                                    amount_float: &[0.0],
                                    target: &[1.0],
                                };
                                let expected = book.strategy(0).ok().map(|s| s.params);
                                // (Debug text: NaN fields compare equal.)
                                assert_eq!(format!("{:?}", book.plan_params(0)), format!("{expected:?}"), "{kind} {trigger} {destination} {width} {interval} {k} {cooldown} {fee}");
                                valid += usize::from(expected.is_some());
                            }
                        }
                    }
                }
            }
        }
        assert!(valid > 100, "only {valid} valid strategies among the cases");
    }
}
