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
def scan(
    columns: Mapping[str, NDArray[Any]],
    markets: Sequence[Market],
    prices: NDArray[np.float64],
    now_ms: int,
) -> dict[str, Any]:
    """The first half of a tick: value, deviations and status per portfolio; nothing changes."""

def plan(
    columns: Mapping[str, NDArray[Any]],
    markets: Sequence[Market],
    prices: NDArray[np.float64],
    now_ms: int,
    action: NDArray[np.uint8],
    status: NDArray[np.uint8],
    commit: bool = True,
) -> dict[str, Any]:
    """The second half: each portfolio's action (0 none, 1 rebalance, 2 invest, 3 exit), status updated in place."""

def amount_words_of(values: Any, field: str) -> NDArray[np.int64]: ...
def amount_strings(words: NDArray[np.int64]) -> tuple[bytes, int]: ...
def amount_floats(words: NDArray[np.int64]) -> NDArray[np.float64]: ...
def client_order_ids(
    ids: NDArray[np.uint64], epochs: NDArray[np.uint32], legs: NDArray[np.uint8]
) -> tuple[bytes, int]: ...

# Money in and out (see rust/src/flows.rs). `invest` and `exit` return
# {"orders": {...}, "skipped": {...}}: the same columns, keys and dtypes as
# the "orders" and "skipped" sub-dicts of `tick` (portfolio int64,
# portfolio_id uint64, leg uint8, asset int32, side uint8 (0 buy, 1 sell),
# lots int64, amount (n, 2) int64 words, price, notional, fee float64, epoch
# uint32: the portfolio's `epoch` column for orders, the reason code for skips).
def invest(
    columns: Mapping[str, NDArray[Any]],
    markets: Sequence[Market],
    prices: NDArray[np.float64],
    slots: NDArray[np.int64],
) -> dict[str, dict[str, NDArray[Any]]]:
    """Buy-only orders investing the free cash of the portfolios at `slots`
    into their underweight assets: the spendable cash max(0, cash -
    cash_target * value) goes to each asset in proportion to its shortfall
    below target (fee deducted), truncated to whole lots; the exact decimal
    cost, fees included, never passes the cash. Legs the market refuses are
    skipped with their reason (as in `tick`); a buy that cannot be afforded
    exactly is skipped as "insufficient_cash". Output in the order of
    `slots`. A bad price of an asset of a selected portfolio is a PriceError;
    a slot out of range or given twice is a ConfigError (field "slots")."""

def exit(
    columns: Mapping[str, NDArray[Any]],
    markets: Sequence[Market],
    prices: NDArray[np.float64],
    slots: NDArray[np.int64],
) -> dict[str, dict[str, NDArray[Any]]]:
    """Sell orders turning every holding of the portfolios at `slots` into the
    quote asset: all whole lots, up to the market's maximum. What is not sold
    is skipped with its exact amount, so per holding orders + skips = held:
    the whole holding if the market refuses it ("market_inactive",
    "min_amount", "min_notional", "below_step"), the lots above the maximum
    ("max_amount") and the dust below one lot ("below_step"). Prices are
    needed only for non-zero holdings in active markets."""

def check_prices(
    columns: Mapping[str, NDArray[Any]],
    markets: Sequence[Market],
    prices: NDArray[np.float64],
    invest: NDArray[np.int64],
    exit: NDArray[np.int64],
) -> None:
    """Refuses (PriceError naming the asset) a price the buys at `invest` or the exit sells at `exit` would need."""

