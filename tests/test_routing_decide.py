"""decide(): a table over the nine default profiles, exceptions, soft, mex_off, traces."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.config import load_config
from ivr.routing import profiles as P
from ivr.routing.decide import (
    Busy,
    Call,
    Decision,
    Forward,
    Hangup,
    Redirect,
    Ring,
    Voicemail,
    caller_id,
    decide,
    queue_logins,
)
from ivr.routing.model import ExceptionRule, Profile, Then
from ivr.routing.state import UserState

CONFIG = load_config(Path(__file__).parents[1] / "config" / "ivr.toml")
RULES = CONFIG.rules
TZ = ZoneInfo("Europe/Stockholm")
ANNA, BENGT, CAROL = (CONFIG.user(e) for e in ("1001", "1002", "1003"))
assert ANNA and BENGT and CAROL


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)


NOW = at(2025, 3, 12, 11, 58)  # Wednesday, after Anna's scheduled lunch
OTHER = "08-465 004 02"


def chain(decision: Decision | None) -> list[str]:
    """A compact picture of a decision chain."""
    out: list[str] = []
    while decision is not None:
        match decision:
            case Ring(devices=devices, timeout=timeout):
                out.append(f"ring {'+'.join(d.id for d in devices)} {timeout}s")
            case Redirect(profile=profile):
                out.append(f"redirect {profile.id}")
            case Voicemail(box=box):
                out.append(f"voicemail {box}")
            case Forward(target=target):
                out.append(f"forward {target}")
            case Busy():
                out.append("busy")
            case Hangup():
                out.append("hangup")
        decision = getattr(decision, "then", None)
    return out


def state_with(profile: str | None, until: datetime | None = None, user: str = "1001") -> UserState:
    state = UserState(user=user)
    if profile is None:
        return state
    return P.activate(state, RULES.profile(profile), until, user, "phone", at(2025, 3, 12, 8, 0))


def rules_with(profile: Profile) -> P.Rules:
    swapped = tuple(profile if p.id == profile.id else p for p in RULES.profiles)
    return replace(RULES, profiles=swapped)


def plan_of(profile_id: str, **changes: object) -> Profile:
    profile = RULES.profile(profile_id)
    return replace(profile, plan=replace(profile.plan, **changes))


@pytest.mark.parametrize(
    ("user", "profile", "dialled", "now", "expected"),
    [
        (
            ANNA,
            "available",
            "1001",
            NOW,
            ["ring 1001-desk+1001-soft+1001-mobile 25s", "voicemail 1001"],
        ),
        (BENGT, "available", "1002", NOW, ["ring 1002-desk+1002-soft 25s", "voicemail 1002"]),
        (ANNA, "lunch", "1001", NOW, ["redirect lunch", "voicemail 1001"]),
        (ANNA, "meeting", "1001", NOW, ["redirect meeting", "voicemail 1001"]),
        (ANNA, "meeting", "08-465 004 01", NOW, ["redirect meeting", "voicemail 1001"]),
        (
            ANNA,
            "meeting",
            "070-174 06 05",
            NOW,
            ["ring 1001-mobile 25s", "redirect meeting", "voicemail 1001"],
        ),
        (
            ANNA,
            "meeting",
            "+46701740605",
            NOW,
            ["ring 1001-mobile 25s", "redirect meeting", "voicemail 1001"],
        ),
        (BENGT, "meeting", "070-174 06 06", NOW, ["redirect meeting", "voicemail 1002"]),
        (ANNA, "out", "1001", NOW, ["redirect out", "voicemail 1001"]),
        (ANNA, "gone", "1001", NOW, ["redirect gone", "voicemail 1001"]),
        (ANNA, "trip", "1001", NOW, ["redirect trip", "voicemail 1001"]),
        (ANNA, "vacation", "1001", NOW, ["redirect vacation", "voicemail 1001"]),
        (CAROL, "sick", "1003", NOW, ["redirect sick", "voicemail 1003"]),
        (ANNA, "dnd", "1001", NOW, ["busy"]),
        (ANNA, None, "1001", at(2025, 3, 12, 11, 45), ["redirect lunch", "voicemail 1001"]),
        (
            ANNA,
            None,
            "1001",
            at(2025, 5, 1, 11, 45),
            ["ring 1001-desk+1001-soft+1001-mobile 25s", "voicemail 1001"],
        ),
        (CAROL, None, "1003", at(2026, 7, 10, 9, 0), ["redirect vacation", "voicemail 1003"]),
        (
            CAROL,
            None,
            "1003",
            at(2026, 8, 3, 9, 0),
            ["ring 1003-desk+1003-soft 25s", "voicemail 1003"],
        ),
    ],
)
def test_decide_table(
    user: object, profile: str | None, dialled: str, now: datetime, expected: list[str]
) -> None:
    call = Call(user=user, caller=OTHER, dialled=dialled)  # type: ignore[arg-type]
    state = state_with(profile, user=call.user.extension)
    decision = decide(call, state, now, rules=RULES, schedules=call.user.schedules)
    assert chain(decision) == expected
    assert decision.trace[0].startswith("profile ")


def test_trace_reads_like_a_sentence() -> None:
    state = P.activate(
        UserState(user="1001"), RULES.profile("lunch"), at(2025, 3, 12, 13, 0), "1001", "phone", NOW
    )
    decision = decide(
        Call(user=ANNA, caller=OTHER, dialled="1001"), state, at(2025, 3, 12, 12, 0), rules=RULES
    )
    assert decision.explain() == (
        "profile Lunch (manual, set by 1001 via phone at 11:58, until 13:00) → direct"
        " → redirect Lunch, back 13:00 → voicemail 1001"
    )
    assert isinstance(decision, Redirect)
    assert decision.then.trace == ("voicemail 1001",)


def test_exception_trace() -> None:
    call = Call(user=ANNA, caller=OTHER, dialled="0701740605")
    decision = decide(call, state_with("meeting"), NOW, rules=RULES)
    assert decision.trace[1:] == (
        "exception dialled my mobile → ring mobile: ring 1001-mobile 25 s",
        "redirect Möte",
        "voicemail 1001",
    )


def test_exception_without_device_is_noted() -> None:
    call = Call(user=BENGT, caller=OTHER, dialled="0701740606")
    decision = decide(call, state_with("meeting", user="1002"), NOW, rules=RULES)
    assert (
        "exception dialled my mobile → ring mobile matched, but nothing to ring" in decision.trace
    )


@pytest.mark.parametrize(
    ("profile", "until", "back"),
    [
        ("lunch", at(2025, 3, 12, 13, 0), at(2025, 3, 12, 13, 0)),
        ("lunch", None, None),
        ("gone", at(2025, 3, 13, 8, 0), at(2025, 3, 13, 8, 0)),
        ("vacation", at(2025, 8, 4, 0, 0), at(2025, 8, 4, 0, 0)),
    ],
)
def test_redirect_says_when_back(
    profile: str, until: datetime | None, back: datetime | None
) -> None:
    decision = decide(
        Call(user=ANNA, caller=OTHER, dialled="1001"), state_with(profile, until), NOW, rules=RULES
    )
    assert isinstance(decision, Redirect)
    assert decision.back == back


def test_redirect_without_return_kind_says_no_time() -> None:
    quiet = replace(
        RULES.profile("dnd"),
        plan=replace(RULES.profile("dnd").plan, then=Then(redirect=True, action="busy")),
    )
    decision = decide(
        Call(user=ANNA, caller=OTHER, dialled="1001"),
        state_with("dnd", at(2025, 3, 12, 14, 0)),
        NOW,
        rules=rules_with(quiet),
    )
    assert isinstance(decision, Redirect)
    assert decision.back is None
    assert chain(decision) == ["redirect dnd", "busy"]


@pytest.mark.parametrize(
    ("user", "profile", "reason", "mobile", "language"),
    [
        (ANNA, "lunch", True, "+46701740605", "sv"),
        (ANNA, "meeting", True, None, "sv"),
        (CAROL, "sick", False, None, "en"),
        (CAROL, "out", True, "+46701740607", "en"),
    ],
)
def test_redirect_options(
    user: object, profile: str, reason: bool, mobile: str | None, language: str
) -> None:
    call = Call(user=user, caller=OTHER, dialled="1001")  # type: ignore[arg-type]
    decision = decide(call, state_with(profile, user=call.user.extension), NOW, rules=RULES)
    assert isinstance(decision, Redirect)
    assert (decision.reason, decision.mobile, decision.language, decision.operator) == (
        reason,
        mobile,
        language,
        "1000",
    )


def test_soft_rings_first_without_the_mobile() -> None:
    soft = plan_of("lunch", soft=True)
    decision = decide(
        Call(user=ANNA, caller=OTHER, dialled="1001"),
        state_with("lunch"),
        NOW,
        rules=rules_with(soft),
    )
    assert chain(decision) == ["ring 1001-desk+1001-soft 25s", "redirect lunch", "voicemail 1001"]
    assert "soft: alert me first: ring 1001-desk+1001-soft 25 s" in decision.trace


def test_mex_off_keeps_mobile_quiet() -> None:
    quiet = plan_of("available", mex_off=True, ring_seconds=15)
    decision = decide(
        Call(user=ANNA, caller=OTHER, dialled="1001"),
        state_with("available"),
        NOW,
        rules=rules_with(quiet),
    )
    assert chain(decision) == ["ring 1001-desk+1001-soft 15s", "voicemail 1001"]


@pytest.mark.parametrize(
    ("online", "expected"),
    [
        (None, ["ring 1001-desk+1001-soft+1001-mobile 25s", "voicemail 1001"]),
        (frozenset({"1001-soft"}), ["ring 1001-soft+1001-mobile 25s", "voicemail 1001"]),
        (frozenset(), ["ring 1001-mobile 25s", "voicemail 1001"]),
    ],
)
def test_only_registered_devices_ring(online: frozenset[str] | None, expected: list[str]) -> None:
    call = Call(user=ANNA, caller=OTHER, dialled="1001", online=online)
    assert chain(decide(call, state_with("available"), NOW, rules=RULES)) == expected


def test_nobody_reachable_goes_straight_on() -> None:
    call = Call(user=BENGT, caller=OTHER, dialled="1002", online=frozenset())
    decision = decide(call, state_with("available", user="1002"), NOW, rules=RULES)
    assert chain(decision) == ["voicemail 1002"]
    assert "nobody reachable (desk+softphone+mobile)" in decision.trace


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        (
            "070-174 06 99",
            ["ring 1001-desk+1001-soft+1001-mobile 25s", "redirect meeting", "voicemail 1001"],
        ),
        (
            "+46701740699",
            ["ring 1001-desk+1001-soft+1001-mobile 25s", "redirect meeting", "voicemail 1001"],
        ),
        ("1002", ["forward 1000"]),
        ("070-174 06 98", ["redirect meeting", "voicemail 1001"]),
        ("anonymous", ["redirect meeting", "voicemail 1001"]),
    ],
)
def test_caller_exceptions(caller: str, expected: list[str]) -> None:
    rules = (
        ExceptionRule(callers=("vip",), ring=("desk", "softphone", "mobile")),
        ExceptionRule(callers=("1002",), forward="1000"),
    )
    meeting = plan_of("meeting", exceptions=rules)
    call = Call(user=ANNA, caller=caller, dialled="1001")
    assert chain(decide(call, state_with("meeting"), NOW, rules=rules_with(meeting))) == expected


@pytest.mark.parametrize(
    ("user", "then", "expected"),
    [
        (ANNA, Then(action="forward", target="mobile"), ["forward +46701740605"]),
        (
            ANNA,
            Then(redirect=True, action="forward", target="+46846500400"),
            ["redirect out", "forward +46846500400"],
        ),
        (ANNA, Then(action="hangup"), ["hangup"]),
        (CONFIG.user("1000"), Then(action="forward", target="mobile"), ["voicemail 1000"]),
    ],
)
def test_then_actions(user: object, then: Then, expected: list[str]) -> None:
    out = plan_of("out", then=then)
    call = Call(user=user, caller=OTHER, dialled="1001")  # type: ignore[arg-type]
    decision = decide(call, state_with("out", user=call.user.extension), NOW, rules=rules_with(out))
    assert chain(decision) == expected


def test_forced_profile_wins_in_decide() -> None:
    state = P.force(state_with("lunch"), RULES.profile("dnd"), "1000", "api", NOW)
    decision = decide(Call(user=ANNA, caller=OTHER, dialled="1001"), state, NOW, rules=RULES)
    assert chain(decision) == ["busy"]
    assert decision.trace[0] == "profile Stör ej (forced, set by 1000 via api at 11:58)"


@pytest.mark.parametrize(
    ("user", "profile", "expected"),
    [
        (
            "1002",
            "available",
            [("support", ("1002-desk", "1002-soft")), ("sales", ("1002-desk", "1002-soft"))],
        ),
        ("1001", "available", [("support", ("1001-desk", "1001-soft"))]),
        ("1001", "lunch", []),
    ],
)
def test_queue_logins(user: str, profile: str, expected: list[tuple[str, tuple[str, ...]]]) -> None:
    found = queue_logins(CONFIG.user(user), RULES.profile(profile))  # type: ignore[arg-type]
    assert [(m.queue, tuple(d.id for d in m.devices)) for m in found] == expected


@pytest.mark.parametrize(
    ("user", "kind", "sources", "expected"),
    [
        ("1001", "desk", {}, "+46846500401"),
        ("1001", "mobile", {}, "+46701740605"),
        ("1001", "desk", {"desk": "main"}, "+46846500400"),
        ("1001", "softphone", {"softphone": "hidden"}, None),
        ("1000", "mobile", {}, "+46846500410"),
        ("1000", "desk", {"desk": "mobile"}, "+46846500410"),
    ],
)
def test_caller_id(user: str, kind: str, sources: dict[str, str], expected: str | None) -> None:
    profile = RULES.profile("available")
    profile = replace(
        profile, plan=replace(profile.plan, caller_id=replace(profile.plan.caller_id, **sources))
    )
    assert caller_id(CONFIG.user(user), kind, profile, CONFIG.company.main_number) == expected  # type: ignore[arg-type]


def test_caller_id_falls_back_to_main_number() -> None:
    nobody = replace(ANNA, did=None, mobile=None, devices=())
    assert caller_id(nobody, "desk", RULES.profile("available"), "+46846500400") == "+46846500400"
