"""Errors raised by the stores."""

from __future__ import annotations

__all__ = ["ConflictError", "MailboxPurged", "SchemaVersionError", "StoreError"]


class StoreError(Exception):
    """Base class for storage errors."""


class ConflictError(StoreError):
    """An optimistic-concurrency check failed: someone else saved first."""

    def __init__(self, user: str, expected: int, actual: int) -> None:
        super().__init__(
            f"profile state of {user!r} is at version {actual}, expected {expected}; "
            "reload and retry"
        )
        self.user = user
        self.expected = expected
        self.actual = actual


class SchemaVersionError(StoreError):
    """The database was written by a newer ivr than this one."""


class MailboxPurged(StoreError):
    """A voicemail recorded before its mailbox's user was deleted: not kept (whoever
    gets the extension next must not find it)."""

    def __init__(self, mailbox: str) -> None:
        self.mailbox = mailbox
        super().__init__(f"mailbox {mailbox} was purged while the message was recorded")
