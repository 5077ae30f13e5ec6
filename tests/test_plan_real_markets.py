"""Plans on real exchange rules (../shared/data/markets), checked against the
exchanges' own filters, and funding in BTC against a real cross pair."""

from __future__ import annotations

import csv
import random
from decimal import Decimal
from typing import Any

import pytest

import rebal
from rebal import Market

from .conftest import shared
from .oracle import dec, fill

# Prices near each market's price band in the fixture's era.
BINANCE_PRICES = {"BTC": 43_210.55, "ETH": 2_301.17, "ADA": 0.5123, "LTC": 71.33, "XRP": 0.6172, "DOGE": 0.08871, "TRX": 0.1049}


def _check_binance_filters(order: rebal.Order, raw: dict[str, Any]) -> None:
    f = {x["filterType"]: x for x in raw["info"]["filters"]}
    lot, market_lot, notional = f["LOT_SIZE"], f["MARKET_LOT_SIZE"], f["NOTIONAL"]
    step = Decimal(lot["stepSize"])
    assert (order.amount - Decimal(lot["minQty"])) % step == 0, order
    assert Decimal(lot["minQty"]) <= order.amount <= Decimal(lot["maxQty"]), order
    assert order.amount <= Decimal(market_lot["maxQty"]), order
    assert order.amount * dec(order.price) >= Decimal(notional["minNotional"]), order
    assert order.amount.normalize().as_tuple().exponent >= step.normalize().as_tuple().exponent  # type: ignore[operator]


@pytest.mark.parametrize("seed", range(200))
def test_plans_pass_binance_filters(binance_markets: dict[str, Any], seed: int) -> None:
    rng = random.Random(seed)
    spot = {m["base"]: m for m in binance_markets.values() if m.get("spot")}
    chosen = rng.sample(sorted(spot), rng.randint(2, 7))
    markets = [Market.from_ccxt(spot[a]) for a in chosen]
    by_base = {m.base: m for m in markets}
    raw_weights = [rng.randint(1, 20) for _ in chosen]
    targets = {a: w / sum(raw_weights) for a, w in zip(chosen, raw_weights)}
    holdings = {a: by_base[a].amount_to_precision(rng.uniform(0, 3_000) / BINANCE_PRICES[a]) for a in chosen}
    holdings["USDT"] = Decimal(str(round(rng.uniform(0, 2_000), 2)))
    p = rebal.plan(holdings, BINANCE_PRICES, targets, markets, threshold=rng.choice([None, 0.01, 0.05]))
    for order in p.orders:
        _check_binance_filters(order, spot[order.asset])
        if order.side == "sell":
            assert order.amount <= holdings[order.asset]
    after = fill(p, holdings, "USDT", by_base)
    assert after["USDT"] >= 0
    assert all(v >= 0 for v in after.values())


def test_plans_pass_coinbase_rules(coinbase_markets: dict[str, Any]) -> None:
    usdt = {m["base"]: m for m in coinbase_markets.values() if m["quote"] == "USDT"}
    markets = [Market.from_ccxt(m) for m in usdt.values()]
    prices = {"BTC": 64_000.0, "ETH": 3_100.0, "ADA": 0.45, "XRP": 0.52, "DOGE": 0.12}
    holdings = {"BTC": "0.05", "ETH": "0.1", "ADA": "1000", "XRP": "0", "DOGE": "2500.5", "USDT": "250"}
    targets = {a: 0.2 for a in prices}
    p = rebal.plan(holdings, prices, targets, markets)
    assert p.orders
    for o in p.orders:
        raw = usdt[o.asset]
        assert o.amount % Decimal(repr(raw["precision"]["amount"])) == 0
        assert o.amount * dec(o.price) >= Decimal(str(raw["limits"]["cost"]["min"]))
        assert o.fee == pytest.approx(o.notional * 0.006)
    after = fill(p, {k: Decimal(v) for k, v in holdings.items()}, "USDT", {m.base: m for m in markets})
    assert after["USDT"] >= 0


def _first_close(name: str) -> float:
    with shared("hourly_triangle_2019", name).open() as f:
        rows = [r for r in csv.reader(f) if r and r[0][:1].isdigit()]
    header_close = 5  # Date,Symbol,Open,High,Low,Close,...
    return float(rows[-1][header_close])  # oldest row: files are newest first


def test_funding_in_btc_on_a_real_cross_pair(ethbtc_symbol_info: dict[str, Any]) -> None:
    """A portfolio funded in BTC: ETH and LTC against BTC, real ETH/BTC
    filters, real 2019 closes from the hourly triangle data."""
    eth = Market.from_ccxt({"symbol": "ETH/BTC", "base": "ETH", "quote": "BTC", "info": ethbtc_symbol_info, "taker": 0.001})
    ltc = Market("LTC/BTC", "LTC", "BTC", "0.01", min_amount="0.01", min_notional="0.0001", taker_fee=0.001)
    prices = {"ETH": _first_close("Binance_ETHBTC_1h.csv"), "LTC": _first_close("Binance_LTCBTC_1h.csv")}
    assert 0.01 < prices["ETH"] < 0.1 and 0.005 < prices["LTC"] < 0.05
    p = rebal.plan({"BTC": "0.5"}, prices, {"ETH": 0.6, "LTC": 0.4}, [eth, ltc], quote="BTC")
    assert [o.side for o in p.orders] == ["buy", "buy"]
    assert all(o.amount % Decimal("0.001") == 0 for o in p.orders)
    after = fill(p, {"BTC": Decimal("0.5")}, "BTC", {"ETH": eth, "LTC": ltc})
    assert 0 <= after["BTC"] < Decimal("0.001")  # about one lot of cash left at most
    value = after["BTC"] + sum(after[a] * dec(prices[a]) for a in prices)
    assert abs(after["ETH"] * dec(prices["ETH"]) / value - Decimal("0.6")) < Decimal("0.001")
