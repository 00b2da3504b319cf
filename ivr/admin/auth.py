"""Bearer tokens for the HTTP API: creation, hashing, checking, and a per-address limit
on failed attempts.

A token is ``ivr_`` followed by 32 random bytes in URL-safe base64 (43 characters).
Only its SHA-256 (hex) is stored. A request's identity is the token's user; it has
admin rights when the token was created with ``--admin`` *and* the user is still an
admin in the configuration.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from ivr.admin.errors import ApiError
from ivr.routing.model import User
from ivr.store.tokens import ApiToken

TOKEN_PREFIX = "ivr_"
_TOKEN = re.compile(r"ivr_[A-Za-z0-9_-]{43}")
_BEARER = re.compile(rb"[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+) *")
CHALLENGE = 'Bearer realm="ivr"'


def new_token(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A fresh secret token (shown once, never stored)."""
    raw = random_bytes(32)
    if len(raw) != 32:
        raise ValueError("random_bytes returned the wrong number of bytes")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    """What the store keeps: SHA-256 of the token's text, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is asking: a user's extension, whether they act as an admin, which token."""

    extension: str
    admin: bool
    token_id: int

    def may_access(self, extension: str) -> bool:
        """A user reaches only their own data; an admin everyone's."""
        return self.admin or self.extension == extension


class FailureLimiter:
    """At most ``max_failures`` failed attempts per source address within ``window``
    seconds; then the address waits until the oldest failure leaves the window.
    Keeps at most ``max_addresses`` addresses (the least recently failed go first)."""

    def __init__(
        self, max_failures: int = 10, window: float = 60.0, max_addresses: int = 10_000
    ) -> None:
        if max_failures < 1 or window <= 0 or max_addresses < 1:
            raise ValueError("max_failures, window and max_addresses must be positive")
        self.max_failures = max_failures
        self.window = window
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str, now: float) -> float | None:
        """Seconds until ``address`` may try again, or None when it may try now."""
        times = self._recent(address, now)
        if times is None or len(times) < self.max_failures:
            return None
        return max(times[0] + self.window - now, 0.001)

    def failed(self, address: str, now: float) -> None:
        """Record one failed attempt from ``address``."""
        times = self._recent(address, now)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.max_failures)
        times.append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal` or an ``ApiError``
    (401 missing/invalid, 429 too many failures from the address)."""

    def __init__(
        self,
        *,
        find_token: Callable[[str], defer.Deferred[ApiToken | None]],
        user: Callable[[str], User | None],
        limiter: FailureLimiter,
        clock: Callable[[], float],
        on_failure: Callable[[str, str], None] = lambda source, reason: None,
    ) -> None:
        self._find = find_token
        self._user = user
        self.limiter = limiter
        self._clock = clock
        self._on_failure = on_failure

    def _fail(self, source: str, reason: str) -> ApiError:
        self.limiter.failed(source, self._clock())
        self._on_failure(source, reason)
        return ApiError(
            401,
            "invalid bearer token",
            headers={"WWW-Authenticate": f'{CHALLENGE}, error="invalid_token"'},
        )

    def authenticate(self, authorization: bytes | None, source: str) -> defer.Deferred[Principal]:
        """The caller behind ``Authorization`` sent from ``source`` (an IP)."""
        if authorization is None:
            return defer.fail(
                ApiError(401, "a bearer token is required", headers={"WWW-Authenticate": CHALLENGE})
            )
        wait = self.limiter.retry_after(source, self._clock())
        if wait is not None:
            self._on_failure(source, "rate-limited")
            return defer.fail(
                ApiError(
                    429,
                    "too many failed token attempts; try again later",
                    retry_after=round(wait, 1),
                    headers={"Retry-After": str(int(wait) + 1)},
                )
            )
        m = _BEARER.fullmatch(authorization)
        token = m.group(1).decode("ascii", "replace") if m else ""
        if not looks_like_token(token):
            return defer.fail(self._fail(source, "malformed"))

        def found(row: ApiToken | None) -> Principal:
            user = None if row is None else self._user(row.user)
            if row is None or user is None:
                raise self._fail(source, "unknown" if row is None else "no-such-user")
            return Principal(
                extension=user.extension, admin=row.admin and user.admin, token_id=row.id
            )

        d: defer.Deferred[Any] = self._find(token_hash(token))
        return d.addCallback(found)
