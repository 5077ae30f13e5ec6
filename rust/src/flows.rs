//! Money in and out of portfolios, outside the rebalancing trigger: new cash
//! invested into the underweight assets (initial funding, auto-invest), every
//! holding sold to the quote asset (termination with exit mode "sell"),
//! valuations of the whole Book, and exact all-or-nothing updates of amount
//! columns (fills, deposits, withdrawals).
//!
//! Like the tick, each works over selected slots of a [`BookRef`] in
//! parallel chunks, and its output is in the order of the slots whatever the
//! thread count.

use std::hint::select_unpredictable;

use rayon::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::batch::{chunk_size, reserve_legs, run_in_order, run_tasks, LegColumns, CHUNK, INLINE_PORTFOLIOS, PURPOSE_EXIT, PURPOSE_INVEST};
use crate::book::{amount_at, amount_words, BookRef};
use crate::error::{CoreError, Result};
use crate::lots::{price_decimal, Amount, FLOAT_DOUBT};
use crate::market::{Market, Quote, Refusal};
use crate::plan::{Leg, Side, Skip, SkipReason};
use crate::portfolio::{asset_name, check_price};

/// What the prices are needed for: an investment values the portfolio and
/// buys any of its assets; an exit only sells what is held where the market
/// is open, so a delisted market's missing price never blocks it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    Invest,
    Exit,
}

/// The selected slots as indices, refusing one out of range or listed twice
/// (it would spend the same cash twice).
pub fn check_slots(book: &BookRef<'_>, slots: &[i64]) -> Result<Vec<usize>> {
    let n = book.len();
    let mut seen = vec![false; n];
    slots
        .iter()
        .map(|&s| {
            if !(0..n as i64).contains(&s) {
                return Err(CoreError::config("slots", s, format!("slot out of range ({n} portfolios)")));
            }
            let slot = s as usize;
            if std::mem::replace(&mut seen[slot], true) {
                return Err(CoreError::config("slots", s, "slot listed twice"));
            }
            Ok(slot)
        })
        .collect()
}

/// The market rules at `prices`, one quote per market, for a `flow` over
/// `slots`. A bad price (missing, zero, negative, NaN, infinite) is refused,
/// naming the asset, where the flow needs it: for an investment, every asset
/// of a selected portfolio except a zero holding in an inactive market; for
/// an exit, every non-zero holding in an active market.
pub fn quotes(book: &BookRef<'_>, slots: &[usize], markets: &[Market], prices: &[f64], flow: Flow) -> Result<Vec<Quote>> {
    if prices.len() != markets.len() {
        return Err(CoreError::price("prices", prices.len(), format!("one price per market ({} markets)", markets.len())));
    }
    let bad: Vec<usize> = (0..prices.len()).filter(|&a| check_price(prices[a], "").is_err()).collect();
    if !bad.is_empty() {
        let needed = |r: usize| {
            let asset = book.asset[r] as usize;
            let active = markets.get(asset).is_some_and(|m| m.active);
            let held = amount_at(book.amount, r) != Amount::ZERO;
            match flow {
                Flow::Invest => active || held,
                Flow::Exit => active && held,
            }
        };
        let first = slots
            .par_iter()
            .flat_map_iter(|&i| book.rows(i).filter(|&r| needed(r)).map(|r| book.asset[r] as usize))
            .filter(|a| bad.contains(a))
            .min();
        if let Some(asset) = first {
            check_price(prices[asset], &format!("prices[{}]", asset_name(asset as u32, markets)))?;
        }
    }
    Ok(markets.iter().zip(prices).map(|(m, &price)| Quote::new(m, price)).collect())
}

/// Runs `visit` over the slots in parallel chunks, the orders and skips in slot order.
fn over_slots(book: &BookRef<'_>, slots: &[usize], purpose: u8, visit: impl Fn(usize, &mut (LegColumns, LegColumns)) + Sync) -> (LegColumns, LegColumns) {
    let chunks: Vec<&[usize]> = slots.chunks(CHUNK).collect();
    let inline = chunks.len() <= 1;
    let mut legs = (LegColumns::default(), LegColumns::default());
    reserve_legs(&mut legs, slots.iter().map(|&i| book.rows(i).len()).sum());
    run_in_order(chunks, inline, legs, || (), |_, _, chunk, out| {
        for &i in chunk {
            visit(i, out);
        }
        out.0.tag(purpose);
        out.1.tag(purpose);
    })
}

