"""The Book and its tick: batch results equal the single-portfolio planner,
triggers at their exact boundaries, cooldown, lock, calendar, and bad
columns refused before any work."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rebal
from rebal import Book, Market, Status

from .oracle import dec

MINUTE = 60_000


def unit_markets(*bases: str, step: str = "0.01", min_notional: str = "0") -> list[Market]:
    return [Market(f"{b}/USDT", b, "USDT", step, min_amount=step, min_notional=min_notional) for b in bases]


def two_asset_book(amounts: tuple[str, str], targets: tuple[float, float], **strategy: Any) -> Book:
    """Two coins priced 1 USDT: amounts are the weights in percent of 100 USDT."""
    if strategy.get("trigger", "threshold") == "threshold":
        strategy.setdefault("threshold", 0.05)
    return Book.from_columns([0, 2], [0, 1], list(amounts), list(targets), [0], unit_markets("A", "B"), **strategy)


PRICES = np.array([1.0, 1.0])


# ---------------------------------------------------------------- triggers at their boundaries


@pytest.mark.parametrize(("held", "fires"), [("35", True), ("34.99", False), ("25", True), ("25.01", False)])
def test_absolute_threshold_fires_at_five_points(held: str, fires: bool) -> None:
    rest = str(Decimal(100) - Decimal(held))
    book = two_asset_book((held, rest), (0.30, 0.70))
    batch = book.tick(PRICES, 0, commit=False)
    assert bool(batch.triggered[0]) is fires
    assert batch.status[0] == (Status.REBALANCE if fires else Status.IDLE)
    assert batch.max_deviation[0] == pytest.approx(abs(float(held) - 30) / 100)


@pytest.mark.parametrize(("held", "fires"), [("23", True), ("22.99", False), ("17", True), ("17.01", False)])
def test_relative_threshold_fires_at_fifteen_percent_of_the_target(held: str, fires: bool) -> None:
    rest = str(Decimal(100) - Decimal(held))
    book = two_asset_book((held, rest), (0.20, 0.80), threshold=0.15, threshold_kind="relative")
    batch = book.tick(PRICES, 0, commit=False)
    assert bool(batch.triggered[0]) is fires
    assert batch.max_relative_deviation[0] == pytest.approx(abs(float(held) - 20) / 20)


# ---------------------------------------------------------------- lock, cooldown, calendar


def test_orders_out_lock_the_portfolio_until_unlocked() -> None:
    book = two_asset_book(("40", "60"), (0.30, 0.70))
    first = book.tick(PRICES, 0)
    assert first.status[0] == Status.REBALANCE and len(first) == 2
    assert book.portfolio(0)["locked"] and book.portfolio(0)["epoch"] == 1
    assert list(first.client_order_id) == [b"rb0-1-0", b"rb0-1-1"]
    again = book.tick(PRICES, 10 * MINUTE)
    assert again.status[0] == Status.LOCKED and len(again) == 0
    book.unlock(0)
    after = book.tick(PRICES, 10 * MINUTE)  # fills never applied: still off target, so it re-plans
    assert after.status[0] == Status.REBALANCE
    assert list(after.client_order_id) == [b"rb0-2-0", b"rb0-2-1"]  # a new epoch: new client ids


def test_cooldown_holds_a_rebalance_back_for_five_minutes() -> None:
    book = two_asset_book(("40", "60"), (0.30, 0.70))
    assert book.tick(PRICES, 1_000_000).status[0] == Status.REBALANCE
    book.unlock(0)
    assert book.tick(PRICES, 1_000_000 + 5 * MINUTE - 1).status[0] == Status.COOLDOWN
    assert book.tick(PRICES, 1_000_000 + 5 * MINUTE).status[0] == Status.REBALANCE


def test_cooldown_is_configurable() -> None:
    book = two_asset_book(("40", "60"), (0.30, 0.70), cooldown_ms=0)
    book.tick(PRICES, 0)
    book.unlock(0)
    assert book.tick(PRICES, 0).status[0] == Status.REBALANCE


def test_dry_run_changes_nothing() -> None:
    book = two_asset_book(("40", "60"), (0.30, 0.70))
    before = {k: v.copy() for k, v in book.columns().items()}
    for _ in range(2):
        assert book.tick(PRICES, 0, commit=False).status[0] == Status.REBALANCE
    assert all(before[k].tobytes() == v.tobytes() for k, v in book.columns().items())


def test_calendar_checks_on_its_schedule_and_keeps_its_phase() -> None:
    day = 24 * 60 * MINUTE
    book = two_asset_book(("31", "69"), (0.30, 0.70), trigger="calendar", interval_ms=day)
    assert book.tick(PRICES, day // 2).status[0] == Status.REBALANCE  # first check due at 0
    assert book.portfolio(0)["next_check_ms"] == day
    book.unlock(0)
    assert book.tick(PRICES, day - 1).status[0] == Status.IDLE  # not due
    assert book.tick(PRICES, 3 * day + 5).status[0] == Status.REBALANCE  # late tick: same phase
    assert book.portfolio(0)["next_check_ms"] == 4 * day


def test_calendar_gate_skips_a_check_below_the_deviation() -> None:
    day = 24 * 60 * MINUTE
    book = two_asset_book(("32", "68"), (0.30, 0.70), trigger="calendar", interval_ms=day, gate=0.03)
    assert book.tick(PRICES, 0).status[0] == Status.IDLE  # 2 points < 3-point gate
    assert book.portfolio(0)["next_check_ms"] == day  # checked: the next check is tomorrow
    book.update(0, holdings={"A": "33", "B": "67"})
    assert book.tick(PRICES, day).status[0] == Status.REBALANCE


def test_calendar_check_held_by_the_lock_stays_due() -> None:
    day = 24 * 60 * MINUTE
    book = two_asset_book(("40", "60"), (0.30, 0.70), trigger="calendar", interval_ms=day)
    book.tick(PRICES, 0)
    assert book.tick(PRICES, day).status[0] == Status.LOCKED
    assert book.portfolio(0)["next_check_ms"] == day
    book.unlock(0)
    assert book.tick(PRICES, day + 1).status[0] == Status.REBALANCE


def test_a_mixed_book_acts_on_each_portfolio_in_its_own_row() -> None:
    """Threshold and calendar portfolios interleaved (the tick first lists
    the ones it acts on): due calendars move to their next check, triggered
    or not; each order is its own portfolio's; the idle are untouched."""
    day = 24 * 60 * MINUTE
    book = Book(unit_markets("A", "B"))
    weights = {"A": 0.3, "B": 0.7}
    book.add({"A": "40", "B": "60"}, weights, threshold=0.05)  # triggered
    book.add({"A": "31", "B": "69"}, weights, trigger="calendar", interval_ms=day)  # due, no gate
    book.add({"A": "31", "B": "69"}, weights, threshold=0.05)  # idle
    book.add({"A": "31", "B": "69"}, weights, trigger="calendar", interval_ms=day, gate=0.03)  # due, gate not reached
    book.add({"A": "31", "B": "69"}, weights, trigger="calendar", interval_ms=day, next_check_ms=2 * day)  # not due
    book.add({"A": "20", "B": "80"}, weights, threshold=0.05)  # triggered
    for commit in (False, True):
        batch = book.tick(PRICES, day // 2, commit=commit)
        assert list(batch.status) == [Status.REBALANCE, Status.REBALANCE, Status.IDLE, Status.IDLE, Status.IDLE, Status.REBALANCE]
        assert sorted(set(batch.portfolio.tolist())) == [0, 1, 5]
        sides = {int(p): set() for p in batch.portfolio}
        for p, side in zip(batch.portfolio, batch.sides()):
            sides[int(p)].add(str(side))
        assert sides == {0: {"sell", "buy"}, 1: {"sell", "buy"}, 5: {"sell", "buy"}}
    assert [book.portfolio(i)["next_check_ms"] for i in (1, 3, 4)] == [day, day, 2 * day]
    assert [book.portfolio(i)["locked"] for i in range(6)] == [True, True, False, False, False, True]


def test_paused_and_removed_portfolios_are_not_looked_at() -> None:
    book = Book.from_columns([0, 2, 4], [0, 1, 0, 1], ["40", "60", "40", "60"], [0.3, 0.7, 0.3, 0.7], [0, 0],
                             unit_markets("A", "B"), threshold=0.05)  # fmt: skip
    book.pause(0)
    book.remove(1)
    batch = book.tick(PRICES, 0)
    assert list(batch.status) == [Status.INACTIVE, Status.INACTIVE]
    assert len(book) == 1
    book.resume(0)
    assert book.tick(PRICES, 0).status[0] == Status.REBALANCE


# ---------------------------------------------------------------- the batch is the planner


@st.composite
def books(draw: st.DrawFn) -> tuple[Book, np.ndarray, list[dict[str, Any]]]:
    """A universe of 3–7 markets (prices 0.001 … 100,000, power-of-ten steps,
    real-looking minimums) and 1–8 portfolios over subsets of it, each with
    its own trigger, destination and fee."""
    k = draw(st.integers(3, 7))
    markets, prices = [], []
    for i in range(k):
        price = float(draw(st.decimals(Decimal("0.001"), Decimal("100000"), places=4)))
        step_exp = max(-8, min(3, round(float((Decimal(10) ** draw(st.integers(-6, 1)) / dec(price)).log10()))))
        step = Decimal(10) ** step_exp
        fee = draw(st.sampled_from([0.0, 0.001, 0.00075]))
        minimum = draw(st.sampled_from(["0", "1", "5", "10"]))
        markets.append(Market(f"C{i}/USDT", f"C{i}", "USDT", step, min_amount=step, min_notional=minimum, taker_fee=fee))
        prices.append(price)
    portfolios = []
    for _ in range(draw(st.integers(1, 8))):
        assets = draw(st.lists(st.integers(0, k - 1), min_size=2, max_size=k, unique=True))
        amounts = []
        for a in assets:
            step, price = markets[a].step, prices[a]
            lots = int(draw(st.floats(0, 2e5)) / (float(step) * price))
            amounts.append(step * lots + step * draw(st.integers(0, 9)) / 10)
        weights = [draw(st.integers(1, 99)) for _ in assets]
        targets = [w / sum(weights) for w in weights]
        trigger = draw(st.sampled_from(["threshold", "threshold", "calendar"]))
        kind = draw(st.sampled_from(["absolute", "relative"]))
        width = draw(st.floats(0.005, 0.2))
        gate = draw(st.sampled_from([None, width])) if trigger == "calendar" else None
        has_band = trigger == "threshold" or gate is not None
        destination = draw(st.sampled_from(["target", "band_edge", "inner_band(0.5)"])) if has_band else "target"
        portfolios.append(
            {
                "assets": assets,
                "amounts": amounts,
                "targets": targets,
                "cash": Decimal(draw(st.integers(0, 5_000_000))) / 100,
                "trigger": trigger,
                "threshold": width if trigger == "threshold" else None,
                "gate": gate,
                "threshold_kind": kind,
                "destination": destination,
                "fee_rate": draw(st.sampled_from([None, 0.001, 0.0])),
            }
        )
    book = Book(markets)
    for p in portfolios:
        book.add(
            dict(zip(p["assets"], p["amounts"])),
            dict(zip(p["assets"], p["targets"])),
            p["cash"],
            trigger=p["trigger"],
            threshold=p["threshold"],
            gate=p["gate"],
            threshold_kind=p["threshold_kind"],
            destination=p["destination"],
            fee_rate=p["fee_rate"],
            interval_ms=MINUTE,
        )
    return book, np.array(prices), portfolios


@given(books())
def test_batch_equals_the_single_portfolio_planner(drawn: tuple[Book, np.ndarray, list[dict[str, Any]]]) -> None:
    book, prices, portfolios = drawn
    markets = book.markets
    batch = book.tick(prices, 0, commit=False)
    orders = batch.orders()
    skipped = batch.skipped_legs()
    for i, p in enumerate(portfolios):
        chosen = [markets[a] for a in p["assets"]]
        names = [m.base for m in chosen]
        single = rebal.plan(
            {**dict(zip(names, p["amounts"])), "USDT": p["cash"]},
            {m.base: prices[a] for m, a in zip(chosen, p["assets"])},
            dict(zip(names, p["targets"])),
            chosen,
            threshold=p["threshold"] if p["trigger"] == "threshold" else p["gate"],
            threshold_kind=p["threshold_kind"],
            destination=p["destination"],
            fee_rate=p["fee_rate"],
            portfolio_id=i,
            epoch=1,
        )
        mine = [o for o, pid in zip(orders, batch.portfolio_id) if pid == i]
        assert mine == single.orders
        assert [s for s, pid in zip(skipped, batch.skipped.portfolio_id) if pid == i] == single.skipped
        assert batch.value[i] == single.value
        assert batch.max_deviation[i] == single.max_deviation
        assert batch.max_relative_deviation[i] == single.max_relative_deviation
        assert bool(batch.triggered[i]) == single.triggered
        expected = Status.IDLE if not single.triggered else Status.REBALANCE if single.orders else Status.NOTHING_TO_DO
        assert batch.status[i] == expected


def _state(book: Book) -> dict[str, np.ndarray]:
    return {name: column.copy() for name, column in book.columns().items()}


@given(books(), st.integers(0, 3 * MINUTE))
def test_scan_then_plan_is_the_tick(drawn: tuple[Book, np.ndarray, list[dict[str, Any]]], now: int) -> None:
    """The two halves give the fused tick's orders, statuses and state, bit for bit."""
    book, prices, _ = drawn
    twin = Book.from_arrow(book.to_arrow(), book.markets)
    fused = twin.tick(prices, now)
    halves = book.plan(book.scan(prices, now))
    for name in ("portfolio_id", "leg", "side", "lots", "amount_words", "price", "notional", "fee", "epoch", "purpose"):
        np.testing.assert_array_equal(getattr(halves, name), getattr(fused, name), err_msg=name)
    for name in ("portfolio_id", "leg", "lots", "amount_words", "purpose"):
        np.testing.assert_array_equal(getattr(halves.skipped, name), getattr(fused.skipped, name), err_msg=name)
    np.testing.assert_array_equal(halves.skip_reason, fused.skip_reason)
    for name in ("value", "max_deviation", "max_relative_deviation", "status"):
        np.testing.assert_array_equal(getattr(halves, name), getattr(fused, name), err_msg=name)
    mine, theirs = _state(book), _state(twin)
    for name in ("locked", "epoch", "last_rebalance_ms", "next_check_ms"):
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)


