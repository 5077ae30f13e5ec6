"""Backtest reports: one self-contained HTML page plus PNG charts.

`write_report` turns one backtest run into ``DIR/index.html`` (headline
numbers first, then equity vs hold, drawdown, weights over time, the metrics
table and what was run) with the charts embedded as base64 PNGs, and writes
the same charts as ``equity.png``, ``drawdown.png`` and ``weights.png`` beside
it. `write_sweep_report` turns a parameter sweep into a heatmap of one value
(by default the excess return over hold) by threshold × interval, the best
settings and the whole table as ``sweep.csv``.

Charts are drawn with matplotlib's Agg canvas on private `Figure` objects:
pyplot is never imported, so no global backend or state is touched.

Display conventions (the `format_*` helpers): thousands separators, a true
minus sign (U+2212), a sign on every change ("+12.3 %"), percentage-point
differences as "pts", "—" for a missing number.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import matplotlib as mpl
import matplotlib.dates as mdates
import matplotlib.patheffects as patheffects
import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from rebal.exceptions import InvalidInput

__all__ = [
    "RunReport",
    "write_report",
    "write_sweep_report",
    "format_number",
    "format_money",
    "format_pct",
    "format_pts",
    "format_signed",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

METRIC_KEYS = (
    "final_value",
    "total_return_pct",
    "annualised_return_pct",
    "volatility_pct",
    "max_drawdown_pct",
    "sharpe",
    "fees_paid",
    "turnover",
    "rebalances",
)

# --------------------------------------------------------------------------- #
# Number formatting
# --------------------------------------------------------------------------- #

MINUS = "\u2212"
DASH = "\u2014"


def _finite(x: object) -> float | None:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _grouped(v: float, decimals: int) -> str:
    """`v` with thousands separators, `decimals` places and a true minus sign."""
    text = f"{abs(v):,.{decimals}f}"
    negative = v < 0 and any(c not in "0.," for c in text)
    return (MINUS if negative else "") + text


def format_number(x: object, decimals: int = 2) -> str:
    """``1234.5 -> "1,234.50"``; negative with "−"; "—" when not a number."""
    v = _finite(x)
    return DASH if v is None else _grouped(v, decimals)


def _money_decimals(v: float) -> int:
    if v == 0 or abs(v) >= 1:
        return 2
    # Small amounts (a BTC-quoted portfolio): four significant digits.
    return min(8, 3 - math.floor(math.log10(abs(v))))


def format_money(x: object, quote: str = "", *, signed: bool = False, decimals: int | None = None) -> str:
    """``1234.5, "USDT" -> "1,234.50 USDT"``; ``signed=True`` adds "+" to gains."""
    v = _finite(x)
    if v is None:
        return DASH
    text = _grouped(v, _money_decimals(v) if decimals is None else decimals)
    if signed and v > 0 and text.strip("0.,"):
        text = "+" + text
    return f"{text} {quote}".rstrip()


def format_signed(x: object, decimals: int = 2) -> str:
    """``1.5 -> "+1.50"``, ``-1.5 -> "−1.50"``, and "0.00" for what rounds to zero."""
    v = _finite(x)
    if v is None:
        return DASH
    text = _grouped(v, decimals)
    return "+" + text if v > 0 and text.strip("0.,") else text


def format_pct(x: object, decimals: int = 1, *, signed: bool = True) -> str:
    """A percentage already in percent: ``12.34 -> "+12.3 %"``, ``-4 -> "−4.0 %"``."""
    if _finite(x) is None:
        return DASH
    text = format_signed(x, decimals) if signed else format_number(x, decimals)
    return f"{text} %"


def format_pts(x: object, decimals: int = 1) -> str:
    """A difference of two percentages, in percentage points: ``"+11.9 pts"``."""
    if _finite(x) is None:
        return DASH
    return f"{format_signed(x, decimals)} pts"


def _format_count(x: object) -> str:
    v = _finite(x)
    return DASH if v is None else _grouped(round(v), 0)


# --------------------------------------------------------------------------- #
# The run report
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class RunReport:
    """Everything one backtest run's report shows."""

    title: str  # e.g. "BTC 40 % · ETH 30 % · SOL 30 % — threshold 5 points"
    quote: str  # "USDT"
    times_ms: IntArray  # int64[T] UTC epoch ms
    equity: FloatArray  # float64[T] portfolio value (rebalanced)
    hold: FloatArray  # float64[T] the hold benchmark (same buys, never rebalanced)
    weights: FloatArray  # float64[T, A] weight of each asset (fractions), cash excluded
    assets: list[str]
    targets: list[float]  # target weights (fractions), one per asset
    rebalance_ms: IntArray  # int64[R] times of rebalances (markers)
    metrics: dict[str, float]  # METRIC_KEYS
    hold_metrics: dict[str, float]  # the same keys for the hold benchmark
    settings: dict[str, str]  # what was run: data source, period, trigger, fee, ...


# Colours: rebalanced is a deep blue drawn solid, hold a light amber drawn
# dashed, so the two stay apart in grayscale and for colour-blind readers.
REBALANCED = "#1f5fa8"
HOLD = "#e0940f"
INK = "#111827"
MUTED = "#6b7280"
GRID = "#e6e8ec"
GOOD = "#15803d"
BAD = "#b91c1c"
# Asset bands: varied hue and lightness, white edges between them.
# Lightness runs dark, light, middle, so neighbouring bands differ in grayscale too.
ASSET_COLOURS = (
    "#1d5c63",  # dark teal
    "#e9c46a",  # sand
    "#9a78c9",  # lavender
    "#3d3563",  # indigo
    "#a8dadc",  # pale aqua
    "#e76f51",  # coral
    "#264653",  # slate
    "#cde5a3",  # pale green
    "#bc4b51",  # brick
    "#577590",  # steel
    "#f4d6a0",  # wheat
    "#6d597a",  # plum
)
CASH_COLOUR = "#d1d5db"

