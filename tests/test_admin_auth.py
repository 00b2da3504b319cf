"""Bearer tokens: format and hashing, the token table, the failure limiter, the
authenticator (with a fake token lookup and clock), and the ``ivr token`` CLI."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from twisted.internet import defer

from ivr.admin.auth import (
    Authenticator,
    FailureLimiter,
    Principal,
    looks_like_token,
    new_token,
    token_hash,
)
from ivr.admin.errors import ApiError
from ivr.cli import main
from ivr.config import load_config
from ivr.store.sqlite import SqliteStore
from ivr.store.tokens import ApiToken

REPO = Path(__file__).resolve().parents[1]
CONFIG_PATH = REPO / "config" / "ivr.toml"
CONFIG = load_config(CONFIG_PATH)
TZ = ZoneInfo("Europe/Stockholm")
AT = datetime(2026, 3, 10, 9, 0, tzinfo=TZ)


def outcome(d: defer.Deferred[Any]) -> Any:
    """The (synchronous) result of ``d``, or the exception it failed with."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    value = box[0]
    return value.value if hasattr(value, "value") and hasattr(value, "check") else value


def test_tokens_are_random_and_well_formed() -> None:
    a, b = new_token(), new_token()
    assert a != b and looks_like_token(a) and looks_like_token(b)
    assert a.startswith("ivr_") and len(a) == 4 + 43
    assert new_token(lambda n: bytes(n)) == "ivr_" + "A" * 43
    assert not looks_like_token("ivr_short") and not looks_like_token(a + "x")


def test_only_the_sha256_is_kept() -> None:
    token = new_token()
    assert token_hash(token) == hashlib.sha256(token.encode()).hexdigest()


def test_token_table(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "db") as store:
        secret = new_token()
        row = store.tokens.add(
            token_hash=token_hash(secret), user="1001", admin=False, label="app", created_at=AT
        )
        assert store.tokens.find(token_hash(secret)) == row
        assert store.tokens.find(token_hash(new_token())) is None
        assert store.tokens.find("not-hex") is None
        with pytest.raises(ValueError, match="64 lowercase hex"):
            store.tokens.add(token_hash=secret, user="1001", admin=False, label="", created_at=AT)
        assert store.tokens.revoke(row.id, AT) is True
        assert store.tokens.revoke(row.id, AT) is False
        assert store.tokens.find(token_hash(secret)) is None
        (listed,) = store.tokens.list("1001")
        assert listed.revoked_at == AT and store.tokens.list("1002") == []
    raw = (tmp_path / "db").read_bytes()
    assert secret.encode() not in raw


def test_limiter_blocks_after_ten_failures_for_a_minute() -> None:
    limiter = FailureLimiter(max_failures=10, window=60.0)
    for i in range(10):
        assert limiter.retry_after("192.0.2.1", 100.0 + i) is None
        limiter.failed("192.0.2.1", 100.0 + i)
    assert limiter.retry_after("192.0.2.1", 110.0) == pytest.approx(50.0)
    assert limiter.retry_after("192.0.2.2", 110.0) is None  # per address
    assert limiter.retry_after("192.0.2.1", 160.0) is None  # the first failure has aged out
    limiter.failed("192.0.2.1", 160.0)
    assert limiter.retry_after("192.0.2.1", 160.5) == pytest.approx(0.5)


def test_limiter_forgets_the_least_recent_addresses() -> None:
    limiter = FailureLimiter(max_failures=1, window=60.0, max_addresses=2)
    for address in ("a", "b", "c"):
        limiter.failed(address, 0.0)
    assert limiter.retry_after("a", 1.0) is None
    assert limiter.retry_after("b", 1.0) is not None and limiter.retry_after("c", 1.0) is not None


class Fixture:
    def __init__(self) -> None:
        self.now = 1000.0
        self.lookups: list[str] = []
        self.failures: list[tuple[str, str]] = []
        self.tokens: dict[str, ApiToken] = {}
        self.auth = Authenticator(
            find_token=self.find,
            user=CONFIG.user,
            limiter=FailureLimiter(max_failures=3, window=60.0),
            clock=lambda: self.now,
            on_failure=lambda source, reason: self.failures.append((source, reason)),
        )

    def find(self, digest: str) -> defer.Deferred[ApiToken | None]:
        self.lookups.append(digest)
        return defer.succeed(self.tokens.get(digest))

    def issue(self, user: str, admin: bool = False) -> str:
        token = new_token()
        row = ApiToken(id=len(self.tokens) + 1, user=user, admin=admin, label="", created_at=AT)
        self.tokens[token_hash(token)] = row
        return token

    def check(self, header: bytes | None, source: str = "127.0.0.1") -> Any:
        return outcome(self.auth.authenticate(header, source))


