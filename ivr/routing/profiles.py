"""Which profile is active, and the commands that change it.

Resolution: forced > manual (a stack; the top entry still in force wins, expired ones
fall away) > scheduled (lowest priority number) > standard (profile number 1).
Every command is a pure function ``UserState -> UserState``; ``now`` is passed in
and must be timezone-aware. ``UserState.version`` is left alone: the store bumps it
when it saves the new state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time

from ivr.routing.model import Profile, Schedule
from ivr.routing.numbers import NumberPlan
from ivr.routing.schedule import DAY, Calendar, due, winner
from ivr.routing.state import Activation, Source, UserState, Via


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """The company's routing rules: profiles, calendar, numbering and operator."""

    profiles: tuple[Profile, ...]
    calendar: Calendar = field(default_factory=Calendar)
    numbers: NumberPlan = field(default_factory=NumberPlan)
    operator: str | None = None
    _by_id: dict[str, Profile] = field(init=False, repr=False, compare=False)
    _by_number: dict[int, Profile] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {p.id: p for p in self.profiles}
        by_number = {p.number: p for p in self.profiles}
        if len(by_id) != len(self.profiles) or len(by_number) != len(self.profiles):
            raise ValueError("profile ids and numbers must be unique")
        if 1 not in by_number:
            raise ValueError("profile number 1 (the standard profile) is missing")
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_by_number", by_number)

    def get(self, key: str | int) -> Profile | None:
        """A profile by id (``"lunch"``) or number (``2``)."""
        return self._by_number.get(key) if isinstance(key, int) else self._by_id.get(key)

    def profile(self, key: str | int) -> Profile:
        """A profile by id or number; ``KeyError`` when there is none."""
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    @property
    def standard(self) -> Profile:
        """The standard profile (number 1, Tillgänglig)."""
        return self._by_number[1]

    @property
    def dnd(self) -> Profile | None:
        """The do-not-disturb profile (the first with presence ``dnd``)."""
        return next((p for p in sorted(self.profiles, key=_num) if p.presence == "dnd"), None)

    def priorities(self) -> dict[str, int]:
        """Profile id → priority, for schedule resolution."""
        return {p.id: p.priority for p in self.profiles}


def _num(profile: Profile) -> int:
    return profile.number


@dataclass(frozen=True, slots=True, kw_only=True)
class Effective:
    """The profile in force for a user, and why."""

    profile: Profile
    source: Source
    until: datetime | None = None
    set_by: str | None = None
    set_via: Via | None = None
    set_at: datetime | None = None

    def describe(self, now: datetime, calendar: Calendar, language: str = "en") -> str:
        """``Lunch (manual, set by 1001 via phone at 11:58, until 13:00)``; times on
        another day than ``now`` carry their date."""
        parts: list[str] = [self.source]
        if self.source == "scheduled":
            parts.append(f"schedule {self.set_by}")
        elif self.set_by is not None and self.set_via is not None:
            parts.append(f"set by {self.set_by} via {self.set_via}")
        if self.set_at is not None:
            parts[-1] += f" {'from' if self.source == 'scheduled' else 'at'} "
            parts[-1] += when_text(self.set_at, now, calendar)
        if self.until is not None:
            parts.append(f"until {when_text(self.until, now, calendar)}")
        return f"{self.profile.label(language)} ({', '.join(parts)})"


def when_text(moment: datetime, now: datetime, calendar: Calendar) -> str:
    """``HH:MM`` on the same local day as ``now``, else ``YYYY-MM-DD HH:MM``."""
    local = calendar.local(moment)
    same_day = calendar.local(now).date() == local.date()
    return local.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M")


def _alive(entry: Activation, now: datetime) -> bool:
    return entry.until is None or entry.until > now


def _prune(stack: Iterable[Activation], now: datetime) -> tuple[Activation, ...]:
    """Keep only entries that can still come into force: not expired, and outliving
    every entry above them (an entry below one without end can never return)."""
    kept: list[Activation] = []
    horizon: datetime | None = now
    for entry in reversed(tuple(stack)):
        if horizon is None:
            break
        if entry.until is None or entry.until > horizon:
            kept.append(entry)
            horizon = entry.until
    return tuple(reversed(kept))


def expire(state: UserState, now: datetime) -> UserState:
    """Drop expired manual entries and an expired forced one (same object if none)."""
    manual = _prune(state.manual, now)
    forced = state.forced if state.forced is None or _alive(state.forced, now) else None
    if manual == state.manual and forced is state.forced:
        return state
    return replace(state, manual=manual, forced=forced)


def effective(
    state: UserState, schedules: Iterable[Schedule], now: datetime, rules: Rules
) -> Effective:
    """The profile in force at ``now``: forced > manual > scheduled > standard.
    Entries naming a profile that no longer exists are skipped."""
    forced = (state.forced,) if state.forced is not None else ()
    for entry in (*forced, *reversed(state.manual)):
        profile = rules.get(entry.profile)
        if profile is not None and _alive(entry, now):
            return Effective(
                profile=profile,
                source=entry.source,
                until=entry.until,
                set_by=entry.set_by,
                set_via=entry.set_via,
                set_at=entry.set_at,
            )
    run = winner(due(schedules, now, rules.calendar), rules.priorities())
    if run is not None:
        return Effective(
            profile=rules.profile(run.schedule.profile),
            source="scheduled",
            until=run.end,
            set_by=run.schedule.id,
            set_via="schedule",
            set_at=run.start,
        )
    return Effective(profile=rules.standard, source="standard")


