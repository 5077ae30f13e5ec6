"""`CcxtVenue`: the Engine's orders on an exchange, through a ccxt exchange object.

ccxt is an optional extra (`pip install 'rebal[ccxt]'`) and is imported only
here. Every ccxt exception is translated at this edge (`raise ... from e`):

- retryable (network, timeout, rate limit, exchange unavailable): retried
  with bounded backoff; then `VenueUnavailable`. An order is never resent
  on a retry before its fate has been looked up by client order id.
- refused for good (insufficient funds, invalid order, bad symbol):
  `OrderRefused` with a short reason code; the bot records it and the
  portfolio re-plans at the next tick.
- keys refused: `VenueAuthError`; the bot stops.

Messages keep the exchange's words but lose query strings (signatures) and
the credentials (`rebal.bot.credentials.redact`).

Both ccxt flavours work: a sync exchange object, or one from
`ccxt.async_support` (its coroutines run on the venue's own event loop).

Numbers: ccxt returns floats (or strings when `exchange.number = str`); both
are read as exact decimals, a float by its shortest repr, which is the
decimal the exchange sent for any value of up to 15 significant digits.
"""

from __future__ import annotations

import asyncio
import decimal
import inspect
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import ccxt
import msgspec

from rebal.bot.credentials import keep_out_of_logs, redact
from rebal.exact import WIDE
from rebal.exceptions import MarketError, OrderRefused, PriceError, VenueAuthError, VenueError, VenueUnavailable
from rebal.market import Market, exact_decimal
from rebal.adapters.venue import OrderRequest, OrderState
from rebal.orders import Fill

__all__ = ["CcxtVenue", "OrderRequest", "OrderState", "Retry"]

log = logging.getLogger("rebal.venue")

# What may succeed if asked again, and what never will. ccxt's
# OperationFailed covers NetworkError (RequestTimeout, ExchangeNotAvailable
# for 5xx and maintenance, DDoSProtection / RateLimitExceeded for 429,
# InvalidNonce for clock skew) and the exchange's own "try again" and
# "execution status unknown" codes (Binance -1000, -1001, -1006, -1008).
_RETRYABLE: tuple[type[BaseException], ...] = (ccxt.OperationFailed, ccxt.BadResponse, ccxt.NullResponse)
_REFUSALS: tuple[tuple[type[BaseException], str], ...] = (
    (ccxt.InsufficientFunds, "insufficient_funds"),
    (ccxt.BadSymbol, "bad_symbol"),
    (ccxt.InvalidOrder, "invalid_order"),
    (ccxt.BadRequest, "invalid_order"),
)
_REFUSED_BY_LIMITER = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)
_AUTH: tuple[type[BaseException], ...] = (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended)


class Retry(msgspec.Struct, frozen=True):
    """Bounded exponential backoff with jitter: `attempts` tries in all,
    waiting `base_s` × 2^k (at most `max_s`, ± `jitter`) in between."""

    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 8.0
    jitter: float = 0.25

    def delay(self, attempt: int, rng: random.Random) -> float:
        wait = min(self.base_s * 2**attempt, self.max_s)
        return float(wait * (1 + self.jitter * (2 * rng.random() - 1)))


