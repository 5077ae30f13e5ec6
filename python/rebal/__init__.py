"""rebal: exact smart-portfolio rebalancing with a Rust core.

    >>> import rebal
    >>> btc = rebal.Market("BTC/USDT", "BTC", "USDT", "0.00001", min_notional="5", taker_fee=0.001)
    >>> p = rebal.plan({"BTC": "0.0012", "ETH": "0.02"}, {"BTC": 50000, "ETH": 2500},
    ...                {"BTC": 0.5, "ETH": 0.5}, [btc, eth])      # doctest: +SKIP
"""

from rebal._rebal import AMOUNT_DECIMALS, __version__, client_order_id
from rebal.batch import OrderBatch, Status
from rebal.book import Book
from rebal.config import Limits, StrategyConfig, decode_config, load_config
from rebal.engine import Engine, Funds
from rebal.engine_state import Stage
from rebal.events import Event, EventKind, Events
from rebal.exceptions import (
    AmountError,
    ConfigError,
    FillError,
    InsufficientFunds,
    InvalidInput,
    MarketError,
    PriceError,
    RebalError,
)
from rebal.market import DECIMAL_PLACES, TICK_SIZE, Market
from rebal.orders import Fill, OrderStatus, Purpose, Reject
from rebal.planner import plan
from rebal.store import Store
from rebal.types import Order, Plan, SkippedLeg

__all__ = [
    "AMOUNT_DECIMALS",
    "DECIMAL_PLACES",
    "TICK_SIZE",
    "AmountError",
    "Book",
    "ConfigError",
    "Engine",
    "Event",
    "EventKind",
    "Events",
    "Fill",
    "FillError",
    "Funds",
    "InsufficientFunds",
    "InvalidInput",
    "Limits",
    "Market",
    "MarketError",
    "Order",
    "OrderBatch",
    "OrderStatus",
    "Plan",
    "PriceError",
    "Purpose",
    "RebalError",
    "Reject",
    "SkippedLeg",
    "Stage",
    "Status",
    "Store",
    "StrategyConfig",
    "__version__",
    "client_order_id",
    "decode_config",
    "load_config",
    "plan",
]
