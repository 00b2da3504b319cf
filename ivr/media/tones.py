"""Call-progress tones generated from their definitions (no files), G.711-encoded, cached."""

from __future__ import annotations

from functools import cache

import numpy as np

from ivr.media import g711

SAMPLE_RATE = 8000
RINGBACK_HZ = 425.0  # the European ringing tone (ETSI TR 101 041): 425 Hz,
RINGBACK_ON, RINGBACK_OFF = 1.0, 4.0  # 1 s on, 4 s off
RINGBACK_LEVEL = 0.2  # of full scale (about -17 dBm0)


@cache
def ringback_cadence(codec: str) -> bytes:
    """One cadence of ringing tone (tone, then silence), G.711-encoded for ``codec``."""
    t = np.arange(int(RINGBACK_ON * SAMPLE_RATE)) / SAMPLE_RATE
    tone = RINGBACK_LEVEL * 32767 * np.sin(2 * np.pi * RINGBACK_HZ * t)
    pcm = np.concatenate([tone, np.zeros(int(RINGBACK_OFF * SAMPLE_RATE))]).astype(np.int16)
    return g711.encode(codec, pcm)
