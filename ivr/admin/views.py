"""JSON views of the domain for the HTTP API (no secrets: passwords and PINs never leave).

Pure functions of their arguments; the OpenAPI schemas in ``openapi.py`` describe them.
"""

from __future__ import annotations

from datetime import datetime

from ivr.directory import profile_head
from ivr.routing.model import Device, Plan, Profile, Schedule, User, WeeklySlot
from ivr.routing.profiles import Effective
from ivr.routing.state import AuditEntry
from ivr.sip.registrar import Binding

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def user_json(user: User, *, private: bool) -> dict[str, object]:
    """A directory entry; ``private`` (the user themself or an admin) adds VIP numbers
    and schedules."""
    view: dict[str, object] = {
        "extension": user.extension,
        "name": user.name,
        "language": user.language,
        "did": user.did,
        "mobile": user.mobile,
        "admin": user.admin,
        "queues": list(user.queues),
        "devices": [d.id for d in user.devices],
    }
    if private:
        view["vip"] = list(user.vip)
        view["schedules"] = [schedule_json(s) for s in user.schedules]
    return view


def schedule_json(schedule: Schedule) -> dict[str, object]:
    when = schedule.when
    view: dict[str, object] = {
        "id": schedule.id,
        "profile": schedule.profile,
        "holidays": schedule.holidays,
    }
    if isinstance(when, WeeklySlot):
        view["days"] = [_DAYS[d] for d in sorted(when.days)]
        view["start"] = when.start.strftime("%H:%M")
        view["end"] = when.end.strftime("%H:%M")
    else:
        view["from"] = when.first.isoformat()
        view["to"] = when.last.isoformat()
    return view


def device_json(device: Device, bindings: list[Binding], now: float) -> dict[str, object]:
    """A device without its password; SIP devices list their live registrations."""
    view: dict[str, object] = {
        "id": device.id,
        "kind": device.kind,
        "username": device.username,
        "number": device.number,
        "auth_algorithms": None if device.auth_algorithms is None else list(device.auth_algorithms),
    }
    if device.is_sip:
        view["registrations"] = [
            {"contact": b.contact, "expires_in": b.remaining(now), "source": b.source}
            for b in bindings
        ]
    return view


def plan_json(plan: Plan) -> dict[str, object]:
    then = plan.then
    return {
        "ring": list(plan.ring),
        "ring_seconds": plan.ring_seconds,
        "direct": plan.direct,
        "then": {"redirect": then.redirect, "action": then.action, "target": then.target},
        "exceptions": [
            {
                "dialled": e.dialled,
                "callers": list(e.callers),
                "ring": list(e.ring),
                "forward": e.forward,
            }
            for e in plan.exceptions
        ],
        "mex_off": plan.mex_off,
        "soft": plan.soft,
        "offer_mobile": plan.offer_mobile,
        "queues": [{"queue": q.queue, "ring": list(q.ring)} for q in plan.queues],
        "caller_id": {
            "desk": plan.caller_id.desk,
            "softphone": plan.caller_id.softphone,
            "mobile": plan.caller_id.mobile,
        },
    }


def profile_json(profile: Profile) -> dict[str, object]:
    return {**profile_head(profile), "plan": plan_json(profile.plan)}


def active_json(user: User, found: Effective, language: str) -> dict[str, object]:
    """The active profile of ``user`` with where it comes from and until when."""
    profile = found.profile
    return {
        "extension": user.extension,
        "profile": profile.id,
        "number": profile.number,
        "name": profile.label(language),
        "text": profile.status.get(language),
        "presence": profile.presence,
        "colour": profile.colour,
        "icon": profile.icon,
        "source": found.source,
        "until": _iso(found.until),
        "set_by": found.set_by,
        "set_via": found.set_via,
        "set_at": _iso(found.set_at),
    }


def presence_json(user: User, found: Effective, language: str) -> dict[str, object]:
    """One contact-list row."""
    profile = found.profile
    return {
        "extension": user.extension,
        "name": user.name,
        "profile": profile.id,
        "presence": profile.presence,
        "icon": profile.icon,
        "colour": profile.colour,
        "text": profile.status.get(language),
        "until": _iso(found.until),
    }


def audit_json(entry: AuditEntry) -> dict[str, object]:
    return {
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "on_behalf_of": entry.on_behalf_of,
        "target_user": entry.target_user,
        "action": entry.action,
        "via": entry.via,
        "detail": entry.detail,
    }
