"""VoicemailRepository on real SQLite and real files: round trips, listing, heard flag,
deletion, and the crash-safety order (file before row on add, row before file on delete)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import pytest_twisted
import soundfile as sf
from twisted.internet import reactor

import ivr
import ivr.store.sqlite as sqlite_module
from ivr.store import LATEST_VERSION, SqliteStore, Store, StoreError
from ivr.store.async_store import AsyncStore
from ivr.store.migrations import MIGRATIONS, migrate
from ivr.store.protocols import VoicemailMessage

STHLM = ZoneInfo("Europe/Stockholm")
T0 = datetime(2026, 3, 2, 9, 15, 30, tzinfo=STHLM)


def sound(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * 8000)) / 8000
    return np.round(8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "ivr.db", recordings_dir=tmp_path / "recordings")
    yield s
    s.close()


def add(store: SqliteStore, mailbox: str = "1001", **kw: object) -> VoicemailMessage:
    fields: dict[str, object] = {
        "caller": "+46701234567",
        "called": "+46812345001",
        "received_at": T0,
        "pcm": sound(1.5),
    }
    fields.update(kw)
    return store.voicemail.add(mailbox=mailbox, **fields)  # type: ignore[arg-type]


def test_store_with_voicemail_satisfies_the_protocol(store: SqliteStore) -> None:
    typed: Store = store
    assert typed.voicemail is store.voicemail


def test_round_trip_file_and_row(store: SqliteStore, tmp_path: Path) -> None:
    pcm = sound(2.25)
    msg = add(store, pcm=pcm)
    assert msg == VoicemailMessage(
        id=1,
        mailbox="1001",
        caller="+46701234567",
        called="+46812345001",
        received_at=T0,
        duration=2.25,
        heard=False,
        path="1001/1.wav",
    )
    path = tmp_path / "recordings" / "1001" / "1.wav"
    assert store.voicemail.file(msg) == path
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (8000, 1, "PCM_16", "WAV")
    data, rate = sf.read(str(path), dtype="int16")
    assert rate == 8000 and np.array_equal(data, pcm)
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert store.voicemail.get(1) == msg
    assert store.voicemail.get(1).received_at.tzinfo == STHLM  # type: ignore[union-attr]
    assert store.voicemail.get(2) is None
    with SqliteStore(tmp_path / "ivr.db", recordings_dir=tmp_path / "recordings") as reopened:
        assert reopened.voicemail.get(1) == msg
    assert not list(path.parent.glob(".*.tmp"))


def test_list_is_per_mailbox_oldest_first_and_filters_on_heard(store: SqliteStore) -> None:
    later = add(store, received_at=T0 + timedelta(hours=1))
    other = add(store, "1002")
    earlier = add(store, received_at=(T0 - timedelta(minutes=5)).astimezone(UTC))
    assert store.voicemail.list("1001") == [earlier, later]
    assert store.voicemail.list("1002") == [other]
    assert store.voicemail.list("1003") == []
    assert store.voicemail.mark_heard(later.id)
    assert [m.id for m in store.voicemail.list("1001", heard=False)] == [earlier.id]
    assert [m.id for m in store.voicemail.list("1001", heard=True)] == [later.id]


def test_mark_heard_and_back(store: SqliteStore) -> None:
    msg = add(store)
    assert store.voicemail.mark_heard(msg.id)
    assert store.voicemail.get(msg.id).heard  # type: ignore[union-attr]
    assert store.voicemail.mark_heard(msg.id, heard=False)
    assert not store.voicemail.get(msg.id).heard  # type: ignore[union-attr]
    assert not store.voicemail.mark_heard(99)


def test_delete_removes_row_and_file_and_ids_are_not_reused(store: SqliteStore) -> None:
    first, second = add(store), add(store)
    path = store.voicemail.file(first)
    assert store.voicemail.delete(first.id)
    assert not path.exists() and store.voicemail.get(first.id) is None
    assert store.voicemail.list("1001") == [second]
    assert not store.voicemail.delete(first.id)
    assert add(store).id == 3
    os.unlink(store.voicemail.file(second))  # already gone: delete still succeeds
    assert store.voicemail.delete(second.id) and store.voicemail.get(second.id) is None


def _trace(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Events in order: SQL statements, file writes and unlinks."""
    events: list[str] = []
    store._db.conn.set_trace_callback(lambda sql: events.append(sql.split()[0].upper()))
    real_write, real_unlink = sqlite_module.atomic_write, Path.unlink

    def write(path: os.PathLike[str], data: bytes) -> None:
        real_write(path, data)
        events.append("FILE-WRITTEN")

    def unlink(self: Path, missing_ok: bool = False) -> None:
        real_unlink(self, missing_ok)
        events.append("FILE-UNLINKED")

    monkeypatch.setattr(sqlite_module, "atomic_write", write)
    monkeypatch.setattr(Path, "unlink", unlink)
    return events


