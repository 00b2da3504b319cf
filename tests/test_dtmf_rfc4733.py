"""RFC 4733 telephone events: payload encoding, and a receiver that survives loss and repeats."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.dtmf.rfc4733 import (
    MAX_DURATION,
    EventBlock,
    Packet,
    PayloadError,
    TelephoneEventReceiver,
    encode_digit,
    parse_payload,
)

WRAP = 1 << 32


def _block(event: int, end: bool, duration: int, volume: int = 10) -> bytes:
    return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)


def _send(rx: TelephoneEventReceiver, packets: list[Packet], ts: int, t0: float = 0.0):
    """Feed packets 20 ms apart; the RTP timestamp is the event start plus the packet's offset."""
    out = []
    for i, p in enumerate(packets):
        out += rx.feed(p.payload, (ts + p.timestamp_offset) % WRAP, p.marker, t0 + 0.02 * i)
    return out


# -- encoding --------------------------------------------------------------------------------


def test_encode_digit_sends_updates_then_three_end_packets() -> None:
    packets = encode_digit("#", 100, volume=7)
    blocks = [parse_payload(p.payload)[0] for p in packets]
    assert [b.event for b in blocks] == [11] * 7
    assert [b.duration for b in blocks] == [160, 320, 480, 640, 800, 800, 800]
    assert [b.end for b in blocks] == [False] * 4 + [True] * 3
    assert {b.volume for b in blocks} == {7}
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.timestamp_offset for p in packets} == {0}
    assert packets[0].payload == bytes([11, 7, 0, 160])


def test_encode_digit_for_other_rates_and_intervals() -> None:
    packets = encode_digit("a", 95, rate=16000, interval_ms=50, end_packets=2)
    blocks = [parse_payload(p.payload)[0] for p in packets]
    assert blocks[0].event == 12 and [b.duration for b in blocks] == [800, 1520, 1520]


def test_a_long_press_is_split_into_segments() -> None:
    packets = encode_digit("0", 20_000)  # 160000 units: segments of 0xFFFF
    offsets = sorted({p.timestamp_offset for p in packets})
    assert offsets == [0, MAX_DURATION, 2 * MAX_DURATION]
    last_of_first = [p for p in packets if p.timestamp_offset == 0][-1]
    assert parse_payload(last_of_first.payload)[0].duration == MAX_DURATION
    final = parse_payload(packets[-1].payload)[0]
    assert final.end and final.duration == 160_000 - 2 * MAX_DURATION
    assert sum(p.marker for p in packets) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"digit": "E", "duration_ms": 100},
        {"digit": "55", "duration_ms": 100},
        {"digit": "5", "duration_ms": 0},
        {"digit": "5", "duration_ms": 100, "volume": 64},
        {"digit": "5", "duration_ms": 100, "end_packets": 0},
    ],
)
def test_encode_digit_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        encode_digit(**kwargs)


def test_parse_payload() -> None:
    assert parse_payload(_block(5, True, 800, 63)) == [EventBlock(5, True, 63, 800)]
    for bad in (b"", b"\x05\x0a\x00", b"\x05\x0a\x00\xa0\x01"):
        with pytest.raises(PayloadError) as err:
            parse_payload(bad)
        assert err.value.status == 400 and isinstance(err.value, ValueError)


# -- receiving -------------------------------------------------------------------------------


def test_a_press_is_reported_once_when_it_ends() -> None:
    rx = TelephoneEventReceiver()
    packets = encode_digit("5", 100)
    events = []
    for i, p in enumerate(packets):
        got = rx.feed(p.payload, 1000, p.marker, 10.0 + 0.02 * i)
        assert rx.pressed == (None if got or events else "5")
        events += got
    (event,) = events
    assert (event.digit, event.source, event.duration) == ("5", "rfc4733", 0.1)
    assert event.start == pytest.approx(9.98) and event.end == pytest.approx(10.08)


def test_a_lost_first_packet_still_gives_one_digit_with_its_start() -> None:
    rx = TelephoneEventReceiver()
    events = _send(rx, encode_digit("7", 120)[2:], ts=5000, t0=1.04)
    assert [e.digit for e in events] == ["7"]
    assert events[0].start == pytest.approx(1.04 - 0.06)
    assert events[0].duration == pytest.approx(0.12)


def test_only_end_packets_arriving_still_report_the_press() -> None:
    rx = TelephoneEventReceiver()
    packets = encode_digit("9", 80)
    events = _send(rx, packets[-3:], ts=42)
    assert [(e.digit, e.duration) for e in events] == [("9", 0.08)]


def test_lost_end_packets_are_made_up_by_the_next_event() -> None:
    rx = TelephoneEventReceiver()
    first = encode_digit("1", 100)[:4]  # no end packet arrives
    events = _send(rx, first, ts=0)
    assert events == [] and rx.pressed == "1"
    events = _send(rx, encode_digit("2", 100), ts=1600, t0=0.2)
    assert [(e.digit, e.duration) for e in events] == [("1", 0.08), ("2", 0.1)]


