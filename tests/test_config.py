"""Strategy configuration: decoding, exact amounts, every rule's boundary, round trips."""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rebal.config
from rebal.config import (
    AutoInvest,
    CalendarTrigger,
    DrawdownMode,
    Limits,
    ScheduleMode,
    StrategyConfig,
    ThresholdTrigger,
    TrailingTakeProfit,
    cooldown_ms,
    decode_config,
    encode_config,
    interval_ms,
    load_config,
    parse_duration,
    parse_time_of_day,
    validate,
    weights,
)
from rebal.exceptions import ConfigError, InvalidInput

replace = msgspec.structs.replace

FULL_TOML = """\
assets = { BTC = 40, ETH = 30.5, SOL = 29.5 }
investment = 1000.1
quote = "USDT"
cooldown = "1h30m"
destination = "inner_band(0.5)"
fee_rate = 0.001
take_profit = 50
stop_loss = 20
exit = "return"

[trigger]
type = "threshold"
threshold = 5
kind = "relative"

[trailing_take_profit]
arm = 20
drop = 5

[auto_invest]
amount = "100.25"
cap = 5000.5

[auto_invest.mode]
type = "schedule"
monthly = 31
at = "09:30"
"""

FULL_JSON = """{
  "assets": {"BTC": 40, "ETH": 30.5, "SOL": 29.5},
  "investment": 1000.1,
  "quote": "USDT",
  "cooldown": "1h30m",
  "destination": "inner_band(0.5)",
  "fee_rate": 0.001,
  "take_profit": 50,
  "stop_loss": 20,
  "exit": "return",
  "trigger": {"type": "threshold", "threshold": 5, "kind": "relative"},
  "trailing_take_profit": {"arm": 20, "drop": 5},
  "auto_invest": {"amount": "100.25", "cap": 5000.5, "mode": {"type": "schedule", "monthly": 31, "at": "09:30"}}
}"""

FULL = StrategyConfig(
    assets={"BTC": 40.0, "ETH": 30.5, "SOL": 29.5},
    investment=Decimal("1000.1"),
    quote="USDT",
    trigger=ThresholdTrigger(threshold=5.0, kind="relative"),
    cooldown="1h30m",
    destination="inner_band(0.5)",
    fee_rate=0.001,
    take_profit=50.0,
    stop_loss=20.0,
    trailing_take_profit=TrailingTakeProfit(arm=20.0, drop=5.0),
    exit="return",
    auto_invest=AutoInvest(
        amount=Decimal("100.25"),
        mode=ScheduleMode(monthly=31, at="09:30"),
        cap=Decimal("5000.5"),
    ),
)

BASE = StrategyConfig(assets={"BTC": 50.0, "ETH": 50.0}, investment=Decimal("1000"))
MINIMAL_TOML = 'assets = { BTC = 50, ETH = 50 }\ninvestment = 1000\n'


