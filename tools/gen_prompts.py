#!/usr/bin/env python3
"""Generate the shipped prompt library from ``prompts/prompts.toml``.

Each text is spoken by espeak-ng, band-limited and resampled to 8 kHz by sox (no
dither), then trimmed of leading/trailing silence, normalised to a common speech
level (RMS of the active part), faded in/out over 5 ms and written as 8 kHz mono
16-bit WAV to ``prompts/<lang>/<name>.wav``. ``beep`` (1 kHz tone) and ``pause``
(silence) are synthesised directly in every language. The same tool versions give
the same bytes; files whose bytes would not change are left untouched.

    python tools/gen_prompts.py                 # (re)generate everything
    python tools/gen_prompts.py --lang sv       # one language
    python tools/gen_prompts.py --check         # exit 1 if a file is missing or stale
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

RATE = 8000
TARGET_RMS_DBFS = -20.0
PEAK_CEILING_DBFS = -1.0
GATE_DB = -40.0  # trim: windows quieter than this, relative to the loudest, are silence
ACTIVE_DB = -30.0  # level measurement: windows within this of the loudest
WINDOW = 40  # 5 ms
MARGIN = 80  # 10 ms kept around the speech
FADE = 40  # 5 ms
BEEP_HZ = 1000.0
BEEP_SECONDS = 0.4
BEEP_DBFS = -12.0
PAUSE_SECONDS = 0.3

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = ROOT / "prompts" / "prompts.toml"

Signal = npt.NDArray[np.float64]


def _db(value: float) -> float:
    return float(10 ** (value / 20))


def speak(text: str, voice: str, speed: int) -> Signal:
    """espeak-ng → sox → float samples at 8 kHz."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    sox = ["sox", "-D", "-t", "wav", "-", "-t", "f32", "-c", "1", "-"]
    raw = subprocess.run(
        [*sox, "highpass", "100", "rate", "-v", str(RATE)],
        input=wav,
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32).astype(np.float64)


def _window_rms(x: Signal) -> Signal:
    n = len(x) // WINDOW
    if n == 0:
        return np.sqrt(np.mean(x**2, keepdims=True)) if len(x) else np.zeros(1)
    return np.sqrt(np.mean(x[: n * WINDOW].reshape(n, WINDOW) ** 2, axis=1))


def trim_and_level(x: Signal) -> Signal:
    """Cut silence at both ends, set the speech level, fade the edges."""
    rms = _window_rms(x)
    loudest = float(rms.max())
    if loudest <= 0:
        raise ValueError("the synthesiser produced silence")
    loud = np.nonzero(rms >= loudest * _db(GATE_DB))[0]
    start = max(int(loud[0]) * WINDOW - MARGIN, 0)
    stop = min((int(loud[-1]) + 1) * WINDOW + MARGIN, len(x))
    y = x[start:stop].copy()
    active = rms[rms >= loudest * _db(ACTIVE_DB)]
    level = float(np.sqrt(np.mean(active**2)))
    gain = _db(TARGET_RMS_DBFS) / level
    peak = float(np.abs(y).max()) * gain
    if peak > _db(PEAK_CEILING_DBFS):
        gain *= _db(PEAK_CEILING_DBFS) / peak
    y *= gain
    ramp = np.linspace(0.0, 1.0, FADE, endpoint=False)
    y[:FADE] *= ramp[: len(y)]
    y[-FADE:] *= ramp[::-1][: len(y)]
    return y


def beep() -> Signal:
    t = np.arange(round(BEEP_SECONDS * RATE)) / RATE
    y = _db(BEEP_DBFS) * np.sin(2 * np.pi * BEEP_HZ * t)
    ramp = np.linspace(0.0, 1.0, 80, endpoint=False)  # 10 ms
    y[:80] *= ramp
    y[-80:] *= ramp[::-1]
    return y


def pause() -> Signal:
    return np.zeros(round(PAUSE_SECONDS * RATE))


def to_wav(y: Signal) -> bytes:
    pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _jobs(manifest: dict[str, object], langs: Iterable[str]) -> list[tuple[str, str, bytes]]:
    voices = manifest["voices"]
    assert isinstance(voices, dict)
    jobs: list[tuple[str, str, bytes]] = []
    for lang in langs:
        texts = manifest.get(lang)
        if not isinstance(texts, dict) or lang not in voices:
            raise SystemExit(f"{lang}: no [{lang}] table or voice in the manifest")
        voice, speed = voices[lang]["voice"], int(voices[lang]["speed"])
        for name, text in texts.items():
            jobs.append((lang, name, to_wav(trim_and_level(speak(text, voice, speed)))))
        jobs.append((lang, "beep", to_wav(beep())))
        jobs.append((lang, "pause", to_wav(pause())))
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--out", type=Path, default=None, help="default: the manifest's dir")
    parser.add_argument("--lang", action="append", help="language(s); default: all")
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    parser.add_argument("--prune", action="store_true", help="delete WAVs not in the manifest")
    args = parser.parse_args(argv)
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    manifest = tomllib.loads(args.manifest.read_text(encoding="utf-8"))
    out: Path = args.out or args.manifest.parent
    langs = args.lang or sorted(manifest["voices"])
    stale: list[str] = []
    written = 0
    expected: dict[str, set[str]] = {lang: set() for lang in langs}
    for lang, name, data in _jobs(manifest, langs):
        expected[lang].add(f"{name}.wav")
        path = out / lang / f"{name}.wav"
        if path.exists() and path.read_bytes() == data:
            continue
        stale.append(f"{lang}/{name}")
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written += 1
    extra = sorted(
        f"{lang}/{p.name}"
        for lang in langs
        for p in (out / lang).glob("*.wav")
        if p.name not in expected[lang]
    )
    if args.check:
        for item in stale:
            print(f"missing or stale: {item}", file=sys.stderr)
        for item in extra:
            print(f"not in the manifest: {item}", file=sys.stderr)
        return 1 if stale or extra else 0
    if args.prune:
        for item in extra:
            (out / item).unlink()
    total = sum(p.stat().st_size for lang in langs for p in (out / lang).glob("*.wav"))
    count = sum(len(v) for v in expected.values())
    print(f"{count} prompts, {written} written, {total / 1e6:.2f} MB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
