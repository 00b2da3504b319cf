"""Turn pre-encoded G.711 prompt fragments into 20 ms RTP payload frames.

Pure. A :class:`Player` is a cursor over one buffer (fragments joined with
optional silence in between, the last frame padded with silence); the media
session pulls one frame per tick, may skip frames when a tick was late, and
stops it on barge-in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

from ivr.media.g711 import SILENCE

__all__ = ["FRAME_SAMPLES", "SAMPLE_RATE", "SILENCE", "Player"]

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160  # 20 ms of G.711: one byte per sample

_Fragment = bytes | bytearray | memoryview


class Player:
    """Frames of a prompt sequence, one at a time.

    ``gap_ms`` of silence goes between fragments (not before the first or after the
    last). ``frame_samples`` is 160 for 20 ms. ``done`` is True once every frame was
    taken or :meth:`stop` was called; ``stopped`` tells the two apart.
    """

    __slots__ = ("_buffer", "_frame", "_position", "_total", "codec", "stopped")

    def __init__(
        self,
        fragments: Sequence[_Fragment],
        *,
        codec: str,
        gap_ms: int = 0,
        frame_samples: int = FRAME_SAMPLES,
    ) -> None:
        if codec not in SILENCE:
            raise ValueError(f"unsupported codec {codec!r} (expected PCMU or PCMA)")
        if gap_ms < 0:
            raise ValueError("gap_ms must not be negative")
        if frame_samples <= 0:
            raise ValueError("frame_samples must be positive")
        silence = bytes((SILENCE[codec],))
        gap = silence * (gap_ms * SAMPLE_RATE // 1000)
        buffer = gap.join(bytes(f) for f in fragments if len(f))
        remainder = len(buffer) % frame_samples
        if remainder:
            buffer += silence * (frame_samples - remainder)
        self.codec = codec
        self._buffer = buffer
        self._frame = frame_samples
        self._total = len(buffer) // frame_samples
        self._position = 0
        self.stopped = False

    @property
    def total_frames(self) -> int:
        return self._total

    @property
    def duration(self) -> float:
        """Total length in seconds."""
        return self._total * self._frame / SAMPLE_RATE

    @property
    def position(self) -> int:
        """Frames taken (or skipped) so far."""
        return self._position

    @property
    def remaining_frames(self) -> int:
        return 0 if self.stopped else self._total - self._position

    @property
    def done(self) -> bool:
        return self.stopped or self._position >= self._total

    def next_frame(self) -> bytes | None:
        """The next frame, or None when done."""
        if self.stopped or self._position >= self._total:
            return None
        start = self._position * self._frame
        self._position += 1
        return self._buffer[start : start + self._frame]

    def skip(self, frames: int) -> int:
        """Drop up to ``frames`` frames (a late tick); returns how many were dropped."""
        if frames < 0:
            raise ValueError("cannot skip a negative number of frames")
        n = min(frames, self.remaining_frames)
        self._position += n
        return n

    def stop(self) -> None:
        """Barge-in: no further frames."""
        self.stopped = True

    def __iter__(self) -> Iterator[bytes]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def __repr__(self) -> str:
        state = " stopped" if self.stopped else ""
        return f"<Player {self.codec} {self._position}/{self._total} frames{state}>"
