"""RTP (RFC 3550): packets, wraparound arithmetic, a sender and strict source latching.

Pure: stdlib and numpy. Randomness comes in as a ``random.Random``; nothing reads a clock.
:func:`pack_audio` builds a whole tick's packets (every stream's header and frame) in one
vectorised step.
"""

from __future__ import annotations

import functools
import ipaddress
import random
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "SEQ_MOD",
    "TS_MOD",
    "RtpError",
    "RtpExtension",
    "RtpPacket",
    "RtpSender",
    "SourceLatch",
    "is_rtcp",
    "normalize_address",
    "pack_audio",
    "packet_dtype",
    "parse_rtp",
    "seq_add",
    "seq_diff",
    "seq_newer",
    "ts_add",
    "ts_diff",
    "ts_newer",
]

RTP_VERSION: Final = 2
SEQ_MOD: Final = 1 << 16
TS_MOD: Final = 1 << 32
_HEADER: Final = struct.Struct("!BBHII")
_EXT_HEADER: Final = struct.Struct("!HH")

Address = tuple[str, int]


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP packet."""


# --- wraparound arithmetic -------------------------------------------------------------


def seq_add(seq: int, n: int) -> int:
    """``seq + n`` modulo 2**16."""
    return (seq + n) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 16-bit sequence numbers, in [-32768, 32767]."""
    return (a - b + 0x8000) % SEQ_MOD - 0x8000


def seq_newer(a: int, b: int) -> bool:
    """True when sequence number ``a`` comes after ``b`` (modulo wraparound)."""
    return seq_diff(a, b) > 0


