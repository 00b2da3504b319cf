"""Start and stop a real `ivr serve` child process on loopback (tests and benchmarks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "config" / "ivr.toml"


_SIPP_COMPATIBLE = ["--auth-algorithms", "MD5,SHA-256", "--auth-uri-check", "server"]


class ServiceError(RuntimeError):
    """The service did not start or stop as it should."""


@dataclass
class RunningService:
    """An `ivr serve` child process and where it listens."""

    process: subprocess.Popen[str]
    host: str
    sip_port: int
    http_port: int
    db: Path
    output: list[str] = field(default_factory=list)

    def get_json(self, path: str) -> tuple[int, object]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def log(self) -> str:
        return "".join(self.output)

    def cpu_seconds(self) -> float:
        """User + system CPU time the service has used so far (every thread)."""
        return _cpu_seconds(Path(f"/proc/{self.process.pid}/stat"))

    def reactor_cpu_seconds(self) -> float:
        """The same for the reactor thread alone (the main thread: its id is the pid)."""
        pid = self.process.pid
        return _cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise ServiceError("ivr serve did not stop on SIGTERM:\n" + self.log()) from None
        return self.process.returncode


def start_service(
    workdir: Path,
    *extra: str,
    host: str = "127.0.0.1",
    config: Path = DEFAULT_CONFIG,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    sipp_compatible: bool = True,
) -> RunningService:
    """Run `ivr serve` on free ports with its own database; wait until it is ready.

    ``sipp_compatible`` puts MD5 first in digest challenges (SIPp 3.6 answers only the
    first challenge and knows no SHA-256; both are still offered) and accepts a digest
    uri naming the server (SIPp digests ``sip:host:port``, not the Request-URI).
    """
    db = workdir / "ivr.sqlite3"
    cmd = [
        sys.executable,
        "-m",
        "ivr.cli",
        "--config",
        str(config),
        "serve",
        "--sip-host",
        host,
        "--sip-port",
        "0",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        "0",
        "--db",
        str(db),
        *(_SIPP_COMPATIBLE if sipp_compatible else []),
        *extra,
    ]
    process = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    output: list[str] = []
    ready = threading.Event()
    found: dict[str, str] = {}

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.startswith("READY "):
                found.update(part.split("=", 1) for part in line.split()[1:])
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout) or "sip" not in found:
        process.kill()
        process.wait()
        raise ServiceError("ivr serve did not start:\n" + "".join(output))
    sip_port = int(found["sip"].rpartition(":")[2])
    http_port = int(found["http"].rpartition(":")[2])
    return RunningService(process, host, sip_port, http_port, db, output)


def _cpu_seconds(stat: Path) -> float:
    """utime + stime of a /proc ``stat`` file, in seconds."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
