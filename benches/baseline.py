"""Honest baselines for the tick benchmark: the same scan and plan as
`rebal.Book.tick`, written the way a user would without the Rust core.

* `numpy_tick`: vectorized numpy over the whole book (chunks of portfolios;
  loops only over passes, iterations and holding positions, never over
  portfolios), for the bulk of the work.
* `python_tick`: a plain per-portfolio Python loop (floats and ints), run
  on a sample of portfolios.

Both mirror `rust/src/plan.rs` on the benchmark's regime (benches/realistic.py):
threshold trigger (absolute band; relative works too), destination "target"
(so `Rounding::Truncate` and none of the band code), each market's taker fee,
cash target 0, never rebalanced and not locked. Float expressions follow the
Rust operation order (sums in holding order, starting from cash or 0.0, never
numpy's pairwise sums) so every order agrees bit for bit. The exact settle
(`settle_exactly`) runs in Python Fractions: for every in-doubt portfolio in
`python_tick`; in `numpy_tick` only where floats with a wide margin cannot
show that it changes nothing (0–30 portfolios per million). Each function
names the Rust function it mirrors.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from realistic import RealisticBook

__all__ = ["numpy_tick", "python_tick"]

# Constants of rust/src (trigger.rs, lots.rs, plan.rs).
BAND_TOLERANCE = 1e-9
FLOAT_DOUBT = 1e-9
LOT_TOLERANCE = 1e-9
MAX_LOT_TOLERANCE = 1e-3
MAX_FIXED_POINT_ROUNDS = 64
V_SEEN_ROUNDS = 12
I64_MAX = 2**63 - 1
UNIT = 10**18  # atoms per unit of an Amount
TWO32 = 4294967296.0
TWO64 = 18446744073709551616.0


# ---------------------------------------------------------------- market rules


def _atoms(x: Decimal | float | str) -> int:
    """Exact atoms (10^-18) of a decimal; a float by its shortest repr (`Amount::from_f64`)."""
    d = Decimal(repr(float(x))) if isinstance(x, float) else Decimal(x)
    return int(d.scaleb(18).to_integral_value(rounding="ROUND_DOWN"))


def _atoms_to_f64(atoms: int) -> float:
    """`Amount::to_f64`: three 64-bit conversions (high word, the low word's
    two 32-bit halves), then × 1e-18."""
    low = atoms & 0xFFFFFFFFFFFFFFFF
    high = float(atoms >> 64) * TWO32 + float(low >> 32)
    return (high * TWO32 + float(low & 0xFFFFFFFF)) * 1e-18


def _exact_price(price: float) -> Fraction:
    """`price_decimal`: the decimal of a float's shortest repr."""
    return Fraction(Decimal(repr(float(price))))


