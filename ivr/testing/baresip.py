"""A small headless driver for the real baresip softphone (Debian ``baresip-core``).

Each :class:`Baresip` gets its own config directory (``config``, ``accounts``) and
runs ``baresip -f DIR -t MAXSECS -s`` with stdin from /dev/null and its output (SIP
trace included) in ``DIR/baresip.log``. The microphone is a WAV of silence through
``aufile`` (the call would end with the file); what it hears goes to ALSA's ``null``
device and, through the ``sndfile`` filter, to ``DIR/dump-*-dec.wav`` (8 kHz mono for
G.711). It is driven over ``ctrl_tcp``: netstring-framed JSON commands, with responses
and events (``CALL_ESTABLISHED``, ``CALL_CLOSED``, ...) on the same socket. Events sent
before the socket connected (an early ``REGISTER_OK``) are not seen: ask ``reginfo``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.testing.sipp import free_port

MIC_RATE = 8000
MODULE_DIRS = (
    Path("/usr/lib/baresip/modules"),
    Path("/usr/lib/x86_64-linux-gnu/baresip/modules"),
    Path("/usr/local/lib/baresip/modules"),
)


class BaresipError(RuntimeError):
    """baresip did not start, answer or behave as expected."""


def baresip_binary() -> str:
    """The baresip on PATH; raises :class:`BaresipError` when it is missing."""
    path = shutil.which("baresip")
    if path is None:
        raise BaresipError("baresip not found: install the Debian package baresip-core")
    return path


def module_path() -> Path:
    """Where baresip's modules live (it looks only in the working directory otherwise)."""
    for candidate in MODULE_DIRS:
        if (candidate / "g711.so").is_file():
            return candidate
    raise BaresipError(f"no baresip modules (g711.so) in {[str(d) for d in MODULE_DIRS]}")


def write_silence(path: Path, seconds: float, rate: int = MIC_RATE) -> Path:
    """A 16-bit mono WAV of silence (a quiet microphone; the call ends when it ends)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * round(seconds * rate))
    return path


def netstring(payload: bytes) -> bytes:
    """Frame ``payload`` as ctrl_tcp expects: ``LEN:PAYLOAD,``."""
    return str(len(payload)).encode("ascii") + b":" + payload + b","


class NetstringReader:
    """Splits a byte stream into netstring payloads."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while True:
            colon = self._buffer.find(b":")
            if colon < 0:
                break
            head = self._buffer[:colon]
            if not head.isdigit():
                raise BaresipError(f"bad netstring length {head[:20]!r}")
            end = colon + 1 + int(head)
            if len(self._buffer) < end + 1:
                break
            if self._buffer[end : end + 1] != b",":
                raise BaresipError("netstring without its trailing comma")
            out.append(self._buffer[colon + 1 : end])
            self._buffer = self._buffer[end + 1 :]
        return out


