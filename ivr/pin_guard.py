"""The PIN guard: how many wrong PINs an account may take before its PIN entry locks.

Pure: no clock reads, no I/O. ``now`` is wall-clock epoch seconds (the counters are
stored and outlive a call). Two limits, both from the configuration: ``tries_per_call``
wrong PINs in one call, and ``failures_per_hour`` wrong PINs per account within any
hour (across calls and phones). Reaching either locks the account's PIN entry for
``lockout_seconds``; while locked, a call is refused without looking at the PIN::

    guard = PinAttempts(policy)              # one per call
    verdict = guard.check(record, "1234", expected, now)
    verdict.outcome  -> "ok" | "wrong" | "locked"
    verdict.record   -> the record to store (failures counted, maybe locked)
    verdict.events   -> the security events to log (``pin-failure``, ``pin-lockout``)
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = ["PinAttempts", "PinPolicy", "PinRecord", "PinVerdict", "SecurityEvent", "is_locked"]

WINDOW_SECONDS = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PinPolicy:
    """The limits: wrong PINs per call, per account per hour, and the lockout length."""

    tries_per_call: int = 3
    failures_per_hour: int = 10
    lockout_seconds: float = 900.0

    def __post_init__(self) -> None:
        if self.tries_per_call < 1 or self.failures_per_hour < 1:
            raise ValueError("tries_per_call and failures_per_hour must be at least 1")
        if self.lockout_seconds <= 0:
            raise ValueError("lockout_seconds must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class PinRecord:
    """What is stored per account: when its recent wrong PINs came (epoch seconds) and
    until when its PIN entry is locked."""

    account: str
    failures: tuple[float, ...] = ()
    locked_until: float | None = None

    def __post_init__(self) -> None:
        if not self.account:
            raise ValueError("account must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityEvent:
    """One line for the security log: ``pin-failure``, ``pin-lockout`` or ``pin-refused``."""

    kind: Literal["pin-failure", "pin-lockout", "pin-refused"]
    account: str
    detail: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class PinVerdict:
    """The outcome of one PIN entry: ``ok``; ``wrong`` (ask again); ``locked`` (the
    account is locked now or already was: say so and hang up)."""

    outcome: Literal["ok", "wrong", "locked"]
    record: PinRecord
    events: tuple[SecurityEvent, ...] = ()
    changed: bool = True


def is_locked(record: PinRecord, now: float) -> bool:
    """True while the account's PIN entry is locked."""
    return record.locked_until is not None and now < record.locked_until


def refused(record: PinRecord, now: float) -> SecurityEvent:
    """The event for a call refused during a lockout (the PIN is not looked at)."""
    return SecurityEvent(
        kind="pin-refused",
        account=record.account,
        detail={"locked_for": round((record.locked_until or now) - now, 1)},
    )


class PinAttempts:
    """The PIN entries of one call against the stored records of accounts."""

    __slots__ = ("policy", "tries")

    def __init__(self, policy: PinPolicy) -> None:
        self.policy = policy
        self.tries: dict[str, int] = {}

    def check(self, record: PinRecord, entered: str, expected: str, now: float) -> PinVerdict:
        """Judge ``entered`` for ``record.account`` (whose PIN is ``expected``)."""
        if is_locked(record, now):
            return PinVerdict(
                outcome="locked", record=record, events=(refused(record, now),), changed=False
            )
        recent = tuple(t for t in record.failures if now - t < WINDOW_SECONDS)
        if hmac.compare_digest(entered.encode(), expected.encode()):
            ok = PinRecord(account=record.account)
            return PinVerdict(outcome="ok", record=ok, changed=ok != record)
        tries = self.tries.get(record.account, 0) + 1
        self.tries[record.account] = tries
        failures = (*recent, now)
        failure = SecurityEvent(
            kind="pin-failure",
            account=record.account,
            detail={"call_tries": tries, "hour_failures": len(failures)},
        )
        policy = self.policy
        if tries >= policy.tries_per_call or len(failures) >= policy.failures_per_hour:
            until = now + policy.lockout_seconds
            locked = replace(record, failures=failures, locked_until=until)
            reason = "call" if tries >= policy.tries_per_call else "hour"
            lockout = SecurityEvent(
                kind="pin-lockout",
                account=record.account,
                detail={"limit": reason, "seconds": policy.lockout_seconds},
            )
            return PinVerdict(outcome="locked", record=locked, events=(failure, lockout))
        wrong = replace(record, failures=failures, locked_until=None)
        return PinVerdict(outcome="wrong", record=wrong, events=(failure,))
