"""End to end: deleting a user over the HTTP API removes the person's data, so a new
user given the same extension starts clean (a real `ivr serve`, real SQLite and files)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import StartIvr

from ivr import greetings
from ivr.record_menu import Name
from ivr.store.sqlite import SqliteStore
from ivr.testing.api import TZ, Client, add_token, health, idle
from ivr.testing.audit import audit_log
from ivr.testing.devices import ANNA
from ivr.testing.devices import auth_row as row
from ivr.testing.polling import poll
from ivr.testing.rtp_sink import RtpSink
from ivr.testing.service import RunningService
from ivr.testing.sip_trace import received
from ivr.testing.sipp import Sipp

pytestmark = pytest.mark.e2e

CAROL = {
    "extension": "1003",
    "name": "Carol Clark",
    "language": "en",
    "pin": "3456",
    "devices": [{"id": "1003-desk", "kind": "desk", "username": "1003", "password": "c-1003-x"}],
}
PCM = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16)


def _wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)
    buf = io.BytesIO()
    sf.write(buf, tone, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_a_deleted_users_data_goes_and_the_new_user_starts_clean(
    tmp_path: Path, demo_service: RunningService
) -> None:
    service = demo_service
    recordings = tmp_path / "recordings"
    anon = Client(service)
    anon.doc = anon.call("GET", "/api/v1/openapi.json").json
    admin = anon.as_user(add_token(service, "1000", admin=True))
    carol = anon.as_user(add_token(service, "1003"))

    # the old 1003: Lunch, a voicemail, a greeting, a recorded name
    lunch = carol.call("PUT", "/api/v1/users/1003/profile", {"profile": "lunch"})
    assert lunch.status == 200, lunch.body
    assert carol.call("GET", "/api/v1/users/1003/profile").json["profile"] == "lunch"
    with SqliteStore(service.db, recordings_dir=recordings) as store:
        message = store.voicemail.add(
            mailbox="1003", caller="1002", called="1003", received_at=datetime.now(TZ), pcm=PCM
        )
        wav = store.voicemail.file(message)
    stored = carol.call(
        "PUT", "/api/v1/users/1003/greetings/lunch", _wav(), content_type="audio/wav"
    )
    assert stored.status == 201, stored.body
    greetings.save(recordings, Name(extension="1003"), PCM)
    assert [m["id"] for m in carol.call("GET", "/api/v1/users/1003/voicemail").json] == [message.id]
    assert carol.call("GET", "/api/v1/users/1003/greetings/lunch").status == 200
    assert wav.is_file() and greetings.name(recordings, "1003") is not None
    before = audit_log(service, "1003")
    assert {"greeting.store"} <= {e.action for e in before}

    # delete and re-create
    assert carol.call("DELETE", "/api/v1/users/1003").status == 403, "admins only"
    deleted = admin.call("DELETE", "/api/v1/users/1003")
    assert deleted.status == 204, deleted.body
    assert admin.call("GET", "/api/v1/users/1003").status == 404
    created = admin.call("POST", "/api/v1/users", CAROL)
    assert created.status == 201, created.body

    # the new 1003 starts clean
    new = anon.as_user(add_token(service, "1003"))
    active = new.call("GET", "/api/v1/users/1003/profile").json
    assert active["profile"] == "available" and active["source"] == "standard", active
    assert new.call("GET", "/api/v1/users/1003/voicemail").json == []
    assert new.call("GET", f"/api/v1/users/1003/voicemail/{message.id}").status == 404
    assert new.call("GET", "/api/v1/users/1003/greetings").json == []
    assert new.call("GET", "/api/v1/users/1003/greetings/lunch").status == 404
    assert not wav.exists()
    assert greetings.name(recordings, "1003") is None
    assert not (recordings / "greetings" / "1003").exists()
    assert carol.call("GET", "/api/v1/users/1003/profile").status == 401, "old token"

    # the audit keeps the old history, plus the deletion with what went
    after = audit_log(service, "1003")
    assert after[2:] == before
    assert [e.action for e in after[:2]] == ["user.create", "user.delete"]
    deletion = after[1]
    assert deletion.actor == "1000"
    assert deletion.detail["purged"] == {"voicemail": 1, "tokens": 1, "greetings": 1, "name": 1}


@pytest.fixture
def sink() -> Iterator[RtpSink]:
    made = RtpSink()
    yield made
    made.close()


def test_a_call_in_progress_goes_on_while_its_user_is_deleted(
    tmp_path: Path, start_ivr: StartIvr, demo_config: Path, sipp_binary: str, sink: RtpSink
) -> None:
    """Anna calls 1003 (Lunch: the spoken redirect, then voicemail); 1003 is deleted
    mid-call: the call plays on to its end, the purge happens, nothing breaks."""
    service = start_ivr(config=demo_config, clean_log=True)
    admin = Client(service, add_token(service, "1000", admin=True))
    carol = Client(service, add_token(service, "1003"))
    assert carol.call("PUT", "/api/v1/users/1003/profile", {"profile": "lunch"}).status == 200
    caller = Sipp(
        scenario="feature_code.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[row(*ANNA)],
        keys={"code": "1003", "rtp_port": str(sink.port)},
        timeout=40,
        workdir=tmp_path / "caller",
    ).start()
    assert poll(lambda: health(service)["active_calls"] == 1, 10.0), "the call never started"
    assert admin.call("DELETE", "/api/v1/users/1003").status == 204
    with SqliteStore(service.db) as store:
        assert store.states.get("1003").version == 0, "purged while the call goes on"
        assert store.tokens.list("1003") == []
    assert health(service)["active_calls"] == 1, "the call goes on"
    result = caller.wait(grace=40.0)
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert received(result, "BYE "), "the server ended the call after the voicemail beep"
    assert sink.speech_frames() > 100, "the caller heard the redirect"
    assert idle(service), "call state left behind"
    assert (audit_log(service, "1003")[0]).detail["purged"]["tokens"] == 1
