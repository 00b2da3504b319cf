"""SDP (RFC 4566) and the RFC 3264 offer/answer model for G.711 audio.

Parses and serializes session descriptions, answers an offer with one audio
stream (PCMU or PCMA, plus RFC 4733 telephone-event when offered), builds an
offer for INVITEs that came without SDP, and reads the peer's choice from an
answer. Pure: stdlib only.

Leniency: LF or CRLF line ends, blank lines and unknown line types are accepted;
a missing ``s=`` or ``t=`` line gets the usual default. Anything else malformed
raises :class:`SdpError` naming the line.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, cast

__all__ = [
    "DIRECTIONS",
    "Answer",
    "Attribute",
    "Connection",
    "MediaDescription",
    "MediaParams",
    "NoCommonCodec",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "Timing",
    "accept_answer",
    "answer",
    "make_offer",
    "parse_sdp",
]

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: Final[tuple[str, ...]] = ("sendrecv", "sendonly", "recvonly", "inactive")
MAX_SDP_BYTES: Final = 65536
SUPPORTED_CODECS: Final[frozenset[str]] = frozenset({"PCMU", "PCMA"})
RTP_PROTOS: Final[frozenset[str]] = frozenset({"RTP/AVP", "RTP/AVPF"})
DTMF_EVENTS: Final[frozenset[int]] = frozenset(range(16))  # 0-9 * # A-D

_STATIC_PT: Final[dict[int, tuple[str, int, int]]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
}
_PT_OF: Final[dict[str, int]] = {"PCMU": 0, "PCMA": 8}
_SEND_RECV: Final[dict[str, tuple[bool, bool]]] = {
    "sendrecv": (True, True),
    "sendonly": (True, False),
    "recvonly": (False, True),
    "inactive": (False, False),
}
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_HOSTNAME: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?")
_UNSPECIFIED: Final = frozenset({"0.0.0.0", "::"})


class SdpError(ValueError):
    """Malformed or unusable SDP. ``status`` is the SIP response to send (400)."""

    status: int = 400

    def __init__(self, message: str, *, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"SDP line {line}: {message}" if line is not None else message)


class NoCommonCodec(SdpError):
    """No acceptable audio stream: answer 488 with ``Warning: <warning_code> ...``.

    ``warning_code`` is 302 (incompatible transport), 304 (media type not
    available) or 305 (incompatible media format), per RFC 3261 §20.43.
    """

    status = 488
    _TEXTS: Final = {
        302: "Incompatible transport protocol",
        304: "Media type not available",
        305: "Incompatible media format",
    }

    def __init__(self, message: str, *, warning_code: int) -> None:
        if warning_code not in self._TEXTS:
            raise ValueError(f"unexpected warning code {warning_code}")
        self.warning_code = warning_code
        self.warning_text = self._TEXTS[warning_code]
        super().__init__(message)

    def warning(self, agent: str) -> str:
        """The Warning header value, e.g. ``305 ivr.example "Incompatible media format"``."""
        return f'{self.warning_code} {agent} "{self.warning_text}"'


# --- the description -------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)  # a few addresses recur in every call: ours, the peers'
def _addrtype_of(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"not an IP address: {address!r}") from None
    return "IP4" if ip.version == 4 else "IP6"


@functools.lru_cache(maxsize=1024)
def _check_address(addrtype: str, address: str) -> None:
    if addrtype not in ("IP4", "IP6"):
        raise ValueError(f"unknown address type {addrtype!r}")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if not _HOSTNAME.fullmatch(address) or address.replace(".", "").isdigit():
            raise ValueError(f"invalid {addrtype} address {address!r}") from None
        return
    if (ip.version == 4) != (addrtype == "IP4"):
        raise ValueError(f"{address!r} is not an {addrtype} address")


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=`` line. ``session_id`` and ``version`` are kept as the strings sent.

    Only the shape is checked: peers get this line wrong in harmless ways.
    """

    username: str
    session_id: str
    version: str
    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    def __post_init__(self) -> None:
        for name in ("username", "session_id", "version", "address", "addrtype", "nettype"):
            value = getattr(self, name)
            if not value or any(c.isspace() for c in value):
                raise ValueError(f"origin {name} must be one non-empty token, got {value!r}")

    def line(self) -> str:
        return (
            f"o={self.username} {self.session_id} {self.version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=`` line. ``suffix`` keeps a multicast ``/ttl[/count]`` as sent."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"
    suffix: str = ""

    def __post_init__(self) -> None:
        if self.nettype != "IN":
            raise ValueError(f"unsupported network type {self.nettype!r}")
        _check_address(self.addrtype, self.address)
        if self.suffix and not re.fullmatch(r"(/\d+){1,2}", self.suffix):
            raise ValueError(f"invalid connection address suffix {self.suffix!r}")

    @property
    def is_hold(self) -> bool:
        """``0.0.0.0`` / ``::``: the RFC 2543 way of saying "do not send to me"."""
        return self.address in _UNSPECIFIED

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """A connection line for an IP literal, picking IP4 or IP6."""
        return cls(address, _addrtype_of(address))

    def line(self) -> str:
        return f"c={self.nettype} {self.addrtype} {self.address}{self.suffix}"


@dataclass(frozen=True, slots=True)
class Timing:
    """``t=`` line with its ``r=`` repeat lines (kept verbatim)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.start < 0 or self.stop < 0:
            raise ValueError("timing values must not be negative")


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=name`` (a flag, ``value`` None) or ``a=name:value``."""

    name: str
    value: str | None = None

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.name):
            raise ValueError(f"invalid attribute name {self.name!r}")
        if self.value is not None and ("\r" in self.value or "\n" in self.value):
            raise ValueError("attribute value must not contain a line break")

    def line(self) -> str:
        return f"a={self.name}" if self.value is None else f"a={self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """A payload format: ``a=rtpmap:<pt> <encoding>/<clock_rate>[/<channels>]``."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} out of range 0-127")
        if not self.encoding or "/" in self.encoding or " " in self.encoding:
            raise ValueError(f"invalid encoding name {self.encoding!r}")
        if self.clock_rate <= 0 or self.channels <= 0:
            raise ValueError("clock rate and channels must be positive")

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        return _parse_rtpmap(value)

    @property
    def value(self) -> str:
        ch = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{ch}"

    def is_named(self, encoding: str, clock_rate: int = 8000) -> bool:
        return (
            self.encoding.upper() == encoding.upper()
            and self.clock_rate == clock_rate
            and self.channels == 1
        )


