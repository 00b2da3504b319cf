"""Twisted UDP and TCP transports for the SIP core (the only SIP module that does I/O).

Bytes in → ``core.receive``; the core's actions out → socket writes and timers.
TCP is framed by Content-Length with a bounded buffer and an idle timeout. A message for
a TCP peer we have no connection to opens one (:class:`Outbound`): the bytes wait in a
bounded queue until it is up; if it cannot be made, the core's transactions to that peer
fail at once (``SipCore.transport_failed``).
"""

from __future__ import annotations

import errno
import heapq
import socket
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.protocols.policies import TimeoutMixin

from ivr.logs import Logger
from ivr.sip.core import ClearTimer, CloseConnection, Peer, SetTimer, SipCore, Transmit
from ivr.sip.framing import FramingError, KeepAlive, StreamFramer

log = Logger(namespace="ivr.sip.transport")

_DROP_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.ECONNREFUSED})
UDP_BUFFER_BYTES = 4 << 20  # asked for; the kernel caps it at net.core.rmem_max/wmem_max
ANY_PORT_ATTEMPTS = 20  # port 0: tries to find a port free for both UDP and TCP
TIMER_TICK = 0.01  # seconds: SIP timers fire at most this late (T1 is 500 ms)
TCP_CONNECT_TIMEOUT = 5.0  # seconds: an outgoing TCP connection not up by then has failed
TCP_QUEUE_BYTES = 256 << 10  # bytes waiting for an outgoing connection; more are refused


