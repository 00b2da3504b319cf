"""Outgoing SIP over TCP: the transport connects on demand, queues in order, reuses the
connection, and a connection that cannot be made fails the core's transactions at once.

Real sockets on loopback (a Twisted listener in the test's reactor) for the wire; a
MemoryReactorClock where the connect must be watched step by step.
"""

from __future__ import annotations

import random
import socket
import time

import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.error import ConnectionRefusedError, TimeoutError
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from ivr.sip.build import make_response
from ivr.sip.core import Peer, ServerRequest, SipCore, Transmit
from ivr.sip.framing import StreamFramer
from ivr.sip.ids import Ids
from ivr.sip.message import Request, Response, parse_message
from ivr.sip.transport import TCP_CONNECT_TIMEOUT, TCP_QUEUE_BYTES, Outbound, SipRuntime

HOST = "127.0.0.1"


class Silent:
    """A transaction user that takes nothing (these tests send, they are not asked)."""

    def handle_request(self, request: ServerRequest) -> None:
        request.respond(200)

    def handle_ack(self, request: Request, peer: Peer) -> None: ...

    def handle_cancel(self, cancelled: ServerRequest) -> None: ...

    def handle_ack_timeout(self, response: Response) -> None: ...


def make_runtime(react: object) -> SipRuntime:
    core = SipCore(Silent(), host=HOST, port=5099, ids=Ids(random.Random(3)))  # start() sets it
    return SipRuntime(react, core, host=HOST, port=0, transports=("udp", "tcp"))


def request(runtime: SipRuntime, method: str, peer: Peer, cseq: int) -> Request:
    req = Request(method, f"sip:+46701234567@{peer.host}:{peer.port};user=phone")
    req.headers.add("Via", runtime.core.via_value(peer))
    for name, value in (
        ("From", f"<sip:ivr@{HOST}>;tag=a"),
        ("To", "<sip:+46701234567@trunk.invalid>"),
        ("Call-ID", f"call-{method}-{cseq}"),
        ("CSeq", f"{cseq} {method}"),
        ("Max-Forwards", "70"),
    ):
        req.headers.add(name, value)
    return req


class Provider(protocol.Protocol):
    """The far end: records each framed request, answers 200, or resets the connection."""

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.framer = StreamFramer(max_size=65535)

    def dataReceived(self, data: bytes) -> None:
        for frame in self.framer.feed(data):
            assert isinstance(frame, bytes)
            message = parse_message(frame, stream=True)
            assert isinstance(message, Request)
            self.factory.requests.append(message)
            if self.factory.reset:
                self.transport.abortConnection()
                return
            self.transport.write(make_response(message, 200, to_tag="p1").to_bytes())


class ProviderFactory(protocol.ServerFactory):
    protocol = Provider

    def __init__(self, reset: bool = False) -> None:
        self.connections = 0
        self.requests: list[Request] = []
        self.reset = reset


