"""``config/ivr.toml`` → frozen, validated dataclasses.

Any invalid value, missing required key or unknown key raises :class:`ConfigError`,
whose message is one line: ``config/ivr.toml: sip.port: must be an integer 1-65535,
got 'abc'``. Users, devices and profiles are the routing model's own classes
(``ivr.routing.model``); the feature-code table is compiled once here. The parsers of
one directory object (``parse_user`` ..., for the HTTP API) name every invalid key at
once: :class:`ConfigErrors`, whose message is still its first error's one line.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from ivr.routing.features import ACTIONS, FeatureCodes, FeatureCodeSpec
from ivr.routing.model import (
    CALLER_ID_SOURCES,
    DEVICE_KINDS,
    DIALLED_KINDS,
    HOLIDAY_RULES,
    LANGUAGES,
    PRESENCES,
    RETURN_KINDS,
    TERMINALS,
    CallerIds,
    DateRange,
    Device,
    ExceptionRule,
    Plan,
    Profile,
    QueueLogin,
    Schedule,
    Text,
    Then,
    User,
    WeeklySlot,
)
from ivr.routing.numbers import NumberError, NumberPlan
from ivr.routing.profiles import Rules
from ivr.routing.queues import FALLBACK_ACTIONS, Fallback, Queue
from ivr.routing.schedule import Calendar
from ivr.trunk import DIVERSION_MODES, Trunk, parse_peer

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")
_MISSING: Any = object()
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_IDENT = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_DOMAIN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})")
TRANSPORTS = ("udp", "tcp")
AUTH_ALGORITHMS: tuple[str, ...] = ("SHA-256", "MD5")  # challenge order: preferred first


class ConfigError(ValueError):
    """An invalid configuration: which file, which key (dotted path), and why."""

    def __init__(self, file: Path | str, key: str, reason: str) -> None:
        self.file = str(file)
        self.key = key
        self.reason = " ".join(reason.split())
        super().__init__(f"{self.file}: {key}: {self.reason}")


class ConfigErrors(ConfigError):
    """Several invalid keys of one object at once (``errors``, in reading order); file,
    key, reason and the one-line message are the first error's."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = tuple(errors)
        first = self.errors[0]
        super().__init__(first.file, first.key, first.reason)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _ip(text: str) -> None:
    ipaddress.ip_address(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Company:
    """Who we are and where: name, time zone, region, main number, language, clock."""

    name: str
    timezone: str = "Europe/Stockholm"
    region: str = "SE"
    main_number: str
    language: Literal["sv", "en"] = "sv"
    clock: Literal["24h", "12h"] = "24h"
    holidays: tuple[str, ...] = ("public", "de_facto")
    operator: str | None = None
    extension_min_digits: int = 2
    extension_max_digits: int = 6
    calendar: Calendar = field(init=False, repr=False, compare=False)
    numbers: NumberPlan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.clock not in ("24h", "12h"):
            raise ValueError("clock must be '24h' or '12h'")
        if self.language not in LANGUAGES:
            raise ValueError(f"unknown language {self.language!r}")
        calendar = Calendar(timezone=self.timezone, region=self.region, categories=self.holidays)
        numbers = NumberPlan(
            region=self.region,
            extension_min=self.extension_min_digits,
            extension_max=self.extension_max_digits,
        )
        object.__setattr__(self, "calendar", calendar)
        object.__setattr__(self, "numbers", numbers)

    @property
    def tz(self) -> ZoneInfo:
        """The company time zone."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True, kw_only=True)
class SipConfig:
    """SIP listener, registrar and digest settings. Port 0 (CLI/tests only) = any free."""

    domain: str = "localhost"
    host: str = "127.0.0.1"
    port: int = 5060
    transports: tuple[str, ...] = TRANSPORTS
    realm: str = ""
    nonce_lifetime: int = 300
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_message_size: int = 65535
    tcp_idle_timeout: float = 300.0
    auth_secret: str | None = field(default=None, repr=False)
    auth_algorithms: tuple[str, ...] = AUTH_ALGORITHMS
    auth_uri_check: str = "strict"
    trusted_peers: tuple[IpNetwork, ...] = ()
    max_call_seconds: int = 43200  # a bridged call is ended (BYE both ways) after this; 0: never

    def __post_init__(self) -> None:
        _ip(self.host)
        if not self.auth_algorithms or not set(self.auth_algorithms) <= set(AUTH_ALGORITHMS):
            raise ValueError("auth_algorithms must be a non-empty subset of SHA-256, MD5")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0-65535")
        if not self.transports or not set(self.transports) <= set(TRANSPORTS):
            raise ValueError("transports must be a non-empty subset of udp, tcp")
        if not 1 <= self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("need 1 <= min_expires <= default_expires <= max_expires")
        if not self.realm:
            object.__setattr__(self, "realm", self.domain)

    def is_trusted(self, address: str) -> bool:
        """True when ``address`` (an IP) belongs to a configured trusted peer."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted_peers)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    """The admin HTTP API listener."""

    host: str = "127.0.0.1"
    port: int = 8080

    def __post_init__(self) -> None:
        _ip(self.host)
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0-65535")


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpConfig:
    """The RTP port range (even ports; RTCP would take the odd one above)."""

    host: str = "127.0.0.1"
    port_min: int = 20000
    port_max: int = 29999

    def __post_init__(self) -> None:
        _ip(self.host)
        if not 0 < self.port_min < self.port_max <= 65535 or self.port_min % 2:
            raise ValueError("need an even port_min with 0 < port_min < port_max <= 65535")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """Where state lives: a SQLite file (``:memory:`` for tests)."""

    path: Path = Path("var/ivr.sqlite3")


SYSTEM_PROMPTS: tuple[str, ...] = ("leave_message", "invalid_code", "goodbye")


@dataclass(frozen=True, slots=True, kw_only=True)
class SelfServiceConfig:
    """Phone self-service: PIN on ``*97``, PIN guard limits, recording limits."""

    own_mailbox_pin: bool = False  # *97 from the user's own device asks for the PIN too
    pin_tries_per_call: int = 3
    pin_failures_per_hour: int = 10
    pin_lockout_seconds: float = 900.0
    recording_min_seconds: float = 0.5
    recording_max_seconds: float = 120.0
    recording_silence_seconds: float = 3.0
    system_prompts: tuple[str, ...] = SYSTEM_PROMPTS
    """``*77<id>``/``*99<id>``: prompt <id> is the id-th name here (1-based)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole validated configuration, with lookups by extension, username, number."""

    path: Path
    company: Company
    sip: SipConfig
    http: HttpConfig
    rtp: RtpConfig
    store: StoreConfig
    prompts_dir: Path
    recordings_dir: Path
    users: tuple[User, ...]
    profiles: tuple[Profile, ...]
    feature_codes: FeatureCodes
    trunk: Trunk | None = None  # None: no [trunk] table, no calls to the public network
    selfservice: SelfServiceConfig = field(default_factory=SelfServiceConfig)
    queues: tuple[Queue, ...] = ()  # [[queues]]: call queues with their own numbers
    rules: Rules = field(init=False, repr=False, compare=False)
    _by_ext: dict[str, User] = field(init=False, repr=False, compare=False)
    _by_username: dict[str, tuple[User, Device]] = field(init=False, repr=False, compare=False)
    _by_number: dict[str, User] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rules = Rules(
            profiles=self.profiles,
            calendar=self.company.calendar,
            numbers=self.company.numbers,
            operator=self.company.operator,
        )
        by_ext = {u.extension: u for u in self.users}
        by_username = {d.username: (u, d) for u in self.users for d in u.devices if d.username}
        by_number = {n: u for u in self.users for n in (u.did, u.mobile) if n is not None}
        if len(by_ext) != len(self.users):
            raise ValueError("extensions repeat")
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "_by_ext", by_ext)
        object.__setattr__(self, "_by_username", by_username)
        object.__setattr__(self, "_by_number", by_number)

    def user(self, extension: str) -> User | None:
        """The user with this extension."""
        return self._by_ext.get(extension)

    def device_by_username(self, username: str) -> tuple[User, Device] | None:
        """The user and SIP device for a digest username / AOR user part."""
        return self._by_username.get(username)

    def user_by_number(self, number: str) -> User | None:
        """The user reached at an extension, DID or mobile number (any format)."""
        canonical = self.company.numbers.canonical(number)
        if canonical is None:
            return None
        return self._by_ext.get(canonical) or self._by_number.get(canonical)

    def profile(self, key: str | int) -> Profile | None:
        """A profile by id or number."""
        return self.rules.get(key)

    def queue(self, queue_id: str) -> Queue | None:
        """A call queue by id (the name users list)."""
        return next((q for q in self.queues if q.id == queue_id), None)

    def queue_by_number(self, number: str) -> Queue | None:
        """The call queue dialled as ``number``."""
        return next((q for q in self.queues if q.number == number), None)


def load_config(path: Path) -> Config:
    """Read and validate a TOML configuration file."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(path, "(file)", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "(file)", f"not UTF-8: {exc.reason}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(toml)", str(exc)) from exc
    return parse_config(data, Path(path))


# --- reading TOML tables -----------------------------------------------------------


class _Bad:
    """Stands in for the value of a key that failed while errors are being collected."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<invalid>"


_BAD: Any = _Bad()


def _ok(*values: object) -> bool:
    """True when no value (nor an item of a tuple, list or set value) is a failed key's."""
    for value in values:
        if value is _BAD:
            return False
        if isinstance(value, tuple | list | set | frozenset) and any(v is _BAD for v in value):
            return False
    return True


class _Table:
    """One TOML table being read; getters record the keys used so leftovers are errors.

    With ``errors`` (shared by the nested tables read from this one) a failing getter
    records its :class:`ConfigError` there and returns the stand-in ``_BAD`` instead of
    raising, :meth:`build` skips objects fed a ``_BAD``, and a table that is missing or
    not a table reads as empty without further errors; without it the first error
    raises."""

    def __init__(
        self, file: Path, path: str, data: object, errors: list[ConfigError] | None = None
    ) -> None:
        self.file, self.path, self.errors = file, path, errors
        self.used: set[str] = set()
        self.dead = not isinstance(data, dict)
        if self.dead and data is not _BAD:
            self._record(ConfigError(file, path, f"must be a table, got {_show(data)}"))
        self.data: dict[str, object] = data if isinstance(data, dict) else {}

    def _record(self, error: ConfigError) -> Any:
        if self.errors is None:
            raise error
        self.errors.append(error)
        return _BAD

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), reason)

    def fail(self, name: str, reason: str) -> Any:
        """Key ``name`` is invalid: raise, or (collecting) record it and return ``_BAD``
        (a failed key counts as read: it is not reported again as unknown)."""
        if name in self.data:
            self.used.add(name)
        return self._record(self.error(name, reason))

    def has(self, name: str) -> bool:
        return name in self.data

    def ignore(self, *names: str) -> None:
        """Mark keys as read without reading them (their meaning hangs on a failed key)."""
        self.used.update(names)

    def raw(self, name: str, default: object = _MISSING) -> object:
        self.used.add(name)
        if self.dead:
            return _BAD
        if name in self.data:
            return self.data[name]
        if default is _MISSING:
            return self.fail(name, "is required")
        return default

    def text(self, name: str, default: object = _MISSING, choices: tuple[str, ...] = ()) -> Any:
        value = self.raw(name, default)
        if value is _BAD:
            return _BAD
        if value is None and default is None:
            return None
        if choices and value not in choices:
            options = ", ".join(repr(c) for c in choices)
            return self.fail(name, f"must be one of {options}, got {_show(value)}")
        if not isinstance(value, str):
            return self.fail(name, f"must be a string, got {_show(value)}")
        return value

    def integer(self, name: str, default: object, lo: int, hi: int) -> int:
        value = self.raw(name, default)
        if value is _BAD:
            return _BAD
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            return self.fail(name, f"must be an integer {lo}-{hi}, got {_show(value)}")
        return value

    def number(self, name: str, default: object, lo: float, hi: float) -> float:
        value = self.raw(name, default)
        if value is _BAD:
            return _BAD
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            return self.fail(name, f"must be a number {lo:g}-{hi:g}, got {_show(value)}")
        return float(value)

    def flag(self, name: str, default: object = False) -> bool:
        value = self.raw(name, default)
        if value is _BAD:
            return _BAD
        if not isinstance(value, bool):
            return self.fail(name, f"must be true or false, got {_show(value)}")
        return value

    def texts(
        self, name: str, default: object = _MISSING, choices: tuple[str, ...] = ()
    ) -> list[str]:
        value = self.raw(name, default)
        if value is _BAD:
            return _BAD
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return self.fail(name, f"must be a list of strings, got {_show(value)}")
        bad = False
        for i, item in enumerate(value):
            if not isinstance(item, str) or (choices and item not in choices):
                want = f"one of {', '.join(repr(c) for c in choices)}" if choices else "a string"
                self.fail(f"{name}[{i}]", f"must be {want}, got {_show(item)}")
                bad = True
        if bad:
            return _BAD
        if len(set(value)) != len(value):
            return self.fail(name, "has repeated entries")
        return list(value)

    def table(self, name: str, required: bool = False) -> _Table:
        value = self.raw(name, _MISSING if required else {})
        return _Table(self.file, self.key(name), value, self.errors)

    def tables(self, name: str, required: bool = False) -> Iterator[_Table]:
        value = self.raw(name, _MISSING if required else [])
        if value is _BAD:
            return
        if not isinstance(value, list):
            self.fail(name, f"must be an array of tables, got {_show(value)}")
            return
        for i, item in enumerate(value):
            yield _Table(self.file, f"{self.key(name)}[{i}]", item, self.errors)

    def convert(self, name: str, value: T, fn: Callable[[T], Any]) -> Any:
        """Apply ``fn`` to a value read from ``name``; a ValueError names that key."""
        if value is _BAD:
            return _BAD
        try:
            return fn(value)
        except ValueError as exc:
            if self.errors is None:
                raise self.error(name, str(exc)) from exc
            return self.fail(name, str(exc))

    def build(self, cls: Callable[..., T], **kwargs: object) -> T:
        """Construct a self-validating object; its ValueError names this table. When a
        value stands in for a failed key the object is not made (no derived error)."""
        if not _ok(*kwargs.values()):
            return _BAD  # type: ignore[no-any-return]
        try:
            return cls(**kwargs)
        except ValueError as exc:
            error = ConfigError(self.file, self.path or "(top)", str(exc))
            if self.errors is None:
                raise error from exc
            return self._record(error)  # type: ignore[no-any-return]

    def done(self) -> None:
        if self.dead:
            return
        for name in sorted(set(self.data) - self.used):
            close = difflib.get_close_matches(name, sorted(self.used), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(name, f"unknown key{hint}")


def _collecting(file: str, data: object, read: Callable[[_Table], T]) -> T:
    """``read`` the table ``data`` collecting every error; raise them as one
    :class:`ConfigErrors`."""
    errors: list[ConfigError] = []
    found = read(_Table(Path(file), "", data, errors))
    if errors:
        raise ConfigErrors(errors)
    return found


# --- sections -----------------------------------------------------------------------


def _clock(text: object) -> time:
    if isinstance(text, time):
        return text
    m = _CLOCK.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"must be a time HH:MM, got {_show(text)}")
    return time(int(m[1]), int(m[2]))


