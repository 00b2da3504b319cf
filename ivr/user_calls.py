"""Calls to a user: the routing core decides, the B2BUA rings.

:class:`UserCall` reads the user's profile state, asks ``decide()`` and carries the
decision out: ring (a :class:`~ivr.b2bua.Bridge` per attempt, run by
:class:`BridgeRunner`), answer for the user (:class:`~ivr.media_calls.Announcement`),
forward to another user (routed again; loops end with 482, Max-Forwards with 483), or
refuse (486 busy, 480 hang-up). Each call keeps a :class:`~ivr.call_records.CallRecordBuilder`
(decisions, steps, legs) and writes its record once, when it is over (:func:`save_record`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ivr.b2bua import (
    AckReceived,
    AckTimedOut,
    Action,
    Answered,
    Bridge,
    CallerCancelled,
    CallLimitReached,
    CancelTimer,
    Event,
    Finished,
    Local,
    NotReached,
    Reply,
    RequestReceived,
    RespondCaller,
    Responded,
    Send,
    SendAck,
    Side,
    StartTimer,
    Target,
    TimerFired,
    Track,
    Untrack,
)
from ivr.call_records import CallRecord, CallRecordBuilder
from ivr.config import Device, User
from ivr.logs import Logger
from ivr.media_calls import Announcement, open_media
from ivr.routing import decide as routing
from ivr.routing.profiles import effective, expire
from ivr.sip.core import ServerRequest
from ivr.sip.dialog import Dialog, DialogError, DialogId
from ivr.sip.message import REASON_PHRASES, Request, Response
from ivr.trunk import (
    Trunk,
    caller_identity,
    diversion_headers,
    divert_reason,
    quoted,
    trunk_target,
)

if TYPE_CHECKING:
    from datetime import datetime

    from ivr.calls import CallManager
    from ivr.config import Config

log = Logger(namespace="ivr.calls")

TRUNK_RING_TIMEOUT = 180.0  # an outgoing call or external forward rings this long at most

Headers = tuple[tuple[str, str], ...]
Identity = tuple[str, Headers]  # the From (without tag) and identity headers of a leg


class BridgeOwner(Protocol):
    """Who a :class:`BridgeRunner` reports to: a :class:`UserCall`, or an
    :class:`~ivr.media_calls.Announcement` moving its caller on."""

    manager: CallManager

    def respond(self, action: RespondCaller) -> None: ...
    def answered(self, runner: BridgeRunner, target: Target) -> None: ...
    def not_reached(self, runner: BridgeRunner, result: NotReached) -> None: ...


class BridgeRunner:
    """Carries out one :class:`~ivr.b2bua.Bridge`'s actions: SIP through the core,
    timers on the reactor, dialogs in the manager's table."""

    def __init__(self, call: BridgeOwner, bridge: Bridge) -> None:
        self.call = call
        self.manager = call.manager
        self.bridge = bridge
        self.sides: dict[DialogId, Side] = {}
        self._timers: dict[str, Any] = {}
        self.record: CallRecordBuilder | None = None  # legs from leg_base on are ours
        self.leg_base = 0
        self.on_finished: Callable[[], None] | None = None

    def feed(self, event: Event) -> None:
        try:
            actions = self.bridge.handle(event)
        except Exception:
            log.failure("bridge failed on {event}", event=type(event).__name__)
            return
        self.perform(actions)
        if self.record is not None and isinstance(event, Responded) and event.ref.kind == "invite":
            status = 408 if event.response is None else event.response.status
            if status >= 200:
                self.record.leg_final(self.leg_base + event.ref.index, status)

    def perform(self, actions: Sequence[Action]) -> None:
        for action in actions:
            self._perform(action)

    def _perform(self, action: Action) -> None:
        core = self.manager.services.core
        if isinstance(action, Send):
            core.send_request(action.request, action.peer, self._listener(action))
        elif isinstance(action, SendAck):
            core.send_ack(action.ack, action.peer)
        elif isinstance(action, RespondCaller):
            self.call.respond(action)
        elif isinstance(action, Reply):
            token = action.token
            assert isinstance(token, ServerRequest)
            token.respond(action.status, action.reason, headers=action.headers, body=action.body)
        elif isinstance(action, StartTimer):
            reactor = self.manager.services.reactor
            self._timers[action.name] = reactor.callLater(action.delay, self._fire, action.name)
        elif isinstance(action, CancelTimer):
            self._cancel_timer(action.name)
        elif isinstance(action, Track):
            self.sides[action.dialog.id] = action.side
            self.manager.track(action.dialog, self)
        elif isinstance(action, Untrack):
            self.manager.untrack(action.dialog_id)
        elif isinstance(action, Answered):
            self.call.answered(self, action.target)
        elif isinstance(action, CallLimitReached):
            longest = self.bridge.max_duration or 0
            call_id = self.bridge.caller_invite.call_id
            log.info("call {id} ended after {s:.0f} s, the longest call", id=call_id, s=longest)
            if self.record is not None:
                self.record.step(
                    f"ended: the longest call ({longest:.0f} s)", self.manager.services.now()
                )
        elif isinstance(action, NotReached):
            self.call.not_reached(self, action)
        elif isinstance(action, Finished):
            for name in list(self._timers):
                self._cancel_timer(name)
            if self.on_finished is not None:
                self.on_finished()

    def _listener(self, action: Send) -> Callable[[Response | None], None] | None:
        ref = action.ref
        if ref is None:
            return None
        return lambda response: self.feed(Responded(ref, response))

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        self.feed(TimerFired(name))

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    # -- DialogOwner ---------------------------------------------------------------------

    def in_dialog(self, request: ServerRequest, dialog: Dialog) -> None:
        self.feed(RequestReceived(self.sides[dialog.id], request.request, request))

    def acked(self, ack: Request, dialog: Dialog) -> None:
        self.feed(AckReceived(self.sides[dialog.id], ack))

    def ack_timed_out(self, dialog: Dialog) -> None:
        self.feed(AckTimedOut(self.sides[dialog.id]))


