"""The feature-call benchmark runs end to end once, with tiny bounded parameters.

Real SIPp, a real `ivr serve`, the real capture process and a MediaEngine child: a missing
SIPp fails the test (it never skips). Only the shape of the output is checked, not timings.
"""

from __future__ import annotations

import struct

import pytest

from benchmarks import feature_calls, rtp_receiver


@pytest.mark.benchmark
@pytest.mark.e2e
def test_benchmark_smoke(sipp_binary: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--rates", "5", "--seconds", "1", "--streams", "10", "--stream-seconds", "1"]
    assert feature_calls.main(argv) == 0
    out = capsys.readouterr().out
    assert "Part A" in out and "reference: none" in out
    assert "rate     5/s" in out and "peak streams" in out and "jitter" in out
    assert "server cpu" in out
    assert "Part B — media engine without signalling" in out and "N    10" in out
    assert "part A highest setup rate held" in out
    assert "part A largest simultaneous prompt-playing calls held" in out
    assert "part B media engine without signalling, largest N held" in out


def test_benchmark_rejects_unbounded_parameters() -> None:
    for argv in (["--rates", "0"], ["--seconds", "600"], ["--streams", "100000"]):
        with pytest.raises(SystemExit):
            feature_calls.main(argv)


def _record(seq: int, ts: int, ssrc: int, at_ns: int) -> bytes:
    header = struct.pack("!BBHII", 0x80, 8, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    return header + struct.pack("=qq", at_ns // 1_000_000_000, at_ns % 1_000_000_000)


def test_receiver_counts_loss_skips_jitter_and_overlap() -> None:
    ms = 1_000_000
    records = b""
    for i in range(50):  # stream 1: perfect 20 ms pacing across a sequence wrap, one lost
        if i != 10:
            records += _record(65530 + i, 160 * i, 1, 20 * ms * i)
    for i in range(30):  # stream 2 starts later; the sender skipped 2 frames at i = 20
        ts = 160 * (i + (2 if i >= 20 else 0))
        late = 3 * ms if i == 5 else 0
        records += _record(100 + i, ts, 2, 500 * ms + 20 * ms * i + late)
    summary = rtp_receiver.summarize(records, 20.0)
    assert summary["streams"] == 2 and summary["packets"] == 79
    assert summary["lost"] == 1 and summary["streams_with_loss"] == 1
    assert summary["skipped"] == 2
    assert summary["peak_streams"] == 2
    assert summary["jitter_ms"]["max"] == pytest.approx(20.0)  # the gap of the lost packet
    assert summary["jitter_ms"]["p50"] == pytest.approx(0.0)
