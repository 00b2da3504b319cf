"""End to end: a call's record, read over the HTTP API after real SIPp calls.

SIPp UAS processes are Bengt's (1002) desk phone and softphone, registered with digest
auth; a SIPp UAC is Anna's (1001) desk phone. (1) Both devices ring, the desk answers,
the softphone is CANCELled, the caller hangs up: the record says answered, with both
legs (desk 200 answered, softphone 487), the routing trace and each step. (2) Nobody
answers within the (shortened) ring time: no answer → voicemail, legs 408, the caller's
message kept. (3) Stör ej, set over the API, and a call to the direct number: busy, 486,
with the profile that decided it. Users read their own calls only (``/api/calls`` as in
the issue, and ``/api/v1/calls``); an admin reads everyone's.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from conftest import StartIvr

from ivr.media import phrases
from ivr.media.prompts import PromptLibrary
from ivr.store.sqlite import SqliteStore
from ivr.testing.api import add_token, metric
from ivr.testing.demo_config import demo_config_text, write_config
from ivr.testing.devices import ANNA, auth_row, tone_capture
from ivr.testing.pcap import RtpStream
from ivr.testing.service import RunningService
from ivr.testing.sipp import Sipp, SippProcess, SippResult, free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Europe/Stockholm")
DESK = ("1002", "bengt-desk-1002")
SOFT = ("1002-soft", "bengt-soft-1002")


@pytest.fixture
def service(start_ivr: StartIvr, tmp_path: Path) -> RunningService:
    """The demo company with a 3 s ring time and recordings in ``tmp_path``."""
    text = demo_config_text(tmp_path).replace("ring_seconds = 25", "ring_seconds = 3", 1)
    return start_ivr(config=write_config(tmp_path, text), clean_log=True)


def get(service: RunningService, path: str, bearer: str) -> tuple[int, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{service.http_port}{path}",
        headers={"Authorization": f"Bearer {bearer}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def records(service: RunningService, bearer: str, want: int, timeout: float = 5.0) -> list[dict]:
    """Bengt's records, polled (bounded) until ``want`` are written."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = get(service, "/api/calls?user=1002", bearer)
        assert status == 200 and isinstance(body, list), (status, body)
        if len(body) >= want or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def device(
    service: RunningService, account: tuple[str, str], scenario: str, tmp: Path
) -> SippProcess:
    """A SIPp UAS for one of Bengt's devices, registered at its address."""
    user, password = account
    workdir = tmp / user
    workdir.mkdir()
    tone_capture(workdir / "device.pcap", 440.0, 0xDE5C)
    port = free_port()
    uas = Sipp(
        scenario=scenario,
        local_port=port,
        keys={"user": user, "rtp_port": str(free_port())},
        timeout=30,
        workdir=workdir,
    ).start()
    registered = Sipp(
        scenario="b2b_register.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[auth_row(user, password)],
        keys={"contact_port": str(port)},
        timeout=10,
        workdir=tmp / f"{user}-register",
    )()
    assert registered.returncode == 0 and registered.successful == 1, registered.explain()
    return uas


def call(service: RunningService, scenario: str, tmp: Path, capture: Path) -> SippResult:
    """Anna's desk phone calls 1002 and plays ``capture``; waits until the call is over."""
    workdir = tmp / "caller"
    workdir.mkdir()
    (workdir / "caller.pcap").write_bytes(capture.read_bytes())
    return Sipp(
        scenario=scenario,
        remote=(service.host, service.sip_port),
        inf_rows=[auth_row(*ANNA)],
        keys={"callee": "1002", "rtp_port": str(free_port())},
        timeout=40,
        workdir=workdir,
    )()


def test_a_call_answered_on_the_desk_shows_its_legs_trace_and_outcome(
    service: RunningService, sipp_binary: str, tmp_path: Path
) -> None:
    desk = device(service, DESK, "b2b_device_answer.xml", tmp_path)
    soft = device(service, SOFT, "b2b_device_ring.xml", tmp_path)
    capture = tone_capture(tmp_path / "tone.pcap", 1000.0, 0xCA11)
    started = datetime.now(TZ)
    caller = call(service, "b2b_call.xml", tmp_path, capture)
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    for device_result in (desk.wait(), soft.wait()):
        assert device_result.returncode == 0, device_result.explain()

    bengt, anna, carol = (
        add_token(service, "1002"),
        add_token(service, "1001"),
        add_token(service, "1003"),
    )
    (record,) = records(service, bengt, 1)
    assert record["outcome"] == "answered" and record["status"] == 200
    assert metric(service, "ivr_calls_total", "outcome") == {"answered": 1}
    assert (record["kind"], record["caller"], record["dialled"]) == ("user", "1001", "1002")
    assert record["user"] == "1002" and record["caller_user"] == "1001"
    legs = {leg["device"]: leg for leg in record["legs"]}
    assert set(legs) == {"1002-desk", "1002-soft"}
    assert legs["1002-desk"]["status"] == 200 and legs["1002-desk"]["answered"] is True
    assert legs["1002-soft"]["status"] == 487 and legs["1002-soft"]["answered"] is False
    assert legs["1002-desk"]["contact"].startswith("sip:1002@127.0.0.1:")
    (decision,) = record["decisions"]
    assert decision["user"] == "1002"
    assert decision["trace"][0].startswith("profile") and "standard" in decision["trace"][0]
    assert any("ring 1002-desk+1002-soft 3 s" in line for line in decision["trace"])
    assert decision["trace"][-1] == "voicemail 1002", "what would have followed"
    steps = [s["step"] for s in record["steps"]]
    assert steps == ["ring 1002-desk+1002-soft 3 s", "answered on 1002-desk"]
    began = datetime.fromisoformat(record["started_at"])
    answered = datetime.fromisoformat(record["answered_at"])
    ended = datetime.fromisoformat(record["ended_at"])
    assert abs((began - started).total_seconds()) < 5
    assert began < answered < ended
    assert 1.5 <= record["duration"] <= 6, "the desk rang 1 s; the caller talked 2 s"

    # The same record by id, unversioned and under /api/v1, for each party.
    path = f"/api/calls/{record['id']}"
    assert get(service, path, bengt) == (200, record)
    assert get(service, f"/api/v1/calls/{record['id']}", anna) == (200, record)
    assert get(service, "/api/v1/calls", anna)[1] == [record], "the caller's own calls"
    # Others see nothing of it; an admin sees everything.
    assert get(service, path, carol)[0] == 404
    status, body = get(service, "/api/calls?user=1002", carol)
    assert status == 403 and isinstance(body, dict) and body["error"] == "forbidden"
    assert get(service, "/api/calls", carol) == (200, [])
    admin = add_token(service, "1000", admin=True)
    assert get(service, "/api/calls", admin) == (200, [record])
    assert get(service, "/api/calls/0123456789abcdef", admin)[0] == 404
    status, body = get(service, "/api/calls?limit=0", admin)
    assert status == 422 and isinstance(body, dict) and "limit" in body["fields"]
    assert get(service, "/api/calls", "ivr_" + "x" * 43)[0] == 401
    # The rest of /api is served as before.
    assert service.get_json("/api/users/1002/profile")[1]["profile"] == "available"  # type: ignore[index]
    assert service.get_json("/api/nothing")[0] == 404


