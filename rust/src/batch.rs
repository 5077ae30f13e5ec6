//! One tick over a whole Book: scan every portfolio (valuation, deviation,
//! trigger, cooldown, lock), plan the triggered ones with the single-portfolio
//! planner, and gather the orders as columns. Portfolios are split into
//! chunks planned in parallel; the output is in portfolio order whatever the
//! thread count, so a tick is deterministic.

use std::hint::select_unpredictable;
use std::ops::Range;

use rayon::prelude::*;

use crate::book::{amount_at, amount_words, BookRef, StateMut, StateRef, NEVER, TRIGGER_CALENDAR};
use crate::flows::Flow;
use crate::error::{CoreError, Result};
use crate::lots::Amount;
use crate::market::{Market, Quote};
use crate::plan::{plan_valued, Leg, PlanOutput, PlanParams, Scratch, Side, Skip, Valued};
use crate::portfolio::{asset_name, check_price, Drift, PortfolioRef};
use crate::trigger::Edge;
pub(crate) use in_order::run_in_order;
use in_order::Legs;

/// What the tick did with a portfolio (the `status` column).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Not triggered (or its calendar check is not due).
    Idle = 0,
    /// Triggered and planned: its orders are in the batch.
    Rebalance = 1,
    /// Triggered, but every leg it wanted is below the market rules (see skips).
    NothingToDo = 2,
    /// Triggered within the cooldown after its last rebalance.
    Cooldown = 3,
    /// Triggered while orders are out.
    Locked = 4,
    /// Removed or paused: not looked at.
    Inactive = 5,
}

/// Column codes of `side`.
pub const SIDE_BUY: u8 = 0;
pub const SIDE_SELL: u8 = 1;

/// Most portfolios per parallel task: small enough to balance two cores when
/// the triggered ones cluster, large enough that scheduling costs nothing.
pub(crate) const CHUNK: usize = 2048;
/// Fewest portfolios per parallel task, however small the Book.
const MIN_CHUNK: usize = 256;

/// Portfolios per parallel task for a Book of `n`: at least eight tasks per
/// thread where the Book allows, so a book of a few thousand (a sweep) keeps
/// every core busy to the end instead of waiting on one last big chunk.
pub(crate) fn chunk_size(n: usize) -> usize {
    (n / (8 * rayon::current_num_threads().max(1))).clamp(MIN_CHUNK, CHUNK)
}

/// Below this many portfolios a scan or a valuation runs on the calling
/// thread. Handing work to the pool wakes its threads, and a thread woken
/// after a few milliseconds of Python (a backtest's tick) can take longer to
/// start than scanning ten thousand portfolios does (measured on a 2-vCPU VM).
pub(crate) const INLINE_PORTFOLIOS: usize = 1 << 15;
/// Below this many portfolios to plan (about 2 µs each), a plan runs on the
/// calling thread, for the same reason.
pub(crate) const INLINE_PLANS: usize = 1024;

/// `f` over `tasks` in order, each call with a worker's reusable memory made
/// by `init`: on the calling thread when `inline`, else in parallel.
pub(crate) fn run_tasks<T, W, R, I, F>(tasks: Vec<T>, inline: bool, init: I, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    I: Fn() -> W + Sync + Send,
    F: Fn(&mut W, (usize, T)) -> R + Sync + Send,
{
    if inline {
        let mut worker = init();
        tasks.into_iter().enumerate().map(|task| f(&mut worker, task)).collect()
    } else {
        tasks.into_par_iter().enumerate().map_init(init, f).collect()
    }
}

/// `$op!(column)` for every column of [`LegColumns`].
macro_rules! every_column {
    ($op:ident) => {
        $op!(portfolio);
        $op!(portfolio_id);
        $op!(leg);
        $op!(asset);
        $op!(side);
        $op!(lots);
        $op!(amount);
        $op!(price);
        $op!(notional);
        $op!(fee);
        $op!(epoch);
        $op!(purpose);
    };
}

/// Orders (or skipped legs) as columns.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct LegColumns {
    /// Index of the portfolio in the Book.
    pub portfolio: Vec<i64>,
    /// The portfolio's id (stable across Book compactions).
    pub portfolio_id: Vec<u64>,
    /// Position of the asset in the portfolio: the leg of the client order id.
    pub leg: Vec<u8>,
    pub asset: Vec<i32>,
    pub side: Vec<u8>,
    pub lots: Vec<i64>,
    /// Exact amount, two words per leg (see [`crate::book`]).
    pub amount: Vec<i64>,
    pub price: Vec<f64>,
    pub notional: Vec<f64>,
    pub fee: Vec<f64>,
    /// Rebalance epoch of the client order id (orders) or the skip reason code (skips).
    pub epoch: Vec<u32>,
    /// Why: [`PURPOSE_REBALANCE`], [`PURPOSE_INVEST`] or [`PURPOSE_EXIT`].
    pub purpose: Vec<u8>,
}

impl LegColumns {
    pub fn len(&self) -> usize {
        self.portfolio.len()
    }
    pub fn is_empty(&self) -> bool {
        self.portfolio.is_empty()
    }

    /// Room for `n` more legs in every column.
    pub(crate) fn reserve(&mut self, n: usize) {
        macro_rules! reserve {
            ($column:ident) => {
                self.$column.reserve(n)
            };
        }
        // Two words a leg, reserved first: a second, larger reserve after the
        // column's own was a realloc that copied its whole room (5 MB of a
        // million-portfolio tick's orders, on the calling thread).
        self.amount.reserve(2 * n);
        every_column!(reserve);
    }

    /// Appends `other`'s legs after these.
    fn append(&mut self, other: &LegColumns) {
        macro_rules! append {
            ($column:ident) => {
                self.$column.extend_from_slice(&other.$column)
            };
        }
        every_column!(append);
    }

