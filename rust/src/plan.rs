//! The planner: the smallest order set that restores one portfolio's weights
//! within its markets' rules (SPEC §2).
//!
//! Steps, all over one portfolio's columns and a reusable [`Scratch`]:
//! 1. value and deviation; stop unless the band is breached (or no band);
//! 2. destination weights: the target, or the minimal move into the (inner)
//!    band with the remainder spread toward the targets;
//! 3. sells sized on the post-fee value V′, found as a fixed point of
//!    V′ = V − (an upper bound of the fees the plan will pay), so that
//!    re-planning after the fills yields no orders;
//! 4. buys funded by free cash plus the sells' proceeds net of fees, scaled
//!    down if short, then the leftover cash topped up into the most
//!    underweight assets (water-filling, then lot by lot);
//! 5. an exact decimal check that cash never goes negative after fees.

use std::cmp::Ordering;

use rust_decimal::Decimal;

use crate::error::{CoreError, Result};
use crate::lots::{price_decimal, Amount, FLOAT_DOUBT};
use crate::market::{Market, Refusal};
use crate::portfolio::PortfolioRef;
use crate::trigger::{Band, BAND_TOLERANCE};

/// Where a triggered rebalance takes the weights.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Destination {
    /// All the way back to the target weights (the exchanges' behaviour).
    Target,
    /// Just back inside the band (Leland's policy under proportional costs).
    BandEdge,
    /// Back to k·θ from the target, 0 ≤ k ≤ 1 (e.g. Vanguard's 200/175).
    InnerBand(f64),
}

impl Destination {
    /// The destination box's half-width as a fraction of the band.
    fn band_fraction(self) -> f64 {
        match self {
            Destination::Target => 0.0,
            Destination::BandEdge => 1.0,
            Destination::InnerBand(k) => k,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq)]
pub struct PlanParams {
    pub destination: Destination,
    /// The trigger band; `None` plans unconditionally (a "rebalance now").
    pub band: Option<Band>,
    /// One fee rate for every market; `None` uses each market's taker fee.
    pub fee_rate: Option<f64>,
}

impl Default for PlanParams {
    fn default() -> Self {
        PlanParams { destination: Destination::Target, band: None, fee_rate: None }
    }
}

impl PlanParams {
    pub fn validate(&self) -> Result<()> {
        if let Destination::InnerBand(k) = self.destination {
            if !(k.is_finite() && (0.0..=1.0).contains(&k)) {
                return Err(CoreError::config("destination", k, "inner_band k must be in [0, 1]"));
            }
        }
        if self.destination != Destination::Target && self.band.is_none() {
            return Err(CoreError::config(
                "destination",
                format!("{:?}", self.destination),
                "a band destination needs a threshold",
            ));
        }
        if let Some(f) = self.fee_rate {
            if !(f.is_finite() && (0.0..1.0).contains(&f)) {
                return Err(CoreError::config("fee_rate", f, "fee rate must be in [0, 1)"));
            }
        }
        Ok(())
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// One order of the plan, against the quote asset.
#[derive(Clone, Debug, PartialEq)]
pub struct Leg {
    /// Position of the asset within the portfolio (the leg number of its client id).
    pub position: u32,
    pub asset: u32,
    pub side: Side,
    /// Exact multiple of the market step.
    pub amount: Amount,
    /// The price the plan assumed.
    pub price: f64,
    pub notional: f64,
    pub fee: f64,
}

/// Why a wanted leg was not sent.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    MinAmount,
    MinNotional,
    /// The part above the market's maximum order size.
    MaxAmount,
    MarketInactive,
    /// A buy the free cash and the sells' proceeds could not fund.
    InsufficientCash,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::MinAmount => "min_amount",
            SkipReason::MinNotional => "min_notional",
            SkipReason::MaxAmount => "max_amount",
            SkipReason::MarketInactive => "market_inactive",
            SkipReason::InsufficientCash => "insufficient_cash",
        }
    }
}

