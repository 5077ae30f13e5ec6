"""`rebal.Engine`: the product around the planner, for a host to embed.

The host feeds ticks, fills and rejects in and gets order batches and events
out (SPEC §3):

    created → funding (initial buy) → active ⇄ rebalancing → terminating → terminated
                                         (paused on demand)

State is columns: the `Book` (holdings, cash, triggers, the orders-out lock)
and, slot for slot beside it, the Engine's own columns (stage, policies,
accounting, the hold benchmark; `rebal.state`). On a tick the policies run
vectorized over those columns (`rebal.policies`), the new-money buys and
the exit sells are worked out in Rust, and `Book.tick` plans the
rebalances; no Python loop runs over portfolios. Fills and rejects are
applied exactly (integers of 1e-18), all or nothing per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from rebal import _rebal
from rebal import config as cfg
from rebal.batch import SIDE_BUY, SKIP_REASONS, OrderBatch, Status
from rebal.book import NEVER, Book
from rebal.columns import Table, decimal_strings, words
from rebal.engine_state import (
    DCA_OFF,
    DCA_ON,
    DCA_PAUSED,
    DCA_STOPPED,
    EXIT_RETURN,
    EXIT_SELL,
    Stage,
    state_columns,
)
from rebal.events import QUOTE_ASSET, EventKind, EventLog, Events, Reason
from rebal.exceptions import ConfigError, FillError, InsufficientFunds, PriceError
from rebal.market import Market
from rebal.orders import Fill, OrderStatus, OrderTable, Purpose, Reject
from rebal.policies import auto_invest, exits

__all__ = ["Engine", "Funds", "Stage"]

ATOMS = 10**18


class Funds(Protocol):
    """The host's side of the user's spot account (SPEC §1: auto-invest
    "draws directly from your Spot Account").

    `withdraw` moves `amounts` (exact decimal strings, one per portfolio)
    from each portfolio's owner's spot balance into the portfolio and says,
    per portfolio, whether it could. (portfolio id, cycle) identifies a
    transfer: asked twice (after a crash), the host must not move it twice.
    Cycle 0 is the initial investment, 1, 2, … the auto-invest cycles.
    """

    def withdraw(
        self, portfolio_ids: npt.NDArray[np.uint64], cycles: npt.NDArray[np.int64], amounts: npt.NDArray[np.str_]
    ) -> npt.NDArray[np.bool_]: ...


class Engine:
    """Every portfolio of one quote asset, from creation to termination.

    markets: one `Market` per asset, all against one quote asset (an
        exchange with USDT and BTC portfolios runs one Engine per quote).
    limits: host policy (number of assets, investment bounds).
    funds: the user's spot accounts; None grants every withdrawal (the host
        settles money outside the Engine).
    """

    def __init__(self, markets: Sequence[Market], *, limits: cfg.Limits | None = None, funds: Funds | None = None) -> None:
        self.book = Book(markets, on_compact=self._keep_slots)
        self.markets = self.book.markets
        self.quote = self.markets[0].quote if self.markets else ""
        self.limits = limits or cfg.Limits()
        self.funds = funds
        self._asset = {m.base: i for i, m in enumerate(self.markets)}
        self._width = max(self.limits.max_assets, 1)
        self.state = Table(state_columns(self._width))
        self.orders = OrderTable()
        self.configs: dict[int, cfg.StrategyConfig] = {}
        self._events = EventLog([m.base for m in self.markets], self.quote)
        self.fill_count = 0
        self.now_ms: int | None = None
        self.prices: npt.NDArray[np.float64] | None = None
        self.saved_configs: set[int] = set()
        """Ids whose config the store already holds."""

    # ------------------------------------------------------------------ lifecycle

    def create(self, config: cfg.StrategyConfig, now_ms: int) -> int:
        """A new portfolio, not yet funded (`fund` draws its investment)."""
        self._check_config(config)
        return int(self.create_many([config], now_ms)[0])

    def create_many(self, configs: Sequence[cfg.StrategyConfig], now_ms: int) -> npt.NDArray[np.uint64]:
        """Many new portfolios at once (columns, not one call each); all or
        none. A bad config is a ConfigError naming it: "configs[3].assets"."""
        now_ms = _time(now_ms)
        for k, c in enumerate(configs):
            self._check_config(c, f"configs[{k}]")
        first = int(self.book.ids.max()) + 1 if len(self.book.ids) else 0
        ids = np.arange(first, first + len(configs), dtype=np.uint64)
        if not len(configs):
            return ids
        self._add_to_book(configs, ids, now_ms)  # checked as a whole first: all or none
        self.state.append(self._state_rows(list(configs), now_ms), len(configs))  # slot for slot beside the Book
        self.configs.update(zip(ids.tolist(), configs))
        self._events.add(EventKind.CREATED, ids, now_ms)
        return ids

    def fund(self, ids: int | Sequence[int] | npt.NDArray[np.uint64], now_ms: int) -> None:
        """Draws each portfolio's investment from the user's spot balance
        (cycle 0); the next tick buys the assets. A refused withdrawal is
        `InsufficientFunds` and funds none of them."""
        now_ms = _time(now_ms)
        slots = self.book.slots(ids)
        s = self.state
        wrong = s["stage"][slots] != Stage.CREATED
        if wrong.any():
            pid = int(self.book.ids[slots[np.argmax(wrong)]])
            raise ConfigError(f"id: portfolio {pid} is {Stage(s['stage'][slots[np.argmax(wrong)]]).name.lower()}, not created", field="id", value=pid)
        pids = self.book.ids[slots]
        amounts = np.array([self.configs[int(i)].investment for i in pids.tolist()], dtype=object)
        amount_words = words([str(a) for a in amounts], "investment")
        granted = self._withdraw(pids, np.zeros(len(pids), np.int64), amount_words)
        if not granted.all():
            pid = int(pids[np.argmin(granted)])
            raise InsufficientFunds(f"fund: the spot balance of portfolio {pid} does not cover its investment", field="investment", value=pid)
        self._add_money(slots, amount_words)
        s["stage"][slots] = Stage.FUNDING
        s["pending_invest"][slots] = True
        self._events.add(EventKind.FUNDED, pids, now_ms, asset=QUOTE_ASSET, amount=amount_words)

    def pause(self, ids: int | Sequence[int], now_ms: int) -> None:
        """No orders of any kind (rebalance, auto-invest, take-profit) until `resume`."""
        slots = self.book.slots(ids)
        self.state["user_paused"][slots] = True
        self.book.pause_slots(slots, True)
        self._events.add(EventKind.PAUSED, self.book.ids[slots], _time(now_ms))

    def resume(self, ids: int | Sequence[int], now_ms: int) -> None:
        slots = self.book.slots(ids)
        self.state["user_paused"][slots] = False
        self.book.pause_slots(slots[self.state["stage"][slots] == Stage.ACTIVE], False)
        self._events.add(EventKind.RESUMED, self.book.ids[slots], _time(now_ms))

    def terminate(self, ids: int | Sequence[int] | npt.NDArray[np.uint64], now_ms: int, *, exit: str | None = None) -> None:
        """Ends portfolios: the next ticks sell everything to the quote asset
        (exit "sell") or hand the coins back as they are ("return"); the
        config's exit mode unless `exit` is given."""
        now_ms = _time(now_ms)
        if exit not in (None, "sell", "return"):
            raise ConfigError(f"exit: must be 'sell' or 'return' (got {exit!r})", field="exit", value=exit)
        slots = self.book.slots(ids)
        stage = self.state["stage"][slots]
        done = stage == Stage.TERMINATED
        if done.any():
            pid = int(self.book.ids[slots[np.argmax(done)]])
            raise ConfigError(f"id: portfolio {pid} is already terminated", field="id", value=pid)
        if exit is not None:
            self.state["exit_mode"][slots] = EXIT_SELL if exit == "sell" else EXIT_RETURN
        self._start_exit(slots, Reason.USER, now_ms)

    def update_markets(self, markets: Sequence[Market]) -> None:
        """New rules for the Engine's markets, e.g. one suspended or delisted
        (`active=False`): its asset is no longer traded, and an exit returns
        it in kind without holding up the rest."""
        self.book.set_markets(markets)
        self.markets = self.book.markets

    def remove(self, ids: int | Sequence[int]) -> None:
        """Forgets terminated portfolios (their slots are reclaimed)."""
        slots = self.book.slots(ids)
        alive = self.state["stage"][slots] != Stage.TERMINATED
        if alive.any():
            pid = int(self.book.ids[slots[np.argmax(alive)]])
            raise ConfigError(f"id: portfolio {pid} is not terminated; terminate it first", field="id", value=pid)
        for pid in self.book.ids[slots].tolist():
            self.configs.pop(int(pid), None)
        self.book.remove(ids)

    def modify(self, id: int, config: cfg.StrategyConfig, now_ms: int) -> None:
        """A new config for a live portfolio. Changing the assets or weights
        stops auto-invest (as the exchanges do); an asset can be dropped only
        once nothing of it is held. Refused while orders are out."""
        now_ms = _time(now_ms)
        self._check_config(config)
        slot = self.book.slot(id)
        s = self.state
        if s["stage"][slot] not in (Stage.CREATED, Stage.FUNDING, Stage.ACTIVE):
            raise ConfigError(f"id: portfolio {id} is {Stage(s['stage'][slot]).name.lower()}; it cannot be modified", field="id", value=id)
        if self.book.columns()["locked"][slot]:
            raise ConfigError(f"id: portfolio {id} has orders out; modify it once they are done", field="id", value=id)
        old = self.configs[int(id)]
        held = self.book.portfolio(id)["holdings"]
        new_weights = cfg.weights(config)
        for asset, amount in held.items():
            if asset not in new_weights and amount != 0:
                raise ConfigError(
                    f"assets[{asset}]: still holding {amount}; it can leave the portfolio once sold",
                    field=f"assets[{asset}]",
                    value=str(amount),
                )
        composition_changed = cfg.weights(old) != new_weights
        hold = {self.markets[a].base: (float(x)) for a, x in zip(s["hold_asset"][slot].tolist(), s["hold_amount"][slot].tolist()) if a >= 0}
        self.book.update(id, targets=new_weights, **_book_settings(config, now_ms))
        slot = self.book.slot(id)  # an update may compact the Book
        one = self._state_rows([config], now_ms)
        for name in ("exit_mode", "take_profit", "stop_loss", "trail_arm", "trail_drop"):
            s[name][slot] = one[name][0]
        exits.set_levels(s, np.array([slot]))
        assets = list(new_weights)
        s["hold_asset"][slot] = -1
        s["hold_amount"][slot] = 0.0
        s["hold_asset"][slot, : len(assets)] = [self._asset[a] for a in assets]
        s["hold_amount"][slot, : len(assets)] = [hold.get(a, 0.0) for a in assets]
        if config.auto_invest != old.auto_invest:  # new auto-invest settings: a new schedule from now
            for name in auto_invest.DCA_COLUMNS:
                if name not in ("dca_last_ms", "dca_cycles"):
                    s[name][slot] = one[name][0]
            auto_invest.set_level(s, np.array([slot]))
        if composition_changed and config.auto_invest == old.auto_invest and s["dca_state"][slot] == DCA_ON:
            s["dca_state"][slot] = DCA_STOPPED
            self._events.add(EventKind.AUTO_INVEST_STOPPED, [id], now_ms, reason=Reason.COMPOSITION_CHANGED)
        self.configs[int(id)] = config
        self._events.add(EventKind.MODIFIED, [id], now_ms)

    # ------------------------------------------------------------------ the tick

    def on_tick(self, now_ms: int, prices: npt.ArrayLike) -> OrderBatch:
        """Checks every portfolio at `prices` (one per market, float64) and
        returns the orders to send: exits, new-money buys and rebalances, with
        their `purpose`. Every portfolio in the batch is locked until its
        orders are filled, rejected or cancelled.

        One Book scan values everything; the policies decide on it (an exit
        beats a rebalance, a rebalance goes before new money); one Book plan
        makes every order in a single parallel pass."""
        now_ms = _time(now_ms)
        prices = _prices(prices, len(self.markets))
        book, s = self.book, self.state
        stage = s["stage"]
        self.orders.prune()

        scan = book.scan(prices, now_ms)
        value, status = scan.value, scan.status
        active = status != Status.INACTIVE
        exits.track_drawdown(s, value, active)

        # Take-profit / stop-loss, then auto-invest, on portfolios without orders out.
        free = ~book.columns()["locked"]
        reason = exits.check(s, value, active & free)
        hits = np.flatnonzero(reason)
        status[hits] = Status.IDLE  # the exit, not a rebalance
        for code, kind in exits.EVENTS.items():
            hit = hits[reason[hits] == code]
            self._events.add(kind, book.ids[hit], now_ms, value=exits.profit(value[hit], s["net_invested_float"][hit]))
            self._start_exit(hit, Reason(code), now_ms)
        # A rebalance first, new money at the next tick; an exit instead of either.
        ready = auto_invest.ready(s, now_ms)
        ready = ready[active[ready] & free[ready] & (status[ready] != Status.REBALANCE) & (stage[ready] == Stage.ACTIVE)]
        self._auto_invest(ready, value, now_ms)

        # Who sells out and who buys with new money; returns in kind finish now.
        ending = np.flatnonzero((stage == Stage.TERMINATING) & free)
        self._finish(ending[s["exit_mode"][ending] == EXIT_RETURN], now_ms)
        selling = ending[s["exit_mode"][ending] == EXIT_SELL]
        investing = np.flatnonzero(s["pending_invest"] & free)
        investing = investing[~s["user_paused"][investing] & ((stage[investing] == Stage.FUNDING) | (stage[investing] == Stage.ACTIVE))]
        s["pending_invest"][investing] = False

        batch = book.plan(scan, invest=investing, exit=selling)
        rounds = _rounds(batch.portfolio)
        self._after_plan(batch, rounds, selling, investing, now_ms)
        self._record_orders(batch, rounds, now_ms)
        self.now_ms, self.prices = now_ms, prices
        return batch

    def _values_of(self, slots: npt.NDArray[np.int64], prices: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Value of a few portfolios (those the Book's scan skips) at `prices`."""
        p, h = self.book.columns(), self.book.holding_columns()
        start, counts = p["start"][slots], p["stop"][slots] - p["start"][slots]
        rows = np.repeat(start - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(int(counts.sum()))
        held = h["amount_float"][rows]
        worth = np.where(held != 0, held * prices[h["asset"][rows]], 0.0)  # an unpriced asset not held is worth 0
        owner = np.repeat(np.arange(len(slots)), counts)
        values: npt.NDArray[np.float64] = p["cash_float"][slots] + np.bincount(owner, weights=worth, minlength=len(slots))
        return values

    # ------------------------------------------------------------------ fills and rejects

    def on_fills(self, fills: Sequence[Fill]) -> None:
        """Applies (partial) fills: holdings, cash, fees, accounting. Every
        fill is checked first (known open order, positive amount, not more
        than ordered, fee asset, no balance below zero); one bad fill
        refuses the call and changes nothing. The fills of one call count
        together, so a round's sells pay for its buys in any order.

        Each fill is parsed in Python (its Decimals); the rest runs over
        columns: exact amounts as arrays of Python ints, then numpy."""
        if not len(fills):
            return
        book, s, t = self.book, self.state, self.orders
        rows, amount, cost, fee, in_base, price, done = self._parse_fills(fills)
        slots = book.slots(t["portfolio_id"][rows])
        legs = t["leg"][rows].astype(np.int64)
        holdings = book.columns()["start"][slots] + legs
        buy = t["side"][rows] == SIDE_BUY
        base_fee = np.where(in_base, fee, 0)
        quote_fee = np.where(in_base, 0, fee)
        coin = np.where(buy, amount - base_fee, -(amount + base_fee))
        cash = np.where(buy, -(cost + quote_fee), cost - quote_fee)

        # Balances after the whole call, exact; refused if any would go below zero.
        new_amounts, amount_rows = _balances(book.holding_columns()["amount"], holdings, coin)
        new_cash, cash_slots = _balances(book.columns()["cash"], slots, cash)
        for values, index, where, name in ((new_amounts, amount_rows, holdings, "base"), (new_cash, cash_slots, slots, "quote")):
            negative = values < 0
            if negative.any():
                k = int(np.argmax(np.isin(where, index[negative])))
                market = self.markets[int(t["asset"][rows[k]])]
                asset = market.base if name == "base" else market.quote
                raise FillError(f"fills[{k}]: would take the portfolio's {asset} below zero", field=f"fills[{k}]", value=fills[k].client_order_id)

        # Everything checked: write.
        book.set_exact(cash_slots, _to_words(new_cash), amount_rows, _to_words(new_amounts))
        as_float = np.vectorize(lambda v: v / ATOMS, otypes=[np.float64])
        fee_value = as_float(quote_fee) + as_float(base_fee) * np.array([float(p) for p in price])
        np.add.at(s["fees_paid"], slots, fee_value)
        purpose = t["purpose"][rows]
        turnover = purpose == Purpose.REBALANCE
        np.add.at(s["turnover"], slots[turnover], as_float(cost[turnover]))
        bought = purpose == Purpose.INVEST  # the hold benchmark makes the same buys
        np.add.at(s["hold_amount"], (slots[bought], legs[bought]), as_float(coin[bought]))
        np.add.at(s["hold_cash"], slots[bought], as_float(cash[bought]))
        s["round_filled"][slots] = True
        order_rows = np.array(list(done), np.int64)
        filled = np.array(list(done.values()), dtype=object)
        t["filled"][order_rows] = _to_words(filled)
        complete = filled == _from_words(t["amount"][order_rows])
        t.close_many(order_rows[complete], OrderStatus.FILLED)
        t.mark(order_rows[~complete], OrderStatus.PARTIALLY_FILLED)
        np.subtract.at(s["round_open"], book.slots(t["portfolio_id"][order_rows[complete]]), 1)
        self.fill_count += len(fills)
        self._settle(slots)

    def _parse_fills(self, fills: Sequence[Fill]) -> tuple[Any, ...]:
        """Each fill's order row and exact amounts (Python ints of 1e-18),
        checked against its order and the fills before it in the call."""
        t = self.orders
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
            amount[k] = _atoms(f.amount, f"{field}.amount", positive=True)
            price.append(_positive(f.price, f"{field}.price"))
            fee[k] = _atoms(f.fee, f"{field}.fee")
            ordered = _int_of(t["amount"][row])
            done[row] = done.get(row, _int_of(t["filled"][row])) + amount[k]
            if done[row] > ordered:
                raise FillError(
                    f"{field}.amount: {f.amount} would fill {_dec(done[row])} of an order for {_dec(ordered)}",
                    field=f"{field}.amount",
                    value=str(f.amount),
                )
            market = self.markets[int(t["asset"][row])]
            fee_asset = f.fee_asset or market.quote
            if fee_asset not in (market.base, market.quote):
                raise FillError(f"{field}.fee_asset: {fee_asset!r} is neither {market.base} nor {market.quote}", field=f"{field}.fee_asset", value=fee_asset)
            in_base[k] = fee_asset == market.base
            buy = t["side"][row] == SIDE_BUY
            cost[k] = _atoms(f.cost, f"{field}.cost", positive=True) if f.cost is not None else _cost(amount[k], price[-1], up=buy)
        return rows, amount, cost, fee, in_base, price, done

    def on_rejects(self, rejects: Sequence[Reject]) -> None:
        """Orders refused or cancelled by the venue (what they filled before
        stays). A portfolio with no orders left is unlocked: the next tick
        re-plans it."""
        rows: list[int] = []
        seen: set[int] = set()
        for k, r in enumerate(rejects):
            field = f"rejects[{k}].client_order_id"
            row = self.orders.find(r.client_order_id) if isinstance(r, Reject) else None
            if row is None:
                cid = getattr(r, "client_order_id", r)
                raise FillError(f"{field}: no open order {cid!r}", field=field, value=cid)
            if row in seen:
                raise FillError(f"{field}: {r.client_order_id!r} given twice", field=field, value=r.client_order_id)
            seen.add(row)
            rows.append(row)
        if not rows:
            return
        t = self.orders
        index = np.array(rows, np.int64)
        cancelled = np.array([r.kind == "cancelled" for r in rejects], bool)
        t.close_many(index[~cancelled], OrderStatus.REJECTED)
        t.close_many(index[cancelled], OrderStatus.CANCELLED)
        slots = self.book.slots(t["portfolio_id"][index])
        np.subtract.at(self.state["round_open"], slots, 1)
        now = self.now_ms if self.now_ms is not None else 0
        self._events.add(EventKind.ORDER_REJECTED, t["portfolio_id"][index], now, value=t["leg"][index].astype(np.float64), reason=Reason.REJECTED)
        self._settle(slots)

    # ------------------------------------------------------------------ reading

    def events(self) -> Events:
        """Events since the last call (drains the log)."""
        return self._events.drain()

    def pending_events(self) -> int:
        return len(self._events)

    def stage(self, id: int) -> Stage:
        return Stage(int(self.state["stage"][self.book.slot(id)]))

    def accounting(self, ids: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """Per portfolio, at the last tick's prices: net invested (exact
        strings), value, profit and profit %, annualised return, fees paid,
        turnover, rebalances, max drawdown, and the hold benchmark (the same
        buys, never rebalanced) with its profit %."""
        from rebal.accounting import report

        slots = np.flatnonzero(self.book.columns()["alive"]) if ids is None else self.book.slots(ids)
        return report(self, slots)

    # ------------------------------------------------------------------ saving

    def snapshot(self) -> bytes:
        """Every column of the Engine (Book, state, orders, unread events) as
        bytes; `restore` rebuilds it exactly. Configs are kept apart (`configs`)."""
        from rebal.store import save_arrays

        arrays = {f"book.{k}": v for k, v in self.book._portfolios.arrays().items()}
        arrays.update({f"holdings.{k}": v for k, v in self.book._holdings.arrays().items()})
        arrays.update({f"state.{k}": v for k, v in self.state.arrays().items()})
        arrays.update({f"orders.{k}": v for k, v in self.orders.table.arrays().items()})
        arrays.update({f"events.{k}": v for k, v in self._events.columns().items()})
        meta = {"now_ms": self.now_ms, "fill_count": self.fill_count, "unused_rows": self.book._unused_rows}
        arrays["meta"] = np.array(msgspec.json.encode(meta).decode())
        if self.prices is not None:
            arrays["prices"] = self.prices
        return save_arrays(arrays)

    @classmethod
    def restore(
        cls,
        blob: bytes,
        markets: Sequence[Market],
        configs: dict[int, cfg.StrategyConfig],
        *,
        limits: cfg.Limits | None = None,
        funds: Funds | None = None,
    ) -> Engine:
        from rebal.store import load_arrays

        arrays = load_arrays(blob)
        engine = cls(markets, limits=limits, funds=funds)

        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + ".")}

        width = part("state")["hold_asset"].shape[1]
        engine._width = width
        engine.state = Table(state_columns(width))
        engine.book._portfolios.load(part("book"))
        engine.book._holdings.load(part("holdings"))
        engine.state.load(part("state"))
        engine.orders.load(part("orders"))
        engine._events.load(part("events"))
        meta = msgspec.json.decode(str(arrays["meta"]))
        engine.now_ms, engine.fill_count = meta["now_ms"], meta["fill_count"]
        engine.book._unused_rows = meta["unused_rows"]
        engine.prices = arrays.get("prices")
        engine.configs = dict(configs)
        return engine

    # ------------------------------------------------------------------ internals

    def _book_columns(self) -> dict[str, np.ndarray]:
        return {**self.book._portfolios.views(), **self.book._holdings.views()}

    def _keep_slots(self, keep: npt.NDArray[np.int64]) -> None:
        self.state.keep(keep)

    def _check_config(self, c: cfg.StrategyConfig, where: str = "") -> None:
        """Checks a config against the host's limits and this Engine's
        markets. `where` prefixes the field ("configs[3]" → "configs[3].assets")."""
        def at(field: str) -> str:
            return f"{where}.{field}" if where else field

        if not isinstance(c, cfg.StrategyConfig):
            raise ConfigError(f"{where or 'config'}: expected a StrategyConfig (got {type(c).__name__})", field=where or "config", value=type(c).__name__)
        try:
            cfg.validate(c, self.limits)
        except ConfigError as e:
            if not where:
                raise
            raise ConfigError(f"{where}.{e}", field=at(e.field or ""), value=e.value) from e
        if c.quote != self.quote:
            raise ConfigError(f"{at('quote')}: this Engine runs {self.quote} portfolios (got {c.quote!r})", field=at("quote"), value=c.quote)
        for asset in c.assets:
            if asset not in self._asset:
                raise ConfigError(f"{at(f'assets[{asset}]')}: no {asset}/{self.quote} market", field=at(f"assets[{asset}]"), value=asset)

    def _add_to_book(self, configs: Sequence[cfg.StrategyConfig], ids: npt.NDArray[np.uint64], now_ms: int) -> None:
        """The portfolios' holdings (none yet), weights and strategies into the Book, paused."""
        counts = np.array([len(c.assets) for c in configs], np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        asset = np.array([self._asset[a] for c in configs for a in c.assets], np.int32)
        target = np.array([w for c in configs for w in cfg.weights(c).values()], np.float64)
        settings = [_book_settings(c, now_ms) for c in configs]
        columns: dict[str, Any] = {key: [st.get(key) for st in settings] for key in _BOOK_SETTINGS}
        for key in ("threshold", "gate", "fee_rate"):
            columns[key] = np.array([np.nan if v is None else v for v in columns[key]], np.float64)
        for key in ("interval_ms", "next_check_ms"):
            columns[key] = np.array([0 if v is None else v for v in columns[key]], np.int64)
        n = len(configs)
        self.book.add_columns(offsets, asset, np.zeros((len(asset), 2), np.int64), target, np.zeros((n, 2), np.int64), id=ids, **columns)
        self.book.pause_slots(np.arange(len(self.book.ids) - n, len(self.book.ids)), True)


    def _state_rows(self, configs: list[cfg.StrategyConfig], now_ms: int) -> dict[str, np.ndarray]:
        n = len(configs)
        rows = {name: np.zeros((n, *shape), dtype) for name, (dtype, shape) in state_columns(self._width).items()}
        rows["stage"][:] = Stage.CREATED
        rows["exit_mode"][:] = [EXIT_SELL if c.exit == "sell" else EXIT_RETURN for c in configs]
        rows.update(exits.columns(configs))
        rows["created_ms"][:] = now_ms
        rows["hold_asset"][:] = -1
        for k, c in enumerate(configs):
            rows["hold_asset"][k, : len(c.assets)] = [self._asset[a] for a in c.assets]
        rows.update(auto_invest.columns(configs, now_ms))
        return rows

    def _withdraw(self, pids: npt.NDArray[np.uint64], cycles: npt.NDArray[np.int64], amount_words: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        if self.funds is None or len(pids) == 0:
            return np.ones(len(pids), bool)
        granted = np.asarray(self.funds.withdraw(pids, cycles, decimal_strings(amount_words)), dtype=bool)
        if granted.shape != (len(pids),):
            raise ConfigError(f"funds.withdraw: must return one bool per portfolio ({len(pids)}), got shape {granted.shape}", field="funds", value=granted.shape)
        return granted

    def _add_money(self, slots: npt.NDArray[np.int64], amount_words: npt.NDArray[np.int64]) -> None:
        """New money into the portfolios: cash, net invested, the hold benchmark's cash."""
        s = self.state
        self.book.add_cash(slots, amount_words)
        net_before = s["net_invested_float"][slots]
        _rebal.add_amounts(s["net_invested"], slots, amount_words, "net_invested")
        s["net_invested_float"][slots] = _rebal.amount_floats(np.ascontiguousarray(s["net_invested"][slots]))
        s["hold_cash"][slots] += _rebal.amount_floats(np.ascontiguousarray(amount_words))
        exits.set_levels(s, slots)
        exits.rescale_peak(s, slots, net_before)
        auto_invest.set_level(s, slots)

    def _auto_invest(self, ready: npt.NDArray[np.int64], value: npt.NDArray[np.float64], now_ms: int) -> None:
        s = self.state
        due = auto_invest.due(s, ready, value)
        if not len(due):
            return
        pids = self.book.ids[due]
        # The next run is set whatever happens, so a refused cycle is not retried every tick.
        s["dca_next_ms"][due] = auto_invest.next_ready(s, due, now_ms)
        over_max, over_cap = auto_invest.limits(s, due, float(self.limits.max_investment))
        for mask, state, kind, why in ((over_max, DCA_STOPPED, EventKind.AUTO_INVEST_STOPPED, Reason.MAX_INVESTMENT), (over_cap & ~over_max, DCA_PAUSED, EventKind.AUTO_INVEST_PAUSED, Reason.CAP_REACHED)):
            s["dca_state"][due[mask]] = state
            self._events.add(kind, pids[mask], now_ms, reason=why)
        go = ~(over_max | over_cap)
        due, pids = due[go], pids[go]
        amounts = np.ascontiguousarray(s["dca_amount"][due])
        cycles = s["dca_cycles"][due] + 1
        granted = self._withdraw(pids, cycles, amounts)
        refused = due[~granted]
        s["dca_state"][refused] = DCA_STOPPED
        self._events.add(EventKind.AUTO_INVEST_STOPPED, pids[~granted], now_ms, reason=Reason.INSUFFICIENT_BALANCE)
        due, pids, amounts, cycles = due[granted], pids[granted], amounts[granted], cycles[granted]
        if not len(due):
            return
        self._add_money(due, amounts)
        s["dca_cycles"][due] = cycles
        s["dca_last_ms"][due] = now_ms
        s["pending_invest"][due] = True
        self._events.add(EventKind.AUTO_INVEST_EXECUTED, pids, now_ms, asset=QUOTE_ASSET, amount=amounts)
        # Reaching the cap pauses auto-invest from the next cycle on.
        at_cap = due[s["net_invested_float"][due] >= s["dca_cap"][due] - auto_invest.TOLERANCE]
        s["dca_state"][at_cap] = DCA_PAUSED
        self._events.add(EventKind.AUTO_INVEST_PAUSED, self.book.ids[at_cap], now_ms, reason=Reason.CAP_REACHED)

    def _start_exit(self, slots: npt.NDArray[np.int64], why: Reason, now_ms: int) -> None:
        s = self.state
        s["stage"][slots] = Stage.TERMINATING
        s["exit_reason"][slots] = why
        s["pending_invest"][slots] = False
        s["dca_state"][slots] = np.where(s["dca_state"][slots] == DCA_OFF, DCA_OFF, DCA_STOPPED)
        self.book.pause_slots(slots, True)
        self._events.add(EventKind.TERMINATING, self.book.ids[slots], now_ms, reason=why)
        never_funded = slots[self._funded_nothing(slots)]
        if len(never_funded):
            self._finish(never_funded, now_ms)

    def _funded_nothing(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        nothing: npt.NDArray[np.bool_] = (self.state["net_invested_float"][slots] == 0) & (self.book.columns()["cash_float"][slots] == 0)
        return nothing

    def _after_plan(self, batch: OrderBatch, rounds: _Rounds, selling: npt.NDArray[np.int64], investing: npt.NDArray[np.int64], now_ms: int) -> None:
        """Events of the rounds that start; exits with nothing left to sell
        finish (the rest is returned in kind); funding whose money buys
        nothing (all below the market minimums) is active anyway."""
        slots, counts, first = rounds
        rebalancing = batch.purpose[first] == Purpose.REBALANCE
        self._events.add(EventKind.REBALANCE_STARTED, self.book.ids[slots[rebalancing]], now_ms, value=counts[rebalancing])
        finished = np.setdiff1d(selling, slots, assume_unique=True)
        if len(finished):
            # What stays behind is returned in kind: say why (a suspended market, or dust).
            skipped = batch.skipped
            inactive = (skipped.purpose == Purpose.EXIT) & (batch.skip_reason == SKIP_REASONS.index("market_inactive"))
            inactive_rows = self.book.columns()["start"][skipped.portfolio[inactive]] + skipped.leg[inactive]
            self._finish(finished, now_ms, inactive_rows=inactive_rows)
        s = self.state
        funding = investing[s["stage"][investing] == Stage.FUNDING]
        self._activate(np.setdiff1d(funding, slots, assume_unique=True), now_ms)

    def _finish(self, slots: npt.NDArray[np.int64], now_ms: int, *, inactive_rows: npt.NDArray[np.int64] | None = None) -> None:
        """Hands every coin and the cash of `slots` back (ASSET_RETURNED
        events with exact amounts) and marks them terminated. Without
        `inactive_rows` (the exit mode is "return") every coin goes back
        as it is; with them, what the exit could not sell: the coins of
        those rows' suspended markets, and dust below the market minimums."""
        if not len(slots):
            return
        book, s = self.book, self.state
        p, h = book.columns(), book.holding_columns()
        pids = book.ids[slots]
        start, counts = p["start"][slots], p["stop"][slots] - p["start"][slots]
        owner = np.repeat(np.arange(len(slots)), counts)
        rows = np.repeat(start - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(int(counts.sum()))
        amounts = h["amount"][rows]
        held = (amounts != 0).any(axis=1)
        if inactive_rows is None:
            reason = np.full(len(rows), Reason.EXIT_RETURN, np.uint8)
        else:
            reason = np.where(np.isin(rows, inactive_rows), Reason.MARKET_INACTIVE, Reason.BELOW_MINIMUM).astype(np.uint8)
        self._events.add(EventKind.ASSET_RETURNED, pids[owner][held], now_ms, asset=h["asset"][rows][held], amount=amounts[held], reason=reason[held])
        cash = p["cash"][slots]
        has_cash = (cash != 0).any(axis=1)
        self._events.add(EventKind.ASSET_RETURNED, pids[has_cash], now_ms, asset=QUOTE_ASSET, amount=cash[has_cash], reason=Reason.EXIT_RETURN)
        final_value = self._values_of(slots, self.prices if self.prices is not None else np.full(len(self.markets), np.nan))
        book.set_exact(slots, np.zeros((len(slots), 2), np.int64), rows, np.zeros((len(rows), 2), np.int64))
        s["stage"][slots] = Stage.TERMINATED
        s["pending_invest"][slots] = False
        self._events.add(EventKind.TERMINATED, pids, now_ms, value=final_value, reason=s["exit_reason"][slots])

    def _activate(self, slots: npt.NDArray[np.int64], now_ms: int) -> None:
        if not len(slots):
            return
        s = self.state
        s["stage"][slots] = Stage.ACTIVE
        self.book.pause_slots(slots[~s["user_paused"][slots]], False)
        self._events.add(EventKind.ACTIVE, self.book.ids[slots], now_ms)

    def _record_orders(self, batch: OrderBatch, rounds: _Rounds, now_ms: int) -> None:
        """Appends a tick's orders to the order table; each portfolio in it starts a round."""
        n = len(batch)
        if not n:
            return
        s = self.state
        slots, counts, first = rounds
        s["round_open"][slots] = counts
        s["round_filled"][slots] = False
        s["round_purpose"][slots] = batch.purpose[first]
        self.orders.append(
            {
                "portfolio_id": batch.portfolio_id,
                "epoch": batch.epoch,
                "leg": batch.leg,
                "asset": batch.asset,
                "side": batch.side,
                "purpose": batch.purpose,
                "amount": batch.amount_words,
                "filled": np.zeros((n, 2), np.int64),
                "status": np.zeros(n, np.uint8),  # OrderStatus.OPEN
                "time_ms": np.full(n, now_ms, np.int64),
                "dirty": np.ones(n, bool),
            }
        )

    def _settle(self, slots: npt.NDArray[np.int64]) -> None:
        """Portfolios among `slots` whose round of orders is over: unlocked, with their events."""
        s, book = self.state, self.book
        slots = np.unique(slots)
        slots = slots[(s["round_open"][slots] == 0) & book.columns()["locked"][slots]]
        if not len(slots):
            return
        now = self.now_ms if self.now_ms is not None else 0
        book.lock_slots(slots, False)
        purpose, filled = s["round_purpose"][slots], s["round_filled"][slots]
        rebalanced = slots[(purpose == Purpose.REBALANCE) & filled]
        s["rebalances"][rebalanced] += 1
        self._events.add(EventKind.REBALANCE_DONE, book.ids[rebalanced], now)
        # A round that filled nothing was no rebalance: no cooldown after it.
        book._portfolios["last_rebalance_ms"][slots[(purpose == Purpose.REBALANCE) & ~filled]] = NEVER
        self._activate(slots[(purpose == Purpose.INVEST) & (s["stage"][slots] == Stage.FUNDING)], now)


# ---------------------------------------------------------------------- helpers


_BOOK_SETTINGS = ("trigger", "threshold", "threshold_kind", "gate", "interval_ms", "next_check_ms", "cooldown_ms", "destination", "fee_rate")


def _book_settings(c: cfg.StrategyConfig, now_ms: int) -> dict[str, Any]:
    """The Book's strategy keywords of one config (percent → fractions)."""
    t = c.trigger
    settings: dict[str, Any] = {"cooldown_ms": cfg.cooldown_ms(c), "destination": c.destination, "fee_rate": c.fee_rate, "threshold_kind": "absolute"}
    if isinstance(t, cfg.ThresholdTrigger):
        settings.update(trigger="threshold", threshold=t.threshold / 100, threshold_kind=t.kind)
    else:
        interval = cfg.interval_ms(t)
        settings.update(trigger="calendar", interval_ms=interval, next_check_ms=now_ms + interval, gate=None if t.gate is None else t.gate / 100)
    return settings


_Rounds = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]


def _rounds(portfolio: npt.NDArray[np.int64]) -> _Rounds:
    """The portfolios of a batch's orders (each starts a round), how many
    orders each has and where its first one is (a portfolio's orders are
    contiguous in a batch)."""
    if not len(portfolio):
        return portfolio, portfolio, portfolio
    starts = np.flatnonzero(portfolio[1:] != portfolio[:-1])
    starts += 1
    bounds = np.concatenate([[0], starts, [len(portfolio)]])
    return portfolio[bounds[:-1]], np.diff(bounds), bounds[:-1]


def _time(now_ms: Any) -> int:
    if isinstance(now_ms, bool) or not isinstance(now_ms, (int, np.integer)):
        raise ConfigError(f"now_ms: must be an integer of epoch milliseconds (got {now_ms!r})", field="now_ms", value=now_ms)
    return int(now_ms)


def _prices(prices: npt.ArrayLike, n: int) -> npt.NDArray[np.float64]:
    try:
        array = np.ascontiguousarray(prices, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise PriceError(f"prices: not an array of numbers ({e})", field="prices", value=repr(prices)[:80]) from e
    if array.shape != (n,):
        raise PriceError(f"prices: expected one per market ({n}), got shape {array.shape}", field="prices", value=array.shape)
    return array


def _atoms(value: Any, field: str, *, positive: bool = False) -> int:
    """An exact decimal as an integer of 1e-18 units; refuses NaN, negatives, finer values."""
    try:
        d = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except Exception as e:
        raise FillError(f"{field}: not a number ({value!r})", field=field, value=value) from e
    if not d.is_finite() or d < 0 or (positive and d == 0):
        raise FillError(f"{field}: must be {'> 0' if positive else '≥ 0'} (got {value})", field=field, value=str(value))
    atoms = d * ATOMS
    if atoms != atoms.to_integral_value():
        raise FillError(f"{field}: finer than 1e-18 (got {value})", field=field, value=str(value))
    return int(atoms)


def _positive(value: Any, field: str) -> Decimal:
    try:
        d = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except Exception as e:
        raise FillError(f"{field}: not a number ({value!r})", field=field, value=value) from e
    if not d.is_finite() or d <= 0:
        raise FillError(f"{field}: must be > 0 (got {value})", field=field, value=str(value))
    return d


def _cost(amount_atoms: int, price: Decimal, *, up: bool) -> int:
    """amount × price in atoms, rounded against the user (a buy costs the
    larger neighbour, a sell yields the smaller one)."""
    exact = Decimal(amount_atoms) * price
    whole = int(exact)  # toward zero: both are positive
    return whole + 1 if up and exact != whole else whole


_LOW = (1 << 64) - 1


def _from_words(words: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
    """(m, 2) words as Python ints (an object array: exact, vectorized)."""
    low = words[:, 0].view(np.uint64).astype(object)
    high = words[:, 1].astype(object)
    result: npt.NDArray[np.object_] = (high << 64) | low
    return result


def _to_words(values: npt.NDArray[np.object_]) -> npt.NDArray[np.int64]:
    """Python ints (object array) as (m, 2) words; each must fit an i128."""
    values = np.asarray(values, dtype=object)
    out = np.empty((len(values), 2), np.int64)
    out[:, 0] = (values & _LOW).astype(np.uint64).view(np.int64)
    out[:, 1] = (values >> 64).astype(np.int64)
    return out


def _balances(column: npt.NDArray[np.int64], index: npt.NDArray[np.int64], deltas: npt.NDArray[np.object_]) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]]:
    """The exact values of `column` at the distinct `index`es after adding
    every delta (repeated indexes accumulate), and those indexes."""
    unique, position = np.unique(index, return_inverse=True)
    values = _from_words(column[unique])
    np.add.at(values, position, deltas)
    return values, unique


def _int_of(word_pair: npt.NDArray[np.int64]) -> int:
    low, high = int(word_pair[0]), int(word_pair[1])
    return (high << 64) | (low & 0xFFFFFFFFFFFFFFFF)


def _dec(atoms: int) -> Decimal:
    return Decimal(atoms) / ATOMS
