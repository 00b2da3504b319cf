"""Digest authentication: known answers, verification paths, nonce and nc handling."""

from __future__ import annotations

import hashlib
import random
import timeit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.sip.auth import (
    AuthResult,
    DigestAuth,
    digest_response,
    parse_authorization,
    pick_credentials,
)

REALM = "pbx.example.com"
URI = "sip:pbx.example.com"
SECRET = b"0123456789abcdef0123456789abcdef"
USERS = {"1001": "s3cret", "1002": "other"}
H = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def make_auth(seed: int = 1, **kwargs: object) -> DigestAuth:
    return DigestAuth(REALM, SECRET, random_bytes=random.Random(seed).randbytes, **kwargs)


def client_header(
    nonce: str,
    *,
    username: str = "1001",
    password: str = "s3cret",
    realm: str = REALM,
    uri: str = URI,
    method: str = "REGISTER",
    nc: int = 1,
    cnonce: str = "0a4f113b",
    algorithm: str | None = "SHA-256",
    opaque: str | None = None,
    response: str | None = None,
) -> str:
    """An independent client: computes the response with hashlib directly."""
    h = H.get((algorithm or "MD5").upper(), hashlib.md5)
    nc_text = f"{nc:08x}"
    ha1 = h(f"{username}:{realm}:{password}".encode()).hexdigest()
    ha2 = h(f"{method}:{uri}".encode()).hexdigest()
    if response is None:
        response = h(f"{ha1}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    parts = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f'response="{response}"',
        f'cnonce="{cnonce}"',
        "qop=auth",
        f"nc={nc_text}",
    ]
    if algorithm is not None:
        parts.append(f"algorithm={algorithm}")
    if opaque is not None:
        parts.append(f'opaque="{opaque}"')
    return "Digest " + ", ".join(parts)


def nonce_of(auth: DigestAuth, now: float) -> tuple[str, str]:
    params = parse_authorization(auth.challenge(now)[0])
    assert params is not None
    return params["nonce"], params["opaque"]


def verify(auth: DigestAuth, header: str | None, now: float = 10.0, **kw: str) -> AuthResult:
    return auth.verify(
        method=kw.get("method", "REGISTER"),
        request_uri=kw.get("request_uri", URI),
        authorization=header,
        now=now,
        lookup=USERS.get,
    )


# known answers


