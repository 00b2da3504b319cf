"""The Twisted RTP engine: ports, the shared tick, pacing, latching, and real UDP."""

from __future__ import annotations

import itertools
import random
import socket

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock

from ivr.media.player import Player
from ivr.media.rtp import RtpPacket, parse_rtp, seq_add, ts_add
from ivr.media.session import MediaEngine, NoFreePort
from ivr.sip.sdp import answer, parse_sdp

TICK = 0.02


class FakeSocket:
    def __init__(self, family: int) -> None:
        self.family = family
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.fail = False
        self.clock: Clock | None = None  # set: each send costs `cost` seconds of it
        self.cost = 0.0
        self.times: list[float] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        if self.fail:
            raise BlockingIOError("buffer full")
        self.sent.append((data, addr))
        if self.clock is not None:
            self.clock.rightNow += self.cost
            self.times.append(self.clock.rightNow)
        return len(data)


class FakePort:
    def __init__(self, reactor: FakeReactor, port: int, protocol, interface: str) -> None:
        self.reactor, self.port, self.protocol, self.interface = reactor, port, protocol, interface
        v6 = ":" in interface
        self.socket = FakeSocket(socket.AF_INET6 if v6 else socket.AF_INET)
        self.open = True

    def getHost(self):
        return (IPv6Address if ":" in self.interface else IPv4Address)(
            "UDP", self.interface, self.port
        )

    def stopListening(self):
        self.open = False
        del self.reactor.bound[self.port]
        return None

    def deliver(self, data: bytes, source: tuple[str, int]) -> None:
        self.protocol.datagramReceived(data, source)


class FakeReactor(Clock):
    """A clock that can also "bind" UDP ports."""

    def __init__(self, busy: set[int] | None = None) -> None:
        super().__init__()
        self.bound: dict[int, FakePort] = {}
        self.busy = busy or set()

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        if port in self.busy or port in self.bound:
            raise CannotListenError(interface, port, OSError("in use"))
        bound = self.bound[port] = FakePort(self, port, protocol, interface)
        protocol.makeConnection(bound)
        return bound


def make_engine(reactor=None, **kwargs) -> tuple[FakeReactor, MediaEngine]:
    reactor = reactor or FakeReactor()
    kwargs.setdefault("host", "127.0.0.1")
    engine = MediaEngine(
        reactor,
        kwargs.pop("host"),
        kwargs.pop("port_min", 20000),
        kwargs.pop("port_max", 20998),
        random.Random(kwargs.pop("seed", 1)),
        **kwargs,
    )
    return reactor, engine


def open_call(engine: MediaEngine, **kwargs):
    kwargs.setdefault("remote", ("192.0.2.10", 4000))
    kwargs.setdefault("payload_type", 0)
    return engine.open_stream(**kwargs)


def sent(reactor: FakeReactor, stream) -> list[RtpPacket]:
    return [parse_rtp(d) for d, _ in reactor.bound[stream.local_port].socket.sent]


def frames(n: int, codec: str = "PCMU") -> Player:
    return Player([bytes([i + 1]) * 160 for i in range(n)], codec=codec)


def run(reactor: Clock, ticks: int) -> None:
    for _ in range(ticks):
        reactor.advance(TICK)


# --- ports -----------------------------------------------------------------------------


def test_ports_are_even_random_in_range_and_released():
    reactor, engine = make_engine()
    streams = [open_call(engine) for _ in range(20)]
    ports = [s.local_port for s in streams]
    assert all(p % 2 == 0 and 20000 <= p <= 20998 for p in ports)
    assert len(set(ports)) == 20 and ports != sorted(ports)
    assert engine.ports_in_use == set(ports)
    streams[0].close()
    assert ports[0] not in engine.ports_in_use and ports[0] not in reactor.bound
    # the same seed gives the same ports
    assert open_call(make_engine()[1]).local_port == ports[0]


def test_busy_ports_are_skipped_and_an_exhausted_range_says_so():
    reactor = FakeReactor(busy={10000, 10004})
    _, engine = make_engine(reactor, port_min=9999, port_max=10005)  # even: 10000..10004
    got = {open_call(engine).local_port}
    assert got == {10002}
    with pytest.raises(NoFreePort, match="10000-10005"):
        open_call(engine)


