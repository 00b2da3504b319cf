"""IVR scripts as state machines: events in, actions out. Pure: no clock, no I/O.

A flow returns :data:`FlowAction` lists — ``Play``, ``Collect``, ``Execute``,
``Hangup`` — and is fed :data:`FlowEvent` values — ``PromptDone``, ``Digits``,
``Timeout``, ``CommandDone``. :class:`ProfileMenu` is the interactive ``*23`` menu
of DOMAIN.md::

    menu = ProfileMenu(rules, "sv")
    menu.start()               -> [Play(("choose_profile",), True), Collect(max_digits=1, ...)]
    menu.handle(Digits("2"))   -> [Play(("enter_return_time",), True), Collect(max_digits=4, ...)]
    menu.handle(Digits("1300"))
                               -> [Execute(ActivateProfile(profile="lunch", number=2, until=...))]
    menu.handle(CommandDone(result=..., at=now))
                               -> [Play(("profile_2", "activated", ...), False)]
    menu.handle(PromptDone())  -> [Hangup()]

The contract with whoever runs a flow:

- ``Play`` starts a prompt. When a ``Collect`` follows it in the same list, the entry
  is collected over that prompt (``Play.barge_in``: the first key stops it) and the
  flow hears ``Digits``/``Timeout``, not ``PromptDone``. A ``Play`` with nothing after
  it is answered with ``PromptDone`` when it has played to its end.
- ``Collect`` gathers one entry (see :mod:`ivr.dtmf.collector`): ``Digits(digits,
  terminator)`` when complete, ``Timeout(digits so far)`` when a timer expires.
- ``Execute(command)``: run the routing command (``apply_command(..., via="ivr")``)
  and answer ``CommandDone(result, at)`` with the time it ran at.
- ``Hangup()``: the flow is over.

:class:`FlowRunner` does all of that bookkeeping with a :class:`DigitCollector`, so
a call controller only plays, stops, arms timers, executes and hangs up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from ivr.confirm import confirmation
from ivr.dtmf.collector import (
    DTMF,
    CancelTimer,
    Collected,
    CollectorAction,
    CollectSpec,
    DigitCollector,
    HasDigit,
    StartTimer,
    StopPrompt,
    TimedOut,
)
from ivr.media.phrases import LANGS
from ivr.routing.commands import CommandResult
from ivr.routing.features import ActivateProfile, FeatureCommand
from ivr.routing.model import Profile
from ivr.routing.profiles import AtTime, DefaultReturn, OnDate, Rules, UntilSpec

__all__ = [
    "MENU_PROMPTS",
    "CallAction",
    "Collect",
    "CommandDone",
    "Digits",
    "Execute",
    "Flow",
    "FlowAction",
    "FlowError",
    "FlowEvent",
    "FlowRunner",
    "Hangup",
    "Play",
    "ProfileMenu",
    "PromptDone",
    "Timeout",
]

MENU_PROMPTS: tuple[str, ...] = (
    "choose_profile",
    "enter_return_time",
    "enter_return_date",
    "invalid_choice",
    "goodbye",
)
"""The prompts :class:`ProfileMenu` plays besides the confirmation's (``prompts/<lang>``)."""

_PROMPT_NAME = re.compile(r"[a-z0-9_]{1,64}")


def _dtmf_text(text: str, what: str) -> None:
    if not isinstance(text, str) or not set(text) <= set(DTMF):
        raise ValueError(f"{what} must be DTMF digits ({DTMF}), got {text!r}")