@functools.lru_cache(maxsize=512)  # "8 PCMA/8000", "101 telephone-event/8000": few values
def _parse_rtpmap(value: str) -> RtpMap:
    m = _RTPMAP_RE.fullmatch(value)
    if not m:
        raise ValueError(f"invalid rtpmap {value!r}")
    channels = int(m[4]) if m[4] else 1
    return RtpMap(int(m[1]), m[2], int(m[3]), channels)


_RTPMAP_RE = re.compile(r"\s*(\d{1,3})\s+([^/\s]+)/(\d+)(?:/(\d+))?\s*")


def _direction_of(attributes: Iterable[Attribute]) -> Direction | None:
    for attr in attributes:
        if attr.name in _SEND_RECV and attr.value is None:
            return cast(Direction, attr.name)
    return None


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section with its ``i=``, ``c=``, ``b=``, ``k=`` and ``a=`` lines."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    info: str | None = None
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.media):
            raise ValueError(f"invalid media type {self.media!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range")
        if self.port_count is not None and self.port_count < 1:
            raise ValueError("port count must be positive")
        if not re.fullmatch(r"[A-Za-z0-9/._\-]+", self.proto):
            raise ValueError(f"invalid transport protocol {self.proto!r}")
        for fmt in self.formats:
            if not fmt or any(c.isspace() for c in fmt):
                raise ValueError(f"invalid media format {fmt!r}")

    @property
    def is_rtp(self) -> bool:
        return self.proto.upper() in RTP_PROTOS

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats that are RTP payload type numbers, in offer order."""
        return tuple(int(f) for f in self.formats if f.isdigit() and int(f) <= 127)

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=name:value`` (None if absent or a flag)."""
        for attr in self.attributes:
            if attr.name == name:
                return attr.value
        return None

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """Payload formats by type: the ``a=rtpmap`` lines, then RFC 3551 static types."""
        maps: dict[int, RtpMap] = {}
        for attr in self.attributes:
            if attr.name == "rtpmap" and attr.value:
                try:
                    rm = RtpMap.parse(attr.value)
                except ValueError:
                    continue
                maps.setdefault(rm.payload_type, rm)
        for pt in self.payload_types:
            if pt not in maps and pt in _STATIC_PT:
                maps[pt] = RtpMap(pt, *_STATIC_PT[pt])
        return maps

    def fmtp(self, payload_type: int) -> str | None:
        """The ``a=fmtp`` parameters of ``payload_type``."""
        prefix = f"{payload_type} "
        for attr in self.attributes:
            if attr.name == "fmtp" and attr.value and attr.value.startswith(prefix):
                return attr.value[len(prefix) :].strip()
        return None

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, None when absent."""
        return _direction_of(self.attributes)

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        if value is None:
            return None
        try:
            ms = round(float(value))
        except ValueError:
            return None
        return ms if ms > 0 else None

    def lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out = [" ".join(["m=" + self.media, port, self.proto, *self.formats])]
        if self.info is not None:
            out.append(f"i={self.info}")
        if self.connection is not None:
            out.append(self.connection.line())
        out.extend(f"b={b}" for b in self.bandwidths)
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(a.line() for a in self.attributes)
        return out


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole session description."""

    origin: Origin
    name: str = "-"
    media: tuple[MediaDescription, ...] = ()
    connection: Connection | None = None
    timing: tuple[Timing, ...] = (Timing(),)
    attributes: tuple[Attribute, ...] = ()
    info: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    bandwidths: tuple[str, ...] = ()
    zone: str | None = None
    key: str | None = None
    version: int = 0

    def __post_init__(self) -> None:
        if self.version != 0:
            raise ValueError(f"unsupported SDP version {self.version}")
        if not self.name or "\n" in self.name or "\r" in self.name:
            raise ValueError("session name must be one non-empty line")
        if not self.timing:
            raise ValueError("at least one timing (t=) is required")

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, None when absent."""
        return _direction_of(self.attributes)

    def to_text(self) -> str:
        """Serialize with CRLF line ends (RFC 4566 §5)."""
        out = [f"v={self.version}", self.origin.line(), f"s={self.name}"]
        if self.info is not None:
            out.append(f"i={self.info}")
        if self.uri is not None:
            out.append(f"u={self.uri}")
        out.extend(f"e={e}" for e in self.emails)
        out.extend(f"p={p}" for p in self.phones)
        if self.connection is not None:
            out.append(self.connection.line())
        out.extend(f"b={b}" for b in self.bandwidths)
        for t in self.timing:
            out.append(f"t={t.start} {t.stop}")
            out.extend(f"r={r}" for r in t.repeats)
        if self.zone is not None:
            out.append(f"z={self.zone}")
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(a.line() for a in self.attributes)
        for m in self.media:
            out.extend(m.lines())
        return "\r\n".join(out) + "\r\n"

    def encode(self) -> bytes:
        return self.to_text().encode("utf-8")


# --- parsing ---------------------------------------------------------------------------


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise ValueError(f"o= needs 6 fields, got {len(parts)}")
    username, sess_id, sess_version, nettype, addrtype, address = parts
    return Origin(username, sess_id, sess_version, address, addrtype, nettype)


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise ValueError(f"c= needs 3 fields, got {len(parts)}")
    nettype, addrtype, address = parts
    base, slash, rest = address.partition("/")
    return Connection(base, addrtype, nettype, slash + rest)


def _parse_timing(value: str) -> Timing:
    parts = value.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"t= needs two integers, got {value!r}")
    return Timing(int(parts[0]), int(parts[1]))


def _parse_media(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise ValueError(f"m= needs media, port and proto, got {value!r}")
    media, port_text, proto, *formats = parts
    port_str, slash, count_str = port_text.partition("/")
    if not port_str.isdigit() or (slash and not count_str.isdigit()):
        raise ValueError(f"invalid port {port_text!r}")
    count = int(count_str) if slash else None
    return MediaDescription(media, int(port_str), proto, tuple(formats), count)


def _parse_attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    return Attribute(name, rest if colon else None)


def parse_sdp(text: str | bytes) -> SessionDescription:
    """Parse an SDP body; raise :class:`SdpError` (status 400) when malformed."""
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_SDP_BYTES:
            raise SdpError(f"SDP body of {len(text)} bytes exceeds {MAX_SDP_BYTES}")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError(f"SDP is not valid UTF-8 at byte {exc.start}") from None
    elif len(text) > MAX_SDP_BYTES:
        raise SdpError(f"SDP body of {len(text)} characters exceeds {MAX_SDP_BYTES}")

    session: dict[str, object] = {}
    lists: dict[str, list[str]] = {"e": [], "p": [], "b": []}
    timing: list[Timing] = []
    attrs: list[Attribute] = []
    media: list[MediaDescription] = []
    # per-media accumulators for the m= section being read
    cur: MediaDescription | None = None
    cur_fields: dict[str, Any] = {}
    cur_bw: list[str] = []
    cur_attrs: list[Attribute] = []

    def finish_media() -> None:
        if cur is not None:
            media.append(
                replace(cur, bandwidths=tuple(cur_bw), attributes=tuple(cur_attrs), **cur_fields)
            )

    first = True
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SdpError(f"expected '<type>=<value>', got {line[:40]!r}", line=lineno)
        kind, value = line[0], line[2:]
        try:
            if first:
                if kind != "v" or value.strip() != "0":
                    raise ValueError("an SDP body must start with v=0")
                first = False
                continue
            if kind == "m":
                finish_media()
                cur, cur_fields, cur_bw, cur_attrs = _parse_media(value), {}, [], []
            elif cur is not None:
                if kind == "c":
                    cur_fields["connection"] = _parse_connection(value)
                elif kind == "i":
                    cur_fields["info"] = value
                elif kind == "k":
                    cur_fields["key"] = value
                elif kind == "b":
                    cur_bw.append(value.strip())
                elif kind == "a":
                    cur_attrs.append(_parse_attribute(value))
            elif kind == "o":
                session["origin"] = _parse_origin(value)
            elif kind == "s":
                session["name"] = value if value.strip() else "-"
            elif kind == "c":
                session["connection"] = _parse_connection(value)
            elif kind in ("i", "u", "z", "k"):
                session[{"i": "info", "u": "uri", "z": "zone", "k": "key"}[kind]] = value
            elif kind in lists:
                lists[kind].append(value.strip())
            elif kind == "t":
                timing.append(_parse_timing(value))
            elif kind == "r":
                if not timing:
                    raise ValueError("r= before any t=")
                timing[-1] = replace(timing[-1], repeats=(*timing[-1].repeats, value))
            elif kind == "a":
                attrs.append(_parse_attribute(value))
        except SdpError:
            raise
        except ValueError as exc:
            raise SdpError(str(exc), line=lineno) from None
    if first:
        raise SdpError("empty SDP body")
    finish_media()
    if "origin" not in session:
        raise SdpError("missing o= line")
    try:
        return SessionDescription(
            origin=cast(Origin, session["origin"]),
            name=cast(str, session.get("name", "-")),
            info=cast("str | None", session.get("info")),
            uri=cast("str | None", session.get("uri")),
            emails=tuple(lists["e"]),
            phones=tuple(lists["p"]),
            connection=cast("Connection | None", session.get("connection")),
            bandwidths=tuple(lists["b"]),
            timing=tuple(timing) or (Timing(),),
            zone=cast("str | None", session.get("zone")),
            key=cast("str | None", session.get("key")),
            attributes=tuple(attrs),
            media=tuple(media),
        )
    except ValueError as exc:
        raise SdpError(str(exc)) from None


# --- offer / answer --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaParams:
    """The negotiated audio stream, seen from our side.

    ``direction`` is ours: ``sendonly`` means we send and do not receive.
    ``remote_addr``/``remote_port`` are where the peer wants our RTP.
    """

    payload_type: int
    codec: str
    telephone_event_pt: int | None
    remote_addr: str
    remote_port: int
    ptime: int
    direction: Direction
    stream_index: int = 0
    clock_rate: int = 8000

    def __post_init__(self) -> None:
        if self.codec not in SUPPORTED_CODECS:
            raise ValueError(f"unsupported codec {self.codec!r}")
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} out of range")
        if self.telephone_event_pt is not None and not 0 <= self.telephone_event_pt <= 127:
            raise ValueError(f"telephone-event payload type {self.telephone_event_pt} invalid")
        if self.telephone_event_pt == self.payload_type:
            raise ValueError("telephone-event and audio share a payload type")
        if not 0 <= self.remote_port <= 65535:
            raise ValueError(f"remote port {self.remote_port} out of range")
        if self.direction not in _SEND_RECV:
            raise ValueError(f"unknown direction {self.direction!r}")
        if self.ptime <= 0:
            raise ValueError("ptime must be positive")

    @property
    def sends(self) -> bool:
        """Whether we may send RTP (direction allows it and the peer gave an address)."""
        return (
            _SEND_RECV[self.direction][0]
            and self.remote_port != 0
            and self.remote_addr not in _UNSPECIFIED
        )

    @property
    def receives(self) -> bool:
        return _SEND_RECV[self.direction][1]


@dataclass(frozen=True, slots=True)
class Answer:
    """Our SDP answer and what it means for the call."""

    sdp: SessionDescription
    media: MediaParams

    @property
    def body(self) -> bytes:
        return self.sdp.encode()


def _combine(send: bool, recv: bool) -> Direction:
    for name, pair in _SEND_RECV.items():
        if pair == (send, recv):
            return cast(Direction, name)
    raise AssertionError("unreachable")


def _check_direction(direction: str) -> tuple[bool, bool]:
    if direction not in _SEND_RECV:
        raise ValueError(f"unknown direction {direction!r}")
    return _SEND_RECV[direction]


def _check_supported(supported: Sequence[str]) -> tuple[str, ...]:
    names = tuple(s.upper() for s in supported)
    if not names or not set(names) <= SUPPORTED_CODECS:
        raise ValueError(f"supported codecs must be a non-empty subset of PCMU/PCMA: {supported}")
    return names


def _parse_events(spec: str | None) -> set[int]:
    """RFC 4733 event list such as ``0-15,66`` (absent: 0-15)."""
    if spec is None:
        return set(DTMF_EVENTS)
    events: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            continue
        events.update(range(int(lo), (int(hi) if dash else int(lo)) + 1))
    return events


def _format_events(events: set[int]) -> str:
    ranges: list[str] = []
    ordered = sorted(events)
    start = prev = ordered[0]
    for e in [*ordered[1:], None]:
        if e is not None and e == prev + 1:
            prev = e
            continue
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
        if e is not None:
            start = prev = e
    return ",".join(ranges)


def _telephone_event(m: MediaDescription) -> tuple[int, set[int]] | None:
    maps = m.rtpmaps
    for pt in m.payload_types:
        rm = maps.get(pt)
        if rm is not None and rm.is_named("telephone-event"):
            events = _parse_events(m.fmtp(pt)) & DTMF_EVENTS
            if events:
                return pt, events
    return None


def _first_codec(
    m: MediaDescription, supported: Sequence[str], allowed: Iterable[int] | None = None
) -> tuple[int, str] | None:
    maps = m.rtpmaps
    allowed_set = None if allowed is None else set(allowed)
    for pt in m.payload_types:
        rm = maps.get(pt)
        if rm is None or (allowed_set is not None and pt not in allowed_set):
            continue
        for name in supported:
            if rm.is_named(name):
                return pt, name
    return None


def _effective_direction(m: MediaDescription, sd: SessionDescription) -> tuple[bool, bool]:
    """The direction the description's author declared, with c=0.0.0.0 meaning no receive."""
    send, recv = _SEND_RECV[m.direction or sd.direction or "sendrecv"]
    conn = m.connection or sd.connection
    if conn is not None and conn.is_hold:
        recv = False
    return send, recv


