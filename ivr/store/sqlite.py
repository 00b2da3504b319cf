"""SQLite backend: one connection, WAL, explicit ``BEGIN IMMEDIATE`` transactions.

Blocking: use it directly from CLIs and tests; from the reactor go through
:class:`ivr.store.async_store.AsyncStore`. The connection may only be used from the
thread that opened it (sqlite3 enforces this).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime

from ivr.routing.state import Activation, AuditEntry, UserState
from ivr.sip.registrar import Binding
from ivr.store.codec import decode_datetime, decode_detail, encode_datetime, encode_detail
from ivr.store.errors import ConflictError, StoreError
from ivr.store.migrations import current_version, migrate

__all__ = ["SqliteStore"]

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


class SqliteStore:
    """The SQLite :class:`~ivr.store.protocols.Store`: opens (and migrates) on creation.

    WAL journal with ``synchronous=NORMAL``: a committed transaction survives a crash of
    the process (not necessarily a power cut). Foreign keys on; waits up to
    ``busy_timeout`` seconds for a lock held by another process.
    """

    __slots__ = ("_db", "audit", "meta", "path", "registrations", "states")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
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

    def close(self) -> None:
        self._db.conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
