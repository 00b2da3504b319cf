"""The 50 RFC 4475 and 12 RFC 5118 torture messages: what we do with each, and why that
meets the behaviour the index (``shared/tools/sip/*/index.json``) asks for.

OUTCOMES is our per-message decision table. Each entry is checked twice: against the
index (``expect``: accept / reject / either / drop, and the preferred ``rfc_codes``),
and against what parse_message, validate_request and validate_response really do.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import sip_messages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sip_messages import (
    ALL_NAMES,
    RFC4475_NAMES,
    RFC5118_NAMES,
    assert_round_trip,
    bytewise,
    entry,
    feed_chunks,
    index,
    load,
    outcome,
    sip_data_dir,
    split_at,
)

from ivr.sip.build import make_response
from ivr.sip.core import SUPPORTED_EXTENSIONS
from ivr.sip.framing import FramingError, StreamFramer
from ivr.sip.headers import (
    parse_contacts,
    parse_cseq,
    parse_name_addr,
    parse_vias,
)
from ivr.sip.message import Request, Response, SipParseError, parse_message
from ivr.sip.uri import parse_uri
from ivr.sip.validate import (
    BadExtensionError,
    check_max_forwards,
    max_forwards,
    validate_request,
    validate_response,
)

SUPPORTED = SUPPORTED_EXTENSIONS


@dataclass(frozen=True)
class Outcome:
    """stage: "accept" (request passes), "response" (a response that parses and validates:
    no client transaction matches it, so it is dropped), "parse" / "validate" (rejected
    there with ``status``; a rejected response is dropped silently)."""

    stage: str
    status: int | None = None
    reason: str = ""


ACCEPT = Outcome("accept")
RESPONSE = Outcome("response")


def parse_error(status: int, reason: str) -> Outcome:
    return Outcome("parse", status, reason)


def refused(status: int, reason: str) -> Outcome:
    return Outcome("validate", status, reason)


OUTCOMES: dict[str, Outcome] = {
    # RFC 4475 3.1.1: valid
    "wsinv": ACCEPT,
    "intmeth": ACCEPT,
    "esc01": ACCEPT,
    "escnull": ACCEPT,
    "esc02": ACCEPT,
    "lwsdisp": ACCEPT,
    "longreq": ACCEPT,
    "dblreq": ACCEPT,
    "semiuri": ACCEPT,
    "transports": ACCEPT,
    "mpart01": ACCEPT,
    "unreason": RESPONSE,
    "noreason": RESPONSE,
    # 3.1.2: invalid
    "badinv01": refused(400, "Malformed Via header"),
    "clerr": parse_error(400, "Content-Length larger than the message body"),
    "ncl": parse_error(400, "Malformed Content-Length header '-999'"),
    "scalar02": refused(400, "Malformed CSeq header: CSeq number out of range"),
    "scalarlg": refused(400, "Malformed CSeq header"),
    "quotbal": refused(400, "Malformed To header: Unbalanced quotes"),
    "ltgtruri": parse_error(400, "Request-URI must not be enclosed in <>"),
    "lwsruri": parse_error(400, "whitespace in Request-URI"),
    "lwsstart": ACCEPT,  # either: extra SP in the Request-Line is ignored
    "trws": ACCEPT,  # either: trailing SP is ignored
    "escruri": ACCEPT,  # either: the escaped headers are ignored
    "baddate": ACCEPT,  # either: Date is not interpreted
    "regbadct": refused(400, "Malformed Contact header: A URI with '?'"),  # either
    "badaspec": refused(400, "Malformed To header: Whitespace inside <URI>"),  # either
    "baddn": parse_error(400, "Incomplete header block (no empty line)"),
    "badvers": parse_error(505, "Unsupported SIP version 'SIP/7.0'"),
    "mismatch01": refused(400, "CSeq method does not match"),
    "mismatch02": refused(400, "CSeq method does not match"),
    "bigcode": parse_error(400, "Bad status code"),
    # 3.2, 3.3: semantic
    "badbranch": ACCEPT,  # either: RFC 2543 matching applies
    "insuf": refused(400, "Missing To, From, Call-ID headers"),
    "unkscm": refused(416, "Unsupported URI scheme 'nobodyknowsthisscheme'"),
    "novelsc": refused(416, "Unsupported URI scheme 'soap.beep'"),
    "unksm2": ACCEPT,
    "bext01": refused(420, "Bad Extension"),
    "invut": ACCEPT,
    "regaut01": ACCEPT,
    "multi01": refused(400, "Duplicate To, From, CSeq, Call-ID, Max-Forwards headers"),
    "mcl01": parse_error(400, "Multiple Content-Length headers"),
    "bcast": RESPONSE,
    "zeromf": ACCEPT,
    "cparam01": ACCEPT,
    "cparam02": ACCEPT,
    "regescrt": ACCEPT,
    "sdp01": ACCEPT,
    "inv2543": ACCEPT,
    "test": parse_error(400, "Malformed Request-Line"),  # either
    # RFC 5118
    "ipv6-good": ACCEPT,
    "ipv6-bad": refused(400, "Malformed Request-URI"),
    "port-ambiguous": ACCEPT,
    "port-unambiguous": ACCEPT,
    "via-received-param-with-delim": ACCEPT,
    "via-received-param-no-delim": ACCEPT,
    "ipv6-in-sdp": ACCEPT,
    "mult-ip-in-header": ACCEPT,
    "mult-ip-in-sdp": ACCEPT,
    "ipv4-mapped-ipv6": ACCEPT,
    "ipv6-bug-abnf-3-colons": refused(400, "Malformed To header: Malformed IPv6 reference"),
    "ipv6-correct-abnf-2-colons": ACCEPT,
}


RESPONSES = frozenset({"unreason", "noreason", "scalarlg", "bigcode", "bcast"})


def observe(data: bytes) -> tuple[Outcome, Request | Response | None]:
    """What our stack does with one datagram."""
    try:
        message = parse_message(data)
    except SipParseError as exc:
        return Outcome("parse", exc.status, exc.reason), None
    try:
        if isinstance(message, Response):
            validate_response(message)
            return RESPONSE, message
        validate_request(message, supported=SUPPORTED)
    except SipParseError as exc:
        return Outcome("validate", exc.status, exc.reason), message
    return ACCEPT, message


def meets_expectation(item: dict[str, object], ours: Outcome) -> bool:
    """Does our outcome satisfy the index's expect / rfc_codes for this message?"""
    expect, codes = item["expect"], item["rfc_codes"]
    assert isinstance(codes, list)
    if item["kind"] == "response":
        return expect == "drop"  # we never answer a response: parsed or not, it is dropped
    if ours.stage == "accept":
        return expect in ("accept", "either")
    if expect == "accept":  # any final response other than 400/505 (a semantic answer)
        return ours.status not in (400, 505)
    return expect in ("reject", "either") and ours.status in codes