class RingingCall:
    """What every call that rings devices through a :class:`BridgeRunner` shares: answer
    the caller from the bridge, note the winning leg, end once, and write the call record
    when the call is over and its CANCELled legs have settled.

    ``state``: ``routing`` → ``ringing`` → ``bridged``, ``handed-over`` or ``ended``
    (subclasses add their own steps). :meth:`describe` names the call in log lines."""

    def __init__(
        self,
        manager: CallManager,
        invite: ServerRequest,
        max_forwards: int,
        record: CallRecordBuilder,
    ) -> None:
        self.manager = manager
        self.invite = invite
        self.max_forwards = max_forwards
        self.record = record
        self.state = "routing"
        self.runner: BridgeRunner | None = None
        self.then: routing.Decision | None = None
        manager.pending[id(invite)] = self

    def describe(self) -> str:
        return f"call {self.invite.request.headers.get('call-id') or '?'}"

    def _from_value(self, domain: str) -> str:
        """The From (without tag) the rung devices see."""
        return f"<sip:anonymous@{domain}>"

    def _fork(
        self,
        targets: list[Target],
        timeout: float,
        then: routing.Decision | None,
        to_user: str,
        note: str | None = None,
    ) -> None:
        """Fork the caller's INVITE to ``targets`` (a :class:`Bridge` run by a
        :class:`BridgeRunner`), the legs noted in the call record; on no answer go on
        with ``then``."""
        services = self.manager.services
        core = services.core
        domain = services.config.sip.domain
        try:
            bridge = Bridge(
                self.invite.request,
                self.invite.peer,
                targets,
                local=Local(host=core.host, port=core.port, ids=core.ids),
                local_tag=self.invite.to_tag,
                timeout=timeout,
                max_forwards=self.max_forwards,
                from_value=self._from_value(domain),
                to_value=f"<sip:{to_user}@{domain}>",
                max_duration=services.config.sip.max_call_seconds or None,
            )
        except DialogError as exc:
            self.reject(400, exc.reason)
            return
        self.state = "ringing"
        self.then = then
        runner = self.runner = BridgeRunner(self, bridge)
        now = services.now()
        if note is not None:
            self.record.step(note, now)
        runner.record = self.record
        runner.leg_base = self.record.ringing(((t.device, t.uri) for t in targets), now)
        runner.on_finished = lambda: self._runner_finished(runner)
        runner.perform(bridge.start())

    # -- from the bridge -----------------------------------------------------------------

    def respond(self, action: RespondCaller) -> None:
        invite = self.invite
        if invite.responded or self.state != "ringing":
            return
        invite.respond(
            action.status,
            action.reason,
            to_tag=invite.to_tag,
            headers=action.headers,
            body=action.body,
        )

    def answered(self, runner: BridgeRunner, target: Target) -> None:
        log.info("{call()} answered on {device}", call=self.describe, device=target.device)
        legs = runner.bridge.legs
        index = next((i for i, leg in enumerate(legs) if leg.target is target), 0)
        self.record.answered(runner.leg_base + index, self.manager.services.now())
        self.state = "bridged"
        self.manager.forget(self.invite, self)

    # -- the end -----------------------------------------------------------------------

    def cancelled(self) -> None:
        self.record.cancelled(self.manager.services.now())
        runner = self.runner if self.state == "ringing" else None
        self.end()
        if runner is not None:
            runner.feed(CallerCancelled())

    def reject(self, status: int, reason: str | None = None) -> None:
        phrase = reason or REASON_PHRASES.get(status)
        self.record.rejected(status, phrase, self.manager.services.now())
        if not self.invite.responded:
            self.invite.respond(status, reason)
        self.end()

    def end(self) -> None:
        self.state = "ended"
        self.manager.forget(self.invite, self)
        self.record.end(self.manager.services.now())
        self._save_record()

    # -- the call record ---------------------------------------------------------------

    def _runner_finished(self, runner: BridgeRunner) -> None:
        """The bridge is over: a bridged call has ended, or the CANCELled legs settled."""
        if runner is not self.runner:
            return
        if self.state == "bridged":
            self.record.end(self.manager.services.now())
        if self.state in ("bridged", "ended"):
            self._save_record()

    def _save_record(self) -> None:
        """Write the record once the call is over and the ringing legs have settled."""
        runner = self.runner
        if runner is not None and self.state == "ended" and not runner.bridge.finished:
            return  # the CANCELled legs' answers come first (then _runner_finished)
        services = self.manager.services
        record = self.record.finish(services.now())
        if record is not None:
            services.counters.calls.inc(outcome=record.outcome)
        save_record(services.store, record)
        if runner is not None and runner.bridge.finished:
            runner.on_finished = None  # nothing is left to do: no cycle for the collector
            self.runner = None


