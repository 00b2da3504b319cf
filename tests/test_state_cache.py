"""StateCache: remembered reads, never an older state put back by an overlapping read."""

from __future__ import annotations

from datetime import UTC, datetime

from ivr.routing.state import Activation, UserState
from ivr.store.state_cache import StateCache

AT = datetime(2026, 11, 26, 11, 30, tzinfo=UTC)


def state(profile: str | None, version: int) -> UserState:
    if profile is None:
        return UserState(user="1001", version=version)
    act = Activation(profile=profile, source="manual", set_by="1001", set_via="api", set_at=AT)
    return UserState(user="1001", manual=(act,), version=version)


def test_a_read_is_remembered_until_a_write_starts() -> None:
    cache = StateCache()
    assert cache.get("1001") is None
    token = cache.read_started("1001")
    cache.read_done("1001", token, state(None, 0))
    assert cache.get("1001") == state(None, 0)
    cache.write_started("1001")
    assert cache.get("1001") is None
    cache.write_done("1001")
    assert cache.get("1001") is None  # the next read asks the store


def test_a_read_started_before_a_write_is_not_remembered() -> None:
    cache = StateCache()
    token = cache.read_started("1001")
    cache.write_started("1001")
    cache.write_done("1001")
    cache.read_done("1001", token, state(None, 0))  # older than the write: dropped
    assert cache.get("1001") is None


def test_a_read_finishing_while_a_write_is_in_flight_is_not_remembered() -> None:
    cache = StateCache()
    cache.write_started("1001")
    token = cache.read_started("1001")  # queued behind the write on the store thread
    cache.read_done("1001", token, state("lunch", 1))
    assert cache.get("1001") is None  # a write still in flight: not trusted
    cache.write_done("1001")
    token = cache.read_started("1001")
    cache.read_done("1001", token, state("lunch", 1))
    assert cache.get("1001") == state("lunch", 1)


def test_overlapping_writes_keep_the_user_forgotten_until_the_last_is_done() -> None:
    cache = StateCache()
    cache.write_started("1001")
    cache.write_started("1001")
    cache.write_done("1001")
    token = cache.read_started("1001")
    cache.read_done("1001", token, state("lunch", 1))
    assert cache.get("1001") is None
    cache.write_done("1001")
    token = cache.read_started("1001")
    cache.read_done("1001", token, state("lunch", 2))
    assert cache.get("1001") == state("lunch", 2)


def test_other_users_are_untouched_and_the_size_is_bounded() -> None:
    cache = StateCache(limit=2)
    for user in ("1001", "1002"):
        cache.read_done(user, cache.read_started(user), UserState(user=user))
    cache.write_started("1001")
    assert cache.get("1002") == UserState(user="1002")
    cache.read_done("1003", cache.read_started("1003"), UserState(user="1003"))
    cache.read_done("1004", cache.read_started("1004"), UserState(user="1004"))
    assert sum(cache.get(u) is not None for u in ("1001", "1002", "1003", "1004")) <= 2
    assert cache.get("1004") == UserState(user="1004")
