"""RFC 4733 telephone events: receiving a stream's payloads and encoding a digit's packets.

Payload (RFC 4733 section 2.3), one or more 4-byte blocks::

    event (8) | E (1) R (1) volume (6) | duration (16, timestamp units)

Every packet of one event carries the event's start as its RTP timestamp, so the receiver keys
events on that timestamp: a lost first packet still yields the digit, repeated end packets and
late updates are ignored, and a long press (even one split into 0xFFFF-unit segments, section
2.5.2.3) is reported once, with its duration, when it ends.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from ivr.dtmf.events import DIGITS, DigitEvent

EVENT_CODES = "0123456789*#ABCD"  # event codes 0-15 (section 3.2); 16 and up are not digits
MAX_DURATION = 0xFFFF
SEGMENT_SLACK = 800  # units before 0xFFFF at which a sender may start a long event's next segment
STALE_S = 10.0  # a timestamp up to this far behind the newest event is a late packet
_WRAP = 1 << 32
_BLOCK = struct.Struct("!BBH")


class PayloadError(ValueError):
    """A telephone-event payload that cannot be parsed; ``status`` is a hint (400)."""

    status = 400


@dataclass(frozen=True, slots=True)
class EventBlock:
    """One event report of a payload."""

    event: int
    end: bool
    volume: int  # -dBm0, 0-63
    duration: int  # timestamp units since the event (segment) started


def parse_payload(payload: bytes) -> list[EventBlock]:
    """Decode a payload into its event blocks (several when events are packed, section 2.5.1.5)."""
    if not payload or len(payload) % 4:
        raise PayloadError(f"telephone-event payload must be 4*n bytes, got {len(payload)}")
    blocks = []
    for off in range(0, len(payload), 4):
        event, flags, duration = _BLOCK.unpack_from(payload, off)
        blocks.append(EventBlock(event, bool(flags & 0x80), flags & 0x3F, duration))
    return blocks


def _ts_diff(a: int, b: int) -> int:
    """a - b for 32-bit RTP timestamps, as a signed distance (serial number arithmetic)."""
    d = (a - b) % _WRAP
    return d - _WRAP if d >= _WRAP // 2 else d


@dataclass(slots=True)
class _Current:
    start_ts: int  # timestamp of the first segment
    seg_ts: int  # timestamp of the current segment
    event: int
    base: int  # duration of the completed segments before seg_ts
    duration: int  # duration reported within the current segment
    start: float  # seconds, estimated from the first packet seen
    last_arrival: float


class TelephoneEventReceiver:
    """Per-RTP-stream state: ``feed`` each telephone-event packet, get the digits that ended.

    ``rate`` is the telephone-event clock rate from the SDP (8000 for PCMU/PCMA calls). Times in
    the events are on the ``arrival`` clock; the start is back-dated by the duration the first
    packet seen already reported, so it holds when the first packets are lost.
    """

    def __init__(self, rate: int = 8000, timeout: float = 0.5, memory: int = 16) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.timeout = timeout
        self._cur: _Current | None = None
        self._done: deque[int] = deque(maxlen=memory)  # start timestamps of ended events
        self._newest: int | None = None  # newest event start seen, for ordering
        self._stale = int(STALE_S * rate)  # further back than this is a new timeline, not stale

    @property
    def pressed(self) -> str | None:
        """The digit currently held (barge-in), or None."""
        return EVENT_CODES[self._cur.event] if self._cur else None

    def feed(
        self, payload: bytes, timestamp: int, marker: bool, arrival: float
    ) -> list[DigitEvent]:
        """Consume one packet; returns the digits it completed (usually none or one)."""
        out: list[DigitEvent] = []
        ts = timestamp % _WRAP
        for block in parse_payload(payload):
            if block.event < len(EVENT_CODES):
                out += self._block(block, ts, marker, arrival)
            # packed events follow one another without a gap (section 2.5.1.5)
            ts = (ts + block.duration) % _WRAP
            marker = False
        return out

    def expire(self, now: float) -> list[DigitEvent]:
        """End a press whose end packets were all lost, once ``timeout`` passed without news."""
        if self._cur and now - self._cur.last_arrival >= self.timeout:
            return [self._finish()]
        return []

    def _block(self, b: EventBlock, ts: int, marker: bool, arrival: float) -> list[DigitEvent]:
        cur = self._cur
        if cur and ts == cur.seg_ts:
            if b.event != cur.event:
                return []  # a different event cannot share a timestamp: ignore the stray
            cur.duration = max(cur.duration, b.duration)
            cur.last_arrival = arrival
            return [self._finish()] if b.end else []
        if ts in self._done or (cur and ts == cur.start_ts):
            return []  # repeated end packet or late update of an event already reported
        if self._newest is not None and -self._stale < _ts_diff(ts, self._newest) < 0:
            return []  # older than the newest event: reordered or stale
        if cur and not marker and b.event == cur.event and self._continues(cur, ts):
            cur.base += _ts_diff(ts, cur.seg_ts)
            cur.seg_ts = ts
            self._newest = ts
            cur.duration = b.duration
            cur.last_arrival = arrival
            return [self._finish()] if b.end else []
        out = [self._finish()] if cur else []  # its end packets were lost
        self._newest = ts
        self._cur = _Current(
            start_ts=ts,
            seg_ts=ts,
            event=b.event,
            base=0,
            duration=b.duration,
            start=arrival - b.duration / self.rate,
            last_arrival=arrival,
        )
        if b.end:
            out.append(self._finish())
        return out

    @staticmethod
    def _continues(cur: _Current, ts: int) -> bool:
        """A new segment of a long event starts where the previous segment's maximum ends
        (0xFFFF units on; a little less is tolerated for senders that restart early)."""
        gap = _ts_diff(ts, cur.seg_ts)
        return MAX_DURATION - SEGMENT_SLACK <= gap <= MAX_DURATION and gap >= cur.duration - 1

    def _finish(self) -> DigitEvent:
        cur = self._cur
        assert cur is not None
        self._cur = None
        self._done.append(cur.start_ts)
        self._done.append(cur.seg_ts)
        duration = (cur.base + cur.duration) / self.rate
        return DigitEvent(
            digit=EVENT_CODES[cur.event],
            source="rfc4733",
            start=cur.start,
            end=cur.start + duration,
            duration=duration,
        )


class Packet(NamedTuple):
    """One RTP packet of a telephone event, due ``index * interval`` after the first."""

    payload: bytes
    marker: bool
    timestamp_offset: int  # add to the event's RTP start timestamp


def encode_digit(
    digit: str,
    duration_ms: float,
    volume: int = 10,
    rate: int = 8000,
    interval_ms: float = 20,
    end_packets: int = 3,
) -> list[Packet]:
    """The packets that send one key press, one per ``interval_ms``.

    Each update carries the duration so far; the last one is sent ``end_packets`` times with the
    E bit. The first packet has the marker bit. Presses longer than 0xFFFF units are split into
    segments whose timestamps advance by 0xFFFF (section 2.5.2.3).
    """
    if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in DIGITS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    if not 0 <= volume <= 63:
        raise ValueError(f"volume must be 0-63 (-dBm0), got {volume}")
    if duration_ms <= 0 or interval_ms <= 0 or end_packets < 1:
        raise ValueError("duration_ms, interval_ms and end_packets must be positive")
    event = EVENT_CODES.index(digit.upper())
    total = max(1, round(duration_ms * rate / 1000))
    step = max(1, round(interval_ms * rate / 1000))
    packets: list[Packet] = []
    elapsed = 0
    while True:
        # the last update of a segment reports exactly its maximum, then a new segment starts
        elapsed = min(elapsed + step, total, (elapsed // MAX_DURATION + 1) * MAX_DURATION)
        seg_start = (elapsed - 1) // MAX_DURATION * MAX_DURATION
        seg_dur = elapsed - seg_start
        last = elapsed == total
        payload = _BLOCK.pack(event, (0x80 if last else 0) | volume, seg_dur)
        packets.append(Packet(payload, not packets, seg_start))
        if last:
            break
    packets += [packets[-1]._replace(marker=False)] * (end_packets - 1)
    return packets
