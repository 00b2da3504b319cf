"""End to end: calls to a user through `ivr serve`, with real SIPp on every side.

Two SIPp UAS processes are Bengt's (1002) desk phone and softphone: each is registered
with digest auth (a SIPp REGISTER naming the UAS's address as Contact) and then waits
for INVITEs. A SIPp UAC is Anna's (1001) desk phone calling ``1002``. Tillgänglig:
both devices ring, the desk answers, the softphone gets CANCEL, RTP flows between the
caller and the desk (each side plays a capture to the SDP it was given), BYE is relayed;
the caller's CANCEL cancels both devices; no answer within the (shortened) ring time
goes to voicemail, where the caller's tone ends up in a WAV. Stör ej: 486. Lunch: the
caller gets 200 and hears the redirect, then voicemail's prompt and beep, then BYE.
Nobody registered (1003): voicemail at once, in English. A forwarding loop
1002 → 1003 → 1002 ends with 482, Max-Forwards 1 with 483.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import soundfile as sf
from conftest import StartIvr

from ivr.media import phrases
from ivr.media.prompts import PromptLibrary
from ivr.store.sqlite import SqliteStore
from ivr.testing import devices
from ivr.testing.api import idle
from ivr.testing.demo_config import demo_config_text, replace_after, write_config
from ivr.testing.devices import ANNA, TONE_FRAMES, next_workdir
from ivr.testing.devices import auth_row as row
from ivr.testing.pcap import RtpStream
from ivr.testing.rtp_sink import RtpSink, speech_frames_of
from ivr.testing.service import RunningService
from ivr.testing.sip_trace import header, received
from ivr.testing.sipp import Sipp, SippProcess, SippResult

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Europe/Stockholm")
CAROL = ("1003", "carol-desk-1003")
DESK = ("1002", "bengt-desk-1002")
SOFT = ("1002-soft", "bengt-soft-1002")
PCAP_FRAMES = TONE_FRAMES  # 0.6 s of tone from each side


@pytest.fixture
def service(tmp_path: Path, start_ivr: StartIvr) -> RunningService:
    """The demo company with a 3 s ring time, recordings in ``tmp_path``, and Tjänsteresa
    forwarding to 1003, Semester to 1002 (a loop, for users who pick both)."""
    text = demo_config_text(tmp_path)
    text = text.replace("ring_seconds = 25", "ring_seconds = 3", 1)
    redirect = 'then = ["redirect", "voicemail"]'
    text = replace_after(text, 'id = "trip"', redirect, 'then = "forward:1003"')
    text = replace_after(text, 'id = "vacation"', redirect, 'then = "forward:1002"')
    return start_ivr(config=write_config(tmp_path, text), clean_log=True)


@pytest.fixture
def sinks() -> Iterator[dict[str, RtpSink]]:
    made = {name: RtpSink() for name in ("caller", "desk", "soft")}
    yield made
    for sink in made.values():
        sink.close()


def device(
    service: RunningService, account: tuple[str, str], scenario: str, sink: RtpSink, tmp: Path
) -> SippProcess:
    """A SIPp UAS for one of the user's devices, registered at its address."""
    return devices.device(service, account, scenario, sink.port, tmp / account[0])


def call(
    service: RunningService,
    scenario: str,
    sink: RtpSink,
    tmp: Path,
    callee: str = "1002",
    **keys: str,
) -> SippResult:
    """Anna's desk phone calls ``callee``; waits until the call is over."""
    return devices.place_call(
        service, scenario, sink.port, next_workdir(tmp, "caller"), callee, **keys
    )


def refused(
    service: RunningService, sink: RtpSink, tmp: Path, callee: str = "1002", max_forwards: int = 70
) -> int:
    """Call ``callee`` expecting a refusal; returns its status."""
    result = call(
        service, "b2b_call_refused.xml", sink, tmp, callee, max_forwards=str(max_forwards)
    )
    assert result.returncode == 0 and result.successful == 1, result.explain()
    finals = [m for m in received(result, "SIP/2.0 4") if not m.startswith("SIP/2.0 407")]
    assert len({m.split("\n")[0] for m in finals}) == 1, finals
    return int(finals[0].split()[1])


