"""Price data for backtests: the real CryptoDataDownload files in
../shared/data (read at test time), hand-made tables, the ccxt cache with a
fake ccxt, the synthetic generator, and every refusal naming its field."""

from __future__ import annotations

import csv
import sys
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rebal.backtest import data
from rebal.backtest.data import PriceData, align, load, load_ccxt, load_cryptodatadownload, load_table, synthetic
from rebal.exceptions import ConfigError, PriceError

from .conftest import shared

DAY = 86_400_000
HOUR = 3_600_000
NINE = ["ADA", "BCH", "BNB", "BTC", "DOGE", "ETH", "SOL", "TRX", "XRP"]
GAP_DAYS = ["2026-01-08", "2026-01-20", "2026-03-20", "2026-03-21", "2026-03-22", "2026-03-25"]


def ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def raw_rows(path: Path) -> list[dict[str, str]]:
    """The file as written: source line skipped, rows in file order (newest first)."""
    lines = path.read_text().splitlines()
    return list(csv.DictReader(lines[1:]))


@pytest.fixture(scope="module")
def daily() -> Path:
    return shared("daily_binance_usdt")


@pytest.fixture(scope="module")
def hourly() -> Path:
    return shared("hourly_triangle_2019")


# --------------------------------------------------------------------------- real daily files


def test_the_nine_daily_files_load(daily: Path) -> None:
    prices = load_cryptodatadownload(daily)
    assert prices.assets == NINE
    assert prices.quote == "USDT" and prices.interval_ms == DAY
    # SOL starts last (2020-08-11); all nine end 2026-03-30
    assert prices.times_ms[0] == ms("2020-08-11") and prices.times_ms[-1] == ms("2026-03-30")
    assert len(prices) == (ms("2026-03-30") - ms("2020-08-11")) // DAY + 1 == 2058
    assert prices.filled == {a: 6 for a in NINE}
    assert np.all(np.diff(prices.times_ms) == DAY)
    assert np.all(np.isfinite(prices.close)) and np.all(prices.close > 0)
    for a in NINE:
        assert f"Binance_{a}USDT_d.csv" in prices.source


def test_btc_eth_sol_start_at_sols_first_day(daily: Path) -> None:
    prices = load_cryptodatadownload(daily, ["BTC", "ETH", "SOL"])
    assert prices.assets == ["BTC", "ETH", "SOL"]
    sol = raw_rows(daily / "Binance_SOLUSDT_d.csv")
    assert prices.times_ms[0] == int(sol[-1]["Unix"])  # the oldest row is the last one
    assert prices.close[0, 2] == float(sol[-1]["Close"])
    btc = {int(r["Unix"]): float(r["Close"]) for r in raw_rows(daily / "Binance_BTCUSDT_d.csv")}
    assert prices.close[0, 0] == btc[int(sol[-1]["Unix"])]


def test_newest_first_rows_come_out_oldest_first(daily: Path) -> None:
    rows = raw_rows(daily / "Binance_BTCUSDT_d.csv")
    assert int(rows[0]["Unix"]) > int(rows[-1]["Unix"])  # the file is newest first
    prices = load_cryptodatadownload([daily / "Binance_BTCUSDT_d.csv"])
    assert prices.assets == ["BTC"]
    assert prices.times_ms[0] == ms("2017-08-17") and prices.times_ms[-1] == ms("2026-03-30")
    assert len(prices) == len(rows) + 6  # 3142 rows plus the six missing days
    closes = {int(r["Unix"]): float(r["Close"]) for r in rows}
    real = ~prices.filled_mask[:, 0]
    assert [closes[int(t)] for t in prices.times_ms[real]] == list(prices.close[real, 0])


