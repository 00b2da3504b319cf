"""Record a caller from G.711 RTP payloads: reorder, fill losses, stop, trim.

Pure: numpy and the RTP helpers only; nothing reads a clock. The call controller
feeds each audio packet's sequence number and payload in arrival order and tells the
recorder when ``#`` was pressed or the caller hung up; the recorder itself stops on
``silence_seconds`` of continuous silence or at ``max_seconds``.

Packets wait in a small reorder buffer (the first ``reorder_packets`` are gathered
before the start is fixed, so the first packet need not arrive first): a missing
packet is given up (and filled with silence of the last packet's length) once a
packet ``reorder_packets`` further on has arrived, or when the recording stops.
Duplicates and packets older than the buffer are dropped. Sequence numbers taken by
other payload types of the stream (RFC 4733 events, comfort noise) read as lost
packets: silence, so time is kept and a key's tone is not recorded. A jump of more
than ``max_gap_packets`` either way is taken as the sender restarting its numbering:
the recorder resynchronises without filling. Time is counted in samples received, so
a sender that sends nothing during pauses (DTX) gets its pauses shortened; the
controller's wall-clock watchdog covers a silent stream.

A frame is *voiced* when its RMS level reaches ``silence_dbfs``. Trailing silence is
trimmed from the result; fewer than ``min_seconds`` of voiced audio makes it
:class:`TooShort` (the message is discarded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from ivr.media import g711
from ivr.media.rtp import seq_add, seq_diff

__all__ = ["SAMPLE_RATE", "STOP_REASONS", "Recorder", "Recording", "StopReason", "TooShort"]

SAMPLE_RATE: Final = 8000
StopReason = Literal["digit", "silence", "max_length", "hangup"]
STOP_REASONS: Final[frozenset[str]] = frozenset({"digit", "silence", "max_length", "hangup"})
_DEFAULT_FRAME: Final = 160  # 20 ms: the fill size before any packet has been seen

PCM = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Recording:
    """A message worth keeping: 8 kHz mono int16 ``pcm`` (read-only), trailing silence
    trimmed; ``voiced_seconds`` of it were above the silence level."""

    pcm: PCM
    reason: StopReason
    voiced_seconds: float

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.pcm) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class TooShort:
    """Fewer than ``min_seconds`` of voiced audio: nothing to save."""

    reason: StopReason
    voiced_seconds: float


class Recorder:
    """One recording, fed RTP audio payloads of one call (``codec`` "PCMU" or "PCMA").

    Counters: ``packets`` (accepted), ``lost`` (packets filled with silence),
    ``discarded`` (duplicates and late packets), ``resyncs``.
    """

    __slots__ = (
        "_chunks",
        "_drop",
        "_frame",
        "_max_gap",
        "_max_samples",
        "_min_voiced",
        "_next",
        "_pending",
        "_primed",
        "_reason",
        "_reorder",
        "_silence_samples",
        "_silent_run",
        "_threshold_ms",
        "_total",
        "codec",
        "discarded",
        "lost",
        "packets",
        "resyncs",
    )

    def __init__(
        self,
        codec: str,
        *,
        max_seconds: float = 180.0,
        silence_seconds: float = 3.0,
        silence_dbfs: float = -45.0,
        min_seconds: float = 1.0,
        reorder_packets: int = 8,
        max_gap_packets: int = 250,
    ) -> None:
        if codec.upper() not in g711.CODECS:
            raise ValueError(f"unsupported codec {codec!r} (expected PCMU or PCMA)")
        if not max_seconds > 0 or not silence_seconds > 0:
            raise ValueError("max_seconds and silence_seconds must be positive")
        if not silence_dbfs < 0:
            raise ValueError("silence_dbfs must be below 0 dBFS")
        if not 0 <= min_seconds <= max_seconds:
            raise ValueError("min_seconds must be within 0..max_seconds")
        if not 1 <= reorder_packets < max_gap_packets < 0x8000:
            raise ValueError("need 1 <= reorder_packets < max_gap_packets < 32768")
        self.codec = codec.upper()
        self._max_samples = round(max_seconds * SAMPLE_RATE)
        self._silence_samples = round(silence_seconds * SAMPLE_RATE)
        self._min_voiced = round(min_seconds * SAMPLE_RATE)
        self._threshold_ms = (32768.0 * 10 ** (silence_dbfs / 20)) ** 2  # mean square
        self._reorder = reorder_packets
        self._max_gap = max_gap_packets
        self._chunks: list[tuple[PCM, bool]] = []  # (samples, voiced), in order
        self._pending: dict[int, bytes] = {}
        self._next: int | None = None
        self._primed = False
        self._frame = _DEFAULT_FRAME
        self._total = 0
        self._silent_run = 0
        self._reason: StopReason | None = None
        self._drop = 0
        self.packets = 0
        self.lost = 0
        self.discarded = 0
        self.resyncs = 0

    @property
    def reason(self) -> StopReason | None:
        """Why the recording stopped; None while it runs."""
        return self._reason

    @property
    def recording(self) -> bool:
        return self._reason is None

    @property
    def duration(self) -> float:
        """Seconds recorded so far (before trimming)."""
        return self._total / SAMPLE_RATE

    # --- input -----------------------------------------------------------------------

    def feed(self, sequence: int, payload: bytes) -> StopReason | None:
        """Take one audio packet; returns the stop reason once the recording has stopped."""
        if self._reason is not None or not payload:
            return self._reason
        if not 0 <= sequence <= 0xFFFF:
            raise ValueError(f"sequence {sequence} out of range")
        if self._next is None:
            self._next = sequence
        distance = seq_diff(sequence, self._next)
        if not self._primed and -self._max_gap <= distance < 0:
            self._next, distance = sequence, 0  # an earlier packet: the start moves back
        if distance > self._max_gap or distance < -self._max_gap:
            self._drain(force=True)  # what the old numbering left in the buffer
            if self._reason is not None:
                return self._reason
            self._next = sequence
            self.resyncs += 1
        elif distance < 0 or sequence in self._pending:
            self.discarded += 1
            return None
        self.packets += 1
        self._frame = len(payload)
        self._pending[sequence] = bytes(payload)
        self._primed = self._primed or len(self._pending) >= self._reorder
        if self._primed:
            self._drain(force=False)
        return self._reason

    def stop(self, reason: StopReason, *, drop_seconds: float = 0.0) -> None:
        """Stop now (``#`` pressed, caller hung up): buffered packets are kept, then the
        last ``drop_seconds`` are cut (the ``#`` tone). No-op once stopped."""
        if reason not in STOP_REASONS:
            raise ValueError(f"unknown stop reason {reason!r}")
        if drop_seconds < 0:
            raise ValueError("drop_seconds must not be negative")
        if self._reason is not None:
            return
        self._drain(force=True)
        if self._reason is None:
            self._reason = reason
            self._drop = round(drop_seconds * SAMPLE_RATE)

    def _drain(self, *, force: bool) -> None:
        """Append what is in order; give up on a missing packet once the buffer holds one
        ``reorder_packets`` ahead of it (or at once when ``force``)."""
        self._primed = True
        pending = self._pending
        while pending and self._reason is None:
            expected = self._next
            assert expected is not None
            payload = pending.pop(expected, None)
            if payload is not None:
                self._append(g711.decode(self.codec, payload), None)
                self._next = seq_add(expected, 1)
                continue
            ahead = [seq_diff(s, expected) for s in pending]
            if not force and max(ahead) < self._reorder:
                return
            gap = min(ahead)
            self.lost += gap
            self._append(np.zeros(gap * self._frame, dtype=np.int16), False)
            self._next = seq_add(expected, gap)
        if self._reason is not None:
            pending.clear()

    def _append(self, samples: PCM, voiced: bool | None) -> None:
        room = self._max_samples - self._total
        if len(samples) > room:
            samples = samples[:room]
        if voiced is None:
            voiced = bool(len(samples)) and self._mean_square(samples) >= self._threshold_ms
        if len(samples):
            self._chunks.append((samples, voiced))
            self._total += len(samples)
            self._silent_run = 0 if voiced else self._silent_run + len(samples)
        if self._total >= self._max_samples:
            self._reason = "max_length"
        elif self._silent_run >= self._silence_samples:
            self._reason = "silence"

    @staticmethod
    def _mean_square(samples: PCM) -> float:
        x = samples.astype(np.float64)
        return float(np.dot(x, x)) / len(x)

    # --- output ----------------------------------------------------------------------

    def result(self) -> Recording | TooShort:
        """The recording (after :meth:`stop` or an automatic stop), trailing silence
        trimmed, or :class:`TooShort`."""
        reason = self._reason
        if reason is None:
            raise RuntimeError("still recording: stop() first")
        keep = self._total - self._drop
        end = 0
        voiced = 0
        offset = 0
        for samples, is_voiced in self._chunks:
            start, offset = offset, offset + len(samples)
            if start >= keep:
                break
            if is_voiced:
                stop = min(offset, keep)
                voiced += stop - start
                end = stop
        if voiced < self._min_voiced or voiced == 0:
            return TooShort(reason, voiced / SAMPLE_RATE)
        pcm = np.concatenate([samples for samples, _ in self._chunks])[:end]
        pcm.flags.writeable = False
        return Recording(pcm, reason, voiced / SAMPLE_RATE)
