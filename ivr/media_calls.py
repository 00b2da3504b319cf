"""Calls we answer ourselves, with our own media: feature codes, the spoken redirect and
voicemail.

:class:`MediaCall` answers with one RTP stream, plays prompts, hears digits (RFC 4733,
SIP INFO, in-band), answers BYE and re-INVITE, and hangs up. :class:`FeatureCall`
executes a feature code (or runs the ``*23`` keypad menu) and confirms by voice;
:class:`Announcement` speaks a user's redirect and hands the caller to voicemail
(:class:`ivr.voicemail.VoicemailSession`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from twisted.internet import threads
from twisted.internet.defer import Deferred

from ivr import greetings
from ivr.b2bua import (
    Bridge,
    CallerCancelled,
    Local,
    NotReached,
    RespondCaller,
    Target,
    forwarded_max_forwards,
)
from ivr.config import User
from ivr.confirm import confirmation
from ivr.dtmf.events import DigitEvent
from ivr.dtmf.info import CONTENT_TYPES as INFO_CONTENT_TYPES
from ivr.dtmf.info import InfoBodyError, parse_info
from ivr.flows import CancelTimer as FlowCancelTimer
from ivr.flows import Execute, FlowRunner, Hangup, Play, ProfileMenu, StopPrompt
from ivr.flows import StartTimer as FlowStartTimer
from ivr.logs import Logger
from ivr.media import g711, phrases
from ivr.media.player import Player
from ivr.media.session import MediaStream, NoFreePort
from ivr.media.tones import ringback_cadence
from ivr.routing import decide as routing
from ivr.routing.commands import PROFILE_COMMANDS, CommandResult
from ivr.routing.features import FeatureCommand, Interactive, InvalidCode, QueuePause, QueueToggle
from ivr.routing.profiles import expire
from ivr.routing.queues import QueueChange, confirmation_words
from ivr.selfservice_calls import SelfService, handles
from ivr.sip import sdp
from ivr.sip.core import ALLOWED_METHODS, ServerRequest
from ivr.sip.dialog import Dialog, DialogError
from ivr.sip.message import Request, Response
from ivr.trunk import diversion_headers, trunk_target
from ivr.voicemail import RECORDED_NAME, VoicemailSession

if TYPE_CHECKING:
    from ivr.calls import CallManager, CallServices
    from ivr.user_calls import BridgeRunner

log = Logger(namespace="ivr.calls")

AGENT = "ivr"


@dataclass(frozen=True, slots=True)
class MediaSetup:
    """Our media for a call we answer: the stream, the caller's offer, our SDP."""

    stream: MediaStream
    offer: sdp.SessionDescription | None
    ours: sdp.SessionDescription


def open_media(services: CallServices, request: ServerRequest) -> MediaSetup | None:
    """Open a stream and answer the INVITE's offer (or make one); on failure the INVITE
    is answered (415, 400, 503, 488) and None returned."""
    req = request.request
    offer = None
    if req.body:
        kind = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
        if kind != "application/sdp":
            request.respond(415, headers=[("Accept", "application/sdp")])
            return None
        try:
            offer = sdp.parse_sdp(req.body)
        except sdp.SdpError as exc:
            request.respond(400, f"Bad SDP: {exc}"[:120])
            return None
    try:
        stream = services.media.open_stream(peer_host=request.peer.host)
    except NoFreePort:
        request.respond(503, "No media port free")
        return None
    session_id = services.rng.getrandbits(31)
    try:
        if offer is not None:
            answer = sdp.answer(
                offer, services.rtp_host, stream.local_port, session_id=session_id, version=1
            )
            stream.apply(answer.media, peer_host=request.peer.host)
            ours = answer.sdp
        else:
            ours = sdp.make_offer(
                services.rtp_host, stream.local_port, session_id=session_id, version=1
            )
    except sdp.NoCommonCodec as exc:
        stream.close()
        request.respond(488, headers=[("Warning", exc.warning(AGENT))])
        return None
    return MediaSetup(stream, offer, ours)


