"""What the bot's portfolio holds against its targets, for people.

`status(bot)` gathers it as plain values (JSON-ready); `table(status)` is
the rich table `rebal run` prints after each step: weights against targets,
value, profit, the hold benchmark, and when the next check is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.table import Table

from rebal.engine import Stage

if TYPE_CHECKING:
    from rebal.bot.runner import Bot

__all__ = ["status", "table"]


def status(bot: Bot) -> dict[str, Any]:
    """The portfolio now, at the last step's prices."""
    e, pid = bot.engine, bot.portfolio_id
    p = e.book.portfolio(pid)
    prices = {m.base: float(x) for m, x in zip(e.markets, e.prices if e.prices is not None else [])}
    acct = {k: v[0] for k, v in e.accounting([pid]).items()}
    value = float(acct["value"])
    assets = []
    for asset, amount in p["holdings"].items():
        worth = float(amount) * prices.get(asset, float("nan"))
        weight = 100 * worth / value if value > 0 else 0.0
        target = 100 * p["targets"][asset]
        assets.append({"asset": asset, "amount": str(amount), "price": prices.get(asset), "value": worth, "weight_pct": weight, "target_pct": target, "deviation_pct": weight - target})
    return {
        "portfolio_id": pid,
        "stage": Stage(int(acct["stage"])).name.lower(),
        "cash": str(p["cash"]),
        "assets": assets,
        "value": value,
        "net_invested": str(acct["net_invested"]),
        "profit": float(acct["profit"]),
        "profit_pct": float(acct["profit_pct"]),
        "hold_profit_pct": float(acct["hold_profit_pct"]),
        "vs_hold_pct": float(acct["vs_hold_pct"]),
        "rebalances": int(acct["rebalances"]),
        "fees_paid": float(acct["fees_paid"]),
        "next_check": _next_check(bot, p),
    }


def _next_check(bot: Bot, p: dict[str, Any]) -> str:
    if p["locked"]:
        return "when the orders out are done"
    stage = bot.engine.stage(bot.portfolio_id)
    if stage in (Stage.TERMINATING, Stage.TERMINATED, Stage.CREATED):
        return "-" if stage == Stage.TERMINATED else "next step"
    if not p["active"]:
        return "paused"
    if p.get("trigger") == "calendar":
        return _when(p["next_check_ms"])
    last, cooldown = p["last_rebalance_ms"], p["cooldown_ms"]
    if last is not None and bot.engine.now_ms is not None and last + cooldown > bot.engine.now_ms:
        return f"after the cooldown, {_when(last + cooldown)}"
    return "every step (threshold)"


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def table(s: dict[str, Any], *, title: str = "") -> Table:
    """`status` as a table: one row per asset, then the totals."""
    t = Table(title=title or f"portfolio {s['portfolio_id']} ({s['stage']})", title_justify="left")
    for name, justify in (("asset", "left"), ("amount", "right"), ("price", "right"), ("value", "right"), ("weight", "right"), ("target", "right"), ("off by", "right")):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for a in s["assets"]:
        price = "-" if a["price"] is None else f"{a['price']:,.8g}"
        t.add_row(a["asset"], a["amount"], price, f"{a['value']:,.2f}", f"{a['weight_pct']:.2f} %", f"{a['target_pct']:.2f} %", f"{a['deviation_pct']:+.2f} pts")
    t.add_row("cash", s["cash"], "", f"{float(s['cash']):,.2f}", "", "", "", end_section=True)
    t.add_row("value", "", "", f"{s['value']:,.2f}", "", "", "")
    t.caption = (
        f"invested {float(s['net_invested']):,.2f} · profit {s['profit']:+,.2f} ({s['profit_pct']:+.2f} %) · "
        f"hold {s['hold_profit_pct']:+.2f} % · vs hold {s['vs_hold_pct']:+.2f} pts · "
        f"{s['rebalances']} rebalances · fees {s['fees_paid']:,.2f} · next check: {s['next_check']}"
    )
    t.caption_justify = "left"
    return t