def ts_add(ts: int, n: int) -> int:
    """``ts + n`` modulo 2**32."""
    return (ts + n) % TS_MOD


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 32-bit timestamps, in [-2**31, 2**31 - 1]."""
    return (a - b + 0x8000_0000) % TS_MOD - 0x8000_0000


def ts_newer(a: int, b: int) -> bool:
    """True when timestamp ``a`` comes after ``b`` (modulo wraparound)."""
    return ts_diff(a, b) > 0


# --- packets ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpExtension:
    """A header extension (RFC 3550 §5.3.1): 16-bit profile word and 32-bit-aligned data."""

    profile: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.profile <= 0xFFFF:
            raise ValueError(f"extension profile {self.profile} out of range")
        if len(self.data) % 4 or len(self.data) > 0xFFFF * 4:
            raise ValueError("extension data must be a multiple of 4 bytes, at most 262140")


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    """One RTP packet. ``padding`` counts the padding octets (including the count octet)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} out of range 0-127")
        if not 0 <= self.sequence < SEQ_MOD:
            raise ValueError(f"sequence {self.sequence} out of range")
        if not 0 <= self.timestamp < TS_MOD:
            raise ValueError(f"timestamp {self.timestamp} out of range")
        if not 0 <= self.ssrc < TS_MOD:
            raise ValueError(f"ssrc {self.ssrc} out of range")
        if len(self.csrcs) > 15 or any(not 0 <= c < TS_MOD for c in self.csrcs):
            raise ValueError("at most 15 CSRCs, each 32-bit")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"padding {self.padding} out of range 0-255")

    def pack(self) -> bytes:
        """Serialize to wire bytes."""
        b0 = (
            (RTP_VERSION << 6)
            | (0x20 if self.padding else 0)
            | (0x10 if self.extension else 0)
            | len(self.csrcs)
        )
        b1 = (0x80 if self.marker else 0) | self.payload_type
        parts = [_HEADER.pack(b0, b1, self.sequence, self.timestamp, self.ssrc)]
        if self.csrcs:
            parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension is not None:
            ext = self.extension
            parts.append(_EXT_HEADER.pack(ext.profile, len(ext.data) // 4))
            parts.append(ext.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def parse_rtp(data: bytes | bytearray | memoryview) -> RtpPacket:
    """Parse one RTP packet; raise :class:`RtpError` naming what is wrong."""
    buf = bytes(data)
    if len(buf) < _HEADER.size:
        raise RtpError(f"RTP packet too short: {len(buf)} bytes, header needs 12")
    b0, b1, sequence, timestamp, ssrc = _HEADER.unpack_from(buf)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2")
    cc = b0 & 0x0F
    offset = _HEADER.size + 4 * cc
    if len(buf) < offset:
        raise RtpError(f"RTP packet too short for {cc} CSRCs")
    csrcs = struct.unpack_from(f"!{cc}I", buf, _HEADER.size) if cc else ()
    extension = None
    if b0 & 0x10:
        if len(buf) < offset + 4:
            raise RtpError("RTP packet too short for its header extension")
        profile, words = _EXT_HEADER.unpack_from(buf, offset)
        end = offset + 4 + 4 * words
        if len(buf) < end:
            raise RtpError(f"RTP header extension of {words} words runs past the packet")
        extension = RtpExtension(profile=profile, data=buf[offset + 4 : end])
        offset = end
    end = len(buf)
    padding = 0
    if b0 & 0x20:
        padding = buf[-1]
        if padding == 0 or offset + padding > end:
            raise RtpError(f"invalid RTP padding count {padding}")
        end -= padding
    return RtpPacket(
        payload_type=b1 & 0x7F,
        marker=bool(b1 & 0x80),
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        csrcs=tuple(csrcs),
        extension=extension,
        payload=buf[offset:end],
        padding=padding,
    )


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """True for an RTCP packet multiplexed on the RTP port (RFC 5761 §4: PT 192-223)."""
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


# --- sending ---------------------------------------------------------------------------


@functools.cache
def packet_dtype(payload_size: int) -> np.dtype[np.void]:
    """A numpy record with the wire layout of a CSRC-less RTP packet of ``payload_size`` octets."""
    return np.dtype(
        [
            ("b0", "u1"),
            ("b1", "u1"),
            ("seq", ">u2"),
            ("ts", ">u4"),
            ("ssrc", ">u4"),
            ("payload", "u1", (payload_size,)),
        ]
    )


def pack_audio(
    out: npt.NDArray[np.void],
    b1: npt.NDArray[np.uint8],
    sequence: npt.NDArray[np.uint16],
    timestamp: npt.NDArray[np.uint32],
    ssrc: npt.NDArray[np.uint32],
    frames: npt.NDArray[np.uint8],
    rows: npt.NDArray[np.intp],
) -> bytes:
    """``len(b1)`` packets back to back, built in ``out`` (a :func:`packet_dtype` array
    reused from tick to tick); packet ``i`` carries frame ``frames[rows[i]]``.

    ``b1`` is the second header octet (marker bit and payload type); version 2, no
    padding, extension or CSRCs.
    """
    n = len(b1)
    if len(out) < n:
        raise ValueError(f"output holds {len(out)} packets, {n} wanted")
    packets = out[:n]
    packets["b0"] = RTP_VERSION << 6
    packets["b1"] = b1
    packets["seq"] = sequence
    packets["ts"] = timestamp
    packets["ssrc"] = ssrc
    np.take(frames, rows, axis=0, out=packets["payload"], mode="clip")
    return packets.tobytes()


class RtpSender:
    """Sequence/timestamp state of one outgoing RTP stream.

    SSRC, first sequence number and first timestamp are drawn from ``rng``
    (RFC 3550 §5.1: random starting points).
    """

    __slots__ = ("octets_sent", "packets_sent", "payload_type", "sequence", "ssrc", "timestamp")

    def __init__(self, rng: random.Random, payload_type: int) -> None:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type {payload_type} out of range 0-127")
        self.payload_type = payload_type
        self.ssrc = rng.getrandbits(32)
        self.sequence = rng.getrandbits(16)
        self.timestamp = rng.getrandbits(32)
        self.packets_sent = 0
        self.octets_sent = 0

    def packet(
        self,
        payload: bytes,
        samples: int,
        *,
        marker: bool = False,
        payload_type: int | None = None,
    ) -> bytes:
        """Pack ``payload`` at the current sequence/timestamp, then advance them.

        ``samples`` is how far the timestamp moves afterwards (160 for a 20 ms G.711
        frame; 0 keeps it, as RFC 4733 event packets do).
        """
        pt = self.payload_type if payload_type is None else payload_type
        data = _HEADER.pack(
            0x80, (0x80 | pt) if marker else pt, self.sequence, self.timestamp, self.ssrc
        )
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + samples) & 0xFFFF_FFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return data + payload

    def audio(self, payload: bytes, marker: bool) -> bytes:
        """:meth:`packet` for one 20 ms G.711 frame (160 samples): the media tick's hot path."""
        pt = self.payload_type
        data = _HEADER.pack(
            0x80, pt | 0x80 if marker else pt, self.sequence, self.timestamp, self.ssrc
        )
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + 160) & 0xFFFF_FFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return data + payload

    def skip(self, samples: int) -> None:
        """Let ``samples`` of time pass without sending (the timestamp keeps running)."""
        self.timestamp = (self.timestamp + samples) & 0xFFFF_FFFF


# --- strict RTP source latching --------------------------------------------------------


def normalize_address(host: str) -> str:
    """Canonical text of an IP address (IPv4-mapped IPv6 becomes IPv4); names lowercased."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


_UNSPECIFIED: Final = frozenset({"0.0.0.0", "::"})


class SourceLatch:
    """Which source address an RTP stream accepts packets from (like Asterisk strictrtp).

    Before locking, a packet from the expected address (the SDP's connection
    address and port) or from the signalling peer's host (any port) locks the latch
    at once. A packet from anywhere else starts probation: ``probation`` packets in a
    row from one source, with consecutive sequence numbers, lock onto it. Once
    locked, packets from any other source are dropped and counted. :meth:`reset`
    starts learning again (a re-INVITE that moved the media).
    """

    __slots__ = (
        "_candidate",
        "_candidate_count",
        "_candidate_seq",
        "_expected",
        "_peer_host",
        "accepted",
        "dropped_foreign",
        "dropped_learning",
        "locked",
        "probation",
    )

    def __init__(
        self,
        expected: Address | None = None,
        peer_host: str | None = None,
        *,
        probation: int = 3,
    ) -> None:
        if probation < 1:
            raise ValueError("probation must be at least 1 packet")
        self.probation = probation
        self.accepted = 0
        self.dropped_foreign = 0
        self.dropped_learning = 0
        self.reset(expected, peer_host)

    def reset(self, expected: Address | None, peer_host: str | None) -> None:
        """Forget the locked source and learn again with new expectations."""
        self._expected: Address | None = None
        if expected is not None:
            host = normalize_address(expected[0])
            if host not in _UNSPECIFIED and expected[1] != 0:
                self._expected = (host, expected[1])
        self._peer_host = normalize_address(peer_host) if peer_host else None
        self.locked: Address | None = None
        self._candidate: Address | None = None
        self._candidate_count = 0
        self._candidate_seq = 0

    def accept(self, source: Address, sequence: int) -> bool:
        """Decide for one packet from ``source``; True means deliver it."""
        locked = self.locked
        if locked is not None and source[1] == locked[1] and source[0] == locked[0]:
            self.accepted += 1
            return True
        src = (normalize_address(source[0]), source[1])
        if locked is not None:
            if src == locked:
                self.accepted += 1
                return True
            self.dropped_foreign += 1
            return False
        if src == self._expected or src[0] == self._peer_host:
            return self._lock(src)
        if src == self._candidate and sequence == (self._candidate_seq + 1) & 0xFFFF:
            self._candidate_count += 1
        else:
            self._candidate = src
            self._candidate_count = 1
        self._candidate_seq = sequence
        if self._candidate_count >= self.probation:
            return self._lock(src)
        self.dropped_learning += 1
        return False

    def _lock(self, src: Address) -> bool:
        self.locked = src
        self._candidate = None
        self.accepted += 1
        return True
