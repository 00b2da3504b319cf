"""The B2BUA core: fork a caller's INVITE to a user's devices and bridge the winner.

Pure (no Twisted, no sockets, no clock): one :class:`Bridge` per ring attempt. The
adapter feeds it events (:class:`Responded`, :class:`TimerFired`, :class:`CallerCancelled`,
:class:`AckReceived`, :class:`RequestReceived`, :class:`AckTimedOut`) and performs the
actions it returns (:class:`Send`, :class:`SendAck`, :class:`RespondCaller`,
:class:`Reply`, :class:`StartTimer`, :class:`CancelTimer`, :class:`Track`,
:class:`Untrack`, :class:`Answered`, :class:`NotReached`, :class:`Finished`).

Every leg is a new dialog of its own (Call-ID, tags, Via from ``ids``); SDP passes
through untouched. The first 2xx wins: it is ACKed, relayed to the caller, and the
other legs are CANCELled (or, if they answer anyway, ACKed and sent BYE). When every
leg fails, a leg declines with 6xx or the ring timer fires, :class:`NotReached` tells
the adapter to go on with the plan. Once answered, BYE ends both sides and re-INVITE,
UPDATE, INFO (and any other in-dialog request) are relayed to the other side.

A bridge may also start from a caller we have already answered ourselves (``answered``:
our confirmed dialog with the caller, e.g. a key press during the spoken redirect moves
the caller to the user's mobile). Then the legs get an INVITE without SDP and the media
is connected as in RFC 3725 flow I: the winner's offer (in its 200) reaches the caller
in a re-INVITE, and the caller's answer goes back to the winner in the ACK (RFC 3261
§13.2.2.4: an ACK to a 2xx with an offer carries the answer; when the caller refuses,
the ACK declines every stream and BYE follows). Every SDP the caller gets from then on
keeps our ``o=`` line with its version counting up (RFC 3264 §8: one origin per session).

Transitions live in one table keyed by (bridge state, event kind).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from ivr.sip.core import ALLOWED_METHODS, Peer
from ivr.sip.dialog import Dialog, DialogError, DialogId
from ivr.sip.headers import parse_cseq, parse_vias
from ivr.sip.ids import Ids
from ivr.sip.message import Headers, Request, Response, SipParseError
from ivr.sip.sdp import Origin
from ivr.sip.transaction import CancelTimer, StartTimer
from ivr.sip.uri import UriError, parse_uri

__all__ = [
    "CALL_TIMER",
    "RING_TIMER",
    "AckReceived",
    "AckTimedOut",
    "Action",
    "Answered",
    "Bridge",
    "CallLimitReached",
    "CallerCancelled",
    "CancelTimer",
    "Event",
    "Finished",
    "Local",
    "NotReached",
    "Ref",
    "Reply",
    "RequestReceived",
    "RespondCaller",
    "Responded",
    "Send",
    "SendAck",
    "StartTimer",
    "Target",
    "TimerFired",
    "Track",
    "Untrack",
    "cancel_request",
    "contact_uri",
    "declining_answer",
    "forwarded_max_forwards",
    "loops_back",
    "target_for",
]

Side = Literal["caller", "callee"]
CALLER: Side = "caller"
CALLEE: Side = "callee"
RING_TIMER = "ring"
CALL_TIMER = "call"  # the longest a bridged call may last (a lost BYE must not leave it up)
DEFAULT_MAX_FORWARDS = 70

# Headers carried from one side's request or response to the other's.
_INVITE_COPIED = ("content-type", "content-disposition", "subject", "priority")
_NO_BODY = ("subject", "priority")
_REQUEST_COPIED = ("content-type", "content-disposition", "info-package", "event")
_RESPONSE_COPIED = ("content-type", "content-disposition", "retry-after")
_ALLOW = ", ".join(ALLOWED_METHODS)
_ORIGIN_LINE = re.compile(rb"^o=[^\r\n]*", re.M)

# Bridge states.
RINGING = "ringing"
UP = "up"
ENDING = "ending"
ENDED = "ended"
FAILED = "failed"
CANCELLED = "cancelled"

# Leg states.
CALLING = "calling"  # INVITE sent, nothing heard: CANCEL must wait (§9.1)
EARLY = "early"  # a provisional response came
CANCELLING = "cancelling"
WINNER = "winner"
CLEARING = "clearing"  # answered too late: ACKed, BYE sent
DONE = "done"


# -- values ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One registered contact of a device to ring: its URI and where to send.

    A trunk leg (:mod:`ivr.trunk`) brings its own ``to_value``/``from_value`` (None: the
    bridge's) and extra ``headers`` (P-Asserted-Identity, Privacy, Diversion)."""

    uri: str
    peer: Peer
    device: str
    to_value: str | None = None
    from_value: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Ref:
    """What a sent request was, so its responses find their way back.

    ``kind``: ``invite`` (a leg's INVITE, ``index`` = leg), ``leg-bye`` (BYE to a leg that
    answered too late), ``relay`` (an in-dialog request relayed, ``index`` = relay id),
    ``bye`` (ending the call, ``index`` 0 = caller side, 1 = callee side), ``moved`` (the
    re-INVITE that moves an answered caller to the winner)."""

    kind: Literal["invite", "leg-bye", "relay", "bye", "moved"]
    index: int