def closed_port() -> int:
    """A loopback port nobody listens on (connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@defer.inlineCallbacks
def until(condition, seconds: float = 3.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        yield deferLater(reactor, 0.01, lambda: None)


@pytest_twisted.inlineCallbacks
def test_requests_open_one_connection_in_order_and_responses_come_back_on_it():
    factory = ProviderFactory()
    listening = reactor.listenTCP(0, factory, interface=HOST)
    runtime = make_runtime(reactor)
    runtime.start()
    try:
        peer = Peer("tcp", HOST, listening.getHost().port)
        seen: list[Response | None] = []
        for cseq in (1, 2, 3):  # all three sent before the connection is up: queued
            runtime.core.send_request(request(runtime, "OPTIONS", peer, cseq), peer, seen.append)
        assert list(runtime.connecting) == [(HOST, peer.port)]
        yield until(lambda: len(seen) == 3)
        assert [r.status if r else None for r in seen] == [200, 200, 200]
        assert [r.headers.get("cseq") for r in factory.requests] == [
            "1 OPTIONS",
            "2 OPTIONS",
            "3 OPTIONS",
        ]
        assert factory.connections == 1 and not runtime.connecting
        assert (HOST, peer.port) in runtime.connections
        # A later request reuses the connection.
        runtime.core.send_request(request(runtime, "INVITE", peer, 4), peer, seen.append)
        yield until(lambda: len(seen) == 4)
        assert seen[-1] is not None and seen[-1].status == 200
        assert factory.connections == 1 and len(factory.requests) == 4
    finally:
        yield runtime.stop()
        yield listening.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_refused_connection_fails_the_transaction_at_once():
    runtime = make_runtime(reactor)
    runtime.start()
    try:
        peer = Peer("tcp", HOST, closed_port())
        seen: list[Response | None] = []
        started = time.monotonic()
        runtime.core.send_request(request(runtime, "INVITE", peer, 1), peer, seen.append)
        yield until(lambda: bool(seen))
        assert [r.status if r else None for r in seen] == [503]
        assert time.monotonic() - started < 1.0, "not a Timer B (32 s)"
        assert not runtime.connecting and not runtime.connections
        assert len(runtime.core.table) == 0
    finally:
        yield runtime.stop()


@pytest_twisted.inlineCallbacks
def test_a_connection_reset_by_the_peer_fails_what_waited_for_an_answer():
    factory = ProviderFactory(reset=True)
    listening = reactor.listenTCP(0, factory, interface=HOST)
    runtime = make_runtime(reactor)
    runtime.start()
    try:
        peer = Peer("tcp", HOST, listening.getHost().port)
        seen: list[Response | None] = []
        runtime.core.send_request(request(runtime, "INVITE", peer, 1), peer, seen.append)
        yield until(lambda: bool(seen))
        assert [r.status if r else None for r in seen] == [503]
        assert len(factory.requests) == 1
        yield until(lambda: not runtime.connections)
    finally:
        yield runtime.stop()
        yield listening.stopListening()


def test_the_connect_is_bounded_and_only_one_is_made_per_peer() -> None:
    memory = MemoryReactorClock()
    runtime = make_runtime(memory)
    peer = Peer("tcp", "192.0.2.20", 5060)
    seen: list[Response | None] = []
    runtime.core.send_request(request(runtime, "INVITE", peer, 1), peer, seen.append)
    runtime.execute([Transmit(peer, b"OPTIONS-ish bytes\r\n\r\n")])
    (client,) = memory.tcpClients  # one connect for both messages
    host, port, factory, timeout, bind = client
    assert (host, port, timeout, bind) == ("192.0.2.20", 5060, TCP_CONNECT_TIMEOUT, (HOST, 0))
    assert isinstance(factory, Outbound) and len(factory.queue) == 2
    # The connect times out: the INVITE's transaction fails, and nothing is left queued.
    factory.clientConnectionFailed(memory.connectors[0], Failure(TimeoutError()))
    assert [r.status if r else None for r in seen] == [503]
    assert not runtime.connecting and len(runtime.core.table) == 0
    # The next message tries again (a new connection attempt).
    runtime.execute([Transmit(peer, b"again\r\n\r\n")])
    assert len(memory.tcpClients) == 2


def test_queued_bytes_are_written_in_order_when_the_connection_is_made() -> None:
    memory = MemoryReactorClock()
    runtime = make_runtime(memory)
    peer = Peer("tcp", "192.0.2.20", 5060)
    runtime.execute([Transmit(peer, b"first"), Transmit(peer, b"second")])
    factory = memory.tcpClients[0][2]
    conn = factory.buildProtocol(None)
    wire = StringTransport()
    conn.makeConnection(wire)
    assert wire.value() == b"firstsecond"
    assert runtime.connections[("192.0.2.20", 5060)] is conn and not runtime.connecting
    runtime.execute([Transmit(peer, b"third")])  # reuses it
    assert wire.value() == b"firstsecondthird" and len(memory.tcpClients) == 1
    # A later failure report from the old attempt is ignored (nothing pending).
    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    assert runtime.connections[("192.0.2.20", 5060)] is conn


def test_the_queue_is_bounded() -> None:
    memory = MemoryReactorClock()
    runtime = make_runtime(memory)
    peer = Peer("tcp", "192.0.2.20", 5060)
    chunk = b"x" * 60_000
    runtime.execute([Transmit(peer, chunk) for _ in range(10)])
    (client,) = memory.tcpClients
    outbound = client[2]
    assert outbound.queued <= TCP_QUEUE_BYTES
    assert len(outbound.queue) == TCP_QUEUE_BYTES // len(chunk)


def test_udp_never_connects() -> None:
    memory = MemoryReactorClock()
    runtime = make_runtime(memory)
    runtime.execute([Transmit(Peer("udp", "192.0.2.20", 5060), b"x")])
    assert memory.tcpClients == [] and not runtime.connecting