def _day(value: object) -> date:
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"must be a date YYYY-MM-DD, got {_show(value)}")


def _company(t: _Table) -> Company:
    name = t.text("name")
    timezone = t.text("timezone", "Europe/Stockholm")
    t.convert("timezone", timezone, lambda z: Calendar(timezone=z))
    region = t.text("region", "SE")
    t.convert("region", region, lambda r: NumberPlan(region=r))
    t.convert("region", region, lambda r: Calendar(timezone=timezone, region=r, categories=()))
    cats = tuple(t.texts("holidays", ["public", "de_facto"]))
    t.convert("holidays", cats, lambda c: Calendar(timezone=timezone, region=region, categories=c))
    lo = t.integer("extension_min_digits", 2, 1, 15)
    hi = t.integer("extension_max_digits", 6, lo, 15)
    plan = NumberPlan(region=region, extension_min=lo, extension_max=hi)
    main = t.convert("main_number", t.text("main_number"), plan.normalise)
    operator = t.text("operator", None)
    if operator is not None:
        operator = t.convert("operator", operator, lambda o: _target(o, plan, mobile=False))
    company = t.build(
        Company,
        name=name,
        timezone=timezone,
        region=region,
        main_number=main,
        language=t.text("language", "sv", LANGUAGES),
        clock=t.text("clock", "24h", ("24h", "12h")),
        holidays=cats,
        operator=operator,
        extension_min_digits=lo,
        extension_max_digits=hi,
    )
    t.done()
    return company


