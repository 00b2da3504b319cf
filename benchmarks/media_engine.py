"""The media engine alone: how many prompt-playing RTP streams one process holds.

For each N (rising), a child process runs ``ivr.media.session.MediaEngine`` on the real
reactor with N streams (one UDP port each, as in a call), every one playing a long
sequence of the shipped prompts (PCMA) towards a capture process
(``benchmarks.rtp_receiver``, kernel arrival timestamps). Every stream starts on the same
tick; the first ``--settle`` seconds are left out. Per N: packets/s, the sender's CPU (%
of one core and µs per packet, which depends less on what else the machine runs), how
long its thread waited for a CPU (a busy machine shows there), how long a tick took and
how late it started, the receiver's CPU, p50/p99 inter-arrival jitter, lost and skipped frames
(seen by the receiver; skips reported by the engine too), then the largest N held: p99
jitter < 5 ms, no loss, no skipped frames, no send errors, every stream seen.

Stops after the first N not held (``--full-ramp`` runs them all). On a machine shared
with other busy processes the sender waits for a CPU and jitter follows; ``--nice -10``
(root) lets it run first, as a media server is usually run.

    python -m benchmarks.media_engine --streams 500,1000,2000,3000,4000 --seconds 5
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import resource
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.rtp_receiver import ReceiverProcess

REPO = Path(__file__).resolve().parents[1]
MAX_P99_JITTER_MS = 5.0
MAX_STREAMS = 20_000
PROMPT_LANG = "sv"
CODEC = "PCMA"


def run_queue_wait(pid: int | None = None) -> float:
    """Seconds a main thread (this one if ``pid`` is None) spent runnable, waiting for a CPU.

    From ``schedstat``: on a busy machine this tells stalls caused by CPU starvation apart
    from stalls the program caused itself.
    """
    path = Path(
        "/proc/thread-self/schedstat" if pid is None else f"/proc/{pid}/task/{pid}/schedstat"
    )
    try:
        return int(path.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of ``seconds``, in ms (NaN when empty)."""
    if not seconds:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return 1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.5), "p99": at(0.99), "max": 1000.0 * ordered[-1]}


# --- the sender (child process) -----------------------------------------------------------


def sender(argv: Sequence[str]) -> int:
    """N MediaEngine streams on the real reactor; prints ``BEGIN``, then one JSON line."""
    parser = argparse.ArgumentParser(prog="media_engine sender")
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--target", required=True, help="HOST:PORT of the receiver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rtp-ports", default="20000-59999")
    parser.add_argument("--settle", type=float, default=0.5)
    parser.add_argument("--max-burst", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)  # below 0 needs privilege: PermissionError says so

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.streams + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.streams + 1024), hard))

    from twisted.internet import reactor

    from ivr.media.prompts import PromptLibrary
    from ivr.media.session import MediaEngine

    library = PromptLibrary(REPO / "prompts")
    names = sorted(library.names(PROMPT_LANG))
    length = args.settle + args.seconds + 2.0
    sequence: list[str] = []
    while sum(library.duration(PROMPT_LANG, name) for name in sequence) < length:
        sequence += names
    # one buffer for all: each stream plays a shallow copy with its own position
    template = library.player(PROMPT_LANG, sequence, CODEC)
    low, high = (int(p) for p in args.rtp_ports.split("-"))
    host, port = args.target.rsplit(":", 1)
    engine = MediaEngine(
        reactor,
        args.host,
        low,
        high,
        random.Random(args.seed),
        max_burst=args.max_burst,
        idle_silence=False,  # nothing goes out before every prompt starts at once
    )
    work: list[float] = []  # seconds each tick took
    late: list[float] = []  # seconds each tick started after its 20 ms mark
    tick = engine._tick

    cpu: list[float] = []  # CPU seconds of this thread in each tick

    def timed_tick() -> None:
        begun, begun_cpu = time.perf_counter(), time.thread_time()
        late.append(reactor.seconds() - engine._epoch - (engine._frames + 1) * engine.interval)
        tick()
        work.append(time.perf_counter() - begun)
        cpu.append(time.thread_time() - begun_cpu)

    engine._tick = timed_tick  # type: ignore[method-assign]
    streams = [
        engine.open_stream(remote=(host, int(port)), payload_type=8) for _ in range(args.streams)
    ]
    start: dict[str, float] = {}
    result: dict[str, Any] = {}

    def counters() -> dict[str, float]:
        return {
            "cpu_s": time.process_time(),
            "wait_s": run_queue_wait(),
            "wall_s": reactor.seconds(),
            "sent": sum(s.sent for s in streams),
            "send_errors": sum(s.send_errors for s in streams),
            "frames_skipped": engine.frames_skipped,
            "ticks": engine.ticks,
        }

    def finish() -> None:
        result.update({key: value - start[key] for key, value in counters().items()})
        measured = int(start["ticks"])
        result["tick_ms"] = _percentiles(work[measured:])
        result["late_ms"] = _percentiles(late[measured:])
        result["tick_cpu_ms"] = _percentiles(cpu[measured:])
        result["prompt_seconds"] = template.duration
        engine.close()
        reactor.stop()

    def measure() -> None:
        start.update(counters())
        print("BEGIN", flush=True)
        reactor.callLater(args.seconds, finish)

    def begin() -> None:
        for stream in streams:
            stream.play(copy.copy(template))
        reactor.callLater(args.settle, measure)  # the receiver leaves the same time out

    reactor.callLater(0.5, begin)  # let the tick settle after binding N ports
    reactor.run(installSignalHandlers=False)
    print(json.dumps(result), flush=True)
    return 0