class TimerWheel:
    """Every SIP timer on one reactor call: deadlines rounded up to ``tick`` slots.

    Arming or clearing a timer is a dict write (no ``callLater``/``cancel`` per timer,
    which costs about 10 µs each and keeps a DelayedCall alive per transaction); one
    delayed call wakes up for the earliest slot and fires every timer due in it.
    A timer never fires early; it fires up to ``tick`` late.
    """

    __slots__ = ("_call", "_call_slot", "_deadlines", "_fire", "_heap", "_reactor", "_slots")

    def __init__(self, reactor: Any, fire: Callable[[Hashable], None]) -> None:
        self._reactor = reactor
        self._fire = fire
        self._deadlines: dict[Hashable, int] = {}
        self._slots: dict[int, list[Hashable]] = {}
        self._heap: list[int] = []
        self._call: IDelayedCall | None = None
        self._call_slot = 0

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, key: object) -> bool:
        return key in self._deadlines

    def set(self, key: Hashable, delay: float) -> None:
        """Arm (or re-arm) ``key`` to fire ``delay`` seconds from now."""
        slot = int((self._reactor.seconds() + delay) / TIMER_TICK) + 1
        self._deadlines[key] = slot
        bucket = self._slots.get(slot)
        if bucket is not None:
            bucket.append(key)
            return
        self._slots[slot] = [key]
        heapq.heappush(self._heap, slot)
        if self._call is None or slot < self._call_slot:
            self._schedule(slot)

    def clear(self, key: Hashable) -> None:
        self._deadlines.pop(key, None)

    def stop(self) -> None:
        """Forget every timer."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._deadlines.clear()
        self._slots.clear()
        self._heap.clear()

    def _schedule(self, slot: int) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call_slot = slot
        delay = max(0.0, slot * TIMER_TICK - self._reactor.seconds())
        self._call = self._reactor.callLater(delay, self._run)

    def _run(self) -> None:
        self._call = None
        due = int(self._reactor.seconds() / TIMER_TICK + 1e-6)
        heap, slots, deadlines = self._heap, self._slots, self._deadlines
        while heap and heap[0] <= due:
            slot = heapq.heappop(heap)
            for key in slots.pop(slot, ()):
                if deadlines.get(key) == slot:
                    del deadlines[key]
                    try:
                        self._fire(key)
                    except Exception:  # one timer's failure must not lose the others
                        log.failure("SIP timer {key!r} failed", key=key)
        if heap and (self._call is None or heap[0] < self._call_slot):
            self._schedule(heap[0])


class SipDatagramProtocol(protocol.DatagramProtocol):
    """SIP over UDP: one datagram is one message."""

    def __init__(self, runtime: SipRuntime) -> None:
        self.runtime = runtime
        self.sock: socket.socket | None = None

    def startProtocol(self) -> None:
        sock = self.sock = self.transport.socket  # type: ignore[union-attr]
        # A burst (or a moment without the CPU on a busy host) must not overflow the
        # kernel's queue: a dropped request costs the peer a 500 ms retransmission.
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER_BYTES)
            except OSError as exc:
                log.info("cannot size the UDP socket buffer: {err}", err=exc)

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

    def __init__(
        self,
        runtime: SipRuntime,
        idle_timeout: float,
        max_size: int,
        outbound: Outbound | None = None,
    ) -> None:
        self.runtime = runtime
        self.idle_timeout = idle_timeout
        self.framer = StreamFramer(max_size=max_size)
        self.peer: Peer | None = None
        self.outbound = outbound  # set when we opened the connection

    def connectionMade(self) -> None:
        outbound = self.outbound
        if outbound is not None:  # known by the address we dialled
            host, port = outbound.host, outbound.port
        else:
            addr = self.transport.getPeer()  # type: ignore[union-attr]
            host, port = addr.host, addr.port
        self.peer = Peer("tcp", host, port, self)
        self.runtime.connections[(host, port)] = self
        self.setTimeout(self.idle_timeout)
        if outbound is not None:
            self.runtime.outbound_connected(outbound, self)

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

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)
        peer = self.peer
        if peer is None:
            return
        key = (peer.host, peer.port)
        if self.runtime.connections.get(key) is self:
            del self.runtime.connections[key]
        if self.outbound is not None and reason is not None and not reason.check(ConnectionDone):
            # ours broke (reset): what we sent on it may never have left
            self.runtime.outbound_broken(peer, reason.getErrorMessage())


class SipStreamFactory(protocol.ServerFactory):
    def __init__(self, runtime: SipRuntime, idle_timeout: float, max_size: int) -> None:
        self.runtime = runtime
        self.idle_timeout = idle_timeout
        self.max_size = max_size

    def buildProtocol(self, addr: object) -> SipStreamProtocol:
        return SipStreamProtocol(self.runtime, self.idle_timeout, self.max_size)


class Outbound(protocol.ClientFactory):
    """One outgoing TCP connection being made to ``host``:``port``, and the bytes
    waiting for it (in order, at most ``TCP_QUEUE_BYTES``)."""

    def __init__(self, runtime: SipRuntime, host: str, port: int) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.queue: list[bytes] = []
        self.queued = 0
        self.connector: Any = None

    def add(self, data: bytes) -> bool:
        """Queue ``data``; False (and nothing queued) when the queue is full."""
        if self.queued + len(data) > TCP_QUEUE_BYTES:
            return False
        self.queue.append(data)
        self.queued += len(data)
        return True

    def buildProtocol(self, addr: object) -> SipStreamProtocol:
        runtime = self.runtime
        return SipStreamProtocol(runtime, runtime.tcp_idle_timeout, runtime.max_size, self)

    def clientConnectionFailed(self, connector: object, reason: Any) -> None:
        self.runtime.outbound_failed(self, reason.getErrorMessage())


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
        self.connecting: dict[tuple[str, int], Outbound] = {}
        self._ports: list[IListeningPort] = []
        self.timers = TimerWheel(reactor, core.timer_fired)
        self._stopping = False
        core.attach(self.execute, reactor.seconds)

    def start(self) -> int:
        """Listen on every configured transport; returns the bound port.

        Port 0 takes a free UDP port and then the same TCP port, which another process
        may hold: then both are given up and another free port is tried."""
        attempts = ANY_PORT_ATTEMPTS if self.port == 0 else 1
        for attempt in range(attempts):
            try:
                return self._listen(self.port)
            except CannotListenError:
                for listening in self._ports:
                    listening.stopListening()
                self._ports.clear()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _listen(self, port: int) -> int:
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
        self.timers.stop()
        self._stopping = True
        connecting = list(self.connecting.values())
        self.connecting.clear()  # given up: nothing left to tell the core
        for outbound in connecting:
            if outbound.connector is not None and outbound.connector.state == "connecting":
                outbound.connector.stopConnecting()
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
            kind = action.__class__
            if kind is Transmit:
                self._transmit(action)  # type: ignore[arg-type]
            elif kind is SetTimer:
                self.timers.set(action.key, action.delay)  # type: ignore[attr-defined]
            elif kind is ClearTimer:
                self.timers.clear(action.key)  # type: ignore[attr-defined]
            elif kind is CloseConnection:
                conn = self._connection(action.peer)  # type: ignore[attr-defined]
                if conn is not None:
                    conn.transport.loseConnection()  # type: ignore[union-attr]

    def _transmit(self, action: Transmit) -> None:
        peer = action.peer
        if peer.transport == "udp":
            if self.udp is not None:
                self.udp.send(action.data, peer.host, peer.port)
            return
        conn = self._connection(peer)
        if conn is not None:
            conn.transport.write(action.data)  # type: ignore[union-attr]
        elif peer.conn is None:
            self._connect(peer, action.data)
        else:  # an answer on a connection the peer closed: it reaches out again if it cares
            log.info("no TCP connection to {host}:{port}", host=peer.host, port=peer.port)

    def _connect(self, peer: Peer, data: bytes) -> None:
        """Send ``data`` over a new connection to ``peer``: one per peer, bytes in order."""
        key = (peer.host, peer.port)
        outbound = self.connecting.get(key)
        if outbound is not None:
            if not outbound.add(data):
                _refuse(peer, data)
            return
        outbound = self.connecting[key] = Outbound(self, peer.host, peer.port)
        if not outbound.add(data):
            _refuse(peer, data)
        bind = None if self.host in ("", "0.0.0.0", "::") else (self.host, 0)
        outbound.connector = self.reactor.connectTCP(
            peer.host, peer.port, outbound, timeout=TCP_CONNECT_TIMEOUT, bindAddress=bind
        )

    def outbound_connected(self, outbound: Outbound, conn: SipStreamProtocol) -> None:
        """An outgoing connection is up: what waited for it goes first, in order."""
        key = (outbound.host, outbound.port)
        if self.connecting.get(key) is outbound:
            del self.connecting[key]
        queue, outbound.queue, outbound.queued = outbound.queue, [], 0
        if queue:
            conn.transport.writeSequence(queue)  # type: ignore[union-attr]

    def outbound_failed(self, outbound: Outbound, reason: str) -> None:
        """An outgoing connection could not be made: the core learns it now."""
        key = (outbound.host, outbound.port)
        if self.connecting.get(key) is not outbound:
            return  # given up by stop()
        del self.connecting[key]
        outbound.queue, outbound.queued = [], 0
        self._failed(Peer("tcp", outbound.host, outbound.port), reason)

    def outbound_broken(self, peer: Peer, reason: str) -> None:
        """A connection we opened broke (not closed cleanly): its transactions fail now."""
        if not self._stopping:
            self._failed(Peer("tcp", peer.host, peer.port), reason)

    def _failed(self, peer: Peer, reason: str) -> None:
        log.info("TCP to {peer} failed: {reason}", peer=str(peer), reason=reason)
        self.core.transport_failed(peer)

    def _connection(self, peer: Peer) -> SipStreamProtocol | None:
        conn = peer.conn if isinstance(peer.conn, SipStreamProtocol) else None
        if conn is not None and conn.transport is not None and conn.connected:
            return conn
        return self.connections.get((peer.host, peer.port))


def _refuse(peer: Peer, data: bytes) -> None:
    log.warn("TCP queue to {peer} full: {size} bytes refused", peer=str(peer), size=len(data))