class MediaCall:
    """A call we answer with our own media: play prompts, hear digits, hang up.

    ``state``: ``new`` → ``answered`` (200 sent) → ``playing`` (ACKed) → ``hanging-up``
    → ``ended``. Subclasses fill in :meth:`confirmed`, :meth:`digit` and :meth:`on_end`.
    """

    def __init__(
        self, manager: CallManager, invite: ServerRequest, lang: str, media: MediaSetup
    ) -> None:
        self.manager = manager
        self.invite = invite
        self.lang = lang
        self.stream = media.stream
        self.offer = media.offer
        self.our_sdp = media.ours
        self.dialog: Dialog | None = None
        self.state = "new"
        self.early_digits: list[DigitEvent] = []  # SIP INFO after our 200, before the ACK
        manager.pending[id(invite)] = self

    def answer(self) -> None:
        """200 with our SDP (the 2xx is retransmitted by the core until the ACK)."""
        if self.state != "new":
            return  # cancelled meanwhile: the core has answered 487
        invite = self.invite
        contact = self.manager.contact(invite.peer)
        try:
            self.dialog = Dialog.as_uas(invite.request, invite.to_tag, contact, confirmed=True)
        except DialogError as exc:
            self.reject(400, exc.reason)
            return
        self.state = "answered"
        self.manager.track(self.dialog, self)
        invite.respond(
            200,
            to_tag=invite.to_tag,
            headers=[
                ("Contact", contact),
                ("Allow", ", ".join(ALLOWED_METHODS)),
                ("Content-Type", "application/sdp"),
            ],
            body=self.our_sdp.encode(),
        )

    def reject(self, status: int, reason: str | None = None) -> None:
        if self.state == "new" and not self.invite.responded:
            self.invite.respond(status, reason)
        self.end()

    # -- DialogOwner ---------------------------------------------------------------------

    def acked(self, ack: Request, dialog: Dialog) -> None:
        if self.state != "answered":
            return
        if self.offer is None:
            try:
                media = sdp.accept_answer(self.our_sdp, sdp.parse_sdp(ack.body))
                self.stream.apply(media, peer_host=self.invite.peer.host)
            except (sdp.SdpError, ValueError) as exc:
                log.info("bad SDP in ACK from {peer}: {err}", peer=str(self.invite.peer), err=exc)
                self.hang_up()
                return
        self.state = "playing"
        self.confirmed()
        early, self.early_digits = self.early_digits, []
        for event in early:
            if self.state == "playing":
                self.digit(event)

    def in_dialog(self, request: ServerRequest, dialog: Dialog) -> None:
        method = request.request.method
        if method == "BYE":
            request.respond(200)
            self.end()
        elif method == "INFO" and request.request.body:
            self.info(request)
        elif method == "INVITE":
            request.respond(
                200,
                headers=[
                    ("Contact", self.manager.contact(request.peer)),
                    ("Content-Type", "application/sdp"),
                ],
                body=self.our_sdp.encode(),
            )
        else:
            request.respond(200)

    def ack_timed_out(self, dialog: Dialog) -> None:
        self.hang_up()

    def cancelled(self) -> None:
        self.end()

    # -- hooks -----------------------------------------------------------------------------

    def confirmed(self) -> None:
        """The caller ACKed our 200: media flows."""

    def digit(self, event: DigitEvent) -> None:
        """A key press from RFC 4733, SIP INFO or in-band tones."""

    def on_end(self) -> None:
        """The call is over; the stream is still open."""

    # -- media and the end -----------------------------------------------------------------

    def clock(self) -> float:
        return float(self.manager.services.reactor.seconds())

    def play(self, words: Sequence[str], on_done: Callable[[], None]) -> None:
        services = self.manager.services
        codec = self.stream.codec or "PCMU"
        try:
            player = services.prompts.player(self.lang, words, codec)
        except KeyError as exc:
            log.error("missing prompt: {err}", err=exc)
            self.hang_up()
            return
        self.stream.play(player, on_done=on_done)

    def info(self, request: ServerRequest) -> None:
        """SIP INFO in the dialog: a DTMF relay body (RFC 2976 usage)."""
        req = request.request
        try:
            event = parse_info(req.headers.get("content-type") or "", req.body, self.clock())
        except InfoBodyError as exc:
            headers = [("Accept", ", ".join(INFO_CONTENT_TYPES))] if exc.status == 415 else []
            request.respond(exc.status, str(exc)[:120], headers=headers)
            return
        request.respond(200)
        if self.state == "answered":  # the dialog exists once our 200 is sent (RFC 3261 §12.1)
            self.early_digits.append(event)
        else:
            self.digit(event)

    def hang_up(self) -> None:
        """Send BYE, then clean up."""
        if self.state not in ("answered", "playing") or self.dialog is None:
            return
        self.state = "hanging-up"
        self.on_end()
        self.stream.stop()
        core = self.manager.services.core
        peer = self.invite.peer
        bye = self.dialog.create_request("BYE", core.ids, core.host, core.port, peer.transport)
        bye.headers.set("via", core.via_value(peer))
        core.send_request(bye, peer, self._bye_answered)

    def _bye_answered(self, response: Response | None) -> None:
        if response is None or response.status >= 200:
            self.end()

    def end(self) -> None:
        if self.state == "ended":
            return
        was, self.state = self.state, "ended"  # on_end's callbacks must not hang up again
        if was != "hanging-up":
            self.on_end()
        self.stream.close()
        if self.dialog is not None:
            self.dialog.terminate()
            self.manager.untrack(self.dialog.id)
        self.manager.forget(self.invite, self)