def feature_code(service: RunningService, code: str, account: tuple[str, str], tmp: Path) -> None:
    """The user sets their profile from their desk phone."""
    devices.feature_code(service, code, account, next_workdir(tmp, "code"))


def next_1300(now: datetime) -> datetime:
    moment = datetime.combine(now.date(), clock_time(13, 0), tzinfo=TZ)
    return moment if moment > now else moment + timedelta(days=1)


def test_available_forks_first_answer_wins_media_flows_bye_relayed(
    service: RunningService, sipp_binary: str, sinks: dict[str, RtpSink], tmp_path: Path
) -> None:
    desk = device(service, DESK, "b2b_device_answer.xml", sinks["desk"], tmp_path)
    soft = device(service, SOFT, "b2b_device_ring.xml", sinks["soft"], tmp_path)
    caller = call(service, "b2b_call.xml", sinks["caller"], tmp_path)
    desk_result, soft_result = desk.wait(), soft.wait()
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    assert desk_result.returncode == 0, desk_result.explain()
    assert soft_result.returncode == 0, soft_result.explain()

    # Both devices got their own INVITE: new Call-IDs, our Via only, Max-Forwards 69.
    (desk_invite,) = received(desk_result, "INVITE ")
    (soft_invite,) = received(soft_result, "INVITE ")
    caller_call_id = header(received(caller, "SIP/2.0 200")[0], "Call-ID")
    ids = {header(m, "Call-ID") for m in (desk_invite, soft_invite)}
    assert len(ids) == 2 and caller_call_id not in ids
    for invite in (desk_invite, soft_invite):
        assert header(invite, "Max-Forwards") == "69"
        assert f"127.0.0.1:{service.sip_port};branch=z9hG4bK" in header(invite, "Via")
        assert "SIPpTag00" not in header(invite, "From")  # a new From-tag per leg
        assert f"m=audio {sinks['caller'].port} " in invite  # the caller's SDP, passed through
    assert desk_invite.startswith("INVITE sip:1002@127.0.0.1:")
    assert soft_invite.startswith("INVITE sip:1002-soft@127.0.0.1:")

    # The caller heard the ringing and got the desk's SDP in the 200; the softphone a CANCEL.
    assert received(caller, "SIP/2.0 180")
    ok = next(m for m in received(caller, "SIP/2.0 200") if "INVITE" in header(m, "CSeq"))
    assert f"m=audio {sinks['desk'].port} " in ok
    assert received(soft_result, "CANCEL ") and received(soft_result, "ACK ")
    assert not received(soft_result, "BYE ")

    # Media flowed end to end, both ways, and not to the device that lost.
    assert sinks["desk"].ssrcs() == {0xCA11}, "the caller's audio reaches the desk"
    assert sinks["caller"].ssrcs() == {0xDE5C}, "the desk's audio reaches the caller"
    assert abs(len(sinks["desk"].packets) - PCAP_FRAMES) <= 2
    assert abs(len(sinks["caller"].packets) - PCAP_FRAMES) <= 2
    assert sinks["soft"].packets == []

    # The caller's BYE reached the desk, in the desk's dialog.
    (bye,) = received(desk_result, "BYE ")
    assert header(bye, "Call-ID") == header(desk_invite, "Call-ID")
    assert idle(service), "call state left behind"


def test_the_device_hanging_up_ends_the_caller_s_call(
    service: RunningService, sipp_binary: str, sinks: dict[str, RtpSink], tmp_path: Path
) -> None:
    desk = device(service, DESK, "b2b_device_hangup.xml", sinks["desk"], tmp_path)
    caller = call(service, "b2b_call_listen.xml", sinks["caller"], tmp_path)
    desk_result = desk.wait()
    assert desk_result.returncode == 0, desk_result.explain()
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    (bye,) = received(caller, "BYE ")
    assert header(bye, "Call-ID") == header(received(caller, "SIP/2.0 200")[0], "Call-ID")
    assert sinks["caller"].ssrcs() == {0xDE5C} and sinks["desk"].ssrcs() == {0xCA11}
    assert idle(service), "call state left behind"


