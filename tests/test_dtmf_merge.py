"""One digit stream per call from RFC 4733, SIP INFO and in-band events."""

from __future__ import annotations

import pytest

from ivr.dtmf.events import DigitEvent
from ivr.dtmf.merge import DigitMerger
from ivr.metrics import CallCounters


def _ev(digit: str, source: str, start: float, length: float | None = 0.1) -> DigitEvent:
    end = None if length is None else start + length
    return DigitEvent(digit=digit, source=source, start=start, end=end, duration=length)


def _digits(events: list[DigitEvent]) -> str:
    return "".join(e.digit for e in events)


def test_a_phone_sending_rfc4733_and_tones_gives_each_press_once() -> None:
    merger = DigitMerger()
    got = merger.feed(
        [
            _ev("1", "inband", 0.00),  # the tone detector happened to finish first
            _ev("1", "rfc4733", 0.01),
            _ev("2", "rfc4733", 0.50),
            _ev("2", "inband", 0.51),
            _ev("2", "inband", 0.58, 0.03),  # a split tone detection
            _ev("3", "inband", 1.00),  # no RFC 4733 event for this one: a tone echo only
        ]
    )
    assert _digits(got) == "12"
    assert got[0].source == "inband" and got[1].source == "rfc4733"
    assert merger.preferred == "rfc4733"


def test_in_band_digits_pass_until_rfc4733_shows_up() -> None:
    merger = DigitMerger()
    got = merger.feed([_ev("4", "inband", 0.0), _ev("4", "inband", 0.3), _ev("5", "inband", 0.6)])
    assert _digits(got) == "445" and merger.preferred is None


def test_the_same_key_twice_from_one_source_is_two_presses() -> None:
    got = DigitMerger().feed([_ev("7", "rfc4733", 0.0), _ev("7", "rfc4733", 0.12)])
    assert _digits(got) == "77"


def test_info_outranks_in_band_and_rfc4733_outranks_info() -> None:
    merger = DigitMerger()
    got = merger.feed(
        [
            _ev("8", "info", 0.0, None),
            _ev("8", "inband", 0.02),  # the same press
            _ev("9", "inband", 0.5),  # dropped: INFO is in use
            _ev("0", "rfc4733", 1.0),
            _ev("0", "info", 1.0, None),  # the same press
            _ev("#", "info", 1.5, None),  # dropped: RFC 4733 is in use
        ]
    )
    assert _digits(got) == "80" and merger.preferred == "rfc4733"


def test_without_preference_only_copies_are_dropped() -> None:
    merger = DigitMerger(prefer_signalled=False, window=0.05)
    got = merger.feed(
        [
            _ev("1", "rfc4733", 0.0),
            _ev("1", "inband", 0.12),  # 20 ms after the end: within the window
            _ev("1", "inband", 0.30),  # a separate press
            _ev("2", "inband", 0.31),
        ]
    )
    assert _digits(got) == "112"


def test_old_presses_are_forgotten() -> None:
    merger = DigitMerger(prefer_signalled=False, horizon=1.0)
    merger.add(_ev("5", "rfc4733", 0.0, 5.0))
    assert merger.add(_ev("5", "inband", 3.0)) is None  # still overlapping the long press
    assert merger.add(_ev("5", "inband", 6.5)) is not None


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        DigitMerger(window=-1)


def test_only_passed_presses_are_counted_by_source() -> None:
    counters = CallCounters()
    merger = DigitMerger(on_press=lambda event: counters.digit(event.source))
    merger.feed(
        [
            _ev("1", "inband", 0.00),  # passes: nothing signalled yet
            _ev("1", "rfc4733", 0.01),  # a copy of the same press: dropped
            _ev("2", "rfc4733", 0.50),
            _ev("2", "inband", 0.51),  # a copy
            _ev("3", "info", 1.00),  # outranked by RFC 4733 from now on: dropped
            _ev("4", "rfc4733", 1.50),
        ]
    )
    assert counters.digits.values == {(("source", "inband"),): 1, (("source", "rfc4733"),): 2}
    assert counters.calls.values == {}
