"""Spoken sentences as sequences of prompt names, in Swedish and English.

Pure: stdlib only; ``now`` comes in as an argument. The names refer to files in
the prompt library (``prompts/<lang>/<name>.wav``); ``prompts/prompts.toml`` lists
the text of each. Examples::

    activated(2, datetime(.., 13, 30), now, "sv")
        -> ["profile_2", "activated", "pause", "back", "at", "num_13", "and", "num_30"]
           "Lunch aktiverad. Åter klockan tretton och trettio."
    activated(2, datetime(.., 13, 30), now, "en")
        -> [..., "back", "at", "num_1", "num_30", "pm"]  "... back at one thirty p.m."

Swedish reads the 24-hour clock by default ("klockan tretton och fem"); with
``clock="12h"`` it speaks colloquially ("halv två", "kvart i tre"). English uses
12-hour by default ("one thirty p.m."); ``clock="24h"`` gives "thirteen thirty".
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Final, Literal, cast

__all__ = [
    "LANGS",
    "PAUSE",
    "activated",
    "current_profile",
    "date_words",
    "deactivated",
    "digits",
    "invalid_code",
    "number",
    "redirect",
    "time_words",
    "when_words",
]

Clock = Literal["12h", "24h"]
LANGS: Final[tuple[str, ...]] = ("sv", "en")
PAUSE: Final = "pause"
"""A short silence prompt, used between sentences."""
_DEFAULT_CLOCK: Final[dict[str, Clock]] = {"sv": "24h", "en": "12h"}
_DIGIT_CHARS: Final = frozenset("0123456789")


def _check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise ValueError(f"unsupported language {lang!r} (expected one of {LANGS})")
    return lang


def _clock(lang: str, clock: str | None) -> Clock:
    if clock is None:
        return _DEFAULT_CLOCK[lang]
    if clock not in ("12h", "24h"):
        raise ValueError(f"clock must be '12h' or '24h', got {clock!r}")
    return cast(Clock, clock)


def _check_profile(profile_no: int) -> int:
    if isinstance(profile_no, bool) or not isinstance(profile_no, int) or profile_no < 1:
        raise ValueError(f"profile number must be a positive integer, got {profile_no!r}")
    return profile_no


def number(n: int) -> list[str]:
    """A cardinal 0-59 (the range the library holds)."""
    if not 0 <= n <= 59:
        raise ValueError(f"no prompt for the number {n} (0-59)")
    return [f"num_{n}"]


def digits(text: str) -> list[str]:
    """Read a digit string one digit at a time ("1001" -> one, zero, zero, one)."""
    if not text or not set(text) <= _DIGIT_CHARS:
        raise ValueError(f"expected digits, got {text!r}")
    return [f"num_{c}" for c in text]


def _sv_colloquial(h: int, m: int) -> list[str]:
    """'kvart över ett', 'fem i halv två', 'åtta minuter i halv två', 'tio i två'."""
    hour = [f"num_{h % 12 or 12}"]
    next_hour = [f"num_{(h + 1) % 12 or 12}"]

    def count(n: int) -> list[str]:
        if n == 15:
            return ["quarter"]
        if n % 5 == 0:
            return [f"num_{n}"]
        return ["minute"] if n == 1 else [f"num_{n}", "minutes"]

    if m == 0:
        return hour
    if m == 30:
        return ["half", *next_hour]
    if m <= 20:
        return [*count(m), "past", *hour]
    if m < 30:
        return [*count(30 - m), "to", "half", *next_hour]
    if m < 40:
        return [*count(m - 30), "past", "half", *next_hour]
    return [*count(60 - m), "to", *next_hour]


def time_words(t: time, lang: str, clock: str | None = None) -> list[str]:
    """A time of day, without the leading 'klockan'/'at'."""
    lang = _check_lang(lang)
    mode = _clock(lang, clock)
    h, m = t.hour, t.minute
    if lang == "sv":
        if mode == "12h":
            return _sv_colloquial(h, m)
        return [f"num_{h}"] if m == 0 else [f"num_{h}", "and", f"num_{m}"]
    minutes = [] if m == 0 else ["oh", f"num_{m}"] if m < 10 else [f"num_{m}"]
    if mode == "24h":
        hour = ["num_0", "num_0"] if h == 0 else ["oh", f"num_{h}"] if h < 10 else [f"num_{h}"]
        return [*hour, *(minutes or ["hundred"])]
    if m == 0 and h in (0, 12):
        return ["num_12", "midnight" if h == 0 else "noon"]
    return [f"num_{h % 12 or 12}", *minutes, "am" if h < 12 else "pm"]


def date_words(d: date, lang: str) -> list[str]:
    """'måndag den fjärde januari' / 'Monday the fourth of January'."""
    lang = _check_lang(lang)
    weekday, ordinal, month = f"weekday_{d.weekday()}", f"ordinal_{d.day}", f"month_{d.month}"
    if lang == "sv":
        return [weekday, "the", ordinal, month]
    return [weekday, "the", ordinal, "of", month]


def _local(moment: datetime, now: datetime) -> datetime:
    if (moment.tzinfo is None) != (now.tzinfo is None):
        raise ValueError("the time and now must both be timezone-aware or both naive")
    return moment.astimezone(now.tzinfo) if moment.tzinfo is not None else moment


def when_words(
    moment: datetime | date,
    now: datetime,
    lang: str,
    clock: str | None = None,
    *,
    lead: Literal["back", "until"] = "back",
) -> list[str]:
    """When something ends, as said after 'åter'/'back' or 'till'/'until'.

    Today: 'klockan 13' / 'at one p.m.' ('until one p.m.'); tomorrow: 'i morgon
    klockan 8'; within a week: 'fredag klockan 8' / 'on Friday at eight a.m.';
    later: the full date. A bare date reads 'idag', 'i morgon' or the full date.
    """
    lang = _check_lang(lang)
    if lead not in ("back", "until"):
        raise ValueError(f"lead must be 'back' or 'until', got {lead!r}")
    on = ["on"] if lang == "en" and lead == "back" else []
    if isinstance(moment, datetime):
        local = _local(moment, now)
        days = (local.date() - now.date()).days
        clock_words = time_words(local.time(), lang, clock)
        if days == 0:
            at = [] if lang == "en" and lead == "until" else ["at"]
            return [*at, *clock_words]
        if days == 1:
            day = ["tomorrow"]
        elif 2 <= days <= 6:
            day = [*on, f"weekday_{local.weekday()}"]
        else:
            day = [*on, *date_words(local.date(), lang)]
        return [*day, "at", *clock_words]
    days = (moment - now.date()).days
    if days == 0:
        return ["today"]
    if days == 1:
        return ["tomorrow"]
    return [*on, *date_words(moment, lang)]


def activated(
    profile_no: int,
    until: datetime | date | None,
    now: datetime,
    lang: str,
    clock: str | None = None,
) -> list[str]:
    """'Lunch aktiverad. Åter klockan tretton och trettio.'"""
    _check_lang(lang)
    words = [f"profile_{_check_profile(profile_no)}", "activated"]
    if until is not None:
        words += [PAUSE, "back", *when_words(until, now, lang, clock, lead="back")]
    return words


def deactivated(profile_no: int, lang: str) -> list[str]:
    """'Stör ej avaktiverad.'"""
    _check_lang(lang)
    return [f"profile_{_check_profile(profile_no)}", "deactivated"]


def current_profile(
    profile_no: int,
    until: datetime | date | None,
    now: datetime,
    lang: str,
    clock: str | None = None,
    *,
    say_no_end: bool = True,
) -> list[str]:
    """'Din profil är Möte till fredag den fjärde december.'

    Without ``until`` it adds 'ingen sluttid' unless ``say_no_end`` is False (for
    the standard profile, which has no end by nature).
    """
    _check_lang(lang)
    words = ["your_profile_is", f"profile_{_check_profile(profile_no)}"]
    if until is not None:
        words += ["until", *when_words(until, now, lang, clock, lead="until")]
    elif say_no_end:
        words += [PAUSE, "no_end_time"]
    return words


def invalid_code(lang: str) -> list[str]:
    """'Ogiltig kod.'"""
    _check_lang(lang)
    return ["invalid_code"]


def redirect(
    who: str,
    profile_no: int,
    back: datetime | date | None,
    now: datetime,
    lang: str,
    clock: str | None = None,
) -> list[str]:
    """'‹namn› är på lunch, åter klockan tretton och trettio.'

    ``who`` is either an extension (all digits, read one by one) or the name of
    a prompt holding the user's recorded name, passed through unchanged.
    """
    _check_lang(lang)
    if not who:
        raise ValueError("who must name a prompt or be an extension")
    subject = digits(who) if set(who) <= _DIGIT_CHARS else [who]
    words = [*subject, f"redirect_{_check_profile(profile_no)}"]
    if back is not None:
        words += ["back", *when_words(back, now, lang, clock, lead="back")]
    return words
