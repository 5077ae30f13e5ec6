//! Probes for profiling and for checking that a speed-up changed nothing:
//! a seeded realistic Book (Binance-like rules, 2–10 holdings, every
//! destination, absolute and relative bands, fee overrides, cash targets,
//! an inactive market), planned one by one and ticked whole. Run with
//! `cargo test --release --lib probe -- --ignored --nocapture`; the digests
//! hash every bit of every output, so two builds agree only if their plans do.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Instant;

use crate::book::{amount_words, BookRef, StateMut, DESTINATION_INNER_BAND, KIND_RELATIVE, NEVER};
use crate::lots::Amount;
use crate::market::{Market, Quote};
use crate::plan::{plan_into, Scratch};

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 1_000_000) as f64 / 1e6
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n - 1)
    }
}

/// A Book's columns, owned.
#[derive(Default)]
struct Owned {
    id: Vec<u64>,
    start: Vec<i64>,
    stop: Vec<i64>,
    cash: Vec<i64>,
    cash_float: Vec<f64>,
    cash_target: Vec<f64>,
    active: Vec<bool>,
    trigger: Vec<u8>,
    threshold_kind: Vec<u8>,
    threshold: Vec<f64>,
    interval_ms: Vec<i64>,
    cooldown_ms: Vec<i64>,
    destination: Vec<u8>,
    inner_k: Vec<f64>,
    fee_rate: Vec<f64>,
    asset: Vec<i32>,
    amount: Vec<i64>,
    amount_float: Vec<f64>,
    target: Vec<f64>,
}

impl Owned {
    fn book(&self) -> BookRef<'_> {
        BookRef {
            id: &self.id,
            start: &self.start,
            stop: &self.stop,
            cash: &self.cash,
            cash_float: &self.cash_float,
            cash_target: &self.cash_target,
            active: &self.active,
            trigger: &self.trigger,
            threshold_kind: &self.threshold_kind,
            threshold: &self.threshold,
            interval_ms: &self.interval_ms,
            cooldown_ms: &self.cooldown_ms,
            destination: &self.destination,
            inner_k: &self.inner_k,
            fee_rate: &self.fee_rate,
            asset: &self.asset,
            amount: &self.amount,
            amount_float: &self.amount_float,
            target: &self.target,
        }
    }
}

/// `k_markets` markets at their prices; the last one inactive when `mixed`.
fn markets(rng: &mut Rng, k_markets: usize, mixed: bool) -> (Vec<Market>, Vec<f64>) {
    let (mut markets, mut prices) = (Vec::new(), Vec::new());
    for i in 0..k_markets {
        let price = (10f64.powf(-4.5 + 9.5 * rng.unit()) * 1e8).round().max(1.0) / 1e8;
        let e = ((0.1 / price).log10().ceil()).min(0.0) as i32;
        let step = if e == 0 { "1".to_string() } else { format!("0.{}1", "0".repeat((-e - 1) as usize)) };
        let step = Amount::parse(&step).expect("step");
        let mut m = Market::new(&format!("C{i}/USDT"), &format!("C{i}"), "USDT", step);
        m.min_amount = step;
        m.min_notional = Amount::parse(if mixed && i % 7 == 3 { "0" } else { "5" }).expect("min");
        m.taker_fee = if mixed && i % 5 == 1 { 0.00075 } else { 0.001 };
        if mixed && i % 11 == 4 {
            m.max_amount = Some(step.checked_add(Amount::from_atoms(step.atoms() * 2000)).expect("max"));
        }
        m.active = !(mixed && i == k_markets - 1);
        markets.push(m);
        prices.push(price);
    }
    (markets, prices)
}

