"""Digest auth on the hot path: cached HA1 follows directory edits, parsed credentials are
not shared mutable state, nonces keep working with the cheaper MAC."""

from __future__ import annotations

import random

from ivr.sip.auth import DigestAuth, digest_response, parse_authorization

REALM = "ivr.local"
URI = "sip:ivr.local"


def make_auth() -> DigestAuth:
    return DigestAuth(REALM, b"0123456789abcdef0123", random_bytes=random.Random(5).randbytes)


def credentials(auth: DigestAuth, now: float, password: str, nc: int = 1) -> str:
    challenge = auth.challenge(now)[0]
    nonce = challenge.split('nonce="', 1)[1].split('"', 1)[0]
    nc_text = f"{nc:08x}"
    response = digest_response(
        algorithm="SHA-256",
        username="1001",
        realm=REALM,
        password=password,
        method="REGISTER",
        uri=URI,
        nonce=nonce,
        nc=nc_text,
        cnonce="c0ffee",
    )
    return (
        f'Digest username="1001", realm="{REALM}", nonce="{nonce}", uri="{URI}", '
        f'response="{response}", algorithm=SHA-256, qop=auth, nc={nc_text}, cnonce="c0ffee"'
    )


def verify(auth: DigestAuth, header: str, now: float, passwords: dict[str, str]) -> str:
    result = auth.verify(
        method="REGISTER",
        request_uri=URI,
        authorization=header,
        now=now,
        lookup=passwords.get,
    )
    return result.reason


def test_a_changed_password_takes_effect_at_once_despite_the_ha1_cache() -> None:
    auth = make_auth()
    directory = {"1001": "old-secret"}
    assert verify(auth, credentials(auth, 10.0, "old-secret"), 10.0, directory) == "ok"
    directory["1001"] = "new-secret"  # edited over the admin API: no cache to invalidate
    assert verify(auth, credentials(auth, 11.0, "old-secret"), 11.0, directory) == ("bad-password")
    assert verify(auth, credentials(auth, 12.0, "new-secret"), 12.0, directory) == "ok"
    del directory["1001"]
    assert verify(auth, credentials(auth, 13.0, "new-secret"), 13.0, directory) == ("unknown-user")


def test_parse_authorization_returns_a_private_copy() -> None:
    header = 'Digest username="1001", realm="ivr.local", nonce="n", uri="u", response="r"'
    first = parse_authorization(header)
    assert first is not None
    first["username"] = "mallory"
    again = parse_authorization(header)
    assert again is not None and again["username"] == "1001"


def test_nonces_from_another_secret_are_refused_and_ours_verify() -> None:
    ours, theirs = (
        make_auth(),
        DigestAuth(REALM, b"another secret, 16+ bytes", random_bytes=random.Random(5).randbytes),
    )
    directory = {"1001": "pw"}
    assert verify(ours, credentials(theirs, 1.0, "pw"), 1.0, directory) == "bad-nonce"
    assert verify(ours, credentials(ours, 1.0, "pw"), 1.0, directory) == "ok"


def test_the_nc_table_stays_bounded_and_prunes_expired_nonces_in_order() -> None:
    auth = DigestAuth(
        REALM,
        b"0123456789abcdef0123",
        random_bytes=random.Random(9).randbytes,
        nonce_lifetime=10.0,
        max_tracked_nonces=50,
    )
    directory = {"1001": "pw"}
    for t in range(200):
        now = float(t) / 4
        assert verify(auth, credentials(auth, now, "pw"), now, directory) == "ok"
        assert auth.tracked_nonces <= 41  # 10 s of nonces at 4 per second, then expiry
    assert auth.tracked_nonces == 41
