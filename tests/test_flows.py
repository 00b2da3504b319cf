"""The *23 profile menu as a pure flow, and FlowRunner driven by a fake controller."""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.config import load_config
from ivr.confirm import confirmation
from ivr.dtmf.collector import (
    DTMF,
    FIRST_DIGIT,
    INTER_DIGIT,
    CancelTimer,
    StartTimer,
    StopPrompt,
)
from ivr.dtmf.events import DigitEvent
from ivr.flows import (
    MENU_PROMPTS,
    CallAction,
    Collect,
    CommandDone,
    Digits,
    Execute,
    FlowError,
    FlowEvent,
    FlowRunner,
    Hangup,
    Play,
    ProfileMenu,
    PromptDone,
    Timeout,
)
from ivr.routing.commands import CommandResult, apply_command
from ivr.routing.features import ActivateProfile
from ivr.routing.profiles import AtTime, DefaultReturn, OnDate
from ivr.routing.state import UserState

REPO = Path(__file__).resolve().parents[1]
RULES = load_config(REPO / "config" / "ivr.toml").rules
TZ = ZoneInfo("Europe/Stockholm")
NOW = datetime(2025, 3, 12, 10, 0, tzinfo=TZ)  # a Wednesday

ASK_PROFILE = [
    Play(("choose_profile",), barge_in=True),
    Collect(max_digits=1, terminators="", first_timeout=5.0, inter_timeout=3.0),
]
ASK_TIME = [
    Play(("enter_return_time",), barge_in=True),
    Collect(max_digits=4, terminators="#", first_timeout=5.0, inter_timeout=3.0),
]
ASK_DATE = [Play(("enter_return_date",), barge_in=True), ASK_TIME[1]]
REASK_PROFILE = [Play(("invalid_choice", "choose_profile"), barge_in=True), ASK_PROFILE[1]]
REASK_TIME = [Play(("invalid_choice", "enter_return_time"), barge_in=True), ASK_TIME[1]]
REASK_DATE = [Play(("invalid_choice", "enter_return_date"), barge_in=True), ASK_TIME[1]]
GOODBYE = [Play(("goodbye",), barge_in=False)]
INVALID_GOODBYE = [Play(("invalid_choice", "goodbye"), barge_in=False)]


def activate(profile: str, number: int, until=None) -> Execute:
    return Execute(ActivateProfile(profile=profile, number=number, until=until or DefaultReturn()))


def result_of(command: ActivateProfile) -> CommandResult:
    return apply_command(
        command, UserState(user="1001"), rules=RULES, schedules=(), by="1001", via="ivr", now=NOW
    )


def menu_in(state: str, digit: str = "2", lang: str = "sv") -> ProfileMenu:
    """A menu driven into ``state`` (profile ``digit`` for the later states)."""
    menu = ProfileMenu(RULES, lang)
    if state == "new":
        return menu
    menu.start()
    if state == "menu":
        return menu
    if state == "goodbye":
        for _ in range(3):
            menu.handle(Timeout())
        return menu
    menu.handle(Digits(digit))
    if state == "return":
        return menu
    if menu.state == "return":
        menu.handle(Digits("", "#"))
    assert menu.command is not None
    if state == "execute":
        return menu
    menu.handle(CommandDone(result=result_of(menu.command), at=NOW))
    if state == "confirm":
        return menu
    menu.handle(PromptDone())
    assert menu.state == state == "done"
    return menu


# --- the first question: the profile -------------------------------------------------


def test_start_asks_for_the_profile() -> None:
    menu = ProfileMenu(RULES, "sv")
    assert menu.start() == ASK_PROFILE
    assert menu.state == "menu" and not menu.done


MENU_KEYS = {
    "1": ([activate("available", 1)], "execute"),
    "2": (ASK_TIME, "return"),
    "3": (ASK_TIME, "return"),
    "4": (ASK_TIME, "return"),
    "5": (ASK_TIME, "return"),  # next_workday: a time, or # for 08:00 the next working day
    "6": (ASK_DATE, "return"),
    "7": (ASK_DATE, "return"),
    "8": (ASK_DATE, "return"),
    "9": ([activate("dnd", 9)], "execute"),
    **{key: (REASK_PROFILE, "menu") for key in "0*#ABCD"},
}


@pytest.mark.parametrize("key", DTMF)
def test_every_key_in_the_menu(key: str) -> None:
    menu = menu_in("menu")
    actions, state = MENU_KEYS[key]
    assert menu.handle(Digits(key)) == actions
    assert menu.state == state