def test_a_scan_changes_nothing_and_a_held_back_portfolio_is_not_planned() -> None:
    book = two_asset_book(("70", "30"), (0.5, 0.5))
    before = _state(book)
    scan = book.scan(PRICES, 0)
    assert scan.status[0] == Status.REBALANCE
    for name, column in _state(book).items():
        np.testing.assert_array_equal(column, before[name], err_msg=name)
    scan.status[0] = Status.IDLE  # the host holds it back (e.g. an exit comes first)
    batch = book.plan(scan)
    assert len(batch) == 0 and batch.status[0] == Status.IDLE
    assert not book.portfolio(0)["locked"]


def test_plan_invests_new_money_and_exits_in_one_pass() -> None:
    markets = unit_markets("A", "B")
    book = Book(markets)
    fresh = book.add({"A": "0", "B": "0"}, {"A": 0.5, "B": 0.5}, "100", threshold=0.05)
    leaving = book.add({"A": "30", "B": "20.005"}, {"A": 0.5, "B": 0.5}, "0", threshold=0.05)
    drifted = book.add({"A": "80", "B": "20"}, {"A": 0.5, "B": 0.5}, "0", threshold=0.05)
    book.pause([fresh, leaving])  # a host's funding and terminating portfolios are not rebalanced
    scan = book.scan(PRICES, 0)
    batch = book.plan(scan, invest=book.slots(fresh), exit=book.slots(leaving))
    purpose = {int(p): set(batch.purpose[batch.portfolio_id == p].tolist()) for p in (fresh, leaving, drifted)}
    assert purpose == {fresh: {rebal.Purpose.INVEST}, leaving: {rebal.Purpose.EXIT}, drifted: {rebal.Purpose.REBALANCE}}
    assert set(batch.sides()[batch.portfolio_id == fresh]) == {"buy"}
    sold = dict(zip(batch.symbols()[batch.portfolio_id == leaving], batch.amounts()[batch.portfolio_id == leaving]))
    assert sold == {"A/USDT": "30", "B/USDT": "20"}  # whole lots; the 0.005 dust is skipped
    dust = batch.skipped.portfolio_id == leaving
    assert batch.skipped.amounts()[dust].tolist() == ["0.005"] and batch.skipped.purpose[dust].tolist() == [rebal.Purpose.EXIT]
    for pid in (fresh, leaving, drifted):  # each locked, with new client ids
        assert book.portfolio(pid)["locked"] and book.portfolio(pid)["epoch"] == 1
    assert {cid.decode().rsplit("-", 1)[0] for cid in batch.client_order_id} == {f"rb{p}-1" for p in (fresh, leaving, drifted)}
    assert book.portfolio(drifted)["last_rebalance_ms"] == 0 and book.portfolio(fresh)["last_rebalance_ms"] is None


