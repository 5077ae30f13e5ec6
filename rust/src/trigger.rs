//! When a portfolio rebalances: the deviation band (threshold trigger).
//!
//! `absolute`: θ in weight points (30 % target, θ = 5 points → fires at
//! ≥ 35 % or ≤ 25 %; Binance / BigONE / Bitget). `relative`: θ as a fraction
//! of the target (20 % target, θ = 15 % → fires at ≥ 23 %; Shrimpy / bt).

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
        let ok = width.is_finite() && width > 0.0 && (kind == BandKind::Relative || width < 1.0);
        if !ok {
            let range = if kind == BandKind::Absolute { "in (0, 1)" } else { "> 0" };
            return Err(CoreError::config("threshold", width, format!("threshold must be {range}")));
        }
        Ok(Band { width, kind })
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
}
