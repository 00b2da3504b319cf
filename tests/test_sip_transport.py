"""The transport adapter's timer wheel: SIP timers on one reactor call, driven by a Clock."""

from __future__ import annotations

from collections.abc import Hashable

import pytest
from twisted.internet.task import Clock

from ivr.sip.transport import TIMER_TICK, TimerWheel


class Wheel:
    def __init__(self) -> None:
        self.clock = Clock()
        self.fired: list[tuple[float, Hashable]] = []
        self.wheel = TimerWheel(self.clock, self._fire)
        self.rearm: dict[Hashable, float] = {}

    def _fire(self, key: Hashable) -> None:
        self.fired.append((self.clock.seconds(), key))
        delay = self.rearm.pop(key, None)
        if delay is not None:
            self.wheel.set(key, delay)


def test_timers_fire_in_order_never_early_and_at_most_one_tick_late() -> None:
    w = Wheel()
    w.clock.advance(100.003)
    start = w.clock.seconds()
    for key, delay in (("F", 32.0), ("E", 0.5), ("J", 32.0), ("G", 0.5), ("K", 5.0)):
        w.wheel.set(key, delay)
    assert len(w.wheel) == 5
    while w.clock.getDelayedCalls():
        w.clock.advance(0.001)
    assert [key for _, key in w.fired] == ["E", "G", "K", "F", "J"]
    delays = {key: at - start for at, key in w.fired}
    for key, want in (("E", 0.5), ("G", 0.5), ("K", 5.0), ("F", 32.0), ("J", 32.0)):
        assert want <= delays[key] <= want + TIMER_TICK + 0.002, (key, delays[key])
    assert len(w.wheel) == 0
    assert len(w.clock.getDelayedCalls()) == 0


def test_one_reactor_call_for_many_timers() -> None:
    w = Wheel()
    for n in range(1000):
        w.wheel.set(("tx", n), 32.0)
    assert len(w.clock.getDelayedCalls()) == 1
    w.clock.advance(32.0 + TIMER_TICK)
    assert len(w.fired) == 1000 and not w.clock.getDelayedCalls()


def test_cleared_and_rearmed_timers() -> None:
    w = Wheel()
    w.wheel.set("H", 32.0)
    w.wheel.set("G", 0.5)
    w.wheel.clear("H")
    assert "H" not in w.wheel and "G" in w.wheel
    w.wheel.set("G", 1.0)  # re-armed: only the new deadline counts
    w.clock.advance(0.6)
    assert w.fired == []
    w.clock.advance(0.5)
    assert [key for _, key in w.fired] == ["G"]
    w.clock.advance(40)
    assert [key for _, key in w.fired] == ["G"]


def test_a_timer_armed_while_firing_and_an_earlier_pending_slot() -> None:
    """A callback that arms a later timer must not hide an earlier pending one."""
    w = Wheel()
    w.wheel.set("A", 0.5)
    w.wheel.set("B", 1.0)
    w.rearm["A"] = 4.0  # when A fires it re-arms itself for later than B
    w.clock.advance(0.52)
    assert [key for _, key in w.fired] == ["A"]
    w.clock.advance(0.5)
    assert [key for _, key in w.fired] == ["A", "B"]
    w.clock.advance(4.0)
    assert [key for _, key in w.fired] == ["A", "B", "A"]


def test_an_earlier_timer_reschedules_the_reactor_call() -> None:
    w = Wheel()
    w.wheel.set("late", 30.0)
    w.wheel.set("soon", 0.5)
    calls = w.clock.getDelayedCalls()
    assert len(calls) == 1 and calls[0].getTime() == pytest.approx(0.5 + TIMER_TICK, abs=0.011)
    w.clock.advance(0.52)
    assert [key for _, key in w.fired] == ["soon"]


def test_stop_forgets_everything() -> None:
    w = Wheel()
    w.wheel.set("J", 32.0)
    w.wheel.stop()
    assert len(w.wheel) == 0 and not w.clock.getDelayedCalls()
    w.clock.advance(40)
    assert w.fired == []


def test_a_failing_timer_does_not_lose_the_others_in_its_slot() -> None:
    clock = Clock()
    fired: list[Hashable] = []

    def fire(key: Hashable) -> None:
        if key == "bad":
            raise RuntimeError("boom")
        fired.append(key)

    wheel = TimerWheel(clock, fire)
    for key in ("a", "bad", "b"):
        wheel.set(key, 0.5)
    wheel.set("later", 2.0)
    clock.advance(0.52)
    assert fired == ["a", "b"]
    clock.advance(2.0)
    assert fired == ["a", "b", "later"]