def test_plan_refuses_a_bad_price_where_new_money_needs_it() -> None:
    book = Book(unit_markets("A", "B"))
    pid = book.add({"A": "0", "B": "0"}, {"A": 0.5, "B": 0.5}, "100", threshold=0.05)
    book.pause(pid)
    scan = book.scan(np.array([1.0, np.nan]), 0)  # nobody active holds B: the scan is fine
    with pytest.raises(rebal.PriceError) as e:
        book.plan(scan, invest=book.slots(pid))
    assert e.value.field == "prices[B]"
    assert not book.portfolio(pid)["locked"]


# ---------------------------------------------------------------- bad columns, refused before any work

GOOD: dict[str, Any] = {
    "offsets": [0, 2, 4],
    "asset": [0, 1, 0, 1],
    "amount": ["1", "2", "3", "4"],
    "target": [0.5, 0.5, 0.25, 0.75],
    "cash": [0, 0],
}


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        ({"target": [0.5, 0.5, 0.25]}, rebal.ConfigError, "target"),
        ({"cash": [0]}, rebal.ConfigError, "cash"),
        ({"offsets": [0, 3, 2, 4], "cash": [0, 0, 0]}, rebal.ConfigError, "offsets[2]"),
        ({"offsets": [0, 2, 2, 4], "cash": [0, 0, 0]}, rebal.ConfigError, "offsets[2]"),
        ({"offsets": [1, 2, 4]}, rebal.ConfigError, "offsets"),
        ({"target": [0.5, 0.5, 0.25, 0.70]}, rebal.ConfigError, "portfolios[1].targets"),
        ({"target": [0.5, 0.5, -0.25, 1.25]}, rebal.ConfigError, "portfolios[1].targets[A]"),
        ({"asset": [0, 1, 0, 7]}, rebal.ConfigError, "portfolios[1].assets[1]"),
        ({"asset": [0, 1, 1, 1]}, rebal.ConfigError, "portfolios[1].assets[B]"),
        ({"amount": ["1", "2", "-3", "4"]}, rebal.AmountError, "portfolios[1].holdings[A]"),
        ({"amount": ["1", "2", "x", "4"]}, rebal.AmountError, "amount[2]"),
        ({"amount": np.array([1.0, 2.0, np.nan, 4.0])}, rebal.AmountError, "amount[2]"),
        ({"cash": ["0", "-1"]}, rebal.AmountError, "portfolios[1].cash"),
        ({"threshold": 0.0}, rebal.ConfigError, "portfolios[0].threshold"),
        ({"threshold": 1.5}, rebal.ConfigError, "portfolios[0].threshold"),
        ({"threshold_kind": "sideways"}, rebal.ConfigError, "threshold_kind"),
        ({"destination": "moon"}, rebal.ConfigError, "destination"),
        ({"destination": "inner_band(2)"}, rebal.ConfigError, "portfolios[0].destination"),
        ({"cooldown_ms": -1}, rebal.ConfigError, "portfolios[0].cooldown"),
        ({"trigger": "calendar", "threshold": None, "interval_ms": 0}, rebal.ConfigError, "portfolios[0].interval"),
        ({"trigger": "calendar", "threshold": None, "destination": "band_edge", "interval_ms": 1}, rebal.ConfigError, "portfolios[0].destination"),
        ({"fee_rate": 1.5}, rebal.ConfigError, "portfolios[0].fee_rate"),
        ({"id": [3, 3]}, rebal.ConfigError, "id"),
    ],
)
def test_bad_columns_are_refused_by_name(change: dict[str, Any], error: type[Exception], field: str) -> None:
    args = {**GOOD, "threshold": 0.05, **change}
    book = Book(unit_markets("A", "B"))
    with pytest.raises(error) as raised:
        book.add_columns(args.pop("offsets"), args.pop("asset"), args.pop("amount"), args.pop("target"), args.pop("cash"), **args)
    assert raised.value.field == field  # type: ignore[attr-defined]
    assert len(book) == 0  # nothing half-applied


