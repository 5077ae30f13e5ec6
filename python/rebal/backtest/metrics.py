"""What a backtest is judged by, from value series: total and annualised
return, volatility, max drawdown, Sharpe — time-weighted, so money added
by auto-invest is not counted as return.

Works on whole series (`summary`) or streamed tick by tick over many
portfolios at once (`Stream`), which is what a sweep of thousands does.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rebal import _rebal

__all__ = ["YEAR_MS", "Stream", "summary"]

YEAR_MS = 365.25 * 86_400_000


class Stream:
    """Running statistics of N value series, one tick at a time."""

    def __init__(self, n: int) -> None:
        self.first = np.full(n, np.nan)
        self.last = np.full(n, np.nan)
        self.growth = np.zeros(n)  # Σ log returns: the time-weighted growth
        self.sum_sq = np.zeros(n)
        self.count = 0
        self.started = False
        self.peak = np.zeros(n)  # of the time-weighted growth
        self.max_drawdown = np.zeros(n)

    def add(self, values: npt.NDArray[np.float64], inflow: npt.NDArray[np.float64] | None = None) -> None:
        """The values at the next tick; `inflow` is money added since the last tick (it is no return)."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        if not self.started:
            self.first, self.last, self.started = values.copy(), values.copy(), True
            return
        if inflow is not None and not (isinstance(inflow, np.ndarray) and inflow.dtype == np.float64 and inflow.shape == values.shape and inflow.flags.c_contiguous):
            # one for all (or not float64, or strided): one per series, contiguous
            inflow = np.ascontiguousarray(np.broadcast_to(np.asarray(inflow, dtype=np.float64), values.shape))
        # A sweep adds thousands of series a tick: the arithmetic between numpy's
        # log and exp is one pass each in Rust, with the floats numpy's gave.
        r = _rebal.return_factors(values, self.last, inflow)  # 1 where unpriced; last = values
        with np.errstate(divide="ignore", invalid="ignore"):  # a factor that underflowed to 0: log −inf, as before
            np.log(r, out=r)
        self.count += 1
        _rebal.add_log_returns(r, self.growth, self.sum_sq, self.peak)  # r is now growth − peak
        np.exp(r, out=r)
        _rebal.deepen_drawdowns(self.max_drawdown, r)

    def result(self, duration_ms: float, interval_ms: float) -> dict[str, npt.NDArray[np.float64]]:
        """Per series: total_return_pct, annualised_return_pct, volatility_pct, max_drawdown_pct, sharpe."""
        n = max(self.count, 1)
        mean = self.growth / n
        std = np.sqrt(np.maximum(self.sum_sq / n - mean * mean, 0.0))
        per_year = YEAR_MS / interval_ms
        years = duration_ms / YEAR_MS
        total = np.exp(self.growth) - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            annual = np.exp(self.growth / years) - 1 if years > 0 else np.full(len(total), np.nan)
            sharpe = np.where(std > 0, mean / std * np.sqrt(per_year), 0.0)
        return {
            "final_value": self.last.copy(),
            "total_return_pct": 100 * total,
            "annualised_return_pct": 100 * annual,
            "volatility_pct": 100 * std * np.sqrt(per_year),
            "max_drawdown_pct": 100 * self.max_drawdown,
            "sharpe": sharpe,
        }


def summary(values: npt.NDArray[np.float64], times_ms: npt.NDArray[np.int64], inflow: npt.NDArray[np.float64] | None = None) -> dict[str, float]:
    """The metrics of one value series (inflow: money added at each tick, 0 for none)."""
    stream = Stream(1)
    for k, v in enumerate(values):
        stream.add(np.array([v]), None if inflow is None else np.array([inflow[k]]))
    interval = float(np.median(np.diff(times_ms))) if len(times_ms) > 1 else 86_400_000.0
    out = stream.result(float(times_ms[-1] - times_ms[0]), interval)
    return {k: float(v[0]) for k, v in out.items()}