def _sip(t: _Table) -> SipConfig:
    domain = t.text("domain", "localhost")
    if _DOMAIN.fullmatch(domain) is None:
        raise t.error("domain", f"must be a host name or IP address, got {_show(domain)}")
    host = t.convert("host", t.text("host", "127.0.0.1"), _host)
    peers = []
    for i, peer in enumerate(t.texts("trusted_peers", [])):
        peers.append(t.convert(f"trusted_peers[{i}]", peer, _network))
    min_exp = t.integer("min_expires", 60, 1, 86400)
    max_exp = t.integer("max_expires", 3600, min_exp, 86400)
    default_exp = t.integer("default_expires", 3600, min_exp, max_exp)
    transports = tuple(t.texts("transports", list(TRANSPORTS), TRANSPORTS))
    if not transports:
        raise t.error("transports", "must name at least one of 'udp', 'tcp'")
    secret = t.text("auth_secret", None)
    if secret is not None and len(secret) < 16:
        raise t.error("auth_secret", "must be at least 16 characters (or left out)")
    algorithms = tuple(t.texts("auth_algorithms", list(AUTH_ALGORITHMS), AUTH_ALGORITHMS))
    if not algorithms or len(set(algorithms)) != len(algorithms):
        raise t.error("auth_algorithms", "must list 'SHA-256' and/or 'MD5', each once")
    uri_check = t.text("auth_uri_check", "strict", ("strict", "server"))
    realm = t.text("realm", domain)
    if not realm:
        raise t.error("realm", "must not be empty")
    sip = t.build(
        SipConfig,
        domain=domain,
        host=host,
        port=t.integer("port", 5060, 1, 65535),
        transports=transports,
        realm=realm,
        nonce_lifetime=t.integer("nonce_lifetime", 300, 1, 86400),
        min_expires=min_exp,
        max_expires=max_exp,
        default_expires=default_exp,
        max_message_size=t.integer("max_message_size", 65535, 1024, 1 << 20),
        tcp_idle_timeout=t.number("tcp_idle_timeout", 300.0, 1.0, 86400.0),
        auth_secret=secret,
        auth_algorithms=algorithms,
        auth_uri_check=uri_check,
        trusted_peers=tuple(peers),
        max_call_seconds=t.integer("max_call_seconds", 43200, 0, 7 * 86400),
    )
    t.done()
    return sip