def test_lost_end_packets_expire_after_the_timeout() -> None:
    rx = TelephoneEventReceiver(timeout=0.5)
    _send(rx, encode_digit("3", 100)[:3], ts=0)
    assert rx.expire(0.3) == []
    (event,) = rx.expire(0.6)
    assert (event.digit, event.duration) == ("3", 0.06)
    assert rx.expire(2.0) == [] and rx.pressed is None


def test_repeated_and_late_packets_are_ignored() -> None:
    rx = TelephoneEventReceiver()
    packets = encode_digit("4", 100)
    events = _send(rx, packets, ts=800)
    events += _send(rx, packets[-1:] * 5 + packets[:3], ts=800, t0=1.0)  # stragglers
    assert [e.digit for e in events] == ["4"]


def test_the_same_digit_twice_is_two_presses() -> None:
    rx = TelephoneEventReceiver()
    events = _send(rx, encode_digit("8", 60), ts=0)
    events += _send(rx, encode_digit("8", 60), ts=1200, t0=0.15)
    assert [e.digit for e in events] == ["8", "8"]


def test_a_repeat_whose_first_packets_are_lost_is_not_a_long_press_segment() -> None:
    rx = TelephoneEventReceiver()
    events = _send(rx, encode_digit("0", 61)[:3], ts=0)  # its end packets are lost too
    events += _send(rx, encode_digit("0", 40)[1:], ts=888, t0=0.11)
    assert [(e.digit, e.duration) for e in events] == [("0", 0.06), ("0", 0.04)]


def test_an_older_event_arriving_late_is_dropped() -> None:
    rx = TelephoneEventReceiver()
    events = _send(rx, encode_digit("6", 60), ts=4000)
    events += _send(rx, encode_digit("5", 60), ts=2000, t0=0.2)  # reordered, behind the newest
    assert [e.digit for e in events] == ["6"]


def test_a_far_jump_back_is_a_new_timeline() -> None:
    rx = TelephoneEventReceiver()
    events = _send(rx, encode_digit("6", 60), ts=10_000_000)
    events += _send(rx, encode_digit("5", 60), ts=1000, t0=0.2)
    assert [e.digit for e in events] == ["6", "5"]


def test_timestamps_wrap_around() -> None:
    rx = TelephoneEventReceiver()
    events = _send(rx, encode_digit("*", 100), ts=WRAP - 100)
    events += _send(rx, encode_digit("#", 100), ts=(WRAP - 100 + 1600) % WRAP, t0=0.2)
    events += _send(rx, encode_digit("*", 100), ts=WRAP - 100, t0=0.4)  # the old one, replayed
    assert [e.digit for e in events] == ["*", "#"]


def test_a_long_press_across_segments_and_the_wrap_is_one_event() -> None:
    rx = TelephoneEventReceiver()
    events = _send(rx, encode_digit("0", 20_000), ts=WRAP - 70_000)
    assert [(e.digit, e.duration) for e in events] == [("0", 20.0)]


def test_packed_events_and_non_digit_events() -> None:
    rx = TelephoneEventReceiver()
    payload = _block(1, True, 400) + _block(16, True, 160) + _block(2, False, 80)
    events = rx.feed(payload, 0, True, 1.0)
    assert [e.digit for e in events] == ["1"]  # 16 (flash) is not a digit; 2 is still on
    assert rx.pressed == "2"
    (two,) = rx.feed(_block(2, True, 480), 560, False, 1.1)
    assert two.duration == pytest.approx(0.06)


def test_a_bad_payload_raises() -> None:
    with pytest.raises(PayloadError):
        TelephoneEventReceiver().feed(b"\x01\x02", 0, False, 0.0)


@given(
    digits=st.text(alphabet="0123456789*#ABCD", min_size=1, max_size=6),
    durations=st.lists(st.integers(40, 400), min_size=6, max_size=6),
    lost=st.lists(st.booleans(), min_size=60, max_size=60),
    start=st.integers(0, WRAP - 1),
)
def test_any_loss_that_leaves_a_packet_gives_each_press_once(
    digits: str, durations: list[int], lost: list[bool], start: int
) -> None:
    rx = TelephoneEventReceiver()
    ts, t, events, sent = start, 0.0, [], []
    for k, digit in enumerate(digits):
        packets = encode_digit(digit, durations[k])
        keep = [p for i, p in enumerate(packets) if not lost[(7 * k + i) % 60]] or packets[-1:]
        events += _send(rx, keep, ts, t)
        sent.append(digit)
        ts = (ts + durations[k] * 8 + 400) % WRAP
        t += durations[k] / 1000 + 0.05
    events += rx.expire(t + 1.0)
    assert [e.digit for e in events] == sent
    assert all(e.end is not None and e.end >= e.start for e in events)
