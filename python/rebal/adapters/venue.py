"""What the bot says to a venue and hears back, whatever the venue is.

`OrderRequest` is one order as sent (exact amount, optional limit price);
`OrderState` is what the exchange says of it, with its fills read back
exactly; `Venue` is the protocol the bot drives (`rebal.adapters.ccxt.CcxtVenue`
for a real exchange, the same over `rebal.adapters.paper.PaperExchange`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Literal, Protocol

import msgspec

from rebal.market import Market
from rebal.orders import Fill

__all__ = ["OrderRequest", "OrderState", "Venue"]

_FINAL = frozenset({"closed", "canceled", "cancelled", "expired", "rejected"})


class OrderRequest(msgspec.Struct, frozen=True):
    """One order as the bot sends it: exact amount (and limit price)."""

    client_order_id: str
    symbol: str
    side: Literal["buy", "sell"]
    amount: Decimal
    type: Literal["market", "limit"] = "market"
    price: Decimal | None = None
    time_in_force: str | None = None


class OrderState(msgspec.Struct, frozen=True):
    """What the exchange says of one order, its fills read back exactly."""

    client_order_id: str
    symbol: str
    status: str
    """ccxt's: open, closed, canceled, expired or rejected."""
    amount: Decimal
    filled: Decimal
    fills: tuple[Fill, ...]
    exchange_id: str | None = None
    third_asset_fees: tuple[tuple[str, Decimal], ...] = ()
    """Fees charged in neither the base nor the quote (e.g. BNB): paid from
    outside the portfolio, so its holdings do not carry them."""

    @property
    def final(self) -> bool:
        """Nothing more will fill: the fills are all there is."""
        return self.status in _FINAL


class Venue(Protocol):
    """What the bot needs of an exchange."""

    @property
    def name(self) -> str: ...
    @property
    def arrival_window_s(self) -> float:
        """How long after it was sent an order may still reach the exchange."""
        ...
    def markets(self, quote: str, assets: Sequence[str]) -> list[Market]: ...
    def prices(self, markets: Sequence[Market]) -> list[float]: ...
    def balances(self) -> dict[str, tuple[Decimal, Decimal]]: ...
    def place(self, order: OrderRequest, market: Market, *, before_send: Callable[[str], None] | None = None) -> OrderState: ...
    def lookup(self, client_order_id: str, market: Market) -> OrderState | None: ...
    def cancel(self, state: OrderState, market: Market) -> OrderState | None: ...
