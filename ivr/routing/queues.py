"""Call queues: who is logged in, who is paused, and whom a queue call rings. Pure.

A user belongs to the queues listed on them (``User.queues``). Whether they are logged
in comes from two sources:

- **the profile in force**: a plan with queue logins logs the user into those queues
  (``*`` = all of the user's queues), ringing the device kinds it names; a plan without
  logs them out;
- **the user's own choice by phone**: ``*45`` toggles login for all their queues,
  ``*46`` pauses/unpauses. The choice is stored with the profile *period* it was made in
  (:func:`period`: which profile, why, since when); once another profile is in force
  (a change, a schedule starting or ending, an expiry) the choice lapses and the profile
  decides again. The profile service also clears it on every profile change. The
  standard profile's period starts when the last scheduled run before it ended
  (:func:`queue_effective`), so a choice does not outlive a scheduled Lunch.

A queue call (:func:`queue_decision`) rings, all at once, the chosen devices of every
logged-in, unpaused member whose profile presence is ``available``; members in Stör ej
or an absence are skipped (never sent to their own voicemail). No answer within the
queue's ring time, or nobody to ring → the queue's fallback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from typing import Literal

from ivr.routing.decide import Busy, Decision, Forward, Ring, Voicemail
from ivr.routing.model import (
    DEVICE_KINDS,
    DateRange,
    Device,
    DeviceKind,
    Profile,
    Schedule,
    User,
    is_target,
)
from ivr.routing.profiles import Effective, Rules, effective, expire
from ivr.routing.schedule import DAY, Calendar, occurrences
from ivr.routing.state import UserState

FallbackAction = Literal["voicemail", "forward", "busy"]
FALLBACK_ACTIONS: tuple[str, ...] = ("voicemail", "forward", "busy")
DEFAULT_RING: tuple[DeviceKind, ...] = ("desk", "softphone")

_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_EXTENSION = re.compile(r"[1-9][0-9]{0,14}")


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fallback:
    """What a queue call does when nobody answers: ``voicemail`` in the box of extension
    ``target``, ``forward`` to ``target`` (an extension or E.164 number), or ``busy``."""

    action: FallbackAction
    target: str | None = None

    def __post_init__(self) -> None:
        _need(self.action in FALLBACK_ACTIONS, f"unknown fallback {self.action!r}")
        if self.action == "voicemail":
            _need(
                self.target is not None and _EXTENSION.fullmatch(self.target) is not None,
                "voicemail needs the extension of a mailbox",
            )
        elif self.action == "forward":
            _need(
                self.target is not None and self.target != "mobile" and is_target(self.target),
                "forward needs an extension or an E.164 number",
            )
        else:
            _need(self.target is None, "busy takes no target")

    def __str__(self) -> str:
        return self.action if self.target is None else f"{self.action}:{self.target}"

    def decision(self) -> Decision:
        """The routing decision this fallback stands for."""
        if self.action == "voicemail":
            assert self.target is not None
            return Voicemail(box=self.target, trace=(f"voicemail {self.target}",))
        if self.action == "forward":
            assert self.target is not None
            return Forward(target=self.target, trace=(f"forward to {self.target}",))
        return Busy(trace=("busy",))


@dataclass(frozen=True, slots=True, kw_only=True)
class Queue:
    """A call queue: ``id`` (the name users list), a dialable ``number``, a display
    ``name``, how long members ring, and the fallback when nobody answers."""

    id: str
    number: str
    name: str
    ring_seconds: int = 20
    fallback: Fallback = field(default_factory=lambda: Fallback(action="busy"))

    def __post_init__(self) -> None:
        _need(_ID.fullmatch(self.id) is not None, f"bad queue id {self.id!r}")
        _need(_EXTENSION.fullmatch(self.number) is not None, "number must be digits")
        _need(bool(self.name.strip()), "name must not be empty")
        _need(1 <= self.ring_seconds <= 600, "ring_seconds must be 1-600")


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueState:
    """A user's stored queue choice. ``login``: None = as the profile says, True/False =
    ``*45`` logged in/out; ``paused`` by ``*46``. Both hold only while the profile
    ``period`` they were made in lasts. ``version`` grows by one on every save."""

    user: str
    login: bool | None = None
    paused: bool = False
    period: str = ""
    set_by: str | None = None
    set_via: str | None = None
    set_at: datetime | None = None
    version: int = 0

    def __post_init__(self) -> None:
        _need(bool(self.user), "user must not be empty")
        _need(self.set_at is None or self.set_at.tzinfo is not None, "set_at must be aware")
        _need(self.version >= 0, "version must not be negative")

    @property
    def blank(self) -> bool:
        """True when it holds no choice (the profile decides, nothing paused)."""
        return self.login is None and not self.paused


@dataclass(frozen=True, slots=True, kw_only=True)
class Membership:
    """One of a user's queues: logged in or not (and ``why``: ``profile`` or the
    channel of the user's choice), paused, and the device kinds it rings."""

    queue: str
    logged_in: bool
    paused: bool
    ring: tuple[DeviceKind, ...]
    why: str

    @property
    def active(self) -> bool:
        """Logged in and not paused: the queue may ring this member."""
        return self.logged_in and not self.paused


