"""Twisted RTP endpoint: one UDP port per call, one shared 20 ms tick for all calls.

:class:`MediaEngine` binds an even RTP port per call from a configured range and
runs a single ``LoopingCall`` while any stream is open. Each tick works out from
the reactor clock how many 20 ms frames are due (so pacing does not drift), sends
at most ``max_burst`` of them per stream when a tick came late and skips the rest
(player and RTP timestamp advance as if the frames had been lost). Frames go out
through the raw socket's ``sendto``, skipping the address checks of Twisted's
``write`` (measured on loopback here: ~5 µs against ~7.5 µs per packet; the Python
work per stream and tick is ~2.5 µs). Incoming packets pass the strict-RTP
:class:`SourceLatch` and are handed to ``stream.on_rtp``. The only module of
``ivr.media`` that imports Twisted.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import random
import socket
from collections.abc import Callable
from typing import Any, Final, Protocol

from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ivr.dtmf.channels import InbandChannels
from ivr.dtmf.events import DigitEvent
from ivr.dtmf.rfc4733 import PayloadError, TelephoneEventReceiver
from ivr.media import g711
from ivr.media.g711 import PAYLOAD_TYPES, SILENCE
from ivr.media.player import FRAME_SAMPLES, SAMPLE_RATE, Player
from ivr.media.rtp import RtpError, RtpPacket, RtpSender, SourceLatch, is_rtcp, parse_rtp

__all__ = ["MediaEngine", "MediaStream", "NegotiatedMedia", "NoFreePort"]

_log = Logger()
_SENDING: Final = frozenset({"sendrecv", "sendonly"})
_DIRECTIONS: Final = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
_CODEC_OF_PT: Final = {pt: name for name, pt in PAYLOAD_TYPES.items()}
_RESYNC_FRAMES: Final = 50  # a clock step of more than 1 s re-anchors the tick
_RANDOM_TRIES: Final = 16

Address = tuple[str, int]


class NoFreePort(RuntimeError):
    """Every even port of the RTP range is in use."""


class NegotiatedMedia(Protocol):
    """What the SDP negotiation decided (``ivr.sip.sdp.MediaParams`` fits)."""

    @property
    def payload_type(self) -> int: ...
    @property
    def codec(self) -> str: ...
    @property
    def telephone_event_pt(self) -> int | None: ...
    @property
    def remote_addr(self) -> str: ...
    @property
    def remote_port(self) -> int: ...
    @property
    def direction(self) -> str: ...


class _RtpProtocol(DatagramProtocol):
    noisy = False

    def __init__(self, stream: MediaStream) -> None:
        self.stream = stream

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.stream._received(datagram, (addr[0], addr[1]))


class MediaStream:
    """One call's RTP: its port, what to send where, and what came in.

    Counters: ``sent``, ``send_errors``, ``received`` (accepted and delivered),
    ``dropped_foreign`` (from a source other than the latched one),
    ``dropped_learning`` (while learning the source), ``malformed``, ``rtcp``.
    """

    def __init__(self, engine: MediaEngine, rng: random.Random, probation: int) -> None:
        self._engine = engine
        self._protocol = _RtpProtocol(self)
        self._port: IListeningPort | None = None
        self._sendto: Callable[[bytes, Address], object] = _not_bound
        self._v6 = False
        self.local_host = engine.host
        self.local_port = 0
        self.remote: Address | None = None
        self._send_addr: Address | None = None
        self.payload_type: int | None = None
        self.codec: str | None = None
        self._idle_frame: bytes | None = None
        self._sending = True
        self.telephone_event_pt: int | None = None
        self.direction = "sendrecv"
        self.peer_host: str | None = None
        self.on_rtp: Callable[[RtpPacket], None] | None = None
        self.latch = SourceLatch(probation=probation)
        self.sender = RtpSender(rng, 0)
        self._player: Player | None = None
        self._on_done: Callable[[], None] | None = None
        self._gap = True  # the next packet sent starts a talkspurt (marker bit)
        self._relatch = False  # symmetric RTP: switch the target to the latched source
        self.closed = False
        self.on_digit: Callable[[DigitEvent], None] | None = None
        self._events: TelephoneEventReceiver | None = None
        self._inband_slot: int | None = None
        self.sent = 0
        self.send_errors = 0
        self.received = 0
        self.malformed = 0
        self.rtcp = 0

    def _attach(self, port: IListeningPort) -> None:
        self._port = port
        self.local_port = port.getHost().port
        sock = getattr(port, "socket", None)
        if sock is not None:
            self._sendto = sock.sendto
            self._v6 = sock.family == socket.AF_INET6
        else:
            self._sendto = port.write  # type: ignore[attr-defined]  # a test double
            self._v6 = ":" in self.local_host

    # --- configuration -----------------------------------------------------------------

    @property
    def dropped_foreign(self) -> int:
        return self.latch.dropped_foreign

    @property
    def dropped_learning(self) -> int:
        return self.latch.dropped_learning

    @property
    def playing(self) -> bool:
        return self._player is not None

    def _check_remote(self, host: str, port: int) -> Address | None:
        if not 0 <= port <= 65535:
            raise ValueError(f"remote port {port} out of range")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"remote RTP host must be an IP address, got {host!r}") from None
        if ip.is_unspecified or port == 0:
            return None  # on hold: nowhere to send
        if ip.version == 4 and self._v6:
            return (f"::ffff:{ip}", port)
        if ip.version == 6 and not self._v6:
            raise ValueError(f"cannot send to IPv6 {host} from the IPv4 address {self.local_host}")
        return (str(ip), port)

    def configure(
        self,
        *,
        remote: Address | None,
        payload_type: int,
        codec: str | None = None,
        telephone_event_pt: int | None = None,
        direction: str = "sendrecv",
        peer_host: str | None = None,
    ) -> None:
        """Set (or change, on a re-INVITE) where and how to send.

        ``remote`` comes from the SDP (None or ``0.0.0.0`` for hold); ``codec``
        defaults from the static payload type; ``peer_host`` is the signalling
        peer's address, trusted as an RTP source. A new remote restarts latching.
        """
        if self.closed:
            raise RuntimeError("stream is closed")
        name = codec.upper() if codec is not None else _CODEC_OF_PT.get(payload_type)
        if name not in SILENCE:
            raise ValueError(f"unsupported codec {codec!r} for payload type {payload_type}")
        if direction not in _DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}")
        if telephone_event_pt == payload_type:
            raise ValueError("telephone-event and audio share a payload type")
        target = self._check_remote(*remote) if remote is not None else None
        if self._player is not None and self._player.codec != name:
            raise ValueError(f"a {self._player.codec} player is running; stop it first")
        self.sender.payload_type = payload_type
        self.payload_type = payload_type
        self.codec = name
        self._idle_frame = _IDLE[name]
        self.telephone_event_pt = telephone_event_pt
        self.direction = direction
        self._sending = direction in _SENDING
        if target != self.remote or peer_host != self.peer_host:
            self.latch.reset(target, peer_host)
            self._relatch = self._engine.symmetric_rtp
        self.remote = self._send_addr = target
        self.peer_host = peer_host

    def apply(self, media: NegotiatedMedia, *, peer_host: str | None = None) -> None:
        """:meth:`configure` from a negotiation result (``sdp.answer(...).media``)."""
        self.configure(
            remote=(media.remote_addr, media.remote_port),
            payload_type=media.payload_type,
            codec=media.codec,
            telephone_event_pt=media.telephone_event_pt,
            direction=media.direction,
            peer_host=peer_host if peer_host is not None else self.peer_host,
        )

    # --- playing -----------------------------------------------------------------------

    def play(self, player: Player, on_done: Callable[[], None] | None = None) -> None:
        """Send ``player``'s frames from the next tick on; ``on_done()`` after the last.

        Replaces what was playing (whose ``on_done`` is then never called).
        """
        if self.closed:
            raise RuntimeError("stream is closed")
        if self.codec is None:
            raise RuntimeError("configure the stream before playing")
        if player.codec != self.codec:
            raise ValueError(f"player encodes {player.codec}, the call uses {self.codec}")
        self._player = player
        self._on_done = on_done

    def stop(self) -> None:
        """Barge-in: stop playing now; ``on_done`` is not called."""
        if self._player is not None:
            self._player.stop()
        self._player = None
        self._on_done = None

    def listen_for_digits(self, on_digit: Callable[[DigitEvent], None], *, inband: bool) -> None:
        """Report key presses: RFC 4733 events when negotiated, else (``inband``) tones
        found in the received audio by the engine's shared detector."""
        self.on_digit = on_digit
        if self.telephone_event_pt is not None:
            self._events = TelephoneEventReceiver()
        elif inband and self._inband_slot is None:
            self._inband_slot = self._engine._open_inband(self)

    def _digit(self, event: DigitEvent) -> None:
        callback = self.on_digit
        if callback is not None and not self.closed:
            try:
                callback(event)
            except Exception:
                _log.failure("on_digit callback of RTP port {port} failed", port=self.local_port)

    def close(self) -> None:
        """Stop, release the port, leave the engine's tick."""
        if self.closed:
            return
        self.stop()
        self.closed = True
        self.on_rtp = None
        self.on_digit = None
        if self._inband_slot is not None:
            self._engine._close_inband(self._inband_slot)
            self._inband_slot = None
        self._send_addr = None
        self._engine._forget(self)
        port, self._port = self._port, None
        if port is not None:
            d = port.stopListening()
            local = self.local_port
            if d is None:
                self._engine._release(local)
            else:
                d.addBoth(lambda _: self._engine._release(local))

    # --- the tick ----------------------------------------------------------------------

    def _finish(self) -> None:
        callback = self._on_done
        self._player = None
        self._on_done = None
        if callback is not None:
            try:
                callback()
            except Exception:
                _log.failure("on_done callback of RTP port {port} failed", port=self.local_port)

    def _advance(self, skip: int, send: int, idle: bool) -> None:
        """``skip`` frames are lost to lateness, then ``send`` frames go out."""
        if skip:
            if self._player is not None:
                self._player.skip(skip)
                if self._player.done:
                    self._finish()
            self.sender.skip(skip * FRAME_SAMPLES)
            self._gap = True
        sender = self.sender
        for _ in range(send):
            if self.closed:
                return  # closed by an on_done callback
            player = self._player
            frame = player.next_frame() if player is not None else None
            if frame is None and idle:
                frame = self._idle_frame
            target = self._send_addr
            if frame is None or target is None or not self._sending:
                sender.skip(FRAME_SAMPLES)
                self._gap = True
            else:
                data = sender.audio(frame, self._gap)
                self._gap = False
                try:
                    self._sendto(data, target)
                    self.sent += 1
                except OSError:
                    self.send_errors += 1
            if player is not None and player is self._player and player.done:
                self._finish()

    # --- receiving ---------------------------------------------------------------------

    def _received(self, data: bytes, source: Address) -> None:
        if self.closed:
            return
        if is_rtcp(data):
            self.rtcp += 1
            return
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.malformed += 1
            return
        if not self.latch.accept(source, packet.sequence):
            return
        if self._relatch and self.latch.locked is not None:
            self._relatch = False
            if self._send_addr is not None:
                self._send_addr = self._check_remote(*self.latch.locked)
        self.received += 1
        if self.on_digit is not None:
            self._dtmf(packet)
        callback = self.on_rtp
        if callback is not None:
            try:
                callback(packet)
            except Exception:
                _log.failure("on_rtp callback of RTP port {port} failed", port=self.local_port)

    def _dtmf(self, packet: RtpPacket) -> None:
        if self._events is not None and packet.payload_type == self.telephone_event_pt:
            try:
                events = self._events.feed(
                    packet.payload, packet.timestamp, packet.marker, self._engine.reactor.seconds()
                )
            except PayloadError:
                self.malformed += 1
                return
            for event in events:
                self._digit(event)
        elif self._inband_slot is not None and packet.payload_type == self.payload_type:
            self._engine.inband.push(self._inband_slot, g711.decode(self.codec, packet.payload))

    def __repr__(self) -> str:
        return (
            f"<MediaStream {self.local_host}:{self.local_port} -> {self.remote} "
            f"{self.codec} {self.direction}{' closed' if self.closed else ''}>"
        )


