"""`rebal.plan`: the orders that restore one portfolio's target weights."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Union

from rebal import _rebal
from rebal.exceptions import ConfigError, PriceError
from rebal.market import Market
from rebal.types import Order, Plan, SkippedLeg

__all__ = ["plan", "parse_destination"]

Pairs = Union[Mapping[str, Any], Iterable[tuple[str, Any]]]

_INNER_BAND = re.compile(r"^inner_band\(\s*([0-9.eE+-]+)\s*\)$")


def plan(
    holdings: Pairs,
    prices: Pairs,
    targets: Pairs,
    markets: Iterable[Market],
    *,
    quote: str = "USDT",
    destination: str = "target",
    threshold: float | None = None,
    threshold_kind: Literal["absolute", "relative"] = "absolute",
    fee_rate: float | None = None,
    portfolio_id: int = 0,
    epoch: int = 0,
) -> Plan:
    """Plans the rebalance of one portfolio.

    holdings: asset -> amount held (str, Decimal, int or float; floats are read
        as their shortest repr). The quote asset's entry is free cash.
    prices: asset -> price in the quote asset.
    targets: asset -> target weight as a fraction; they sum to 1. The quote
        asset may be one of them (a cash weight).
    markets: one `Market` per asset, each against `quote`.
    destination: "target", "band_edge" or "inner_band(k)" with 0 <= k <= 1.
    threshold: the trigger band as a fraction (0.05 = 5 points when
        absolute, 5 % of the target when relative); None plans unconditionally.
    fee_rate: one fee rate for every market; None uses each market's taker fee.
    portfolio_id, epoch: make the client order ids (a retry reuses them).
    """
    target_map = _pairs(targets, "targets")
    holding_map = _pairs(holdings, "holdings")
    price_map = _pairs(prices, "prices")
    by_base: dict[str, Market] = {}
    for market in markets:
        if market.quote != quote:
            raise ConfigError(
                f"markets[{market.symbol}].quote: must be the portfolio's quote {quote!r} (got {market.quote!r})",
                field=f"markets[{market.symbol}].quote",
                value=market.quote,
            )
        if market.base in by_base:
            raise ConfigError(
                f"markets[{market.symbol}]: duplicated asset {market.base!r}", field="markets", value=market.symbol
            )
        by_base[market.base] = market

    assets = [a for a in target_map if a != quote]
    for asset in assets:
        if asset not in by_base:
            raise ConfigError(f"targets[{asset}]: unknown asset, no {asset}/{quote} market", field=f"targets[{asset}]", value=asset)
    for asset in holding_map:
        if asset != quote and asset not in target_map:
            raise ConfigError(
                f"holdings[{asset}]: unknown asset, not among the targets", field=f"holdings[{asset}]", value=asset
            )
    asset_prices = [_price(price_map, asset) for asset in assets]
    weights = [_weight(target_map[a], a) for a in assets]
    cash_target = _weight(target_map[quote], quote) if quote in target_map else 0.0
    dest, inner_k = parse_destination(destination)
    chosen = [by_base[a] for a in assets]

    outcome, legs, skips = _rebal.plan_portfolio(
        chosen,
        asset_prices,
        [holding_map.get(a, "0") for a in assets],
        weights,
        holding_map.get(quote, "0"),
        cash_target=cash_target,
        destination=dest,
        inner_k=inner_k,
        threshold=threshold,
        threshold_kind=threshold_kind,
        fee_rate=fee_rate,
    )
    value, max_dev, max_rel, triggered, value_after, cash_after, fees = outcome
    orders = [
        Order(
            symbol=chosen[pos].symbol,
            side=side,
            amount=amount,
            price=price,
            notional=notional,
            fee=fee,
            client_order_id=_rebal.client_order_id(portfolio_id, epoch, pos),
            asset=assets[pos],
        )
        for pos, side, amount, price, notional, fee in legs
    ]
    skipped = [
        SkippedLeg(asset=assets[pos], symbol=chosen[pos].symbol, side=side, amount=amount, reason=reason)
        for pos, side, amount, reason in skips
    ]
    return Plan(
        orders=orders,
        skipped=skipped,
        value=value,
        value_after=value_after,
        cash_after=cash_after,
        fees=fees,
        max_deviation=max_dev,
        max_relative_deviation=max_rel,
        triggered=triggered,
    )


def parse_destination(destination: str) -> tuple[str, float | None]:
    """"target" | "band_edge" | "inner_band(k)" -> (name, k)."""
    match = _INNER_BAND.match(destination.strip()) if isinstance(destination, str) else None
    if match:
        return "inner_band", float(match.group(1))
    return destination, None


def _pairs(values: Pairs, field: str) -> dict[str, Any]:
    """A mapping, or (asset, value) pairs with no asset twice."""
    if isinstance(values, Mapping):
        return dict(values)
    out: dict[str, Any] = {}
    for asset, value in values:
        if asset in out:
            raise ConfigError(f"{field}[{asset}]: duplicated asset", field=f"{field}[{asset}]", value=asset)
        out[asset] = value
    return out


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _price(prices: Mapping[str, Any], asset: str) -> float:
    field = f"prices[{asset}]"
    if asset not in prices:
        raise PriceError(f"{field}: missing price", field=field, value=None)
    price = _to_float(prices[asset])
    if price is None:
        raise PriceError(f"{field}: not a number (got {prices[asset]!r})", field=field, value=prices[asset])
    if math.isnan(price) or math.isinf(price) or price <= 0:
        raise PriceError(f"{field}: price must be finite and > 0 (got {price!r})", field=field, value=price)
    return price


def _weight(value: Any, asset: str) -> float:
    weight = _to_float(value)
    if weight is None:
        raise ConfigError(f"targets[{asset}]: not a number (got {value!r})", field=f"targets[{asset}]", value=value)
    return weight
