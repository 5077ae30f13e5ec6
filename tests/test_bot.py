"""The bot on an exchange: ccxt's own, unchanged `binance` class against a
local Binance (tests/fake_binance.py) that misbehaves on demand.

The long run drives at least 200 rebalances on real daily closes with
timeouts (before and after the order executes), 429s, 5xx, partial fills
and refusals injected, and ends with nothing sent twice, no order refused by
a filter, the account's balances equal to the Engine's to the last digit,
and the strategy state consistent.
"""

from __future__ import annotations

import logging
import time
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import msgspec
import numpy as np
import pytest

import rebal
from rebal.adapters.ccxt import CcxtVenue, Retry
from rebal.adapters.venue import OrderRequest
from rebal.backtest.data import load_cryptodatadownload
from rebal.bot import Bot
from rebal.bot.credentials import Credentials, load_credentials, redact
from rebal.bot.status import status, table
from rebal.config import ThresholdTrigger
from rebal.exceptions import CredentialsError, OrderRefused, VenueAuthError, VenueUnavailable
from rebal.orders import OrderStatus
from tests.conftest import shared
from tests.fake_binance import FakeBinance

pytest.importorskip("ccxt")

KEY, SECRET = "test-key-7f3a9c1e", "test-secret-4b8d2e6f0a"
ASSETS = ["BTC", "ETH", "ADA", "XRP"]
DAY_MS = 86_400_000
NO_WAIT = Retry(attempts=4, base_s=0.001, max_s=0.001)
RECV_WINDOW_MS = 500
"""The fake refuses a signed request older than this (as Binance does), so an
order not found 0.6 s after it was sent can no longer arrive."""


@pytest.fixture(scope="module")
def closes() -> tuple[np.ndarray, np.ndarray]:
    data = load_cryptodatadownload(shared("daily_binance_usdt"), ASSETS)
    return data.times_ms, data.close


def prices_at(close: np.ndarray, k: int) -> dict[str, str]:
    return {f"{a}/USDT": repr(float(close[k][i])) for i, a in enumerate(ASSETS)}


@pytest.fixture
def fake(closes: tuple[np.ndarray, np.ndarray]) -> Iterator[FakeBinance]:
    with FakeBinance(shared("markets", "ccxt_binance_static.json"), api_key=KEY, secret=SECRET, balances={"USDT": "10000"}, prices=prices_at(closes[1], 0), seed=int(os.environ.get("REBAL_FAKE_SEED", "7"))) as f:
        yield f
        assert f.internal_errors == []
        assert f.unserved == []


def config(threshold: float = 1.0, investment: str = "10000") -> rebal.StrategyConfig:
    return rebal.StrategyConfig(assets={a: 25 for a in ASSETS}, investment=Decimal(investment), trigger=ThresholdTrigger(threshold), cooldown="0s")


class Clock:
    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


def venue_for(fake: FakeBinance, timeout_ms: int = 2000, **client: object) -> CcxtVenue:
    exchange = fake.client(timeout_ms=timeout_ms, options={"recvWindow": RECV_WINDOW_MS}, **client)
    return CcxtVenue(exchange, retry=NO_WAIT, secrets=(KEY, SECRET), arrival_window_s=RECV_WINDOW_MS / 1000 + 0.1)


def open_bot(fake: FakeBinance, tmp_path: Path, clock: Clock, *, threshold: float = 1.0, timeout_ms: int = 2000, venue: CcxtVenue | None = None) -> Bot:
    return Bot.open(venue or venue_for(fake, timeout_ms), config(threshold), tmp_path / "bot.sqlite", clock=clock)


