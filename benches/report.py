"""How the benchmark scripts print: one JSON object, or an aligned table,
with the machine they ran on."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from typing import Any

import rebal


def machine() -> dict[str, Any]:
    return {
        "threads": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "rebal": rebal.__version__,
    }


def speed_check_ms() -> float:
    """Milliseconds of a fixed single-threaded workload: SHA-256 of 128 MB
    (16 MB hashed eight times). A shared VM's speed drifts: on this
    project's machine it takes ~340 ms in fast spells and 470–630 ms in slow
    ones. The benchmarks time it at their start and end and report both
    (`speed_check_ms`), so figures from different minutes can be compared."""
    block = bytes(16 << 20)
    start = time.perf_counter()
    for _ in range(8):
        hashlib.sha256(block).digest()
    return round((time.perf_counter() - start) * 1e3, 1)


def emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
