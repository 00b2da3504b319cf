"""Structured header values: Via, parameters, name-addr, Contact lists, CSeq, integers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.sip import headers
from ivr.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    format_params,
    param,
    parse_contacts,
    parse_cseq,
    parse_int_header,
    parse_name_addr,
    parse_params,
    parse_via,
    parse_vias,
)
from ivr.sip.message import SipParseError
from ivr.sip.uri import Uri

# -- Via ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport",
            Via("UDP", "192.0.2.1", 5060, (("branch", "z9hG4bK74bf9"), ("rport", None))),
        ),
        (
            "SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw",
            Via("UDP", "192.0.2.2", None, (("branch", "390skdjuw"),)),
        ),
        (
            "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  ",
            Via("TCP", "spindle.example.com", None, (("branch", "z9hG4bK9ikj8"),)),
        ),
        ("sip/2.0/tls Host.Example.COM : 5061", Via("TLS", "host.example.com", 5061)),
        (
            "SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
            Via("UNKNOWN", "t4.example.com", None, (("branch", "z9hG4bKasd0f3en"),)),
        ),
        (
            "SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111",
            Via(
                "UDP",
                "[2001:db8::9:1]",
                None,
                (("received", "[2001:db8::9:255]"), ("branch", "z9hG4bKas3-111")),
            ),
        ),
        (
            "SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3",
            Via(
                "UDP",
                "[2001:db8::9:1]",
                None,
                (("received", "2001:db8::9:255"), ("branch", "z9hG4bKas3")),
            ),
        ),
        (
            "SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
            Via("TCP", "host1.example.com", None, (("branch", "z9hG4bK-.!%66*_+`'~"),)),
        ),
        ('SIP/2.0/UDP h;x="quoted; value"', Via("UDP", "h", None, (("x", '"quoted; value"'),))),
    ],
)
def test_parse_via(text: str, expected: Via) -> None:
    assert parse_via(text) == expected
    assert parse_via(str(expected)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 192.0.2.1",
        "SIP/7.0/UDP host",
        "HTTP/1.1/TCP host",
        "SIP/2.0/UDP 192.0.2.15;;",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP host;=x",
        "SIP/2.0/UDP host junk",
        "SIP/2.0/UDP host:0",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP [2001:db8:::1]",
        "SIP/2.0/UDP host;branch=a b",
        'SIP/2.0/UDP host;x="unterminated',
    ],
)
def test_parse_via_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(text)


def test_parse_vias_lists() -> None:
    vias = parse_vias(
        "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , "
        "SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239"
    )
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    for bad in ("SIP/2.0/UDP 192.0.2.15;;,;,,", "SIP/2.0/UDP a,,SIP/2.0/UDP b", "SIP/2.0/UDP a,"):
        with pytest.raises(SipParseError):
            parse_vias(bad)


def test_via_helpers() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport")
    assert via.branch == "z9hG4bKabc" and via.rfc3261_branch
    assert not parse_via("SIP/2.0/UDP h;branch=z9hG4bK").rfc3261_branch
    assert not parse_via("SIP/2.0/UDP h").rfc3261_branch
    moved = via.with_received("192.0.2.9", 40000)
    assert (
        str(moved) == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=40000;received=192.0.2.9"
    )
    same = parse_via("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx").with_received("10.0.0.1", 5060)
    assert str(same) == "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx"


# -- parameters -----------------------------------------------------------------------


def test_parse_params() -> None:
    assert parse_params("") == ()
    assert parse_params(" ; a = 1 ; flag ;q=0.5") == (("a", "1"), ("flag", None), ("q", "0.5"))
    assert parse_params('x="a;b\\"c";y') == (("x", '"a;b\\"c"'), ("y", None))
    assert parse_params('p="<urn:uuid:1>";+sip.instance') == (
        ("p", '"<urn:uuid:1>"'),
        ("+sip.instance", None),
    )
    assert param((("Tag", "x"),), "tag") == "x"
    assert param((("lr", None),), "LR") == ""
    assert param((), "tag") is None
    assert format_params((("a", "1"), ("b", None))) == ";a=1;b"
    for bad in (";;", "a;", "a=", 'a="x', "a b=1", "a=<x>", "a=x,y", "é=1"):
        with pytest.raises(SipParseError):
            parse_params(bad)


# -- name-addr ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "display", "uri", "params", "bracketed"),
    [
        (
            '"Alice" <sip:alice@example.com>;tag=1',
            '"Alice"',
            "sip:alice@example.com",
            (("tag", "1"),),
            True,
        ),
        ("<sip:alice@example.com>", None, "sip:alice@example.com", (), True),
        (
            "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
            None,
            "sip:vivekg@chair-dnrc.example.com",
            (("tag", "1918181833n"),),
            False,
        ),
        (
            '"J Rosenberg \\\\\\""       <sip:jdrosen@example.com> ; tag = 98asjd8',
            '"J Rosenberg \\\\\\""',
            "sip:jdrosen@example.com",
            (("tag", "98asjd8"),),
            True,
        ),
        (
            "caller<sip:caller@example.com>;tag=323",
            "caller",
            "sip:caller@example.com",
            (("tag", "323"),),
            True,
        ),
        (
            "token1~` token2'+_ token3*%!.- <sip:mundane@example.com>",
            "token1~` token2'+_ token3*%!.-",
            "sip:mundane@example.com",
            (),
            True,
        ),
        ("Åsa Öberg <sip:asa@example.se>", "Åsa Öberg", "sip:asa@example.se", (), True),
        (
            '"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:a@b>',
            '"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"',
            "sip:a@b",
            (),
            True,
        ),
        (
            "sip:+19725552222@gw1.example.net;unknownparam",
            None,
            "sip:+19725552222@gw1.example.net",
            (("unknownparam", None),),
            False,
        ),
        (
            "<sip:+19725552222@gw1.example.net;unknownparam>",
            None,
            "sip:+19725552222@gw1.example.net;unknownparam",
            (),
            True,
        ),
        (
            "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
            None,
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            (),
            True,
        ),
        ("isbn:2983792873", None, "isbn:2983792873", (), False),
        (
            "<http://www.example.com>;tag=3234233",
            None,
            "http://www.example.com",
            (("tag", "3234233"),),
            True,
        ),
        ('"" <sip:a@b>', '""', "sip:a@b", (), True),
    ],
)
def test_parse_name_addr(
    text: str,
    display: str | None,
    uri: str,
    params: tuple[tuple[str, str | None], ...],
    bracketed: bool,
) -> None:
    parsed = parse_name_addr(text)
    assert (parsed.display, str(parsed.uri), parsed.params, parsed.bracketed) == (
        display,
        uri,
        params,
        bracketed,
    )
    again = parse_name_addr(str(parsed))
    assert (again.display, again.uri, again.params) == (parsed.display, parsed.uri, parsed.params)


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"Mr. J. User <sip:j.user@example.com>',
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        '"Watson, Thomas" < sip:t.watson@example.org >',
        "<sip:a@b",
        "<>",
        '"name" sip:a@b',
        "<sip:a@b> junk",
        "<sip:a@b>;;",
        "<sip:a@b>;",
        "Alice sip:alice@example.com",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "<sip:a b@c>",
        "a@b.c",
        "sip:user@[2001:db8:::192.0.2.1]",
    ],
)
def test_parse_name_addr_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_name_addr(text)


def test_name_addr_helpers() -> None:
    addr = parse_name_addr('"A \\"B\\" \\\\C" <sip:a@b>;TAG=x;foo')
    assert addr.display_text == 'A "B" \\C'
    assert addr.tag == "x"
    tagged = addr.with_tag("y")
    assert tagged.tag == "y" and tagged.params == (("foo", None), ("tag", "y"))
    assert str(tagged) == '"A \\"B\\" \\\\C" <sip:a@b>;foo;tag=y'
    assert parse_name_addr("plain <sip:a@b>").display_text == "plain"
    assert parse_name_addr("<sip:a@b>").display_text is None
    assert parse_name_addr("sip:a@b;tag").tag == ""
    assert NameAddr(Uri("sip", host="h")).tag is None


def test_parse_contacts() -> None:
    assert parse_contacts(" * ") is None
    contacts = parse_contacts(
        '"Quoted, name" <sip:a@h1;x=1>;q=0.5, <sip:b@h2>;+sip.instance="<urn:uuid:1,2>", sip:c@h3'
    )
    assert contacts is not None
    assert [str(c.uri) for c in contacts] == ["sip:a@h1;x=1", "sip:b@h2", "sip:c@h3"]
    assert param(contacts[1].params, "+sip.instance") == '"<urn:uuid:1,2>"'
    for bad in ("<sip:a@b>,,<sip:c@d>", "<sip:a@b>,", "*, <sip:a@b>", ""):
        with pytest.raises(SipParseError):
            parse_contacts(bad)


# -- CSeq and integers ------------------------------------------------------------------


def test_parse_cseq() -> None:
    assert parse_cseq("0009 INVITE") == CSeq(9, "INVITE")
    assert parse_cseq(" 2147483647\t!interesting-Method0123456789_*+`.%indeed'~ ") == CSeq(
        2**31 - 1, "!interesting-Method0123456789_*+`.%indeed'~"
    )
    assert str(CSeq(1, "BYE")) == "1 BYE"
    for bad in (
        "2147483648 INVITE",
        "36893488147419103232 REGISTER",
        "1",
        "INVITE 1",
        "1 IN VITE",
        "-1 BYE",
        "1 INV;ITE",
        "１ INVITE",
        "",
        "1\x1cINVITE",
    ):
        with pytest.raises(SipParseError):
            parse_cseq(bad)


def test_parse_int_header() -> None:
    assert parse_int_header(" 0068 ", "Max-Forwards", maximum=255) == 68
    assert parse_int_header("4294967295", "Expires", maximum=2**32 - 1) == 2**32 - 1
    for bad in ("256", "-1", "", "1.5", "١", "1" * 5000):
        with pytest.raises(SipParseError, match="Max-Forwards"):
            parse_int_header(bad, "Max-Forwards", maximum=255)


# -- robustness ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a " * 5000 + ",<sip:x@y>",
        "a" * 20000 + ",<sip:x@y>",
        '"' + "\\" * 20001,
        '<sip:a@b>;x="' + "y" * 20000,
        '<sip:a@b>;x="' + "\\y" * 20000,
        ";" * 20000,
        "SIP/2.0/UDP " + "a" * 20000 + "!",
    ],
)
def test_adversarial_inputs_are_linear(text: str) -> None:
    for parser in (parse_name_addr, parse_contacts, parse_via, parse_params):
        with contextlib.suppress(SipParseError):
            parser(text)


_ALPHABET = st.sampled_from('"<>;,=:@ \t\\sip/2.0UDPabc[]%\x00é')


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=50))
def test_random_values_raise_only_sip_parse_error(text: str) -> None:
    for parser in (
        parse_name_addr,
        parse_contacts,
        parse_via,
        parse_vias,
        parse_params,
        parse_cseq,
    ):
        with contextlib.suppress(SipParseError):
            parser(text)


@pytest.mark.parametrize(
    "text",
    [
        "<sip:u1@ivr.local>;tag=abc",
        '"Anna" <sip:1001@ivr.local>;tag=x-1.2',
        "Anna <sip:a@b>;tag=zz",
        "<sip:a@b;transport=tcp>;tag=1",
        "<sip:a@b>;foo=1;tag=2",
        "<sip:a@b> ;tag=3",
        '<sip:a@b>;tag="quoted"',
        "<sip:a@b>;tag=",
        "<sip:a@b>;tag=1;tag=2",
        "<sip:a b>;tag=1",
    ],
)
def test_tagged_address_fast_path_agrees_with_the_full_parser(text: str) -> None:
    """``<...>;tag=token`` reuses the cached parse of ``<...>``: same result, same error."""
    try:
        expected: object = headers._parse_name_addr(text)
    except SipParseError as exc:
        expected = ("error", exc.reason)
    try:
        got: object = parse_name_addr(text)
    except SipParseError as exc:
        got = ("error", exc.reason)
    assert got == expected
