"""End to end: the edges of a feature-code call, driven by the real SIPp against `ivr serve`.

CANCEL before the answer, the caller's BYE in the middle of the prompt, an INVITE
without SDP (offer in the 200, answer in the ACK), an offer with no codec we support
(488 + Warning) and the whole call over TCP. Timing claims are checked against the
wall-clock timestamps of SIPp's message trace and of our own RTP receiver.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.media import phrases
from ivr.media.prompts import PromptLibrary
from ivr.store.sqlite import SqliteStore
from ivr.testing.service import RunningService
from ivr.testing.sipp import Sipp, SippResult

pytestmark = pytest.mark.e2e

DOMAIN = "ivr.local"
REPO = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Europe/Stockholm")
LIBRARY = PromptLibrary(REPO / "prompts")
SILENT = frozenset({0xD5, 0xFF, 0x55, 0x7F})  # G.711 codes at (or next to) zero
RTP_STOP = 0.1  # seconds: no RTP may arrive later than this after the caller's BYE


@dataclass(frozen=True, slots=True)
class Packet:
    """One received RTP packet: wall-clock arrival, source, header fields, payload."""

    at: float
    source: tuple[str, int]
    payload_type: int
    sequence: int
    payload: bytes

    @property
    def speech(self) -> bool:
        return bool(set(self.payload) - SILENT)


@dataclass
class RtpSink:
    """A UDP receiver standing in for the phone's RTP port (wall-clock timestamps)."""

    host: str = "127.0.0.1"
    packets: list[Packet] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            if len(data) >= 12:
                _, pt, seq = struct.unpack("!BBH", data[:4])
                self.packets.append(Packet(time.time(), source, pt & 0x7F, seq, data[12:]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def speech_frames(self) -> int:
        return sum(1 for p in self.packets if p.speech)


@dataclass(frozen=True, slots=True)
class Traced:
    """One SIP message from SIPp's ``-trace_msg`` file."""

    at: float  # wall clock (SIPp writes local time)
    transport: str
    sent: bool  # by SIPp
    start: str  # the request or status line
    headers: dict[str, list[str]]
    body: str

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower(), [])
        return values[0] if values else ""

    @property
    def cseq_method(self) -> str:
        return self.header("cseq").split()[-1] if self.header("cseq") else ""

    def is_response(self, status: int, method: str) -> bool:
        return self.start.startswith(f"SIP/2.0 {status} ") and self.cseq_method == method

    def is_request(self, method: str) -> bool:
        return self.start.startswith(f"{method} ")


_ENTRY = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n(UDP|TCP) message (sent|received)[^\n]*\n\n"
    r"(.*?)(?=^-{20,} |\Z)",
    re.M | re.S,
)


def trace(result: SippResult) -> list[Traced]:
    """Every message SIPp sent or received, in order."""
    out = []
    for stamp, transport, direction, text in _ENTRY.findall(result.messages.replace("\r\n", "\n")):
        head, _, body = text.strip("\n").partition("\n\n")
        start, *lines = head.split("\n")
        headers: dict[str, list[str]] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        out.append(Traced(at, transport, direction == "sent", start, headers, body.strip()))
    return out


def first(messages: list[Traced], match: Callable[[Traced], bool], what: str) -> Traced:
    """The first message that ``match``es (later ones may be retransmissions)."""
    found = [m for m in messages if match(m)]
    assert found, f"no {what} in the trace"
    return found[0]


def run(
    service: RunningService,
    scenario: str,
    sink: RtpSink,
    code: str,
    *,
    transport: str = "udp",
    user: str = "1001",
    password: str = "anna-desk-1001",
) -> SippResult:
    """Run one call of ``scenario`` as ``user``, media to ``sink``; wait until it ends."""
    keyword = f"[authentication username={user} password={password}]"
    return Sipp(
        scenario=scenario,
        remote=(service.host, service.sip_port),
        transport=transport,
        inf_rows=[[user, keyword, DOMAIN]],
        keys={"code": code, "rtp_port": str(sink.port)},
        timeout=20,
    )()


def idle(service: RunningService, timeout: float = 3.0) -> bool:
    """Bounded polling until the service reports no active call."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = service.get_json("/health")
        assert status == 200 and isinstance(body, dict), (status, body)
        if body["active_calls"] == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def profile(service: RunningService, ext: str = "1001") -> dict[str, object]:
    """GET /api/users/{ext}/profile."""
    status, view = service.get_json(f"/api/users/{ext}/profile")
    assert status == 200 and isinstance(view, dict), (status, view)
    return view


def audit_actions(service: RunningService, user: str = "1001") -> list[str]:
    """The audit trail's actions for ``user``, newest first."""
    with SqliteStore(service.db) as store:
        return [entry.action for entry in store.audit.query(user=user)]


