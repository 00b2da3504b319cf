"""In-band DTMF: accuracy on an ITU-T Q.24 grid and multi-channel throughput, ivr vs spandsp.

Accuracy: every category of a generated grid (frequency deviation, duration, pause and same-digit
repeats, twist, level, 15 dB SNR, G.711 mu-law and A-law, dial tone underneath; single tones,
same-group pairs; call-progress tones, noise and, when espeak-ng is installed, synthetic speech
made at run time for talk-off) goes through ivr's ``detect`` and spandsp's ``dtmf_rx`` (Debian's
libspandsp2, through ctypes), and the digit strings are scored per category: correct digits
(longest common subsequence with what was sent), missed and extra ones; cases that must be
rejected and were not; talk-off hits.

Throughput: channel-seconds of audio per CPU-second on one core for each channel count: ivr is
fed one 20 ms block of all channels at a time (as the media tick hands it over), spandsp one call
per channel with all of its audio (its best case). Two mixes: "stress", benchmarks.dtmf_detect's
(a quarter of the channels dial digit strings, the rest carry white noise at -50 to -10 dBm0, the
costliest for ivr), and "calls" (line noise, now and then speech-like bursts, one key press per
channel). Each figure is the best of --reps runs, ivr and spandsp interleaved (the machine may be
shared).

    python -m benchmarks.dtmf_bench [--channels 1 100 1000] [--seconds 2] [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from benchmarks.dtmf_detect import RATE, Spandsp, load_spandsp, make_channels
from ivr.dtmf import DIGITS, InbandDetector, detect, generate, resample
from ivr.dtmf.generate import HIGH, LOW
from ivr.media import g711

DBM0_RMS = 16107.0  # rms of a 0 dBm0 sine in 16-bit units
BLOCK = RATE // 50  # one 20 ms media tick
ESPEAK_TEXTS = (
    "Please enter your personal code, followed by the hash key.",
    "Thank you for calling. All our operators are busy at the moment.",
    "Press one for sales, two for support, or stay on the line.",
    "The number you have dialled is not available. Please try again later.",
    "Your call is important to us. You are number four in the queue.",
    "Good morning, this is the switchboard. How may I help you today?",
)
ESPEAK_VOICES = ("en", "en-us", "sv", "de", "fr", "es")

Detector = Callable[[np.ndarray], str]


@dataclass(frozen=True, slots=True)
class Case:
    """One signal of the grid: the digits it carries ("" for a must-reject or talk-off case)."""

    category: str
    kind: str  # "detect", "reject" or "talkoff"
    samples: np.ndarray
    digits: str = ""


@dataclass(slots=True)
class Tally:
    """A detector's score on one category."""

    cases: int = 0
    sent: int = 0
    correct: int = 0
    missed: int = 0
    extra: int = 0
    accepted: int = 0  # must-reject or talk-off cases with any digit reported
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def add(self, case: Case, found: str) -> None:
        self.cases += 1
        self.seconds += len(case.samples) / RATE
        hit = _lcs(case.digits, found)
        self.sent += len(case.digits)
        self.correct += hit
        self.missed += len(case.digits) - hit
        self.extra += len(found) - hit
        if case.kind != "detect" and found:
            self.accepted += 1
        if found != case.digits and len(self.failures) < 3:
            self.failures.append(f"{case.digits or '-'}->{found or '-'}")


