"""A strategy's configuration: frozen msgspec Structs, read from TOML or JSON.

Percentages are in percent (``5`` = 5 %), durations are strings such as
``"30m"``, ``"4h"``, ``"1d"``, ``"2w"``, ``"90s"`` or ``"1h30m"``, and amounts
(``investment``, ``auto_invest.amount``, ``auto_invest.cap``) are exact
`Decimal`s: ``1000.1`` in a file is ``Decimal("1000.1")``, never the binary
float nearest to it. A full configuration::

    assets = { BTC = 40, ETH = 30, SOL = 30 }   # base symbol -> target weight, %
    investment = 1000.1                           # of the quote asset
    quote = "USDT"
    cooldown = "5m"
    destination = "inner_band(0.5)"               # "target", "band_edge" or "inner_band(k)"
    fee_rate = 0.001
    take_profit = 50                              # exit at +50 %
    stop_loss = 20                                # exit at -20 %
    exit = "sell"                                 # or "return" the coins as they are

    [trigger]                                     # or: type = "calendar", every = "1d", gate = 3 (destination "target")
    type = "threshold"
    threshold = 5
    kind = "absolute"                             # or "relative" (to the target weight)

    [trailing_take_profit]
    arm = 20                                      # arm once profit >= 20 %
    drop = 5                                      # exit after a 5 % fall from the peak

    [auto_invest]
    amount = "100"
    cap = 5000                                    # pause once 5,000 are invested in all

    [auto_invest.mode]                            # or: type = "drawdown", loss = 10, min_interval = "1d"
    type = "schedule"
    weekly = "mon"                                # or every = "12h", or monthly = 31 (the month's last day)
    at = "09:30"                                  # UTC

`decode_config` / `load_config` read and check a configuration; every problem
is a `ConfigError` whose ``field`` is a dotted path (``"assets[BTC]"``,
``"trigger.threshold"``, ``"auto_invest.mode.every"``) and whose message names
the value. `validate` applies the rules on their own, against host `Limits`.
"""

from __future__ import annotations

import functools
import math
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec

from rebal.exceptions import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Rate = TypeVar("Rate", float, "npt.NDArray[np.float64]")

__all__ = [
    "ThresholdTrigger",
    "CalendarTrigger",
    "TrailingTakeProfit",
    "DrawdownMode",
    "ScheduleMode",
    "AutoInvest",
    "StrategyConfig",
    "Limits",
    "parse_duration",
    "parse_time_of_day",
    "decode_config",
    "load_config",
    "validate",
    "encode_config",
    "weights",
    "cooldown_ms",
    "interval_ms",
]


class ThresholdTrigger(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="threshold", tag_field="type"):
    """Rebalance when a weight is `threshold` off its target: percentage points
    when `kind` is "absolute", percent of the target when "relative"."""

    threshold: float
    kind: Literal["absolute", "relative"] = "absolute"


class CalendarTrigger(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="calendar", tag_field="type"):
    """Check `every` interval (30m … 28d); rebalance only if the largest
    deviation reaches `gate` percentage points, when a gate is given."""

    every: str
    gate: float | None = None


