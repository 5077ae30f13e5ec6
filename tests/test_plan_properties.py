"""SPEC §2 invariants of the planner, one property each, >= 1,000 examples
(conftest's profile), checked against an independent Decimal oracle."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

import rebal
from rebal import Market

from .oracle import dec, fill, floor_atoms

FEES = [0.0, 0.00075, 0.001, 0.006]


@dataclass
class Case:
    markets: dict[str, Market]
    prices: dict[str, float]
    holdings: dict[str, Decimal]
    targets: dict[str, float]
    fee: float
    kwargs: dict[str, Any] = field(default_factory=dict)

    def plan(self, holdings: dict[str, Decimal] | None = None) -> rebal.Plan:
        return rebal.plan(holdings or self.holdings, self.prices, self.targets, self.markets.values(), **self.kwargs)

    def filled(self, p: rebal.Plan) -> dict[str, Decimal]:
        after = fill(p, self.holdings, "USDT", self.markets)
        after["USDT"] = floor_atoms(after["USDT"])
        return after

    def value(self, holdings: dict[str, Decimal]) -> Decimal:
        return holdings["USDT"] + sum(holdings[a] * dec(self.prices[a]) for a in self.targets)


@st.composite
def cases(draw: st.DrawFn, min_notionals: tuple[str, ...] = ("0", "1", "5", "10")) -> Case:
    """Portfolios as exchanges see them: prices 0.001 … 100,000, lots worth
    1e-8 … 100 USDT (power-of-ten steps), up to ~1M USDT an asset, dust."""
    n = draw(st.integers(2, 7))
    fee = draw(st.sampled_from(FEES))
    markets, prices, holdings, weights = {}, {}, {}, {}
    for i in range(n):
        asset = f"A{i}"
        price = float(draw(st.decimals(Decimal("0.001"), Decimal("100000"), places=4)))
        lot_exp = draw(st.integers(-8, 2))
        step_exp = max(-8, min(3, round(float((Decimal(10) ** lot_exp / dec(price)).log10()))))
        step = Decimal(10) ** step_exp
        m = Market(f"{asset}/USDT", asset, "USDT", step, min_notional=draw(st.sampled_from(min_notionals)), taker_fee=fee)
        lots = int(draw(st.floats(0, 1e6)) / (float(step) * price))
        dust = step * draw(st.integers(0, 99)) / 100
        markets[asset], prices[asset] = m, price
        holdings[asset] = step * lots + dust
        weights[asset] = draw(st.integers(1, 99))
    holdings["USDT"] = Decimal(draw(st.integers(0, 50_000_000))) / 100
    total = sum(weights.values())
    targets = {a: w / total for a, w in weights.items()}
    threshold = draw(st.one_of(st.none(), st.floats(0.005, 0.2)))
    destination = "target" if threshold is None else draw(st.sampled_from(["target", "band_edge", "inner_band(0.5)"]))
    kwargs = {"threshold": threshold, "destination": destination, "portfolio_id": draw(st.integers(0, 2**40)), "epoch": 3}
    return Case(markets, prices, holdings, targets, fee, kwargs)


@given(cases())
def test_amounts_are_whole_lots(case: Case) -> None:
    for o in case.plan().orders:
        step = case.markets[o.asset].step
        assert o.amount > 0 and o.amount % step == 0, o
        # no digit finer than the step, so it prints as the exchange expects
        assert o.amount.normalize().as_tuple().exponent >= step.normalize().as_tuple().exponent  # type: ignore[operator]


@given(cases())
def test_orders_meet_min_amount_and_notional(case: Case) -> None:
    for o in case.plan().orders:
        m = case.markets[o.asset]
        assert o.amount >= m.min_amount
        assert o.amount * dec(o.price) >= m.min_notional, o


@given(cases())
def test_never_sells_more_than_held_and_sells_come_first(case: Case) -> None:
    p = case.plan()
    sides = [o.side for o in p.orders]
    assert sides == sorted(sides, key=lambda s: s == "buy")
    assert len({o.asset for o in p.orders}) == len(p.orders)  # one order per asset
    for o in p.orders:
        if o.side == "sell":
            assert o.amount <= case.holdings[o.asset]
    assert len({o.client_order_id for o in p.orders}) == len(p.orders)


@given(cases())
def test_never_spends_cash_that_does_not_exist(case: Case) -> None:
    after = fill(case.plan(), case.holdings, "USDT", case.markets)
    assert after["USDT"] >= 0, after["USDT"]
    assert all(v >= 0 for v in after.values())


@given(cases())
def test_residual_deviation_is_bounded_by_lots(case: Case) -> None:
    """To target, with nothing skipped: every asset ends within the lots and
    minimums of the portfolio's markets of its target, and the cash left is
    at most about one increment of each."""
    case.kwargs.update(threshold=None, destination="target")
    p = case.plan()
    assume(not p.skipped)
    _check_residual(case, p)


def _to_target(market: tuple[dict[str, str], str, float], prices: dict[str, float], held: dict[str, str], targets: dict[str, float]) -> Case:
    """A case found by a run, planned to target: `market` is (each asset's
    step, the minimum notional, the fee) for markets against USDT."""
    steps, min_notional, fee = market
    return Case(
        markets={a: Market(f"{a}/USDT", a, "USDT", step, min_notional=min_notional, taker_fee=fee) for a, step in steps.items()},
        prices=prices,
        holdings={a: Decimal(x) for a, x in held.items()},
        targets=targets,
        fee=fee,
        kwargs={"threshold": None, "destination": "target", "portfolio_id": 0, "epoch": 3},
    )


def test_residual_deviation_when_the_last_lot_is_short_by_noise() -> None:
    """An unseeded run found this case (2026-11-21), a known miss until
    2026-11-22: a lot of A2 costs 21.7217 with its fee and the plan left
    21.72169999987 of cash, so the exact settle took the lot back and A2
    ended 31.42 under target against a bound of 31.09. The settle now sells
    a few more of A0's lots (its step is 0.0000001) for the 1.3e-10 instead."""
    case = _to_target(
        ({"A0": "0.0000001", "A1": "10", "A2": "1000"}, "0", 0.001),
        prices={"A0": 0.0347, "A1": 0.9357, "A2": 0.0217},
        held={"A0": "21441066.2824207", "A1": "954640", "A2": "0", "USDT": "16901.05"},
        targets={"A0": 0.009433962264150943, "A1": 0.6415094339622641, "A2": 0.3490566037735849},
    )
    p = case.plan()
    assert not p.skipped
    _check_residual(case, p)