fn skip_reason(refusal: Refusal) -> SkipReason {
    match refusal {
        Refusal::BelowStep => SkipReason::BelowStep,
        Refusal::MinAmount => SkipReason::MinAmount,
        Refusal::MinNotional => SkipReason::MinNotional,
        Refusal::MaxAmount => SkipReason::MaxAmount,
        Refusal::MarketInactive => SkipReason::MarketInactive,
    }
}

/// The fee rate of portfolio i's orders in a market.
fn fee_of(book: &BookRef<'_>, i: usize, quote: &Quote) -> f64 {
    let fee = book.fee_rate[i];
    if fee.is_nan() {
        quote.taker_fee
    } else {
        fee
    }
}

fn leg(position: usize, asset: u32, side: Side, lots: i64, quote: &Quote, fee: f64) -> Leg {
    let notional = lots as f64 * quote.lot_value;
    Leg {
        position: position as u32,
        asset,
        side,
        lots,
        amount: quote.lots_amount(lots),
        price: quote.price,
        notional,
        fee: notional * fee,
    }
}

/// One buy of an investment being sized.
struct Buy {
    position: usize,
    asset: u32,
    fee: f64,
    lots: i64,
    /// The part above the market's maximum order size, reported as a skip.
    above_max: i64,
    /// Lots given up because the exact cost would pass the cash.
    unfunded: i64,
    /// The lots it wanted and why the market refuses them (then `lots` is 0).
    refused: Option<(i64, SkipReason)>,
}

/// Buys that invest the free cash of each selected portfolio into its
/// underweight assets, never selling: with value V = cash + Σ amount·price,
/// the spendable cash S = max(0, cash − cash_target·V) goes to each asset in
/// proportion to its shortfall max(0, target·V − amount·price) (all of every
/// shortfall when S covers them), net of its fee, truncated to whole lots.
/// The buys' exact cost, fees included, never passes the cash.
///
/// Orders carry `epoch[slot]`; skips carry their [`SkipReason`] code in
/// `epoch` and the wanted amount in whole lots. `quotes` must come from
/// [`quotes`] with [`Flow::Invest`], `slots` from [`check_slots`].
pub fn invest(book: &BookRef<'_>, slots: &[usize], quotes: &[Quote], epoch: &[u32]) -> (LegColumns, LegColumns) {
    over_slots(book, slots, PURPOSE_INVEST, |i, out| invest_one(book, i, quotes, epoch[i], out))
}