# -- the grid ----------------------------------------------------------------------------------


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _sine(freqs: Sequence[float], seconds: float, level_dbm0: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    amp = DBM0_RMS * np.sqrt(2) * 10 ** (level_dbm0 / 20)
    return sum((amp * np.sin(2 * np.pi * f * t) for f in freqs), np.zeros(len(t)))


def _cadence(freqs: Sequence[float], on: float, off: float, seconds: float, level: float):
    x = _sine(freqs, seconds, level)
    if off:
        t = np.arange(len(x)) / RATE
        x = x * ((t % (on + off)) < on)
    return x


def _string(digits: str, **kw: object) -> np.ndarray:
    opts: dict[str, object] = {"tone_ms": 60, "gap_ms": 80, "lead_ms": 100, "trail_ms": 150, **kw}
    return generate(digits, **opts)  # type: ignore[arg-type]


def grid(digits: str, rng: np.random.Generator, talkoff_s: float, speech: bool) -> Iterator[Case]:
    """The cases, category by category; accept cases carry ``digits`` (as one string per case)
    and reject cases one signal per digit of it."""
    for lo, hi in [(-1.5, 0), (1.5, 0), (0, -1.5), (0, 1.5), (-1.5, -1.5), (1.5, 1.5), (-1.5, 1.5)]:
        yield Case("deviation +-1.5%", "detect", _string(digits, freq_offset_pct=(lo, hi)), digits)
    for off in [
        (-3.5, 0),
        (3.5, 0),
        (0, -3.5),
        (0, 3.5),
        (-3.5, -3.5),
        (3.5, 3.5),
        (5, 0),
        (0, -5),
    ]:
        for d in digits:
            yield Case("deviation >=3.5%", "reject", _string(d, freq_offset_pct=off))
    for ms in (40, 45, 60, 100):
        yield Case("duration >=40 ms", "detect", _string(digits, tone_ms=ms), digits)
    for ms in (10, 20, 23):
        for d in digits:
            yield Case("duration <=23 ms", "reject", _string(d, tone_ms=ms))
    repeats = [d * 4 for d in digits[:4]] + [digits, "1122"]
    for tone_ms, gap_ms in [(40, 40), (60, 40), (45, 45)]:
        for text in repeats:
            yield Case(
                "pause 40 ms, repeats",
                "detect",
                _string(text, tone_ms=tone_ms, gap_ms=gap_ms),
                text,
            )
    for twist in (4.0, 2.0, -4.0, -8.0):
        yield Case("twist +4..-8 dB", "detect", _string(digits, twist_db=twist), digits)
    for twist in (10.0, -16.0):
        for d in digits:
            yield Case("twist +10/-16 dB", "reject", _string(d, twist_db=twist))
    for level in (-3.0, -10.0, -20.0, -30.0, -36.0):
        yield Case("level -3..-36 dBm0", "detect", _string(digits, level_dbm0=level), digits)
    for _ in range(4):
        x = _string(digits, level_dbm0=float(rng.uniform(-25, -8))).astype(float)
        tone_power = np.mean(x[x != 0] ** 2) if np.any(x) else 0.0
        noise = rng.normal(0, np.sqrt(tone_power / 10**1.5), len(x))
        yield Case("SNR 15 dB", "detect", _int16(x + noise), digits)
    for law, codec in (("mu-law", "PCMU"), ("A-law", "PCMA")):
        for level in (-3.0, -20.0, -36.0):
            pcm = _string(digits, level_dbm0=level)
            coded = g711.decode(codec, g711.encode(codec, pcm))
            yield Case(f"G.711 {law}", "detect", coded, digits)
    for level in (-10.0, -20.0):
        x = _string(digits, level_dbm0=level).astype(float)
        x += _sine((350.0, 440.0), len(x) / RATE, -13.0)
        yield Case("over dial tone", "detect", _int16(x), digits)
    for f in LOW + HIGH:
        for level in (-5.0, -25.0):
            yield Case("single tone", "reject", _int16(_pad(_sine((f,), 0.4, level))))
    for group in (LOW, HIGH):
        for i, f1 in enumerate(group):
            for f2 in group[i + 1 :]:
                yield Case("same-group pair", "reject", _int16(_pad(_sine((f1, f2), 0.2, -10.0))))
    seconds = max(1.0, talkoff_s / 8)
    for freqs, on, off in [
        ((350.0, 440.0), 1.0, 0.0),  # dial
        ((440.0, 480.0), 2.0, 4.0),  # ringback
        ((480.0, 620.0), 0.5, 0.5),  # busy
        ((480.0, 620.0), 0.25, 0.25),  # congestion
        ((400.0, 450.0), 0.4, 0.2),  # UK ringing
        ((425.0,), 0.5, 0.5),  # European busy
    ]:
        for level in (-6.0, -20.0):
            yield Case("call progress", "talkoff", _int16(_cadence(freqs, on, off, seconds, level)))
    sit = [_sine((f,), 0.33, -12.0) for f in (913.8, 1370.6, 1776.7)] + [np.zeros(RATE)]
    yield Case("call progress", "talkoff", _int16(np.concatenate(sit * 2)))
    n = int(talkoff_s * RATE / 4)
    for level in (-30.0, -10.0):
        white = rng.normal(0, DBM0_RMS * 10 ** (level / 20), n)
        brown = np.cumsum(rng.normal(0, 1, n))
        brown -= np.convolve(brown, np.ones(64) / 64, mode="same")
        brown *= DBM0_RMS * 10 ** (level / 20) / (np.std(brown) + 1e-9)
        yield Case("noise", "talkoff", _int16(white))
        yield Case("noise", "talkoff", _int16(brown))
    if speech:
        for x in _espeak(talkoff_s, rng):
            yield Case("speech (espeak-ng)", "talkoff", x)


def _pad(x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros(RATE // 10), x, np.zeros(RATE // 5)])


def _espeak(seconds: float, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """About ``seconds`` of espeak-ng speech at 8 kHz, several voices, speeds and pitches,
    at -25 to -8 dBm0; nothing when espeak-ng is not installed."""
    exe = shutil.which("espeak-ng")
    if exe is None or seconds <= 0:
        return
    import soundfile

    made = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "speech.wav")
        for i in range(64):
            if made >= seconds:
                return
            text = ESPEAK_TEXTS[i % len(ESPEAK_TEXTS)]
            voice = ESPEAK_VOICES[(i // len(ESPEAK_TEXTS) + i) % len(ESPEAK_VOICES)]
            speed, pitch = int(rng.integers(130, 200)), int(rng.integers(20, 80))
            cmd = [exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", path, text]
            if subprocess.run(cmd, capture_output=True, check=False, timeout=60).returncode:
                continue
            x, rate = soundfile.read(path, dtype="float64")
            if x.ndim == 2:
                x = x.mean(axis=1)
            x = resample(x, rate, RATE).astype(float)
            x *= DBM0_RMS * 10 ** (rng.uniform(-25, -8) / 20) / (np.std(x) + 1e-9)
            made += len(x) / RATE
            yield _int16(x)


def _lcs(a: str, b: str) -> int:
    """Length of the longest common subsequence (digits found in the order sent)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b):
            cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


# -- detectors -----------------------------------------------------------------------------------


def ivr_digits(samples: np.ndarray) -> str:
    return "".join(d.digit for d in detect(samples, RATE))


def spandsp_detector(spandsp: Spandsp) -> Detector:
    def digits(samples: np.ndarray) -> str:
        flushed = np.concatenate([samples.astype(np.int16), np.zeros(RATE // 10, np.int16)])
        return spandsp.digits(flushed)

    return digits


def score(cases: Sequence[Case], detectors: dict[str, Detector]) -> dict[str, dict[str, Tally]]:
    """Per detector, per category: the tally."""
    out: dict[str, dict[str, Tally]] = {name: {} for name in detectors}
    for case in cases:
        for name, fn in detectors.items():
            out[name].setdefault(case.category, Tally()).add(case, fn(case.samples))
    return out


def print_accuracy(cases: Sequence[Case], tallies: dict[str, dict[str, Tally]]) -> None:
    kinds = {c.category: c.kind for c in cases}
    names = list(tallies)
    head = f"{'category':22s} {'class':8s} {'cases':>5s} {'digits':>6s}"
    for name in names:
        head += f" | {name + ' correct':>15s} {'missed':>6s} {'extra':>5s} {'accepted':>8s}"
    print("accuracy per category (correct = digits found in order; accepted = must-reject or")
    print("talk-off cases with any digit reported)")
    print(head)
    for category, kind in kinds.items():
        first = tallies[names[0]][category]
        line = f"{category:22s} {kind:8s} {first.cases:5d} {first.sent:6d}"
        for name in names:
            t = tallies[name][category]
            pct = f"{100 * t.correct / t.sent:6.1f} %" if t.sent else "      -"
            line += f" | {pct:>15s} {t.missed:6d} {t.extra:5d} {t.accepted:8d}"
        print(line)
    for name in names:
        by_kind: dict[str, Tally] = {}
        for category, t in tallies[name].items():
            k = by_kind.setdefault(kinds[category], Tally())
            for attr in ("cases", "sent", "correct", "missed", "extra", "accepted", "seconds"):
                setattr(k, attr, getattr(k, attr) + getattr(t, attr))
        det, rej, talk = (by_kind.get(k, Tally()) for k in ("detect", "reject", "talkoff"))
        hours = talk.seconds / 3600
        print(
            f"SUMMARY accuracy {name}: must-detect {100 * det.correct / max(det.sent, 1):.1f} %"
            f" ({det.correct}/{det.sent}, missed {det.missed}, extra {det.extra}),"
            f" must-reject accepted {rej.accepted}/{rej.cases},"
            f" talk-off {talk.extra} digits in {hours * 60:.1f} min of audio"
        )
        wrong = [
            f"{c}: {', '.join(t.failures)}"
            for c, t in tallies[name].items()
            if t.failures and (kinds[c] != "detect" or t.correct < t.sent or t.extra)
        ]
        if wrong:
            print(f"  {name} misses, e.g. " + "; ".join(wrong[:6]))


# -- throughput ----------------------------------------------------------------------------------


def _per_run(once: Callable[[], float], min_cpu: float) -> float:
    """CPU seconds of one run, averaged over as many runs as take ``min_cpu``."""
    runs, spent = 0, 0.0
    while spent < min_cpu or not runs:
        spent += once()
        runs += 1
    return spent / runs


class IvrRun:
    """ivr over a list of (channels x 160) blocks, a fresh detector per run."""

    def __init__(self, blocks: Sequence[np.ndarray]) -> None:
        self.blocks = blocks
        self.found = 0

    def once(self) -> float:
        det = InbandDetector(self.blocks[0].shape[0], RATE)  # set-up, not timed
        t0 = time.process_time()
        found = sum(len(det.feed(block)) for block in self.blocks) + len(det.flush())
        cpu = time.process_time() - t0
        self.found = found
        return cpu


class SpandspRun:
    """spandsp's dtmf_rx over every channel, one call per channel (set-up not timed)."""

    def __init__(self, spandsp: Spandsp, audio: np.ndarray) -> None:
        self.spandsp, self.audio = spandsp, audio
        self.found = 0

    def once(self) -> float:
        result = self.spandsp.run(self.audio)
        self.found = result.digits
        return result.cpu_s


@dataclass(frozen=True, slots=True)
class Speed:
    channels: int
    ivr: float  # channel-seconds of audio per CPU-second
    spandsp: float | None
    digits: tuple[int, int | None, int]  # found by ivr, by spandsp; sent


def make_calls(channels: int, seconds: float, seed: int = 1) -> tuple[np.ndarray, int]:
    """A quieter mix, as calls spend most of their time: every channel carries line noise at
    -70 to -55 dBm0, about a fifth of the time a caller talks over it (noise shaped like speech,
    -25 to -10 dBm0, in 0.2-0.6 s bursts) and each channel has one key press somewhere (not
    talked over)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    block = np.empty((channels, n), dtype=np.int16)
    for ch in range(channels):
        x = rng.normal(0, DBM0_RMS * 10 ** (rng.uniform(-70, -55) / 20), n)
        key = generate(str(rng.choice(list(DIGITS))), tone_ms=80, gap_ms=0, level_dbm0=-15)
        at = int(rng.integers(0, max(1, n - len(key) - RATE // 10)))
        x[at : at + len(key)] += key[: n - at]
        t = 0
        while t < n:
            length = int(rng.uniform(0.2, 0.6) * RATE)
            if rng.random() < 0.2 and (t + length < at - RATE // 20 or t > at + len(key)):
                burst = np.cumsum(rng.normal(0, 1, length))  # brown-ish: speech is low-heavy
                burst -= np.convolve(burst, np.ones(32) / 32, mode="same")
                burst *= np.sin(np.pi * np.arange(length) / length) ** 0.7
                level = DBM0_RMS * 10 ** (rng.uniform(-25, -10) / 20)
                x[t : t + length] += (burst * level / (np.std(burst) + 1e-9))[: n - t]
            t += length
        block[ch] = _int16(x)
    return block, channels if n >= RATE // 5 else 0


MIXES = {"stress": make_channels, "calls": make_calls}


def throughput(
    channels: int,
    seconds: float,
    reps: int,
    spandsp: Spandsp | None,
    min_cpu: float,
    mix: str = "stress",
) -> Speed:
    audio, sent = MIXES[mix](channels, seconds)
    # the media tick hands over one contiguous (channels x 160) block per 20 ms
    blocks = [
        np.ascontiguousarray(audio[:, i : i + BLOCK]) for i in range(0, audio.shape[1], BLOCK)
    ]
    ivr = IvrRun(blocks)
    ref = SpandspRun(spandsp, audio) if spandsp is not None else None
    ivr_best = ref_best = float("inf")
    for _ in range(reps):  # interleaved: both see the same state of a shared machine
        ivr_best = min(ivr_best, _per_run(ivr.once, min_cpu))
        if ref is not None:
            ref_best = min(ref_best, _per_run(ref.once, min_cpu))
    audio_s = channels * audio.shape[1] / RATE
    return Speed(
        channels,
        audio_s / ivr_best,
        audio_s / ref_best if ref is not None else None,
        (ivr.found, ref.found if ref is not None else None, sent),
    )


def print_throughput(speeds: Sequence[Speed], seconds: float, mix: str) -> None:
    what = {
        "stress": "a quarter of the channels dialling, the rest white noise at -50 to -10 dBm0",
        "calls": "line noise, a fifth of the time speech-like bursts, one key press per channel",
    }[mix]
    print(
        f"throughput, {mix} mix ({what}): channel-seconds of audio per CPU-second on one core"
        f" ({seconds:g} s per channel; ivr fed 20 ms blocks of all channels, spandsp all of a"
        " channel per call)"
    )
    print(f"{'channels':>8s} {'ivr':>12s} {'spandsp':>12s} {'ratio':>6s}   digits ivr/spandsp/sent")
    for s in speeds:
        sp = f"{s.spandsp:12,.0f}" if s.spandsp else f"{'-':>12s}"
        ratio = f"{s.ivr / s.spandsp:6.2f}" if s.spandsp else f"{'-':>6s}"
        found_sp = "-" if s.digits[1] is None else str(s.digits[1])
        print(
            f"{s.channels:8d} {s.ivr:12,.0f} {sp} {ratio}   {s.digits[0]}/{found_sp}/{s.digits[2]}"
        )
    label = "" if mix == "stress" else f" ({mix} mix)"
    for s in speeds:
        head = f"SUMMARY throughput {s.channels} channels{label}: ivr {s.ivr:,.0f}"
        if s.spandsp:
            print(
                f"{head}, spandsp {s.spandsp:,.0f} channel-s/CPU-s,"
                f" ratio ivr/spandsp {s.ivr / s.spandsp:.2f}"
            )
        else:
            print(f"{head} channel-s/CPU-s")


# -- main ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, nargs="+", default=[1, 100, 1000])
    ap.add_argument("--seconds", type=float, default=2.0, help="audio per channel (throughput)")
    ap.add_argument("--reps", type=int, default=5, help="throughput runs; the best counts")
    ap.add_argument("--min-cpu", type=float, default=0.05, help="CPU seconds per timing")
    ap.add_argument("--digits", default=DIGITS, help="digits of each accept case")
    ap.add_argument("--talkoff-seconds", type=float, default=120.0, help="speech and noise")
    ap.add_argument("--no-speech", action="store_true", help="no espeak-ng talk-off speech")
    ap.add_argument("--no-spandsp", action="store_true", help="ivr alone")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--mix",
        nargs="+",
        choices=list(MIXES),
        default=list(MIXES),
        help="throughput signals: stress (benchmarks.dtmf_detect's) and/or calls",
    )
    a = ap.parse_args(argv)
    if (
        not a.channels
        or min(a.channels) < 1
        or max(a.channels) > 20000
        or not 0 < a.seconds <= 60
        or not 1 <= a.reps <= 100
        or not 0 <= a.talkoff_seconds <= 3600
        or not a.digits
        or any(d not in DIGITS for d in a.digits)
    ):
        ap.error(
            "need 1 <= --channels <= 20000, 0 < --seconds <= 60, 1 <= --reps <= 100,"
            " 0 <= --talkoff-seconds <= 3600 and --digits from " + DIGITS
        )
    spandsp = None if a.no_spandsp else load_spandsp()
    if spandsp is None:
        print("spandsp not measured (libspandsp2 not installed or --no-spandsp)")
    if not a.skip_accuracy:
        rng = np.random.default_rng(a.seed)
        cases = list(grid(a.digits, rng, a.talkoff_seconds, not a.no_speech))
        detectors: dict[str, Detector] = {"ivr": ivr_digits}
        if spandsp is not None:
            detectors["spandsp"] = spandsp_detector(spandsp)
        print_accuracy(cases, score(cases, detectors))
        if not a.no_speech and shutil.which("espeak-ng") is None:
            print("(espeak-ng not installed: no speech talk-off)")
    if not a.skip_throughput:
        for mix in a.mix:
            speeds = [
                throughput(n, a.seconds, a.reps, spandsp, a.min_cpu, mix)
                for n in sorted(set(a.channels))
            ]
            print_throughput(speeds, a.seconds, mix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
