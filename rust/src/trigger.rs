//! When a portfolio rebalances: the deviation band (threshold trigger).
//!
//! `absolute`: θ in weight points (30 % target, θ = 5 points → fires at
//! ≥ 35 % or ≤ 25 %; Binance / BigONE / Bitget). `relative`: θ as a fraction
//! of the target (20 % target, θ = 15 % → fires at ≥ 23 %; Shrimpy / bt).

use std::hint::select_unpredictable;

use crate::error::{CoreError, Result};

/// Weights are floats; a deviation this close to the band counts as on it,
/// so 35 % against 30 % ± 5 fires although 0.35 − 0.30 < 0.05 in floats.
pub const BAND_TOLERANCE: f64 = 1e-9;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BandKind {
    Absolute,
    Relative,
}

#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Band {
    /// θ as a fraction: 0.05 for 5 points (absolute) or 5 % (relative).
    pub width: f64,
    pub kind: BandKind,
}

impl Band {
    pub fn new_checked(width: f64, kind: BandKind) -> Result<Band> {
        if !Band::valid(width, kind) {
            let range = if kind == BandKind::Absolute { "in (0, 1)" } else { "> 0" };
            return Err(CoreError::config("threshold", width, format!("threshold must be {range}")));
        }
        Ok(Band { width, kind })
    }

    /// Whether [`Band::new_checked`] takes `width` for `kind`.
    #[inline]
    pub(crate) fn valid(width: f64, kind: BandKind) -> bool {
        width.is_finite() && width > 0.0 && (kind == BandKind::Relative || width < 1.0)
    }

    /// Half-width of the band around `target`, in weight points.
    pub fn half_width(&self, target: f64) -> f64 {
        match self.kind {
            BandKind::Absolute => self.width,
            BandKind::Relative => self.width * target,
        }
    }

    /// Whether `weight` is on or outside the band around `target`.
    pub fn breached(&self, weight: f64, target: f64) -> bool {
        self.exceeded_by((weight - target).abs(), target)
    }

    /// Whether a deviation `d` = |weight − target| reaches the band's edge.
    #[inline]
    pub fn exceeded_by(&self, d: f64, target: f64) -> bool {
        d >= self.half_width(target) - BAND_TOLERANCE
    }
}

/// A band's edge around target t as `per_target · t + offset`, `offset`
/// being the fixed part less [`BAND_TOLERANCE`]: (0, θ − tol) for an
/// absolute band, (θ, 0 − tol) for a relative one, (0, ∞) for none. The same
/// bits as `(fixed + per_target · t) − tol` (what [`Band::exceeded_by`]
/// works out) because one part is +0: 0 · t + (θ − tol) is θ − tol, which is
/// never −0, and θt + (0 − tol) is θt − tol. So one addition per holding,
/// and no branch on the kind: in a mixed book a branch on it mispredicts
/// from one portfolio to the next.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Edge {
    per_target: f64,
    offset: f64,
}

impl Edge {
    /// The edge of `band`, or none (never reached).
    #[inline]
    pub fn of(band: Option<Band>) -> Edge {
        let (width, banded) = (band.map_or(0.0, |b| b.width), band.is_some());
        let relative = band.is_some_and(|b| b.kind == BandKind::Relative);
        let fixed = select_unpredictable(banded, select_unpredictable(relative, 0.0, width), f64::INFINITY);
        Edge {
            per_target: select_unpredictable(banded & relative, width, 0.0),
            offset: fixed - BAND_TOLERANCE,
        }
    }

    /// No band: nothing is ever outside it.
    pub fn is_none(self) -> bool {
        self.offset == f64::INFINITY
    }

