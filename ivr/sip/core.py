"""The SIP core: bytes in, validated requests to the application, actions out.

Pure (no Twisted, no sockets): the transport adapter feeds ``receive`` and runs the
emitted actions (:class:`Transmit`, :class:`SetTimer`, :class:`ClearTimer`,
:class:`CloseConnection`). Time comes from an injected clock. The core answers
malformed and unsupported requests itself (400/405/416/420/501/505/513), handles
OPTIONS, absorbs retransmissions through RFC 3261 transactions, and hands
everything else to a :class:`RequestHandler`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ivr.sip import transaction as tx
from ivr.sip.build import make_response
from ivr.sip.headers import Via, format_params, param, parse_via
from ivr.sip.ids import Ids
from ivr.sip.message import (
    Headers,
    Request,
    Response,
    SipParseError,
    parse_message,
    split_list,
)
from ivr.sip.timers import TimerConfig
from ivr.sip.validate import validate_request, validate_response

ALLOWED_METHODS: tuple[str, ...] = (
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
)
KNOWN_METHODS = frozenset(
    {*ALLOWED_METHODS, "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER", "PRACK"}
)
# What we implement, so what a Require may name: outbound (RFC 5626: instance and reg-id
# kept, calls sent over the flow the registration came on, CRLF keep-alives). Not path,
# replaces or timer (RFC 3327, 3891, 4028): a request requiring them gets 420.
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset({"outbound"})
ACCEPTED_BODIES = ("application/sdp", "application/dtmf-relay", "application/dtmf")


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to. ``conn`` is the stream connection, if any."""

    transport: str
    host: str
    port: int
    conn: object | None = None

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


# Actions are made per message and not frozen: a frozen dataclass's __init__ costs 3x.
@dataclass(slots=True)
class Transmit:
    peer: Peer
    data: bytes


@dataclass(slots=True)
class SetTimer:
    key: Hashable
    delay: float


@dataclass(slots=True)
class ClearTimer:
    key: Hashable


@dataclass(frozen=True, slots=True)
class CloseConnection:
    peer: Peer


Action = Transmit | SetTimer | ClearTimer | CloseConnection


class ServerRequest:
    """A request handed to the application, with the means to answer it."""

    __slots__ = ("_core", "_key", "_tag", "peer", "request", "responded", "spoke")

    def __init__(self, core: SipCore, request: Request, peer: Peer, key: Hashable) -> None:
        self._core = core
        self.request = request
        self.peer = peer
        self._key = key
        self._tag: str | None = None
        self.responded = False  # a final response was sent
        self.spoke = False  # any response was sent

    @property
    def to_tag(self) -> str:
        """Our To-tag for every response to this request but 100 (§8.2.6.2)."""
        if self._tag is None:
            self._tag = self._core.ids.tag()
        return self._tag

    def respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Response:
        if to_tag is not None:
            self._tag = to_tag
        elif status > 100:
            to_tag = self.to_tag
        response = make_response(
            self.request, status, reason, to_tag=to_tag, headers=list(headers), body=body
        )
        self.send(response)
        return response

    def send(self, response: Response) -> None:
        self.spoke = True
        if response.status >= 200:
            self.responded = True
        self._core.send_response(self._key, response)


class RequestHandler(Protocol):
    """The application (transaction user) behind the core."""

    def handle_request(self, request: ServerRequest) -> None:
        """A new request (not a retransmission). Answer it now or later."""

    def handle_ack(self, request: Request, peer: Peer) -> None:
        """An ACK that matched no transaction: the ACK for a 2xx."""

    def handle_cancel(self, cancelled: ServerRequest) -> None:
        """A CANCEL matched a pending INVITE; the core already answered 487."""

    def handle_ack_timeout(self, response: Response) -> None:
        """A 2xx we sent was never acknowledged within 64*T1: end that dialog (BYE)."""


ResponseCallback = Callable[[Response | None], None]


