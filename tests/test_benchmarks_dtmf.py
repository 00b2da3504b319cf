"""The DTMF benchmarks run end to end with tiny bounded parameters (so they never rot)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from benchmarks import dtmf_bench, dtmf_detect


@pytest.mark.benchmark
def test_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert dtmf_detect.main(["--channels", "4", "--seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "ivr" in out and "M samples/CPU-s" in out
    assert ("ratio" in out) == (dtmf_detect.load_spandsp() is not None)


def test_benchmark_signal_is_what_it_says() -> None:
    audio, expected = dtmf_detect.make_channels(8, 1.0, seed=2)
    result = dtmf_detect.run_ivr(audio)
    assert audio.shape == (8, 8000) and result.digits == expected > 0


def test_benchmark_rejects_unbounded_parameters() -> None:
    with pytest.raises(SystemExit):
        dtmf_detect.main(["--channels", "0"])
    with pytest.raises(SystemExit):
        dtmf_bench.main(["--channels", "0"])
    with pytest.raises(SystemExit):
        dtmf_bench.main(["--digits", "5X"])


@pytest.mark.benchmark
def test_accuracy_and_throughput_report(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--channels", "1", "8", "--seconds", "0.3", "--reps", "1", "--min-cpu", "0"]
    argv += ["--digits", "5#", "--talkoff-seconds", "3"]
    assert dtmf_bench.main(argv) == 0
    out = capsys.readouterr().out
    ivr = re.search(r"^SUMMARY accuracy ivr: must-detect (\S+) %.*$", out, re.M)
    assert ivr is not None, out
    assert ivr.group(1) == "100.0" and "must-reject accepted 0/" in ivr.group(0)
    assert "talk-off 0 digits" in ivr.group(0)
    for category in ("deviation +-1.5%", "G.711 A-law", "call progress", "same-group pair"):
        assert re.search(rf"^{re.escape(category)} ", out, re.M), category
    assert "SUMMARY throughput 1 channels: ivr" in out
    assert "SUMMARY throughput 8 channels: ivr" in out
    spandsp = dtmf_detect.load_spandsp() is not None
    assert ("SUMMARY accuracy spandsp:" in out) == spandsp
    assert ("ratio ivr/spandsp" in out) == spandsp


def test_spandsp_binding_reads_digits() -> None:
    spandsp = dtmf_detect.load_spandsp()
    if spandsp is None:
        assert dtmf_bench.main(["--skip-accuracy", "--channels", "1", "--seconds", "0.1"]) == 0
        return
    x = dtmf_bench.generate("159#", tone_ms=60, gap_ms=60, lead_ms=50, trail_ms=100)
    assert spandsp.digits(x) == "159#"
    assert spandsp.digits(np.zeros(800, dtype=np.int16)) == ""


def test_lcs_counts_digits_found_in_order() -> None:
    assert dtmf_bench._lcs("1234", "1234") == 4
    assert dtmf_bench._lcs("1234", "124") == 3
    assert dtmf_bench._lcs("1234", "4321") == 1
    assert dtmf_bench._lcs("", "12") == 0
