"""Feature-code calls under load: SIP setups with prompt-playing media, then the media engine alone.

Part A (SIP): `ivr serve` takes authenticated feature-code calls from SIPp (alternating
``*23*2*1300#`` and ``#23#`` across the demo devices; INVITE → 407 → INVITE with digest →
200, the confirmation prompt plays, the server hangs up) at rising rates for a bounded time
per step. Every call's SDP names one RTP port of a separate capture process
(``benchmarks.rtp_receiver``), which measures per-stream loss and inter-arrival jitter from
kernel timestamps. Per step: rate asked/achieved, calls ok/failed (with SIPp's reasons),
setups/s and setup time, peak simultaneous streams, lost and skipped frames, jitter, server
CPU and how long its reactor thread waited for a CPU (a busy machine shows there). Then the
highest rate held (< 0.1 % failures, ≥ 90 % of the rate set up) and the largest number of
simultaneous prompt-playing calls held (p99 jitter < 5 ms, no lost or skipped frames). No
reference: SIPp's own UAS cannot play prompts, so nothing in the run does the same work.
The demo company has 4 users; ``--extra-users N`` adds synthetic ones so that fewer changes
to the same user's profile are in flight at once.

Part B (media engine without signalling): part A's concurrency is bounded by setups/s ×
prompt length (~3–4 s). The sender of ``benchmarks.media_engine`` (a child process) runs
``ivr.media.session.MediaEngine`` on the real reactor with N streams, each playing a long
sequence of the shipped prompts, towards the same kind of receiver, for N rising; the
first 0.5 s (every stream starts on the same tick) is left out. Per N: jitter, loss, the
sender's CPU; then the largest N held.

Each part stops after its first step that holds nothing (``--full-ramp`` runs them all);
``--profile DIR`` samples the server and the sender with py-spy and prints the top frames.

    python -m benchmarks.feature_calls --rates 10,20,40,80,120 --seconds 5 \
        --streams 250,500,1000,2000,4000 --stream-seconds 5
"""

from __future__ import annotations

import argparse
import csv
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.media_engine import Step, run_queue_wait, run_step
from benchmarks.rtp_receiver import ReceiverProcess
from ivr.testing.service import DEFAULT_CONFIG, RunningService, start_service
from ivr.testing.sipp import Sipp

REPO = Path(__file__).resolve().parents[1]
CODES = ("*23*2*1300%23", "%2323%23")  # lunch until 13:00; back to the standard profile
MAX_FAILURE_RATIO = 0.001
MAX_P99_JITTER_MS = 5.0
MEDIA_SETTLE_S = 0.5  # part B: every stream starts on the same tick; that transient is left out
MEDIA_MAX_BURST = 2  # part B: frames a stream may catch up per tick (MediaEngine's default)


# --- the capture process ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Media:
    """What the receiver saw."""

    packets: int
    streams: int
    peak_streams: int
    lost: int
    skipped: int
    receiver_drops: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    receiver_cpu_percent: float

    @classmethod
    def from_summary(cls, s: dict[str, Any]) -> Media:
        jitter = s.get("jitter_ms") or {}
        nan = float("nan")
        wall = s.get("receiver_wall_s") or 0.0
        return cls(
            packets=int(s["packets"]),
            streams=int(s["streams"]),
            peak_streams=int(s["peak_streams"]),
            lost=int(s["lost"]),
            skipped=int(s["skipped"]),
            receiver_drops=int(s.get("receiver_drops", 0)),
            p50_ms=nan if jitter.get("p50") is None else float(jitter["p50"]),
            p99_ms=nan if jitter.get("p99") is None else float(jitter["p99"]),
            max_ms=nan if jitter.get("max") is None else float(jitter["max"]),
            receiver_cpu_percent=100.0 * s.get("receiver_cpu_s", 0.0) / wall if wall else 0.0,
        )

    @property
    def held(self) -> bool:
        """p99 jitter < 5 ms, no lost or skipped frames (the receiver kept up)."""
        return (
            self.streams > 0
            and self.lost == 0
            and self.skipped == 0
            and self.receiver_drops == 0
            and self.p99_ms < MAX_P99_JITTER_MS
        )

    def text(self) -> str:
        drops = f" (receiver overflowed: {self.receiver_drops})" if self.receiver_drops else ""
        return (
            f"lost {self.lost}{drops}  skipped {self.skipped}  "
            f"jitter p50 {self.p50_ms:.2f} p99 {self.p99_ms:.2f} max {self.max_ms:.1f} ms"
        )