def test_rfc2617_md5_known_answer() -> None:
    assert (
        digest_response(
            algorithm="MD5",
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_known_answers(algorithm: str, expected: str) -> None:
    assert (
        digest_response(
            algorithm=algorithm,
            username="Mufasa",
            realm="http-auth@example.org",
            password="Circle of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            nc="00000001",
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )
        == expected
    )


def test_parses_rfc2617_example_header() -> None:
    header = (
        'Digest username="Mufasa",\r\n realm="testrealm@host.com",\r\n'
        ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n uri="/dir/index.html",\r\n'
        " qop=auth,\r\n nc=00000001,\r\n"
        ' cnonce="0a4f113b",\r\n response="6629fae49393a05397450978507c4ef1",\r\n'
        ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert parse_authorization(header) == {
        "username": "Mufasa",
        "realm": "testrealm@host.com",
        "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "uri": "/dir/index.html",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "0a4f113b",
        "response": "6629fae49393a05397450978507c4ef1",
        "opaque": "5ccc069c403ebaf9f0171e9517f40e41",
    }


# parsing


def test_parse_quoted_escapes_commas_and_case() -> None:
    header = r'digest  Username="a\"b\\c" ,realm="x, y",NC=00000001,qop=auth  '
    assert parse_authorization(header) == {
        "username": 'a"b\\c',
        "realm": "x, y",
        "nc": "00000001",
        "qop": "auth",
    }


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Digest",
        "Digest ",
        'Basic realm="x"',
        'Digest username="a" realm="b"',
        'Digest username="a",, realm="b"',
        'Digest username="a", username="b"',
        'Digest username="unterminated',
        'Digest username="a"junk',
        "Digest =value",
        'Digest username="a\nb"',
        "Digest " + "a=b, " * 1000 + "c=d",
    ],
)
def test_parse_rejects_malformed(header: str) -> None:
    assert parse_authorization(header) is None


_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("åäö\t"),
    max_size=40,
)


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), _values))
def test_parse_round_trips_quoted_values(params: dict[str, str]) -> None:
    def quote(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = "Digest " + ", ".join(f"{k}={quote(v)}" for k, v in params.items())
    assert parse_authorization(header) == (params or None)


@given(st.text(max_size=200))
def test_parse_never_raises(text: str) -> None:
    parse_authorization("Digest " + text)
    parse_authorization(text)


def test_pick_credentials_by_realm() -> None:
    other = 'Digest username="x", realm="trunk.example.net", nonce="n", uri="u", response="r"'
    mine = f'Digest username="1001", realm="{REALM}", nonce="n", uri="u", response="r"'
    assert pick_credentials(["garbage", other, mine], REALM) == mine
    assert pick_credentials([other], REALM) is None
    assert pick_credentials([], REALM) is None


# challenges


def test_challenge_offers_sha256_then_md5_with_one_nonce() -> None:
    auth = make_auth()
    values = auth.challenge(0.0)
    assert len(values) == 2
    parsed = [parse_authorization(v) for v in values]
    assert [p["algorithm"] for p in parsed if p] == ["SHA-256", "MD5"]
    for p in parsed:
        assert p is not None
        assert p["realm"] == REALM
        assert p["qop"] == "auth"
        assert "stale" not in p
        assert len(p["opaque"]) == 32
    assert parsed[0] is not None and parsed[1] is not None
    assert parsed[0]["nonce"] == parsed[1]["nonce"]
    assert values[0].startswith(f'Digest realm="{REALM}", nonce="')
    assert values[0].endswith(', algorithm=SHA-256, qop="auth"')


def test_challenge_stale_flag_and_fresh_nonces() -> None:
    auth = make_auth()
    stale = auth.challenge(5.0, stale=True)
    assert all(v.endswith(", stale=true") for v in stale)
    assert nonce_of(auth, 5.0)[0] != nonce_of(auth, 5.0)[0]


def test_challenge_is_deterministic_for_a_seed() -> None:
    assert make_auth(seed=7).challenge(1.0) == make_auth(seed=7).challenge(1.0)


def test_realm_is_escaped_in_challenge() -> None:
    auth = DigestAuth('a"b\\c', SECRET, random_bytes=random.Random(0).randbytes)
    params = parse_authorization(auth.challenge(0.0)[0])
    assert params is not None and params["realm"] == 'a"b\\c'


# verification


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5", None])
def test_verify_accepts_good_credentials(algorithm: str | None) -> None:
    auth = make_auth()
    nonce, opaque = nonce_of(auth, 0.0)
    result = verify(auth, client_header(nonce, algorithm=algorithm, opaque=opaque))
    assert result == AuthResult(ok=True, username="1001", stale=False, reason="ok")


def test_verify_accepts_uppercase_hex_response() -> None:
    auth = make_auth()
    nonce, _ = nonce_of(auth, 0.0)
    header = client_header(nonce)
    response = parse_authorization(header)["response"]  # type: ignore[index]
    assert verify(auth, header.replace(response, response.upper())).ok


def test_nc_must_grow_per_nonce() -> None:
    auth = make_auth()
    nonce, _ = nonce_of(auth, 0.0)
    assert verify(auth, client_header(nonce, nc=1)).ok
    replay = verify(auth, client_header(nonce, nc=1))
    assert (replay.ok, replay.reason, replay.stale) == (False, "replayed-nc", True)
    assert verify(auth, client_header(nonce, nc=3)).ok
    assert verify(auth, client_header(nonce, nc=2)).reason == "replayed-nc"
    assert verify(auth, client_header(nonce, nc=4)).ok
    other, _ = nonce_of(auth, 0.0)
    assert verify(auth, client_header(other, nc=1)).ok


def test_failed_attempts_do_not_burn_nc() -> None:
    auth = make_auth()
    nonce, _ = nonce_of(auth, 0.0)
    assert verify(auth, client_header(nonce, nc=9, password="wrong")).reason == "bad-password"
    assert verify(auth, client_header(nonce, nc=1)).ok


def test_expired_nonce_is_stale_only_when_digest_is_right() -> None:
    auth = make_auth(nonce_lifetime=300.0)
    nonce, _ = nonce_of(auth, 0.0)
    assert verify(auth, client_header(nonce), now=300.0).ok
    stale = verify(auth, client_header(nonce, nc=2), now=300.5)
    assert (stale.ok, stale.reason, stale.stale) == (False, "stale-nonce", True)
    wrong = verify(auth, client_header(nonce, nc=3, password="nope"), now=301.0)
    assert (wrong.reason, wrong.stale) == ("bad-password", False)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda n: ("B" if n[0] == "A" else "A") + n[1:],
        lambda n: n[:-1] + ("B" if n[-1] == "A" else "A"),
        lambda n: n[:-4],
        lambda n: n + "AAAA",
        lambda n: n[:20] + "=" + n[21:],
        lambda n: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
    ],
)
def test_tampered_nonce_is_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    auth = make_auth()
    nonce, _ = nonce_of(auth, 0.0)
    result = verify(auth, client_header(tamper(nonce)))
    assert (result.ok, result.reason, result.stale) == (False, "bad-nonce", False)