def test_a_call_longer_than_max_call_seconds_is_ended_on_both_sides(
    tmp_path: Path, start_ivr: StartIvr, sipp_binary: str, sinks: dict[str, RtpSink]
) -> None:
    """Neither side hangs up (as if a phone vanished without BYE): after
    ``max_call_seconds`` the service sends BYE to both and forgets the call."""
    text = demo_config_text(tmp_path)
    limited = text.replace("max_call_seconds = 43200", "max_call_seconds = 2", 1)
    assert limited != text
    service = start_ivr(config=write_config(tmp_path, limited), clean_log=True)
    desk = device(service, DESK, "b2b_device_answer.xml", sinks["desk"], tmp_path)
    started = time.monotonic()
    caller = call(service, "b2b_call_listen.xml", sinks["caller"], tmp_path)
    lasted = time.monotonic() - started
    desk_result = desk.wait()
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    assert desk_result.returncode == 0, desk_result.explain()
    (to_caller,) = received(caller, "BYE ")
    (to_desk,) = received(desk_result, "BYE ")
    assert header(to_caller, "Call-ID") == header(received(caller, "SIP/2.0 200")[0], "Call-ID")
    assert header(to_desk, "Call-ID") == header(received(desk_result, "INVITE ")[0], "Call-ID")
    assert 2.0 <= lasted < 10.0, lasted  # the desk answers after ~1 s of ringing
    assert idle(service), "call state left behind"


def test_do_not_disturb_is_busy(
    service: RunningService, sipp_binary: str, sinks: dict[str, RtpSink], tmp_path: Path
) -> None:
    feature_code(service, "*78", DESK, tmp_path)
    assert service.get_json("/api/users/1002/profile")[1]["profile"] == "dnd"
    # Extension, direct number (E.164 and national) and mobile number all reach Bengt.
    for dialled in ("1002", "+46846500402", "0846500402", "0701740606"):
        assert refused(service, sinks["caller"], tmp_path, dialled) == 486, dialled
    assert idle(service), "call state left behind"


def test_a_forwarding_loop_ends_with_482_and_max_forwards_with_483(
    service: RunningService, sipp_binary: str, sinks: dict[str, RtpSink], tmp_path: Path
) -> None:
    feature_code(service, "*23*6%23", DESK, tmp_path)  # Tjänsteresa: forward to 1003
    feature_code(service, "*23*7%23", CAROL, tmp_path)  # Semester: forward to 1002
    assert service.get_json("/api/users/1002/profile")[1]["profile"] == "trip"
    assert service.get_json("/api/users/1003/profile")[1]["profile"] == "vacation"
    assert refused(service, sinks["caller"], tmp_path) == 482
    assert refused(service, sinks["caller"], tmp_path, max_forwards=1) == 483
    assert idle(service), "call state left behind"


def test_caller_cancel_cancels_every_device(
    service: RunningService, sipp_binary: str, sinks: dict[str, RtpSink], tmp_path: Path
) -> None:
    desk = device(service, DESK, "b2b_device_ring.xml", sinks["desk"], tmp_path)
    soft = device(service, SOFT, "b2b_device_ring.xml", sinks["soft"], tmp_path)
    caller = call(service, "b2b_call_cancel.xml", sinks["caller"], tmp_path)
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    for result in (desk.wait(), soft.wait()):
        assert result.returncode == 0, result.explain()
        assert received(result, "CANCEL ") and not received(result, "BYE ")
    assert idle(service), "call state left behind"