# --- part A: calls through `ivr serve` ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallStep:
    rate: float
    calls: int
    attempted: int
    ok: int
    failed: int
    achieved: float
    setups_per_s: float
    setup_p50_ms: float
    setup_p99_ms: float
    wall_s: float
    cpu_s: float
    wait_s: float
    media: Media
    reasons: tuple[tuple[str, int], ...] = ()

    @property
    def setup_held(self) -> bool:
        total = self.ok + self.failed
        return (
            total >= self.calls
            and self.failed <= MAX_FAILURE_RATIO * total
            and self.setups_per_s >= 0.9 * self.rate
        )

    @property
    def media_held(self) -> bool:
        return self.ok > 0 and self.media.held

    def _why(self) -> str:
        if not self.reasons:
            return ""
        return " [" + ", ".join(f"{why} ×{n}" for why, n in self.reasons[:3]) + "]"

    def line(self) -> str:
        cpu = 100.0 * self.cpu_s / self.wall_s if self.wall_s else float("nan")
        each = 1000.0 * self.cpu_s / self.ok if self.ok else float("nan")
        return (
            f"rate {self.rate:5.0f}/s achieved {self.achieved:6.1f}/s  ok {self.ok:5} "
            f"failed {self.failed:4}{self._why()}  setups {self.setups_per_s:6.1f}/s "
            f"(p50 {self.setup_p50_ms:.0f} ms, p99 {self.setup_p99_ms:.0f} ms)  "
            f"peak streams {self.media.peak_streams:5}  {self.media.text()}  "
            f"server cpu {cpu:5.1f}% ({each:.1f} ms/call, waited {1000 * self.wait_s:.0f} ms "
            "for a CPU)  "
            f"setup {'held' if self.setup_held else 'NOT held'}, "
            f"media {'held' if self.media_held else 'NOT held'}"
        )


def config_with_users(config: Path, extra: int, workdir: Path) -> Path:
    """``config`` plus ``extra`` synthetic users (extensions 3000…), one desk phone each.

    Spreads the load over more profile states: the demo company has 4 users, so at high rates
    many feature codes for the same user are in flight at once.
    """
    if extra == 0:
        return config
    blocks = [config.read_text(), "\n# --- synthetic users added by benchmarks.feature_calls\n"]
    for i in range(extra):
        ext = str(3000 + i)
        blocks.append(
            f'\n[[users]]\nextension = "{ext}"\nname = "Load {ext}"\nlanguage = "sv"\n'
            f'pin = "1234"\n[[users.devices]]\nid = "{ext}-desk"\nkind = "desk"\n'
            f'username = "{ext}"\npassword = "load-{ext}"\n'
        )
    path = workdir / "ivr-load.toml"
    path.write_text("".join(blocks))
    return path


