"""SDP parsing/serialization (RFC 4566) and offer/answer (RFC 3264)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.sip.sdp import (
    Answer,
    Attribute,
    Connection,
    MediaDescription,
    MediaParams,
    NoCommonCodec,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
    Timing,
    accept_answer,
    answer,
    make_offer,
    parse_sdp,
)


def crlf(text: str) -> str:
    return "".join(line.strip() + "\r\n" for line in text.strip().splitlines())


def offer_with(media: str, *, session: str = "c=IN IP4 192.0.2.10\n") -> SessionDescription:
    return parse_sdp(
        "v=0\no=alice 1 1 IN IP4 192.0.2.10\ns=-\n" + session + "t=0 0\n" + media.strip() + "\n"
    )


def answer_of(offer: SessionDescription, **kwargs) -> Answer:
    kwargs.setdefault("session_id", 42)
    kwargs.setdefault("version", 1)
    return answer(offer, kwargs.pop("addr", "198.51.100.1"), kwargs.pop("port", 40000), **kwargs)


BARESIP_OFFER = crlf("""
v=0
o=- 1923842399 2817347166 IN IP4 127.0.0.2
s=-
c=IN IP4 127.0.0.2
t=0 0
a=tool:baresip 1.0.0
m=audio 10012 RTP/AVP 0 8 101
b=AS:64
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=ssrc:1384467325 cname:32d13e57-3c0d-4b2d-8d0e-b8a1ef0c0a25
a=rtcp-rsize
""")

LINPHONE_OFFER = crlf("""
v=0
o=1001 3186 1537 IN IP4 127.0.0.3
s=Talk
c=IN IP4 127.0.0.3
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
""")

SIPP_OFFER = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

# --- parsing ---------------------------------------------------------------------------


def test_parse_rfc4566_example_and_serialize_back():
    text = crlf("""
    v=0
    o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5
    s=SDP Seminar
    i=A Seminar on the session description protocol
    u=http://www.example.com/seminars/sdp.pdf
    e=j.doe@example.com (Jane Doe)
    p=+1 617 555-6011
    c=IN IP4 224.2.17.12/127
    b=CT:128
    t=2873397496 2873404696
    r=7d 1h 0 25h
    z=2882844526 -1h 2898848070 0
    k=prompt
    a=recvonly
    m=audio 49170 RTP/AVP 0
    i=voice
    b=AS:64
    m=video 51372/2 RTP/AVP 99
    a=rtpmap:99 h263-1998/90000
    """)
    sd = parse_sdp(text)
    assert sd.origin == Origin("jdoe", "2890844526", "2890842807", "10.47.16.5")
    assert sd.name == "SDP Seminar"
    assert sd.connection == Connection("224.2.17.12", "IP4", "IN", "/127")
    assert sd.timing == (Timing(2873397496, 2873404696, ("7d 1h 0 25h",)),)
    assert sd.direction == "recvonly"
    audio, video = sd.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        49170,
        "RTP/AVP",
        ("0",),
    )
    assert audio.info == "voice" and audio.bandwidths == ("AS:64",)
    assert audio.rtpmaps == {0: RtpMap(0, "PCMU", 8000)}
    assert video.port_count == 2
    assert video.rtpmaps[99] == RtpMap(99, "h263-1998", 90000)
    assert sd.to_text() == text
    assert sd.encode() == text.encode()


@pytest.mark.parametrize("offer", [BARESIP_OFFER, LINPHONE_OFFER, SIPP_OFFER])
def test_real_offers_round_trip(offer):
    sd = parse_sdp(offer)
    assert sd.to_text() == offer
    assert parse_sdp(offer.encode()) == sd
    assert parse_sdp(offer.replace("\r\n", "\n")) == sd


def test_parse_is_lenient_where_peers_are_sloppy():
    sd = parse_sdp(
        "v=0\n\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4 1.2.3.4\nx=unknown\nm=audio 4 RTP/AVP\n"
    )
    assert sd.name == "-" and sd.timing == (Timing(0, 0),)
    assert sd.media[0].formats == ()
    # an unparsable rtpmap is ignored, the static table still applies
    m = offer_with("m=audio 4000 RTP/AVP 0 96\na=rtpmap:96 broken\na=ptime:abc").media[0]
    assert m.rtpmaps == {0: RtpMap(0, "PCMU", 8000)}
    assert m.ptime is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty SDP"),
        ("o=- 1 1 IN IP4 1.2.3.4\n", "line 1: an SDP body must start with v=0"),
        ("v=1\n", "start with v=0"),
        ("v=0\ns=x\n", "missing o= line"),
        ("v=0\no=- 1 1 IN IP4\n", "line 2: o= needs 6 fields"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nbogus\n", "line 3: expected '<type>=<value>'"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4 ::1\n", "line 3: '::1' is not an IP4 address"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP6 1.2.3.4\n", "is not an IP6 address"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4 999.1.1.1\n", "invalid IP4 address"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nc=ATM NSAP x\n", "unsupported network type"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nt=now\n", "t= needs two integers"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nr=7d\n", "r= before any t="),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio\n", "m= needs media, port and proto"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio x RTP/AVP 0\n", "invalid port 'x'"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 70000 RTP/AVP 0\n", "port 70000 out of range"),
        ("v=0\no=- 1 1 IN IP4 1.2.3.4\na=:x\n", "invalid attribute name"),
    ],
)
def test_malformed_sdp_raises_one_error_type_with_the_line(text, message):
    with pytest.raises(SdpError, match=message) as info:
        parse_sdp(text)
    assert info.value.status == 400


def test_parse_rejects_bad_bytes_and_oversize():
    with pytest.raises(SdpError, match="not valid UTF-8 at byte 3"):
        parse_sdp(b"v=0\xff\n")
    with pytest.raises(SdpError, match="exceeds"):
        parse_sdp(b"v=0\n" + b"a=x\n" * 20000)
    with pytest.raises(SdpError, match="exceeds"):
        parse_sdp("v=0\n" + "a=x\n" * 20000)


tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
connections = st.one_of(
    ipv4.map(lambda a: Connection(a, "IP4")), ipv6.map(lambda a: Connection(a, "IP6"))
)
attributes = st.builds(Attribute, tokens, st.none() | st.text(alphabet="abc 0123:/=-", max_size=12))
media_sections = st.builds(
    MediaDescription,
    st.sampled_from(["audio", "video", "application"]),
    st.integers(0, 65535),
    st.sampled_from(["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF"]),
    st.lists(st.integers(0, 127).map(str), min_size=1, max_size=5).map(tuple),
    st.none() | st.integers(1, 4),
    st.none() | st.text(alphabet="ab c", min_size=1, max_size=5),
    st.none() | connections,
    st.lists(st.just("AS:64"), max_size=1).map(tuple),
    st.none(),
    st.lists(attributes, max_size=4).map(tuple),
)
descriptions = st.builds(
    SessionDescription,
    origin=st.builds(Origin, tokens, st.integers(0, 2**63).map(str), tokens, ipv4),
    name=tokens,
    media=st.lists(media_sections, max_size=3).map(tuple),
    connection=st.none() | connections,
    attributes=st.lists(attributes, max_size=3).map(tuple),
)


@given(descriptions)
def test_serialize_parse_round_trip(sd):
    text = sd.to_text()
    assert parse_sdp(text) == sd
    assert parse_sdp(text.replace("\r\n", "\n").encode()) == sd


# --- answering -------------------------------------------------------------------------


def test_answer_to_baresip_exact_bytes():
    result = answer(parse_sdp(BARESIP_OFFER), "127.0.0.1", 40000, session_id=7, version=1)
    assert result.body.decode() == crlf("""
    v=0
    o=- 7 1 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 40000 RTP/AVP 0 101
    a=rtpmap:0 PCMU/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=ptime:20
    a=sendrecv
    """)
    assert result.media == MediaParams(
        payload_type=0,
        codec="PCMU",
        telephone_event_pt=101,
        remote_addr="127.0.0.2",
        remote_port=10012,
        ptime=20,
        direction="sendrecv",
    )
    assert result.media.sends and result.media.receives


def test_answer_to_linphone_skips_opus_and_picks_te_8000():
    result = answer_of(parse_sdp(LINPHONE_OFFER))
    assert (result.media.codec, result.media.payload_type) == ("PCMU", 0)
    assert result.media.telephone_event_pt == 100
    assert result.sdp.media[0].formats == ("0", "100")


def test_answer_to_sipp_without_telephone_event():
    result = answer_of(parse_sdp(SIPP_OFFER))
    assert result.media.telephone_event_pt is None
    assert result.sdp.media[0].formats == ("0",)
    assert result.sdp.media[0].fmtp(101) is None


@pytest.mark.parametrize(
    ("formats", "extra", "supported", "expected"),
    [
        ("0 8", "", ("PCMU", "PCMA"), (0, "PCMU")),
        ("8 0", "", ("PCMU", "PCMA"), (8, "PCMA")),  # the offer's order wins
        ("0 8", "", ("PCMA",), (8, "PCMA")),
        ("18 3 8", "", ("PCMU", "PCMA"), (8, "PCMA")),
        ("96 0", "a=rtpmap:96 PCMA/8000", ("PCMU", "PCMA"), (96, "PCMA")),  # dynamic PT
        ("97 0", "a=rtpmap:97 pcmu/8000", ("PCMU", "PCMA"), (97, "PCMU")),  # case
        ("98 8", "a=rtpmap:98 PCMU/16000", ("PCMU", "PCMA"), (8, "PCMA")),  # wrong rate
        ("99 8", "a=rtpmap:99 PCMU/8000/2", ("PCMU", "PCMA"), (8, "PCMA")),  # stereo
        ("0", "a=rtpmap:0 G729/8000", ("PCMU", "PCMA"), None),  # rtpmap beats static table
    ],
)
def test_codec_choice(formats, extra, supported, expected):
    offer = offer_with(f"m=audio 4000 RTP/AVP {formats}\n{extra}")
    if expected is None:
        with pytest.raises(NoCommonCodec):
            answer_of(offer, supported=supported)
        return
    result = answer_of(offer, supported=supported)
    assert (result.media.payload_type, result.media.codec) == expected
    assert result.sdp.media[0].rtpmaps[expected[0]] == RtpMap(expected[0], expected[1], 8000)


@pytest.mark.parametrize(
    ("lines", "pt", "fmtp"),
    [
        ("a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16", 101, "0-15"),
        ("a=rtpmap:101 telephone-event/8000", 101, "0-15"),  # RFC 4733 default
        ("a=rtpmap:96 telephone-event/8000\na=fmtp:96 0-11", 96, "0-11"),
        ("a=rtpmap:127 TELEPHONE-EVENT/8000\na=fmtp:127 0-9,11,66", 127, "0-9,11"),
        ("a=rtpmap:101 telephone-event/8000\na=fmtp:101 66-70", None, None),
        ("a=rtpmap:101 telephone-event/16000", None, None),
    ],
)
def test_telephone_event_uses_the_offers_payload_type(lines, pt, fmtp):
    offer = offer_with(f"m=audio 4000 RTP/AVP 0 {pt or 101}\n{lines}")
    result = answer_of(offer)
    assert result.media.telephone_event_pt == pt
    if pt is not None:
        assert result.sdp.media[0].fmtp(pt) == fmtp
        assert result.sdp.media[0].rtpmaps[pt] == RtpMap(pt, "telephone-event", 8000)
    else:
        assert result.sdp.media[0].formats == ("0",)


def test_telephone_event_can_be_left_out():
    result = answer_of(parse_sdp(BARESIP_OFFER), telephone_event=False)
    assert result.media.telephone_event_pt is None
    assert result.sdp.media[0].formats == ("0",)


@pytest.mark.parametrize(
    ("session_attr", "media_attr", "local", "expected"),
    [
        ("", "", "sendrecv", "sendrecv"),
        ("", "a=sendrecv", "sendrecv", "sendrecv"),
        ("", "a=sendonly", "sendrecv", "recvonly"),
        ("", "a=recvonly", "sendrecv", "sendonly"),
        ("", "a=inactive", "sendrecv", "inactive"),
        ("a=sendonly\n", "", "sendrecv", "recvonly"),  # session level applies
        ("a=sendonly\n", "a=sendrecv", "sendrecv", "sendrecv"),  # media level wins
        ("", "", "sendonly", "sendonly"),
        ("", "", "recvonly", "recvonly"),
        ("", "a=recvonly", "recvonly", "inactive"),
        ("", "a=sendonly", "sendonly", "inactive"),
        ("", "", "inactive", "inactive"),
    ],
)
def test_direction_mirrors_the_offer_within_what_we_allow(
    session_attr, media_attr, local, expected
):
    offer = parse_sdp(
        "v=0\no=a 1 1 IN IP4 192.0.2.10\ns=-\nc=IN IP4 192.0.2.10\nt=0 0\n"
        f"{session_attr}m=audio 4000 RTP/AVP 0\n{media_attr}\n"
    )
    result = answer_of(offer, direction=local)
    assert result.media.direction == expected
    assert result.sdp.media[0].direction == expected


def test_hold_with_zero_address_means_we_do_not_send():
    offer = offer_with("m=audio 4000 RTP/AVP 0", session="c=IN IP4 0.0.0.0\n")
    result = answer_of(offer)
    assert result.media.direction == "recvonly"
    assert not result.media.sends and result.media.receives


def test_media_level_connection_overrides_session_and_ipv6_works():
    offer = offer_with("m=audio 4000 RTP/AVP 8\nc=IN IP6 2001:db8::7")
    result = answer_of(offer, addr="2001:db8::1")
    assert (result.media.remote_addr, result.media.remote_port) == ("2001:db8::7", 4000)
    assert result.sdp.origin.addrtype == "IP6"
    assert result.sdp.connection == Connection("2001:db8::1", "IP6")
    assert "c=IN IP6 2001:db8::1\r\n" in result.body.decode()
    only_media = offer_with("m=audio 4000 RTP/AVP 0\nc=IN IP4 192.0.2.99", session="")
    assert answer_of(only_media).media.remote_addr == "192.0.2.99"


def test_missing_connection_is_an_error():
    with pytest.raises(SdpError, match="no connection address") as info:
        answer_of(offer_with("m=audio 4000 RTP/AVP 0", session=""))
    assert info.value.status == 400


def test_rejected_streams_stay_in_place_with_port_zero():
    offer = offer_with(
        """
        m=video 5000 RTP/AVP 31
        a=rtpmap:31 H261/90000
        m=audio 0 RTP/AVP 0
        m=audio 5002 RTP/SAVP 0
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x
        m=audio 5004 RTP/AVP 0 8
        m=audio 5006 RTP/AVP 0
        m=application 5008 UDP/BFCP *
        """.replace("        ", "")
    )
    result = answer_of(offer)
    got = [(m.media, m.port, m.proto, m.formats) for m in result.sdp.media]
    assert got == [
        ("video", 0, "RTP/AVP", ("31",)),
        ("audio", 0, "RTP/AVP", ("0",)),
        ("audio", 0, "RTP/SAVP", ("0",)),
        ("audio", 40000, "RTP/AVP", ("0",)),
        ("audio", 0, "RTP/AVP", ("0",)),  # only one audio stream is accepted
        ("application", 0, "UDP/BFCP", ("*",)),
    ]
    assert result.sdp.media[2].attributes == ()  # no crypto echoed in a rejected stream
    assert result.media.stream_index == 3
    assert result.media.remote_port == 5004


def test_answer_keeps_the_offers_timing_and_ptime():
    offer = parse_sdp(
        "v=0\no=a 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=3034423619 3042462419\n"
        "m=audio 4000 RTP/AVP 0\na=ptime:30\n"
    )
    result = answer_of(offer, ptime=20)
    assert result.sdp.timing == (Timing(3034423619, 3042462419),)
    assert result.media.ptime == 30  # what the peer wants to receive
    assert result.sdp.media[0].ptime == 20  # what we want to receive
    rtp_avpf = answer_of(offer_with("m=audio 4000 RTP/AVPF 0"))
    assert rtp_avpf.sdp.media[0].proto == "RTP/AVPF"


@pytest.mark.parametrize(
    ("media", "code", "text"),
    [
        ("m=audio 4000 RTP/AVP 18 9\na=rtpmap:9 G722/8000", 305, "Incompatible media format"),
        ("m=video 4000 RTP/AVP 31", 304, "Media type not available"),
        ("m=audio 0 RTP/AVP 0", 304, "Media type not available"),
        ("m=audio 4000 RTP/SAVP 0", 302, "Incompatible transport protocol"),
    ],
)
def test_no_common_codec_carries_the_warning(media, code, text):
    with pytest.raises(NoCommonCodec) as info:
        answer_of(offer_with(media))
    assert info.value.status == 488
    assert info.value.warning_code == code
    assert info.value.warning("ivr.example") == f'{code} ivr.example "{text}"'


def test_answer_rejects_bad_local_arguments():
    offer = parse_sdp(SIPP_OFFER)
    with pytest.raises(ValueError, match="not an IP address"):
        answer_of(offer, addr="pbx.example")
    with pytest.raises(ValueError, match="local port"):
        answer_of(offer, port=0)
    with pytest.raises(ValueError, match="supported codecs"):
        answer_of(offer, supported=("G729",))
    with pytest.raises(ValueError, match="direction"):
        answer_of(offer, direction="both")


# --- offering and reading the answer ---------------------------------------------------


def test_make_offer_exact_text():
    offer = make_offer("192.0.2.1", 40002, session_id=9, version=3)
    assert offer.to_text() == crlf("""
    v=0
    o=- 9 3 IN IP4 192.0.2.1
    s=-
    c=IN IP4 192.0.2.1
    t=0 0
    m=audio 40002 RTP/AVP 0 8 101
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=ptime:20
    a=sendrecv
    """)
    with pytest.raises(ValueError, match="dynamic payload type"):
        make_offer("192.0.2.1", 40002, session_id=9, version=3, telephone_event_pt=8)


def test_our_offer_answered_by_our_answer_agrees():
    offer = make_offer("192.0.2.1", 40002, session_id=1, version=1, codecs=("PCMA", "PCMU"))
    theirs = answer(offer, "192.0.2.2", 6000, session_id=2, version=2, direction="recvonly")
    ours = accept_answer(offer, parse_sdp(theirs.body))
    assert ours == MediaParams(
        payload_type=8,
        codec="PCMA",
        telephone_event_pt=101,
        remote_addr="192.0.2.2",
        remote_port=6000,
        ptime=20,
        direction="sendonly",
    )


def test_accept_answer_from_a_peer_choosing_differently():
    offer = make_offer("192.0.2.1", 40002, session_id=1, version=1, telephone_event_pt=96)
    peer = parse_sdp(
        "v=0\no=p 5 5 IN IP4 203.0.113.5\ns=-\nt=0 0\n"
        "m=audio 7000 RTP/AVP 8 0 96\nc=IN IP4 203.0.113.6\n"
        "a=rtpmap:96 telephone-event/8000\na=ptime:30\na=sendonly\n"
    )
    got = accept_answer(offer, peer)
    assert (got.codec, got.payload_type, got.telephone_event_pt) == ("PCMA", 8, 96)
    assert (got.remote_addr, got.remote_port, got.ptime) == ("203.0.113.6", 7000, 30)
    assert got.direction == "recvonly"


def test_accept_answer_errors():
    offer = make_offer("192.0.2.1", 40002, session_id=1, version=1)
    head = "v=0\no=p 5 5 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\n"
    with pytest.raises(NoCommonCodec) as rejected:
        accept_answer(offer, parse_sdp(head + "m=audio 0 RTP/AVP 0\n"))
    assert rejected.value.warning_code == 304
    with pytest.raises(NoCommonCodec) as foreign:
        accept_answer(offer, parse_sdp(head + "m=audio 7000 RTP/AVP 18\n"))
    assert foreign.value.warning_code == 305
    with pytest.raises(SdpError, match="answer has 0 media streams, the offer had 1"):
        accept_answer(offer, parse_sdp(head))
    with pytest.raises(SdpError, match="no connection address"):
        accept_answer(offer, parse_sdp("v=0\no=p 5 5 IN IP4 203.0.113.5\nm=audio 7000 RTP/AVP 0\n"))


def test_media_params_validate():
    base = {
        "payload_type": 0,
        "codec": "PCMU",
        "telephone_event_pt": 101,
        "remote_addr": "192.0.2.1",
        "remote_port": 4000,
        "ptime": 20,
        "direction": "sendrecv",
    }
    MediaParams(**base)
    for bad in (
        {"codec": "G729"},
        {"telephone_event_pt": 0},
        {"remote_port": 70000},
        {"direction": "both"},
        {"ptime": 0},
    ):
        with pytest.raises(ValueError):
            MediaParams(**(base | bad))