pub(crate) fn invest_one(book: &BookRef<'_>, i: usize, quotes: &[Quote], epoch: u32, (orders, skips): &mut (LegColumns, LegColumns)) {
    let cash = amount_at(book.cash, i);
    if cash <= Amount::ZERO {
        return;
    }
    let rows = book.rows(i);
    let usable = |q: &Quote| q.price.is_finite() && q.price > 0.0;
    let quote_of = |r: usize| &quotes[book.asset[r] as usize];
    let held = |r: usize| {
        let q = quote_of(r);
        // A zero holding in a market without a usable price is worth nothing.
        if usable(q) { book.amount_float[r] * q.price } else { 0.0 }
    };
    let cash_float = cash.to_f64();
    let value = cash_float + rows.clone().map(held).sum::<f64>();
    let spendable = (cash_float - book.cash_target[i] * value).max(0.0);
    if !(value.is_finite() && spendable > 0.0) {
        return;
    }
    let shortfall = |r: usize| if usable(quote_of(r)) { (book.target[r] * value - held(r)).max(0.0) } else { 0.0 };
    let total: f64 = rows.clone().map(shortfall).sum();
    if total <= 0.0 {
        return;
    }
    let scale = if total <= spendable { 1.0 } else { spendable / total };
    let portfolio = (i, book.id[i]);
    let mut buys: Vec<Buy> = Vec::new();
    for (position, r) in rows.clone().enumerate() {
        let quote = quote_of(r);
        let fee = fee_of(book, i, quote);
        let wanted = shortfall(r) * scale / (1.0 + fee) / quote.lot_value;
        let wanted = if wanted.is_finite() && wanted >= 1.0 { wanted.floor() as i64 } else { 0 };
        if wanted == 0 {
            continue; // less than a lot: nothing to report
        }
        let lots = wanted.min(quote.max_lots);
        let mut buy = Buy { position, asset: book.asset[r] as u32, fee, lots, above_max: wanted - lots, unfunded: 0, refused: None };
        if let Some(refusal) = quote.refusal(lots) {
            (buy.lots, buy.above_max, buy.refused) = (0, 0, Some((wanted, skip_reason(refusal))));
        }
        buys.push(buy);
    }
    settle(&mut buys, cash, quotes);
    for buy in &buys {
        let quote = &quotes[buy.asset as usize];
        if buy.lots > 0 {
            orders.push_order(portfolio, epoch, &leg(buy.position, buy.asset, Side::Buy, buy.lots, quote, buy.fee));
        }
        let skipped = [(buy.unfunded, SkipReason::InsufficientCash), (buy.above_max, SkipReason::MaxAmount)];
        for (lots, reason) in buy.refused.into_iter().chain(skipped) {
            if lots > 0 {
                let skip = Skip { position: buy.position as u32, asset: buy.asset, side: Side::Buy, amount: quote.lots_amount(lots), reason };
                skips.push_skip(portfolio, &skip, quote);
            }
        }
    }
}

/// `amount` as a decimal, rounded toward zero to the 28 digits a decimal
/// holds (exact for every realistic cash balance; never more than it is).
fn decimal_at_most(amount: Amount) -> Decimal {
    if let Some(d) = amount.to_decimal() {
        return d;
    }
    let (mut atoms, mut scale) = (amount.atoms(), crate::lots::DECIMALS);
    loop {
        atoms /= 10;
        scale -= 1;
        if let Ok(d) = Decimal::try_from_i128_with_scale(atoms, scale) {
            return d;
        }
    }
}

/// Proves in exact decimals (price and fee as the decimals their floats
/// stand for) that Σ lots·step·price·(1 + fee) ≤ cash, taking lots off the
/// largest buy until it holds. A buy that would fall below its market's
/// minimum is dropped whole (its lots become `unfunded`). A buy whose cost
/// cannot be computed exactly (past 28 digits) is dropped too: nothing is
/// sent that is not proven affordable.
fn settle(buys: &mut [Buy], cash: Amount, quotes: &[Quote]) {
    // Floats decide when the answer is clear by far more than their error
    // (as in the planner); the exact decimals decide the rest.
    let float_cost: f64 = buys.iter().map(|b| b.lots as f64 * quotes[b.asset as usize].lot_value * (1.0 + b.fee)).sum();
    if float_cost <= cash.to_f64() * (1.0 - FLOAT_DOUBT) {
        return;
    }
    let cost = |b: &Buy, lots: i64| -> Option<Decimal> {
        let q = &quotes[b.asset as usize];
        let amount = q.lots_amount(lots).to_decimal()?;
        amount.checked_mul(price_decimal(q.price)?)?.checked_mul(Decimal::ONE.checked_add(price_decimal(b.fee)?)?)
    };
    let mut left = decimal_at_most(cash);
    for b in buys.iter_mut().filter(|b| b.lots > 0) {
        match cost(b, b.lots).and_then(|c| left.checked_sub(c)) {
            Some(rest) => left = rest,
            None => (b.unfunded, b.lots) = (b.lots, 0),
        }
    }
    while left < Decimal::ZERO {
        let notional = |b: &Buy| b.lots as f64 * quotes[b.asset as usize].lot_value;
        let Some(b) = buys.iter_mut().filter(|b| b.lots > 0).max_by(|x, y| notional(x).total_cmp(&notional(y))) else {
            return; // unreachable: no buys cost nothing, and cash is >= 0
        };
        let q = &quotes[b.asset as usize];
        // Lots to take off, estimated in floats (at least one); the loop redoes it exactly.
        let short = left.to_f64().map_or(f64::INFINITY, |x| -x);
        let estimate = (short / (q.lot_value * (1.0 + b.fee))).ceil();
        let off = if estimate.is_finite() && estimate >= 1.0 { (estimate as i64).min(b.lots) } else { b.lots };
        let mut keep = b.lots - off;
        if keep > 0 && q.refusal(keep).is_some() {
            keep = 0;
        }
        let refund = cost(b, b.lots).zip(cost(b, keep)).and_then(|(was, now)| was.checked_sub(now));
        match refund.and_then(|r| left.checked_add(r)) {
            Some(more) => left = more,
            None => {
                // Cannot be undone exactly: drop the buy and start over from the cash.
                (b.unfunded, b.lots) = (b.unfunded + b.lots, 0);
                left = decimal_at_most(cash);
                for b in buys.iter().filter(|b| b.lots > 0) {
                    left = cost(b, b.lots).and_then(|c| left.checked_sub(c)).unwrap_or(Decimal::MIN);
                }
                continue;
            }
        }
        if keep == 0 {
            b.unfunded += b.lots;
        }
        b.lots = keep;
    }
}