def _host(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"must be an IP address, got {_show(text)}") from None
    return text


def _network(text: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"must be an IP address or network, got {_show(text)}") from None


def _http(t: _Table) -> HttpConfig:
    http = t.build(
        HttpConfig,
        host=t.convert("host", t.text("host", "127.0.0.1"), _host),
        port=t.integer("port", 8080, 1, 65535),
    )
    t.done()
    return http


def _rtp(t: _Table) -> RtpConfig:
    host = t.convert("host", t.text("host", "127.0.0.1"), _host)
    low = t.integer("port_min", 20000, 1024, 65534)
    if low % 2:
        raise t.error("port_min", f"must be even, got {low}")
    high = t.integer("port_max", 29999, low + 1, 65535)
    rtp = t.build(RtpConfig, host=host, port_min=low, port_max=high)
    t.done()
    return rtp


def _path(t: _Table, name: str, default: str, cwd: Path) -> Path:
    text = t.text(name, default)
    if not text:
        raise t.error(name, "must not be empty")
    if text == ":memory:":
        return Path(text)
    path = Path(text).expanduser()
    return path if path.is_absolute() else cwd / path


def _target(text: str, plan: NumberPlan, mobile: bool = True) -> str:
    """A forward target: ``mobile``, an extension, or a number (normalised)."""
    if mobile and text == "mobile":
        return text
    if plan.is_extension(text):
        return text
    try:
        return plan.normalise(text)
    except NumberError:
        extra = "'mobile', " if mobile else ""
        raise ValueError(f"must be {extra}an extension or a phone number, got {text!r}") from None


def _tuple(value: Any) -> Any:
    """``tuple(value)``, keeping the stand-in for a failed key."""
    return _BAD if value is _BAD else tuple(value)


def _then(t: _Table, plan: NumberPlan, targets: list[tuple[str, str]]) -> Then:
    steps = t.texts("then", ["voicemail"])
    if steps is _BAD:
        return _BAD
    redirect = bool(steps) and steps[0] == "redirect"
    rest = steps[1:] if redirect else steps
    if len(rest) != 1:
        return t.fail("then", 'must be one action, or "redirect" and one action')
    action, _, target = rest[0].partition(":")
    if action not in TERMINALS:
        options = ", ".join(repr(a) for a in (*TERMINALS, "redirect"))
        return t.fail("then", f"unknown action {rest[0]!r}; one of {options}")
    if (action == "forward") != bool(target):
        return t.fail("then", f"use 'forward:<number or extension>', got {rest[0]!r}")
    if target:
        target = t.convert("then", target, lambda x: _target(x, plan))
        if target is _BAD:
            return _BAD
        targets.append((t.key("then"), target))
    return Then(redirect=redirect, action=action, target=target or None)