    /// No legs; the room stays.
    fn clear(&mut self) {
        macro_rules! clear {
            ($column:ident) => {
                self.$column.clear()
            };
        }
        every_column!(clear);
    }

    /// Gives the legs pushed since the last tag their purpose.
    pub(crate) fn tag(&mut self, purpose: u8) {
        self.purpose.resize(self.portfolio.len(), purpose);
    }

    pub(crate) fn push_order(&mut self, portfolio: (usize, u64), epoch: u32, leg: &Leg) {
        self.push(portfolio, leg.position, leg.asset, leg.side, leg.lots, leg.amount);
        self.price.push(leg.price);
        self.notional.push(leg.notional);
        self.fee.push(leg.fee);
        self.epoch.push(epoch);
    }

    pub(crate) fn push_skip(&mut self, portfolio: (usize, u64), skip: &Skip, quote: &Quote) {
        // Its value over a lot's value is within a lot of the count: the lots cost one product.
        let notional = skip.amount.to_f64() * quote.price;
        self.push(portfolio, skip.position, skip.asset, skip.side, quote.lots_in_near(skip.amount, notional * quote.per_lot), skip.amount);
        self.price.push(quote.price);
        self.notional.push(notional);
        self.fee.push(0.0);
        self.epoch.push(skip.reason as u32);
    }

    fn push(&mut self, (index, id): (usize, u64), position: u32, asset: u32, side: Side, lots: i64, amount: Amount) {
        self.portfolio.push(index as i64);
        self.portfolio_id.push(id);
        self.leg.push(position as u8);
        self.asset.push(asset as i32);
        self.side.push(if side == Side::Buy { SIDE_BUY } else { SIDE_SELL });
        self.lots.push(lots);
        self.amount.extend(amount_words(amount));
    }
}

/// Everything one tick produced.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Batch {
    /// Per portfolio: what the scan found, and what the tick did (`status`).
    pub portfolios: Scanned,
    /// The orders, sells before buys within each portfolio, portfolios in order.
    pub orders: LegColumns,
    /// Legs not sent (unexecutable drift); `epoch` holds the reason code.
    pub skips: LegColumns,
}

/// One worker's reusable memory.
#[derive(Default)]
struct Worker {
    /// The positions in its chunk of the portfolios it acts on.
    acting: Vec<usize>,
    planner: Planner,
}

/// What planning one portfolio after another reuses.
#[derive(Default)]
struct Planner {
    scratch: Scratch,
    staged: Staged,
}

/// The planner's inputs for a chunk's portfolios to rebalance, read in one
/// pass before the first of them is planned. The columns the scan does not
/// read (exact amounts and cash, ids, strategy codes) are cold by then: read
/// back to back, their cache misses overlap, where reading each portfolio's
/// as it is planned waits for every miss in turn. A plan pass after a
/// separate scan stages the scanned columns too (targets and float
/// amounts), as cold by then: 7–9 % faster on one thread; a tick, which
/// scanned the chunk just now, reads them from the Book.
#[derive(Default)]
struct Staged {
    portfolios: Vec<Inputs>,
    /// The next of `portfolios` to plan.
    next: usize,
    /// The holdings end to end, as the planner takes them (u32 assets and
    /// whole amounts; the Book keeps i32 and two words).
    assets: Vec<u32>,
    amounts: Vec<Amount>,
    /// Their targets and float amounts, if the scanned columns are staged.
    targets: Vec<f64>,
    floats: Vec<f64>,
    scanned_too: bool,
}

/// One portfolio's planner inputs (see [`Staged`]).
struct Inputs {
    /// Index in the Book.
    i: usize,
    id: u64,
    /// None if the Book refused its strategy when it was written (it checks every write): never planned.
    params: Option<PlanParams>,
    cash: Amount,
    /// `cash` as the Book's float copy.
    cash_float: f64,
    cash_target: f64,
    /// Its rows of the [`Staged`] holdings.
    holdings: Range<usize>,
}

/// One staged portfolio, as [`Staged::take`] hands it to the planner.
struct StagedPortfolio<'a> {
    inputs: &'a Inputs,
    assets: &'a [u32],
    amounts: &'a [Amount],
    targets: &'a [f64],
    floats: &'a [f64],
}

impl Staged {
    /// Reads the inputs of the portfolios at `positions` from `first`, in
    /// order; the scanned columns too if `scanned_too`.
    fn read(&mut self, book: &BookRef<'_>, first: usize, positions: impl Iterator<Item = usize>, scanned_too: bool) {
        self.scanned_too = scanned_too;
        self.portfolios.clear();
        self.assets.clear();
        self.amounts.clear();
        self.targets.clear();
        self.floats.clear();
        self.next = 0;
        for k in positions {
            let inputs = self.inputs(book, first + k);
            self.portfolios.push(inputs);
        }
    }

    /// Portfolio i's inputs; its holdings are appended.
    fn inputs(&mut self, book: &BookRef<'_>, i: usize) -> Inputs {
        let rows = book.rows(i);
        let start = self.assets.len();
        self.assets.extend(book.asset[rows.clone()].iter().map(|&a| a as u32));
        self.amounts.extend(rows.clone().map(|r| amount_at(book.amount, r)));
        if self.scanned_too {
            self.targets.extend_from_slice(&book.target[rows.clone()]);
            self.floats.extend_from_slice(&book.amount_float[rows]);
        }
        Inputs {
            i,
            id: book.id[i],
            params: book.plan_params(i),
            cash: amount_at(book.cash, i),
            cash_float: book.cash_float[i],
            cash_target: book.cash_target[i],
            holdings: start..self.assets.len(),
        }
    }

