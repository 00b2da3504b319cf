"""Digits sent in SIP INFO bodies: ``application/dtmf-relay`` and ``application/dtmf``.

``application/dtmf-relay`` (Cisco style, the de-facto standard)::

    Signal=5
    Duration=160

``application/dtmf`` carries the bare digit. Keys are case-insensitive, lines may end in CRLF
or LF, unknown keys are ignored; ``Duration`` is in milliseconds.
"""

from __future__ import annotations

from ivr.dtmf.events import DIGITS, DigitEvent

CONTENT_TYPES = ("application/dtmf-relay", "application/dtmf")
MAX_BODY = 1024
MAX_DURATION_MS = 60_000
# some dtmf-relay senders use the RFC 4733 event codes for the non-numeric keys
_NUMERIC = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


class InfoBodyError(ValueError):
    """An INFO body that carries no usable digit; ``status`` is the response to send."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_info(content_type: str, body: bytes | str, now: float) -> DigitEvent:
    """The digit of an INFO request received at ``now`` (seconds).

    Raises :class:`InfoBodyError` with status 415 for another content type (answer with an
    ``Accept`` of :data:`CONTENT_TYPES`) and 400 for a malformed body.
    """
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime not in CONTENT_TYPES:
        raise InfoBodyError(f"unsupported content type {content_type!r} for DTMF", status=415)
    text = _text(body)
    if mime == "application/dtmf":
        return _event(_digit(text.strip(), numeric=False), None, now)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise InfoBodyError(f"dtmf-relay line without '=': {line.strip()!r}")
        fields.setdefault(key.strip().lower(), value.strip())
    if "signal" not in fields:
        raise InfoBodyError("dtmf-relay body has no Signal")
    duration = _duration(fields["duration"]) if "duration" in fields else None
    return _event(_digit(fields["signal"], numeric=True), duration, now)


def _text(body: bytes | str) -> str:
    if len(body) > MAX_BODY:
        raise InfoBodyError(f"DTMF body too large ({len(body)} > {MAX_BODY} bytes)")
    if isinstance(body, str):
        return body
    try:
        return body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise InfoBodyError(f"DTMF body is not ASCII: {exc.reason} at byte {exc.start}") from exc


def _digit(value: str, numeric: bool) -> str:
    digit = _NUMERIC.get(value, value.upper()) if numeric else value.upper()
    if len(digit) != 1 or digit not in DIGITS:
        raise InfoBodyError(f"not a DTMF digit: {value!r}")
    return digit


def _duration(value: str) -> float:
    if not (value.isascii() and value.isdigit()):
        raise InfoBodyError(f"Duration must be whole milliseconds, got {value!r}")
    ms = int(value)
    if ms > MAX_DURATION_MS:
        raise InfoBodyError(f"Duration out of range 0-{MAX_DURATION_MS} ms: {ms}")
    return ms / 1000


def _event(digit: str, duration: float | None, now: float) -> DigitEvent:
    end = None if duration is None else now + duration
    return DigitEvent(digit=digit, source="info", start=now, end=end, duration=duration)
