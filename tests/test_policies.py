"""The Engine's policies at their boundaries (SPEC §1, §3): take-profit,
stop-loss, trailing take-profit, auto-invest by drawdown and by schedule,
the cap and the stops of auto-invest, new money buying the underweight
assets, and the accounting with its hold benchmark.

Boundaries are hit exactly: on whole-unit markets funded at price 1 the
holdings are integers, and the prices chosen are dyadic (1.375, 0.875, …),
so cash + Σ amount · price is exactly the value the test wants (checked
as a premise with Fractions). "Just above / below" is one 2⁻²⁰ price step
away. Where the fee-bearing synthetic markets are used, expectations are
computed from the exact holdings the Engine reports.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rebal
from rebal import Purpose
from rebal import config as cfg

from .engine_harness import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    Host,
    events_of,
    exact_markets,
    kinds,
    synthetic_markets,
    usdt_market,
)

T0 = 1_704_067_200_000  # 2024-01-01T00:00Z, a Monday
EPS = 2.0**-20  # one small dyadic price step
NO_REBALANCE = cfg.ThresholdTrigger(99)  # a band no test price leaves


def conf(assets: dict[str, float], investment: str = "1000", **kw: Any) -> cfg.StrategyConfig:
    kw.setdefault("trigger", NO_REBALANCE)
    return cfg.StrategyConfig(assets=assets, investment=Decimal(investment), **kw)


def ms(text: str) -> int:
    """'2024-04-30 09:30' (UTC) -> epoch ms."""
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


def funded_exact(configs: list[cfg.StrategyConfig], *, fee: float = 0.0, limits: cfg.Limits | None = None, spot: str | None = None) -> tuple[Host, list[int]]:
    """Portfolios of A/B/C funded at price 1: integer holdings, no cash left."""
    host = Host(exact_markets(fee), limits=limits)
    ids = host.open_many(configs, T0, spot=spot)
    events = host.step(T0 + MINUTE_MS, [1.0, 1.0, 1.0])
    assert len(events_of(events, "active")) == len(ids)
    for pid, c in zip(ids, configs):
        held, cash = host.holdings(pid)
        if fee == 0.0:  # the premise of the exact tests: every unit of money bought its target
            assert cash == 0 and held == {a: Decimal(c.investment) * Decimal(repr(w)) / 100 for a, w in c.assets.items()}
    return host, ids


def exact_profit(host: Host, pid: int, prices: list[float]) -> Fraction:
    net = Fraction(host.net_invested(pid))
    return (host.value(pid, prices) - net) / net


# ====================================================================== take-profit / stop-loss

AB_40_60 = {"A": 40.0, "B": 60.0}  # value 400·pA + 600: pA = 1.375 is exactly +15 %
AB_64_36 = {"A": 64.0, "B": 36.0}  # value 640·pA + 360: pA = 0.875 is exactly −8 %


def _check_exit_orders(host: Host, pid: int) -> None:
    """The tick's orders of an exiting portfolio: EXIT sells only."""
    orders = host.orders_of(pid)
    assert orders, "an exit sends its sells on the tick it fires"
    assert {p for _, p in orders} == {Purpose.EXIT}
    assert {o.side for o, _ in orders} == {"sell"}


def test_take_profit_fires_at_and_above_its_level_not_below_vectorized() -> None:
    # One price, many levels: profit is exactly 15 %; levels 14.99 (profit above),
    # 15 (at) fire; 15.01 (profit just below) and none do not.
    levels = [14.99, 15.0, 15.01, None, 15.0]
    configs = [conf(AB_40_60, take_profit=tp, stop_loss=8) for tp in levels]
    host, ids = funded_exact(configs)
    prices = [1.375, 1.0, 1.0]
    assert exact_profit(host, ids[0], prices) == Fraction(15, 100)  # the premise
    events = host.step(T0 + HOUR_MS, prices)
    fired = {e.portfolio_id for e in events_of(events, "take_profit")}
    assert fired == {ids[0], ids[1], ids[4]}
    assert not events_of(events, "stop_loss")
    for pid in fired:
        (tp,) = events_of(events, "take_profit", pid)
        assert tp.value == pytest.approx(0.15, abs=1e-12)
        (term,) = events_of(events, "terminating", pid)
        assert term.reason == "take_profit"
        assert host.engine.stage(pid) == rebal.Stage.TERMINATING
        orders = host.orders_of(pid)
        assert {p for _, p in orders} == {Purpose.EXIT} and {o.side for o, _ in orders} == {"sell"}
        assert {o.asset: o.amount for o, _ in orders} == {"A": Decimal(400), "B": Decimal(600)}
    for pid in (ids[2], ids[3]):
        assert host.orders_of(pid) == []
        assert host.engine.stage(pid) == rebal.Stage.ACTIVE
    # The next tick finishes them: everything sold, the cash handed back exactly.
    events = host.step(T0 + 2 * HOUR_MS, prices)
    for pid in fired:
        (cash,) = events_of(events, "asset_returned", pid)
        assert cash.asset == "USDT" and cash.amount == Decimal(1150)
        (done,) = events_of(events, "terminated", pid)
        assert done.reason == "take_profit"
        assert host.engine.stage(pid) == rebal.Stage.TERMINATED


