"""Versioned schema: forward-only migrations applied in one transaction.

``MIGRATIONS[i]`` takes the schema from version ``i`` to ``i + 1``; each is a tuple of
single SQL statements (run one by one with ``execute``, never ``executescript``,
which would commit half-way). Append new steps; never edit a released one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ivr.store.errors import SchemaVersionError, StoreError

__all__ = ["LATEST_VERSION", "MIGRATIONS", "current_version", "migrate"]

Migration = tuple[str, ...]

MIGRATIONS: tuple[Migration, ...] = (
    # 1: key-values, profile state (forced entry + manual stack), audit log.
    (
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value BLOB NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE user_state (
            user TEXT PRIMARY KEY,
            version INTEGER NOT NULL CHECK (version >= 0)
        ) WITHOUT ROWID""",
        """CREATE TABLE activation (
            user TEXT NOT NULL REFERENCES user_state (user) ON DELETE CASCADE,
            slot TEXT NOT NULL CHECK (slot IN ('forced', 'manual')),
            position INTEGER NOT NULL CHECK (position >= 0),
            profile TEXT NOT NULL,
            source TEXT NOT NULL,
            set_by TEXT NOT NULL,
            set_via TEXT NOT NULL,
            set_at TEXT NOT NULL,
            until TEXT,
            PRIMARY KEY (user, slot, position)
        ) WITHOUT ROWID""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            at_epoch REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target_user TEXT NOT NULL,
            via TEXT NOT NULL,
            detail TEXT NOT NULL,
            on_behalf_of TEXT
        )""",
    ),
    # 2: registrar bindings (write-behind) and audit query indexes.
    (
        """CREATE TABLE registration (
            aor TEXT NOT NULL,
            contact TEXT NOT NULL,
            expires_at REAL NOT NULL,
            call_id TEXT NOT NULL,
            cseq INTEGER NOT NULL,
            q REAL,
            source TEXT NOT NULL,
            instance TEXT,
            reg_id INTEGER,
            PRIMARY KEY (aor, contact)
        ) WITHOUT ROWID""",
        "CREATE INDEX audit_by_time ON audit (at_epoch)",
        "CREATE INDEX audit_by_user_time ON audit (target_user, at_epoch)",
    ),
    # 3: voicemail messages (audio in files under the recordings directory) and the
    # id sequence (ids are taken before the file is written and never reused).
    (
        """CREATE TABLE voicemail (
            id INTEGER PRIMARY KEY,
            mailbox TEXT NOT NULL,
            caller TEXT NOT NULL,
            called TEXT NOT NULL,
            received_at TEXT NOT NULL,
            received_epoch REAL NOT NULL,
            duration REAL NOT NULL CHECK (duration >= 0),
            heard INTEGER NOT NULL DEFAULT 0 CHECK (heard IN (0, 1)),
            path TEXT NOT NULL UNIQUE
        )""",
        "CREATE INDEX voicemail_by_mailbox ON voicemail (mailbox, received_epoch, id)",
        """CREATE TABLE voicemail_sequence (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            next_id INTEGER NOT NULL CHECK (next_id >= 1)
        )""",
        "INSERT INTO voicemail_sequence (id, next_id) VALUES (1, 1)",
    ),
    # 4: HTTP API bearer tokens (only the SHA-256 of each secret is kept).
    (
        """CREATE TABLE api_token (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            token_hash TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
            user TEXT NOT NULL,
            admin INTEGER NOT NULL CHECK (admin IN (0, 1)),
            label TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )""",
        "CREATE INDEX api_token_by_user ON api_token (user)",
    ),
    # 5: the live directory's overlay: users and profiles changed over the HTTP API (data
    # in the config file's shape as JSON; NULL data = deleted), laid over the config file.
    (
        """CREATE TABLE directory (
            kind TEXT NOT NULL CHECK (kind IN ('user', 'profile')),
            key TEXT NOT NULL,
            data TEXT,
            deleted INTEGER NOT NULL CHECK (deleted IN (0, 1)),
            version INTEGER NOT NULL CHECK (version >= 1),
            seq INTEGER NOT NULL UNIQUE,
            CHECK ((deleted = 1) = (data IS NULL)),
            PRIMARY KEY (kind, key)
        ) WITHOUT ROWID""",
    ),
    # 6: call queues: each user's own choice (*45 login/logout, *46 pause) and the
    # profile period it holds for (ivr.routing.queues).
    (
        """CREATE TABLE queue_state (
            user TEXT PRIMARY KEY,
            login INTEGER CHECK (login IN (0, 1)),
            paused INTEGER NOT NULL CHECK (paused IN (0, 1)),
            period TEXT NOT NULL,
            set_by TEXT,
            set_via TEXT,
            set_at TEXT,
            version INTEGER NOT NULL CHECK (version >= 1)
        ) WITHOUT ROWID""",
    ),
    # 7: call records (the record as JSON) and the users each one belongs to.
    (
        """CREATE TABLE call_record (
            id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            started_epoch REAL NOT NULL,
            kind TEXT NOT NULL,
            caller TEXT NOT NULL,
            dialled TEXT NOT NULL,
            called_user TEXT,
            outcome TEXT NOT NULL,
            record TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX call_record_by_time ON call_record (started_epoch)",
        """CREATE TABLE call_party (
            user TEXT NOT NULL,
            started_epoch REAL NOT NULL,
            record_id TEXT NOT NULL REFERENCES call_record (id) ON DELETE CASCADE,
            PRIMARY KEY (user, started_epoch, record_id)
        ) WITHOUT ROWID""",
    ),
    # 8: phone self-service: a saved flag on voicemail, PIN guard counters per account.
    (
        "ALTER TABLE voicemail ADD COLUMN saved INTEGER NOT NULL DEFAULT 0 CHECK (saved IN (0, 1))",
        """CREATE TABLE pin_guard (
            account TEXT PRIMARY KEY,
            failures TEXT NOT NULL DEFAULT '[]',
            locked_until REAL
        ) WITHOUT ROWID""",
    ),
)

LATEST_VERSION = len(MIGRATIONS)

_CREATE_VERSION_TABLE = """CREATE TABLE schema_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
)"""


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version of ``conn``'s database (0 when empty)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
    if row is None:
        raise StoreError("schema_version table is empty: the database is damaged")
    return int(row[0])


def migrate(
    conn: sqlite3.Connection,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
    target: int | None = None,
) -> int:
    """Bring the database up to ``target`` (default: latest) in one transaction.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Returns the version
    reached. Raises :class:`SchemaVersionError` if the database is newer than known.
    """
    latest = len(migrations)
    goal = latest if target is None else target
    if not 0 <= goal <= latest:
        raise ValueError(f"target version must be within 0..{latest}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = current_version(conn)
        if version > latest:
            raise SchemaVersionError(
                f"database schema version {version} is newer than this ivr supports "
                f"({latest}); upgrade ivr or restore a backup made for this version"
            )
        if version < goal:
            if version == 0:
                conn.execute(_CREATE_VERSION_TABLE)
                conn.execute("INSERT INTO schema_version (id, version) VALUES (1, 0)")
            for step in migrations[version:goal]:
                for statement in step:
                    conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ? WHERE id = 1", (goal,))
            version = goal
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version
