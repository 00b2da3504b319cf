"""Digit collection: exact action lists for every state and event, timeouts, barge-in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ivr.dtmf.collector import (
    DTMF,
    FIRST_DIGIT,
    INTER_DIGIT,
    CancelTimer,
    Collected,
    CollectorError,
    CollectSpec,
    DigitCollector,
    StartTimer,
    StopPrompt,
    TimedOut,
)
from ivr.dtmf.events import DigitEvent

SPEC = CollectSpec(max_digits=4, terminators="#", first_timeout=5.0, inter_timeout=3.0)
ARM_FIRST = StartTimer(FIRST_DIGIT, 5.0)
ARM_INTER = StartTimer(INTER_DIGIT, 3.0)


def collector(
    *, prompt: bool = True, barge_in: bool = True, spec: CollectSpec = SPEC
) -> DigitCollector:
    c = DigitCollector(spec, barge_in=barge_in)
    c.start(0.0, prompt_playing=prompt)
    return c


def in_state(state: str) -> DigitCollector:
    """A collector driven into ``state`` (``collecting`` holds "1")."""
    if state == "idle":
        return DigitCollector(SPEC)
    c = collector(prompt=state == "prompt")
    if state == "collecting":
        c.digit("1", 1.0)
    elif state == "done":
        c.digit("#", 1.0)
    assert c.state == state
    return c


# --- whole entries -----------------------------------------------------------------------


def test_barge_in_stops_the_prompt_then_max_digits_completes() -> None:
    c = DigitCollector(SPEC, barge_in=True)
    assert c.start(0.0, prompt_playing=True) == []
    assert c.digit("1", 1.2) == [StopPrompt(), ARM_INTER]
    assert c.prompt_finished(1.25) == []  # the stopped prompt reporting in
    assert c.digit("3", 1.9) == [CancelTimer(INTER_DIGIT), ARM_INTER]
    assert c.digit("0", 2.4) == [CancelTimer(INTER_DIGIT), ARM_INTER]
    assert c.digit("0", 2.8) == [CancelTimer(INTER_DIGIT), Collected("1300", None)]
    assert c.state == "done" and c.result == Collected("1300") and c.digits == "1300"


def test_terminator_ends_the_entry_without_itself() -> None:
    c = collector()
    c.prompt_finished(2.0)
    c.digit("1", 3.0)
    c.digit("3", 3.5)
    assert c.digit("#", 4.0) == [CancelTimer(INTER_DIGIT), Collected("13", "#")]


def test_terminator_alone_during_the_prompt() -> None:
    assert collector().digit("#", 0.5) == [StopPrompt(), Collected("", "#")]


def test_terminator_alone_after_the_prompt() -> None:
    c = collector(prompt=False)
    assert c.digit("#", 1.0) == [CancelTimer(FIRST_DIGIT), Collected("", "#")]


def test_first_digit_timer_starts_when_the_prompt_ends() -> None:
    c = collector()
    assert c.timer_fired(FIRST_DIGIT, 1.0) == []  # not armed yet: stale
    assert c.prompt_finished(2.0) == [ARM_FIRST]
    assert c.state == "waiting"
    assert c.prompt_finished(2.1) == []
    assert c.timer_fired(FIRST_DIGIT, 7.0) == [TimedOut("")]
    assert c.result == TimedOut("")


def test_without_a_prompt_the_first_digit_timer_starts_at_once() -> None:
    c = DigitCollector(SPEC)
    assert c.start(10.0, prompt_playing=False) == [ARM_FIRST]
    assert c.digit("4", 11.0) == [CancelTimer(FIRST_DIGIT), ARM_INTER]


def test_inter_digit_timeout_returns_the_digits_so_far() -> None:
    c = collector(prompt=False)
    c.digit("1", 1.0)
    c.digit("3", 2.0)
    assert c.timer_fired(FIRST_DIGIT, 4.0) == []  # cancelled earlier: stale
    assert c.timer_fired(INTER_DIGIT, 5.0) == [TimedOut("13")]
    assert c.state == "done"


def test_single_digit_entry_completes_on_the_first_key() -> None:
    c = collector(prompt=False, spec=CollectSpec(max_digits=1, terminators=""))
    assert c.digit("5", 1.0) == [CancelTimer(FIRST_DIGIT), Collected("5", None)]


def test_single_digit_entry_barges_in_and_completes() -> None:
    c = collector(spec=CollectSpec(max_digits=1, terminators=""))
    assert c.digit("#", 0.3) == [StopPrompt(), Collected("#", None)]


def test_without_barge_in_keys_during_the_prompt_are_dropped() -> None:
    c = collector(barge_in=False)
    assert c.digit("1", 0.5) == []
    assert c.digit("#", 0.6) == []
    assert c.prompt_finished(2.0) == [ARM_FIRST]
    assert c.digit("2", 3.0) == [CancelTimer(FIRST_DIGIT), ARM_INTER]
    assert c.digits == "2"


def test_several_terminators_and_star_as_a_digit() -> None:
    c = collector(prompt=False, spec=CollectSpec(max_digits=6, terminators="#A"))
    c.digit("*", 1.0)
    c.digit("7", 1.5)
    assert c.digit("A", 2.0) == [CancelTimer(INTER_DIGIT), Collected("*7", "A")]


@pytest.mark.parametrize("key", DTMF)
def test_every_key_as_the_first_press(key: str) -> None:
    c = collector(prompt=False)
    actions = c.digit(key, 1.0)
    if key == "#":
        assert actions == [CancelTimer(FIRST_DIGIT), Collected("", "#")]
    else:
        assert actions == [CancelTimer(FIRST_DIGIT), ARM_INTER]
        assert c.digits == key


def test_digit_events_and_objects_with_a_digit_are_accepted() -> None:
    @dataclass
    class Key:
        digit: str

    c = collector()
    assert c.digit(DigitEvent(digit="4", source="rfc4733", start=0.1), 0.2) == [
        StopPrompt(),
        ARM_INTER,
    ]
    c.digit(Key("2"), 0.5)
    assert c.digits == "42"


def test_done_ignores_everything() -> None:
    c = in_state("done")
    assert c.digit("5", 2.0) == []
    assert c.prompt_finished(2.0) == []
    assert c.timer_fired(INTER_DIGIT, 9.0) == []
    assert c.result == Collected("", "#")


# --- the table: every state x every event ----------------------------------------------

STATES = ("prompt", "waiting", "collecting", "done")


@pytest.mark.parametrize(
    ("state", "event", "expected", "after"),
    [
        ("prompt", ("digit", "7"), [StopPrompt(), ARM_INTER], "collecting"),
        ("prompt", ("digit", "#"), [StopPrompt(), Collected("", "#")], "done"),
        ("prompt", ("prompt_finished",), [ARM_FIRST], "waiting"),
        ("prompt", ("timer", FIRST_DIGIT), [], "prompt"),
        ("prompt", ("timer", INTER_DIGIT), [], "prompt"),
        ("waiting", ("digit", "7"), [CancelTimer(FIRST_DIGIT), ARM_INTER], "collecting"),
        ("waiting", ("digit", "#"), [CancelTimer(FIRST_DIGIT), Collected("", "#")], "done"),
        ("waiting", ("prompt_finished",), [], "waiting"),
        ("waiting", ("timer", FIRST_DIGIT), [TimedOut("")], "done"),
        ("waiting", ("timer", INTER_DIGIT), [], "waiting"),
        ("collecting", ("digit", "7"), [CancelTimer(INTER_DIGIT), ARM_INTER], "collecting"),
        ("collecting", ("digit", "#"), [CancelTimer(INTER_DIGIT), Collected("1", "#")], "done"),
        ("collecting", ("prompt_finished",), [], "collecting"),
        ("collecting", ("timer", FIRST_DIGIT), [], "collecting"),
        ("collecting", ("timer", INTER_DIGIT), [TimedOut("1")], "done"),
        ("done", ("digit", "7"), [], "done"),
        ("done", ("prompt_finished",), [], "done"),
        ("done", ("timer", FIRST_DIGIT), [], "done"),
        ("done", ("timer", INTER_DIGIT), [], "done"),
    ],
)
def test_transition_table(state: str, event: tuple[str, ...], expected: list, after: str) -> None:
    c = in_state(state)
    kind, *args = event
    if kind == "digit":
        actions = c.digit(args[0], 10.0)
    elif kind == "timer":
        actions = c.timer_fired(args[0], 10.0)
    else:
        actions = c.prompt_finished(10.0)
    assert actions == expected
    assert c.state == after


@pytest.mark.parametrize(
    "event",
    [
        lambda c: c.digit("1", 1.0),
        lambda c: c.prompt_finished(1.0),
        lambda c: c.timer_fired(FIRST_DIGIT, 1.0),
    ],
)
def test_events_before_start_are_errors(event) -> None:
    with pytest.raises(CollectorError, match="in state idle"):
        event(DigitCollector(SPEC))


@pytest.mark.parametrize("state", STATES)
def test_start_twice_is_an_error(state: str) -> None:
    with pytest.raises(CollectorError, match=f"start in state {state}"):
        in_state(state).start(20.0, prompt_playing=False)


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "12", "x", "a", "E", None, 5])
def test_a_key_must_be_one_dtmf_digit(key: object) -> None:
    with pytest.raises(ValueError, match="key press"):
        collector().digit(key, 1.0)  # type: ignore[arg-type]


def test_unknown_timer_name() -> None:
    with pytest.raises(ValueError, match="unknown timer"):
        collector().timer_fired("H", 1.0)


@pytest.mark.parametrize("now", [float("nan"), float("inf")])
def test_now_must_be_finite(now: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        collector().digit("1", now)


def test_time_cannot_go_backwards() -> None:
    c = collector()
    c.digit("1", 5.0)
    with pytest.raises(ValueError, match="backwards"):
        c.digit("2", 4.9)
    assert c.digits == "1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_digits": 0}, "1-64"),
        ({"max_digits": 65}, "1-64"),
        ({"max_digits": True}, "an int"),
        ({"max_digits": 2.0}, "an int"),
        ({"max_digits": 4, "terminators": "x"}, "terminators"),
        ({"max_digits": 4, "terminators": "##"}, "repeat"),
        ({"max_digits": 4, "first_timeout": 0}, "first_timeout"),
        ({"max_digits": 4, "first_timeout": float("inf")}, "first_timeout"),
        ({"max_digits": 4, "inter_timeout": -1.0}, "inter_timeout"),
        ({"max_digits": 4, "inter_timeout": "3"}, "inter_timeout"),
    ],
)
def test_spec_validates_itself(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CollectSpec(**kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: StartTimer("H", 1.0),
        lambda: StartTimer(FIRST_DIGIT, 0.0),
        lambda: CancelTimer("x"),
        lambda: Collected("12x"),
        lambda: Collected("12", "##"),
        lambda: Collected("12", "z"),
        lambda: TimedOut("?"),
    ],
)
def test_actions_validate_themselves(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_actions_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Collected("1").digits = "2"  # type: ignore[misc]