/// `n` portfolios, a `share` of them pushed 1.05–2 bands off; `mixed` varies
/// every strategy column, else threshold 5 points to target (the tick bench).
fn book(rng: &mut Rng, n: usize, quotes: &[Quote], share: f64, mixed: bool) -> Owned {
    let mut o = Owned::default();
    for i in 0..n {
        let k = 2 + rng.below(9);
        let mut assets: Vec<u32> = Vec::new();
        while assets.len() < k {
            let a = rng.below(quotes.len()) as u32;
            if !assets.contains(&a) {
                assets.push(a);
            }
        }
        let cash_target = if mixed && rng.unit() < 0.1 { 0.05 } else { 0.0 };
        let mut pct: Vec<f64> = (0..k).map(|_| 1.0 + (rng.unit() * 20.0).floor()).collect();
        let sum: f64 = pct.iter().sum();
        pct[0] += 100.0 - 100.0 * cash_target - sum;
        if pct[0] < 1.0 {
            pct = vec![(100.0 - 100.0 * cash_target) / k as f64; k];
        }
        let targets: Vec<f64> = pct.iter().map(|p| p / 100.0).collect();
        let theta = if mixed { [0.03, 0.05, 0.1, 0.2][rng.below(4)] } else { 0.05 };
        let relative = mixed && rng.unit() < 0.3;
        let half = if relative { theta * targets[0] } else { theta };
        let value = (2000.0 * (1.2 * (rng.unit() - 0.5) * 3.0).exp()).clamp(100.0, 200_000.0);
        let push = if rng.unit() < share { half * (1.05 + rng.unit()) } else { half * 0.5 * rng.unit() };
        let push = if targets[0] > push && rng.unit() < 0.5 { -push } else { push };
        o.id.push(1000 + i as u64);
        o.start.push(o.asset.len() as i64);
        let mut held = 0.0;
        for j in 0..k {
            let rest = 1.0 - targets[0] - cash_target;
            let w = if j == 0 { targets[0] + push } else { (targets[j] - push * targets[j] / rest).max(0.001) };
            let q = &quotes[assets[j] as usize];
            let lots = (w * value / q.price / q.step.to_f64()).floor().max(0.0);
            let amount = q.lots_amount(lots as i64);
            held += amount.to_f64() * q.price;
            o.asset.push(assets[j] as i32);
            o.amount.extend(amount_words(amount));
            o.amount_float.push(amount.to_f64());
            o.target.push(targets[j]);
        }
        o.stop.push(o.asset.len() as i64);
        let cash_share = if cash_target > 0.0 { cash_target } else { 0.01 * rng.unit() };
        let cash = Amount::from_atoms(((value - held).max(0.0) * cash_share * 100.0).round() as i128 * 10i128.pow(16));
        o.cash.extend(amount_words(cash));
        o.cash_float.push(cash.to_f64());
        o.cash_target.push(cash_target);
        o.active.push(true);
        o.trigger.push(0);
        o.threshold_kind.push(if relative { KIND_RELATIVE } else { 0 });
        o.threshold.push(theta);
        o.interval_ms.push(0);
        o.cooldown_ms.push(300_000);
        let destination = if mixed { rng.below(3) as u8 } else { 0 };
        o.destination.push(destination);
        o.inner_k.push(if destination == DESTINATION_INNER_BAND { 0.5 } else { 0.0 });
        o.fee_rate.push(if mixed && rng.unit() < 0.2 { 0.002 } else { f64::NAN });
    }
    o
}

fn setup(seed: u64, n: usize, share: f64, mixed: bool) -> (Vec<Market>, Vec<f64>, Vec<Quote>, Owned) {
    let mut rng = Rng(seed);
    let (markets, prices) = markets(&mut rng, 50, mixed);
    let quotes: Vec<Quote> = markets.iter().zip(&prices).map(|(m, &p)| Quote::new(m, p)).collect();
    let owned = book(&mut rng, n, &quotes, share, mixed);
    (markets, prices, quotes, owned)
}

