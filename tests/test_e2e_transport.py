"""End to end: the UDP and TCP edges of `ivr serve` (framing, keep-alive, limits, timeouts)."""

from __future__ import annotations

import contextlib
import errno
import re
import secrets
import time
from pathlib import Path

import pytest
from conftest import StartIvr
from sip_client import Reply, TcpClient, UdpClient, new_branch, options

from ivr.testing.service import DEFAULT_CONFIG, RunningService

pytestmark = pytest.mark.e2e

WAIT = 2.0  # bounded wait for an answer that must come
QUIET = 0.5  # how long an answer that must NOT come is watched for
IPV4_UDP_MAX = 65507  # the largest UDP payload IPv4 can carry


def config_with(tmp_path: Path, **sip: str) -> Path:
    """A copy of the demo config with ``[sip]`` keys replaced (values as TOML text)."""
    text = DEFAULT_CONFIG.read_text()
    for key, value in sip.items():
        text, count = re.subn(rf"(?m)^{key}[ \t]*=[^\n#]*", f"{key} = {value} ", text)
        assert count == 1, f"{key} not found once in {DEFAULT_CONFIG}"
    path = tmp_path / "ivr.toml"
    path.write_text(text)
    return path


@pytest.fixture
def custom_service(
    tmp_path: Path, request: pytest.FixtureRequest, start_ivr: StartIvr
) -> RunningService:
    """A service whose ``[sip]`` settings are the (indirect) parameter, e.g.
    ``{"tcp_idle_timeout": "1.0"}``."""
    settings: dict[str, str] = request.param
    return start_ivr(config=config_with(tmp_path, **settings))


def server_of(service: RunningService) -> tuple[str, int]:
    return service.host, service.sip_port


def statuses(replies: list[Reply]) -> list[int | None]:
    return [r.status for r in replies]


def padded(message: bytes, size: int) -> bytes:
    """``message`` grown to exactly ``size`` octets by an extension header."""
    filler = size - len(message) - len(b"X-Padding: \r\n")
    assert filler > 0
    return message.replace(
        b"Content-Length:", b"X-Padding: " + b"p" * filler + b"\r\nContent-Length:", 1
    )


def assert_healthy(service: RunningService) -> None:
    """Running, answering OPTIONS over UDP and TCP, and no traceback in its log."""
    assert service.process.poll() is None, f"ivr serve died:\n{service.log()}"
    server = server_of(service)
    with UdpClient(service.host) as udp:
        udp.send(options(*server, local=udp.local), server)
        assert statuses(udp.collect(WAIT, until_final=True)) == [200]
    with TcpClient(server) as tcp:
        tcp.send(options(*server, local=tcp.local, transport="TCP"))
        assert statuses(tcp.collect(WAIT, until_final=True)) == [200]
    log = service.log()
    assert "Traceback" not in log and "Unhandled" not in log, log


# -- TCP -----------------------------------------------------------------------------


def test_tcp_two_messages_in_one_segment_get_two_answers(service: RunningService) -> None:
    with TcpClient(server_of(service)) as tcp:
        first = options(*server_of(service), local=tcp.local, transport="TCP", call_id="one")
        second = options(*server_of(service), local=tcp.local, transport="TCP", call_id="two")
        tcp.send(first + second)
        replies = tcp.collect(WAIT, until_final=True)
        replies += tcp.collect(WAIT, until_final=True)
    assert statuses(replies) == [200, 200]
    assert [r.header("call-id") for r in replies] == ["one", "two"]


def test_tcp_message_split_byte_by_byte_is_reassembled(service: RunningService) -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    with TcpClient(server_of(service)) as tcp:
        message = options(*server_of(service), local=tcp.local, transport="TCP")
        message = message.replace(
            b"Content-Length: 0\r\n",
            b"Content-Type: application/sdp\r\nContent-Length: %d\r\n" % len(body),
        )
        message += body
        for octet in message[:-1]:
            tcp.send(bytes([octet]))
        assert tcp.collect(QUIET) == [], "answered before the body was complete"
        tcp.send(message[-1:])
        replies = tcp.collect(WAIT, until_final=True)
    assert statuses(replies) == [200]


def test_tcp_crlfcrlf_keepalive_is_answered_with_crlf(service: RunningService) -> None:
    server = server_of(service)
    with TcpClient(server) as tcp:
        tcp.send(b"\r\n\r\n")
        assert tcp.read_until(b"\r\n", WAIT) == b"\r\n"
        # Between messages too, and the connection still carries SIP afterwards.
        tcp.send(options(*server, local=tcp.local, transport="TCP") + b"\r\n\r\n")
        replies = tcp.collect(WAIT, until_final=True)
        assert statuses(replies) == [200]
        assert tcp.read_until(b"\r\n", WAIT) == b"\r\n"
        assert tcp.read_raw(QUIET) == b"", "one ping, one pong"
        tcp.send(options(*server, local=tcp.local, transport="TCP"))
        assert statuses(tcp.collect(WAIT, until_final=True)) == [200]
        assert not tcp.eof


@pytest.mark.parametrize("shape", ["declared-length", "endless-header"])
def test_tcp_oversized_message_gets_513_or_close(service: RunningService, shape: str) -> None:
    """Over ``sip.max_message_size`` (65535): 513 when the header block was read, and
    the connection closes either way."""
    server = server_of(service)
    with TcpClient(server) as tcp:
        message = options(*server, local=tcp.local, transport="TCP")
        if shape == "declared-length":
            data = message.replace(b"Content-Length: 0", b"Content-Length: 100000")
        else:
            data = padded(message, 70_000)[:-4]  # no end of the header block in sight
        # The server may close while we are still sending.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            tcp.send(data)
        replies = tcp.collect(WAIT)
        closed = tcp.closed_by_peer(WAIT)
    assert closed, "an unframeable stream must be closed"
    assert set(statuses(replies)) <= {513}, [str(r) for r in replies]
    if shape == "declared-length":
        assert statuses(replies) == [513]
    assert_healthy(service)


