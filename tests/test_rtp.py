"""RTP packets, wraparound helpers, the sender and strict source latching."""

from __future__ import annotations

import contextlib
import random
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.media.rtp import (
    RtpError,
    RtpExtension,
    RtpPacket,
    RtpSender,
    SourceLatch,
    is_rtcp,
    normalize_address,
    pack_audio,
    packet_dtype,
    parse_rtp,
    seq_add,
    seq_diff,
    seq_newer,
    ts_add,
    ts_diff,
    ts_newer,
)

# --- packets -----------------------------------------------------------------------------


def test_pack_minimal_header_exact_bytes():
    pkt = RtpPacket(payload_type=0, sequence=0x1234, timestamp=0xDEADBEEF, ssrc=0x01020304)
    assert pkt.pack() == bytes.fromhex("80001234deadbeef01020304")
    marked = RtpPacket(payload_type=101, sequence=1, timestamp=2, ssrc=3, marker=True)
    assert marked.pack()[:2] == bytes([0x80, 0x80 | 101])


def test_parse_full_featured_packet():
    data = (
        bytes([0x80 | 0x20 | 0x10 | 2, 0x80 | 8])
        + struct.pack("!HII", 65535, 4294967295, 7)
        + struct.pack("!II", 11, 12)  # CSRCs
        + struct.pack("!HH", 0xBEDE, 1)
        + b"\x10\xaa\x00\x00"  # one-word extension
        + b"payload"
        + b"\x00\x00\x03"  # 3 padding octets
    )
    pkt = parse_rtp(data)
    assert pkt == RtpPacket(
        payload_type=8,
        marker=True,
        sequence=65535,
        timestamp=4294967295,
        ssrc=7,
        csrcs=(11, 12),
        extension=RtpExtension(profile=0xBEDE, data=b"\x10\xaa\x00\x00"),
        payload=b"payload",
        padding=3,
    )
    assert pkt.pack() == data


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension,
        profile=st.integers(0, 0xFFFF),
        data=st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4]),
    ),
    padding=st.integers(0, 255),
)


@given(packets)
def test_pack_parse_round_trip(pkt):
    assert parse_rtp(pkt.pack()) == pkt
    assert parse_rtp(memoryview(bytearray(pkt.pack()))) == pkt


@given(st.binary(max_size=64))
def test_parse_never_raises_anything_but_rtp_error(data):
    with contextlib.suppress(RtpError):
        parse_rtp(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00\x00", "too short"),
        (bytes([0x40]) + bytes(11), "version 1"),
        (bytes([0x82]) + bytes(11) + bytes(4), "CSRCs"),
        (bytes([0x90]) + bytes(11) + b"\x00\x00", "header extension"),
        (bytes([0x90]) + bytes(11) + b"\x00\x00\x00\x05", "runs past"),
        (bytes([0xA0]) + bytes(11) + b"\x00", "padding count 0"),
        (bytes([0xA0]) + bytes(11) + b"\x09", "padding count 9"),
    ],
)
def test_parse_errors_are_precise(data, message):
    with pytest.raises(RtpError, match=message):
        parse_rtp(data)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload_type": 128},
        {"sequence": 65536},
        {"timestamp": -1},
        {"ssrc": 1 << 32},
        {"csrcs": tuple(range(16))},
        {"padding": 256},
    ],
)
def test_invalid_packets_cannot_exist(kwargs):
    base = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    with pytest.raises(ValueError):
        RtpPacket(**(base | kwargs))
    with pytest.raises(ValueError):
        RtpExtension(profile=1, data=b"abc")


def test_is_rtcp():
    assert is_rtcp(bytes([0x81, 200, 0, 6]))  # sender report
    assert is_rtcp(bytes([0x80, 201, 0, 1]))
    assert not is_rtcp(bytes([0x80, 0, 0, 1]))
    assert not is_rtcp(bytes([0x80, 0x80 | 101]))  # marker + PT 101 is 229
    assert not is_rtcp(b"\x80")