def test_torture_data_is_complete() -> None:
    root = sip_data_dir()
    assert root.is_dir()
    kinds = {m["name"]: m["kind"] for s in ("rfc4475", "rfc5118") for m in index(s)["messages"]}
    assert {name for name, kind in kinds.items() if kind == "response"} == RESPONSES
    for suite, names in (("rfc4475", RFC4475_NAMES), ("rfc5118", RFC5118_NAMES)):
        assert [m["name"] for m in index(suite)["messages"]] == list(names)
    assert set(OUTCOMES) == set(ALL_NAMES) and len(ALL_NAMES) == 62


def test_missing_data_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sip_messages, "SIP_DATA", tmp_path / "shared" / "tools" / "sip")
    with pytest.raises(pytest.fail.Exception, match="SIP torture data missing"):
        load("wsinv")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_outcome_meets_the_rfc(name: str) -> None:
    item = entry(name)
    ours = OUTCOMES[name]
    assert meets_expectation(item, ours), (name, item["expect"], item["rfc_codes"], ours)
    observed, _ = observe(load(name))
    assert (observed.stage, observed.status) == (ours.stage, ours.status), observed
    assert ours.reason in observed.reason, observed.reason


@pytest.mark.parametrize(
    "name", [n for n in ALL_NAMES if n not in RESPONSES and OUTCOMES[n].stage != "parse"]
)
def test_server_view_of_requests(name: str) -> None:
    """Every request that parses yields what a server needs, or a precise 4xx."""
    request = parse_message(load(name))
    assert isinstance(request, Request)
    try:
        validate_request(request, supported=SUPPORTED)
    except SipParseError as exc:
        assert exc.status in (400, 416, 420)
        response = make_response(
            request, exc.status, exc.reason, to_tag="x", headers=list(exc.headers)
        )
        assert isinstance(parse_message(response.to_bytes()), Response)
        return
    top_via = parse_vias(request.headers.get_all("via")[0])[0]
    assert top_via.host and top_via.transport
    assert parse_name_addr(request.headers.get("from") or "").uri.scheme
    assert parse_name_addr(request.headers.get("to") or "").uri.scheme
    assert request.call_id
    assert parse_cseq(request.headers.get("cseq") or "").method == request.method
    for value in request.headers.values("contact"):
        parse_contacts(value)
    assert parse_uri(request.uri).scheme in ("sip", "sips")
    response = make_response(request, 200, to_tag="srv")
    assert parse_name_addr(response.headers.get("to") or "").tag is not None


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if OUTCOMES[n].stage != "parse"])
def test_round_trip(name: str) -> None:
    first = parse_message(load(name))
    assert_round_trip(first)
    assert parse_message(first.to_bytes()).to_bytes() == first.to_bytes()


