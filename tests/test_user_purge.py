"""Purging a deleted user's data: real SQLite, real files (ivr.store.purge)."""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import pytest_twisted
from twisted.internet import reactor

from ivr import greetings
from ivr.app import sweep_orphans
from ivr.call_records import CallRecord
from ivr.pin_guard import PinRecord
from ivr.record_menu import Greeting, Name
from ivr.routing.queues import QueueState
from ivr.routing.state import Activation, AuditEntry, UserState
from ivr.store import SqliteStore
from ivr.store.async_store import AsyncStore
from ivr.store.errors import MailboxPurged
from ivr.store.purge import STASH_PREFIX, Purged

AT = datetime(2026, 3, 2, 11, 30, tzinfo=UTC)
PCM = (np.sin(np.arange(8000) / 5.0) * 8000).astype(np.int16)


def entry(user: str, action: str = "profile.activate") -> AuditEntry:
    return AuditEntry(at=AT, actor=user, action=action, target_user=user, via="api")


def lunch(user: str) -> UserState:
    act = Activation(profile="lunch", source="manual", set_by=user, set_via="api", set_at=AT)
    return UserState(user=user, manual=(act,))


def record(record_id: str, user: str) -> CallRecord:
    return CallRecord(
        id=record_id,
        kind="user",
        caller="1002",
        caller_user="1002",
        dialled=user,
        user=user,
        users=(user,),
        started_at=AT,
        answered_at=None,
        ended_at=AT,
        outcome="voicemail",
        status=None,
        legs=(),
        decisions=(),
        steps=(),
    )


def give_data(store: SqliteStore, root: Path, user: str) -> None:
    """State, queue choice, two tokens, two messages, PIN counters, greetings, a name."""
    store.save_state_with_audit(lunch(user), 0, entry(user))
    store.queues.save(QueueState(user=user, login=False, period="p"), 0, entry(user, "queue"))
    for n in (1, 2):
        digest = f"{user}{n}".ljust(64, "a")
        store.tokens.add(token_hash=digest, user=user, admin=False, label="", created_at=AT)
        store.voicemail.add(mailbox=user, caller="1002", called=user, received_at=AT, pcm=PCM)
    store.selfservice.save_pin_record(PinRecord(account=user, failures=(1.0, 2.0)))
    store.call_records.add_all([record(f"call-{user}", user)])
    for profile in ("lunch", "meeting"):
        greetings.save(root, Greeting(extension=user, profile=profile), PCM)
    greetings.save(root, Name(extension=user), PCM)


def counts(store: SqliteStore, user: str) -> dict[str, int]:
    with sqlite3.connect(store.path) as conn:
        return {
            table: conn.execute(
                f"SELECT count(*) FROM {table} WHERE {col} = ?", (user,)
            ).fetchone()[0]
            for table, col in (
                ("user_state", "user"),
                ("activation", "user"),
                ("queue_state", "user"),
                ("api_token", "user"),
                ("voicemail", "mailbox"),
                ("pin_guard", "account"),
                ("audit", "target_user"),
                ("call_party", "user"),
            )
        }


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    with SqliteStore(tmp_path / "ivr.db", recordings_dir=tmp_path / "rec") as s:
        yield s