def test_add_makes_the_file_durable_before_the_row(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _trace(store, monkeypatch)
    add(store)
    written = events.index("FILE-WRITTEN")
    assert events[:written] == ["BEGIN", "SELECT", "UPDATE", "COMMIT"]  # id taken, committed
    # the row goes in with its purge check (a mailbox deleted while recording keeps nothing)
    assert events[written:] == ["FILE-WRITTEN", "BEGIN", "SELECT", "INSERT", "COMMIT"]


def test_delete_commits_the_row_removal_before_the_unlink(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    msg = add(store)
    events = _trace(store, monkeypatch)
    store.voicemail.delete(msg.id)
    assert events == ["BEGIN", "SELECT", "DELETE", "COMMIT", "FILE-UNLINKED"]


def test_crash_after_the_file_leaves_an_orphan_not_a_row(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = sqlite_module.atomic_write

    def write_then_die(path: os.PathLike[str], data: bytes) -> None:
        real_write(path, data)
        raise SystemExit("power cut")

    monkeypatch.setattr(sqlite_module, "atomic_write", write_then_die)
    with pytest.raises(SystemExit):
        add(store)
    monkeypatch.undo()
    second = add(store)
    orphan = store.voicemail.file(second).parent / "1.wav"
    assert orphan.exists() and store.voicemail.get(1) is None
    assert store.voicemail.list("1001") == [second]
    mtime = orphan.stat().st_mtime
    assert store.voicemail.remove_orphans(mtime + 60) == []  # too fresh: maybe in flight
    assert store.voicemail.remove_orphans(mtime + 600) == [orphan]
    assert not orphan.exists() and store.voicemail.file(second).exists()


def test_crash_between_row_and_file_on_delete_leaves_an_orphan(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    msg = add(store)
    path = store.voicemail.file(msg)

    def die(self: Path, missing_ok: bool = False) -> None:
        raise SystemExit("power cut")

    monkeypatch.setattr(Path, "unlink", die)
    with pytest.raises(SystemExit):
        store.voicemail.delete(msg.id)
    monkeypatch.undo()
    assert store.voicemail.get(msg.id) is None and path.exists()  # no row without its file
    assert store.voicemail.remove_orphans(path.stat().st_mtime + 3600) == [path]


def test_failed_insert_removes_the_new_file(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msg = add(store)
    conn = sqlite3.connect(tmp_path / "ivr.db")
    conn.execute("UPDATE voicemail_sequence SET next_id = ?", (msg.id,))  # force a clash
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.IntegrityError):
        add(store, "1002")
    assert not (tmp_path / "recordings" / "1002" / f"{msg.id}.wav").exists()
    assert store.voicemail.file(msg).exists()


def test_remove_orphans_spares_rows_fresh_and_foreign_files(
    store: SqliteStore, tmp_path: Path
) -> None:
    kept = store.voicemail.file(add(store))
    box = kept.parent
    orphan, tmp_left = box / "7.wav", box / ".8.wav.k2j4h1xz.tmp"
    foreign = [box / "notes.txt", box / "greeting.wav", tmp_path / "recordings" / "9.wav"]
    for path in [orphan, tmp_left, *foreign]:
        path.write_bytes(b"x")
    (box / "12.wav").mkdir()
    now = max(p.stat().st_mtime for p in box.iterdir()) + 3600
    assert sorted(store.voicemail.remove_orphans(now)) == sorted([orphan, tmp_left])
    assert kept.exists() and all(p.exists() for p in foreign)
    empty = SqliteStore(tmp_path / "e.db", recordings_dir=tmp_path / "none")
    assert empty.voicemail.remove_orphans(now) == []
    empty.close()


def test_bad_input_is_refused_before_anything_is_written(
    store: SqliteStore, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="naive"):
        add(store, received_at=datetime(2026, 1, 1, 12, 0))
    for mailbox in ("../1001", "", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="mailbox"):
            add(store, mailbox)
    for pcm in (sound(1.0).astype(np.float32), np.zeros((2, 8), np.int16), np.zeros(0, np.int16)):
        with pytest.raises(ValueError, match="pcm"):
            add(store, pcm=pcm)
    assert not (tmp_path / "recordings").exists()
    assert add(store).id == 1  # no id was used up


def test_file_work_needs_a_recordings_directory(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "x.db") as bare:
        with pytest.raises(StoreError, match="recordings"):
            add(bare)
        assert bare.voicemail.list("1001") == []


def test_migration_adds_voicemail_to_an_existing_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=2)
    conn.execute("INSERT INTO meta (key, value) VALUES ('k', x'01')")
    conn.close()
    with SqliteStore(path, recordings_dir=tmp_path / "rec") as s:
        assert s.schema_version == LATEST_VERSION == len(MIGRATIONS) >= 3
        assert s.meta.get("k") == b"\x01"
        assert add(s).id == 1


# --- a real crash: SIGKILL while adding and deleting -------------------------------------

CHILD = """
import sys
from datetime import UTC, datetime
import numpy as np
from ivr.store import SqliteStore

store = SqliteStore(sys.argv[1], recordings_dir=sys.argv[2])
n = 0
while True:
    pcm = np.full(800 + 8 * (n % 100), n % 1000, dtype=np.int16)
    msg = store.voicemail.add(mailbox="1001", caller="c", called="d",
                              received_at=datetime.now(UTC), pcm=pcm)
    if n % 2:
        store.voicemail.delete(msg.id - 1)
    n += 1
    print(n, flush=True)
"""


def test_sigkill_never_leaves_a_row_without_its_audio(tmp_path: Path) -> None:
    db, rec = tmp_path / "crash.db", tmp_path / "recordings"
    env = {**os.environ, "PYTHONPATH": str(Path(ivr.__file__).parent.parent)}
    for rounds in (25, 40):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db), str(rec)], stdout=subprocess.PIPE, env=env
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if int(line) >= rounds:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with SqliteStore(db, recordings_dir=rec) as s:
            messages = s.voicemail.list("1001")
            assert messages
            for m in messages:
                data, rate = sf.read(str(s.voicemail.file(m)), dtype="int16")
                assert rate == 8000 and len(data) == round(m.duration * 8000)
            files = {p.name for p in (rec / "1001").iterdir()}
            rows = {f"{m.id}.wav" for m in messages}
            assert rows <= files
            far = max(p.stat().st_mtime for p in (rec / "1001").iterdir()) + 3600
            s.voicemail.remove_orphans(far)
            assert {p.name for p in (rec / "1001").iterdir()} == rows


# --- through the reactor ----------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_async_store_voicemail_round_trip(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = AsyncStore.for_path(tmp_path / "a.db", reactor, recordings_dir=tmp_path / "rec")
    yield store.start()
    pcm = sound(1.2)
    msg = yield store.add_voicemail(
        mailbox="1001", caller="1002", called="1001", received_at=T0, pcm=pcm
    )
    assert (yield store.get_voicemail(msg.id)) == msg
    assert (yield store.list_voicemail("1001", heard=False)) == [msg]
    assert (yield store.mark_voicemail_heard(msg.id))
    assert (yield store.list_voicemail("1001", heard=False)) == []
    stray = tmp_path / "rec" / "1001" / "99.wav"
    stray.write_bytes(b"")
    os.utime(stray, (0, 0))
    assert (yield store.remove_voicemail_orphans()) == [stray]
    assert (yield store.delete_voicemail(msg.id))
    assert not (tmp_path / "rec" / msg.path).exists()
    yield store.stop()
