"""Building responses from requests (RFC 3261 §8.2.6)."""

from __future__ import annotations

import re

from ivr.sip.headers import parse_name_addr
from ivr.sip.message import Headers, Request, Response, SipParseError

_SINGLE_COPIED = ("from", "to", "call-id", "cseq")
# Fallback for an unparsable To: a ``tag`` header parameter outside <...> and quotes.
_TAG_PARAM_RE = re.compile(r";[ \t]*tag[ \t]*(?:=|;|\Z)", re.IGNORECASE)
_NOT_PARAMS_RE = re.compile(r'"(?:[^"\\]++|\\.)*+"|<[^>]*+>', re.S)


def has_to_tag(value: str) -> bool:
    """Whether a To (or From) header value carries a ``tag`` header parameter."""
    try:
        return parse_name_addr(value).tag is not None
    except SipParseError:
        return _TAG_PARAM_RE.search(_NOT_PARAMS_RE.sub("", value)) is not None


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Response:
    """A response to ``request``: Via, From, To, Call-ID and CSeq copied, To-tag added.

    Every Via is copied in order; From, To, Call-ID and CSeq only once each (a
    request answered for carrying two of them must not get two back). The To-tag
    is added only when ``to_tag`` is given and the request's To has none (a
    100 Trying need not carry one). ``headers`` are appended (e.g. the
    ``SipParseError.headers`` of a 420).
    """
    items: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in request.headers:
        if name == "via":
            items.append((name, value))
        elif name in _SINGLE_COPIED and name not in seen:
            seen.add(name)
            if name == "to" and to_tag and not has_to_tag(value):
                value = f"{value};tag={to_tag}"
            items.append((name, value))
    if status == 100 and "timestamp" in request.headers:
        items.append(("timestamp", request.headers.get("timestamp") or ""))
    response_headers = Headers._from_normalized(items)
    for name, value in headers or ():
        response_headers.add(name, value)
    return Response(status, reason, response_headers, body)
