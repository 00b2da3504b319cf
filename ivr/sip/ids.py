"""Identifiers for tags, branches, Call-IDs and SSRCs from an injected random source."""

from __future__ import annotations

import random

from ivr.sip.headers import BRANCH_COOKIE

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class Ids:
    """Makes SIP identifiers; pass ``random.Random(seed)`` in tests, ``SystemRandom()`` live."""

    __slots__ = ("_rng",)

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def token(self, length: int) -> str:
        """``length`` characters of [a-z0-9] from one draw (one urandom call live)."""
        value = self._rng.getrandbits(6 * length)
        chars = []
        for _ in range(length):
            value, index = divmod(value, 36)
            chars.append(_ALPHABET[index])
        return "".join(chars)

    def tag(self) -> str:
        return self.token(12)

    def branch(self) -> str:
        return BRANCH_COOKIE + self.token(16)

    def call_id(self, host: str) -> str:
        return f"{self.token(20)}@{host}"

    def uint32(self) -> int:
        return self._rng.getrandbits(32)

    def bytes(self, n: int) -> bytes:
        return self._rng.getrandbits(8 * n).to_bytes(n, "big") if n else b""