def fails(field: str | None, call: Callable[[], object]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        call()
    assert info.value.field == field, str(info.value)
    assert isinstance(info.value, InvalidInput) and isinstance(info.value, ValueError)
    return info.value


# ------------------------------------------------------------ round trips


def test_full_toml_and_json_decode_to_the_same_config() -> None:
    assert decode_config(FULL_TOML, "toml") == FULL
    assert decode_config(FULL_TOML.encode(), "toml") == FULL
    assert decode_config(FULL_JSON, "json") == FULL
    assert decode_config(FULL_JSON.encode(), "json") == FULL


def test_full_config_round_trips_through_json() -> None:
    encoded = encode_config(FULL)
    assert decode_config(encoded, "json") == FULL
    assert encode_config(decode_config(encoded, "json")) == encoded
    doc = json.loads(encoded)
    assert doc["investment"] == "1000.1"  # Decimals as strings
    assert doc["auto_invest"]["amount"] == "100.25"
    assert doc["auto_invest"]["cap"] == "5000.5"
    assert doc["trigger"]["type"] == "threshold"
    assert doc["auto_invest"]["mode"]["type"] == "schedule"


def test_module_docstring_example_is_a_valid_config() -> None:
    assert rebal.config.__doc__ is not None
    example = rebal.config.__doc__.split("::\n", 1)[1].split("\n`decode_config`", 1)[0]
    config = decode_config(textwrap.dedent(example), "toml")
    assert config.investment == Decimal("1000.1")
    assert isinstance(config.auto_invest, AutoInvest) and isinstance(config.auto_invest.mode, ScheduleMode)
    assert decode_config(encode_config(config), "json") == config


def test_defaults() -> None:
    config = decode_config(MINIMAL_TOML, "toml")
    assert config == BASE
    assert config.quote == "USDT"
    assert config.trigger == ThresholdTrigger(5.0, "absolute")
    assert config.cooldown == "5m" and cooldown_ms(config) == 300_000
    assert config.destination == "target" and config.exit == "sell"
    assert config.fee_rate is None and config.take_profit is None and config.stop_loss is None
    assert config.trailing_take_profit is None and config.auto_invest is None
    assert DrawdownMode(loss=10).min_interval == "1d"
    assert ScheduleMode(weekly="mon").at == "00:00"
    assert Limits() == Limits(2, 10, Decimal("0"), Decimal("200000"))


def test_configs_are_frozen() -> None:
    with pytest.raises(AttributeError):
        BASE.quote = "BTC"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Limits().max_assets = 3  # type: ignore[misc]


finite = st.floats(allow_nan=False, allow_infinity=False)
exact = st.decimals(allow_nan=False, allow_infinity=False)


@given(
    weight=finite,
    investment=exact,
    threshold=finite,
    amount=exact,
    cap=st.none() | exact,
    loss=finite,
    fee_rate=st.none() | finite,
)
def test_any_config_round_trips_exactly(
    weight: float, investment: Decimal, threshold: float, amount: Decimal, cap: Decimal | None, loss: float, fee_rate: float | None
) -> None:
    config = StrategyConfig(
        assets={"BTC": weight, "ETH": 100.0},
        investment=investment,
        trigger=ThresholdTrigger(threshold, "relative"),
        fee_rate=fee_rate,
        auto_invest=AutoInvest(amount=amount, mode=DrawdownMode(loss=loss, min_interval="2w"), cap=cap),
    )
    back = decode_config(encode_config(config), "json", limits=None)
    assert back == config
    assert back.auto_invest is not None and config.auto_invest is not None
    for got, wanted in ((back.investment, investment), (back.auto_invest.amount, amount)):
        assert str(got) == str(wanted)  # the same digits, not only the same value
    assert math.copysign(1, back.assets["BTC"]) == math.copysign(1, weight)


# ------------------------------------------------------------ exact amounts


@pytest.mark.parametrize(
    ("toml", "wanted"),
    [
        ("1000.1", "1000.1"),
        ('"1000.1"', "1000.1"),
        ("0.1", "0.1"),
        ("1000", "1000"),
        ("1_000.10", "1000.10"),
        ("0.1000000000000000000000000001", "0.1000000000000000000000000001"),
        ('"0.1000000000000000000000000001"', "0.1000000000000000000000000001"),
        ("123456789012345678.123456789", "123456789012345678.123456789"),
    ],
)
def test_toml_amounts_are_exact(toml: str, wanted: str) -> None:
    text = f"""assets = {{ BTC = 50, ETH = 50 }}
investment = {toml}
[auto_invest]
amount = {toml}
cap = {toml}
mode = {{ type = "drawdown", loss = 10 }}
"""
    config = decode_config(text, "toml", limits=None)
    assert config.auto_invest is not None
    for amount in (config.investment, config.auto_invest.amount, config.auto_invest.cap):
        assert isinstance(amount, Decimal)
        assert str(amount) == wanted


@pytest.mark.parametrize(
    ("number", "wanted"),
    [
        ("1000.1", "1000.1"),
        ('"1000.1"', "1000.1"),
        ("0.1", "0.1"),
        ("1000", "1000"),
        ("0.1000000000000000000000000001", "0.1000000000000000000000000001"),
        ("1.5e3", "1.5E+3"),
    ],
)
def test_json_amounts_are_exact(number: str, wanted: str) -> None:
    text = (
        '{"assets": {"BTC": 50, "ETH": 50}, "investment": %s,'
        ' "auto_invest": {"amount": %s, "cap": %s, "mode": {"type": "drawdown", "loss": 10}}}' % (number, number, number)
    )
    config = decode_config(text, "json", limits=None)
    assert config.auto_invest is not None
    for amount in (config.investment, config.auto_invest.amount, config.auto_invest.cap):
        assert isinstance(amount, Decimal)
        assert str(amount) == wanted
        assert amount == Decimal(wanted)


def test_float_settings_stay_floats() -> None:
    config = decode_config(FULL_TOML, "toml")
    assert type(config.assets["ETH"]) is float and config.assets["ETH"] == 30.5
    assert type(config.fee_rate) is float and config.fee_rate == 0.001
    assert isinstance(config.trigger, ThresholdTrigger) and type(config.trigger.threshold) is float
    calendar = decode_config('assets = { BTC = 50, ETH = 50 }\ninvestment = 100\n[trigger]\ntype = "calendar"\nevery = "1d"\ngate = 3\n', "toml")
    assert isinstance(calendar.trigger, CalendarTrigger) and type(calendar.trigger.gate) is float


# ------------------------------------------------------------ decoding errors


@pytest.mark.parametrize(
    ("text", "fmt", "field", "value"),
    [
        (MINIMAL_TOML + "colour = 'red'\n", "toml", "colour", "red"),
        (MINIMAL_TOML + "[trigger]\ntype = 'threshold'\nthreshold = 5\nwidth = 2\n", "toml", "trigger.width", 2),
        (MINIMAL_TOML + "[trailing_take_profit]\narm = 5\ndrop = 1\npeak = 3\n", "toml", "trailing_take_profit.peak", 3),
        (
            MINIMAL_TOML + "[auto_invest]\namount = 5\nmode = { type = 'drawdown', loss = 5, when = 1 }\n",
            "toml",
            "auto_invest.mode.when",
            1,
        ),
        ('{"assets": {"BTC": 50, "ETH": 50}, "investment": 1, "Quote": "USDT"}', "json", "Quote", "USDT"),
    ],
)
def test_unknown_field(text: str, fmt: Any, field: str, value: object) -> None:
    error = fails(field, lambda: decode_config(text, fmt))
    assert "unknown field" in str(error)
    assert error.value == value
    assert isinstance(error.__cause__, msgspec.ValidationError)


@pytest.mark.parametrize(
    ("text", "fmt", "field", "value"),
    [
        ("assets = { BTC = 50, ETH = '50' }\ninvestment = 1\n", "toml", "assets[ETH]", "50"),
        ("assets = { BTC = true, ETH = 50 }\ninvestment = 1\n", "toml", "assets[BTC]", True),
        ('{"assets": {"BTC": 50, "ETH": [50]}, "investment": 1}', "json", "assets[ETH]", [50]),
        ("assets = [ 'BTC', 'ETH' ]\ninvestment = 1\n", "toml", "assets", ["BTC", "ETH"]),
        ("assets = { BTC = 50, ETH = 50 }\ninvestment = 'lots'\n", "toml", "investment", "lots"),
        ("assets = { BTC = 50, ETH = 50 }\ninvestment = true\n", "toml", "investment", True),
        (MINIMAL_TOML + "[trigger]\ntype = 'threshold'\nthreshold = '5'\n", "toml", "trigger.threshold", "5"),
        (MINIMAL_TOML + "[trigger]\ntype = 'threshold'\nthreshold = 5\nkind = 'sideways'\n", "toml", "trigger.kind", "sideways"),
        (MINIMAL_TOML + "[trigger]\ntype = 'weekly'\n", "toml", "trigger.type", "weekly"),
        (MINIMAL_TOML + "[trigger]\nthreshold = 5\n", "toml", "trigger.type", None),
        (MINIMAL_TOML + "[trigger]\ntype = 'calendar'\nevery = 3600\n", "toml", "trigger.every", 3600),
        (MINIMAL_TOML + "[auto_invest]\namount = 5\nmode = { type = 'schedule', every = 4 }\n", "toml", "auto_invest.mode.every", 4),
        (MINIMAL_TOML + "[auto_invest]\namount = 5\nmode = { type = 'schedule', monthly = 1.5 }\n", "toml", "auto_invest.mode.monthly", Decimal("1.5")),
        (MINIMAL_TOML + "[auto_invest]\namount = 5\nmode = { type = 'schedule', weekly = 'monday' }\n", "toml", "auto_invest.mode.weekly", "monday"),
        (MINIMAL_TOML + "exit = 'hold'\n", "toml", "exit", "hold"),
        (MINIMAL_TOML + "cooldown = 300\n", "toml", "cooldown", 300),
        ("assets = { BTC = 50, ETH = 50 }\n", "toml", "investment", None),
        (MINIMAL_TOML + "[auto_invest]\namount = 5\n", "toml", "auto_invest.mode", None),
    ],
)
def test_wrong_type_or_missing(text: str, fmt: Any, field: str, value: object) -> None:
    error = fails(field, lambda: decode_config(text, fmt))
    assert error.value == value
    assert isinstance(error.__cause__, msgspec.ValidationError)
    if value is not None:
        assert str(value) in str(error)


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        ("assets = { BTC = 50", "toml"),
        ("[x\n", "toml"),
        (b"\xff\xfe", "toml"),
        ('{"assets": ', "json"),
        ("not json", "json"),
        ("[]", "json"),
        ("3", "json"),
    ],
)
def test_malformed_documents(data: str | bytes, fmt: Any) -> None:
    error = fails(None, lambda: decode_config(data, fmt))
    assert error.__cause__ is not None


