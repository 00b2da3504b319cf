"""The pcap writer of ``ivr.testing.pcap``: checked against the captures Debian ships with
SIPp, against tshark's RTP dissector and against spandsp's in-band DTMF detector."""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import require_binary

from ivr.dtmf.generate import generate
from ivr.dtmf.rfc4733 import TelephoneEventReceiver
from ivr.media import g711
from ivr.media.rtp import parse_rtp
from ivr.testing.pcap import (
    EVENT_CODES,
    LINKTYPE_ETHERNET,
    RtpStream,
    event_payload,
    ip_checksum,
    read_pcap,
    udp_frame,
)

REFERENCE = Path("/usr/share/sip-tester")
REFERENCE_DIGITS = {**{d: d for d in "0123456789"}, "star": "*", "pound": "#"}


def reference(name: str) -> Path:
    """One of SIPp's RFC 2833 captures (Debian sip-tester); missing ones FAIL."""
    path = REFERENCE / f"dtmf_2833_{name}.pcap"
    if not path.is_file():
        pytest.fail(f"{path} is missing (Debian package sip-tester)")
    return path


def test_layout_and_checksums_match_sipp_reference_captures(tmp_path: Path) -> None:
    ref_linktype, ref_records = read_pcap(reference("1"))
    assert ref_linktype == LINKTYPE_ETHERNET
    assert all(r.ip_checksum_ok and r.udp_checksum_ok for r in ref_records)

    path = RtpStream().silence(40).event("1", 100).write(tmp_path / "one.pcap")
    assert path.read_bytes()[:24] == reference("1").read_bytes()[:24], "global header"
    linktype, records = read_pcap(path)
    assert linktype == LINKTYPE_ETHERNET and len(records) == 2 + 5 + 2
    assert all(r.ip_checksum_ok and r.udp_checksum_ok for r in records)
    assert {r.src for r in records} == {("127.0.0.1", 40000)}
    assert {r.dst for r in records} == {("127.0.0.1", 20000)}  # SIPp offsets ports from this

    # the reader notices a corrupted payload byte (the UDP checksum no longer holds)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    corrupt = tmp_path / "corrupt.pcap"
    corrupt.write_bytes(bytes(data))
    assert not read_pcap(corrupt)[1][-1].udp_checksum_ok


def test_checksums_follow_rfc_1071_and_768() -> None:
    # RFC 1071's worked example sums to 0xddf2; the checksum is its complement
    assert ip_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    frame = udp_frame(b"abc", ("10.0.0.1", 1000), ("10.0.0.2", 2000), ident=7)
    ip, udp = frame[14:34], frame[34:]
    assert ip_checksum(ip) == 0
    assert struct.unpack("!HHH", udp[:6]) == (1000, 2000, 11)
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    assert ip_checksum(pseudo + udp) == 0


@pytest.mark.parametrize("name", sorted(REFERENCE_DIGITS))
def test_events_are_shaped_like_the_reference_captures(name: str) -> None:
    """Same payload type, event code, volume; marker on the first packet only, one start
    timestamp for the whole press, the E bit on the last report, sent three times."""
    _, records = read_pcap(reference(name))
    ref = [parse_rtp(r.payload) for r in records]
    stream = RtpStream().event(REFERENCE_DIGITS[name], 160)
    ours = [parse_rtp(p.rtp) for p in stream.packets]
    for packets in (ref, ours):
        assert {p.payload_type for p in packets} == {101}
        assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)
        assert len({p.timestamp for p in packets}) == 1
        ends = [p.payload[1] >> 7 for p in packets]
        assert ends == [0] * (len(packets) - 3) + [1, 1, 1]
        durations = [struct.unpack("!H", p.payload[2:])[0] for p in packets]
        assert durations == sorted(durations) and durations[-3:] == [durations[-1]] * 3
    assert {p.payload[:2] for p in ours[:-3]} == {ref[0].payload[:2]}  # event code, volume
    assert {p.payload[:2] for p in ours[-3:]} == {ref[-1].payload[:2]}
    durations = [struct.unpack("!H", p.payload[2:])[0] for p in ours]
    assert durations == [160 * k for k in range(1, 9)] + [1280, 1280]  # 160 ms in 20 ms steps


def test_grid_timestamps_and_sequence_numbers(tmp_path: Path) -> None:
    stream = RtpStream(ssrc=7, first_sequence=65534, first_timestamp=2**32 - 320)
    stream.silence(40).event("5", 60).silence(20)
    _, records = read_pcap(stream.write(tmp_path / "grid.pcap"))
    packets = [parse_rtp(r.payload) for r in records]
    times = [round(r.time - records[0].time, 6) for r in records]
    assert times == [round(0.02 * i, 6) for i in range(len(records))]
    assert [p.sequence for p in packets] == [(65534 + i) % 65536 for i in range(len(packets))]
    assert {p.ssrc for p in packets} == {7}
    assert [p.payload_type for p in packets] == [0, 0, 101, 101, 101, 101, 101, 0]
    event_ts = (2**32 - 320 + 2 * 160) % 2**32
    assert [p.timestamp for p in packets] == [2**32 - 320, 2**32 - 160] + [event_ts] * 5 + [
        event_ts + 5 * 160
    ]  # audio resumes where the grid is: 3 updates and 2 more end reports later
    assert [p.marker for p in packets] == [True, False, True, False, False, False, False, False]
    assert packets[0].payload == bytes([0xFF]) * 160  # μ-law digital silence


