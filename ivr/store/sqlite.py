"""SQLite backend: one connection, WAL, explicit ``BEGIN IMMEDIATE`` transactions.

Blocking: use it directly from CLIs and tests; from the reactor go through
:class:`ivr.store.async_store.AsyncStore`. The connection may only be used from the
thread that opened it (sqlite3 enforces this).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import soundfile as sf

from ivr.routing.state import Activation, AuditEntry, UserState
from ivr.sip.registrar import Binding
from ivr.store.call_records import SqliteCallRecordRepository
from ivr.store.codec import decode_datetime, decode_detail, encode_datetime, encode_detail
from ivr.store.directory import SqliteDirectoryRepository
from ivr.store.errors import ConflictError, MailboxPurged, StoreError
from ivr.store.files import _fsync_dir, atomic_write
from ivr.store.migrations import current_version, migrate
from ivr.store.protocols import VoicemailMessage
from ivr.store.purge import Purged, purge_user, purged_key
from ivr.store.queues import SqliteQueueRepository
from ivr.store.selfservice import SqliteSelfServiceRepository
from ivr.store.tokens import SqliteTokenRepository

__all__ = ["SqliteStore"]

T = TypeVar("T")

_AUTH_SECRET_KEY = "auth_secret"
_BINDING_COLUMNS = "aor, contact, expires_at, call_id, cseq, q, source, instance, reg_id"


class _Db:
    """The shared connection and its transaction helpers."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (takes the write lock up front, so no upgrade deadlocks)."""
        yield from self._transaction("BEGIN IMMEDIATE")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot across several SELECTs."""
        yield from self._transaction("BEGIN")

    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        conn.execute(begin)
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _activation_rows(state: UserState) -> list[tuple[object, ...]]:
    entries = [("manual", i, a) for i, a in enumerate(state.manual)]
    if state.forced is not None:
        entries.append(("forced", 0, state.forced))
    return [
        (
            state.user,
            slot,
            position,
            a.profile,
            a.source,
            a.set_by,
            a.set_via,
            encode_datetime(a.set_at),
            None if a.until is None else encode_datetime(a.until),
        )
        for slot, position, a in entries
    ]


def _activation(row: sqlite3.Row | tuple[object, ...]) -> Activation:
    profile, source, set_by, set_via, set_at, until = row
    return Activation(
        profile=str(profile),
        source=source,  # type: ignore[arg-type]  # validated by Activation
        set_by=str(set_by),
        set_via=set_via,  # type: ignore[arg-type]
        set_at=decode_datetime(str(set_at)),
        until=None if until is None else decode_datetime(str(until)),
    )


class SqliteStateRepository:
    """:class:`~ivr.store.protocols.ProfileStateRepository` on SQLite."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    def get(self, user: str) -> UserState:
        with self._db.read() as conn:
            row = conn.execute("SELECT version FROM user_state WHERE user = ?", (user,)).fetchone()
            if row is None:
                return UserState(user=user)
            rows = conn.execute(
                "SELECT slot, profile, source, set_by, set_via, set_at, until FROM activation "
                "WHERE user = ? ORDER BY slot, position",
                (user,),
            ).fetchall()
        forced = [_activation(r[1:]) for r in rows if r[0] == "forced"]
        return UserState(
            user=user,
            forced=forced[0] if forced else None,
            manual=tuple(_activation(r[1:]) for r in rows if r[0] == "manual"),
            version=int(row[0]),
        )

    def save(self, state: UserState, expected_version: int) -> UserState:
        with self._db.write() as conn:
            return self.save_in(conn, state, expected_version)

    @staticmethod
    def save_in(conn: sqlite3.Connection, state: UserState, expected_version: int) -> UserState:
        """The body of :meth:`save`, inside the caller's transaction."""
        rows = _activation_rows(state)  # encode first: a bad value aborts before any write
        row = conn.execute(
            "SELECT version FROM user_state WHERE user = ?", (state.user,)
        ).fetchone()
        actual = 0 if row is None else int(row[0])
        if actual != expected_version:
            raise ConflictError(state.user, expected_version, actual)
        version = expected_version + 1
        conn.execute(
            "INSERT INTO user_state (user, version) VALUES (?, ?) "
            "ON CONFLICT (user) DO UPDATE SET version = excluded.version",
            (state.user, version),
        )
        conn.execute("DELETE FROM activation WHERE user = ?", (state.user,))
        conn.executemany(
            "INSERT INTO activation (user, slot, position, profile, source, set_by, set_via, "
            "set_at, until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return replace(state, version=version)


class SqliteAuditRepository:
    """:class:`~ivr.store.protocols.AuditRepository` on SQLite."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    def append(self, entry: AuditEntry) -> int:
        with self._db.write() as conn:
            return self.append_in(conn, entry)

    @staticmethod
    def append_in(conn: sqlite3.Connection, entry: AuditEntry) -> int:
        """The body of :meth:`append`, inside the caller's transaction."""
        cursor = conn.execute(
            "INSERT INTO audit (at, at_epoch, actor, action, target_user, via, detail, "
            "on_behalf_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                encode_datetime(entry.at),
                entry.at.timestamp(),
                entry.actor,
                entry.action,
                entry.target_user,
                entry.via,
                encode_detail(entry.detail),
                entry.on_behalf_of,
            ),
        )
        if cursor.lastrowid is None:
            raise StoreError("audit insert returned no row id")
        return cursor.lastrowid

    def query(
        self,
        *,
        user: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        where: list[str] = []
        args: list[object] = []
        if user is not None:
            where.append("target_user = ?")
            args.append(user)
        for bound, op in ((since, ">="), (until, "<")):
            if bound is not None:
                if bound.tzinfo is None:
                    raise ValueError("since/until must be timezone-aware")
                where.append(f"at_epoch {op} ?")
                args.append(bound.timestamp())
        sql = "SELECT at, actor, action, target_user, via, detail, on_behalf_of FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at_epoch DESC, id DESC LIMIT ?"
        args.append(limit)
        with self._db.read() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [
            AuditEntry(
                at=decode_datetime(at),
                actor=actor,
                action=action,
                target_user=target_user,
                via=via,
                detail=decode_detail(detail),
                on_behalf_of=on_behalf_of,
            )
            for at, actor, action, target_user, via, detail, on_behalf_of in rows
        ]


def _binding_row(b: Binding) -> tuple[object, ...]:
    return (b.aor, b.contact, b.expires_at, b.call_id, b.cseq, b.q, b.source, b.instance, b.reg_id)


class SqliteRegistrationRepository:
    """:class:`~ivr.store.protocols.RegistrationRepository` on SQLite (batched writes)."""

    __slots__ = ("_db",)

    _UPSERT = f"INSERT OR REPLACE INTO registration ({_BINDING_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
    _DELETE = "DELETE FROM registration WHERE aor = ? AND contact = ?"

    def __init__(self, db: _Db) -> None:
        self._db = db

    def load_all(self) -> list[Binding]:
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {_BINDING_COLUMNS} FROM registration ORDER BY aor, contact"
            ).fetchall()
        return [
            Binding(
                aor=aor,
                contact=contact,
                expires_at=expires_at,
                call_id=call_id,
                cseq=cseq,
                q=q,
                source=source,
                instance=instance,
                reg_id=reg_id,
            )
            for aor, contact, expires_at, call_id, cseq, q, source, instance, reg_id in rows
        ]

    def replace_all(self, bindings: Iterable[Binding]) -> None:
        rows = [_binding_row(b) for b in bindings]
        with self._db.write() as conn:
            conn.execute("DELETE FROM registration")
            conn.executemany(self._UPSERT, rows)

    def upsert(self, bindings: Iterable[Binding]) -> None:
        self.apply(upserts=bindings)

    def delete(self, keys: Iterable[tuple[str, str]]) -> None:
        self.apply(deletes=keys)

    def apply(
        self, *, upserts: Iterable[Binding] = (), deletes: Iterable[tuple[str, str]] = ()
    ) -> None:
        rows = [_binding_row(b) for b in upserts]
        keys = list(deletes)
        if not rows and not keys:
            return
        with self._db.write() as conn:
            conn.executemany(self._DELETE, keys)
            conn.executemany(self._UPSERT, rows)