def test_the_six_shared_missing_days_are_forward_filled_and_counted(daily: Path) -> None:
    prices = load_cryptodatadownload(daily, ["BTC", "ETH", "SOL"])
    gaps = [ms(d) for d in GAP_DAYS]
    assert prices.filled == {"BTC": 6, "ETH": 6, "SOL": 6}
    filled_times = prices.times_ms[prices.filled_mask.any(axis=1)]
    assert list(filled_times) == gaps
    assert np.array_equal(prices.filled_mask.all(axis=1), prices.filled_mask.any(axis=1))  # the same days in every file
    for g in gaps:
        i = int(np.searchsorted(prices.times_ms, g))
        assert np.array_equal(prices.close[i], prices.close[i - 1])  # the previous day's close, carried
    # 2026-03-20..22 in a row: all three carry 2026-03-19's close
    raw = {int(r["Unix"]): float(r["Close"]) for r in raw_rows(daily / "Binance_ETHUSDT_d.csv")}
    i = int(np.searchsorted(prices.times_ms, ms("2026-03-22")))
    assert prices.close[i, 1] == raw[ms("2026-03-19")]
    # over each file's own full history the count is the same six
    for a in NINE:
        assert load_cryptodatadownload(daily, [a]).filled == {a: 6}


def test_asset_names_pick_files_case_insensitively_and_missing_ones_are_named(daily: Path) -> None:
    prices = load_cryptodatadownload(daily, ["sol", "BTC"])
    assert prices.assets == ["sol", "BTC"]
    with pytest.raises(ConfigError) as e:
        load_cryptodatadownload(daily, ["BTC", "XYZ"])
    assert e.value.field == "assets[XYZ]" and e.value.value == "XYZ"


# --------------------------------------------------------------------------- real hourly files: s timestamps, dates only


def test_hourly_files_with_second_timestamps(hourly: Path) -> None:
    prices = load_cryptodatadownload(hourly)  # quote USDT: only BTCUSDT and ETHUSDT
    assert prices.assets == ["BTC", "ETH"] and prices.interval_ms == HOUR
    assert len(prices) == 734 and prices.filled == {"BTC": 0, "ETH": 0}
    assert prices.times_ms[0] == 1_555_545_600_000  # "1555545600.0" seconds: 2019-04-18 00:00 UTC
    assert prices.close[0, 0] == 5206.67 and prices.close[-1, 0] == 7322.13


def test_hourly_files_with_dates_only_match_and_make_a_triangle(hourly: Path) -> None:
    usdt = load_cryptodatadownload(hourly, ["BTC", "ETH"])
    btc = load_cryptodatadownload(hourly, ["ETH", "LTC"], quote="BTC")  # "2019-05-18 01-PM" dates
    assert np.array_equal(usdt.times_ms, btc.times_ms)
    ratio = usdt.close[:, 1] / (btc.close[:, 0] * usdt.close[:, 0])
    assert abs(float(ratio.mean()) - 1) < 1e-3 and float(np.abs(ratio - 1).max()) < 5e-3


