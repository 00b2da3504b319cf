"""Voicemail retrieval from the keypad (``*97``, ``*98``) as a pure flow.

Runs under :class:`ivr.flows.FlowRunner`. The flow asks the call controller for
store work with actions and hears back with events:

    CheckAccount(mailbox)       -> AccountChecked(exists, locked)
    CheckPin(mailbox, pin)      -> PinChecked("ok" | "wrong" | "locked")  (the PIN guard
                                   counts the tries; the flow only says what it heard)
    LoadMessages(mailbox)       -> MessagesLoaded(messages)
    MarkHeard / SaveMessage / DeleteMessage(id)   (no answer: the store runs them in order)
    ChangePin(mailbox, pin)     -> PinChanged(ok)   (stored in the directory, audited)

Flow: (``*98``: "enter mailbox" → ) "enter PIN" (unless the own device needs none)
→ "Du har två nya meddelanden (och ett sparat meddelande)" → each message with its
envelope ("Meddelande från 0 7 0 ..., måndag klockan 13 och 5") then the message menu.
Keys at a message: 1 replay, 2 next, 3 delete, 4 previous, 5 save, 0 mailbox options,
``*`` back to the first message, ``#`` skip to the next; every prompt can be
interrupted by a key (barge-in). After the last message: 1 repeat, 2 or ``#`` end,
4 the last message, 0 options, ``*`` the first message. Options: 1 record the greeting
of a profile, 2 record the name (:class:`ivr.record_menu.RecordMenu`, embedded),
3 change the PIN (the new PIN twice, 4-8 digits; an invalid or mismatching entry is
said and asked again; ``*`` alone goes back), ``*`` back. An invalid key says so and
asks again; ``max_tries`` failures in a row (invalid keys, timeouts) end with "goodbye".
The prompt ``message_<id>`` stands for a message's audio (the controller supplies it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from ivr.flows import Collect, FlowError, Hangup, Play, PromptDone, Timeout
from ivr.flows import Digits as DigitsEvent
from ivr.media import phrases
from ivr.record_menu import Greeting, Name, RecordMenu

__all__ = [
    "AccountChecked",
    "ChangePin",
    "CheckAccount",
    "CheckPin",
    "DeleteMessage",
    "LoadMessages",
    "MailboxMenu",
    "MarkHeard",
    "MessageInfo",
    "MessagesLoaded",
    "PinChanged",
    "PinChecked",
    "SaveMessage",
    "envelope",
    "message_prompt",
    "summary",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageInfo:
    """A message as the menu sees it; ``received`` in the company's local time."""

    id: int
    caller: str
    received: datetime
    heard: bool = False
    saved: bool = False


# --- actions and events ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckAccount:
    mailbox: str


@dataclass(frozen=True, slots=True)
class CheckPin:
    mailbox: str
    pin: str

    def __repr__(self) -> str:
        return f"CheckPin(mailbox={self.mailbox!r}, pin='***')"


@dataclass(frozen=True, slots=True)
class LoadMessages:
    mailbox: str


@dataclass(frozen=True, slots=True)
class MarkHeard:
    message_id: int


@dataclass(frozen=True, slots=True)
class SaveMessage:
    message_id: int


@dataclass(frozen=True, slots=True)
class DeleteMessage:
    message_id: int


@dataclass(frozen=True, slots=True)
class ChangePin:
    """Store ``pin`` as the mailbox owner's new PIN (checked: 4-8 digits)."""

    mailbox: str
    pin: str

    def __repr__(self) -> str:
        return f"ChangePin(mailbox={self.mailbox!r}, pin='***')"


@dataclass(frozen=True, slots=True)
class PinChanged:
    ok: bool


@dataclass(frozen=True, slots=True)
class AccountChecked:
    exists: bool
    locked: bool = False


@dataclass(frozen=True, slots=True)
class PinChecked:
    outcome: Literal["ok", "wrong", "locked"]


@dataclass(frozen=True, slots=True)
class MessagesLoaded:
    messages: tuple[MessageInfo, ...]


