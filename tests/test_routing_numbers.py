"""Number normalisation and extension detection."""

from __future__ import annotations

import pytest

from ivr.routing.numbers import NumberError, NumberPlan, is_e164, normalise

PLAN = NumberPlan(region="SE", extension_min=2, extension_max=6)


@pytest.mark.parametrize(
    "text",
    ["08-123 450 01", "+46 8 123 450 01", "0046812345001", "08-12345001", " +46812345001 "],
)
def test_one_number_many_spellings(text: str) -> None:
    assert normalise(text) == "+46812345001"


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("070-174 06 05", "SE", "+46701740605"),
        ("+44 20 7946 0018", "SE", "+442079460018"),
        ("020 7946 0018", "GB", "+442079460018"),
    ],
)
def test_normalise_regions(text: str, region: str, expected: str) -> None:
    assert normalise(text, region) == expected


@pytest.mark.parametrize("text", ["", "   ", "abc", "08-12", "anonymous", "+46 99"])
def test_normalise_rejects(text: str) -> None:
    with pytest.raises(NumberError):
        normalise(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1001", True),
        ("12", True),
        ("123456", True),
        ("1", False),
        ("1234567", False),
        ("0123", False),
        ("112", False),
        ("10a1", False),
        ("*23", False),
        ("١٢٣٤", False),
        ("", False),
    ],
)
def test_is_extension(text: str, expected: bool) -> None:
    assert PLAN.is_extension(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1001", "1001"),
        ("070-174 06 05", "+46701740605"),
        ("0046701740605", "+46701740605"),
        ("anonymous", None),
        ("", None),
    ],
)
def test_canonical(text: str, expected: str | None) -> None:
    assert PLAN.canonical(text) == expected


def test_same() -> None:
    assert PLAN.same("08-465 004 01", "+46846500401")
    assert not PLAN.same("anonymous", "anonymous")


@pytest.mark.parametrize(("text", "expected"), [("+46846500401", True), ("0846500401", False)])
def test_is_e164(text: str, expected: bool) -> None:
    assert is_e164(text) is expected


@pytest.mark.parametrize(
    "kwargs",
    [{"region": "XX"}, {"extension_min": 0}, {"extension_min": 5, "extension_max": 4}],
)
def test_plan_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        NumberPlan(**kwargs)  # type: ignore[arg-type]
