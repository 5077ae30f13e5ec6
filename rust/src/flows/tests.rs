use proptest::prelude::*;

use super::*;
use crate::book::amount_words;

fn a(s: &str) -> Amount {
    Amount::parse(s).expect("valid amount")
}

fn market(base: &str, step: &str, min_notional: &str, fee: f64) -> Market {
    let mut m = Market::new(&format!("{base}/USDT"), base, "USDT", a(step));
    m.min_amount = a(step);
    m.min_notional = a(min_notional);
    m.taker_fee = fee;
    m
}

/// A Book's columns, owned, for tests.
#[derive(Default, Clone, Debug)]
struct Owned {
    id: Vec<u64>,
    start: Vec<i64>,
    stop: Vec<i64>,
    cash: Vec<i64>,
    cash_float: Vec<f64>,
    cash_target: Vec<f64>,
    fee_rate: Vec<f64>,
    asset: Vec<i32>,
    amount: Vec<i64>,
    amount_float: Vec<f64>,
    target: Vec<f64>,
    // Strategy columns the flows do not read, kept to build a BookRef.
    active: Vec<bool>,
    codes: Vec<u8>,
    floats: Vec<f64>,
    ints: Vec<i64>,
}

impl Owned {
    /// Adds a portfolio: (asset, amount, target) per holding.
    fn add(&mut self, holdings: &[(i32, &str, f64)], cash: &str, fee_rate: f64) -> &mut Self {
        self.add_exact(&holdings.iter().map(|&(asset, x, t)| (asset, a(x), t)).collect::<Vec<_>>(), a(cash), fee_rate, 0.0)
    }

    fn add_exact(&mut self, holdings: &[(i32, Amount, f64)], cash: Amount, fee_rate: f64, cash_target: f64) -> &mut Self {
        self.id.push(100 + self.id.len() as u64);
        self.start.push(self.asset.len() as i64);
        for &(asset, amount, target) in holdings {
            self.asset.push(asset);
            self.amount.extend(amount_words(amount));
            self.amount_float.push(amount.to_f64());
            self.target.push(target);
        }
        self.stop.push(self.asset.len() as i64);
        self.cash.extend(amount_words(cash));
        self.cash_float.push(cash.to_f64());
        self.cash_target.push(cash_target);
        self.fee_rate.push(fee_rate);
        self.active.push(true);
        self.codes.push(0);
        self.floats.push(0.05);
        self.ints.push(0);
        self
    }

    fn book(&self) -> BookRef<'_> {
        BookRef {
            id: &self.id,
            start: &self.start,
            stop: &self.stop,
            cash: &self.cash,
            cash_float: &self.cash_float,
            cash_target: &self.cash_target,
            active: &self.active,
            trigger: &self.codes,
            threshold_kind: &self.codes,
            threshold: &self.floats,
            interval_ms: &self.ints,
            cooldown_ms: &self.ints,
            destination: &self.codes,
            inner_k: &self.floats,
            fee_rate: &self.fee_rate,
            asset: &self.asset,
            amount: &self.amount,
            amount_float: &self.amount_float,
            target: &self.target,
        }
    }

    fn run(&self, markets: &[Market], prices: &[f64], slots: &[i64], flow: Flow) -> Result<(LegColumns, LegColumns)> {
        let book = self.book();
        book.validate(markets)?;
        let slots = check_slots(&book, slots)?;
        let quotes = quotes(&book, &slots, markets, prices, flow)?;
        let epoch: Vec<u32> = (0..book.len() as u32).map(|i| 7 + i).collect();
        Ok(match flow {
            Flow::Invest => invest(&book, &slots, &quotes, &epoch),
            Flow::Exit => exit(&book, &slots, &quotes, &epoch),
        })
    }
}

fn amount_of(legs: &LegColumns, k: usize) -> Amount {
    amount_at(&legs.amount, k)
}

fn reasons(skips: &LegColumns) -> Vec<(u8, &'static str)> {
    (0..skips.len()).map(|k| (skips.leg[k], SkipReason::ALL[skips.epoch[k] as usize].as_str())).collect()
}

