"""Simultaneous prompt-playing calls set up through SIP: how many `ivr serve` holds.

The calls: a generated config (in a temp dir) adds ``--users`` synthetic users (extensions
30000…, one desk phone each, language sv) whose weekly schedule puts them in Lunch all day
(00:00–23:59, every day, holidays included; checked over the API before each step), so a
call to one of them is answered with the spoken redirect ("‹3 0 0 0 1› är på lunch, åter
klockan 23.59") and then the voicemail greeting. The greeting is the system prompt
``leave_message``, replaced for the run by a long one in the service's custom prompt
directory (shipped prompts read one after the other, 10 s longer than the step's hold,
preloaded at start as every prompt is), so each call plays real prompts for its whole life
and never reaches the beep or the recorder. Why not let voicemail end the call: redirect,
greeting, beep and 3 s of silence last ~8 s, which at a given setup rate gives few calls
at once, and the caller could not choose how long it listens. Here the caller chooses:
SIPp (``prompt_call.xml``: a device of a generated user authenticates with its digest,
INVITE → 407 → INVITE → 200 → ACK, and calls the next user) sends no RTP and hangs up
after the hold time.

A step of N (a fresh `ivr serve` each): SIPp starts N calls at ``--rate`` calls/s, at
most N at once, each held ``N / rate + --window`` s, so all N play together for about
``--window`` s before the first hangs up. Every call's SDP names one port of a separate
capture process (``benchmarks.rtp_receiver``, kernel arrival timestamps). Its capture is
summarised twice: from 1 s after the last setup was due ("all playing": the N calls
held, what the acceptance criterion asks) and over the whole step ("whole step": the
setups under way included). Per step: calls set up/s and setup time, failures (SIPp's
reasons), peak simultaneous prompt-playing calls, jitter p50/p99, lost and skipped frames,
the server's CPU over the step (µs per RTP packet, signalling included) and while all N
only play (media only, estimated from the peak), how long its reactor waited for a CPU,
BYEs the server sent after the caller's, and /proc/loadavg. Held: every call set up and
ended cleanly, all N seen playing at once and, while they did, p99 jitter < 5 ms and
nothing lost or skipped. Stops after the first N not held (``--full-ramp`` runs them all).
The machine's cores are shared with SIPp, the receiver and whatever else runs: read
µs/packet and the load beside the held N; ``--nice -10`` (root) lets the server run first,
as a media server is usually run (every stall of its one reactor delays all N streams).

    python -m benchmarks.prompt_calls --calls 250,500,1000,2000,3000 --rate 100 --window 10 \
        --nice -10
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.feature_calls import Media
from benchmarks.media_engine import run_queue_wait
from benchmarks.rtp_receiver import ReceiverProcess, summarize
from ivr.testing.service import DEFAULT_CONFIG, RunningService, start_service
from ivr.testing.sipp import Sipp

REPO = Path(__file__).resolve().parents[1]
FIRST_EXTENSION = 30000
MAX_USERS = 9999
MAX_CALLS = 10_000
PACKETS_PER_S = 50  # 20 ms frames
GREETING = "leave_message"  # the voicemail greeting after a spoken redirect
LANGS = ("sv", "en")
GREETING_SPARE_S = 10.0  # the greeting outlasts the hold by this much
MAX_HOLD_S = 600.0
SKIP_PROMPTS = ("beep", "pause", GREETING)


# --- the generated config and prompts -----------------------------------------------------


def write_config(base: Path, users: int, workdir: Path) -> Path:
    """``base`` plus ``users`` synthetic users in Lunch all day; recordings in ``workdir``."""
    text = re.sub(
        r"(?m)^recordings_dir\s*=.*$",
        f"recordings_dir = {json.dumps(str(workdir / 'recordings'))}",
        base.read_text(),
    )
    blocks = [text, "\n# --- synthetic users added by benchmarks.prompt_calls\n"]
    for i in range(users):
        ext = str(FIRST_EXTENSION + i)
        blocks.append(
            f'\n[[users]]\nextension = "{ext}"\nname = "Prompt {ext}"\nlanguage = "sv"\n'
            f'pin = "1234"\n[[users.devices]]\nid = "{ext}-desk"\nkind = "desk"\n'
            f'username = "{ext}"\npassword = "prompt-{ext}"\n'
            '[[users.schedules]]\nid = "lunch"\nprofile = "lunch"\n'
            'days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\n'
            'start = "00:00"\nend = "23:59"\nholidays = "include"\n'
        )
    path = workdir / "ivr-prompt-calls.toml"
    path.write_text("".join(blocks))
    return path


def write_greeting(prompts: Path, custom: Path, seconds: float) -> dict[str, float]:
    """A ``leave_message`` of at least ``seconds`` per language in ``custom``: the shipped
    prompts of that language one after the other. Returns each one's length in s."""
    lengths: dict[str, float] = {}
    for lang in LANGS:
        names = sorted(p for p in (prompts / lang).glob("*.wav") if p.stem not in SKIP_PROMPTS)
        if not names:
            raise RuntimeError(f"no shipped prompts in {prompts / lang}")
        frames: list[bytes] = []
        total = 0
        while total < seconds * 8000:
            path = names[len(frames) % len(names)]
            with wave.open(str(path), "rb") as w:
                if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (8000, 1, 2):
                    raise RuntimeError(f"{path}: not 8 kHz mono 16-bit")
                frames.append(w.readframes(w.getnframes()))
                total += w.getnframes()
        out = custom / lang / f"{GREETING}.wav"
        out.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(out), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"".join(frames))
        lengths[lang] = total / 8000
    return lengths


