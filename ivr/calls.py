"""Call control: one controller per call, between SIP dialogs, media and the profile core.

:class:`CallManager` is the SIP application's call handler. Every INVITE comes from a
device that proves its identity (407 digest challenge), or from the trunk (a trusted
address in ``sip.trusted_peers``: a call from the public network to a user's DID or
mobile number, the caller being the From number); then:

- **feature codes** (``*23*2*1300#``): the call is answered at once, the command is
  stored (with its audit entry) when the caller ACKs, the confirmation is played, and we
  hang up (:class:`ivr.media_calls.FeatureCall`);
- **calls to a user** (extension, DID or mobile number): the routing core decides from
  the user's profile (:class:`ivr.user_calls.UserCall`); a ring forks to every
  registered contact of the named devices through the pure B2BUA core (:mod:`ivr.b2bua`);
  a spoken redirect and voicemail are answered by us
  (:class:`ivr.media_calls.Announcement`); Stör ej is 486; a forward routes again, or
  goes out through the trunk (:mod:`ivr.trunk`: allow-list, Diversion); a mobile device
  (MEX) rings through the trunk;
- **outgoing calls** (a device dials a public number): through the trunk, showing the
  caller-ID the active profile sets for that device kind.

In-dialog requests and ACKs go to the dialog's owner (:class:`DialogOwner`); a CANCEL to
whoever holds the unanswered INVITE (:class:`Pending`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ivr.b2bua import Target, contact_uri, forwarded_max_forwards, loops_back, target_for
from ivr.call_records import RecordIds
from ivr.config import Config, User
from ivr.directory import Directory
from ivr.directory_service import DirectoryService
from ivr.dtmf.merge import DigitMerger
from ivr.logs import Logger
from ivr.media.prompts import PromptLibrary
from ivr.media.session import MediaEngine
from ivr.media_calls import FeatureCall, open_media
from ivr.metrics import CallCounters
from ivr.overload import OverloadGuard
from ivr.profile_service import ProfileService
from ivr.queue_calls import QueueCall, QueueService
from ivr.registration import RegistrationService
from ivr.routing.model import Device
from ivr.sip.core import Peer, ServerRequest, SipCore
from ivr.sip.dialog import Dialog, DialogError, DialogId, DialogTable
from ivr.sip.headers import parse_name_addr
from ivr.sip.message import Request, Response, SipParseError
from ivr.sip.registrar import Registrar
from ivr.sip.transaction import ack_key, tag_of
from ivr.sip.uri import UriError, parse_uri
from ivr.sipapp import log_auth_failure
from ivr.trunk import external_number
from ivr.user_calls import UserCall

log = Logger(namespace="ivr.calls")


@dataclass(frozen=True, slots=True)
class CallServices:
    """What a call controller needs from the rest of the service. ``config`` is the live
    directory's current snapshot: read it at the moment of use, never keep it."""

    core: SipCore
    directory: Directory
    auth: RegistrationService
    profiles: ProfileService
    media: MediaEngine
    prompts: PromptLibrary
    rng: random.Random
    now: Callable[[], datetime]
    rtp_host: str
    reactor: Any
    registrar: Registrar | None = None
    store: Any = None  # where voicemail goes (ivr.voicemail.VoicemailSink)
    directory_service: DirectoryService | None = None  # commits phone-made directory changes
    counters: CallCounters = field(default_factory=CallCounters)  # for /metrics
    overload: OverloadGuard = field(default_factory=OverloadGuard)  # sheds new calls when late

    def digit_merger(self) -> DigitMerger:
        """A call's merger of DTMF sources, counting the presses it passes."""
        return DigitMerger(on_press=lambda event: self.counters.digit(event.source))

    @property
    def config(self) -> Config:
        """The current configuration snapshot (changes when the directory is edited)."""
        return self.directory.config


class DialogOwner(Protocol):
    """Whoever answers a dialog's in-dialog requests and ACKs."""

    def in_dialog(self, request: ServerRequest, dialog: Dialog) -> None: ...
    def acked(self, ack: Request, dialog: Dialog) -> None: ...
    def ack_timed_out(self, dialog: Dialog) -> None: ...


class Pending(Protocol):
    """An INVITE not answered yet: the caller may still CANCEL it."""

    def cancelled(self) -> None: ...


