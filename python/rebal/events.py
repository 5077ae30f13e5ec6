"""What happened to portfolios, as events the host stores or shows.

A tick can touch a million portfolios, so events are kept as columns (one
row per event: kind, portfolio id, time, asset, exact amount, a value and a
reason code) and become `Event` Structs only when asked (`Events.records`).
"""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from rebal.columns import decimals

__all__ = ["EventKind", "Reason", "Event", "Events", "EventLog", "QUOTE_ASSET", "NO_ASSET"]

QUOTE_ASSET = -1
"""`asset` of an event about the quote asset (cash) rather than a coin."""
NO_ASSET = -2
"""`asset` of an event about no asset in particular."""


class EventKind(enum.IntEnum):
    CREATED = 0
    FUNDED = 1
    """The initial investment arrived and is being bought (`amount`)."""
    ACTIVE = 2
    """The initial buy is done: the portfolio is rebalanced from now on."""
    REBALANCE_STARTED = 3
    """Orders are out (`value` = number of orders)."""
    REBALANCE_DONE = 4
    ORDER_REJECTED = 5
    """`value` = the order's leg; the next tick re-plans."""
    AUTO_INVEST_EXECUTED = 6
    """`amount` drawn from the spot balance and added to the portfolio."""
    AUTO_INVEST_PAUSED = 7
    AUTO_INVEST_STOPPED = 8
    TAKE_PROFIT = 9
    """`value` = profit (fraction) at the exit."""
    STOP_LOSS = 10
    TRAILING_TAKE_PROFIT = 11
    TERMINATING = 12
    TERMINATED = 13
    ASSET_RETURNED = 14
    """`asset` (or QUOTE_ASSET for cash) and `amount` handed back to the user."""
    PAUSED = 15
    RESUMED = 16
    MODIFIED = 17


class Reason(enum.IntEnum):
    NONE = 0
    CAP_REACHED = 1
    """Auto-invest paused: total invested reached the cap."""
    COMPOSITION_CHANGED = 2
    INSUFFICIENT_BALANCE = 3
    MAX_INVESTMENT = 4
    """Auto-invest stopped: the next cycle would pass the host's maximum investment."""
    USER = 5
    TAKE_PROFIT = 6
    STOP_LOSS = 7
    TRAILING_TAKE_PROFIT = 8
    MARKET_INACTIVE = 9
    """An asset returned in kind because its market takes no orders."""
    BELOW_MINIMUM = 10
    """An asset returned in kind because it is below the market's minimum (dust)."""
    EXIT_RETURN = 11
    """Returned in kind because the exit mode is `return`."""
    REJECTED = 12
    CANCELLED = 13
    CASH = 14
    """The portfolio's cash, handed back at termination."""
    SELL_REFUSED = 15
    """Returned in kind: the venue refused its exit sells again and again."""


class Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One event, for people, logs and small hosts."""

    kind: str
    portfolio_id: int
    time_ms: int
    asset: str | None = None
    amount: Decimal | None = None
    value: float | None = None
    reason: str | None = None


EVENT_COLUMNS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "kind": (np.uint8, ()),
    "portfolio_id": (np.uint64, ()),
    "time_ms": (np.int64, ()),
    "asset": (np.int32, ()),
    "amount": (np.int64, (2,)),
    "value": (np.float64, ()),
    "reason": (np.uint8, ()),
}


class Events:
    """A run of events as read-only numpy columns."""

    def __init__(self, columns: dict[str, np.ndarray], asset_names: list[str], quote: str) -> None:
        self.columns = columns
        self._names = asset_names
        self._quote = quote

    def __len__(self) -> int:
        return len(self.columns["kind"])

    def count(self, kind: EventKind) -> int:
        return int((self.columns["kind"] == kind).sum())

    def records(self) -> list[Event]:
        c = self.columns
        amounts = decimals(c["amount"])
        out = []
        for k, pid, t, a, amount, value, reason in zip(
            c["kind"].tolist(), c["portfolio_id"].tolist(), c["time_ms"].tolist(), c["asset"].tolist(),
            amounts, c["value"].tolist(), c["reason"].tolist(),
        ):  # fmt: skip
            kind = EventKind(k)
            out.append(
                Event(
                    kind=kind.name.lower(),
                    portfolio_id=pid,
                    time_ms=t,
                    asset=None if a == NO_ASSET else (self._quote if a == QUOTE_ASSET else self._names[a]),
                    amount=amount if kind in _WITH_AMOUNT else None,
                    value=None if np.isnan(value) else value,
                    reason=None if reason == Reason.NONE else Reason(reason).name.lower(),
                )
            )
        return out


_WITH_AMOUNT = {EventKind.FUNDED, EventKind.AUTO_INVEST_EXECUTED, EventKind.ASSET_RETURNED}


def _column(value: npt.ArrayLike, dtype: Any, n: int) -> np.ndarray:
    """One value per event: the n values given, or one for all (kept once,
    repeated when the log is read)."""
    array = np.asarray(int(value) if isinstance(value, enum.IntEnum) else value, dtype)  # an IntEnum converts slowly
    if array.ndim == 0 or array.shape == (n,):
        return array
    return np.broadcast_to(array, (n,))


_NO_AMOUNT = np.zeros(2, np.int64)
"""The amount of an event without one, for a whole chunk."""
_NO_AMOUNT.flags.writeable = False


class EventLog:
    """Events appended by the Engine, drained by the host. Kept as the
    chunks they were added in (no copy per add, a value the same for a
    whole chunk kept once); joined when drained. A backtest drops every
    tick's events unread: it keeps none (`recording` False)."""

    def __init__(self, asset_names: list[str], quote: str, *, recording: bool = True) -> None:
        self._chunks: list[dict[str, np.ndarray]] = []
        self._length = 0
        self.recording = recording
        """False: `add` keeps nothing (for a host that reads no events)."""
        self._names = asset_names
        self._quote = quote

    def __len__(self) -> int:
        return self._length

    def add(
        self,
        kind: EventKind,
        portfolio_id: npt.ArrayLike,
        time_ms: int,
        *,
        asset: npt.ArrayLike = NO_ASSET,
        amount: npt.ArrayLike | None = None,
        value: npt.ArrayLike = np.nan,
        reason: npt.ArrayLike = Reason.NONE,
    ) -> None:
        """Appends one event per portfolio id (arrays broadcast); nothing when not `recording`."""
        if not self.recording:
            return
        ids = np.atleast_1d(np.asarray(portfolio_id, dtype=np.uint64))
        n = len(ids)
        if n == 0:
            return
        self._chunks.append(
            {
                "kind": np.asarray(int(kind), np.uint8),  # an int: numpy converts an IntEnum slowly
                "portfolio_id": ids,
                "time_ms": np.asarray(time_ms, np.int64),
                "asset": _column(asset, np.int32, n),
                "amount": _NO_AMOUNT if amount is None else np.asarray(amount, np.int64).reshape(n, 2),
                "value": _column(value, np.float64, n),
                "reason": _column(reason, np.uint8, n),
            }
        )
        self._length += n

    def clear(self) -> None:
        """Drops the events not yet drained."""
        self._chunks, self._length = [], 0

    def columns(self) -> dict[str, np.ndarray]:
        """The events not yet drained, as one set of columns (copies)."""
        if not self._chunks:
            return {name: np.zeros((0, *shape), dtype) for name, (dtype, shape) in EVENT_COLUMNS.items()}
        return {
            name: np.concatenate([np.broadcast_to(c[name], (len(c["portfolio_id"]), *shape)) for c in self._chunks])
            for name, (_, shape) in EVENT_COLUMNS.items()
        }

    def load(self, columns: dict[str, np.ndarray]) -> None:
        self._chunks = [dict(columns)] if len(columns["kind"]) else []
        self._length = len(columns["kind"])

    def drain(self) -> Events:
        """The events since the last drain, in order; the log is emptied."""
        columns = self.columns()
        self._chunks, self._length = [], 0
        for array in columns.values():
            array.flags.writeable = False
        return Events(columns, self._names, self._quote)
