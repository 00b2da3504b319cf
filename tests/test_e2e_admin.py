"""End to end: the HTTP API of a running `ivr serve`, over real HTTP (urllib, raw sockets).

Tokens come from the real CLI once and from the token table otherwise; every JSON answer
is checked against the OpenAPI document the service serves. Profile changes are seen by
the legacy view and by a SIPp `*#23#` call; an uploaded prompt is heard in a SIPp call.
"""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import sys
import time as clock
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import soundfile as sf

from ivr.admin.auth import new_token
from ivr.media import g711, phrases
from ivr.media.prompts import PromptLibrary
from ivr.testing.api import Client, add_token
from ivr.testing.audit import audit_log as audit
from ivr.testing.devices import ANNA, auth_row, dial_code
from ivr.testing.rtp_sink import RtpSink
from ivr.testing.service import RunningService
from ivr.testing.sipp import Sipp

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Europe/Stockholm")
PCMA_SILENT = frozenset({0xD5, 0x55})  # what counts as idle in a PCMA payload here
SHIPPED = REPO / "prompts"


# --- HTTP ---------------------------------------------------------------------------------


@dataclass
class Api:
    anna: Client  # 1001, a user
    bengt: Client  # 1002, a user
    admin: Client  # 1000, an admin
    anon: Client
    custom: Path


@pytest.fixture
def api(service: RunningService) -> Api:
    anon = Client(service)
    doc = anon.call("GET", "/api/v1/openapi.json").json
    anon.doc = doc
    return Api(
        anna=Client(service, add_token(service, "1001"), doc),
        bengt=Client(service, add_token(service, "1002"), doc),
        admin=Client(service, add_token(service, "1000", admin=True), doc),
        anon=anon,
        custom=service.db.parent / "prompts",
    )


# --- auth ---------------------------------------------------------------------------------


def test_cli_token_authenticates_and_missing_or_bad_tokens_are_401(
    service: RunningService, api: Api
) -> None:
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "ivr.cli",
            "token",
            "create",
            "--user",
            "1003",
            "--db",
            str(service.db),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    carol = api.anon.as_user(cli.stdout.strip())
    answer = carol.call("GET", "/api/v1/users/1003")
    assert answer.status == 200 and answer.json["name"] == "Carol Clark"

    missing = api.anon.call("GET", "/api/v1/users")
    assert missing.status == 401 and missing.json["error"]
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="ivr"'
    bad = api.anon.call("GET", "/api/v1/users", token=new_token())
    assert bad.status == 401 and "invalid_token" in bad.headers["WWW-Authenticate"]
    assert api.anon.call("GET", "/api/v1/users", token="garbage").status == 401
    assert api.anon.call("PUT", "/api/v1/users/1001/profile", {"profile": 2}).status == 401
    assert audit(service, "1001") == []


def test_failed_token_attempts_are_rate_limited_per_address(api: Api) -> None:
    for _ in range(10):
        assert api.anon.call("GET", "/api/v1/presence", token=new_token()).status == 401
    refused = api.anon.call("GET", "/api/v1/presence", token=new_token())
    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 0
    assert "too many" in refused.json["error"]
    assert api.anna.call("GET", "/api/v1/presence").status == 429, "even a good token waits"
    metrics = api.anon.call("GET", "/metrics").body.decode()
    assert 'ivr_api_auth_failures_total{reason="unknown"} 10' in metrics
    assert 'ivr_api_auth_failures_total{reason="rate-limited"}' in metrics


# --- read resources -----------------------------------------------------------------------


