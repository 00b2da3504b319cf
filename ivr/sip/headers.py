"""Structured SIP header values: Via, name-addr (From/To/Contact/Route), CSeq, parameters.

Every parser accepts the linear white space RFC 3261 allows around ``;``, ``=``,
``/`` and ``:`` (folded lines reach it as single spaces) and raises
:class:`SipParseError` (status 400) on anything else.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field, replace

from ivr.sip.message import SipParseError, split_list
from ivr.sip.uri import Uri, parse_uri

BRANCH_COOKIE = "z9hG4bK"
MAX_CSEQ = 2**31 - 1
MAX_DELTA_SECONDS = 2**32 - 1

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN_RE = re.compile(_TOKEN + r"\Z")
_VIA_RE = re.compile(
    r"[ \t]*(?i:SIP)[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*(" + _TOKEN + r")[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*(.*)\Z",
    re.S,
)
# gen-value: a token, a host (IPv6 with or without brackets) or a quoted-string.
_PARAM_VALUE_RE = re.compile(r'(?:[^\x00-\x20\x7f;,"<>]++|"(?:[^"\\\r\n]++|\\[^\r\n])*+")\Z')
_DISPLAY_CHARS = r"[A-Za-z0-9\-.!%*_+`'~\x80-\U0010ffff]++"
_DISPLAY_RE = re.compile(_DISPLAY_CHARS + r"(?:[ \t]++" + _DISPLAY_CHARS + r")*+\Z")
_CSEQ_RE = re.compile(r"[ \t]*([0-9]+)[ \t]+(" + _TOKEN + r")[ \t]*\Z")
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)
_QUOTED_RE = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.S)
_PARAM_ITEM_RE = re.compile(r'(?:[^;"]++|"(?:[^"\\]++|\\.)*+")*+', re.S)
# name[=value] *(;name[=value]) with token names and unquoted values: what _param_list
# accepts without whitespace or quotes, checked in one match.
_SIMPLE_PARAM = _TOKEN + r'(?:=[^\x00-\x20\x7f;,"<>]+)?'
_SIMPLE_PARAMS_RE = re.compile(_SIMPLE_PARAM + r"(?:;" + _SIMPLE_PARAM + r")*\Z")

Params = tuple[tuple[str, str | None], ...]


def parse_params(text: str, *, what: str = "header") -> Params:
    """Parse ``;a=b;c;d="q"`` (leading ``;`` optional). Quoted values keep their quotes."""
    text = text.strip(" \t")
    if not text:
        return ()
    if text[0] == ";":
        text = text[1:]
    return _param_list(text, what)


def _param_list(text: str, what: str) -> Params:
    """The parameters after a ``;``; an empty one (``;;``, trailing ``;``) is an error."""
    params: list[tuple[str, str | None]] = []
    if _SIMPLE_PARAMS_RE.match(text):  # the common case: no whitespace, no quotes
        for item in text.split(";"):
            name, eq, value = item.partition("=")
            params.append((name, value) if eq else (name, None))
        return tuple(params)
    for item in _split_semicolons(text):
        name, eq, value = item.partition("=")
        name = name.strip(" \t")
        if not _TOKEN_RE.match(name):
            raise SipParseError(f"Malformed {what} parameter {_snippet(item, 30)!r}")
        if eq:
            value = value.strip(" \t")
            if not _PARAM_VALUE_RE.match(value):
                raise SipParseError(f"Malformed value for {what} parameter {name[:30]!r}")
            params.append((name, value))
        else:
            params.append((name, None))
    return tuple(params)


def _split_semicolons(text: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    items: list[str] = []
    match = _PARAM_ITEM_RE.match
    size = len(text)
    pos = 0
    while True:
        end = match(text, pos).end()
        if end < size and text[end] != ";":
            raise SipParseError("Unbalanced quotes in parameters")
        items.append(text[pos:end])
        if end >= size:
            return items
        pos = end + 1


def _snippet(text: str, length: int) -> str:
    return text.strip(" \t")[:length]


def param(params: Params, name: str) -> str | None:
    """Value of a parameter ('' for a flag), or None when absent; names are case-insensitive."""
    key = name.lower()
    for n, v in params:
        if n.lower() == key:
            return "" if v is None else v
    return None


def format_params(params: Params) -> str:
    """``;name=value;flag`` for a params tuple."""
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


def _check_ipv6(host: str, what: str) -> None:
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        raise SipParseError(f"Malformed IPv6 reference {host[:48]!r} in {what}") from None


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=tuple)

    @property
    def branch(self) -> str | None:
        """The branch parameter, or None."""
        return param(self.params, "branch")

    @property
    def rfc3261_branch(self) -> bool:
        """Whether the branch has the magic cookie and more (RFC 3261 §17.2.3 matching)."""
        branch = self.branch
        return branch is not None and branch.startswith(BRANCH_COOKIE) and len(branch) > 7

    def with_received(self, host: str, port: int) -> Via:
        """RFC 3261 §18.2.1 and RFC 3581: add received (if differs) and fill rport."""
        params = self.received_params(host, port)
        return self if params is None else Via(self.transport, self.host, self.port, params)

    def received_params(self, host: str, port: int) -> Params | None:
        """The params :meth:`with_received` gives, or None when they stay as they are."""
        has_rport = False
        for n, _ in self.params:
            if n == "rport" or n.lower() == "rport":
                has_rport = True
                break
        if not has_rport and self.host == host:
            return None
        params = [(n, v) for n, v in self.params if n.lower() != "received"]
        params.append(("received", host))
        if has_rport:
            rport = str(port)
            params = [(n, rport if n.lower() == "rport" else v) for n, v in params]
        return tuple(params)

    def __str__(self) -> str:
        host = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/2.0/{self.transport} {host}{format_params(self.params)}"


@functools.lru_cache(maxsize=4096)
def parse_via(value: str) -> Via:
    """One via-parm (a Via header line may hold several: see :func:`parse_vias`)."""
    match = _VIA_RE.match(value)
    if match is None:
        raise SipParseError(f"Malformed Via {_snippet(value, 60)!r}")
    transport, host, port, rest = match.groups()
    if host[0] == "[":
        _check_ipv6(host, "Via")
    port_no = int(port) if port else None
    if port_no is not None and not 0 < port_no < 65536:
        raise SipParseError("Port out of range in Via")
    rest = rest.rstrip(" \t")
    if rest and rest[0] != ";":
        raise SipParseError(f"Malformed Via parameters {rest[:40]!r}")
    params = _param_list(rest[1:], "Via") if rest else ()
    return Via(transport.upper(), host.lower(), port_no, params)


def parse_vias(value: str) -> list[Via]:
    """Every via-parm of one Via header line; an empty element (``a,,b``) is an error."""
    return [parse_via(_element(item, "Via")) for item in split_list(value, keep_empty=True)]


def _element(item: str, what: str) -> str:
    if not item:
        raise SipParseError(f"Empty element in {what} list")
    return item


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route).

    ``display`` is as written (quotes and escapes kept); see ``display_text``.
    """

    uri: Uri
    display: str | None = None
    params: Params = field(default_factory=tuple)
    bracketed: bool = True

    @property
    def tag(self) -> str | None:
        """The tag header parameter ('' for a bare flag), or None."""
        return param(self.params, "tag")

    @property
    def display_text(self) -> str | None:
        """The display name without quotes and quoted-pair escapes."""
        display = self.display
        if display is None or display[:1] != '"':
            return display
        return _QUOTED_PAIR_RE.sub(r"\1", display[1:-1])

    def with_tag(self, tag: str) -> NameAddr:
        """A copy whose tag parameter is ``tag`` (replacing any other)."""
        params = tuple((n, v) for n, v in self.params if n.lower() != "tag")
        return replace(self, params=(*params, ("tag", tag)))

    def __str__(self) -> str:
        display = f"{self.display} " if self.display else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"


