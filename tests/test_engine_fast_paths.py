"""The tick's fast paths: steps it skips while nothing is configured that
they could act on (exit levels, auto-invest cycles). Each must run again as
soon as something is: configured later by `modify`, by new portfolios, or
by money coming in. And a whole simulation (every product setting, rejects,
exits, auto-invest, a store) must come out the same with the fast paths off."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rebal import Engine, Stage
from rebal.config import AutoInvest, ScheduleMode, TrailingTakeProfit
from rebal.sim import simulate

from .test_engine import HOUR, P0, T0, FakeFunds, config, fill_all, kinds, make_active, usdt_markets as P0_MARKETS

D = Decimal


def _no_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step runs at every tick, as before the fast paths."""
    monkeypatch.setattr(Engine, "_exit_levels", lambda self: True)
    monkeypatch.setattr(Engine, "_auto_invest_from", lambda self: -math.inf)
    monkeypatch.setattr(Engine, "_money_moves", lambda self: True)


def test_a_take_profit_set_by_modify_fires_after_ticks_without_any() -> None:
    engine, pid = make_active()
    for k in range(1, 4):
        assert not len(engine.on_tick(T0 + k * HOUR, P0))
    assert not engine._exit_levels()
    engine.modify(pid, config(take_profit=10), T0 + 4 * HOUR)
    engine.events()
    batch = engine.on_tick(T0 + 5 * HOUR, P0 * 1.2)  # +20 %
    assert "take_profit" in kinds(engine.events())
    assert engine.stage(pid) == Stage.TERMINATING
    assert set(batch.purpose.tolist()) == {2}  # the exit's sells


def test_a_stop_loss_of_a_portfolio_created_later_fires() -> None:
    engine, first = make_active()
    engine.on_tick(T0 + HOUR, P0)
    assert not engine._exit_levels()
    second = engine.create(config(stop_loss=10), T0 + HOUR)
    engine.fund(second, T0 + HOUR)
    fill_all(engine, engine.on_tick(T0 + 2 * HOUR, P0))
    engine.events()
    engine.on_tick(T0 + 3 * HOUR, P0 * 0.8)  # −20 %
    events = engine.events().records()
    assert [(e.kind, e.portfolio_id) for e in events if e.kind == "stop_loss"] == [("stop_loss", second)]
    assert engine.stage(first) == Stage.ACTIVE


def test_a_trailing_take_profit_armed_then_removed_stops_the_checks() -> None:
    engine, pid = make_active(trailing_take_profit=TrailingTakeProfit(arm=10, drop=5))
    assert engine._exit_levels()
    engine.on_tick(T0 + HOUR, P0 * 1.15)  # arms
    assert engine.state["trail_armed"][engine.book.slot(pid)]
    engine.modify(pid, config(), T0 + 2 * HOUR)
    assert not engine._exit_levels()


def test_auto_invest_set_by_modify_runs_after_ticks_without_any() -> None:
    funds = FakeFunds({0: D("5000")})
    engine, pid = make_active(funds=funds)
    for k in range(1, 3):
        engine.on_tick(T0 + k * HOUR, P0)
    assert engine._auto_invest_from() == math.inf
    hourly = AutoInvest(amount=D("100"), mode=ScheduleMode(every="1h"))
    engine.modify(pid, config(auto_invest=hourly), T0 + 2 * HOUR)
    assert engine._auto_invest_from() == T0 + 3 * HOUR
    engine.events()
    engine.on_tick(T0 + 3 * HOUR - 1, P0)
    assert "auto_invest_executed" not in kinds(engine.events())
    engine.on_tick(T0 + 3 * HOUR, P0)
    assert "auto_invest_executed" in kinds(engine.events())
    assert funds.calls[-1] == ([pid], [1], ["100"])
    assert engine._auto_invest_from() == T0 + 4 * HOUR  # the next cycle


def test_terminating_stops_the_auto_invest_checks() -> None:
    funds = FakeFunds({0: D("5000")})
    engine, pid = make_active(funds=funds, auto_invest=AutoInvest(amount=D("100"), mode=ScheduleMode(every="1h")))
    assert engine._auto_invest_from() == T0 + HOUR
    engine.terminate(pid, T0 + 1)
    assert engine._auto_invest_from() == math.inf