def call_rows(users: int, domain: str) -> list[list[str]]:
    """SIPp CSV rows: device i (user, auth keyword, domain) calls user i + 1."""
    rows = []
    for i in range(users):
        ext = str(FIRST_EXTENSION + i)
        auth = f"[authentication username={ext} password=prompt-{ext}]"
        rows.append([ext, auth, domain, str(FIRST_EXTENSION + (i + 1) % users)])
    return rows


# --- one step -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptStep:
    calls: int
    rate: float
    hold_s: float
    ok: int
    failed: int
    setups_per_s: float
    setup_p50_ms: float
    setup_p99_ms: float
    wall_s: float
    cpu_s: float
    wait_s: float
    plateau_s: float
    plateau_cpu_s: float
    loadavg: str
    media: Media  # from ramp + 1 s on: every call set up, all N playing (held is judged here)
    whole: Media  # the whole step, setups under way included
    late_byes: int
    reasons: tuple[tuple[str, int], ...] = ()

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s else float("nan")

    @property
    def us_per_packet(self) -> float:
        """Server CPU per RTP packet received, signalling included."""
        packets = self.whole.packets
        return 1e6 * self.cpu_s / packets if packets else float("nan")

    @property
    def plateau_cpu_percent(self) -> float:
        return 100.0 * self.plateau_cpu_s / self.plateau_s if self.plateau_s else float("nan")

    @property
    def plateau_us_per_packet(self) -> float:
        """Server CPU per packet while the peak number of calls only played (estimated:
        the peak's packet rate over the plateau)."""
        packets = self.media.peak_streams * PACKETS_PER_S * self.plateau_s
        return 1e6 * self.plateau_cpu_s / packets if packets else float("nan")

    @property
    def held(self) -> bool:
        return (
            self.ok == self.calls
            and self.failed == 0
            and self.media.peak_streams >= self.calls
            and self.media.held
        )

    def line(self) -> str:
        why = ""
        if self.reasons:
            why = " [" + ", ".join(f"{r} ×{n}" for r, n in self.reasons[:3]) + "]"
        return (
            f"N {self.calls:5} (rate {self.rate:g}/s, hold {self.hold_s:.1f} s)  "
            f"set up {self.setups_per_s:6.1f}/s (p50 {self.setup_p50_ms:.0f} ms, "
            f"p99 {self.setup_p99_ms:.0f} ms)  ok {self.ok} failed {self.failed}{why}  "
            f"peak simultaneous {self.media.peak_streams:5}  all playing: {self.media.text()}"
            f"; whole step: {self.whole.text()}  "
            f"server cpu {self.cpu_percent:5.1f}% ({self.us_per_packet:.1f} µs/packet with "
            f"signalling), plateau {self.plateau_cpu_percent:5.1f}% over {self.plateau_s:.1f} s "
            f"({self.plateau_us_per_packet:.1f} µs/packet), waited "
            f"{1000 * self.wait_s:.0f} ms for a CPU  receiver cpu "
            f"{self.media.receiver_cpu_percent:4.1f}%  loadavg {self.loadavg}  "
            f"server BYEs after the caller's {self.late_byes}  "
            f"{'held' if self.held else 'NOT held'}"
        )


