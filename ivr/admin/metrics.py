"""Prometheus text exposition (format 0.0.4): gauges read at scrape time, counters kept here."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from ivr.metrics import Counter, Labels

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """The service's metrics: ``gauges`` are read when scraped; counters are kept."""

    def __init__(
        self,
        gauges: Callable[[], Mapping[str, tuple[str, float]]],
        extra: tuple[Counter, ...] = (),
    ) -> None:
        self._gauges = gauges
        self._extra = extra
        self.api_requests = Counter("ivr_api_requests_total", "HTTP API responses by status")
        self.auth_failures = Counter(
            "ivr_api_auth_failures_total", "Failed or refused bearer-token attempts by reason"
        )
        self.prompt_uploads = Counter(
            "ivr_prompt_uploads_total", "Prompt uploads by result (stored or rejected)"
        )

    @property
    def counters(self) -> tuple[Counter, ...]:
        return (self.api_requests, self.auth_failures, self.prompt_uploads, *self._extra)

    def render(self) -> str:
        """The exposition text: gauges first, then counters."""
        lines: list[str] = []
        for name, (help_text, value) in self._gauges().items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            lines.append(f"{name} {_number(value)}")
        for counter in self.counters:
            lines += [f"# HELP {counter.name} {counter.help}", f"# TYPE {counter.name} counter"]
            for labels, value in sorted(counter.values.items()):
                lines.append(f"{counter.name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"
