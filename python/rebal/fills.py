"""Fills and rejects into the Engine: exact, checked as a whole, all or nothing.

A call's fills count together (a round's sells pay for its buys, in any
order within the call). Each fill is parsed in Python (its Decimals); the
rest runs over columns: exact amounts as arrays of Python ints, then numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from rebal import _rebal, exact
from rebal.batch import SIDE_BUY
from rebal.events import EventKind, Reason
from rebal.exceptions import FillError
from rebal.orders import Fill, OrderStatus, Purpose, Reject

if TYPE_CHECKING:
    from rebal.engine import Engine, _Rounds

__all__ = ["apply_fills", "apply_full_fills", "apply_rejects"]


def apply_fills(engine: Engine, fills: Sequence[Fill], now_ms: int) -> None:
    """See `Engine.on_fills`."""
    if not len(fills):
        return
    rows, amount, cost, fee, in_base, price, done = _parse(engine, fills)
    _apply(engine, rows, amount, cost, fee, in_base, np.array([float(p) for p in price]), done, lambda k: fills[k].client_order_id, now_ms)


def apply_full_fills(
    engine: Engine,
    rows: slice,
    slots: npt.NDArray[np.int64],
    rounds: _Rounds,
    prices: npt.NDArray[np.float64],
    fee_rates: npt.NDArray[np.float64],
    now_ms: int,
) -> None:
    """See `Engine.on_full_fills`: the orders at `rows` of the order table,
    each filled in full at its price, fee = rate × cost in the quote asset,
    applied exactly in Rust (`_rebal.fill_in_full`, which also refreshes the
    float copies of the cash and amounts); the bookkeeping around it is
    numpy. Nothing per fill runs in Python. `rows` is a range of the order
    table (a batch's orders are appended together); `slots` are the orders'
    portfolios' slots; `rounds` those slots once each, with how many orders
    each has (`engine._rounds`)."""
    first, stop, _ = rows.indices(len(engine.orders))
    if stop <= first:
        return
    book, s, t = engine.book, engine.state, engine.orders
    status = t["status"][rows]
    if status.any():  # an order filled even in part is no longer OPEN (0)
        k = int(np.argmax(status != OrderStatus.OPEN.value))
        raise FillError(f"fills[{k}]: order row {first + k} is not open and unfilled", field=f"fills[{k}]", value=first + k)
    p, h = book._portfolios, book._holdings
    holdings = p["start"][slots]  # a copy (slots is an index array), so adding in place is ours
    holdings += t["leg"][rows]  # int64 += uint8: int64
    buy = t["side"][rows] == SIDE_BUY
    amount_words = np.ascontiguousarray(t["amount"][rows])
    purpose = t["purpose"][rows]
    # Fees and the rebalances' turnover are added up by slot in the same call
    # (as `_add_by_slot` would: the same floats).
    cost, fee = _rebal.fill_in_full(
        p["cash"], h["amount"], p["cash_float"], h["amount_float"], slots, holdings, buy, amount_words, prices, fee_rates,
        fees_paid=s["fees_paid"], turnover=s["turnover"], purpose=purpose,
    )  # fmt: skip
    if purpose.any():  # not rebalances alone: a few ticks of a run
        bought = purpose == Purpose.INVEST.value  # the hold benchmark makes the same buys (one leg per holding)
        if bought.any():
            s["hold_amount"][slots[bought], t["leg"][rows][bought]] += _rebal.amount_floats(np.ascontiguousarray(amount_words[bought]))
            _add_by_slot(s["hold_cash"], slots[bought], -(cost[bought] + fee[bought]))
    t["filled"][rows] = amount_words
    t.close_many(rows, OrderStatus.FILLED)
    distinct, counts, _ = rounds
    s["round_filled"][distinct] = True
    left = s["round_open"][distinct]
    left -= counts.astype(np.int32)
    s["round_open"][distinct] = left
    engine.fill_count += stop - first
    engine._settle(distinct, now_ms, open_left=left, all_filled=True)


def _add_by_slot(column: npt.NDArray[np.float64], slots: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
    """Adds each slot's sum of `values` to `column` (a view: in place)."""
    column += np.bincount(slots, weights=values, minlength=len(column))


def _apply(
    engine: Engine,
    rows: npt.NDArray[np.int64],
    amount: npt.NDArray[np.object_],
    cost: npt.NDArray[np.object_],
    fee: npt.NDArray[np.object_],
    in_base: npt.NDArray[np.bool_],
    price: npt.NDArray[np.float64],
    done: dict[int, int],
    name: Callable[[int], str],
    now_ms: int,
) -> None:
    """Checked fills (exact atoms) into holdings, cash, orders and accounting, all or nothing."""
    book, s, t = engine.book, engine.state, engine.orders
    slots = book.slots(t["portfolio_id"][rows])
    legs = t["leg"][rows].astype(np.int64)
    holdings = book.column("start")[slots] + legs
    buy = t["side"][rows] == SIDE_BUY
    base_fee = np.where(in_base, fee, 0)
    quote_fee = np.where(in_base, 0, fee)
    coin = np.where(buy, amount - base_fee, -(amount + base_fee))
    cash = np.where(buy, -(cost + quote_fee), cost - quote_fee)

    # Balances after the whole call, exact; refused if any would go below zero.
    new_amounts, amount_rows = exact.balances(book.holding_columns()["amount"], holdings, coin)
    new_cash, cash_slots = exact.balances(book.column("cash"), slots, cash)
    for values, index, where, which in ((new_amounts, amount_rows, holdings, "base"), (new_cash, cash_slots, slots, "quote")):
        negative = values < 0
        if negative.any():
            k = int(np.argmax(np.isin(where, index[negative])))
            market = engine.markets[int(t["asset"][rows[k]])]
            asset = market.base if which == "base" else market.quote
            raise FillError(f"fills[{k}]: would take the portfolio's {asset} below zero", field=f"fills[{k}]", value=name(k))

    # Everything checked: write.
    book.set_exact(cash_slots, exact.to_words(new_cash), amount_rows, exact.to_words(new_amounts))
    as_float = exact.floats
    np.add.at(s["fees_paid"], slots, as_float(quote_fee) + as_float(base_fee) * price)
    purpose = t["purpose"][rows]
    turnover = purpose == Purpose.REBALANCE.value
    np.add.at(s["turnover"], slots[turnover], as_float(cost[turnover]))
    bought = purpose == Purpose.INVEST.value  # the hold benchmark makes the same buys
    np.add.at(s["hold_amount"], (slots[bought], legs[bought]), as_float(coin[bought]))
    np.add.at(s["hold_cash"], slots[bought], as_float(cash[bought]))
    s["round_filled"][slots] = True
    order_rows = np.fromiter(done, np.int64, len(done))
    filled = np.fromiter(done.values(), object, len(done))
    t["filled"][order_rows] = exact.to_words(filled)
    complete = filled == exact.from_words(t["amount"][order_rows])
    t.close_many(order_rows[complete], OrderStatus.FILLED)
    t.mark(order_rows[~complete], OrderStatus.PARTIALLY_FILLED)
    np.subtract.at(s["round_open"], book.slots(t["portfolio_id"][order_rows[complete]]), 1)
    engine.fill_count += len(rows)
    engine._settle(np.unique(slots), now_ms)


def _parse(engine: Engine, fills: Sequence[Fill]) -> tuple[Any, ...]:
    """Each fill's order row and exact amounts (Python ints of 1e-18),
    checked against its order and the fills before it in the call."""
    t = engine.orders
    n = len(fills)
    rows = np.empty(n, np.int64)
    amount, cost, fee = (np.empty(n, dtype=object) for _ in range(3))
    in_base = np.zeros(n, bool)
    price: list[Decimal] = []
    done: dict[int, int] = {}  # order row -> filled after this call
    for k, f in enumerate(fills):
        field = f"fills[{k}]"
        row = t.find(f.client_order_id) if isinstance(f, Fill) else None
        if row is None:
            cid = getattr(f, "client_order_id", f)
            raise FillError(f"{field}.client_order_id: no open order {cid!r}", field=f"{field}.client_order_id", value=cid)
        rows[k] = row
        amount[k] = exact.atoms(f.amount, f"{field}.amount", positive=True)
        price.append(exact.positive(f.price, f"{field}.price"))
        fee[k] = exact.atoms(f.fee, f"{field}.fee")
        ordered = exact.int_of(t["amount"][row])
        done[row] = done.get(row, exact.int_of(t["filled"][row])) + amount[k]
        if done[row] > ordered:
            raise FillError(
                f"{field}.amount: {f.amount} would fill {exact.decimal_of(done[row])} of an order for {exact.decimal_of(ordered)}",
                field=f"{field}.amount",
                value=str(f.amount),
            )
        market = engine.markets[int(t["asset"][row])]
        fee_asset = f.fee_asset or market.quote
        if fee_asset not in (market.base, market.quote):
            raise FillError(f"{field}.fee_asset: {fee_asset!r} is neither {market.base} nor {market.quote}", field=f"{field}.fee_asset", value=fee_asset)
        in_base[k] = fee_asset == market.base
        buy = t["side"][row] == SIDE_BUY
        cost[k] = exact.atoms(f.cost, f"{field}.cost", positive=True) if f.cost is not None else exact.cost(amount[k], price[-1], up=buy)
    return rows, amount, cost, fee, in_base, price, done


def apply_rejects(engine: Engine, rejects: Sequence[Reject], now_ms: int) -> None:
    """See `Engine.on_rejects`."""
    rows: list[int] = []
    seen: set[int] = set()
    for k, r in enumerate(rejects):
        field = f"rejects[{k}].client_order_id"
        row = engine.orders.find(r.client_order_id) if isinstance(r, Reject) else None
        if row is None:
            cid = getattr(r, "client_order_id", r)
            raise FillError(f"{field}: no open order {cid!r}", field=field, value=cid)
        if row in seen:
            raise FillError(f"{field}: {r.client_order_id!r} given twice", field=field, value=r.client_order_id)
        seen.add(row)
        rows.append(row)
    if not rows:
        return
    t, s = engine.orders, engine.state
    index = np.array(rows, np.int64)
    cancelled = np.array([r.kind != "rejected" for r in rejects], bool)
    unsent = np.array([r.kind == "unsent" for r in rejects], bool)
    t.close_many(index[~cancelled], OrderStatus.REJECTED)
    t.close_many(index[cancelled], OrderStatus.CANCELLED)
    slots = engine.book.slots(t["portfolio_id"][index])
    np.subtract.at(s["round_open"], slots, 1)
    s["round_short"][slots] = True
    s["round_refused"][slots[~unsent]] = True
    why = np.where(cancelled, Reason.CANCELLED, Reason.REJECTED).astype(np.uint8)
    engine._events.add(EventKind.ORDER_REJECTED, t["portfolio_id"][index], now_ms, value=t["leg"][index].astype(np.float64), reason=why)
    engine._settle(np.unique(slots), now_ms)
