"""The directory parsers (the HTTP API's bodies) name every invalid key at once, without
derived errors; the config file still stops at its first error, on one line."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ivr import cli
from ivr.config import (
    ConfigError,
    ConfigErrors,
    load_config,
    parse_config,
    parse_device,
    parse_profile,
    parse_schedule,
    parse_user,
)
from ivr.directory import device_data, profile_data, schedule_data, user_data

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "ivr.toml"
CONFIG = load_config(SHIPPED)
ANNA = CONFIG.users[1]
FILE = "/api/v1/users/1001"


def anna() -> dict[str, Any]:
    return user_data(ANNA, secrets=True)


def errors_of(parse: Any, *args: Any) -> dict[str, str]:
    """Each (key: reason) of the ConfigErrors ``parse(*args)`` raises; keys never repeat."""
    with pytest.raises(ConfigErrors) as caught:
        parse(*args)
    found = caught.value.errors
    assert len({e.key for e in found}) == len(found), found
    return {e.key: e.reason for e in found}


def user_errors(data: dict[str, Any]) -> dict[str, str]:
    return errors_of(parse_user, data, CONFIG.company, CONFIG.profiles, FILE)


def profile_errors(data: dict[str, Any]) -> dict[str, str]:
    return errors_of(parse_profile, data, CONFIG.company, "/api/v1/profiles")


def test_three_bad_fields_one_nested_are_all_named() -> None:
    data = anna()
    data.update(name=" ", language="fi")
    data["devices"][0]["password"] = "short"
    with pytest.raises(ConfigErrors) as caught:
        parse_user(data, CONFIG.company, CONFIG.profiles, FILE)
    exc = caught.value
    assert {e.key: e.reason for e in exc.errors} == {
        "name": "must not be empty",
        "language": "must be one of 'sv', 'en', got 'fi'",
        "devices[0].password": "must be at least 8 characters",
    }
    assert isinstance(exc, ConfigError) and {e.file for e in exc.errors} == {FILE}
    assert (exc.key, exc.reason) == ("name", "must not be empty"), "the first, in reading order"
    assert str(exc) == f"{FILE}: name: must not be empty"


def test_one_bad_field_is_still_a_config_error_with_todays_message() -> None:
    data = anna()
    data["pin"] = "12"
    with pytest.raises(ConfigError) as caught:
        parse_user(data, CONFIG.company, CONFIG.profiles, FILE)
    assert str(caught.value) == f"{FILE}: pin: must be a quoted string of 4-8 digits, got '12'"
    assert len(caught.value.errors) == 1  # type: ignore[attr-defined]


def test_a_failed_key_gives_no_derived_error() -> None:
    data = anna()
    data.update(extension="Nine", mobile="abc")  # default device ids and numbers hang on them
    del data["devices"][0]["id"]
    data["devices"][2]["kind"] = "fax"  # which keys a device has hangs on its kind
    data["devices"].append({"id": "m2", "kind": "mobile"})
    assert user_errors(data) == {
        "extension": "must be 2-6 digits not starting with 0, got 'Nine'",
        "mobile": "not a phone number: 'abc'",
        "devices[2].kind": "must be one of 'desk', 'softphone', 'mobile', got 'fax'",
    }


def test_nested_schedules_collect_too() -> None:
    data = anna()
    weekly = data["schedules"][0]
    data["schedules"] = [
        {**weekly, "profile": "nap", "start": "25:00"},
        {"id": "trip", "profile": "trip", "from": "2026-07-10", "to": "2026-07-01"},
        {"id": "both", "profile": "lunch", "days": ["mon"], "from": "2026-07-01"},
    ]
    found = user_errors(data)
    assert found == {
        "schedules[0].profile": found["schedules[0].profile"],
        "schedules[0].start": "must be a time HH:MM, got '25:00'",
        "schedules[1].to": "must not be before from (2026-07-10)",
        "schedules[2].days": "a schedule has either days/start/end or from/to",
    }
    assert found["schedules[0].profile"].startswith("no profile 'nap'; one of available")


def test_every_unknown_key_is_named_once_with_its_hint() -> None:
    data = {**anna(), "nmae": "x", "colour": "red"}
    data["devices"][0]["pasword"] = "secret-1234"
    assert user_errors(data) == {
        "devices[0].pasword": "unknown key; did you mean 'password'?",
        "colour": "unknown key",
        "nmae": "unknown key; did you mean 'name'?",
    }


def test_each_bad_list_item_is_named() -> None:
    data = anna()
    data["vip"] = ["+46701740699", "x", "+1"]
    data["devices"][1]["auth_algorithms"] = ["MD4", "MD5", "SHA-1"]
    found = user_errors(data)
    assert set(found) == {
        "vip[1]",
        "vip[2]",
        "devices[1].auth_algorithms[0]",
        "devices[1].auth_algorithms[2]",
    }, found


def test_profile_plan_exceptions_and_missing_tables() -> None:
    data = profile_data(CONFIG.profiles[2])
    data["colour"] = "red"
    data["status"] = "busy"  # not a table: no errors about its keys
    data["name"] = {"sv": " ", "en": "Meeting"}  # the object's own check names its table
    del data["icon"]
    plan = data["plan"]
    plan["ring_seconds"] = 0
    plan["then"] = ["redirect", "dance"]
    plan["exceptions"] = [
        {"dialled": "mobile", "caller": ["vip"], "ring": ["mobile"]},
        {"dialled": "did", "forward": "not a number"},
        {"caller": ["+46701740699"], "ring": ["pager"]},
    ]
    plan["caller_id"] = {"desk": "boss"}
    found = profile_errors(data)
    assert found == {
        "colour": "must be #RRGGBB, got 'red'",
        "status": "must be a table, got 'busy'",
        "name": "texts must not be empty",
        "icon": "is required",
        "plan.exceptions[0].dialled": "an exception needs exactly one of 'dialled' or 'caller'",
        "plan.exceptions[1].forward": found["plan.exceptions[1].forward"],
        "plan.exceptions[2].ring[0]": "must be one of 'desk', 'softphone', 'mobile', got 'pager'",
        "plan.caller_id.desk": found["plan.caller_id.desk"],
        "plan.ring_seconds": "must be an integer 1-600, got 0",
        "plan.then": found["plan.then"],
    }
    assert found["plan.then"].startswith("unknown action 'dance'")
    assert "an extension or a phone number" in found["plan.exceptions[1].forward"]
    assert found["plan.caller_id.desk"].startswith("must be one of 'did'")
    del data["plan"]
    assert "plan" in profile_errors(data), "a missing required table: one error, no keys of it"
    assert not any(k.startswith("plan.") for k in profile_errors(data))


def test_device_and_schedule_bodies_collect() -> None:
    desk = device_data(ANNA.devices[0], secrets=True)
    desk.update(username="no spaces", password="short", number="+46701740605")
    assert errors_of(parse_device, desk, ANNA, CONFIG.company, FILE) == {
        "number": "a desk device has no number",
        "username": "must be 1-64 of A-Z a-z 0-9 . _ ~ + -",
        "password": "must be at least 8 characters",
    }
    mobile = {"id": "m", "kind": "mobile", "username": "x", "password": "y", "extra": 1}
    assert errors_of(parse_device, mobile, ANNA, CONFIG.company, FILE) == {
        "username": "a mobile device has no SIP account",
        "password": "a mobile device has no SIP account",
        "extra": "unknown key",
    }
    slot = {"id": "Bad Id", "profile": "lunch", "days": ["mon", "funday"], "end": "12:00"}
    assert errors_of(parse_schedule, slot, CONFIG.profiles, FILE) == {
        "days[1]": "must be one of 'mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun', got 'funday'",
        "start": "is required",
        "id": "must be 1-32 of a-z 0-9 _ - (starting a-z or 0-9), got 'Bad Id'",
    }


def test_a_body_that_is_not_a_table_is_one_error() -> None:
    assert errors_of(parse_user, [1], CONFIG.company, CONFIG.profiles, FILE) == {
        "": "must be a table, got [1]"
    }


def test_valid_bodies_parse_as_before() -> None:
    for user in CONFIG.users:
        assert (
            parse_user(user_data(user, secrets=True), CONFIG.company, CONFIG.profiles, FILE) == user
        )
        for device in user.devices:
            assert (
                parse_device(device_data(device, secrets=True), user, CONFIG.company, FILE)
                == device
            )
        for i, s in enumerate(user.schedules):
            assert parse_schedule(schedule_data(s), CONFIG.profiles, FILE, i) == s
    for profile in CONFIG.profiles:
        assert parse_profile(profile_data(profile), CONFIG.company, FILE) == profile


def test_the_config_file_reports_every_independent_error_at_once() -> None:
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    bad = copy.deepcopy(data)
    bad["sip"]["port"] = 70000
    bad["rtp"]["port_min"] = "low"
    bad["users"][1].update(name=" ", language="fi")
    bad["users"][1]["devices"][0]["password"] = "short"
    bad["users"][2]["extension"] = "x12"
    bad["surprise"] = 1
    with pytest.raises(ConfigErrors) as caught:
        parse_config(bad, Path("config/ivr.toml"))
    found = [(e.key, e.file) for e in caught.value.errors]
    keys = [key for key, _ in found]
    assert {file for _, file in found} == {"config/ivr.toml"}
    assert keys[:2] == ["sip.port", "rtp.port_min"]
    assert {"users[1].name", "users[1].language", "users[1].devices[0].password"} <= set(keys)
    assert "users[2].extension" in keys and keys[-1] == "surprise"
    # the first is also the exception's own message (one line, as before)
    assert str(caught.value) == "config/ivr.toml: sip.port: must be an integer 1-65535, got 70000"


def test_one_bad_key_is_still_one_plain_error() -> None:
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    bad = copy.deepcopy(data)
    bad["users"][1]["name"] = " "
    with pytest.raises(ConfigError) as caught:
        parse_config(bad, Path("config/ivr.toml"))
    assert not isinstance(caught.value, ConfigErrors)
    assert str(caught.value) == "config/ivr.toml: users[1].name: must not be empty"


def test_cross_checks_wait_until_every_part_reads_well() -> None:
    """A duplicate extension is reported once the users read well (no noise before)."""
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    bad = copy.deepcopy(data)
    bad["users"][2]["extension"] = bad["users"][1]["extension"]
    with pytest.raises(ConfigError) as caught:
        parse_config(bad, Path("config/ivr.toml"))
    assert caught.value.key == "users[2].extension" and "already used" in caught.value.reason


def test_the_cli_prints_each_error_on_its_own_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    text = text.replace("\nport = 5060\n", "\nport = 70000\n", 1)
    text = text.replace('name = "Anna Andersson"', 'name = " "', 1)
    bad = tmp_path / "ivr.toml"
    bad.write_text(text, encoding="utf-8")
    assert cli.main(["--config", str(bad), "serve"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"ivr: {bad}: sip.port: must be an integer 1-65535, got 70000",
        f"ivr: {bad}: users[1].name: must not be empty",
    ]
