"""Market rules: ccxt's unified markets in both precision modes, Binance's raw
filters, and exact lot arithmetic."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rebal
from rebal import Market, MarketError


def _filters(market: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["filterType"]: f for f in market["info"]["filters"]}


def test_every_binance_spot_market_loads_from_its_filters(binance_markets: dict[str, Any]) -> None:
    spot = [m for m in binance_markets.values() if m.get("spot")]
    assert len(spot) == 7
    for raw in spot:
        m = Market.from_ccxt(raw)
        f = _filters(raw)
        assert m.symbol == raw["symbol"] and m.base == raw["base"] and m.quote == raw["quote"]
        assert m.step == Decimal(f["LOT_SIZE"]["stepSize"])
        assert m.min_amount == Decimal(f["LOT_SIZE"]["minQty"])
        market_max = Decimal(f["MARKET_LOT_SIZE"]["maxQty"])
        assert m.max_amount == min(Decimal(f["LOT_SIZE"]["maxQty"]), market_max)
        assert m.min_notional == Decimal(f["NOTIONAL"]["minNotional"])
        assert m.price_tick == Decimal(f["PRICE_FILTER"]["tickSize"])
        assert m.taker_fee == raw["taker"]
        # The unified precision here counts decimals (legacy): same step either way.
        assert m.step == Decimal(1).scaleb(-raw["precision"]["amount"])


def test_decimal_places_mode_without_filters(binance_markets: dict[str, Any]) -> None:
    raw = {k: v for k, v in binance_markets["DOGE/USDT"].items() if k != "info"}
    m = Market.from_ccxt(raw)
    assert raw["precision"]["amount"] == 0
    assert m.step == Decimal("1")  # 0 decimal places
    assert m.min_notional == Decimal("5")
    # The same number read as a tick size is refused: a step of 0 does not exist.
    with pytest.raises(MarketError, match="precision.amount"):
        Market.from_ccxt(raw, precision_mode=rebal.TICK_SIZE)


def test_every_coinbase_market_loads_in_tick_size_mode(coinbase_markets: dict[str, Any]) -> None:
    for raw in coinbase_markets.values():
        m = Market.from_ccxt(raw)
        assert m.step == Decimal(repr(raw["precision"]["amount"]))
        assert m.price_tick == Decimal(repr(raw["precision"]["price"]))
        assert m.min_notional == Decimal(str(raw["limits"]["cost"]["min"]))
        assert m.taker_fee == 0.006
    assert Market.from_ccxt(coinbase_markets["DOGE/USDT"]).step == Decimal("0.1")
    assert Market.from_ccxt(coinbase_markets["BTC/USDT"]).step == Decimal("0.00000001")


def test_explicit_precision_modes() -> None:
    raw = {"symbol": "X/USDT", "base": "X", "quote": "USDT", "precision": {"amount": 1}, "limits": {}}
    assert Market.from_ccxt(raw, precision_mode=rebal.DECIMAL_PLACES).step == Decimal("0.1")
    assert Market.from_ccxt(raw, precision_mode=rebal.TICK_SIZE).step == Decimal("1")
    assert Market.from_ccxt(raw, precision_mode="tick_size").step == Decimal("1")
    with pytest.raises(MarketError, match="precision_mode"):
        Market.from_ccxt(raw, precision_mode=3)


def test_cross_pair_from_binance_exchange_info(ethbtc_symbol_info: dict[str, Any]) -> None:
    raw = {"symbol": "ETH/BTC", "base": "ETH", "quote": "BTC", "type": "spot", "spot": True, "info": ethbtc_symbol_info}
    m = Market.from_ccxt(raw)
    assert (m.step, m.min_amount, m.min_notional, m.price_tick) == (
        Decimal("0.001"),
        Decimal("0.001"),
        Decimal("0.0001"),
        Decimal("0.000001"),
    )


def test_derivatives_and_broken_markets_are_refused(binance_markets: dict[str, Any]) -> None:
    with pytest.raises(MarketError, match=r"markets\[BTC/USDT:USDT\]\.type"):
        Market.from_ccxt(binance_markets["BTC/USDT:USDT"])
    with pytest.raises(MarketError, match="amount step"):
        Market.from_ccxt({"symbol": "X/USDT", "base": "X", "quote": "USDT", "precision": {}, "limits": {}})
    with pytest.raises(MarketError) as e:
        Market("X/USDT", "X", "USDT", "0")
    assert e.value.field == "markets[X/USDT].step" and e.value.value == "0"
    assert isinstance(e.value, ValueError)
    with pytest.raises(MarketError, match="taker_fee"):
        Market("X/USDT", "X", "USDT", "0.1", taker_fee=float("nan"))


def test_lots_are_exact() -> None:
    m = Market("X/USDT", "X", "USDT", "0.1")
    assert m.lots("0.3") == 3  # holding exactly 0.3 with step 0.1 is 3 lots, not 2
    assert m.lots(0.3) == 3  # a float is read as its shortest repr
    assert m.amount_to_precision(0.1 + 0.2) == Decimal("0.3")
    assert str(m.amount_to_precision("1.2999999")) == "1.2"


STEPS = ["0.00000001", "0.00001", "0.001", "0.01", "0.1", "1", "10", "0.5", "0.025"]


@given(
    step=st.sampled_from(STEPS),
    amount=st.decimals(min_value=0, max_value=10**9, places=12, allow_nan=False, allow_infinity=False),
)
def test_rounding_equals_the_decimal_oracle(step: str, amount: Decimal) -> None:
    m = Market("X/USDT", "X", "USDT", step)
    oracle_lots = (amount / Decimal(step)).to_integral_value(rounding=ROUND_DOWN)
    assert m.lots(amount) == int(oracle_lots)
    assert m.amount_to_precision(amount) == oracle_lots * Decimal(step)
    assert m.amount_to_precision(str(amount)) == m.amount_to_precision(amount)


@given(x=st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_floats_round_like_their_repr(x: float) -> None:
    m = Market("X/USDT", "X", "USDT", "0.001")
    oracle = Decimal(repr(x)).quantize(Decimal("0.001"), rounding=ROUND_DOWN)
    assert m.amount_to_precision(x) == oracle


def test_decimal_strings_finer_than_an_atom_are_refused() -> None:
    m = Market("X/USDT", "X", "USDT", "0.001")
    with pytest.raises(rebal.AmountError, match="more than 18 decimal places") as e:
        m.lots("0.0000000000000000001")
    assert e.value.value == "0.0000000000000000001"
