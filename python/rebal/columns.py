"""Growable numpy columns: the storage under `rebal.Book`.

A `Table` keeps a set of equal-length columns with spare capacity, so adding
rows is amortised O(rows added), and hands out views trimmed to its length.
Exact amounts are stored as (n, 2) int64 "words": the little-endian int128
of Arrow's decimal128(38, 18), in atoms of 1e-18.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from rebal import _rebal

__all__ = ["Table", "words", "decimal_strings", "decimals"]


class Table:
    """Columns of one length with room to grow."""

    def __init__(self, dtypes: Mapping[str, tuple[Any, tuple[int, ...]]]) -> None:
        self._dtypes = dict(dtypes)
        self._arrays = {name: _empty(dtype, shape) for name, (dtype, shape) in self._dtypes.items()}
        self.length = 0
        self._views: dict[str, np.ndarray] | None = None  # the live views, made once per change
        self.version = 0
        """Counts the changes of length or storage (views made before one are stale)."""

    def _changed(self) -> None:
        self._views = None
        self.version += 1

    @property
    def capacity(self) -> int:
        return len(next(iter(self._arrays.values())))

    def __getitem__(self, name: str) -> np.ndarray:
        """The live part of a column (a writable view: for the Book's own use)."""
        views = self._views if self._views is not None else self._make_views()
        return views[name]

    def views(self) -> dict[str, np.ndarray]:
        """The live rows of every column (views: for the owner's use and for saving)."""
        return dict(self._views if self._views is not None else self._make_views())

    def _make_views(self) -> dict[str, np.ndarray]:
        self._views = {name: array[: self.length] for name, array in self._arrays.items()}
        return self._views

    def append(self, values: Mapping[str, npt.ArrayLike], count: int, *, share: frozenset[str] = frozenset()) -> None:
        """Appends `count` rows; every column must be given. Into an empty
        table, the columns named in `share` are adopted without a copy where
        dtype and shape fit (the caller's promise that they are its own and
        nothing else writes to them); every other column is copied, so a
        caller's array never aliases a checked column."""
        if self.length == 0 and count > self.capacity:
            adopted: dict[str, np.ndarray] = {}
            for name, (dtype, shape) in self._dtypes.items():
                value = values[name]
                if isinstance(value, np.ndarray) and name in share and value.dtype == dtype and value.shape == (count, *shape) and value.flags.c_contiguous:
                    adopted[name] = value
                else:
                    adopted[name] = np.array(np.broadcast_to(np.asarray(value, dtype), (count, *shape)))
            self._arrays, self.length = adopted, count
            self._changed()
            return
        if self.length + count > self.capacity:
            self._grow(max(self.length + count, 2 * self.capacity, 16))
        for name, array in self._arrays.items():
            array[self.length : self.length + count] = values[name]
        self.length += count
        self._changed()

    def load(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Replaces the contents with saved columns (every column, one length)."""
        missing = set(self._dtypes) - set(arrays)
        if missing:
            raise KeyError(f"saved columns lack {sorted(missing)}")
        self._arrays = {name: np.array(arrays[name], dtype=dtype) for name, (dtype, _) in self._dtypes.items()}
        self.length = len(next(iter(self._arrays.values())))
        self._changed()

    def keep(self, index: npt.NDArray[np.int64]) -> None:
        """Keeps only the rows at `index`, in that order (compaction)."""
        self._arrays = {name: np.ascontiguousarray(array[: self.length][index]) for name, array in self._arrays.items()}
        self.length = len(index)
        self._changed()

    def _grow(self, capacity: int) -> None:
        for name, array in self._arrays.items():
            grown = np.zeros((capacity, *array.shape[1:]), array.dtype)
            grown[: self.length] = array[: self.length]
            self._arrays[name] = grown
        self._changed()


_EMPTY: dict[tuple[Any, tuple[int, ...]], np.ndarray] = {}


def _empty(dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A column with no rows, shared by every empty Table (no row can be
    written to it: rows come with new arrays, see `append`)."""
    key = (dtype, shape)
    array = _EMPTY.get(key)
    if array is None:
        array = _EMPTY[key] = np.zeros((0, *shape), dtype)
    return array


def words(values: Any, field: str) -> npt.NDArray[np.int64]:
    """Exact amounts as (n, 2) int64 words. Floats are read by their shortest
    repr; str, int and Decimal exactly; an (n, 2) int64 array is taken as words."""
    if isinstance(values, np.ndarray) and values.dtype == np.int64 and values.ndim == 2 and values.shape[1] == 2:
        return np.ascontiguousarray(values)
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        values = np.ascontiguousarray(values, dtype=np.float64)
    result: npt.NDArray[np.int64] = _rebal.amount_words_of(values, field)
    return result


def decimal_strings(amount_words: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """Exact decimal strings ("0.3", never "0.30000000000000004") of words."""
    if len(amount_words) == 0:
        return np.array([], dtype=str)
    buffer, width = _rebal.amount_strings(np.ascontiguousarray(amount_words))
    return np.frombuffer(buffer, dtype=f"S{width}").astype(str)


def decimals(amount_words: npt.NDArray[np.int64]) -> list[Decimal]:
    """Words as exact Decimals (for a few values: one object each)."""
    return [Decimal(s) for s in decimal_strings(amount_words)]
