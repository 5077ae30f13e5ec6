"""The Engine's own columns, one row per Book slot: lifecycle stage,
money in, accounting, the hold benchmark, and the policies' state
(`rebal.policies.exits`, `rebal.policies.auto_invest`)."""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from rebal.policies.auto_invest import DCA_COLUMNS, DCA_OFF, DCA_ON, DCA_PAUSED, DCA_STOPPED
from rebal.policies.exits import EXIT_COLUMNS

__all__ = ["Stage", "state_columns", "EXIT_SELL", "EXIT_RETURN", "EXIT_ATTEMPTS", "DCA_OFF", "DCA_ON", "DCA_PAUSED", "DCA_STOPPED"]

EXIT_SELL = 0
EXIT_RETURN = 1
EXIT_ATTEMPTS = 3
"""Exit rounds the venue may cut short (rejects, cancels) before what is
left is returned in kind: a market that refuses every sell never blocks a
termination."""


class Stage(enum.IntEnum):
    """Where a portfolio is in its life (SPEC §3). "Rebalancing" is an
    ACTIVE portfolio with orders out (the Book's lock); "paused" is a flag."""

    CREATED = 0
    FUNDING = 1
    ACTIVE = 2
    TERMINATING = 3
    TERMINATED = 4


def state_columns(width: int) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """Column dtypes; `width` is the most assets a portfolio may hold (the hold benchmark's width)."""
    return {
        "stage": (np.uint8, ()),
        "user_paused": (np.bool_, ()),
        "exit_mode": (np.uint8, ()),
        "exit_reason": (np.uint8, ()),
        "pending_invest": (np.bool_, ()),  # new money waiting to be bought with
        "transfers": (np.int64, ()),  # spot-account requests so far: the next one's number
        # The round of orders out (the Book's lock): why, how many still open, any fill yet.
        "round_purpose": (np.uint8, ()),
        "round_open": (np.int32, ()),
        "round_filled": (np.bool_, ()),
        "round_short": (np.bool_, ()),  # an order of the round was rejected, cancelled or not sent
        "round_refused": (np.bool_, ()),  # ... by the venue (rejected or cancelled there)
        "exit_refusals": (np.uint8, ()),  # exit rounds the venue cut short
        "net_invested": (np.int64, (2,)),  # exact: initial + auto-invest
        "net_invested_float": (np.float64, ()),
        "created_ms": (np.int64, ()),
        "peak_value": (np.float64, ()),  # highest value so far (rescaled when money comes in)
        "max_drawdown": (np.float64, ()),
        "drawdown_level": (np.float64, ()),  # peak × (1 − max drawdown): below it the drawdown deepens
        "fees_paid": (np.float64, ()),  # in the quote asset
        "turnover": (np.float64, ()),  # quote traded by rebalances
        "rebalances": (np.int64, ()),
        "hold_asset": (np.int32, (width,)),  # the hold benchmark: same buys, never rebalanced
        "hold_amount": (np.float64, (width,)),
        "hold_cash": (np.float64, ()),
        # At termination (valued at that tick): what accounting reports afterwards.
        "final_value": (np.float64, ()),
        "final_hold_value": (np.float64, ()),
        "ended_ms": (np.int64, ()),
        **EXIT_COLUMNS,
        **DCA_COLUMNS,
    }
