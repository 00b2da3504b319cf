"""Calls to a user: the routing core decides, the B2BUA rings.

:class:`UserCall` reads the user's profile state, asks ``decide()`` and carries the
decision out: ring (a :class:`~ivr.b2bua.Bridge` per attempt, run by
:class:`BridgeRunner`), answer for the user (:class:`~ivr.media_calls.Announcement`),
forward to another user (routed again; loops end with 482, Max-Forwards with 483), or
refuse (486 busy, 480 hang-up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

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
from ivr.config import User
from ivr.media_calls import Announcement, open_media
from ivr.routing import decide as routing
from ivr.routing.profiles import expire
from ivr.sip.core import ServerRequest
from ivr.sip.dialog import Dialog, DialogError, DialogId
from ivr.sip.message import Request, Response

if TYPE_CHECKING:
    from ivr.calls import CallManager

log = Logger(namespace="ivr.calls")


class BridgeRunner:
    """Carries out one :class:`~ivr.b2bua.Bridge`'s actions: SIP through the core,
    timers on the reactor, dialogs in the manager's table."""

    def __init__(self, call: UserCall, bridge: Bridge) -> None:
        self.call = call
        self.manager = call.manager
        self.bridge = bridge
        self.sides: dict[DialogId, Side] = {}
        self._timers: dict[str, Any] = {}

    def feed(self, event: Event) -> None:
        try:
            actions = self.bridge.handle(event)
        except Exception:
            log.failure("bridge failed on {event}", event=type(event).__name__)
            return
        self.perform(actions)

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
    """

    def __init__(
        self, manager: CallManager, invite: ServerRequest, caller: User, max_forwards: int
    ) -> None:
        self.manager = manager
        self.invite = invite
        self.caller = caller
        self.max_forwards = max_forwards
        self.state = "routing"
        self.visited: list[str] = []
        self.user: User | None = None
        self.dialled = ""
        self.runner: BridgeRunner | None = None
        self.then: routing.Decision | None = None
        manager.pending[id(invite)] = self

    def route(self, user: User, dialled: str) -> None:
        """Decide for ``user`` from their profile state (read from the store)."""
        if user.extension in self.visited:
            self.reject(482, "Loop Detected")
            return
        self.visited.append(user.extension)
        d = self.manager.services.profiles.store.get_state(user.extension)
        d.addCallbacks(lambda state: self._decide(user, dialled, state), self._failed)

    def _decide(self, user: User, dialled: str, state: Any) -> None:
        if self.state != "routing":
            return  # cancelled meanwhile
        services = self.manager.services
        now = services.now()
        call = routing.Call(
            user=user,
            caller=self.caller.extension,
            dialled=dialled,
            online=self.manager.online(user),
        )
        decision = routing.decide(
            call, expire(state, now), now, rules=services.config.rules, schedules=user.schedules
        )
        log.info(
            "call {caller} → {user}: {trace}",
            caller=self.caller.extension,
            user=user.extension,
            trace=decision.explain(),
        )
        self.user, self.dialled = user, dialled
        self.run(decision)

    def _failed(self, failure: Any) -> None:
        log.failure("routing a call from {caller} failed", failure, caller=self.caller.extension)
        self.reject(500, "Routing failed")

    def run(self, decision: routing.Decision) -> None:
        """Carry out one step of the plan."""
        if self.state != "routing":
            return
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
        targets = self.manager.targets(decision.devices)
        if not targets:
            log.info("no registered contact to ring: {then}", then=decision.then.explain())
            self.run(decision.then)
            return
        services = self.manager.services
        core = services.core
        assert self.user is not None
        domain = services.config.sip.domain
        try:
            bridge = Bridge(
                self.invite.request,
                self.invite.peer,
                targets,
                local=Local(host=core.host, port=core.port, ids=core.ids),
                local_tag=self.invite.to_tag,
                timeout=float(decision.timeout),
                max_forwards=self.max_forwards,
                from_value=_name_addr(self.caller, domain),
                to_value=f"<sip:{self.user.extension}@{domain}>",
            )
        except DialogError as exc:
            self.reject(400, exc.reason)
            return
        self.state = "ringing"
        self.then = decision.then
        self.runner = BridgeRunner(self, bridge)
        self.runner.perform(bridge.start())

    def _forward(self, target: str) -> None:
        config = self.manager.services.config
        user = config.user_by_number(target)
        if user is None:
            log.info("forward to {target}: not a user here (no trunk yet)", target=target)
            self.reject(480, "Forward target unreachable")
            return
        self.max_forwards -= 1
        if self.max_forwards < 1:
            self.reject(483)
            return
        self.route(user, target)

    def _answer(self, decision: routing.Redirect | routing.Voicemail) -> None:
        media = open_media(self.manager.services, self.invite)
        if media is None:
            self.end()
            return
        assert self.user is not None
        self.state = "handed-over"
        call = Announcement(
            self.manager,
            self.invite,
            media,
            decision,
            user=self.user,
            caller=self.caller.extension,
            dialled=self.dialled,
        )
        call.answer()

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
            caller=self.caller.extension,
            user=self.user.extension if self.user else "?",
            device=target.device,
        )
        self.state = "bridged"
        self.manager.forget(self.invite, self)

    def not_reached(self, runner: BridgeRunner, result: NotReached) -> None:
        if runner is not self.runner or self.state != "ringing" or self.then is None:
            return
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
        runner = self.runner if self.state == "ringing" else None
        self.end()
        if runner is not None:
            runner.feed(CallerCancelled())

    def reject(self, status: int, reason: str | None = None) -> None:
        if not self.invite.responded:
            self.invite.respond(status, reason)
        self.end()

    def end(self) -> None:
        self.state = "ended"
        self.manager.forget(self.invite, self)


def _name_addr(user: User, domain: str) -> str:
    name = user.name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{name}" <sip:{user.extension}@{domain}>'
