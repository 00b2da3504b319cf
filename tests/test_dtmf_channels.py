"""Many calls' received audio through one detector pass per 20 ms tick."""

from __future__ import annotations

import random

import numpy as np

from ivr.dtmf.channels import FRAME, InbandChannels
from ivr.dtmf.generate import generate
from ivr.media import g711


def packets(samples: np.ndarray, size: int = FRAME) -> list[np.ndarray]:
    padded = np.concatenate((samples, np.zeros((-len(samples)) % size, dtype=np.int16)))
    return [padded[i : i + size] for i in range(0, len(padded), size)]


def run(streams: dict[int, list[np.ndarray]], hub: InbandChannels, jitter: int = 0) -> dict:
    """Deliver one packet per stream per tick (optionally bunched), tick, collect digits."""
    rng = random.Random(3)
    found: dict[int, str] = {slot: "" for slot in streams}
    queues = {slot: list(chunks) for slot, chunks in streams.items()}
    held: dict[int, list[np.ndarray]] = {slot: [] for slot in streams}
    for _ in range(max(len(q) for q in queues.values()) + 20):
        for slot, queue in queues.items():
            if queue:
                held[slot].append(queue.pop(0))
            if held[slot] and (jitter == 0 or rng.random() > jitter or not queue):
                for chunk in held[slot]:
                    hub.push(slot, chunk)
                held[slot] = []
        for slot, event in hub.tick():
            found[slot] += event.digit
    return found


def test_two_calls_detected_in_one_pass_each_tick() -> None:
    hub = InbandChannels()
    a, b = hub.open(), hub.open()
    streams = {
        a: packets(generate("2130#", lead_ms=60, trail_ms=200)),
        b: packets(generate("*23*9#", tone_ms=60, gap_ms=60, lead_ms=20, trail_ms=200)),
    }
    assert run(streams, hub) == {a: "2130#", b: "*23*9#"}


def test_jittery_arrival_still_yields_each_digit_once() -> None:
    hub = InbandChannels()
    slot = hub.open()
    audio = generate("1234567890", tone_ms=80, gap_ms=80, lead_ms=40, trail_ms=300)
    assert run({slot: packets(audio)}, hub, jitter=0.3) == {slot: "1234567890"}


def test_audio_through_g711_in_30ms_packets() -> None:
    hub = InbandChannels()
    slot = hub.open()
    audio = generate("58", lead_ms=40, trail_ms=200)
    coded = [g711.alaw_decode(g711.alaw_encode(chunk)) for chunk in packets(audio, 240)]
    assert run({slot: coded}, hub) == {slot: "58"}


def test_silence_and_closed_channels_report_nothing() -> None:
    hub = InbandChannels()
    quiet, gone = hub.open(), hub.open()
    hub.close(gone)
    assert len(hub) == 1
    assert run({quiet: packets(np.zeros(8000, dtype=np.int16))}, hub) == {quiet: ""}
    hub.push(gone, np.ones(160, dtype=np.int16))  # ignored, no error
