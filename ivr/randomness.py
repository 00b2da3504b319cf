"""The live random source: the kernel's CSPRNG, drawn a block at a time.

``random.SystemRandom`` makes one ``getrandom`` system call per draw; a SIP call needs
about a dozen (tags, branches, Call-IDs, nonces, SSRCs). :class:`PooledSystemRandom`
takes the same bytes from ``os.urandom`` 4 KiB at a time, so tags stay cryptographically
random (RFC 3261 §19.3) at a fraction of the cost. Used from the reactor thread only.
"""

from __future__ import annotations

import os
import random

__all__ = ["PooledSystemRandom"]

_RECIP_BPF = 2.0**-53


class PooledSystemRandom(random.SystemRandom):
    """:class:`random.SystemRandom` reading ``os.urandom`` in blocks of ``pool_size``."""

    def __init__(self, pool_size: int = 4096) -> None:
        super().__init__()
        self._size = pool_size
        self._pool = b""
        self._pos = 0

    def _take(self, n: int) -> bytes:
        pos = self._pos
        if pos + n > len(self._pool):
            self._pool = os.urandom(max(self._size, n))
            pos = 0
        self._pos = pos + n
        return self._pool[pos : pos + n]

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        size = (k + 7) // 8
        return int.from_bytes(self._take(size), "big") >> (size * 8 - k)

    def random(self) -> float:
        return (int.from_bytes(self._take(7), "big") >> 3) * _RECIP_BPF

    def randbytes(self, n: int) -> bytes:
        return self._take(n)
