"""In-band DTMF detection over many channels at once (ITU-T Q.24).

Every channel is cut into 20 ms Hann-windowed frames, one every 5 ms. Each frame is projected onto
the eight DTMF frequencies (stacked matrix products over all channels' 5 ms sub-blocks, summed per
frame), and the frames that pass the cheap checks also onto the DFT bins below 600 Hz. From that a
frame gets, for the strongest tone of each group:

* its power, corrected for the window's scalloping loss (level and twist checks);
* its frequency deviation, from the phase advance between consecutive frames;
* its share of all energy above 600 Hz ("purity": rejects speech, music, noise, harmonics,
  same-group pairs, and keeps dial tone out of the way).

A frame *holds* a digit when level, twist, deviation (<= 2.5 %) and purity (>= 0.8) pass, and is
*strong* when it also has deviation <= 2 % and purity >= 0.93. A run-length state machine per
channel makes a key press of an unbroken run of frames holding one digit with ``ON_FRAMES``
strong frames (>= 40 ms tones pass, <= 23 ms fail, speech and music very rarely get there) and
ends it after ``OFF_FRAMES`` frames without it, so 10 ms drop-outs are bridged and 40 ms pauses
split. Presses are reported when they end, with start and end times.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ivr.dtmf.events import DigitEvent
from ivr.dtmf.generate import HIGH, LOW
from ivr.dtmf.generate import KEYPAD as _ROWS_OF_KEYS

KEYPAD = "".join(_ROWS_OF_KEYS)  # digit of (low index, high index) at 4 * low + high
FREQS = LOW + HIGH

DBM0 = 16107.0**2  # mean square of a 0 dBm0 sine in 16-bit units
MIN_LEVEL_DBM0 = -42.0  # per tone, after scalloping correction
MAX_TWIST_DB = 6.0  # high group above low group ("reverse twist"); Q.24 accepts +4
MIN_TWIST_DB = -10.0  # high group below low group; Q.24 accepts -8
LOW_BAND_HZ = 600  # energy below this (dial tone, hum) is left out of the purity check
# A frame *holds* a digit when both tones are within HOLD_DEVIATION and carry HOLD_PURITY of the
# energy above the low band; it is *strong* with the stricter ON_DEVIATION and ON_PURITY.
HOLD_DEVIATION = 0.025
HOLD_PURITY = 0.8
ON_DEVIATION = 0.02
ON_PURITY = 0.93
ON_FRAMES = 4  # strong frames within one unbroken run of holding frames that make a key press
OFF_FRAMES = 6  # frames without the digit that end it: bridges 10 ms drop-outs, splits 40 ms pauses
EDGE_S = 0.008  # a reported edge lies this far outside the first/last frame centre

BLAS_SERIAL_MNK = 262_144  # OpenBLAS runs a product single-threaded below this m * n * k
BLAS_SERIAL_GEMV = 9_216  # ... and a matrix-vector product below this m * n
PASS_FRAMES = 2048  # frames analysed per pass (all channels): keeps the working set in cache
FRAME_S = 0.020
HOP_S = 0.005


@dataclass(frozen=True, slots=True)
class Detection:
    """A digit found in a recording: ``start``/``end`` in seconds from its first sample."""

    digit: str
    start: float
    end: float


class _Track:
    """Run-length state machine of one channel; frame indices are absolute."""

    __slots__ = ("cand", "cand_start", "cur", "last", "off", "start", "strong")

    def __init__(self) -> None:
        self.cur = -1  # digit code being pressed, or -1
        self.start = 0  # its first holding frame
        self.last = 0  # its last holding frame
        self.off = 0  # frames since then
        self.cand = -1  # code of the unbroken run of holding frames being watched, or -1
        self.cand_start = 0
        self.strong = 0  # strong frames in that run

    def run(
        self, code: int, first: int, n: int, strong: int, out: list[tuple[int, int, int]]
    ) -> None:
        """Consume ``n`` frames holding ``code`` (-1: none), ``strong`` of them strong."""
        if self.cur >= 0:
            if code == self.cur:
                self.off = 0
                self.last = first + n - 1
                self.cand = -1
                return
            self.off += n
            self._watch(code, first, strong)
            if self.off < OFF_FRAMES and self.strong < ON_FRAMES:
                return
            out.append((self.cur, self.start, self.last))
            self.cur = -1
            self.off = 0
        else:
            self._watch(code, first, strong)
        if self.cand >= 0 and self.strong >= ON_FRAMES:
            self.cur = self.cand
            self.start = self.cand_start
            self.last = first + n - 1
            self.cand = -1

    def _watch(self, code: int, first: int, strong: int) -> None:
        if code == self.cand and code >= 0:
            self.strong += strong
        else:
            self.cand = code
            self.cand_start = first
            self.strong = strong

    def flush(self, out: list[tuple[int, int, int]]) -> None:
        """End a digit in progress (end of stream or channel removed)."""
        if self.cur >= 0:
            out.append((self.cur, self.start, self.last))
        self.__init__()


class InbandDetector:
    """DTMF receiver for a (channels x samples) block per call of :meth:`feed`.

    Channels are slots: ``add_channel`` returns a free slot (growing the block height when none is
    free) and ``remove_channel`` frees one. Rows of free slots are ignored. Integer blocks are in
    16-bit units, float blocks in full-scale units (1.0 = 32768). Event times are seconds since the
    slot was (re)assigned.
    """

    def __init__(self, channels: int, rate: int = 8000) -> None:
        if channels < 0:
            raise ValueError(f"channels must be >= 0, got {channels}")
        if rate < 8000 or rate % 200:
            raise ValueError(f"rate must be a multiple of 200 Hz and >= 8000, got {rate}")
        self.rate = rate
        self._win = int(rate * FRAME_S)
        self._hop = int(rate * HOP_S)
        self._an = _analysis(rate)
        self._frames = 0  # frames analysed so far (all slots share the clock)
        self._fed = 0  # samples fed so far
        parts, nf2 = self._win // self._hop, 2 * len(FREQS)
        # per slot, carried from pass to pass (all views into blocks this detector owns):
        self._raw = np.zeros((0, self._win - self._hop), np.float32)  # samples before the next
        self._rem = np.zeros((0, 0), np.float32)  # samples short of a whole sub-block
        self._part = np.zeros((0, parts - 1, nf2), np.float32)  # sums of unfinished frames
        self._prev = np.zeros((0, nf2), np.float32)  # tone projections of the last frame
        self._tracks: list[_Track] = []
        self._origin: list[int] = []  # samples fed before each slot was assigned
        self._free: list[int] = []
        self._live: set[int] = set()  # slots whose state machine is not idle
        for _ in range(channels):
            self._grow()

    @property
    def channels(self) -> int:
        """Height of the block :meth:`feed` expects (free slots included)."""
        return len(self._tracks)

    def add_channel(self) -> int:
        """Assign a slot to a new call and return its row index."""
        if self._free:
            slot = min(self._free)
            self._free.remove(slot)
            self._reset(slot)
            return slot
        return self._grow()

    def remove_channel(self, channel: int) -> list[DigitEvent]:
        """Free a slot; returns the digit that was still pressed on it, if any."""
        self._check(channel)
        out: list[tuple[int, int, int]] = []
        self._tracks[channel].flush(out)
        events = [self._event(channel, *o) for o in out]
        self._free.append(channel)
        self._reset(channel)
        return events

    def pressed(self, channel: int) -> str | None:
        """The digit currently held on a channel (for barge-in), or None."""
        self._check(channel)
        cur = self._tracks[channel].cur
        return KEYPAD[cur] if cur >= 0 else None

    def held(self) -> dict[int, str]:
        """Every channel with a digit held right now (for barge-in)."""
        return {ch: KEYPAD[self._tracks[ch].cur] for ch in self._live if self._tracks[ch].cur >= 0}

    def feed(self, block: np.ndarray) -> list[tuple[int, DigitEvent]]:
        """Analyse the next samples of every slot; returns the key presses that ended."""
        return self._feed_owned(_as_float(block))

    def _feed_owned(self, x: np.ndarray) -> list[tuple[int, DigitEvent]]:
        """:meth:`feed` for a float32 block in 16-bit units that the detector may keep."""
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise ValueError(f"block must be ({self.channels}, samples), got {x.shape}")
        step = self._hop * max(1, PASS_FRAMES // max(1, self.channels))
        first = self._frames
        found = [self._pass(x[:, i : i + step]) for i in range(0, x.shape[1], step)]
        found = [f for f in found if f is not None]
        if not found:
            return []
        if len(found) == 1:
            return self._advance(*found[0], first)
        codes, strong = (np.concatenate(parts, axis=1) for parts in zip(*found, strict=True))
        return self._advance(codes, strong, first)

    def _pass(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Analyse one cache-sized slice: (codes, strong) of the frames it completes."""
        self._fed += x.shape[1]
        data = x if not self._rem.shape[1] else np.concatenate([self._rem, x], axis=1)
        nsub = data.shape[1] // self._hop
        used = nsub * self._hop
        self._rem = data[:, used:]
        if not nsub or not self.channels:
            return None
        raw = self._raw
        keep = raw.shape[1]
        self._raw = (
            data[:, used - keep : used]
            if used >= keep
            else np.concatenate([raw[:, used:], data[:, :used]], axis=1)
        )
        self._frames += nsub
        return _codes(self._features(raw, data[:, :used], nsub))

    def flush(self) -> list[tuple[int, DigitEvent]]:
        """End every digit in progress (end of input); the detector stays usable."""
        events = []
        for ch in sorted(self._live):
            out: list[tuple[int, int, int]] = []
            self._tracks[ch].flush(out)
            events += [(ch, self._event(ch, *o)) for o in out]
        self._live.clear()
        return events

    # -- internals -------------------------------------------------------------------------

    def _grow(self) -> int:
        slot = len(self._tracks)
        self._tracks.append(_Track())
        self._origin.append(self._fed)
        for name in ("_raw", "_rem", "_part", "_prev"):
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.zeros((1, *old.shape[1:]), np.float32)]))
        return slot

    def _reset(self, slot: int) -> None:
        self._tracks[slot] = _Track()
        self._live.discard(slot)
        self._origin[slot] = self._fed
        for name in ("_raw", "_rem", "_part", "_prev"):
            getattr(self, name)[slot] = 0.0

    def _check(self, channel: int) -> None:
        if not 0 <= channel < self.channels or channel in self._free:
            raise ValueError(f"no such channel: {channel}")

    def _features(self, raw: np.ndarray, new: np.ndarray, nframes: int) -> dict[str, np.ndarray]:
        """Per (channel, frame): strongest tone per group, its power and deviation, whether
        level, twist and deviation allow a digit ("plausible"), and for those frames only the
        power above the low band ("rest", else inf); powers are mean squares in 16-bit units.

        ``new`` holds ``nframes`` whole sub-blocks (hops), each completing one frame; ``raw``
        the samples before them. A frame's tone projections are the sums of its sub-blocks'
        products with the matching rows of the windowed basis, so overlapping frames are never
        copied out; only plausible frames are, for the purity check.
        """
        chans, nf, hop, an = new.shape[0], len(FREQS), self._hop, self._an
        parts = self._win // hop
        sub = np.ascontiguousarray(new).reshape(chans * nframes, hop)
        acc = np.empty((chans, nframes + parts - 1, 2 * nf), dtype=np.float32)
        acc[:, : parts - 1] = self._part
        acc[:, parts - 1 :] = _project(sub, an.parts[0], an.rows_parts).reshape(chans, nframes, -1)
        for j in range(1, parts):  # sub-block i is part j of the frame at acc[parts - 1 - j + i]
            prod = _project(sub, an.parts[j], an.rows_parts).reshape(chans, nframes, -1)
            acc[:, parts - 1 - j : parts - 1 - j + nframes] += prod
        self._part = acc[:, nframes:].copy()
        tones = np.empty((chans, nframes + 1, 2 * nf), dtype=np.float32)
        tones[:, 0] = self._prev
        now = tones[:, 1:]
        now[...] = acc[:, :nframes]
        self._prev = tones[:, -1].copy()
        cur = now.reshape(-1, 2 * nf)
        power = cur[:, :nf] ** 2 + cur[:, nf:] ** 2
        lo = np.argmax(power[:, :4], axis=1)
        hi = np.argmax(power[:, 4:], axis=1) + 4
        # flat index of each frame's row in ``tones`` (the row before it is the previous frame)
        at = (np.arange(chans)[:, None] * (nframes + 1) + np.arange(1, nframes + 1)).ravel()
        at *= 2 * nf
        flat = tones.reshape(-1)
        p_lo, dev_lo = self._tone(flat, at, lo)
        p_hi, dev_hi = self._tone(flat, at, hi)
        plausible = _plausible(p_lo, p_hi, np.maximum(np.abs(dev_lo), np.abs(dev_hi)))
        rest = np.full(chans * nframes, np.inf, dtype=np.float32)
        pick = np.flatnonzero(plausible)
        if len(pick):
            rows, row_of = np.unique(pick // nframes, return_inverse=True)
            src = np.concatenate([raw[rows], new[rows]], axis=1)
            frames = sliding_window_view(src, self._win, axis=1)[:, ::hop]
            windows = frames[row_of, pick % nframes]
            low = _project(windows, an.low, an.rows_low)
            total = _project(np.square(windows), an.wsq, an.rows_low)[:, 0]
            rest[pick] = total - np.square(low).sum(axis=1)
        shape = (chans, nframes)
        return {
            "lo": lo.reshape(shape),
            "hi": hi.reshape(shape),
            "p_lo": p_lo.reshape(shape),
            "p_hi": p_hi.reshape(shape),
            "dev_lo": dev_lo.reshape(shape),
            "dev_hi": dev_hi.reshape(shape),
            "plausible": plausible.reshape(shape),
            "rest": rest.reshape(shape),
        }

    def _tone(
        self, flat: np.ndarray, rows: np.ndarray, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scalloping-corrected power and relative deviation of tone ``idx`` in each frame.

        The phase advance between consecutive frames, less the nominal tone's, gives the offset:
        with X = c - js for this frame and Xp for the one before, angle(X conj(Xp) e^-jwH).
        """
        nf = len(FREQS)
        at = rows + idx
        before = at - 2 * nf
        c, s = flat[at], flat[at + nf]
        cp, sp = flat[before], flat[before + nf]
        zr = c * cp + s * sp
        zi = c * sp - s * cp
        cos, sin = self._an.spin[0][idx], self._an.spin[1][idx]
        offset = np.arctan2(zi * cos - zr * sin, zr * cos + zi * sin)  # radians per hop
        power = (c * c + s * s) * self._an.tone * _horner(self._an.scallop, offset * offset)
        return power, offset * self._an.dev_scale[idx]

    def _advance(
        self, codes: np.ndarray, strong: np.ndarray, first: int
    ) -> list[tuple[int, DigitEvent]]:
        """Run each busy channel's state machine over its runs of equal codes.

        Runs are found for all channels at once; Python then touches one tuple per run.
        """
        busy = (codes >= 0).any(axis=1)
        busy[list(self._live)] = True
        busy[self._free] = False
        chans = np.flatnonzero(busy)
        if not len(chans):
            return []
        sub, nframes = codes[chans], codes.shape[1]
        starts = np.ones(sub.shape, dtype=bool)
        starts[:, 1:] = sub[:, 1:] != sub[:, :-1]
        row, col = np.nonzero(starts)
        end = np.full(len(col), nframes)
        same_row = row[1:] == row[:-1]
        end[:-1][same_row] = col[1:][same_row]
        total = np.zeros((len(chans), nframes + 1), dtype=np.int32)
        np.cumsum(strong[chans], axis=1, out=total[:, 1:])
        count = total[row, end] - total[row, col]
        out: list[tuple[int, int, int]] = []
        events: list[tuple[int, DigitEvent]] = []
        channel = chans[row].tolist()
        for ch, code, c, e, k in zip(
            channel, sub[row, col].tolist(), col.tolist(), end.tolist(), count.tolist(), strict=True
        ):
            self._tracks[ch].run(code, first + c, e - c, k, out)
            if out:
                events += [(ch, self._event(ch, *o)) for o in out]
                out.clear()
        for ch in set(channel):
            track = self._tracks[ch]
            if track.cur >= 0 or track.cand >= 0:
                self._live.add(ch)
            else:
                self._live.discard(ch)
        return events

    def _event(self, channel: int, code: int, first: int, last: int) -> DigitEvent:
        def centre(frame: int) -> float:  # of the frame's window, in channel seconds
            sample = frame * self._hop + self._hop - self._win / 2 - self._origin[channel]
            return sample / self.rate

        start = max(centre(first) - EDGE_S, 0.0)
        end = max(centre(last) + EDGE_S, start)
        return DigitEvent(
            digit=KEYPAD[code],
            source="inband",
            start=round(start, 4),
            end=round(end, 4),
            duration=round(end - start, 4),
        )


def _plausible(p_lo: np.ndarray, p_hi: np.ndarray, dev: np.ndarray) -> np.ndarray:
    """Frames whose level, twist and deviation allow them to hold a digit."""
    floor = DBM0 * 10 ** (MIN_LEVEL_DBM0 / 10)
    ok = (p_lo >= floor) & (p_hi >= floor) & (dev <= HOLD_DEVIATION)
    ok &= (p_hi <= p_lo * 10 ** (MAX_TWIST_DB / 10)) & (p_hi >= p_lo * 10 ** (MIN_TWIST_DB / 10))
    return ok


def _codes(f: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the digit code it holds (0-15, else -1) and whether it is strong."""
    tones = f["p_lo"] + f["p_hi"]
    hold = f["plausible"] & (tones >= HOLD_PURITY * f["rest"])
    dev = np.maximum(np.abs(f["dev_lo"]), np.abs(f["dev_hi"]))
    strong = hold & (dev <= ON_DEVIATION) & (tones >= ON_PURITY * f["rest"])
    return np.where(hold, f["lo"] * 4 + (f["hi"] - 4), -1), strong


def _project(x: np.ndarray, basis: np.ndarray, rows: int) -> np.ndarray:
    """``x @ basis`` as a stack of ``rows``-row products (and one for the remainder): each
    stays under OpenBLAS's threading threshold, so no helper threads spin (faster per CPU
    second, and no cores taken from the rest of the server)."""
    n = x.shape[0]
    bulk = n - n % rows
    out = np.empty((n, basis.shape[1]), dtype=np.float32)
    if bulk:
        stacked = x[:bulk].reshape(-1, rows, x.shape[1]) @ basis
        out[:bulk] = stacked.reshape(bulk, basis.shape[1])
    if n > bulk:
        out[bulk:] = x[bulk:] @ basis
    return out


@dataclass(frozen=True, slots=True)
class _Analysis:
    """Constant matrices of the frame analysis at one sample rate."""

    parts: np.ndarray  # (parts, hop, 16): per sub-block of a frame, its rows of the windowed
    #                    cos | sin of the eight tones
    low: np.ndarray  # (win, 2 * bins - 1): windowed low DFT bins, scaled for Parseval
    wsq: np.ndarray  # (win, 1) squared window / its sum: frame of x^2 -> mean square
    tone: float  # |coefficient|^2 -> mean-square power of a tone
    spin: tuple[np.ndarray, np.ndarray]  # cos, sin of each tone's phase advance per hop
    dev_scale: np.ndarray  # radians per hop -> relative deviation, per tone
    scallop: np.ndarray  # polynomial: offset^2 (radians per hop) -> 1 / Hann power response
    rows_parts: int  # sub-blocks per product in a stack (see _project)
    rows_low: int  # frames per product in a stack


@functools.cache
def _analysis(rate: int) -> _Analysis:
    win, hop = int(rate * FRAME_S), int(rate * HOP_S)
    n = np.arange(win)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * (n + 0.5) / win)
    freqs = np.asarray(FREQS, dtype=np.float64)
    arg = 2 * np.pi * np.outer(n, freqs) / rate
    tones = w[:, None] * np.concatenate([np.cos(arg), np.sin(arg)], axis=1)
    parts = np.stack([tones[j : j + hop] for j in range(0, win, hop)])
    bins = int(np.ceil(LOW_BAND_HZ * win / rate))  # bins 0 .. bins-1
    barg = 2 * np.pi * np.outer(n, np.arange(bins)) / win
    s1, s2 = float(w.sum()), float((w * w).sum())
    # low bins scaled so that their squares sum to the mean square below the cut (Parseval)
    scale = np.sqrt(np.concatenate([[1.0], np.full(2 * bins - 2, 2.0)]) / (win * s2))
    low = w[:, None] * np.concatenate([np.cos(barg), np.sin(barg[:, 1:])], axis=1) * scale
    omega = 2 * np.pi * freqs * hop / rate
    return _Analysis(
        parts=parts.astype(np.float32),
        low=low.astype(np.float32),
        wsq=(w * w / s2).astype(np.float32)[:, None],
        tone=2.0 / (s1 * s1),
        spin=(np.cos(omega).astype(np.float32), np.sin(omega).astype(np.float32)),
        dev_scale=(1.0 / omega).astype(np.float32),
        scallop=_scallop_poly(win / (2 * np.pi * hop)),
        rows_parts=_serial_rows(hop * parts.shape[2]),
        rows_low=_serial_rows(win * max(low.shape[1], 1), gemv=win),
    )


def _serial_rows(columns_times_depth: int, gemv: int = 0) -> int:
    """Largest multiple of 8 rows keeping a product single-threaded in OpenBLAS (gemm, and
    gemv when a product has one column: rows x depth below its own threshold)."""
    rows = BLAS_SERIAL_MNK // columns_times_depth
    if gemv:
        rows = min(rows, BLAS_SERIAL_GEMV // gemv)
    return max(8, rows // 8 * 8)


def _scallop_poly(bins_per_radian: float) -> np.ndarray:
    """Coefficients (highest first) of 1 / Hann power response as a polynomial in offset^2,
    with the offset in radians per hop; fitted over +-1.25 DFT bins, beyond which it is unused."""
    offset = np.linspace(0.0, 1.25 / bins_per_radian, 200)
    inv = 1.0 / _hann_gain(offset * bins_per_radian) ** 2
    return np.polyfit(offset * offset, inv, 5).astype(np.float32)


def _horner(coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = np.full_like(x, coeffs[0])
    for c in coeffs[1:]:
        out *= x
        out += c
    return out


def _hann_gain(bins: np.ndarray) -> np.ndarray:
    """Amplitude response of a Hann window ``bins`` DFT bins away from its centre."""
    b = np.abs(bins)
    near = b < 1e-6
    b = np.where(near | (np.abs(b - 1) < 1e-6), b + 1e-6, b)
    g = np.sinc(b) / (1 - b * b)
    return np.where(near, 1.0, np.abs(g))


def _as_float(block: np.ndarray) -> np.ndarray:
    x = np.asarray(block)
    if x.dtype.kind == "f":
        return (x * 32768.0).astype(np.float32)
    return x.astype(np.float32)


def resample(x: np.ndarray, rate: int, new_rate: int = 8000, half_taps: int = 16) -> np.ndarray:
    """Band-limited resampling (Blackman-windowed sinc) of a mono float signal."""
    if rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {rate} -> {new_rate}")
    x = np.asarray(x, dtype=np.float64)
    if rate == new_rate or len(x) == 0:
        return x.astype(np.float32)
    scale = min(1.0, new_rate / rate)
    cutoff = 0.46 * scale  # cycles per input sample
    reach = int(np.ceil(half_taps / scale))
    taps = np.arange(-reach + 1, reach + 1)
    padded = np.concatenate([np.zeros(reach), x, np.zeros(reach + 1)])
    count = int(np.floor(len(x) * new_rate / rate))
    out = np.empty(count, dtype=np.float32)
    step = 1 << 14
    for lo in range(0, count, step):
        pos = np.arange(lo, min(lo + step, count)) * (rate / new_rate)
        base = np.floor(pos).astype(np.int64)
        u = (base[:, None] + taps[None, :]) - pos[:, None]
        h = 2 * cutoff * np.sinc(2 * cutoff * u) * _blackman(u / (reach + 1))
        out[lo : lo + len(pos)] = np.sum(h * padded[base[:, None] + taps[None, :] + reach], axis=1)
    return out


def _blackman(u: np.ndarray) -> np.ndarray:
    """Blackman window over u in [-1, 1] (zero outside)."""
    v = 0.42 + 0.5 * np.cos(np.pi * u) + 0.08 * np.cos(2 * np.pi * u)
    return np.where(np.abs(u) < 1, v, 0.0)


def detect(samples: np.ndarray, rate: int = 8000) -> list[Detection]:
    """Digits in a mono recording (int16, or float with full scale 1.0) at any sample rate."""
    x = np.asarray(samples)
    scale = 32768.0 if x.dtype.kind == "f" else 1.0
    x = x.astype(np.float64) * scale
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples, got shape {np.shape(samples)}")
    if rate != 8000:
        x = resample(x, rate, 8000)
    det = InbandDetector(1, 8000)
    found = det._feed_owned(x[None, :].astype(np.float32)) + det.flush()
    return [Detection(e.digit, e.start, e.end if e.end is not None else e.start) for _, e in found]


def detect_for_score(samples: np.ndarray, rate: int) -> list[dict[str, object]]:
    """:func:`detect` as plain dicts (the yardstick's interface)."""
    return [{"digit": d.digit, "start": d.start, "end": d.end} for d in detect(samples, rate)]
