"""Digit events shared by the three DTMF sources (RFC 4733, SIP INFO, in-band)."""

from __future__ import annotations

import math
from dataclasses import dataclass

DIGITS = "0123456789*#ABCD"
SOURCES = frozenset({"rfc4733", "info", "inband"})


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitEvent:
    """One key press: ``start``/``end`` in seconds on the caller's clock, ``duration`` in seconds.

    ``end`` and ``duration`` are ``None`` when the source did not tell (e.g. a bare SIP INFO digit).
    """

    digit: str
    source: str
    start: float
    end: float | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.digit, str) or len(self.digit) != 1 or self.digit not in DIGITS:
            raise ValueError(f"DTMF digit must be one of {DIGITS!r}, got {self.digit!r}")
        if self.source not in SOURCES:
            raise ValueError(f"DTMF source must be one of {sorted(SOURCES)}, got {self.source!r}")
        if not math.isfinite(self.start):
            raise ValueError(f"start must be finite, got {self.start!r}")
        if self.end is not None and not (math.isfinite(self.end) and self.end >= self.start):
            raise ValueError(f"end must be finite and >= start ({self.start}), got {self.end!r}")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration >= 0):
            raise ValueError(f"duration must be finite and >= 0, got {self.duration!r}")
