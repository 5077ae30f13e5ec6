"""`rebal backtest` and `rebal sweep`: the command lines over `run` and `grid`.

    rebal backtest --data DIR --assets BTC,ETH,SOL --weights 40,30,30 --threshold 5 --fee 0.1 --report out/
    rebal sweep --data DIR --assets BTC,ETH --thresholds 1,2,5,10 --intervals 1d,7d,30d --report out/
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from rebal.backtest.data import PriceData, day, load
from rebal.backtest.run import Run, run
from rebal.backtest.sweep import grid, results
from rebal.config import CalendarTrigger, StrategyConfig, ThresholdTrigger, validate
from rebal.exceptions import ConfigError

__all__ = ["add_commands", "backtest_command", "sweep_command"]


def add_commands(commands: Any) -> None:
    """Adds `backtest` and `sweep` to the `rebal` command's subparsers."""
    bt = commands.add_parser("backtest", help="backtest one strategy on historical (or synthetic) prices against holding")
    _common(bt)
    bt.add_argument("--trigger", choices=("threshold", "calendar"), default="threshold")
    bt.add_argument("--threshold", type=float, default=5.0, help="percent (5 = 5 points, or 5 %% of the target with --threshold-kind relative)")
    bt.add_argument("--threshold-kind", choices=("absolute", "relative"), default="absolute")
    bt.add_argument("--interval", default="7d", help="calendar trigger: how often (30m … 28d)")
    bt.add_argument("--gate", type=float, default=None, help="calendar trigger: rebalance only past this deviation (percent)")
    bt.add_argument("--destination", default="target", help="target, band_edge or inner_band(k)")
    bt.add_argument("--fee", type=float, default=0.1, help="the venue's fee, percent of each order (default 0.1)")
    bt.add_argument("--take-profit", type=float, default=None, help="exit at this total profit, percent")
    bt.add_argument("--stop-loss", type=float, default=None, help="exit at this total loss, percent")
    sw = commands.add_parser("sweep", help="run a grid of strategies at once and rank them against holding")
    _common(sw)
    sw.add_argument("--thresholds", default="1,2,3,5,8,10", help="percent: threshold triggers, and the gates of the calendar ones (comma-separated)")
    sw.add_argument("--kinds", default="absolute", help="absolute,relative (threshold triggers)")
    sw.add_argument("--intervals", default="1d,3d,7d,14d,28d", help="calendar triggers, each without a gate and gated at each threshold")
    sw.add_argument("--destinations", default="target", help="target,band_edge,inner_band(0.5)")
    sw.add_argument("--fees", default="0.1", help="venue fees, percent (comma-separated)")
    sw.add_argument("--out", type=Path, default=None, help="write the whole table (.csv or .parquet)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="a directory of CryptoDataDownload CSVs, a CSV/Parquet file, or ccxt:EXCHANGE (default: synthetic prices)")
    p.add_argument("--assets", default="BTC,ETH,SOL", help="base symbols, comma-separated")
    p.add_argument("--weights", default=None, help="target weights in percent, comma-separated (default: equal)")
    p.add_argument("--quote", default="USDT")
    p.add_argument("--investment", default="10000", help="initial investment in the quote asset")
    p.add_argument("--slippage-bps", type=float, default=0.0, help="fills move this far against every order")
    p.add_argument("--start", default=None, help="first day (YYYY-MM-DD, UTC)")
    p.add_argument("--end", default=None, help="last day (YYYY-MM-DD, UTC)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--report", type=Path, default=None, help="write an HTML report with charts into this directory")


def _day(text: str | None, field: str) -> int | None:
    if text is None:
        return None
    try:
        return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp() * 1000)
    except ValueError as e:
        raise ConfigError(f"{field}: expected YYYY-MM-DD (got {text!r})", field=field, value=text) from e


def _base(args: argparse.Namespace) -> tuple[StrategyConfig, PriceData]:
    assets = [a.strip().upper() for a in args.assets.split(",") if a.strip()]
    if args.weights is None:
        weights = [100 / len(assets)] * len(assets)
        weights[-1] = 100 - sum(weights[:-1])
    else:
        weights = [float(w) for w in args.weights.split(",")]
        if len(weights) != len(assets):
            raise ConfigError(f"weights: {len(weights)} weights for {len(assets)} assets", field="weights", value=args.weights)
    data = load(args.data, assets, quote=args.quote, start_ms=_day(args.start, "start"), end_ms=_day(args.end, "end"))
    base = StrategyConfig(assets=dict(zip(assets, weights)), investment=Decimal(args.investment), quote=args.quote)
    return base, data