@pytest.mark.parametrize(
    ("price", "fires"),
    [(1.375 - EPS, False), (1.375, True), (1.375 + EPS, True)],
    ids=["just-below", "exactly-at", "just-above"],
)
def test_take_profit_fifteen_percent_along_a_price_path(price: float, fires: bool) -> None:
    host, (pid,) = funded_exact([conf(AB_40_60, take_profit=15, stop_loss=8)])
    prices = [price, 1.0, 1.0]
    profit = exact_profit(host, pid, prices)
    assert (profit >= Fraction(15, 100)) == fires  # the premise
    events = host.step(T0 + HOUR_MS, prices)
    assert bool(events_of(events, "take_profit", pid)) == fires, (float(profit), kinds(events))
    if fires:
        assert events_of(events, "take_profit", pid)[0].value == pytest.approx(float(profit), abs=1e-12)
        _check_exit_orders(host, pid)
    else:  # it fires on the next tick that passes the level
        assert host.orders_of(pid) == []
        events = host.step(T0 + 2 * HOUR_MS, [1.375 + EPS, 1.0, 1.0])
        assert kinds(events, pid)[:2] == ["take_profit", "terminating"]


def test_stop_loss_fires_at_and_below_its_level_not_above_vectorized() -> None:
    levels = [7.99, 8.0, 8.01, None]
    configs = [conf(AB_64_36, take_profit=15, stop_loss=sl) for sl in levels]
    host, ids = funded_exact(configs)
    prices = [0.875, 1.0, 1.0]
    assert exact_profit(host, ids[0], prices) == Fraction(-8, 100)
    events = host.step(T0 + HOUR_MS, prices)
    fired = {e.portfolio_id for e in events_of(events, "stop_loss")}
    assert fired == {ids[0], ids[1]}
    assert not events_of(events, "take_profit")
    for pid in fired:
        (sl,) = events_of(events, "stop_loss", pid)
        assert sl.value == pytest.approx(-0.08, abs=1e-12)
        assert events_of(events, "terminating", pid)[0].reason == "stop_loss"
        _check_exit_orders(host, pid)
    assert host.orders_of(ids[2]) == [] and host.orders_of(ids[3]) == []


@pytest.mark.parametrize(
    ("price", "fires"),
    [(0.875 + EPS, False), (0.875, True), (0.875 - EPS, True)],
    ids=["loss-just-below-8", "exactly-minus-8", "loss-just-above-8"],
)
def test_stop_loss_eight_percent_along_a_price_path(price: float, fires: bool) -> None:
    host, (pid,) = funded_exact([conf(AB_64_36, take_profit=15, stop_loss=8)])
    prices = [price, 1.0, 1.0]
    profit = exact_profit(host, pid, prices)
    assert (profit <= Fraction(-8, 100)) == fires
    events = host.step(T0 + HOUR_MS, prices)
    assert bool(events_of(events, "stop_loss", pid)) == fires, (float(profit), kinds(events))
    if fires:
        assert events_of(events, "terminating", pid)[0].reason == "stop_loss"
        _check_exit_orders(host, pid)


@settings(max_examples=60)
@given(
    data=st.lists(
        st.tuples(
            st.integers(1, 99),  # BTC weight; ETH gets the rest
            st.integers(200, 20_000),  # investment
            st.integers(1, 30),  # take-profit %
            st.integers(1, 30),  # stop-loss %
        ),
        min_size=1,
        max_size=12,
    ),
    moves=st.tuples(st.floats(0.7, 1.4), st.floats(0.7, 1.4)),
)
def test_exits_fire_exactly_when_the_exact_profit_crosses_vectorized(data: list[tuple[int, int, int, int]], moves: tuple[float, float]) -> None:
    host = Host(synthetic_markets())
    configs = [conf({"BTC": float(w), "ETH": float(100 - w)}, str(inv), take_profit=tp, stop_loss=sl) for w, inv, tp, sl in data]
    ids = host.open_many(configs, T0)
    base = [50_000.0, 2_000.0, 100.0, 500.0]
    host.step(T0 + MINUTE_MS, base)
    prices = [base[0] * moves[0], base[1] * moves[1], 100.0, 500.0]
    expected: dict[int, str | None] = {}
    for pid, (_, _, tp, sl) in zip(ids, data):
        p = exact_profit(host, pid, prices)
        if min(abs(p - Fraction(tp, 100)), abs(p + Fraction(sl, 100))) < Fraction(1, 10**9):
            expected[pid] = "skip"  # within float noise of a level: decided by the exact tests above
        else:
            expected[pid] = "take_profit" if p >= Fraction(tp, 100) else "stop_loss" if p <= -Fraction(sl, 100) else None
    events = host.step(T0 + HOUR_MS, prices)
    for pid in ids:
        if expected[pid] == "skip":
            continue
        got = [k for k in kinds(events, pid) if k in ("take_profit", "stop_loss")]
        assert got == ([expected[pid]] if expected[pid] else []), (pid, float(exact_profit(host, pid, prices)))
        if expected[pid]:
            assert {p for _, p in host.orders_of(pid)} <= {Purpose.EXIT}


