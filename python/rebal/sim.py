"""The exchange-side demo host: N portfolios on a simulated venue.

`simulate` runs the Engine the way an exchange backend would: random but
seeded configs, a deterministic synthetic price path (one tick an hour),
a matching venue that fills at the tick price with fees and market rules,
users' spot balances that auto-invest draws from, and every step saved to
a `Store`. Run again with the same arguments it resumes where it stopped;
the final digest is the same whether or not it was interrupted.

The venue and the spot ledger are the exchange's, not the Engine's: they
live in their own tables of the same file and commit on their own, as a
real venue would, so a crash can fall between "the venue took the order"
and "the Engine recorded it". The venue refuses a client order id it has
seen; recovery asks it by client id and never sends an order twice.
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rebal import config as cfg
from rebal.batch import SIDE_BUY, SIDE_SELL
from rebal.columns import decimals
from rebal.engine import Engine
from rebal.events import QUOTE_ASSET, EventKind, Events
from rebal.market import Market, refusal
from rebal.orders import Fill, Reject
from rebal.store import Store

__all__ = ["simulate", "sim_markets", "price_path", "random_configs", "Venue", "DuplicateOrder"]

START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
HOUR_MS = 3_600_000

# (base, amount step, min notional, start price, price tick, hourly volatility)
COINS = [
    ("BTC", "0.00001", "5", 90_000.0, "0.01", 0.006),
    ("ETH", "0.0001", "5", 3_000.0, "0.01", 0.008),
    ("BNB", "0.001", "5", 900.0, "0.01", 0.007),
    ("SOL", "0.001", "5", 140.0, "0.01", 0.010),
    ("XRP", "0.1", "5", 2.1, "0.0001", 0.010),
    ("ADA", "0.1", "5", 0.42, "0.0001", 0.011),
    ("DOGE", "1", "1", 0.15, "0.00001", 0.012),
    ("LTC", "0.001", "5", 80.0, "0.01", 0.009),
]
FEE = Decimal("0.001")


def sim_markets() -> list[Market]:
    return [
        Market(f"{b}/USDT", b, "USDT", step, min_notional=notional, price_tick=tick, taker_fee=float(FEE), maker_fee=float(FEE))
        for b, step, notional, _, tick, _ in COINS
    ]


def price_path(seed: int, ticks: int) -> npt.NDArray[np.float64]:
    """(ticks + 1, coins) prices: a correlated geometric random walk, on each market's price tick."""
    rng = np.random.default_rng([seed, 1])
    vol = np.array([c[5] for c in COINS])
    market = rng.standard_normal((ticks + 1, 1)) * 0.6
    own = rng.standard_normal((ticks + 1, len(COINS))) * 0.8
    steps = (market + own) * vol - 0.5 * vol**2
    steps[0] = 0.0
    prices = np.array([c[3] for c in COINS]) * np.exp(np.cumsum(steps, axis=0))
    ticks_of = np.array([float(c[4]) for c in COINS])
    path: npt.NDArray[np.float64] = np.maximum(np.round(prices / ticks_of), 1) * ticks_of
    return path


def random_configs(seed: int, n: int, ticks: int) -> tuple[list[cfg.StrategyConfig], npt.NDArray[np.int64]]:
    """n seeded configs over every product setting, and the step at which
    each user terminates by hand (-1: never)."""
    rng = np.random.default_rng([seed, 2])
    names = [c[0] for c in COINS]
    configs = []
    for _ in range(n):
        k = int(rng.integers(2, 6))
        assets = rng.choice(names, k, replace=False)
        cuts = np.sort(rng.choice(np.arange(1, 20), k - 1, replace=False)) * 5
        weights = np.diff(np.concatenate([[0], cuts, [100]]))
        trigger: cfg.ThresholdTrigger | cfg.CalendarTrigger
        if rng.random() < 0.7:
            trigger = cfg.ThresholdTrigger(threshold=float(rng.choice([1, 2, 3, 5, 8])), kind=str(rng.choice(["absolute", "relative"])))  # type: ignore[arg-type]
        else:
            trigger = cfg.CalendarTrigger(every=str(rng.choice(["4h", "1d", "3d"])), gate=float(rng.choice([0, 1, 3])) or None)
        auto = None
        if rng.random() < 0.4:
            mode: cfg.DrawdownMode | cfg.ScheduleMode
            if rng.random() < 0.5:
                mode = cfg.DrawdownMode(loss=float(rng.choice([2, 5])), min_interval="1d")
            else:
                schedules = [cfg.ScheduleMode(every="1d"), cfg.ScheduleMode(weekly="fri", at="14:00"), cfg.ScheduleMode(monthly=1, at="00:00")]
                mode = schedules[int(rng.integers(0, len(schedules)))]
            cap = Decimal(int(rng.integers(15, 40)) * 100) if rng.random() < 0.5 else None
            auto = cfg.AutoInvest(amount=Decimal(int(rng.integers(10, 200))), mode=mode, cap=cap)
        trailing = cfg.TrailingTakeProfit(arm=10, drop=float(rng.choice([2, 4]))) if rng.random() < 0.15 else None
        configs.append(
            cfg.StrategyConfig(
                assets={str(a): float(w) for a, w in zip(assets, weights)},
                investment=Decimal(int(rng.integers(100, 5000))) + Decimal(int(rng.integers(0, 100))) / 100,
                trigger=trigger,
                cooldown=str(rng.choice(["0s", "5m", "1h"])),
                destination=str(rng.choice(["target", "band_edge", "inner_band(0.5)"])) if isinstance(trigger, cfg.ThresholdTrigger) else "target",
                take_profit=float(rng.choice([8, 15, 25])) if rng.random() < 0.3 else None,
                stop_loss=float(rng.choice([5, 10, 20])) if rng.random() < 0.3 else None,
                trailing_take_profit=trailing,
                exit=str(rng.choice(["sell", "return"])),  # type: ignore[arg-type]
                auto_invest=auto,
            )
        )
    quits = np.where(rng.random(n) < 0.1, rng.integers(0, ticks + 1, n), -1)
    return configs, quits