/// Sells that turn every holding of each selected portfolio into the quote
/// asset: all its whole lots, up to the market's maximum order size.
///
/// Whatever is not sold is reported in the skips with its exact amount, so
/// that, per holding, Σ order amounts + Σ skip amounts = the amount held and
/// the host can return the skipped coins in kind:
/// - the whole holding when the market refuses the sell (`market_inactive`,
///   `min_amount`, `min_notional`, or `below_step` when it is less than one lot);
/// - the lots above the maximum order size (`max_amount`);
/// - the remainder below one lot of a sold holding (`below_step`, dust).
///
/// A zero holding produces nothing. Skips of a market without a usable price
/// carry that price (NaN) and notional as given. `quotes` must come from
/// [`quotes`] with [`Flow::Exit`].
pub fn exit(book: &BookRef<'_>, slots: &[usize], quotes: &[Quote], epoch: &[u32]) -> (LegColumns, LegColumns) {
    over_slots(book, slots, PURPOSE_EXIT, |i, out| exit_one(book, i, quotes, epoch[i], out))
}

pub(crate) fn exit_one(book: &BookRef<'_>, i: usize, quotes: &[Quote], epoch: u32, (orders, skips): &mut (LegColumns, LegColumns)) {
    let portfolio = (i, book.id[i]);
    for (position, r) in book.rows(i).enumerate() {
        let amount = amount_at(book.amount, r);
        if amount <= Amount::ZERO {
            continue;
        }
        let asset = book.asset[r] as u32;
        let quote = &quotes[asset as usize];
        let mut skip = |amount: Amount, reason: SkipReason| {
            let skip = Skip { position: position as u32, asset, side: Side::Sell, amount, reason };
            skips.push_skip(portfolio, &skip, quote);
        };
        let held = quote.lots_in(amount);
        let lots = held.min(quote.max_lots);
        if let Some(refusal) = quote.refusal(lots) {
            skip(amount, skip_reason(refusal));
            continue;
        }
        orders.push_order(portfolio, epoch, &leg(position, asset, Side::Sell, lots, quote, fee_of(book, i, quote)));
        if held > lots {
            skip(quote.lots_amount(held - lots), SkipReason::MaxAmount);
        }
        let dust = amount.checked_sub(quote.lots_amount(held)).unwrap_or(Amount::ZERO);
        if dust > Amount::ZERO {
            skip(dust, SkipReason::BelowStep);
        }
    }
}

