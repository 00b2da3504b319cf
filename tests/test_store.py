"""SqliteStore repositories on real files: round trips, conflicts, atomicity."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.routing.state import Activation, AuditEntry, UserState
from ivr.sip.registrar import Binding
from ivr.store import ConflictError, SqliteStore, Store
from ivr.store.codec import decode_datetime, encode_datetime

STHLM = ZoneInfo("Europe/Stockholm")


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SqliteStore(tmp_path / "ivr.db", random_bytes=random.Random(0).randbytes)
    yield s
    s.close()


def act(profile: str = "lunch", **kw: object) -> Activation:
    args: dict[str, object] = {
        "profile": profile,
        "source": "manual",
        "set_by": "1001",
        "set_via": "phone",
        "set_at": datetime(2024, 6, 3, 11, 30, 0, 123456, tzinfo=STHLM),
    }
    args.update(kw)
    return Activation(**args)  # type: ignore[arg-type]


def entry(n: int = 0, **kw: object) -> AuditEntry:
    args: dict[str, object] = {
        "at": datetime(2024, 6, 3, 9, 0, tzinfo=UTC) + timedelta(minutes=n),
        "actor": "1001",
        "action": "activate",
        "target_user": "1001",
        "via": "phone",
        "detail": {"n": n},
    }
    args.update(kw)
    return AuditEntry(**args)  # type: ignore[arg-type]


def full_state() -> UserState:
    return UserState(
        user="1001",
        forced=act(
            "sick",
            source="forced",
            set_by="admin",
            set_via="api",
            set_at=datetime(2024, 6, 1, 8, 0, tzinfo=UTC),
        ),
        manual=(
            act("meeting", until=datetime(2024, 6, 3, 15, 0, tzinfo=STHLM)),
            act(
                "lunch",
                set_via="ivr",
                set_at=datetime(
                    2024, 6, 3, 5, 31, tzinfo=timezone(timedelta(hours=-5, minutes=-30))
                ),
                until=datetime(2024, 6, 3, 13, 0, 0, 1, tzinfo=STHLM),
            ),
            act("gone", set_via="schedule", until=datetime(2024, 12, 27, 8, 0, tzinfo=STHLM)),
        ),
    )


def test_sqlite_store_satisfies_the_protocol(store: SqliteStore) -> None:
    typed: Store = store
    assert typed.states is store.states


def test_missing_state_is_empty_at_version_zero(store: SqliteStore) -> None:
    assert store.states.get("nobody") == UserState(user="nobody")


def test_state_round_trips_every_field(store: SqliteStore, tmp_path: Path) -> None:
    state = full_state()
    saved = store.states.save(state, 0)
    assert saved.version == 1
    store.close()
    with SqliteStore(tmp_path / "ivr.db") as reopened:
        loaded = reopened.states.get("1001")
    assert loaded == UserState(user="1001", forced=state.forced, manual=state.manual, version=1)
    pairs = [(loaded.forced, state.forced), *zip(loaded.manual, state.manual, strict=True)]
    for got, want in pairs:
        assert got is not None and want is not None
        for name in ("set_at", "until"):
            g, w = getattr(got, name), getattr(want, name)
            assert g == w
            if w is not None:
                assert g.tzinfo is not None and g.utcoffset() == w.utcoffset()
                assert g.tzinfo == w.tzinfo or isinstance(w.tzinfo, timezone)


def test_zoneinfo_is_kept_by_name(store: SqliteStore) -> None:
    store.states.save(UserState(user="u", manual=(act(),)), 0)
    assert store.states.get("u").manual[0].set_at.tzinfo is STHLM


def test_save_replaces_stack_and_clears_forced(store: SqliteStore) -> None:
    store.states.save(full_state(), 0)
    smaller = UserState(user="1001", manual=(act("lunch"),))
    assert store.states.save(smaller, 1).version == 2
    assert store.states.get("1001") == UserState(user="1001", manual=(act("lunch"),), version=2)


def test_optimistic_concurrency(tmp_path: Path) -> None:
    a = SqliteStore(tmp_path / "db")
    b = SqliteStore(tmp_path / "db")
    try:
        seen_a = a.states.get("1001")
        seen_b = b.states.get("1001")
        a.states.save(UserState(user="1001", manual=(act("lunch"),)), seen_a.version)
        with pytest.raises(ConflictError) as info:
            b.states.save(UserState(user="1001", manual=(act("meeting"),)), seen_b.version)
        assert (info.value.expected, info.value.actual) == (0, 1)
        assert b.states.get("1001").manual[0].profile == "lunch"
        with pytest.raises(ConflictError):
            b.states.save(UserState(user="1001"), 5)
    finally:
        a.close()
        b.close()


def test_state_with_audit_is_one_transaction(store: SqliteStore) -> None:
    saved = store.save_state_with_audit(full_state(), 0, entry(1))
    assert saved.version == 1
    assert store.audit.query() == [entry(1)]
    with pytest.raises(ConflictError):
        store.save_state_with_audit(UserState(user="1001"), 0, entry(2))
    with pytest.raises(ValueError, match="JSON"):
        store.save_state_with_audit(UserState(user="1001"), 1, entry(3, detail={"x": object()}))
    assert store.audit.query() == [entry(1)]
    assert store.states.get("1001") == saved


def test_audit_round_trip_and_query(store: SqliteStore) -> None:
    rich = entry(
        5,
        at=datetime(2024, 6, 3, 11, 5, 30, 999999, tzinfo=STHLM),
        actor="admin",
        target_user="1002",
        via="api",
        detail={"profile": "lunch", "until": "13:00", "nested": {"a": [1, 2.5, None, True]}},
        on_behalf_of="1002",
    )
    entries = [entry(n) for n in range(4)] + [rich]
    for e in entries:
        assert store.audit.append(e) > 0
    everything = store.audit.query()
    assert everything == sorted(entries, key=lambda e: e.at, reverse=True)
    assert store.audit.query(user="1002") == [rich]
    assert store.audit.query(user="1002")[0].at.tzinfo is STHLM
    t0 = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
    window = store.audit.query(
        user="1001", since=t0 + timedelta(minutes=1), until=t0 + timedelta(minutes=3)
    )
    assert window == [entry(2), entry(1)]
    assert store.audit.query(limit=2) == everything[:2]
    with pytest.raises(ValueError):
        store.audit.query(limit=0)
    with pytest.raises(ValueError):
        store.audit.query(since=datetime(2024, 1, 1))


def test_naive_datetime_is_refused(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.audit.append(entry(at=datetime(2024, 1, 1)))


def binding(n: int, aor: str = "sip:1001@pbx", **kw: object) -> Binding:
    args: dict[str, object] = {
        "aor": aor,
        "contact": f"sip:1001@192.0.2.{n}:5060",
        "expires_at": 1000.5 + n,
        "call_id": f"call-{n}",
        "cseq": n,
    }
    args.update(kw)
    return Binding(**args)  # type: ignore[arg-type]


def test_registrations_round_trip_and_batches(store: SqliteStore) -> None:
    full = binding(
        1, q=0.25, source="tcp:192.0.2.1:40000", instance="<urn:uuid:00000000-1>", reg_id=2
    )
    store.registrations.replace_all([full, binding(2), binding(3, aor="sip:1002@pbx")])
    assert set(store.registrations.load_all()) == {full, binding(2), binding(3, aor="sip:1002@pbx")}
    store.registrations.apply(
        upserts=[binding(2, cseq=9), binding(4)], deletes=[full.key, ("sip:x", "sip:none")]
    )
    assert set(store.registrations.load_all()) == {
        binding(2, cseq=9),
        binding(3, aor="sip:1002@pbx"),
        binding(4),
    }
    store.registrations.upsert([binding(5)])
    store.registrations.delete([binding(4).key])
    store.registrations.apply()
    store.registrations.replace_all([binding(6)])
    assert store.registrations.load_all() == [binding(6)]
    store.registrations.replace_all([])
    assert store.registrations.load_all() == []


def test_meta_and_auth_secret(tmp_path: Path) -> None:
    draws: list[int] = []

    def rnd(n: int) -> bytes:
        draws.append(n)
        return bytes(range(n))

    with SqliteStore(tmp_path / "m.db", random_bytes=rnd) as s:
        assert s.meta.get("k") is None
        s.meta.set("k", b"\x00\xffv")
        s.meta.set("k", b"v2")
        assert s.meta.get("k") == b"v2"
        secret = s.meta.auth_secret()
        assert secret == bytes(range(32))
        assert s.meta.auth_secret() == secret
    with SqliteStore(tmp_path / "m.db", random_bytes=rnd) as s:
        assert s.meta.auth_secret() == secret
    assert draws == [32]


def test_pragmas(store: SqliteStore, tmp_path: Path) -> None:
    conn = store._db.conn  # white-box: the settings the durability claims rest on
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO activation VALUES ('ghost', 'manual', 0, 'p', 'manual', 'x', 'api', "
            "'2024-01-01T00:00:00+00:00', NULL)"
        )


def test_connection_is_bound_to_its_thread(store: SqliteStore) -> None:
    import threading

    errors: list[BaseException] = []

    def use() -> None:
        try:
            store.states.get("1001")
        except sqlite3.ProgrammingError as exc:
            errors.append(exc)

    t = threading.Thread(target=use)
    t.start()
    t.join()
    assert len(errors) == 1


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.timezones(),
        allow_imaginary=False,
    )
)
def test_datetime_codec_round_trips(value: datetime) -> None:
    decoded = decode_datetime(encode_datetime(value))
    assert decoded == value
    assert decoded.utcoffset() == value.utcoffset()
    assert decoded.replace(tzinfo=None) == value.replace(tzinfo=None)
