"""Shared fixtures: the real data in ../shared/data, read at test time."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REBAL_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Every property runs at least 1,000 examples, in CI too.
# In CI the examples are derandomized, so a run can be reproduced exactly.
settings.register_profile(
    "rebal",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "rebal"))


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"test data missing: {path} (set REBAL_SHARED_DATA to ../shared/data)")
    return path


@pytest.fixture(scope="session")
def binance_markets() -> dict[str, Any]:
    return json.loads(shared("markets", "ccxt_binance_static.json").read_text())


@pytest.fixture(scope="session")
def coinbase_markets() -> dict[str, Any]:
    return json.loads(shared("markets", "ccxt_coinbaseexchange_static.json").read_text())


@pytest.fixture(scope="session")
def ethbtc_symbol_info() -> dict[str, Any]:
    return json.loads(shared("markets", "binance_ETHBTC_exchangeInfo_example_from_ccxt_comment.json").read_text())