def _period(data: PriceData) -> str:
    return f"{day(int(data.times_ms[0]))} → {day(int(data.times_ms[-1]))} ({len(data.times_ms)} ticks)"


def _progress(label: str, ticks: int) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(label), BarColumn(), TextColumn("{task.completed}/{task.total} ticks"), TimeRemainingColumn(), transient=True)
    return bar


def _run_with_progress(label: str, configs: list[StrategyConfig], data: PriceData, quiet: bool, **kw: Any) -> Run:
    if quiet:
        return run(configs, data, **kw)
    with _progress(label, len(data.times_ms)) as bar:
        task = bar.add_task(label, total=len(data.times_ms))
        return run(configs, data, progress=lambda done, _: bar.update(task, completed=done), **kw)


def backtest_command(args: argparse.Namespace) -> int:
    base, data = _base(args)
    trigger: ThresholdTrigger | CalendarTrigger
    if args.trigger == "threshold":
        trigger = ThresholdTrigger(threshold=args.threshold, kind=args.threshold_kind)
    else:
        trigger = CalendarTrigger(every=args.interval, gate=args.gate)
    import msgspec

    config = validate(msgspec.structs.replace(base, trigger=trigger, destination=args.destination, take_profit=args.take_profit, stop_loss=args.stop_loss))
    result = _run_with_progress("backtest", [config], data, args.json, fee=args.fee / 100, slippage_bps=args.slippage_bps, record=True)
    rows = _metric_rows(result)
    summary = {
        "data": data.source,
        "period": _period(data),
        "filled_gaps": data.filled,
        "config": json.loads(_encode(config)),
        "fee_pct": args.fee,
        "slippage_bps": args.slippage_bps,
        "rebalanced": {k: v[0] for k, v in rows.items()},
        "hold": {k: v[1] for k, v in rows.items()},
    }
    if args.report is not None:
        from rebal.backtest.reporting import write_run_report

        summary["report"] = str(write_run_report(result, args.report, trigger_text=_trigger_text(config)))
    if args.json:
        sys.stdout.write(json.dumps(summary, default=float) + "\n")
    else:
        _print_backtest(summary, rows, config)
    return 0


def sweep_command(args: argparse.Namespace) -> int:
    base, data = _base(args)

    def listed(text: str, cast: Any) -> list[Any]:
        return [None if t.strip().lower() == "none" else cast(t.strip()) for t in text.split(",") if t.strip()]

    configs, labels = grid(
        base,
        thresholds=listed(args.thresholds, float),
        kinds=listed(args.kinds, str),
        intervals=listed(args.intervals, str),
        destinations=listed(args.destinations, str),
        fees=[f / 100 for f in listed(args.fees, float)],
    )
    if not configs:
        raise ConfigError("sweep: no configs (give --thresholds or --intervals)", field="thresholds", value=args.thresholds)
    for k, c in enumerate(configs):
        try:
            validate(c)
        except ConfigError as e:
            raise ConfigError(f"configs[{k}].{e}", field=f"configs[{k}].{e.field}", value=e.value) from e
    fees = [f / 100 for f in labels["fee_pct"]]
    result = _run_with_progress(f"sweep of {len(configs)}", configs, data, args.json, fee=fees, slippage_bps=args.slippage_bps)
    table = results(result, labels)
    if args.out is not None:
        table.to_parquet(args.out) if args.out.suffix == ".parquet" else table.to_csv(args.out)
    report = None
    if args.report is not None:
        from rebal.backtest.report import write_sweep_report

        report = str(write_sweep_report(table, args.report, title=f"{', '.join(base.assets)} — {_period(data)}"))
    if args.json:
        out = {"data": data.source, "period": _period(data), "configs": len(configs), "report": report, "rows": json.loads(table.to_json(orient="records"))}
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        _print_sweep(table, data)
    return 0


def _encode(config: StrategyConfig) -> str:
    from rebal.config import encode_config

    return encode_config(config).decode()


