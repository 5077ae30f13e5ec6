"""Exceptions of rebal. One root, `RebalError`; bad input is also a `ValueError`.

Every error raised for bad input names the offending field and value, both
in its message and as the attributes `field` and `value`.
"""

from __future__ import annotations

__all__ = [
    "RebalError",
    "InvalidInput",
    "ConfigError",
    "PriceError",
    "AmountError",
    "MarketError",
    "FillError",
    "InsufficientFunds",
    "CredentialsError",
    "VenueError",
    "VenueUnavailable",
    "OrderRefused",
    "VenueAuthError",
]


class RebalError(Exception):
    """Root of every error rebal raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class InvalidInput(RebalError, ValueError):
    """The caller gave something rebal cannot use; nothing was changed."""


class ConfigError(InvalidInput):
    """Strategy configuration: assets, weights, thresholds, destination."""


class PriceError(InvalidInput):
    """A price that is missing, zero, negative, NaN or infinite."""


class AmountError(InvalidInput):
    """An amount that is negative, not a number, or finer than 1e-18."""


class MarketError(InvalidInput):
    """Market rules that cannot be used (no step, bad limits or fees)."""


class FillError(InvalidInput):
    """A fill or reject that cannot be applied: unknown order, negative or
    excess amount, a fee in a third asset, a balance that would go below zero."""


class InsufficientFunds(RebalError):
    """The user's spot balance does not cover a withdrawal the host was asked for."""


class CredentialsError(InvalidInput):
    """API keys that cannot be used: missing, or in a file others can read.
    The message names where they were looked for, never the keys."""


class VenueError(RebalError):
    """An exchange answered in a way the bot could not use; raised from the
    ccxt exception (`raise ... from e`), with secrets removed from the text."""


class VenueUnavailable(VenueError):
    """The exchange stayed unreachable (network, timeout, rate limit, 5xx)
    through every retry. Orders whose fate is unknown stay open and are
    looked up by client id before anything is sent again."""


class OrderRefused(VenueError):
    """The exchange refused an order for good (insufficient funds, invalid
    order, bad symbol): recorded, and the portfolio re-plans at the next tick.
    `reason` is a short code: "insufficient_funds", "invalid_order",
    "bad_symbol" or "exchange_error"."""

    def __init__(self, message: str, *, reason: str, field: str | None = None, value: object = None) -> None:
        super().__init__(message, field=field, value=value)
        self.reason = reason


class VenueAuthError(VenueError):
    """The exchange refused the API keys or their permissions: the bot stops."""