# ====================================================================== trailing take-profit

TRAIL = cfg.TrailingTakeProfit(arm=10, drop=12.5)  # value 400·pA + 600 on AB_40_60


def _trail_host() -> tuple[Host, int]:
    host, (pid,) = funded_exact([conf(AB_40_60, trailing_take_profit=TRAIL)])
    return host, pid


def _walk(host: Host, pid: int, path: list[float], start: int = 1) -> list[list[str]]:
    out = []
    for k, pa in enumerate(path, start):
        out.append(kinds(host.step(T0 + k * HOUR_MS, [pa, 1.0, 1.0]), pid))
    return out


def test_trailing_take_profit_does_nothing_before_it_arms() -> None:
    host, pid = _trail_host()
    # +5 % (value 1050), then a 14 % fall from there, then +10 % − ε and a fall
    # of 18 % from that: never armed, so never an exit.
    steps = _walk(host, pid, [1.125, 0.75, 1.25 - EPS, 0.75, 0.5])
    assert all("trailing_take_profit" not in s for s in steps), steps
    assert host.engine.stage(pid) == rebal.Stage.ACTIVE


@pytest.mark.parametrize(
    ("last", "fires"),
    [(1.125 + EPS, False), (1.125, True), (1.0, True)],
    ids=["just-above-the-trail", "exactly-12.5%-below-the-peak", "below"],
)
def test_trailing_take_profit_arms_at_x_and_follows_the_peak(last: float, fires: bool) -> None:
    host, pid = _trail_host()
    # 1100 arms (exactly +10 %, peak 1100); 1200 is a new high (peak 1200,
    # trail 1200 · 0.875 = 1050). The old peak's trail would be 962.5: a
    # value of 1000 exits only because the peak followed the high.
    steps = _walk(host, pid, [1.25, 1.5, last])
    assert steps[0] == [] and steps[1] == []
    assert ("trailing_take_profit" in steps[2]) == fires, steps
    if fires:
        assert steps[2][:2] == ["trailing_take_profit", "terminating"]
        _check_exit_orders(host, pid)


def test_trailing_take_profit_arms_exactly_at_its_level() -> None:
    host, pid = _trail_host()
    # Exactly +10 % arms (peak 1100); then 900 is 18 % below that peak: out.
    steps = _walk(host, pid, [1.25, 0.75])
    assert steps[0] == []
    assert steps[1][:2] == ["trailing_take_profit", "terminating"], steps


def test_trailing_take_profit_event_carries_the_profit_and_reason() -> None:
    host, pid = _trail_host()
    _walk(host, pid, [1.25, 1.5])
    events = host.step(T0 + 9 * HOUR_MS, [1.0, 1.0, 1.0])  # value 1000: 16.7 % below the peak 1200
    (trail,) = events_of(events, "trailing_take_profit", pid)
    assert trail.value == pytest.approx(0.0, abs=1e-12)  # profit at the exit: (1000 − 1000) / 1000
    assert events_of(events, "terminating", pid)[0].reason == "trailing_take_profit"
    assert {p for _, p in host.orders_of(pid)} == {Purpose.EXIT}


def test_an_exit_preempts_a_due_auto_invest_and_a_triggered_rebalance() -> None:
    auto = cfg.AutoInvest(amount=Decimal(100), mode=cfg.ScheduleMode(every="1h"))
    host, (pid,) = funded_exact([conf(AB_40_60, take_profit=15, trigger=cfg.ThresholdTrigger(5), auto_invest=auto)])
    balance = host.funds.balances[pid]
    events = host.step(T0 + HOUR_MS, [1.5, 1.0, 1.0])  # +20 %; A is 50 % against 40 %: a rebalance too
    assert kinds(events, pid)[:2] == ["take_profit", "terminating"]
    assert not events_of(events, "rebalance_started", pid) and not events_of(events, "auto_invest_executed", pid)
    assert {p for _, p in host.orders_of(pid)} == {Purpose.EXIT}
    assert host.funds.balances[pid] == balance and host.net_invested(pid) == Decimal(1000)


def test_a_paused_portfolio_neither_auto_invests_nor_exits_until_resumed() -> None:
    auto = cfg.AutoInvest(amount=Decimal(100), mode=cfg.ScheduleMode(every="1h"))
    host, (pid,) = funded_exact([conf(AB_40_60, take_profit=15, auto_invest=auto)])
    host.engine.pause(pid, T0 + 30 * MINUTE_MS)
    assert kinds(host.engine.events().records()) == ["paused"]
    paused = [host.step(T0 + h * HOUR_MS, [1.5, 1.0, 1.0]) for h in (1, 2, 3)]
    assert [kinds(ev, pid) for ev in paused] == [[], [], []]
    assert host.net_invested(pid) == Decimal(1000)
    host.engine.resume(pid, T0 + 3 * HOUR_MS + MINUTE_MS)
    events = host.step(T0 + 4 * HOUR_MS, [1.5, 1.0, 1.0])
    assert "take_profit" in kinds(events, pid)


