"""The outbound trunk, pure: where calls to the public network go, which forward targets
are allowed, and the headers that say who calls and on whose behalf.

- :class:`Trunk`: the provider's SIP peer, the E.164 prefixes a forward may go to, and
  how a diversion is signalled (``Diversion``, RFC 5806; ``History-Info``, RFC 7044).
- :func:`external_number`: a dialled string that is a public number (not an extension)
  in E.164 form.
- :func:`caller_identity`: ``From``, ``P-Asserted-Identity`` (RFC 3325) and ``Privacy``
  (RFC 3323) for the caller-ID a profile shows, or hides.
- :func:`diversion_headers`: who forwarded the call, and why.
- :func:`trunk_target`: one B2BUA leg to a number through the trunk.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers

from ivr.b2bua import Target
from ivr.routing.numbers import NumberError, NumberPlan
from ivr.sip.core import Peer
from ivr.sip.uri import UriError, parse_uri

__all__ = [
    "ANONYMOUS",
    "DIVERSION_MODES",
    "REASONS",
    "Trunk",
    "caller_identity",
    "diversion_headers",
    "divert_reason",
    "external_number",
    "parse_peer",
    "quoted",
    "trunk_target",
]

TRUNK_TRANSPORTS = ("udp", "tcp")  # TCP: one connection to the peer, opened on demand
DIVERSION_MODES = ("diversion", "history-info")
# RFC 5806 §4 reasons we use, with the RFC 4458 cause History-Info carries for them.
REASONS: dict[str, int] = {
    "unconditional": 302,
    "user-busy": 486,
    "no-answer": 408,
    "unavailable": 503,
    "follow-me": 302,
    "deflection": 480,
    "unknown": 404,
}
ANONYMOUS = '"Anonymous" <sip:anonymous@anonymous.invalid>'
_PREFIX = re.compile(r"\+[0-9]{1,15}")


def parse_peer(text: str) -> tuple[str, int, str]:
    """``sip:HOST[:PORT][;transport=udp|tcp]`` → (host, port, transport); ValueError if not."""
    try:
        uri = parse_uri(text.strip())
    except UriError as exc:
        raise ValueError(f"must be a SIP URI like 'sip:192.0.2.10:5060', got {text!r}") from exc
    if uri.scheme != "sip" or not uri.host or uri.user is not None:
        raise ValueError(f"must be a SIP URI like 'sip:192.0.2.10:5060', got {text!r}")
    host = uri.host[1:-1] if uri.host.startswith("[") else uri.host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"the host must be an IP address, got {host!r}") from None
    transport = (uri.param("transport") or "udp").lower()
    if transport not in TRUNK_TRANSPORTS:
        raise ValueError(
            f"transport must be one of {', '.join(TRUNK_TRANSPORTS)}, got {transport!r}"
        )
    return host, uri.port or 5060, transport


@dataclass(frozen=True, slots=True, kw_only=True)
class Trunk:
    """The provider's SIP peer (``host``:``port`` over ``transport``), the E.164
    prefixes external forwards may go to (``allow``), and how diversion is signalled."""

    host: str
    port: int = 5060
    transport: str = "udp"
    allow: tuple[str, ...] = ()
    diversion: tuple[str, ...] = ("diversion",)

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.host)
        if not 1 <= self.port <= 65535:
            raise ValueError("port must be 1-65535")
        if self.transport not in TRUNK_TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRUNK_TRANSPORTS)}")
        for prefix in self.allow:
            if _PREFIX.fullmatch(prefix) is None:
                raise ValueError(f"allow: {prefix!r} is not an E.164 prefix like '+46'")
        if not set(self.diversion) <= set(DIVERSION_MODES) or not self.diversion:
            raise ValueError("diversion must list 'diversion' and/or 'history-info'")

    @property
    def peer(self) -> Peer:
        return Peer(self.transport, self.host, self.port)

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def uri(self, number: str) -> str:
        """The Request-URI for ``number`` at the trunk."""
        return f"sip:{number}@{self.hostport};user=phone"

    def allows(self, number: str) -> bool:
        """Whether an external forward may go to ``number`` (E.164)."""
        return any(number.startswith(prefix) for prefix in self.allow)


def external_number(dialled: str, numbers: NumberPlan) -> str | None:
    """``dialled`` as an E.164 public number, an emergency number as dialled (``112``),
    or None (an extension, a code, garbage)."""
    text = dialled.strip()
    if not text or numbers.is_extension(text):
        return None
    if text.isdigit() and phonenumbers.is_emergency_number(text, numbers.region):
        return text
    try:
        return numbers.normalise(text)
    except NumberError:
        return None


def quoted(name: str) -> str:
    """A display name as a quoted string."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def caller_identity(
    shown: str | None, asserted: str, domain: str, name: str | None = None
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``From`` (without tag) and the identity headers for an outgoing call.

    ``shown``: the number the callee sees (None: hidden, RFC 3323 anonymous From plus
    ``Privacy: id``); ``asserted``: the number the trunk is told in
    ``P-Asserted-Identity`` either way (the provider needs it for billing and 112)."""
    pai = ("P-Asserted-Identity", f"<sip:{asserted}@{domain}>")
    if shown is None:
        return ANONYMOUS, (pai, ("Privacy", "id"))
    display = f"{quoted(name)} " if name else ""
    return f"{display}<sip:{shown}@{domain}>", (("P-Asserted-Identity", f"<sip:{shown}@{domain}>"),)


def divert_reason(statuses: Sequence[int] | None) -> str:
    """The Diversion reason for a forward: ``unconditional`` (no ringing before),
    ``user-busy`` (a device said 486/600) or ``no-answer``."""
    if statuses is None:
        return "unconditional"
    if any(status in (486, 600) for status in statuses):
        return "user-busy"
    return "no-answer"


def diversion_headers(
    trunk: Trunk, user_number: str, domain: str, reason: str, target: str
) -> tuple[tuple[str, str], ...]:
    """The headers naming ``user_number`` as the one who diverted the call to ``target``."""
    if reason not in REASONS:
        raise ValueError(f"unknown diversion reason {reason!r}")
    headers: list[tuple[str, str]] = []
    if "diversion" in trunk.diversion:
        value = f"<sip:{user_number}@{domain}>;reason={reason};counter=1;privacy=off"
        headers.append(("Diversion", value))
    if "history-info" in trunk.diversion:
        cause = REASONS[reason]
        first = f"<sip:{user_number}@{domain}>;index=1"
        second = f"<{trunk.uri(target)}?Reason=SIP%3Bcause%3D{cause}>;index=1.1"
        headers.append(("History-Info", f"{first}, {second}"))
    return tuple(headers)


def trunk_target(
    trunk: Trunk,
    number: str,
    device: str,
    *,
    from_value: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Target:
    """A B2BUA leg to ``number`` through the trunk (To names the number)."""
    uri = trunk.uri(number)
    return Target(
        uri,
        trunk.peer,
        device,
        to_value=f"<{uri}>",
        from_value=from_value,
        headers=tuple(headers),
    )
