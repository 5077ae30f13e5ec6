//! Typed errors of the core. Every bad input names the field and the value,
//! so the host can tell the user exactly what to fix.

use thiserror::Error;

/// What kind of input was wrong; the bindings map each kind to its own
/// Python exception class (all of them `ValueError`s).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Strategy configuration: assets, weights, thresholds, destinations.
    Config,
    /// A price that is missing, zero, negative or not finite.
    Price,
    /// An amount (holding, cash, fill) that is negative or not exact.
    Amount,
    /// Market rules: step, limits, fees.
    Market,
}

#[derive(Clone, Debug, PartialEq, Error)]
#[error("{field}: {reason} (got {value})")]
pub struct CoreError {
    pub kind: ErrorKind,
    /// Where the bad value sits, e.g. `targets[BTC]` or `prices[3]`.
    pub field: String,
    /// The offending value as the caller gave it.
    pub value: String,
    pub reason: String,
}

impl CoreError {
    pub fn new(
        kind: ErrorKind,
        field: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
    pub fn config(field: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, field, value, reason)
    }
    pub fn price(field: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Price, field, value, reason)
    }
    pub fn amount(field: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Amount, field, value, reason)
    }
    pub fn market(field: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::Market, field, value, reason)
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;
