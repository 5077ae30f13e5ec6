"""`rebal plan FILE`: one portfolio's orders from the command line (the README's main job is `rebal backtest`, tested in test_backtest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from rebal.cli import main

from .conftest import ROOT, shared

EXAMPLE = ROOT / "examples" / "portfolio.toml"


def test_plan_prints_a_table(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["plan", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "BTC/USDT" in out and "sell" in out and "ETH/USDT" in out and "buy" in out
    assert "rb1001-1-0" in out


def test_plan_json_is_exact(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["plan", str(EXAMPLE), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [o["side"] for o in plan["orders"]] == ["sell", "sell", "buy"]
    steps = {"BTC/USDT": Decimal("0.00001"), "ETH/USDT": Decimal("0.0001"), "SOL/USDT": Decimal("0.001")}
    for o in plan["orders"]:
        amount = Decimal(o["amount"])  # an exact decimal string
        assert amount % steps[o["symbol"]] == 0 and amount * Decimal(repr(o["price"])) >= 5
    assert plan["triggered"] is True


def test_plan_reads_markets_from_a_ccxt_file(tmp_path: Path) -> None:
    markets = shared("markets", "ccxt_binance_static.json")
    doc = {
        "holdings": {"BTC": "0.01", "XRP": "100", "USDT": "50"},
        "prices": {"BTC": 43000, "XRP": 0.6},
        "targets": {"BTC": 0.7, "XRP": 0.3},
        "markets": str(markets),
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    run = subprocess.run([sys.executable, "-m", "rebal.cli", "plan", str(path), "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert {o["symbol"] for o in json.loads(run.stdout)["orders"]} <= {"BTC/USDT", "XRP/USDT"}


def test_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[holdings]\nBTC = "1"\n[prices]\nBTC = 0\n[targets]\nBTC = 1.0\n[[markets]]\nsymbol="BTC/USDT"\nbase="BTC"\nquote="USDT"\nprecision={amount=0.001}\n')
    run = subprocess.run([sys.executable, "-m", "rebal.cli", "plan", str(path)], capture_output=True, text=True)
    assert run.returncode == 2
    assert "prices[BTC]" in run.stderr and "Traceback" not in run.stderr