/// The exact cash portfolio `slot` spends on the orders, fees included.
fn exact_cost(orders: &LegColumns, markets: &[Market], book: &Owned, slot: usize) -> Decimal {
    let mut total = Decimal::ZERO;
    for k in (0..orders.len()).filter(|&k| orders.portfolio[k] as usize == slot) {
        let m = &markets[orders.asset[k] as usize];
        let fee = if book.fee_rate[slot].is_nan() { m.taker_fee } else { book.fee_rate[slot] };
        let price = price_decimal(orders.price[k]).expect("price");
        total += amount_of(orders, k).to_decimal().expect("fits") * price * (Decimal::ONE + price_decimal(fee).expect("fee"));
    }
    total
}

#[test]
fn invest_buys_the_underweight_assets_within_the_cash() {
    let markets = [market("A", "0.01", "5", 0.001), market("B", "0.001", "5", 0.001), market("C", "1", "5", 0.001)];
    let prices = [100.0, 10.0, 1.0];
    let mut owned = Owned::default();
    // V = 1000: A holds 600 (over its 200), B 40 (short 260), C 0 (short 500).
    owned.add(&[(0, "6", 0.2), (1, "4", 0.3), (2, "0", 0.5)], "360", f64::NAN);
    let (orders, skips) = owned.run(&markets, &prices, &[0], Flow::Invest).expect("valid");
    assert!(skips.is_empty(), "{skips:?}");
    assert_eq!(orders.leg, vec![1, 2]);
    assert!(orders.side.iter().all(|&s| s == crate::batch::SIDE_BUY));
    assert_eq!(orders.epoch, vec![7, 7]);
    assert_eq!(orders.portfolio_id, vec![100, 100]);
    // The 360 of cash split 260 : 500, net of the fee: 123.16 / 1.001 / 0.01 → 12303
    // lots of 0.001 B; 236.84 / 1.001 → 236 C.
    assert_eq!(orders.lots, vec![12_303, 236]);
    assert_eq!(amount_of(&orders, 0), a("12.303"));
    assert_eq!(amount_of(&orders, 1), a("236"));
    assert!(exact_cost(&orders, &markets, &owned, 0) <= Decimal::from(360));
    assert_eq!(orders.fee[1], orders.notional[1] * 0.001);
}

#[test]
fn invest_scales_the_shortfalls_down_to_the_cash() {
    let markets = [market("A", "0.01", "0", 0.0), market("B", "0.01", "0", 0.0)];
    let mut owned = Owned::default();
    // V = 100 cash + 100 in A: targets 50/50 → A short 0, B short 100; cash 100 covers exactly.
    owned.add(&[(0, "1", 0.5), (1, "0", 0.5)], "100", f64::NAN);
    // Nothing held: 50 each.
    owned.add(&[(0, "0", 0.5), (1, "0", 0.5)], "100", 0.0);
    let (orders, _) = owned.run(&markets, &[100.0, 1.0], &[0, 1], Flow::Invest).expect("valid");
    assert_eq!(orders.portfolio, vec![0, 1, 1]);
    assert_eq!(orders.leg, vec![1, 0, 1]);
    assert_eq!(orders.lots, vec![10_000, 50, 5_000]);
    for slot in 0..2 {
        assert!(exact_cost(&orders, &markets, &owned, slot) <= Decimal::from(100));
    }
}