@functools.lru_cache(maxsize=4096)
def parse_name_addr(value: str) -> NameAddr:
    """Parse ``"Name" <sip:u@h>;tag=x`` or ``sip:u@h;tag=x`` (params then belong to the header)."""
    # Fast path: ``<...>;tag=token`` reuses the cached parse of ``<...>`` (a dialog's
    # From/To without its tag is the same for every call of a device).
    at = value.rfind(";tag=")
    if at > 0 and value[at - 1] == ">":
        tag = value[at + 5 :]
        if _TOKEN_RE.match(tag):
            base = parse_name_addr(value[:at])
            if base.bracketed and not base.params:
                return NameAddr(base.uri, base.display, (("tag", tag),), True)
    return _parse_name_addr(value)


def _parse_name_addr(value: str) -> NameAddr:
    text = value.strip(" \t")
    if not text:
        raise SipParseError("Empty address")
    display: str | None = None
    if text[0] == '"':
        end = _closing_quote(text)
        display = text[: end + 1]
        text = text[end + 1 :].lstrip(" \t")
        if text[:1] != "<":
            raise SipParseError("Quoted display name not followed by <URI>")
        lt = 0
    else:
        lt = text.find("<")
        if lt > 0:
            display = text[:lt].rstrip(" \t")
            if not _DISPLAY_RE.match(display):
                raise SipParseError(f"Display name must be quoted: {display[:40]!r}")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError("Unclosed < in address")
        inner = text[lt + 1 : gt]
        if not inner or inner[0] in " \t" or inner[-1] in " \t":
            raise SipParseError("Whitespace inside <URI>" if inner else "Empty <> in address")
        uri = parse_uri(inner)
        tail = text[gt + 1 :].lstrip(" \t")
        if tail and tail[0] != ";":
            raise SipParseError(f"Unexpected text after <URI>: {tail[:30]!r}")
        return NameAddr(uri, display, _param_list(tail[1:], "address") if tail else (), True)
    uri_text, semicolon, rest = text.partition(";")
    uri_text = uri_text.rstrip(" \t")
    if " " in uri_text or "\t" in uri_text:
        raise SipParseError("Display name without <URI>, or whitespace in the address")
    if "?" in uri_text or "," in uri_text:
        raise SipParseError("A URI with '?' or ',' must be enclosed in <>")
    params = _param_list(rest, "address") if semicolon else ()
    return NameAddr(parse_uri(uri_text), None, params, False)