def test_no_answer_then_voicemail_is_recorded_step_by_step(
    service: RunningService, sipp_binary: str, tmp_path: Path
) -> None:
    desk = device(service, DESK, "b2b_device_ring.xml", tmp_path)
    soft = device(service, SOFT, "b2b_device_ring.xml", tmp_path)
    workdir = tmp_path / "capture"
    workdir.mkdir()
    library = PromptLibrary(REPO / "prompts")
    greeting = [*phrases.digits("1002"), "redirect_1", phrases.PAUSE, "leave_message", "beep"]
    lead = sum(library.duration("sv", w) for w in greeting) + 0.6
    t = np.arange(12000) / 8000
    tone = (8000 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.int16)
    capture = (
        RtpStream(codec="PCMA", ssrc=0xCA11)
        .silence(lead * 1000)
        .pcm(tone)
        .write(workdir / "caller.pcap")
    )
    caller = call(service, "b2b_call_listen.xml", tmp_path, capture)
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    for device_result in (desk.wait(), soft.wait()):
        assert device_result.returncode == 0, device_result.explain()

    (record,) = records(service, add_token(service, "1002"), 1)
    assert record["outcome"] == "voicemail" and record["status"] == 200
    assert metric(service, "ivr_calls_total", "outcome") == {"voicemail": 1}
    assert [(leg["device"], leg["status"]) for leg in record["legs"]] == [
        ("1002-desk", 408),
        ("1002-soft", 408),
    ], "neither answered in time"
    assert not any(leg["answered"] for leg in record["legs"])
    steps = [s["step"] for s in record["steps"]]
    assert steps == [
        "ring 1002-desk+1002-soft 3 s",
        "no answer in time (408, 408)",
        "voicemail 1002",
    ]
    times = [datetime.fromisoformat(s["at"]) for s in record["steps"]]
    assert 2.5 <= (times[1] - times[0]).total_seconds() <= 4.5, "the 3 s ring time"
    (decision,) = record["decisions"]
    assert decision["trace"][-1] == "voicemail 1002"
    answered = datetime.fromisoformat(record["answered_at"])
    assert abs((answered - times[2]).total_seconds()) < 1, "voicemail answered the caller"
    with SqliteStore(service.db) as store:
        (message,) = store.voicemail.list("1002")
    assert (message.caller, message.called) == ("1001", "1002")


def test_do_not_disturb_is_recorded_as_busy_with_why(
    service: RunningService, sipp_binary: str, tmp_path: Path
) -> None:
    bengt = add_token(service, "1002")
    request = urllib.request.Request(
        f"http://127.0.0.1:{service.http_port}/api/v1/users/1002/profile",
        data=json.dumps({"profile": "dnd"}).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {bengt}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    result = Sipp(
        scenario="b2b_call_refused.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[auth_row(*ANNA)],
        keys={"callee": "+46846500402", "rtp_port": str(free_port()), "max_forwards": "70"},
        timeout=20,
        workdir=tmp_path / "caller",
    )()
    assert result.returncode == 0 and result.successful == 1, result.explain()

    (record,) = records(service, bengt, 1)
    assert (record["outcome"], record["status"]) == ("busy", 486)
    assert metric(service, "ivr_calls_total", "outcome") == {"busy": 1}
    assert record["dialled"] == "+46846500402" and record["user"] == "1002"
    assert record["legs"] == [] and record["answered_at"] is None
    (decision,) = record["decisions"]
    assert decision["trace"][0].startswith("profile Stör ej (manual, set by 1002 via api")
    assert decision["trace"][-1] == "busy"
    assert [s["step"] for s in record["steps"]] == ["busy", "486 Busy Here"]
