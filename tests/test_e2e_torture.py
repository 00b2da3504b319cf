"""End to end: every RFC 4475 and RFC 5118 torture message against a running `ivr serve`.

Each message goes over UDP (one datagram, from its own loopback address bound to the
port its top Via names, so responses sent per RFC 3261 §18.2.2 reach us) and over TCP
(one connection each). The index of the shared corpus says what a server must do:
``accept`` (a final answer that is not a syntax error), ``reject`` (the RFC's preferred
status), ``drop`` (silence) or ``either``. Afterwards the service must still answer
OPTIONS and its log must hold no traceback.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sip_client import Reply, TcpClient, UdpClient, options

from ivr.testing.service import RunningService

pytestmark = pytest.mark.e2e

TOOLS = Path(__file__).resolve().parents[2] / "shared" / "tools" / "sip"
CORPORA = {"rfc4475": 50, "rfc5118": 12}

ANSWER_WAIT = 2.0  # for a final response to a request
SILENCE_WAIT = 0.5  # how long "no response" is watched for
EXTRA_WAIT = 0.5  # after a final response: nothing more may follow (dblreq)

# Where the RFC names one right answer from a UAS, only that answer is "accept".
EXACT: dict[str, frozenset[int]] = {
    "intmeth": frozenset({501}),  # unknown method
    "esc02": frozenset({501}),  # RE%47IST%45R is not REGISTER
    "bext01": frozenset({420}),  # Require: unknown option tags
    "zeromf": frozenset({200}),  # OPTIONS to us with Max-Forwards: 0 is answered normally
}
SYNTAX_ERRORS = frozenset({400, 505})


@dataclass(frozen=True, slots=True)
class Torture:
    """One message of the corpus and what its index expects."""

    corpus: str
    name: str
    expect: str
    codes: frozenset[int]
    kind: str
    data: bytes

    @property
    def method(self) -> str:
        return self.data.split(b" ", 1)[0].decode("latin-1")


@dataclass(slots=True)
class Outcome:
    """What happened to one message on one transport."""

    message: Torture
    transport: str
    replies: list[Reply] = field(default_factory=list)
    ack_replies: list[Reply] = field(default_factory=list)
    closed: bool = False
    met: bool = False
    why: str = ""

    @property
    def final(self) -> Reply | None:
        return next((r for r in self.replies if (r.status or 0) >= 200), None)

    def row(self) -> str:
        got = ", ".join(r.start_line[:60] for r in self.replies) or "silence"
        if self.ack_replies:
            got += f" (+{len(self.ack_replies)} answer(s) to our ACK)"
        if self.closed:
            got += " [closed]"
        mark = "met" if self.met else "NOT MET"
        return (
            f"{self.transport:3} {self.message.corpus:7} {self.message.name:30} "
            f"{self.message.expect:6} -> {got} : {mark} {self.why}"
        )


def load_corpus() -> list[Torture]:
    """All 62 messages; FAILS (never skips) when the shared corpus is missing or altered."""
    messages: list[Torture] = []
    for corpus, count in CORPORA.items():
        index_path = TOOLS / corpus / "index.json"
        if not index_path.is_file():
            pytest.fail(f"torture corpus missing: {index_path} (expected /work/shared/tools/sip)")
        index = json.loads(index_path.read_text())
        entries = index["messages"]
        assert len(entries) == count, f"{corpus}: {len(entries)} messages, expected {count}"
        for entry in entries:
            path = TOOLS / corpus / entry["file"]
            if not path.is_file():
                pytest.fail(f"torture message missing: {path}")
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            assert digest == entry["sha256"], f"{path} differs from its index entry"
            messages.append(
                Torture(
                    corpus=corpus,
                    name=entry["name"],
                    expect=entry["expect"],
                    codes=frozenset(entry["rfc_codes"]),
                    kind=entry["kind"],
                    data=data,
                )
            )
    return messages


# -- making each message unique and fit for the transport ---------------------------

_CALL_ID_RE = re.compile(rb"(?im)^((?:call-id|i)[ \t]*:[ \t]*)(\S[^\r\n]*?)([ \t]*\r\n)")
_BRANCH_RE = re.compile(rb"(?i)(branch[ \t]*=[ \t]*(?:\r\n)?[ \t]*)([^;,\s]+)")
_LENGTH_LINE_RE = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:")
_COOKIE = b"z9hG4bK"


def uniquified(data: bytes, suffix: bytes) -> bytes:
    """Append ``suffix`` to every Call-ID and Via branch of the header block.

    RFC 4475 messages reuse branch and sent-by (cparam01/cparam02, escnull/regescrt)
    and RFC 5118 ones share Call-ID and branch: sent unchanged, later ones would be
    absorbed as retransmissions. A bare ``z9hG4bK`` branch (badbranch) is the point
    of its test and stays as it is.
    """
    end = data.find(b"\r\n\r\n")
    head, rest = (data[: end + 2], data[end + 2 :]) if end >= 0 else (data, b"")
    head = _CALL_ID_RE.sub(lambda m: m[1] + m[2] + suffix + m[3], head)

    def branch(match: re.Match[bytes]) -> bytes:
        if match[2] == _COOKIE:
            return match[0]
        return match[1] + match[2] + suffix

    return _BRANCH_RE.sub(branch, head) + rest


def for_stream(message: Torture, data: bytes) -> bytes:
    """The octets to send on TCP, where Content-Length frames the message (RFC 3261 §18.3).

    Deliberately wrong lengths (clerr, ncl, mcl01) are kept. dblreq's trailing octets
    would be a second message on a stream, so only its REGISTER is sent; inv2543
    (RFC 2543: no Content-Length) gets one; baddn gets the empty line its archive lacks.
    """
    end = data.find(b"\r\n\r\n")
    if message.name == "dblreq":
        return data[: end + 4]
    if message.name == "baddn" and end < 0:
        return data + b"\r\n"
    if not _LENGTH_LINE_RE.search(data[: end + 2]):
        body = data[end + 4 :]
        return data[: end + 2] + b"Content-Length: %d\r\n\r\n" % len(body) + body
    return data


_UNFOLD_RE = re.compile(rb"\r\n[ \t]+")
_VIA_RE = re.compile(
    rb"(?im)^(?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*[0-9.]+[ \t]*/[ \t]*[^ \t]+[ \t]+"
    rb"(\[[^\]]*\]|[^ \t;:,\r]+)[ \t]*(?::[ \t]*([0-9]+))?"
)


def via_port(data: bytes) -> int:
    """The port of the top Via's sent-by (5060 when absent): where UDP responses go."""
    end = data.find(b"\r\n\r\n")
    head = _UNFOLD_RE.sub(b" ", data[: end if end >= 0 else len(data)])
    match = _VIA_RE.search(head)
    if match is None or match[2] is None:
        return 5060
    port = int(match[2])
    return port if 0 < port < 65536 else 5060


