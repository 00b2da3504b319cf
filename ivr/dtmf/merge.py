"""One digit stream per call from the three DTMF sources.

A phone may send the same key press as an RFC 4733 event, a SIP INFO and in-band tones. The
merger passes each press once:

* **time-window dedup**: an event whose digit matches one already passed from *another* source,
  with intervals overlapping (each widened by ``window`` seconds), is a copy and is dropped;
* **preference**: with ``prefer_signalled`` (RFC 4733 negotiated, the default), once the call has
  produced a signalled event (RFC 4733, then INFO) the lower-ranked sources are ignored for the
  rest of the call, so a missed or split tone detection cannot add digits. Until then in-band
  digits pass (a phone that negotiated telephone-event but never sends it still works).

All events of one call must share one clock (the call controller's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ivr.dtmf.events import DigitEvent

RANK = {"rfc4733": 0, "info": 1, "inband": 2}


class DigitMerger:
    """Per-call merge of DigitEvents; feed events in the order they arrive."""

    def __init__(
        self,
        window: float = 0.2,
        prefer_signalled: bool = True,
        horizon: float = 10.0,
        on_press: Callable[[DigitEvent], None] | None = None,
    ) -> None:
        if window < 0 or horizon <= 0:
            raise ValueError("window must be >= 0 and horizon > 0")
        self.on_press = on_press  # told of every press passed (metrics)
        self.window = window
        self.prefer_signalled = prefer_signalled
        self.horizon = horizon
        self._passed: list[DigitEvent] = []
        self._best = len(RANK)  # best (lowest) rank of a signalled source seen so far

    @property
    def preferred(self) -> str | None:
        """The signalled source this call has latched onto, if any."""
        return next((s for s, r in RANK.items() if r == self._best), None)

    def add(self, event: DigitEvent) -> DigitEvent | None:
        """The event if it is a new press, else None (a copy, or from an outranked source)."""
        rank = RANK[event.source]
        self._prune(event.start)
        duplicate = any(
            p.digit == event.digit and p.source != event.source and self._overlap(p, event)
            for p in self._passed
        )
        if self.prefer_signalled and rank < RANK["inband"]:
            self._best = min(self._best, rank)
        if duplicate or (self.prefer_signalled and rank > self._best):
            return None
        self._passed.append(event)
        if self.on_press is not None:
            self.on_press(event)
        return event

    def feed(self, events: Iterable[DigitEvent]) -> list[DigitEvent]:
        """:meth:`add` each event; returns the new presses."""
        return [e for e in map(self.add, events) if e is not None]

    def _overlap(self, a: DigitEvent, b: DigitEvent) -> bool:
        a_end = a.start if a.end is None else a.end
        b_end = b.start if b.end is None else b.end
        return a.start - self.window <= b_end and b.start - self.window <= a_end

    def _prune(self, now: float) -> None:
        old = now - self.horizon
        self._passed = [p for p in self._passed if (p.start if p.end is None else p.end) >= old]
