"""An in-process fake of Binance's spot REST API, for ccxt's own `ccxt.binance`.

`FakeBinance` serves Binance's paths (`/api/v3/...`) over real HTTP on
127.0.0.1, so an unchanged `ccxt.binance` drives it end to end: ccxt signs
the requests, the fake checks the signatures, ccxt parses the fake's JSON
and maps its error bodies to ccxt exception classes. It misbehaves on
demand (timeouts before and after executing, 429, gateway 5xx, partial
fills, rejections) so tests can prove a bot never sends an order twice,
never sends one the filters reject and recovers from every failure.

    with FakeBinance(markets_path, api_key="k", secret="s",
                     balances={"USDT": "1000"}, prices={"BTC/USDT": "50000"}) as fake:
        ex = fake.client(timeout_ms=400)
        ex.load_markets()
        fake.inject("timeout_after_execute")
        ex.create_order("BTC/USDT", "market", "buy", "0.001",
                        params={"newClientOrderId": "rb1-1-0"})   # -> ccxt.RequestTimeout
        ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "rb1-1-0"})   # FILLED

Faithful to Binance (checked against Binance's spot API docs and the way
ccxt 4.5's binance.py reads each response):

* Paths, parameters and JSON shapes of exchangeInfo, time, ticker/24hr,
  ticker/price, ticker/bookTicker, account, order (POST/GET/DELETE),
  openOrders, allOrders, myTrades; numbers as strings with 8 decimals.
* exchangeInfo is the real `info` objects (raw exchangeInfo symbols, real
  filters) of the spot markets in the static ccxt markets file.
* Signed endpoints: the `X-MBX-APIKEY` header (-2014 missing, -2015
  wrong), `timestamp` / `recvWindow` (-1021), HMAC-SHA256 over the query
  string concatenated with the body (-1022).
* Order filters in the order the symbol lists them: PRICE_FILTER and
  PERCENT_PRICE_BY_SIDE (LIMIT only), LOT_SIZE (all orders),
  MARKET_LOT_SIZE (MARKET only), NOTIONAL (LIMIT: price x qty, both
  bounds; MARKET: current price x qty, each bound only when
  applyMinToMarket / applyMaxToMarket), legacy MIN_NOTIONAL,
  MAX_NUM_ORDERS; zero fields are ignored as Binance does. A failure is
  HTTP 400 {"code": -1013, "msg": "Filter failure: <FILTER>"}. Filters are
  checked before the balance.
* Error codes and messages: -1121 "Invalid symbol.", -2010 "Account has
  insufficient balance for requested action.", -2010 "Duplicate order
  sent." (a newClientOrderId equal to an *open* order's; a finished
  order's id may be reused, as on Binance), -2013 "Order does not exist."
  (GET), -2011 "Unknown order sent." (DELETE of an unknown or finished
  order), -1102 missing parameters, -1100 illegal characters (e.g. a
  client id outside ^[.A-Z:/a-z0-9_-]{1,36}$), -1111 too much precision.
* Statuses NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED; MARKET
  orders that run out of liquidity end EXPIRED with a partial fill; IOC
  and FOK leftovers EXPIRED; GTC leftovers rest (locking the balance)
  until they cross or are cancelled. newOrderRespType ACK / RESULT / FULL
  (FULL by default for MARKET and LIMIT, which ccxt also asks for).
  MARKET orders by quoteOrderQty (what ccxt sends when a market order is
  given a price) are supported: the quantity is floored to the step.
* Fees are charged in the asset received: buy -> base, sell -> quote.

Simplified:

* One price per symbol, set by the test (`set_prices`), rounded to the
  tick (half-even). Bid = ask = last = that price; there is no book
  depth. A taker fills entirely at that price; a resting LIMIT order fills
  at its own limit price when `set_prices` moves the price through it.
  A symbol with no price has no liquidity (MARKET orders expire unfilled).
* PERCENT_PRICE_BY_SIDE and the MARKET side of NOTIONAL use the current
  price instead of the `avgPriceMins` average.
* One fee rate for makers and takers (`fee`, default 0.1 %).
* Rounding, never in the user's favour: commission rounded UP to 8
  decimals; quote paid by a buy (price x qty) rounded UP to 8 decimals,
  quote received by a sell rounded DOWN. (On the usual USDT markets
  price x qty has at most 8 decimals, so only the commission rounds.)
* No rate limits except the injected ones, no order lists, no STOP /
  LIMIT_MAKER orders (-1116), no self-trade prevention, no user streams.
  Paths the fake does not serve answer 404 with a plain-text body and are
  recorded in `unserved`.

Faults (`inject` / `set_fault_rates`), see TRANSPORT_FAULTS and
ORDER_FAULTS. A transport fault hits the next request to any endpoint (or
to the one named) before it executes. An order fault hits only POST
/api/v3/order, and only an order that passed the parameter and filter
checks, so a fault never hides a filter failure. Queued faults fire
first, oldest first; random ones come from random.Random(seed). Timeouts
hold the answer `hold_ms` (default: the client's timeout + 300 ms)
outside the lock, so other requests go on meanwhile; a client that hung
up is not an error. Everything is thread safe (one lock).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import random
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import ccxt

# ---------------------------------------------------------------- faults

#: Faults that decide what happens to the HTTP exchange itself; by default
#: they hit the next request to any endpoint.
TRANSPORT_FAULTS = (
    "timeout_before_execute",  # hold the response past the client's timeout; never execute
    "arrive_late",  # the request reaches the matcher `hold_ms` late (the client has given up): executed then if still within its recvWindow
    "http_429",  # 429 {"code": -1003, ...} with Retry-After; not executed
    "http_5xx",  # 502/503 with an HTML body, as a gateway would; not executed
)
#: Faults about one order; they only ever apply to POST /api/v3/order.
ORDER_FAULTS = (
    "timeout_after_execute",  # execute fully, then hold the response past the client's timeout
    "http_5xx_after_execute",  # execute fully, then answer 503 (Binance: "execution status UNKNOWN")
    "partial",  # fill 20-80 % (a whole number of steps); the rest EXPIRED (GTC: rests)
    "reject",  # -2010 insufficient balance, though the balance is there; not a filter failure
)
FAULT_KINDS = frozenset(TRANSPORT_FAULTS + ORDER_FAULTS)
_ANSWER_FAULTS = ("timeout_after_execute", "http_5xx_after_execute")
_MATCH_FAULTS = ("partial", "reject")
_HOLDS_BEFORE = {"timeout_before_execute"}
_HOLDS_AFTER = {"timeout_after_execute"}
ORDER_ENDPOINT = ("POST", "/api/v3/order")

# ---------------------------------------------------------------- numbers

_Q8 = Decimal("0.00000001")
_ZERO = Decimal(0)
# Binance's parameter formats.
_DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


def _s(value: Decimal) -> str:
    """Binance's number format: a string with 8 decimals."""
    return f"{value.quantize(_Q8):f}"