    /// Portfolio i's inputs and holdings (assets, amounts), the next in
    /// order (read now if they were not read ahead).
    fn take<'s>(&'s mut self, book: &BookRef<'s>, i: usize) -> StagedPortfolio<'s> {
        if self.portfolios.get(self.next).is_none_or(|p| p.i != i) {
            let inputs = self.inputs(book, i);
            self.portfolios.insert(self.next, inputs);
        }
        self.next += 1;
        let inputs = &self.portfolios[self.next - 1];
        let staged = inputs.holdings.clone();
        let (targets, floats) = if self.scanned_too {
            (&self.targets[staged.clone()], &self.floats[staged.clone()])
        } else {
            let rows = book.rows(i);
            (&book.target[rows.clone()], &book.amount_float[rows])
        };
        StagedPortfolio { inputs, assets: &self.assets[staged.clone()], amounts: &self.amounts[staged], targets, floats }
    }
}

/// The market rules at this tick's prices, one quote per market. Prices
/// of assets no active portfolio holds may be missing (NaN); any other bad
/// price is refused, naming the asset, before any work.
pub fn quotes(book: &BookRef<'_>, markets: &[Market], prices: &[f64]) -> Result<Vec<Quote>> {
    if prices.len() != markets.len() {
        return Err(CoreError::price(
            "prices",
            prices.len(),
            format!("one price per market ({} markets)", markets.len()),
        ));
    }
    let bad: Vec<usize> = (0..prices.len()).filter(|&a| check_price(prices[a], "").is_err()).collect();
    if !bad.is_empty() {
        let held = (0..book.len())
            .into_par_iter()
            .filter(|&i| book.active[i])
            .flat_map_iter(|i| book.rows(i).map(|r| book.asset[r] as usize))
            .filter(|a| bad.contains(a))
            .min();
        if let Some(asset) = held {
            check_price(prices[asset], &format!("prices[{}]", asset_name(asset as u32, markets)))?;
        }
    }
    Ok(markets.iter().zip(prices).map(|(m, &price)| Quote::new(m, price)).collect())
}

/// Scans and plans every portfolio at `prices` and `now_ms`, in one pass:
/// [`scan`] and [`plan`] of every triggered portfolio. With `commit`, a
/// portfolio that gets orders is locked, its epoch advanced and its
/// rebalance time set, and due calendar checks move to their next slot.
/// The Book must have passed [`BookRef::validate`] against `markets`.
pub fn tick(
    book: &BookRef<'_>,
    state: StateMut<'_>,
    markets: &[Market],
    prices: &[f64],
    now_ms: i64,
    commit: bool,
) -> Result<Batch> {
    check_state(book, &state)?;
    let quotes = quotes(book, markets, prices)?;
    let n = book.len();
    let chunk = chunk_size(n);
    // A fused tick plans as it scans: inline only when it is one chunk anyway.
    let inline = n <= chunk;
    let legs = if inline {
        Legs::default()
    } else {
        // The sample scanned as the tick will scan it (one scan in the binary: `look` inlined once).
        let mut found = Scanned::default();
        legs_with_room(book, |block| {
            let seen = StateRef {
                last_rebalance_ms: &state.last_rebalance_ms[block.clone()],
                next_check_ms: &state.next_check_ms[block.clone()],
                locked: &state.locked[block.clone()],
            };
            found.clear();
            scan_chunk(book, block.start, prices, now_ms, seen, &mut found.grow(block.len()));
            block.zip(&found.status).filter(|&(_, &status)| status == Status::Rebalance as u8).map(|(i, _)| book.rows(i).len()).sum()
        })
    };
    let StateMut { last_rebalance_ms, next_check_ms, locked, epoch } = state;
    let tasks: Vec<_> = last_rebalance_ms
        .chunks_mut(chunk)
        .zip(next_check_ms.chunks_mut(chunk))
        .zip(locked.chunks_mut(chunk))
        .zip(epoch.chunks_mut(chunk))
        .map(|(((last, next), lock), epoch)| (last, next, lock, epoch))
        .collect();
    let moment = Moment { quotes: &quotes, now_ms, commit, own_scan: true };
    let out = (Scanned::with_capacity(n), legs);
    let (portfolios, (orders, skips)) =
        run_in_order(tasks, inline, out, <(Vec<u8>, Worker)>::default, |(actions, worker), c, (last, next, lock, epoch), (scanned, legs)| {
            let first = c * chunk;
            // The whole chunk is scanned, then its triggered portfolios are
            // planned: the scan's loop stays tight, and the rows to plan are
            // still in cache.
            let mut found = scanned.grow(last.len());
            scan_chunk(book, first, prices, now_ms, StateRef { last_rebalance_ms: last, next_check_ms: next, locked: lock }, &mut found);
            let triggered = |status: u8| status == Status::Rebalance as u8;
            actions.clear();
            actions.extend(found.status.iter().map(|&status| if triggered(status) { ACTION_REBALANCE } else { ACTION_NONE }));
            act_on_chunk(book, first, actions, ChunkState { status: found.status, last, next, lock, epoch }, moment, worker, legs);
        });
    Ok(Batch { portfolios, orders, skips })
}

/// What [`scan`] finds per portfolio: value, deviations and status, where
/// `Rebalance` means "triggered and free to plan" until [`plan`] decides.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Scanned {
    pub value: Vec<f64>,
    pub max_deviation: Vec<f64>,
    pub max_relative_deviation: Vec<f64>,
    pub status: Vec<u8>,
}

impl Scanned {
    /// Empty columns with room for `n` portfolios (filled by [`run_in_order`], never zero-filled).
    fn with_capacity(n: usize) -> Scanned {
        Scanned { value: Vec::with_capacity(n), max_deviation: Vec::with_capacity(n), max_relative_deviation: Vec::with_capacity(n), status: Vec::with_capacity(n) }
    }

