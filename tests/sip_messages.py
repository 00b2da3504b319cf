"""Shared SIP test data: the RFC 4475/5118 torture messages and ways to feed a parser.

The torture files live in ``shared/tools/sip`` beside the repository (``/work/shared``
next to ``/work/main``; CI clones the same layout). If they are missing every test
that needs them FAILS with a message saying where they were looked for.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ivr.sip.framing import FramingError, KeepAlive, StreamFramer
from ivr.sip.message import Request, Response, SipParseError, parse_message

SIP_DATA = Path(__file__).resolve().parents[2] / "shared" / "tools" / "sip"

RFC4475_NAMES = (
    *("wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq"),
    *("semiuri", "transports", "mpart01", "unreason", "noreason", "badinv01", "clerr"),
    *("ncl", "scalar02", "scalarlg", "quotbal", "ltgtruri", "lwsruri", "lwsstart", "trws"),
    *("escruri", "baddate", "regbadct", "badaspec", "baddn", "badvers", "mismatch01"),
    *("mismatch02", "bigcode", "badbranch", "insuf", "unkscm", "novelsc", "unksm2", "bext01"),
    *("invut", "regaut01", "multi01", "mcl01", "bcast", "zeromf", "cparam01", "cparam02"),
    *("regescrt", "sdp01", "inv2543", "test"),
)
RFC5118_NAMES = (
    *("ipv6-good", "ipv6-bad", "port-ambiguous", "port-unambiguous"),
    *("via-received-param-with-delim", "via-received-param-no-delim", "ipv6-in-sdp"),
    *("mult-ip-in-header", "mult-ip-in-sdp", "ipv4-mapped-ipv6", "ipv6-bug-abnf-3-colons"),
    "ipv6-correct-abnf-2-colons",
)
ALL_NAMES = (*RFC4475_NAMES, *RFC5118_NAMES)


def sip_data_dir() -> Path:
    """The torture-message folder; FAILS the calling test when it is missing."""
    for suite in ("rfc4475", "rfc5118"):
        if not (SIP_DATA / suite / "index.json").is_file():
            pytest.fail(
                f"SIP torture data missing: {SIP_DATA / suite / 'index.json'} not found. "
                "The tests expect shared/tools/sip beside the repository checkout "
                "(e.g. /work/shared next to /work/main)."
            )
    return SIP_DATA


def suite_of(name: str) -> str:
    return "rfc4475" if name in RFC4475_NAMES else "rfc5118"


def index(suite: str) -> dict[str, Any]:
    """The parsed index.json of ``suite``."""
    return json.loads((sip_data_dir() / suite / "index.json").read_text(encoding="utf-8"))


def entry(name: str) -> dict[str, Any]:
    """The index entry of one torture message."""
    for item in index(suite_of(name))["messages"]:
        if item["name"] == name:
            return item
    pytest.fail(f"{name} is not in {suite_of(name)}/index.json")


def load(name: str) -> bytes:
    """The bytes of one torture message, checked against the index's sha256."""
    item = entry(name)
    data = (sip_data_dir() / suite_of(name) / item["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == item["sha256"], f"{name}: file differs from index"
    return data


# -- feeding a stream framer -----------------------------------------------------------

Frame = bytes | KeepAlive | FramingError


def frame_key(frame: Frame) -> tuple[object, ...]:
    """A comparable form of a framer output item."""
    if isinstance(frame, FramingError):
        return ("error", frame.status, frame.reason, frame.head)
    if isinstance(frame, KeepAlive):
        return ("ping",)
    return ("message", frame)


def feed_chunks(
    chunks: Iterable[bytes], max_size: int = 65535
) -> tuple[list[tuple[object, ...]], int]:
    """Feed chunks to a new framer; (outputs as keys, octets left buffered)."""
    framer = StreamFramer(max_size)
    out: list[tuple[object, ...]] = []
    for chunk in chunks:
        out.extend(frame_key(frame) for frame in framer.feed(chunk))
    return out, framer.buffered


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates allowed)."""
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# -- comparing parse results -------------------------------------------------------------


def message_key(message: Request | Response, *, content_length: bool = True) -> tuple[object, ...]:
    """Everything that defines a parsed message; optionally without Content-Length lines."""
    items = tuple(
        (name, value)
        for name, value in message.headers
        if content_length or name != "content-length"
    )
    if isinstance(message, Request):
        start: tuple[object, ...] = ("request", message.method, message.uri, message.version)
    else:
        start = ("response", message.status, message.reason, message.version)
    return (*start, items, message.body)


def outcome(data: bytes, *, stream: bool = False, max_size: int = 65535) -> tuple[object, ...]:
    """("ok", message key) or ("error", status, reason) for one parse."""
    try:
        message = parse_message(data, max_size=max_size, stream=stream)
    except SipParseError as exc:
        return ("error", exc.status, exc.reason)
    return ("ok", message_key(message))


def assert_round_trip(message: Request | Response) -> None:
    """parse(to_bytes(m)) is m, except that Content-Length now states the body size."""
    again = parse_message(message.to_bytes(), stream=True)
    assert message_key(again, content_length=False) == message_key(message, content_length=False)
    assert again.headers.values("content-length") == [str(len(message.body))]


@dataclass(frozen=True)
class ParseCase:
    """One parse_message input and what must come of it (status None: it parses)."""

    name: str
    data: bytes
    status: int | None = None
    reason: str = ""
    framed: bool = True  # also a valid single stream message (exact Content-Length)
