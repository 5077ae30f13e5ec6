"""The Engine at its edges: ids never reused, a failed tick or save changes
nothing, spot-account requests asked again are the same request, refused
money does not block what follows, and the store keeps every config."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

import rebal
from rebal import Engine, Limits, Reject, Stage, Store
from rebal.config import AutoInvest, ScheduleMode

from .test_engine import BTC_UP, HOUR, P0, T0, assert_same, config, everything, fill_all, make_active, usdt_markets

D = Decimal


class Ledger:
    """Spot accounts that answer a repeated (portfolio, transfer) as before, as the protocol asks."""

    def __init__(self, balances: dict[int, Decimal]) -> None:
        self.balances = dict(balances)
        self.answers: dict[tuple[int, int], bool] = {}
        self.calls: list[tuple[list[int], list[int]]] = []
        self.fail_next = False

    def withdraw(self, portfolio_ids: npt.NDArray[np.uint64], transfers: npt.NDArray[np.int64], amounts: npt.NDArray[np.str_]) -> npt.NDArray[np.bool_]:
        self.calls.append((portfolio_ids.tolist(), transfers.tolist()))
        if self.fail_next:
            self.fail_next = False
            raise TimeoutError("spot ledger timed out")
        out = []
        for pid, transfer, amount in zip(portfolio_ids.tolist(), transfers.tolist(), amounts.tolist()):
            if (pid, transfer) not in self.answers:
                ok = self.balances.get(pid, D(0)) >= D(str(amount))
                if ok:
                    self.balances[pid] -= D(str(amount))
                self.answers[(pid, transfer)] = ok
            out.append(self.answers[(pid, transfer)])
        return np.array(out, bool)


HOURLY = AutoInvest(amount=D("100"), mode=ScheduleMode(every="1h"))


def test_ids_are_never_reused_after_remove_and_compaction() -> None:
    engine = Engine(usdt_markets())
    ids = engine.create_many([config(), config(), config()], T0)
    engine.terminate(ids[1:], T0)  # never funded: terminated at once
    engine.remove(ids[1:])
    engine.book.compact()
    again = engine.create(config(), T0)
    assert again == int(ids[-1]) + 1
    assert engine.state.length == len(engine.book.ids)  # the Engine's columns follow the Book's slots


def test_engines_with_disjoint_first_ids_never_share_client_ids() -> None:
    usdt, other = Engine(usdt_markets()), Engine(usdt_markets(), first_id=1_000_000)
    a, b = usdt.create(config(), T0), other.create(config(), T0)
    for engine, pid in ((usdt, a), (other, b)):
        engine.fund(pid, T0)
    one, two = usdt.on_tick(T0, P0), other.on_tick(T0, P0)
    assert not set(one.client_order_id.tolist()) & set(two.client_order_id.tolist())
    assert b == 1_000_000


def test_a_host_chosen_id_is_kept_and_a_taken_one_refused() -> None:
    engine = Engine(usdt_markets())
    assert engine.create(config(), T0, id=4242) == 4242
    with pytest.raises(rebal.ConfigError) as e:
        engine.create(config(), T0, id=4242)
    assert e.value.field == "id"
    assert engine.create(config(), T0) == 4243


def test_a_tick_refused_for_a_missing_price_changes_nothing() -> None:
    """A funding portfolio needs SOL's price; without it the tick is refused
    before any policy runs, and the next good tick buys as usual."""
    engine = Engine(usdt_markets())
    pid = engine.create(config(), T0)
    engine.fund(pid, T0)
    engine.events()
    before = everything(engine)
    with pytest.raises(rebal.PriceError) as e:
        engine.on_tick(T0, np.array([50_000.0, 2_500.0, np.nan]))
    assert e.value.field == "prices[SOL]"
    assert_same(before, everything(engine))
    batch = engine.on_tick(T0 + 1, P0)
    assert set(batch.purpose.tolist()) == {rebal.Purpose.INVEST} and len(batch) == 3


def test_a_spot_call_that_raises_is_asked_again_with_the_same_transfer() -> None:
    ledger = Ledger({0: D("5000")})
    engine, pid = make_active(funds=ledger, auto_invest=HOURLY)
    ledger.fail_next = True
    before = everything(engine)
    with pytest.raises(TimeoutError):
        engine.on_tick(T0 + HOUR, P0)
    state_after = everything(engine)["state"]
    for name in ("dca_next_ms", "dca_cycles", "transfers", "pending_invest", "net_invested"):
        np.testing.assert_array_equal(state_after[name], before["state"][name], err_msg=name)
    batch = engine.on_tick(T0 + HOUR, P0)
    assert set(batch.purpose.tolist()) == {rebal.Purpose.INVEST}
    assert ledger.calls[-2:] == [([pid], [1]), ([pid], [1])]  # the same request, answered once
    assert ledger.balances[pid] == D("3900")  # 1000 invested, one cycle of 100


def test_fund_refuses_duplicates_and_funds_the_granted() -> None:
    ledger = Ledger({0: D("1000"), 1: D("500")})
    engine = Engine(usdt_markets(), funds=ledger)
    a, b = engine.create_many([config(), config()], T0).tolist()
    with pytest.raises(rebal.ConfigError):
        engine.fund([a, a], T0)
    assert ledger.calls == []
    with pytest.raises(rebal.InsufficientFunds) as e:
        engine.fund([a, b], T0)
    assert e.value.value == [b]
    assert (engine.stage(a), engine.stage(b)) == (Stage.FUNDING, Stage.CREATED)
    assert engine.book.portfolio(a)["cash"] == 1000 and engine.book.portfolio(b)["cash"] == 0
    ledger.balances[b] += D("500")  # the user tops up: a new request, not the refused one again
    engine.fund(b, T0)
    assert engine.stage(b) == Stage.FUNDING and ledger.calls[-1] == ([b], [1])


def test_a_refused_auto_invest_does_not_block_later_cycles() -> None:
    ledger = Ledger({0: D("1000")})
    engine, pid = make_active(funds=ledger, auto_invest=HOURLY)
    engine.on_tick(T0 + HOUR, P0)
    assert [e.reason for e in engine.events().records() if e.kind == "auto_invest_stopped"] == ["insufficient_balance"]
    ledger.balances[pid] = D("1000")
    engine.modify(pid, config(auto_invest=AutoInvest(amount=D("200"), mode=ScheduleMode(every="1h"))), T0 + HOUR)
    batch = engine.on_tick(T0 + 2 * HOUR + 1, P0)
    assert set(batch.purpose.tolist()) == {rebal.Purpose.INVEST}
    assert ledger.calls[-1] == ([pid], [2]) and ledger.balances[pid] == D("800")


def test_a_config_with_an_amount_finer_than_an_atom_changes_nothing() -> None:
    engine, pid = make_active()
    bad = config(auto_invest=AutoInvest(amount=D("1.0000000000000000001"), mode=ScheduleMode(every="1h")))
    before = everything(engine)
    with pytest.raises(rebal.ConfigError) as e:
        engine.create_many([config(), bad], T0)
    assert e.value.field == "configs[1].auto_invest.amount"
    with pytest.raises(rebal.ConfigError):
        engine.modify(pid, bad, T0)
    assert_same(before, everything(engine))


def test_a_rejected_funding_round_is_bought_again_at_the_next_tick() -> None:
    engine = Engine(usdt_markets())
    pid = engine.create(config(), T0)
    engine.fund(pid, T0)
    batch = engine.on_tick(T0, P0)
    engine.on_rejects([Reject(c.decode()) for c in batch.client_order_id])
    assert engine.stage(pid) == Stage.FUNDING  # not active: its money is not in yet
    again = engine.on_tick(T0 + 1, P0)
    assert len(again) == 3 and set(again.purpose.tolist()) == {rebal.Purpose.INVEST}
    fill_all(engine, again)
    assert engine.stage(pid) == Stage.ACTIVE


def test_accounting_after_termination_is_the_value_it_ended_with() -> None:
    engine, pid = make_active()
    doubled = P0 * 2
    engine.terminate(pid, T0 + HOUR, exit="return")
    engine.on_tick(T0 + HOUR, doubled)
    ended = [e for e in engine.events().records() if e.kind == "terminated"][0]
    report = engine.accounting([pid])
    assert engine.stage(pid) == Stage.TERMINATED
    assert report["value"][0] == pytest.approx(ended.value) and ended.value == pytest.approx(2 * 1000, rel=0.01)
    assert report["profit_pct"][0] == pytest.approx(100, abs=1.0)
    assert report["hold_value"][0] == pytest.approx(report["value"][0])
    engine.on_tick(T0 + 2 * HOUR, P0)  # later prices do not change what it ended with
    assert engine.accounting([pid])["value"][0] == report["value"][0]


def test_store_keeps_modified_and_removed_configs_under_the_hosts_limits(tmp_path: Path) -> None:
    limits = Limits(max_investment=D("1000000"))
    engine = Engine(usdt_markets(), limits=limits)
    big, gone = engine.create_many([config(investment=D("500000")), config()], T0).tolist()
    store = Store(tmp_path / "rebal.sqlite")
    store.save(engine, step=0, phase="done")
    engine.modify(big, config(investment=D("500000"), assets={"BTC": 70, "ETH": 20, "SOL": 10}, take_profit=20), T0)
    engine.terminate(gone, T0)
    engine.remove(gone)
    store.save(engine, step=1, phase="done")
    loaded = Store(tmp_path / "rebal.sqlite").load(usdt_markets(), limits=limits)
    assert loaded.configs == engine.configs and set(loaded.configs) == {big}
    assert loaded.snapshot() == engine.snapshot()


def test_a_failed_save_writes_its_orders_with_the_next_one(tmp_path: Path) -> None:
    engine = Engine(usdt_markets())
    pid = engine.create(config(), T0)
    engine.fund(pid, T0)
    batch = engine.on_tick(T0, P0)
    path = tmp_path / "rebal.sqlite"
    store = Store(path)
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    store.db.execute("PRAGMA busy_timeout = 0")
    with pytest.raises(sqlite3.OperationalError):
        store.save(engine, step=0, phase="sent")
    blocker.execute("ROLLBACK")
    store.save(engine, step=0, phase="sent")
    saved = {cid for (cid,) in sqlite3.connect(path).execute("SELECT client_order_id FROM orders")}
    assert saved == {c.decode() for c in batch.client_order_id}


def test_restore_under_wider_limits_takes_wider_portfolios() -> None:
    engine = Engine(usdt_markets(), limits=Limits(max_assets=3))
    engine.create(config(), T0)
    wider = Engine.restore(engine.snapshot(), usdt_markets(), engine.configs, limits=Limits(max_assets=5))
    assert wider.state["hold_asset"].shape[1] == 5
    pid = wider.create(config(), T0)
    assert wider.stage(pid) == Stage.CREATED


def test_events_of_fills_and_rejects_carry_the_time_given() -> None:
    engine, pid = make_active()
    batch = engine.on_tick(T0 + HOUR, BTC_UP)
    engine.on_fills([], T0 + HOUR + 5)
    engine.on_rejects([Reject(c.decode()) for c in batch.client_order_id], T0 + HOUR + 7)
    times = {e.kind: e.time_ms for e in engine.events().records()}
    assert times["order_rejected"] == T0 + HOUR + 7


def test_an_exit_the_venue_keeps_refusing_returns_the_coins_in_kind() -> None:
    engine, pid = make_active()
    engine.terminate(pid, T0, exit="sell")
    for k in range(3):
        batch = engine.on_tick(T0 + k + 1, P0)
        assert len(batch) == 3 and set(batch.purpose.tolist()) == {rebal.Purpose.EXIT}
        engine.on_rejects([Reject(c.decode()) for c in batch.client_order_id])
    held = engine.book.portfolio(pid)["holdings"]
    batch = engine.on_tick(T0 + 10, P0)
    assert len(batch) == 0 and engine.stage(pid) == Stage.TERMINATED
    back = {e.asset: (e.amount, e.reason) for e in engine.events().records() if e.kind == "asset_returned"}
    assert {a: back[a] for a in held} == {a: (q, "sell_refused") for a, q in held.items()}


def test_full_fills_in_columns_equal_the_same_fills_as_structs() -> None:
    """The columnar path of simulated venues gives the same exact state as Fill structs."""
    results = []
    for columns in (False, True):
        engine = Engine(usdt_markets())
        ids = engine.create_many([config(), config(investment=D("777.77"))], T0)
        engine.fund(ids, T0)
        for k, prices in enumerate((P0, BTC_UP)):
            batch = engine.on_tick(T0 + k * HOUR, prices)
            if columns:
                engine.on_full_fills(batch)
            else:
                fills = []
                for cid, amount, price in zip(batch.client_order_id, batch.amounts(), batch.price):
                    a, p = D(str(amount)), D(repr(float(price)))
                    fills.append(rebal.Fill(cid.decode(), a, p, fee=(a * p * D("0.001")), cost=a * p))
                engine.on_fills(fills)
        results.append((engine.book.columns(), engine.book.holding_columns(), engine.accounting()))
    (book_a, rows_a, acct_a), (book_b, rows_b, acct_b) = results
    np.testing.assert_array_equal(book_a["cash"], book_b["cash"])
    np.testing.assert_array_equal(rows_a["amount"], rows_b["amount"])
    np.testing.assert_allclose(acct_a["fees_paid"], acct_b["fees_paid"], rtol=1e-12)


def test_full_fills_follow_portfolios_the_book_moved_after_the_tick() -> None:
    """The Book compacts between a tick and its fills (slots move): the fills
    find the portfolios by id and give what they give without the move."""
    results = []
    for compact in (False, True):
        engine = Engine(usdt_markets())
        gone, kept = engine.create_many([config(), config(investment=D("777.77"))], T0).tolist()
        engine.fund([gone, kept], T0)
        engine.on_full_fills(engine.on_tick(T0, P0))
        engine.terminate(gone, T0 + 1, exit="return")
        batch = engine.on_tick(T0 + HOUR, BTC_UP)  # gone is returned in kind, kept rebalances
        assert engine.stage(gone) == Stage.TERMINATED and set(batch.portfolio_id.tolist()) == {kept}
        if compact:
            engine.remove(gone)
            engine.book.compact()
            assert engine.book.slot(kept) == 0 != int(batch.portfolio[0])
        engine.on_full_fills(batch)
        assert not engine.book.column("locked")[engine.book.slot(kept)]
        results.append(repr((engine.book.portfolio(kept), engine.accounting([kept]))))  # repr: NaN is NaN
    assert results[0] == results[1]


def test_full_fills_of_the_last_batch_refuse_it_once_one_order_was_rejected() -> None:
    """The Engine knows its last batch without comparing it with the order
    table; a reject in between still makes its full fills refused whole."""
    engine, pid = make_active()
    batch = engine.on_tick(T0 + HOUR, BTC_UP)
    assert len(batch) >= 2
    engine.on_rejects([Reject(batch.client_order_id[-1].decode())])
    before = everything(engine)
    with pytest.raises(rebal.FillError):
        engine.on_full_fills(batch)
    assert_same(before, everything(engine))


def test_full_fills_refuse_a_batch_that_is_not_the_last() -> None:
    engine, pid = make_active()
    old = engine.on_tick(T0 + HOUR, BTC_UP)
    engine.on_full_fills(old)
    before = everything(engine)
    with pytest.raises(rebal.FillError):
        engine.on_full_fills(old)  # already filled: not open any more
    assert_same(before, everything(engine))
