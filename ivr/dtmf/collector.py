"""Digit collection as a state machine: events in, actions out. Pure: no clock reads.

One :class:`DigitCollector` gathers one entry (a menu choice, a return time). It is
fed ``digit(d, now)``, ``prompt_finished(now)`` and ``timer_fired(name, now)`` and
returns the actions for the adapter to perform::

    c = DigitCollector(CollectSpec(max_digits=4, terminators="#"), barge_in=True)
    c.start(0.0, prompt_playing=True)  -> []
    c.digit("1", 1.2)  -> [StopPrompt(), StartTimer("inter_digit", 3.0)]
    c.digit("3", 1.9)  -> [CancelTimer("inter_digit"), StartTimer("inter_digit", 3.0)]
    c.digit("#", 2.4)  -> [CancelTimer("inter_digit"), Collected("13", "#")]

The first-digit timer runs from the end of the prompt (or from ``start`` when no
prompt plays); each digit re-arms the inter-digit timer. A terminator ends the entry
(``#`` alone gives ``Collected("", "#")``); so does the ``max_digits``-th digit. When a
timer expires the entry ends with ``TimedOut(digits so far)``. With barge-in the first
digit stops the prompt at once; without it, digits during the prompt are dropped.
The collector cancels a timer before it starts it again, so the adapter never sees a
``StartTimer`` for a name that is still armed. A fire for a timer that is not armed
(cancelled, raced) is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

DTMF = "0123456789*#ABCD"
FIRST_DIGIT = "first_digit"
INTER_DIGIT = "inter_digit"

__all__ = [
    "DTMF",
    "FIRST_DIGIT",
    "INTER_DIGIT",
    "CancelTimer",
    "CollectSpec",
    "Collected",
    "CollectorAction",
    "CollectorError",
    "DigitCollector",
    "HasDigit",
    "StartTimer",
    "StopPrompt",
    "TimedOut",
]


def _dtmf(text: str, what: str) -> None:
    if not isinstance(text, str) or not set(text) <= set(DTMF):
        raise ValueError(f"{what} must be DTMF digits ({DTMF}), got {text!r}")


def _timeout(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be finite and > 0, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectSpec:
    """What to collect: up to ``max_digits``, ended early by any of ``terminators``;
    timeouts in seconds for the first digit (after the prompt) and between digits."""

    max_digits: int
    terminators: str = "#"
    first_timeout: float = 5.0
    inter_timeout: float = 3.0

    def __post_init__(self) -> None:
        if isinstance(self.max_digits, bool) or not isinstance(self.max_digits, int):
            raise ValueError(f"max_digits must be an int, got {self.max_digits!r}")
        if not 1 <= self.max_digits <= 64:
            raise ValueError(f"max_digits must be 1-64, got {self.max_digits}")
        _dtmf(self.terminators, "terminators")
        if len(set(self.terminators)) != len(self.terminators):
            raise ValueError(f"terminators repeat: {self.terminators!r}")
        _timeout(self.first_timeout, "first_timeout")
        _timeout(self.inter_timeout, "inter_timeout")


# --- actions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StopPrompt:
    """Stop the prompt that is playing, now (barge-in)."""


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Arm timer ``name`` to fire ``delay`` seconds from now (it is not armed)."""

    name: str
    delay: float

    def __post_init__(self) -> None:
        if self.name not in (FIRST_DIGIT, INTER_DIGIT):
            raise ValueError(f"unknown timer {self.name!r}")
        _timeout(self.delay, "delay")


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Disarm timer ``name`` (it is armed)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in (FIRST_DIGIT, INTER_DIGIT):
            raise ValueError(f"unknown timer {self.name!r}")


@dataclass(frozen=True, slots=True)
class Collected:
    """The entry is complete: ``digits`` (without the terminator), and the terminator
    pressed (``None`` when ``max_digits`` ended it)."""

    digits: str
    terminator: str | None = None

    def __post_init__(self) -> None:
        _dtmf(self.digits, "digits")
        if self.terminator is not None and (
            len(self.terminator) != 1 or self.terminator not in DTMF
        ):
            raise ValueError(f"terminator must be one DTMF digit, got {self.terminator!r}")


@dataclass(frozen=True, slots=True)
class TimedOut:
    """A timer expired: ``digits`` holds what was entered ("" = no input at all)."""

    digits: str = ""

    def __post_init__(self) -> None:
        _dtmf(self.digits, "digits")


CollectorAction = StopPrompt | StartTimer | CancelTimer | Collected | TimedOut


class CollectorError(Exception):
    """An event the collector cannot take in its state (a bug in the caller)."""


class HasDigit(Protocol):
    """A key-press event such as ``ivr.dtmf.events.DigitEvent``."""

    @property
    def digit(self) -> str: ...


# --- the machine ---------------------------------------------------------------------

State = Literal["idle", "prompt", "waiting", "collecting", "done"]
Event = Literal["digit", "prompt_finished", "timer"]
_Handler = Callable[["DigitCollector", str], list[CollectorAction]]