def test_engine_validates_its_configuration():
    for lo, hi in ((0, 10), (20, 10), (11, 11)):
        with pytest.raises(ValueError):
            make_engine(port_min=lo, port_max=hi)
    with pytest.raises(ValueError):
        make_engine(host="media.example")
    with pytest.raises(ValueError):
        make_engine(max_burst=0)


# --- the tick --------------------------------------------------------------------------


def test_one_shared_tick_for_every_stream_and_none_when_idle():
    reactor, engine = make_engine()
    assert reactor.getDelayedCalls() == []
    streams = [open_call(engine) for _ in range(50)]
    assert len(reactor.getDelayedCalls()) == 1
    run(reactor, 3)
    assert all(len(sent(reactor, s)) == 3 for s in streams)
    assert engine.ticks == 3
    engine.close()
    assert reactor.getDelayedCalls() == []
    assert engine.streams == () and engine.ports_in_use == frozenset()


def test_play_sends_paced_frames_and_reports_done_after_the_last():
    reactor, engine = make_engine(seed=5)
    expect = random.Random(5)
    ssrc, seq, ts = expect.getrandbits(32), expect.getrandbits(16), expect.getrandbits(32)
    stream = open_call(engine)
    done: list[float] = []
    player = frames(3)
    stream.play(player, lambda: done.append(reactor.seconds()))
    run(reactor, 2)
    assert done == []
    reactor.advance(TICK)
    assert done == [pytest.approx(0.06)]
    pkts = sent(reactor, stream)
    assert [p.payload for p in pkts] == [bytes([i]) * 160 for i in (1, 2, 3)]
    assert [p.sequence for p in pkts] == [seq_add(seq, i) for i in range(3)]
    assert [p.timestamp for p in pkts] == [ts_add(ts, 160 * i) for i in range(3)]
    assert {p.ssrc for p in pkts} == {ssrc}
    assert [p.marker for p in pkts] == [True, False, False]
    assert {p.payload_type for p in pkts} == {0}
    assert reactor.bound[stream.local_port].socket.sent[0][1] == ("192.0.2.10", 4000)
    assert not stream.playing and stream.sent == 3
    # afterwards: silence keeps the stream (and the peer's RTP timeout) alive
    run(reactor, 2)
    tail = sent(reactor, stream)[3:]
    assert [p.payload for p in tail] == [b"\xff" * 160] * 2
    assert not tail[0].marker


def test_without_idle_silence_nothing_is_sent_between_prompts():
    reactor, engine = make_engine(idle_silence=False)
    stream = open_call(engine)
    run(reactor, 3)
    assert sent(reactor, stream) == []
    stream.play(frames(2))
    run(reactor, 4)
    pkts = sent(reactor, stream)
    assert [p.marker for p in pkts] == [True, False]
    assert pkts[1].timestamp - pkts[0].timestamp == 160
    stream.play(frames(1))
    run(reactor, 1)
    third = sent(reactor, stream)[2]
    assert third.marker  # a new talkspurt
    assert (third.timestamp - pkts[1].timestamp) % 2**32 == 160 * 3  # time kept running


def test_a_late_tick_catches_up_with_a_bounded_burst():
    reactor, engine = make_engine(max_burst=2)
    stream = open_call(engine)
    player = frames(10)
    stream.play(player)
    run(reactor, 1)
    reactor.advance(5 * TICK)  # the reactor was busy for 100 ms
    pkts = sent(reactor, stream)
    assert [p.payload[0] for p in pkts] == [1, 5, 6]  # frames 2-4 lost, 5-6 sent
    assert pkts[1].timestamp - pkts[0].timestamp == 160 * 4
    assert player.position == 6 and engine.frames_skipped == 3
    run(reactor, 4)
    assert [p.payload[0] for p in sent(reactor, stream)] == [1, 5, 6, 7, 8, 9, 10]