def _exception(t: _Table, plan: NumberPlan, targets: list[tuple[str, str]]) -> ExceptionRule:
    dialled = t.text("dialled", None, DIALLED_KINDS)
    given = t.texts("caller", [])
    callers = _BAD if given is _BAD else []
    for i, c in enumerate([] if given is _BAD else given):
        callers.append(
            c if c == "vip" else t.convert(f"caller[{i}]", c, lambda x: _target(x, plan, False))
        )
    if _ok(dialled, callers) and (dialled is None) == (not callers):
        dialled = t.fail("dialled", "an exception needs exactly one of 'dialled' or 'caller'")
    ring = _tuple(t.texts("ring", [], DEVICE_KINDS))
    forward = t.text("forward", None)
    if _ok(ring, forward) and bool(ring) == (forward is not None):
        ring = t.fail("ring", "an exception needs exactly one of 'ring' or 'forward'")
    if forward is not None:
        forward = t.convert("forward", forward, lambda x: _target(x, plan))
        if forward is not _BAD:
            targets.append((t.key("forward"), forward))
    rule = t.build(
        ExceptionRule, dialled=dialled, callers=_tuple(callers), ring=ring, forward=forward
    )
    t.done()
    return rule


def _plan(
    t: _Table, plan: NumberPlan, targets: list[tuple[str, str]], queues: list[tuple[str, str]]
) -> Plan:
    exceptions = tuple(_exception(e, plan, targets) for e in t.tables("exceptions"))
    logins = []
    for q in t.tables("queues"):
        name = q.text("queue")
        if name == "":
            name = q.fail("queue", "must not be empty")
        if name is not _BAD:
            queues.append((q.key("queue"), name))
        logins.append(
            q.build(QueueLogin, queue=name, ring=_tuple(q.texts("ring", choices=DEVICE_KINDS)))
        )
        q.done()
    ids = t.table("caller_id")
    caller_id = ids.build(
        CallerIds,
        desk=ids.text("desk", "did", CALLER_ID_SOURCES),
        softphone=ids.text("softphone", "did", CALLER_ID_SOURCES),
        mobile=ids.text("mobile", "mobile", CALLER_ID_SOURCES),
    )
    ids.done()
    result = t.build(
        Plan,
        ring=_tuple(t.texts("ring", [], DEVICE_KINDS)),
        ring_seconds=t.integer("ring_seconds", 25, 1, 600),
        then=_then(t, plan, targets),
        direct=t.flag("direct"),
        exceptions=exceptions,
        mex_off=t.flag("mex_off"),
        soft=t.flag("soft"),
        offer_mobile=t.flag("offer_mobile"),
        queues=tuple(logins),
        caller_id=caller_id,
    )
    t.done()
    return result


def _ident(t: _Table, name: str, default: object = _MISSING) -> str:
    value = t.text(name, default)
    if value is not _BAD and _IDENT.fullmatch(value) is None:
        return t.fail(name, f"must be 1-32 of a-z 0-9 _ - (starting a-z or 0-9), got {value!r}")
    return value


def _nonempty(t: _Table, name: str) -> str:
    value = t.text(name)
    if isinstance(value, str) and not value.strip():
        return t.fail(name, "must not be empty")
    return value


def _text(t: _Table) -> Text:
    text = t.build(Text, sv=t.text("sv"), en=t.text("en"))
    t.done()
    return text


def _profile(
    t: _Table, plan: NumberPlan, targets: list[tuple[str, str]], queues: list[tuple[str, str]]
) -> Profile:
    returns = t.text("return", "none", RETURN_KINDS)
    return_at = None
    if t.has("return_at"):
        if returns is not _BAD and returns not in ("date", "next_workday"):
            return_at = t.fail("return_at", "is only for return = 'date' or 'next_workday'")
        else:
            return_at = t.convert("return_at", t.raw("return_at"), _clock)
    colour = t.text("colour")
    if colour is not _BAD and re.fullmatch(r"#[0-9a-fA-F]{6}", colour) is None:
        colour = t.fail("colour", f"must be #RRGGBB, got {_show(colour)}")
    profile = t.build(
        Profile,
        id=_ident(t, "id"),
        number=t.integer("number", _MISSING, 1, 9),
        name=_text(t.table("name", required=True)),
        status=_text(t.table("status", required=True)),
        colour=colour,
        icon=t.text("icon"),
        priority=t.integer("priority", _MISSING, 0, 1000),
        presence=t.text("presence", _MISSING, PRESENCES),
        returns=returns,
        return_at=return_at,
        reason=t.flag("reason", True),
        plan=_plan(t.table("plan", required=True), plan, targets, queues),
    )
    t.done()
    return profile


def _schedule(t: _Table, index: int, profiles: Mapping[str, Profile]) -> Schedule:
    profile = t.text("profile")
    if profile is not _BAD and profile not in profiles:
        profile = t.fail("profile", f"no profile {profile!r}; one of {', '.join(profiles)}")
    weekly = any(t.has(k) for k in ("days", "start", "end"))
    dated = any(t.has(k) for k in ("from", "to"))
    when: Any
    if weekly == dated:
        when = t.fail("days", "a schedule has either days/start/end or from/to")
        t.ignore("days", "start", "end", "from", "to")
    elif weekly:
        days = t.texts("days", choices=_DAYS)
        days = _BAD if days is _BAD else frozenset(_DAYS.index(d) for d in days)
        start = t.convert("start", t.raw("start"), _clock)
        end = t.convert("end", t.raw("end"), _clock)
        when = t.build(WeeklySlot, days=days, start=start, end=end)
    else:
        first = t.convert("from", t.raw("from"), _day)
        last = t.convert("to", t.raw("to"), _day)
        if _ok(first, last) and last < first:
            when = t.fail("to", f"must not be before from ({first})")
        else:
            when = t.build(DateRange, first=first, last=last)
    schedule = t.build(
        Schedule,
        id=_ident(t, "id", f"s{index + 1}"),
        profile=profile,
        when=when,
        holidays=t.text("holidays", "include", HOLIDAY_RULES),
    )
    t.done()
    return schedule