def parse_contacts(value: str) -> list[NameAddr] | None:
    """Every contact of one Contact header line; None for the wildcard ``*``."""
    if value.strip(" \t") == "*":
        return None
    return [
        parse_name_addr(_element(item, "Contact")) for item in split_list(value, keep_empty=True)
    ]


def _closing_quote(text: str) -> int:
    """Index of the quote closing the quoted-string that starts ``text``."""
    match = _QUOTED_RE.match(text)
    if match is None:
        raise SipParseError("Unbalanced quotes in display name")
    return match.end() - 1


@dataclass(frozen=True, slots=True)
class CSeq:
    """A CSeq value: sequence number and method."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@functools.lru_cache(maxsize=1024)  # "1 REGISTER", "2 INVITE": a handful of values
def parse_cseq(value: str) -> CSeq:
    """``<number> <method>``; the number must be below 2**31 (RFC 3261 §8.1.1.5)."""
    match = _CSEQ_RE.match(value)
    if match is None:
        raise SipParseError(f"Malformed CSeq {_snippet(value, 40)!r}")
    digits, method = match.groups()
    if len(digits.lstrip("0")) > 10 or int(digits) > MAX_CSEQ:
        raise SipParseError("CSeq number out of range")
    return CSeq(int(digits), method)


def parse_int_header(value: str, name: str, *, maximum: int = MAX_CSEQ) -> int:
    """A 1*DIGIT header value (Max-Forwards, Expires, ...) no larger than ``maximum``."""
    text = value.strip(" \t")
    if not (text.isdigit() and text.isascii()) or len(text.lstrip("0")) > 10:
        raise SipParseError(f"Bad {name} value {text[:20]!r}")
    number = int(text)
    if number > maximum:
        raise SipParseError(f"Bad {name} value {text[:20]!r}")
    return number
