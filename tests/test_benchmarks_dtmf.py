"""The DTMF throughput benchmark runs end to end with tiny bounded parameters."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "dtmf_detect.py"
_SPEC = importlib.util.spec_from_file_location("benchmarks.dtmf_detect", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
dtmf_detect = importlib.util.module_from_spec(_SPEC)  # benchmarks/ is not an installed package
sys.modules.setdefault(_SPEC.name, dtmf_detect)
_SPEC.loader.exec_module(dtmf_detect)


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
