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
use std::hint::select_unpredictable;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::error::{CoreError, Result};
use crate::lots::{price_decimal, Amount, FLOAT_DOUBT};
use crate::market::{self, Market, Quote, Refusal};
use crate::portfolio::{Drift, PortfolioRef};
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
    /// Whole lots of the market step.
    pub lots: i64,
    /// `lots` × step, exact.
    pub amount: Amount,
    /// The price the plan assumed.
    pub price: f64,
    pub notional: f64,
    pub fee: f64,
}

/// Why a wanted leg was not sent.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SkipReason {
    MinAmount,
    MinNotional,
    /// The part above the market's maximum order size.
    MaxAmount,
    MarketInactive,
    /// A buy the free cash and the sells' proceeds could not fund.
    InsufficientCash,
    /// Less than one lot, or a lot so coarse it would overshoot the band.
    BelowStep,
}

impl SkipReason {
    /// Every reason, in the order of their column codes (`reason as u8`).
    pub const ALL: [SkipReason; 6] = [
        SkipReason::MinAmount,
        SkipReason::MinNotional,
        SkipReason::MaxAmount,
        SkipReason::MarketInactive,
        SkipReason::InsufficientCash,
        SkipReason::BelowStep,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::MinAmount => "min_amount",
            SkipReason::MinNotional => "min_notional",
            SkipReason::MaxAmount => "max_amount",
            SkipReason::MarketInactive => "market_inactive",
            SkipReason::InsufficientCash => "insufficient_cash",
            SkipReason::BelowStep => "below_step",
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
    lists: Lists,
}

/// The top-up's index lists and per-asset deficits.
#[derive(Default)]
struct Lists {
    /// Assets that can still take a lot, in asset order.
    open: Vec<usize>,
    /// The same, most underweight first.
    order: Vec<usize>,
    deficits: Vec<f64>,
    /// Each holding's price and fee as exact decimals, for the exact settle.
    exact: Vec<(Decimal, Decimal)>,
}

#[derive(Copy, Clone, Default)]
struct Row {
    price: f64,
    lot_value: f64,
    /// 1 / `lot_value` (the quote's): the hot loops multiply, as a division is a long wait.
    per_lot: f64,
    fee: f64,
    value: f64,
    target: f64,
    dest: f64,
    /// The destination box in weight: [target, target] or the (inner) band.
    low: f64,
    high: f64,
    held_lots: i64,
    max_lots: i64,
    min_lots: i64,
    min_lots_by_amount: i64,
    /// Cash one more lot bought costs, fee included.
    lot_cost: f64,
    /// Cash one more lot sold brings, net of its fee.
    lot_net: f64,
    tradable: bool,
    /// Cannot move this pass: held at its weight, the others planned around it.
    frozen: bool,
    /// The leg it wanted when frozen and why it was refused (lots, side, reason).
    refused: Option<(i64, Side, SkipReason)>,
    /// Its whole sell was given back this pass: no buy could use the cash.
    sell_unused: bool,
    /// Not sold in later passes (its destination stays, so others are unaffected).
    sell_blocked: bool,
    sell: i64,
    buy: i64,
    wanted_buy: i64,
}

impl Row {
    /// Why its market would refuse an order of `lots` (as [`Quote::refusal`],
    /// from the row's copy of the quote's limits: no lookup in the hot loops).
    fn refusal(&self, lots: i64) -> Option<Refusal> {
        market::refusal(self.tradable, lots, self.min_lots_by_amount, self.min_lots, self.max_lots)
    }
    /// Whether its market takes an order of `lots`: `refusal(lots).is_none()`
    /// without a branch per rule (the hot loops mispredict those).
    fn accepts(&self, lots: i64) -> bool {
        // Each rule holds when its difference is ≥ 0, so all hold when the OR
        // of the differences has no sign bit (LLVM turns `&&` chains and even
        // `&` of comparisons back into branches). No overflow: the limits
        // are in 0..=i64::MAX (see `Quote::new`) and so is `lots` here.
        let lots = lots.max(0);
        let (by_amount, min, max) = (self.min_lots_by_amount, self.min_lots, self.max_lots);
        self.tradable & (((lots - 1) | (lots - by_amount) | (lots - min) | (max - lots)) >= 0)
    }
    /// Lots the next purchase must carry: the market minimum for a new leg, else one.
    fn increment(&self) -> i64 {
        select_unpredictable(self.buy == 0, self.min_lots, 1)
    }
}

/// Cash the planned buys cost, fees included.
fn buy_cost(rows: &[Row]) -> f64 {
    rows.iter().map(|r| r.buy as f64 * r.lot_cost).sum()
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

fn to_lots(x: f64, mode: Rounding) -> i64 {
    // No branch: zero, negative and NaN `x` all end at 0 through `max(0.0)`.
    let tol = (LOT_TOLERANCE * x.max(1.0)).min(MAX_LOT_TOLERANCE);
    let lots = match mode {
        Rounding::Truncate => (x + tol).floor(),
        Rounding::Inward => (x - tol).ceil(),
    };
    lots.max(0.0) as i64 // `as` saturates
}

/// Where a plan puts its orders and the legs it does not send: two `Vec`s
/// ([`plan_into`]), or a batch's columns, written as the plan makes them.
pub trait PlanOutput {
    fn order(&mut self, leg: Leg);
    fn skip(&mut self, skip: Skip);
}

impl PlanOutput for (&mut Vec<Leg>, &mut Vec<Skip>) {
    fn order(&mut self, leg: Leg) {
        self.0.push(leg);
    }
    fn skip(&mut self, skip: Skip) {
        self.1.push(skip);
    }
}

/// Plans one portfolio, appending its orders to `legs` (sells first, then
/// buys) and the legs not sent to `skips`. Input must have passed
/// [`PortfolioRef::validate`] and [`PlanParams::validate`].
pub fn plan_into(
    p: &PortfolioRef<'_>,
    quotes: &[Quote],
    params: &PlanParams,
    scratch: &mut Scratch,
    legs: &mut Vec<Leg>,
    skips: &mut Vec<Skip>,
) -> Outcome {
    plan_to(p, quotes, params, scratch, &mut (legs, skips))
}

/// [`plan_into`], handing each order and skipped leg to `output`.
pub fn plan_to(p: &PortfolioRef<'_>, quotes: &[Quote], params: &PlanParams, scratch: &mut Scratch, output: &mut impl PlanOutput) -> Outcome {
    plan_valued(p, quotes, params, scratch, output, Valued::Converted)
}

/// How a plan values the holdings and cash (the same floats either way).
#[derive(Copy, Clone)]
pub(crate) enum Valued<'a> {
    /// Each exact amount converted here ([`Amount::to_f64`]).
    Converted,
    /// The Book's float copies of the amounts and the cash, each that same
    /// conversion (every writer of the Book sets them so): what its scan
    /// read. With `triggered`, that scan of the same floats found the
    /// portfolio past its band, and the drift is not measured again (the
    /// outcome's deviations are left at 0).
    Copies { amounts: &'a [f64], cash: f64, triggered: bool },
}

/// [`plan_to`] with the holdings valued as `valued` says.
pub(crate) fn plan_valued(
    p: &PortfolioRef<'_>,
    quotes: &[Quote],
    params: &PlanParams,
    scratch: &mut Scratch,
    output: &mut impl PlanOutput,
    valued: Valued<'_>,
) -> Outcome {
    let Scratch { rows, lists } = scratch;
    rows.clear();
    let float = |i: usize| match valued {
        Valued::Converted => p.amounts[i].to_f64(),
        Valued::Copies { amounts, .. } => amounts[i],
    };
    let cash = match valued {
        Valued::Converted => p.cash.to_f64(),
        Valued::Copies { cash, .. } => cash,
    };
    let (mut value, mut max_buy_fee) = (cash, 0.0);
    for (i, &asset) in p.assets.iter().enumerate() {
        let quote = &quotes[asset as usize];
        let fee = params.fee_rate.unwrap_or(quote.taker_fee);
        let held = float(i) * quote.price;
        let row = Row {
            price: quote.price,
            lot_value: quote.lot_value,
            per_lot: quote.per_lot,
            fee,
            value: held,
            target: p.targets[i],
            held_lots: quote.lots_in_near(p.amounts[i], held * quote.per_lot),
            max_lots: quote.max_lots,
            min_lots: quote.min_lots,
            min_lots_by_amount: quote.min_lots_by_amount,
            lot_cost: quote.lot_value * (1.0 + fee),
            lot_net: quote.lot_value * (1.0 - fee),
            tradable: quote.active,
            ..Row::default()
        };
        value += row.value;
        if row.tradable {
            max_buy_fee = f64::max(max_buy_fee, fee);
        }
        rows.push(row);
    }
    let mut out = Outcome { value, ..Outcome::default() };
    if !(value > 0.0 && value.is_finite()) {
        return out;
    }

    // 1. Deviation and trigger (known from the scan that read these floats).
    let triggered = if let Valued::Copies { triggered: true, .. } = valued {
        true
    } else {
        let cash_row = (p.cash_target > 0.0).then_some((cash, p.cash_target));
        let drift = Drift::measure(rows.iter().map(|r| (r.value, r.target)).chain(cash_row), value, params.band);
        (out.max_deviation, out.max_relative_deviation) = (drift.deviation, drift.relative);
        params.band.is_none() || drift.breached
    };
    out.triggered = triggered;
    if !triggered {
        return out;
    }

    // 2–4, in passes: an asset that cannot move at all (a leg the market
    // refuses, a lot wider than its band) is frozen at its weight and the
    // others are planned around it, so no plan counts on money that cannot come.
    let mode = if params.destination == Destination::Target { Rounding::Truncate } else { Rounding::Inward };
    let sizing = Sizing { p, params, mode, value, cash, buy_fee_share: max_buy_fee / (1.0 + max_buy_fee) };
    let mut sized = sizing.size_orders(rows, lists);
    for _ in 0..2 * rows.len() {
        if !freeze_stuck(rows, params, value, sized.v_after) {
            break;
        }
        for row in rows.iter_mut() {
            (row.sell, row.buy, row.wanted_buy) = (0, 0, 0);
        }
        sized = sizing.size_orders(rows, lists);
    }
    let Sized { v_after, v_seen, proceeds, cost } = sized;

    // 5. Exact decimals where floats are in doubt: never below zero cash,
    //    and no affordable lot left unbought.
    let mut cash_after = cash + proceeds - cost;
    let doubt = FLOAT_DOUBT * value;
    // Cash can go below zero only by buying: sells and the cash held are ≥ 0.
    // (Only assets the exact top-up would buy count: for the others the
    // settle could change nothing.)
    let in_doubt = (cost > 0.0 && cash_after < doubt)
        || rows.iter().any(|r| {
            r.tradable
                && r.sell == 0
                && r.min_lots.max(1) as f64 * r.lot_cost <= cash_after + doubt
                && worth_a_lot(r, deficit(r, v_seen))
        });
    if in_doubt && settle_exactly(p, quotes, params.fee_rate, rows, v_seen, &mut lists.exact) {
        // (Summed again: the settle may have sold a few lots more.)
        let proceeds = rows.iter().fold(0.0, |sold, r| sold + sale_net(r));
        cash_after = cash + proceeds - buy_cost(rows);
    }

    record_skips(rows, p, quotes, v_after, mode, output);
    emit_legs(rows, p, quotes, output, &mut out);
    out.value_after = v_after;
    out.cash_after = cash_after;
    out
}

/// One sizing pass: destinations, sells, buys, top-up.
struct Sizing<'a, 'p> {
    p: &'a PortfolioRef<'p>,
    params: &'a PlanParams,
    mode: Rounding,
    value: f64,
    cash: f64,
    /// f/(1+f) for the highest buy fee: bounds the fees on cash yet to spend.
    buy_fee_share: f64,
}

struct Sized {
    v_after: f64,
    v_seen: f64,
    proceeds: f64,
    /// [`buy_cost`] of the buys as they stand.
    cost: f64,
}

impl Sizing<'_, '_> {
    fn size_orders(&self, rows: &mut [Row], lists: &mut Lists) -> Sized {
        let Sizing { p, params, mode, value, cash, buy_fee_share } = *self;
        // 2. Destination weights.
        let cash_dest = destination_weights(rows, p, params, value, cash);

        // 3. Sells on the post-fee value: V′ = V − sell fees − (buy fees on all cash to spend).
        let estimate = |rows: &[Row], v_after: f64| {
            let (proceeds, fees) = rows.iter().fold((0.0, 0.0), |(p, f), r| (p + sale_net(r), f + r.sell as f64 * r.lot_value * r.fee));
            let spendable = (cash - cash_dest * v_after + proceeds).max(0.0);
            (proceeds, value - fees - buy_fee_share * spendable)
        };
        let mut v_after = value;
        size_sells(rows, v_after, mode);
        // (The proceeds depend on the sells alone: the last estimate's hold
        // once the sells stop changing.)
        let mut proceeds = None;
        for _ in 0..MAX_FIXED_POINT_ROUNDS {
            let (sold, next) = estimate(rows, v_after);
            v_after = next;
            proceeds = Some(sold);
            if !size_sells(rows, v_after, mode) {
                break;
            }
            proceeds = None;
        }
        let mut proceeds = proceeds.unwrap_or_else(|| estimate(rows, v_after).0);

        // 4. Buys within the budget, then the leftover topped up.
        let mut budget = cash - cash_dest * v_after + proceeds;
        let mut cost = size_buys(rows, v_after, mode);
        if cost > budget && mode == Rounding::Inward {
            let raised = fund_shortfall(rows, params, v_after, cost - budget, &mut lists.order);
            if raised != 0.0 {
                budget += raised;
                proceeds = estimate(rows, v_after).0; // sells changed: summed again
            }
        }
        if cost > budget {
            let scale = (budget / cost).max(0.0);
            cost = -0.0; // (`buy_cost`'s sum, in the same pass)
            for row in rows.iter_mut() {
                let scaled = (row.buy as f64 * scale).floor() as i64;
                row.buy = if row.accepts(scaled) { scaled } else { 0 };
                cost += row.buy as f64 * row.lot_cost;
            }
        }
        // Top up, and give back sells whose cash no buy can use, against the
        // value a re-plan will see once these orders fill: V − the fees actually
        // planned − the bound on fees for the cash left. Repeat until it settles.
        // (Only the top-up changes buys: their cost is summed again only if it bought.)
        let mut v_seen = v_after;
        for _ in 0..12 {
            let budget = cash - cash_dest * v_seen + proceeds;
            let spendable = (budget - cost).max(0.0);
            if top_up(rows, lists, v_seen, spendable) {
                cost = buy_cost(rows);
            }
            // No float margin needed: the exact settle below takes lots back if
            // cash would go negative.
            let unused = budget - cost;
            let (sold, fees) = trim_sells(rows, params, v_seen, unused);
            proceeds = sold;
            let left = cash + proceeds - cost - cash_dest * v_seen;
            let next = value - fees - buy_fee_share * left.max(0.0);
            // Converges at the rate of the fee; stop at float precision, as a
            // looser stop would leave assets with tiny lots a few lots off.
            if (next - v_seen).abs() <= 1e-13 * value {
                break;
            }
            v_seen = next;
        }
        Sized { v_after, v_seen, proceeds, cost }
    }
}

/// Blocks sells whose cash no buy could use, then freezes every asset that
/// got no order although it wanted one the market refuses, or (band modes)
/// sits outside its box with no order that fits; returns whether another
/// sizing pass is needed.
fn freeze_stuck(rows: &mut [Row], params: &PlanParams, value: f64, v_after: f64) -> bool {
    // A sell that funds nothing is blocked; the freezes decided while its
    // phantom fees lowered V′ are redone. (One pass: the freezes below
    // read nothing the blocking writes, and are undone if any sell is blocked.)
    let band_mode = params.destination != Destination::Target;
    let (mut blocked, mut froze) = (false, false);
    for row in rows.iter_mut() {
        if row.sell_unused && !row.sell_blocked {
            row.sell_blocked = true;
            blocked = true;
        }
        row.sell_unused = false;
        if row.frozen || row.sell > 0 || row.buy > 0 {
            continue;
        }
        let weight = row.value / value;
        let outside = weight < row.low - BAND_TOLERANCE || weight > row.high + BAND_TOLERANCE;
        let excess = (row.value - row.dest * v_after) * row.per_lot;
        let wanted = to_lots(excess.abs(), Rounding::Truncate);
        let capped = if excess > 0.0 { wanted.min(row.held_lots) } else { wanted }.min(row.max_lots);
        let side = if excess > 0.0 { Side::Sell } else { Side::Buy };
        let reason = match row.refusal(capped) {
            _ if wanted == 0 => None,
            Some(Refusal::MinAmount) => Some(SkipReason::MinAmount),
            Some(Refusal::MinNotional) => Some(SkipReason::MinNotional),
            Some(Refusal::MarketInactive) => Some(SkipReason::MarketInactive),
            Some(Refusal::MaxAmount) => Some(SkipReason::MaxAmount),
            Some(Refusal::BelowStep) => Some(SkipReason::BelowStep), // nothing held to sell
            None => None,
        };
        // To target, a refused buy only leaves its cash unspent (the top-up
        // decides where cash goes); a refused sell withholds money others
        // counted on, so the others are re-planned without it.
        let counts = side == Side::Sell || band_mode;
        if (reason.is_some() && counts) || (band_mode && outside) {
            row.frozen = true;
            // A band asset left outside its box by a lot too coarse to fit is drift too.
            row.refused = Some((wanted, side, reason.unwrap_or(SkipReason::BelowStep)));
            froze = true;
        }
    }
    if blocked {
        for row in rows.iter_mut() {
            (row.frozen, row.refused) = (false, None);
        }
    }
    blocked || froze
}

/// Post-trade weight of each asset (written to `row.dest`, with its box in
/// `row.low..row.high`) and of the cash, returned.
///
/// Target: the targets. Bands: the minimal move into the box
/// [t − k·b, t + k·b], then the sum brought back to 1 by moving only toward
/// the targets, in proportion to each weight's remaining distance to its
/// target. Frozen assets keep their weight; in band modes the rest absorb
/// the difference.
fn destination_weights(rows: &mut [Row], p: &PortfolioRef<'_>, params: &PlanParams, value: f64, cash: f64) -> f64 {
    let k = params.destination.band_fraction();
    if k == 0.0 {
        // To target, a frozen asset keeps its weight and its proceeds never
        // come: the others keep their targets and buys get the cash there is.
        for row in rows.iter_mut() {
            let dest = if row.frozen { row.value / value } else { row.target };
            (row.dest, row.low, row.high) = (dest, dest, dest);
        }
        return p.cash_target;
    }
    // Strictly inside the band, by 0.01 % of its width: a weight on its edge
    // (or pushed back over it by the plan's own fee rounding) would fire again.
    let half = |t: f64| match params.band {
        Some(band) if k > 0.0 => (k * band.half_width(t) * (1.0 - 1e-4) - 4.0 * BAND_TOLERANCE).max(0.0),
        _ => 0.0,
    };
    // Three passes: the boxes (summing the weights and the free targets as
    // they go, each sum in asset order as `sum` would), the room, the move.
    let (mut dests, mut free_targets) = (-0.0, -0.0);
    for row in rows.iter_mut() {
        let weight = row.value / value;
        (row.low, row.high) = if row.frozen { (weight, weight) } else { (row.target - half(row.target), row.target + half(row.target)) };
        row.dest = weight.clamp(row.low, row.high);
        dests += row.dest;
        if !row.frozen {
            free_targets += row.target;
        }
    }
    // Cash not among the coins is fully invested (its box is [0, 0]).
    let t_cash = p.cash_target;
    let mut cash_dest = if t_cash > 0.0 { (cash / value).clamp(t_cash - half(t_cash), t_cash + half(t_cash)) } else { 0.0 };
    let gap = 1.0 - cash_dest - dests;
    let toward = |dest: f64, t: f64| if gap > 0.0 { (t - dest).max(0.0) } else { (dest - t).max(0.0) };
    let free = |r: &Row| !r.frozen;
    let room = toward(cash_dest, t_cash) + rows.iter().filter(|r| free(r)).map(|r| toward(r.dest, r.target)).sum::<f64>();
    let share = if room > 0.0 { (gap / room).clamp(-1.0, 1.0) } else { 0.0 };
    cash_dest += share * toward(cash_dest, t_cash);
    // What the targets could not absorb (frozen assets off target) is spread
    // over the free assets in proportion to their targets.
    let rest = gap - share * room;
    let spread = rest.abs() > 0.0 && free_targets > 0.0;
    for row in rows.iter_mut().filter(|r| !r.frozen) {
        row.dest += share * toward(row.dest, row.target);
        if spread {
            row.dest += rest * row.target / free_targets;
            (row.low, row.high) = (row.low.min(row.dest), row.high.max(row.dest));
        }
    }
    cash_dest
}

/// In band modes a buy rounded up to land inside the band can cost up to a
/// lot more than the sells rounded up yield. If the sold assets can cover
/// the whole shortfall while staying inside their destination box, sells
/// that much more of them (furthest above target first); returns the extra
/// proceeds. Partial funding would only leave cash no buy can use.
fn fund_shortfall(rows: &mut [Row], params: &PlanParams, v_after: f64, shortfall: f64, order: &mut Vec<usize>) -> f64 {
    let (Some(band), k) = (params.band, params.destination.band_fraction()) else { return 0.0 };
    let spare = |r: &Row| {
        let floor = (r.target - k * band.half_width(r.target)) * v_after;
        let room = to_lots((r.value - r.sell as f64 * r.lot_value - floor) * r.per_lot, Rounding::Truncate);
        room.min(r.held_lots.min(r.max_lots) - r.sell).max(0)
    };
    let net = |r: &Row| r.lot_net;
    let available: f64 = rows.iter().filter(|r| r.sell > 0).map(|r| spare(r) as f64 * net(r)).sum();
    if available < shortfall {
        return 0.0;
    }
    order.clear();
    order.extend((0..rows.len()).filter(|&i| rows[i].sell > 0));
    let surplus = |r: &Row| r.value - r.sell as f64 * r.lot_value - r.target * v_after;
    order.sort_by(|&a, &b| cmp_f64(surplus(&rows[b]), surplus(&rows[a])));
    let (mut raised, mut shortfall) = (0.0, shortfall);
    for &i in order.iter() {
        let r = &mut rows[i];
        let extra = ((shortfall / net(r)).ceil() as i64).min(spare(r));
        r.sell += extra;
        raised += extra as f64 * net(r);
        shortfall -= extra as f64 * net(r);
        if shortfall <= 0.0 {
            break;
        }
    }
    raised
}

/// Sells only what the buys use: cash no buy could take is given back by
/// selling fewer lots (band assets stay inside their box), so the plan is
/// the minimal order set and re-planning finds nothing left to do. Returns
/// the proceeds (as `estimate` sums them) and all the plan's fees, summed in
/// the same pass as each row is settled.
fn trim_sells(rows: &mut [Row], params: &PlanParams, v_after: f64, mut leftover: f64) -> (f64, f64) {
    let k = params.destination.band_fraction();
    let (mut sold, mut fees) = (0.0, -0.0);
    for row in rows.iter_mut() {
        if row.sell != 0 && leftover > 0.0 {
            let net = row.lot_net;
            let whole = leftover >= row.sell as f64 * net * (1.0 - 1e-12);
            let mut trim = if whole { row.sell } else { ((leftover / net).floor() as i64).min(row.sell) };
            if let (Some(band), true) = (params.band, k > 0.0) {
                let ceiling = (row.target + k * band.half_width(row.target)) * v_after;
                let kept = row.value - (row.sell as f64) * row.lot_value;
                trim = trim.min(to_lots((ceiling - kept) * row.per_lot, Rounding::Truncate).max(0));
            }
            let rest = row.sell - trim;
            // (Not if trimming would leave a leg the market refuses.)
            if rest <= 0 || row.refusal(rest).is_none() {
                row.sell = rest;
                row.sell_unused |= rest == 0;
                leftover -= trim as f64 * net;
            }
        }
        sold += sale_net(row);
        fees += (row.sell + row.buy) as f64 * row.lot_value * row.fee;
    }
    (sold, fees)
}

/// What a row's sell brings, net of its fee, as every sum of the proceeds
/// works it out (the same bits wherever they are summed).
#[inline(always)]
fn sale_net(r: &Row) -> f64 {
    r.sell as f64 * r.lot_value * (1.0 - r.fee)
}

/// Lots to move `x` lots' worth toward the destination. Rounding inward (to
/// land inside a band) never takes the asset across to the box's far side:
/// if the whole lot would, the truncated count is the better miss.
fn lots_toward(x: f64, mode: Rounding, overshoot: impl Fn(i64) -> bool) -> i64 {
    let lots = to_lots(x, mode);
    if mode == Rounding::Inward && lots > 0 && overshoot(lots) {
        to_lots(x, Rounding::Truncate)
    } else {
        lots
    }
}

/// Sizes every sell at post-fee value `v_after`; returns whether any changed.
fn size_sells(rows: &mut [Row], v_after: f64, mode: Rounding) -> bool {
    let mut changed = false;
    for row in rows.iter_mut() {
        let below_box = |n: i64| row.value - n as f64 * row.lot_value < row.low * v_after;
        let wanted = lots_toward((row.value - row.dest * v_after) * row.per_lot, mode, below_box);
        // A frozen asset does not trade at all (its weight measured on V′ < V
        // would otherwise "sell the fee drag").
        let lots = wanted.min(row.held_lots).min(row.max_lots) * i64::from(!(row.sell_blocked | row.frozen));
        let lots = select_unpredictable(row.accepts(lots), lots, 0);
        changed |= lots != row.sell;
        row.sell = lots;
    }
    changed
}

/// Sizes every buy at post-fee value `v_after`; returns their [`buy_cost`]
/// (summed in the same pass).
fn size_buys(rows: &mut [Row], v_after: f64, mode: Rounding) -> f64 {
    let mut cost = -0.0;
    for row in rows.iter_mut() {
        let above_box = |n: i64| row.value + n as f64 * row.lot_value > row.high * v_after;
        let wanted = lots_toward((row.dest * v_after - row.value) * row.per_lot, mode, above_box);
        row.wanted_buy = wanted * i64::from(!((row.sell > 0) | row.frozen));
        let lots = row.wanted_buy.min(row.max_lots);
        row.buy = select_unpredictable(row.accepts(lots), lots, 0);
        cost += row.buy as f64 * row.lot_cost;
    }
    cost
}

/// How far below its target an asset is after the plan's buys (in quote).
/// Leftover cash goes to the most underweight against the target, which in
/// band modes keeps every asset inside the band.
fn deficit(r: &Row, v_after: f64) -> f64 {
    r.target * v_after - (r.value + r.buy as f64 * r.lot_value)
}

/// Whether topping up `r` by its next increment helps: it is below target by
/// more than float noise on a lot, and a new leg (which must carry the
/// market minimum) does not overshoot by more than it corrects.
fn worth_a_lot(r: &Row, deficit: f64) -> bool {
    let increment = r.increment();
    // Both comparisons, then a choice between the answers: a branch-free
    // `deficit > if new leg { … } else { … }` (a float select is a branch).
    let new_leg = r.buy == 0;
    let covers_new_leg = deficit > (increment as f64 - LOT_TOLERANCE) * r.lot_value;
    let covers_a_lot = deficit > LOT_TOLERANCE * r.lot_value;
    let helps = (new_leg & covers_new_leg) | (!new_leg & covers_a_lot);
    !r.frozen & (r.buy + increment <= r.max_lots) & helps
}

/// Spends `cash` on the assets furthest below their target: water-fills to a
/// common deficit level over the assets that can afford their next
/// increment (repeated as assets drop out), then lot by lot. Returns whether
/// it bought anything.
fn top_up(rows: &mut [Row], lists: &mut Lists, v_after: f64, mut cash: f64) -> bool {
    let Lists { open, order, deficits, .. } = lists;
    // Only a candidate's lots change and cash only falls, so an asset that
    // cannot take its next increment now never can later in this call: each
    // round filters the last round's candidates (kept in asset order), and
    // notes their deficits for the sorting and the comparisons.
    // (A branch-free filter: which assets stay is data the predictor cannot learn.)
    fn candidates(open: &mut Vec<usize>, deficits: &mut [f64], rows: &[Row], v_after: f64, cash: f64) {
        let mut kept = 0;
        for k in 0..open.len() {
            let i = open[k];
            let r = &rows[i];
            deficits[i] = deficit(r, v_after);
            open[kept] = i;
            kept += usize::from(r.tradable & (r.sell == 0) & affordable(r, cash) & worth_a_lot(r, deficits[i]));
        }
        open.truncate(kept);
    }
    // `candidates` after lots bought for `lifted` alone: the others' lots are
    // as they were, so are their deficits and whether a lot is worth it;
    // only whether they can still afford their next increment is asked again.
    fn still_open(open: &mut Vec<usize>, deficits: &mut [f64], rows: &[Row], v_after: f64, cash: f64, lifted: usize) {
        let r = &rows[lifted];
        deficits[lifted] = deficit(r, v_after);
        let stays = worth_a_lot(r, deficits[lifted]);
        let mut kept = 0;
        for k in 0..open.len() {
            let i = open[k];
            open[kept] = i;
            kept += usize::from(affordable(&rows[i], cash) & ((i != lifted) | stays));
        }
        open.truncate(kept);
    }
    fn affordable(r: &Row, cash: f64) -> bool {
        r.increment() as f64 * r.lot_cost <= cash
    }
    // Most calls can afford nothing (the cash left is under a lot): what
    // `candidates` asks first is asked alone, with no list written; then
    // the same filter lists the assets it kept, for `candidates` to look at.
    let opens = |r: &Row| r.tradable & (r.sell == 0) & affordable(r, cash);
    if !rows.iter().fold(false, |any, r| any | opens(r)) {
        return false;
    }
    open.clear();
    open.resize(rows.len(), 0);
    let mut kept = 0;
    for (i, r) in rows.iter().enumerate() {
        open[kept] = i;
        kept += usize::from(opens(r));
    }
    open.truncate(kept);
    // (Only grown: a deficit is written before it is read, and a `resize`
    // from empty would be a `memset` call per top-up.)
    if deficits.len() < rows.len() {
        deficits.resize(rows.len(), 0.0);
    }

    // Whether `open` and `deficits` are those of the rows and cash as they
    // stand (a round that added nothing changed nothing).
    let (mut fresh, mut bought) = (false, false);
    for _ in 0..=rows.len() {
        candidates(open, deficits, rows, v_after, cash);
        if open.is_empty() {
            return bought;
        }
        // Filling to a level L ≥ 0 adds at most what filling to 0 would: if
        // that is less than every candidate's next increment, so is this
        // round (most rounds: the buys already stop within a lot of target).
        if !open.iter().any(|&i| lots_to_level(&rows[i], deficits[i], 0.0) >= rows[i].increment()) {
            fresh = true;
            break;
        }
        order.clear();
        order.extend_from_slice(open);
        order.sort_by(|&a, &b| cmp_f64(deficits[b], deficits[a]));
        // The level L with Σ (deficit − L)⁺·(1 + fee) = cash.
        let (mut weighted, mut weights, mut level) = (0.0, 0.0, 0.0);
        for (k, &i) in order.iter().enumerate() {
            let r = &rows[i];
            weighted += deficits[i] * (1.0 + r.fee);
            weights += 1.0 + r.fee;
            let candidate_level = ((weighted - cash) / weights).max(0.0);
            if candidate_level >= order.get(k + 1).map_or(0.0, |&j| deficits[j]) {
                level = candidate_level;
                break;
            }
        }
        let mut added = false;
        for &i in order.iter() {
            let r = &mut rows[i];
            let add = lots_to_level(r, deficits[i], level);
            if add >= r.increment() && add as f64 * r.lot_cost <= cash {
                r.buy += add;
                cash -= add as f64 * r.lot_cost;
                added = true;
            }
        }
        if !added {
            fresh = true;
            break;
        }
        bought = true;
    }

    // The last few lots: the most underweight asset that can afford its next
    // increment, lifted to the next one's level (at least one increment).
    if !fresh {
        candidates(open, deficits, rows, v_after, cash);
    }
    for _ in 0..(8 * rows.len() + 32) {
        let Some((&first, others)) = open.split_first() else { break };
        let (mut best, mut next_deficit) = (first, f64::NEG_INFINITY);
        for &i in others {
            if deficits[i] > deficits[best] {
                next_deficit = deficits[best];
                best = i;
            } else {
                next_deficit = next_deficit.max(deficits[i]);
            }
        }
        let r = &mut rows[best];
        let to_next = to_lots((deficits[best] - next_deficit.max(0.0)) * r.per_lot, Rounding::Inward);
        // Tied within an increment with the next, it takes its share of the
        // cash (up to its target): one increment each in turn, fine lots
        // outlasted this loop, and the cash left unsold a coarse lot that a
        // re-plan sold again.
        let lift = if to_next <= r.increment() {
            let share = (cash / (open.len() as f64 * r.lot_cost)).floor() as i64;
            share.min(lots_to_level(r, deficits[best], 0.0))
        } else {
            to_next
        };
        let affordable = (cash / r.lot_cost).floor() as i64;
        let add = lift.max(r.increment()).min(affordable).min(r.max_lots - r.buy);
        r.buy += add;
        cash -= add as f64 * r.lot_cost;
        bought |= add != 0;
        still_open(open, deficits, rows, v_after, cash, best);
    }
    bought
}

/// Whole lots that bring `r`, `deficit` below its target, up to `level`
/// below it (within its market's maximum).
fn lots_to_level(r: &Row, deficit: f64, level: f64) -> i64 {
    to_lots((deficit - level) * r.per_lot, Rounding::Truncate).min(r.max_lots - r.buy)
}

/// Redoes the end of the budget in exact decimals: takes lots back while
/// cash would go negative, then tops up while a whole increment is
/// affordable. Returns whether it could (amounts within 96 bits).
fn settle_exactly(
    p: &PortfolioRef<'_>,
    quotes: &[Quote],
    fee_rate: Option<f64>,
    rows: &mut [Row],
    v_after: f64,
    exact: &mut Vec<(Decimal, Decimal)>,
) -> bool {
    // Each row's price and fee as exact decimals: the quotes' (parsed once
    // per tick), or the portfolio's own fee rate parsed once here.
    let fee_override = match fee_rate.map(price_decimal) {
        Some(None) => return false,
        parsed => parsed.flatten(),
    };
    exact.clear();
    for &asset in p.assets {
        let quote = &quotes[asset as usize];
        let (Some(price), Some(fee)) = (quote.price_exact, fee_override.or(quote.taker_fee_exact)) else { return false };
        exact.push((price, fee));
    }
    let exact = &exact[..];
    let Some(mut cash) = exact_cash_after(p, quotes, rows, exact) else { return false };
    let exact_cost = |i: usize, lots: i64| -> Option<Decimal> {
        let amount = quotes[p.assets[i] as usize].lots_amount(lots).to_decimal()?;
        let (price, fee) = exact[i];
        amount.checked_mul(price)?.checked_mul(Decimal::ONE + fee)
    };
    // A shortfall within float noise is sold for, in lots of a sold asset
    // that fine (its weight moves by no more than the noise), rather than
    // paid for by a whole lot taken back: that lot's money would stay in
    // cash, and a re-plan would spend it (SPEC §2: no ping-pong).
    if cash < Decimal::ZERO {
        if let Some((i, sell, gained)) = sale_for_noise(p, quotes, rows, exact, cash, FLOAT_DOUBT * v_after) {
            rows[i].sell = sell;
            cash += gained;
        }
    }
    while cash < Decimal::ZERO {
        let Some(largest) = (0..rows.len())
            .filter(|&i| rows[i].buy > 0)
            .max_by(|&a, &b| cmp_f64(rows[a].buy as f64 * rows[a].lot_value, rows[b].buy as f64 * rows[b].lot_value))
        else {
            return true;
        };
        let row = &mut rows[largest];
        let keep = if row.refusal(row.buy - 1).is_none() { row.buy - 1 } else { 0 };
        let Some(refund) = exact_cost(largest, row.buy - keep) else { return false };
        row.buy = keep;
        cash += refund;
    }
    let deficit = |r: &Row| deficit(r, v_after);
    for _ in 0..(8 * rows.len() + 32) {
        let best = (0..rows.len())
            .filter(|&i| {
                let r = &rows[i];
                let increment = r.increment();
                r.tradable
                    && r.sell == 0
                    && worth_a_lot(r, deficit(r))
                    && exact_cost(i, increment).is_some_and(|c| c <= cash)
            })
            .max_by(|&a, &b| cmp_f64(deficit(&rows[a]), deficit(&rows[b])));
        let Some(i) = best else { break };
        let r = &mut rows[i];
        let increment = r.increment();
        let Some(lot) = exact_cost(i, 1) else { return false };
        let affordable = i64::try_from((cash / lot).floor()).unwrap_or(increment);
        let wanted = to_lots(deficit(r) * r.per_lot, Rounding::Inward);
        let add = wanted.min(affordable).max(increment).min(r.max_lots - r.buy);
        let Some(cost) = exact_cost(i, add) else { return false };
        if cost > cash {
            break;
        }
        r.buy += add;
        cash -= cost;
    }
    true
}

/// The sold asset (its row), its new sell and the exact proceeds gained,
/// that cover a `cash` shortfall within `doubt` (float noise, in quote) by
/// selling a few lots more, worth no more than `doubt` in all: the sold
/// asset with the finest lots. None if there is none, or its market would
/// refuse the sell.
fn sale_for_noise(p: &PortfolioRef<'_>, quotes: &[Quote], rows: &[Row], exact: &[(Decimal, Decimal)], cash: Decimal, doubt: f64) -> Option<(usize, i64, Decimal)> {
    let i = (0..rows.len())
        .filter(|&i| rows[i].sell > 0 && rows[i].lot_value <= doubt)
        .min_by(|&a, &b| cmp_f64(rows[a].lot_value, rows[b].lot_value))?;
    let r = &rows[i];
    let short = (-cash).to_f64()?;
    let more = (short / r.lot_net).ceil() as i64 + 1; // (+1: the float's rounding)
    let sell = r.sell.checked_add(more)?;
    if !(more as f64 * r.lot_value <= doubt && sell <= r.held_lots.min(r.max_lots) && r.accepts(sell)) {
        return None;
    }
    let (price, fee) = exact[i];
    let gained = quotes[p.assets[i] as usize].lots_amount(more).to_decimal()?.checked_mul(price)?.checked_mul(Decimal::ONE - fee)?;
    (cash.checked_add(gained)? >= Decimal::ZERO).then_some((i, sell, gained))
}

/// Cash after the plan fills at the assumed prices, in exact decimals.
fn exact_cash_after(p: &PortfolioRef<'_>, quotes: &[Quote], rows: &[Row], exact: &[(Decimal, Decimal)]) -> Option<Decimal> {
    let mut cash = p.cash.to_decimal()?;
    for ((row, &asset), &(price, fee)) in rows.iter().zip(p.assets).zip(exact) {
        let quote = &quotes[asset as usize];
        let (lots, sign, fee_factor) = if row.sell > 0 {
            (row.sell, Decimal::ONE, Decimal::ONE - fee)
        } else {
            (row.buy, Decimal::NEGATIVE_ONE, Decimal::ONE + fee)
        };
        if lots == 0 {
            continue;
        }
        let notional = quote.lots_amount(lots).to_decimal()?.checked_mul(price)?;
        cash = cash.checked_add(sign * notional.checked_mul(fee_factor)?)?;
    }
    Some(cash)
}

fn record_skips(
    rows: &[Row],
    p: &PortfolioRef<'_>,
    quotes: &[Quote],
    v_after: f64,
    mode: Rounding,
    output: &mut impl PlanOutput,
) {
    for (i, (row, &asset)) in rows.iter().zip(p.assets).enumerate() {
        let quote = &quotes[asset as usize];
        if let Some((lots, side, reason)) = row.refused {
            output.skip(Skip { position: i as u32, asset, side, amount: quote.lots_amount(lots), reason });
            continue;
        }
        let excess = (row.value - row.dest * v_after) * row.per_lot;
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
            match quote.refusal(wanted.min(row.max_lots)) {
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
        output.skip(Skip {
            position: i as u32,
            asset,
            side,
            amount: quote.lots_amount(missing),
            reason,
        });
    }
}

fn emit_legs(rows: &[Row], p: &PortfolioRef<'_>, quotes: &[Quote], output: &mut impl PlanOutput, out: &mut Outcome) {
    for side in [Side::Sell, Side::Buy] {
        for (i, (row, &asset)) in rows.iter().zip(p.assets).enumerate() {
            let lots = if side == Side::Sell { row.sell } else { row.buy };
            if lots <= 0 {
                continue;
            }
            let notional = lots as f64 * row.lot_value;
            out.fees += notional * row.fee;
            output.order(Leg {
                position: i as u32,
                asset,
                side,
                lots,
                amount: quotes[asset as usize].lots_amount(lots),
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
    let quotes: Vec<Quote> = markets.iter().zip(prices).map(|(m, &price)| Quote::new(m, price)).collect();
    let (mut legs, mut skips) = (Vec::new(), Vec::new());
    let outcome = plan_into(p, &quotes, params, &mut Scratch::default(), &mut legs, &mut skips);
    Ok((outcome, legs, skips))
}

#[cfg(test)]
mod tests;
