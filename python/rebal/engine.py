"""`rebal.Engine`: the product around the planner, for a host to embed.

The host feeds ticks, fills and rejects in and gets order batches and events
out (SPEC §3):

    created → funding (initial buy) → active ⇄ rebalancing → terminating → terminated
                                         (paused on demand)

State is columns: the `Book` (holdings, cash, triggers, the orders-out lock)
and, slot for slot beside it, the Engine's own columns (stage, policies,
accounting, the hold benchmark; `rebal.engine_state`). A tick is one Book
scan, the policies over its values (numpy, `rebal.policies`), and one Book
plan that makes every order in a single parallel pass; no Python loop runs
over portfolios. Fills and rejects are applied exactly (`rebal.fills`).

A tick checks everything that can fail (prices, the spot-account call)
before it changes anything, so an error leaves the Engine as it was, give
or take idempotent updates (peaks, armed trailing take-profits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from rebal import _rebal
from rebal import config as cfg
from rebal.batch import SKIP_REASONS, OrderBatch, Status
from rebal.book import NEVER, Book
from rebal.columns import Table, decimal_strings, words
from rebal.engine_state import (
    DCA_OFF,
    DCA_ON,
    DCA_PAUSED,
    DCA_STOPPED,
    EXIT_ATTEMPTS,
    EXIT_RETURN,
    EXIT_SELL,
    Stage,
    state_columns,
)
from rebal.events import QUOTE_ASSET, EventKind, EventLog, Events, Reason
from rebal.exceptions import ConfigError, InsufficientFunds, PriceError
from rebal.fills import apply_fills, apply_full_fills, apply_rejects
from rebal.market import Market
from rebal.orders import Fill, OrderTable, Purpose, Reject
from rebal.policies import auto_invest, exits

__all__ = ["Engine", "Funds", "Stage"]

Ids = int | Sequence[int] | npt.NDArray[np.uint64]


class Funds(Protocol):
    """The host's side of the users' spot accounts (SPEC §1: auto-invest
    "draws directly from your Spot Account").

    `withdraw` moves `amounts` (exact decimal strings, one per portfolio)
    from each portfolio's owner's spot balance into the portfolio and says,
    per portfolio, whether it could. (portfolio id, transfer) identifies a
    request; transfer numbers count up per portfolio and are never reused,
    except that a request the Engine may not have seen answered (a crash, an
    exception) is asked again with the same number and amount: the host must
    answer it as before and never move the money twice.
    """

    def withdraw(
        self, portfolio_ids: npt.NDArray[np.uint64], transfers: npt.NDArray[np.int64], amounts: npt.NDArray[np.str_]
    ) -> npt.NDArray[np.bool_]: ...


class Engine:
    """Every portfolio of one quote asset, from creation to termination.

    markets: one `Market` per asset, all against one quote asset (an
        exchange with USDT and BTC portfolios runs one Engine per quote).
    limits: host policy (number of assets, investment bounds).
    funds: the users' spot accounts; None grants every withdrawal (the host
        settles money outside the Engine).
    first_id: where this Engine's portfolio ids start (they are never
        reused). Engines that share a venue or a spot ledger need disjoint
        ids, since client order ids and transfers are keyed by them.
    events: False keeps no events at all, for a host that reads none (a
        backtest): `events()` is always empty and a tick skips making them.
    """

    def __init__(
        self,
        markets: Sequence[Market],
        *,
        limits: cfg.Limits | None = None,
        funds: Funds | None = None,
        first_id: int = 0,
        events: bool = True,
    ) -> None:
        self.book = Book(markets, on_compact=self._keep_slots)
        self.book.next_id = first_id
        self.markets = self.book.markets
        self.quote = self.markets[0].quote if self.markets else ""
        self.limits = limits or cfg.Limits()
        self.funds = funds
        self._asset = {m.base: i for i, m in enumerate(self.markets)}
        self._width = max(self.limits.max_assets, 1)
        self.state = Table(state_columns(self._width))
        self.orders = OrderTable()
        self.configs: dict[int, cfg.StrategyConfig] = {}
        self._events = EventLog([m.base for m in self.markets], self.quote, recording=events)
        self.fill_count = 0
        self.now_ms: int | None = None
        self.prices: npt.NDArray[np.float64] | None = None
        self.config_changes: set[int] = set()
        """Ids whose config a store has not saved yet (new or modified)."""
        self.config_removals: set[int] = set()
        """Ids removed since a store last saved."""
        self._last_orders: tuple[OrderBatch, _Rounds] | None = None
        """The last tick's batch and its rounds: its orders are the last rows
        appended to the order table. Forgotten at the next tick and when the
        Book compacts (its slots move)."""
        self._exits_on: bool | None = None
        """Whether any portfolio has an exit level a value can reach (see
        `_exit_levels`); None: not known, worked out at the next tick."""
        self._dca_earliest: int | float | None = None
        """The earliest time an auto-invest cycle may run (see `_auto_invest_from`); None: not known."""
        self._moves: bool | None = None
        """Whether money moves besides rebalances (see `_money_moves`); None: not known."""
        self.money_added = 0
        """Counts the calls that brought new money in (funding, auto-invest):
        while it stays the same, `net_invested` has not changed."""

    # ------------------------------------------------------------------ lifecycle

    def create(self, config: cfg.StrategyConfig, now_ms: int, *, id: int | None = None) -> int:
        """A new portfolio, not yet funded (`fund` draws its investment).
        `id` is the host's own (default: the next unused one)."""
        self._check_config(config)
        return int(self.create_many([config], now_ms, ids=None if id is None else [id])[0])

    def create_many(self, configs: Sequence[cfg.StrategyConfig], now_ms: int, *, ids: npt.ArrayLike | None = None) -> npt.NDArray[np.uint64]:
        """Many new portfolios at once (columns, not one call each); all or
        none. A bad config is a ConfigError naming it: "configs[3].assets"."""
        now_ms = _time(now_ms)
        for k, c in enumerate(configs):
            self._check_config(c, f"configs[{k}]")
        if not len(configs):
            return np.zeros(0, np.uint64)
        rows = self._state_rows(list(configs), now_ms)  # everything that can fail, before the Book changes
        new = self._add_to_book(configs, ids, now_ms)
        self.state.append(rows, len(configs))  # slot for slot beside the Book
        self._policies_changed()
        self.configs.update(zip(new.tolist(), configs))
        self.config_changes.update(new.tolist())
        self._events.add(EventKind.CREATED, new, now_ms)
        return new

    def fund(self, ids: Ids, now_ms: int) -> None:
        """Draws each portfolio's investment from its owner's spot balance
        (`funds.withdraw`); the next tick buys the assets. Those whose
        withdrawal is refused stay created, and `InsufficientFunds` names
        them after the others are funded."""
        now_ms = _time(now_ms)
        slots = self._distinct_slots(ids)
        s = self.state
        wrong = s["stage"][slots] != Stage.CREATED
        if wrong.any():
            slot = slots[np.argmax(wrong)]
            pid = int(self.book.ids[slot])
            raise ConfigError(f"id: portfolio {pid} is {Stage(s['stage'][slot]).name.lower()}, not created", field="id", value=pid)
        pids = self.book.ids[slots]
        amount_words = words([str(self.configs[int(i)].investment) for i in pids.tolist()], "investment")
        granted = self._withdraw(slots, amount_words)
        funded = slots[granted]
        self._add_money(funded, amount_words[granted])
        s["stage"][funded] = Stage.FUNDING
        s["pending_invest"][funded] = True
        self._policies_changed()
        self._events.add(EventKind.FUNDED, pids[granted], now_ms, asset=QUOTE_ASSET, amount=amount_words[granted])
        if not granted.all():
            refused = pids[~granted].tolist()
            raise InsufficientFunds(f"fund: the spot balance does not cover the investment of portfolios {refused}", field="investment", value=refused)

    def pause(self, ids: Ids, now_ms: int) -> None:
        """No orders of any kind (rebalance, auto-invest, take-profit) until `resume`."""
        slots = self._distinct_slots(ids)
        slots = slots[~self.state["user_paused"][slots] & (self.state["stage"][slots] != Stage.TERMINATED)]
        self.state["user_paused"][slots] = True
        self.book.pause_slots(slots, True)
        self._events.add(EventKind.PAUSED, self.book.ids[slots], _time(now_ms))

    def resume(self, ids: Ids, now_ms: int) -> None:
        slots = self._distinct_slots(ids)
        slots = slots[self.state["user_paused"][slots]]
        self.state["user_paused"][slots] = False
        self.book.pause_slots(slots[self.state["stage"][slots] == Stage.ACTIVE], False)
        self._events.add(EventKind.RESUMED, self.book.ids[slots], _time(now_ms))

    def terminate(self, ids: Ids, now_ms: int, *, exit: str | None = None) -> None:
        """Ends portfolios: the next ticks sell everything to the quote asset
        (exit "sell") or hand the coins back as they are ("return"); the
        config's exit mode unless `exit` is given. Already terminating: no change."""
        now_ms = _time(now_ms)
        if exit not in (None, "sell", "return"):
            raise ConfigError(f"exit: must be 'sell' or 'return' (got {exit!r})", field="exit", value=exit)
        slots = self._distinct_slots(ids)
        stage = self.state["stage"][slots]
        done = stage == Stage.TERMINATED
        if done.any():
            pid = int(self.book.ids[slots[np.argmax(done)]])
            raise ConfigError(f"id: portfolio {pid} is already terminated", field="id", value=pid)
        slots = slots[stage != Stage.TERMINATING]
        if exit is not None:
            self.state["exit_mode"][slots] = EXIT_SELL if exit == "sell" else EXIT_RETURN
        self._start_exit(slots, Reason.USER, now_ms)

    def update_markets(self, markets: Sequence[Market]) -> None:
        """New rules for the Engine's markets, e.g. one suspended or delisted
        (`active=False`): its asset is no longer traded, and an exit returns
        it in kind without holding up the rest."""
        self.book.set_markets(markets)
        self.markets = self.book.markets

    def remove(self, ids: Ids) -> None:
        """Forgets terminated portfolios (their slots are reclaimed; their ids are never reused)."""
        slots = self._distinct_slots(ids)
        alive = self.state["stage"][slots] != Stage.TERMINATED
        if alive.any():
            pid = int(self.book.ids[slots[np.argmax(alive)]])
            raise ConfigError(f"id: portfolio {pid} is not terminated; terminate it first", field="id", value=pid)
        pids = self.book.ids[slots].tolist()
        self.book.remove(pids)
        for pid in pids:
            self.configs.pop(pid, None)
            self.config_changes.discard(pid)
            self.config_removals.add(pid)

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
        if self.book.column("locked")[slot]:
            raise ConfigError(f"id: portfolio {id} has orders out; modify it once they are done", field="id", value=id)
        old = self.configs[int(id)]
        new_weights = cfg.weights(config)
        for asset, amount in self.book.portfolio(id)["holdings"].items():
            if asset not in new_weights and amount != 0:
                raise ConfigError(
                    f"assets[{asset}]: still holding {amount}; it can leave the portfolio once sold",
                    field=f"assets[{asset}]",
                    value=str(amount),
                )
        one = self._state_rows([config], now_ms)  # everything that can fail, before the Book changes
        self._policies_changed()
        settings = _book_settings(config, now_ms)
        if config.trigger == old.trigger:
            settings.pop("next_check_ms", None)  # the calendar keeps its phase
        hold = {self.markets[a].base: x for a, x in zip(s["hold_asset"][slot].tolist(), s["hold_amount"][slot].tolist()) if a >= 0}
        self.book.update(id, targets=new_weights, **settings)
        slot = self.book.slot(id)  # an update may compact the Book
        for name in ("exit_mode", "take_profit", "stop_loss", "trail_arm", "trail_drop"):
            s[name][slot] = one[name][0]
        if config.trailing_take_profit != old.trailing_take_profit:
            s["trail_armed"][slot] = False
        exits.set_levels(s, np.array([slot]))
        s["hold_asset"][slot] = one["hold_asset"][0]
        s["hold_amount"][slot] = 0.0
        s["hold_amount"][slot, : len(new_weights)] = [hold.get(a, 0.0) for a in new_weights]
        if config.auto_invest != old.auto_invest:  # new auto-invest settings: a new schedule from now
            for name in auto_invest.DCA_COLUMNS:
                if name not in ("dca_last_ms", "dca_cycles"):
                    s[name][slot] = one[name][0]
            auto_invest.set_level(s, np.array([slot]))
        elif cfg.weights(old) != new_weights and s["dca_state"][slot] == DCA_ON:
            s["dca_state"][slot] = DCA_STOPPED
            self._events.add(EventKind.AUTO_INVEST_STOPPED, [id], now_ms, reason=Reason.COMPOSITION_CHANGED)
        self.configs[int(id)] = config
        self.config_changes.add(int(id))
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
        self._last_orders = None  # the order table's rows move now
        self.orders.prune()

        # Enum members are compared as `.value`, a plain int: numpy compares a
        # column with an int subclass several times slower (it casts the column).
        # What can fail comes first: the scan checks the prices of what is
        # active; those of funding and terminating portfolios are checked here.
        scan = book.scan(prices, now_ms)
        # Who has orders out: the exits, auto-invest and new money below act
        # only on the others (most ticks skip them all).
        locked = book.column("locked")
        ending = _NO_SLOTS
        if self._money_moves():  # most ticks have no exit and no new money
            ending = _free(np.flatnonzero(stage == Stage.TERMINATING.value), locked)
            waiting = _free(np.flatnonzero(s["pending_invest"]), locked)
            if len(waiting) or len(ending):
                _rebal.check_prices(book._columns(), self.markets, prices, waiting, ending)
        self.now_ms, self.prices = now_ms, prices
        value, status = scan.value, scan.status
        active = status != Status.INACTIVE.value
        exits.track_drawdown(s, value, active)

        # Take-profit / stop-loss; an exit instead of a rebalance. Skipped
        # while no portfolio has a level to reach (it would find none).
        hits = _NO_SLOTS
        if self._exit_levels():
            reason = exits.check(s, value, active & ~locked)
            hits = np.flatnonzero(reason)
            status[hits] = Status.IDLE
            for code, kind in exits.EVENTS.items() if len(hits) else ():
                hit = hits[reason[hits] == code]
                self._events.add(kind, book.ids[hit], now_ms, value=exits.profit(value[hit], s["net_invested_float"][hit]))
                self._start_exit(hit, Reason(code), now_ms)

        # Auto-invest: a rebalance first, new money at the next tick. Skipped
        # before the earliest cycle may run (no portfolio would be ready).
        if now_ms >= self._auto_invest_from():
            self._auto_invest(auto_invest.due(s, now_ms, value, status, locked, Stage.ACTIVE.value), now_ms)

        # Who sells out and who buys with new money; returns in kind finish now.
        if len(hits):  # exits started above
            ending = _free(np.flatnonzero(stage == Stage.TERMINATING.value), locked)
        selling = investing = _NO_SLOTS
        if len(ending):
            self._finish(ending[s["exit_mode"][ending] == EXIT_RETURN], now_ms)
            refused = ending[(s["exit_mode"][ending] == EXIT_SELL) & (s["exit_refusals"][ending] >= EXIT_ATTEMPTS)]
            self._finish(refused, now_ms, why=Reason.SELL_REFUSED)
            selling = ending[(s["exit_mode"][ending] == EXIT_SELL) & (s["exit_refusals"][ending] < EXIT_ATTEMPTS)]
        if self._money_moves():  # asked again: auto-invest may have brought new money
            investing = _free(np.flatnonzero(s["pending_invest"]), locked)
            investing = investing[~s["user_paused"][investing] & ((stage[investing] == Stage.FUNDING.value) | (stage[investing] == Stage.ACTIVE.value))]

        batch = book.plan(scan, invest=investing if len(investing) else None, exit=selling if len(selling) else None)
        if len(investing):
            s["pending_invest"][investing] = False
            self._moves = None  # (nothing else the tick skips by changed)
        rounds = _rounds(batch.portfolio)
        self._after_plan(batch, rounds, selling, investing, now_ms)
        self._record_orders(batch, rounds, now_ms)
        self._last_orders = (batch, rounds)
        return batch

    # ------------------------------------------------------------------ fills and rejects

    def on_fills(self, fills: Sequence[Fill], now_ms: int | None = None) -> None:
        """Applies (partial) fills: holdings, cash, fees, accounting. Every
        fill is checked first (known open order, positive amount, not more
        than ordered, fee asset, no balance below zero); one bad fill
        refuses the call and changes nothing. The fills of one call count
        together, so a round's sells pay for its buys in any order within
        the call (a host that hears of a buy's fill before its round's sells
        passes them in one call). `now_ms` (default: the last tick's) stamps
        the events."""
        apply_fills(self, fills, self._event_time(now_ms))

    def on_full_fills(
        self, batch: OrderBatch, prices: npt.ArrayLike | None = None, fee_rates: npt.ArrayLike | None = None, now_ms: int | None = None
    ) -> None:
        """Every order of `batch` (this Engine's last tick) filled in full at
        `prices` (default: the prices it was planned at), fee = `fee_rates` ×
        cost in the quote asset (default: each market's taker fee): the
        columnar fill of a simulated venue or a paper account, with no Python
        object per fill. Exact and all or nothing, like `on_fills`."""
        n = len(batch)
        rows, slots, rounds = self._batch_rows(batch)
        price = np.ascontiguousarray(batch.price if prices is None else prices, dtype=np.float64)
        if fee_rates is None:
            taker = np.array([m.taker_fee for m in self.markets] or [0.0])
            fee = taker[batch.asset]
        else:
            fee = np.asarray(fee_rates, dtype=np.float64)
            if fee.ndim == 0:
                fee = np.full(n, fee)  # one for all: no broadcast view to copy
            elif fee.shape != (n,):
                fee = np.broadcast_to(fee, (n,))  # (one per order already: used as it is)
        if price.shape != (n,) or fee.shape != (n,):
            raise ConfigError(f"prices: one per order ({n}), got {price.shape}", field="prices", value=price.shape)
        apply_full_fills(self, rows, slots, rounds, price, np.ascontiguousarray(fee), self._event_time(now_ms))

    def on_rejects(self, rejects: Sequence[Reject], now_ms: int | None = None) -> None:
        """Orders refused or cancelled by the venue (what they filled before
        stays). A portfolio with no orders left is unlocked, and the next
        tick re-plans it (no cooldown, and unspent new money is bought with
        again)."""
        apply_rejects(self, rejects, self._event_time(now_ms))

    # ------------------------------------------------------------------ reading

    def events(self) -> Events:
        """Events since the last call (drains the log)."""
        return self._events.drain()

    def discard_events(self) -> None:
        """Drops the events not yet read, unread (a host that reads none, like a backtest)."""
        self._events.clear()

    def pending_events(self) -> int:
        return len(self._events)

    def stage(self, id: int) -> Stage:
        return Stage(int(self.state["stage"][self.book.slot(id)]))

    def accounting(self, ids: Ids | None = None) -> dict[str, np.ndarray]:
        """Per portfolio, at the last tick's prices (a terminated one as it
        ended): net invested (exact strings), value, profit and profit %,
        annualised return, fees paid, turnover, rebalances, max drawdown, and
        the hold benchmark (the same buys, never rebalanced) with its profit %."""
        from rebal.accounting import report

        slots = np.flatnonzero(self.book.column("alive")) if ids is None else self.book.slots(ids)
        return report(self, slots)

    # ------------------------------------------------------------------ saving

    def snapshot(self) -> bytes:
        """Every column of the Engine (Book, state, orders, unread events) as
        bytes; `restore` rebuilds it exactly. Configs are kept apart (`configs`)."""
        from rebal.store import save_arrays

        arrays = {f"book.{k}": v for k, v in self.book._portfolios.views().items()}
        arrays.update({f"holdings.{k}": v for k, v in self.book._holdings.views().items()})
        arrays.update({f"state.{k}": v for k, v in self.state.views().items()})
        arrays.update({f"orders.{k}": v for k, v in self.orders.table.views().items()})
        arrays.update({f"events.{k}": v for k, v in self._events.columns().items()})
        meta = {"now_ms": self.now_ms, "fill_count": self.fill_count, "unused_rows": self.book._unused_rows, "next_id": self.book.next_id}
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
        """The Engine a `snapshot` was taken of (with `configs` by id). Host
        limits may have changed since: a wider `max_assets` widens the columns."""
        from rebal.store import load_arrays

        arrays = load_arrays(blob)
        engine = cls(markets, limits=limits, funds=funds)

        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + ".")}

        state = part("state")
        if "round_refused" not in state:  # a snapshot from before the column: short rounds were refusals
            state["round_refused"] = state["round_short"].copy()
        saved_width = state["hold_asset"].shape[1]
        if saved_width < engine._width:
            pad = engine._width - saved_width
            state["hold_asset"] = np.pad(state["hold_asset"], ((0, 0), (0, pad)), constant_values=-1)
            state["hold_amount"] = np.pad(state["hold_amount"], ((0, 0), (0, pad)))
        engine._width = max(engine._width, saved_width)
        engine.state = Table(state_columns(engine._width))
        engine.book._portfolios.load(part("book"))
        engine.book._holdings.load(part("holdings"))
        engine.state.load(state)
        engine.orders.load(part("orders"))
        engine._events.load(part("events"))
        meta = msgspec.json.decode(str(arrays["meta"]))
        engine.now_ms, engine.fill_count = meta["now_ms"], meta["fill_count"]
        engine.book._unused_rows = meta["unused_rows"]
        engine.book.next_id = meta["next_id"]
        engine.prices = arrays.get("prices")
        engine._policies_changed()
        live = set(engine.book.ids[engine.book.column("alive")].tolist())
        engine.configs = {pid: c for pid, c in configs.items() if pid in live}
        return engine

    # ------------------------------------------------------------------ internals

    def _batch_rows(self, batch: OrderBatch) -> tuple[slice, npt.NDArray[np.int64], _Rounds]:
        """The order-table rows of a batch's orders: the last ones appended (a
        slice, so the fills read the table's columns as views); the slots of
        their portfolios now; and their rounds by those slots (`_rounds`)."""
        t, n = self.orders, len(batch)
        rows = slice(len(t) - n, len(t))
        if self._last_orders is not None and self._last_orders[0] is batch:
            # The last tick's own batch: its rows are the last appended and its slots the Book's.
            return rows, batch.portfolio, self._last_orders[1]
        if n and (len(t) < n or not (np.array_equal(t["portfolio_id"][rows], batch.portfolio_id) and np.array_equal(t["epoch"][rows], batch.epoch) and np.array_equal(t["leg"][rows], batch.leg))):
            raise ConfigError("batch: not this Engine's last batch of orders", field="batch", value=n)
        slots = self.book.slots(batch.portfolio_id)  # by id: the Book may have compacted since the tick
        return rows, slots, _rounds(slots)

    def _policies_changed(self) -> None:
        """The policies' columns changed (levels, auto-invest states or
        times, stages, new money waiting, slots): what the tick skips by is
        worked out again."""
        self._exits_on = None
        self._dca_earliest = None
        self._moves = None

    def _money_moves(self) -> bool:
        """Whether any portfolio is terminating or has new money waiting to
        be bought with. Without, a tick has nothing to sell out, finish or
        invest (`ending`, `selling`, `investing` are empty)."""
        if self._moves is None:
            s = self.state
            self._moves = bool(s["pending_invest"].any() or (s["stage"] == Stage.TERMINATING.value).any())
        return self._moves

    def _exit_levels(self) -> bool:
        """Whether any portfolio has an exit level a value can reach: a
        take-profit or arming level above, a stop-loss below (NaN: none), or
        an armed trailing take-profit. Without, `exits.check` finds nothing
        and changes nothing."""
        if self._exits_on is None:
            s = self.state
            self._exits_on = bool(not np.isnan(s["up_value"]).all() or not np.isnan(s["sl_value"]).all() or s["trail_armed"].any())
        return self._exits_on

    def _auto_invest_from(self) -> int | float:
        """The earliest `dca_next_ms` of the portfolios with auto-invest on
        (+inf: none): before it, `auto_invest.due` finds no portfolio."""
        if self._dca_earliest is None:
            s = self.state
            earliest = _rebal.earliest(s["dca_next_ms"], s["dca_state"] == DCA_ON)
            self._dca_earliest = math.inf if earliest is None else earliest
        return self._dca_earliest

    def _keep_slots(self, keep: npt.NDArray[np.int64]) -> None:
        self.state.keep(keep)
        self._policies_changed()
        self._last_orders = None  # its slots are no longer the Book's

    def _event_time(self, now_ms: int | None) -> int:
        return _time(now_ms) if now_ms is not None else (self.now_ms if self.now_ms is not None else 0)

    def _distinct_slots(self, ids: Ids) -> npt.NDArray[np.int64]:
        slots = self.book.slots(ids)
        if len(np.unique(slots)) != len(slots):
            pids = self.book.ids[slots]
            unique, counts = np.unique(pids, return_counts=True)
            twice = int(unique[np.argmax(counts > 1)])
            raise ConfigError(f"id: portfolio {twice} given twice", field="id", value=twice)
        return slots

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

    def _add_to_book(self, configs: Sequence[cfg.StrategyConfig], ids: npt.ArrayLike | None, now_ms: int) -> npt.NDArray[np.uint64]:
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
        new = self.book.add_columns(offsets, asset, np.zeros((len(asset), 2), np.int64), target, np.zeros((n, 2), np.int64), id=ids, **columns)
        self.book.pause_slots(np.arange(len(self.book.ids) - n, len(self.book.ids)), True)
        return new

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

    def _withdraw(self, slots: npt.NDArray[np.int64], amount_words: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Asks the spot accounts for money; each request gets the portfolio's
        next transfer number, counted once the host has answered."""
        s = self.state
        if self.funds is None or len(slots) == 0:
            granted = np.ones(len(slots), bool)
        else:
            answer = self.funds.withdraw(self.book.ids[slots], s["transfers"][slots].copy(), decimal_strings(amount_words))
            granted = np.asarray(answer, dtype=bool)
            if granted.shape != (len(slots),):
                raise ConfigError(f"funds.withdraw: must return one bool per portfolio ({len(slots)}), got shape {granted.shape}", field="funds", value=granted.shape)
        s["transfers"][slots] += 1
        return granted

    def _add_money(self, slots: npt.NDArray[np.int64], amount_words: npt.NDArray[np.int64]) -> None:
        """New money into the portfolios: cash, net invested, the hold benchmark's cash, the levels."""
        s = self.state
        self.book.add_cash(slots, amount_words)
        net_before = s["net_invested_float"][slots]
        _rebal.add_amounts(s["net_invested"], slots, amount_words, "net_invested")
        s["net_invested_float"][slots] = _rebal.amount_floats(np.ascontiguousarray(s["net_invested"][slots]))
        s["hold_cash"][slots] += _rebal.amount_floats(np.ascontiguousarray(amount_words))
        exits.set_levels(s, slots)
        exits.rescale_peak(s, slots, net_before)
        auto_invest.set_level(s, slots)
        # Only the exit levels changed, and a level is NaN by its config
        # alone: if some portfolio had one, some still has (a pass over every
        # portfolio saved on each tick with new money).
        if self._exits_on is not True:
            self._exits_on = None
        self.money_added += 1

    def _auto_invest(self, due: npt.NDArray[np.int64], now_ms: int) -> None:
        """Due cycles draw new money from the spot accounts; the plan buys with it."""
        s = self.state
        if not len(due):
            return
        over_max, over_cap = auto_invest.limits(s, due, float(self.limits.max_investment))
        go = due[~(over_max | over_cap)]
        amounts = np.ascontiguousarray(s["dca_amount"][go])
        granted = self._withdraw(go, amounts)  # the call that can fail: nothing has changed yet
        # The next run is set whatever happened, so a refused cycle is not retried every tick.
        s["dca_next_ms"][due] = auto_invest.next_ready(s, due, now_ms)
        self._dca_earliest = None  # the times, and the states below
        pids = self.book.ids
        for mask, state, kind, why in (
            (over_max, DCA_STOPPED, EventKind.AUTO_INVEST_STOPPED, Reason.MAX_INVESTMENT),
            (over_cap & ~over_max, DCA_PAUSED, EventKind.AUTO_INVEST_PAUSED, Reason.CAP_REACHED),
        ):
            s["dca_state"][due[mask]] = state
            self._events.add(kind, pids[due[mask]], now_ms, reason=why)
        refused = go[~granted]
        s["dca_state"][refused] = DCA_STOPPED
        self._events.add(EventKind.AUTO_INVEST_STOPPED, pids[refused], now_ms, reason=Reason.INSUFFICIENT_BALANCE)
        go, amounts = go[granted], amounts[granted]
        if not len(go):
            return
        self._add_money(go, amounts)
        s["dca_cycles"][go] += 1
        s["dca_last_ms"][go] = now_ms
        s["pending_invest"][go] = True
        self._moves = True
        self._events.add(EventKind.AUTO_INVEST_EXECUTED, pids[go], now_ms, asset=QUOTE_ASSET, amount=amounts)
        # Reaching the cap pauses auto-invest from the next cycle on.
        at_cap = go[s["net_invested_float"][go] >= s["dca_cap"][go] - auto_invest.TOLERANCE]
        s["dca_state"][at_cap] = DCA_PAUSED
        self._events.add(EventKind.AUTO_INVEST_PAUSED, pids[at_cap], now_ms, reason=Reason.CAP_REACHED)

    def _start_exit(self, slots: npt.NDArray[np.int64], why: Reason, now_ms: int) -> None:
        if not len(slots):
            return
        s = self.state
        s["stage"][slots] = Stage.TERMINATING
        s["exit_reason"][slots] = why
        s["pending_invest"][slots] = False
        s["dca_state"][slots] = np.where(s["dca_state"][slots] == DCA_OFF, DCA_OFF, DCA_STOPPED)
        self._policies_changed()
        self.book.pause_slots(slots, True)
        self._events.add(EventKind.TERMINATING, self.book.ids[slots], now_ms, reason=why)
        nothing = (s["net_invested_float"][slots] == 0) & (self.book.column("cash_float")[slots] == 0)
        self._finish(slots[nothing], now_ms)  # never funded: nothing to sell or return

    def _after_plan(self, batch: OrderBatch, rounds: _Rounds, selling: npt.NDArray[np.int64], investing: npt.NDArray[np.int64], now_ms: int) -> None:
        """Events of the rounds that start; exits with nothing left to sell
        finish (the rest is returned in kind); funding whose money buys
        nothing (all below the market minimums) is active anyway."""
        slots, counts, first = rounds
        if self._events.recording:  # a backtest keeps none: not even their arguments are made
            rebalancing = batch.purpose[first] == Purpose.REBALANCE.value
            self._events.add(EventKind.REBALANCE_STARTED, self.book.ids[slots[rebalancing]], now_ms, value=counts[rebalancing])
        finished = np.setdiff1d(selling, slots, assume_unique=True) if len(selling) else selling
        if len(finished):
            # What stays behind is returned in kind: say why (a suspended market, or dust).
            skipped = batch.skipped
            inactive = (skipped.purpose == Purpose.EXIT.value) & (batch.skip_reason == SKIP_REASONS.index("market_inactive"))
            inactive_rows = self.book.column("start")[skipped.portfolio[inactive]] + skipped.leg[inactive]
            self._finish(finished, now_ms, inactive_rows=inactive_rows)
        if not len(investing):  # most ticks
            return
        s = self.state
        funding = investing[s["stage"][investing] == Stage.FUNDING.value]
        if len(funding):
            self._activate(np.setdiff1d(funding, slots, assume_unique=True), now_ms)

    def _finish(
        self,
        slots: npt.NDArray[np.int64],
        now_ms: int,
        *,
        inactive_rows: npt.NDArray[np.int64] | None = None,
        why: Reason = Reason.EXIT_RETURN,
    ) -> None:
        """Hands every coin and the cash of `slots` back (ASSET_RETURNED
        events with exact amounts), keeps their final value and marks them
        terminated. Without `inactive_rows` every coin goes back as it is,
        for `why` (the exit mode is "return", or the venue refused the
        sells); with them, what the exit could not sell: the coins of those
        rows' suspended markets, and dust below the minimums."""
        if not len(slots):
            return
        book, s = self.book, self.state
        p, h = book.columns(), book.holding_columns()
        pids = book.ids[slots]
        prices = self.prices if self.prices is not None else np.full(len(self.markets), np.nan)
        s["final_value"][slots] = self._values_of(slots, prices)
        s["final_hold_value"][slots] = self._hold_values_of(slots, prices)
        s["ended_ms"][slots] = now_ms
        owner, rows = _rows_of(p["start"][slots], p["stop"][slots])
        amounts = h["amount"][rows]
        held = (amounts != 0).any(axis=1)
        if inactive_rows is None:
            reason = np.full(len(rows), why, np.uint8)
        else:
            reason = np.where(np.isin(rows, inactive_rows), Reason.MARKET_INACTIVE, Reason.BELOW_MINIMUM).astype(np.uint8)
        self._events.add(EventKind.ASSET_RETURNED, pids[owner][held], now_ms, asset=h["asset"][rows][held], amount=amounts[held], reason=reason[held])
        cash = p["cash"][slots]
        has_cash = (cash != 0).any(axis=1)
        self._events.add(EventKind.ASSET_RETURNED, pids[has_cash], now_ms, asset=QUOTE_ASSET, amount=cash[has_cash], reason=Reason.CASH)
        book.set_exact(slots, np.zeros((len(slots), 2), np.int64), rows, np.zeros((len(rows), 2), np.int64))
        s["stage"][slots] = Stage.TERMINATED
        s["pending_invest"][slots] = False
        self._policies_changed()
        self._events.add(EventKind.TERMINATED, pids, now_ms, value=s["final_value"][slots], reason=s["exit_reason"][slots])

    def _activate(self, slots: npt.NDArray[np.int64], now_ms: int) -> None:
        if not len(slots):
            return
        s = self.state
        s["stage"][slots] = Stage.ACTIVE
        self._policies_changed()
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
        s["round_short"][slots] = False
        s["round_refused"][slots] = False
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

    def _settle(
        self, slots: npt.NDArray[np.int64], now_ms: int, *, open_left: npt.NDArray[np.int32] | None = None, all_filled: bool = False
    ) -> None:
        """Portfolios among `slots` (distinct) whose round of orders is over:
        unlocked, with their events. A round cut short (an order rejected or
        cancelled) is re-planned at the next tick: no cooldown after a
        rebalance, and new money not yet spent is bought with again.
        Full fills say what they just wrote: `open_left`, the slots'
        `round_open`, and `all_filled` (every `round_filled` is True)."""
        s, book = self.state, self.book
        left = s["round_open"][slots] if open_left is None else open_left
        over = (left == 0) & book._portfolios["locked"][slots]
        if not over.all():  # after full fills every round is over: no copy then
            slots = slots[over]
        if not len(slots):
            return
        book.lock_slots(slots, False)
        purpose, short = s["round_purpose"][slots], s["round_short"][slots]
        rebalance = purpose == Purpose.REBALANCE.value
        if all_filled:
            done, again = rebalance, rebalance & short
        else:
            filled = s["round_filled"][slots]
            done, again = rebalance & filled, rebalance & (short | ~filled)
        rebalanced = slots if done.all() else slots[done]
        s["rebalances"][rebalanced] += 1
        if self._events.recording:
            self._events.add(EventKind.REBALANCE_DONE, book.ids[rebalanced], now_ms)
        if again.any():
            book._portfolios["last_rebalance_ms"][slots[again]] = NEVER
        if rebalance.all():
            return  # no exit or new money among them: most ticks
        s["exit_refusals"][slots[(purpose == Purpose.EXIT.value) & s["round_refused"][slots]]] += 1
        invest = purpose == Purpose.INVEST.value
        live = (s["stage"][slots] == Stage.FUNDING.value) | (s["stage"][slots] == Stage.ACTIVE.value)
        s["pending_invest"][slots[invest & short & live]] = True
        self._policies_changed()
        self._activate(slots[invest & ~short & (s["stage"][slots] == Stage.FUNDING.value)], now_ms)

    def _values_of(self, slots: npt.NDArray[np.int64], prices: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Value of a few portfolios at `prices` (an unpriced asset not held is worth 0)."""
        p, h = self.book.columns(), self.book.holding_columns()
        owner, rows = _rows_of(p["start"][slots], p["stop"][slots])
        held = h["amount_float"][rows]
        worth = np.where(held != 0, held * prices[h["asset"][rows]], 0.0)
        values: npt.NDArray[np.float64] = p["cash_float"][slots] + np.bincount(owner, weights=worth, minlength=len(slots))
        return values

    def _hold_values_of(self, slots: npt.NDArray[np.int64] | slice, prices: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Value of the hold benchmark of `slots` (or a slice of them) at `prices`, in one pass in Rust."""
        s = self.state
        chosen: npt.NDArray[np.int64] | None = None  # None: every slot
        if not isinstance(slots, slice):
            chosen = np.ascontiguousarray(slots, dtype=np.int64)
        elif slots != slice(None):
            chosen = np.arange(s.length, dtype=np.int64)[slots]
        return _rebal.hold_values(s["hold_asset"], s["hold_amount"], s["hold_cash"], np.ascontiguousarray(prices, dtype=np.float64), chosen)


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


_NO_SLOTS = np.zeros(0, np.int64)
_NO_SLOTS.flags.writeable = False

_Rounds = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]


def _free(slots: npt.NDArray[np.int64], locked: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """The `slots` with no orders out: a few picked from a million, without
    a mask over every portfolio."""
    return slots[~locked[slots]]


def _rounds(portfolio: npt.NDArray[np.int64]) -> _Rounds:
    """The portfolios of a batch's orders (each starts a round), how many
    orders each has and where its first one is (a portfolio's orders are
    contiguous in a batch)."""
    n = len(portfolio)
    if not n:
        return portfolio, portfolio, portfolio
    starts = np.empty(n, bool)  # where a portfolio's orders start
    starts[0] = True
    np.not_equal(portfolio[1:], portfolio[:-1], out=starts[1:])
    first = np.flatnonzero(starts)
    bounds = np.empty(len(first) + 1, np.int64)  # ... and the end
    bounds[:-1] = first
    bounds[-1] = n
    return portfolio[first], bounds[1:] - first, first


def _rows_of(start: npt.NDArray[np.int64], stop: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The holding rows of some portfolios (rows start:stop each), and which portfolio each belongs to."""
    counts = stop - start
    owner = np.repeat(np.arange(len(start)), counts)
    rows = np.repeat(start - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(int(counts.sum()))
    return owner, rows


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
