"""The stored profile states, remembered on the reactor side between writes.

Every call reads the called user's state; going to the store thread for it costs a
thread hop each way. All state writes go through the one :class:`AsyncStore` of the
process, so it can keep what it read or wrote and answer the next read at once.

Only reads are remembered, so what is answered is exactly what the store would return.
Reads and writes overlap, so the bookkeeping is careful: a write forgets the user's
state when it is sent and again when it completes; a read remembers its result only
if no write for that user was sent or in flight meanwhile, so a read that started
before a write can never put the older state back. Pure: no
threads, no Twisted; the facade calls these hooks on the reactor thread.
"""

from __future__ import annotations

from ivr.routing.state import UserState

__all__ = ["StateCache"]


class StateCache:
    """Known :class:`UserState` per user, with the write generations that guard it."""

    __slots__ = ("_generation", "_in_flight", "_limit", "_states")

    def __init__(self, limit: int = 100_000) -> None:
        self._states: dict[str, UserState] = {}
        self._generation: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._limit = limit

    def get(self, user: str) -> UserState | None:
        """The remembered state, or None when the store must be asked."""
        return self._states.get(user)

    def read_started(self, user: str) -> int:
        """A read of ``user`` goes to the store; pass the token to :meth:`read_done`."""
        return self._generation.get(user, 0)

    def read_done(self, user: str, token: int, state: UserState) -> None:
        """Remember a read's result unless a write to ``user`` overlapped it."""
        if self._in_flight.get(user) or self._generation.get(user, 0) != token:
            return
        self._remember(user, state)

    def write_started(self, user: str) -> None:
        """A write of ``user``'s state goes to the store: forget it until it is done."""
        self._states.pop(user, None)
        self._generation[user] = self._generation.get(user, 0) + 1
        self._in_flight[user] = self._in_flight.get(user, 0) + 1

    def write_done(self, user: str) -> None:
        """The write finished (stored or failed): the next read goes to the store."""
        left = self._in_flight[user] - 1
        if left:
            self._in_flight[user] = left
        else:
            del self._in_flight[user]
        self._generation[user] += 1
        self._states.pop(user, None)

    def _remember(self, user: str, state: UserState) -> None:
        if len(self._states) >= self._limit:
            self._states.clear()
        self._states[user] = state