def _ptime(m: MediaDescription, sd: SessionDescription) -> int:
    if m.ptime is not None:
        return m.ptime
    value = next((a.value for a in sd.attributes if a.name == "ptime"), None)
    try:
        ms = round(float(value)) if value is not None else 20
    except ValueError:
        ms = 20
    return ms if ms > 0 else 20


def _rejected(m: MediaDescription) -> MediaDescription:
    return MediaDescription(m.media, 0, m.proto, m.formats or ("0",))


def _audio_section(
    port: int,
    proto: str,
    pt: int,
    codec: str,
    te: tuple[int, set[int]] | None,
    ptime: int,
    direction: Direction,
) -> MediaDescription:
    formats = [str(pt)]
    attrs = [Attribute("rtpmap", RtpMap(pt, codec, 8000).value)]
    if te is not None:
        formats.append(str(te[0]))
        attrs.append(Attribute("rtpmap", RtpMap(te[0], "telephone-event", 8000).value))
        attrs.append(Attribute("fmtp", f"{te[0]} {_format_events(te[1])}"))
    attrs.append(Attribute("ptime", str(ptime)))
    attrs.append(Attribute(direction))
    return MediaDescription("audio", port, proto, tuple(formats), attributes=tuple(attrs))


def _check_local(local_addr: str, local_port: int, session_id: int, version: int) -> Origin:
    if not 1 <= local_port <= 65535:
        raise ValueError(f"local port {local_port} out of range")
    if session_id < 0 or version < 0:
        raise ValueError("session id and version must not be negative")
    return Origin("-", str(session_id), str(version), local_addr, _addrtype_of(local_addr))


