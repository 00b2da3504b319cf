"""Load shedding: refuse new calls while the reactor runs late (pure).

A reactor that runs behind makes every call worse at once: requests wait in the socket,
peers retransmit, calls in progress miss their timers. Past that point it is better to
turn the newest callers away at once with ``503 Service Unavailable`` and a
``Retry-After`` (RFC 3261 §21.5.4; a trunk then tries its other route) and keep the
calls already in progress healthy.

The signal is the lateness of a periodic tick (``ivr.lag_probe`` measures it at the
edge): overloaded after ``trip_ticks`` ticks in a row later than ``high`` seconds (one
garbage collection or burst is not enough), normal again after ``clear_ticks`` ticks in
a row under ``low``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["OverloadGuard"]

RETRY_AFTER_SECONDS = 5


@dataclass(slots=True)
class OverloadGuard:
    """Whether new calls are refused now, from the lateness of a periodic tick."""

    high: float = 0.25
    low: float = 0.05
    trip_ticks: int = 3
    clear_ticks: int = 10
    overloaded: bool = False
    worst: float = 0.0  # the largest lateness seen (for /health)
    _late: int = field(default=0, repr=False)
    _calm: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high:
            raise ValueError("need 0 <= low <= high")
        if self.trip_ticks < 1 or self.clear_ticks < 1:
            raise ValueError("trip_ticks and clear_ticks must be positive")

    def observe(self, lateness: float) -> bool:
        """One tick ``lateness`` seconds late; True when this changed :attr:`overloaded`."""
        self.worst = max(self.worst, lateness)
        self._late = self._late + 1 if lateness > self.high else 0
        self._calm = self._calm + 1 if lateness < self.low else 0
        if not self.overloaded and self._late >= self.trip_ticks:
            self.overloaded = True
            return True
        if self.overloaded and self._calm >= self.clear_ticks:
            self.overloaded = False
            return True
        return False

    @property
    def retry_after(self) -> int:
        """Seconds a refused caller should wait (the ``Retry-After`` value)."""
        return RETRY_AFTER_SECONDS