DPI = 160
FIG_WIDTH = 10.0  # inches; shown at 96 CSS px per inch -> 960 px wide
MARGIN_LEFT, MARGIN_RIGHT = 0.9, 0.3  # inches, equal on every chart so x axes line up
MARGIN_TOP, MARGIN_BOTTOM = 0.95, 0.45
MAX_POINTS = 4000  # points drawn per series; longer series are thinned

STYLE: dict[Any, Any] = {  # rcParams for every chart, applied with rc_context
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.edgecolor": "#9ca3af",
    "axes.linewidth": 0.8,
    "axes.labelcolor": "#374151",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": "#4b5563",
    "ytick.color": "#4b5563",
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "xtick.major.size": 3.5,
    "ytick.major.size": 0,
    "legend.frameon": False,
    "legend.fontsize": 9.5,
    "timezone": "UTC",
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
}


def _check_run(run: RunReport) -> None:
    def bad(field: str, value: object, why: str) -> InvalidInput:
        return InvalidInput(f"report: {field} {why} (got {value!r})", field=field, value=value)

    times = np.asarray(run.times_ms)
    if times.ndim != 1 or times.size == 0:
        raise bad("times_ms", times.shape, "must be a non-empty 1-d array")
    t = times.size
    for name in ("equity", "hold"):
        arr = np.asarray(getattr(run, name))
        if arr.shape != (t,):
            raise bad(name, arr.shape, f"must have shape ({t},) like times_ms")
    w = np.asarray(run.weights)
    a = len(run.assets)
    if w.shape != (t, a):
        raise bad("weights", w.shape, f"must have shape ({t}, {a}): one row per time, one column per asset")
    if len(run.targets) != a:
        raise bad("targets", list(run.targets), f"must have one weight per asset ({a})")
    if np.any(np.diff(times) < 0):
        raise bad("times_ms", "unsorted", "must be in ascending order")


def _dates(ms: npt.ArrayLike) -> npt.NDArray[np.datetime64]:
    return np.asarray(ms, dtype=np.int64).astype("datetime64[ms]")


def _thin(n: int, max_points: int = MAX_POINTS) -> npt.NDArray[np.intp]:
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.intp))


def _drawdown_pct(values: FloatArray) -> FloatArray:
    """Drawdown from the running peak, in percent (0 or negative)."""
    v = np.asarray(values, dtype=np.float64)
    peak = np.fmax.accumulate(np.where(np.isfinite(v), v, -np.inf))
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, (v / peak - 1.0) * 100.0, 0.0)
    return np.where(np.isfinite(dd), np.minimum(dd, 0.0), 0.0)


def _bucket_min(x: FloatArray, max_points: int = MAX_POINTS) -> tuple[npt.NDArray[np.intp], FloatArray]:
    """Thin a series to at most `max_points` buckets keeping each bucket's
    minimum, so the deepest drawdown survives thinning."""
    n = x.size
    if n <= max_points:
        return np.arange(n), x
    starts = np.unique(np.linspace(0, n, max_points, endpoint=False).astype(np.intp))
    return starts, np.minimum.reduceat(x, starts)


LEGEND_ROW = 0.26  # inches per row of legend entries


def _legend_columns(labels: Sequence[str]) -> int:
    """How many legend entries fit side by side above the plot (an estimate
    from the longest label: 9.5 pt DejaVu Sans is about 0.075 in a character)."""
    if not labels:
        return 1
    entry = 0.75 + 0.075 * max(len(label) for label in labels)
    available = FIG_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    return max(1, min(len(labels), int(available // entry)))


def _new_chart(height: float, title: str, labels: Sequence[str]) -> tuple[Figure, Axes]:
    """A chart of the page's width with its axes at the same place on every
    chart (so dates line up down the page), room above for the title and for
    as many rows of legend as `labels` need."""
    rows = math.ceil(len(labels) / _legend_columns(labels)) if labels else 1
    height += LEGEND_ROW * (rows - 1)
    top = MARGIN_TOP + LEGEND_ROW * (rows - 1)
    fig = Figure(figsize=(FIG_WIDTH, height), dpi=DPI)
    FigureCanvasAgg(fig)
    left = MARGIN_LEFT / FIG_WIDTH
    width = 1 - (MARGIN_LEFT + MARGIN_RIGHT) / FIG_WIDTH
    bottom = MARGIN_BOTTOM / height
    ax = fig.add_axes((left, bottom, width, 1 - (top + MARGIN_BOTTOM) / height))
    fig.text(0.12 / FIG_WIDTH, 1 - 0.14 / height, title, ha="left", va="top", fontsize=13, fontweight="bold", color=INK)
    return fig, ax


def _top_legend(ax: Axes, handles: Sequence[Any], labels: Sequence[str]) -> None:
    ax.legend(
        handles,
        labels,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.03),
        ncol=_legend_columns(labels),
        borderaxespad=0.0,
        handlelength=2.4,
        columnspacing=1.8,
        fontsize=9.5,
    )


def _date_axis(ax: Axes, times: npt.NDArray[np.datetime64]) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator, show_offset=False)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)
    if times.size == 1 or times[0] == times[-1]:
        day = np.timedelta64(1, "D")
        ax.set_xlim(times[0] - day, times[0] + day)
    else:
        ax.set_xlim(times[0], times[-1])
    ax.grid(axis="x", visible=False)