class SqliteMetaRepository:
    """:class:`~ivr.store.protocols.MetaRepository` on SQLite."""

    __slots__ = ("_db", "_random_bytes")

    def __init__(self, db: _Db, random_bytes: Callable[[int], bytes]) -> None:
        self._db = db
        self._random_bytes = random_bytes

    def get(self, key: str) -> bytes | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set(self, key: str, value: bytes) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, bytes(value))
            )

    def auth_secret(self) -> bytes:
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT value FROM meta WHERE key = ?", (_AUTH_SECRET_KEY,)
            ).fetchone()
            if row is not None:
                return bytes(row[0])
            secret = self._random_bytes(32)
            if len(secret) != 32:
                raise StoreError("random_bytes returned the wrong number of bytes")
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (_AUTH_SECRET_KEY, secret))
            return secret


_VOICEMAIL_RATE = 8000
_VOICEMAIL_COLUMNS = "id, mailbox, caller, called, received_at, duration, heard, path"
_MAILBOX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_MESSAGE_FILE = re.compile(r"[1-9][0-9]*\.wav")
_TEMP_FILE = re.compile(r"\.[1-9][0-9]*\.wav\.[^/]+\.tmp")  # left by a crashed atomic_write


def _voicemail(row: tuple[object, ...]) -> VoicemailMessage:
    message_id, mailbox, caller, called, received_at, duration, heard, path = row
    return VoicemailMessage(
        id=int(message_id),  # type: ignore[call-overload]
        mailbox=str(mailbox),
        caller=str(caller),
        called=str(called),
        received_at=decode_datetime(str(received_at)),
        duration=float(duration),  # type: ignore[arg-type]
        heard=bool(heard),
        path=str(path),
    )