def test_every_read_resource(service: RunningService, api: Api) -> None:
    registered = Sipp(
        scenario="register_auth.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[auth_row(*ANNA)],
        timeout=20,
    )()
    assert registered.returncode == 0 and registered.successful == 1, registered.explain()
    users = api.anna.call("GET", "/api/v1/users")
    assert users.status == 200
    assert [u["extension"] for u in users.json] == ["1000", "1001", "1002", "1003"]
    assert "vip" in users.json[1] and "vip" not in users.json[2], "own details only"
    assert api.admin.call("GET", "/api/v1/users/1002").json["schedules"] == []
    one = api.anna.call("GET", "/api/v1/users/1001").json
    assert one["schedules"][0]["profile"] == "lunch" and one["did"] == "+46846500401"

    devices = api.anna.call("GET", "/api/v1/users/1001/devices")
    assert devices.status == 200
    assert [d["id"] for d in devices.json] == ["1001-desk", "1001-soft", "1001-mobile"]
    (binding,) = devices.json[0]["registrations"]
    assert binding["expires_in"] > 0 and binding["contact"].startswith("sip:1001@")
    assert devices.json[1]["registrations"] == [] and "registrations" not in devices.json[2]
    assert b"password" not in devices.body and b"anna-desk-1001" not in devices.body
    assert b"pin" not in users.body and b"1234" not in users.body
    assert api.admin.call("GET", "/api/v1/users/1001/devices").status == 200

    profiles = api.anna.call("GET", "/api/v1/profiles").json
    assert [p["number"] for p in profiles] == list(range(1, 10))
    lunch = api.anna.call("GET", "/api/v1/profiles/lunch").json
    assert lunch == api.anna.call("GET", "/api/v1/profiles/2").json
    assert lunch["plan"]["then"] == {"redirect": True, "action": "voicemail", "target": None}

    active = api.bengt.call("GET", "/api/v1/users/1001/profile").json
    assert active["profile"] in ("available", "lunch") and active["extension"] == "1001"

    presence = api.bengt.call("GET", "/api/v1/presence").json
    assert [p["extension"] for p in presence] == ["1000", "1001", "1002", "1003"]
    row = presence[2]
    assert set(row) == {
        "extension",
        "name",
        "profile",
        "presence",
        "icon",
        "colour",
        "text",
        "until",
    }
    english = api.bengt.call("GET", "/api/v1/presence?lang=en").json
    assert english[2]["text"] in ("Available", "At lunch", "On vacation")

    assert api.admin.call("GET", "/api/v1/audit").json == []
    doc = api.anon.call("GET", "/api/v1/openapi.json").json
    assert doc["openapi"] == "3.1.0" and "/users/{ext}/profile" in doc["paths"]
    assert api.anon.call("GET", "/health").json["status"] == "ok"

    metrics = api.anon.call("GET", "/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = metrics.body.decode()
    for name in ("ivr_registrations", "ivr_active_calls", "ivr_uptime_seconds"):
        assert f"# TYPE {name} gauge\n{name} " in text
    assert "\nivr_registrations 1\n" in text and "\nivr_active_calls 0\n" in text
    assert 'ivr_api_requests_total{status="200"}' in text


def test_validation_errors_name_fields_and_unknown_ids_are_404(api: Api) -> None:
    bad = api.anna.call("PUT", "/api/v1/users/1001/profile", {"profile": "x", "until": 5})
    assert bad.status == 422 and set(bad.json["fields"]) == {"profile", "until"}
    late = api.anna.call("PUT", "/api/v1/users/1001/profile", {"profile": 2, "until": "2020-01-01"})
    assert late.status == 422 and "not in the future" in late.json["fields"]["until"]
    broken = api.anna.call(
        "PUT", "/api/v1/users/1001/profile", b"{not json", content_type="application/json"
    )
    assert broken.status == 400 and "body" in broken.json["fields"]
    typed = api.anna.call("PUT", "/api/v1/users/1001/profile", b"x", content_type="text/plain")
    assert typed.status == 415
    assert api.anna.call("GET", "/api/v1/users/4242").status == 404
    assert api.admin.call("PUT", "/api/v1/users/4242/profile", {"profile": 2}).status == 404
    assert api.anna.call("GET", "/api/v1/profiles/holiday").status == 404
    assert api.anna.call("GET", "/api/v1/no/such/thing").status == 404
    wrong = api.anna.call("PATCH", "/api/v1/users")
    assert wrong.status == 405 and wrong.headers["Allow"] == "GET, POST"
    assert api.admin.call("GET", "/api/v1/audit?limit=0").json["fields"]["limit"]
    assert api.admin.call("GET", "/api/v1/audit?since=soon").status == 422
    assert api.anna.call("GET", "/api/v1/users?x=1").status == 422
    assert api.anna.call("GET", "/api/v1/presence?lang=de").status == 422


# --- profile changes ----------------------------------------------------------------------


def test_a_user_may_not_change_another_users_profile(service: RunningService, api: Api) -> None:
    before = api.bengt.call("GET", "/api/v1/users/1002/profile").json
    refused = api.anna.call("PUT", "/api/v1/users/1002/profile", {"profile": "dnd"})
    assert refused.status == 403 and refused.json["error"] == "forbidden"
    assert api.anna.call("DELETE", "/api/v1/users/1002/profile").status == 403
    assert api.anna.call("GET", "/api/v1/users/1002/devices").status == 403
    assert api.bengt.call("GET", "/api/v1/users/1002/profile").json == before
    assert audit(service, "1002") == []
    assert api.anna.call("GET", "/api/v1/audit?user=1002").status == 403


def test_own_change_and_admin_acting_as_user_are_audited(service: RunningService, api: Api) -> None:
    own = api.anna.call("PUT", "/api/v1/users/1001/profile", {"profile": "meeting"})
    assert own.status == 200 and own.json["changed"] is True
    assert own.json["profile"] == "meeting" and own.json["set_via"] == "api"

    acted = api.admin.call(
        "PUT", "/api/v1/users/1002/profile", {"profile": 7, "until": "2027-01-04"}
    )
    assert acted.status == 200, acted.json
    assert acted.json["profile"] == "vacation" and acted.json["set_by"] == "1000"
    assert datetime.fromisoformat(acted.json["until"]) == datetime(2027, 1, 4, tzinfo=TZ)

    logout, entry = audit(service, "1002")  # Semester logs Bengt out of his queue too
    assert (entry.actor, entry.on_behalf_of, entry.via) == ("1000", "1002", "api")
    assert entry.action == "activate" and entry.detail["to"] == "vacation"
    assert (logout.action, logout.actor, logout.on_behalf_of) == ("queue_logout", "1000", "1002")
    assert logout.detail["because"] == "profile vacation"
    left, mine = audit(service, "1001")  # Möte logs Anna out of support
    assert (mine.actor, mine.on_behalf_of, mine.action) == ("1001", None, "activate")
    assert (left.action, left.actor, left.detail["was"]) == ("queue_logout", "1001", ["support"])

    seen = api.bengt.call("GET", "/api/v1/audit").json  # a user sees their own log
    assert [(e["actor"], e["on_behalf_of"], e["target_user"]) for e in seen] == [
        ("1000", "1002", "1002"),
        ("1000", "1002", "1002"),
    ]
    everything = api.admin.call("GET", "/api/v1/audit?limit=10").json
    assert {e["target_user"] for e in everything} == {"1001", "1002"}

    back = api.admin.call("DELETE", "/api/v1/users/1002/profile")
    assert back.status == 200 and back.json["changed"] and back.json["profile"] == "available"
    login, latest = audit(service, "1002")[:2]
    assert (latest.action, latest.actor, latest.on_behalf_of) == (
        "back_to_standard",
        "1000",
        "1002",
    )
    assert (login.action, login.actor, login.on_behalf_of) == ("queue_login", "1000", "1002")


def dial(service: RunningService, code: str, sink: RtpSink) -> None:
    result = dial_code(service, code, ANNA, sink.port)
    assert result.returncode == 0 and result.successful == 1, result.explain()


def frames(words: list[str]) -> int:
    library = PromptLibrary(SHIPPED)
    return round(sum(library.duration("sv", w) for w in words) / 0.02)


def test_profile_set_over_the_api_is_what_the_view_and_star_hash_23_see(
    service: RunningService, api: Api, sink: RtpSink
) -> None:
    now = datetime.now(TZ)
    back = (now + timedelta(hours=3)).replace(second=0, microsecond=0)
    answer = api.anna.call(
        "PUT", "/api/v1/users/1001/profile", {"profile": "meeting", "until": back.strftime("%H:%M")}
    )
    assert answer.status == 200, answer.json
    status, view = service.get_json("/api/users/1001/profile")
    assert status == 200 and view["profile"] == "meeting" and view["source"] == "manual"
    assert (view["set_by"], view["set_via"]) == ("1001", "api")
    assert datetime.fromisoformat(view["until"]) == back

    dial(service, "*%2323%23", sink)
    heard = len(sink.speech_payloads(8, PCMA_SILENT))
    meeting = frames(phrases.current_profile(3, back, now, "sv"))
    available = frames(phrases.current_profile(1, None, now, "sv", say_no_end=False))
    assert abs(heard - meeting) <= 0.1 * meeting + 5, (heard, meeting)
    assert abs(heard - available) > 0.1 * meeting + 5


# --- prompts ------------------------------------------------------------------------------


def audio_file(fmt: str, subtype: str, rate: int, channels: int, seconds: float = 0.6) -> bytes:
    t = np.arange(round(rate * seconds)) / rate
    x = 0.2 * np.sin(2 * np.pi * 500 * t) * np.hanning(len(t))
    x = np.concatenate([np.zeros(rate // 5), x, np.zeros(rate // 5)])
    data = np.column_stack([x, 0.5 * x][:channels]) if channels > 1 else x
    buf = io.BytesIO()
    sf.write(buf, data, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


UPLOAD_FORMATS = [
    ("WAV", "PCM_16"),
    ("WAV", "FLOAT"),
    ("WAV", "ULAW"),
    ("WAV", "ALAW"),
    ("WAVEX", "PCM_24"),
    ("FLAC", "PCM_16"),
    ("OGG", "VORBIS"),
    ("AIFF", "PCM_16"),
]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_uploads_in_every_format_rate_and_layout_are_stored_8khz_mono(api: Api) -> None:
    for fmt, subtype in UPLOAD_FORMATS:
        for rate in (8000, 16000, 44100, 48000):
            for channels in (1, 2):
                name = f"t-{fmt}-{subtype}-{rate}-{channels}".lower().replace("_", "-")
                data = audio_file(fmt, subtype, rate, channels)
                answer = api.admin.call("POST", f"/api/v1/prompts/en/{name}", data)
                assert answer.status == 201, (name, answer.json)
                meta = answer.json["meta"]
                assert meta["uploaded_by"] == "1000" and meta["source"]["samplerate"] == rate
                assert meta["source"]["channels"] == channels
                stored = api.custom / "en" / f"{name}.wav"
                info = sf.info(str(stored))
                assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
                assert 0.5 < info.duration < 0.7, (name, info.duration)
                fetched = api.anna.call("GET", f"/api/v1/prompts/en/{name}")
                assert fetched.status == 200 and fetched.headers["Content-Type"] == "audio/wav"
                assert fetched.body == stored.read_bytes()
    listing = api.anna.call("GET", "/api/v1/prompts/en").json
    custom = [p for p in listing if p["source"] == "custom"]
    assert len(custom) == len(UPLOAD_FORMATS) * 8
    again = api.admin.call(
        "POST", "/api/v1/prompts/en/t-flac-pcm-16-8000-1", audio_file("FLAC", "PCM_16", 8000, 1)
    )
    assert again.status == 200, "a replaced prompt is 200, a new one 201"
    metrics = api.anon.call("GET", "/metrics").body.decode()
    assert f'ivr_prompt_uploads_total{{result="stored"}} {len(UPLOAD_FORMATS) * 8 + 1}' in metrics


def test_an_uploaded_prompt_is_heard_in_a_call_and_delete_falls_back(
    service: RunningService, api: Api, sink: RtpSink
) -> None:
    tone = audio_file("WAV", "PCM_16", 44100, 2, seconds=1.6)
    uploaded = api.admin.call("POST", "/api/v1/prompts/sv/invalid_code", tone)
    assert uploaded.status == 201, uploaded.json
    assert (
        api.anna.call("GET", "/api/v1/prompts/sv/invalid_code").headers["X-Prompt-Source"]
        == "custom"
    )
    clock.sleep(2.1)  # the library looks at a prompt's file at most every 2 s
    dial(service, "*23*0%23", sink)  # no profile 0: "Ogiltig kod", now our tone
    payload = b"".join(sink.speech_payloads(8, PCMA_SILENT))
    pcm = g711.decode("PCMA", payload).astype(np.float64)
    assert abs(len(pcm) / 8000 - 1.6) < 0.25, len(pcm) / 8000
    spectrum = np.abs(np.fft.rfft(pcm))
    assert abs(np.argmax(spectrum) * 8000 / len(pcm) - 500) < 15

    deleted = api.admin.call("DELETE", "/api/v1/prompts/sv/invalid_code")
    assert deleted.status == 200 and deleted.json["now"] == "shipped"
    shipped = api.anna.call("GET", "/api/v1/prompts/sv/invalid_code")
    assert shipped.headers["X-Prompt-Source"] == "shipped"
    assert shipped.body == (SHIPPED / "sv" / "invalid_code.wav").read_bytes()
    assert api.admin.call("DELETE", "/api/v1/prompts/sv/invalid_code").status == 404
    assert files_under(api.custom) == []


def wav(x: np.ndarray, rate: int = 8000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def _bad_uploads() -> dict[str, tuple[str, bytes, str | None]]:
    good = audio_file("WAV", "PCM_16", 16000, 1)
    flac = audio_file("FLAC", "PCM_16", 44100, 2, seconds=1.0)
    nan = np.sin(np.arange(4000) / 5.0) * 0.3
    nan[10] = np.nan
    return {
        "empty": ("sv/goodbye", b"", None),
        "text": ("sv/goodbye", b"just some text, not audio\n" * 20, "text/plain"),
        "json": ("sv/goodbye", b'{"file": "goodbye.wav"}', "application/json"),
        "multipart": (
            "sv/goodbye",
            b"--xyz\r\nContent-Disposition: form-data; name=f\r\n\r\n" + good + b"\r\n--xyz--",
            "multipart/form-data; boundary=xyz",
        ),
        "mp3": ("sv/goodbye", b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(1000), "audio/mpeg"),
        "truncated wav": ("sv/goodbye", good[: len(good) // 2], None),
        "truncated flac": ("sv/goodbye", flac[: len(flac) // 2], None),
        "truncated aiff": ("sv/goodbye", audio_file("AIFF", "PCM_16", 8000, 1)[:3000], None),
        "corrupt header": ("sv/goodbye", good[:20] + b"\xff" * 20 + good[40:], None),
        "random bytes": ("sv/goodbye", b"RIFF" + np.random.default_rng(7).bytes(5000), None),
        "silent": ("sv/goodbye", wav(np.zeros(8000)), None),
        "too long": ("sv/goodbye", wav(np.full(8000 * 301, 0.1), subtype="ULAW"), None),
        "not a number": ("sv/goodbye", wav(nan, subtype="FLOAT"), None),
        "too many channels": ("sv/goodbye", wav(np.full((200, 20), 0.1)), None),
        "rate too low": ("sv/goodbye", wav(np.full(400, 0.1), rate=400), None),
        "path traversal": ("sv/..%2F..%2Fgoodbye", good, None),
        "dot dot": ("sv/..", good, None),
        "control character": ("sv/good%0Abye", good, None),
        "nul": ("sv/good%00bye", good, None),
        "extension in name": ("sv/goodbye.wav", good, None),
        "uppercase": ("sv/Goodbye", good, None),
        "unknown language": ("de/goodbye", good, None),
        "language traversal": ("..%2Fsv/goodbye", good, None),
    }


def test_bad_uploads_get_4xx_with_a_reason_and_leave_no_file(api: Api) -> None:
    for kind, (where, data, content_type) in _bad_uploads().items():
        answer = api.admin.call("POST", f"/api/v1/prompts/{where}", data, content_type=content_type)
        assert 400 <= answer.status < 500, (kind, answer.status)
        if answer.status != 404:
            assert answer.json["fields"], kind
        assert files_under(api.custom) == [], kind
    good = audio_file("WAV", "PCM_16", 8000, 1)
    assert api.bengt.call("POST", "/api/v1/prompts/sv/goodbye", good).status == 403
    assert api.anon.call("POST", "/api/v1/prompts/sv/goodbye", good).status == 401
    assert api.bengt.call("DELETE", "/api/v1/prompts/sv/goodbye").status == 403
    assert files_under(api.custom) == []
    assert not list(api.custom.parent.glob("**/.*.tmp"))


def raw_http(port: int, head: bytes, body: bytes = b"", *, read_first: bool = False) -> bytes:
    """Send a request by hand; ``read_first`` reads the answer before sending ``body``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        if read_first:
            answer = sock.recv(65536)
            return answer
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(body)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_oversized_bodies_are_refused_before_they_arrive(api: Api) -> None:
    port = api.admin.service.http_port
    auth = f"Authorization: Bearer {api.admin.token}\r\n".encode()
    head = (
        b"POST /api/v1/prompts/sv/goodbye HTTP/1.1\r\nHost: x\r\n" + auth
        + b"Content-Type: audio/wav\r\nContent-Length: 20000000\r\nExpect: 100-continue\r\n\r\n"
    )  # fmt: skip
    answer = raw_http(port, head, read_first=True)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"100 Continue" not in answer and b"request body too large" in answer

    chunk = b"RIFF" + bytes(1024 * 1024 - 4)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(11)) + b"0\r\n\r\n"
    head = (
        b"POST /api/v1/prompts/sv/goodbye HTTP/1.1\r\nHost: x\r\n" + auth
        + b"Transfer-Encoding: chunked\r\n\r\n"
    )  # fmt: skip
    answer = raw_http(port, head, chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]

    json_head = (
        b"PUT /api/v1/users/1000/profile HTTP/1.1\r\nHost: x\r\n" + auth
        + b"Content-Type: application/json\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n"
    )  # fmt: skip
    answer = raw_http(port, json_head, b"{" + b" " * 199_998 + b"}")
    assert b" 413 " in answer.split(b"\r\n", 1)[0]
    assert files_under(api.custom) == []
    assert api.anna.call("GET", "/api/v1/users/1001").status == 200, "the service is fine"
