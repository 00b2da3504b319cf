"""End to end: the edges of a feature-code call, driven by the real SIPp against `ivr serve`.

CANCEL before the answer, the caller's BYE in the middle of the prompt, an INVITE
without SDP (offer in the 200, answer in the ACK), an offer with no codec we support
(488 + Warning) and the whole call over TCP. Timing claims are checked against the
wall-clock timestamps of SIPp's message trace and of our own RTP receiver.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.media import phrases
from ivr.testing.api import idle, profile
from ivr.testing.audit import audit_actions as audit_log_actions
from ivr.testing.devices import auth_row
from ivr.testing.polling import poll
from ivr.testing.rtp_sink import RtpSink, speech_frames_of
from ivr.testing.service import RunningService
from ivr.testing.sipp import Sipp, SippResult

pytestmark = pytest.mark.e2e

TZ = ZoneInfo("Europe/Stockholm")
WAIT = 3.0  # seconds of bounded polling for the service's state
RTP_STOP = 0.1  # seconds: no RTP may arrive later than this after the caller's BYE


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
    return Sipp(
        scenario=scenario,
        remote=(service.host, service.sip_port),
        transport=transport,
        inf_rows=[auth_row(user, password)],
        keys={"code": code, "rtp_port": str(sink.port)},
        timeout=20,
    )()


def audit_actions(service: RunningService, user: str = "1001") -> list[str]:
    """The profile changes in ``user``'s audit trail, newest first (no queue logouts)."""
    return audit_log_actions(service, user, queues=False)


def lunch_words(view: dict[str, object], now: datetime) -> list[str]:
    """The confirmation of *23*2*1300# for the stored end time."""
    until = datetime.fromisoformat(str(view["until"]))
    return phrases.activated(2, until, now, "sv")


def next_at(now: datetime, hour: int, minute: int) -> datetime:
    """The next HH:MM (Stockholm time) strictly after ``now``."""
    moment = datetime.combine(now.date(), clock_time(hour, minute), tzinfo=TZ)
    return moment if moment > now else moment + timedelta(days=1)


def test_bye_before_the_ack_changes_nothing(
    service: RunningService, sipp_binary: str, sink: RtpSink
) -> None:
    """The caller hangs up on our 200 without confirming it: no change, no prompt."""
    result = run(service, "feature_code_bye_before_ack.xml", sink, "*23*2*1300%23")
    assert result.returncode == 0 and result.successful == 1, result.explain()
    log = trace(result)
    first(log, lambda m: not m.sent and m.is_response(200, "INVITE"), "the 200")
    bye = first(log, lambda m: m.sent and m.is_request("BYE"), "the caller's BYE")
    first(log, lambda m: not m.sent and m.is_response(200, "BYE"), "200 to the BYE")
    assert not any(not m.sent and m.is_request("BYE") for m in log), "the server sent a BYE"
    assert not [p for p in sink.packets if p.at > bye.at + RTP_STOP], "RTP after the BYE"
    assert idle(service, WAIT), "a call was left behind"
    time.sleep(0.3)  # a store started by mistake would have landed by now
    view = profile(service, "1001")
    assert (view["profile"], view["source"]) == ("available", "standard"), view
    assert audit_actions(service) == []


def test_info_digit_before_the_ack_is_delivered(
    service: RunningService, sipp_binary: str, tmp_path: Path
) -> None:
    """*23 menu: the first key comes as SIP INFO between our 200 and the ACK (RFC 3261 §12:
    the dialog exists once the 200 is sent). It is answered 200 and counts: 3 (meeting),
    then 1430# after the ACK, sets Möte until 14:30."""
    before = datetime.now(TZ)
    digits = dict(zip(("d1", "d2", "d3", "d4", "d5", "d6"), "31430#", strict=True))
    result = Sipp(
        scenario="menu_info_early.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[auth_row("1001", "anna-desk-1001")],
        keys={"code": "*23", **digits},
        timeout=30,
        workdir=tmp_path,
    )()
    after = datetime.now(TZ)
    assert result.returncode == 0 and result.successful == 1, result.explain()
    log = trace(result)
    early = first(log, lambda m: m.sent and m.is_request("INFO"), "the early INFO")
    ack = first(log, lambda m: m.sent and m.header("cseq") == "2 ACK", "the ACK of the 200")
    assert early.at <= ack.at, "the INFO must precede the ACK of the 200"
    first(log, lambda m: not m.sent and m.is_request("BYE"), "the server's BYE")
    infos = [m for m in log if not m.sent and m.is_response(200, "INFO")]
    assert len(infos) == 6, [m.start for m in log]
    meeting = poll(lambda: profile(service, "1001")["profile"] == "meeting", WAIT)
    assert meeting, profile(service, "1001")
    view = profile(service, "1001")
    assert (view["source"], view["set_via"]) == ("manual", "ivr"), view
    until = datetime.fromisoformat(str(view["until"]))
    assert until in {next_at(before, 14, 30), next_at(after, 14, 30)}, until
    assert audit_actions(service) == ["activate"]


def test_cancel_after_the_200_gets_481_and_the_call_goes_on(
    service: RunningService, sipp_binary: str, sink: RtpSink
) -> None:
    """A feature call is answered at once (no 100 Trying: §17.2.1), so a CANCEL always
    meets our 200: 481, and the call goes on. The change is made once, on the ACK."""
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
    assert idle(service, WAIT), "a call was left behind"
    assert profile(service, "1001")["profile"] == "lunch"
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

    view = profile(service, "1001")
    assert (view["profile"], view["source"]) == ("lunch", "manual")  # stored on the ACK
    assert sink.speech_frames() < speech_frames_of(lunch_words(view, now)) - 25, "the prompt ran on"
    assert idle(service, WAIT), "the call was not released"
    assert audit_actions(service) == ["activate"]


def test_caller_bye_during_the_voicemail_greeting_gets_no_bye_back(
    service: RunningService, sipp_binary: str, sink: RtpSink
) -> None:
    # Carol has no registered device: her voicemail greeting answers at once.
    result = run(service, "feature_code_bye.xml", sink, "1003")
    # a BYE of ours would follow our 200 at once, inside the scenario's last pause
    assert result.returncode == 0 and result.successful == 1, result.explain()
    log = trace(result)
    first(log, lambda m: not m.sent and m.is_response(200, "BYE"), "200 to our BYE")
    assert not any(not m.sent and m.is_request("BYE") for m in log), "the server sent a BYE too"
    assert idle(service, WAIT), "the call was not released"


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
    view = profile(service, "1001")
    expected = speech_frames_of(lunch_words(view, now))
    assert abs(sink.speech_frames() - expected) <= 0.1 * expected + 5, (
        sink.speech_frames(),
        expected,
    )
    assert idle(service, WAIT)


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

    view = profile(service, "1001")
    assert view["source"] == "standard" and view["profile"] == "available", view
    assert audit_actions(service) == []
    assert not sink.packets, "media was sent for a refused call"
    assert idle(service, WAIT)


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
    expected = speech_frames_of(phrases.activated(3, None, now, "sv"))
    assert abs(sink.speech_frames() - expected) <= 0.1 * expected + 5, (
        sink.speech_frames(),
        expected,
    )
    view = profile(service, "1001")
    assert (view["profile"], view["source"], view["until"]) == ("meeting", "manual", None)
    assert audit_actions(service) == ["activate"]
    assert idle(service, WAIT)
