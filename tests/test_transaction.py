"""RFC 3261 §17 / RFC 6026 transaction state machines, driven by a Twisted Clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from ivr.sip.build import make_response
from ivr.sip.message import Request, Response, parse_message
from ivr.sip.timers import TimerConfig
from ivr.sip.transaction import (
    ACCEPTED,
    CALLING,
    COMPLETED,
    CONFIRMED,
    PROCEEDING,
    TERMINATED,
    TRYING,
    AckTimeout,
    Action,
    CancelTimer,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    PassToTU,
    SendMessage,
    StartTimer,
    Terminated,
    Timeout,
    TransactionError,
    TransportError,
    TwoXXRetransmitter,
)

DEST = ("udp", "192.0.2.7", 5060)
BRANCH = "z9hG4bKnashds8"


def request(method: str = "INVITE", *, cseq: int = 1, extra: str = "") -> Request:
    raw = (
        f"{method} sip:bob@biloxi.example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch={BRANCH}\r\n"
        "Max-Forwards: 70\r\n"
        "To: Bob <sip:bob@biloxi.example.com>\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(raw.encode())
    assert isinstance(message, Request)
    return message


def ack_for(invite: Request, response: Response) -> Request:
    """The ACK a UAC sends for a non-2xx (same branch, To from the response)."""
    ack = request("ACK")
    ack.headers.set("to", response.headers.get("to") or "")
    return ack


class Harness:
    """A minimal adapter: performs actions, maps timers to ``Clock.callLater``."""

    def __init__(self, machine: object) -> None:
        self.machine = machine
        self.clock = Clock()
        self.calls: dict[str, object] = {}
        self.sent: list[tuple[float, object]] = []
        self.to_tu: list[tuple[float, object]] = []
        self.events: list[tuple[float, Action]] = []  # Timeout, TransportError, Terminated, ...

    @property
    def now(self) -> float:
        return self.clock.seconds()

    def run(self, actions: list[Action]) -> list[Action]:
        for action in actions:
            if isinstance(action, SendMessage):
                assert action.dest == DEST
                self.sent.append((self.now, action.message))
            elif isinstance(action, StartTimer):
                assert action.name not in self.calls, f"timer {action.name} already running"
                self.calls[action.name] = self.clock.callLater(
                    action.delay, self._fire, action.name
                )
            elif isinstance(action, CancelTimer):
                # Cancels must name running timers: a stray cancel is a machine bug.
                self.calls.pop(action.name).cancel()  # type: ignore[attr-defined]
            elif isinstance(action, PassToTU):
                self.to_tu.append((self.now, action.message))
            else:
                self.events.append((self.now, action))
        return actions

    def advance(self, seconds: float) -> None:
        """Advance the clock, stopping at every due call so each fires at its own time."""
        end = self.now + seconds
        while True:
            step = min((c.getTime() for c in self.clock.getDelayedCalls()), default=end)
            if step >= end:
                break
            self.clock.advance(step - self.now)
        self.clock.advance(end - self.now)

    def _fire(self, name: str) -> None:
        del self.calls[name]
        self.run(self.machine.timer_fired(name, self.now))  # type: ignore[attr-defined]

    def send_times(self, message: object) -> list[float]:
        return [t for t, m in self.sent if m is message]


# -- INVITE server -------------------------------------------------------------


def test_ist_start_sends_100_trying_and_passes_invite_up() -> None:
    invite = request()
    tx = InviteServerTransaction(invite, DEST, False, 0.0)
    actions = tx.start(0.0)
    assert len(actions) == 2
    trying = actions[0]
    assert isinstance(trying, SendMessage) and trying.dest == DEST
    assert isinstance(trying.message, Response) and trying.message.status == 100
    assert "tag=" not in (trying.message.headers.get("to") or "")
    assert actions[1] == PassToTU(invite)
    assert tx.state == PROCEEDING
    # A retransmitted INVITE re-sends the 100.
    assert tx.receive(request(), 0.1) == [SendMessage(trying.message, DEST)]


def test_ist_without_trying_absorbs_retransmission_until_a_provisional() -> None:
    invite = request()
    tx = InviteServerTransaction(invite, DEST, False, 0.0, trying=False)
    assert tx.start(0.0) == [PassToTU(invite)]
    assert tx.receive(request(), 0.2) == []
    ringing = make_response(invite, 180, to_tag="as83")
    assert tx.respond(ringing, 0.3) == [SendMessage(ringing, DEST)]
    assert tx.receive(request(), 0.4) == [SendMessage(ringing, DEST)]
    assert tx.state == PROCEEDING


def test_ist_486_retransmitted_by_timer_g_until_h_over_udp() -> None:
    invite = request()
    tx = InviteServerTransaction(invite, DEST, False, 0.0)
    h = Harness(tx)
    busy = make_response(invite, 486, to_tag="as83")
    assert h.run(tx.respond(busy, h.now)) == [
        SendMessage(busy, DEST),
        StartTimer("G", 0.5),
        StartTimer("H", 32.0),
    ]
    h.advance(0.5)
    assert h.send_times(busy) == [0.0, 0.5]  # the DESIGN.md example: re-sent at T1
    h.advance(31.4)
    # G doubles 0.5, 1, 2, then stays at T2 = 4.
    assert h.send_times(busy) == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert tx.state == COMPLETED and not h.events
    h.advance(0.1)
    assert h.events == [(32.0, Timeout()), (32.0, Terminated())]
    assert tx.state == TERMINATED and not h.calls
    assert len(h.sent) == 11


def test_ist_ack_confirms_and_timer_i_terminates_over_udp() -> None:
    invite = request()
    tx = InviteServerTransaction(invite, DEST, False, 0.0)
    h = Harness(tx)
    busy = make_response(invite, 486, to_tag="as83")
    h.run(tx.respond(busy, 0.0))
    h.advance(1.0)
    ack = ack_for(invite, busy)
    assert h.run(tx.receive(ack, h.now)) == [
        CancelTimer("G"),
        CancelTimer("H"),
        StartTimer("I", 5.0),
    ]
    assert tx.state == CONFIRMED
    assert tx.receive(ack, h.now) == []  # retransmitted ACK absorbed
    assert tx.receive(request(), h.now) == []  # late INVITE absorbed
    h.advance(4.9)
    assert tx.state == CONFIRMED
    h.advance(0.1)
    assert h.events == [(6.0, Terminated())]
    assert h.send_times(busy) == [0.0, 0.5]


def test_ist_over_tcp_never_retransmits_and_ack_terminates_at_once() -> None:
    invite = request()
    tx = InviteServerTransaction(invite, DEST, True, 0.0)
    h = Harness(tx)
    busy = make_response(invite, 486, to_tag="as83")
    assert h.run(tx.respond(busy, 0.0)) == [SendMessage(busy, DEST), StartTimer("H", 32.0)]
    h.advance(10)
    assert h.send_times(busy) == [0.0]
    assert h.run(tx.receive(ack_for(invite, busy), h.now)) == [CancelTimer("H"), Terminated()]
    assert tx.state == TERMINATED and not h.calls


def test_ist_timer_h_over_tcp_reports_timeout() -> None:
    invite = request()
    tx = InviteServerTransaction(invite, DEST, True, 0.0)
    h = Harness(tx)
    h.run(tx.respond(make_response(invite, 603, to_tag="x"), 0.0))
    h.advance(31.9)
    assert not h.events
    h.advance(0.1)
    assert h.events == [(32.0, Timeout()), (32.0, Terminated())]


def test_ist_completed_resends_final_on_invite_retransmission() -> None:
    invite = request()
    tx = InviteServerTransaction(invite, DEST, False, 0.0, trying=False)
    tx.respond(make_response(invite, 180, to_tag="as83"), 0.0)
    busy = make_response(invite, 486, to_tag="as83")
    tx.respond(busy, 0.1)
    assert tx.receive(request(), 0.2) == [SendMessage(busy, DEST)]


def test_ist_2xx_goes_accepted_and_timer_l_terminates() -> None:
    invite = request()
    tx = InviteServerTransaction(invite, DEST, False, 0.0)
    h = Harness(tx)
    h.run(tx.start(0.0))
    ok = make_response(invite, 200, to_tag="as83")
    assert h.run(tx.respond(ok, 0.0)) == [SendMessage(ok, DEST), StartTimer("L", 32.0)]
    assert tx.state == ACCEPTED
    h.advance(2.0)
    assert h.run(tx.receive(request(), h.now)) == []  # INVITE retransmission absorbed
    ack = request("ACK")
    assert tx.receive(ack, h.now) == [PassToTU(ack)]  # ACK for the 2xx goes to the TU
    assert h.run(tx.respond(ok, h.now)) == [SendMessage(ok, DEST)]  # TU retransmission
    assert h.send_times(ok) == [0.0, 2.0]
    h.advance(29.9)
    assert tx.state == ACCEPTED
    h.advance(0.1)
    assert h.events[-1] == (32.0, Terminated())
    with pytest.raises(TransactionError):
        tx.receive(request(), h.now)


def test_ist_2xx_over_tcp_still_uses_timer_l() -> None:
    invite = request()
    tx = InviteServerTransaction(invite, DEST, True, 0.0)
    ok = make_response(invite, 200, to_tag="a")
    assert tx.respond(ok, 0.0) == [SendMessage(ok, DEST), StartTimer("L", 32.0)]


def test_ist_timer_g_respects_custom_t1_t2() -> None:
    invite = request()
    tx = InviteServerTransaction(invite, DEST, False, 0.0, TimerConfig(t1=0.1, t2=0.3))
    h = Harness(tx)
    busy = make_response(invite, 480, to_tag="x")
    assert h.run(tx.respond(busy, 0.0))[1:] == [StartTimer("G", 0.1), StartTimer("H", 6.4)]
    h.advance(2.0)
    assert h.send_times(busy) == pytest.approx([0.0, 0.1, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8])


@pytest.mark.parametrize(
    ("setup", "call", "message"),
    [
        ("486", "respond", "200"),  # a second final response
        ("200", "respond", "180"),  # a provisional after a 2xx
        ("200", "respond", "486"),
        ("none", "timer", "G"),  # a stale timer
        ("486", "timer", "L"),
    ],
)
def test_ist_missing_transitions_raise(setup: str, call: str, message: str) -> None:
    invite = request()
    tx = InviteServerTransaction(invite, DEST, False, 0.0)
    if setup != "none":
        tx.respond(make_response(invite, int(setup), to_tag="x"), 0.0)
    with pytest.raises(TransactionError, match="no transition"):
        if call == "respond":
            tx.respond(make_response(invite, int(message), to_tag="x"), 0.1)
        else:
            tx.timer_fired(message, 0.1)


def test_ist_stray_ack_in_proceeding_is_absorbed() -> None:
    tx = InviteServerTransaction(request(), DEST, False, 0.0)
    assert tx.receive(request("ACK"), 0.1) == []
    assert tx.state == PROCEEDING


def test_ist_transport_errors() -> None:
    invite = request()
    tx = InviteServerTransaction(invite, DEST, False, 0.0)
    assert tx.transport_error(0.0) == [TransportError(), Terminated()]

    tx = InviteServerTransaction(invite, DEST, False, 0.0)
    tx.respond(make_response(invite, 486, to_tag="x"), 0.0)
    assert tx.transport_error(0.1) == [
        CancelTimer("G"),
        CancelTimer("H"),
        TransportError(),
        Terminated(),
    ]

    tx = InviteServerTransaction(invite, DEST, True, 0.0)
    tx.respond(make_response(invite, 486, to_tag="x"), 0.0)
    assert tx.transport_error(0.1) == [CancelTimer("H"), TransportError(), Terminated()]

    tx = InviteServerTransaction(invite, DEST, False, 0.0)
    tx.respond(make_response(invite, 200, to_tag="x"), 0.0)
    assert tx.transport_error(0.1) == [TransportError()]  # Accepted keeps absorbing
    assert tx.state == ACCEPTED


# -- non-INVITE server ---------------------------------------------------------


def test_nist_absorbs_then_resends_last_response_and_timer_j_terminates() -> None:
    bye = request("BYE", cseq=2)
    tx = NonInviteServerTransaction(bye, DEST, False, 0.0)
    h = Harness(tx)
    assert tx.start(0.0) == [PassToTU(bye)]
    assert tx.state == TRYING
    assert tx.receive(request("BYE", cseq=2), 0.2) == []  # Trying: absorbed silently
    trying = make_response(bye, 100)
    assert tx.respond(trying, 0.3) == [SendMessage(trying, DEST)]
    assert tx.state == PROCEEDING
    assert tx.receive(request("BYE", cseq=2), 0.4) == [SendMessage(trying, DEST)]
    ok = make_response(bye, 200)
    assert h.run(tx.respond(ok, 0.0)) == [SendMessage(ok, DEST), StartTimer("J", 32.0)]
    assert tx.state == COMPLETED
    h.advance(10)
    assert tx.receive(request("BYE", cseq=2), h.now) == [SendMessage(ok, DEST)]
    h.advance(21.9)
    assert not h.events
    h.advance(0.1)
    assert h.events == [(32.0, Terminated())]
    assert h.send_times(ok) == [0.0]  # a server never retransmits non-INVITE responses itself


def test_nist_over_tcp_terminates_on_final_response() -> None:
    options = request("OPTIONS")
    tx = NonInviteServerTransaction(options, DEST, True, 0.0)
    ok = make_response(options, 200)
    assert tx.respond(ok, 0.0) == [SendMessage(ok, DEST), Terminated()]
    assert tx.state == TERMINATED


def test_nist_final_from_trying_and_errors() -> None:
    options = request("OPTIONS")
    tx = NonInviteServerTransaction(options, DEST, False, 0.0)
    nope = make_response(options, 404)
    assert tx.respond(nope, 0.0) == [SendMessage(nope, DEST), StartTimer("J", 32.0)]
    with pytest.raises(TransactionError):
        tx.respond(make_response(options, 200), 0.1)
    assert tx.transport_error(0.2) == [CancelTimer("J"), TransportError(), Terminated()]


# -- INVITE client -------------------------------------------------------------


def test_ict_timer_a_doubles_until_timer_b_over_udp() -> None:
    invite = request()
    tx = InviteClientTransaction(invite, DEST, False, 0.0)
    h = Harness(tx)
    assert h.run(tx.start(0.0)) == [
        SendMessage(invite, DEST),
        StartTimer("A", 0.5),
        StartTimer("B", 32.0),
    ]
    assert tx.state == CALLING
    h.advance(31.9)
    # Timer A doubles without the T2 cap for INVITE.
    assert h.send_times(invite) == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    h.advance(0.1)
    assert h.events == [(32.0, Timeout()), (32.0, Terminated())]
    assert not h.calls and tx.state == TERMINATED


def test_ict_over_tcp_sends_once_and_times_out() -> None:
    invite = request()
    tx = InviteClientTransaction(invite, DEST, True, 0.0)
    h = Harness(tx)
    assert h.run(tx.start(0.0)) == [SendMessage(invite, DEST), StartTimer("B", 32.0)]
    h.advance(32)
    assert h.send_times(invite) == [0.0]
    assert h.events == [(32.0, Timeout()), (32.0, Terminated())]


def test_ict_provisional_stops_retransmission() -> None:
    invite = request()
    tx = InviteClientTransaction(invite, DEST, False, 0.0)
    h = Harness(tx)
    h.run(tx.start(0.0))
    h.advance(0.6)
    ringing = make_response(invite, 180, to_tag="t1")
    assert h.run(tx.receive(ringing, h.now)) == [
        CancelTimer("A"),
        CancelTimer("B"),
        PassToTU(ringing),
    ]
    assert tx.state == PROCEEDING
    assert tx.receive(ringing, h.now) == [PassToTU(ringing)]
    h.advance(100)
    assert h.send_times(invite) == [0.0, 0.5]
    assert h.to_tu == [(0.6, ringing)]
    assert not h.events and tx.state == PROCEEDING


def test_ict_non_2xx_builds_ack_and_timer_d_over_udp() -> None:
    invite = request(extra="Route: <sip:p1.example.com;lr>\r\nRoute: <sip:p2.example.com;lr>\r\n")
    tx = InviteClientTransaction(invite, DEST, False, 0.0)
    h = Harness(tx)
    h.run(tx.start(0.0))
    busy = make_response(invite, 486, to_tag="callee")
    actions = h.run(tx.receive(busy, 0.0))
    ack = tx.ack
    assert ack is not None
    assert actions == [
        CancelTimer("A"),
        CancelTimer("B"),
        SendMessage(ack, DEST),
        PassToTU(busy),
        StartTimer("D", 32.0),
    ]
    assert ack.method == "ACK" and ack.uri == invite.uri
    assert ack.headers.values("via") == [invite.headers.get("via")]
    assert ack.headers.get("to") == "Bob <sip:bob@biloxi.example.com>;tag=callee"
    assert ack.headers.get("from") == invite.headers.get("from")
    assert ack.headers.get("call-id") == invite.call_id
    assert ack.headers.get("cseq") == "1 ACK"
    assert ack.headers.values("route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
    ]
    assert ack.headers.get("max-forwards") == "70"
    assert tx.state == COMPLETED
    h.advance(5)
    assert tx.receive(busy, h.now) == [SendMessage(ack, DEST)]  # retransmitted final
    assert tx.receive(make_response(invite, 180, to_tag="callee"), h.now) == []
    h.advance(26.9)
    assert not h.events
    h.advance(0.1)
    assert h.events == [(32.0, Terminated())]


def test_ict_non_2xx_over_tcp_terminates_after_ack() -> None:
    invite = request()
    tx = InviteClientTransaction(invite, DEST, True, 0.0)
    tx.start(0.0)
    tx.receive(make_response(invite, 100), 0.1)
    busy = make_response(invite, 600, to_tag="x")
    actions = tx.receive(busy, 0.2)
    assert actions == [SendMessage(tx.ack, DEST), PassToTU(busy), Terminated()]  # type: ignore[arg-type]


def test_ict_2xx_goes_accepted_passes_every_2xx_and_timer_m_terminates() -> None:
    invite = request()
    tx = InviteClientTransaction(invite, DEST, False, 0.0)
    h = Harness(tx)
    h.run(tx.start(0.0))
    ok = make_response(invite, 200, to_tag="fork1")
    assert h.run(tx.receive(ok, 0.0)) == [
        CancelTimer("A"),
        CancelTimer("B"),
        PassToTU(ok),
        StartTimer("M", 32.0),
    ]
    assert tx.state == ACCEPTED
    ok2 = make_response(invite, 200, to_tag="fork2")
    assert tx.receive(ok, 1.0) == [PassToTU(ok)]
    assert tx.receive(ok2, 1.0) == [PassToTU(ok2)]
    assert tx.receive(make_response(invite, 486, to_tag="fork3"), 1.0) == []
    h.advance(32)
    assert h.events == [(32.0, Terminated())]
    assert h.send_times(invite) == [0.0]


def test_ict_2xx_after_provisional() -> None:
    invite = request()
    tx = InviteClientTransaction(invite, DEST, True, 0.0)
    tx.start(0.0)
    tx.receive(make_response(invite, 183, to_tag="a"), 0.1)
    ok = make_response(invite, 200, to_tag="a")
    assert tx.receive(ok, 0.2) == [PassToTU(ok), StartTimer("M", 32.0)]


def test_ict_transport_errors() -> None:
    invite = request()
    tx = InviteClientTransaction(invite, DEST, False, 0.0)
    tx.start(0.0)
    assert tx.transport_error(0.0) == [
        CancelTimer("A"),
        CancelTimer("B"),
        TransportError(),
        Terminated(),
    ]
    tx = InviteClientTransaction(invite, DEST, False, 0.0)
    tx.start(0.0)
    tx.receive(make_response(invite, 404, to_tag="x"), 0.1)
    assert tx.transport_error(0.2) == [CancelTimer("D"), TransportError(), Terminated()]


# -- non-INVITE client ---------------------------------------------------------


def test_nict_timer_e_caps_at_t2_until_timer_f_over_udp() -> None:
    options = request("OPTIONS")
    tx = NonInviteClientTransaction(options, DEST, False, 0.0)
    h = Harness(tx)
    assert h.run(tx.start(0.0)) == [
        SendMessage(options, DEST),
        StartTimer("E", 0.5),
        StartTimer("F", 32.0),
    ]
    h.advance(31.9)
    assert h.send_times(options) == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    h.advance(0.1)
    assert h.events == [(32.0, Timeout()), (32.0, Terminated())]
    assert not h.calls


def test_nict_proceeding_retransmits_every_t2() -> None:
    options = request("OPTIONS")
    tx = NonInviteClientTransaction(options, DEST, False, 0.0)
    h = Harness(tx)
    h.run(tx.start(0.0))
    trying = make_response(options, 100)
    assert h.run(tx.receive(trying, 0.0)) == [PassToTU(trying)]
    assert tx.state == PROCEEDING
    h.advance(9)
    assert h.send_times(options) == [0.0, 0.5, 4.5, 8.5]
    ok = make_response(options, 200, to_tag="x")
    assert h.run(tx.receive(ok, h.now)) == [
        CancelTimer("E"),
        CancelTimer("F"),
        PassToTU(ok),
        StartTimer("K", 5.0),
    ]
    assert tx.state == COMPLETED
    assert tx.receive(ok, h.now) == []  # retransmitted final absorbed
    assert tx.receive(trying, h.now) == []
    h.advance(5)
    assert h.to_tu == [(0.0, trying), (9.0, ok)]
    assert h.events == [(14.0, Terminated())]


def test_nict_over_tcp() -> None:
    bye = request("BYE", cseq=3)
    tx = NonInviteClientTransaction(bye, DEST, True, 0.0)
    h = Harness(tx)
    assert h.run(tx.start(0.0)) == [SendMessage(bye, DEST), StartTimer("F", 32.0)]
    ok = make_response(bye, 200)
    assert h.run(tx.receive(ok, 0.1)) == [CancelTimer("F"), PassToTU(ok), Terminated()]
    tx = NonInviteClientTransaction(bye, DEST, True, 0.0)
    h = Harness(tx)
    h.run(tx.start(0.0))
    h.advance(32)
    assert h.events == [(32.0, Timeout()), (32.0, Terminated())]
    assert h.send_times(bye) == [0.0]


def test_nict_transport_error() -> None:
    tx = NonInviteClientTransaction(request("OPTIONS"), DEST, True, 0.0)
    tx.start(0.0)
    assert tx.transport_error(0.0) == [CancelTimer("F"), TransportError(), Terminated()]


# -- 2xx retransmission by the UAS core ----------------------------------------


def test_2xx_retransmitted_until_ack() -> None:
    invite = request()
    ok = make_response(invite, 200, to_tag="as83")
    r = TwoXXRetransmitter(ok, DEST, 0.0)
    h = Harness(r)
    assert h.run(r.start(0.0)) == [StartTimer("2xx", 0.5), StartTimer("2xx-timeout", 32.0)]
    h.advance(8)
    assert h.send_times(ok) == [0.5, 1.5, 3.5, 7.5]
    assert h.run(r.ack_received(h.now)) == [CancelTimer("2xx"), CancelTimer("2xx-timeout")]
    assert r.ack_received(h.now) == []  # the UAC re-ACKs our retransmissions
    h.advance(60)
    assert len(h.sent) == 4 and not h.events


def test_2xx_gives_up_after_64_t1() -> None:
    ok = make_response(request(), 200, to_tag="as83")
    r = TwoXXRetransmitter(ok, DEST, 0.0)
    h = Harness(r)
    h.run(r.start(0.0))
    h.advance(31.9)
    assert h.send_times(ok) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    h.advance(0.1)
    assert h.events == [(32.0, AckTimeout())]
    assert not h.calls
    assert r.ack_received(h.now) == []


def test_2xx_retransmitter_stop_and_validation() -> None:
    invite = request()
    r = TwoXXRetransmitter(make_response(invite, 200, to_tag="a"), DEST, 0.0)
    r.start(0.0)
    assert r.stop(1.0) == [CancelTimer("2xx"), CancelTimer("2xx-timeout")]
    with pytest.raises(TransactionError):
        r.timer_fired("2xx", 2.0)
    with pytest.raises(ValueError, match="2xx"):
        TwoXXRetransmitter(make_response(invite, 486, to_tag="a"), DEST, 0.0)


def test_timer_config_validation() -> None:
    assert TimerConfig().timeout == 32.0
    assert TimerConfig(t1=0.25).timeout == 16.0
    with pytest.raises(ValueError, match="T1"):
        TimerConfig(t1=0)
    with pytest.raises(ValueError, match="T2"):
        TimerConfig(t1=1.0, t2=0.5)
    with pytest.raises(ValueError, match="T4"):
        TimerConfig(t4=0)
