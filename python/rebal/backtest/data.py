"""Price data for backtests: loaders, alignment and a synthetic default.

Every loader ends in `align`, which turns per-asset series into one
`PriceData`: a regular time grid over the range all assets share, one close
column per asset. A tick an asset lacks inside that range is forward-filled
from its previous close and counted in `PriceData.filled` (and marked in
`PriceData.filled_mask`); nothing is interpolated and nothing is dropped
silently.

Sources:

- `load_cryptodatadownload`: CryptoDataDownload CSVs (`Binance_BTCUSDT_d.csv`:
  a source line, a header, newest row first).
- `load_table`: a CSV or Parquet table, a time column and one close column
  per asset.
- `load_ccxt`: an exchange's OHLCV through ccxt (optional extra
  `rebal[ccxt]`), cached on disk as CSV so a repeated request needs no network.
- `synthetic`: a seeded, correlated random walk; the default when no data is given.
- `load`: the dispatcher the CLI uses.

numpy is the only hard dependency here; pyarrow (Parquet) and ccxt are
imported only when those formats are used.
"""

from __future__ import annotations

import csv
import importlib
import math
import os
import re
import tempfile
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rebal.exceptions import ConfigError, PriceError

__all__ = [
    "PriceData",
    "day",
    "align",
    "load_cryptodatadownload",
    "load_table",
    "load_ccxt",
    "synthetic",
    "load",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_MAX_GRID = 100_000_000

Times = npt.NDArray[np.int64]
Closes = npt.NDArray[np.float64]
StrPath = str | os.PathLike[str]


# --------------------------------------------------------------------------- PriceData



def day(ms: int) -> str:
    """A UTC date of epoch milliseconds, YYYY-MM-DD."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")

@dataclass(frozen=True, kw_only=True, eq=False)
class PriceData:
    """Close prices of some assets on one regular UTC time grid.

    `times_ms` is strictly ascending with constant spacing `interval_ms`;
    `close[t, a]` is asset `assets[a]`'s close at `times_ms[t]`, finite and
    positive. `filled_mask[t, a]` is True where that close was carried
    forward over a gap in the source; `filled` counts those ticks per asset.
    The arrays are read-only copies.
    """

    times_ms: Times
    assets: list[str]
    close: Closes
    quote: str = "USDT"
    filled: dict[str, int]
    source: str = ""
    interval_ms: int
    filled_mask: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros((0, 0), dtype=np.bool_), repr=False)

    def __post_init__(self) -> None:
        times = np.array(self.times_ms, dtype=np.int64, copy=True)
        close = np.array(self.close, dtype=np.float64, copy=True, order="C")  # rows are ticks: contiguous
        assets = list(self.assets)
        if not isinstance(self.interval_ms, int) or isinstance(self.interval_ms, bool) or self.interval_ms <= 0:
            raise ConfigError(f"interval_ms: must be a positive integer (got {self.interval_ms!r})", field="interval_ms", value=self.interval_ms)
        if not assets:
            raise ConfigError("assets: at least one asset is needed", field="assets", value=assets)
        for a in assets:
            if not isinstance(a, str) or not a:
                raise ConfigError(f"assets: names must be non-empty strings (got {a!r})", field="assets", value=a)
        if len(set(assets)) != len(assets):
            dup = next(a for a in assets if assets.count(a) > 1)
            raise ConfigError(f"assets[{dup}]: listed twice", field=f"assets[{dup}]", value=dup)
        if times.ndim != 1 or times.size == 0:
            raise ConfigError(f"times_ms: must be a non-empty 1-D array (got shape {times.shape})", field="times_ms", value=times.shape)
        if close.shape != (times.size, len(assets)):
            raise ConfigError(
                f"close: shape must be (ticks, assets) = {(times.size, len(assets))} (got {close.shape})", field="close", value=close.shape
            )
        steps = np.diff(times)
        if steps.size and not np.all(steps == self.interval_ms):
            i = int(np.flatnonzero(steps != self.interval_ms)[0])
            raise ConfigError(
                f"times_ms: must step by interval_ms={self.interval_ms} (at {_iso(int(times[i]))} the step is {int(steps[i])})",
                field="times_ms",
                value=int(times[i + 1]),
            )
        for j, a in enumerate(assets):
            _check_closes(a, times, close[:, j])
        mask = np.array(self.filled_mask, dtype=np.bool_, copy=True)
        if mask.shape == (0, 0):  # not given: nothing was filled
            mask = np.zeros(close.shape, dtype=np.bool_)
        if mask.shape != close.shape:
            raise ConfigError(f"filled_mask: shape must be {close.shape} (got {mask.shape})", field="filled_mask", value=mask.shape)
        counts = {a: int(mask[:, j].sum()) for j, a in enumerate(assets)}
        filled = {a: int(n) for a, n in dict(self.filled).items()}
        if set(filled) != set(assets) or any(filled[a] != counts[a] for a in assets):
            raise ConfigError(
                f"filled: must count the filled ticks of each asset, {counts} (got {filled})", field="filled", value=filled
            )
        for arr in (times, close, mask):
            arr.setflags(write=False)
        object.__setattr__(self, "times_ms", times)
        object.__setattr__(self, "close", close)
        object.__setattr__(self, "assets", assets)
        object.__setattr__(self, "filled", {a: counts[a] for a in assets})
        object.__setattr__(self, "filled_mask", mask)

    def __len__(self) -> int:
        return int(self.times_ms.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PriceData):
            return NotImplemented
        return (
            self.assets == other.assets
            and self.quote == other.quote
            and self.interval_ms == other.interval_ms
            and self.source == other.source
            and self.filled == other.filled
            and np.array_equal(self.times_ms, other.times_ms)
            and np.array_equal(self.close, other.close)
            and np.array_equal(self.filled_mask, other.filled_mask)
        )

    def __repr__(self) -> str:
        first, last = int(self.times_ms[0]), int(self.times_ms[-1])
        show = _iso if self.interval_ms % DAY_MS == 0 else _iso_time
        gaps = {a: n for a, n in self.filled.items() if n}
        return (
            f"PriceData({','.join(self.assets)}/{self.quote}, {len(self)} ticks of {_span(self.interval_ms)}, "
            f"{show(first)}..{show(last)}, filled={gaps or 0}, source={self.source!r})"
        )

    def between(self, start_ms: int | None, end_ms: int | None) -> PriceData:
        """The ticks with `start_ms <= time <= end_ms` (None: open on that side)."""
        lo = 0 if start_ms is None else int(np.searchsorted(self.times_ms, start_ms, side="left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(self.times_ms, end_ms, side="right"))
        if hi <= lo:
            first, last = _iso(int(self.times_ms[0])), _iso(int(self.times_ms[-1]))
            what = "start_ms" if start_ms is not None and (end_ms is None or lo >= len(self)) else "end_ms"
            raise ConfigError(
                f"{what}: no ticks between {_iso_or_open(start_ms)} and {_iso_or_open(end_ms)} (data covers {first}..{last})",
                field=what,
                value=start_ms if what == "start_ms" else end_ms,
            )
        mask = self.filled_mask[lo:hi]
        return PriceData(
            times_ms=self.times_ms[lo:hi],
            assets=list(self.assets),
            close=self.close[lo:hi],
            quote=self.quote,
            filled={a: int(mask[:, j].sum()) for j, a in enumerate(self.assets)},
            source=self.source,
            interval_ms=self.interval_ms,
            filled_mask=mask,
        )

    def select(self, assets: Sequence[str]) -> PriceData:
        """Those assets only, in that order."""
        names = _asset_list(assets)
        cols = []
        for a in names:
            if a not in self.assets:
                raise ConfigError(f"assets[{a}]: not in the data (it has {', '.join(self.assets)})", field=f"assets[{a}]", value=a)
            cols.append(self.assets.index(a))
        return PriceData(
            times_ms=self.times_ms,
            assets=names,
            close=self.close[:, cols],
            quote=self.quote,
            filled={a: self.filled[a] for a in names},
            source=self.source,
            interval_ms=self.interval_ms,
            filled_mask=self.filled_mask[:, cols],
        )


# --------------------------------------------------------------------------- align


def align(
    series: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
    *,
    quote: str = "USDT",
    interval_ms: int | None = None,
    source: str = "",
) -> PriceData:
    """Per-asset `(times_ms, closes)`, in any order, onto one regular grid.

    The grid runs from the latest first tick to the earliest last tick, at
    `interval_ms` (default: the most common spacing in the data). A grid tick
    an asset has no close for is forward-filled from its previous close and
    counted in `filled`. Refused, naming the asset: an empty series, a close
    that is not finite and positive (PriceError), one timestamp with two
    different closes, a timestamp off the grid, no common range.
    """
    if not series:
        raise ConfigError("data: no assets to align", field="data", value=[])
    _check_quote(quote)
    clean: dict[str, tuple[Times, Closes]] = {}
    for asset, pair in series.items():
        if not isinstance(asset, str) or not asset:
            raise ConfigError(f"assets: names must be non-empty strings (got {asset!r})", field="assets", value=asset)
        clean[asset] = _clean_series(asset, pair)

    if interval_ms is None:
        steps = np.concatenate([np.diff(t) for t, _ in clean.values()])
        if steps.size == 0:
            raise ConfigError("interval_ms: every series has one tick; pass interval_ms", field="interval_ms", value=None)
        values, counts = np.unique(steps, return_counts=True)
        interval_ms = int(values[int(np.argmax(counts))])  # ties: the smallest spacing
    elif not isinstance(interval_ms, int) or isinstance(interval_ms, bool) or interval_ms <= 0:
        raise ConfigError(f"interval_ms: must be a positive integer (got {interval_ms!r})", field="interval_ms", value=interval_ms)

    starter = max(clean, key=lambda a: int(clean[a][0][0]))
    ender = min(clean, key=lambda a: int(clean[a][0][-1]))
    start, end = int(clean[starter][0][0]), int(clean[ender][0][-1])
    if start > end:
        raise ConfigError(
            f"data[{starter}]: no common range: it starts {_iso(start)}, after data[{ender}] ends {_iso(end)}",
            field=f"data[{starter}]",
            value=start,
        )
    n = (end - start) // interval_ms + 1
    if n > _MAX_GRID:
        raise ConfigError(
            f"interval_ms: {interval_ms} ms over {_iso(start)}..{_iso(end)} makes {n} ticks (at most {_MAX_GRID})",
            field="interval_ms",
            value=interval_ms,
        )
    grid = start + interval_ms * np.arange(n, dtype=np.int64)

    close = np.empty((n, len(clean)), dtype=np.float64)
    mask = np.empty((n, len(clean)), dtype=np.bool_)
    for j, (asset, (t, c)) in enumerate(clean.items()):
        inside = t[(t >= start) & (t <= end)]
        off = inside[(inside - start) % interval_ms != 0]
        if off.size:
            raise ConfigError(
                f"data[{asset}]: tick at {_iso(int(off[0]))} is off the {_span(interval_ms)} grid that starts {_iso(start)}",
                field=f"data[{asset}]",
                value=int(off[0]),
            )
        idx = np.searchsorted(t, grid, side="right") - 1  # >= 0: every series starts at or before `start`
        close[:, j] = c[idx]
        mask[:, j] = t[idx] != grid

    assets = list(clean)
    return PriceData(
        times_ms=grid,
        assets=assets,
        close=close,
        quote=quote,
        filled={a: int(mask[:, j].sum()) for j, a in enumerate(assets)},
        source=source,
        interval_ms=interval_ms,
        filled_mask=mask,
    )


def _clean_series(asset: str, pair: tuple[npt.ArrayLike, npt.ArrayLike]) -> tuple[Times, Closes]:
    name = f"data[{asset}]"
    try:
        raw_t, raw_c = pair
        t = np.asarray(raw_t)
        c = np.asarray(raw_c, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name}: expected (times_ms, closes) arrays ({e})", field=name, value=None) from e
    if t.ndim != 1 or c.ndim != 1 or t.size != c.size:
        raise ConfigError(f"{name}: times and closes must be 1-D of one length (got {t.shape} and {c.shape})", field=name, value=(t.shape, c.shape))
    if t.size == 0:
        raise ConfigError(f"{name}: no prices", field=name, value=0)
    if t.dtype.kind == "f":
        if not np.all(np.isfinite(t)) or not np.all(t == np.round(t)):
            bad = t[~np.isfinite(t) | (t != np.round(t))][0]
            raise ConfigError(f"{name}: timestamps must be whole epoch milliseconds (got {bad})", field=name, value=float(bad))
    elif t.dtype.kind not in "iu":
        raise ConfigError(f"{name}: timestamps must be integer epoch milliseconds (got dtype {t.dtype})", field=name, value=str(t.dtype))
    t = t.astype(np.int64)
    order = np.argsort(t, kind="stable")
    t, c = t[order], c[order]
    _check_closes(asset, t, c)
    same = np.flatnonzero(t[1:] == t[:-1])
    if same.size:
        differ = same[c[same] != c[same + 1]]
        if differ.size:
            i = int(differ[0])
            raise ConfigError(
                f"{name}: two different closes at {_iso(int(t[i]))} ({c[i]} and {c[i + 1]})", field=name, value=int(t[i])
            )
        keep = np.ones(t.size, dtype=np.bool_)
        keep[same + 1] = False
        t, c = t[keep], c[keep]
    return t, c


def _check_closes(asset: str, t: Times, c: Closes) -> None:
    bad = ~np.isfinite(c) | (c <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PriceError(
            f"data[{asset}]: close at {_iso(int(t[i]))} must be finite and positive (got {c[i]})", field=f"data[{asset}]", value=float(c[i])
        )


# --------------------------------------------------------------------------- CryptoDataDownload

_CDD_NAME = re.compile(r"^(?P<exchange>[A-Za-z0-9]+)_(?P<pair>[A-Za-z0-9]+)_(?P<tf>d|minute|\d+[mhd])\.csv$", re.IGNORECASE)
_CDD_TF = {"d": DAY_MS, "minute": MINUTE_MS}
_TF_PREFERENCE = ("d", "1d", "4h", "1h", "30m", "15m", "5m", "minute", "1m")


def load_cryptodatadownload(
    path: StrPath | Sequence[StrPath],
    assets: Sequence[str] | None = None,
    *,
    quote: str = "USDT",
) -> PriceData:
    """CryptoDataDownload CSVs: a directory of `Binance_<BASE><QUOTE>_d.csv`
    (or `_1h.csv`, `_minute.csv`) files, one such file, or a list of them.

    Each file: an optional source line (the site's URL), a header with a
    `Close` column and a `Unix` column (seconds, milliseconds or
    microseconds, even mixed) or else a `Date` column, rows in any order
    (the site writes newest first). `assets` (default: every `<BASE><QUOTE>`
    file found) picks the files; when a directory holds several timeframes,
    the coarsest one that has every asset is used.
    """
    _check_quote(quote)
    found: dict[str, dict[str, Path]] = {}  # timeframe -> base -> file
    if isinstance(path, (str, os.PathLike)):
        root = Path(path)
        if root.is_dir():
            files = sorted(p for p in root.iterdir() if p.is_file() and _CDD_NAME.match(p.name))
            if not files:
                raise ConfigError(f"data: no CryptoDataDownload files (like Binance_BTC{quote}_d.csv) in {root}", field="data", value=str(root))
            strict = False
        elif root.is_file():
            files, strict = [root], True
        else:
            raise ConfigError(f"data: {root} does not exist", field="data", value=str(root))
    else:
        files, strict = [Path(p) for p in path], True
        if not files:
            raise ConfigError("data: no files given", field="data", value=[])
    for f in files:
        m = _CDD_NAME.match(f.name)
        if not f.is_file():
            raise ConfigError(f"data: {f} does not exist", field="data", value=str(f))
        if m is None or not m["pair"].upper().endswith(quote.upper()) or len(m["pair"]) <= len(quote):
            if strict:
                raise ConfigError(
                    f"data: cannot tell a <BASE>{quote} pair from the name {f.name} (expected like Binance_BTC{quote}_d.csv)",
                    field="data",
                    value=str(f),
                )
            continue
        base, tf = m["pair"][: -len(quote)].upper(), m["tf"].lower()
        by_base = found.setdefault(tf, {})
        if base in by_base:
            raise ConfigError(f"assets[{base}]: two {tf} files, {by_base[base].name} and {f.name}", field=f"assets[{base}]", value=str(f))
        by_base[base] = f
    if not found:
        raise ConfigError(f"data: no <BASE>{quote} files in {path}", field="data", value=str(path))

    wanted = None if assets is None else _asset_list(assets)
    order = sorted(found, key=lambda tf: (_TF_PREFERENCE.index(tf) if tf in _TF_PREFERENCE else len(_TF_PREFERENCE), tf))
    if wanted is None:
        if strict and len(found) > 1:
            raise ConfigError(f"data: files of different timeframes ({', '.join(order)})", field="data", value=order)
        tf = order[0]
        chosen = {b: found[tf][b] for b in sorted(found[tf])}
    else:
        upper = [a.upper() for a in wanted]
        tf = next((tf for tf in order if all(b in found[tf] for b in upper)), "")
        if not tf:
            for a, b in zip(wanted, upper, strict=True):
                if not any(b in by_base for by_base in found.values()):
                    raise ConfigError(f"assets[{a}]: no {b}{quote} file in {path}", field=f"assets[{a}]", value=a)
            raise ConfigError(f"assets: no single timeframe has files for all of {wanted}", field="assets", value=wanted)
        chosen = {a: found[tf][b] for a, b in zip(wanted, upper, strict=True)}

    series = {a: _read_cdd(f, a, quote) for a, f in chosen.items()}
    return align(series, quote=quote, interval_ms=_timeframe_ms(tf, "data"), source=", ".join(str(f) for f in chosen.values()))


def _read_cdd(path: Path, asset: str, quote: str) -> tuple[Times, Closes]:
    name = f"data[{asset}]"
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = csv.reader(fh)
        header: list[str] | None = None
        line = 0
        for row in rows:
            line += 1
            cols = [c.strip().lower() for c in row]
            if "close" in cols:
                header = cols
                break
            if line >= 2:
                break
        if header is None:
            raise ConfigError(f"{name}: {path} has no header with a Close column in its first two lines", field=name, value=str(path))
        close_at = header.index("close")
        unix_at = next((i for i, c in enumerate(header) if c.startswith("unix")), None)
        date_at = header.index("date") if "date" in header else None
        time_at = unix_at if unix_at is not None else date_at
        if time_at is None:
            raise ConfigError(f"{name}: {path} has neither a Unix nor a Date column", field=name, value=str(path))
        symbol_at = header.index("symbol") if "symbol" in header else None
        pair = f"{asset}{quote}".upper()
        needed = max(close_at, time_at, -1 if symbol_at is None else symbol_at)
        times: list[int] = []
        closes: list[float] = []
        for row in rows:
            line += 1
            if not row or all(not c.strip() for c in row):
                continue
            where = f"{path}:{line}"
            if len(row) <= needed:
                raise ConfigError(f"{name}: {where} has {len(row)} fields, the header {len(header)}", field=name, value=line)
            if symbol_at is not None:
                sym = re.sub(r"[/\-_ ]", "", row[symbol_at]).upper()
                if sym and sym != pair:
                    raise ConfigError(f"{name}: {where} is for {row[symbol_at]}, not {asset}/{quote}", field=name, value=row[symbol_at])
            times.append(_parse_time(row[time_at], name, where))
            text = row[close_at].strip()
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value <= 0:
                raise PriceError(f"{name}: {where}: close must be a finite positive number (got {text!r})", field=name, value=text)
            closes.append(value)
    if not times:
        raise ConfigError(f"{name}: {path} has no rows", field=name, value=str(path))
    return np.array(times, dtype=np.int64), np.array(closes, dtype=np.float64)


def _looks_like_cdd(path: Path) -> bool:
    """A CryptoDataDownload file: named like one, and its source line or header looks like one."""
    if not _CDD_NAME.match(path.name):
        return False
    with path.open(encoding="utf-8-sig", errors="replace") as fh:
        head = [fh.readline().lower() for _ in range(2)]
    return "cryptodatadownload" in head[0] or ("symbol" in head[0] and "close" in head[0])


# --------------------------------------------------------------------------- tables

_MISSING = {"", "na", "n/a", "null", "none"}


def load_table(
    path: StrPath,
    *,
    time_column: str = "timestamp",
    assets: Sequence[str] | None = None,
    quote: str = "USDT",
) -> PriceData:
    """A CSV or Parquet table (by suffix): one time column (epoch seconds,
    milliseconds or microseconds, or ISO dates/datetimes, UTC unless they say
    otherwise) and one close column per asset, named `BTC` or `BTC/USDT`.

    An empty cell (a null in Parquet) means no price at that time: before an
    asset's history starts it is outside the common range, inside it is a gap
    that gets forward-filled and counted. A cell that says `nan`, or a price
    at or below zero, is refused.
    """
    _check_quote(quote)
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"data: {p} does not exist", field="data", value=str(p))
    suffix = p.suffix.lower()
    if suffix == ".csv":
        names, times, cells = _read_csv_table(p, time_column)
    elif suffix in (".parquet", ".pq"):
        names, times, cells = _read_parquet_table(p, time_column)
    else:
        raise ConfigError(f"data: {p.name}: expected a .csv or .parquet file", field="data", value=str(p))
    columns: dict[str, int] = {}  # upper-case asset -> column
    bases: list[str] = []
    for i, n in enumerate(names):
        base = n.strip()
        if base.upper().endswith(f"/{quote.upper()}"):
            base = base[: -len(quote) - 1]
        if not base:
            raise ConfigError(f"data: {p.name}: price column {i + 1} has no name", field="data", value=n)
        if base.upper() in columns:
            raise ConfigError(f"data[{base}]: {p.name} has two columns for it", field=f"data[{base}]", value=n)
        columns[base.upper()] = i
        bases.append(base)
    picked: dict[str, int]
    if assets is None:
        picked = {b: i for i, b in enumerate(bases)}
    else:
        picked = {}
        for a in _asset_list(assets):
            if a.upper() not in columns:
                raise ConfigError(
                    f"assets[{a}]: no column {a} or {a}/{quote} in {p.name} (it has {', '.join(names)})", field=f"assets[{a}]", value=a
                )
            picked[a] = columns[a.upper()]
    if not picked:
        raise ConfigError(f"data: {p.name} has no price columns beside {time_column}", field="data", value=str(p))
    series: dict[str, tuple[Times, Closes]] = {}
    for a, i in picked.items():
        values, present = cells[i]
        series[a] = (times[present], values[present])
    return align(series, quote=quote, source=str(p))


def _time_index(names: list[str], time_column: str, path: Path) -> int:
    if time_column in names:
        return names.index(time_column)
    lower = [n.strip().lower() for n in names]
    if time_column.strip().lower() in lower:
        return lower.index(time_column.strip().lower())
    raise ConfigError(
        f"time_column: no column {time_column!r} in {path.name} (it has {', '.join(names)})", field="time_column", value=time_column
    )


def _read_csv_table(path: Path, time_column: str) -> tuple[list[str], Times, list[tuple[Closes, npt.NDArray[np.bool_]]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise ConfigError(f"data: {path} is empty", field="data", value=str(path))
    header = rows[0]
    ti = _time_index(header, time_column, path)
    names = [n for i, n in enumerate(header) if i != ti]
    body = rows[1:]
    if not body:
        raise ConfigError(f"data: {path} has no rows", field="data", value=str(path))
    times = np.array([_parse_time(r[ti] if ti < len(r) else "", "time_column", f"{path}:{k + 2}") for k, r in enumerate(body)], dtype=np.int64)
    cells = []
    for i, n in enumerate(header):
        if i == ti:
            continue
        values = np.full(len(body), np.nan)
        present = np.zeros(len(body), dtype=np.bool_)
        for k, r in enumerate(body):
            text = r[i].strip() if i < len(r) else ""
            if text.lower() in _MISSING:
                continue
            try:
                values[k] = float(text)
            except ValueError as e:
                raise PriceError(f"data[{n.strip()}]: {path}:{k + 2}: not a number: {text!r}", field=f"data[{n.strip()}]", value=text) from e
            present[k] = True
        cells.append((values, present))
    return names, times, cells


def _read_parquet_table(path: Path, time_column: str) -> tuple[list[str], Times, list[tuple[Closes, npt.NDArray[np.bool_]]]]:
    pa = _optional("pyarrow", "Parquet files need pyarrow: pip install 'rebal[arrow]'", "data", str(path))
    pq = importlib.import_module("pyarrow.parquet")
    pc = importlib.import_module("pyarrow.compute")
    table = pq.read_table(path)
    header = [str(n) for n in table.column_names]
    ti = _time_index(header, time_column, path)
    col = table.column(ti)
    if col.null_count:
        raise ConfigError(f"time_column: {path.name}: {col.null_count} rows have no time", field="time_column", value=col.null_count)
    kind = col.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        times = np.asarray(col.cast(pa.timestamp("ms", tz=getattr(kind, "tz", None))).cast(pa.int64()).to_numpy(), dtype=np.int64)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        raw = np.asarray(col.to_numpy(), dtype=np.float64 if pa.types.is_floating(kind) else np.int64)
        times = np.array([_epoch_ms(v.item(), "time_column", str(path)) for v in raw], dtype=np.int64)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        times = np.array([_parse_time(str(v), "time_column", str(path)) for v in col.to_pylist()], dtype=np.int64)
    else:
        raise ConfigError(f"time_column: {path.name}: cannot read times of type {kind}", field="time_column", value=str(kind))
    names: list[str] = []
    cells = []
    for i, n in enumerate(header):
        if i == ti or n.startswith("__index_level_"):  # pandas' unnamed index
            continue
        names.append(n)
        c = table.column(i)
        try:
            values = np.asarray(c.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise PriceError(f"data[{n}]: {path.name}: not a numeric column ({c.type})", field=f"data[{n}]", value=str(c.type)) from e
        present = ~np.asarray(pc.is_null(c).to_numpy(zero_copy_only=False), dtype=np.bool_)
        cells.append((values, present))
    return names, times, cells


# --------------------------------------------------------------------------- ccxt

_CACHE_HEAD = "# rebal ccxt cache v1"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def load_ccxt(
    exchange_id: str,
    assets: Sequence[str],
    *,
    quote: str = "USDT",
    timeframe: str = "1d",
    since_ms: int,
    until_ms: int | None = None,
    cache_dir: StrPath,
) -> PriceData:
    """Closes of `<asset>/<quote>` candles opened in `[since_ms, until_ms]`
    (default: up to the last closed candle) from ccxt's `fetch_ohlcv`.

    Candles are cached per (exchange, symbol, timeframe) as CSV under
    `cache_dir/<exchange_id>/`, with the range already fetched in the first
    line; only what the cache does not cover is fetched (page by page), so
    a repeated request needs neither network nor ccxt. Candles still open
    are never stored. ccxt's network errors pass through unchanged (try
    again); a request it cannot serve is a ConfigError.
    """
    _check_quote(quote)
    if not isinstance(exchange_id, str) or not _SAFE_NAME.match(exchange_id):
        raise ConfigError(f"exchange_id: not an exchange id: {exchange_id!r}", field="exchange_id", value=exchange_id)
    names = _asset_list(assets)
    for a in names:
        if not _SAFE_NAME.match(a) or a.upper() == quote.upper():
            raise ConfigError(f"assets[{a}]: not a base asset for {quote}", field=f"assets[{a}]", value=a)
    step = _timeframe_ms(timeframe, "timeframe")
    if not isinstance(since_ms, int) or isinstance(since_ms, bool):
        raise ConfigError(f"since_ms: must be epoch milliseconds (got {since_ms!r})", field="since_ms", value=since_ms)
    now = _now_ms()
    last_open = now - step  # a candle opened later than this is still open
    until = last_open if until_ms is None else min(int(until_ms), last_open)
    if until < since_ms:
        raise ConfigError(
            f"since_ms: {_iso(since_ms)} is after the last closed candle to fetch ({_iso(until)})", field="since_ms", value=since_ms
        )
    folder = Path(cache_dir) / exchange_id
    exchange: Any = None
    series: dict[str, tuple[Times, Closes]] = {}
    for a in names:
        symbol = f"{a}/{quote}"
        file = folder / f"{a}_{quote}_{timeframe}.csv"
        cached = _read_cache(file, exchange_id, symbol, timeframe)
        todo: list[tuple[int, int]] = []
        rows: dict[int, Candle]
        if cached is None:
            todo.append((since_ms, until))
            lo, hi, rows = since_ms, until, {}
        else:
            lo, hi, rows = cached
            if since_ms < lo:
                todo.append((since_ms, lo - 1))
            if until > hi:
                todo.append((hi + 1, until))
        if todo:
            if exchange is None:
                exchange = _open_exchange(exchange_id, a, symbol, timeframe, file)
            _check_symbol(exchange, a, symbol, timeframe)
            for start, stop in todo:
                for candle in _fetch(exchange, symbol, timeframe, step, start, stop, now):
                    rows[candle[0]] = candle
            _write_cache(file, exchange_id, symbol, timeframe, min(lo, since_ms), max(hi, until), rows)
        picked = [r for t, r in sorted(rows.items()) if since_ms <= t <= until and r[4] is not None]
        if not picked:
            raise ConfigError(
                f"data[{a}]: {exchange_id} has no {timeframe} candles for {symbol} in {_iso(since_ms)}..{_iso(until)}",
                field=f"data[{a}]",
                value=symbol,
            )
        series[a] = (np.array([r[0] for r in picked], dtype=np.int64), np.array([r[4] for r in picked], dtype=np.float64))
    return align(series, quote=quote, interval_ms=step, source=f"ccxt:{exchange_id}")


Candle = tuple[int, float | None, float | None, float | None, float | None, float | None]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _open_exchange(exchange_id: str, asset: str, symbol: str, timeframe: str, file: Path) -> Any:
    try:
        ccxt = importlib.import_module("ccxt")
    except ImportError as e:
        raise ConfigError(
            f"data[{asset}]: ccxt is not installed (pip install 'rebal[ccxt]') and the cache {file} "
            f"does not cover the requested {symbol} {timeframe} candles",
            field=f"data[{asset}]",
            value=f"ccxt:{exchange_id}",
        ) from e
    cls = getattr(ccxt, exchange_id, None)
    if not callable(cls):
        raise ConfigError(f"exchange_id: ccxt has no exchange {exchange_id!r}", field="exchange_id", value=exchange_id)
    exchange = cls({"enableRateLimit": True})
    has = getattr(exchange, "has", None) or {}
    if has.get("fetchOHLCV") is False:
        raise ConfigError(f"exchange_id: {exchange_id} has no OHLCV candles in ccxt", field="exchange_id", value=exchange_id)
    exchange.load_markets()
    return exchange


def _check_symbol(exchange: Any, asset: str, symbol: str, timeframe: str) -> None:
    markets = getattr(exchange, "markets", None) or {}
    if symbol not in markets:
        raise ConfigError(f"assets[{asset}]: {exchange.id} has no market {symbol}", field=f"assets[{asset}]", value=asset)
    frames = getattr(exchange, "timeframes", None)
    if frames and timeframe not in frames:
        raise ConfigError(
            f"timeframe: {exchange.id} has no {timeframe!r} candles (it has {', '.join(frames)})", field="timeframe", value=timeframe
        )


def _fetch(exchange: Any, symbol: str, timeframe: str, step: int, start: int, stop: int, now: int) -> Iterable[Candle]:
    limit: int | None = None
    try:
        limit = int(exchange.features["spot"]["fetchOHLCV"]["limit"])
    except (AttributeError, KeyError, TypeError, ValueError):
        limit = None
    cursor = start
    while cursor <= stop:
        batch = exchange.fetch_ohlcv(symbol, timeframe, since=cursor, limit=limit)
        if not batch:
            return
        last = cursor - 1
        for raw in batch:
            t = int(raw[0])
            last = max(last, t)
            if start <= t <= stop and t + step <= now:
                yield _candle(t, raw[1:6])
        if last < cursor:  # the exchange did not move forward
            return
        cursor = last + step


def _candle(t: int, values: Sequence[Any]) -> Candle:
    v: list[float | None] = [None if x is None or x == "" else float(x) for x in values[:5]]
    v += [None] * (5 - len(v))
    return (t, v[0], v[1], v[2], v[3], v[4])


def _read_cache(file: Path, exchange_id: str, symbol: str, timeframe: str) -> tuple[int, int, dict[int, Candle]] | None:
    if not file.exists():
        return None
    name = "cache_dir"
    with file.open(newline="") as fh:
        head = fh.readline().strip()
        meta = dict(kv.split("=", 1) for kv in head[len(_CACHE_HEAD) :].split() if "=" in kv)
        if not head.startswith(_CACHE_HEAD) or (meta.get("exchange"), meta.get("symbol"), meta.get("timeframe")) != (
            exchange_id,
            symbol,
            timeframe,
        ):
            raise ConfigError(f"{name}: {file} is not a rebal cache of {exchange_id} {symbol} {timeframe}; delete it", field=name, value=str(file))
        rows: dict[int, Candle] = {}
        try:
            lo, hi = int(meta["from_ms"]), int(meta["to_ms"])
            reader = csv.reader(fh)
            next(reader)  # the header
            for r in reader:
                if r:
                    rows[int(r[0])] = _candle(int(r[0]), r[1:6])
        except (KeyError, ValueError, IndexError, StopIteration) as e:
            raise ConfigError(f"{name}: {file} is damaged ({e!r}); delete it", field=name, value=str(file)) from e
    return lo, hi, rows


def _write_cache(file: Path, exchange_id: str, symbol: str, timeframe: str, lo: int, hi: int, rows: Mapping[int, Candle]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(f"{_CACHE_HEAD} exchange={exchange_id} symbol={symbol} timeframe={timeframe} from_ms={lo} to_ms={hi}\n")
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["timestamp", "open", "high", "low", "close", "volume"])
            for t in sorted(rows):
                w.writerow([t, *["" if v is None else repr(v) for v in rows[t][1:]]])
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- synthetic

# base: (start price on 2022-01-01, daily volatility, correlation with the market, price decimals)
_COINS: dict[str, tuple[float, float, float, int]] = {
    "BTC": (46_200.0, 0.035, 0.90, 2),
    "ETH": (3_680.0, 0.045, 0.85, 2),
    "BNB": (511.0, 0.042, 0.75, 2),
    "SOL": (170.0, 0.060, 0.75, 2),
    "XRP": (0.8300, 0.050, 0.65, 4),
    "ADA": (1.3100, 0.050, 0.70, 4),
    "DOGE": (0.17000, 0.055, 0.60, 5),
    "TRX": (0.07600, 0.040, 0.55, 5),
    "BCH": (433.0, 0.050, 0.70, 2),
    "LTC": (146.5, 0.050, 0.75, 2),
    "DOT": (26.20, 0.055, 0.75, 3),
    "AVAX": (109.0, 0.060, 0.70, 2),
    "LINK": (19.80, 0.055, 0.72, 3),
    "MATIC": (2.550, 0.060, 0.70, 4),
    "USDC": (1.0000, 0.0005, 0.0, 4),
    "DAI": (1.0000, 0.0008, 0.0, 4),
}
_OTHER = (10.0, 0.050, 0.60, 4)


def synthetic(
    assets: Sequence[str] = ("BTC", "ETH", "SOL"),
    *,
    ticks: int = 1095,
    seed: int = 7,
    interval_ms: int = DAY_MS,
    start_ms: int = 1_640_995_200_000,
) -> PriceData:
    """A seeded correlated geometric random walk, `ticks` closes per asset.

    Each asset's log return is `vol * (rho * market + sqrt(1 - rho**2) * own) - vol**2 / 2`
    (no drift: each price is a martingale)
    with one market factor shared by all, realistic start prices (early 2022),
    daily vols and market correlations for common coins (10.0, 5 %, 0.6 for
    others), scaled to `interval_ms`. An asset's path depends on the seed
    and its name, not on which other assets are asked for. Prices are
    rounded to the coin's usual tick, finer where needed to keep 4
    significant digits.
    """
    names = _asset_list(assets)
    for a in names:
        if a.upper() == "USDT":
            raise ConfigError(f"assets[{a}]: the quote asset cannot be priced in itself", field=f"assets[{a}]", value=a)
    for label, v, low in (("ticks", ticks, 1), ("seed", seed, 0), ("interval_ms", interval_ms, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ConfigError(f"{label}: must be an integer >= {low} (got {v!r})", field=label, value=v)
    if not isinstance(start_ms, int) or isinstance(start_ms, bool):
        raise ConfigError(f"start_ms: must be epoch milliseconds (got {start_ms!r})", field="start_ms", value=start_ms)
    scale = math.sqrt(interval_ms / DAY_MS)
    market = np.random.default_rng([seed, zlib.crc32(b"market")]).standard_normal(ticks - 1)
    close = np.empty((ticks, len(names)), dtype=np.float64)
    for j, a in enumerate(names):
        price, vol, rho, decimals = _COINS.get(a.upper(), _OTHER)
        own = np.random.default_rng([seed, zlib.crc32(b"asset:" + a.upper().encode())]).standard_normal(ticks - 1)
        sigma = vol * scale
        steps = sigma * (rho * market + math.sqrt(1.0 - rho * rho) * own) - 0.5 * sigma * sigma
        path = price * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))
        low_price = float(path.min())
        decimals = max(decimals, 3 - math.floor(math.log10(low_price)))
        close[:, j] = np.maximum(np.round(path, decimals), 10.0**-decimals)
    return PriceData(
        times_ms=start_ms + interval_ms * np.arange(ticks, dtype=np.int64),
        assets=names,
        close=close,
        quote="USDT",
        filled={a: 0 for a in names},
        source=f"synthetic(seed={seed})",
        interval_ms=interval_ms,
    )


# --------------------------------------------------------------------------- dispatcher


def load(
    data: StrPath | None,
    assets: Sequence[str],
    *,
    quote: str = "USDT",
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> PriceData:
    """Prices for a backtest, from wherever `data` says.

    - None: `synthetic(assets)`, daily, over `[start_ms, end_ms]` when given
      (else 1095 days from 2022-01-01, or ending at `end_ms`).
    - a directory, or a CryptoDataDownload file (`Binance_BTCUSDT_d.csv`):
      `load_cryptodatadownload`.
    - any other `.csv` / `.parquet` file: `load_table`.
    - `"ccxt:<exchange>"` or `"ccxt:<exchange>:<timeframe>"`: `load_ccxt`, cached
      under `$XDG_CACHE_HOME/rebal` (default `~/.cache/rebal`); `start_ms`
      defaults to 1095 candles before the end.

    Empty `assets` means every asset in the data (BTC, ETH, SOL for synthetic).
    The result is cut to `[start_ms, end_ms]`.
    """
    wanted = list(assets) if assets else None
    if data is None:
        default = 1095
        if start_ms is None:
            start = 1_640_995_200_000 if end_ms is None else end_ms - (default - 1) * DAY_MS
        else:
            start = start_ms
        ticks = default if end_ms is None else (end_ms - start) // DAY_MS + 1
        if ticks < 1:
            raise ConfigError(f"end_ms: {_iso(end_ms or 0)} is before start_ms {_iso(start)}", field="end_ms", value=end_ms)
        prices = synthetic(ticks=ticks, start_ms=start) if wanted is None else synthetic(wanted, ticks=ticks, start_ms=start)
        return prices if quote == prices.quote else replace(prices, quote=quote)
    if isinstance(data, str) and data.startswith("ccxt:"):
        parts = data.split(":")
        if len(parts) not in (2, 3) or not parts[1]:
            raise ConfigError(f"data: expected ccxt:<exchange>[:<timeframe>] (got {data!r})", field="data", value=data)
        if wanted is None:
            raise ConfigError("assets: name the assets to fetch from an exchange", field="assets", value=[])
        timeframe = parts[2] if len(parts) == 3 else "1d"
        step = _timeframe_ms(timeframe, "data")
        end = _now_ms() - step if end_ms is None else end_ms
        since = end - 1094 * step if start_ms is None else start_ms
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rebal"
        return load_ccxt(parts[1], wanted, quote=quote, timeframe=timeframe, since_ms=since, until_ms=end_ms, cache_dir=cache)
    p = Path(data)
    if not p.exists():
        raise ConfigError(f"data: {p} does not exist", field="data", value=str(data))
    if p.is_dir() or (p.suffix.lower() == ".csv" and _looks_like_cdd(p)):
        prices = load_cryptodatadownload(p, wanted, quote=quote)
    elif p.suffix.lower() in (".csv", ".parquet", ".pq"):
        prices = load_table(p, assets=wanted, quote=quote)
    else:
        raise ConfigError(f"data: {p.name}: expected a directory, a .csv or .parquet file, or ccxt:<exchange>", field="data", value=str(data))
    if start_ms is None and end_ms is None:
        return prices
    return prices.between(start_ms, end_ms)


# --------------------------------------------------------------------------- helpers


def _asset_list(assets: Sequence[str]) -> list[str]:
    if isinstance(assets, str):
        raise ConfigError(f"assets: expected a list of names (got the string {assets!r})", field="assets", value=assets)
    names = list(assets)
    if not names:
        raise ConfigError("assets: at least one asset is needed", field="assets", value=names)
    seen: set[str] = set()
    for a in names:
        if not isinstance(a, str) or not a.strip():
            raise ConfigError(f"assets: names must be non-empty strings (got {a!r})", field="assets", value=a)
        if a in seen:
            raise ConfigError(f"assets[{a}]: listed twice", field=f"assets[{a}]", value=a)
        seen.add(a)
    return names


def _check_quote(quote: str) -> None:
    if not isinstance(quote, str) or not quote.isalnum():
        raise ConfigError(f"quote: not an asset symbol: {quote!r}", field="quote", value=quote)


def _timeframe_ms(timeframe: str, label: str) -> int:
    """`1m`, `15m`, `1h`, `4h`, `1d`, `1w`; `d` and `minute` in CDD names."""
    if timeframe in _CDD_TF:
        return _CDD_TF[timeframe]
    m = re.fullmatch(r"(\d+)([mhdw])", timeframe) if isinstance(timeframe, str) else None
    if m is None or int(m[1]) == 0:
        raise ConfigError(
            f"{label}: not a fixed-length timeframe like 1m, 1h, 4h, 1d, 1w (got {timeframe!r})", field=label, value=timeframe
        )
    return int(m[1]) * {"m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}[m[2]]


def _epoch_ms(value: float, label: str, where: str) -> int:
    """Epoch seconds, milliseconds, microseconds or nanoseconds, told apart
    by size (every date from 1973 to 5138 is read right)."""
    if not math.isfinite(value):
        raise ConfigError(f"{label}: {where}: not a time: {value!r}", field=label, value=value)
    size = abs(value)
    if size < 1e11:
        return round(value * 1000)
    if size < 1e14:
        return round(value)
    if size < 1e17:
        return round(value / 1000) if isinstance(value, float) else (int(value) + 500) // 1000
    return round(value / 1e6) if isinstance(value, float) else (int(value) + 500_000) // 1_000_000


_DATE_FORMATS = ("%Y-%m-%d %I-%p", "%Y-%m-%d %I-%M %p", "%Y-%m-%d %I:%M %p", "%Y-%m-%d %H-%M-%S")


def _parse_time(text: str, label: str, where: str) -> int:
    s = text.strip()
    if not s:
        raise ConfigError(f"{label}: {where}: no time", field=label, value=text)
    if re.fullmatch(r"[+-]?\d+", s):
        return _epoch_ms(int(s), label, where)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?|[+-]?\d+[eE][+-]?\d+", s):
        number = float(s)
        return _epoch_ms(int(number) if number.is_integer() and abs(number) < 2**53 else number, label, where)
    stamp: datetime | None = None
    try:
        stamp = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        for fmt in _DATE_FORMATS:
            try:
                stamp = datetime.strptime(s, fmt)
                break
            except ValueError:
                continue
    if stamp is None:
        raise ConfigError(f"{label}: {where}: not a time: {text!r}", field=label, value=text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return round(stamp.timestamp() * 1000)


def _optional(module: str, hint: str, label: str, value: object) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{label}: {hint}", field=label, value=value) from e


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d") if ms % DAY_MS == 0 else _iso_time(ms)


def _iso_time(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ") if ms % 1000 == 0 else stamp.isoformat()


def _iso_or_open(ms: int | None) -> str:
    return "the start" if ms is None else _iso(ms)


def _span(ms: int) -> str:
    for unit, size in (("w", 7 * DAY_MS), ("d", DAY_MS), ("h", HOUR_MS), ("m", MINUTE_MS), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