@dataclass
class Baresip:
    """One baresip process with one account.

    ``account`` is the account line, e.g.
    ``<sip:1001-soft@ivr.local>;auth_pass=SECRET;outbound="sip:127.0.0.1:5070";regint=0``.
    """

    account: str
    host: str = "127.0.0.1"
    max_seconds: int = 60
    mic_seconds: float = 30.0
    workdir: Path | None = None
    extra_config: Sequence[str] = ()
    sip_trace: bool = True
    binary: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dir = self.workdir or Path(tempfile.mkdtemp(prefix="baresip-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "baresip.log"
        self.sip_port = free_port(self.host)
        self.ctrl_port = free_port(self.host, socket.SOCK_STREAM)
        self.process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader = NetstringReader()
        self._responses: list[dict[str, Any]] = []
        self._token = 0

    # -- configuration -----------------------------------------------------------------

    def config_text(self, mic: Path) -> str:
        """baresip's ``config`` file: loopback only, G.711, no sound card, recording on."""
        lines = [
            "poll_method epoll",
            f"sip_listen {self.host}:{self.sip_port}",
            f"net_interface {self.host}",
            "call_local_timeout 30",
            "call_max_calls 4",
            "audio_buffer 20",
            "audio_player alsa,null",
            f"audio_source aufile,{mic}",
            "audio_alert alsa,null",
            "ausrc_srate 8000",
            "auplay_srate 8000",
            "ausrc_channels 1",
            "auplay_channels 1",
            "rtp_ports 40000-49998",
            "rtcp_mux no",
            "jitter_buffer_delay 1-50",  # frames: room for a late audio thread
            "rtp_timeout 0",
            f"snd_path {self.dir}",
            f"ctrl_tcp_listen {self.host}:{self.ctrl_port}",
            f"module_path {module_path()}",
            "module g711.so",
            "module aufile.so",
            "module alsa.so",
            "module sndfile.so",
            "module_tmp uuid.so",
            "module_tmp account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            *self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> Baresip:
        """Write the config, start baresip and connect to its control socket."""
        mic = write_silence(self.dir / "mic.wav", self.mic_seconds)
        (self.dir / "config").write_text(self.config_text(mic))
        (self.dir / "accounts").write_text(self.account + "\n")
        (self.dir / "contacts").write_text("")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    self.binary or baresip_binary(),
                    "-f",
                    str(self.dir),
                    "-t",
                    str(self.max_seconds),
                    *(["-s"] if self.sip_trace else []),
                ],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise BaresipError(f"baresip exited {self.process.returncode}:\n{self.log()}")
            try:
                self._sock = socket.create_connection((self.host, self.ctrl_port), timeout=0.5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BaresipError(
                        "baresip's ctrl_tcp did not listen:\n" + self.log()
                    ) from None
                time.sleep(0.05)
        return self

    def __enter__(self) -> Baresip:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        """baresip's output so far (with the SIP trace)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- control -----------------------------------------------------------------------

    def _receive(self, deadline: float) -> bool:
        """Read what is available until ``deadline``; False on timeout."""
        if self._sock is None:
            raise BaresipError("not connected")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            return False
        if not data:
            raise BaresipError("baresip closed its control socket:\n" + self.log())
        for payload in self._reader.feed(data):
            message = json.loads(payload)
            if message.get("event"):
                self.events.append(message)
            elif message.get("response"):
                self._responses.append(message)
        return True

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Send one command and wait for its response."""
        if self._sock is None:
            raise BaresipError("not connected")
        self._token += 1
        token = str(self._token)
        body = {"command": command, "params": params, "token": token}
        self._sock.sendall(netstring(json.dumps(body).encode()))
        deadline = time.monotonic() + timeout
        while True:
            for response in self._responses:
                if response.get("token") == token:
                    self._responses.remove(response)
                    return response
            if not self._receive(deadline):
                raise BaresipError(f"no response to {command!r}:\n{self.log()}")

    def wait_event(self, kind: str, timeout: float = 15.0, start: int = 0) -> dict[str, Any]:
        """The first event of type ``kind`` (from index ``start`` of :attr:`events`)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[start:]:
                if event.get("type") == kind:
                    return event
            if not self._receive(deadline):
                seen = [e.get("type") for e in self.events]
                raise BaresipError(f"no {kind} event within {timeout}s (saw {seen}):\n{self.log()}")

    def dial(self, uri: str) -> dict[str, Any]:
        """Start a call to ``uri`` (``#`` written as ``%23``); watch for its events."""
        return self.command("dial", uri)

    # -- results -----------------------------------------------------------------------

    def recordings(self) -> list[Path]:
        """What baresip heard, one ``dump-*-dec.wav`` per call, oldest first."""
        return sorted(self.dir.glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime_ns)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Quit cleanly (the recordings are flushed), else SIGTERM, else SIGKILL."""
        asked = False
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._token += 1
                quit_cmd = {"command": "quit", "params": "", "token": str(self._token)}
                self._sock.sendall(netstring(json.dumps(quit_cmd).encode()))
                asked = True
        process = self.process
        code: int | None = None
        if process is not None:
            try:
                code = process.wait(timeout if asked else 0.01)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGTERM)
                try:
                    code = process.wait(3)
                except subprocess.TimeoutExpired:
                    process.kill()
                    code = process.wait()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        return code
