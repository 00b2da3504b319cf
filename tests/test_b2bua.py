"""The B2BUA core without sockets: fork, first 2xx wins, CANCEL the rest, fall back, bridge."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

from ivr.b2bua import (
    CALL_TIMER,
    RING_TIMER,
    AckReceived,
    AckTimedOut,
    Action,
    Answered,
    Bridge,
    CallerCancelled,
    CallLimitReached,
    CancelTimer,
    Finished,
    Local,
    NotReached,
    Ref,
    Reply,
    RequestReceived,
    RespondCaller,
    Responded,
    Send,
    SendAck,
    StartTimer,
    Target,
    TimerFired,
    Track,
    Untrack,
    cancel_request,
    contact_uri,
    forwarded_max_forwards,
    loops_back,
    target_for,
)
from ivr.sip.build import make_response
from ivr.sip.core import Peer
from ivr.sip.ids import Ids
from ivr.sip.message import Request, Response, parse_message

CALLER = Peer("udp", "127.0.0.1", 5071)
DESK = Target("sip:1002@127.0.0.1:5081", Peer("udp", "127.0.0.1", 5081), "1002-desk")
SOFT = Target("sip:1002-soft@127.0.0.1:5082", Peer("udp", "127.0.0.1", 5082), "1002-soft")
OFFER = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
ANSWER = OFFER.replace(b"o=- 1 1", b"o=- 2 2")


def parse(raw: str, body: bytes = b"") -> Request:
    head = raw.replace("\n", "\r\n")
    message = parse_message(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert isinstance(message, Request)
    return message


def caller_invite(*, body: bytes = OFFER, max_forwards: int = 70) -> Request:
    content_type = "Content-Type: application/sdp\n" if body else ""
    return parse(
        "INVITE sip:1002@ivr.local SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKcaller1;rport=5071\n"
        f"Max-Forwards: {max_forwards}\n"
        "From: <sip:1001@ivr.local>;tag=caller-tag\n"
        "To: <sip:1002@ivr.local>\n"
        "Call-ID: caller-call@127.0.0.1\n"
        "CSeq: 2 INVITE\n"
        "Contact: <sip:1001@127.0.0.1:5071>\n"
        "Subject: lunch?\n"
        f"{content_type}",
        body,
    )


def bridge(*targets: Target, body: bytes = OFFER, timeout: float = 25.0) -> Bridge:
    return Bridge(
        caller_invite(body=body),
        CALLER,
        targets or (DESK, SOFT),
        local=Local(host="127.0.0.1", port=5060, ids=Ids(random.Random(7))),
        local_tag="our-tag",
        timeout=timeout,
        max_forwards=69,
        from_value='"Anna Andersson" <sip:1001@ivr.local>',
        to_value="<sip:1002@ivr.local>",
    )


def of(actions: list[Action], kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def leg_invites(actions: list[Action]) -> list[Request]:
    return [a.request for a in of(actions, Send) if a.request.method == "INVITE"]


def reply(
    request: Request, status: int, *, tag: str | None = None, body: bytes = b"", contact=True
) -> Response:
    headers = [("Contact", f"<{request.uri}>")] if contact else []
    if body:
        headers.append(("Content-Type", "application/sdp"))
    to_tag = tag if tag is not None else ("dev-" + request.uri.split("@")[0][4:])
    return make_response(
        request, status, to_tag=to_tag if status > 100 else None, headers=headers, body=body
    )


def respond(b: Bridge, leg: int, status: int, **kw) -> list[Action]:
    return b.handle(Responded(Ref("invite", leg), reply(b.legs[leg].invite, status, **kw)))


def started(*targets: Target, body: bytes = OFFER) -> tuple[Bridge, list[Action]]:
    b = bridge(*targets, body=body)
    return b, b.start()


# -- forking -------------------------------------------------------------------------


def test_start_forks_to_every_target_with_a_new_dialog_each() -> None:
    _, actions = started()
    invites = leg_invites(actions)
    assert [a.peer for a in of(actions, Send)] == [DESK.peer, SOFT.peer]
    assert [r.uri for r in invites] == [DESK.uri, SOFT.uri]
    assert of(actions, StartTimer) == [StartTimer(RING_TIMER, 25.0)]
    call_ids = {r.call_id for r in invites}
    assert len(call_ids) == 2 and "caller-call@127.0.0.1" not in call_ids
    for request in invites:
        h = request.headers
        assert request.body == OFFER and h.get("content-type") == "application/sdp"
        assert h.get("max-forwards") == "69"
        assert h.get("subject") == "lunch?"
        assert h.get("to") == "<sip:1002@ivr.local>"
        assert h.get("from").startswith('"Anna Andersson" <sip:1001@ivr.local>;tag=')
        assert "caller-tag" not in h.get("from")
        assert h.get("via").startswith("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK")
        assert "z9hG4bKcaller1" not in h.get("via")
        assert h.get("contact") == "<sip:ivr@127.0.0.1:5060;transport=udp>"
        assert h.get("cseq") == "1 INVITE"
    branches = {r.headers.get("via") for r in invites}
    assert len(branches) == 2


def test_ringing_is_relayed_once_and_183_with_its_sdp() -> None:
    b, _ = started()
    assert respond(b, 0, 100) == []
    first = respond(b, 0, 180)
    assert [(a.status, a.body) for a in of(first, RespondCaller)] == [(180, b"")]
    assert respond(b, 1, 180) == []
    early = respond(b, 1, 183, body=ANSWER)
    (relayed,) = of(early, RespondCaller)
    assert (relayed.status, relayed.body) == (183, ANSWER)
    assert ("content-type", "application/sdp") in relayed.headers
    assert respond(b, 0, 183, body=OFFER) == []  # early media comes from one leg only


def test_first_2xx_wins_the_others_are_cancelled() -> None:
    b, _ = started()
    respond(b, 0, 180)
    respond(b, 1, 180)
    actions = respond(b, 1, 200, body=ANSWER)
    (ack,) = of(actions, SendAck)
    assert ack.ack.method == "ACK" and ack.peer == SOFT.peer
    assert ack.ack.headers.get("cseq") == "1 ACK"
    assert ack.ack.call_id == b.legs[1].invite.call_id
    (ok,) = of(actions, RespondCaller)
    assert (ok.status, ok.body) == (200, ANSWER)
    assert ("contact", "<sip:ivr@127.0.0.1:5060;transport=udp>") in ok.headers
    cancels = [a for a in of(actions, Send) if a.request.method == "CANCEL"]
    assert [(c.peer, c.ref) for c in cancels] == [(DESK.peer, None)]
    cancel = cancels[0].request
    invite = b.legs[0].invite
    assert cancel.headers.get("via") == invite.headers.get("via")
    assert cancel.headers.get("cseq") == "1 CANCEL" and cancel.uri == invite.uri
    assert CancelTimer(RING_TIMER) in actions
    assert of(actions, Answered) == [Answered(SOFT)]
    assert {t.side for t in of(actions, Track)} == {"caller", "callee"}
    assert b.state == "up"
    # The cancelled leg ends with 487; nothing more to tell the caller.
    assert respond(b, 0, 487) == []
    # A retransmitted 2xx from the winner gets the same ACK again.
    again = respond(b, 1, 200, body=ANSWER)
    assert again == [SendAck(ack.ack, SOFT.peer)]


def test_a_leg_that_has_not_answered_yet_is_cancelled_after_its_first_provisional() -> None:
    b, _ = started()
    actions = respond(b, 0, 200, body=ANSWER)
    assert not [a for a in of(actions, Send) if a.request.method == "CANCEL"]
    later = respond(b, 1, 100)
    assert [a.request.method for a in of(later, Send)] == ["CANCEL"]


def test_a_late_2xx_from_a_losing_leg_is_acked_and_sent_bye() -> None:
    b, _ = started()
    respond(b, 0, 180)
    respond(b, 1, 180)
    respond(b, 0, 200, body=ANSWER)
    late = respond(b, 1, 200, body=ANSWER)
    assert [type(a) for a in late] == [SendAck, Send]
    bye = late[1]
    assert bye.request.method == "BYE" and bye.ref == Ref("leg-bye", 1)
    assert bye.request.headers.get("to").endswith("tag=dev-1002-soft")
    assert of(late, RespondCaller) == []


def test_all_legs_busy_goes_on_with_the_plan() -> None:
    b, _ = started()
    respond(b, 0, 180)
    assert of(respond(b, 0, 486), NotReached) == []
    actions = respond(b, 1, 480)
    (not_reached,) = of(actions, NotReached)
    assert not_reached.statuses == (486, 480)
    assert CancelTimer(RING_TIMER) in actions
    assert of(actions, RespondCaller) == []  # the plan answers the caller, not the bridge
    assert Finished() in actions and b.state == "failed"


def test_a_leg_timing_out_counts_as_408() -> None:
    b, _ = started(DESK)
    actions = b.handle(Responded(Ref("invite", 0), None))
    assert of(actions, NotReached) == [NotReached((408,), "no device answered")]


def test_a_decline_ends_the_ringing_at_once() -> None:
    b, _ = started()
    respond(b, 0, 180)
    respond(b, 1, 180)
    actions = respond(b, 0, 603)
    assert of(actions, NotReached)[0].statuses == (603, 408)
    assert [a.request.method for a in of(actions, Send)] == ["CANCEL"]


def test_ring_timeout_cancels_everyone_then_the_plan() -> None:
    b, _ = started()
    respond(b, 0, 180)
    actions = b.handle(TimerFired(RING_TIMER))
    assert [(a.peer, a.request.method) for a in of(actions, Send)] == [(DESK.peer, "CANCEL")]
    assert of(actions, NotReached) == [NotReached((408, 408), "no answer in time")]
    assert Finished() not in actions
    # The leg that had not said anything is cancelled when it does.
    assert [a.request.method for a in of(respond(b, 1, 180), Send)] == ["CANCEL"]
    respond(b, 0, 487)
    assert respond(b, 1, 487) == [Finished()]
    # A 2xx that crossed our CANCEL: ACK and BYE, never a second answer.
    b2, _ = started(DESK)
    respond(b2, 0, 180)
    b2.handle(TimerFired(RING_TIMER))
    crossed = respond(b2, 0, 200, body=ANSWER)
    assert [type(a) for a in crossed] == [SendAck, Send]
    assert b2.handle(Responded(Ref("leg-bye", 0), reply(crossed[1].request, 200))) == [Finished()]


def test_caller_cancel_cancels_every_leg() -> None:
    b, _ = started()
    respond(b, 0, 180)
    respond(b, 1, 183, body=ANSWER)
    actions = b.handle(CallerCancelled())
    assert sorted(a.peer.port for a in of(actions, Send)) == [5081, 5082]
    assert all(a.request.method == "CANCEL" for a in of(actions, Send))
    assert of(actions, NotReached) == [] and of(actions, RespondCaller) == []
    respond(b, 0, 487)
    assert respond(b, 1, 487) == [Finished()]


# -- bridged -------------------------------------------------------------------------


def answered(body: bytes = OFFER) -> tuple[Bridge, list[Action]]:
    b, _ = started(body=body)
    respond(b, 0, 180)
    respond(b, 1, 180)
    actions = respond(b, 0, 200, body=ANSWER)
    respond(b, 1, 487)
    return b, actions


def in_dialog(b: Bridge, side: str, method: str, body: bytes = b"", mf: int = 70) -> Request:
    """A request from ``side`` in its dialog with us."""
    if side == "caller":
        d = b.caller_dialog
        head = (
            f"{method} sip:ivr@127.0.0.1:5060 SIP/2.0\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKcaller9\n"
            f"From: <sip:1001@ivr.local>;tag={d.remote_tag}\n"
            f"To: <sip:1002@ivr.local>;tag={d.local_tag}\n"
        )
    else:
        d = b.winner.dialog
        head = (
            f"{method} sip:ivr@127.0.0.1:5060 SIP/2.0\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5081;branch=z9hG4bKdesk9\n"
            f"From: <sip:1002@ivr.local>;tag={d.remote_tag}\n"
            f"To: <sip:1001@ivr.local>;tag={d.local_tag}\n"
        )
    ctype = "Content-Type: application/sdp\n" if body else ""
    return parse(
        head + f"Call-ID: {d.call_id}\nCSeq: 9 {method}\nMax-Forwards: {mf}\n"
        f"Contact: <sip:x@127.0.0.1>\n{ctype}",
        body,
    )


def test_bye_from_the_caller_is_relayed_to_the_device() -> None:
    b, _ = answered()
    actions = b.handle(RequestReceived("caller", in_dialog(b, "caller", "BYE"), "tok"))
    assert actions[0] == Reply("tok", 200)
    (bye,) = of(actions, Send)
    assert bye.peer == DESK.peer and bye.ref == Ref("bye", 1)
    assert bye.request.call_id == b.legs[0].invite.call_id
    assert bye.request.headers.get("to").endswith("tag=dev-1002")
    done = b.handle(Responded(bye.ref, reply(bye.request, 200)))
    assert set(of(done, Untrack)) == {Untrack(b.caller_dialog.id), Untrack(b.legs[0].dialog.id)}
    assert Finished() in done and b.state == "ended"


def test_bye_from_the_device_is_relayed_to_the_caller() -> None:
    b, _ = answered()
    actions = b.handle(RequestReceived("callee", in_dialog(b, "callee", "BYE"), "tok"))
    (bye,) = of(actions, Send)
    assert bye.peer == CALLER and bye.request.call_id == "caller-call@127.0.0.1"
    assert bye.request.uri == "sip:1001@127.0.0.1:5071"
    assert bye.request.headers.get("from") == "<sip:1002@ivr.local>;tag=our-tag"
    assert bye.request.headers.get("to") == "<sip:1001@ivr.local>;tag=caller-tag"
    # A BYE crossing ours is answered; the call ends when ours is answered (or times out).
    crossing = b.handle(RequestReceived("caller", in_dialog(b, "caller", "BYE"), "t2"))
    assert crossing == [Reply("t2", 200)]
    assert Finished() in b.handle(Responded(bye.ref, None))


def test_a_call_that_lasts_its_longest_is_ended_with_bye_to_both_sides() -> None:
    """A phone that vanished without BYE must not keep the call up for ever."""
    b = bridge(DESK)
    b.max_duration = 3600.0
    b.start()
    actions = respond(b, 0, 200, body=ANSWER)
    assert StartTimer(CALL_TIMER, 3600.0) in actions
    assert b.handle(TimerFired(RING_TIMER)) == []  # a stale ring timer changes nothing
    ended = b.handle(TimerFired(CALL_TIMER))
    assert CallLimitReached() in ended
    byes = of(ended, Send)
    assert sorted((s.peer.port, s.request.method) for s in byes) == [
        (CALLER.port, "BYE"),
        (DESK.peer.port, "BYE"),
    ]
    assert b.state == "ending"
    caller_bye, desk_bye = sorted(byes, key=lambda s: s.peer != CALLER)
    assert b.handle(Responded(desk_bye.ref, reply(desk_bye.request, 200))) == []
    done = b.handle(Responded(caller_bye.ref, None))  # the vanished caller: BYE timed out
    assert Finished() in done and b.state == "ended"
    assert b.handle(TimerFired(CALL_TIMER)) == []  # once over, the timer means nothing


def test_without_a_limit_no_call_timer_is_started() -> None:
    b, _ = started()
    answer = respond(b, 0, 200, body=ANSWER)
    assert of(answer, Answered) and all(t.name != CALL_TIMER for t in of(answer, StartTimer))


@pytest.mark.parametrize("method", ["INVITE", "UPDATE", "INFO"])
def test_in_dialog_requests_are_relayed_and_answered_with_the_other_side_s_answer(
    method: str,
) -> None:
    b, _ = answered()
    body = OFFER if method != "INFO" else b""
    actions = b.handle(RequestReceived("caller", in_dialog(b, "caller", method, body), "tok"))
    (sent,) = of(actions, Send)
    relayed = sent.request
    assert relayed.method == method and sent.peer == DESK.peer
    assert relayed.call_id == b.legs[0].invite.call_id
    assert relayed.headers.get("max-forwards") == "69"
    assert relayed.body == body
    assert relayed.headers.get("cseq") == f"2 {method}"
    response = reply(relayed, 200, body=ANSWER if body else b"")
    back = b.handle(Responded(sent.ref, response))
    (answer,) = of(back, Reply)
    assert (answer.token, answer.status, answer.body) == ("tok", 200, response.body)
    acks = of(back, SendAck)
    if method == "INVITE":
        assert [a.ack.headers.get("cseq") for a in acks] == ["2 ACK"]
        assert ("contact", "<sip:ivr@127.0.0.1:5060;transport=udp>") in answer.headers
        assert b.handle(Responded(sent.ref, response)) == acks  # retransmitted 2xx
    else:
        assert acks == []


def test_reinvite_from_the_device_goes_to_the_caller() -> None:
    b, _ = answered()
    actions = b.handle(RequestReceived("callee", in_dialog(b, "callee", "INVITE", OFFER), "t"))
    (sent,) = of(actions, Send)
    assert sent.peer == CALLER and sent.request.uri == "sip:1001@127.0.0.1:5071"
    assert sent.request.headers.get("cseq") == "1 INVITE"
    back = b.handle(Responded(sent.ref, reply(sent.request, 491)))
    assert of(back, Reply)[0].status == 491 and of(back, SendAck) == []


def test_offerless_reinvite_waits_for_the_answer_in_the_ack() -> None:
    b, _ = answered()
    actions = b.handle(RequestReceived("caller", in_dialog(b, "caller", "INVITE"), "tok"))
    (sent,) = of(actions, Send)
    back = b.handle(Responded(sent.ref, reply(sent.request, 200, body=ANSWER)))
    assert of(back, SendAck) == []
    ack = in_dialog(b, "caller", "ACK", OFFER)
    (out,) = b.handle(AckReceived("caller", ack))
    assert out.ack.body == OFFER and out.ack.headers.get("cseq") == "2 ACK"


def test_delayed_offer_call_acks_the_device_with_the_caller_s_answer() -> None:
    b, _ = started(body=b"")
    assert leg_invites(b.start())[0].body == b""
    respond(b, 0, 180)
    actions = respond(b, 0, 200, body=OFFER)
    assert of(actions, SendAck) == []
    (out,) = b.handle(AckReceived("caller", in_dialog(b, "caller", "ACK", ANSWER)))
    assert out.peer == DESK.peer and out.ack.body == ANSWER


def test_max_forwards_exhausted_in_dialog_is_483() -> None:
    b, _ = answered()
    actions = b.handle(RequestReceived("caller", in_dialog(b, "caller", "INFO", mf=1), "tok"))
    assert actions == [Reply("tok", 483)]


def test_no_ack_from_the_caller_ends_both_sides() -> None:
    b, _ = answered()
    actions = b.handle(AckTimedOut("caller"))
    assert sorted(a.ref.index for a in of(actions, Send)) == [0, 1]
    assert all(a.request.method == "BYE" for a in of(actions, Send))
    for send in of(actions, Send):
        last = b.handle(Responded(send.ref, reply(send.request, 200)))
    assert Finished() in last


def test_requests_after_the_end_get_481_and_timers_are_ignored() -> None:
    b, _ = answered()
    b.handle(RequestReceived("caller", in_dialog(b, "caller", "BYE"), "tok"))
    info = in_dialog(b, "callee", "INFO")
    assert b.handle(RequestReceived("callee", info, "t")) == [Reply("t", 481)]
    assert b.handle(TimerFired(RING_TIMER)) == []


# -- helpers ------------------------------------------------------------------------


def test_max_forwards_is_decremented_and_stops_at_zero() -> None:
    assert forwarded_max_forwards(caller_invite(max_forwards=70)) == 69
    assert forwarded_max_forwards(caller_invite(max_forwards=2)) == 1
    assert forwarded_max_forwards(caller_invite(max_forwards=1)) is None
    assert forwarded_max_forwards(caller_invite(max_forwards=5), hops=5) is None
    with pytest.raises(ValueError):
        Bridge(
            caller_invite(),
            CALLER,
            (DESK,),
            local=Local(host="127.0.0.1", port=5060, ids=Ids(random.Random(1))),
            local_tag="t",
            timeout=1,
            max_forwards=0,
            from_value="<sip:a@b>",
            to_value="<sip:c@d>",
        )


def test_our_own_via_is_a_loop() -> None:
    invite = caller_invite()
    assert not loops_back(invite, "127.0.0.1", 5060)
    invite.headers.prepend("Via", "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKproxy")
    invite.headers.add("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours;rport")
    assert loops_back(invite, "127.0.0.1", 5060)
    assert not loops_back(invite, "127.0.0.1", 5070)


def test_targets_follow_the_contact_or_the_tcp_connection() -> None:
    udp = target_for("sip:1002@127.0.0.1:5090", "udp:127.0.0.1:5090", "d")
    assert udp == Target("sip:1002@127.0.0.1:5090", Peer("udp", "127.0.0.1", 5090), "d")
    assert target_for("sip:1002@[::1]", "udp:[::1]:5060", "d").peer == Peer("udp", "::1", 5060)
    tcp = target_for("sip:1002@10.0.0.5:5060;transport=tcp", "tcp:127.0.0.1:40123", "d")
    assert tcp.peer == Peer("tcp", "127.0.0.1", 40123)
    assert target_for("sip:1002@10.0.0.5;transport=tcp", "udp:127.0.0.1:5090", "d") is None
    assert target_for("tel:+46812345", "udp:127.0.0.1:5090", "d") is None
    assert contact_uri("::1", 5060, "tcp") == "<sip:ivr@[::1]:5060;transport=tcp>"


def test_cancel_matches_its_invite() -> None:
    invite = caller_invite()
    invite.headers.add("Route", "<sip:proxy.example;lr>")
    cancel = cancel_request(invite)
    assert cancel.method == "CANCEL" and cancel.uri == invite.uri
    for name in ("via", "from", "to", "call-id", "route"):
        assert cancel.headers.get(name) == invite.headers.get(name)
    assert cancel.headers.get("cseq") == "2 CANCEL" and cancel.body == b""


def test_the_core_is_pure() -> None:
    path = Path(__file__).resolve().parents[1] / "ivr" / "b2bua.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    assert not names & {"twisted", "socket", "time", "random", "asyncio", "threading"}
    assert all(not n.startswith(("twisted", "ivr.media.session", "ivr.calls")) for n in names)
