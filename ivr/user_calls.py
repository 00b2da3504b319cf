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

from twisted.logger import Logger

from ivr.b2bua import (
    AckReceived,
    AckTimedOut,
    Action,
    Answered,
    Bridge,
    CallerCancelled,
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
from ivr.config import User
from ivr.media_calls import Announcement, open_media
from ivr.routing import decide as routing
from ivr.routing.profiles import effective, expire
from ivr.sip.core import ServerRequest
from ivr.sip.dialog import Dialog, DialogError, DialogId
from ivr.sip.message import REASON_PHRASES, Request, Response
from ivr.trunk import caller_identity, diversion_headers, divert_reason, quoted, trunk_target

if TYPE_CHECKING:
    from ivr.calls import CallManager

log = Logger(namespace="ivr.calls")

TRUNK_RING_TIMEOUT = 180.0  # an outgoing call or external forward rings this long at most


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


class UserCall:
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
    ) -> None:
        self.manager = manager
        self.invite = invite
        self.caller = caller
        self.number = number
        self.display = display
        self.max_forwards = max_forwards
        self.statuses: tuple[int, ...] | None = None  # the last ring's, for Diversion
        self.state = "routing"
        self.visited: list[str] = []
        self.user: User | None = None
        self.dialled = ""
        self.runner: BridgeRunner | None = None
        self.then: routing.Decision | None = None
        manager.pending[id(invite)] = self
        services = manager.services
        self.record = CallRecordBuilder(
            id=manager.record_ids(),
            kind="user",
            caller=self.caller_id,
            caller_user=None if caller is None else caller.extension,
            dialled="",
            started_at=services.now(),
        )

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

    def _public_from(self, domain: str) -> str:
        """The From for a leg through the trunk: the caller's public number."""
        caller = self.caller
        if caller is None:
            return self._from_value(domain)
        config = self.manager.services.config
        return f"{quoted(caller.name)} <sip:{caller.did or config.company.main_number}@{domain}>"

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
            "call {caller} → {user}: {trace}",
            caller=self.caller_id,
            user=user.extension,
            trace=decision.explain(),
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
        on_behalf = user.did or config.company.main_number
        return [
            trunk_target(
                trunk,
                d.number,
                d.id,
                from_value=self._public_from(domain),
                headers=diversion_headers(trunk, on_behalf, domain, "follow-me", d.number),
            )
            for d in mobiles
            if d.number is not None
        ]

    def _bridge(
        self,
        targets: list[Target],
        timeout: float,
        then: routing.Decision | None,
        to_user: str,
    ) -> None:
        """Fork the caller's INVITE to ``targets``; on no answer go on with ``then``
        (None: refuse with the legs' status)."""
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
            )
        except DialogError as exc:
            self.reject(400, exc.reason)
            return
        self.state = "ringing"
        self.then = then
        self.runner = BridgeRunner(self, bridge)
        self._record_legs(self.runner, targets, then is None, to_user)
        self.runner.perform(bridge.start())

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
        leg = trunk_target(
            trunk,
            number,
            "trunk",
            from_value=self._public_from(domain),
            headers=diversion_headers(trunk, on_behalf, domain, reason, number),
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
        now = services.now()
        profile = effective(expire(state, now), caller.schedules, now, config.rules).profile
        main = config.company.main_number
        shown = routing.caller_id(caller, kind, profile, main)
        asserted = shown or caller.did or main
        domain = config.sip.domain
        from_value, headers = caller_identity(shown, asserted, domain, caller.name)
        log.info(
            "outgoing {caller} ({kind}, {profile}) → {number} as {shown}",
            caller=caller.extension,
            kind=kind,
            profile=profile.id,
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
        call = Announcement(
            self.manager,
            self.invite,
            media,
            decision,
            user=self.user,
            caller=self.caller_id,
            dialled=self.dialled,
            caller_from=self._from_value(domain),
            public_from=self._public_from(domain),
        )
        self.manager.when_ended(self.invite, call, lambda: self._handed_over_ended(call, decision))
        call.answer()
        if call.state == "answered":
            self.record.we_answered(decision, self.manager.services.now())

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
        log.info(
            "call {caller} → {user} answered on {device}",
            caller=self.caller_id,
            user=self.user.extension if self.user else "?",
            device=target.device,
        )
        legs = runner.bridge.legs
        index = next((i for i, leg in enumerate(legs) if leg.target is target), 0)
        self.record.answered(runner.leg_base + index, self.manager.services.now())
        self.state = "bridged"
        self.manager.forget(self.invite, self)

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

    def _record_legs(
        self, runner: BridgeRunner, targets: Sequence[Target], trunk: bool, to: str
    ) -> None:
        now = self.manager.services.now()
        if trunk:
            self.record.step(f"call {to} via the trunk", now)
        runner.record = self.record
        runner.leg_base = self.record.ringing(((t.device, t.uri) for t in targets), now)
        runner.on_finished = lambda: self._runner_finished(runner)

    def _runner_finished(self, runner: BridgeRunner) -> None:
        if runner is not self.runner:
            return
        if self.state == "bridged":
            self.record.end(self.manager.services.now())
        if self.state in ("bridged", "ended"):
            self._save_record()

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

    def _save_record(self) -> None:
        """Write the record once the call is over and the ringing legs have settled."""
        runner = self.runner
        if runner is not None and self.state == "ended" and not runner.bridge.finished:
            return  # the CANCELled legs' answers come first (then _runner_finished)
        save_record(self.manager.services.store, self.record.finish(self.manager.services.now()))
        if runner is not None and runner.bridge.finished:
            runner.on_finished = None  # nothing is left to do: no cycle for the collector
            self.runner = None


def save_record(store: Any, record: CallRecord | None) -> None:
    """Write a finished call's record on the store's thread (never blocks the reactor)."""
    if record is None or store is None:
        return
    d = store.add_call_record(record)
    d.addErrback(lambda f: log.failure("writing call record {id} failed", f, id=record.id))


def _name_addr(user: User, domain: str) -> str:
    name = user.name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{name}" <sip:{user.extension}@{domain}>'