# -- message-specific semantics ------------------------------------------------------------


def request(name: str) -> Request:
    message = parse_message(load(name))
    assert isinstance(message, Request)
    return message


def test_wsinv() -> None:
    r = request("wsinv")
    assert parse_name_addr(r.headers.get("to") or "").tag == "1918181833n"
    sender = parse_name_addr(r.headers.get("from") or "")
    assert (sender.display_text, sender.tag) == ('J Rosenberg \\"', "98asjd8")
    assert max_forwards(r) == 68 and parse_cseq(r.headers.get("cseq") or "").number == 9
    vias = [via for value in r.headers.values("via") for via in parse_vias(value)]
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert not vias[0].rfc3261_branch
    contacts = parse_contacts(r.headers.get("contact") or "")
    assert contacts is not None and contacts[0].params[-1] == ("q", "0.33")
    assert r.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert r.headers.get("subject") == ""
    assert len(r.body) == 150


def test_intmeth_and_esc02_methods() -> None:
    r = request("intmeth")
    assert r.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = parse_uri(r.uri)
    assert (uri.user, uri.password, uri.host) == (
        "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*",
        "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)",
        "example.com",
    )
    assert r.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert parse_vias(r.headers.get("via") or "")[0].branch == "z9hG4bK-.!%66*_+`'~"
    assert (
        parse_name_addr(r.headers.get("to") or "").display == '"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"'
    )
    sender = parse_name_addr(r.headers.get("from") or "")
    assert sender.tag == "_token~1'+`*%!-." and sender.display == "token1~` token2'+_ token3*%!.-"
    e = request("esc02")
    assert e.method == "RE%47IST%45R" and parse_cseq(e.headers.get("cseq") or "").method == e.method
    assert (
        len(e.headers.values("contact")) == 2
        and e.headers.get("c%6fntact") == "<sip:alias2@host2.example.com>"
    )


def test_escapes() -> None:
    r = request("esc01")
    assert parse_uri(r.uri).user_decoded == "sips:user@example.com"
    assert parse_name_addr(r.headers.get("to") or "").uri.user_decoded == "user"
    assert parse_name_addr(r.headers.get("from") or "").uri.user_decoded == "I have spaces"
    contacts = parse_contacts(r.headers.get("contact") or "")
    assert contacts is not None
    uri = contacts[0].uri
    assert (uri.user_decoded, uri.param("lr"), uri.param("name")) == ("caller", "", "value%41")
    n = request("escnull")
    assert parse_name_addr(n.headers.get("to") or "").uri.user_decoded == "null-\x00-null"
    users = [
        c.uri.user_decoded for v in n.headers.values("contact") for c in parse_contacts(v) or ()
    ]
    assert users == ["\x00", "\x00\x00"]
    assert b"%00%00@host5" in n.to_bytes() and b"\x00" not in n.to_bytes()
    s = request("semiuri")
    assert (parse_uri(s.uri).user, parse_uri(s.uri).host) == (
        "user;par=u%40example.net",
        "example.com",
    )


