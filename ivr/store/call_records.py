"""Call records on SQLite: one row per call (its JSON), one per user it belongs to.

``call_record`` holds the record as JSON plus the columns queries need; ``call_party``
indexes it under every user it belongs to (the calling user and each user called), so
a user's calls are one index range, newest first. A record is written once: writing
an id again changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from ivr.call_records import CallRecord
from ivr.store.codec import encode_datetime

__all__ = ["MAX_LIMIT", "CallRecordRepository", "SqliteCallRecordRepository"]

MAX_LIMIT = 1000
_IDS_PER_QUERY = 500  # well below SQLite's limit of host parameters per statement


class CallRecordRepository(Protocol):
    def add(self, record: CallRecord) -> bool:
        """Store ``record``; False when a record with its id is already stored."""
        ...

    def add_all(self, records: Sequence[CallRecord]) -> list[bool]:
        """:meth:`add` for several records in one transaction."""
        ...

    def get(self, record_id: str) -> CallRecord | None: ...

    def list(self, *, user: str | None = None, limit: int = 100) -> list[CallRecord]:
        """The newest ``limit`` records (of ``user``'s calls when given), newest first."""
        ...


class _Transactions(Protocol):
    def write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def read(self) -> AbstractContextManager[sqlite3.Connection]: ...


def _decode(text: object) -> CallRecord:
    return CallRecord.from_json(json.loads(str(text)))


class SqliteCallRecordRepository:
    """:class:`CallRecordRepository` on the store's SQLite connection."""

    __slots__ = ("_db",)

    def __init__(self, db: _Transactions) -> None:
        self._db = db

    def add(self, record: CallRecord) -> bool:
        return self.add_all([record])[0]

    def add_all(self, records: Sequence[CallRecord]) -> list[bool]:
        """Store several records in one transaction; per record, whether it was new."""
        rows = [
            (
                r.id,
                encode_datetime(r.started_at),
                r.started_at.timestamp(),
                r.kind,
                r.caller,
                r.dialled,
                r.user,
                r.outcome,
                json.dumps(r.as_json(), ensure_ascii=False),
            )
            for r in records
        ]
        with self._db.write() as conn:
            # three statements per batch, not two per record: each is a GIL round trip
            ids = [row[0] for row in rows]
            stored: set[str] = set()
            for first in range(0, len(ids), _IDS_PER_QUERY):
                chunk = ids[first : first + _IDS_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                query = f"SELECT id FROM call_record WHERE id IN ({marks})"
                stored.update(found for (found,) in conn.execute(query, chunk))
            added = []
            fresh: list[tuple[object, ...]] = []
            parties: list[tuple[str, float, str]] = []
            for record, row in zip(records, rows, strict=True):
                new = record.id not in stored
                added.append(new)
                if new:
                    stored.add(record.id)  # the same id twice in one batch: written once
                    fresh.append(row)
                    parties += [(user, row[2], record.id) for user in record.parties]
            conn.executemany(
                "INSERT INTO call_record (id, started_at, started_epoch, kind, "
                "caller, dialled, called_user, outcome, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                fresh,
            )
            conn.executemany(
                "INSERT OR IGNORE INTO call_party (user, started_epoch, record_id) "
                "VALUES (?, ?, ?)",
                parties,
            )
        return added

    def get(self, record_id: str) -> CallRecord | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT record FROM call_record WHERE id = ?", (record_id,)
            ).fetchone()
        return None if row is None else _decode(row[0])

    def list(self, *, user: str | None = None, limit: int = 100) -> list[CallRecord]:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be within 1..{MAX_LIMIT}")
        with self._db.read() as conn:
            if user is None:
                rows = conn.execute(
                    "SELECT record FROM call_record ORDER BY started_epoch DESC, id DESC LIMIT ?",
                    (limit,),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT r.record FROM call_party p JOIN call_record r ON r.id = p.record_id "
                    "WHERE p.user = ? ORDER BY p.started_epoch DESC, p.record_id DESC LIMIT ?",
                    (user, limit),
                ).fetchall()
        return [_decode(r[0]) for r in rows]
