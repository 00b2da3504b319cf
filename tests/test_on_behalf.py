"""``*33*ext*PIN#`` followed by any feature code: every code parses with its inner
command and has a way to run for the target (none falls back to "Ogiltig kod")."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.routing import features
from ivr.routing.features import (
    ActivateProfile,
    Interactive,
    InvalidCode,
    OnBehalf,
    QueuePause,
    QueueToggle,
    RecordGreeting,
    SystemPromptCode,
    VoicemailAccess,
)
from ivr.selfservice_calls import behalf_route, handles

CODES = load_config(Path(__file__).parents[1] / "config" / "ivr.toml").feature_codes

INNER = {
    # dialled after the PIN: (command class, route)
    "*23*2#": (ActivateProfile, "profile"),
    "*23*3*1330#": (ActivateProfile, "profile"),
    "*232": (ActivateProfile, "profile"),
    "#23#": (features.BackToStandard, "profile"),
    "*#23#": (features.QueryProfile, "profile"),
    "*78": (features.DndOn, "profile"),
    "*79": (features.DndOff, "profile"),
    "*76": (features.DndToggle, "profile"),
    "*23": (Interactive, "menu"),
    "*45": (QueueToggle, "queue"),
    "*46": (QueuePause, "queue"),
    "*24*2#": (RecordGreeting, "flow"),
    "*97": (VoicemailAccess, "flow"),
    "*98": (VoicemailAccess, "flow"),
    "*771": (SystemPromptCode, "flow"),
    "*991": (SystemPromptCode, "flow"),
}


@pytest.mark.parametrize("inner", sorted(INNER))
def test_every_code_runs_on_behalf(inner: str) -> None:
    kind, route = INNER[inner]
    parsed = CODES.parse(f"*33*1002*2345#{inner}")
    assert isinstance(parsed, OnBehalf), parsed
    assert (parsed.extension, parsed.pin) == ("1002", "2345")
    assert isinstance(parsed.command, kind) and parsed.command == CODES.parse(inner)
    assert handles(parsed), "the self-service takes the call"
    assert behalf_route(parsed.command) == route


def test_every_command_type_has_a_route() -> None:
    """A code added to the parser must get a way to run on behalf as well."""
    kinds = typing.get_args(features.FeatureCommand)
    assert len(kinds) >= 13
    for kind in kinds:
        if kind is OnBehalf:
            continue
        assert kind in {k for k, _ in INNER.values()}, f"{kind.__name__} is not tested here"


def test_codes_do_not_nest_and_bad_inner_codes_are_invalid() -> None:
    nested = CODES.parse("*33*1002*2345#*33*1003*3456#*45")
    assert isinstance(nested, InvalidCode) and "nest" in nested.reason
    unknown = CODES.parse("*33*1002*2345#*12")
    assert isinstance(unknown, InvalidCode)
    with pytest.raises(ValueError):
        behalf_route(OnBehalf(extension="1002", pin="2345", command=Interactive()))
