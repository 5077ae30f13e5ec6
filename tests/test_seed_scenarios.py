"""The two exchanges' product descriptions (../shared/seeds), end to end on
real Binance prices (../shared/data, read at test time) and Binance's real
market rules (the ccxt fixture).

Each scenario drives the Engine through `Host` (every order filled at the
tick price, 0.1 % fee) and checks what it did against a hand computation
from the exact holdings it reports before each tick: the weights, the
profit, the floating loss, the calendar.

Daily candles tick at their open time (00:00 UTC) with their close price.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import rebal
from rebal import Market, Purpose, Status
from rebal import config as cfg

from .engine_harness import (
    DAY_MS,
    MINUTE_MS,
    Host,
    aligned,
    daily_closes,
    events_of,
    hourly_closes,
    kinds,
)

NOISE = Fraction(1, 10**9)  # float valuation vs the exact one: a tie this close is not asserted


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


def day(t: int) -> str:
    return dt.datetime.fromtimestamp(t / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M %a")


def real_markets(binance_markets: dict[str, Any], symbols: list[str]) -> list[Market]:
    return [Market.from_ccxt(binance_markets[f"{s}/USDT"]) for s in symbols]


def daily_path(symbols: list[str], start: str, days: int) -> tuple[list[int], list[list[float]]]:
    series = [daily_closes(s) for s in symbols]
    times = aligned(series, ms(start))[:days]
    assert len(times) == days and times[-1] - times[0] == (days - 1) * DAY_MS, "a gap in the data"
    return times, [[s[t] for s in series] for t in times]


def profit(host: Host, pid: int, prices: list[float]) -> Fraction:
    net = Fraction(host.net_invested(pid))
    return (host.value(pid, prices) - net) / net


def loss(host: Host, pid: int, prices: list[float]) -> Fraction:
    return -profit(host, pid, prices)


def rebalanced(events: list[rebal.Event], pid: int) -> bool:
    return bool(events_of(events, "rebalance_started", pid))


# ====================================================================== BigONE: 40/30/30, θ = 5 points, TP 15 %, SL 8 %


@pytest.mark.parametrize(
    ("alt", "start", "exit_kind"),
    [("TRX", "2023-04-17", "take_profit"), ("XRP", "2021-04-30", "stop_loss")],
)
def test_bigone_threshold_rebalances_and_exits_on_the_first_crossing(
    binance_markets: dict[str, Any], alt: str, start: str, exit_kind: str
) -> None:
    symbols = [alt, "BTC", "ETH"]
    times, prices = daily_path(symbols, start, 200)
    host = Host(real_markets(binance_markets, symbols))
    weights = {alt: 40.0, "BTC": 30.0, "ETH": 30.0}
    base = cfg.StrategyConfig(assets=weights, investment=Decimal("1200"), trigger=cfg.ThresholdTrigger(5))
    exiting, holding = host.open_many([cfg.StrategyConfig(**{**_fields(base), "take_profit": 15.0, "stop_loss": 8.0}), base], times[0])
    host.step(times[0], prices[0])  # the initial buy
    targets = {a: Fraction(w) / 100 for a, w in weights.items()}
    assert host.portfolio(exiting)["targets"] == {a: float(w) for a, w in targets.items()}

    crossing: tuple[int, str] | None = None
    counts = {exiting: 0, holding: 0}
    for k in range(1, len(times)):
        t, p = times[k], prices[k]
        expect: dict[int, bool | None] = {}
        exits_now = False
        for pid in (exiting, holding):
            if host.engine.stage(pid) != rebal.Stage.ACTIVE:
                continue
            if pid == exiting and crossing is None:
                g = profit(host, pid, p)
                if g >= Fraction(15, 100) or g <= -Fraction(8, 100):
                    at_exit = g
                    assert min(abs(g - Fraction(15, 100)), abs(g + Fraction(8, 100))) > NOISE
                    crossing, exits_now = (k, "take_profit" if g > 0 else "stop_loss"), True
            w = host.weights(pid, p)
            dev = max(abs(w[a] - targets[a]) for a in targets)
            expect[pid] = None if abs(dev - Fraction(5, 100)) <= NOISE else (dev >= Fraction(5, 100) and not (pid == exiting and exits_now))
        events = host.step(t, p)
        for pid, want in expect.items():
            got = rebalanced(events, pid)
            counts[pid] += got
            if want is not None:
                assert got == want, (day(t), pid, float(host.deviation(pid, p)), kinds(events, pid))
            if got:
                orders = host.orders_of(pid)
                assert {q for _, q in orders} == {Purpose.REBALANCE}
                assert {o.side for o, _ in orders} == {"buy", "sell"}
        exits = [e for e in events if e.kind in ("take_profit", "stop_loss")]
        if exits_now:
            assert crossing is not None
            assert [(e.kind, e.portfolio_id) for e in exits] == [(crossing[1], exiting)], day(t)
            assert exits[0].value == pytest.approx(float(at_exit), abs=1e-9)  # the profit that crossed, before the exit's fees
            assert {q for _, q in host.orders_of(exiting)} == {Purpose.EXIT}
        else:
            assert exits == [], day(t)
    assert crossing is not None and crossing[1] == exit_kind
    assert counts[exiting] >= 1  # the exit came after at least one rebalance
    assert counts[holding] >= 2
    assert host.engine.stage(exiting) == rebal.Stage.TERMINATED
    assert host.engine.stage(holding) == rebal.Stage.ACTIVE


# ====================================================================== Bitget: percentage mode, θ = 1, 5-minute re-checks


def _intra_hour(candle: tuple[float, float, float, float]) -> list[float]:
    """Open, the two extremes (low first on a rising candle), close."""
    o, h, lo, c = candle
    return [o, lo, h, c] if c >= o else [o, h, lo, c]


INTRA_MINUTES = [0, 2, 4, 6, 7, 8, 9, 10, 11, 20, 40]


def test_bitget_percentage_mode_threshold_one_with_five_minute_rechecks() -> None:
    btc, eth = hourly_closes("BTC"), hourly_closes("ETH")
    hours = aligned([btc, eth])[:240]  # ten days of April 2019
    markets = [rebal.Market("BTC/USDT", "BTC", "USDT", "0.00001", min_notional="5", taker_fee=0.001),
               rebal.Market("ETH/USDT", "ETH", "USDT", "0.0001", min_notional="5", taker_fee=0.001)]  # fmt: skip
    host = Host(markets)
    config = cfg.StrategyConfig(assets={"BTC": 50, "ETH": 50}, investment=Decimal("10000"), trigger=cfg.ThresholdTrigger(1), cooldown="5m")
    pid = host.open(config, hours[0] - MINUTE_MS)
    last: int | None = None
    seen = {Status.REBALANCE: 0, Status.COOLDOWN: 0, Status.IDLE: 0}
    first = True
    for h in hours:
        b, e = _intra_hour(btc[h]), _intra_hour(eth[h])
        for minute in INTRA_MINUTES:
            i = min(INTRA_MINUTES.index(minute), 3)
            t, p = h + minute * MINUTE_MS, [b[i], e[i]]
            if first:  # the initial buy
                host.step(t, p)
                first = False
                continue
            dev = host.deviation(pid, p)
            host.step(t, p)
            status = host.status(pid)
            if abs(dev - Fraction(1, 100)) <= NOISE:
                continue
            if dev < Fraction(1, 100):
                assert status == Status.IDLE, (day(t), float(dev), status)
            elif last is not None and t - last < 5 * MINUTE_MS:
                assert status == Status.COOLDOWN, (day(t), float(dev), status)
            else:
                assert status == Status.REBALANCE, (day(t), float(dev), status)
            if status == Status.REBALANCE:
                assert {q for _, q in host.orders_of(pid)} == {Purpose.REBALANCE}
                last = t
            seen[Status(status)] = seen.get(Status(status), 0) + 1
    assert seen[Status.REBALANCE] >= 5
    assert seen[Status.COOLDOWN] >= 1  # the 5-minute re-check was exercised
    assert host.accounting(pid)["rebalances"] == seen[Status.REBALANCE]


# ====================================================================== Bitget: calendar mode with a 3 % gate


def test_bitget_calendar_mode_checks_on_schedule_and_rebalances_past_the_gate(binance_markets: dict[str, Any]) -> None:
    symbols = ["BTC", "ETH"]
    times, prices = daily_path(symbols, "2021-01-01", 365)
    host = Host(real_markets(binance_markets, symbols))
    intervals = {"3d": 3 * DAY_MS, "1d": DAY_MS}
    configs = [
        cfg.StrategyConfig(assets={"BTC": 50, "ETH": 50}, investment=Decimal("5000"), trigger=cfg.CalendarTrigger(every=every, gate=3))
        for every in intervals
    ]
    ids = host.open_many(configs, times[0])
    host.step(times[0], prices[0])
    checks = {pid: {times[0] + k * iv for k in range(1, 400)} for pid, iv in zip(ids, intervals.values())}
    off_schedule_breaches = below_gate_checks = 0
    rebalances = dict.fromkeys(ids, 0)
    for t, p in zip(times[1:], prices[1:]):
        devs = {pid: host.deviation(pid, p) for pid in ids}
        events = host.step(t, p)
        for pid in ids:
            got = rebalanced(events, pid)
            rebalances[pid] += got
            dev = devs[pid]
            if abs(dev - Fraction(3, 100)) <= NOISE:
                continue
            due = t in checks[pid]
            assert got == (due and dev >= Fraction(3, 100)), (day(t), pid, float(dev), due)
            off_schedule_breaches += not due and dev >= Fraction(3, 100)
            below_gate_checks += due and dev < Fraction(3, 100)
    assert rebalances[ids[0]] >= 3 and rebalances[ids[1]] >= rebalances[ids[0]]
    assert off_schedule_breaches >= 1 and below_gate_checks >= 1  # both halves of the rule were exercised


# ====================================================================== BigONE auto-invest


def test_auto_invest_every_friday_1400_on_real_hourly_prices() -> None:
    btc, eth = hourly_closes("BTC"), hourly_closes("ETH")
    hours = aligned([btc, eth])
    markets = [rebal.Market("BTC/USDT", "BTC", "USDT", "0.00001", min_notional="5", taker_fee=0.001),
               rebal.Market("ETH/USDT", "ETH", "USDT", "0.0001", min_notional="5", taker_fee=0.001)]  # fmt: skip
    host = Host(markets)
    auto = cfg.AutoInvest(amount=Decimal("250.5"), mode=cfg.ScheduleMode(weekly="fri", at="14:00"))
    config = cfg.StrategyConfig(assets={"BTC": 50, "ETH": 50}, investment=Decimal("1000"), auto_invest=auto)
    pid = host.open(config, hours[0], spot="10000")
    cycles = []
    for h in hours:
        events = host.step(h, [btc[h][3], eth[h][3]])
        for e in events_of(events, "auto_invest_executed", pid):
            assert e.amount == Decimal("250.5") and e.asset == "USDT"
            orders = host.orders_of(pid)
            assert orders and {q for _, q in orders} == {Purpose.INVEST} and {o.side for o, _ in orders} == {"buy"}
            cycles.append(h)
    fridays = [t for t in hours if day(t).endswith("14:00 Fri")]
    assert [day(t) for t in cycles] == [day(t) for t in fridays] and len(fridays) == 5  # Apr 19 … May 17
    assert host.net_invested(pid) == Decimal(1000) + 5 * Decimal("250.5")
    assert host.funds.balances[pid] == Decimal(10000) - 5 * Decimal("250.5")


def test_auto_invest_on_a_five_percent_loss_at_most_every_seven_days(binance_markets: dict[str, Any]) -> None:
    symbols = ["ADA", "BTC", "ETH"]
    times, prices = daily_path(symbols, "2022-03-28", 180)  # into the 2022 bear market
    host = Host(real_markets(binance_markets, symbols))
    auto = cfg.AutoInvest(amount=Decimal("100"), mode=cfg.DrawdownMode(loss=5, min_interval="7d"))
    config = cfg.StrategyConfig(assets={"ADA": 40, "BTC": 30, "ETH": 30}, investment=Decimal("1200"), auto_invest=auto)
    pid = host.open(config, times[0], spot="100000")
    host.step(times[0], prices[0])
    last: int | None = None
    cycles, waited = [], 0
    for t, p in zip(times[1:], prices[1:]):
        x = loss(host, pid, p)
        rested = last is None or t - last >= 7 * DAY_MS
        events = host.step(t, p)
        fired = bool(events_of(events, "auto_invest_executed", pid))
        busy = rebalanced(events, pid)  # orders out: the cycle waits for the next tick
        if abs(x - Fraction(5, 100)) > NOISE:
            assert fired == (x >= Fraction(5, 100) and rested and not busy), (day(t), float(x), rested, busy)
        waited += x >= Fraction(5, 100) and not rested
        if fired:
            cycles.append(t)
            last = t
    assert len(cycles) >= 5 and waited >= 5  # both the loss and the interval decided something
    assert all(b - a >= 7 * DAY_MS for a, b in zip(cycles, cycles[1:]))
    assert host.net_invested(pid) == Decimal(1200) + 100 * len(cycles)
    assert host.funds.balances[pid] == Decimal(100000) - 100 * len(cycles)


def test_auto_invest_pauses_at_a_100000_cap_and_stops_before_passing_200000(binance_markets: dict[str, Any]) -> None:
    symbols = ["BTC", "ETH"]
    times, prices = daily_path(symbols, "2021-01-04", 84)  # a Monday; twelve weeks
    host = Host(real_markets(binance_markets, symbols))  # the default host maximum: 200,000
    weekly = cfg.ScheduleMode(weekly="mon", at="00:00")
    capped = cfg.StrategyConfig(
        assets={"BTC": 50, "ETH": 50}, investment=Decimal("50000"), auto_invest=cfg.AutoInvest(amount=Decimal("10000"), mode=weekly, cap=Decimal("100000"))
    )
    uncapped = cfg.StrategyConfig(assets={"BTC": 50, "ETH": 50}, investment=Decimal("150000"), auto_invest=cfg.AutoInvest(amount=Decimal("10000"), mode=weekly))
    a, b = host.open_many([capped, uncapped], times[0], spot="1000000")
    log: dict[int, list[tuple[str, str, str | None]]] = {a: [], b: []}
    for t, p in zip(times, prices):
        for e in host.step(t, p):
            if e.kind.startswith("auto_invest") and e.portfolio_id in log:
                log[e.portfolio_id].append((day(t)[:10], e.kind, e.reason))
    mondays = [day(t)[:10] for t in times if day(t).endswith("Mon")][1:]
    assert log[a] == [(d, "auto_invest_executed", None) for d in mondays[:5]] + [(mondays[4], "auto_invest_paused", "cap_reached")]
    assert host.net_invested(a) == Decimal(100000)
    assert log[b] == [(d, "auto_invest_executed", None) for d in mondays[:5]] + [(mondays[5], "auto_invest_stopped", "max_investment")]
    assert host.net_invested(b) == Decimal(200000)
    assert host.funds.balances[a] == Decimal(1000000) - 50000 and host.funds.balances[b] == Decimal(1000000) - 50000


# ====================================================================== termination with a delisted coin


def test_termination_returns_a_delisted_coin_in_kind_and_sells_the_rest(binance_markets: dict[str, Any]) -> None:
    symbols = ["BTC", "ETH", "XRP"]
    times, prices = daily_path(symbols, "2021-06-01", 40)
    host = Host(real_markets(binance_markets, symbols))
    config = cfg.StrategyConfig(assets={"BTC": 40, "ETH": 30, "XRP": 30}, investment=Decimal("5000"))
    selling, returning = host.open_many([config, cfg.StrategyConfig(**{**_fields(config), "exit": "return"})], times[0])
    for t, p in zip(times[:30], prices[:30]):
        host.step(t, p)
    # XRP is delisted: its market takes no orders.
    host.engine.update_markets([*real_markets(binance_markets, ["BTC", "ETH"]), Market.from_ccxt({**binance_markets["XRP/USDT"], "active": False})])
    held, cash = host.holdings(selling)
    assert all(q > 0 for q in held.values())
    held_r, cash_r = host.holdings(returning)
    now = times[30]
    host.engine.terminate([selling, returning], now)
    events = host.step(now, prices[30])
    assert [e.reason for e in events_of(events, "terminating", selling)] == ["user"]
    orders = host.orders_of(selling)
    assert {(o.asset, o.side, q) for o, q in orders} == {("BTC", "sell", Purpose.EXIT), ("ETH", "sell", Purpose.EXIT)}
    assert {o.asset: o.amount for o, _ in orders} == {"BTC": held["BTC"], "ETH": held["ETH"]}  # whole holdings: they are whole lots
    # Exit "return": everything back as it is, at once, nothing sold.
    assert host.orders_of(returning) == []
    back = {(e.asset, e.amount, e.reason) for e in events_of(events, "asset_returned", returning)}
    assert back == {(a, q, "exit_return") for a, q in held_r.items()} | ({("USDT", cash_r, "cash")} if cash_r else set())
    assert host.engine.stage(returning) == rebal.Stage.TERMINATED

    proceeds = sum((f.cost - f.fee for f in host.filled if f.portfolio_id == selling and f.purpose == Purpose.EXIT), Decimal(0))
    events = host.step(times[31], prices[31])
    back = {(e.asset, e.amount, e.reason) for e in events_of(events, "asset_returned", selling)}
    assert back == {("XRP", held["XRP"], "market_inactive"), ("USDT", cash + proceeds, "cash")}
    (done,) = events_of(events, "terminated", selling)
    assert done.reason == "user"
    assert host.engine.stage(selling) == rebal.Stage.TERMINATED
    assert host.holdings(selling) == ({"BTC": Decimal(0), "ETH": Decimal(0), "XRP": Decimal(0)}, Decimal(0))


def _fields(c: cfg.StrategyConfig) -> dict[str, Any]:
    return {f: getattr(c, f) for f in c.__struct_fields__}


# ====================================================================== rebalancing vs holding over a real year


def test_rebalancing_vs_holding_over_a_real_year_matches_the_same_buys_held(binance_markets: dict[str, Any]) -> None:
    symbols = ["ADA", "BTC", "ETH"]
    times, prices = daily_path(symbols, "2023-01-01", 365)
    host = Host(real_markets(binance_markets, symbols))
    weights = {"ADA": 40.0, "BTC": 30.0, "ETH": 30.0}
    plain = cfg.StrategyConfig(assets=weights, investment=Decimal("10000"))
    monthly = cfg.AutoInvest(amount=Decimal("500"), mode=cfg.ScheduleMode(monthly=1, at="00:00"))
    dca = cfg.StrategyConfig(assets=weights, investment=Decimal("10000"), auto_invest=monthly)
    ids = host.open_many([plain, dca], times[0])
    for t, p in zip(times, prices):
        host.step(t, p)
    last = prices[-1]
    acct = host.engine.accounting(ids)
    for k, pid in enumerate(ids):
        buys = [f for f in host.filled if f.portfolio_id == pid and f.purpose == Purpose.INVEST]
        assert {f.side for f in buys} == {"buy"}
        net = host.net_invested(pid)
        hold = Fraction(net - sum((f.charged for f in buys), Decimal(0)))
        for f in buys:
            hold += Fraction(f.amount) * Fraction(last[symbols.index(f.asset)])
        value = host.value(pid, last)
        assert acct["hold_value"][k] == pytest.approx(float(hold), rel=1e-12)
        assert acct["value"][k] == pytest.approx(float(value), rel=1e-12)
        assert acct["hold_profit_pct"][k] == pytest.approx(float(100 * (hold - Fraction(net)) / Fraction(net)), rel=1e-9)
        assert acct["vs_hold_pct"][k] == pytest.approx(acct["profit_pct"][k] - acct["hold_profit_pct"][k], abs=1e-9)
        assert acct["rebalances"][k] >= 3
        assert abs(value - hold) / Fraction(net) > Fraction(1, 100)  # a year of rebalancing is not holding
        assert acct["annualised_return_pct"][k] == pytest.approx(
            100 * ((float(value) / float(net)) ** (1 / ((times[-1] - times[0]) / (365.25 * DAY_MS))) - 1), rel=1e-6
        )
    assert host.net_invested(ids[1]) == Decimal(10000) + 11 * 500  # Feb 1 … Dec 1
    assert not np.isnan(acct["hold_value"]).any()