# ====================================================================== auto-invest: drawdown


def test_drawdown_auto_invest_at_the_loss_level_and_the_min_interval() -> None:
    levels = [5.0, 4.99, 5.01]
    configs = [
        conf(AB_40_60, auto_invest=cfg.AutoInvest(amount=Decimal(100), mode=cfg.DrawdownMode(loss=x, min_interval="7d"))) for x in levels
    ]
    host, (pid, lower, higher) = funded_exact(configs)
    t1 = T0 + HOUR_MS
    # Loss just below 5 %: nothing (the 4.99 % portfolio fires: its loss is above its level).
    prices = [0.875 + EPS, 1.0, 1.0]
    assert Fraction(0) < -exact_profit(host, pid, prices) < Fraction(5, 100)
    events = host.step(t1, prices)
    assert [e.portfolio_id for e in events_of(events, "auto_invest_executed")] == [lower]
    # Exactly 5 %: fires (and the 5.01 % one does not).
    t2 = t1 + HOUR_MS
    prices = [0.875, 1.0, 1.0]
    assert -exact_profit(host, pid, prices) == Fraction(5, 100)
    balance = host.funds.balances[pid]
    events = host.step(t2, prices)
    executed = events_of(events, "auto_invest_executed")
    assert [e.portfolio_id for e in executed] == [pid], kinds(events)
    assert executed[0].asset == "USDT" and executed[0].amount == Decimal(100)
    assert host.funds.balances[pid] == balance - 100  # drawn exactly, once
    assert host.funds.calls[-1][:3] == (pid, 1, Decimal(100))
    assert host.net_invested(pid) == Decimal(1100)
    orders = host.orders_of(pid)
    assert orders and {p for _, p in orders} == {Purpose.INVEST} and {o.side for o, _ in orders} == {"buy"}
    # A deep loss within 7 days: nothing; at exactly 7 days: the next cycle.
    deep = [0.5, 1.0, 1.0]
    for t in (t2 + HOUR_MS, t2 + 7 * DAY_MS - 1):
        assert -exact_profit(host, pid, deep) > Fraction(5, 100)
        assert not events_of(host.step(t, deep), "auto_invest_executed", pid)
    events = host.step(t2 + 7 * DAY_MS, deep)
    assert len(events_of(events, "auto_invest_executed", pid)) == 1
    assert host.net_invested(pid) == Decimal(1200)
    assert not events_of(host.step(t2 + 7 * DAY_MS + HOUR_MS, deep), "auto_invest_executed", pid)


# ====================================================================== auto-invest: schedule


def _schedule_host(mode: cfg.ScheduleMode, created: int, **auto: Any) -> tuple[Host, int]:
    host = Host(exact_markets())
    config = conf(AB_40_60, auto_invest=cfg.AutoInvest(amount=Decimal(10), mode=mode, **auto))
    pid = host.open(config, created)
    host.step(created + 1, [1.0, 1.0, 1.0])  # funding
    return host, pid


def _cycle_times(host: Host, pid: int, ticks: list[int]) -> list[int]:
    out = []
    for t in ticks:
        if events_of(host.step(t, [1.0, 1.0, 1.0]), "auto_invest_executed", pid):
            out.append(t)
    return out


def test_schedule_every_n_hours_keeps_the_phase_of_its_creation() -> None:
    created = T0 + 3 * HOUR_MS + 17 * MINUTE_MS
    host, pid = _schedule_host(cfg.ScheduleMode(every="6h"), created)
    grid = [created + k * 15 * MINUTE_MS for k in range(1, 4 * 25)]
    ticks = sorted(set(grid) | {created + k * 6 * HOUR_MS - 1 for k in range(1, 5)})
    assert _cycle_times(host, pid, ticks) == [created + k * 6 * HOUR_MS for k in range(1, 5)]
    assert host.net_invested(pid) == Decimal(1040)


