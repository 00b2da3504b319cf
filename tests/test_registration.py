"""REGISTER handling: digest first, then the registrar; pure, no sockets."""

from __future__ import annotations

import re

import pytest

from ivr.registration import RegistrationService, server_uri_policy
from ivr.sip.auth import DigestAuth, digest_response
from ivr.sip.message import Request, parse_message
from ivr.sip.registrar import Registrar

PASSWORDS = {"1001": "anna-desk-1001", "1002": "bengt-desk-1002"}


def service(**kwargs) -> RegistrationService:
    auth = DigestAuth("ivr.local", b"k" * 32, random_bytes=lambda n: b"r" * n)
    return RegistrationService(
        domain="ivr.local",
        auth=auth,
        registrar=Registrar(min_expires=60, max_expires=3600),
        lookup=PASSWORDS.get,
        **kwargs,
    )


def register(
    *,
    user: str = "1001",
    as_user: str | None = None,
    password: str | None = None,
    challenge: str | None = None,
    expires: str = "600",
    uri: str = "sip:ivr.local",
    digest_uri: str | None = None,
    to: str | None = None,
) -> Request:
    lines = [
        f"REGISTER {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKr1",
        f"From: <sip:{user}@ivr.local>;tag=1",
        f"To: {to or f'<sip:{user}@ivr.local>'}",
        "Call-ID: reg-1",
        "CSeq: 2 REGISTER",
        f"Contact: <sip:{user}@192.0.2.10:5062>",
        f"Expires: {expires}",
    ]
    if challenge is not None:
        name = as_user or user
        nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)
        opaque = re.search(r'opaque="([^"]+)"', challenge).group(1)
        algorithm = re.search(r"algorithm=([A-Z0-9-]+)", challenge).group(1)
        duri = digest_uri or uri
        response = digest_response(
            algorithm=algorithm,
            username=name,
            realm="ivr.local",
            password=password or PASSWORDS[name],
            method="REGISTER",
            uri=duri,
            nonce=nonce,
            nc="00000001",
            cnonce="c0ffee",
        )
        lines.append(
            f'Authorization: Digest username="{name}", realm="ivr.local", nonce="{nonce}", '
            f'uri="{duri}", response="{response}", algorithm={algorithm}, qop=auth, '
            f'nc=00000001, cnonce="c0ffee", opaque="{opaque}"'
        )
    text = "\r\n".join([*lines, "Content-Length: 0", "", ""])
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def first_challenge(svc: RegistrationService, now: float = 100.0, index: int = 0) -> str:
    outcome = svc.handle(register(), "udp:192.0.2.10:5062", now)
    assert outcome.reply.status == 401
    assert outcome.failure is None  # no credentials is not an attack
    return outcome.reply.headers[index][1]


def test_challenge_offers_sha256_then_md5() -> None:
    svc = service()
    outcome = svc.handle(register(), "src", 100.0)
    names = [name for name, _ in outcome.reply.headers]
    values = [value for _, value in outcome.reply.headers]
    assert names == ["WWW-Authenticate", "WWW-Authenticate"]
    assert "algorithm=SHA-256" in values[0] and "algorithm=MD5" in values[1]


@pytest.mark.parametrize("index", [0, 1])
def test_valid_digest_binds_the_contact(index: int) -> None:
    svc = service()
    challenge = first_challenge(svc, index=index)
    outcome = svc.handle(register(challenge=challenge), "udp:192.0.2.10:5062", 101.0)
    assert outcome.reply.status == 200
    headers = dict(outcome.reply.headers)
    assert headers["Contact"] == "<sip:1001@192.0.2.10:5062>;expires=600"
    assert "GMT" in headers["Date"]
    assert [b.contact for b in outcome.changed] == ["sip:1001@192.0.2.10:5062"]
    assert svc.registrar.count(101.0) == 1


def test_wrong_password_is_challenged_again_and_reported() -> None:
    svc = service()
    challenge = first_challenge(svc)
    outcome = svc.handle(register(challenge=challenge, password="guess"), "udp:x:1", 101.0)
    assert outcome.reply.status == 401
    assert outcome.failure is not None
    assert (outcome.failure.user, outcome.failure.reason) == ("1001", "bad-password")
    assert svc.registrar.count(101.0) == 0


def test_unknown_user_looks_like_a_wrong_password() -> None:
    svc = service()
    challenge = first_challenge(svc)
    unknown = svc.handle(register(user="9999", challenge=challenge, password="x"), "udp:x:1", 101.0)
    wrong = svc.handle(register(challenge=challenge, password="x"), "udp:x:1", 101.0)
    assert unknown.reply.status == wrong.reply.status == 401
    assert [n for n, _ in unknown.reply.headers] == [n for n, _ in wrong.reply.headers]


def test_a_device_cannot_register_someone_elses_aor() -> None:
    svc = service()
    challenge = first_challenge(svc)
    outcome = svc.handle(
        register(user="1001", as_user="1002", challenge=challenge), "udp:x:1", 101.0
    )
    assert outcome.reply.status == 403
    assert outcome.failure is not None and outcome.failure.reason == "aor-mismatch"
    assert svc.registrar.count(101.0) == 0


def test_too_brief_expires_gets_423_with_min_expires() -> None:
    svc = service()
    challenge = first_challenge(svc)
    outcome = svc.handle(register(challenge=challenge, expires="10"), "udp:x:1", 101.0)
    assert outcome.reply.status == 423
    assert dict(outcome.reply.headers)["Min-Expires"] == "60"


def test_non_sip_aor_is_400() -> None:
    outcome = service().handle(register(to="<tel:+46812345>"), "udp:x:1", 100.0)
    assert outcome.reply.status == 400


def test_digest_uri_must_be_the_request_uri_unless_policy_allows_the_server() -> None:
    strict = service()
    challenge = first_challenge(strict)
    outcome = strict.handle(
        register(challenge=challenge, digest_uri="sip:192.0.2.1:5060"), "udp:x:1", 101.0
    )
    assert outcome.reply.status == 401
    assert outcome.failure is not None and outcome.failure.reason == "uri-mismatch"

    lenient = service(server_uri_ok=server_uri_policy(lambda: ({"192.0.2.1"}, 5060)))
    challenge = first_challenge(lenient)
    outcome = lenient.handle(
        register(challenge=challenge, digest_uri="sip:192.0.2.1:5060"), "udp:x:1", 101.0
    )
    assert outcome.reply.status == 200


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("sip:192.0.2.1:5060", True),
        ("sip:192.0.2.1", True),
        ("sip:ivr.local:5060", True),
        ("sip:1001@192.0.2.1:5060", False),
        ("sip:192.0.2.1:5070", False),
        ("sip:198.51.100.7:5060", False),
        ("tel:+4612345", False),
        ("not a uri", False),
    ],
)
def test_server_uri_policy(uri: str, ok: bool) -> None:
    policy = server_uri_policy(lambda: ({"192.0.2.1", "ivr.local"}, 5060))
    assert policy(uri) is ok


def test_a_device_configured_for_md5_only_gets_only_md5() -> None:
    svc = service(algorithms_for=lambda user: ("MD5",) if user == "1001" else None)
    only_md5 = svc.handle(register(), "src", 100.0).reply.headers
    assert [v.split("algorithm=")[1].split(",")[0] for _, v in only_md5] == ["MD5"]
    other = svc.handle(register(user="1002"), "src", 100.0).reply.headers
    assert len(other) == 2
