"""Checks on a parsed message before transaction processing (RFC 3261 §8.2.1-8.2.2, §16.3).

A failed check raises :class:`SipParseError` whose ``status``, ``reason`` and
``headers`` are the response to send: 400 naming the header at fault, 416 for
a Request-URI scheme we do not serve, 420 (:class:`BadExtensionError`, with
``Unsupported``) for unknown Require options, 483 from :func:`check_max_forwards`.
Responses that fail :func:`validate_response` are dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import ParamSpec, TypeVar

from ivr.sip.headers import (
    MAX_DELTA_SECONDS,
    CSeq,
    param,
    parse_contacts,
    parse_cseq,
    parse_int_header,
    parse_name_addr,
    parse_vias,
)
from ivr.sip.message import Request, Response, SipParseError, split_list
from ivr.sip.uri import SUPPORTED_SCHEMES, parse_uri

MAX_FORWARDS_LIMIT = 255
DEFAULT_MAX_FORWARDS = 70

# §8.1.1 order; Max-Forwards is optional for RFC 2543 peers (RFC 4475 §3.4.1).
_MANDATORY = (
    ("to", "To"),
    ("from", "From"),
    ("cseq", "CSeq"),
    ("call-id", "Call-ID"),
    ("via", "Via"),
)
_SINGLE = (
    ("to", "To"),
    ("from", "From"),
    ("cseq", "CSeq"),
    ("call-id", "Call-ID"),
    ("max-forwards", "Max-Forwards"),
    ("content-type", "Content-Type"),
    ("expires", "Expires"),
)
_EXAMINED = frozenset(
    {name for name, _ in _SINGLE} | {"via", "contact", "require", "proxy-require"}
)
_CALL_ID_RE = re.compile(r"[^\x00-\x20\x7f]+\Z")
_OPTION_TAG_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_QVALUE_RE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z")
_NO_REQUIRE_CHECK = frozenset({"ACK", "CANCEL"})

_P = ParamSpec("_P")
_T = TypeVar("_T")


class BadExtensionError(SipParseError):
    """420 Bad Extension; ``unsupported`` lists the option tags, also in ``headers``."""

    def __init__(self, unsupported: Collection[str]) -> None:
        self.unsupported: tuple[str, ...] = tuple(unsupported)
        listed = ", ".join(self.unsupported)
        super().__init__(
            f"Bad Extension (unsupported: {listed})", 420, headers=[("Unsupported", listed)]
        )


def validate_request(
    request: Request,
    *,
    supported: Collection[str] = (),
    schemes: Collection[str] = SUPPORTED_SCHEMES,
    proxy: bool = False,
) -> None:
    """Raise :class:`SipParseError` if ``request`` must be refused before a transaction.

    ``supported`` are our option tags (compared case-insensitively); ``schemes`` the
    Request-URI schemes we serve; ``proxy`` also enforces Proxy-Require. Checks,
    in order: mandatory and single-valued headers (400), syntax of Via, From, To,
    Call-ID, CSeq, Max-Forwards, Expires and Contact, Content-Type present with a
    body (400), CSeq method (400), Request-URI syntax (400) and scheme (416),
    Require (420). Max-Forwards 0 is not refused here: see :func:`check_max_forwards`.
    """
    fields = _fields(request)
    cseq = _check_common(fields, all_vias=True)
    for value in fields.get("max-forwards", ()):
        _parsed("Max-Forwards", parse_int_header, value, "Max-Forwards", maximum=MAX_FORWARDS_LIMIT)
    for value in fields.get("expires", ()):
        _parsed("Expires", parse_int_header, value, "Expires", maximum=MAX_DELTA_SECONDS)
    if "contact" in fields:
        _check_contacts(request.method, fields)
    if request.body and "content-type" not in fields:
        raise SipParseError("Missing Content-Type header (the body is not empty)")
    if cseq.method != request.method:
        raise SipParseError(
            f"CSeq method does not match: {cseq.method[:32]!r} in a {request.method[:32]!r} request"
        )
    try:
        uri = parse_uri(request.uri)
    except SipParseError as exc:
        raise SipParseError(f"Malformed Request-URI: {exc.reason}") from None
    if uri.scheme not in schemes:
        raise SipParseError(f"Unsupported URI scheme {uri.scheme[:32]!r}", 416)
    if request.method not in _NO_REQUIRE_CHECK:
        _check_require(fields, supported, proxy)


def validate_response(response: Response) -> None:
    """Raise :class:`SipParseError` if ``response`` is garbage a client must drop.

    Status 100-699, a parsable top Via, exactly one From, To, Call-ID and CSeq,
    all well-formed (CSeq number below 2**31).
    """
    if not 100 <= response.status <= 699:
        raise SipParseError(f"Status code out of range: {response.status}")
    _check_common(_fields(response), all_vias=False)


def max_forwards(request: Request) -> int | None:
    """The request's Max-Forwards, or None when absent (RFC 2543 peers)."""
    value = request.headers.get("max-forwards")
    if value is None:
        return None
    return _parsed(
        "Max-Forwards", parse_int_header, value, "Max-Forwards", maximum=MAX_FORWARDS_LIMIT
    )