#[test]
fn invest_never_spends_a_single_atom_too_many() {
    // 1000 lots cost 1000 (1500 with a 50 % fee): with one atom less, the
    // float sizing still finds 1000 lots; the exact settle takes one back.
    let markets = [market("A", "1", "0", 0.0)];
    let mut owned = Owned::default();
    let cash = ["999.999999999999999999", "1000", "1499.999999999999999999"];
    owned.add(&[(0, "0", 1.0)], cash[0], f64::NAN);
    owned.add(&[(0, "0", 1.0)], cash[1], f64::NAN);
    owned.add(&[(0, "0", 1.0)], cash[2], 0.5);
    let (orders, skips) = owned.run(&markets, &[1.0], &[0, 1, 2], Flow::Invest).expect("valid");
    assert_eq!(orders.lots, vec![999, 1000, 999]);
    assert!(skips.is_empty()); // a buy trimmed, not dropped, is no skip
    for (slot, cash) in cash.iter().enumerate() {
        assert!(exact_cost(&orders, &markets, &owned, slot) <= a(cash).to_decimal().expect("fits"));
    }
}

#[test]
fn invest_reports_what_the_market_refuses() {
    let mut inactive = market("C", "0.01", "0", 0.0);
    inactive.active = false;
    let mut capped = market("B", "1", "0", 0.0);
    capped.max_amount = Some(a("10"));
    let markets = [market("A", "1", "50", 0.0), capped, inactive];
    let mut owned = Owned::default();
    // V = 1000 cash: A wants 40, B 400, C 560 (280 C at 2).
    owned.add(&[(0, "0", 0.04), (1, "0", 0.4), (2, "0", 0.56)], "1000", f64::NAN);
    let (orders, skips) = owned.run(&markets, &[1.0, 1.0, 2.0], &[0], Flow::Invest).expect("valid");
    // A: 40 lots at 1 = 40 < min notional 50; B: 400 wanted, 10 sent; C: inactive.
    assert_eq!(orders.leg, vec![1]);
    assert_eq!(orders.lots, vec![10]);
    assert_eq!(reasons(&skips), vec![(0, "min_notional"), (1, "max_amount"), (2, "market_inactive")]);
    assert_eq!(amount_of(&skips, 0), a("40"));
    assert_eq!(amount_of(&skips, 1), a("390"));
    assert_eq!(amount_of(&skips, 2), a("280"));
}

#[test]
fn invest_drops_a_trimmed_buy_below_its_minimum_as_insufficient_cash() {
    // Min amount 1000 lots of 0.001 = 1 A: the float sizing finds exactly the
    // minimum, which costs one atom too many; one lot less is refused.
    let mut m = market("A", "0.001", "0", 0.0);
    m.min_amount = a("1");
    let markets = [m];
    let mut owned = Owned::default();
    owned.add(&[(0, "0", 1.0)], "0.999999999999999999", f64::NAN);
    let (orders, skips) = owned.run(&markets, &[1.0], &[0], Flow::Invest).expect("valid");
    assert!(orders.is_empty());
    assert_eq!(reasons(&skips), vec![(0, "insufficient_cash")]);
    assert_eq!(amount_of(&skips, 0), a("1"));
}

#[test]
fn invest_without_cash_or_shortfall_does_nothing() {
    let markets = [market("A", "0.01", "0", 0.0), market("B", "0.01", "0", 0.0)];
    let mut owned = Owned::default();
    owned.add(&[(0, "1", 0.5), (1, "1", 0.5)], "0", f64::NAN);
    owned.add(&[(0, "1", 0.5), (1, "1", 0.5)], "0.001", f64::NAN); // on target, cash below a lot
    let (orders, skips) = owned.run(&markets, &[1.0, 1.0], &[0, 1], Flow::Invest).expect("valid");
    assert!(orders.is_empty() && skips.is_empty());
}

#[test]
fn invest_keeps_the_cash_target() {
    let markets = [market("A", "0.01", "0", 0.0)];
    let mut owned = Owned::default();
    owned.add_exact(&[(0, Amount::ZERO, 0.8)], a("100"), f64::NAN, 0.2);
    let (orders, _) = owned.run(&markets, &[1.0], &[0], Flow::Invest).expect("valid");
    assert_eq!(amount_of(&orders, 0), a("80"));
}

