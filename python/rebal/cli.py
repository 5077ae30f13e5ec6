"""The `rebal` command line.

    rebal plan FILE [--json]    plan the rebalance of the portfolio in FILE
    rebal simulate --portfolios N --ticks T --seed S --store PATH [--json]
                                run N portfolios on a simulated venue, saved to PATH (resumable)
    rebal backtest [--data DIR] [--assets ...] [--threshold 5 | --trigger calendar ...] [--report DIR]
                                one strategy on historical (or synthetic) prices against holding
    rebal sweep [--data DIR] [--thresholds ...] [--intervals ...] [--report DIR]
                                a grid of strategies at once, ranked against holding
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from rebal.exceptions import ConfigError, RebalError
from rebal.market import Market
from rebal.planner import plan
from rebal.types import Plan

__all__ = ["main", "load_portfolio_file"]


def load_portfolio_file(path: Path) -> dict[str, Any]:
    """Reads a portfolio file (TOML or JSON): holdings, prices, targets,
    markets in ccxt form (a list, a {symbol: market} mapping, or the path of
    a JSON file of them, relative to FILE), and optional planner settings."""
    text = path.read_text()
    try:
        doc = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper() or 'JSON'}: {e}", field=str(path), value=None) from e
    for key in ("holdings", "prices", "targets", "markets"):
        if key not in doc:
            raise ConfigError(f"{path}: missing [{key}]", field=key, value=None)
    markets = doc["markets"]
    if isinstance(markets, str):
        markets = json.loads((path.parent / markets).read_text())
    if isinstance(markets, Mapping):
        markets = list(markets.values())
    precision_mode = doc.get("precision_mode")
    wanted = set(doc["targets"]) | set(doc["holdings"])
    doc["markets"] = [
        Market.from_ccxt(m, precision_mode=precision_mode)
        for m in markets
        if m.get("base") in wanted and m.get("quote") == doc.get("quote", "USDT") and m.get("type", "spot") == "spot"
    ]
    return doc


def _plan_file(path: Path) -> Plan:
    doc = load_portfolio_file(path)
    settings = {k: doc[k] for k in ("quote", "destination", "threshold", "threshold_kind", "fee_rate", "portfolio_id", "epoch") if k in doc}
    return plan(doc["holdings"], doc["prices"], doc["targets"], doc["markets"], **settings)


def _print_plan(p: Plan) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    orders = Table(title="Orders (sells first)", title_justify="left")
    for column in ("symbol", "side", "amount", "price", "notional", "fee", "client order id"):
        orders.add_column(column, justify="right" if column in ("amount", "price", "notional", "fee") else "left")
    for o in p.orders:
        colour = "red" if o.side == "sell" else "green"
        orders.add_row(o.symbol, f"[{colour}]{o.side}[/]", str(o.amount), f"{o.price:,.8g}", f"{o.notional:,.2f}", f"{o.fee:,.4f}", o.client_order_id)
    console.print(orders)
    if p.skipped:
        skipped = Table(title="Not sent (unexecutable drift)", title_justify="left")
        for column in ("symbol", "side", "wanted amount", "reason"):
            skipped.add_column(column)
        for s in p.skipped:
            skipped.add_row(s.symbol, s.side, str(s.amount), s.reason)
        console.print(skipped)
    console.print(
        f"value {p.value:,.2f} -> {p.value_after:,.2f} after fees {p.fees:,.4f}; "
        f"max deviation {100 * p.max_deviation:.2f} points; triggered: {p.triggered}; "
        f"cash after {p.cash_after:,.4f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rebal", description="Exact smart-portfolio rebalancing.")
    commands = parser.add_subparsers(dest="command", required=True)
    plan_cmd = commands.add_parser("plan", help="plan the rebalance of a portfolio file (TOML or JSON)")
    plan_cmd.add_argument("file", type=Path)
    plan_cmd.add_argument("--json", action="store_true", help="print the plan as JSON")
    sim_cmd = commands.add_parser("simulate", help="run N portfolios of random configs on a simulated venue (resumes from --store)")
    sim_cmd.add_argument("--portfolios", type=int, required=True)
    sim_cmd.add_argument("--ticks", type=int, required=True, help="hourly ticks of the synthetic price path")
    sim_cmd.add_argument("--seed", type=int, default=0)
    sim_cmd.add_argument("--store", type=Path, required=True, help="SQLite file; run again to resume")
    sim_cmd.add_argument("--json", action="store_true", help="print the final summary (with its digest) as JSON")
    from rebal.backtest.cli import add_commands, backtest_command, sweep_command

    add_commands(commands)
    from rebal.bot.cli import add_command as add_run, run_command

    add_run(commands)
    args = parser.parse_args(argv)

    if args.command == "run":
        return run_command(args)

    if args.command == "simulate":
        return _simulate(args)
    if args.command in ("backtest", "sweep"):
        try:
            return backtest_command(args) if args.command == "backtest" else sweep_command(args)
        except (RebalError, OSError, ValueError) as e:
            print(f"rebal: {e}", file=sys.stderr)
            return 2
    try:
        result = _plan_file(args.file)
    except (RebalError, OSError) as e:
        print(f"rebal: {e}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    else:
        _print_plan(result)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from rebal.sim import print_progress, simulate

    if args.portfolios < 1 or args.ticks < 0:
        print("rebal: --portfolios must be ≥ 1 and --ticks ≥ 0", file=sys.stderr)
        return 2
    try:
        result = simulate(args.portfolios, args.ticks, args.seed, args.store, progress=print_progress)
    except (RebalError, ValueError, OSError) as e:
        print(f"rebal: {e}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        for key, value in result.items():
            print(f"{key:>24}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