@pytest.mark.parametrize("entry", [Digits("", "#"), Digits("22"), Digits("")])
def test_odd_entries_in_the_menu_are_invalid(entry: Digits) -> None:
    assert menu_in("menu").handle(entry) == REASK_PROFILE


def test_a_profile_missing_from_the_rules_is_invalid() -> None:
    rules = type(RULES)(profiles=tuple(p for p in RULES.profiles if p.number != 4))
    menu = ProfileMenu(rules, "sv")
    menu.start()
    assert menu.handle(Digits("4")) == REASK_PROFILE


# --- the second question: the return -------------------------------------------------


@pytest.mark.parametrize(
    ("digit", "entry", "expected"),
    [
        ("2", Digits("", "#"), [activate("lunch", 2)]),
        ("2", Digits("1300"), [activate("lunch", 2, AtTime(hour=13, minute=0))]),
        ("2", Digits("0000"), [activate("lunch", 2, AtTime(hour=0, minute=0))]),
        ("2", Digits("2359"), [activate("lunch", 2, AtTime(hour=23, minute=59))]),
        ("3", Digits("0930"), [activate("meeting", 3, AtTime(hour=9, minute=30))]),
        ("5", Digits("", "#"), [activate("gone", 5)]),
        ("5", Digits("0715"), [activate("gone", 5, AtTime(hour=7, minute=15))]),
        ("2", Digits("2400"), REASK_TIME),
        ("2", Digits("1360"), REASK_TIME),
        ("2", Digits("13", "#"), REASK_TIME),
        ("2", Digits("13*0"), REASK_TIME),
        ("2", Digits("1", "*"), REASK_TIME),
        ("2", Digits("#", "#"), REASK_TIME),
        ("2", Digits("130A"), REASK_TIME),
        ("7", Digits("", "#"), [activate("vacation", 7)]),
        ("7", Digits("0101"), [activate("vacation", 7, OnDate(month=1, day=1))]),
        ("7", Digits("1231"), [activate("vacation", 7, OnDate(month=12, day=31))]),
        ("6", Digits("0229"), [activate("trip", 6, OnDate(month=2, day=29))]),
        ("8", Digits("", "#"), [activate("sick", 8)]),
        ("7", Digits("1301"), REASK_DATE),
        ("7", Digits("0230"), REASK_DATE),
        ("7", Digits("0431"), REASK_DATE),
        ("7", Digits("0000"), REASK_DATE),
        ("7", Digits("011"), REASK_DATE),
    ],
)
def test_return_entries(digit: str, entry: Digits, expected: list) -> None:
    menu = menu_in("return", digit)
    assert menu.handle(entry) == expected
    assert menu.state == ("execute" if isinstance(expected[0], Execute) else "return")


def test_a_timeout_after_some_digits_is_invalid() -> None:
    assert menu_in("return").handle(Timeout("13")) == REASK_TIME


def test_no_input_for_the_return_asks_again() -> None:
    assert menu_in("return", "7").handle(Timeout()) == ASK_DATE


# --- retries and the three-try limit ---------------------------------------------------


def test_no_input_three_times_says_goodbye_and_hangs_up() -> None:
    menu = menu_in("menu")
    assert menu.handle(Timeout()) == ASK_PROFILE
    assert menu.handle(Timeout()) == ASK_PROFILE
    assert menu.handle(Timeout()) == GOODBYE
    assert menu.state == "goodbye"
    assert menu.handle(PromptDone()) == [Hangup()]
    assert menu.done and menu.command is None


def test_invalid_three_times_says_invalid_goodbye() -> None:
    menu = menu_in("menu")
    assert menu.handle(Digits("0")) == REASK_PROFILE
    assert menu.handle(Digits("*")) == REASK_PROFILE
    assert menu.handle(Digits("#")) == INVALID_GOODBYE
    assert menu.handle(PromptDone()) == [Hangup()]


def test_invalid_and_no_input_share_the_tries() -> None:
    menu = menu_in("menu")
    assert menu.handle(Digits("0")) == REASK_PROFILE
    assert menu.handle(Timeout()) == ASK_PROFILE
    assert menu.handle(Digits("0")) == INVALID_GOODBYE


def test_third_try_may_still_succeed() -> None:
    menu = menu_in("menu")
    menu.handle(Digits("0"))
    menu.handle(Timeout())
    assert menu.handle(Digits("2")) == ASK_TIME


def test_each_question_gets_its_own_tries() -> None:
    menu = menu_in("menu")
    menu.handle(Digits("0"))
    menu.handle(Digits("0"))
    assert menu.handle(Digits("2")) == ASK_TIME
    assert menu.handle(Digits("9999")) == REASK_TIME
    assert menu.handle(Timeout()) == ASK_TIME
    assert menu.handle(Digits("1200")) == [activate("lunch", 2, AtTime(hour=12, minute=0))]


