"""The SIP core without sockets: bytes in, actions out, time from a Clock."""

from __future__ import annotations

import random

import pytest
from twisted.internet.task import Clock

from ivr.sip.build import make_response
from ivr.sip.core import ClearTimer, Peer, ServerRequest, SetTimer, SipCore, Transmit
from ivr.sip.ids import Ids
from ivr.sip.message import Request, Response, parse_message

PEER = Peer("udp", "192.0.2.10", 5062)


class Recorder:
    """A transaction user that records what reaches it and answers as told."""

    def __init__(self) -> None:
        self.requests: list[ServerRequest] = []
        self.acks: list[Request] = []
        self.cancelled: list[ServerRequest] = []
        self.ack_timeouts: list[Response] = []
        self.answer: int | None = None

    def handle_request(self, request: ServerRequest) -> None:
        self.requests.append(request)
        if self.answer is not None:
            request.respond(self.answer)

    def handle_ack(self, request: Request, peer: Peer) -> None:
        self.acks.append(request)

    def handle_cancel(self, cancelled: ServerRequest) -> None:
        self.cancelled.append(cancelled)

    def handle_ack_timeout(self, response: Response) -> None:
        self.ack_timeouts.append(response)


class Harness:
    """A core wired to a recording sink and a Clock that fires its timers."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.handler = Recorder()
        self.core = SipCore(self.handler, host="192.0.2.1", port=5060, ids=Ids(random.Random(7)))
        self.sent: list[Transmit] = []
        self._timers: dict[object, object] = {}
        self.core.attach(self._emit, self.clock.seconds)

    def _emit(self, actions) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                self.sent.append(action)
            elif isinstance(action, SetTimer):
                old = self._timers.pop(action.key, None)
                if old is not None and old.active():
                    old.cancel()
                self._timers[action.key] = self.clock.callLater(
                    action.delay, self.core.timer_fired, action.key
                )
            elif isinstance(action, ClearTimer):
                old = self._timers.pop(action.key, None)
                if old is not None and old.active():
                    old.cancel()

    def feed(self, text: str, peer: Peer = PEER) -> None:
        self.core.receive(text.replace("\n", "\r\n").encode(), peer)

    def responses(self) -> list[Response]:
        out = []
        for action in self.sent:
            message = parse_message(action.data)
            assert isinstance(message, Response)
            out.append(message)
        return out


def request(
    method: str = "OPTIONS",
    *,
    branch: str = "z9hG4bKabc1",
    cseq: str | None = None,
    extra: str = "",
    uri: str = "sip:192.0.2.1",
    to_tag: str = "",
    via_params: str = ";rport",
) -> str:
    return (
        f"{method} {uri} SIP/2.0\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch={branch}{via_params}\n"
        "From: <sip:1001@ivr.local>;tag=f1\n"
        f"To: <sip:1002@ivr.local>{to_tag}\n"
        "Call-ID: call-1@192.0.2.10\n"
        f"CSeq: {cseq or '1 ' + method}\n"
        "Max-Forwards: 70\n"
        f"{extra}"
        "Content-Length: 0\n\n"
    )


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_options_is_answered_with_capabilities(h: Harness) -> None:
    h.feed(request())
    [response] = h.responses()
    assert response.status == 200
    assert "INVITE" in response.headers.get("allow")
    assert "application/sdp" in response.headers.get("accept")
    assert response.headers.get("supported") is not None
    assert h.sent[0].peer == PEER  # rport: back to the source port
    via = response.headers.get("via")
    assert "rport=5062" in via and "received=192.0.2.10" in via  # RFC 3581 §4
    assert ";tag=" in response.headers.get("to")


@pytest.mark.parametrize(
    ("text", "status", "reason_part"),
    [
        (request("FOOBAR"), 501, "Not Implemented"),
        (request("SUBSCRIBE"), 405, "Method Not Allowed"),
        (request(uri="mailto:x@example.com"), 416, "scheme"),
        (request(extra="Require: nosuchext\n"), 420, "nosuchext"),
        (request(cseq="1 INVITE"), 400, "CSeq method"),
        (request().replace("Call-ID: call-1@192.0.2.10\n", ""), 400, "Call-ID"),
    ],
)
def test_bad_requests_get_the_rfc_status(
    h: Harness, text: str, status: int, reason_part: str
) -> None:
    h.feed(text)
    [response] = h.responses()
    assert response.status == status
    assert reason_part.lower() in response.reason.lower()
    if status in (405, 501):
        assert "INVITE" in response.headers.get("allow")
    if status == 420:
        assert response.headers.get("unsupported") == "nosuchext"
    assert h.handler.requests == []


def test_version_not_supported(h: Harness) -> None:
    h.feed(request().replace("OPTIONS sip:192.0.2.1 SIP/2.0", "OPTIONS sip:192.0.2.1 SIP/7.0"))
    [response] = h.responses()
    assert response.status == 505


def test_retransmitted_request_is_absorbed_and_answered_again(h: Harness) -> None:
    h.handler.answer = 200
    h.feed(request("INFO", to_tag=";tag=t1"))
    h.feed(request("INFO", to_tag=";tag=t1"))
    assert len(h.handler.requests) == 1
    statuses = [r.status for r in h.responses()]
    assert statuses == [200, 200]


def test_invite_rejection_is_retransmitted_until_ack(h: Harness) -> None:
    h.feed(request("INVITE"))
    [sr] = h.handler.requests
    sr.respond(486)
    assert [r.status for r in h.responses()] == [100, 486]
    h.clock.advance(0.5)
    assert [r.status for r in h.responses()] == [100, 486, 486]
    h.clock.advance(1.0)
    assert [r.status for r in h.responses()] == [100, 486, 486, 486]
    to = h.responses()[-1].headers.get("to")
    h.feed(request("ACK", cseq="1 ACK").replace("To: <sip:1002@ivr.local>", f"To: {to}"))
    h.clock.advance(10)
    assert len(h.responses()) == 4  # the ACK stopped timer G
    assert h.handler.acks == []  # consumed by the transaction


@pytest.mark.parametrize("extension", ["timer", "replaces", "path"])
def test_an_extension_we_do_not_implement_is_refused_with_420(h: Harness, extension: str) -> None:
    """Session timers, Replaces and Path are not implemented: requiring one gets 420 with
    Unsupported (RFC 3261 §8.2.2.3), never a call that silently ignores it."""
    h.feed(request("INVITE", extra=f"Require: {extension}\n"))
    (response,) = h.responses()
    assert response.status == 420 and response.headers.get("unsupported") == extension
    assert h.handler.requests == []
    h.feed(request("OPTIONS", branch="z9hG4bKopt", extra="Require: outbound\n"))
    assert h.responses()[-1].status == 200
    assert "timer" not in (h.responses()[-1].headers.get("supported") or "")


def test_invite_answered_at_once_gets_no_100_and_retransmissions_get_the_answer(
    h: Harness,
) -> None:
    """§17.2.1: the 100 is only for a TU that takes its time; a challenge sent at once
    needs none, and a retransmitted INVITE is answered with the final response."""
    h.handler.answer = 407
    h.feed(request("INVITE"))
    assert [r.status for r in h.responses()] == [407]
    h.feed(request("INVITE"))
    assert [r.status for r in h.responses()] == [407, 407]
    assert len(h.handler.requests) == 1


def test_invite_left_unanswered_gets_100_once_and_retransmissions_repeat_it(
    h: Harness,
) -> None:
    h.feed(request("INVITE"))
    assert [r.status for r in h.responses()] == [100]
    h.feed(request("INVITE"))
    assert [r.status for r in h.responses()] == [100, 100]
    [sr] = h.handler.requests
    sr.respond(180)
    h.feed(request("INVITE"))
    assert [r.status for r in h.responses()] == [100, 100, 180, 180]


def test_2xx_is_retransmitted_until_the_ack_then_the_tu_sees_it(h: Harness) -> None:
    h.feed(request("INVITE"))
    [sr] = h.handler.requests
    sr.respond(200, to_tag="ours")
    h.clock.advance(0.5)
    h.clock.advance(1.0)
    assert [r.status for r in h.responses()] == [100, 200, 200, 200]
    ack = request("ACK", branch="z9hG4bKack1", cseq="1 ACK", to_tag=";tag=ours")
    h.feed(ack)
    h.clock.advance(8)
    assert [r.status for r in h.responses()] == [100, 200, 200, 200]
    assert len(h.handler.acks) == 1


def test_unacknowledged_2xx_tells_the_tu_to_end_the_dialog(h: Harness) -> None:
    h.feed(request("INVITE"))
    [sr] = h.handler.requests
    sr.respond(200, to_tag="ours")
    h.clock.advance(33)
    assert len(h.handler.ack_timeouts) == 1
    retransmissions = len(h.responses())
    h.clock.advance(10)
    assert len(h.responses()) == retransmissions


def test_cancel_answers_487_and_tells_the_tu(h: Harness) -> None:
    h.feed(request("INVITE"))
    h.feed(request("CANCEL", cseq="1 CANCEL"))
    statuses = sorted(r.status for r in h.responses())
    assert statuses == [100, 200, 487]
    tags = {r.headers.get("to").split("tag=")[1] for r in h.responses() if r.status != 100}
    assert len(tags) == 1  # the 200 to CANCEL and the 487 carry the same To-tag
    assert len(h.handler.cancelled) == 1


def test_cancel_without_a_pending_invite_is_481(h: Harness) -> None:
    h.feed(request("CANCEL", cseq="1 CANCEL"))
    assert [r.status for r in h.responses()] == [481]


def test_unparsable_request_with_legible_headers_gets_400(h: Harness) -> None:
    broken = request().replace("Content-Length: 0", "Content-Length: -5")
    h.feed(broken)
    [response] = h.responses()
    assert response.status == 400
    assert "content-length" in response.reason.lower()


def test_responses_without_a_transaction_are_dropped(h: Harness) -> None:
    h.feed(
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnone\n"
        "From: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 1 OPTIONS\n"
        "Content-Length: 0\n\n"
    )
    assert h.sent == []


def test_client_request_gets_its_response_and_timeout(h: Harness) -> None:
    seen: list[Response | None] = []
    bye = Request("BYE", "sip:1001@192.0.2.10:5062")
    bye.headers.add("Via", h.core.via_value(PEER))
    for name, value in (
        ("From", "<sip:ivr@192.0.2.1>;tag=a"),
        ("To", "<sip:1001@ivr.local>;tag=b"),
        ("Call-ID", "c2"),
        ("CSeq", "1 BYE"),
        ("Max-Forwards", "70"),
    ):
        bye.headers.add(name, value)
    h.core.send_request(bye, PEER, seen.append)
    assert parse_message(h.sent[0].data).method == "BYE"
    h.clock.advance(0.5)
    assert len(h.sent) == 2  # timer E retransmission
    h.clock.advance(40)
    assert seen == [None]  # timer F: no answer


def _client_request(h: Harness, method: str, peer: Peer, call_id: str) -> Request:
    req = Request(method, f"sip:+46701234567@{peer.host}:{peer.port}")
    req.headers.add("Via", h.core.via_value(peer))
    for name, value in (
        ("From", "<sip:ivr@192.0.2.1>;tag=a"),
        ("To", "<sip:+46701234567@192.0.2.20>"),
        ("Call-ID", call_id),
        ("CSeq", f"1 {method}"),
        ("Max-Forwards", "70"),
    ):
        req.headers.add(name, value)
    return req


def test_transport_failure_fails_the_client_transactions_to_that_peer_at_once(
    h: Harness,
) -> None:
    trunk = Peer("tcp", "192.0.2.20", 5060)
    seen: dict[str, list[Response | None]] = {"invite": [], "options": [], "elsewhere": []}
    h.core.send_request(_client_request(h, "INVITE", trunk, "c1"), trunk, seen["invite"].append)
    h.core.send_request(_client_request(h, "OPTIONS", trunk, "c2"), trunk, seen["options"].append)
    other = Peer("tcp", "192.0.2.21", 5060)  # another peer: untouched
    h.core.send_request(_client_request(h, "OPTIONS", other, "c3"), other, seen["elsewhere"].append)
    assert len(h.core.table) == 3
    assert h.core.transport_failed(Peer("tcp", "192.0.2.20", 5060, conn=object())) == 2
    statuses = {name: [r.status if r else None for r in got] for name, got in seen.items()}
    assert statuses == {"invite": [503], "options": [503], "elsewhere": []}  # §8.1.3.1
    local = seen["invite"][0]
    assert local is not None and local.headers.get("call-id") == "c1"
    assert local.headers.get("cseq") == "1 INVITE"
    assert len(h.core.table) == 1
    h.clock.advance(64)  # the failed ones' timers B/F find nothing: no second report
    statuses = {name: [r.status if r else None for r in got] for name, got in seen.items()}
    assert statuses == {"invite": [503], "options": [503], "elsewhere": [None]}
    assert h.core.transport_failed(trunk) == 0


def test_transport_failure_after_the_final_response_changes_nothing(h: Harness) -> None:
    trunk = Peer("udp", "192.0.2.20", 5060)
    seen: list[Response | None] = []
    invite = _client_request(h, "INVITE", trunk, "c4")
    h.core.send_request(invite, trunk, seen.append)
    answer = make_response(invite, 486, to_tag="t1")
    h.core.receive(answer.to_bytes(), trunk)
    assert [r.status for r in seen if r is not None] == [486]
    assert h.core.transport_failed(trunk) == 0  # Completed (Timer D): nothing to tell the TU
    assert [r.status if r else None for r in seen] == [486]