def _device(t: _Table, user: _UserDraft, plan: NumberPlan) -> Device:
    kind = t.text("kind", _MISSING, DEVICE_KINDS)
    named = f"{user.extension}-{kind}" if _ok(user.extension, kind) else _BAD
    device_id = _ident(t, "id", named)
    if kind is _BAD:  # which keys belong depends on the kind
        t.ignore("username", "password", "number", "auth_algorithms")
        device = _BAD
    elif kind == "mobile":
        for name in ("username", "password"):
            if t.has(name):
                t.fail(name, "a mobile device has no SIP account")
        number = t.text("number", None)
        number = user.mobile if number is None else t.convert("number", number, plan.normalise)
        if number is None:
            number = t.fail("number", "is required (the user has no mobile number)")
        device = t.build(Device, id=device_id, kind=kind, number=number)
    else:
        if t.has("number"):
            t.fail("number", f"a {kind} device has no number")
        username = t.text("username")
        if username is not _BAD and re.fullmatch(r"[A-Za-z0-9._~+-]{1,64}", username) is None:
            username = t.fail("username", "must be 1-64 of A-Z a-z 0-9 . _ ~ + -")
        password = t.text("password")
        if password is not _BAD and len(password) < 8:
            password = t.fail("password", "must be at least 8 characters")
        algorithms = None
        if t.has("auth_algorithms"):
            algorithms = _tuple(t.texts("auth_algorithms", [], AUTH_ALGORITHMS))
            if algorithms is not _BAD and (
                not algorithms or len(set(algorithms)) != len(algorithms)
            ):
                algorithms = t.fail(
                    "auth_algorithms", "must list 'SHA-256' and/or 'MD5', each once"
                )
        device = t.build(
            Device,
            id=device_id,
            kind=kind,
            username=username,
            password=password,
            auth_algorithms=algorithms,
        )
    t.done()
    return device


@dataclass(slots=True)
class _UserDraft:
    extension: str
    mobile: str | None


def _user(t: _Table, company: Company, profiles: Mapping[str, Profile]) -> User:
    plan = company.numbers
    raw_ext = t.raw("extension")
    extension = (
        str(raw_ext) if isinstance(raw_ext, int) and not isinstance(raw_ext, bool) else raw_ext
    )
    if raw_ext is not _BAD and (not isinstance(extension, str) or not plan.is_extension(extension)):
        span = f"{plan.extension_min}-{plan.extension_max}"
        extension = t.fail(
            "extension", f"must be {span} digits not starting with 0, got {_show(raw_ext)}"
        )
    pin = t.raw("pin")
    if pin is not _BAD and (not isinstance(pin, str) or re.fullmatch(r"[0-9]{4,8}", pin) is None):
        pin = t.fail("pin", f"must be a quoted string of 4-8 digits, got {_show(pin)}")
    mobile, did = (t.text(k, None) for k in ("mobile", "did"))
    mobile = None if mobile is None else t.convert("mobile", mobile, plan.normalise)
    did = None if did is None else t.convert("did", did, plan.normalise)
    draft = _UserDraft(extension=extension, mobile=mobile)
    vips = t.texts("vip", [])
    vip = (
        _BAD
        if vips is _BAD
        else [
            t.convert(f"vip[{i}]", v, lambda x: _target(x, plan, False)) for i, v in enumerate(vips)
        ]
    )
    user = t.build(
        User,
        extension=extension,
        name=_nonempty(t, "name"),
        language=t.text("language", company.language, LANGUAGES),
        pin=pin,
        mobile=mobile,
        did=did,
        admin=t.flag("admin"),
        devices=tuple(_device(d, draft, plan) for d in t.tables("devices")),
        queues=_tuple(t.texts("queues", [])),
        vip=_tuple(vip),
        schedules=tuple(_schedule(s, i, profiles) for i, s in enumerate(t.tables("schedules"))),
    )
    t.done()
    return user


def _unique(file: Path, seen: dict[str, str], value: str, key: str, what: str) -> None:
    if value in seen:
        raise ConfigError(file, key, f"{what} {value!r} is already used by {seen[value]}")
    seen[value] = key.rsplit(".", 1)[0]


def _check_users(file: Path, users: list[User], main_number: str) -> None:
    """Extensions, usernames and numbers are unique across the company."""
    exts: dict[str, str] = {}
    names: dict[str, str] = {}
    numbers: dict[str, str] = {main_number: "company.main_number"}
    for i, user in enumerate(users):
        _unique(file, exts, user.extension, f"users[{i}].extension", "extension")
    for i, user in enumerate(users):
        for kind in ("did", "mobile"):
            value = getattr(user, kind)
            if value is not None:
                _unique(file, numbers, value, f"users[{i}].{kind}", "number")
        for j, device in enumerate(user.devices):
            if device.username is None:
                continue
            key = f"users[{i}].devices[{j}].username"
            _unique(file, names, device.username, key, "username")
            owner = exts.get(device.username)
            if owner is not None and device.username != user.extension:
                raise ConfigError(file, key, f"{device.username!r} is the extension of {owner}")


