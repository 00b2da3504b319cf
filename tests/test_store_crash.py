"""Crash safety: a writer killed with SIGKILL loses nothing it reported as committed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import ivr
from ivr.store import LATEST_VERSION, SqliteStore

AOR = "sip:1001@pbx"

# The child loops for ever; after each commit it prints the number of committed
# profile changes. State and audit go in one transaction, registrations in another.
CHILD = f"""
import sys
from datetime import UTC, datetime
from ivr.routing.state import Activation, AuditEntry, UserState
from ivr.sip.registrar import Binding
from ivr.store import SqliteStore

store = SqliteStore(sys.argv[1])
version = store.states.get("1001").version


def registrations(v):
    store.registrations.apply(
        upserts=[Binding(aor={AOR!r}, contact=f"sip:{{v}}@x", expires_at=1e9,
                         call_id="c", cseq=v)],
        deletes=[({AOR!r}, f"sip:{{v - 5}}@x")],
    )


# a kill between the two transactions skipped the last batch: redo it (idempotent)
if version:
    registrations(version - 1)
while True:
    now = datetime.now(UTC)
    stack = tuple(
        Activation(profile=f"p{{version}}-{{k}}", source="manual", set_by="1001",
                   set_via="phone", set_at=now)
        for k in range(version % 3)
    )
    entry = AuditEntry(at=now, actor="1001", action="activate", target_user="1001",
                       via="phone", detail={{"i": version}})
    store.save_state_with_audit(UserState(user="1001", manual=stack), version, entry)
    registrations(version)
    version += 1
    print(version, flush=True)
"""


def run_and_kill(db: Path, at_least: int) -> int:
    """Run the child until it reports ``at_least`` commits, SIGKILL it, and return the
    last count it managed to print."""
    env = {**os.environ, "PYTHONPATH": str(Path(ivr.__file__).parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    last = 0
    for line in proc.stdout:
        last = int(line)
        if last >= at_least:
            break
    os.kill(proc.pid, signal.SIGKILL)
    tail = proc.stdout.read().split()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return int(tail[-1]) if tail else last


def check_consistent(db: Path, reported: int) -> int:
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()
    with SqliteStore(db) as store:
        assert store.schema_version == LATEST_VERSION
        state = store.states.get("1001")
        version = state.version
        # everything reported is there; at most one more commit that was not yet printed
        assert reported <= version <= reported + 1
        # state and audit were written atomically: one audit entry per version
        audit = store.audit.query(limit=10**6)
        assert sorted(e.detail["i"] for e in audit) == list(range(version))  # type: ignore[type-var]
        assert [a.profile for a in state.manual] == [
            f"p{version - 1}-{k}" for k in range((version - 1) % 3)
        ]
        # the registration batch of the last version may or may not have committed
        contacts = {b.contact for b in store.registrations.load_all()}
        windows = [
            {f"sip:{i}@x" for i in range(max(0, last - 4), last + 1)}
            for last in (version - 1, version - 2)
        ]
        assert contacts in windows
    return version


def test_sigkill_mid_writes_keeps_committed_state(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    first = check_consistent(db, run_and_kill(db, 150))
    second = check_consistent(db, run_and_kill(db, first + 150))
    assert second >= first + 150
