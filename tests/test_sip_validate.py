"""validate_request / validate_response / Max-Forwards helpers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sip_messages import assert_round_trip

from ivr.sip.build import make_response
from ivr.sip.message import Request, Response, SipParseError, parse_message
from ivr.sip.validate import (
    BadExtensionError,
    check_max_forwards,
    max_forwards,
    validate_request,
    validate_response,
)

BASE = {
    "via": "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport",
    "max-forwards": "70",
    "from": '"Alice" <sip:alice@pbx.example.com>;tag=1928301774',
    "to": "<sip:alice@pbx.example.com>",
    "call-id": "a84b4c76e66710@192.0.2.10",
    "cseq": "314160 REGISTER",
    "contact": "<sip:alice@192.0.2.10:5060>;expires=3600;q=0.7",
    "expires": "3600",
}


def build(
    method: str = "REGISTER",
    uri: str = "sip:pbx.example.com",
    *,
    drop: tuple[str, ...] = (),
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    **changes: str,
) -> Request:
    fields = {**BASE, **{k.rstrip("_").replace("_", "-"): v for k, v in changes.items()}}
    lines = [f"{method} {uri} SIP/2.0"]
    lines += [f"{name}: {value}" for name, value in fields.items() if name not in drop]
    lines += [f"{name}: {value}" for name, value in extra]
    lines.append(f"Content-Length: {len(body)}")
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(message, Request)
    return message


def rejection(request: Request, **kwargs: object) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        validate_request(request, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_valid_requests_pass() -> None:
    validate_request(build())
    validate_request(build(drop=("max-forwards", "expires", "contact")))
    validate_request(
        build("OPTIONS", "sips:bob@example.com", cseq="1 OPTIONS", contact="<sips:a@b>")
    )
    validate_request(
        build(
            "INVITE",
            "tel:+4687654321",
            cseq="2 INVITE",
            extra=(("Content-Type", "application/sdp"),),
            body=b"v=0\r\n",
        )
    )
    validate_request(build(max_forwards="0"))
    validate_request(build(cseq="0 REGISTER", contact="*", expires="0"))


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (build(drop=("call-id",)), "Missing Call-ID header"),
        (build(drop=("to", "from", "call-id")), "Missing To, From, Call-ID headers"),
        (build(drop=("via",)), "Missing Via header"),
        (build(drop=("cseq",)), "Missing CSeq header"),
        (build(extra=(("To", "<sip:other@example.net>"),)), "Duplicate To header"),
        (
            build(extra=(("i", "second"), ("CSeq", "5 REGISTER"), ("Max-Forwards", "5"))),
            "Duplicate CSeq, Call-ID, Max-Forwards headers",
        ),
        (build(extra=(("Expires", "5"),)), "Duplicate Expires header"),
        (build(via="SIP/2.0/UDP 192.0.2.15;;,;,,"), "Malformed Via header"),
        (
            build(extra=(("Via", "SIP/2.0/UDP ok;branch=z9hG4bKx, garbage"),)),
            "Malformed Via header",
        ),
        (build(from_="Bell, Alexander <sip:a.g.bell@example.com>;tag=43"), "Malformed From header"),
        (build(to='"Mr. J. User <sip:j.user@example.com>'), "Malformed To header"),
        (build(to="< sip:t.watson@example.org >"), "Malformed To header"),
        (build(call_id="has space"), "Malformed Call-ID header"),
        (
            build(cseq="36893488147419103232 REGISTER"),
            "Malformed CSeq header: CSeq number out of range",
        ),
        (build(cseq="2147483648 REGISTER"), "CSeq number out of range"),
        (build(cseq="one REGISTER"), "Malformed CSeq header"),
        (build(cseq="8 INVITE"), "CSeq method does not match"),
        (build(max_forwards="300"), "Malformed Max-Forwards header"),
        (build(max_forwards="ten"), "Malformed Max-Forwards header"),
        (build(expires="1" * 100), "Malformed Expires header"),
        (build(expires="-1"), "Malformed Expires header"),
        (
            build(contact="sip:user@example.com?Route=%3Csip:sip.example.com%3E"),
            "Malformed Contact header",
        ),
        (build(contact='"Joe" <sip:joe@example.org>;;;;'), "Malformed Contact header"),
        (build(contact="<sip:a@b>;expires=280297596632815"), "Malformed Contact header"),
        (build(contact="<sip:a@b>;q=1.5"), "Malformed Contact header: q value"),
        (build(contact="*"), "'*' requires Expires: 0"),
        (build(contact="*", drop=("expires",)), "'*' requires Expires: 0"),
        (build(contact="*, <sip:a@b>", expires="0"), "Malformed Contact header"),
        (
            build(contact="*", expires="0", extra=(("Contact", "<sip:a@b>"),)),
            "'*' must be the only contact",
        ),
        (
            build("OPTIONS", cseq="1 OPTIONS", contact="*", expires="0"),
            "'*' must be the only contact",
        ),
        (build(body=b"v=0\r\n"), "Missing Content-Type header"),
        (build(uri="sip:2001:db8::10"), "Malformed Request-URI"),
        (build(uri="sip:user@[2001:db8:::192.0.2.1]"), "Malformed Request-URI"),
    ],
)
def test_rejected_with_400(request_: Request, reason: str) -> None:
    error = rejection(request_)
    assert error.status == 400
    assert reason in error.reason


def test_first_problem_wins() -> None:
    error = rejection(build(drop=("call-id",), cseq="1 INVITE", uri="foo:bar"))
    assert error.reason == "Missing Call-ID header"
    assert rejection(build(cseq="1 INVITE", uri="foo:bar")).status == 400
    assert rejection(build(uri="foo:bar", extra=(("Require", "x"),))).status == 416


@pytest.mark.parametrize(
    "uri",
    [
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "soap.beep://192.0.2.103:3002",
        "mailto:a@b",
        "im:a@b",
    ],
)
def test_unsupported_scheme_is_416(uri: str) -> None:
    error = rejection(build(uri=uri))
    assert (error.status, error.reason) == (
        416,
        f"Unsupported URI scheme {uri.split(':')[0].lower()!r}",
    )


def test_scheme_set_is_configurable() -> None:
    validate_request(build(uri="im:alice@example.com"), schemes={"sip", "im"})
    assert rejection(build(uri="tel:+123"), schemes={"sip", "sips"}).status == 416


def test_require_unknown_is_420_with_unsupported() -> None:
    request = build(
        extra=(
            ("Require", "nothingSupportsThis, nothingSupportsThisEither, path"),
            ("Proxy-Require", "noProxiesSupportThis"),
            ("Require", "nothingSupportsThis"),
        )
    )
    error = rejection(request, supported={"PATH", "outbound"})
    assert isinstance(error, BadExtensionError)
    assert error.status == 420
    assert error.unsupported == ("nothingSupportsThis", "nothingSupportsThisEither")
    assert error.headers == (("Unsupported", "nothingSupportsThis, nothingSupportsThisEither"),)
    proxy = rejection(request, supported={"path"}, proxy=True)
    assert isinstance(proxy, BadExtensionError)
    assert proxy.unsupported[-1] == "noProxiesSupportThis"
    validate_request(build(extra=(("Require", "path"), ("Proxy-Require", "x"))), supported=["path"])
    assert rejection(build(extra=(("Require", "a b"),))).reason == "Malformed Require header"


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_require_ignored_in_ack_and_cancel(method: str) -> None:
    validate_request(build(method, cseq=f"1 {method}", extra=(("Require", "unknown"),)))


def test_error_builds_a_response() -> None:
    request = build(extra=(("Require", "foo"),))
    error = rejection(request)
    response = make_response(
        request, error.status, error.reason, to_tag="t", headers=list(error.headers)
    )
    parsed = parse_message(response.to_bytes())
    assert isinstance(parsed, Response)
    assert (parsed.status, parsed.headers.get("unsupported")) == (420, "foo")
    assert_round_trip(parsed)


def test_max_forwards_helpers() -> None:
    assert max_forwards(build(max_forwards="0068")) == 68
    assert max_forwards(build(drop=("max-forwards",))) is None
    assert check_max_forwards(build(max_forwards="70")) == 69
    assert check_max_forwards(build(drop=("max-forwards",))) == 70
    assert check_max_forwards(build(drop=("max-forwards",)), default=10) == 10
    with pytest.raises(SipParseError) as info:
        check_max_forwards(build(max_forwards="0"))
    assert (info.value.status, info.value.reason) == (483, "Too Many Hops")
    with pytest.raises(SipParseError, match="Max-Forwards"):
        max_forwards(build(max_forwards="x"))


# -- responses ------------------------------------------------------------------------


def response(
    status_line: str = "SIP/2.0 200 OK",
    *,
    drop: tuple[str, ...] = (),
    extra: tuple[tuple[str, str], ...] = (),
    **changes: str,
) -> Response:
    fields = {**BASE, **{k.rstrip("_").replace("_", "-"): v for k, v in changes.items()}}
    lines = [status_line] + [f"{n}: {v}" for n, v in fields.items() if n not in drop]
    lines += [f"{n}: {v}" for n, v in extra] + ["Content-Length: 0"]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Response)
    return message


def test_validate_response() -> None:
    validate_response(response())
    validate_response(
        response("SIP/2.0 100 ", via="SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP 255.255.255.255")
    )
    validate_response(response(extra=(("Via", "garbage below the top Via"),)))
    for bad in (
        response(drop=("via",)),
        response(drop=("cseq",)),
        response(cseq="9292394834772304023312 OPTIONS"),
        response(via="garbage"),
        response(call_id=""),
        response(to="<sip:a@b"),
    ):
        with pytest.raises(SipParseError):
            validate_response(bad)
    with pytest.raises(SipParseError, match="Status code out of range"):
        validate_response(Response(99, "x", response().headers))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "via",
                "from",
                "to",
                "call-id",
                "cseq",
                "max-forwards",
                "contact",
                "expires",
                "require",
                "content-type",
            ]
        ),
        st.text(alphabet=st.sampled_from('sip:a@b<>;=,"* \t0123456789SIP/2.0/UDPtag'), max_size=30),
    ),
    st.sampled_from(["sip:a@b", "tel:1", "x:y", "sip:[::1]"]),
)
def test_random_headers_raise_only_sip_parse_error(fields: dict[str, str], uri: str) -> None:
    request = Request("REGISTER", uri)
    for name, value in fields.items():
        request.headers.add(name, value.strip(" \t"))
    try:
        validate_request(request, supported=("path",))
    except SipParseError as exc:
        assert exc.status in (400, 416, 420)
    with contextlib.suppress(SipParseError):
        validate_response(Response(200, "OK", request.headers))