class DigitCollector:
    """One entry's collection. States: ``idle`` → ``start`` → ``prompt`` (prompt
    playing, nothing pressed) / ``waiting`` (first-digit timer) → ``collecting``
    (inter-digit timer) → ``done``. Not thread-safe; one per entry."""

    __slots__ = ("_armed", "_digits", "_now", "_result", "_state", "barge_in", "spec")

    def __init__(self, spec: CollectSpec, *, barge_in: bool = True) -> None:
        self.spec = spec
        self.barge_in = barge_in
        self._state: State = "idle"
        self._digits = ""
        self._armed: str | None = None
        self._now = -math.inf
        self._result: Collected | TimedOut | None = None

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def digits(self) -> str:
        """The digits entered so far (no terminator)."""
        return self._digits

    @property
    def result(self) -> Collected | TimedOut | None:
        """How the entry ended, once ``done``."""
        return self._result

    def start(self, now: float, *, prompt_playing: bool) -> list[CollectorAction]:
        """Begin; with no prompt playing the first-digit timer starts at once."""
        if self._state != "idle":
            raise CollectorError(f"start in state {self._state}")
        self._tick(now)
        if prompt_playing:
            self._state = "prompt"
            return []
        return self._arm_first("")

    def digit(self, d: str | HasDigit, now: float) -> list[CollectorAction]:
        """A key press: a digit string or an event with ``.digit`` (``DigitEvent``)."""
        key = d if isinstance(d, str) else getattr(d, "digit", d)
        if not isinstance(key, str) or len(key) != 1 or key not in DTMF:
            raise ValueError(f"a key press is one of {DTMF!r}, got {key!r}")
        return self._dispatch("digit", key, now)

    def prompt_finished(self, now: float) -> list[CollectorAction]:
        """The prompt played to its end (or was stopped)."""
        return self._dispatch("prompt_finished", "", now)

    def timer_fired(self, name: str, now: float) -> list[CollectorAction]:
        """Timer ``name`` expired; ignored unless it is the armed one."""
        if name not in (FIRST_DIGIT, INTER_DIGIT):
            raise ValueError(f"unknown timer {name!r}")
        return self._dispatch("timer", name, now)

    # -- internals --

    def _tick(self, now: float) -> None:
        if not math.isfinite(now):
            raise ValueError(f"now must be finite, got {now!r}")
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        self._now = now

    def _dispatch(self, event: Event, arg: str, now: float) -> list[CollectorAction]:
        handler = _TABLE.get((self._state, event))
        if handler is None:
            raise CollectorError(f"{event} in state {self._state}")
        self._tick(now)
        return handler(self, arg)

    def _ignore(self, _arg: str) -> list[CollectorAction]:
        return []

    def _arm_first(self, _arg: str) -> list[CollectorAction]:
        self._state = "waiting"
        self._armed = FIRST_DIGIT
        return [StartTimer(FIRST_DIGIT, self.spec.first_timeout)]

    def _disarm(self) -> list[CollectorAction]:
        name, self._armed = self._armed, None
        return [CancelTimer(name)] if name is not None else []

    def _finish(self, result: Collected | TimedOut) -> list[CollectorAction]:
        self._state = "done"
        self._result = result
        return [result]

    def _barge(self, key: str) -> list[CollectorAction]:
        if not self.barge_in:
            return []
        return [StopPrompt(), *self._press(key)]

    def _press(self, key: str) -> list[CollectorAction]:
        actions = self._disarm()
        if key in self.spec.terminators:
            return [*actions, *self._finish(Collected(self._digits, key))]
        self._digits += key
        if len(self._digits) >= self.spec.max_digits:
            return [*actions, *self._finish(Collected(self._digits, None))]
        self._state = "collecting"
        self._armed = INTER_DIGIT
        return [*actions, StartTimer(INTER_DIGIT, self.spec.inter_timeout)]

    def _expire(self, name: str) -> list[CollectorAction]:
        if name != self._armed:
            return []
        self._armed = None
        return self._finish(TimedOut(self._digits))


_TABLE: dict[tuple[State, Event], _Handler] = {
    ("prompt", "digit"): DigitCollector._barge,
    ("prompt", "prompt_finished"): DigitCollector._arm_first,
    ("prompt", "timer"): DigitCollector._ignore,
    ("waiting", "digit"): DigitCollector._press,
    ("waiting", "prompt_finished"): DigitCollector._ignore,
    ("waiting", "timer"): DigitCollector._expire,
    ("collecting", "digit"): DigitCollector._press,
    ("collecting", "prompt_finished"): DigitCollector._ignore,
    ("collecting", "timer"): DigitCollector._expire,
    ("done", "digit"): DigitCollector._ignore,
    ("done", "prompt_finished"): DigitCollector._ignore,
    ("done", "timer"): DigitCollector._ignore,
}
"""(state, event) → handler. ``idle`` has no entries: events before ``start`` are errors."""
