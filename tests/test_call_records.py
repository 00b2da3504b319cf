"""Call records: the pure builder (events → record, outcome) and the SQLite repository."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from ivr.call_records import (
    CallRecord,
    CallRecordBuilder,
    RecordIds,
    new_record_id,
    step_text,
)
from ivr.config import load_config
from ivr.routing import decide as routing
from ivr.routing.state import Activation, UserState
from ivr.store.async_store import AsyncStore
from ivr.store.call_records import SqliteCallRecordRepository
from ivr.store.sqlite import SqliteStore
from ivr.testing.service import DEFAULT_CONFIG

TZ = ZoneInfo("Europe/Stockholm")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=TZ)  # a Monday morning


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def builder(kind: str = "user", record_id: str = "c1") -> CallRecordBuilder:
    return CallRecordBuilder(
        id=record_id, kind=kind, caller="1001", caller_user="1001", dialled="1002", started_at=T0
    )


def real_decision(profile: str | None = None) -> routing.Decision:
    """What the routing core decides for Bengt (1002) in the demo company."""
    config = load_config(DEFAULT_CONFIG)
    user = config.user("1002")
    assert user is not None
    state = UserState(user="1002")
    if profile is not None:
        state = UserState(
            user="1002",
            manual=(
                Activation(
                    profile=profile,
                    source="manual",
                    set_by="1002",
                    set_via="phone",
                    set_at=T0 - timedelta(hours=1),
                ),
            ),
        )
    call = routing.Call(user=user, caller="1001", dialled="1002")
    return routing.decide(call, state, T0, rules=config.rules, schedules=user.schedules)


def test_ringing_answered_on_the_desk_the_softphone_cancelled() -> None:
    decision = real_decision()
    assert isinstance(decision, routing.Ring)
    b = builder()
    b.decided("1002", decision.trace, at(0.01))
    b.carried_out(decision, at(0.01))
    base = b.ringing([("1002-desk", "sip:1002@10.0.0.2"), ("1002-soft", "sip:s@10.0.0.3")], at(0))
    assert base == 0
    b.answered(0, at(4))
    b.leg_final(1, 487)  # the loser's answer to our CANCEL
    b.leg_final(0, 200)
    record = b.finish(at(64))
    assert record is not None
    assert record.outcome == "answered" and record.status == 200
    assert record.user == "1002" and record.parties == ("1001", "1002")
    assert [(leg.device, leg.status, leg.answered) for leg in record.legs] == [
        ("1002-desk", 200, True),
        ("1002-soft", 487, False),
    ]
    assert record.answered_at == at(4) and record.duration == 60.0
    assert record.decisions[0].trace == decision.trace
    assert "ring" in record.decisions[0].trace[-2] and record.decisions[0].trace[0].startswith(
        "profile"
    )
    assert [s.text for s in record.steps] == [step_text(decision), "answered on 1002-desk"]
    assert b.finish(at(65)) is None, "a record is produced once"


def test_no_answer_then_voicemail_keeps_each_step_and_the_408s() -> None:
    decision = real_decision()
    assert isinstance(decision, routing.Ring) and isinstance(decision.then, routing.Voicemail)
    b = builder()
    b.decided("1002", decision.trace, at(0))
    b.carried_out(decision, at(0))
    base = b.ringing([("1002-desk", "sip:d"), ("1002-soft", "sip:s")], at(0))
    b.not_reached(base, (408, 408), "no answer in time", at(25))
    b.leg_final(0, 487)  # a late answer to the CANCEL does not replace "no answer"
    b.carried_out(decision.then, at(25))
    b.we_answered(decision.then, at(25.1))
    record = b.finish(at(40))
    assert record is not None and record.outcome == "voicemail"
    assert [leg.status for leg in record.legs] == [408, 408]
    assert record.trace() == (
        f"{step_text(decision)} → no answer in time (408, 408) → voicemail 1002"
    )


def test_redirect_outcome_depends_on_whether_voicemail_was_reached() -> None:
    decision = real_decision("lunch")
    assert isinstance(decision, routing.Redirect), decision
    assert isinstance(decision.then, routing.Voicemail)
    left_early = builder()
    left_early.carried_out(decision, at(0))
    left_early.we_answered(decision, at(0.1))
    record = left_early.finish(at(3))
    assert record is not None and record.outcome == "redirect"
    assert record.steps[0].text == "redirect lunch"

    stayed = builder()
    stayed.carried_out(decision, at(0))
    stayed.we_answered(decision, at(0.1))
    stayed.voicemail_reached("1002", at(6))
    record = stayed.finish(at(20))
    assert record is not None and record.outcome == "voicemail"
    assert record.trace() == "redirect lunch → voicemail 1002"


@pytest.mark.parametrize(
    ("events", "outcome", "status"),
    [
        (lambda b: b.rejected(486, None, at(0)), "busy", 486),
        (lambda b: b.rejected(482, "Loop Detected", at(0)), "failed", 482),
        (lambda b: b.cancelled(at(2)), "cancelled", 487),
        (lambda b: None, "failed", None),
    ],
)
def test_outcomes_of_calls_that_were_never_answered(
    events: object, outcome: str, status: int | None
) -> None:
    b = builder()
    b.ringing([("1002-desk", "sip:d")], at(0))
    events(b)  # type: ignore[operator]
    record = b.finish(at(3))
    assert record is not None and (record.outcome, record.status) == (outcome, status)
    assert record.answered_at is None and record.duration == 0.0


def test_a_forwarded_call_answered_elsewhere_is_forwarded() -> None:
    b = builder()
    b.decided("1002", ("profile trip", "direct", "forward to 1003"), at(0))
    b.carried_out(routing.Forward(target="1003"), at(0))
    b.decided("1003", ("profile available", "plan: ring 1003-desk 25 s"), at(0.1))
    base = b.ringing([("1003-desk", "sip:c")], at(0.1))
    b.answered(base, at(2))
    record = b.finish(at(10))
    assert record is not None and record.outcome == "forwarded"
    assert record.user == "1002" and record.users == ("1002", "1003")
    assert record.parties == ("1001", "1002", "1003")
    assert [d.user for d in record.decisions] == ["1002", "1003"]


def test_cancel_after_answer_does_not_change_the_outcome() -> None:
    b = builder()
    b.ringing([("1002-desk", "sip:d")], at(0))
    b.answered(0, at(1))
    b.cancelled(at(1.5))  # a CANCEL crossing the 200
    record = b.finish(at(5))
    assert record is not None and record.outcome == "answered"


def test_records_round_trip_through_json_and_refuse_bad_values() -> None:
    b = builder()
    b.decided("1002", ("profile available", "voicemail 1002"), at(0))
    b.ringing([("1002-desk", "sip:d")], at(0))
    b.not_reached(0, (480,), "no device answered", at(1))
    record = b.finish(at(2))
    assert record is not None
    assert CallRecord.from_json(record.as_json()) == record
    with pytest.raises(ValueError, match="outcome"):
        CallRecord.from_json({**record.as_json(), "outcome": "lost"})
    with pytest.raises(ValueError, match="end before"):
        CallRecord.from_json({**record.as_json(), "ended_at": at(-1).isoformat()})
    with pytest.raises(ValueError, match="kind"):
        builder(kind="fax")


def test_record_ids_come_from_the_injected_random_source() -> None:
    assert new_record_id(random.Random(7)) == new_record_id(random.Random(7))
    assert len({new_record_id(random.Random(i)) for i in range(50)}) == 50


def _record(record_id: str, start: float, callee: str, caller: str = "1001") -> CallRecord:
    b = CallRecordBuilder(
        id=record_id,
        kind="user",
        caller=caller,
        caller_user=caller if caller.isdigit() and len(caller) == 4 else None,
        dialled=callee,
        started_at=at(start),
    )
    b.decided(callee, ("profile available",), at(start))
    b.rejected(486, None, at(start))
    record = b.finish(at(start + 1))
    assert record is not None
    return record


def test_the_store_keeps_each_record_once_and_lists_a_user_s_calls_newest_first(
    tmp_path: Path,
) -> None:
    with SqliteStore(tmp_path / "ivr.sqlite3") as store:
        repo = store.call_records
        assert repo.add(_record("a", 0, "1002"))
        assert repo.add(_record("b", 10, "1003"))
        assert repo.add(_record("c", 20, "1002", caller="+46701234567"))
        assert not repo.add(_record("a", 99, "1003")), "written once"
        assert [r.id for r in repo.list()] == ["c", "b", "a"]
        assert [r.id for r in repo.list(user="1002")] == ["c", "a"]
        assert [r.id for r in repo.list(user="1001")] == ["b", "a"], "the caller's own calls"
        assert [r.id for r in repo.list(user="1001", limit=1)] == ["b"]
        assert repo.list(user="9999") == []
        assert repo.get("a") == _record("a", 0, "1002")
        assert repo.get("zzz") is None
        with pytest.raises(ValueError, match="limit"):
            repo.list(limit=0)
    with SqliteStore(tmp_path / "ivr.sqlite3") as reopened:
        assert [r.id for r in reopened.call_records.list()] == ["c", "b", "a"], "durable"


def test_record_ids_draw_once_then_count() -> None:
    ids = RecordIds(random.Random(3))
    first, second = ids(), ids()
    assert first[:8] == second[:8] and int(second, 16) == int(first, 16) + 1
    assert RecordIds(random.Random(4))()[:8] != first[:8]


def test_a_large_batch_writes_each_new_id_once(tmp_path: Path) -> None:
    """More ids than one query takes, one already stored, one twice in the batch."""
    with SqliteStore(tmp_path / "ivr.sqlite3") as store:
        assert store.call_records.add_all([_record("r7", 7, "1002")]) == [True]
        batch = [_record(f"r{i}", i, "1002") for i in range(1200)]
        added = store.call_records.add_all([*batch, _record("r3", 3, "1002")])
        assert added == [i != 7 for i in range(1200)] + [False]
        assert len(store.call_records.list(user="1002", limit=1000)) == 1000
        assert store.call_records.get("r1199") == batch[1199]
        assert store.call_records.list(user="1001", limit=2)[0].id == "r1199"


@pytest_twisted.inlineCallbacks
def test_the_async_store_writes_records_that_come_together_in_one_transaction(
    tmp_path: Path,
):  # type: ignore[no-untyped-def]
    store = AsyncStore.for_path(tmp_path / "ivr.sqlite3", reactor)
    yield store.start()
    batches: list[int] = []
    try:
        original = SqliteCallRecordRepository.add_all

        def counting(self: SqliteCallRecordRepository, records: list[CallRecord]) -> list[bool]:
            batches.append(len(records))
            return original(self, records)

        SqliteCallRecordRepository.add_all = counting  # type: ignore[method-assign]
        written = [store.add_call_record(_record(f"r{i}", i, "1002")) for i in range(5)]
        again = store.add_call_record(_record("r0", 0, "1002"))
        results = yield defer.gatherResults([*written, again])
    finally:
        SqliteCallRecordRepository.add_all = original  # type: ignore[method-assign]
    assert results == [True] * 5 + [False], "the duplicate id is not written twice"
    assert batches == [6], "records finished together share one transaction"
    found = yield store.list_call_records(user="1002", limit=3)
    assert [r.id for r in found] == ["r4", "r3", "r2"]
    assert (yield store.get_call_record("r1")) == _record("r1", 1, "1002")
    yield store.stop()


def test_a_caller_moved_on_from_the_redirect_is_forwarded() -> None:
    decision = real_decision("lunch")
    assert isinstance(decision, routing.Redirect)
    b = builder()
    b.carried_out(decision, at(0))
    b.we_answered(decision, at(0.1))
    b.forwarded_to = "1002-mobile"
    base = b.ringing([("1002-mobile", "sip:+46701740606@trunk")], at(9))
    b.took_over(base, at(9))
    record = b.finish(at(30))
    assert record is not None and record.outcome == "forwarded"
    assert record.legs[0].answered and record.legs[0].status == 200
    assert record.trace() == "redirect lunch → moved to 1002-mobile"