    /// Rows for `n` more portfolios, for a scan to fill.
    fn grow(&mut self, n: usize) -> Found<'_> {
        fn tail<T: Copy + Default>(column: &mut Vec<T>, n: usize) -> &mut [T] {
            let start = column.len();
            column.resize(start + n, T::default());
            &mut column[start..]
        }
        Found {
            value: tail(&mut self.value, n),
            deviation: tail(&mut self.max_deviation, n),
            relative: tail(&mut self.max_relative_deviation, n),
            status: tail(&mut self.status, n),
        }
    }

    /// Appends `other`'s portfolios after these.
    fn append(&mut self, other: &Scanned) {
        self.value.extend_from_slice(&other.value);
        self.max_deviation.extend_from_slice(&other.max_deviation);
        self.max_relative_deviation.extend_from_slice(&other.max_relative_deviation);
        self.status.extend_from_slice(&other.status);
    }

    /// No portfolios; the room stays.
    fn clear(&mut self) {
        self.value.clear();
        self.max_deviation.clear();
        self.max_relative_deviation.clear();
        self.status.clear();
    }
}

/// Rows of the [`Scanned`] columns for a chunk to fill.
struct Found<'a> {
    value: &'a mut [f64],
    deviation: &'a mut [f64],
    relative: &'a mut [f64],
    status: &'a mut [u8],
}

/// Values every portfolio and checks its trigger, cooldown and lock,
/// planning nothing and changing nothing: the first half of a tick, so a
/// host can decide between the halves (an exit, new money) what [`plan`] does.
pub fn scan(book: &BookRef<'_>, state: StateRef<'_>, markets: &[Market], prices: &[f64], now_ms: i64) -> Result<Scanned> {
    let n = book.len();
    check_lengths(n, &[state.last_rebalance_ms.len(), state.next_check_ms.len(), state.locked.len()])?;
    quotes(book, markets, prices)?; // refuses a bad price of a held asset
    let chunk = chunk_size(n);
    let tasks: Vec<Range<usize>> = (0..n).step_by(chunk.max(1)).map(|start| start..(start + chunk).min(n)).collect();
    let inline = crate::workers::inline(n, INLINE_PORTFOLIOS);
    Ok(run_in_order(tasks, inline, Scanned::with_capacity(n), || (), |_, _, rows, scanned| {
        let seen = StateRef {
            last_rebalance_ms: &state.last_rebalance_ms[rows.clone()],
            next_check_ms: &state.next_check_ms[rows.clone()],
            locked: &state.locked[rows.clone()],
        };
        scan_chunk(book, rows.start, prices, now_ms, seen, &mut scanned.grow(rows.len()));
    }))
}

/// The second half of a tick: carries out each portfolio's `action` —
/// [`ACTION_REBALANCE`] plans it (its `status` becomes `Rebalance` or
/// `NothingToDo`), [`ACTION_INVEST`] buys with its free cash
/// ([`crate::flows::invest`]), [`ACTION_EXIT`] sells everything
/// ([`crate::flows::exit`]) — and commits as [`tick`] does. Orders come out
/// in portfolio order, each with its purpose.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    book: &BookRef<'_>,
    state: StateMut<'_>,
    markets: &[Market],
    prices: &[f64],
    now_ms: i64,
    commit: bool,
    action: &[u8],
    status: &mut [u8],
) -> Result<(LegColumns, LegColumns)> {
    check_state(book, &state)?;
    let n = book.len();
    if action.len() != n || status.len() != n {
        let lengths = format!("{} actions, {} statuses", action.len(), status.len());
        return Err(CoreError::config("action", lengths, format!("one per portfolio ({n} portfolios)")));
    }
    // The checks over every action are passes without a branch per
    // portfolio (they vectorize): a search that stops at the first bad code
    // took 1.3 ms of a million-portfolio pass, on the calling thread.
    if action.iter().copied().max().is_some_and(|highest| highest > ACTION_EXIT) {
        let bad = action.iter().find(|&&a| a > ACTION_EXIT);
        return Err(CoreError::config("action", bad.copied().unwrap_or_default(), "must be 0 (none), 1 (rebalance), 2 (invest) or 3 (exit)"));
    }
    let quotes = plan_quotes(book, markets, prices, action)?;
    let StateMut { last_rebalance_ms, next_check_ms, locked, epoch } = state;
    let inline = crate::workers::inline(acting_count(action), INLINE_PLANS);
    // On the calling thread the ranges need no balancing, but stay chunks:
    // each chunk's list of who acts is then small enough to stay in cache
    // (one range of a million portfolios wrote and read an 8 MB list).
    let bounds = if inline { (0..n.max(1)).step_by(CHUNK).collect() } else { balanced_ranges(action, (n / CHUNK).max(8 * rayon::current_num_threads().max(1))) };
    let tasks: Vec<_> = bounds
        .iter()
        .zip(split_at_bounds(status, &bounds))
        .zip(split_at_bounds(last_rebalance_ms, &bounds))
        .zip(split_at_bounds(next_check_ms, &bounds))
        .zip(split_at_bounds(locked, &bounds))
        .zip(split_at_bounds(epoch, &bounds))
        .map(|(((((&start, status), last), next), lock), epoch)| (start, status, last, next, lock, epoch))
        .collect();
    let moment = Moment { quotes: &quotes, now_ms, commit, own_scan: false };
    let legs = if inline {
        Legs::default()
    } else {
        legs_with_room(book, |block| block.filter(|&i| action[i] != ACTION_NONE).map(|i| book.rows(i).len()).sum())
    };
    Ok(run_in_order(tasks, inline, legs, Worker::default, |worker, _, (start, status, last, next, lock, epoch), out| {
        let action = &action[start..start + status.len()];
        act_on_chunk(book, start, action, ChunkState { status, last, next, lock, epoch }, moment, worker, out);
    }))
}