/// Value of every portfolio (every slot, active or not): cash + Σ amount·price,
/// in floats. A non-zero holding of an asset whose price is NaN gives NaN
/// (the caller masks); a zero holding counts nothing whatever its price.
/// Refused (naming `prices`) if some holding's asset has no price at all.
pub fn values(book: &BookRef<'_>, prices: &[f64]) -> Result<Vec<f64>> {
    let inline = crate::workers::inline(book.len(), INLINE_PORTFOLIOS);
    let mut out = vec![0.0; book.len()];
    let size = chunk_size(out.len());
    let tasks: Vec<&mut [f64]> = out.chunks_mut(size).collect();
    // Each chunk returns the first asset it met with no price at all: the
    // holdings are checked as they are valued, not in a pass of their own.
    let unpriced: Vec<Option<i32>> = run_tasks(tasks, inline, || (), |_, (c, chunk)| {
        // (The columns in locals: LLVM reloads a struct's fields after every store.)
        let BookRef { cash_float, start, stop, amount_float, asset, .. } = *book;
        let span = c * size..c * size + chunk.len();
        let (cash, start, stop) = (&cash_float[span.clone()], &start[span.clone()], &stop[span]);
        // An asset with no price is noted without a branch (it reads the last
        // price, or NaN if there is none) and looked up after the loop: an
        // error is rare, and the loop stays one chain of adds per portfolio.
        let table: &[f64] = if prices.is_empty() { &[f64::NAN] } else { prices };
        let mut unpriced = false;
        for (((value, &cash), &start), &stop) in chunk.iter_mut().zip(cash).zip(start).zip(stop) {
            let rows = start as usize..stop as usize;
            *value = amount_float[rows.clone()].iter().zip(&asset[rows]).fold(cash, |v, (&amount, &a)| {
                let a = a as u32 as usize; // a negative index becomes one past any table
                unpriced |= a >= prices.len();
                let price = table[a.min(table.len() - 1)];
                // A zero holding adds nothing (not even its NaN price), chosen without a branch.
                select_unpredictable(amount != 0.0, v + amount * price, v)
            });
        }
        let held = || start.iter().zip(stop).flat_map(|(&s, &e)| asset[s as usize..e as usize].iter().copied());
        unpriced.then(|| held().find(|&a| usize::try_from(a).map_or(true, |a| a >= prices.len()))).flatten()
    });
    if let Some(asset) = unpriced.into_iter().flatten().next() {
        return Err(CoreError::price("prices", prices.len(), format!("a price for every held asset (asset index {asset})")));
    }
    Ok(out)
}

/// Adds `deltas[k]` (signed atoms, two words each) to the exact amount at
/// `rows[k]` of `words` (two words per amount), repeated rows accumulating.
/// All or nothing: every result is worked out first; a row out of range, an
/// overflow or a result below zero is an error naming `{field}[{row}]` and
/// the value, and nothing is written.
pub fn add_amounts(words: &mut [i64], rows: &[i64], deltas: &[i64], field: &str) -> Result<()> {
    if !words.len().is_multiple_of(2) {
        return Err(CoreError::amount(field, words.len(), "two words per amount"));
    }
    if deltas.len() != 2 * rows.len() {
        return Err(CoreError::amount(
            format!("{field} deltas"),
            deltas.len() / 2,
            format!("one delta (two words) per row ({} rows)", rows.len()),
        ));
    }
    let n = words.len() / 2;
    let mut changes: Vec<(usize, i128)> = Vec::with_capacity(rows.len());
    for (k, &row) in rows.iter().enumerate() {
        if !(0..n as i64).contains(&row) {
            return Err(CoreError::config(format!("{field}[{row}]"), row, format!("row out of range ({n} rows)")));
        }
        changes.push((row as usize, amount_at(deltas, k).atoms()));
    }
    changes.sort_by_key(|&(row, _)| row); // stable: a row's deltas in their order
    let mut results: Vec<(usize, Amount)> = Vec::with_capacity(changes.len());
    for group in changes.chunk_by(|a, b| a.0 == b.0) {
        let row = group[0].0;
        let mut total = amount_at(words, row).atoms();
        for &(_, delta) in group {
            total = total.checked_add(delta).ok_or_else(|| {
                CoreError::amount(format!("{field}[{row}]"), Amount::from_atoms(delta), "the sum overflows an amount")
            })?;
        }
        let total = Amount::from_atoms(total);
        if total.is_negative() {
            return Err(CoreError::amount(format!("{field}[{row}]"), total, "would go below zero"));
        }
        results.push((row, total));
    }
    for (row, total) in results {
        words[2 * row..2 * row + 2].copy_from_slice(&amount_words(total));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
