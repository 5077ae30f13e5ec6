"""Checks benches/baseline.py against the Rust tick: identical orders and scan."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from baseline import numpy_tick, python_tick  # noqa: E402
from realistic import realistic_book  # noqa: E402


def rust_orders(batch, keep=None):
    cols = [np.asarray(batch.portfolio), np.asarray(batch.leg), np.asarray(batch.side), np.asarray(batch.lots)]
    if keep is not None:
        m = np.isin(cols[0], keep)
        cols = [c[m] for c in cols]
    return cols


def compare(name, ours, rust_cols, value, dev, trig):
    ok = True
    for key, ref in (("value", value), ("max_deviation", dev), ("triggered", trig)):
        bad = np.flatnonzero(ours[key] != ref)
        if len(bad):
            ok = False
            print(f"  {name}: {key} differs at {len(bad)} portfolios, e.g. {bad[:5]}")
    mine = [ours["portfolio"], ours["leg"], ours["side"], ours["lots"]]
    a = {tuple(r) for r in zip(*[c.tolist() for c in mine])}
    b = {tuple(r) for r in zip(*[c.tolist() for c in rust_cols])}
    diff_p = sorted({r[0] for r in a ^ b})
    same_order = len(mine[0]) == len(rust_cols[0]) and all(np.array_equal(x, y) for x, y in zip(mine, rust_cols))
    if diff_p or not same_order:
        ok = False
        print(f"  {name}: orders differ for {len(diff_p)} portfolios, e.g. {diff_p[:10]} (same sequence: {same_order})")
    return ok, diff_p


def main(sizes=((20000, 50), (20000, 10), (100000, 50), (100000, 10)), seeds=(1, 2, 3, 4), py_sample=2000):
    all_ok = True
    for n, k in sizes:
        for seed in seeds:
            rb = realistic_book(n, k, seed=seed)
            batch = rb.book().tick(rb.prices, 0, commit=False)
            t = time.perf_counter()
            ours = numpy_tick(rb, rb.prices)
            t_np = time.perf_counter() - t
            ok, _ = compare("numpy", ours, rust_orders(batch), batch.value, batch.max_deviation, batch.triggered)
            rng = np.random.default_rng(seed)
            trig = np.flatnonzero(batch.triggered)
            picks = [rng.choice(trig, min(py_sample, len(trig)), replace=False), rng.choice(n, py_sample, replace=False)]
            sample = np.unique(np.concatenate(picks))  # triggered ones, and a random share of the book
            t = time.perf_counter()
            py = python_tick(rb, rb.prices, sample)
            t_py = (time.perf_counter() - t) / len(sample)
            ok2, _ = compare(
                "python", py, rust_orders(batch, sample),
                batch.value[sample], batch.max_deviation[sample], batch.triggered[sample],
            )  # fmt: skip
            all_ok &= ok and ok2
            print(
                f"n={n} assets={k} seed={seed}: orders={len(batch.portfolio)} numpy {'OK' if ok else 'DIFF'} "
                f"{t_np:.2f}s ({int(ours['exact_settles'])} exact settles), "
                f"python {'OK' if ok2 else 'DIFF'} {t_py * 1e6:.0f} us/portfolio of the sample"
            )
    print("ALL OK" if all_ok else "SOME DIFFER")
    return all_ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