/// Where each of about `tasks` portfolio ranges of a plan pass starts (the
/// last range ends at `action.len()`): ranges of equal work, a portfolio to
/// act on counting as [`ACT_COST`] idle ones. A sweep's configs come in
/// kinds, so its rebalances cluster; ranges of equal length left one core
/// planning alone at the end of a pass (two threads gave 1.45×).
fn balanced_ranges(action: &[u8], tasks: usize) -> Vec<usize> {
    let weight = |a: u8| if a == ACTION_NONE { 1 } else { ACT_COST };
    // Summed a block at a time (a count that vectorizes), and walked one
    // portfolio at a time only in the blocks where a range ends: the same
    // starts as walking every portfolio, which took 2.8 ms of a
    // million-portfolio pass on the calling thread.
    let block_work = |block: &[u8]| block.len() + (ACT_COST - 1) * acting_count(block);
    let total: usize = action.chunks(WORK_BLOCK).map(block_work).sum();
    let per_task = total.div_ceil(tasks.max(1)).max(1);
    let last = action.len().saturating_sub(1); // no range starts after the last portfolio
    let mut starts = vec![0];
    let mut work = 0;
    for (b, block) in action.chunks(WORK_BLOCK).enumerate() {
        let block_sum = block_work(block);
        if work + block_sum < per_task {
            work += block_sum;
            continue;
        }
        for (i, &a) in (b * WORK_BLOCK..).zip(block).take_while(|&(i, _)| i < last) {
            work += weight(a);
            if work >= per_task {
                starts.push(i + 1);
                work = 0;
            }
        }
    }
    starts
}

/// Portfolios summed at a time by [`balanced_ranges`] and [`acting_count`]: as many as a byte counts.
const WORK_BLOCK: usize = u8::MAX as usize;

/// How many of `action` are not [`ACTION_NONE`]: counted in a byte, a
/// block at a time, so the compares and adds run 16 to a vector (a count
/// in 64-bit words took 0.7 ms of a million).
fn acting_count(action: &[u8]) -> usize {
    action.chunks(WORK_BLOCK).map(|block| usize::from(block.iter().fold(0u8, |n, &a| n + u8::from(a != ACTION_NONE)))).sum()
}

/// A plan or an exit, in portfolios scanned (about 2 µs against 10 ns).
const ACT_COST: usize = 200;

/// `column` cut at `starts` (as [`balanced_ranges`] gives), one piece per range.
fn split_at_bounds<'a, T>(mut column: &'a mut [T], starts: &[usize]) -> Vec<&'a mut [T]> {
    let mut pieces = Vec::with_capacity(starts.len());
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(start + column.len(), |&next| next);
        let (piece, rest) = std::mem::take(&mut column).split_at_mut(end - start);
        pieces.push(piece);
        column = rest;
    }
    pieces
}

/// What [`plan`] does with a portfolio (its `action`).
pub const ACTION_NONE: u8 = 0;
pub const ACTION_REBALANCE: u8 = 1;
pub const ACTION_INVEST: u8 = 2;
pub const ACTION_EXIT: u8 = 3;

/// Why an order is sent (the `purpose` column).
pub const PURPOSE_REBALANCE: u8 = 0;
pub const PURPOSE_INVEST: u8 = 1;
pub const PURPOSE_EXIT: u8 = 2;

fn check_state(book: &BookRef<'_>, state: &StateMut<'_>) -> Result<()> {
    check_lengths(book.len(), &[state.last_rebalance_ms.len(), state.next_check_ms.len(), state.locked.len(), state.epoch.len()])
}

fn check_lengths(n: usize, lengths: &[usize]) -> Result<()> {
    if lengths.iter().any(|&len| len != n) {
        return Err(CoreError::config("state", format!("{lengths:?}"), format!("one value per portfolio ({n} portfolios)")));
    }
    Ok(())
}

/// The quotes for a plan pass: prices are checked, naming the asset, where
/// an action needs them (see [`crate::flows::quotes`] for new money and exits).
fn plan_quotes(book: &BookRef<'_>, markets: &[Market], prices: &[f64], action: &[u8]) -> Result<Vec<Quote>> {
    let all = quotes(book, markets, prices)?;
    if prices.iter().all(|&p| check_price(p, "").is_ok()) {
        return Ok(all);
    }
    for (code, flow) in [(ACTION_INVEST, Flow::Invest), (ACTION_EXIT, Flow::Exit)] {
        let slots: Vec<usize> = (0..action.len()).filter(|&i| action[i] == code).collect();
        crate::flows::quotes(book, &slots, markets, prices, flow)?;
    }
    Ok(all)
}

/// How many blocks of how many portfolios [`legs_with_room`] looks at.
const SAMPLE_BLOCKS: usize = 32;
const SAMPLE_BLOCK: usize = 64;

/// Empty columns for the legs of a pass over `book`, with room judged before
/// any task runs (see [`run_in_order`]) from blocks of portfolios spread
/// over the Book (`acting_rows(block)`: the holdings of the block's
/// portfolios that will be planned), scaled to the Book, a quarter
/// more (see [`reserve_legs`]). A bad guess costs time, nothing else: the
/// columns grow.
fn legs_with_room(book: &BookRef<'_>, mut acting_rows: impl FnMut(Range<usize>) -> usize) -> Legs {
    let n = book.len();
    let (mut sampled, mut rows) = (0, 0);
    for b in 0..SAMPLE_BLOCKS {
        let start = b * n / SAMPLE_BLOCKS;
        let block = start..(start + SAMPLE_BLOCK).min((b + 1) * n / SAMPLE_BLOCKS);
        sampled += block.len();
        rows += acting_rows(block);
    }
    let rows = (rows * n).checked_div(sampled).unwrap_or(0);
    let mut legs = Legs::default();
    reserve_legs(&mut legs, rows + rows / 4);
    legs
}

