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

from twisted.logger import Logger

from ivr.config import User
from ivr.confirm import confirmation
from ivr.dtmf.events import DigitEvent
from ivr.dtmf.info import CONTENT_TYPES as INFO_CONTENT_TYPES
from ivr.dtmf.info import InfoBodyError, parse_info
from ivr.dtmf.merge import DigitMerger
from ivr.flows import CancelTimer as FlowCancelTimer
from ivr.flows import Execute, FlowRunner, Hangup, Play, ProfileMenu, StopPrompt
from ivr.flows import StartTimer as FlowStartTimer
from ivr.media import phrases
from ivr.media.session import MediaStream, NoFreePort
from ivr.routing import decide as routing
from ivr.routing.commands import PROFILE_COMMANDS, CommandResult
from ivr.routing.features import FeatureCommand, Interactive, InvalidCode
from ivr.sip import sdp
from ivr.sip.core import ALLOWED_METHODS, ServerRequest
from ivr.sip.dialog import Dialog, DialogError
from ivr.sip.message import Request, Response
from ivr.voicemail import VoicemailSession

if TYPE_CHECKING:
    from ivr.calls import CallManager, CallServices

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
        if self.state != "hanging-up":
            self.on_end()
        self.state = "ended"
        self.stream.close()
        if self.dialog is not None:
            self.dialog.terminate()
            self.manager.untrack(self.dialog.id)
        self.manager.forget(self.invite, self)


class FeatureCall(MediaCall):
    """A feature-code call: execute, answer, confirm by voice, hang up."""

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
        self.digits = DigitMerger()
        self._timers: dict[str, Any] = {}

    def execute(self, dialled: str) -> None:
        services = self.manager.services
        parsed = services.config.feature_codes.parse(dialled)
        if isinstance(parsed, Interactive):
            clock = services.config.company.clock if self.user.language == "en" else None
            self.menu = FlowRunner(
                ProfileMenu(services.config.rules, self.user.language, clock=clock)
            )
            self._confirm(None, None)
            return
        command: FeatureCommand | None = None
        if not isinstance(parsed, InvalidCode) and isinstance(parsed, PROFILE_COMMANDS):
            command = parsed
        if command is None:
            reason = parsed.reason if isinstance(parsed, InvalidCode) else "not available"
            log.info("invalid feature code from {actor}: {reason}", actor=self.actor, reason=reason)
            self._confirm(None, None)
            return
        d = services.profiles.execute(self.user.extension, command, actor=self.actor, via="phone")
        d.addCallbacks(lambda result: self._confirm(command, result), self._failed)

    def _confirm(self, command: FeatureCommand | None, result: CommandResult | None) -> None:
        services = self.manager.services
        company = services.config.company
        self.words = confirmation(
            command,
            result,
            rules=services.config.rules,
            lang=self.user.language,
            clock=company.clock if self.user.language == "en" else None,
            now=services.now(),
        )
        self.answer()

    def _failed(self, failure: Any) -> None:
        log.failure("feature code failed for {actor}", failure, actor=self.actor)
        self.reject(500, "Profile change failed")

    def confirmed(self) -> None:
        if self.menu is None:
            self.play(self.words, self.hang_up)
            return
        self.stream.listen_for_digits(self.digit, inband=True)
        self.perform(self.menu.start(self.clock()))

    # -- the keypad menu ---------------------------------------------------------------

    def digit(self, event: DigitEvent) -> None:
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
        d = services.profiles.execute(self.user.extension, command, actor=self.actor, via="ivr")

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


class Announcement(MediaCall):
    """We answer for the user: the spoken redirect and/or voicemail, then hang up."""

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
    ) -> None:
        super().__init__(manager, invite, user.language, media)
        self.decision = decision
        self.user = user
        self.caller = caller
        self.dialled = dialled
        self.redirecting = False
        self.session: VoicemailSession | None = None
        self.digits = DigitMerger()

    def confirmed(self) -> None:
        self.stream.listen_for_digits(self.digit, inband=True)
        decision = self.decision
        if isinstance(decision, routing.Redirect):
            self.redirecting = True
            self.play(self._redirect_words(decision), self._redirect_done)
        else:
            self._then(decision, announce=True)

    def _redirect_words(self, decision: routing.Redirect) -> list[str]:
        services = self.manager.services
        company = services.config.company
        back: datetime | date | None = decision.back
        if back is not None and decision.profile.returns == "date":
            back = company.calendar.local(back).date()  # "åter måndag den fjärde januari"
        return phrases.redirect(
            self.user.extension,
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

    def _then(self, decision: routing.Decision, *, announce: bool) -> None:
        if isinstance(decision, routing.Voicemail):
            self._voicemail(decision.box, announce)
            return
        # Forwarding an answered call needs media bridging: it comes with the trunk work.
        log.info("after the redirect: {step}, hanging up", step=decision.explain())
        self.hang_up()

    def _voicemail(self, box: str, announce: bool) -> None:
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
        )
        self.session = session
        session.start()

    def _voicemail_done(self, message_id: int | None) -> None:
        log.info("voicemail for {box}: message {id}", box=self.user.extension, id=message_id)
        self.session = None
        self.hang_up()

    def digit(self, event: DigitEvent) -> None:
        """2 or # during the redirect: straight on (to voicemail)."""
        if self.session is not None:
            self.session.digit(event)
            return
        if not self.redirecting or self.state != "playing" or self.digits.add(event) is None:
            return
        if event.digit in "2#":
            self.stream.stop()
            self._redirect_done()

    def on_end(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.hangup()
