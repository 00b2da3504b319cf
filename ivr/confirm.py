"""What a feature-code call says back: the prompt sequence confirming a command. Pure."""

from __future__ import annotations

from datetime import date, datetime

from ivr.media import phrases
from ivr.routing.commands import CommandResult
from ivr.routing.features import (
    ActivateProfile,
    BackToStandard,
    DndOff,
    DndOn,
    DndToggle,
    FeatureCommand,
    QueryProfile,
)
from ivr.routing.profiles import Rules


def confirmation(
    command: FeatureCommand | None,
    result: CommandResult | None,
    *,
    rules: Rules,
    lang: str,
    clock: str | None,
    now: datetime,
) -> list[str]:
    """Prompt names for the confirmation; "Ogiltig kod" when nothing was done."""
    if command is None or result is None:
        return phrases.invalid_code(lang)
    after = result.after
    if isinstance(command, QueryProfile):
        standard = after.profile.number == rules.standard.number
        return phrases.current_profile(
            after.profile.number, after.until, now, lang, clock, say_no_end=not standard
        )
    if isinstance(command, ActivateProfile):
        top = result.state.manual[-1] if result.state.manual else None
        until = top.until if top is not None and top.profile == command.profile else None
        return phrases.activated(
            command.number, _spoken(until, command.profile, rules), now, lang, clock
        )
    if isinstance(command, BackToStandard):
        until = after.until if after.profile.id == rules.standard.id else None
        return phrases.activated(rules.standard.number, until, now, lang, clock)
    dnd = rules.dnd
    if isinstance(command, DndOn | DndOff | DndToggle) and dnd is not None:
        if result.action == "dnd_off":
            return phrases.deactivated(dnd.number, lang)
        return phrases.activated(dnd.number, None, now, lang, clock)
    return phrases.invalid_code(lang)


def _spoken(until: datetime | None, profile_id: str, rules: Rules) -> datetime | date | None:
    """Date-return profiles say the day only ("åter måndag den fjärde januari")."""
    if until is not None and rules.profile(profile_id).returns == "date":
        return rules.calendar.local(until).date()
    return until
