"""The trunk's pure parts: peer URIs, the allow-list, number normalisation, the caller-ID
and diversion headers, trunk legs in the B2BUA, and the ``[trunk]`` config table."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.b2bua import (
    Action,
    Answered,
    Bridge,
    Local,
    NotReached,
    Ref,
    Reply,
    RequestReceived,
    RespondCaller,
    Responded,
    Send,
    SendAck,
    Track,
    declining_answer,
)
from ivr.cli import CliError, _with_trunk
from ivr.config import Config, ConfigError, load_config
from ivr.routing.numbers import NumberPlan
from ivr.routing.profiles import activate
from ivr.routing.state import UserState
from ivr.sip.build import make_response
from ivr.sip.core import Peer
from ivr.sip.dialog import Dialog
from ivr.sip.ids import Ids
from ivr.sip.message import Headers, Request
from ivr.sip.sdp import Origin
from ivr.trunk import (
    ANONYMOUS,
    Trunk,
    caller_identity,
    diversion_headers,
    divert_reason,
    external_number,
    parse_peer,
    trunk_target,
)
from ivr.user_calls import mobile_targets, public_identity

REPO = Path(__file__).resolve().parents[1]
SE = NumberPlan(region="SE")
TRUNK = Trunk(host="192.0.2.10", port=5060, allow=("+46", "+4791"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:192.0.2.10", ("192.0.2.10", 5060, "udp")),
        ("sip:192.0.2.10:5080;transport=udp", ("192.0.2.10", 5080, "udp")),
        ("sip:192.0.2.10;transport=tcp", ("192.0.2.10", 5060, "tcp")),
        ("sip:192.0.2.10:5080;transport=TCP", ("192.0.2.10", 5080, "tcp")),
        ("sip:[2001:db8::1]:5062", ("2001:db8::1", 5062, "udp")),
        (" sip:127.0.0.1:5090 ", ("127.0.0.1", 5090, "udp")),
    ],
)
def test_peer_uris(text: str, expected: tuple[str, int, str]) -> None:
    assert parse_peer(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("192.0.2.10", "SIP URI"),
        ("sips:192.0.2.10", "SIP URI"),
        ("sip:trunk@192.0.2.10", "SIP URI"),
        ("sip:sbc.example.net", "IP address"),
        ("sip:192.0.2.10;transport=tls", "transport must be one of udp, tcp, got 'tls'"),
        ("sip:192.0.2.10;transport=sctp", "transport must be one of udp, tcp, got 'sctp'"),
    ],
)
def test_bad_peer_uris_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_peer(text)


@pytest.mark.parametrize(
    ("number", "allowed"),
    [
        ("+46701234567", True),
        ("+4791234567", True),
        ("+4790123456", False),  # +479 is not +4791
        ("+4930123456", False),
        ("+1555123456", False),
    ],
)
def test_the_allow_list_is_by_e164_prefix(number: str, allowed: bool) -> None:
    assert TRUNK.allows(number) is allowed


def test_a_tcp_trunk_sends_its_legs_over_tcp() -> None:
    trunk = Trunk(host="192.0.2.10", port=5080, transport="tcp")
    target = trunk_target(trunk, "+46701234567", "mobile")
    assert target.peer == Peer("tcp", "192.0.2.10", 5080)
    assert target.peer.reliable


def test_an_empty_allow_list_allows_nothing() -> None:
    assert not Trunk(host="192.0.2.10").allows("+46701234567")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": "sbc.example.net"},
        {"host": "192.0.2.10", "port": 0},
        {"host": "192.0.2.10", "transport": "tls"},
        {"host": "192.0.2.10", "allow": ("46",)},
        {"host": "192.0.2.10", "allow": ("+46a",)},
        {"host": "192.0.2.10", "diversion": ()},
        {"host": "192.0.2.10", "diversion": ("sip-h",)},
    ],
)
def test_an_invalid_trunk_cannot_exist(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Trunk(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("0701234567", "+46701234567"),
        ("+46701234567", "+46701234567"),
        ("0046701234567", "+46701234567"),
        ("08-465 004 01", "+46846500401"),
        ("+4930123456", "+4930123456"),
        ("1002", None),  # an extension
        ("112", "112"),  # emergency: to the trunk as dialled
        ("911", None),  # not an emergency number in SE
        ("*23*2#", None),
        ("00467012345", None),  # too short to be valid
        ("", None),
    ],
)
def test_external_numbers_are_normalised_to_e164(dialled: str, expected: str | None) -> None:
    assert external_number(dialled, SE) == expected


def test_a_shown_caller_id_is_from_and_asserted_identity() -> None:
    from_value, headers = caller_identity("+46846500401", "+46846500401", "ivr.local", "Anna")
    assert from_value == '"Anna" <sip:+46846500401@ivr.local>'
    assert headers == (("P-Asserted-Identity", "<sip:+46846500401@ivr.local>"),)


def test_a_hidden_caller_id_is_anonymous_with_privacy_and_pai_for_the_trunk() -> None:
    from_value, headers = caller_identity(None, "+46846500401", "ivr.local", "Anna")
    assert from_value == ANONYMOUS == '"Anonymous" <sip:anonymous@anonymous.invalid>'
    assert dict(headers) == {
        "P-Asserted-Identity": "<sip:+46846500401@ivr.local>",
        "Privacy": "id",
    }


def test_display_names_are_quoted_and_escaped() -> None:
    from_value, _ = caller_identity("+46846500401", "+46846500401", "d", 'A "B" \\ C')
    assert from_value == '"A \\"B\\" \\\\ C" <sip:+46846500401@d>'


@pytest.mark.parametrize(
    ("statuses", "reason"),
    [
        (None, "unconditional"),
        ((408, 408), "no-answer"),
        ((486, 408), "user-busy"),
        ((600,), "user-busy"),
    ],
)
def test_the_diversion_reason_follows_what_happened(
    statuses: tuple[int, ...] | None, reason: str
) -> None:
    assert divert_reason(statuses) == reason


def test_diversion_names_the_forwarding_user() -> None:
    headers = diversion_headers(TRUNK, "+46846500402", "ivr.local", "no-answer", "+46701234567")
    assert headers == (
        ("Diversion", "<sip:+46846500402@ivr.local>;reason=no-answer;counter=1;privacy=off"),
    )


def test_history_info_when_configured() -> None:
    trunk = Trunk(host="192.0.2.10", diversion=("diversion", "history-info"))
    headers = dict(diversion_headers(trunk, "+46846500402", "d", "user-busy", "+46701234567"))
    assert headers["History-Info"] == (
        "<sip:+46846500402@d>;index=1, "
        "<sip:+46701234567@192.0.2.10:5060;user=phone?Reason=SIP%3Bcause%3D486>;index=1.1"
    )
    assert "Diversion" in headers


def test_an_unknown_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="reason"):
        diversion_headers(TRUNK, "+46846500402", "d", "lunch", "+46701234567")


def _invite() -> Request:
    headers = Headers(
        [
            ("via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKcaller;rport"),
            ("max-forwards", "70"),
            ("from", "<sip:1001@ivr.local>;tag=caller"),
            ("to", "<sip:0701234567@ivr.local>"),
            ("call-id", "abc@127.0.0.1"),
            ("cseq", "2 INVITE"),
            ("contact", "<sip:1001@127.0.0.1:5070>"),
            ("content-type", "application/sdp"),
        ]
    )
    return Request("INVITE", "sip:0701234567@127.0.0.1:5060", headers, b"v=0\r\n")


def test_a_trunk_leg_carries_its_own_from_to_and_identity_headers() -> None:
    from_value, identity = caller_identity(None, "+46846500401", "ivr.local", "Anna")
    leg = trunk_target(TRUNK, "+46701234567", "trunk", from_value=from_value, headers=identity)
    assert leg.peer == Peer("udp", "192.0.2.10", 5060)
    bridge = Bridge(
        _invite(),
        Peer("udp", "127.0.0.1", 5070),
        [leg],
        local=Local(host="127.0.0.1", port=5060, ids=Ids(random.Random(1))),
        local_tag="ours",
        timeout=30.0,
        max_forwards=69,
        from_value='"Anna" <sip:1001@ivr.local>',
        to_value="<sip:0701234567@ivr.local>",
    )
    (send, _timer) = bridge.start()
    assert isinstance(send, Send) and send.peer == leg.peer
    sent = send.request
    assert sent.uri == "sip:+46701234567@192.0.2.10:5060;user=phone"
    assert sent.headers.get("from", "").startswith(ANONYMOUS + ";tag=")
    assert sent.headers.get("to") == "<sip:+46701234567@192.0.2.10:5060;user=phone>"
    assert sent.headers.get("privacy") == "id"
    assert sent.headers.get("p-asserted-identity") == "<sip:+46846500401@ivr.local>"
    assert sent.headers.get("max-forwards") == "69"
    assert sent.body == b"v=0\r\n"


def _config(tmp_path: Path, old: str, new: str) -> Path:
    text = (REPO / "config" / "ivr.toml").read_text()
    assert old in text
    path = tmp_path / "ivr.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_demo_config_has_a_local_trunk() -> None:
    config = load_config(REPO / "config" / "ivr.toml")
    assert config.trunk == Trunk(host="127.0.0.1", port=5080, allow=("+46",))


def test_no_trunk_table_means_no_trunk(tmp_path: Path) -> None:
    text = (REPO / "config" / "ivr.toml").read_text()
    start = text.index("[trunk]")
    end = text.index("[http]")
    path = tmp_path / "ivr.toml"
    path.write_text(text[:start] + text[end:])
    assert load_config(path).trunk is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'peer = "sip:127.0.0.1:5080;transport=udp"',
            'peer = "sbc.example.net"',
            "trunk.peer: must be a SIP URI",
        ),
        (
            'peer = "sip:127.0.0.1:5080;transport=udp"',
            'peer = "sip:127.0.0.1:5080;transport=tls"',
            "trunk.peer: transport must be one of udp, tcp, got 'tls'",
        ),
        ('allow = ["+46"]', 'allow = ["46"]', "trunk.allow[0]: must be an E.164 prefix"),
        (
            'diversion = ["diversion"]',
            'diversion = ["sip-h"]',
            "trunk.diversion[0]: must be one of 'diversion', 'history-info'",
        ),
        ('allow = ["+46"]', 'allow = ["+46"]\nallowed = []', "trunk.allowed: unknown key"),
    ],
)
def test_trunk_config_errors_name_file_key_and_reason(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = _config(tmp_path, old, new)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_trunk_flag_overrides_the_peer_and_keeps_the_rest() -> None:
    config = load_config(REPO / "config" / "ivr.toml")
    changed = _with_trunk(config, "sip:127.0.0.2:5999")
    assert changed.trunk == Trunk(host="127.0.0.2", port=5999, allow=("+46",))
    assert changed.users == config.users
    assert changed.user_by_number("0701740605") is not None  # lookups rebuilt
    with pytest.raises(CliError, match="--trunk: must be a SIP URI"):
        _with_trunk(config, "nonsense")


# -- moving a caller we answered (keys during the redirect) -------------------------

OFFER = b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
MOBILE_SDP = OFFER.replace(b"127.0.0.2", b"192.0.2.10") + b"m=audio 30000 RTP/AVP 0\r\n"
CALLER = Peer("udp", "127.0.0.2", 5071)
OURS = Origin(username="ivr", session_id="4711", version="1", address="127.0.0.1")


def _answered_bridge() -> tuple[Bridge, Dialog]:
    invite = _invite()
    invite.headers.set("via", "SIP/2.0/UDP 127.0.0.2:5071;branch=z9hG4bKcaller;rport")
    invite.body = OFFER
    ours = Dialog.as_uas(invite, "ours", "<sip:ivr@127.0.0.1:5060>", confirmed=True)
    leg = trunk_target(TRUNK, "+46701740605", "1001-mobile", from_value="<sip:+4685@d>")
    bridge = Bridge(
        invite,
        CALLER,
        [leg],
        local=Local(host="127.0.0.1", port=5060, ids=Ids(random.Random(2))),
        local_tag="ours",
        timeout=25.0,
        max_forwards=69,
        from_value="<sip:+4685@d>",
        to_value="<sip:1001@d>",
        answered=ours,
        origin=OURS,
    )
    return bridge, ours


def _leg_reply(bridge: Bridge, status: int, body: bytes = b"") -> list[Action]:
    invite = bridge.legs[0].invite
    headers = [("Contact", "<sip:trunk@192.0.2.10:5060>")]
    if body:
        headers.append(("Content-Type", "application/sdp"))
    response = make_response(invite, status, to_tag="mob", headers=headers, body=body)
    return bridge.handle(Responded(Ref("invite", 0), response))


def _caller_answer(bridge: Bridge, actions: list[Action], status: int, body: bytes) -> Send:
    (reinvite,) = [a for a in actions if isinstance(a, Send)]
    headers = [("Contact", "<sip:x@127.0.0.2:5071>")]
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return reinvite, make_response(reinvite.request, status, headers=headers, body=body)


CALLER_ANSWER = OFFER.replace(b"o=- 1 1", b"o=- 1 2") + b"m=audio 40000 RTP/AVP 0\r\n"


def test_an_answered_caller_is_moved_with_a_reinvite_not_a_second_200() -> None:
    bridge, ours = _answered_bridge()
    (send, _timer) = bridge.start()
    # RFC 3725 flow I: the caller's first offer is spent; the leg is asked to offer.
    assert isinstance(send, Send) and send.request.body == b""
    assert send.request.headers.get("content-type") is None
    assert _leg_reply(bridge, 180) == [], "the caller has our 200: no 180 for it"
    actions = _leg_reply(bridge, 200, MOBILE_SDP)
    assert not [a for a in actions if isinstance(a, RespondCaller)]
    assert not [a for a in actions if isinstance(a, SendAck)], "the ACK waits for the answer"
    assert _leg_reply(bridge, 200, MOBILE_SDP) == [], "a retransmitted 200: still waiting"
    reinvite, ok = _caller_answer(bridge, actions, 200, CALLER_ANSWER)
    assert reinvite.peer == CALLER and reinvite.ref == Ref("moved", 0)
    request = reinvite.request
    # The leg's offer, under our o= line, one version on (RFC 3264 §8).
    assert request.method == "INVITE"
    assert request.body == MOBILE_SDP.replace(
        b"o=- 1 1 IN IP4 192.0.2.10", b"o=ivr 4711 2 IN IP4 127.0.0.1"
    )
    assert request.headers.get("content-type") == "application/sdp"
    assert request.headers.get("call-id") == ours.call_id
    assert request.headers.count("contact") == 1
    assert [a.side for a in actions if isinstance(a, Track)] == ["caller", "callee"]
    assert any(isinstance(a, Answered) for a in actions)

    # The caller's answer: ACK the caller, then the mobile with the answer in its ACK.
    to_caller, to_leg = bridge.handle(Responded(Ref("moved", 0), ok))
    assert isinstance(to_caller, SendAck) and to_caller.peer == CALLER
    cseq = request.headers.get("cseq", "").replace("INVITE", "ACK")
    assert to_caller.ack.headers.get("cseq") == cseq and to_caller.ack.body == b""
    assert isinstance(to_leg, SendAck) and to_leg.peer == TRUNK.peer
    assert to_leg.ack.body == CALLER_ANSWER
    assert to_leg.ack.headers.get("content-type") == "application/sdp"
    assert to_leg.ack.headers.get("cseq") == "1 ACK"
    # Retransmitted 200s are ACKed again, each side with the same ACK.
    assert bridge.handle(Responded(Ref("moved", 0), ok)) == [to_caller]
    assert _leg_reply(bridge, 200, MOBILE_SDP) == [to_leg]


def test_a_caller_refusing_the_move_ends_both_sides() -> None:
    bridge, _ours = _answered_bridge()
    bridge.start()
    actions = _leg_reply(bridge, 200, MOBILE_SDP)
    _reinvite, refused = _caller_answer(bridge, actions, 488, b"")
    after = bridge.handle(Responded(Ref("moved", 0), refused))
    # The mobile's offer is declined in its ACK (every stream on port 0), then BYE both.
    (ack,) = [a for a in after if isinstance(a, SendAck)]
    assert ack.peer == TRUNK.peer and b"m=audio 0 RTP/AVP" in ack.ack.body
    byes = [a for a in after if isinstance(a, Send)]
    assert sorted(a.peer.host for a in byes) == ["127.0.0.2", "192.0.2.10"]
    assert all(a.request.method == "BYE" for a in byes)
    assert after.index(ack) < after.index(byes[0]), "the 2xx is ACKed before its BYE"


def test_a_caller_hanging_up_before_answering_the_move_acks_the_leg_first() -> None:
    bridge, ours = _answered_bridge()
    bridge.start()
    _leg_reply(bridge, 200, MOBILE_SDP)
    # The caller hangs up (BYE on our dialog) before it answered the re-INVITE.
    request = ours.create_request("BYE", Ids(random.Random(3)), "127.0.0.2", 5071, "udp")
    after = bridge.handle(RequestReceived("caller", request, "token"))
    assert isinstance(after[0], Reply) and after[0].status == 200
    (ack,) = [a for a in after if isinstance(a, SendAck)]
    (leg_bye,) = [a for a in after if isinstance(a, Send)]
    assert ack.peer == leg_bye.peer == TRUNK.peer
    assert after.index(ack) < after.index(leg_bye)


def test_a_leg_answering_an_answered_caller_without_an_offer_is_cleared() -> None:
    bridge, _ours = _answered_bridge()
    bridge.start()
    actions = _leg_reply(bridge, 200)  # no SDP: RFC 3261 §13.3.1.4 wants an offer here
    assert [type(a) for a in actions if isinstance(a, SendAck | Send)] == [SendAck, Send]
    assert any(isinstance(a, NotReached) for a in actions)


def test_no_answer_leaves_the_answered_caller_to_the_plan() -> None:
    bridge, _ours = _answered_bridge()
    bridge.start()
    actions = _leg_reply(bridge, 486)
    assert [a for a in actions if isinstance(a, NotReached)]
    assert not [a for a in actions if isinstance(a, Send | RespondCaller)]


def test_later_offers_from_the_winner_reach_the_moved_caller_under_our_origin() -> None:
    bridge, _ours = _answered_bridge()
    bridge.start()
    actions = _leg_reply(bridge, 200, MOBILE_SDP)
    _reinvite, ok = _caller_answer(bridge, actions, 200, CALLER_ANSWER)
    bridge.handle(Responded(Ref("moved", 0), ok))
    leg = bridge.legs[0].dialog
    assert leg is not None
    # The mobile puts the call on hold: a re-INVITE with its own o= line, version 2.
    hold = leg.create_request("INVITE", Ids(random.Random(4)), "192.0.2.10", 5060, "udp")
    hold.headers.add("content-type", "application/sdp")
    hold.body = MOBILE_SDP.replace(b"o=- 1 1", b"o=- 1 2") + b"a=sendonly\r\n"
    (relayed,) = bridge.handle(RequestReceived("callee", hold, "t"))
    assert isinstance(relayed, Send) and relayed.peer == CALLER
    assert relayed.request.body.startswith(b"v=0\r\no=ivr 4711 3 IN IP4 127.0.0.1\r\n")
    assert relayed.request.body.endswith(b"a=sendonly\r\n")
    # A body that is not SDP (INFO dtmf-relay) goes on untouched.
    info = leg.create_request("INFO", Ids(random.Random(5)), "192.0.2.10", 5060, "udp")
    info.headers.add("content-type", "application/dtmf-relay")
    info.body = b"Signal=1\r\nDuration=160\r\n"
    (sent,) = bridge.handle(RequestReceived("callee", info, "u"))
    assert isinstance(sent, Send) and sent.request.body == info.body


def test_a_declining_answer_rejects_every_stream() -> None:
    offer = OFFER + b"m=audio 4000 RTP/AVP 0 101\r\na=sendrecv\r\nm=video 5000 RTP/AVP 96\r\n"
    answer = declining_answer(offer).decode()
    assert "m=audio 0 RTP/AVP 0 101\r\n" in answer and "m=video 0 RTP/AVP 96\r\n" in answer
    assert "a=" not in answer and answer.startswith("v=0\r\no=")


# -- who a forwarded or MEX leg shows: the calling user's profile -------------------

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Stockholm"))  # a Monday


def _meeting_hides(tmp_path: Path) -> Config:
    old = 'exceptions = [{ dialled = "mobile", ring = ["mobile"] }]'
    hides = f'{old}\ncaller_id = {{ desk = "hidden", softphone = "main" }}'
    return load_config(_config(tmp_path, old, hides))


def _in(config: Config, profile: str) -> UserState:
    found = config.rules.profile(profile)
    return activate(UserState(user="1001"), found, None, "1001", "phone", NOW)


def test_a_user_s_call_out_shows_the_caller_id_of_their_profile_and_device(
    tmp_path: Path,
) -> None:
    config = _meeting_hides(tmp_path)
    anna = config.user("1001")
    assert anna is not None
    domain = config.sip.domain
    standard = public_identity(anna, "desk", UserState(user="1001"), NOW, config)
    assert standard == (
        "+46846500401",
        f'"Anna Andersson" <sip:+46846500401@{domain}>',
        (("P-Asserted-Identity", f"<sip:+46846500401@{domain}>"),),
    )
    meeting = _in(config, "meeting")
    shown, from_value, headers = public_identity(anna, "desk", meeting, NOW, config)
    assert shown is None and from_value == ANONYMOUS
    assert dict(headers) == {
        "P-Asserted-Identity": f"<sip:+46846500401@{domain}>",
        "Privacy": "id",
    }
    soft = public_identity(anna, "softphone", meeting, NOW, config)
    assert soft[0] == config.company.main_number
    # An activation that has run out counts no more: back to the DID.
    later = activate(
        UserState(user="1001"),
        config.rules.profile("meeting"),
        NOW,
        "1001",
        "phone",
        NOW - timedelta(hours=1),
    )
    assert public_identity(anna, "desk", later, NOW, config)[0] == "+46846500401"


def test_a_mobile_leg_shows_the_caller_and_names_the_user_who_diverted(
    tmp_path: Path,
) -> None:
    config = _meeting_hides(tmp_path)
    anna, bengt = config.user("1001"), config.user("1002")
    assert anna is not None and bengt is not None and config.trunk is not None
    meeting = activate(
        UserState(user="1002"), config.rules.profile("meeting"), None, "1002", "phone", NOW
    )
    _, from_value, headers = public_identity(bengt, "desk", meeting, NOW, config)
    # Bengt (hidden in Möte) calls Anna; her mobile rings through the trunk.
    (leg,) = mobile_targets(config.trunk, anna.devices, anna, config, (from_value, headers))
    assert leg.device == "1001-mobile" and leg.uri.startswith("sip:+46701740605@")
    assert leg.from_value == ANONYMOUS
    assert [name.lower() for name, _ in leg.headers] == [
        "p-asserted-identity",
        "privacy",
        "diversion",
    ]
    identity = dict(leg.headers)
    assert identity["P-Asserted-Identity"] == f"<sip:+46846500402@{config.sip.domain}>"
    assert identity["Diversion"].startswith(
        f"<sip:+46846500401@{config.sip.domain}>;reason=follow-me"
    )