/// A leg not sent: unexecutable drift the host may report, carry or fold in.
#[derive(Clone, Debug, PartialEq)]
pub struct Skip {
    pub position: u32,
    pub asset: u32,
    pub side: Side,
    /// The wanted amount, in whole lots.
    pub amount: Amount,
    pub reason: SkipReason,
}

/// Per-portfolio figures of one planning pass.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Value before the plan: cash + Σ amount·price.
    pub value: f64,
    /// Largest |weight − target| in weight points.
    pub max_deviation: f64,
    /// Largest |weight − target| / target.
    pub max_relative_deviation: f64,
    pub triggered: bool,
    /// Estimated value after the plan's fees (the V′ the legs were sized on).
    pub value_after: f64,
    /// Free cash after the plan fills at the assumed prices.
    pub cash_after: f64,
    pub fees: f64,
}

/// Deterministic client order id: portfolio, rebalance epoch, leg. At most 36
/// characters for any u64 portfolio and u32 epoch (Binance's limit), so a
/// retried submission can always be recognised by the exchange.
pub fn client_order_id(portfolio: u64, epoch: u32, leg: u32) -> String {
    format!("rb{portfolio}-{epoch}-{leg}")
}

/// Working columns of one planning pass, reused across portfolios.
#[derive(Default)]
pub struct Scratch {
    rows: Vec<Row>,
    order: Vec<usize>,
}

#[derive(Copy, Clone, Default)]
struct Row {
    price: f64,
    lot_value: f64,
    fee: f64,
    value: f64,
    target: f64,
    dest: f64,
    held_lots: i128,
    max_lots: i128,
    min_lots: i128,
    tradable: bool,
    sell: i128,
    buy: i128,
    wanted_buy: i128,
}