def test_tcp_message_without_content_length_gets_400_or_close(service: RunningService) -> None:
    server = server_of(service)
    with TcpClient(server) as tcp:
        message = options(*server, local=tcp.local, transport="TCP")
        tcp.send(message.replace(b"Content-Length: 0\r\n", b""))
        replies = tcp.collect(WAIT, until_final=True)
        closed = tcp.closed_by_peer(WAIT)
    assert set(statuses(replies)) <= {400}, [str(r) for r in replies]
    assert replies or closed, "neither 400 nor a close"
    assert_healthy(service)


@pytest.mark.parametrize("custom_service", [{"tcp_idle_timeout": "1.0"}], indirect=True)
def test_tcp_idle_connection_is_closed(custom_service: RunningService) -> None:
    server = server_of(custom_service)
    with TcpClient(server) as tcp:
        # Traffic keeps it open past the timeout: three pings 0.6 s apart (1.8 s).
        for _ in range(3):
            assert not tcp.closed_by_peer(0.6), "closed although it was in use"
            tcp.send(b"\r\n\r\n")
            assert tcp.read_until(b"\r\n", WAIT) == b"\r\n"
        started = time.monotonic()
        assert tcp.closed_by_peer(5.0), "idle connection still open after 5 s"
        idle = time.monotonic() - started
    assert 0.8 <= idle <= 3.0, f"closed after {idle:.2f} s idle, configured 1.0 s"
    assert_healthy(custom_service)


# -- UDP -----------------------------------------------------------------------------


def test_udp_70kB_datagram_does_not_crash_the_service(service: RunningService) -> None:
    """70 kB cannot leave an IPv4 socket (EMSGSIZE), so the largest datagram IPv4 carries
    goes instead; whatever the answer, the service lives on (its content is checked by
    ``test_udp_datagram_is_read_whole``)."""
    server = server_of(service)
    with UdpClient(service.host) as udp:
        message = options(*server, local=udp.local)
        with pytest.raises(OSError) as refused:
            udp.send(padded(message, 70_000), server)
        assert refused.value.errno == errno.EMSGSIZE
        udp.send(padded(message, IPV4_UDP_MAX), server)
        replies = udp.collect(WAIT, until_final=True)
        replies += udp.collect(QUIET)
    assert len(replies) <= 1 and all(r.status for r in replies), [str(r)[:200] for r in replies]
    assert_healthy(service)


@pytest.mark.parametrize("size", [8192, 8193, 20_000, IPV4_UDP_MAX])
def test_udp_datagram_is_read_whole(service: RunningService, size: int) -> None:
    """A datagram is one message however large (up to ``sip.max_message_size``, 65535):
    none may be cut short on reading."""
    server = server_of(service)
    with UdpClient(service.host) as udp:
        udp.send(padded(options(*server, local=udp.local), size), server)
        replies = udp.collect(WAIT, until_final=True)
    assert statuses(replies) == [200], [r.start_line for r in replies]


@pytest.mark.parametrize("custom_service", [{"max_message_size": "4096"}], indirect=True)
def test_udp_datagram_over_max_message_size_gets_513(custom_service: RunningService) -> None:
    server = server_of(custom_service)
    with UdpClient(custom_service.host) as udp:
        udp.send(padded(options(*server, local=udp.local), 6000), server)
        replies = udp.collect(WAIT, until_final=True)
    assert statuses(replies) == [513], [r.start_line for r in replies]
    assert_healthy(custom_service)


GARBAGE = [
    b"",
    b"\r\n",
    b"\x00" * 64,
    bytes(range(256)) * 4,
    b"\xff\xfe" + "INVITE ☃ SIP/2.0\r\n\r\n".encode(),
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"SIP/2.0 200\r\n\r\n",
    b"INVITE sip:x SIP/2.0\r\nVia: \r\nVia: ,,,\r\n\r\n",
    b"OPTIONS sip:x SIP/2.0\r\n" + b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" * 1000 + b"\r\n",
    secrets.token_bytes(1400),
]


def test_udp_garbage_gets_no_crash(service: RunningService) -> None:
    server = server_of(service)
    with UdpClient(service.host) as udp:
        for datagram in GARBAGE:
            udp.send(datagram, server)
        replies = udp.collect(QUIET)
    # Nothing here is a legible request; at most a 4xx/5xx for what can be salvaged.
    assert all((r.status or 0) >= 400 for r in replies), [r.start_line for r in replies]
    assert_healthy(service)


def test_udp_options_retransmission_is_answered_identically(service: RunningService) -> None:
    """Same branch again: the transaction re-sends its response (same To-tag, same octets)."""
    server = server_of(service)
    with UdpClient(service.host) as udp:
        message = options(*server, local=udp.local, branch=new_branch())
        udp.send(message, server)
        first = udp.collect(WAIT, until_final=True)
        udp.send(message, server)
        second = udp.collect(WAIT, until_final=True)
        assert udp.collect(QUIET) == [], "a retransmission got more than one answer"
        other = options(*server, local=udp.local, branch=new_branch())
        udp.send(other, server)
        fresh = udp.collect(WAIT, until_final=True)
    assert statuses(first) == statuses(second) == [200]
    assert second[0].raw == first[0].raw
    # A new transaction is answered anew: a different To-tag shows it was not cached.
    assert statuses(fresh) == [200]
    assert fresh[0].header("to") != first[0].header("to")
