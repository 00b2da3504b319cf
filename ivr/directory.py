"""The live directory: users (with devices and schedules) and profiles, editable at run time.

The config file provisions the directory; changes made over the HTTP API are kept in
the store as an *overlay* (one row per user or profile: its data in the config file's
own shape, a deleted flag and a version) and laid over the file's objects at start-up.
The running service holds one immutable :class:`~ivr.config.Config` snapshot in a
:class:`Directory`; every committed change builds a new snapshot (``dataclasses.replace``
re-indexes it) and swaps it in at once, so whoever reads ``directory.config`` at the
moment of use sees the change.

Pure: no I/O. Serialisers write the config file's shape (so JSON and TOML accept the
same thing); :func:`problems` does the cross-object checks the file parser does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from ivr.config import Company, Config, ConfigError, parse_profile, parse_user
from ivr.routing.features import FeatureCodes
from ivr.routing.model import Device, Profile, Schedule, User, WeeklySlot
from ivr.routing.queues import Queue

Kind = Literal["user", "profile"]
KINDS: tuple[str, ...] = ("user", "profile")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Listener = Callable[[Config, Config], None]


class Directory:
    """Holds the current :class:`Config` snapshot and each object's version.

    ``swap`` replaces both at once and tells the listeners (old, new); readers take
    ``config`` when they need it and never keep it beyond one call.
    """

    def __init__(self, config: Config, versions: Mapping[tuple[str, str], int] | None = None):
        self._config = config
        self._versions = dict(versions or {})
        self._listeners: list[Listener] = []

    @property
    def config(self) -> Config:
        """The current snapshot."""
        return self._config

    def version(self, kind: str, key: str) -> int:
        """The object's version (0: as the config file provides it, never changed)."""
        return self._versions.get((kind, key), 0)

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(old, new)`` after every swap."""
        self._listeners.append(listener)

    def swap(self, config: Config, versions: Mapping[tuple[str, str], int] | None = None) -> None:
        """Make ``config`` current and record the new ``versions``."""
        old, self._config = self._config, config
        self._versions.update(versions or {})
        for listener in self._listeners:
            listener(old, config)


# --- the config file's shape ---------------------------------------------------------------


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def device_data(device: Device, *, secrets: bool) -> dict[str, Any]:
    """A device as a ``[[users.devices]]`` table; ``secrets`` adds the SIP password."""
    data: dict[str, Any] = {"id": device.id, "kind": device.kind}
    if device.is_sip:
        data["username"] = device.username
        if secrets:
            data["password"] = device.password
        if device.auth_algorithms is not None:
            data["auth_algorithms"] = list(device.auth_algorithms)
    else:
        data["number"] = device.number
    return data


def schedule_data(schedule: Schedule) -> dict[str, Any]:
    """A schedule as a ``[[users.schedules]]`` table."""
    data: dict[str, Any] = {
        "id": schedule.id,
        "profile": schedule.profile,
        "holidays": schedule.holidays,
    }
    when = schedule.when
    if isinstance(when, WeeklySlot):
        data["days"] = [_DAYS[d] for d in sorted(when.days)]
        data["start"] = when.start.strftime("%H:%M")
        data["end"] = when.end.strftime("%H:%M")
    else:
        data["from"] = when.first.isoformat()
        data["to"] = when.last.isoformat()
    return data


def user_data(user: User, *, secrets: bool) -> dict[str, Any]:
    """A user as a ``[[users]]`` table; ``secrets`` adds the PIN and SIP passwords."""
    data: dict[str, Any] = {
        "extension": user.extension,
        "name": user.name,
        "language": user.language,
        "pin": user.pin if secrets else None,
        "mobile": user.mobile,
        "did": user.did,
        "admin": user.admin,
        "devices": [device_data(d, secrets=secrets) for d in user.devices],
        "queues": list(user.queues),
        "vip": list(user.vip),
        "schedules": [schedule_data(s) for s in user.schedules],
    }
    return _clean(data)


def profile_head(profile: Profile) -> dict[str, Any]:
    """A profile's fields but its plan (the same in the API's view and the stored table)."""
    return {
        "id": profile.id,
        "number": profile.number,
        "name": {"sv": profile.name.sv, "en": profile.name.en},
        "status": {"sv": profile.status.sv, "en": profile.status.en},
        "colour": profile.colour,
        "icon": profile.icon,
        "priority": profile.priority,
        "presence": profile.presence,
        "return": profile.returns,
        "return_at": None if profile.return_at is None else profile.return_at.strftime("%H:%M"),
        "reason": profile.reason,
    }


def profile_data(profile: Profile) -> dict[str, Any]:
    """A profile as a ``[[profiles]]`` table."""
    plan = profile.plan
    then = plan.then
    last = f"forward:{then.target}" if then.action == "forward" else then.action
    exceptions = [
        _clean(
            {
                "dialled": e.dialled,
                "caller": list(e.callers) or None,
                "ring": list(e.ring) or None,
                "forward": e.forward,
            }
        )
        for e in plan.exceptions
    ]
    return _clean(
        {
            **profile_head(profile),
            "plan": {
                "ring": list(plan.ring),
                "ring_seconds": plan.ring_seconds,
                "then": ["redirect", last] if then.redirect else [last],
                "direct": plan.direct,
                "exceptions": exceptions,
                "mex_off": plan.mex_off,
                "soft": plan.soft,
                "offer_mobile": plan.offer_mobile,
                "queues": [{"queue": q.queue, "ring": list(q.ring)} for q in plan.queues],
                "caller_id": {
                    "desk": plan.caller_id.desk,
                    "softphone": plan.caller_id.softphone,
                    "mobile": plan.caller_id.mobile,
                },
            },
        }
    )


# --- cross-object checks ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken cross-reference: which object (``kind`` + ``key``; ``*`` = the
    directory as a whole), which of its fields, and why."""

    kind: str
    key: str
    field: str
    reason: str


