"""Feature codes: the table from config, longest match, argument validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.routing.features import (
    ActivateProfile,
    BackToStandard,
    DndOff,
    DndOn,
    DndToggle,
    FeatureCodes,
    FeatureCodeSpec,
    Interactive,
    InvalidCode,
    OnBehalf,
    QueryProfile,
    QueuePause,
    QueueToggle,
    RecordGreeting,
    VoicemailAccess,
    is_feature_code,
    parse_feature_code,
)
from ivr.routing.profiles import AtTime, DefaultReturn, OnDate

CONFIG = load_config(Path(__file__).parents[1] / "config" / "ivr.toml")
CODES = CONFIG.feature_codes


@pytest.mark.parametrize(
    ("dialled", "command"),
    [
        ("*23*2#", ActivateProfile(profile="lunch", number=2, until=DefaultReturn())),
        (
            "*23*2*1300#",
            ActivateProfile(profile="lunch", number=2, until=AtTime(hour=13, minute=0)),
        ),
        (
            "*23*3*0000#",
            ActivateProfile(profile="meeting", number=3, until=AtTime(hour=0, minute=0)),
        ),
        ("*23*9*2359#", ActivateProfile(profile="dnd", number=9, until=AtTime(hour=23, minute=59))),
        ("*23*5#", ActivateProfile(profile="gone", number=5, until=DefaultReturn())),
        (
            "*23*7*0104#",
            ActivateProfile(profile="vacation", number=7, until=OnDate(month=1, day=4)),
        ),
        ("*23*6*1231#", ActivateProfile(profile="trip", number=6, until=OnDate(month=12, day=31))),
        ("*23*8*0229#", ActivateProfile(profile="sick", number=8, until=OnDate(month=2, day=29))),
        ("*232", ActivateProfile(profile="lunch", number=2, until=DefaultReturn())),
        ("*239", ActivateProfile(profile="dnd", number=9, until=DefaultReturn())),
        ("#23#", BackToStandard()),
        ("*#23#", QueryProfile()),
        ("*23", Interactive()),
        ("*78", DndOn()),
        ("*79", DndOff()),
        ("*76", DndToggle()),
        ("*24*3#", RecordGreeting(profile="meeting", number=3)),
        ("*97", VoicemailAccess(mailbox="own")),
        ("*98", VoicemailAccess(mailbox="any")),
        ("*45", QueueToggle()),
        ("*46", QueuePause()),
        (
            "*33*1001*1234#*23*2*1300#",
            OnBehalf(
                extension="1001",
                pin="1234",
                command=ActivateProfile(profile="lunch", number=2, until=AtTime(hour=13, minute=0)),
            ),
        ),
        (
            "*33*1002*12345678##23#",
            OnBehalf(extension="1002", pin="12345678", command=BackToStandard()),
        ),
    ],
)
def test_parse(dialled: str, command: object) -> None:
    assert CODES.parse(dialled) == command
    assert parse_feature_code(dialled, CODES) == command


@pytest.mark.parametrize(
    ("dialled", "reason"),
    [
        ("*23*0#", "no profile 0"),
        ("*230", "no profile 0"),
        ("*24*0#", "no profile 0"),
        ("*23*2*2400#", "no such time 2400"),
        ("*23*2*1260#", "no such time 1260"),
        ("*23*7*1301#", "no such date 1301"),
        ("*23*7*0230#", "no such date 0230"),
        ("*23*7*0001#", "no such date 0001"),
        ("*23*7*1300#", "no such date 1300"),
        ("*23*2*0104", "unexpected characters after *23"),
        ("*23*2#9", "unexpected characters after *23*{p}#"),
        ("*23*2*13#", "unexpected characters after *23"),
        ("*23*22#", "unexpected characters after *23"),
        ("*7812", "unexpected characters after *78"),
        ("*99", "unknown code"),
        ("1001", "unknown code"),
        ("", "unknown code"),
        ("*33*1001*12#*78", "PIN must be 4-8 digits"),
        ("*33*1001*123456789#*78", "PIN must be 4-8 digits"),
        ("*33*1001*1234#", "code after PIN: unknown code"),
        ("*33*1001*1234#*99", "code after PIN: unknown code"),
        ("*33*1001*1234#*33*1002*1234#*78", "do not nest"),
        ("*33*1003*0000*78", "unknown code"),
    ],
)
def test_invalid(dialled: str, reason: str) -> None:
    result = CODES.parse(dialled)
    assert isinstance(result, InvalidCode)
    assert reason in result.reason


def test_date_profile_wants_a_date_and_time_profile_a_time() -> None:
    # "*23*7*1300#" is no valid MMDD; a time-return profile never reads MMDD.
    assert CODES.parse("*23*2*1231#") == ActivateProfile(
        profile="lunch", number=2, until=AtTime(hour=12, minute=31)
    )
    only_hhmm = FeatureCodes(
        specs=(FeatureCodeSpec(code="*23*{p}*{hhmm}#", action="activate"),),
        profiles=CONFIG.profiles,
    )
    result = only_hhmm.parse("*23*7*0104#")
    assert isinstance(result, InvalidCode)
    assert result.reason == "profile 7 takes a date (MMDD)"


def test_invalid_code_hides_pin_from_repr() -> None:
    result = CODES.parse("*33*1001*4711#*99")
    assert "4711" not in repr(result)
    assert "4711" not in repr(CODES.parse("*33*1001*4711#*78"))


@pytest.mark.parametrize(
    ("user_part", "expected"),
    [
        ("*23*2#", True),
        ("#23#", True),
        ("*99", True),
        ("1001", False),
        ("+46846500401", False),
        ("", False),
    ],
)
def test_is_feature_code(user_part: str, expected: bool) -> None:
    assert CODES.is_feature_code(user_part) is expected
    assert is_feature_code(user_part, CODES) is expected


def test_longest_match_wins() -> None:
    codes = FeatureCodes(
        specs=(
            FeatureCodeSpec(code="*7", action="dnd_toggle"),
            FeatureCodeSpec(code="*78", action="dnd_on"),
            FeatureCodeSpec(code="*7{p}", action="activate"),
        ),
        profiles=CONFIG.profiles,
    )
    assert codes.parse("*7") == DndToggle()
    # "*78" matches both the literal and "*7{p}": more literal characters win.
    assert codes.parse("*78") == DndOn()
    assert codes.parse("*72") == ActivateProfile(profile="lunch", number=2)


@pytest.mark.parametrize(
    ("code", "action", "message"),
    [
        ("*23*{p}#", "fly", "unknown action"),
        ("23", "dnd_on", "starts with"),
        ("*23*{q}#", "activate", "unknown placeholder"),
        ("*23*x#", "activate", "unexpected 'x'"),
        ("*23#", "activate", "activate takes {p}"),
        ("*78*{p}", "dnd_on", "dnd_on takes no placeholders"),
        ("*23*{p}*{p}#", "activate", "repeats"),
        ("*23*{p}*{hhmm}{mmdd}#", "activate", "not both"),
        ("*33*{ext}*{pin}#{code}*", "on_behalf", "must come last"),
        ("*33*{ext}#{code}", "on_behalf", "on_behalf takes"),
    ],
)
def test_spec_validates(code: str, action: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("*", r"\*")):
        FeatureCodeSpec(code=code, action=action)


def test_table_refuses_repeated_codes() -> None:
    spec = FeatureCodeSpec(code="*78", action="dnd_on")
    with pytest.raises(ValueError, match="repeat"):
        FeatureCodes(specs=(spec, spec), profiles=CONFIG.profiles)


def test_config_table_is_data() -> None:
    codes = {s.code: s.action for s in CODES.specs}
    assert codes["*23*{p}*{hhmm}#"] == "activate"
    assert codes["*33*{ext}*{pin}#{code}"] == "on_behalf"
    assert (codes["*77{id}"], codes["*99{id}"]) == ("record_prompt", "play_prompt")
    assert len(codes) == 18