#[test]
fn output_follows_the_order_of_the_slots() {
    let markets = [market("A", "1", "0", 0.0), market("B", "1", "0", 0.0)];
    let mut owned = Owned::default();
    for cash in ["10", "20", "30"] {
        owned.add(&[(0, "0", 0.5), (1, "0", 0.5)], cash, f64::NAN);
    }
    let (orders, _) = owned.run(&markets, &[1.0, 1.0], &[2, 0], Flow::Invest).expect("valid");
    assert_eq!(orders.portfolio, vec![2, 2, 0, 0]);
    assert_eq!(orders.epoch, vec![9, 9, 7, 7]);
    assert_eq!(orders.lots, vec![15, 15, 5, 5]);
}

#[test]
fn slots_and_prices_are_checked() {
    let markets = [market("A", "1", "0", 0.0), market("B", "1", "0", 0.0)];
    let mut owned = Owned::default();
    owned.add(&[(0, "1", 1.0)], "10", f64::NAN);
    owned.add(&[(1, "1", 1.0)], "10", f64::NAN);
    let e = owned.run(&markets, &[1.0, 1.0], &[2], Flow::Invest).expect_err("out of range");
    assert_eq!((e.kind, e.field.as_str(), e.value.as_str()), (crate::ErrorKind::Config, "slots", "2"));
    let e = owned.run(&markets, &[1.0, 1.0], &[0, 0], Flow::Invest).expect_err("twice");
    assert_eq!(e.field, "slots");
    let e = owned.run(&markets, &[1.0, f64::NAN], &[1], Flow::Exit).expect_err("bad price");
    assert_eq!((e.kind, e.field.as_str()), (crate::ErrorKind::Price, "prices[B]"));
    // Only the selected portfolios' assets need a price.
    assert!(owned.run(&markets, &[1.0, f64::NAN], &[0], Flow::Invest).is_ok());
    assert!(owned.run(&markets, &[1.0, -1.0], &[0], Flow::Exit).is_ok());
    let e = owned.run(&markets, &[1.0], &[0], Flow::Exit).expect_err("short");
    assert_eq!(e.field, "prices");
}

#[test]
fn exit_sells_whole_lots_and_reports_the_rest() {
    let mut inactive = market("C", "0.01", "0", 0.0);
    inactive.active = false;
    let mut capped = market("D", "1", "0", 0.0);
    capped.max_amount = Some(a("10"));
    let markets = [market("A", "0.1", "5", 0.001), market("B", "0.01", "5", 0.001), inactive, capped];
    let mut owned = Owned::default();
    owned.add(&[(0, "0.3", 0.25), (1, "0.005", 0.25), (2, "7", 0.25), (3, "12.5", 0.25)], "3", 0.002);
    owned.add(&[(0, "0", 0.5), (1, "0.02", 0.5)], "0", f64::NAN);
    // C's market is delisted: its missing price blocks nothing.
    let prices = [100.0, 100.0, f64::NAN, 1.0];
    let (orders, skips) = owned.run(&markets, &prices, &[0, 1], Flow::Exit).expect("valid");
    // 0.3 with step 0.1 is 3 lots, not 2; D sells its maximum of 10.
    assert_eq!(orders.portfolio, vec![0, 0]);
    assert_eq!(orders.leg, vec![0, 3]);
    assert_eq!(orders.lots, vec![3, 10]);
    assert_eq!(amount_of(&orders, 0), a("0.3"));
    assert!(orders.side.iter().all(|&s| s == crate::batch::SIDE_SELL));
    assert_eq!(orders.fee[0], orders.notional[0] * 0.002);
    assert_eq!(
        reasons(&skips),
        vec![(1, "below_step"), (2, "market_inactive"), (3, "max_amount"), (3, "below_step"), (1, "min_notional")]
    );
    let skipped: Vec<Amount> = (0..skips.len()).map(|k| amount_of(&skips, k)).collect();
    assert_eq!(skipped, vec![a("0.005"), a("7"), a("2"), a("0.5"), a("0.02")]);
    assert_eq!(skips.portfolio, vec![0, 0, 0, 0, 1]);
}

