"""`rebal.Engine`: lifecycle (SPEC §3), fills and rejects (all or nothing),
exits, pause / resume / modify, funding in another quote asset on real data,
and durable state (`rebal.Store`).

The host side is played by small fakes: `FakeFunds` (the users' spot
balances) and `fill_all` (a venue filling every order at the tick's price,
0.1 % fee in the quote asset unless told otherwise)."""

from __future__ import annotations

import copy
import csv
import sqlite3
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import rebal
from rebal import ConfigError, Engine, Fill, FillError, InsufficientFunds, Market, Purpose, Reject, Stage, Store, StrategyConfig
from rebal.batch import SIDE_BUY, SIDE_SELL
from rebal.config import AutoInvest, CalendarTrigger, ScheduleMode, ThresholdTrigger
from rebal.orders import OrderStatus

from .conftest import shared

D = Decimal
T0 = 1_700_000_000_000  # epoch ms
HOUR = 3_600_000
FEE = D("0.001")
P0 = np.array([50_000.0, 2_500.0, 100.0])  # BTC, ETH, SOL in USDT
STEPS = {"BTC": D("0.00001"), "ETH": D("0.0001"), "SOL": D("0.001")}


def usdt_markets(**overrides: dict[str, Any]) -> list[Market]:
    return [
        Market(f"{base}/USDT", base, "USDT", str(step), min_notional="5", taker_fee=0.001, **overrides.get(base, {}))
        for base, step in STEPS.items()
    ]


class FakeFunds:
    """The users' spot balances: a withdrawal is granted when the balance covers it."""

    def __init__(self, balances: dict[int, Decimal]) -> None:
        self.balances = dict(balances)
        self.calls: list[tuple[list[int], list[int], list[str]]] = []

    def withdraw(self, portfolio_ids: npt.NDArray[np.uint64], cycles: npt.NDArray[np.int64], amounts: npt.NDArray[np.str_]) -> npt.NDArray[np.bool_]:
        self.calls.append((portfolio_ids.tolist(), cycles.tolist(), [str(a) for a in amounts]))
        granted = []
        for pid, amount in zip(portfolio_ids.tolist(), amounts.tolist()):
            want = D(str(amount))
            ok = self.balances.get(pid, D(0)) >= want
            if ok:
                self.balances[pid] -= want
            granted.append(ok)
        return np.array(granted, bool)


def config(**kw: Any) -> StrategyConfig:
    settings: dict[str, Any] = {"assets": {"BTC": 50, "ETH": 30, "SOL": 20}, "investment": D("1000")}
    settings.update(kw)
    return StrategyConfig(**settings)


def price_of(batch: rebal.OrderBatch, i: int) -> Decimal:
    return D(repr(float(batch.price[i])))


def fill_list(batch: rebal.OrderBatch, rows: Iterable[int] | None = None, *, fraction: Decimal | None = None, fee_in_base: bool = False) -> list[Fill]:
    """Fills of `rows` of a batch at the tick's prices (the whole amount, or
    `fraction` of it in whole steps), fee 0.1 % in the quote asset (or base)."""
    ids, amounts = batch.client_order_id, batch.amounts()
    out = []
    for i in range(len(batch)) if rows is None else rows:
        amount = D(str(amounts[i]))
        if fraction is not None:
            step = STEPS.get(batch.symbols()[i].split("/")[0], D("0.001"))
            amount = (amount * fraction / step).to_integral_value(rounding="ROUND_DOWN") * step
        price = price_of(batch, i)
        if fee_in_base:
            out.append(Fill(ids[i].decode(), amount, price, fee=amount * FEE, fee_asset=batch.symbols()[i].split("/")[0]))
        else:
            out.append(Fill(ids[i].decode(), amount, price, fee=(amount * price * FEE).quantize(D("1e-8"))))
    return out


def fill_all(engine: Engine, batch: rebal.OrderBatch, **kw: Any) -> list[Fill]:
    fills = fill_list(batch, **kw)
    engine.on_fills(fills)
    return fills


def kinds(events: rebal.Events) -> list[str]:
    return [e.kind for e in events.records()]


def make_active(*, funds: FakeFunds | None = None, markets: list[Market] | None = None, **kw: Any) -> tuple[Engine, int]:
    """An Engine with one ACTIVE portfolio, funded and bought at P0; events drained."""
    engine = Engine(markets or usdt_markets(), funds=funds)
    pid = engine.create(config(**kw), T0)
    engine.fund(pid, T0)
    batch = engine.on_tick(T0, P0)
    assert len(batch) == 3
    fill_all(engine, batch)
    assert engine.stage(pid) == Stage.ACTIVE
    engine.events()
    return engine, pid


def locked(engine: Engine, pid: int) -> bool:
    return bool(engine.book.portfolio(pid)["locked"])


