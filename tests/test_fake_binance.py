"""Tests of the Binance fake itself, driven by ccxt's own, unchanged `ccxt.binance`.

They pin down what the fake answers and, as important for the bot built on
it, how ccxt turns each answer (and each fault) into results and exception
classes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import ccxt
import pytest
import rebal

from .fake_binance import FakeBinance

MARKETS = Path(__file__).resolve().parents[2] / "shared" / "data" / "markets" / "ccxt_binance_static.json"
KEY, SECRET = "test-api-key", "test-secret"
TIMEOUT_MS = 300  # the client timeout in the fault tests; held answers last 600 ms
D = Decimal


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    if not MARKETS.exists():
        pytest.fail(f"test data missing: {MARKETS}")
    with FakeBinance(
        MARKETS,
        api_key=KEY,
        secret=SECRET,
        balances={"USDT": "10000", "BTC": "0.1", "ETH": "2"},
        prices={"BTC/USDT": "50000.00", "ETHUSDT": "2500.00"},
        seed=7,
    ) as server:
        yield server
    # Whatever a test did, the fake itself never broke and ccxt never asked
    # for an endpoint the fake does not serve.
    assert server.internal_errors == []
    assert server.unserved == []


@pytest.fixture
def ex(fake: FakeBinance) -> ccxt.binance:
    exchange = fake.client(timeout_ms=TIMEOUT_MS)
    exchange.load_markets()
    return exchange


def last_path(fake: FakeBinance) -> str:
    record = fake.requests[-1]
    return f"{record.method} {record.path}"


# ---------------------------------------------------------------- market data, account


def test_load_markets_gives_the_spot_markets_with_their_real_filters(fake: FakeBinance) -> None:
    exchange = fake.client()
    markets = exchange.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "ADA/USDT", "LTC/USDT", "XRP/USDT", "DOGE/USDT", "TRX/USDT"}
    assert all(m["spot"] for m in markets.values())
    # One request, exchangeInfo: no margin pairs, no sapi currencies.
    assert [f"{r.method} {r.path}" for r in fake.requests] == ["GET /api/v3/exchangeInfo"]
    btc = rebal.Market.from_ccxt(exchange.markets["BTC/USDT"])
    assert btc.step == D("0.00001")
    assert btc.min_notional == D("5")
    assert btc.price_tick == D("0.01")


def test_fetch_balance_tickers_and_time(fake: FakeBinance, ex: ccxt.binance) -> None:
    balance = ex.fetch_balance()
    assert last_path(fake) == "GET /api/v3/account"
    assert (balance["USDT"]["free"], balance["USDT"]["used"], balance["USDT"]["total"]) == (10000, 0, 10000)
    assert balance["BTC"]["free"] == 0.1
    assert balance["info"]["balances"][0] == {"asset": "BTC", "free": "0.10000000", "locked": "0.00000000"}

    tickers = ex.fetch_tickers(["BTC/USDT", "ETH/USDT"])
    assert last_path(fake) == "GET /api/v3/ticker/24hr"
    assert fake.requests[-1].query == "symbols=%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D"
    assert set(tickers) == {"BTC/USDT", "ETH/USDT"}
    assert tickers["ETH/USDT"]["last"] == tickers["ETH/USDT"]["bid"] == tickers["ETH/USDT"]["ask"] == 2500

    fake.set_prices({"BTC/USDT": "61234.567"})  # rounded to the 0.01 tick
    ticker = ex.fetch_ticker("BTC/USDT")
    assert fake.requests[-1].query == "symbol=BTCUSDT"
    assert ticker["info"]["lastPrice"] == "61234.57000000"
    assert fake.price("BTC/USDT") == D("61234.57")

    assert abs(ex.fetch_time() - ex.milliseconds()) < 5000
    assert last_path(fake) == "GET /api/v3/time"


# ---------------------------------------------------------------- orders


def test_market_buy_moves_balances_exactly(fake: FakeBinance, ex: ccxt.binance) -> None:
    order = ex.create_order("BTC/USDT", "market", "buy", "0.00123", params={"newClientOrderId": "rb1-1-0"})
    assert last_path(fake) == "POST /api/v3/order"
    assert "newOrderRespType=FULL" in fake.requests[-1].body
    cost, commission = D("0.00123") * D("50000"), D("0.00000123")  # fee 0.1 %, in BTC (received)
    assert fake.balances() == {"BTC": D("0.1") + D("0.00123") - commission, "ETH": D("2"), "USDT": D("10000") - cost}
    assert (order["id"], order["clientOrderId"], order["status"]) == (str(fake.orders[0]["orderId"]), "rb1-1-0", "closed")
    assert (order["amount"], order["filled"], order["cost"], order["average"]) == (0.00123, 0.00123, 61.5, 50000)
    # FULL answer: ccxt parses the fills into trades and sums their fees.
    [trade] = order["trades"]
    assert trade["info"] == {
        "price": "50000.00000000",
        "qty": "0.00123000",
        "commission": "0.00000123",
        "commissionAsset": "BTC",
        "tradeId": fake.trades[0]["id"],
    }
    assert (trade["price"], trade["amount"], trade["cost"]) == (50000, 0.00123, 61.5)
    assert trade["fee"] == {"currency": "BTC", "cost": 1.23e-06}
    assert order["fee"] == {"currency": "BTC", "cost": 1.23e-06}
    assert fake.submissions == ["rb1-1-0"] and fake.sent_twice() == 0


def test_deposit_funds_a_later_order(fake: FakeBinance, ex: ccxt.binance) -> None:
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("BTC/USDT", "market", "buy", "0.3", params={"newClientOrderId": "big"})
    fake.deposit("USDT", "5000")
    fake.deposit("SOL", "1.5")  # a new asset appears in the account
    assert ex.fetch_balance()["SOL"]["free"] == 1.5
    ex.create_order("BTC/USDT", "market", "buy", "0.3", params={"newClientOrderId": "big"})
    assert fake.balances()["USDT"] == D("0")
    with pytest.raises(ValueError):
        fake.deposit("BTC", "-1")


def test_market_sell_charges_the_fee_in_quote(fake: FakeBinance, ex: ccxt.binance) -> None:
    order = ex.create_order("ETH/USDT", "market", "sell", "0.5", params={"newClientOrderId": "s-1"})
    proceeds = D("0.5") * D("2500")
    commission = proceeds * D("0.001")
    assert fake.balances()["ETH"] == D("1.5")
    assert fake.balances()["USDT"] == D("10000") + proceeds - commission
    assert order["fee"] == {"currency": "USDT", "cost": 1.25}
    [trade] = fake.trades
    assert (trade["qty"], trade["quoteQty"], trade["commission"]) == ("0.50000000", "1250.00000000", "1.25000000")
    assert trade["commissionAsset"] == "USDT"
    assert (trade["isBuyer"], trade["isMaker"]) == (False, False)


def test_commission_rounds_up_to_8_decimals(fake: FakeBinance, ex: ccxt.binance) -> None:
    fake.set_prices({"ETH/USDT": "2500.01"})
    ex.create_order("ETH/USDT", "market", "sell", "0.0037", params={"newClientOrderId": "r-1"})
    # 0.0037 * 2500.01 = 9.250037; its 0.1 % = 0.009250037 -> 0.00925004 (up).
    assert fake.trades[-1]["commission"] == "0.00925004"
    assert fake.balances()["USDT"] == D("10000") + D("9.250037") - D("0.00925004")


def test_limit_ioc_buy_fills_at_the_current_price_or_expires(fake: FakeBinance, ex: ccxt.binance) -> None:
    order = ex.create_order("BTC/USDT", "limit", "buy", "0.002", 50100, params={"timeInForce": "IOC", "newClientOrderId": "ioc-1"})
    assert "timeInForce=IOC" in fake.requests[-1].body
    assert (order["status"], order["price"], order["average"], order["filled"]) == ("closed", 50100, 50000, 0.002)
    assert fake.balances()["USDT"] == D("9900")  # paid the current price, not the limit
    assert fake.locked()["USDT"] == 0

    order = ex.create_order("BTC/USDT", "limit", "buy", "0.002", 49000, params={"timeInForce": "IOC", "newClientOrderId": "ioc-2"})
    assert (order["status"], order["filled"], order["trades"]) == ("expired", 0, [])
    assert fake.balances()["USDT"] == D("9900")


def test_limit_gtc_rests_locks_then_fills_or_cancels(fake: FakeBinance, ex: ccxt.binance) -> None:
    order = ex.create_order("BTC/USDT", "limit", "buy", "0.002", 49000, params={"newClientOrderId": "gtc-1"})
    assert order["status"] == "open"
    assert fake.locked()["USDT"] == D("98") and fake.free()["USDT"] == D("9902")
    assert [o["clientOrderId"] for o in ex.fetch_open_orders("BTC/USDT")] == ["gtc-1"]
    assert last_path(fake) == "GET /api/v3/openOrders"

    fake.set_prices({"BTC/USDT": "48500"})  # through the limit: fills at 49000, as a maker
    assert ex.fetch_order(order["id"], "BTC/USDT")["status"] == "closed"
    assert fake.trades[-1]["isMaker"] is True and fake.trades[-1]["price"] == "49000.00000000"
    assert fake.balances()["USDT"] == D("9902") and fake.locked()["USDT"] == 0

    ex.create_order("ETH/USDT", "limit", "sell", "1", 2600, params={"newClientOrderId": "gtc-2"})
    assert fake.locked()["ETH"] == D("1")
    cancelled = ex.cancel_order(None, "ETH/USDT", {"origClientOrderId": "gtc-2"})
    assert (fake.requests[-1].method, fake.requests[-1].path) == ("DELETE", "/api/v3/order")
    assert cancelled["status"] == "canceled"
    # Binance names the cancel request itself in clientOrderId; the order's id is origClientOrderId.
    assert cancelled["info"]["origClientOrderId"] == "gtc-2"
    assert fake.locked()["ETH"] == 0 and fake.balances()["ETH"] == D("2")
    assert ex.fetch_open_orders("BTC/USDT") == []


def test_fetch_order_by_client_id_and_its_trades(fake: FakeBinance, ex: ccxt.binance) -> None:
    placed = ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "rb9-3-1"})
    by_cid = ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "rb9-3-1"})
    assert last_path(fake) == "GET /api/v3/order"
    assert "origClientOrderId=rb9-3-1" in fake.requests[-1].query and "orderId" not in fake.requests[-1].query
    assert (by_cid["id"], by_cid["status"], by_cid["filled"], by_cid["cost"]) == (placed["id"], "closed", 0.001, 50)
    # GET /order carries no fills: no trades, no fee there.
    assert (by_cid["trades"], by_cid["fee"]) == ([], None)
    # ccxt also accepts params={"clientOrderId": ...} and sends origClientOrderId.
    assert ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "rb9-3-1"})["id"] == placed["id"]
    assert ex.fetch_order(placed["id"], "BTC/USDT")["clientOrderId"] == "rb9-3-1"

    ex.create_order("BTC/USDT", "market", "buy", "0.002", params={"newClientOrderId": "other"})
    trades = ex.fetch_order_trades(placed["id"], "BTC/USDT")
    assert last_path(fake) == "GET /api/v3/myTrades" and f"orderId={placed['id']}" in fake.requests[-1].query
    assert [(t["order"], t["amount"], t["fee"]["cost"], t["takerOrMaker"]) for t in trades] == [(placed["id"], 0.001, 1e-06, "taker")]
    assert ex.fetch_my_trades("BTC/USDT", params={"orderId": placed["id"]}) == trades
    assert len(ex.fetch_my_trades("BTC/USDT")) == 2


def test_each_filter_failure_is_refused_and_counted(fake: FakeBinance, ex: ccxt.binance) -> None:
    def raw(cid: str, **fields: str) -> Callable[[], object]:
        # ccxt truncates amounts and rounds prices to the market's precision
        # before sending, so a step or tick violation can only be sent raw.
        return lambda: ex.privatePostOrder({"symbol": "BTCUSDT", "newClientOrderId": cid, **fields})

    def order(cid: str, kind: str, side: str, amount: str, price: float | None = None) -> Callable[[], object]:
        return lambda: ex.create_order("BTC/USDT", kind, side, amount, price, {"newClientOrderId": cid})

    gtc = {"type": "LIMIT", "timeInForce": "GTC"}
    cases = [
        # (client id, call, ccxt class, filter)
        ("off-step", raw("off-step", side="BUY", type="MARKET", quantity="0.000105"), ccxt.InvalidOrder, "LOT_SIZE"),
        ("over-maxQty", raw("over-maxQty", side="SELL", quantity="9001", price="50000", **gtc), ccxt.InvalidOrder, "LOT_SIZE"),
        ("market-over-max", order("market-over-max", "market", "sell", "128.6"), ccxt.InvalidOrder, "MARKET_LOT_SIZE"),
        ("off-tick", raw("off-tick", side="BUY", quantity="0.001", price="49999.995", **gtc), ccxt.InvalidOrder, "PRICE_FILTER"),
        ("buy-over-5x", order("buy-over-5x", "limit", "buy", "0.001", 250000.01), ccxt.InvalidOrder, "PERCENT_PRICE_BY_SIDE"),
        ("sell-under-0.2x", order("sell-under-0.2x", "limit", "sell", "0.001", 9999.99), ccxt.InvalidOrder, "PERCENT_PRICE_BY_SIDE"),
        # NOTIONAL: ccxt's binance maps code -1013 to BadRequest, not InvalidOrder
        # (LOT_SIZE / PRICE_FILTER / PERCENT_PRICE_BY_SIDE are matched by name).
        ("market-under-5", order("market-under-5", "market", "buy", "0.00009"), ccxt.BadRequest, "NOTIONAL"),
        ("limit-under-5", order("limit-under-5", "limit", "buy", "0.0001", 49000), ccxt.BadRequest, "NOTIONAL"),
        # 200 BTC is an insufficient balance too, but the filters come first.
        ("limit-over-max", order("limit-over-max", "limit", "buy", "200", 50000), ccxt.BadRequest, "NOTIONAL"),
    ]
    for cid, call, error, name in cases:
        with pytest.raises(error, match=f"Filter failure: {name}\\b"):
            call()
        assert fake.filter_rejections[-1] == (cid, name)
        assert fake.rejections[-1] == (cid, -1013, f"Filter failure: {name}")
    assert len(fake.filter_rejections) == len(cases)
    assert fake.orders == [] and fake.balances() == {"BTC": D("0.1"), "ETH": D("2"), "USDT": D("10000")}
    # A MARKET order over maxNotional (128 * 80000 > 9e6) passes the filters,
    # as applyMaxToMarket is false for BTCUSDT, and fails on the balance.
    fake.set_prices({"BTC/USDT": "80000"})
    with pytest.raises(ccxt.InsufficientFunds):
        order("big", "market", "sell", "128")()
    assert len(fake.filter_rejections) == len(cases)


def test_other_rejections_are_not_filter_failures(fake: FakeBinance, ex: ccxt.binance) -> None:
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("BTC/USDT", "market", "buy", "0.3", params={"newClientOrderId": "poor"})  # 15000 USDT
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("ETH/USDT", "limit", "sell", "2.1", 2500, params={"newClientOrderId": "poor2"})
    ex.create_order("BTC/USDT", "limit", "buy", "0.001", 40000, params={"newClientOrderId": "dup"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent."):
        ex.create_order("BTC/USDT", "limit", "buy", "0.001", 40000, params={"newClientOrderId": "dup"})
    ex.cancel_order(None, "BTC/USDT", {"origClientOrderId": "dup"})
    # As on Binance, only an *open* order's client id is refused.
    ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "dup"})
    assert fake.sent_twice() == 1 and fake.submissions.count("dup") == 3
    with pytest.raises(ccxt.BadRequest, match="newClientOrderId"):  # -1100: over 36 characters
        ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "x" * 37})
    with pytest.raises(ccxt.BadSymbol):
        ex.privateGetOrder({"symbol": "NOPEUSDT", "orderId": "1"})
    assert fake.filter_rejections == []
    assert [code for _, code, _ in fake.rejections] == [-2010, -2010, -2010, -1100]


def test_unknown_order_is_order_not_found(fake: FakeBinance, ex: ccxt.binance) -> None:
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        ex.fetch_order("424242", "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "never-sent"})
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):  # DELETE answers -2011 "Unknown order sent."
        ex.cancel_order("424242", "BTC/USDT")
    placed = ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "done"})
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):  # a finished order cannot be cancelled
        ex.cancel_order(placed["id"], "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound):  # an order of another symbol
        ex.fetch_order(placed["id"], "ETH/USDT")


def test_market_order_with_a_price_is_sent_as_quote_order_qty(fake: FakeBinance, ex: ccxt.binance) -> None:
    # ccxt's binance turns amount * price into quoteOrderQty for a market
    # order given a price (truncated to the price precision: 49.999 -> 49.99);
    # Binance then floors the quantity to the step.
    order = ex.create_order("BTC/USDT", "market", "buy", "0.001", 49999, params={"newClientOrderId": "q-1"})
    assert "quoteOrderQty=49.99&" in fake.requests[-1].body and "quantity=" not in fake.requests[-1].body
    assert (order["filled"], order["cost"]) == (0.00099, 49.5)


def test_strings_in_and_strings_out_with_number_str(fake: FakeBinance) -> None:
    exchange = fake.client(timeout_ms=TIMEOUT_MS)
    exchange.number = str  # ccxt's parsers then return strings, exact
    exchange.load_markets()
    order = exchange.create_order("ETH/USDT", "market", "sell", "0.0123", params={"newClientOrderId": "str-1"})
    assert (order["filled"], order["cost"], order["fee"]) == ("0.01230000", "30.75000000", {"currency": "USDT", "cost": "0.03075000"})
    assert exchange.fetch_balance()["USDT"]["free"] == "10030.71925000"
    assert exchange.markets["ETH/USDT"]["precision"]["amount"] == "0.00010000"


# ---------------------------------------------------------------- auth


def test_wrong_secret_or_key_is_an_authentication_error(fake: FakeBinance) -> None:
    wrong_secret = fake.client(timeout_ms=TIMEOUT_MS, secret="not-the-secret")
    wrong_secret.load_markets()  # public: fine
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        wrong_secret.fetch_balance()
    wrong_key = fake.client(timeout_ms=TIMEOUT_MS, apiKey="not-the-key")
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        wrong_key.fetch_balance()
    # ccxt quirk: after one successful private call, -2015 becomes DDoSProtection.
    good = fake.client(timeout_ms=TIMEOUT_MS)
    good.fetch_balance()
    good.apiKey = "not-the-key"
    with pytest.raises(ccxt.DDoSProtection, match="-2015"):
        good.fetch_balance()
    # The server saw signatures (server side); the wrong ones were refused.
    assert all("signature=" in r.query for r in fake.requests if r.path == "/api/v3/account")


def test_stale_timestamp_is_invalid_nonce(fake: FakeBinance, ex: ccxt.binance) -> None:
    fake.time_offset_ms = 20_000  # the server clock runs ahead: ccxt's timestamp falls out of its 10 s recvWindow
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        ex.fetch_balance()


# ---------------------------------------------------------------- faults


def test_timeout_after_execute_leaves_the_order_executed(fake: FakeBinance, ex: ccxt.binance) -> None:
    fake.inject("timeout_after_execute")
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "t-after"})
    found = ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "t-after"})
    assert (found["status"], found["filled"]) == ("closed", 0.001)
    assert fake.balances()["USDT"] == D("9950")
    assert fake.submissions == ["t-after"]
    # Sending it again executes it again: exactly the double send a bot must avoid.
    ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "t-after"})
    assert fake.sent_twice() == 1 and len(fake.orders_by_client_id("t-after")) == 2


def test_timeout_before_execute_leaves_nothing(fake: FakeBinance, ex: ccxt.binance) -> None:
    fake.inject("timeout_before_execute")
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "t-before"})
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "t-before"})
    assert fake.submissions == [] and fake.orders == []
    assert fake.balances()["USDT"] == D("10000")
    assert fake.requests[-2].status is None and fake.requests[-2].fault == "timeout_before_execute"


def test_http_429_is_ddos_protection_with_retry_after(fake: FakeBinance, ex: ccxt.binance) -> None:
    fake.inject("http_429")
    # binance.handle_errors raises DDoSProtection for 418/429 before reading
    # the -1003 body: not RateLimitExceeded (both are NetworkError).
    with pytest.raises(ccxt.DDoSProtection, match="-1003"):
        ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "rl"})
    assert ex.last_response_headers["Retry-After"] == "1"
    assert fake.orders == [] and fake.submissions == []
    ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "rl"})  # the retry works


def test_http_5xx_is_exchange_not_available(fake: FakeBinance, ex: ccxt.binance) -> None:
    fake.inject("http_5xx", times=2)
    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "gw"})
    assert fake.orders == [] and {r.status for r in fake.requests[-2:]} <= {502, 503}
    fake.inject("http_5xx_after_execute")
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "gw"})
    assert ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "gw"})["status"] == "closed"


def test_partial_fill_expires_the_rest(fake: FakeBinance, ex: ccxt.binance) -> None:
    fake.inject("partial", times=2)
    order = ex.create_order("BTC/USDT", "market", "buy", "0.01", params={"newClientOrderId": "part-1"})
    filled = D(order["info"]["executedQty"])
    assert order["status"] == "expired" and order["info"]["status"] == "EXPIRED"
    assert D("0.002") <= filled <= D("0.008") and filled % D("0.00001") == 0
    assert sum(D(t["info"]["qty"]) for t in order["trades"]) == filled
    assert fake.balances()["USDT"] == D("10000") - filled * 50000
    assert fake.balances()["BTC"] == D("0.1") + filled * D("0.999")

    order = ex.create_order("ETH/USDT", "limit", "sell", "1", 2400, params={"timeInForce": "IOC", "newClientOrderId": "part-2"})
    assert order["status"] == "expired" and 0.2 <= order["filled"] <= 0.8


def test_reject_is_insufficient_funds_and_not_a_filter_failure(fake: FakeBinance, ex: ccxt.binance) -> None:
    fake.inject("reject")
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "rej"})
    assert fake.filter_rejections == [] and fake.rejections == [("rej", -2010, "Account has insufficient balance for requested action.")]
    assert fake.submissions == ["rej"] and fake.orders == []


def test_faults_on_order_lookups(fake: FakeBinance, ex: ccxt.binance) -> None:
    ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "look"})
    fake.inject("http_429", endpoint="GET /api/v3/order")
    fake.inject("timeout_before_execute", endpoint="GET /api/v3/order")
    fake.inject("http_5xx", endpoint="/api/v3/myTrades")
    ex.fetch_balance()  # other endpoints are untouched
    with pytest.raises(ccxt.DDoSProtection):
        ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "look"})
    with pytest.raises(ccxt.RequestTimeout):
        ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "look"})
    assert ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "look"})["status"] == "closed"
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_my_trades("BTC/USDT")
    assert [kind for kind, _, _ in fake.faults_fired] == ["http_429", "timeout_before_execute", "http_5xx"]
    with pytest.raises(ValueError):
        fake.inject("partial", endpoint="GET /api/v3/order")  # order faults only fit POST /api/v3/order
    with pytest.raises(ValueError):
        fake.inject("lightning")


def test_random_faults_are_reproducible_from_the_seed() -> None:
    def run(seed: int) -> list[str]:
        with FakeBinance(MARKETS, api_key=KEY, secret=SECRET, balances={"USDT": "100000"}, prices={"BTC/USDT": "50000"}, seed=seed) as fake:
            exchange = fake.client(timeout_ms=TIMEOUT_MS)
            exchange.load_markets()
            fake.set_fault_rates({"http_429": 0.2, "http_5xx": 0.2, "partial": 0.3, "reject": 0.2})
            outcomes = []
            for i in range(30):
                try:
                    order = exchange.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": f"r{i}"})
                    outcomes.append(order["info"]["status"])
                except ccxt.BaseError as error:
                    outcomes.append(type(error).__name__)
            fake.set_fault_rates({})
            assert exchange.fetch_balance()["USDT"]["free"] > 0  # rates off: clean again
            assert fake.internal_errors == []
            return outcomes

    first = run(3)
    assert first == run(3)
    assert {"FILLED", "EXPIRED", "DDoSProtection", "ExchangeNotAvailable", "InsufficientFunds"} <= set(first)
    assert first != run(4)


def test_concurrent_clients_and_a_held_answer_do_not_block_each_other(fake: FakeBinance, ex: ccxt.binance) -> None:
    fake.inject("timeout_after_execute")
    errors: list[str] = []

    def held() -> None:
        try:
            ex.create_order("BTC/USDT", "market", "buy", "0.001", params={"newClientOrderId": "held"})
        except ccxt.RequestTimeout:
            errors.append("timeout")

    def trader(n: int) -> None:
        client = fake.client(timeout_ms=2000)
        client.load_markets()
        for i in range(5):
            client.create_order("ETH/USDT", "market", "sell", "0.01", params={"newClientOrderId": f"c{n}-{i}"})

    holder = threading.Thread(target=held)
    holder.start()
    time.sleep(0.05)  # the held order is executed and its answer is being held
    started = time.monotonic()
    traders = [threading.Thread(target=trader, args=(n,)) for n in range(4)]
    for thread in traders:
        thread.start()
    for thread in traders:
        thread.join()
    assert time.monotonic() - started < 1.0
    holder.join()
    assert errors == ["timeout"]
    assert len(fake.orders) == 21 and fake.sent_twice() == 0
    # 20 sells of 0.01 ETH at 2500, 0.1 % fee in USDT; one buy of 0.001 BTC.
    assert fake.balances() == {"BTC": D("0.100999"), "ETH": D("1.8"), "USDT": D("10000") + 20 * (D("25") - D("0.025")) - 50}
