"""B2BUA load: forked, authenticated calls through `ivr serve`, beside SIPp's own ceiling.

Setup: a generated config (the demo company plus ``--users`` synthetic pairs: a caller
4000+i with a desk phone, a callee 5000+i with a desk phone and a softphone) in a temp
dir. Two SIPp UAS processes stand in for every callee's devices: all desk phones are
registered (digest auth) at the *desk* UAS, which answers each INVITE at once (180, then
200 with SDP), and all softphones at the *soft* UAS, which rings (180) until CANCELled.
So each call forks to two legs: the desk answers, the softphone gets CANCEL (200, 487,
ACK); the caller gets the desk's 200, ACKs, holds ``--hold`` seconds, and BYE is relayed.

Load: a SIPp UAC (caller i → callee i, INVITE → 407 → ACK → INVITE with digest → 200 →
ACK → hold → BYE) at each rate of ``--rates`` for ``--seconds`` (bounded: SIPp sends
rate × seconds calls, with a process timeout). Per step it prints the rate asked and the
setups/s achieved, failures, the delay ivr adds (below), the caller's setup time
(authenticated INVITE → 200, SIPp's ``-trace_rtt``, whole milliseconds), the peak of
simultaneous calls (``/health`` ``active_calls`` polled every 100 ms: bridged calls plus
the few being set up), and the server's CPU from ``/proc`` (share of one core over the
step, and µs per call with the idle share, measured for 2 s before the ramp, left out:
less sensitive to other load on a shared machine), and how long its reactor thread
waited for a CPU (``schedstat``: a busy machine shows there). A step holds
with < 0.1 % failures, ≥ 90 % of the rate set up, and a setup-time p99 ≤ 100 ms (not
leaning on retransmissions); the ramp stops after the first step that does not hold.

Added delay, measured on the wire: ``dumpcap`` captures the service's SIP port on the
loopback interface for each step (kernel timestamps). The caller's SDP carries SIPp's
call number in its ``o=`` line, and ivr passes the SDP through untouched, so the
authenticated INVITE arriving at ivr and the first leg INVITE leaving it pair up by
that line; the difference is the time ivr took: digest check, the profile read on the
store thread, ``decide()``, the registrar lookup and building/sending the first leg.
p50/p99 over the paired calls (the count is printed).

Ceiling, in the same run: the same caller scenario without digest straight to a third
SIPp UAS answering like the desk (no fork), at ``--reference-rates``; its highest rate
held and the ratio ivr/SIPp. ``--profile DIR`` samples the server with py-spy during the ivr ramp
and prints the top self-time frames and the inclusive share of the B2BUA modules.

    python -m benchmarks.b2bua_load --rates 100,200,300,400,500,600 --seconds 5 --hold 1
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ivr.testing.service import DEFAULT_CONFIG, RunningService, start_service
from ivr.testing.sipp import Sipp, SippProcess, free_port

MAX_FAILURE_RATIO = 0.001
MAX_P99_SETUP_MS = 100.0
AIM_P99_DELAY_MS = 10.0
B2BUA_FILES = ("ivr/b2bua.py", "ivr/user_calls.py", "ivr/call_records.py", "ivr/calls.py")


# --- the wire: dumpcap and a small pcap reader -----------------------------------------------


class Capture:
    """``dumpcap`` on the loopback interface for one UDP port, written as classic pcap."""

    def __init__(self, port: int, out: Path) -> None:
        self.out = out
        cmd = ["dumpcap", "-i", "lo", "-f", f"udp port {port}", "-B", "64", "-P", "-q"]
        cmd += ["-w", str(out)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while not out.exists() or out.stat().st_size < 24:  # the file header: capturing
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("dumpcap did not start capturing (is it installed? root?)")
            time.sleep(0.02)
        time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_LINK_HEADER = {0: 4, 1: 14, 113: 16, 276: 20}


def udp_packets(path: Path) -> Iterator[tuple[float, int, int, bytes]]:
    """(time, source port, destination port, payload) of each IPv4 UDP packet in a pcap."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    scale = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    link = struct.unpack(endian + "I", data[20:24])[0]
    skip = _LINK_HEADER.get(link)
    if skip is None:
        raise ValueError(f"unsupported pcap link type {link}")
    record = struct.Struct(endian + "IIII")
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, length, _ = record.unpack_from(data, offset)
        packet = data[offset + 16 : offset + 16 + length]
        offset += 16 + length
        ip = packet[skip:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        udp = ip[(ip[0] & 15) * 4 :]
        sport, dport = struct.unpack_from("!HH", udp)
        yield sec + frac * scale, sport, dport, bytes(udp[8:])


_ORIGIN = re.compile(rb"\no=- (\d+) ")


def added_delays(path: Path, port: int) -> list[float]:
    """Seconds from each authenticated INVITE arriving at ``port`` to the first leg INVITE
    leaving it, paired by the SDP ``o=`` line that ivr passes through."""
    arrived: dict[bytes, float] = {}
    left: dict[bytes, float] = {}
    for at, sport, dport, payload in udp_packets(path):
        if not payload.startswith(b"INVITE "):
            continue
        found = _ORIGIN.search(payload)
        if found is None:
            continue
        key = found.group(1)
        if dport == port and b"proxy-authorization:" in payload.lower():
            arrived[key] = min(at, arrived.get(key, at))
        elif sport == port:
            left[key] = min(at, left.get(key, at))
    return [left[k] - t for k, t in arrived.items() if k in left and left[k] >= t]


# --- measuring ---------------------------------------------------------------------------------


def media_port() -> int:
    """A port for SIPp's ``-mp`` whose neighbours are free too (SIPp binds mp and mp + 2)."""
    for _ in range(50):
        base = free_port()
        socks: list[socket.socket] = []
        try:
            for offset in range(4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no four free UDP ports in a row")


def run_queue_wait(pid: int) -> float:
    """Seconds the process's main thread spent runnable but waiting for a CPU (schedstat):
    on a shared machine this tells stalls caused by other load from our own."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(cpu: Callable[[], float], seconds: float = 2.0) -> float:
    """The CPU share (cores) a process uses while nothing happens (timers, media tick)."""
    before, started = cpu(), time.monotonic()
    time.sleep(seconds)
    return max(0.0, (cpu() - before) / (time.monotonic() - started))


class PeakCalls:
    """Polls ``/health`` every 100 ms in a thread; ``stop()`` returns the peak active_calls."""

    def __init__(self, service: RunningService) -> None:
        self.service = service
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        url = f"http://127.0.0.1:{self.service.http_port}/health"
        while not self._stop.wait(0.1):
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = response.read()
            except OSError:
                continue
            found = re.search(rb'"active_calls":\s*(\d+)', body)
            if found is not None:
                self.peak = max(self.peak, int(found.group(1)))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass(frozen=True, slots=True)
class Step:
    who: str
    rate: float
    calls: int
    ok: int
    failed: int
    seconds: float
    setup_p50_ms: float
    setup_p99_ms: float
    delays_ms: tuple[float, ...] = ()
    peak_calls: int | None = None
    cpu_percent: float | None = None
    cpu_us_per_call: float | None = None
    reactor_percent: float | None = None  # the reactor thread alone (the store has its own)
    waited_ms: float | None = None
    reason: str = ""

    @property
    def achieved(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def held(self) -> bool:
        total = self.ok + self.failed
        return (
            total >= self.calls
            and self.failed <= MAX_FAILURE_RATIO * total
            and self.achieved >= 0.9 * self.rate
            and self.setup_p99_ms <= MAX_P99_SETUP_MS
        )

    @property
    def delay_p50_ms(self) -> float:
        return statistics.median(self.delays_ms) if self.delays_ms else float("nan")

    @property
    def delay_p99_ms(self) -> float:
        return quantile(self.delays_ms, 0.99)

    def line(self) -> str:
        text = (
            f"{self.who:4} rate {self.rate:5.0f}/s  achieved {self.achieved:6.1f}/s  "
            f"ok {self.ok:6}  failed {self.failed:4}  "
        )
        if self.who == "ivr":
            text += (
                f"added delay p50 {self.delay_p50_ms:6.2f} ms p99 {self.delay_p99_ms:6.2f} ms "
                f"({len(self.delays_ms)} paired)  "
            )
        text += f"setup p50 {self.setup_p50_ms:4.0f} ms p99 {self.setup_p99_ms:4.0f} ms  "
        if self.peak_calls is not None:
            text += f"simultaneous calls peak {self.peak_calls:5}  "
        label = "server cpu" if self.who == "ivr" else "uas cpu"
        if self.cpu_percent is not None and self.cpu_us_per_call is not None:
            text += f"{label} {self.cpu_percent:5.1f}% ({self.cpu_us_per_call:5.0f} µs/call"
            if self.reactor_percent is not None:
                text += f", reactor thread {self.reactor_percent:4.1f}%"
            text += ")  "
        if self.waited_ms is not None:
            text += f"waited for a cpu {self.waited_ms:5.0f} ms  "
        text += "held" if self.held else f"NOT held{': ' + self.reason if self.reason else ''}"
        return text


def _first_error(errors: str) -> str:
    for line in errors.splitlines():
        line = line.strip()
        if line and not line.startswith(("Dead call", "-", "The following events")):
            return line[:100]
    return ""


def run_step(
    who: str,
    scenario: str,
    target: tuple[str, int],
    rows: list[list[str]],
    rate: float,
    seconds: float,
    hold: float,
    workdir: Path,
    *,
    cpu: Callable[[], float],
    service: RunningService | None = None,
    idle: float = 0.0,
) -> Step:
    """One step; ``idle`` is the CPU share (cores) the process uses doing nothing, left
    out of the µs per call."""
    calls = max(1, round(rate * seconds))
    sipp = Sipp(
        scenario=scenario,
        media_port=media_port(),
        remote=target,
        calls=calls,
        rate=rate,
        limit=max(100, int(rate * (hold + 2) * 2)),
        inf_rows=rows,
        timeout=seconds + hold + 30,
        trace_messages=False,
        trace_rtt=True,
        extra=["-d", str(round(hold * 1000)), "-max_recv_loops", "10000"],
        workdir=workdir,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    capture = peak = None
    if service is not None:
        capture = Capture(service.sip_port, workdir / "sip.pcap")
        peak = PeakCalls(service)
    pid = service.process.pid if service is not None else None
    waited = run_queue_wait(pid) if pid is not None else 0.0
    reactor_before = service.reactor_cpu_seconds() if service is not None else 0.0
    before = cpu()
    started = time.monotonic()
    try:
        result = sipp()
    finally:
        wall = time.monotonic() - started
        used = cpu() - before
        reactor_used = (service.reactor_cpu_seconds() - reactor_before) if service else 0.0
        if pid is not None:
            waited = run_queue_wait(pid) - waited
        peak_calls = peak.stop() if peak is not None else None
        if capture is not None:
            capture.stop()
    delays: list[float] = []
    if service is not None:
        delays = [1000 * d for d in added_delays(workdir / "sip.pcap", service.sip_port)]
    rtts = result.rtt_ms
    missing = max(0, calls - result.successful - result.failed)
    return Step(
        who=who,
        rate=rate,
        calls=calls,
        ok=result.successful,
        failed=result.failed + missing,
        seconds=max(seconds, calls / rate),
        setup_p50_ms=statistics.median(rtts) if rtts else float("nan"),
        setup_p99_ms=quantile(rtts, 0.99),
        delays_ms=tuple(delays),
        peak_calls=peak_calls,
        cpu_percent=100.0 * used / wall if wall else None,
        cpu_us_per_call=1e6 * max(0.0, used - idle * wall) / max(1, result.successful),
        reactor_percent=100.0 * reactor_used / wall if service is not None and wall else None,
        waited_ms=1000 * waited if pid is not None else None,
        reason=_first_error(result.errors) if result.failed or missing else "",
    )


def best(steps: Sequence[Step]) -> Step | None:
    held = [s for s in steps if s.held]
    return max(held, key=lambda s: s.rate) if held else None


# --- the set-up --------------------------------------------------------------------------------


def generated_config(users: int, workdir: Path) -> Path:
    """The demo config plus ``users`` callers (4000+i, desk) and callees (5000+i, desk and
    softphone)."""
    blocks = [DEFAULT_CONFIG.read_text(), "\n# --- synthetic users added by b2bua_load\n"]
    for i in range(users):
        caller, callee = str(4000 + i), str(5000 + i)
        blocks.append(
            f'\n[[users]]\nextension = "{caller}"\nname = "Caller {caller}"\nlanguage = "sv"\n'
            f'pin = "1234"\n[[users.devices]]\nid = "{caller}-desk"\nkind = "desk"\n'
            f'username = "{caller}"\npassword = "load-{caller}"\n'
            f'\n[[users]]\nextension = "{callee}"\nname = "Callee {callee}"\nlanguage = "sv"\n'
            f'pin = "1234"\n[[users.devices]]\nid = "{callee}-desk"\nkind = "desk"\n'
            f'username = "{callee}"\npassword = "load-{callee}"\n'
            f'[[users.devices]]\nid = "{callee}-soft"\nkind = "softphone"\n'
            f'username = "{callee}-soft"\npassword = "load-{callee}-soft"\n'
        )
    path = workdir / "ivr-b2bua-load.toml"
    path.write_text("".join(blocks))
    return path


def _auth(username: str, password: str) -> str:
    return f"[authentication username={username} password={password}]"


def caller_rows(users: int, domain: str) -> list[list[str]]:
    """SIPp CSV rows: caller device, its digest keyword, domain, callee extension."""
    return [
        [str(4000 + i), _auth(str(4000 + i), f"load-{4000 + i}"), domain, str(5000 + i)]
        for i in range(users)
    ]


def register(
    service: RunningService, rows: list[list[str]], contact_port: int, workdir: Path
) -> None:
    result = Sipp(
        scenario="b2b_register.xml",
        media_port=media_port(),
        remote=(service.host, service.sip_port),
        calls=len(rows),
        rate=200,
        inf_rows=rows,
        keys={"contact_port": str(contact_port)},
        timeout=30,
        trace_messages=False,
        workdir=workdir,
    )()
    if result.successful != len(rows):
        raise RuntimeError(f"registering {len(rows)} devices failed:\n{result.explain()}")


def uas(scenario: str, workdir: Path, budget: float) -> tuple[SippProcess, int]:
    port = free_port()
    process = Sipp(
        scenario=scenario,
        local_port=port,
        media_port=media_port(),
        calls=10_000_000,
        timeout=budget,
        trace_messages=False,
        extra=["-max_recv_loops", "10000"],
        workdir=workdir,
    ).start()
    time.sleep(0.3)
    return process, port


class Profiler:
    """``py-spy record`` (raw collapsed stacks) attached to the server, stopped by SIGINT."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        cmd = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--nonblocking"]
        cmd += ["--rate", "200", "--output", str(out)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def report(self, n: int = 12) -> list[str]:
        """Top self-time frames, then the inclusive share of each B2BUA-module function."""
        if not self.out.exists():
            return ["profile: py-spy wrote nothing"]
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in self.out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = stack.split(";")
            own[frames[-1]] += samples
            for frame in set(frames):
                if any(name in frame for name in B2BUA_FILES):
                    inclusive[frame] += samples
        total = total or 1
        lines = ["profile (server, self time):"]
        lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(n)]
        lines.append("profile (server, inclusive, B2BUA modules):")
        lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in inclusive.most_common(n)]
        return lines


