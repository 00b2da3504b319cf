"""DTMF tone synthesis (prompts, test signals, the ``ivr dtmf generate`` command)."""

from __future__ import annotations

import numpy as np

from ivr.dtmf.events import DIGITS

LOW = (697.0, 770.0, 852.0, 941.0)
HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")
DBM0_PEAK = 16107.0 * np.sqrt(2.0)  # peak of a 0 dBm0 sine in 16-bit units (G.711 convention)


def tone_pair(digit: str) -> tuple[float, float]:
    """Nominal (low, high) frequencies in Hz of a keypad digit (case-insensitive)."""
    if isinstance(digit, str) and len(digit) == 1:
        for row, keys in enumerate(KEYPAD):
            col = keys.find(digit.upper())
            if col >= 0:
                return LOW[row], HIGH[col]
    raise ValueError(f"not a DTMF digit: {digit!r} (expected one of {DIGITS!r})")


def generate(
    digits: str,
    rate: int = 8000,
    tone_ms: float = 100,
    gap_ms: float = 100,
    level_dbm0: float = -10,
    twist_db: float = 0,
    freq_offset_pct: float | tuple[float, float] = 0.0,
    lead_ms: float = 0,
    trail_ms: float = 0,
    ramp_ms: float = 1.0,
) -> np.ndarray:
    """Int16 samples of ``digits`` as DTMF.

    ``level_dbm0`` is the mean per-tone level; ``twist_db`` (high minus low group) is split
    symmetrically around it so the total power stays put. ``freq_offset_pct`` shifts both tones,
    or (low, high) separately. A pause of ``gap_ms`` separates digits; ``lead_ms``/``trail_ms``
    of silence frame the whole; each tone has raised-cosine edges of ``ramp_ms``.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if tone_ms <= 0 or min(gap_ms, lead_ms, trail_ms, ramp_ms) < 0:
        raise ValueError("tone_ms must be positive and gap/lead/trail/ramp non-negative")
    pairs = [tone_pair(d) for d in digits]
    off_lo, off_hi = (
        freq_offset_pct if isinstance(freq_offset_pct, tuple) else (freq_offset_pct,) * 2
    )
    amp_lo = DBM0_PEAK * 10 ** ((level_dbm0 - twist_db / 2) / 20)
    amp_hi = DBM0_PEAK * 10 ** ((level_dbm0 + twist_db / 2) / 20)
    n_tone = _samples(tone_ms, rate)
    t = np.arange(n_tone) / rate
    env = _envelope(n_tone, _samples(ramp_ms, rate))
    parts = [np.zeros(_samples(lead_ms, rate))]
    for k, (f_lo, f_hi) in enumerate(pairs):
        if k:
            parts.append(np.zeros(_samples(gap_ms, rate)))
        lo = amp_lo * np.sin(2 * np.pi * f_lo * (1 + off_lo / 100) * t)
        hi = amp_hi * np.sin(2 * np.pi * f_hi * (1 + off_hi / 100) * t)
        parts.append((lo + hi) * env)
    parts.append(np.zeros(_samples(trail_ms, rate)))
    out = np.concatenate(parts)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def _samples(ms: float, rate: int) -> int:
    return round(ms * rate / 1000)


def _envelope(n: int, ramp: int) -> np.ndarray:
    env = np.ones(n)
    ramp = min(ramp, n // 2)
    if ramp:
        edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
        env[:ramp] = edge
        env[n - ramp :] = edge[::-1]
    return env