def call_rows(config: Path) -> tuple[list[list[str]], int]:
    """SIPp CSV rows (user, auth keyword, domain, code; the code alternates call by call)
    and the number of users those devices belong to."""
    from ivr.config import load_config

    cfg = load_config(config)
    devices = [
        [d.username, f"[authentication username={d.username} password={d.password}]"]
        for user in cfg.users
        for d in user.devices
        if d.is_sip
    ]
    devices = [[*device, cfg.sip.domain] for device in devices]
    users = sum(1 for user in cfg.users if any(d.is_sip for d in user.devices))
    n = len(devices)
    rows = [[*devices[i % n], CODES[(i + i // n) % len(CODES)]] for i in range(2 * n)]
    return rows, users


def _rtt_rows(workdir: Path) -> list[tuple[float, float]]:
    """(date_ms, setup_ms) of every call that got its 200 (SIPp's ``-trace_rtt`` file)."""
    rows: list[tuple[float, float]] = []
    for path in workdir.glob("*_rtt.csv"):
        for row in csv.reader(path.read_text().splitlines(), delimiter=";"):
            try:
                rows.append((float(row[0]), float(row[1])))
            except (ValueError, IndexError):
                continue  # the header
    return sorted(rows)


_EVENT = re.compile(r"^\S+\t\S+\t[\d.]+: ", re.MULTILINE)
_RECEIVED = re.compile(r"received 'SIP/2\.0 (\d{3} [^\r\n']*)")


def failure_reasons(errors: str) -> list[tuple[str, int]]:
    """Why SIPp aborted calls (from ``-trace_err``), most frequent first."""
    reasons: Counter[str] = Counter()
    for event in _EVENT.split(errors)[1:]:
        if event.startswith("Dead call"):
            continue  # a late message for a call already counted
        found = _RECEIVED.search(event)
        if found is not None:
            reasons[found.group(1).strip()] += 1
        else:
            reasons[re.sub(r"'[^']*'", "…", event.splitlines()[0])[:60]] += 1
    return reasons.most_common()


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_call_step(
    service: RunningService, rate: float, seconds: float, rows: list[list[str]], workdir: Path
) -> CallStep:
    calls = max(1, round(rate * seconds))
    budget = seconds + 40.0  # the last call still plays its prompt (~4 s) after the send window
    receiver = ReceiverProcess(workdir, budget + 30)
    stepdir = workdir / f"sipp-{rate:g}"
    sipp = Sipp(
        scenario="feature_code_load.xml",
        remote=(service.host, service.sip_port),
        calls=calls,
        rate=rate,
        rate_period_ms=1000,
        limit=max(50, int(rate * 15)),  # calls last ~4 s: never let the limit pace the rate
        inf_rows=rows,
        keys={"rtp_port": str(receiver.port)},
        timeout=budget,
        trace_messages=False,
        trace_rtt=True,
        workdir=stepdir,
    )
    pid = service.process.pid
    cpu0, wait0, wall0 = service.cpu_seconds(), run_queue_wait(pid), time.monotonic()
    try:
        result = sipp()
    finally:
        wall = time.monotonic() - wall0
        cpu = service.cpu_seconds() - cpu0
        wait = run_queue_wait(pid) - wait0
        summary = receiver.stop()
    rtts = _rtt_rows(stepdir)
    interval_ms = 1000.0 / rate
    starts = sorted(date - setup for date, setup in rtts)
    dates = [date for date, _ in rtts]
    attempted = result.count("OutgoingCall(C)") or calls
    ok = result.successful
    if starts:
        achieved = attempted / ((starts[-1] - starts[0] + interval_ms) / 1000.0)
        setups = len(dates) / ((dates[-1] - dates[0] + interval_ms) / 1000.0)
    else:
        achieved = attempted / seconds
        setups = 0.0
    setup_ms = [setup for _, setup in rtts]
    return CallStep(
        rate=rate,
        calls=calls,
        attempted=attempted,
        ok=ok,
        failed=max(result.failed, calls - ok),
        achieved=achieved,
        setups_per_s=setups,
        setup_p50_ms=statistics.median(setup_ms) if setup_ms else float("nan"),
        setup_p99_ms=_quantile(setup_ms, 0.99),
        wall_s=wall,
        cpu_s=cpu,
        wait_s=wait,
        media=Media.from_summary(summary),
        reasons=tuple(failure_reasons(result.errors)),
    )


def part_a(
    service: RunningService,
    rates: Sequence[float],
    seconds: float,
    rows: list[list[str]],
    workdir: Path,
    full: bool = False,
) -> list[CallStep]:
    """Rising rates; stops after a step that held neither criterion (unless ``full``)."""
    steps: list[CallStep] = []
    for rate in rates:
        step = run_call_step(service, rate, seconds, rows, workdir)
        print(step.line(), flush=True)
        steps.append(step)
        if not (full or step.setup_held or step.media_held):
            break
    return steps


# --- part B: the media engine alone ------------------------------------------------------


def run_media_step(
    n: int, seconds: float, rtp_ports: str, workdir: Path, profile: Path | None = None
) -> tuple[Step, list[tuple[str, float]]]:
    """One N of the media engine benchmark (profiled from the sender's BEGIN when asked)."""
    top: list[tuple[str, float]] = []

    def watch(pid: int) -> Callable[[], None]:
        assert profile is not None
        profiler = Profiler(pid, profile / f"media-{n}.txt")
        return lambda: top.extend(profiler.stop())

    step = run_step(
        n,
        seconds,
        MEDIA_SETTLE_S,
        MEDIA_MAX_BURST,
        rtp_ports,
        workdir,
        watch=None if profile is None else watch,
    )
    return step, top


def part_b(
    counts: Sequence[int],
    seconds: float,
    rtp_ports: str,
    workdir: Path,
    profile: Path | None,
    full: bool = False,
) -> list[Step]:
    """Rising N; stops after the first N not held (unless ``full``)."""
    steps: list[Step] = []
    for n in counts:
        step, top = run_media_step(n, seconds, rtp_ports, workdir, profile)
        print(step.line(), flush=True)
        if top:
            _print_profile(f"media sender, N {n}", top)
        steps.append(step)
        if not (full or step.held):
            break
    return steps


# --- profiles ---------------------------------------------------------------------------


class Profiler:
    """``py-spy record`` attached to a process (raw collapsed stacks), stopped with SIGINT."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        cmd = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--nonblocking"]
        cmd += ["--rate", "200", "--output", str(out)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def stop(self) -> list[tuple[str, float]]:
        """The functions with the most samples at the top of the stack (share of samples)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return top_self(self.out)


def top_self(path: Path, n: int = 12) -> list[tuple[str, float]]:
    if not path.exists():
        return []
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[stack.rsplit(";", 1)[-1]] += int(count)
    total = sum(counts.values()) or 1
    return [(name, 100.0 * c / total) for name, c in counts.most_common(n)]


def _print_profile(title: str, top: list[tuple[str, float]]) -> None:
    print(f"profile ({title}), self time:")
    for name, share in top:
        print(f"  {share:5.1f}%  {name}")


# --- main -------------------------------------------------------------------------------


def _numbers(text: str, kind: Callable[[str], Any]) -> list[Any]:
    return [kind(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10,20,40,60,80,100,150,200", help="calls/s steps")
    parser.add_argument("--seconds", type=float, default=5.0, help="send window of each step")
    parser.add_argument("--streams", default="500,1000,2000,3000,4000", help="part B steps")
    parser.add_argument("--stream-seconds", type=float, default=5.0, help="part B step length")
    parser.add_argument("--rtp-ports", default="30000-59999", help="RTP port range LOW-HIGH")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument(
        "--extra-users", type=int, default=0, help="add N synthetic users (one device each)"
    )
    parser.add_argument(
        "--full-ramp", action="store_true", help="run every step, even past the first not held"
    )
    parser.add_argument("--skip-calls", action="store_true", help="run part B only")
    parser.add_argument("--skip-media", action="store_true", help="run part A only")
    parser.add_argument("--profile", type=Path, help="py-spy the server / sender into DIR")
    args = parser.parse_args(argv)
    try:
        rates = _numbers(args.rates, float)
        counts = _numbers(args.streams, int)
    except ValueError as exc:
        parser.error(str(exc))
    if not rates or not all(0 < r <= 2000 for r in rates):
        parser.error("--rates: comma-separated calls/s in (0, 2000]")
    if not counts or not all(0 < n <= 16000 for n in counts):
        parser.error("--streams: comma-separated stream counts in [1, 16000]")
    if not 0 < args.seconds <= 60 or not 0 < args.stream_seconds <= 60:
        parser.error("--seconds and --stream-seconds must be in (0, 60]")
    low, _, high = args.rtp_ports.partition("-")
    if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
        parser.error("--rtp-ports: LOW-HIGH within 1024-65535")
    if (int(high) - int(low)) // 2 < max(counts) + 100:
        parser.error("--rtp-ports has fewer even ports than the largest --streams step")
    if not 0 <= args.extra_users <= 2000:
        parser.error("--extra-users must be in [0, 2000]")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    calls: list[CallStep] = []
    media: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        workdir = Path(tmp)
        if not args.skip_calls:
            config = config_with_users(args.config, args.extra_users, workdir)
            rows, users = call_rows(config)
            print(
                "Part A — SIP: authenticated feature-code calls (INVITE/407/INVITE/200, prompt, "
                f"server BYE) through ivr serve, {args.seconds:g} s per step, codes "
                f"{' and '.join(c.replace('%23', '#') for c in CODES)} alternating over "
                f"{len(rows) // len(CODES)} devices of {users} users; setup times from SIPp "
                "(4 ms clock)"
            )
            print(
                "reference: none — SIPp's own UAS cannot play prompts, so no server in this "
                "run does the same work; compare with earlier runs of this benchmark"
            )
            service = start_service(
                workdir, "--log-level", "warn", "--rtp-ports", args.rtp_ports, config=config
            )
            profiler = (
                Profiler(service.process.pid, args.profile / "service.txt")
                if args.profile
                else None
            )
            try:
                calls = part_a(service, rates, args.seconds, rows, workdir, args.full_ramp)
            finally:
                top = profiler.stop() if profiler else []
                code = service.stop()
            if code != 0:
                print(f"ivr serve exited {code}:\n{service.log()[-3000:]}", file=sys.stderr)
                return 1
            if profiler:
                _print_profile("ivr serve over part A", top)
        if not args.skip_media:
            print(
                "Part B — media engine without signalling: N MediaEngine streams (real reactor, "
                f"one process) each playing shipped prompts, {args.stream_seconds:g} s per step; "
                "reference: none"
            )
            media = part_b(
                counts, args.stream_seconds, args.rtp_ports, workdir, args.profile, args.full_ramp
            )

    print("--")
    if not args.skip_calls:
        setup = [s for s in calls if s.setup_held]
        played = [s for s in calls if s.media_held]
        title = "part A highest setup rate held (< 0.1 % failures, ≥ 90 % of the rate set up)"
        if setup:
            best = max(setup, key=lambda s: s.rate)
            print(
                f"{title}: {best.rate:g} calls/s ({best.setups_per_s:.1f} setups/s, setup p99 "
                f"{best.setup_p99_ms:.0f} ms, server {1000 * best.cpu_s / best.ok:.1f} ms CPU/call)"
            )
        else:
            print(f"{title}: none")
        title = (
            "part A largest simultaneous prompt-playing calls held (p99 jitter < 5 ms, "
            "no lost or skipped frames)"
        )
        if played:
            best = max(played, key=lambda s: s.media.peak_streams)
            print(f"{title}: {best.media.peak_streams} (at {best.rate:g} calls/s)")
        else:
            print(f"{title}: none")
    if not args.skip_media:
        held = [s for s in media if s.held]
        best_n = max((s.streams for s in held), default=None)
        print(
            "part B media engine without signalling, largest N held (p99 jitter < 5 ms, "
            f"no lost or skipped frames): {'none' if best_n is None else best_n} streams"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
