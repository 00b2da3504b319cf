"""The audit trail of a running service, read from its database (for tests)."""

from __future__ import annotations

from ivr.routing.state import AuditEntry
from ivr.store.sqlite import SqliteStore
from ivr.testing.service import RunningService

QUEUE_ACTIONS = frozenset({"queue_login", "queue_logout", "queue_pause", "queue_unpause"})


def audit_log(service: RunningService, user: str, *, queues: bool = True) -> list[AuditEntry]:
    """The entries about ``user``, newest first; ``queues=False`` leaves out queue logins
    and logouts (a profile change brings its own, tested where queues are the subject)."""
    with SqliteStore(service.db) as store:
        entries = list(store.audit.query(user=user))
    return [e for e in entries if queues or e.action not in QUEUE_ACTIONS]


def audit_actions(service: RunningService, user: str, *, queues: bool = True) -> list[str]:
    """The actions of :func:`audit_log`."""
    return [e.action for e in audit_log(service, user, queues=queues)]
