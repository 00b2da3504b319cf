"""In-band DTMF detection throughput: ivr's many-channel detector, and spandsp's where present.

Builds CHANNELS channels of SECONDS of audio (a quarter carry digit strings, the rest noise at
several levels), feeds ivr's InbandDetector one 20 ms block of all channels at a time, and
prints samples per CPU second (= channels x real-time factor at 8 kHz) and the CPU time per
tick. When Debian's libspandsp2 is installed, spandsp's dtmf_rx runs over the same channels
(one C call per channel: its best case, no Python in the loop) and the ratio is printed.

    python -m benchmarks.dtmf_detect --channels 2000 --seconds 2
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ivr.dtmf import InbandDetector, generate

RATE = 8000
DIGITS = "0123456789*#ABCD"


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    samples_per_s: float
    digits: int
    cpu_s: float


def make_channels(channels: int, seconds: float, seed: int = 1) -> tuple[np.ndarray, int]:
    """int16 (channels, samples) audio and the number of digits it carries."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    block = np.empty((channels, n), dtype=np.int16)
    expected = 0
    for ch in range(channels):
        if ch % 4 == 0:
            count = max(1, int(seconds / 0.3))
            digits = "".join(rng.choice(list(DIGITS), count))
            x = generate(
                digits,
                tone_ms=int(rng.integers(50, 100)),
                gap_ms=int(rng.integers(60, 120)),
                level_dbm0=float(rng.uniform(-30, -5)),
                lead_ms=float(rng.uniform(0, 50)),
            )
            kept = x[:n]
            expected += len(digits) if len(x) <= n else 0
            row = np.pad(kept, (0, n - len(kept)))
        else:
            row = rng.normal(0, 16107 * 10 ** (rng.uniform(-50, -10) / 20), n)
        block[ch] = np.clip(row, -32768, 32767)
    return block, expected


def run_ivr(audio: np.ndarray, block_ms: float = 20) -> Result:
    det = InbandDetector(audio.shape[0], RATE)
    step = int(RATE * block_ms / 1000)
    # the media tick hands over one contiguous (channels x step) block per tick
    blocks = [np.ascontiguousarray(audio[:, i : i + step]) for i in range(0, audio.shape[1], step)]
    found = 0
    t0 = time.process_time()
    for block in blocks:
        found += len(det.feed(block))
    found += len(det.flush())
    cpu = time.process_time() - t0
    return Result("ivr", audio.size / max(cpu, 1e-9), found, cpu)


class Spandsp:
    """A minimal ctypes binding of spandsp's dtmf_rx (Debian libspandsp2)."""

    def __init__(self) -> None:
        path = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
        lib = ctypes.CDLL(path)
        lib.dtmf_rx_init.restype = ctypes.c_void_p
        lib.dtmf_rx_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.dtmf_rx.restype = ctypes.c_int
        lib.dtmf_rx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        lib.dtmf_rx_get.restype = ctypes.c_size_t
        lib.dtmf_rx_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.dtmf_rx_free.restype = ctypes.c_int
        lib.dtmf_rx_free.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def digits(self, samples: np.ndarray) -> str:
        """The digits dtmf_rx reports in one mono int16 signal (fed in one call per 10 s)."""
        lib = self.lib
        x = np.ascontiguousarray(samples, dtype=np.int16)
        state = lib.dtmf_rx_init(None, None, None)
        buf = ctypes.create_string_buffer(128)
        out = []
        for i in range(0, max(len(x), 1), 10 * RATE):
            part = x[i : i + 10 * RATE]
            lib.dtmf_rx(state, part.ctypes.data, len(part))
            count = lib.dtmf_rx_get(state, buf, 127)
            out.append(buf.raw[:count].decode())
        lib.dtmf_rx_free(state)
        return "".join(out)

    def run(self, audio: np.ndarray) -> Result:
        lib = self.lib
        states = [lib.dtmf_rx_init(None, None, None) for _ in range(audio.shape[0])]
        buf = ctypes.create_string_buffer(128)
        chunk = 10 * RATE  # the digit queue holds 128 digits: drain it every 10 s
        found = 0
        t0 = time.process_time()
        for state, row in zip(states, audio, strict=True):
            for i in range(0, len(row), chunk):
                part = row[i : i + chunk]
                lib.dtmf_rx(state, part.ctypes.data, len(part))
                found += lib.dtmf_rx_get(state, buf, 127)
        cpu = time.process_time() - t0
        for state in states:
            lib.dtmf_rx_free(state)
        return Result("spandsp", audio.size / max(cpu, 1e-9), found, cpu)


def load_spandsp() -> Spandsp | None:
    try:
        return Spandsp()
    except (OSError, AttributeError):
        return None


def _line(r: Result, channels: int, ticks: int) -> str:
    return (
        f"{r.name:8s} {r.samples_per_s / 1e6:8.1f} M samples/CPU-s"
        f" = {r.samples_per_s / RATE:9,.0f} channels in real time on one core"
        f" | {1000 * r.cpu_s / max(ticks, 1):7.3f} ms CPU per 20 ms tick of {channels} channels"
        f" | {r.digits} digits"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--block-ms", type=float, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-spandsp", action="store_true", help="skip the spandsp comparison")
    a = ap.parse_args(argv)
    if a.channels < 1 or not 0 < a.seconds <= 600 or a.block_ms <= 0:
        ap.error("need --channels >= 1, 0 < --seconds <= 600 and --block-ms > 0")
    audio, expected = make_channels(a.channels, a.seconds, a.seed)
    ticks = int(np.ceil(audio.shape[1] / (RATE * a.block_ms / 1000)))
    print(f"{a.channels} channels x {a.seconds:g} s at {RATE} Hz, {expected} digits sent")
    ours = run_ivr(audio, a.block_ms)
    print(_line(ours, a.channels, ticks))
    spandsp = None if a.no_spandsp else load_spandsp()
    if spandsp is None:
        print("spandsp  not measured (libspandsp2 not installed or --no-spandsp)")
        return 0
    ref = spandsp.run(audio)
    print(_line(ref, a.channels, ticks))
    print(f"ratio    ivr / spandsp = {ours.samples_per_s / ref.samples_per_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
