"""How the benchmark scripts print: one JSON object, or an aligned table,
with the machine they ran on."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import threading
import time
from typing import Any

import rebal


def machine() -> dict[str, Any]:
    return {
        "threads": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "rebal": rebal.__version__,
    }


def speed_check() -> tuple[float, float]:
    """A fixed workload's milliseconds on one thread, and its speed-up on
    two: SHA-256 of 128 MB (16 MB hashed eight times), then the same split
    across two threads (hashlib lets go of the GIL). A shared VM's speed
    drifts: on this project's machine one thread takes ~340 ms in fast
    spells and 470–630 ms in slow ones, and two threads give ~1.9× when
    both cores are there and 1.0–1.6× when the second is busy elsewhere
    (which one thread's time does not show, and the tick runs on both). The
    benchmarks check at their start and end and report both
    (`speed_check_ms`, `two_core_speedup`), so figures from different
    minutes can be compared."""
    block = bytes(16 << 20)

    def hash_blocks(count: int) -> None:
        for _ in range(count):
            hashlib.sha256(block).digest()

    start = time.perf_counter()
    hash_blocks(8)
    one = time.perf_counter() - start
    halves = [threading.Thread(target=hash_blocks, args=(4,)) for _ in range(2)]
    start = time.perf_counter()
    for half in halves:
        half.start()
    for half in halves:
        half.join()
    two = time.perf_counter() - start
    return round(one * 1e3, 1), round(one / two, 2)


def speed_report(at_start: tuple[float, float], at_end: tuple[float, float]) -> dict[str, list[float]]:
    """The `speed_check` figures at a benchmark's start and end, as reported."""
    return {"speed_check_ms": [at_start[0], at_end[0]], "two_core_speedup": [at_start[1], at_end[1]]}


def emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