def test_the_simulation_is_the_same_with_the_fast_paths_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = simulate(30, 120, 11, tmp_path / "fast.db")
    _no_fast_paths(monkeypatch)
    slow = simulate(30, 120, 11, tmp_path / "slow.db")
    assert fast["digest"] == slow["digest"]
    assert fast["event_kinds"] == slow["event_kinds"]
    kinds_seen: dict[str, Any] = fast["event_kinds"]
    for kind in ("take_profit", "auto_invest_executed", "terminated", "order_rejected"):
        assert kinds_seen.get(kind, 0) > 0, kind


def _scenario(engine: Engine) -> list[Any]:
    """Portfolios with exits, auto-invest and none, ticked along a path with
    fills, a reject and a termination; returns each tick's batch."""
    hourly = AutoInvest(amount=D("100"), mode=ScheduleMode(every="1h"))
    ids = engine.create_many(
        [config(), config(take_profit=10, stop_loss=10), config(auto_invest=hourly), config(trailing_take_profit=TrailingTakeProfit(arm=5, drop=3))],
        T0,
    )
    engine.fund(ids, T0)
    batches = []
    path = [1.0, 1.02, 1.08, 1.15, 1.06, 0.95, 0.85, 1.0, 1.1]
    for k, move in enumerate(path):
        batch = engine.on_tick(T0 + k * HOUR, P0 * np.array([move, 1.0, 1 / move]))
        batches.append(batch)
        if k == 2:
            engine.terminate(ids[:1], T0 + k * HOUR + 1)
        if len(batch) and k == 4:
            from rebal import Reject

            cids = batch.client_order_id
            engine.on_rejects([Reject(cids[0].decode())])
            fill_all(engine, batch, rows=range(1, len(batch)))
        elif len(batch):
            fill_all(engine, batch)
    return batches


def test_an_engine_without_events_changes_nothing_else() -> None:
    from .test_engine import everything

    with_events, without = Engine(P0_MARKETS()), Engine(P0_MARKETS(), events=False)
    for engine in (with_events, without):
        engine.funds = FakeFunds({i: D("5000") for i in range(4)})
    a, b = _scenario(with_events), _scenario(without)
    for x, y in zip(a, b):
        assert x.client_order_id.tolist() == y.client_order_id.tolist()
        assert x.amounts().tolist() == y.amounts().tolist()
        assert x.purpose.tolist() == y.purpose.tolist()
    kinds_seen = kinds(with_events.events())
    for kind in ("rebalance_started", "rebalance_done", "order_rejected", "auto_invest_executed", "terminated"):
        assert kind in kinds_seen, kind
    assert without.pending_events() == 0 and len(without.events()) == 0
    one, other = everything(with_events), everything(without)
    one.pop("pending_events"), other.pop("pending_events")
    for part in ("book", "holdings", "orders", "state"):
        for name in one[part]:
            np.testing.assert_array_equal(one[part][name], other[part][name], err_msg=f"{part}.{name}")


def test_a_rejected_funding_order_is_bought_again_after_ticks_without_new_money() -> None:
    from rebal import Reject

    engine, first = make_active()
    engine.on_tick(T0 + HOUR, P0)
    assert not engine._money_moves()
    second = engine.create(config(), T0 + HOUR)
    engine.fund(second, T0 + HOUR)
    assert engine._money_moves()
    batch = engine.on_tick(T0 + 2 * HOUR, P0)
    assert len(batch) == 3 and set(batch.purpose.tolist()) == {1}
    assert not engine._money_moves()  # the money is in orders now
    engine.on_rejects([Reject(batch.client_order_id[0].decode())])
    fill_all(engine, batch, rows=[1, 2])
    assert engine._money_moves()  # the round fell short: its money waits again
    again = engine.on_tick(T0 + 3 * HOUR, P0)
    assert again.portfolio_id.tolist() == [second] and again.purpose.tolist() == [1]
    assert again.asset.tolist() == [int(batch.asset[0])]