class TrailingTakeProfit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Arm when profit ≥ `arm` %; exit after the value falls `drop` % from
    its peak since armed."""

    arm: float
    drop: float


class DrawdownMode(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="drawdown", tag_field="type"):
    """Invest when the floating loss is ≥ `loss` % and at least `min_interval`
    has passed since the last investment."""

    loss: float
    min_interval: str = "1d"


class ScheduleMode(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="schedule", tag_field="type"):
    """Invest on a UTC schedule: exactly one of `every` (a whole number of
    hours, keeping the phase of its anchor), `weekly` (a weekday) or `monthly`
    (a day 1–31; past the month's end means its last day). `at` ("HH:MM") is
    the time of day of the weekly and monthly runs."""

    every: str | None = None
    weekly: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] | None = None
    monthly: int | None = None
    at: str = "00:00"


class AutoInvest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Add `amount` of the quote asset per cycle (DCA); pause automatically
    once the total invested reaches `cap`."""

    amount: Decimal
    mode: DrawdownMode | ScheduleMode
    cap: Decimal | None = None


class StrategyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One portfolio's strategy (SPEC §1)."""

    assets: dict[str, float]
    """Base symbol -> target weight in percent; the weights sum to 100."""
    investment: Decimal
    """Initial amount of the quote (funding) asset."""
    quote: str = "USDT"
    trigger: ThresholdTrigger | CalendarTrigger = ThresholdTrigger(5.0)
    cooldown: str = "5m"
    destination: str = "target"
    """"target", "band_edge" or "inner_band(k)" with 0 < k < 1."""
    fee_rate: float | None = None
    """A fraction (0.001 = 0.1 %); None: each market's own fee."""
    take_profit: float | None = None
    stop_loss: float | None = None
    trailing_take_profit: TrailingTakeProfit | None = None
    exit: Literal["sell", "return"] = "sell"
    auto_invest: AutoInvest | None = None


def fee_budget(fee: Rate, slippage: float) -> Rate:
    """The fee rate the planner budgets when fills may also move `slippage`
    against the order: (1 + fee)(1 + slippage) − 1, written so that with no
    slippage it is the fee itself, not a float a hair below it."""
    return fee + slippage + fee * slippage


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Host policy: how many assets and how large an investment are allowed."""

    min_assets: int = 2
    max_assets: int = 10
    min_investment: Decimal = Decimal("0")
    max_investment: Decimal = Decimal("200000")


_DEFAULT_LIMITS = Limits()

# ---------------------------------------------------------------- durations

_UNITS_MS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000}
_DURATION = re.compile(r"(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_INT64_MAX = 2**63 - 1
_TIME_OF_DAY = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_INNER_BAND = re.compile(r"inner_band\(\s*([0-9.eE+-]+)\s*\)")  # the grammar of rebal.planner / rebal.book

_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000
_CALENDAR_MIN_MS = 30 * _MINUTE_MS
_CALENDAR_MAX_MS = 28 * 86_400_000


def parse_duration(text: str, field: str) -> int:
    """ "30m", "4h", "1d", "2w", "90s" or compound "1h30m" -> milliseconds.

    Units w, d, h, m, s, each at most once and largest first; no sign, no
    spaces, no fractions. A bad text is a `ConfigError` naming `field`."""
    ms = _duration_ms(text) if isinstance(text, str) else None
    if ms is None:
        raise ConfigError(
            f"{field}: not a duration (got {text!r}); write e.g. '30m', '4h', '1d', '2w', '90s' or '1h30m'",
            field=field,
            value=text,
        )
    if ms > _INT64_MAX:
        raise ConfigError(f"{field}: duration {text!r} is too long", field=field, value=text)
    return ms


@functools.lru_cache(maxsize=256)
def _duration_ms(text: str) -> int | None:
    """The milliseconds `text` spells, or None. Cached: a sweep's thousands
    of configs spell the same few durations."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        return None
    return sum(int(n) * unit for n, unit in zip(match.groups(), _UNITS_MS.values(), strict=True) if n is not None)


def parse_time_of_day(text: str, field: str) -> int:
    """ "HH:MM" (00:00–23:59, UTC) -> minute of the day."""
    match = _TIME_OF_DAY.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"{field}: not a time of day 'HH:MM' from 00:00 to 23:59 (got {text!r})", field=field, value=text)
    return int(match.group(1)) * 60 + int(match.group(2))


def cooldown_ms(config: StrategyConfig) -> int:
    """The least time between two rebalances, in milliseconds."""
    return parse_duration(config.cooldown, "cooldown")


def interval_ms(trigger: ThresholdTrigger | CalendarTrigger) -> int:
    """A calendar trigger's interval in milliseconds; 0 for a threshold trigger
    (checked on every tick), as `Book` columns take it."""
    if isinstance(trigger, CalendarTrigger):
        return parse_duration(trigger.every, "trigger.every")
    return 0


def weights(config: StrategyConfig) -> dict[str, float]:
    """Target weights as fractions summing to 1 (percent / 100, renormalised)."""
    total = math.fsum(config.assets.values())
    return {symbol: weight / total for symbol, weight in config.assets.items()}


# ---------------------------------------------------------------- decoding