def _trigger_text(config: StrategyConfig) -> str:
    t = config.trigger
    if isinstance(t, ThresholdTrigger):
        return f"threshold {t.threshold:g} {'points' if t.kind == 'absolute' else '% of target'}"
    return f"every {t.every}" + (f", gate {t.gate:g} points" if t.gate else "")


def _metric_rows(result: Run) -> dict[str, tuple[float, float]]:
    rows = {name: (float(result.metrics[name][0]), float(result.hold_metrics[name][0])) for name in result.metrics}
    rows["fees_paid"] = (float(result.fees_paid[0]), 0.0)
    rows["turnover"] = (float(result.turnover[0]), 0.0)
    rows["rebalances"] = (float(result.rebalances[0]), 0.0)
    return rows


def _print_backtest(summary: dict[str, Any], rows: dict[str, tuple[float, float]], config: StrategyConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    weights = " · ".join(f"{a} {w:.4g} %" for a, w in config.assets.items())
    console.print(f"[bold]{weights}[/] — {_trigger_text(config)}, {config.destination}; fee {summary['fee_pct']:g} %")
    console.print(f"{summary['data']}: {summary['period']}" + (f"; gaps filled: {summary['filled_gaps']}" if any(summary["filled_gaps"].values()) else ""))
    table = Table(show_header=True, header_style="bold")
    for column in ("", "rebalanced", "hold", "difference"):
        table.add_column(column, justify="right" if column else "left")
    names = {
        "final_value": ("final value", "{:,.2f}"),
        "total_return_pct": ("total return", "{:+,.2f} %"),
        "annualised_return_pct": ("annualised", "{:+,.2f} %"),
        "volatility_pct": ("volatility (annual)", "{:,.2f} %"),
        "max_drawdown_pct": ("max drawdown", "{:,.2f} %"),
        "sharpe": ("Sharpe", "{:,.2f}"),
        "fees_paid": ("fees paid", "{:,.2f}"),
        "turnover": ("turnover", "{:,.0f}"),
        "rebalances": ("rebalances", "{:,.0f}"),
    }
    for key, (label, fmt) in names.items():
        mine, hold = rows[key]
        both = key not in ("fees_paid", "turnover", "rebalances")
        table.add_row(label, fmt.format(mine), fmt.format(hold) if both else "", fmt.format(mine - hold) if both else "")
    console.print(table)
    if "report" in summary:
        console.print(f"report: {summary['report']}")


def _print_sweep(table: Any, data: PriceData) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{len(table)} configs — {data.source}: {_period(data)}")
    fees = sorted(set(table["fee_pct"].tolist()))
    holds = table["hold_total_return_pct"]
    if len(fees) == 1:
        console.print(f"fee {fees[0]:g} %; holding the same buys returned {holds.iloc[0]:+,.1f} %" if holds.nunique() == 1 else f"fee {fees[0]:g} %")
    best = table.sort_values("excess_return_pct", ascending=False).head(10)
    out = Table(show_header=True, header_style="bold", title="best 10 against holding")
    out.add_column("setting", no_wrap=True)
    for column in ("return", "vs hold", "max drawdown", "rebalances"):
        out.add_column(column, justify="right")
    for _, row in best.iterrows():
        out.add_row(
            _setting(row, with_fee=len(fees) > 1),
            f"{row['total_return_pct']:+,.1f} %",
            f"{row['excess_return_pct']:+,.1f} pts",
            f"{row['max_drawdown_pct']:,.1f} %",
            f"{int(row['rebalances']):,}",
        )
    console.print(out)


def _setting(row: Any, *, with_fee: bool) -> str:
    """One sweep row's settings in a few words: "every 7d, gate 3" or "threshold 5 → band_edge"."""
    threshold = row["threshold"]
    has_threshold = not (threshold is None or (isinstance(threshold, float) and np.isnan(threshold)))
    if row["trigger"] == "threshold":
        text = f"threshold {threshold:g}" + (" rel." if row["threshold_kind"] == "relative" else "")
    else:
        text = f"every {row['interval']}" + (f", gate {threshold:g}" if has_threshold else "")
    if row["destination"] != "target":
        text += f" → {row['destination']}"
    return f"{text}, fee {row['fee_pct']:g} %" if with_fee else text