def test_framing_related_messages() -> None:
    d = request("dblreq")
    assert (d.method, d.body, d.headers.get("call-id")) == (
        "REGISTER",
        b"",
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412",
    )
    assert len(request("mpart01").body) == 553 and b"\x00" in request("mpart01").body
    inv = request("inv2543")
    assert inv.body.startswith(b"v=0") and "content-length" not in inv.headers
    assert parse_vias(inv.headers.get("via") or "")[0].branch is None
    assert len(request("longreq").headers.get_all("via")) == 34
    with pytest.raises(SipParseError) as info:
        parse_message(load("badvers"))
    assert info.value.partial is not None and info.value.partial.headers.get("cseq") == "1 OPTIONS"


def test_baddn_with_its_empty_line_is_refused_for_the_display_name() -> None:
    data = load("baddn") + b"\r\n"
    observed, _ = observe(data)
    assert (observed.stage, observed.status) == ("validate", 400)
    assert observed.reason.startswith("Malformed From header: Display name must be quoted")


def test_semantic_helpers() -> None:
    with pytest.raises(BadExtensionError) as info:
        validate_request(request("bext01"), supported=SUPPORTED)
    assert info.value.unsupported == ("nothingSupportsThis", "nothingSupportsThisEither")
    with pytest.raises(BadExtensionError) as info:
        validate_request(request("bext01"), supported=SUPPORTED, proxy=True)
    assert len(info.value.unsupported) == 4
    zero = request("zeromf")
    assert max_forwards(zero) == 0
    with pytest.raises(SipParseError) as exc:
        check_max_forwards(zero)
    assert exc.value.status == 483
    c1, c2 = request("cparam01"), request("cparam02")
    a1 = (parse_contacts(c1.headers.get("contact") or "") or [])[0]
    a2 = (parse_contacts(c2.headers.get("contact") or "") or [])[0]
    assert (a1.params, a1.uri.params) == ((("unknownparam", None),), ())
    assert (a2.params, a2.uri.params) == ((), (("unknownparam", None),))
    rc = (parse_contacts(request("regescrt").headers.get("contact") or "") or [])[0]
    assert rc.uri.headers == "Route=%3Csip:sip.example.com%3E"
    assert parse_uri(request("escruri").uri).headers == "Route=%3Csip:example.com%3E"
    unreason = parse_message(load("unreason"))
    assert (
        isinstance(unreason, Response)
        and unreason.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    )
    noreason = parse_message(load("noreason"))
    assert isinstance(noreason, Response) and (noreason.status, noreason.reason) == (100, "")


def test_ipv6_messages() -> None:
    assert parse_uri(request("port-ambiguous").uri).host_port == "[2001:db8::10:5070]"
    unambiguous = parse_uri(request("port-unambiguous").uri)
    assert (unambiguous.host, unambiguous.port) == ("[2001:db8::10]", 5070)
    for name, received in (
        ("via-received-param-with-delim", "[2001:db8::9:255]"),
        ("via-received-param-no-delim", "2001:db8::9:255"),
    ):
        via = parse_vias(request(name).headers.get("via") or "")[0]
        assert dict(via.params)["received"] == received
    vias = [parse_vias(v)[0] for v in request("mult-ip-in-header").headers.values("via")]
    assert [(v.host, v.port) for v in vias] == [
        ("[2001:db8::9:1]", 6050),
        ("192.0.2.1", None),
        ("[2001:db8::9:255]", None),
    ]
    mapped = request("ipv4-mapped-ipv6")
    assert parse_vias(mapped.headers.get("via") or "")[0].host == "[::ffff:192.0.2.10]"


# -- over a stream ----------------------------------------------------------------------


STREAM_EXPECTATIONS = {
    "dblreq": ["message", "message", "error"],  # the INVITE's body is 5 octets over its length
    "inv2543": ["error"],
    "mcl01": ["error"],
    "ncl": ["error"],
    "clerr": [],
    "baddn": [],
}


