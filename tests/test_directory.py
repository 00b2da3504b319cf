"""The live directory: serialisers round-trip through the config parser, cross-checks
name the broken field, the overlay survives a store round trip and a changed config
file, the holder swaps snapshots for every reader, and commits are atomic and audited."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from twisted.internet import defer

from ivr.config import ConfigError, load_config, parse_profile, parse_schedule, parse_user
from ivr.directory import (
    Directory,
    OverlayRow,
    overlay,
    problems,
    profile_data,
    rebuild,
    schedule_data,
    user_data,
)
from ivr.directory_service import DirectoryService, Inconsistent, VersionConflict
from ivr.profile_service import ProfileService
from ivr.routing.state import AuditEntry
from ivr.store.directory import DirectoryConflict
from ivr.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[1]
CONFIG = load_config(REPO / "config" / "ivr.toml")
AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FILE = "/api/v1/users"


def entry(action: str = "user.update") -> AuditEntry:
    return AuditEntry(at=AT, actor="1000", action=action, target_user="1001", via="api")


@pytest.mark.parametrize("user", CONFIG.users, ids=lambda u: u.extension)
def test_users_round_trip_through_the_parser(user) -> None:
    data = user_data(user, secrets=True)
    assert parse_user(data, CONFIG.company, CONFIG.profiles, FILE) == user
    public = user_data(user, secrets=False)
    assert "pin" not in public and all("password" not in d for d in public["devices"])


@pytest.mark.parametrize("profile", CONFIG.profiles, ids=lambda p: p.id)
def test_profiles_round_trip_through_the_parser(profile) -> None:
    assert parse_profile(profile_data(profile), CONFIG.company, "/p") == profile


def test_schedules_round_trip() -> None:
    for user in CONFIG.users:
        for i, s in enumerate(user.schedules):
            assert parse_schedule(schedule_data(s), CONFIG.profiles, "/s", i) == s


def test_parser_errors_name_the_api_path_and_key() -> None:
    data = user_data(CONFIG.users[1], secrets=True)
    data["devices"][0]["password"] = "short"
    with pytest.raises(ConfigError) as caught:
        parse_user(data, CONFIG.company, CONFIG.profiles, FILE)
    assert caught.value.file == FILE and caught.value.key == "devices[0].password"
    good = user_data(CONFIG.users[1], secrets=True)
    with pytest.raises(ConfigError, match="nmae: unknown key; did you mean 'name'"):
        parse_user({**good, "nmae": "x"}, CONFIG.company, CONFIG.profiles, FILE)


def test_the_config_file_has_no_problems() -> None:
    assert problems(CONFIG.company, CONFIG.users, CONFIG.profiles) == []


def test_problems_name_both_sides_and_the_field() -> None:
    anna, bengt = CONFIG.user("1001"), CONFIG.user("1002")
    assert anna is not None and bengt is not None
    twin = replace(bengt, did=anna.did)
    users = [twin if u is bengt else u for u in CONFIG.users]
    found = {(p.key, p.field) for p in problems(CONFIG.company, users, CONFIG.profiles)}
    assert found == {("1002", "did"), ("1001", "did")}
    without_operator = [u for u in CONFIG.users if u.extension != CONFIG.company.operator]
    found = {
        (p.kind, p.key, p.field)
        for p in problems(CONFIG.company, without_operator, CONFIG.profiles)
    }
    assert ("company", "*", "operator") in found
    no_lunch = [p for p in CONFIG.profiles if p.id != "lunch"]
    found = {(p.key, p.field) for p in problems(CONFIG.company, CONFIG.users, no_lunch)}
    assert ("1001", "schedules[0].profile") in found
    no_standard = [p for p in CONFIG.profiles if p.number != 1]
    assert any(p.key == "*" for p in problems(CONFIG.company, CONFIG.users, no_standard))


def test_rebuild_reindexes_and_teaches_feature_codes() -> None:
    sick = next(p for p in CONFIG.profiles if p.number == 8)
    training = replace(sick, id="training")
    profiles = [training if p is sick else p for p in CONFIG.profiles]
    new = rebuild(CONFIG, CONFIG.users, profiles)
    assert new.profile("training") is training and new.profile(sick.id) is None
    parsed = new.feature_codes.parse("*23*8#")
    assert getattr(parsed, "profile", None) == "training"
    assert CONFIG.profile(sick.id) is sick, "the old snapshot is untouched"


def test_holder_swaps_for_every_reader() -> None:
    directory = Directory(CONFIG)
    service = ProfileService(directory, store=None, now=lambda: AT)  # type: ignore[arg-type]
    seen: list[tuple[object, object]] = []
    directory.on_change(lambda old, new: seen.append((old, new)))
    anna = CONFIG.user("1001")
    assert anna is not None
    renamed = replace(anna, name="Anna A")
    new = rebuild(CONFIG, [renamed if u is anna else u for u in CONFIG.users], CONFIG.profiles)
    directory.swap(new, {("user", "1001"): 3})
    assert service.config.user("1001") == renamed and service.rules is new.rules
    assert directory.version("user", "1001") == 3 and directory.version("user", "1002") == 0
    assert seen == [(CONFIG, new)]


def test_overlay_round_trips_through_sqlite_and_skips_rows_that_no_longer_fit(
    tmp_path: Path,
) -> None:
    anna = CONFIG.user("1001")
    assert anna is not None
    changed = user_data(replace(anna, name="Anna Changed"), secrets=True)
    with SqliteStore(tmp_path / "db.sqlite3") as store:
        store.directory.commit("user", "1001", changed, 0, entry())
        store.directory.commit("user", "1003", None, 0, entry("user.delete"))
        with pytest.raises(DirectoryConflict):
            store.directory.commit("user", "1001", changed, 0, entry())
        rows = store.directory.load()
        assert [(r.key, r.version, r.deleted) for r in rows] == [
            ("1001", 1, False),
            ("1003", 1, True),
        ]
        assert [e.action for e in store.audit.query(user="1001")] == ["user.delete", "user.update"]
    result = overlay(CONFIG, rows)
    assert result.config.user("1001").name == "Anna Changed"  # type: ignore[union-attr]
    assert result.config.user("1003") is None and result.skipped == []
    # the file changed: a row that now breaks a cross-reference is left out, with why
    clash = replace(anna, did=CONFIG.user("1002").did)  # type: ignore[union-attr]
    bad = OverlayRow(kind="user", key="1001", data=user_data(clash, secrets=True), version=2)
    junk = OverlayRow(kind="profile", key="x", data={"id": "x"}, version=1, seq=5)
    result = overlay(CONFIG, [bad, junk])
    assert result.config.user("1001") == anna
    assert {row.key for row, _ in result.skipped} == {"1001", "x"}
    assert result.versions[("user", "1001")] == 2


def test_store_commit_is_atomic_with_its_audit_entry(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "db.sqlite3") as store:
        broken = AuditEntry(
            at=AT, actor="1000", action="x", target_user="1001", via="api", detail={"bad": object()}
        )
        with pytest.raises(ValueError, match="not JSON-serialisable"):
            store.directory.commit("user", "1001", {"extension": "1001"}, 0, broken)
        assert store.directory.load() == []


@pytest.fixture
def live(tmp_path: Path):
    store = SqliteStore(tmp_path / "db.sqlite3")

    class Sync:
        def run(self, fn):
            return defer.maybeDeferred(fn, store)

    service = DirectoryService(Directory(CONFIG), Sync(), lambda: AT)  # type: ignore[arg-type]
    yield service, store
    store.close()


def _result(d: defer.Deferred) -> object:
    out: list[object] = []
    d.addBoth(out.append)
    assert out, "the commit did not finish synchronously"
    return out[0]


def test_service_commits_swaps_and_checks(live) -> None:
    service, store = live
    anna = CONFIG.user("1001")
    d = service.commit(
        "user",
        "1001",
        lambda c: replace(c.user("1001"), name="Anna B"),
        if_match=0,
        actor="1000",
        action="user.update",
        target_user="1001",
        on_behalf_of=None,
    )
    committed = _result(d)
    assert committed.version == 1 and committed.before == anna  # type: ignore[union-attr]
    assert service.config.user("1001").name == "Anna B"
    (saved,) = store.audit.query(user="1001")
    assert saved.detail == {"kind": "user", "key": "1001", "version": 1, "fields": ["name"]}
    stale = _result(
        service.commit(
            "user",
            "1001",
            lambda c: None,
            if_match=0,
            actor="1000",
            action="user.delete",
            target_user="1001",
        )
    )
    assert stale.check(VersionConflict)  # type: ignore[union-attr]
    lunchless = _result(
        service.commit(
            "profile",
            "lunch",
            lambda c: None,
            if_match=None,
            actor="1000",
            action="profile.delete",
            target_user="*",
        )
    )
    assert lunchless.check(Inconsistent)  # type: ignore[union-attr]
    assert service.config.profile("lunch") is not None, "nothing changed"
    assert [e.action for e in store.audit.query()] == ["user.update"]


def test_problems_know_the_queues() -> None:
    bengt = CONFIG.user("1002")
    assert bengt is not None and CONFIG.queues
    queues = CONFIG.queues
    clash = replace(bengt, extension="2001", devices=())
    users = [*CONFIG.users, clash]
    found = {(p.key, p.field) for p in problems(CONFIG.company, users, CONFIG.profiles, queues)}
    assert ("2001", "extension") in found
    stray = replace(bengt, queues=("support", "nowhere"))
    users = [stray if u is bengt else u for u in CONFIG.users]
    found = {(p.key, p.field) for p in problems(CONFIG.company, users, CONFIG.profiles, queues)}
    assert found == {("1002", "queues[1]")}
    without = [u for u in CONFIG.users if u is not bengt]
    found = {(p.kind, p.key) for p in problems(CONFIG.company, without, CONFIG.profiles, queues)}
    assert ("queue", "sales") in found, "sales falls back to 1002's voicemail"