def _check_targets(
    file: Path, refs: list[tuple[str, str]], users: list[User], plan: NumberPlan
) -> None:
    exts = {u.extension for u in users}
    for key, target in refs:
        if plan.is_extension(target) and target not in exts:
            raise ConfigError(file, key, f"no user with extension {target}")


def parse_config(data: Mapping[str, object], path: Path, cwd: Path | None = None) -> Config:
    """Validate already-parsed TOML ``data`` read from ``path``; relative paths
    resolve against ``cwd`` (default: the current working directory).

    Every independent error is reported at once (:class:`ConfigErrors`, section by
    section): each section's first error, and every error of each profile and user; the
    checks across sections (unique numbers, targets that exist) run once those read well."""
    top = _Table(path, "", dict(data))
    base = Path.cwd() if cwd is None else cwd
    errors: list[ConfigError] = []

    def attempt(read: Callable[[], T]) -> T | None:
        try:
            return read()
        except ConfigErrors as exc:
            errors.extend(exc.errors)
        except ConfigError as exc:
            errors.append(exc)
        return None

    company = attempt(lambda: _company(top.table("company", required=True)))
    sections = {
        "sip": attempt(lambda: _sip(top.table("sip"))),
        "http": attempt(lambda: _http(top.table("http"))),
        "rtp": attempt(lambda: _rtp(top.table("rtp"))),
        "store": attempt(lambda: _store(top.table("store"), base)),
        "trunk": attempt(lambda: _trunk(top.table("trunk")) if top.has("trunk") else None),
        "selfservice": attempt(lambda: _selfservice(top.table("selfservice"))),
    }
    dirs = (
        attempt(lambda: _path(top, "prompts_dir", "prompts", base)),
        attempt(lambda: _path(top, "recordings_dir", "recordings", base)),
    )
    if company is None:
        raise _all(errors)  # profiles and users are read against the company's number plan
    targets: list[tuple[str, str]] = []
    queue_refs: list[tuple[str, str]] = []
    profiles: list[Profile] = []
    seen_ids: dict[str, str] = {}
    seen_numbers: dict[str, str] = {}
    for t in attempt(lambda: list(top.tables("profiles", required=True))) or []:
        profile = attempt(
            lambda t=t: _item(t, lambda i: _profile(i, company.numbers, targets, queue_refs))
        )
        if profile is None:
            continue
        attempt(lambda t=t, p=profile: _unique(path, seen_ids, p.id, t.key("id"), "profile id"))
        attempt(
            lambda t=t, p=profile: _unique(
                path, seen_numbers, str(p.number), t.key("number"), "profile number"
            )
        )
        profiles.append(profile)
    if "1" not in seen_numbers and not errors:
        errors.append(
            ConfigError(path, "profiles", "profile number 1 (the standard profile) is required")
        )
    by_id = {p.id: p for p in profiles}
    users: list[User] = []
    for t in attempt(lambda: list(top.tables("users"))) or []:
        user = attempt(lambda t=t: _item(t, lambda i: _user(i, company, by_id)))
        if user is not None:
            users.append(user)
    if errors:  # the checks across users, profiles and queues need all of them read
        top.ignore("feature_codes", "queues")
        attempt(top.done)  # unknown top-level keys
        raise _all(errors)
    _check_users(path, users, company.main_number)
    _check_targets(path, targets, users, company.numbers)
    if company.operator is not None:
        _check_targets(path, [("company.operator", company.operator)], users, company.numbers)
    all_queues = {q for u in users for q in u.queues}
    for key, name in queue_refs:
        if name != "*" and name not in all_queues:
            raise ConfigError(
                path, key, f"no user has queue {name!r} ('*' = all the user's queues)"
            )
    specs = []
    for t in top.tables("feature_codes", required=True):
        action = t.text("action", _MISSING, tuple(ACTIONS))
        code = t.text("code")
        specs.append(t.convert("code", code, lambda c, a=action: FeatureCodeSpec(code=c, action=a)))
        t.done()
    codes = top.convert(
        "feature_codes", tuple(specs), lambda s: FeatureCodes(specs=s, profiles=tuple(profiles))
    )
    config = Config(
        path=path,
        company=company,
        sip=sections["sip"],
        http=sections["http"],
        rtp=sections["rtp"],
        store=sections["store"],
        prompts_dir=dirs[0],
        recordings_dir=dirs[1],
        users=tuple(users),
        profiles=tuple(profiles),
        feature_codes=codes,
        queues=_queues(top, company, users, path),
        trunk=sections["trunk"],
        selfservice=sections["selfservice"],
    )
    top.done()
    return config


def _item(t: _Table, read: Callable[[_Table], T]) -> T:
    """``read`` one array item collecting every error of it (raised together)."""
    errors: list[ConfigError] = []
    found = read(_Table(t.file, t.path, t.data, errors))
    if errors:
        raise ConfigErrors(errors)
    return found


def _all(errors: list[ConfigError]) -> ConfigError:
    """The errors found, as one exception (the error itself when there is one)."""
    return errors[0] if len(errors) == 1 else ConfigErrors(errors)


def _trunk(t: _Table) -> Trunk:
    """``[trunk]``: peer URI, allowed forward prefixes, diversion signalling."""
    host, port, transport = t.convert("peer", t.text("peer"), parse_peer)
    allow = t.texts("allow", [])
    for i, prefix in enumerate(allow):
        if re.fullmatch(r"\+[0-9]{1,15}", prefix) is None:
            raise t.error(f"allow[{i}]", f"must be an E.164 prefix like '+46', got {prefix!r}")
    diversion = t.texts("diversion", ["diversion"], DIVERSION_MODES)
    if not diversion:
        raise t.error("diversion", "must name 'diversion' and/or 'history-info'")
    trunk = t.build(
        Trunk,
        host=host,
        port=port,
        transport=transport,
        allow=tuple(allow),
        diversion=tuple(diversion),
    )
    t.done()
    return trunk