#[test]
fn values_are_cash_plus_holdings() {
    let mut owned = Owned::default();
    owned.add(&[(0, "2", 0.5), (1, "3", 0.5)], "10", f64::NAN);
    owned.add(&[(0, "2", 0.5), (1, "0", 0.5)], "1", f64::NAN);
    owned.active[0] = false;
    let v = values(&owned.book(), &[5.0, f64::NAN]).expect("prices");
    assert!(v[0].is_nan());
    assert_eq!(v[1], 11.0); // a zero holding counts nothing, whatever its price
    assert_eq!(values(&owned.book(), &[5.0, 1.0]).expect("prices"), vec![23.0, 11.0]);
    let short = values(&owned.book(), &[5.0]).expect_err("short");
    assert_eq!(short.field, "prices");
    assert!(short.to_string().contains("asset index 1"), "{short}");
    // A zero holding of an asset with no price at all is refused too.
    let mut zero = Owned::default();
    zero.add(&[(0, "2", 0.5), (1, "0", 0.5)], "1", f64::NAN);
    assert!(values(&zero.book(), &[5.0]).expect_err("no price").to_string().contains("asset index 1"));
    // No prices at all: the first holding met is named.
    assert!(values(&zero.book(), &[]).expect_err("no prices").to_string().contains("asset index 0"));
    assert_eq!(values(&Owned::default().book(), &[]).expect("nothing held"), Vec::<f64>::new());
}

#[test]
fn add_amounts_is_all_or_nothing() {
    let mut words: Vec<i64> = ["1.5", "2", "0"].iter().flat_map(|s| amount_words(a(s))).collect();
    let deltas = |xs: &[&str]| xs.iter().flat_map(|s| amount_words(a(s))).collect::<Vec<i64>>();
    let before = words.clone();
    let e = add_amounts(&mut words, &[0, 1, 1], &deltas(&["1", "-1.5", "-0.6"]), "amount").expect_err("negative");
    assert_eq!((e.kind, e.field.as_str(), e.value.as_str()), (crate::ErrorKind::Amount, "amount[1]", "-0.1"));
    assert_eq!(words, before);
    let e = add_amounts(&mut words, &[0, 3], &deltas(&["1", "1"]), "cash").expect_err("range");
    assert_eq!((e.field.as_str(), e.value.as_str()), ("cash[3]", "3"));
    assert_eq!(words, before);
    let e = add_amounts(&mut words, &[2], &deltas(&["1"])[..1], "cash").expect_err("length");
    assert_eq!(e.kind, crate::ErrorKind::Amount);
    let big = amount_words(Amount::MAX);
    let e = add_amounts(&mut words, &[0], &big, "cash").expect_err("overflow");
    assert_eq!(e.field, "cash[0]");
    assert_eq!(words, before);
    // Repeated rows accumulate; an intermediate negative is fine.
    add_amounts(&mut words, &[2, 0, 2, 1], &deltas(&["-0.5", "0.25", "0.6", "-2"]), "amount").expect("valid");
    let after: Vec<Amount> = (0..3).map(|i| amount_at(&words, i)).collect();
    assert_eq!(after, vec![a("1.75"), a("0"), a("0.1")]);
    add_amounts(&mut words, &[0, 0], &deltas(&["-2", "0.25"]), "amount").expect("net zero");
    assert_eq!(amount_at(&words, 0), Amount::ZERO);
}