class Quotes:
    """`Quote::new` for every market at this tick's prices, as numpy columns
    (plus exact Fractions for the rare exact checks)."""

    def __init__(self, markets: list, prices: np.ndarray) -> None:
        k = len(markets)
        self.price = np.asarray(prices, dtype=np.float64)
        self.step_atoms = [_atoms(m.step) for m in markets]
        self.step = np.array([_atoms_to_f64(a) for a in self.step_atoms])
        self.lot_value = self.step * self.price
        self.fee = np.array([float(m.taker_fee) for m in markets])
        self.lot_cost = self.lot_value * (1.0 + self.fee)  # Row::lot_cost
        self.min_lots = np.full(k, I64_MAX, dtype=np.int64)
        self.max_lots = np.zeros(k, dtype=np.int64)
        self.active = np.zeros(k, dtype=bool)
        # Exact values for settle_exactly and the rules.
        self.step_x = [Fraction(a, UNIT) for a in self.step_atoms]
        self.price_x: list[Fraction | None] = []
        self.fee_x = [Fraction(Decimal(repr(float(m.taker_fee)))) for m in markets]
        # Decimals of each step: amounts are read as integers of 10^-decimals.
        self.decimals = np.array([max(0, -Decimal(m.step).normalize().as_tuple().exponent) for m in markets])
        for a, m in enumerate(markets):
            price = float(self.price[a])
            usable = math.isfinite(price) and price > 0.0
            self.price_x.append(_exact_price(price) if usable else None)
            if not usable:
                continue
            self.active[a] = bool(m.active)
            step = self.step_x[a]
            by_amount = max(math.ceil(Fraction(_atoms(m.min_amount or 0), UNIT) / step), 1)
            # Market::min_lots: smallest n with n·step·price ≥ min_notional, exactly.
            by_notional = math.ceil(Fraction(_atoms(m.min_notional or 0), UNIT) / (step * self.price_x[a]))
            self.min_lots[a] = min(max(by_notional, 1, by_amount), I64_MAX)
            # Market::max_lots.
            most = I64_MAX
            if m.max_amount is not None:
                most = min(most, _atoms(m.max_amount) // self.step_atoms[a])
            if m.max_notional is not None:
                most = min(most, math.floor(Fraction(_atoms(m.max_notional), UNIT) / (step * self.price_x[a])))
            self.max_lots[a] = most


# ---------------------------------------------------------------- shared scalar helpers


def _f2i(x: float) -> int:
    """Rust `x as i64` (saturating, NaN → 0) of an already whole float."""
    if x != x:
        return 0
    if x >= 9.2233720368547758e18:
        return I64_MAX
    if x <= -9.2233720368547758e18:
        return -I64_MAX - 1
    return int(x)


def _to_lots(x: float, inward: bool = False) -> int:
    """plan.rs `to_lots` (Truncate, or Inward)."""
    if not (x > 0.0):
        return 0
    tol = min(LOT_TOLERANCE * max(x, 1.0), MAX_LOT_TOLERANCE)
    lots = math.ceil(x - tol) if inward else math.floor(x + tol)
    return min(max(lots, 0), I64_MAX)  # `.max(0.0) as i64` saturates


# ================================================================= pure Python


class _Row:
    """plan.rs `Row` (the fields the Target path uses)."""

    __slots__ = (
        "asset", "price", "lv", "per_lot", "lc", "fee", "value", "target", "dest", "held", "min_lots", "max_lots",
        "tradable", "frozen", "sell_unused", "sell_blocked", "sell", "buy",
    )  # fmt: skip

    def increment(self) -> int:
        return self.min_lots if self.buy == 0 else 1

    def ok(self, lots: int) -> bool:
        """`Quote::refusal(lots).is_none()`."""
        return self.tradable and lots > 0 and self.min_lots <= lots <= self.max_lots


def _py_buy_cost(rows: list[_Row]) -> float:
    total = 0.0
    for r in rows:
        total += r.buy * r.lc
    return total


def _py_estimate(rows: list[_Row], value: float, cash: float, bfs: float) -> tuple[float, float]:
    """The `estimate` closure of size_orders: (proceeds, V′)."""
    proceeds = fees = 0.0
    for r in rows:
        notional = r.sell * r.lv
        proceeds += notional * (1.0 - r.fee)
        fees += notional * r.fee
    spendable = max(cash + proceeds, 0.0)  # cash_dest = 0
    return proceeds, value - fees - bfs * spendable


def _py_size_sells(rows: list[_Row], v: float) -> bool:
    changed = False
    for r in rows:
        wanted = _to_lots((r.value - r.dest * v) * r.per_lot)
        lots = 0 if (r.sell_blocked or r.frozen) else min(wanted, r.held, r.max_lots)
        if not (lots > 0 and r.ok(lots)):
            lots = 0
        changed |= lots != r.sell
        r.sell = lots
    return changed


def _py_size_buys(rows: list[_Row], v: float) -> None:
    for r in rows:
        wanted = 0 if (r.sell > 0 or r.frozen) else _to_lots((r.dest * v - r.value) * r.per_lot)
        lots = min(wanted, r.max_lots)
        r.buy = lots if lots > 0 and r.ok(lots) else 0


def _py_worth_a_lot(r: _Row, deficit: float) -> bool:
    if r.frozen:
        return False
    inc = r.increment()
    needed = (inc - LOT_TOLERANCE) * r.lv if r.buy == 0 else LOT_TOLERANCE * r.lv
    return r.buy + inc <= r.max_lots and deficit > needed


def _py_top_up(rows: list[_Row], v: float, cash: float) -> None:
    """plan.rs `top_up`: water-filling, then lot by lot."""

    def deficit(r: _Row) -> float:
        return r.target * v - (r.value + r.buy * r.lv)

    def candidate(r: _Row, cash: float) -> bool:
        return r.tradable and r.sell == 0 and _py_worth_a_lot(r, deficit(r)) and r.increment() * r.lc <= cash

    n = len(rows)
    for _ in range(n + 1):
        order = [r for r in rows if candidate(r, cash)]
        order.sort(key=lambda r: -deficit(r))  # stable: ties keep holding order
        weighted = weights = level = 0.0
        for k, r in enumerate(order):
            weighted += deficit(r) * (1.0 + r.fee)
            weights += 1.0 + r.fee
            level_k = max((weighted - cash) / weights, 0.0)
            if level_k >= (deficit(order[k + 1]) if k + 1 < len(order) else 0.0):
                level = level_k
                break
        added = False
        for r in order:
            add = min(_to_lots((deficit(r) - level) * r.per_lot), r.max_lots - r.buy)
            if add >= r.increment() and add * r.lc <= cash:
                r.buy += add
                cash -= add * r.lc
                added = True
        if not added:
            break

    for _ in range(8 * n + 32):
        open_ = [r for r in rows if candidate(r, cash)]
        if not open_:
            break
        best, next_deficit = open_[0], -math.inf
        for r in open_[1:]:
            if deficit(r) > deficit(best):
                next_deficit, best = deficit(best), r
            else:
                next_deficit = max(next_deficit, deficit(r))
        r = best
        to_next = _to_lots((deficit(r) - max(next_deficit, 0.0)) * r.per_lot, inward=True)
        lift = to_next
        if to_next <= r.increment():  # tied: its share of the cash, up to its target
            share = _f2i(math.floor(cash / (len(open_) * r.lc)))
            lift = min(share, min(_to_lots(deficit(r) * r.per_lot), r.max_lots - r.buy))
        affordable = _f2i(math.floor(cash / r.lc))
        add = min(max(lift, r.increment()), affordable, r.max_lots - r.buy)
        r.buy += add
        cash -= add * r.lc


def _py_trim_sells(rows: list[_Row], leftover: float) -> None:
    """plan.rs `trim_sells` (no band part)."""
    for r in rows:
        if r.sell == 0 or leftover <= 0.0:
            continue
        net = r.lv * (1.0 - r.fee)
        whole = leftover >= r.sell * net * (1.0 - 1e-12)
        trim = r.sell if whole else min(_f2i(math.floor(leftover / net)), r.sell)
        rest = r.sell - trim
        if rest > 0 and not r.ok(rest):
            continue
        r.sell = rest
        r.sell_unused |= rest == 0
        leftover -= trim * net


def _py_size_orders(rows: list[_Row], value: float, cash: float, bfs: float) -> tuple[float, float, float]:
    """plan.rs `Sizing::size_orders`: returns (v_after, v_seen, proceeds)."""
    for r in rows:  # destination_weights, Target: frozen assets keep their weight
        r.dest = r.value / value if r.frozen else r.target

    v_after = value
    _py_size_sells(rows, v_after)
    for _ in range(MAX_FIXED_POINT_ROUNDS):
        v_after = _py_estimate(rows, value, cash, bfs)[1]
        if not _py_size_sells(rows, v_after):
            break
    proceeds = _py_estimate(rows, value, cash, bfs)[0]

    budget = cash + proceeds
    _py_size_buys(rows, v_after)
    cost = _py_buy_cost(rows)
    if cost > budget:
        scale = max(budget / cost, 0.0)
        for r in rows:
            scaled = _f2i(math.floor(r.buy * scale))
            r.buy = scaled if r.ok(scaled) else 0

    v_seen = v_after
    proceeds = _py_estimate(rows, value, cash, bfs)[0]
    for _ in range(V_SEEN_ROUNDS):
        budget = cash + proceeds
        _py_top_up(rows, v_seen, max(budget - _py_buy_cost(rows), 0.0))
        _py_trim_sells(rows, budget - _py_buy_cost(rows))
        proceeds = _py_estimate(rows, value, cash, bfs)[0]
        fees = 0.0
        for r in rows:
            fees += (r.sell + r.buy) * r.lv * r.fee
        left = cash + proceeds - _py_buy_cost(rows)
        next_v = value - fees - bfs * max(left, 0.0)
        if abs(next_v - v_seen) <= 1e-13 * value:
            break
        v_seen = next_v
    return v_after, v_seen, proceeds


def _py_freeze_stuck(rows: list[_Row], v_after: float) -> bool:
    """plan.rs `freeze_stuck` (Target: only refused sells freeze)."""
    blocked = False
    for r in rows:
        if r.sell_unused and not r.sell_blocked:
            r.sell_blocked = blocked = True
        r.sell_unused = False
    if blocked:
        for r in rows:
            r.frozen = False
        return True
    froze = False
    for r in rows:
        if r.frozen or r.sell > 0 or r.buy > 0:
            continue
        excess = (r.value - r.dest * v_after) * r.per_lot
        wanted = _to_lots(abs(excess))
        if excess > 0.0 and wanted != 0 and not r.ok(min(wanted, r.held, r.max_lots)):
            r.frozen = froze = True
    return froze


def _py_settle_exactly(rows: list[_Row], q: Quotes, cash_atoms: int, v: float) -> None:
    """plan.rs `settle_exactly` in exact Fractions. Rust uses rust_decimal,
    which is exact at these magnitudes (≤ 28 digits); its `cash / lot` is
    rounded to 28 digits before the floor, which only matters on a quotient
    within 1e-28 of a whole number."""

    def cost(r: _Row, lots: int) -> Fraction:
        return lots * q.step_x[r.asset] * q.price_x[r.asset] * (1 + q.fee_x[r.asset])

    def deficit(r: _Row) -> float:
        return r.target * v - (r.value + r.buy * r.lv)

    cash = Fraction(cash_atoms, UNIT)  # exact_cash_after
    for r in rows:
        a = r.asset
        if r.sell > 0:
            cash += r.sell * q.step_x[a] * q.price_x[a] * (1 - q.fee_x[a])
        elif r.buy > 0:
            cash -= cost(r, r.buy)
    while cash < 0:
        buying = [r for r in rows if r.buy > 0]
        if not buying:
            return
        largest = buying[0]
        for r in buying:  # Iterator::max_by: the last of equal maxima
            if r.buy * r.lv >= largest.buy * largest.lv:
                largest = r
        keep = largest.buy - 1 if largest.ok(largest.buy - 1) else 0
        cash += cost(largest, largest.buy - keep)
        largest.buy = keep
    for _ in range(8 * len(rows) + 32):
        best = None
        for r in rows:
            if r.tradable and r.sell == 0 and _py_worth_a_lot(r, deficit(r)) and cost(r, r.increment()) <= cash:
                if best is None or deficit(r) >= deficit(best):
                    best = r
        if best is None:
            break
        r = best
        inc = r.increment()
        affordable = math.floor(cash / cost(r, 1))
        add = min(max(min(_to_lots(deficit(r) * r.per_lot, inward=True), affordable), inc), r.max_lots - r.buy)
        c = cost(r, add)
        if c > cash:
            break
        r.buy += add
        cash -= c


def _py_plan(rows: list[_Row], q: Quotes, cash: float, cash_atoms: int, value: float) -> None:
    """plan.rs `plan_into` after the trigger check: passes, then the exact settle."""
    max_buy_fee = 0.0
    for r in rows:
        if r.tradable:
            max_buy_fee = max(max_buy_fee, r.fee)
    bfs = max_buy_fee / (1.0 + max_buy_fee)
    v_after, v_seen, proceeds = _py_size_orders(rows, value, cash, bfs)
    for _ in range(2 * len(rows)):
        if not _py_freeze_stuck(rows, v_after):
            break
        for r in rows:
            r.sell = r.buy = 0
        v_after, v_seen, proceeds = _py_size_orders(rows, value, cash, bfs)

    cash_after = cash + proceeds - _py_buy_cost(rows)
    doubt = FLOAT_DOUBT * value
    in_doubt = cash_after < doubt or any(
        r.tradable and r.sell == 0 and max(r.min_lots, 1) * r.lc <= cash_after + doubt for r in rows
    )
    if in_doubt:
        _py_settle_exactly(rows, q, cash_atoms, v_seen)


def python_tick(rb: RealisticBook, prices: np.ndarray, sample: np.ndarray) -> dict[str, np.ndarray]:
    """Scan and plan the portfolios `sample` one by one in plain Python."""
    q = Quotes(rb.markets, prices)
    sample = np.asarray(sample, dtype=np.int64)
    # Plain Python columns for the sample (reading the input is not timed apart).
    price, lv, lc, fee = q.price.tolist(), q.lot_value.tolist(), q.lot_cost.tolist(), q.fee.tolist()
    per_lot = (1.0 / q.lot_value).tolist()  # Row::per_lot
    min_lots, max_lots, active = q.min_lots.tolist(), q.max_lots.tolist(), q.active.tolist()
    scale = [10 ** int(d) for d in q.decimals]
    unit_atoms = [UNIT // s for s in scale]
    offsets, assets, amounts, targets = rb.offsets, rb.asset, rb.amount, rb.target
    cash_col, threshold = rb.cash[sample].tolist(), rb.threshold[sample].tolist()
    absolute = _absolute(rb)

    values, deviations, triggered = [], [], []
    out_p: list[int] = []
    out_leg: list[int] = []
    out_side: list[int] = []
    out_lots: list[int] = []
    for k, i in enumerate(sample.tolist()):
        start, stop = int(offsets[i]), int(offsets[i + 1])
        held_assets = assets[start:stop].tolist()
        held_amounts = amounts[start:stop].tolist()
        held_targets = targets[start:stop].tolist()
        cash = cash_col[k]
        cash_atoms = _float_atoms(cash)
        cash_f = _atoms_to_f64(cash_atoms)

        # Scan (batch.rs `scan`, plan.rs step 1): value from cash, in holding order.
        rows = []
        value = cash_f
        for a, x, t in zip(held_assets, held_amounts, held_targets):
            atoms = _amount_atoms(x, scale[a], unit_atoms[a])
            r = _Row()
            r.asset, r.price, r.lv, r.per_lot, r.lc, r.fee = a, price[a], lv[a], per_lot[a], lc[a], fee[a]
            r.value = _atoms_to_f64(atoms) * price[a]
            r.target, r.dest = t, t
            r.held = min(atoms // q.step_atoms[a], I64_MAX) if atoms > 0 else 0
            r.min_lots, r.max_lots, r.tradable = min_lots[a], max_lots[a], active[a]
            r.frozen = r.sell_unused = r.sell_blocked = False
            r.sell = r.buy = 0
            value += r.value
            rows.append(r)
        deviation, fire = 0.0, False
        if value > 0.0 and math.isfinite(value):
            theta = threshold[k]
            for r in rows:
                d = abs(r.value * (1.0 / value) - r.target)  # Drift::measure
                deviation = max(deviation, d)
                half_width = theta if absolute else theta * r.target  # Band::half_width
                fire |= r.target > 0.0 and d >= half_width - BAND_TOLERANCE
        else:
            value = value if math.isfinite(value) else 0.0
        values.append(value)
        deviations.append(deviation)
        triggered.append(fire)
        if not fire:
            continue

        _py_plan(rows, q, cash_f, cash_atoms, value)
        for side in (1, 0):  # emit_legs: sells first
            for pos, r in enumerate(rows):
                lots = r.sell if side else r.buy
                if lots > 0:
                    out_p.append(i)
                    out_leg.append(pos)
                    out_side.append(side)
                    out_lots.append(lots)
    return {
        "value": np.array(values, dtype=np.float64),
        "max_deviation": np.array(deviations, dtype=np.float64),
        "triggered": np.array(triggered, dtype=bool),
        "portfolio": np.array(out_p, dtype=np.int64),
        "leg": np.array(out_leg, dtype=np.uint8),
        "side": np.array(out_side, dtype=np.uint8),
        "lots": np.array(out_lots, dtype=np.int64),
    }


def _absolute(rb: RealisticBook) -> bool:
    """The band kind (`Band::breached`); the planner itself never looks at the band to target."""
    if rb.threshold_kind not in ("absolute", "relative"):
        raise ValueError(f"threshold_kind: {rb.threshold_kind!r}")
    return rb.threshold_kind == "absolute"


def _amount_atoms(x: float, scale: int, unit_atoms: int) -> int:
    """Atoms of an amount float, read as a whole number of 10^-decimals
    (its shortest repr), else through its repr."""
    units = round(x * scale)
    if units / scale == x and abs(units) < 2**53:
        return units * unit_atoms
    return _atoms(x)


def _float_atoms(x: float) -> int:
    """Atoms of a cash float: cents when it is a whole number of cents, else its repr."""
    cents = round(x * 100)
    if cents / 100 == x and abs(cents) < 2**53:
        return cents * 10**16
    return _atoms(x)



# ================================================================= numpy

_M32 = np.uint64(0xFFFFFFFF)
_POW10_U64 = np.array([10**e for e in range(19)], dtype=np.uint64)


def _as_i64(x: np.ndarray) -> np.ndarray:
    """Rust `x as i64` of whole floats: saturating, NaN → 0."""
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) if not np.isfinite(x).all() else x
    big, small = x >= 2.0**63, x < -(2.0**63)
    out = np.where(big | small, 0.0, x).astype(np.int64)
    out[big] = I64_MAX
    out[small] = -I64_MAX - 1
    return out


def _np_to_lots(x: np.ndarray, inward: bool = False) -> np.ndarray:
    """plan.rs `to_lots`, elementwise."""
    with np.errstate(invalid="ignore"):
        positive = x > 0.0
    x = np.where(positive, x, 0.0)
    tol = np.minimum(LOT_TOLERANCE * np.maximum(x, 1.0), MAX_LOT_TOLERANCE)
    lots = np.ceil(x - tol) if inward else np.floor(x + tol)
    return np.where(positive, _as_i64(np.maximum(lots, 0.0)), 0)


def _units_to_f64(units: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """`Amount::to_f64` of atoms = units · 10^exponent (units ≥ 0, exponent ≤ 18):
    the 128-bit product from 32-bit limbs, then as `_atoms_to_f64`."""
    a, b = units.astype(np.uint64), _POW10_U64[exponent]
    a0, a1, b0, b1 = a & _M32, a >> np.uint64(32), b & _M32, b >> np.uint64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> np.uint64(32)) + (p01 & _M32) + (p10 & _M32)
    low = (p00 & _M32) | (mid << np.uint64(32))
    high = p11 + (p01 >> np.uint64(32)) + (p10 >> np.uint64(32)) + (mid >> np.uint64(32))
    upper = high.astype(np.int64).astype(np.float64) * TWO32 + (low >> np.uint64(32)).astype(np.float64)
    return (upper * TWO32 + (low & _M32).astype(np.float64)) * 1e-18


def _read_units(x: np.ndarray, decimals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float read as a whole number of 10^-decimals (its shortest repr when
    that has at most `decimals` places): (units, ok)."""
    scale = 10.0 ** decimals
    units = np.rint(x * scale)
    ok = (units / scale == x) & (units >= 0) & (units < 2.0**53)
    return np.where(ok, units, 0).astype(np.int64), ok


def _np_amounts(q: Quotes, asset: np.ndarray, amount: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each holding's `Amount::to_f64` and whole lots (`Quote::lots_in`)."""
    d = q.decimals[asset]
    units, ok = _read_units(amount, d)
    step_units = np.array([s // 10 ** (18 - int(e)) for s, e in zip(q.step_atoms, q.decimals)], dtype=np.int64)
    f64 = _units_to_f64(units, 18 - d)
    held = units // step_units[asset]
    for r in np.flatnonzero(~ok):  # not a multiple of 10^-decimals: exact through its repr
        atoms = _atoms(float(amount[r]))
        f64[r] = _atoms_to_f64(atoms)
        held[r] = min(max(atoms // q.step_atoms[asset[r]], 0), I64_MAX)
    return f64, held


def _np_cash(cash: np.ndarray) -> np.ndarray:
    """Each cash float's `Amount::to_f64` (shortest decimal: fewest places that round-trip)."""
    out = np.empty(len(cash))
    todo = np.arange(len(cash))
    for d in range(19):
        if not len(todo):
            break
        units, ok = _read_units(cash[todo], np.full(len(todo), d))
        out[todo[ok]] = _units_to_f64(units[ok], np.full(ok.sum(), 18 - d))
        todo = todo[~ok]
    for r in todo:
        out[r] = _atoms_to_f64(_atoms(float(cash[r])))
    return out


class _Plan:
    """The planner's `Row`s of T triggered portfolios as (T, W) columns (W =
    most holdings; padding rows are untradable and hold nothing), plus the
    per-portfolio scalars."""

    def __init__(self, **columns: np.ndarray) -> None:
        self.__dict__.update(columns)
        t, w = self.val.shape
        self.per_lot = 1.0 / self.lv  # Row::per_lot
        self.dest = self.tgt.copy()
        self.sell = np.zeros((t, w), dtype=np.int64)
        self.buy = np.zeros((t, w), dtype=np.int64)
        self.frozen = np.zeros((t, w), dtype=bool)
        self.unused = np.zeros((t, w), dtype=bool)  # Row::sell_unused
        self.blocked = np.zeros((t, w), dtype=bool)  # Row::sell_blocked
        # The fee bound: f/(1+f) for the highest buy fee (plan_into).
        top_fee = np.maximum(np.where(self.tradable, self.fee, 0.0).max(axis=1), 0.0)
        self.bfs = top_fee / (1.0 + top_fee)

    def ok(self, i: np.ndarray, lots: np.ndarray) -> np.ndarray:
        """`Quote::refusal(lots).is_none()` for rows of portfolios i."""
        return self.tradable[i] & (lots > 0) & (lots >= self.minl[i]) & (lots <= self.maxl[i])


def _np_rowsum(terms: np.ndarray) -> np.ndarray:
    """Σ over holdings in holding order from 0.0 (as Rust's iterator sums; numpy's are pairwise)."""
    total = np.zeros(terms.shape[0])
    for j in range(terms.shape[1]):
        total = total + terms[:, j]
    return total


def _np_buy_cost(s: _Plan, i: np.ndarray) -> np.ndarray:
    return _np_rowsum(s.buy[i] * s.lc[i])


def _np_estimate(s: _Plan, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The `estimate` closure of size_orders: (proceeds, V′)."""
    notional = s.sell[i] * s.lv[i]
    fee = s.fee[i]
    proceeds, fees = _np_rowsum(notional * (1.0 - fee)), _np_rowsum(notional * fee)
    spendable = np.maximum(s.cash[i] + proceeds, 0.0)  # cash_dest = 0
    return proceeds, s.value[i] - fees - s.bfs[i] * spendable


def _np_size_sells(s: _Plan, i: np.ndarray, v: np.ndarray) -> np.ndarray:
    wanted = _np_to_lots((s.val[i] - s.dest[i] * v[:, None]) * s.per_lot[i])
    lots = np.minimum(np.minimum(wanted, s.held[i]), s.maxl[i])
    lots[s.blocked[i] | s.frozen[i]] = 0
    lots = np.where(s.ok(i, lots), lots, 0)
    changed = (lots != s.sell[i]).any(axis=1)
    s.sell[i] = lots
    return changed


def _np_size_buys(s: _Plan, i: np.ndarray, v: np.ndarray) -> None:
    wanted = _np_to_lots((s.dest[i] * v[:, None] - s.val[i]) * s.per_lot[i])
    wanted[(s.sell[i] > 0) | s.frozen[i]] = 0
    lots = np.minimum(wanted, s.maxl[i])
    s.buy[i] = np.where(s.ok(i, lots), lots, 0)


def _np_top_up(s: _Plan, i: np.ndarray, v: np.ndarray, cash: np.ndarray) -> None:
    """plan.rs `top_up`: water-filling rounds, then lot by lot; per portfolio
    i with its V′ `v` and spendable `cash`."""
    tgt, val, lv, per_lot, lc, fee = s.tgt[i], s.val[i], s.lv[i], s.per_lot[i], s.lc[i], s.fee[i]
    minl, maxl, n = s.minl[i], s.maxl[i], s.n[i]
    movable = s.tradable[i] & (s.sell[i] == 0) & ~s.frozen[i]
    buy, cash = s.buy[i].copy(), cash.copy()
    w = buy.shape[1]

    def candidates(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`candidate` and `deficit` (plan.rs) of the rows of local portfolios p."""
        b, inc_min, lvp = buy[p], minl[p], lv[p]
        new = b == 0
        inc = np.where(new, inc_min, 1)  # Row::increment
        deficit = tgt[p] * v[p, None] - (val[p] + b * lvp)
        needed = np.where(new, (inc - LOT_TOLERANCE) * lvp, LOT_TOLERANCE * lvp)  # worth_a_lot
        worth = (b + inc <= maxl[p]) & (deficit > needed)
        return movable[p] & worth & (inc * lc[p] <= cash[p, None]), deficit, inc

    # Water-filling to a common deficit level, at most n + 1 rounds.
    live, rounds = np.arange(len(i)), n + 1
    while len(live):
        cand, deficit, _ = candidates(live)
        count = cand.sum(axis=1)
        order = np.argsort(np.where(cand, -deficit, np.inf), axis=1, kind="stable")
        d_sorted = np.take_along_axis(deficit, order, axis=1)
        w_sorted = 1.0 + np.take_along_axis(fee[live], order, axis=1)
        c = cash[live]
        weighted, weights, level = np.zeros(len(live)), np.zeros(len(live)), np.zeros(len(live))
        found = np.zeros(len(live), dtype=bool)
        for k in range(w):
            act = (k < count) & ~found
            if not act.any():
                break
            weighted = np.where(act, weighted + d_sorted[:, k] * w_sorted[:, k], weighted)
            weights = np.where(act, weights + w_sorted[:, k], weights)
            with np.errstate(invalid="ignore", divide="ignore"):
                level_k = np.maximum((weighted - c) / weights, 0.0)
            following = np.where(k + 1 < count, d_sorted[:, min(k + 1, w - 1)], 0.0)
            hit = act & (level_k >= following)
            level = np.where(hit, level_k, level)
            found |= hit
        added = np.zeros(len(live), dtype=bool)
        for k in range(w):
            act = k < count
            if not act.any():
                break
            col = order[:, k]
            b = buy[live, col]
            inc = np.where(b == 0, minl[live, col], 1)
            cost = lc[live, col]
            add = np.minimum(_np_to_lots((d_sorted[:, k] - level) * per_lot[live, col]), maxl[live, col] - b)
            take = act & (add >= inc) & (add * cost <= c)
            buy[live[take], col[take]] = b[take] + add[take]
            c = np.where(take, c - add * cost, c)
            added |= take
        cash[live] = c
        rounds[live] -= 1
        live = live[added & (rounds[live] > 0)]

    # The last lots: the most underweight candidate lifted to the next one's level.
    live, rounds = np.arange(len(i)), 8 * n + 32
    while len(live):
        cand, deficit, inc = candidates(live)
        has = cand.any(axis=1)
        live, cand, deficit, inc = live[has], cand[has], deficit[has], inc[has]
        if not len(live):
            break
        r = np.arange(len(live))
        masked = np.where(cand, deficit, -np.inf)
        best = np.argmax(masked, axis=1)  # the first of equal maxima, as the Rust loop
        top = masked[r, best]
        masked[r, best] = -np.inf
        next_deficit = masked.max(axis=1)
        cost, b = lc[live, best], buy[live, best]
        to_next = _np_to_lots((top - np.maximum(next_deficit, 0.0)) * per_lot[live, best], inward=True)
        # Tied within an increment: its share of the cash, up to its target.
        share = _as_i64(np.floor(cash[live] / (cand.sum(axis=1) * cost)))
        to_target = np.minimum(_np_to_lots(top * per_lot[live, best]), maxl[live, best] - b)
        lift = np.where(to_next <= inc[r, best], np.minimum(share, to_target), to_next)
        affordable = _as_i64(np.floor(cash[live] / cost))
        add = np.minimum(np.minimum(np.maximum(lift, inc[r, best]), affordable), maxl[live, best] - b)
        buy[live, best] = b + add
        cash[live] = cash[live] - add * cost
        rounds[live] -= 1
        live = live[rounds[live] > 0]
    s.buy[i] = buy


def _np_trim_sells(s: _Plan, i: np.ndarray, leftover: np.ndarray) -> None:
    """plan.rs `trim_sells` (no band part), holding by holding."""
    sell, unused, lv, fee = s.sell[i], s.unused[i], s.lv[i], s.fee[i]
    tradable, minl, maxl = s.tradable[i], s.minl[i], s.maxl[i]
    left = leftover.copy()
    for j in range(sell.shape[1]):
        lots = sell[:, j]
        act = (lots != 0) & (left > 0.0)
        if not act.any():
            continue
        net = lv[:, j] * (1.0 - fee[:, j])
        whole = left >= lots * net * (1.0 - 1e-12)
        with np.errstate(invalid="ignore", divide="ignore"):
            part = np.minimum(_as_i64(np.floor(left / net)), lots)
        trim = np.where(whole, lots, part)
        rest = lots - trim
        refused = (rest > 0) & ~(tradable[:, j] & (rest >= minl[:, j]) & (rest <= maxl[:, j]))
        act &= ~refused
        sell[:, j] = np.where(act, rest, lots)
        unused[:, j] |= act & (rest == 0)
        left = np.where(act, left - trim * net, left)
    s.sell[i], s.unused[i] = sell, unused


def _np_size_orders(s: _Plan, i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """plan.rs `Sizing::size_orders` for portfolios i: (v_after, v_seen, proceeds)."""
    # destination_weights, Target: frozen assets keep their weight.
    s.dest[i] = np.where(s.frozen[i], s.val[i] / s.value[i, None], s.tgt[i])

    # 3. Sells at the fixed point of V′.
    v_after = s.value[i].copy()
    _np_size_sells(s, i, v_after)
    live = np.arange(len(i))
    for _ in range(MAX_FIXED_POINT_ROUNDS):
        if not len(live):
            break
        v_after[live] = _np_estimate(s, i[live])[1]
        live = live[_np_size_sells(s, i[live], v_after[live])]
    proceeds = _np_estimate(s, i)[0]

    # 4. Buys, scaled down when over budget.
    budget = s.cash[i] + proceeds
    _np_size_buys(s, i, v_after)
    cost = _np_buy_cost(s, i)
    over = cost > budget
    if over.any():
        io = i[over]
        scale = np.maximum(budget[over] / cost[over], 0.0)
        scaled = _as_i64(np.floor(s.buy[io] * scale[:, None]))
        s.buy[io] = np.where(s.ok(io, scaled), scaled, 0)

    # Top up and trim sells against the V′ a re-plan will see, until it settles.
    v_seen = v_after.copy()
    proceeds = _np_estimate(s, i)[0]
    live = np.arange(len(i))
    for _ in range(V_SEEN_ROUNDS):
        if not len(live):
            break
        il = i[live]
        budget = s.cash[il] + proceeds[live]
        _np_top_up(s, il, v_seen[live], np.maximum(budget - _np_buy_cost(s, il), 0.0))
        _np_trim_sells(s, il, budget - _np_buy_cost(s, il))
        proceeds[live] = _np_estimate(s, il)[0]
        fees = _np_rowsum((s.sell[il] + s.buy[il]) * s.lv[il] * s.fee[il])
        left = s.cash[il] + proceeds[live] - _np_buy_cost(s, il)
        next_v = s.value[il] - fees - s.bfs[il] * np.maximum(left, 0.0)
        settled = np.abs(next_v - v_seen[live]) <= 1e-13 * s.value[il]
        v_seen[live] = np.where(settled, v_seen[live], next_v)
        live = live[~settled]
    return v_after, v_seen, proceeds


def _np_freeze_stuck(s: _Plan, i: np.ndarray, v_after: np.ndarray) -> np.ndarray:
    """plan.rs `freeze_stuck` (Target: only refused sells freeze); whether
    each portfolio needs another pass."""
    newly = s.unused[i] & ~s.blocked[i]
    blocked = newly.any(axis=1)
    s.blocked[i] |= newly
    s.unused[i] = False
    s.frozen[i[blocked]] = False
    o = i[~blocked]
    excess = (s.val[o] - s.dest[o] * v_after[~blocked, None]) * s.per_lot[o]
    wanted = _np_to_lots(np.abs(excess))
    capped = np.minimum(np.minimum(wanted, s.held[o]), s.maxl[o])
    idle = s.frozen[o] | (s.sell[o] > 0) | (s.buy[o] > 0)
    freeze = ~idle & (excess > 0.0) & (wanted != 0) & ~s.ok(o, capped)
    s.frozen[o] |= freeze
    again = blocked.copy()
    again[~blocked] = freeze.any(axis=1)
    return again


def _np_settle(s: _Plan, q: Quotes, v_seen: np.ndarray, proceeds: np.ndarray, cash_col: np.ndarray) -> int:
    """plan.rs step 5 (`settle_exactly` when in doubt). In floats it is clear
    for nearly every portfolio that the exact settle changes nothing (cash
    clearly ≥ 0, no candidate clearly affordable or within float noise of
    it); the few others run the exact settle in Python Fractions, one by one
    (none in the benchmark books so far). Returns how many did."""
    t = len(s.value)
    all_ = np.arange(t)
    cash_after = s.cash + proceeds - _np_buy_cost(s, all_)
    doubt = FLOAT_DOUBT * s.value
    affordable_lot = s.tradable & (s.sell == 0) & (np.maximum(s.minl, 1) * s.lc <= (cash_after + doubt)[:, None])
    in_doubt = (cash_after < doubt) | affordable_lot.any(axis=1)
    # Float noise on cash_after and on a lot's cost is ~1e-15 of the value; 1e-11 is a wide margin.
    margin = 1e-11 * s.value
    new = s.buy == 0
    inc = np.where(new, s.minl, 1)
    deficit = s.tgt * v_seen[:, None] - (s.val + s.buy * s.lv)
    needed = np.where(new, (inc - LOT_TOLERANCE) * s.lv, LOT_TOLERANCE * s.lv)
    worth = ~s.frozen & (s.buy + inc <= s.maxl) & (deficit > needed)
    maybe = s.tradable & (s.sell == 0) & worth & (inc * s.lc <= (cash_after + margin)[:, None])
    # Without orders the exact cash is the cash itself, whose sign its float has.
    no_orders = ~((s.sell > 0) | (s.buy > 0)).any(axis=1)
    clear = ((cash_after > margin) | (no_orders & (s.cash >= 0.0))) & ~maybe.any(axis=1)
    exact = np.flatnonzero(in_doubt & ~clear)
    for p in exact:
        rows = []
        for j in range(int(s.n[p])):
            r = _Row()
            r.asset, r.lv, r.lc, r.fee = int(s.asset[p, j]), float(s.lv[p, j]), float(s.lc[p, j]), float(s.fee[p, j])
            r.per_lot = float(s.per_lot[p, j])
            r.value, r.target = float(s.val[p, j]), float(s.tgt[p, j])
            r.min_lots, r.max_lots, r.tradable = int(s.minl[p, j]), int(s.maxl[p, j]), bool(s.tradable[p, j])
            r.frozen, r.sell, r.buy = bool(s.frozen[p, j]), int(s.sell[p, j]), int(s.buy[p, j])
            rows.append(r)
        _py_settle_exactly(rows, q, _float_atoms(float(cash_col[p])), float(v_seen[p]))
        s.buy[p, : len(rows)] = [r.buy for r in rows]
    return len(exact)


def _np_plan(s: _Plan, q: Quotes, cash_col: np.ndarray) -> int:
    """plan.rs `plan_into` after the trigger: sizing passes with
    `freeze_stuck` between them, then the settle."""
    everyone = np.arange(len(s.value))
    v_after, v_seen, proceeds = _np_size_orders(s, everyone)
    passes = np.zeros(len(everyone), dtype=np.int64)
    live = everyone
    while len(live):
        live = live[passes[live] < 2 * s.n[live]]
        live = live[_np_freeze_stuck(s, live, v_after[live])]
        if not len(live):
            break
        s.sell[live] = 0
        s.buy[live] = 0
        v_after[live], v_seen[live], proceeds[live] = _np_size_orders(s, live)
        passes[live] += 1
    return _np_settle(s, q, v_seen, proceeds, cash_col)


def _np_scan(q: Quotes, rb: RealisticBook, lo: int, hi: int):
    """batch.rs `scan` for portfolios lo:hi, as padded (n, W) holdings."""
    starts, sizes = rb.offsets[lo:hi], np.diff(rb.offsets[lo : hi + 1])
    w = int(sizes.max()) if len(sizes) else 1
    held_mask = np.arange(w) < sizes[:, None]
    rows = np.where(held_mask, starts[:, None] + np.arange(w), rb.offsets[lo])
    first, last = int(rb.offsets[lo]), int(rb.offsets[hi])
    amount_f64, held = _np_amounts(q, rb.asset[first:last], rb.amount[first:last])
    local = rows - first
    asset = np.where(held_mask, rb.asset[rows], 0)
    val = np.where(held_mask, amount_f64[local] * q.price[asset], 0.0)
    tgt = np.where(held_mask, rb.target[rows], 0.0)
    cash = _np_cash(rb.cash[lo:hi])
    value = cash.copy()
    for j in range(w):  # in holding order, from the cash
        value = value + val[:, j]
    usable = (value > 0.0) & np.isfinite(value)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.abs(val * (1.0 / value)[:, None] - tgt)  # Drift::measure
    d = np.where(held_mask & usable[:, None], d, 0.0)
    deviation = d.max(axis=1, initial=0.0)
    theta = rb.threshold[lo:hi, None]
    half_width = theta if _absolute(rb) else theta * tgt  # Band::half_width
    fired = usable & (held_mask & (tgt > 0.0) & (d >= half_width - BAND_TOLERANCE)).any(axis=1)
    value = np.where(np.isfinite(value), value, 0.0)
    return value, deviation, fired, dict(
        held_mask=held_mask, asset=asset, val=val, tgt=tgt, held=np.where(held_mask, held[local], 0), cash=cash, n=sizes
    )


def _np_orders(s: _Plan, portfolio: np.ndarray) -> tuple[np.ndarray, ...]:
    """plan.rs `emit_legs`: per portfolio its sells, then its buys, by position."""
    cols = []
    for side, lots in ((1, s.sell), (0, s.buy)):
        p, j = np.nonzero(lots > 0)
        cols.append((p, np.full(len(p), side, dtype=np.uint8), j, lots[p, j]))
    p, side, j, lots = (np.concatenate(c) for c in zip(*cols))
    order = np.lexsort((j, 1 - side, p))
    return portfolio[p[order]], j[order].astype(np.uint8), side[order], lots[order]


def numpy_tick(rb: RealisticBook, prices: np.ndarray, chunk: int = 1 << 17) -> dict[str, np.ndarray]:
    """Scan the whole book and plan the triggered portfolios, vectorized over
    portfolios, `chunk` portfolios at a time (~200 MB of temporaries at 2^17).
    `exact_settles` counts the portfolios settled one by one in Fractions."""
    q = Quotes(rb.markets, prices)
    n = len(rb.offsets) - 1
    value, deviation, triggered = np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool)
    parts = []
    exact_settles = 0
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        value[lo:hi], deviation[lo:hi], fired, cols = _np_scan(q, rb, lo, hi)
        triggered[lo:hi] = fired
        f = np.flatnonzero(fired)
        if not len(f):
            continue
        mask, asset = cols["held_mask"][f], cols["asset"][f]
        s = _Plan(
            val=cols["val"][f], tgt=cols["tgt"][f], held=cols["held"][f], asset=asset, n=cols["n"][f],
            lv=np.where(mask, q.lot_value[asset], 1.0), lc=np.where(mask, q.lot_cost[asset], 1.0),
            fee=np.where(mask, q.fee[asset], 0.0), tradable=mask & q.active[asset],
            minl=np.where(mask, q.min_lots[asset], 1), maxl=np.where(mask, q.max_lots[asset], 0),
            value=value[lo:hi][f], cash=cols["cash"][f],
        )  # fmt: skip
        exact_settles += _np_plan(s, q, rb.cash[lo:hi][f])
        parts.append(_np_orders(s, f + lo))
    if parts:
        portfolio, leg, side, lots = (np.concatenate(c) for c in zip(*parts))
    else:
        portfolio, leg, side, lots = (np.zeros(0, dtype=t) for t in (np.int64, np.uint8, np.uint8, np.int64))
    return {
        "value": value,
        "max_deviation": deviation,
        "triggered": triggered,
        "portfolio": portfolio.astype(np.int64),
        "leg": leg,
        "side": side,
        "lots": lots,
        "exact_settles": np.array(exact_settles),
    }
