"""How the benchmark scripts print: one JSON object, or an aligned table,
with the machine they ran on."""

from __future__ import annotations

import json
import os
import platform
from typing import Any

import rebal


def machine() -> dict[str, Any]:
    return {
        "threads": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "rebal": rebal.__version__,
    }


def emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