/// Plans every portfolio of a mixed book with the single planner and hashes every output bit.
fn plan_digest(seed: u64, n: usize) -> (u64, usize, usize) {
    let (_, _, quotes, owned) = setup(seed, n, 0.7, true);
    let book = owned.book();
    let mut h = DefaultHasher::new();
    let (mut scratch, mut legs, mut skips) = (Scratch::default(), Vec::new(), Vec::new());
    let (mut assets, mut amounts) = (Vec::new(), Vec::new());
    let (mut total_legs, mut total_skips) = (0, 0);
    for i in 0..book.len() {
        let strategy = book.strategy(i).expect("valid strategy");
        assets.clear();
        amounts.clear();
        for r in book.rows(i) {
            assets.push(book.asset[r] as u32);
            amounts.push(crate::book::amount_at(book.amount, r));
        }
        let rows = book.rows(i);
        let p = crate::portfolio::PortfolioRef {
            assets: &assets,
            amounts: &amounts,
            targets: &book.target[rows],
            cash: crate::book::amount_at(book.cash, i),
            cash_target: book.cash_target[i],
        };
        legs.clear();
        skips.clear();
        let out = plan_into(&p, &quotes, &strategy.params, &mut scratch, &mut legs, &mut skips);
        for x in [out.value, out.max_deviation, out.max_relative_deviation, out.value_after, out.cash_after, out.fees] {
            x.to_bits().hash(&mut h);
        }
        out.triggered.hash(&mut h);
        for l in &legs {
            (l.position, l.asset, l.side, l.lots, l.amount, l.price.to_bits(), l.notional.to_bits(), l.fee.to_bits()).hash(&mut h);
        }
        for s in &skips {
            (s.position, s.asset, s.side, s.amount, s.reason).hash(&mut h);
        }
        total_legs += legs.len();
        total_skips += skips.len();
    }
    (h.finish(), total_legs, total_skips)
}

fn hash_columns(h: &mut DefaultHasher, c: &super::LegColumns) {
    (&c.portfolio, &c.portfolio_id, &c.leg, &c.asset, &c.side, &c.lots, &c.amount, &c.epoch, &c.purpose).hash(h);
    for col in [&c.price, &c.notional, &c.fee] {
        col.iter().for_each(|x| x.to_bits().hash(h));
    }
}

#[inline(never)]
fn tick_once(markets: &[Market], prices: &[f64], owned: &Owned) -> super::Batch {
    let book = owned.book();
    let n = book.len();
    let (mut last, mut next, mut locked, mut epoch) = (vec![NEVER; n], vec![0i64; n], vec![false; n], vec![3u32; n]);
    let state = StateMut { last_rebalance_ms: &mut last, next_check_ms: &mut next, locked: &mut locked, epoch: &mut epoch };
    super::tick(&book, state, markets, prices, 1_000_000, true).expect("valid book")
}

#[test]
#[ignore]
fn probe_digest() {
    let (h, legs, skips) = plan_digest(12345, 200_000);
    eprintln!("plan digest {h:016x} ({legs} legs, {skips} skips)");
    let (markets, prices, _, owned) = setup(777, 100_000, 0.3, true);
    owned.book().validate(&markets).expect("valid book");
    let batch = tick_once(&markets, &prices, &owned);
    let mut h = DefaultHasher::new();
    hash_columns(&mut h, &batch.orders);
    hash_columns(&mut h, &batch.skips);
    let s = &batch.portfolios;
    for col in [&s.value, &s.max_deviation, &s.max_relative_deviation] {
        col.iter().for_each(|x| x.to_bits().hash(&mut h));
    }
    s.status.hash(&mut h);
    eprintln!("tick digest {:016x} ({} orders, {} skips)", h.finish(), batch.orders.len(), batch.skips.len());
}

