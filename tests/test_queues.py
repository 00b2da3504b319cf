"""Call queues: membership (profile, *45, *46), whom a queue call rings, the config, the
store and the queue service (real SQLite)."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
from twisted.internet import reactor

from ivr.config import ConfigError, load_config, parse_config
from ivr.profile_service import ProfileService
from ivr.queue_calls import QueueService
from ivr.routing.decide import Busy, Forward, Ring, Voicemail
from ivr.routing.features import (
    ActivateProfile,
    BackToStandard,
    DndOn,
    QueuePause,
    QueueToggle,
)
from ivr.routing.model import QueueLogin, User
from ivr.routing.profiles import Effective, Rules
from ivr.routing.queues import (
    Candidate,
    Fallback,
    Queue,
    QueueState,
    confirmation_words,
    memberships,
    period,
    profile_changed,
    queue_decision,
    queue_effective,
    standard_since,
    toggle_login,
    toggle_pause,
)
from ivr.routing.state import AuditEntry, UserState
from ivr.store.async_store import AsyncStore
from ivr.store.errors import ConflictError
from ivr.store.sqlite import SqliteStore

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "ivr.toml"
CONFIG = load_config(SHIPPED)
RULES: Rules = CONFIG.rules
TZ = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=TZ)  # a Wednesday morning
BENGT = CONFIG.user("1002")  # support + sales
CAROL = CONFIG.user("1003")  # sales
assert BENGT is not None and CAROL is not None
SALES = CONFIG.queue("sales")
assert SALES is not None


def standard() -> Effective:
    return Effective(profile=RULES.standard, source="standard")


def manual(profile: str, at: datetime = NOW) -> Effective:
    return Effective(
        profile=RULES.profile(profile), source="manual", set_by="x", set_via="phone", set_at=at
    )


def blank(user: User) -> QueueState:
    return QueueState(user=user.extension)


def summary(user: User, eff: Effective, state: QueueState) -> dict[str, tuple[bool, bool]]:
    return {m.queue: (m.logged_in, m.paused) for m in memberships(user, eff, state, RULES)}


# -- membership -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("eff", "login", "expected"),
    [
        # Tillgänglig logs into all the user's queues ("*"), Lunch/Stör ej log out.
        (standard(), None, {"support": (True, False), "sales": (True, False)}),
        (manual("lunch"), None, {"support": (False, False), "sales": (False, False)}),
        (manual("dnd"), None, {"support": (False, False), "sales": (False, False)}),
        # *45 overrides the profile for the period it was made in.
        (standard(), False, {"support": (False, False), "sales": (False, False)}),
        (manual("lunch"), True, {"support": (True, False), "sales": (True, False)}),
    ],
)
def test_membership_follows_the_profile_unless_the_user_chose(
    eff: Effective, login: bool | None, expected: dict[str, tuple[bool, bool]]
) -> None:
    state = QueueState(user="1002", login=login, period=period(eff))
    assert summary(BENGT, eff, state) == expected


def test_ring_kinds_come_from_the_profile_and_a_named_queue_only_logs_into_that_one() -> None:
    (login,) = RULES.standard.plan.queues
    assert login.queue == "*"
    found = memberships(BENGT, standard(), blank(BENGT), RULES)
    assert [(m.queue, m.ring, m.why) for m in found] == [
        ("support", ("desk", "softphone"), "profile"),
        ("sales", ("desk", "softphone"), "profile"),
    ]
    plan = replace(
        RULES.profile("meeting").plan, queues=(QueueLogin(queue="sales", ring=("softphone",)),)
    )
    meeting = replace(RULES.profile("meeting"), plan=plan)
    eff = Effective(profile=meeting, source="manual", set_at=NOW)
    found = memberships(BENGT, eff, blank(BENGT), RULES)
    assert [(m.queue, m.logged_in, m.ring) for m in found] == [
        ("support", False, ("desk", "softphone")),  # *45 would ring what Tillgänglig names
        ("sales", True, ("softphone",)),
    ]


def test_a_choice_lapses_when_another_profile_period_begins() -> None:
    out = toggle_login(BENGT, standard(), blank(BENGT), RULES, by="1002", via="phone", now=NOW)
    assert out.action == "queue_logout" and out.changed
    assert summary(BENGT, standard(), out.state)["sales"] == (False, False)
    # A new Lunch activation, and a later one of the same profile, are new periods.
    lunch = manual("lunch")
    assert period(lunch) != period(standard())
    assert period(manual("lunch", NOW + timedelta(hours=1))) != period(lunch)
    inside = toggle_login(BENGT, lunch, blank(BENGT), RULES, by="1002", via="phone", now=NOW)
    assert summary(BENGT, lunch, inside.state)["sales"] == (True, False)
    assert summary(BENGT, standard(), inside.state)["sales"] == (True, False)  # profile says so
    assert summary(BENGT, manual("dnd"), inside.state)["sales"] == (False, False)


def test_star_45_toggles_and_star_46_pauses_only_when_logged_in() -> None:
    eff = standard()
    kw: dict[str, Any] = {"by": "1003", "via": "phone", "now": NOW}
    paused = toggle_pause(CAROL, eff, blank(CAROL), RULES, **kw)
    assert (paused.action, paused.changed) == ("queue_pause", True)
    assert summary(CAROL, eff, paused.state) == {"sales": (True, True)}
    assert confirmation_words(paused) == ["queue_paused"]
    resumed = toggle_pause(CAROL, eff, paused.state, RULES, **kw)
    assert resumed.action == "queue_unpause" and summary(CAROL, eff, resumed.state) == {
        "sales": (True, False)
    }
    assert confirmation_words(resumed) == ["queue_unpaused"]
    out = toggle_login(CAROL, eff, paused.state, RULES, **kw)  # logging out clears the pause
    assert summary(CAROL, eff, out.state) == {"sales": (False, False)}
    assert confirmation_words(out) == ["queue_logged_out"]
    assert out.detail == {"queues": [], "paused": False, "profile": "available"}
    idle = toggle_pause(CAROL, eff, out.state, RULES, **kw)
    assert (idle.action, idle.changed) == ("queue_logout", False)  # "Utloggad ur kön"
    back = toggle_login(CAROL, eff, out.state, RULES, **kw)
    assert back.action == "queue_login" and back.detail["queues"] == ["sales"]
    assert (back.state.set_by, back.state.set_via, back.state.set_at) == ("1003", "phone", NOW)
    loner = replace(CAROL, queues=())
    none = toggle_login(loner, eff, blank(loner), RULES, **kw)
    assert (none.action, none.changed, confirmation_words(none)) == (
        "queue_no_queues",
        False,
        ["queue_no_queues"],
    )


def test_a_profile_change_clears_the_choice_and_says_what_changed() -> None:
    out = toggle_login(BENGT, standard(), blank(BENGT), RULES, by="1002", via="phone", now=NOW)
    lunch = manual("lunch")
    change = profile_changed(BENGT, standard(), lunch, out.state, RULES)
    assert change.changed and change.state.blank and change.state.period == period(lunch)
    assert change.action == "none"  # logged out before (by *45) and after (by Lunch)
    # Back to Tillgänglig: the profile logs in again, though *45 had logged out before.
    back = profile_changed(BENGT, lunch, standard(), change.state, RULES)
    assert back.action == "queue_login" and not back.changed  # nothing stored to clear
    assert summary(BENGT, standard(), back.state)["support"] == (True, False)
    going = profile_changed(BENGT, standard(), lunch, blank(BENGT), RULES)
    assert going.action == "queue_logout" and going.detail["was"] == ["support", "sales"]
    same = profile_changed(BENGT, standard(), standard(), out.state, RULES)
    assert (same.action, same.changed) == ("none", False)


ANNA = CONFIG.user("1001")  # support; a Lunch schedule Mon-Fri 11:30-12:15
assert ANNA is not None


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in the week of Monday 2026-11-23 (day 0 = Monday)."""
    return datetime(2026, 11, 23 + day, hour, minute, tzinfo=TZ)


