"""`Bot`: one smart portfolio on the user's own exchange account.

Each `step` is one tick of the Engine against the venue:

1. reconcile: every order still open in the Engine is looked up on the
   exchange by client id. Done there: its fills are applied (the unfilled
   rest cancelled); unknown there once it can no longer arrive (the
   venue's arrival window after it was sent): it never arrived, and the
   portfolio re-plans;
2. the tick: prices in, `Engine.on_tick`, the orders saved before any is sent;
3. sells first (market orders), each applied as soon as the exchange answers;
4. then buys, sized from what the sells actually brought in: limit IOC
   orders at the fresh price plus the slippage allowance, scaled down when
   the portfolio's cash (now exact, after the sells) does not cover them at
   that limit; a buy that no longer meets its market's rules is not sent.

An order's fills are applied once, when the exchange says the order is done,
and saved in the same transaction as the Engine's state; so a crash at any
point is recovered by step 1 with nothing applied or sent twice. Refusals
(insufficient funds, invalid order) become rejects: the portfolio re-plans at
the next tick and the bot keeps running. An unreachable exchange ends the
step with `VenueUnavailable`; the orders in doubt stay open for step 1.
"""

from __future__ import annotations

import decimal
import functools
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import msgspec
import numpy as np
import numpy.typing as npt

from rebal import config as cfg
from rebal.adapters.venue import OrderRequest, OrderState, Venue
from rebal.batch import SIDE_BUY, SIDE_SELL
from rebal.bot.locks import account_lock_path, hold_lock, release
from rebal.columns import decimals
from rebal.engine import Engine, Stage
from rebal.exact import WIDE
from rebal.exceptions import ConfigError, OrderRefused, VenueAuthError, VenueError, VenueUnavailable
from rebal.market import Market, refusal
from rebal.orders import Reject
from rebal.store import Store

__all__ = ["Bot", "StepReport", "AccountFunds"]

log = logging.getLogger("rebal.bot")
P = ParamSpec("P")
R = TypeVar("R")

STALE_OPEN_MS = 60_000
"""An order the exchange still has open this long after it was sent is cancelled."""