def assert_account_matches(fake: FakeBinance, bot: Bot) -> None:
    """The exchange account and the Engine agree to the last digit, and
    nothing is left open on either side."""
    held = bot.engine.book.portfolio(bot.portfolio_id)
    balances = fake.balances()
    for asset in ASSETS:
        assert balances.get(asset, Decimal(0)) == held["holdings"][asset], asset
    assert balances["USDT"] == held["cash"]
    assert set(balances) <= {*ASSETS, "USDT"}
    assert all(v >= 0 for v in balances.values())
    assert len(bot.engine.orders.open_rows()) == 0
    assert not held["locked"]
    assert [o for o in fake.orders if o["status"] in ("NEW", "PARTIALLY_FILLED")] == []


# ---------------------------------------------------------------- the long run with faults


def test_two_hundred_rebalances_with_faults_never_send_twice(fake: FakeBinance, closes: tuple[np.ndarray, np.ndarray], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    times, close = closes
    caplog.set_level(logging.DEBUG)
    clock = Clock(int(times[0]))
    bot = open_bot(fake, tmp_path, clock, timeout_ms=150)
    rates = {
        "timeout_after_execute": 0.02, "timeout_before_execute": 0.005, "arrive_late": 0.005, "http_429": 0.04,
        "http_5xx": 0.02, "http_5xx_after_execute": 0.02, "partial": 0.1, "reject": 0.03,
    }  # fmt: skip
    fake.set_fault_rates(rates)
    unavailable, k = 0, 0
    while bot.engine.accounting()["rebalances"][0] < 200:
        k += 1
        assert k < len(times), "the price history ran out before 200 rebalances"
        fake.set_prices(prices_at(close, k))
        clock.now = int(times[k])
        try:
            bot.step()
        except VenueUnavailable:
            unavailable += 1  # the next step looks the orders in doubt up
    fake.clear_faults()
    clock.now += 1
    bot.step()  # settles whatever the last faults left in doubt

    fired = {kind: sum(1 for f in fake.faults_fired if f[0] == kind) for kind in rates}
    assert all(n > 0 for n in fired.values()), fired  # every kind of fault happened
    assert fake.sent_twice() == 0
    # A client id reached the exchange again only after it refused it (an answer lost to a fault).
    refused = {r[0] for r in fake.rejections}
    assert all(cid in refused for cid in fake.submissions if fake.submissions.count(cid) > 1)
    assert len({o["clientOrderId"] for o in fake.orders}) == len(fake.orders)
    assert fake.filter_rejections == []
    # Every refusal was an injected one: our buys never outran the cash the sells brought in.
    assert len(fake.rejections) == fired["reject"]
    assert_account_matches(fake, bot)

    # The strategy state: every order the exchange has is one the Engine sent
    # and saved, closed with the same filled amount.
    saved = {row[0]: row for row in bot.store.db.execute("SELECT client_order_id, status, filled FROM orders")}
    for order in fake.orders:
        cid = order["clientOrderId"]
        assert cid in saved
        assert Decimal(saved[cid][2]) == Decimal(order["executedQty"]), cid
        assert saved[cid][1] in ("filled", "cancelled", "rejected")
    assert bot.stage == rebal.Stage.ACTIVE
    weights = status(bot)["assets"]
    assert max(abs(a["deviation_pct"]) for a in weights) < 5
    # The keys never reached a log line.
    assert KEY not in caplog.text and SECRET not in caplog.text


# ---------------------------------------------------------------- one fault at a time


def test_an_order_that_timed_out_after_executing_is_found_not_resent(fake: FakeBinance, tmp_path: Path) -> None:
    bot = open_bot(fake, tmp_path, Clock(1_700_000_000_000), timeout_ms=200)
    fake.inject("timeout_after_execute", times=1, endpoint="POST /api/v3/order")
    report = bot.step()  # the initial buys; the first answer never arrives
    assert report.sent == 4
    assert fake.sent_twice() == 0 and len(fake.submissions) == 4
    assert_account_matches(fake, bot)


def test_an_order_that_never_arrived_is_sent_after_the_lookup_says_so(fake: FakeBinance, tmp_path: Path) -> None:
    bot = open_bot(fake, tmp_path, Clock(1_700_000_000_000), timeout_ms=200)
    fake.inject("timeout_before_execute", times=1, endpoint="POST /api/v3/order")
    bot.step()
    assert fake.sent_twice() == 0
    assert len(fake.orders) == 4
    assert_account_matches(fake, bot)


def test_unreachable_exchange_leaves_orders_in_doubt_until_the_next_step(fake: FakeBinance, tmp_path: Path) -> None:
    clock = Clock(1_700_000_000_000)
    bot = open_bot(fake, tmp_path, clock, timeout_ms=200)
    # The first order executes but its answer is lost, and every lookup fails too.
    fake.inject("timeout_after_execute", times=1, endpoint="POST /api/v3/order")
    fake.inject("http_5xx", times=NO_WAIT.attempts, endpoint="GET /api/v3/order")
    with pytest.raises(VenueUnavailable) as raised:
        bot.step()
    assert "still failing after 4 attempts" in str(raised.value)
    assert len(bot.engine.orders.open_rows()) == 4  # in doubt (1) and not yet sent (3)
    clock.now += 60_000
    report = bot.step()  # reconciles: one found done, three never sent (cancelled), then re-planned
    assert report.reconciled == 4
    assert fake.sent_twice() == 0
    clock.now += 60_000
    bot.step()
    assert_account_matches(fake, bot)
    assert bot.stage == rebal.Stage.ACTIVE


def test_a_refused_order_is_recorded_and_the_portfolio_replans(fake: FakeBinance, tmp_path: Path) -> None:
    clock = Clock(1_700_000_000_000)
    bot = open_bot(fake, tmp_path, clock)
    fake.inject("reject", times=1, endpoint="POST /api/v3/order")
    report = bot.step()
    assert [r.split(":")[1] for r in report.refused] == ["insufficient_funds"]
    clock.now += 60_000
    refused_asset = fake.rejections[0][0]
    report = bot.step()  # the unspent money is bought with again at once (no cooldown after a refusal)
    assert report.sent >= 1 and report.refused == []
    assert fake.submissions.count(refused_asset) <= 1  # the refused order itself is never sent again
    assert all(amount > 0 for amount in bot.engine.book.portfolio(bot.portfolio_id)["holdings"].values())
    assert bot.stage == rebal.Stage.ACTIVE
    assert_account_matches(fake, bot)


def test_buys_are_sized_from_what_the_sells_actually_brought_in(fake: FakeBinance, closes: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    times, close = closes
    clock = Clock(int(times[0]))
    bot = open_bot(fake, tmp_path, clock, threshold=1.0)
    bot.step()
    # BTC doubles: the rebalance sells BTC and buys the rest; the sell fills only in part.
    up = prices_at(close, 0)
    up["BTC/USDT"] = repr(2 * float(up["BTC/USDT"]))
    fake.set_prices(up)
    fake.inject("partial", times=1, endpoint="POST /api/v3/order")
    clock.now += DAY_MS
    report = bot.step()
    assert fake.rejections == []  # no buy asked for money the partial sell did not bring
    sell = next(o for o in fake.orders if o["side"] == "SELL")
    assert sell["status"] == "EXPIRED" and Decimal(sell["executedQty"]) < Decimal(sell["origQty"])
    buys = [o for o in fake.orders if o["side"] == "BUY" and o["clientOrderId"].split("-")[1] == sell["clientOrderId"].split("-")[1]]
    assert buys and all(o["type"] == "LIMIT" and o["timeInForce"] == "IOC" for o in buys)
    cash_before_buys = sum(Decimal(o["cummulativeQuoteQty"]) for o in buys)
    assert cash_before_buys > 0 and report.sent == 1 + len(buys)
    assert_account_matches(fake, bot)


def test_partial_fills_and_fees_in_base_and_quote_are_applied_exactly(fake: FakeBinance, tmp_path: Path) -> None:
    bot = open_bot(fake, tmp_path, Clock(1_700_000_000_000))
    fake.inject("partial", times=2, endpoint="POST /api/v3/order")
    bot.step()
    trades = fake.trades
    assert {t["commissionAsset"] for t in trades} >= {"BTC", "ETH"}  # buys pay the fee in the coin bought
    assert_account_matches(fake, bot)
    orders = bot.store.db.execute("SELECT status FROM orders").fetchall()
    assert sorted(s for (s,) in orders).count("cancelled") == 2  # the unfilled rests


def test_restart_reconciles_by_client_id(fake: FakeBinance, tmp_path: Path) -> None:
    """A bot that died between "the exchange filled it" and "saved the fill"
    finds the fill by client id on restart and applies it once."""
    clock = Clock(1_700_000_000_000)
    bot = open_bot(fake, tmp_path, clock)

    def die(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    bot._settle = die  # type: ignore[method-assign]  # killed right after the exchange answered
    with pytest.raises(KeyboardInterrupt):
        bot.step()
    bot.close()
    clock.now += 1000
    again = open_bot(fake, tmp_path, clock)  # reconciles: the first order filled there, three never sent
    assert len(again.engine.orders.open_rows()) == 0
    held = again.engine.book.portfolio(again.portfolio_id)["holdings"]
    assert held["BTC"] == fake.balances()["BTC"] > 0
    assert held["ETH"] == held["ADA"] == held["XRP"] == 0
    again.step()
    assert fake.sent_twice() == 0
    clock.now += 1000
    again.step()
    assert_account_matches(fake, again)


def test_exit_sells_everything_and_the_account_holds_only_cash(fake: FakeBinance, tmp_path: Path) -> None:
    clock = Clock(1_700_000_000_000)
    bot = open_bot(fake, tmp_path, clock)
    bot.step()
    bot.terminate("sell")
    for _ in range(3):  # the sells, then the settlement that hands back the cash
        clock.now += 1000
        bot.step()
        if bot.finished:
            break
    assert bot.finished
    balances = fake.balances()
    # What is left of a coin is dust below its market's minimum, returned in kind.
    for asset in ASSETS:
        market = next(m for m in bot.engine.markets if m.base == asset)
        assert balances.get(asset, Decimal(0)) * Decimal(repr(float(fake.price(market.symbol) or 0))) < market.min_notional
    assert balances["USDT"] > Decimal("9900")


def test_markets_come_from_load_markets_with_the_real_filters(fake: FakeBinance) -> None:
    venue = CcxtVenue(fake.client(), retry=NO_WAIT)
    btc, eth = venue.markets("USDT", ["BTC", "ETH"])
    assert (btc.step, btc.min_notional, btc.price_tick) == (Decimal("0.00001"), Decimal("5"), Decimal("0.01"))
    assert eth.step == Decimal("0.0001")
    with pytest.raises(rebal.MarketError, match=r"assets\[0\]: binance has no spot market SOL/USDT"):
        venue.markets("USDT", ["SOL"])


def test_a_filter_breaking_order_is_refused_as_invalid(fake: FakeBinance) -> None:
    venue = CcxtVenue(fake.client(), retry=NO_WAIT)
    (btc,) = venue.markets("USDT", ["BTC"])
    with pytest.raises(OrderRefused) as refused:
        venue.place(OrderRequest("manual-1", "BTC/USDT", "buy", Decimal("0.00001")), btc)  # 0.5 USDT < NOTIONAL 5
    assert refused.value.reason == "invalid_order"
    assert "NOTIONAL" in str(refused.value)


def test_wrong_keys_stop_the_bot(fake: FakeBinance, tmp_path: Path) -> None:
    exchange = fake.client()
    exchange.secret = "not-the-secret"
    venue = CcxtVenue(exchange, retry=NO_WAIT, secrets=(KEY, "not-the-secret"))
    with pytest.raises(VenueAuthError) as raised:
        Bot.open(venue, config(), tmp_path / "bot.sqlite", clock=Clock(0))
    assert "not-the-secret" not in str(raised.value) and KEY not in str(raised.value)


def test_an_account_without_the_investment_is_refused_then_funded_later(fake: FakeBinance, tmp_path: Path) -> None:
    clock = Clock(1_700_000_000_000)
    venue = CcxtVenue(fake.client(), retry=NO_WAIT)
    with pytest.raises(rebal.InsufficientFunds):
        Bot.open(venue, config(investment="20000"), tmp_path / "bot.sqlite", clock=clock)  # releases its locks
    fake.deposit("USDT", "10000")
    bot = Bot.open(venue, config(investment="20000"), tmp_path / "bot.sqlite", clock=clock)
    assert bot.stage == rebal.Stage.FUNDING
    bot.step()
    assert_account_matches(fake, bot)


def test_async_ccxt_drives_the_same_bot(fake: FakeBinance, tmp_path: Path) -> None:
    import ccxt.async_support as ccxt_async

    from rebal.bot.cli import _rebased

    sync = fake.client()
    exchange = ccxt_async.binance({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False, "options": sync.options})
    exchange.urls["api"] = _rebased(exchange.urls["api"], fake.base_url)
    venue = CcxtVenue(exchange, retry=NO_WAIT)
    try:
        bot = Bot.open(venue, config(), tmp_path / "bot.sqlite", clock=Clock(1_700_000_000_000))
        bot.step()
        assert_account_matches(fake, bot)
    finally:
        venue.close()


def test_paper_mode_uses_real_prices_and_no_private_calls(fake: FakeBinance, closes: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    from rebal.adapters.paper import PaperExchange

    times, close = closes
    public = fake.client()
    public.apiKey = public.secret = ""
    paper = PaperExchange(public, {"USDT": Decimal("10000")})
    clock = Clock(int(times[0]))
    bot = Bot.open(CcxtVenue(paper, retry=NO_WAIT), config(), tmp_path / "paper.sqlite", clock=clock, extra=lambda: {"paper": paper.state()})
    for k in range(1, 30):
        fake.set_prices(prices_at(close, k))
        clock.now = int(times[k])
        bot.step()
    held = bot.engine.book.portfolio(bot.portfolio_id)
    for asset in ASSETS:
        assert paper.balance.get(asset, Decimal(0)) == held["holdings"][asset]
    assert paper.balance["USDT"] == held["cash"]
    assert fake.orders == [] and fake.balances() == {"USDT": Decimal("10000")}
    assert all(not r.path.startswith(("/api/v3/order", "/api/v3/account")) for r in fake.requests)
    assert bot.store.host_state()["paper"]["balances"]["USDT"] == str(paper.balance["USDT"])


def test_status_table_shows_weights_targets_and_hold(fake: FakeBinance, tmp_path: Path) -> None:
    from rich.console import Console

    bot = open_bot(fake, tmp_path, Clock(1_700_000_000_000))
    bot.step()
    s = status(bot)
    assert [a["asset"] for a in s["assets"]] == ASSETS
    assert sum(a["weight_pct"] for a in s["assets"]) == pytest.approx(100, abs=0.5)
    assert s["next_check"] == "every step (threshold)"
    console = Console(record=True, width=140)
    console.print(table(s))
    text = console.export_text()
    assert "BTC" in text and "25.00 %" in text and "vs hold" in text


# ---------------------------------------------------------------- credentials


def test_credentials_from_a_private_file_and_the_environment(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(f'api_key = "{KEY}"\nsecret = "{SECRET}"\n')
    keys.chmod(0o644)
    with pytest.raises(CredentialsError, match="can be read by others") as raised:
        load_credentials("binance", keys)
    assert SECRET not in str(raised.value)
    keys.chmod(0o600)
    c = load_credentials("binance", keys)
    assert (c.api_key, c.secret) == (KEY, SECRET)
    assert KEY not in repr(c) and SECRET not in repr(c) and SECRET not in str(c)
    env = {"REBAL_BINANCE_API_KEY": KEY, "REBAL_BINANCE_API_SECRET": SECRET}
    assert load_credentials("binance", env=env).secret == SECRET
    with pytest.raises(CredentialsError, match="REBAL_KRAKEN_API_KEY"):
        load_credentials("kraken", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text(f'api_key = "{KEY}\nsecret = {SECRET}\n')
    broken.chmod(0o600)
    with pytest.raises(CredentialsError) as raised:
        load_credentials("binance", broken)
    assert SECRET not in str(raised.value) and KEY not in str(raised.value)


def test_redact_removes_keys_and_signatures() -> None:
    text = f"GET /api/v3/order?symbol=BTCUSDT&timestamp=1&signature=abcdef0123 key={KEY} {SECRET}"
    clean = redact(text, Credentials(KEY, SECRET).secrets())
    assert KEY not in clean and SECRET not in clean and "abcdef0123" not in clean
    assert "symbol=BTCUSDT" in clean


def test_secrets_never_in_logs_events_store_or_errors(fake: FakeBinance, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = Clock(1_700_000_000_000)
    bot = open_bot(fake, tmp_path, clock, venue=venue_for(fake, timeout_ms=200))
    fake.set_fault_rates({"http_5xx": 0.3, "http_429": 0.2, "timeout_after_execute": 0.1, "reject": 0.1})
    messages = []
    for _ in range(10):
        clock.now += 60_000
        try:
            bot.step()
        except VenueUnavailable as e:
            messages.append(str(e))
    fake.clear_faults()
    store_bytes = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for secret in (KEY, SECRET):
        assert secret not in caplog.text
        assert all(secret not in m for m in messages)
        assert secret.encode() not in store_bytes
    assert re.search(r"signature=(?!\*\*\*)", caplog.text) is None  # every signature redacted
    assert bot.store.counts()["events"] > 0 and bot.store.counts()["orders"] > 0  # the store was searched with content in it


def test_coins_taken_out_behind_the_bots_back_pause_it_until_covered(fake: FakeBinance, tmp_path: Path) -> None:
    clock = Clock(1_700_000_000_000)
    bot = open_bot(fake, tmp_path, clock)
    bot.step()
    eth = bot.engine.book.portfolio(bot.portfolio_id)["holdings"]["ETH"]
    fake.deposit("ETH", -eth / 2)  # the user withdrew half the ETH on the exchange's website
    bot.close()
    again = open_bot(fake, tmp_path, clock)
    assert again.engine.book.portfolio(again.portfolio_id)["active"] is False
    clock.now += 60_000
    assert again.step().sent == 0  # paused: no order that could only fail
    fake.deposit("ETH", eth / 2)
    assert again.check_account() == {}
    assert again.engine.book.portfolio(again.portfolio_id)["active"] is True


# ---------------------------------------------------------------- the review's cases


def test_a_request_still_on_its_way_is_waited_for_never_resent(fake: FakeBinance, tmp_path: Path) -> None:
    """The first order's request reaches the exchange after the client gave
    up on it (but within its recvWindow, so it executes): the bot waits out
    the window before calling it lost, in `place` and in `reconcile` alike."""
    fake.hold_ms = 350  # past the 150 ms timeout, inside the 500 ms recvWindow
    bot = open_bot(fake, tmp_path, Clock(1_700_000_000_000), timeout_ms=150)
    fake.inject("arrive_late", times=1, endpoint="POST /api/v3/order")
    bot.step()
    assert fake.sent_twice() == 0 and len(fake.orders) == 4
    assert_account_matches(fake, bot)

    # Again, but the process gives up at once (one attempt) and the next step reconciles straight away.
    clock = Clock(1_700_000_000_000)
    fresh = FakeBinance(shared("markets", "ccxt_binance_static.json"), api_key=KEY, secret=SECRET, balances={"USDT": "10000"}, prices={f"{a}/USDT": p for a, p in zip(ASSETS, ("50000", "3000", "0.5", "0.6"))}, hold_ms=350)
    with fresh:
        venue = venue_for(fresh, timeout_ms=150)
        venue.retry = Retry(attempts=1)
        bot2 = Bot.open(venue, config(), tmp_path / "second.sqlite", clock=clock)
        fresh.inject("arrive_late", times=1, endpoint="POST /api/v3/order")
        with pytest.raises(VenueUnavailable):
            bot2.step()
        clock.now += 1
        bot2.step()  # within the window: the order in doubt is left alone (the three never sent are dropped)
        assert len(bot2.engine.orders.open_rows()) == 1
        time.sleep(0.7)
        clock.now += 1
        bot2.step()  # found (it arrived and filled); the three unsent ones are dropped and re-planned
        clock.now += 1
        bot2.step()
        assert fresh.sent_twice() == 0
        assert_account_matches(fresh, bot2)


def test_one_bot_per_state_file_and_per_account(fake: FakeBinance, tmp_path: Path) -> None:
    clock = Clock(1_700_000_000_000)
    os.environ["XDG_STATE_HOME"] = str(tmp_path / "xdg")
    try:
        first = Bot.open(venue_for(fake), config(), tmp_path / "a.sqlite", clock=clock, account="binance:key-1")
        with pytest.raises(rebal.ConfigError, match="another bot is running on .*a.sqlite"):
            Bot.open(venue_for(fake), config(), tmp_path / "a.sqlite", clock=clock)
        with pytest.raises(rebal.ConfigError, match="another bot is running on this exchange account"):
            Bot.open(venue_for(fake), config(), tmp_path / "b.sqlite", clock=clock, account="binance:key-1")
        first.close()
        Bot.open(venue_for(fake), config(), tmp_path / "a.sqlite", clock=clock, account="binance:key-1").close()
    finally:
        del os.environ["XDG_STATE_HOME"]


def test_an_exit_through_an_outage_sells_once_the_exchange_is_back(fake: FakeBinance, tmp_path: Path) -> None:
    clock = Clock(1_700_000_000_000)
    bot = open_bot(fake, tmp_path, clock)
    bot.step()
    bot.terminate("sell")
    fake.set_fault_rates({"http_5xx": 1.0}, endpoint="POST /api/v3/order")  # the order endpoint is down
    for _ in range(2 * rebal.engine_state.EXIT_ATTEMPTS):
        time.sleep(RECV_WINDOW_MS / 1000 + 0.15)  # each round's orders are known lost before the next
        clock.now += 60_000
        with pytest.raises(VenueUnavailable):
            bot.step()
    exits = bot.store.db.execute("SELECT client_order_id FROM orders WHERE purpose = ?", (rebal.Purpose.EXIT,)).fetchall()
    assert len({cid.split("-")[1] for (cid,) in exits}) > rebal.engine_state.EXIT_ATTEMPTS  # rounds
    assert not bot.finished  # orders that never reached the exchange are not the exchange refusing to sell
    fake.clear_faults()
    time.sleep(RECV_WINDOW_MS / 1000 + 0.15)
    for _ in range(3):
        clock.now += 60_000
        bot.step()
    assert bot.finished
    assert fake.balances()["USDT"] > Decimal("9900")


def test_try_again_answers_are_retried_and_other_errors_do_not_stop_the_bot(fake: FakeBinance, tmp_path: Path) -> None:
    import ccxt

    venue = venue_for(fake)
    real = venue.exchange.fetch_tickers
    failures = [ccxt.OperationFailed("binance {\"code\":-1001,\"msg\":\"Internal error; unable to process your request. Please try again.\"}")]

    def flaky(*args: object, **kwargs: object) -> object:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    venue.exchange.fetch_tickers = flaky
    bot = Bot.open(venue, config(), tmp_path / "bot.sqlite", clock=Clock(1_700_000_000_000))
    assert bot.step().sent == 4  # the -1001 was retried
    failures.append(ccxt.ExchangeError("binance {\"code\":-1013,\"msg\":\"Market is closed.\"}"))
    with pytest.raises(rebal.RebalError):  # a plain VenueError / OrderRefused: `rebal run` logs it and goes on
        bot.step()
    bot.step()


def test_the_quote_of_a_state_file_cannot_change(fake: FakeBinance, tmp_path: Path) -> None:
    bot = open_bot(fake, tmp_path, Clock(1_700_000_000_000))
    bot.close()
    usdc = msgspec.structs.replace(config(), quote="USDC")
    with pytest.raises(rebal.ConfigError, match="holds a USDT portfolio, not USDC"):
        Bot.open(venue_for(fake), usdc, tmp_path / "bot.sqlite", clock=Clock(0))


def test_an_edited_config_waits_for_the_orders_and_a_refused_edit_keeps_the_old(fake: FakeBinance, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(1_700_000_000_000)
    bot = open_bot(fake, tmp_path, clock)
    bot.step()
    bot.close()
    wider = msgspec.structs.replace(config(), trigger=ThresholdTrigger(3.0))
    bot = Bot.open(venue_for(fake), wider, tmp_path / "bot.sqlite", clock=clock)
    clock.now += 60_000
    bot.step()
    assert bot.engine.configs[bot.portfolio_id].trigger == ThresholdTrigger(3.0)
    bot.close()
    dropped = msgspec.structs.replace(config(), assets={"BTC": 50, "ETH": 50})  # ADA and XRP are still held
    bot = Bot.open(venue_for(fake), dropped, tmp_path / "bot.sqlite", clock=clock)
    clock.now += 60_000
    bot.step()
    assert "the edited config is not applied" in caplog.text
    assert set(bot.engine.configs[bot.portfolio_id].assets) == set(ASSETS)


def test_ccxt_does_not_change_the_host_processs_decimal_context(fake: FakeBinance, tmp_path: Path) -> None:
    """ccxt's decimal_to_precision sets the rounding (HALF_UP) and traps of
    the context it finds; the venue gives it a copy, so the host's own
    Decimal arithmetic (and rebal's) is unchanged by a step."""
    import decimal

    before = decimal.getcontext().copy()
    bot = open_bot(fake, tmp_path, Clock(1_700_000_000_000))
    bot.step()
    after = decimal.getcontext()
    assert (after.rounding, after.prec, dict(after.traps)) == (before.rounding, before.prec, dict(before.traps))
    assert_account_matches(fake, bot)


def test_an_order_whose_trades_do_not_add_up_yet_stays_in_doubt(fake: FakeBinance, tmp_path: Path) -> None:
    """The exchange says filled but its trade list lags: the order is left
    open (logged), the others are settled, and the next step takes it."""
    clock = Clock(1_700_000_000_000)
    venue = venue_for(fake, timeout_ms=200)
    venue.retry = Retry(attempts=1)
    bot = Bot.open(venue, config(), tmp_path / "bot.sqlite", clock=clock)
    fake.inject("timeout_after_execute", times=1, endpoint="POST /api/v3/order")
    with pytest.raises(VenueUnavailable):
        bot.step()  # the first buy executed, its answer lost; the rest not sent
    real = venue.exchange.fetch_order_trades
    venue.exchange.fetch_order_trades = lambda *args, **kwargs: []  # the trades are not listed yet
    clock.now += 1
    time.sleep(RECV_WINDOW_MS / 1000 + 0.15)
    bot.step()
    assert len(bot.engine.orders.open_rows()) == 1  # in doubt; the three never sent are dropped
    venue.exchange.fetch_order_trades = real
    clock.now += 1
    bot.step()
    clock.now += 1
    bot.step()
    assert fake.sent_twice() == 0
    assert_account_matches(fake, bot)
