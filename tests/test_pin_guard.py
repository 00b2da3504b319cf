"""The PIN guard (pure) and its stored counters (real SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from ivr.pin_guard import PinAttempts, PinPolicy, PinRecord, is_locked
from ivr.store.sqlite import SqliteStore

POLICY = PinPolicy(tries_per_call=3, failures_per_hour=10, lockout_seconds=900.0)
T0 = 1_800_000_000.0


def test_the_right_pin_passes_and_clears_earlier_failures() -> None:
    guard = PinAttempts(POLICY)
    record = PinRecord(account="1002", failures=(T0 - 60,))
    verdict = guard.check(record, "2345", "2345", T0)
    assert verdict.outcome == "ok"
    assert verdict.record == PinRecord(account="1002")
    assert verdict.events == () and verdict.changed


def test_wrong_pins_count_and_the_third_in_a_call_locks_the_account() -> None:
    guard = PinAttempts(POLICY)
    record = PinRecord(account="1002")
    outcomes = []
    for i in range(3):
        verdict = guard.check(record, "0000", "2345", T0 + i)
        record = verdict.record
        outcomes.append(verdict.outcome)
        assert verdict.events[0].kind == "pin-failure"
        assert verdict.events[0].detail["call_tries"] == i + 1
    assert outcomes == ["wrong", "wrong", "locked"]
    assert [e.kind for e in verdict.events] == ["pin-failure", "pin-lockout"]
    assert verdict.events[1].detail["limit"] == "call"
    assert record.locked_until == T0 + 2 + 900.0
    assert record.failures == (T0, T0 + 1, T0 + 2)


def test_a_locked_account_is_refused_without_looking_at_the_pin() -> None:
    locked = PinRecord(account="1002", failures=(T0,), locked_until=T0 + 900)
    verdict = PinAttempts(POLICY).check(locked, "2345", "2345", T0 + 10)  # the right PIN
    assert verdict.outcome == "locked" and not verdict.changed
    assert verdict.record == locked
    assert [e.kind for e in verdict.events] == ["pin-refused"]
    assert is_locked(locked, T0 + 899.9) and not is_locked(locked, T0 + 900)
    after = PinAttempts(POLICY).check(locked, "2345", "2345", T0 + 900)
    assert after.outcome == "ok" and after.record.locked_until is None


def test_ten_failures_within_an_hour_across_calls_lock_older_ones_are_forgotten() -> None:
    record = PinRecord(account="1002", failures=(T0 - 4000,))  # more than an hour ago
    outcomes = []
    for call in range(5):
        guard = PinAttempts(POLICY)  # a new call: two tries each, then hang up
        for i in range(2):
            verdict = guard.check(record, "1111", "2345", T0 + call * 60 + i)
            record = verdict.record
            outcomes.append(verdict.outcome)
    assert outcomes == ["wrong"] * 9 + ["locked"]
    assert verdict.events[-1].kind == "pin-lockout"
    assert verdict.events[-1].detail["limit"] == "hour"
    assert len(record.failures) == 10 and T0 - 4000 not in record.failures


def test_counts_are_per_account_within_a_call() -> None:
    guard = PinAttempts(POLICY)
    a = guard.check(PinRecord(account="1001"), "0", "1234", T0)
    b = guard.check(PinRecord(account="1002"), "0", "2345", T0)
    assert a.outcome == b.outcome == "wrong"
    assert guard.tries == {"1001": 1, "1002": 1}


@pytest.mark.parametrize(
    "kwargs",
    [{"tries_per_call": 0}, {"failures_per_hour": 0}, {"lockout_seconds": 0}],
)
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PinPolicy(**kwargs)  # type: ignore[arg-type]


def test_records_and_saved_flags_are_stored(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "db.sqlite3", recordings_dir=tmp_path / "rec") as store:
        repo = store.selfservice
        assert repo.pin_record("1002") == PinRecord(account="1002")
        locked = PinRecord(account="1002", failures=(T0, T0 + 1.5), locked_until=T0 + 900)
        repo.save_pin_record(locked)
        assert repo.pin_record("1002") == locked
        repo.save_pin_record(PinRecord(account="1002"))  # clean: the row goes
        assert repo.pin_record("1002") == PinRecord(account="1002")

        message = store.voicemail.add(
            mailbox="1001",
            caller="+46701740699",
            called="1001",
            received_at=datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
            pcm=np.full(8000, 1000, dtype=np.int16),
        )
        assert repo.saved_ids("1001") == frozenset()
        assert repo.mark_saved(message.id)
        assert repo.saved_ids("1001") == {message.id}
        got = store.voicemail.get(message.id)
        assert got is not None and got.heard, "a saved message is heard"
        assert repo.mark_saved(message.id, False) and repo.saved_ids("1001") == frozenset()
        assert not repo.mark_saved(9999)


def test_judging_reads_and_writes_in_one_transaction(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "db.sqlite3") as store:
        repo = store.selfservice
        first, second = PinAttempts(POLICY), PinAttempts(POLICY)  # two calls at once

        def judge(guard: PinAttempts, now: float):  # type: ignore[no-untyped-def]
            def run(record: PinRecord):  # type: ignore[no-untyped-def]
                verdict = guard.check(record, "0000", "2345", now)
                return verdict.outcome, verdict.record if verdict.changed else None

            return run

        outcomes = [
            repo.judge_pin("1002", judge(first, T0)),
            repo.judge_pin("1002", judge(second, T0 + 1)),
            repo.judge_pin("1002", judge(first, T0 + 2)),
        ]
        assert outcomes == ["wrong", "wrong", "wrong"]
        assert repo.pin_record("1002").failures == (T0, T0 + 1, T0 + 2), "none lost"
        assert repo.judge_pin("1002", judge(first, T0 + 3)) == "locked"
        assert repo.pin_record("1002").locked_until == T0 + 3 + 900.0
        assert repo.judge_pin("1002", lambda r: ("kept", None)) == "kept"
        assert is_locked(repo.pin_record("1002"), T0 + 10)
