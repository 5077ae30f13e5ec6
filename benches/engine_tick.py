"""The Engine's tick against the bare Book's: what the policy layer costs.

    python benches/engine_tick.py --portfolios 1000000 --assets 50 --json

Both run on the same realistic book (benches/realistic.py) at an hourly
tick: `Book.tick` (valuation, triggers, planning in Rust) and
`Engine.on_tick` (the same, plus the valuation for the policies,
take-profit / stop-loss / trailing checks, auto-invest cycles with their
new-money buys, exits, drawdown tracking, and recording the orders). Each
run commits (locks, epochs, cycles), so the state is put back between
runs, outside the timing. The two alternate, --repeat pairs: the
overhead is the median over pairs of engine / book − 1 (each pair ran at
the same speed of a machine whose speed drifts), and each one's best time
is shown too. The target is an overhead of at most 30 %.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from report import emit, machine, speed_check, speed_report  # noqa: E402
from realistic import realistic_book, realistic_engine  # noqa: E402

import rebal  # noqa: E402

HOUR_MS = 3_600_000


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portfolios", type=int, default=1_000_000)
    parser.add_argument("--assets", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    speed_at_start = speed_check()

    generated = realistic_book(args.portfolios, args.assets, seed=args.seed)
    engine = realistic_engine(generated, seed=args.seed)
    book, prices, now = engine.book, generated.prices, HOUR_MS
    saved = (
        {k: v.copy() for k, v in book._portfolios.views().items()},
        {k: v.copy() for k, v in book._holdings.views().items()},
        {k: v.copy() for k, v in engine.state.views().items()},
    )

    def restore() -> None:
        book._portfolios.load(saved[0])
        book._holdings.load(saved[1])
        engine.state.load(saved[2])
        engine.orders = rebal.orders.OrderTable()
        engine.events()

    def timed(run: Any) -> tuple[float, Any]:
        restore()
        start = time.perf_counter()
        result = run()
        return time.perf_counter() - start, result

    book.tick(prices, now, commit=False)  # warm the thread pool and the pages
    pairs = []
    for _ in range(args.repeat):
        book_seconds, book_batch = timed(lambda: book.tick(prices, now))
        engine_seconds, batch = timed(lambda: engine.on_tick(now, prices))
        pairs.append((book_seconds, engine_seconds))
    book_s, engine_s = min(p[0] for p in pairs), min(p[1] for p in pairs)
    overhead = float(np.median([e / b - 1 for b, e in pairs]))
    events = engine.events()
    purpose = np.bincount(batch.purpose, minlength=3)
    result = {
        "portfolios": args.portfolios,
        "assets": args.assets,
        "book_tick_ms": round(book_s * 1e3, 2),
        "engine_tick_ms": round(engine_s * 1e3, 2),
        "policy_overhead_pct": round(100 * overhead, 1),
        "overhead_of_best_pct": round(100 * (engine_s / book_s - 1), 1),
        "book_orders": len(book_batch),
        "engine_orders": len(batch),
        "rebalance_orders": int(purpose[rebal.Purpose.REBALANCE]),
        "invest_orders": int(purpose[rebal.Purpose.INVEST]),
        "exit_orders": int(purpose[rebal.Purpose.EXIT]),
        "auto_invest_cycles": events.count(rebal.EventKind.AUTO_INVEST_EXECUTED),
        "exits_started": events.count(rebal.EventKind.TERMINATING),
        **machine(),
    }
    result.update(speed_report(speed_at_start, speed_check()))
    emit(result, args.json)
    return result


if __name__ == "__main__":
    main()
