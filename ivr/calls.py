"""Call control: one controller per call, between SIP dialogs, media and the profile core.

Today the calls it serves are feature-code calls: a device that proves its identity
dials ``*23*2*1300#``; the command is stored (with its audit entry), the call is
answered, the confirmation is played, and we hang up when the prompt ends.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twisted.logger import Logger

from ivr.config import Config, User
from ivr.confirm import confirmation
from ivr.dtmf.events import DigitEvent
from ivr.dtmf.info import CONTENT_TYPES as INFO_CONTENT_TYPES
from ivr.dtmf.info import InfoBodyError, parse_info
from ivr.dtmf.merge import DigitMerger
from ivr.flows import (
    CancelTimer,
    Execute,
    FlowRunner,
    Hangup,
    Play,
    ProfileMenu,
    StartTimer,
    StopPrompt,
)
from ivr.media.prompts import PromptLibrary
from ivr.media.session import MediaEngine, MediaStream, NoFreePort
from ivr.profile_service import ProfileService
from ivr.registration import RegistrationService
from ivr.routing.commands import PROFILE_COMMANDS, CommandResult
from ivr.routing.features import FeatureCommand, Interactive, InvalidCode
from ivr.sip import sdp
from ivr.sip.core import ALLOWED_METHODS, Peer, ServerRequest, SipCore
from ivr.sip.dialog import Dialog, DialogError, DialogTable
from ivr.sip.message import Request, Response
from ivr.sip.transaction import ack_key, tag_of
from ivr.sip.uri import UriError, parse_uri
from ivr.sipapp import log_auth_failure

log = Logger(namespace="ivr.calls")

AGENT = "ivr"


@dataclass(frozen=True, slots=True)
class CallServices:
    """What a call controller needs from the rest of the service."""

    core: SipCore
    config: Config
    auth: RegistrationService
    profiles: ProfileService
    media: MediaEngine
    prompts: PromptLibrary
    rng: random.Random
    now: Callable[[], datetime]
    rtp_host: str
    reactor: Any


class FeatureCall:
    """A feature-code call: execute, answer, confirm by voice, hang up."""

    def __init__(
        self,
        manager: CallManager,
        invite: ServerRequest,
        user: User,
        actor: str,
        stream: MediaStream,
        offer: sdp.SessionDescription | None,
        our_sdp: sdp.SessionDescription,
    ) -> None:
        self.manager = manager
        self.invite = invite
        self.user = user
        self.actor = actor
        self.stream = stream
        self.offer = offer
        self.our_sdp = our_sdp
        self.local_tag = manager.services.rng.getrandbits(48).to_bytes(6, "big").hex()
        self.dialog: Dialog | None = None
        self.words: list[str] = []
        self.state = "executing"
        self.menu: FlowRunner | None = None
        self.digits = DigitMerger()
        self._timers: dict[str, Any] = {}

    # -- answering -----------------------------------------------------------------

    def execute(self, dialled: str) -> None:
        services = self.manager.services
        parsed = services.config.feature_codes.parse(dialled)
        if isinstance(parsed, Interactive):
            clock = services.config.company.clock if self.user.language == "en" else None
            self.menu = FlowRunner(
                ProfileMenu(services.config.rules, self.user.language, clock=clock)
            )
            self._answer(None, None)
            return
        command: FeatureCommand | None = None
        if not isinstance(parsed, InvalidCode) and isinstance(parsed, PROFILE_COMMANDS):
            command = parsed
        if command is None:
            reason = parsed.reason if isinstance(parsed, InvalidCode) else "not available"
            log.info("invalid feature code from {actor}: {reason}", actor=self.actor, reason=reason)
            self._answer(None, None)
            return
        d = services.profiles.execute(self.user.extension, command, actor=self.actor, via="phone")
        d.addCallbacks(lambda result: self._answer(command, result), self._failed)

    def _answer(self, command: FeatureCommand | None, result: CommandResult | None) -> None:
        if self.state != "executing":
            return  # cancelled meanwhile: the core has answered 487
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
        contact = self.manager.contact(self.invite.peer)
        try:
            self.dialog = Dialog.as_uas(self.invite.request, self.local_tag, contact)
        except DialogError as exc:
            self._reject(400, exc.reason)
            return
        self.state = "answered"
        self.manager.dialogs.add(self.dialog)
        self.manager.calls[self.dialog.id] = self
        self.invite.respond(
            200,
            to_tag=self.local_tag,
            headers=[
                ("Contact", contact),
                ("Allow", ", ".join(ALLOWED_METHODS)),
                ("Content-Type", "application/sdp"),
            ],
            body=self.our_sdp.encode(),
        )

    def _failed(self, failure: Any) -> None:
        log.failure("feature code failed for {actor}", failure, actor=self.actor)
        self._reject(500, "Profile change failed")

    def _reject(self, status: int, reason: str) -> None:
        if self.state == "executing":
            self.invite.respond(status, reason)
        self.end()

    # -- in the dialog ---------------------------------------------------------------

    def acked(self, ack: Request) -> None:
        if self.state != "answered":
            return
        if self.offer is None:
            try:
                media = sdp.accept_answer(self.our_sdp, sdp.parse_sdp(ack.body))
                self.stream.apply(media, peer_host=self.invite.peer.host)
            except (sdp.SdpError, ValueError) as exc:
                log.info("bad SDP in ACK from {actor}: {err}", actor=self.actor, err=exc)
                self.hang_up()
                return
        self.state = "playing"
        if self.menu is None:
            self.play(self.words, self.hang_up)
            return
        self.stream.listen_for_digits(self.digit, inband=True)
        self.perform(self.menu.start(self._clock()))

    def play(self, words: Sequence[str], on_done: Callable[[], None]) -> None:
        services = self.manager.services
        codec = self.stream.codec or "PCMU"
        try:
            player = services.prompts.player(self.user.language, words, codec)
        except KeyError as exc:
            log.error("missing prompt: {err}", err=exc)
            self.hang_up()
            return
        self.stream.play(player, on_done=on_done)

    # -- the keypad menu ---------------------------------------------------------------

    def _clock(self) -> float:
        return float(self.manager.services.reactor.seconds())

    def digit(self, event: DigitEvent) -> None:
        """A key press from RFC 4733, SIP INFO or in-band tones (each press once)."""
        if self.menu is None or self.state != "playing" or self.digits.add(event) is None:
            return
        self.perform(self.menu.digit(event, self._clock()))

    def perform(self, actions: Sequence[object]) -> None:
        """Carry out what the menu asks for."""
        for action in actions:
            if self.state != "playing":
                return
            if isinstance(action, Play):
                self.play(action.prompts, self._prompt_finished)
            elif isinstance(action, StopPrompt):
                self.stream.stop()
            elif isinstance(action, StartTimer):
                self._cancel_timer(action.name)
                reactor = self.manager.services.reactor
                self._timers[action.name] = reactor.callLater(
                    action.delay, self._timer_fired, action.name
                )
            elif isinstance(action, CancelTimer):
                self._cancel_timer(action.name)
            elif isinstance(action, Execute):
                self._execute(action.command)
            elif isinstance(action, Hangup):
                self.hang_up()

    def _prompt_finished(self) -> None:
        if self.menu is not None:
            self.perform(self.menu.prompt_finished(self._clock()))

    def _timer_fired(self, name: str) -> None:
        self._timers.pop(name, None)
        if self.menu is not None:
            self.perform(self.menu.timer_fired(name, self._clock()))

    def _cancel_timer(self, name: str) -> None:
        call = self._timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _execute(self, command: FeatureCommand) -> None:
        services = self.manager.services
        d = services.profiles.execute(self.user.extension, command, actor=self.actor, via="ivr")

        def done(result: CommandResult) -> None:
            if self.menu is not None and self.state == "playing":
                self.perform(self.menu.command_done(result, services.now(), self._clock()))

        def failed(failure: Any) -> None:
            log.failure("menu command failed for {actor}", failure, actor=self.actor)
            self.hang_up()

        d.addCallbacks(done, failed)

    def info(self, request: ServerRequest) -> None:
        """SIP INFO in the dialog: a DTMF relay body (RFC 2976 usage)."""
        req = request.request
        try:
            event = parse_info(req.headers.get("content-type") or "", req.body, self._clock())
        except InfoBodyError as exc:
            headers = [("Accept", ", ".join(INFO_CONTENT_TYPES))] if exc.status == 415 else []
            request.respond(exc.status, str(exc)[:120], headers=headers)
            return
        request.respond(200)
        self.digit(event)

    def hang_up(self) -> None:
        """The prompt ended (or cannot play): send BYE, then clean up."""
        if self.state not in ("answered", "playing") or self.dialog is None:
            return
        self.state = "hanging-up"
        for name in list(self._timers):
            self._cancel_timer(name)
        self.stream.stop()
        core = self.manager.services.core
        peer = self.invite.peer
        bye = self.dialog.create_request("BYE", core.ids, core.host, core.port, peer.transport)
        bye.headers.set("via", core.via_value(peer))
        core.send_request(bye, peer, self._bye_answered)

    def _bye_answered(self, response: Response | None) -> None:
        if response is None or response.status >= 200:
            self.end()

    def remote_bye(self, request: ServerRequest) -> None:
        request.respond(200)
        self.end()

    def cancelled(self) -> None:
        self.end()

    def end(self) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        for name in list(self._timers):
            self._cancel_timer(name)
        self.stream.close()
        if self.dialog is not None:
            self.dialog.terminate()
            self.manager.dialogs.remove(self.dialog.id)
            self.manager.calls.pop(self.dialog.id, None)
        self.manager.pending.pop(id(self.invite), None)


class CallManager:
    """Implements the SIP application's call handling (INVITE, ACK, BYE, CANCEL, ...)."""

    def __init__(self, services: CallServices) -> None:
        self.services = services
        self.dialogs = DialogTable()
        self.calls: dict[tuple[str, str, str], FeatureCall] = {}
        self.pending: dict[int, FeatureCall] = {}

    @property
    def active_calls(self) -> int:
        return len({id(c) for c in (*self.calls.values(), *self.pending.values())})

    def contact(self, peer: Peer) -> str:
        core = self.services.core
        host = f"[{core.host}]" if ":" in core.host else core.host
        return f"<sip:{AGENT}@{host}:{core.port};transport={peer.transport}>"

    # -- CallHandler -------------------------------------------------------------------

    def handle_invite(self, request: ServerRequest) -> None:
        req = request.request
        if tag_of(req.headers.get("to") or "") is not None:
            self._reinvite(request)
            return
        try:
            dialled = parse_uri(req.uri).user_decoded or ""
        except UriError as exc:
            request.respond(400, f"Bad Request-URI: {exc}")
            return
        services = self.services
        if not services.config.feature_codes.is_feature_code(dialled):
            request.respond(404, "No such feature code")
            return
        now = services.core.now()
        username, refusal = services.auth.authenticate(req, str(request.peer), now, proxy=True)
        if refusal is not None:
            if refusal.failure is not None:
                log_auth_failure(refusal.failure)
            request.respond(refusal.reply.status, headers=refusal.reply.headers)
            return
        found = services.config.device_by_username(username or "")
        if found is None:
            request.respond(403, "Unknown device")
            return
        user, _device = found
        self._start(request, dialled, user, username or "")

    def _start(self, request: ServerRequest, dialled: str, user: User, actor: str) -> None:
        req = request.request
        services = self.services
        offer = None
        if req.body:
            kind = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
            if kind != "application/sdp":
                request.respond(415, headers=[("Accept", "application/sdp")])
                return
            try:
                offer = sdp.parse_sdp(req.body)
            except sdp.SdpError as exc:
                request.respond(400, f"Bad SDP: {exc}"[:120])
                return
        try:
            stream = services.media.open_stream(peer_host=request.peer.host)
        except NoFreePort:
            request.respond(503, "No media port free")
            return
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
            return
        call = FeatureCall(self, request, user, actor, stream, offer, ours)
        self.pending[id(request)] = call
        call.execute(dialled)

    def _reinvite(self, request: ServerRequest) -> None:
        try:
            dialog = self.dialogs.lookup(request.request)
        except DialogError as exc:
            request.respond(exc.status or 481)
            return
        call = self.calls.get(dialog.id) if dialog is not None else None
        if call is None:
            request.respond(481)
            return
        request.respond(
            200,
            headers=[("Contact", self.contact(request.peer)), ("Content-Type", "application/sdp")],
            body=call.our_sdp.encode(),
        )

    def handle_in_dialog(self, request: ServerRequest) -> bool:
        try:
            dialog = self.dialogs.lookup(request.request)
        except DialogError as exc:
            request.respond(exc.status or 481)
            return True
        if dialog is None:
            return False
        problem = dialog.receive_request(request.request)
        if problem is not None:
            request.respond(500, problem)
            return True
        call = self.calls.get(dialog.id)
        method = request.request.method
        if method == "BYE" and call is not None:
            call.remote_bye(request)
        elif method == "INFO" and call is not None and request.request.body:
            call.info(request)
        else:
            request.respond(200)
        return True

    def handle_ack(self, request: Request, peer: Peer) -> None:
        dialog = self.dialogs.find_request(request)
        call = self.calls.get(dialog.id) if dialog is not None else None
        if call is not None:
            call.acked(request)

    def handle_cancel(self, cancelled: ServerRequest) -> None:
        call = self.pending.get(id(cancelled))
        if call is not None:
            call.cancelled()

    def handle_ack_timeout(self, response: Response) -> None:
        call_id, remote_tag, local_tag, _ = ack_key(response)
        call = self.calls.get((call_id, local_tag or "", remote_tag or ""))
        if call is not None:
            call.hang_up()
