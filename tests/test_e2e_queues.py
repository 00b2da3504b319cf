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
record (kind ``queue``). A member whose queue login names the mobile gets it rung through
the trunk (a SIPp UAS), showing the caller's caller-ID.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import StartIvr

from ivr.media import phrases
from ivr.store.sqlite import SqliteStore
from ivr.testing import devices
from ivr.testing.api import Client, add_token, idle
from ivr.testing.audit import audit_actions
from ivr.testing.demo_config import demo_config_text, write_config
from ivr.testing.devices import DOMAIN, next_workdir
from ivr.testing.rtp_sink import RtpSink, speech_frames_of
from ivr.testing.service import RunningService
from ivr.testing.sip_trace import header, received
from ivr.testing.sipp import Sipp, SippProcess, SippResult, free_port

pytestmark = pytest.mark.e2e

BENGT = ("1002", "bengt-desk-1002")
CAROL = ("1003", "carol-desk-1003")
SALES = "2002"
RING_SECONDS = 3


@pytest.fixture
def service(tmp_path: Path, start_ivr: StartIvr) -> RunningService:
    """The demo company; the sales queue rings 3 s and then answers busy."""
    text = demo_config_text(tmp_path)
    sales = text.index('id = "sales"\nnumber = "2002"')
    tail = text[sales:]
    tail = re.sub(r"ring_seconds = \d+", f"ring_seconds = {RING_SECONDS}", tail, count=1)
    tail = re.sub(r'fallback = "[^"]*"', 'fallback = "busy"', tail, count=1)
    return start_ivr(config=write_config(tmp_path, text[:sales] + tail), clean_log=True)


@pytest.fixture
def other() -> Iterator[RtpSink]:
    """The RTP port of a second device."""
    made = RtpSink()
    yield made
    made.close()


def device(
    service: RunningService, account: tuple[str, str], scenario: str, tmp: Path, sink: RtpSink
) -> SippProcess:
    """A SIPp UAS as the user's desk phone, registered at its address."""
    workdir = next_workdir(tmp, account[0])
    return devices.device(service, account, scenario, sink.port, workdir)


def call(
    service: RunningService, scenario: str, tmp: Path, sink: RtpSink, callee: str = SALES
) -> SippResult:
    """Anna's desk phone calls ``callee`` (a queue); waits until the call is over."""
    workdir = next_workdir(tmp, "caller")
    return devices.place_call(
        service, scenario, sink.port, workdir, callee, code=callee, max_forwards="70"
    )


def feature_code(
    service: RunningService, code: str, account: tuple[str, str], tmp: Path
) -> RtpSink:
    """The user dials a feature code from their desk phone; returns what they heard."""
    return devices.feature_code(service, code, account, next_workdir(tmp, "code"))


def api(
    service: RunningService, method: str, path: str, user: str | None, body: object = None
) -> tuple[int, Any]:
    """``/api/v1{path}`` with a bearer token of ``user`` (None: no token)."""
    token = None if user is None else add_token(service, user, label="queue test")
    data = None if body is None else json.dumps(body).encode()
    client = Client(service, token, timeout=5)
    answer = client.call(method, f"/api/v1{path}", data, content_type="application/json")
    return answer.status, json.loads(answer.body or b"null")


def only_bengt_rings(
    service: RunningService, tmp: Path, sink: RtpSink, other: RtpSink, why: str
) -> None:
    """Anna calls the queue: Bengt's desk rings and answers, Carol's (``why``) never rings."""
    bengt = device(service, BENGT, "b2b_device_answer.xml", tmp, sink)
    carol = device(service, CAROL, "b2b_device_ring.xml", tmp, other)
    caller = call(service, "b2b_call.xml", tmp, sink)
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    bengt_result = bengt.wait()
    carol.stop()
    assert bengt_result.returncode == 0, bengt_result.explain()
    assert received(bengt_result, "INVITE ")
    assert not received(carol.wait(), "INVITE "), why


def queue_records(
    service: RunningService, count: int, timeout: float = 5.0, queue: str = SALES
) -> list[Any]:
    """The queue calls' records, newest first, once ``count`` are written (bounded poll)."""
    deadline = time.monotonic() + timeout
    while True:
        with SqliteStore(service.db) as store:
            found = [r for r in store.call_records.list(user=queue) if r.kind == "queue"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


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
    # the logout that Lunch brought has its own entry, between the change and the *45
    assert audit_actions(service, "1003")[:3] == ["queue_login", "queue_logout", "activate"]

    only_bengt_rings(service, tmp_path, sink, other, "a member at lunch must not ring")
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

    only_bengt_rings(service, tmp_path, sink, other, "a logged-out member must not ring")
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


# -- members' mobiles (MEX) ------------------------------------------------------------

TRUNK_HOST = "127.0.0.2"


def test_a_queue_rings_a_member_s_mobile_through_the_trunk_when_their_login_names_it(
    tmp_path: Path, start_ivr: StartIvr, sipp_binary: str, sink: RtpSink, other: RtpSink
) -> None:
    # The standard profile logs into the queues ringing desk, softphone and mobile: Anna
    # (support, 2001) has a mobile device; no desk phone is registered, so only it rings.
    text = demo_config_text(tmp_path)
    login = 'queues = [{ queue = "*", ring = ["desk", "softphone"] }]'
    assert login in text
    text = text.replace(login, login.replace('"softphone"]', '"softphone", "mobile"]'), 1)
    port = free_port(TRUNK_HOST)
    service = start_ivr(
        "--trunk", f"sip:{TRUNK_HOST}:{port}", config=write_config(tmp_path, text), clean_log=True
    )
    uas = Sipp(
        scenario="trunk_uas.xml",
        local_host=TRUNK_HOST,
        local_port=port,
        keys={"rtp_port": str(other.port)},
        timeout=40,
        workdir=tmp_path / "trunk",
    ).start()
    workdir = next_workdir(tmp_path, "caller")
    caller = devices.place_call(service, "b2b_call.xml", sink.port, workdir, "2001", caller=CAROL)
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    mobile = uas.wait()
    assert mobile.returncode == 0, mobile.explain()
    (invite,) = received(mobile, "INVITE ")
    assert invite.startswith(f"INVITE sip:+46701740605@{TRUNK_HOST}:{port}")
    # Carol's caller-ID (her standard profile: the DID on the desk), Anna diverting.
    assert header(invite, "From").startswith(f'"Carol Clark" <sip:+46846500403@{DOMAIN}>')
    assert header(invite, "P-Asserted-Identity") == f"<sip:+46846500403@{DOMAIN}>"
    assert header(invite, "Diversion").startswith(f"<sip:+46846500401@{DOMAIN}>;reason=follow-me")
    assert f"m=audio {sink.port} " in invite, "the caller's offer, passed through"
    ok = next(m for m in received(caller, "SIP/2.0 200") if "INVITE" in header(m, "CSeq"))
    assert f"m=audio {other.port} " in ok
    assert idle(service), "call state left behind"
    (record,) = queue_records(service, 1, queue="2001")
    assert record.outcome == "answered", record
    assert [(leg.device, leg.answered) for leg in record.legs] == [("1001-mobile", True)]
