"""Commits directory changes: check, store the overlay row with its audit entry, swap.

One change at a time (a lock): the new object is built from the current snapshot inside
the lock, so two writers never lose each other's change; an ``If-Match`` version that
is no longer current is a conflict. The row and its audit entry are written in one
transaction before the new snapshot is swapped in.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from ivr import greetings
from ivr.config import Config
from ivr.directory import (
    Directory,
    OverlayRow,
    Problem,
    overlay,
    problems,
    profile_data,
    rebuild,
    user_data,
)
from ivr.routing.model import Profile, User
from ivr.routing.state import AuditEntry, Via
from ivr.store.async_store import AsyncStore
from ivr.store.purge import Purged
from ivr.store.sqlite import SqliteStore

log = Logger(namespace="ivr.directory")

Obj = User | Profile
Build = Callable[[Config], "Obj | None"]


class VersionConflict(Exception):
    """``If-Match`` named a version that is no longer current."""

    def __init__(self, kind: str, key: str, expected: int, actual: int) -> None:
        super().__init__(f"{kind} {key} is at version {actual}, not {expected}")
        self.actual = actual


class Inconsistent(Exception):
    """The change would break the directory's cross-references."""

    def __init__(self, found: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.kind} {p.key}: {p.field}: {p.reason}" for p in found))
        self.problems = found


@dataclass(frozen=True, slots=True)
class Committed:
    """What a commit stored: the object (None: deleted), its version, the old object."""

    obj: Obj | None
    version: int
    before: Obj | None


def _data(obj: Obj | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    if isinstance(obj, User):
        return user_data(obj, secrets=True)
    return profile_data(obj)


def changed_fields(before: Obj | None, after: Obj | None) -> list[str]:
    """Top-level fields that differ (for the audit; never their secret values)."""
    old, new = _data(before) or {}, _data(after) or {}
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def dropped_usernames(old: Config, new: Config) -> set[str]:
    """SIP usernames that the new snapshot no longer has (their bindings must go)."""
    names = {d.username for u in old.users for d in u.devices if d.username}
    kept = {d.username for u in new.users for d in u.devices if d.username}
    return names - kept


class DirectoryService:
    """The one way the directory changes at run time."""

    def __init__(self, directory: Directory, store: AsyncStore, now: Callable[[], datetime]):
        self.directory = directory
        self.store = store
        self.now = now
        self._lock = defer.DeferredLock()

    @classmethod
    @defer.inlineCallbacks
    def load(cls, config: Config, store: AsyncStore, now: Callable[[], datetime]) -> Any:
        """The service over ``config`` with the stored overlay laid on it."""
        rows: list[OverlayRow] = yield store.run(lambda s: s.directory.load())
        result = overlay(config, rows)
        for row, why in result.skipped:
            log.warn(
                "directory change {kind} {key} v{version} left out: {why}",
                kind=row.kind,
                key=row.key,
                version=row.version,
                why=why,
            )
        return cls(Directory(result.config, result.versions), store, now)

    @property
    def config(self) -> Config:
        return self.directory.config

    def commit(
        self,
        kind: str,
        key: str,
        build: Build,
        *,
        if_match: int | None,
        actor: str,
        action: str,
        target_user: str,
        on_behalf_of: str | None = None,
        via: Via = "api",
    ) -> defer.Deferred[Committed]:
        """Replace (``build`` returns the object) or delete (returns None) ``kind``/``key``.

        ``build`` runs on the current snapshot and may raise (e.g. an API error); the
        result must keep the directory consistent (:class:`Inconsistent` otherwise).
        ``via``: how the change was made, for the audit ("phone": a PIN changed from the
        mailbox options)."""
        d: defer.Deferred[Committed] = self._lock.run(
            self._commit, kind, key, build, if_match, actor, action, target_user, on_behalf_of, via
        )
        return d

    @defer.inlineCallbacks
    def _commit(
        self,
        kind: str,
        key: str,
        build: Build,
        if_match: int | None,
        actor: str,
        action: str,
        target_user: str,
        on_behalf_of: str | None,
        via: Via = "api",
    ) -> Any:
        config = self.directory.config
        current = self.directory.version(kind, key)
        if if_match is not None and if_match != current:
            raise VersionConflict(kind, key, if_match, current)
        obj = build(config)
        users = {u.extension: u for u in config.users}
        profiles = {p.id: p for p in config.profiles}
        table: dict[str, Any] = users if kind == "user" else profiles
        before = table.get(key)
        if obj is None:
            table.pop(key, None)
        else:
            table[key] = obj
        found = problems(config.company, users.values(), profiles.values(), config.queues)
        if found:
            raise Inconsistent(found)
        snapshot = rebuild(config, users.values(), profiles.values())
        entry = AuditEntry(
            at=self.now(),
            actor=actor,
            action=action,
            target_user=target_user,
            via=via,
            detail={
                "kind": kind,
                "key": key,
                "version": current + 1,
                "fields": changed_fields(before, obj),
            },
            on_behalf_of=on_behalf_of,
        )
        data = _data(obj)
        row: OverlayRow
        if kind == "user" and obj is None and before is not None:
            row = yield self._delete_user(config, key, current, entry)
        else:
            row = yield self.store.run(
                lambda s: s.directory.commit(kind, key, data, current, entry)
            )
        self.directory.swap(snapshot, {(kind, key): row.version})
        return Committed(obj, row.version, before)

    def _delete_user(
        self, config: Config, ext: str, current: int, entry: AuditEntry
    ) -> defer.Deferred[OverlayRow]:
        """Delete the user's row and purge its stored data in one transaction (see
        :mod:`ivr.store.purge`); the audit entry counts what went. Calls in progress
        keep the objects they hold and go on."""

        def commit(store: SqliteStore, conn: sqlite3.Connection, purged: Purged) -> OverlayRow:
            counted = replace(entry, detail={**entry.detail, "purged": purged.counts()})
            return store.directory.commit_in(conn, "user", ext, None, current, counted)

        d = self.store.purge_user(
            ext,
            recordings=greetings.user_dirs(config.recordings_dir, ext),
            within=commit,
            at=entry.at.timestamp(),  # a message still being recorded is not kept
        )
        return d.addCallback(lambda done: done[1])