class SipCore:
    """Validation, transactions and dispatch. One per listening address."""

    def __init__(
        self,
        handler: RequestHandler,
        *,
        host: str,
        port: int = 5060,
        max_size: int = 65535,
        user_agent: str = "ivr",
        ids: Ids,
        timers: TimerConfig | None = None,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.max_size = max_size
        self.user_agent = user_agent
        # the core answers 100 itself, and only when the TU has not answered at once
        self.table = tx.TransactionTable(timers, trying=False)
        self.ids = ids
        self._emit: Callable[[Iterable[Action]], None] = _discard
        self._now: Callable[[], float] = _no_clock
        self._pending: dict[Hashable, ServerRequest] = {}
        self._unacked: dict[Hashable, tx.TwoXXRetransmitter] = {}
        self._callbacks: dict[Hashable, ResponseCallback] = {}
        self.stats = {"received": 0, "malformed": 0, "dropped": 0}

    def attach(self, emit: Callable[[Iterable[Action]], None], now: Callable[[], float]) -> None:
        """Give the core its action sink and clock (done by the transport adapter)."""
        self._emit = emit
        self._now = now

    def now(self) -> float:
        """The injected clock's time."""
        return self._now()

    def set_local_port(self, port: int) -> None:
        self.port = port

    # -- input -----------------------------------------------------------------

    def receive(self, data: bytes, peer: Peer) -> None:
        """One datagram or one framed stream message from ``peer``."""
        self.stats["received"] += 1
        if not data.strip(b"\r\n"):
            return
        try:
            message = parse_message(data, max_size=self.max_size, stream=peer.reliable)
        except SipParseError as exc:
            self.stats["malformed"] += 1
            self._reject_unparsable(data, peer, exc)
            return
        if isinstance(message, Response):
            self._receive_response(message)
        else:
            self._receive_request(message, peer)

    def timer_fired(self, key: Hashable) -> None:
        tx_key, name = key  # type: ignore[misc]
        if name in (tx.TwoXXRetransmitter.RETRANSMIT, tx.TwoXXRetransmitter.GIVE_UP):
            retransmitter = self._unacked.get(tx_key)
            if retransmitter is not None:
                self._run_2xx(tx_key, retransmitter.timer_fired(name, self._now()))
            return
        self._run(self.table.timer_fired(tx_key, name, self._now()), tx_key)

    # -- output ----------------------------------------------------------------

    def send_response(self, key: Hashable, response: Response) -> None:
        """Answer the server transaction ``key`` (retransmissions are the transaction's job)."""
        if self.user_agent:
            items = response.headers._items
            for name, _ in items:
                if name == "server":
                    break
            else:
                items.append(("server", self.user_agent))
        if response.status >= 200:
            self._pending.pop(key, None)
        server = self.table.server(key)
        now = self._now()
        self._run(self.table.respond(key, response, now), key)
        if server is not None and 200 <= response.status < 300 and _is_invite(response):
            retransmitter = tx.TwoXXRetransmitter(response, server.dest, now, self.table.timers)
            ack = tx.ack_key(response)
            self._unacked[ack] = retransmitter
            self._run_2xx(ack, retransmitter.start(now))

    def send_request(
        self, request: Request, peer: Peer, on_response: ResponseCallback | None = None
    ) -> None:
        """Send a request through a client transaction; ``on_response`` gets each
        response, None when the transaction timed out, or a local 503 when the transport
        failed (:meth:`transport_failed`).
        The top Via must carry a fresh RFC 3261 branch (``self.via_value(peer)``)."""
        key, actions = self.table.start_client(request, peer, peer.reliable, self._now())
        if on_response is not None:
            self._callbacks[key] = on_response
        self._run(actions, key)

    def send_ack(self, ack: Request, peer: Peer) -> None:
        """An ACK for a 2xx goes straight to the transport (§13.2.2.4)."""
        self._emit([Transmit(peer, ack.to_bytes())])

    def transport_failed(self, peer: Peer) -> int:
        """The transport could not reach ``peer`` (connection refused, timed out, lost with
        bytes unsent): every client transaction still waiting there fails now (§17.1.4),
        and its TU gets a local 503 at once (§8.1.3.1) instead of Timer B/F's None.
        Returns how many failed."""
        where = (peer.transport, peer.host, peer.port)
        now = self._now()

        def there(dest: object) -> bool:
            return isinstance(dest, Peer) and (dest.transport, dest.host, dest.port) == where

        # one that has its final response has told the TU already
        failed = [(key, client.request) for key, client in self.table.waiting_clients(there)]
        for key, request in failed:
            callback = self._callbacks.pop(key, None)
            self._run(self.table.transport_error(key, now), key)
            if callback is not None:
                callback(make_response(request, 503, "Service Unavailable"))
        return len(failed)

    def via_value(self, peer: Peer) -> str:
        """A Via for a new request from us, with a fresh branch."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        transport = peer.transport.upper()
        return f"SIP/2.0/{transport} {host}:{self.port};branch={self.ids.branch()};rport"

    # -- internals -------------------------------------------------------------

    def _receive_response(self, response: Response) -> None:
        try:
            validate_response(response)
        except SipParseError:
            self.stats["dropped"] += 1
            return
        key, actions = self.table.on_response(response, self._now())
        if key is None:
            self.stats["dropped"] += 1
            return
        self._run(actions, key)

    def _receive_request(self, request: Request, peer: Peer) -> None:
        headers = request.headers
        first_line = headers.get("via")
        try:
            if first_line is None:
                raise IndexError
            top = first_line if "," not in first_line else headers.get_all("via")[0]
            top_via = parse_via(top)
        except (SipParseError, IndexError):
            self._reject_statelessly(request, peer, SipParseError("Malformed or missing Via"))
            return
        dest = self._response_peer(top_via, peer)
        try:
            # before the Via is stamped: validation meets the Via text parse_via has cached
            validate_request(request, supported=SUPPORTED_EXTENSIONS)
        except SipParseError as exc:
            self._stamp_via(request, first_line, top, top_via, peer)
            self._reject_statelessly(request, dest, exc)
            return
        self._stamp_via(request, first_line, top, top_via, peer)
        now = self._now()
        if request.method == "ACK":
            key, actions = self.table.on_ack(request, now)
            if key is not None:
                self._run(actions, key)
                return
            ack = tx.ack_key(request)
            retransmitter = self._unacked.get(ack)
            if retransmitter is not None:
                self._run_2xx(ack, retransmitter.ack_received(now))
            self.handler.handle_ack(request, peer)
            return
        key, actions, is_new = self.table.on_request(request, dest, dest.reliable, now)
        self._run(actions, key)
        if not is_new:
            return
        server_request = ServerRequest(self, request, peer, key)
        if request.method == "CANCEL":
            self._cancel(server_request)
            return
        self._dispatch(server_request)
        if request.method == "INVITE" and not server_request.spoke:
            # §17.2.1: 100 Trying unless the TU answers within 200 ms; one that answered
            # at once (a challenge, a busy, a feature call's 200) needs none
            server_request.respond(100)

    def _dispatch(self, sr: ServerRequest) -> None:
        method = sr.request.method
        if method == "OPTIONS":
            sr.respond(200, headers=self._capabilities())
            return
        if method not in KNOWN_METHODS:
            sr.respond(501, headers=[("Allow", ", ".join(ALLOWED_METHODS))])
            return
        if method not in ALLOWED_METHODS:
            sr.respond(405, headers=[("Allow", ", ".join(ALLOWED_METHODS))])
            return
        if method == "INVITE":
            self._pending[sr._key] = sr
        self.handler.handle_request(sr)

    def _cancel(self, sr: ServerRequest) -> None:
        target_key = tx.cancel_target_key(sr.request)
        invite = self._pending.get(target_key)
        if invite is None or invite.responded:
            sr.respond(481)
            return
        sr.respond(200, to_tag=invite.to_tag)  # §9.2: the same tag as the 487
        invite.respond(487)
        self.handler.handle_cancel(invite)

    def _capabilities(self) -> list[tuple[str, str]]:
        return [
            ("Allow", ", ".join(ALLOWED_METHODS)),
            ("Accept", ", ".join(ACCEPTED_BODIES)),
            ("Accept-Language", "sv, en"),
            ("Supported", ", ".join(sorted(SUPPORTED_EXTENSIONS))),
        ]

    @staticmethod
    def _stamp_via(request: Request, first_line: str, top: str, top_via: Via, peer: Peer) -> None:
        """RFC 3261 §18.2.1, RFC 3581: ``received`` and ``rport`` on the top Via."""
        params = top_via.received_params(peer.host, peer.port)
        if params is None:
            return
        host = top_via.host if top_via.port is None else f"{top_via.host}:{top_via.port}"
        stamped = f"SIP/2.0/{top_via.transport} {host}{format_params(params)}"
        if top is not first_line:
            items = split_list(first_line)
            if not items:
                return
            items[0] = stamped
            stamped = ", ".join(items)
        request.headers.replace_first("via", stamped)

    def _response_peer(self, via: Via, peer: Peer) -> Peer:
        """RFC 3261 §18.2.2 with RFC 3581: where responses to this request go (a Via
        with ``rport`` gets them at the source address and port)."""
        if peer.reliable:
            return peer
        if param(via.params, "rport") is not None:
            return peer if peer.conn is None else Peer(peer.transport, peer.host, peer.port)
        return Peer(peer.transport, peer.host, via.port or 5060)

    def _reject_statelessly(self, request: Request, peer: Peer, exc: SipParseError) -> None:
        if request.method == "ACK":
            return
        extra: list[tuple[str, str]] = list(getattr(exc, "headers", ()) or ())
        if exc.status == 415:
            extra.append(("Accept", ", ".join(ACCEPTED_BODIES)))
        response = make_response(request, exc.status, _reason(exc), headers=extra)
        self._emit([Transmit(peer, response.to_bytes())])

    def reject_head(self, head: bytes, peer: Peer, exc: SipParseError) -> None:
        """Answer a stream message whose framing failed, from its header block."""
        self._reject_unparsable(head, peer, exc)

    def _reject_unparsable(self, data: bytes, peer: Peer, exc: SipParseError) -> None:
        """Answer a request we could not parse, if enough of it is legible (never an ACK)."""
        if data[:4] == b"SIP/" or data.lstrip()[:4] == b"ACK " or exc.status < 400:
            return
        response = _salvage_response(data, exc)
        if response is not None:
            self._emit([Transmit(peer, response)])

    def _run(self, actions: Iterable[object], key: Hashable) -> None:
        out: list[Action] = []
        for action in actions:
            if isinstance(action, tx.SendMessage):
                dest = action.dest
                out.append(Transmit(dest, action.message.to_bytes()))
            elif isinstance(action, tx.StartTimer):
                out.append(SetTimer((key, action.name), action.delay))
            elif isinstance(action, tx.CancelTimer):
                out.append(ClearTimer((key, action.name)))
            elif isinstance(action, tx.PassToTU):
                callback = self._callbacks.get(key)
                if callback is not None and isinstance(action.message, Response):
                    callback(action.message)
            elif isinstance(action, tx.Timeout | tx.TransportError):
                callback = self._callbacks.pop(key, None)
                if callback is not None:
                    callback(None)
            elif isinstance(action, tx.Terminated):
                self._pending.pop(key, None)
                self._callbacks.pop(key, None)
        if out:
            self._emit(out)

    def _run_2xx(self, key: Hashable, actions: Iterable[object]) -> None:
        out: list[Action] = []
        for action in actions:
            if isinstance(action, tx.SendMessage):
                out.append(Transmit(action.dest, action.message.to_bytes()))
            elif isinstance(action, tx.StartTimer):
                out.append(SetTimer((key, action.name), action.delay))
            elif isinstance(action, tx.CancelTimer):
                out.append(ClearTimer((key, action.name)))
        retransmitter = self._unacked.get(key)
        if retransmitter is not None and retransmitter.state == "Done":
            del self._unacked[key]
            if any(isinstance(a, tx.AckTimeout) for a in actions):
                self.handler.handle_ack_timeout(retransmitter.response)
        if out:
            self._emit(out)


def _reason(exc: SipParseError) -> str:
    reason = exc.reason.replace("\r", " ").replace("\n", " ")
    return reason[:120]


_SALVAGE_RE = re.compile(rb"^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[ \t]*(.*?)\r?$", re.I | re.M)


def _salvage_response(data: bytes, exc: SipParseError) -> bytes | None:
    """A best-effort error response built from the raw header lines of a broken request."""
    found: dict[str, list[str]] = {}
    for match in _SALVAGE_RE.finditer(data[:8192]):
        name = match.group(1).decode("ascii").lower()
        name = {"v": "via", "f": "from", "t": "to", "i": "call-id"}.get(name, name)
        found.setdefault(name, []).append(match.group(2).decode("utf-8", "replace").strip())
    if not all(name in found for name in ("via", "from", "to", "call-id", "cseq")):
        return None
    if found["cseq"][0].upper().endswith("ACK"):
        return None  # an ACK is never answered
    headers = Headers()
    for value in found["via"]:
        headers.add("Via", value)
    for name in ("from", "to", "call-id", "cseq"):
        headers.add(name, found[name][0])
    return Response(exc.status, _reason(exc), headers).to_bytes()


def _is_invite(response: Response) -> bool:
    return (response.headers.get("cseq") or "").rstrip().upper().endswith("INVITE")


def _discard(actions: Iterable[Action]) -> None:
    for _ in actions:
        pass


def _no_clock() -> float:
    raise RuntimeError("SipCore used before attach(): no clock")
