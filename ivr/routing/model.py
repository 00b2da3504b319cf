"""The routing domain's data: users, devices, profiles and their plans, schedules.

One definition of each: ``ivr.config`` builds these from TOML and everything else
imports them from here. Every class validates itself, so an invalid one cannot exist.
Numbers held here are already normalised (E.164) or extensions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, time
from typing import Literal

from ivr.routing.numbers import is_e164

DeviceKind = Literal["desk", "softphone", "mobile"]
Language = Literal["sv", "en"]
Presence = Literal["available", "away", "busy", "dnd", "offline"]
ReturnKind = Literal["none", "time", "date", "next_workday"]
Terminal = Literal["voicemail", "forward", "busy", "hangup"]
CallerIdSource = Literal["did", "main", "mobile", "hidden"]
DialledKind = Literal["mobile", "did", "ext"]
HolidayRule = Literal["include", "skip", "only"]

DEVICE_KINDS: tuple[str, ...] = ("desk", "softphone", "mobile")
LANGUAGES: tuple[str, ...] = ("sv", "en")
PRESENCES: tuple[str, ...] = ("available", "away", "busy", "dnd", "offline")
RETURN_KINDS: tuple[str, ...] = ("none", "time", "date", "next_workday")
TERMINALS: tuple[str, ...] = ("voicemail", "forward", "busy", "hangup")
CALLER_ID_SOURCES: tuple[str, ...] = ("did", "main", "mobile", "hidden")
DIALLED_KINDS: tuple[str, ...] = ("mobile", "did", "ext")
HOLIDAY_RULES: tuple[str, ...] = ("include", "skip", "only")
MIN_PASSWORD = 8

_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_EXTENSION = re.compile(r"[1-9][0-9]{0,14}")
_PIN = re.compile(r"[0-9]{4,8}")
_USERNAME = re.compile(r"[A-Za-z0-9._~+-]{1,64}")
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _kinds(kinds: tuple[str, ...], what: str) -> None:
    for kind in kinds:
        _need(kind in DEVICE_KINDS, f"{what}: unknown device kind {kind!r}")
    _need(len(set(kinds)) == len(kinds), f"{what}: device kinds repeat")


def is_target(text: str) -> bool:
    """A forward target: an extension, an E.164 number, or ``mobile`` (the user's own)."""
    return text == "mobile" or is_e164(text) or _EXTENSION.fullmatch(text) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Text:
    """A short text in each supported language."""

    sv: str
    en: str

    def __post_init__(self) -> None:
        _need(bool(self.sv.strip()) and bool(self.en.strip()), "texts must not be empty")

    def get(self, language: str) -> str:
        """The text in ``language`` (English when the language is unknown)."""
        return self.sv if language == "sv" else self.en


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One of a user's phones. ``desk``/``softphone`` are SIP accounts (``username`` is the
    digest user and AOR user part); a ``mobile`` (MEX) is reached at ``number`` by trunk."""

    id: str
    kind: DeviceKind
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    number: str | None = None
    auth_algorithms: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _need(_ID.fullmatch(self.id) is not None, f"bad device id {self.id!r}")
        _need(
            self.auth_algorithms is None
            or (
                bool(self.auth_algorithms)
                and len(set(self.auth_algorithms)) == len(self.auth_algorithms)
                and set(self.auth_algorithms) <= {"SHA-256", "MD5"}
            ),
            "auth_algorithms must list SHA-256 and/or MD5, each once",
        )
        _need(self.kind in DEVICE_KINDS, f"unknown device kind {self.kind!r}")
        if self.kind == "mobile":
            _need(self.number is not None and is_e164(self.number), "mobile needs an E.164 number")
            _need(self.username is None and self.password is None, "mobile has no SIP account")
        else:
            _need(self.number is None, f"{self.kind} has no number")
            _need(
                self.username is not None and _USERNAME.fullmatch(self.username) is not None,
                "username must be 1-64 of A-Z a-z 0-9 . _ ~ + -",
            )
            _need(
                self.password is not None and len(self.password) >= MIN_PASSWORD,
                f"password must be at least {MIN_PASSWORD} characters",
            )

    @property
    def is_sip(self) -> bool:
        """True for devices that register over SIP."""
        return self.kind != "mobile"


@dataclass(frozen=True, slots=True, kw_only=True)
class WeeklySlot:
    """Every week on ``days`` (0 = Monday) from ``start`` to ``end`` local time.
    ``end <= start`` runs past midnight into the next day (``17:00-08:00``)."""

    days: frozenset[int]
    start: time
    end: time

    def __post_init__(self) -> None:
        _need(bool(self.days) and self.days <= frozenset(range(7)), "days must be 0-6")


@dataclass(frozen=True, slots=True, kw_only=True)
class DateRange:
    """Whole local days from ``first`` to ``last`` inclusive."""

    first: date
    last: date

    def __post_init__(self) -> None:
        _need(self.first <= self.last, "first must not be after last")


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A profile that comes on by itself. ``holidays``: ``include`` (runs regardless),
    ``skip`` (not on public holidays), ``only`` (only on public holidays)."""

    id: str
    profile: str
    when: WeeklySlot | DateRange
    holidays: HolidayRule = "include"

    def __post_init__(self) -> None:
        _need(_ID.fullmatch(self.id) is not None, f"bad schedule id {self.id!r}")
        _need(self.holidays in HOLIDAY_RULES, f"unknown holiday rule {self.holidays!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """A person with an extension, numbers, devices, queues, VIPs and schedules."""

    extension: str
    name: str
    language: Language
    pin: str = field(repr=False)
    mobile: str | None = None
    did: str | None = None
    admin: bool = False
    devices: tuple[Device, ...] = ()
    queues: tuple[str, ...] = ()
    vip: tuple[str, ...] = ()
    schedules: tuple[Schedule, ...] = ()

    def __post_init__(self) -> None:
        _need(_EXTENSION.fullmatch(self.extension) is not None, "extension must be digits")
        _need(bool(self.name.strip()), "name must not be empty")
        _need(self.language in LANGUAGES, f"unknown language {self.language!r}")
        _need(_PIN.fullmatch(self.pin) is not None, "pin must be 4-8 digits")
        for number in (self.mobile, self.did):
            _need(number is None or is_e164(number), f"{number!r} is not E.164")
        ids = [d.id for d in self.devices]
        _need(len(set(ids)) == len(ids), "device ids repeat")
        _need(len(set(self.queues)) == len(self.queues), "queues repeat")
        _need(all(q and q != "*" for q in self.queues), "bad queue name")
        _need(all(is_e164(v) or _EXTENSION.fullmatch(v) for v in self.vip), "bad VIP number")
        sched = [s.id for s in self.schedules]
        _need(len(set(sched)) == len(sched), "schedule ids repeat")

    def device(self, device_id: str) -> Device | None:
        """The device with this id, if the user has it."""
        return next((d for d in self.devices if d.id == device_id), None)

    def devices_of(self, kinds: Iterable[str]) -> tuple[Device, ...]:
        """The user's devices of these kinds, in the user's order."""
        wanted = set(kinds)
        return tuple(d for d in self.devices if d.kind in wanted)


@dataclass(frozen=True, slots=True, kw_only=True)
class Then:
    """What happens when nobody answers (or nobody is rung): an optional spoken
    redirect, then one terminal action. ``target`` is for ``forward`` only."""

    redirect: bool = False
    action: Terminal = "voicemail"
    target: str | None = None

    def __post_init__(self) -> None:
        _need(self.action in TERMINALS, f"unknown action {self.action!r}")
        if self.action == "forward":
            _need(self.target is not None and is_target(self.target), "bad forward target")
        else:
            _need(self.target is None, f"{self.action} takes no target")

    def __str__(self) -> str:
        last = f"forward:{self.target}" if self.action == "forward" else self.action
        return f"redirect → {last}" if self.redirect else last


@dataclass(frozen=True, slots=True, kw_only=True)
class ExceptionRule:
    """``when`` a call was dialled to my mobile/DID/extension, or ``callers`` (numbers,
    extensions, or ``vip`` = the user's VIP list) calls: ring these kinds or forward."""

    dialled: DialledKind | None = None
    callers: tuple[str, ...] = ()
    ring: tuple[DeviceKind, ...] = ()
    forward: str | None = None

    def __post_init__(self) -> None:
        _need((self.dialled is None) != (not self.callers), "needs exactly one of dialled/caller")
        _need(self.dialled is None or self.dialled in DIALLED_KINDS, "dialled: mobile|did|ext")
        for caller in self.callers:
            _need(caller == "vip" or (is_target(caller) and caller != "mobile"), "bad caller")
        _need(bool(self.ring) != (self.forward is not None), "needs exactly one of ring/forward")
        _kinds(self.ring, "ring")
        _need(self.forward is None or is_target(self.forward), "bad forward target")

    def __str__(self) -> str:
        when = f"dialled my {self.dialled}" if self.dialled else "caller " + ",".join(self.callers)
        does = f"forward {self.forward}" if self.forward else "ring " + "+".join(self.ring)
        return f"{when} → {does}"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLogin:
    """Be logged into ``queue`` (``*`` = all the user's queues), ringing these kinds."""

    queue: str
    ring: tuple[DeviceKind, ...]

    def __post_init__(self) -> None:
        _need(bool(self.queue), "queue must not be empty")
        _need(bool(self.ring), "ring must name at least one device kind")
        _kinds(self.ring, "ring")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerIds:
    """The number shown on outgoing calls from each kind of device."""

    desk: CallerIdSource = "did"
    softphone: CallerIdSource = "did"
    mobile: CallerIdSource = "mobile"

    def __post_init__(self) -> None:
        for source in (self.desk, self.softphone, self.mobile):
            _need(source in CALLER_ID_SOURCES, f"unknown caller id source {source!r}")

    def for_kind(self, kind: str) -> CallerIdSource:
        """The caller-id source for a device kind."""
        return {"desk": self.desk, "softphone": self.softphone}.get(kind, self.mobile)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """How calls to a user are handled while a profile is active (see DOMAIN.md)."""

    ring: tuple[DeviceKind, ...] = ()
    ring_seconds: int = 25
    then: Then = field(default_factory=Then)
    direct: bool = False
    exceptions: tuple[ExceptionRule, ...] = ()
    mex_off: bool = False
    soft: bool = False
    offer_mobile: bool = False
    queues: tuple[QueueLogin, ...] = ()
    caller_id: CallerIds = field(default_factory=CallerIds)

    def __post_init__(self) -> None:
        _kinds(self.ring, "ring")
        _need(1 <= self.ring_seconds <= 600, "ring_seconds must be 1-600")
        names = [q.queue for q in self.queues]
        _need(len(set(names)) == len(names), "queues repeat")


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """A presence profile: number ``p``, texts, look, priority and routing plan.

    ``returns`` says what the redirect tells about coming back; ``return_at`` is the
    time of day used for ``date`` and ``next_workday`` returns. ``reason`` False
    leaves the reason out of the spoken redirect (Sjuk)."""

    id: str
    number: int
    name: Text
    status: Text
    colour: str
    icon: str
    priority: int
    presence: Presence
    returns: ReturnKind = "none"
    return_at: time | None = None
    reason: bool = True
    plan: Plan = field(default_factory=Plan)

    def __post_init__(self) -> None:
        _need(_ID.fullmatch(self.id) is not None, f"bad profile id {self.id!r}")
        _need(1 <= self.number <= 9, "number must be 1-9")
        _need(_COLOUR.fullmatch(self.colour) is not None, "colour must be #RRGGBB")
        _need(bool(self.icon.strip()), "icon must not be empty")
        _need(0 <= self.priority <= 1000, "priority must be 0-1000")
        _need(self.presence in PRESENCES, f"unknown presence {self.presence!r}")
        _need(self.returns in RETURN_KINDS, f"unknown return {self.returns!r}")
        _need(
            self.return_at is None or self.returns in ("date", "next_workday"),
            "return_at is for date and next_workday returns",
        )

    @property
    def back_at(self) -> time:
        """Time of day a ``date``/``next_workday`` return comes back (08:00 / 00:00)."""
        if self.return_at is not None:
            return self.return_at
        return time(8, 0) if self.returns == "next_workday" else time(0, 0)

    def label(self, language: str = "en") -> str:
        """The profile's name in ``language``."""
        return self.name.get(language)
