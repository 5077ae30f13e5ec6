"""The headline benchmark: one `Book.tick` over N portfolios against the
baselines a user would otherwise write, on the same inputs.

    python benches/tick.py --portfolios 1000000 --assets 50 --json

Times, best of --repeat runs each (a dry-run tick, commit=False, so every
run sees the same book):
- rebal: `Book.tick` (Rust, rayon, GIL released); also the median of its
  runs (rebal_median_ms), each batch kept until the next tick returns, as
  a host keeps its last one;
- numpy: a vectorized numpy implementation of the same scan and plan
  (benches/baseline.py), checked to give the same orders;
- python: a plain per-portfolio Python loop on a sample, scaled to N;
- floor: a numpy copy of as many bytes as the tick must read (every column
  the scan reads), the memory-bandwidth floor of any implementation.
Prints one JSON object (--json) or a table. Memory: peak_rss_mb is the
process's maximum resident set over all stages; build_, tick_ and
baselines_peak_rss_mb are the peaks while generating and building the book,
while ticking it (the book and the batches resident), and while the
baselines run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from baseline import numpy_tick, python_tick  # noqa: E402
from report import emit, machine, speed_check, speed_report  # noqa: E402
from realistic import realistic_book  # noqa: E402

import rebal  # noqa: E402
from rebal.book import HOLDING_COLUMNS, PORTFOLIO_COLUMNS  # noqa: E402

# What the scan reads of every portfolio, and of every holding.
SCANNED_PORTFOLIO_COLUMNS = ("start", "stop", "cash_float", "cash_target", "active", "trigger", "threshold_kind", "threshold")
SCANNED_HOLDING_COLUMNS = ("asset", "amount_float", "target")


def peak_rss_mb() -> int:
    """Peak resident memory since the last `reset_peak` (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def reset_peak() -> None:
    """Restarts VmHWM from the current RSS (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    times, result = timed(repeat, run)
    return min(times), result


def timed(repeat: int, run: Callable[[], Any]) -> tuple[list[float], Any]:
    """Seconds of each of `repeat` runs, and the last result. Each result is
    kept until the next run has returned, as a host keeps its last batch."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return times, result


def bytes_read(portfolios: int, holdings: int) -> int:
    """Bytes of every column the scan reads, from the Book's column types."""
    def width(columns: dict[str, tuple[Any, tuple[int, ...]]], name: str) -> int:
        dtype, shape = columns[name]
        return int(np.dtype(dtype).itemsize * np.prod(shape, dtype=int))

    return portfolios * sum(width(PORTFOLIO_COLUMNS, c) for c in SCANNED_PORTFOLIO_COLUMNS) + holdings * sum(
        width(HOLDING_COLUMNS, c) for c in SCANNED_HOLDING_COLUMNS
    )


def floor_seconds(nbytes: int, repeat: int) -> float:
    source = np.ones(nbytes // 8 + 1)
    target = np.empty_like(source)
    return best_of(repeat, lambda: np.copyto(target, source))[0]


def same_orders(batch: rebal.OrderBatch, ours: dict[str, np.ndarray], portfolios: np.ndarray | None = None) -> bool:
    theirs = [batch.portfolio, batch.leg, batch.side, batch.lots]
    if portfolios is not None:
        keep = np.isin(batch.portfolio, portfolios)
        theirs = [c[keep] for c in theirs]
    mine = [ours["portfolio"], ours["leg"], ours["side"], ours["lots"]]
    return all(len(a) == len(b) and np.array_equal(a, b) for a, b in zip(theirs, mine))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portfolios", type=int, default=1_000_000)
    parser.add_argument("--assets", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the rebal tick and the floor (best taken)")
    parser.add_argument("--numpy-repeat", type=int, default=1)
    parser.add_argument("--python-sample", type=int, default=2000, help="portfolios the pure-Python loop plans")
    parser.add_argument("--skip-numpy", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    speed_at_start = speed_check()

    # The floor first, so its two buffers never sit on top of the book.
    generated = realistic_book(args.portfolios, args.assets, seed=args.seed)
    nbytes = bytes_read(args.portfolios, int(generated.offsets[-1]))
    del generated
    floor_s = floor_seconds(nbytes, args.repeat)
    reset_peak()

    built = time.perf_counter()
    generated = realistic_book(args.portfolios, args.assets, seed=args.seed)
    book = generated.book()
    build_s = time.perf_counter() - built
    prices = generated.prices
    rows = len(book.holding_columns()["asset"])

    build_peak = peak_rss_mb()
    reset_peak()
    book.tick(prices, 0, commit=False)  # warm the thread pool and the pages
    tick_s, batch = timed(args.repeat, lambda: book.tick(prices, 0, commit=False))
    rebal_s = min(tick_s)
    tick_peak = peak_rss_mb()
    reset_peak()

    numpy_s, identical = float("nan"), None
    if not args.skip_numpy:
        numpy_s, ours = best_of(args.numpy_repeat, lambda: numpy_tick(generated, prices))
        identical = same_orders(batch, ours) and bool(np.array_equal(batch.triggered, ours["triggered"]))

    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(args.portfolios, min(args.python_sample, args.portfolios), replace=False))
    python_s, in_python = best_of(1, lambda: python_tick(generated, prices, sample))
    python_identical = same_orders(batch, in_python, sample)

    result = {
        "portfolios": args.portfolios,
        "assets": args.assets,
        "holdings": rows,
        "triggered": int(batch.triggered.sum()),
        "orders": len(batch),
        "skipped": len(batch.skipped),
        "rebal_ms": round(rebal_s * 1e3, 2),
        "rebal_median_ms": round(statistics.median(tick_s) * 1e3, 2),
        "numpy_ms": round(numpy_s * 1e3, 2),
        "python_ms_scaled": round(python_s * args.portfolios / len(sample) * 1e3, 1),
        "floor_ms": round(floor_s * 1e3, 2),
        "speedup_vs_numpy": round(numpy_s / rebal_s, 1),
        "speedup_vs_python": round(python_s * args.portfolios / len(sample) / rebal_s, 1),
        "vs_floor": round(rebal_s / floor_s, 2),
        "identical": identical,
        "python_identical": python_identical,
        "portfolio_assets_per_s": round(rows / rebal_s),
        "bytes_read": nbytes,
        "build_s": round(build_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "build_peak_rss_mb": build_peak,
        "tick_peak_rss_mb": tick_peak,
        "baselines_peak_rss_mb": peak_rss_mb(),
        **machine(),
    }
    # After the memory figures are read: the check's own 16 MB never counts.
    result.update(speed_report(speed_at_start, speed_check()))
    emit(result, args.json)
    return result


if __name__ == "__main__":
    main()
