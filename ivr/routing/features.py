"""Feature codes as data: a table of patterns, compiled once, matched longest first.

A pattern is literal ``0-9 * #`` plus placeholders: ``{p}`` (profile digit),
``{hhmm}`` (back at), ``{mmdd}`` (back on, for date-return profiles), ``{ext}``,
``{pin}``, ``{code}`` (the rest: an inner code, for ``*33*{ext}*{pin}#{code}``) and
``{id}`` (a system prompt's number, for ``*77{id}`` / ``*99{id}``).
Parsing gives a command dataclass for the call controller, or :class:`InvalidCode`.
The dialled string is the Request-URI user part, already percent-decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ivr.routing.model import Profile
from ivr.routing.profiles import AtTime, DefaultReturn, OnDate, UntilSpec

_PLACEHOLDERS: dict[str, str] = {
    "p": "[0-9]",
    "hhmm": "[0-9]{4}",
    "mmdd": "[0-9]{4}",
    "ext": "[0-9]{1,15}",
    "pin": "[0-9]{1,15}",
    "code": ".*",
    "id": "[0-9]{1,4}",
}
_TOKEN = re.compile(r"\{([a-z]+)\}|([0-9*#]+)")
_PIN = re.compile(r"[0-9]{4,8}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivateProfile:
    """Activate profile ``profile`` (id; ``number`` is its p) until ``until``."""

    profile: str
    number: int
    until: UntilSpec = field(default_factory=DefaultReturn)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackToStandard:
    """``#23#``: back to the standard profile (clears manual and forced)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryProfile:
    """``*#23#``: say the current profile and its end."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DndOn:
    """``*78``: Stör ej on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DndOff:
    """``*79``: Stör ej off."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DndToggle:
    """``*76``: Stör ej toggled."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordGreeting:
    """``*24*p#``: record my redirect greeting for a profile."""

    profile: str
    number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VoicemailAccess:
    """``*97`` (own mailbox) / ``*98`` (any mailbox: asks for mailbox and PIN)."""

    mailbox: Literal["own", "any"]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueToggle:
    """``*45``: queue login/logout toggle."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuePause:
    """``*46``: queue pause toggle."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Interactive:
    """``*23``: the keypad menu (profile digit, then return time)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemPromptCode:
    """``*77<id>`` (record) / ``*99<id>`` (play) system prompt number ``prompt_id``
    (admins, with their PIN)."""

    mode: Literal["record", "play"]
    prompt_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OnBehalf:
    """``*33*ext*PIN#<code>``: run ``command`` as ``extension`` once the PIN checks out."""

    extension: str
    pin: str = field(repr=False)
    command: FeatureCommand


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidCode:
    """An unknown or malformed code ("Ogiltig kod"). ``dialled`` may hold a PIN: not in repr."""

    dialled: str = field(repr=False)
    reason: str


FeatureCommand = (
    ActivateProfile
    | BackToStandard
    | QueryProfile
    | DndOn
    | DndOff
    | DndToggle
    | RecordGreeting
    | VoicemailAccess
    | QueueToggle
    | QueuePause
    | Interactive
    | OnBehalf
    | SystemPromptCode
)

_SIMPLE: dict[str, FeatureCommand] = {
    "standard": BackToStandard(),
    "query": QueryProfile(),
    "dnd_on": DndOn(),
    "dnd_off": DndOff(),
    "dnd_toggle": DndToggle(),
    "voicemail_own": VoicemailAccess(mailbox="own"),
    "voicemail_any": VoicemailAccess(mailbox="any"),
    "queue_toggle": QueueToggle(),
    "queue_pause": QueuePause(),
    "interactive": Interactive(),
}
# action -> (required placeholders, allowed placeholders)
ACTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    **{name: (frozenset(), frozenset()) for name in _SIMPLE},
    "activate": (frozenset({"p"}), frozenset({"p", "hhmm", "mmdd"})),
    "record_greeting": (frozenset({"p"}), frozenset({"p"})),
    "on_behalf": (frozenset({"ext", "pin", "code"}), frozenset({"ext", "pin", "code"})),
    "record_prompt": (frozenset({"id"}), frozenset({"id"})),
    "play_prompt": (frozenset({"id"}), frozenset({"id"})),
}


