"""Auto-invest schedules: columns, and next_run against a per-row datetime reference."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rebal.config import ScheduleMode
from rebal.exceptions import ConfigError
from rebal.policies.schedule import (
    NEVER,
    SCHEDULE_EVERY,
    SCHEDULE_MONTHLY,
    SCHEDULE_NONE,
    SCHEDULE_WEEKLY,
    next_run,
    schedule_columns,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def ms(moment: datetime) -> int:
    return (moment - EPOCH) // MS


def at(text: str) -> int:
    return ms(datetime.fromisoformat(text).replace(tzinfo=UTC))


# ------------------------------------------------------------ the reference, one row at a time


def reference(kind: int, every_ms: int, weekday: int, day: int, minute: int, after_ms: int, anchor_ms: int) -> int:
    if kind == SCHEDULE_NONE:
        return int(NEVER)
    if kind == SCHEDULE_EVERY:
        k = 1
        if anchor_ms + every_ms <= after_ms:
            k = (after_ms - anchor_ms) // every_ms + 1  # Python ints: exact, floor for negatives
        return anchor_ms + k * every_ms
    after = EPOCH + after_ms * MS
    hour, minutes = divmod(minute, 60)
    if kind == SCHEDULE_WEEKLY:
        candidate = after.replace(hour=hour, minute=minutes, second=0, microsecond=0)
        while candidate.weekday() != weekday or candidate <= after:
            candidate += timedelta(days=1)
        return ms(candidate)
    assert kind == SCHEDULE_MONTHLY
    year, month = after.year, after.month
    while True:
        last = calendar.monthrange(year, month)[1]
        candidate = datetime(year, month, min(day, last), hour, minutes, tzinfo=UTC)
        if candidate > after:
            return ms(candidate)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def check_every_properties(run: int, every_ms: int, after_ms: int, anchor_ms: int) -> None:
    assert run > after_ms
    assert (run - anchor_ms) % every_ms == 0 and run - anchor_ms >= every_ms
    assert run - every_ms <= after_ms or run - every_ms == anchor_ms  # the first such time


# ------------------------------------------------------------ strategies

START, END = date(1970, 1, 1), date(2099, 12, 31)
SPECIAL_DAYS = [
    date(1972, 2, 29), date(2000, 2, 29), date(2024, 2, 29), date(2023, 2, 28), date(2099, 2, 28),
    date(1999, 12, 31), date(2024, 1, 31), date(2024, 4, 30), date(2023, 3, 31), date(2024, 3, 1),
    date(1970, 1, 1), date(2099, 12, 31), date(2038, 1, 19),
]  # fmt: skip
days = st.one_of(st.dates(START, END), st.sampled_from(SPECIAL_DAYS))
minutes = st.one_of(st.integers(0, 1439), st.sampled_from([0, 1, 570, 1438, 1439]))
month_days = st.one_of(st.integers(1, 31), st.sampled_from([28, 29, 30, 31]))
offsets = st.one_of(st.sampled_from([-1, 0, 1]), st.integers(-2 * DAY_MS, 2 * DAY_MS))


def midnight_ms(d: date) -> int:
    return ms(datetime(d.year, d.month, d.day, tzinfo=UTC))


@st.composite
def rows(draw: st.DrawFn) -> tuple[int, int, int, int, int, int, int]:
    """(kind, every_ms, weekday, day, minute, after_ms, anchor_ms); `after` is
    often exactly at, just before or just after a run time."""
    kind = draw(st.sampled_from([SCHEDULE_NONE, SCHEDULE_EVERY, SCHEDULE_WEEKLY, SCHEDULE_MONTHLY]))
    weekday = draw(st.integers(0, 6))
    day = draw(month_days)
    minute = draw(minutes)
    anchor = midnight_ms(draw(days)) + draw(st.integers(0, DAY_MS - 1))
    every = draw(st.one_of(st.integers(1, 24 * 60), st.sampled_from([1, 24, 168, 730])).map(lambda h: h * HOUR_MS))
    around = draw(st.sampled_from(["random", "run", "anchor-run"]))
    if around == "random":
        after = draw(st.integers(midnight_ms(START), midnight_ms(END) + DAY_MS - 1))
    elif around == "run":  # a weekly / monthly run time, or a day's HH:MM
        d = draw(days)
        if kind == SCHEDULE_MONTHLY:
            d = d.replace(day=min(day, calendar.monthrange(d.year, d.month)[1]))
        after = midnight_ms(d) + minute * 60_000 + draw(offsets)
    else:  # an "every" run time
        after = anchor + draw(st.integers(-3, 2000)) * every + draw(offsets)
    return kind, every, weekday, day, minute, after, anchor


@given(st.lists(rows(), min_size=1, max_size=40))
@example([(SCHEDULE_MONTHLY, 0, 0, 31, 570, at("2024-02-10T00:00"), 0)])
@example([(SCHEDULE_MONTHLY, 0, 0, 30, 0, at("2024-02-29T00:00"), 0)])
@example([(SCHEDULE_WEEKLY, 0, 3, 0, 0, 0, 0)])
def test_next_run_matches_the_reference(table: list[tuple[int, int, int, int, int, int, int]]) -> None:
    columns = np.array(table, dtype=np.int64).T
    got = next_run(*columns)
    assert got.dtype == np.int64 and got.shape == (len(table),)
    for row, run in zip(table, got.tolist(), strict=True):
        assert run == reference(*row), row
        kind, every, _, _, _, after, anchor = row
        if kind == SCHEDULE_EVERY:
            check_every_properties(run, every, after, anchor)
        if kind != SCHEDULE_NONE:
            assert run > after


@given(st.lists(rows(), min_size=1, max_size=10), st.integers(-2 * 10**12, 0))
def test_before_1970_too(table: list[tuple[int, int, int, int, int, int, int]], shift: int) -> None:
    """Negative epoch times: floors, not truncation, everywhere."""
    shifted = [(k, e, w, d, m, after + shift, anchor + shift) for k, e, w, d, m, after, anchor in table]
    got = next_run(*np.array(shifted, dtype=np.int64).T)
    assert got.tolist() == [reference(*row) for row in shifted]


@given(rows())
def test_scalars_broadcast(row: tuple[int, int, int, int, int, int, int]) -> None:
    kind, every, weekday, day, minute, after, anchor = row
    one = next_run(kind, every, weekday, day, minute, after, anchor)
    assert one.shape == () and int(one) == reference(*row)
    afters = np.array([after, after + 1, after - DAY_MS], dtype=np.int64)
    many = next_run(kind, every, weekday, day, minute, afters, anchor)
    assert many.tolist() == [reference(kind, every, weekday, day, minute, int(a), anchor) for a in afters]


# ------------------------------------------------------------ cases by hand


@pytest.mark.parametrize(
    ("day", "after", "wanted"),
    [
        (31, "2024-02-10T00:00", "2024-02-29T09:30"),  # leap February: its last day
        (31, "2023-02-10T00:00", "2023-02-28T09:30"),
        (29, "2023-02-28T09:30", "2023-03-29T09:30"),  # exactly at the run: the next one
        (29, "2023-02-28T09:29:59.999", "2023-02-28T09:30"),
        (31, "2024-04-30T09:30", "2024-05-31T09:30"),
        (31, "2023-12-31T09:30", "2024-01-31T09:30"),  # over the year end
        (1, "2099-12-01T09:30:00.001", "2100-01-01T09:30"),
        (30, "2100-02-01T00:00", "2100-02-28T09:30"),  # 2100 is no leap year
        (15, "1970-01-01T00:00", "1970-01-15T09:30"),
    ],
)
def test_monthly_by_hand(day: int, after: str, wanted: str) -> None:
    cols = schedule_columns([ScheduleMode(monthly=day, at="09:30")])
    assert next_run(**cols, after_ms=at(after), anchor_ms=0).tolist() == [at(wanted)]


@pytest.mark.parametrize(
    ("weekly", "after", "wanted"),
    [
        ("mon", "2024-01-01T08:00", "2024-01-01T09:30"),  # a Monday, before the time
        ("mon", "2024-01-01T09:30", "2024-01-08T09:30"),  # exactly at it
        ("sun", "2024-01-01T09:30", "2024-01-07T09:30"),
        ("thu", "1970-01-01T00:00", "1970-01-01T09:30"),
        ("wed", "2024-02-28T23:59", "2024-03-06T09:30"),
    ],
)
def test_weekly_by_hand(weekly: str, after: str, wanted: str) -> None:
    cols = schedule_columns([ScheduleMode(weekly=weekly, at="09:30")])  # type: ignore[arg-type]
    assert next_run(**cols, after_ms=at(after), anchor_ms=0).tolist() == [at(wanted)]


def test_every_keeps_the_anchor_phase() -> None:
    cols = schedule_columns([ScheduleMode(every="6h")])
    anchor = at("2024-01-01T01:15")

    def run(after: str) -> list[int]:
        result: list[int] = next_run(**cols, after_ms=at(after), anchor_ms=anchor).tolist()
        return result

    assert run("2024-01-01T01:15") == [at("2024-01-01T07:15")]
    assert run("2024-01-01T07:14:59.999") == [at("2024-01-01T07:15")]
    assert run("2024-01-01T07:15") == [at("2024-01-01T13:15")]
    assert run("2023-06-01T00:00") == [at("2024-01-01T07:15")]  # before the anchor: its first run
    assert run("2024-03-10T20:00") == [at("2024-03-11T01:15")]


def test_none_never_runs() -> None:
    cols = schedule_columns([None, None])
    assert next_run(**cols, after_ms=[0, 10**15], anchor_ms=0).tolist() == [NEVER, NEVER]


def test_mixed_kinds_in_one_call() -> None:
    modes: list[ScheduleMode | None] = [
        ScheduleMode(every="1h"),
        None,
        ScheduleMode(weekly="fri", at="16:00"),
        ScheduleMode(monthly=31, at="00:00"),
    ]
    got = next_run(**schedule_columns(modes), after_ms=at("2024-04-30T12:00"), anchor_ms=0)
    assert got.tolist() == [at("2024-04-30T13:00"), NEVER, at("2024-05-03T16:00"), at("2024-05-31T00:00")]


# ------------------------------------------------------------ columns


def test_schedule_columns() -> None:
    cols = schedule_columns(
        [
            ScheduleMode(every="1d2h"),
            ScheduleMode(weekly="sun", at="23:59"),
            None,
            ScheduleMode(monthly=31, at="09:30"),
            ScheduleMode(weekly="mon"),
        ]
    )
    assert set(cols) == {"kind", "every_ms", "weekday", "day", "minute"}
    assert cols["kind"].dtype == np.uint8 and cols["kind"].tolist() == [1, 2, 0, 3, 2]
    assert cols["every_ms"].dtype == np.int64 and cols["every_ms"].tolist() == [26 * HOUR_MS, 0, 0, 0, 0]
    assert cols["weekday"].dtype == np.int8 and cols["weekday"].tolist() == [0, 6, 0, 0, 0]
    assert cols["day"].dtype == np.int8 and cols["day"].tolist() == [0, 0, 0, 31, 0]
    assert cols["minute"].dtype == np.int16 and cols["minute"].tolist() == [0, 1439, 0, 570, 0]
    empty = schedule_columns([])
    assert all(len(column) == 0 for column in empty.values())


@pytest.mark.parametrize(
    ("mode", "field"),
    [
        (ScheduleMode(every="90m"), "modes[1].every"),
        (ScheduleMode(), "modes[1]"),
        (ScheduleMode(weekly="mon", monthly=3), "modes[1]"),
        (ScheduleMode(monthly=32), "modes[1].monthly"),
        (ScheduleMode(weekly="mon", at="25:00"), "modes[1].at"),
    ],
)
def test_schedule_columns_checks_each_mode(mode: ScheduleMode, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        schedule_columns([None, mode])
    assert info.value.field == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": 4}, "kind[0]"),
        ({"kind": SCHEDULE_EVERY, "every_ms": 0}, "every_ms[0]"),
        ({"kind": SCHEDULE_WEEKLY, "weekday": 7}, "weekday[0]"),
        ({"kind": SCHEDULE_MONTHLY, "day": 0}, "day[0]"),
        ({"kind": SCHEDULE_MONTHLY, "day": 1, "minute": 1440}, "minute[0]"),
    ],
)
def test_next_run_checks_columns(changes: dict[str, int], field: str) -> None:
    args = {"kind": 0, "every_ms": 0, "weekday": 0, "day": 0, "minute": 0, "after_ms": 0, "anchor_ms": 0, **changes}
    with pytest.raises(ConfigError) as info:
        next_run(**args)
    assert info.value.field == field
