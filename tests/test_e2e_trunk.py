"""End to end: the outbound trunk, with real SIPp on every side.

A SIPp UAS on 127.0.0.2 plays the operator's trunk (``ivr serve --trunk``); 127.0.0.2 is
the trusted trunk network (``sip.trusted_peers``), so SIPp calls from there need no digest,
while the same call from 127.0.0.1 gets 407. Covered: a call from the trunk to a DID rings
the user's registered desk phone; Möte with a call to the mobile number rings the mobile
through the trunk (MEX); an external forward goes to the trunk with a Diversion header
naming the user (showing the calling user's caller-ID: hidden in Möte), and a number off
the allow-list is refused with 403; a desk phone dialling a public number reaches the
trunk with the caller-ID each profile sets (DID, main number, hidden); and during the
spoken redirect the caller's key 1 rings the mobile through the trunk and bridges the call
to it (the mobile offers, the caller is re-INVITEd with the offer and its answer goes to
the mobile in the ACK), with a 425 Hz ringing tone for the caller while it rings; key 0
the operator's desk, while key 2 goes to voicemail at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import StartIvr
from test_e2e_b2bua import (
    DESK,
    REPO,
    TZ,
    call,
    device,
    feature_code,
    next_1300,
)

from ivr.media import g711, phrases
from ivr.media.prompts import PromptLibrary
from ivr.store.sqlite import SqliteStore
from ivr.testing.api import idle
from ivr.testing.demo_config import demo_config_text, replace_after, write_config
from ivr.testing.devices import ANNA, DOMAIN
from ivr.testing.pcap import RtpStream
from ivr.testing.rtp_sink import RtpSink
from ivr.testing.service import RunningService
from ivr.testing.sip_trace import header, received
from ivr.testing.sipp import Sipp, SippProcess, SippResult, free_port

pytestmark = pytest.mark.e2e

TRUNK_HOST = "127.0.0.2"
RECEPTION = ("1000", "reception-desk-4711")
EXTERNAL = "+46701234567"  # where Tjänsteresa forwards (on the allow-list, +46)
ABROAD = "+4930123456"  # where Semester forwards (not on the allow-list)


class Trunk:
    """Where the trunk SIPp listens; set before the service starts."""

    def __init__(self, transport: str = "udp") -> None:
        self.port = free_port(TRUNK_HOST)
        self.transport = transport

    def uas(self, scenario: str, tmp: Path, sink: RtpSink, calls: int = 1) -> SippProcess:
        workdir = tmp / f"trunk-{len(list(tmp.glob('trunk-*')))}"
        return Sipp(
            scenario=scenario,
            local_host=TRUNK_HOST,
            local_port=self.port,
            transport=self.transport,
            calls=calls,
            keys={"rtp_port": str(sink.port)},
            timeout=40,
            workdir=workdir,
        ).start()


@pytest.fixture
def trunk() -> Trunk:
    return Trunk()


@pytest.fixture
def service(tmp_path: Path, trunk: Trunk, start_ivr: StartIvr) -> RunningService:
    """The demo company, 127.0.0.2 trusted as the trunk and the trunk at SIPp's port;
    Tjänsteresa forwards to a Swedish mobile, Semester abroad, Tillfälligt ute to the
    Swedish mobile after the spoken redirect; Lunch shows the main
    number and Möte hides it on desk phones; VIP callers ring the desk in Möte."""
    text = demo_config_text(tmp_path)
    text = text.replace("ring_seconds = 25", "ring_seconds = 3", 1)
    text = text.replace("trusted_peers = []", f'trusted_peers = ["{TRUNK_HOST}/32"]', 1)
    redirect = 'then = ["redirect", "voicemail"]'
    text = replace_after(text, 'id = "trip"', redirect, f'then = "forward:{EXTERNAL}"')
    text = replace_after(text, 'id = "vacation"', redirect, f'then = "forward:{ABROAD}"')
    text = replace_after(text, 'id = "out"', redirect, f'then = ["redirect", "forward:{EXTERNAL}"]')
    text = replace_after(
        text, 'id = "lunch"', "mex_off = true", 'mex_off = true\ncaller_id = { desk = "main" }'
    )
    text = replace_after(
        text, 'id = "meeting"', "mex_off = true", 'mex_off = true\ncaller_id = { desk = "hidden" }'
    )
    mobile_only = 'exceptions = [{ dialled = "mobile", ring = ["mobile"] }]'
    vip_too = f'{mobile_only[:-1]}, {{ caller = "vip", ring = ["desk"] }}]'
    text = replace_after(text, 'id = "meeting"', mobile_only, vip_too)
    trunk_uri = f"sip:{TRUNK_HOST}:{trunk.port}"
    return start_ivr("--trunk", trunk_uri, config=write_config(tmp_path, text), clean_log=True)


@pytest.fixture
def sinks() -> Iterator[dict[str, RtpSink]]:
    made = {name: RtpSink() for name in ("caller", "desk", "trunk")}
    yield made
    for sink in made.values():
        sink.close()


def from_trunk(
    service: RunningService,
    scenario: str,
    callee: str,
    sink: RtpSink,
    tmp: Path,
    *,
    caller: str = "+46855512345",
    host: str = TRUNK_HOST,
    workdir: Path | None = None,
    transport: str = "udp",
) -> SippResult:
    """A call from the public network (sent from ``host``) to ``callee``."""
    workdir = workdir or tmp / f"outside-{len(list(tmp.glob('outside-*')))}"
    return Sipp(
        scenario=scenario,
        remote=(service.host, service.sip_port),
        local_host=host,
        transport=transport,
        keys={"callee": callee, "caller": caller, "rtp_port": str(sink.port)},
        timeout=40,
        workdir=workdir,
    )()


def refused_from_trunk(
    service: RunningService, callee: str, sink: RtpSink, tmp: Path, host: str = TRUNK_HOST
) -> int:
    result = from_trunk(service, "trunk_call_refused.xml", callee, sink, tmp, host=host)
    assert result.returncode == 0 and result.successful == 1, result.explain()
    (final,) = received(result, "SIP/2.0 4")
    return int(final.split()[1])


_STAMPED = re.compile(
    r"^-{20,} (\S+ \S+)\n(?:UDP|TCP) message (sent|received)[^\n]*\n\n(\S+ \S+)", re.M
)


def origin(message: str) -> str:
    """The SDP ``o=`` value of a traced message."""
    (line,) = [x for x in message.splitlines() if x.startswith("o=")]
    return line[2:].strip()


def when(result: SippResult, direction: str, start: str) -> datetime:
    """When SIPp first ``direction`` (sent/received) a message starting with ``start``."""
    for stamp, way, first in _STAMPED.findall(result.messages.replace("\r\n", "\n")):
        if way == direction and f"{first} ".startswith(start):
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")
    raise AssertionError(f"no {start!r} in the trace")


# -- calls from the trunk ---------------------------------------------------------------


def test_a_call_from_the_trunk_to_a_did_rings_the_registered_desk_without_digest(
    service: RunningService,
    sipp_binary: str,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    desk = device(service, DESK, "b2b_device_answer.xml", sinks["desk"], tmp_path)
    result = from_trunk(
        service, "trunk_call.xml", "0846500402", sinks["caller"], tmp_path, caller="0855512345"
    )
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert not received(result, "SIP/2.0 407"), "the trunk is trusted by address"
    desk_result = desk.wait()
    assert desk_result.returncode == 0, desk_result.explain()
    (invite,) = received(desk_result, "INVITE ")
    assert invite.startswith("INVITE sip:1002@127.0.0.1:")
    # The desk sees who calls: the external caller's number (sent nationally by the trunk,
    # shown in E.164), with their display name.
    assert header(invite, "From").startswith(f'"Extern" <sip:+46855512345@{DOMAIN}>')
    assert header(invite, "Max-Forwards") == "69"
    assert received(desk_result, "BYE ")
    assert idle(service), "call state left behind"


def test_untrusted_sources_are_challenged_and_unknown_numbers_refused(
    service: RunningService, sipp_binary: str, sinks: dict[str, RtpSink], tmp_path: Path
) -> None:
    # The same INVITE from 127.0.0.1 (not the trunk's network) must prove itself.
    assert (
        refused_from_trunk(service, "+46846500402", sinks["caller"], tmp_path, "127.0.0.1") == 407
    )
    # From the trunk, a number that is nobody's here is 404 (no relaying back out).
    assert refused_from_trunk(service, "+46701234567", sinks["caller"], tmp_path) == 404
    assert idle(service), "call state left behind"


def test_a_vip_calling_from_the_trunk_gets_through_a_meeting(
    service: RunningService,
    sipp_binary: str,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    feature_code(service, "*23*3%23", ANNA, tmp_path)  # Möte: VIPs ring the desk
    desk = device(service, ANNA, "b2b_device_answer.xml", sinks["desk"], tmp_path)
    # Anna's VIP is 070-174 06 99: the trunk sends it nationally, the VIP list matches it.
    result = from_trunk(
        service, "trunk_call.xml", "+46846500401", sinks["caller"], tmp_path, caller="0701740699"
    )
    assert result.returncode == 0 and result.successful == 1, result.explain()
    desk_result = desk.wait()
    assert desk_result.returncode == 0, desk_result.explain()
    (invite,) = received(desk_result, "INVITE ")
    assert header(invite, "From").startswith(f'"Extern" <sip:+46701740699@{DOMAIN}>')
    # Without the VIP exception Möte answers with the redirect: the desk rang because of it.
    assert "call +46701740699 → 1001: profile Möte" in service.log()
    assert "exception caller vip → ring desk" in service.log()
    assert idle(service), "call state left behind"


# -- MEX ----------------------------------------------------------------------------------


def test_meeting_a_call_to_the_mobile_number_rings_the_mobile_through_the_trunk(
    service: RunningService,
    sipp_binary: str,
    trunk: Trunk,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    feature_code(service, "*23*3%23", ANNA, tmp_path)  # Möte
    assert service.get_json("/api/users/1001/profile")[1]["profile"] == "meeting"
    uas = trunk.uas("trunk_uas.xml", tmp_path, sinks["trunk"])
    result = from_trunk(service, "trunk_call.xml", "0701740605", sinks["caller"], tmp_path)
    assert result.returncode == 0 and result.successful == 1, result.explain()
    mobile = uas.wait()
    assert mobile.returncode == 0, mobile.explain()
    (invite,) = received(mobile, "INVITE ")
    assert invite.startswith(f"INVITE sip:+46701740605@{TRUNK_HOST}:{trunk.port}")
    assert header(invite, "From").startswith(f'"Extern" <sip:+46855512345@{DOMAIN}>')
    assert header(invite, "To") == f"<sip:+46701740605@{TRUNK_HOST}:{trunk.port};user=phone>"
    assert "reason=follow-me" in header(invite, "Diversion")
    assert header(invite, "Max-Forwards") == "69"
    assert f"m=audio {sinks['caller'].port} " in invite  # the caller's SDP, passed through
    ok = next(m for m in received(result, "SIP/2.0 200") if "INVITE" in header(m, "CSeq"))
    assert f"m=audio {sinks['trunk'].port} " in ok
    assert received(mobile, "BYE ")
    assert idle(service), "call state left behind"


# -- external forward -----------------------------------------------------------------


def test_an_external_forward_goes_to_the_trunk_with_diversion_and_the_allow_list_holds(
    service: RunningService,
    sipp_binary: str,
    trunk: Trunk,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    feature_code(service, "*23*6%23", DESK, tmp_path)  # Tjänsteresa: forward to +4670...
    uas = trunk.uas("trunk_uas.xml", tmp_path, sinks["trunk"])
    caller = call(service, "b2b_call.xml", sinks["caller"], tmp_path, "1002")
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    forwarded = uas.wait()
    assert forwarded.returncode == 0, forwarded.explain()
    (invite,) = received(forwarded, "INVITE ")
    assert invite.startswith(f"INVITE sip:{EXTERNAL}@{TRUNK_HOST}:{trunk.port}")
    diversion = header(invite, "Diversion")
    assert diversion.startswith(f"<sip:+46846500402@{DOMAIN}>"), diversion  # Bengt's DID
    assert "reason=unconditional" in diversion
    # Anna calls from inside: the public sees her direct number.
    assert header(invite, "From").startswith(f'"Anna Andersson" <sip:+46846500401@{DOMAIN}>')
    assert header(invite, "Max-Forwards") == "68", "one hop for us, one for the forward"

    # Anna in Möte hides her number on the desk phone: so does the forwarded call.
    feature_code(service, "*23*3%23", ANNA, tmp_path)
    uas = trunk.uas("trunk_uas.xml", tmp_path, sinks["trunk"])
    caller = call(service, "b2b_call.xml", sinks["caller"], tmp_path, "1002")
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    forwarded = uas.wait()
    assert forwarded.returncode == 0, forwarded.explain()
    (hidden,) = received(forwarded, "INVITE ")
    assert header(hidden, "From").startswith('"Anonymous" <sip:anonymous@anonymous.invalid>')
    assert header(hidden, "Privacy") == "id"
    assert header(hidden, "P-Asserted-Identity") == f"<sip:+46846500401@{DOMAIN}>"
    assert header(hidden, "Diversion").startswith(f"<sip:+46846500402@{DOMAIN}>")

    feature_code(service, "*23*7%23", DESK, tmp_path)  # Semester: forward abroad
    assert refused_from_trunk(service, "+46846500402", sinks["caller"], tmp_path) == 403
    assert "not on the trunk allow-list" in service.log()
    assert idle(service), "call state left behind"


# -- outgoing calls -------------------------------------------------------------------


def test_outgoing_calls_show_the_caller_id_of_the_active_profile(
    service: RunningService,
    sipp_binary: str,
    trunk: Trunk,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    uas = trunk.uas("trunk_uas.xml", tmp_path, sinks["trunk"], calls=3)
    # Tillgänglig: the DID; the number dialled nationally, with 00 and in E.164.
    first = call(service, "b2b_call.xml", sinks["caller"], tmp_path, "0701234567")
    assert first.returncode == 0 and first.successful == 1, first.explain()
    feature_code(service, "*23*2%23", ANNA, tmp_path)  # Lunch: the main number
    second = call(service, "b2b_call.xml", sinks["caller"], tmp_path, "0046701234567")
    assert second.returncode == 0 and second.successful == 1, second.explain()
    feature_code(service, "*23*3%23", ANNA, tmp_path)  # Möte: hidden
    third = call(service, "b2b_call.xml", sinks["caller"], tmp_path, "+46701234567")
    assert third.returncode == 0 and third.successful == 1, third.explain()
    result = uas.wait()
    assert result.returncode == 0, result.explain()

    invites = received(result, "INVITE ")
    assert len(invites) == 3
    for invite in invites:
        assert invite.startswith(f"INVITE sip:+46701234567@{TRUNK_HOST}:{trunk.port}")
        assert header(invite, "Max-Forwards") == "69"
    did, main, hidden = invites
    assert header(did, "From").startswith(f'"Anna Andersson" <sip:+46846500401@{DOMAIN}>')
    assert header(did, "P-Asserted-Identity") == f"<sip:+46846500401@{DOMAIN}>"
    assert header(main, "From").startswith(f'"Anna Andersson" <sip:+46846500400@{DOMAIN}>')
    assert header(main, "P-Asserted-Identity") == f"<sip:+46846500400@{DOMAIN}>"
    assert header(hidden, "From").startswith('"Anonymous" <sip:anonymous@anonymous.invalid>')
    assert header(hidden, "Privacy") == "id"
    assert header(hidden, "P-Asserted-Identity") == f"<sip:+46846500401@{DOMAIN}>"
    assert not header(did, "Privacy") and not header(main, "Privacy")
    assert idle(service), "call state left behind"


# -- keys during the spoken redirect ------------------------------------------------


def keys_capture(path: Path, digit: str, after_ms: float, tone_ms: float = 0) -> Path:
    """The caller's audio: silence, one RFC 4733 key press, silence, then a tone."""
    stream = RtpStream(codec="PCMA", ssrc=0xCA11).silence(1000).event(digit, 120)
    stream.silence(after_ms)
    if tone_ms:
        t = np.arange(int(8 * tone_ms)) / 8000
        stream.pcm((8000 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.int16))
    return stream.silence(200).write(path)