def period(eff: Effective) -> str:
    """Identifies the profile period ``eff`` belongs to: the profile, its source and when
    it came into force. A new activation, a schedule run or a return gives a new one."""
    since = eff.set_at.isoformat() if eff.set_at is not None else ""
    return f"{eff.source}:{eff.profile.id}:{since}"


def standard_since(
    schedules: Iterable[Schedule], now: datetime, calendar: Calendar
) -> datetime | None:
    """When the standard profile last came back after a scheduled run: the latest end
    of a run at or before ``now`` (runs looked for a week back; date ranges also at
    their end), or None."""
    ends: list[datetime] = []
    for schedule in schedules:
        for back in range(8):
            runs = occurrences(schedule, now - back * DAY, calendar)
            ends.extend(run.end for run in runs if run.end <= now)
        if isinstance(schedule.when, DateRange):
            end = calendar.at(schedule.when.last + DAY, time())
            if end <= now:
                ends.append(end)
    return max(ends, default=None)


def queue_effective(
    state: UserState, schedules: Iterable[Schedule], now: datetime, rules: Rules
) -> Effective:
    """The profile in force (expired entries ignored); for the standard profile
    ``set_at`` is :func:`standard_since`, which tells its periods apart."""
    schedules = tuple(schedules)
    return as_queue_period(
        effective(expire(state, now), schedules, now, rules), schedules, now, rules
    )


def as_queue_period(
    eff: Effective, schedules: Iterable[Schedule], now: datetime, rules: Rules
) -> Effective:
    """``eff`` as :func:`queue_effective` sees it: the standard profile's ``set_at`` is
    :func:`standard_since` (so a choice made in it is recognised as its period's)."""
    if eff.source != "standard":
        return eff
    return replace(eff, set_at=standard_since(schedules, now, rules.calendar))


def in_force(state: QueueState, eff: Effective) -> QueueState:
    """``state`` if its choice belongs to the current period, else a blank state."""
    current = period(eff)
    if state.period == current:
        return state
    return QueueState(user=state.user, period=current, version=state.version)


def profile_logins(user: User, profile: Profile) -> dict[str, tuple[DeviceKind, ...]]:
    """The user's queues the profile logs into, each with its ring kinds (``*`` = all
    the user's queues; the first login naming a queue wins)."""
    found: dict[str, tuple[DeviceKind, ...]] = {}
    for login in profile.plan.queues:
        names = user.queues if login.queue == "*" else (login.queue,)
        for name in names:
            if name in user.queues and name not in found:
                found[name] = login.ring
    return found


def memberships(
    user: User, eff: Effective, state: QueueState, rules: Rules
) -> tuple[Membership, ...]:
    """Every queue of ``user``, in their order: logged in, paused, ring kinds.

    A queue the user logged into by phone while the profile has no login for it rings
    the kinds the standard profile names for it (else desk and softphone)."""
    choice = in_force(state, eff)
    logins = profile_logins(user, eff.profile)
    standard = profile_logins(user, rules.standard)
    found: list[Membership] = []
    for queue in user.queues:
        ring = logins.get(queue) or standard.get(queue) or DEFAULT_RING
        if choice.login is None:
            logged_in, why = queue in logins, "profile"
        else:
            logged_in, why = choice.login, choice.set_via or "phone"
        found.append(
            Membership(
                queue=queue,
                logged_in=logged_in,
                paused=logged_in and choice.paused,
                ring=tuple(k for k in ring if k in DEVICE_KINDS),
                why=why,
            )
        )
    return tuple(found)


def logged_in_to(found: Iterable[Membership]) -> tuple[str, ...]:
    """The queues among ``found`` that the user is logged into."""
    return tuple(m.queue for m in found if m.logged_in)


# -- changes ---------------------------------------------------------------------------


QueueAction = Literal[
    "queue_login", "queue_logout", "queue_pause", "queue_unpause", "queue_no_queues", "none"
]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueChange:
    """The outcome of a queue command: the state to store (when ``changed``), the
    audit action and detail, and the memberships before and after."""

    state: QueueState
    changed: bool
    action: QueueAction
    before: tuple[Membership, ...]
    after: tuple[Membership, ...]
    detail: dict[str, object] = field(default_factory=dict)