# --- one step -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    streams: int
    seconds: float
    sent: int
    send_errors: int
    engine_skipped: int
    cpu_s: float
    wait_s: float
    seen_streams: int
    lost: int
    skipped: int
    receiver_drops: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    tick_p50_ms: float
    tick_p99_ms: float
    late_p99_ms: float
    receiver_cpu_percent: float

    @property
    def packets_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.seconds if self.seconds else float("nan")

    @property
    def us_per_packet(self) -> float:
        return 1e6 * self.cpu_s / self.sent if self.sent else float("nan")

    @property
    def held(self) -> bool:
        return (
            self.sent > 0
            and self.seen_streams == self.streams
            and self.lost == 0
            and self.skipped == 0
            and self.engine_skipped == 0
            and self.send_errors == 0
            and self.receiver_drops == 0
            and self.p99_ms < MAX_P99_JITTER_MS
        )

    def line(self) -> str:
        drops = f" (receiver overflowed {self.receiver_drops})" if self.receiver_drops else ""
        return (
            f"N {self.streams:5}  {self.packets_per_s:8.0f} pkt/s  "
            f"sender cpu {self.cpu_percent:5.1f}%  {self.us_per_packet:5.2f} µs/packet  "
            f"waited {1000 * self.wait_s:5.0f} ms for a CPU  "
            f"tick p50 {self.tick_p50_ms:.2f} p99 {self.tick_p99_ms:.2f} ms, "
            f"started late p99 {self.late_p99_ms:.2f} ms  "
            f"receiver cpu {self.receiver_cpu_percent:4.1f}%  "
            f"jitter p50 {self.p50_ms:.2f} p99 {self.p99_ms:.2f} max {self.max_ms:.1f} ms  "
            f"lost {self.lost}{drops}  skipped {self.skipped} (engine {self.engine_skipped})  "
            f"send errors {self.send_errors}  streams seen {self.seen_streams}  "
            f"{'held' if self.held else 'NOT held'}"
        )


def _ms(jitter: dict[str, Any], key: str) -> float:
    value = jitter.get(key)
    return float("nan") if value is None else float(value)


