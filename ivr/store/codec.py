"""Text encodings for stored values: aware datetimes and audit details.

Datetimes are stored as ISO 8601 with their UTC offset, followed by the IANA zone
name in brackets when the tzinfo is a :class:`zoneinfo.ZoneInfo` (the RFC 9557 form,
e.g. ``2024-06-01T11:30:00+02:00[Europe/Stockholm]``), so a value comes back aware,
equal, and in the same zone. Other tzinfos come back as fixed offsets (still equal).
"""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = ["decode_datetime", "decode_detail", "encode_datetime", "encode_detail"]


def encode_datetime(value: datetime) -> str:
    """Encode an aware datetime; naive ones are refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"refusing to store a naive datetime: {value!r}")
    text = value.isoformat()
    tz = value.tzinfo
    if isinstance(tz, ZoneInfo) and tz.key:
        text += f"[{tz.key}]"
    return text


def decode_datetime(text: str) -> datetime:
    """Inverse of :func:`encode_datetime`."""
    zone = None
    if text.endswith("]"):
        text, _, key = text[:-1].partition("[")
        zone = ZoneInfo(key)
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"stored datetime without an offset: {text!r}")
    return value if zone is None else value.astimezone(zone)


def encode_detail(detail: dict[str, object]) -> str:
    """JSON for an audit entry's detail (keys sorted; tuples come back as lists)."""
    try:
        return json.dumps(detail, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit detail is not JSON-serialisable: {exc}") from exc


def decode_detail(text: str) -> dict[str, object]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("stored audit detail is not a JSON object")
    return value
