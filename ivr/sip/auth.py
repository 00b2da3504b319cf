"""SIP digest authentication: challenge and verify (RFC 3261 §22, RFC 7616, RFC 8760).

Pure: stdlib only, no clock reads (``now`` is passed in), randomness injected.

Choices:
- Challenges offer ``SHA-256`` then ``MD5``, both with ``qop="auth"``; ``-sess`` variants,
  ``auth-int`` and ``userhash`` are not offered and are refused.
- RFC 2069-style credentials (no ``qop``) are refused (reason ``qop-required``): without
  ``nc``/``cnonce`` a captured request could be replayed for the whole nonce lifetime.
- Nonces are stateless: ``base64url(timestamp ‖ 12 random bytes ‖ MAC[:16])``, the MAC
  keyed BLAKE2s (a MAC by design, a quarter of HMAC-SHA256's cost on the hot path).
  Only the highest ``nc`` per nonce is remembered, in a bounded table pruned by nonce
  expiry. When the table overflows, the oldest entry is dropped and every untracked
  nonce issued at or before it is answered as stale, so eviction never enables a replay.
- ``stale=true`` is signalled only when the digest itself is right (expired nonce, or a
  replayed/forgotten ``nc``): the UA then retries with a fresh nonce without asking
  its user; a replaying attacker gains nothing from a new nonce.
- Unknown users are checked against a per-instance dummy password on the same code
  path as known ones; the result reason tells them apart for logs only.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "REASONS",
    "AuthResult",
    "DigestAuth",
    "digest_response",
    "parse_authorization",
    "pick_credentials",
]

REASONS: frozenset[str] = frozenset(
    {
        "ok",
        "missing",
        "malformed",
        "realm-mismatch",
        "uri-mismatch",
        "opaque-mismatch",
        "unsupported-algorithm",
        "qop-required",
        "bad-nonce",
        "stale-nonce",
        "replayed-nc",
        "bad-password",
        "unknown-user",
    }
)

_HASHES: dict[str, Callable[..., Any]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}
_HEX_LENGTH = {"MD5": 32, "SHA-256": 64}

_MAX_HEADER = 4096
_SCHEME_RE = re.compile(r"\s*Digest\s+", re.IGNORECASE)
_PARAM_RE = re.compile(
    r"""(([A-Za-z0-9!%'*+.^_`|~-]+)\s*=\s*"""
    r"""(?:"([^"\\\r\n]*(?:\\[^\r\n][^"\\\r\n]*)*)"|([^\s",]+))\s*(?:,\s*|\Z))"""
)
_UNESCAPE_RE = re.compile(r"\\(.)")
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")

_NONCE_TS = struct.Struct(">d")
_NONCE_RANDOM = 12
_NONCE_MAC = 16
_NONCE_CHARS = 48  # base64 of 8 + 12 + 16 = 36 bytes, no padding
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{48}")
_FUTURE_SKEW = 2.0
_HA1_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResult:
    """Outcome of :meth:`DigestAuth.verify`.

    ``username`` is the authenticated identity and is set only when ``ok``.
    ``claimed_username`` is whatever the client sent, for security logs only.
    ``reason`` is internal (logs, metrics): never put it in a response.
    ``stale`` tells the caller to challenge with ``stale=True``.
    """

    ok: bool
    username: str | None
    stale: bool
    reason: str
    claimed_username: str | None = None

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown reason {self.reason!r}")
        if self.ok != (self.reason == "ok"):
            raise ValueError("ok must be True exactly when reason is 'ok'")
        if self.ok and (self.username is None or self.stale):
            raise ValueError("a successful result needs a username and no stale flag")
        if not self.ok and self.username is not None:
            raise ValueError("a failed result must not carry an authenticated username")


def _fail(reason: str, claimed: str | None = None, *, stale: bool = False) -> AuthResult:
    return AuthResult(ok=False, username=None, stale=stale, reason=reason, claimed_username=claimed)


_MISSING = _fail("missing")
_MALFORMED = _fail("malformed")


def parse_authorization(value: str) -> dict[str, str] | None:
    """Parse a Digest ``Authorization``/``Proxy-Authorization`` value into lower-cased
    parameter names and unescaped values; ``None`` if malformed or not Digest."""
    params = _authorization(value)
    return None if params is None else dict(params)


@functools.lru_cache(maxsize=256)
def _authorization(value: str) -> dict[str, str] | None:
    """:func:`parse_authorization`, remembered: a request's credentials are read twice
    (picked by realm, then verified). Callers must not modify the dict."""
    if len(value) > _MAX_HEADER:
        return None
    m = _SCHEME_RE.match(value)
    if m is None:
        return None
    pos = m.end()
    end = len(value.rstrip())
    params: dict[str, str] = {}
    covered = 0
    for whole, raw_name, quoted, token in _PARAM_RE.findall(value, pos, end):
        covered += len(whole)
        name = raw_name.lower()
        if name in params:
            return None
        if token:
            params[name] = token
        elif "\\" in quoted:
            params[name] = _UNESCAPE_RE.sub(r"\1", quoted)
        else:
            params[name] = quoted
    if covered != end - pos:
        return None
    return params if params else None


def pick_credentials(values: Iterable[str], realm: str) -> str | None:
    """Return the first Authorization value whose realm is ``realm`` (or ``None``)."""
    for value in values:
        params = _authorization(value)
        if params is not None and params.get("realm") == realm:
            return value
    return None


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str = "auth",
) -> str:
    """The expected ``response`` (lower-case hex) for ``qop=auth`` digest credentials."""
    h = _HASHES[algorithm]
    ha1 = h(f"{username}:{realm}:{password}".encode()).hexdigest()
    ha2 = h(f"{method}:{uri}".encode()).hexdigest()
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode()).hexdigest()