def test_no_answer_goes_to_voicemail_and_the_caller_s_words_are_kept(
    service: RunningService, sipp_binary: str, sinks: dict[str, RtpSink], tmp_path: Path
) -> None:
    soft = device(service, SOFT, "b2b_device_ring.xml", sinks["soft"], tmp_path)
    library = PromptLibrary(REPO / "prompts")
    greeting = [*phrases.digits("1002"), "redirect_1", phrases.PAUSE, "leave_message", "beep"]
    lead = sum(library.duration("sv", w) for w in greeting) + 0.6
    workdir = tmp_path / "vm-caller"
    workdir.mkdir()
    t = np.arange(16000) / 8000
    tone = (8000 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.int16)
    RtpStream(codec="PCMA", ssrc=0xCA11).silence(lead * 1000).pcm(tone).write(
        workdir / "caller.pcap"
    )
    started = time.monotonic()
    result = Sipp(
        scenario="b2b_call_listen.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[row(*ANNA)],
        keys={"callee": "1002", "rtp_port": str(sinks["caller"].port)},
        timeout=40,
        workdir=workdir,
    )()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    soft_result = soft.wait()
    assert received(soft_result, "CANCEL "), "the ringing device is cancelled at the timeout"
    assert received(result, "SIP/2.0 180"), "the caller heard ringing first"
    assert time.monotonic() - started > 3.0  # the ring time

    with SqliteStore(service.db, recordings_dir=tmp_path / "recordings") as store:
        (message,) = store.voicemail.list("1002")
        path = store.voicemail.file(message)
    assert (message.caller, message.called) == ("1001", "1002")
    assert 1.8 <= message.duration <= 3.5, message
    data, rate = sf.read(str(path), dtype="int16")
    assert rate == 8000
    frames = data[: len(data) // 160 * 160].reshape(-1, 160).astype(float)
    loud = np.sqrt((frames**2).mean(axis=1)) > 1000
    assert abs(int(loud.sum()) - 100) <= 2, "the 2 s tone SIPp sent after the beep"
    spectrum = np.abs(np.fft.rfft(frames[loud].ravel()))
    assert abs(np.argmax(spectrum) * 8000 / (160 * loud.sum()) - 1000) < 10
    assert idle(service), "call state left behind"


def test_lunch_answers_with_the_spoken_redirect_then_voicemail(
    service: RunningService, sipp_binary: str, sinks: dict[str, RtpSink], tmp_path: Path
) -> None:
    feature_code(service, "*23*2*1300%23", DESK, tmp_path)
    assert service.get_json("/api/users/1002/profile")[1]["profile"] == "lunch"
    # A registered device must not ring: Lunch goes straight to the redirect.
    soft = device(service, SOFT, "b2b_device_ring.xml", sinks["soft"], tmp_path)
    now = datetime.now(TZ)
    result = Sipp(
        scenario="feature_code.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[row(*ANNA)],
        keys={"code": "1002", "rtp_port": str(sinks["caller"].port)},
        timeout=40,
        workdir=tmp_path / "lunch-caller",
    )()
    soft.stop()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert received(result, "SIP/2.0 200") and received(result, "BYE ")
    assert not received(soft.wait(), "INVITE ")

    redirect = phrases.redirect("1002", 2, next_1300(now), now, "sv")
    words = [*redirect, "leave_message", "beep"]  # then silence: nothing recorded, BYE
    expected = speech_frames_of(words)
    heard = sinks["caller"].speech_frames()
    assert abs(heard - expected) <= 0.05 * expected + 5, (heard, expected, words)
    assert heard > speech_frames_of([*redirect, "leave_message"]) - 5
    assert idle(service), "call state left behind"


def test_nobody_registered_goes_to_voicemail_at_once_in_the_user_s_language(
    service: RunningService, sipp_binary: str, sinks: dict[str, RtpSink], tmp_path: Path
) -> None:
    result = Sipp(
        scenario="feature_code.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[row(*ANNA)],
        keys={"code": "1003", "rtp_port": str(sinks["caller"].port)},
        timeout=40,
        workdir=tmp_path / "caller",
    )()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert not received(result, "SIP/2.0 180"), "nothing to ring"
    words = [*phrases.digits("1003"), "redirect_1", phrases.PAUSE, "leave_message", "beep"]
    expected = speech_frames_of(words, lang="en")
    heard = sinks["caller"].speech_frames()
    assert abs(heard - expected) <= 0.05 * expected + 5, (heard, expected)
    assert idle(service), "call state left behind"
