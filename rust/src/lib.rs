//! rebal core: exact portfolio rebalancing over columns.
//!
//! Pure: no I/O, no clock, no Python. Time and prices come in as arguments.
//! The Python bindings live in [`python`] behind the `python` feature.

pub mod batch;
pub mod book;
pub mod error;
pub mod fills;
pub mod flows;
pub mod hold;
pub mod lots;
pub mod market;
pub mod metrics;
pub mod plan;
pub mod portfolio;
pub mod trigger;
pub mod workers;

#[cfg(feature = "python")]
mod python;

pub use error::{CoreError, ErrorKind, Result};
pub use lots::Amount;
pub use market::{Market, Quote, Refusal};
pub use plan::{client_order_id, plan, plan_into, plan_to, Destination, Leg, Outcome, PlanOutput, PlanParams, Scratch, Side, Skip, SkipReason};
pub use portfolio::PortfolioRef;
pub use trigger::{Band, BandKind};
