"""Durable state: an embedded SQLite database (WAL), a file path away.

Tables a host (or a person with `sqlite3`) can read: `configs`, `orders`
(client id, amounts, status), `fills`, `events`; and `checkpoint`, the
Engine's columns as they stood after the last saved step, from which
`load` rebuilds it exactly. Each `save` is one transaction, so a crash at
any instant leaves the state of the last completed save.

Orders are saved *before* they are sent (`phase="sent"`). After a crash, an
order saved as open may or may not have reached the venue; the host asks the
venue by its client order id (the Engine's open orders:
`engine.orders.open_rows()`) and either takes what the venue knows or sends
it then: it is never sent twice.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from rebal import config as cfg
from rebal.columns import decimal_strings
from rebal.events import Events
from rebal.market import Market
from rebal.orders import Fill, OrderStatus

__all__ = ["Store", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (portfolio_id INTEGER PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY, portfolio_id INTEGER NOT NULL, symbol TEXT NOT NULL,
    side TEXT NOT NULL, purpose INTEGER NOT NULL, amount TEXT NOT NULL, filled TEXT NOT NULL,
    status TEXT NOT NULL, time_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS orders_portfolio ON orders (portfolio_id);
CREATE TABLE IF NOT EXISTS fills (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, client_order_id TEXT NOT NULL, amount TEXT NOT NULL,
    price TEXT NOT NULL, fee TEXT NOT NULL, fee_asset TEXT, cost TEXT);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, portfolio_id INTEGER NOT NULL,
    time_ms INTEGER NOT NULL, asset TEXT, amount TEXT, value REAL, reason TEXT);
CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), step INTEGER NOT NULL,
    phase TEXT NOT NULL, state BLOB NOT NULL);
"""


