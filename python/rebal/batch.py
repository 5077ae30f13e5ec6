"""`rebal.OrderBatch`: what one tick produced, as numpy columns.

One row per order (sells before buys within each portfolio), one row per
skipped leg, and per-portfolio columns (value, deviation, status) by slot.
No Python object per order is made unless asked for (`orders()`,
`client_order_id`, `amounts()`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from rebal import _rebal
from rebal.columns import decimal_strings, decimals
from rebal.market import Market
from rebal.types import Order, Side, SkippedLeg

__all__ = ["OrderBatch", "Legs", "Scan", "Status", "SIDES", "SIDE_BUY", "SIDE_SELL", "SKIP_REASONS"]

SIDES: tuple[Side, Side] = ("buy", "sell")
"""`side` codes: 0 = buy, 1 = sell."""
SIDE_BUY, SIDE_SELL = 0, 1
SKIP_REASONS = ("min_amount", "min_notional", "max_amount", "market_inactive", "insufficient_cash", "below_step")
"""`reason` codes of skipped legs."""


class Status(enum.IntEnum):
    """What a tick did with a portfolio (`OrderBatch.status`)."""

    IDLE = 0
    """Not triggered, or its calendar check was not due."""
    REBALANCE = 1
    """Triggered and planned: its orders are in the batch."""
    NOTHING_TO_DO = 2
    """Triggered, but every leg it wanted is below the market rules (see `skipped`)."""
    COOLDOWN = 3
    """Triggered within the cooldown after its last rebalance."""
    LOCKED = 4
    """Triggered while orders are out."""
    INACTIVE = 5
    """Removed or paused."""


class Scan:
    """What `Book.scan` found, per portfolio (by slot): value, deviations
    and status, at the scan's prices and time. `status` is writable: a host
    may set a REBALANCE back to IDLE to hold a portfolio back from `plan`."""

    value: npt.NDArray[np.float64]
    max_deviation: npt.NDArray[np.float64]
    max_relative_deviation: npt.NDArray[np.float64]
    status: npt.NDArray[np.uint8]

    def __init__(self, columns: dict[str, np.ndarray], prices: npt.NDArray[np.float64], now_ms: int) -> None:
        for name in ("value", "max_deviation", "max_relative_deviation"):
            columns[name].flags.writeable = False
        self.columns = columns
        self.value = columns["value"]
        self.max_deviation = columns["max_deviation"]
        self.max_relative_deviation = columns["max_relative_deviation"]
        self.status = columns["status"]
        self.prices = prices
        self.now_ms = now_ms


class Legs:
    """Orders or skipped legs as columns (read-only numpy arrays)."""

    portfolio: npt.NDArray[np.int64]
    """Slot of the portfolio in the Book at tick time."""
    portfolio_id: npt.NDArray[np.uint64]
    leg: npt.NDArray[np.uint8]
    """Position of the asset in its portfolio: the leg of the client order id."""
    asset: npt.NDArray[np.int32]
    """Index into the Book's markets and the tick's prices."""
    side: npt.NDArray[np.uint8]
    """0 = buy, 1 = sell (see `SIDES`)."""
    lots: npt.NDArray[np.int64]
    """Whole lots of the market's step."""
    amount_words: npt.NDArray[np.int64]
    """The exact amount (lots × step) as (n, 2) int64 words of decimal128(38, 18)."""
    price: npt.NDArray[np.float64]
    notional: npt.NDArray[np.float64]
    purpose: npt.NDArray[np.uint8]
    """Why each leg (`rebal.orders.Purpose`): 0 = rebalance (all of a
    `Book.tick`), 1 = new money (funding, auto-invest), 2 = exit."""

    def __init__(self, columns: dict[str, np.ndarray], markets: Sequence[Market]) -> None:
        self._markets = markets
        for array in columns.values():
            array.flags.writeable = False
        self.portfolio = columns["portfolio"]
        self.portfolio_id = columns["portfolio_id"]
        self.leg = columns["leg"]
        self.asset = columns["asset"]
        self.side = columns["side"]
        self.lots = columns["lots"]
        self.amount_words = columns["amount"]
        self.price = columns["price"]
        self.notional = columns["notional"]
        self.purpose = columns["purpose"]
        self._columns = columns

    def __len__(self) -> int:
        return len(self.portfolio)

    def amounts(self) -> npt.NDArray[np.str_]:
        """Exact amounts as decimal strings ("0.3", never "0.30000000000000004")."""
        return decimal_strings(self.amount_words)

    def symbols(self) -> npt.NDArray[np.str_]:
        names = np.array([m.symbol for m in self._markets] or [""], dtype=str)
        return names[self.asset]

    def sides(self) -> npt.NDArray[np.str_]:
        return np.array(SIDES)[self.side]

    def to_arrow(self) -> Any:
        """The columns as a pyarrow Table; amounts as exact decimal128(38, 18)."""
        from rebal.arrow import legs_to_arrow

        return legs_to_arrow(self._columns, self.symbols())