def test_unknown_format() -> None:
    fails("format", lambda: decode_config(MINIMAL_TOML, "yaml"))  # type: ignore[arg-type]


def test_load_config_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(FULL_TOML)
    (tmp_path / "b.JSON").write_text(FULL_JSON)
    assert load_config(tmp_path / "a.toml") == FULL
    assert load_config(str(tmp_path / "b.JSON")) == FULL
    (tmp_path / "c.yaml").write_text(FULL_JSON)
    fails(None, lambda: load_config(tmp_path / "c.yaml"))
    (tmp_path / "d.toml").write_text(MINIMAL_TOML + "threshold = 5\n")
    error = fails("threshold", lambda: load_config(tmp_path / "d.toml"))
    assert "d.toml" in str(error)
    (tmp_path / "e.toml").write_text("assets = { BTC = 100 }\ninvestment = 1\n")
    fails("assets", lambda: load_config(tmp_path / "e.toml"))
    assert load_config(tmp_path / "e.toml", limits=Limits(min_assets=1)).assets == {"BTC": 100.0}


def test_decode_checks_the_rules_unless_told_not_to() -> None:
    text = "assets = { BTC = 60, ETH = 50 }\ninvestment = 1\n"
    fails("assets", lambda: decode_config(text, "toml"))
    assert decode_config(text, "toml", limits=None).assets == {"BTC": 60.0, "ETH": 50.0}


