"""`PaperExchange`: real market data and rules, simulated fills, no keys.

It wraps a ccxt exchange (public calls only) and answers the private calls
the bot makes (`fetch_balance`, `create_order`, `fetch_order`,
`fetch_order_trades`, `cancel_order`) from its own account, so `--paper`
runs exactly the code that runs live. Orders fill in full at the last
price, a limit buy only if its cap is at or above it; the fee is the
market's taker fee in the quote asset. Its state (balances, orders) is
plain JSON for the bot to save beside the Engine's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import ccxt

__all__ = ["PaperExchange"]

KEEP_ORDERS = 200
"""Paper orders kept in the saved state: far more than one step sends."""


class PaperExchange:
    """A simulated account on a real exchange's prices."""

    def __init__(self, exchange: Any, balances: Mapping[str, str | Decimal], *, state: Mapping[str, Any] | None = None) -> None:
        self.exchange = exchange
        self.id = f"{exchange.id}-paper"
        self.precisionMode = exchange.precisionMode
        self.balance = {a: Decimal(str(v)) for a, v in (state["balances"] if state else balances).items()}
        self.orders: dict[str, dict[str, Any]] = dict(state["orders"]) if state else {}

    def state(self) -> dict[str, Any]:
        """Balances and the latest orders (enough for the bot's lookups after a restart)."""
        recent = dict(list(self.orders.items())[-KEEP_ORDERS:])
        return {"balances": {a: str(v) for a, v in self.balance.items()}, "orders": recent}

    # Public data: the real exchange's.
    def load_markets(self, reload: bool = False) -> Any:
        return self.exchange.load_markets(reload)

    def fetch_tickers(self, symbols: Sequence[str] | None = None) -> Any:
        return self.exchange.fetch_tickers(symbols)

    # The account: simulated.
    def fetch_balance(self) -> dict[str, Any]:
        return {"free": dict(self.balance), "total": dict(self.balance)}

    def create_order(self, symbol: str, type: str, side: str, amount: Any, price: Any = None, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        cid = str((params or {}).get("clientOrderId"))
        if cid in self.orders:
            raise ccxt.InvalidOrder(f"{self.id} duplicate client order id {cid}")
        market = self.exchange.market(symbol)
        base, quote, fee_rate = market["base"], market["quote"], Decimal(repr(float(market.get("taker") or 0)))
        qty = Decimal(str(amount))
        last = self.exchange.fetch_ticker(symbol).get("last")
        if last is None:
            raise ccxt.ExchangeNotAvailable(f"{self.id} no last price for {symbol}")
        fill = Decimal(repr(float(last)))
        crosses = type == "market" or (side == "buy" and Decimal(str(price)) >= fill) or (side == "sell" and Decimal(str(price)) <= fill)
        filled = qty if crosses else Decimal(0)
        cost = filled * fill
        fee = cost * fee_rate
        if side == "buy" and cost + fee > self.balance.get(quote, Decimal(0)):
            raise ccxt.InsufficientFunds(f"{self.id} insufficient {quote} for {cid}")
        if side == "sell" and filled > self.balance.get(base, Decimal(0)):
            raise ccxt.InsufficientFunds(f"{self.id} insufficient {base} for {cid}")
        sign = 1 if side == "buy" else -1
        self.balance[base] = self.balance.get(base, Decimal(0)) + sign * filled
        self.balance[quote] = self.balance.get(quote, Decimal(0)) - sign * cost - fee
        trades = [{"amount": str(filled), "price": str(fill), "cost": str(cost), "fee": {"cost": str(fee), "currency": quote}}] if filled else []
        order = {
            "id": cid, "clientOrderId": cid, "symbol": symbol, "type": type, "side": side,
            "amount": str(qty), "filled": str(filled), "status": "closed" if filled == qty else "expired", "trades": trades,
        }  # fmt: skip
        self.orders[cid] = order
        return order

    def fetch_order(self, id: str | None, symbol: str | None = None, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        cid = str((params or {}).get("clientOrderId") or id)
        if cid not in self.orders:
            raise ccxt.OrderNotFound(f"{self.id} order {cid} does not exist")
        return self.orders[cid]

    def fetch_order_trades(
        self, id: str, symbol: str | None = None, since: int | None = None, limit: int | None = None, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return list(self.fetch_order(id, symbol)["trades"])

    def cancel_order(self, id: str, symbol: str | None = None) -> dict[str, Any]:
        raise ccxt.OrderNotFound(f"{self.id} order {id} is not open")  # every paper order is done at once
