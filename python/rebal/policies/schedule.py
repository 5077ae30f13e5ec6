"""Auto-invest schedules over many portfolios, as columns.

`schedule_columns` turns one `ScheduleMode` (or None) per portfolio into
columns once; `next_run` then gives every portfolio's next run time in one
numpy pass, without a Python loop over portfolios. Times are Unix epoch
milliseconds, UTC.

    >>> cols = schedule_columns([ScheduleMode(monthly=31, at="09:30"), None])
    >>> next_run(**cols, after_ms=1_709_251_200_000, anchor_ms=0).tolist()  # 2024-03-01T00:00Z
    [1711877400000, 9223372036854775807]

The first is 2024-03-31T09:30Z; a portfolio without a schedule never runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from rebal.config import ScheduleMode, _schedule_parts
from rebal.exceptions import ConfigError

__all__ = [
    "SCHEDULE_NONE",
    "SCHEDULE_EVERY",
    "SCHEDULE_WEEKLY",
    "SCHEDULE_MONTHLY",
    "NEVER",
    "schedule_columns",
    "next_run",
]

SCHEDULE_NONE = 0
"""No schedule: the portfolio never runs."""
SCHEDULE_EVERY = 1
"""At anchor + k·every_ms, k = 1, 2, … (the anchor's phase is kept)."""
SCHEDULE_WEEKLY = 2
"""Every week on `weekday` (0 = Monday) at `minute` of the day, UTC."""
SCHEDULE_MONTHLY = 3
"""Every month on `day` (past the month's end: its last day) at `minute`, UTC."""
NEVER = np.iinfo(np.int64).max
"""The next run of a portfolio without a schedule."""

_KINDS = {"every": SCHEDULE_EVERY, "weekly": SCHEDULE_WEEKLY, "monthly": SCHEDULE_MONTHLY}
_MINUTE_MS = 60_000
_DAY_MS = 86_400_000
_WEEK_MS = 7 * _DAY_MS
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (0 = Monday)

Int64s = npt.NDArray[np.int64]


def schedule_columns(modes: Sequence[ScheduleMode | None]) -> dict[str, np.ndarray]:
    """One row per portfolio: kind (uint8, SCHEDULE_*), every_ms (int64),
    weekday (int8, 0 = Monday), day (int8, 1–31), minute (int16, minute of
    the day). Fields a kind does not use are 0. Each schedule is checked; a
    bad one is a `ConfigError` naming ``modes[i]``."""
    n = len(modes)
    kind = np.zeros(n, np.uint8)
    every_ms = np.zeros(n, np.int64)
    weekday = np.zeros(n, np.int8)
    day = np.zeros(n, np.int8)
    minute = np.zeros(n, np.int16)
    for i, mode in enumerate(modes):  # once per configuration, not per tick
        if mode is None:
            continue
        if not isinstance(mode, ScheduleMode):
            raise ConfigError(f"modes[{i}]: a ScheduleMode or None (got {mode!r})", field=f"modes[{i}]", value=mode)
        which, kind_every, kind_weekday, kind_day, kind_minute = _schedule_parts(mode, f"modes[{i}]")
        kind[i] = _KINDS[which]
        every_ms[i] = kind_every
        weekday[i] = kind_weekday
        day[i] = kind_day
        minute[i] = kind_minute
    return {"kind": kind, "every_ms": every_ms, "weekday": weekday, "day": day, "minute": minute}


def next_run(
    kind: npt.ArrayLike,
    every_ms: npt.ArrayLike,
    weekday: npt.ArrayLike,
    day: npt.ArrayLike,
    minute: npt.ArrayLike,
    after_ms: npt.ArrayLike,
    anchor_ms: npt.ArrayLike,
) -> Int64s:
    """The first run strictly after `after_ms`, per portfolio (int64 ms).

    Every argument is an array with one value per portfolio, or a scalar
    broadcast to all. `anchor_ms` is the phase of SCHEDULE_EVERY (typically
    when auto-invest started); the others ignore it. SCHEDULE_NONE gives
    `NEVER` (int64 max). Values a row's kind uses are checked: every_ms > 0,
    weekday 0–6, day 1–31, minute 0–1439; a bad one is a `ConfigError`."""
    columns = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.int64) for v in (kind, every_ms, weekday, day, minute, after_ms, anchor_ms))
    )
    k, every, wday, mday, mins, after, anchor = columns  # read-only views; shape () for all scalars
    _check(k, every, wday, mday, mins)
    out = np.full(k.shape, NEVER, np.int64)

    rows = k == SCHEDULE_EVERY
    if rows.any():
        e, start, a = every[rows], anchor[rows], after[rows]
        steps = np.maximum((a - start) // e + 1, 1)  # floor division: before the anchor too
        out[rows] = start + steps * e

    rows = k == SCHEDULE_WEEKLY
    if rows.any():
        a = after[rows]
        days = a // _DAY_MS
        ahead = (wday[rows] - (days + _EPOCH_WEEKDAY)) % 7
        run = (days + ahead) * _DAY_MS + mins[rows] * _MINUTE_MS
        out[rows] = np.where(run > a, run, run + _WEEK_MS)

    rows = k == SCHEDULE_MONTHLY
    if rows.any():
        a = after[rows]
        month = a.astype("datetime64[ms]").astype("datetime64[M]")  # floors, before 1970 too
        this = _monthly_run(month, mday[rows], mins[rows])
        out[rows] = np.where(this > a, this, _monthly_run(month + 1, mday[rows], mins[rows]))
    return out


def _monthly_run(month: np.ndarray, day: Int64s, minute: Int64s) -> Int64s:
    """The run in `month` (datetime64[M]) on `day`, clamped to the month's last day."""
    first = month.astype("datetime64[D]").astype(np.int64)  # days since the epoch
    length = (month + 1).astype("datetime64[D]").astype(np.int64) - first
    result: Int64s = (first + np.minimum(day, length) - 1) * _DAY_MS + minute * _MINUTE_MS
    return result


def _check(kind: Int64s, every: Int64s, weekday: Int64s, day: Int64s, minute: Int64s) -> None:
    checks = (
        ("kind", kind, (kind < SCHEDULE_NONE) | (kind > SCHEDULE_MONTHLY)),
        ("every_ms", every, (kind == SCHEDULE_EVERY) & (every <= 0)),
        ("weekday", weekday, (kind == SCHEDULE_WEEKLY) & ((weekday < 0) | (weekday > 6))),
        ("day", day, (kind == SCHEDULE_MONTHLY) & ((day < 1) | (day > 31))),
        ("minute", minute, ((kind == SCHEDULE_WEEKLY) | (kind == SCHEDULE_MONTHLY)) & ((minute < 0) | (minute >= 1440))),
    )
    for name, values, bad in checks:
        if bad.any():
            i = int(np.flatnonzero(bad.ravel())[0])
            value = int(values.ravel()[i])
            raise ConfigError(f"{name}[{i}]: not valid for schedule kind {int(kind.ravel()[i])} (got {value})", field=f"{name}[{i}]", value=value)