# ------------------------------------------------------------ rules, both sides of each boundary


def assets(n: int) -> dict[str, float]:
    return {f"C{i}": 100 / n for i in range(n)}


def auto(**changes: Any) -> StrategyConfig:
    fields: dict[str, Any] = {"amount": Decimal("10"), "mode": DrawdownMode(loss=10.0), **changes}
    return replace(BASE, auto_invest=AutoInvest(**fields))


def schedule(**fields: Any) -> StrategyConfig:
    return auto(mode=ScheduleMode(**fields))


D = Decimal
GOOD_AND_BAD: list[tuple[str, StrategyConfig, StrategyConfig, str]] = [
    # (name, just inside, just outside, field of the error)
    ("min assets", replace(BASE, assets=assets(2)), replace(BASE, assets=assets(1)), "assets"),
    ("max assets", replace(BASE, assets=assets(10)), replace(BASE, assets=assets(11)), "assets"),
    ("symbol", replace(BASE, assets={"B": 50, "E": 50}), replace(BASE, assets={"": 50, "E": 50}), "assets[]"),
    ("blank symbol", replace(BASE, assets={"B": 50, "E": 50}), replace(BASE, assets={" ": 50, "E": 50}), "assets[ ]"),
    ("unique", replace(BASE, assets={"BTC": 50, "BTC2": 50}), replace(BASE, assets={"BTC": 50, "btc": 50}), "assets[btc]"),
    ("not the quote", replace(BASE, quote="BTC", assets={"ETH": 50, "SOL": 50}), replace(BASE, assets={"BTC": 50, "usdt": 50}), "assets[usdt]"),
    ("quote", replace(BASE, quote="EUR"), replace(BASE, quote=""), "quote"),
    ("weight > 0", replace(BASE, assets={"BTC": 1e-300, "ETH": 100}), replace(BASE, assets={"BTC": 0.0, "ETH": 100}), "assets[BTC]"),
    ("weight not negative", BASE, replace(BASE, assets={"BTC": -10.0, "ETH": 110}), "assets[BTC]"),
    ("weight a number", BASE, replace(BASE, assets={"BTC": math.nan, "ETH": 50}), "assets[BTC]"),
    ("weight finite", BASE, replace(BASE, assets={"BTC": math.inf, "ETH": 50}), "assets[BTC]"),
    ("sum up", replace(BASE, assets={"BTC": 50 + 5e-10, "ETH": 50}), replace(BASE, assets={"BTC": 50 + 2e-9, "ETH": 50}), "assets"),
    ("sum down", replace(BASE, assets={"BTC": 50 - 5e-10, "ETH": 50}), replace(BASE, assets={"BTC": 50 - 2e-9, "ETH": 50}), "assets"),
    ("thirds", replace(BASE, assets={"A": 100 / 3, "B": 100 / 3, "C": 100 / 3}), replace(BASE, assets={"A": 33.3, "B": 33.3, "C": 33.3}), "assets"),
    ("investment > 0", replace(BASE, investment=D("1e-18")), replace(BASE, investment=D("0")), "investment"),
    ("investment not negative", BASE, replace(BASE, investment=D("-5")), "investment"),
    ("investment a number", BASE, replace(BASE, investment=D("NaN")), "investment"),
    ("investment finite", BASE, replace(BASE, investment=D("Infinity")), "investment"),
    ("max investment", replace(BASE, investment=D("200000")), replace(BASE, investment=D("200000.00000001")), "investment"),
    ("threshold > 0", replace(BASE, trigger=ThresholdTrigger(1e-9)), replace(BASE, trigger=ThresholdTrigger(0.0)), "trigger.threshold"),
    ("threshold < 100", replace(BASE, trigger=ThresholdTrigger(99.999)), replace(BASE, trigger=ThresholdTrigger(100.0)), "trigger.threshold"),
    ("threshold a number", BASE, replace(BASE, trigger=ThresholdTrigger(math.nan, "relative")), "trigger.threshold"),
    ("calendar ≥ 30m", replace(BASE, trigger=CalendarTrigger("30m")), replace(BASE, trigger=CalendarTrigger("29m59s")), "trigger.every"),
    ("calendar ≤ 28d", replace(BASE, trigger=CalendarTrigger("4w")), replace(BASE, trigger=CalendarTrigger("28d1s")), "trigger.every"),
    ("calendar any duration", replace(BASE, trigger=CalendarTrigger("1d7h13m")), replace(BASE, trigger=CalendarTrigger("daily")), "trigger.every"),
    ("gate ≥ 0", replace(BASE, trigger=CalendarTrigger("1d", 0.0)), replace(BASE, trigger=CalendarTrigger("1d", -1e-9)), "trigger.gate"),
    ("gate < 100", replace(BASE, trigger=CalendarTrigger("1d", 99.99)), replace(BASE, trigger=CalendarTrigger("1d", 100.0)), "trigger.gate"),
    ("cooldown ≥ 0", replace(BASE, cooldown="0s"), replace(BASE, cooldown="-1m"), "cooldown"),
    ("cooldown text", replace(BASE, cooldown="1w1d1h1m1s"), replace(BASE, cooldown=""), "cooldown"),
    ("destination", replace(BASE, destination="band_edge"), replace(BASE, destination="edge"), "destination"),
    (
        "band destination needs a threshold",
        replace(BASE, destination="band_edge"),
        replace(BASE, destination="band_edge", trigger=CalendarTrigger("1d", 3.0)),
        "destination",
    ),
    ("inner_band > 0", replace(BASE, destination="inner_band(0.001)"), replace(BASE, destination="inner_band(0)"), "destination"),
    ("inner_band < 1", replace(BASE, destination="inner_band(0.999)"), replace(BASE, destination="inner_band(1)"), "destination"),
    ("inner_band number", replace(BASE, destination="inner_band(.5)"), replace(BASE, destination="inner_band(1e)"), "destination"),
    ("fee_rate ≥ 0", replace(BASE, fee_rate=0.0), replace(BASE, fee_rate=-1e-12), "fee_rate"),
    ("fee_rate < 1", replace(BASE, fee_rate=0.999), replace(BASE, fee_rate=1.0), "fee_rate"),
    ("take_profit > 0", replace(BASE, take_profit=1e-9), replace(BASE, take_profit=0.0), "take_profit"),
    ("take_profit finite", replace(BASE, take_profit=1e6), replace(BASE, take_profit=math.inf), "take_profit"),
    ("stop_loss > 0", replace(BASE, stop_loss=1e-9), replace(BASE, stop_loss=0.0), "stop_loss"),
    ("stop_loss < 100", replace(BASE, stop_loss=99.99), replace(BASE, stop_loss=100.0), "stop_loss"),
    (
        "trailing arm > 0",
        replace(BASE, trailing_take_profit=TrailingTakeProfit(1e-9, 5)),
        replace(BASE, trailing_take_profit=TrailingTakeProfit(0.0, 5)),
        "trailing_take_profit.arm",
    ),
    (
        "trailing drop > 0",
        replace(BASE, trailing_take_profit=TrailingTakeProfit(10, 1e-9)),
        replace(BASE, trailing_take_profit=TrailingTakeProfit(10, 0.0)),
        "trailing_take_profit.drop",
    ),
    (
        "trailing drop < 100",
        replace(BASE, trailing_take_profit=TrailingTakeProfit(10, 99.9)),
        replace(BASE, trailing_take_profit=TrailingTakeProfit(10, 100.0)),
        "trailing_take_profit.drop",
    ),
    ("amount > 0", auto(amount=D("0.01")), auto(amount=D("0")), "auto_invest.amount"),
    ("amount finite", auto(amount=D("99999999999999999999")), auto(amount=D("Infinity")), "auto_invest.amount"),
    ("amount below 1e20", auto(amount=D("99999999999999999999.5")), auto(amount=D("1e20")), "auto_invest.amount"),
    ("amount in 1e-18", auto(amount=D("0.000000000000000001")), auto(amount=D("1.0000000000000000001")), "auto_invest.amount"),
    ("cap ≥ amount", auto(cap=D("10")), auto(cap=D("9.99")), "auto_invest.cap"),
    ("cap finite", auto(cap=D("99999999999999999999")), auto(cap=D("NaN")), "auto_invest.cap"),
    ("loss > 0", auto(mode=DrawdownMode(1e-9)), auto(mode=DrawdownMode(0.0)), "auto_invest.mode.loss"),
    ("loss < 100", auto(mode=DrawdownMode(99.9)), auto(mode=DrawdownMode(100.0)), "auto_invest.mode.loss"),
    ("min_interval ≥ 0", auto(mode=DrawdownMode(5, "0s")), auto(mode=DrawdownMode(5, "-1d")), "auto_invest.mode.min_interval"),
    ("one of (none)", schedule(weekly="mon"), schedule(), "auto_invest.mode"),
    ("one of (two)", schedule(monthly=1), schedule(monthly=1, weekly="mon"), "auto_invest.mode"),
    ("one of (three)", schedule(every="1h"), schedule(every="1h", weekly="sun", monthly=2), "auto_invest.mode"),
    ("every ≥ 1h", schedule(every="1h"), schedule(every="59m"), "auto_invest.mode.every"),
    ("every whole hours", schedule(every="2h"), schedule(every="1h30m"), "auto_invest.mode.every"),
    ("every whole hours 2", schedule(every="1d1h"), schedule(every="25h1s"), "auto_invest.mode.every"),
    ("every text", schedule(every="3w"), schedule(every="3 weeks"), "auto_invest.mode.every"),
    ("monthly ≥ 1", schedule(monthly=1), schedule(monthly=0), "auto_invest.mode.monthly"),
    ("monthly ≤ 31", schedule(monthly=31), schedule(monthly=32), "auto_invest.mode.monthly"),
    ("at ≥ 00:00", schedule(weekly="sat", at="00:00"), schedule(weekly="sat", at="-1:00"), "auto_invest.mode.at"),
    ("at ≤ 23:59", schedule(monthly=5, at="23:59"), schedule(monthly=5, at="24:00"), "auto_invest.mode.at"),
    ("at minutes", schedule(monthly=5, at="12:59"), schedule(monthly=5, at="12:60"), "auto_invest.mode.at"),
    ("at form", schedule(monthly=5, at="09:05"), schedule(monthly=5, at="9:05"), "auto_invest.mode.at"),
]