/// Room in `legs` for the legs of portfolios holding `rows` holdings in
/// all: at most an order per holding (SPEC §2), fewer skipped legs than orders.
pub(crate) fn reserve_legs((orders, skips): &mut Legs, rows: usize) {
    orders.reserve(rows);
    skips.reserve(rows / 2);
}

/// The prices' quotes and the time a tick or plan pass acts at, and whether it commits.
#[derive(Copy, Clone)]
struct Moment<'a> {
    quotes: &'a [Quote],
    now_ms: i64,
    commit: bool,
    /// The portfolios to rebalance are those this call's own scan found
    /// past their band (a tick), not a host's choice (a plan pass).
    own_scan: bool,
}

/// A chunk's rows of the statuses and of the state a plan commits.
struct ChunkState<'a> {
    status: &'a mut [u8],
    last: &'a mut [i64],
    next: &'a mut [i64],
    lock: &'a mut [bool],
    epoch: &'a mut [u32],
}

/// Carries out `action` (one per portfolio) for the chunk of portfolios
/// from `first`, whose rows of the state are `state`: the portfolios to act
/// on are listed, room made for their orders, the planner's inputs read
/// ahead, then each [`act`]ed on in order, its orders and skips appended to `out`.
#[allow(clippy::too_many_arguments)]
fn act_on_chunk(book: &BookRef<'_>, first: usize, action: &[u8], state: ChunkState<'_>, at: Moment<'_>, worker: &mut Worker, out: &mut Legs) {
    let ChunkState { status, last, next, lock, epoch } = state;
    let acting = acting(book, first, (next, at.now_ms), |k| action[k], &mut worker.acting);
    // Room for the chunk's legs, so its columns rarely grow as they are written.
    let rows: usize = acting.iter().filter(|&&k| action[k] != ACTION_NONE).map(|&k| book.rows(first + k).len()).sum();
    reserve_legs(out, rows);
    worker.planner.staged.read(book, first, acting.iter().copied().filter(|&k| action[k] == ACTION_REBALANCE), !at.own_scan);
    for &k in acting.iter() {
        let cells = Cells { last_rebalance_ms: &mut last[k], next_check_ms: &mut next[k], locked: &mut lock[k], epoch: &mut epoch[k] };
        act(book, first + k, action[k], &mut status[k], cells, at, &mut worker.planner, out);
    }
}

/// The state cells of one portfolio that a plan commits.
struct Cells<'a> {
    last_rebalance_ms: &'a mut i64,
    next_check_ms: &'a mut i64,
    locked: &'a mut bool,
    epoch: &'a mut u32,
}

/// Scans the chunk of portfolios from `first` into `found`; `state` holds
/// the chunk's rows of the state.
fn scan_chunk(book: &BookRef<'_>, first: usize, prices: &[f64], now_ms: i64, state: StateRef<'_>, found: &mut Found<'_>) {
    // Every column cut to the chunk's length: indexing them is checked once
    // per column, not once per portfolio and column.
    let n = found.status.len();
    let book = book.portfolios(first..first + n);
    // The holdings columns the scan reads cut to one length, so a portfolio's
    // rows are checked against it once rather than once per column.
    let rows = book.asset.len().min(book.amount_float.len()).min(book.target.len());
    let book = BookRef { asset: &book.asset[..rows], amount_float: &book.amount_float[..rows], target: &book.target[..rows], ..book };
    let state = StateRef { last_rebalance_ms: &state.last_rebalance_ms[..n], next_check_ms: &state.next_check_ms[..n], locked: &state.locked[..n] };
    let (value, deviation, relative) = (&mut found.value[..n], &mut found.deviation[..n], &mut found.relative[..n]);
    for k in 0..n {
        let (seen, status) = look(&book, k, prices, now_ms, &state);
        (value[k], deviation[k], relative[k], found.status[k]) = (seen.value, seen.deviation, seen.relative, status as u8);
    }
}

/// Value, deviations and status of portfolio i of `book`, whose state is
/// row i of `state`. Nothing is planned or changed.
#[inline]
fn look(book: &BookRef<'_>, i: usize, prices: &[f64], now_ms: i64, state: &StateRef<'_>) -> (Scan, Status) {
    if !book.active[i] {
        return (Scan::default(), Status::Inactive);
    }
    // The scan needs only the band; the whole strategy is decoded for the
    // few portfolios that get planned.
    let seen = scan_one(book, i, prices, Edge::of(book.band(i)));
    // Every condition is worked out, then the status chosen without a
    // branch: which portfolios fire is data the predictor cannot learn (a
    // quarter of a sweep's fire each tick), and a mispredict costs more than
    // reading the state of every portfolio.
    let due = (book.trigger[i] != TRIGGER_CALENDAR) | (now_ms >= state.next_check_ms[i]);
    let cooling = in_cooldown(state.last_rebalance_ms[i], book.cooldown_ms[i], now_ms);
    let free = select_unpredictable(cooling, Status::Cooldown, Status::Rebalance);
    let fired = select_unpredictable(state.locked[i], Status::Locked, free);
    let status = select_unpredictable(due & seen.breached, fired, Status::Idle);
    (seen, status)
}

fn in_cooldown(last_rebalance_ms: i64, cooldown_ms: i64, now_ms: i64) -> bool {
    (last_rebalance_ms != NEVER) & (now_ms < last_rebalance_ms.saturating_add(cooldown_ms))
}