def frames_of(words: list[str], lang: str = "sv", codec: str = "PCMA") -> int:
    """How many 20 ms frames of the prompt sequence carry sound (as ``speech`` counts)."""
    audio = b"".join(LIBRARY.encoded(lang, w, codec) for w in words)
    return sum(1 for i in range(0, len(audio), 160) if set(audio[i : i + 160]) - SILENT)


def lunch_words(view: dict[str, object], now: datetime) -> list[str]:
    """The confirmation of *23*2*1300# for the stored end time."""
    until = datetime.fromisoformat(str(view["until"]))
    return phrases.activated(2, until, now, "sv")


@pytest.fixture
def sink() -> Iterator[RtpSink]:
    receiver = RtpSink()
    yield receiver
    receiver.close()


def test_cancel_right_after_100_trying_leaves_no_call(
    service: RunningService, sipp_binary: str, sink: RtpSink
) -> None:
    result = run(service, "feature_code_cancel.xml", sink, "*23*2*1300%23")
    assert result.returncode == 0 and result.successful == 1, result.explain()
    log = trace(result)
    cancel = first(log, lambda m: m.sent and m.is_request("CANCEL"), "CANCEL")
    invite = [m for m in log if m.sent and m.is_request("INVITE")][-1]
    assert cancel.header("via") == invite.header("via"), "CANCEL must reuse the INVITE's branch"

    if any(m.is_response(487, "INVITE") for m in log):  # the CANCEL won
        first(log, lambda m: not m.sent and m.is_response(200, "CANCEL"), "200 to the CANCEL")
        terminated = first(log, lambda m: m.is_response(487, "INVITE"), "487")
        assert not any(m.is_response(200, "INVITE") for m in log), "answered after 487"
        assert not any(not m.sent and m.is_request("BYE") for m in log), "BYE without a dialog"
        late = [p.at - terminated.at for p in sink.packets if p.at > terminated.at + RTP_STOP]
        assert not late, f"RTP went on after the 487: {late[:5]}"
        print(f"CANCEL won: 487 after {terminated.at - cancel.at:.4f} s")
    else:  # the 200 was already on its way: the CANCEL gets 481, we hang up
        first(log, lambda m: not m.sent and m.is_response(481, "CANCEL"), "481 to the CANCEL")
        first(log, lambda m: not m.sent and m.is_response(200, "BYE"), "200 to our BYE")
        print("CANCEL lost the race: 481, then BYE")

    assert idle(service), "a call was left behind"
    actions = audit_actions(service)
    view = profile(service)
    # executed at most once, and the stored state agrees with the audit trail
    assert actions in ([], ["activate"]), actions
    assert (view["profile"] == "lunch") == (actions == ["activate"]), (view, actions)


def test_cancel_after_the_200_gets_481_and_the_call_goes_on(
    service: RunningService, sipp_binary: str, sink: RtpSink
) -> None:
    result = run(service, "feature_code_cancel_late.xml", sink, "*23*2*1300%23")
    assert result.returncode == 0 and result.successful == 1, result.explain()
    log = trace(result)
    answered = first(log, lambda m: m.is_response(200, "INVITE"), "200 to the INVITE")
    first(log, lambda m: not m.sent and m.is_response(481, "CANCEL"), "481 to the late CANCEL")
    assert not any(m.is_response(487, "INVITE") for m in log)
    bye = first(log, lambda m: m.sent and m.is_request("BYE"), "our BYE")
    assert bye.header("to") == answered.header("to"), "the dialog kept the 200's To tag"
    first(log, lambda m: not m.sent and m.is_response(200, "BYE"), "200 to our BYE")
    assert not any(not m.sent and m.is_request("BYE") for m in log), "the server sent a BYE too"
    assert not [p for p in sink.packets if p.at > bye.at + RTP_STOP], "RTP went on after BYE"
    assert idle(service), "a call was left behind"
    assert profile(service)["profile"] == "lunch"
    assert audit_actions(service) == ["activate"]


def test_caller_bye_mid_prompt_is_answered_and_stops_rtp_at_once(
    service: RunningService, sipp_binary: str, sink: RtpSink
) -> None:
    now = datetime.now(TZ)
    result = run(service, "feature_code_bye.xml", sink, "*23*2*1300%23")
    assert result.returncode == 0 and result.successful == 1, result.explain()
    log = trace(result)
    ack = [m for m in log if m.sent and m.start.startswith("ACK ")][-1]
    bye = first(log, lambda m: m.sent and m.is_request("BYE"), "BYE from us")
    ok = first(log, lambda m: not m.sent and m.is_response(200, "BYE"), "200 to our BYE")
    assert not any(not m.sent and m.is_request("BYE") for m in log), "the server sent a BYE too"
    assert ok.at - bye.at < RTP_STOP, f"200 to BYE took {ok.at - bye.at:.3f} s"

    before = [p for p in sink.packets if ack.at <= p.at <= bye.at and p.speech]
    assert len(before) >= 40, f"only {len(before)} speech frames before the BYE"
    after = [p.at - bye.at for p in sink.packets if p.at > bye.at + RTP_STOP]
    assert not after, f"RTP went on after the BYE: first at +{after[0]:.3f} s ({len(after)})"
    last = max(p.at for p in sink.packets)
    print(f"last RTP {last - bye.at:+.4f} s after the BYE; 200 after {ok.at - bye.at:.4f} s")

    view = profile(service)
    assert (view["profile"], view["source"]) == ("lunch", "manual")  # stored before the answer
    assert sink.speech_frames() < frames_of(lunch_words(view, now)) - 25, "the prompt ran on"
    assert idle(service), "the call was not released"
    assert audit_actions(service) == ["activate"]


