"""Orders the Engine sent, and the fills and rejects that come back.

Every order is a row of an `OrderTable` (columns): its client id's parts
(portfolio id, epoch, leg), asset, side, purpose, the exact amount ordered
and filled so far, and its status. Fills and rejects arrive as `Fill` and
`Reject` Structs, matched to orders by client order id.
"""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from rebal.columns import Table

__all__ = ["Fill", "Reject", "OrderStatus", "Purpose", "OrderTable", "ORDER_COLUMNS"]


class Fill(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A (partial) fill of one order, as the venue reports it.

    `cost` is the quote amount that changed hands (ccxt's trade `cost`);
    when omitted it is amount × price, rounded against the user by at most
    1e-18. `fee_asset` is the base or the quote asset of the market."""

    client_order_id: str
    amount: Decimal
    price: Decimal
    fee: Decimal = Decimal(0)
    fee_asset: str | None = None
    """Default: the quote asset."""
    cost: Decimal | None = None


class Reject(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An order the venue refused or cancelled; what it filled before stays.

    `kind` "unsent": the host never sent it, or it never reached the venue
    (an outage): re-planned like the others, but not counted as the venue
    refusing to sell when an exit gives up after `EXIT_ATTEMPTS` rounds."""

    client_order_id: str
    reason: str = ""
    kind: Literal["rejected", "cancelled", "unsent"] = "rejected"


class OrderStatus(enum.IntEnum):
    OPEN = 0
    PARTIALLY_FILLED = 1
    FILLED = 2
    REJECTED = 3
    CANCELLED = 4


class Purpose(enum.IntEnum):
    """Why an order was sent."""

    REBALANCE = 0
    INVEST = 1
    """Buying with new money: the initial investment or an auto-invest cycle."""
    EXIT = 2
    """Selling out on termination."""


ORDER_COLUMNS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "portfolio_id": (np.uint64, ()),
    "epoch": (np.uint32, ()),
    "leg": (np.uint8, ()),
    "asset": (np.int32, ()),
    "side": (np.uint8, ()),
    "purpose": (np.uint8, ()),
    "amount": (np.int64, (2,)),
    "filled": (np.int64, (2,)),
    "status": (np.uint8, ()),
    "time_ms": (np.int64, ()),
    "dirty": (np.bool_, ()),  # new or changed since a store last saved it
}


_ALL_COLUMNS = frozenset(ORDER_COLUMNS)


def client_id_key(portfolio_id: int, epoch: int, leg: int) -> str:
    return f"rb{portfolio_id}-{epoch}-{leg}"


class OrderTable:
    """The Engine's orders as columns: the open ones, and closed ones a store
    has not saved yet (`dirty`). Closed orders are dropped at the next tick
    (`prune`) once saved, or at once when no store keeps them (`keep_history`
    False): the table stays the size of what is in flight."""

    def __init__(self) -> None:
        self.table = Table(ORDER_COLUMNS)
        self._open: dict[str, int] | None = {}
        self.keep_history = False
        """Set by a `Store`: closed orders wait for it to save them."""

    def __len__(self) -> int:
        return self.table.length

    def __getitem__(self, name: str) -> np.ndarray:
        return self.table[name]

    def append(self, columns: dict[str, np.ndarray]) -> None:
        """A tick's orders. Into an empty table the columns are adopted as
        they are (no copy): the batch's (read-only, never written here) and
        fresh ones for filled, status, time and dirty."""
        n = len(columns["portfolio_id"])
        if n:
            self.table.append(columns, n, share=_ALL_COLUMNS)
            self._open = None  # rebuilt on the next lookup: a tick never pays for it

    def prune(self) -> None:
        """Drops closed orders (once saved, when a store keeps the history)."""
        t = self.table
        if not t.length:
            return
        status = t["status"]
        if not self.keep_history and status.min() > OrderStatus.PARTIALLY_FILLED.value:
            self.table = Table(ORDER_COLUMNS)  # every order done: a backtest's every tick (one pass, no mask)
            self._open = None
            return
        keep = status <= OrderStatus.PARTIALLY_FILLED.value
        if self.keep_history:
            keep |= t["dirty"]
        if not keep.any():  # every order done and saved
            self.table = Table(ORDER_COLUMNS)
        elif keep.all():
            return
        else:
            t.keep(np.flatnonzero(keep))
        self._open = None

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.table.load(arrays)
        self._open = None

    def find(self, client_order_id: str) -> int | None:
        """The row of an order that is still open (or partly filled)."""
        if self._open is None:
            live = self.open_rows()
            self._open = dict(zip(self.client_order_ids(live), live.tolist()))
        return self._open.get(client_order_id)

    def mark(self, rows: npt.NDArray[np.int64] | slice, status: OrderStatus) -> None:
        """Sets the status of orders that stay open (partly filled)."""
        self.table["status"][rows] = status
        self.table["dirty"][rows] = True

    def close_many(self, rows: npt.NDArray[np.int64] | slice, status: OrderStatus) -> None:
        """Orders done: filled, rejected or cancelled."""
        self.mark(rows, status)
        if self._open is not None:
            for key in self.client_order_ids(rows):
                self._open.pop(key, None)

    def client_order_ids(self, rows: npt.NDArray[np.int64] | slice) -> list[str]:
        t = self.table
        return [client_id_key(p, e, g) for p, e, g in zip(t["portfolio_id"][rows].tolist(), t["epoch"][rows].tolist(), t["leg"][rows].tolist())]

    def open_rows(self) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.table["status"] <= OrderStatus.PARTIALLY_FILLED.value)

    def dirty_rows(self) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.table["dirty"])
