"""Backtests and sweeps: the Engine driven by historical ticks against a
simulated venue.

There is no second implementation of the rules here: each config is a
portfolio in one Engine, funded at the first tick and advanced tick by tick
(`Engine.on_tick`); the venue fills every order in full at the tick's price
moved against it by the slippage, and charges the fee (`Engine.on_full_fills`).
A sweep is the same run with thousands of portfolios at once.

The planner budgets for fee and slippage together, so a plan never counts
on money the venue will not pay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from rebal import _rebal
from rebal.backtest.data import PriceData
from rebal.backtest.metrics import Stream
from rebal.batch import SIDE_BUY
from rebal.config import Limits, StrategyConfig, fee_budget
from rebal.engine import Engine
from rebal.market import Market
from rebal.orders import Purpose

__all__ = ["Run", "run", "markets_for"]


@dataclass
class Run:
    """What a run of N configs over T ticks produced.

    Per config: `metrics` and `hold_metrics` (total / annualised return,
    volatility, max drawdown, Sharpe, final value), fees paid, turnover and
    rebalance counts. With `record`, the whole series too: `equity` and
    `hold` as (T, N), `weights` as (T, N, A) (each config's assets in its
    own order), and `rebalanced` as (T, N) booleans."""

    configs: list[StrategyConfig]
    data: PriceData
    metrics: dict[str, npt.NDArray[np.float64]]
    hold_metrics: dict[str, npt.NDArray[np.float64]]
    fees_paid: npt.NDArray[np.float64]
    turnover: npt.NDArray[np.float64]
    rebalances: npt.NDArray[np.int64]
    net_invested: npt.NDArray[np.float64]
    equity: npt.NDArray[np.float64] | None = None
    hold: npt.NDArray[np.float64] | None = None
    weights: npt.NDArray[np.float64] | None = None
    rebalanced: npt.NDArray[np.bool_] | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def markets_for(data: PriceData, *, fee: float = 0.001, min_notional: str = "5") -> list[Market]:
    """Binance-like rules for the data's assets: the amount step is the
    power of ten that keeps one lot worth at most 1 quote unit at the
    highest price in the data, the minimum order 5 quote units."""
    out = []
    for a, asset in enumerate(data.assets):
        top = float(np.max(data.close[:, a]))
        exponent = int(np.floor(np.log10(1.0 / top))) if top > 1 else 0
        step = Decimal(1).scaleb(min(exponent, 0))
        out.append(Market(f"{asset}/{data.quote}", asset, data.quote, step, min_amount=step, min_notional=min_notional, taker_fee=fee, maker_fee=fee))
    return out


def run(
    configs: Sequence[StrategyConfig],
    data: PriceData,
    *,
    fee: float | Sequence[float] = 0.001,
    slippage_bps: float = 0.0,
    markets: Sequence[Market] | None = None,
    record: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Run:
    """Runs every config over `data` in one Engine. `fee`: the venue's fee
    rate, one for all or one per config; `slippage_bps`: fills move this
    far against every order. `markets` default to `markets_for(data)`."""
    n, ticks = len(configs), len(data.times_ms)
    if n == 0 or ticks < 2:
        raise ValueError("a backtest needs at least one config and two ticks")
    _rebal.join_pool()  # each tick's Rust starts at once instead of waking the pool
    fees = np.broadcast_to(np.asarray(fee, dtype=np.float64), (n,)).copy()
    slip = slippage_bps / 10_000
    markets = list(markets) if markets is not None else markets_for(data, fee=float(fees.max()))
    budget = fee_budget(fees, slip)  # a plan never counts on money the slipped fills will not pay
    planned = [msgspec.structs.replace(c, fee_rate=float(b)) for c, b in zip(configs, budget)]
    widest = max(len(c.assets) for c in configs)
    biggest = max(c.investment for c in configs)
    limits = Limits(min_assets=1, max_assets=max(widest, 2), max_investment=max(biggest, Decimal(1)) * 10**6)
    engine = Engine(markets, limits=limits, events=False)  # a backtest reads no events: none are made
    ids = engine.create_many(planned, int(data.times_ms[0]))
    engine.fund(ids, int(data.times_ms[0]))
    slots = engine.book.slots(ids)

    stream, hold_stream = Stream(n), Stream(n)
    kept = ticks if record else 0  # the series, or nothing
    equity, hold = np.zeros((kept, n)), np.zeros((kept, n))
    weights, rebalanced = np.zeros((kept, n, widest)), np.zeros((kept, n), bool)
    # The configs' slots are the Book's, in order, unless the Engine holds others too:
    # then they are picked out each tick, else whole columns are read as they are.
    every = slice(None) if np.array_equal(slots, np.arange(len(engine.book.ids))) else slots
    one_fee = bool((fees == fees[0]).all())
    net_before = engine.state["net_invested_float"][every].copy()
    added = engine.money_added
    fee_column = np.full(0, fees[0])  # the one fee rate, one per order: made once, not each tick
    columns = engine.book._columns
    for k in range(ticks):
        now, prices = int(data.times_ms[k]), np.ascontiguousarray(data.close[k])
        batch = engine.on_tick(now, prices)
        if len(batch):
            fill_prices = batch.price if slip == 0 else batch.price * np.where(batch.side == SIDE_BUY, 1 + slip, 1 - slip)
            if one_fee and len(fee_column) < len(batch):
                fee_column = np.full(2 * len(batch), fees[0])
            engine.on_full_fills(batch, fill_prices, fee_column[: len(batch)] if one_fee else fees[np.searchsorted(ids, batch.portfolio_id)])
        value = _rebal.values(columns(), prices)[every]
        hold_value = engine._hold_values_of(every, prices)
        inflow = None  # no money came in since the last tick: no inflow (the same as zeros)
        if engine.money_added != added:
            added = engine.money_added
            net = engine.state["net_invested_float"][every].copy()
            inflow = net - net_before
            net_before = net
        stream.add(value, inflow)
        hold_stream.add(hold_value, inflow)
        if record:
            equity[k], hold[k] = value, hold_value
            weights[k] = _weights(engine, slots, prices, value, widest)
            planned_now = batch.portfolio[batch.purpose == Purpose.REBALANCE]
            rebalanced[k] = np.isin(slots, planned_now)
        if progress is not None:
            progress(k + 1, ticks)

    duration, interval = float(data.times_ms[-1] - data.times_ms[0]), float(data.interval_ms)
    report = engine.accounting(ids)
    return Run(
        configs=list(configs),
        data=data,
        metrics=stream.result(duration, interval),
        hold_metrics=hold_stream.result(duration, interval),
        fees_paid=report["fees_paid"],
        turnover=report["turnover"],
        rebalances=report["rebalances"],
        net_invested=engine.state["net_invested_float"][slots].copy(),
        equity=equity if record else None,
        hold=hold if record else None,
        weights=weights if record else None,
        rebalanced=rebalanced if record else None,
        settings={"fee": fees, "slippage_bps": slippage_bps},
    )


def _weights(engine: Engine, slots: npt.NDArray[np.int64], prices: npt.NDArray[np.float64], value: npt.NDArray[np.float64], width: int) -> npt.NDArray[np.float64]:
    """Each portfolio's asset weights (its own asset order), as (N, width)."""
    p, h = engine.book.columns(), engine.book.holding_columns()
    out = np.zeros((len(slots), width))
    for j, slot in enumerate(slots.tolist()):
        rows = slice(int(p["start"][slot]), int(p["stop"][slot]))
        held = h["amount_float"][rows] * prices[h["asset"][rows]]
        out[j, : len(held)] = held / value[j] if value[j] > 0 else 0.0
    return out
