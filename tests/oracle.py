"""An independent Decimal model of a plan's fills, used as the tests' oracle."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from rebal import Market, Plan

ATOM = Decimal("1e-18")


def dec(x: object) -> Decimal:
    """The decimal a number stands for: floats by their shortest repr."""
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(str(x))


def fill(
    plan: Plan,
    holdings: Mapping[str, Decimal],
    quote: str,
    markets: Mapping[str, Market],
    fee_rate: float | None = None,
) -> dict[str, Decimal]:
    """Holdings after every order fills at its assumed price, fees in quote.
    Cash is rounded down to an atom, as an exchange would."""
    after = dict(holdings)
    cash = after.get(quote, Decimal(0))
    for o in plan.orders:
        fee = dec(fee_rate if fee_rate is not None else markets[o.asset].taker_fee)
        notional = o.amount * dec(o.price)
        if o.side == "sell":
            after[o.asset] = after.get(o.asset, Decimal(0)) - o.amount
            cash += notional * (1 - fee)
        else:
            after[o.asset] = after.get(o.asset, Decimal(0)) + o.amount
            cash -= notional * (1 + fee)
    after[quote] = cash
    return after


def floor_atoms(x: Decimal) -> Decimal:
    return (x / ATOM).to_integral_value(rounding="ROUND_FLOOR") * ATOM