def _full_fill_case(rng: np.random.Generator, slots_n: int, fills: int) -> dict[str, Any]:
    slots = rng.integers(0, slots_n, fills).astype(np.int64)  # not contiguous, repeated
    legs = rng.integers(0, 3, fills)
    amount = np.zeros((fills, 2), np.int64)
    amount[:, 0] = rng.integers(1, 10**15, fills)
    held = np.zeros((3 * slots_n, 2), np.int64)
    held[:, 0] = 10**17
    cash = np.zeros((slots_n, 2), np.int64)
    cash[:, 0] = 10**18
    return {
        "cash": cash, "holdings": held,
        "cash_float": np.zeros(slots_n), "amount_float": np.zeros(3 * slots_n),
        "slots": slots, "rows": 3 * slots + legs, "buy": rng.random(fills) < 0.5, "amount": amount,
        "price": rng.uniform(0.5, 2.0, fills), "fee_rate": rng.uniform(0, 0.002, fills),
    }  # fmt: skip


def test_full_fills_add_fees_and_turnover_by_slot_as_bincount_does() -> None:
    from rebal import _rebal

    rng = np.random.default_rng(5)
    for purposes, in_order in (([0], False), ([0, 1, 2], False), ([0], True), ([0, 1, 2], True)):
        case = _full_fill_case(rng, 50, 400)
        if in_order:  # each slot's fills together, as in a batch (a pass of its own in Rust)
            order = np.argsort(case["slots"], kind="stable")
            case.update(slots=case["slots"][order], rows=case["rows"][order])
        purpose = rng.choice(np.array(purposes, np.uint8), 400)
        start_fees, start_turnover = rng.uniform(0, 100, 50), rng.uniform(0, 100, 50)
        start_fees[:3] = -0.0  # a -0.0 that no fill touches becomes +0.0, as with numpy's add
        fees_paid, turnover = start_fees.copy(), start_turnover.copy()
        cost, fee = _rebal.fill_in_full(**case, fees_paid=fees_paid, turnover=turnover, purpose=purpose)
        chosen = purpose == 0
        want_fees = start_fees + np.bincount(case["slots"], weights=fee, minlength=50)
        want_turnover = start_turnover + np.bincount(case["slots"][chosen], weights=cost[chosen], minlength=50)
        assert fees_paid.tobytes() == want_fees.tobytes()
        assert turnover.tobytes() == want_turnover.tobytes()


def test_full_fills_with_a_wrong_total_column_change_nothing() -> None:
    from rebal import ConfigError, _rebal

    case = _full_fill_case(np.random.default_rng(6), 10, 30)
    before = {k: v.copy() for k, v in case.items()}
    with pytest.raises(ConfigError, match="turnover"):
        _rebal.fill_in_full(**case, fees_paid=np.zeros(10), turnover=np.zeros(9))
    with pytest.raises(ConfigError, match="fees_paid"):
        frozen = np.zeros(10)
        frozen.flags.writeable = False
        _rebal.fill_in_full(**case, fees_paid=frozen)
    for k, v in case.items():
        assert v.tobytes() == before[k].tobytes(), k


def test_the_book_s_cached_views_follow_every_change_of_its_tables() -> None:
    engine, first = make_active()
    book = engine.book

    def fresh() -> dict[str, Any]:
        return {**{k: a[: book._portfolios.length] for k, a in book._portfolios._arrays.items()}, **{k: a[: book._holdings.length] for k, a in book._holdings._arrays.items()}}

    def same() -> None:
        cached, want = book._columns(), fresh()
        assert cached.keys() == want.keys()
        for k in want:
            assert cached[k].shape == want[k].shape and np.shares_memory(cached[k], want[k]) or not want[k].size, k
        assert engine.state["stage"].shape == (engine.state.length,)

    same()
    assert book._columns() is book._columns()  # made once
    ids = engine.create_many([config() for _ in range(40)], T0)  # the tables grow
    same()
    engine.fund(ids, T0)
    fill_all(engine, engine.on_tick(T0 + HOUR, P0))
    book.update(first, targets={"BTC": 0.5, "ETH": 0.5})  # new rows for one portfolio
    same()
    engine.terminate(ids, T0 + 2 * HOUR)
    fill_all(engine, engine.on_tick(T0 + 2 * HOUR, P0))
    engine.on_tick(T0 + 3 * HOUR, P0)
    engine.remove(ids)  # compacts: the slots move
    same()
    batch = engine.on_tick(T0 + 4 * HOUR, P0 * np.array([1.5, 1.0, 1.0]))
    assert batch.portfolio_id.tolist() and set(batch.portfolio_id.tolist()) == {first}