def test_pacing_does_not_drift_with_jittery_ticks():
    reactor, engine = make_engine()
    stream = open_call(engine)
    rng = random.Random(3)
    elapsed = 0.0
    for _ in range(500):
        step = TICK * rng.uniform(0.5, 1.5)
        reactor.advance(step)
        elapsed += step
    assert len(sent(reactor, stream)) == pytest.approx(elapsed / TICK, abs=1)
    stamps = [p.timestamp for p in sent(reactor, stream)]
    assert stamps[-1] - stamps[0] == 160 * (len(stamps) - 1 + engine.frames_skipped)


def test_a_clock_step_reanchors_instead_of_skipping_seconds_of_audio():
    reactor, engine = make_engine()
    stream = open_call(engine)
    player = frames(100)
    stream.play(player)
    run(reactor, 5)
    reactor.advance(5.0)  # the wall clock stepped forward (or the process was stopped)
    assert player.position == 6 and engine.frames_skipped == 0
    run(reactor, 3)
    assert player.position == 9
    assert [p.payload[0] for p in sent(reactor, stream)] == list(range(1, 10))


def test_stop_is_barge_in_without_on_done_and_play_replaces():
    reactor, engine = make_engine()
    stream = open_call(engine)
    done: list[str] = []
    stream.play(frames(10), lambda: done.append("first"))
    run(reactor, 2)
    stream.stop()
    run(reactor, 1)
    assert done == []
    assert sent(reactor, stream)[-1].payload == b"\xff" * 160
    stream.play(frames(10), lambda: done.append("second"))
    run(reactor, 1)
    stream.play(frames(1), lambda: done.append("third"))
    run(reactor, 2)
    assert done == ["third"]


def test_on_done_may_chain_the_next_prompt():
    reactor, engine = make_engine()
    stream = open_call(engine)
    stream.play(frames(1), lambda: stream.play(Player([b"\x09" * 160], codec="PCMU")))
    run(reactor, 2)
    assert [p.payload[0] for p in sent(reactor, stream)] == [1, 9]


def test_on_done_may_close_the_stream():
    reactor, engine = make_engine(max_burst=3)
    stream = open_call(engine)
    sock = reactor.bound[stream.local_port].socket
    stream.play(frames(1), stream.close)
    reactor.advance(3 * TICK)  # a late tick with three frames due
    assert [parse_rtp(d).payload[0] for d, _ in sock.sent] == [1]
    assert stream.closed and engine.streams == ()


@pytest.mark.parametrize("direction", ["recvonly", "inactive"])
def test_not_sending_directions_still_time_the_prompt(direction):
    reactor, engine = make_engine()
    stream = open_call(engine, direction=direction)
    done: list[bool] = []
    stream.play(frames(3), lambda: done.append(True))
    run(reactor, 3)
    assert done == [True] and sent(reactor, stream) == []


def test_hold_address_sends_nothing_until_resumed():
    reactor, engine = make_engine()
    stream = open_call(engine, remote=("0.0.0.0", 4000))
    run(reactor, 2)
    assert stream.remote is None and sent(reactor, stream) == []
    stream.configure(remote=("192.0.2.10", 4002), payload_type=0)
    run(reactor, 1)
    assert reactor.bound[stream.local_port].socket.sent[-1][1] == ("192.0.2.10", 4002)
    assert sent(reactor, stream)[0].marker


def test_send_errors_are_counted_not_raised():
    reactor, engine = make_engine()
    stream = open_call(engine)
    reactor.bound[stream.local_port].socket.fail = True
    run(reactor, 2)
    assert (stream.sent, stream.send_errors) == (0, 2)
    assert len(reactor.getDelayedCalls()) == 1  # the tick survived


def test_a_failing_callback_does_not_stop_the_tick():
    reactor, engine = make_engine()
    bad, good = open_call(engine), open_call(engine)

    def boom() -> None:
        raise RuntimeError("controller bug")

    bad.play(frames(1), boom)
    run(reactor, 3)
    assert len(sent(reactor, good)) == 3 and len(sent(reactor, bad)) == 3


# --- configuration ---------------------------------------------------------------------


