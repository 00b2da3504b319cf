"""End to end: calls to a queue through `ivr serve`, with real SIPp on every side.

The sales queue (2002) has Bengt (1002) and Carol (1003). SIPp UAS processes register
as their desk phones and answer or ring; Anna's (1001) desk phone is a SIPp UAC calling
the queue. Both Tillgänglig: both desks ring at once, Bengt answers, Carol's desk gets
CANCEL. Carol at Lunch (set over the HTTP API), even after logging in again with
``*45``: only Bengt rings. Carol presses ``*45`` (hearing "Logged out of the queue."):
the next call rings only Bengt. Nobody answers within the queue's (shortened) ring time:
both are CANCELled and the caller gets the fallback, busy (486); with nobody to ring
(Bengt paused with ``*46``, Carol logged out) the fallback comes at once. The support
queue's fallback (forward to 1000, whom nobody answers for) ends in 1000's voicemail.
``GET /api/v1/queues`` shows who is logged in and why; each queue call leaves one call
record (kind ``queue``).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from ivr.admin.auth import new_token, token_hash
from ivr.media import phrases
from ivr.media.prompts import PromptLibrary
from ivr.store.sqlite import SqliteStore
from ivr.testing.pcap import RtpStream
from ivr.testing.service import DEFAULT_CONFIG, RunningService, ServiceError, start_service
from ivr.testing.sipp import Sipp, SippProcess, SippResult, free_port

pytestmark = pytest.mark.e2e

DOMAIN = "ivr.local"
REPO = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Europe/Stockholm")
SILENT = frozenset({0xD5, 0xFF, 0x55, 0x7F})
ANNA = ("1001", "anna-desk-1001")
BENGT = ("1002", "bengt-desk-1002")
CAROL = ("1003", "carol-desk-1003")
SALES = "2002"
RING_SECONDS = 3


@dataclass
class RtpSink:
    """A UDP receiver standing in for a phone's RTP port."""

    packets: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            if len(data) >= 12:
                self.packets.append(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def speech_frames(self) -> int:
        return sum(1 for p in self.packets if set(p[12:]) - SILENT)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    """The demo company; the sales queue rings 3 s and then answers busy."""
    text = DEFAULT_CONFIG.read_text()
    text = text.replace('prompts_dir = "prompts"', f'prompts_dir = "{REPO / "prompts"}"')
    recordings = tmp_path / "recordings"
    text = text.replace('recordings_dir = "recordings"', f'recordings_dir = "{recordings}"')
    sales = text.index('id = "sales"\nnumber = "2002"')
    tail = text[sales:]
    tail = re.sub(r"ring_seconds = \d+", f"ring_seconds = {RING_SECONDS}", tail, count=1)
    tail = re.sub(r'fallback = "[^"]*"', 'fallback = "busy"', tail, count=1)
    config = tmp_path / "ivr.toml"
    config.write_text(text[:sales] + tail)
    try:
        running = start_service(tmp_path, config=config)
    except ServiceError as exc:
        pytest.fail(str(exc))
    yield running
    code = running.stop()
    assert code == 0, f"ivr serve exited {code}:\n{running.log()}"
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture
def sink() -> Iterator[RtpSink]:
    made = RtpSink()
    yield made
    made.close()


@pytest.fixture
def other() -> Iterator[RtpSink]:
    """The RTP port of a second device."""
    made = RtpSink()
    yield made
    made.close()


def row(user: str, password: str) -> list[str]:
    return [user, f"[authentication username={user} password={password}]", DOMAIN]


def tone_capture(path: Path, hz: float, ssrc: int) -> Path:
    t = np.arange(30 * 160) / 8000
    pcm = (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return RtpStream(codec="PCMU", ssrc=ssrc).pcm(pcm).write(path)


def device(
    service: RunningService, account: tuple[str, str], scenario: str, tmp: Path, sink: RtpSink
) -> SippProcess:
    """A SIPp UAS as the user's desk phone, registered at its address."""
    user, password = account
    workdir = tmp / f"{user}-{len(list(tmp.glob(f'{user}-*')))}"
    workdir.mkdir()
    tone_capture(workdir / "device.pcap", 440.0, 0xDE5C)
    port = free_port()
    uas = Sipp(
        scenario=scenario,
        local_port=port,
        keys={"user": user, "rtp_port": str(sink.port)},
        timeout=30,
        workdir=workdir,
    ).start()
    registered = Sipp(
        scenario="b2b_register.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[row(user, password)],
        keys={"contact_port": str(port)},
        timeout=10,
        workdir=workdir / "register",
    )()
    assert registered.returncode == 0 and registered.successful == 1, registered.explain()
    return uas


def call(
    service: RunningService, scenario: str, tmp: Path, sink: RtpSink, callee: str = SALES
) -> SippResult:
    """Anna's desk phone calls ``callee`` (a queue); waits until the call is over."""
    workdir = tmp / f"caller-{len(list(tmp.glob('caller-*')))}"
    workdir.mkdir()
    tone_capture(workdir / "caller.pcap", 1000.0, 0xCA11)
    return Sipp(
        scenario=scenario,
        remote=(service.host, service.sip_port),
        inf_rows=[row(*ANNA)],
        keys={"callee": callee, "code": callee, "rtp_port": str(sink.port), "max_forwards": "70"},
        timeout=40,
        workdir=workdir,
    )()


def feature_code(
    service: RunningService, code: str, account: tuple[str, str], tmp: Path
) -> RtpSink:
    """The user dials a feature code from their desk phone; returns what they heard."""
    heard = RtpSink()
    try:
        result = Sipp(
            scenario="feature_code.xml",
            remote=(service.host, service.sip_port),
            inf_rows=[row(*account)],
            keys={"code": code, "rtp_port": str(heard.port)},
            timeout=30,
            workdir=tmp / f"code-{len(list(tmp.glob('code-*')))}",
        )()
    finally:
        heard.close()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    return heard


_ENTRY = re.compile(
    r"^-{20,} [^\n]*\n(?:UDP|TCP) message (sent|received)[^\n]*\n\n(.*?)(?=^-{20,} |\Z)",
    re.M | re.S,
)


def received(result: SippResult, start: str) -> list[str]:
    """The messages a SIPp received whose first line starts with ``start``."""
    texts = [
        text.strip("\n")
        for direction, text in _ENTRY.findall(result.messages.replace("\r\n", "\n"))
        if direction == "received"
    ]
    return [text for text in texts if text.startswith(start)]


def header(message: str, name: str) -> str:
    match = re.search(rf"(?mi)^{name}:\s*(.*)$", message)
    return match.group(1).strip() if match else ""


def idle(service: RunningService, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        status, body = service.get_json("/health")
        assert status == 200 and isinstance(body, dict), (status, body)
        if body["active_calls"] == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def speech_frames_of(words: list[str], lang: str, codec: str = "PCMA") -> int:
    library = PromptLibrary(REPO / "prompts")
    audio = b"".join(library.encoded(lang, w, codec) for w in words)
    return sum(1 for i in range(0, len(audio), 160) if set(audio[i : i + 160]) - SILENT)


def api(
    service: RunningService, method: str, path: str, user: str | None, body: object = None
) -> tuple[int, Any]:
    """``/api/v1{path}`` with a bearer token of ``user`` (None: no token)."""
    headers = {"Content-Type": "application/json"}
    if user is not None:
        token = new_token()
        with SqliteStore(service.db) as store:
            store.tokens.add(
                token_hash=token_hash(token),
                user=user,
                admin=False,
                label="queue test",
                created_at=datetime.now(TZ),
            )
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{service.http_port}/api/v1{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def queue_records(service: RunningService, count: int, timeout: float = 5.0) -> list[Any]:
    """The queue calls' records, newest first, once ``count`` are written (bounded poll)."""
    deadline = time.monotonic() + timeout
    while True:
        with SqliteStore(service.db) as store:
            found = [r for r in store.call_records.list(user=SALES) if r.kind == "queue"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def audit_actions(service: RunningService, user: str) -> list[str]:
    with SqliteStore(service.db) as store:
        return [e.action for e in store.audit.query(user=user)]


def test_a_queue_call_rings_every_member_at_once_first_answer_wins(
    service: RunningService, sipp_binary: str, sink: RtpSink, other: RtpSink, tmp_path: Path
) -> None:
    bengt = device(service, BENGT, "b2b_device_answer.xml", tmp_path, sink)
    carol = device(service, CAROL, "b2b_device_ring.xml", tmp_path, other)
    caller = call(service, "b2b_call.xml", tmp_path, sink)
    bengt_result, carol_result = bengt.wait(), carol.wait()
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    assert bengt_result.returncode == 0, bengt_result.explain()
    assert carol_result.returncode == 0, carol_result.explain()

    (to_bengt,) = received(bengt_result, "INVITE ")
    (to_carol,) = received(carol_result, "INVITE ")
    assert to_bengt.startswith("INVITE sip:1002@127.0.0.1:")
    assert to_carol.startswith("INVITE sip:1003@127.0.0.1:")
    for invite in (to_bengt, to_carol):
        assert header(invite, "To") == f"<sip:{SALES}@{DOMAIN}>"
        assert header(invite, "From").startswith('"Sälj: Anna Andersson" <sip:1001@ivr.local>')
        assert header(invite, "Max-Forwards") == "69"
    assert header(to_bengt, "Call-ID") != header(to_carol, "Call-ID")

    # Bengt answered: the caller got his SDP; Carol's desk was CANCELled; BYE reached Bengt.
    ok = next(m for m in received(caller, "SIP/2.0 200") if "INVITE" in header(m, "CSeq"))
    assert f"m=audio {sink.port} " in ok
    assert received(carol_result, "CANCEL ") and not received(carol_result, "BYE ")
    assert received(bengt_result, "BYE ")
    assert idle(service), "call state left behind"

    # One call record: the queue, both members as parties, Bengt's leg answered.
    (record,) = queue_records(service, 1)
    assert (record.outcome, record.caller, record.dialled, record.user) == (
        "answered",
        "1001",
        SALES,
        SALES,
    )
    assert set(record.users) == {SALES, "1002", "1003"}
    assert sorted((leg.device, leg.answered) for leg in record.legs) == [
        ("1002-desk", True),
        ("1003-desk", False),
    ]
    ring = f"ring 1002-desk+1002-soft+1003-desk+1003-soft {RING_SECONDS} s"
    assert ring in record.decisions[0].trace and "answered on 1002-desk" in record.trace()


def test_a_member_at_lunch_is_skipped_even_when_logged_in(
    service: RunningService, sipp_binary: str, sink: RtpSink, other: RtpSink, tmp_path: Path
) -> None:
    status, lunch = api(service, "PUT", "/users/1003/profile", "1003", {"profile": "lunch"})
    assert status == 200 and lunch["profile"] == "lunch"
    # Lunch logs Carol out of her queues; *45 logs her in again ("Logged in to the queue.")
    heard = feature_code(service, "*45", CAROL, tmp_path)
    expected = speech_frames_of(["queue_logged_in"], "en")
    assert abs(heard.speech_frames() - expected) <= 0.1 * expected + 5, (
        heard.speech_frames(),
        expected,
    )
    assert audit_actions(service, "1003")[:2] == ["queue_login", "activate"]

    bengt = device(service, BENGT, "b2b_device_answer.xml", tmp_path, sink)
    carol = device(service, CAROL, "b2b_device_ring.xml", tmp_path, other)
    caller = call(service, "b2b_call.xml", tmp_path, sink)
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    bengt_result = bengt.wait()
    carol.stop()
    assert bengt_result.returncode == 0, bengt_result.explain()
    assert received(bengt_result, "INVITE ")
    assert not received(carol.wait(), "INVITE "), "a member at lunch must not ring"
    assert "1003 skipped: Lunch (away)" in service.log()
    with SqliteStore(service.db, recordings_dir=tmp_path / "recordings") as store:
        assert store.voicemail.list("1003") == [], "never sent to their own voicemail"
    assert idle(service), "call state left behind"


def test_star_45_logs_a_member_out_and_the_next_call_does_not_ring_them(
    service: RunningService, sipp_binary: str, sink: RtpSink, other: RtpSink, tmp_path: Path
) -> None:
    heard = feature_code(service, "*45", CAROL, tmp_path)
    expected = speech_frames_of(["queue_logged_out"], "en")
    assert abs(heard.speech_frames() - expected) <= 0.1 * expected + 5
    entry_actions = audit_actions(service, "1003")
    assert entry_actions == ["queue_logout"]
    with SqliteStore(service.db) as store:
        state = store.queues.get("1003")
    assert (state.login, state.set_by, state.set_via) == (False, "1003", "phone")
    status, sales = api(service, "GET", f"/queues/{SALES}", "1002")
    assert status == 200 and sales["id"] == "sales" and sales["fallback"] == "busy"
    members = {m["extension"]: m for m in sales["members"]}
    assert (members["1003"]["logged_in"], members["1003"]["why"]) == (False, "phone")
    assert members["1003"]["rings"] is False
    assert members["1002"]["logged_in"] and members["1002"]["rings"]
    assert members["1002"]["ring"] == ["desk", "softphone"] and members["1002"]["why"] == "profile"
    status, queues = api(service, "GET", "/queues", "1002")
    assert status == 200 and [q["number"] for q in queues] == ["2000", "2001", "2002"]
    assert api(service, "GET", "/queues/billing", "1002")[0] == 404
    assert api(service, "GET", "/queues", None)[0] == 401

    bengt = device(service, BENGT, "b2b_device_answer.xml", tmp_path, sink)
    carol = device(service, CAROL, "b2b_device_ring.xml", tmp_path, other)
    caller = call(service, "b2b_call.xml", tmp_path, sink)
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    bengt_result = bengt.wait()
    carol.stop()
    assert bengt_result.returncode == 0, bengt_result.explain()
    assert received(bengt_result, "INVITE ")
    assert not received(carol.wait(), "INVITE "), "a logged-out member must not ring"
    assert "1003 logged out (phone)" in service.log()
    assert idle(service), "call state left behind"


def test_no_answer_within_the_ring_time_goes_to_the_fallback(
    service: RunningService, sipp_binary: str, sink: RtpSink, other: RtpSink, tmp_path: Path
) -> None:
    bengt = device(service, BENGT, "b2b_device_ring.xml", tmp_path, sink)
    carol = device(service, CAROL, "b2b_device_ring.xml", tmp_path, other)
    started = time.monotonic()
    caller = call(service, "queue_call_busy.xml", tmp_path, sink)
    elapsed = time.monotonic() - started
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    assert received(caller, "SIP/2.0 180"), "the caller heard ringing first"
    assert RING_SECONDS <= elapsed < RING_SECONDS + 5
    for result in (bengt.wait(), carol.wait()):
        assert result.returncode == 0, result.explain()
        assert received(result, "CANCEL "), "every member's device is cancelled at the timeout"
    assert idle(service), "call state left behind"
    (record,) = queue_records(service, 1)
    assert (record.outcome, record.status) == ("busy", 486)

    # Bengt pauses (*46, "Pausad i kön."), Carol logs out (*45): nobody to ring, the
    # fallback comes at once, without ringing.
    heard = feature_code(service, "*46", BENGT, tmp_path)
    expected = speech_frames_of(["queue_paused"], "sv")
    assert abs(heard.speech_frames() - expected) <= 0.1 * expected + 5
    feature_code(service, "*45", CAROL, tmp_path)
    assert audit_actions(service, "1002") == ["queue_pause"]
    started = time.monotonic()
    caller = call(service, "queue_call_busy.xml", tmp_path, sink)
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    assert not received(caller, "SIP/2.0 180")
    assert time.monotonic() - started < RING_SECONDS
    assert idle(service), "call state left behind"


def test_a_forward_fallback_is_routed_like_any_forward(
    service: RunningService, sipp_binary: str, sink: RtpSink, tmp_path: Path
) -> None:
    # Support (2001): nobody registered → forward to 1000, whose plan ends in voicemail.
    result = call(service, "feature_code.xml", tmp_path, sink, callee="2001")
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert received(result, "SIP/2.0 200") and received(result, "BYE ")
    words = [*phrases.digits("1000"), "redirect_1", phrases.PAUSE, "leave_message", "beep"]
    expected = speech_frames_of(words, "sv")
    assert abs(sink.speech_frames() - expected) <= 0.05 * expected + 5, (
        sink.speech_frames(),
        expected,
    )
    assert idle(service), "call state left behind"