@pytest.mark.parametrize(
    ("chosen", "later", "logged_in"),
    [
        (at(2, 10), at(2, 11, 45), False),  # the scheduled Lunch logs out
        (at(2, 10), at(2, 13), True),  # after it Tillgänglig logs in again: *45 lapsed
        (at(2, 13), at(2, 17), False),  # no run in between: the choice holds
        (at(5, 10), at(6, 20), False),  # the weekend: Friday's run is the last, still holds
        (at(4, 13), at(7, 9), False),  # Monday morning before Lunch: holds
        (at(4, 13), at(7, 12, 30), True),  # Monday after Lunch: lapsed
    ],
)
def test_a_choice_made_in_the_standard_profile_lapses_at_a_scheduled_run(
    chosen: datetime, later: datetime, logged_in: bool
) -> None:
    state = UserState(user="1001")
    eff = queue_effective(state, ANNA.schedules, chosen, RULES)
    assert eff.profile.id == "available"
    out = toggle_login(ANNA, eff, blank(ANNA), RULES, by="1001", via="phone", now=chosen)
    assert out.action == "queue_logout"
    now_eff = queue_effective(state, ANNA.schedules, later, RULES)
    assert summary(ANNA, now_eff, out.state) == {"support": (logged_in, False)}


def test_standard_since_is_the_end_of_the_last_run() -> None:
    assert standard_since(ANNA.schedules, at(2, 13), RULES.calendar) == at(2, 12, 15)
    assert standard_since(ANNA.schedules, at(2, 12), RULES.calendar) == at(1, 12, 15)
    assert standard_since(ANNA.schedules, at(6, 9), RULES.calendar) == at(4, 12, 15)
    assert standard_since((), at(2, 13), RULES.calendar) is None
    # Carol's summer vacation (2026-07-06..31) ended at midnight on 1 August.
    assert standard_since(CAROL.schedules, at(2, 13), RULES.calendar) == datetime(
        2026, 8, 1, tzinfo=TZ
    )


