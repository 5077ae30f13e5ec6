"""The numbers a user looks at (SPEC §3), per portfolio, as columns.

Valued at the Engine's last tick; a terminated portfolio as it ended.
Profit is (value − net invested) / net invested; the hold benchmark is what
the same buys (initial and auto-invest) would be worth had they never been
rebalanced — "rebalancing vs holding".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from rebal.columns import decimal_strings
from rebal.engine_state import Stage
from rebal.policies.exits import profit

if TYPE_CHECKING:
    from rebal.engine import Engine

__all__ = ["report", "YEAR_MS"]

YEAR_MS = 365.25 * 86_400_000


def report(engine: Engine, slots: npt.NDArray[np.int64]) -> dict[str, np.ndarray]:
    s = engine.state
    ended = s["stage"][slots] == Stage.TERMINATED  # as they ended: everything was handed back then
    value = np.where(ended, s["final_value"][slots], current_value(engine, slots))
    net = s["net_invested_float"][slots]
    gain = profit(value, net)
    hold = np.where(ended, s["final_hold_value"][slots], hold_value(engine, slots))
    now = engine.now_ms if engine.now_ms is not None else 0
    years = (np.where(ended, s["ended_ms"][slots], now) - s["created_ms"][slots]) / YEAR_MS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # Annualising a few days' return says nothing: shorter than a week is NaN.
        annualised = np.where(years >= 7 / 365.25, np.power(np.maximum(1 + gain, 0.0), 1 / np.where(years > 0, years, 1.0)) - 1, np.nan)
        hold_gain = profit(hold, net)
    return {
        "portfolio_id": engine.book.ids[slots],
        "stage": s["stage"][slots],
        "net_invested": decimal_strings(np.ascontiguousarray(s["net_invested"][slots])),
        "value": value,
        "profit": value - net,
        "profit_pct": 100 * gain,
        "annualised_return_pct": 100 * annualised,
        "fees_paid": s["fees_paid"][slots].copy(),
        "turnover": s["turnover"][slots].copy(),
        "rebalances": s["rebalances"][slots].copy(),
        "max_drawdown_pct": 100 * s["max_drawdown"][slots],
        "hold_value": hold,
        "hold_profit_pct": 100 * hold_gain,
        "vs_hold_pct": 100 * (gain - hold_gain),
    }


def current_value(engine: Engine, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Cash and holdings now (after the fills and new money since the tick) at the last tick's prices."""
    if engine.prices is None:
        return np.full(len(slots), np.nan)
    return engine._values_of(slots, engine.prices)


def hold_value(engine: Engine, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Value of the hold benchmark at the last tick's prices."""
    if engine.prices is None:
        return np.full(len(slots), np.nan)
    return engine._hold_values_of(slots, engine.prices)
