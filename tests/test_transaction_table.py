"""Transaction matching (§17.1.3, §17.2.3, RFC 2543 fallback) and the TransactionTable."""

from __future__ import annotations

import timeit

import pytest
from twisted.internet.task import Clock

from ivr.sip.build import make_response
from ivr.sip.message import Request, Response, parse_message
from ivr.sip.transaction import (
    ACCEPTED,
    CancelTimer,
    InviteServerTransaction,
    NonInviteServerTransaction,
    PassToTU,
    SendMessage,
    Spent,
    StartTimer,
    Terminated,
    Timeout,
    TransactionError,
    TransactionTable,
    TransportError,
    TxKey,
    ack_key,
    cancel_target_key,
    client_key,
    server_key,
    tag_of,
)

DEST = ("udp", "192.0.2.7", 5060)
COOKIE = "z9hG4bK74bf9"


def request(
    method: str = "INVITE",
    *,
    via: str = f"SIP/2.0/UDP pc33.atlanta.example.com;branch={COOKIE}",
    to: str = "Bob <sip:bob@biloxi.example.com>",
    cseq: str | None = None,
    uri: str = "sip:bob@biloxi.example.com",
) -> Request:
    raw = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
        "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
        f"CSeq: {cseq or '2 ' + method}\r\n"
        "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(raw.encode())
    assert isinstance(message, Request)
    return message


def response(raw_request: Request, status: int, to_tag: str | None = "314159") -> Response:
    return make_response(raw_request, status, to_tag=to_tag)


# -- keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("Bob <sip:bob@example.com>;tag=a6c85cf", "a6c85cf"),
        ("<sip:bob@example.com;tag=uri-param>", None),
        ("sip:bob@example.com;tag=88sja8x", "88sja8x"),
        ('"A;tag=no" <sip:a@example.com>', None),
        ('"A>tag" <sip:a@example.com> ; TAG = 1x ;x=y', "1x"),
        ("<sip:a@example.com>", None),
        ("<sip:a@example.com>;tag=", None),
        ("", None),
    ],
)
def test_tag_of(value: str, tag: str | None) -> None:
    assert tag_of(value) == tag


HOST = "pc33.atlanta.example.com"


@pytest.mark.parametrize(
    ("via", "key"),
    [
        (f"SIP/2.0/UDP {HOST};branch={COOKIE}", (COOKIE, HOST, None)),
        (f"SIP/2.0/UDP PC33.Atlanta.example.com:5070;rport;branch={COOKIE}", (COOKIE, HOST, 5070)),
        (f"SIP/2.0/TCP [2001:db8::9]:5060;BRANCH={COOKIE};x=1", (COOKIE, "[2001:db8::9]", 5060)),
        # Whitespace and a quoted parameter take the full parser; the key is the same.
        (f"SIP/2.0 / UDP  {HOST} : 5060 ; branch = {COOKIE}", (COOKIE, HOST, 5060)),
        (f'SIP/2.0/UDP {HOST};x="a;b";branch={COOKIE}', (COOKIE, HOST, None)),
        # Only the top Via of a combined header line counts.
        (
            f"SIP/2.0/UDP {HOST};branch={COOKIE}, SIP/2.0/UDP h2;branch=z9hG4bKx",
            (COOKIE, HOST, None),
        ),
    ],
)
def test_server_key_rfc3261(via: str, key: tuple[str, str, int | None]) -> None:
    assert server_key(request(via=via)) == (*key, "INVITE")


def test_ack_matches_invite_and_cancel_has_its_own_key() -> None:
    invite_key = server_key(request())
    assert server_key(request("ACK", cseq="2 ACK")) == invite_key
    cancel = request("CANCEL", cseq="2 CANCEL")
    assert server_key(cancel) != invite_key
    assert server_key(cancel)[-1] == "CANCEL"
    assert cancel_target_key(cancel) == invite_key


@pytest.mark.parametrize(
    "changed",
    [
        {"via": f"SIP/2.0/UDP pc33.atlanta.example.com;branch={COOKIE}x"},
        {"via": f"SIP/2.0/UDP pc33.atlanta.example.com:5070;branch={COOKIE}"},
        {"via": f"SIP/2.0/UDP other.example.com;branch={COOKIE}"},
    ],
)
def test_server_key_differs_by_branch_and_sent_by(changed: dict[str, str]) -> None:
    assert server_key(request(**changed)) != server_key(request())


