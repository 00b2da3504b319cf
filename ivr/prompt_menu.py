"""System prompts from the phone (``*77<id>`` record, ``*99<id>`` play) as a pure flow.

Administrators only, and only with their PIN (checked by the PIN guard like a mailbox
PIN: :class:`ivr.mailbox_menu.CheckAccount` first, so a locked account is refused
before the PIN is asked). Recording runs :class:`ivr.record_menu.RecordMenu` on a
:class:`ivr.record_menu.SystemPrompt` target; playing plays the prompt, then hangs up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from ivr.flows import Collect, FlowError, Hangup, Play, PromptDone, Timeout
from ivr.flows import Digits as DigitsEvent
from ivr.mailbox_menu import AccountChecked, CheckAccount, CheckPin, PinChecked
from ivr.record_menu import RecordMenu, SystemPrompt

__all__ = ["PromptMenu"]

PromptState = Literal["new", "account", "pin", "checking", "recording", "playing", "bye", "done"]
_Handler = Callable[["PromptMenu", Any], list[Any]]


class PromptMenu:
    """``mode`` "record" or "play" system prompt ``target`` for the admin ``account``."""

    def __init__(
        self,
        *,
        mode: Literal["record", "play"],
        target: SystemPrompt,
        account: str,
        max_tries: int = 3,
        first_timeout: float = 5.0,
        record_seconds: float = 120.0,
    ) -> None:
        if mode not in ("record", "play"):
            raise ValueError(f"mode must be 'record' or 'play', got {mode!r}")
        self.mode = mode
        self.target = target
        self.account = account
        self.max_tries = max_tries
        self.first_timeout = first_timeout
        self.record_seconds = record_seconds
        self.child: RecordMenu | None = None
        self._state: PromptState = "new"
        self._tries = 0

    @property
    def state(self) -> PromptState:
        return self._state

    @property
    def done(self) -> bool:
        return self._state == "done" or (self.child is not None and self.child.done)

    def start(self) -> list[Any]:
        if self._state != "new":
            raise FlowError("the prompt menu has started already")
        self._state = "account"
        return [CheckAccount(self.account)]

    def handle(self, event: object) -> list[Any]:
        if self._state == "recording" and self.child is not None:
            return self.child.handle(event)
        handler = _TABLE.get((self._state, type(event)))
        if handler is None:
            raise FlowError(f"{type(event).__name__} in state {self._state}")
        return handler(self, event)

    def _ask_pin(self, lead: tuple[str, ...]) -> list[Any]:
        self._state = "pin"
        collect = Collect(max_digits=8, terminators="#", first_timeout=self.first_timeout)
        return [Play((*lead, "enter_pin"), barge_in=True), collect]

    def _bye(self, prompts: tuple[str, ...]) -> list[Any]:
        self._state = "bye"
        return [Play(prompts)]

    def _on_account(self, event: AccountChecked) -> list[Any]:
        if event.locked:
            return self._bye(("pin_locked",))
        if not event.exists:
            return self._bye(("invalid_code",))
        return self._ask_pin(())

    def _on_pin(self, event: DigitsEvent) -> list[Any]:
        if not event.digits.isdigit():
            return self._ask_pin(("wrong_pin",))
        self._state = "checking"
        return [CheckPin(self.account, event.digits)]

    def _on_timeout(self, event: Timeout) -> list[Any]:
        if event.digits:
            return self._on_pin(DigitsEvent(event.digits))
        self._tries += 1
        if self._tries >= self.max_tries:
            return self._bye(("goodbye",))
        return self._ask_pin(())

    def _on_checked(self, event: PinChecked) -> list[Any]:
        if event.outcome == "wrong":
            return self._ask_pin(("wrong_pin",))
        if event.outcome == "locked":
            return self._bye(("wrong_pin", "pin_locked"))
        if self.mode == "play":
            self._state = "playing"
            return [Play((self.target.name,))]
        self._state = "recording"
        self.child = RecordMenu(
            self.target,
            max_seconds=self.record_seconds,
            max_tries=self.max_tries,
            first_timeout=self.first_timeout,
        )
        return self.child.start()

    def _on_last(self, _event: PromptDone) -> list[Any]:
        self._state = "done"
        return [Hangup()]


_TABLE: dict[tuple[PromptState, type], _Handler] = {
    ("account", AccountChecked): PromptMenu._on_account,
    ("pin", DigitsEvent): PromptMenu._on_pin,
    ("pin", Timeout): PromptMenu._on_timeout,
    ("checking", PinChecked): PromptMenu._on_checked,
    ("playing", PromptDone): PromptMenu._on_last,
    ("bye", PromptDone): PromptMenu._on_last,
}
"""(state, event type) → handler; anything else is a ``FlowError``."""
