"""Feeds the in-band detector from many calls' received audio, one block per media tick.

RTP arrives with jitter; each call's decoded audio waits in a small buffer and
the shared tick takes one 20 ms frame from every call at once, so a single
(channels × 160) block goes through :class:`InbandDetector`. A call's buffer is
primed with two frames first (40 ms of jitter absorbed); when it runs dry the
frame is filled with silence, which the detector bridges (its release takes 30 ms).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ivr.dtmf.events import DigitEvent
from ivr.dtmf.inband import InbandDetector

FRAME = 160
PRIME_FRAMES = 2
MAX_BUFFERED = 10


class InbandChannels:
    """Per-call buffers in front of one multi-channel detector."""

    def __init__(self, rate: int = 8000) -> None:
        self.detector = InbandDetector(0, rate)
        self._buffers: dict[int, deque[np.ndarray]] = {}
        self._primed: set[int] = set()
        self._pending: dict[int, np.ndarray] = {}
        self.dropped_frames = 0

    def open(self) -> int:
        """A channel for a new call; returns its slot."""
        slot = self.detector.add_channel()
        self._buffers[slot] = deque()
        self._pending[slot] = np.zeros(0, dtype=np.int16)
        return slot

    def close(self, slot: int) -> list[DigitEvent]:
        """Release a call's channel; returns a digit still held at that moment."""
        self._buffers.pop(slot, None)
        self._pending.pop(slot, None)
        self._primed.discard(slot)
        return self.detector.remove_channel(slot)

    def push(self, slot: int, pcm: np.ndarray) -> None:
        """Decoded audio of one received packet (any length)."""
        buffer = self._buffers.get(slot)
        if buffer is None:
            return
        data = np.concatenate((self._pending[slot], pcm.astype(np.int16, copy=False)))
        whole = len(data) // FRAME * FRAME
        for start in range(0, whole, FRAME):
            buffer.append(data[start : start + FRAME])
        self._pending[slot] = data[whole:]
        while len(buffer) > MAX_BUFFERED:
            buffer.popleft()
            self.dropped_frames += 1
        if len(buffer) >= PRIME_FRAMES:
            self._primed.add(slot)

    def tick(self) -> list[tuple[int, DigitEvent]]:
        """Take one frame from every primed channel and run the detector once (silence
        for the others, so every channel's clock advances by 20 ms per tick)."""
        if not self._buffers:
            return []
        block = np.zeros((self.detector.channels, FRAME), dtype=np.int16)
        for slot in self._buffers:
            buffer = self._buffers[slot]
            if slot in self._primed and buffer:
                block[slot] = buffer.popleft()
            elif slot in self._primed:
                self._primed.discard(slot)  # ran dry: re-prime, silence meanwhile
        return self.detector.feed(block)

    def __len__(self) -> int:
        return len(self._buffers)