def _exact(method: Callable[P, R]) -> Callable[P, R]:
    """Runs `method` in the wide decimal context: sums and products of
    amounts are exact whatever context the host process set (ccxt, for
    one, changes the rounding of the one it finds)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with decimal.localcontext(WIDE):
            return method(*args, **kwargs)

    return wrapper


class StepReport(msgspec.Struct):
    """What one step did."""

    time_ms: int
    reconciled: int = 0
    """Orders from before found done (or never sent) and settled."""
    sent: int = 0
    filled: int = 0
    refused: list[str] = msgspec.field(default_factory=list)
    """Client ids the exchange refused for good (with the reason after a colon)."""
    skipped: list[str] = msgspec.field(default_factory=list)
    """Buys not sent: what the sells brought in did not cover them."""


class AccountFunds:
    """The Engine's `Funds` on one exchange account: a withdrawal for the
    portfolio is granted when the account's free quote balance, beyond the
    cash the portfolio already holds there, covers it."""

    def __init__(self, venue: Venue, quote: str) -> None:
        self.venue, self.quote = venue, quote
        self.engine: Engine | None = None

    def withdraw(self, portfolio_ids: npt.NDArray[np.uint64], transfers: npt.NDArray[np.int64], amounts: npt.NDArray[np.str_]) -> npt.NDArray[np.bool_]:
        free = self.venue.balances().get(self.quote, (Decimal(0), Decimal(0)))[0]
        held = Decimal(0)
        if self.engine is not None:
            cash = self.engine.book.column("cash")[np.flatnonzero(self.engine.book.column("alive"))]
            held = sum(decimals(np.ascontiguousarray(cash)), Decimal(0))
        spare = free - held
        granted = np.zeros(len(portfolio_ids), bool)
        for k, amount in enumerate(amounts.tolist()):
            if Decimal(amount) <= spare:
                granted[k], spare = True, spare - Decimal(amount)
        return granted


class Bot:
    """The Engine, a venue and a Store, for one portfolio. Open one with `Bot.open`."""

    def __init__(
        self,
        venue: Venue,
        engine: Engine,
        store: Store,
        portfolio_id: int,
        assets: list[str],
        *,
        slippage_bps: float,
        clock: Callable[[], int],
        host: dict[str, Any],
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.venue, self.engine, self.store = venue, engine, store
        self.portfolio_id = portfolio_id
        self.assets = assets
        self.slippage = Decimal(repr(float(slippage_bps))) / 10_000
        self.clock = clock
        self.host = host
        self.extra = extra
        self.step_count = int(host.get("step", 0))
        self.new_config: cfg.StrategyConfig | None = None
        """A config edited since the last run, waiting for no orders to be out."""
        self.locks: list[int] = []
        self._recheck_account = False
        """A fee came out of a portfolio coin, or the exchange found the funds short: compare the account."""

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        venue: Venue,
        config: cfg.StrategyConfig,
        state: str | Path,
        *,
        slippage_bps: float = 25.0,
        clock: Callable[[], int] | None = None,
        limits: cfg.Limits | None = None,
        extra: Callable[[], dict[str, Any]] | None = None,
        account: str | None = None,
    ) -> Bot:
        """The bot whose state is at `state` (a SQLite file), created and
        funded from the account's free quote balance on first use. A config
        that changed since is applied with `Engine.modify` once no orders
        are out. `extra` gives host state saved with every save (a paper
        account's). `account` names the exchange account (e.g. exchange and
        a hash of the key): one bot per state file and per account, since
        two would send the same orders or claim the same money."""
        clock = clock or _wall_ms
        locks = [hold_lock(Path(f"{state}.lock"), f"state: another bot is running on {state}")]
        if account is not None:
            locks.append(hold_lock(account_lock_path(account), "account: another bot is running on this exchange account"))
        try:
            with decimal.localcontext(WIDE):
                return cls._open(venue, config, state, slippage_bps, clock, limits, extra, locks)
        except BaseException:
            release(locks)
            raise

    @classmethod
    def _open(
        cls,
        venue: Venue,
        config: cfg.StrategyConfig,
        state: str | Path,
        slippage_bps: float,
        clock: Callable[[], int],
        limits: cfg.Limits | None,
        extra: Callable[[], dict[str, Any]] | None,
        locks: list[int],
    ) -> Bot:
        store = Store(state)
        host = store.host_state()
        if host.get("quote") not in (None, config.quote):
            raise ConfigError(f"quote: {state} holds a {host['quote']} portfolio, not {config.quote}; use another state file", field="quote", value=config.quote)
        assets = list(host.get("assets", []))
        assets += [a for a in config.assets if a not in assets]
        markets = venue.markets(config.quote, assets)
        funds = AccountFunds(venue, config.quote)
        planned = _with_budget(config, markets, float(slippage_bps))
        engine = store.load(markets, limits=limits, funds=funds)
        now = clock()
        if engine is None:
            # A random id base: client order ids ("rb<id>-…") stay unique on an
            # account shared with other bots or earlier state files.
            engine = Engine(markets, limits=limits, funds=funds, first_id=secrets.randbits(40))
            funds.engine = engine
            pid = engine.create(planned, now)
            host = {"portfolio_id": pid, "assets": assets, "quote": config.quote, "exchange": venue.name, "step": 0, "sent": {}}
            bot = cls(venue, engine, store, pid, assets, slippage_bps=slippage_bps, clock=clock, host=host, extra=extra)
            bot.locks = locks
            bot._save()  # the portfolio exists before any money is claimed for it
            engine.fund([pid], now)
            bot._save()
            return bot
        funds.engine = engine
        if host.get("exchange") not in (None, venue.name):
            raise ConfigError(f"state: {state} belongs to a bot on {host.get('exchange')}, not {venue.name}", field="state", value=str(state))
        engine.update_markets(markets)
        pid = int(host["portfolio_id"])
        host = {"sent": {}, "quote": config.quote, **host, "assets": assets}
        bot = cls(venue, engine, store, pid, assets, slippage_bps=slippage_bps, clock=clock, host=host, extra=extra)
        bot.locks = locks
        if engine.configs.get(pid) not in (None, planned):
            bot.new_config = planned  # applied by the next step with no orders out
        if engine.stage(pid) == Stage.CREATED:  # funding was refused last time: ask again
            engine.fund([pid], now)
            bot._save()
        bot.reconcile(now)
        bot.check_account(now)
        return bot

    def close(self) -> None:
        """Releases the state file and the account (the state is saved)."""
        self.store.close()
        release(self.locks)
        self.locks = []

    # ------------------------------------------------------------------ running

    @_exact
    def step(self) -> StepReport:
        """One tick: reconcile, plan, sells, then buys; saved after each."""
        now = self.clock()
        report = StepReport(time_ms=now)
        report.reconciled = self.reconcile(now)
        if len(self.engine.orders.open_rows()):  # still out on the exchange: wait for them
            return report
        if self.new_config is not None:
            self._apply_config(now)
        prices = self.venue.prices(self.engine.markets)
        batch = self.engine.on_tick(now, prices)
        self.step_count += 1
        self._save()  # the orders are saved before any is sent
        if len(batch):
            self._send(report, now)
        if self._recheck_account:
            self._recheck_account = False
            self.check_account(now)
        return report

    @_exact
    def check_account(self, now: int | None = None) -> dict[str, Decimal]:
        """Compares the account with the portfolio. Coins or cash taken out
        behind the bot's back would make every order fail: the portfolio is
        paused (and told why) until the account covers it again. Returns
        the shortfall per asset."""
        now = self.clock() if now is None else now
        held = self.engine.book.portfolio(self.portfolio_id)
        balances = self.venue.balances()
        wanted = {**held["holdings"], self.engine.quote: held["cash"]}
        short = {a: x - balances.get(a, (Decimal(0), Decimal(0)))[1] for a, x in wanted.items()}
        short = {a: x for a, x in short.items() if x > 0}
        paused_here = bool(self.host.get("paused_short"))
        if short and not paused_here and self.stage == Stage.ACTIVE:
            log.error("the account holds less than the portfolio (%s): paused until it is covered", ", ".join(f"{a} short by {x}" for a, x in short.items()))
            self.engine.pause([self.portfolio_id], now)
            self.host["paused_short"] = True
            self._save()
        elif not short and paused_here:
            log.info("the account covers the portfolio again: resumed")
            self.engine.resume([self.portfolio_id], now)
            self.host["paused_short"] = False
            self._save()
        return short

    def _apply_config(self, now: int) -> None:
        config, self.new_config = self.new_config, None
        if config is None or self.stage not in (Stage.CREATED, Stage.FUNDING, Stage.ACTIVE):
            return
        try:
            self.engine.modify(self.portfolio_id, config, now)
        except ConfigError as e:  # e.g. an asset dropped while still held: the old config stays
            log.error("the edited config is not applied: %s", e)
            return
        log.info("the edited config is applied")
        self._save()

    @_exact
    def terminate(self, exit: str | None = None) -> None:
        """Ends the portfolio: the next steps sell out (or return the coins)."""
        now = self.clock()
        if self.engine.stage(self.portfolio_id) not in (Stage.TERMINATING, Stage.TERMINATED):
            self.reconcile(now)
            self.engine.terminate([self.portfolio_id], now, exit=exit)
            self._save()

    @property
    def stage(self) -> Stage:
        return self.engine.stage(self.portfolio_id)

    @property
    def finished(self) -> bool:
        """Terminated: everything sold (or handed back); nothing more to do."""
        return self.stage == Stage.TERMINATED

    @_exact
    def reconcile(self, now: int) -> int:
        """Settles the Engine's open orders with what the exchange knows of
        them, by client id; returns how many were settled."""
        t = self.engine.orders
        rows = t.open_rows()
        if not len(rows):
            return 0
        settled = 0
        sent = self.host["sent"]
        for cid, row in zip(t.client_order_ids(rows), rows.tolist()):
            market = self.engine.markets[int(t["asset"][row])]
            try:
                state = self.venue.lookup(cid, market)
            except VenueError as e:
                if isinstance(e, (VenueUnavailable, VenueAuthError)):
                    raise
                log.error("order %s stays in doubt: %s", cid, e)  # e.g. its trades do not add up yet
                continue
            if state is None and cid in sent and _wall_ms() - int(sent[cid]) < 1000 * self.venue.arrival_window_s:
                continue  # sent moments ago: it may still be on its way
            if state is None:
                log.info("order %s never reached %s: not sent", cid, self.venue.name)
                sent.pop(cid, None)
                self.engine.on_rejects([Reject(cid, reason="never reached the exchange", kind="unsent")], now)
            elif not state.final and now - int(t["time_ms"][row]) >= STALE_OPEN_MS:
                state = self.venue.cancel(state, market)
                if state is None or not state.final:
                    continue
                self._settle(cid, row, state, now)
            elif state.final:
                self._settle(cid, row, state, now)
            else:
                continue
            settled += 1
            self._save()
        return settled

    # ------------------------------------------------------------------ sending

    def _send(self, report: StepReport, now: int) -> None:
        t = self.engine.orders
        rows = t.open_rows()
        sells = rows[t["side"][rows] == SIDE_SELL]
        buys = rows[t["side"][rows] == SIDE_BUY]
        for cid, row, amount in zip(t.client_order_ids(sells), sells.tolist(), _amounts(t, sells)):
            market = self.engine.markets[int(t["asset"][row])]
            self._place(report, cid, row, OrderRequest(cid, market.symbol, "sell", amount), market, now)
        if len(buys):
            self._send_buys(report, buys, now)

    def _send_buys(self, report: StepReport, rows: npt.NDArray[np.int64], now: int) -> None:
        """Buys sized from the cash the sells left, at a capped price."""
        e, t = self.engine, self.engine.orders
        prices = self.venue.prices(e.markets)  # fresh: the sells took time
        cids, amounts = t.client_order_ids(rows), _amounts(t, rows)
        markets = [e.markets[int(a)] for a in t["asset"][rows].tolist()]
        limits = [_buy_limit(Decimal(repr(prices[int(a)])), m, self.slippage) for a, m in zip(t["asset"][rows].tolist(), markets)]
        cash = e.book.portfolio(self.portfolio_id)["cash"]  # a bot runs one portfolio
        need = sum((a * limit * (1 + Decimal(repr(m.taker_fee))) for a, limit, m in zip(amounts, limits, markets)), Decimal(0))
        scale = min(Decimal(1), cash / need) if need > 0 else Decimal(1)
        for k, (m, limit) in enumerate(zip(markets, limits)):
            amount = amounts[k] if scale == 1 else (amounts[k] * scale / m.step).to_integral_value(ROUND_FLOOR) * m.step
            why = refusal(m, amount, limit)
            if why:
                report.skipped.append(f"{cids[k]}:{why}")
                e.on_rejects([Reject(cids[k], reason=f"not sent: {why} after the sells", kind="unsent")], now)
                continue
            order = OrderRequest(cids[k], m.symbol, "buy", amount, "limit", limit, "IOC")
            self._place(report, cids[k], int(rows[k]), order, m, now)

    def _place(self, report: StepReport, cid: str, row: int, order: OrderRequest, market: Market, now: int) -> None:
        try:
            state = self.venue.place(order, market, before_send=self._sending)
        except OrderRefused as err:
            log.warning("order %s refused: %s", cid, err)
            report.refused.append(f"{cid}:{err.reason}")
            self._recheck_account |= err.reason == "insufficient_funds"
            self.host["sent"].pop(cid, None)
            self.engine.on_rejects([Reject(cid, reason=err.reason)], now)
            self._save()
            return
        report.sent += 1
        if state.final:
            self._settle(cid, row, state, now)
            report.filled += bool(state.filled)
            self._save()

    def _sending(self, cid: str) -> None:
        """Saved before an order goes out: after a crash, an order not found
        on the exchange this soon after may still be on its way."""
        self.host["sent"][cid] = _wall_ms()
        self._save()

    def _settle(self, cid: str, row: int, state: OrderState, now: int) -> None:
        """A finished order into the Engine: its fills, then the unfilled rest cancelled."""
        if state.fills:
            self.engine.on_fills(list(state.fills), now)
        self.host["sent"].pop(cid, None)
        for asset, fee in state.third_asset_fees:
            if asset in self.assets or asset == self.engine.quote:
                # The fee came out of a coin the portfolio holds, which the Engine cannot
                # book on this market: the account check below pauses the portfolio.
                log.error("order %s: fee %s %s charged in a portfolio asset; turn off paying fees with %s", cid, fee, asset, asset)
                self._recheck_account = True
            else:
                log.info("order %s: fee %s %s paid outside the portfolio", cid, fee, asset)
        ordered = _amounts(self.engine.orders, np.array([row]))[0]
        if state.filled < ordered:
            why = f"{state.status}: filled {state.filled} of {ordered}"
            self.engine.on_rejects([Reject(cid, reason=why, kind="cancelled")], now)

    def _save(self) -> None:
        self.host["step"] = self.step_count
        if self.extra is not None:
            self.host.update(self.extra())
        events = self.engine.events()
        self.store.save(self.engine, step=self.step_count, phase="done", events=events, extra=self.host)


def _with_budget(config: cfg.StrategyConfig, markets: Sequence[Market], slippage_bps: float) -> cfg.StrategyConfig:
    """The config the Engine plans with: its fee rate (the markets' highest
    taker fee by default) widened by the slippage allowance, so the buys it
    plans fit the cash even at the capped limit price."""
    fee = config.fee_rate if config.fee_rate is not None else max((m.taker_fee for m in markets), default=0.0)
    return msgspec.structs.replace(config, fee_rate=cfg.fee_budget(fee, slippage_bps / 10_000))


def _buy_limit(price: Decimal, market: Market, slippage: Decimal) -> Decimal:
    """The price cap of a buy: `slippage` above `price`, on the market's tick
    (down, but never below the price itself)."""
    cap = price * (1 + slippage)
    tick = market.price_tick
    if tick is None:
        return cap.normalize()
    down = (cap / tick).to_integral_value(ROUND_FLOOR) * tick
    return down if down >= price else (price / tick).to_integral_value(ROUND_CEILING) * tick


def _amounts(t: Any, rows: npt.NDArray[np.int64]) -> list[Decimal]:
    return decimals(np.ascontiguousarray(t["amount"][rows]))


def _wall_ms() -> int:
    """Real time: the default clock of the ticks, and always the clock of the
    arrival window (tests replay history on a clock of their own)."""
    return time.time_ns() // 1_000_000
