"""Errors raised by the stores."""

from __future__ import annotations

__all__ = ["ConflictError", "SchemaVersionError", "StoreError"]


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
