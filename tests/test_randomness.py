"""PooledSystemRandom: kernel randomness in blocks, the Random API intact."""

from __future__ import annotations

import pytest

from ivr.randomness import PooledSystemRandom


def test_draws_have_the_asked_width_and_spread() -> None:
    rng = PooledSystemRandom(pool_size=64)  # small: refills happen inside the test
    for k in (0, 1, 7, 8, 31, 32, 64, 96, 600):
        values = [rng.getrandbits(k) for _ in range(200)]
        assert all(0 <= v < 2**k for v in values)
        if k >= 31:
            assert len(set(values)) == 200  # no repeats: the pool is never reused
            assert max(values).bit_length() >= k - 8
    assert len(rng.randbytes(100)) == 100  # larger than the pool
    floats = [rng.random() for _ in range(1000)]
    assert all(0.0 <= f < 1.0 for f in floats) and 0.4 < sum(floats) / 1000 < 0.6
    assert rng.randrange(10) in range(10)
    with pytest.raises(ValueError):
        rng.getrandbits(-1)


def test_two_generators_do_not_repeat_each_other() -> None:
    a, b = PooledSystemRandom(), PooledSystemRandom()
    assert a.getrandbits(128) != b.getrandbits(128)