def _tokens(code: str) -> list[tuple[str, str]]:
    """Split a pattern into ("name", placeholder) / ("lit", text) tokens."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(code):
        m = _TOKEN.match(code, pos)
        if m is None:
            raise ValueError(f"unexpected {code[pos]!r} at {pos} (literals are 0-9 * #)")
        name, literal = m.groups()
        if name is not None and name not in _PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}}")
        tokens.append(("name", name) if name is not None else ("lit", literal))
        pos = m.end()
    return tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureCodeSpec:
    """One row of the feature-code table: a pattern and the action it triggers."""

    code: str
    action: str

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; one of {', '.join(sorted(ACTIONS))}")
        if not self.code.startswith(("*", "#")):
            raise ValueError("a feature code starts with * or #")
        names = [value for kind, value in _tokens(self.code) if kind == "name"]
        required, allowed = ACTIONS[self.action]
        if len(set(names)) != len(names):
            raise ValueError("a placeholder repeats")
        if not required <= set(names) <= allowed:
            need = ", ".join(f"{{{n}}}" for n in sorted(required)) or "no placeholders"
            raise ValueError(f"{self.action} takes {need} (allowed: {sorted(allowed)})")
        if {"hhmm", "mmdd"} <= set(names):
            raise ValueError("use {hhmm} or {mmdd}, not both")
        if "code" in names and not self.code.endswith("{code}"):
            raise ValueError("{code} must come last")


@dataclass(frozen=True, slots=True)
class _Compiled:
    spec: FeatureCodeSpec
    regex: re.Pattern[str]
    literal: int


def _compile(spec: FeatureCodeSpec) -> _Compiled:
    parts, literal = [], 0
    for kind, value in _tokens(spec.code):
        if kind == "lit":
            parts.append(re.escape(value))
            literal += len(value)
        else:
            parts.append(f"(?P<{value}>{_PLACEHOLDERS[value]})")
    return _Compiled(spec=spec, regex=re.compile("".join(parts)), literal=literal)


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureCodes:
    """The compiled table. ``profiles`` tells which profile digits exist and whether a
    four-digit argument is a time (HHMM) or a date (MMDD, date-return profiles)."""

    specs: tuple[FeatureCodeSpec, ...]
    profiles: tuple[Profile, ...]
    _compiled: tuple[_Compiled, ...] = field(init=False, repr=False, compare=False)
    _leaders: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codes = [s.code for s in self.specs]
        if len(set(codes)) != len(codes):
            raise ValueError("feature codes repeat")
        object.__setattr__(self, "_compiled", tuple(_compile(s) for s in self.specs))
        object.__setattr__(self, "_leaders", frozenset(c[0] for c in codes))

    def is_feature_code(self, user_part: str) -> bool:
        """True when the user part is in the feature-code namespace (starts like a code),
        so it goes to :meth:`parse` (and maybe "Ogiltig kod"), not to an extension."""
        return bool(user_part) and user_part[0] in self._leaders

    def parse(self, dialled: str) -> FeatureCommand | InvalidCode:
        """The command for ``dialled``: the longest matching pattern wins; it must use
        up the whole string and its arguments must be valid."""
        found = [
            (m.end(), c.literal, -i, c, m)
            for i, c in enumerate(self._compiled)
            if (m := c.regex.match(dialled))
        ]
        if not found:
            return InvalidCode(dialled=dialled, reason="unknown code")
        longest = max(f[0] for f in found)
        if longest < len(dialled):
            best = max(found, key=lambda f: f[:3])
            return InvalidCode(
                dialled=dialled, reason=f"unexpected characters after {best[3].spec.code}"
            )
        reasons: list[str] = []
        for _, _, _, compiled, m in sorted(
            (f for f in found if f[0] == longest), key=lambda f: f[:3], reverse=True
        ):
            result = self._build(compiled.spec, m.groupdict())
            if not isinstance(result, str):
                return result
            reasons.append(result)
        # A pattern for the other kind of argument (HHMM vs MMDD) explains least.
        fitting = [r for r in reasons if not isinstance(r, _OtherKind)]
        return InvalidCode(dialled=dialled, reason=str((fitting or reasons)[0]))

    def _profile(self, digit: str) -> Profile | None:
        return next((p for p in self.profiles if p.number == int(digit)), None)

    def _build(self, spec: FeatureCodeSpec, args: dict[str, str]) -> FeatureCommand | str:
        """The command, or the reason the arguments are invalid."""
        if spec.action in _SIMPLE:
            return _SIMPLE[spec.action]
        if spec.action == "on_behalf":
            return self._on_behalf(args)
        if spec.action in ("record_prompt", "play_prompt"):
            mode = "record" if spec.action == "record_prompt" else "play"
            return SystemPromptCode(mode=mode, prompt_id=int(args["id"]))
        profile = self._profile(args["p"])
        if profile is None:
            return f"no profile {args['p']}"
        if spec.action == "record_greeting":
            return RecordGreeting(profile=profile.id, number=profile.number)
        until = _until(profile, args)
        if isinstance(until, str):
            return until
        return ActivateProfile(profile=profile.id, number=profile.number, until=until)

    def _on_behalf(self, args: dict[str, str]) -> FeatureCommand | str:
        if _PIN.fullmatch(args["pin"]) is None:
            return "PIN must be 4-8 digits"
        inner = self.parse(args["code"])
        if isinstance(inner, InvalidCode):
            return f"code after PIN: {inner.reason}"
        if isinstance(inner, OnBehalf):
            return "on-behalf codes do not nest"
        return OnBehalf(extension=args["ext"], pin=args["pin"], command=inner)


class _OtherKind(str):
    """A reason saying the profile takes the other kind of argument (time vs date)."""

    __slots__ = ()


def _until(profile: Profile, args: dict[str, str]) -> UntilSpec | str:
    """The return spec from ``{hhmm}``/``{mmdd}``, or why it is invalid for ``profile``."""
    wants_date = profile.returns == "date"
    if "hhmm" in args:
        if wants_date:
            return _OtherKind(f"profile {profile.number} takes a date (MMDD)")
        hour, minute = int(args["hhmm"][:2]), int(args["hhmm"][2:])
        if hour > 23 or minute > 59:
            return f"no such time {args['hhmm']} (HHMM, 0000-2359)"
        return AtTime(hour=hour, minute=minute)
    if "mmdd" in args:
        if not wants_date:
            return _OtherKind(f"profile {profile.number} takes a time (HHMM)")
        try:
            return OnDate(month=int(args["mmdd"][:2]), day=int(args["mmdd"][2:]))
        except ValueError:
            return f"no such date {args['mmdd']} (MMDD)"
    return DefaultReturn()


def parse_feature_code(dialled: str, codes: FeatureCodes) -> FeatureCommand | InvalidCode:
    """Module-level spelling of :meth:`FeatureCodes.parse`."""
    return codes.parse(dialled)


def is_feature_code(user_part: str, codes: FeatureCodes) -> bool:
    """Module-level spelling of :meth:`FeatureCodes.is_feature_code`."""
    return codes.is_feature_code(user_part)
