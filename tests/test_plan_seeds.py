"""The exchanges' own worked examples (../shared/seeds) as golden tests."""

from __future__ import annotations

from decimal import Decimal

import rebal
from rebal import Market

from .oracle import dec, fill


def usdt(base: str, step: str, min_notional: str = "1", fee: float = 0.0) -> Market:
    return Market(f"{base}/USDT", base, "USDT", step, min_amount=step, min_notional=min_notional, taker_fee=fee)


def test_bitget_btc_eth_one_to_one() -> None:
    """100 USDT at 1:1; BTC's holding grows to 60 USDT while ETH stays at 50:
    sell 5 USDT of BTC, buy 5 USDT of ETH, both end at 55."""
    markets = [usdt("BTC", "0.00001"), usdt("ETH", "0.0001")]
    p = rebal.plan(
        {"BTC": "0.0012", "ETH": "0.02"}, {"BTC": 50_000, "ETH": 2_500}, {"BTC": 0.5, "ETH": 0.5}, markets
    )
    assert [(o.symbol, o.side, o.amount, o.notional) for o in p.orders] == [
        ("BTC/USDT", "sell", Decimal("0.0001"), 5.0),
        ("ETH/USDT", "buy", Decimal("0.002"), 5.0),
    ]
    after = fill(p, {"BTC": Decimal("0.0012"), "ETH": Decimal("0.02")}, "USDT", {m.base: m for m in markets})
    assert after["BTC"] * 50_000 == after["ETH"] * 2_500 == 55
    assert after["USDT"] == 0


def test_bigone_forty_thirty_thirty_restored() -> None:
    """1,200 USDT at 40 % ONE / 30 % BTC / 30 % ETH; BTC drifts to 40 % and ETH
    to 20 %: sell the excess BTC, buy ETH, back to 40 / 30 / 30 (with 0.1 % fees)."""
    markets = [usdt("ONE", "0.1", fee=0.001), usdt("BTC", "0.00001", "5", 0.001), usdt("ETH", "0.0001", "5", 0.001)]
    by_base = {m.base: m for m in markets}
    holdings = {"ONE": Decimal("24000"), "BTC": Decimal("0.008"), "ETH": Decimal("0.08")}  # 480 / 480 / 240
    prices = {"ONE": 0.02, "BTC": 60_000.0, "ETH": 3_000.0}
    targets = {"ONE": 0.4, "BTC": 0.3, "ETH": 0.3}
    p = rebal.plan(holdings, prices, targets, markets, threshold=0.05)
    assert p.triggered and abs(p.max_deviation - 0.10) < 1e-12
    assert [(o.asset, o.side) for o in p.orders] == [("BTC", "sell"), ("ETH", "buy")]
    assert 119.5 < p.orders[0].notional <= 120.5 and 119.5 < p.orders[1].notional <= 120.5
    after = fill(p, holdings, "USDT", by_base)
    assert after["USDT"] >= 0
    value = after["USDT"] + sum(after[a] * dec(prices[a]) for a in targets)
    for asset, target in targets.items():
        assert abs(after[asset] * dec(prices[asset]) / value - dec(target)) < Decimal("0.001")
    # and the portfolio is now inside its band: nothing more to do
    again = rebal.plan({**after, "USDT": after["USDT"]}, prices, targets, markets, threshold=0.05)
    assert not again.triggered and again.orders == []


def test_below_the_threshold_nothing_happens() -> None:
    markets = [usdt("BTC", "0.00001"), usdt("ETH", "0.0001")]
    # 30 % target, 5 points: 34.99 % does not fire
    p = rebal.plan(
        {"BTC": "0.006998", "ETH": "0.26004"},
        {"BTC": 50_000, "ETH": 2_500},
        {"BTC": 0.3, "ETH": 0.7},
        markets,
        threshold=0.05,
    )
    assert abs(p.max_deviation - 0.0499) < 1e-6 and not p.triggered and p.orders == []