@pytest.mark.parametrize("spacing_min", [60, 37])
def test_schedule_weekly_friday_1400_runs_at_the_first_tick_from_then(spacing_min: int) -> None:
    host, pid = _schedule_host(cfg.ScheduleMode(weekly="fri", at="14:00"), T0)
    fridays = [ms("2024-01-05 14:00"), ms("2024-01-12 14:00")]
    ticks = sorted({T0 + k * spacing_min * MINUTE_MS for k in range(1, 14 * 24 * 60 // spacing_min)} | {f - 1 for f in fridays})
    expected = [min(t for t in ticks if t >= f) for f in fridays]
    if spacing_min == 60:
        assert expected == fridays  # on the hour: exactly at 14:00
    assert _cycle_times(host, pid, ticks) == expected
    for t in expected:
        assert dt.datetime.fromtimestamp(t / 1000, dt.UTC).strftime("%a") == "Fri"


@pytest.mark.parametrize(
    ("created", "runs"),
    [
        ("2024-04-10 00:00", ["2024-04-30 09:30", "2024-05-31 09:30"]),  # April has 30 days
        ("2024-02-10 00:00", ["2024-02-29 09:30", "2024-03-31 09:30"]),  # leap February
        ("2023-02-10 00:00", ["2023-02-28 09:30", "2023-03-31 09:30"]),
    ],
)
def test_schedule_monthly_day_31_runs_on_the_last_day_of_a_short_month(created: str, runs: list[str]) -> None:
    start = ms(created)
    host, pid = _schedule_host(cfg.ScheduleMode(monthly=31, at="09:30"), start)
    first_day = start - start % DAY_MS
    ticks = []
    for day in range(1, 52):
        at = first_day + day * DAY_MS + 9 * HOUR_MS + 30 * MINUTE_MS
        ticks += [at - 1, at, at + 12 * HOUR_MS]
    assert _cycle_times(host, pid, ticks) == [ms(r) for r in runs]


# ====================================================================== auto-invest: cap and stops


def _hourly_dca(amount: str = "100", **kw: Any) -> cfg.StrategyConfig:
    cap = kw.pop("cap", None)
    return conf(AB_40_60, auto_invest=cfg.AutoInvest(amount=Decimal(amount), mode=cfg.ScheduleMode(every="1h"), cap=None if cap is None else Decimal(cap)), **kw)


def _run_hours(host: Host, hours: int) -> list[list[Any]]:
    return [host.step(T0 + h * HOUR_MS, [1.0, 1.0, 1.0]) for h in range(1, hours + 1)]


def test_cap_pauses_auto_invest_when_total_invested_reaches_it() -> None:
    host, (pid,) = funded_exact([_hourly_dca(cap="1300")])
    steps = _run_hours(host, 6)
    executed = [h for h, ev in enumerate(steps, 1) if events_of(ev, "auto_invest_executed", pid)]
    assert executed == [1, 2, 3]
    paused = [(h, e.reason) for h, ev in enumerate(steps, 1) for e in events_of(ev, "auto_invest_paused", pid)]
    assert paused == [(3, "cap_reached")]  # 1000 + 3 · 100 = 1300 = cap
    assert host.net_invested(pid) == Decimal(1300)
    assert [(c, a) for p, c, a, ok in host.funds.calls if p == pid] == [(0, Decimal(1000))] + [(k, Decimal(100)) for k in (1, 2, 3)]


def test_cap_a_cycle_that_would_pass_it_does_not_invest() -> None:
    host, (pid,) = funded_exact([_hourly_dca(cap="1250")])
    before = host.funds.balances[pid]
    steps = _run_hours(host, 5)
    executed = [h for h, ev in enumerate(steps, 1) if events_of(ev, "auto_invest_executed", pid)]
    assert executed == [1, 2]
    paused = [(h, e.reason) for h, ev in enumerate(steps, 1) for e in events_of(ev, "auto_invest_paused", pid)]
    assert paused == [(3, "cap_reached")]
    assert host.net_invested(pid) == Decimal(1200)
    assert host.funds.balances[pid] == before - 200
    assert host.orders_of(pid) == []


@pytest.mark.parametrize(("maximum", "cycles"), [("1250", 2), ("1300", 3)])
def test_host_maximum_stops_auto_invest_before_a_cycle_would_pass_it(maximum: str, cycles: int) -> None:
    limits = cfg.Limits(max_investment=Decimal(maximum))
    host, (pid,) = funded_exact([_hourly_dca()], limits=limits)
    steps = _run_hours(host, 6)
    executed = [h for h, ev in enumerate(steps, 1) if events_of(ev, "auto_invest_executed", pid)]
    assert executed == list(range(1, cycles + 1))
    stopped = [(h, e.reason) for h, ev in enumerate(steps, 1) for e in events_of(ev, "auto_invest_stopped", pid)]
    assert stopped == [(cycles + 1, "max_investment")]
    assert host.net_invested(pid) == Decimal(1000 + 100 * cycles) <= Decimal(maximum)
    assert len([c for c in host.funds.calls if c[0] == pid]) == 1 + cycles  # the refused cycle drew nothing


def test_insufficient_spot_balance_stops_auto_invest_and_draws_nothing() -> None:
    host, (pid,) = funded_exact([_hourly_dca()], spot="150")  # enough for one cycle, not two
    steps = _run_hours(host, 5)
    executed = [h for h, ev in enumerate(steps, 1) if events_of(ev, "auto_invest_executed", pid)]
    assert executed == [1]
    stopped = [(h, e.reason) for h, ev in enumerate(steps, 1) for e in events_of(ev, "auto_invest_stopped", pid)]
    assert stopped == [(2, "insufficient_balance")]
    assert host.funds.balances[pid] == Decimal(50)  # nothing drawn by the refused cycle
    assert host.net_invested(pid) == Decimal(1100)
    assert [(c, ok) for p, c, a, ok in host.funds.calls if p == pid] == [(0, True), (1, True), (2, False)]  # never asked again
    _, cash = host.holdings(pid)
    assert cash >= 0


def test_changing_the_composition_stops_auto_invest_other_changes_do_not() -> None:
    host, (changed, kept) = funded_exact([_hourly_dca(), _hourly_dca()])
    _run_hours(host, 1)
    now = T0 + HOUR_MS + MINUTE_MS
    host.engine.modify(changed, cfg.StrategyConfig(**{**_as_dict(_hourly_dca()), "assets": {"A": 50.0, "B": 50.0}}), now)
    host.engine.modify(kept, cfg.StrategyConfig(**{**_as_dict(_hourly_dca()), "take_profit": 40.0}), now)
    events = host.engine.events().records()
    assert [(e.portfolio_id, e.reason) for e in events_of(events, "auto_invest_stopped")] == [(changed, "composition_changed")]
    steps = [host.step(T0 + h * HOUR_MS, [1.0, 1.0, 1.0]) for h in range(2, 6)]
    assert sum(len(events_of(ev, "auto_invest_executed", changed)) for ev in steps) == 0
    assert sum(len(events_of(ev, "auto_invest_executed", kept)) for ev in steps) >= 3
    assert host.net_invested(changed) == Decimal(1100)
    assert not [e for ev in steps for e in events_of(ev, "auto_invest_stopped")]


def test_modifying_another_setting_keeps_the_every_n_hours_phase() -> None:
    # "every N hours" keeps the phase of its creation; changing the take-profit
    # is not a new auto-invest plan and must not move it.
    host, (pid,) = funded_exact([_hourly_dca()])
    _run_hours(host, 1)
    host.engine.modify(pid, cfg.StrategyConfig(**{**_as_dict(_hourly_dca()), "take_profit": 40.0}), T0 + HOUR_MS + 20 * MINUTE_MS)
    steps = [host.step(T0 + h * HOUR_MS, [1.0, 1.0, 1.0]) for h in range(2, 5)]
    assert [bool(events_of(ev, "auto_invest_executed", pid)) for ev in steps] == [True, True, True]


def _as_dict(c: cfg.StrategyConfig) -> dict[str, Any]:
    return {f: getattr(c, f) for f in c.__struct_fields__}


# ====================================================================== new money buys the underweight


ASSETS = ["BTC", "ETH", "SOL", "BNB"]
BASE = [50_000.0, 2_000.0, 100.0, 500.0]


@st.composite
def dca_portfolio(draw: st.DrawFn) -> tuple[dict[str, float], int, int, list[float]]:
    k = draw(st.integers(2, 4))
    names = draw(st.permutations(ASSETS))[:k]
    cuts = sorted(draw(st.lists(st.integers(1, 99), min_size=k - 1, max_size=k - 1, unique=True)))
    weights = np.diff([0, *cuts, 100]).tolist()
    investment = draw(st.integers(500, 50_000))
    amount = draw(st.integers(20, 5_000))
    return dict(zip(names, map(float, weights))), investment, amount, []


@settings(max_examples=60)
@given(
    portfolios=st.lists(dca_portfolio(), min_size=1, max_size=6),
    drift=st.lists(st.floats(0.5, 2.0), min_size=4, max_size=4),
)
def test_new_money_buys_only_underweight_assets_toward_target_within_the_cash(
    portfolios: list[tuple[dict[str, float], int, int, list[float]]], drift: list[float]
) -> None:
    host = Host(synthetic_markets())
    configs = [
        conf(w, str(inv), auto_invest=cfg.AutoInvest(amount=Decimal(amount), mode=cfg.ScheduleMode(every="1h")))
        for w, inv, amount, _ in portfolios
    ]
    ids = host.open_many(configs, T0)
    host.step(T0 + MINUTE_MS, BASE)
    prices = [p * d for p, d in zip(BASE, drift)]
    host.step(T0 + 30 * MINUTE_MS, prices)  # drifted, not yet due
    before = {pid: host.holdings(pid) for pid in ids}
    events = host.step(T0 + HOUR_MS, prices)
    for pid, (targets, _, amount, _) in zip(ids, portfolios):
        assert len(events_of(events, "auto_invest_executed", pid)) == 1
        held0, cash0 = before[pid]
        cash_in = cash0 + amount  # what the cycle may spend: the new money and the cash there was
        value_in = Fraction(cash_in) + sum(Fraction(q) * Fraction(prices[ASSETS.index(a)]) for a, q in held0.items())
        held1, cash1 = host.holdings(pid)
        value_out = Fraction(cash1) + sum(Fraction(q) * Fraction(prices[ASSETS.index(a)]) for a, q in held1.items())
        orders = host.orders_of(pid)
        assert {p for _, p in orders} <= {Purpose.INVEST}
        spent = Decimal(0)
        fills = [f for f in host.filled if f.portfolio_id == pid and f.time_ms == T0 + HOUR_MS]
        assert len(fills) == len(orders)
        for f in fills:
            assert f.side == "buy"
            p = Fraction(prices[ASSETS.index(f.asset)])
            t = Fraction(targets[f.asset]) / 100
            w0 = Fraction(held0[f.asset]) * p / value_in
            w1 = Fraction(held1[f.asset]) * p / value_out
            assert w0 < t, (f.asset, float(w0), float(t))  # only an underweight asset is bought
            assert abs(w1 - t) < abs(w0 - t), (f.asset, float(w0), float(w1), float(t))  # toward its target
            spent += f.charged
        assert spent <= cash_in  # exactly: the cycle never spends money it does not have
        assert cash1 == cash_in - spent  # and the Engine's cash is exactly what is left


# ====================================================================== accounting


def test_accounting_by_hand_on_two_assets_rebalancing_vs_holding() -> None:
    markets = [usdt_market("A", "0.001", min_notional="1"), usdt_market("B", "0.001", min_notional="1")]
    host = Host(markets)
    config = cfg.StrategyConfig(assets={"A": 50, "B": 50}, investment=Decimal("1000"), trigger=cfg.ThresholdTrigger(5), cooldown="0s")
    pid = host.open(config, T0)
    path = [(1.0, 1.0), (1.0, 1.0), (2.0, 1.0), (1.0, 1.0), (1.5, 1.5)]  # A doubles, falls back; then both rise
    multiples = []
    for k, prices in enumerate(path, 1):
        if k > 1:  # active from the second tick on: its tick-time value counts for the drawdown
            multiples.append(host.value(pid, prices) / 1000)
        host.step(T0 + k * DAY_MS, prices)
    last = list(path[-1])

    acct = host.accounting(pid)
    mine = [f for f in host.filled if f.portfolio_id == pid]
    funding = [f for f in mine if f.purpose == Purpose.INVEST]
    rebalancing = [f for f in mine if f.purpose == Purpose.REBALANCE]
    assert len(funding) == 2 and {f.side for f in funding} == {"buy"}
    assert len({f.time_ms for f in rebalancing}) == 2  # at A = 2 and at A = 1

    value = host.value(pid, last)
    assert acct["net_invested"] == "1000"
    assert acct["value"] == pytest.approx(float(value), rel=1e-12)
    assert acct["profit"] == pytest.approx(float(value - 1000), rel=1e-9)
    assert acct["profit_pct"] == pytest.approx(float((value - 1000) / 10), rel=1e-9)
    assert acct["fees_paid"] == pytest.approx(float(sum(f.fee for f in mine)), rel=1e-12)
    assert acct["turnover"] == pytest.approx(float(sum(f.cost for f in rebalancing)), rel=1e-12)
    assert acct["rebalances"] == 2
    peak, worst = multiples[0], Fraction(0)
    for m in multiples:
        peak = max(peak, m)
        worst = max(worst, 1 - m / peak)
    assert acct["max_drawdown_pct"] == pytest.approx(100 * float(worst), rel=1e-9)
    assert float(worst) > 0.2  # 1498 → about 1123 when A fell back
    assert np.isnan(acct["annualised_return_pct"])  # five days: too short to annualise

    # The hold benchmark: the funding buys, held as they are, and the cash they left.
    hold = Fraction(Decimal(1000) - sum(f.charged for f in funding))
    for f in funding:
        hold += Fraction(f.amount) * Fraction(last[["A", "B"].index(f.asset)])
    assert acct["hold_value"] == pytest.approx(float(hold), rel=1e-12)
    assert acct["hold_profit_pct"] == pytest.approx(float((hold - 1000) / 10), rel=1e-9)
    assert acct["vs_hold_pct"] == pytest.approx(acct["profit_pct"] - acct["hold_profit_pct"], abs=1e-9)
    assert value - hold > 100  # rebalancing sold A high and bought it back low: it diverged from holding


# ====================================================================== max drawdown, a tick at a time

# Sizes either side of the Rust passes' parallel threshold (blocks of 65,536
# above 32,768 portfolios): the one-thread pass and the parallel one.
PASS_SIZES = (20_000, 150_001)


def _track_drawdown_in_numpy(s: dict[str, np.ndarray], value: np.ndarray, mask: np.ndarray) -> None:
    """The drawdown tracking as numpy operations alone (what it was before it
    moved to Rust): the reference its floats must equal."""
    with np.errstate(invalid="ignore"):
        high = np.flatnonzero((value > s["peak_value"]) & mask)
        s["peak_value"][high] = value[high]
        s["drawdown_level"][high] = value[high] * (1 - s["max_drawdown"][high])
        low = np.flatnonzero((value < s["drawdown_level"]) & mask)
        s["max_drawdown"][low] = 1 - value[low] / s["peak_value"][low]
        s["drawdown_level"][low] = value[low]


@pytest.mark.parametrize("n, ticks", [(500, 80), (PASS_SIZES[1], 5)])
def test_drawdown_tracking_gives_the_floats_of_its_numpy_arithmetic(n: int, ticks: int) -> None:
    """Bit for bit over many ticks, on awkward values too (zero, negative,
    NaN, inf, tiny), with portfolios masked out at random."""
    from rebal.policies import exits

    rng = np.random.default_rng(11)
    odd = np.array([0.0, -3.0, np.nan, np.inf, 5e-324, 1e300])
    names = ("peak_value", "drawdown_level", "max_drawdown")
    start = {"peak_value": rng.lognormal(8, 0.3, n), "drawdown_level": np.zeros(n), "max_drawdown": np.zeros(n)}
    ours = {k: v.copy() for k, v in start.items()}
    reference = {k: v.copy() for k, v in start.items()}
    for _ in range(ticks):
        value = np.where(rng.random(n) < 0.05, rng.choice(odd, n), rng.lognormal(8, 0.3, n))
        mask = rng.random(n) < 0.9
        exits.track_drawdown(ours, value, mask)
        _track_drawdown_in_numpy(reference, value, mask)
    for name in names:
        assert ours[name].view(np.uint64).tolist() == reference[name].view(np.uint64).tolist(), name
    assert (reference["max_drawdown"] > 0.3).any(), "the series fell: the drawdowns were exercised"


@pytest.mark.parametrize("n", PASS_SIZES)
def test_earliest_is_the_masked_minimum(n: int) -> None:
    """`_rebal.earliest` (the first auto-invest cycle due) is numpy's
    `values[mask].min()`, None where no value is masked, and refuses
    columns of different lengths by name."""
    from rebal import _rebal
    from rebal.exceptions import ConfigError

    rng = np.random.default_rng(5)
    values = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, n, dtype=np.int64)
    for share in (0.0, 0.001, 0.4, 1.0):
        mask = rng.random(len(values)) < share
        expected = int(values[mask].min()) if mask.any() else None
        assert _rebal.earliest(values, mask) == expected
    assert _rebal.earliest(np.array([], np.int64), np.array([], bool)) is None
    with pytest.raises(ConfigError) as refused:
        _rebal.earliest(values, np.ones(3, bool))
    assert refused.value.field == "mask"


@pytest.mark.parametrize("n", PASS_SIZES)
def test_reached_is_numpys_comparisons(n: int) -> None:
    """`_rebal.reached` (the exits' take-profit and stop-loss levels) keeps
    the masked positions at or above `up` or at or below `down`, as numpy's
    comparisons do (a NaN level or value is never reached), and refuses a
    column of another length by name."""
    from rebal import _rebal
    from rebal.exceptions import ConfigError

    rng = np.random.default_rng(8)
    value = rng.normal(100, 30, n)
    value[rng.random(n) < 0.05] = np.nan
    up = np.where(rng.random(n) < 0.5, rng.normal(120, 30, n), np.nan)
    down = np.where(rng.random(n) < 0.5, rng.normal(80, 30, n), np.nan)
    up[:10], down[10:20] = value[:10], value[10:20]  # on the level: reached
    mask = rng.random(n) < 0.8
    with np.errstate(invalid="ignore"):
        for kwargs, hit in (
            ({"up": up, "down": down}, (value >= up) | (value <= down)),
            ({"up": up}, value >= up),
            ({"down": down}, value <= down),
            ({}, np.zeros(n, bool)),
        ):
            np.testing.assert_array_equal(_rebal.reached(value, mask, **kwargs), np.flatnonzero(hit & mask))
    for field, columns in (("mask", (value, mask[1:], up, down)), ("down", (value, mask, up, down[:-1]))):
        with pytest.raises(ConfigError) as refused:
            _rebal.reached(columns[0], columns[1], up=columns[2], down=columns[3])
        assert refused.value.field == field


@pytest.mark.parametrize("n", PASS_SIZES)
def test_cycles_due_is_numpys_masks(n: int) -> None:
    """`auto_invest.due` (one Rust pass) keeps exactly the slots numpy's
    masks keep: auto-invest on, past its time, in the running stage, free,
    scanned and not rebalancing, and at or below its level (a NaN level or
    value never is); a column of another length is refused by name."""
    from rebal import _rebal
    from rebal.batch import Status
    from rebal.exceptions import ConfigError
    from rebal.policies import auto_invest

    rng = np.random.default_rng(11)
    now, running = 1_000_000, 2
    s = {
        "dca_next_ms": rng.integers(now - 5, now + 5, n),
        "dca_state": rng.integers(0, 4, n).astype(np.uint8),
        "stage": rng.integers(0, 5, n).astype(np.uint8),
        "dca_value": np.where(rng.random(n) < 0.2, np.nan, np.where(rng.random(n) < 0.3, np.inf, rng.normal(100, 30, n))),
    }
    status = rng.integers(0, 6, n).astype(np.uint8)
    locked = rng.random(n) < 0.3
    value = rng.normal(100, 30, n)
    value[rng.random(n) < 0.02] = np.nan
    value[:50] = s["dca_value"][:50]  # on the level: due
    with np.errstate(invalid="ignore"):
        expected = np.flatnonzero(
            (s["dca_next_ms"] <= now)
            & (s["dca_state"] == auto_invest.DCA_ON)
            & (s["stage"] == running)
            & ~locked
            & (status != Status.INACTIVE.value)
            & (status != Status.REBALANCE.value)
            & (value <= s["dca_value"])
        )
    got = auto_invest.due(s, now, value, status, locked, running)
    np.testing.assert_array_equal(got, expected)
    assert 100 < len(got) < n // 10, "some due, most not: every mask was exercised"
    with pytest.raises(ConfigError) as refused:
        _rebal.cycles_due(now, s["dca_next_ms"], s["dca_state"], 1, s["stage"], running, status[1:], locked, value, s["dca_value"])
    assert refused.value.field == "status"