def test_rfc2543_key_without_magic_cookie() -> None:
    via = "SIP/2.0/UDP old.example.com:5060;branch=1234"
    key = server_key(request(via=via))
    assert key[0] == "rfc2543"
    assert key[1:7] == (
        "sip:bob@biloxi.example.com",
        None,
        "9fxced76sl",
        "3848276298220188511@atlanta.example.com",
        2,
        "INVITE",
    )
    assert server_key(request(via=via)) == key  # a retransmission matches
    assert server_key(request(via=via, uri="sip:carol@biloxi.example.com")) != key
    assert server_key(request(via="SIP/2.0/UDP old.example.com:5060")) != key
    assert server_key(request(via=via, to="<sip:bob@biloxi.example.com>;tag=x")) != key
    assert cancel_target_key(request("CANCEL", via=via, cseq="2 CANCEL")) == key


def test_client_key_from_request_and_response() -> None:
    invite = request()
    assert client_key(invite) == (COOKIE, "INVITE")
    assert client_key(response(invite, 180)) == (COOKIE, "INVITE")
    cancel = request("CANCEL", cseq="2 CANCEL")
    assert client_key(response(cancel, 200)) == (COOKIE, "CANCEL")


def test_ack_key_pairs_2xx_with_its_ack() -> None:
    invite = request()
    ok = response(invite, 200)
    ack = request(
        "ACK",
        via="SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnew",
        to="Bob <sip:bob@biloxi.example.com>;tag=314159",
        cseq="2 ACK",
    )
    assert ack_key(ok) == ack_key(ack)
    assert ack_key(ok) == ("3848276298220188511@atlanta.example.com", "9fxced76sl", "314159", 2)


# -- the table -------------------------------------------------------------------


class TableHarness:
    """An adapter over the table: timers keyed by (transaction key, name) on a Clock."""

    def __init__(self, table: TransactionTable) -> None:
        self.table = table
        self.clock = Clock()
        self.calls: dict[tuple[TxKey, str], object] = {}
        self.sent: list[tuple[float, object]] = []
        self.events: list[tuple[float, object]] = []

    def run(self, key: TxKey | None, actions: list) -> list:  # type: ignore[type-arg]
        for action in actions:
            if isinstance(action, SendMessage):
                self.sent.append((self.clock.seconds(), action.message))
            elif isinstance(action, StartTimer):
                assert key is not None
                self.calls[key, action.name] = self.clock.callLater(
                    action.delay, self._fire, key, action.name
                )
            elif isinstance(action, CancelTimer):
                self.calls.pop((key, action.name)).cancel()  # type: ignore[attr-defined]
            else:
                self.events.append((self.clock.seconds(), action))
        return actions

    def _fire(self, key: TxKey, name: str) -> None:
        del self.calls[key, name]
        self.run(key, self.table.timer_fired(key, name, self.clock.seconds()))

    def advance(self, seconds: float) -> None:
        end = self.clock.seconds() + seconds
        while True:
            step = min((c.getTime() for c in self.clock.getDelayedCalls()), default=end)
            if step >= end:
                break
            self.clock.advance(step - self.clock.seconds())
        self.clock.advance(end - self.clock.seconds())


def test_table_invite_486_ack_over_udp() -> None:
    table = TransactionTable()
    h = TableHarness(table)
    invite = request()
    key, actions, is_new = table.on_request(invite, DEST, False, 0.0)
    assert is_new and key == server_key(invite)
    h.run(key, actions)
    trying = actions[0].message
    assert actions == [SendMessage(trying, DEST), PassToTU(invite)]
    assert trying.status == 100
    assert isinstance(table.server(key), InviteServerTransaction)

    again = table.on_request(request(), DEST, False, 0.1)
    assert again == (key, [SendMessage(trying, DEST)], False)

    busy = response(invite, 486)
    h.run(key, table.respond(key, busy, 0.0))
    h.advance(1.0)
    assert [t for t, m in h.sent if m is busy] == [0.0, 0.5]

    ack = request("ACK", to=busy.headers.get("to") or "", cseq="2 ACK")
    ack_result = table.on_ack(ack, h.clock.seconds())
    assert ack_result == (key, [CancelTimer("G"), CancelTimer("H"), StartTimer("I", 5.0)])
    h.run(*ack_result)
    assert len(table) == 1
    # A retransmitted ACK in Confirmed is absorbed, also through on_request.
    assert table.on_request(ack, DEST, False, 1.5) == (key, [], False)
    h.advance(5.0)
    assert h.events == [(0.0, PassToTU(invite)), (6.0, Terminated())]
    assert len(table) == 0 and not h.calls