def test_configure_from_an_sdp_answer():
    reactor, engine = make_engine()
    stream = engine.open_stream(peer_host="127.0.0.1")
    offer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        "m=audio 10012 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    result = answer(offer, engine.host, stream.local_port, session_id=1, version=1)
    assert f"m=audio {stream.local_port} RTP/AVP 8 101" in result.body.decode()
    stream.apply(result.media)
    assert (stream.codec, stream.payload_type, stream.telephone_event_pt) == ("PCMA", 8, 101)
    assert stream.remote == ("127.0.0.2", 10012) and stream.peer_host == "127.0.0.1"
    run(reactor, 1)
    assert sent(reactor, stream)[0].payload == b"\xd5" * 160
    with pytest.raises(ValueError, match="player encodes PCMU"):
        stream.play(frames(1, "PCMU"))


def test_open_stream_with_media_params():
    _, engine = make_engine()
    offer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        "m=audio 7000 RTP/AVP 0\r\na=sendonly\r\n"
    )
    media = answer(offer, "127.0.0.1", 30000, session_id=1, version=1).media
    stream = engine.open_stream(media=media, peer_host="192.0.2.1")
    assert (stream.direction, stream.remote) == ("recvonly", ("192.0.2.9", 7000))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"remote": ("media.example", 4000)}, "must be an IP address"),
        ({"remote": ("2001:db8::1", 4000)}, "cannot send to IPv6"),
        ({"remote": ("192.0.2.1", 70000)}, "out of range"),
        ({"payload_type": 18}, "unsupported codec"),
        ({"payload_type": 0, "telephone_event_pt": 0}, "share a payload type"),
        ({"direction": "both"}, "unknown direction"),
    ],
)
def test_bad_configuration_is_rejected_and_the_port_released(kwargs, message):
    reactor, engine = make_engine()
    with pytest.raises(ValueError, match=message):
        open_call(engine, **kwargs)
    assert engine.ports_in_use == frozenset() and reactor.bound == {}
    assert reactor.getDelayedCalls() == []


def test_closed_or_unconfigured_streams_refuse_to_play():
    _, engine = make_engine()
    stream = engine.open_stream()
    with pytest.raises(RuntimeError, match="configure"):
        stream.play(frames(1))
    stream.close()
    stream.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        stream.play(frames(1))
    with pytest.raises(RuntimeError, match="closed"):
        stream.configure(remote=None, payload_type=0)


def test_ipv4_peer_on_a_dual_stack_ipv6_socket():
    reactor, engine = make_engine(host="::")
    stream = open_call(engine, remote=("192.0.2.10", 4000))
    run(reactor, 1)
    assert reactor.bound[stream.local_port].socket.sent[0][1] == ("::ffff:192.0.2.10", 4000)
    v6 = open_call(engine, remote=("2001:db8::5", 4000))
    run(reactor, 1)
    assert reactor.bound[v6.local_port].socket.sent[0][1] == ("2001:db8::5", 4000)


# --- receiving -------------------------------------------------------------------------


def rtp(seq: int, pt: int = 0, payload: bytes = b"\xff" * 160) -> bytes:
    return RtpPacket(
        payload_type=pt, sequence=seq, timestamp=seq * 160, ssrc=9, payload=payload
    ).pack()


def test_incoming_media_is_latched_like_strictrtp():
    reactor, engine = make_engine()
    got: list[RtpPacket] = []
    # baresip: SDP says 127.0.0.2, media comes from the signalling host 127.0.0.1
    stream = open_call(
        engine, remote=("127.0.0.2", 10012), peer_host="127.0.0.1", on_rtp=got.append
    )
    port = reactor.bound[stream.local_port]
    port.deliver(rtp(1), ("127.0.0.1", 10012))
    port.deliver(rtp(2, pt=101, payload=b"\x01\x0a\x00\xa0"), ("127.0.0.1", 10012))
    port.deliver(rtp(3), ("127.0.0.9", 10012))  # someone else
    port.deliver(b"\x80\x00", ("127.0.0.1", 10012))  # too short
    port.deliver(bytes([0x81, 200]) + bytes(26), ("127.0.0.1", 10013))  # RTCP
    assert [p.sequence for p in got] == [1, 2]
    assert got[1].payload_type == 101
    assert (stream.received, stream.dropped_foreign, stream.malformed, stream.rtcp) == (2, 1, 1, 1)


