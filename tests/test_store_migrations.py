"""Schema versions: fresh databases, upgrades from N-1, refusal of newer ones, atomicity."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr.routing.state import Activation, AuditEntry, UserState
from ivr.store import LATEST_VERSION, SchemaVersionError, SqliteStore
from ivr.store.migrations import MIGRATIONS, current_version, migrate


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
    return {name for (name,) in rows if not name.startswith("sqlite_")}


def test_latest_version_counts_migrations() -> None:
    assert LATEST_VERSION == len(MIGRATIONS) >= 2


def test_empty_database_gets_latest_schema(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "new.db") as store:
        assert store.schema_version == LATEST_VERSION
    conn = raw(tmp_path / "new.db")
    assert tables(conn) >= {"schema_version", "meta", "user_state", "activation", "audit"}
    assert "registration" in tables(conn)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT id, version FROM schema_version").fetchall() == [
        (1, LATEST_VERSION)
    ]


def test_reopening_is_a_no_op(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "db").close()
    conn = raw(tmp_path / "db")
    before = tables(conn)
    assert migrate(conn) == LATEST_VERSION
    assert tables(conn) == before


def test_upgrade_from_previous_version_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = raw(path)
    assert migrate(conn, target=1) == 1
    assert "registration" not in tables(conn)
    conn.execute("INSERT INTO user_state (user, version) VALUES ('1001', 3)")
    conn.execute(
        "INSERT INTO activation VALUES ('1001', 'manual', 0, 'lunch', 'manual', '1001', "
        "'phone', '2024-06-03T11:30:00+02:00[Europe/Stockholm]', NULL)"
    )
    conn.execute(
        "INSERT INTO audit (at, at_epoch, actor, action, target_user, via, detail) "
        "VALUES ('2024-06-03T09:30:00+00:00', 1717407000.0, '1001', 'activate', '1001', "
        "'phone', '{}')"
    )
    conn.close()

    with SqliteStore(path) as store:
        assert store.schema_version == LATEST_VERSION
        state = store.states.get("1001")
        assert state.version == 3 and state.manual[0].profile == "lunch"
        assert str(state.manual[0].set_at.tzinfo) == "Europe/Stockholm"
        assert store.audit.query() == [
            AuditEntry(
                at=datetime(2024, 6, 3, 9, 30, tzinfo=UTC),
                actor="1001",
                action="activate",
                target_user="1001",
                via="phone",
            )
        ]
        store.registrations.replace_all([])
        act = Activation(
            profile="dnd", source="manual", set_by="x", set_via="api", set_at=datetime.now(UTC)
        )
        assert store.states.save(UserState(user="1001", manual=(act,)), 3).version == 4


def test_newer_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SqliteStore(path).close()
    conn = raw(path)
    conn.execute("UPDATE schema_version SET version = ?", (LATEST_VERSION + 1,))
    conn.close()
    with pytest.raises(SchemaVersionError, match=rf"version {LATEST_VERSION + 1} is newer"):
        SqliteStore(path)
    assert current_version(raw(path)) == LATEST_VERSION + 1  # left untouched


def test_failed_migration_leaves_database_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "half.db"
    conn = raw(path)
    migrate(conn, target=1)
    before = tables(conn)
    broken = (*MIGRATIONS[:1], ("CREATE TABLE fine (x)", "CREATE TABLE broken ("))
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, migrations=broken)
    assert current_version(conn) == 1
    assert tables(conn) == before
    empty = raw(tmp_path / "empty.db")
    with pytest.raises(sqlite3.OperationalError):
        migrate(empty, migrations=broken)
    assert current_version(empty) == 0 and tables(empty) == set()


def test_migrate_validates_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        migrate(raw(tmp_path / "x.db"), target=LATEST_VERSION + 1)
