"""Profile resolution (forced > manual stack > scheduled > standard) and commands."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.config import load_config
from ivr.routing import profiles as P
from ivr.routing.model import DateRange, Schedule, WeeklySlot
from ivr.routing.state import Activation, UserState

CONFIG = load_config(Path(__file__).parents[1] / "config" / "ivr.toml")
RULES = CONFIG.rules
CAL = RULES.calendar
TZ = ZoneInfo("Europe/Stockholm")
EMPTY = UserState(user="1001")
LUNCH_SLOT = Schedule(
    id="lunch",
    profile="lunch",
    when=WeeklySlot(days=frozenset(range(5)), start=time(11, 30), end=time(12, 15)),
    holidays="skip",
)
SUMMER = Schedule(
    id="summer",
    profile="vacation",
    when=DateRange(first=date(2025, 7, 1), last=date(2025, 7, 31)),
)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)


NOW = at(2025, 3, 12, 10, 0)  # a Wednesday


def entry(profile: str, source: str = "manual", until: datetime | None = None) -> Activation:
    return Activation(
        profile=profile,
        source=source,  # type: ignore[arg-type]
        set_by="1001",
        set_via="phone",
        set_at=at(2025, 3, 12, 9, 0),
        until=until,
    )


@pytest.mark.parametrize(
    ("state", "schedules", "now", "profile", "source"),
    [
        (EMPTY, (), NOW, "available", "standard"),
        (EMPTY, (LUNCH_SLOT,), at(2025, 3, 12, 11, 45), "lunch", "scheduled"),
        (EMPTY, (LUNCH_SLOT, SUMMER), at(2025, 7, 2, 11, 45), "vacation", "scheduled"),
        (EMPTY, (LUNCH_SLOT,), at(2025, 5, 1, 11, 45), "available", "standard"),
        (
            replace(EMPTY, manual=(entry("meeting"),)),
            (LUNCH_SLOT,),
            at(2025, 3, 12, 11, 45),
            "meeting",
            "manual",
        ),
        (
            replace(EMPTY, manual=(entry("meeting", until=at(2025, 3, 12, 11, 40)),)),
            (LUNCH_SLOT,),
            at(2025, 3, 12, 11, 45),
            "lunch",
            "scheduled",
        ),
        (
            replace(EMPTY, manual=(entry("meeting"), entry("lunch", until=at(2025, 3, 12, 13, 0)))),
            (),
            at(2025, 3, 12, 12, 59),
            "lunch",
            "manual",
        ),
        (
            replace(EMPTY, manual=(entry("meeting"), entry("lunch", until=at(2025, 3, 12, 13, 0)))),
            (),
            at(2025, 3, 12, 13, 0),
            "meeting",
            "manual",
        ),
        (
            replace(EMPTY, forced=entry("sick", "forced"), manual=(entry("meeting"),)),
            (LUNCH_SLOT,),
            at(2025, 3, 12, 11, 45),
            "sick",
            "forced",
        ),
        (
            replace(EMPTY, forced=entry("sick", "forced", until=NOW), manual=(entry("lunch"),)),
            (),
            NOW,
            "lunch",
            "manual",
        ),
        (replace(EMPTY, manual=(entry("deleted-profile"),)), (), NOW, "available", "standard"),
    ],
)
def test_effective(
    state: UserState, schedules: tuple[Schedule, ...], now: datetime, profile: str, source: str
) -> None:
    eff = P.effective(state, schedules, now, RULES)
    assert (eff.profile.id, eff.source) == (profile, source)


def test_effective_records_who_and_how() -> None:
    state = P.activate(EMPTY, RULES.profile("lunch"), at(2025, 3, 12, 13, 0), "1001", "phone", NOW)
    eff = P.effective(state, (), NOW, RULES)
    assert (eff.set_by, eff.set_via, eff.set_at, eff.until) == (
        "1001",
        "phone",
        NOW,
        at(2025, 3, 12, 13, 0),
    )


def test_scheduled_effective_runs_from_start_to_end() -> None:
    eff = P.effective(EMPTY, (LUNCH_SLOT,), at(2025, 3, 12, 11, 45), RULES)
    assert (eff.set_at, eff.until, eff.set_via) == (
        at(2025, 3, 12, 11, 30),
        at(2025, 3, 12, 12, 15),
        "schedule",
    )


@pytest.mark.parametrize(
    ("state", "now", "text"),
    [
        (
            P.activate(
                EMPTY,
                RULES.profile("lunch"),
                at(2025, 3, 12, 13, 0),
                "1001",
                "phone",
                at(2025, 3, 12, 11, 58),
            ),
            at(2025, 3, 12, 12, 0),
            "Lunch (manual, set by 1001 via phone at 11:58, until 13:00)",
        ),
        (
            P.activate(EMPTY, RULES.profile("vacation"), at(2025, 7, 28, 0, 0), "1001", "api", NOW),
            NOW,
            "Vacation (manual, set by 1001 via api at 10:00, until 2025-07-28 00:00)",
        ),
        (EMPTY, NOW, "Available (standard)"),
    ],
)
def test_describe(state: UserState, now: datetime, text: str) -> None:
    assert P.effective(state, (), now, RULES).describe(now, CAL) == text


def test_describe_scheduled_in_swedish() -> None:
    now = at(2025, 3, 12, 11, 45)
    eff = P.effective(EMPTY, (LUNCH_SLOT,), now, RULES)
    assert (
        eff.describe(now, CAL, "sv") == "Lunch (scheduled, schedule lunch from 11:30, until 12:15)"
    )


def test_stack_returns_to_previous_profile() -> None:
    state = P.activate(EMPTY, RULES.profile("meeting"), None, "1001", "phone", NOW)
    state = P.activate(state, RULES.profile("lunch"), at(2025, 3, 12, 11, 0), "1001", "phone", NOW)
    assert [e.profile for e in state.manual] == ["meeting", "lunch"]
    assert P.effective(state, (), at(2025, 3, 12, 10, 59), RULES).profile.id == "lunch"
    assert P.effective(state, (), at(2025, 3, 12, 11, 0), RULES).profile.id == "meeting"
    assert [e.profile for e in P.expire(state, at(2025, 3, 12, 11, 0)).manual] == ["meeting"]


def test_activation_without_end_replaces_the_stack() -> None:
    state = P.activate(
        EMPTY, RULES.profile("meeting"), at(2025, 3, 12, 11, 0), "1001", "phone", NOW
    )
    state = P.activate(state, RULES.profile("out"), None, "1001", "phone", NOW)
    assert [e.profile for e in state.manual] == ["out"]


def test_entries_that_cannot_return_are_pruned() -> None:
    state = P.activate(
        EMPTY, RULES.profile("meeting"), at(2025, 3, 12, 11, 0), "1001", "phone", NOW
    )
    state = P.activate(state, RULES.profile("lunch"), at(2025, 3, 12, 12, 0), "1001", "phone", NOW)
    assert [e.profile for e in state.manual] == ["lunch"]


def test_expire() -> None:
    state = replace(
        EMPTY,
        forced=entry("sick", "forced", until=at(2025, 3, 12, 9, 30)),
        manual=(entry("meeting"), entry("lunch", until=at(2025, 3, 12, 9, 30))),
    )
    assert P.expire(state, at(2025, 3, 12, 9, 29)) is state
    later = P.expire(state, at(2025, 3, 12, 9, 30))
    assert later.forced is None
    assert [e.profile for e in later.manual] == ["meeting"]
    assert later.version == state.version


def test_force_and_clear() -> None:
    state = P.activate(EMPTY, RULES.profile("lunch"), None, "1001", "phone", NOW)
    forced = P.force(state, RULES.profile("sick"), "1000", "api", NOW)
    assert P.effective(forced, (), NOW, RULES).source == "forced"
    assert P.effective(P.clear_forced(forced), (), NOW, RULES).profile.id == "lunch"


def test_back_to_standard_clears_manual_and_forced() -> None:
    state = P.force(
        P.activate(EMPTY, RULES.profile("lunch"), None, "1001", "phone", NOW),
        RULES.profile("sick"),
        "1000",
        "api",
        NOW,
    )
    back = P.back_to_standard(state, rules=RULES, by="1001", via="phone", now=NOW)
    assert (back.forced, back.manual) == (None, ())
    assert P.effective(back, (), NOW, RULES).source == "standard"


def test_back_to_standard_during_a_schedule_lasts_until_it_ends() -> None:
    now = at(2025, 3, 12, 11, 45)
    back = P.back_to_standard(
        EMPTY, rules=RULES, by="1001", via="phone", now=now, schedules=(LUNCH_SLOT,)
    )
    eff = P.effective(back, (LUNCH_SLOT,), now, RULES)
    assert (eff.profile.id, eff.source, eff.until) == (
        "available",
        "manual",
        at(2025, 3, 12, 12, 15),
    )
    tomorrow = P.effective(back, (LUNCH_SLOT,), at(2025, 3, 13, 11, 45), RULES)
    assert (tomorrow.profile.id, tomorrow.source) == ("lunch", "scheduled")


@pytest.mark.parametrize(
    ("on", "start", "expected"),
    [
        (True, (), "dnd"),
        (False, ("meeting", "dnd"), "meeting"),
        (None, (), "dnd"),
        (None, ("meeting", "dnd"), "meeting"),
        (False, (), "available"),
    ],
)
def test_set_dnd(on: bool | None, start: tuple[str, ...], expected: str) -> None:
    state = replace(EMPTY, manual=tuple(entry(p) for p in start))
    after = P.set_dnd(state, on, rules=RULES, by="1001", via="phone", now=NOW)
    assert P.effective(after, (), NOW, RULES).profile.id == expected


@pytest.mark.parametrize(
    ("until", "now", "message"),
    [
        (NOW, NOW, "future"),
        (at(2025, 3, 12, 9, 0), NOW, "future"),
        (datetime(2025, 3, 12, 13, 0), NOW, "timezone-aware"),
        (None, datetime(2025, 3, 12, 13, 0), "timezone-aware"),
    ],
)
def test_activate_refuses_bad_times(until: datetime | None, now: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        P.activate(EMPTY, RULES.profile("lunch"), until, "1001", "phone", now)


@pytest.mark.parametrize(
    ("profile", "spec", "now", "expected"),
    [
        ("lunch", P.AtTime(hour=13, minute=0), at(2025, 3, 12, 11, 58), at(2025, 3, 12, 13, 0)),
        ("lunch", P.AtTime(hour=13, minute=0), at(2025, 3, 12, 13, 0), at(2025, 3, 13, 13, 0)),
        ("lunch", P.AtTime(hour=8, minute=30), at(2025, 3, 12, 17, 0), at(2025, 3, 13, 8, 30)),
        ("lunch", P.AtTime(hour=0, minute=0), at(2025, 3, 12, 17, 0), at(2025, 3, 13, 0, 0)),
        ("lunch", P.DefaultReturn(), NOW, None),
        ("available", P.DefaultReturn(), NOW, None),
        ("gone", P.DefaultReturn(), at(2025, 3, 12, 17, 0), at(2025, 3, 13, 8, 0)),
        ("gone", P.DefaultReturn(), at(2025, 3, 14, 17, 0), at(2025, 3, 17, 8, 0)),
        ("gone", P.DefaultReturn(), at(2025, 12, 23, 16, 0), at(2025, 12, 29, 8, 0)),
        ("gone", P.DefaultReturn(), at(2025, 3, 17, 6, 0), at(2025, 3, 18, 8, 0)),
        ("gone", P.AtTime(hour=9, minute=15), at(2025, 3, 12, 17, 0), at(2025, 3, 13, 9, 15)),
        ("vacation", P.OnDate(month=8, day=4), NOW, at(2025, 8, 4, 0, 0)),
        ("vacation", P.OnDate(month=1, day=4), NOW, at(2026, 1, 4, 0, 0)),
        ("vacation", P.OnDate(month=3, day=12), NOW, at(2026, 3, 12, 0, 0)),
        ("vacation", P.OnDate(month=2, day=29), NOW, at(2028, 2, 29, 0, 0)),
        ("vacation", P.DefaultReturn(), NOW, None),
        ("sick", P.DefaultReturn(), NOW, None),
    ],
)
def test_until_for(
    profile: str, spec: P.UntilSpec, now: datetime, expected: datetime | None
) -> None:
    assert P.until_for(RULES.profile(profile), spec, now, CAL) == expected


def test_until_across_dst_is_wall_clock() -> None:
    # Saturday 2025-03-29 22:00 (+01:00) until 09:00 Sunday, which is +02:00.
    until = P.at_time(at(2025, 3, 29, 22, 0), 9, 0, CAL)
    assert until == at(2025, 3, 30, 9, 0)
    assert until.utcoffset() != at(2025, 3, 29, 22, 0).utcoffset()


@pytest.mark.parametrize(
    "make",
    [
        lambda: P.AtTime(hour=24, minute=0),
        lambda: P.AtTime(hour=12, minute=60),
        lambda: P.OnDate(month=2, day=30),
        lambda: P.OnDate(month=13, day=1),
    ],
)
def test_until_specs_validate(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_rules_lookup() -> None:
    assert RULES.profile(2).id == "lunch"
    assert RULES.profile("lunch").number == 2
    assert RULES.get(0) is None and RULES.get("nope") is None
    assert RULES.standard.id == "available"
    assert RULES.dnd is not None and RULES.dnd.id == "dnd"
    with pytest.raises(KeyError):
        RULES.profile(10)


@pytest.mark.parametrize(
    "profiles",
    [
        lambda ps: ps[1:],
        lambda ps: (*ps, ps[0]),
        lambda ps: (*ps[:-1], replace(ps[-1], number=2)),
    ],
)
def test_rules_validate(profiles: object) -> None:
    with pytest.raises(ValueError):
        P.Rules(profiles=profiles(CONFIG.profiles))  # type: ignore[operator]