# -- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Responded:
    """A response to a request the bridge sent; None: its transaction timed out or failed."""

    ref: Ref
    response: Response | None


@dataclass(frozen=True, slots=True)
class TimerFired:
    name: str


@dataclass(frozen=True, slots=True)
class CallerCancelled:
    """The caller CANCELled its INVITE (the core has answered 487)."""


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK for a 2xx, from ``side``."""

    side: Side
    ack: Request


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """An in-dialog request from ``side``; answer it with :class:`Reply` on ``token``."""

    side: Side
    request: Request
    token: object


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """A 2xx we sent to ``side`` was never ACKed."""

    side: Side


Event = Responded | TimerFired | CallerCancelled | AckReceived | RequestReceived | AckTimedOut


# -- actions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``request`` through a client transaction; feed its responses back with ``ref``
    (None: nobody listens, as for CANCEL)."""

    request: Request
    peer: Peer
    ref: Ref | None


@dataclass(frozen=True, slots=True)
class SendAck:
    """An ACK for a 2xx, straight to the transport."""

    ack: Request
    peer: Peer


@dataclass(frozen=True, slots=True)
class RespondCaller:
    """Answer the caller's INVITE (with the bridge's To-tag)."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the in-dialog request that came with ``token``."""

    token: object
    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Track:
    """Route in-dialog requests and ACKs of ``dialog`` to this bridge, from ``side``."""

    dialog: Dialog
    side: Side


@dataclass(frozen=True, slots=True)
class Untrack:
    dialog_id: DialogId


@dataclass(frozen=True, slots=True)
class Answered:
    """``target`` answered; the caller has its 200."""

    target: Target


@dataclass(frozen=True, slots=True)
class CallLimitReached:
    """The call lasted ``max_duration``: the bridge is ending it (BYE to both sides)."""


@dataclass(frozen=True, slots=True)
class NotReached:
    """Nobody answered: go on with the plan. ``statuses`` per leg (408 for no answer)."""

    statuses: tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Finished:
    """Nothing is left to do: the bridge can be forgotten."""


Action = (
    Send
    | SendAck
    | RespondCaller
    | Reply
    | StartTimer
    | CancelTimer
    | Track
    | Untrack
    | Answered
    | CallLimitReached
    | NotReached
    | Finished
)


# -- helpers ---------------------------------------------------------------------------


def contact_uri(host: str, port: int, transport: str) -> str:
    """Our Contact for a dialog over ``transport``."""
    shown = f"[{host}]" if ":" in host else host
    return f"<sip:ivr@{shown}:{port};transport={transport}>"


def _via(host: str, port: int, transport: str, ids: Ids) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"SIP/2.0/{transport.upper()} {shown}:{port};branch={ids.branch()};rport"


