"""Recording from the keypad as a pure flow: beep, record, listen, 1 keep / 2 again / 3 delete.

Used for the redirect greeting of a profile (``*24*p#``), the recorded name (mailbox
options) and system prompts (``*77<id>``). Runs under :class:`ivr.flows.FlowRunner`
like :class:`ivr.flows.ProfileMenu`; besides ``Play``/``Collect``/``Hangup`` it asks
the call controller for three things and hears back::

    StartRecording(max_seconds)  -> Recorded(ok)   record until #, silence or the cap;
                                                   ok False: too short (or nothing)
    KeepRecording(target)        -> Stored(ok)     store the take (atomic, levelled)
    DeleteRecording(target)      -> Stored(ok)     remove the stored recording

The prompt name :data:`TAKE` stands for the take just recorded (the controller has
its audio). Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ivr.flows import Collect, FlowError, Hangup, Play, PromptDone, Timeout
from ivr.flows import Digits as DigitsEvent

__all__ = [
    "TAKE",
    "DeleteRecording",
    "Greeting",
    "KeepRecording",
    "Name",
    "RecordMenu",
    "Recorded",
    "RecordingTarget",
    "StartRecording",
    "Stored",
    "SystemPrompt",
]

TAKE = "recording"
"""The prompt name of the take just recorded (supplied by the controller)."""


# --- what is recorded -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeting:
    """A user's redirect greeting for one profile."""

    extension: str
    profile: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Name:
    """A user's recorded name (said in composed phrases instead of the digits)."""

    extension: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemPrompt:
    """A system prompt re-recorded by an administrator."""

    lang: str
    name: str


RecordingTarget = Greeting | Name | SystemPrompt


# --- actions and events -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartRecording:
    """Record the caller now, until ``#``, silence or ``max_seconds``; answer ``Recorded``."""

    max_seconds: float


@dataclass(frozen=True, slots=True)
class KeepRecording:
    """Store the take as ``target``; answer ``Stored``."""

    target: RecordingTarget


@dataclass(frozen=True, slots=True)
class DeleteRecording:
    """Remove ``target``'s stored recording; answer ``Stored``."""

    target: RecordingTarget


@dataclass(frozen=True, slots=True)
class Recorded:
    """The recording ended: ``ok`` False when it was too short (or nothing came)."""

    ok: bool


@dataclass(frozen=True, slots=True)
class Stored:
    """A ``KeepRecording``/``DeleteRecording`` is done (``ok`` False: it failed)."""

    ok: bool


RecordState = Literal[
    "new", "intro", "recording", "review", "storing", "deleting", "closing", "done"
]
_Handler = Callable[["RecordMenu", Any], list[Any]]


class RecordMenu:
    """Beep → record → play the take back → "1 keep, 2 record again, 3 delete".

    A take that is too short says so and records again; an invalid key or no key
    asks again. ``max_tries`` failures in a row (too short, invalid, timeout) end
    with "goodbye". Kept: "saved"; deleted: "deleted" (callers hear the composed
    phrase again). Then the flow is over: a ``Hangup`` unless ``embedded`` (inside
    the mailbox menu, which goes on: :attr:`finished` tells it).
    """

    __slots__ = (
        "_state",
        "_tries",
        "embedded",
        "first_timeout",
        "max_seconds",
        "max_tries",
        "target",
    )

    def __init__(
        self,
        target: RecordingTarget,
        *,
        max_seconds: float = 120.0,
        max_tries: int = 3,
        first_timeout: float = 5.0,
        embedded: bool = False,
    ) -> None:
        if max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        if not max_seconds > 0:
            raise ValueError("max_seconds must be positive")
        self.target = target
        self.max_seconds = max_seconds
        self.max_tries = max_tries
        self.first_timeout = first_timeout
        self.embedded = embedded
        self._state: RecordState = "new"
        self._tries = 0

    @property
    def state(self) -> RecordState:
        return self._state

    @property
    def done(self) -> bool:
        """True once the flow has asked to hang up (never when embedded)."""
        return self._state == "done" and not self.embedded

    @property
    def finished(self) -> bool:
        """True once the flow is over (embedded or not)."""
        return self._state == "done"

    def start(self) -> list[Any]:
        if self._state != "new":
            raise FlowError("the recording has started already")
        return self._intro(())

    def handle(self, event: object) -> list[Any]:
        handler = _TABLE.get((self._state, type(event)))
        if handler is None:
            raise FlowError(f"{type(event).__name__} in state {self._state}")
        return handler(self, event)

    # -- steps --

    def _intro(self, lead: tuple[str, ...]) -> list[Any]:
        self._state = "intro"
        return [Play((*lead, "record_after_beep", "beep"))]

    def _review(self, lead: tuple[str, ...]) -> list[Any]:
        self._state = "review"
        return [
            Play((*lead, TAKE, "review_recording"), barge_in=True),
            Collect(max_digits=1, terminators="", first_timeout=self.first_timeout),
        ]

    def _close(self, prompts: tuple[str, ...]) -> list[Any]:
        self._state = "closing"
        return [Play(prompts)]

    def _fail(self, lead: tuple[str, ...], again: Callable[[tuple[str, ...]], list[Any]]) -> list:
        self._tries += 1
        if self._tries >= self.max_tries:
            return self._close((*lead, "goodbye"))
        return again(lead)

    # -- handlers --

    def _on_intro_done(self, _event: PromptDone) -> list[Any]:
        self._state = "recording"
        return [StartRecording(self.max_seconds)]

    def _on_recorded(self, event: Recorded) -> list[Any]:
        if not event.ok:
            return self._fail(("recording_too_short",), self._intro)
        self._tries = 0
        return self._review(())

    def _on_key(self, event: DigitsEvent) -> list[Any]:
        key = event.digits
        if key == "1":
            self._state = "storing"
            return [KeepRecording(self.target)]
        if key == "2":
            self._tries = 0
            return self._intro(())
        if key == "3":
            self._state = "deleting"
            return [DeleteRecording(self.target)]
        return self._fail(("invalid_choice",), self._review)

    def _on_timeout(self, _event: Timeout) -> list[Any]:
        return self._fail((), self._review)

    def _on_stored(self, event: Stored) -> list[Any]:
        if not event.ok:
            return self._close(("recording_failed", "goodbye"))
        return self._close(("recording_saved",))

    def _on_deleted(self, event: Stored) -> list[Any]:
        return self._close(("recording_deleted",) if event.ok else ("recording_failed",))

    def _on_closed(self, _event: PromptDone) -> list[Any]:
        self._state = "done"
        return [] if self.embedded else [Hangup()]


_TABLE: dict[tuple[RecordState, type], _Handler] = {
    ("intro", PromptDone): RecordMenu._on_intro_done,
    ("recording", Recorded): RecordMenu._on_recorded,
    ("review", DigitsEvent): RecordMenu._on_key,
    ("review", Timeout): RecordMenu._on_timeout,
    ("storing", Stored): RecordMenu._on_stored,
    ("deleting", Stored): RecordMenu._on_deleted,
    ("closing", PromptDone): RecordMenu._on_closed,
}
"""(state, event type) → handler; anything else is a ``FlowError``."""
