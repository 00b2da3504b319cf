"""End to end: the interactive ``*23`` menu keyed from real peers, one DTMF path each.

SIPp dials ``*23`` (digest on a 407) and keys the menu as RFC 4733 telephone-events
(``play_pcap_audio`` of a capture ``ivr.testing.pcap`` writes), as SIP INFO
(``application/dtmf-relay``, with two bodies that must be refused), and as in-band
tones inside G.711 audio when the offer has no telephone-event; then baresip keys it
with ``sndcode``. Each test reads the outcome where users see it: the profile over
HTTP and the audit entry (via ``ivr``), after the server hung up with a BYE.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import require_binary

from ivr.dtmf.generate import generate
from ivr.testing import api
from ivr.testing.api import metric
from ivr.testing.audit import audit_log
from ivr.testing.baresip import Baresip
from ivr.testing.devices import DOMAIN, auth_row
from ivr.testing.pcap import RtpStream
from ivr.testing.polling import poll
from ivr.testing.service import RunningService
from ivr.testing.sip_trace import received
from ivr.testing.sipp import Sipp, SippResult

pytestmark = pytest.mark.e2e

TZ = ZoneInfo("Europe/Stockholm")
USER, PASSWORD = "1001", "anna-desk-1001"
SOFT_USER, SOFT_PASSWORD = "1001-soft", "anna-soft-1001"


# --- helpers -------------------------------------------------------------------------


def profile(service: RunningService, ext: str = USER) -> dict[str, Any]:
    """GET /api/users/{ext}/profile."""
    return api.profile(service, ext)


def settled(service: RunningService, expected: str) -> dict[str, Any]:
    """The profile view once it names ``expected`` (bounded wait; asserts it does)."""
    views: list[dict[str, Any]] = []

    def changed() -> bool:
        views.append(profile(service))
        return views[-1]["profile"] == expected

    assert poll(changed), f"profile never became {expected!r}: {views[-1]}\n{service.log()[-3000:]}"
    return views[-1]


def audit(service: RunningService, user: str = USER) -> list[Any]:
    """The profile changes' entries about ``user``, newest first (no queue logouts)."""
    return audit_log(service, user, queues=False)


def next_at(now: datetime, hour: int, minute: int) -> datetime:
    """The next HH:MM (Stockholm time) strictly after ``now``."""
    moment = datetime.combine(now.date(), clock_time(hour, minute), tzinfo=TZ)
    return moment if moment > now else moment + timedelta(days=1)


def assert_activated(
    service: RunningService,
    profile_id: str,
    until: set[datetime | None],
    *,
    actor: str = USER,
) -> None:
    """``profile_id`` is active (manual, set over the IVR by ``actor``) until one of
    ``until``, with exactly one audit entry saying so."""
    view = settled(service, profile_id)
    assert (view["source"], view["set_by"], view["set_via"]) == ("manual", actor, "ivr"), view
    got = None if view["until"] is None else datetime.fromisoformat(view["until"])
    assert got in until, (got, until)
    entries = audit(service)
    assert len(entries) == 1, entries
    entry = entries[0]
    assert (entry.action, entry.actor, entry.via) == ("activate", actor, "ivr"), entry
    assert entry.detail["to"] == profile_id, entry.detail


def sipp_menu(
    service: RunningService,
    scenario: str,
    workdir: Path,
    keys: dict[str, str] | None = None,
) -> SippResult:
    """One SIPp call of ``scenario`` dialling ``*23`` as 1001, run in ``workdir`` (where
    ``play_pcap_audio`` finds its capture); waits until the call has ended."""
    return Sipp(
        scenario=scenario,
        remote=(service.host, service.sip_port),
        inf_rows=[auth_row(USER, PASSWORD)],
        keys={"code": "*23", **(keys or {})},
        timeout=30,
        workdir=workdir,
    )()


def answer_sdp(result: SippResult) -> str:
    """The SDP body of the server's 200 OK to the INVITE."""
    answers = [m for m in received(result, "SIP/2.0 200") if re.search(r"(?mi)^CSeq:.*INVITE", m)]
    assert answers, result.explain()
    return answers[0].partition("\n\n")[2]


def assert_server_hung_up(result: SippResult) -> None:
    """SIPp's call succeeded and ended with the server's BYE."""
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert received(result, "BYE sip:"), "the server sent no BYE\n" + result.explain()


# --- SIPp: RFC 4733 telephone-events ---------------------------------------------------


def rfc4733_capture(path: Path, first: str, entry: str) -> Path:
    """PCMU silence with key presses as telephone-events (PT 101): ``first`` after 0.5 s,
    then the keys of ``entry`` 100 ms each, 200 ms apart, and a little trailing audio."""
    stream = RtpStream(codec="PCMU", event_pt=101).silence(500).event(first, 120).silence(800)
    for digit in entry:
        stream.event(digit, 100).silence(200)
    return stream.silence(300).write(path)


