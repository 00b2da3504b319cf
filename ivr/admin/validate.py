"""Request validation for the HTTP API: bodies and query strings → domain values.

Every failure is an :class:`~ivr.admin.errors.ApiError` whose ``fields`` name each
bad input and why: 400 for a body that is not a JSON object, 415 for a wrong media
type, 422 for values that do not make sense.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time

from ivr.admin.errors import ApiError, invalid
from ivr.routing.features import ActivateProfile
from ivr.routing.model import Profile
from ivr.routing.profiles import AtTime, DefaultReturn, OnDate, Rules, UntilSpec, until_for
from ivr.routing.schedule import Calendar

MAX_JSON_BYTES = 64 * 1024
MAX_AUDIT_LIMIT = 1000
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
UNTIL_FORMS = "HH:MM, YYYY-MM-DD, an ISO 8601 date-time, or null"


def json_object(body: bytes, content_type: str | None) -> dict[str, object]:
    """The request body as a JSON object (media type JSON or unspecified)."""
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise ApiError(415, "unsupported media type", expected="application/json")
    if len(body) > MAX_JSON_BYTES:
        raise ApiError(413, "request body too large", limit=MAX_JSON_BYTES)
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise invalid({"body": "is not UTF-8"}, 400) from None
    except json.JSONDecodeError as exc:
        raise invalid({"body": f"is not valid JSON: {exc.msg} at {exc.pos}"}, 400) from None
    if not isinstance(value, dict):
        raise invalid({"body": "must be a JSON object"}, 400)
    return value


def profile_ref(value: object, rules: Rules) -> Profile:
    """A profile by id (string) or number (integer); ValueError says why not."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a profile id (string) or number (integer)")
    found = rules.get(value)
    if found is None:
        known = ", ".join(f"{p.id} ({p.number})" for p in rules.profiles)
        raise ValueError(f"no profile {value!r}; one of {known}")
    return found


def _local(value: datetime, calendar: Calendar) -> datetime:
    """An aware datetime; a naive one is read as company local time."""
    if value.tzinfo is None:
        return calendar.at(value.date(), value.time())
    return value


Until = AtTime | date | datetime | None


def parse_until(value: object, calendar: Calendar) -> Until:
    """The syntax of ``until``: a clock time, a date, an aware date-time (a naive one is
    company local time) or None; ValueError says why not."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be {UNTIL_FORMS}")
    clock = _CLOCK.fullmatch(value)
    if clock is not None:
        return AtTime(hour=int(clock[1]), minute=int(clock[2]))
    if _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"no such date {value!r}") from None
    try:
        moment = _local(datetime.fromisoformat(value), calendar)
    except ValueError:
        raise ValueError(f"must be {UNTIL_FORMS}; got {value!r}") from None
    if moment.second or moment.microsecond:
        raise ValueError("must be a whole minute")
    return moment


def until_spec(value: Until, profile: Profile, now: datetime, calendar: Calendar) -> UntilSpec:
    """The end of an activation of ``profile`` as the domain's UntilSpec; ValueError
    says why not.

    A clock time is today (tomorrow once passed); a date is that day at the profile's
    return time; a date-time must lie within 24 hours, or fall on a day's return time
    within a year (like a date). None is the profile's default return.
    """
    if value is None:
        return DefaultReturn()
    if isinstance(value, AtTime):
        return value
    target = value if isinstance(value, datetime) else calendar.at(value, profile.back_at)
    if target <= now:
        raise ValueError(f"{target.isoformat()} is not in the future")
    local = calendar.local(target)
    candidates: list[UntilSpec] = [AtTime(hour=local.hour, minute=local.minute)]
    if local.time() == profile.back_at:
        candidates.insert(0, OnDate(month=local.month, day=local.day))
    for spec in candidates:
        if until_for(profile, spec, now, calendar) == target:
            return spec
    back = profile.back_at.strftime("%H:%M")
    raise ValueError(
        f"{target.isoformat()} is too far ahead: a time must be within 24 hours; "
        f"further ahead give a date within a year (back at {back})"
    )


def activation(body: Mapping[str, object], rules: Rules, now: datetime) -> ActivateProfile:
    """``{"profile": "lunch" | 2, "until": ...}`` → an ActivateProfile command."""
    errors: dict[str, str] = {name: "unknown field" for name in body if name not in _ACTIVATE}
    profile: Profile | None = None
    if "profile" not in body:
        errors["profile"] = "is required"
    else:
        try:
            profile = profile_ref(body["profile"], rules)
        except ValueError as exc:
            errors["profile"] = str(exc)
    until: UntilSpec = DefaultReturn()
    try:
        parsed = parse_until(body.get("until"), rules.calendar)
        if profile is not None:
            until = until_spec(parsed, profile, now, rules.calendar)
    except ValueError as exc:
        errors["until"] = str(exc)
    if errors or profile is None:
        raise invalid(errors)
    return ActivateProfile(profile=profile.id, number=profile.number, until=until)


_ACTIVATE = frozenset({"profile", "until"})


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditQuery:
    """Filters of ``GET /audit``."""

    user: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


def _moment(text: str, calendar: Calendar) -> datetime:
    if _DATE.fullmatch(text):
        return calendar.at(date.fromisoformat(text), time(0, 0))
    return _local(datetime.fromisoformat(text), calendar)


def single(args: Mapping[str, Sequence[str]], allowed: frozenset[str]) -> dict[str, str]:
    """Query parameters given at most once each, all of them known."""
    errors = {name: "unknown parameter" for name in args if name not in allowed}
    errors.update({n: "give it once" for n, v in args.items() if n in allowed and len(v) != 1})
    if errors:
        raise invalid(errors)
    return {name: values[0] for name, values in args.items()}


def audit_query(args: Mapping[str, Sequence[str]], calendar: Calendar) -> AuditQuery:
    """``user``, ``since``/``until`` (ISO date or date-time; local time when no offset),
    ``limit`` (1-1000, default 100)."""
    given = single(args, frozenset({"user", "since", "until", "limit"}))
    errors: dict[str, str] = {}
    bounds: dict[str, datetime | None] = {"since": None, "until": None}
    for name in bounds:
        if name in given:
            try:
                bounds[name] = _moment(given[name], calendar)
            except ValueError:
                errors[name] = "must be an ISO 8601 date or date-time"
    limit = 100
    if "limit" in given:
        text = given["limit"]
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_AUDIT_LIMIT:
            errors["limit"] = f"must be an integer 1-{MAX_AUDIT_LIMIT}"
        else:
            limit = int(text)
    since, until = bounds["since"], bounds["until"]
    if since is not None and until is not None and until <= since:
        errors["until"] = "must be after since"
    user = given.get("user")
    if user is not None and not user:
        errors["user"] = "must not be empty"
    if errors:
        raise invalid(errors)
    return AuditQuery(user=user, since=since, until=until, limit=limit)