def test_purge_removes_the_users_data_and_keeps_history_and_others(
    store: SqliteStore, tmp_path: Path
) -> None:
    root = tmp_path / "rec"
    give_data(store, root, "1003")
    give_data(store, root, "1004")
    files_1003 = [store.voicemail.file(m) for m in store.voicemail.list("1003")]
    files_1004 = [store.voicemail.file(m) for m in store.voicemail.list("1004")]
    assert all(f.is_file() for f in files_1003 + files_1004)
    before_1004 = counts(store, "1004")

    purged, _ = store.purge_user("1003", recordings=greetings.user_dirs(root, "1003"))

    assert purged.counts() == {"voicemail": 2, "tokens": 2, "greetings": 2, "name": 1}
    assert (purged.state, purged.queue, purged.pin_guard) == (True, True, True)
    assert counts(store, "1003") == {
        "user_state": 0,
        "activation": 0,
        "queue_state": 0,
        "api_token": 0,
        "voicemail": 0,
        "pin_guard": 0,
        "audit": 2,  # history stays
        "call_party": 1,
    }
    assert store.call_records.get("call-1003") is not None
    assert store.states.get("1003") == UserState(user="1003")
    assert store.tokens.find("10031".ljust(64, "a")) is None
    assert not any(f.exists() for f in files_1003)
    assert greetings.greeting(root, "1003", "lunch") is None
    assert greetings.name(root, "1003") is None
    assert not (root / "greetings" / "1003").exists() and not (root / "names" / "1003").exists()
    assert not list((root / "greetings").glob(STASH_PREFIX + "*"))
    # the other user is untouched
    assert counts(store, "1004") == before_1004
    assert all(f.is_file() for f in files_1004)
    assert greetings.greeting(root, "1004", "lunch") is not None
    assert greetings.name(root, "1004") is not None
    assert store.states.get("1004").manual[0].profile == "lunch"


def test_a_new_message_after_the_purge_gets_a_new_file(store: SqliteStore, tmp_path: Path) -> None:
    give_data(store, tmp_path / "rec", "1003")
    old = {m.id for m in store.voicemail.list("1003")}
    store.purge_user("1003")
    new = store.voicemail.add(mailbox="1003", caller="1", called="1003", received_at=AT, pcm=PCM)
    assert new.id not in old
    assert [m.id for m in store.voicemail.list("1003")] == [new.id]


def test_a_message_recorded_before_the_purge_is_not_kept(store: SqliteStore) -> None:
    """A call still leaving a message when its user is deleted: the save is refused
    (no row, no file), while a message recorded after the purge is kept."""
    store.purge_user("1003", at=AT.timestamp())
    before = AT.replace(second=0)
    with pytest.raises(MailboxPurged):
        store.voicemail.add(mailbox="1003", caller="1", called="1003", received_at=before, pcm=PCM)
    assert store.voicemail.list("1003") == []
    assert not list((store.voicemail.root / "1003").glob("*.wav"))
    later = AT.replace(minute=31)
    kept = store.voicemail.add(
        mailbox="1003", caller="1", called="1003", received_at=later, pcm=PCM
    )
    assert store.voicemail.list("1003") == [kept]
    other = store.voicemail.add(
        mailbox="1002", caller="1", called="1002", received_at=before, pcm=PCM
    )
    assert store.voicemail.list("1002") == [other]  # only the purged mailbox is marked


def test_purge_of_a_user_without_data_counts_nothing(store: SqliteStore, tmp_path: Path) -> None:
    purged, result = store.purge_user("1009", recordings=greetings.user_dirs(tmp_path, "1009"))
    assert purged == Purged(user="1009", files={"greetings": 0, "name": 0})
    assert result is None


def test_within_runs_in_the_same_transaction(store: SqliteStore, tmp_path: Path) -> None:
    def within(s: SqliteStore, conn: sqlite3.Connection, purged: Purged) -> int:
        assert conn.in_transaction
        detail = {"purged": purged.counts()}
        e = AuditEntry(
            at=AT, actor="admin", action="user.delete", target_user="1003", via="api", detail=detail
        )
        return type(s.audit).append_in(conn, e)

    give_data(store, tmp_path / "rec", "1003")
    _, audit_id = store.purge_user("1003", within=within)
    assert audit_id is not None
    newest = store.audit.query(user="1003", limit=1)[0]
    assert newest.action == "user.delete"
    assert newest.detail == {"purged": {"voicemail": 2, "tokens": 2}}


