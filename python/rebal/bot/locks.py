"""One bot per state file and per exchange account.

Two bots on one state file would compute the same client order ids and the
exchange would take each order twice (Binance accepts a client id again once
its first order is done); two bots on one account would each claim the same
free balance. An exclusive `flock` held for the bot's lifetime refuses the
second one; the kernel releases it when the process dies, so a crash never
leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from rebal.exceptions import ConfigError

__all__ = ["hold_lock", "release", "account_lock_path"]


def hold_lock(path: Path, busy: str) -> int:
    """An exclusive lock on `path` (created), held until `release`; a
    `ConfigError` with the message `busy` if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(busy, field=busy.split(":")[0], value=str(path)) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def release(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)  # closing the descriptor drops its flock


def account_lock_path(account: str) -> Path:
    """Where the lock of an account lives: a hash, so neither the key nor
    its owner can be read off the file name."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "rebal" / "accounts" / f"{hashlib.sha256(account.encode()).hexdigest()[:32]}.lock"