_IDLE: Final = {codec: bytes((code,)) * FRAME_SAMPLES for codec, code in SILENCE.items()}


EXPIRE_EVERY_TICKS: Final = 5  # look for RFC 4733 presses with lost end packets every 100 ms


def _on_clock(event: DigitEvent, opened: float) -> DigitEvent:
    """An in-band event (timed from its channel's start) on the reactor's clock, like
    RFC 4733 and SIP INFO events, so one press seen two ways merges into one."""
    end = None if event.end is None else event.end + opened
    return dataclasses.replace(event, start=event.start + opened, end=end)


_OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _not_bound(data: bytes, addr: Address) -> None:
    raise OSError("RTP port not bound")


class MediaEngine:
    """All RTP streams of the process, paced by one ``LoopingCall``.

    ``reactor`` provides ``listenUDP``, ``seconds`` and ``callLater``. Ports are
    drawn at random (from ``rng``) among the even ports of [port_min, port_max]
    and released when their stream closes. ``idle_silence`` keeps sending
    silence while nothing plays (peers' RTP timeouts and NAT bindings stay
    happy). ``symmetric_rtp`` sends to the latched source instead of the SDP
    address (comedia).
    """

    def __init__(
        self,
        reactor: Any,
        host: str,
        port_min: int,
        port_max: int,
        rng: random.Random,
        *,
        max_burst: int = 2,
        idle_silence: bool = True,
        symmetric_rtp: bool = False,
        probation: int = 3,
    ) -> None:
        if not 1 <= port_min <= port_max <= 65535:
            raise ValueError(f"invalid RTP port range {port_min}-{port_max}")
        first = port_min + (port_min % 2)
        if first > port_max:
            raise ValueError(f"RTP port range {port_min}-{port_max} has no even port")
        if max_burst < 1:
            raise ValueError("max_burst must be at least 1")
        ipaddress.ip_address(host)  # raises ValueError for a name
        self.reactor = reactor
        self.host = host
        self.port_min = first
        self.port_max = port_max
        self.rng = rng
        self.max_burst = max_burst
        self.idle_silence = idle_silence
        self.symmetric_rtp = symmetric_rtp
        self.probation = probation
        self.interval = FRAME_SAMPLES / SAMPLE_RATE
        self._streams: dict[MediaStream, None] = {}
        self._in_use: set[int] = set()
        self._loop: LoopingCall | None = None
        self._epoch = 0.0
        self._frames = 0
        self.ticks = 0
        self.frames_skipped = 0
        self.inband = InbandChannels()
        self._inband_streams: dict[int, MediaStream] = {}
        self._inband_opened: dict[int, float] = {}

    @property
    def streams(self) -> tuple[MediaStream, ...]:
        return tuple(self._streams)

    @property
    def ports_in_use(self) -> frozenset[int]:
        return frozenset(self._in_use)

    def open_stream(
        self,
        *,
        media: NegotiatedMedia | None = None,
        remote: Address | None = None,
        payload_type: int | None = None,
        codec: str | None = None,
        telephone_event_pt: int | None = None,
        direction: str = "sendrecv",
        peer_host: str | None = None,
        on_rtp: Callable[[RtpPacket], None] | None = None,
    ) -> MediaStream:
        """Bind a port for a new call's media and join the tick.

        Give ``media`` (a negotiation result) or ``payload_type`` and friends to
        configure at once, or neither and call :meth:`MediaStream.configure` or
        :meth:`MediaStream.apply` once the SDP is settled (the local port is needed
        to write it). Raises :class:`NoFreePort` when the range is exhausted.
        """
        stream = MediaStream(self, self.rng, self.probation)
        stream._attach(self._bind(stream._protocol))
        stream.peer_host = peer_host
        stream.latch.reset(None, peer_host)
        stream.on_rtp = on_rtp
        try:
            if media is not None:
                stream.apply(media, peer_host=peer_host)
            elif payload_type is not None:
                stream.configure(
                    remote=remote,
                    payload_type=payload_type,
                    codec=codec,
                    telephone_event_pt=telephone_event_pt,
                    direction=direction,
                    peer_host=peer_host,
                )
        except Exception:
            stream.close()
            raise
        self._streams[stream] = None
        if self._loop is None:
            self._start()
        return stream

    def close(self) -> None:
        """Close every stream (the tick stops with the last one)."""
        for stream in list(self._streams):
            stream.close()

    # --- ports -------------------------------------------------------------------------

    def _try_bind(self, port: int, protocol: _RtpProtocol) -> IListeningPort | None:
        try:
            listening = self.reactor.listenUDP(port, protocol, interface=self.host)
        except CannotListenError as exc:
            if getattr(exc.socketError, "errno", None) in _OUT_OF_RESOURCES:
                raise NoFreePort(f"cannot open an RTP socket: {exc.socketError}") from exc
            return None  # this port is taken: try another
        self._in_use.add(port)
        return listening  # type: ignore[no-any-return]

    def _bind(self, protocol: _RtpProtocol) -> IListeningPort:
        count = (self.port_max - self.port_min) // 2 + 1
        tried: set[int] = set()
        for _ in range(min(_RANDOM_TRIES, count)):
            port = self.port_min + 2 * self.rng.randrange(count)
            if port in self._in_use or port in tried:
                continue
            tried.add(port)
            if (listening := self._try_bind(port, protocol)) is not None:
                return listening
        rest = [
            p
            for p in range(self.port_min, self.port_max + 1, 2)
            if p not in self._in_use and p not in tried
        ]
        self.rng.shuffle(rest)
        for port in rest:
            if (listening := self._try_bind(port, protocol)) is not None:
                return listening
        raise NoFreePort(f"no free even RTP port in {self.port_min}-{self.port_max}")

    def _release(self, port: int) -> None:
        self._in_use.discard(port)

    # --- in-band DTMF ------------------------------------------------------------------

    def _open_inband(self, stream: MediaStream) -> int:
        slot = self.inband.open()
        self._inband_streams[slot] = stream
        self._inband_opened[slot] = self.reactor.seconds()
        return slot

    def _close_inband(self, slot: int) -> None:
        stream = self._inband_streams.pop(slot, None)
        opened = self._inband_opened.pop(slot, 0.0)
        for event in self.inband.close(slot):
            if stream is not None:
                stream._digit(_on_clock(event, opened))

    def _detect_inband(self) -> None:
        """One detector pass over every call that needs in-band DTMF."""
        for slot, event in self.inband.tick():
            stream = self._inband_streams.get(slot)
            if stream is not None:
                stream._digit(_on_clock(event, self._inband_opened.get(slot, 0.0)))

    def _expire_events(self, now: float) -> None:
        """Report RFC 4733 presses whose end packets were all lost."""
        for stream in list(self._streams):
            events = stream._events
            if events is not None and not stream.closed:
                for event in events.expire(now):
                    stream._digit(event)

    # --- the tick ----------------------------------------------------------------------

    def _start(self) -> None:
        self._epoch = self.reactor.seconds()
        self._frames = 0
        loop = LoopingCall(self._tick)
        loop.clock = self.reactor
        self._loop = loop
        loop.start(self.interval, now=False).addErrback(
            lambda f: _log.failure("RTP tick stopped", failure=f)
        )

    def _forget(self, stream: MediaStream) -> None:
        self._streams.pop(stream, None)
        if not self._streams and self._loop is not None:
            loop, self._loop = self._loop, None
            if loop.running:
                loop.stop()

    def _tick(self) -> None:
        self.ticks += 1
        now = self.reactor.seconds()
        due = int((now - self._epoch) / self.interval + 1e-6)
        behind = due - self._frames
        if behind == 0:
            return  # an early tick: nothing due yet
        if behind < 0 or behind > _RESYNC_FRAMES:
            # the wall clock stepped: re-anchor rather than stall or skip a lot
            due = self._frames + 1
            self._epoch = now - due * self.interval
            behind = 1
        send = min(behind, self.max_burst)
        skip = behind - send
        self._frames = due
        self.frames_skipped += skip
        for stream in list(self._streams):
            if stream.closed:
                continue
            try:
                stream._advance(skip, send, self.idle_silence)
            except Exception:
                _log.failure("RTP stream {stream!r} failed in the tick", stream=stream)
        if self._inband_streams:
            try:
                self._detect_inband()
            except Exception:
                _log.failure("in-band DTMF detection failed in the tick")
        if self.ticks % EXPIRE_EVERY_TICKS == 0:
            self._expire_events(now)
