"""Calendar (holidays, working days) and schedule resolution."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from ivr.routing.model import DateRange, Schedule, WeeklySlot
from ivr.routing.schedule import Calendar, due, occurrences, winner

TZ = ZoneInfo("Europe/Stockholm")
CAL = Calendar(timezone="Europe/Stockholm", region="SE", categories=("public", "de_facto"))
WEEKDAYS = frozenset(range(5))
LUNCH = Schedule(
    id="lunch",
    profile="lunch",
    when=WeeklySlot(days=WEEKDAYS, start=time(11, 30), end=time(12, 15)),
    holidays="skip",
)
EVENINGS = Schedule(
    id="evenings",
    profile="gone",
    when=WeeklySlot(days=WEEKDAYS, start=time(17, 0), end=time(8, 0)),
)
HOLIDAYS = Schedule(
    id="holidays",
    profile="gone",
    when=WeeklySlot(days=frozenset(range(7)), start=time(0, 0), end=time(0, 0)),
    holidays="only",
)
SUMMER = Schedule(
    id="summer",
    profile="vacation",
    when=DateRange(first=date(2025, 7, 1), last=date(2025, 7, 31)),
)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (date(2025, 6, 20), "Midsummer Eve"),
        (date(2025, 12, 24), "Christmas Eve"),
        (date(2025, 12, 25), "Christmas Day"),
        (date(2025, 5, 1), "May Day"),
        (date(2025, 3, 12), None),
    ],
)
def test_holiday(day: date, name: str | None) -> None:
    assert CAL.holiday(day) == name


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (date(2025, 3, 12), date(2025, 3, 13)),  # Wed -> Thu
        (date(2025, 3, 14), date(2025, 3, 17)),  # Fri -> Mon
        (date(2025, 3, 15), date(2025, 3, 17)),  # Sat -> Mon
        (date(2025, 4, 17), date(2025, 4, 22)),  # Easter: Good Friday .. Easter Monday
        (date(2025, 6, 19), date(2025, 6, 23)),  # Midsummer Eve, weekend
        (date(2025, 12, 23), date(2025, 12, 29)),  # Christmas
        (date(2025, 12, 30), date(2026, 1, 2)),  # New Year's Eve, New Year's Day
    ],
)
def test_next_workday(after: date, expected: date) -> None:
    assert CAL.next_workday(after) == expected


def test_public_only_calendar_works_on_midsummer_eve() -> None:
    public = Calendar(categories=("public",))
    assert public.is_workday(date(2025, 6, 20))
    assert not CAL.is_workday(date(2025, 6, 20))


@pytest.mark.parametrize(
    "kwargs",
    [{"timezone": "Mars/Base"}, {"region": "XX"}, {"categories": ("nonsense",)}],
)
def test_calendar_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Calendar(**kwargs)  # type: ignore[arg-type]


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due([LUNCH], datetime(2025, 3, 12, 12, 0), CAL)


@pytest.mark.parametrize(
    ("schedule", "now", "is_due"),
    [
        (LUNCH, at(2025, 3, 12, 11, 29), False),
        (LUNCH, at(2025, 3, 12, 11, 30), True),
        (LUNCH, at(2025, 3, 12, 12, 14), True),
        (LUNCH, at(2025, 3, 12, 12, 15), False),
        (LUNCH, at(2025, 3, 15, 11, 45), False),  # Saturday
        (LUNCH, at(2025, 5, 1, 11, 45), False),  # May Day: skipped on holidays
        (EVENINGS, at(2025, 3, 11, 7, 0), True),  # Tue morning, from Mon 17:00
        (EVENINGS, at(2025, 3, 15, 7, 0), True),  # Sat morning, from Fri 17:00
        (EVENINGS, at(2025, 3, 17, 7, 0), False),  # Mon morning: Sunday not in days
        (EVENINGS, at(2025, 3, 12, 16, 59), False),
        (HOLIDAYS, at(2025, 12, 25, 10, 0), True),
        (HOLIDAYS, at(2025, 12, 22, 10, 0), False),
        (SUMMER, at(2025, 7, 1, 0, 0), True),
        (SUMMER, at(2025, 7, 31, 23, 59), True),
        (SUMMER, at(2025, 8, 1, 0, 0), False),
        (SUMMER, at(2025, 6, 30, 23, 59), False),
    ],
)
def test_due(schedule: Schedule, now: datetime, is_due: bool) -> None:
    assert bool(due([schedule], now, CAL)) is is_due


def test_due_in_utc_is_evaluated_in_company_time() -> None:
    now = datetime(2025, 3, 12, 10, 45, tzinfo=ZoneInfo("UTC"))  # 11:45 in Stockholm
    [run] = due([LUNCH], now, CAL)
    assert (run.start, run.end) == (at(2025, 3, 12, 11, 30), at(2025, 3, 12, 12, 15))


def test_holiday_rule_include_runs_on_holidays() -> None:
    always = Schedule(id="l", profile="lunch", when=LUNCH.when, holidays="include")
    assert due([always], at(2025, 5, 1, 11, 45), CAL)


def test_overnight_run_spans_midnight() -> None:
    [run] = due([EVENINGS], at(2025, 3, 11, 7, 0), CAL)
    assert (run.start, run.end) == (at(2025, 3, 10, 17, 0), at(2025, 3, 11, 8, 0))


def test_date_range_run_covers_whole_range() -> None:
    [run] = occurrences(SUMMER, at(2025, 7, 15, 9, 0), CAL)
    assert (run.start, run.end) == (at(2025, 7, 1, 0, 0), at(2025, 8, 1, 0, 0))


def test_date_range_skipping_holidays_runs_day_by_day() -> None:
    xmas = Schedule(
        id="x",
        profile="trip",
        when=DateRange(first=date(2025, 12, 22), last=date(2025, 12, 31)),
        holidays="skip",
    )
    assert not due([xmas], at(2025, 12, 25, 9, 0), CAL)
    [run] = due([xmas], at(2025, 12, 23, 9, 0), CAL)
    assert (run.start, run.end) == (at(2025, 12, 23, 0, 0), at(2025, 12, 24, 0, 0))


def test_dst_change_keeps_local_times() -> None:
    # 2025-03-31 is the Monday after the switch to summer time.
    [run] = due([LUNCH], at(2025, 3, 31, 11, 45), CAL)
    assert run.start.utcoffset() == at(2025, 7, 1, 0, 0).utcoffset()


@pytest.mark.parametrize(
    ("priorities", "expected"),
    [
        ({"lunch": 60, "vacation": 20}, "vacation"),
        ({"lunch": 10, "vacation": 20}, "lunch"),
        ({"lunch": 60}, "lunch"),
        ({}, None),
    ],
)
def test_winner_lowest_priority(priorities: dict[str, int], expected: str | None) -> None:
    runs = due([LUNCH, SUMMER], at(2025, 7, 2, 11, 45), CAL)
    assert len(runs) == 2
    best = winner(runs, priorities)
    assert (best.schedule.profile if best else None) == expected


def test_winner_tie_prefers_later_start() -> None:
    late = Schedule(
        id="late",
        profile="meeting",
        when=WeeklySlot(days=WEEKDAYS, start=time(11, 40), end=time(12, 0)),
    )
    runs = due([LUNCH, late], at(2025, 3, 12, 11, 45), CAL)
    assert winner(runs, {"lunch": 5, "meeting": 5}).schedule.id == "late"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: WeeklySlot(days=frozenset(), start=time(1), end=time(2)), "days"),
        (lambda: WeeklySlot(days=frozenset({7}), start=time(1), end=time(2)), "days"),
        (lambda: DateRange(first=date(2025, 2, 1), last=date(2025, 1, 1)), "first"),
        (lambda: Schedule(id="x", profile="p", when=SUMMER.when, holidays="never"), "holiday"),
        (lambda: Schedule(id="X!", profile="p", when=SUMMER.when), "id"),
    ],
)
def test_schedule_types_validate(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]
