"""Backtests end to end: a hand-computed run checked to the cent, a daily
calendar rebalance against an independent straightforward loop, the real
CryptoDataDownload files in ../shared/data (read at test time, never copied
here), the metrics on hand series, sweep grids and tables, and the
`rebal backtest` / `rebal sweep` command lines."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from html.parser import HTMLParser
from pathlib import Path

import msgspec
import numpy as np
import pytest
import rebal
from rebal.backtest.data import DAY_MS, PriceData, load_cryptodatadownload, synthetic
from rebal.backtest.metrics import YEAR_MS, Stream, summary
from rebal.backtest.run import run
from rebal.backtest.sweep import grid, results
from rebal.cli import main
from rebal.config import CalendarTrigger, StrategyConfig, ThresholdTrigger

from .conftest import shared

T0 = 1_640_995_200_000  # 2022-01-01T00:00Z
CENT = 0.005


def ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def daily_prices(assets: list[str], closes: list[list[float]], start_ms: int = T0) -> PriceData:
    return PriceData(
        times_ms=start_ms + DAY_MS * np.arange(len(closes), dtype=np.int64),
        assets=assets,
        close=np.array(closes, dtype=np.float64),
        quote="USDT",
        filled={a: 0 for a in assets},
        interval_ms=DAY_MS,
    )


def lots_floor(x: Decimal, step: Decimal) -> Decimal:
    """x truncated to whole lots of `step`."""
    return (x / step).to_integral_value(rounding=ROUND_FLOOR) * step


@pytest.fixture(scope="module")
def daily_dir() -> Path:
    return shared("daily_binance_usdt")


# --------------------------------------------------------------------------- 1. hand-computed


def test_two_assets_three_ticks_match_a_hand_computation_to_the_cent() -> None:
    """A and B at 100 / 100, then A doubles (200 / 100), then 210 / 100;
    1000 USDT, 50/50, threshold 5 points, fee 0.1 %, step 0.01, no minimums."""
    data = daily_prices(["A", "B"], [[100.0, 100.0], [200.0, 100.0], [210.0, 100.0]])
    markets = [rebal.Market(f"{a}/USDT", a, "USDT", "0.01", min_notional="0", taker_fee=0.001) for a in ("A", "B")]
    config = StrategyConfig(assets={"A": 50.0, "B": 50.0}, investment=Decimal(1000), trigger=ThresholdTrigger(5.0))

    fee, step = Decimal("0.001"), Decimal("0.01")
    cash = Decimal(1000)

    # Tick 0 — funding (rust/src/flows.rs invest_one): buy-only, each asset
    # gets its shortfall target·V − held (here 500 each, the whole cash;
    # scale 1), net of the fee (÷ 1.001), floored to whole lots of 0.01.
    p0 = {"A": Decimal(100), "B": Decimal(100)}
    shortfall = Decimal(1000) * Decimal("0.5")  # 500 each
    held = {a: lots_floor(shortfall / (1 + fee) / p0[a], step) for a in ("A", "B")}  # 499.5004995/100 → 4.99
    assert held == {"A": Decimal("4.99"), "B": Decimal("4.99")}
    fees = Decimal(0)
    for a in ("A", "B"):
        cost = held[a] * p0[a]  # 499
        cash -= cost + cost * fee  # 499 + 0.499
        fees += cost * fee
    assert cash == Decimal("1.002") and fees == Decimal("0.998")  # 998.998 spent
    hold_amounts, hold_cash = dict(held), cash  # the hold benchmark makes the same buys
    v0 = held["A"] * 100 + held["B"] * 100 + cash  # 999.002

    # Tick 1 — A doubles: V = 4.99·200 + 4.99·100 + 1.002 = 1498.002,
    # weight A = 998 / 1498.002 = 66.6 % → 16.6 points off ≥ 5: rebalance.
    p1 = {"A": Decimal(200), "B": Decimal(100)}
    v1 = held["A"] * p1["A"] + held["B"] * p1["B"] + cash
    assert v1 == Decimal("1498.002")
    assert held["A"] * p1["A"] / v1 - Decimal("0.5") >= Decimal("0.05")
    # The planner (rust/src/plan.rs, README "How the planner works"):
    # sells sized on the post-fee value V′, truncated to lots of value 0.01·200 = 2:
    #   V′ = V − sell fees − f/(1+f)·(cash + sell proceeds)
    #   first pass at V′ = V: (998 − 749.001)/2 = 124.4995 → 124 lots (1.24 A)
    sell_a = lots_floor((held["A"] * p1["A"] - v1 / 2) / p1["A"], step)
    assert sell_a == Decimal("1.24")
    proceeds = sell_a * p1["A"] * (1 - fee)  # 248 − 0.248 = 247.752
    v_after = v1 - sell_a * p1["A"] * fee - fee / (1 + fee) * (cash + proceeds)  # ≈ 1497.5055
    # …and again at V′: (998 − V′/2)/2 = 124.62 → still 124 lots: the fixed point.
    assert lots_floor((held["A"] * p1["A"] - v_after / 2) / p1["A"], step) == sell_a
    # Buys: B's shortfall at V′ is V′/2 − 499 = 249.75 → 249 lots (value 1 each),
    # costing 249·1.001 = 249.249 > budget 1.002 + 247.752 = 248.754, so scaled
    # by 248.754/249.249 and floored: 248 lots (2.48 B) for 248.248. The 0.506
    # left buys no whole lot (1.001) and is too little to trim a sell lot (1.998).
    budget = cash + proceeds
    want_b = lots_floor((v_after / 2 - held["B"] * p1["B"]) / p1["B"], step)
    assert want_b == Decimal("2.49") and want_b * p1["B"] * (1 + fee) > budget
    buy_lots = int((want_b / step) * (budget / (want_b * p1["B"] * (1 + fee))))  # floor(248.5…) = 248
    buy_b = buy_lots * step
    assert buy_b == Decimal("2.48")
    # The fills: the sell pays 248 − 0.248, the buy costs 248 + 0.248.
    cash += sell_a * p1["A"] * (1 - fee)
    cash -= buy_b * p1["B"] * (1 + fee)
    fees += (sell_a * p1["A"] + buy_b * p1["B"]) * fee  # 0.496
    held["A"] -= sell_a  # 3.75
    held["B"] += buy_b  # 7.47
    assert cash == Decimal("0.506") and fees == Decimal("1.494")
    v1_after = held["A"] * p1["A"] + held["B"] * p1["B"] + cash  # 750 + 747 + 0.506
    assert v1_after == Decimal("1497.506")

    # Tick 2 — 210 / 100: V = 3.75·210 + 747 + 0.506 = 1535.006; weight A =
    # 787.5/1535.006 = 51.3 % (1.3 points): no rebalance.
    p2 = {"A": Decimal(210), "B": Decimal(100)}
    v2 = held["A"] * p2["A"] + held["B"] * p2["B"] + cash
    assert v2 == Decimal("1535.006")
    assert abs(held["A"] * p2["A"] / v2 - Decimal("0.5")) < Decimal("0.05")
    hold_final = hold_amounts["A"] * p2["A"] + hold_amounts["B"] * p2["B"] + hold_cash  # 1047.9 + 499 + 1.002
    assert hold_final == Decimal("1547.902")
    hold_v1 = hold_amounts["A"] * p1["A"] + hold_amounts["B"] * p1["B"] + hold_cash

    result = run([config], data, fee=0.001, markets=markets, record=True)
    assert result.metrics["final_value"][0] == pytest.approx(float(v2), abs=CENT)
    assert result.fees_paid[0] == pytest.approx(float(fees), abs=CENT)
    assert result.hold_metrics["final_value"][0] == pytest.approx(float(hold_final), abs=CENT)
    assert result.rebalances[0] == 1
    assert result.turnover[0] == pytest.approx(float(sell_a * p1["A"] + buy_b * p1["B"]), abs=CENT)  # 496
    assert result.net_invested[0] == pytest.approx(1000.0)
    assert result.equity is not None and result.hold is not None and result.rebalanced is not None and result.weights is not None
    np.testing.assert_allclose(result.equity[:, 0], [float(v0), float(v1_after), float(v2)], atol=CENT, rtol=0)
    np.testing.assert_allclose(result.hold[:, 0], [float(v0), float(hold_v1), float(hold_final)], atol=CENT, rtol=0)
    assert result.rebalanced[:, 0].tolist() == [False, True, False]
    np.testing.assert_allclose(result.weights[1, 0], [750 / 1497.506, 747 / 1497.506], rtol=1e-12)
    # No inflows after funding: the time-weighted return is the equity ratio
    # from the first tick (after the funding buys and their fee).
    assert result.metrics["total_return_pct"][0] == pytest.approx(100 * (float(v2) / float(v0) - 1), rel=1e-12)
    assert result.hold_metrics["total_return_pct"][0] == pytest.approx(100 * (float(hold_final) / float(v0) - 1), rel=1e-12)
    assert result.metrics["max_drawdown_pct"][0] == 0.0


def test_funding_that_just_misses_a_lot_is_not_overspent() -> None:
    """The venue charges exactly 0.1 %; the plan must never budget a hair less.
    1,000,999.9999999999 USDT cannot pay for 1,000,000 lots at 1 plus 0.1 %
    (1,001,000), so the funding buys 999,999 lots (1,000,998.999) and keeps
    the rest as cash."""
    data = daily_prices(["A"], [[1.0], [1.0]])
    markets = [rebal.Market("A/USDT", "A", "USDT", "1", min_notional="0", taker_fee=0.001)]
    investment = Decimal("1000999.9999999999")
    config = StrategyConfig(assets={"A": 100.0}, investment=investment)
    result = run([config], data, fee=0.001, markets=markets)
    lots = Decimal(999_999)
    cash = investment - lots * Decimal("1.001")
    assert result.metrics["final_value"][0] == pytest.approx(float(lots + cash), abs=CENT)
    assert result.fees_paid[0] == pytest.approx(float(lots * Decimal("0.001")), abs=CENT)


# --------------------------------------------------------------------------- 2. independent implementation


def straightforward_daily_rebalance(close: np.ndarray, weights: np.ndarray, investment: float) -> np.ndarray:
    """Buy the targets at the first close, then at every later close sell and
    buy back exactly to the targets (no fees, infinitely divisible)."""
    values = np.empty(len(close))
    holdings = weights * investment / close[0]
    values[0] = investment
    for k in range(1, len(close)):
        value = float(holdings @ close[k])
        values[k] = value
        holdings = weights * value / close[k]
    return values


def test_daily_calendar_rebalance_matches_a_straightforward_loop() -> None:
    data = synthetic(["BTC", "ETH", "SOL"], ticks=200, seed=11)
    weights = np.array([0.5, 0.3, 0.2])
    investment = 100_000.0
    markets = [rebal.Market(f"{a}/USDT", a, "USDT", "0.00000001", min_notional="0", taker_fee=0.0) for a in data.assets]
    config = StrategyConfig(
        assets={"BTC": 50.0, "ETH": 30.0, "SOL": 20.0}, investment=Decimal(int(investment)), trigger=CalendarTrigger(every="1d")
    )
    result = run([config], data, fee=0.0, markets=markets, record=True)

    expected = straightforward_daily_rebalance(data.close, weights, investment)
    assert result.equity is not None and result.rebalanced is not None
    assert result.metrics["final_value"][0] == pytest.approx(expected[-1], rel=1e-6)
    np.testing.assert_allclose(result.equity[:, 0], expected, rtol=1e-6)
    # Created at t0, the first calendar check is at t0 + 1d: one rebalance per later day.
    assert result.rebalances[0] == len(data) - 1
    assert result.rebalanced[:, 0].tolist() == [False] + [True] * (len(data) - 1)
    assert result.fees_paid[0] == 0.0
    # Holding: the first day's buys, never touched.
    hold = (weights * investment / data.close[0]) @ data.close[-1]
    assert result.hold_metrics["final_value"][0] == pytest.approx(hold, rel=1e-6)
    # Daily rebalancing is not holding on this path.
    assert abs(expected[-1] - hold) > 1e-3 * investment


# --------------------------------------------------------------------------- 3. real data


@pytest.fixture(scope="module")
def real_data(daily_dir: Path) -> PriceData:
    return load_cryptodatadownload(daily_dir, ["BTC", "ETH", "SOL"])


def test_real_daily_files_load_and_backtest(real_data: PriceData) -> None:
    data = real_data
    assert data.assets == ["BTC", "ETH", "SOL"] and data.interval_ms == DAY_MS
    assert len(data) > 365
    base = StrategyConfig(assets={"BTC": 40.0, "ETH": 30.0, "SOL": 30.0}, investment=Decimal(10_000))
    configs = [
        msgspec.structs.replace(base, trigger=ThresholdTrigger(5.0)),
        msgspec.structs.replace(base, trigger=CalendarTrigger(every="7d")),
    ]
    result = run(configs, data, fee=0.001, record=True)
    assert result.equity is not None and result.hold is not None
    for metrics in (result.metrics, result.hold_metrics):
        for name, values in metrics.items():
            assert np.all(np.isfinite(values)), name
        assert np.all(metrics["final_value"] > 0)
        assert np.all((metrics["max_drawdown_pct"] >= 0) & (metrics["max_drawdown_pct"] < 100))
        assert np.all(metrics["volatility_pct"] > 0)
        assert np.all(metrics["total_return_pct"] > -100)
    assert np.all(result.rebalances > 0)
    assert np.all(result.fees_paid > 0)
    assert np.all(result.turnover > 0)
    assert np.all(result.equity > 0) and np.all(result.hold > 0)
    np.testing.assert_array_equal(result.metrics["final_value"], result.equity[-1])
    np.testing.assert_array_equal(result.hold_metrics["final_value"], result.hold[-1])
    # Both configs fund the same way, so their hold benchmarks agree, and
    # start just under the investment (the funding fee and lot dust).
    np.testing.assert_allclose(result.hold[:, 0], result.hold[:, 1], rtol=1e-12)
    assert 10_000 * 0.995 < result.equity[0, 0] <= 10_000
    # The threshold config rebalances at most once a tick; the weekly one at most once a week.
    assert result.rebalances[1] <= len(data) // 7
    assert result.rebalances[0] < len(data)
    # Fees never exceed the fee rate on the money that moved (turnover + the funding buys).
    assert np.all(result.fees_paid <= 0.001 * (result.turnover + 10_000) + 1e-6)


def test_slippage_on_coins_priced_below_a_cent_costs_money_and_breaks_nothing(daily_dir: Path) -> None:
    """Slipped fill prices are floats whose shortest digits run past 18
    decimals on DOGE- and TRX-sized prices (5 bps of 0.06 is 0.00003…)."""
    data = load_cryptodatadownload(daily_dir, ["BTC", "DOGE", "TRX"])
    config = StrategyConfig(assets={"BTC": 40.0, "DOGE": 30.0, "TRX": 30.0}, investment=Decimal(10_000), trigger=ThresholdTrigger(2.0))
    clean = run([config], data, fee=0.001)
    slipped = run([config], data, fee=0.001, slippage_bps=5.0)
    assert slipped.rebalances[0] > 50
    assert 0 < slipped.metrics["final_value"][0] < clean.metrics["final_value"][0]
    assert np.all(np.isfinite(slipped.metrics["total_return_pct"]))


def test_real_data_final_value_is_the_recorded_equity_without_record(daily_dir: Path) -> None:
    config = StrategyConfig(assets={"BTC": 50.0, "ETH": 50.0}, investment=Decimal(10_000), trigger=CalendarTrigger(every="3d", gate=2.0))
    data = load_cryptodatadownload(daily_dir, ["BTC", "ETH"])
    recorded = run([config], data, fee=0.001, record=True)
    plain = run([config], data, fee=0.001)
    assert recorded.equity is not None
    assert plain.equity is None
    assert plain.metrics["final_value"][0] == recorded.equity[-1, 0]
    for name in plain.metrics:
        np.testing.assert_array_equal(plain.metrics[name], recorded.metrics[name])


def test_run_accepts_price_data_narrowed_by_select(real_data: PriceData) -> None:
    """`PriceData.select` (fancy column indexing) leaves `close` Fortran-ordered;
    a backtest over it must run like one over the same prices loaded directly."""
    config = StrategyConfig(assets={"BTC": 50.0, "ETH": 50.0}, investment=Decimal(10_000))
    selected = real_data.select(["BTC", "ETH"])
    direct = PriceData(
        times_ms=selected.times_ms,
        assets=["BTC", "ETH"],
        close=np.ascontiguousarray(selected.close),
        quote="USDT",
        filled=selected.filled,
        source=selected.source,
        interval_ms=selected.interval_ms,
        filled_mask=np.ascontiguousarray(selected.filled_mask),
    )
    expected = run([config], direct, fee=0.001)
    got = run([config], selected, fee=0.001)
    np.testing.assert_array_equal(got.metrics["final_value"], expected.metrics["final_value"])


# --------------------------------------------------------------------------- 4. metrics


def test_summary_doubling_then_halving_is_no_return_and_half_drawn_down() -> None:
    m = summary(np.array([100.0, 200.0, 100.0]), np.array([0, DAY_MS, 2 * DAY_MS]))
    assert m["final_value"] == 100.0
    assert m["total_return_pct"] == pytest.approx(0.0, abs=1e-12)
    assert m["max_drawdown_pct"] == pytest.approx(50.0, abs=1e-12)
    assert m["volatility_pct"] > 0
    assert m["sharpe"] == pytest.approx(0.0, abs=1e-9)


def test_summary_inflows_are_not_returns() -> None:
    values = np.array([100.0, 150.0, 400.0, 1400.0])
    inflow = np.array([0.0, 50.0, 250.0, 1000.0])
    m = summary(values, DAY_MS * np.arange(4), inflow)
    assert m["total_return_pct"] == pytest.approx(0.0, abs=1e-12)
    assert m["annualised_return_pct"] == pytest.approx(0.0, abs=1e-12)
    assert m["max_drawdown_pct"] == pytest.approx(0.0, abs=1e-12)
    assert m["volatility_pct"] == pytest.approx(0.0, abs=1e-9)
    # A deposit and then a real 10 % gain: 10 %, however large the deposit.
    m = summary(np.array([100.0, 1100.0, 1210.0]), DAY_MS * np.arange(3), np.array([0.0, 1000.0, 0.0]))
    assert m["total_return_pct"] == pytest.approx(10.0, rel=1e-12)
    # The same values read without the inflows would be a 1110 % gain.
    assert summary(np.array([100.0, 1100.0, 1210.0]), DAY_MS * np.arange(3))["total_return_pct"] == pytest.approx(1110.0)


def test_summary_annualised_over_exactly_one_year_is_the_total() -> None:
    year = int(YEAR_MS)
    assert year == YEAR_MS
    times = np.linspace(0, year, 5).astype(np.int64)
    assert times[-1] == year
    m = summary(np.array([100.0, 120.0, 90.0, 130.0, 150.0]), times)
    assert m["total_return_pct"] == pytest.approx(50.0, rel=1e-12)
    assert m["annualised_return_pct"] == pytest.approx(m["total_return_pct"], rel=1e-12)
    # Two years of 21 % in total are 10 % a year.
    m = summary(np.array([100.0, 121.0]), np.array([0, 2 * year]))
    assert m["annualised_return_pct"] == pytest.approx(10.0, rel=1e-9)


def test_summary_of_steady_growth_has_no_volatility_or_drawdown() -> None:
    values = 100.0 * 1.01 ** np.arange(30, dtype=np.float64)
    m = summary(values, DAY_MS * np.arange(30))
    assert m["total_return_pct"] == pytest.approx(100 * (1.01**29 - 1), rel=1e-9)
    assert m["volatility_pct"] == pytest.approx(0.0, abs=1e-6)
    assert m["max_drawdown_pct"] == 0.0


# --------------------------------------------------------------------------- 5. sweep


BASE = StrategyConfig(assets={"BTC": 60.0, "ETH": 40.0}, investment=Decimal(10_000))


def test_grid_sizes_and_labels() -> None:
    """Threshold × interval, every cell: threshold triggers ("tick") with every
    destination, and calendars without a gate and gated at each threshold."""
    configs, labels = grid(
        BASE,
        thresholds=[2, 5, 10],
        intervals=["1d", "7d"],
        destinations=["target", "band_edge", "inner_band(0.5)"],
        fees=[0.001, 0.002],
    )
    per_fee = 3 * 3 + 2 * (1 + 3)  # thresholds × destinations + intervals × (no gate + each threshold)
    assert len(configs) == 2 * per_fee
    assert all(len(v) == len(configs) for v in labels.values())
    assert set(labels) == {"trigger", "threshold", "threshold_kind", "interval", "destination", "fee_pct"}
    for k, c in enumerate(configs):
        assert c.assets == BASE.assets and c.investment == BASE.investment
        assert labels["destination"][k] == c.destination
        if isinstance(c.trigger, ThresholdTrigger):
            assert labels["trigger"][k] == "threshold"
            assert labels["threshold"][k] == c.trigger.threshold
            assert labels["threshold_kind"][k] == c.trigger.kind == "absolute"
            assert labels["interval"][k] == "tick"
        else:
            assert isinstance(c.trigger, CalendarTrigger)
            assert labels["trigger"][k] == "calendar"
            assert labels["interval"][k] == c.trigger.every and labels["threshold"][k] == c.trigger.gate
            # A band destination needs a threshold: calendars go to target.
            assert c.destination == "target"
    assert labels["fee_pct"].count(0.1) == labels["fee_pct"].count(0.2) == per_fee
    combos = {(labels["trigger"][k], labels["threshold"][k], labels["interval"][k], labels["destination"][k], labels["fee_pct"][k]) for k in range(len(configs))}
    assert len(combos) == len(configs)
    assert {d for t, d in zip(labels["trigger"], labels["destination"]) if t == "threshold"} == {"target", "band_edge", "inner_band(0.5)"}
    cells = {(labels["threshold"][k], labels["interval"][k]) for k in range(len(configs))}
    assert cells == {(t, i) for t in (2.0, 5.0, 10.0) for i in ("tick", "1d", "7d")} | {(None, "1d"), (None, "7d")}

    # Only thresholds, only calendars, and nothing at all.
    assert len(grid(BASE, thresholds=[1, 2], kinds=["absolute", "relative"])[0]) == 4
    assert len(grid(BASE, intervals=["1d", "7d"])[0]) == 2
    assert grid(BASE) == ([], {k: [] for k in labels})


def test_results_one_row_per_config_with_excess_over_holding() -> None:
    pytest.importorskip("pandas")
    data = synthetic(["BTC", "ETH"], ticks=120, seed=3)
    configs, labels = grid(BASE, thresholds=[2, 5], intervals=["7d"], destinations=["target", "band_edge"], fees=[0.001])
    result = run(configs, data, fee=[f / 100 for f in labels["fee_pct"]])
    table = results(result, labels)
    assert len(table) == len(configs) == 2 * 2 + 3
    np.testing.assert_allclose(table["excess_return_pct"], table["total_return_pct"] - table["hold_total_return_pct"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(table["final_value"], result.metrics["final_value"])
    np.testing.assert_array_equal(table["rebalances"], result.rebalances)
    assert table["trigger"].tolist() == labels["trigger"]
    for column in ("fees_paid", "turnover", "net_invested", "hold_final_value", "sharpe"):
        assert column in table.columns
    # Every config holds the same funding buys.
    assert table["hold_final_value"].nunique() == 1
    # A lower threshold rebalances at least as often (same destination).
    t = table[table["trigger"] == "threshold"]
    for dest in ("target", "band_edge"):
        two = t[(t["threshold"] == 2) & (t["destination"] == dest)]["rebalances"].iloc[0]
        five = t[(t["threshold"] == 5) & (t["destination"] == dest)]["rebalances"].iloc[0]
        assert two >= five


# --------------------------------------------------------------------------- 6. command line


def test_cli_backtest_json_on_synthetic_data(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", "--assets", "BTC,ETH", "--start", "2022-01-01", "--end", "2022-06-30", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert doc["data"].startswith("synthetic")
    for side in ("rebalanced", "hold"):
        for name in ("final_value", "total_return_pct", "annualised_return_pct", "volatility_pct", "max_drawdown_pct", "sharpe"):
            assert math.isfinite(doc[side][name]), (side, name)
    assert doc["rebalanced"]["rebalances"] >= 0 and doc["rebalanced"]["fees_paid"] > 0
    assert doc["config"]["assets"] == {"BTC": 50.0, "ETH": 50.0}
    assert doc["fee_pct"] == 0.1
    assert "181 ticks" in doc["period"]


def test_cli_backtest_json_on_real_data(daily_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["backtest", "--data", str(daily_dir), "--assets", "BTC,ETH", "--weights", "60,40", "--trigger", "calendar"]
    argv += ["--interval", "7d", "--gate", "3", "--fee", "0.1", "--start", "2021-01-01", "--end", "2022-12-31", "--json"]
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert "Binance_BTCUSDT_d.csv" in doc["data"] and "Binance_ETHUSDT_d.csv" in doc["data"]
    assert doc["period"].startswith("2021-01-01 → 2022-12-31")
    assert doc["config"]["assets"] == {"BTC": 60.0, "ETH": 40.0}
    assert doc["config"]["trigger"] == {"type": "calendar", "every": "7d", "gate": 3.0}
    mine, hold = doc["rebalanced"], doc["hold"]
    assert all(math.isfinite(v) for v in mine.values()) and all(math.isfinite(v) for v in hold.values())
    assert 0 < mine["rebalances"] <= 730 // 7
    assert mine["fees_paid"] > 0 and mine["final_value"] > 0 and hold["final_value"] > 0
    # The same run through the library.
    data = load_cryptodatadownload(daily_dir, ["BTC", "ETH"]).between(ms("2021-01-01"), ms("2022-12-31"))
    config = StrategyConfig(assets={"BTC": 60.0, "ETH": 40.0}, investment=Decimal(10_000), trigger=CalendarTrigger(every="7d", gate=3.0))
    direct = run([config], data, fee=0.001)
    assert mine["final_value"] == pytest.approx(float(direct.metrics["final_value"][0]), rel=1e-12)
    assert mine["rebalances"] == int(direct.rebalances[0])


def test_cli_sweep_json_has_one_row_per_config(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", "--thresholds", "2,5", "--intervals", "7d", "--start", "2022-01-01", "--end", "2022-12-31", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert doc["configs"] == 5 and len(doc["rows"]) == 5
    assert [r["trigger"] for r in doc["rows"]] == ["threshold", "threshold", "calendar", "calendar", "calendar"]
    assert [r["threshold"] for r in doc["rows"]] == [2.0, 5.0, None, 2.0, 5.0]
    assert [r["interval"] for r in doc["rows"]] == ["tick", "tick", "7d", "7d", "7d"]
    for row in doc["rows"]:
        assert row["excess_return_pct"] == pytest.approx(row["total_return_pct"] - row["hold_total_return_pct"], abs=1e-9)


def test_cli_sweep_default_period_has_five_rows(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", "--thresholds", "2,5", "--intervals", "7d", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert len(doc["rows"]) == 5
    assert "1095 ticks" in doc["period"]


def test_cli_bad_asset_exits_2_naming_it(daily_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", "--data", str(daily_dir), "--assets", "BTC,NOPECOIN", "--json"])
    out = capsys.readouterr()
    assert code == 2
    assert "NOPECOIN" in out.err and out.out == ""
    code = main(["sweep", "--data", str(daily_dir), "--assets", "NOPECOIN,ETH", "--thresholds", "5", "--intervals", "", "--json"])
    out = capsys.readouterr()
    assert code == 2 and "NOPECOIN" in out.err


def test_cli_bad_weights_and_dates_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--assets", "BTC,ETH", "--weights", "60", "--json"]) == 2
    assert "weights" in capsys.readouterr().err
    assert main(["backtest", "--assets", "BTC,ETH", "--start", "2022-13-01", "--json"]) == 2
    assert "start" in capsys.readouterr().err


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")


def test_cli_backtest_report_writes_html_and_pngs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    if not (Path(rebal.__file__).parent / "backtest" / "report.py").exists():
        pytest.skip("rebal.backtest.report does not exist yet")
    out_dir = tmp_path / "report"
    code = main(["backtest", "--assets", "BTC,ETH,SOL", "--start", "2022-01-01", "--end", "2022-04-30", "--report", str(out_dir), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    page = out_dir / "index.html"
    assert Path(doc["report"]) == page
    assert page.is_file()
    text = page.read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(text)
    parser.close()
    assert "html" in parser.tags and "body" in parser.tags
    assert parser.images, "the page shows no charts"
    pngs = sorted(out_dir.glob("*.png"))
    assert pngs
    for png in pngs:
        blob = png.read_bytes()
        assert len(blob) > 1000 and blob[:8] == b"\x89PNG\r\n\x1a\n", png.name


def _stream_in_numpy(values: list[np.ndarray], inflows: list[np.ndarray | None]) -> dict[str, np.ndarray]:
    """The metric stream as numpy operations alone (what `Stream.add` did
    before part of it moved to Rust): the reference its floats must equal."""
    n = len(values[0])
    last, growth, sum_sq = values[0].copy(), np.zeros(n), np.zeros(n)
    peak, deepest = np.zeros(n), np.zeros(n)
    for v, inflow in zip(values[1:], inflows[1:]):
        base = last + (0.0 if inflow is None else inflow)
        priced = (base > 0) & (v > 0)
        with np.errstate(all="ignore"):
            r = np.log(np.divide(v, base))
            r[~priced] = 0.0
            growth += r
            sum_sq += r * r
            peak = np.maximum(peak, growth)
            deepest = np.maximum(deepest, 1 - np.exp(growth - peak))
        last = v.copy()
    return {"last": last, "growth": growth, "sum_sq": sum_sq, "peak": peak, "max_drawdown": deepest}


def test_the_metric_stream_gives_the_floats_of_its_numpy_arithmetic() -> None:
    """Bit for bit, on awkward values too (zero, negative, NaN, inf, tiny), with
    inflows given per series, as one number for all, or not at all."""
    rng = np.random.default_rng(5)
    n, ticks = 400, 60
    odd = np.array([0.0, -3.0, np.nan, np.inf, 5e-324, 1e300])
    values = [np.where(rng.random(n) < 0.05, rng.choice(odd, n), rng.lognormal(8, 0.3, n)) for _ in range(ticks)]
    kinds = [None, 12.5, rng.normal(0, 50, n)]
    inflows: list[np.ndarray | None] = []
    for k in range(ticks):
        kind = kinds[k % 3]
        inflows.append(None if kind is None else np.broadcast_to(np.asarray(kind, float), (n,)).copy())
    stream = Stream(n)
    for k, v in enumerate(values):
        stream.add(v, None if kinds[k % 3] is None else kinds[k % 3])
    expected = _stream_in_numpy(values, inflows)
    for name, column in expected.items():
        got = getattr(stream, name)
        assert got.view(np.uint64).tolist() == column.view(np.uint64).tolist(), name
