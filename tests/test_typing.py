"""The hand-written stub matches the extension, and the package type-checks."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT


def test_stub_matches_the_extension() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "rebal._rebal", "--ignore-missing-stub"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_package_type_checks_strictly() -> None:
    run = subprocess.run([sys.executable, "-m", "mypy", "python/rebal"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
