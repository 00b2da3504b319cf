"""Twisted UDP and TCP transports for the SIP core (the only SIP module that does I/O).

Bytes in → ``core.receive``; the core's actions out → socket writes and timers.
TCP is framed by Content-Length with a bounded buffer and an idle timeout.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Hashable, Iterable
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from ivr.sip.core import CloseConnection, Peer, SetTimer, SipCore, Transmit
from ivr.sip.framing import FramingError, KeepAlive, StreamFramer

log = Logger(namespace="ivr.sip.transport")

_DROP_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.ECONNREFUSED})


class SipDatagramProtocol(protocol.DatagramProtocol):
    """SIP over UDP: one datagram is one message."""

    def __init__(self, runtime: SipRuntime) -> None:
        self.runtime = runtime
        self.sock: socket.socket | None = None

    def startProtocol(self) -> None:
        self.sock = self.transport.socket  # type: ignore[union-attr]

    def datagramReceived(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.runtime.receive(data, Peer("udp", addr[0], addr[1]))

    def send(self, data: bytes, host: str, port: int) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            sock.sendto(data, (host, port))
        except OSError as exc:
            if exc.errno not in _DROP_ERRNOS:
                log.warn("udp send to {host}:{port} failed: {err}", host=host, port=port, err=exc)


class SipStreamProtocol(protocol.Protocol, TimeoutMixin):
    """SIP over TCP: Content-Length framing, CRLF keep-alives, idle timeout."""

    def __init__(self, runtime: SipRuntime, idle_timeout: float, max_size: int) -> None:
        self.runtime = runtime
        self.idle_timeout = idle_timeout
        self.framer = StreamFramer(max_size=max_size)
        self.peer: Peer | None = None

    def connectionMade(self) -> None:
        addr = self.transport.getPeer()  # type: ignore[union-attr]
        self.peer = Peer("tcp", addr.host, addr.port, self)
        self.runtime.connections[(addr.host, addr.port)] = self
        self.setTimeout(self.idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        assert self.peer is not None
        for frame in self.framer.feed(data):
            if isinstance(frame, bytes):
                self.runtime.receive(frame, self.peer)
            elif isinstance(frame, KeepAlive):
                self.transport.write(frame.pong)  # type: ignore[union-attr]
            else:
                self.runtime.framing_failed(frame, self.peer)
                self.transport.loseConnection()  # type: ignore[union-attr]
                return

    def timeoutConnection(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: object = None) -> None:
        self.setTimeout(None)
        if self.peer is not None:
            key = (self.peer.host, self.peer.port)
            if self.runtime.connections.get(key) is self:
                del self.runtime.connections[key]


class SipStreamFactory(protocol.ServerFactory):
    def __init__(self, runtime: SipRuntime, idle_timeout: float, max_size: int) -> None:
        self.runtime = runtime
        self.idle_timeout = idle_timeout
        self.max_size = max_size

    def buildProtocol(self, addr: object) -> SipStreamProtocol:
        return SipStreamProtocol(self.runtime, self.idle_timeout, self.max_size)


class SipRuntime:
    """Binds the pure core to the reactor: sockets, timers and the clock."""

    def __init__(
        self,
        reactor: Any,
        core: SipCore,
        *,
        host: str,
        port: int,
        transports: Iterable[str] = ("udp", "tcp"),
        tcp_idle_timeout: float = 300.0,
        max_size: int = 65535,
    ) -> None:
        self.reactor = reactor
        self.core = core
        self.host = host
        self.port = port
        self.transports = tuple(transports)
        self.tcp_idle_timeout = tcp_idle_timeout
        self.max_size = max_size
        self.udp: SipDatagramProtocol | None = None
        self.connections: dict[tuple[str, int], SipStreamProtocol] = {}
        self._ports: list[IListeningPort] = []
        self._timers: dict[Hashable, IDelayedCall] = {}
        core.attach(self.execute, reactor.seconds)

    def start(self) -> int:
        """Listen on every configured transport; returns the bound port."""
        port = self.port
        if "udp" in self.transports:
            self.udp = SipDatagramProtocol(self)
            udp_port = self.reactor.listenUDP(
                port, self.udp, interface=self.host, maxPacketSize=max(65536, self.max_size + 1)
            )
            port = udp_port.getHost().port
            self._ports.append(udp_port)
        if "tcp" in self.transports:
            factory = SipStreamFactory(self, self.tcp_idle_timeout, self.max_size)
            tcp_port = self.reactor.listenTCP(port, factory, interface=self.host)
            port = tcp_port.getHost().port
            self._ports.append(tcp_port)
        self.port = port
        self.core.set_local_port(port)
        return port

    def stop(self) -> defer.Deferred[Any]:
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()
        for conn in list(self.connections.values()):
            conn.transport.loseConnection()  # type: ignore[union-attr]
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self._ports])

    def receive(self, data: bytes, peer: Peer) -> None:
        self.core.receive(data, peer)

    def framing_failed(self, error: FramingError, peer: Peer) -> None:
        """An unframeable stream: answer what we can (e.g. 400/513), then it is closed."""
        log.info("closing {peer}: {reason}", peer=str(peer), reason=error.reason)
        if error.head:
            self.core.reject_head(error.head, peer, error)

    def execute(self, actions: Iterable[object]) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                self._transmit(action)
            elif isinstance(action, SetTimer):
                self._set_timer(action.key, action.delay)
            elif isinstance(action, CloseConnection):
                conn = self._connection(action.peer)
                if conn is not None:
                    conn.transport.loseConnection()  # type: ignore[union-attr]
            else:
                old = self._timers.pop(getattr(action, "key", None), None)
                if old is not None and old.active():
                    old.cancel()

    def _transmit(self, action: Transmit) -> None:
        peer = action.peer
        if peer.transport == "udp":
            if self.udp is not None:
                self.udp.send(action.data, peer.host, peer.port)
            return
        conn = self._connection(peer)
        if conn is None:
            log.info("no TCP connection to {host}:{port}", host=peer.host, port=peer.port)
            return
        conn.transport.write(action.data)  # type: ignore[union-attr]

    def _connection(self, peer: Peer) -> SipStreamProtocol | None:
        conn = peer.conn if isinstance(peer.conn, SipStreamProtocol) else None
        if conn is not None and conn.transport is not None and conn.connected:
            return conn
        return self.connections.get((peer.host, peer.port))

    def _set_timer(self, key: Hashable, delay: float) -> None:
        old = self._timers.get(key)
        if old is not None and old.active():
            old.cancel()
        self._timers[key] = self.reactor.callLater(delay, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.core.timer_fired(key)
