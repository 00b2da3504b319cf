"""Reading the SIP messages out of a SIPp run's ``-trace_msg`` log."""

from __future__ import annotations

import re

from ivr.testing.sipp import SippResult

_ENTRY = re.compile(
    r"^-{20,} [^\n]*\n(?:UDP|TCP) message (sent|received)[^\n]*\n\n(.*?)(?=^-{20,} |\Z)",
    re.M | re.S,
)


def received(result: SippResult, start: str) -> list[str]:
    """The messages a SIPp received whose first line starts with ``start``."""
    texts = [
        text.strip("\n")
        for direction, text in _ENTRY.findall(result.messages.replace("\r\n", "\n"))
        if direction == "received"
    ]
    return [text for text in texts if text.startswith(start)]


def header(message: str, name: str) -> str:
    """The first ``name`` header's value in ``message`` ("" when it has none)."""
    match = re.search(rf"(?mi)^{name}:\s*(.*)$", message)
    return match.group(1).strip() if match else ""
