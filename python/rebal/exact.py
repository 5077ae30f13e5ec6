"""Exact amounts in Python: integers of 1e-18 ("atoms") and their (n, 2)
int64 word form (the bytes of Arrow's decimal128(38, 18)). For the few
places that do money arithmetic outside Rust: fills, whose amounts arrive
as Decimals one by one."""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from rebal.exceptions import FillError

__all__ = ["ATOMS", "atoms", "positive", "cost", "from_words", "to_words", "balances", "ratios", "floats", "int_of", "decimal_of"]

ATOMS = 10**18
_LOW = (1 << 64) - 1
# Wide enough for any i128 amount times any price: no silent rounding. Code
# that computes with Decimals outside this module runs in it too
# (`decimal.localcontext(WIDE)`), whatever context the host process has.
WIDE = decimal.Context(prec=80, traps=[decimal.InvalidOperation, decimal.Overflow])


def _decimal(value: Any, field: str) -> Decimal:
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (ArithmeticError, ValueError, TypeError) as e:
        raise FillError(f"{field}: not a number ({value!r})", field=field, value=value) from e


def atoms(value: Any, field: str, *, positive: bool = False) -> int:
    """An exact decimal as an integer of 1e-18; refuses NaN, negatives and anything finer."""
    d = _decimal(value, field)
    if not d.is_finite() or d < 0 or (positive and d == 0):
        raise FillError(f"{field}: must be {'> 0' if positive else '≥ 0'} (got {value})", field=field, value=str(value))
    scaled = d.scaleb(18, context=WIDE)
    if scaled != scaled.to_integral_value(context=WIDE) or scaled >= 2**127:
        raise FillError(f"{field}: finer than 1e-18 or too large (got {value})", field=field, value=str(value))
    return int(scaled)


def positive(value: Any, field: str) -> Decimal:
    d = _decimal(value, field)
    if not d.is_finite() or d <= 0:
        raise FillError(f"{field}: must be > 0 (got {value})", field=field, value=str(value))
    return d


def cost(amount_atoms: int, price: Decimal, *, up: bool) -> int:
    """amount × price in atoms, rounded against the user by less than one
    atom (a buy costs the larger neighbour, a sell yields the smaller)."""
    exact = WIDE.multiply(Decimal(amount_atoms), price)
    whole = int(exact)  # toward zero: both are positive
    return whole + 1 if up and exact != whole else whole


def from_words(words: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
    """(m, 2) words as Python ints (an object array: exact, vectorized)."""
    low = words[:, 0].view(np.uint64).astype(object)
    high = words[:, 1].astype(object)
    result: npt.NDArray[np.object_] = (high << 64) | low
    return result


def to_words(values: Any) -> npt.NDArray[np.int64]:
    """Python ints as (m, 2) words; each must fit an i128."""
    values = np.asarray(values, dtype=object).reshape(-1)
    out = np.empty((len(values), 2), np.int64)
    out[:, 0] = (values & _LOW).astype(np.uint64).view(np.int64)
    out[:, 1] = (values >> 64).astype(np.int64)
    return out


def balances(
    column: npt.NDArray[np.int64], index: npt.NDArray[np.int64], deltas: npt.NDArray[np.object_]
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]]:
    """The exact values of `column` at the distinct `index`es after adding
    every delta (repeated indexes accumulate), and those indexes."""
    unique, position = np.unique(index, return_inverse=True)
    values = from_words(column[unique])
    np.add.at(values, position, deltas)
    return values, unique


def ratios(values: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.object_]]:
    """Each float as the exact fraction its shortest repr reads as (0.1 →
    1/10, not the binary value), numerator and denominator as Python ints.
    Worked out once per distinct value."""
    unique, position = np.unique(values, return_inverse=True)
    num = np.empty(len(unique), dtype=object)
    den = np.empty(len(unique), dtype=object)
    for j, value in enumerate(unique.tolist()):
        n, d = Decimal(repr(value)).as_integer_ratio()
        num[j], den[j] = n, d
    return num[position], den[position]


def floats(values: npt.NDArray[np.object_]) -> npt.NDArray[np.float64]:
    """Atoms (Python ints) as floats of whole units, for accounting."""
    return np.array([v / ATOMS for v in values.tolist()], dtype=np.float64)


def int_of(word_pair: npt.NDArray[np.int64]) -> int:
    low, high = int(word_pair[0]), int(word_pair[1])
    return (high << 64) | (low & _LOW)


def decimal_of(value: int) -> Decimal:
    return Decimal(value).scaleb(-18, context=WIDE)