class RawReceiver(ReceiverProcess):
    """:class:`ReceiverProcess` that also keeps its raw records (``--raw``), so that the
    same capture is summarised twice: the whole step, and from a later start on."""

    def __init__(self, workdir: Path, deadline: float, settle: float) -> None:
        self.raw = workdir / f"rtp-{time.monotonic_ns()}.raw"
        self.out = self.raw.with_suffix(".json")
        cmd = [sys.executable, "-m", "benchmarks.rtp_receiver", "--host", "127.0.0.1"]
        cmd += ["--port", "0", "--deadline", f"{deadline:g}", "--settle", f"{settle:g}"]
        cmd += ["--out", str(self.out), "--raw", str(self.raw)]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"RTP receiver did not start: {line!r}")
        _, self.host, port = line.split()
        self.port = int(port)

    def whole(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The summary of every packet captured (no settle), then the raw file is gone."""
        records = self.raw.read_bytes()
        self.raw.unlink()
        whole = summarize(records, 20.0, 0.0)
        keep = ("receiver_drops", "receiver_cpu_s", "receiver_wall_s")
        return whole | {key: summary[key] for key in keep if key in summary}


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _rtt_rows(workdir: Path) -> list[tuple[float, float]]:
    """(date_ms, setup_ms) of every call that got its 200 (SIPp's ``-trace_rtt``)."""
    rows: list[tuple[float, float]] = []
    for path in workdir.glob("*_rtt.csv"):
        for row in csv.reader(path.read_text().splitlines(), delimiter=";"):
            try:
                rows.append((float(row[0]), float(row[1])))
            except (ValueError, IndexError):
                continue  # the header
    return sorted(rows)


_EVENT = re.compile(r"\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: ")
_RECEIVED = re.compile(r"received 'SIP/2\.0 (\d{3} [^\r\n']*)")


def sipp_events(errors: str) -> tuple[list[tuple[str, int]], int]:
    """Why SIPp aborted calls (``-trace_err``), most frequent first, and how many BYEs
    arrived for calls SIPp had already ended. The caller's planned wait for a BYE that
    does not come ("jumping to label") is no failure."""
    reasons: Counter[str] = Counter()
    late_byes = 0
    for event in _EVENT.split(errors)[1:]:
        if "jumping to label" in event:
            continue
        if event.startswith("Dead call"):
            late_byes += "received 'BYE " in event
            continue  # a late message for a call already counted
        found = _RECEIVED.search(event)
        if found is not None:
            reasons[found.group(1).strip()] += 1
        else:
            first = re.sub(r"Call-Id: \S+", "Call-Id: …", event.splitlines()[0])
            reasons[re.sub(r"'[^']*'", "…", first)[:80]] += 1
    return reasons.most_common(), late_byes


def answered_byes(workdir: Path) -> int:
    """BYEs from the server that the scenario answered after its own (``-trace_counts``)."""
    for path in workdir.glob("*_counts.csv"):
        rows = [r for r in csv.reader(path.read_text().splitlines(), delimiter=";") if r]
        if len(rows) >= 2:
            for name, value in zip(rows[0], rows[-1], strict=False):
                if name.endswith("_BYE_Recv") and value.isdigit():
                    return int(value)
    return 0


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def run_step(
    service: RunningService,
    n: int,
    rate: float,
    window: float,
    rows: list[list[str]],
    workdir: Path,
) -> PromptStep:
    """N calls at ``rate``, each held ``n / rate + window`` s, at most N at once."""
    ramp = n / rate
    hold = ramp + window
    budget = ramp + hold + 30.0
    receiver = RawReceiver(workdir, budget + 60, settle=ramp + 1.0)
    stepdir = workdir / f"sipp-{n}"
    sipp = Sipp(
        scenario="prompt_call.xml",
        remote=(service.host, service.sip_port),
        calls=n,
        rate=rate,
        rate_period_ms=1000,
        limit=n,
        inf_rows=rows,
        keys={"rtp_port": str(receiver.port)},
        timeout=budget,
        trace_messages=False,
        trace_rtt=True,
        extra=["-d", str(round(1000 * hold)), "-trace_counts"],
        workdir=stepdir,
    )
    pid = service.process.pid
    cpu0, wait0, wall0 = service.cpu_seconds(), run_queue_wait(pid), time.monotonic()
    plateau_s = plateau_cpu = 0.0
    try:
        running = sipp.start()
        # every call set up (if the server kept the rate) until the first hangs up
        begin, end = wall0 + ramp + 1.0, wall0 + hold - 0.5
        if end - begin >= 0.5:
            _sleep_until(begin)
            at, cpu_at = time.monotonic(), service.cpu_seconds()
            _sleep_until(end)
            plateau_s, plateau_cpu = time.monotonic() - at, service.cpu_seconds() - cpu_at
        result = running.wait()
    finally:
        wall = time.monotonic() - wall0
        cpu = service.cpu_seconds() - cpu0
        wait = run_queue_wait(pid) - wait0
        summary = receiver.stop()
        whole = receiver.whole(summary)
    rtts = _rtt_rows(stepdir)
    dates = [date for date, _ in rtts]
    setups = len(dates) / ((dates[-1] - dates[0] + 1000.0 / rate) / 1000.0) if dates else 0.0
    setup_ms = [setup for _, setup in rtts]
    ok = result.successful
    reasons, late = sipp_events(result.errors)
    return PromptStep(
        calls=n,
        rate=rate,
        hold_s=hold,
        ok=ok,
        failed=max(result.failed, n - ok),
        setups_per_s=setups,
        setup_p50_ms=statistics.median(setup_ms) if setup_ms else float("nan"),
        setup_p99_ms=_quantile(setup_ms, 0.99),
        wall_s=wall,
        cpu_s=cpu,
        wait_s=wait,
        plateau_s=plateau_s,
        plateau_cpu_s=plateau_cpu,
        loadavg=_loadavg(),
        media=Media.from_summary(summary),
        whole=Media.from_summary(whole),
        late_byes=late + answered_byes(stepdir),
        reasons=tuple(reasons),
    )


def renice(pid: int, nice: int) -> None:
    """Every thread of ``pid`` at niceness ``nice`` (Linux niceness is per thread)."""
    if nice == 0:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.setpriority(os.PRIO_PROCESS, int(task.name), nice)  # < 0 needs privilege


def check_lunch(service: RunningService, rows: list[list[str]]) -> None:
    """Every called user is in Lunch (asked over the admin API), or the run is void."""
    for ext in sorted({row[3] for row in rows}):
        status, view = service.get_json(f"/api/users/{ext}/profile")
        if status != 200 or not isinstance(view, dict) or view.get("profile") != "lunch":
            raise RuntimeError(f"user {ext} is not in Lunch: {status} {view}")


# --- main ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="250,500,1000,2000,3000", help="N, rising")
    parser.add_argument("--rate", type=float, default=100.0, help="call setups/s asked")
    parser.add_argument("--window", type=float, default=10.0, help="s all N play together")
    parser.add_argument("--users", type=int, default=500, help="synthetic users in Lunch")
    parser.add_argument("--rtp-ports", default="20000-31999", help="server RTP ports LOW-HIGH")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--full-ramp", action="store_true", help="run every N")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of ivr serve (below 0 needs root; a busy shared machine starves it)",
    )
    parser.add_argument("--json", action="store_true", help="end with a JSON line of results")
    args = parser.parse_args(argv)
    try:
        counts = [int(part) for part in args.calls.split(",") if part.strip()]
    except ValueError:
        parser.error("--calls: comma-separated whole numbers")
    low, _, high = args.rtp_ports.partition("-")
    if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
        parser.error("--rtp-ports: LOW-HIGH within 1024-65535")
    if not counts or any(not 1 <= n <= MAX_CALLS for n in counts):
        parser.error(f"--calls: each N must be in 1..{MAX_CALLS}")
    if (int(high) - int(low)) // 2 < max(counts) + 50:
        parser.error("--rtp-ports has fewer even ports than the largest N needs")
    if not 0 < args.rate <= 1000:
        parser.error("--rate must be in (0, 1000] calls/s")
    if not 0 < args.window <= 120:
        parser.error("--window must be in (0, 120] s")
    if not 2 <= args.users <= MAX_USERS:
        parser.error(f"--users must be in 2..{MAX_USERS}")
    if not -20 <= args.nice <= 19:
        parser.error("--nice must be in -20..19")
    if max(counts) / args.rate + args.window > MAX_HOLD_S:
        parser.error(f"the longest hold (largest N / rate + window) must be ≤ {MAX_HOLD_S} s")

    from ivr.config import load_config

    steps: list[PromptStep] = []
    with tempfile.TemporaryDirectory(prefix="bench-prompt-calls-") as tmp:
        workdir = Path(tmp)
        config = write_config(args.config, args.users, workdir)
        cfg = load_config(config)
        rows = call_rows(args.users, cfg.sip.domain)
        print(
            "prompt-playing calls through SIP: SIPp devices of "
            f"{args.users} synthetic users (digest-authenticated) call each other; every "
            "callee is in Lunch (schedule), so the call hears the spoken redirect, then a "
            f"voicemail greeting (custom prompt) {GREETING_SPARE_S:g} s longer than the hold; "
            f"the caller hangs up after N / {args.rate:g} + {args.window:g} s; at most N at "
            f"once; a fresh ivr serve per step (nice {args.nice}). held = every call ok, all "
            "N playing at once, and from 1 s after the last setup was due: p99 jitter < 5 ms, "
            f"no lost or skipped frames. loadavg before: {_loadavg()}",
            flush=True,
        )
        for n in counts:
            stepdir = workdir / f"step-{n}"
            # the service's custom prompts live beside its database (ivr.admin.service)
            hold = n / args.rate + args.window
            write_greeting(cfg.prompts_dir, stepdir / "prompts", hold + GREETING_SPARE_S)
            service = start_service(
                stepdir, "--log-level", "warn", "--rtp-ports", args.rtp_ports, config=config
            )
            try:
                renice(service.process.pid, args.nice)
                check_lunch(service, rows)
                step = run_step(service, n, args.rate, args.window, rows, stepdir)
            finally:
                code = service.stop()
            if code != 0:
                print(f"ivr serve exited {code}:\n{service.log()[-3000:]}", file=sys.stderr)
                return 1
            print(step.line(), flush=True)
            steps.append(step)
            if not (args.full_ramp or step.held):
                break
    held = max((s.calls for s in steps if s.held), default=0)
    print(
        f"largest N held (simultaneous prompt-playing calls set up through SIP): {held or 'none'}",
        flush=True,
    )
    if args.json:
        rows_out = [
            asdict(s)
            | {"held": s.held, "us_per_packet": s.us_per_packet}
            | {"plateau_us_per_packet": s.plateau_us_per_packet}
            for s in steps
        ]
        print(json.dumps({"steps": rows_out, "largest_held": held}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
