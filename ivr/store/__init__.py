"""Persistence: repositories behind small Protocols, SQLite by default, atomic files.

``ivr.store.async_store.AsyncStore`` (the only Twisted-aware module here) runs the
blocking store on one dedicated thread; import it from there.
"""

from ivr.store.errors import ConflictError, SchemaVersionError, StoreError
from ivr.store.files import atomic_write
from ivr.store.migrations import LATEST_VERSION
from ivr.store.protocols import (
    AuditRepository,
    MetaRepository,
    ProfileStateRepository,
    RegistrationRepository,
    Store,
)
from ivr.store.sqlite import SqliteStore

__all__ = [
    "LATEST_VERSION",
    "AuditRepository",
    "ConflictError",
    "MetaRepository",
    "ProfileStateRepository",
    "RegistrationRepository",
    "SchemaVersionError",
    "SqliteStore",
    "Store",
    "StoreError",
    "atomic_write",
]
