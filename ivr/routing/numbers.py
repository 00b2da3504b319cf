"""Phone numbers: E.164 normalisation with ``phonenumbers`` and extension detection.

``08-123 450 01``, ``+46 8 123 450 01`` and ``0046812345001`` are one number
(``+46812345001``) when the default region is SE.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

_DIGITS = re.compile(r"[0-9]+")
E164 = re.compile(r"\+[1-9][0-9]{1,14}")


class NumberError(ValueError):
    """A string that is neither a valid phone number nor an extension."""


def normalise(number: str, region: str = "SE") -> str:
    """Return ``number`` in E.164 form, or raise :class:`NumberError`."""
    text = number.strip()
    if not text:
        raise NumberError("empty phone number")
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise NumberError(f"not a phone number: {number!r}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise NumberError(f"not a valid phone number: {number!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_e164(text: str) -> bool:
    """True for a string already in E.164 form (``+`` and 2-15 digits)."""
    return E164.fullmatch(text) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberPlan:
    """The company's numbering: default region and how long extensions are.

    An extension is all ASCII digits, does not start with ``0`` (the trunk prefix)
    and is not an emergency number of the region (``112`` is never an extension).
    """

    region: str = "SE"
    extension_min: int = 2
    extension_max: int = 6

    def __post_init__(self) -> None:
        if self.region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {self.region!r}")
        if not 1 <= self.extension_min <= self.extension_max <= 15:
            raise ValueError("need 1 <= extension_min <= extension_max <= 15")

    def is_extension(self, text: str) -> bool:
        """True when ``text`` is shaped like one of our extensions."""
        return (
            _DIGITS.fullmatch(text) is not None
            and not text.startswith("0")
            and self.extension_min <= len(text) <= self.extension_max
            and not phonenumbers.is_emergency_number(text, self.region)
        )

    def normalise(self, number: str) -> str:
        """E.164 form of ``number`` in this plan's region (raises :class:`NumberError`)."""
        return normalise(number, self.region)

    def canonical(self, text: str) -> str | None:
        """An extension as is, a number as E.164, anything else (anonymous) as None."""
        text = text.strip()
        if self.is_extension(text):
            return text
        try:
            return self.normalise(text)
        except NumberError:
            return None

    def same(self, a: str, b: str) -> bool:
        """True when both strings name the same extension or number."""
        ca = self.canonical(a)
        return ca is not None and ca == self.canonical(b)