@pytest.mark.parametrize(
    ("prices", "field"),
    [([1.0, float("nan")], "prices[B]"), ([1.0, 0.0], "prices[B]"), ([float("inf"), 1.0], "prices[A]"), ([1.0], "prices")],
)
def test_bad_prices_are_refused_before_any_work(prices: list[float], field: str) -> None:
    book = two_asset_book(("40", "60"), (0.30, 0.70))
    with pytest.raises(rebal.PriceError) as raised:
        book.tick(prices, 0)
    assert raised.value.field == field
    assert not book.portfolio(0)["locked"] and book.portfolio(0)["epoch"] == 0


def test_prices_and_time_must_be_numbers() -> None:
    book = two_asset_book(("40", "60"), (0.30, 0.70))
    with pytest.raises(rebal.PriceError):
        book.tick(["1", "one"], 0)
    with pytest.raises(rebal.ConfigError) as raised:
        book.tick(PRICES, 1.5)  # type: ignore[arg-type]
    assert raised.value.field == "now_ms"


def test_a_missing_price_of_an_asset_nobody_holds_is_fine() -> None:
    book = Book.from_columns([0, 2], [0, 1], ["40", "60"], [0.3, 0.7], [0], unit_markets("A", "B", "C"), threshold=0.05)
    assert book.tick([1.0, 1.0, float("nan")], 0).status[0] == Status.REBALANCE


