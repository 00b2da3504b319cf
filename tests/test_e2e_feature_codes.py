"""End to end: feature-code calls from real SIPp against `ivr serve`.

SIPp authenticates (407 challenge on INVITE), the server stores the change, answers,
plays the confirmation (RTP arrives at a receiver of ours that SIPp's SDP names) and
hangs up; the HTTP view, the CLI and the audit log show the change.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.media import phrases
from ivr.testing.audit import audit_log
from ivr.testing.devices import DOMAIN, dial_code
from ivr.testing.rtp_sink import RtpSink, speech_frames_of
from ivr.testing.sipp import Sipp

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Europe/Stockholm")


def dial(
    service,
    code: str,
    sink: RtpSink,
    user: str = "1001",
    password: str = "anna-desk-1001",
    timeout: float = 30,
):
    return dial_code(service, code, (user, password), sink.port, timeout=timeout)


def audit(service, user: str) -> list:
    """The profile changes' entries (the queue logouts they bring are tested elsewhere)."""
    return audit_log(service, user, queues=False)


def test_lunch_until_1300_is_stored_confirmed_and_audited(service, sipp_binary, sink) -> None:
    result = dial(service, "*23*2*1300%23", sink)
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert "Proxy-Authenticate: Digest" in result.messages
    assert "BYE sip:" in result.messages  # the server hung up

    packets = sink.packets
    assert packets, "no RTP arrived"
    assert {p.payload_type for p in packets} == {8}, "PCMA was offered first and must be used"
    seqs = [p.sequence for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
    now = datetime.now(TZ)
    words = phrases.activated(2, _next_1300(now), now, "sv")
    frames = sink.speech_frames()
    assert abs(frames - speech_frames_of(words)) <= 0.1 * speech_frames_of(words) + 5, (
        frames,
        speech_frames_of(words),
    )

    status, view = service.get_json("/api/users/1001/profile")
    assert status == 200
    assert view["profile"] == "lunch"
    assert view["source"] == "manual"
    assert view["set_by"] == "1001"
    assert view["set_via"] == "phone"
    assert datetime.fromisoformat(view["until"]) == _next_1300(now)

    entries = audit(service, "1001")
    assert len(entries) == 1
    assert entries[0].action == "activate" and entries[0].actor == "1001"
    assert entries[0].via == "phone" and entries[0].detail["to"] == "lunch"

    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "ivr.cli",
            "profile",
            "show",
            "1001",
            "--json",
            "--db",
            str(service.db),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["profile"] == "lunch"


def _next_1300(now: datetime) -> datetime:
    moment = datetime.combine(now.date(), time(13, 0), tzinfo=TZ)
    if moment <= now:
        moment = datetime.combine(now.date() + timedelta(days=1), time(13, 0), tzinfo=TZ)
    return moment


def test_back_to_available_and_query_and_dnd(service, sipp_binary, sink) -> None:
    assert dial(service, "*23*3%23", sink).successful == 1
    assert service.get_json("/api/users/1001/profile")[1]["profile"] == "meeting"

    assert dial(service, "%2323%23", sink).successful == 1
    assert service.get_json("/api/users/1001/profile")[1]["profile"] == "available"

    before = len(audit(service, "1001"))
    result = dial(service, "*%2323%23", sink)
    assert result.successful == 1, result.explain()
    assert len(audit(service, "1001")) == before, "a query changes nothing"

    assert dial(service, "*78", sink).successful == 1
    _, view = service.get_json("/api/users/1001/profile")
    assert view["profile"] == "dnd" and view["presence"] == "dnd"
    actions = [e.action for e in audit(service, "1001")]
    assert actions[0] == "dnd_on"  # newest first
    assert sorted(actions[1:]) == ["activate", "back_to_standard"]


def test_invalid_code_is_announced_and_changes_nothing(service, sipp_binary, sink) -> None:
    result = dial(service, "*23*0%23", sink)
    assert result.returncode == 0 and result.successful == 1, result.explain()
    frames = sink.speech_frames()
    expected = speech_frames_of(phrases.invalid_code("sv"))
    assert abs(frames - expected) <= 0.1 * expected + 5, (frames, expected)
    assert service.get_json("/api/users/1001/profile")[1]["source"] == "standard"
    assert audit(service, "1001") == []


def test_unauthenticated_invite_is_never_answered(service, sipp_binary) -> None:
    result = Sipp(
        scenario="feature_code_unauthenticated.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[["1001", "-", DOMAIN]],
        keys={"code": "*78"},
        timeout=20,
    )()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert "SIP/2.0 200" not in result.messages
    assert service.get_json("/api/users/1001/profile")[1]["source"] == "standard"


def test_wrong_password_gets_no_call_and_no_change(service, sipp_binary, sink) -> None:
    # SIPp answers the second 407 with ACK and then waits for ever: a short timeout
    result = dial(service, "*78", sink, password="not-the-password", timeout=5)
    assert result.successful == 0
    assert "SIP/2.0 200" not in result.messages
    assert service.get_json("/api/users/1001/profile")[1]["source"] == "standard"
    assert "auth-failure" in service.log()