# --- words -------------------------------------------------------------------------------


def message_prompt(message_id: int) -> str:
    """The prompt name standing for a message's audio."""
    return f"message_{message_id}"


def _count(n: int, one: str, many: str) -> list[str]:
    if n == 0:
        return ["no", many]
    amount = phrases.number(n) if n <= 59 else phrases.digits(str(n))
    return [*amount, one if n == 1 else many]


def summary(messages: Sequence[MessageInfo]) -> list[str]:
    """'Du har två nya meddelanden och ett sparat meddelande.'"""
    new = sum(1 for m in messages if not m.heard and not m.saved)
    saved = sum(1 for m in messages if m.saved)
    words = ["you_have", *_count(new, "new_message", "new_messages")]
    if saved:
        words += ["and", *_count(saved, "saved_message", "saved_messages")]
    return words


def envelope(message: MessageInfo, now: datetime, lang: str, clock: str | None = None) -> list[str]:
    """'Meddelande från noll sju noll ..., måndag klockan tretton och fem.'"""
    number = "".join(c for c in message.caller if c.isdigit())
    caller = phrases.digits(number) if number else ["unknown_caller"]
    received = message.received
    day = ["today"] if received.date() == now.date() else [f"weekday_{received.weekday()}"]
    return [
        "message_from",
        *caller,
        phrases.PAUSE,
        *day,
        "at",
        *phrases.time_words(received.time(), lang, clock),
    ]


# --- the menu ------------------------------------------------------------------------------

MailboxState = Literal[
    "new",
    "mailbox",
    "account",
    "pin",
    "checking",
    "loading",
    "message",
    "end",
    "options",
    "greeting_profile",
    "recording",
    "new_pin",
    "new_pin_again",
    "changing",
    "bye",
    "done",
]
_Handler = Callable[["MailboxMenu", Any], list[Any]]
PIN_LENGTHS = range(4, 9)  # a PIN has 4-8 digits (as the directory requires)