def test_invite_without_sdp_gets_offer_in_200_and_answer_in_ack(
    service: RunningService, sipp_binary: str, sink: RtpSink
) -> None:
    now = datetime.now(TZ)
    result = run(service, "feature_code_nosdp.xml", sink, "*23*2*1300%23")
    assert result.returncode == 0 and result.successful == 1, result.explain()
    log = trace(result)
    answered = first(log, lambda m: m.is_response(200, "INVITE"), "200 to the INVITE")
    assert answered.header("content-type") == "application/sdp"
    offer = answered.body
    media = re.search(r"^m=audio (\d+) RTP/AVP ([\d ]+)$", offer, re.M)
    assert media, offer
    formats = media.group(2).split()
    assert {"0", "8"} <= set(formats), f"an offer must name PCMU and PCMA: {formats}"
    assert re.search(r"^c=IN IP4 127\.0\.0\.1$", offer, re.M), offer
    assert re.search(r"^a=rtpmap:(\d+) telephone-event/8000$", offer, re.M), offer
    ack = first(log, lambda m: m.sent and m.is_request("ACK") and "m=audio" in m.body, "ACK+SDP")
    first(log, lambda m: not m.sent and m.is_request("BYE"), "the server's BYE")

    assert sink.packets, "no RTP arrived"
    assert {p.payload_type for p in sink.packets} == {8}, "our answer chose PCMA only"
    assert {p.source for p in sink.packets} == {("127.0.0.1", int(media.group(1)))}, (
        "RTP must come from the port the offer named"
    )
    assert min(p.at for p in sink.packets) >= ack.at, "RTP before the answer told where to"
    view = profile(service)
    expected = frames_of(lunch_words(view, now))
    assert abs(sink.speech_frames() - expected) <= 0.1 * expected + 5, (
        sink.speech_frames(),
        expected,
    )
    assert idle(service)


def test_offer_with_only_g722_gets_488_with_warning_and_no_change(
    service: RunningService, sipp_binary: str, sink: RtpSink
) -> None:
    result = run(service, "feature_code_488.xml", sink, "*23*2*1300%23")
    assert result.returncode == 0 and result.successful == 1, result.explain()
    log = trace(result)
    refused = first(log, lambda m: m.is_response(488, "INVITE"), "488")
    warning = refused.header("warning")
    assert re.fullmatch(r'30[45] \S+ "[^"]+"', warning), f"Warning: {warning!r}"
    assert warning.startswith("305 "), "G.722 over RTP/AVP is an incompatible media format"
    assert not any(m.start.startswith("SIP/2.0 200") for m in log)
    first(log, lambda m: m.sent and m.is_request("ACK") and m.header("cseq") == "2 ACK", "ACK")

    view = profile(service)
    assert view["source"] == "standard" and view["profile"] == "available", view
    assert audit_actions(service) == []
    assert not sink.packets, "media was sent for a refused call"
    assert idle(service)


def test_feature_code_call_over_tcp(
    service: RunningService, sipp_binary: str, sink: RtpSink
) -> None:
    now = datetime.now(TZ)
    result = run(service, "feature_code.xml", sink, "*23*3%23", transport="tcp")
    assert result.returncode == 0 and result.successful == 1, result.explain()
    log = trace(result)
    assert log and {m.transport for m in log} == {"TCP"}, "every message must go over TCP"
    first(log, lambda m: m.is_response(407, "INVITE"), "407 challenge")
    answered = first(log, lambda m: m.is_response(200, "INVITE"), "200 to the INVITE")
    assert ";transport=tcp" in answered.header("contact").lower(), answered.header("contact")
    bye = first(log, lambda m: not m.sent and m.is_request("BYE"), "the server's BYE")
    assert bye.header("via").upper().startswith("SIP/2.0/TCP "), bye.header("via")

    assert {p.payload_type for p in sink.packets} == {8}, "PCMA was offered first"
    expected = frames_of(phrases.activated(3, None, now, "sv"))
    assert abs(sink.speech_frames() - expected) <= 0.1 * expected + 5, (
        sink.speech_frames(),
        expected,
    )
    view = profile(service)
    assert (view["profile"], view["source"], view["until"]) == ("meeting", "manual", None)
    assert audit_actions(service) == ["activate"]
    assert idle(service)
