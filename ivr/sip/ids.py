"""Identifiers for tags, branches, Call-IDs and SSRCs from an injected random source."""

from __future__ import annotations

import random

from ivr.sip.headers import BRANCH_COOKIE

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
# Two base-36 digits per step (low digit first), so a token takes half the divisions.
_PAIRS = tuple(_ALPHABET[i % 36] + _ALPHABET[i // 36] for i in range(36 * 36))


class Ids:
    """SIP identifiers from ``random.Random(seed)`` in tests, ``PooledSystemRandom()`` live."""

    __slots__ = ("_rng",)

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def token(self, length: int) -> str:
        """``length`` characters of [a-z0-9] from one draw."""
        value = self._rng.getrandbits(6 * length)
        pairs = []
        for _ in range(length >> 1):
            value, index = divmod(value, 1296)
            pairs.append(_PAIRS[index])
        if length & 1:
            pairs.append(_ALPHABET[value % 36])
        return "".join(pairs)

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
