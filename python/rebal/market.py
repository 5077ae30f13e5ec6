"""Market rules from ccxt's unified market structure.

ccxt states the amount step in `precision.amount`, either as the step itself
(`precisionMode = TICK_SIZE`, e.g. 1e-05) or as a number of decimals
(`DECIMAL_PLACES`, e.g. 5). Binance's raw `info.filters` are the exchange's
own truth and win when present (LOT_SIZE, MARKET_LOT_SIZE, NOTIONAL /
MIN_NOTIONAL, PRICE_FILTER), read from their exact decimal strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from rebal import _rebal
from rebal.exceptions import MarketError

__all__ = ["Market", "DECIMAL_PLACES", "TICK_SIZE", "refusal"]

# ccxt's precision-mode constants (ccxt.base.decimal_to_precision).
DECIMAL_PLACES = 2
TICK_SIZE = 4
_MODES = {"decimal_places": DECIMAL_PLACES, "tick_size": TICK_SIZE, DECIMAL_PLACES: DECIMAL_PLACES, TICK_SIZE: TICK_SIZE}


class Market(_rebal.Market):
    """One trading pair's rules: amount step, min/max amount and notional,
    price tick, maker/taker fee. Amounts are exact decimals."""

    @classmethod
    def from_ccxt(cls, market: Mapping[str, Any], *, precision_mode: int | str | None = None) -> Market:
        """Builds a Market from a ccxt unified market dict.

        `precision_mode` is ccxt's `exchange.precisionMode` (`TICK_SIZE` = 4,
        `DECIMAL_PLACES` = 2, or their lower-case names); when omitted it is
        inferred per value: an `int` counts decimals, a `float` or `str` is
        the step itself.
        """
        symbol = market.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise MarketError(f"market.symbol: missing (got {symbol!r})", field="market.symbol", value=symbol)
        if market.get("spot") is False or market.get("type", "spot") != "spot":
            kind = market.get("type")
            raise MarketError(
                f"markets[{symbol}].type: only spot markets can be rebalanced (got {kind!r})",
                field=f"markets[{symbol}].type",
                value=kind,
            )
        mode = _MODES.get(precision_mode) if precision_mode is not None else None
        if precision_mode is not None and mode is None:
            raise MarketError(
                f"precision_mode: must be TICK_SIZE (4) or DECIMAL_PLACES (2) (got {precision_mode!r})",
                field="precision_mode",
                value=precision_mode,
            )
        rules = _from_filters(market) or _from_unified(market, symbol, mode)
        base, quote = market.get("base"), market.get("quote")
        if not (isinstance(base, str) and isinstance(quote, str)):
            base, _, quote = symbol.partition("/")
        return cls(
            symbol,
            base,
            quote,
            maker_fee=float(market.get("maker") or 0.0),
            taker_fee=float(market.get("taker") or 0.0),
            active=market.get("active") is not False,
            **rules,
        )


def refusal(market: Market, amount: Decimal, price: Decimal) -> str | None:
    """The rule an order of exactly `amount` at `price` breaks on `market`
    (a `SKIP_REASONS` name, or "max_notional"), or None: what a venue checks
    before it takes an order."""
    notional = amount * price
    if not market.active:
        return "market_inactive"
    if amount <= 0 or amount % market.step:
        return "below_step"
    if amount < market.min_amount:
        return "min_amount"
    if market.max_amount is not None and amount > market.max_amount:
        return "max_amount"
    if notional < market.min_notional:
        return "min_notional"
    if market.max_notional is not None and notional > market.max_notional:
        return "max_notional"
    return None


def exact_decimal(value: Any) -> Decimal:
    """A number as the decimal it spells: a float by its shortest digits
    (0.1, not 0.1000000000000000055511151231257827), anything else by its text."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


def _positive(value: Any) -> Decimal | None:
    """An exact positive decimal, or None for a missing / zero limit."""
    if value is None or isinstance(value, bool):
        return None
    number = exact_decimal(value)
    return number if number > 0 else None


def _from_filters(market: Mapping[str, Any]) -> dict[str, Any] | None:
    info = market.get("info")
    filters = info.get("filters") if isinstance(info, Mapping) else None
    if not isinstance(filters, list):
        return None
    by_type = {f.get("filterType"): f for f in filters if isinstance(f, Mapping)}
    lot = by_type.get("LOT_SIZE")
    if lot is None:
        return None
    rules: dict[str, Any] = {
        "step": _positive(lot.get("stepSize")),
        "min_amount": _positive(lot.get("minQty")),
        "max_amount": _positive(lot.get("maxQty")),
    }
    # Rebalancing sends market orders: MARKET_LOT_SIZE narrows the limits.
    market_lot = by_type.get("MARKET_LOT_SIZE", {})
    market_max = _positive(market_lot.get("maxQty"))
    if market_max is not None and (rules["max_amount"] is None or market_max < rules["max_amount"]):
        rules["max_amount"] = market_max
    market_min = _positive(market_lot.get("minQty"))
    if market_min is not None and (rules["min_amount"] is None or market_min > rules["min_amount"]):
        rules["min_amount"] = market_min
    notional = by_type.get("NOTIONAL")
    if notional is not None:
        if notional.get("applyMinToMarket", True):
            rules["min_notional"] = _positive(notional.get("minNotional"))
        if notional.get("applyMaxToMarket", False):
            rules["max_notional"] = _positive(notional.get("maxNotional"))
    old = by_type.get("MIN_NOTIONAL")
    if old is not None and old.get("applyToMarket", True) and "min_notional" not in rules:
        rules["min_notional"] = _positive(old.get("minNotional"))
    price = by_type.get("PRICE_FILTER", {})
    rules["price_tick"] = _positive(price.get("tickSize"))
    if rules["step"] is None:
        return None  # fall back to the unified fields
    return rules


def _precision_step(value: Any, mode: int | None, field: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise MarketError(f"{field}: not a number (got {value!r})", field=field, value=value)
    if mode is None:
        mode = DECIMAL_PLACES if isinstance(value, int) else TICK_SIZE
    if mode == DECIMAL_PLACES:
        places = Decimal(str(value))
        if places != places.to_integral_value() or places < 0:
            raise MarketError(f"{field}: decimal places must be a whole number >= 0 (got {value!r})", field=field, value=value)
        return Decimal(1).scaleb(-int(places))
    return _positive(value)


def _from_unified(market: Mapping[str, Any], symbol: str, mode: int | None) -> dict[str, Any]:
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    step = _precision_step(precision.get("amount"), mode, f"markets[{symbol}].precision.amount")
    if step is None:
        raise MarketError(
            f"markets[{symbol}].precision.amount: a market needs an amount step (got {precision.get('amount')!r})",
            field=f"markets[{symbol}].precision.amount",
            value=precision.get("amount"),
        )
    amount = limits.get("amount") or {}
    cost = limits.get("cost") or {}
    return {
        "step": step,
        "min_amount": _positive(amount.get("min")),
        "max_amount": _positive(amount.get("max")),
        "min_notional": _positive(cost.get("min")),
        "max_notional": _positive(cost.get("max")),
        "price_tick": _precision_step(precision.get("price"), mode, f"markets[{symbol}].precision.price"),
    }
