//! Market rules of one trading pair, as ccxt exposes them in `precision` and
//! `limits`: amount step (lot size), minimum / maximum amount, minimum
//! notional, price tick, fees. Every check here is exact.

use crate::error::{CoreError, Result};
use std::cmp::Ordering;

use rust_decimal::Decimal;

use crate::lots::{cmp_notional, notional_at_least, price_decimal, Amount};

#[derive(Clone, Debug, PartialEq)]
pub struct Market {
    pub symbol: String,
    pub base: String,
    pub quote: String,
    /// Lot size: every order amount is a whole multiple of it.
    pub step: Amount,
    pub min_amount: Amount,
    pub max_amount: Option<Amount>,
    /// Minimum order value in the quote asset.
    pub min_notional: Amount,
    pub max_notional: Option<Amount>,
    pub price_tick: Option<Amount>,
    pub maker_fee: f64,
    pub taker_fee: f64,
    /// A suspended / delisted market takes no orders; its asset is held as it is.
    pub active: bool,
}

impl Market {
    /// A market with only a step; limits zero, fees zero, active.
    pub fn new(symbol: &str, base: &str, quote: &str, step: Amount) -> Self {
        Market {
            symbol: symbol.into(),
            base: base.into(),
            quote: quote.into(),
            step,
            min_amount: Amount::ZERO,
            max_amount: None,
            min_notional: Amount::ZERO,
            max_notional: None,
            price_tick: None,
            maker_fee: 0.0,
            taker_fee: 0.0,
            active: true,
        }
    }

    /// Checks the rules are usable; the error names the market and field.
    pub fn validate(&self) -> Result<()> {
        let field = |name: &str| format!("markets[{}].{name}", self.symbol);
        if self.symbol.is_empty() || self.base.is_empty() || self.quote.is_empty() {
            return Err(CoreError::market(field("symbol"), &self.symbol, "symbol, base and quote must be non-empty"));
        }
        if self.step <= Amount::ZERO {
            return Err(CoreError::market(field("step"), self.step, "amount step must be > 0"));
        }
        if self.min_amount.is_negative() {
            return Err(CoreError::market(field("min_amount"), self.min_amount, "must be >= 0"));
        }
        if let Some(max) = self.max_amount {
            if max < self.min_amount || max < self.step {
                return Err(CoreError::market(field("max_amount"), max, "must be >= min_amount and >= step"));
            }
        }
        if self.min_notional.is_negative() {
            return Err(CoreError::market(field("min_notional"), self.min_notional, "must be >= 0"));
        }
        if let Some(max) = self.max_notional {
            if max <= Amount::ZERO || max < self.min_notional {
                return Err(CoreError::market(field("max_notional"), max, "must be > 0 and >= min_notional"));
            }
        }
        if let Some(tick) = self.price_tick {
            if tick <= Amount::ZERO {
                return Err(CoreError::market(field("price_tick"), tick, "must be > 0"));
            }
        }
        if !(self.taker_fee.is_finite() && (0.0..1.0).contains(&self.taker_fee)) {
            return Err(CoreError::market(field("taker_fee"), self.taker_fee, "must be in [0, 1)"));
        }
        if !(self.maker_fee.is_finite() && self.maker_fee > -1.0 && self.maker_fee < 1.0) {
            return Err(CoreError::market(field("maker_fee"), self.maker_fee, "must be in (-1, 1)"));
        }
        Ok(())
    }

    /// `amount` truncated toward zero to a whole number of lots.
    pub fn amount_to_precision(&self, amount: Amount) -> Amount {
        amount.truncate_to(self.step)
    }

    /// Whole lots in `amount` (truncated toward zero; never negative).
    pub fn lots_in(&self, amount: Amount) -> i128 {
        amount.lots(self.step).max(0)
    }

    /// `n` lots as an exact amount.
    pub fn lots_amount(&self, n: i128) -> Amount {
        Amount::of_lots(n, self.step).unwrap_or(Amount::MAX)
    }

