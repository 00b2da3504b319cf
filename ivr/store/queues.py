"""Queue choices on SQLite: one row per user (table ``queue_state``), saved with its audit
entry in one transaction and guarded by a version (optimistic concurrency).

The row holds only what the user chose by phone (``*45``, ``*46``) and the profile
period it holds for; who is logged in is worked out by :mod:`ivr.routing.queues`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Protocol

from ivr.routing.queues import QueueState
from ivr.routing.state import AuditEntry
from ivr.store.codec import decode_datetime, encode_datetime
from ivr.store.errors import ConflictError

__all__ = ["QueueStateRepository", "SqliteQueueRepository"]

_COLUMNS = "user, login, paused, period, set_by, set_via, set_at, version"

AppendAudit = Callable[[sqlite3.Connection, AuditEntry], int]


class QueueStateRepository(Protocol):
    def get(self, user: str) -> QueueState:
        """The user's queue state (a blank one at version 0 when none is stored)."""
        ...

    def get_many(self, users: Iterable[str]) -> dict[str, QueueState]:
        """The queue states of ``users`` (blank ones for users without a row)."""
        ...

    def save(
        self, state: QueueState, expected_version: int, entry: AuditEntry | None = None
    ) -> QueueState:
        """Store ``state`` (and ``entry`` in the same transaction) if the stored version is
        still ``expected_version``; else :class:`~ivr.store.errors.ConflictError`."""
        ...


class _Transactions(Protocol):
    def write(self) -> AbstractContextManager[sqlite3.Connection]: ...
    def read(self) -> AbstractContextManager[sqlite3.Connection]: ...


def _state(row: tuple[object, ...]) -> QueueState:
    user, login, paused, period, set_by, set_via, set_at, version = row
    return QueueState(
        user=str(user),
        login=None if login is None else bool(login),
        paused=bool(paused),
        period=str(period),
        set_by=None if set_by is None else str(set_by),
        set_via=None if set_via is None else str(set_via),
        set_at=None if set_at is None else decode_datetime(str(set_at)),
        version=int(str(version)),
    )


class SqliteQueueRepository:
    """:class:`QueueStateRepository` on the store's connection. ``append_audit`` writes an
    audit entry inside the caller's transaction (the audit repository's ``append_in``)."""

    __slots__ = ("_append_audit", "_db")

    def __init__(self, db: _Transactions, append_audit: AppendAudit) -> None:
        self._db = db
        self._append_audit = append_audit

    def get(self, user: str) -> QueueState:
        return self.get_many((user,))[user]

    def get_many(self, users: Iterable[str]) -> dict[str, QueueState]:
        wanted = list(dict.fromkeys(users))
        found: dict[str, QueueState] = {}
        with self._db.read() as conn:
            for user in wanted:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM queue_state WHERE user = ?", (user,)
                ).fetchone()
                found[user] = QueueState(user=user) if row is None else _state(row)
        return found

    def save(
        self, state: QueueState, expected_version: int, entry: AuditEntry | None = None
    ) -> QueueState:
        set_at = None if state.set_at is None else encode_datetime(state.set_at)
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT version FROM queue_state WHERE user = ?", (state.user,)
            ).fetchone()
            actual = 0 if row is None else int(row[0])
            if actual != expected_version:
                raise ConflictError(state.user, expected_version, actual)
            version = expected_version + 1
            login = None if state.login is None else int(state.login)
            conn.execute(
                f"INSERT OR REPLACE INTO queue_state ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    state.user,
                    login,
                    int(state.paused),
                    state.period,
                    state.set_by,
                    state.set_via,
                    set_at,
                    version,
                ),
            )
            if entry is not None:
                self._append_audit(conn, entry)
        return replace(state, version=version)