class _NonceCounters:
    """Highest ``nc`` accepted per nonce, bounded in size and pruned by nonce expiry.

    Entries are kept in the order they were first recorded (about the order the nonces
    were issued), so expired ones leave from the front, a few at each record: no pass
    over the whole table, and O(1) eviction when it is full.
    """

    __slots__ = ("_capacity", "_evicted_through", "_lifetime", "_seen")

    def __init__(self, capacity: int, lifetime: float) -> None:
        self._capacity = capacity
        self._lifetime = lifetime
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._evicted_through = float("-inf")

    def __len__(self) -> int:
        return len(self._seen)

    def highest(self, nonce: str, issued_at: float) -> int | None:
        """Highest accepted ``nc`` (0 if never used), or ``None`` if forgotten by eviction."""
        entry = self._seen.get(nonce)
        if entry is not None:
            return entry[1]
        return None if issued_at <= self._evicted_through else 0

    def record(self, nonce: str, issued_at: float, nc: int, now: float) -> None:
        seen = self._seen
        seen[nonce] = (issued_at, nc)
        horizon = now - self._lifetime
        while seen:  # expired nonces are refused as stale before their nc is looked up
            if next(iter(seen.values()))[0] >= horizon:
                break
            seen.popitem(last=False)
        while len(seen) > self._capacity:
            _, (issued, _) = seen.popitem(last=False)
            if issued > self._evicted_through:
                self._evicted_through = issued