impl Row {
    /// Cash one more lot bought costs, fee included.
    fn lot_cost(&self) -> f64 {
        self.lot_value * (1.0 + self.fee)
    }
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum Rounding {
    /// Toward zero: never past the destination (exchanges' truncation).
    Truncate,
    /// Up to the whole lot that reaches the destination: lands inside a band.
    Inward,
}

/// Float noise allowed when turning a wanted amount into lots: relative to
/// the count, but never more than a thousandth of a lot.
const LOT_TOLERANCE: f64 = 1e-9;
const MAX_LOT_TOLERANCE: f64 = 1e-3;
const MAX_FIXED_POINT_ROUNDS: usize = 64;

fn to_lots(x: f64, mode: Rounding) -> i128 {
    if !(x > 0.0) {
        return 0;
    }
    let tol = (LOT_TOLERANCE * x.max(1.0)).min(MAX_LOT_TOLERANCE);
    let lots = match mode {
        Rounding::Truncate => (x + tol).floor(),
        Rounding::Inward => (x - tol).ceil(),
    };
    lots.max(0.0) as i128 // `as` saturates
}

/// Plans one portfolio, appending its orders to `legs` (sells first, then
/// buys) and the legs not sent to `skips`. Input must have passed
/// [`PortfolioRef::validate`] and [`PlanParams::validate`].
pub fn plan_into(
    p: &PortfolioRef<'_>,
    prices: &[f64],
    markets: &[Market],
    params: &PlanParams,
    scratch: &mut Scratch,
    legs: &mut Vec<Leg>,
    skips: &mut Vec<Skip>,
) -> Outcome {
    let Scratch { rows, order } = scratch;
    rows.clear();
    let cash = p.cash.to_f64();
    let mut value = cash;
    for (i, &asset) in p.assets.iter().enumerate() {
        let market = &markets[asset as usize];
        let price = prices[asset as usize];
        let row = Row {
            price,
            lot_value: market.step.to_f64() * price,
            fee: params.fee_rate.unwrap_or(market.taker_fee),
            value: p.amounts[i].to_f64() * price,
            target: p.targets[i],
            held_lots: market.lots_in(p.amounts[i]),
            tradable: market.active,
            ..Row::default()
        };
        value += row.value;
        rows.push(row);
    }
    let mut out = Outcome { value, ..Outcome::default() };
    if !(value > 0.0 && value.is_finite()) {
        return out;
    }

    // 1. Deviation and trigger.
    let mut triggered = params.band.is_none();
    let mut check = |weight: f64, target: f64| {
        let d = (weight - target).abs();
        out.max_deviation = out.max_deviation.max(d);
        if target > 0.0 {
            out.max_relative_deviation = out.max_relative_deviation.max(d / target);
        }
        if let Some(band) = params.band {
            triggered |= target > 0.0 && band.breached(weight, target);
        }
    };
    for (row, &target) in rows.iter().zip(p.targets) {
        check(row.value / value, target);
    }
    if p.cash_target > 0.0 {
        check(cash / value, p.cash_target);
    }
    out.triggered = triggered;
    if !triggered {
        return out;
    }

    // 2. Destination weights.
    let cash_dest = destination_weights(rows, p, params, value, cash);
    let mode = if params.destination == Destination::Target { Rounding::Truncate } else { Rounding::Inward };
    for (row, &asset) in rows.iter_mut().zip(p.assets) {
        let market = &markets[asset as usize];
        row.max_lots = market.max_lots(row.price);
        row.min_lots = market.min_lots(row.price);
    }

    // 3. Sells on the post-fee value: V′ = V − sell fees − (buy fees on all cash to spend).
    let max_buy_fee = rows.iter().filter(|r| r.tradable).map(|r| r.fee).fold(0.0, f64::max);
    let buy_fee_share = max_buy_fee / (1.0 + max_buy_fee);
    let estimate = |rows: &[Row], v_after: f64| {
        let (proceeds, fees) = rows.iter().fold((0.0, 0.0), |(p, f), r| {
            let notional = r.sell as f64 * r.lot_value;
            (p + notional * (1.0 - r.fee), f + notional * r.fee)
        });
        let spendable = (cash - cash_dest * v_after + proceeds).max(0.0);
        (proceeds, value - fees - buy_fee_share * spendable)
    };
    let mut v_after = value;
    size_sells(rows, p, markets, v_after, mode);
    for _ in 0..MAX_FIXED_POINT_ROUNDS {
        v_after = estimate(rows, v_after).1;
        if !size_sells(rows, p, markets, v_after, mode) {
            break;
        }
    }
    let (proceeds, _) = estimate(rows, v_after);

    // 4. Buys within the budget, then the leftover topped up.
    let mut budget = cash - cash_dest * v_after + proceeds;
    size_buys(rows, p, markets, v_after, mode);
    let mut cost: f64 = rows.iter().map(|r| r.buy as f64 * r.lot_cost()).sum();
    if cost > budget && mode == Rounding::Inward {
        budget += fund_shortfall(rows, p, params, v_after, cost - budget);
    }
    if cost > budget {
        let scale = (budget / cost).max(0.0);
        for (row, &asset) in rows.iter_mut().zip(p.assets) {
            let scaled = (row.buy as f64 * scale).floor() as i128;
            row.buy = if markets[asset as usize].refusal(scaled, row.price).is_none() { scaled } else { 0 };
        }
        cost = rows.iter().map(|r| r.buy as f64 * r.lot_cost()).sum();
    }
    top_up(rows, order, v_after, (budget - cost).max(0.0));

    // 5. Exact decimals where floats are in doubt: never below zero cash,
    //    and no affordable lot left unbought.
    let spent = |rows: &[Row]| rows.iter().map(|r| r.buy as f64 * r.lot_cost()).sum::<f64>();
    let mut cash_after = cash + proceeds - spent(rows);
    let doubt = FLOAT_DOUBT * value;
    let in_doubt = cash_after < doubt
        || rows.iter().any(|r| r.tradable && r.sell == 0 && r.min_lots.max(1) as f64 * r.lot_cost() <= cash_after + doubt);
    if in_doubt && settle_exactly(p, markets, rows, v_after) {
        cash_after = cash + proceeds - spent(rows);
    }

    record_skips(rows, p, markets, v_after, mode, skips);
    emit_legs(rows, p, markets, legs, &mut out);
    out.value_after = v_after;
    out.cash_after = cash_after;
    out
}

/// Post-trade weight of each asset (written to `row.dest`) and of the cash.
fn destination_weights(rows: &mut [Row], p: &PortfolioRef<'_>, params: &PlanParams, value: f64, cash: f64) -> f64 {
    let k = params.destination.band_fraction();
    let band = match params.band {
        Some(band) if k > 0.0 => band,
        _ => {
            for (row, &t) in rows.iter_mut().zip(p.targets) {
                row.dest = t;
            }
            return p.cash_target;
        }
    };
    // The minimal move into the box [t − k·b, t + k·b] ...
    // Strictly inside the band: a weight exactly on its edge would fire again.
    let clamp = |w: f64, t: f64| {
        let half = (k * band.half_width(t) - 4.0 * BAND_TOLERANCE).max(0.0);
        w.clamp(t - half, t + half)
    };
    for (row, &t) in rows.iter_mut().zip(p.targets) {
        row.dest = clamp(row.value / value, t);
    }
    // Cash not among the coins is fully invested (its box is [0, 0]).
    let mut cash_dest = if p.cash_target > 0.0 { clamp(cash / value, p.cash_target) } else { 0.0 };
    // ... then the sum brought back to 1, moving only toward the targets, in
    // proportion to each weight's remaining distance to its target.
    let sum = cash_dest + rows.iter().map(|r| r.dest).sum::<f64>();
    let gap = 1.0 - sum;
    let toward = |dest: f64, t: f64| if gap > 0.0 { (t - dest).max(0.0) } else { (dest - t).max(0.0) };
    let room = toward(cash_dest, p.cash_target)
        + rows.iter().zip(p.targets).map(|(r, &t)| toward(r.dest, t)).sum::<f64>();
    if room > 0.0 {
        let share = gap / room;
        for (row, &t) in rows.iter_mut().zip(p.targets) {
            row.dest += share * toward(row.dest, t);
        }
        cash_dest += share * toward(cash_dest, p.cash_target);
    }
    cash_dest
}

/// In band modes a buy rounded up to land inside the band can cost up to a
/// lot more than the sells rounded up yield. Sells a few more lots of the
/// assets furthest above their target, as long as they stay inside their
/// destination box; returns the extra proceeds.
fn fund_shortfall(rows: &mut [Row], p: &PortfolioRef<'_>, params: &PlanParams, v_after: f64, mut shortfall: f64) -> f64 {
    let (Some(band), k) = (params.band, params.destination.band_fraction()) else { return 0.0 };
    let mut raised = 0.0;
    for _ in 0..rows.len() {
        let surplus = |r: &Row| r.value - r.sell as f64 * r.lot_value - r.target * v_after;
        let Some(i) = (0..rows.len())
            .filter(|&i| rows[i].sell > 0 && rows[i].sell < rows[i].held_lots.min(rows[i].max_lots))
            .max_by(|&a, &b| cmp_f64(surplus(&rows[a]), surplus(&rows[b])))
        else {
            break;
        };
        let r = &mut rows[i];
        let net = r.lot_value * (1.0 - r.fee);
        // Room to the lower side of the destination box, in lots.
        let floor = r.target * v_after - k * band.half_width(p.targets[i]) * v_after;
        let room = to_lots((r.value - r.sell as f64 * r.lot_value - floor) / r.lot_value, Rounding::Truncate);
        let extra = (shortfall / net).ceil().min(room as f64).min((r.held_lots.min(r.max_lots) - r.sell) as f64);
        if extra < 1.0 {
            break;
        }
        let extra = extra as i128;
        r.sell += extra;
        raised += extra as f64 * net;
        shortfall -= extra as f64 * net;
        if shortfall <= 0.0 {
            break;
        }
    }
    raised
}

/// Sizes every sell at post-fee value `v_after`; returns whether any changed.
fn size_sells(rows: &mut [Row], p: &PortfolioRef<'_>, markets: &[Market], v_after: f64, mode: Rounding) -> bool {
    let mut changed = false;
    for (row, &asset) in rows.iter_mut().zip(p.assets) {
        let wanted = to_lots((row.value - row.dest * v_after) / row.lot_value, mode);
        let lots = wanted.min(row.held_lots).min(row.max_lots);
        let lots = if lots > 0 && markets[asset as usize].refusal(lots, row.price).is_none() { lots } else { 0 };
        changed |= lots != row.sell;
        row.sell = lots;
    }
    changed
}

fn size_buys(rows: &mut [Row], p: &PortfolioRef<'_>, markets: &[Market], v_after: f64, mode: Rounding) {
    for (row, &asset) in rows.iter_mut().zip(p.assets) {
        row.wanted_buy = if row.sell > 0 { 0 } else { to_lots((row.dest * v_after - row.value) / row.lot_value, mode) };
        let lots = row.wanted_buy.min(row.max_lots);
        row.buy = if lots > 0 && markets[asset as usize].refusal(lots, row.price).is_none() { lots } else { 0 };
    }
}

/// How far below its target an asset is after the plan's buys (in quote).
/// Leftover cash goes to the most underweight against the target, which in
/// band modes keeps every asset inside the band.
fn deficit(r: &Row, v_after: f64) -> f64 {
    r.target * v_after - (r.value + r.buy as f64 * r.lot_value)
}

/// Spends `cash` on the assets furthest below their target: water-fills to a
/// common deficit level over the assets that can afford their next
/// increment (repeated as assets drop out), then lot by lot.
fn top_up(rows: &mut [Row], order: &mut Vec<usize>, v_after: f64, mut cash: f64) {
    let deficit = |r: &Row| deficit(r, v_after);
    // Lots the next purchase must carry: the market minimum for a new leg, else one.
    let increment = |r: &Row| if r.buy == 0 { r.min_lots } else { 1 };
    let candidate = |r: &Row, cash: f64| {
        r.tradable
            && r.sell == 0
            // below its destination by more than float noise on one lot
            && deficit(r) > LOT_TOLERANCE * r.lot_value
            && r.buy + increment(r) <= r.max_lots
            && increment(r) as f64 * r.lot_cost() <= cash
    };

    for _ in 0..=rows.len() {
        order.clear();
        order.extend((0..rows.len()).filter(|&i| candidate(&rows[i], cash)));
        order.sort_by(|&a, &b| cmp_f64(deficit(&rows[b]), deficit(&rows[a])));
        // The level L with Σ (deficit − L)⁺·(1 + fee) = cash.
        let (mut weighted, mut weights, mut level) = (0.0, 0.0, 0.0);
        for (k, &i) in order.iter().enumerate() {
            let r = &rows[i];
            weighted += deficit(r) * (1.0 + r.fee);
            weights += 1.0 + r.fee;
            let candidate_level = ((weighted - cash) / weights).max(0.0);
            if candidate_level >= order.get(k + 1).map_or(0.0, |&j| deficit(&rows[j])) {
                level = candidate_level;
                break;
            }
        }
        let mut added = false;
        for &i in order.iter() {
            let r = &mut rows[i];
            let add = to_lots((deficit(r) - level) / r.lot_value, Rounding::Truncate).min(r.max_lots - r.buy);
            if add >= increment(r) && add as f64 * r.lot_cost() <= cash {
                r.buy += add;
                cash -= add as f64 * r.lot_cost();
                added = true;
            }
        }
        if !added {
            break;
        }
    }

    // The last few lots: the most underweight asset that can afford its next
    // increment, lifted to the next one's level (at least one increment).
    for _ in 0..(8 * rows.len() + 32) {
        let mut open = (0..rows.len()).filter(|&i| candidate(&rows[i], cash));
        let Some(first) = open.next() else { break };
        let (mut best, mut next_deficit) = (first, f64::NEG_INFINITY);
        for i in open {
            if deficit(&rows[i]) > deficit(&rows[best]) {
                next_deficit = deficit(&rows[best]);
                best = i;
            } else {
                next_deficit = next_deficit.max(deficit(&rows[i]));
            }
        }
        let r = &mut rows[best];
        let to_next = to_lots((deficit(r) - next_deficit.max(0.0)) / r.lot_value, Rounding::Inward);
        let affordable = (cash / r.lot_cost()).floor() as i128;
        let add = to_next.max(increment(r)).min(affordable).min(r.max_lots - r.buy);
        r.buy += add;
        cash -= add as f64 * r.lot_cost();
    }
}

/// Redoes the end of the budget in exact decimals: takes lots back while
/// cash would go negative, then tops up while a whole increment is
/// affordable. Returns whether it could (amounts within 96 bits).
fn settle_exactly(p: &PortfolioRef<'_>, markets: &[Market], rows: &mut [Row], v_after: f64) -> bool {
    let Some(mut cash) = exact_cash_after(p, markets, rows) else { return false };
    let exact_cost = |row: &Row, asset: u32, lots: i128| -> Option<Decimal> {
        let amount = markets[asset as usize].lots_amount(lots).to_decimal()?;
        amount.checked_mul(price_decimal(row.price)?)?.checked_mul(Decimal::ONE + price_decimal(row.fee)?)
    };
    while cash < Decimal::ZERO {
        let Some(largest) = (0..rows.len())
            .filter(|&i| rows[i].buy > 0)
            .max_by(|&a, &b| cmp_f64(rows[a].buy as f64 * rows[a].lot_value, rows[b].buy as f64 * rows[b].lot_value))
        else {
            return true;
        };
        let row = &mut rows[largest];
        let keep = if markets[p.assets[largest] as usize].refusal(row.buy - 1, row.price).is_none() { row.buy - 1 } else { 0 };
        let Some(refund) = exact_cost(row, p.assets[largest], row.buy - keep) else { return false };
        row.buy = keep;
        cash += refund;
    }
    let deficit = |r: &Row| deficit(r, v_after);
    for _ in 0..(8 * rows.len() + 32) {
        let best = (0..rows.len())
            .filter(|&i| {
                let r = &rows[i];
                let increment = if r.buy == 0 { r.min_lots } else { 1 };
                r.tradable
                    && r.sell == 0
                    && deficit(r) > LOT_TOLERANCE * r.lot_value
                    && r.buy + increment <= r.max_lots
                    && exact_cost(r, p.assets[i], increment).is_some_and(|c| c <= cash)
            })
            .max_by(|&a, &b| cmp_f64(deficit(&rows[a]), deficit(&rows[b])));
        let Some(i) = best else { break };
        let r = &mut rows[i];
        let increment = if r.buy == 0 { r.min_lots } else { 1 };
        let Some(lot) = exact_cost(r, p.assets[i], 1) else { return false };
        let affordable = i128::try_from((cash / lot).floor()).unwrap_or(increment);
        let wanted = to_lots(deficit(r) / r.lot_value, Rounding::Inward);
        let add = wanted.min(affordable).max(increment).min(r.max_lots - r.buy);
        let Some(cost) = exact_cost(r, p.assets[i], add) else { return false };
        if cost > cash {
            break;
        }
        r.buy += add;
        cash -= cost;
    }
    true
}

/// Cash after the plan fills at the assumed prices, in exact decimals.
fn exact_cash_after(p: &PortfolioRef<'_>, markets: &[Market], rows: &[Row]) -> Option<Decimal> {
    let mut cash = p.cash.to_decimal()?;
    for (row, &asset) in rows.iter().zip(p.assets) {
        let market = &markets[asset as usize];
        let fee = price_decimal(row.fee)?;
        let price = price_decimal(row.price)?;
        let (lots, sign, fee_factor) = if row.sell > 0 {
            (row.sell, Decimal::ONE, Decimal::ONE - fee)
        } else {
            (row.buy, Decimal::NEGATIVE_ONE, Decimal::ONE + fee)
        };
        if lots == 0 {
            continue;
        }
        let notional = market.lots_amount(lots).to_decimal()?.checked_mul(price)?;
        cash = cash.checked_add(sign * notional.checked_mul(fee_factor)?)?;
    }
    Some(cash)
}

fn record_skips(
    rows: &[Row],
    p: &PortfolioRef<'_>,
    markets: &[Market],
    v_after: f64,
    mode: Rounding,
    skips: &mut Vec<Skip>,
) {
    for (i, (row, &asset)) in rows.iter().zip(p.assets).enumerate() {
        let market = &markets[asset as usize];
        let excess = (row.value - row.dest * v_after) / row.lot_value;
        let (side, wanted, done) = if excess > 0.0 {
            (Side::Sell, to_lots(excess, mode).min(row.held_lots), row.sell)
        } else {
            (Side::Buy, row.wanted_buy, row.buy)
        };
        if wanted <= 0 || done >= wanted {
            continue;
        }
        let reason = if done > 0 {
            if wanted > row.max_lots { SkipReason::MaxAmount } else { continue }
        } else {
            match market.refusal(wanted.min(row.max_lots), row.price) {
                Some(Refusal::MinAmount) => SkipReason::MinAmount,
                Some(Refusal::MinNotional) => SkipReason::MinNotional,
                Some(Refusal::MarketInactive) => SkipReason::MarketInactive,
                Some(Refusal::MaxAmount) => SkipReason::MaxAmount,
                Some(Refusal::BelowStep) => continue,
                None if side == Side::Buy => SkipReason::InsufficientCash,
                None => continue,
            }
        };
        let missing = if reason == SkipReason::MaxAmount { wanted - row.max_lots } else { wanted };
        skips.push(Skip {
            position: i as u32,
            asset,
            side,
            amount: market.lots_amount(missing),
            reason,
        });
    }
}

fn emit_legs(rows: &[Row], p: &PortfolioRef<'_>, markets: &[Market], legs: &mut Vec<Leg>, out: &mut Outcome) {
    for side in [Side::Sell, Side::Buy] {
        for (i, (row, &asset)) in rows.iter().zip(p.assets).enumerate() {
            let lots = if side == Side::Sell { row.sell } else { row.buy };
            if lots <= 0 {
                continue;
            }
            let notional = lots as f64 * row.lot_value;
            out.fees += notional * row.fee;
            legs.push(Leg {
                position: i as u32,
                asset,
                side,
                amount: markets[asset as usize].lots_amount(lots),
                price: row.price,
                notional,
                fee: notional * row.fee,
            });
        }
    }
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// Validates and plans one portfolio into fresh vectors (the single-portfolio API).
pub fn plan(
    p: &PortfolioRef<'_>,
    prices: &[f64],
    markets: &[Market],
    params: &PlanParams,
) -> Result<(Outcome, Vec<Leg>, Vec<Skip>)> {
    params.validate()?;
    for market in markets {
        market.validate()?;
    }
    p.validate(prices, markets)?;
    let (mut legs, mut skips) = (Vec::new(), Vec::new());
    let outcome = plan_into(p, prices, markets, params, &mut Scratch::default(), &mut legs, &mut skips);
    Ok((outcome, legs, skips))
}

#[cfg(test)]
mod tests;
