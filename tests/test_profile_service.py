"""Profile changes through the store: stored with their audit entry, one user at a time."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest_twisted
from twisted.internet import defer, reactor

from ivr.config import load_config
from ivr.profile_service import ProfileService, UnknownUser
from ivr.routing.features import ActivateProfile, BackToStandard, DndToggle, QueryProfile
from ivr.routing.profiles import AtTime
from ivr.store.async_store import AsyncStore
from ivr.store.sqlite import SqliteStore

CONFIG = load_config(Path(__file__).resolve().parents[1] / "config" / "ivr.toml")
TZ = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=TZ)  # a Wednesday morning


@pytest_twisted.inlineCallbacks
def test_concurrent_changes_of_one_user_all_land_in_order(tmp_path: Path) -> None:
    store = AsyncStore.for_path(tmp_path / "db.sqlite3", reactor)
    yield store.start()
    service = ProfileService(CONFIG, store, lambda: NOW)
    try:
        commands = [DndToggle() for _ in range(20)]
        results = yield defer.gatherResults(
            [service.execute("1002", c, actor="1002", via="phone") for c in commands]
        )
        assert [r.action for r in results] == ["dnd_on", "dnd_off"] * 10
        found = yield service.current("1002")
        assert found.profile.id == "available"
    finally:
        yield store.stop()
    with SqliteStore(tmp_path / "db.sqlite3") as sync:
        entries = sync.audit.query(user="1002", limit=100)
        state = sync.states.get("1002")
    assert len(entries) == 20
    assert state.version == 20


@pytest_twisted.inlineCallbacks
def test_activation_until_a_time_and_back(tmp_path: Path) -> None:
    store = AsyncStore.for_path(tmp_path / "db.sqlite3", reactor)
    yield store.start()
    service = ProfileService(CONFIG, store, lambda: NOW)
    try:
        lunch = ActivateProfile(profile="lunch", number=2, until=AtTime(hour=13, minute=0))
        result = yield service.execute("1001", lunch, actor="1001", via="phone")
        assert result.changed and result.after.profile.id == "lunch"
        assert result.after.until == datetime(2026, 11, 25, 13, 0, tzinfo=TZ)
        query = yield service.execute("1001", QueryProfile(), actor="1001", via="phone")
        assert not query.changed and query.after.profile.id == "lunch"
        back = yield service.execute("1001", BackToStandard(), actor="1001", via="phone")
        assert back.after.profile.id == "available"
    finally:
        yield store.stop()
    with SqliteStore(tmp_path / "db.sqlite3") as sync:
        actions = [e.action for e in sync.audit.query(user="1001")]
    assert actions == ["back_to_standard", "activate"]  # the query is not audited


@pytest_twisted.inlineCallbacks
def test_unknown_user_is_refused(tmp_path: Path) -> None:
    store = AsyncStore.for_path(tmp_path / "db.sqlite3", reactor)
    yield store.start()
    try:
        service = ProfileService(CONFIG, store, lambda: NOW)
        try:
            yield service.execute("4711", QueryProfile(), actor="x", via="api")
        except UnknownUser:
            pass
        else:
            raise AssertionError("unknown user accepted")
    finally:
        yield store.stop()