@pytest.mark.parametrize("name", ALL_NAMES)
def test_stream_whole_and_byte_by_byte(name: str) -> None:
    data = load(name)
    whole, buffered = feed_chunks([data])
    assert feed_chunks(bytewise(data)) == (whole, buffered)
    kinds = [frame[0] for frame in whole]
    if name in STREAM_EXPECTATIONS:
        assert kinds == STREAM_EXPECTATIONS[name]
        return
    assert kinds == ["message"]
    frame = whole[0][1]
    assert isinstance(frame, bytes) and data.startswith(frame)
    assert outcome(frame, stream=True) == outcome(data)


def test_dblreq_over_a_stream_is_two_requests_then_garbage() -> None:
    frames = StreamFramer().feed(load("dblreq"))
    assert isinstance(frames[-1], FramingError) and frames[-1].head == b"C\r\n\r\n"
    methods = [parse_message(f, stream=True).method for f in frames if isinstance(f, bytes)]  # type: ignore[union-attr]
    assert methods == ["REGISTER", "INVITE"]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(ALL_NAMES),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=10),
)
def test_stream_randomly_split(name: str, cuts: list[int]) -> None:
    data = load(name)
    assert feed_chunks(split_at(data, cuts)) == feed_chunks([data])
    joined = b"".join(load(n) for n in ("wsinv", "mpart01", "transports"))
    assert feed_chunks(split_at(joined, cuts)) == feed_chunks([joined])


# -- fuzzing with mutated torture messages --------------------------------------------------


def exercise(data: bytes) -> None:
    """Everything a server would run on a datagram; only SipParseError may escape."""
    for stream in (False, True):
        try:
            message = parse_message(data, stream=stream)
        except SipParseError as exc:
            if exc.partial is not None and isinstance(exc.partial, Request):
                make_response(exc.partial, exc.status, exc.reason).to_bytes()
            continue
        assert_round_trip(message)
        if isinstance(message, Response):
            with contextlib.suppress(SipParseError):
                validate_response(message)
            continue
        try:
            validate_request(message, supported=SUPPORTED, proxy=True)
        except SipParseError as exc:
            make_response(message, exc.status, exc.reason, headers=list(exc.headers)).to_bytes()
            continue
        make_response(message, 200, to_tag="t").to_bytes()
        for value in message.headers.values("via"):
            parse_vias(value)
        check = (parse_name_addr, parse_cseq, parse_uri)
        for parser, value in zip(
            check,
            (message.headers.get("to"), message.headers.get("cseq"), message.uri),
            strict=True,
        ):
            parser(value or "")
        with contextlib.suppress(SipParseError):
            check_max_forwards(message)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(load(draw(st.sampled_from(ALL_NAMES))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        # Half of the edits hit the start line and the first header, where framing is decided.
        near_start = st.integers(min_value=0, max_value=min(60, len(data)))
        where = draw(st.one_of(near_start, st.integers(min_value=0, max_value=len(data))))
        action = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        if action == "delete":
            del data[where : where + draw(st.integers(min_value=1, max_value=20))]
        elif action == "insert":
            data[where:where] = draw(
                st.sampled_from(
                    [
                        b"\r\n",
                        b" ",
                        b";",
                        b",",
                        b'"',
                        b"<",
                        b">",
                        b"%",
                        b"\x00",
                        b":",
                        b"\r",
                        b"\n",
                        b"\xff",
                        b"@",
                        b"\t",
                        b"\r\n ",
                    ]
                )
            )
        elif action == "replace" and where < len(data):
            data[where] = draw(st.integers(min_value=0, max_value=255))
        else:
            start = data.rfind(b"\n", 0, where) + 1
            end = data.find(b"\n", where)
            if end > start:
                data[end + 1 : end + 1] = data[start : end + 1]
    return bytes(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_torture_messages(data: bytes) -> None:
    exercise(data)
    assert feed_chunks(split_at(data, [len(data) // 2])) == feed_chunks([data])


@pytest.mark.parametrize("name", ALL_NAMES)
def test_each_message_survives_the_whole_path(name: str) -> None:
    exercise(load(name))