def answer(
    offer: SessionDescription,
    local_addr: str,
    local_port: int,
    *,
    session_id: int,
    version: int,
    supported: Sequence[str] = ("PCMU", "PCMA"),
    direction: Direction = "sendrecv",
    ptime: int = 20,
    telephone_event: bool = True,
) -> Answer:
    """Answer ``offer`` (RFC 3264 §6) with one audio stream.

    The first usable audio stream is accepted with the first codec of the offer's
    order that is in ``supported``, plus telephone-event/8000 under the offer's
    payload type. Every other stream is kept in place with port 0. ``direction``
    is what we are willing to do; the answer mirrors the offer within it.
    Raises :class:`NoCommonCodec` when nothing can be accepted.
    """
    names = _check_supported(supported)
    want_send, want_recv = _check_direction(direction)
    origin = _check_local(local_addr, local_port, session_id, version)
    if ptime <= 0:
        raise ValueError("ptime must be positive")

    params: MediaParams | None = None
    saw_audio = saw_rtp_audio = False
    sections: list[MediaDescription] = []
    for index, m in enumerate(offer.media):
        if params is None and m.media == "audio" and m.port != 0:
            saw_audio = True
            if m.is_rtp:
                saw_rtp_audio = True
                chosen = _first_codec(m, names)
                if chosen is not None:
                    conn = m.connection or offer.connection
                    if conn is None:
                        raise SdpError(f"media stream {index} has no connection address (c=)")
                    te = _telephone_event(m) if telephone_event else None
                    if te is not None and te[0] == chosen[0]:
                        te = None
                    offer_send, offer_recv = _effective_direction(m, offer)
                    ours = _combine(offer_recv and want_send, offer_send and want_recv)
                    sections.append(
                        _audio_section(local_port, m.proto, chosen[0], chosen[1], te, ptime, ours)
                    )
                    params = MediaParams(
                        payload_type=chosen[0],
                        codec=chosen[1],
                        telephone_event_pt=te[0] if te else None,
                        remote_addr=conn.address,
                        remote_port=m.port,
                        ptime=_ptime(m, offer),
                        direction=ours,
                        stream_index=index,
                    )
                    continue
        sections.append(_rejected(m))
    if params is None:
        if saw_rtp_audio:
            raise NoCommonCodec("no common audio codec in the offer", warning_code=305)
        if saw_audio:
            raise NoCommonCodec(
                "audio offered only over an unsupported transport", warning_code=302
            )
        raise NoCommonCodec("no audio stream in the offer", warning_code=304)
    sdp = SessionDescription(
        origin=origin,
        name="-",
        connection=Connection.for_address(local_addr),
        timing=offer.timing,
        media=tuple(sections),
    )
    return Answer(sdp, params)


