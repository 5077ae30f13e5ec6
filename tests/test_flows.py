"""Money in and out of a Book: `invest` (new cash buys the underweight assets,
never more than the cash, exactly), `exit` (every holding sold in whole lots,
the rest returned in kind), `values`, and `add_amounts` (all or nothing)."""

from __future__ import annotations

import random
from decimal import Decimal, localcontext
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from rebal import AmountError, Book, ConfigError, Market, PriceError, _rebal
from rebal.batch import SKIP_REASONS
from rebal.columns import decimals, words

from .oracle import dec
from .test_plan_real_markets import BINANCE_PRICES, _check_binance_filters

BUY, SELL = 0, 1


def columns(book: Book) -> dict[str, np.ndarray]:
    """The Book's columns as `Book.tick` hands them to the core."""
    return {**book._portfolios.views(), **book._holdings.views()}


def run(kind: str, book: Book, prices: Any, slots: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    flow = _rebal.invest if kind == "invest" else _rebal.exit
    out = flow(columns(book), book.markets, np.asarray(prices, np.float64), np.asarray(slots, np.int64))
    assert set(out) == {"orders", "skipped"}
    return out["orders"], out["skipped"]


def reasons(skipped: dict[str, np.ndarray]) -> list[tuple[int, str]]:
    return [(int(leg), SKIP_REASONS[code]) for leg, code in zip(skipped["leg"], skipped["epoch"])]


def unit_markets(*bases: str, step: str = "0.01", **rules: Any) -> list[Market]:
    return [Market(f"{b}/USDT", b, "USDT", step, min_amount=step, **rules) for b in bases]


# ---------------------------------------------------------------- invest


def test_invest_returns_the_columns_of_a_tick() -> None:
    book = Book(unit_markets("A", "B"))
    book.add({"A": "60"}, {"A": 0.5, "B": 0.5}, cash="40", threshold=0.05)
    orders, skipped = run("invest", book, [1.0, 1.0], [0])
    ticked = _rebal.tick(columns(book), book.markets, np.array([1.0, 1.0]), 0, False)
    for got, want in ((orders, ticked["orders"]), (skipped, ticked["skipped"])):
        assert {k: (v.dtype, v.ndim) for k, v in got.items()} == {k: (v.dtype, v.ndim) for k, v in want.items()}
    assert orders["amount"].shape == (len(orders["lots"]), 2)
    # Only B is below its target: the 40 of cash buys 40 B (A is over, never sold).
    assert list(orders["leg"]) == [1] and list(orders["side"]) == [BUY]
    assert decimals(orders["amount"]) == [Decimal("40")]
    assert list(orders["portfolio_id"]) == [book.ids[0]]


def test_invest_buys_only_underweight_assets_in_proportion() -> None:
    book = Book(unit_markets("A", "B", "C", step="1"))
    # V = 1000: A holds 600 (target 200), B 100 (300), C 0 (500): shortfalls 200 : 500.
    book.add({"A": "600", "B": "100"}, {"A": 0.2, "B": 0.3, "C": 0.5}, cash="300", threshold=0.05)
    orders, skipped = run("invest", book, [1.0, 1.0, 1.0], [0])
    assert len(skipped["leg"]) == 0
    assert list(orders["leg"]) == [1, 2]
    assert list(orders["lots"]) == [85, 214]  # 300 · 200/700 = 85.7, 300 · 500/700 = 214.3
    assert list(orders["epoch"]) == [0, 0]  # the portfolio's epoch column


@pytest.mark.parametrize("seed", range(100))
def test_invest_is_exact_on_binance_rules(binance_markets: dict[str, Any], seed: int) -> None:
    rng = random.Random(seed)
    spot = {m["base"]: m for m in binance_markets.values() if m.get("spot") and m["base"] in BINANCE_PRICES}
    chosen = rng.sample(sorted(spot), rng.randint(2, 6))
    markets = [Market.from_ccxt(spot[a]) for a in chosen]
    prices = np.array([BINANCE_PRICES[a] for a in chosen])
    book = Book(markets)
    cases = []
    for _ in range(5):
        raw_weights = [rng.randint(1, 20) for _ in chosen]
        targets = {a: w / sum(raw_weights) for a, w in zip(chosen, raw_weights)}
        holdings: dict[int | str, Decimal] = {m.base: m.amount_to_precision(rng.uniform(0, 2_000) / BINANCE_PRICES[m.base]) for m in markets if rng.random() < 0.6}
        cash = Decimal(rng.randint(0, 10**12)) / Decimal(10**rng.choice([2, 6, 8]))  # up to 1e10 USDT, 2-8 decimals
        fee_rate = rng.choice([None, 0.001, 0.00075])
        book.add(holdings, targets, cash=cash, threshold=0.05, fee_rate=fee_rate)
        cases.append((holdings, targets, cash, fee_rate))
    orders, skipped = run("invest", book, prices, range(5))
    assert set(orders["side"]) <= {BUY} and set(skipped["side"]) <= {BUY}
    amounts = decimals(orders["amount"])
    for slot, (holdings, targets, cash, fee_rate) in enumerate(cases):
        value = float(cash) + sum(float(holdings.get(a, 0)) * BINANCE_PRICES[a] for a in chosen)
        spent = Decimal(0)
        for k in np.flatnonzero(orders["portfolio"] == slot):
            asset = chosen[orders["asset"][k]]
            market = markets[orders["asset"][k]]
            amount = amounts[k]
            assert amount == orders["lots"][k] * market.step
            _check_binance_filters(_order(asset, amount, orders["price"][k]), spot[asset])
            # underweight only
            assert float(holdings.get(asset, 0)) * BINANCE_PRICES[asset] < targets[asset] * value
            fee = dec(fee_rate if fee_rate is not None else market.taker_fee)
            with localcontext(prec=100):  # exact: no rounding to 28 digits
                spent += amount * dec(float(orders["price"][k])) * (1 + fee)
        assert spent <= cash, (slot, spent, cash)


def _order(asset: str, amount: Decimal, price: float) -> Any:
    """What `_check_binance_filters` reads of an order."""
    return SimpleNamespace(asset=asset, amount=amount, price=float(price))


def test_invest_never_spends_one_atom_too_many() -> None:
    # 1000 lots cost 1500 with a 50 % fee; one atom less buys 999, though floats round it to 1000.
    book = Book(unit_markets("A", step="1"))
    book.add({}, {"A": 1.0}, cash="1499.999999999999999999", threshold=0.05, fee_rate=0.5)
    book.add({}, {"A": 1.0}, cash="1500", threshold=0.05, fee_rate=0.5)
    orders, skipped = run("invest", book, [1.0], [0, 1])
    assert list(orders["lots"]) == [999, 1000]
    assert len(skipped["leg"]) == 0


def test_invest_skips_what_the_market_refuses() -> None:
    markets = [
        Market("A/USDT", "A", "USDT", "1", min_notional="50"),
        Market("B/USDT", "B", "USDT", "1", max_amount="10"),
        Market("C/USDT", "C", "USDT", "0.01", active=False),
    ]
    book = Book(markets)
    book.add({}, {"A": 0.04, "B": 0.4, "C": 0.56}, cash="1000", threshold=0.05)
    orders, skipped = run("invest", book, [1.0, 1.0, 2.0], [0])
    assert list(orders["leg"]) == [1] and list(orders["lots"]) == [10]
    assert reasons(skipped) == [(0, "min_notional"), (1, "max_amount"), (2, "market_inactive")]
    assert decimals(skipped["amount"]) == [Decimal("40"), Decimal("390"), Decimal("280")]


def test_invest_without_cash_does_nothing() -> None:
    book = Book(unit_markets("A", "B"))
    book.add({"A": "1"}, {"A": 0.5, "B": 0.5}, cash="0", threshold=0.05)
    orders, skipped = run("invest", book, [1.0, 1.0], [0])
    assert len(orders["leg"]) == 0 and len(skipped["leg"]) == 0


# ---------------------------------------------------------------- exit


def test_exit_sells_whole_lots_and_returns_the_rest_in_kind() -> None:
    markets = [
        Market("A/USDT", "A", "USDT", "0.1", min_notional="5", taker_fee=0.001),
        Market("B/USDT", "B", "USDT", "0.01", min_notional="5"),
        Market("C/USDT", "C", "USDT", "0.01", active=False),  # delisted: no price either
        Market("D/USDT", "D", "USDT", "1", max_amount="10"),
    ]
    book = Book(markets)
    held: dict[int | str, Decimal] = {"A": Decimal("0.35"), "B": Decimal("0.005"), "C": Decimal("7"), "D": Decimal("12.5")}
    book.add(held, {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25}, cash="3", threshold=0.05)
    book.add({"B": "0"}, {"A": 0.5, "B": 0.5}, cash="1", threshold=0.05)  # nothing held: nothing to do
    orders, skipped = run("exit", book, [100.0, 100.0, np.nan, 1.0], [0, 1])
    assert list(orders["side"]) == [SELL, SELL]
    assert list(orders["leg"]) == [0, 3]
    assert decimals(orders["amount"]) == [Decimal("0.3"), Decimal("10")]
    assert list(orders["epoch"]) == [0, 0]
    assert orders["fee"][0] == pytest.approx(30 * 0.001)
    assert reasons(skipped) == [(0, "below_step"), (1, "below_step"), (2, "market_inactive"), (3, "max_amount"), (3, "below_step")]
    assert set(skipped["portfolio"]) == {0}
    # Per holding, what is sold and what is returned add up to what was held.
    names = list(held)
    total = {a: Decimal(0) for a in names}
    for legs in (orders, skipped):
        for leg, amount in zip(legs["leg"], decimals(legs["amount"])):
            total[names[leg]] += amount
    assert total == held


def test_exit_on_binance_rules_sells_what_passes_the_filters(binance_markets: dict[str, Any]) -> None:
    spot = {m["base"]: m for m in binance_markets.values() if m.get("spot")}
    chosen = ["BTC", "ETH", "DOGE"]
    markets = [Market.from_ccxt(spot[a]) for a in chosen]
    book = Book(markets)
    # BTC worth 4 USDT is under the 5 USDT minimum notional: returned in kind.
    held: dict[int | str, Decimal] = {"BTC": Decimal("0.0000927"), "ETH": Decimal("1.23456789"), "DOGE": Decimal("1000.9")}
    book.add(held, {a: 1 / 3 for a in chosen}, cash="0", threshold=0.05)
    orders, skipped = run("exit", book, [BINANCE_PRICES[a] for a in chosen], [0])
    for k, amount in enumerate(decimals(orders["amount"])):
        asset = chosen[orders["asset"][k]]
        _check_binance_filters(_order(asset, amount, orders["price"][k]), spot[asset])
        assert amount == markets[orders["asset"][k]].amount_to_precision(held[asset])
    assert [chosen[a] for a in orders["asset"]] == ["ETH", "DOGE"]
    assert ("BTC", "min_notional") in [(chosen[a], SKIP_REASONS[r]) for a, r in zip(skipped["asset"], skipped["epoch"])]


# ---------------------------------------------------------------- values


def test_values_are_cash_plus_holdings_for_every_slot() -> None:
    book = Book(unit_markets("A", "B"))
    book.add({"A": "2", "B": "3"}, {"A": 0.5, "B": 0.5}, cash="10", threshold=0.05)
    book.add({"A": "2"}, {"A": 0.5, "B": 0.5}, cash="1", threshold=0.05)
    book.pause(0)
    values = _rebal.values(columns(book), np.array([5.0, 1.0]))
    assert values.dtype == np.float64 and list(values) == [23.0, 11.0]
    masked = _rebal.values(columns(book), np.array([5.0, np.nan]))
    assert np.isnan(masked[0]) and masked[1] == 11.0


# ---------------------------------------------------------------- add_amounts


def test_add_amounts_accumulates_and_refuses_a_negative_result_changing_nothing() -> None:
    amounts = words(["1.5", "2", "0"], "amount")
    before = amounts.copy()
    with pytest.raises(AmountError) as e:
        _rebal.add_amounts(amounts, np.array([0, 1, 1]), words(["1", "-1.5", "-0.6"], "delta"), "cash")
    assert e.value.field == "cash[1]" and e.value.value == "-0.1"
    assert (amounts == before).all()
    with pytest.raises(ConfigError) as out_of_range:
        _rebal.add_amounts(amounts, np.array([0, 3]), words(["1", "1"], "delta"), "cash")
    assert out_of_range.value.field == "cash[3]"
    assert (amounts == before).all()
    read_only = amounts.copy()
    read_only.flags.writeable = False
    with pytest.raises(ConfigError):
        _rebal.add_amounts(read_only, np.array([0]), words(["1"], "delta"), "cash")
    _rebal.add_amounts(amounts, np.array([2, 0, 2]), words(["-0.5", "0.25", "0.6"], "delta"), "amount")
    assert decimals(amounts) == [Decimal("1.75"), Decimal("2"), Decimal("0.1")]


def test_add_amounts_writes_the_books_own_columns() -> None:
    book = Book(unit_markets("A", "B"))
    book.add({"A": "2"}, {"A": 0.5, "B": 0.5}, cash="10", threshold=0.05)
    cash = book._portfolios["cash"]
    _rebal.add_amounts(cash, np.array([0]), words(["-2.5"], "delta"), "cash")
    assert decimals(book._portfolios["cash"]) == [Decimal("7.5")]


# ---------------------------------------------------------------- bad input


def test_a_bad_price_or_slot_is_refused_by_name() -> None:
    book = Book(unit_markets("A", "B", "C"))
    book.add({"A": "1"}, {"A": 0.5, "B": 0.5}, cash="10", threshold=0.05)
    book.add({"C": "1"}, {"C": 1.0}, cash="10", threshold=0.05)
    for bad in (np.nan, 0.0, -1.0, np.inf):
        with pytest.raises(PriceError) as e:
            run("invest", book, [1.0, bad, 1.0], [0])  # B is held at zero: invest needs its price
        assert e.value.field == "prices[B]"
        with pytest.raises(PriceError) as e:
            run("exit", book, [bad, 1.0, 1.0], [0])
        assert e.value.field == "prices[A]"
    run("exit", book, [1.0, np.nan, 1.0], [0])  # exit sells only what is held
    run("invest", book, [1.0, 1.0, np.nan], [0])  # C is not in the selected portfolio
    with pytest.raises(PriceError) as e:
        run("invest", book, [1.0, 1.0], [0])
    assert e.value.field == "prices"
    for slots in ([2], [-1], [1, 1]):
        with pytest.raises(ConfigError) as bad_slot:
            run("exit", book, [1.0, 1.0, 1.0], slots)
        assert bad_slot.value.field == "slots"
