"""Request validation of the HTTP API: profile activation bodies, until forms, audit
queries, JSON bodies. Pure: the clock is a fixed ``now``."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.admin.errors import ApiError
from ivr.admin.validate import (
    MAX_JSON_BYTES,
    activation,
    audit_query,
    json_object,
    parse_until,
    until_spec,
)
from ivr.config import load_config
from ivr.routing.profiles import AtTime, DefaultReturn, OnDate, until_for

REPO = Path(__file__).resolve().parents[1]
CONFIG = load_config(REPO / "config" / "ivr.toml")
RULES = CONFIG.rules
CAL = RULES.calendar
TZ = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 3, 10, 11, 20, tzinfo=TZ)  # a Tuesday


def fields(exc: pytest.ExceptionInfo[ApiError]) -> dict[str, str]:
    return exc.value.details["fields"]  # type: ignore[return-value]


def resolved(body: dict[str, object]) -> datetime | None:
    command = activation(body, RULES, NOW)
    return until_for(RULES.profile(command.profile), command.until, NOW, CAL)


def test_profile_by_id_or_number() -> None:
    by_id = activation({"profile": "lunch"}, RULES, NOW)
    by_number = activation({"profile": 2}, RULES, NOW)
    assert by_id == by_number
    assert by_id.profile == "lunch" and by_id.number == 2
    assert by_id.until == DefaultReturn()


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({}, "profile", "is required"),
        ({"profile": "holiday"}, "profile", "no profile 'holiday'"),
        ({"profile": 0}, "profile", "no profile 0"),
        ({"profile": True}, "profile", "profile id (string) or number (integer)"),
        ({"profile": 2.0}, "profile", "profile id (string) or number (integer)"),
        ({"profile": "lunch", "until": 1300}, "until", "HH:MM, YYYY-MM-DD"),
        ({"profile": "lunch", "until": "25:00"}, "until", "HH:MM, YYYY-MM-DD"),
        ({"profile": "lunch", "until": "2026-02-30"}, "until", "no such date"),
        ({"profile": "lunch", "until": "2026-03-10T12:00:30+01:00"}, "until", "whole minute"),
        ({"profile": "lunch", "until": "2026-03-10T09:00"}, "until", "not in the future"),
        ({"profile": "vacation", "until": "2026-03-09"}, "until", "not in the future"),
        ({"profile": "lunch", "until": "2026-03-12T13:00"}, "until", "too far ahead"),
        ({"profile": "vacation", "until": "2027-06-01"}, "until", "too far ahead"),
        ({"profile": "lunch", "colour": "red"}, "colour", "unknown field"),
    ],
)
def test_invalid_bodies_name_the_field(body: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(ApiError) as exc:
        activation(body, RULES, NOW)
    assert exc.value.status == 422
    assert reason in fields(exc)[field]


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(ApiError) as exc:
        activation({"profile": "nope", "until": 5, "x": 1}, RULES, NOW)
    assert set(fields(exc)) == {"profile", "until", "x"}


def test_clock_time_today_or_tomorrow() -> None:
    assert activation({"profile": "lunch", "until": "13:00"}, RULES, NOW).until == AtTime(
        hour=13, minute=0
    )
    assert resolved({"profile": "lunch", "until": "13:00"}) == datetime(
        2026, 3, 10, 13, 0, tzinfo=TZ
    )
    assert resolved({"profile": "lunch", "until": "08:00"}) == datetime(
        2026, 3, 11, 8, 0, tzinfo=TZ
    )


def test_date_is_that_day_at_the_profiles_return_time() -> None:
    command = activation({"profile": "vacation", "until": "2026-12-04"}, RULES, NOW)
    assert command.until == OnDate(month=12, day=4)
    assert resolved({"profile": "vacation", "until": "2026-12-04"}) == datetime(
        2026, 12, 4, 0, 0, tzinfo=TZ
    )
    gone = resolved({"profile": "gone", "until": "2026-03-12"})
    assert gone == datetime(2026, 3, 12, 8, 0, tzinfo=TZ)  # next_workday profiles: 08:00


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-10T13:30:00+01:00", datetime(2026, 3, 10, 13, 30, tzinfo=TZ)),
        ("2026-03-10T12:30:00Z", datetime(2026, 3, 10, 13, 30, tzinfo=TZ)),
        ("2026-03-10T13:30", datetime(2026, 3, 10, 13, 30, tzinfo=TZ)),  # local
        ("2026-03-11 09:15", datetime(2026, 3, 11, 9, 15, tzinfo=TZ)),  # within 24 h
    ],
)
def test_datetime_within_a_day_is_exact(text: str, expected: datetime) -> None:
    assert resolved({"profile": "lunch", "until": text}) == expected


def test_far_datetime_on_the_return_time_is_a_date() -> None:
    text = "2026-07-01T00:00:00+02:00"
    assert activation({"profile": "vacation", "until": text}, RULES, NOW).until == OnDate(
        month=7, day=1
    )
    assert resolved({"profile": "vacation", "until": text}) == datetime(2026, 7, 1, tzinfo=TZ)


def test_until_null_is_the_default_return() -> None:
    assert activation({"profile": "gone", "until": None}, RULES, NOW).until == DefaultReturn()
    assert parse_until(None, CAL) is None


def test_until_spec_across_dst() -> None:
    """The night clocks go forward (29 March 2026): 24 h ahead is still exact."""
    now = datetime(2026, 3, 28, 12, 0, tzinfo=TZ)
    target = parse_until("2026-03-29T11:30", CAL)
    spec = until_spec(target, RULES.profile("lunch"), now, CAL)
    assert until_for(RULES.profile("lunch"), spec, now, CAL) == target


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"a": 1', "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"\xff\xfe", None, 400),
        (b"", "application/json", 400),
        (b'{"a": 1}', "text/plain", 415),
        (b'{"a": 1}', "application/x-www-form-urlencoded", 415),
        (b"{}" + b" " * MAX_JSON_BYTES, "application/json", 413),
    ],
)
def test_json_bodies(body: bytes, content_type: str | None, status: int) -> None:
    with pytest.raises(ApiError) as exc:
        json_object(body, content_type)
    assert exc.value.status == status


def test_json_body_accepted() -> None:
    assert json_object(b'{"profile": 2}', "application/json; charset=utf-8") == {"profile": 2}
    assert json_object(b'{"profile": 2}', None) == {"profile": 2}
    assert json_object(b"{}", "application/merge-patch+json") == {}


def test_audit_query_defaults_and_forms() -> None:
    assert audit_query({}, CAL).limit == 100
    q = audit_query(
        {"user": ["1001"], "since": ["2026-03-01"], "until": ["2026-03-10T12:00"], "limit": ["5"]},
        CAL,
    )
    assert q.user == "1001" and q.limit == 5
    assert q.since == datetime.combine(date(2026, 3, 1), time(0), TZ)
    assert q.until == datetime(2026, 3, 10, 12, 0, tzinfo=TZ)
    assert q.until - q.since > timedelta(days=9)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"limit": ["0"]}, "limit"),
        ({"limit": ["1001"]}, "limit"),
        ({"limit": ["ten"]}, "limit"),
        ({"since": ["yesterday"]}, "since"),
        ({"since": ["2026-03-02"], "until": ["2026-03-01"]}, "until"),
        ({"user": [""]}, "user"),
        ({"user": ["1001", "1002"]}, "user"),
        ({"who": ["1001"]}, "who"),
    ],
)
def test_audit_query_errors(args: dict[str, list[str]], field: str) -> None:
    with pytest.raises(ApiError) as exc:
        audit_query(args, CAL)
    assert field in fields(exc)