class Store:
    """The Engine's state in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # isolation_level=None: transactions are explicit (BEGIN … COMMIT in `save`).
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL: a committed save survives the process dying at any point
        # (what a host crash is); FULL would also survive the machine losing power.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.db.close()

    def _count(self, table: str) -> int:
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    # ------------------------------------------------------------------ writing

    def save(
        self,
        engine: Any,
        *,
        step: int,
        phase: str,
        events: Events | None = None,
        fills: Sequence[Fill] = (),
        extra: dict[str, Any] | None = None,
    ) -> None:
        """One transaction: the Engine's checkpoint, its new, changed and
        removed configs, new and changed orders, the `fills` applied since the
        last save and the drained `events`. `step` and `phase` say where the
        host's loop is; `extra` is the host's own small state (JSON). If it
        raises, nothing was saved: call it again with the same fills and events."""
        orders = engine.orders
        orders.keep_history = True  # closed orders now wait for a save before they are dropped
        dirty = orders.dirty_rows()
        changed = sorted(engine.config_changes)
        removed = sorted(engine.config_removals)
        db = self.db
        try:
            order_rows = _order_rows(engine, dirty) if len(dirty) else []
            orders["dirty"][dirty] = False  # as the checkpoint will have it
            blob = engine.snapshot()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO configs VALUES (?, ?)", [(pid, cfg.encode_config(engine.configs[pid]).decode()) for pid in changed])
                db.executemany("DELETE FROM configs WHERE portfolio_id = ?", [(pid,) for pid in removed])
                db.executemany("INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", order_rows)
                db.executemany(
                    "INSERT INTO fills (client_order_id, amount, price, fee, fee_asset, cost) VALUES (?, ?, ?, ?, ?, ?)",
                    [(f.client_order_id, str(f.amount), str(f.price), str(f.fee), f.fee_asset, None if f.cost is None else str(f.cost)) for f in fills],
                )
                if events is not None and len(events):
                    db.executemany(
                        "INSERT INTO events (kind, portfolio_id, time_ms, asset, amount, value, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [(e.kind, e.portfolio_id, e.time_ms, e.asset, None if e.amount is None else str(e.amount), e.value, e.reason) for e in events.records()],
                    )
                db.execute("INSERT OR REPLACE INTO checkpoint VALUES (1, ?, ?, ?)", (step, phase, blob))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('host', ?)", (json.dumps(extra or {}),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except BaseException:
            orders["dirty"][dirty] = True  # not saved: saved with the next save
            raise
        engine.config_changes.difference_update(changed)
        engine.config_removals.difference_update(removed)

    # ------------------------------------------------------------------ reading

    def checkpoint(self) -> tuple[int, str] | None:
        """(step, phase) of the last save, or None for a new store."""
        row = self.db.execute("SELECT step, phase FROM checkpoint WHERE id = 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def load(self, markets: Sequence[Market], *, limits: cfg.Limits | None = None, funds: Any = None) -> Any:
        """The Engine exactly as the last save left it (None for a new store)."""
        from rebal.engine import Engine

        row = self.db.execute("SELECT state FROM checkpoint WHERE id = 1").fetchone()
        if row is None:
            return None
        # Configs were checked when they were created, maybe under other limits.
        configs = {int(pid): cfg.decode_config(text, "json", limits=None) for pid, text in self.db.execute("SELECT portfolio_id, config FROM configs")}
        engine = Engine.restore(bytes(row[0]), markets, configs, limits=limits, funds=funds)
        engine.orders.keep_history = True
        return engine

    def host_state(self) -> dict[str, Any]:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'host'").fetchone()
        return {} if row is None else dict(json.loads(row[0]))

    def counts(self) -> dict[str, int]:
        return {table: self._count(table) for table in ("configs", "orders", "fills", "events")}

    def event_kinds(self) -> dict[str, int]:
        return {k: int(n) for k, n in self.db.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind ORDER BY kind")}

    def events_digest_rows(self) -> list[tuple[Any, ...]]:
        return list(self.db.execute("SELECT kind, portfolio_id, time_ms, asset, amount, value, reason FROM events ORDER BY seq"))


def _order_rows(engine: Any, rows: np.ndarray) -> list[tuple[Any, ...]]:
    t = engine.orders
    ids = t.client_order_ids(rows)
    symbols = [engine.markets[a].symbol for a in t["asset"][rows].tolist()]
    amounts = decimal_strings(np.ascontiguousarray(t["amount"][rows]))
    filled = decimal_strings(np.ascontiguousarray(t["filled"][rows]))
    return [
        (cid, pid, sym, "buy" if side == 0 else "sell", purpose, a, f, OrderStatus(st).name.lower(), tm)
        for cid, pid, sym, side, purpose, a, f, st, tm in zip(
            ids, t["portfolio_id"][rows].tolist(), symbols, t["side"][rows].tolist(), t["purpose"][rows].tolist(),
            amounts.tolist(), filled.tolist(), t["status"][rows].tolist(), t["time_ms"][rows].tolist(),
        )
    ]  # fmt: skip


def save_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """Named arrays as one msgpack map of (dtype, shape, raw bytes): a copy
    of each array's memory and no more, so a one-portfolio bot can save
    after every order (np.savez's zip costs ~100 µs per array)."""
    packed = {name: (a.dtype.str, list(a.shape), np.ascontiguousarray(a).tobytes()) for name, a in arrays.items()}
    return _ARRAYS + msgspec.msgpack.encode(packed)


def load_arrays(blob: bytes) -> dict[str, np.ndarray]:
    if not blob.startswith(_ARRAYS):  # a checkpoint written before the format above: .npz
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    packed = msgspec.msgpack.decode(blob[len(_ARRAYS) :], type=dict[str, tuple[str, list[int], bytes]])
    out = {}
    for name, (dtype, shape, raw) in packed.items():
        kind = np.dtype(dtype)
        if kind.hasobject:
            raise ValueError(f"checkpoint array {name!r} has an object dtype")
        out[name] = np.frombuffer(raw, dtype=kind).reshape(shape).copy()  # writable, like np.load's
    return out


_ARRAYS = b"rebal-arrays-1\n"
