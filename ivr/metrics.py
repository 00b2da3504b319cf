"""Counters the service keeps for ``GET /metrics`` (pure: rendered by ``ivr.admin.metrics``)."""

from __future__ import annotations

from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Counter:
    """A monotonically increasing count per label set."""

    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount


def _calls() -> Counter:
    return Counter("ivr_calls_total", "Finished calls to users, queues and the trunk by outcome")


def _digits() -> Counter:
    return Counter("ivr_dtmf_digits_total", "DTMF key presses acted on, by source")


@dataclass(slots=True)
class CallCounters:
    """What the call side counts: call outcomes (from call records) and DTMF presses."""

    calls: Counter = field(default_factory=_calls)
    digits: Counter = field(default_factory=_digits)

    def digit(self, source: str) -> None:
        """One key press from ``rfc4733``, ``info`` or ``inband`` passed a call's merger."""
        self.digits.inc(source=source)

    @property
    def all(self) -> tuple[Counter, ...]:
        return (self.calls, self.digits)
