"""Prompt import: an uploaded audio file → a levelled 8 kHz mono prompt, and the custom
prompt directory that holds it (searched before the shipped prompts).

Checks run cheapest first, before the whole file is decoded: size, container magic
(WAV, AIFF, FLAC, Ogg), the WAV/AIFF chunk sizes against the bytes present
(truncation), then the header's sample rate, channels and length. Decoding runs in
blocks, downmixed and resampled with soxr as it goes, and never past the length the
header declared, so a lying header cannot make it decode more (decompression bombs).
The result is trimmed of leading and trailing silence, levelled like the shipped
prompts (``tools/gen_prompts.py``: RMS of the active part at -20 dBFS, peaks at most
-1 dBFS) and faded in and out over 5 ms.

Blocking (CPU and disk): from the reactor, run it in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from ivr.store.files import atomic_write

__all__ = [
    "CustomPrompts",
    "ImportLimits",
    "ImportedPrompt",
    "PromptRecord",
    "Rejected",
    "SourceInfo",
    "check_name",
    "import_prompt",
    "level",
]

RATE = 8000
WINDOW = 40  # 5 ms at 8 kHz
MARGIN = 80  # 10 ms kept around the sound
FADE = 40  # 5 ms
GATE_DB = -40.0  # trim: windows quieter than this, relative to the loudest, are silence
ACTIVE_DB = -30.0  # level measurement: windows within this of the loudest
BLOCK = 65536  # frames decoded at a time
_UNKNOWN_LENGTH = 1 << 62  # libsndfile's frame count when a header leaves it open

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_CONTAINERS = {"WAV": ("WAV", "WAVEX"), "AIFF": ("AIFF",), "FLAC": ("FLAC",), "OGG": ("OGG",)}

Signal = npt.NDArray[np.float64]


class Rejected(ValueError):
    """An upload that cannot become a prompt: an HTTP status hint and a reason."""

    def __init__(self, status: int, reason: str, field: str = "body") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.field = field


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportLimits:
    """What an upload may be, and the level it is brought to."""

    max_bytes: int = 10 * 1024 * 1024
    max_seconds: float = 300.0
    max_channels: int = 16
    min_rate: int = 1000
    max_rate: int = 384_000
    target_rms_dbfs: float = -20.0
    peak_ceiling_dbfs: float = -1.0
    silence_dbfs: float = -60.0

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_seconds <= 0 or self.max_channels < 1:
            raise ValueError("limits must be positive")
        if not 0 < self.min_rate <= self.max_rate:
            raise ValueError("need 0 < min_rate <= max_rate")
        if not self.target_rms_dbfs < self.peak_ceiling_dbfs <= 0:
            raise ValueError("need target_rms_dbfs < peak_ceiling_dbfs <= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceInfo:
    """What was uploaded, from its header."""

    container: str
    subtype: str
    samplerate: int
    channels: int
    frames: int
    size: int
    sha256: str

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate

    def as_json(self) -> dict[str, object]:
        return {
            "format": self.container,
            "subtype": self.subtype,
            "samplerate": self.samplerate,
            "channels": self.channels,
            "duration": round(self.duration, 3),
            "bytes": self.size,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportedPrompt:
    """The prompt as stored: 8 kHz mono int16, with what was done to it."""

    pcm: npt.NDArray[np.int16] = field(repr=False)
    source: SourceInfo
    gain_db: float
    trimmed_start: float
    trimmed_end: float

    @property
    def duration(self) -> float:
        return len(self.pcm) / RATE

    def wav(self) -> bytes:
        buf = io.BytesIO()
        sf.write(buf, self.pcm, RATE, format="WAV", subtype="PCM_16")
        return buf.getvalue()


def _db(value: float) -> float:
    return float(10 ** (value / 20))


# --- the container, before decoding ----------------------------------------------------


def sniff(data: bytes) -> str:
    """The container by its magic bytes: WAV, AIFF, FLAC or OGG (else 415)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "WAV"
    if data[:4] == b"FORM" and data[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if data[:4] == b"fLaC":
        return "FLAC"
    if data[:4] == b"OggS":
        return "OGG"
    return _unsupported(data)


def _unsupported(data: bytes) -> str:
    kind = "a multipart form" if data[:2] == b"--" else "not a WAV, AIFF, FLAC or Ogg file"
    raise Rejected(415, f"the body is {kind}; send the audio file itself as the body")


def _chunks(data: bytes, order: str) -> Iterator[tuple[bytes, int, int]]:
    """(id, offset of the payload, declared size) of each RIFF/IFF chunk; raises on a
    chunk that runs past the end of the data (a truncated file)."""
    declared = struct.unpack(f"{order}I", data[4:8])[0]
    if declared + 8 > len(data):
        raise Rejected(
            422,
            f"truncated: the header declares {declared + 8} bytes, the body has {len(data)}",
        )
    end = declared + 8
    pos = 12
    while pos + 8 <= end:
        ident = data[pos : pos + 4]
        size = struct.unpack(f"{order}I", data[pos + 4 : pos + 8])[0]
        if pos + 8 + size > end:
            name = ident.decode("latin-1").strip() or "?"
            raise Rejected(
                422, f"truncated: the {name!r} chunk declares {size} bytes, fewer follow"
            )
        yield ident, pos + 8, size
        pos += 8 + size + (size & 1)


def check_container(data: bytes, container: str) -> None:
    """WAV and AIFF declare their sizes up front: every chunk must be complete and
    the format and audio chunks present."""
    if container == "WAV":
        needed = {b"fmt ", b"data"}
        found = {ident for ident, _, _ in _chunks(data, "<")}
    elif container == "AIFF":
        needed = {b"COMM", b"SSND"}
        found = {ident for ident, _, _ in _chunks(data, ">")}
    else:
        return
    missing = sorted(n.decode().strip() for n in needed - found)
    if missing:
        raise Rejected(422, f"corrupt: no {' or '.join(repr(m) for m in missing)} chunk")


class _Body(io.BytesIO):
    """The upload for libsndfile's virtual I/O: seeks clamp instead of raising."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._size = len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self._size}[whence]
        return super().seek(min(max(base + offset, 0), self._size))


def _decoder_error(exc: Exception) -> Rejected:
    text = str(getattr(exc, "error_string", "") or exc)
    text = text.rsplit(">: ", 1)[-1].strip() or "unknown error"
    return Rejected(422, f"corrupt: the decoder says: {text}")


def probe(f: sf.SoundFile, container: str, data: bytes, limits: ImportLimits) -> SourceInfo:
    """Header checks: format matches the magic, rate, channels and length within limits."""
    if f.format not in _CONTAINERS[container]:
        raise Rejected(415, f"the file says {container} but decodes as {f.format}")
    if not limits.min_rate <= f.samplerate <= limits.max_rate:
        raise Rejected(
            422,
            f"sample rate {f.samplerate} Hz is outside {limits.min_rate}-{limits.max_rate} Hz",
        )
    if not 1 <= f.channels <= limits.max_channels:
        raise Rejected(422, f"{f.channels} channels; at most {limits.max_channels}")
    if f.frames <= 0:
        raise Rejected(422, "no audio frames (an empty file, or cut off before the first)")
    if f.frames >= _UNKNOWN_LENGTH:
        raise Rejected(422, "the header does not declare how long the audio is")
    seconds = f.frames / f.samplerate
    if seconds > limits.max_seconds:
        raise Rejected(
            422, f"too long: {seconds:.1f} s of audio; the limit is {limits.max_seconds:g} s"
        )
    return SourceInfo(
        container=container,
        subtype=str(f.subtype),
        samplerate=int(f.samplerate),
        channels=int(f.channels),
        frames=int(f.frames),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def decode(f: sf.SoundFile, info: SourceInfo) -> Signal:
    """Mono at 8 kHz, block by block; at most the frames the header declared."""
    stream = soxr.ResampleStream(info.samplerate, RATE, 1, dtype="float64", quality="HQ")
    out: list[Signal] = []
    total = 0
    while total < info.frames:
        block = f.read(min(BLOCK, info.frames - total), dtype="float64", always_2d=True)
        if len(block) == 0:
            break
        total += len(block)
        mono = block.mean(axis=1) if info.channels > 1 else block[:, 0]
        if not np.isfinite(mono).all():
            raise Rejected(422, "corrupt: samples that are not finite numbers")
        out.append(stream.resample_chunk(np.ascontiguousarray(mono)))
    if total < info.frames:
        raise Rejected(
            422, f"truncated: the header declares {info.frames} frames, only {total} decode"
        )
    out.append(stream.resample_chunk(np.zeros(0, dtype=np.float64), last=True))
    return np.concatenate(out)


# --- level ---------------------------------------------------------------------------


def _window_rms(x: Signal) -> Signal:
    n = len(x) // WINDOW
    if n == 0:
        return np.sqrt(np.mean(x**2, keepdims=True)) if len(x) else np.zeros(1)
    return np.sqrt(np.mean(x[: n * WINDOW].reshape(n, WINDOW) ** 2, axis=1))


def level(x: Signal, limits: ImportLimits) -> tuple[Signal, float, int, int]:
    """Trim silence at both ends, set the speech level, fade the edges.

    Returns the signal, the gain applied (dB) and the samples cut at start and end.
    """
    rms = _window_rms(x)
    loudest = float(rms.max())
    if loudest < _db(limits.silence_dbfs):
        raise Rejected(422, f"the audio is silent (below {limits.silence_dbfs:g} dBFS)")
    loud = np.nonzero(rms >= loudest * _db(GATE_DB))[0]
    start = max(int(loud[0]) * WINDOW - MARGIN, 0)
    stop = min((int(loud[-1]) + 1) * WINDOW + MARGIN, len(x))
    y = x[start:stop].copy()
    active = rms[rms >= loudest * _db(ACTIVE_DB)]
    gain = _db(limits.target_rms_dbfs) / float(np.sqrt(np.mean(active**2)))
    peak = float(np.abs(y).max()) * gain
    if peak > _db(limits.peak_ceiling_dbfs):
        gain *= _db(limits.peak_ceiling_dbfs) / peak
    y = y * gain
    fade = min(FADE, len(y) // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
        y[:fade] *= ramp
        y[-fade:] *= ramp[::-1]
    return y, 20 * float(np.log10(gain)), start, len(x) - stop


def import_prompt(data: bytes, limits: ImportLimits | None = None) -> ImportedPrompt:
    """Validate, decode, downmix, resample, trim and level an uploaded file."""
    limits = limits or ImportLimits()
    if not data:
        raise Rejected(400, "the body is empty")
    if len(data) > limits.max_bytes:
        raise Rejected(413, f"{len(data)} bytes; the limit is {limits.max_bytes}")
    container = sniff(data)
    check_container(data, container)
    try:
        f = sf.SoundFile(_Body(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise _decoder_error(exc) from None
    with f:
        info = probe(f, container, data, limits)
        try:
            mono = decode(f, info)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise _decoder_error(exc) from None
    y, gain_db, cut_start, cut_end = level(mono, limits)
    pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)
    return ImportedPrompt(
        pcm=pcm,
        source=info,
        gain_db=round(gain_db, 2),
        trimmed_start=round(cut_start / RATE, 3),
        trimmed_end=round(cut_end / RATE, 3),
    )


# --- the custom prompt directory ---------------------------------------------------------


def check_name(lang: str, name: str | None, languages: tuple[str, ...]) -> dict[str, str]:
    """Why ``lang``/``name`` cannot name a prompt (empty when they can)."""
    errors: dict[str, str] = {}
    if lang not in languages:
        errors["lang"] = f"must be one of {', '.join(languages)}"
    if name is None:
        pass
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        errors["name"] = "contains control characters"
    elif "/" in name or "\\" in name or ".." in name:
        errors["name"] = "must not contain '/', '\\' or '..'"
    elif _NAME.fullmatch(name) is None:
        errors["name"] = "must be 1-64 of a-z 0-9 _ - starting with a letter or digit"
    return errors


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptRecord:
    """Where a prompt is read from: ``custom`` (uploaded) or ``shipped``."""

    lang: str
    name: str
    source: str
    path: Path
    meta: dict[str, object] | None = None

    def as_json(self) -> dict[str, object]:
        return {"lang": self.lang, "name": self.name, "source": self.source, "meta": self.meta}


class CustomPrompts:
    """``custom/<lang>/<name>.wav`` (+ ``.json`` metadata) in front of ``shipped``.

    A prompt is replaced atomically (the previous file stays until the new one is
    complete); the metadata is written after the audio.
    """

    def __init__(self, custom: Path, shipped: Path) -> None:
        self.custom = Path(custom)
        self.shipped = Path(shipped)

    def _paths(self, lang: str, name: str) -> tuple[Path, Path]:
        directory = self.custom / lang
        return directory / f"{name}.wav", directory / f"{name}.json"

    def _meta(self, path: Path) -> dict[str, object] | None:
        try:
            value = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def find(self, lang: str, name: str) -> PromptRecord | None:
        """The prompt calls would play: custom first, then shipped."""
        wav, meta = self._paths(lang, name)
        if wav.is_file():
            return PromptRecord(
                lang=lang, name=name, source="custom", path=wav, meta=self._meta(meta)
            )
        shipped = self.shipped / lang / f"{name}.wav"
        if shipped.is_file():
            return PromptRecord(lang=lang, name=name, source="shipped", path=shipped)
        return None

    def list(self, lang: str) -> list[PromptRecord]:
        names = {
            p.stem
            for root in (self.custom, self.shipped)
            for p in (root / lang).glob("*.wav")
            if _NAME.fullmatch(p.stem)
        }
        return [r for n in sorted(names) if (r := self.find(lang, n)) is not None]

    def save(
        self, lang: str, name: str, prompt: ImportedPrompt, *, uploaded_by: str, at: datetime
    ) -> tuple[PromptRecord, bool]:
        """Store ``prompt``; returns its record and whether it is a new custom prompt."""
        wav, meta_path = self._paths(lang, name)
        created = not wav.exists()
        wav.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        meta: dict[str, object] = {
            "uploaded_by": uploaded_by,
            "uploaded_at": at.isoformat(),
            "source": prompt.source.as_json(),
            "stored": {
                "format": "WAV",
                "subtype": "PCM_16",
                "samplerate": RATE,
                "channels": 1,
                "duration": round(prompt.duration, 3),
                "gain_db": prompt.gain_db,
                "trimmed_start": prompt.trimmed_start,
                "trimmed_end": prompt.trimmed_end,
            },
        }
        atomic_write(wav, prompt.wav())
        atomic_write(meta_path, json.dumps(meta, indent=2).encode("utf-8"))
        return PromptRecord(lang=lang, name=name, source="custom", path=wav, meta=meta), created

    def delete(self, lang: str, name: str) -> bool:
        """Remove a custom prompt (the shipped one, if any, plays again)."""
        wav, meta = self._paths(lang, name)
        try:
            wav.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(FileNotFoundError):
            meta.unlink()
        return True