class DigestAuth:
    """Issues digest challenges for one realm and verifies credentials against them.

    ``secret`` keys the nonce MAC and the opaque value: keep it stable (the store
    generates and persists one) so nonces survive a restart.
    """

    __slots__ = (
        "_algorithms",
        "_by_upper",
        "_counters",
        "_dummy_ha1",
        "_dummy_password",
        "_ha1_cache",
        "_head",
        "_lifetime",
        "_nonce_key",
        "_offered",
        "_opaque",
        "_random_bytes",
        "realm",
    )

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        nonce_lifetime: float = 300.0,
        random_bytes: Callable[[int], bytes],
        algorithms: Iterable[str] = ("SHA-256", "MD5"),
        max_tracked_nonces: int = 100_000,
    ) -> None:
        if not realm or any(ord(c) < 0x20 or ord(c) == 0x7F for c in realm):
            raise ValueError("realm must be non-empty printable text")
        if len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes")
        if not nonce_lifetime > 0:
            raise ValueError("nonce_lifetime must be positive")
        if max_tracked_nonces < 1:
            raise ValueError("max_tracked_nonces must be at least 1")
        algs = tuple(algorithms)
        if not algs or len(set(algs)) != len(algs) or any(a not in _HASHES for a in algs):
            raise ValueError(f"algorithms must be distinct values from {sorted(_HASHES)}")
        self.realm = realm
        self._algorithms = algs
        self._by_upper = {a.upper(): a for a in algs}
        self._offered = frozenset(algs)
        self._head = f"Digest realm={_quote(realm)}"
        self._lifetime = float(nonce_lifetime)
        self._random_bytes = random_bytes
        self._nonce_key = hmac.digest(secret, b"ivr digest nonce v2", "sha256")
        self._opaque = hmac.digest(secret, b"ivr digest opaque v1:" + realm.encode(), "sha256")[
            :16
        ].hex()
        self._dummy_password = random_bytes(16).hex()
        self._counters = _NonceCounters(max_tracked_nonces, self._lifetime)
        self._ha1_cache: dict[tuple[str, str, str], str] = {}
        self._dummy_ha1 = {
            alg: h(f"{self._dummy_password}:{realm}:{self._dummy_password}".encode()).hexdigest()
            for alg, h in _HASHES.items()
        }

    def _ha1(self, algorithm: str, username: str, password: str) -> str:
        """H(username:realm:password), remembered per (algorithm, user, password): a
        changed password is a new key, so directory edits need no invalidation."""
        key = (algorithm, username, password)
        ha1 = self._ha1_cache.get(key)
        if ha1 is None:
            if len(self._ha1_cache) >= _HA1_CACHE_SIZE:
                self._ha1_cache.clear()  # bounded (a directory of thousands of devices)
            ha1 = _HASHES[algorithm](f"{username}:{self.realm}:{password}".encode()).hexdigest()
            self._ha1_cache[key] = ha1
        return ha1

    @property
    def algorithms(self) -> tuple[str, ...]:
        return self._algorithms

    @property
    def tracked_nonces(self) -> int:
        """How many nonces currently have a remembered ``nc`` (for metrics/tests)."""
        return len(self._counters)

    def new_nonce(self, now: float) -> str:
        """A fresh nonce stamped with ``now``."""
        payload = _NONCE_TS.pack(now) + self._random_bytes(_NONCE_RANDOM)
        if len(payload) != _NONCE_TS.size + _NONCE_RANDOM:
            raise ValueError("random_bytes returned the wrong number of bytes")
        mac = hashlib.blake2s(payload, key=self._nonce_key, digest_size=_NONCE_MAC).digest()
        return base64.urlsafe_b64encode(payload + mac).decode("ascii")

    def _nonce_issued_at(self, nonce: str) -> float | None:
        if len(nonce) != _NONCE_CHARS or _NONCE_RE.fullmatch(nonce) is None:
            return None
        raw = base64.urlsafe_b64decode(nonce)
        payload = raw[:-_NONCE_MAC]
        mac = hashlib.blake2s(payload, key=self._nonce_key, digest_size=_NONCE_MAC).digest()
        if not hmac.compare_digest(mac, raw[-_NONCE_MAC:]):
            return None
        return _NONCE_TS.unpack_from(payload)[0]

    def challenge(
        self, now: float, *, stale: bool = False, algorithms: Iterable[str] | None = None
    ) -> list[str]:
        """Header values for ``WWW-Authenticate``/``Proxy-Authenticate``, one per algorithm
        (``algorithms`` narrows or reorders ours, e.g. for a device known to need MD5)."""
        # the nonce is base64url and the opaque hex: neither needs escaping in quotes
        head = f'{self._head}, nonce="{self.new_nonce(now)}", opaque="{self._opaque}"'
        stale_part = ", stale=true" if stale else ""
        offered = self._offered
        return [
            f'{head}, algorithm={alg}, qop="auth"{stale_part}'
            for alg in (self._algorithms if algorithms is None else algorithms)
            if alg in offered
        ]

    def verify(
        self,
        *,
        method: str,
        request_uri: str,
        authorization: str | None,
        now: float,
        lookup: Callable[[str], str | None],
        uri_ok: Callable[[str], bool] | None = None,
    ) -> AuthResult:
        """Check one request's credentials. ``lookup(username)`` returns the plaintext
        password or ``None``; ``request_uri`` is the Request-URI exactly as received.
        A digest ``uri`` that differs from it is refused unless ``uri_ok(uri)`` accepts it
        (a policy for UAs that digest the server's address instead)."""
        if authorization is None:
            return _MISSING
        params = _authorization(authorization)
        if params is None:
            return _MALFORMED
        get = params.get
        username = get("username")
        realm = get("realm")
        nonce = get("nonce")
        uri = get("uri")
        response = get("response")
        if username is None or realm is None or nonce is None or uri is None or response is None:
            return _fail("malformed", username)
        if realm != self.realm:
            return _fail("realm-mismatch", username)
        algorithm = self._by_upper.get(get("algorithm", "MD5").upper())
        if algorithm is None:
            return _fail("unsupported-algorithm", username)
        qop = get("qop")
        if qop is None:
            return _fail("qop-required", username)
        nc_text = get("nc")
        cnonce = get("cnonce")
        if (
            qop.lower() != "auth"
            or nc_text is None
            or not cnonce
            or _NC_RE.fullmatch(nc_text) is None
            or len(response) != _HEX_LENGTH[algorithm]
            or _HEX_RE.fullmatch(response) is None
            or get("userhash", "false").lower() != "false"
        ):
            return _fail("malformed", username)
        nc = int(nc_text, 16)
        if nc == 0:
            return _fail("malformed", username)
        if uri != request_uri and (uri_ok is None or not uri_ok(uri)):
            return _fail("uri-mismatch", username)
        opaque = get("opaque")
        if opaque is not None and opaque != self._opaque:
            return _fail("opaque-mismatch", username)
        issued_at = self._nonce_issued_at(nonce)
        if issued_at is None or issued_at > now + _FUTURE_SKEW:
            return _fail("bad-nonce", username)

        password = lookup(username)
        known = password is not None
        h = _HASHES[algorithm]
        # an unknown user costs what a known (cached) one does: one precomputed dummy HA1
        ha1 = self._ha1(algorithm, username, password) if known else self._dummy_ha1[algorithm]
        ha2 = h(f"{method}:{uri}".encode()).hexdigest()
        expected = h(f"{ha1}:{nonce}:{nc_text}:{cnonce}:{qop}:{ha2}".encode()).hexdigest()
        matches = hmac.compare_digest(expected, response.lower())
        if not known:
            return _fail("unknown-user", username)
        if not matches:
            return _fail("bad-password", username)
        if now - issued_at > self._lifetime:
            return _fail("stale-nonce", username, stale=True)
        highest = self._counters.highest(nonce, issued_at)
        if highest is None:
            return _fail("stale-nonce", username, stale=True)
        if nc <= highest:
            return _fail("replayed-nc", username, stale=True)
        self._counters.record(nonce, issued_at, nc, now)
        return AuthResult(ok=True, username=username, stale=False, reason="ok")
