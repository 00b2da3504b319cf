"""A tiny raw SIP client for tests: send bytes over UDP or TCP, collect replies by a deadline.

Nothing here understands SIP beyond what a test needs to read a reply: the start
line, a header value and Content-Length framing on a stream.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from dataclasses import dataclass

_LENGTH_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*\r?$", re.I | re.M)


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def hostport(host: str, port: int) -> str:
    """``host:port`` with an IPv6 reference in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def new_branch() -> str:
    return "z9hG4bK-t" + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Reply:
    """One SIP message received from the server."""

    raw: bytes

    @property
    def start_line(self) -> str:
        return self.raw.split(b"\r\n", 1)[0].decode("utf-8", "replace")

    @property
    def status(self) -> int | None:
        """The status code of a response; None for anything else."""
        parts = self.start_line.split(" ", 2)
        if len(parts) >= 2 and parts[0] == "SIP/2.0" and parts[1].isdigit():
            return int(parts[1])
        return None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (full name, case-insensitive)."""
        values = self.headers(name)
        return values[0] if values else None

    def headers(self, name: str) -> list[str]:
        head = self.raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        wanted = name.lower()
        found: list[str] = []
        for line in head.split("\r\n")[1:]:
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == wanted:
                found.append(value.strip())
        return found

    def __str__(self) -> str:
        return self.raw.decode("utf-8", "replace")


def options(
    host: str,
    port: int,
    *,
    local: tuple[str, int],
    transport: str = "UDP",
    branch: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
) -> bytes:
    """A well-formed OPTIONS to the server at ``host:port`` from ``local``."""
    branch = branch or new_branch()
    call_id = call_id or secrets.token_hex(10)
    target = hostport(host, port)
    return (
        f"OPTIONS sip:{target} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {hostport(*local)};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{target}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{target}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} OPTIONS\r\n"
        "Accept: application/sdp\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode()


class UdpClient:
    """A UDP socket bound to ``(host, port)``; ``port=0`` picks a free one."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, reuse: bool = False) -> None:
        self.sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
        if reuse:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))

    @property
    def local(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def send(self, data: bytes, server: tuple[str, int]) -> None:
        self.sock.sendto(data, server)

    def collect(self, timeout: float, *, until_final: bool = False) -> list[Reply]:
        """Every datagram that arrives before ``timeout`` seconds pass.

        With ``until_final`` it returns as soon as a final (>= 200) response came.
        """
        replies: list[Reply] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(70000)
            except TimeoutError:
                break
            reply = Reply(data)
            replies.append(reply)
            if until_final and (reply.status or 0) >= 200:
                break
        return replies

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UdpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TcpClient:
    """A TCP connection to the server; replies are framed by Content-Length."""

    def __init__(self, server: tuple[str, int], *, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(server, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.eof = False

    @property
    def local(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        """Half-close: tell the server we send nothing more."""
        self.sock.shutdown(socket.SHUT_WR)

    def _fill(self, deadline: float) -> bool:
        """Read once (bounded by ``deadline``); False on timeout or EOF."""
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _take(self) -> bytes | None:
        """One complete message from the buffer, if there is one (CRLF pongs are skipped)."""
        start = 0
        while start < len(self.buffer) and self.buffer[start] in b"\r\n":
            start += 1
        del self.buffer[:start]
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[: end + 4])
        match = _LENGTH_RE.search(head)
        length = int(match.group(1)) if match else 0
        if len(self.buffer) < end + 4 + length:
            return None
        message = bytes(self.buffer[: end + 4 + length])
        del self.buffer[: end + 4 + length]
        return message

    def read_raw(self, timeout: float) -> bytes:
        """Whatever octets arrive within ``timeout`` (for pongs and odd replies)."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def read_until(self, wanted: bytes, timeout: float) -> bytes:
        """Octets until ``wanted`` has arrived (or the deadline/EOF); consumes them."""
        deadline = time.monotonic() + timeout
        while wanted not in self.buffer and self._fill(deadline):
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def collect(self, timeout: float, *, until_final: bool = False) -> list[Reply]:
        """The SIP messages that arrive before ``timeout`` (or EOF); pongs are skipped."""
        replies: list[Reply] = []
        deadline = time.monotonic() + timeout
        while True:
            while (message := self._take()) is not None:
                reply = Reply(message)
                replies.append(reply)
                if until_final and (reply.status or 0) >= 200:
                    return replies
            if not self._fill(deadline):
                return replies

    def closed_by_peer(self, timeout: float) -> bool:
        """True once the server has closed the connection (EOF) within ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        return self.eof

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TcpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
