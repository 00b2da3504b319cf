"""End to end: the live directory over real HTTP against a running `ivr serve`.

Users, devices, profiles and schedules created, changed and deleted over the API take
effect at once (SIPp REGISTERs with a new device's password, a new profile is activated
by its feature code) and survive a restart; voicemail and greetings are served from
the files calls use; every answer is checked against the served OpenAPI document.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import StartIvr
from test_e2e_admin import TZ

from ivr.store.sqlite import SqliteStore
from ivr.testing.api import Answer, Client, add_token, conforms
from ivr.testing.audit import audit_log as audit
from ivr.testing.devices import ANNA, auth_row, feature_code
from ivr.testing.service import REPO, RunningService
from ivr.testing.sipp import Sipp

pytestmark = pytest.mark.e2e

NEW_USER = {
    "extension": "1050",
    "name": "Nils Nilsson",
    "language": "en",
    "pin": "5050",
    "did": "08-465 004 50",
    "devices": [{"id": "1050-desk", "kind": "desk", "username": "1050", "password": "nils-1050-a"}],
}
TRAINING = {
    "id": "training",
    "number": 8,
    "name": {"sv": "Utbildning", "en": "Training"},
    "status": {"sv": "På utbildning", "en": "In training"},
    "colour": "#123456",
    "icon": "school",
    "priority": 50,
    "presence": "away",
    "return": "time",
    "plan": {"direct": True, "then": ["redirect", "voicemail"]},
}


@pytest.fixture
def service(demo_service: RunningService) -> RunningService:
    return demo_service


class Clients:
    def __init__(self, service: RunningService) -> None:
        anon = Client(service)
        anon.doc = anon.call("GET", "/api/v1/openapi.json").json
        self.anon = anon
        self.anna = anon.as_user(add_token(service, "1001"))
        self.bengt = anon.as_user(add_token(service, "1002"))
        self.admin = anon.as_user(add_token(service, "1000", admin=True))


def put(client: Client, path: str, body: dict[str, object], etag: str | None = None) -> object:
    return call(client, "PUT", path, body, etag)


def call(
    client: Client, method: str, path: str, body: dict[str, object] | None, etag: str | None
) -> object:
    """A JSON call with an optional If-Match (urllib via the shared client)."""
    data = None if body is None else json.dumps(body).encode()
    url = f"http://127.0.0.1:{client.service.http_port}{path}"
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {client.token}")
    if etag is not None:
        request.add_header("If-Match", etag)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            answer = Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        answer = Answer(exc.code, dict(exc.headers), exc.read())
    if answer.body and answer.headers.get("Content-Type", "").startswith("application/json"):
        conforms(client.doc, method, path, answer)
    return answer


def register(service: RunningService, user: str, password: str, scenario: str) -> None:
    row = auth_row(user, password)
    result = Sipp(
        scenario=scenario, remote=(service.host, service.sip_port), inf_rows=[row], timeout=20
    )()
    assert result.returncode == 0 and result.successful == 1, result.explain()


def test_users_and_devices_are_live_and_survive_a_restart(
    tmp_path: Path,
    service: RunningService,
    sipp_binary: str,
    start_ivr: StartIvr,
    demo_config: Path,
) -> None:
    api = Clients(service)
    assert api.anna.call("POST", "/api/v1/users", NEW_USER).status == 403, "admins only"
    assert api.anon.call("POST", "/api/v1/users", NEW_USER, token=None).status == 401
    created = api.admin.call("POST", "/api/v1/users", NEW_USER)
    assert created.status == 201, created.body
    assert created.headers["ETag"] == '"1"'
    assert created.headers["Location"] == "/api/v1/users/1050"
    assert created.json["did"] == "+46846500450" and created.json["devices"] == ["1050-desk"]
    assert b"nils-1050-a" not in created.body and b"5050" not in created.body
    again = api.admin.call("POST", "/api/v1/users", NEW_USER)
    assert again.status == 409

    # the new device registers at once, with its password
    register(service, "1050", "nils-1050-a", "register_auth.xml")
    device = api.admin.call("GET", "/api/v1/users/1050/devices/1050-desk")
    assert device.status == 200 and len(device.json["registrations"]) == 1
    assert "password" not in device.json

    # a new password applies to the next REGISTER; the old one is refused
    stale = call(api.admin, "PUT", "/api/v1/users/1050/devices/1050-desk", {"kind": "desk"}, '"7"')
    assert stale.status == 409 and stale.json["current_version"] == 1
    changed = call(
        api.admin,
        "PUT",
        "/api/v1/users/1050/devices/1050-desk",
        {"kind": "desk", "username": "1050", "password": "nils-1050-b"},
        '"1"',
    )
    assert changed.status == 200 and changed.headers["ETag"] == '"2"', changed.body
    register(service, "1050", "nils-1050-a", "register_rejected.xml")
    register(service, "1050", "nils-1050-b", "register_auth.xml")

    # validation names the field; cross-checks too
    bad = api.admin.call("PUT", "/api/v1/users/1050", {"name": "Nils", "pin": "12"})
    assert bad.status == 422 and "pin" in bad.json["fields"], bad.body
    taken = api.admin.call("PUT", "/api/v1/users/1050", {"name": "Nils", "did": "08-465 004 01"})
    assert taken.status == 422 and "did" in taken.json["fields"], taken.body
    renamed = api.admin.call("PUT", "/api/v1/users/1050", {"name": "Nils N", "language": "sv"})
    assert renamed.status == 200 and renamed.json["name"] == "Nils N"
    assert renamed.json["devices"] == ["1050-desk"], "devices kept when left out"
    assert renamed.json["did"] is None, "a PUT replaces: what is left out is unset"
    assert api.anna.call("GET", "/api/v1/users/1050").json["name"] == "Nils N"

    # deleting the device drops its registration
    _, health = service.get_json("/health")
    assert health["registrations"] == 2, "one binding per SIPp run (each its own port)"
    assert api.admin.call("DELETE", "/api/v1/users/1050/devices/1050-desk").status == 204
    _, health = service.get_json("/health")
    assert health["registrations"] == 0
    assert api.admin.call("GET", "/api/v1/users/1050/devices/1050-desk").status == 404
    register(service, "1050", "nils-1050-b", "register_rejected.xml")

    entries = audit(service, "1050")
    actions = [e.action for e in entries]  # type: ignore[attr-defined]
    assert actions == ["device.delete", "user.update", "device.update", "user.create"]
    assert {(e.actor, e.via) for e in entries} == {("1000", "api")}  # type: ignore[attr-defined]
    details = json.dumps([e.detail for e in entries])  # type: ignore[attr-defined]
    assert "nils-1050" not in details, "no secrets in the audit log"

    # a restart keeps every change
    assert service.stop() == 0
    restarted = start_ivr(config=demo_config)
    try:
        api = Clients(restarted)
        after = api.admin.call("GET", "/api/v1/users/1050")
        assert after.status == 200 and after.json["name"] == "Nils N"
        assert after.json["devices"] == [] and after.headers["ETag"] == '"4"'
        assert api.admin.call("DELETE", "/api/v1/users/1050").status == 204
        assert api.admin.call("GET", "/api/v1/users/1050").status == 404
        assert api.admin.call("DELETE", "/api/v1/users/1050").status == 404
    finally:
        assert restarted.stop() == 0
    service.process = restarted.process  # the fixture's stop finds it stopped


def test_profiles_are_live_for_routing_and_feature_codes(
    service: RunningService, sipp_binary: str
) -> None:
    api = Clients(service)
    lunch = api.admin.call("GET", "/api/v1/profiles/lunch")
    assert lunch.headers["ETag"] == '"0"', "as the config file provides it"
    body = {**lunch.json, "colour": "#00ff00", "status": {"sv": "Äter", "en": "Eating"}}
    changed = call(api.admin, "PUT", "/api/v1/profiles/lunch", body, '"0"')
    assert changed.status == 200, changed.body
    assert changed.json["plan"] == lunch.json["plan"], "GET's shape goes back in unchanged"
    assert api.anna.call("GET", "/api/v1/profiles/2").json["colour"] == "#00ff00"
    assert api.anna.call("PUT", "/api/v1/profiles/lunch", body).status == 403

    taken = api.admin.call("POST", "/api/v1/profiles", {**TRAINING, "number": 2})
    assert taken.status == 422 and "number" in taken.json["fields"], taken.body
    in_use = api.admin.call("DELETE", "/api/v1/profiles/lunch")
    assert in_use.status == 409 and "schedules" in " ".join(in_use.json["conflicts"])
    sick = api.admin.call("GET", "/api/v1/profiles/8").json["id"]
    assert api.admin.call("DELETE", f"/api/v1/profiles/{sick}").status == 204
    created = api.admin.call("POST", "/api/v1/profiles", TRAINING)
    assert created.status == 201, created.body
    bad = api.admin.call("PUT", "/api/v1/profiles/training", {**TRAINING, "colour": "red"})
    assert bad.status == 422 and bad.json["fields"] == {"colour": "must be #RRGGBB, got 'red'"}

    # the feature-code table and routing know the new profile at once
    feature_code(service, "*23*8#", ANNA)
    active = api.anna.call("GET", "/api/v1/users/1001/profile").json
    assert active["profile"] == "training" and active["colour"] == "#123456"
    actions = [e.action for e in audit(service, "*")]  # type: ignore[attr-defined]
    assert actions == ["profile.create", "profile.delete", "profile.update"]


def test_schedules_are_the_users_own_and_admin_acts_are_audited(service: RunningService) -> None:
    api = Clients(service)
    slot = {"id": "gym", "profile": "out", "days": ["tue"], "start": "17:00", "end": "18:00"}
    assert api.bengt.call("POST", "/api/v1/users/1001/schedules", slot).status == 403
    created = api.anna.call("POST", "/api/v1/users/1001/schedules", slot)
    assert created.status == 201 and created.json == {**slot, "holidays": "include"}
    listed = api.anna.call("GET", "/api/v1/users/1001/schedules")
    assert [s["id"] for s in listed.json] == ["lunch", "gym"]
    bad = api.anna.call("PUT", "/api/v1/users/1001/schedules/gym", {**slot, "start": "25:00"})
    assert bad.status == 422 and "start" in bad.json["fields"]
    moved = call(
        api.admin, "PUT", "/api/v1/users/1001/schedules/gym", {**slot, "days": ["wed"]}, None
    )
    assert moved.status == 200 and moved.json["days"] == ["wed"]
    assert api.anna.call("DELETE", "/api/v1/users/1001/schedules/gym").status == 204
    assert api.anna.call("GET", "/api/v1/users/1001/schedules/gym").status == 404
    entries = audit(service, "1001")
    rows = [(e.action, e.actor, e.on_behalf_of) for e in entries]  # type: ignore[attr-defined]
    assert rows == [
        ("schedule.delete", "1001", None),
        ("schedule.update", "1000", "1001"),
        ("schedule.create", "1001", None),
    ]


def _wav(seconds: float = 1.0, rate: int = 16000, channels: int = 1) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    data = np.repeat(tone[:, None], channels, axis=1)
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_voicemail_list_download_heard_delete(tmp_path: Path, service: RunningService) -> None:
    api = Clients(service)
    recordings = tmp_path / "recordings"
    pcm = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16)
    with SqliteStore(service.db, recordings_dir=recordings) as store:
        message = store.voicemail.add(
            mailbox="1001", caller="1002", called="1001", received_at=datetime.now(TZ), pcm=pcm
        )
        path = store.voicemail.file(message)
    listed = api.anna.call("GET", "/api/v1/users/1001/voicemail")
    assert listed.status == 200 and [m["id"] for m in listed.json] == [message.id]
    assert listed.json[0]["heard"] is False and listed.json[0]["caller"] == "1002"
    base = f"/api/v1/users/1001/voicemail/{message.id}"
    assert api.bengt.call("GET", base).status == 403
    assert api.bengt.call("GET", f"/api/v1/users/1002/voicemail/{message.id}").status == 404
    audio = api.anna.call("GET", base + "/audio")
    assert audio.status == 200 and audio.headers["Content-Type"] == "audio/wav"
    assert audio.body == path.read_bytes()
    heard = api.admin.call("PATCH", base, {"heard": True})
    assert heard.status == 200 and heard.json["heard"] is True
    unread = api.anna.call("GET", "/api/v1/users/1001/voicemail?heard=false")
    assert unread.json == []
    assert api.anna.call("PATCH", base, {"heard": "yes"}).status == 422
    assert api.anna.call("DELETE", base).status == 204
    assert not path.exists()
    with SqliteStore(service.db, recordings_dir=recordings) as store:
        assert store.voicemail.get(message.id) is None
    assert api.anna.call("GET", base).status == 404
    rows = [(e.action, e.actor, e.on_behalf_of) for e in audit(service, "1001")]  # type: ignore[attr-defined]
    assert rows == [("voicemail.delete", "1001", None), ("voicemail.heard", "1000", "1001")]


def test_greetings_upload_raw_and_multipart_download_delete(
    tmp_path: Path, service: RunningService
) -> None:
    api = Clients(service)
    where = tmp_path / "recordings" / "greetings" / "1001" / "lunch.wav"
    path = "/api/v1/users/1001/greetings/lunch"
    assert api.anna.call("GET", path).status == 404
    assert api.bengt.call("PUT", path, _wav(), content_type="audio/wav").status == 403
    stored = api.anna.call("PUT", path, _wav(rate=44100, channels=2), content_type="audio/wav")
    assert stored.status == 201, stored.body
    assert stored.json["meta"]["source"]["samplerate"] == 44100
    data, rate = sf.read(io.BytesIO(api.anna.call("GET", path).body), dtype="int16")
    assert rate == 8000 and data.ndim == 1 and 0.5 < len(data) / rate <= 1.0
    assert where.is_file() and where.with_suffix(".json").is_file()
    boundary = "ivrBoundary42"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="g.wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + _wav(2.0)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    replaced = api.admin.call(
        "PUT", path, form, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert replaced.status == 200, replaced.body
    data, rate = sf.read(str(where), dtype="int16")
    assert 1.5 < len(data) / rate <= 2.0
    junk = api.anna.call("PUT", path, b"not audio at all", content_type="audio/wav")
    assert 400 <= junk.status < 500 and "fields" in junk.json
    listed = api.anna.call("GET", "/api/v1/users/1001/greetings").json
    assert [g["profile"] for g in listed] == ["lunch"]
    assert api.anna.call("DELETE", path).status == 204
    assert not where.exists() and not where.with_suffix(".json").exists()
    rows = [(e.action, e.on_behalf_of) for e in audit(service, "1001")]  # type: ignore[attr-defined]
    assert rows == [
        ("greeting.delete", None),
        ("greeting.store", "1001"),
        ("greeting.store", None),
    ]


def test_prompt_upload_as_multipart(service: RunningService) -> None:
    api = Clients(service)
    boundary = "b0undary"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="x.flac"\r\nContent-Type: audio/flac\r\n\r\n'
        ).encode()
        + _flac()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    answer = api.admin.call(
        "POST",
        "/api/v1/prompts/en/mp_test",
        form,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert answer.status == 201, answer.body
    assert answer.json["meta"]["source"]["format"] == "FLAC"
    two = api.admin.call(
        "POST",
        "/api/v1/prompts/en/mp_test",
        form.replace(b'name="note"', b'name="x"; filename="y.wav"'),
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert two.status == 400 and "exactly one file" in json.dumps(two.json)


def _flac() -> bytes:
    buf = io.BytesIO()
    t = np.arange(16000) / 16000
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 300 * t), 16000, format="FLAC")
    return buf.getvalue()


def test_prompts_import_cli_uploads_a_folder_with_a_summary(
    tmp_path: Path, service: RunningService
) -> None:
    import subprocess
    import sys

    api = Clients(service)
    folder = tmp_path / "upload"
    (folder / "sv").mkdir(parents=True)
    (folder / "en").mkdir()
    (folder / "sv" / "cli_one.wav").write_bytes(_wav(rate=22050, channels=2))
    (folder / "en" / "cli_two.flac").write_bytes(_flac())
    (folder / "en" / "cli_bad.wav").write_bytes(b"RIFF junk")
    (folder / "notes.txt").write_text("not audio")
    token = add_token(service, "1000", admin=True)
    url = f"http://127.0.0.1:{service.http_port}"
    command = [sys.executable, "-m", "ivr.cli", "prompts", "import", str(folder), "--url", url]
    done = subprocess.run(
        [*command, "--token", token], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.strip() == "2 of 4 prompts stored (2 new, 0 replaced), 2 rejected"
    assert "cli_bad.wav: 4" in done.stderr and "notes.txt: not an audio file" in done.stderr
    for lang, name in (("sv", "cli_one"), ("en", "cli_two")):
        got = api.anna.call("GET", f"/api/v1/prompts/{lang}/{name}")
        assert got.status == 200 and got.headers["X-Prompt-Source"] == "custom"
    refused = subprocess.run(
        [*command, "--token", "ivr_" + "x" * 43], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "401" in refused.stderr


def test_clis_see_users_created_over_the_api(tmp_path: Path, service: RunningService) -> None:
    import subprocess
    import sys

    api = Clients(service)
    assert api.admin.call("POST", "/api/v1/users", NEW_USER).status == 201
    base = [sys.executable, "-m", "ivr.cli", "--config", str(tmp_path / "ivr.toml")]
    show = subprocess.run(
        [*base, "profile", "show", "1050", "--db", str(service.db), "--json"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["profile"] == "available"
    made = subprocess.run(
        [*base, "token", "create", "--user", "1050", "--db", str(service.db)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    nils = api.anon.as_user(made.stdout.strip())
    assert nils.call("GET", "/api/v1/users/1050/devices").status == 200
    assert nils.call("GET", "/api/v1/users/1001/devices").status == 403


def test_a_body_with_several_bad_fields_names_them_all(service: RunningService) -> None:
    api = Clients(service)
    desk = {**NEW_USER["devices"][0], "password": "short"}  # type: ignore[index]
    body = {**NEW_USER, "name": " ", "language": "fi", "devices": [desk]}
    bad = api.admin.call("POST", "/api/v1/users", body)
    assert bad.status == 422, bad.body
    assert bad.json == {
        "error": "invalid request",
        "fields": {
            "name": "must not be empty",
            "language": "must be one of 'sv', 'en', got 'fi'",
            "devices[0].password": "must be at least 8 characters",
        },
    }
    assert api.admin.call("GET", "/api/v1/users/1050").status == 404, "nothing was made"
    nameless = {k: v for k, v in body.items() if k != "extension"}
    found = api.admin.call("POST", "/api/v1/users", nameless)
    assert found.status == 422 and set(found.json["fields"]) == {
        "extension",
        "name",
        "language",
        "devices[0].password",
    }, found.body
    assert found.json["fields"]["extension"] == "is required"
    lunch = api.admin.call("GET", "/api/v1/profiles/lunch").json
    wrong = {**lunch, "colour": "red", "priority": -1, "plan": {**lunch["plan"], "ring": ["fax"]}}
    refused = api.admin.call("PUT", "/api/v1/profiles/lunch", wrong)
    assert refused.status == 422 and refused.json["fields"] == {
        "colour": "must be #RRGGBB, got 'red'",
        "priority": "must be an integer 0-1000, got -1",
        "plan.ring[0]": "must be one of 'desk', 'softphone', 'mobile', got 'fax'",
    }, refused.body
    assert api.admin.call("GET", "/api/v1/profiles/lunch").headers["ETag"] == '"0"', "unchanged"
    ghost = {"name": "", "pin": "1234", "devices": ["1001-desk", "ghost"]}
    both = api.admin.call("PUT", "/api/v1/users/1001", ghost)
    assert both.status == 422 and both.json["fields"] == {
        "name": "must not be empty",
        "devices[1]": "no device 'ghost' (give a table)",
    }, both.body