def _up8(value: Decimal) -> Decimal:
    return value.quantize(_Q8, rounding=ROUND_UP)


def _down8(value: Decimal) -> Decimal:
    return value.quantize(_Q8, rounding=ROUND_DOWN)


def _dec(value: str | int | Decimal) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"exact decimals only (str, int or Decimal), got float {value!r}")
    return Decimal(str(value))


def _now_ms() -> int:
    return int(time.time() * 1000)


class ApiError(Exception):
    """A Binance error answer: HTTP status plus {"code": ..., "msg": ...}."""

    def __init__(self, status: int, code: int, msg: str, headers: Mapping[str, str] | None = None):
        super().__init__(f"{status} {code} {msg}")
        self.status, self.code, self.msg = status, code, msg
        self.headers = dict(headers or {})


def _missing(name: str) -> ApiError:
    return ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _illegal(name: str, legal: str) -> ApiError:
    return ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


def _insufficient() -> ApiError:
    return ApiError(400, -2010, "Account has insufficient balance for requested action.")


# ---------------------------------------------------------------- state


@dataclass
class _Market:
    id: str
    symbol: str  # ccxt's unified symbol
    base: str
    quote: str
    info: dict[str, Any]
    filters: list[dict[str, Any]]
    base_precision: int
    quote_precision: int

    def filter(self, kind: str) -> dict[str, Any] | None:
        return next((f for f in self.filters if f.get("filterType") == kind), None)

    @property
    def tick(self) -> Decimal:
        price_filter = self.filter("PRICE_FILTER")
        return _dec(price_filter.get("tickSize", "0")) if price_filter else _ZERO

    @property
    def step(self) -> Decimal:
        lot = self.filter("LOT_SIZE")
        return _dec(lot.get("stepSize", "0")) if lot else _ZERO


