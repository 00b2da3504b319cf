"""``decide(call, state, now) -> Decision``: what happens to a call to a user.

The effective profile's plan is applied: exceptions first (dialled number, caller),
then ringing (unless ``direct``; ``soft`` rings before the redirect; ``mex_off``
keeps the mobile quiet), then ``then`` (spoken redirect and a terminal action).
Every decision carries ``trace``: the human-readable steps from it to the end; the
top decision's trace starts with the profile and why it is active.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from ivr.routing.model import Device, ExceptionRule, Plan, Profile, Schedule, Then, User
from ivr.routing.profiles import Effective, Rules, effective, when_text
from ivr.routing.state import UserState


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """An incoming call to ``user``. ``caller`` and ``dialled`` are as presented
    (extension, any number format, or anonymous); ``online`` is the ids of devices
    with a live registration (None: assume every device is reachable)."""

    user: User
    caller: str
    dialled: str
    online: frozenset[str] | None = None


class _Traced:
    __slots__ = ()
    trace: tuple[str, ...]

    def explain(self) -> str:
        """The trace as one line."""
        return " → ".join(self.trace)


@dataclass(frozen=True, slots=True, kw_only=True)
class Voicemail(_Traced):
    """Record a message in ``box`` (an extension)."""

    box: str
    trace: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward(_Traced):
    """Send the call on to ``target`` (an extension or an E.164 number)."""

    target: str
    trace: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Busy(_Traced):
    """Answer busy (486)."""

    trace: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup(_Traced):
    """End the call."""

    trace: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect(_Traced):
    """Spoken redirect for ``profile`` in ``language``, saying when the user is ``back``
    (None: no return said); ``reason`` False leaves the reason out. During it the
    caller may press 0 (``operator``), 1 (``mobile``, when offered), 2 or # (``then``)."""

    profile: Profile
    back: datetime | None
    then: Decision
    language: str
    reason: bool = True
    mobile: str | None = None
    operator: str | None = None
    trace: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring(_Traced):
    """Ring ``devices`` in parallel for ``timeout`` seconds; on no answer, busy or
    failure go on with ``then``."""

    devices: tuple[Device, ...]
    timeout: int
    then: Decision
    trace: tuple[str, ...] = ()


Decision = Ring | Redirect | Voicemail | Forward | Busy | Hangup


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ctx:
    call: Call
    eff: Effective
    rules: Rules
    now: datetime

    @property
    def user(self) -> User:
        return self.call.user

    @property
    def plan(self) -> Plan:
        return self.eff.profile.plan


def _terminal(then: Then, ctx: _Ctx) -> Decision:
    user = ctx.user
    if then.action == "busy":
        return Busy(trace=("busy",))
    if then.action == "hangup":
        return Hangup(trace=("hang up",))
    if then.action == "forward":
        target = user.mobile if then.target == "mobile" else then.target
        if target is not None:
            return Forward(target=target, trace=(f"forward to {target}",))
        return Voicemail(box=user.extension, trace=(f"no mobile: voicemail {user.extension}",))
    return Voicemail(box=user.extension, trace=(f"voicemail {user.extension}",))


def _then(ctx: _Ctx) -> Decision:
    """The plan's ``then``: optional spoken redirect, then the terminal action."""
    last = _terminal(ctx.plan.then, ctx)
    if not ctx.plan.then.redirect:
        return last
    profile, user = ctx.eff.profile, ctx.user
    back = ctx.eff.until if profile.returns != "none" else None
    line = f"redirect {profile.label(user.language)}"
    if not profile.reason:
        line += " (no reason)"
    if back is not None:
        line += f", back {when_text(back, ctx.now, ctx.rules.calendar)}"
    return Redirect(
        profile=profile,
        back=back,
        then=last,
        language=user.language,
        reason=profile.reason,
        mobile=user.mobile if ctx.plan.offer_mobile else None,
        operator=ctx.rules.operator,
        trace=(line, *last.trace),
    )