def test_table_timer_h_without_ack_reports_timeout_and_removes() -> None:
    table = TransactionTable()
    h = TableHarness(table)
    invite = request()
    key, _, _ = table.on_request(invite, DEST, False, 0.0)
    h.run(key, table.respond(key, response(invite, 404), 0.0))
    h.advance(32.0)
    assert h.events == [(32.0, Timeout()), (32.0, Terminated())]
    assert table.server(key) is None
    assert table.timer_fired(key, "G", 33.0) == []  # stale timers of a gone transaction


def test_table_2xx_ack_goes_to_tu() -> None:
    table = TransactionTable(trying=False)
    invite = request()
    key, actions, _ = table.on_request(invite, DEST, False, 0.0)
    assert actions == [PassToTU(invite)]
    ok = response(invite, 200)
    assert table.respond(key, ok, 0.0) == [SendMessage(ok, DEST), StartTimer("L", 32.0)]
    # The ACK for a 2xx carries a new branch: it matches nothing.
    ack = request(
        "ACK",
        via="SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKack2xx",
        to=ok.headers.get("to") or "",
        cseq="2 ACK",
    )
    assert table.on_ack(ack, 0.1) == (None, [PassToTU(ack)])
    # A peer that reuses the INVITE branch hits the Accepted transaction: also for the TU.
    reused = request("ACK", to=ok.headers.get("to") or "", cseq="2 ACK")
    assert table.on_ack(reused, 0.2) == (None, [PassToTU(reused)])
    assert table.on_request(reused, DEST, False, 0.2) == (None, [PassToTU(reused)], False)
    assert table.server(key).state == ACCEPTED  # type: ignore[union-attr]
    assert table.on_request(request(), DEST, False, 0.3) == (key, [], False)
    assert table.timer_fired(key, "L", 32.0) == [Terminated()]
    assert len(table) == 0


def test_table_rfc2543_ack_matches_by_response_to_tag() -> None:
    table = TransactionTable(trying=False)
    via = "SIP/2.0/UDP old.example.com:5060"
    invite = request(via=via)
    key, _, _ = table.on_request(invite, DEST, True, 0.0)
    busy = response(invite, 486, to_tag="rsp")
    table.respond(key, busy, 0.0)
    wrong = request("ACK", via=via, to="<sip:bob@biloxi.example.com>;tag=other", cseq="2 ACK")
    assert table.on_ack(wrong, 0.1) == (None, [PassToTU(wrong)])
    ack = request("ACK", via=via, to=busy.headers.get("to") or "", cseq="2 ACK")
    assert table.on_ack(ack, 0.1) == (key, [CancelTimer("H"), Terminated()])
    assert len(table) == 0


def test_table_rfc2543_reinvite_ack() -> None:
    table = TransactionTable(trying=False)
    via = "SIP/2.0/UDP old.example.com:5060;branch=1"
    to = "<sip:bob@biloxi.example.com>;tag=dlg"
    invite = request(via=via, to=to)
    key, _, _ = table.on_request(invite, DEST, True, 0.0)
    table.respond(key, response(invite, 491), 0.0)
    ack = request("ACK", via=via, to=to, cseq="2 ACK")
    assert table.on_ack(ack, 0.1) == (key, [CancelTimer("H"), Terminated()])


def test_table_non_invite_over_tcp_is_removed_on_final() -> None:
    table = TransactionTable()
    options = request("OPTIONS", cseq="5 OPTIONS")
    key, actions, is_new = table.on_request(options, DEST, True, 0.0)
    assert is_new and actions == [PassToTU(options)]
    assert isinstance(table.server(key), NonInviteServerTransaction)
    ok = response(options, 200)
    assert table.respond(key, ok, 0.0) == [SendMessage(ok, DEST), Terminated()]
    assert len(table) == 0
    with pytest.raises(TransactionError) as info:
        table.respond(key, ok, 0.1)
    assert info.value.status == 481


