"""StreamFramer: Content-Length framing, keep-alives, bounds; the same result however split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sip_messages import bytewise, feed_chunks, outcome, split_at

from ivr.sip.framing import KEEPALIVE, FramingError, KeepAlive, StreamFramer
from ivr.sip.message import parse_message


def msg(
    body: bytes = b"", *, length: str | None = None, extra: str = "", lf: bool = False
) -> bytes:
    cl = str(len(body)) if length is None else length
    head = (
        "OPTIONS sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n"
        "From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
        f"Call-ID: c1\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: {cl}\r\n\r\n"
    )
    if lf:
        head = head.replace("\r\n", "\n")
    return head.encode() + body


ONE = msg()
WITH_BODY = msg(b"v=0\r\n\r\n\r\nbinary\x00\xff\r\n\r\n")
PING = b"\r\n\r\n"


def all_ways(data: bytes, max_size: int = 65535) -> list[tuple[object, ...]]:
    """Whole, byte by byte and in thirds must agree; returns the whole-feed result."""
    whole = feed_chunks([data], max_size)
    assert feed_chunks(bytewise(data), max_size) == whole
    third = max(1, len(data) // 3)
    assert feed_chunks(split_at(data, [third, 2 * third]), max_size) == whole
    return whole[0]


def test_single_and_pipelined_messages() -> None:
    assert all_ways(ONE) == [("message", ONE)]
    assert all_ways(WITH_BODY) == [("message", WITH_BODY)]
    stream = ONE + WITH_BODY + ONE
    assert all_ways(stream) == [("message", ONE), ("message", WITH_BODY), ("message", ONE)]
    for frame in (ONE, WITH_BODY):
        assert parse_message(frame, stream=True).body == frame[frame.index(b"\r\n\r\n") + 4 :]


def test_keepalives() -> None:
    assert all_ways(PING) == [("ping",)]
    assert all_ways(PING + PING) == [("ping",), ("ping",)]
    assert all_ways(b"\r\n" + ONE + b"\r\n") == [("message", ONE)]
    assert all_ways(PING + ONE + PING + b"\r\n" + ONE) == [
        ("ping",),
        ("message", ONE),
        ("ping",),
        ("message", ONE),
    ]
    assert all_ways(b"\r\n\r\r\n\r\n") == [("ping",)]
    assert all_ways(b"\n\n\r\n\n") == []
    assert KEEPALIVE.pong == b"\r\n" and isinstance(KEEPALIVE, KeepAlive)


def test_partial_input_stays_buffered() -> None:
    framer = StreamFramer()
    assert framer.feed(ONE[:-1]) == []
    assert framer.buffered == len(ONE) - 1
    assert framer.feed(ONE[-1:] + WITH_BODY[:10]) == [ONE]
    assert framer.buffered == 10
    assert framer.feed(WITH_BODY[10:]) == [WITH_BODY]
    assert framer.buffered == 0 and not framer.failed
    assert framer.feed(b"") == []


def test_lenient_header_forms() -> None:
    lf = msg(b"hello", lf=True)
    assert all_ways(lf) == [("message", lf)]
    compact = ONE.replace(b"Content-Length: 0", b"l  :   0")
    assert all_ways(compact) == [("message", compact)]
    folded = WITH_BODY.replace(b"Content-Length: ", b"Content-Length:\r\n   ")
    assert all_ways(folded) == [("message", folded)]
    assert parse_message(folded, stream=True).body == WITH_BODY[WITH_BODY.index(b"\r\n\r\n") + 4 :]
    zeros = msg(b"abc", length="0000000000003")
    assert all_ways(zeros) == [("message", zeros)]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (ONE.replace(b"Content-Length: 0\r\n", b""), "Missing Content-Length"),
        (msg(extra="l: 0\r\n"), "Multiple Content-Length"),
        (msg(length="-999"), "Content-Length"),
        (msg(length="12abc"), "Content-Length"),
        (msg(length="99999999999999"), "Content-Length"),
        (msg(extra="Bad line\r\n", length="0 \r\n x"), "header line"),
    ],
)
def test_unframeable_stream_fails(data: bytes, reason: str) -> None:
    result = all_ways(ONE + data + ONE)
    assert result[0] == ("message", ONE)
    kind, status, text, head = result[1]
    assert (kind, status) == ("error", 400) and reason in str(text)
    assert head == data[: data.index(b"\r\n\r\n") + 4]
    assert len(result) == 2


def test_after_a_failure_input_is_ignored() -> None:
    framer = StreamFramer()
    out = framer.feed(ONE.replace(b"Content-Length: 0\r\n", b""))
    assert len(out) == 1 and isinstance(out[0], FramingError)
    assert out[0].head and parse_message(out[0].head).headers.get("call-id") == "c1"
    assert framer.failed and framer.buffered == 0
    assert framer.feed(ONE) == []


def test_size_bounds() -> None:
    size = len(WITH_BODY)
    assert all_ways(WITH_BODY, max_size=size) == [("message", WITH_BODY)]
    too_big = all_ways(WITH_BODY, max_size=size - 1)
    assert too_big == [
        (
            "error",
            513,
            f"Message too large (over {size - 1} octets)",
            WITH_BODY[: WITH_BODY.index(b"\r\n\r\n") + 4],
        )
    ]
    endless = b"OPTIONS sip:a SIP/2.0\r\nX: " + b"y" * 200
    assert all_ways(endless, max_size=100) == [
        ("error", 513, "Message too large (over 100 octets)", b"")
    ]
    head_only_too_big = msg(extra="X: " + "y" * 200 + "\r\n")
    assert all_ways(head_only_too_big, max_size=100) == [
        ("error", 513, "Message too large (over 100 octets)", b"")
    ]
    framer = StreamFramer(100)
    assert framer.feed(b"OPTIONS sip:a SIP/2.0\r\n" + b"y" * 77) == []
    assert len(framer.feed(b"y")) == 1 and framer.failed


_HEADER_LINE = st.sampled_from(
    [
        "Via: SIP/2.0/TCP h;branch=z9hG4bKx",
        "Subject: hello",
        "Subject:\r\n folded",
        "X-Empty:",
        "To: <sip:b@h>",
        "l: 3",
        "Content-Length: 3",
        "Content-Length:\r\n 3",
        "content-length : 0003",
        "Content-Length: x",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            st.just(PING),
            st.just(b"\r\n"),
            st.builds(
                lambda lines, body, lf: (
                    (
                        "INVITE sip:a@b SIP/2.0\r\n"
                        + "".join(f"{line}\r\n" for line in lines)
                        + "\r\n"
                    )
                    .encode()
                    .replace(b"\r\n", b"\n" if lf else b"\r\n")
                    + body
                ),
                st.lists(_HEADER_LINE, max_size=4),
                st.binary(max_size=6),
                st.booleans(),
            ),
        ),
        max_size=5,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_any_split_gives_the_same_frames(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    whole, buffered = feed_chunks([data])
    assert feed_chunks(split_at(data, cuts)) == (whole, buffered)
    for frame in whole:
        if frame[0] == "message":
            # The parser may reject a frame, but never disagree with the framer on its length.
            result = outcome(frame[1], stream=True)  # type: ignore[arg-type]
            assert result[0] == "ok" or not any(
                text in str(result[2]) for text in ("Octets after", "larger than", "Content-Length")
            ), result


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=300), cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8)
)
def test_random_bytes_frame_identically_however_split(data: bytes, cuts: list[int]) -> None:
    assert feed_chunks(split_at(data, cuts), 200) == feed_chunks([data], 200)