def _reachable(kinds: Iterable[str], call: Call) -> tuple[Device, ...]:
    devices = call.user.devices_of(kinds)
    if call.online is None:
        return devices
    return tuple(d for d in devices if not d.is_sip or d.id in call.online)


def _ring(devices: tuple[Device, ...], ctx: _Ctx, then: Decision, why: str) -> Ring:
    names = "+".join(d.id for d in devices)
    line = f"{why}: ring {names} {ctx.plan.ring_seconds} s"
    return Ring(
        devices=devices, timeout=ctx.plan.ring_seconds, then=then, trace=(line, *then.trace)
    )


def _matches(rule: ExceptionRule, ctx: _Ctx) -> bool:
    numbers, user = ctx.rules.numbers, ctx.user
    if rule.dialled is not None:
        mine = {"mobile": user.mobile, "did": user.did, "ext": user.extension}[rule.dialled]
        return mine is not None and numbers.canonical(ctx.call.dialled) == mine
    caller = numbers.canonical(ctx.call.caller)
    listed = {v for c in rule.callers for v in (user.vip if c == "vip" else (c,))}
    return caller is not None and caller in listed


def _exception(ctx: _Ctx, notes: list[str]) -> Decision | None:
    """The first matching exception's decision; matches that cannot ring go to notes."""
    for rule in ctx.plan.exceptions:
        if not _matches(rule, ctx):
            continue
        if rule.forward is not None:
            target = ctx.user.mobile if rule.forward == "mobile" else rule.forward
            if target is not None:
                return Forward(target=target, trace=(f"exception {rule}", f"forward to {target}"))
            notes.append(f"exception {rule} matched, but no mobile number")
            continue
        devices = _reachable(rule.ring, ctx.call)
        if devices:
            return _ring(devices, ctx, _then(ctx), f"exception {rule}")
        notes.append(f"exception {rule} matched, but nothing to ring")
    return None


def _plan(ctx: _Ctx) -> Decision:
    plan = ctx.plan
    if plan.direct and not plan.soft:
        then = _then(ctx)
        return replace(then, trace=("direct", *then.trace))
    kinds = [k for k in plan.ring if not (plan.mex_off and k == "mobile")]
    devices = _reachable(kinds, ctx.call)
    then = _then(ctx)
    if not devices:
        wanted = "+".join(kinds) or "no devices"
        return replace(then, trace=(f"nobody reachable ({wanted})", *then.trace))
    return _ring(devices, ctx, then, "soft: alert me first" if plan.soft else "plan")


def decide(
    call: Call,
    state: UserState,
    now: datetime,
    *,
    rules: Rules,
    schedules: Iterable[Schedule] = (),
) -> Decision:
    """The decision for ``call`` given the user's profile state at ``now``."""
    eff = effective(state, schedules, now, rules)
    ctx = _Ctx(call=call, eff=eff, rules=rules, now=now)
    notes = [f"profile {eff.describe(now, rules.calendar, call.user.language)}"]
    decision = _exception(ctx, notes) or _plan(ctx)
    return replace(decision, trace=(*notes, *decision.trace))


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueMembership:
    """A queue the user is logged into under a profile, and the devices it rings."""

    queue: str
    devices: tuple[Device, ...]


def queue_logins(user: User, profile: Profile) -> tuple[QueueMembership, ...]:
    """The user's queue logins while ``profile`` is active (``*`` = all their queues)."""
    found: dict[str, QueueMembership] = {}
    for login in profile.plan.queues:
        names = user.queues if login.queue == "*" else (login.queue,)
        for name in names:
            if name in user.queues and name not in found:
                found[name] = QueueMembership(queue=name, devices=user.devices_of(login.ring))
    return tuple(found.values())


def caller_id(user: User, kind: str, profile: Profile, main_number: str) -> str | None:
    """The number shown on an outgoing call from a ``kind`` device (None: hidden).
    A missing DID falls back to the main number, a missing mobile to the DID."""
    source = profile.plan.caller_id.for_kind(kind)
    if source == "hidden":
        return None
    if source == "mobile" and user.mobile is not None:
        return user.mobile
    if source in ("mobile", "did") and user.did is not None:
        return user.did
    return main_number