/// Nothing to plan and no calendar check due (so none to move): most
/// portfolios, which [`acting`] leaves out, so [`act`] never sees them.
fn idle(book: &BookRef<'_>, i: usize, action: u8, next_check_ms: i64, now_ms: i64) -> bool {
    (action == ACTION_NONE) & ((book.trigger[i] != TRIGGER_CALENDAR) | (now_ms < next_check_ms))
}

/// The positions from `first` of the `count` portfolios that are not
/// [`idle`] under `action` at `now_ms` (`next_check_ms` holds the chunk's
/// rows), in order, listed in `into`. One pass with no branch per portfolio
/// (which few act is data the predictor cannot learn); the chunk's later
/// passes then visit only these.
fn acting<'a>(
    book: &BookRef<'_>,
    first: usize,
    (next_check_ms, now_ms): (&[i64], i64),
    action: impl Fn(usize) -> u8,
    into: &'a mut Vec<usize>,
) -> &'a [usize] {
    into.resize(next_check_ms.len(), 0);
    let mut listed = 0;
    for (k, &next) in next_check_ms.iter().enumerate() {
        into[listed] = k;
        listed += usize::from(!idle(book, first + k, action(k), next, now_ms));
    }
    &into[..listed]
}

/// Carries out `action` for portfolio i (not [`idle`]) and, with `commit`, writes its
/// state: a portfolio that gets orders is locked and its epoch advanced
/// (its orders carry the new epoch); a rebalance sets the rebalance time; a
/// due calendar check that ran moves to its next slot (one held back by the
/// lock or the cooldown stays due).
#[allow(clippy::too_many_arguments)]
#[inline(never)] // out of its chunk's loop, which stays small (inlined: 1–2 % slower ticks)
fn act(
    book: &BookRef<'_>,
    i: usize,
    action: u8,
    status: &mut u8,
    cells: Cells<'_>,
    Moment { quotes, now_ms, commit, own_scan }: Moment<'_>,
    planner: &mut Planner,
    out: &mut Legs,
) {
    let calendar = book.trigger[i] == TRIGGER_CALENDAR;
    let next_epoch = cells.epoch.wrapping_add(1);
    let orders_before = out.0.len();
    let purpose = match action {
        ACTION_REBALANCE => {
            *status = plan_one(book, i, (quotes, own_scan), next_epoch, planner, out) as u8;
            PURPOSE_REBALANCE
        }
        ACTION_INVEST => {
            crate::flows::invest_one(book, i, quotes, next_epoch, out);
            PURPOSE_INVEST
        }
        ACTION_EXIT => {
            crate::flows::exit_one(book, i, quotes, next_epoch, out);
            PURPOSE_EXIT
        }
        _ => PURPOSE_REBALANCE,
    };
    out.0.tag(purpose);
    out.1.tag(purpose);
    if !commit {
        return;
    }
    if out.0.len() > orders_before {
        *cells.locked = true;
        *cells.epoch = next_epoch;
        if action == ACTION_REBALANCE {
            *cells.last_rebalance_ms = now_ms;
        }
    }
    let calendar_due = calendar && book.active[i] && now_ms >= *cells.next_check_ms;
    let ran = [Status::Idle, Status::Rebalance, Status::NothingToDo].iter().any(|&s| *status == s as u8);
    if calendar_due && ran {
        *cells.next_check_ms = next_slot(*cells.next_check_ms, book.interval_ms[i].max(1), now_ms);
    }
}

/// The first slot of the schedule `next + k·interval` after `now`, so a
/// calendar keeps its phase (daily at the same time) however late a tick comes.
pub fn next_slot(next: i64, interval_ms: i64, now_ms: i64) -> i64 {
    let missed = (now_ms as i128 - next as i128).div_euclid(interval_ms as i128) + 1;
    (next as i128 + missed.max(1) * interval_ms as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

#[derive(Default)]
struct Scan {
    value: f64,
    deviation: f64,
    relative: f64,
    /// The trigger's band (or the calendar's gate) is breached; always true for a gateless calendar.
    breached: bool,
}

/// Value, deviation and band check of portfolio i, the same arithmetic as the planner's.
fn scan_one(book: &BookRef<'_>, i: usize, prices: &[f64], edge: Edge) -> Scan {
    let rows = book.rows(i);
    let targets = &book.target[rows.clone()];
    // Each holding is valued twice, for the total and then for its weight:
    // its row is in L1 by then, and that is cheaper than keeping the values.
    let held = book.amount_float[rows.clone()].iter().zip(&book.asset[rows]).map(|(&amount, &asset)| amount * prices[asset as usize]);
    let cash = book.cash_float[i];
    let value = held.clone().fold(cash, |value, held| value + held);
    let mut scan = Scan { value, deviation: 0.0, relative: 0.0, breached: edge.is_none() };
    if !positive_finite(value) {
        scan.value = if value.is_finite() { value } else { 0.0 };
        scan.breached = false;
        return scan;
    }
    let cash_target = book.cash_target[i];
    let cash_row = (cash_target > 0.0).then_some((cash, cash_target));
    let drift = Drift::measure_to(held.zip(targets.iter().copied()).chain(cash_row), value, edge);
    (scan.deviation, scan.relative, scan.breached) = (drift.deviation, drift.relative, edge.is_none() | drift.breached);
    scan
}

/// `x` is finite and > 0, in one integer comparison: such floats' bits run
/// from 1 to those of `f64::MAX` (LLVM turns `x > 0.0 && x < f64::INFINITY`
/// into a class test of some fifteen integer operations).
#[inline]
fn positive_finite(x: f64) -> bool {
    x.to_bits().wrapping_sub(1) < f64::MAX.to_bits()
}

/// Plans portfolio i; `own_scan`: this call's scan found it past its band.
fn plan_one(
    book: &BookRef<'_>,
    i: usize,
    (quotes, own_scan): (&[Quote], bool),
    epoch: u32,
    planner: &mut Planner,
    (orders, skips): &mut (LegColumns, LegColumns),
) -> Status {
    let Planner { scratch, staged } = planner;
    let StagedPortfolio { inputs, assets, amounts, targets, floats } = staged.take(book, i);
    let Some(params) = &inputs.params else {
        return Status::Inactive;
    };
    let p = PortfolioRef { assets, amounts, targets, cash: inputs.cash, cash_target: inputs.cash_target };
    // Valued from the floats the scan read: the same value and drift as it
    // found, so a portfolio it found past its band is not measured again
    // (a plan pass's statuses may be a host's: those are).
    let valued = Valued::Copies { amounts: floats, cash: inputs.cash_float, triggered: own_scan };
    let before = orders.len();
    plan_valued(&p, quotes, params, scratch, &mut Emit { portfolio: (i, inputs.id), epoch, quotes, orders, skips }, valued);
    if orders.len() == before {
        Status::NothingToDo
    } else {
        Status::Rebalance
    }
}

/// A plan's orders and skipped legs written straight into a batch's columns.
struct Emit<'a> {
    portfolio: (usize, u64),
    epoch: u32,
    quotes: &'a [Quote],
    orders: &'a mut LegColumns,
    skips: &'a mut LegColumns,
}

impl PlanOutput for Emit<'_> {
    fn order(&mut self, leg: Leg) {
        self.orders.push_order(self.portfolio, self.epoch, &leg);
    }
    fn skip(&mut self, skip: Skip) {
        self.skips.push_skip(self.portfolio, &skip, &self.quotes[skip.asset as usize]);
    }
}

