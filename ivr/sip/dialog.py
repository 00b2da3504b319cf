"""SIP dialogs (RFC 3261 §12): identity, route set, CSeq and in-dialog requests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from ivr.sip.headers import NameAddr, parse_cseq, parse_name_addr
from ivr.sip.ids import Ids
from ivr.sip.message import Headers, Message, Request, Response, SipParseError
from ivr.sip.transaction import tag_of
from ivr.sip.uri import Uri, UriError, parse_uri

EARLY = "early"
CONFIRMED = "confirmed"
TERMINATED = "terminated"

# Methods whose Contact replaces the remote target (RFC 3261, 3311, 3515, 6665).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
# Request-URI parameters not allowed (RFC 3261 §19.1.1 table): dropped on strict routing.
_NOT_IN_REQUEST_URI = frozenset({"method"})

DialogId = tuple[str, str, str]


class DialogError(Exception):
    """A message a dialog cannot accept; ``status`` is what to answer (None: no answer)."""

    def __init__(self, reason: str, status: int | None = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _addr(message: Message, name: str) -> NameAddr:
    value = message.headers.get(name)
    if value is None:
        raise DialogError(f"Missing {name} header")
    try:
        return parse_name_addr(value)
    except SipParseError as exc:
        raise DialogError(f"Bad {name}: {exc.reason}") from exc


def _untagged(addr: NameAddr) -> NameAddr:
    params = tuple((n, v) for n, v in addr.params if n.lower() != "tag")
    if len(params) == len(addr.params):
        return addr
    return NameAddr(addr.uri, addr.display, params, addr.bracketed)


def _contact(message: Message) -> Uri | None:
    """The URI of the first Contact, None when there is none."""
    values = message.headers.get_all("contact")
    if not values:
        return None
    try:
        return parse_name_addr(values[0]).uri
    except SipParseError as exc:
        raise DialogError(f"Bad Contact: {exc.reason}") from exc


def _record_route(message: Message) -> tuple[NameAddr, ...]:
    try:
        return tuple(parse_name_addr(v) for v in message.headers.get_all("record-route"))
    except SipParseError as exc:
        raise DialogError(f"Bad Record-Route: {exc.reason}") from exc


def _cseq(message: Message) -> tuple[int, str]:
    try:
        cseq = parse_cseq(message.headers.get("cseq") or "")
    except SipParseError as exc:
        raise DialogError(exc.reason) from exc
    return cseq.number, cseq.method


@dataclass(slots=True, kw_only=True)
class Dialog:
    """One dialog's state (§12). ``local_cseq`` is the number the next request will use.

    ``local_uri``/``remote_uri`` are the From/To name-addrs without tags; the route set
    is kept in the order requests must carry it.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: Uri
    route_set: tuple[NameAddr, ...] = ()
    local_cseq: int = 1
    remote_cseq: int | None = None
    local_contact: str | None = None
    secure: bool = False
    state: str = EARLY
    invite_cseq: int | None = None

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(
        cls,
        request: Request,
        local_tag: str,
        local_contact: str,
        *,
        tls: bool = False,
        confirmed: bool = False,
    ) -> Dialog:
        """The dialog a UAS forms by answering ``request`` with a tagged 1xx/2xx (§12.1.1)."""
        target = _contact(request)
        if target is None:
            raise DialogError(f"{request.method} without Contact cannot create a dialog")
        number, _ = _cseq(request)
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=tag_of(request.headers.get("from") or "") or "",
            local_uri=_untagged(_addr(request, "to")),
            remote_uri=_untagged(_addr(request, "from")),
            remote_target=target,
            route_set=_record_route(request),
            remote_cseq=number,
            local_contact=local_contact,
            secure=tls and request.uri[:5].lower() == "sips:",
            state=CONFIRMED if confirmed else EARLY,
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response, *, tls: bool = False) -> Dialog:
        """The dialog a UAC's ``request`` formed with a tagged 101-299 ``response`` (§12.1.2).

        A response without Contact keeps the Request-URI as remote target; a 2xx without
        To-tag (RFC 2543 peers) gets an empty remote tag.
        """
        status = response.status
        remote_tag = tag_of(response.headers.get("to") or "")
        if not 100 < status < 300 or (status < 200 and remote_tag is None):
            raise DialogError(f"A {status} response does not create a dialog", None)
        local_tag = tag_of(request.headers.get("from") or "")
        if local_tag is None:
            raise DialogError("Request without From-tag cannot create a dialog", None)
        number, method = _cseq(request)
        target = _contact(response)
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag or "",
            local_uri=_untagged(_addr(request, "from")),
            remote_uri=_untagged(_addr(response, "to")),
            remote_target=target or _request_uri(request),
            route_set=_record_route(response)[::-1],
            local_cseq=number + 1,
            local_contact=(request.headers.get_all("contact") or [None])[0],
            secure=tls and request.uri[:5].lower() == "sips:",
            state=CONFIRMED if status >= 200 else EARLY,
            invite_cseq=number if method == "INVITE" else None,
        )

    def create_request(
        self, method: str, ids: Ids, via_host: str, via_port: int, transport: str
    ) -> Request:
        """An in-dialog request (§12.2.1.1): Request-URI and Route from the route set.

        An ACK reuses the CSeq number of the last INVITE (§13.2.2.4); anything else takes
        ``local_cseq`` and advances it. CANCEL is built from its INVITE instead (§9.1).
        """
        if self.state == TERMINATED:
            raise DialogError("Dialog is terminated", None)
        if method == "CANCEL":
            raise DialogError("CANCEL is built from the INVITE it cancels (§9.1)", None)
        if method == "ACK":
            if self.invite_cseq is None:
                raise DialogError("No INVITE to acknowledge", None)
            number = self.invite_cseq
        else:
            number = self.local_cseq
            self.local_cseq = number + 1
            if method == "INVITE":
                self.invite_cseq = number
        uri, routes = self.request_target()
        remote = self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri
        items = [
            ("via", f"SIP/2.0/{transport.upper()} {via_host}:{via_port};branch={ids.branch()}"),
            ("max-forwards", "70"),
        ]
        items.extend(("route", route) for route in routes)
        items += [
            ("from", str(self.local_uri.with_tag(self.local_tag))),
            ("to", str(remote)),
            ("call-id", self.call_id),
            ("cseq", f"{number} {method}"),
        ]
        if self.local_contact and method in TARGET_REFRESH:
            items.append(("contact", self.local_contact))
        return Request(method, uri, Headers(items))

    def request_target(self) -> tuple[str, list[str]]:
        """(Request-URI, Route values) per §12.2.1.1, loose or strict first hop."""
        target = self.remote_target
        if not self.route_set:
            return str(target), []
        first = self.route_set[0]
        if first.uri.has_param("lr"):
            return str(target), [str(route) for route in self.route_set]
        uri = replace(
            first.uri,
            params=tuple(p for p in first.uri.params if p[0].lower() not in _NOT_IN_REQUEST_URI),
            headers=None,
        )
        routes = [str(route) for route in self.route_set[1:]]
        routes.append(f"<{target}>")
        return str(uri), routes

    def receive_request(self, request: Request) -> str | None:
        """Check and absorb an in-dialog request (§12.2.2).

        Returns None when acceptable, else the reason for a 500 (CSeq lower than the
        last one seen). A target refresh with a Contact replaces the remote target.
        """
        method = request.method
        if method != "ACK" and method != "CANCEL":
            number, _ = _cseq(request)
            if self.remote_cseq is not None and number < self.remote_cseq:
                return f"CSeq {number} lower than {self.remote_cseq}"
            self.remote_cseq = number
        if method in TARGET_REFRESH:
            target = _contact(request)
            if target is not None:
                self.remote_target = target
        return None

    def receive_response(self, response: Response) -> None:
        """Update from a response to a request this UA sent in the dialog (§12.2.1.2, §13.2.2.4).

        A 2xx confirms an early dialog and recomputes its route set; a 2xx to a target
        refresh updates the remote target; a non-2xx final to the dialog's INVITE while
        early, or any 408/481, terminates it.
        """
        status = response.status
        if status in (408, 481):
            self.state = TERMINATED
            return
        number, method = _cseq(response)
        if self.state == EARLY and method == "INVITE" and number == self.invite_cseq:
            if status >= 300:
                self.state = TERMINATED
                return
            if status >= 200:
                self.state = CONFIRMED
                self.route_set = _record_route(response)[::-1]
        elif not 200 <= status < 300 or method not in TARGET_REFRESH:
            return
        target = _contact(response)
        if target is not None:
            self.remote_target = target

    def confirm(self) -> None:
        """The UAS sent its 2xx: early → confirmed."""
        if self.state == TERMINATED:
            raise DialogError("Dialog is terminated", None)
        self.state = CONFIRMED

    def terminate(self) -> None:
        self.state = TERMINATED