def test_unknown_source_is_learned_after_probation_and_reinvite_relearns():
    reactor, engine = make_engine(probation=3)
    got: list[int] = []
    stream = open_call(engine, remote=("192.0.2.10", 4000), on_rtp=lambda p: got.append(p.sequence))
    port = reactor.bound[stream.local_port]
    for seq in (10, 11, 12, 13):
        port.deliver(rtp(seq), ("203.0.113.5", 6000))  # NATed: neither SDP nor signalling
    assert got == [12, 13] and stream.dropped_learning == 2
    stream.configure(remote=("192.0.2.20", 4000), payload_type=0)  # re-INVITE
    port.deliver(rtp(14), ("203.0.113.5", 6000))
    port.deliver(rtp(15), ("192.0.2.20", 4000))
    assert got == [12, 13, 15]


def test_symmetric_rtp_sends_back_to_the_latched_source():
    reactor, engine = make_engine(symmetric_rtp=True, probation=1)
    stream = open_call(engine, remote=("10.0.0.5", 4000))
    reactor.bound[stream.local_port].deliver(rtp(1), ("203.0.113.5", 6000))
    run(reactor, 1)
    assert reactor.bound[stream.local_port].socket.sent[-1][1] == ("203.0.113.5", 6000)


def test_a_failing_on_rtp_callback_is_contained():
    reactor, engine = make_engine()

    def boom(packet: RtpPacket) -> None:
        raise RuntimeError("dtmf bug")

    stream = open_call(engine, peer_host="192.0.2.10", on_rtp=boom)
    reactor.bound[stream.local_port].deliver(rtp(1), ("192.0.2.10", 4000))
    assert stream.received == 1
    stream.close()
    assert stream.on_rtp is None


# --- real UDP on loopback --------------------------------------------------------------


class Receiver(DatagramProtocol):
    def __init__(self, wanted: int) -> None:
        self.packets: list[tuple[RtpPacket, tuple[str, int]]] = []
        self.wanted = wanted
        self.done: defer.Deferred[None] = defer.Deferred()

    def datagramReceived(self, datagram: bytes, addr) -> None:
        self.packets.append((parse_rtp(datagram), addr))
        if len(self.packets) == self.wanted:
            self.done.callback(None)


@pytest_twisted.inlineCallbacks
def test_real_udp_loopback_receives_the_frames_and_answers_come_back():
    receiver = Receiver(wanted=5)
    listening = reactor.listenUDP(0, receiver, interface="127.0.0.1")
    engine = MediaEngine(reactor, "127.0.0.1", 40000, 59998, random.Random(), idle_silence=False)
    got: list[RtpPacket] = []
    try:
        stream = engine.open_stream(
            remote=("127.0.0.1", listening.getHost().port),
            payload_type=8,
            peer_host="127.0.0.1",
            on_rtp=got.append,
        )
        finished: defer.Deferred[None] = defer.Deferred()
        player = Player([bytes([0x10 + i]) * 160 for i in range(5)], codec="PCMA")
        stream.play(player, lambda: finished.callback(None))
        yield defer.gatherResults([receiver.done, finished]).addTimeout(5, reactor)
        assert [p.payload[0] for p, _ in receiver.packets] == [0x10, 0x11, 0x12, 0x13, 0x14]
        assert {addr for _, addr in receiver.packets} == {("127.0.0.1", stream.local_port)}
        seqs = [p.sequence for p, _ in receiver.packets]
        assert seqs == [seq_add(seqs[0], i) for i in range(5)]
        # and the other way: the peer's RTP reaches on_rtp through the latch
        arrived: defer.Deferred[None] = defer.Deferred()
        stream.on_rtp = lambda p: (got.append(p), arrived.callback(None))
        listening.write(rtp(77), ("127.0.0.1", stream.local_port))
        yield arrived.addTimeout(5, reactor)
        assert [p.sequence for p in got] == [77]
    finally:
        engine.close()
        yield listening.stopListening()


# --- DTMF from the received media --------------------------------------------------------