def _check_residual(case: Case, p: rebal.Plan) -> None:
    after = case.filled(p)
    value = case.value(after)
    slack = sum(
        max(m.step * dec(case.prices[a]), m.min_notional) * (1 + dec(case.fee)) for a, m in case.markets.items()
    )
    slack += value * Decimal("1e-9")
    for a, t in case.targets.items():
        assert abs(after[a] * dec(case.prices[a]) - dec(t) * value) <= slack, (a, slack)
    assert after["USDT"] <= slack


# Found by an unseeded run (2026-11-22): the last lot of A0 cost 8.9534 with
# its fee, 6.8e-11 more than the cash the plan left, so the exact settle took
# it back and its money stayed in cash for a re-plan to spend. The settle now
# sells two more of A1's lots (6.6e-8 USDT) instead.
@example(
    _to_target(
        ({"A0": "1000", "A1": "0.00001", "A2": "1000"}, "1", 0.006),
        prices={"A0": 0.0089, "A1": 0.0033, "A2": 0.0033},
        held={"A0": "0", "A1": "289904848.48484", "A2": "0", "USDT": "291.13"},
        targets={"A0": 0.31800766283524906, "A1": 0.3793103448275862, "A2": 0.30268199233716475},
    )
)
@given(cases(min_notionals=("1", "5", "10")))
def test_replanning_after_the_fills_sends_nothing(case: Case) -> None:
    """No ping-pong: after the plan fills at the assumed prices, planning again
    sends nothing. Domain: markets with a minimum order value (every real spot
    market has one) and portfolios worth at least 100 of their largest lot or
    minimum order, as exchanges' minimum investments ensure; with coarser lots
    a re-plan may still correct by a lot (see the issue note)."""
    coarsest = max(max(m.step * dec(case.prices[a]), m.min_notional) for a, m in case.markets.items())
    assume(case.value(case.holdings) >= 100 * coarsest)
    p = case.plan()
    again = case.plan(case.filled(p))
    assert again.orders == [], again.orders


