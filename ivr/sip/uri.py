"""SIP and SIPS URIs (RFC 3261 §19.1), tel URIs (RFC 3966), and other schemes kept opaque.

Components are stored as written (still %-escaped) so that a URI prints back
unchanged; ``Uri.user_decoded`` and ``Uri.param`` decode where RFC 3261 allows
escaping (user, password, parameters, headers) and nowhere else (the host).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from ivr.sip.message import SipParseError

SIP_SCHEMES = frozenset({"sip", "sips"})
SUPPORTED_SCHEMES = frozenset({"sip", "sips", "tel"})

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
# Never allowed anywhere in a URI: controls, SP, and the delimiters of name-addr.
_FORBIDDEN_RE = re.compile(r'[\x00-\x20\x7f<>"]')
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOSTPART_RE = re.compile(
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)(?::([0-9]{1,5}))?(?:;([^?]*))?(?:\?(.*))?\Z", re.S
)


# Fast path for plain URIs: no escapes, no ; ? / in the user part, no headers. Whatever it
# matches the general path would parse the same way; anything else takes that path.
_PLAIN_SIP_RE = re.compile(
    r"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)(?::([A-Za-z0-9\-_.!~*'()&=+$,]*))?@)?"
    r"([A-Za-z0-9\-._]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?"
    r"((?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+)?)*)\Z"
)


class UriError(SipParseError):
    """A malformed URI (a :class:`SipParseError` with status 400)."""


def unescape(text: str) -> str:
    """Decode %HH escapes; invalid UTF-8 is kept as surrogate escapes (``%00`` → NUL)."""
    if "%" not in text:
        return text
    return unquote_to_bytes(text).decode("utf-8", "surrogateescape")


Params = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class Uri:
    """A parsed URI, components as written (escaped).

    For ``tel:`` the number is in ``user`` and ``host`` is empty. For a scheme other
    than sip/sips/tel everything after ``scheme:`` is in ``user``.
    """

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = field(default_factory=tuple)
    headers: str | None = None

    @property
    def user_decoded(self) -> str | None:
        """The user part with %HH escapes decoded (``%23`` → ``#``, ``%00`` → NUL)."""
        return None if self.user is None else unescape(self.user)

    def param(self, name: str) -> str | None:
        """A URI parameter's decoded value ('' for a flag), or None; names match decoded."""
        key = name.lower()
        for n, v in self.params:
            if n.lower() == key or ("%" in n and unescape(n).lower() == key):
                return "" if v is None else unescape(v)
        return None

    def has_param(self, name: str) -> bool:
        """Whether the URI carries parameter ``name`` (e.g. ``lr``)."""
        return self.param(name) is not None

    @property
    def host_port(self) -> str:
        """``host`` or ``host:port``."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.scheme in SIP_SCHEMES:
            if self.user is not None:
                parts.append(self.user)
                if self.password is not None:
                    parts.append(":" + self.password)
                parts.append("@")
            parts.append(self.host_port)
        else:
            parts.append(self.user or "")
        for n, v in self.params:
            parts.append(f";{n}" if v is None else f";{n}={v}")
        if self.headers is not None:
            parts.append("?" + self.headers)
        return "".join(parts)


@functools.lru_cache(maxsize=4096)
def parse_uri(text: str) -> Uri:
    """Parse ``sip:user:pw@host:port;params?headers``, ``sips:``, ``tel:`` or another scheme.

    Unknown schemes parse to a Uri with only ``scheme`` and the rest kept in ``user``;
    the caller decides whether it is supported (416). Raises :class:`UriError`.
    """
    text = text.strip(" \t")
    plain = _PLAIN_SIP_RE.match(text)
    if plain is not None:
        scheme, user, password, host, port_text, param_text = plain.groups()
        if host[0] == "[":
            _check_ipv6(host)
        port = None
        if port_text is not None:
            port = int(port_text)
            if not 0 < port < 65536:
                raise UriError(f"Port out of range: {port}")
        params: Params = ()
        if param_text:
            params = tuple(
                (name, value if eq else None)
                for name, eq, value in (item.partition("=") for item in param_text[1:].split(";"))
            )
        return Uri(scheme, user, password, host.lower(), port, params, None)
    return _parse_general(text)


def _parse_general(text: str) -> Uri:
    """parse_uri without the fast path (``text`` already stripped)."""
    match = _SCHEME_RE.match(text)
    if match is None:
        raise UriError(f"URI without scheme: {text[:40]!r}")
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if not rest:
        raise UriError(f"Empty {scheme} URI")
    if _FORBIDDEN_RE.search(rest):
        raise UriError(f'Whitespace, control or <>" character in URI {text[:40]!r}')
    if scheme in SIP_SCHEMES:
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        number, semicolon, param_text = rest.partition(";")
        if not number:
            raise UriError("tel URI without a number")
        _check_escapes(number, "tel number")
        params = _parse_params(param_text) if semicolon else ()
        return Uri(scheme="tel", user=number, params=params)
    return Uri(scheme=scheme, user=rest)


def _parse_sip(scheme: str, rest: str) -> Uri:
    user = password = None
    at = rest.find("@")
    if at >= 0:
        # The user part may hold ; ? / , etc.: the host starts after the last @
        # that precedes the first ; or ? following the first @ (RFC 3261 §19.1.1).
        end = len(rest)
        for delimiter in ";?":
            found = rest.find(delimiter, at)
            if 0 <= found < end:
                end = found
        at = rest.rfind("@", at, end)
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not user:
            raise UriError("Empty user part in URI")
        _check_escapes(userinfo, "user part")
        password = pw if colon else None
    match = _HOSTPART_RE.match(rest)
    if match is None:
        raise UriError(f"Malformed host, port or parameters in URI: {rest[:40]!r}")
    host, port_text, param_text, headers = match.groups()
    if host[0] == "[":
        _check_ipv6(host)
    port = None
    if port_text is not None:
        port = int(port_text)
        if not 0 < port < 65536:
            raise UriError(f"Port out of range: {port}")
    if headers is not None:
        if not headers:
            raise UriError("Empty URI headers after '?'")
        _check_escapes(headers, "URI headers")
    return Uri(
        scheme=scheme,
        user=user,
        password=password,
        host=host.lower(),
        port=port,
        params=_parse_params(param_text) if param_text is not None else (),
        headers=headers,
    )


def _check_ipv6(host: str) -> None:
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        raise UriError(f"Malformed IPv6 reference {host[:48]!r}") from None


def _check_escapes(text: str, what: str) -> None:
    if "%" in text and _BAD_ESCAPE_RE.search(text):
        raise UriError(f"Malformed %-escape in {what}: {text[:40]!r}")


def _parse_params(text: str) -> Params:
    """``a=b;c`` (the part after the first ``;``) → ((name, value or None), ...)."""
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name:
            raise UriError("Empty URI parameter" if not item else "URI parameter without a name")
        if eq and not value:
            raise UriError(f"Empty value for URI parameter {name[:30]!r}")
        _check_escapes(item, "URI parameter")
        params.append((name, value if eq else None))
    return tuple(params)