@pytest.mark.parametrize(("good", "bad", "field"), [case[1:] for case in GOOD_AND_BAD], ids=[case[0] for case in GOOD_AND_BAD])
def test_rule_boundary(good: StrategyConfig, bad: StrategyConfig, field: str) -> None:
    assert validate(good) is good
    # the same config through JSON: decoding applies the same rules
    assert decode_config(encode_config(good), "json") == good
    error = fails(field, lambda: validate(bad))
    assert error.field is not None and str(error).startswith(error.field)


@pytest.mark.parametrize(
    ("config", "shown"),
    [
        (replace(BASE, assets={"BTC": 50, "ETH": -7.25}), "-7.25"),
        (replace(BASE, investment=D("250000.5")), "250000.5"),
        (replace(BASE, trigger=ThresholdTrigger(150.0)), "150.0"),
        (replace(BASE, destination="inner_band(1.5)"), "inner_band(1.5)"),
        (schedule(every="90m"), "90m"),
        (replace(BASE, assets={"BTC": 60, "ETH": 50}), "110.0"),
        (replace(BASE, assets=assets(11)), "11"),
    ],
)
def test_messages_name_the_value(config: StrategyConfig, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert shown in str(info.value)


def test_limits_are_host_policy() -> None:
    twelve = replace(BASE, assets=assets(12))
    fails("assets", lambda: validate(twelve))
    assert validate(twelve, Limits(max_assets=12)) is twelve
    fails("assets", lambda: validate(replace(BASE, assets=assets(13)), Limits(max_assets=12)))
    fails("assets", lambda: validate(BASE, Limits(min_assets=3)))
    assert validate(replace(BASE, assets={"BTC": 100.0}), Limits(min_assets=1)) is not None

    big = replace(BASE, investment=D("1000000"))
    fails("investment", lambda: validate(big))
    assert validate(big, Limits(max_investment=D("1000000"))) is big
    fails("investment", lambda: validate(replace(BASE, investment=D("9.99")), Limits(min_investment=D("10"))))
    assert validate(replace(BASE, investment=D("10")), Limits(min_investment=D("10"))) is not None

    text = "assets = { " + ", ".join(f"C{i} = {100 / 12!r}" for i in range(12)) + " }\ninvestment = 1\n"
    fails("assets", lambda: decode_config(text, "toml"))
    assert len(decode_config(text, "toml", limits=Limits(max_assets=12)).assets) == 12


def test_funding_in_another_asset() -> None:
    config = decode_config('quote = "BTC"\nassets = { ETH = 50, SOL = 50 }\ninvestment = 0.5\n', "toml")
    assert config.quote == "BTC" and config.investment == Decimal("0.5")
    fails("assets[btc]", lambda: decode_config('quote = "BTC"\nassets = { ETH = 50, btc = 50 }\ninvestment = 0.5\n', "toml"))


# ------------------------------------------------------------ durations and helpers


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30m", 1_800_000),
        ("4h", 14_400_000),
        ("1d", 86_400_000),
        ("2w", 1_209_600_000),
        ("90s", 90_000),
        ("1h30m", 5_400_000),
        ("1w2d3h4m5s", ((((7 + 2) * 24 + 3) * 60 + 4) * 60 + 5) * 1000),
        ("0s", 0),
        ("0m", 0),
        ("120m", 7_200_000),
    ],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text, "x") == ms


