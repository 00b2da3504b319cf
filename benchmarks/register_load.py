"""Authenticated REGISTER load: `ivr serve` against SIPp's own UAS, in one run.

SIPp registers demo devices at rising rates (each registration is REGISTER →
401 challenge → REGISTER with digest → 200) for a bounded time per step. For each
step it prints the rate asked and achieved, failures, p50/p99 registration time (SIPp
measures it in whole milliseconds) and the server's CPU (share of one core over the step,
CPU per registration, and how long it waited for a CPU: on a shared machine, starvation);
then the highest rate held (< 0.1 % failures and p99 under 100 ms, so not leaning on
retransmissions), for ivr and for a SIPp server answering the same flow, and their ratio.

    python -m benchmarks.register_load --rates 500,1000,2000,3000 --seconds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ivr.testing.service import DEFAULT_CONFIG, start_service
from ivr.testing.sipp import Sipp, free_port

DOMAIN = "ivr.local"
MAX_FAILURE_RATIO = 0.001
MAX_P99_MS = 100.0  # well under T1 (500 ms): a step held without leaning on retransmissions


@dataclass(frozen=True, slots=True)
class Step:
    rate: float
    calls: int
    ok: int
    failed: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_percent: float | None
    cpu_us_each: float | None
    waited_ms: float | None = None

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
            and self.p99_ms <= MAX_P99_MS
        )

    def line(self, who: str) -> str:
        cpu = "-" if self.cpu_percent is None else f"{self.cpu_percent:5.1f}%"
        if self.cpu_us_each is not None:
            cpu += f" ({self.cpu_us_each:.0f} µs/registration)"
        if self.waited_ms is not None:
            cpu += f", waited {self.waited_ms:.0f} ms for a CPU"
        return (
            f"{who:5} rate {self.rate:7.0f}/s  achieved {self.achieved:7.1f}/s  "
            f"ok {self.ok:6}  failed {self.failed:5}  p50 {self.p50_ms:7.2f} ms  "
            f"p99 {self.p99_ms:7.2f} ms  cpu {cpu}  {'held' if self.held else 'NOT held'}"
        )


def device_rows(config: Path) -> list[list[str]]:
    """[user, auth keyword, domain] for every device of the demo config."""
    from ivr.config import load_config

    cfg = load_config(config)
    rows = []
    for user in cfg.users:
        for device in user.devices:
            if not device.is_sip:
                continue
            keyword = f"[authentication username={device.username} password={device.password}]"
            rows.append([device.username, keyword, cfg.sip.domain])
    return rows


def run_queue_wait(pid: int) -> float:
    """Seconds the process's main thread spent runnable but waiting for a CPU (schedstat):
    on a shared machine this tells starvation apart from stalls the server caused itself."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run_step(
    target: tuple[str, int],
    rate: float,
    seconds: float,
    rows: list[list[str]],
    transport: str,
    cpu: Callable[[], float] | None,
    waited: Callable[[], float] | None = None,
) -> Step:
    calls = max(1, int(rate * seconds))
    sipp = Sipp(
        scenario="register_auth.xml",
        remote=target,
        transport=transport,
        calls=calls,
        rate=rate,
        rate_period_ms=1000,
        limit=max(50, int(rate)),
        inf_rows=rows,
        timeout=seconds + 15,
        trace_messages=False,
        trace_rtt=True,
        extra=["-max_socket", "2048"] if transport == "tcp" else [],
    )
    cpu_before = cpu() if cpu else None
    waited_before = waited() if waited else None
    started = time.monotonic()
    result = sipp()
    wall = time.monotonic() - started
    send_window = max(seconds, calls / rate)
    cpu_percent = cpu_us = None
    if cpu is not None and cpu_before is not None:
        used = cpu() - cpu_before
        cpu_percent = 100.0 * used / wall
        cpu_us = 1e6 * used / max(1, result.successful)
    waited_ms = None
    if waited is not None and waited_before is not None:
        waited_ms = 1000 * (waited() - waited_before)
    rtts = result.rtt_ms
    return Step(
        rate=rate,
        calls=calls,
        ok=result.successful,
        failed=result.failed + max(0, calls - result.successful - result.failed),
        seconds=send_window,
        p50_ms=statistics.median(rtts) if rtts else float("nan"),
        p99_ms=percentile(rtts, 0.99),
        cpu_percent=cpu_percent,
        cpu_us_each=cpu_us,
        waited_ms=waited_ms,
    )


def ramp(
    who: str,
    target: tuple[str, int],
    rates: Sequence[float],
    seconds: float,
    rows: list[list[str]],
    transport: str,
    cpu: Callable[[], float] | None,
    waited: Callable[[], float] | None = None,
) -> list[Step]:
    steps = []
    for rate in rates:
        step = run_step(target, rate, seconds, rows, transport, cpu, waited)
        print(step.line(who), flush=True)
        steps.append(step)
        if not step.held:
            break
    return steps


def best(steps: Sequence[Step]) -> Step | None:
    held = [s for s in steps if s.held]
    return max(held, key=lambda s: s.rate) if held else None


def reference_server(workdir: Path, seconds: float) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port("127.0.0.1")
    scenario = Path(__file__).resolve().parents[1] / "ivr/testing/scenarios/register_uas.xml"
    cmd = ["sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-bind_local"]
    cmd += ["-mp", str(free_port("127.0.0.1")), "-nostdin", "-timeout", f"{seconds:g}s"]
    proc = subprocess.Popen(
        cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None
    )
    time.sleep(0.5)
    return proc, port


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="250,500,1000,1500,2000,2500,3000,4000")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each step")
    parser.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--no-reference", action="store_true", help="skip SIPp's own server")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r]
    rows = device_rows(args.config)
    print(f"register_load: {len(rows)} devices, {args.transport}, {args.seconds:g} s per step")

    with tempfile.TemporaryDirectory(prefix="bench-reg-") as tmp:
        service = start_service(Path(tmp), "--log-level", "warn", config=args.config)
        try:
            target = (service.host, service.sip_port)
            pid = service.process.pid
            ours = ramp(
                "ivr",
                target,
                rates,
                args.seconds,
                rows,
                args.transport,
                service.cpu_seconds,
                lambda: run_queue_wait(pid),
            )
        finally:
            code = service.stop()
        if code != 0:
            print(f"ivr serve exited {code}:\n{service.log()[-3000:]}", file=sys.stderr)
            return 1

        theirs: list[Step] = []
        if not args.no_reference:
            budget = (args.seconds + 20) * len(rates) + 30
            proc, port = reference_server(Path(tmp), budget)
            try:
                theirs = ramp(
                    "sipp", ("127.0.0.1", port), rates, args.seconds, rows, args.transport, None
                )
            finally:
                proc.kill()
                proc.wait()

    our_best, their_best = best(ours), best(theirs)
    print("--")
    if our_best is None:
        print("ivr: no step held with < 0.1 % failures")
    else:
        print(
            f"ivr  highest rate held: {our_best.rate:.0f} authenticated REGISTERs/s "
            f"(p50 {our_best.p50_ms:.2f} ms, p99 {our_best.p99_ms:.2f} ms, "
            f"server CPU {our_best.cpu_percent:.1f}%)"
        )
    if theirs:
        held = "none" if their_best is None else f"{their_best.rate:.0f}/s"
        print(f"sipp highest rate held: {held}")
        if our_best is not None and their_best is not None:
            print(f"ratio ivr/sipp: {our_best.rate / their_best.rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
