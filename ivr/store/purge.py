"""Removing a deleted user's stored data, so whoever gets the extension next starts clean.

What goes, in ONE write transaction: the profile state (``user_state`` and its
``activation`` rows), the queue choice (``queue_state``), the API tokens (``api_token``,
revoked ones too), the voicemail rows (``voicemail``) and the PIN-guard counters
(``pin_guard``). What stays: the audit log (immutable history) and the call records
(history: they name the extension, they are not the person's data).

Files, in the order that never shows old data to a new user:

1. Before the transaction, each of the user's recording directories (greetings,
   recorded name) is renamed aside in its parent to ``.purge-<extension>`` (an atomic
   rename; a name starting with a dot is never an extension, so nothing reads it).
2. The transaction commits, together with the caller's own writes (the directory row
   and the audit entry of the deletion). If it fails, the directories are renamed back.
3. The renamed directories are removed, then the voicemail WAVs of the deleted rows.

A crash after 1 leaves renamed directories (if the transaction had not committed, the
user keeps its data rows but has lost its greetings: the admin was deleting it); a crash
after 2 leaves renamed directories and voicemail files without rows. None of them can
reach a new user: a voicemail file is only reached through its row (message ids are
never reused, so a new message never lands on an old file) and a renamed directory is
no user's path. Leftovers are swept: renamed directories by :func:`sweep_stashes` at the
start of the next purge, voicemail files without rows by
:meth:`ivr.store.sqlite.SqliteVoicemailRepository.remove_orphans`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, TypeVar

from ivr.store.files import _fsync_dir

__all__ = ["STASH_PREFIX", "Purged", "purge_rows", "purge_user", "purged_key", "sweep_stashes"]

T = TypeVar("T")

STASH_PREFIX = ".purge-"


class _Transactions(Protocol):
    def write(self) -> AbstractContextManager[sqlite3.Connection]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Purged:
    """What a purge removed. ``files``: recordings removed per kind (e.g. ``greetings``,
    ``name``); ``voicemail_files``: the deleted messages' paths, relative to the root."""

    user: str
    voicemail: int = 0
    tokens: int = 0
    state: bool = False
    queue: bool = False
    pin_guard: bool = False
    files: Mapping[str, int] = field(default_factory=dict)
    voicemail_files: tuple[str, ...] = ()

    def counts(self) -> dict[str, object]:
        """The audit's summary: voicemail messages, tokens and recordings per kind."""
        return {"voicemail": self.voicemail, "tokens": self.tokens, **self.files}


def purge_rows(conn: sqlite3.Connection, user: str, *, at: float | None = None) -> Purged:
    """Delete ``user``'s rows inside the caller's transaction (files are not touched).
    With ``at`` (epoch seconds) the mailbox is marked purged then: a voicemail whose
    recording began before it (a call still in progress) is refused when it is saved."""
    if at is not None:
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (purged_key(user), repr(float(at)).encode()),
        )
    paths = tuple(
        str(p)
        for (p,) in conn.execute(
            "SELECT path FROM voicemail WHERE mailbox = ? ORDER BY id", (user,)
        ).fetchall()
    )
    conn.execute("DELETE FROM voicemail WHERE mailbox = ?", (user,))
    tokens = conn.execute("DELETE FROM api_token WHERE user = ?", (user,)).rowcount
    conn.execute("DELETE FROM activation WHERE user = ?", (user,))
    state = conn.execute("DELETE FROM user_state WHERE user = ?", (user,)).rowcount
    queue = conn.execute("DELETE FROM queue_state WHERE user = ?", (user,)).rowcount
    pins = conn.execute("DELETE FROM pin_guard WHERE account = ?", (user,)).rowcount
    return Purged(
        user=user,
        voicemail=len(paths),
        tokens=tokens,
        state=state > 0,
        queue=queue > 0,
        pin_guard=pins > 0,
        voicemail_files=paths,
    )


def purged_key(mailbox: str) -> str:
    """The ``meta`` key holding when ``mailbox``'s user was last purged."""
    return f"purged:{mailbox}"


def sweep_stashes(directories: Iterable[Path]) -> list[Path]:
    """Remove every ``.purge-*`` directory left in the parents of ``directories``."""
    removed: list[Path] = []
    for parent in sorted({d.parent for d in directories}):
        if not parent.is_dir():
            continue
        for child in sorted(parent.iterdir()):
            if child.name.startswith(STASH_PREFIX) and child.is_dir():
                _remove(child)
                removed.append(child)
    return removed


def _remove(directory: Path) -> None:
    if directory.is_symlink():  # the link goes, not what it points at
        directory.unlink(missing_ok=True)
    else:
        shutil.rmtree(directory, ignore_errors=True)


def _stash(directory: Path) -> Path | None:
    if not directory.is_dir():
        return None
    target = directory.with_name(STASH_PREFIX + directory.name)
    os.rename(directory, target)
    _fsync_dir(str(directory.parent))
    return target


def _wav_count(directory: Path) -> int:
    return sum(1 for p in directory.iterdir() if p.suffix == ".wav" and not p.name.startswith("."))


def purge_user(
    db: _Transactions,
    user: str,
    *,
    recordings: Mapping[str, Path] | None = None,
    voicemail_root: Path | None = None,
    within: Callable[[sqlite3.Connection, Purged], T] | None = None,
    at: float | None = None,
) -> tuple[Purged, T | None]:
    """Purge ``user`` (see the module docstring for the order). ``recordings``: the
    user's recording directories by kind (counted and removed); ``within`` runs in the
    same transaction after the rows are gone (e.g. the directory commit with its audit
    entry) and its result is returned with what was removed."""
    dirs = dict(recordings or {})
    sweep_stashes(dirs.values())
    counted = {kind: _wav_count(d) if d.is_dir() else 0 for kind, d in dirs.items()}
    stashed: list[tuple[Path, Path]] = []
    try:
        for directory in dirs.values():
            target = _stash(directory)
            if target is not None:
                stashed.append((directory, target))
        with db.write() as conn:
            purged = replace(purge_rows(conn, user, at=at), files=counted)
            result = None if within is None else within(conn, purged)
    except BaseException:
        for directory, target in reversed(stashed):
            with contextlib.suppress(OSError):
                os.rename(target, directory)
        raise
    for _, target in stashed:
        _remove(target)
    if voicemail_root is not None:
        for relative in purged.voicemail_files:
            with contextlib.suppress(OSError):  # left to remove_orphans
                (voicemail_root / relative).unlink(missing_ok=True)
    return purged, result
