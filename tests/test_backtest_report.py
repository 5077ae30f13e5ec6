"""Backtest reports: the HTML page, the PNG charts and the sweep heatmap.

Inputs are synthetic and built here, so these tests need nothing else from the
backtest. The pages were also checked by eye in headless Chromium.
"""

from __future__ import annotations

import base64
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rebal.backtest.report import (
    RunReport,
    format_money,
    format_number,
    format_pct,
    format_pts,
    format_signed,
    write_report,
    write_sweep_report,
)
from rebal.exceptions import InvalidInput

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DAY_MS = 86_400_000
START_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


class Page(HTMLParser):
    """Collects the text, the images, and every external reference of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.images: list[dict[str, str]] = []
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []
        self.rows_in: dict[str, int] = {}
        self._table_class: list[str] = []
        self._in_tbody = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "img":
            self.images.append(a)
        for key in ("src", "href"):
            if key in a:
                self.refs.append((tag, key, a[key]))
        if tag == "table":
            self._table_class.append(a.get("class", ""))
        if tag == "tbody":
            self._in_tbody = True
        if tag == "tr" and self._in_tbody and self._table_class:
            name = self._table_class[-1]
            self.rows_in[name] = self.rows_in.get(name, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_tbody = False
        if tag == "table" and self._table_class:
            self._table_class.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC, "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def decode_data_uri(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    return base64.b64decode(src[len(prefix) :], validate=True)


def synthetic_run(
    n: int = 400,
    *,
    assets: tuple[str, ...] = ("BTC", "ETH", "SOL"),
    targets: tuple[float, ...] = (0.4, 0.3, 0.3),
    step_ms: int = DAY_MS,
    seed: int = 1,
    cash: float = 0.0,
    rebalances: int | None = None,
    title: str = "BTC 40 % · ETH 30 % · SOL 30 % — threshold 5 points",
) -> RunReport:
    rng = np.random.default_rng(seed)
    times = START_MS + step_ms * np.arange(n, dtype=np.int64)
    equity = 10_000 * np.exp(np.cumsum(rng.normal(0.001, 0.03, n)))
    hold = 10_000 * np.exp(np.cumsum(rng.normal(0.0005, 0.035, n)))
    equity[0] = hold[0] = 10_000.0
    drift = rng.normal(0, 0.02, (n, len(assets)))
    w = np.clip(np.asarray(targets) + drift, 0.01, None)
    w = w / w.sum(axis=1, keepdims=True) * (1.0 - cash)
    k = max(1, n // 15) if rebalances is None else rebalances
    reb = np.sort(rng.choice(times, size=min(k, n), replace=False)) if k else np.array([], dtype=np.int64)
    metrics = {
        "final_value": 12_345.678,
        "total_return_pct": 23.456,
        "annualised_return_pct": 8.91,
        "volatility_pct": 55.5,
        "max_drawdown_pct": 12.3,
        "sharpe": 1.234,
        "fees_paid": 1_234.5,
        "turnover": 98_765.4321,
        "rebalances": float(reb.size),
    }
    hold_metrics = {
        "final_value": 11_000.0,
        "total_return_pct": 10.0,
        "annualised_return_pct": 3.5,
        "volatility_pct": 60.3,
        "max_drawdown_pct": 20.0,
        "sharpe": 0.8,
        "fees_paid": 0.0,
        "turnover": 0.0,
        "rebalances": 0.0,
    }
    return RunReport(
        title=title,
        quote="USDT",
        times_ms=times,
        equity=equity,
        hold=hold,
        weights=w,
        assets=list(assets),
        targets=list(targets),
        rebalance_ms=reb.astype(np.int64),
        metrics=metrics,
        hold_metrics=hold_metrics,
        settings={"Data": "synthetic random walk", "Trigger": "deviation ≥ 5 points", "Fee": "0.10 % & up"},
    )


def sweep_table(seed: int = 3, repeats: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for threshold in (1.0, 2.5, 5.0, 10.0):
        for interval in ("1h", "1d", "7d"):
            for rep in range(repeats):
                rows.append(
                    {
                        "threshold": threshold,
                        "interval": interval,
                        "assets": f"set{rep}",
                        "excess_return_pct": float(rng.normal(threshold - 4, 3)),
                        "total_return_pct": float(rng.normal(20, 5)),
                        "max_drawdown_pct": float(rng.uniform(10, 40)),
                        "fees_paid": float(rng.uniform(0, 2_000)),
                        "rebalances": int(rng.integers(0, 5_000)),
                    }
                )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- #
# Number formatting
# --------------------------------------------------------------------------- #


def test_numbers_have_thousands_separators_signs_and_units() -> None:
    assert format_number(1234.56) == "1,234.56"
    assert format_number(1_234_567.891, 0) == "1,234,568"
    assert format_money(1234.56, "USDT") == "1,234.56 USDT"
    assert format_money(-1234.5, "USDT") == "\u22121,234.50 USDT"
    assert format_money(1234.5, "USDT", signed=True) == "+1,234.50 USDT"
    assert format_money(0.0012346, "BTC") == "0.001235 BTC"  # small amounts keep 4 significant digits
    assert format_pct(12.34) == "+12.3 %"
    assert format_pct(-4) == "\u22124.0 %"
    assert format_pct(0.04) == "0.0 %"  # what rounds to zero carries no sign
    assert format_pct(-0.04) == "0.0 %"
    assert format_pct(72.94, signed=False) == "72.9 %"
    assert format_pts(11.94) == "+11.9 pts"
    assert format_signed(-0.456, 2) == "\u22120.46"
    for missing in (None, float("nan"), float("inf"), "x"):
        assert format_number(missing) == "—"
        assert format_pct(missing) == "—"
        assert format_money(missing, "USDT") == "—"


# --------------------------------------------------------------------------- #
# Run report
# --------------------------------------------------------------------------- #


def test_run_report_writes_a_self_contained_page_and_pngs(tmp_path: Path) -> None:
    run = synthetic_run()
    page_path = write_report(run, tmp_path / "report")
    assert page_path == tmp_path / "report" / "index.html"
    page = parse(page_path)
    text = page.all_text

    assert run.title in text
    assert page.tags.count("html") == 1 and "style" in page.tags
    # Headline numbers and the metrics table, formatted.
    for expected in (
        "12,345.68 USDT",  # final value (table)
        "12,346",  # final value (headline, no cents above 10,000)
        "+23.5 %",  # total return
        "+10.0 %",  # hold total return
        "+13.5",  # return vs hold, in points
        "+13.5 pts",
        "\u221212.3 %",  # max drawdown shown as a loss
        "\u221220.0 %",
        "+7.7 pts",  # shallower drawdown is a positive difference
        "1,234.50 USDT",  # fees
        "98,765.43 USDT",  # turnover
        "+8.9 %",  # annualised
        "1.23",  # sharpe
        "+0.43",  # sharpe difference
        "Rebalanced",
        "Hold",
        "Difference",
        "1 Jan 2024",  # period
        "daily prices",
        "synthetic random walk",  # settings
        "0.10 % & up",  # settings are escaped and come back intact
    ):
        assert expected in text, expected
    assert f"{run.rebalance_ms.size}" in text

    # One embedded image per chart, each byte-identical to the PNG file beside the page.
    assert len(page.images) == 3
    files = {img["data-file"]: decode_data_uri(img["src"]) for img in page.images}
    assert set(files) == {"equity.png", "drawdown.png", "weights.png"}
    for name, embedded in files.items():
        on_disk = (tmp_path / "report" / name).read_bytes()
        assert on_disk == embedded
        width, height = png_size(on_disk)
        assert 1000 <= width <= 3000 and 300 <= height <= 1500, (name, width, height)
        assert len(on_disk) > 10_000, name  # a drawn chart, not an empty canvas
        assert page.images[0]["alt"]

    # Self-contained: nothing is fetched from anywhere else.
    assert "link" not in page.tags and "script" not in page.tags
    for tag, attr, ref in page.refs:
        assert ref.startswith("data:"), (tag, attr, ref[:60])


def test_metrics_table_compares_rebalanced_hold_and_difference(tmp_path: Path) -> None:
    page = parse(write_report(synthetic_run(), tmp_path))
    assert page.rows_in["metrics"] == 9  # one row per metric
    text = page.all_text
    assert "Final value 12,345.68 USDT 11,000.00 USDT +1,345.68 USDT" in text
    assert "Volatility (annualised) 55.5 % 60.3 % \u22124.8 pts" in text
    assert "Fees paid 1,234.50 USDT 0.00 USDT +1,234.50 USDT" in text


def test_run_report_survives_awkward_inputs(tmp_path: Path) -> None:
    # One price, no rebalances.
    write_report(synthetic_run(1, rebalances=0), tmp_path / "one")
    # Hourly, cash held, many assets, no settings, missing metrics.
    run = synthetic_run(200, assets=tuple(f"A{i}" for i in range(9)), targets=(0.1,) * 9, step_ms=3_600_000, cash=0.1)
    run = RunReport(**{**run.__dict__, "settings": {}, "metrics": {"final_value": 5.0}})
    page = parse(write_report(run, tmp_path / "hourly"))
    assert "hourly prices" in page.all_text and "—" in page.all_text
    # Long: more points than are drawn.
    page = parse(write_report(synthetic_run(20_000, step_ms=3_600_000), tmp_path / "long"))
    assert len(page.images) == 3
    for d in ("one", "hourly", "long"):
        for name in ("equity.png", "drawdown.png", "weights.png"):
            assert png_size((tmp_path / d / name).read_bytes())[0] > 1000


def test_bad_shapes_name_the_field(tmp_path: Path) -> None:
    run = synthetic_run(50)
    with pytest.raises(InvalidInput) as err:
        write_report(RunReport(**{**run.__dict__, "hold": run.hold[:-1]}), tmp_path)
    assert err.value.field == "hold"
    with pytest.raises(InvalidInput) as err:
        write_report(RunReport(**{**run.__dict__, "targets": [0.5, 0.5]}), tmp_path)
    assert err.value.field == "targets"
    with pytest.raises(InvalidInput) as err:
        write_report(RunReport(**{**run.__dict__, "weights": run.weights[:, :2]}), tmp_path)
    assert err.value.field == "weights"
    assert not (tmp_path / "index.html").exists()


def test_report_module_leaves_pyplot_alone() -> None:
    code = "import sys; import rebal.backtest.report; assert 'matplotlib.pyplot' not in sys.modules; print('ok')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr


# --------------------------------------------------------------------------- #
# Sweep report
# --------------------------------------------------------------------------- #


def test_sweep_report_heatmap_top_rows_and_csv(tmp_path: Path) -> None:
    table = sweep_table()
    page_path = write_sweep_report(table, tmp_path / "sweep", title="Threshold × interval sweep")
    out = tmp_path / "sweep"
    assert page_path == out / "index.html"
    heat = (out / "heatmap.png").read_bytes()
    width, height = png_size(heat)
    assert 800 <= width <= 3000 and 400 <= height <= 2500
    assert len(heat) > 10_000

    page = parse(page_path)
    text = page.all_text
    assert "Threshold × interval sweep" in text
    assert "mean of 2 runs" in text  # several rows share each cell, and the page says so
    assert len(page.images) == 1 and decode_data_uri(page.images[0]["src"]) == heat
    assert page.rows_in["sweep"] == 20  # top 20 of 24 rows

    best = table.sort_values("excess_return_pct", ascending=False).iloc[0]
    assert format_pts(best["excess_return_pct"]) in text
    assert f"{int(best['rebalances']):,}" in text

    # The whole table round-trips through sweep.csv.
    back = pd.read_csv(out / "sweep.csv")
    pd.testing.assert_frame_equal(back, table)
    # The page's download link carries the same CSV.
    links = [ref for tag, attr, ref in page.refs if tag == "a"]
    assert len(links) == 1 and links[0].startswith("data:text/csv;base64,")
    assert base64.b64decode(links[0].split(",", 1)[1]) == (out / "sweep.csv").read_bytes()


def test_sweep_cells_are_means_and_empty_cells_are_marked(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "threshold": [5, 5, 10, 10, 10],
            "interval": ["1d", "1d", "1d", "7d", "7d"],
            "excess_return_pct": [1.0, 3.0, -2.0, float("nan"), float("nan")],
        }
    )
    page = parse(write_sweep_report(table, tmp_path))
    text = page.all_text
    assert "+2.0 pts" in text  # mean of the two (5, 1d) rows is the best setting
    assert "1 of 2" in text  # one of the two cells with a number beats holding
    assert "mean of 1–2 runs" in text
    assert png_size((tmp_path / "heatmap.png").read_bytes())[0] > 800


def test_sweep_report_other_value_and_bad_columns(tmp_path: Path) -> None:
    table = sweep_table(repeats=1)
    page = parse(write_sweep_report(table, tmp_path / "dd", value="total_return_pct", x="threshold", y="interval"))
    assert "Total return" in page.all_text
    with pytest.raises(InvalidInput) as err:
        write_sweep_report(table, tmp_path / "bad", value="nope")
    assert err.value.field == "value"
    with pytest.raises(InvalidInput):
        write_sweep_report(table.iloc[0:0], tmp_path / "empty")
