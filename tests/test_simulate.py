"""`rebal simulate`: the exchange-side demo host, and crash recovery.

The headline test kills the simulation with SIGKILL at 30+ random points,
resumes it each time from its store, and checks that the final digest
(holdings, cash, orders, fills, events) equals an uninterrupted run's and
that the venue never saw a client order id twice.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rebal.cli import main
from rebal.sim import simulate

ARGS = ["--portfolios", "30", "--ticks", "200", "--seed", "7", "--json"]


def _command(store: Path) -> list[str]:
    return [sys.executable, "-m", "rebal.cli", "simulate", *ARGS, "--store", str(store)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    store = tmp_path_factory.mktemp("reference") / "sim.db"
    started = time.monotonic()
    done = subprocess.run(_command(store), capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    result["seconds"] = time.monotonic() - started
    return result


def test_the_simulation_exercises_the_product(reference: dict[str, Any]) -> None:
    kinds = reference["event_kinds"]
    for kind in ("funded", "active", "rebalance_started", "rebalance_done", "order_rejected", "auto_invest_executed", "terminated", "asset_returned"):
        assert kinds.get(kind, 0) > 0, kind
    assert reference["fills"] > reference["orders"] / 2
    assert reference["client_ids_sent_twice"] == 0
    assert reference["orders_sent"] == reference["orders"]
    assert reference["orders_breaking_market_rules"] == 0  # the venue checks step, minimums, suspension


def test_same_arguments_same_digest(tmp_path: Path, reference: dict[str, Any]) -> None:
    again = simulate(30, 200, 7, tmp_path / "again.db")
    assert again["digest"] == reference["digest"]


def test_a_finished_run_resumes_to_the_same_result(tmp_path: Path, reference: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "sim.db"
    assert main(["simulate", *ARGS, "--store", str(store)]) == 0
    assert main(["simulate", *ARGS, "--store", str(store)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last)["digest"] == reference["digest"]


def test_a_store_of_other_arguments_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "sim.db"
    assert main(["simulate", "--portfolios", "3", "--ticks", "5", "--seed", "1", "--store", str(store)]) == 0
    assert main(["simulate", "--portfolios", "4", "--ticks", "5", "--seed", "1", "--store", str(store)]) == 2
    assert "other arguments" in capsys.readouterr().err


def test_sigkill_at_random_points_then_resume(tmp_path: Path, reference: dict[str, Any]) -> None:
    """Kill points are random fractions of an uninterrupted run's time, so
    they fall anywhere from start-up to the last save whatever the machine's
    speed; after 8 kills a run is let finish, so the test always ends."""
    rng = random.Random(20261121)
    kills = runs = 0
    while kills < 30:
        store = tmp_path / f"run{runs}.db"
        runs += 1
        for attempt in range(9):
            process = subprocess.Popen(_command(store), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                out, _ = process.communicate(timeout=None if attempt == 8 else rng.uniform(0.15, 0.9) * reference["seconds"])
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                continue
            assert process.returncode == 0, f"run {runs} ended with {process.returncode}"
            result = json.loads(out)
            break
        assert result["digest"] == reference["digest"], f"run {runs} after {kills} kills in all"
        assert result["client_ids_sent_twice"] == 0
        with sqlite3.connect(store) as db:
            sent, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT client_order_id) FROM venue_submissions").fetchone()
            saved = db.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        assert sent == distinct == saved
    assert kills >= 30


def test_orders_the_venue_took_before_the_crash_are_not_sent_again(
    tmp_path: Path, reference: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the venue took a tick's orders but before the Engine
    saved their fills: the outcome is unknown to the Engine. On resume it
    asks the venue by client id, takes the fills it reports, sends nothing twice."""
    from rebal.store import Store

    real_save = Store.save
    crashed = []

    def save(self: Store, engine: Any, *, step: int, phase: str, **kw: Any) -> None:
        sent = self.db.execute("SELECT COUNT(*) FROM orders WHERE status = 'open'").fetchone()[0]
        if step >= 50 and phase == "done" and sent and not crashed:
            crashed.append(step)
            raise KeyboardInterrupt("the host dies here")
        real_save(self, engine, step=step, phase=phase, **kw)

    store = tmp_path / "sim.db"
    monkeypatch.setattr(Store, "save", save)
    with pytest.raises(KeyboardInterrupt):
        simulate(30, 200, 7, store)
    monkeypatch.setattr(Store, "save", real_save)
    with sqlite3.connect(store) as db:
        step, phase = db.execute("SELECT step, phase FROM checkpoint").fetchone()
        unknown = db.execute("SELECT COUNT(*) FROM orders WHERE status = 'open'").fetchone()[0]
    assert step >= 50 and phase == "sent" and unknown > 0
    result = simulate(30, 200, 7, store)
    assert result["digest"] == reference["digest"]
    assert result["client_ids_sent_twice"] == 0