class DuplicateOrder(RuntimeError):
    """The venue saw this client order id before: an order was sent twice."""


_VENUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS venue_orders (client_order_id TEXT PRIMARY KEY, result TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS venue_submissions (seq INTEGER PRIMARY KEY AUTOINCREMENT, client_order_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spot (portfolio_id INTEGER PRIMARY KEY, balance TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transfers (portfolio_id INTEGER, transfer INTEGER, granted INTEGER NOT NULL, PRIMARY KEY (portfolio_id, transfer));
"""


class Venue:
    """A matching venue and the users' spot accounts, in their own tables.

    Orders fill at the price the tick carried (the order's price), whole or
    in two parts; about one in forty is rejected. Which, is decided by the
    client id alone, so a re-run decides the same way. Fees are 0.1 % in
    the quote asset."""

    def __init__(self, path: Path, markets: list[Market]) -> None:
        self.markets = markets
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_VENUE_SCHEMA)

    def open_accounts(self, balances: dict[int, Decimal]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT OR IGNORE INTO spot VALUES (?, ?)", [(pid, str(b)) for pid, b in balances.items()])
        self.db.execute("COMMIT")

    # The Engine's Funds protocol.
    def withdraw(
        self, portfolio_ids: npt.NDArray[np.uint64], transfers: npt.NDArray[np.int64], amounts: npt.NDArray[np.str_]
    ) -> npt.NDArray[np.bool_]:
        granted = np.zeros(len(portfolio_ids), bool)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        for k, (pid, transfer, amount) in enumerate(zip(portfolio_ids.tolist(), transfers.tolist(), amounts.tolist())):
            seen = db.execute("SELECT granted FROM transfers WHERE portfolio_id = ? AND transfer = ?", (pid, transfer)).fetchone()
            if seen is not None:  # asked again after a crash: the same answer, no second debit
                granted[k] = bool(seen[0])
                continue
            balance = Decimal(db.execute("SELECT balance FROM spot WHERE portfolio_id = ?", (pid,)).fetchone()[0])
            ok = balance >= Decimal(amount)
            if ok:
                db.execute("UPDATE spot SET balance = ? WHERE portfolio_id = ?", (str(balance - Decimal(amount)), pid))
            db.execute("INSERT INTO transfers VALUES (?, ?, ?)", (pid, transfer, int(ok)))
            granted[k] = ok
        db.execute("COMMIT")
        return granted

    def credit(self, returns: list[tuple[int, Decimal]]) -> None:
        """Cash handed back on termination, once per portfolio however often
        it is told (coins returned in kind would go to the users' coin balances)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        for pid, amount in returns:
            if db.execute("INSERT OR IGNORE INTO transfers VALUES (?, -1, 1)", (pid,)).rowcount:
                balance = Decimal(db.execute("SELECT balance FROM spot WHERE portfolio_id = ?", (pid,)).fetchone()[0])
                db.execute("UPDATE spot SET balance = ? WHERE portfolio_id = ?", (str(balance + amount), pid))
        db.execute("COMMIT")

    def submit(self, orders: list[tuple[str, int, int, str, float]]) -> None:
        """Takes orders (client id, market index, side, amount, price), sells
        of a round before its buys, and matches them at once. An order that
        breaks its market's rules (step, minimum amount or notional, a
        suspended market) is refused as "rules"; a buy whose round had a sell
        refused is refused too (the money it counted on never came)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            short: set[str] = set()  # rounds whose sells were refused: their buys lack the money
            for cid, asset, side, amount, price in orders:
                db.execute("INSERT INTO venue_submissions (client_order_id) VALUES (?)", (cid,))
                if db.execute("SELECT 1 FROM venue_orders WHERE client_order_id = ?", (cid,)).fetchone():
                    raise DuplicateOrder(f"client order id {cid} sent twice")
                round_ = cid.rsplit("-", 1)[0]
                if refusal(self.markets[asset], Decimal(amount), Decimal(repr(float(price)))) is not None:
                    result = "rules"
                elif side == SIDE_BUY and round_ in short:
                    result = "reject"
                else:
                    result = _match(cid, side, Decimal(amount), price)
                if result in ("reject", "rules") and side == SIDE_SELL:
                    short.add(round_)
                db.execute("INSERT INTO venue_orders VALUES (?, ?)", (cid, result))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def lookup(self, client_order_ids: list[str]) -> dict[str, str]:
        """What the venue knows of these orders: client id → its result."""
        out = {}
        for cid in client_order_ids:
            row = self.db.execute("SELECT result FROM venue_orders WHERE client_order_id = ?", (cid,)).fetchone()
            if row is not None:
                out[cid] = str(row[0])
        return out

    def broken_rules(self) -> int:
        """Orders refused for breaking their market's rules (the Engine should send none)."""
        return int(self.db.execute("SELECT COUNT(*) FROM venue_orders WHERE result = 'rules'").fetchone()[0])

    def submissions(self) -> tuple[int, int]:
        """(submissions, distinct client ids): equal when nothing was sent twice."""
        row = self.db.execute("SELECT COUNT(*), COUNT(DISTINCT client_order_id) FROM venue_submissions").fetchone()
        return int(row[0]), int(row[1])


def _match(cid: str, side: int, amount: Decimal, price: float) -> str:
    """A venue's answer, decided by the client id: 'reject' or fills 'amount@price,…'."""
    h = int.from_bytes(hashlib.sha256(cid.encode()).digest()[:4], "little")
    if h % 40 == 0:
        return "reject"
    p = Decimal(repr(float(price)))
    if h % 5 == 0 and amount > 0:  # two partial fills
        first = (amount / 3).quantize(Decimal(1).scaleb(amount.as_tuple().exponent), rounding=ROUND_HALF_EVEN)  # type: ignore[arg-type]
        if 0 < first < amount:
            return f"{first}@{p},{amount - first}@{p}"
    return f"{amount}@{p}"


def _outcomes(results: dict[str, str]) -> tuple[list[Fill], list[Reject]]:
    fills, rejects = [], []
    for cid, result in results.items():
        if result in ("reject", "rules"):
            rejects.append(Reject(cid, reason="breaks the market's rules" if result == "rules" else "venue refused"))
            continue
        for part in result.split(","):
            amount, price = (Decimal(x) for x in part.split("@"))
            cost = amount * price
            fee = (cost * FEE).quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN)
            fills.append(Fill(cid, amount, price, fee=fee, fee_asset="USDT", cost=cost))
    return fills, rejects


def simulate(
    portfolios: int, ticks: int, seed: int, store_path: str | Path, *, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Runs (or resumes) the simulation and returns its summary with the digest."""
    say = progress or (lambda _: None)
    path = Path(store_path)
    markets = sim_markets()
    prices = price_path(seed, ticks)
    configs, quits = random_configs(seed, portfolios, ticks)
    store = Store(path)
    venue = Venue(path, markets)
    saved = store.checkpoint()
    if saved is not None and store.host_state().get("args") != [portfolios, ticks, seed]:
        raise ValueError(f"{path} holds a simulation with other arguments {store.host_state().get('args')}")
    args = {"args": [portfolios, ticks, seed]}
    if saved is None:
        engine = Engine(markets, funds=venue)
        rng = np.random.default_rng([seed, 3])
        ids = engine.create_many(configs, START_MS)
        # Most users keep enough in spot for a few auto-invest cycles; some do not.
        venue.open_accounts({int(pid): c.investment + Decimal(int(rng.integers(0, 3000))) for pid, c in zip(ids.tolist(), configs)})
        engine.fund(ids, START_MS)
        store.save(engine, step=-1, phase="done", events=engine.events(), extra=args)
        step, phase = -1, "done"
    else:
        engine = store.load(markets, funds=venue)
        step, phase = saved
        say(f"resuming after step {step} ({phase})")
    if phase == "sent":  # orders saved; did the venue get them? Ask it by client id.
        _exchange(engine, store, venue, step)
    for k in range(step + 1, ticks + 1):
        now = START_MS + k * HOUR_MS
        leaving = np.flatnonzero(quits == k)
        if len(leaving):
            alive = engine.state["stage"][engine.book.slots(leaving.astype(np.uint64))] < 3
            if alive.any():
                engine.terminate(leaving[alive].astype(np.uint64), now)
        engine.on_tick(now, prices[k])
        store.save(engine, step=k, phase="sent", events=_returned(venue, engine.events()), extra=args)
        _exchange(engine, store, venue, k)
        if ticks >= 10 and k % max(ticks // 10, 1) == 0:
            say(f"tick {k}/{ticks}: {store.counts()['orders']} orders, {store.counts()['fills']} fills, {store.counts()['events']} events")
    return summary(engine, store, venue, portfolios, ticks, seed)


def _exchange(engine: Engine, store: Store, venue: Venue, step: int) -> None:
    """Sends the open orders the venue does not know yet, applies what it answers, saves."""
    rows = engine.orders.open_rows()
    ids = engine.orders.client_order_ids(rows)
    known = venue.lookup(ids)
    t = engine.orders
    new = [
        (cid, int(t["asset"][r]), int(t["side"][r]), str(_amount(t["amount"][r])), float(engine.prices[t["asset"][r]]) if engine.prices is not None else 0.0)
        for cid, r in zip(ids, rows.tolist())
        if cid not in known
    ]
    venue.submit(new)
    results = venue.lookup(ids)
    fills, rejects = _outcomes(results)
    engine.on_fills(fills)
    engine.on_rejects(rejects)
    store.save(engine, step=step, phase="done", events=_returned(venue, engine.events()), fills=fills, extra=store.host_state())


def _returned(venue: Venue, events: Events) -> Events:
    """Credits the cash that terminations handed back to the users' spot balances."""
    c = events.columns
    cash = (c["kind"] == EventKind.ASSET_RETURNED) & (c["asset"] == QUOTE_ASSET)
    if cash.any():
        venue.credit(list(zip(c["portfolio_id"][cash].tolist(), _amounts(c["amount"][cash]))))
    return events


def _amount(word_pair: np.ndarray) -> Decimal:
    return decimals(np.ascontiguousarray(word_pair.reshape(1, 2)))[0]


def _amounts(words: np.ndarray) -> list[Decimal]:
    return decimals(np.ascontiguousarray(words)) if len(words) else []


def summary(engine: Engine, store: Store, venue: Venue, portfolios: int, ticks: int, seed: int) -> dict[str, Any]:
    """The final state in numbers, and a digest of it: holdings, cash, orders, fills, events."""
    book = engine.book
    p, h = book.columns(), book.holding_columns()
    live = np.flatnonzero(p["alive"])
    order = live[np.argsort(p["id"][live])]
    digest = hashlib.sha256()
    for slot in order.tolist():
        rows = slice(int(p["start"][slot]), int(p["stop"][slot]))
        digest.update(np.asarray(p["id"][slot]).tobytes() + np.asarray(engine.state["stage"][slot]).tobytes())
        digest.update(p["cash"][slot].tobytes() + h["asset"][rows].tobytes() + h["amount"][rows].tobytes())
    counts = store.counts()
    for row in store.events_digest_rows():
        digest.update(repr(row).encode())
    digest.update(repr(sorted(counts.items())).encode())
    sent, distinct = venue.submissions()
    stages = np.bincount(engine.state["stage"][live], minlength=5)
    acct = engine.accounting()
    return {
        "portfolios": portfolios,
        "ticks": ticks,
        "seed": seed,
        "orders": counts["orders"],
        "fills": counts["fills"],
        "events": counts["events"],
        "event_kinds": store.event_kinds(),
        "stages": {name: int(n) for name, n in zip(("created", "funding", "active", "terminating", "terminated"), stages)},
        "orders_sent": sent,
        "client_ids_sent_twice": sent - distinct,
        "orders_breaking_market_rules": venue.broken_rules(),
        "value": round(float(np.nansum(acct["value"])), 2),
        "net_invested": round(float(sum(Decimal(x) for x in acct["net_invested"])), 2),
        "hold_value": round(float(np.nansum(acct["hold_value"])), 2),
        "digest": digest.hexdigest(),
    }


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