def fill_in_full(
    cash: NDArray[np.int64],
    holdings: NDArray[np.int64],
    cash_float: NDArray[np.float64],
    amount_float: NDArray[np.float64],
    slots: NDArray[np.int64],
    rows: NDArray[np.int64],
    buy: NDArray[np.bool_],
    amount: NDArray[np.int64],
    price: NDArray[np.float64],
    fee_rate: NDArray[np.float64],
    fees_paid: NDArray[np.float64] | None = None,
    turnover: NDArray[np.float64] | None = None,
    purpose: NDArray[np.uint8] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Orders filled in full, exactly: writes the new cash (by slot) and holdings (by row) in place,
    all or nothing, with their float copies, and returns each fill's cost and fee as floats
    (the exact amounts as `amount_floats` gives them). With `fees_paid` / `turnover` (by slot,
    checked before anything is written) the fees / the costs (of the fills whose `purpose` is 0,
    a rebalance, when it is given) are added to them by slot, as
    `column += np.bincount(slots, weights=values, minlength=len(column))` would."""

def values(columns: Mapping[str, NDArray[Any]], prices: NDArray[np.float64]) -> NDArray[np.float64]:
    """Value of every portfolio by slot (active or not): cash + sum of
    amount * price. NaN where a non-zero holding's price is NaN."""

def hold_values(
    hold_asset: NDArray[np.int32],
    hold_amount: NDArray[np.float64],
    hold_cash: NDArray[np.float64],
    prices: NDArray[np.float64],
    slots: NDArray[np.int64] | None = None,
) -> NDArray[np.float64]:
    """Value of the hold benchmark of `slots` (default: all) at `prices`:
    the baskets (asset -1: an unused column) plus the cash, the floats
    numpy's `(amount * price[asset]).sum(axis=1) + cash` gives."""

def add_amounts(words: NDArray[np.int64], rows: NDArray[np.int64], deltas: NDArray[np.int64], field: str) -> None:
    """Adds `deltas` ((m, 2) int64 words, signed) to the exact amounts at
    `rows` of `words` ((n, 2) int64, changed in place); repeated rows
    accumulate. All or nothing: a row out of range (ConfigError), an overflow
    or a result below zero (AmountError, field f"{field}[{row}]") changes nothing."""

def return_factors(values: NDArray[np.float64], last: NDArray[np.float64], inflow: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """A metrics stream's return factors this tick: values / (last + inflow)
    where both are positive, else 1 (its log is 0); `last` (float64,
    changed in place) becomes `values`. The floats numpy gives."""

def add_log_returns(log_returns: NDArray[np.float64], growth: NDArray[np.float64], sum_sq: NDArray[np.float64], peak: NDArray[np.float64]) -> None:
    """Adds the log returns to `growth` and their squares to `sum_sq`,
    raises `peak` to the growth (np.maximum), and writes growth - peak over
    `log_returns`; all float64, changed in place. The floats numpy gives."""

def deepen_drawdowns(max_drawdown: NDArray[np.float64], drawdown_factor: NDArray[np.float64]) -> None:
    """Raises `max_drawdown` (changed in place) to 1 - `drawdown_factor`
    (np.maximum: a NaN stays)."""

def track_drawdowns(
    value: NDArray[np.float64],
    mask: NDArray[np.bool_],
    peak: NDArray[np.float64],
    level: NDArray[np.float64],
    max_drawdown: NDArray[np.float64],
) -> None:
    """One tick of each series' max drawdown, for those in `mask` at
    `value`: a new high raises `peak` and sets `level` to peak * (1 - max
    drawdown); a value below `level` deepens `max_drawdown` to 1 - value /
    peak and becomes the level. `peak`, `level` and `max_drawdown` are
    changed in place."""

def earliest(values: NDArray[np.int64], mask: NDArray[np.bool_]) -> int | None:
    """The smallest of `values` where `mask` is set; None where it is
    nowhere. ConfigError (field "mask") if the lengths differ."""

def reached(
    value: NDArray[np.float64],
    mask: NDArray[np.bool_],
    up: NDArray[np.float64] | None = None,
    down: NDArray[np.float64] | None = None,
) -> NDArray[np.int64]:
    """The positions where `mask` is set and `value` is at or above `up` or
    at or below `down` (a NaN level is never reached), in order.
    ConfigError naming the column whose length differs from `value`'s."""

def cycles_due(
    now_ms: int,
    next_ms: NDArray[np.int64],
    dca_state: NDArray[np.uint8],
    on: int,
    stage: NDArray[np.uint8],
    running: int,
    status: NDArray[np.uint8],
    locked: NDArray[np.bool_],
    value: NDArray[np.float64],
    level: NDArray[np.float64],
) -> NDArray[np.int64]:
    """Auto-invest's cycles due at `now_ms`, in order: `dca_state == on`,
    `next_ms <= now_ms`, `stage == running`, not `locked`, `status` neither
    INACTIVE nor REBALANCE, and `value <= level` (a NaN level is never
    reached). ConfigError naming the column whose length differs."""

def join_pool() -> bool:
    """Makes the calling thread a worker of a thread pool of its own, so its
    parallel calls start at once instead of waiting for sleeping threads to
    wake (a backtest's ticks); True if it joined one. Not with one core,
    nor for a second thread: other threads keep the default pool."""