class FeatureCall(MediaCall):
    """A feature-code call: answer, store the change on the ACK, confirm by voice, hang up."""

    def __init__(
        self,
        manager: CallManager,
        invite: ServerRequest,
        user: User,
        actor: str,
        media: MediaSetup,
    ) -> None:
        super().__init__(manager, invite, user.language, media)
        self.user = user
        self.actor = actor
        self.words: list[str] = []
        self.menu: FlowRunner | None = None
        self.command: FeatureCommand | None = None
        self.selfservice: SelfService | None = None  # *97, *98, *24*p#, *33*ext*PIN#...
        self.digits = manager.services.digit_merger()
        self._timers: dict[str, Any] = {}

    def execute(self, dialled: str) -> None:
        """Answer at once; a profile change is stored only when the caller ACKs the 200
        (a call cancelled or never confirmed changes nothing), then confirmed by voice."""
        services = self.manager.services
        parsed = services.config.feature_codes.parse(dialled)
        if isinstance(parsed, Interactive):
            clock = services.config.company.clock if self.user.language == "en" else None
            self.menu = FlowRunner(
                ProfileMenu(services.config.rules, self.user.language, clock=clock)
            )
        elif handles(parsed):
            self.selfservice = SelfService(self, parsed)  # type: ignore[arg-type]
        elif not isinstance(parsed, InvalidCode) and isinstance(parsed, PROFILE_COMMANDS):
            self.command = parsed
        elif isinstance(parsed, QueueToggle | QueuePause):
            self.command = parsed  # *45 / *46
        else:
            reason = parsed.reason if isinstance(parsed, InvalidCode) else "not available"
            log.info("invalid feature code from {actor}: {reason}", actor=self.actor, reason=reason)
            self.words = self._words(None, None)
        self.answer()

    def _words(self, command: FeatureCommand | None, result: CommandResult | None) -> list[str]:
        services = self.manager.services
        company = services.config.company
        return confirmation(
            command,
            result,
            rules=services.config.rules,
            lang=self.user.language,
            clock=company.clock if self.user.language == "en" else None,
            now=services.now(),
        )

    def _store(self, command: FeatureCommand) -> None:
        services = self.manager.services
        if isinstance(command, QueueToggle | QueuePause):
            q = self.manager.queues.execute(
                self.user.extension, command, actor=self.actor, via="phone"
            )
            q.addCallbacks(self._queue_stored, self._failed)
            return
        d = services.profiles.execute(
            self.user.extension, command, actor=self.user.extension, via="phone", device=self.actor
        )
        d.addCallbacks(lambda result: self._stored(command, result), self._failed)

    def _stored(self, command: FeatureCommand, result: CommandResult) -> None:
        self.words = self._words(command, result)
        if self.state == "playing":
            self.play(self.words, self.hang_up)

    def _queue_stored(self, change: QueueChange) -> None:
        self.words = confirmation_words(change)
        if self.state == "playing":
            self.play(self.words, self.hang_up)

    def _failed(self, failure: Any) -> None:
        log.failure("feature code failed for {actor}", failure, actor=self.actor)
        self.hang_up()

    def confirmed(self) -> None:
        if self.selfservice is not None:
            self.selfservice.start()
            return
        if self.command is not None:
            self._store(self.command)
            return
        if self.menu is None:
            self.play(self.words, self.hang_up)
            return
        self.stream.listen_for_digits(self.digit, inband=True)
        self.perform(self.menu.start(self.clock()))

    # -- the keypad menu ---------------------------------------------------------------

    def digit(self, event: DigitEvent) -> None:
        if self.selfservice is not None:
            if self.state == "playing" and self.digits.add(event) is not None:
                self.selfservice.digit(event)
            return
        if self.menu is None or self.state != "playing" or self.digits.add(event) is None:
            return
        self.perform(self.menu.digit(event, self.clock()))

    def perform(self, actions: Sequence[object]) -> None:
        """Carry out what the menu asks for."""
        for action in actions:
            if self.state != "playing":
                return
            if isinstance(action, Play):
                self.play(action.prompts, self._prompt_finished)
            elif isinstance(action, StopPrompt):
                self.stream.stop()
            elif isinstance(action, FlowStartTimer):
                self._cancel_timer(action.name)
                reactor = self.manager.services.reactor
                self._timers[action.name] = reactor.callLater(
                    action.delay, self._timer_fired, action.name
                )
            elif isinstance(action, FlowCancelTimer):
                self._cancel_timer(action.name)
            elif isinstance(action, Execute):
                self._execute(action.command)
            elif isinstance(action, Hangup):
                self.hang_up()

    def _prompt_finished(self) -> None:
        if self.menu is not None:
            self.perform(self.menu.prompt_finished(self.clock()))

    def _timer_fired(self, name: str) -> None:
        self._timers.pop(name, None)
        if self.menu is not None:
            self.perform(self.menu.timer_fired(name, self.clock()))

    def _cancel_timer(self, name: str) -> None:
        call = self._timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _execute(self, command: FeatureCommand) -> None:
        services = self.manager.services
        d = services.profiles.execute(
            self.user.extension, command, actor=self.user.extension, via="ivr", device=self.actor
        )

        def done(result: CommandResult) -> None:
            if self.menu is not None and self.state == "playing":
                self.perform(self.menu.command_done(result, services.now(), self.clock()))

        def failed(failure: Any) -> None:
            log.failure("menu command failed for {actor}", failure, actor=self.actor)
            self.hang_up()

        d.addCallbacks(done, failed)

    def on_end(self) -> None:
        for name in list(self._timers):
            self._cancel_timer(name)
        if self.selfservice is not None:
            self.selfservice.end()