def test_return_question_gives_up_after_three_tries() -> None:
    menu = menu_in("return", "6")
    assert menu.handle(Digits("9999")) == REASK_DATE
    assert menu.handle(Timeout("1")) == REASK_DATE
    assert menu.handle(Timeout()) == GOODBYE
    assert menu.handle(PromptDone()) == [Hangup()]
    assert menu.command is None


def test_max_tries_is_configurable() -> None:
    menu = ProfileMenu(RULES, "en", max_tries=1)
    menu.start()
    assert menu.handle(Digits("0")) == INVALID_GOODBYE


def test_timeouts_are_configurable() -> None:
    menu = ProfileMenu(RULES, "sv", first_timeout=8.0, inter_timeout=2.5)
    assert menu.start()[1] == Collect(
        max_digits=1, terminators="", first_timeout=8.0, inter_timeout=2.5
    )


# --- execute, confirm, hang up ---------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "digit", "entry", "spoken"),
    [
        ("sv", "2", "1300", ("profile_2", "activated", "pause", "back", "at", "num_13")),
        (
            "en",
            "2",
            "1330",
            ("profile_2", "activated", "pause", "back", "at", "num_1", "num_30", "pm"),
        ),
        ("sv", "5", "", ("profile_5", "activated", "pause", "back", "tomorrow", "at", "num_8")),
        ("sv", "1", None, ("profile_1", "activated")),
        ("en", "9", None, ("profile_9", "activated")),
    ],
)
def test_confirmation_then_hangup(
    lang: str, digit: str, entry: str | None, spoken: tuple[str, ...]
) -> None:
    menu = menu_in("menu", lang=lang)
    menu.handle(Digits(digit))
    if entry is not None:
        menu.handle(Digits(entry, "#" if entry == "" else None))
    assert menu.state == "execute" and menu.command is not None
    done = CommandDone(result=result_of(menu.command), at=NOW)
    assert menu.handle(done) == [Play(spoken, barge_in=False)]
    assert menu.state == "confirm"
    assert menu.handle(PromptDone()) == [Hangup()]
    assert menu.done


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_a_date_return_is_confirmed_by_ivr_confirm(lang: str) -> None:
    menu = menu_in("return", "7", lang=lang)
    menu.handle(Digits("0104"))
    assert menu.command is not None
    result = result_of(menu.command)
    spoken = confirmation(menu.command, result, rules=RULES, lang=lang, clock=None, now=NOW)
    assert spoken[:4] == ["profile_7", "activated", "pause", "back"]
    assert {"weekday_6", "ordinal_4", "month_1"} <= set(spoken)  # Sunday 4 January 2026
    assert menu.handle(CommandDone(result=result, at=NOW)) == [Play(spoken, barge_in=False)]


def test_twelve_hour_clock_in_swedish() -> None:
    menu = ProfileMenu(RULES, "sv", clock="12h")
    menu.start()
    menu.handle(Digits("2"))
    menu.handle(Digits("1330"))
    assert menu.command is not None
    played = menu.handle(CommandDone(result=result_of(menu.command), at=NOW))
    assert played == [Play(("profile_2", "activated", "pause", "back", "at", "half", "num_2"))]


# --- events out of place -----------------------------------------------------------------

LUNCH_RESULT = result_of(ActivateProfile(profile="lunch", number=2))
EVENTS: dict[str, FlowEvent] = {
    "PromptDone": PromptDone(),
    "Digits": Digits("2"),
    "Timeout": Timeout(),
    "CommandDone": CommandDone(result=LUNCH_RESULT, at=NOW),
}
ACCEPTS = {
    "new": set(),
    "menu": {"Digits", "Timeout"},
    "return": {"Digits", "Timeout"},
    "execute": {"CommandDone"},
    "confirm": {"PromptDone"},
    "goodbye": {"PromptDone"},
    "done": set(),
}


@pytest.mark.parametrize(
    ("state", "event"),
    [(s, e) for s in ACCEPTS for e in EVENTS if e not in ACCEPTS[s]],
)
def test_unexpected_events_are_flow_errors(state: str, event: str) -> None:
    menu = menu_in(state)
    with pytest.raises(FlowError, match=f"{event} in state {state}"):
        menu.handle(EVENTS[event])
    assert menu.state == state