fn arb_invest() -> impl Strategy<Value = (Vec<Market>, Vec<f64>, Owned)> {
    let asset = (
        prop::sample::select(vec!["1", "0.1", "0.01", "0.001", "0.00001", "0.00000001"]),
        prop::sample::select(vec!["0", "1", "5", "10"]),
        prop::sample::select(vec![0.0, 0.00075, 0.001, 0.002, 0.0015]),
        0.0001f64..100_000.0,
        0u32..2000,
        1u32..100,
        0i128..1000,
    );
    (prop::collection::vec(asset, 1..8), 0u64..10_000_000_000_000, prop::sample::select(vec![0.0, 0.05, 0.3]), any::<bool>())
        .prop_map(|(assets, cash_atoms, cash_target, own_fee)| {
            let mut markets = Vec::new();
            let mut prices = Vec::new();
            let mut holdings = Vec::new();
            let weights: u32 = assets.iter().map(|x| x.5).sum();
            for (k, &(step, min_notional, fee, price, held_lots, weight, dust)) in assets.iter().enumerate() {
                let m = market(&format!("X{k}"), step, min_notional, fee);
                // Prices as a feed gives them: a few significant digits.
                let price = format!("{price:.4e}").parse::<f64>().expect("price");
                // Whole lots and a few atoms of dust.
                let amount = Amount::from_atoms(held_lots as i128 * m.step.atoms() + dust);
                holdings.push((k as i32, amount, (1.0 - cash_target) * weight as f64 / weights as f64));
                markets.push(m);
                prices.push(price);
            }
            let mut owned = Owned::default();
            // Cash with 8 decimals, up to 100,000.
            let cash = Amount::from_atoms(cash_atoms as i128 * 10_000_000_000);
            owned.add_exact(&holdings, cash, if own_fee { 0.001 } else { f64::NAN }, cash_target);
            (markets, prices, owned)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1000)
    ))]

    #[test]
    fn invest_never_costs_more_than_the_cash((markets, prices, owned) in arb_invest()) {
        let (orders, skips) = owned.run(&markets, &prices, &[0], Flow::Invest).expect("valid");
        let cash = amount_at(&owned.cash, 0).to_decimal().expect("fits");
        prop_assert!(exact_cost(&orders, &markets, &owned, 0) <= cash);
        let value: f64 = owned.cash_float[0] + (0..owned.asset.len()).map(|r| owned.amount_float[r] * prices[r]).sum::<f64>();
        let mut seen = std::collections::HashSet::new();
        for k in 0..orders.len() {
            let r = orders.leg[k] as usize;
            let m = &markets[orders.asset[k] as usize];
            prop_assert!(seen.insert(r));
            prop_assert_eq!(orders.side[k], crate::batch::SIDE_BUY);
            // only assets below their target
            prop_assert!(owned.amount_float[r] * prices[r] < owned.target[r] * value);
            // whole lots, within the market's rules
            let amount = amount_of(&orders, k);
            prop_assert_eq!(amount, Amount::of_lots(orders.lots[k] as i128, m.step).expect("fits"));
            prop_assert!(amount >= m.min_amount && orders.lots[k] > 0);
            prop_assert!(crate::lots::notional_at_least(amount, orders.price[k], m.min_notional));
            prop_assert_eq!(orders.epoch[k], 7);
        }
        for k in 0..skips.len() {
            prop_assert_eq!(skips.side[k], crate::batch::SIDE_BUY);
        }
    }

    #[test]
    fn exit_sells_all_it_can_and_reports_the_rest((markets, prices, owned) in arb_invest()) {
        let (orders, skips) = owned.run(&markets, &prices, &[0], Flow::Exit).expect("valid");
        for r in 0..owned.asset.len() {
            let held = amount_at(&owned.amount, r);
            let sold: Vec<usize> = (0..orders.len()).filter(|&k| orders.leg[k] as usize == r).collect();
            let skipped: Vec<usize> = (0..skips.len()).filter(|&k| skips.leg[k] as usize == r).collect();
            let total = sold.iter().map(|&k| amount_of(&orders, k)).chain(skipped.iter().map(|&k| amount_of(&skips, k)))
                .fold(Amount::ZERO, |s, x| s.checked_add(x).expect("no overflow"));
            prop_assert_eq!(total, held);
            prop_assert!(sold.len() <= 1);
            for &k in &sold {
                prop_assert_eq!(orders.side[k], crate::batch::SIDE_SELL);
                prop_assert!(markets[r].refusal(orders.lots[k], prices[r]).is_none());
                prop_assert_eq!(amount_of(&orders, k).atoms() % markets[r].step.atoms(), 0);
            }
        }
    }
}
