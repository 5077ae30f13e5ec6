"""A random but realistic Book for benchmarks: K spot markets with
Binance-like rules, N portfolios of 2–10 holdings, and about 10 % of them
off their band at the tick's prices.

Market rules follow Binance's pattern: the amount step is the power of ten
that makes one lot worth 0.1–1 USDT (capped at 1 coin), the minimum
notional 5 USDT, the taker fee 0.1 %. Portfolio values are log-normal
around 2,000 USDT (100 USDT to 200,000 USDT: the exchanges' limits),
weights whole percents, absolute thresholds of 3, 5 or 10 points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import rebal

__all__ = ["RealisticBook", "realistic_book"]


@dataclass
class RealisticBook:
    markets: list[rebal.Market]
    prices: np.ndarray
    offsets: np.ndarray
    asset: np.ndarray
    amount: np.ndarray
    """float64, each an exact multiple of its step when read by shortest repr."""
    target: np.ndarray
    cash: np.ndarray
    threshold: np.ndarray
    threshold_kind: str
    triggered: np.ndarray
    """The portfolios the generator pushed off their band."""

    def book(self) -> rebal.Book:
        return rebal.Book.from_columns(
            self.offsets,
            self.asset,
            self.amount,
            self.target,
            self.cash,
            self.markets,
            threshold=self.threshold,
            threshold_kind=self.threshold_kind,
        )


def _markets(k: int, rng: np.random.Generator) -> tuple[list[rebal.Market], np.ndarray]:
    prices = np.round(10.0 ** rng.uniform(-4.5, 5.0, k), 8)
    prices = np.maximum(prices, 1e-8)
    exponents = np.minimum(np.ceil(np.log10(0.1 / prices)), 0).astype(int)
    markets = []
    for i, e in enumerate(exponents):
        step_text = "1" if e == 0 else "0." + "0" * (-e - 1) + "1"
        markets.append(
            rebal.Market(
                f"C{i}/USDT", f"C{i}", "USDT", step_text, min_amount=step_text, min_notional="5", taker_fee=0.001
            )
        )
    return markets, prices


def realistic_book(portfolios: int, assets: int, seed: int = 7, triggered_share: float = 0.10) -> RealisticBook:
    rng = np.random.default_rng(seed)
    markets, prices = _markets(assets, rng)
    n = portfolios
    sizes = rng.integers(2, min(10, assets) + 1, n)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    rows = int(offsets[-1])
    owner = np.repeat(np.arange(n), sizes)

    # Distinct assets per portfolio: a random key per (portfolio, asset) and
    # the k smallest, in blocks so the keys never take more than ~40 MB.
    width = min(10, assets)
    block = max(1, 5_000_000 // assets)
    picks = np.concatenate(
        [np.argsort(rng.random((min(block, n - lo), assets), np.float32), axis=1)[:, :width] for lo in range(0, n, block)]
    ).astype(np.int32)
    position = np.arange(rows) - np.repeat(offsets[:-1], sizes)
    asset = picks[owner, position]
    del picks

    # Whole-percent weights summing to 100: 1 % each plus a random share of the rest.
    raw = rng.random(rows) + 0.2
    total = np.add.reduceat(raw, offsets[:-1])
    spare = 100 - sizes
    pct = 1 + np.floor(raw / total[owner] * spare[owner])
    short = 100 - np.add.reduceat(pct, offsets[:-1])
    pct[offsets[:-1]] += short  # the first holding takes the rounding
    target = pct / 100.0

    threshold = rng.choice([0.03, 0.05, 0.05, 0.10], n)

    # Weights: within 60 % of the band for most, one asset 1.05–2× past it for the triggered.
    triggered = rng.random(n) < triggered_share
    drift = rng.uniform(-0.6, 0.6, rows) * threshold[owner] * np.minimum(1.0, target / 0.2)
    drift -= (np.add.reduceat(drift, offsets[:-1]) / sizes)[owner]
    first = offsets[:-1][triggered]
    push = rng.uniform(1.05, 2.0, len(first)) * threshold[triggered]
    sign = np.where(target[first] > push, rng.choice([-1.0, 1.0], len(first)), 1.0)
    drift[first] = sign * push
    others = triggered[owner] & (position > 0)
    share = target * others
    rest = np.add.reduceat(share, offsets[:-1])
    drift[others] = -(sign * push)[np.searchsorted(np.flatnonzero(triggered), owner[others])] * (
        share[others] / rest[owner[others]]
    )
    weight = np.maximum(target + drift, 0.001)
    weight /= np.add.reduceat(weight, offsets[:-1])[owner]

    value = np.exp(rng.normal(np.log(2000.0), 1.2, n)).clip(100.0, 200_000.0)
    steps = np.array([float(m.step) for m in markets])
    lots = np.floor(weight * value[owner] / prices[asset] / steps[asset])
    # lots / 10^d is the double nearest the decimal, so its shortest repr is exact.
    amount = lots / np.round(1.0 / steps[asset])
    held = np.add.reduceat(amount * prices[asset], offsets[:-1])
    cash = np.round(np.maximum(value - held, 0.0) * rng.random(n) * 0.01, 2)
    return RealisticBook(markets, prices, offsets, asset, amount, target, cash, threshold, "absolute", triggered)


def realistic_engine(generated: RealisticBook, seed: int = 7, now_ms: int = 0) -> rebal.Engine:
    """An Engine over the realistic Book, in the state funding would have
    left it (every portfolio active), with the policies an exchange's users
    set: take-profit on 30 %, stop-loss on 30 % (none crossed yet), a trailing take-profit on
    10 %, auto-invest on 40 % (half daily schedules, phases spread over the
    day so ~1/24 of them run on an hourly tick; half on a 5 % drawdown).
    Written as columns: creating a million portfolios config by config and
    funding them through fills is a different benchmark."""
    from rebal.columns import words
    from rebal.engine_state import Stage
    from rebal.policies import auto_invest, exits

    rng = np.random.default_rng([seed, 9])
    engine = rebal.Engine(generated.markets)
    book = generated.book()
    book._on_compact = engine._keep_slots
    engine.book = book
    n = len(generated.offsets) - 1
    columns = {name: np.zeros((n, *shape), dtype) for name, (dtype, shape) in engine.state._dtypes.items()}
    value = book.tick(generated.prices, now_ms, commit=False).value
    # Within ±5 % of the value: no take-profit or stop-loss is already crossed
    # (a steady tick, not the first one after a crash).
    net = np.round(value * rng.uniform(0.95, 1.05, n), 2)
    columns["stage"][:] = Stage.ACTIVE
    columns["net_invested"] = words(net, "net_invested")
    columns["net_invested_float"] = net
    columns["peak_value"] = value
    columns["drawdown_level"] = value
    columns["created_ms"][:] = now_ms - 30 * 86_400_000

    def some(share: float, values: np.ndarray | float) -> np.ndarray:
        return np.where(rng.random(n) < share, values, np.nan)

    columns["take_profit"] = some(0.3, rng.choice([0.15, 0.3, 0.5], n))
    columns["stop_loss"] = some(0.3, rng.choice([0.08, 0.15, 0.3], n))
    columns["trail_arm"] = some(0.1, 0.2)
    columns["trail_drop"] = np.where(np.isnan(columns["trail_arm"]), np.nan, 0.05)
    dca = rng.random(n) < 0.4
    scheduled = dca & (rng.random(n) < 0.5)
    columns["dca_state"][dca] = auto_invest.DCA_ON
    columns["dca_mode"][:] = np.where(scheduled, auto_invest.MODE_SCHEDULE, np.where(dca, auto_invest.MODE_DRAWDOWN, auto_invest.MODE_NONE))
    amount = np.where(dca, rng.choice([10.0, 50.0, 100.0], n), 0.0)
    columns["dca_amount"] = words(amount, "dca_amount")
    columns["dca_amount_float"] = amount
    columns["dca_cap"][:] = np.inf
    columns["dca_loss"] = np.where(dca & ~scheduled, 0.05, np.nan)
    columns["dca_min_interval_ms"][:] = 7 * 86_400_000
    columns["dca_last_ms"][:] = auto_invest.NEVER
    columns["sched_kind"][scheduled] = 1  # every
    columns["sched_every_ms"][scheduled] = 86_400_000
    columns["dca_anchor_ms"] = now_ms - rng.integers(0, 86_400_000, n)
    # Schedules at their next run; drawdown cycles may run now.
    columns["dca_next_ms"] = np.where(scheduled, columns["dca_anchor_ms"] + 86_400_000, np.where(dca, now_ms, np.iinfo(np.int64).max))
    columns["hold_asset"][:] = -1
    engine.state.append(columns, n)
    exits.set_levels(engine.state, np.arange(n))
    auto_invest.set_level(engine.state, np.arange(n))
    return engine