def check_max_forwards(request: Request, *, default: int = DEFAULT_MAX_FORWARDS) -> int:
    """Max-Forwards for a copy we would forward (decremented, ``default`` if absent).

    Raises 483 Too Many Hops when it is 0 (RFC 3261 §16.3 step 3). A UAS answering a
    request itself (OPTIONS to us with Max-Forwards 0) must not call this.
    """
    hops = max_forwards(request)
    if hops is None:
        return default
    if hops == 0:
        raise SipParseError("Too Many Hops", 483)
    return hops - 1


def _fields(message: Request | Response) -> dict[str, list[str]]:
    """The header lines this module looks at, by name, in one pass."""
    fields: dict[str, list[str]] = {}
    for name, value in message.headers:
        if name in _EXAMINED:
            found = fields.get(name)
            if found is None:
                fields[name] = [value]
            else:
                found.append(value)
    return fields


def _check_common(fields: dict[str, list[str]], *, all_vias: bool) -> CSeq:
    """Presence, uniqueness and syntax of Via, From, To, Call-ID and CSeq."""
    missing = [label for name, label in _MANDATORY if name not in fields]
    if missing:
        raise SipParseError(f"Missing {_listed(missing)}")
    duplicated = [label for name, label in _SINGLE if len(fields.get(name, ())) > 1]
    if duplicated:
        raise SipParseError(f"Duplicate {_listed(duplicated)}")
    for value in fields["via"] if all_vias else fields["via"][:1]:
        _parsed("Via", parse_vias, value)
    _parsed("From", parse_name_addr, fields["from"][0])
    _parsed("To", parse_name_addr, fields["to"][0])
    if not _CALL_ID_RE.match(fields["call-id"][0]):
        raise SipParseError("Malformed Call-ID header")
    return _parsed("CSeq", parse_cseq, fields["cseq"][0])


def _listed(labels: list[str]) -> str:
    return f"{', '.join(labels)} header{'s' if len(labels) > 1 else ''}"


def _check_contacts(method: str, fields: dict[str, list[str]]) -> None:
    total = 0
    wildcard = False
    for value in fields["contact"]:
        contacts = _parsed("Contact", parse_contacts, value)
        if contacts is None:
            wildcard = True
            total += 1
            continue
        total += len(contacts)
        for contact in contacts:
            expires = param(contact.params, "expires")
            if expires is not None:
                _parsed("Contact", parse_int_header, expires, "expires", maximum=MAX_DELTA_SECONDS)
            q = param(contact.params, "q")
            if q is not None and not _QVALUE_RE.match(q):
                raise SipParseError(f"Malformed Contact header: q value {q[:10]!r}")
    if wildcard:
        if method != "REGISTER" or total != 1:
            raise SipParseError("Malformed Contact header: '*' must be the only contact")
        expires_values = fields.get("expires")
        if not expires_values or parse_int_header(
            expires_values[0], "Expires", maximum=MAX_DELTA_SECONDS
        ):
            raise SipParseError("Malformed Contact header: '*' requires Expires: 0")


def _check_require(fields: dict[str, list[str]], supported: Collection[str], proxy: bool) -> None:
    if "require" not in fields and not (proxy and "proxy-require" in fields):
        return
    known = {tag.lower() for tag in supported}
    unsupported: list[str] = []
    for name, label in (("require", "Require"), ("proxy-require", "Proxy-Require")):
        if name == "proxy-require" and not proxy:
            break
        for value in fields.get(name, ()):
            for tag in split_list(value, keep_empty=True):
                if not _OPTION_TAG_RE.match(tag):
                    raise SipParseError(f"Malformed {label} header")
                if tag.lower() not in known and tag not in unsupported:
                    unsupported.append(tag)
    if unsupported:
        raise BadExtensionError(unsupported)


def _parsed(label: str, parser: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``parser(*args)`` with its error reworded to name the header at fault."""
    try:
        return parser(*args, **kwargs)
    except SipParseError as exc:
        raise SipParseError(f"Malformed {label} header: {exc.reason}") from None