def _money_axis_formatter(lo: float, hi: float) -> FuncFormatter:
    span = abs(hi - lo) if math.isfinite(hi - lo) else 0.0
    decimals = 0 if span >= 20 else 1 if span >= 2 else 2 if span >= 0.02 else 4
    return FuncFormatter(lambda v, _pos: _grouped(v, decimals))


def _pct_axis_formatter(decimals: int = 0) -> FuncFormatter:
    return FuncFormatter(lambda v, _pos: f"{_grouped(v, decimals)} %")


def _png(fig: Figure) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": "rebal"})
    return buf.getvalue()


def _equity_chart(run: RunReport, times: npt.NDArray[np.datetime64]) -> Figure:
    equity = np.asarray(run.equity, dtype=np.float64)
    hold = np.asarray(run.hold, dtype=np.float64)
    reb = np.asarray(run.rebalance_ms, dtype=np.int64)
    n = int(reb.size)
    labels = [
        f"Rebalanced · {format_money(equity[-1], run.quote)}",
        f"Hold · {format_money(hold[-1], run.quote)}",
    ]
    if n:
        labels.append(f"{_grouped(n, 0)} rebalance{'s' if n != 1 else ''}")
    fig, ax = _new_chart(4.3, f"Portfolio value, rebalanced vs hold ({run.quote})", labels)
    idx = _thin(equity.size)
    (l_hold,) = ax.plot(times[idx], hold[idx], color=HOLD, lw=1.7, ls=(0, (5, 2.2)), zorder=2)
    (l_eq,) = ax.plot(times[idx], equity[idx], color=REBALANCED, lw=1.9, zorder=3)
    handles: list[Any] = [l_eq, l_hold]
    if n:
        t_ms = np.asarray(run.times_ms, dtype=np.int64).astype(np.float64)
        on_line = np.interp(reb.astype(np.float64), t_ms, equity)
        (marks,) = ax.plot(
            _dates(reb),
            on_line,
            ls="none",
            marker="|",
            ms=11,
            mew=1.4,
            color=INK,
            zorder=4,
            path_effects=[patheffects.withStroke(linewidth=3.2, foreground="white")],
        )
        handles.append(marks)
    finite = np.concatenate([equity[np.isfinite(equity)], hold[np.isfinite(hold)]])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = (hi - lo) * 0.06 or max(abs(hi) * 0.05, 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    ax.yaxis.set_major_formatter(_money_axis_formatter(lo, hi))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.set_ylabel(run.quote)
    _date_axis(ax, times)
    _top_legend(ax, handles, labels)
    return fig


def _drawdown_chart(run: RunReport, times: npt.NDArray[np.datetime64]) -> Figure:
    dd_eq = _drawdown_pct(run.equity)
    dd_hold = _drawdown_pct(run.hold)
    labels = [
        f"Rebalanced · worst {format_pct(dd_eq.min(), signed=False)}",
        f"Hold · worst {format_pct(dd_hold.min(), signed=False)}",
    ]
    fig, ax = _new_chart(3.4, "Drawdown from the previous peak", labels)
    i_eq, y_eq = _bucket_min(dd_eq)
    i_hold, y_hold = _bucket_min(dd_hold)
    ax.fill_between(times[i_eq], y_eq, 0, color=REBALANCED, alpha=0.18, lw=0, zorder=1)
    (l_eq,) = ax.plot(times[i_eq], y_eq, color=REBALANCED, lw=1.4, zorder=3)
    (l_hold,) = ax.plot(times[i_hold], y_hold, color=HOLD, lw=1.5, ls=(0, (5, 2.2)), zorder=2)
    low = float(min(dd_eq.min(), dd_hold.min()))
    ax.set_ylim(min(low * 1.08, -1.0), 0.0 + max(-low * 0.03, 0.3))
    ax.yaxis.set_major_formatter(_pct_axis_formatter(0 if low < -5 else 1))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.axhline(0, color="#9ca3af", lw=0.8, zorder=1)
    _date_axis(ax, times)
    _top_legend(ax, [l_eq, l_hold], labels)
    return fig


def _weights_chart(run: RunReport, times: npt.NDArray[np.datetime64]) -> Figure:
    w = np.clip(np.nan_to_num(np.asarray(run.weights, dtype=np.float64)), 0.0, None) * 100.0
    targets = [float(x) * 100.0 for x in run.targets]
    colours = [ASSET_COLOURS[i % len(ASSET_COLOURS)] for i in range(len(run.assets))]
    cash = np.clip(100.0 - w.sum(axis=1), 0.0, None)
    show_cash = bool(cash.max(initial=0.0) > 0.5)
    labels = [f"{a} · target {_tick_label(round(t, 2))} %" for a, t in zip(run.assets, targets, strict=True)]
    handles: list[Any] = [Patch(facecolor=c, edgecolor="white") for c in colours]
    if show_cash:
        handles.append(Patch(facecolor=CASH_COLOUR, edgecolor="white", hatch="////"))
        labels.append("Cash")
    if targets:
        handles.append(Line2D([], [], color=INK, lw=1.1, ls=(0, (4, 3)), alpha=0.75))
        labels.append("Target")
    fig, ax = _new_chart(4.0, "Weights over time (dashed: target mix)", labels)
    idx = _thin(w.shape[0])
    bands = [w[idx, j] for j in range(w.shape[1])]
    band_colours = list(colours)
    if show_cash:
        bands.append(cash[idx])
        band_colours.append(CASH_COLOUR)
    if bands:
        polys = ax.stackplot(times[idx], *bands, colors=band_colours, edgecolor="white", linewidth=0.25, alpha=0.95)
        if show_cash:
            polys[-1].set_hatch("////")  # cash stays apart from a light asset band in grayscale
    # Dashed lines where the target bands meet (cumulative targets).
    edge = 0.0
    for t in targets[:-1] if abs(sum(targets) - 100.0) < 1e-6 else targets:
        edge += t
        ax.axhline(edge, color=INK, lw=1.1, ls=(0, (4, 3)), alpha=0.75, zorder=5)
    top = max(100.0, float((w.sum(axis=1) + (cash if show_cash else 0)).max(initial=0.0)))
    ax.set_ylim(0, top)
    ax.yaxis.set_major_formatter(_pct_axis_formatter(0))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    ax.grid(axis="y", visible=False)
    _date_axis(ax, times)
    _top_legend(ax, handles, labels)
    return fig


# --------------------------------------------------------------------------- #
# HTML
# --------------------------------------------------------------------------- #

CSS = """
:root { --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#f4f5f7; --card:#ffffff;
        --good:#15803d; --bad:#b91c1c; --rebal:#1f5fa8; --hold:#e0940f; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
             "Liberation Sans", "DejaVu Sans", sans-serif;
       -webkit-font-smoothing: antialiased; }
main { max-width: 1060px; margin: 0 auto; padding: 40px 28px 48px; }
header { margin-bottom: 26px; }
.eyebrow { font-size: 12px; font-weight: 700; letter-spacing: .08em; text-transform: uppercase;
           color: var(--rebal); margin: 0 0 6px; }
h1 { font-size: 30px; line-height: 1.2; margin: 0 0 8px; font-weight: 750; letter-spacing: -.015em; }
h2 { font-size: 17px; margin: 0 0 12px; font-weight: 700; }
.sub { color: var(--muted); margin: 0; }
.kpis { display: grid; grid-template-columns: repeat(5, minmax(0, 1fr)); gap: 12px; margin: 0 0 22px; }
.kpi { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 15px 16px 14px; }
.kpi.lead { border-top: 4px solid var(--rebal); padding-top: 12px; }
.kpi .label { font-size: 11.5px; font-weight: 700; letter-spacing: .06em; text-transform: uppercase;
              color: var(--muted); }
.kpi .value { font-size: 25px; font-weight: 750; line-height: 1.25; margin-top: 6px;
              font-variant-numeric: tabular-nums; letter-spacing: -.01em; overflow-wrap: anywhere; }
.kpi .value.long { font-size: 20px; }
.kpi .unit { font-size: 14px; font-weight: 600; color: var(--muted); margin-left: 3px; white-space: nowrap; }
.kpi .note { font-size: 13px; color: var(--muted); margin-top: 4px; font-variant-numeric: tabular-nums; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 12px;
        padding: 18px 20px; margin: 0 0 16px; }
.card.chart { padding: 14px 14px 8px; }
.chart img { display: block; width: 100%; height: auto; margin: 0 auto; }
.caption { font-size: 13px; color: var(--muted); margin: 6px 8px 4px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 8px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; padding-left: 0; }
th:last-child, td:last-child { padding-right: 0; }
thead th { font-size: 11.5px; font-weight: 700; letter-spacing: .06em; text-transform: uppercase;
           color: var(--muted); border-bottom: 1px solid #d1d5db; }
tbody tr:last-child td { border-bottom: 0; }
td.name { color: #374151; }
.swatch { display: inline-block; width: 18px; height: 0; vertical-align: middle; margin-right: 7px;
          border-top: 3px solid var(--rebal); }
.swatch.hold { border-top: 3px dashed var(--hold); }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: 7px 18px; margin: 0; font-size: 14px; }
dl.settings dt { color: var(--muted); }
dl.settings dd { margin: 0; overflow-wrap: break-word; min-width: 0; }
.good { color: var(--good); } .bad { color: var(--bad); }
.scroll { overflow-x: auto; }
td.key { font-weight: 700; }
a { color: var(--rebal); }
footer { color: var(--muted); font-size: 12.5px; margin-top: 22px; }
@media (max-width: 900px) {
  .kpis { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  main { padding: 24px 14px; }
  h1 { font-size: 24px; }
}
@media print { body { background: #fff; } .card, .kpi { break-inside: avoid; } }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str, width_in: float, file: str) -> str:
    # Shown at 96 CSS px per figure inch at most, so text keeps its size.
    return (
        f'<img src="{_data_uri(png)}" alt="{_e(alt)}" data-file="{_e(file)}" '
        f'style="max-width:{round(width_in * 96)}px">'
    )


def _version() -> str:
    try:
        return importlib.metadata.version("rebal")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source tree without metadata
        return ""


def _page(title: str, body: str) -> str:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    version = _version()
    made_by = f"rebal {version}" if version else "rebal"
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="{_e(made_by)}">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"{body}\n"
        f"<footer>Made with {_e(made_by)} on {generated}. Past prices do not promise future returns; "
        "a backtest fills at historical prices and cannot show slippage or outages.</footer>\n"
        "</main>\n</body>\n</html>\n"
    )


def _kpi(label: str, value: str, note: str = "", *, unit: str = "", cls: str = "", lead: bool = False) -> str:
    unit_html = f'<span class="unit">{_e(unit)}</span>' if unit else ""
    classes = " ".join(c for c in ("value", cls, "long" if len(value) + len(unit) > 10 else "") if c)
    value_cls = f' class="{classes}"'
    note_html = f'<div class="note">{note}</div>' if note else ""
    return (
        f'<div class="kpi{" lead" if lead else ""}"><div class="label">{_e(label)}</div>'
        f"<div{value_cls}>{_e(value)}{unit_html}</div>{note_html}</div>"
    )


def _tone(diff: float | None, higher_is_better: bool | None) -> str:
    if diff is None or higher_is_better is None or abs(diff) < 1e-12:
        return ""
    return "good" if (diff > 0) == higher_is_better else "bad"


def _date(ms: int) -> str:
    d = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return f"{d.day} {d:%b %Y}"


def _describe_step(times_ms: IntArray) -> str:
    if times_ms.size < 2:
        return "price"
    step = float(np.median(np.diff(times_ms)))
    names = {60_000: "minute", 3_600_000: "hourly", 86_400_000: "daily", 604_800_000: "weekly"}
    for ms, name in names.items():
        if abs(step - ms) < 1:
            return name
    if step % 86_400_000 == 0:
        return f"{int(step // 86_400_000)}-day"
    if step % 3_600_000 == 0:
        return f"{int(step // 3_600_000)}-hour"
    if step % 60_000 == 0:
        return f"{int(step // 60_000)}-minute"
    return "irregular"


def _metric_rows(run: RunReport) -> list[tuple[str, str, str, str, str]]:
    """(label, rebalanced, hold, difference, tone) for the metrics table."""
    q = run.quote

    def money(x: float | None, signed: bool = False) -> str:
        return format_money(x, q, signed=signed)

    def pct(signed: bool) -> Callable[[float | None, bool], str]:
        return lambda x, is_diff: format_pts(x) if is_diff else format_pct(x, signed=signed)

    def count(x: float | None, is_diff: bool) -> str:
        return (DASH if x is None else format_signed(round(x), 0)) if is_diff else _format_count(x)

    # (label, key, format(value, is_difference), higher is better (None: no tone), shown as a loss)
    specs: list[tuple[str, str, Callable[[float | None, bool], str], bool | None, bool]] = [
        ("Final value", "final_value", lambda x, d: money(x, signed=d), True, False),
        ("Total return", "total_return_pct", pct(True), True, False),
        ("Annualised return", "annualised_return_pct", pct(True), True, False),
        ("Volatility (annualised)", "volatility_pct", pct(False), False, False),
        # Drawdowns are shown as losses (negative), so a positive difference is a shallower one.
        ("Max drawdown", "max_drawdown_pct", pct(False), True, True),
        ("Sharpe ratio", "sharpe", lambda x, d: format_signed(x, 2) if d else format_number(x, 2), True, False),
        ("Fees paid", "fees_paid", lambda x, d: money(x, signed=d), False, False),
        ("Turnover (traded by rebalancing)", "turnover", lambda x, d: money(x, signed=d), None, False),
        ("Rebalances", "rebalances", count, None, False),
    ]
    rows: list[tuple[str, str, str, str, str]] = []
    for label, key, show, better, loss in specs:
        a, b = _finite(run.metrics.get(key)), _finite(run.hold_metrics.get(key))
        if loss:
            a, b = (None if x is None else -abs(x) for x in (a, b))
        d = None if a is None or b is None else a - b
        rows.append((label, show(a, False), show(b, False), show(d, True), "" if better is None else _tone(d, better)))
    return rows


def _run_body(run: RunReport, charts: Mapping[str, bytes]) -> str:
    q = run.quote
    m, h = run.metrics, run.hold_metrics
    times = np.asarray(run.times_ms, dtype=np.int64)
    first, last = int(times[0]), int(times[-1])
    days = (last - first) / 86_400_000
    period = f"{_date(first)} – {_date(last)}"
    span = f"{_grouped(days, 0)} days" if days >= 2 else f"{_grouped(days * 24, 0)} hours"
    sub = f"{period} · {span} · {_grouped(times.size, 0)} {_describe_step(times)} prices · values in {q}"

    ret, hret = _finite(m.get("total_return_pct")), _finite(h.get("total_return_pct"))
    excess = None if ret is None or hret is None else ret - hret
    verdict = (
        ""
        if excess is None
        else ("beat holding" if excess > 0 else "trailed holding" if excess < 0 else "matched holding")
    )
    fv, hv = _finite(m.get("final_value")), _finite(h.get("final_value"))
    dd, hdd = _finite(m.get("max_drawdown_pct")), _finite(h.get("max_drawdown_pct"))
    fees = _finite(m.get("fees_paid"))
    n_reb = _finite(m.get("rebalances"))

    def kpi_money(v: float | None) -> str:
        # Headline amounts of 10,000 and more drop the cents; the table keeps them.
        return format_money(v, "", decimals=0 if v is not None and abs(v) >= 10_000 else None)

    def money_parts(v: float | None) -> tuple[str, str]:
        return kpi_money(v), ("" if v is None else q)

    fv_text, fv_unit = money_parts(fv)
    fee_text, fee_unit = money_parts(fees)
    fee_note = ""
    if fees is not None and fv:
        fee_note = f"{format_pct(100 * fees / fv, 2, signed=False)} of final value"
    turnover = _finite(m.get("turnover"))
    reb_note = []
    if n_reb and days > 0:
        gap = days / n_reb
        if gap >= 1:
            reb_note.append(f"about every {_grouped(gap, 0 if gap >= 10 else 1)} days")
        else:
            hours = gap * 24
            reb_note.append(f"about every {_grouped(hours, 0 if hours >= 10 else 1)} hours")
    if turnover is not None:
        reb_note.append(f"{format_money(turnover, q, decimals=0 if abs(turnover) >= 1000 else None)} traded")

    kpis = "".join(
        [
            _kpi(
                "Return vs hold",
                format_signed(excess, 1),
                f"Total return {_e(format_pct(ret))} vs {_e(format_pct(hret))} holding",
                unit="" if excess is None else "pts",
                cls=_tone(excess, True),
                lead=True,
            ),
            _kpi("Final value", fv_text, f"Hold {_e(kpi_money(hv))} {_e(q)}", unit=fv_unit),
            _kpi(
                "Max drawdown",
                format_pct(None if dd is None else -abs(dd), signed=False),
                f"Hold {_e(format_pct(None if hdd is None else -abs(hdd), signed=False))}",
            ),
            _kpi("Fees paid", fee_text, _e(fee_note), unit=fee_unit),
            _kpi("Rebalances", _format_count(n_reb), _e(" · ".join(reb_note))),
        ]
    )

    rows = "".join(
        f'<tr><td class="name">{_e(label)}</td><td>{_e(a)}</td><td>{_e(b)}</td><td class="{tone}">{_e(d)}</td></tr>'
        for label, a, b, d, tone in _metric_rows(run)
    )
    metrics_table = (
        '<table class="metrics"><thead><tr><th>Metric</th>'
        '<th><span class="swatch"></span>Rebalanced</th><th><span class="swatch hold"></span>Hold</th>'
        f"<th>Difference</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    settings = run.settings or {}
    settings_html = "".join(f"<dt>{_e(k[:1].upper() + k[1:])}</dt><dd>{_e(v)}</dd>" for k, v in settings.items())
    target_mix = " · ".join(
        f"{a} {format_number(100 * t, 0 if float(100 * t).is_integer() else 1)} %"
        for a, t in zip(run.assets, run.targets, strict=True)
    )
    if not settings_html:
        settings_html = f"<dt>Target mix</dt><dd>{_e(target_mix)}</dd>"

    headline = ""
    if verdict:
        headline = (
            f"Rebalancing {verdict} by {_e(format_pts(excess).replace('+', '').replace(MINUS, ''))} over this period. "
        )

    return f"""
<header>
  <p class="eyebrow">Backtest · rebalancing vs holding</p>
  <h1>{_e(run.title)}</h1>
  <p class="sub">{_e(sub)}</p>
</header>
<div class="kpis">{kpis}</div>
<section class="card chart">
  {_img(charts["equity"], "Portfolio value, rebalanced vs hold", FIG_WIDTH, "equity.png")}
  <p class="caption">{headline}Hold buys the same assets at the start and never trades again. Ticks on the blue line mark rebalances.</p>
</section>
<section class="card chart">
  {_img(charts["drawdown"], "Drawdown from the previous peak", FIG_WIDTH, "drawdown.png")}
  <p class="caption">How far the portfolio stood below its highest value so far.</p>
</section>
<section class="card chart">
  {_img(charts["weights"], "Weights over time", FIG_WIDTH, "weights.png")}
  <p class="caption">Share of each asset in the portfolio's value; rebalancing pulls the bands back to the dashed target lines. Target mix: {_e(target_mix)}.</p>
</section>
<section class="card"><h2>Metrics</h2><div class="scroll">{metrics_table}</div></section>
<section class="card"><h2>What was run</h2><dl class="settings">{settings_html}</dl></section>
"""


def write_report(run: RunReport, directory: str | Path) -> Path:
    """Write ``index.html``, ``equity.png``, ``weights.png`` and ``drawdown.png``
    into `directory` (created if missing) and return the HTML page's path."""
    _check_run(run)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    times = _dates(run.times_ms)
    charts: dict[str, bytes] = {}
    builders: dict[str, Callable[[RunReport, npt.NDArray[np.datetime64]], Figure]] = {
        "equity": _equity_chart,
        "drawdown": _drawdown_chart,
        "weights": _weights_chart,
    }
    with mpl.rc_context(STYLE):
        for name, build in builders.items():
            charts[name] = _png(build(run, times))
    for name, png in charts.items():
        (out / f"{name}.png").write_bytes(png)
    page = out / "index.html"
    page.write_text(_page(run.title, _run_body(run, charts)), encoding="utf-8")
    return page


# --------------------------------------------------------------------------- #
# The sweep report
# --------------------------------------------------------------------------- #

LABELS: dict[str, tuple[str, str]] = {
    # column -> (label, unit)
    "excess_return_pct": ("Excess return over hold", "pts"),
    "total_return_pct": ("Total return", "%"),
    "hold_return_pct": ("Hold return", "%"),
    "annualised_return_pct": ("Annualised return", "%"),
    "volatility_pct": ("Volatility", "%"),
    "max_drawdown_pct": ("Max drawdown", "%"),
    "sharpe": ("Sharpe ratio", ""),
    "final_value": ("Final value", ""),
    "fees_paid": ("Fees paid", ""),
    "turnover": ("Turnover", ""),
    "rebalances": ("Rebalances", ""),
    "threshold": ("Threshold", ""),
    "interval": ("Interval", ""),
}


def _label(column: str) -> str:
    if column in LABELS:
        return LABELS[column][0]
    name = column.removesuffix("_pct").replace("_", " ").strip()
    return name[:1].upper() + name[1:]


def _unit(column: str) -> str:
    if column in LABELS:
        return LABELS[column][1]
    return "%" if column.endswith("_pct") else ""


def _is_missing(v: object) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(cast(Any, v)))
    except (TypeError, ValueError):
        return False


