"""End to end: feature-code calls from real SIPp against `ivr serve`.

SIPp authenticates (407 challenge on INVITE), the server stores the change, answers,
plays the confirmation (RTP arrives at a receiver of ours that SIPp's SDP names) and
hangs up; the HTTP view, the CLI and the audit log show the change.
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import subprocess
import sys
import threading
import time as clock
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.media import phrases
from ivr.media.prompts import PromptLibrary
from ivr.store.sqlite import SqliteStore
from ivr.testing.sipp import Sipp

pytestmark = pytest.mark.e2e

DOMAIN = "ivr.local"
REPO = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Europe/Stockholm")


@dataclass
class RtpSink:
    """A UDP receiver standing in for the phone's RTP port."""

    host: str = "127.0.0.1"
    packets: list[tuple[float, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            self.packets.append((clock.monotonic(), data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def audio(self) -> list[tuple[float, int, int, int, bytes]]:
        """(arrival, payload type, sequence, timestamp, payload) of non-silent RTP."""
        out = []
        for arrival, data in self.packets:
            if len(data) < 12:
                continue
            _, pt, seq, ts = struct.unpack("!BBHI", data[:8])
            out.append((arrival, pt & 0x7F, seq, ts, data[12:]))
        return out


def row(user: str, password: str) -> list[str]:
    """SIPp's CSV fields: user, the whole authentication keyword, domain."""
    keyword = f"[authentication username={user} password={password}]"
    return [user, keyword, DOMAIN]


def dial(service, code: str, sink: RtpSink, user: str = "1001", password: str = "anna-desk-1001"):
    return Sipp(
        scenario="feature_code.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[row(user, password)],
        keys={"code": code, "rtp_port": str(sink.port)},
        timeout=30,
    )()


def speech_frames(sink: RtpSink) -> int:
    """Packets that carry sound (not the idle silence sent before the ACK)."""
    silent = {0xD5, 0xFF, 0x55, 0x7F}
    return sum(1 for *_, payload in sink.audio() if set(payload) - silent)


def expected_frames(words: list[str], lang: str = "sv", codec: str = "PCMA") -> int:
    """Frames of the prompt sequence that carry sound (as speech_frames counts them)."""
    library = PromptLibrary(REPO / "prompts")
    audio = b"".join(library.encoded(lang, w, codec) for w in words)
    silent = {0xD5, 0xFF, 0x55, 0x7F}
    return sum(1 for i in range(0, len(audio), 160) if set(audio[i : i + 160]) - silent)


def audit(service, user: str) -> list:
    with SqliteStore(service.db) as store:
        return store.audit.query(user=user)


@pytest.fixture
def sink():
    receiver = RtpSink()
    yield receiver
    receiver.close()


def test_lunch_until_1300_is_stored_confirmed_and_audited(service, sipp_binary, sink) -> None:
    result = dial(service, "*23*2*1300%23", sink)
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert "Proxy-Authenticate: Digest" in result.messages
    assert "BYE sip:" in result.messages  # the server hung up

    packets = sink.audio()
    assert packets, "no RTP arrived"
    assert {pt for _, pt, *_ in packets} == {8}, "PCMA was offered first and must be used"
    seqs = [seq for _, _, seq, _, _ in packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
    now = datetime.now(TZ)
    words = phrases.activated(2, _next_1300(now), now, "sv")
    frames = speech_frames(sink)
    assert abs(frames - expected_frames(words)) <= 0.1 * expected_frames(words) + 5, (
        frames,
        expected_frames(words),
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
    frames = speech_frames(sink)
    expected = expected_frames(phrases.invalid_code("sv"))
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
    result = dial(service, "*78", sink, password="not-the-password")
    assert result.successful == 0
    assert "SIP/2.0 200" not in result.messages
    assert service.get_json("/api/users/1001/profile")[1]["source"] == "standard"
    assert "auth-failure" in service.log()