def test_rfc4733_events_choose_lunch_until_1300(
    service: RunningService, sipp_binary: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "sipp"
    workdir.mkdir()
    rfc4733_capture(workdir / "menu_rfc4733.pcap", "2", "1300#")
    before = datetime.now(TZ)
    result = sipp_menu(service, "menu_rfc4733.xml", workdir)
    after = datetime.now(TZ)

    assert_server_hung_up(result)
    sdp = answer_sdp(result)
    assert re.search(r"(?m)^m=audio \d+ RTP/AVP 0 101\s*$", sdp), sdp
    assert "a=rtpmap:101 telephone-event/8000" in sdp, sdp
    assert_activated(service, "lunch", {next_at(before, 13, 0), next_at(after, 13, 0)})
    assert metric(service, "ivr_dtmf_digits_total", "source") == {"rfc4733": 6}, (
        "2 then 1300#, each press once"
    )


# --- SIPp: SIP INFO ---------------------------------------------------------------------


def test_info_digits_choose_meeting_until_1430_and_bad_bodies_are_refused(
    service: RunningService, sipp_binary: str, tmp_path: Path
) -> None:
    digits = dict(zip(("d1", "d2", "d3", "d4", "d5", "d6"), "31430#", strict=True))
    before = datetime.now(TZ)
    result = sipp_menu(service, "menu_info.xml", tmp_path / "sipp", digits)
    after = datetime.now(TZ)

    assert_server_hung_up(result)
    # the scenario expects 400, 415 and six 200s in this order: success means they came
    assert len(received(result, "SIP/2.0 400")) == 1, result.explain()
    unsupported = received(result, "SIP/2.0 415")
    assert len(unsupported) == 1, result.explain()
    accept = re.search(r"(?mi)^Accept:\s*(.*)$", unsupported[0])
    assert accept is not None, unsupported[0]
    assert "application/dtmf-relay" in accept.group(1).lower(), unsupported[0]
    oks = [m for m in received(result, "SIP/2.0 200") if re.search(r"(?mi)^CSeq:.*INFO", m)]
    assert len(oks) == 6, result.explain()
    assert_activated(service, "meeting", {next_at(before, 14, 30), next_at(after, 14, 30)})
    assert metric(service, "ivr_dtmf_digits_total", "source") == {"info": 6}, (
        "3 then 1430#; the refused bodies count not"
    )


# --- SIPp: in-band tones in G.711 ---------------------------------------------------------


def inband_capture(path: Path, first: str, entry: str) -> Path:
    """G.711 μ-law audio: silence, ``first`` as a 120 ms tone pair after 0.6 s, then the
    keys of ``entry`` as 120 ms tones 300 ms apart, then silence."""
    stream = RtpStream(codec="PCMU").silence(600).pcm(generate(first, tone_ms=120))
    stream.silence(900).pcm(generate(entry, tone_ms=120, gap_ms=300))
    return stream.silence(600).write(path)


def test_inband_tones_choose_out_with_default_return(
    service: RunningService, sipp_binary: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "sipp"
    workdir.mkdir()
    inband_capture(workdir / "menu_inband.pcap", "4", "#")
    result = sipp_menu(service, "menu_inband.xml", workdir)

    assert_server_hung_up(result)
    sdp = answer_sdp(result)
    assert re.search(r"(?m)^m=audio \d+ RTP/AVP 0\s*$", sdp), sdp
    assert "telephone-event" not in sdp, sdp
    # "Tillfälligt ute" has a time return; "#" alone takes its default: no end time
    assert_activated(service, "out", {None})
    assert metric(service, "ivr_dtmf_digits_total", "source") == {"inband": 2}, (
        "4 then #, each tone once"
    )


# --- baresip: sndcode (RFC 4733 from a real softphone) ------------------------------------


def next_date(now: datetime, month: int, day: int) -> datetime:
    """The next month/day at 00:00 Stockholm time strictly after ``now``."""
    moment = datetime(now.year, month, day, tzinfo=TZ)
    return moment if moment > now else moment.replace(year=now.year + 1)


def test_baresip_sndcode_chooses_trip_until_a_date(
    md5_service: RunningService, tmp_path: Path
) -> None:
    binary = require_binary("baresip", "baresip-core")
    account = (
        f"<sip:{SOFT_USER}@{DOMAIN}>;auth_pass={SOFT_PASSWORD};"
        f'outbound="sip:{md5_service.host}:{md5_service.sip_port}";regint=0'
    )
    phone = Baresip(account, max_seconds=40, workdir=tmp_path / "baresip", binary=binary)
    before = datetime.now(TZ)
    with phone:
        reply = phone.dial(f"sip:*23@{DOMAIN}")
        assert reply.get("ok"), reply
        phone.wait_event("CALL_ESTABLISHED", timeout=10)
        time.sleep(0.4)
        for key in "61224#":  # Tjänsteresa, back 24 December (MMDD), then #
            done = phone.command("sndcode", key)
            assert done.get("ok"), done
            time.sleep(0.3)
        closed = phone.wait_event("CALL_CLOSED", timeout=20)
    after = datetime.now(TZ)
    log = phone.log()
    sent = re.findall(r"audio: send DTMF digit end: '(.)'", log)
    assert sent == list("61224#"), "baresip did not send every key:\n" + log[-3000:]
    server = f"{md5_service.host}:{md5_service.sip_port}"
    from_server = baresip_received(log, server)
    assert any(m.startswith("BYE sip:") for m in from_server), "no BYE from the server:\n" + log
    assert closed["param"] == "Connection reset by peer", closed  # baresip's word for a BYE
    answer = [
        m for m in from_server if re.match(r"SIP/2.0 200.*^CSeq: *\d+ INVITE", m, re.M | re.S)
    ]
    assert answer and "a=rtpmap:101 telephone-event/8000" in answer[0], from_server
    until = {next_date(before, 12, 24), next_date(after, 12, 24)}
    # the actor is the user (extension), the device is kept in the audit detail
    assert_activated(md5_service, "trip", until, actor=USER)
    assert audit(md5_service)[0].detail["device"] == SOFT_USER


def baresip_received(log: str, source: str) -> list[str]:
    """The SIP messages in baresip's trace (``-s``) that came from ``source`` (host:port)."""
    pieces = re.split(r"(?m)^(?:UDP|TCP) (\S+) -> \S+\r?$", log)
    return [
        text.strip().replace("\r\n", "\n")
        for origin, text in zip(pieces[1::2], pieces[2::2], strict=True)
        if origin == source
    ]
