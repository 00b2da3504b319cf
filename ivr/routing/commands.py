"""Profile commands on a user's state: what a feature code (or the API) changes.

Pure: ``apply_command(command, state, ...)`` returns the new state, whether it
changed, the audit action, and the effective profile before and after.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ivr.routing.features import (
    ActivateProfile,
    BackToStandard,
    DndOff,
    DndOn,
    DndToggle,
    QueryProfile,
)
from ivr.routing.model import Schedule
from ivr.routing.profiles import (
    Effective,
    Rules,
    activate,
    back_to_standard,
    effective,
    expire,
    set_dnd,
    until_for,
)
from ivr.routing.state import UserState, Via

ProfileCommand = ActivateProfile | BackToStandard | QueryProfile | DndOn | DndOff | DndToggle
PROFILE_COMMANDS = (ActivateProfile, BackToStandard, QueryProfile, DndOn, DndOff, DndToggle)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """The outcome of one command. ``action`` names it in the audit log."""

    state: UserState
    changed: bool
    action: str
    before: Effective
    after: Effective
    detail: dict[str, object] = field(default_factory=dict)


def apply_command(
    command: ProfileCommand,
    state: UserState,
    *,
    rules: Rules,
    schedules: Iterable[Schedule],
    by: str,
    via: Via,
    now: datetime,
) -> CommandResult:
    """Run ``command`` for the user whose stored state is ``state``."""
    schedules = tuple(schedules)
    current = expire(state, now)
    before = effective(current, schedules, now, rules)
    if isinstance(command, QueryProfile):
        new, action = current, "query"
    elif isinstance(command, ActivateProfile):
        profile = rules.profile(command.profile)
        until = until_for(profile, command.until, now, rules.calendar)
        new, action = activate(current, profile, until, by, via, now), "activate"
    elif isinstance(command, BackToStandard):
        new = back_to_standard(current, rules=rules, by=by, via=via, now=now, schedules=schedules)
        action = "back_to_standard"
    else:
        on = {DndOn: True, DndOff: False, DndToggle: None}[type(command)]
        new = set_dnd(current, on, rules=rules, by=by, via=via, now=now, schedules=schedules)
        action = ""
    after = effective(new, schedules, now, rules)
    if not action:
        dnd = rules.dnd
        action = "dnd_on" if dnd is not None and after.profile.id == dnd.id else "dnd_off"
    changed = action != "query" and new != state
    detail: dict[str, object] = {
        "from": before.profile.id,
        "to": after.profile.id,
        "until": after.until.isoformat() if after.until else None,
    }
    return CommandResult(
        state=new, changed=changed, action=action, before=before, after=after, detail=detail
    )
