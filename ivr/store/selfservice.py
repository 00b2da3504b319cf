"""Phone self-service tables: the voicemail ``saved`` flag and the PIN guard counters.

Runs on the store's SQLite connection (``SqliteStore.selfservice``), one transaction
per call. Blocking: from the reactor go through ``AsyncStore.run``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ivr.pin_guard import PinRecord
from ivr.store.protocols import VoicemailMessage

__all__ = ["MailboxEntry", "SqliteSelfServiceRepository"]

T = TypeVar("T")


class _Transactions(Protocol):
    def write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def read(self) -> AbstractContextManager[sqlite3.Connection]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxEntry:
    """A stored message with its ``saved`` flag."""

    message: VoicemailMessage
    saved: bool


class SqliteSelfServiceRepository:
    """PIN records (table ``pin_guard``) and saved flags (column ``voicemail.saved``)."""

    __slots__ = ("_db",)

    def __init__(self, db: _Transactions) -> None:
        self._db = db

    # --- PIN guard ----------------------------------------------------------------------

    def pin_record(self, account: str) -> PinRecord:
        """The stored record, or a clean one."""
        with self._db.read() as conn:
            return self._pin_record(conn, account)

    def judge_pin(self, account: str, judge: Callable[[PinRecord], T]) -> T:
        """Read the record, ``judge`` it (returns the outcome and the record to keep, or
        None to keep it as it is) and store the result, in one write transaction: two
        calls (or processes) checking the same account's PIN cannot lose a failure."""
        with self._db.write() as conn:
            outcome, record = judge(self._pin_record(conn, account))
            if record is not None:
                self._save(conn, record)
        return outcome

    @staticmethod
    def _pin_record(conn: sqlite3.Connection, account: str) -> PinRecord:
        row = conn.execute(
            "SELECT failures, locked_until FROM pin_guard WHERE account = ?", (account,)
        ).fetchone()
        if row is None:
            return PinRecord(account=account)
        failures = tuple(float(t) for t in json.loads(row[0]))
        return PinRecord(
            account=account,
            failures=failures,
            locked_until=None if row[1] is None else float(row[1]),
        )

    def save_pin_record(self, record: PinRecord) -> None:
        """Store ``record`` (a clean record deletes the row)."""
        with self._db.write() as conn:
            self._save(conn, record)

    @staticmethod
    def _save(conn: sqlite3.Connection, record: PinRecord) -> None:
        if not record.failures and record.locked_until is None:
            conn.execute("DELETE FROM pin_guard WHERE account = ?", (record.account,))
            return
        conn.execute(
            "INSERT OR REPLACE INTO pin_guard (account, failures, locked_until) VALUES (?, ?, ?)",
            (record.account, json.dumps(list(record.failures)), record.locked_until),
        )

    # --- saved messages ---------------------------------------------------------------

    def mark_saved(self, message_id: int, saved: bool = True) -> bool:
        """Set the saved flag (a saved message is heard too); False when there is no
        such message."""
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE voicemail SET saved = ?, heard = CASE WHEN ? THEN 1 ELSE heard END "
                "WHERE id = ?",
                (int(saved), int(saved), message_id),
            )
            return cursor.rowcount > 0

    def saved_ids(self, mailbox: str) -> frozenset[int]:
        """The ids of the mailbox's saved messages."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT id FROM voicemail WHERE mailbox = ? AND saved = 1", (mailbox,)
            ).fetchall()
        return frozenset(int(r[0]) for r in rows)
