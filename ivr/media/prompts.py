"""The prompt library: WAV files → 8 kHz PCM → cached G.711 payloads.

``PromptLibrary(root, custom)`` finds ``<lang>/<name>.wav`` first under ``custom``
(prompts an administrator uploaded or re-recorded) and then under ``root`` (the
shipped library); ``<name>.previous.wav`` beside a custom prompt is its kept previous
version, not a prompt of its own (:meth:`PromptLibrary.names` leaves it out). Files
are read with soundfile, mixed to mono and resampled to 8 kHz with a band-limited (FFT)
resampler in numpy. The PCM and its μ-law/A-law encodings are cached and reloaded when
the file's size or mtime changes.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import soundfile as sf

from ivr.media import g711
from ivr.media.player import Player, join_frames

__all__ = [
    "PREVIOUS_SUFFIX",
    "SAMPLE_RATE",
    "PromptLibrary",
    "PromptNotFound",
    "load_wav",
    "resample",
]

SAMPLE_RATE: Final = 8000
PREVIOUS_SUFFIX: Final = ".previous"  # custom/<lang>/<name>.previous.wav: a kept version
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_LANG: Final = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")

PCM = npt.NDArray[np.int16]


class PromptNotFound(KeyError):
    """No ``<lang>/<name>.wav`` in any of the library's directories."""

    def __init__(self, lang: str, name: str, searched: tuple[Path, ...] = ()) -> None:
        super().__init__(f"{lang}/{name}")
        self.lang = lang
        self.name = name
        self.searched = searched

    def __str__(self) -> str:
        where = ", ".join(str(p) for p in self.searched) or "nowhere"
        return f"no prompt {self.name!r} for language {self.lang!r} (looked in {where})"