def decode_config(
    data: bytes | str,
    format: Literal["json", "toml"],
    *,
    limits: Limits | None = _DEFAULT_LIMITS,
) -> StrategyConfig:
    """Reads a configuration from JSON or TOML text and checks it against
    `limits` (``limits=None``: the structure and types only, no rules).

    Numbers given for amounts are taken from their text, so they stay exact."""
    if format not in ("json", "toml"):
        raise ConfigError(f"format: must be 'json' or 'toml' (got {format!r})", field="format", value=format)
    doc: Any
    try:
        if format == "toml":
            text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
            doc = tomllib.loads(text, parse_float=Decimal)
        else:
            doc = _JSON.decode(data)
    except (tomllib.TOMLDecodeError, msgspec.DecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"not valid {format.upper()}: {e}", field=None, value=None) from e
    try:
        config = msgspec.convert(doc, StrategyConfig)
    except msgspec.ValidationError as e:
        raise _translate(e, doc) from e
    return config if limits is None else validate(config, limits)


def load_config(path: str | Path, *, limits: Limits | None = _DEFAULT_LIMITS) -> StrategyConfig:
    """Reads a configuration file, TOML or JSON by its suffix (.toml / .json)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ConfigError(f"{path}: a configuration file ends in .toml or .json", field=None, value=str(path))
    fmt: Literal["json", "toml"] = "toml" if suffix == ".toml" else "json"
    try:
        return decode_config(path.read_bytes(), fmt, limits=limits)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}", field=e.field, value=e.value) from e


def encode_config(config: StrategyConfig) -> bytes:
    """The configuration as JSON (amounts as decimal strings); decodes back
    to an equal configuration."""
    return msgspec.json.encode(config)


# JSON numbers are kept as their text (Decimal) until msgspec converts them:
# exactly for Decimal fields, correctly rounded for float fields.
_JSON = msgspec.json.Decoder(float_hook=Decimal)
_MAPPING_VALUES: dict[str, Any] = {"assets": float}
_PATH_PART = re.compile(r"\.([^.\[]+)|\[([^\]]*)\]")
_MISSING = object()


def _translate(error: msgspec.ValidationError, doc: Any) -> ConfigError:
    """msgspec's "... - at `$.a.b[...]`" -> ConfigError(field="a.b[KEY]")."""
    head, sep, tail = str(error).rpartition(" - at `")
    message, at = (head, tail) if sep else (tail, "")
    parts: list[str] = []
    node: Any = doc
    if at:
        for name, index in _PATH_PART.findall(at.rstrip("`").removeprefix("$")):
            if name:
                parts.append(name)
                node = node.get(name, _MISSING) if isinstance(node, Mapping) else _MISSING
            elif index == "..." and isinstance(node, Mapping):
                key = _bad_key(".".join(parts), node)
                parts.append((parts.pop() if parts else "") + f"[{key if key is not None else '...'}]")
                node = node[key] if key is not None else _MISSING
            else:
                parts.append((parts.pop() if parts else "") + f"[{index}]")
                node = node[int(index)] if isinstance(node, list) and index.isdigit() else _MISSING
    unknown = re.fullmatch(r"Object contains unknown field `(.*)`", message)
    missing = re.fullmatch(r"Object missing required field `(.*)`", message)
    named = unknown or missing
    if named is not None:
        name = named.group(1)
        parts.append(name)
        field = ".".join(parts)
        if unknown:
            value = node.get(name) if isinstance(node, Mapping) else None
            return ConfigError(f"{field}: unknown field (value {_show(value)})", field=field, value=value)
        return ConfigError(f"{field}: required, missing", field=field, value=None)
    detail = message[:1].lower() + message[1:]
    if not parts:
        return ConfigError(f"configuration: {detail}", field=None, value=None)
    field = ".".join(parts)
    value = None if node is _MISSING else node
    return ConfigError(f"{field}: {detail} (value {_show(value)})", field=field, value=value)


def _bad_key(path: str, mapping: Mapping[Any, Any]) -> Any:
    """The first key of `mapping` whose value does not convert."""
    wanted = _MAPPING_VALUES.get(path)
    if wanted is None:
        return None
    for key, value in mapping.items():
        try:
            msgspec.convert(value, wanted)
        except msgspec.ValidationError:
            return key
    return None


