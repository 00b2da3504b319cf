"""AsyncStore: every call runs on one worker thread, never on the reactor thread."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from ivr.routing.state import Activation, AuditEntry, UserState
from ivr.sip.registrar import Binding
from ivr.store import ConflictError, SchemaVersionError, SqliteStore, StoreError
from ivr.store.async_store import AsyncStore


def lunch() -> UserState:
    act = Activation(
        profile="lunch", source="manual", set_by="1001", set_via="api", set_at=datetime.now(UTC)
    )
    return UserState(user="1001", manual=(act,))


@pytest_twisted.inlineCallbacks
def test_all_work_happens_on_one_store_thread(tmp_path: Path):  # type: ignore[no-untyped-def]
    reactor_thread = threading.get_ident()
    opened_on: list[int] = []

    def open_store() -> SqliteStore:
        opened_on.append(threading.get_ident())
        return SqliteStore(tmp_path / "a.db")

    store = AsyncStore(open_store, reactor)
    yield store.start()
    idents = set()
    for _ in range(3):
        idents.add((yield store.run(lambda s: threading.get_ident())))
    assert idents == set(opened_on) and reactor_thread not in idents

    entry = AuditEntry(
        at=datetime.now(UTC), actor="1001", action="activate", target_user="1001", via="api"
    )
    saved = yield store.save_state_with_audit(lunch(), 0, entry)
    assert saved.version == 1
    assert (yield store.get_state("1001")) == saved
    assert (yield store.query_audit(user="1001")) == [entry]
    with pytest.raises(ConflictError):
        yield store.save_state(lunch(), 0)
    assert (yield store.append_audit(entry)) == 2

    b = Binding(
        aor="sip:1001@pbx", contact="sip:1001@192.0.2.1", expires_at=5.0, call_id="c", cseq=1
    )
    yield store.replace_registrations([b])
    yield store.apply_registrations(upserts=[], deletes=[b.key])
    assert (yield store.load_registrations()) == []
    yield store.set_meta("k", b"v")
    assert (yield store.get_meta("k")) == b"v"
    assert len((yield store.auth_secret())) == 32
    yield store.stop()
    with pytest.raises(StoreError):
        yield store.run(lambda s: None)


@pytest_twisted.inlineCallbacks
def test_reactor_keeps_running_while_the_store_works(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = AsyncStore.for_path(tmp_path / "b.db", reactor)
    yield store.start()
    release = threading.Event()

    def slow(s: SqliteStore) -> str:
        assert release.wait(timeout=10), "reactor never got to run"
        return s.states.get("1001").user

    pending = store.run(slow)
    queued = store.get_state("1001")  # runs after slow: one thread, in order
    yield deferLater(reactor, 0, release.set)  # only possible if the reactor is free
    assert (yield pending) == "1001"
    assert (yield queued).version == 0
    yield store.stop()


@pytest_twisted.inlineCallbacks
def test_connection_never_leaves_its_thread(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = AsyncStore.for_path(tmp_path / "c.db", reactor)
    yield store.start()
    leaked = yield store.run(lambda s: s)
    with pytest.raises(sqlite3.ProgrammingError):
        leaked.states.get("1001")  # sqlite3 refuses use from the reactor thread
    yield store.stop()


@pytest_twisted.inlineCallbacks
def test_start_fails_on_newer_schema(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "d.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 999")
    conn.commit()
    conn.close()
    store = AsyncStore.for_path(path, reactor)
    with pytest.raises(SchemaVersionError):
        yield store.start()
    yield store.stop()


def test_requires_a_threaded_reactor() -> None:
    with pytest.raises(TypeError):
        AsyncStore(lambda: SqliteStore(":memory:"), object())


@pytest_twisted.inlineCallbacks
def test_states_are_answered_from_memory_until_a_write(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = AsyncStore.for_path(tmp_path / "c.db", reactor)
    yield store.start()
    try:
        reads: list[int] = []
        yield store.run(lambda s: None)
        original_get = store._call

        def counting(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
            reads.append(1)
            return original_get(fn, *args, **kwargs)

        store._call = counting  # type: ignore[method-assign]
        first = yield store.get_state("1001")
        again = store.get_state("1001")
        assert again.called  # answered at once, no trip to the store thread
        assert (yield again) == first and len(reads) == 1

        # a read queued before a write must not put the old state back
        before = store.get_state("1002")
        saving = store.save_state(lunch(), 0)
        assert (yield before).version == 0
        saved = yield saving
        after = yield store.get_state("1001")
        assert after == saved and after.version == 1
        assert (yield store.get_state("1001")) == saved

        with pytest.raises(ConflictError):
            yield store.save_state(lunch(), 0)  # a failed write also forgets
        assert (yield store.get_state("1001")) == saved
    finally:
        yield store.stop()
