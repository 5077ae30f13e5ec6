"""A tiny host around `rebal.Engine` for the policy and seed-scenario tests.

`Host` plays the exchange: it feeds a tick, fills every order at the tick's
price (fees in the quote asset, charged exactly), and hands back the events
the tick produced. `FakeFunds` is the users' spot accounts (exact Decimals).
Nothing here knows how the Engine decides; the tests compare what it did
with hand computations from the exact holdings it reports.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from decimal import ROUND_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

import rebal
from rebal import Event, Fill, Market, Purpose
from rebal import config as cfg

from .conftest import shared

ATOM = Decimal("1e-18")
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


def usdt_market(base: str, step: str, *, min_notional: str = "5", fee: float = 0.001, active: bool = True) -> Market:
    return Market(f"{base}/USDT", base, "USDT", step, min_notional=min_notional, taker_fee=fee, active=active)


def synthetic_markets() -> list[Market]:
    """Realistic rules, 0.1 % taker fee."""
    return [
        usdt_market("BTC", "0.00001"),
        usdt_market("ETH", "0.0001"),
        usdt_market("SOL", "0.001"),
        usdt_market("BNB", "0.001"),
    ]


def exact_markets(fee: float = 0.0) -> list[Market]:
    """Whole-unit lots: with prices 1.0 at funding, holdings and cash are
    integers, so chosen dyadic prices put a value exactly where a test wants."""
    return [usdt_market(b, "1", min_notional="1", fee=fee) for b in ("A", "B", "C")]


class FakeFunds:
    """Spot balances per portfolio id; a withdrawal debits exactly or not at all."""

    def __init__(self) -> None:
        self.balances: dict[int, Decimal] = {}
        self.calls: list[tuple[int, int, Decimal, bool]] = []

    def withdraw(
        self, portfolio_ids: npt.NDArray[np.uint64], cycles: npt.NDArray[np.int64], amounts: npt.NDArray[np.str_]
    ) -> npt.NDArray[np.bool_]:
        out = []
        for pid, cycle, text in zip(portfolio_ids.tolist(), cycles.tolist(), amounts.tolist()):
            amount = Decimal(str(text))
            ok = self.balances.get(pid, Decimal(0)) >= amount
            if ok:
                self.balances[pid] -= amount
            self.calls.append((pid, cycle, amount, ok))
            out.append(ok)
        return np.array(out, dtype=bool)


@dataclass
class Filled:
    """One order the Host filled, with what it was charged."""

    time_ms: int
    portfolio_id: int
    asset: str
    side: str
    purpose: Purpose
    amount: Decimal
    price: Decimal
    fee: Decimal

    @property
    def cost(self) -> Decimal:
        """amount × price, exactly."""
        with localcontext(prec=80):
            return self.amount * self.price

    @property
    def charged(self) -> Decimal:
        """What a buy takes from the cash: its cost rounded up to an atom (the
        Engine rounds against the user), and the fee."""
        with localcontext(prec=80):
            return (self.cost / ATOM).to_integral_value(rounding=ROUND_UP) * ATOM + self.fee


def price_dec(x: float) -> Decimal:
    """The decimal a tick's float price stands for (its shortest repr)."""
    return Decimal(repr(float(x)))


