"""SIP transactions (RFC 3261 §17, updated by RFC 6026) as pure state machines.

Every input — a received message, a response from the TU, a fired timer, a
transport error — returns a list of actions for the adapter to perform. Each
machine's transitions live in one dict keyed by ``(state, event)``; a missing
entry raises :class:`TransactionError`. Events are ``"request"``/``"ack"`` for
received requests, ``"1xx"``/``"2xx"``/``"final"`` (300-699) for responses, the
RFC timer letter for a fired timer and ``"transport_error"``.

Zero-second timers (I, J, K and D on reliable transports) are not started: the
transaction terminates at once, which is what a zero timer would do one tick later.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ivr.sip.build import make_response
from ivr.sip.headers import BRANCH_COOKIE, parse_cseq, parse_via
from ivr.sip.message import Headers, Request, Response, SipParseError, split_list
from ivr.sip.timers import DEFAULT_TIMERS, TimerConfig

__all__ = [
    "ACCEPTED",
    "CALLING",
    "COMPLETED",
    "CONFIRMED",
    "PROCEEDING",
    "TERMINATED",
    "TRYING",
    "AckTimeout",
    "Action",
    "CancelTimer",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "PassToTU",
    "SendMessage",
    "Spent",
    "StartTimer",
    "Terminated",
    "Timeout",
    "TimerConfig",
    "TransactionError",
    "TransactionTable",
    "TransportError",
    "TwoXXRetransmitter",
    "TxKey",
    "ack_key",
    "cancel_target_key",
    "client_key",
    "make_ack",
    "server_key",
    "tag_of",
]

TRYING = "Trying"
CALLING = "Calling"
PROCEEDING = "Proceeding"
COMPLETED = "Completed"
CONFIRMED = "Confirmed"
ACCEPTED = "Accepted"
TERMINATED = "Terminated"

TxKey = tuple[Any, ...]


# -- actions -------------------------------------------------------------------


# Actions are made per message and not frozen: a frozen dataclass's __init__ costs 3x.
@dataclass(slots=True)
class SendMessage:
    """Hand ``message`` to the transport for ``dest`` (the transaction's fixed destination)."""

    message: Request | Response
    dest: object


@dataclass(slots=True)
class StartTimer:
    """Arm (or re-arm) the transaction's timer ``name`` to fire after ``delay`` seconds."""

    name: str
    delay: float


@dataclass(slots=True)
class CancelTimer:
    name: str


@dataclass(slots=True)
class PassToTU:
    """A request or response the transaction user must see."""

    message: Request | Response


@dataclass(frozen=True, slots=True)
class Timeout:
    """Timer B/F (client: the TU synthesizes a 408) or H (server: no ACK came)."""


@dataclass(frozen=True, slots=True)
class TransportError:
    """The transport failed to deliver (§17.1.4, §17.2.4); a client TU synthesizes a 503."""


@dataclass(slots=True)
class Terminated:
    """The transaction is over; always the last action of its list."""


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """No ACK for a 2xx within 64*T1 (§13.3.1.4): the TU must end the dialog with BYE."""


Action = (
    SendMessage
    | StartTimer
    | CancelTimer
    | PassToTU
    | Timeout
    | TransportError
    | Terminated
    | AckTimeout
)
Handler = Callable[[Any, Any, float], list[Action]]


class TransactionError(Exception):
    """An input the machine has no transition for. ``status`` hints at an answer, if any."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# -- matching --------------------------------------------------------------------

_FAST_VIA = re.compile(
    r"SIP/2\.0/[A-Za-z0-9\-.!%*_+`'~]+ (\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)"
    r"(?::(\d{1,5}))?(?=;|\Z)"
)
_BRANCH = re.compile(r";branch=([^;]+)", re.I)
_RFC2543 = "rfc2543"


def tag_of(value: str) -> str | None:
    """The ``tag`` parameter of a From/To value, found without a full parse."""
    gt = value.rfind(">")
    params = value[gt + 1 :] if gt >= 0 else value
    if ";" not in params:
        return None
    for item in params.split(";")[1:]:
        name, _, tag = item.partition("=")
        if name.strip().lower() == "tag":
            return tag.strip() or None
    return None


def _top_via(headers: Headers) -> str:
    value = headers.get("via")
    if not value:
        raise SipParseError("Missing Via")
    if "," in value:
        value = split_list(value)[0]
    return value


def _sent_by_branch(via: str) -> tuple[str, int | None, str | None]:
    """(host, port, branch) of one Via value; a regex fast path, ``parse_via`` otherwise."""
    match = _FAST_VIA.match(via)
    if match is not None:
        params = via[match.end() :]
        if " " not in params and "\t" not in params and '"' not in params:
            host, port = match.groups()
            port_no = int(port) if port else None
            if port_no is None or 0 < port_no < 65536:
                branch = _BRANCH.search(params) if params else None
                return host.lower(), port_no, branch.group(1) if branch else None
    parsed = parse_via(via)
    return parsed.host, parsed.port, parsed.branch


def _server_key(request: Request, method: str) -> TxKey:
    via = _top_via(request.headers)
    host, port, branch = _sent_by_branch(via)
    if branch is not None and len(branch) > 7 and branch.startswith(BRANCH_COOKIE):
        return (branch, host, port, method)
    headers = request.headers
    return (
        _RFC2543,
        request.uri,
        tag_of(headers.get("to") or ""),
        tag_of(headers.get("from") or ""),
        request.call_id,
        parse_cseq(headers.get("cseq") or "").number,
        method,
        parse_via(via),
    )


def server_key(request: Request) -> TxKey:
    """§17.2.3: (branch, sent-by host, port, method), ACK keyed as its INVITE.

    Without the magic cookie, the RFC 2543 key: ``("rfc2543", Request-URI, To-tag,
    From-tag, Call-ID, CSeq number, method, top Via)``.
    """
    method = request.method
    return _server_key(request, "INVITE" if method == "ACK" else method)


def cancel_target_key(cancel: Request) -> TxKey:
    """The server key of the INVITE a CANCEL targets (§9.2)."""
    return _server_key(cancel, "INVITE")


def client_key(message: Request | Response) -> TxKey:
    """§17.1.3: (top Via branch, method); a response's method comes from its CSeq."""
    _, _, branch = _sent_by_branch(_top_via(message.headers))
    if isinstance(message, Request):
        return (branch, message.method)
    return (branch, parse_cseq(message.headers.get("cseq") or "").method)


def ack_key(message: Request | Response) -> TxKey:
    """(Call-ID, From-tag, To-tag, CSeq number): pairs a 2xx to INVITE with its ACK."""
    headers = message.headers
    return (
        message.call_id,
        tag_of(headers.get("from") or ""),
        tag_of(headers.get("to") or ""),
        parse_cseq(headers.get("cseq") or "").number,
    )


def make_ack(invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response (§17.1.1.3): same branch, To from the response."""
    src = invite.headers
    cseq = parse_cseq(src.get("cseq") or "")
    items = [
        ("via", _top_via(src)),
        ("max-forwards", src.get("max-forwards") or "70"),
        ("from", src.get("from") or ""),
        ("to", response.headers.get("to") or ""),
        ("call-id", invite.call_id),
        ("cseq", f"{cseq.number} ACK"),
    ]
    items.extend(("route", value) for value in src.values("route"))
    return Request("ACK", invite.uri, Headers(items))


def _event(status: int) -> str:
    if status < 200:
        return "1xx"
    return "2xx" if status < 300 else "final"


# -- machines ------------------------------------------------------------------


class Spent:
    """What a transaction keeps of its request once only absorbing is left: enough to
    name it. The request (headers, parsed caches, SDP) would otherwise live for the whole
    absorb window (up to 32 s) and load the garbage collector at every call rate."""

    __slots__ = ("call_id", "method")

    def __init__(self, request: Request | Spent) -> None:
        self.method = request.method
        self.call_id = request.call_id


class _Transaction:
    """Shared slots and table dispatch."""

    __slots__ = ("_interval", "_last", "created", "dest", "reliable", "request", "state", "timers")

    TABLE: ClassVar[dict[tuple[str, str], Handler]] = {}

    def __init__(
        self,
        request: Request,
        dest: object,
        reliable: bool,
        now: float,
        timers: TimerConfig = DEFAULT_TIMERS,
    ) -> None:
        self.request = request
        self.dest = dest
        self.reliable = reliable
        self.created = now
        self.timers = timers
        self._last: Response | Request | None = None
        self._interval = timers.t1

    def _dispatch(self, event: str, message: object, now: float) -> list[Action]:
        handler = self.TABLE.get((self.state, event))
        if handler is None:
            raise TransactionError(
                f"{type(self).__name__}: no transition for {event} in {self.state}"
            )
        return handler(self, message, now)

    def timer_fired(self, name: str, now: float) -> list[Action]:
        return self._dispatch(name, None, now)

    def spend(self, keep_last: bool) -> None:
        """Only absorbing is left: forget the request (and the last message unless a
        retransmission must still be answered with it)."""
        self.request = Spent(self.request)  # type: ignore[assignment]
        if not keep_last:
            self._last = None

    def transport_error(self, now: float) -> list[Action]:
        return self._dispatch("transport_error", None, now)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.state} {self.request.method} {self.request.call_id!r}>"
        )


class _ServerTransaction(_Transaction):
    __slots__ = ()

    @property
    def last_response(self) -> Response | None:
        """The most recent response sent."""
        return self._last  # type: ignore[return-value]

    def start(self, now: float) -> list[Action]:
        """The actions for the request that created the transaction."""
        return [PassToTU(self.request)]

    def receive(self, request: Request, now: float) -> list[Action]:
        """A retransmitted request (or the ACK) matched to this transaction."""
        return self._dispatch("ack" if request.method == "ACK" else "request", request, now)

    def respond(self, response: Response, now: float) -> list[Action]:
        """A response from the TU."""
        return self._dispatch(_event(response.status), response, now)


class _ClientTransaction(_Transaction):
    __slots__ = ()

    def receive(self, response: Response, now: float) -> list[Action]:
        """A response matched to this transaction."""
        return self._dispatch(_event(response.status), response, now)


# Shared handlers.


def _absorb(tx: _Transaction, message: object, now: float) -> list[Action]:
    return []


def _resend_last(tx: _Transaction, message: object, now: float) -> list[Action]:
    last = tx._last
    return [] if last is None else [SendMessage(last, tx.dest)]


def _send(tx: _ServerTransaction, response: Response, now: float) -> list[Action]:
    tx._last = response
    return [SendMessage(response, tx.dest)]


def _terminate(tx: _Transaction, message: object, now: float) -> list[Action]:
    tx.state = TERMINATED
    return [Terminated()]


def _fail(tx: _Transaction, message: object, now: float) -> list[Action]:
    tx.state = TERMINATED
    return [TransportError(), Terminated()]


def _inform(tx: _Transaction, message: object, now: float) -> list[Action]:
    return [TransportError()]


# INVITE server transaction (§17.2.1, RFC 6026 §8.4-8.7).


class InviteServerTransaction(_ServerTransaction):
    """Proceeding → Completed → Confirmed, or Proceeding → Accepted on a 2xx (RFC 6026)."""

    __slots__ = ("trying",)

    def __init__(
        self,
        request: Request,
        dest: object,
        reliable: bool,
        now: float,
        timers: TimerConfig = DEFAULT_TIMERS,
        *,
        trying: bool = True,
    ) -> None:
        super().__init__(request, dest, reliable, now, timers)
        self.state = PROCEEDING
        self.trying = trying

    def start(self, now: float) -> list[Action]:
        """Pass the INVITE up and, unless disabled, answer 100 Trying at once (§17.2.1)."""
        if not self.trying:
            return [PassToTU(self.request)]
        trying = make_response(self.request, 100)
        self._last = trying
        return [SendMessage(trying, self.dest), PassToTU(self.request)]


def _ist_accept(tx: InviteServerTransaction, response: Response, now: float) -> list[Action]:
    tx._last = response
    tx.state = ACCEPTED
    return [SendMessage(response, tx.dest), StartTimer("L", tx.timers.timeout)]


def _ist_reject(tx: InviteServerTransaction, response: Response, now: float) -> list[Action]:
    tx._last = response
    tx.state = COMPLETED
    timers = tx.timers
    if tx.reliable:
        return [SendMessage(response, tx.dest), StartTimer("H", timers.timeout)]
    tx._interval = timers.t1
    return [
        SendMessage(response, tx.dest),
        StartTimer("G", timers.t1),
        StartTimer("H", timers.timeout),
    ]


def _ist_timer_g(tx: InviteServerTransaction, _: object, now: float) -> list[Action]:
    tx._interval = min(2 * tx._interval, tx.timers.t2)
    return [SendMessage(tx._last, tx.dest), StartTimer("G", tx._interval)]


def _ist_timer_h(tx: InviteServerTransaction, _: object, now: float) -> list[Action]:
    tx.state = TERMINATED
    if tx.reliable:
        return [Timeout(), Terminated()]
    return [CancelTimer("G"), Timeout(), Terminated()]


def _ist_ack(tx: InviteServerTransaction, ack: Request, now: float) -> list[Action]:
    if tx.reliable:
        tx.state = TERMINATED
        return [CancelTimer("H"), Terminated()]
    tx.state = CONFIRMED
    return [CancelTimer("G"), CancelTimer("H"), StartTimer("I", tx.timers.t4)]


def _ist_completed_error(tx: InviteServerTransaction, _: object, now: float) -> list[Action]:
    tx.state = TERMINATED
    if tx.reliable:
        return [CancelTimer("H"), TransportError(), Terminated()]
    return [CancelTimer("G"), CancelTimer("H"), TransportError(), Terminated()]


def _ist_pass_ack(tx: InviteServerTransaction, ack: Request, now: float) -> list[Action]:
    return [PassToTU(ack)]


InviteServerTransaction.TABLE = {
    (PROCEEDING, "request"): _resend_last,
    (PROCEEDING, "ack"): _absorb,  # an ACK before any final response means nothing
    (PROCEEDING, "1xx"): _send,
    (PROCEEDING, "2xx"): _ist_accept,
    (PROCEEDING, "final"): _ist_reject,
    (PROCEEDING, "transport_error"): _fail,
    (COMPLETED, "request"): _resend_last,
    (COMPLETED, "ack"): _ist_ack,
    (COMPLETED, "G"): _ist_timer_g,
    (COMPLETED, "H"): _ist_timer_h,
    (COMPLETED, "transport_error"): _ist_completed_error,
    (CONFIRMED, "request"): _absorb,
    (CONFIRMED, "ack"): _absorb,
    (CONFIRMED, "I"): _terminate,
    (ACCEPTED, "request"): _absorb,
    (ACCEPTED, "ack"): _ist_pass_ack,
    (ACCEPTED, "2xx"): _send,  # the TU's own 2xx retransmissions pass through
    (ACCEPTED, "L"): _terminate,
    (ACCEPTED, "transport_error"): _inform,
}


# Non-INVITE server transaction (§17.2.2).


class NonInviteServerTransaction(_ServerTransaction):
    """Trying → Proceeding → Completed; retransmissions re-send the last response."""

    __slots__ = ()

    def __init__(
        self,
        request: Request,
        dest: object,
        reliable: bool,
        now: float,
        timers: TimerConfig = DEFAULT_TIMERS,
    ) -> None:
        self.request = request
        self.dest = dest
        self.reliable = reliable
        self.created = now
        self.timers = timers
        self._last = None
        self.state = TRYING


def _nist_provisional(
    tx: NonInviteServerTransaction, response: Response, now: float
) -> list[Action]:
    tx._last = response
    tx.state = PROCEEDING
    return [SendMessage(response, tx.dest)]


def _nist_final(tx: NonInviteServerTransaction, response: Response, now: float) -> list[Action]:
    tx._last = response
    if tx.reliable:
        tx.state = TERMINATED
        return [SendMessage(response, tx.dest), Terminated()]
    tx.state = COMPLETED
    return [SendMessage(response, tx.dest), StartTimer("J", tx.timers.timeout)]


def _nist_completed_error(tx: NonInviteServerTransaction, _: object, now: float) -> list[Action]:
    tx.state = TERMINATED
    return [CancelTimer("J"), TransportError(), Terminated()]


NonInviteServerTransaction.TABLE = {
    (TRYING, "request"): _absorb,
    (TRYING, "1xx"): _nist_provisional,
    (TRYING, "2xx"): _nist_final,
    (TRYING, "final"): _nist_final,
    (PROCEEDING, "request"): _resend_last,
    (PROCEEDING, "1xx"): _send,
    (PROCEEDING, "2xx"): _nist_final,
    (PROCEEDING, "final"): _nist_final,
    (PROCEEDING, "transport_error"): _fail,
    (COMPLETED, "request"): _resend_last,
    (COMPLETED, "J"): _terminate,
    (COMPLETED, "transport_error"): _nist_completed_error,
}


# INVITE client transaction (§17.1.1, RFC 6026 §8.2-8.4).


class InviteClientTransaction(_ClientTransaction):
    """Calling → Proceeding → Completed (ACK built here) or Accepted on a 2xx (RFC 6026)."""

    __slots__ = ()

    def __init__(
        self,
        request: Request,
        dest: object,
        reliable: bool,
        now: float,
        timers: TimerConfig = DEFAULT_TIMERS,
    ) -> None:
        super().__init__(request, dest, reliable, now, timers)
        self.state = CALLING

    def start(self, now: float) -> list[Action]:
        """Send the INVITE; Timer A (unreliable only) and Timer B."""
        timers = self.timers
        if self.reliable:
            return [SendMessage(self.request, self.dest), StartTimer("B", timers.timeout)]
        return [
            SendMessage(self.request, self.dest),
            StartTimer("A", timers.t1),
            StartTimer("B", timers.timeout),
        ]

    @property
    def ack(self) -> Request | None:
        """The ACK built for a non-2xx final response, once there is one."""
        last = self._last
        return last if isinstance(last, Request) else None


def _ict_stop_calling(tx: InviteClientTransaction) -> list[Action]:
    if tx.reliable:
        return [CancelTimer("B")]
    return [CancelTimer("A"), CancelTimer("B")]


def _ict_timer_a(tx: InviteClientTransaction, _: object, now: float) -> list[Action]:
    tx._interval *= 2
    return [SendMessage(tx.request, tx.dest), StartTimer("A", tx._interval)]


def _ict_timer_b(tx: InviteClientTransaction, _: object, now: float) -> list[Action]:
    tx.state = TERMINATED
    if tx.reliable:
        return [Timeout(), Terminated()]
    return [CancelTimer("A"), Timeout(), Terminated()]


def _ict_calling_1xx(tx: InviteClientTransaction, response: Response, now: float) -> list[Action]:
    tx.state = PROCEEDING
    return [*_ict_stop_calling(tx), PassToTU(response)]


def _ict_pass(tx: InviteClientTransaction, response: Response, now: float) -> list[Action]:
    return [PassToTU(response)]


def _ict_2xx(tx: InviteClientTransaction, response: Response, now: float) -> list[Action]:
    actions = _ict_stop_calling(tx) if tx.state == CALLING else []
    tx.state = ACCEPTED
    actions += [PassToTU(response), StartTimer("M", tx.timers.timeout)]
    return actions


def _ict_final(tx: InviteClientTransaction, response: Response, now: float) -> list[Action]:
    actions = _ict_stop_calling(tx) if tx.state == CALLING else []
    ack = make_ack(tx.request, response)
    tx._last = ack
    actions += [SendMessage(ack, tx.dest), PassToTU(response)]
    if tx.reliable:
        tx.state = TERMINATED
        actions.append(Terminated())
    else:
        tx.state = COMPLETED
        actions.append(StartTimer("D", tx.timers.d))
    return actions


def _ict_calling_error(tx: InviteClientTransaction, _: object, now: float) -> list[Action]:
    actions = _ict_stop_calling(tx)
    tx.state = TERMINATED
    return [*actions, TransportError(), Terminated()]


def _ict_completed_error(tx: InviteClientTransaction, _: object, now: float) -> list[Action]:
    tx.state = TERMINATED
    return [CancelTimer("D"), TransportError(), Terminated()]


InviteClientTransaction.TABLE = {
    (CALLING, "A"): _ict_timer_a,
    (CALLING, "B"): _ict_timer_b,
    (CALLING, "1xx"): _ict_calling_1xx,
    (CALLING, "2xx"): _ict_2xx,
    (CALLING, "final"): _ict_final,
    (CALLING, "transport_error"): _ict_calling_error,
    (PROCEEDING, "1xx"): _ict_pass,
    (PROCEEDING, "2xx"): _ict_2xx,
    (PROCEEDING, "final"): _ict_final,
    (PROCEEDING, "transport_error"): _fail,
    (COMPLETED, "1xx"): _absorb,  # a provisional overtaken by the final
    (COMPLETED, "2xx"): _absorb,
    (COMPLETED, "final"): _resend_last,  # the retransmitted final gets the ACK again
    (COMPLETED, "D"): _terminate,
    (COMPLETED, "transport_error"): _ict_completed_error,
    (ACCEPTED, "1xx"): _absorb,
    (ACCEPTED, "2xx"): _ict_pass,  # every 2xx (retransmitted or forked) goes to the TU
    (ACCEPTED, "final"): _absorb,
    (ACCEPTED, "M"): _terminate,
}


# Non-INVITE client transaction (§17.1.2).


class NonInviteClientTransaction(_ClientTransaction):
    """Trying → Proceeding → Completed; Timer E retransmits, capped at T2."""

    __slots__ = ()

    def __init__(
        self,
        request: Request,
        dest: object,
        reliable: bool,
        now: float,
        timers: TimerConfig = DEFAULT_TIMERS,
    ) -> None:
        super().__init__(request, dest, reliable, now, timers)
        self.state = TRYING

    def start(self, now: float) -> list[Action]:
        """Send the request; Timer E (unreliable only) and Timer F."""
        timers = self.timers
        if self.reliable:
            return [SendMessage(self.request, self.dest), StartTimer("F", timers.timeout)]
        return [
            SendMessage(self.request, self.dest),
            StartTimer("E", timers.t1),
            StartTimer("F", timers.timeout),
        ]


def _nict_timer_e(tx: NonInviteClientTransaction, _: object, now: float) -> list[Action]:
    t2 = tx.timers.t2
    tx._interval = t2 if tx.state == PROCEEDING else min(2 * tx._interval, t2)
    return [SendMessage(tx.request, tx.dest), StartTimer("E", tx._interval)]


def _nict_timer_f(tx: NonInviteClientTransaction, _: object, now: float) -> list[Action]:
    tx.state = TERMINATED
    if tx.reliable:
        return [Timeout(), Terminated()]
    return [CancelTimer("E"), Timeout(), Terminated()]


def _nict_1xx(tx: NonInviteClientTransaction, response: Response, now: float) -> list[Action]:
    tx.state = PROCEEDING
    return [PassToTU(response)]


def _nict_final(tx: NonInviteClientTransaction, response: Response, now: float) -> list[Action]:
    if tx.reliable:
        tx.state = TERMINATED
        return [CancelTimer("F"), PassToTU(response), Terminated()]
    tx.state = COMPLETED
    return [
        CancelTimer("E"),
        CancelTimer("F"),
        PassToTU(response),
        StartTimer("K", tx.timers.t4),
    ]


def _nict_error(tx: NonInviteClientTransaction, _: object, now: float) -> list[Action]:
    tx.state = TERMINATED
    if tx.reliable:
        return [CancelTimer("F"), TransportError(), Terminated()]
    return [CancelTimer("E"), CancelTimer("F"), TransportError(), Terminated()]


NonInviteClientTransaction.TABLE = {
    (TRYING, "E"): _nict_timer_e,
    (TRYING, "F"): _nict_timer_f,
    (TRYING, "1xx"): _nict_1xx,
    (TRYING, "2xx"): _nict_final,
    (TRYING, "final"): _nict_final,
    (TRYING, "transport_error"): _nict_error,
    (PROCEEDING, "E"): _nict_timer_e,
    (PROCEEDING, "F"): _nict_timer_f,
    (PROCEEDING, "1xx"): _nict_1xx,
    (PROCEEDING, "2xx"): _nict_final,
    (PROCEEDING, "final"): _nict_final,
    (PROCEEDING, "transport_error"): _nict_error,
    (COMPLETED, "1xx"): _absorb,
    (COMPLETED, "2xx"): _absorb,
    (COMPLETED, "final"): _absorb,
    (COMPLETED, "K"): _terminate,
}

ServerTransaction = InviteServerTransaction | NonInviteServerTransaction
ClientTransaction = InviteClientTransaction | NonInviteClientTransaction

# States where a transaction only absorbs until its timer ends it, and whether it still
# answers retransmissions with its last message (a final response; an ACK for a non-2xx).
_KEEPS_LAST: dict[tuple[type, str], bool] = {
    (InviteServerTransaction, ACCEPTED): False,  # 2xx retransmissions are the TU's (RFC 6026)
    (InviteServerTransaction, CONFIRMED): False,
    (NonInviteServerTransaction, COMPLETED): True,
    (InviteClientTransaction, COMPLETED): True,
    (InviteClientTransaction, ACCEPTED): False,
    (NonInviteClientTransaction, COMPLETED): False,
}


# -- the table -------------------------------------------------------------------


_AWAITING_FINAL = frozenset({CALLING, TRYING, PROCEEDING})


class TransactionTable:
    """Live transactions by key. Timers are named by (key, timer name).

    Every method returns the actions of the transaction it touched; a transaction
    whose actions end in :class:`Terminated` is removed.
    """

    __slots__ = ("_client", "_server", "timers", "trying")

    def __init__(self, timers: TimerConfig | None = None, *, trying: bool = True) -> None:
        self.timers = timers or DEFAULT_TIMERS
        self.trying = trying
        self._server: dict[TxKey, ServerTransaction] = {}
        self._client: dict[TxKey, ClientTransaction] = {}

    def on_request(
        self, request: Request, dest: object, reliable: bool, now: float
    ) -> tuple[TxKey | None, list[Action], bool]:
        """A received request → (key, actions, is_new).

        A new request creates a server transaction (``is_new``; its actions pass it to
        the TU). A retransmission is absorbed by its transaction. ACKs go to :meth:`on_ack`.
        """
        method = request.method
        if method == "ACK":
            key, actions = self.on_ack(request, now)
            return key, actions, False
        key = _server_key(request, method)
        server = self._server
        tx = server.get(key)
        if tx is not None:
            return key, self._finish(server, key, tx.receive(request, now)), False
        if method == "INVITE":
            tx = InviteServerTransaction(
                request, dest, reliable, now, self.timers, trying=self.trying
            )
        else:
            tx = NonInviteServerTransaction(request, dest, reliable, now, self.timers)
        server[key] = tx
        return key, tx.start(now), True

    def on_ack(self, ack: Request, now: float) -> tuple[TxKey | None, list[Action]]:
        """An ACK → (key, actions) when its INVITE transaction consumed it (non-2xx final).

        The key is None when the ACK is for the TU: no transaction matched (the ACK for a
        2xx) or the matched transaction was Accepted (RFC 6026 passes it up).
        """
        key = _server_key(ack, "INVITE")
        tx = self._server.get(key)
        if tx is None and key[0] == _RFC2543:
            key, tx = self._rfc2543_ack(ack, key)
        if tx is None:
            return None, [PassToTU(ack)]
        actions = tx.receive(ack, now)
        if tx.state == ACCEPTED:
            return None, actions
        return key, self._finish(self._server, key, actions)

    def _rfc2543_ack(self, ack: Request, key: TxKey) -> tuple[TxKey, ServerTransaction | None]:
        """§17.2.3: the ACK's To-tag equals the tag of the response, not of the INVITE."""
        alt = (*key[:2], None, *key[3:])
        tx = self._server.get(alt)
        last = tx.last_response if tx is not None else None
        if last is None or tag_of(last.headers.get("to") or "") != key[2]:
            return key, None
        return alt, tx

    def on_response(self, response: Response, now: float) -> tuple[TxKey | None, list[Action]]:
        """A received response → (key, actions); (None, []) when stray (RFC 6026 §8.4)."""
        key = client_key(response)
        tx = self._client.get(key)
        if tx is None:
            return None, []
        return key, self._finish(self._client, key, tx.receive(response, now))

    def respond(self, key: TxKey, response: Response, now: float) -> list[Action]:
        """The TU answers the server transaction ``key``."""
        tx = self._server.get(key)
        if tx is None:
            raise TransactionError(f"No server transaction {key!r}", 481)
        return self._finish(self._server, key, tx.respond(response, now))

    def start_client(
        self, request: Request, dest: object, reliable: bool, now: float
    ) -> tuple[TxKey, list[Action]]:
        """Create and start a client transaction for ``request`` (whose Via we branched)."""
        if request.method == "ACK":
            raise TransactionError("ACK is not sent through a client transaction")
        key = client_key(request)
        branch = key[0]
        if branch is None or len(branch) <= 7 or not branch.startswith(BRANCH_COOKIE):
            raise TransactionError(f"Client request needs an RFC 3261 branch, not {branch!r}")
        if key in self._client:
            raise TransactionError(f"Client transaction {key!r} exists (reused branch?)")
        cls = InviteClientTransaction if request.method == "INVITE" else NonInviteClientTransaction
        tx = cls(request, dest, reliable, now, self.timers)
        self._client[key] = tx
        return key, tx.start(now)

    def timer_fired(self, key: TxKey, name: str, now: float) -> list[Action]:
        """Timer ``name`` of transaction ``key`` fired; [] if the transaction is gone."""
        for txs in (self._server, self._client):
            tx = txs.get(key)
            if tx is not None:
                return self._finish(txs, key, tx.timer_fired(name, now))
        return []

    def transport_error(self, key: TxKey, now: float) -> list[Action]:
        """The transport could not deliver for transaction ``key``."""
        for txs in (self._server, self._client):
            tx = txs.get(key)
            if tx is not None:
                return self._finish(txs, key, tx.transport_error(now))
        return []

    def server(self, key: TxKey) -> ServerTransaction | None:
        return self._server.get(key)

    def client(self, key: TxKey) -> ClientTransaction | None:
        return self._client.get(key)

    def waiting_clients(
        self, to: Callable[[object], bool]
    ) -> list[tuple[TxKey, ClientTransaction]]:
        """Client transactions still waiting for a final response whose destination
        ``to`` accepts (a transport failure there fails them)."""
        return [
            (key, tx)
            for key, tx in self._client.items()
            if tx.state in _AWAITING_FINAL and to(tx.dest)
        ]

    def __len__(self) -> int:
        return len(self._server) + len(self._client)

    @staticmethod
    def _finish(txs: dict[TxKey, Any], key: TxKey, actions: list[Action]) -> list[Action]:
        if actions and actions[-1].__class__ is Terminated:
            del txs[key]
            return actions
        tx = txs.get(key)
        if tx is not None and tx.request.__class__ is not Spent:
            keep_last = _KEEPS_LAST.get((tx.__class__, tx.state))
            if keep_last is not None:
                tx.spend(keep_last)
        return actions


# -- 2xx retransmission by the UAS core (§13.3.1.4) ------------------------------


class TwoXXRetransmitter:
    """Re-sends a 2xx to INVITE from T1 doubling to T2 until the ACK, at most 64*T1.

    Retransmission is end to end, so it runs over reliable transports too. The
    transaction sends the first copy; :meth:`start` arms the timers ``RETRANSMIT``
    and ``GIVE_UP``. Pair ACKs with it through :func:`ack_key`.
    """

    RETRANSMIT: ClassVar[str] = "2xx"
    GIVE_UP: ClassVar[str] = "2xx-timeout"
    TABLE: ClassVar[dict[tuple[str, str], Handler]]

    __slots__ = ("_interval", "dest", "response", "state", "timers")

    def __init__(
        self, response: Response, dest: object, now: float, timers: TimerConfig = DEFAULT_TIMERS
    ) -> None:
        if not 200 <= response.status < 300:
            raise ValueError(f"Only a 2xx is retransmitted by the core, not {response.status}")
        self.response = response
        self.dest = dest
        self.timers = timers
        self.state = "Retransmitting"
        self._interval = timers.t1

    def start(self, now: float) -> list[Action]:
        return [
            StartTimer(self.RETRANSMIT, self.timers.t1),
            StartTimer(self.GIVE_UP, self.timers.timeout),
        ]

    def ack_received(self, now: float) -> list[Action]:
        """The ACK arrived: stop. Later ACKs are absorbed."""
        return self._dispatch("ack", now)

    def stop(self, now: float) -> list[Action]:
        """The TU gave up on the dialog (e.g. sent BYE): stop retransmitting."""
        return self._dispatch("stop", now)

    def timer_fired(self, name: str, now: float) -> list[Action]:
        return self._dispatch(name, now)

    def _dispatch(self, event: str, now: float) -> list[Action]:
        handler = self.TABLE.get((self.state, event))
        if handler is None:
            raise TransactionError(f"TwoXXRetransmitter: no transition for {event} in {self.state}")
        return handler(self, None, now)


def _r2xx_retransmit(r: TwoXXRetransmitter, _: object, now: float) -> list[Action]:
    r._interval = min(2 * r._interval, r.timers.t2)
    return [SendMessage(r.response, r.dest), StartTimer(r.RETRANSMIT, r._interval)]


def _r2xx_stop(r: TwoXXRetransmitter, _: object, now: float) -> list[Action]:
    r.state = "Done"
    return [CancelTimer(r.RETRANSMIT), CancelTimer(r.GIVE_UP)]


def _r2xx_give_up(r: TwoXXRetransmitter, _: object, now: float) -> list[Action]:
    r.state = "Done"
    return [CancelTimer(r.RETRANSMIT), AckTimeout()]


TwoXXRetransmitter.TABLE = {
    ("Retransmitting", "ack"): _r2xx_stop,
    ("Retransmitting", "stop"): _r2xx_stop,
    ("Retransmitting", TwoXXRetransmitter.RETRANSMIT): _r2xx_retransmit,
    ("Retransmitting", TwoXXRetransmitter.GIVE_UP): _r2xx_give_up,
    ("Done", "ack"): _absorb,
    ("Done", "stop"): _absorb,
}
