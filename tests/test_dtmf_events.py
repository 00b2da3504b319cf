"""DigitEvent validates itself: an invalid event cannot exist."""

from __future__ import annotations

import dataclasses

import pytest

from ivr.dtmf.events import DIGITS, DigitEvent


@pytest.mark.parametrize("digit", list(DIGITS))
def test_every_keypad_digit(digit: str) -> None:
    event = DigitEvent(digit=digit, source="inband", start=1.0, end=1.1, duration=0.1)
    assert event.digit == digit


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"digit": "E"}, "digit"),
        ({"digit": "a"}, "digit"),
        ({"digit": "12"}, "digit"),
        ({"digit": ""}, "digit"),
        ({"source": "sms"}, "source"),
        ({"start": float("nan")}, "start"),
        ({"end": 0.5}, "end"),
        ({"end": float("inf")}, "end"),
        ({"duration": -0.1}, "duration"),
    ],
)
def test_invalid_events_raise(kwargs: dict, message: str) -> None:
    fields = {"digit": "5", "source": "rfc4733", "start": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        DigitEvent(**fields)


def test_events_are_frozen_and_keyword_only() -> None:
    event = DigitEvent(digit="#", source="info", start=0.0)
    assert event.end is None and event.duration is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.digit = "1"  # type: ignore[misc]
    with pytest.raises(TypeError):
        DigitEvent("#", "info", 0.0)  # type: ignore[misc]