MOVE_RING_SECONDS = 25.0  # how long key 0 / key 1 ring the operator or the mobile


class Announcement(MediaCall):
    """We answer for the user: the spoken redirect and/or voicemail, then hang up.

    During the redirect the caller may press 0 (the operator, routed like a call to that
    user), 1 (the user's mobile through the trunk, when the profile offers it), 2 or #
    (voicemail at once); the redirect stops at the key. Whoever answers gets the caller
    (a :class:`~ivr.b2bua.Bridge` from our answered dialog, run by a ``BridgeRunner``);
    no answer goes on to voicemail; the caller hears a ringing tone meanwhile.
    ``caller_from``/``public_from`` (with ``public_headers``: P-Asserted-Identity,
    Privacy): the caller as our devices and as the public network see it.
    """

    def __init__(
        self,
        manager: CallManager,
        invite: ServerRequest,
        media: MediaSetup,
        decision: routing.Redirect | routing.Voicemail,
        *,
        user: User,
        caller: str,
        dialled: str,
        caller_from: str | None = None,
        public_from: str | None = None,
        public_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(manager, invite, user.language, media)
        self.decision = decision
        self.user = user
        self.caller = caller
        self.dialled = dialled
        self.caller_from = caller_from
        self.public_from = public_from
        self.public_headers = public_headers
        self.redirecting = False
        self.session: VoicemailSession | None = None
        self.digits = manager.services.digit_merger()
        self.moving: BridgeRunner | None = None
        self._after_move: Callable[[], None] = self._resume
        self._recorded: Deferred[greetings.Recorded] | None = None

    def answer(self) -> None:
        """Answer, and read the recorded greeting and name in a thread meanwhile (the
        reactor never waits for the disk; they are there by the ACK)."""
        services = self.manager.services
        decision = self.decision
        if isinstance(decision, routing.Redirect):
            owner, profile = self.user.extension, decision.profile.id
        else:
            owner, profile = decision.box, None
        reactor = services.reactor
        self._recorded = threads.deferToThreadPool(
            reactor,
            reactor.getThreadPool(),
            greetings.recorded,
            services.config.recordings_dir,
            owner,
            profile,
        )
        super().answer()

    def confirmed(self) -> None:
        self.stream.listen_for_digits(self.digit, inband=True)
        loading, self._recorded = self._recorded, None
        if loading is None:
            self._begin(greetings.Recorded())
            return

        def unreadable(failure: Any) -> greetings.Recorded:
            log.failure("recorded greeting or name unreadable", failure)
            return greetings.Recorded()

        loading.addErrback(unreadable).addCallback(self._begin)

    def _begin(self, recorded: greetings.Recorded) -> None:
        if self.state != "playing":
            return
        decision = self.decision
        if isinstance(decision, routing.Redirect):
            self.redirecting = True
            self._redirect(decision, recorded)
        else:
            self._then(decision, announce=True, name=recorded.name)

    def _redirect(self, decision: routing.Redirect, recorded: greetings.Recorded) -> None:
        """The user's own greeting for the profile when one is recorded, else the composed
        phrase (with the user's recorded name instead of the digits when there is one)."""
        services = self.manager.services
        codec = self.stream.codec or "PCMU"
        own = recorded.greeting
        if own is not None:
            self.stream.play(Player([g711.encode(codec, own)], codec=codec), self._redirect_done)
            return
        name = recorded.name
        if name is None:
            self.play(self._redirect_words(decision), self._redirect_done)
            return
        words = self._redirect_words(decision, who=RECORDED_NAME)
        extra = {RECORDED_NAME: g711.encode(codec, name)}
        try:
            player = services.prompts.player(self.lang, words, codec, extra=extra)
        except KeyError as exc:
            log.error("missing prompt: {err}", err=exc)
            self.hang_up()
            return
        self.stream.play(player, on_done=self._redirect_done)

    def _redirect_words(self, decision: routing.Redirect, who: str | None = None) -> list[str]:
        services = self.manager.services
        company = services.config.company
        back: datetime | date | None = decision.back
        if back is not None and decision.profile.returns == "date":
            back = company.calendar.local(back).date()  # "åter måndag den fjärde januari"
        return phrases.redirect(
            who or self.user.extension,
            decision.profile.number,
            back,
            services.now(),
            decision.language,
            company.clock if decision.language == "en" else None,
        )

    def _redirect_done(self) -> None:
        if (
            self.redirecting
            and self.state == "playing"
            and isinstance(self.decision, routing.Redirect)
        ):
            self.redirecting = False
            self._then(self.decision.then, announce=False)

    def _then(self, decision: routing.Decision, *, announce: bool, name: Any = None) -> None:
        if isinstance(decision, routing.Voicemail):
            self._voicemail(decision.box, announce, name)
            return
        if isinstance(decision, routing.Forward):
            self._after_move = self.hang_up
            self._forward(decision.target)
            return
        log.info("after the redirect: {step}, hanging up", step=decision.explain())
        self.hang_up()

    def _voicemail(self, box: str, announce: bool, name: Any = None) -> None:
        """``name``: the box owner's recorded name (read ahead), said in the greeting."""
        services = self.manager.services
        owner = services.config.user(box)
        session = VoicemailSession(
            self.stream,
            services.prompts,
            services.store,
            box,
            self.caller,
            self.dialled,
            owner.language if owner is not None else self.lang,
            services.now,
            self._voicemail_done,
            clock=services.reactor,
            announce=announce,
            recorded_name=name if announce else None,
            digits=services.digit_merger(),
        )
        self.session = session
        session.start()

    def _voicemail_done(self, message_id: int | None) -> None:
        log.info("voicemail for {box}: message {id}", box=self.user.extension, id=message_id)
        self.session = None
        self.hang_up()

    def digit(self, event: DigitEvent) -> None:
        """During the redirect: 2 or # straight on (to voicemail), 0 the operator, 1 the
        mobile (when offered). The redirect stops at the key."""
        if self.session is not None:
            self.session.digit(event)
            return
        if not self.redirecting or self.state != "playing" or self.digits.add(event) is None:
            return
        decision = self.decision
        assert isinstance(decision, routing.Redirect)
        if event.digit in "2#":
            self.stream.stop()
            self._redirect_done()
        elif event.digit == "1" and decision.mobile is not None:
            self._stop_redirect(f"key 1: the mobile {decision.mobile}")
            self._forward(decision.mobile, reason="follow-me", mobile=True)
        elif event.digit == "0" and decision.operator is not None:
            self._stop_redirect(f"key 0: the operator {decision.operator}")
            self._ring_user(decision.operator)

    def _stop_redirect(self, why: str) -> None:
        log.info("redirect of {user}: {why}", user=self.user.extension, why=why)
        self.redirecting = False
        self.stream.stop()

    def _resume(self) -> None:
        """Nobody took the caller: on with the plan after the redirect (voicemail)."""
        if self.state == "playing" and isinstance(self.decision, routing.Redirect):
            self._then(self.decision.then, announce=False)

    # -- moving the caller to someone else --------------------------------------------

    def _forward(self, target: str, reason: str = "unconditional", mobile: bool = False) -> None:
        """Move the caller to ``target``: a user here (routed like a call to them) or a
        number through the trunk (with Diversion; on the allow-list unless it is the
        user's own ``mobile``, which always goes to the trunk)."""
        config = self.manager.services.config
        user = None if mobile else config.user_by_number(target)
        if user is not None:
            self._ring_user(user.extension)
            return
        trunk, number = config.trunk, config.company.numbers.canonical(target)
        if trunk is None or number is None or not number.startswith("+"):
            log.info("cannot reach {target}: no trunk for it", target=target)
            self._after_move()
            return
        if not mobile and not trunk.allows(number):
            log.warn("forward to {target} refused: not on the trunk allow-list", target=number)
            self._after_move()
            return
        domain = config.sip.domain
        on_behalf = self.user.did or config.company.main_number
        divert = diversion_headers(trunk, on_behalf, domain, reason, number)
        leg = trunk_target(
            trunk,
            number,
            "trunk",
            from_value=self.public_from,
            headers=self.public_headers + divert,
        )
        self._move([leg], MOVE_RING_SECONDS, number)

    def _ring_user(self, extension: str) -> None:
        services = self.manager.services
        user = services.config.user(extension)
        if user is None:
            self._after_move()
            return
        d = services.profiles.store.get_state(extension)
        d.addCallbacks(lambda state: self._ring_decided(user, state), self._ring_failed)

    def _ring_failed(self, failure: Any) -> None:
        log.failure("routing the caller on failed", failure)
        self._after_move()

    def _ring_decided(self, user: User, state: Any) -> None:
        if self.state != "playing":
            return
        services = self.manager.services
        now = services.now()
        call = routing.Call(
            user=user, caller=self.caller, dialled=user.extension, online=self.manager.online(user)
        )
        decision = routing.decide(
            call, expire(state, now), now, rules=services.config.rules, schedules=user.schedules
        )
        targets = (
            self.manager.targets(decision.devices) if isinstance(decision, routing.Ring) else []
        )
        if not isinstance(decision, routing.Ring) or not targets:
            log.info(
                "{user} cannot take the call: {trace}",
                user=user.extension,
                trace=decision.explain(),
            )
            self._after_move()
            return
        self._move(targets, float(decision.timeout), user.extension)

    def _move(self, targets: list[Target], timeout: float, to: str) -> None:
        """Ring ``targets``; the first to answer gets the caller (re-INVITE)."""
        from ivr.user_calls import BridgeRunner  # it imports this module

        services = self.manager.services
        core = services.core
        domain = services.config.sip.domain
        if self.dialog is None or self.state != "playing":
            return
        try:
            bridge = Bridge(
                self.invite.request,
                self.invite.peer,
                targets,
                local=Local(host=core.host, port=core.port, ids=core.ids),
                local_tag=self.invite.to_tag,
                timeout=timeout,
                max_forwards=forwarded_max_forwards(self.invite.request) or 1,
                from_value=self.caller_from or f"<sip:{self.caller}@{domain}>",
                to_value=f"<sip:{to}@{domain}>",
                answered=self.dialog,
                origin=self.our_sdp.origin,
                max_duration=services.config.sip.max_call_seconds or None,
            )
        except ValueError as exc:
            log.info("cannot move the caller: {err}", err=exc)
            self._after_move()
            return
        runner = BridgeRunner(self, bridge)
        runner.on_finished = self._moved_done
        self.moving = runner
        self._ringback()
        runner.perform(bridge.start())

    def _ringback(self) -> None:
        """The ringing tone on the caller's stream while the new leg rings, cadence after
        cadence; it stops when the leg answers (the stream closes) or fails."""
        if self.moving is None or self.state != "playing" or self.stream.closed:
            return
        codec = self.stream.codec or "PCMU"
        self.stream.play(Player([ringback_cadence(codec)], codec=codec), self._ringback)

    # -- from the bridge (BridgeRunner's owner) ------------------------------------------

    def respond(self, action: RespondCaller) -> None:
        """Never asked: the caller has our 200 already."""

    def answered(self, runner: BridgeRunner, target: Target) -> None:
        log.info(
            "caller of {user} moved to {device}", user=self.user.extension, device=target.device
        )
        self.state = "moved"  # the bridge owns the caller's dialog now
        self.stream.close()

    def not_reached(self, runner: BridgeRunner, result: NotReached) -> None:
        if runner is not self.moving or self.state != "playing":
            return
        log.info("nobody took the caller ({reason})", reason=result.reason)
        self.moving = None
        self.stream.stop()  # the ringing tone
        self._after_move()

    def _moved_done(self) -> None:
        if self.state == "moved":
            self.state = "ended"
            self.manager.forget(self.invite, self)

    def on_end(self) -> None:
        moving, self.moving = self.moving, None
        if moving is not None:
            moving.feed(CallerCancelled())
        session, self.session = self.session, None
        if session is not None:
            session.hangup()
