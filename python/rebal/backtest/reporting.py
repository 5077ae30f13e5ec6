"""From a recorded `Run` of one config to the report's charts and tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rebal.backtest.data import day
from rebal.backtest.report import RunReport, write_report
from rebal.backtest.run import Run

__all__ = ["run_report", "write_run_report"]


def run_report(result: Run, *, trigger_text: str = "") -> RunReport:
    """The first config of a recorded run as a `RunReport`."""
    if result.equity is None or result.hold is None or result.weights is None or result.rebalanced is None:
        raise ValueError("the run was not recorded (run(..., record=True))")
    config, data = result.configs[0], result.data
    assets = list(config.assets)
    targets = [w / 100 for w in config.assets.values()]
    title = " · ".join(f"{a} {w:.4g} %" for a, w in config.assets.items()) + (f" — {trigger_text}" if trigger_text else "")
    fee = float(np.asarray(result.settings.get("fee", [0.0]))[0])

    def picked(metrics: dict[str, np.ndarray]) -> dict[str, float]:
        return {k: float(v[0]) for k, v in metrics.items()}

    mine = picked(result.metrics) | {"fees_paid": float(result.fees_paid[0]), "turnover": float(result.turnover[0]), "rebalances": float(result.rebalances[0])}
    hold = picked(result.hold_metrics) | {"fees_paid": 0.0, "turnover": 0.0, "rebalances": 0.0}
    return RunReport(
        title=title,
        quote=config.quote,
        times_ms=data.times_ms,
        equity=result.equity[:, 0],
        hold=result.hold[:, 0],
        weights=result.weights[:, 0, : len(assets)],
        assets=assets,
        targets=targets,
        rebalance_ms=data.times_ms[result.rebalanced[:, 0]],
        metrics=mine,
        hold_metrics=hold,
        settings={
            "data": data.source,
            "period": f"{day(int(data.times_ms[0]))} → {day(int(data.times_ms[-1]))}",
            "ticks": f"{len(data.times_ms):,}",
            "trigger": trigger_text,
            "destination": config.destination,
            "fee": f"{100 * fee:g} %",
            "slippage": f"{result.settings.get('slippage_bps', 0):g} bp",
            "investment": f"{config.investment:,} {config.quote}",
        },
    )


def write_run_report(result: Run, directory: str | Path, *, trigger_text: str = "") -> Path:
    return write_report(run_report(result, trigger_text=trigger_text), directory)