    /// The most lots one order may carry (`i128::MAX` when unlimited).
    pub fn max_lots(&self, price: f64) -> i128 {
        let by_amount = self.max_amount.map_or(i128::MAX, |max| max.lots(self.step));
        let by_notional = self.max_notional.map_or(i128::MAX, |max| {
            let mut n = (max.to_f64() / (self.step.to_f64() * price)).floor() as i128;
            // Float estimate, then the exact boundary: the largest n with n·step·price ≤ max.
            while n > 0 && !notional_at_most(self.lots_amount(n), price, max) {
                n -= 1;
            }
            while notional_at_most(self.lots_amount(n + 1), price, max) {
                n += 1;
            }
            n
        });
        by_amount.min(by_notional)
    }

    /// Smallest number of lots an order may carry at `price` (≥ 1).
    pub fn min_lots(&self, price: f64) -> i128 {
        let by_amount = ceil_div(self.min_amount.atoms(), self.step.atoms()).max(1);
        if self.min_notional.is_zero() {
            return by_amount;
        }
        let estimate = (self.min_notional.to_f64() / (self.step.to_f64() * price)).ceil() as i128;
        let mut n = estimate.max(1);
        while n > 1 && notional_at_least(self.lots_amount(n - 1), price, self.min_notional) {
            n -= 1;
        }
        while !notional_at_least(self.lots_amount(n), price, self.min_notional) {
            n += 1;
        }
        n.max(by_amount)
    }

    /// Why an order of `lots` at `price` would be refused, or `None` if it passes.
    pub fn refusal(&self, lots: i64, price: f64) -> Option<Refusal> {
        Quote::new(self, price).refusal(lots)
    }
}

/// A market's rules at one price, worked out once per tick and shared by
/// every portfolio planned at that price, so the planner asks only integers.
#[derive(Clone, Debug, PartialEq)]
pub struct Quote {
    pub price: f64,
    pub step: Amount,
    /// Value of one lot at `price`.
    pub lot_value: f64,
    /// 1 / `lot_value`, by which the planner turns amounts into lots.
    pub per_lot: f64,
    pub taker_fee: f64,
    /// `price` and `taker_fee` as the exact decimals their shortest digits
    /// spell (`None` past 28 digits): parsed once per tick, not per plan.
    pub price_exact: Option<Decimal>,
    pub taker_fee_exact: Option<Decimal>,
    /// Takes orders: the market is active and the price is usable.
    pub active: bool,
    /// Fewest lots the minimum amount allows (≥ 1).
    pub min_lots_by_amount: i64,
    /// Fewest lots an order may carry: minimum amount and minimum notional.
    pub min_lots: i64,
    /// Most lots one order may carry.
    pub max_lots: i64,
}

impl Quote {
    /// The rules of `market` at `price`. A price that is not finite and > 0
    /// gives a quote that refuses every order (callers validate prices first).
    pub fn new(market: &Market, price: f64) -> Quote {
        let usable = price.is_finite() && price > 0.0;
        let clamp = |n: i128| n.clamp(0, i64::MAX as i128) as i64;
        let by_amount = clamp(ceil_div(market.min_amount.atoms(), market.step.atoms()).max(1));
        let lot_value = market.step.to_f64() * price;
        Quote {
            price,
            step: market.step,
            lot_value,
            per_lot: 1.0 / lot_value,
            taker_fee: market.taker_fee,
            price_exact: price_decimal(price),
            taker_fee_exact: price_decimal(market.taker_fee),
            active: market.active && usable,
            min_lots_by_amount: by_amount,
            min_lots: if usable { clamp(market.min_lots(price)) } else { i64::MAX },
            max_lots: if usable { clamp(market.max_lots(price)) } else { 0 },
        }
    }

    /// Why an order of `lots` would be refused, or `None` if it passes.
    pub fn refusal(&self, lots: i64) -> Option<Refusal> {
        refusal(self.active, lots, self.min_lots_by_amount, self.min_lots, self.max_lots)
    }

    /// Whole lots in `amount` (truncated toward zero; never negative).
    pub fn lots_in(&self, amount: Amount) -> i64 {
        amount.lots(self.step).clamp(0, i64::MAX as i128) as i64
    }

    /// [`Quote::lots_in`] given a float estimate of the count (see [`Amount::lots_near`]).
    #[inline]
    pub fn lots_in_near(&self, amount: Amount, estimate: f64) -> i64 {
        amount.lots_near(self.step, estimate).clamp(0, i64::MAX as i128) as i64
    }