@pytest.mark.parametrize("text", ["", "5", "0", "1.5h", "-5m", "+5m", "5M", "1H", "30m1h", "1h1h", "1h 30m", " 1h", "1y", "h", "١h", "99999999999999999w"])
def test_bad_duration_names_the_field(text: str) -> None:
    error = fails("auto_invest.mode.min_interval", lambda: parse_duration(text, "auto_invest.mode.min_interval"))
    assert error.value == text
    assert repr(text) in str(error)


def test_parse_time_of_day() -> None:
    assert parse_time_of_day("00:00", "at") == 0
    assert parse_time_of_day("09:30", "at") == 570
    assert parse_time_of_day("23:59", "at") == 1439
    for bad in ("24:00", "23:60", "9:30", "09:30:00", "0930", ""):
        fails("at", lambda: parse_time_of_day(bad, "at"))


def test_cooldown_and_interval_ms() -> None:
    assert cooldown_ms(BASE) == 300_000
    assert cooldown_ms(replace(BASE, cooldown="1h30m")) == 5_400_000
    assert interval_ms(ThresholdTrigger(5)) == 0
    assert interval_ms(CalendarTrigger("4h")) == 14_400_000
    assert interval_ms(CalendarTrigger("1d", 3.0)) == 86_400_000


def test_weights_are_fractions() -> None:
    assert weights(FULL) == {"BTC": 0.4, "ETH": 0.305, "SOL": 0.295}
    thirds = weights(replace(BASE, assets={"A": 100 / 3, "B": 100 / 3, "C": 100 / 3}))
    assert abs(math.fsum(thirds.values()) - 1) <= 1e-9
    assert list(thirds) == ["A", "B", "C"]


@given(st.lists(st.floats(min_value=1e-6, max_value=1e6), min_size=2, max_size=10))
def test_weights_sum_to_one(raw: list[float]) -> None:
    total = math.fsum(raw)
    percents = {f"C{i}": 100 * w / total for i, w in enumerate(raw)}
    fractions = weights(replace(BASE, assets=percents))
    assert abs(math.fsum(fractions.values()) - 1.0) <= 1e-9
    assert abs(sum(fractions.values()) - 1.0) <= 1e-9
    for symbol, percent in percents.items():
        assert math.isclose(fractions[symbol], percent / 100, rel_tol=1e-9)
