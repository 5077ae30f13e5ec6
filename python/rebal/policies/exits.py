"""Take-profit, stop-loss and trailing take-profit, vectorized over portfolios.

Profit is (value − net invested) / net invested (SPEC §1). A trailing
take-profit arms once profit reaches `arm` and exits when the value falls
`drop` below its highest point since it armed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from rebal.config import StrategyConfig
from rebal.events import EventKind, Reason

__all__ = ["EXIT_COLUMNS", "EVENTS", "TOLERANCE", "columns", "check", "profit", "track_drawdown"]

TOLERANCE = 1e-9
"""Values are floats of exact amounts; a profit this close to a level counts
as on it, so +15 % fires a 15 % take-profit although the floats say
14.999999999999986 % (the same slack as the rebalancing band's)."""

EXIT_COLUMNS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "take_profit": (np.float64, ()),  # fraction; NaN = none
    "stop_loss": (np.float64, ()),
    "trail_arm": (np.float64, ()),
    "trail_drop": (np.float64, ()),
    "trail_armed": (np.bool_, ()),
    "trail_peak": (np.float64, ()),  # highest value since the trailing take-profit armed
}

EVENTS = {
    Reason.TAKE_PROFIT: EventKind.TAKE_PROFIT,
    Reason.STOP_LOSS: EventKind.STOP_LOSS,
    Reason.TRAILING_TAKE_PROFIT: EventKind.TRAILING_TAKE_PROFIT,
}


def columns(configs: Sequence[StrategyConfig]) -> dict[str, np.ndarray]:
    def percent(values: list[float | None]) -> npt.NDArray[np.float64]:
        return np.array([np.nan if v is None else v / 100 for v in values], np.float64)

    trailing = [c.trailing_take_profit for c in configs]
    n = len(configs)
    return {
        "take_profit": percent([c.take_profit for c in configs]),
        "stop_loss": percent([c.stop_loss for c in configs]),
        "trail_arm": percent([t.arm if t else None for t in trailing]),
        "trail_drop": percent([t.drop if t else None for t in trailing]),
        "trail_armed": np.zeros(n, bool),
        "trail_peak": np.zeros(n, np.float64),
    }


def profit(value: npt.NDArray[np.float64], net_invested: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """(value − net invested) / net invested; NaN where nothing is invested."""
    with np.errstate(divide="ignore", invalid="ignore"):
        gain: npt.NDArray[np.float64] = value / net_invested - 1
    gain[net_invested <= 0] = np.nan
    return gain


def check(s: Any, value: npt.NDArray[np.float64], live: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """The exit each `live` portfolio's value calls for (a `Reason` code,
    NONE for most). Arms trailing take-profits and tracks their peaks in `s`.
    Comparisons with NaN (no such setting, nothing invested) are False."""
    gain = profit(value, s["net_invested_float"])
    reason = np.zeros(len(value), np.uint8)
    with np.errstate(invalid="ignore"):
        gain += TOLERANCE  # levels are reached from below: ≥ level − tolerance
        arming = live & (gain >= s["trail_arm"])
        arming &= ~s["trail_armed"]
        if arming.any():
            s["trail_armed"][arming] = True
            s["trail_peak"][arming] = value[arming]
        armed = np.flatnonzero(live & s["trail_armed"])
        if len(armed):
            peak = np.maximum(s["trail_peak"][armed], value[armed])
            s["trail_peak"][armed] = peak
            fallen = value[armed] <= peak * (1 - s["trail_drop"][armed]) * (1 + TOLERANCE)
            reason[armed[fallen]] = Reason.TRAILING_TAKE_PROFIT
        reason[live & (gain >= s["take_profit"])] = Reason.TAKE_PROFIT
        gain += s["stop_loss"] - 2 * TOLERANCE  # gain ≤ −stop_loss + tolerance
        reason[live & (gain <= 0)] = Reason.STOP_LOSS
    return reason


def track_drawdown(s: Any, mask: npt.NDArray[np.bool_]) -> None:
    """Max drawdown of value per unit of net invested, so new money is not a
    gain and a withdrawal is not a loss. NaN (unmasked, nothing invested) is
    skipped by fmax."""
    with np.errstate(divide="ignore", invalid="ignore"):
        multiple = s["value"] / s["net_invested_float"]
    multiple[~mask] = np.nan
    peak = s["peak_value"]
    np.fmax(peak, multiple, out=peak)
    with np.errstate(divide="ignore", invalid="ignore"):
        multiple /= peak
    np.subtract(1.0, multiple, out=multiple)
    np.fmax(s["max_drawdown"], multiple, out=s["max_drawdown"])