def _show(value: Any) -> str:
    return str(value) if isinstance(value, Decimal) else repr(value)


# ---------------------------------------------------------------- rules


def validate(config: StrategyConfig, limits: Limits = _DEFAULT_LIMITS) -> StrategyConfig:
    """Checks every rule of a configuration; returns it unchanged when it is
    good, raises `ConfigError` naming the first field that is not."""
    _check_assets(config, limits)
    _check_amount(config.investment, "investment", minimum=limits.min_investment, maximum=limits.max_investment)

    trigger = config.trigger
    if isinstance(trigger, ThresholdTrigger):
        _check_range(trigger.threshold, "trigger.threshold", 0.0, 100.0, low_open=True, high_open=True)
    else:
        every = parse_duration(trigger.every, "trigger.every")
        if not _CALENDAR_MIN_MS <= every <= _CALENDAR_MAX_MS:
            raise ConfigError(
                f"trigger.every: a calendar interval runs from 30m to 28d (got {trigger.every!r})",
                field="trigger.every",
                value=trigger.every,
            )
        if trigger.gate is not None:
            _check_range(trigger.gate, "trigger.gate", 0.0, 100.0, low_open=False, high_open=True)

    parse_duration(config.cooldown, "cooldown")  # a duration is never negative
    _check_destination(config.destination)
    if config.destination != "target" and not isinstance(trigger, ThresholdTrigger):
        raise ConfigError(
            f"destination: {config.destination!r} moves back into the threshold band; a calendar trigger has none (use 'target')",
            field="destination",
            value=config.destination,
        )
    if config.fee_rate is not None:
        _check_range(config.fee_rate, "fee_rate", 0.0, 1.0, low_open=False, high_open=True)
    if config.take_profit is not None:
        _check_range(config.take_profit, "take_profit", 0.0, math.inf, low_open=True, high_open=True)
    if config.stop_loss is not None:
        _check_range(config.stop_loss, "stop_loss", 0.0, 100.0, low_open=True, high_open=True)
    if config.trailing_take_profit is not None:
        ttp = config.trailing_take_profit
        _check_range(ttp.arm, "trailing_take_profit.arm", 0.0, math.inf, low_open=True, high_open=True)
        _check_range(ttp.drop, "trailing_take_profit.drop", 0.0, 100.0, low_open=True, high_open=True)
    if config.auto_invest is not None:
        _check_auto_invest(config.auto_invest)
    return config


def _check_assets(config: StrategyConfig, limits: Limits) -> None:
    assets = config.assets
    if not limits.min_assets <= len(assets) <= limits.max_assets:
        raise ConfigError(
            f"assets: {len(assets)} assets; from {limits.min_assets} to {limits.max_assets} are allowed",
            field="assets",
            value=len(assets),
        )
    quote = config.quote
    if not quote.strip():
        raise ConfigError(f"quote: empty symbol (got {quote!r})", field="quote", value=quote)
    seen: dict[str, str] = {}
    for symbol, weight in assets.items():
        field = f"assets[{symbol}]"
        if not symbol.strip():
            raise ConfigError(f"{field}: empty symbol (got {symbol!r})", field=field, value=symbol)
        key = symbol.upper()
        if key in seen:
            raise ConfigError(f"{field}: {symbol!r} is {seen[key]!r} again", field=field, value=symbol)
        seen[key] = symbol
        if key == quote.upper():
            raise ConfigError(f"{field}: {symbol!r} is the quote asset {quote!r}", field=field, value=symbol)
        if not (math.isfinite(weight) and weight > 0):
            raise ConfigError(f"{field}: a weight must be a finite number > 0 (got {weight!r})", field=field, value=weight)
    total = math.fsum(assets.values())
    if abs(total - 100.0) > 1e-9:
        raise ConfigError(f"assets: the weights sum to {total!r} %, not 100 %", field="assets", value=total)


_LARGEST = Decimal("1e20")  # amounts are i128 counts of 1e-18: about 1.7e20 at most


def _decimals(amount: Decimal) -> int:
    """Decimal places of `amount`, trailing zeros aside (exact: no context rounding)."""
    _, digits, exponent = amount.as_tuple()
    places = -int(exponent)
    for digit in reversed(digits):
        if places <= 0 or digit != 0:
            break
        places -= 1
    return max(places, 0)