def problems(
    company: Company,
    users: Iterable[User],
    profiles: Iterable[Profile],
    queues: Iterable[Queue] = (),
) -> list[Problem]:
    """Everything that makes this set of users and profiles inconsistent (empty: fine):
    unique profile numbers, a standard profile, unique numbers and SIP usernames, forward
    targets, the operator and queue fallbacks naming existing users, extensions apart
    from queue numbers, users listing defined queues, queue logins naming queues users
    have, schedules naming existing profiles."""
    users, profiles, queues = list(users), list(profiles), list(queues)
    found: list[Problem] = []
    numbers: dict[int, str] = {}
    for p in profiles:
        other = numbers.setdefault(p.number, p.id)
        if other != p.id:
            why = f"number {p.number} is already used by profile {{}}"
            found.append(Problem("profile", p.id, "number", why.format(other)))
            found.append(Problem("profile", other, "number", why.format(p.id)))
    if 1 not in numbers:
        found.append(Problem("profile", "*", "number", "profile number 1 (standard) is required"))
    exts = {u.extension for u in users}
    owners: dict[str, tuple[str, str]] = {company.main_number: ("*", "company.main_number")}
    for u in users:
        for field in ("did", "mobile"):
            value = getattr(u, field)
            if value is None:
                continue
            owner = owners.setdefault(value, (u.extension, field))
            if owner != (u.extension, field):
                found.append(Problem("user", u.extension, field, f"{value} is used by {owner[0]}"))
                if owner[0] != "*":
                    why = f"{value} is used by {u.extension}"
                    found.append(Problem("user", owner[0], owner[1], why))
    names: dict[str, tuple[str, str]] = {}
    for u in users:
        for j, d in enumerate(u.devices):
            if d.username is None:
                continue
            field = f"devices[{j}].username"
            owner = names.setdefault(d.username, (u.extension, field))
            if owner != (u.extension, field):
                why = f"username {d.username!r} is used by {{}}"
                found.append(Problem("user", u.extension, field, why.format(owner[0])))
                found.append(Problem("user", owner[0], owner[1], why.format(u.extension)))
            if d.username in exts and d.username != u.extension:
                why = f"{d.username!r} is the extension of another user"
                found.append(Problem("user", u.extension, field, why))
                also = f"is also a SIP username of {u.extension}"
                found.append(Problem("user", d.username, "extension", also))
    plan = company.numbers

    def target(kind: str, key: str, field: str, value: str | None) -> None:
        if value is not None and plan.is_extension(value) and value not in exts:
            found.append(Problem(kind, key, field, f"no user with extension {value}"))

    target("company", "*", "operator", company.operator)
    defined = {q.id for q in queues}
    numbered = {q.number: q.id for q in queues}
    for q in queues:
        target("queue", q.id, "fallback", q.fallback.target)
    for u in users:
        if u.extension in numbered:
            why = f"is the number of queue {numbered[u.extension]!r}"
            found.append(Problem("user", u.extension, "extension", why))
        for i, name in enumerate(u.queues):
            if defined and name not in defined:
                why = f"no queue {name!r}; one of {', '.join(sorted(defined))}"
                found.append(Problem("user", u.extension, f"queues[{i}]", why))
    queues = {q for u in users for q in u.queues}
    by_id = {p.id for p in profiles}
    for p in profiles:
        target("profile", p.id, "plan.then", p.plan.then.target)
        for i, e in enumerate(p.plan.exceptions):
            target("profile", p.id, f"plan.exceptions[{i}].forward", e.forward)
        for i, q in enumerate(p.plan.queues):
            if q.queue != "*" and q.queue not in queues:
                why = f"no user has queue {q.queue!r}"
                found.append(Problem("profile", p.id, f"plan.queues[{i}].queue", why))
    for u in users:
        for i, s in enumerate(u.schedules):
            if s.profile not in by_id:
                why = f"no profile {s.profile!r}"
                found.append(Problem("user", u.extension, f"schedules[{i}].profile", why))
    return found


