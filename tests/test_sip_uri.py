"""SIP/SIPS/tel URIs: decomposition, escaping, IPv6, errors, printing back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.sip.message import SipParseError
from ivr.sip.uri import Uri, UriError, _parse_general, parse_uri, unescape

INTMETH = (
    "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
    "(doesn't-it)@example.com"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:example.com", Uri("sip", host="example.com")),
        ("SIP:Alice@Example.COM", Uri("sip", user="Alice", host="example.com")),
        ("sips:alice:secret@host:5061", Uri("sips", "alice", "secret", "host", 5061)),
        ("sip:alice:@host", Uri("sip", "alice", "", "host")),
        (
            "sip:alice@192.0.2.1:5060;transport=udp;lr",
            Uri("sip", "alice", None, "192.0.2.1", 5060, (("transport", "udp"), ("lr", None))),
        ),
        (
            "sip:user@example.com?Route=%3Csip:example.com%3E",
            Uri("sip", "user", host="example.com", headers="Route=%3Csip:example.com%3E"),
        ),
        ("sip:[2001:db8::10]", Uri("sip", host="[2001:db8::10]")),
        ("sip:[2001:db8::10]:5070", Uri("sip", host="[2001:db8::10]", port=5070)),
        ("sip:[2001:db8::10:5070]", Uri("sip", host="[2001:db8::10:5070]")),
        ("sip:caller@[::ffff:192.0.2.2]", Uri("sip", "caller", host="[::ffff:192.0.2.2]")),
        ("sip:user@[2001:db8::192.0.2.1]", Uri("sip", "user", host="[2001:db8::192.0.2.1]")),
        (
            INTMETH,
            Uri(
                "sip",
                "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*",
                "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)",
                "example.com",
            ),
        ),
        (
            "sip:user;par=u%40example.net@example.com",
            Uri("sip", "user;par=u%40example.net", host="example.com"),
        ),
        (
            "sip:sips%3Auser%40example.com@example.net",
            Uri("sip", "sips%3Auser%40example.com", host="example.net"),
        ),
        ("sip:a@b@example.com;x=1", Uri("sip", "a@b", host="example.com", params=(("x", "1"),))),
        (
            "sip:u@host;x=1?h=a@b",
            Uri("sip", "u", host="host", params=(("x", "1"),), headers="h=a@b"),
        ),
        (
            "sip:+1-212-555-1212:1234@gw.com;user=phone",
            Uri("sip", "+1-212-555-1212", "1234", "gw.com", params=(("user", "phone"),)),
        ),
        ("sip:*21%23@pbx", Uri("sip", "*21%23", host="pbx")),
        ("tel:+1-201-555-0123", Uri("tel", "+1-201-555-0123")),
        (
            "tel:7042;phone-context=example.com",
            Uri("tel", "7042", params=(("phone-context", "example.com"),)),
        ),
        ("isbn:2983792873", Uri("isbn", "2983792873")),
        ("http://www.example.com", Uri("http", "//www.example.com")),
        ("soap.beep://192.0.2.103:3002", Uri("soap.beep", "//192.0.2.103:3002")),
        ("  sip:padded@host \t", Uri("sip", "padded", host="host")),
    ],
)
def test_parse(text: str, expected: Uri) -> None:
    assert parse_uri(text) == expected
    assert _parse_general(text.strip(" \t")) == expected
    again = parse_uri(str(expected))
    assert again == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "scheme"),
        ("example.com", "scheme"),
        ("sip:", "Empty"),
        ("tel:", "Empty"),
        ("sip:user@", "host"),
        ("sip:@example.com", "user"),
        ("sip::pw@example.com", "user"),
        ("sip:user@exa mple.com", "Whitespace"),
        ("sip:user@example.com; lr", "Whitespace"),
        ("sip:<user@example.com>", "character"),
        ('sip:"user"@example.com', "character"),
        ("sip:us\x00er@example.com", "character"),
        ("sip:2001:db8::10", "host"),
        ("sip:[2001:db8:::192.0.2.1]", "IPv6"),
        ("sip:[1::2::3]", "IPv6"),
        ("sip:[gggg::1]", "host"),
        ("sip:host:0", "Port"),
        ("sip:host:65536", "Port"),
        ("sip:host:123456", "host"),
        ("sip:host:", "host"),
        ("sip:host;;lr", "Empty URI parameter"),
        ("sip:host;", "Empty URI parameter"),
        ("sip:host;=x", "without a name"),
        ("sip:host;x=", "Empty value"),
        ("sip:host?", "Empty URI headers"),
        ("sip:us%zzer@host", "escape"),
        ("sip:user@host;p=%4", "escape"),
        ("sip:user@host?h=%G0", "escape"),
        ("sip:user@ho%41st", "host"),
        ("tel:;x=1", "number"),
        ("tel:12%3", "escape"),
        ("1sip:host", "scheme"),
    ],
)
def test_errors(text: str, reason: str) -> None:
    with pytest.raises(UriError) as info:
        parse_uri(text)
    assert reason.lower() in info.value.reason.lower()
    assert isinstance(info.value, SipParseError) and info.value.status == 400


def test_escaping_is_decoded_only_where_allowed() -> None:
    uri = parse_uri("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.user == "cal%6Cer" and uri.user_decoded == "caller"
    assert uri.param("lr") == "" and uri.has_param("LR")
    assert uri.param("name") == "value%41"
    assert uri.param("missing") is None and not uri.has_param("missing")
    assert str(uri) == "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"
    null = parse_uri("sip:null-%00-null@example.com")
    assert null.user == "null-%00-null" and null.user_decoded == "null-\x00-null"
    assert parse_uri("sip:%00%00@h").user_decoded == "\x00\x00"
    assert parse_uri("sip:I%20have%20spaces@example.net").user_decoded == "I have spaces"
    assert (
        parse_uri("sip:sips%3Auser%40example.com@example.net").user_decoded
        == "sips:user@example.com"
    )
    assert parse_uri("sip:%E5sa@h").user_decoded == "\udce5sa"
    assert parse_uri("sip:host").user_decoded is None


def test_unescape() -> None:
    assert unescape("plain") == "plain"
    assert unescape("%41%62%2a%00") == "Ab*\x00"
    assert unescape("%c3%a5") == "å"
    assert unescape("%ff") == "\udcff"
    assert unescape("100%") == "100%"


def test_accessors() -> None:
    uri = parse_uri("sip:alice@Example.com:5080;Transport=TCP")
    assert uri.host_port == "example.com:5080"
    assert uri.param("transport") == "TCP"
    assert parse_uri("sip:h").host_port == "h"


_USER = st.text(alphabet="abcXYZ019-_.!~*'()&=+$,", min_size=1, max_size=8)
_HOST = st.one_of(
    st.text(alphabet="abz09-.", min_size=1, max_size=10),
    st.sampled_from(["[2001:db8::1]", "[::ffff:192.0.2.1]", "[1::2::3]", "[::]"]),
)
_PARAM = st.text(alphabet="az09-_.!~*'()[]/:&+$", min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.one_of(st.none(), _USER),
    password=st.one_of(st.none(), st.text(alphabet="ab1&=+$,", max_size=5)),
    host=_HOST,
    port=st.one_of(st.none(), st.integers(min_value=0, max_value=99999)),
    params=st.lists(st.tuples(_PARAM, st.one_of(st.none(), _PARAM)), max_size=3),
)
def test_fast_path_agrees_with_general_parser(
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: int | None,
    params: list[tuple[str, str | None]],
) -> None:
    text = f"{scheme}:"
    if user is not None:
        text += user + (f":{password}" if password is not None else "") + "@"
    text += host + (f":{port}" if port is not None else "")
    text += "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)
    try:
        fast: Uri | str = parse_uri(text)
    except UriError as exc:
        fast = exc.reason
    try:
        general: Uri | str = _parse_general(text)
    except UriError as exc:
        general = exc.reason
    assert type(fast) is type(general)
    if isinstance(fast, Uri):
        assert fast == general
        assert parse_uri(str(fast)) == fast


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("sip:tel@[]:;?=%&/,.<> \t\x00aZ09é\udcff"), max_size=40))
def test_random_text_raises_only_uri_error(text: str) -> None:
    try:
        uri = parse_uri(text)
    except UriError:
        return
    assert parse_uri(str(uri)) == uri