def test_a_bad_update_changes_nothing() -> None:
    book = two_asset_book(("40", "60"), (0.30, 0.70))
    before = book.portfolio(0)
    for bad in ({"targets": {"A": 0.3, "B": 0.6}}, {"holdings": {"A": "-1"}}, {"threshold": -1.0}, {"holdings": {"C": "1"}}):
        with pytest.raises(rebal.InvalidInput):
            book.update(0, **bad)
        assert book.portfolio(0) == before


# ---------------------------------------------------------------- changing the Book


def test_add_update_remove_and_compact_keep_ids() -> None:
    book = Book(unit_markets("A", "B", "C"))
    first = book.add({"A": "40", "B": "60"}, {"A": 0.3, "B": 0.7}, threshold=0.05)
    second = book.add({"A": "50", "C": "50"}, {"A": 0.5, "C": 0.5}, threshold=0.05)
    book.update(first, targets={"A": 0.2, "B": 0.3, "C": 0.5}, cash="10")  # new composition: new rows
    held = book.portfolio(first)
    assert held["holdings"] == {"A": Decimal("40"), "B": Decimal("60"), "C": Decimal("0")}
    assert held["cash"] == Decimal("10")
    book.remove(second)
    book.compact()
    assert len(book) == 1 and list(book.ids) == [first]
    assert book.portfolio(first) == held
    with pytest.raises(rebal.ConfigError):
        book.slot(second)
    third = book.add({"B": "1"}, {"A": 0.5, "B": 0.5}, threshold=0.05)
    assert third == second + 1  # a removed id is never given again (client order ids are keyed by it)


