"""The live directory's overlay on SQLite (table ``directory``): a row per user or
profile changed over the API, written together with its audit entry."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from ivr.directory import OverlayRow
from ivr.routing.state import AuditEntry
from ivr.store.errors import StoreError

__all__ = ["DirectoryConflict", "SqliteDirectoryRepository"]


class DirectoryConflict(StoreError):
    """The object was changed meanwhile (its stored version is not the expected one)."""

    def __init__(self, kind: str, key: str, expected: int, actual: int) -> None:
        super().__init__(f"{kind} {key} is at version {actual}, not {expected}")
        self.expected = expected
        self.actual = actual


class _Transactions(Protocol):
    def write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def read(self) -> AbstractContextManager[sqlite3.Connection]: ...


def _row(kind: str, key: str, data: str | None, version: int, seq: int) -> OverlayRow:
    value = None if data is None else json.loads(data)
    if value is not None and not isinstance(value, dict):
        raise StoreError(f"directory row {kind} {key}: data is not a JSON object")
    return OverlayRow(kind=kind, key=key, data=value, version=int(version), seq=int(seq))


class SqliteDirectoryRepository:
    """Overlay rows: load them all; commit one change with its audit entry."""

    __slots__ = ("_append_audit", "_db")

    def __init__(
        self, db: _Transactions, append_audit: Callable[[sqlite3.Connection, AuditEntry], int]
    ) -> None:
        self._db = db
        self._append_audit = append_audit

    def load(self) -> list[OverlayRow]:
        """Every row, in the order of their last change."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT kind, key, data, version, seq FROM directory ORDER BY seq"
            ).fetchall()
        return [_row(*r) for r in rows]

    def commit(
        self,
        kind: str,
        key: str,
        data: dict[str, object] | None,
        expected_version: int,
        entry: AuditEntry,
    ) -> OverlayRow:
        """Store ``data`` (None: deleted) for ``kind``/``key`` if its stored version is
        ``expected_version`` (0 when there is no row), and append ``entry``, in one
        transaction; else raise :class:`DirectoryConflict`. Returns the stored row."""
        with self._db.write() as conn:
            return self.commit_in(conn, kind, key, data, expected_version, entry)

    def commit_in(
        self,
        conn: sqlite3.Connection,
        kind: str,
        key: str,
        data: dict[str, object] | None,
        expected_version: int,
        entry: AuditEntry,
    ) -> OverlayRow:
        """The body of :meth:`commit`, inside the caller's transaction."""
        text = None if data is None else json.dumps(data, ensure_ascii=False)
        found = conn.execute(
            "SELECT version FROM directory WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        actual = 0 if found is None else int(found[0])
        if actual != expected_version:
            raise DirectoryConflict(kind, key, expected_version, actual)
        seq = int(conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM directory").fetchone()[0])
        conn.execute(
            "INSERT INTO directory (kind, key, data, deleted, version, seq) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET "
            "data = excluded.data, deleted = excluded.deleted, "
            "version = excluded.version, seq = excluded.seq",
            (kind, key, text, int(text is None), actual + 1, seq),
        )
        self._append_audit(conn, entry)
        return OverlayRow(kind=kind, key=key, data=data, version=actual + 1, seq=seq)