class MailboxMenu:
    """One caller in one mailbox. ``mailbox`` None: ask for it (``*98``); ``ask_pin``:
    ask for the mailbox's PIN (always for ``*98``). ``profiles``: the profile digits
    and ids whose greeting may be recorded from the options."""

    def __init__(
        self,
        *,
        lang: str,
        now: datetime,
        mailbox: str | None,
        ask_pin: bool,
        profiles: dict[int, str],
        clock: str | None = None,
        max_tries: int = 3,
        first_timeout: float = 5.0,
        inter_timeout: float = 3.0,
        record_seconds: float = 120.0,
    ) -> None:
        if lang not in phrases.LANGS:
            raise ValueError(f"unsupported language {lang!r}")
        if mailbox is None and not ask_pin:
            raise ValueError("a mailbox asked for needs its PIN")
        if max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        self.lang = lang
        self.now = now
        self.mailbox = mailbox
        self.typed = mailbox is None  # asked for: an unknown one may be typed again
        self.ask_pin = ask_pin
        self.profiles = dict(profiles)
        self.clock = clock
        self.max_tries = max_tries
        self.first_timeout = first_timeout
        self.inter_timeout = inter_timeout
        self.record_seconds = record_seconds
        self.messages: list[MessageInfo] = []
        self.index = 0
        self.child: RecordMenu | None = None
        self._state: MailboxState = "new"
        self._tries = 0
        self._new_pin = ""

    @property
    def state(self) -> MailboxState:
        return self._state

    @property
    def done(self) -> bool:
        return self._state == "done"

    def start(self) -> list[Any]:
        if self._state != "new":
            raise FlowError("the mailbox menu has started already")
        if self.mailbox is None:
            return self._ask_mailbox(())
        if self.ask_pin:
            self._state = "account"
            return [CheckAccount(self.mailbox)]
        self._state = "loading"
        return [LoadMessages(self.mailbox)]

    def handle(self, event: object) -> list[Any]:
        if self._state == "recording" and self.child is not None:
            return self._in_child(event)
        handler = _TABLE.get((self._state, type(event)))
        if handler is None:
            raise FlowError(f"{type(event).__name__} in state {self._state}")
        return handler(self, event)

    # -- questions --

    def _collect(self, max_digits: int = 1, terminators: str = "") -> Collect:
        return Collect(
            max_digits=max_digits,
            terminators=terminators,
            first_timeout=self.first_timeout,
            inter_timeout=self.inter_timeout,
        )

    def _ask_mailbox(self, lead: tuple[str, ...]) -> list[Any]:
        self._state = "mailbox"
        return [Play((*lead, "enter_mailbox"), barge_in=True), self._collect(15, "#")]

    def _ask_pin(self, lead: tuple[str, ...]) -> list[Any]:
        self._state = "pin"
        return [Play((*lead, "enter_pin"), barge_in=True), self._collect(8, "#")]

    def _bye(self, lead: tuple[str, ...]) -> list[Any]:
        self._state = "bye"
        return [Play((*lead, "goodbye"))]

    def _fail(self, lead: tuple[str, ...], again: Callable[[tuple[str, ...]], list[Any]]) -> list:
        self._tries += 1
        if self._tries >= self.max_tries:
            return self._bye(lead)
        return again(lead)

    def _present(self, lead: tuple[str, ...] = ()) -> list[Any]:
        """The current message (envelope, audio, menu) or, past the last, the end menu."""
        out: list[Any] = []
        if self.index < len(self.messages):
            message = self.messages[self.index]
            self._state = "message"
            if not message.heard:
                self.messages[self.index] = _replace(message, heard=True)
                out.append(MarkHeard(message.id))
            words = (
                *lead,
                *envelope(message, self.now, self.lang, self.clock),
                message_prompt(message.id),
                "message_menu",
            )
        else:
            self._state = "end"
            words = (*lead, "no_more_messages", "end_menu")
        return [*out, Play(words, barge_in=True), self._collect()]

    def _options(self, lead: tuple[str, ...]) -> list[Any]:
        self._state = "options"
        return [Play((*lead, "mailbox_options"), barge_in=True), self._collect()]

    def _ask_new_pin(self, lead: tuple[str, ...]) -> list[Any]:
        self._state = "new_pin"
        self._new_pin = ""
        # one digit more than a PIN may have: a too long entry is heard as such
        return [Play((*lead, "enter_new_pin"), barge_in=True), self._collect(9, "#")]

    def _ask_new_pin_again(self, lead: tuple[str, ...]) -> list[Any]:
        self._state = "new_pin_again"
        return [Play((*lead, "repeat_new_pin"), barge_in=True), self._collect(9, "#")]

    def _ask_profile(self, lead: tuple[str, ...]) -> list[Any]:
        self._state = "greeting_profile"
        return [Play((*lead, "choose_profile"), barge_in=True), self._collect()]

    # -- handlers: getting in --

    def _on_mailbox(self, event: DigitsEvent) -> list[Any]:
        if not event.digits.isdigit():
            return self._fail(("invalid_choice",), self._ask_mailbox)
        self.mailbox = event.digits
        self._state = "account"
        return [CheckAccount(event.digits)]

    def _on_mailbox_timeout(self, event: Timeout) -> list[Any]:
        if event.digits:
            return self._on_mailbox(DigitsEvent(event.digits))
        return self._fail((), self._ask_mailbox)

    def _on_account(self, event: AccountChecked) -> list[Any]:
        if event.locked:
            self._state = "bye"
            return [Play(("pin_locked",))]
        if not event.exists:
            if not self.typed:
                return self._bye(("invalid_choice",))
            return self._fail(("invalid_choice",), self._ask_mailbox)
        self._tries = 0
        return self._ask_pin(())

    def _on_pin(self, event: DigitsEvent) -> list[Any]:
        if not event.digits.isdigit():
            return self._fail(("wrong_pin",), self._ask_pin)
        assert self.mailbox is not None
        self._state = "checking"
        return [CheckPin(self.mailbox, event.digits)]

    def _on_pin_timeout(self, event: Timeout) -> list[Any]:
        if event.digits:
            return self._on_pin(DigitsEvent(event.digits))
        return self._fail((), self._ask_pin)

    def _on_pin_checked(self, event: PinChecked) -> list[Any]:
        if event.outcome == "ok":
            assert self.mailbox is not None
            self._tries = 0
            self._state = "loading"
            return [LoadMessages(self.mailbox)]
        if event.outcome == "wrong":
            return self._ask_pin(("wrong_pin",))
        self._state = "bye"
        return [Play(("wrong_pin", "pin_locked"))]

    def _on_loaded(self, event: MessagesLoaded) -> list[Any]:
        new = [m for m in event.messages if not m.heard and not m.saved]
        rest = [m for m in event.messages if m.heard or m.saved]
        self.messages = new + rest
        self.index = 0
        lead = (*summary(self.messages), phrases.PAUSE)
        if not self.messages:  # "Du har inga nya meddelanden." then the end menu
            self._state = "end"
            return [Play((*lead, "end_menu"), barge_in=True), self._collect()]
        return self._present(lead)

    # -- handlers: messages --

    def _on_message_key(self, event: DigitsEvent) -> list[Any]:
        key = event.digits
        message = self.messages[self.index]
        if len(key) != 1 or key not in "123450*#":
            return self._invalid_here()
        self._tries = 0
        if key == "1":
            return self._present()
        if key in "2#":
            self.index += 1
            return self._present()
        if key == "3":
            del self.messages[self.index]
            return [DeleteMessage(message.id), *self._present(("message_deleted",))]
        if key == "4":
            self.index = max(self.index - 1, 0)
            return self._present()
        if key == "5":
            self.messages[self.index] = _replace(message, heard=True, saved=True)
            return [
                SaveMessage(message.id),
                Play(("message_saved", "message_menu"), barge_in=True),
                self._collect(),
            ]
        if key == "0":
            return self._options(())
        self.index = 0  # "*": back to the first message
        return self._present()

    def _on_end_key(self, event: DigitsEvent) -> list[Any]:
        key = event.digits
        valid = key in ("1", "2", "#", "0") or (key in ("4", "*") and bool(self.messages))
        if not valid:
            return self._invalid_here()
        self._tries = 0
        if key == "1":
            return self._present()
        if key in "2#":
            return self._bye(())
        if key == "4":
            self.index = len(self.messages) - 1
            return self._present()
        if key == "0":
            return self._options(())
        self.index = 0  # "*": back to the first message
        return self._present()

    def _invalid_here(self) -> list[Any]:
        return self._fail(("invalid_choice",), self._menu_again)

    def _menu_again(self, lead: tuple[str, ...]) -> list[Any]:
        prompt = "message_menu" if self._state == "message" else "end_menu"
        return [Play((*lead, prompt), barge_in=True), self._collect()]

    def _on_menu_timeout(self, _event: Timeout) -> list[Any]:
        return self._fail((), self._menu_again)

    # -- handlers: options --

    def _on_option(self, event: DigitsEvent) -> list[Any]:
        key = event.digits
        if key == "1":
            self._tries = 0
            return self._ask_profile(())
        if key == "2":
            assert self.mailbox is not None
            return self._record(RecordMenu(Name(extension=self.mailbox), **self._child_args()))
        if key == "3":
            self._tries = 0
            return self._ask_new_pin(())
        if key == "*":
            self._tries = 0
            return self._present()
        return self._fail(("invalid_choice",), self._options)

    def _on_option_timeout(self, _event: Timeout) -> list[Any]:
        return self._fail((), self._options)

    def _on_profile(self, event: DigitsEvent) -> list[Any]:
        key = event.digits
        profile = self.profiles.get(int(key)) if key.isdigit() else None
        if profile is None:
            if key == "*":
                self._tries = 0
                return self._options(())
            return self._fail(("invalid_choice",), self._ask_profile)
        assert self.mailbox is not None
        target = Greeting(extension=self.mailbox, profile=profile)
        return self._record(RecordMenu(target, **self._child_args()))

    def _on_profile_timeout(self, _event: Timeout) -> list[Any]:
        return self._fail((), self._ask_profile)

    # -- handlers: change PIN --

    def _on_new_pin(self, event: DigitsEvent) -> list[Any]:
        entry = event.digits
        if entry == "*":
            self._tries = 0
            return self._options(())
        if not entry.isdigit() or len(entry) not in PIN_LENGTHS:
            return self._fail(("invalid_new_pin",), self._ask_new_pin)
        self._new_pin = entry
        return self._ask_new_pin_again(())

    def _on_new_pin_timeout(self, event: Timeout) -> list[Any]:
        if event.digits:
            return self._on_new_pin(DigitsEvent(event.digits))
        return self._fail((), self._ask_new_pin)

    def _on_new_pin_again(self, event: DigitsEvent) -> list[Any]:
        entry = event.digits
        if entry == "*":
            self._tries = 0
            return self._options(())
        if entry != self._new_pin:
            return self._fail(("pins_differ",), self._ask_new_pin)
        assert self.mailbox is not None
        self._state = "changing"
        return [ChangePin(self.mailbox, entry)]

    def _on_new_pin_again_timeout(self, event: Timeout) -> list[Any]:
        if event.digits:
            return self._on_new_pin_again(DigitsEvent(event.digits))
        return self._fail((), self._ask_new_pin_again)

    def _on_pin_changed(self, event: PinChanged) -> list[Any]:
        self._new_pin = ""
        self._tries = 0
        return self._options(("pin_changed",) if event.ok else ("pin_not_changed",))

    def _child_args(self) -> dict[str, Any]:
        return {
            "max_seconds": self.record_seconds,
            "max_tries": self.max_tries,
            "first_timeout": self.first_timeout,
            "embedded": True,
        }

    def _record(self, child: RecordMenu) -> list[Any]:
        self._tries = 0
        self.child = child
        self._state = "recording"
        return child.start()

    def _in_child(self, event: object) -> list[Any]:
        child = self.child
        assert child is not None
        actions = child.handle(event)
        if child.finished:
            self.child = None
            return [*actions, *self._options(())]
        return actions

    def _on_bye_done(self, _event: PromptDone) -> list[Any]:
        self._state = "done"
        return [Hangup()]


