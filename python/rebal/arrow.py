"""Arrow in and out (pyarrow, imported only here), for hosts that keep state
in columnar form. Exact amounts travel as decimal128(38, 18): the Book's
(n, 2) int64 words are that type's bytes, so nothing is rounded or parsed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from rebal.exceptions import ConfigError

if TYPE_CHECKING:
    from rebal.book import Book

__all__ = ["DECIMAL", "book_to_arrow", "book_from_arrow", "legs_to_arrow"]


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("Arrow export needs pyarrow: pip install 'rebal[arrow]'") from e
    return pyarrow


def DECIMAL() -> Any:  # noqa: N802 - reads as the type it returns
    return _pyarrow().decimal128(38, 18)


def decimal_array(amount_words: npt.NDArray[np.int64]) -> Any:
    pa = _pyarrow()
    data = np.ascontiguousarray(amount_words, dtype=np.int64)
    return pa.Array.from_buffers(DECIMAL(), len(data), [None, pa.py_buffer(data)])


def decimal_words(array: Any, field: str) -> npt.NDArray[np.int64]:
    """(n, 2) int64 words of a decimal column (rescaled exactly to 18 places)."""
    pa = _pyarrow()
    if not pa.types.is_decimal(array.type):
        raise ConfigError(f"{field}: expected a decimal column (got {array.type})", field=field, value=str(array.type))
    if array.null_count:
        raise ConfigError(f"{field}: has {array.null_count} missing values", field=field, value=None)
    exact = array.cast(DECIMAL())  # refuses (raises) anything it would round
    if isinstance(exact, pa.ChunkedArray):
        exact = exact.combine_chunks()
    words = np.frombuffer(exact.buffers()[1], dtype=np.int64)
    return words[2 * exact.offset : 2 * (exact.offset + len(exact))].reshape(-1, 2).copy()


def book_to_arrow(book: Book) -> Any:
    pa = _pyarrow()
    p = {name: np.asarray(v) for name, v in book.columns().items()}
    h = {name: np.asarray(v) for name, v in book.holding_columns().items()}
    live = np.flatnonzero(p["alive"])
    start, stop = p["start"][live], p["stop"][live]
    counts = stop - start
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    rows = np.repeat(start - offsets[:-1], counts) + np.arange(int(offsets[-1]))
    holdings = pa.StructArray.from_arrays(
        [pa.array(h["asset"][rows]), decimal_array(h["amount"][rows]), pa.array(h["target"][rows])],
        names=["asset", "amount", "target"],
    )
    columns: dict[str, Any] = {"id": pa.array(p["id"][live]), "cash": decimal_array(p["cash"][live])}
    for name, values in p.items():
        if name not in ("id", "cash", "cash_float", "start", "stop", "alive", "active"):
            columns[name] = pa.array(values[live])
    columns["holdings"] = pa.ListArray.from_arrays(pa.array(offsets), holdings)
    symbols = [m.symbol for m in book.markets]
    return pa.table(columns, metadata={"rebal.markets": ",".join(symbols)})


def book_from_arrow(book: Book, table: Any) -> Book:
    """Appends the portfolios of `table` (as `book_to_arrow` writes it) to `book`."""
    from rebal.book import PORTFOLIO_COLUMNS

    expected = set(PORTFOLIO_COLUMNS) - {"start", "stop", "alive", "active", "cash_float"} | {"holdings"}
    missing = expected - set(table.column_names)
    if missing:
        raise ConfigError(f"table: missing columns {sorted(missing)}", field="table", value=sorted(missing))
    holdings = table.column("holdings").combine_chunks()
    flat = holdings.flatten()
    offsets = np.asarray(holdings.offsets, dtype=np.int64)
    offsets = offsets - offsets[0]
    n = table.num_rows
    columns = {
        name: np.ascontiguousarray(table.column(name).to_numpy(), dtype=dtype)
        for name, (dtype, shape) in PORTFOLIO_COLUMNS.items()
        if name in expected and not shape
    }
    columns.update(
        cash=decimal_words(table.column("cash"), "cash"),
        start=offsets[:-1],
        stop=offsets[1:],
        alive=np.ones(n, bool),
    )
    book._append(
        columns,
        {
            "asset": np.ascontiguousarray(flat.field("asset").to_numpy(), dtype=np.int32),
            "amount": decimal_words(flat.field("amount"), "holdings.amount"),
            "target": np.ascontiguousarray(flat.field("target").to_numpy(), dtype=np.float64),
        },
    )
    return book


def legs_to_arrow(
    columns: dict[str, np.ndarray],
    symbols: npt.NDArray[np.str_],
    *,
    client_order_id: npt.NDArray[np.bytes_] | None = None,
) -> Any:
    pa = _pyarrow()
    out: dict[str, Any] = {
        "portfolio_id": pa.array(columns["portfolio_id"]),
        "symbol": pa.array(symbols),
        "side": pa.DictionaryArray.from_arrays(pa.array(columns["side"]), pa.array(["buy", "sell"])),
        "amount": decimal_array(columns["amount"]),
        "lots": pa.array(columns["lots"]),
        "price": pa.array(columns["price"]),
        "notional": pa.array(columns["notional"]),
    }
    if client_order_id is not None:
        out["fee"] = pa.array(columns["fee"])
        out["client_order_id"] = pa.array(client_order_id.astype(str))
    return pa.table(out)