def _selfservice(t: _Table) -> SelfServiceConfig:
    """``[selfservice]``: voicemail PIN, PIN guard and recording limits."""
    shortest = t.number("recording_min_seconds", 0.5, 0.1, 10.0)
    found = SelfServiceConfig(
        own_mailbox_pin=t.flag("own_mailbox_pin", False),
        pin_tries_per_call=t.integer("pin_tries_per_call", 3, 1, 20),
        pin_failures_per_hour=t.integer("pin_failures_per_hour", 10, 1, 1000),
        pin_lockout_seconds=t.number("pin_lockout_seconds", 900.0, 1.0, 86400.0 * 7),
        recording_min_seconds=shortest,
        recording_max_seconds=t.number("recording_max_seconds", 120.0, shortest, 3600.0),
        recording_silence_seconds=t.number("recording_silence_seconds", 3.0, 0.5, 60.0),
        system_prompts=tuple(t.texts("system_prompts", list(SYSTEM_PROMPTS))),
    )
    for i, name in enumerate(found.system_prompts):
        if re.fullmatch(r"[a-z0-9_]{1,64}", name) is None:
            raise t.error(f"system_prompts[{i}]", f"must be a prompt name, got {name!r}")
    t.done()
    return found


def _queue(t: _Table, plan: NumberPlan) -> Queue:
    number = t.raw("number")
    if isinstance(number, int) and not isinstance(number, bool):
        number = str(number)
    if not isinstance(number, str) or not plan.is_extension(number):
        span = f"{plan.extension_min}-{plan.extension_max}"
        raise t.error("number", f"must be {span} digits not starting with 0, got {_show(number)}")
    action, _, target = t.text("fallback", "busy").partition(":")
    if action not in FALLBACK_ACTIONS or (action == "busy") != (not target):
        raise t.error(
            "fallback", "must be 'busy', 'voicemail:<extension>' or 'forward:<number or extension>'"
        )
    if action == "forward":
        target = t.convert("fallback", target, lambda x: _target(x, plan, mobile=False))
    elif action == "voicemail" and not plan.is_extension(target):
        raise t.error("fallback", f"voicemail needs a mailbox extension, got {target!r}")
    queue = t.build(
        Queue,
        id=_ident(t, "id"),
        number=number,
        name=t.text("name"),
        ring_seconds=t.integer("ring_seconds", 20, 1, 600),
        fallback=t.build(Fallback, action=action, target=target or None),
    )
    t.done()
    return queue


def _queues(top: _Table, company: Company, users: list[User], path: Path) -> tuple[Queue, ...]:
    """``[[queues]]``: ids and numbers unique (numbers also against extensions), fallback
    targets existing users, and every queue a user lists defined."""
    queues: list[Queue] = []
    ids: dict[str, str] = {}
    numbers: dict[str, str] = {u.extension: f"user {u.extension}" for u in users}
    exts = {u.extension for u in users}
    for t in top.tables("queues"):
        queue = _queue(t, company.numbers)
        _unique(path, ids, queue.id, t.key("id"), "queue id")
        _unique(path, numbers, queue.number, t.key("number"), "number")
        target = queue.fallback.target
        if target is not None and company.numbers.is_extension(target) and target not in exts:
            raise t.error("fallback", f"no user with extension {target}")
        queues.append(queue)
    if queues:
        for i, user in enumerate(users):
            for j, name in enumerate(user.queues):
                if name not in ids:
                    known = ", ".join(sorted(ids))
                    raise ConfigError(
                        path, f"users[{i}].queues[{j}]", f"no queue {name!r}; one of {known}"
                    )
    return tuple(queues)


def _store(t: _Table, cwd: Path) -> StoreConfig:
    store = StoreConfig(path=_path(t, "path", "var/ivr.sqlite3", cwd))
    t.done()
    return store


# --- one directory object at a time (the HTTP API's bodies) ---------------------------------


def parse_user(data: object, company: Company, profiles: Iterable[Profile], file: str) -> User:
    """A user (with devices and schedules) from the same shape as a ``[[users]]`` table.
    Every invalid key is named at once: :class:`ConfigErrors` naming ``file`` (e.g. the
    API path) and each key. Cross-object checks (unique numbers, ...) are the caller's."""
    by_id = {p.id: p for p in profiles}
    return _collecting(file, data, lambda t: _user(t, company, by_id))


def parse_device(data: object, user: User, company: Company, file: str) -> Device:
    """One device of ``user`` from the shape of a ``[[users.devices]]`` table."""
    draft = _UserDraft(extension=user.extension, mobile=user.mobile)
    return _collecting(file, data, lambda t: _device(t, draft, company.numbers))


def parse_profile(data: object, company: Company, file: str) -> Profile:
    """A profile from the shape of a ``[[profiles]]`` table (targets not cross-checked)."""
    return _collecting(file, data, lambda t: _profile(t, company.numbers, [], []))


def parse_schedule(
    data: object, profiles: Iterable[Profile], file: str, index: int = 0
) -> Schedule:
    """A schedule from the shape of a ``[[users.schedules]]`` table."""
    by_id = {p.id: p for p in profiles}
    return _collecting(file, data, lambda t: _schedule(t, index, by_id))