class UserCall(RingingCall):
    """A call to a user: ask the routing core, then ring (B2BUA), answer for the user
    (spoken redirect, voicemail), forward to another user, or refuse (486, 480).

    ``state``: ``routing`` → ``ringing`` (→ ``routing`` again on no answer) → ``bridged``,
    ``handed-over`` (an :class:`Announcement` has the call) or ``ended``.

    ``caller`` is the calling user, or None for a call from the trunk, whose ``number``
    (E.164, or ``anonymous``) and ``display`` name are the From's. :meth:`dial_out`
    sends a user's call to a public number through the trunk instead of routing it.
    """

    def __init__(
        self,
        manager: CallManager,
        invite: ServerRequest,
        caller: User | None,
        max_forwards: int,
        *,
        number: str | None = None,
        display: str | None = None,
        kind: str | None = None,
    ) -> None:
        self.caller = caller
        self.number = number
        self.display = display
        self.kind = kind or "desk"  # the calling device's kind: its caller-ID towards the trunk
        self.public: Identity | None = None  # the caller as the public network sees it
        self.statuses: tuple[int, ...] | None = None  # the last ring's, for Diversion
        self.visited: list[str] = []
        self.user: User | None = None
        self.dialled = ""
        record = CallRecordBuilder(
            id=manager.record_ids(),
            kind="user",
            caller=self.caller_id,
            caller_user=None if caller is None else caller.extension,
            dialled="",
            started_at=manager.services.now(),
        )
        super().__init__(manager, invite, max_forwards, record)

    def describe(self) -> str:
        user = self.user.extension if self.user else "?"
        return f"call {self.caller_id} → {user}"

    @property
    def caller_id(self) -> str:
        """Who calls, as routing sees it: an extension or a number (or ``anonymous``)."""
        if self.caller is not None:
            return self.caller.extension
        return self.number or "anonymous"

    def _from_value(self, domain: str) -> str:
        """The From (without tag) for legs to our own devices."""
        if self.caller is not None:
            return _name_addr(self.caller, domain)
        if self.number is None or self.number == "anonymous":
            return '"Anonymous" <sip:anonymous@anonymous.invalid>'
        name = f"{quoted(self.display)} " if self.display else ""
        return f"{name}<sip:{self.number}@{domain}>"

    def _public(self, domain: str) -> Identity:
        """From and identity headers for a leg through the trunk: an outside caller's
        own number; a user's caller-ID for their device kind from their active profile
        (read by :meth:`_load_public`; until then their DID or the main number)."""
        caller = self.caller
        if caller is None:
            return self._from_value(domain), ()
        if self.public is not None:
            return self.public
        config = self.manager.services.config
        number = caller.did or config.company.main_number
        return f"{quoted(caller.name)} <sip:{number}@{domain}>", ()

    def _needs_public(self, decision: routing.Decision) -> bool:
        """Whether ``decision`` may send a user's call out through the trunk (a mobile
        rung, an external forward, key 1 or a forward after the redirect) before the
        caller's profile was read for their caller-ID."""
        config = self.manager.services.config
        if self.caller is None or self.public is not None or config.trunk is None:
            return False
        if isinstance(decision, routing.Ring):
            return any(d.kind == "mobile" and d.number for d in decision.devices)
        if isinstance(decision, routing.Forward):
            return config.user_by_number(decision.target) is None
        if isinstance(decision, routing.Redirect):
            then = decision.then
            return decision.mobile is not None or isinstance(then, routing.Forward)
        return False

    def _load_public(self, decision: routing.Decision) -> None:
        """Read the caller's profile state for their caller-ID, then carry ``decision`` out."""
        caller = self.caller
        assert caller is not None
        services = self.manager.services

        def go(identity: Identity) -> None:
            self.public = identity
            self.run(decision)

        def failed(failure: Any) -> None:
            log.failure("reading {user}'s caller-ID failed", failure, user=caller.extension)
            if self.state == "routing":
                go(self._public(services.config.sip.domain))

        with_public_identity(self, caller, self.kind, go, failed)

    def route(self, user: User, dialled: str) -> None:
        """Decide for ``user`` from their profile state (read from the store)."""
        if user.extension in self.visited:
            self.reject(482, "Loop Detected")
            return
        self.visited.append(user.extension)
        self.record.dialled = self.record.dialled or dialled
        d = self.manager.services.profiles.store.get_state(user.extension)
        d.addCallbacks(lambda state: self._decide(user, dialled, state), self._failed)

    def _decide(self, user: User, dialled: str, state: Any) -> None:
        if self.state != "routing":
            return  # cancelled meanwhile
        services = self.manager.services
        now = services.now()
        call = routing.Call(
            user=user,
            caller=self.caller_id,
            dialled=dialled,
            online=self.manager.online(user),
        )
        decision = routing.decide(
            call, expire(state, now), now, rules=services.config.rules, schedules=user.schedules
        )
        log.info(
            "call {caller} → {user}: {trace()}",  # explained only when logged
            caller=self.caller_id,
            user=user.extension,
            trace=decision.explain,
        )
        self.user, self.dialled = user, dialled
        self.record.decided(user.extension, decision.trace, now)
        self.run(decision)

    def _failed(self, failure: Any) -> None:
        log.failure("routing a call from {caller} failed", failure, caller=self.caller_id)
        self.reject(500, "Routing failed")

    def run(self, decision: routing.Decision) -> None:
        """Carry out one step of the plan."""
        if self.state != "routing":
            return
        if self._needs_public(decision):
            self._load_public(decision)
            return
        self.record.carried_out(decision, self.manager.services.now())
        if isinstance(decision, routing.Ring):
            self._ring(decision)
        elif isinstance(decision, routing.Busy):
            self.reject(486)
        elif isinstance(decision, routing.Hangup):
            self.reject(480)
        elif isinstance(decision, routing.Forward):
            self._forward(decision.target)
        else:
            self._answer(decision)

    # -- the steps ---------------------------------------------------------------------

    def _ring(self, decision: routing.Ring) -> None:
        targets = self.manager.targets(decision.devices) + self._mobile_targets(decision)
        if not targets:
            log.info("no registered contact to ring: {then}", then=decision.then.explain())
            self.record.step("no registered contact", self.manager.services.now())
            self.run(decision.then)
            return
        assert self.user is not None
        self._bridge(targets, float(decision.timeout), decision.then, self.user.extension)

    def _mobile_targets(self, decision: routing.Ring) -> list[Target]:
        """MEX: a leg through the trunk to each mobile device's number."""
        config = self.manager.services.config
        trunk, user = config.trunk, self.user
        mobiles = [d for d in decision.devices if d.kind == "mobile" and d.number]
        if not mobiles or user is None:
            return []
        if trunk is None:
            log.info("mobile of {user} not rung: no trunk configured", user=user.extension)
            return []
        domain = config.sip.domain
        return mobile_targets(trunk, mobiles, user, config, self._public(domain))

    def _bridge(
        self,
        targets: list[Target],
        timeout: float,
        then: routing.Decision | None,
        to_user: str,
    ) -> None:
        """Fork the caller's INVITE to ``targets``; on no answer go on with ``then``
        (None: refuse with the legs' status)."""
        note = f"call {to_user} via the trunk" if then is None else None
        self._fork(targets, timeout, then, to_user, note)

    def _forward(self, target: str) -> None:
        config = self.manager.services.config
        user = config.user_by_number(target)
        self.max_forwards -= 1
        if self.max_forwards < 1:
            self.reject(483)
            return
        if user is None:
            self._forward_out(target)
            return
        self.route(user, target)

    def _forward_out(self, target: str) -> None:
        """An external forward: through the trunk, with Diversion naming the user."""
        config = self.manager.services.config
        trunk, user = config.trunk, self.user
        number = config.company.numbers.canonical(target)
        who = user.extension if user is not None else "?"
        if trunk is None or number is None or not number.startswith("+"):
            log.info("forward {user} → {target}: no trunk for it", user=who, target=target)
            self.reject(480, "Forward target unreachable")
            return
        if not trunk.allows(number):
            log.warn(
                "forward {user} → {target} refused: not on the trunk allow-list",
                user=who,
                target=number,
            )
            self.reject(403, "Forward target not allowed")
            return
        domain = config.sip.domain
        on_behalf = (user.did if user is not None else None) or config.company.main_number
        reason = divert_reason(self.statuses)
        log.info(
            "forward {user} → {target} via the trunk ({reason})",
            user=who,
            target=number,
            reason=reason,
        )
        from_value, identity = self._public(domain)
        leg = trunk_target(
            trunk,
            number,
            "trunk",
            from_value=from_value,
            headers=identity + diversion_headers(trunk, on_behalf, domain, reason, number),
        )
        self._bridge([leg], TRUNK_RING_TIMEOUT, None, number)

    def dial_out(self, number: str, kind: str) -> None:
        """A user's ``kind`` device calls the public ``number``: through the trunk,
        showing the caller-ID the active profile sets for that device kind."""
        caller = self.caller
        assert caller is not None
        self.record.kind, self.record.dialled = "outgoing", number
        services = self.manager.services
        if services.config.trunk is None:
            self.reject(503, "No trunk configured")
            return
        d = services.profiles.store.get_state(caller.extension)
        d.addCallbacks(lambda state: self._dial_out(caller, number, kind, state), self._failed)

    def _dial_out(self, caller: User, number: str, kind: str, state: Any) -> None:
        if self.state != "routing":
            return
        services = self.manager.services
        config = services.config
        trunk = config.trunk
        if trunk is None:
            self.reject(503, "No trunk configured")
            return
        shown, from_value, headers = public_identity(caller, kind, state, services.now(), config)
        log.info(
            "outgoing {caller} ({kind}) → {number} as {shown}",
            caller=caller.extension,
            kind=kind,
            number=number,
            shown=shown or "anonymous",
        )
        leg = trunk_target(trunk, number, "trunk", from_value=from_value, headers=headers)
        self._bridge([leg], TRUNK_RING_TIMEOUT, None, number)

    def _answer(self, decision: routing.Redirect | routing.Voicemail) -> None:
        media = open_media(self.manager.services, self.invite)
        if media is None:
            self.record.step("could not answer (media)", self.manager.services.now())
            self.end()
            return
        assert self.user is not None
        self.state = "handed-over"
        domain = self.manager.services.config.sip.domain
        public_from, public_headers = self._public(domain)
        call = Announcement(
            self.manager,
            self.invite,
            media,
            decision,
            user=self.user,
            caller=self.caller_id,
            dialled=self.dialled,
            caller_from=self._from_value(domain),
            public_from=public_from,
            public_headers=public_headers,
        )
        self.manager.when_ended(self.invite, call, lambda: self._handed_over_ended(call, decision))
        call.answer()
        if call.state == "answered":
            self.record.we_answered(decision, self.manager.services.now())

    # -- from the bridge -----------------------------------------------------------------

    def not_reached(self, runner: BridgeRunner, result: NotReached) -> None:
        if runner is not self.runner or self.state != "ringing":
            return
        now = self.manager.services.now()
        self.record.not_reached(runner.leg_base, result.statuses, result.reason, now)
        if self.then is None:  # the trunk leg of a forward or outgoing call failed
            status = result.statuses[0] if len(result.statuses) == 1 else 480
            log.info("trunk call failed: {reason} ({status})", reason=result.reason, status=status)
            self.state, self.runner = "routing", None
            self.reject(status if 400 <= status < 700 else 480)
            return
        self.statuses = result.statuses
        log.info(
            "nobody answered ({reason}, {statuses}): {then}",
            reason=result.reason,
            statuses=result.statuses,
            then=self.then.explain(),
        )
        self.state, self.runner = "routing", None
        self.run(self.then)

    # -- the call record ---------------------------------------------------------------

    def _handed_over_ended(
        self, call: Announcement, decision: routing.Redirect | routing.Voicemail
    ) -> None:
        now = self.manager.services.now()
        then = decision.then if isinstance(decision, routing.Redirect) else None
        if isinstance(then, routing.Voicemail) and getattr(call, "session", None) is not None:
            self.record.voicemail_reached(then.box, now)
        moved = getattr(getattr(call, "moving", None), "bridge", None)
        if isinstance(moved, Bridge) and moved.winner is not None:  # a redirect key moved it
            self.record.forwarded_to = moved.winner.target.device
            base = self.record.ringing(((g.target.device, g.target.uri) for g in moved.legs), now)
            for i, leg in enumerate(moved.legs):
                if leg is moved.winner:
                    self.record.took_over(base + i, now)
                else:
                    self.record.leg_final(base + i, leg.status or 487)
        self.record.end(now)
        self._save_record()


