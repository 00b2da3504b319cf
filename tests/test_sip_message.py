"""parse_message, Message.to_bytes, Headers and make_response.

Every parse case is fed whole (as a datagram), byte by byte and randomly split through
a StreamFramer, and the stream parse must agree with the datagram parse.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sip_messages import (
    ParseCase,
    assert_round_trip,
    bytewise,
    feed_chunks,
    outcome,
    split_at,
)

from ivr.sip.build import has_to_tag, make_response
from ivr.sip.headers import parse_name_addr
from ivr.sip.message import (
    REASON_PHRASES,
    Headers,
    Request,
    Response,
    SipParseError,
    canonical_name,
    find_head_end,
    normalize_name,
    parse_content_length,
    parse_header_block,
    parse_message,
    split_list,
)

HEAD = (
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n"
    "Max-Forwards: 70\r\n"
    "From: Alice <sip:alice@example.com>;tag=9fxced76sl\r\n"
    "To: <sip:bob@example.com>\r\n"
    "Call-ID: 3848276298220188511@192.0.2.1\r\n"
    "CSeq: 1 OPTIONS\r\n"
)


def req(
    head: str = HEAD,
    body: bytes = b"",
    *,
    start: str = "OPTIONS sip:bob@example.com SIP/2.0",
    length: bool = True,
) -> bytes:
    cl = f"Content-Length: {len(body)}\r\n" if length else ""
    return f"{start}\r\n{head}{cl}\r\n".encode("utf-8", "surrogateescape") + body


def resp(status_line: str = "SIP/2.0 200 OK", body: bytes = b"") -> bytes:
    return req(HEAD, body, start=status_line)


SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)

CASES = [
    ParseCase("minimal request", req()),
    ParseCase("minimal response", resp()),
    ParseCase("request with body", req(HEAD + "Content-Type: application/sdp\r\n", SDP)),
    ParseCase("LF-only lines", req().replace(b"\r\n", b"\n")),
    ParseCase("CRLF lines ended by a bare LF", req()[:-2] + b"\n"),
    ParseCase("leading CRLFs", b"\r\n\r\n\r\n" + req()),
    ParseCase("folded header", req(HEAD + "Subject: first\r\n \t second\r\n")),
    ParseCase("folded into an empty value", req(HEAD + "Subject:\r\n  folded\r\n")),
    ParseCase("compact forms", req(HEAD.replace("Via:", "v:").replace("Call-ID:", "i:"))),
    ParseCase("space before colon", req(HEAD + "Subject   :  x\r\n")),
    ParseCase("empty header value", req(HEAD + "Subject:\r\n")),
    ParseCase("unknown header with odd value", req(HEAD + "X-Odd!%: ;;,,;;,;\r\n")),
    ParseCase("multiple SP in Request-Line", req(start="OPTIONS  sip:bob@example.com   SIP/2.0")),
    ParseCase("trailing SP on Request-Line", req(start="OPTIONS sip:bob@example.com SIP/2.0  ")),
    ParseCase("lower-case version", req(start="OPTIONS sip:bob@example.com sip/2.0")),
    ParseCase("empty reason phrase", resp("SIP/2.0 100 ")),
    ParseCase("no reason phrase", resp("SIP/2.0 180")),
    ParseCase("UTF-8 reason phrase", resp("SIP/2.0 200 Grüß Gott, 成功")),
    ParseCase("NUL and DEL in a quoted pair", req(HEAD + 'Subject: "a\\\x00b\\\x7f"\r\n')),
    ParseCase("invalid UTF-8 in a header", req().replace(b"Max-Forwards: 70", b"X-Bin: \xff\xfe")),
    ParseCase(
        "CRLFCRLF inside the body",
        req(HEAD + "Content-Type: text/plain\r\n", b"a\r\n\r\nb\x00\xff"),
    ),
    ParseCase(
        "unsupported SIP version", req(start="OPTIONS sip:bob@example.com SIP/3.0"), 505, "version"
    ),
    ParseCase("unsupported version in a response", resp("SIP/1.0 200 OK"), 505, "version"),
    ParseCase(
        "not a SIP version", req(start="OPTIONS sip:bob@example.com HTTP/1.1"), 400, "SIP-Version"
    ),
    ParseCase("no SIP version", req(start="OPTIONS sip:bob@example.com"), 400, "Request-Line"),
    ParseCase("two SP, no Request-URI", req(start="OPTIONS  SIP/2.0"), 400, "Request-Line"),
    ParseCase("leading SP, no method", req(start=" sip:a@b SIP/2.0"), 400, "Request-Line"),
    ParseCase("SP only", req(start="  "), 400, "Request-Line"),
    ParseCase(
        "LWS inside the Request-URI",
        req(start="OPTIONS sip:bob@example.com; lr SIP/2.0"),
        400,
        "whitespace",
    ),
    ParseCase("Request-URI in <>", req(start="OPTIONS <sip:bob@example.com> SIP/2.0"), 400, "<>"),
    ParseCase("bad method token", req(start="OPT@IONS sip:bob@example.com SIP/2.0"), 400, "method"),
    ParseCase("four-digit status code", resp("SIP/2.0 2000 OK"), 400, "status code"),
    ParseCase("status code below 100", resp("SIP/2.0 099 Low"), 400, "status code"),
    ParseCase("status code 700", resp("SIP/2.0 700 High"), 400, "status code"),
    ParseCase("non-ASCII digits in status", resp("SIP/2.0 ２００ OK"), 400, "status code"),
    ParseCase(
        "status line without code",
        b"SIP/2.0\r\n" + HEAD.encode() + b"Content-Length: 0\r\n\r\n",
        400,
        "Status-Line",
    ),
    ParseCase("header line without colon", req(HEAD + "Foobar roobar\r\n"), 400, "header line"),
    ParseCase("bad header name", req(HEAD + "Bad Name: x\r\n"), 400, "header line"),
    ParseCase("known header name without colon", req(HEAD + "Via\r\n"), 400, "header line"),
    ParseCase("compact name without colon", req(HEAD + "v\r\n"), 400, "header line"),
    ParseCase("continuation before any header", req(" folded\r\n" + HEAD), 400, "Continuation"),
    ParseCase("stray CR in a header", req(HEAD + "Subject: a\rb\r\n"), 400, "Stray CR"),
    ParseCase(
        "multiple Content-Length", req(HEAD + "l: 0\r\n"), 400, "Multiple Content-Length", False
    ),
    ParseCase(
        "Content-Length larger than body",
        req(length=False)[:-2] + b"Content-Length: 10\r\n\r\nabc",
        400,
        "larger",
        False,
    ),
    ParseCase(
        "negative Content-Length",
        req(length=False)[:-2] + b"Content-Length: -1\r\n\r\n",
        400,
        "Content-Length",
        False,
    ),
    ParseCase(
        "huge Content-Length",
        req(length=False)[:-2] + b"Content-Length: 99999999999999999999\r\n\r\n",
        400,
        "Content-Length",
        False,
    ),
    ParseCase(
        "non-ASCII digit Content-Length",
        req(length=False)[:-2] + "Content-Length: ²\r\n\r\n".encode(),
        400,
        "Content-Length",
        False,
    ),
    ParseCase("no empty line", req()[:-2], 400, "no empty line", False),
    ParseCase("body beyond Content-Length", req() + b"trailing junk", None, "", False),
    ParseCase("no Content-Length", req(length=False) + b"the rest", None, "", False),
    ParseCase("only line breaks", b"\r\n\r\n\r\n", 400, "Empty", False),
    ParseCase("empty datagram", b"", 400, "Empty", False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parse_case_whole(case: ParseCase) -> None:
    result = outcome(case.data)
    if case.status is None:
        assert result[0] == "ok", result
        assert_round_trip(parse_message(case.data))
    else:
        assert result[:2] == ("error", case.status), result
        assert case.reason.lower() in str(result[2]).lower()


def _stream_outcomes(chunks: list[bytes]) -> list[tuple[object, ...]]:
    frames, buffered = feed_chunks(chunks)
    assert buffered == 0
    return [outcome(f[1], stream=True) if f[0] == "message" else f for f in frames]  # type: ignore[arg-type]


FRAMED = [case for case in CASES if case.framed]


@pytest.mark.parametrize("case", FRAMED, ids=lambda c: c.name)
def test_parse_case_byte_by_byte(case: ParseCase) -> None:
    whole = _stream_outcomes([case.data])
    assert [r for r in whole if r != ("ping",)] == [outcome(case.data)]
    assert _stream_outcomes(bytewise(case.data)) == whole


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(FRAMED),
    cuts=st.lists(st.integers(min_value=0, max_value=4096), max_size=12),
)
def test_parse_case_randomly_split(case: ParseCase, cuts: list[int]) -> None:
    assert _stream_outcomes(split_at(case.data, cuts)) == _stream_outcomes([case.data])


def test_parsed_fields() -> None:
    data = req(
        HEAD.replace("Via:", "v :") + "Subject: a\r\n  b\r\n",
        start="OPTIONS  sip:bob@example.com sip/2.0",
    )
    message = parse_message(b"\r\n" + data)
    assert isinstance(message, Request)
    assert (message.method, message.uri, message.version) == (
        "OPTIONS",
        "sip:bob@example.com",
        "SIP/2.0",
    )
    assert message.headers.get("via") == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9"
    assert message.headers.get("subject") == "a b"
    assert message.call_id == "3848276298220188511@192.0.2.1"
    response = parse_message(resp("SIP/2.0 486 Busy  Here"))
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (486, "Busy  Here")


def test_datagram_body_rules() -> None:
    assert parse_message(req() + b"extra").body == b""
    assert parse_message(req(length=False) + b"rest").body == b"rest"
    with pytest.raises(SipParseError, match="Octets after the body"):
        parse_message(req() + b"extra", stream=True)
    with pytest.raises(SipParseError, match="Missing Content-Length"):
        parse_message(req(length=False), stream=True)


def test_errors_carry_the_partial_message() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(req(start="OPTIONS sip:bob@example.com SIP/7.0"))
    assert info.value.status == 505
    partial = info.value.partial
    assert isinstance(partial, Request) and partial.headers.get("call-id")
    with pytest.raises(SipParseError) as info:
        parse_message(req(length=False)[:-2] + b"Content-Length: 99\r\n\r\n")
    assert info.value.partial is not None and info.value.partial.headers.get("cseq") == "1 OPTIONS"
    with pytest.raises(SipParseError) as info:
        parse_message(req()[:-2])
    assert info.value.partial is not None
    for start, method in (
        ("ACK <sip:bob@example.com> SIP/2.0", "ACK"),
        ("INVITE sip:bob@example.com; lr SIP/2.0", "INVITE"),
        ("BAD@METHOD sip:bob@example.com SIP/2.0", "BAD@METHOD"),
        ("OPTIONS sip:bob@example.com HTTP/1.1", "OPTIONS"),
    ):
        with pytest.raises(SipParseError) as info:
            parse_message(req(start=start))
        partial = info.value.partial
        assert isinstance(partial, Request) and partial.method == method, start
        assert make_response(partial, info.value.status, info.value.reason).headers.get("cseq")
    for hopeless in (b"garbage\r\n\r\n", b"A B C D\r\n\r\n", b"INVITE sip:x\r\n\r\n"):
        with pytest.raises(SipParseError) as info:
            parse_message(hopeless)
        assert info.value.partial is None


def test_size_limit() -> None:
    data = req(HEAD + "Content-Type: text/plain\r\n", b"x" * 2000)
    assert parse_message(data, max_size=len(data)).body == b"x" * 2000
    with pytest.raises(SipParseError) as info:
        parse_message(data, max_size=len(data) - 1)
    assert info.value.status == 513


def test_find_head_end() -> None:
    assert find_head_end(b"A\r\nB\r\n\r\nbody") == (4, 8)
    assert find_head_end(b"A\nB\n\nbody") == (3, 5)
    assert find_head_end(b"A\r\nB\n\r\nbody") == (4, 7)
    assert find_head_end(b"A\r\nB\r\n\nbody") == (4, 7)
    assert find_head_end(b"A\nB\n\r\n\r\nbody") == (3, 6)
    assert find_head_end(b"A\r\nB\r\n") == (-1, -1)
    assert find_head_end(b"\r\n\r\nA\r\n\r\n", 4) == (5, 9)


def test_parse_header_block_and_helpers() -> None:
    start, headers = parse_header_block(b"\r\nINVITE x\r\nl: 5\r\nt: <sip:a@b>\r\n\r\n")
    assert start == "INVITE x"
    assert list(headers) == [("content-length", "5"), ("to", "<sip:a@b>")]
    with pytest.raises(SipParseError):
        parse_header_block(b"INVITE x\r\nnonsense\r\n\r\n")
    assert parse_content_length(" 0012 ") == 12
    for bad in ("-1", "1.0", "", "0x10", "١٢", "12345678901"):
        with pytest.raises(SipParseError):
            parse_content_length(bad)
    assert canonical_name("call-id") == "Call-ID"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("x-my-header") == "X-My-Header"
    assert normalize_name(" V ") == "via"
    assert normalize_name("Content-Length") == "content-length"
    assert REASON_PHRASES[420] == "Bad Extension"


def test_split_list() -> None:
    assert split_list("a, b ,c") == ["a", "b", "c"]
    assert split_list('"x, y" <sip:a@b>;p="1,2", <sip:c,d@e>') == [
        '"x, y" <sip:a@b>;p="1,2"',
        "<sip:c,d@e>",
    ]
    assert split_list('"a\\", b" <sip:x@y>, z') == ['"a\\", b" <sip:x@y>', "z"]
    assert split_list("a,,b,") == ["a", "b"]
    assert split_list("a,,b,", keep_empty=True) == ["a", "", "b", ""]
    assert split_list(' "unterminated, quote') == ['"unterminated, quote']
    assert split_list("") == [] and split_list("", keep_empty=True) == [""]


def test_headers_api() -> None:
    headers = Headers([("Via", "v1"), ("v", "v2, v3"), ("To", "<sip:a@b>"), ("X-A", "1")])
    assert headers.get("VIA") == "v1" and headers.get("missing") is None
    assert headers.get("missing", "d") == "d"
    assert headers.values("via") == ["v1", "v2, v3"]
    assert headers.get_all("via") == ["v1", "v2", "v3"]
    assert headers.get_all("to") == ["<sip:a@b>"]
    assert headers.count("via") == 2 and len(headers) == 4
    assert "t" in headers and "from" not in headers and 5 not in headers
    headers.prepend("Via", "v0")
    headers.add("x-a", "2")
    assert next(iter(headers)) == ("via", "v0")
    copy = headers.copy()
    headers.set("x-a", "3")
    assert headers.values("x-a") == ["3"] and copy.values("x-a") == ["1", "2"]
    assert copy != headers
    headers.set("new", "n")
    headers.remove("via")
    assert list(headers) == [("to", "<sip:a@b>"), ("x-a", "3"), ("new", "n")]
    assert copy == copy.copy()


def test_to_bytes_keeps_order_and_fixes_content_length() -> None:
    message = Request("INVITE", "sip:bob@example.com")
    message.headers.add("v", "SIP/2.0/UDP h;branch=z9hG4bK1")
    message.headers.add("l", "999")
    message.headers.add("Content-Length", "5")
    message.headers.add("call-id", "abc")
    message.headers.add("x-custom-thing", "1")
    message.body = b"hello"
    assert message.to_bytes() == (
        b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"Content-Length: 5\r\nCall-ID: abc\r\nX-Custom-Thing: 1\r\n\r\nhello"
    )
    assert Response(404).to_bytes() == b"SIP/2.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("value", ["a\r\nInjected: x", "a\nb", "a\rb"])
def test_to_bytes_refuses_header_injection(value: str) -> None:
    message = Request("OPTIONS", "sip:a@b")
    message.headers.add("Subject", value)
    with pytest.raises(ValueError, match="line break"):
        message.to_bytes()
    with pytest.raises(ValueError, match="line break"):
        Response(400, value).to_bytes()


def test_round_trip_keeps_undecodable_octets() -> None:
    data = req().replace(b"Max-Forwards: 70", b"Subject: \xff\xfe caf\xc3\xa9 \xed\xa0\x80")
    message = parse_message(data)
    assert message.headers.get("subject") == "\udcff\udcfe caf\u00e9 \udced\udca0\udc80"
    assert message.to_bytes() == data


# -- make_response -----------------------------------------------------------------------


def test_make_response_copies_and_tags() -> None:
    data = req(
        HEAD.replace("Via: ", "Via: SIP/2.0/TCP p.example.com;branch=z9hG4bKp, ")
        + "Timestamp: 54\r\n"
    )
    request = parse_message(data)
    assert isinstance(request, Request)
    response = make_response(request, 486, to_tag="t1", headers=[("Retry-After", "60")])
    assert response.reason == "Busy Here"
    assert response.headers.values("via") == request.headers.values("via")
    assert parse_name_addr(response.headers.get("to") or "").tag == "t1"
    assert response.headers.get("from") == request.headers.get("from")
    assert response.headers.get("retry-after") == "60"
    assert "timestamp" not in response.headers
    trying = make_response(request, 100)
    assert trying.headers.get("timestamp") == "54"
    assert trying.headers.get("to") == "<sip:bob@example.com>"
    assert_round_trip(parse_message(response.to_bytes()))


@pytest.mark.parametrize(
    ("to", "tagged"),
    [
        ("<sip:bob@example.com>;tag=abc", True),
        ("sip:bob@example.com ;  TAG = abc", True),
        ("<sip:bob@example.com;tag=uri-param>", False),
        ('"x;tag=y" <sip:bob@example.com>', False),
        ("<sip:bob@example.com>;tagx=1", False),
        ("<sip:bob@example.com>;x=1;tag", True),
        ("Broken, Name <sip:bob@example.com>;tag=1", True),
        ("Broken, Name <sip:bob@example.com;tag=2>", False),
    ],
)
def test_to_tag_detection(to: str, tagged: bool) -> None:
    assert has_to_tag(to) is tagged
    request = Request("INVITE", "sip:bob@example.com", Headers([("To", to)]))
    value = make_response(request, 200, to_tag="new").headers.get("to") or ""
    assert value.endswith(";tag=new") is not tagged


def test_make_response_copies_duplicates_once() -> None:
    request = Request(
        "INVITE",
        "sip:a@b",
        Headers(
            [
                ("To", "<sip:a@b>"),
                ("To", "<sip:c@d>"),
                ("Call-ID", "1"),
                ("i", "2"),
                ("v", "x"),
                ("v", "y"),
            ]
        ),
    )
    response = make_response(request, 400)
    assert list(response.headers) == [
        ("to", "<sip:a@b>"),
        ("call-id", "1"),
        ("via", "x"),
        ("via", "y"),
    ]


# -- fuzzing ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    for stream in (False, True):
        try:
            message = parse_message(data, stream=stream)
        except SipParseError:
            continue
        assert_round_trip(message)


LINE = st.text(alphabet=st.sampled_from('Vv:;=,<>"\\ \t\r\nabcSIP/2.0@%\x00é'), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, max_size=8), st.binary(max_size=30))
def test_random_header_blocks(lines: list[str], body: bytes) -> None:
    data = ("INVITE sip:a@b SIP/2.0\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode() + body
    try:
        message = parse_message(data)
    except SipParseError as exc:
        assert exc.status in (400, 505, 513)
        return
    assert_round_trip(message)
