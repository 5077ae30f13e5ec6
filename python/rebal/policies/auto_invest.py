"""Auto-invest (DCA), vectorized over portfolios: which cycles are due and
which would pass a limit. Drawing the money and buying with it is the
Engine's (`Engine._auto_invest`).

Modes (SPEC §1): `drawdown` — floating loss ≥ x % and at least the minimum
interval since the last cycle; `schedule` — every N hours/days, weekly or
monthly at HH:MM UTC (`rebal.policies.schedule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from rebal import _rebal
from rebal.columns import words
from rebal.config import DrawdownMode, ScheduleMode, StrategyConfig, parse_duration
from rebal.policies.schedule import next_run, schedule_columns

__all__ = ["DCA_COLUMNS", "DCA_OFF", "DCA_ON", "DCA_PAUSED", "DCA_STOPPED", "columns", "due", "next_ready", "limits", "ready", "set_level", "TOLERANCE"]

DCA_OFF, DCA_ON, DCA_PAUSED, DCA_STOPPED = 0, 1, 2, 3
MODE_NONE, MODE_DRAWDOWN, MODE_SCHEDULE = 0, 1, 2
NEVER = np.iinfo(np.int64).min
TOLERANCE = 1e-9
"""Slack on limit checks done in floats of exact amounts (far below a cent)."""

DCA_COLUMNS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "dca_state": (np.uint8, ()),
    "dca_mode": (np.uint8, ()),
    "dca_amount": (np.int64, (2,)),  # exact, per cycle
    "dca_amount_float": (np.float64, ()),
    "dca_cap": (np.float64, ()),  # total invested at which it pauses; inf = none
    "dca_loss": (np.float64, ()),  # drawdown mode: floating loss (fraction)
    "dca_min_interval_ms": (np.int64, ()),
    "dca_last_ms": (np.int64, ()),  # for people: the rule reads dca_next_ms
    "dca_next_ms": (np.int64, ()),  # earliest time of the next cycle
    "dca_value": (np.float64, ()),  # a cycle runs at or below this value (see set_level)
    "dca_anchor_ms": (np.int64, ()),
    "dca_cycles": (np.int64, ()),
    "sched_kind": (np.uint8, ()),
    "sched_every_ms": (np.int64, ()),
    "sched_weekday": (np.int8, ()),
    "sched_day": (np.int8, ()),
    "sched_minute": (np.int16, ()),
}


def columns(configs: Sequence[StrategyConfig], now_ms: int) -> dict[str, np.ndarray]:
    n = len(configs)
    plans = [c.auto_invest for c in configs]
    modes = [a.mode if a else None for a in plans]
    out: dict[str, np.ndarray] = {
        "dca_state": np.array([DCA_ON if a else DCA_OFF for a in plans], np.uint8),
        "dca_mode": np.array([MODE_DRAWDOWN if isinstance(m, DrawdownMode) else MODE_SCHEDULE if m else MODE_NONE for m in modes], np.uint8),
        "dca_amount": words([str(a.amount) if a else "0" for a in plans], "auto_invest.amount"),
        "dca_cap": np.array([float(a.cap) if a and a.cap is not None else np.inf for a in plans], np.float64),
        "dca_loss": np.array([m.loss / 100 if isinstance(m, DrawdownMode) else np.nan for m in modes], np.float64),
        "dca_min_interval_ms": np.array(
            [parse_duration(m.min_interval, "auto_invest.mode.min_interval") if isinstance(m, DrawdownMode) else 0 for m in modes], np.int64
        ),
        "dca_last_ms": np.full(n, NEVER, np.int64),
        "dca_anchor_ms": np.full(n, now_ms, np.int64),
        "dca_cycles": np.zeros(n, np.int64),
    }
    out["dca_amount_float"] = np.array([float(a.amount) if a else 0.0 for a in plans], np.float64)
    sched = schedule_columns([m if isinstance(m, ScheduleMode) else None for m in modes])
    out.update({f"sched_{name}": sched[name] for name in ("kind", "every_ms", "weekday", "day", "minute")})
    scheduled = next_run(sched["kind"], sched["every_ms"], sched["weekday"], sched["day"], sched["minute"], now_ms, out["dca_anchor_ms"])
    # A drawdown cycle may run from the start; a schedule at its first run.
    out["dca_next_ms"] = np.where(out["dca_mode"] == MODE_DRAWDOWN, now_ms, scheduled)
    # Nothing invested yet: a drawdown level of 0 (set again at funding).
    out["dca_value"] = np.where(out["dca_mode"] == MODE_SCHEDULE, np.inf, np.where(out["dca_mode"] == MODE_DRAWDOWN, 0.0, np.nan))
    return out


def set_level(s: Any, slots: npt.NDArray[np.int64]) -> None:
    """`dca_value`: the value at or below which a cycle may run — any value
    for a schedule (+inf), net invested × (1 − loss) for a drawdown, never
    (NaN) without auto-invest. Set again whenever money comes in."""
    net = s["net_invested_float"][slots]
    drawdown = net * (1 - s["dca_loss"][slots] + TOLERANCE)  # NaN without a drawdown rule
    s["dca_value"][slots] = np.where(s["dca_mode"][slots] == MODE_SCHEDULE, np.inf, drawdown)


def due(s: Any, now_ms: int, value: npt.NDArray[np.float64], status: npt.NDArray[np.uint8], locked: npt.NDArray[np.bool_], running: int) -> npt.NDArray[np.int64]:
    """Slots whose cycle runs at `now_ms`: auto-invest on, past `dca_next_ms`
    (a schedule's next run, or the end of a drawdown cycle's minimum
    interval), in the stage `running`, free (not `locked`), scanned and not
    rebalancing on this tick (by its scan `status`), and at or below
    `dca_value` (any value for a schedule; the drawdown level for a drawdown
    rule; a NaN level, no auto-invest, is never reached). One Rust pass over
    the columns (the benchmark's hourly tick: 209,000 of the 400,000 with
    auto-invest on are past their time; drawdown cycles wait on the value)."""
    return _rebal.cycles_due(now_ms, s["dca_next_ms"], s["dca_state"], DCA_ON, s["stage"], running, status, locked, value, s["dca_value"])


def next_ready(s: Any, slots: npt.NDArray[np.int64], now_ms: int) -> npt.NDArray[np.int64]:
    """After a cycle at `now_ms`: a schedule's next run, or the end of a drawdown cycle's minimum interval."""
    scheduled = next_run(s["sched_kind"][slots], s["sched_every_ms"][slots], s["sched_weekday"][slots], s["sched_day"][slots], s["sched_minute"][slots], now_ms, s["dca_anchor_ms"][slots])
    result: npt.NDArray[np.int64] = np.where(s["dca_mode"][slots] == MODE_DRAWDOWN, now_ms + s["dca_min_interval_ms"][slots], scheduled)
    return result


def limits(s: Any, due: npt.NDArray[np.int64], max_investment: float) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(would pass the host's maximum investment, would pass the cap) per due portfolio."""
    after = s["net_invested_float"][due] + s["dca_amount_float"][due]
    return after > max_investment + TOLERANCE, after > s["dca_cap"][due] + TOLERANCE
