"""A :class:`twisted.logger.Logger` that drops events below the configured level at once.

Twisted filters by level in the observer, after the event dict is built and published;
on the call path that costs several µs per line for lines nobody will see. ``ivr serve``
sets the level once (:func:`set_level`); until then every level passes, as before.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger as TwistedLogger
from twisted.logger import LogLevel

__all__ = ["Logger", "set_level"]

_LEVELS = tuple(LogLevel.iterconstants())  # debug < info < warn < error < critical
_enabled: set[LogLevel] = set(_LEVELS)


def set_level(name: str) -> None:
    """Emit only events at ``name`` (``debug``, ``info``, ``warn``, ...) or above."""
    minimum = _LEVELS.index(LogLevel.levelWithName(name))
    _enabled.clear()
    _enabled.update(_LEVELS[minimum:])


class Logger(TwistedLogger):
    """Twisted's Logger, gated by :func:`set_level` before any work is done."""

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: Any) -> None:
        if level in _enabled:
            super().emit(level, format, **kwargs)
