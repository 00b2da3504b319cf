"""DTMF synthesis: frequencies, levels, twist, offsets and timing are what was asked for."""

from __future__ import annotations

import numpy as np
import pytest

from ivr.dtmf.generate import DBM0_PEAK, generate, tone_pair


def _level_dbm0(x: np.ndarray, freq: float, rate: int) -> float:
    """Level of the component at ``freq`` (least-squares fit of a sine and a cosine)."""
    t = np.arange(len(x)) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x.astype(float), rcond=None)
    return 20 * np.log10(np.hypot(*coef) / DBM0_PEAK)


def test_tone_pairs() -> None:
    assert tone_pair("1") == (697.0, 1209.0)
    assert tone_pair("0") == (941.0, 1336.0)
    assert tone_pair("#") == (941.0, 1477.0)
    assert tone_pair("d") == (941.0, 1633.0)
    for bad in ("E", "", "12", 5):
        with pytest.raises(ValueError):
            tone_pair(bad)  # type: ignore[arg-type]


def test_timing_and_silence() -> None:
    x = generate("12", rate=8000, tone_ms=50, gap_ms=30, lead_ms=10, trail_ms=20)
    assert x.dtype == np.int16 and len(x) == 8 * (10 + 50 + 30 + 50 + 20)
    assert not x[:80].any() and not x[480:720].any() and not x[-160:].any()
    assert x[80:480].any() and x[720:1120].any()


@pytest.mark.parametrize(("level", "twist"), [(-10.0, 0.0), (-3.0, 0.0), (-20.0, 4.0), (-15, -8.0)])
def test_levels_and_twist(level: float, twist: float) -> None:
    x = generate("5", tone_ms=200, level_dbm0=level, twist_db=twist, ramp_ms=0)
    assert _level_dbm0(x, 770.0, 8000) == pytest.approx(level - twist / 2, abs=0.05)
    assert _level_dbm0(x, 1336.0, 8000) == pytest.approx(level + twist / 2, abs=0.05)


@pytest.mark.parametrize("offset", [1.5, -3.5, (2.0, -1.0)])
def test_frequency_offsets(offset: float | tuple[float, float]) -> None:
    x = generate("9", rate=16000, tone_ms=500, freq_offset_pct=offset, ramp_ms=0)
    lo_pct, hi_pct = offset if isinstance(offset, tuple) else (offset, offset)
    assert _level_dbm0(x, 852.0 * (1 + lo_pct / 100), 16000) == pytest.approx(-10, abs=0.05)
    assert _level_dbm0(x, 1477.0 * (1 + hi_pct / 100), 16000) == pytest.approx(-10, abs=0.05)


def test_loud_tones_clip_instead_of_wrapping() -> None:
    x = generate("D", level_dbm0=6.0)
    assert x.max() == 32767 and x.min() == -32768


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate("5E")
    with pytest.raises(ValueError):
        generate("5", tone_ms=0)
    with pytest.raises(ValueError):
        generate("5", rate=0)