def test_server_receiver_reads_each_press_once() -> None:
    stream = RtpStream().silence(100)
    for digit in "1300#":
        stream.event(digit, 100).silence(200)
    receiver = TelephoneEventReceiver()
    found = []
    for timed in stream.packets:
        packet = parse_rtp(timed.rtp)
        if packet.payload_type == 101:
            found += receiver.feed(packet.payload, packet.timestamp, packet.marker, timed.at)
    assert "".join(e.digit for e in found) == "1300#"
    assert all(abs(e.duration - 0.1) < 1e-9 for e in found if e.duration is not None)


def test_tshark_decodes_the_events(tmp_path: Path) -> None:
    tshark = require_binary("tshark", "tshark")
    path = RtpStream().silence(20).event("#", 60).event("7", 40).write(tmp_path / "ev.pcap")
    fields = ["ip.checksum.status", "udp.checksum.status", "rtp.p_type", "rtp.marker"]
    fields += ["rtpevent.event_id", "rtpevent.end_of_event", "rtpevent.duration"]
    run = subprocess.run(
        [tshark, "-r", str(path), "-o", "ip.check_checksum:TRUE"]
        + ["-o", "udp.check_checksum:TRUE", "-d", "udp.port==20000,rtp"]
        + ["-d", "rtp.pt==101,rtpevent", "-T", "fields", "-E", "separator=,"]
        + [arg for field in fields for arg in ("-e", field)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    rows = [line.split(",") for line in run.stdout.splitlines()]
    assert rows[0][:4] == ["1", "1", "0", "1"]  # checksums good, PCMU, talkspurt start
    events = [row for row in rows if row[2] == "101"]
    assert all(row[:2] == ["1", "1"] for row in events)
    assert [(int(r[4]), r[5], int(r[6])) for r in events] == [
        (11, "0", 160),
        (11, "0", 320),
        (11, "1", 480),
        (11, "1", 480),
        (11, "1", 480),
        (7, "0", 160),
        (7, "1", 320),
        (7, "1", 320),
        (7, "1", 320),
    ]
    assert [r[3] for r in events] == ["1", "0", "0", "0", "0", "1", "0", "0", "0"]


def spandsp_digits(pcm: np.ndarray) -> str:
    """Digits spandsp's reference detector (Debian libspandsp2) finds in ``pcm``."""
    name = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        pytest.fail("libspandsp2 is required (Debian package libspandsp2)")
    lib.dtmf_rx_init.restype = ctypes.c_void_p
    lib.dtmf_rx_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.dtmf_rx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.dtmf_rx_get.restype = ctypes.c_size_t
    lib.dtmf_rx_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.dtmf_rx_free.argtypes = [ctypes.c_void_p]
    state = lib.dtmf_rx_init(None, None, None)
    samples = np.ascontiguousarray(pcm, dtype=np.int16)
    lib.dtmf_rx(state, samples.ctypes.data, len(samples))
    buf = ctypes.create_string_buffer(64)
    count = lib.dtmf_rx_get(state, buf, 63)
    lib.dtmf_rx_free(state)
    return buf.raw[:count].decode("ascii")


def test_inband_audio_carries_tones_a_reference_detector_hears(tmp_path: Path) -> None:
    stream = RtpStream(codec="PCMU").silence(200).pcm(generate("4", tone_ms=120))
    stream.silence(300).pcm(generate("#9", tone_ms=120, gap_ms=300)).silence(200)
    _, records = read_pcap(stream.write(tmp_path / "inband.pcap"))
    packets = [parse_rtp(r.payload) for r in records]
    assert {p.payload_type for p in packets} == {0}
    assert {len(p.payload) for p in packets} == {160}
    pcm = np.concatenate([g711.decode("PCMU", p.payload) for p in packets])
    assert spandsp_digits(pcm) == "4#9"
    assert spandsp_digits(np.zeros(8000, dtype=np.int16)) == ""


def test_bad_arguments_are_refused() -> None:
    assert event_payload("d", end=True, volume=63, duration=0xFFFF) == bytes([15, 0xBF, 255, 255])
    assert EVENT_CODES.index("#") == 11
    with pytest.raises(ValueError):
        event_payload("x", end=False, volume=10, duration=0)
    with pytest.raises(ValueError):
        event_payload("1", end=False, volume=64, duration=0)
    with pytest.raises(ValueError):
        RtpStream().event("1", 9000)  # longer than one 16-bit duration field
    with pytest.raises(ValueError):
        RtpStream().event("1", 100, end_packets=0)