def _tick_label(v: object) -> str:
    if _is_missing(v):
        return DASH
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return _grouped(int(v), 0)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return _grouped(f, 0) if f.is_integer() else f"{f:g}".replace("-", MINUS)
    return str(v)


def _axis_values(series: pd.Series[Any]) -> list[Any]:
    """The distinct values of a sweep axis, in reading order: sorted when
    numeric, in order of first appearance otherwise; a missing value last."""
    present = [v for v in pd.unique(series) if not _is_missing(v)]
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        present = sorted(present)
    if series.isna().any():
        present.append(None)
    return present


def _key(v: object) -> object:
    if _is_missing(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def _grid(table: pd.DataFrame, value: str, x: str, y: str) -> tuple[list[Any], list[Any], FloatArray, IntArray]:
    xs, ys = _axis_values(table[x]), _axis_values(table[y])
    xi = {_key(v): i for i, v in enumerate(xs)}
    yi = {_key(v): i for i, v in enumerate(ys)}
    total = np.zeros((len(ys), len(xs)))
    count = np.zeros((len(ys), len(xs)), dtype=np.int64)
    vals = pd.to_numeric(table[value], errors="coerce").to_numpy(dtype=np.float64)
    for xv, yv, v in zip(table[x].tolist(), table[y].tolist(), vals, strict=True):
        if not math.isfinite(v):
            continue
        r, c = yi[_key(yv)], xi[_key(xv)]
        total[r, c] += v
        count[r, c] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return xs, ys, mean, count


def _cell_note(count: IntArray) -> str:
    filled = count[count > 0]
    if filled.size == 0 or filled.max() <= 1:
        return ""
    lo, hi = int(filled.min()), int(filled.max())
    runs = f"{lo}" if lo == hi else f"{lo}–{hi}"
    return f"each cell is the mean of {runs} runs"


def _heatmap(
    xs: list[Any], ys: list[Any], mean: FloatArray, *, value: str, x: str, y: str, title: str, subtitle: str
) -> tuple[Figure, float]:
    ny, nx = mean.shape
    cell_w, cell_h = (0.95 if nx <= 8 else 0.7), (0.5 if ny <= 12 else 0.36)
    width = min(max(MARGIN_LEFT + 0.4 + nx * cell_w + 1.6, 7.0), 14.0)
    height = min(max(1.3 + ny * cell_h + 0.75, 3.4), 12.0)
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    left, right = (MARGIN_LEFT + 0.4) / width, 1.45 / width
    top, bottom = 1.05 / height, 0.75 / height
    ax = fig.add_axes((left, bottom, 1 - left - right, 1 - top - bottom))
    cax = fig.add_axes((1 - right + 0.2 / width, bottom, 0.16 / width, 1 - top - bottom))
    fig.text(0.12 / width, 1 - 0.14 / height, title, ha="left", va="top", fontsize=13, fontweight="bold", color=INK)
    unit = _unit(value)
    fig.text(0.12 / width, 1 - 0.47 / height, subtitle, ha="left", va="top", fontsize=9.5, color=MUTED)

    finite = mean[np.isfinite(mean)]
    lim = float(np.abs(finite).max()) if finite.size else 1.0
    lim = lim or 1.0
    cmap = mpl.colormaps["RdBu"].with_extremes(bad="#eef0f3")
    norm = Normalize(vmin=-lim, vmax=lim)
    image = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    ax.grid(False)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_xticks(range(nx), [_tick_label(v) for v in xs])
    ax.set_yticks(range(ny), [_tick_label(v) for v in ys])
    ax.tick_params(length=0, pad=6)
    ax.set_xlabel(_label(x), labelpad=8)
    ax.set_ylabel(_label(y), labelpad=8)
    # Thin white lines between the cells.
    ax.set_xticks(np.arange(-0.5, nx, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, ny, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    fontsize = 9.5 if nx <= 10 else 8
    decimals = 1 if lim >= 1 else 2
    for r in range(ny):
        for c in range(nx):
            v = mean[r, c]
            if not math.isfinite(v):
                ax.text(c, r, DASH, ha="center", va="center", color=MUTED, fontsize=fontsize)
                continue
            light = abs(v) / lim > 0.55
            ax.text(
                c,
                r,
                format_signed(v, decimals),
                ha="center",
                va="center",
                color="white" if light else INK,
                fontsize=fontsize,
            )
    if finite.size:
        br, bc = (int(i) for i in np.unravel_index(int(np.nanargmax(mean)), mean.shape))
        # Black outside, white inside: visible on the darkest and the lightest cell.
        ax.add_patch(Rectangle((bc - 0.5, br - 0.5), 1, 1, fill=False, edgecolor=INK, linewidth=4.0, zorder=5))
        ax.add_patch(Rectangle((bc - 0.5, br - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=1.4, zorder=6))
    bar = fig.colorbar(image, cax=cax)
    bar.outline.set_visible(False)
    bar.ax.tick_params(labelsize=8.5, length=0)
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_signed(v, 0 if lim >= 5 else 1)))
    bar.set_label(f"{_label(value)}{f' ({unit})' if unit else ''}", fontsize=9)
    return fig, width


def _cell_text(column: str, v: object) -> str:
    if _is_missing(v):
        return DASH
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return _grouped(int(v), 0)
    if isinstance(v, (float, np.floating)):
        unit = _unit(column)
        if unit == "pts":
            return format_pts(v)
        if column == "max_drawdown_pct":  # a loss, shown negative as on the run page
            return format_pct(-abs(float(v)), signed=False)
        if unit == "%":
            return format_pct(v, signed=column != "volatility_pct")
        if column == "sharpe":
            return format_number(v, 2)
        if column in ("threshold", "interval") or float(v).is_integer():
            return _tick_label(v)
        return format_number(v, 2)
    return str(v)


def _sweep_table_html(table: pd.DataFrame, value: str, limit: int = 20) -> str:
    values = pd.to_numeric(table[value], errors="coerce")
    top = table.assign(_v=values).sort_values("_v", ascending=False, na_position="last", kind="stable").head(limit)
    top = top.drop(columns="_v")
    cols = [str(c) for c in top.columns]
    head = "<th>#</th>" + "".join(f"<th>{_e(_label(c))}</th>" for c in cols)
    body = []
    for rank, row in enumerate(top.itertuples(index=False), start=1):
        cells = "".join(
            f"<td{' class=key' if c == value else ''}>{_e(_cell_text(c, v))}</td>"
            for c, v in zip(cols, row, strict=True)
        )
        body.append(f"<tr><td>{rank}</td>{cells}</tr>")
    return f'<table class="sweep"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def write_sweep_report(
    table: pd.DataFrame,
    directory: str | Path,
    *,
    value: str = "excess_return_pct",
    x: str = "interval",
    y: str = "threshold",
    title: str = "",
) -> Path:
    """Write ``index.html``, ``heatmap.png`` and ``sweep.csv`` into `directory`.

    The heatmap shows `value` by `y` (rows) × `x` (columns), averaged over the
    other columns where several rows share a cell (the chart says so), on a
    diverging colour scale centred on 0; below it the 20 best rows by `value`.
    """
    for field, column in (("value", value), ("x", x), ("y", y)):
        if column not in table.columns:
            raise InvalidInput(
                f"sweep report: {field} column {column!r} is not in the table (columns: {list(table.columns)})",
                field=field,
                value=column,
            )
    if len(table) == 0:
        raise InvalidInput("sweep report: the table has no rows", field="table", value=0)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    xs, ys, mean, count = _grid(table, value, x, y)
    note = _cell_note(count)
    unit = _unit(value)
    what = f"{_label(value)} by {_label(y).lower()} and {_label(x).lower()}"
    # Under a title of the caller's, the chart says what it shows; under the default one, that is the title.
    subtitle = "; ".join(p for p in ((f"{what}{f' ({unit})' if unit else ''}" if title else ""), note) if p)
    title = title or what
    with mpl.rc_context(STYLE):
        fig, width = _heatmap(
            xs, ys, mean, value=value, x=x, y=y, title=title, subtitle=subtitle[:1].upper() + subtitle[1:]
        )
        png = _png(fig)
    (out / "heatmap.png").write_bytes(png)
    csv_path = out / "sweep.csv"
    table.to_csv(csv_path, index=False)

    def stat(label: str, v: float, note: str = "", *, lead: bool = False) -> str:
        text, shown_unit = (format_signed(v, 1), unit) if unit in ("pts", "%") else (format_signed(v, 2), "")
        return _kpi(label, text, _e(note), unit=shown_unit, cls=_tone(v, True), lead=lead)

    finite = mean[np.isfinite(mean)]
    kpis = []
    if finite.size:
        r, c = np.unravel_index(int(np.nanargmax(mean)), mean.shape)
        best_where = f"{_label(y).lower()} {_tick_label(ys[r])} · {_label(x).lower()} {_tick_label(xs[c])}"
        best = float(mean[r, c])
        kpis.append(stat("Best setting", best, best_where, lead=True))
        above = int((finite > 0).sum())
        beats = "Beat holding" if "excess" in value else "Above zero"
        kpis.append(_kpi(beats, f"{above} of {finite.size}", "settings"))
        med = float(np.median(finite))
        kpis.append(stat("Median setting", med))
        worst = float(finite.min())
        r, c = np.unravel_index(int(np.nanargmin(mean)), mean.shape)
        worst_where = f"{_label(y).lower()} {_tick_label(ys[r])} · {_label(x).lower()} {_tick_label(xs[c])}"
        kpis.append(stat("Worst setting", worst, worst_where))
    kpis.append(_kpi("Runs", _grouped(len(table), 0), _e(note or f"{len(ys)} × {len(xs)} settings")))

    csv_bytes = csv_path.read_bytes()
    if len(csv_bytes) <= 2_000_000:
        csv_href = "data:text/csv;base64," + base64.b64encode(csv_bytes).decode("ascii")
    else:
        csv_href = "sweep.csv"
    shown = min(20, len(table))
    caption = (
        "Blue cells beat holding, red cells trailed it; the outlined cell is the best. "
        if "excess" in value
        else "Blue cells are above zero, red below; the outlined cell is the best. "
    )
    body = f"""
<header>
  <p class="eyebrow">Backtest sweep</p>
  <h1>{_e(title)}</h1>
  <p class="sub">{_e(f"{_grouped(len(table), 0)} runs · {len(ys)} {_label(y).lower()} × {len(xs)} {_label(x).lower()} values")}</p>
</header>
<div class="kpis">{"".join(kpis)}</div>
<section class="card chart">
  {_img(png, f"{_label(value)} by {_label(y)} and {_label(x)}", width, "heatmap.png")}
  <p class="caption">{_e(caption)}{_e(note.capitalize() + "." if note else "")}</p>
</section>
<section class="card">
  <h2>Top {shown} of {_grouped(len(table), 0)} runs by {_e(_label(value).lower())}</h2>
  <div class="scroll">{_sweep_table_html(table, value)}</div>
  <p class="caption"><a href="{csv_href}" download="sweep.csv">Download all runs (sweep.csv)</a></p>
</section>
"""
    page = out / "index.html"
    page.write_text(_page(title, body), encoding="utf-8")
    return page