def test_nonce_from_another_secret_or_the_future_is_refused() -> None:
    foreign = DigestAuth(REALM, b"f" * 32, random_bytes=random.Random(1).randbytes)
    nonce, _ = nonce_of(foreign, 0.0)
    assert verify(make_auth(), client_header(nonce)).reason == "bad-nonce"
    auth = make_auth()
    future, _ = nonce_of(auth, 100.0)
    assert verify(auth, client_header(future), now=10.0).reason == "bad-nonce"


def test_nonces_survive_a_restart_with_the_same_secret() -> None:
    nonce, opaque = nonce_of(make_auth(seed=1), 0.0)
    assert verify(make_auth(seed=2), client_header(nonce, opaque=opaque)).ok


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"realm": "evil.example.com"}, "realm-mismatch"),
        ({"uri": "sip:other.example.com"}, "uri-mismatch"),
        ({"opaque": "0" * 32}, "opaque-mismatch"),
        ({"algorithm": "MD5-sess"}, "unsupported-algorithm"),
        ({"algorithm": "SHA-512-256"}, "unsupported-algorithm"),
    ],
)
def test_mismatches_are_refused(overrides: dict[str, str], reason: str) -> None:
    auth = make_auth()
    nonce, _ = nonce_of(auth, 0.0)
    kwargs: dict[str, object] = {"algorithm": "MD5"}
    kwargs.update(overrides)
    result = verify(auth, client_header(nonce, **kwargs))  # type: ignore[arg-type]
    assert (result.ok, result.reason, result.stale, result.username) == (
        False,
        reason,
        False,
        None,
    )
    assert result.claimed_username == "1001"


def test_method_is_part_of_the_digest() -> None:
    auth = make_auth()
    nonce, _ = nonce_of(auth, 0.0)
    header = client_header(nonce, method="REGISTER")
    assert verify(auth, header, method="INVITE").reason == "bad-password"


def test_algorithm_outside_configured_set_is_refused() -> None:
    auth = make_auth(algorithms=("SHA-256",))
    assert len(auth.challenge(0.0)) == 1
    nonce, _ = nonce_of(auth, 0.0)
    assert verify(auth, client_header(nonce, algorithm="MD5")).reason == "unsupported-algorithm"
    assert verify(auth, client_header(nonce, algorithm=None)).reason == "unsupported-algorithm"
    assert verify(auth, client_header(nonce, algorithm="sha-256")).ok