def test_table_cancel_finds_its_invite() -> None:
    table = TransactionTable()
    invite = request()
    invite_key, _, _ = table.on_request(invite, DEST, False, 0.0)
    cancel = request("CANCEL", cseq="2 CANCEL")
    cancel_key, actions, is_new = table.on_request(cancel, DEST, False, 0.1)
    assert is_new and cancel_key != invite_key and actions == [PassToTU(cancel)]
    assert table.server(cancel_target_key(cancel)) is table.server(invite_key)
    assert len(table) == 2


def test_table_client_transactions() -> None:
    table = TransactionTable()
    h = TableHarness(table)
    options = request("OPTIONS", cseq="7 OPTIONS")
    key, actions = table.start_client(options, DEST, False, 0.0)
    assert key == (COOKIE, "OPTIONS")
    h.run(key, actions)
    h.advance(2.0)
    assert [t for t, m in h.sent if m is options] == [0.0, 0.5, 1.5]
    ok = response(options, 200)
    result = table.on_response(ok, 2.0)
    assert result == (
        key,
        [CancelTimer("E"), CancelTimer("F"), PassToTU(ok), StartTimer("K", 5.0)],
    )
    h.run(*result)
    assert table.on_response(ok, 3.0) == (key, [])
    h.advance(5.0)
    assert h.events[-1] == (7.0, Terminated()) and len(table) == 0
    assert table.on_response(ok, 8.0) == (None, [])  # stray: discarded (RFC 6026 §8.4)

    with pytest.raises(TransactionError, match="ACK"):
        table.start_client(request("ACK", cseq="7 ACK"), DEST, False, 0.0)
    with pytest.raises(TransactionError, match="branch"):
        table.start_client(request(via="SIP/2.0/UDP h.example.com;branch=12"), DEST, False, 0.0)
    table.start_client(request(), DEST, True, 0.0)
    with pytest.raises(TransactionError, match="exists"):
        table.start_client(request(), DEST, True, 0.0)


def test_table_invite_client_and_transport_error() -> None:
    table = TransactionTable()
    invite = request()
    key, _ = table.start_client(invite, DEST, True, 0.0)
    tx = table.client(key)
    busy = response(invite, 486)
    result_key, actions = table.on_response(busy, 0.1)
    ack = tx.ack  # type: ignore[union-attr]
    assert result_key == key
    assert actions == [CancelTimer("B"), SendMessage(ack, DEST), PassToTU(busy), Terminated()]
    assert len(table) == 0

    key, _ = table.start_client(invite, DEST, True, 0.0)
    assert table.transport_error(key, 0.1) == [CancelTimer("B"), TransportError(), Terminated()]
    assert table.transport_error(key, 0.2) == []
    assert len(table) == 0


@pytest.mark.benchmark
def test_benchmark_non_invite_server_transaction(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints µs per create + respond 200 (a few thousand runs); asserts nothing on speed."""
    options = request("OPTIONS", cseq="1 OPTIONS")
    ok = response(options, 200)

    def create_and_respond() -> None:
        NonInviteServerTransaction(options, DEST, False, 0.0).respond(ok, 0.0)

    table = TransactionTable()

    def through_table() -> None:
        key, _, _ = table.on_request(options, DEST, True, 0.0)
        table.respond(key, ok, 0.0)

    runs = 5000
    direct = min(timeit.repeat(create_and_respond, number=runs, repeat=3)) / runs * 1e6
    tabled = min(timeit.repeat(through_table, number=runs, repeat=3)) / runs * 1e6
    with capsys.disabled():
        print(f"\nNonInviteServerTransaction create+respond 200: {direct:.2f} µs")
        print(f"TransactionTable on_request (key match) + respond 200: {tabled:.2f} µs")
    assert len(table) == 0


def test_a_transaction_that_only_absorbs_keeps_no_request() -> None:
    """After the final response only absorbing is left: the request goes (it would live
    for the 32 s absorb window), and the last message too unless retransmissions still
    need it; retransmissions are still absorbed or answered."""
    table = TransactionTable()
    info = request("INFO")
    key, _, _ = table.on_request(info, DEST, False, 0.0)
    tx = table.server(key)
    assert tx is not None and tx.request is info
    ok = make_response(info, 200, to_tag="t")
    table.respond(key, ok, 0.1)
    assert isinstance(tx.request, Spent) and tx.request.method == "INFO"
    assert tx.last_response is ok  # a retransmitted INFO is answered with it again
    again = table.on_request(info, DEST, False, 0.2)[1]
    assert [a.message for a in again if isinstance(a, SendMessage)] == [ok]
    assert "INFO" in repr(tx)