@dataclass
class Host:
    markets: list[Market]
    limits: cfg.Limits | None = None
    fill: bool = True
    funds: FakeFunds = field(default_factory=FakeFunds)
    filled: list[Filled] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.engine = rebal.Engine(self.markets, limits=self.limits, funds=self.funds)
        self.names = [m.base for m in self.markets]
        self.batch: rebal.OrderBatch | None = None

    # -------------------------------------------------------------- set-up

    def open(self, config: cfg.StrategyConfig, now_ms: int, *, spot: Decimal | str | None = None) -> int:
        return int(self.open_many([config], now_ms, spot=spot)[0])

    def open_many(self, configs: list[cfg.StrategyConfig], now_ms: int, *, spot: Decimal | str | None = None) -> list[int]:
        """Creates and funds portfolios; each owner's spot balance is its
        investment plus `spot` (default: plenty)."""
        ids = [int(i) for i in self.engine.create_many(configs, now_ms)]
        for pid, c in zip(ids, configs):
            self.funds.balances[pid] = c.investment + (Decimal(10**9) if spot is None else Decimal(spot))
        self.engine.fund(ids, now_ms)
        return ids

    # -------------------------------------------------------------- the tick

    def step(self, now_ms: int, prices: Any) -> list[Event]:
        """One tick; every order filled at the tick's price (fee at the
        market's taker rate, in USDT, rounded up to an atom); the events."""
        prices = np.asarray(prices, dtype=np.float64)
        batch = self.engine.on_tick(now_ms, prices)
        self.batch = batch
        if self.fill and len(batch):
            fills = []
            for order, purpose in zip(batch.orders(), batch.purpose.tolist()):
                k = self.names.index(order.asset)
                price = price_dec(prices[k])
                with localcontext(prec=80):
                    fee = (order.amount * price * Decimal(repr(self.markets[k].taker_fee))).quantize(ATOM, rounding=ROUND_UP)
                fills.append(Fill(order.client_order_id, order.amount, price, fee=fee, fee_asset="USDT"))
                pid = int(order.client_order_id[2:].split("-")[0])
                self.filled.append(Filled(now_ms, pid, order.asset, order.side, Purpose(purpose), order.amount, price, fee))
            self.engine.on_fills(fills)
        return self.engine.events().records()

    # -------------------------------------------------------------- reading

    def portfolio(self, pid: int) -> dict[str, Any]:
        return self.engine.book.portfolio(pid)

    def slot(self, pid: int) -> int:
        return self.engine.book.slot(pid)

    def holdings(self, pid: int) -> tuple[dict[str, Decimal], Decimal]:
        p = self.portfolio(pid)
        return dict(p["holdings"]), p["cash"]

    def value(self, pid: int, prices: Any) -> Fraction:
        """Exact value (cash + Σ amount · price) at float prices."""
        held, cash = self.holdings(pid)
        total = Fraction(cash)
        for asset, amount in held.items():
            total += Fraction(amount) * Fraction(float(prices[self.names.index(asset)]))
        return total

    def weights(self, pid: int, prices: Any) -> dict[str, Fraction]:
        held, _ = self.holdings(pid)
        v = self.value(pid, prices)
        return {a: Fraction(q) * Fraction(float(prices[self.names.index(a)])) / v for a, q in held.items()}

    def deviation(self, pid: int, prices: Any) -> Fraction:
        """Largest |weight − target| (weight points as a fraction)."""
        targets = self.portfolio(pid)["targets"]
        w = self.weights(pid, prices)
        return max(abs(w[a] - Fraction(t)) for a, t in targets.items())

    def net_invested(self, pid: int) -> Decimal:
        return Decimal(str(self.accounting(pid)["net_invested"]))

    def accounting(self, pid: int) -> dict[str, Any]:
        acct = self.engine.accounting([pid])
        return {k: v[0].item() if hasattr(v[0], "item") else v[0] for k, v in acct.items()}

    def orders_of(self, pid: int) -> list[tuple[rebal.Order, Purpose]]:
        """The last tick's orders of one portfolio, with their purpose."""
        assert self.batch is not None
        return [
            (o, Purpose(p))
            for o, p, i in zip(self.batch.orders(), self.batch.purpose.tolist(), self.batch.portfolio_id.tolist())
            if i == pid
        ]

    def status(self, pid: int) -> int:
        assert self.batch is not None
        return int(self.batch.status[self.slot(pid)])


def events_of(events: list[Event], kind: str, pid: int | None = None) -> list[Event]:
    return [e for e in events if e.kind == kind and (pid is None or e.portfolio_id == pid)]


def kinds(events: list[Event], pid: int | None = None) -> list[str]:
    return [e.kind for e in events if pid is None or e.portfolio_id == pid]


# ------------------------------------------------------------------ real data


def daily_closes(symbol: str) -> dict[int, float]:
    """Binance daily closes of SYMBOL/USDT from ../shared/data: open time (ms, 00:00 UTC) -> close."""
    path = shared("daily_binance_usdt", f"Binance_{symbol}USDT_d.csv")
    with path.open(newline="") as f:
        next(f)  # the source URL
        return {int(row["Unix"]): float(row["Close"]) for row in csv.DictReader(f)}


def hourly_closes(symbol: str) -> dict[int, tuple[float, float, float, float]]:
    """Hourly Binance candles of SYMBOL/USDT (April–May 2019): open time (ms) -> (open, high, low, close)."""
    path = shared("hourly_triangle_2019", f"Binance_{symbol}USDT_1h.csv")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {int(float(r["unix"]) * 1000): (float(r["open"]), float(r["high"]), float(r["low"]), float(r["close"])) for r in rows}


def aligned(series: list[dict[int, Any]], start_ms: int | None = None, end_ms: int | None = None) -> list[int]:
    """The times present in every series, oldest first, within [start, end)."""
    common = set(series[0])
    for s in series[1:]:
        common &= set(s)
    return sorted(t for t in common if (start_ms is None or t >= start_ms) and (end_ms is None or t < end_ms))
