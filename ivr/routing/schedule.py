"""Schedules and holidays: which scheduled profiles are due at ``now``.

Everything is evaluated in the company's time zone; ``now`` must be timezone-aware.
Public holidays come from the ``holidays`` package (Sweden: public and de facto days
such as Midsummer Eve and Christmas Eve by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from ivr.routing.model import DateRange, Schedule, WeeklySlot

DAY = timedelta(days=1)


@lru_cache(maxsize=64)
def _holidays(region: str, categories: tuple[str, ...], year: int) -> Mapping[date, str]:
    """Holiday names in English whatever the process locale (logs and traces stay stable)."""
    table = holidays.country_holidays(region, years=year, categories=categories, language="en_US")
    return MappingProxyType(dict(table.items()))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Calendar:
    """The company's local time and working days."""

    timezone: str = "Europe/Stockholm"
    region: str = "SE"
    categories: tuple[str, ...] = ("public", "de_facto")

    def __post_init__(self) -> None:
        _zone(self.timezone)
        supported = holidays.list_supported_countries()
        if self.region not in supported:
            raise ValueError(f"no holiday calendar for region {self.region!r}")
        known = holidays.country_holidays(self.region).supported_categories
        for category in self.categories:
            if category not in known:
                raise ValueError(f"unknown holiday category {category!r} for {self.region}")

    @property
    def tz(self) -> ZoneInfo:
        """The company time zone."""
        return _zone(self.timezone)

    def local(self, now: datetime) -> datetime:
        """``now`` in company time (``now`` must be timezone-aware)."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        return now.astimezone(self.tz)

    def at(self, day: date, clock: time) -> datetime:
        """The aware datetime for a local day and time of day."""
        return datetime.combine(day, clock, tzinfo=self.tz)

    def holiday(self, day: date) -> str | None:
        """The holiday's name, or None for an ordinary day."""
        return _holidays(self.region, self.categories, day.year).get(day)

    def is_holiday(self, day: date) -> bool:
        """True on a public holiday."""
        return self.holiday(day) is not None

    def is_workday(self, day: date) -> bool:
        """Monday to Friday and not a holiday."""
        return day.weekday() < 5 and not self.is_holiday(day)

    def next_workday(self, after: date) -> date:
        """The first working day strictly after ``after``."""
        day = after + DAY
        while not self.is_workday(day):
            day += DAY
        return day


@dataclass(frozen=True, slots=True, kw_only=True)
class Occurrence:
    """One concrete run of a schedule, from ``start`` to ``end``."""

    schedule: Schedule
    start: datetime
    end: datetime


def _runs_on(schedule: Schedule, day: date, calendar: Calendar) -> bool:
    if schedule.holidays == "include":
        return True
    return calendar.is_holiday(day) == (schedule.holidays == "only")


def _weekly(schedule: Schedule, slot: WeeklySlot, day: date, cal: Calendar) -> Occurrence | None:
    if day.weekday() not in slot.days or not _runs_on(schedule, day, cal):
        return None
    end_day = day if slot.end > slot.start else day + DAY
    return Occurrence(
        schedule=schedule, start=cal.at(day, slot.start), end=cal.at(end_day, slot.end)
    )


def _dated(schedule: Schedule, rng: DateRange, today: date, cal: Calendar) -> Occurrence | None:
    if not rng.first <= today <= rng.last or not _runs_on(schedule, today, cal):
        return None
    if schedule.holidays == "include":
        first, after = rng.first, rng.last + DAY
    else:
        first, after = today, today + DAY
    return Occurrence(schedule=schedule, start=cal.at(first, time()), end=cal.at(after, time()))


def occurrences(schedule: Schedule, now: datetime, calendar: Calendar) -> list[Occurrence]:
    """The schedule's runs that started today or yesterday (local), due or not."""
    today = calendar.local(now).date()
    if isinstance(schedule.when, DateRange):
        found = [_dated(schedule, schedule.when, today, calendar)]
    else:
        found = [_weekly(schedule, schedule.when, d, calendar) for d in (today - DAY, today)]
    return [o for o in found if o is not None]


def due(schedules: Iterable[Schedule], now: datetime, calendar: Calendar) -> list[Occurrence]:
    """The runs in force at ``now`` (start <= now < end), earliest start first."""
    runs = [
        o
        for schedule in schedules
        for o in occurrences(schedule, now, calendar)
        if o.start <= now < o.end
    ]
    return sorted(runs, key=lambda o: o.start)


def winner(runs: Iterable[Occurrence], priorities: Mapping[str, int]) -> Occurrence | None:
    """The due run whose profile has the lowest priority number (later start breaks ties).
    Runs of profiles missing from ``priorities`` are ignored."""
    known = [o for o in runs if o.schedule.profile in priorities]
    if not known:
        return None
    return min(known, key=lambda o: (priorities[o.schedule.profile], -o.start.timestamp()))