    /// Whether a deviation `d` from `target` reaches the edge.
    #[inline]
    pub fn exceeded_by(self, d: f64, target: f64) -> bool {
        d >= self.per_target * target + self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_band_fires_at_its_edge_and_not_inside() {
        let band = Band::new_checked(0.05, BandKind::Absolute).expect("valid");
        assert!(band.breached(0.35, 0.30));
        assert!(band.breached(0.25, 0.30));
        assert!(!band.breached(0.3499, 0.30));
        assert!(!band.breached(0.2501, 0.30));
    }

    #[test]
    fn relative_band_scales_with_the_target() {
        let band = Band::new_checked(0.15, BandKind::Relative).expect("valid");
        assert!(band.breached(0.23, 0.20));
        assert!(band.breached(0.17, 0.20));
        assert!(!band.breached(0.2299, 0.20));
    }

    #[test]
    fn bad_thresholds_are_refused() {
        assert!(Band::new_checked(0.0, BandKind::Absolute).is_err());
        assert!(Band::new_checked(1.0, BandKind::Absolute).is_err());
        assert!(Band::new_checked(f64::NAN, BandKind::Relative).is_err());
        assert!(Band::new_checked(2.0, BandKind::Relative).is_ok());
    }

    #[test]
    fn an_edge_keeps_its_bits_at_special_values() {
        let special = [0.0, -0.0, BAND_TOLERANCE, -BAND_TOLERANCE, 1e-300, 5e-324, 0.05, 1.0, f64::MAX, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
        for (width, d, target) in special.into_iter().flat_map(|w| special.into_iter().flat_map(move |d| special.map(|t| (w, d, t)))) {
            for (banded, relative) in [(false, false), (true, false), (true, true)] {
                let kind = if relative { BandKind::Relative } else { BandKind::Absolute };
                let edge = Edge::of(banded.then_some(Band { width, kind }));
                let (fixed, per_target) = [(f64::INFINITY, 0.0), (width, 0.0), (0.0, width)][usize::from(banded) + usize::from(relative)];
                let full = (fixed + per_target * target) - BAND_TOLERANCE;
                for d in [d, full] {
                    assert_eq!(edge.exceeded_by(d, target), d >= full, "{width} {d} {target} {banded} {relative}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn an_edge_decides_as_its_band_does(width in 1e-6..0.999f64, relative: bool, d in 0.0..1.0f64, target in 0.0..=1.0f64) {
            let kind = if relative { BandKind::Relative } else { BandKind::Absolute };
            let band = Band::new_checked(width, kind).expect("valid");
            proptest::prop_assert_eq!(Edge::of(Some(band)).exceeded_by(d, target), band.exceeded_by(d, target));
            // On the edge itself too, where a bit either way decides.
            let on = band.half_width(target) - BAND_TOLERANCE;
            proptest::prop_assert_eq!(Edge::of(Some(band)).exceeded_by(on, target), band.exceeded_by(on, target));
            proptest::prop_assert!(!Edge::of(None).exceeded_by(d, target) && Edge::of(None).is_none() && !Edge::of(Some(band)).is_none());
        }

        #[test]
        fn an_edge_decides_as_fixed_plus_per_target_less_the_tolerance(width: u64, relative: bool, banded: bool, d: u64, target: u64) {
            // Any bits, NaN, infinities and −0 among them: the folded
            // tolerance gives the same decision as the sum worked out in full.
            let (width, d, target) = (f64::from_bits(width), f64::from_bits(d), f64::from_bits(target));
            let kind = if relative { BandKind::Relative } else { BandKind::Absolute };
            let edge = Edge::of(banded.then_some(Band { width, kind }));
            let (fixed, per_target) = match (banded, relative) {
                (false, _) => (f64::INFINITY, 0.0),
                (true, false) => (width, 0.0),
                (true, true) => (0.0, width),
            };
            proptest::prop_assert_eq!(edge.exceeded_by(d, target), d >= (fixed + per_target * target) - BAND_TOLERANCE);
            // On the edge itself, where a bit either way decides.
            let on = (fixed + per_target * target) - BAND_TOLERANCE;
            proptest::prop_assert!(edge.exceeded_by(on, target) == (on >= on));
        }
    }
}