def max_forwards(request: Request) -> int:
    """The request's Max-Forwards (70 when absent or unreadable)."""
    value = (request.headers.get("max-forwards") or "").strip()
    return int(value) if value.isdigit() else DEFAULT_MAX_FORWARDS


def forwarded_max_forwards(request: Request, hops: int = 1) -> int | None:
    """Max-Forwards for the next hop after ``hops`` of ours; None: answer 483 (it would hit 0)."""
    left = max_forwards(request) - hops
    return left if left > 0 else None


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host.lower()


def loops_back(request: Request, host: str, port: int) -> bool:
    """Whether ``request`` already passed through us: one of its Vias is ours (→ 482)."""
    ours = (_bare(host), port)
    for value in request.headers.values("via"):
        try:
            vias = parse_vias(value)
        except SipParseError:
            continue
        if any((_bare(v.host), v.port or 5060) == ours for v in vias):
            return True
    return False


def target_for(contact: str, source: str, device: str) -> Target | None:
    """Where to send for a binding: UDP to the contact's host and port; TCP over the
    connection the device registered on (``source`` is ``tcp:host:port``)."""
    try:
        uri = parse_uri(contact)
    except UriError:
        return None
    if uri.scheme not in ("sip", "sips") or not uri.host:
        return None
    transport = (uri.param("transport") or "udp").lower()
    if transport == "udp":
        return Target(contact, Peer("udp", _bare(uri.host), uri.port or 5060), device)
    kind, _, rest = source.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != transport or not port.isdigit():
        return None
    return Target(contact, Peer(transport, _bare(host), int(port)), device)


def cancel_request(invite: Request) -> Request:
    """The CANCEL for ``invite`` (§9.1): same Request-URI, top Via, From, To, Call-ID, Route."""
    src = invite.headers
    number = parse_cseq(src.get("cseq") or "").number
    items = [
        ("via", src.values("via")[0]),
        ("max-forwards", src.get("max-forwards") or str(DEFAULT_MAX_FORWARDS)),
        ("from", src.get("from") or ""),
        ("to", src.get("to") or ""),
        ("call-id", invite.call_id),
        ("cseq", f"{number} CANCEL"),
    ]
    items.extend(("route", value) for value in src.values("route"))
    return Request("CANCEL", invite.uri, Headers(items))


def declining_answer(offer: bytes) -> bytes:
    """An SDP answer that rejects every stream of ``offer`` (port 0, RFC 3264 §6): what
    an ACK carries when the offer in a 2xx cannot be accepted, before the BYE."""
    lines = offer.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for line in lines:
        if line.startswith("m="):
            media, _, after = line[2:].partition(" ")
            kept.append(f"m={media} 0 {after.partition(' ')[2]}".rstrip())
        elif line[:2] in ("v=", "o=", "s=", "c=", "t="):
            kept.append(line)
    return ("\r\n".join(kept) + "\r\n").encode()


def _copied(headers: Headers, names: Sequence[str]) -> list[tuple[str, str]]:
    return [(n, v) for n, v in headers if n in names]


# -- the bridge ------------------------------------------------------------------------


@dataclass(slots=True)
class _Leg:
    index: int
    target: Target
    invite: Request
    state: str = CALLING
    cancel_wanted: bool = False
    status: int | None = None
    dialog: Dialog | None = None
    ack: Request | None = None


@dataclass(slots=True)
class _Relay:
    """An in-dialog request from ``side`` relayed to the other side."""

    token: object
    side: Side
    method: str
    offer: bool
    replied: bool = False
    ack: Request | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Local:
    """Who we are on the wire: the SIP address our Vias and Contacts name."""

    host: str
    port: int
    ids: Ids


@dataclass(slots=True)
class _Deferred:
    """A 2xx from ``side`` whose ACK waits for the other side's ACK (it carries the answer)."""

    side: Side
    relay: _Relay | None = None


