"""Prompt import, pure parts: formats in, 8 kHz mono out; trimming and level like the
shipped prompts; every kind of bad file refused with a reason; names; the custom
prompt directory."""

from __future__ import annotations

import io
import struct
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import soundfile as sf

from ivr.media.prompts import PromptLibrary
from ivr.prompt_import import (
    ACTIVE_DB,
    RATE,
    WINDOW,
    CustomPrompts,
    ImportLimits,
    Rejected,
    check_name,
    import_prompt,
    level,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "prompts"
LIMITS = ImportLimits()


def active_dbfs(x: np.ndarray) -> float:
    """The shipped prompts' level measure: RMS of the 5 ms windows within 30 dB of the
    loudest, in dBFS."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x) // WINDOW
    rms = np.sqrt(np.mean(x[: n * WINDOW].reshape(n, WINDOW) ** 2, axis=1))
    active = rms[rms >= rms.max() * 10 ** (ACTIVE_DB / 20)]
    return float(20 * np.log10(np.sqrt(np.mean(active**2))))


def tone(rate: int, seconds: float, *, amplitude: float = 0.1, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * hz * t)


def speechlike(rate: int, channels: int = 1, amplitude: float = 0.05) -> np.ndarray:
    """Bursts of tone between half a second of silence before and a third after."""
    t = np.arange(round(rate * 1.5)) / rate
    burst = amplitude * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    x = np.concatenate([np.zeros(rate // 2), burst, np.zeros(rate // 3)])
    return np.column_stack([x] * channels) if channels > 1 else x


def encode(x: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


FORMATS = [
    ("WAV", "PCM_16"),
    ("WAV", "PCM_U8"),
    ("WAV", "FLOAT"),
    ("WAV", "ULAW"),
    ("WAV", "ALAW"),
    ("WAVEX", "PCM_24"),
    ("FLAC", "PCM_16"),
    ("OGG", "VORBIS"),
    ("AIFF", "PCM_16"),
]


@pytest.mark.parametrize(("fmt", "subtype"), FORMATS)
@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_every_format_becomes_8khz_mono_at_the_shipped_level(
    fmt: str, subtype: str, rate: int, channels: int
) -> None:
    data = encode(speechlike(rate, channels), rate, fmt, subtype)
    prompt = import_prompt(data)
    assert prompt.pcm.dtype == np.int16 and prompt.pcm.ndim == 1
    assert prompt.source.samplerate == rate and prompt.source.channels == channels
    assert prompt.source.container == ("WAV" if fmt == "WAVEX" else fmt)
    # the half second of leading silence is cut (10 ms margin kept), the trailing third too
    assert prompt.trimmed_start == pytest.approx(0.49, abs=0.03)
    assert prompt.trimmed_end == pytest.approx(0.323, abs=0.03)
    assert prompt.duration == pytest.approx(1.52, abs=0.05)
    assert active_dbfs(prompt.pcm / 32768.0) == pytest.approx(LIMITS.target_rms_dbfs, abs=0.6)
    back, back_rate = sf.read(io.BytesIO(prompt.wav()), dtype="int16")
    assert back_rate == RATE and back.ndim == 1 and np.array_equal(back, prompt.pcm)


def test_the_target_is_the_shipped_prompts_level() -> None:
    levels = [active_dbfs(sf.read(p)[0]) for p in sorted((SHIPPED / "sv").glob("*.wav"))[:40]]
    speech = [v for v in levels if np.isfinite(v)]
    assert np.median(speech) == pytest.approx(LIMITS.target_rms_dbfs, abs=1.0)


def test_a_shipped_prompt_comes_back_at_the_same_level_and_length() -> None:
    path = SHIPPED / "sv" / "choose_profile.wav"
    original = PromptLibrary(SHIPPED).pcm("sv", "choose_profile")
    prompt = import_prompt(path.read_bytes())
    assert abs(len(prompt.pcm) - len(original)) <= 2 * 80 + 2 * WINDOW
    assert active_dbfs(prompt.pcm / 32768.0) == pytest.approx(
        active_dbfs(original / 32768.0), abs=0.5
    )


def test_level_raises_quiet_audio_and_limits_peaks() -> None:
    quiet, _, _, _ = level(tone(RATE, 1.0, amplitude=0.005), LIMITS)
    assert active_dbfs(quiet) == pytest.approx(-20.0, abs=0.2)
    square = np.sign(tone(RATE, 1.0, amplitude=1.0))
    loud, gain_db, _, _ = level(square * 0.02, LIMITS)
    assert np.abs(loud).max() <= 10 ** (-1 / 20) + 1e-9  # a square wave hits the ceiling first
    assert gain_db < 34.0


def test_level_trims_silence_and_fades_the_edges() -> None:
    x = np.concatenate([np.zeros(8000), tone(RATE, 0.5), np.zeros(4000)])
    y, _, start, end = level(x, LIMITS)
    assert start == 8000 - 80 and end == 4000 - 80
    assert abs(y[0]) < 1e-9 and abs(y[-1]) < 0.05


def wav_header_only(frames: int, rate: int = 8000, channels: int = 1) -> bytes:
    """A WAV whose header declares ``frames`` 16-bit frames that are all present."""
    return encode(np.zeros((frames, channels)), rate, "WAV", "PCM_16")


def corrupt_fmt() -> bytes:
    data = bytearray(encode(tone(8000, 0.5), 8000, "WAV", "PCM_16"))
    data[20:22] = struct.pack("<H", 0x7777)  # an unknown format tag
    return bytes(data)


def no_data_chunk() -> bytes:
    data = encode(tone(8000, 0.5), 8000, "WAV", "PCM_16")
    fmt_end = 12 + 8 + struct.unpack("<I", data[16:20])[0]
    body = data[:fmt_end]
    return b"RIFF" + struct.pack("<I", len(body) - 8) + body[8:]


def unknown_length_flac() -> bytes:
    """A FLAC whose STREAMINFO leaves the total sample count open (0)."""
    data = bytearray(encode(tone(8000, 1.0), 8000, "FLAC", "PCM_16"))
    data[8 + 13] &= 0xF0
    data[8 + 14 : 8 + 18] = bytes(4)
    return bytes(data)


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def nan_wav() -> bytes:
    x = tone(8000, 0.5)
    x[100] = np.nan
    return encode(x, 8000, "WAV", "FLOAT")


BAD: dict[str, tuple[bytes, int, str]] = {
    "empty": (b"", 400, "empty"),
    "text": (b"hello, this is not audio\n" * 10, 415, "not a WAV"),
    "json": (b'{"prompt": "sv/goodbye"}', 415, "not a WAV"),
    "multipart": (b"--boundary\r\nContent-Disposition: form-data\r\n\r\nRIFF", 415, "multipart"),
    "mp3": (b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(400), 415, "not a WAV"),
    "truncated wav": (encode(tone(8000, 1.0), 8000, "WAV", "PCM_16")[:9000], 422, "truncated"),
    "truncated aiff": (encode(tone(8000, 1.0), 8000, "AIFF", "PCM_16")[:9000], 422, "truncated"),
    "truncated flac": (half(encode(tone(8000, 1.0), 8000, "FLAC", "PCM_16")), 422, ""),
    "truncated ogg": (encode(tone(8000, 1.0), 8000, "OGG", "VORBIS")[:2000], 422, "corrupt"),
    "riff header only": (b"RIFF\x04\x00\x00\x00WAVE", 422, "corrupt"),
    "no data chunk": (no_data_chunk(), 422, "'data'"),
    "unknown codec": (corrupt_fmt(), 422, "corrupt"),
    "flac garbage": (b"fLaC" + bytes(range(256)) * 4, 422, "corrupt"),
    "no frames": (encode(np.zeros(0), 8000, "WAV", "PCM_16"), 422, "no audio"),
    "unknown length": (unknown_length_flac(), 422, "does not declare how long"),
    "silent": (encode(np.zeros(8000), 8000, "WAV", "PCM_16"), 422, "silent"),
    "too long": (encode(tone(8000, 301.0), 8000, "WAV", "ULAW"), 422, "too long"),
    "too many channels": (wav_header_only(100, channels=17), 422, "channels"),
    "rate too low": (wav_header_only(100, rate=500), 422, "sample rate"),
    "not a number": (nan_wav(), 422, "not finite"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_files_are_refused_with_a_reason(kind: str) -> None:
    data, status, reason = BAD[kind]
    with pytest.raises(Rejected) as exc:
        import_prompt(data)
    assert exc.value.status == status, exc.value.reason
    assert reason in exc.value.reason


def test_size_limit_comes_before_decoding() -> None:
    limits = ImportLimits(max_bytes=1000)
    with pytest.raises(Rejected) as exc:
        import_prompt(b"RIFF" + bytes(2000), limits)
    assert exc.value.status == 413


def test_a_long_flac_of_silence_is_refused_by_its_header() -> None:
    """Six minutes of silence compress to a few kB: the header's length refuses it."""
    data = encode(np.zeros(6 * 60 * 8000), 8000, "FLAC", "PCM_16")
    assert len(data) < 100_000
    with pytest.raises(Rejected, match="too long"):
        import_prompt(data)


def test_a_header_cannot_make_the_decoder_read_more() -> None:
    """A WAV declaring fewer frames than it holds decodes only the declared ones."""
    x = np.concatenate([tone(8000, 1.0), tone(8000, 1.0, amplitude=0.5)])
    data = bytearray(encode(x, 8000, "WAV", "PCM_16"))
    data[40:44] = struct.pack("<I", 8000 * 2)  # the data chunk says: one second
    data[4:8] = struct.pack("<I", 36 + 8000 * 2)
    prompt = import_prompt(bytes(data[: 44 + 16000]) + bytes(data[44 + 16000 :]))
    assert prompt.source.frames == 8000 and prompt.duration < 1.1


@pytest.mark.parametrize(
    ("lang", "name", "field"),
    [
        ("sv", "../../etc/passwd", "name"),
        ("sv", "..", "name"),
        ("sv", "a/b", "name"),
        ("sv", "a\\b", "name"),
        ("sv", "bad\nname", "name"),
        ("sv", "nul\x00", "name"),
        ("sv", "Goodbye", "name"),
        ("sv", "goodbye.wav", "name"),
        ("sv", "-dash", "name"),
        ("sv", "x" * 65, "name"),
        ("sv", "", "name"),
        ("de", "goodbye", "lang"),
        ("../sv", "goodbye", "lang"),
    ],
)
def test_bad_names(lang: str, name: str, field: str) -> None:
    assert field in check_name(lang, name, ("sv", "en"))


def test_good_names() -> None:
    for name in ("goodbye", "month_10", "greeting-2", "a"):
        assert check_name("sv", name, ("sv", "en")) == {}


def test_custom_prompts_in_front_of_shipped(tmp_path: Path) -> None:
    store = CustomPrompts(tmp_path / "custom", SHIPPED)
    assert store.find("sv", "goodbye").source == "shipped"  # type: ignore[union-attr]
    assert store.find("sv", "no_such_prompt") is None
    prompt = import_prompt(encode(speechlike(16000), 16000, "FLAC", "PCM_16"))
    at = datetime(2026, 3, 10, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
    record, created = store.save("sv", "goodbye", prompt, uploaded_by="1000", at=at)
    assert created and record.source == "custom"
    assert record.meta is not None and record.meta["uploaded_by"] == "1000"
    found = store.find("sv", "goodbye")
    assert found is not None and found.meta == record.meta
    assert found.path == tmp_path / "custom" / "sv" / "goodbye.wav"
    assert found.path.read_bytes() == prompt.wav()
    assert store.save("sv", "goodbye", prompt, uploaded_by="1000", at=at)[1] is False
    library = PromptLibrary(SHIPPED, custom=tmp_path / "custom")
    assert np.array_equal(library.pcm("sv", "goodbye"), prompt.pcm)
    assert [r.source for r in store.list("sv") if r.name == "goodbye"] == ["custom"]
    assert store.delete("sv", "goodbye") is True
    assert store.delete("sv", "goodbye") is False
    assert store.find("sv", "goodbye").source == "shipped"  # type: ignore[union-attr]
    assert sorted(p.name for p in (tmp_path / "custom" / "sv").iterdir()) == []
