"""Repository interfaces: what the rest of ivr may ask of a store.

Small ``Protocol``s so that another backend (PostgreSQL) can stand in for SQLite.
All methods are synchronous and may block: from the reactor, go through
:class:`ivr.store.async_store.AsyncStore`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from ivr.routing.state import AuditEntry, UserState
from ivr.sip.registrar import Binding

__all__ = [
    "AuditRepository",
    "MetaRepository",
    "ProfileStateRepository",
    "RegistrationRepository",
    "Store",
]


class ProfileStateRepository(Protocol):
    def get(self, user: str) -> UserState:
        """The stored state, or an empty one at version 0."""
        ...

    def save(self, state: UserState, expected_version: int) -> UserState:
        """Store ``state`` if the stored version is ``expected_version`` (0 when none is
        stored) and return it at ``expected_version + 1``; else raise ``ConflictError``."""
        ...


class AuditRepository(Protocol):
    def append(self, entry: AuditEntry) -> int:
        """Append one entry; returns its id."""
        ...

    def query(
        self,
        *,
        user: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Entries whose target user is ``user`` with ``since <= at < until``, newest first."""
        ...


class RegistrationRepository(Protocol):
    def load_all(self) -> list[Binding]: ...

    def replace_all(self, bindings: Iterable[Binding]) -> None:
        """Make the stored bindings exactly ``bindings``."""
        ...

    def upsert(self, bindings: Iterable[Binding]) -> None: ...

    def delete(self, keys: Iterable[tuple[str, str]]) -> None:
        """Delete bindings by (aor, contact); missing keys are ignored."""
        ...

    def apply(
        self, *, upserts: Iterable[Binding] = (), deletes: Iterable[tuple[str, str]] = ()
    ) -> None:
        """One write-behind batch: upserts and deletes in a single transaction."""
        ...


class MetaRepository(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> None: ...

    def auth_secret(self) -> bytes:
        """The digest-auth secret: 32 random bytes generated once, then kept."""
        ...


class Store(Protocol):
    """A backend: the four repositories plus atomic state-and-audit writes."""

    @property
    def states(self) -> ProfileStateRepository: ...

    @property
    def audit(self) -> AuditRepository: ...

    @property
    def registrations(self) -> RegistrationRepository: ...

    @property
    def meta(self) -> MetaRepository: ...

    def save_state_with_audit(
        self, state: UserState, expected_version: int, entry: AuditEntry
    ) -> UserState:
        """``states.save`` and ``audit.append`` in one transaction."""
        ...

    def close(self) -> None: ...
