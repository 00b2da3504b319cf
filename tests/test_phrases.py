"""Sentences → prompt names, both languages, table-driven."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest

from ivr.media import phrases
from ivr.media.phrases import (
    activated,
    current_profile,
    deactivated,
    digits,
    invalid_code,
    number,
    redirect,
    time_words,
)

NOW = datetime(2026, 1, 1, 9, 0)  # a Thursday
SV = "sv"
EN = "en"


def at(day: int, hour: int, minute: int = 0, month: int = 1, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute)


# "Lunch aktiverad. Åter klockan tretton och trettio." and friends
ACTIVATED = [
    (SV, 2, at(1, 13, 30), None, "back at num_13 and num_30"),
    (SV, 2, at(1, 13, 5), None, "back at num_13 and num_5"),
    (SV, 2, at(1, 13), None, "back at num_13"),
    (SV, 5, at(2, 8), None, "back tomorrow at num_8"),
    (SV, 3, at(5, 8), None, "back weekday_0 at num_8"),  # Monday, 4 days ahead
    (SV, 6, at(20, 13, 30), None, "back weekday_1 the ordinal_20 month_1 at num_13 and num_30"),
    (SV, 7, date(2026, 1, 12), None, "back weekday_0 the ordinal_12 month_1"),
    (SV, 7, date(2026, 1, 2), None, "back tomorrow"),
    (SV, 8, date(2026, 1, 1), None, "back today"),
    (SV, 2, at(1, 13, 30), "12h", "back at half num_2"),
    (EN, 2, at(1, 13, 30), None, "back at num_1 num_30 pm"),
    (EN, 2, at(1, 13, 30), "24h", "back at num_13 num_30"),
    (EN, 2, at(1, 13, 5), None, "back at num_1 oh num_5 pm"),
    (EN, 5, at(2, 8), None, "back tomorrow at num_8 am"),
    (EN, 3, at(5, 8), None, "back on weekday_0 at num_8 am"),
    (EN, 7, date(2026, 1, 12), None, "back on weekday_0 the ordinal_12 of month_1"),
    (EN, 6, at(20, 17), "24h", "back on weekday_1 the ordinal_20 of month_1 at num_17 hundred"),
]


@pytest.mark.parametrize(("lang", "profile", "until", "clock", "tail"), ACTIVATED)
def test_activated(lang, profile, until, clock, tail):
    assert activated(profile, until, NOW, lang, clock) == [
        f"profile_{profile}",
        "activated",
        "pause",
        *tail.split(),
    ]


@pytest.mark.parametrize("lang", [SV, EN])
def test_activated_without_end(lang):
    assert activated(2, None, NOW, lang) == ["profile_2", "activated"]


def test_domain_examples_for_the_fourth_of_january():
    now = datetime(2026, 12, 30, 17, 0)
    monday = date(2027, 1, 4)
    assert redirect("name_1001", 7, monday, now, SV) == (
        ["name_1001", "redirect_7", "back", "weekday_0", "the", "ordinal_4", "month_1"]
    )  # "‹namn› har semester, åter måndag den fjärde januari"
    assert redirect("name_1001", 7, monday, now, EN) == (
        ["name_1001", "redirect_7", "back", "on", "weekday_0", "the", "ordinal_4", "of", "month_1"]
    )  # "... is on vacation, back on Monday the fourth of January"


SV_24H = [
    (time(0, 0), "num_0"),
    (time(8, 0), "num_8"),
    (time(13, 30), "num_13 and num_30"),
    (time(13, 5), "num_13 and num_5"),
    (time(23, 59), "num_23 and num_59"),
]
SV_12H = [  # colloquial Swedish
    (time(13, 0), "num_1"),
    (time(13, 1), "minute past num_1"),
    (time(13, 5), "num_5 past num_1"),
    (time(13, 10), "num_10 past num_1"),
    (time(13, 15), "quarter past num_1"),
    (time(13, 17), "num_17 minutes past num_1"),
    (time(13, 20), "num_20 past num_1"),
    (time(13, 22), "num_8 minutes to half num_2"),
    (time(13, 25), "num_5 to half num_2"),
    (time(13, 30), "half num_2"),
    (time(13, 33), "num_3 minutes past half num_2"),
    (time(13, 35), "num_5 past half num_2"),
    (time(13, 40), "num_20 to num_2"),
    (time(13, 45), "quarter to num_2"),
    (time(13, 50), "num_10 to num_2"),
    (time(13, 55), "num_5 to num_2"),
    (time(13, 59), "minute to num_2"),
    (time(0, 10), "num_10 past num_12"),
    (time(12, 30), "half num_1"),
    (time(23, 45), "quarter to num_12"),
]
EN_12H = [
    (time(0, 0), "num_12 midnight"),
    (time(0, 30), "num_12 num_30 am"),
    (time(8, 0), "num_8 am"),
    (time(9, 5), "num_9 oh num_5 am"),
    (time(12, 0), "num_12 noon"),
    (time(12, 45), "num_12 num_45 pm"),
    (time(13, 30), "num_1 num_30 pm"),
    (time(23, 10), "num_11 num_10 pm"),
]
EN_24H = [
    (time(0, 0), "num_0 num_0 hundred"),
    (time(0, 30), "num_0 num_0 num_30"),
    (time(8, 0), "oh num_8 hundred"),
    (time(9, 5), "oh num_9 oh num_5"),
    (time(13, 0), "num_13 hundred"),
    (time(13, 30), "num_13 num_30"),
    (time(23, 59), "num_23 num_59"),
]


@pytest.mark.parametrize(
    ("lang", "clock", "t", "words"),
    [(SV, "24h", t, w) for t, w in SV_24H]
    + [(SV, "12h", t, w) for t, w in SV_12H]
    + [(EN, "12h", t, w) for t, w in EN_12H]
    + [(EN, "24h", t, w) for t, w in EN_24H],
)
def test_time_words(lang, clock, t, words):
    assert time_words(t, lang, clock) == words.split()


def test_default_clock_per_language():
    assert time_words(time(13, 30), SV) == ["num_13", "and", "num_30"]
    assert time_words(time(13, 30), EN) == ["num_1", "num_30", "pm"]


CURRENT = [
    # "Din profil är Möte till fredag den fjärde december"
    (SV, 3, date(2026, 12, 4), "until weekday_4 the ordinal_4 month_12"),
    (EN, 3, date(2026, 12, 4), "until weekday_4 the ordinal_4 of month_12"),
    (SV, 2, datetime(2026, 11, 30, 13, 30), "until at num_13 and num_30"),
    (EN, 2, datetime(2026, 11, 30, 13, 30), "until num_1 num_30 pm"),
    (SV, 5, datetime(2026, 12, 1, 8), "until tomorrow at num_8"),
    (EN, 5, datetime(2026, 12, 1, 8), "until tomorrow at num_8 am"),
    (EN, 5, datetime(2026, 12, 3, 8), "until weekday_3 at num_8 am"),
    (SV, 2, None, "pause no_end_time"),
    (EN, 2, None, "pause no_end_time"),
]


@pytest.mark.parametrize(("lang", "profile", "until", "tail"), CURRENT)
def test_current_profile(lang, profile, until, tail):
    now = datetime(2026, 11, 30, 10, 0)  # a Monday
    assert current_profile(profile, until, now, lang) == [
        "your_profile_is",
        f"profile_{profile}",
        *tail.split(),
    ]


def test_current_standard_profile_without_no_end():
    assert current_profile(1, None, NOW, SV, say_no_end=False) == ["your_profile_is", "profile_1"]


REDIRECTS = [
    # "‹namn› är på lunch, åter klockan tretton och trettio."
    (SV, "name_1001", 2, at(1, 13, 30), "name_1001 redirect_2 back at num_13 and num_30"),
    (EN, "name_1001", 2, at(1, 13, 30), "name_1001 redirect_2 back at num_1 num_30 pm"),
    # "‹1001› har gått för dagen, åter i morgon klockan åtta."
    (SV, "1001", 5, at(2, 8), "num_1 num_0 num_0 num_1 redirect_5 back tomorrow at num_8"),
    (EN, "1001", 5, at(2, 8), "num_1 num_0 num_0 num_1 redirect_5 back tomorrow at num_8 am"),
    (SV, "2002", 8, None, "num_2 num_0 num_0 num_2 redirect_8"),
    (EN, "name_7", 3, None, "name_7 redirect_3"),
]


@pytest.mark.parametrize(("lang", "who", "profile", "back", "words"), REDIRECTS)
def test_redirect(lang, who, profile, back, words):
    assert redirect(who, profile, back, NOW, lang) == words.split()


@pytest.mark.parametrize("lang", [SV, EN])
def test_short_sentences(lang):
    assert invalid_code(lang) == ["invalid_code"]
    assert deactivated(9, lang) == ["profile_9", "deactivated"]


def test_timezones_are_converted_to_nows_zone():
    cet = timezone(timedelta(hours=1))
    now = datetime(2026, 1, 1, 9, 0, tzinfo=cet)
    until = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)  # 13:30 in Stockholm
    assert activated(2, until, now, SV)[-3:] == ["num_13", "and", "num_30"]
    late = datetime(2026, 1, 1, 23, 30, tzinfo=UTC)  # 00:30 tomorrow in Stockholm
    assert activated(2, late, now, SV)[4:6] == ["tomorrow", "at"]
    with pytest.raises(ValueError, match="timezone-aware"):
        activated(2, datetime(2026, 1, 1, 13), now, SV)


def test_numbers_and_digits():
    assert number(0) == ["num_0"] and number(59) == ["num_59"]
    assert digits("1203") == ["num_1", "num_2", "num_0", "num_3"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: activated(2, None, NOW, "de"), "unsupported language"),
        (lambda: activated(0, None, NOW, SV), "positive integer"),
        (lambda: activated(True, None, NOW, SV), "positive integer"),
        (lambda: activated(2, at(1, 13), NOW, SV, "13h"), "clock must be"),
        (lambda: redirect("", 2, None, NOW, SV), "who must"),
        (lambda: number(60), "0-59"),
        (lambda: digits("12a"), "expected digits"),
        (lambda: phrases.when_words(at(1, 13), NOW, SV, lead="since"), "lead must"),
    ],
)
def test_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