def _wav_bytes(pcm: npt.NDArray[np.int16]) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, pcm, _VOICEMAIL_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class SqliteVoicemailRepository:
    """:class:`~ivr.store.protocols.VoicemailRepository` on SQLite plus WAV files in
    ``root/<mailbox>/<id>.wav`` (8 kHz mono 16-bit PCM).

    Invariant: a row always points at a complete, durable file. ``add`` takes an id
    (committed, never reused), writes the file with :func:`atomic_write` (fsync of file
    and directory), then inserts the row. ``delete`` commits the row's removal, then
    unlinks the file. A crash between the two steps of either leaves a file without a
    row, never the reverse; :meth:`remove_orphans` sweeps such files.
    """

    __slots__ = ("_db", "root")

    def __init__(self, db: _Db, root: Path | None) -> None:
        self._db = db
        self.root = root

    def _root(self) -> Path:
        if self.root is None:
            raise StoreError("no recordings directory: open the store with recordings_dir")
        return self.root

    def add(
        self,
        *,
        mailbox: str,
        caller: str,
        called: str,
        received_at: datetime,
        pcm: npt.NDArray[np.int16],
    ) -> VoicemailMessage:
        if not _MAILBOX.fullmatch(mailbox):
            raise ValueError(f"invalid mailbox {mailbox!r}")
        at = encode_datetime(received_at)  # a naive datetime is refused before any write
        samples = np.asarray(pcm)
        if samples.dtype != np.int16 or samples.ndim != 1 or len(samples) == 0:
            raise ValueError("pcm must be a non-empty 1-D int16 array")
        data = _wav_bytes(samples)
        root = self._root()
        with self._db.write() as conn:
            (message_id,) = conn.execute(
                "SELECT next_id FROM voicemail_sequence WHERE id = 1"
            ).fetchone()
            conn.execute("UPDATE voicemail_sequence SET next_id = next_id + 1 WHERE id = 1")
        message = VoicemailMessage(
            id=int(message_id),
            mailbox=mailbox,
            caller=caller,
            called=called,
            received_at=received_at,
            duration=len(samples) / _VOICEMAIL_RATE,
            heard=False,
            path=f"{mailbox}/{message_id}.wav",
        )
        path = root / message.path
        for directory in (root, path.parent):
            if not directory.is_dir():
                directory.mkdir(mode=0o750, parents=True, exist_ok=True)
                _fsync_dir(str(directory.parent))
        atomic_write(path, data)
        try:
            with self._db.write() as conn:
                if not path.is_file():  # swept meanwhile (remove_orphans holds this lock)
                    raise StoreError(f"{path} vanished before its row was written")
                purged = conn.execute(
                    "SELECT value FROM meta WHERE key = ?", (purged_key(mailbox),)
                ).fetchone()
                if purged is not None and received_at.timestamp() <= float(purged[0]):
                    raise MailboxPurged(mailbox)
                conn.execute(
                    f"INSERT INTO voicemail ({_VOICEMAIL_COLUMNS}, received_epoch) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        message.id,
                        mailbox,
                        caller,
                        called,
                        at,
                        message.duration,
                        0,
                        message.path,
                        received_at.timestamp(),
                    ),
                )
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        return message

    def get(self, message_id: int) -> VoicemailMessage | None:
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {_VOICEMAIL_COLUMNS} FROM voicemail WHERE id = ?", (message_id,)
            ).fetchone()
        return None if row is None else _voicemail(row)

    def mark_heard(self, message_id: int, heard: bool = True) -> bool:
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE voicemail SET heard = ? WHERE id = ?", (int(heard), message_id)
            )
            return cursor.rowcount > 0

    def delete(self, message_id: int) -> bool:
        """Row first (committed), then the file: a crash in between leaves an orphan
        file, never a row without its audio. An unlink failing for another reason than
        a missing file raises; the orphan is then left to :meth:`remove_orphans`."""
        root = self._root()
        with self._db.write() as conn:
            row = conn.execute("SELECT path FROM voicemail WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM voicemail WHERE id = ?", (message_id,))
        with contextlib.suppress(FileNotFoundError):
            (root / str(row[0])).unlink()
        return True

    def file(self, message: VoicemailMessage) -> Path:
        return self._root() / message.path

    def remove_orphans(self, now: float, *, min_age: float = 600.0) -> list[Path]:
        """Runs under the write lock, so no ``add`` can insert a row for a file while
        it is being judged; ``min_age`` spares files an ``add`` is still finishing."""
        root = self._root()
        removed: list[Path] = []
        if not root.is_dir():
            return removed
        with self._db.write() as conn:
            known = {str(p) for (p,) in conn.execute("SELECT path FROM voicemail")}
            for directory in sorted(root.iterdir()):
                if not _MAILBOX.fullmatch(directory.name) or not directory.is_dir():
                    continue
                for path in sorted(directory.iterdir()):
                    name = path.name
                    if f"{directory.name}/{name}" in known or not (
                        _MESSAGE_FILE.fullmatch(name) or _TEMP_FILE.fullmatch(name)
                    ):
                        continue
                    try:
                        st = path.lstat()
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(st.st_mode) and now - st.st_mtime >= min_age:
                        path.unlink(missing_ok=True)
                        removed.append(path)
        return removed

    def list(self, mailbox: str, *, heard: bool | None = None) -> list[VoicemailMessage]:
        sql = f"SELECT {_VOICEMAIL_COLUMNS} FROM voicemail WHERE mailbox = ?"
        args: list[object] = [mailbox]
        if heard is not None:
            sql += " AND heard = ?"
            args.append(int(heard))
        with self._db.read() as conn:
            rows = conn.execute(sql + " ORDER BY received_epoch, id", args).fetchall()
        return [_voicemail(r) for r in rows]


