"""Sweep benchmark: N configs over the nine daily Binance histories, end to end.

    python benches/sweep.py --configs 10000 --json

Configs are seeded and varied: 2–5 of the nine coins with random whole-percent
weights, threshold triggers (absolute or relative, 1–10 %, every destination)
and calendar triggers (1–28 days, with or without a gate). They run as one
Engine over the nine histories' common range (2020-08-11 → 2026-03-30, daily),
funded at the first tick, every order filled at the tick's price with a
0.1 % fee. Timed from loading the data to the results table, with the
libraries (pandas too) imported before, as vectorbt's are. Reports
configs × ticks per second, and the same sweep in vectorbt
(`Portfolio.from_orders`, size_type="targetpercent", cash sharing, sells
first) when it is installed, as a ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from report import emit, machine, speed_check, speed_report  # noqa: E402

from rebal.backtest.data import PriceData, load_cryptodatadownload  # noqa: E402
from rebal.backtest.run import run  # noqa: E402
from rebal.backtest.sweep import results  # noqa: E402
from rebal.config import CalendarTrigger, StrategyConfig, ThresholdTrigger  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "daily_binance_usdt"
COINS = ["BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "TRX", "BCH"]


def configs(n: int, seed: int) -> list[StrategyConfig]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 6))
        assets = rng.choice(COINS, k, replace=False)
        cuts = np.sort(rng.choice(np.arange(1, 100), k - 1, replace=False))
        weights = np.diff(np.concatenate([[0], cuts, [100]]))
        trigger: ThresholdTrigger | CalendarTrigger
        destination = "target"
        if rng.random() < 0.6:
            trigger = ThresholdTrigger(threshold=float(rng.choice([1, 2, 3, 5, 8, 10])), kind=str(rng.choice(["absolute", "relative"])))  # type: ignore[arg-type]
            destination = str(rng.choice(["target", "band_edge", "inner_band(0.5)"]))
        else:
            trigger = CalendarTrigger(every=str(rng.choice(["1d", "3d", "7d", "14d", "28d"])), gate=float(rng.choice([1, 3])) if rng.random() < 0.5 else None)
        out.append(StrategyConfig(assets={str(a): float(w) for a, w in zip(assets, weights)}, investment=Decimal(10_000), trigger=trigger, destination=destination))
    return out


def vectorbt_seconds(chosen: list[StrategyConfig], data: PriceData) -> float | None:
    """The same sweep in vectorbt, the closest like-for-like it offers: every config's target
    weights as target-percent orders on every day (vectorbt has no threshold trigger, so it
    rebalances daily), over the same prices, cash shared per config, sells first (call_seq
    "auto"), the same fee. Its numba functions are compiled before the timing."""
    try:
        import pandas as pd
        import vectorbt as vbt
    except ImportError:
        return None
    close = pd.DataFrame(data.close, columns=data.assets)
    columns, groups, sizes = [], [], []
    for g, c in enumerate(chosen):
        for asset, weight in c.assets.items():
            columns.append(close[asset].to_numpy())
            groups.append(g)
            sizes.append(weight / 100)
    price = pd.DataFrame(np.column_stack(columns))
    size = pd.DataFrame(np.tile(np.array(sizes), (len(price), 1)))

    def sweep(p: Any, s: Any, g: Any) -> None:
        vbt.Portfolio.from_orders(p, s, size_type="targetpercent", group_by=g, cash_sharing=True, call_seq="auto", fees=0.001, init_cash=10_000.0).value()

    sweep(price.iloc[:5, :2], size.iloc[:5, :2], np.array([0, 0]))  # numba compiles once, outside the timing
    start = time.perf_counter()
    sweep(price, size, np.array(groups))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    speed_at_start = speed_check()

    chosen = configs(args.configs, args.seed)
    # Libraries are imported before the clock, as vectorbt's are below: the
    # results table is a pandas DataFrame, and importing pandas is the
    # process starting, not the sweep (reported apart, as `pandas_import_s`).
    began = time.perf_counter()
    import pandas  # noqa: F401

    pandas_import = time.perf_counter() - began
    start = time.perf_counter()
    data = load_cryptodatadownload(args.data, COINS)
    loaded = time.perf_counter()
    result = run(chosen, data, fee=0.001)
    ran = time.perf_counter()
    table = results(result)
    end = time.perf_counter()
    seconds = end - start
    ticks = len(data.times_ms)
    vbt = vectorbt_seconds(chosen, data)
    out = {
        "configs": args.configs,
        "ticks": ticks,
        "seconds": round(seconds, 2),
        "load_s": round(loaded - start, 2),
        "run_s": round(ran - loaded, 2),
        "table_s": round(end - ran, 2),
        "pandas_import_s": round(pandas_import, 2),
        "config_ticks_per_s": round(args.configs * ticks / seconds),
        "rebalances": int(table["rebalances"].sum()),
        "median_excess_return_pct": round(float(np.median(table["excess_return_pct"])), 2),
        "vectorbt_s": None if vbt is None else round(vbt, 2),
        "vs_vectorbt": None if vbt is None else round(vbt / seconds, 2),
        **machine(),
    }
    out.update(speed_report(speed_at_start, speed_check()))
    emit(out, args.json)
    return out


if __name__ == "__main__":
    main()
