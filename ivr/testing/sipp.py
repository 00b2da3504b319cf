"""A small launcher for the real SIPp, close to pysipp's interface.

pysipp 0.1.0 cannot be imported beside pytest 7+ (it passes ``implprefix`` to
pluggy 1.x), so tests and benchmarks drive SIPp through this: build an agent,
call it, read the parsed statistics. Every run is bounded by ``-m``/``-timeout``.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


class SippMissing(RuntimeError):
    """SIPp is not installed (Debian package ``sip-tester``)."""


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise SippMissing("SIPp not found: install the Debian package sip-tester (scripts/peers)")
    return path


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_DGRAM) -> int:
    """A port that is free for both UDP and TCP on ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, kind) as first:
            first.bind((host, 0))
            port = first.getsockname()[1]
            other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
            try:
                with socket.socket(family, other) as second:
                    second.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free UDP+TCP port on {host}")


def free_media_port(host: str = "127.0.0.1") -> int:
    """A port for SIPp's ``-mp`` whose neighbours are free too (SIPp binds mp and mp + 2,
    audio and video, each with its RTCP port above)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        base = free_port(host)
        socks: list[socket.socket] = []
        try:
            for offset in range(4):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind((host, base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise OSError(f"no four free UDP ports in a row on {host}")


@dataclass(frozen=True, slots=True)
class SippResult:
    """What a finished SIPp run left behind."""

    returncode: int
    stats: dict[str, str]
    stdout: str
    stderr: str
    errors: str
    messages: str
    rtt_ms: tuple[float, ...] = ()

    def count(self, column: str) -> int:
        """A cumulative counter from the statistics file, e.g. ``SuccessfulCall(C)``."""
        return int(self.stats.get(column, "0") or 0)

    @property
    def successful(self) -> int:
        return self.count("SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return self.count("FailedCall(C)")

    def explain(self) -> str:
        return (
            f"sipp exit {self.returncode}; ok={self.successful} failed={self.failed}\n"
            f"stderr: {self.stderr[-2000:]}\nerrors: {self.errors[-3000:]}\n"
            f"messages: {self.messages[-4000:]}"
        )


@dataclass(slots=True, kw_only=True)
class Sipp:
    """One SIPp process: a client (``remote`` given) or a server (``scenario='uas'``)."""

    scenario: str | Path
    remote: tuple[str, int] | None = None
    local_host: str = "127.0.0.1"
    local_port: int = 0
    media_port: int = 0
    transport: str = "udp"
    calls: int = 1
    rate: float | None = None
    rate_period_ms: int = 1000
    limit: int | None = None
    keys: Mapping[str, str] = field(default_factory=dict)
    inf: str | Path | None = None
    inf_rows: Sequence[Sequence[str]] | None = None
    timeout: float = 30.0
    trace_messages: bool = True
    trace_rtt: bool = False
    extra: Sequence[str] = ()
    workdir: Path | None = None

    def command(self, workdir: Path) -> list[str]:
        cmd = [sipp_binary()]
        if self.remote is not None:
            host, port = self.remote
            cmd.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        scenario = str(self.scenario)
        if scenario in ("uac", "uas", "regexp", "branchc", "branchs"):
            cmd += ["-sn", scenario]
        else:
            path = Path(scenario)
            if not path.is_absolute() and not path.exists():
                path = SCENARIOS / scenario
            cmd += ["-sf", str(path)]
        local_port = self.local_port or free_port(self.local_host)
        cmd += ["-i", self.local_host, "-p", str(local_port), "-bind_local"]
        cmd += ["-mp", str(self.media_port or free_media_port(self.local_host))]
        cmd += ["-t", {"udp": "u1", "tcp": "t1"}[self.transport]]
        cmd += ["-m", str(self.calls)]
        if self.rate is not None:
            cmd += ["-r", f"{self.rate:g}", "-rp", f"{self.rate_period_ms}ms"]
        if self.limit is not None:
            cmd += ["-l", str(self.limit)]
        for key, value in self.keys.items():
            cmd += ["-key", key, value]
        inf = self.inf
        if self.inf_rows is not None:
            inf = workdir / "injection.csv"
            lines = ["SEQUENTIAL", *(";".join(row) for row in self.inf_rows)]
            inf.write_text("\n".join(lines) + "\n")
        if inf is not None:
            cmd += ["-inf", str(inf)]
        cmd += ["-timeout", f"{self.timeout:g}s", "-timeout_error", "-nostdin"]
        cmd += ["-trace_stat", "-stf", str(workdir / "stats.csv"), "-fd", "1"]
        cmd += ["-trace_err", "-error_file", str(workdir / "errors.log")]
        if self.trace_messages:
            cmd += ["-trace_msg", "-message_file", str(workdir / "messages.log")]
        if self.trace_rtt:
            cmd += ["-trace_rtt", "-rtt_freq", "1"]
        cmd += list(self.extra)
        return cmd

    def start(self) -> SippProcess:
        workdir = self.workdir or Path(tempfile.mkdtemp(prefix="sipp-"))
        workdir.mkdir(parents=True, exist_ok=True)
        cmd = self.command(workdir)
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",  # stray RTP on the signalling port ends up in SIPp's output
            env={**os.environ, "TERM": "dumb"},
        )
        return SippProcess(proc, workdir, cmd, self.timeout)

    def __call__(self) -> SippResult:
        """Run to completion (bounded by ``timeout`` plus a grace period)."""
        return self.start().wait()


class SippProcess:
    """A running SIPp; ``wait()`` collects its result."""

    def __init__(
        self, proc: subprocess.Popen[str], workdir: Path, cmd: list[str], timeout: float
    ) -> None:
        self.proc = proc
        self.workdir = workdir
        self.cmd = cmd
        self.timeout = timeout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # SIPp: quit after dumping statistics

    def wait(self, grace: float = 10.0) -> SippResult:
        try:
            stdout, stderr = self.proc.communicate(timeout=self.timeout + grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            stdout, stderr = self.proc.communicate()
        return SippResult(
            returncode=self.proc.returncode,
            stats=_last_stats_row(self.workdir / "stats.csv"),
            stdout=stdout,
            stderr=stderr,
            errors=_read(self.workdir / "errors.log"),
            messages=_read(self.workdir / "messages.log"),
            rtt_ms=_rtts(self.workdir),
        )


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _last_stats_row(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    rows = [row for row in rows if row]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def _rtts(workdir: Path) -> tuple[float, ...]:
    values: list[float] = []
    for path in workdir.glob("*_rtt.csv"):
        for row in csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"):
            if len(row) >= 2:
                try:
                    values.append(float(row[1]))
                except ValueError:
                    continue
    return tuple(values)