def test_key_1_during_the_redirect_rings_the_mobile_through_the_trunk(
    service: RunningService,
    sipp_binary: str,
    trunk: Trunk,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    feature_code(service, "*23*2*1300%23", ANNA, tmp_path)  # Lunch: offers the mobile
    uas = trunk.uas("trunk_uas_hangup.xml", tmp_path, sinks["trunk"])
    workdir = tmp_path / "keys"
    workdir.mkdir()
    keys_capture(workdir / "keys.pcap", "1", 300)
    result = from_trunk(
        service, "trunk_call_keys.xml", "+46846500401", sinks["caller"], tmp_path, workdir=workdir
    )
    assert result.returncode == 0 and result.successful == 1, result.explain()
    mobile = uas.wait()
    assert mobile.returncode == 0, mobile.explain()
    (invite,) = received(mobile, "INVITE ")
    assert invite.startswith(f"INVITE sip:+46701740605@{TRUNK_HOST}:{trunk.port}")
    assert header(invite, "From").startswith(f'"Extern" <sip:+46855512345@{DOMAIN}>')
    assert header(invite, "Diversion").startswith(f"<sip:+46846500401@{DOMAIN}>;reason=follow-me")
    assert "m=audio" not in invite, "no offer: the mobile offers (RFC 3725 flow I)"
    # The caller was moved to the mobile: re-INVITEd with the mobile's offer; the caller's
    # answer went on to the mobile in its ACK; then the mobile's BYE.
    (reinvite,) = received(result, "INVITE ")
    assert f"m=audio {sinks['trunk'].port} " in reinvite
    (ack,) = received(mobile, "ACK ")
    assert f"m=audio {sinks['caller'].port} RTP/AVP 8 101" in ack, "the caller's answer"
    # Under our o= line, one version on from our 200's (RFC 3264 §8).
    ours = next(m for m in received(result, "SIP/2.0 200") if "INVITE" in header(m, "CSeq"))
    user, session, version, rest = origin(ours).split(" ", 3)
    assert origin(reinvite) == f"{user} {session} {int(version) + 1} {rest}"
    assert header(reinvite, "CSeq") == "1 INVITE"  # our first request in the dialog
    assert received(result, "ACK ") and received(result, "BYE ")
    assert received(mobile, "SIP/2.0 200"), "the mobile's BYE reached the caller and back"
    # The redirect stopped at the key (1 s in): the mobile rang long before it would end.
    now = datetime.now(TZ)
    words = phrases.redirect("1001", 2, next_1300(now), now, "sv")
    full = sum(PromptLibrary(REPO / "prompts").duration("sv", w) for w in words)
    moved = (when(result, "received", "INVITE ") - when(result, "sent", "ACK ")).total_seconds()
    assert 1.0 <= moved < min(2.5, full - 0.5), (moved, full)
    assert idle(service), "call state left behind"


def tone_share(payload: bytes, codec: str, hz: float) -> float:
    """How much of a frame's energy is one sine at ``hz`` (1.0: a pure tone)."""
    x = g711.decode(codec, payload).astype(np.float64)
    energy = float(np.dot(x, x))
    if energy < 1e3 * len(x):  # silence (or nearly)
        return 0.0
    t = np.arange(len(x)) / 8000
    return 2 * abs(np.dot(x, np.exp(-2j * np.pi * hz * t))) ** 2 / (len(x) * energy)


def test_the_caller_hears_ringback_while_key_1_rings_the_mobile(
    service: RunningService,
    sipp_binary: str,
    trunk: Trunk,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    feature_code(service, "*23*2*1300%23", ANNA, tmp_path)  # Lunch: offers the mobile
    uas = trunk.uas("trunk_uas_ringing.xml", tmp_path, sinks["trunk"])  # rings 0.8 s
    workdir = tmp_path / "keys"
    workdir.mkdir()
    keys_capture(workdir / "keys.pcap", "1", 300)
    heard = RtpSink(TRUNK_HOST)  # the caller's SDP names SIPp's address
    try:
        result = from_trunk(
            service, "trunk_call_keys.xml", "+46846500401", heard, tmp_path, workdir=workdir
        )
    finally:
        heard.close()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    mobile = uas.wait()
    assert mobile.returncode == 0, mobile.explain()
    assert received(result, "INVITE "), "moved to the mobile"
    # What we sent the caller: the redirect (speech), then 425 Hz while the mobile rang.
    ours = [p for p in heard.packets if p.payload_type == 8]
    tones = [p for p in ours if tone_share(p.payload, "PCMA", 425.0) > 0.9]
    assert 25 <= len(tones) <= 46, len(tones)  # 1 s on, cut short by the answer at 0.8 s
    first, last = tones[0].at, tones[-1].at
    key = when(result, "sent", "ACK ").timestamp() + 1.0  # keys.pcap: the key 1 s in
    answered = when(result, "received", "INVITE ").timestamp()  # the re-INVITE
    assert key < first < key + 1.0, first - key
    assert last <= answered + 0.1, last - answered
    assert answered - first < 1.2
    # Contiguous: no gap inside the tone, and nothing of it after the answer.
    steps = np.diff([p.sequence for p in tones])
    assert set(steps.tolist()) == {1}, steps
    assert all(p.at <= answered + 0.1 for p in ours if p.at > first)
    assert idle(service), "call state left behind"


def test_key_2_during_the_redirect_goes_to_voicemail_at_once(
    service: RunningService,
    sipp_binary: str,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    feature_code(service, "*23*2*1300%23", ANNA, tmp_path)  # Lunch
    workdir = tmp_path / "keys"
    workdir.mkdir()
    library = PromptLibrary(REPO / "prompts")
    lead = sum(library.duration("sv", w) for w in ("leave_message", "beep")) + 0.6
    keys_capture(workdir / "keys.pcap", "2", lead * 1000, tone_ms=2000)
    result = from_trunk(
        service, "trunk_call_keys.xml", "+46846500401", sinks["caller"], tmp_path, workdir=workdir
    )
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert not received(result, "INVITE "), "no transfer for key 2"
    with SqliteStore(service.db, recordings_dir=tmp_path / "recordings") as store:
        (message,) = store.voicemail.list("1001")
    assert message.caller == "+46855512345"
    assert 1.8 <= message.duration <= 3.5, message
    assert idle(service), "call state left behind"


def test_key_0_during_the_redirect_moves_the_caller_to_the_operator(
    service: RunningService,
    sipp_binary: str,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    feature_code(service, "*23*3*1300%23", ANNA, tmp_path)  # Möte; the operator is 1000
    desk = device(service, RECEPTION, "b2b_device_hangup.xml", sinks["desk"], tmp_path)
    workdir = tmp_path / "keys"
    workdir.mkdir()
    keys_capture(workdir / "keys.pcap", "0", 300)
    result = from_trunk(
        service, "trunk_call_keys.xml", "+46846500401", sinks["caller"], tmp_path, workdir=workdir
    )
    assert result.returncode == 0 and result.successful == 1, result.explain()
    desk_result = desk.wait()
    assert desk_result.returncode == 0, desk_result.explain()
    (invite,) = received(desk_result, "INVITE ")
    assert invite.startswith("INVITE sip:1000@127.0.0.1:")
    assert header(invite, "From").startswith(f'"Extern" <sip:+46855512345@{DOMAIN}>')
    assert "m=audio" not in invite, "no offer: the desk offers"
    (reinvite,) = received(result, "INVITE ")
    assert f"m=audio {sinks['desk'].port} " in reinvite
    (ack,) = received(desk_result, "ACK ")
    assert f"m=audio {sinks['caller'].port} " in ack, "the caller's answer"
    (bye,) = received(result, "BYE ")  # the reception hung up; the BYE was relayed
    assert header(bye, "Call-ID") == header(reinvite, "Call-ID")
    assert idle(service), "call state left behind"


def test_a_forward_after_the_redirect_moves_the_caller_to_the_trunk(
    service: RunningService,
    sipp_binary: str,
    trunk: Trunk,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    feature_code(service, "*23*4*1300%23", DESK, tmp_path)  # Tillfälligt ute → forward
    uas = trunk.uas("trunk_uas_hangup.xml", tmp_path, sinks["trunk"])
    workdir = tmp_path / "keys"
    workdir.mkdir()
    keys_capture(workdir / "keys.pcap", "5", 300)  # a key that does nothing
    result = from_trunk(
        service, "trunk_call_keys.xml", "+46846500402", sinks["caller"], tmp_path, workdir=workdir
    )
    assert result.returncode == 0 and result.successful == 1, result.explain()
    forwarded = uas.wait()
    assert forwarded.returncode == 0, forwarded.explain()
    (invite,) = received(forwarded, "INVITE ")
    assert invite.startswith(f"INVITE sip:{EXTERNAL}@{TRUNK_HOST}:{trunk.port}")
    diversion = header(invite, "Diversion")
    assert diversion.startswith(f"<sip:+46846500402@{DOMAIN}>;reason=unconditional"), diversion
    (reinvite,) = received(result, "INVITE ")
    assert f"m=audio {sinks['trunk'].port} " in reinvite
    # The whole redirect was played first: the trunk rang only after it.
    now = datetime.now(TZ)
    words = phrases.redirect("1002", 4, next_1300(now), now, "sv")
    full = sum(PromptLibrary(REPO / "prompts").duration("sv", w) for w in words)
    moved = (when(result, "received", "INVITE ") - when(result, "sent", "ACK ")).total_seconds()
    assert full <= moved < full + 2.0, (moved, full)
    assert idle(service), "call state left behind"
