"""SIP INFO DTMF bodies: application/dtmf-relay and application/dtmf."""

from __future__ import annotations

import pytest

from ivr.dtmf.info import CONTENT_TYPES, InfoBodyError, parse_info

RELAY = "application/dtmf-relay"


@pytest.mark.parametrize(
    ("content_type", "body", "digit", "duration"),
    [
        (RELAY, b"Signal=5\r\nDuration=160\r\n", "5", 0.16),
        (RELAY, b"Signal=5\nDuration=160", "5", 0.16),
        (RELAY, "signal= #\r\nduration= 250\r\n", "#", 0.25),
        (RELAY, b"Signal=*", "*", None),
        (RELAY, b"Signal=a\r\nDuration=100", "A", 0.1),
        (RELAY, b"Signal=11\r\nDuration=100", "#", 0.1),
        (RELAY, b"Signal=0\r\nDuration=0", "0", 0.0),
        (RELAY, b"\r\nSignal=9\r\nVolume=10\r\nDuration=100\r\n\r\n", "9", 0.1),
        ("Application/DTMF-Relay; charset=us-ascii", b"Signal=D\r\nDuration=90", "D", 0.09),
        ("application/dtmf", b"7", "7", None),
        ("application/dtmf", b" 7\r\n", "7", None),
        ("application/dtmf", "c", "C", None),
    ],
)
def test_bodies_give_a_digit(
    content_type: str, body: bytes | str, digit: str, duration: float | None
) -> None:
    event = parse_info(content_type, body, now=12.5)
    assert (event.digit, event.source, event.start, event.duration) == (
        digit,
        "info",
        12.5,
        duration,
    )
    assert event.end == (None if duration is None else 12.5 + duration)


@pytest.mark.parametrize(
    ("content_type", "body", "status", "message"),
    [
        ("application/sdp", b"v=0", 415, "unsupported content type"),
        ("text/plain", b"5", 415, "unsupported content type"),
        (RELAY, b"Duration=160", 400, "no Signal"),
        (RELAY, b"", 400, "no Signal"),
        (RELAY, b"Signal=E", 400, "not a DTMF digit"),
        (RELAY, b"Signal=16", 400, "not a DTMF digit"),
        (RELAY, b"Signal=55", 400, "not a DTMF digit"),
        (RELAY, b"Signal=5\r\nDuration=-1", 400, "Duration must be"),
        (RELAY, b"Signal=5\r\nDuration=1.5", 400, "Duration must be"),
        (RELAY, b"Signal=5\r\nDuration=999999", 400, "out of range"),
        (RELAY, b"Signal 5", 400, "without '='"),
        (RELAY, "Signal=5\r\nDuration=\u0663", 400, "Duration must be"),
        (RELAY, b"Signal=\xff", 400, "not ASCII"),
        (RELAY, b"Signal=5\r\n" + b"X=1\r\n" * 400, 400, "too large"),
        ("application/dtmf", b"", 400, "not a DTMF digit"),
        ("application/dtmf", b"12", 400, "not a DTMF digit"),
    ],
)
def test_bad_requests_carry_a_status(
    content_type: str, body: bytes | str, status: int, message: str
) -> None:
    with pytest.raises(InfoBodyError, match=message) as err:
        parse_info(content_type, body, now=0.0)
    assert err.value.status == status
    assert isinstance(err.value, ValueError)


def test_content_types_for_an_accept_header() -> None:
    assert set(CONTENT_TYPES) == {"application/dtmf-relay", "application/dtmf"}