def _event_packets(digit_code: int, seq: int, ts: int, *, with_end: bool) -> list[bytes]:
    """RFC 4733 packets of one press: three updates, then (optionally) three end packets."""
    out = []
    for i, duration in enumerate((160, 320, 480)):
        payload = bytes([digit_code, 10, duration >> 8, duration & 0xFF])
        packet = RtpPacket(
            payload_type=101,
            sequence=seq + i,
            timestamp=ts,
            ssrc=0x1234,
            payload=payload,
            marker=i == 0,
        )
        out.append(packet.pack())
    if with_end:
        for i in range(3):
            payload = bytes([digit_code, 0x80 | 10, 640 >> 8, 640 & 0xFF])
            end = RtpPacket(
                payload_type=101, sequence=seq + 3 + i, timestamp=ts, ssrc=0x1234, payload=payload
            )
            out.append(end.pack())
    return out


def test_rfc4733_digits_reach_the_listener_once() -> None:
    reactor, engine = make_engine()
    stream = open_call(engine, telephone_event_pt=101)
    digits: list[str] = []
    stream.listen_for_digits(lambda e: digits.append(e.digit), inband=True)
    port = reactor.bound[stream.local_port]
    for data in _event_packets(5, 100, 8000, with_end=True):
        port.deliver(data, ("192.0.2.10", 4000))
    run(reactor, 5)
    assert digits == ["5"]


def test_rfc4733_press_whose_end_packets_were_lost_is_still_reported() -> None:
    reactor, engine = make_engine()
    stream = open_call(engine, telephone_event_pt=101)
    digits: list[str] = []
    stream.listen_for_digits(lambda e: digits.append(e.digit), inband=False)
    port = reactor.bound[stream.local_port]
    for data in _event_packets(9, 200, 16000, with_end=False):
        port.deliver(data, ("192.0.2.10", 4000))
    run(reactor, 5)
    assert digits == []
    run(reactor, 40)  # past the receiver's timeout
    assert digits == ["9"]


def test_inband_digits_are_timed_on_the_reactor_clock() -> None:
    from ivr.dtmf.generate import generate
    from ivr.media import g711

    reactor, engine = make_engine()
    reactor.advance(1000.0)  # the channel opens long after the reactor's epoch
    stream = open_call(engine)
    events = []
    stream.listen_for_digits(events.append, inband=True)
    port = reactor.bound[stream.local_port]
    audio = g711.ulaw_encode(generate("7", lead_ms=100, trail_ms=300))
    for i in range(0, len(audio) - 159, 160):
        packet = RtpPacket(
            payload_type=0,
            sequence=300 + i // 160,
            timestamp=i,
            ssrc=0x99,
            payload=bytes(audio[i : i + 160]),
        )
        port.deliver(packet.pack(), ("192.0.2.10", 4000))
        reactor.advance(TICK)
    run(reactor, 10)
    assert [e.digit for e in events] == ["7"]
    assert 1000.0 < events[0].start < reactor.seconds()


# --- the struct-of-arrays send path --------------------------------------------------------


def test_the_players_position_is_live_while_playing_and_kept_after():
    reactor, engine = make_engine()
    stream = open_call(engine)
    player = frames(5)
    stream.play(player)
    run(reactor, 2)
    assert (player.position, player.remaining_frames, player.done) == (2, 3, False)
    stream.stop()
    run(reactor, 2)
    assert player.position == 2 and player.stopped
    other = open_call(engine)
    with pytest.raises(ValueError, match="160-sample frames"):
        other.play(Player([b"\x01" * 160], codec="PCMU", frame_samples=80))


def test_a_player_stopped_directly_ends_like_the_prompt_ran_out():
    reactor, engine = make_engine()
    stream = open_call(engine)
    done: list[int] = []
    player = frames(10)
    stream.play(player, lambda: done.append(player.position))
    run(reactor, 2)
    player.stop()
    run(reactor, 1)
    assert done == [2] and not stream.playing
    assert [p.payload[0] for p in sent(reactor, stream)] == [1, 2, 0xFF]


def test_one_player_cannot_play_on_two_streams_at_once():
    _, engine = make_engine()
    first, second = open_call(engine), open_call(engine)
    player = frames(3)
    first.play(player)
    with pytest.raises(RuntimeError, match="another stream"):
        second.play(player)
    assert first.playing and player.owner is first  # the refusal changed nothing
    first.stop()
    second.play(player)
    assert second.playing and player.owner is second