class OrderBatch(Legs):
    """The orders of one tick as columns, the legs it skipped, and what it
    found per portfolio (by slot)."""

    fee: npt.NDArray[np.float64]
    """Estimated fee in the quote asset."""
    epoch: npt.NDArray[np.uint32]
    """Rebalance epoch of each order's client id."""
    value: npt.NDArray[np.float64]
    """Per portfolio: value before the plan, in the quote asset (0 when inactive)."""
    max_deviation: npt.NDArray[np.float64]
    """Per portfolio: largest |weight - target|, in weight points."""
    max_relative_deviation: npt.NDArray[np.float64]
    """Per portfolio: largest |weight - target| / target."""
    status: npt.NDArray[np.uint8]
    """Per portfolio: a `Status` code."""
    skipped: Legs
    """Legs not sent (unexecutable drift), with `reason` codes."""

    def __init__(self, result: dict[str, Any], markets: Sequence[Market]) -> None:
        orders = result["orders"]
        super().__init__(orders, markets)
        self.fee = orders["fee"]
        self.epoch = orders["epoch"]
        for name in ("value", "max_deviation", "max_relative_deviation", "status"):
            result[name].flags.writeable = False  # a Scan's status is frozen once planned
        self.value = result["value"]
        self.max_deviation = result["max_deviation"]
        self.max_relative_deviation = result["max_relative_deviation"]
        self.status = result["status"]
        skipped = dict(result["skipped"])
        self.skipped = Legs(skipped, markets)
        self._reason: npt.NDArray[np.uint8] = skipped["epoch"].astype(np.uint8)

    @property
    def triggered(self) -> npt.NDArray[np.bool_]:
        """Per portfolio: its trigger fired (planned or held back by cooldown or lock)."""
        return (self.status >= Status.REBALANCE) & (self.status <= Status.LOCKED)

    @property
    def skip_reason(self) -> npt.NDArray[np.uint8]:
        """Reason codes of `skipped` (see `SKIP_REASONS`)."""
        return self._reason

    @property
    def client_order_id(self) -> npt.NDArray[np.bytes_]:
        """Deterministic client order ids rb{portfolio id}-{epoch}-{leg}, as bytes."""
        if len(self) == 0:
            return np.array([], dtype="S1")
        buffer, width = _rebal.client_order_ids(self.portfolio_id, self.epoch, self.leg)
        return np.frombuffer(buffer, dtype=f"S{width}")

    def orders(self) -> list[Order]:
        """The orders as `Order` structs (one object each: for small batches)."""
        ids = self.client_order_id
        amounts = decimals(self.amount_words)
        return [
            Order(
                symbol=self._markets[a].symbol,
                side=SIDES[s],
                amount=amount,
                price=float(price),
                notional=float(notional),
                fee=float(fee),
                client_order_id=cid.decode(),
                asset=self._markets[a].base,
            )
            for a, s, amount, price, notional, fee, cid in zip(
                self.asset.tolist(), self.side.tolist(), amounts, self.price, self.notional, self.fee, ids
            )
        ]

    def skipped_legs(self) -> list[SkippedLeg]:
        """The skipped legs as `SkippedLeg` structs."""
        s = self.skipped
        return [
            SkippedLeg(
                asset=self._markets[a].base,
                symbol=self._markets[a].symbol,
                side=SIDES[side],
                amount=amount,
                reason=SKIP_REASONS[r],  # type: ignore[arg-type]
            )
            for a, side, amount, r in zip(s.asset.tolist(), s.side.tolist(), decimals(s.amount_words), self._reason.tolist())
        ]

    def to_arrow(self) -> Any:
        """The orders as a pyarrow Table, with their client ids; amounts as exact decimal128(38, 18)."""
        from rebal.arrow import legs_to_arrow

        return legs_to_arrow(self._columns, self.symbols(), client_order_id=self.client_order_id)