def _change(
    user: User,
    eff: Effective,
    state: QueueState,
    new: QueueState,
    action: QueueAction,
    rules: Rules,
) -> QueueChange:
    before = memberships(user, eff, state, rules)
    after = memberships(user, eff, new, rules)
    detail: dict[str, object] = {
        "queues": list(logged_in_to(after)),
        "paused": any(m.paused for m in after),
        "profile": eff.profile.id,
    }
    return QueueChange(
        state=new, changed=new != state, action=action, before=before, after=after, detail=detail
    )


def toggle_login(
    user: User, eff: Effective, state: QueueState, rules: Rules, *, by: str, via: str, now: datetime
) -> QueueChange:
    """``*45``: logged into any queue → log out of all of them; else log into all."""
    if not user.queues:
        return _change(user, eff, state, state, "queue_no_queues", rules)
    current = in_force(state, eff)
    logged_in = bool(logged_in_to(memberships(user, eff, state, rules)))
    new = replace(current, login=not logged_in, paused=False, set_by=by, set_via=via, set_at=now)
    return _change(user, eff, state, new, "queue_logout" if logged_in else "queue_login", rules)


def toggle_pause(
    user: User, eff: Effective, state: QueueState, rules: Rules, *, by: str, via: str, now: datetime
) -> QueueChange:
    """``*46``: pause or unpause. Not logged in (or no queues): nothing changes, and the
    action says so (``queue_logout`` / ``queue_no_queues``)."""
    if not user.queues:
        return _change(user, eff, state, state, "queue_no_queues", rules)
    found = memberships(user, eff, state, rules)
    if not logged_in_to(found):
        return _change(user, eff, state, state, "queue_logout", rules)
    current = in_force(state, eff)
    paused = any(m.paused for m in found)
    new = replace(current, paused=not paused, set_by=by, set_via=via, set_at=now)
    return _change(user, eff, state, new, "queue_unpause" if paused else "queue_pause", rules)


def profile_changed(
    user: User, before: Effective, after: Effective, state: QueueState, rules: Rules
) -> QueueChange:
    """A profile change: the user's choice lapses and the new profile decides. ``action``
    is ``queue_login``/``queue_logout`` when the set of queues logged into changed."""
    if period(before) == period(after):
        return _change(user, after, state, state, "none", rules)
    new = QueueState(user=user.extension, period=period(after), version=state.version)
    was = logged_in_to(memberships(user, before, state, rules))
    now = logged_in_to(memberships(user, after, new, rules))
    action: QueueAction = "none"
    if set(now) - set(was):
        action = "queue_login"
    elif set(was) - set(now):
        action = "queue_logout"
    change = _change(user, after, state, new, action, rules)
    return replace(
        change,
        before=memberships(user, before, state, rules),
        changed=change.changed and not state.blank,
        detail={**change.detail, "was": list(was)},
    )


# -- ringing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A user who belongs to the queue, with their profile in force and queue state."""

    user: User
    effective: Effective
    state: QueueState


def queue_decision(queue: Queue, candidates: Iterable[Candidate], rules: Rules) -> Decision:
    """Whom a call to ``queue`` rings (every active, available member's chosen devices,
    at once, for the queue's ring time), then the fallback; with a trace of why."""
    devices: list[Device] = []
    notes: list[str] = [f"queue {queue.id} ({queue.number})"]
    for c in candidates:
        user = c.user
        membership = next(
            (m for m in memberships(user, c.effective, c.state, rules) if m.queue == queue.id),
            None,
        )
        if membership is None:
            continue
        ext = user.extension
        if not membership.logged_in:
            notes.append(f"{ext} logged out ({membership.why})")
            continue
        if membership.paused:
            notes.append(f"{ext} paused")
            continue
        profile = c.effective.profile
        if profile.presence != "available":
            notes.append(f"{ext} skipped: {profile.label('en')} ({profile.presence})")
            continue
        mine = user.devices_of(membership.ring)
        if not mine:
            notes.append(f"{ext} has no {'+'.join(membership.ring)} device")
            continue
        devices.extend(mine)
    then = queue.fallback.decision()
    if not devices:
        return replace(then, trace=(*notes, "nobody to ring", *then.trace))
    names = "+".join(d.id for d in devices)
    line = f"ring {names} {queue.ring_seconds} s"
    return Ring(
        devices=tuple(devices),
        timeout=queue.ring_seconds,
        then=then,
        trace=(*notes, line, *then.trace),
    )


# -- what the phone says ---------------------------------------------------------------

_SPOKEN: dict[str, str] = {
    "queue_login": "queue_logged_in",
    "queue_logout": "queue_logged_out",
    "queue_pause": "queue_paused",
    "queue_unpause": "queue_unpaused",
    "queue_no_queues": "queue_no_queues",
}


def confirmation_words(change: QueueChange) -> list[str]:
    """The prompt names confirming a ``*45``/``*46`` ("Inloggad i kön.", "Pausad i kön.",
    ...); a ``*46`` while logged out says "Utloggad ur kön."."""
    return [_SPOKEN.get(change.action, "queue_logged_out")]