/// Single-thread cost: the planner alone on triggered portfolios, and the
/// tick per planned portfolio (scan, plan, columns) on a book of which 10 % are triggered.
#[test]
#[ignore]
fn probe_speed() {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    // PROBE_ONLY=target or mixed: the planner alone on that kind of book (for perf and cachegrind).
    let only = std::env::var("PROBE_ONLY").ok();
    for (name, mixed) in [("to target", false), ("mixed", true)] {
        if only.as_deref().is_some_and(|kind| (kind == "mixed") != mixed) {
            continue;
        }
        let (markets, prices, quotes, owned) = setup(99, 20_000, 1.0, mixed);
        let book = owned.book();
        let strategies: Vec<_> = (0..book.len()).map(|i| book.strategy(i).expect("valid")).collect();
        let portfolios: Vec<(Vec<u32>, Vec<Amount>)> = (0..book.len())
            .map(|i| book.rows(i).map(|r| (book.asset[r] as u32, crate::book::amount_at(book.amount, r))).unzip())
            .collect();
        let (mut scratch, mut legs, mut skips) = (Scratch::default(), Vec::new(), Vec::new());
        let mut best = f64::INFINITY;
        for _ in 0..rounds {
            let t = Instant::now();
            for (i, (assets, amounts)) in portfolios.iter().enumerate() {
                let p = crate::portfolio::PortfolioRef {
                    assets,
                    amounts,
                    targets: &book.target[book.rows(i)],
                    cash: crate::book::amount_at(book.cash, i),
                    cash_target: book.cash_target[i],
                };
                legs.clear();
                skips.clear();
                plan_into(&p, &quotes, &strategies[i].params, &mut scratch, &mut legs, &mut skips);
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        eprintln!("plan_into, {name}: {:.3} us/plan (best of {rounds})", best * 1e6 / book.len() as f64);
        drop((markets, prices));
    }
    if only.is_some() {
        return;
    }
    for (name, mixed) in [("to target", false), ("mixed", true)] {
        let (markets, prices, _, owned) = setup(5, 200_000, 0.1, mixed);
        let (mut best, mut idle_best, mut planned) = (f64::INFINITY, f64::INFINITY, 0);
        let (_, _, _, idle) = setup(5, 200_000, 0.0, mixed);
        for _ in 0..rounds {
            pool.install(|| {
                let t = Instant::now();
                let batch = tick_once(&markets, &prices, &owned);
                best = best.min(t.elapsed().as_secs_f64());
                planned = batch.portfolios.status.iter().filter(|&&s| s == 1 || s == 2).count();
                let t = Instant::now();
                tick_once(&markets, &prices, &idle);
                idle_best = idle_best.min(t.elapsed().as_secs_f64());
            });
        }
        eprintln!(
            "tick, {name}: {:.1} ms, idle {:.1} ms, {planned} planned: {:.3} us per plan (one thread, best of {rounds})",
            best * 1e3,
            idle_best * 1e3,
            (best - idle_best) * 1e6 / planned as f64
        );
    }
}

/// A scan, kept out of line so `valgrind --tool=callgrind --toggle-collect` can count it.
#[inline(never)]
fn scan_once(book: &BookRef<'_>, state: crate::book::StateRef<'_>, markets: &[Market], prices: &[f64]) -> super::Scanned {
    super::scan(book, state, markets, prices, 1_000_000).expect("valid book")
}

/// The tick's work around the planner, on one thread: a scan alone and a
/// whole tick of the "to target" book with a tenth of it triggered (like
/// `benches/tick.py`). `N` portfolios (default 200,000), best of `ROUNDS`.
/// Small enough to run under `valgrind --tool=callgrind` for instruction counts.
#[test]
#[ignore]
fn probe_scan_speed() {
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (n, rounds) = (env("N", 200_000), env("ROUNDS", 5));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let (markets, prices, _, owned) = setup(5, n, 0.1, false);
    let book = owned.book();
    let state = (vec![NEVER; n], vec![0i64; n], vec![false; n]);
    let state = crate::book::StateRef { last_rebalance_ms: &state.0, next_check_ms: &state.1, locked: &state.2 };
    let (mut scan, mut tick) = (f64::INFINITY, f64::INFINITY);
    pool.install(|| {
        for _ in 0..rounds {
            let t = Instant::now();
            scan_once(&book, state, &markets, &prices);
            scan = scan.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            tick_once(&markets, &prices, &owned);
            tick = tick.min(t.elapsed().as_secs_f64());
        }
    });
    eprintln!("{n} portfolios, one thread, best of {rounds}: scan {:.1} ms, tick {:.1} ms", scan * 1e3, tick * 1e3);
}