def _check_amount(amount: Decimal, field: str, *, minimum: Decimal | None = None, maximum: Decimal | None = None) -> None:
    if not isinstance(amount, Decimal):  # a Struct built in code rather than decoded
        raise ConfigError(f"{field}: must be a Decimal, e.g. Decimal('1000') (got {type(amount).__name__} {amount!r})", field=field, value=amount)
    if not (amount.is_finite() and amount > 0):
        raise ConfigError(f"{field}: must be a finite amount > 0 (got {amount})", field=field, value=amount)
    if amount >= _LARGEST or _decimals(amount) > 18:
        raise ConfigError(f"{field}: at most 18 decimals and below 1e20 (got {amount})", field=field, value=amount)
    if minimum is not None and amount < minimum:
        raise ConfigError(f"{field}: {amount} is below the minimum {minimum}", field=field, value=amount)
    if maximum is not None and amount > maximum:
        raise ConfigError(f"{field}: {amount} is above the maximum {maximum}", field=field, value=amount)


def _check_range(value: float, field: str, low: float, high: float, *, low_open: bool, high_open: bool) -> None:
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (math.isfinite(value) and above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{field}: must be in {interval} (got {value!r})", field=field, value=value)


def _check_destination(destination: str) -> None:
    if destination in ("target", "band_edge"):
        return
    match = _INNER_BAND.fullmatch(destination)
    if match is not None:
        try:
            k = float(match.group(1))
        except ValueError:
            k = math.nan
        if 0.0 < k < 1.0:
            return
        raise ConfigError(f"destination: inner_band(k) needs 0 < k < 1 (got {destination!r})", field="destination", value=destination)
    raise ConfigError(
        f"destination: must be 'target', 'band_edge' or 'inner_band(k)' (got {destination!r})",
        field="destination",
        value=destination,
    )


def _check_auto_invest(auto: AutoInvest) -> None:
    _check_amount(auto.amount, "auto_invest.amount")
    if auto.cap is not None:
        _check_amount(auto.cap, "auto_invest.cap")
        if auto.cap < auto.amount:
            raise ConfigError(
                f"auto_invest.cap: {auto.cap} is less than one amount {auto.amount}",
                field="auto_invest.cap",
                value=auto.cap,
            )
    mode = auto.mode
    if isinstance(mode, DrawdownMode):
        _check_range(mode.loss, "auto_invest.mode.loss", 0.0, 100.0, low_open=True, high_open=True)
        parse_duration(mode.min_interval, "auto_invest.mode.min_interval")
    else:
        _schedule_parts(mode, "auto_invest.mode")


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _schedule_parts(mode: ScheduleMode, field: str) -> tuple[str, int, int, int, int]:
    """Checks a schedule; returns (which, every_ms, weekday 0=Mon, day, minute of day)."""
    given = [name for name in ("every", "weekly", "monthly") if getattr(mode, name) is not None]
    if len(given) != 1:
        raise ConfigError(
            f"{field}: give exactly one of every, weekly, monthly (got {', '.join(given) or 'none'})",
            field=field,
            value=given,
        )
    minute = parse_time_of_day(mode.at, f"{field}.at")
    if mode.every is not None:
        every = parse_duration(mode.every, f"{field}.every")
        if every < _HOUR_MS or every % _HOUR_MS:
            raise ConfigError(
                f"{field}.every: a whole number of hours, at least 1h (got {mode.every!r})",
                field=f"{field}.every",
                value=mode.every,
            )
        return "every", every, 0, 0, minute
    if mode.weekly is not None:
        if mode.weekly not in _WEEKDAYS:  # msgspec checks this on decoding; a hand-made one may not be
            raise ConfigError(f"{field}.weekly: a weekday mon … sun (got {mode.weekly!r})", field=f"{field}.weekly", value=mode.weekly)
        return "weekly", 0, _WEEKDAYS.index(mode.weekly), 0, minute
    day = mode.monthly
    if isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 31:
        raise ConfigError(f"{field}.monthly: a day from 1 to 31 (got {day!r})", field=f"{field}.monthly", value=day)
    return "monthly", 0, 0, day, minute
