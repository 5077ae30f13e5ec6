# Stub of the Rust extension rebal._rebal (checked by mypy.stubtest in the tests).
from decimal import Decimal
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from typing_extensions import disjoint_base

__version__: str

_SkipReason = Literal["min_amount", "min_notional", "max_amount", "market_inactive", "insufficient_cash", "below_step"]
AMOUNT_DECIMALS: int

@disjoint_base
class Market:
    def __new__(
        cls,
        symbol: str,
        base: str,
        quote: str,
        step: Decimal | str | int | float,
        *,
        min_amount: Decimal | str | int | float | None = None,
        max_amount: Decimal | str | int | float | None = None,
        min_notional: Decimal | str | int | float | None = None,
        max_notional: Decimal | str | int | float | None = None,
        price_tick: Decimal | str | int | float | None = None,
        maker_fee: float = 0.0,
        taker_fee: float = 0.0,
        active: bool = True,
    ) -> Market: ...
    @property
    def symbol(self) -> str: ...
    @property
    def base(self) -> str: ...
    @property
    def quote(self) -> str: ...
    @property
    def step(self) -> Decimal: ...
    @property
    def min_amount(self) -> Decimal: ...
    @property
    def max_amount(self) -> Decimal | None: ...
    @property
    def min_notional(self) -> Decimal: ...
    @property
    def max_notional(self) -> Decimal | None: ...
    @property
    def price_tick(self) -> Decimal | None: ...
    @property
    def maker_fee(self) -> float: ...
    @property
    def taker_fee(self) -> float: ...
    @property
    def active(self) -> bool: ...
    def amount_to_precision(self, amount_: Decimal | str | int | float) -> Decimal: ...
    def lots(self, amount_: Decimal | str | int | float) -> int: ...
    def min_lots(self, price: float) -> int: ...

def plan_portfolio(
    markets: Sequence[Market],
    prices: list[float],
    amounts: list[Any],
    targets: list[float],
    cash: Any,
    *,
    cash_target: float = 0.0,
    destination: str = "target",
    inner_k: float | None = None,
    threshold: float | None = None,
    threshold_kind: str = "absolute",
    fee_rate: float | None = None,
) -> tuple[
    tuple[float, float, float, bool, float, float, float],
    list[tuple[int, Literal["buy", "sell"], Decimal, float, float, float]],
    list[tuple[int, Literal["buy", "sell"], Decimal, _SkipReason]],
]: ...
def client_order_id(portfolio: int, epoch: int, leg: int) -> str: ...

# The Book's columns (see rebal.book): a dict of numpy arrays by column name.
def validate_book(columns: Mapping[str, NDArray[Any]], markets: Sequence[Market]) -> None: ...
def tick(
    columns: Mapping[str, NDArray[Any]],
    markets: Sequence[Market],
    prices: NDArray[np.float64],
    now_ms: int,
    commit: bool = True,
) -> dict[str, Any]: ...
def amount_words_of(values: Any, field: str) -> NDArray[np.int64]: ...
def amount_strings(words: NDArray[np.int64]) -> tuple[bytes, int]: ...
def amount_floats(words: NDArray[np.int64]) -> NDArray[np.float64]: ...
def client_order_ids(
    ids: NDArray[np.uint64], epochs: NDArray[np.uint32], legs: NDArray[np.uint8]
) -> tuple[bytes, int]: ...