def ack_for(sent: bytes, final: Reply) -> bytes:
    """The ACK for a non-2xx final response to one of our INVITEs (§17.1.1.3)."""
    uri = sent.split(b"\r\n", 1)[0].split()[1].decode("latin-1")
    number = (final.header("cseq") or "1").split()[0]
    lines = [
        f"ACK {uri} SIP/2.0",
        f"Via: {final.headers('via')[0]}",
        f"From: {final.header('from')}",
        f"To: {final.header('to')}",
        f"Call-ID: {final.header('call-id')}",
        f"CSeq: {number} ACK",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


# -- judging -------------------------------------------------------------------------


def _cseq_method(reply: Reply) -> str:
    return (reply.header("cseq") or "").rpartition(" ")[2].upper()


def judge(outcome: Outcome) -> None:
    """Set ``outcome.met`` and ``outcome.why`` from the index's expectation.

    Answers to the ACK we sent for a rejected INVITE are set aside (their own test,
    ``test_ack_for_a_rejected_invite_is_not_answered``, covers them).
    """
    outcome.ack_replies = [r for r in outcome.replies if _cseq_method(r) == "ACK"]
    outcome.replies = [r for r in outcome.replies if _cseq_method(r) != "ACK"]
    message, final = outcome.message, outcome.final
    junk = [r for r in outcome.replies if r.status is None]
    if junk:
        outcome.why = f"not a SIP response: {junk[0].start_line!r}"
        return
    finals = [r for r in outcome.replies if (r.status or 0) >= 200]
    if len(finals) > 1:
        # A second, different answer, or a final repeated although we ACKed it.
        distinct = len({r.raw for r in finals}) > 1
        outcome.why = "two different final responses" if distinct else "final repeated"
        return
    expect = message.expect
    if outcome.transport == "tcp" and message.name == "clerr":
        # Content-Length 9999 on a stream: the server waits for the rest of the body,
        # then drops the truncated message when we stop sending.
        outcome.met = outcome.closed and (final is None or final.status == 400)
        outcome.why = "" if outcome.met else "expected: wait, then close on our half-close"
        return
    if expect == "drop":
        outcome.met = not outcome.replies
        outcome.why = "" if outcome.met else "a response to a response must be dropped"
        return
    if expect == "either":
        outcome.met = True
        return
    if final is None:
        outcome.why = "no final response"
        return
    status = final.status
    if expect == "reject":
        outcome.met = status in message.codes
        outcome.why = "" if outcome.met else f"wanted one of {sorted(message.codes)}"
        return
    if message.name in EXACT:
        outcome.met = status in EXACT[message.name]
        outcome.why = "" if outcome.met else f"wanted {sorted(EXACT[message.name])}"
    elif message.method == "REGISTER" and 400 not in message.codes:
        challenge = final.header("www-authenticate") or ""
        outcome.met = status == 401 and challenge.startswith("Digest ")
        outcome.why = "" if outcome.met else "wanted a 401 digest challenge"
    else:
        # unksm2 lists 400: a registrar refusing a non-SIP To is a semantic answer.
        outcome.met = status not in SYNTAX_ERRORS or status in message.codes
        outcome.why = "" if outcome.met else "a well-formed message got a syntax error"
    if outcome.met and message.name == "bext01":
        unsupported = final.header("unsupported") or ""
        outcome.met = "nothingSupportsThis" in unsupported
        outcome.why = "" if outcome.met else "420 without Unsupported: nothingSupportsThis"


# -- sending -------------------------------------------------------------------------


def _loopback_addresses() -> Iterator[str]:
    """Distinct 127/8 addresses (no setup needed on Linux), one per message."""
    second = random.randint(64, 250)
    third = random.randint(0, 255)
    for fourth in range(1, 255):
        yield f"127.{second}.{third}.{fourth}"


def run_udp(service: RunningService, messages: list[Torture]) -> list[Outcome]:
    server = (service.host, service.sip_port)
    run = secrets.token_hex(3).encode()
    outcomes: list[Outcome] = []
    clients: list[tuple[UdpClient, Outcome]] = []
    try:
        addresses = _loopback_addresses()
        for number, message in enumerate(messages):
            address = next(addresses)
            data = uniquified(message.data, b".u%s%d" % (run, number))
            client = UdpClient(address, via_port(data), reuse=True)
            outcome = Outcome(message, "udp")
            clients.append((client, outcome))
            client.send(data, server)
            wait = SILENCE_WAIT if message.kind == "response" else ANSWER_WAIT
            outcome.replies = client.collect(wait, until_final=True)
            final = outcome.final
            if final is not None and message.method == "INVITE" and (final.status or 0) >= 300:
                client.send(ack_for(data, final), server)
            if message.name == "dblreq":
                outcome.replies += client.collect(EXTRA_WAIT)
            outcomes.append(outcome)
        # Late or second answers to any message (e.g. dblreq's trailing INVITE); a
        # final we acknowledged must not come again either.
        for client, outcome in clients:
            outcome.replies += client.collect(0.05)
    finally:
        for client, _ in clients:
            client.close()
    for outcome in outcomes:
        judge(outcome)
    return outcomes


def run_tcp(service: RunningService, messages: list[Torture]) -> list[Outcome]:
    server = (service.host, service.sip_port)
    run = secrets.token_hex(3).encode()
    outcomes: list[Outcome] = []
    for number, message in enumerate(messages):
        data = for_stream(message, uniquified(message.data, b".t%s%d" % (run, number)))
        outcome = Outcome(message, "tcp")
        with TcpClient(server) as client:
            client.send(data)
            wait = SILENCE_WAIT if message.kind == "response" else ANSWER_WAIT
            if message.name == "clerr":
                wait = SILENCE_WAIT
            outcome.replies = client.collect(wait, until_final=True)
            final = outcome.final
            if final is not None and message.method == "INVITE" and (final.status or 0) >= 300:
                client.send(ack_for(data, final))
            if message.name == "clerr":
                client.shutdown_write()
                outcome.replies += client.collect(ANSWER_WAIT)
            outcome.closed = client.eof
            if message.name in ("ncl", "mcl01"):
                outcome.closed = client.closed_by_peer(ANSWER_WAIT)
        judge(outcome)
        if message.name in ("ncl", "mcl01") and outcome.met and not outcome.closed:
            outcome.met, outcome.why = False, "unframeable stream left open"
        outcomes.append(outcome)
    return outcomes


def assert_survived(service: RunningService) -> None:
    """Still running, answers OPTIONS with 200 over UDP and TCP, no traceback logged."""
    assert service.process.poll() is None, f"ivr serve died:\n{service.log()}"
    server = (service.host, service.sip_port)
    with UdpClient(service.host) as udp:
        udp.send(options(*server, local=udp.local), server)
        replies = udp.collect(ANSWER_WAIT, until_final=True)
    assert [r.status for r in replies] == [200], [str(r) for r in replies]
    with TcpClient(server) as tcp:
        tcp.send(options(*server, local=tcp.local, transport="TCP"))
        replies = tcp.collect(ANSWER_WAIT, until_final=True)
    assert [r.status for r in replies] == [200], [str(r) for r in replies]
    log = service.log()
    assert "Traceback" not in log, log
    assert "Unhandled" not in log, log


@pytest.fixture
def torture_service(service: RunningService) -> RunningService:
    return service


def test_corpus_is_complete_and_intact() -> None:
    messages = load_corpus()
    assert len(messages) == sum(CORPORA.values())
    assert {m.expect for m in messages} == {"accept", "reject", "drop", "either"}
    assert len({(m.corpus, m.name) for m in messages}) == len(messages)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_every_torture_message_gets_the_expected_answer(
    torture_service: RunningService, transport: str
) -> None:
    messages = load_corpus()
    run = run_udp if transport == "udp" else run_tcp
    outcomes = run(torture_service, messages)
    table = "\n".join(o.row() for o in outcomes)
    print(f"\n{transport.upper()}: {sum(o.met for o in outcomes)}/{len(outcomes)} met\n{table}")
    unmet = [o.row() for o in outcomes if not o.met]
    assert not unmet, "\n".join(["Not met:", *unmet, "", "All:", table])
    assert_survived(torture_service)


def test_dblreq_trailing_octets_get_no_second_response(torture_service: RunningService) -> None:
    """RFC 4475 §3.1.1.8: one datagram, one answer (to the REGISTER), nothing for the rest."""
    message = next(m for m in load_corpus() if m.name == "dblreq")
    server = (torture_service.host, torture_service.sip_port)
    address = next(_loopback_addresses())
    data = uniquified(message.data, b".d" + secrets.token_hex(3).encode())
    with UdpClient(address, via_port(data), reuse=True) as client:
        client.send(data, server)
        replies = client.collect(ANSWER_WAIT, until_final=True)
        assert [r.status for r in replies] == [401], [str(r) for r in replies]
        assert replies[0].header("cseq") == "8 REGISTER"
        extra = client.collect(1.0)
    assert extra == [], [str(r) for r in extra]
    assert_survived(torture_service)


def test_ack_for_a_rejected_invite_is_not_answered(torture_service: RunningService) -> None:
    """An ACK never gets a response (RFC 3261 §17.1.1.3, §17.2.1), even one as malformed
    as the INVITE it acknowledges (ltgtruri's ``<sip:...>`` Request-URI)."""
    message = next(m for m in load_corpus() if m.name == "ltgtruri")
    server = (torture_service.host, torture_service.sip_port)
    address = next(_loopback_addresses())
    data = uniquified(message.data, b".a" + secrets.token_hex(3).encode())
    with UdpClient(address, via_port(data), reuse=True) as client:
        client.send(data, server)
        replies = client.collect(ANSWER_WAIT, until_final=True)
        assert [r.status for r in replies] == [400], [str(r) for r in replies]
        client.send(ack_for(data, replies[0]), server)
        extra = client.collect(1.0)
    assert extra == [], "the ACK was answered:\n" + "\n".join(str(r) for r in extra)