def test_exact_amounts_survive_the_book_and_arrow() -> None:
    pytest.importorskip("pyarrow")
    amounts = ["0.123456789012345678", "12345678901234.5", "0.3", "7"]
    book = Book.from_columns([0, 2, 4], [0, 1, 0, 1], amounts, [0.5, 0.5, 0.4, 0.6], ["0.1", "2"],
                             unit_markets("A", "B", step="0.000000000000000001"), threshold=0.05,
                             id=[10, 20])  # fmt: skip
    assert book.portfolio(10)["holdings"] == {"A": Decimal(amounts[0]), "B": Decimal(amounts[1])}
    table = book.to_arrow()
    assert [str(d) for d in table.column("holdings")[0].values.field("amount").to_pylist()] == [
        "0.123456789012345678",
        "12345678901234.500000000000000000",
    ]
    again = Book.from_arrow(table, book.markets)
    assert [again.portfolio(i) for i in (10, 20)] == [book.portfolio(i) for i in (10, 20)]
    prices = [1.0, 1.0]
    a, b = book.tick(prices, 0, commit=False), again.tick(prices, 0, commit=False)
    assert a.orders() == b.orders()


def test_arrow_keeps_the_state() -> None:
    pytest.importorskip("pyarrow")
    book = two_asset_book(("40", "60"), (0.30, 0.70))
    book.tick(PRICES, 123)
    again = Book.from_arrow(book.to_arrow(), book.markets)
    assert again.portfolio(0) == book.portfolio(0)
    assert again.portfolio(0)["locked"] and again.portfolio(0)["last_rebalance_ms"] == 123


def test_columns_are_read_only_views() -> None:
    book = two_asset_book(("40", "60"), (0.30, 0.70))
    cash = book.columns()["cash"]
    with pytest.raises(ValueError):
        cash[0] = 1


def test_batch_columns_are_exact_and_in_order() -> None:
    pytest.importorskip("pyarrow")
    book = two_asset_book(("40.01", "59.99"), (0.30, 0.70))
    batch = book.tick(PRICES, 0)
    assert list(batch.sides()) == ["sell", "buy"]
    assert list(batch.amounts()) == ["10.01", "10.01"]  # sell A down to 30, buy B up to 70
    table = batch.to_arrow()
    assert [str(a) for a in table.column("amount").to_pylist()] == ["10.010000000000000000"] * 2
    assert table.column("client_order_id").to_pylist() == ["rb0-1-0", "rb0-1-1"]
