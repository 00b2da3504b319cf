"""Measures how late the reactor runs, for :class:`ivr.overload.OverloadGuard` (Twisted edge)."""

from __future__ import annotations

from typing import Any

from ivr.logs import Logger
from ivr.overload import OverloadGuard

__all__ = ["LagProbe"]

log = Logger(namespace="ivr.overload")


class LagProbe:
    """Asks the reactor to call back every ``interval`` seconds and feeds the guard
    how much later than asked it did."""

    def __init__(self, reactor: Any, guard: OverloadGuard, interval: float = 0.1) -> None:
        self.reactor = reactor
        self.guard = guard
        self.interval = interval
        self._call: Any = None
        self._due = 0.0

    def start(self) -> None:
        self._schedule()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        self._due = self.reactor.seconds() + self.interval
        self._call = self.reactor.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        lateness = max(0.0, self.reactor.seconds() - self._due)
        if self.guard.observe(lateness):
            if self.guard.overloaded:
                log.warn(
                    "overloaded: the reactor runs {ms:.0f} ms late; refusing new calls (503)",
                    ms=1000 * lateness,
                )
            else:
                log.warn("load back to normal: accepting new calls again")
        self._schedule()
