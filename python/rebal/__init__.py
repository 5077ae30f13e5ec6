"""rebal: exact smart-portfolio rebalancing with a Rust core.

    >>> import rebal
    >>> btc = rebal.Market("BTC/USDT", "BTC", "USDT", "0.00001", min_notional="5", taker_fee=0.001)
    >>> p = rebal.plan({"BTC": "0.0012", "ETH": "0.02"}, {"BTC": 50000, "ETH": 2500},
    ...                {"BTC": 0.5, "ETH": 0.5}, [btc, eth])      # doctest: +SKIP
"""

from rebal._rebal import AMOUNT_DECIMALS, __version__, client_order_id
from rebal.batch import OrderBatch, Status
from rebal.book import Book
from rebal.exceptions import AmountError, ConfigError, InvalidInput, MarketError, PriceError, RebalError
from rebal.market import DECIMAL_PLACES, TICK_SIZE, Market
from rebal.planner import plan
from rebal.types import Order, Plan, SkippedLeg

__all__ = [
    "AMOUNT_DECIMALS",
    "DECIMAL_PLACES",
    "TICK_SIZE",
    "AmountError",
    "Book",
    "ConfigError",
    "InvalidInput",
    "Market",
    "MarketError",
    "Order",
    "OrderBatch",
    "Plan",
    "PriceError",
    "RebalError",
    "SkippedLeg",
    "Status",
    "__version__",
    "client_order_id",
    "plan",
]
