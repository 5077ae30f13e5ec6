"""`rebal run` as a user runs it: a separate process, ccxt's binance against
the local exchange, keys from the environment, and SIGKILL at random moments.

However often the bot dies (between sending an order and hearing back,
between hearing back and saving), the restarted bot settles every order by
client id: nothing is sent twice, no filter refuses an order, and in the
end the account holds exactly what the bot's state says.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from rebal.backtest.data import load_cryptodatadownload
from tests.conftest import shared
from tests.fake_binance import FakeBinance

pytest.importorskip("ccxt")

KEY, SECRET = "cli-key-93c0d1a7", "cli-secret-5e21b8f4c6"
ASSETS = ["BTC", "ETH", "ADA", "XRP"]
CONFIG = """\
assets = { BTC = 25, ETH = 25, ADA = 25, XRP = 25 }
investment = "10000"
quote = "USDT"
cooldown = "0s"
trigger = { type = "threshold", threshold = 1.0 }
"""


@pytest.fixture(scope="module")
def close() -> np.ndarray:
    return load_cryptodatadownload(shared("daily_binance_usdt"), ASSETS).close


def prices_at(close: np.ndarray, k: int) -> dict[str, str]:
    return {f"{a}/USDT": repr(float(close[k][i])) for i, a in enumerate(ASSETS)}


@pytest.fixture
def fake(close: np.ndarray) -> Iterator[FakeBinance]:
    with FakeBinance(shared("markets", "ccxt_binance_static.json"), api_key=KEY, secret=SECRET, balances={"USDT": "10000"}, prices=prices_at(close, 0), seed=3, hold_ms=600) as f:
        yield f
        assert f.internal_errors == []


def rebal_run(tmp_path: Path, fake: FakeBinance, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    config = tmp_path / "portfolio.toml"
    if not config.exists():
        config.write_text(CONFIG)
    environ = {**os.environ, "REBAL_BINANCE_API_KEY": KEY, "REBAL_BINANCE_API_SECRET": SECRET} if env is None else env
    command = [sys.executable, "-m", "rebal.cli", "run", str(config), "--exchange", "binance", "--api-url", fake.base_url, "--timeout-ms", "300", "--rate-limit-ms", "5", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ, cwd=tmp_path)


def test_once_prints_the_status_and_never_the_keys(fake: FakeBinance, tmp_path: Path) -> None:
    run = rebal_run(tmp_path, fake, "--once")
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert "BTC" in out and "25.00 %" in out and "vs hold" in out
    assert KEY not in out + err and SECRET not in out + err
    assert (tmp_path / "portfolio.state.sqlite").exists()


def test_keys_missing_or_readable_by_others_are_refused(fake: FakeBinance, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REBAL_")}
    run = rebal_run(tmp_path, fake, "--once", env=env)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 2 and "REBAL_BINANCE_API_KEY" in err
    keys = tmp_path / "keys.toml"
    keys.write_text(f'api_key = "{KEY}"\nsecret = "{SECRET}"\n')
    keys.chmod(0o640)
    run = rebal_run(tmp_path, fake, "--once", "--keys", str(keys), env=env)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 2 and "chmod 600" in err and SECRET not in err
    keys.chmod(0o600)
    run = rebal_run(tmp_path, fake, "--once", "--keys", str(keys), env=env)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err


def test_killed_at_random_moments_the_bot_never_sends_twice(fake: FakeBinance, close: np.ndarray, tmp_path: Path) -> None:
    rng = random.Random(20261121)
    fake.set_fault_rates({"http_429": 0.03, "http_5xx": 0.03, "partial": 0.1, "timeout_after_execute": 0.02})
    stop = threading.Event()

    def move_prices() -> None:  # a new day's closes every 50 ms, while the bot runs and dies
        k = 0
        while not stop.is_set():
            k = (k + 1) % len(close)
            fake.set_prices(prices_at(close, k))
            time.sleep(0.05)

    mover = threading.Thread(target=move_prices, daemon=True)
    mover.start()
    kills = 0
    try:
        while kills < 8:
            run = rebal_run(tmp_path, fake, "--interval", "0s", "--steps", "100000", "--json")
            time.sleep(rng.uniform(1.5, 3.5))  # ~1 s goes to starting Python
            run.send_signal(signal.SIGKILL)
            run.communicate(timeout=30)
            kills += 1
    finally:
        stop.set()
        mover.join()
    fake.clear_faults()
    run = rebal_run(tmp_path, fake, "--interval", "0s", "--steps", "3", "--json")
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])

    assert len(fake.orders) > 20  # the bot traded between the kills
    assert fake.sent_twice() == 0
    assert fake.filter_rejections == []
    balances = fake.balances()
    for a in final["assets"]:
        assert balances.get(a["asset"], Decimal(0)) == Decimal(a["amount"]), a["asset"]
    assert balances["USDT"] == Decimal(final["cash"])
    assert [o for o in fake.orders if o["status"] in ("NEW", "PARTIALLY_FILLED")] == []
    assert final["stage"] == "active"
    assert KEY not in out + err and SECRET not in out + err