def rebalances(engine: Engine, pid: int) -> int:
    return int(engine.state["rebalances"][engine.book.slot(pid)])


BTC_UP = P0 * np.array([1.5, 1.0, 1.0])  # BTC 50 % -> 60 %: a 10-point deviation


def everything(engine: Engine) -> dict[str, Any]:
    """Copies of every column a fill or reject could touch."""
    return {
        "book": {k: v.copy() for k, v in engine.book.columns().items()},
        "holdings": {k: v.copy() for k, v in engine.book.holding_columns().items()},
        "orders": {k: v.copy() for k, v in engine.orders.table.views().items()},
        "state": {k: v.copy() for k, v in engine.state.views().items()},
        "pending_events": engine.pending_events(),
        "fill_count": engine.fill_count,
        "configs": copy.copy(engine.configs),
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    for part in ("book", "holdings", "orders", "state"):
        assert before[part].keys() == after[part].keys()
        for name in before[part]:
            np.testing.assert_array_equal(after[part][name], before[part][name], err_msg=f"{part}.{name} changed")
    for key in ("pending_events", "fill_count", "configs"):
        assert after[key] == before[key], key


# ---------------------------------------------------------------- the state machine


def test_create_is_created_paused_and_never_planned() -> None:
    engine = Engine(usdt_markets())
    pid = engine.create(config(), T0)
    assert engine.stage(pid) == Stage.CREATED
    p = engine.book.portfolio(pid)
    assert p["active"] is False  # paused in the Book
    assert p["cash"] == 0 and set(p["holdings"].values()) == {D(0)}
    assert [(e.kind, e.portfolio_id) for e in engine.events().records()] == [("created", pid)]
    batch = engine.on_tick(T0 + HOUR, P0)
    assert len(batch) == 0
    assert engine.stage(pid) == Stage.CREATED
    assert engine.pending_events() == 0


def test_fund_draws_the_investment_through_funds() -> None:
    funds = FakeFunds({0: D("1500")})
    engine = Engine(usdt_markets(), funds=funds)
    pid = engine.create(config(), T0)
    engine.events()
    engine.fund(pid, T0 + 1)
    assert funds.calls == [([pid], [0], ["1000"])]
    assert funds.balances[pid] == D("500")
    assert engine.stage(pid) == Stage.FUNDING
    assert engine.book.portfolio(pid)["cash"] == D("1000")
    assert engine.accounting([pid])["net_invested"].tolist() == ["1000"]
    (funded,) = engine.events().records()
    assert (funded.kind, funded.asset, funded.amount, funded.time_ms) == ("funded", "USDT", D("1000"), T0 + 1)
    with pytest.raises(ConfigError) as e:  # funding twice is refused
        engine.fund(pid, T0 + 2)
    assert e.value.field == "id"
    assert len(funds.calls) == 1


def test_first_tick_after_funding_buys_every_asset_in_whole_steps_within_the_investment() -> None:
    engine = Engine(usdt_markets(), funds=FakeFunds({0: D("1000")}))
    pid = engine.create(config(), T0)
    engine.fund(pid, T0)
    batch = engine.on_tick(T0 + 1, P0)
    assert len(batch) == 3
    assert batch.purpose.tolist() == [Purpose.INVEST] * 3
    assert batch.side.tolist() == [SIDE_BUY] * 3
    assert sorted(batch.symbols().tolist()) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert batch.portfolio_id.tolist() == [pid] * 3
    amounts = [D(str(a)) for a in batch.amounts()]
    assert amounts == [D("0.00999"), D("0.1198"), D("1.998")]
    total = D(0)
    for i, amount in enumerate(amounts):
        assert amount > 0 and amount % STEPS[batch.symbols()[i].split("/")[0]] == 0
        total += amount * price_of(batch, i) * (1 + FEE)
    assert total <= D("1000")
    assert len(set(batch.client_order_id.tolist())) == 3
    assert locked(engine, pid)
    assert engine.stage(pid) == Stage.FUNDING  # until the fills come


def test_funding_fills_make_the_portfolio_active() -> None:
    engine = Engine(usdt_markets())
    pid = engine.create(config(), T0)
    engine.fund(pid, T0)
    batch = engine.on_tick(T0, P0)
    engine.events()
    fills = fill_list(batch)
    engine.on_fills(fills[:2])
    assert engine.stage(pid) == Stage.FUNDING and locked(engine, pid)
    assert engine.pending_events() == 0
    engine.on_fills(fills[2:])
    assert engine.stage(pid) == Stage.ACTIVE and not locked(engine, pid)
    assert [(e.kind, e.portfolio_id) for e in engine.events().records()] == [("active", pid)]
    p = engine.book.portfolio(pid)
    assert p["holdings"] == {"BTC": D("0.00999"), "ETH": D("0.1198"), "SOL": D("1.998")}
    spent = sum((f.amount * f.price + f.fee for f in fills), D(0))
    assert p["cash"] == D("1000") - spent == D("0.2012")
    assert p["active"] is True
    assert rebalances(engine, pid) == 0  # buying with new money is not a rebalance
    assert engine.on_tick(T0 + 1, P0).purpose.tolist() == []  # on target: nothing to do


def test_refused_investment_raises_and_leaves_the_portfolio_created() -> None:
    funds = FakeFunds({0: D("999.99")})
    engine = Engine(usdt_markets(), funds=funds)
    pid = engine.create(config(), T0)
    engine.events()
    with pytest.raises(InsufficientFunds):
        engine.fund(pid, T0 + 1)
    assert engine.stage(pid) == Stage.CREATED
    assert engine.book.portfolio(pid)["cash"] == D(0)
    assert engine.accounting([pid])["net_invested"].tolist() == ["0"]
    assert engine.pending_events() == 0
    assert len(engine.on_tick(T0 + 2, P0)) == 0
    assert funds.balances[pid] == D("999.99")


# ---------------------------------------------------------------- orders out lock the portfolio


def test_a_round_of_orders_locks_until_every_fill() -> None:
    engine, pid = make_active()
    batch = engine.on_tick(T0 + HOUR, BTC_UP)
    assert len(batch) > 0
    assert batch.purpose.tolist() == [Purpose.REBALANCE] * len(batch)
    assert batch.side.tolist()[0] == SIDE_SELL and batch.symbols()[0] == "BTC/USDT"  # sells first
    assert [(e.kind, e.value) for e in engine.events().records()] == [("rebalance_started", float(len(batch)))]
    assert locked(engine, pid)
    # Prices move a lot while the round is open: no orders for it.
    for k, move in enumerate(([3.0, 1.0, 1.0], [0.3, 2.0, 5.0], [1.0, 0.1, 1.0]), start=2):
        held = engine.on_tick(T0 + k * HOUR, P0 * np.array(move))
        assert len(held) == 0
        assert held.status[engine.book.slot(pid)] == rebal.Status.LOCKED  # triggered, held back
    assert engine.pending_events() == 0
    fills = fill_list(batch)
    engine.on_fills(fills[:-1])
    assert locked(engine, pid) and rebalances(engine, pid) == 0
    assert engine.pending_events() == 0
    engine.on_fills(fills[-1:])
    assert not locked(engine, pid)
    assert rebalances(engine, pid) == 1
    assert [(e.kind, e.portfolio_id) for e in engine.events().records()] == [("rebalance_done", pid)]
    assert engine.orders["status"].tolist() == [OrderStatus.FILLED] * len(engine.orders)


def test_partial_fills_keep_the_round_open_until_the_last_one() -> None:
    engine, pid = make_active(cooldown="0s")
    batch = engine.on_tick(T0 + HOUR, BTC_UP)
    n = len(batch)
    first = fill_list(batch, fraction=D("0.5"))
    engine.on_fills(first)
    assert locked(engine, pid)
    assert engine.orders["status"][-n:].tolist() == [OrderStatus.PARTIALLY_FILLED] * n
    assert len(engine.on_tick(T0 + 2 * HOUR, BTC_UP * 1.2)) == 0
    rest = [Fill(f.client_order_id, D(str(a)) - f.amount, f.price, fee=f.fee) for f, a in zip(first, batch.amounts())]
    for k, f in enumerate(rest):
        assert locked(engine, pid), k
        engine.on_fills([f])
    assert not locked(engine, pid)
    assert rebalances(engine, pid) == 1
    assert engine.orders["status"][-n:].tolist() == [OrderStatus.FILLED] * n
    assert [e.kind for e in engine.events().records()] == ["rebalance_started", "rebalance_done"]
    # Two fills per order add up exactly to the order.
    ordered = [D(str(a)) for a in batch.amounts()]
    assert [f.amount + r.amount for f, r in zip(first, rest)] == ordered


def test_a_reject_of_the_last_open_order_unlocks_and_the_next_tick_replans() -> None:
    engine, pid = make_active()  # default cooldown: 5 minutes
    batch = engine.on_tick(T0 + HOUR, BTC_UP)
    engine.events()
    ids = [c.decode() for c in batch.client_order_id]
    engine.on_rejects([Reject(ids[0], reason="no liquidity")])
    assert locked(engine, pid)
    engine.on_rejects([Reject(i) for i in ids[1:]])
    assert not locked(engine, pid)
    assert rebalances(engine, pid) == 0
    events = engine.events().records()
    assert [(e.kind, e.reason, e.value) for e in events] == [("order_rejected", "rejected", float(leg)) for leg in batch.leg.tolist()]
    assert engine.orders["status"].tolist()[-len(batch) :] == [OrderStatus.REJECTED] * len(batch)
    # No cooldown after a round that filled nothing: the very next tick re-plans.
    again = engine.on_tick(T0 + HOUR + 1, BTC_UP)
    assert len(again) == len(batch)
    assert [D(str(a)) for a in again.amounts()] == [D(str(a)) for a in batch.amounts()]
    assert not set(again.client_order_id.tolist()) & set(batch.client_order_id.tolist())  # new client ids


def test_after_a_round_that_filled_the_cooldown_applies() -> None:
    """The contrast to a rejected round: one that filled starts the cooldown (5 minutes)."""
    engine, pid = make_active()
    fill_all(engine, engine.on_tick(T0 + HOUR, BTC_UP))
    soon = engine.on_tick(T0 + HOUR + 1, P0 * np.array([3.0, 1.0, 1.0]))
    assert len(soon) == 0 and soon.status[engine.book.slot(pid)] == rebal.Status.COOLDOWN
    assert len(engine.on_tick(T0 + HOUR + 300_000, P0 * np.array([3.0, 1.0, 1.0]))) > 0


def test_a_cancel_is_recorded_as_cancelled() -> None:
    engine, pid = make_active()
    batch = engine.on_tick(T0 + HOUR, BTC_UP)
    engine.on_rejects([Reject(c.decode(), kind="cancelled") for c in batch.client_order_id])
    assert engine.orders["status"].tolist()[-len(batch) :] == [OrderStatus.CANCELLED] * len(batch)
    assert not locked(engine, pid)


# ---------------------------------------------------------------- bad fills change nothing


def _open_funding_round() -> tuple[Engine, int, rebal.OrderBatch]:
    engine = Engine(usdt_markets())
    pid = engine.create(config(), T0)
    engine.fund(pid, T0)
    batch = engine.on_tick(T0, P0)
    return engine, pid, batch


def _bad_fills(batch: rebal.OrderBatch) -> dict[str, tuple[list[Fill], str]]:
    good = fill_list(batch)
    btc, eth = good[0], good[1]  # BTC 0.00999 @ 50000, ETH 0.1198 @ 2500
    return {
        "unknown client id": ([eth, Fill("rb999-1-0", D("0.001"), D("50000"))], "fills[1].client_order_id"),
        "negative amount": ([eth, Fill(btc.client_order_id, D("-0.001"), btc.price)], "fills[1].amount"),
        "zero amount": ([Fill(btc.client_order_id, D("0"), btc.price)], "fills[0].amount"),
        "finer than 1e-18": ([Fill(btc.client_order_id, D("0.001000000000000000001"), btc.price)], "fills[0].amount"),
        "larger than the order": ([eth, Fill(btc.client_order_id, D("0.01"), btc.price)], "fills[1].amount"),
        "larger in two fills": (
            [Fill(btc.client_order_id, D("0.006"), btc.price), Fill(btc.client_order_id, D("0.004"), btc.price)],
            "fills[1].amount",
        ),
        "fee in a third asset": ([eth, Fill(btc.client_order_id, btc.amount, btc.price, fee=D("0.01"), fee_asset="BNB")], "fills[1].fee_asset"),
        "non-numeric amount": ([eth, Fill(btc.client_order_id, "lots", btc.price)], "fills[1].amount"),  # type: ignore[arg-type]
        "cash below zero": ([Fill(btc.client_order_id, btc.amount, D("200000")), eth], "fills[0]"),
    }


@pytest.mark.parametrize("case", list(_bad_fills(_open_funding_round()[2])))
def test_a_bad_fill_is_refused_naming_the_field_and_changes_nothing(case: str) -> None:
    engine, pid, batch = _open_funding_round()
    fills, field = _bad_fills(batch)[case]
    before = everything(engine)
    with pytest.raises(FillError) as e:
        engine.on_fills(fills)
    assert e.value.field == field
    assert field in str(e.value)
    assert_same(before, everything(engine))
    # And the good fills still apply afterwards.
    fill_all(engine, batch)
    assert engine.stage(pid) == Stage.ACTIVE


def test_a_fill_of_a_closed_order_is_refused() -> None:
    engine, pid, batch = _open_funding_round()
    fills = fill_all(engine, batch)
    before = everything(engine)
    with pytest.raises(FillError) as e:
        engine.on_fills(fills[:1])
    assert e.value.field == "fills[0].client_order_id"
    assert_same(before, everything(engine))


def test_a_reject_for_an_unknown_order_is_refused_and_changes_nothing() -> None:
    engine, pid, batch = _open_funding_round()
    first = batch.client_order_id[0].decode()
    before = everything(engine)
    for rejects, field in (
        ([Reject(first), Reject("rb42-7-0")], "rejects[1].client_order_id"),
        ([Reject(first), Reject(first)], "rejects[1].client_order_id"),
    ):
        with pytest.raises(FillError) as e:
            engine.on_rejects(rejects)
        assert e.value.field == field
        assert_same(before, everything(engine))


# ---------------------------------------------------------------- termination


def test_terminate_sell_sells_every_holding_then_returns_cash_and_dust() -> None:
    engine = Engine(usdt_markets())
    pid = engine.create(config(), T0)
    engine.fund(pid, T0)
    fill_all(engine, engine.on_tick(T0, P0), fee_in_base=True)  # base fees leave sub-step dust
    held = engine.book.portfolio(pid)["holdings"]
    assert held == {"BTC": D("0.00998001"), "ETH": D("0.1196802"), "SOL": D("1.996002")}
    engine.events()
    engine.terminate(pid, T0 + HOUR, exit="sell")
    assert engine.stage(pid) == Stage.TERMINATING
    assert [(e.kind, e.reason) for e in engine.events().records()] == [("terminating", "user")]

    batch = engine.on_tick(T0 + HOUR, P0)
    assert batch.purpose.tolist() == [Purpose.EXIT] * 3
    assert batch.side.tolist() == [SIDE_SELL] * 3
    sold = {s.split("/")[0]: D(str(a)) for s, a in zip(batch.symbols(), batch.amounts())}
    assert sold == {"BTC": D("0.00998"), "ETH": D("0.1196"), "SOL": D("1.996")}  # whole lots
    assert engine.stage(pid) == Stage.TERMINATING and locked(engine, pid)
    fill_all(engine, batch)
    assert engine.stage(pid) == Stage.TERMINATING
    cash = engine.book.portfolio(pid)["cash"]
    engine.events()

    assert len(engine.on_tick(T0 + HOUR + 1, P0)) == 0
    events = engine.events().records()
    returned = [(e.asset, e.amount, e.reason) for e in events if e.kind == "asset_returned"]
    dust = [r for r in returned if r[0] != "USDT"]
    assert sorted(dust) == [("BTC", D("0.00000001"), "below_minimum"), ("ETH", D("0.0000802"), "below_minimum"), ("SOL", D("0.000002"), "below_minimum")]
    assert [(a, m) for a, m, _ in returned if a == "USDT"] == [("USDT", cash)]
    assert [(e.kind, e.reason) for e in events if e.kind == "terminated"] == [("terminated", "user")]
    assert events[-1].kind == "terminated"
    assert engine.stage(pid) == Stage.TERMINATED
    p = engine.book.portfolio(pid)
    assert p["cash"] == 0 and set(p["holdings"].values()) == {D(0)}
    assert len(engine.on_tick(T0 + 2 * HOUR, P0)) == 0
    assert engine.pending_events() == 0


def test_terminate_return_hands_every_coin_back_at_the_next_tick() -> None:
    engine, pid = make_active()
    held = engine.book.portfolio(pid)["holdings"]
    cash = engine.book.portfolio(pid)["cash"]
    engine.terminate(pid, T0 + HOUR, exit="return")
    engine.events()
    batch = engine.on_tick(T0 + HOUR, P0)
    assert len(batch) == 0
    events = engine.events().records()
    coins = {e.asset: (e.amount, e.reason) for e in events if e.kind == "asset_returned" and e.asset != "USDT"}
    assert coins == {a: (amount, "exit_return") for a, amount in held.items()}
    assert [e.amount for e in events if e.kind == "asset_returned" and e.asset == "USDT"] == [cash]
    assert events[-1].kind == "terminated"
    assert engine.stage(pid) == Stage.TERMINATED
    p = engine.book.portfolio(pid)
    assert p["cash"] == 0 and set(p["holdings"].values()) == {D(0)}


def test_terminate_an_unfunded_portfolio_ends_it_at_once() -> None:
    engine = Engine(usdt_markets())
    pid = engine.create(config(), T0)
    engine.events()
    engine.terminate(pid, T0 + 1)
    assert engine.stage(pid) == Stage.TERMINATED
    assert [e.kind for e in engine.events().records()] == ["terminating", "terminated"]
    with pytest.raises(ConfigError):
        engine.terminate(pid, T0 + 2)


def test_an_inactive_market_is_returned_in_kind_and_the_rest_is_sold() -> None:
    engine, pid = make_active()
    held = engine.book.portfolio(pid)["holdings"]
    sol = engine.markets[2]
    suspended = Market(
        sol.symbol, sol.base, sol.quote, str(sol.step), min_amount=sol.min_amount, min_notional=sol.min_notional,
        taker_fee=sol.taker_fee, maker_fee=sol.maker_fee, active=False,
    )  # fmt: skip
    assert suspended.active is False
    engine.update_markets([*engine.markets[:2], suspended])
    engine.terminate(pid, T0 + HOUR, exit="sell")
    batch = engine.on_tick(T0 + HOUR, P0)
    assert batch.purpose.tolist() == [Purpose.EXIT] * 2
    assert sorted(batch.symbols().tolist()) == ["BTC/USDT", "ETH/USDT"]
    assert engine.stage(pid) == Stage.TERMINATING
    fill_all(engine, batch)
    engine.events()
    engine.on_tick(T0 + HOUR + 1, P0)
    events = engine.events().records()
    returned = {e.asset: (e.amount, e.reason) for e in events if e.kind == "asset_returned"}
    assert returned["SOL"] == (held["SOL"], "market_inactive")
    assert set(returned) == {"SOL", "USDT"}  # BTC and ETH were sold whole
    assert events[-1].kind == "terminated"
    assert engine.stage(pid) == Stage.TERMINATED


# ---------------------------------------------------------------- pause / resume


AUTO_HOURLY = AutoInvest(amount=D("100"), mode=ScheduleMode(every="1h"))


@pytest.mark.parametrize("policy", ["rebalance", "auto_invest", "take_profit"])
def test_a_paused_portfolio_gets_no_orders_of_any_kind(policy: str) -> None:
    funds = FakeFunds({0: D("5000")})
    settings: dict[str, Any] = {"auto_invest": AUTO_HOURLY} if policy == "auto_invest" else {"take_profit": 10.0} if policy == "take_profit" else {}
    engine, pid = make_active(funds=funds, **settings)
    prices = {"rebalance": BTC_UP, "auto_invest": P0, "take_profit": P0 * 1.5}[policy]
    calls = len(funds.calls)
    engine.pause(pid, T0 + 1)
    for k in range(1, 4):
        assert len(engine.on_tick(T0 + k * HOUR, prices)) == 0
    assert engine.stage(pid) == Stage.ACTIVE
    assert [e.kind for e in engine.events().records()] == ["paused"]
    assert len(funds.calls) == calls
    engine.resume(pid, T0 + 4 * HOUR)
    batch = engine.on_tick(T0 + 4 * HOUR, prices)
    assert len(batch) > 0
    want = {"rebalance": Purpose.REBALANCE, "auto_invest": Purpose.INVEST, "take_profit": Purpose.EXIT}[policy]
    assert set(batch.purpose.tolist()) == {want}
    got = [e.kind for e in engine.events().records()]
    assert got[0] == "resumed"
    if policy == "auto_invest":
        assert funds.calls[-1] == ([pid], [1], ["100"])
        assert "auto_invest_executed" in got
    if policy == "take_profit":
        assert "take_profit" in got and engine.stage(pid) == Stage.TERMINATING


# ---------------------------------------------------------------- modify


def test_changing_the_weights_stops_auto_invest() -> None:
    funds = FakeFunds({0: D("5000")})
    engine, pid = make_active(funds=funds, auto_invest=AUTO_HOURLY)
    new = config(assets={"BTC": 40, "ETH": 40, "SOL": 20}, auto_invest=AUTO_HOURLY)
    engine.modify(pid, new, T0 + 1)
    events = engine.events().records()
    assert [(e.kind, e.reason) for e in events] == [("auto_invest_stopped", "composition_changed"), ("modified", None)]
    assert engine.book.portfolio(pid)["targets"] == {"BTC": 0.4, "ETH": 0.4, "SOL": 0.2}
    calls = len(funds.calls)
    batch = engine.on_tick(T0 + 2 * HOUR, P0)  # an auto-invest cycle would be due
    assert Purpose.INVEST not in batch.purpose.tolist()
    assert Purpose.REBALANCE in batch.purpose.tolist()  # to the new weights
    assert "auto_invest_executed" not in kinds(engine.events())
    assert len(funds.calls) == calls


def test_changing_only_the_trigger_keeps_auto_invest() -> None:
    funds = FakeFunds({0: D("5000")})
    engine, pid = make_active(funds=funds, auto_invest=AUTO_HOURLY)
    engine.modify(pid, config(auto_invest=AUTO_HOURLY, trigger=ThresholdTrigger(3.0)), T0 + 1)
    assert kinds(engine.events()) == ["modified"]
    batch = engine.on_tick(T0 + 2 * HOUR, P0)
    assert batch.purpose.tolist() and set(batch.purpose.tolist()) == {Purpose.INVEST}
    assert funds.calls[-1] == ([pid], [1], ["100"])


def test_modify_without_touching_auto_invest_keeps_its_schedule() -> None:
    """Created at T0 with auto-invest every hour: the first cycle is due at
    T0 + 1h. Changing only the threshold in between must not move it."""
    funds = FakeFunds({0: D("5000")})
    engine, pid = make_active(funds=funds, auto_invest=AUTO_HOURLY)
    engine.modify(pid, config(auto_invest=AUTO_HOURLY, trigger=ThresholdTrigger(3.0)), T0 + 1)
    batch = engine.on_tick(T0 + HOUR, P0)
    assert set(batch.purpose.tolist()) == {Purpose.INVEST}
    assert "auto_invest_executed" in kinds(engine.events())


def test_dropping_an_asset_still_held_is_refused() -> None:
    engine, pid = make_active()
    before = everything(engine)
    with pytest.raises(ConfigError) as e:
        engine.modify(pid, config(assets={"BTC": 50, "ETH": 50}), T0 + 1)
    assert e.value.field == "assets[SOL]"
    assert "assets[SOL]" in str(e.value)
    assert_same(before, everything(engine))


def test_modify_while_orders_are_out_is_refused() -> None:
    engine, pid = make_active()
    batch = engine.on_tick(T0 + HOUR, BTC_UP)
    assert len(batch)
    before = everything(engine)
    with pytest.raises(ConfigError) as e:
        engine.modify(pid, config(trigger=ThresholdTrigger(3.0)), T0 + HOUR)
    assert e.value.field == "id"
    assert_same(before, everything(engine))


# ---------------------------------------------------------------- funding in BTC, real data


def _hourly_closes(name: str) -> list[float]:
    with shared("hourly_triangle_2019", name).open() as f:
        rows = [r for r in csv.reader(f) if r and r[0][:1].isdigit()]
    return [float(r[5]) for r in reversed(rows)]  # files are newest first


def test_funding_in_btc_on_real_cross_pairs_and_hours(ethbtc_symbol_info: dict[str, Any]) -> None:
    """ETH/BTC with the real Binance filters of the fixture (step 0.001, min
    notional 0.0001 BTC); LTC/BTC with the same filter set (the fixture holds
    no LTCBTC rules); the real hourly ETH/BTC and LTC/BTC closes of 2019."""

    def cross(base: str) -> Market:
        info = dict(ethbtc_symbol_info, symbol=f"{base}BTC", baseAsset=base)
        return Market.from_ccxt({"symbol": f"{base}/BTC", "base": base, "quote": "BTC", "type": "spot", "spot": True, "taker": 0.001, "info": info})

    markets = [cross("ETH"), cross("LTC")]
    assert [m.step for m in markets] == [D("0.001"), D("0.001")]
    assert markets[0].min_notional == D("0.0001")
    eth, ltc = _hourly_closes("Binance_ETHBTC_1h.csv"), _hourly_closes("Binance_LTCBTC_1h.csv")
    hours = 400
    prices = np.array([eth[:hours], ltc[:hours]]).T
    funds = FakeFunds({0: D("2")})
    engine = Engine(markets, funds=funds)
    assert engine.quote == "BTC"
    pid = engine.create(StrategyConfig(assets={"ETH": 60, "LTC": 40}, investment=D("0.5"), quote="BTC", trigger=ThresholdTrigger(1.0)), T0)
    engine.fund(pid, T0)
    assert funds.calls == [([pid], [0], ["0.5"])] and funds.balances[pid] == D("1.5")
    purposes = []
    for k in range(hours):
        batch = engine.on_tick(T0 + k * HOUR, prices[k])
        for i, amount in enumerate(batch.amounts()):
            a = D(str(amount))
            assert a > 0 and a % D("0.001") == 0, (k, a)
            assert a * price_of(batch, i) >= D("0.0001")
        purposes += batch.purpose.tolist()
        fill_all(engine, batch)
        p = engine.book.portfolio(pid)
        assert p["cash"] >= 0, k
        assert all(v >= 0 for v in p["holdings"].values()), k
    assert engine.stage(pid) == Stage.ACTIVE
    assert purposes.count(Purpose.INVEST) == 2
    n = rebalances(engine, pid)
    print(f"{hours} real hours: {n} rebalances, {len(engine.orders)} orders")
    assert n >= 3 and purposes.count(Purpose.REBALANCE) >= n
    report = engine.accounting([pid])
    assert report["net_invested"].tolist() == ["0.5"]
    assert 0.3 < report["value"][0] < 0.7  # in BTC
    # Kept near the targets: the last tick's weights are within the band.
    p = engine.book.portfolio(pid)
    value = float(p["cash"]) + float(p["holdings"]["ETH"]) * prices[-1, 0] + float(p["holdings"]["LTC"]) * prices[-1, 1]
    assert abs(float(p["holdings"]["ETH"]) * prices[-1, 0] / value - 0.6) < 0.01 + 0.005


# ---------------------------------------------------------------- the store


def test_store_round_trip_is_exact_and_behaves_identically(tmp_path: Path) -> None:
    funds = FakeFunds({0: D("5000"), 1: D("5000")})
    engine = Engine(usdt_markets(), funds=funds)
    a = engine.create(config(), T0)
    b = engine.create(config(assets={"BTC": 30, "ETH": 70}, investment=D("500.5"), auto_invest=AUTO_HOURLY), T0)
    engine.fund([a, b], T0)
    funding = engine.on_tick(T0, P0)
    fill_all(engine, funding)
    batch = engine.on_tick(T0 + HOUR, BTC_UP)  # a rebalances, b auto-invests
    fill_all(engine, batch, rows=range(len(batch) - 1))
    engine.on_rejects([Reject(batch.client_order_id[-1].decode())])
    path = tmp_path / "rebal.sqlite"
    store = Store(path)
    store.save(engine, step=1, phase="done", events=engine.events())

    loaded = Store(path).load(usdt_markets(), funds=funds)
    assert loaded is not None and loaded.funds is funds
    assert loaded.snapshot() == engine.snapshot()
    assert loaded.configs == engine.configs

    prices = P0 * np.array([1.0, 1.6, 0.8])
    now = T0 + 3 * HOUR
    one, two = engine.on_tick(now, prices), loaded.on_tick(now, prices)
    assert len(one) > 0
    for name in ("client_order_id", "side", "purpose", "portfolio_id", "asset", "leg"):
        np.testing.assert_array_equal(getattr(two, name), getattr(one, name))
    assert two.amounts().tolist() == one.amounts().tolist()
    assert loaded.snapshot() == engine.snapshot()
    assert kinds(loaded.events()) == kinds(engine.events())
    store.save(engine, step=3, phase="sent")
    fill_all(engine, one)
    fill_all(loaded, two)
    assert loaded.snapshot() == engine.snapshot()

    # The orders table: every client id once, with its status. In memory
    # the Engine keeps only what is open or not yet saved.
    rows = sqlite3.connect(path).execute("SELECT client_order_id, status FROM orders").fetchall()
    saved = dict(rows)
    assert len(saved) == len(rows)
    sent = [c.decode() for b_ in (batch, one) for c in b_.client_order_id]
    assert len(sent) == len(set(sent)) and set(saved) == set(sent)
    # Closed before any store kept the history: dropped at the next tick, never saved.
    assert not {c.decode() for c in funding.client_order_id} & set(saved)
    assert {saved[c.decode()] for c in batch.client_order_id[:-1]} == {"filled"}
    assert saved[batch.client_order_id[-1].decode()] == "rejected"
    # Saved before the last fills: the last tick's orders are open in the store.
    assert {saved[c.decode()] for c in one.client_order_id} == {"open"}
    t = engine.orders
    in_memory = set(t.client_order_ids(np.arange(len(t))))
    assert in_memory == {c.decode() for c in one.client_order_id}


# ---------------------------------------------------------------- bad configs


BAD_CONFIGS = {
    "wrong quote": (config(quote="EUR"), "quote"),
    "asset without a market": (config(assets={"BTC": 50, "DOGE": 50}), "assets[DOGE]"),
    "weights not summing to 100": (config(assets={"BTC": 50, "ETH": 30, "SOL": 10}), "assets"),
    "band destination with a calendar trigger": (config(trigger=CalendarTrigger(every="1d"), destination="band_edge"), "destination"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_a_bad_config_is_refused_and_nothing_is_added(case: str) -> None:
    engine, pid = make_active()
    bad, field = BAD_CONFIGS[case]
    count, rows = len(engine.book), engine.state.length
    with pytest.raises(ConfigError) as e:
        engine.create(bad, T0 + 1)
    assert e.value.field is not None
    assert e.value.field.removeprefix("configs[0].") == field
    assert len(engine.book) == count and engine.state.length == rows
    assert list(engine.configs) == [pid]
    assert engine.pending_events() == 0


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_create_many_names_the_bad_config_by_index(case: str) -> None:
    """Among many configs, the error says which one: every field of a bad
    config is prefixed alike, whether the Engine or the config rules found it."""
    engine = Engine(usdt_markets())
    bad, field = BAD_CONFIGS[case]
    with pytest.raises(ConfigError) as e:
        engine.create_many([config(), bad, config()], T0)
    assert e.value.field == f"configs[1].{field}"
    assert len(engine.book) == 0 and engine.state.length == 0 and not engine.configs
    assert engine.pending_events() == 0


def test_a_good_config_after_a_bad_one_gets_the_next_id() -> None:
    engine = Engine(usdt_markets())
    with pytest.raises(ConfigError):
        engine.create(config(quote="EUR"), T0)
    assert engine.create(config(), T0) == 0
    assert engine.create(config(), T0) == 1


def test_snapshot_is_plain_bytes() -> None:
    engine, _ = make_active()
    blob = engine.snapshot()
    assert isinstance(blob, bytes) and blob == engine.snapshot()
    restored = Engine.restore(blob, usdt_markets(), dict(engine.configs))
    assert restored.snapshot() == blob