def with_public_identity(
    call: RingingCall,
    caller: User,
    kind: str,
    go: Callable[[Identity], None],
    failed: Callable[[Any], None],
) -> None:
    """Read ``caller``'s profile state, then ``go`` with the identity it shows towards the
    public network from a ``kind`` device (unless ``call`` stopped routing meanwhile)."""
    services = call.manager.services

    def loaded(state: Any) -> None:
        if call.state != "routing":
            return
        now, config = services.now(), services.config
        _, from_value, headers = public_identity(caller, kind, state, now, config)
        go((from_value, headers))

    services.profiles.store.get_state(caller.extension).addCallbacks(loaded, failed)


def public_identity(
    caller: User, kind: str, state: Any, now: datetime, config: Config
) -> tuple[str | None, str, Headers]:
    """The number ``caller``'s ``kind`` device shows outside (None: hidden) under their
    active profile, with the From and identity headers (P-Asserted-Identity, Privacy)
    of a trunk leg carrying their call: outgoing, forwarded, or to a mobile."""
    profile = effective(expire(state, now), caller.schedules, now, config.rules).profile
    main = config.company.main_number
    shown = routing.caller_id(caller, kind, profile, main)
    asserted = shown or caller.did or main
    from_value, headers = caller_identity(shown, asserted, config.sip.domain, caller.name)
    return shown, from_value, headers


def mobile_targets(
    trunk: Trunk, devices: Sequence[Device], user: User, config: Config, identity: Identity
) -> list[Target]:
    """MEX legs: ``user``'s mobile ``devices`` through the trunk, showing ``identity``
    (the caller), with Diversion naming ``user`` (follow-me)."""
    domain = config.sip.domain
    on_behalf = user.did or config.company.main_number
    from_value, headers = identity
    return [
        trunk_target(
            trunk,
            d.number,
            d.id,
            from_value=from_value,
            headers=headers + diversion_headers(trunk, on_behalf, domain, "follow-me", d.number),
        )
        for d in devices
        if d.kind == "mobile" and d.number is not None
    ]


def save_record(store: Any, record: CallRecord | None) -> None:
    """Write a finished call's record on the store's thread (never blocks the reactor)."""
    if record is None or store is None:
        return
    d = store.add_call_record(record)
    d.addErrback(lambda f: log.failure("writing call record {id} failed", f, id=record.id))


def _name_addr(user: User, domain: str) -> str:
    name = user.name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{name}" <sip:{user.extension}@{domain}>'
