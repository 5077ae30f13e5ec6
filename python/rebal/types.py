"""Values rebal hands out: frozen msgspec Structs, exact amounts as Decimal."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

__all__ = ["Order", "SkippedLeg", "Plan"]

Side = Literal["buy", "sell"]


class Order(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One order of a plan, against the quote asset."""

    symbol: str
    side: Side
    amount: Decimal
    """Exact multiple of the market's step."""
    price: float
    """The price the plan assumed."""
    notional: float
    fee: float
    """Estimated fee in the quote asset."""
    client_order_id: str
    """Deterministic: portfolio, rebalance epoch, leg. A retry reuses it."""
    asset: str


class SkippedLeg(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A leg the plan wanted but did not send: unexecutable drift."""

    asset: str
    symbol: str
    side: Side
    amount: Decimal
    """The wanted amount in whole lots."""
    reason: Literal["min_amount", "min_notional", "max_amount", "market_inactive", "insufficient_cash", "below_step"]
    """min_amount / min_notional / max_amount / market_inactive: the market's
    rules; insufficient_cash: no money for it; below_step: less than a lot, or
    a lot so coarse it would overshoot the band."""


class Plan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The orders that restore a portfolio's weights, sells first."""

    orders: list[Order]
    skipped: list[SkippedLeg]
    value: float
    """Portfolio value before the plan, in the quote asset."""
    value_after: float
    """Estimated value after the plan's fees."""
    cash_after: float
    """Free quote cash after the plan fills at the assumed prices."""
    fees: float
    max_deviation: float
    """Largest |weight - target|, in weight points (0.05 = 5 points)."""
    max_relative_deviation: float
    triggered: bool
