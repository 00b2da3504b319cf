"""SIP messages: parse and serialize (RFC 3261 §7, §18.3, §20).

Pure and allocation-lean: headers are kept as an ordered list of ``(lower-case
name, raw value)`` pairs and interpreted on demand by ``ivr.sip.headers``.
Every defect raises :class:`SipParseError` carrying the status a server should
answer with (400, 505, 513), a reason naming the defect and, when the start
line and header lines could be read, the ``partial`` message so that the
caller can still build that answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

SIP_VERSION = "SIP/2.0"
DEFAULT_MAX_SIZE = 65535

COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "y": "identity",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
}

_SPECIAL_SPELLINGS: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
}

_COMMON_NAMES = (
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "max-forwards",
    "content-length",
    "content-type",
    "content-disposition",
    "content-encoding",
    "expires",
    "min-expires",
    "route",
    "record-route",
    "path",
    "authorization",
    "proxy-authorization",
    "www-authenticate",
    "proxy-authenticate",
    "authentication-info",
    "user-agent",
    "server",
    "allow",
    "allow-events",
    "supported",
    "require",
    "proxy-require",
    "unsupported",
    "accept",
    "accept-encoding",
    "accept-language",
    "event",
    "subscription-state",
    "date",
    "timestamp",
    "subject",
    "organization",
    "retry-after",
    "reason",
    "warning",
    "refer-to",
    "referred-by",
    "replaces",
    "privacy",
    "p-asserted-identity",
    "p-preferred-identity",
    "session-expires",
    "min-se",
    "rseq",
    "rack",
    "mime-version",
)

# Headers whose values may be combined into comma-separated lists (RFC 3261 §7.3.1).
LIST_HEADERS: frozenset[str] = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-encoding",
        "allow-events",
        "path",
        "in-reply-to",
        "alert-info",
        "call-info",
        "error-info",
        "warning",
        "history-info",
        "diversion",
    }
)

# Headers that must appear at most once.
SINGLETON_HEADERS: frozenset[str] = frozenset(
    {"call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type", "expires"}
)

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_VERSION_RE = re.compile(r"SIP/[0-9]{1,5}\.[0-9]{1,5}\Z", re.IGNORECASE)
_LINE_BREAK_RE = re.compile(r"[\r\n]")
# One list element: anything but a comma, where quoted strings and <...> may hold commas
# (an unclosed quote or < runs to the end, as a lenient reader would take it).
_LIST_ITEM_RE = re.compile(r'(?:[^,"<]++|"(?:[^"\\]++|\\.)*+"?|<[^>]*+>?)*+', re.S)

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
}


class SipParseError(ValueError):
    """A malformed message. ``status`` is what a server should answer (if it answers).

    ``headers`` are extra header fields for that answer (``Unsupported`` for a 420);
    ``partial`` is the message as far as it could be read (start line and header
    lines), or None when even that failed.
    """

    def __init__(
        self,
        reason: str,
        status: int = 400,
        *,
        headers: Iterable[tuple[str, str]] = (),
        partial: Request | Response | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers: tuple[tuple[str, str], ...] = tuple(headers)
        self.partial = partial


def _spell(lower: str) -> str:
    name = _SPECIAL_SPELLINGS.get(lower)
    if name is None:
        name = "-".join(part.capitalize() for part in lower.split("-"))
    return name


# Read-only tables built once: normalized name → wire spelling, wire spelling → normalized.
_CANONICAL: dict[str, str] = {name: _spell(name) for name in _COMMON_NAMES}
_KNOWN_SPELLINGS: dict[str, str] = {
    **{name.upper(): name for name in _COMMON_NAMES},
    **{spelled: name for name, spelled in _CANONICAL.items()},
    **{name: name for name in _COMMON_NAMES},
    **{short.upper(): name for short, name in COMPACT_FORMS.items()},
    **COMPACT_FORMS,
}


def canonical_name(lower: str) -> str:
    """The conventional spelling of a header name (``call-id`` → ``Call-ID``)."""
    name = _CANONICAL.get(lower)
    return name if name is not None else _spell(lower)


def normalize_name(name: str) -> str:
    """Lower-case a header name and expand a compact form."""
    known = _KNOWN_SPELLINGS.get(name)
    if known is not None:
        return known
    lower = name.strip(" \t").lower()
    return COMPACT_FORMS.get(lower, lower)


def split_list(value: str, *, keep_empty: bool = False) -> list[str]:
    """Split a comma-separated header value, respecting quotes and ``<...>``.

    Items are stripped of SP/HTAB; empty items are dropped unless ``keep_empty``
    (strict parsers of Via and Contact use it to reject ``a,,b``).
    """
    if "," not in value:
        stripped = value.strip(" \t")
        return [stripped] if stripped or keep_empty else []
    if '"' not in value and "<" not in value:
        items = [item.strip(" \t") for item in value.split(",")]
    else:
        items = []
        match = _LIST_ITEM_RE.match
        size = len(value)
        pos = 0
        while True:
            end = match(value, pos).end()
            items.append(value[pos:end].strip(" \t"))
            if end >= size:
                break
            pos = end + 1
    return items if keep_empty else [item for item in items if item]


class Headers:
    """Ordered, case-insensitive, multi-valued SIP headers."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(normalize_name(n), v) for n, v in items]

    @classmethod
    def _from_normalized(cls, items: list[tuple[str, str]]) -> Headers:
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (a whole header line's value)."""
        key = normalize_name(name)
        for n, v in self._items:
            if n == key:
                return v
        return default

    def values(self, name: str) -> list[str]:
        """Every header line's value for ``name``, unsplit."""
        key = normalize_name(name)
        return [v for n, v in self._items if n == key]

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list headers are split at top-level commas."""
        key = normalize_name(name)
        values = [v for n, v in self._items if n == key]
        if key in LIST_HEADERS:
            return [item for v in values for item in split_list(v)]
        return values

    def count(self, name: str) -> int:
        """How many header lines carry ``name``."""
        key = normalize_name(name)
        return sum(1 for n, _ in self._items if n == key)

    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        self._items.append((normalize_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a header line before all others (a proxy's Via)."""
        self._items.insert(0, (normalize_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` header with one value, at the first one's place."""
        key = normalize_name(name)
        for i, (n, _) in enumerate(self._items):
            if n == key:
                self._items[i] = (key, value)
                self._items[i + 1 :] = [(n2, v2) for n2, v2 in self._items[i + 1 :] if n2 != key]
                return
        self._items.append((key, value))

    def replace_first(self, name: str, value: str) -> None:
        """Replace the value of the first ``name`` header line only (others stay)."""
        key = normalize_name(name)
        items = self._items
        for i, (n, _) in enumerate(items):
            if n == key:
                items[i] = (key, value)
                return
        items.append((key, value))

    def remove(self, name: str) -> None:
        """Drop every ``name`` header."""
        key = normalize_name(name)
        self._items = [(n, v) for n, v in self._items if n != key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = normalize_name(name)
        return any(n == key for n, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        """A shallow copy (values are immutable strings)."""
        return Headers._from_normalized(list(self._items))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Message:
    """Common parts of requests and responses."""

    __slots__ = ("body", "headers", "version")

    def __init__(self, headers: Headers, body: bytes, version: str) -> None:
        self.headers = headers
        self.body = body
        self.version = version

    @property
    def call_id(self) -> str:
        """The Call-ID header ('' when absent)."""
        return self.headers.get("call-id") or ""

    def start_line(self) -> str:
        """The Request-Line or Status-Line, without CRLF."""
        raise TypeError("abstract")

    def to_bytes(self) -> bytes:
        """Serialize with canonical header names and a correct Content-Length.

        Content-Length stays where it was (or is appended). A CR or LF inside the
        start line or a header value raises ValueError: it would inject headers.
        """
        body = self.body
        lines = [self.start_line()]
        append = lines.append
        canonical = _CANONICAL
        length_written = False
        for name, value in self.headers._items:
            if name == "content-length":
                if length_written:
                    continue
                length_written = True
                value = str(len(body))
            spelled = canonical.get(name)
            if spelled is None:
                spelled = canonical_name(name)
            append(f"{spelled}: {value}")
        if not length_written:
            append(f"Content-Length: {len(body)}")
        head = "\r\n".join(lines)
        if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
            bad = next(line for line in lines if _LINE_BREAK_RE.search(line))
            raise ValueError(f"line break inside a header line: {bad[:60]!r}")
        return (head + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


class Request(Message):
    """A SIP request. ``uri`` is the Request-URI as text."""

    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers if headers is not None else Headers(), body, version)
        self.method = method
        self.uri = uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.call_id!r}>"


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers if headers is not None else Headers(), body, version)
        self.status = status
        self.reason = REASON_PHRASES.get(status, "") if reason is None else reason

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.call_id!r}>"


def find_head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Where the header block ends and where the body starts, or (-1, -1).

    The block ends at the first empty line; lines end in CRLF (or, leniently, LF).
    The first index excludes the line break that ends the last header line.
    ``start`` is where to begin looking (it must not point inside a line break).
    """
    crlf = data.find(b"\n\r\n", start)
    lflf = data.find(b"\n\n", start, crlf + 1 if crlf >= 0 else len(data))
    if lflf >= 0:
        return (lflf - 1 if lflf > 0 and data[lflf - 1] == 13 else lflf), lflf + 2
    if crlf >= 0:
        return (crlf - 1 if crlf > 0 and data[crlf - 1] == 13 else crlf), crlf + 3
    return -1, -1


def parse_content_length(value: str) -> int:
    """Content-Length as an int; rejects signs, garbage and absurd sizes."""
    text = value.strip(" \t")
    if not (text.isdigit() and text.isascii()):
        raise SipParseError(f"Malformed Content-Length header {text[:20]!r}")
    if len(text.lstrip("0")) > 10:
        raise SipParseError("Content-Length header value too large")
    return int(text)


def _split_lines(head: str) -> list[str]:
    """Lines of a header block; CRLF or bare LF ends a line, a stray CR is an error."""
    lines = head.split("\r\n")
    breaks = len(lines) - 1
    if head.count("\n") == breaks and head.count("\r") == breaks:
        return lines
    lines = [line[:-1] if line.endswith("\r") else line for line in head.split("\n")]
    for line in lines:
        if "\r" in line:
            raise SipParseError(f"Stray CR in header line {line[:40]!r}")
    return lines


def _check_version(version: str) -> tuple[str, tuple[int, str] | None]:
    """The version normalized, and a (505 or 400, reason) problem unless it is SIP/2.0."""
    if version.upper() == SIP_VERSION:
        return SIP_VERSION, None
    if _VERSION_RE.match(version):
        return version, (505, f"Unsupported SIP version {version!r}")
    return version, (400, f"Malformed SIP-Version {version[:16]!r}")


def _header_items(lines: list[str]) -> tuple[list[tuple[str, str]], str | None]:
    """Header lines (after the start line) → normalized items, and the first defect."""
    items: list[tuple[str, str]] = []
    append = items.append
    known = _KNOWN_SPELLINGS
    error: str | None = None
    for i in range(1, len(lines)):
        raw = lines[i]
        name, colon, value = raw.partition(":")
        key = known.get(name) if colon else None
        if key is None:
            if not raw:
                continue
            if raw[0] in " \t":
                if not items:
                    error = error or "Continuation line before any header"
                    continue
                folded = raw.strip(" \t")
                if folded:
                    name, value = items[-1]
                    items[-1] = (name, f"{value} {folded}" if value else folded)
                continue
            name = name.rstrip(" \t")
            key = known.get(name) if colon else None
            if key is None:
                if not colon or not _TOKEN_RE.match(name):
                    error = error or f"Malformed header line {raw[:40]!r}"
                    continue
                key = name.lower()
                key = COMPACT_FORMS.get(key, key)
        append((key, value.strip(" \t")))
    return items, error


def parse_header_block(head: bytes) -> tuple[str, Headers]:
    """The start line and headers of a header block, without judging the start line."""
    start = len(head) - len(head.lstrip(b"\r\n"))
    end, _ = find_head_end(head, start)
    text = head[start : end if end >= 0 else len(head.rstrip(b"\r\n"))]
    lines = _split_lines(text.decode("utf-8", "surrogateescape"))
    items, error = _header_items(lines)
    if error is not None:
        raise SipParseError(error)
    return lines[0], Headers._from_normalized(items)


def _parse_request_line(line: str) -> tuple[str, str, str, tuple[int, str] | None]:
    """Method, Request-URI, version and the first (status, reason) problem, if any.

    Raises only when the line is not recognisably ``method URI version``; other defects
    are returned so that the caller can still read the headers (for a ``partial``).
    """
    parts = line.split(" ")
    if len(parts) != 3 or not (parts[0] and parts[1] and parts[2]):
        # Liberal (RFC 4475 §3.1.2.9/10): runs of SP and trailing SP are ignored.
        parts = [part for part in parts if part]
        if len(parts) < 3 or (len(parts) > 3 and parts[-1][:4].upper() != "SIP/"):
            raise SipParseError(f"Malformed Request-Line {line[:60]!r}")
    method, uri, version = parts[0], " ".join(parts[1:-1]), parts[-1]
    problem = None
    if version != SIP_VERSION:
        version, problem = _check_version(version)
    if problem is None:
        if len(parts) > 3:
            problem = (400, "Malformed Request-Line (whitespace in Request-URI)")
        elif not _TOKEN_RE.match(method):
            problem = (400, f"Malformed method {method[:32]!r}")
        elif uri[0] == "<":
            problem = (400, "Request-URI must not be enclosed in <>")
    return method, uri, version, problem


def _parse_status_line(line: str) -> tuple[int, str, str, tuple[int, str] | None]:
    version, sp, rest = line.partition(" ")
    if not sp:
        raise SipParseError(f"Malformed Status-Line {line[:60]!r}")
    code, _, reason = rest.lstrip(" ").partition(" ")
    if not (len(code) == 3 and code.isdigit() and code.isascii() and code[0] in "123456"):
        raise SipParseError(f"Bad status code {code[:16]!r}")
    if version == SIP_VERSION:
        return int(code), reason, version, None
    version, problem = _check_version(version)
    return int(code), reason, version, problem


def parse_message(
    data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, stream: bool = False
) -> Request | Response:
    """Parse one datagram (``stream=False``) or one framed stream message.

    CRLFs before the start line are ignored (RFC 3261 §7.5). In a datagram, bytes
    beyond Content-Length are discarded, a missing Content-Length means "the rest"
    and a Content-Length larger than the rest is an error (§18.3). A stream
    message (from :class:`ivr.sip.framing.StreamFramer`) must carry a
    Content-Length that matches its body exactly.
    """
    size = len(data)
    if size > max_size:
        raise SipParseError(f"Message too large ({size} > {max_size} octets)", 513)
    if not size:
        raise SipParseError("Empty message")
    start = 0
    if data[0] == 13 or data[0] == 10:
        start = size - len(data.lstrip(b"\r\n"))
        if start == size:
            raise SipParseError("Empty message (only line breaks)")
    # Fast path: the first CRLFCRLF ends the header block when no bare LF precedes it
    # (only a bare LF can make an earlier empty line).
    lines: list[str] | None = None
    head_end = data.find(b"\r\n\r\n", start)
    body_start = head_end + 4
    if head_end >= 0:
        text = data[start:head_end].decode("utf-8", "surrogateescape")
        lines = text.split("\r\n")
        if text.count("\n") != len(lines) - 1:
            lines = None
        elif text.count("\r") != len(lines) - 1:
            lines = _split_lines(text)  # raises on the stray CR
    if lines is None:
        head_end, body_start = find_head_end(data, start)
        if head_end < 0:
            head_end = body_start = len(data.rstrip(b"\r\n"))
        lines = _split_lines(data[start:head_end].decode("utf-8", "surrogateescape"))
    complete = body_start > head_end
    first = lines[0]
    if first[:4].upper() == "SIP/":
        status, reason, version, problem = _parse_status_line(first)
        method = uri = ""
    else:
        method, uri, version, problem = _parse_request_line(first)
        status, reason = 0, ""
    items, error = _header_items(lines)

    def fail(reason_text: str, code: int = 400) -> SipParseError:
        """The error for a defect found after the start line, with the partial message."""
        headers = Headers._from_normalized(items)
        partial: Request | Response = (
            Response(status, reason, headers, b"", version)
            if status
            else Request(method, uri, headers, b"", version)
        )
        return SipParseError(reason_text, code, partial=partial)

    if problem is not None:
        raise fail(problem[1], problem[0])
    if error is not None:
        raise fail(error)
    if not complete:
        raise fail("Incomplete header block (no empty line)")

    lengths = [value for name, value in items if name == "content-length"]
    body = data[body_start:]
    if len(lengths) > 1:
        raise fail("Multiple Content-Length headers")
    if lengths:
        try:
            length = parse_content_length(lengths[0])
        except SipParseError as exc:
            raise fail(exc.reason) from None
        if length > len(body):
            raise fail("Content-Length larger than the message body")
        if length < len(body):
            if stream:
                raise fail("Octets after the body of a framed stream message")
            body = body[:length]
    elif stream:
        raise fail("Missing Content-Length header (required on stream transports)")
    headers = Headers._from_normalized(items)
    if status:
        return Response(status, reason, headers, body, version)
    return Request(method, uri, headers, body, version)
