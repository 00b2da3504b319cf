"""ivr.logs.Logger: events below the set level are dropped before they are published."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import InvalidLogLevelError, LogPublisher

from ivr import logs


@pytest.fixture
def published() -> Iterator[tuple[logs.Logger, list[dict[str, Any]]]]:
    events: list[dict[str, Any]] = []
    publisher = LogPublisher(events.append)
    yield logs.Logger(namespace="test", observer=publisher), events
    logs.set_level("debug")


def test_every_level_passes_until_a_level_is_set(published) -> None:  # type: ignore[no-untyped-def]
    log, events = published
    log.debug("d")
    log.info("i")
    assert [e["log_format"] for e in events] == ["d", "i"]


def test_levels_below_the_set_one_are_dropped(published) -> None:  # type: ignore[no-untyped-def]
    log, events = published
    logs.set_level("warn")
    log.debug("d")
    log.info("i {x}", x=1)
    log.warn("w")
    log.error("e")
    try:
        raise ValueError("boom")
    except ValueError:
        log.failure("f")
    assert [e["log_format"] for e in events] == ["w", "e", "f"]
    logs.set_level("info")
    log.info("i")
    assert events[-1]["log_format"] == "i"
    with pytest.raises(InvalidLogLevelError):
        logs.set_level("loud")
