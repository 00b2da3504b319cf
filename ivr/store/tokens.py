"""API bearer tokens: a row per token holding only the SHA-256 hash of the secret.

The secret itself is shown once when it is created (``ivr token create``) and never
stored; a request's token is hashed and looked up. Revoked tokens stay as rows (for
the record) but no longer authenticate.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ivr.store.codec import decode_datetime, encode_datetime
from ivr.store.errors import StoreError

__all__ = ["ApiToken", "SqliteTokenRepository", "TokenRepository"]

_HASH = re.compile(r"[0-9a-f]{64}")
_COLUMNS = "id, user, admin, label, created_at, revoked_at"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """A stored token (without its secret). ``admin`` is the scope it was created with."""

    id: int
    user: str
    admin: bool
    label: str
    created_at: datetime
    revoked_at: datetime | None = None


class TokenRepository(Protocol):
    def add(
        self, *, token_hash: str, user: str, admin: bool, label: str, created_at: datetime
    ) -> ApiToken:
        """Store a new token's hash (64 lowercase hex digits)."""
        ...

    def find(self, token_hash: str) -> ApiToken | None:
        """The live (not revoked) token with this hash."""
        ...

    def list(self, user: str | None = None) -> list[ApiToken]:
        """Every token (of ``user`` when given), oldest first, revoked ones included."""
        ...

    def revoke(self, token_id: int, at: datetime) -> bool:
        """Revoke a live token; False when there is no such live token."""
        ...


class _Transactions(Protocol):
    def write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def read(self) -> AbstractContextManager[sqlite3.Connection]: ...


def _token(row: tuple[object, ...]) -> ApiToken:
    token_id, user, admin, label, created_at, revoked_at = row
    return ApiToken(
        id=int(token_id),  # type: ignore[call-overload]
        user=str(user),
        admin=bool(admin),
        label=str(label),
        created_at=decode_datetime(str(created_at)),
        revoked_at=None if revoked_at is None else decode_datetime(str(revoked_at)),
    )


class SqliteTokenRepository:
    """:class:`TokenRepository` on the store's SQLite connection (table ``api_token``)."""

    __slots__ = ("_db",)

    def __init__(self, db: _Transactions) -> None:
        self._db = db

    def add(
        self, *, token_hash: str, user: str, admin: bool, label: str, created_at: datetime
    ) -> ApiToken:
        if not _HASH.fullmatch(token_hash):
            raise ValueError("token_hash must be 64 lowercase hex digits")
        if not user:
            raise ValueError("user must not be empty")
        created = encode_datetime(created_at)
        with self._db.write() as conn:
            cursor = conn.execute(
                "INSERT INTO api_token (token_hash, user, admin, label, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (token_hash, user, int(admin), label, created),
            )
        if cursor.lastrowid is None:
            raise StoreError("token insert returned no row id")
        return ApiToken(
            id=cursor.lastrowid, user=user, admin=admin, label=label, created_at=created_at
        )

    def find(self, token_hash: str) -> ApiToken | None:
        if not _HASH.fullmatch(token_hash):
            return None
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM api_token WHERE token_hash = ? AND revoked_at IS NULL",
                (token_hash,),
            ).fetchone()
        return None if row is None else _token(row)

    def list(self, user: str | None = None) -> list[ApiToken]:
        sql = f"SELECT {_COLUMNS} FROM api_token"
        args: tuple[object, ...] = ()
        if user is not None:
            sql += " WHERE user = ?"
            args = (user,)
        with self._db.read() as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        return [_token(r) for r in rows]

    def revoke(self, token_id: int, at: datetime) -> bool:
        revoked = encode_datetime(at)
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE api_token SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (revoked, token_id),
            )
            return cursor.rowcount > 0
