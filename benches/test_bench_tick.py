"""pytest-benchmark suite: the planner, the tick and the Engine's tick at small and medium sizes.

    python -m pytest benches/test_bench_tick.py --benchmark-only

Figures only; nothing here asserts on time (the headline run is benches/tick.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from realistic import RealisticBook, realistic_book  # noqa: E402

import rebal  # noqa: E402

SIZES = {"small": 10_000, "medium": 100_000}


@pytest.fixture(scope="module", params=list(SIZES))
def generated(request: pytest.FixtureRequest) -> RealisticBook:
    return realistic_book(SIZES[request.param], 50, seed=11)


def test_plan_one_portfolio(benchmark) -> None:  # type: ignore[no-untyped-def]
    """rebal.plan: one 5-asset portfolio through the Python API (validation and Structs included)."""
    bases = ["BTC", "ETH", "SOL", "XRP", "DOGE"]
    steps = ["0.00001", "0.0001", "0.001", "0.1", "1"]
    prices = dict(zip(bases, [95_000.0, 3_100.0, 210.0, 2.4, 0.17]))
    markets = [rebal.Market(f"{b}/USDT", b, "USDT", s, min_amount=s, min_notional="5", taker_fee=0.001) for b, s in zip(bases, steps)]
    holdings = {"BTC": "0.025", "ETH": "0.5", "SOL": "6", "XRP": "650", "DOGE": "8000", "USDT": "12.5"}
    targets = {b: 0.2 for b in bases}
    plan = benchmark(rebal.plan, holdings, prices, targets, markets, threshold=0.05)
    assert plan.triggered and plan.orders


def test_tick(benchmark, generated: RealisticBook) -> None:  # type: ignore[no-untyped-def]
    """Book.tick over the whole book, about 10 % triggered (dry run: every round sees the same book)."""
    book = generated.book()
    batch = benchmark(book.tick, generated.prices, 0, commit=False)
    benchmark.extra_info.update(portfolios=len(book), orders=len(batch), triggered=int(batch.triggered.sum()))
    assert np.array_equal(batch.triggered, generated.triggered)


def test_scan_only(benchmark, generated: RealisticBook) -> None:  # type: ignore[no-untyped-def]
    """Book.tick when nothing triggers: the cost of the scan alone."""
    quiet = realistic_book(len(generated.offsets) - 1, 50, seed=11, triggered_share=0.0).book()
    batch = benchmark(quiet.tick, generated.prices, 0, commit=False)
    assert len(batch) == 0


def test_build_book(benchmark, generated: RealisticBook) -> None:  # type: ignore[no-untyped-def]
    """Book.from_columns with float amounts (read exactly by their shortest repr) and full validation."""
    book = benchmark.pedantic(generated.book, rounds=3)
    assert len(book) == len(generated.offsets) - 1


def test_engine_tick(benchmark, generated: RealisticBook) -> None:  # type: ignore[no-untyped-def]
    """Engine.on_tick: the Book's scan and plan with the policies between (take-profit,
    stop-loss, trailing, auto-invest, drawdown) and the order table; state put back each round."""
    from realistic import realistic_engine

    engine = realistic_engine(generated, seed=11)
    saved = [{k: v.copy() for k, v in t.views().items()} for t in (engine.book._portfolios, engine.state)]

    def restore() -> tuple[tuple[()], dict[str, object]]:
        engine.book._portfolios.load(saved[0])
        engine.state.load(saved[1])
        engine.orders = rebal.orders.OrderTable()
        engine.events()
        return (), {}

    batch = benchmark.pedantic(lambda: engine.on_tick(3_600_000, generated.prices), setup=restore, rounds=5)
    benchmark.extra_info.update(portfolios=len(engine.book), orders=len(batch))
    assert len(batch) >= int(generated.triggered.sum())