def test_a_valid_token_names_its_user() -> None:
    fx = Fixture()
    token = fx.issue("1001")
    assert fx.check(f"Bearer {token}".encode()) == Principal(
        extension="1001", admin=False, token_id=1
    )
    assert fx.check(f"bearer  {token}".encode()).extension == "1001"


def test_admin_needs_both_the_token_scope_and_the_config_role() -> None:
    fx = Fixture()
    assert fx.check(f"Bearer {fx.issue('1000', admin=True)}".encode()).admin is True
    assert fx.check(f"Bearer {fx.issue('1000', admin=False)}".encode()).admin is False
    assert fx.check(f"Bearer {fx.issue('1001', admin=True)}".encode()).admin is False


@pytest.mark.parametrize(
    "header", [b"Basic dXNlcjpwYXNz", b"Bearer", b"Bearer ivr_short", b"Bearer \xff\xfe"]
)
def test_malformed_headers_are_401_without_a_lookup(header: bytes) -> None:
    fx = Fixture()
    error = fx.check(header)
    assert isinstance(error, ApiError) and error.status == 401
    assert "invalid_token" in error.headers["WWW-Authenticate"]
    assert fx.lookups == [] and fx.failures == [("127.0.0.1", "malformed")]


def test_missing_token_is_401_and_not_a_failed_attempt() -> None:
    fx = Fixture()
    error = fx.check(None)
    assert error.status == 401 and error.headers["WWW-Authenticate"] == 'Bearer realm="ivr"'
    assert fx.failures == []


def test_unknown_token_or_vanished_user_is_401() -> None:
    fx = Fixture()
    assert fx.check(f"Bearer {new_token()}".encode()).status == 401
    assert fx.check(f"Bearer {fx.issue('4242')}".encode()).status == 401
    assert [r for _, r in fx.failures] == ["unknown", "no-such-user"]


def test_failures_from_one_address_turn_into_429() -> None:
    fx = Fixture()
    good = fx.issue("1001")
    for _ in range(3):
        assert fx.check(f"Bearer {new_token()}".encode(), "10.0.0.9").status == 401
    lookups = len(fx.lookups)
    refused = fx.check(f"Bearer {good}".encode(), "10.0.0.9")
    assert refused.status == 429 and refused.headers["Retry-After"] == "61"
    assert len(fx.lookups) == lookups, "a blocked address gets no token check at all"
    assert fx.check(f"Bearer {good}".encode(), "10.0.0.10").extension == "1001"
    fx.now += 60.0
    assert fx.check(f"Bearer {good}".encode(), "10.0.0.9").extension == "1001"


def test_cli_creates_a_token_that_authenticates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "var" / "ivr.sqlite3"
    argv = ["--config", str(CONFIG_PATH), "token", "create", "--user", "1000", "--db", str(db)]
    assert main([*argv, "--admin", "--label", "ops"]) == 0
    token = capsys.readouterr().out.strip()
    assert looks_like_token(token)
    with SqliteStore(db) as store:
        row = store.tokens.find(token_hash(token))
    assert row is not None and row.user == "1000" and row.admin and row.label == "ops"

    assert main([*argv[:-4], "--user", "1001", "--admin", "--db", str(db)]) == 2
    assert "not an admin" in capsys.readouterr().err
    assert main([*argv[:-4], "--user", "9999", "--db", str(db)]) == 2

    assert main(["--config", str(CONFIG_PATH), "token", "list", "--db", str(db)]) == 0
    listing = capsys.readouterr().out
    assert "1000\tadmin\tlive" in listing and token not in listing
    assert (
        main(["--config", str(CONFIG_PATH), "token", "revoke", str(row.id), "--db", str(db)]) == 0
    )
    with SqliteStore(db) as store:
        assert store.tokens.find(token_hash(token)) is None