# --- main ------------------------------------------------------------------------------------


def _rates(parser: argparse.ArgumentParser, name: str, text: str) -> list[float]:
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        parser.error(f"{name}: comma-separated numbers, e.g. 100,200,400")
    if not rates or not all(0 < r <= 5000 for r in rates) or len(rates) > 20:
        parser.error(f"{name}: 1 to 20 rates, each in (0, 5000] calls/s")
    return rates


def _bounded(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    rates = _rates(parser, "--rates", args.rates)
    reference = _rates(parser, "--reference-rates", args.reference_rates)
    if not 0 < args.seconds <= 60:
        parser.error("--seconds: in (0, 60]")
    if not 0 <= args.hold <= 30:
        parser.error("--hold: in [0, 30] seconds")
    if not 1 <= args.users <= 1000:
        parser.error("--users: 1 to 1000")
    return rates, reference


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.b2bua_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rates",
        default="100,200,300,400,500,600,800",
        help="call setups/s per step, comma-separated (default %(default)s)",
    )
    parser.add_argument(
        "--reference-rates",
        default="400,800,1600,2400,3200,4000,5000",
        help="call setups/s per step for the SIPp-to-SIPp ceiling (default %(default)s)",
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="length of each step (default %(default)s)"
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=1.0,
        help="seconds each answered call lasts before the caller's BYE (default %(default)s)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=20,
        help="synthetic caller/callee pairs in the generated config (default %(default)s)",
    )
    parser.add_argument(
        "--full-ramp", action="store_true", help="run every rate, even after one not held"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the SIPp-to-SIPp ceiling")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the server with py-spy during the ivr ramp; write DIR/server.raw",
    )
    args = parser.parse_args(argv)
    rates, reference_rates = _bounded(parser, args)
    steps_budget = sum(args.seconds + args.hold + 35 for _ in rates) + 60

    print(
        f"b2bua_load: {args.users} caller/callee pairs, {args.seconds:g} s per step, "
        f"hold {args.hold:g} s; each call forks to the callee's desk (answers at once) "
        "and softphone (rings, gets CANCEL)",
        flush=True,
    )
    ours: list[Step] = []
    theirs: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="bench-b2bua-") as tmp:
        work = Path(tmp)
        config = generated_config(args.users, work)
        service = start_service(work, "--log-level", "warn", config=config)
        devices: list[SippProcess] = []
        profiler = None
        try:
            desk, desk_port = uas("b2bload_desk.xml", work / "desk", steps_budget)
            soft, soft_port = uas("b2bload_soft.xml", work / "soft", steps_budget)
            devices += [desk, soft]
            domain = "ivr.local"
            callees = [str(5000 + i) for i in range(args.users)]
            register(
                service,
                [[c, _auth(c, f"load-{c}"), domain] for c in callees],
                desk_port,
                work / "reg-desk",
            )
            soft_rows = [
                [f"{c}-soft", _auth(f"{c}-soft", f"load-{c}-soft"), domain] for c in callees
            ]
            register(service, soft_rows, soft_port, work / "reg-soft")
            rows = caller_rows(args.users, domain)
            idle = idle_cpu(service.cpu_seconds)
            print(f"ivr idle: {100 * idle:.1f}% of a core (left out of µs/call)", flush=True)
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                profiler = Profiler(service.process.pid, args.profile / "server.raw")
            for i, rate in enumerate(rates):
                step = run_step(
                    "ivr",
                    "b2bload_call.xml",
                    (service.host, service.sip_port),
                    rows,
                    rate,
                    args.seconds,
                    args.hold,
                    work / f"ivr-{i}",
                    cpu=service.cpu_seconds,
                    service=service,
                    idle=idle,
                )
                print(step.line(), flush=True)
                ours.append(step)
                if not step.held and not args.full_ramp:
                    break
        finally:
            if profiler is not None:
                profiler.stop()
            for device in devices:
                device.stop()
                device.wait(grace=5)
            code = service.stop()
        if code != 0:
            print(f"ivr serve exited {code}:\n{service.log()[-3000:]}", file=sys.stderr)
            return 1
        if "Traceback" in service.log():
            print(f"ivr serve logged a traceback:\n{service.log()[-3000:]}", file=sys.stderr)
            return 1

        if not args.no_reference:
            budget = sum(args.seconds + args.hold + 35 for _ in reference_rates) + 60
            reference, port = uas("b2bload_desk.xml", work / "reference", budget)
            pid = reference.proc.pid
            try:
                for i, rate in enumerate(reference_rates):
                    step = run_step(
                        "sipp",
                        "b2bload_direct.xml",
                        ("127.0.0.1", port),
                        caller_rows(args.users, "ivr.local"),
                        rate,
                        args.seconds,
                        args.hold,
                        work / f"sipp-{i}",
                        cpu=lambda: process_cpu(pid),
                    )
                    print(step.line(), flush=True)
                    theirs.append(step)
                    if not step.held and not args.full_ramp:
                        break
            finally:
                reference.stop()
                reference.wait(grace=5)

    print("--")
    our_best, their_best = best(ours), best(theirs)
    if our_best is None:
        print("ivr  highest rate held: none (< 0.1 % failures, setup p99 <= 100 ms)")
    else:
        print(
            f"ivr  highest rate held: {our_best.rate:.0f} forked call setups/s "
            f"(added delay p50 {our_best.delay_p50_ms:.2f} ms, p99 {our_best.delay_p99_ms:.2f} "
            f"ms; setup p99 {our_best.setup_p99_ms:.0f} ms; simultaneous calls peak "
            f"{our_best.peak_calls}; server CPU {our_best.cpu_percent:.1f}% = "
            f"{our_best.cpu_us_per_call:.0f} µs/call, reactor thread "
            f"{our_best.reactor_percent or 0:.1f}%)"
        )
        half = [s for s in ours if s.held and s.rate <= our_best.rate / 2]
        if half:
            at = max(half, key=lambda s: s.rate)
            verdict = "met" if at.delay_p99_ms < AIM_P99_DELAY_MS else "NOT met"
            print(
                f"ivr  at {at.rate:.0f}/s (<= half of that): added delay p99 "
                f"{at.delay_p99_ms:.2f} ms (aim < {AIM_P99_DELAY_MS:.0f} ms: {verdict})"
            )
    if not args.no_reference:
        held = "none" if their_best is None else f"{their_best.rate:.0f} call setups/s"
        print(f"sipp highest rate held: {held} (SIPp caller straight to a SIPp UAS)")
        if our_best is not None and their_best is not None:
            print(f"ratio ivr/sipp: {our_best.rate / their_best.rate:.2f}")
    if profiler is not None:
        print("\n".join(profiler.report()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
