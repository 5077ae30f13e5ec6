"""`rebal.Book`: the state of many portfolios as columns, and the tick over them.

Per portfolio (one slot each): id, exact free cash, trigger (threshold or
calendar with an optional gate), cooldown, destination, fee rate, last
rebalance time, next calendar check, the "orders out" lock and the
rebalance epoch. Per holding (rows ``start:stop`` of a portfolio): asset
index, exact amount, target weight.

Everything is checked when it is written (`from_columns`, `add`, `update`),
in Rust, before anything is stored, so a tick only has to read. Removing a
portfolio or changing its number of holdings leaves its old rows unused;
they are reclaimed by `compact`, which also runs on its own once most rows
are unused. Slots can move then; ids never do, and every batch carries the
ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from rebal import _rebal
from rebal.batch import OrderBatch, Scan, Status
from rebal.columns import Table, decimals, words
from rebal.exceptions import ConfigError, PriceError
from rebal.market import Market

__all__ = ["Book", "NEVER", "DEFAULT_COOLDOWN_MS"]

NEVER = np.iinfo(np.int64).min
"""`last_rebalance_ms` of a portfolio that never rebalanced."""
DEFAULT_COOLDOWN_MS = 300_000
"""Five minutes between two rebalances of one portfolio (Bitget re-checks then)."""

_W = (2,)  # exact amounts: two int64 words per value
PORTFOLIO_COLUMNS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "id": (np.uint64, ()),
    "start": (np.int64, ()),
    "stop": (np.int64, ()),
    "cash": (np.int64, _W),
    "cash_float": (np.float64, ()),  # the exact cash as a float: what the scan reads
    "cash_target": (np.float64, ()),
    "active": (np.bool_, ()),
    "trigger": (np.uint8, ()),
    "threshold_kind": (np.uint8, ()),
    "threshold": (np.float64, ()),
    "interval_ms": (np.int64, ()),
    "cooldown_ms": (np.int64, ()),
    "destination": (np.uint8, ()),
    "inner_k": (np.float64, ()),
    "fee_rate": (np.float64, ()),
    "last_rebalance_ms": (np.int64, ()),
    "next_check_ms": (np.int64, ()),
    "locked": (np.bool_, ()),
    "epoch": (np.uint32, ()),
    # Python-side only: a removed slot is dead; a paused one is alive but not active.
    "alive": (np.bool_, ()),
    "paused": (np.bool_, ()),
}
HOLDING_COLUMNS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "asset": (np.int32, ()),
    "amount": (np.int64, _W),
    "amount_float": (np.float64, ()),  # the exact amount as a float: what the scan reads
    "target": (np.float64, ()),
}
STRATEGY_COLUMNS = (
    "cash_target", "trigger", "threshold_kind", "threshold", "interval_ms", "cooldown_ms",
    "destination", "inner_k", "fee_rate", "next_check_ms",
)  # fmt: skip

TRIGGERS = {"threshold": 0, "calendar": 1}
THRESHOLD_KINDS = {"absolute": 0, "relative": 1}
DESTINATIONS = {"target": 0, "band_edge": 1, "inner_band": 2}
_INNER_BAND = re.compile(r"^inner_band\(\s*([0-9.eE+-]+)\s*\)$")

Amounts = Any  # float64 array (shortest repr), (n, 2) int64 words, or a sequence of str / Decimal / int / float


class Book:
    """N portfolios as columns; `tick` checks them all and plans the triggered ones.

    `markets` holds one `Market` per asset index, each against the same quote
    asset; holdings point into it and into the price vector of every tick.
    """

    def __init__(self, markets: Sequence[Market], *, on_compact: Callable[[npt.NDArray[np.int64]], None] | None = None) -> None:
        """`on_compact` is told the slots kept, in their new order, whenever
        the Book compacts: a host keeping its own columns by slot (the
        Engine does) keeps them aligned with it."""
        self._markets = list(markets)
        self._on_compact = on_compact
        quotes = {m.quote for m in self._markets}
        if len(quotes) > 1:
            raise ConfigError(f"markets: all must share one quote asset (got {sorted(quotes)})", field="markets", value=sorted(quotes))
        self._portfolios = Table(PORTFOLIO_COLUMNS)
        self._holdings = Table(HOLDING_COLUMNS)
        self._unused_rows = 0
        self._index: tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]] | None = None
        self._merged: tuple[int, int, dict[str, np.ndarray]] | None = None  # see `_columns`
        self.next_id = 0
        """The id the next portfolio gets by default: above every id ever
        added, so an id is never reused (client order ids are keyed by it)."""

    # ------------------------------------------------------------------ building

    @classmethod
    def from_columns(
        cls,
        offsets: npt.ArrayLike,
        asset: npt.ArrayLike,
        amount: Amounts,
        target: npt.ArrayLike,
        cash: Amounts,
        markets: Sequence[Market],
        **strategy: Any,
    ) -> Book:
        """A Book of n portfolios from CSR columns: portfolio i holds rows
        ``offsets[i]:offsets[i+1]`` of `asset` (int32 index into `markets` and
        the prices), `amount` and `target` (weights summing to 1 per
        portfolio); `cash` is each one's free quote cash. Strategy settings
        (see `add_columns`) are scalars or one value per portfolio."""
        book = cls(markets)
        book.add_columns(offsets, asset, amount, target, cash, **strategy)
        return book

    def add_columns(
        self,
        offsets: npt.ArrayLike,
        asset: npt.ArrayLike,
        amount: Amounts,
        target: npt.ArrayLike,
        cash: Amounts,
        *,
        id: npt.ArrayLike | None = None,
        **strategy: Any,
    ) -> npt.NDArray[np.uint64]:
        """Adds portfolios from CSR columns; returns their ids.

        id: one per portfolio (default: the next free integers).
        Strategy settings, keywords, each a scalar or one value per portfolio
        (defaults as in `_strategy_columns`):
        trigger: "threshold" (rebalance when a weight is off its target by
            `threshold`: a fraction, 0.05 = 5 points when `threshold_kind` is
            "absolute", 5 % of the target when "relative") or "calendar"
            (check every `interval_ms`, first at `next_check_ms` (default 0, so
            the schedule keeps the phase of the Unix epoch), rebalancing only
            if the deviation reaches `gate`, if given).
        cooldown_ms: least time between two rebalances (default 5 minutes).
        destination: "target", "band_edge" or "inner_band(k)".
        fee_rate: one fee rate for the portfolio's orders (default: each
            market's taker fee).
        cash_target: target weight of the quote asset itself.
        Nothing is added unless every portfolio passes every check.
        """
        offsets = _int_column(offsets, np.int64, "offsets")
        n = len(offsets) - 1
        if n < 0:
            raise ConfigError("offsets: needs n + 1 entries (got none)", field="offsets", value=[])
        asset = _int_column(asset, np.int32, "asset")
        target = np.ascontiguousarray(target, dtype=np.float64)
        amount = words(amount, "amount")
        cash = words(cash, "cash")
        rows = len(asset)
        for name, length, wanted in (
            ("target", len(target), rows),
            ("amount", len(amount), rows),
            ("cash", len(cash), n),
        ):
            if length != wanted:
                raise ConfigError(f"{name}: {length} values, expected {wanted}", field=name, value=length)
        if offsets[0] != 0 or offsets[-1] != rows:
            raise ConfigError(
                f"offsets: must run from 0 to the number of holdings {rows} (got {offsets[0]}..{offsets[-1]})",
                field="offsets",
                value=[int(offsets[0]), int(offsets[-1])],
            )
        steps = np.diff(offsets)
        if (steps <= 0).any():
            i = int(np.argmax(steps <= 0)) + 1
            raise ConfigError(
                f"offsets[{i}]: must increase (every portfolio holds at least one asset; got {offsets[i - 1]} then {offsets[i]})",
                field=f"offsets[{i}]",
                value=int(offsets[i]),
            )

        ids = self._new_ids(n) if id is None else _int_column(id, np.uint64, "id", n)
        columns = self._strategy_columns(n, **strategy)
        columns.update(
            id=ids,
            start=offsets[:-1],
            stop=offsets[1:],
            cash=cash,
            active=np.ones(n, bool),
            last_rebalance_ms=np.full(n, NEVER, np.int64),
            locked=np.zeros(n, bool),
            epoch=np.zeros(n, np.uint32),
            alive=np.ones(n, bool),
            paused=np.zeros(n, bool),
        )
        self._append(columns, {"asset": asset, "amount": amount, "target": target})
        return ids

    def _append(self, columns: dict[str, np.ndarray], holdings: dict[str, np.ndarray]) -> None:
        """Checks new portfolios (rows relative to their own holdings) as a
        whole, then appends them; nothing is written if any check fails."""
        self._check_new_ids(columns["id"])
        columns["active"] = columns["alive"] & ~columns["paused"]
        _with_floats(columns, holdings)
        _rebal.validate_book({**columns, **holdings}, self._markets)
        base = self._holdings.length
        columns["start"] = columns["start"] + base
        columns["stop"] = columns["stop"] + base
        self._holdings.append(holdings, len(holdings["asset"]))
        self._portfolios.append(columns, len(columns["id"]))
        self._index = None
        if len(columns["id"]):
            self.next_id = max(self.next_id, int(columns["id"].max()) + 1)

    def add(
        self,
        holdings: Mapping[Any, Any],
        targets: Mapping[Any, float],
        cash: Any = 0,
        **strategy: Any,
    ) -> int:
        """Adds one portfolio: `holdings` and `targets` map an asset (its index
        into `markets` or its base symbol) to an amount and a weight. Returns
        its id. Strategy settings as in `add_columns`."""
        assets = [self._asset_index(a) for a in targets]
        amounts = {self._asset_index(a): v for a, v in holdings.items()}
        unknown = set(amounts) - set(assets)
        if unknown:
            a = sorted(unknown)[0]
            raise ConfigError(f"holdings[{a}]: not among the targets", field=f"holdings[{a}]", value=a)
        ids = self.add_columns(
            [0, len(assets)],
            assets,
            [amounts.get(a, 0) for a in assets],
            [float(w) for w in targets.values()],
            [cash],
            **strategy,
        )
        return int(ids[0])

    def update(
        self,
        id: int,
        *,
        holdings: Mapping[Any, Any] | None = None,
        targets: Mapping[Any, float] | None = None,
        cash: Any = None,
        **strategy: Any,
    ) -> None:
        """Changes one portfolio: its holdings (amounts of the assets it
        holds), its targets (a new composition: every asset and weight), its
        cash or strategy settings. Checked as a whole before anything is written."""
        slot = self.slot(id)
        old = self._portfolio_columns(slot)
        rows = slice(int(old["start"][0]), int(old["stop"][0]))
        assets = self._holdings["asset"][rows].copy()
        amount = self._holdings["amount"][rows].copy()
        target = self._holdings["target"][rows].copy()
        if targets is not None:
            new_assets = np.array([self._asset_index(a) for a in targets], np.int32)
            kept = {int(a): amount[k] for k, a in enumerate(assets)}
            amount = np.array([kept.get(int(a), [0, 0]) for a in new_assets], np.int64).reshape(-1, 2)
            assets, target = new_assets, np.array([float(w) for w in targets.values()], np.float64)
        if holdings is not None:
            position = {int(a): k for k, a in enumerate(assets)}
            for a, value in holdings.items():
                index = self._asset_index(a)
                if index not in position:
                    raise ConfigError(f"holdings[{a}]: not among the portfolio's assets", field=f"holdings[{a}]", value=a)
                amount[position[index]] = words([value], f"holdings[{a}]")[0]
        if cash is not None:
            old["cash"] = words([cash], "cash")
        if strategy:
            merged = self._strategy_settings(slot)
            if "trigger" in strategy:  # a new trigger brings its own threshold or gate
                merged.pop("threshold")
                merged.pop("gate")
            merged.update(strategy)
            old.update(self._strategy_columns(1, **merged))
        count = len(assets)
        old["start"], old["stop"] = np.array([0]), np.array([count])
        holdings_columns = {"asset": assets, "amount": amount, "target": target}
        _with_floats(old, holdings_columns)
        _rebal.validate_book({**old, **holdings_columns}, self._markets)

        if count == rows.stop - rows.start:
            start = rows.start
            for name, values in holdings_columns.items():
                self._holdings[name][start : start + count] = values
        else:
            start = self._holdings.length
            self._holdings.append(holdings_columns, count)
            self._unused_rows += rows.stop - rows.start
        old["start"], old["stop"] = np.array([start]), np.array([start + count])
        for name in PORTFOLIO_COLUMNS:
            self._portfolios[name][slot] = old[name][0]
        self._maybe_compact()

    def remove(self, ids: int | Iterable[int]) -> None:
        """Removes portfolios (their slots and rows are reclaimed later)."""
        slots = self.slots(ids)
        p = self._portfolios
        p["alive"][slots] = False
        p["active"][slots] = False
        self._unused_rows += int((p["stop"][slots] - p["start"][slots]).sum())
        self._index = None
        self._maybe_compact()

    def pause(self, ids: int | Iterable[int]) -> None:
        """Paused portfolios are valued by no tick and planned by none."""
        self.pause_slots(self.slots(ids), True)

    def resume(self, ids: int | Iterable[int]) -> None:
        self.pause_slots(self.slots(ids), False)

    def pause_slots(self, slots: npt.NDArray[np.int64], paused: bool) -> None:
        """`pause` / `resume` by slot (vectorized, for hosts that keep slots)."""
        self._portfolios["paused"][slots] = paused
        self._portfolios["active"][slots] = self._portfolios["alive"][slots] & (not paused)

    def lock_slots(self, slots: npt.NDArray[np.int64], locked: bool) -> None:
        """Orders out (True) or done (False), by slot."""
        self._portfolios["locked"][slots] = locked

    def add_cash(self, slots: npt.NDArray[np.int64], amounts: npt.NDArray[np.int64]) -> None:
        """Adds exact amounts ((m, 2) words, signed) to the cash of `slots`,
        all or nothing: a result below zero is an AmountError and changes nothing."""
        p, slots = self._portfolios, np.ascontiguousarray(slots, dtype=np.int64)
        _rebal.add_amounts(p["cash"], slots, np.ascontiguousarray(amounts, dtype=np.int64).reshape(-1, 2), "cash")
        p["cash_float"][slots] = _rebal.amount_floats(np.ascontiguousarray(p["cash"][slots]))

    def set_exact(self, slots: npt.NDArray[np.int64], cash: npt.NDArray[np.int64], rows: npt.NDArray[np.int64], amounts: npt.NDArray[np.int64]) -> None:
        """Overwrites the cash of `slots` and the amounts of holdings `rows`
        with exact words the caller has checked (fills, returns)."""
        p, h = self._portfolios, self._holdings
        p["cash"][slots] = cash
        p["cash_float"][slots] = _rebal.amount_floats(np.ascontiguousarray(cash, dtype=np.int64).reshape(-1, 2))
        h["amount"][rows] = amounts
        h["amount_float"][rows] = _rebal.amount_floats(np.ascontiguousarray(amounts, dtype=np.int64).reshape(-1, 2))

    def unlock(self, ids: int | Iterable[int]) -> None:
        """Orders out are done (filled, rejected or cancelled): the next tick may plan again."""
        self._portfolios["locked"][self.slots(ids)] = False

    def compact(self) -> None:
        """Drops removed portfolios and unused rows; slots may move, ids stay."""
        p = self._portfolios
        keep = np.flatnonzero(p["alive"])
        start, stop = p["start"][keep], p["stop"][keep]
        counts = stop - start
        new_stop = np.cumsum(counts)
        new_start = new_stop - counts
        rows = np.repeat(start - new_start, counts) + np.arange(int(new_stop[-1]) if len(keep) else 0)
        self._holdings.keep(rows)
        p.keep(keep)
        p["start"][:] = new_start
        p["stop"][:] = new_stop
        self._unused_rows = 0
        self._index = None
        if self._on_compact is not None:
            self._on_compact(keep)

    def _maybe_compact(self) -> None:
        dead = self._portfolios.length - int(self._portfolios["alive"].sum())
        if self._unused_rows > self._holdings.length // 2 or dead > self._portfolios.length // 2:
            self.compact()

    # ------------------------------------------------------------------ the tick

    def tick(self, prices: npt.ArrayLike, now_ms: int, *, commit: bool = True) -> OrderBatch:
        """Checks every portfolio at `prices` (float64, one per market) and
        time `now_ms` (epoch milliseconds) and plans the triggered ones, in
        parallel in Rust with the GIL released.

        With `commit` (the default) a portfolio that gets orders is locked
        until `unlock`, its epoch advances (so its client ids are new) and its
        cooldown starts; due calendar checks move to their next slot. With
        ``commit=False`` nothing in the Book changes (a dry run)."""
        prices, now_ms = _tick_inputs(prices, now_ms)
        result = _rebal.tick(self._columns(), self._markets, prices, now_ms, commit)
        return OrderBatch(result, self._markets)

    def scan(self, prices: npt.ArrayLike, now_ms: int) -> Scan:
        """The first half of `tick`: every portfolio's value, deviations and
        status (REBALANCE: triggered and free to plan), changing nothing. A
        host decides between the halves — sets a status back to IDLE, picks
        portfolios to invest new money or to exit — then calls `plan`."""
        prices, now_ms = _tick_inputs(prices, now_ms)
        return Scan(_rebal.scan(self._columns(), self._markets, prices, now_ms), prices, now_ms)

    def plan(
        self,
        scan: Scan,
        *,
        invest: npt.ArrayLike | None = None,
        exit: npt.ArrayLike | None = None,
        commit: bool = True,
    ) -> OrderBatch:
        """The second half of `tick`, at the scan's prices and time: plans
        every portfolio whose status is REBALANCE, buys the underweight assets
        with the free cash of the slots in `invest` (never selling), and sells
        every holding of the slots in `exit`, all in one parallel pass. The
        orders carry their `purpose`; commits as `tick` does."""
        action = (scan.status == Status.REBALANCE.value).view(np.uint8)  # a fresh bool array: its bytes are 0 and 1
        for slots, code in ((invest, ACTION_INVEST), (exit, ACTION_EXIT)):
            if slots is not None:
                action[_int_column(slots, np.int64, "slots")] = code
        result = _rebal.plan(self._columns(), self._markets, scan.prices, scan.now_ms, action, scan.status, commit)
        result.update(scan.columns)
        return OrderBatch(result, self._markets)

    def _columns(self) -> dict[str, np.ndarray]:
        """Every column's live view, for the Rust calls (made again only once
        a table changed length or storage; not to be changed by the caller)."""
        p, h = self._portfolios, self._holdings
        merged = self._merged
        if merged is None or merged[0] != p.version or merged[1] != h.version:
            merged = self._merged = (p.version, h.version, {**p.views(), **h.views()})
        return merged[2]

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        """Portfolios in the Book (paused ones included, removed ones not)."""
        return int(self._portfolios["alive"].sum())

    @property
    def markets(self) -> list[Market]:
        return list(self._markets)

    def set_markets(self, markets: Sequence[Market]) -> None:
        """New rules for the same markets (a step change, a suspension or a
        delisting: `active=False`), index for index. Checked against every
        portfolio before it is used."""
        markets = list(markets)
        old = [(m.base, m.quote) for m in self._markets]
        new = [(m.base, m.quote) for m in markets]
        if new != old:
            raise ConfigError(f"markets: must be the same assets in the same order ({old} → {new})", field="markets", value=new)
        _rebal.validate_book({**self._portfolios.views(), **self._holdings.views()}, markets)
        self._markets = markets

    @property
    def ids(self) -> npt.NDArray[np.uint64]:
        """Ids by slot (removed slots included until compaction)."""
        return _read_only(self._portfolios["id"])

    def column(self, name: str) -> np.ndarray:
        """One per-portfolio column, read-only (cheaper than `columns()` for one)."""
        return _read_only(self._portfolios[name])

    def columns(self) -> dict[str, np.ndarray]:
        """Read-only numpy views of every per-portfolio column, by slot."""
        return {name: _read_only(view) for name, view in self._portfolios.views().items()}

    def holding_columns(self) -> dict[str, np.ndarray]:
        """Read-only numpy views of the holdings rows (asset, amount words, target)."""
        return {name: _read_only(view) for name, view in self._holdings.views().items()}

    def slots(self, ids: int | Iterable[int]) -> npt.NDArray[np.int64]:
        """The slots of live portfolios by id; an unknown id is a ConfigError."""
        wanted = np.atleast_1d(np.asarray(list(ids) if not isinstance(ids, (int, np.integer)) else ids, dtype=np.uint64))
        if self._index is None:
            live = np.flatnonzero(self._portfolios["alive"])
            order = np.argsort(self._portfolios["id"][live], kind="stable")
            self._index = (self._portfolios["id"][live][order], live[order])
        sorted_ids, slots = self._index
        at = np.searchsorted(sorted_ids, wanted)
        found = at < len(sorted_ids)
        found[found] = sorted_ids[at[found]] == wanted[found]
        if not found.all():
            missing = int(wanted[np.argmin(found)])
            raise ConfigError(f"id: no portfolio {missing} in the Book", field="id", value=missing)
        return slots[at]

    def slot(self, id: int) -> int:
        return int(self.slots(id)[0])

    def portfolio(self, id: int) -> dict[str, Any]:
        """One portfolio as plain values (exact amounts as Decimal), for people and tests."""
        slot = self.slot(id)
        p = self._portfolios
        rows = slice(int(p["start"][slot]), int(p["stop"][slot]))
        names = [self._markets[a].base for a in self._holdings["asset"][rows]]
        settings = self._strategy_settings(slot)
        return {
            "id": int(p["id"][slot]),
            "cash": decimals(p["cash"][slot : slot + 1])[0],
            "holdings": dict(zip(names, decimals(self._holdings["amount"][rows]))),
            "targets": dict(zip(names, (float(t) for t in self._holdings["target"][rows]))),
            **settings,
            "active": bool(p["active"][slot]),
            "locked": bool(p["locked"][slot]),
            "epoch": int(p["epoch"][slot]),
            "last_rebalance_ms": None if p["last_rebalance_ms"][slot] == NEVER else int(p["last_rebalance_ms"][slot]),
        }

    # ------------------------------------------------------------------ Arrow

    def to_arrow(self) -> Any:
        """The live portfolios as a pyarrow Table, one row each: every
        column, exact amounts as decimal128(38, 18) (the same bytes, no
        rounding), holdings as a list of structs."""
        from rebal.arrow import book_to_arrow

        return book_to_arrow(self)

    @classmethod
    def from_arrow(cls, table: Any, markets: Sequence[Market]) -> Book:
        """A Book from a table written by `to_arrow` (state included)."""
        from rebal.arrow import book_from_arrow

        return book_from_arrow(cls(markets), table)

    # ------------------------------------------------------------------ helpers

    def _new_ids(self, n: int) -> npt.NDArray[np.uint64]:
        return np.arange(self.next_id, self.next_id + n, dtype=np.uint64)

    def _check_new_ids(self, ids: npt.NDArray[np.uint64]) -> None:
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            twice = int(unique[np.argmax(counts > 1)])
            raise ConfigError(f"id: portfolio {twice} given twice", field="id", value=twice)
        live = self._portfolios["id"][self._portfolios["alive"]]
        taken = np.isin(ids, live)
        if taken.any():
            clash = int(ids[np.argmax(taken)])
            raise ConfigError(f"id: portfolio {clash} is already in the Book", field="id", value=clash)

    def _asset_index(self, asset: int | str) -> int:
        if isinstance(asset, (int, np.integer)) and not isinstance(asset, bool):
            return int(asset)
        for index, market in enumerate(self._markets):
            if market.base == asset:
                return index
        raise ConfigError(f"assets[{asset}]: unknown asset, no market for it", field=f"assets[{asset}]", value=asset)

    def _portfolio_columns(self, slot: int) -> dict[str, np.ndarray]:
        return {name: self._portfolios[name][slot : slot + 1].copy() for name in PORTFOLIO_COLUMNS}

    def _strategy_settings(self, slot: int) -> dict[str, Any]:
        """The keyword settings of `add_columns` that reproduce a slot's strategy."""
        p = self._portfolios
        trigger = _name_of(TRIGGERS, p["trigger"][slot])
        destination = _name_of(DESTINATIONS, p["destination"][slot])
        if destination == "inner_band":
            destination = f"inner_band({float(p['inner_k'][slot])!r})"
        width = float(p["threshold"][slot])
        fee = float(p["fee_rate"][slot])
        return {
            "trigger": trigger,
            "threshold": width if trigger == "threshold" else None,
            "threshold_kind": _name_of(THRESHOLD_KINDS, p["threshold_kind"][slot]),
            "gate": (width or None) if trigger == "calendar" else None,
            "interval_ms": int(p["interval_ms"][slot]),
            "cooldown_ms": int(p["cooldown_ms"][slot]),
            "destination": destination,
            "fee_rate": None if np.isnan(fee) else fee,
            "cash_target": float(p["cash_target"][slot]),
            "next_check_ms": int(p["next_check_ms"][slot]),
        }

    def _strategy_columns(
        self,
        n: int,
        *,
        trigger: str | Sequence[str] = "threshold",
        threshold: npt.ArrayLike | None = None,
        threshold_kind: str | Sequence[str] = "absolute",
        gate: npt.ArrayLike | None = None,
        interval_ms: npt.ArrayLike = 0,
        cooldown_ms: npt.ArrayLike = DEFAULT_COOLDOWN_MS,
        destination: str | Sequence[str] = "target",
        fee_rate: npt.ArrayLike | None = None,
        cash_target: npt.ArrayLike = 0.0,
        next_check_ms: npt.ArrayLike = 0,
    ) -> dict[str, np.ndarray]:
        """Strategy settings broadcast to n portfolios, as column arrays.
        `trigger`, `threshold_kind` and `destination` are a name or one per
        portfolio; with mixed triggers, `threshold` applies to the threshold
        ones (NaN for the others) and `gate` to the calendar ones."""
        trigger_code = _codes(TRIGGERS, trigger, "trigger", n)
        is_threshold = trigger_code == TRIGGERS["threshold"]
        width = np.zeros(n, np.float64)
        if is_threshold.any():
            if threshold is None:
                raise ConfigError("threshold: a threshold trigger needs a threshold (e.g. 0.05)", field="threshold", value=None)
            width[is_threshold] = _broadcast(threshold, np.float64, n, "threshold")[is_threshold]
        if not is_threshold.all():
            if threshold is not None and isinstance(trigger, str):
                raise ConfigError("threshold: a calendar trigger takes a gate, not a threshold", field="threshold", value=threshold)
            gates = _broadcast(np.nan if gate is None else gate, np.float64, n, "gate")
            width[~is_threshold] = np.nan_to_num(gates[~is_threshold], nan=0.0)
        names = np.broadcast_to(np.asarray(destination, dtype=object), (n,))
        parsed = {d: _destination(d) for d in set(names.tolist())}
        return {
            "trigger": trigger_code,
            "threshold_kind": _codes(THRESHOLD_KINDS, threshold_kind, "threshold_kind", n),
            "threshold": width,
            "interval_ms": _broadcast(interval_ms, np.int64, n, "interval_ms"),
            "cooldown_ms": _broadcast(cooldown_ms, np.int64, n, "cooldown_ms"),
            "destination": np.array([DESTINATIONS[parsed[d][0]] for d in names.tolist()], np.uint8),
            "inner_k": np.array([np.nan if parsed[d][1] is None else parsed[d][1] for d in names.tolist()], np.float64),
            "fee_rate": _broadcast(np.nan if fee_rate is None else fee_rate, np.float64, n, "fee_rate"),
            "cash_target": _broadcast(cash_target, np.float64, n, "cash_target"),
            "next_check_ms": _broadcast(next_check_ms, np.int64, n, "next_check_ms"),
        }