def test_missing_and_rfc2069_style() -> None:
    auth = make_auth()
    assert verify(auth, None).reason == "missing"
    nonce, _ = nonce_of(auth, 0.0)
    ha1 = hashlib.md5(f"1001:{REALM}:s3cret".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{URI}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    header = (
        f'Digest username="1001", realm="{REALM}", nonce="{nonce}", uri="{URI}", '
        f'response="{response}"'
    )
    assert verify(auth, header).reason == "qop-required"


@pytest.mark.parametrize(
    ("find", "replace"),
    [
        ("qop=auth", "qop=auth-int"),
        ("nc=00000001", "nc=1"),
        ("nc=00000001", "nc=0000000g"),
        ("nc=00000001", "nc=00000000"),
        ('cnonce="0a4f113b"', 'cnonce=""'),
        ('response="', 'response="zz'),
        ('username="1001", ', ""),
        ('uri="sip:pbx.example.com", ', ""),
        ("qop=auth", "qop=auth, userhash=true"),
    ],
)
def test_malformed_credentials(find: str, replace: str) -> None:
    auth = make_auth()
    nonce, _ = nonce_of(auth, 0.0)
    header = client_header(nonce).replace(find, replace)
    assert find in client_header(nonce)
    result = verify(auth, header)
    assert (result.ok, result.reason, result.stale) == (False, "malformed", False)


def test_unknown_user_and_wrong_password_look_the_same() -> None:
    calls: list[str] = []

    def lookup(user: str) -> str | None:
        calls.append(user)
        return USERS.get(user)

    outcomes = []
    for username, password in (("9999", "s3cret"), ("1001", "wrong")):
        auth = make_auth(seed=3)
        nonce, _ = nonce_of(auth, 0.0)
        result = auth.verify(
            method="REGISTER",
            request_uri=URI,
            authorization=client_header(nonce, username=username, password=password),
            now=1.0,
            lookup=lookup,
        )
        outcomes.append((result, auth.challenge(1.0, stale=result.stale)))
    (unknown, challenge_a), (wrong, challenge_b) = outcomes
    assert calls == ["9999", "1001"]
    assert (unknown.reason, wrong.reason) == ("unknown-user", "bad-password")
    assert (unknown.ok, unknown.stale, unknown.username) == (wrong.ok, wrong.stale, wrong.username)
    assert challenge_a == challenge_b


def test_unknown_user_cannot_log_in_with_the_dummy_password() -> None:
    auth = make_auth()
    nonce, _ = nonce_of(auth, 0.0)
    dummy = auth._dummy_password  # white-box: even the dummy secret gets nowhere
    assert verify(auth, client_header(nonce, username="9999", password=dummy)).reason == (
        "unknown-user"
    )


# nc table bounds


def test_evicted_nonce_is_answered_stale_never_replayable() -> None:
    auth = make_auth(max_tracked_nonces=2)
    nonces = [nonce_of(auth, float(t))[0] for t in range(3)]
    for n in nonces:
        assert verify(auth, client_header(n), now=5.0).ok
    assert auth.tracked_nonces == 2
    replay = verify(auth, client_header(nonces[0]), now=5.0)
    assert (replay.reason, replay.stale) == ("stale-nonce", True)
    assert verify(auth, client_header(nonces[0], nc=5), now=5.0).reason == "stale-nonce"
    assert verify(auth, client_header(nonces[2], nc=2), now=5.0).ok
    fresh, _ = nonce_of(auth, 6.0)
    assert verify(auth, client_header(fresh), now=6.0).ok


def test_expired_nonces_are_pruned() -> None:
    auth = make_auth(nonce_lifetime=10.0)
    for t in range(5):
        nonce, _ = nonce_of(auth, float(t))
        assert verify(auth, client_header(nonce), now=float(t)).ok
    assert auth.tracked_nonces == 5
    late, _ = nonce_of(auth, 100.0)
    assert verify(auth, client_header(late), now=100.0).ok
    assert auth.tracked_nonces == 1


# construction and results


@pytest.mark.parametrize(
    "kwargs",
    [
        {"secret": b"short"},
        {"realm": ""},
        {"realm": "a\r\nb"},
        {"algorithms": ()},
        {"algorithms": ("SHA-512",)},
        {"algorithms": ("MD5", "MD5")},
        {"nonce_lifetime": 0.0},
        {"max_tracked_nonces": 0},
    ],
)
def test_constructor_validates(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"realm": REALM, "secret": SECRET}
    args.update(kwargs)
    with pytest.raises(ValueError):
        DigestAuth(random_bytes=random.Random(0).randbytes, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ok": True, "username": None, "stale": False, "reason": "ok"},
        {"ok": True, "username": "a", "stale": False, "reason": "bad-password"},
        {"ok": False, "username": "a", "stale": False, "reason": "bad-password"},
        {"ok": False, "username": None, "stale": False, "reason": "nope"},
        {"ok": True, "username": "a", "stale": True, "reason": "ok"},
    ],
)
def test_auth_result_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AuthResult(**kwargs)  # type: ignore[arg-type]


@pytest.mark.benchmark
def test_verify_micro_benchmark() -> None:
    """Prints µs per successful verify (fresh nc each call); not asserted."""
    number = 3000
    for algorithm in ("SHA-256", "MD5"):
        auth = make_auth()
        nonce, opaque = nonce_of(auth, 0.0)
        headers = iter(
            [
                client_header(nonce, nc=i, algorithm=algorithm, opaque=opaque)
                for i in range(1, number + 1)
            ]
        )

        def once(auth: DigestAuth = auth, headers=headers) -> None:  # type: ignore[no-untyped-def]
            auth.verify(
                method="REGISTER",
                request_uri=URI,
                authorization=next(headers),
                now=1.0,
                lookup=USERS.get,
            )

        seconds = timeit.timeit(once, number=number)
        print(f"DigestAuth.verify {algorithm}: {seconds / number * 1e6:.1f} µs per call")