# -- whom a queue call rings ----------------------------------------------------------


def candidates(**profiles: str) -> list[Candidate]:
    """1002 and 1003 with the given profiles (default Tillgänglig), blank states."""
    found = []
    for user in (BENGT, CAROL):
        name = profiles.get(f"u{user.extension}")
        eff = standard() if name is None else manual(name)
        found.append(Candidate(user=user, effective=eff, state=blank(user)))
    return found


def ids(decision: Any) -> list[str]:
    return [d.id for d in decision.devices] if isinstance(decision, Ring) else []


def test_a_queue_call_rings_every_available_member_at_once_then_the_fallback() -> None:
    decision = queue_decision(SALES, candidates(), RULES)
    assert isinstance(decision, Ring)
    assert ids(decision) == ["1002-desk", "1002-soft", "1003-desk", "1003-soft"]
    assert decision.timeout == SALES.ring_seconds
    assert decision.then == Voicemail(box="1002", trace=("voicemail 1002",))
    assert "ring 1002-desk+1002-soft+1003-desk+1003-soft 15 s" in decision.trace


@pytest.mark.parametrize(
    ("edit", "skipped"),
    [
        # Lunch logs out by profile; after *45 the member is logged in but still away.
        ({"profile": "lunch"}, "1003 logged out (profile)"),
        ({"profile": "lunch", "login": True}, "1003 skipped: Lunch (away)"),
        ({"profile": "dnd", "login": True}, "1003 skipped: Do not disturb (dnd)"),
        ({"profile": "vacation", "login": True}, "1003 skipped: Vacation (offline)"),
        ({"paused": True}, "1003 paused"),
        ({"login": False}, "1003 logged out (phone)"),
    ],
)
def test_members_away_paused_or_logged_out_are_skipped_not_sent_to_voicemail(
    edit: dict[str, Any], skipped: str
) -> None:
    bengt, carol = candidates()
    eff = manual(edit["profile"]) if "profile" in edit else carol.effective
    state = QueueState(
        user="1003",
        login=edit.get("login"),
        paused=edit.get("paused", False),
        period=period(eff),
        set_via="phone" if "login" in edit else None,
    )
    decision = queue_decision(
        SALES, [bengt, Candidate(user=CAROL, effective=eff, state=state)], RULES
    )
    assert ids(decision) == ["1002-desk", "1002-soft"]
    assert skipped in decision.trace
    assert isinstance(decision, Ring) and decision.then.box == "1002"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fallback", "expected"),
    [
        (Fallback(action="busy"), Busy(trace=("busy",))),
        (
            Fallback(action="voicemail", target="1000"),
            Voicemail(box="1000", trace=("voicemail 1000",)),
        ),
        (
            Fallback(action="forward", target="1000"),
            Forward(target="1000", trace=("forward to 1000",)),
        ),
        (
            Fallback(action="forward", target="+46701740699"),
            Forward(target="+46701740699", trace=("forward to +46701740699",)),
        ),
    ],
)
def test_nobody_to_ring_goes_to_the_fallback_at_once(fallback: Fallback, expected: Any) -> None:
    queue = replace(SALES, fallback=fallback)
    decision = queue_decision(queue, candidates(u1002="lunch", u1003="sick"), RULES)
    assert type(decision) is type(expected)
    assert decision.trace[-len(expected.trace) - 1 :] == ("nobody to ring", *expected.trace)
    assert replace(decision, trace=expected.trace) == expected
    assert queue_decision(queue, [], RULES).trace[-len(expected.trace) - 1] == "nobody to ring"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "voicemail"}, "voicemail needs the extension"),
        ({"action": "voicemail", "target": "+46701740699"}, "voicemail needs the extension"),
        ({"action": "forward", "target": "mobile"}, "forward needs"),
        ({"action": "busy", "target": "1000"}, "busy takes no target"),
        ({"action": "hangup"}, "unknown fallback"),
    ],
)
def test_an_invalid_fallback_cannot_exist(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fallback(**kwargs)


def test_an_invalid_queue_cannot_exist() -> None:
    with pytest.raises(ValueError, match="number must be digits"):
        Queue(id="q", number="20a1", name="Q")
    with pytest.raises(ValueError, match="bad queue id"):
        Queue(id="Q!", number="2001", name="Q")
    with pytest.raises(ValueError, match="ring_seconds"):
        Queue(id="q", number="2001", name="Q", ring_seconds=0)


# -- config ---------------------------------------------------------------------------


def test_the_demo_config_has_a_queue_for_every_queue_users_list() -> None:
    listed = {q for u in CONFIG.users for q in u.queues}
    assert {q.id for q in CONFIG.queues} == listed == {"reception", "support", "sales"}
    assert CONFIG.queue_by_number("2001") == CONFIG.queue("support")
    assert CONFIG.queue_by_number("1001") is None
    support = CONFIG.queue("support")
    assert support is not None and str(support.fallback) == "forward:1000"


def _demo() -> dict[str, Any]:
    return tomllib.loads(SHIPPED.read_text())


@pytest.mark.parametrize(
    ("edit", "key", "reason"),
    [
        ({"number": "1001"}, "queues[1].number", "number '1001' is already used by user 1001"),
        ({"number": "2002"}, "queues[2].number", "number '2002' is already used"),
        ({"number": "02001"}, "queues[1].number", "must be 2-6 digits not starting with 0"),
        ({"id": "sales"}, "queues[2].id", "queue id 'sales' is already used"),
        ({"fallback": "voicemail:4711"}, "queues[1].fallback", "no user with extension 4711"),
        ({"fallback": "voicemail"}, "queues[1].fallback", "must be 'busy', 'voicemail:<ext"),
        ({"fallback": "hangup"}, "queues[1].fallback", "must be 'busy'"),
        ({"fallback": "forward:banana"}, "queues[1].fallback", "must be an extension or a phone"),
        ({"ring_seconds": 0}, "queues[1].ring_seconds", "must be an integer 1-600"),
        ({"colour": "red"}, "queues[1].colour", "unknown key"),
    ],
)
def test_bad_queue_config_names_file_key_and_reason(
    edit: dict[str, object], key: str, reason: str
) -> None:
    data = _demo()
    data["queues"][1].update(edit)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, SHIPPED)
    assert caught.value.key == key and reason in caught.value.reason, str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_user_listing_an_undefined_queue_is_an_error() -> None:
    data = _demo()
    data["users"][2]["queues"] = ["support", "salse"]
    with pytest.raises(ConfigError, match=r"users\[2\]\.queues\[1\]: no queue 'salse'"):
        parse_config(data, SHIPPED)
    data = _demo()
    del data["queues"]  # without [[queues]], queue names are labels only
    assert parse_config(data, SHIPPED).queues == ()


