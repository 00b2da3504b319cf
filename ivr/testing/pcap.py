"""A small pcap writer (and reader) for RTP test streams: G.711 audio and RFC 4733 events.

SIPp's ``play_pcap_audio`` replays the UDP payloads of a capture with the capture's own
pacing, rewriting only the ports (source: its media port; destination: the port the
answer's SDP names, plus each packet's offset from the lowest destination port in the
file) and the UDP checksum. So the RTP inside the file must be right on its own: one
SSRC, consecutive sequence numbers, timestamps on the 8 kHz media clock, events keyed
on their start timestamp. The file layout follows the captures Debian ships with SIPp
(``/usr/share/sip-tester/dtmf_2833_*.pcap``): classic libpcap, microsecond timestamps,
Ethernet link type, IPv4 without options, UDP with checksums.

:class:`RtpStream` lays a stream out on a 20 ms grid, one packet per slot: audio frames
(``silence``, ``pcm``) and key presses (``event``). An event sends an update every slot
with the duration so far (the first with the marker bit), then the final report with
the E bit ``end_packets`` times in the following slots, during which audio is
suppressed; the timestamp of the next audio frame is where the grid has got to.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ivr.media import g711

__all__ = [
    "EVENT_CODES",
    "LINKTYPE_ETHERNET",
    "PcapRecord",
    "RtpStream",
    "TimedPacket",
    "event_payload",
    "ip_checksum",
    "read_pcap",
    "udp_frame",
    "write_pcap",
]

EVENT_CODES = "0123456789*#ABCD"  # RFC 4733 section 3.2: event codes 0-15
LINKTYPE_ETHERNET = 1
PCAP_MAGIC = 0xA1B2C3D4
SNAPLEN = 65535
RATE = 8000
ETHERTYPE_IPV4 = 0x0800
IPPROTO_UDP = 17
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_RTP = struct.Struct("!BBHII")
_EVENT = struct.Struct("!BBH")
_SRC_MAC = bytes.fromhex("020000000001")  # locally administered
_DST_MAC = bytes.fromhex("020000000002")


def ip_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``: ones' complement of the ones'
    complement sum of its 16-bit words (an odd byte is padded with zero)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_checksum(src: bytes, dst: bytes, udp: bytes) -> int:
    pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, len(udp))
    value = ip_checksum(pseudo + udp)
    return value or 0xFFFF  # RFC 768: a computed zero is sent as all ones


def udp_frame(
    payload: bytes, src: tuple[str, int], dst: tuple[str, int], ident: int = 0, ttl: int = 64
) -> bytes:
    """An Ethernet frame carrying ``payload`` in UDP over IPv4, checksums filled in."""
    src_ip = ipaddress.IPv4Address(src[0]).packed
    dst_ip = ipaddress.IPv4Address(dst[0]).packed
    length = _UDP.size + len(payload)
    if length > 0xFFFF - 20:
        raise ValueError(f"UDP payload too large: {len(payload)} bytes")
    udp = _UDP.pack(src[1], dst[1], length, 0) + payload
    udp = udp[:6] + struct.pack("!H", _udp_checksum(src_ip, dst_ip, udp)) + udp[8:]
    header = _IPV4.pack(
        0x45, 0, 20 + length, ident & 0xFFFF, 0, ttl, IPPROTO_UDP, 0, src_ip, dst_ip
    )
    header = header[:10] + struct.pack("!H", ip_checksum(header)) + header[12:]
    return _DST_MAC + _SRC_MAC + struct.pack("!H", ETHERTYPE_IPV4) + header + udp


@dataclass(frozen=True, slots=True)
class TimedPacket:
    """One RTP packet (wire bytes) due ``at`` seconds after the stream starts."""

    at: float
    rtp: bytes


def write_pcap(
    path: Path,
    packets: Iterable[TimedPacket],
    *,
    src: tuple[str, int] = ("127.0.0.1", 40000),
    dst: tuple[str, int] = ("127.0.0.1", 20000),
    epoch: float = 1_700_000_000.0,
) -> Path:
    """Write ``packets`` as a classic pcap file (Ethernet, IPv4, UDP ``src`` → ``dst``),
    each stamped ``epoch + at``; returns ``path``."""
    parts = [_GLOBAL.pack(PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)]
    for ident, packet in enumerate(packets, start=1):
        frame = udp_frame(packet.rtp, src, dst, ident=ident)
        micros = round((epoch + packet.at) * 1_000_000)
        seconds, usec = divmod(micros, 1_000_000)
        parts.append(_RECORD.pack(seconds, usec, len(frame), len(frame)))
        parts.append(frame)
    path.write_bytes(b"".join(parts))
    return path


@dataclass(frozen=True, slots=True)
class PcapRecord:
    """One UDP/IPv4 packet of a capture; the checksum flags say whether they verify."""

    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes
    ip_checksum_ok: bool
    udp_checksum_ok: bool


def read_pcap(path: Path) -> tuple[int, list[PcapRecord]]:
    """The link type and the UDP/IPv4 packets of a classic little-endian pcap file
    (Ethernet link type); raises ``ValueError`` for anything else."""
    data = path.read_bytes()
    if len(data) < _GLOBAL.size:
        raise ValueError("file too short for a pcap header")
    magic, major, minor, _zone, _sigfigs, _snaplen, linktype = _GLOBAL.unpack_from(data)
    if magic != PCAP_MAGIC or (major, minor) != (2, 4):
        raise ValueError(f"not a little-endian pcap 2.4 file (magic {magic:#x})")
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"link type {linktype}, expected Ethernet")
    records: list[PcapRecord] = []
    offset = _GLOBAL.size
    while offset < len(data):
        seconds, usec, incl, orig = _RECORD.unpack_from(data, offset)
        offset += _RECORD.size
        frame = data[offset : offset + incl]
        offset += incl
        if len(frame) != incl or incl != orig:
            raise ValueError("truncated packet record")
        records.append(_parse_frame(seconds + usec / 1_000_000, frame))
    return linktype, records


def _parse_frame(when: float, frame: bytes) -> PcapRecord:
    if struct.unpack_from("!H", frame, 12)[0] != ETHERTYPE_IPV4:
        raise ValueError("not an IPv4 frame")
    ip = frame[14:]
    vihl, _tos, total, _ident, _frag, _ttl, proto, _sum, src, dst = _IPV4.unpack_from(ip)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or proto != IPPROTO_UDP:
        raise ValueError("not UDP over IPv4")
    udp = ip[ihl:total]
    sport, dport, length, checksum = _UDP.unpack_from(udp)
    if length != len(udp):
        raise ValueError(f"UDP length {length} but {len(udp)} bytes")
    udp_ok = checksum == 0 or ip_checksum(
        src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, length) + udp
    ) in (0, 0xFFFF)
    return PcapRecord(
        time=when,
        src=(str(ipaddress.IPv4Address(src)), sport),
        dst=(str(ipaddress.IPv4Address(dst)), dport),
        payload=udp[_UDP.size :],
        ip_checksum_ok=ip_checksum(ip[:ihl]) == 0,
        udp_checksum_ok=udp_ok,
    )


def event_payload(digit: str, *, end: bool, volume: int, duration: int) -> bytes:
    """One RFC 4733 event block: event code, E bit, volume (-dBm0), duration (samples)."""
    code = EVENT_CODES.find(digit.upper()) if isinstance(digit, str) and len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    if not 0 <= volume <= 63 or not 0 <= duration <= 0xFFFF:
        raise ValueError("volume must be 0-63 and duration 0-65535")
    return _EVENT.pack(code, (0x80 if end else 0) | volume, duration)


@dataclass
class RtpStream:
    """One RTP stream laid out on a ``ptime_ms`` grid (see the module docstring).

    ``codec`` names the G.711 law of the audio frames; ``event_pt`` is the
    telephone-event payload type the SDP offered.
    """

    codec: str = "PCMU"
    event_pt: int = 101
    ssrc: int = 0x1B2E3D4C
    first_sequence: int = 4711
    first_timestamp: int = 160_000
    ptime_ms: int = 20
    packets: list[TimedPacket] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.audio_pt = g711.PAYLOAD_TYPES[self.codec.upper()]
        self.samples = RATE * self.ptime_ms // 1000
        self.slot = 0  # grid position of the next packet
        self._sequence = self.first_sequence

    @property
    def timestamp(self) -> int:
        """The RTP timestamp of the grid position the next packet takes."""
        return (self.first_timestamp + self.slot * self.samples) & 0xFFFF_FFFF

    def _emit(self, payload_type: int, payload: bytes, timestamp: int, marker: bool) -> None:
        marker = marker or not self.packets  # the first packet starts a talkspurt
        header = _RTP.pack(
            0x80, (0x80 if marker else 0) | payload_type, self._sequence, timestamp, self.ssrc
        )
        self.packets.append(TimedPacket(self.slot * self.ptime_ms / 1000, header + payload))
        self._sequence = (self._sequence + 1) & 0xFFFF
        self.slot += 1

    def pcm(self, samples: npt.ArrayLike) -> RtpStream:
        """Audio: ``samples`` (16-bit, 8 kHz) in whole frames (the last one padded)."""
        data = np.asarray(samples, dtype=np.int16)
        if len(data) % self.samples:
            data = np.concatenate((data, np.zeros(-len(data) % self.samples, dtype=np.int16)))
        for start in range(0, len(data), self.samples):
            frame = g711.encode(self.codec, data[start : start + self.samples])
            self._emit(self.audio_pt, frame, self.timestamp, marker=False)
        return self

    def silence(self, ms: float) -> RtpStream:
        """Audio frames of digital silence for ``ms`` (rounded up to whole frames)."""
        frames = -(-round(ms) // self.ptime_ms)
        return self.pcm(np.zeros(frames * self.samples, dtype=np.int16))

    def event(
        self, digit: str, ms: float = 100, *, volume: int = 10, end_packets: int = 3
    ) -> RtpStream:
        """A key press of ``ms`` (whole frames) as RFC 4733 telephone-event packets."""
        if end_packets < 1:
            raise ValueError("end_packets must be at least 1")
        total = -(-round(ms) // self.ptime_ms) * self.samples
        if not 0 < total <= 0xFFFF:
            raise ValueError(f"event duration must be 1-{0xFFFF} samples, got {total}")
        start = self.timestamp
        for reported in range(self.samples, total + 1, self.samples):
            body = event_payload(digit, end=reported == total, volume=volume, duration=reported)
            self._emit(self.event_pt, body, start, marker=reported == self.samples)
        for _ in range(end_packets - 1):
            body = event_payload(digit, end=True, volume=volume, duration=total)
            self._emit(self.event_pt, body, start, marker=False)
        return self

    def write(
        self,
        path: Path,
        *,
        src: tuple[str, int] = ("127.0.0.1", 40000),
        dst: tuple[str, int] = ("127.0.0.1", 20000),
    ) -> Path:
        """:func:`write_pcap` of this stream's packets."""
        return write_pcap(path, self.packets, src=src, dst=dst)
