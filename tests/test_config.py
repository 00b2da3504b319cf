"""config/ivr.toml: the shipped file loads; every bad value names file, key and reason."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from ivr.config import Config, ConfigError, load_config, parse_config

SHIPPED = Path(__file__).parents[1] / "config" / "ivr.toml"
TEXT = SHIPPED.read_text(encoding="utf-8")
CONFIG = load_config(SHIPPED)


def load_edited(tmp_path: Path, old: str, new: str) -> Config:
    assert TEXT.count(old) == 1, f"{old!r} must occur once in the shipped config"
    path = tmp_path / "ivr.toml"
    path.write_text(TEXT.replace(old, new), encoding="utf-8")
    return load_config(path)


def test_shipped_config_loads() -> None:
    c = CONFIG
    assert c.path == SHIPPED
    assert (c.company.name, c.company.timezone, c.company.region) == (
        "Exempel AB",
        "Europe/Stockholm",
        "SE",
    )
    assert c.company.main_number == "+46846500400"
    assert (c.company.language, c.company.clock) == ("sv", "24h")
    assert (c.sip.host, c.sip.port, c.sip.transports, c.sip.realm) == (
        "127.0.0.1",
        5060,
        ("udp", "tcp"),
        "ivr.local",
    )
    assert (c.sip.nonce_lifetime, c.sip.min_expires, c.sip.max_expires, c.sip.default_expires) == (
        300,
        60,
        3600,
        3600,
    )
    assert (c.sip.max_message_size, c.sip.tcp_idle_timeout, c.sip.auth_secret) == (
        65535,
        300.0,
        None,
    )
    assert (c.http.host, c.http.port) == ("127.0.0.1", 8080)
    assert (c.rtp.port_min, c.rtp.port_max) == (20000, 29999)
    assert c.store.path == Path.cwd() / "var/ivr.sqlite3"
    assert c.prompts_dir == Path.cwd() / "prompts"
    assert c.recordings_dir == Path.cwd() / "recordings"
    assert [p.number for p in c.profiles] == list(range(1, 10))
    assert [u.extension for u in c.users] == ["1000", "1001", "1002", "1003"]
    assert sum(u.admin for u in c.users) == 1


@pytest.mark.parametrize(
    ("p", "sv", "en", "presence", "returns", "direct", "then"),
    [
        (1, "Tillgänglig", "Available", "available", "none", False, "voicemail"),
        (2, "Lunch", "Lunch", "away", "time", True, "redirect → voicemail"),
        (3, "Möte", "Meeting", "busy", "time", True, "redirect → voicemail"),
        (4, "Tillfälligt ute", "Out for a while", "away", "time", True, "redirect → voicemail"),
        (
            5,
            "Gått för dagen",
            "Gone for the day",
            "away",
            "next_workday",
            True,
            "redirect → voicemail",
        ),
        (6, "Tjänsteresa", "Business trip", "away", "date", True, "redirect → voicemail"),
        (7, "Semester", "Vacation", "offline", "date", True, "redirect → voicemail"),
        (8, "Sjuk", "Sick", "offline", "date", True, "redirect → voicemail"),
        (9, "Stör ej", "Do not disturb", "dnd", "none", True, "busy"),
    ],
)
def test_default_profiles(
    p: int, sv: str, en: str, presence: str, returns: str, direct: bool, then: str
) -> None:
    profile = CONFIG.profile(p)
    assert profile is not None
    assert (profile.name.sv, profile.name.en, profile.presence, profile.returns) == (
        sv,
        en,
        presence,
        returns,
    )
    assert (profile.plan.direct, str(profile.plan.then)) == (direct, then)
    assert profile.plan.mex_off is (p != 1)


def test_default_profile_details() -> None:
    assert CONFIG.profile("available").plan.ring == ("desk", "softphone", "mobile")  # type: ignore[union-attr]
    assert CONFIG.profile("available").plan.ring_seconds == 25  # type: ignore[union-attr]
    assert CONFIG.profile("gone").back_at.strftime("%H:%M") == "08:00"  # type: ignore[union-attr]
    assert CONFIG.profile("sick").reason is False  # type: ignore[union-attr]
    [exception] = CONFIG.profile("meeting").plan.exceptions  # type: ignore[union-attr]
    assert (exception.dialled, exception.ring) == ("mobile", ("mobile",))


@pytest.mark.parametrize(
    ("username", "extension", "device"),
    [
        ("1001", "1001", "1001-desk"),
        ("1001-soft", "1001", "1001-soft"),
        ("1003-soft", "1003", "1003-soft"),
    ],
)
def test_device_by_username(username: str, extension: str, device: str) -> None:
    found = CONFIG.device_by_username(username)
    assert found is not None
    assert (found[0].extension, found[1].id) == (extension, device)


@pytest.mark.parametrize("username", ["1001-mobile", "nobody", ""])
def test_device_by_unknown_username(username: str) -> None:
    assert CONFIG.device_by_username(username) is None


@pytest.mark.parametrize(
    ("number", "extension"),
    [
        ("1002", "1002"),
        ("08-465 004 02", "1002"),
        ("+46 8 465 004 02", "1002"),
        ("0046846500402", "1002"),
        ("070-174 06 05", "1001"),
        ("+46846500400", None),
        ("9999", None),
        ("anonymous", None),
    ],
)
def test_user_by_number(number: str, extension: str | None) -> None:
    user = CONFIG.user_by_number(number)
    assert (user.extension if user else None) == extension


def test_demo_devices_have_distinct_accounts() -> None:
    accounts = [(d.username, d.password) for u in CONFIG.users for d in u.devices if d.is_sip]
    assert len(accounts) == 8
    assert len({a for a, _ in accounts}) == len({p for _, p in accounts}) == 8
    assert "anna-desk-1001" not in repr(CONFIG.users)
    assert "1234" not in repr(CONFIG.user("1001"))


def test_trusted_peers_and_overrides(tmp_path: Path) -> None:
    config = load_edited(
        tmp_path, "trusted_peers = []", 'trusted_peers = ["192.0.2.10", "198.51.100.0/24"]'
    )
    assert config.sip.trusted_peers == (
        ipaddress.ip_network("192.0.2.10/32"),
        ipaddress.ip_network("198.51.100.0/24"),
    )
    assert config.sip.is_trusted("198.51.100.7") and not config.sip.is_trusted("192.0.2.11")
    assert not config.sip.is_trusted("not-an-ip")
    assert replace(config.sip, port=0).port == 0  # the CLI may ask for any free port


def test_relative_paths_resolve_against_cwd(tmp_path: Path) -> None:
    data = tomllib.loads(TEXT)
    data["store"] = {"path": ":memory:"}
    data["recordings_dir"] = "/srv/rec"
    config = parse_config(data, SHIPPED, cwd=tmp_path)
    assert config.store.path == Path(":memory:")
    assert config.prompts_dir == tmp_path / "prompts"
    assert config.recordings_dir == Path("/srv/rec")


def test_defaults_for_left_out_sections() -> None:
    data = tomllib.loads(TEXT)
    for section in ("sip", "http", "rtp", "store"):
        del data[section]
    config = parse_config(data, SHIPPED)
    assert (config.sip.domain, config.sip.realm, config.sip.port) == (
        "localhost",
        "localhost",
        5060,
    )
    assert (config.http.port, config.rtp.port_min, config.rtp.port_max) == (8080, 20000, 29999)


EDITS = [
    ("port = 5060", 'port = "abc"', "sip.port", "must be an integer 1-65535, got 'abc'"),
    ("port = 5060", "port = 70000", "sip.port", "must be an integer 1-65535, got 70000"),
    ("port = 5060", "port = true", "sip.port", "must be an integer 1-65535, got true"),
    ("port = 5060", "prot = 5060", "sip.prot", "unknown key; did you mean 'port'?"),
    ("port = 8080", "port = 0", "http.port", "must be an integer 1-65535, got 0"),
    ('domain = "ivr.local"', 'domain = "bad domain"', "sip.domain", "must be a host name"),
    (
        'host = "127.0.0.1"\nport = 5060',
        'host = "localhost"\nport = 5060',
        "sip.host",
        "must be an IP address",
    ),
    (
        'transports = ["udp", "tcp"]',
        'transports = ["udp", "tls"]',
        "sip.transports[1]",
        "must be one of 'udp', 'tcp'",
    ),
    ('transports = ["udp", "tcp"]', "transports = []", "sip.transports", "at least one"),
    (
        "trusted_peers = []",
        'trusted_peers = ["nonsense"]',
        "sip.trusted_peers[0]",
        "must be an IP address or network",
    ),
    (
        "default_expires = 3600",
        "default_expires = 30",
        "sip.default_expires",
        "must be an integer 60-3600, got 30",
    ),
    (
        "tcp_idle_timeout = 300.0",
        'tcp_idle_timeout = "long"',
        "sip.tcp_idle_timeout",
        "must be a number",
    ),
    ("# auth_secret", 'auth_secret = "short"\n#', "sip.auth_secret", "at least 16 characters"),
    ("port_min = 20000", "port_min = 20001", "rtp.port_min", "must be even, got 20001"),
    (
        "port_max = 29999",
        "port_max = 19000",
        "rtp.port_max",
        "must be an integer 20001-65535, got 19000",
    ),
    ('path = "var/ivr.sqlite3"', "path = 3", "store.path", "must be a string, got 3"),
    (
        'timezone = "Europe/Stockholm"',
        'timezone = "Mars/Base"',
        "company.timezone",
        "unknown time zone 'Mars/Base'",
    ),
    ('region = "SE"', 'region = "XX"', "company.region", "unknown region 'XX'"),
    (
        'main_number = "08-465 004 00"',
        'main_number = "12"',
        "company.main_number",
        "not a valid phone number: '12'",
    ),
    ('clock = "24h"', 'clock = "25h"', "company.clock", "must be one of '24h', '12h', got '25h'"),
    (
        'holidays = ["public", "de_facto"]',
        'holidays = ["fun"]',
        "company.holidays",
        "unknown holiday category 'fun'",
    ),
    ('operator = "1000"', 'operator = "1999"', "company.operator", "no user with extension 1999"),
    ('name = "Exempel AB"', "", "company.name", "is required"),
    (
        'extension = "1000"',
        'extension = "0100"',
        "users[0].extension",
        "must be 2-6 digits not starting with 0",
    ),
    (
        'extension = "1003"',
        'extension = "1002"',
        "users[3].extension",
        "extension '1002' is already used by users[2]",
    ),
    (
        'pin = "2345"',
        "pin = 2345",
        "users[2].pin",
        "must be a quoted string of 4-8 digits, got 2345",
    ),
    ('pin = "2345"', 'pin = "23"', "users[2].pin", "must be a quoted string of 4-8 digits"),
    (
        'mobile = "070-174 06 05"',
        'mobile = "070-12"',
        "users[1].mobile",
        "not a valid phone number",
    ),
    (
        'did = "08-465 004 10"',
        'did = "08-465 004 00"',
        "users[0].did",
        "is already used by company.main_number",
    ),
    (
        'did = "08-465 004 03"',
        'did = "08-465 004 02"',
        "users[3].did",
        "'+46846500402' is already used by users[2]",
    ),
    (
        'name = "Carol Clark"\nlanguage = "en"',
        'name = "Carol Clark"\nlanguage = "de"',
        "users[3].language",
        "must be one of 'sv', 'en'",
    ),
    ("admin = true", 'admin = "yes"', "users[0].admin", "must be true or false, got 'yes'"),
    (
        'vip = ["070-174 06 99"]',
        'vip = ["nobody"]',
        "users[1].vip[0]",
        "must be an extension or a phone number",
    ),
    (
        'password = "bengt-soft-1002"',
        'password = "short"',
        "users[2].devices[1].password",
        "at least 8 characters",
    ),
    (
        'username = "1002-soft"',
        'username = "1001-soft"',
        "users[2].devices[1].username",
        "'1001-soft' is already used by users[1].devices[1]",
    ),
    (
        'username = "1000-soft"',
        'username = "1002"',
        "users[0].devices[1].username",
        "'1002' is the extension of users[2]",
    ),
    (
        'username = "1003"',
        'username = "carol desk"',
        "users[3].devices[0].username",
        "must be 1-64 of",
    ),
    ('id = "1003-soft"', 'id = "1003-desk"', "users[3]", "device ids repeat"),
    (
        'id = "1002-desk"\nkind = "desk"',
        'id = "1002-desk"\nkind = "fax"',
        "users[2].devices[0].kind",
        "must be one of 'desk', 'softphone', 'mobile'",
    ),
    ('username = "1002"\n', "", "users[2].devices[0].username", "is required"),
    (
        'password = "reception-soft-4712"',
        'password = "reception-soft-4712"\ncolour = "red"',
        "users[0].devices[1].colour",
        "unknown key",
    ),
    (
        'password = "reception-soft-4712"',
        'password = "reception-soft-4712"\n[[users.devices]]\nkind = "mobile"',
        "users[0].devices[2].number",
        "is required (the user has no mobile number)",
    ),
    (
        'kind = "mobile"                     #',
        'kind = "mobile"\nusername = "anna-m"\n#',
        "users[1].devices[2].username",
        "a mobile device has no SIP account",
    ),
    (
        'profile = "lunch"',
        'profile = "siesta"',
        "users[1].schedules[0].profile",
        "no profile 'siesta'",
    ),
    (
        'start = "11:30"',
        'start = "25:00"',
        "users[1].schedules[0].start",
        "must be a time HH:MM, got '25:00'",
    ),
    ('days = ["mon"', 'days = ["mo"', "users[1].schedules[0].days[0]", "must be one of 'mon'"),
    (
        'holidays = "skip"',
        'holidays = "never"',
        "users[1].schedules[0].holidays",
        "must be one of 'include', 'skip', 'only'",
    ),
    (
        "to = 2026-07-31",
        "to = 2026-06-30",
        "users[3].schedules[0].to",
        "must not be before from (2026-07-06)",
    ),
    (
        "from = 2026-07-06",
        'from = "July"',
        "users[3].schedules[0].from",
        "must be a date YYYY-MM-DD",
    ),
    (
        "from = 2026-07-06\n",
        'from = 2026-07-06\ndays = ["mon"]\n',
        "users[3].schedules[0].days",
        "either days/start/end or from/to",
    ),
    (
        "number = 4",
        "number = 3",
        "profiles[3].number",
        "profile number '3' is already used by profiles[2]",
    ),
    ("number = 4", "number = 10", "profiles[3].number", "must be an integer 1-9, got 10"),
    (
        'id = "out"',
        'id = "lunch"',
        "profiles[3].id",
        "profile id 'lunch' is already used by profiles[1]",
    ),
    ('id = "out"', 'id = "Out!"', "profiles[3].id", "must be 1-32 of a-z 0-9"),
    (
        'presence = "busy"',
        'presence = "sleeping"',
        "profiles[2].presence",
        "must be one of 'available'",
    ),
    (
        'colour = "#2e7d32"',
        'colour = "green"',
        "profiles[0].colour",
        "must be #RRGGBB, got 'green'",
    ),
    ("priority = 90", "priority = -1", "profiles[0].priority", "must be an integer 0-1000, got -1"),
    (
        'name = { sv = "Lunch", en = "Lunch" }',
        'name = { en = "Lunch" }',
        "profiles[1].name.sv",
        "is required",
    ),
    (
        'status = { sv = "Stör ej", en = "Do not disturb" }',
        'status = { sv = "Stör ej", en = "" }',
        "profiles[8].status",
        "texts must not be empty",
    ),
    (
        'return = "next_workday"',
        'return = "never"',
        "profiles[4].return",
        "must be one of 'none', 'time', 'date', 'next_workday'",
    ),
    (
        'return = "next_workday"',
        'return = "time"',
        "profiles[4].return_at",
        "is only for return = 'date' or 'next_workday'",
    ),
    ('return_at = "08:00"', 'return_at = "8"', "profiles[4].return_at", "must be a time HH:MM"),
    (
        'ring = ["desk", "softphone", "mobile"]',
        'ring = ["desk", "fax"]',
        "profiles[0].plan.ring[1]",
        "must be one of 'desk'",
    ),
    (
        "ring_seconds = 25",
        "ring_seconds = 0",
        "profiles[0].plan.ring_seconds",
        "must be an integer 1-600, got 0",
    ),
    (
        'then = "voicemail"',
        'then = ["redirect"]',
        "profiles[0].plan.then",
        'must be one action, or "redirect" and one action',
    ),
    ('then = "voicemail"', 'then = "fax"', "profiles[0].plan.then", "unknown action 'fax'"),
    (
        'then = "voicemail"',
        'then = "forward"',
        "profiles[0].plan.then",
        "use 'forward:<number or extension>'",
    ),
    (
        'then = "voicemail"',
        'then = "forward:9999"',
        "profiles[0].plan.then",
        "no user with extension 9999",
    ),
    (
        'then = "voicemail"',
        'then = "forward:abc"',
        "profiles[0].plan.then",
        "must be 'mobile', an extension or a phone number",
    ),
    (
        'then = "busy"',
        'then = "busy"\ndirekt = true',
        "profiles[8].plan.direkt",
        "unknown key; did you mean 'direct'?",
    ),
    (
        '{ dialled = "mobile", ring',
        '{ dialled = "mobile", caller = ["vip"], ring',
        "profiles[2].plan.exceptions[0].dialled",
        "exactly one of 'dialled' or 'caller'",
    ),
    (
        '{ dialled = "mobile", ring',
        '{ dialled = "home", ring',
        "profiles[2].plan.exceptions[0].dialled",
        "must be one of 'mobile', 'did', 'ext'",
    ),
    (
        'ring = ["mobile"] }',
        'forward = "1002", ring = ["mobile"] }',
        "profiles[2].plan.exceptions[0].ring",
        "exactly one of 'ring' or 'forward'",
    ),
    (
        '{ dialled = "mobile", ring = ["mobile"] }',
        '{ caller = ["vip", "x"], ring = ["mobile"] }',
        "profiles[2].plan.exceptions[0].caller[1]",
        "an extension or a phone number",
    ),
    (
        '{ dialled = "mobile", ring = ["mobile"] }',
        '{ dialled = "mobile", forward = "1999" }',
        "profiles[2].plan.exceptions[0].forward",
        "no user with extension 1999",
    ),
    (
        'queue = "*"',
        'queue = "billing"',
        "profiles[0].plan.queues[0].queue",
        "no user has queue 'billing'",
    ),
    (
        'caller_id = { desk = "did"',
        'caller_id = { desk = "secret"',
        "profiles[0].plan.caller_id.desk",
        "must be one of 'did', 'main', 'mobile', 'hidden'",
    ),
    ('action = "dnd_toggle"', 'action = "dnd_flip"', "feature_codes[9].action", "must be one of"),
    ('code = "*24*{p}#"', 'code = "*24*{q}#"', "feature_codes[10].code", "unknown placeholder {q}"),
    ('code = "*24*{p}#"', 'code = "*24#"', "feature_codes[10].code", "record_greeting takes {p}"),
    ('code = "*46"', 'code = "*45"', "feature_codes", "feature codes repeat"),
    ('prompts_dir = "prompts"', 'prompts_dir = "prompts"\ncolour = "x"', "colour", "unknown key"),
    ('prompts_dir = "prompts"', 'prompts_dir = ""', "prompts_dir", "must not be empty"),
]


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"), EDITS, ids=[e[2] + ":" + e[3][:24] for e in EDITS]
)
def test_config_errors(tmp_path: Path, old: str, new: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_edited(tmp_path, old, new)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'ivr.toml'}: {key}: "), message
    assert reason in message
    assert "\n" not in message
    assert (caught.value.key, caught.value.file) == (key, str(tmp_path / "ivr.toml"))


def test_exact_message_from_the_brief(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_edited(tmp_path, "port = 5060", 'port = "abc"')
    assert (
        str(caught.value)
        == f"{tmp_path / 'ivr.toml'}: sip.port: must be an integer 1-65535, got 'abc'"
    )


@pytest.mark.parametrize(
    ("mutate", "key", "reason"),
    [
        (lambda d: d.pop("company"), "company", "is required"),
        (lambda d: d.pop("profiles"), "profiles", "is required"),
        (lambda d: d.pop("feature_codes"), "feature_codes", "is required"),
        (
            lambda d: d["profiles"].pop(0),
            "profiles",
            "profile number 1 (the standard profile) is required",
        ),
        (lambda d: d.update(users="x"), "users", "must be an array of tables, got 'x'"),
        (lambda d: d.update(http=3), "http", "must be a table, got 3"),
        (lambda d: d["profiles"][1].update(plan=5), "profiles[1].plan", "must be a table, got 5"),
        (
            lambda d: d["users"][0].update(devices=[1]),
            "users[0].devices[0]",
            "must be a table, got 1",
        ),
    ],
)
def test_structure_errors(mutate: object, key: str, reason: str) -> None:
    data = tomllib.loads(TEXT)
    mutate(data)  # type: ignore[operator]
    with pytest.raises(ConfigError) as caught:
        parse_config(data, Path("config/ivr.toml"))
    assert str(caught.value) == f"config/ivr.toml: {key}: {reason}"


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "ivr.toml"
    path.write_text("[sip]\nport = = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: (toml): ")
    assert "line 2" in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml")
    assert (
        str(caught.value)
        == f"{tmp_path / 'nope.toml'}: (file): cannot read: No such file or directory"
    )


def test_device_auth_algorithms_are_read_and_checked(tmp_path: Path) -> None:
    config = load_config(Path(__file__).resolve().parents[1] / "config" / "ivr.toml")
    found = config.device_by_username("1001-soft")
    assert found is not None and found[1].auth_algorithms == ("MD5",)
    assert config.device_by_username("1001")[1].auth_algorithms is None
    text = (Path(__file__).resolve().parents[1] / "config" / "ivr.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('auth_algorithms = ["MD5"]', 'auth_algorithms = ["MD4"]', 1))
    try:
        load_config(bad)
    except ConfigError as exc:
        assert "auth_algorithms" in str(exc) and str(bad) in str(exc)
    else:
        raise AssertionError("MD4 accepted")