class Bridge:
    """One caller's INVITE forked to ``targets``, then the two dialogs bridged.

    ``from_value``/``to_value`` are the legs' From (without tag) and To; ``local_tag`` is
    our To-tag toward the caller; ``max_forwards`` is what the legs carry (already
    decremented); ``answered``: our confirmed dialog with a caller we answered already,
    ``origin`` the ``o=`` of the SDP we gave it. ``start()`` returns the first actions.
    """

    def __init__(
        self,
        caller_invite: Request,
        caller_peer: Peer,
        targets: Sequence[Target],
        *,
        local: Local,
        local_tag: str,
        timeout: float,
        max_forwards: int,
        from_value: str,
        to_value: str,
        answered: Dialog | None = None,
        origin: Origin | None = None,
        max_duration: float | None = None,
    ) -> None:
        if not targets:
            raise ValueError("a bridge needs at least one target")
        if max_forwards < 1:
            raise ValueError("max_forwards must be positive (answer 483 instead)")
        self.local = local
        self.caller_invite = caller_invite
        self.caller_peer = caller_peer
        self.local_tag = local_tag
        self.timeout = timeout
        self.max_forwards = max_forwards
        self.max_duration = max_duration  # seconds after the answer; None: no limit
        self.answered = answered is not None
        self.caller_dialog = answered or Dialog.as_uas(
            caller_invite, local_tag, self._contact(caller_peer.transport)
        )
        self._moved_ack: Request | None = None
        self._moved_offer = b""  # the winner's offer, when it answers an answered caller
        self._origin = origin  # our last o= toward an answered caller
        self.legs = [
            _Leg(i, t, self._leg_invite(t, from_value, to_value)) for i, t in enumerate(targets)
        ]
        self.state = RINGING
        self.winner: _Leg | None = None
        self.finished = False
        self._ringing_sent = False
        self._early_media = False
        self._relays: dict[int, _Relay] = {}
        self._deferred: dict[Side, _Deferred] = {}
        self._byes: set[Side] = set()

    # -- building requests ---------------------------------------------------------

    def _contact(self, transport: str) -> str:
        return contact_uri(self.local.host, self.local.port, transport)

    def _leg_invite(self, target: Target, from_value: str, to_value: str) -> Request:
        local, caller = self.local, self.caller_invite
        transport = target.peer.transport
        items = [
            ("via", _via(local.host, local.port, transport, local.ids)),
            ("max-forwards", str(self.max_forwards)),
            ("from", f"{target.from_value or from_value};tag={local.ids.tag()}"),
            ("to", target.to_value or to_value),
            ("call-id", local.ids.call_id(local.host)),
            ("cseq", "1 INVITE"),
            ("contact", self._contact(transport)),
            ("allow", _ALLOW),
            *_copied(caller.headers, _INVITE_COPIED if not self.answered else _NO_BODY),
            *target.headers,
        ]
        # An answered caller's offer is spent: the leg offers, the caller answers (flow I).
        return Request("INVITE", target.uri, Headers(items), b"" if self.answered else caller.body)

    def _in_dialog(self, dialog: Dialog, method: str, peer: Peer) -> Request:
        local = self.local
        request = dialog.create_request(method, local.ids, local.host, local.port, peer.transport)
        request.headers.set("via", _via(local.host, local.port, peer.transport, local.ids))
        return request

    def _as_ours(self, body: bytes, content_type: str | None) -> bytes:
        """SDP for an answered caller under our origin, the next version of it (other
        bodies as they are)."""
        origin = self._origin
        kind = (content_type or "application/sdp").split(";")[0].strip().lower()
        if origin is None or not body or kind != "application/sdp":
            return body
        version = int(origin.version) + 1 if origin.version.isdigit() else 1
        self._origin = origin = replace(origin, version=str(version))
        return _ORIGIN_LINE.sub(origin.line().encode(), body, count=1)

    def _side(self, side: Side) -> tuple[Dialog, Peer]:
        if side == CALLER:
            return self.caller_dialog, self.caller_peer
        assert self.winner is not None and self.winner.dialog is not None
        return self.winner.dialog, self.winner.target.peer

    # -- input -----------------------------------------------------------------------

    def start(self) -> list[Action]:
        """Send every leg's INVITE and start the ring timer."""
        actions: list[Action] = [
            Send(leg.invite, leg.target.peer, Ref("invite", leg.index)) for leg in self.legs
        ]
        actions.append(StartTimer(RING_TIMER, self.timeout))
        return actions

    def handle(self, event: Event) -> list[Action]:
        """One event in, the actions it causes out."""
        kind = _kind(event)
        handler = _TABLE.get((self.state, kind))
        if handler is None:
            raise ValueError(f"bridge in state {self.state} has no transition for {kind}")
        return handler(self, event)

    # -- legs ------------------------------------------------------------------------

    def _invite_response(self, event: Responded) -> list[Action]:
        leg = self.legs[event.ref.index]
        response = event.response
        if response is None:
            return self._leg_failed(leg, 408)
        if response.status < 200:
            return self._leg_provisional(leg, response)
        if response.status < 300:
            return self._leg_answered(leg, response)
        return self._leg_failed(leg, response.status)

    def _leg_provisional(self, leg: _Leg, response: Response) -> list[Action]:
        if leg.state == CALLING:
            leg.state = EARLY
            if leg.cancel_wanted:
                return self._cancel(leg)
        if self.state != RINGING or leg.state != EARLY or response.status == 100 or self.answered:
            return []
        headers = [("contact", self._contact(self.caller_peer.transport)), ("allow", _ALLOW)]
        if response.status == 183 and response.body and not self._early_media:
            self._early_media = self._ringing_sent = True
            headers += _copied(response.headers, _RESPONSE_COPIED)
            return [RespondCaller(183, None, tuple(headers), response.body)]
        if response.status in (180, 183) and not self._ringing_sent:
            self._ringing_sent = True
            return [RespondCaller(180, None, tuple(headers))]
        return []

    def _leg_answered(self, leg: _Leg, response: Response) -> list[Action]:
        if leg.state in (WINNER, CLEARING, DONE):
            return [SendAck(leg.ack, leg.target.peer)] if leg.ack is not None else []
        try:
            leg.dialog = Dialog.as_uac(leg.invite, response)
        except DialogError:
            return self._leg_failed(leg, 502)
        if self.state != RINGING:
            return self._clear(leg)
        return self._win(leg, response)

    def _clear(self, leg: _Leg) -> list[Action]:
        """A leg answered after another won (or after we gave up): ACK it, then BYE."""
        assert leg.dialog is not None
        peer = leg.target.peer
        leg.state = CLEARING
        leg.ack = self._in_dialog(leg.dialog, "ACK", peer)
        bye = self._in_dialog(leg.dialog, "BYE", peer)
        return [SendAck(leg.ack, peer), Send(bye, peer, Ref("leg-bye", leg.index))]

    def _win(self, leg: _Leg, response: Response) -> list[Action]:
        assert leg.dialog is not None
        if self.answered and not response.body:  # a 2xx to an offer-less INVITE must offer
            leg.status = 488
            actions = self._clear(leg)
            if all(other.state in (DONE, CLEARING) for other in self.legs):
                actions += self._give_up("no offer in the answer")
            return actions
        self.state = UP
        self.winner = leg
        leg.state = WINNER
        if self.answered:
            return self._move(leg, response)
        actions: list[Action] = [CancelTimer(RING_TIMER), *self._limit()]
        if self.caller_invite.body:
            leg.ack = self._in_dialog(leg.dialog, "ACK", leg.target.peer)
            actions.append(SendAck(leg.ack, leg.target.peer))
        else:  # the 2xx carries the offer: the caller's ACK brings the answer
            self._deferred[CALLER] = _Deferred(CALLEE)
        self.caller_dialog.confirm()
        headers = [("contact", self._contact(self.caller_peer.transport)), ("allow", _ALLOW)]
        headers += _copied(response.headers, _RESPONSE_COPIED)
        actions += [
            Track(self.caller_dialog, CALLER),
            Track(leg.dialog, CALLEE),
            RespondCaller(200, None, tuple(headers), response.body),
        ]
        for other in self.legs:
            if other is not leg:
                actions += self._cancel(other)
        actions.append(Answered(leg.target))
        return actions

    def _move(self, leg: _Leg, response: Response) -> list[Action]:
        """The winner answered an answered caller with an offer: re-INVITE the caller with
        it; the winner's ACK waits for the caller's answer (:meth:`_moved_response`)."""
        assert leg.dialog is not None
        peer = self.caller_peer
        self._moved_offer = response.body
        self._deferred[CALLER] = _Deferred(CALLEE)
        reinvite = self._in_dialog(self.caller_dialog, "INVITE", peer)
        reinvite.headers.set("contact", self._contact(peer.transport))
        reinvite.headers.add("allow", _ALLOW)
        for name, value in _copied(response.headers, ("content-type",)):
            reinvite.headers.add(name, value)
        reinvite.body = self._as_ours(response.body, response.headers.get("content-type"))
        actions: list[Action] = [
            CancelTimer(RING_TIMER),
            *self._limit(),
            Track(self.caller_dialog, CALLER),
            Track(leg.dialog, CALLEE),
            Send(reinvite, peer, Ref("moved", 0)),
        ]
        for other in self.legs:
            if other is not leg:
                actions += self._cancel(other)
        actions.append(Answered(leg.target))
        return actions

    def _moved_response(self, event: Responded) -> list[Action]:
        """The caller's answer to the re-INVITE that moved it: ACK a 2xx (again on a
        retransmission) and pass its answer on in the winner's ACK; a refusal (or a 2xx
        without an answer) declines the winner's offer in its ACK and ends both sides."""
        response = event.response
        if response is not None and response.status < 200:
            return []
        ok = response is not None and response.status < 300
        actions: list[Action] = []
        if ok and response is not None and self._moved_ack is None:
            self._receive_response(CALLER, response)
            self._moved_ack = self._in_dialog(self.caller_dialog, "ACK", self.caller_peer)
        if self._moved_ack is not None:
            actions.append(SendAck(self._moved_ack, self.caller_peer))
        deferred = self._deferred.pop(CALLER, None) if self.state == UP else None
        if deferred is None:
            return actions
        if ok and response is not None and response.body:
            content_type = response.headers.get("content-type")
            return actions + self._flush_ack(deferred, content_type, response.body)
        declined = declining_answer(self._moved_offer)
        actions += self._flush_ack(deferred, "application/sdp", declined)
        return actions + self._end({CALLER, CALLEE})

    def _leg_failed(self, leg: _Leg, status: int) -> list[Action]:
        if leg.state in (DONE, WINNER):
            return []
        leg.state = DONE
        leg.status = status
        actions: list[Action] = []
        if self.state == RINGING:
            if status >= 600:
                actions += self._give_up(f"declined ({status})")
            elif all(other.state == DONE for other in self.legs):
                actions += self._give_up("no device answered")
        return actions + self._maybe_finished()

    def _leg_bye_done(self, event: Responded) -> list[Action]:
        leg = self.legs[event.ref.index]
        if event.response is not None and event.response.status < 200:
            return []
        leg.state = DONE
        return self._maybe_finished()

    def _cancel(self, leg: _Leg) -> list[Action]:
        if leg.state == CALLING:
            leg.cancel_wanted = True
            return []
        if leg.state != EARLY:
            return []
        leg.state = CANCELLING
        return [Send(cancel_request(leg.invite), leg.target.peer, None)]

    def _give_up(self, reason: str) -> list[Action]:
        self.state = FAILED
        actions: list[Action] = [CancelTimer(RING_TIMER)]
        for leg in self.legs:
            actions += self._cancel(leg)
        statuses = tuple(leg.status or 408 for leg in self.legs)
        actions.append(NotReached(statuses, reason))
        return actions

    def _limit(self) -> list[Action]:
        """The call timer, started when a leg wins."""
        return [] if self.max_duration is None else [StartTimer(CALL_TIMER, self.max_duration)]

    def _call_timeout(self, event: TimerFired) -> list[Action]:
        """The call lasted its longest: BYE to both sides (one of them may be long gone)."""
        if event.name != CALL_TIMER:
            return []
        return [CallLimitReached(), *self._end({CALLER, CALLEE})]

    def _ring_timeout(self, event: TimerFired) -> list[Action]:
        if event.name != RING_TIMER:
            return []
        return self._give_up("no answer in time") + self._maybe_finished()

    def _caller_cancel(self, event: CallerCancelled) -> list[Action]:
        self.state = CANCELLED
        actions: list[Action] = [CancelTimer(RING_TIMER)]
        for leg in self.legs:
            actions += self._cancel(leg)
        return actions + self._maybe_finished()

    def _maybe_finished(self) -> list[Action]:
        if self.finished or self.state not in (FAILED, CANCELLED, ENDED):
            return []
        if any(leg.state not in (DONE, WINNER) for leg in self.legs):
            return []
        self.finished = True
        return [Finished()]

    # -- the bridged call ------------------------------------------------------------

    def _ack(self, event: AckReceived) -> list[Action]:
        deferred = self._deferred.pop(event.side, None)
        if deferred is None:
            return []
        return self._flush_ack(deferred, event.ack.headers.get("content-type"), event.ack.body)

    def _flush_ack(
        self, deferred: _Deferred, content_type: str | None = None, body: bytes = b""
    ) -> list[Action]:
        """ACK the 2xx of ``deferred.side``, with the answer from the other side's ACK."""
        dialog, peer = self._side(deferred.side)
        ack = self._in_dialog(dialog, "ACK", peer)
        if body:
            ack.headers.add("content-type", content_type or "application/sdp")
            ack.body = self._as_ours(body, content_type) if deferred.side == CALLER else body
        if deferred.relay is not None:
            deferred.relay.ack = ack
        elif self.winner is not None:
            self.winner.ack = ack
        return [SendAck(ack, peer)]

    def _request(self, event: RequestReceived) -> list[Action]:
        request = event.request
        if request.method == "BYE":
            return [Reply(event.token, 200), *self._end({_other(event.side)})]
        hops = forwarded_max_forwards(request)
        if hops is None:
            return [Reply(event.token, 483)]
        to = _other(event.side)
        dialog, peer = self._side(to)
        relayed = self._in_dialog(dialog, request.method, peer)
        relayed.headers.set("max-forwards", str(hops))
        for name, value in _copied(request.headers, _REQUEST_COPIED):
            relayed.headers.add(name, value)
        kind = request.headers.get("content-type")
        relayed.body = self._as_ours(request.body, kind) if to == CALLER else request.body
        index = len(self._relays)
        self._relays[index] = _Relay(event.token, event.side, request.method, bool(request.body))
        return [Send(relayed, peer, Ref("relay", index))]

    def _relay_response(self, event: Responded) -> list[Action]:
        relay = self._relays[event.ref.index]
        response = event.response
        if response is None:
            return self._relay_reply(relay, 408, None, (), b"")
        if self.state == UP:
            self._receive_response(_other(relay.side), response)
        if response.status < 200:
            return []
        if relay.replied:  # a retransmitted 2xx to a relayed re-INVITE: ACK it again
            peer = self._side(_other(relay.side))[1]
            return [SendAck(relay.ack, peer)] if relay.ack is not None else []
        headers = _copied(response.headers, _RESPONSE_COPIED)
        ok = response.status < 300
        if ok and relay.method in ("INVITE", "UPDATE"):
            headers.append(("contact", self._contact(self._side(relay.side)[1].transport)))
        body = response.body
        if relay.side == CALLER:
            body = self._as_ours(body, response.headers.get("content-type"))
        actions = self._relay_reply(relay, response.status, response.reason, headers, body)
        if ok and relay.method == "INVITE" and self.state == UP:
            deferred = _Deferred(_other(relay.side), relay)
            if relay.offer:
                actions += self._flush_ack(deferred)
            else:
                self._deferred[relay.side] = deferred
        if response.status == 481 and self.state == UP:
            actions += self._end({relay.side})
        return actions

    def _relay_reply(
        self,
        relay: _Relay,
        status: int,
        reason: str | None,
        headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> list[Action]:
        if relay.replied:
            return []
        relay.replied = True
        return [Reply(relay.token, status, reason, tuple(headers), body)]

    def _receive_response(self, side: Side, response: Response) -> None:
        try:
            self._side(side)[0].receive_response(response)
        except DialogError:
            return

    def _ack_timeout(self, event: AckTimedOut) -> list[Action]:
        return self._end({CALLER, CALLEE})

    def _end(self, sides: set[Side]) -> list[Action]:
        """Send BYE to ``sides`` (the other side already said BYE, or never ACKed)."""
        actions: list[Action] = []
        for waiting, deferred in list(self._deferred.items()):
            del self._deferred[waiting]
            actions += self._flush_ack(deferred)  # a 2xx is ACKed before its BYE
        self.state = ENDING
        self._byes = set(sides)
        for side in sorted(sides):
            dialog, peer = self._side(side)
            bye = self._in_dialog(dialog, "BYE", peer)
            actions.append(Send(bye, peer, Ref("bye", 0 if side == CALLER else 1)))
        return actions

    def _bye_done(self, event: Responded) -> list[Action]:
        if event.response is not None and event.response.status < 200:
            return []
        self._byes.discard(CALLER if event.ref.index == 0 else CALLEE)
        if self._byes or self.state != ENDING:
            return []
        self.state = ENDED
        actions: list[Action] = [Untrack(self.caller_dialog.id)]
        self.caller_dialog.terminate()
        if self.winner is not None and self.winner.dialog is not None:
            actions.append(Untrack(self.winner.dialog.id))
            self.winner.dialog.terminate()
        return actions + self._maybe_finished()

    def _request_while_ending(self, event: RequestReceived) -> list[Action]:
        if event.request.method == "BYE":  # crossed with ours
            return [Reply(event.token, 200)]
        return [Reply(event.token, 481)]

    def _refuse(self, event: RequestReceived) -> list[Action]:
        return [Reply(event.token, 481)]

    def _ignore(self, event: Event) -> list[Action]:
        return []


def _other(side: Side) -> Side:
    return CALLEE if side == CALLER else CALLER


def _kind(event: Event) -> str:
    if isinstance(event, Responded):
        return event.ref.kind
    return _EVENT_KINDS[type(event)]


_EVENT_KINDS: dict[type, str] = {
    TimerFired: "timer",
    CallerCancelled: "cancel",
    AckReceived: "ack",
    RequestReceived: "request",
    AckTimedOut: "ack-timeout",
}

Handler = Callable[[Bridge, Any], list[Action]]


def _table() -> dict[tuple[str, str], Handler]:
    B = Bridge
    table: dict[tuple[str, str], Handler] = {}
    # Legs answer, fail or clear in every state; late answers are ACKed and sent BYE.
    for state in (RINGING, UP, ENDING, ENDED, FAILED, CANCELLED):
        table[(state, "invite")] = B._invite_response
        table[(state, "leg-bye")] = B._leg_bye_done
        table[(state, "timer")] = B._ignore
        table[(state, "cancel")] = B._ignore
        table[(state, "ack")] = B._ignore
        table[(state, "ack-timeout")] = B._ignore
        table[(state, "request")] = B._refuse
        table[(state, "relay")] = B._relay_response
        table[(state, "bye")] = B._ignore
        table[(state, "moved")] = B._moved_response
    table[(RINGING, "timer")] = B._ring_timeout
    table[(RINGING, "cancel")] = B._caller_cancel
    table[(UP, "timer")] = B._call_timeout
    table[(UP, "ack")] = B._ack
    table[(UP, "request")] = B._request
    table[(UP, "ack-timeout")] = B._ack_timeout
    table[(ENDING, "request")] = B._request_while_ending
    table[(ENDING, "bye")] = B._bye_done
    return table


_TABLE = _table()