def write_cdd(path: Path, rows: list[tuple[Any, str, float]], *, source_line: bool = True, symbol: str = "BTCUSDT") -> Path:
    lines = ["https://www.CryptoDataDownload.com"] if source_line else []
    lines.append("Unix,Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USDT,tradecount")
    lines += [f"{u},{d},{symbol},1,1,1,{c},1,1,1" for u, d, c in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("unit", [1, 1000, 1_000_000], ids=["seconds", "ms", "us"])
def test_unix_in_seconds_milliseconds_or_microseconds(tmp_path: Path, unit: int) -> None:
    days = [ms("2024-01-03"), ms("2024-01-02"), ms("2024-01-01")]
    rows = [(t // 1000 * unit, "", c) for t, c in zip(days, [3.0, 2.0, 1.0], strict=True)]
    prices = load_cryptodatadownload(write_cdd(tmp_path / "Binance_BTCUSDT_d.csv", rows))
    assert list(prices.times_ms) == days[::-1] and list(prices.close[:, 0]) == [1.0, 2.0, 3.0]


def test_mixed_units_in_one_file_and_no_source_line(tmp_path: Path) -> None:
    rows = [(ms("2024-01-02"), "", 2.0), (ms("2024-01-01") // 1000, "", 1.0)]
    prices = load_cryptodatadownload(write_cdd(tmp_path / "Binance_BTCUSDT_d.csv", rows, source_line=False))
    assert list(prices.times_ms) == [ms("2024-01-01"), ms("2024-01-02")]


def test_cdd_refusals_name_the_asset(tmp_path: Path) -> None:
    bad = write_cdd(tmp_path / "Binance_BTCUSDT_d.csv", [(ms("2024-01-02"), "", -5.0), (ms("2024-01-01"), "", 1.0)])
    with pytest.raises(PriceError) as pe:
        load_cryptodatadownload(bad)
    assert pe.value.field == "data[BTC]" and pe.value.value == "-5.0"
    other = write_cdd(tmp_path / "Binance_ETHUSDT_d.csv", [(ms("2024-01-01"), "", 1.0)], symbol="BTCUSDT")
    with pytest.raises(ConfigError) as e:
        load_cryptodatadownload(other)
    assert e.value.field == "data[ETH]"
    with pytest.raises(ConfigError) as e:
        load_cryptodatadownload(tmp_path / "nowhere")
    assert e.value.field == "data"
    odd = tmp_path / "prices.csv"
    odd.write_text("x\n")
    with pytest.raises(ConfigError) as e:
        load_cryptodatadownload([odd])
    assert e.value.field == "data"


# --------------------------------------------------------------------------- tables


def test_hand_made_csv_with_iso_dates_different_histories_and_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(
        "timestamp,BTC,ETH/USDT,DOGE\n"
        "2024-01-04,43000,2300,0.08\n"
        "2024-01-01,42000,,0.09\n"  # ETH starts 2024-01-02; any order
        "2024-01-02,42500,2250,\n"  # a DOGE gap
        "2024-01-03,42800,2280,0.085\n"
    )
    prices = load_table(path)
    assert prices.assets == ["BTC", "ETH", "DOGE"] and prices.interval_ms == DAY
    assert list(prices.times_ms) == [ms("2024-01-02"), ms("2024-01-03"), ms("2024-01-04")]
    assert prices.close.tolist() == [[42500, 2250, 0.09], [42800, 2280, 0.085], [43000, 2300, 0.08]]
    assert prices.filled == {"BTC": 0, "ETH": 0, "DOGE": 1}
    assert prices.filled_mask[:, 2].tolist() == [True, False, False]
    assert load_table(path, assets=["ETH", "BTC"]).assets == ["ETH", "BTC"]
    with pytest.raises(ConfigError) as e:
        load_table(path, assets=["XYZ"])
    assert e.value.field == "assets[XYZ]"
    with pytest.raises(ConfigError) as e:
        load_table(path, time_column="time")
    assert e.value.field == "time_column"


def test_csv_with_epoch_seconds_and_ms_times(tmp_path: Path) -> None:
    secs, msec = tmp_path / "s.csv", tmp_path / "ms.csv"
    secs.write_text("time,BTC\n" + "".join(f"{ms('2024-01-01') // 1000 + k * 3600},{100 + k}\n" for k in range(5)))
    msec.write_text("time,BTC\n" + "".join(f"{ms('2024-01-01') + k * HOUR},{100 + k}\n" for k in range(5)))
    a, b = load_table(secs, time_column="time"), load_table(msec, time_column="time")
    assert np.array_equal(a.times_ms, b.times_ms) and np.array_equal(a.close, b.close)
    assert a.interval_ms == HOUR


def test_hand_made_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    days = [datetime(2024, 1, d, tzinfo=UTC) for d in (1, 2, 3, 4)]
    table = pa.table(
        {
            "timestamp": pa.array(days, type=pa.timestamp("ms", tz="UTC")),
            "BTC": [42000.0, 42500.0, None, 43000.0],  # a null: a gap
            "ETH": [2200.0, 2250.0, 2280.0, 2300.0],
        }
    )
    path = tmp_path / "prices.parquet"
    pq.write_table(table, path)
    prices = load_table(path)
    assert prices.assets == ["BTC", "ETH"] and list(prices.times_ms) == [ms(f"2024-01-0{d}") for d in (1, 2, 3, 4)]
    assert prices.close[2, 0] == 42500.0 and prices.filled == {"BTC": 1, "ETH": 0}
    # integer epoch-ms times work too
    ints = tmp_path / "ints.parquet"
    pq.write_table(table.set_column(0, "timestamp", pa.array([ms(f"2024-01-0{d}") for d in (1, 2, 3, 4)], type=pa.int64())), ints)
    assert load_table(ints) == PriceData(
        times_ms=prices.times_ms,
        assets=prices.assets,
        close=prices.close,
        filled=prices.filled,
        source=str(ints),
        interval_ms=DAY,
        filled_mask=prices.filled_mask,
    )
    # a NaN is not a gap: it is refused
    nan = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"timestamp": [ms("2024-01-01"), ms("2024-01-02")], "ETH": pa.array([1.0, float("nan")], from_pandas=False)}), nan)
    with pytest.raises(PriceError) as pe:
        load_table(nan)
    assert pe.value.field == "data[ETH]"


def test_table_refusals(tmp_path: Path) -> None:
    nan = tmp_path / "nan.csv"
    nan.write_text("timestamp,BTC,ETH\n2024-01-01,1,2\n2024-01-02,nan,2\n")
    with pytest.raises(PriceError) as pe:
        load_table(nan)
    assert pe.value.field == "data[BTC]"
    neg = tmp_path / "neg.csv"
    neg.write_text("timestamp,BTC,ETH\n2024-01-01,1,2\n2024-01-02,1,-2\n")
    with pytest.raises(PriceError) as pe:
        load_table(neg)
    assert pe.value.field == "data[ETH]" and pe.value.value == -2.0
    dup = tmp_path / "dup.csv"
    dup.write_text("timestamp,BTC\n2024-01-01,1\n2024-01-02,2\n2024-01-02,3\n")
    with pytest.raises(ConfigError) as e:
        load_table(dup)
    assert e.value.field == "data[BTC]" and e.value.value == ms("2024-01-02")
    same = tmp_path / "same.csv"
    same.write_text("timestamp,BTC\n2024-01-01,1\n2024-01-02,2\n2024-01-02,2\n")
    assert len(load_table(same)) == 2  # a repeated row with the same close is one tick
    with pytest.raises(ConfigError) as e:
        load_table(tmp_path / "prices.xlsx")
    assert e.value.field == "data"


# --------------------------------------------------------------------------- align


def test_align_refuses_bad_series_naming_the_asset() -> None:
    t = np.array([0, DAY, 2 * DAY])
    with pytest.raises(ConfigError) as e:
        align({"BTC": (np.array([0, DAY, DAY]), np.array([1.0, 2.0, 2.5]))})
    assert e.value.field == "data[BTC]" and e.value.value == DAY
    with pytest.raises(PriceError) as pe:
        align({"BTC": (t, [1.0, 2.0, 3.0]), "ETH": (t, [1.0, np.nan, 3.0])})
    assert pe.value.field == "data[ETH]"
    with pytest.raises(PriceError) as pe:
        align({"BTC": (t, [1.0, 0.0, 3.0])})
    assert pe.value.field == "data[BTC]" and pe.value.value == 0.0
    with pytest.raises(PriceError) as pe:
        align({"BTC": (t, [1.0, np.inf, 3.0])})
    assert pe.value.field == "data[BTC]"
    with pytest.raises(ConfigError) as e:
        align({"BTC": (t, [1.0, 2.0, 3.0]), "SOL": (t + 10 * DAY, [1.0, 2.0, 3.0])})
    assert e.value.field == "data[SOL]"  # starts after BTC ends: no common range
    with pytest.raises(ConfigError) as e:
        align({"BTC": (t, [1.0, 2.0, 3.0]), "ETH": (np.array([0, DAY + 5, 2 * DAY]), [1.0, 2.0, 3.0])})
    assert e.value.field == "data[ETH]"  # off the daily grid
    with pytest.raises(ConfigError) as e:
        align({"BTC": (np.array([], dtype=np.int64), np.array([]))})
    assert e.value.field == "data[BTC]"
    with pytest.raises(ConfigError) as e:
        align({})
    assert e.value.field == "data"


def test_align_common_range_spacing_and_fill_at_the_first_tick() -> None:
    prices = align(
        {
            "BTC": (np.array([0, 2, 3, 4, 5, 9]) * DAY, np.array([1.0, 3, 4, 5, 6, 10])),  # 6..8 missing, 1 missing
            "ETH": (np.array([1, 2, 3, 4, 5, 6, 7]) * DAY, np.arange(1.0, 8.0)),
        },
        source="test",
    )
    assert prices.interval_ms == DAY  # the most common spacing
    assert list(prices.times_ms) == [k * DAY for k in range(1, 8)]  # [ETH's start, ETH's end]
    assert prices.close[:, 0].tolist() == [1.0, 3, 4, 5, 6, 6, 6]  # day 1 carried from day 0; 6, 7 from day 5
    assert prices.filled == {"BTC": 3, "ETH": 0}
    hourly = align({"X": (np.array([0, 2]) * HOUR, [1.0, 2.0])}, interval_ms=HOUR)
    assert hourly.close[:, 0].tolist() == [1.0, 1.0, 2.0] and hourly.filled == {"X": 1}


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_reproducible_by_seed_and_correlated() -> None:
    a, b = synthetic(seed=7), synthetic(seed=7)
    assert a == b and a.source == "synthetic(seed=7)"
    assert a.assets == ["BTC", "ETH", "SOL"] and len(a) == 1095 and a.interval_ms == DAY
    assert a.times_ms[0] == 1_640_995_200_000 and a.filled == {"BTC": 0, "ETH": 0, "SOL": 0}
    assert not np.array_equal(a.close, synthetic(seed=8).close)
    assert a.close[0].tolist() == [46_200.0, 3_680.0, 170.0]
    returns = np.diff(np.log(a.close), axis=0)
    corr = np.corrcoef(returns.T)
    assert np.all(corr[np.triu_indices(3, 1)] > 0.3)
    vols = returns.std(axis=0)
    assert 0.025 < vols[0] < 0.045 and 0.035 < vols[1] < 0.055 and 0.045 < vols[2] < 0.075
    assert np.allclose(a.close[:, 0] * 100, np.round(a.close[:, 0] * 100))  # on a 0.01 tick


def test_synthetic_asset_paths_do_not_depend_on_the_others() -> None:
    three = synthetic(["BTC", "ETH", "XYZ"], ticks=200, seed=3)
    one = synthetic(["ETH"], ticks=200, seed=3)
    assert np.array_equal(three.close[:, 1], one.close[:, 0])
    assert three.close[0, 2] == 10.0  # an unknown coin starts at 10
    hourly = synthetic(["BTC"], ticks=48, interval_ms=HOUR, start_ms=ms("2024-01-01"))
    assert hourly.interval_ms == HOUR and hourly.times_ms[-1] == ms("2024-01-01") + 47 * HOUR
    assert float(np.diff(np.log(hourly.close[:, 0])).std()) < 0.02  # vol scaled down to an hour
    cases: list[tuple[dict[str, Any], str]] = [({"ticks": 0}, "ticks"), ({"seed": -1}, "seed"), ({"interval_ms": 0}, "interval_ms")]
    for bad, field in cases:
        with pytest.raises(ConfigError) as e:
            synthetic(**bad)
        assert e.value.field == field
    with pytest.raises(ConfigError) as e:
        synthetic(["BTC", "BTC"])
    assert e.value.field == "assets[BTC]"


# --------------------------------------------------------------------------- PriceData


def test_between_and_select(daily: Path) -> None:
    prices = load_cryptodatadownload(daily, ["BTC", "ETH", "SOL"])
    march = prices.between(ms("2026-03-01"), ms("2026-03-31"))
    assert march.times_ms[0] == ms("2026-03-01") and march.times_ms[-1] == ms("2026-03-30")  # inclusive, cut at the data
    assert len(march) == 30 and march.filled == {"BTC": 4, "ETH": 4, "SOL": 4}  # 20, 21, 22, 25 March
    assert prices.between(None, ms("2025-12-31")).filled == {"BTC": 0, "ETH": 0, "SOL": 0}
    one = prices.between(ms("2026-01-08"), ms("2026-01-08"))
    assert len(one) == 1 and one.filled == {"BTC": 1, "ETH": 1, "SOL": 1}
    assert prices.between(None, None) == prices
    with pytest.raises(ConfigError) as e:
        prices.between(ms("2027-01-01"), None)
    assert e.value.field == "start_ms"
    with pytest.raises(ConfigError) as e:
        prices.between(None, ms("2019-01-01"))
    assert e.value.field == "end_ms"

    sub = prices.select(["SOL", "BTC"])
    assert sub.assets == ["SOL", "BTC"]
    assert np.array_equal(sub.close, prices.close[:, [2, 0]]) and np.array_equal(sub.filled_mask, prices.filled_mask[:, [2, 0]])
    assert sub.filled == {"SOL": 6, "BTC": 6}
    with pytest.raises(ConfigError) as e:
        prices.select(["BTC", "XYZ"])
    assert e.value.field == "assets[XYZ]"


def test_price_data_is_read_only_and_checked() -> None:
    prices = synthetic(["BTC"], ticks=5)
    with pytest.raises(ValueError):
        prices.close[0, 0] = 1.0
    with pytest.raises(AttributeError):
        prices.quote = "USDC"  # type: ignore[misc]
    t = np.arange(3, dtype=np.int64) * DAY
    with pytest.raises(ConfigError) as e:
        PriceData(times_ms=t, assets=["BTC"], close=np.ones((3, 1)), filled={"BTC": 1}, interval_ms=DAY)
    assert e.value.field == "filled"
    with pytest.raises(PriceError) as pe:
        PriceData(times_ms=t, assets=["BTC"], close=-np.ones((3, 1)), filled={"BTC": 0}, interval_ms=DAY)
    assert pe.value.field == "data[BTC]"
    with pytest.raises(ConfigError) as e:
        PriceData(times_ms=t * 2, assets=["BTC"], close=np.ones((3, 1)), filled={"BTC": 0}, interval_ms=DAY)
    assert e.value.field == "times_ms"
    assert "BTC/USDT, 5 ticks of 1d" in repr(prices)


# --------------------------------------------------------------------------- ccxt, with a fake ccxt


NOW = ms("2024-01-20") + 12 * HOUR  # mid-day: the 2024-01-20 candle is still open


class FakeExchange:
    """Enough of a ccxt exchange: markets, features, paginated fetch_ohlcv."""

    candles: dict[str, list[list[Any]]] = {}
    calls: list[tuple[str, str, int, int | None]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.id = "fakex"
        self.has = {"fetchOHLCV": True}
        self.timeframes = {"1d": "1d", "1h": "1h"}
        self.features = {"spot": {"fetchOHLCV": {"limit": 4}}}
        self.markets: dict[str, Any] = {}

    def load_markets(self) -> dict[str, Any]:
        self.markets = {s: {"symbol": s} for s in self.candles}
        return self.markets

    def fetch_ohlcv(self, symbol: str, timeframe: str, since: int, limit: int | None = None) -> list[list[Any]]:
        FakeExchange.calls.append((symbol, timeframe, since, limit))
        rows = [c for c in self.candles[symbol] if c[0] >= since]
        return rows[: limit or 500]


def day_candles(first: str, n: int, price: float, skip: tuple[int, ...] = ()) -> list[list[Any]]:
    return [[ms(first) + k * DAY, price, price, price, price + k, 1.0] for k in range(n) if k not in skip]


@pytest.fixture
def fake_ccxt(monkeypatch: pytest.MonkeyPatch) -> type[FakeExchange]:
    module = types.ModuleType("ccxt")
    module.fakex = FakeExchange  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ccxt", module)
    monkeypatch.setattr(FakeExchange, "candles", {
        "BTC/USDT": day_candles("2024-01-01", 20, 40_000.0, skip=(5,)),  # 2024-01-06 missing on the exchange
        "ETH/USDT": day_candles("2024-01-03", 18, 2_000.0),
    })
    monkeypatch.setattr(FakeExchange, "calls", [])
    monkeypatch.setattr(data, "_now_ms", lambda: NOW)
    return FakeExchange


def no_ccxt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ccxt", None)  # `import ccxt` now raises ImportError


def test_load_ccxt_fetches_page_by_page_then_reads_the_cache_without_network(
    fake_ccxt: type[FakeExchange], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_ccxt("fakex", ["BTC", "ETH"], since_ms=ms("2024-01-01"), cache_dir=tmp_path)
    assert first.source == "ccxt:fakex" and first.assets == ["BTC", "ETH"]
    # ETH starts 2024-01-03; the 2024-01-20 candle is still open at NOW, so it is left out
    assert first.times_ms[0] == ms("2024-01-03") and first.times_ms[-1] == ms("2024-01-19")
    assert first.filled == {"BTC": 1, "ETH": 0}
    i = int(np.searchsorted(first.times_ms, ms("2024-01-06")))
    assert first.close[i, 0] == first.close[i - 1, 0] == 40_004.0
    assert len(fake_ccxt.calls) > 4 and all(limit == 4 for _, _, _, limit in fake_ccxt.calls)  # paginated
    cached = tmp_path / "fakex" / "BTC_USDT_1d.csv"
    assert cached.read_text().startswith("# rebal ccxt cache v1 exchange=fakex symbol=BTC/USDT timeframe=1d")
    assert str(ms("2024-01-20")) not in cached.read_text()  # an open candle is never stored

    no_ccxt(monkeypatch)
    again = load_ccxt("fakex", ["BTC", "ETH"], since_ms=ms("2024-01-01"), cache_dir=tmp_path)
    assert again == first
    inside = load_ccxt("fakex", ["ETH"], since_ms=ms("2024-01-05"), until_ms=ms("2024-01-10"), cache_dir=tmp_path)
    assert len(inside) == 6 and inside.close[0, 0] == 2_002.0


def test_load_ccxt_fetches_only_what_the_cache_lacks(fake_ccxt: type[FakeExchange], tmp_path: Path) -> None:
    load_ccxt("fakex", ["BTC"], since_ms=ms("2024-01-05"), until_ms=ms("2024-01-10"), cache_dir=tmp_path)
    fake_ccxt.calls.clear()
    wider = load_ccxt("fakex", ["BTC"], since_ms=ms("2024-01-01"), until_ms=ms("2024-01-12"), cache_dir=tmp_path)
    assert len(wider) == 12 and wider.filled == {"BTC": 1}
    assert {since for _, _, since, _ in fake_ccxt.calls} >= {ms("2024-01-01"), ms("2024-01-10") + 1}
    assert all(not (ms("2024-01-05") <= since <= ms("2024-01-10")) for _, _, since, _ in fake_ccxt.calls)


def test_load_ccxt_without_ccxt_or_cache_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_ccxt(monkeypatch)
    with pytest.raises(ConfigError) as e:
        load_ccxt("binance", ["BTC"], since_ms=ms("2024-01-01"), until_ms=ms("2024-01-10"), cache_dir=tmp_path)
    assert e.value.field == "data[BTC]" and e.value.value == "ccxt:binance"
    assert "pip install 'rebal[ccxt]'" in str(e.value) and "cache" in str(e.value)


def test_load_ccxt_refusals(fake_ccxt: type[FakeExchange], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_ccxt("fakex", ["XYZ"], since_ms=ms("2024-01-01"), cache_dir=tmp_path)
    assert e.value.field == "assets[XYZ]"
    with pytest.raises(ConfigError) as e:
        load_ccxt("nosuchexchange", ["BTC"], since_ms=ms("2024-01-01"), cache_dir=tmp_path)
    assert e.value.field == "exchange_id"
    with pytest.raises(ConfigError) as e:
        load_ccxt("fakex", ["BTC"], timeframe="1M", since_ms=ms("2024-01-01"), cache_dir=tmp_path)
    assert e.value.field == "timeframe"
    with pytest.raises(ConfigError) as e:
        load_ccxt("fakex", ["BTC"], timeframe="4h", since_ms=ms("2024-01-01"), cache_dir=tmp_path)
    assert e.value.field == "timeframe"  # the exchange does not offer it
    with pytest.raises(ConfigError) as e:
        load_ccxt("fakex", ["BTC"], since_ms=ms("2025-01-01"), cache_dir=tmp_path)
    assert e.value.field == "since_ms"
    with pytest.raises(ConfigError) as e:
        load_ccxt("../x", ["BTC"], since_ms=ms("2024-01-01"), cache_dir=tmp_path)
    assert e.value.field == "exchange_id"


# --------------------------------------------------------------------------- load (the CLI's dispatcher)


def test_load_dispatches(daily: Path, tmp_path: Path, fake_ccxt: type[FakeExchange], monkeypatch: pytest.MonkeyPatch) -> None:
    assert load(None, ["BTC", "ETH"]) == synthetic(["BTC", "ETH"])
    window = load(None, ["BTC"], start_ms=ms("2023-01-01"), end_ms=ms("2023-01-31"))
    assert len(window) == 31 and window.times_ms[0] == ms("2023-01-01")
    assert load(None, []).assets == ["BTC", "ETH", "SOL"]

    assert load(daily, ["BTC", "SOL"]) == load_cryptodatadownload(daily, ["BTC", "SOL"])
    assert load(str(daily), []).assets == NINE
    cut = load(daily, ["BTC"], start_ms=ms("2026-03-01"), end_ms=ms("2026-03-10"))
    assert len(cut) == 10 and cut.filled == {"BTC": 0}
    assert load(daily / "Binance_ETHUSDT_d.csv", ["ETH"]).times_ms[0] == ms("2017-08-17")

    table = tmp_path / "t.csv"
    table.write_text("timestamp,BTC\n2024-01-01,1\n2024-01-02,2\n")
    assert load(table, ["BTC"]) == load_table(table, assets=["BTC"])
    lookalike = tmp_path / "my_BTCUSDT_1d.csv"  # named like a CryptoDataDownload file, but a plain table
    lookalike.write_text(table.read_text())
    assert load(lookalike, []).assets == ["BTC"]
    assert load(None, ["BTC"], quote="USDC").quote == "USDC"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    viaccxt = load("ccxt:fakex", ["BTC"], start_ms=ms("2024-01-01"), end_ms=ms("2024-01-10"))
    assert len(viaccxt) == 10 and viaccxt.source == "ccxt:fakex"
    assert (tmp_path / "cache" / "rebal" / "fakex" / "BTC_USDT_1d.csv").exists()

    bads: list[Path | str] = [tmp_path / "missing.csv", "ccxt:", tmp_path / "x.json"]
    for bad in bads:
        if isinstance(bad, Path) and bad.suffix == ".json":
            bad.write_text("{}")
        with pytest.raises(ConfigError) as e:
            load(bad, ["BTC"])
        assert e.value.field == "data"