# --- actions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Play:
    """Play these prompts in order (any sequence; kept as a tuple). ``barge_in``: a key
    pressed during a following ``Collect`` stops the prompt at once."""

    prompts: tuple[str, ...]
    barge_in: bool = False

    def __post_init__(self) -> None:
        prompts = tuple(self.prompts)
        if not prompts:
            raise ValueError("Play needs at least one prompt")
        for name in prompts:
            if not isinstance(name, str) or _PROMPT_NAME.fullmatch(name) is None:
                raise ValueError(f"bad prompt name {name!r}")
        object.__setattr__(self, "prompts", prompts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Collect(CollectSpec):
    """Collect one entry (fields of :class:`CollectSpec`), over the preceding ``Play``."""


@dataclass(frozen=True, slots=True)
class Execute:
    """Run this routing command for the caller; answer with ``CommandDone``."""

    command: FeatureCommand


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call."""


FlowAction = Play | Collect | Execute | Hangup


# --- events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptDone:
    """A ``Play`` with no ``Collect`` after it has played to its end."""


@dataclass(frozen=True, slots=True)
class Digits:
    """An entry is complete: ``digits`` without the terminator; ``terminator`` is the
    key that ended it (``None`` when ``max_digits`` did)."""

    digits: str
    terminator: str | None = None

    def __post_init__(self) -> None:
        _dtmf_text(self.digits, "digits")
        if self.terminator is not None and (
            len(self.terminator) != 1 or self.terminator not in DTMF
        ):
            raise ValueError(f"terminator must be one DTMF digit, got {self.terminator!r}")


@dataclass(frozen=True, slots=True)
class Timeout:
    """The entry timed out; ``digits`` is what was entered before ("" = no input)."""

    digits: str = ""

    def __post_init__(self) -> None:
        _dtmf_text(self.digits, "digits")


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandDone:
    """The ``Execute``d command ran at ``at`` (timezone-aware) with this result."""

    result: CommandResult
    at: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.result, CommandResult):
            raise ValueError(f"result must be a CommandResult, got {type(self.result).__name__}")
        if self.at.tzinfo is None:
            raise ValueError("at must be timezone-aware")


FlowEvent = PromptDone | Digits | Timeout | CommandDone


class FlowError(Exception):
    """An event the flow is not waiting for (a bug in whoever drives it)."""


class Flow(Protocol):
    """An IVR script: ``start`` once, then ``handle`` each event until ``done``."""

    @property
    def done(self) -> bool: ...

    def start(self) -> list[FlowAction]: ...

    def handle(self, event: FlowEvent) -> list[FlowAction]: ...


# --- the *23 profile menu --------------------------------------------------------------

MenuState = Literal["new", "menu", "return", "execute", "confirm", "goodbye", "done"]
_Handler = Callable[["ProfileMenu", Any], list[FlowAction]]


class ProfileMenu:
    """``*23``: "Välj profil" → one digit naming a profile → for a profile with a return
    (time, date, next_workday) "Ange återkomsttid/-datum": four digits (HHMM, or MMDD
    for ``date`` profiles) and ``#``, or ``#`` alone for the profile's default → execute
    ``ActivateProfile`` → the confirmation → hang up.

    Each of the two questions gets ``max_tries`` attempts: an invalid entry plays
    "invalid choice" and asks again, no input asks again; the last failed attempt
    ends with "goodbye" and a hang-up. A timeout after some digits counts as invalid.
    """

    __slots__ = (
        "_command",
        "_profile",
        "_state",
        "_tries",
        "clock",
        "first_timeout",
        "inter_timeout",
        "lang",
        "max_tries",
        "rules",
    )

    def __init__(
        self,
        rules: Rules,
        lang: str,
        *,
        clock: str | None = None,
        max_tries: int = 3,
        first_timeout: float = 5.0,
        inter_timeout: float = 3.0,
    ) -> None:
        if lang not in LANGS:
            raise ValueError(f"unsupported language {lang!r} (one of {LANGS})")
        if clock not in (None, "12h", "24h"):
            raise ValueError(f"clock must be None, '12h' or '24h', got {clock!r}")
        if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
            raise ValueError(f"max_tries must be an int >= 1, got {max_tries!r}")
        CollectSpec(max_digits=1, first_timeout=first_timeout, inter_timeout=inter_timeout)
        self.rules = rules
        self.lang = lang
        self.clock = clock
        self.max_tries = max_tries
        self.first_timeout = first_timeout
        self.inter_timeout = inter_timeout
        self._state: MenuState = "new"
        self._tries = 0
        self._profile: Profile | None = None
        self._command: ActivateProfile | None = None

    @property
    def state(self) -> MenuState:
        """The current state."""
        return self._state

    @property
    def done(self) -> bool:
        """True once the flow has asked to hang up."""
        return self._state == "done"

    @property
    def command(self) -> ActivateProfile | None:
        """The command chosen, once the entries are complete."""
        return self._command

    def start(self) -> list[FlowAction]:
        """Ask for the profile."""
        if self._state != "new":
            raise FlowError("the menu has started already")
        self._state = "menu"
        return self._ask([])

    def handle(self, event: FlowEvent) -> list[FlowAction]:
        """The actions for ``event``; ``FlowError`` when the flow is not waiting for it."""
        handler = _MENU_TABLE.get((self._state, type(event)))
        if handler is None:
            raise FlowError(f"{type(event).__name__} in state {self._state}")
        return handler(self, event)

    # -- questions --

    def _ask(self, lead: list[str]) -> list[FlowAction]:
        if self._state == "menu":
            prompt, max_digits, terminators = "choose_profile", 1, ""
        else:
            date_kind = self._profile is not None and self._profile.returns == "date"
            prompt = "enter_return_date" if date_kind else "enter_return_time"
            max_digits, terminators = 4, "#"
        collect = Collect(
            max_digits=max_digits,
            terminators=terminators,
            first_timeout=self.first_timeout,
            inter_timeout=self.inter_timeout,
        )
        return [Play((*lead, prompt), barge_in=True), collect]

    def _fail(self, lead: list[str]) -> list[FlowAction]:
        self._tries += 1
        if self._tries >= self.max_tries:
            self._state = "goodbye"
            return [Play((*lead, "goodbye"), barge_in=False)]
        return self._ask(lead)

    def _invalid(self) -> list[FlowAction]:
        return self._fail(["invalid_choice"])

    # -- handlers --

    def _on_timeout(self, event: Timeout) -> list[FlowAction]:
        return self._invalid() if event.digits else self._fail([])

    def _on_profile(self, event: Digits) -> list[FlowAction]:
        key = event.digits
        profile = self.rules.get(int(key)) if len(key) == 1 and key.isdigit() else None
        if profile is None:
            return self._invalid()
        self._profile = profile
        if profile.returns == "none":
            return self._execute(profile, DefaultReturn())
        self._state = "return"
        self._tries = 0
        return self._ask([])

    def _on_return(self, event: Digits) -> list[FlowAction]:
        assert self._profile is not None
        until = _until(self._profile, event.digits)
        if until is None:
            return self._invalid()
        return self._execute(self._profile, until)

    def _execute(self, profile: Profile, until: UntilSpec) -> list[FlowAction]:
        self._command = ActivateProfile(profile=profile.id, number=profile.number, until=until)
        self._state = "execute"
        return [Execute(self._command)]

    def _on_command_done(self, event: CommandDone) -> list[FlowAction]:
        prompts = confirmation(
            self._command,
            event.result,
            rules=self.rules,
            lang=self.lang,
            clock=self.clock,
            now=event.at,
        )
        self._state = "confirm"
        return [Play(prompts, barge_in=False)]

    def _on_last_prompt(self, _event: PromptDone) -> list[FlowAction]:
        self._state = "done"
        return [Hangup()]


def _until(profile: Profile, entry: str) -> UntilSpec | None:
    """The return for a keyed entry: "" (``#`` alone) is the default; four digits are
    MMDD for ``date`` profiles, HHMM otherwise; anything else is ``None`` (invalid)."""
    if entry == "":
        return DefaultReturn()
    if len(entry) != 4 or not entry.isdigit():
        return None
    first, second = int(entry[:2]), int(entry[2:])
    try:
        if profile.returns == "date":
            return OnDate(month=first, day=second)
        return AtTime(hour=first, minute=second)
    except ValueError:
        return None


_MENU_TABLE: dict[tuple[MenuState, type], _Handler] = {
    ("menu", Digits): ProfileMenu._on_profile,
    ("menu", Timeout): ProfileMenu._on_timeout,
    ("return", Digits): ProfileMenu._on_return,
    ("return", Timeout): ProfileMenu._on_timeout,
    ("execute", CommandDone): ProfileMenu._on_command_done,
    ("confirm", PromptDone): ProfileMenu._on_last_prompt,
    ("goodbye", PromptDone): ProfileMenu._on_last_prompt,
}
"""(state, event type) → handler; anything else is a ``FlowError``."""


# --- running a flow with a digit collector ---------------------------------------------

CallAction = Play | StopPrompt | StartTimer | CancelTimer | Execute | Hangup


class FlowRunner:
    """A flow plus a :class:`DigitCollector` per ``Collect``: the call controller feeds
    raw events and performs the :data:`CallAction` list each call returns —

    - ``Play``: start the prompts (a new ``Play`` replaces whatever plays);
    - ``StopPrompt``: stop the prompt now, and report no ``prompt_finished`` for it;
    - ``StartTimer(name, delay)`` / ``CancelTimer(name)``: ``callLater`` that calls
      ``timer_fired(name, now)``, and cancelling it;
    - ``Execute(command)``: run it, then call ``command_done(result, at, now)``;
    - ``Hangup``: end the call.

    Keys pressed while no entry is being collected are dropped; events after the
    hang-up are ignored. ``now`` is the controller's monotonic clock in seconds.
    """

    __slots__ = ("_collector", "_playing", "flow")

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self._collector: DigitCollector | None = None
        self._playing: Play | None = None

    @property
    def done(self) -> bool:
        """True once the flow has hung up."""
        return self.flow.done

    def start(self, now: float) -> list[CallAction]:
        """Start the flow."""
        return self._run(self.flow.start(), now)

    def digit(self, d: str | HasDigit, now: float) -> list[CallAction]:
        """A key press (a digit string or a ``DigitEvent``)."""
        if self._collector is None or self.done:
            return []
        return self._collected(self._collector.digit(d, now), now)

    def prompt_finished(self, now: float) -> list[CallAction]:
        """The prompt of the last ``Play`` has played to its end."""
        if self._playing is None or self.done:
            return []
        self._playing = None
        if self._collector is not None:
            return self._collected(self._collector.prompt_finished(now), now)
        return self._run(self.flow.handle(PromptDone()), now)

    def timer_fired(self, name: str, now: float) -> list[CallAction]:
        """A timer armed by ``StartTimer(name, ...)`` expired."""
        if self._collector is None or self.done:
            return []
        return self._collected(self._collector.timer_fired(name, now), now)

    def command_done(self, result: CommandResult, at: datetime, now: float) -> list[CallAction]:
        """The ``Execute``d command ran at ``at`` with ``result``."""
        return self._run(self.flow.handle(CommandDone(result=result, at=at)), now)

    def event(self, event: Any, now: float) -> list[Any]:
        """Any other event the flow waits for (a store lookup answered, a recording
        done: see :mod:`ivr.mailbox_menu`); actions it does not know pass through."""
        if self.done:
            return []
        return self._run(self.flow.handle(event), now)

    def _collected(self, actions: list[CollectorAction], now: float) -> list[CallAction]:
        out: list[CallAction] = []
        for action in actions:
            if isinstance(action, Collected | TimedOut):
                self._collector = None
                event = (
                    Digits(action.digits, action.terminator)
                    if isinstance(action, Collected)
                    else Timeout(action.digits)
                )
                out += self._run(self.flow.handle(event), now)
            else:
                if isinstance(action, StopPrompt):
                    self._playing = None
                out.append(action)
        return out

    def _run(self, actions: Sequence[FlowAction], now: float) -> list[CallAction]:
        out: list[CallAction] = []
        for action in actions:
            if isinstance(action, Collect):
                playing = self._playing
                barge_in = playing is not None and playing.barge_in
                self._collector = DigitCollector(action, barge_in=barge_in)
                started = self._collector.start(now, prompt_playing=playing is not None)
                out += self._collected(started, now)
                continue
            if isinstance(action, Play):
                self._playing = action
            elif isinstance(action, Hangup):
                self._playing = None
                self._collector = None
            out.append(action)
        return out