@dataclass
class _Order:
    order_id: int
    market: _Market
    client_id: str
    side: str  # BUY / SELL
    type: str  # MARKET / LIMIT
    tif: str
    price: Decimal  # limit price, 0 for MARKET
    orig_qty: Decimal
    orig_quote_qty: Decimal
    time: int
    update_time: int
    stp_mode: str
    executed_qty: Decimal = _ZERO
    cum_quote: Decimal = _ZERO
    status: str = "NEW"
    locked: Decimal = _ZERO  # what this resting order still holds locked
    fills: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    def result(self) -> dict[str, Any]:
        """The RESULT part of a new-order answer."""
        return {
            "symbol": self.market.id,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_id,
            "transactTime": self.time,
            "price": _s(self.price),
            "origQty": _s(self.orig_qty),
            "executedQty": _s(self.executed_qty),
            "origQuoteOrderQty": _s(self.orig_quote_qty),
            "cummulativeQuoteQty": _s(self.cum_quote),
            "status": self.status,
            "timeInForce": self.tif,
            "type": self.type,
            "side": self.side,
            "workingTime": self.time,
            "selfTradePreventionMode": self.stp_mode,
        }

    def query(self) -> dict[str, Any]:
        """GET /api/v3/order's shape (also openOrders, allOrders)."""
        return {
            "symbol": self.market.id,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_id,
            "price": _s(self.price),
            "origQty": _s(self.orig_qty),
            "executedQty": _s(self.executed_qty),
            "cummulativeQuoteQty": _s(self.cum_quote),
            "status": self.status,
            "timeInForce": self.tif,
            "type": self.type,
            "side": self.side,
            "stopPrice": _s(_ZERO),
            "icebergQty": _s(_ZERO),
            "time": self.time,
            "updateTime": self.update_time,
            "isWorking": True,
            "workingTime": self.time,
            "origQuoteOrderQty": _s(self.orig_quote_qty),
            "selfTradePreventionMode": self.stp_mode,
        }


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as the server saw it (signature kept: server side)."""

    method: str
    path: str
    query: str
    body: str
    api_key: str | None
    status: int | None  # None: the answer was held past the client's timeout
    fault: str | None


@dataclass
class _Fault:
    kind: str
    times: int
    method: str | None
    path: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or self.path == path)


def _parse_endpoint(kind: str, endpoint: str | None) -> tuple[str | None, str | None]:
    """'POST /api/v3/order' or '/api/v3/order' (any method) or None (the kind's default)."""
    if endpoint is None:
        return ORDER_ENDPOINT if kind in ORDER_FAULTS else (None, None)
    verb, _, path = endpoint.strip().rpartition(" ")
    if not path.startswith("/"):
        raise ValueError(f"endpoint must look like 'POST /api/v3/order' or '/api/v3/order', got {endpoint!r}")
    method = verb.strip().upper() or None
    if kind in ORDER_FAULTS and (method, path) not in (ORDER_ENDPOINT, (None, ORDER_ENDPOINT[1])):
        raise ValueError(f"{kind!r} only applies to POST /api/v3/order, got {endpoint!r}")
    return method, path


# ---------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # headers and body leave at once: no 40 ms delayed-ACK stall per request
    protocol_version = "HTTP/1.1"  # keep-alive, as ccxt's requests session expects
    server_version = "FakeBinance/1"
    timeout = 5  # idle keep-alive connections end, so no thread lingers after stop()
    wbufsize = 1 << 16  # headers and body leave in one write (no Nagle / delayed-ACK stalls)
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self.server.fake._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.fake._handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.fake._handle(self, "DELETE")

    def do_PUT(self) -> None:
        self.server.fake._handle(self, "PUT")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the fake keeps its own log in FakeBinance.requests

    def send_body(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] = {}) -> None:
        """Writes one answer; a client that hung up (it timed out) is not an error."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # BrokenPipeError, ConnectionResetError, ...
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeBinance

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-request (timeouts) is routine here.
        if isinstance(sys.exc_info()[1], OSError):
            return
        self.fake.internal_errors.append(traceback.format_exc())


_Route = Callable[..., Any]  # (params) -> JSON; the order route also takes the fault list

# ---------------------------------------------------------------- the fake


class FakeBinance:
    """Binance spot REST, in process. See the module docstring."""

    def __init__(
        self,
        markets_path: str | Path,
        *,
        api_key: str,
        secret: str,
        balances: Mapping[str, str | int | Decimal],
        prices: Mapping[str, str | int | Decimal],
        fee: Decimal | str = Decimal("0.001"),
        seed: int = 0,
        hold_ms: int | None = None,
    ) -> None:
        """`hold_ms`: how long a timeout fault holds the answer; default the
        longest timeout of the clients made by `client()` plus 300 ms."""
        self.api_key = api_key
        self.secret = secret
        self.fee = _dec(fee)
        self.hold_ms = hold_ms
        #: Added to the server clock (serverTime, the -1021 timestamp check).
        self.time_offset_ms = 0

        raw = json.loads(Path(markets_path).read_text())
        self._markets: dict[str, _Market] = {}
        self._by_symbol: dict[str, _Market] = {}
        for unified in raw.values():
            if not unified.get("spot"):
                continue
            info = unified["info"]
            market = _Market(
                id=info["symbol"],
                symbol=unified["symbol"],
                base=info["baseAsset"],
                quote=info["quoteAsset"],
                info=info,
                filters=list(info.get("filters", [])),
                base_precision=int(info.get("baseAssetPrecision", 8)),
                quote_precision=int(info.get("quoteAssetPrecision", info.get("quotePrecision", 8))),
            )
            self._markets[market.id] = market
            self._by_symbol[market.symbol] = market

        self._lock = threading.RLock()
        self._rng = random.Random(seed)  # faults only, so their draws depend on nothing else
        self._ids = itertools.count(1)  # client ids Binance makes up
        self._free: dict[str, Decimal] = {asset: _dec(v) for asset, v in balances.items()}
        self._locked: dict[str, Decimal] = {asset: _ZERO for asset in self._free}
        self._prices: dict[str, Decimal] = {}
        self._orders: list[_Order] = []
        self._trades: list[dict[str, Any]] = []
        self._next_order_id = 1000 + 1000 * seed
        self._next_trade_id = 5000 + 1000 * seed
        self._queued: list[_Fault] = []
        self._rates: dict[str, float] = {}
        self._rates_endpoint: tuple[str | None, str | None] = (None, None)
        self._client_timeout_ms = 0

        #: Client order id of every order request that reached the matcher
        #: (authenticated, not swallowed by a transport fault), accepted or
        #: rejected, duplicates kept, in arrival order.
        self.submissions: list[str] = []
        #: Client ids submitted again after the fake had accepted an order
        #: with that id (whatever became of either): orders sent twice.
        self.resubmitted: list[str] = []
        self._accepted: set[str] = set()
        #: (client id, filter name) of every -1013 filter failure.
        self.filter_rejections: list[tuple[str, str]] = []
        #: (client id, code, msg) of every rejected order request (filters included).
        self.rejections: list[tuple[str, int, str]] = []
        #: Every request, in arrival order.
        self.requests: list[RequestRecord] = []
        #: (kind, method, path) of every fault that fired.
        self.faults_fired: list[tuple[str, str, str]] = []
        #: "METHOD /path" of requests to paths the fake does not serve.
        self.unserved: list[str] = []
        #: Tracebacks of bugs in the fake (a test should assert it stays empty).
        self.internal_errors: list[str] = []

        self.set_prices(prices)
        self._routes: dict[tuple[str, str], tuple[bool, _Route]] = {
            ("GET", "/api/v3/ping"): (False, lambda p: {}),
            ("GET", "/api/v3/time"): (False, lambda p: {"serverTime": self._server_ms()}),
            ("GET", "/api/v3/exchangeInfo"): (False, self._exchange_info),
            ("GET", "/api/v3/ticker/24hr"): (False, self._ticker_24hr),
            ("GET", "/api/v3/ticker/price"): (False, self._ticker_price),
            ("GET", "/api/v3/ticker/bookTicker"): (False, self._book_ticker),
            ("GET", "/api/v3/account"): (True, self._account),
            ("POST", "/api/v3/order"): (True, self._new_order),
            ("GET", "/api/v3/order"): (True, self._query_order),
            ("DELETE", "/api/v3/order"): (True, self._cancel_order),
            ("GET", "/api/v3/openOrders"): (True, self._open_orders),
            ("GET", "/api/v3/allOrders"): (True, self._all_orders),
            ("GET", "/api/v3/myTrades"): (True, self._my_trades),
        }
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.base_url = ""

    # ------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Serves on 127.0.0.1 (a free port) in a daemon thread; returns the base URL."""
        if self._server is not None:
            return self.base_url
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="fake-binance", daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        """Stops serving; held (timed-out) answers are released at once."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, timeout_ms: int = 2000, **extra: Any) -> ccxt.binance:
        """An unchanged `ccxt.binance` whose API URLs point at this fake.

        Only spot markets are loaded (exchangeInfo only: no margin pairs, no
        sapi currencies). `extra` is deep-merged into the ccxt config, e.g.
        `client(secret="wrong")` or `client(options={...})`.
        """
        if self._server is None:
            self.start()
        with self._lock:
            self._client_timeout_ms = max(self._client_timeout_ms, timeout_ms)
        config = ccxt.Exchange.deep_extend(
            {
                "apiKey": self.api_key,
                "secret": self.secret,
                "enableRateLimit": False,
                "timeout": timeout_ms,
                "options": {
                    "fetchMarkets": {"types": ["spot"]},  # publicGetExchangeInfo only
                    "fetchMargins": False,  # no sapi margin/allPairs calls
                    "fetchCurrencies": False,  # no sapi capital/config/getall call
                },
            },
            extra,
        )
        exchange = ccxt.binance(config)
        exchange.urls["api"] = {
            name: re.sub(r"^https://[^/]*binance[^/]*", self.base_url, url) if isinstance(url, str) else url
            for name, url in exchange.urls["api"].items()
        }
        return exchange

    # ------------------------------------------------------------ test API

    def set_prices(self, prices: Mapping[str, str | int | Decimal]) -> None:
        """Sets current prices ("BTC/USDT" or "BTCUSDT"), rounded to the tick;
        resting LIMIT orders the new price crosses fill at their limit price."""
        with self._lock:
            touched = []
            for name, value in prices.items():
                market = self._market_named(name)
                price = _dec(value)
                if price <= 0:
                    raise ValueError(f"price of {name} must be > 0, got {value!r}")
                if market.tick > 0:  # a whole number of ticks (half-even)
                    price = (price / market.tick).to_integral_value(rounding=ROUND_HALF_EVEN) * market.tick
                self._prices[market.id] = price
                touched.append(market)
            for market in touched:
                self._match_resting(market)

    def price(self, symbol: str) -> Decimal | None:
        with self._lock:
            return self._prices.get(self._market_named(symbol).id)

    def balances(self) -> dict[str, Decimal]:
        """Total (free + locked) per asset."""
        with self._lock:
            return {a: self._free.get(a, _ZERO) + self._locked.get(a, _ZERO) for a in self._assets()}

    def free(self) -> dict[str, Decimal]:
        with self._lock:
            return {a: self._free.get(a, _ZERO) for a in self._assets()}

    def locked(self) -> dict[str, Decimal]:
        with self._lock:
            return {a: self._locked.get(a, _ZERO) for a in self._assets()}

    def deposit(self, asset: str, amount: str | int | Decimal) -> None:
        """Adds `amount` to the free balance of `asset` (negative: withdraws from it)."""
        value = _dec(amount)
        with self._lock:
            if self._free.get(asset, _ZERO) + value < 0:
                raise ValueError(f"cannot withdraw {-value} {asset}: only {self._free.get(asset, _ZERO)} free")
            self._credit(asset, value)

    def sent_twice(self) -> int:
        """How many client order ids reached the matcher again after an
        order with that id had been accepted: orders sent twice. A request
        the exchange refused left no order behind, so sending it again after
        asking for it (and hearing "no such order") is not a second order."""
        with self._lock:
            return len(set(self.resubmitted))

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Every accepted order, oldest first, as GET /api/v3/order shows it."""
        with self._lock:
            return [o.query() for o in self._orders]

    @property
    def trades(self) -> list[dict[str, Any]]:
        """Every fill, oldest first, as /api/v3/myTrades shows it."""
        with self._lock:
            return [dict(t) for t in self._trades]

    def orders_by_client_id(self, client_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [o.query() for o in self._orders if o.client_id == client_id]

    def inject(self, kind: str, times: int = 1, endpoint: str | None = None) -> None:
        """Queues `kind` for the next `times` matching requests.

        `endpoint`: "POST /api/v3/order", "/api/v3/order" (any method), or
        None: POST /api/v3/order for ORDER_FAULTS, any request for
        TRANSPORT_FAULTS. Queued faults fire before random ones, oldest first.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}")
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        method, path = _parse_endpoint(kind, endpoint)
        with self._lock:
            self._queued.append(_Fault(kind, times, method, path))

    def set_fault_rates(self, rates: Mapping[str, float], endpoint: str | None = None) -> None:
        """Draws faults at random (random.Random(seed)): each request gets at
        most one transport fault and, if it is an order, at most one order
        fault. `endpoint` limits the transport faults to one endpoint.
        `set_fault_rates({})` turns them off."""
        for kind, p in rates.items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"rate of {kind} must be in [0, 1], got {p}")
        with self._lock:
            self._rates = dict(rates)
            self._rates_endpoint = _parse_endpoint("http_429", endpoint)

    def clear_faults(self) -> None:
        with self._lock:
            self._queued.clear()
            self._rates = {}

    # ------------------------------------------------------------ internals: helpers

    def _server_ms(self) -> int:
        return _now_ms() + self.time_offset_ms

    def _assets(self) -> list[str]:
        return sorted(set(self._free) | set(self._locked))

    def _market_named(self, name: str) -> _Market:
        market = self._by_symbol.get(name) or self._markets.get(name)
        if market is None:
            raise KeyError(f"no spot market {name!r} in the markets file")
        return market

    def _market_param(self, params: Mapping[str, str], required: bool = True) -> _Market | None:
        symbol = params.get("symbol")
        if not symbol:
            if required:
                raise _missing("symbol")
            return None
        market = self._markets.get(symbol)
        if market is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return market

    def _take_fault(self, kinds: Iterable[str], method: str, path: str) -> str | None:
        """The first queued fault of `kinds` matching the request, else a random draw."""
        kinds = tuple(kinds)
        for fault in self._queued:
            if fault.kind in kinds and fault.matches(method, path):
                fault.times -= 1
                if fault.times == 0:
                    self._queued.remove(fault)
                return fault.kind
        rate_method, rate_path = self._rates_endpoint if kinds == TRANSPORT_FAULTS else ORDER_ENDPOINT
        if not _Fault("", 1, rate_method, rate_path).matches(method, path):
            return None
        for kind in kinds:
            p = self._rates.get(kind, 0.0)
            if p > 0 and self._rng.random() < p:
                return kind
        return None

    def _hold(self) -> None:
        # Past the client's timeout (ccxt's default 10 s if no client() was made).
        hold_ms = self.hold_ms if self.hold_ms is not None else (self._client_timeout_ms or 10_000) + 300
        self._stopping.wait(hold_ms / 1000)

    def _credit(self, asset: str, amount: Decimal) -> None:
        self._free[asset] = self._free.get(asset, _ZERO) + amount
        self._locked.setdefault(asset, _ZERO)

    def _debit(self, asset: str, amount: Decimal) -> None:
        self._free[asset] = self._free.get(asset, _ZERO) - amount
        self._locked.setdefault(asset, _ZERO)
        assert self._free[asset] >= 0, f"fake bug: {asset} free went negative"

    def _lock_funds(self, asset: str, amount: Decimal) -> None:
        self._debit(asset, amount)
        self._locked[asset] += amount

    def _unlock_funds(self, asset: str, amount: Decimal) -> None:
        self._locked[asset] -= amount
        self._credit(asset, amount)

    # ------------------------------------------------------------ internals: HTTP

    def _handle(self, handler: _Handler, method: str) -> None:
        split = urlsplit(handler.path)
        path, query = split.path, split.query
        try:
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length).decode() if length else ""
        except (OSError, ValueError):
            handler.close_connection = True
            return
        api_key = handler.headers.get("X-MBX-APIKEY")
        with self._lock:
            transport = self._take_fault(TRANSPORT_FAULTS, method, path)
            if transport:
                self.faults_fired.append((transport, method, path))

        def record(status: int | None, fault: str | None) -> None:
            with self._lock:
                self.requests.append(RequestRecord(method, path, query, body, api_key, status, fault))

        if transport in _HOLDS_BEFORE:
            record(None, transport)
            self._hold()
            handler.close_connection = True  # the client gave up; nothing was executed
            return
        if transport == "arrive_late":
            self._hold()  # on its way while the client times out, looks the order up, maybe resends
            status, payload, headers = self._dispatch(method, path, query, body, api_key, [])
            record(status, transport)
            handler.close_connection = True  # nobody is listening any more
            return
        if transport == "http_429":
            record(429, transport)
            self._send_json(
                handler,
                429,
                {
                    "code": -1003,
                    "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
                    "Please use WebSocket Streams for live updates to avoid polling the API.",
                },
                {"Retry-After": "1"},
            )
            return
        if transport == "http_5xx":
            with self._lock:
                status = self._rng.choice((502, 503))
            record(status, transport)
            self._send_gateway_error(handler, status)
            return

        order_fault: list[str] = []  # set by _new_order when an order fault fires
        status, payload, headers = self._dispatch(method, path, query, body, api_key, order_fault)
        fault = order_fault[0] if order_fault else None
        if fault in _HOLDS_AFTER:
            record(None, fault)
            self._hold()  # executed; the client times out before the answer comes
            self._send_json(handler, status, payload, headers)
            handler.close_connection = True
            return
        if fault == "http_5xx_after_execute":
            record(503, fault)
            self._send_gateway_error(handler, 503)
            return
        record(status, fault)
        if status == 404 and payload is None:
            handler.send_body(404, f"fake_binance does not serve {method} {path}".encode(), "text/plain")
            return
        self._send_json(handler, status, payload, headers)

    def _send_json(self, handler: _Handler, status: int, payload: Any, headers: Mapping[str, str] = {}) -> None:
        handler.send_body(status, json.dumps(payload).encode(), "application/json;charset=UTF-8", headers)

    def _send_gateway_error(self, handler: _Handler, status: int) -> None:
        reason = {502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")
        html = f"<html><head><title>{status} {reason}</title></head><body><center><h1>{status} {reason}</h1></center></body></html>"
        handler.send_body(status, html.encode(), "text/html")

    def _dispatch(
        self, method: str, path: str, query: str, body: str, api_key: str | None, order_fault: list[str]
    ) -> tuple[int, Any, dict[str, str]]:
        route = self._routes.get((method, path))
        if route is None:
            with self._lock:
                self.unserved.append(f"{method} {path}")
            return 404, None, {}
        signed, handler = route
        try:
            params = self._params(query, body)
            with self._lock:
                if signed:
                    self._authenticate(query, body, params, api_key)
                if (method, path) == ORDER_ENDPOINT:
                    return 200, handler(params, order_fault), {}
                return 200, handler(params), {}
        except ApiError as error:
            return error.status, {"code": error.code, "msg": error.msg}, error.headers
        except Exception:  # noqa: BLE001 - a bug in the fake: answer like Binance's -1000, keep the traceback
            self.internal_errors.append(traceback.format_exc())
            return 500, {"code": -1000, "msg": "An unknown error occurred while processing the request."}, {}

    @staticmethod
    def _params(query: str, body: str) -> dict[str, str]:
        params: dict[str, str] = {}
        for part in (query, body):
            for name, value in parse_qsl(part, keep_blank_values=True):
                if name in params:
                    raise ApiError(400, -1101, "Duplicate values for a parameter detected.")
                params[name] = value
        return params

    def _authenticate(self, query: str, body: str, params: Mapping[str, str], api_key: str | None) -> None:
        if not api_key:
            raise ApiError(401, -2014, "API-key format invalid.")
        if api_key != self.api_key:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        timestamp = params.get("timestamp")
        if not timestamp or not timestamp.isdigit():
            raise _missing("timestamp")
        recv_window = int(params.get("recvWindow") or 5000)
        if recv_window > 60000:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        now = self._server_ms()
        if int(timestamp) > now + 1000:
            raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - int(timestamp) > recv_window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        signature = params.get("signature")
        if not signature:
            raise _missing("signature")
        # Binance signs totalParams = query string + request body, as sent.
        payload = (_strip_signature(query) + _strip_signature(body)).encode()
        expected = hmac.new(self.secret.encode(), payload, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(400, -1022, "Signature for this request is not valid.")

    # ------------------------------------------------------------ market data

    def _exchange_info(self, params: Mapping[str, str]) -> dict[str, Any]:
        return {
            "timezone": "UTC",
            "serverTime": self._server_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            ],
            "exchangeFilters": [],
            "symbols": [m.info for m in self._markets.values()],
        }

    def _ticker_markets(self, params: Mapping[str, str]) -> tuple[list[_Market], bool]:
        """(markets, single) from `symbol` (one object) or `symbols` (a JSON list)."""
        if params.get("symbol"):
            market = self._market_param(params)
            assert market is not None
            return [market], True
        if params.get("symbols"):
            try:
                ids = json.loads(params["symbols"])
            except ValueError:
                raise _illegal("symbols", r'^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$') from None
            markets = []
            for market_id in ids:
                if market_id not in self._markets:
                    raise ApiError(400, -1121, "Invalid symbol.")
                markets.append(self._markets[market_id])
            return markets, False
        return [m for m in self._markets.values() if m.id in self._prices], False

    def _ticker_24hr(self, params: Mapping[str, str]) -> Any:
        markets, single = self._ticker_markets(params)
        now = self._server_ms()
        tickers = []
        for m in markets:
            p = _s(self._prices.get(m.id, _ZERO))
            tickers.append(
                {
                    "symbol": m.id,
                    "priceChange": _s(_ZERO),
                    "priceChangePercent": "0.000",
                    "weightedAvgPrice": p,
                    "prevClosePrice": p,
                    "lastPrice": p,
                    "lastQty": _s(_ZERO),
                    "bidPrice": p,
                    "bidQty": _s(Decimal(1000)),
                    "askPrice": p,
                    "askQty": _s(Decimal(1000)),
                    "openPrice": p,
                    "highPrice": p,
                    "lowPrice": p,
                    "volume": _s(_ZERO),
                    "quoteVolume": _s(_ZERO),
                    "openTime": now - 86_400_000,
                    "closeTime": now,
                    "firstId": -1,
                    "lastId": -1,
                    "count": 0,
                }
            )
        return tickers[0] if single else tickers

    def _ticker_price(self, params: Mapping[str, str]) -> Any:
        markets, single = self._ticker_markets(params)
        tickers = [{"symbol": m.id, "price": _s(self._prices.get(m.id, _ZERO))} for m in markets]
        return tickers[0] if single else tickers

    def _book_ticker(self, params: Mapping[str, str]) -> Any:
        markets, single = self._ticker_markets(params)
        tickers = []
        for m in markets:
            p = _s(self._prices.get(m.id, _ZERO))
            tickers.append({"symbol": m.id, "bidPrice": p, "bidQty": _s(Decimal(1000)), "askPrice": p, "askQty": _s(Decimal(1000))})
        return tickers[0] if single else tickers

    # ------------------------------------------------------------ account

    def _account(self, params: Mapping[str, str]) -> dict[str, Any]:
        omit_zero = params.get("omitZeroBalances", "false").lower() == "true"
        rate = _s(self.fee)
        balances = [
            {"asset": a, "free": _s(self._free.get(a, _ZERO)), "locked": _s(self._locked.get(a, _ZERO))}
            for a in self._assets()
            if not (omit_zero and self._free.get(a, _ZERO) == 0 and self._locked.get(a, _ZERO) == 0)
        ]
        bps = int(self.fee * 10000)
        return {
            "makerCommission": bps,
            "takerCommission": bps,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {"maker": rate, "taker": rate, "buyer": _s(_ZERO), "seller": _s(_ZERO)},
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self._server_ms(),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 354937868,
        }

    # ------------------------------------------------------------ orders

    def _decimal_param(self, params: Mapping[str, str], name: str, places: int) -> Decimal | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        if not _DECIMAL_RE.match(raw):
            raise _illegal(name, _DECIMAL_RE.pattern)
        value = Decimal(raw)
        if value != value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN):
            raise ApiError(400, -1111, f"Parameter '{name}' has too much precision.")
        return value

    def _new_order(self, params: Mapping[str, str], order_fault: list[str]) -> dict[str, Any]:
        cid = params.get("newClientOrderId") or f"web_{next(self._ids):022d}"  # Binance makes one up
        # From here on the request counts as submitted, accepted or not.
        self.submissions.append(cid)
        if cid in self._accepted:
            self.resubmitted.append(cid)
        try:
            order = self._place(params, cid, order_fault)
            self._accepted.add(cid)
            return order
        except ApiError as error:
            self.rejections.append((cid, error.code, error.msg))
            if error.code == -1013 and error.msg.startswith("Filter failure: "):
                self.filter_rejections.append((cid, error.msg.removeprefix("Filter failure: ")))
            raise

    def _place(self, params: Mapping[str, str], cid: str, order_fault: list[str]) -> dict[str, Any]:
        market = self._market_param(params)
        assert market is not None
        side = params.get("side")
        if side not in ("BUY", "SELL"):
            raise _missing("side") if not side else _illegal("side", "BUY, SELL")
        order_type = params.get("type")
        if not order_type:
            raise _missing("type")
        if order_type not in ("MARKET", "LIMIT") or order_type not in market.info.get("orderTypes", []):
            raise ApiError(400, -1116, "Invalid orderType.")
        if not _CLIENT_ID_RE.match(cid):
            raise _illegal("newClientOrderId", r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
        quantity = self._decimal_param(params, "quantity", market.base_precision)
        quote_qty = self._decimal_param(params, "quoteOrderQty", market.quote_precision)
        price = self._decimal_param(params, "price", market.quote_precision)
        tif = params.get("timeInForce")
        current = self._prices.get(market.id)
        if order_type == "LIMIT":
            if not tif:
                raise _missing("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise ApiError(400, -1115, "Invalid timeInForce.")
            if quantity is None:
                raise _missing("quantity")
            if price is None:
                raise _missing("price")
            if quote_qty is not None:
                raise ApiError(400, -1106, "Parameter 'quoteOrderQty' sent when not required.")
            if price <= 0:
                raise ApiError(400, -1013, "Invalid price.")
        else:
            if tif:
                raise ApiError(400, -1106, "Parameter 'timeInForce' sent when not required.")
            if price is not None:
                raise ApiError(400, -1106, "Parameter 'price' sent when not required.")
            if quantity is None and quote_qty is None:
                raise ApiError(400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
            if quantity is not None and quote_qty is not None:
                raise ApiError(400, -1106, "Parameter 'quoteOrderQty' sent when not required.")
            tif = "GTC"  # what Binance reports for MARKET orders
            if quote_qty is not None:
                if quote_qty <= 0:
                    raise ApiError(400, -1013, "Invalid quoteOrderQty.")
                # Binance spends up to quoteOrderQty; the quantity is floored to the step.
                if current is None:
                    quantity = _ZERO
                else:
                    step = market.step
                    raw_qty = quote_qty / current
                    quantity = (raw_qty // step) * step if step > 0 else _down8(raw_qty)
        assert quantity is not None
        if any(o.is_open and o.client_id == cid for o in self._orders):
            raise ApiError(400, -2010, "Duplicate order sent.")

        self._check_filters(market, order_type, side, quantity, price, current)

        # Order faults hit orders that passed the parameter and filter checks
        # (a filter failure is never hidden by a fault): at most one fault
        # about the answer and one about the matching.
        answer_fault = self._take_fault(_ANSWER_FAULTS, *ORDER_ENDPOINT)
        fault = self._take_fault(_MATCH_FAULTS, *ORDER_ENDPOINT)
        for kind in (answer_fault, fault):
            if kind:
                self.faults_fired.append((kind, *ORDER_ENDPOINT))
        if answer_fault:
            order_fault.append(answer_fault)
        if fault == "reject":  # as if the balance check below had failed
            raise _insufficient()

        # Balance, for the whole order, after the filters (as on Binance).
        if side == "BUY":
            reference = price if order_type == "LIMIT" else current
            need = _up8(quantity * reference) if reference is not None else _ZERO
            if self._free.get(market.quote, _ZERO) < need:
                raise _insufficient()
        elif self._free.get(market.base, _ZERO) < quantity:
            raise _insufficient()

        now = self._server_ms()
        order = _Order(
            order_id=self._next_order_id,
            market=market,
            client_id=cid,
            side=side,
            type=order_type,
            tif=tif,
            price=price if order_type == "LIMIT" and price is not None else _ZERO,
            orig_qty=quantity,
            orig_quote_qty=quote_qty or _ZERO,
            time=now,
            update_time=now,
            stp_mode=str(market.info.get("defaultSelfTradePreventionMode", "NONE")),
        )
        self._next_order_id += 1
        self._orders.append(order)
        self._match_taker(order, current, partial=(fault == "partial"))

        response_type = params.get("newOrderRespType") or "FULL"
        if response_type == "ACK":
            return {k: order.result()[k] for k in ("symbol", "orderId", "orderListId", "clientOrderId", "transactTime")}
        result = order.result()
        if response_type == "FULL":
            result["fills"] = [dict(f) for f in order.fills]
        return result

    def _check_filters(
        self, market: _Market, order_type: str, side: str, qty: Decimal, price: Decimal | None, current: Decimal | None
    ) -> None:
        """Binance's symbol filters, in the order the symbol lists them."""
        limit = order_type == "LIMIT"

        def fail(name: str) -> ApiError:
            return ApiError(400, -1013, f"Filter failure: {name}")

        def number(f: Mapping[str, Any], key: str) -> Decimal:
            return _dec(f.get(key) or "0")

        def check_lot(f: Mapping[str, Any], name: str) -> None:
            min_qty, max_qty, step = number(f, "minQty"), number(f, "maxQty"), number(f, "stepSize")
            if (min_qty > 0 and qty < min_qty) or (max_qty > 0 and qty > max_qty):
                raise fail(name)
            if step > 0 and (qty - min_qty) % step != 0:
                raise fail(name)

        for f in market.filters:
            kind = f.get("filterType")
            if kind == "PRICE_FILTER" and limit:
                assert price is not None
                lo, hi, tick = number(f, "minPrice"), number(f, "maxPrice"), number(f, "tickSize")
                if (lo > 0 and price < lo) or (hi > 0 and price > hi) or (tick > 0 and (price - lo) % tick != 0):
                    raise fail(kind)
            elif kind == "PERCENT_PRICE_BY_SIDE" and limit and current is not None:
                assert price is not None
                up, down = ("bidMultiplierUp", "bidMultiplierDown") if side == "BUY" else ("askMultiplierUp", "askMultiplierDown")
                if price > current * number(f, up) or price < current * number(f, down):
                    raise fail(kind)
            elif kind == "PERCENT_PRICE" and limit and current is not None:
                assert price is not None
                if price > current * number(f, "multiplierUp") or price < current * number(f, "multiplierDown"):
                    raise fail(kind)
            elif kind == "LOT_SIZE" or kind == "MARKET_LOT_SIZE" and not limit:
                check_lot(f, kind)
            elif kind == "NOTIONAL":
                reference = price if limit else current
                if reference is None:
                    continue
                notional = reference * qty
                lo, hi = number(f, "minNotional"), number(f, "maxNotional")
                if (limit or f.get("applyMinToMarket")) and lo > 0 and notional < lo:
                    raise fail(kind)
                if (limit or f.get("applyMaxToMarket")) and hi > 0 and notional > hi:
                    raise fail(kind)
            elif kind == "MIN_NOTIONAL":
                reference = price if limit else current
                if reference is not None and (limit or f.get("applyToMarket")) and reference * qty < number(f, "minNotional"):
                    raise fail(kind)
            elif kind == "MAX_NUM_ORDERS":
                open_count = sum(1 for o in self._orders if o.is_open and o.market is market)
                if open_count >= int(f.get("maxNumOrders") or 0) > 0:
                    raise fail(kind)

    def _match_taker(self, order: _Order, current: Decimal | None, partial: bool) -> None:
        """Fills a new order against the current price; the rest rests, or expires."""
        crosses = current is not None and (
            order.type == "MARKET"
            or (order.side == "BUY" and order.price >= current)
            or (order.side == "SELL" and order.price <= current)
        )
        fill_qty = order.orig_qty if crosses else _ZERO
        if crosses and partial:
            step = order.market.step if order.market.step > 0 else _Q8
            steps = int(order.orig_qty / step)
            fraction = Decimal(str(round(self._rng.uniform(0.2, 0.8), 6)))
            k = max(1, min(steps - 1, int(steps * fraction))) if steps > 1 else 0
            fill_qty = step * k
        if order.tif == "FOK" and fill_qty < order.orig_qty:
            fill_qty = _ZERO  # all or nothing
        if fill_qty > 0:
            assert current is not None
            self._fill(order, fill_qty, current, maker=False)
        if order.executed_qty == order.orig_qty:
            order.status = "FILLED"
        elif order.type == "LIMIT" and order.tif == "GTC":
            order.status = "NEW" if order.executed_qty == 0 else "PARTIALLY_FILLED"
            m = order.market
            if order.side == "BUY":
                order.locked = _up8(order.remaining * order.price)
                self._lock_funds(m.quote, order.locked)
            else:
                order.locked = order.remaining
                self._lock_funds(m.base, order.locked)
        else:
            order.status = "EXPIRED"  # MARKET out of liquidity, IOC / FOK leftovers

    def _match_resting(self, market: _Market) -> None:
        """Resting LIMIT orders the current price reaches fill at their limit price."""
        current = self._prices[market.id]
        for order in self._orders:
            if order.market is not market or not order.is_open:
                continue
            if (order.side == "BUY" and current <= order.price) or (order.side == "SELL" and current >= order.price):
                self._fill(order, order.remaining, order.price, maker=True)
                order.status = "FILLED"
                if order.locked:  # rounding left-overs of the lock go back
                    self._unlock_funds(market.quote if order.side == "BUY" else market.base, order.locked)
                    order.locked = _ZERO

    def _fill(self, order: _Order, qty: Decimal, price: Decimal, maker: bool) -> None:
        m = order.market
        now = self._server_ms()
        if order.side == "BUY":
            quote_qty = _up8(qty * price)
            commission, commission_asset = _up8(qty * self.fee), m.base
            if order.locked:  # a resting buy pays from its lock
                self._locked[m.quote] -= quote_qty
                order.locked -= quote_qty
            else:
                self._debit(m.quote, quote_qty)
            self._credit(m.base, qty - commission)
        else:
            quote_qty = _down8(qty * price)
            commission, commission_asset = _up8(quote_qty * self.fee), m.quote
            if order.locked:
                self._locked[m.base] -= qty
                order.locked -= qty
            else:
                self._debit(m.base, qty)
            self._credit(m.quote, quote_qty - commission)
        trade_id = self._next_trade_id
        self._next_trade_id += 1
        order.executed_qty += qty
        order.cum_quote += quote_qty
        order.update_time = now
        order.fills.append(
            {"price": _s(price), "qty": _s(qty), "commission": _s(commission), "commissionAsset": commission_asset, "tradeId": trade_id}
        )
        self._trades.append(
            {
                "symbol": m.id,
                "id": trade_id,
                "orderId": order.order_id,
                "orderListId": -1,
                "price": _s(price),
                "qty": _s(qty),
                "quoteQty": _s(quote_qty),
                "commission": _s(commission),
                "commissionAsset": commission_asset,
                "time": now,
                "isBuyer": order.side == "BUY",
                "isMaker": maker,
                "isBestMatch": True,
            }
        )

    def _find_order(self, params: Mapping[str, str], market: _Market) -> _Order | None:
        order_id, cid = params.get("orderId"), params.get("origClientOrderId")
        if not order_id and not cid:
            raise ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        candidates = [o for o in self._orders if o.market is market]
        if order_id:
            if not order_id.isdigit():
                raise _illegal("orderId", "^[0-9]{1,20}$")
            found = next((o for o in candidates if o.order_id == int(order_id)), None)
            # Both given: the order found by id must also carry the client id.
            return found if found is not None and (not cid or found.client_id == cid) else None
        # A client id can be reused once its order is finished: the latest wins.
        return next((o for o in reversed(candidates) if o.client_id == cid), None)

    def _query_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        market = self._market_param(params)
        assert market is not None
        order = self._find_order(params, market)
        if order is None:
            raise ApiError(400, -2013, "Order does not exist.")
        return order.query()

    def _cancel_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        market = self._market_param(params)
        assert market is not None
        order = self._find_order(params, market)
        if order is None or not order.is_open:
            raise ApiError(400, -2011, "Unknown order sent.")
        if order.locked:
            self._unlock_funds(market.quote if order.side == "BUY" else market.base, order.locked)
            order.locked = _ZERO
        order.status = "CANCELED"
        order.update_time = self._server_ms()
        answer = order.result()
        answer["origClientOrderId"] = order.client_id
        # Binance gives the cancel request its own client id.
        answer["clientOrderId"] = params.get("newClientOrderId") or f"cancel_{next(self._ids):022d}"
        answer["transactTime"] = order.update_time
        return answer

    def _open_orders(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        market = self._market_param(params, required=False)
        return [o.query() for o in self._orders if o.is_open and (market is None or o.market is market)]

    def _limit(self, params: Mapping[str, str], default: int = 500, most: int = 1000) -> int:
        raw = params.get("limit")
        return min(int(raw), most) if raw and raw.isdigit() else default

    def _all_orders(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        market = self._market_param(params)
        from_id = int(params.get("orderId") or 0)
        orders = [o.query() for o in self._orders if o.market is market and o.order_id >= from_id]
        return orders[: self._limit(params)] if from_id else orders[-self._limit(params) :]

    def _my_trades(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        market = self._market_param(params)
        assert market is not None
        trades = [t for t in self._trades if t["symbol"] == market.id]
        if params.get("orderId"):
            trades = [t for t in trades if str(t["orderId"]) == params["orderId"]]
        if params.get("fromId"):
            trades = [t for t in trades if t["id"] >= int(params["fromId"])]
        start, end = params.get("startTime"), params.get("endTime")
        if start:
            trades = [t for t in trades if t["time"] >= int(start)]
        if end:
            trades = [t for t in trades if t["time"] <= int(end)]
        limit = self._limit(params)
        return [dict(t) for t in (trades[:limit] if params.get("fromId") else trades[-limit:])]


def _strip_signature(part: str) -> str:
    """`part` without its signature=... parameter, byte for byte otherwise."""
    stripped = re.sub(r"(^|&)signature=[^&]*", "", part)
    return stripped[1:] if stripped.startswith("&") and not part.startswith("&") else stripped
