"""Repository interfaces: what the rest of ivr may ask of a store.

Small ``Protocol``s so that another backend (PostgreSQL) can stand in for SQLite.
All methods are synchronous and may block: from the reactor, go through
:class:`ivr.store.async_store.AsyncStore`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ivr.routing.state import AuditEntry, UserState
from ivr.sip.registrar import Binding
from ivr.store.queues import QueueStateRepository

__all__ = [
    "AuditRepository",
    "MetaRepository",
    "ProfileStateRepository",
    "RegistrationRepository",
    "Store",
    "VoicemailMessage",
    "VoicemailRepository",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class VoicemailMessage:
    """One stored message. ``path`` is relative to the recordings directory
    (``<mailbox>/<id>.wav``); ``duration`` is in seconds."""

    id: int
    mailbox: str
    caller: str
    called: str
    received_at: datetime
    duration: float
    heard: bool
    path: str


class VoicemailRepository(Protocol):
    """Messages: a row per message, its audio in a WAV file written before the row."""

    def add(
        self,
        *,
        mailbox: str,
        caller: str,
        called: str,
        received_at: datetime,
        pcm: npt.NDArray[np.int16],
    ) -> VoicemailMessage:
        """Store 8 kHz mono ``pcm``: the file is durable before the row is inserted."""
        ...

    def get(self, message_id: int) -> VoicemailMessage | None: ...

    def mark_heard(self, message_id: int, heard: bool = True) -> bool:
        """Set the heard flag; False when there is no such message."""
        ...

    def delete(self, message_id: int) -> bool:
        """Delete the row, then the file; False when there is no such message."""
        ...

    def file(self, message: VoicemailMessage) -> Path:
        """Where the message's WAV file is."""
        ...

    def remove_orphans(self, now: float, *, min_age: float = 600.0) -> list[Path]:
        """Delete WAV and temporary files that no row refers to and that were last
        modified at least ``min_age`` seconds before ``now`` (epoch seconds)."""
        ...

    def list(self, mailbox: str, *, heard: bool | None = None) -> list[VoicemailMessage]:
        """The mailbox's messages, oldest first (only heard/unheard ones when given)."""
        ...


class Store(Protocol):
    """A backend: the repositories plus atomic state-and-audit writes."""

    @property
    def states(self) -> ProfileStateRepository: ...

    @property
    def audit(self) -> AuditRepository: ...

    @property
    def registrations(self) -> RegistrationRepository: ...

    @property
    def meta(self) -> MetaRepository: ...

    @property
    def voicemail(self) -> VoicemailRepository: ...

    @property
    def queues(self) -> QueueStateRepository: ...

    def save_state_with_audit(
        self, state: UserState, expected_version: int, entry: AuditEntry
    ) -> UserState:
        """``states.save`` and ``audit.append`` in one transaction."""
        ...

    def close(self) -> None: ...