def _replace(message: MessageInfo, **changes: Any) -> MessageInfo:
    return replace(message, **changes)


_TABLE: dict[tuple[MailboxState, type], _Handler] = {
    ("mailbox", DigitsEvent): MailboxMenu._on_mailbox,
    ("mailbox", Timeout): MailboxMenu._on_mailbox_timeout,
    ("account", AccountChecked): MailboxMenu._on_account,
    ("pin", DigitsEvent): MailboxMenu._on_pin,
    ("pin", Timeout): MailboxMenu._on_pin_timeout,
    ("checking", PinChecked): MailboxMenu._on_pin_checked,
    ("loading", MessagesLoaded): MailboxMenu._on_loaded,
    ("message", DigitsEvent): MailboxMenu._on_message_key,
    ("message", Timeout): MailboxMenu._on_menu_timeout,
    ("end", DigitsEvent): MailboxMenu._on_end_key,
    ("end", Timeout): MailboxMenu._on_menu_timeout,
    ("options", DigitsEvent): MailboxMenu._on_option,
    ("options", Timeout): MailboxMenu._on_option_timeout,
    ("greeting_profile", DigitsEvent): MailboxMenu._on_profile,
    ("greeting_profile", Timeout): MailboxMenu._on_profile_timeout,
    ("new_pin", DigitsEvent): MailboxMenu._on_new_pin,
    ("new_pin", Timeout): MailboxMenu._on_new_pin_timeout,
    ("new_pin_again", DigitsEvent): MailboxMenu._on_new_pin_again,
    ("new_pin_again", Timeout): MailboxMenu._on_new_pin_again_timeout,
    ("changing", PinChanged): MailboxMenu._on_pin_changed,
    ("bye", PromptDone): MailboxMenu._on_bye_done,
}
"""(state, event type) → handler; anything else is a ``FlowError``."""