# -- store ----------------------------------------------------------------------------


def test_queue_state_round_trips_with_version_and_audit(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "db.sqlite3") as store:
        assert store.queues.get("1002") == QueueState(user="1002")
        state = QueueState(
            user="1002",
            login=False,
            paused=True,
            period="p",
            set_by="1002",
            set_via="phone",
            set_at=NOW,
        )
        entry = AuditEntry(
            at=NOW,
            actor="1002",
            action="queue_logout",
            target_user="1002",
            via="phone",
            detail={"queues": []},
        )
        saved = store.queues.save(state, 0, entry)
        assert saved == replace(state, version=1)
        with pytest.raises(ConflictError):
            store.queues.save(replace(state, login=True), 0)
        assert store.queues.get("1002") == saved  # the refused save changed nothing
        again = store.queues.save(replace(saved, login=None, paused=False), 1)
        found = store.queues.get_many(["1003", "1002"])
        assert found == {"1003": QueueState(user="1003"), "1002": again}
        assert again.version == 2 and again.login is None
        (audited,) = store.audit.query(user="1002")
        assert (audited.action, audited.detail) == ("queue_logout", {"queues": []})


def test_a_failed_audit_write_leaves_the_queue_state_unchanged(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "db.sqlite3") as store:
        naive = AuditEntry(
            at=datetime(2026, 1, 1),
            actor="x",
            action="queue_login",
            target_user="1002",
            via="phone",
        )
        with pytest.raises(ValueError):
            store.queues.save(QueueState(user="1002", login=True), 0, naive)
        assert store.queues.get("1002").version == 0