def test_a_failure_midway_leaves_everything(store: SqliteStore, tmp_path: Path) -> None:
    root = tmp_path / "rec"
    give_data(store, root, "1003")
    before = counts(store, "1003")
    files = [store.voicemail.file(m) for m in store.voicemail.list("1003")]

    def fail(s: SqliteStore, conn: sqlite3.Connection, purged: Purged) -> None:
        assert purged.voicemail == 2  # the rows are gone inside the transaction ...
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        store.purge_user("1003", recordings=greetings.user_dirs(root, "1003"), within=fail)
    # ... and all back after it
    assert counts(store, "1003") == before
    assert all(f.is_file() for f in files)
    assert greetings.greeting(root, "1003", "meeting") is not None
    assert greetings.name(root, "1003") is not None
    assert not list((root / "greetings").glob(STASH_PREFIX + "*"))


def test_a_crash_after_the_stash_leaves_nothing_for_the_next_user(
    store: SqliteStore, tmp_path: Path
) -> None:
    """A stash left by a crash is no user's path, and the next purge sweeps it."""
    root = tmp_path / "rec"
    greetings.save(root, Greeting(extension="1003", profile="lunch"), PCM)
    left = root / "greetings" / f"{STASH_PREFIX}1003"
    (root / "greetings" / "1003").rename(left)  # as a crash after the rename would leave it
    assert greetings.greeting(root, "1003", "lunch") is None
    store.purge_user("1005", recordings=greetings.user_dirs(root, "1005"))
    assert not left.exists()


@pytest_twisted.inlineCallbacks
def test_async_purge_forgets_the_remembered_state(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = AsyncStore.for_path(tmp_path / "ivr.db", reactor, recordings_dir=tmp_path / "rec")
    yield store.start()
    try:
        yield store.save_state_with_audit(lunch("1003"), 0, entry("1003"))
        first = yield store.get_state("1003")
        assert first.manual[0].profile == "lunch"
        assert store._states.get("1003") == first  # remembered: served without the store
        purged, _ = yield store.purge_user(
            "1003", recordings=greetings.user_dirs(tmp_path / "rec", "1003")
        )
        assert purged.state
        assert store._states.get("1003") is None
        assert (yield store.get_state("1003")) == UserState(user="1003")
        # a failing purge forgets too (the store, not the cache, says what is stored)
        yield store.save_state_with_audit(lunch("1003"), 0, entry("1003"))
        yield store.get_state("1003")

        def fail(s: SqliteStore, conn: sqlite3.Connection, p: Purged) -> None:
            raise RuntimeError("no")

        with pytest.raises(RuntimeError):
            yield store.purge_user("1003", within=fail)
        assert store._states.get("1003") is None
        assert (yield store.get_state("1003")).manual[0].profile == "lunch"
    finally:
        yield store.stop()


@pytest_twisted.inlineCallbacks
def test_the_service_sweeps_voicemail_files_without_a_row(tmp_path: Path):  # type: ignore[no-untyped-def]
    """What a crash after a purge's commit leaves (a WAV without its row) is removed by
    the sweep ``ivr serve`` runs at start and hourly; a fresh file is left alone."""
    store = AsyncStore.for_path(tmp_path / "ivr.db", reactor, recordings_dir=tmp_path / "rec")
    yield store.start()
    try:
        kept = yield store.add_voicemail(
            mailbox="1002", caller="1", called="1002", received_at=AT, pcm=PCM
        )
        box = tmp_path / "rec" / "1003"  # the store keeps messages as <mailbox>/<id>.wav
        box.mkdir(parents=True)
        (old := box / "7.wav").write_bytes(b"RIFF")
        (fresh := box / "8.wav").write_bytes(b"RIFF")
        hour_ago = time.time() - 3600
        os.utime(old, (hour_ago, hour_ago))
        yield sweep_orphans(store)
        assert not old.exists() and fresh.exists()
        assert (yield store.list_voicemail("1002")) == [kept]
    finally:
        yield store.stop()