# --- wraparound ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "diff"),
    [(5, 3, 2), (3, 5, -2), (0, 65535, 1), (65535, 0, -1), (32767, 0, 32767), (32768, 0, -32768)],
)
def test_seq_diff(a, b, diff):
    assert seq_diff(a, b) == diff
    assert seq_newer(a, b) == (diff > 0)


def test_seq_and_ts_add_wrap():
    assert seq_add(65535, 1) == 0
    assert seq_add(0, -1) == 65535
    assert ts_add(0xFFFFFF60, 160) == 0
    assert ts_diff(80, 0xFFFFFFF0) == 96
    assert ts_diff(0xFFFFFFF0, 80) == -96
    assert ts_newer(0, 0xFFFFFF60)
    assert not ts_newer(0xFFFFFF60, 0)


@given(st.integers(0, 0xFFFF), st.integers(-32768, 32767))
def test_seq_diff_inverts_add(a, n):
    assert seq_diff(seq_add(a, n), a) == n


@given(st.integers(0, 0xFFFFFFFF), st.integers(-(2**31), 2**31 - 1))
def test_ts_diff_inverts_add(a, n):
    assert ts_diff(ts_add(a, n), a) == n


# --- sender ------------------------------------------------------------------------------


def test_sender_starts_from_the_injected_rng_and_advances():
    rng = random.Random(7)
    expect = random.Random(7)
    ssrc, seq, ts = expect.getrandbits(32), expect.getrandbits(16), expect.getrandbits(32)
    sender = RtpSender(rng, 8)
    assert (sender.ssrc, sender.sequence, sender.timestamp) == (ssrc, seq, ts)
    first = parse_rtp(sender.packet(b"\xd5" * 160, 160, marker=True))
    second = parse_rtp(sender.packet(b"\xd5" * 160, 160))
    assert (first.sequence, first.timestamp, first.ssrc, first.marker) == (seq, ts, ssrc, True)
    assert second.sequence == seq_add(seq, 1)
    assert second.timestamp == ts_add(ts, 160)
    assert not second.marker and second.payload_type == 8
    sender.skip(320)
    third = parse_rtp(sender.packet(b"\x01", 0, payload_type=101))
    assert third.timestamp == ts_add(ts, 640) and third.payload_type == 101
    assert sender.packets_sent == 3 and sender.octets_sent == 321


def test_sender_wraps_sequence_and_timestamp():
    sender = RtpSender(random.Random(1), 0)
    sender.sequence, sender.timestamp = 65535, 0xFFFFFFFF - 100
    sender.packet(b"", 160)
    assert (sender.sequence, sender.timestamp) == (0, 59)


def test_sender_rejects_bad_payload_type():
    with pytest.raises(ValueError):
        RtpSender(random.Random(1), 200)


# --- source latch ------------------------------------------------------------------------


def feed(latch, source, seqs):
    return [latch.accept(source, s) for s in seqs]


def test_expected_sdp_address_locks_at_once():
    latch = SourceLatch(("192.0.2.5", 4000), None)
    assert latch.accept(("192.0.2.5", 4000), 10)
    assert latch.locked == ("192.0.2.5", 4000)
    assert not latch.accept(("198.51.100.9", 4000), 11)
    assert not latch.accept(("192.0.2.5", 4002), 12)  # same host, other port
    assert (latch.accepted, latch.dropped_foreign) == (1, 2)


def test_baresip_sends_from_signalling_host_not_sdp_address():
    # SDP says 127.0.0.2:30000, RTP leaves from 127.0.0.1 (PEERS.md)
    latch = SourceLatch(("127.0.0.2", 30000), "127.0.0.1")
    assert latch.accept(("127.0.0.1", 30000), 1)
    assert latch.locked == ("127.0.0.1", 30000)
    assert latch.accept(("127.0.0.1", 30000), 2)
    assert not latch.accept(("127.0.0.2", 30000), 3)
    assert latch.dropped_foreign == 1


