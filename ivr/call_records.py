"""Call records: one per call, built from small events while the call runs (pure).

A call controller keeps a :class:`CallRecordBuilder` and feeds it what happens: the
routing core's decision for each user the call reaches (:meth:`~CallRecordBuilder.decided`,
with its trace), the steps carried out (:meth:`~CallRecordBuilder.step`: ring, no answer,
redirect, voicemail, busy, forward), the legs rung and their final statuses
(:meth:`~CallRecordBuilder.ringing`, :meth:`~CallRecordBuilder.leg_final`,
:meth:`~CallRecordBuilder.answered`) and how it ended. :meth:`~CallRecordBuilder.finish`
returns the frozen :class:`CallRecord` (once); the adapter writes it to the store.

Any controller can use it (calls to users, outgoing calls through the trunk, queues)::

    record = CallRecordBuilder(id=manager.record_ids(), kind="outgoing", caller="1001",
                               dialled="+46701234567", started_at=now)
    base = record.ringing([("trunk", "sip:+46701234567@trunk")], now)
    record.answered(base, now)            # or record.leg_final(base, 486) ...
    save_record(store, record.finish(now))  # ivr.user_calls: on the store's thread

The outcome is derived from what happened (see :meth:`CallRecordBuilder.outcome`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ivr.routing import decide as routing

__all__ = [
    "KINDS",
    "OUTCOMES",
    "CallRecord",
    "CallRecordBuilder",
    "Decision",
    "Leg",
    "RecordIds",
    "Step",
    "new_record_id",
    "step_text",
]

Kind = Literal["user", "outgoing", "queue"]
Outcome = Literal["answered", "voicemail", "redirect", "busy", "forwarded", "cancelled", "failed"]
KINDS: tuple[str, ...] = ("user", "outgoing", "queue")
OUTCOMES: tuple[str, ...] = (
    "answered",
    "voicemail",
    "redirect",
    "busy",
    "forwarded",
    "cancelled",
    "failed",
)


def new_record_id(rng: random.Random) -> str:
    """A fresh record id: 16 hex digits from the injected random source."""
    return f"{rng.getrandbits(64):016x}"


class RecordIds:
    """Record ids without a random draw per call: a 32-bit prefix drawn once from ``rng``
    (per process), then a counter; 16 hex digits like :func:`new_record_id`."""

    def __init__(self, rng: random.Random) -> None:
        self._prefix = rng.getrandbits(32)
        self._count = 0

    def __call__(self) -> str:
        self._count = (self._count + 1) & 0xFFFFFFFF
        return f"{self._prefix:08x}{self._count:08x}"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class Leg:
    """One contact rung: the device, the contact URI, the final status it gave (408 when
    it did not answer in time, None when none is known) and whether it won."""

    device: str
    contact: str
    status: int | None = None
    answered: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "device": self.device,
            "contact": self.contact,
            "status": self.status,
            "answered": self.answered,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The routing core's decision for ``user``, with its trace, taken at ``at``."""

    user: str
    at: datetime
    trace: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        return {"user": self.user, "at": _iso(self.at), "trace": list(self.trace)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What was carried out at ``at`` (``ring 1002-desk+1002-soft 25 s``, ``no answer``)."""

    at: datetime
    text: str

    def as_json(self) -> dict[str, object]:
        return {"at": _iso(self.at), "step": self.text}


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """A finished call. ``user`` is the user first called (None for an outgoing call),
    ``users`` every user it was routed to, ``caller_user`` the calling user (None when
    the caller is not one of ours); ``status`` is the final SIP status the caller got."""

    id: str
    kind: str
    caller: str
    caller_user: str | None
    dialled: str
    user: str | None
    users: tuple[str, ...]
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    outcome: str
    status: int | None
    legs: tuple[Leg, ...]
    decisions: tuple[Decision, ...]
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a call record needs an id")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        if self.started_at.tzinfo is None or self.ended_at.tzinfo is None:
            raise ValueError("call record times must be aware datetimes")
        if self.ended_at < self.started_at:
            raise ValueError("a call cannot end before it started")

    @property
    def parties(self) -> tuple[str, ...]:
        """Every user this record belongs to (the caller and each user called)."""
        found = [self.caller_user] if self.caller_user else []
        found += [u for u in self.users if u not in found]
        return tuple(found)

    @property
    def duration(self) -> float:
        """Seconds from the answer to the end (0 when never answered)."""
        if self.answered_at is None:
            return 0.0
        return max(0.0, (self.ended_at - self.answered_at).total_seconds())

    def trace(self) -> str:
        """Every step on one line: ``ring … → no answer … → voicemail 1002``."""
        return " → ".join(s.text for s in self.steps)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "caller": self.caller,
            "caller_user": self.caller_user,
            "dialled": self.dialled,
            "user": self.user,
            "users": list(self.users),
            "started_at": _iso(self.started_at),
            "answered_at": _iso(self.answered_at),
            "ended_at": _iso(self.ended_at),
            "duration": round(self.duration, 3),
            "outcome": self.outcome,
            "status": self.status,
            "legs": [leg.as_json() for leg in self.legs],
            "decisions": [d.as_json() for d in self.decisions],
            "steps": [s.as_json() for s in self.steps],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallRecord:
        """Inverse of :meth:`as_json` (``duration`` is derived, so ignored)."""
        started, ended = _parse(data["started_at"]), _parse(data["ended_at"])
        assert started is not None and ended is not None
        return cls(
            id=str(data["id"]),
            kind=str(data["kind"]),
            caller=str(data["caller"]),
            caller_user=data.get("caller_user"),
            dialled=str(data["dialled"]),
            user=data.get("user"),
            users=tuple(data.get("users", ())),
            started_at=started,
            answered_at=_parse(data.get("answered_at")),
            ended_at=ended,
            outcome=str(data["outcome"]),
            status=data.get("status"),
            legs=tuple(Leg(**leg) for leg in data.get("legs", ())),
            decisions=tuple(
                Decision(user=d["user"], at=_parse(d["at"]), trace=tuple(d["trace"]))  # type: ignore[arg-type]
                for d in data.get("decisions", ())
            ),
            steps=tuple(
                Step(at=_parse(s["at"]), text=s["step"])  # type: ignore[arg-type]
                for s in data.get("steps", ())
            ),
        )


def step_text(decision: routing.Decision) -> str:
    """One decision step as carried out (its own part of the trace, without what follows)."""
    if isinstance(decision, routing.Ring):
        names = "+".join(d.id for d in decision.devices)
        return f"ring {names} {decision.timeout} s"
    if isinstance(decision, routing.Redirect):
        return f"redirect {decision.profile.id}"
    if isinstance(decision, routing.Voicemail):
        return f"voicemail {decision.box}"
    if isinstance(decision, routing.Forward):
        return f"forward to {decision.target}"
    if isinstance(decision, routing.Busy):
        return "busy"
    return "hang up"


@dataclass(slots=True)
class _LegState:
    device: str
    contact: str
    status: int | None = None
    answered: bool = False


@dataclass(slots=True, kw_only=True)
class CallRecordBuilder:
    """Collects one call's events; :meth:`finish` turns them into a :class:`CallRecord`.

    Events after :meth:`finish` are ignored (late leg responses, a second end)."""

    id: str
    kind: str
    caller: str
    dialled: str
    started_at: datetime
    caller_user: str | None = None
    user: str | None = None
    users: list[str] = field(default_factory=list)
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    status: int | None = None
    legs: list[_LegState] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    forwarded_to: str | None = None
    reached: str | None = None  # "redirect" / "voicemail": we answered for the user
    cancelled_by_caller: bool = False
    finished: CallRecord | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")

    @property
    def done(self) -> bool:
        return self.finished is not None

    # -- events ------------------------------------------------------------------------

    def step(self, text: str, at: datetime) -> None:
        if not self.done:
            self.steps.append(Step(at=at, text=text))

    def decided(self, user: str, trace: Sequence[str], at: datetime) -> None:
        """The routing core decided for ``user`` (the first one is the called user)."""
        if self.done:
            return
        if self.user is None and self.kind != "outgoing":
            self.user = user
        if user not in self.users:
            self.users.append(user)
        self.decisions.append(Decision(user=user, at=at, trace=tuple(trace)))

    def carried_out(self, decision: routing.Decision, at: datetime) -> None:
        """A step of the plan is carried out now."""
        if self.done:
            return
        self.step(step_text(decision), at)
        if isinstance(decision, routing.Forward):
            self.forwarded_to = decision.target

    def ringing(self, targets: Iterable[tuple[str, str]], at: datetime) -> int:
        """Contacts (device, contact URI) are rung; returns the first one's leg index."""
        base = len(self.legs)
        if not self.done:
            self.legs.extend(_LegState(device, contact) for device, contact in targets)
        return base

    def leg_final(self, index: int, status: int) -> None:
        """Leg ``index`` gave its final status (the first one known counts)."""
        if not self.done and 0 <= index < len(self.legs) and self.legs[index].status is None:
            self.legs[index].status = status

    def answered(self, index: int, at: datetime) -> None:
        """Leg ``index`` answered: the call is up."""
        if self.done or not 0 <= index < len(self.legs):
            return
        leg = self.legs[index]
        leg.status, leg.answered = 200, True
        if self.answered_at is None:
            self.answered_at = at
            self.status = 200
        self.step(f"answered on {leg.device}", at)

    def took_over(self, index: int, at: datetime) -> None:
        """Leg ``index`` took over a call we had answered (a redirect key moved the caller
        to it); ``at`` is when we learnt of it."""
        if self.done or not 0 <= index < len(self.legs):
            return
        leg = self.legs[index]
        leg.status, leg.answered = 200, True
        self.step(f"moved to {leg.device}", at)

    def not_reached(self, base: int, statuses: Sequence[int], reason: str, at: datetime) -> None:
        """Nobody of the legs from ``base`` answered: ``statuses`` per leg."""
        for offset, status in enumerate(statuses):
            self.leg_final(base + offset, status)
        shown = ", ".join(str(s) for s in statuses)
        self.step(f"{reason} ({shown})" if shown else reason, at)

    def we_answered(self, decision: routing.Redirect | routing.Voicemail, at: datetime) -> None:
        """We answered the caller ourselves: the spoken redirect or voicemail."""
        if self.done:
            return
        self.reached = "redirect" if isinstance(decision, routing.Redirect) else "voicemail"
        if self.answered_at is None:
            self.answered_at = at
            self.status = 200

    def voicemail_reached(self, box: str, at: datetime) -> None:
        """After a redirect, the caller got to voicemail."""
        if not self.done and self.reached != "voicemail":
            self.reached = "voicemail"
            self.step(f"voicemail {box}", at)

    def rejected(self, status: int, reason: str | None, at: datetime) -> None:
        """The caller got a final error response."""
        if not self.done and self.answered_at is None:
            self.status = status
            self.step(f"{status} {reason}" if reason else str(status), at)

    def cancelled(self, at: datetime) -> None:
        """The caller gave up before an answer (CANCEL)."""
        if not self.done and self.answered_at is None:
            self.cancelled_by_caller = True
            self.status = 487
            self.step("caller cancelled", at)

    # -- the end -----------------------------------------------------------------------

    def outcome(self) -> str:
        """answered (by a device), forwarded (answered after a forward, or sent on),
        voicemail, redirect (the caller left during it), busy (486), cancelled (the
        caller gave up first), failed (anything else)."""
        if self.cancelled_by_caller:
            return "cancelled"
        if any(leg.answered for leg in self.legs):
            return "forwarded" if self.forwarded_to is not None else "answered"
        if self.reached is not None:
            return self.reached
        if self.status == 486:
            return "busy"
        if self.forwarded_to is not None and self.status is None:
            return "forwarded"
        return "failed"

    def end(self, at: datetime) -> None:
        """The call is over for the caller (the record may still learn leg statuses)."""
        if self.ended_at is None:
            self.ended_at = at

    def finish(self, at: datetime) -> CallRecord | None:
        """The record (once; None afterwards). Ends the call at ``at`` if not yet ended."""
        if self.finished is not None:
            return None
        self.end(at)
        assert self.ended_at is not None
        self.finished = CallRecord(
            id=self.id,
            kind=self.kind,
            caller=self.caller,
            caller_user=self.caller_user,
            dialled=self.dialled,
            user=self.user,
            users=tuple(self.users),
            started_at=self.started_at,
            answered_at=self.answered_at,
            ended_at=max(self.ended_at, self.started_at),
            outcome=self.outcome(),
            status=self.status,
            legs=tuple(
                Leg(device=s.device, contact=s.contact, status=s.status, answered=s.answered)
                for s in self.legs
            ),
            decisions=tuple(self.decisions),
            steps=tuple(self.steps),
        )
        return self.finished
