"""A user's active-profile state: what is active, why, who set it, and what to return to.

Pure data. Resolution rules (forced > manual > scheduled > standard) live in
``ivr.routing.profiles``; persistence lives in ``ivr.store``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Source = Literal["manual", "forced", "scheduled", "standard"]
Via = Literal["phone", "api", "ivr", "schedule", "config"]

SOURCES: frozenset[str] = frozenset({"manual", "forced", "scheduled", "standard"})
VIAS: frozenset[str] = frozenset({"phone", "api", "ivr", "schedule", "config"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Activation:
    """One activation of a profile: a manual or forced entry on a user's stack."""

    profile: str
    source: Source
    set_by: str
    set_via: Via
    set_at: datetime
    until: datetime | None = None

    def __post_init__(self) -> None:
        if not self.profile:
            raise ValueError("profile must not be empty")
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}")
        if self.set_via not in VIAS:
            raise ValueError(f"unknown set_via {self.set_via!r}")
        if self.set_at.tzinfo is None or (self.until is not None and self.until.tzinfo is None):
            raise ValueError("set_at and until must be timezone-aware")


@dataclass(frozen=True, slots=True, kw_only=True)
class UserState:
    """The stored profile state of one user.

    ``manual`` is a stack: the last entry is the one in force; when it expires the
    entry below it (or the schedule, or the standard profile) takes over again.
    ``version`` grows by one on every stored change (optimistic concurrency).
    """

    user: str
    forced: Activation | None = None
    manual: tuple[Activation, ...] = field(default_factory=tuple)
    version: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """Who changed what, how and when. ``on_behalf_of`` is set when an admin or a PIN
    holder acts for another user (both identities are kept)."""

    at: datetime
    actor: str
    action: str
    target_user: str
    via: str
    detail: dict[str, object] = field(default_factory=dict)
    on_behalf_of: str | None = None