def resample(x: npt.ArrayLike, rate_in: int, rate_out: int) -> npt.NDArray[np.float64]:
    """Band-limited resampling of a 1-D signal (FFT, zero-padded against wraparound)."""
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError("sample rates must be positive")
    sig = np.asarray(x, dtype=np.float64)
    if sig.ndim != 1:
        raise ValueError("resample expects a 1-D signal")
    if rate_in == rate_out or len(sig) == 0:
        return sig.copy()
    # pad with zeros (against wraparound) so that the padded length and the offset
    # both map to whole output samples: the time scale is then exact
    step = rate_in // math.gcd(rate_in, rate_out)
    pad = -(-max(64, len(sig) // 8) // step) * step
    n = -(-(len(sig) + 2 * pad) // step) * step
    m = n * rate_out // rate_in
    spectrum = np.fft.rfft(np.pad(sig, (pad, n - len(sig) - pad)))
    keep = min(len(spectrum), m // 2 + 1)
    new = np.zeros(m // 2 + 1, dtype=complex)
    new[:keep] = spectrum[:keep]
    if rate_out < rate_in and m % 2 == 0:
        new[m // 2] = new[m // 2].real  # the Nyquist bin of a real signal is real
    y = np.fft.irfft(new, m) * (m / n)
    out_len = round(len(sig) * rate_out / rate_in)
    start = pad * rate_out // rate_in
    return y[start : start + out_len]


def load_wav(path: Path | str) -> PCM:
    """Read any soundfile-supported file as 8 kHz mono int16."""
    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    mono = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = resample(mono, int(rate), SAMPLE_RATE)
    pcm = np.clip(np.round(mono * 32768.0), -32768, 32767).astype(np.int16)
    pcm.flags.writeable = False
    return pcm


@dataclass(slots=True)
class _Entry:
    path: Path
    stamp: tuple[int, int]
    pcm: PCM
    encoded: dict[str, bytes] = field(default_factory=dict)


PHRASE_CACHE: Final = 512  # phrases whose frames are kept for the next call that says them


class PromptLibrary:
    """Prompts by language and name, with a custom directory in front of the shipped one."""

    def __init__(
        self,
        root: Path | str,
        custom: Path | str | None = None,
        *,
        recheck_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(root)
        self.custom = Path(custom) if custom is not None else None
        self._cache: dict[tuple[str, str], _Entry] = {}
        self._checked: dict[tuple[str, str], float] = {}
        self._phrases: dict[tuple[object, ...], tuple[tuple[bytes, ...], bytes]] = {}
        self.recheck_seconds = recheck_seconds
        self._clock = clock

    @property
    def directories(self) -> tuple[Path, ...]:
        """Search order: custom first, then shipped."""
        return (self.custom, self.root) if self.custom is not None else (self.root,)

    @staticmethod
    def _check_lang(lang: str) -> None:
        if not _LANG.fullmatch(lang):
            raise ValueError(f"invalid language tag {lang!r}")

    @classmethod
    def _check(cls, lang: str, name: str) -> None:
        cls._check_lang(lang)
        if not _NAME.fullmatch(name) or ".." in name:
            raise ValueError(f"invalid prompt name {name!r}")

    def path(self, lang: str, name: str) -> Path:
        """Where ``lang/name`` is read from; raises :class:`PromptNotFound`."""
        self._check(lang, name)
        candidates = tuple(d / lang / f"{name}.wav" for d in self.directories)
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise PromptNotFound(lang, name, candidates)

    def has(self, lang: str, name: str) -> bool:
        try:
            self.path(lang, name)
        except PromptNotFound:
            return False
        return True

    def names(self, lang: str) -> frozenset[str]:
        """Every prompt name available in ``lang`` (custom and shipped); kept previous
        versions (``<name>.previous.wav``) are not prompts."""
        self._check_lang(lang)
        return frozenset(
            p.stem
            for d in self.directories
            for p in (d / lang).glob("*.wav")
            if _NAME.fullmatch(p.stem) and not p.stem.endswith(PREVIOUS_SUFFIX)
        )

    def _entry(self, lang: str, name: str) -> _Entry:
        """The cached prompt; the files are looked at again at most every
        ``recheck_seconds`` (a replaced prompt is picked up, calls don't stat per word)."""
        key = (lang, name)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now - self._checked.get(key, -1e18) < self.recheck_seconds:
            return cached
        self._checked[key] = now
        path = self.path(lang, name)
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        entry = self._cache.get((lang, name))
        if entry is None or entry.path != path or entry.stamp != stamp:
            entry = _Entry(path, stamp, load_wav(path))
            self._cache[(lang, name)] = entry
        return entry

    def pcm(self, lang: str, name: str) -> PCM:
        """The prompt as read-only 8 kHz int16 samples."""
        return self._entry(lang, name).pcm

    def duration(self, lang: str, name: str) -> float:
        return len(self.pcm(lang, name)) / SAMPLE_RATE

    def encoded(self, lang: str, name: str, codec: str) -> bytes:
        """The prompt as G.711 payload bytes (``codec`` "PCMU" or "PCMA"), cached."""
        codec = codec.upper()
        entry = self._entry(lang, name)
        data = entry.encoded.get(codec)
        if data is None:
            data = entry.encoded[codec] = g711.encode(codec, entry.pcm)
        return data

    def preload(self, lang: str, names: Iterable[str], codecs: Iterable[str] = g711.CODECS) -> None:
        """Load and encode ahead of the first call (raises on the first missing prompt)."""
        codec_list = tuple(codecs)
        for name in names:
            for codec in codec_list:
                self.encoded(lang, name, codec)

    def player(
        self,
        lang: str,
        names: Iterable[str],
        codec: str,
        *,
        gap_ms: int = 0,
        extra: Mapping[str, bytes] | None = None,
    ) -> Player:
        """A :class:`Player` for a prompt sequence such as a phrase from ``phrases``.

        ``extra`` supplies already encoded audio for names that are not library
        prompts (a user's recorded name in a spoken redirect).
        """
        codec = codec.upper()
        extra = extra or {}
        fragments = tuple(extra[n] if n in extra else self.encoded(lang, n, codec) for n in names)
        return Player([self._joined(fragments, codec, gap_ms)], codec=codec)

    def _joined(self, fragments: tuple[bytes, ...], codec: str, gap_ms: int) -> bytes:
        """The frames of a phrase, made once for every call that plays the same phrase
        (calls then share them in the media engine's arena). Keyed by the fragments'
        identities: a re-encoded (replaced) prompt makes a new phrase."""
        key = (codec, gap_ms, tuple(map(id, fragments)))
        cached = self._phrases.pop(key, None)
        if cached is not None and all(a is b for a, b in zip(cached[0], fragments, strict=True)):
            self._phrases[key] = cached  # most recently used last
            return cached[1]
        buffer = join_frames(fragments, codec, gap_ms)
        self._phrases[key] = (fragments, buffer)
        while len(self._phrases) > PHRASE_CACHE:
            del self._phrases[next(iter(self._phrases))]
        return buffer