@pytest.mark.parametrize("state", [s for s in ACCEPTS if s != "new"])
def test_start_only_once(state: str) -> None:
    with pytest.raises(FlowError, match="started"):
        menu_in(state).start()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lang": "fi"}, "language"),
        ({"clock": "25h"}, "clock"),
        ({"max_tries": 0}, "max_tries"),
        ({"max_tries": True}, "max_tries"),
        ({"first_timeout": 0}, "first_timeout"),
        ({"inter_timeout": float("nan")}, "inter_timeout"),
    ],
)
def test_menu_validates_its_inputs(kwargs: dict, message: str) -> None:
    args = {"lang": "sv", **kwargs}
    with pytest.raises(ValueError, match=message):
        ProfileMenu(RULES, **args)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Play(()),
        lambda: Play(("../etc/passwd",)),
        lambda: Play(("Choose",)),
        lambda: Digits("12x"),
        lambda: Digits("1", "##"),
        lambda: Timeout("?"),
        lambda: CommandDone(result=LUNCH_RESULT, at=datetime(2025, 3, 12)),
        lambda: CommandDone(result="ok", at=NOW),  # type: ignore[arg-type]
        lambda: Collect(max_digits=0),
    ],
)
def test_actions_and_events_validate_themselves(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_play_keeps_prompts_as_a_tuple() -> None:
    assert Play(["a", "b"], barge_in=True) == Play(("a", "b"), True)  # type: ignore[arg-type]
    assert hash(Play(["a"])) == hash(Play(("a",)))  # type: ignore[arg-type]


# --- the prompts exist ---------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_menu_prompts_are_shipped(lang: str) -> None:
    manifest = tomllib.loads((REPO / "prompts" / "prompts.toml").read_text(encoding="utf-8"))
    for name in MENU_PROMPTS:
        assert name in manifest[lang], name
        assert (REPO / "prompts" / lang / f"{name}.wav").is_file(), name


# --- FlowRunner with a fake call controller --------------------------------------------------


class Controller:
    """Performs CallActions on a float clock: each prompt name plays for one second."""

    def __init__(self, lang: str = "sv") -> None:
        self.runner = FlowRunner(ProfileMenu(RULES, lang))
        self.now = 0.0
        self.timers: dict[str, float] = {}
        self.prompt_end: float | None = None
        self.log: list[tuple[float, CallAction]] = []
        self.hung_up = False

    def perform(self, actions: list[CallAction]) -> None:
        executed: list[Execute] = []
        for action in actions:
            assert not self.hung_up, action
            self.log.append((self.now, action))
            if isinstance(action, Play):
                self.prompt_end = self.now + len(action.prompts)
            elif isinstance(action, StopPrompt):
                assert self.prompt_end is not None
                self.prompt_end = None
            elif isinstance(action, StartTimer):
                assert action.name not in self.timers, "StartTimer on an armed timer"
                self.timers[action.name] = self.now + action.delay
            elif isinstance(action, CancelTimer):
                del self.timers[action.name]
            elif isinstance(action, Execute):
                executed.append(action)
            else:
                assert isinstance(action, Hangup)
                assert not self.timers, "timers left armed at hang-up"
                self.hung_up = True
        for action in executed:
            assert isinstance(action.command, ActivateProfile)
            result = result_of(action.command)
            self.perform(self.runner.command_done(result, NOW, self.now))

    def start(self) -> None:
        self.perform(self.runner.start(self.now))

    def press(self, key: str, after: float = 0.0) -> None:
        self.advance(after)
        self.perform(self.runner.digit(key, self.now))

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        while True:
            due = [(t, "prompt") for t in [self.prompt_end] if t is not None]
            due += [(t, name) for name, t in self.timers.items()]
            due = [d for d in due if d[0] <= until]
            if not due:
                break
            self.now, what = min(due)
            if what == "prompt":
                self.prompt_end = None
                self.perform(self.runner.prompt_finished(self.now))
            else:
                del self.timers[what]
                self.perform(self.runner.timer_fired(what, self.now))
        self.now = until


def test_runner_whole_call_with_barge_in() -> None:
    c = Controller()
    c.start()
    c.press("2", after=0.5)  # barges into "Välj profil"
    c.advance(1.0)  # "Ange återkomsttid" plays to its end at 1.5
    for key in "1300":
        c.press(key, after=0.5)
    c.advance(10.0)
    lunch = ActivateProfile(profile="lunch", number=2, until=AtTime(hour=13, minute=0))
    assert c.log == [
        (0.0, Play(("choose_profile",), True)),
        (0.5, StopPrompt()),
        (0.5, Play(("enter_return_time",), True)),
        (1.5, StartTimer(FIRST_DIGIT, 5.0)),
        (2.0, CancelTimer(FIRST_DIGIT)),
        (2.0, StartTimer(INTER_DIGIT, 3.0)),
        (2.5, CancelTimer(INTER_DIGIT)),
        (2.5, StartTimer(INTER_DIGIT, 3.0)),
        (3.0, CancelTimer(INTER_DIGIT)),
        (3.0, StartTimer(INTER_DIGIT, 3.0)),
        (3.5, CancelTimer(INTER_DIGIT)),
        (3.5, Execute(lunch)),
        (3.5, Play(("profile_2", "activated", "pause", "back", "at", "num_13"), False)),
        (9.5, Hangup()),
    ]
    assert c.hung_up and c.runner.done


def test_runner_no_input_three_times() -> None:
    c = Controller("en")
    c.start()
    c.advance(100.0)
    assert c.log == [
        (0.0, Play(("choose_profile",), True)),
        (1.0, StartTimer(FIRST_DIGIT, 5.0)),
        (6.0, Play(("choose_profile",), True)),
        (7.0, StartTimer(FIRST_DIGIT, 5.0)),
        (12.0, Play(("choose_profile",), True)),
        (13.0, StartTimer(FIRST_DIGIT, 5.0)),
        (18.0, Play(("goodbye",), False)),
        (19.0, Hangup()),
    ]


def test_runner_hash_alone_takes_the_default_return() -> None:
    c = Controller()
    c.start()
    c.press("5", after=2.0)  # after the prompt: the first-digit timer was running
    c.press("#", after=0.2)  # barges into "Ange återkomsttid"
    gone = ActivateProfile(profile="gone", number=5)
    assert [a for _, a in c.log] == [
        Play(("choose_profile",), True),
        StartTimer(FIRST_DIGIT, 5.0),
        CancelTimer(FIRST_DIGIT),
        Play(("enter_return_time",), True),
        StopPrompt(),
        Execute(gone),
        Play(("profile_5", "activated", "pause", "back", "tomorrow", "at", "num_8"), False),
    ]


def test_runner_inter_digit_timeout_counts_as_invalid() -> None:
    c = Controller()
    c.start()
    c.press("2", after=0.1)
    c.advance(1.0)  # "Ange återkomsttid" ends: the first-digit timer starts
    c.press("1", after=1.0)
    c.advance(3.0)  # the inter-digit timer fires
    assert [a for _, a in c.log[-4:]] == [
        StartTimer(FIRST_DIGIT, 5.0),
        CancelTimer(FIRST_DIGIT),
        StartTimer(INTER_DIGIT, 3.0),
        Play(("invalid_choice", "enter_return_time"), True),
    ]
    assert c.log[-1][0] == pytest.approx(5.1)


@pytest.mark.parametrize("key", DTMF)
def test_runner_every_key_first_in_the_return_step(key: str) -> None:
    c = Controller()
    c.start()
    c.press("7", after=0.1)
    c.press(key, after=0.1)
    if key != "#":
        c.press("#", after=0.5)
    last = c.log[-1][1]
    if key == "#":
        assert Execute(ActivateProfile(profile="vacation", number=7)) in [a for _, a in c.log]
    else:
        assert last == Play(("invalid_choice", "enter_return_date"), True)


def test_runner_drops_keys_outside_an_entry_and_events_after_hangup() -> None:
    c = Controller()
    c.start()
    c.press("1", after=0.1)  # Tillgänglig: no return question, executes at once
    assert isinstance(c.log[-1][1], Play) and not c.log[-1][1].barge_in
    n = len(c.log)
    c.perform(c.runner.digit("5", c.now))  # during the confirmation
    assert len(c.log) == n
    c.advance(5.0)
    assert c.log[-1][1] == Hangup()
    assert c.runner.digit("1", c.now) == []
    assert c.runner.prompt_finished(c.now) == []
    assert c.runner.timer_fired(FIRST_DIGIT, c.now) == []


def test_runner_ignores_a_stopped_prompt_reporting_in() -> None:
    c = Controller()
    c.start()
    c.press("2", after=0.2)
    c.press("1", after=0.2)  # barges into "Ange återkomsttid"
    assert [a for _, a in c.log[-2:]] == [StopPrompt(), StartTimer(INTER_DIGIT, 3.0)]
    assert c.runner.prompt_finished(c.now) == []  # no first-digit timer: already collecting
    c.press("2", after=0.2)
    assert c.log[-1][1] == StartTimer(INTER_DIGIT, 3.0)


def test_runner_takes_digit_events() -> None:
    c = Controller()
    c.start()
    c.advance(0.3)
    actions = c.runner.digit(DigitEvent(digit="9", source="info", start=0.3), c.now)
    assert actions == [StopPrompt(), Execute(ActivateProfile(profile="dnd", number=9))]
