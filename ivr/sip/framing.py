"""Splitting a SIP byte stream (TCP, TLS) into messages (RFC 3261 §18.3, RFC 5626 §3.5.1).

:class:`StreamFramer` is fed whatever the socket delivers and returns, in order,
each complete message's bytes (ready for ``parse_message(..., stream=True)``), a
:data:`KEEPALIVE` for each CRLFCRLF ping between messages (answer it with a
single CRLF) and at most one :class:`FramingError`, after which the stream is
unusable: answer if ``error.head`` parses, then close the connection. The
result does not depend on how the bytes were split across ``feed`` calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ivr.sip.message import (
    DEFAULT_MAX_SIZE,
    SipParseError,
    find_head_end,
    parse_content_length,
    parse_header_block,
)

_PING = b"\r\n\r\n"
_ANY_LENGTH_RE = re.compile(rb"\n(?:content-length|l)[ \t]*:", re.IGNORECASE)
# The usual spelling, whose meaning is plain; anything else goes to the full parser.
_PLAIN_LENGTH_RE = re.compile(
    rb"\n(?:content-length|l)[ \t]*:[ \t]*([0-9]{1,10})[ \t]*\r?\n(?![ \t])", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A CRLFCRLF keep-alive ping between messages; the answer is a CRLF pong."""

    pong: bytes = b"\r\n"


KEEPALIVE = KeepAlive()


class FramingError(SipParseError):
    """The stream cannot be framed; ``head`` is the header block if one was read."""

    def __init__(self, reason: str, status: int = 400, *, head: bytes = b"") -> None:
        super().__init__(reason, status)
        self.head = head


class StreamFramer:
    """Incremental framer for one connection; ``max_size`` bounds one message."""

    __slots__ = ("_buffer", "_failed", "_length", "_max_size", "_ping_state", "_scan")

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._max_size = max_size
        self._buffer = bytearray()
        self._scan = 0  # where to resume looking for the end of the header block
        self._length = -1  # total size of the message at the buffer start, once known
        self._ping_state = 0  # how much of b"\r\n\r\n" the inter-message octets matched
        self._failed = False

    @property
    def buffered(self) -> int:
        """Octets held for an incomplete message (nonzero at EOF means a truncated one)."""
        return len(self._buffer)

    @property
    def failed(self) -> bool:
        """True once a FramingError was returned; later input is ignored."""
        return self._failed

    def feed(self, data: bytes) -> list[bytes | KeepAlive | FramingError]:
        """Add received octets; return the messages, pings and error they complete."""
        if self._failed:
            return []
        buffer = self._buffer
        buffer += data
        out: list[bytes | KeepAlive | FramingError] = []
        pos = 0
        end = len(buffer)
        while pos < end:
            if self._length < 0:
                pos = self._skip_line_breaks(buffer, pos, end, out)
                if pos == end:
                    break
                head_end, body_start = find_head_end(buffer, max(pos, self._scan))
                if head_end < 0:
                    if end - pos > self._max_size:
                        return self._fail(out, self._too_large, 513)
                    self._scan = max(pos, end - 2)
                    break
                head = bytes(buffer[pos:body_start])
                if len(head) > self._max_size:
                    return self._fail(out, self._too_large, 513)
                try:
                    length = _content_length(head)
                except SipParseError as exc:
                    return self._fail(out, exc.reason, head=head)
                total = len(head) + length
                if total > self._max_size:
                    return self._fail(out, self._too_large, 513, head=head)
                self._length = total
            if end - pos < self._length:
                break
            out.append(bytes(buffer[pos : pos + self._length]))
            pos += self._length
            self._length = -1
            self._scan = 0
        del buffer[:pos]
        self._scan = max(0, self._scan - pos)
        return out

    @property
    def _too_large(self) -> str:
        return f"Message too large (over {self._max_size} octets)"

    def _skip_line_breaks(
        self, buffer: bytearray, pos: int, end: int, out: list[bytes | KeepAlive | FramingError]
    ) -> int:
        """Skip CR/LF octets before a start line, reporting each CRLFCRLF as a ping."""
        state = self._ping_state
        while pos < end:
            octet = buffer[pos]
            if octet != 13 and octet != 10:
                state = 0
                break
            if octet == _PING[state]:
                state += 1
                if state == 4:
                    out.append(KEEPALIVE)
                    state = 0
            else:
                state = 1 if octet == 13 else 0
            pos += 1
        self._ping_state = state
        return pos

    def _fail(
        self,
        out: list[bytes | KeepAlive | FramingError],
        reason: str,
        status: int = 400,
        *,
        head: bytes = b"",
    ) -> list[bytes | KeepAlive | FramingError]:
        self._failed = True
        self._buffer = bytearray()
        out.append(FramingError(reason, status, head=head))
        return out


def _content_length(head: bytes) -> int:
    """The Content-Length of a header block (ending in its empty line); required."""
    found = _ANY_LENGTH_RE.findall(head)
    if len(found) == 1:
        match = _PLAIN_LENGTH_RE.search(head)
        if match is not None:
            return int(match.group(1))
    elif not found:
        raise SipParseError("Missing Content-Length header (required on stream transports)")
    else:
        raise SipParseError("Multiple Content-Length headers")
    _, headers = parse_header_block(head)
    return parse_content_length(headers.get("content-length") or "")