def test_unknown_source_is_learned_after_probation():
    latch = SourceLatch(("192.0.2.5", 4000), "192.0.2.1", probation=3)
    src = ("203.0.113.7", 5555)
    assert feed(latch, src, [100, 101, 102, 103]) == [False, False, True, True]
    assert latch.locked == src
    assert latch.dropped_learning == 2
    assert not latch.accept(("192.0.2.5", 4000), 104)  # locked now: even the SDP address


def test_probation_restarts_on_a_gap_or_another_source():
    latch = SourceLatch(None, None, probation=2)
    a, b = ("10.0.0.1", 1000), ("10.0.0.2", 1000)
    assert not latch.accept(a, 5)
    assert not latch.accept(b, 6)  # another source: restart
    assert not latch.accept(a, 7)  # back to a: restart
    assert not latch.accept(a, 9)  # gap in sequence: restart
    assert latch.accept(a, 10)
    assert latch.locked == a


def test_probation_follows_sequence_wraparound():
    latch = SourceLatch(None, None, probation=3)
    assert feed(latch, ("10.0.0.1", 1), [65534, 65535, 0]) == [False, False, True]


def test_reset_relearns_after_reinvite():
    latch = SourceLatch(("192.0.2.5", 4000), None)
    assert latch.accept(("192.0.2.5", 4000), 1)
    latch.reset(("192.0.2.6", 4100), None)
    assert latch.locked is None
    assert latch.accept(("192.0.2.6", 4100), 2)
    assert not latch.accept(("192.0.2.5", 4000), 3)


def test_hold_address_is_not_expected_and_ipv6_is_normalised():
    latch = SourceLatch(("0.0.0.0", 4000), None)
    assert not latch.accept(("0.0.0.0", 4000), 1)
    latch = SourceLatch(("2001:db8::0:1", 4000), None)
    assert latch.accept(("2001:db8::1", 4000), 1)
    latch = SourceLatch(None, "127.0.0.1")
    assert latch.accept(("::ffff:127.0.0.1", 5000), 1)  # dual-stack socket
    assert normalize_address("::FFFF:10.1.2.3") == "10.1.2.3"
    assert normalize_address("fe80::1%eth0") == "fe80::1"
    assert normalize_address("Host.Example") == "host.example"


def test_latch_rejects_zero_probation():
    with pytest.raises(ValueError):
        SourceLatch(None, None, probation=0)


def test_pack_audio_builds_every_packet_of_a_tick_at_once():
    frames = np.array([[row] * 160 for row in range(4)], np.uint8)
    out = np.empty(3, packet_dtype(160))
    data = pack_audio(
        out,
        np.array([0x80 | 8, 0, 8], np.uint8),
        np.array([65535, 7, 0], np.uint16),
        np.array([2**32 - 160, 5, 0], np.uint32),
        np.array([1, 2, 3], np.uint32),
        frames,
        np.array([3, 0, 3]),
    )
    packets = [parse_rtp(data[i * 172 : (i + 1) * 172]) for i in range(3)]
    assert len(data) == 3 * 172
    assert packets[0] == RtpPacket(
        payload_type=8,
        marker=True,
        sequence=65535,
        timestamp=2**32 - 160,
        ssrc=1,
        payload=b"\x03" * 160,
    )
    assert (packets[1].payload_type, packets[1].marker, packets[1].payload) == (
        0,
        False,
        bytes(160),
    )
    assert (packets[2].sequence, packets[2].ssrc, packets[2].payload[0]) == (0, 3, 3)
    with pytest.raises(ValueError, match="holds 3 packets, 4 wanted"):
        pack_audio(
            out,
            *(np.zeros(4, t) for t in (np.uint8, np.uint16, np.uint32, np.uint32)),
            frames,
            np.zeros(4, np.intp),
        )