    /// `n` lots as an exact amount.
    #[inline]
    pub fn lots_amount(&self, n: i64) -> Amount {
        // A count ≥ 0 (under 2⁶³) times a step under 2⁶⁴ atoms is under 2¹²⁷:
        // one 64×64-bit product, no overflow to check.
        match (u64::try_from(n), u64::try_from(self.step.atoms())) {
            (Ok(n), Ok(step)) => Amount::from_atoms((n as u128 * step as u128) as i128),
            _ => Amount::of_lots(n as i128, self.step).unwrap_or(Amount::MAX),
        }
    }
}

/// Why the market would not take an order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    BelowStep,
    MinAmount,
    MinNotional,
    MaxAmount,
    MarketInactive,
}

fn notional_at_most(amount: Amount, price: f64, max: Amount) -> bool {
    cmp_notional(amount, price, max) != Ordering::Greater
}

fn ceil_div(a: i128, b: i128) -> i128 {
    if a <= 0 {
        0
    } else {
        (a + b - 1) / b
    }
}

/// The rule an order of `lots` breaks, in the order the exchanges check
/// them, given a quote's limits (the planner keeps a copy per row).
#[inline]
pub(crate) fn refusal(active: bool, lots: i64, min_lots_by_amount: i64, min_lots: i64, max_lots: i64) -> Option<Refusal> {
    if !active {
        Some(Refusal::MarketInactive)
    } else if lots <= 0 {
        Some(Refusal::BelowStep)
    } else if lots < min_lots_by_amount {
        Some(Refusal::MinAmount)
    } else if lots < min_lots {
        Some(Refusal::MinNotional)
    } else if lots > max_lots {
        Some(Refusal::MaxAmount)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Amount {
        Amount::parse(s).expect("valid amount")
    }

    fn btc() -> Market {
        let mut m = Market::new("BTC/USDT", "BTC", "USDT", a("0.00001"));
        m.min_amount = a("0.00001");
        m.max_amount = Some(a("9000"));
        m.min_notional = a("5");
        m.taker_fee = 0.001;
        m
    }

    #[test]
    fn min_lots_meets_min_notional_exactly() {
        let m = btc();
        // 5 USDT at 50,000 is exactly 0.0001 BTC = 10 lots.
        assert_eq!(m.min_lots(50_000.0), 10);
        assert_eq!(m.refusal(10, 50_000.0), None);
        assert_eq!(m.refusal(9, 50_000.0), Some(Refusal::MinNotional));
        assert_eq!(m.min_lots(49_999.0), 11);
    }

    #[test]
    fn refusals_name_the_rule() {
        let mut m = btc();
        m.min_notional = Amount::ZERO;
        m.min_amount = a("0.001");
        assert_eq!(m.refusal(99, 1.0), Some(Refusal::MinAmount));
        assert_eq!(m.refusal(100, 1.0), None);
        assert_eq!(m.refusal(900_000_001, 1.0), Some(Refusal::MaxAmount));
        m.active = false;
        assert_eq!(m.refusal(100, 1.0), Some(Refusal::MarketInactive));
    }

    #[test]
    fn lots_amount_is_the_exact_product() {
        // Steps under and over 2⁶⁴ atoms, counts either sign, up to i64::MAX (past i128 saturates).
        for step in [1i128, 10_000_000_000, u64::MAX as i128, u64::MAX as i128 + 1, 1 << 100] {
            let mut m = btc();
            m.step = Amount::from_atoms(step);
            let q = Quote::new(&m, 50_000.0);
            for n in [0i64, 1, 7, 123_456_789, i64::MAX, -1, i64::MIN] {
                let exact = (n as i128).checked_mul(step).map_or(Amount::MAX, Amount::from_atoms);
                assert_eq!(q.lots_amount(n), exact, "{n} lots of {step}");
            }
        }
    }

    #[test]
    fn validation_names_field_and_value() {
        let mut m = btc();
        m.step = Amount::ZERO;
        let e = m.validate().expect_err("zero step");
        assert_eq!(e.field, "markets[BTC/USDT].step");
        assert_eq!(e.value, "0");
        let mut m = btc();
        m.taker_fee = f64::NAN;
        assert_eq!(m.validate().expect_err("nan fee").field, "markets[BTC/USDT].taker_fee");
    }
}
