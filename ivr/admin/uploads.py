"""Audio upload bodies: raw (any audio media type) or ``multipart/form-data``.

A multipart body must carry exactly one file part (any field name; ``file`` is
customary); other text fields are ignored. Parsing is ``python-multipart``'s streaming
parser over the already size-capped body, collecting parts in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ivr.prompt_import import Rejected

MULTIPART = b"multipart/form-data"

# The parser logs every malformed body at WARNING through stdlib logging; the reason
# goes back to the client in the 400 instead.
logging.getLogger("python_multipart.multipart").setLevel(logging.CRITICAL)


@dataclass(slots=True)
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)

    @property
    def is_file(self) -> bool:
        disposition = self.headers.get(b"content-disposition", b"")
        _kind, params = parse_options_header(disposition)
        return b"filename" in params


def _parts(body: bytes, boundary: bytes) -> list[_Part]:
    parts: list[_Part] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}

    def on_part_begin() -> None:
        parts.append(_Part())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data += data[start:end]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1].headers[header["field"].lower()] = header["value"]
        header["field"], header["value"] = b"", b""

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    parser.write(body)
    parser.finalize()
    return parts


def upload_bytes(body: bytes, content_type: str | None) -> bytes:
    """The audio in a request body; :class:`Rejected` (400) for a malformed multipart
    body or one without exactly one file part."""
    if content_type is None:
        return body
    kind, params = parse_options_header(content_type.encode("latin-1"))
    if kind.lower() != MULTIPART:
        return body
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise Rejected(400, "multipart/form-data needs a boundary parameter", "content-type")
    try:
        parts = _parts(body, boundary)
    except (MultipartParseError, ValueError) as exc:
        raise Rejected(400, f"malformed multipart body: {exc}") from None
    files = [p for p in parts if p.is_file]
    if len(files) != 1:
        raise Rejected(400, f"a multipart upload needs exactly one file part, got {len(files)}")
    return bytes(files[0].data)
