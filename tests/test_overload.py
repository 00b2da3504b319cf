"""Load shedding: the guard's hysteresis (pure) and the probe that feeds it (a Clock)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from ivr.lag_probe import LagProbe
from ivr.overload import OverloadGuard


@pytest.mark.parametrize(
    ("lateness", "overloaded_after"),
    [
        ([0.0] * 20, [False] * 20),
        ([0.5], [False]),  # one garbage collection or burst is not overload
        ([0.5, 0.5, 0.0, 0.5, 0.5], [False] * 5),  # late ticks must come in a row
        ([0.3, 0.3, 0.3], [False, False, True]),
        ([0.25, 0.25, 0.25], [False] * 3),  # exactly `high` is not late
    ],
)
def test_the_guard_trips_only_on_late_ticks_in_a_row(
    lateness: list[float], overloaded_after: list[bool]
) -> None:
    guard = OverloadGuard()
    seen = []
    for value in lateness:
        guard.observe(value)
        seen.append(guard.overloaded)
    assert seen == overloaded_after


def test_the_guard_clears_after_calm_ticks_in_a_row_and_reports_changes() -> None:
    guard = OverloadGuard(trip_ticks=2, clear_ticks=3)
    assert [guard.observe(0.4), guard.observe(0.4)] == [False, True]
    assert guard.overloaded and guard.worst == 0.4
    # calm-ish ticks between low and high keep it overloaded; so does one calm tick
    assert [guard.observe(x) for x in (0.1, 0.0, 0.0, 0.1, 0.0, 0.0)] == [False] * 6
    assert guard.overloaded
    assert guard.observe(0.01) is True and not guard.overloaded
    assert guard.retry_after > 0


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError):
        OverloadGuard(high=0.01, low=0.1)
    with pytest.raises(ValueError):
        OverloadGuard(trip_ticks=0)


def test_the_probe_feeds_the_lateness_of_each_tick() -> None:
    clock = Clock()
    guard = OverloadGuard(trip_ticks=2, clear_ticks=2)
    probe = LagProbe(clock, guard, interval=0.1)
    probe.start()
    clock.advance(0.1)
    assert not guard.overloaded and guard.worst == 0.0
    clock.advance(0.5)  # the reactor got to the tick 0.4 s late
    clock.advance(0.45)
    assert guard.overloaded and guard.worst == pytest.approx(0.4)
    clock.advance(0.1)
    clock.advance(0.1)
    assert not guard.overloaded
    probe.stop()
    assert clock.getDelayedCalls() == []
