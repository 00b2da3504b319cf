"""The in-band detector's fast paths give exactly what one channel alone gives.

A media tick of many channels takes other routes through :mod:`ivr.dtmf.inband` than a whole
recording does: one product per frame instead of per sub-block position, state machines stepped
together instead of one by one, quiet channels left out, plausible frames that cannot matter left
unchecked. Each is forced here on channels full of near misses, and every channel's key presses
must equal those of :func:`ivr.dtmf.detect` on it.
"""

from __future__ import annotations

import numpy as np
import pytest

from ivr.dtmf import DIGITS, InbandDetector, detect, generate, inband

RATE = 8000
SECONDS = 3.0
DBM0_RMS = 16107.0


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(x, dtype=float)[:n]
    return np.pad(x, (0, n - len(x)))


def _channels() -> np.ndarray:
    """Digits with noise, twist, deviation, drop-outs and short gaps; noise at many levels (a
    quarter of its frames pass level, twist and deviation); quiet line noise; silence."""
    rng = np.random.default_rng(17)
    n = int(SECONDS * RATE)
    rows = []
    for i in range(24):
        digits = "".join(rng.choice(list(DIGITS), 8))
        x = generate(
            digits,
            tone_ms=float(rng.uniform(30, 90)),
            gap_ms=float(rng.uniform(25, 90)),
            level_dbm0=float(rng.uniform(-38, -5)),
            twist_db=float(rng.uniform(-9, 5)),
            freq_offset_pct=(float(rng.uniform(-2.5, 2.5)), float(rng.uniform(-2.5, 2.5))),
            lead_ms=float(rng.uniform(0, 300)),
        ).astype(float)
        if i % 3 == 0:  # 10 ms drop-outs
            for start in rng.integers(0, len(x), 6):
                x[start : start + 80] = 0
        if i % 2:
            x += rng.normal(0, DBM0_RMS * 10 ** (rng.uniform(-60, -30) / 20), len(x))
        rows.append(_fit(x, n))
    for level in np.linspace(-50, -5, 12):
        rows.append(rng.normal(0, DBM0_RMS * 10 ** (level / 20), n))
    for level in (-75.0, -65.0, -58.0):
        rows.append(rng.normal(0, DBM0_RMS * 10 ** (level / 20), n))
    rows += [np.zeros(n), np.zeros(n)]
    quiet_then_digits = np.zeros(n)
    quiet_then_digits[RATE:] = _fit(generate("7#", tone_ms=60, gap_ms=60), n - RATE)
    rows.append(quiet_then_digits)
    return np.clip(np.round(np.stack(rows)), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def block() -> np.ndarray:
    return _channels()


@pytest.fixture(scope="module")
def alone(block: np.ndarray) -> list[list[tuple[str, float, float]]]:
    return [[(d.digit, d.start, d.end) for d in detect(row, RATE)] for row in block]


def _feed(block: np.ndarray, sizes: list[int]) -> list[list[tuple[str, float, float]]]:
    det = InbandDetector(len(block))
    events, i, k = [], 0, 0
    while i < block.shape[1]:
        step = sizes[k % len(sizes)]
        events += det.feed(block[:, i : i + step])
        i, k = i + step, k + 1
    events += det.flush()
    out: list[list[tuple[str, float, float]]] = [[] for _ in block]
    for ch, e in events:
        assert e.end is not None
        out[ch].append((e.digit, e.start, e.end))
    return out


PATHS = {
    "ticks": ({}, [160]),
    "ticks, state machines in lockstep": ({"LOCKSTEP_CHANNELS": 0}, [160]),
    "ticks, state machines one by one": ({"LOCKSTEP_CHANNELS": 10**9}, [160]),
    "ticks, quiet channels left out": ({"QUIET_SHARE": 0.0, "GATE_RECHECK": 0}, [160]),
    "ticks, never gated": ({"QUIET_SHARE": 2.0}, [160]),
    "odd blocks": ({"LOCKSTEP_CHANNELS": 0, "QUIET_SHARE": 0.0}, [7, 333, 41, 2000, 160, 1]),
    "long blocks, sub-block products": ({"LOCKSTEP_CHANNELS": 0}, [1200, 4000]),
    "small passes": ({"PASS_FRAMES": 64, "LOCKSTEP_CHANNELS": 0}, [3000]),
}


@pytest.mark.parametrize("path", list(PATHS), ids=list(PATHS))
def test_every_path_equals_each_channel_alone(
    path: str,
    block: np.ndarray,
    alone: list[list[tuple[str, float, float]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, sizes = PATHS[path]
    for name, value in settings.items():
        monkeypatch.setattr(inband, name, value)
    assert _feed(block, sizes) == alone
    assert sum(map(len, alone)) > 100  # the signals do carry presses


def test_the_quiet_gate_is_safe_and_used(block: np.ndarray) -> None:
    det = InbandDetector(len(block))
    data = np.zeros((len(block), 280), np.float32)
    data[:, 120:] = block[:, RATE : RATE + 160]
    loud = det._loud(data, 4)
    quiet = np.setdiff1d(np.arange(len(block)), loud if loud is not None else [])
    assert loud is not None and len(quiet) >= 5  # the quiet rows are found ...
    # ... and none of them has a frame loud enough for the level check
    window = inband._analysis(RATE).window
    for row in quiet:
        for f in range(4):
            coef = data[row, f * 40 : f * 40 + 160] @ window
            power = (coef[0::2] ** 2 + coef[1::2] ** 2).max() * 2 / 80**2 * 2.5
            assert power < inband.DBM0 * 10 ** (inband.MIN_LEVEL_DBM0 / 10)