def run_step(
    n: int,
    seconds: float,
    settle: float,
    max_burst: int,
    rtp_ports: str,
    workdir: Path,
    nice: int = 0,
    watch: Callable[[int], Callable[[], object]] | None = None,
) -> Step:
    """One N: the receiver, then the sender child; both bounded in time. ``watch`` is
    called with the sender's pid when its measurement begins and returns what to call
    when the sender is done (a profiler, say)."""
    budget = 0.5 + settle + seconds + 60.0
    receiver = ReceiverProcess(workdir, budget + 30, settle=settle)
    cmd = [sys.executable, "-m", "benchmarks.media_engine", "--sender"]
    cmd += ["--streams", str(n), "--seconds", f"{seconds:g}", "--settle", f"{settle:g}"]
    cmd += ["--target", f"{receiver.host}:{receiver.port}", "--rtp-ports", rtp_ports]
    cmd += ["--max-burst", str(max_burst), "--nice", str(nice)]
    errors = workdir / f"sender-{n}.err"
    lines: list[str] = []
    with errors.open("wb") as stderr_file:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_file
        )
    done: Callable[[], object] | None = None
    try:
        assert proc.stdout is not None
        end = time.monotonic() + budget
        while time.monotonic() < end:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, end - time.monotonic()))
            raw = proc.stdout.readline() if ready else b""
            if not raw:
                break
            lines.append(raw.decode().strip())
            if lines[-1] == "BEGIN" and watch is not None:
                done = watch(proc.pid)
        proc.wait(max(1.0, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if done is not None:
            done()
        summary = receiver.stop()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        stderr = errors.read_text(errors="replace")
        raise RuntimeError(f"media sender exited {proc.returncode}:\n{stderr[-3000:]}")
    sent = json.loads(lines[-1])
    jitter = summary.get("jitter_ms") or {}
    wall = float(summary.get("receiver_wall_s") or 0.0) or float("inf")
    return Step(
        streams=n,
        seconds=float(sent["wall_s"]),
        sent=int(sent["sent"]),
        send_errors=int(sent["send_errors"]),
        engine_skipped=int(sent["frames_skipped"]),
        cpu_s=float(sent["cpu_s"]),
        wait_s=float(sent["wait_s"]),
        seen_streams=int(summary["streams"]),
        lost=int(summary["lost"]),
        skipped=int(summary["skipped"]),
        receiver_drops=int(summary.get("receiver_drops", 0)),
        p50_ms=_ms(jitter, "p50"),
        p99_ms=_ms(jitter, "p99"),
        max_ms=_ms(jitter, "max"),
        tick_p50_ms=float(sent["tick_ms"]["p50"]),
        tick_p99_ms=float(sent["tick_ms"]["p99"]),
        late_p99_ms=float(sent["late_ms"]["p99"]),
        receiver_cpu_percent=100.0 * float(summary.get("receiver_cpu_s", 0.0)) / wall,
    )


# --- main ---------------------------------------------------------------------------------


def _counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--sender"]:
        return sender(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="500,1000,2000,3000,4000", help="N, rising")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured s per N")
    parser.add_argument("--settle", type=float, default=0.5, help="start-up s not counted")
    parser.add_argument("--max-burst", type=int, default=10, help="as `ivr serve` runs it")
    parser.add_argument("--rtp-ports", default="20000-59999")
    parser.add_argument("--full-ramp", action="store_true", help="run every N")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the sender (below 0 needs root; a busy shared machine starves it)",
    )
    parser.add_argument("--json", action="store_true", help="end with a JSON line of results")
    args = parser.parse_args(argv)
    counts = _counts(args.streams)
    if not counts or any(not 1 <= n <= MAX_STREAMS for n in counts):
        parser.error(f"--streams: each N must be in 1..{MAX_STREAMS}")
    if not 0 < args.seconds <= 120:
        parser.error("--seconds must be in (0, 120]")
    if not 0 <= args.settle <= 10:
        parser.error("--settle must be in [0, 10]")
    if not 1 <= args.max_burst <= 50:
        parser.error("--max-burst must be in 1..50")
    if not -20 <= args.nice <= 19:
        parser.error("--nice must be in -20..19")

    print(
        f"media engine alone: N streams playing prompts ({CODEC}, 20 ms), one UDP port each, "
        f"real reactor, max_burst {args.max_burst}, {args.seconds:g} s per N after "
        f"{args.settle:g} s settling, sender nice {args.nice}; "
        f"held = p99 jitter < {MAX_P99_JITTER_MS:g} ms, "
        "no loss, no skipped frames",
        flush=True,
    )
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="media-engine-") as tmp:
        for n in counts:
            step = run_step(
                n, args.seconds, args.settle, args.max_burst, args.rtp_ports, Path(tmp), args.nice
            )
            print(step.line(), flush=True)
            steps.append(step)
            if not (args.full_ramp or step.held):
                break
    held = max((s.streams for s in steps if s.held), default=0)
    print(f"largest N held: {held}", flush=True)
    if args.json:
        rows = [asdict(s) | {"held": s.held, "us_per_packet": s.us_per_packet} for s in steps]
        print(json.dumps({"steps": rows, "largest_held": held}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
