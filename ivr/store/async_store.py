"""Twisted facade over a synchronous store: every call runs on ONE dedicated thread.

The SQLite connection is opened on that thread and only ever used there, so the
reactor never blocks on disk and sqlite3's same-thread rule holds. Calls run in the
order they were made.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from twisted.internet import threads
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorCore, IReactorThreads
from twisted.python.threadpool import ThreadPool

from ivr.call_records import CallRecord
from ivr.routing.queues import QueueState
from ivr.routing.state import AuditEntry, UserState
from ivr.sip.registrar import Binding
from ivr.store.errors import StoreError
from ivr.store.protocols import VoicemailMessage
from ivr.store.purge import Purged
from ivr.store.sqlite import SqliteStore
from ivr.store.state_cache import StateCache
from ivr.store.tokens import ApiToken

__all__ = ["AsyncStore"]

T = TypeVar("T")

RECORD_BATCH_DELAY = 0.05  # seconds a finished call's record may wait to share a transaction


class AsyncStore:
    """Deferred-returning access to a :class:`SqliteStore` created by ``open_store``.

    ``start()`` starts the worker thread and opens (and migrates) the database there;
    ``stop()`` closes it and joins the thread. Both return Deferreds.
    """

    def __init__(self, open_store: Callable[[], SqliteStore], reactor: Any) -> None:
        if not (IReactorThreads.providedBy(reactor) and IReactorCore.providedBy(reactor)):
            raise TypeError("reactor must provide IReactorThreads and IReactorCore")
        self._open_store = open_store
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="ivr-store")
        self._store: SqliteStore | None = None
        self._shutdown_trigger: object | None = None
        self._records: list[tuple[CallRecord, Deferred[bool]]] = []  # waiting to be written
        self._writing_records = False
        self._records_timer: IDelayedCall | None = None
        self._states = (
            StateCache()
        )  # every state write goes through here: reads can be answered at once

    @classmethod
    def for_path(cls, path: str | os.PathLike[str], reactor: Any, **kwargs: Any) -> AsyncStore:
        """An AsyncStore over ``SqliteStore(path, **kwargs)``."""
        return cls(lambda: SqliteStore(path, **kwargs), reactor)

    # lifecycle

    def start(self) -> Deferred[None]:
        if self._pool.started:
            raise StoreError("AsyncStore already started")
        self._pool.start()
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "during", "shutdown", self._on_shutdown
        )

        def failed(failure: Any) -> Any:
            self._stop_pool()
            return failure

        d = threads.deferToThreadPool(self._reactor, self._pool, self._open)
        return d.addErrback(failed)

    def stop(self) -> Deferred[None]:
        if not self._pool.started:
            return succeed(None)
        if self._records:  # call records still gathering or behind a write: before closing
            self._write_records()

        def done(result: Any) -> Any:
            self._stop_pool()
            return result

        d: Deferred[None] = threads.deferToThreadPool(self._reactor, self._pool, self._close)
        return d.addBoth(done)

    def _on_shutdown(self) -> None:
        """Reactor shutdown without ``stop()``: close on the thread, then join it."""
        self._shutdown_trigger = None  # firing now: already gone from the reactor's list
        if self._pool.started:
            self._pool.callInThread(self._close)
        self._stop_pool()

    # these three run on the store thread, the only one that touches self._store

    def _open(self) -> None:
        self._store = self._open_store()

    def _close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        store = self._store
        if store is None:
            raise StoreError("AsyncStore is not started")
        return fn(store, *args, **kwargs)

    def _stop_pool(self) -> None:
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        if self._pool.started:
            self._pool.stop()

    # generic access

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run ``fn(store, *args, **kwargs)`` on the store thread."""
        if not self._pool.started:
            return fail(StoreError("AsyncStore is not started"))
        return threads.deferToThreadPool(self._reactor, self._pool, self._call, fn, *args, **kwargs)

    # profile state and audit

    def get_state(self, user: str) -> Deferred[UserState]:
        """``user``'s stored state: as an earlier read found it when no write came
        since, else read on the store thread (see :mod:`ivr.store.state_cache`)."""
        known = self._states.get(user)
        if known is not None:
            return succeed(known)
        token = self._states.read_started(user)

        def remember(state: UserState) -> UserState:
            self._states.read_done(user, token, state)
            return state

        return self.run(lambda s: s.states.get(user)).addCallback(remember)

    def save_state(self, state: UserState, expected_version: int) -> Deferred[UserState]:
        return self._write_state(state.user, lambda s: s.states.save(state, expected_version))

    def save_state_with_audit(
        self, state: UserState, expected_version: int, entry: AuditEntry
    ) -> Deferred[UserState]:
        return self._write_state(
            state.user, lambda s: s.save_state_with_audit(state, expected_version, entry)
        )

    def _write_state(
        self, user: str, write: Callable[[SqliteStore], UserState]
    ) -> Deferred[UserState]:
        self._states.write_started(user)

        def done(result: Any) -> Any:
            self._states.write_done(user)
            return result

        return self.run(write).addBoth(done)

    def purge_user(
        self,
        user: str,
        *,
        recordings: Mapping[str, Path] | None = None,
        within: Callable[[SqliteStore, sqlite3.Connection, Purged], T] | None = None,
        at: float | None = None,
    ) -> Deferred[tuple[Purged, T | None]]:
        """Remove ``user``'s stored data and files (:meth:`SqliteStore.purge_user`); the
        remembered state is forgotten while it runs, so the old one is never served."""
        self._states.write_started(user)

        def done(result: Any) -> Any:
            self._states.write_done(user)
            return result

        purge = self.run(lambda s: s.purge_user(user, recordings=recordings, within=within, at=at))
        return purge.addBoth(done)

    def append_audit(self, entry: AuditEntry) -> Deferred[int]:
        return self.run(lambda s: s.audit.append(entry))

    def query_audit(
        self,
        *,
        user: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> Deferred[list[AuditEntry]]:
        return self.run(lambda s: s.audit.query(user=user, since=since, until=until, limit=limit))

    # registrations

    def load_registrations(self) -> Deferred[list[Binding]]:
        return self.run(lambda s: s.registrations.load_all())

    def replace_registrations(self, bindings: Iterable[Binding]) -> Deferred[None]:
        rows = list(bindings)
        return self.run(lambda s: s.registrations.replace_all(rows))

    def apply_registrations(
        self, *, upserts: Iterable[Binding] = (), deletes: Iterable[tuple[str, str]] = ()
    ) -> Deferred[None]:
        ups, dels = list(upserts), list(deletes)
        return self.run(lambda s: s.registrations.apply(upserts=ups, deletes=dels))

    # meta

    def get_meta(self, key: str) -> Deferred[bytes | None]:
        return self.run(lambda s: s.meta.get(key))

    def set_meta(self, key: str, value: bytes) -> Deferred[None]:
        return self.run(lambda s: s.meta.set(key, value))

    def auth_secret(self) -> Deferred[bytes]:
        return self.run(lambda s: s.meta.auth_secret())

    # voicemail

    def add_voicemail(
        self,
        *,
        mailbox: str,
        caller: str,
        called: str,
        received_at: datetime,
        pcm: npt.NDArray[np.int16],
    ) -> Deferred[VoicemailMessage]:
        """Write the WAV file (durably), then its row; fires with the stored message."""
        return self.run(
            lambda s: s.voicemail.add(
                mailbox=mailbox, caller=caller, called=called, received_at=received_at, pcm=pcm
            )
        )

    def list_voicemail(
        self, mailbox: str, *, heard: bool | None = None
    ) -> Deferred[list[VoicemailMessage]]:
        return self.run(lambda s: s.voicemail.list(mailbox, heard=heard))

    def get_voicemail(self, message_id: int) -> Deferred[VoicemailMessage | None]:
        return self.run(lambda s: s.voicemail.get(message_id))

    def mark_voicemail_heard(self, message_id: int, heard: bool = True) -> Deferred[bool]:
        return self.run(lambda s: s.voicemail.mark_heard(message_id, heard))

    def delete_voicemail(self, message_id: int) -> Deferred[bool]:
        return self.run(lambda s: s.voicemail.delete(message_id))

    def remove_voicemail_orphans(self, *, min_age: float = 600.0) -> Deferred[list[Path]]:
        """Sweep audio files without a row (left by a crash), judged by the reactor's clock."""
        now = float(self._reactor.seconds())
        return self.run(lambda s: s.voicemail.remove_orphans(now, min_age=min_age))

    # call records

    def add_call_record(self, record: CallRecord) -> Deferred[bool]:
        """Write a finished call's record (once: an id already stored is left alone).
        Records are gathered for up to ``RECORD_BATCH_DELAY`` and written in one
        transaction, as are those that come while a write is in flight: at hundreds of
        calls a second one trip to the store thread per record costs more than the write."""
        d: Deferred[bool] = Deferred()
        self._records.append((record, d))
        if not self._writing_records and self._records_timer is None:
            self._records_timer = self._reactor.callLater(RECORD_BATCH_DELAY, self._write_records)
        return d

    def _write_records(self) -> None:
        timer, self._records_timer = self._records_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        batch, self._records = self._records, []
        self._writing_records = True
        records = [record for record, _ in batch]

        def written(added: list[bool]) -> None:
            for (_, d), new in zip(batch, added, strict=True):
                d.callback(new)

        def failed(failure: Any) -> None:
            for _, d in batch:
                d.errback(failure)

        def next_batch(_: object) -> None:
            self._writing_records = False
            if self._records and self._records_timer is None:
                self._records_timer = self._reactor.callLater(
                    RECORD_BATCH_DELAY, self._write_records
                )

        done = self.run(lambda s: s.call_records.add_all(records))
        done.addCallbacks(written, failed).addBoth(next_batch)

    def get_call_record(self, record_id: str) -> Deferred[CallRecord | None]:
        return self.run(lambda s: s.call_records.get(record_id))

    def list_call_records(
        self, *, user: str | None = None, limit: int = 100
    ) -> Deferred[list[CallRecord]]:
        """The newest records (of ``user``'s calls when given), newest first."""
        return self.run(lambda s: s.call_records.list(user=user, limit=limit))

    # queue choices

    def get_queue_states(self, users: Iterable[str]) -> Deferred[dict[str, QueueState]]:
        wanted = list(users)
        return self.run(lambda s: s.queues.get_many(wanted))

    def save_queue_state(
        self, state: QueueState, expected_version: int, entry: AuditEntry | None = None
    ) -> Deferred[QueueState]:
        """Save a user's queue choice (and its audit entry) in one transaction."""
        return self.run(lambda s: s.queues.save(state, expected_version, entry))

    # API tokens

    def find_token(self, token_hash: str) -> Deferred[ApiToken | None]:
        """The live token with this SHA-256 hash (hex), or None."""
        return self.run(lambda s: s.tokens.find(token_hash))
