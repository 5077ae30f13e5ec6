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