def test_many_streams_with_their_own_prompts_survive_arena_compaction():
    reactor, engine = make_engine(port_max=29998)
    moves: list[dict[int, int]] = []
    place = engine._arena.place

    def spy(buffer: bytes):
        region, moved = place(buffer)
        moves.append(moved)
        return region, moved

    engine._arena.place = spy  # type: ignore[method-assign]
    scratch = open_call(engine, remote=("192.0.2.10", 4999))
    streams, players = [], []
    for i in range(40):  # 40 prompts of 150 frames: more than the arena's first 4096 rows
        stream = open_call(engine, remote=("192.0.2.10", 5000 + i))
        player = Player([bytes([(i + k) % 250 + 1]) * 160 for k in range(150)], codec="PCMU")
        stream.play(player)
        streams.append(stream)
        players.append(player)
        scratch.play(frames(60))  # replaces the last one: a dead region between live ones
        run(reactor, 1)
    run(reactor, 200)
    assert any(moves), "the arena never had to move a playing prompt"
    for i, stream in enumerate(streams):
        payloads = [p.payload for p in sent(reactor, stream)]
        expect = [bytes([(i + k) % 250 + 1]) * 160 for k in range(150)]
        assert payloads[:150] == expect
        assert set(payloads[150:]) == {b"\xff" * 160}
        seqs = [p.sequence for p in sent(reactor, stream)]
        assert seqs == [seq_add(seqs[0], k) for k in range(len(seqs))]
        assert players[i].done and stream.sent == len(payloads)


def test_a_stream_opened_by_a_callback_waits_for_the_next_tick_and_counters_survive_close():
    reactor, engine = make_engine(max_burst=3)
    gone, first = open_call(engine), open_call(engine)
    run(reactor, 1)
    gone.close()  # its place in the arrays (slot 0) is free for the next stream
    assert gone.sent == 1 and gone.send_errors == 0
    opened = []
    later = frames(2)

    def replace() -> None:
        first.close()
        opened.append(open_call(engine))
        opened[0].play(later)

    first.play(frames(1), replace)
    reactor.advance(3 * TICK)  # a late tick with three frames due
    assert first.closed and first.sent == 2 and first.send_errors == 0
    assert opened[0]._slot == 0  # reused, yet not part of the tick that was running
    assert sent(reactor, opened[0]) == [] and later.position == 0
    run(reactor, 1)
    assert [p.payload[0] for p in sent(reactor, opened[0])] == [1]
    assert engine.streams == (opened[0],)


def test_sequence_and_timestamp_wrap_in_the_arrays():
    reactor, engine = make_engine()
    stream = open_call(engine)
    slot = stream._slot
    engine._table.seq[slot] = 65535
    engine._table.ts[slot] = 2**32 - 160
    run(reactor, 2)
    pkts = sent(reactor, stream)
    assert [(p.sequence, p.timestamp) for p in pkts] == [(65535, 2**32 - 160), (0, 0)]


def test_pacing_recovers_after_a_stall_even_when_a_frame_takes_most_of_the_tick():
    reactor, engine = make_engine(max_burst=10)
    streams = [open_call(engine, remote=("192.0.2.10", 4000 + i)) for i in range(10)]
    for stream in streams:
        sock = reactor.bound[stream.local_port].socket
        sock.clock, sock.cost = reactor, 0.0012  # one frame for all: 12 ms of every 20

    def run_for(seconds: float) -> None:
        end = reactor.seconds() + seconds
        while reactor.seconds() < end:
            reactor.advance(0.0005)  # a reactor polling often, as the real one does

    run_for(0.5)
    reactor.rightNow += 0.025  # the process was stalled for 25 ms
    run_for(1.0)
    times = reactor.bound[streams[0].local_port].socket.times
    gaps = [b - a for a, b in itertools.pairwise(times[-30:])]
    # back to one frame per stream every 20 ms (a LoopingCall stays in 2-frame bursts)
    assert max(abs(g - TICK) for g in gaps) < 0.002, gaps
    assert engine.frames_skipped == 0
    stamps = [p.timestamp for p in sent(reactor, streams[0])]
    assert all((b - a) % 2**32 == 160 for a, b in itertools.pairwise(stamps))