def test_replanning_after_a_top_up_of_tied_fine_lots_sends_nothing() -> None:
    """A run of 20,000 unseeded examples found this case (2026-11-22), a
    known miss until the next session. The top-up lifted A1 and A3 (lots
    worth 0.01, tied below target) one lot at a time, in turn, and its loop
    ended with 1.85 unspent; the plan then gave back a sell of A4 (lots
    worth 1.00) that nothing used. After the fills A4 was 1.33 above its
    target and A1 1.75 below (its minimum order 1.00), and the re-plan sold
    that lot to buy 1.00 of A1. An asset tied with the next now takes its
    share of the cash: A4 ends 0.33 above, A1 1.25 below, with 0.0067 of
    cash, and the re-plan sends nothing."""
    steps = {"A0": "1000", "A1": "10", "A2": "100", "A3": "10", "A4": "1000", "A5": "1000", "A6": "1000"}
    prices = {"A0": 0.2146, "A1": 0.001, "A2": 0.9671, "A3": 0.001, "A4": 0.001, "A5": 0.0207, "A6": 0.001}
    held = {"A0": "200", "A1": "0", "A2": "969800", "A3": "0", "A4": "652226000", "A5": "0", "A6": "595921000", "USDT": "0"}
    weights = (0.14534883720930233, 0.04941860465116279, 0.2819767441860465, 0.14825581395348839, 0.12209302325581395, 0.09883720930232558, 0.15406976744186046)
    case = _to_target((steps, "1", 0.001), prices, held, dict(zip(steps, weights)))
    coarsest = max(max(m.step * dec(case.prices[a]), m.min_notional) for a, m in case.markets.items())
    assert case.value(case.holdings) >= 100 * coarsest  # inside the property's domain
    p = case.plan()
    assert case.plan(case.filled(p)).orders == []


@pytest.mark.xfail(strict=True, reason="known: a band plan leaves a lot's worth of cash a re-plan spends, once the short asset is frozen")
def test_replanning_known_miss() -> None:
    """A run of 20,000 unseeded examples found this case (2026-11-22; the
    planner before that day's top-up change sends it too). Band edges of
    0.78 points, no fee: the plan buys A0, A2 and A3 to 25 % each and A1 to
    24.04 %, and keeps 7.923075 of cash, 0.000002 short of A1's next lot.
    A1 is then below its band, but its lot is wider than the band, so the
    re-plan freezes it at its weight and spends the cash on the others
    (2.00 of each). Strict, so this fails once the planner does it."""
    case = Case(
        markets={a: Market(f"{a}/USDT", a, "USDT", step, min_notional="1", taker_fee=0.0) for a, step in (("A0", "1000"), ("A1", "0.001"), ("A2", "1000"), ("A3", "1000"))},
        prices={"A0": 0.001, "A1": 7923.077, "A2": 0.001, "A3": 0.001},
        holdings={"A0": Decimal(0), "A1": Decimal(0), "A2": Decimal(0), "A3": Decimal(0), "USDT": Decimal(824)},
        targets={"A0": 0.25, "A1": 0.25, "A2": 0.25, "A3": 0.25},
        fee=0.0,
        kwargs={"threshold": 0.0078125, "destination": "band_edge", "portfolio_id": 0, "epoch": 3},
    )
    assert case.plan(case.filled(case.plan())).orders == []


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(0, 99))
def test_client_order_ids_are_deterministic_and_fit_binance(portfolio: int, epoch: int, leg: int) -> None:
    cid = rebal.client_order_id(portfolio, epoch, leg)
    assert cid == rebal.client_order_id(portfolio, epoch, leg) == f"rb{portfolio}-{epoch}-{leg}"
    assert len(cid) <= 36
