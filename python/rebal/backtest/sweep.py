"""Parameter sweeps: a grid of configs run as one Book, and its results as a table.

    configs, labels = grid(base, thresholds=[1, 2, 5, 10], intervals=["1d", "7d"])
    table = results(run(configs, data, fee=[f / 100 for f in labels["fee_pct"]]), labels)    # one row per config
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import msgspec

from rebal.backtest.run import Run
from rebal.config import CalendarTrigger, StrategyConfig, ThresholdTrigger

__all__ = ["grid", "results"]

METRICS = ("final_value", "total_return_pct", "annualised_return_pct", "volatility_pct", "max_drawdown_pct", "sharpe")


def grid(
    base: StrategyConfig,
    *,
    thresholds: Sequence[float] = (),
    kinds: Sequence[str] = ("absolute",),
    intervals: Sequence[str] = (),
    destinations: Sequence[str] = ("target",),
    fees: Sequence[float] = (0.001,),
) -> tuple[list[StrategyConfig], dict[str, list[Any]]]:
    """Every combination, as configs built on `base`, with the settings of
    each (columns for the results table), crossing threshold × interval:

    - interval "tick": a threshold trigger at each threshold (checked every
      tick), with every kind and destination;
    - each calendar interval: without a gate (threshold None) and gated at
      each threshold, going back to target (a band destination needs a
      threshold trigger).

    So a heatmap of threshold × interval has every cell."""
    configs: list[StrategyConfig] = []
    labels: dict[str, list[Any]] = {k: [] for k in ("trigger", "threshold", "threshold_kind", "interval", "destination", "fee_pct")}

    def add(trigger: ThresholdTrigger | CalendarTrigger, destination: str, fee: float, row: dict[str, Any]) -> None:
        configs.append(msgspec.structs.replace(base, trigger=trigger, destination=destination))
        row.update(destination=destination, fee_pct=100 * fee)
        for key in labels:
            labels[key].append(row.get(key))

    for fee in fees:
        for threshold, kind, destination in itertools.product(thresholds, kinds, destinations):
            row = {"trigger": "threshold", "threshold": float(threshold), "threshold_kind": kind, "interval": "tick"}
            add(ThresholdTrigger(threshold=float(threshold), kind=kind), destination, fee, row)  # type: ignore[arg-type]
        for interval, gate in itertools.product(intervals, [None, *thresholds]):
            row = {"trigger": "calendar", "threshold": None if gate is None else float(gate), "interval": interval}
            add(CalendarTrigger(every=interval, gate=None if gate is None else float(gate)), "target", fee, row)
    return configs, labels


def results(run: Run, labels: dict[str, list[Any]] | None = None) -> Any:
    """One row per config: its settings, its metrics, the hold benchmark's
    and the excess over holding (a pandas DataFrame)."""
    import pandas as pd

    columns: dict[str, Any] = dict(labels or {})
    for name in METRICS:
        columns[name] = run.metrics[name]
    for name in METRICS:
        columns[f"hold_{name}"] = run.hold_metrics[name]
    columns["excess_return_pct"] = run.metrics["total_return_pct"] - run.hold_metrics["total_return_pct"]
    columns["fees_paid"] = run.fees_paid
    columns["turnover"] = run.turnover
    columns["rebalances"] = run.rebalances
    columns["net_invested"] = run.net_invested
    table = pd.DataFrame(columns)
    table.index.name = "config"
    return table