class CcxtVenue:
    """An exchange for the bot: markets, prices, balances, orders by client id."""

    def __init__(
        self,
        exchange: Any,
        *,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        secrets: Sequence[str] = (),
        seed: int | None = None,
        arrival_window_s: float | None = None,
    ) -> None:
        """`secrets`: strings never to repeat in a message (the keys).
        `arrival_window_s`: how long after it was sent a request may still
        reach the exchange and execute; an order not found sooner is in
        doubt, not lost. Default: the exchange's `recvWindow` (Binance
        refuses a signed request older than that) plus 1 s of clock skew,
        else 15 s."""
        self.exchange = exchange
        self.retry = retry or Retry()
        self.sleep = sleep
        self.secrets = tuple(s for s in secrets if s)
        keep_out_of_logs(self.secrets)
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        recv_window = (getattr(exchange, "options", None) or {}).get("recvWindow")
        if arrival_window_s is None:
            arrival_window_s = float(recv_window) / 1000 + 1.0 if isinstance(recv_window, (int, float)) else 15.0
        self.arrival_window_s = arrival_window_s
        self.calls = 0
        """Requests made (each attempt counts)."""

    @property
    def name(self) -> str:
        return str(getattr(self.exchange, "id", type(self.exchange).__name__))

    # ------------------------------------------------------------------ reading

    def markets(self, quote: str, assets: Sequence[str]) -> list[Market]:
        """One `Market` per asset against `quote`, from `load_markets()`."""
        loaded = self._call("load_markets", lambda: self.exchange.load_markets())
        mode = getattr(self.exchange, "precisionMode", None)
        out = []
        for k, asset in enumerate(assets):
            symbol = f"{asset}/{quote}"
            market = loaded.get(symbol) if isinstance(loaded, Mapping) else None
            if market is None:
                raise MarketError(
                    f"assets[{k}]: {self.name} has no spot market {symbol}", field=f"assets[{k}]", value=asset
                )
            out.append(Market.from_ccxt(market, precision_mode=mode))
        return out

    def prices(self, markets: Sequence[Market]) -> list[float]:
        """The last traded price of each market (the mid of bid and ask when
        there is no last), in the markets' order."""
        symbols = [m.symbol for m in markets]
        tickers = self._call("fetch_tickers", lambda: self.exchange.fetch_tickers(symbols))
        out = []
        for m in markets:
            t = tickers.get(m.symbol) or {}
            price = _float(t.get("last"))
            if price is None and t.get("bid") is not None and t.get("ask") is not None:
                price = (float(t["bid"]) + float(t["ask"])) / 2
            if price is None or not price > 0:
                raise PriceError(f"prices[{m.base}]: {self.name} gave no price for {m.symbol} (got {t.get('last')!r})", field=f"prices[{m.base}]", value=t.get("last"))
            out.append(price)
        return out

    def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Asset → (free, total), exact."""
        raw = self._call("fetch_balance", lambda: self.exchange.fetch_balance())
        free, total = raw.get("free") or {}, raw.get("total") or {}
        return {a: (_dec(free.get(a)) or Decimal(0), _dec(total.get(a)) or Decimal(0)) for a in set(free) | set(total)}

    # ------------------------------------------------------------------ orders

    def place(self, order: OrderRequest, market: Market, *, before_send: Callable[[str], None] | None = None) -> OrderState:
        """Sends `order`. After a retryable failure its fate is looked up by
        client id: found, it is what the exchange did; not found once the
        arrival window has passed since it went out, it never arrived and is
        sent again, at most `retry.attempts` times in all. `before_send(cid)`
        runs before each time it goes out (the bot saves when: after a crash
        an order in doubt is waited for, not forgotten). Raises
        `OrderRefused` (refused for good) or `VenueUnavailable` (its fate
        unknown: look it up later, never resend blindly)."""
        params: dict[str, Any] = {"clientOrderId": order.client_order_id}
        if order.time_in_force:
            params["timeInForce"] = order.time_in_force
        price = None if order.price is None else str(order.price)
        last: BaseException | None = None
        sent_at: float | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                self._wait(attempt - 1, f"create_order {order.client_order_id}", last)
                # A 429 is the exchange itself refusing the request: nothing of it is still on its way.
                in_flight = None if isinstance(last, _REFUSED_BY_LIMITER) else sent_at
                found = self._lookup_after(order.client_order_id, market, in_flight)
                if found is not None:
                    return found
            if before_send is not None:
                before_send(order.client_order_id)
            sent_at = time.monotonic()
            try:
                self.calls += 1
                with decimal.localcontext(WIDE):  # ccxt sets the context's rounding and traps: on a copy
                    raw = self._run(self.exchange.create_order(order.symbol, order.type, order.side, str(order.amount), price, params))
            except _RETRYABLE as e:
                last = e
                continue
            except BaseException as e:
                raise self._translate(e, f"create_order {order.client_order_id}") from e
            return self._state(raw, order.client_order_id, market)
        raise self._unavailable(f"create_order {order.client_order_id}", last)

    def _lookup_after(self, client_order_id: str, market: Market, sent_at: float | None) -> OrderState | None:
        """`lookup`, but "not found" only counts once a request sent at
        `sent_at` can no longer arrive: until then it may be on its way."""
        found = self.lookup(client_order_id, market)
        if found is None and sent_at is not None:
            still = self.arrival_window_s - (time.monotonic() - sent_at)
            if still > 0:
                self.sleep(still)
                found = self.lookup(client_order_id, market)
        return found

    def lookup(self, client_order_id: str, market: Market) -> OrderState | None:
        """The order with this client id as the exchange has it, fills
        included; None if the exchange never received it."""

        def fetch() -> Any:
            return self.exchange.fetch_order(None, market.symbol, {"clientOrderId": client_order_id})

        try:
            raw = self._call(f"fetch_order {client_order_id}", fetch)
        except OrderRefused as e:
            if isinstance(e.__cause__, ccxt.OrderNotFound):
                return None
            raise
        return self._state(raw, client_order_id, market)

    def cancel(self, state: OrderState, market: Market) -> OrderState | None:
        """Cancels an order still open on the exchange; returns its state after."""
        try:
            self._call(f"cancel_order {state.client_order_id}", lambda: self.exchange.cancel_order(state.exchange_id, market.symbol))
        except OrderRefused as e:  # filled or gone meanwhile: the lookup says which
            log.info("cancel %s refused: %s", state.client_order_id, e)
        return self.lookup(state.client_order_id, market)

    def close(self) -> None:
        """Closes an async exchange's session and the venue's event loop."""
        closer = getattr(self.exchange, "close", None)
        if self._loop is not None:
            if closer is not None:
                self._run(closer())
            self._loop.close()
            self._loop = None

    # ------------------------------------------------------------------ internals

    def _state(self, raw: Mapping[str, Any], client_order_id: str, market: Market) -> OrderState:
        """An order structure read exactly; its trades fetched when the
        response did not carry them all."""
        filled = _dec(raw.get("filled")) or Decimal(0)
        trades = list(raw.get("trades") or [])
        if filled and _total(trades) != filled and raw.get("id") is not None:
            trades = list(self._call(f"fetch_order_trades {client_order_id}", lambda: self.exchange.fetch_order_trades(raw["id"], market.symbol, None, 1000)))
        if _total(trades) != filled:
            raise VenueError(
                f"{self.name} order {client_order_id}: its trades add up to {_total(trades)}, not the {filled} filled",
                field="order.filled",
                value=str(filled),
            )
        fills, third = _fills(client_order_id, market, trades)
        status = str(raw.get("status") or "open")
        return OrderState(
            client_order_id=client_order_id,
            symbol=market.symbol,
            status=status,
            amount=_dec(raw.get("amount")) or Decimal(0),
            filled=filled,
            fills=tuple(fills),
            exchange_id=None if raw.get("id") is None else str(raw["id"]),
            third_asset_fees=tuple(third),
        )

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """A request that is safe to repeat, retried on retryable failures."""
        last: BaseException | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                self._wait(attempt - 1, what, last)
            try:
                self.calls += 1
                with decimal.localcontext(WIDE):  # ccxt sets the context's rounding and traps: on a copy
                    return self._run(fn())
            except _RETRYABLE as e:
                last = e
            except BaseException as e:
                raise self._translate(e, what) from e
        raise self._unavailable(what, last)

    def _run(self, result: Any) -> Any:
        """A sync exchange's result as is; an async one's awaited on our loop."""
        if inspect.isawaitable(result):
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            return self._loop.run_until_complete(result)  # (callers are in the wide context already)
        return result

    def _wait(self, attempt: int, what: str, error: BaseException | None) -> None:
        delay = self.retry.delay(attempt, self._rng)
        log.warning("%s: %s; retrying in %.2f s", what, self._text(error), delay)
        self.sleep(delay)

    def _unavailable(self, what: str, error: BaseException | None) -> VenueUnavailable:
        e = VenueUnavailable(f"{self.name} {what}: still failing after {self.retry.attempts} attempts: {self._text(error)}", field=what)
        e.__cause__ = error
        return e

    def _translate(self, error: BaseException, what: str) -> BaseException:
        if isinstance(error, _AUTH):
            return VenueAuthError(f"{self.name} {what}: the exchange refused the API keys: {self._text(error)}", field=what)
        for kind, reason in _REFUSALS:
            if isinstance(error, kind):
                return OrderRefused(f"{self.name} {what}: {self._text(error)}", reason=reason, field=what)
        if isinstance(error, ccxt.ExchangeError):
            return OrderRefused(f"{self.name} {what}: {self._text(error)}", reason="exchange_error", field=what)
        if isinstance(error, ccxt.BaseError):
            return VenueError(f"{self.name} {what}: {self._text(error)}", field=what)
        return error  # not the exchange's: a bug of ours, raised as it is

    def _text(self, error: BaseException | None) -> str:
        if error is None:
            return "no answer"
        return f"{type(error).__name__}: {redact(str(error), self.secrets)}"


def _fills(client_order_id: str, market: Market, trades: Sequence[Mapping[str, Any]]) -> tuple[list[Fill], list[tuple[str, Decimal]]]:
    """ccxt trades as exact `Fill`s. A fee in the base or the quote goes on
    the fill; one in a third asset (BNB) is set aside."""
    fills, third = [], []
    for t in trades:
        amount, price = _dec(t.get("amount")), _dec(t.get("price"))
        if amount is None or price is None or amount <= 0:
            raise VenueError(f"order {client_order_id}: a trade without amount or price ({t.get('amount')!r} @ {t.get('price')!r})", field="trade", value=t.get("id"))
        cost = _cost(amount, price, _dec(t.get("cost")))
        fee, fee_asset = Decimal(0), market.quote
        charged = list(t.get("fees") or ([t["fee"]] if t.get("fee") else []))
        for f in charged:
            paid = _dec(f.get("cost")) if f else None
            if not paid:
                continue
            currency = f.get("currency")
            if currency not in (market.base, market.quote):
                third.append((str(currency), paid))
            elif fee:
                raise VenueError(f"order {client_order_id}: a trade charged fees in two assets", field="trade.fees", value=repr(charged))
            else:
                fee, fee_asset = paid, str(currency)
        fills.append(Fill(client_order_id, amount, price, fee=fee, fee_asset=fee_asset, cost=cost))
    return fills, third


def _cost(amount: Decimal, price: Decimal, given: Decimal | None) -> Decimal:
    """The exact product when the exchange's cost is it up to float noise;
    the exchange's own figure when it differs (it rounded on its side)."""
    exact = WIDE.multiply(amount, price)
    if given is None or abs(given - exact) <= WIDE.multiply(exact, Decimal("1e-12")):
        return exact
    return given


def _total(trades: Sequence[Mapping[str, Any]]) -> Decimal:
    return sum((_dec(t.get("amount")) or Decimal(0) for t in trades), Decimal(0))


def _dec(value: Any) -> Decimal | None:
    return None if value is None or value == "" else exact_decimal(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
