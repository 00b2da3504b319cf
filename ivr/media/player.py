"""Turn pre-encoded G.711 prompt fragments into 20 ms RTP payload frames.

Pure. A :class:`Player` is a cursor over one buffer (fragments joined with
optional silence in between, the last frame padded with silence); the media
session pulls one frame per tick, may skip frames when a tick was late, and
stops it on barge-in. While a stream plays it, the stream's engine owns the
cursor (the position lives in the engine's arrays; see :class:`PlayerOwner`),
and a :class:`FrameArena` holds the frames of every playing prompt in one
numpy array so that a tick gathers all streams' payloads in one step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from ivr.media.g711 import SILENCE

__all__ = [
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "SILENCE",
    "SILENCE_ROWS",
    "ArenaRegion",
    "FrameArena",
    "Player",
    "PlayerOwner",
]

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160  # 20 ms of G.711: one byte per sample

_Fragment = bytes | bytearray | memoryview


class PlayerOwner(Protocol):
    """Who keeps a playing :class:`Player`'s position (a media stream's engine slot)."""

    def _player_position(self) -> int: ...
    def _player_seek(self, position: int) -> None: ...
    def _player_stopped(self) -> None: ...


def join_frames(
    fragments: Sequence[_Fragment], codec: str, gap_ms: int = 0, frame_samples: int = FRAME_SAMPLES
) -> bytes:
    """The fragments back to back, ``gap_ms`` of silence between them, the last frame
    padded with silence. One fragment of whole frames comes back as the same object
    (so players made from it share its frames in the engine's arena)."""
    silence = bytes((SILENCE[codec],))
    gap = silence * (gap_ms * SAMPLE_RATE // 1000)
    buffer = gap.join(bytes(f) for f in fragments if len(f))
    remainder = len(buffer) % frame_samples
    if remainder:
        buffer += silence * (frame_samples - remainder)
    return buffer


class Player:
    """Frames of a prompt sequence, one at a time.

    ``gap_ms`` of silence goes between fragments (not before the first or after the
    last). ``frame_samples`` is 160 for 20 ms. ``done`` is True once every frame was
    taken or :meth:`stop` was called; ``stopped`` tells the two apart.
    """

    __slots__ = ("_buffer", "_frame", "_owner", "_position", "_total", "codec", "stopped")

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
        buffer = join_frames(fragments, codec, gap_ms, frame_samples)
        self.codec = codec
        self._buffer = buffer
        self._frame = frame_samples
        self._total = len(buffer) // frame_samples
        self._position = 0
        self._owner: PlayerOwner | None = None
        self.stopped = False

    @property
    def buffer(self) -> bytes:
        """Every frame, back to back (read-only)."""
        return self._buffer

    @property
    def frame_samples(self) -> int:
        return self._frame

    @property
    def owner(self) -> PlayerOwner | None:
        """The stream playing this player now, if any."""
        return self._owner

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
        owner = self._owner
        return self._position if owner is None else owner._player_position()

    def _seek(self, position: int) -> None:
        owner = self._owner
        if owner is None:
            self._position = position
        else:
            owner._player_seek(position)

    @property
    def remaining_frames(self) -> int:
        return 0 if self.stopped else self._total - self.position

    @property
    def done(self) -> bool:
        return self.stopped or self.position >= self._total

    def next_frame(self) -> bytes | None:
        """The next frame, or None when done."""
        position = self.position
        if self.stopped or position >= self._total:
            return None
        self._seek(position + 1)
        start = position * self._frame
        return self._buffer[start : start + self._frame]

    def skip(self, frames: int) -> int:
        """Drop up to ``frames`` frames (a late tick); returns how many were dropped."""
        if frames < 0:
            raise ValueError("cannot skip a negative number of frames")
        n = min(frames, self.remaining_frames)
        self._seek(self.position + n)
        return n

    def stop(self) -> None:
        """Barge-in: no further frames."""
        self.stopped = True
        if self._owner is not None:
            self._owner._player_stopped()

    def _attach(self, owner: PlayerOwner) -> None:
        """A stream starts playing this: ``owner`` keeps the position from now on."""
        if self._owner is not None and self._owner is not owner:
            raise RuntimeError("this player is already playing on another stream")
        self._owner = owner

    def _detach(self, position: int) -> None:
        """The stream let go (done, stopped or replaced) at ``position``."""
        self._owner = None
        self._position = position

    def __iter__(self) -> Iterator[bytes]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def __repr__(self) -> str:
        state = " stopped" if self.stopped else ""
        return f"<Player {self.codec} {self.position}/{self._total} frames{state}>"


# --- one array for the frames of every playing prompt -----------------------------------

SILENCE_ROWS: Final = {"PCMU": 0, "PCMA": 1}
"""Rows of a :class:`FrameArena` that always hold one frame of the codec's silence."""


class ArenaRegion:
    """A buffer's frames in a :class:`FrameArena`: rows ``[start, start + rows)``."""

    __slots__ = ("buffer", "refs", "rows", "start")

    def __init__(self, buffer: bytes, start: int, rows: int) -> None:
        self.buffer = buffer
        self.start = start
        self.rows = rows
        self.refs = 1


class FrameArena:
    """The frames of every playing prompt in one ``(rows, 160)`` uint8 array.

    :meth:`place` copies a player's buffer in (once per buffer: players that share
    one, like shallow copies of a template, share its rows) and :meth:`release` lets
    go of it. Space is bump-allocated; when it runs out the live regions are packed
    into a new array of at least twice their size, so their ``start`` moves (the
    caller shifts its row numbers by the returned deltas). Rows 0 and 1 hold PCMU
    and PCMA silence (:data:`SILENCE_ROWS`).
    """

    def __init__(self, rows: int = 4096, frame: int = FRAME_SAMPLES) -> None:
        self.frame = frame
        self.frames: npt.NDArray[np.uint8] = self._new(max(rows, 2 + len(SILENCE_ROWS)))
        self.top = len(SILENCE_ROWS)
        self._regions: dict[int, ArenaRegion] = {}

    def _new(self, rows: int) -> npt.NDArray[np.uint8]:
        frames = np.empty((rows, self.frame), np.uint8)
        for codec, row in SILENCE_ROWS.items():
            frames[row] = SILENCE[codec]
        return frames

    @property
    def live_rows(self) -> int:
        return sum(r.rows for r in self._regions.values())

    def place(self, buffer: bytes) -> tuple[ArenaRegion, dict[int, int]]:
        """The region holding ``buffer``'s frames, and the moves a compaction made
        (``{id(region): delta}``, empty when nothing moved)."""
        region = self._regions.get(id(buffer))
        if region is not None and region.buffer is buffer:
            region.refs += 1
            return region, {}
        if len(buffer) % self.frame:
            raise ValueError(f"buffer of {len(buffer)} bytes is not whole {self.frame}-byte frames")
        rows = len(buffer) // self.frame
        moved: dict[int, int] = {}
        if self.top + rows > len(self.frames):
            moved = self._compact(rows)
        region = ArenaRegion(buffer, self.top, rows)
        self.frames[self.top : self.top + rows] = np.frombuffer(buffer, np.uint8).reshape(
            rows, self.frame
        )
        self.top += rows
        self._regions[id(buffer)] = region
        return region, moved

    def release(self, region: ArenaRegion) -> None:
        region.refs -= 1
        if region.refs <= 0 and self._regions.get(id(region.buffer)) is region:
            del self._regions[id(region.buffer)]
            if region.start + region.rows == self.top:
                self.top = region.start  # the newest region: reuse its rows at once

    def _compact(self, extra: int) -> dict[int, int]:
        base = len(SILENCE_ROWS)
        need = base + self.live_rows + extra
        rows = max(len(self.frames), 2 * need)
        old, self.frames = self.frames, self._new(rows)
        top = base
        moved: dict[int, int] = {}
        for region in self._regions.values():
            self.frames[top : top + region.rows] = old[region.start : region.start + region.rows]
            if top != region.start:
                moved[id(region)] = top - region.start
            region.start = top
            top += region.rows
        self.top = top
        return moved