def _request_uri(request: Request) -> Uri:
    try:
        return parse_uri(request.uri)
    except UriError as exc:
        raise DialogError(f"Bad Request-URI: {exc}") from exc


class DialogTable:
    """Dialogs by id. For a received request the To-tag is ours; for a response, the From-tag."""

    __slots__ = ("_dialogs",)

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        self._dialogs[dialog.id] = dialog

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def remove(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.pop(dialog_id, None)

    def find_request(self, request: Request) -> Dialog | None:
        """The dialog of a received request: (Call-ID, To-tag, From-tag)."""
        headers = request.headers
        local = tag_of(headers.get("to") or "")
        if local is None:
            return None
        remote = tag_of(headers.get("from") or "") or ""
        return self._dialogs.get((request.call_id, local, remote))

    def find_response(self, response: Response) -> Dialog | None:
        """The dialog of a received response: (Call-ID, From-tag, To-tag)."""
        headers = response.headers
        local = tag_of(headers.get("from") or "")
        if local is None:
            return None
        remote = tag_of(headers.get("to") or "") or ""
        return self._dialogs.get((response.call_id, local, remote))

    def lookup(self, request: Request) -> Dialog | None:
        """None for an out-of-dialog request (no To-tag), else its dialog.

        Raises :class:`DialogError` with 481 when the To-tag names no dialog we hold
        (§12.2.2); for an ACK the status is None, as an ACK is never answered.
        """
        if tag_of(request.headers.get("to") or "") is None:
            return None
        dialog = self.find_request(request)
        if dialog is None or dialog.state == TERMINATED:
            status = None if request.method == "ACK" else 481
            raise DialogError("Call/Transaction Does Not Exist", status)
        return dialog

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def __contains__(self, dialog_id: object) -> bool:
        return dialog_id in self._dialogs