def rebuild(config: Config, users: Iterable[User], profiles: Iterable[Profile]) -> Config:
    """``config`` with these users and profiles (already checked with :func:`problems`):
    ``replace`` re-runs the indexing and cross-checks of ``Config``; the feature-code
    table learns the new profiles."""
    users, profiles = tuple(users), tuple(profiles)
    codes = FeatureCodes(specs=config.feature_codes.specs, profiles=profiles)
    return replace(config, users=users, profiles=profiles, feature_codes=codes)


# --- the overlay ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OverlayRow:
    """A stored change: the object's data (config-file shape, secrets included) or
    ``None`` when deleted; ``seq`` orders rows by their last change."""

    kind: str
    key: str
    data: dict[str, Any] | None
    version: int
    seq: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown directory kind {self.kind!r}")
        if self.version < 1:
            raise ValueError("an overlay row's version is at least 1")

    @property
    def deleted(self) -> bool:
        return self.data is None

    def encoded(self) -> str | None:
        """The data as stored (JSON text)."""
        return None if self.data is None else json.dumps(self.data, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Overlaid:
    """The result of laying rows over the config: the snapshot, every row's version, and
    the rows left out (with why)."""

    config: Config
    versions: dict[tuple[str, str], int]
    skipped: list[tuple[OverlayRow, str]]


def _lay(
    config: Config, rows: list[OverlayRow], skipped: list[tuple[OverlayRow, str]]
) -> tuple[dict[str, User], dict[str, Profile], set[tuple[str, str]]]:
    profiles = {p.id: p for p in config.profiles}
    users = {u.extension: u for u in config.users}
    applied: set[tuple[str, str]] = set()
    for row in rows:
        if row.kind != "profile":
            continue
        if row.data is None:
            profiles.pop(row.key, None)
        else:
            try:
                profiles[row.key] = parse_profile(row.data, config.company, f"overlay {row.key}")
            except ConfigError as exc:
                skipped.append((row, str(exc)))
                continue
        applied.add((row.kind, row.key))
    for row in rows:
        if row.kind != "user":
            continue
        if row.data is None:
            users.pop(row.key, None)
        else:
            try:
                user = parse_user(row.data, config.company, profiles.values(), f"overlay {row.key}")
            except ConfigError as exc:
                skipped.append((row, str(exc)))
                continue
            users[row.key] = user
        applied.add((row.kind, row.key))
    return users, profiles, applied


def overlay(config: Config, rows: Iterable[OverlayRow]) -> Overlaid:
    """Lay the stored ``rows`` over ``config``'s users and profiles.

    A row that no longer fits (the config file changed under it) is left out and
    reported: rows named by a problem go first, else the most recent row, until the
    rest is consistent (with no rows left, the config file itself is)."""
    remaining = sorted(rows, key=lambda r: r.seq)
    versions = {(r.kind, r.key): r.version for r in remaining}
    skipped: list[tuple[OverlayRow, str]] = []
    while True:
        users, profiles, applied = _lay(config, remaining, skipped)
        remaining = [r for r in remaining if (r.kind, r.key) in applied]
        found = problems(config.company, users.values(), profiles.values(), config.queues)
        if not remaining:
            return Overlaid(config, versions, skipped)
        if not found:
            snapshot = rebuild(config, users.values(), profiles.values())
            return Overlaid(snapshot, versions, skipped)
        named = {(p.kind, p.key): p for p in found}
        bad = [r for r in remaining if (r.kind, r.key) in named]
        if not bad:
            bad = remaining[-1:]
        for row in bad:
            p = named.get((row.kind, row.key), found[0])
            skipped.append((row, f"{p.kind} {p.key}: {p.field}: {p.reason}"))
        remaining = [r for r in remaining if r not in bad]