def test_full_fills_settle_as_without_their_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    """apply_full_fills tells _settle what it just wrote (round_open, all
    filled); a run that settles without the hints ends the same."""
    from .test_engine import everything

    def run(engine: Engine) -> dict[str, Any]:
        hourly = AutoInvest(amount=D("100"), mode=ScheduleMode(every="1h"))
        ids = engine.create_many([config(), config(take_profit=10), config(auto_invest=hourly), config(stop_loss=5)], T0)
        engine.fund(ids, T0)
        for k, move in enumerate([1.0, 1.03, 1.12, 0.9, 0.8, 1.05, 1.2]):
            batch = engine.on_tick(T0 + k * HOUR, P0 * np.array([move, 1.0, 1 / move]))
            if len(batch):
                engine.on_full_fills(batch, fee_rates=0.001)
        return everything(engine)

    def funds() -> FakeFunds:
        return FakeFunds({i: D("5000") for i in range(4)})

    hinted = run(Engine(P0_MARKETS(), funds=funds()))
    settle = Engine._settle
    monkeypatch.setattr(Engine, "_settle", lambda self, slots, now_ms, **hints: settle(self, slots, now_ms))
    plain = run(Engine(P0_MARKETS(), funds=funds()))
    assert int(hinted["state"]["rebalances"].sum()) > 0 and (hinted["state"]["stage"] == 4).any()
    for part in ("book", "holdings", "orders", "state"):
        for name in hinted[part]:
            np.testing.assert_array_equal(hinted[part][name], plain[part][name], err_msg=f"{part}.{name}")
    assert hinted["pending_events"] == plain["pending_events"]


def test_a_backtest_reads_the_inflow_only_when_money_came_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` passes no inflow while `Engine.money_added` stays the same (the
    same floats as zeros); with the inflow read at every tick it ends the same."""
    import itertools

    from rebal.backtest.data import synthetic
    from rebal.backtest.metrics import Stream
    from rebal.backtest.run import run
    from rebal.config import CalendarTrigger, StrategyConfig, ThresholdTrigger

    data = synthetic(["BTC", "ETH", "SOL"], ticks=90, seed=3)
    weights = {"BTC": 50.0, "ETH": 30.0, "SOL": 20.0}
    daily = AutoInvest(amount=D("50"), mode=ScheduleMode(every="1d"))
    configs = [
        StrategyConfig(assets=weights, investment=D(1000), trigger=ThresholdTrigger(threshold=5)),
        StrategyConfig(assets=weights, investment=D(1000), trigger=CalendarTrigger(every="1w"), auto_invest=daily),
        StrategyConfig(assets=weights, investment=D(2000), trigger=ThresholdTrigger(threshold=3), auto_invest=AutoInvest(amount=D("20"), mode=ScheduleMode(every="1w"))),
    ]
    add = Stream.add
    seen: list[Any] = []
    monkeypatch.setattr(Stream, "add", lambda self, values, inflow=None: (seen.append(inflow), add(self, values, inflow))[1])
    fast = run(configs, data, fee=0.001)
    fast_inflows, seen[:] = list(seen), []
    counter = itertools.count()
    monkeypatch.setattr(Engine, "money_added", property(lambda self: next(counter), lambda self, value: None), raising=False)
    slow = run(configs, data, fee=0.001)
    assert fast.net_invested[1] > 1000 and fast.net_invested[2] > 2000  # money came in along the way
    came_in = [inflow is not None and bool(inflow.any()) for inflow in seen]
    assert sum(came_in) > 10
    assert [inflow is not None for inflow in fast_inflows] == came_in  # read where money came in, and only there
    for part in ("metrics", "hold_metrics"):
        for name, values in getattr(fast, part).items():
            assert values.tobytes() == getattr(slow, part)[name].tobytes(), (part, name)