def make_offer(
    local_addr: str,
    local_port: int,
    *,
    session_id: int,
    version: int,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    telephone_event_pt: int | None = 101,
    ptime: int = 20,
    direction: Direction = "sendrecv",
) -> SessionDescription:
    """An offer with one audio stream (for an INVITE that arrived without SDP)."""
    names = _check_supported(codecs)
    _check_direction(direction)
    origin = _check_local(local_addr, local_port, session_id, version)
    if telephone_event_pt is not None and not 96 <= telephone_event_pt <= 127:
        raise ValueError("telephone-event needs a dynamic payload type (96-127)")
    if ptime <= 0:
        raise ValueError("ptime must be positive")
    formats = [str(_PT_OF[n]) for n in names]
    attrs = [Attribute("rtpmap", RtpMap(_PT_OF[n], n, 8000).value) for n in names]
    if telephone_event_pt is not None:
        formats.append(str(telephone_event_pt))
        attrs.append(Attribute("rtpmap", f"{telephone_event_pt} telephone-event/8000"))
        attrs.append(Attribute("fmtp", f"{telephone_event_pt} 0-15"))
    attrs.append(Attribute("ptime", str(ptime)))
    attrs.append(Attribute(direction))
    m = MediaDescription("audio", local_port, "RTP/AVP", tuple(formats), attributes=tuple(attrs))
    return SessionDescription(
        origin=origin, name="-", connection=Connection.for_address(local_addr), media=(m,)
    )


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> MediaParams:
    """Read the peer's choice from its ``answer`` to our ``offer`` (RFC 3264 §7).

    Raises :class:`SdpError` when the answer does not fit the offer and
    :class:`NoCommonCodec` when the peer rejected or emptied our audio stream.
    """
    if len(answer.media) != len(offer.media):
        raise SdpError(
            f"answer has {len(answer.media)} media streams, the offer had {len(offer.media)}"
        )
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True)):
        if ours.media != "audio" or ours.port == 0 or not ours.is_rtp:
            continue
        if theirs.port == 0:
            raise NoCommonCodec("the peer rejected our audio stream", warning_code=304)
        if theirs.media != ours.media:
            raise SdpError(f"answer stream {index} is {theirs.media!r}, the offer had audio")
        chosen = _first_codec(theirs, sorted(SUPPORTED_CODECS), allowed=ours.payload_types)
        if chosen is None:
            raise NoCommonCodec("the answer names none of our codecs", warning_code=305)
        conn = theirs.connection or answer.connection
        if conn is None:
            raise SdpError(f"answer stream {index} has no connection address (c=)")
        te = _telephone_event(theirs)
        if te is not None and te[0] == chosen[0]:
            te = None
        their_send, their_recv = _effective_direction(theirs, answer)
        our_send, our_recv = _SEND_RECV[ours.direction or offer.direction or "sendrecv"]
        return MediaParams(
            payload_type=chosen[0],
            codec=chosen[1],
            telephone_event_pt=te[0] if te else None,
            remote_addr=conn.address,
            remote_port=theirs.port,
            ptime=_ptime(theirs, answer),
            direction=_combine(our_send and their_recv, our_recv and their_send),
            stream_index=index,
        )
    raise SdpError("the offer has no audio stream")