class CallManager:
    """Implements the SIP application's call handling (INVITE, ACK, BYE, CANCEL, ...)."""

    def __init__(self, services: CallServices) -> None:
        self.services = services
        self.dialogs = DialogTable()
        self.owners: dict[DialogId, DialogOwner] = {}
        self.pending: dict[int, Pending] = {}
        self._on_end: dict[int, tuple[object, Callable[[], None]]] = {}
        self.record_ids = RecordIds(services.rng)  # call record ids
        self.queues = QueueService(services.profiles)  # *45/*46, queue calls

    @property
    def active_calls(self) -> int:
        return len({id(c) for c in (*self.owners.values(), *self.pending.values())})

    def contact(self, peer: Peer) -> str:
        core = self.services.core
        return contact_uri(core.host, core.port, peer.transport)

    def track(self, dialog: Dialog, owner: DialogOwner) -> None:
        self.dialogs.add(dialog)
        self.owners[dialog.id] = owner

    def untrack(self, dialog_id: DialogId) -> None:
        self.dialogs.remove(dialog_id)
        self.owners.pop(dialog_id, None)

    def forget(self, invite: ServerRequest, owner: object) -> None:
        """``invite`` is no longer ``owner``'s to answer."""
        if self.pending.get(id(invite)) is owner:
            del self.pending[id(invite)]
        hook = self._on_end.get(id(invite))
        if hook is not None and hook[0] is owner:
            del self._on_end[id(invite)]
            hook[1]()

    def when_ended(
        self, invite: ServerRequest, owner: object, callback: Callable[[], None]
    ) -> None:
        """Call ``callback`` when ``owner`` (which answers ``invite``, e.g. an
        :class:`~ivr.media_calls.Announcement`) is done with it (its :meth:`forget`)."""
        self._on_end[id(invite)] = (owner, callback)

    # -- where users are -------------------------------------------------------------------

    def _bindings(self, device: Device) -> list[Any]:
        registrar = self.services.registrar
        if registrar is None or not device.is_sip:
            return []
        aor = f"sip:{device.username}@{self.services.config.sip.domain}"
        return registrar.lookup(aor, self.services.core.now())

    def online(self, user: User) -> frozenset[str]:
        """The ids of the user's SIP devices with a live registration."""
        return frozenset(d.id for d in user.devices if self._bindings(d))

    def targets(self, devices: Sequence[Device]) -> list[Target]:
        """Every registered contact of ``devices`` (mobiles need the trunk: none yet)."""
        found: list[Target] = []
        for device in devices:
            for binding in self._bindings(device):
                target = target_for(binding.contact, binding.source, device.id)
                if target is not None:
                    found.append(target)
        return found

    # -- CallHandler -------------------------------------------------------------------

    def handle_invite(self, request: ServerRequest) -> None:
        req = request.request
        if tag_of(req.headers.get("to") or "") is not None:
            if not self.handle_in_dialog(request):
                request.respond(481)
            return
        overload = self.services.overload
        if overload.overloaded:  # calls in progress come first (RFC 3261 §21.5.4)
            retry = [("Retry-After", str(overload.retry_after))]
            request.respond(503, "Overloaded", headers=retry)
            self.services.counters.calls.inc(outcome="overloaded")
            return
        try:
            dialled = parse_uri(req.uri).user_decoded or ""
        except UriError as exc:
            request.respond(400, f"Bad Request-URI: {exc}")
            return
        services = self.services
        core = services.core
        if loops_back(req, core.host, core.port):
            request.respond(482, "Loop Detected")
            return
        if services.config.sip.is_trusted(request.peer.host):
            self._trunk_call(request, dialled)
            return
        now = core.now()
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
        user, device = found
        if services.config.feature_codes.is_feature_code(dialled):
            self._feature_call(request, dialled, user, username or "")
        elif services.config.user_by_number(dialled) is None and (
            number := external_number(dialled, services.config.company.numbers)
        ):
            self._outgoing_call(request, number, user, device.kind)
        else:
            self._user_call(request, dialled, user, device.kind)

    def _trunk_call(self, request: ServerRequest, dialled: str) -> None:
        """An INVITE from a trusted trunk address: no digest; the caller is the From
        number, the Request-URI a DID or mobile number (any format) of a user."""
        config = self.services.config
        callee = config.user_by_number(dialled)
        if callee is None:
            request.respond(404, "No such number")
            return
        hops = forwarded_max_forwards(request.request)
        if hops is None:
            request.respond(483)
            return
        number, display = "anonymous", None
        try:
            sender = parse_name_addr(request.request.headers.get("from") or "")
            number = config.company.numbers.canonical(sender.uri.user_decoded or "") or number
            display = sender.display_text
        except SipParseError:
            pass
        call = UserCall(self, request, None, hops, number=number, display=display)
        call.route(callee, dialled)

    def _outgoing_call(self, request: ServerRequest, number: str, caller: User, kind: str) -> None:
        """A user's device dials a public number: out through the trunk."""
        hops = forwarded_max_forwards(request.request)
        if hops is None:
            request.respond(483)
            return
        UserCall(self, request, caller, hops).dial_out(number, kind)

    def _feature_call(self, request: ServerRequest, dialled: str, user: User, actor: str) -> None:
        media = open_media(self.services, request)
        if media is not None:
            FeatureCall(self, request, user, actor, media).execute(dialled)

    def _user_call(self, request: ServerRequest, dialled: str, caller: User, kind: str) -> None:
        callee = self.services.config.user_by_number(dialled)
        queue = self.services.config.queue_by_number(dialled)
        if callee is None and queue is None:
            request.respond(404, "No such user")
            return
        hops = forwarded_max_forwards(request.request)
        if hops is None:
            request.respond(483)
            return
        if queue is not None:
            QueueCall(self, request, caller, hops, queue, kind=kind).start(self.queues)
            return
        assert callee is not None
        UserCall(self, request, caller, hops, kind=kind).route(callee, dialled)

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
        owner = self.owners.get(dialog.id)
        if owner is None:
            request.respond(481)
        else:
            owner.in_dialog(request, dialog)
        return True

    def handle_ack(self, request: Request, peer: Peer) -> None:
        dialog = self.dialogs.find_request(request)
        owner = self.owners.get(dialog.id) if dialog is not None else None
        if owner is not None and dialog is not None:
            owner.acked(request, dialog)

    def handle_cancel(self, cancelled: ServerRequest) -> None:
        call = self.pending.get(id(cancelled))
        if call is not None:
            call.cancelled()

    def handle_ack_timeout(self, response: Response) -> None:
        call_id, remote_tag, local_tag, _ = ack_key(response)
        dialog_id = (call_id, local_tag or "", remote_tag or "")
        dialog = self.dialogs.get(dialog_id)
        owner = self.owners.get(dialog_id)
        if owner is not None and dialog is not None:
            owner.ack_timed_out(dialog)