def _check(now: datetime, until: datetime | None) -> None:
    if now.tzinfo is None or (until is not None and until.tzinfo is None):
        raise ValueError("now and until must be timezone-aware")
    if until is not None and until <= now:
        raise ValueError("until must be in the future")


def activate(
    state: UserState,
    profile: Profile,
    until: datetime | None,
    by: str,
    via: Via,
    now: datetime,
) -> UserState:
    """Push a manual activation; when it ends the user returns to what was before."""
    _check(now, until)
    entry = Activation(
        profile=profile.id, source="manual", set_by=by, set_via=via, set_at=now, until=until
    )
    return replace(state, manual=_prune((*state.manual, entry), now))


def force(
    state: UserState,
    profile: Profile,
    by: str,
    via: Via,
    now: datetime,
    until: datetime | None = None,
) -> UserState:
    """Force a profile over everything (admin) until cleared or ``until``."""
    _check(now, until)
    entry = Activation(
        profile=profile.id, source="forced", set_by=by, set_via=via, set_at=now, until=until
    )
    return replace(state, forced=entry)


def clear_forced(state: UserState) -> UserState:
    """Lift a forced profile; manual, scheduled or standard take over again."""
    return replace(state, forced=None)


def back_to_standard(
    state: UserState,
    *,
    rules: Rules,
    by: str,
    via: Via,
    now: datetime,
    schedules: Iterable[Schedule] = (),
) -> UserState:
    """``#23#``: clear manual and forced. If a schedule is running right now the user
    still gets the standard profile, until that run ends."""
    cleared = replace(state, manual=(), forced=None)
    run = winner(due(schedules, now, rules.calendar), rules.priorities())
    if run is None or run.schedule.profile == rules.standard.id:
        return cleared
    return activate(cleared, rules.standard, run.end, by, via, now)


def set_dnd(
    state: UserState,
    on: bool | None,
    *,
    rules: Rules,
    by: str,
    via: Via,
    now: datetime,
    schedules: Iterable[Schedule] = (),
) -> UserState:
    """``*78``/``*79``/``*76``: Stör ej on, off, or toggled (``on=None``)."""
    dnd = rules.dnd
    if dnd is None:
        raise ValueError("no profile has presence 'dnd'")
    if on is None:
        on = effective(state, schedules, now, rules).profile.id != dnd.id
    if on:
        return activate(state, dnd, None, by, via, now)
    manual = tuple(e for e in state.manual if e.profile != dnd.id)
    return replace(state, manual=_prune(manual, now))


@dataclass(frozen=True, slots=True, kw_only=True)
class DefaultReturn:
    """No time given: the profile's own return (next working day for Gått för dagen)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AtTime:
    """Back at HH:MM today, or tomorrow if that has passed."""

    hour: int
    minute: int

    def __post_init__(self) -> None:
        if not (0 <= self.hour <= 23 and 0 <= self.minute <= 59):
            raise ValueError("hour must be 0-23 and minute 0-59")


@dataclass(frozen=True, slots=True, kw_only=True)
class OnDate:
    """Back on month/day (this year, or next year if that has passed)."""

    month: int
    day: int

    def __post_init__(self) -> None:
        try:
            date(2000, self.month, self.day)
        except ValueError as exc:
            raise ValueError(f"no such date {self.month:02}-{self.day:02}") from exc


UntilSpec = DefaultReturn | AtTime | OnDate


def at_time(now: datetime, hour: int, minute: int, calendar: Calendar) -> datetime:
    """Today at HH:MM local time, or tomorrow if it is not later than ``now``."""
    today = calendar.local(now).date()
    moment = calendar.at(today, time(hour, minute))
    return moment if moment > now else calendar.at(today + DAY, time(hour, minute))


def on_date(now: datetime, month: int, day: int, at: time, calendar: Calendar) -> datetime:
    """The next month/day (at ``at`` local time) later than ``now``; 29 February waits
    for a leap year."""
    year = calendar.local(now).year
    for candidate in range(year, year + 9):
        try:
            moment = calendar.at(date(candidate, month, day), at)
        except ValueError:
            continue
        if moment > now:
            return moment
    raise ValueError(f"no such date {month:02}-{day:02}")


def next_workday_at(now: datetime, at: time, calendar: Calendar) -> datetime:
    """The next working day after today (weekends and holidays skipped) at ``at``."""
    return calendar.at(calendar.next_workday(calendar.local(now).date()), at)


def until_for(
    profile: Profile, spec: UntilSpec, now: datetime, calendar: Calendar
) -> datetime | None:
    """The end time a feature-code argument means for ``profile`` (None: no end)."""
    if isinstance(spec, AtTime):
        return at_time(now, spec.hour, spec.minute, calendar)
    if isinstance(spec, OnDate):
        return on_date(now, spec.month, spec.day, profile.back_at, calendar)
    if profile.returns == "next_workday":
        return next_workday_at(now, profile.back_at, calendar)
    return None
