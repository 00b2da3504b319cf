"""Runs profile commands against the store: load, apply (pure), save with its audit entry.

The change and its audit entry are written in one transaction; a concurrent change
(optimistic version conflict) is retried on the fresh state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from twisted.internet import defer

from ivr.config import Config
from ivr.directory import Directory
from ivr.routing.commands import CommandResult, ProfileCommand, apply_command
from ivr.routing.profiles import Effective, Rules, effective, expire
from ivr.routing.state import AuditEntry, Via
from ivr.store.async_store import AsyncStore
from ivr.store.errors import ConflictError

MAX_ATTEMPTS = 3


class UnknownUser(LookupError):
    """No user with that extension."""


class ProfileService:
    """The one way profiles change, whoever asks (phone, API, IVR)."""

    def __init__(
        self, config: Config | Directory, store: AsyncStore, now: Callable[[], datetime]
    ) -> None:
        self.directory = config if isinstance(config, Directory) else Directory(config)
        self.store = store
        self.now = now
        self._locks: dict[str, defer.DeferredLock] = {}
        # Called as listener(user, result, audit_entry) after each stored change (the
        # queue service: a profile change logs into/out of queues); may return a Deferred.
        self.listeners: list[Callable[..., Any]] = []

    @property
    def config(self) -> Config:
        """The directory's current snapshot (read at the moment of use)."""
        return self.directory.config

    @property
    def rules(self) -> Rules:
        return self.directory.config.rules

    def _user(self, extension: str) -> Any:
        user = self.config.user(extension)
        if user is None:
            raise UnknownUser(extension)
        return user

    @defer.inlineCallbacks
    def execute(
        self,
        extension: str,
        command: ProfileCommand,
        *,
        actor: str,
        via: Via,
        on_behalf_of: str | None = None,
        device: str | None = None,
    ) -> Any:
        """Apply ``command`` to ``extension``'s profile state; returns a CommandResult.
        ``device``: the phone it came from (kept in the audit detail).

        Changes to one user run one after another (a lock per user); the version check
        still guards against another process writing the same state."""
        user = self._user(extension)
        lock = self._locks.setdefault(user.extension, defer.DeferredLock())
        yield lock.acquire()
        try:
            result = yield self._execute(user, command, actor, via, on_behalf_of, device)
        finally:
            lock.release()
        return result

    @defer.inlineCallbacks
    def _execute(
        self,
        user: Any,
        command: ProfileCommand,
        actor: str,
        via: Via,
        on_behalf_of: str | None,
        device: str | None = None,
    ) -> Any:
        for attempt in range(MAX_ATTEMPTS):
            now = self.now()
            state = yield self.store.get_state(user.extension)
            result: CommandResult = apply_command(
                command,
                state,
                rules=self.rules,
                schedules=user.schedules,
                by=actor,
                via=via,
                now=now,
            )
            if not result.changed:
                return result
            entry = AuditEntry(
                at=now,
                actor=actor,
                action=result.action,
                target_user=user.extension,
                via=via,
                detail={**result.detail, "device": device} if device else result.detail,
                on_behalf_of=on_behalf_of,
            )
            try:
                saved = yield self.store.save_state_with_audit(result.state, state.version, entry)
            except ConflictError:
                if attempt == MAX_ATTEMPTS - 1:
                    raise
                continue
            for listener in self.listeners:
                yield listener(user, result, entry)
            return replace(result, state=saved)
        raise AssertionError("unreachable")

    @defer.inlineCallbacks
    def current(self, extension: str) -> Any:
        """The effective profile of ``extension`` now (expired entries ignored)."""
        user = self._user(extension)
        state = yield self.store.get_state(user.extension)
        now = self.now()
        found: Effective = effective(expire(state, now), user.schedules, now, self.rules)
        return found


def effective_json(found: Effective, language: str = "sv") -> dict[str, object]:
    """The JSON view of an effective profile (API and CLI)."""
    profile = found.profile
    return {
        "profile": profile.id,
        "number": profile.number,
        "name": profile.label(language),
        "presence": profile.presence,
        "colour": profile.colour,
        "icon": profile.icon,
        "source": found.source,
        "until": found.until.isoformat() if found.until else None,
        "set_by": found.set_by,
        "set_via": found.set_via,
        "set_at": found.set_at.isoformat() if found.set_at else None,
    }