ACTION_INVEST, ACTION_EXIT = 2, 3  # codes of `_rebal.plan` (1 = rebalance)


def _tick_inputs(prices: npt.ArrayLike, now_ms: Any) -> tuple[npt.NDArray[np.float64], int]:
    try:
        array = np.ascontiguousarray(prices, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise PriceError(f"prices: not an array of numbers ({e})", field="prices", value=repr(prices)[:80]) from e
    if isinstance(now_ms, bool) or not isinstance(now_ms, (int, np.integer)):
        raise ConfigError(f"now_ms: must be an integer of epoch milliseconds (got {now_ms!r})", field="now_ms", value=now_ms)
    if array.ndim != 1:
        raise PriceError(f"prices: must be one-dimensional (got shape {array.shape})", field="prices", value=array.shape)
    return array, int(now_ms)


def _with_floats(portfolios: dict[str, np.ndarray], holdings: dict[str, np.ndarray]) -> None:
    """Sets the float copies of the exact cash and amounts (derived, never given)."""
    portfolios["cash_float"] = _rebal.amount_floats(np.ascontiguousarray(portfolios["cash"]))
    holdings["amount_float"] = _rebal.amount_floats(np.ascontiguousarray(holdings["amount"]))


def _read_only(view: np.ndarray) -> np.ndarray:
    out = view.view()
    out.flags.writeable = False
    return out


def _code(codes: Mapping[str, int], value: str, field: str) -> int:
    if value not in codes:
        raise ConfigError(f"{field}: must be one of {sorted(codes)} (got {value!r})", field=field, value=value)
    return codes[value]


def _codes(codes: Mapping[str, int], values: str | Sequence[str], field: str, n: int) -> npt.NDArray[np.uint8]:
    """A name, or one per portfolio, as codes."""
    if isinstance(values, str):
        return np.full(n, _code(codes, values, field), np.uint8)
    names = np.asarray(values, dtype=object)
    if names.shape != (n,):
        raise ConfigError(f"{field}: expected a name or one per portfolio ({n})", field=field, value=names.shape)
    return np.array([_code(codes, v, field) for v in names.tolist()], np.uint8)


def _name_of(codes: Mapping[str, int], code: int) -> str:
    return next(name for name, c in codes.items() if c == int(code))


def _destination(destination: str) -> tuple[str, float | None]:
    match = _INNER_BAND.match(destination.strip()) if isinstance(destination, str) else None
    if match:
        return "inner_band", float(match.group(1))
    if destination in ("target", "band_edge"):
        return destination, None
    raise ConfigError(
        f"destination: must be 'target', 'band_edge' or 'inner_band(k)' (got {destination!r})",
        field="destination",
        value=destination,
    )


def _broadcast(value: npt.ArrayLike, dtype: Any, n: int, field: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=dtype)
        return np.ascontiguousarray(np.broadcast_to(array, (n,)))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{field}: expected a number or one per portfolio ({n}) ({e})", field=field, value=value) from e


def _int_column(values: npt.ArrayLike, dtype: Any, field: str, n: int | None = None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ConfigError(f"{field}: must be a one-dimensional integer array (got {array.dtype}, shape {array.shape})", field=field, value=str(array.dtype))
    if n is not None and len(array) != n:
        raise ConfigError(f"{field}: {len(array)} values, expected {n}", field=field, value=len(array))
    info = np.iinfo(dtype)
    if array.size and (array.min() < info.min or array.max() > info.max):
        bad = array[(array < info.min) | (array > info.max)][0]
        raise ConfigError(f"{field}: {bad} is out of range for {np.dtype(dtype).name}", field=field, value=int(bad))
    return np.ascontiguousarray(array, dtype=dtype)