# -- the service: *45/*46 stored and audited, profile changes clear the choice -----------


@pytest_twisted.inlineCallbacks
def test_the_service_stores_and_audits_phone_changes_and_profile_changes_clear_them(
    tmp_path: Path,
) -> None:
    store = AsyncStore.for_path(tmp_path / "db.sqlite3", reactor)
    yield store.start()
    profiles = ProfileService(CONFIG, store, lambda: NOW)
    queues = QueueService(profiles)
    try:
        out = yield queues.execute("1003", QueueToggle(), actor="1003", via="phone")
        assert out.action == "queue_logout" and out.state.version == 1
        found = yield queues.candidates(SALES)
        assert [c.user.extension for c in found] == ["1002", "1003"]
        carol = found[1]
        assert queues.memberships(carol)[0].logged_in is False
        decision = queue_decision(SALES, found, RULES)
        assert ids(decision) == ["1002-desk", "1002-soft"]

        paused = yield queues.execute("1003", QueuePause(), actor="1003", via="phone")
        assert (paused.action, paused.changed) == ("queue_logout", False)

        # A profile change clears the *45 choice: back in Tillgänglig, Carol is logged in.
        yield profiles.execute("1003", DndOn(), actor="1003", via="phone")
        yield profiles.execute("1003", BackToStandard(), actor="1003", via="phone")
        found = yield queues.candidates(SALES)
        assert ids(queue_decision(SALES, found, RULES)) == [
            "1002-desk",
            "1002-soft",
            "1003-desk",
            "1003-soft",
        ]
        # Lunch: logged out by the profile, skipped.
        lunch = ActivateProfile(profile="lunch", number=2)
        yield profiles.execute("1002", lunch, actor="1002", via="api")
        found = yield queues.candidates(SALES)
        assert ids(queue_decision(SALES, found, RULES)) == ["1003-desk", "1003-soft"]
    finally:
        yield store.stop()
    with SqliteStore(tmp_path / "db.sqlite3") as sync:
        carol_log = sync.audit.query(user="1003")
        bengt_log = sync.audit.query(user="1002")
        state = sync.queues.get("1003")
    # Back in Tillgänglig logged Carol in: that has an entry of its own, after the change's
    # (DND changed nothing: her *45 had logged her out already).
    assert [e.action for e in carol_log] == [
        "queue_login",
        "back_to_standard",
        "dnd_on",
        "queue_logout",
    ]
    login = carol_log[0]
    assert (login.actor, login.via, login.at) == ("1003", "phone", carol_log[1].at)
    assert login.detail["queues"] == ["sales"] and login.detail["was"] == []
    assert login.detail["because"] == "profile available"
    assert [e.action for e in bengt_log] == ["queue_logout", "activate"]
    assert bengt_log[0].detail["because"] == "profile lunch" and bengt_log[0].via == "api"
    assert state.blank and state.version == 2  # the DND change cleared the choice