mod in_order;
#[cfg(test)]
mod probe;

#[cfg(test)]
mod tests {
    use super::{balanced_ranges, next_slot, split_at_bounds, ACTION_NONE, ACTION_REBALANCE, ACT_COST};

    #[test]
    fn plan_tasks_share_the_work_not_the_length() {
        // 10,000 portfolios, the 1,000 to rebalance all at the end (a sweep's configs come in kinds).
        let mut action = vec![ACTION_NONE; 10_000];
        action[9_000..].fill(ACTION_REBALANCE);
        let starts = balanced_ranges(&action, 16);
        assert_eq!(starts[0], 0);
        assert!(starts.windows(2).all(|w| w[0] < w[1]) && starts.last().is_some_and(|&last| last < action.len()));
        let work = |range: &[u8]| range.iter().map(|&a| if a == ACTION_NONE { 1 } else { ACT_COST }).sum::<usize>();
        let total = work(&action);
        let ends: Vec<usize> = starts.iter().skip(1).copied().chain([action.len()]).collect();
        for (&start, &end) in starts.iter().zip(&ends) {
            // No range holds more than its share plus one portfolio's work.
            assert!(work(&action[start..end]) <= total.div_ceil(16) + ACT_COST, "{start}..{end}");
        }
        assert!(starts.iter().filter(|&&s| s >= 9_000).count() >= 14, "the rebalances are spread: {starts:?}");
        // Every column is cut at the same places, every portfolio in one piece, in order.
        let mut column: Vec<usize> = (0..action.len()).collect();
        let pieces = split_at_bounds(&mut column, &starts);
        assert_eq!(pieces.len(), starts.len());
        assert_eq!(pieces.iter().map(|p| p[0]).collect::<Vec<_>>(), starts);
        assert_eq!(pieces.concat(), (0..action.len()).collect::<Vec<_>>());
        // Never more ranges than portfolios; an empty Book is one empty range.
        assert_eq!(balanced_ranges(&[ACTION_NONE; 3], 16).len(), 3);
        assert_eq!(balanced_ranges(&[], 16), vec![0]);
    }

    #[test]
    fn plan_tasks_start_where_a_walk_over_every_portfolio_starts_them() {
        // The ranges summed a block at a time are the ranges of the plain walk.
        fn walked(action: &[u8], tasks: usize) -> Vec<usize> {
            let weight = |a: u8| if a == ACTION_NONE { 1 } else { ACT_COST };
            let per_task = action.iter().map(|&a| weight(a)).sum::<usize>().div_ceil(tasks.max(1)).max(1);
            let (mut starts, mut work) = (vec![0], 0);
            for (i, &a) in action.iter().enumerate().take(action.len().saturating_sub(1)) {
                work += weight(a);
                if work >= per_task {
                    starts.push(i + 1);
                    work = 0;
                }
            }
            starts
        }
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        for case in 0..300 {
            let n = (next() % 5_000) as usize;
            let share = next() % 100;
            let action: Vec<u8> = (0..n).map(|_| if next() % 100 < share { (1 + next() % 3) as u8 } else { ACTION_NONE }).collect();
            let tasks = 1 + (next() % 64) as usize;
            assert_eq!(balanced_ranges(&action, tasks), walked(&action, tasks), "case {case}: {n} portfolios, {tasks} tasks");
        }
    }

    #[test]
    fn a_calendar_keeps_its_phase() {
        let day = 86_400_000;
        assert_eq!(next_slot(0, day, 0), day);
        assert_eq!(next_slot(0, day, day - 1), day);
        assert_eq!(next_slot(0, day, 3 * day + 5), 4 * day);
        assert_eq!(next_slot(day, day, day), 2 * day);
        let late = next_slot(i64::MIN, day, 0); // far past: the next slot, on the same grid
        assert!(0 < late && late <= day && late.rem_euclid(day) == i64::MIN.rem_euclid(day));
        assert_eq!(next_slot(0, i64::MAX, 1), i64::MAX); // saturates, never wraps
    }
}