class SqliteStore:
    """The SQLite :class:`~ivr.store.protocols.Store`: opens (and migrates) on creation.

    WAL journal with ``synchronous=NORMAL``: a committed transaction survives a crash of
    the process (not necessarily a power cut). Foreign keys on; waits up to
    ``busy_timeout`` seconds for a lock held by another process. ``recordings_dir`` is
    where voicemail audio lives (``voicemail`` refuses file work without it).
    """

    __slots__ = ("_db", "audit", "meta", "path", "registrations", "states", "voicemail")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
        recordings_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() not in ("wal", "memory"):
                raise StoreError(f"{self.path}: could not enable WAL (journal_mode={mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._db = _Db(conn)
        self.states = SqliteStateRepository(self._db)
        self.audit = SqliteAuditRepository(self._db)
        self.registrations = SqliteRegistrationRepository(self._db)
        self.meta = SqliteMetaRepository(self._db, random_bytes)
        self.voicemail = SqliteVoicemailRepository(
            self._db, None if recordings_dir is None else Path(recordings_dir)
        )

    @property
    def schema_version(self) -> int:
        return current_version(self._db.conn)

    def save_state_with_audit(
        self, state: UserState, expected_version: int, entry: AuditEntry
    ) -> UserState:
        """Save a profile change and its audit entry atomically."""
        with self._db.write() as conn:
            saved = SqliteStateRepository.save_in(conn, state, expected_version)
            SqliteAuditRepository.append_in(conn, entry)
        return saved

    def purge_user(
        self,
        user: str,
        *,
        recordings: Mapping[str, Path] | None = None,
        within: Callable[[SqliteStore, sqlite3.Connection, Purged], T] | None = None,
        at: float | None = None,
    ) -> tuple[Purged, T | None]:
        """Remove ``user``'s stored data (state, queue choice, tokens, voicemail, PIN
        counters) in one transaction, then its files; audit and call records stay. See
        :mod:`ivr.store.purge` for the order. ``within(store, conn, purged)`` runs
        inside that transaction (e.g. the directory commit with its audit entry); ``at``
        (epoch) refuses later saves of messages recorded before it."""
        inner = None if within is None else lambda conn, p: within(self, conn, p)
        return purge_user(
            self._db,
            user,
            recordings=recordings,
            voicemail_root=self.voicemail.root,
            within=inner,
            at=at,
        )

    def close(self) -> None:
        self._db.conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def tokens(self) -> SqliteTokenRepository:
        """The HTTP API's bearer tokens (hashes only)."""
        return SqliteTokenRepository(self._db)

    @property
    def directory(self) -> SqliteDirectoryRepository:
        """The live directory's overlay (users and profiles changed over the API)."""
        return SqliteDirectoryRepository(self._db, SqliteAuditRepository.append_in)

    @property
    def selfservice(self) -> SqliteSelfServiceRepository:
        """Phone self-service: PIN guard counters and saved voicemail flags."""
        return SqliteSelfServiceRepository(self._db)

    @property
    def call_records(self) -> SqliteCallRecordRepository:
        """One record per finished call (legs, decision traces, outcome)."""
        return SqliteCallRecordRepository(self._db)

    @property
    def queues(self) -> SqliteQueueRepository:
        """Users' queue choices (*45 login/logout, *46 pause), saved with their audit."""
        return SqliteQueueRepository(self._db, SqliteAuditRepository.append_in)
