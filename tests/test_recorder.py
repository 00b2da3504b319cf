"""Recorder (pure): reorder, loss, duplicates, silence/max/#/hang-up stops, too short."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import numpy as np
import pytest

from ivr.media import g711
from ivr.media.recorder import Recorder, Recording, TooShort

RATE = 8000
FRAME = 160


def tone(seconds: float, *, dbfs: float = -12.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.round(32767 * 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def frames(pcm: np.ndarray, codec: str = "PCMU", start: int = 65500) -> list[tuple[int, bytes]]:
    """(sequence, payload) of 20 ms packets, numbered from ``start`` (wrapping)."""
    data = g711.encode(codec, pcm)
    return [
        ((start + i) & 0xFFFF, data[k : k + FRAME])
        for i, k in enumerate(range(0, len(data), FRAME))
    ]


def heard(pcm: np.ndarray, codec: str = "PCMU") -> np.ndarray:
    """What G.711 makes of ``pcm``: the best a recording can be."""
    return g711.decode(codec, g711.encode(codec, pcm))


def feed_all(rec: Recorder, packets: list[tuple[int, bytes]]) -> list[str | None]:
    return [rec.feed(seq, payload) for seq, payload in packets]


def test_silence_stops_after_three_seconds_and_is_trimmed():
    speech = tone(2.0)
    packets = frames(np.concatenate([speech, silence(5.0)]))
    rec = Recorder("PCMU")
    results = feed_all(rec, packets)
    stop_at = 100 + 150 - 1  # 2 s of speech, then the 150th silent frame makes 3 s
    assert results[:stop_at] == [None] * stop_at
    assert set(results[stop_at:]) == {"silence"}
    assert rec.reason == "silence" and not rec.recording
    assert rec.packets == stop_at + 1 and rec.duration == pytest.approx(5.0)
    result = rec.result()
    assert isinstance(result, Recording)
    assert result.reason == "silence" and result.duration == pytest.approx(2.0)
    assert np.array_equal(result.pcm, heard(speech))
    assert result.voiced_seconds == pytest.approx(2.0)
    assert not result.pcm.flags.writeable


def test_silence_between_words_shorter_than_the_limit_is_kept():
    pcm = np.concatenate([tone(1.0), silence(2.5), tone(1.0)])
    rec = Recorder("PCMU")
    assert set(feed_all(rec, frames(pcm))) == {None}
    rec.stop("hangup")
    result = rec.result()
    assert isinstance(result, Recording) and result.reason == "hangup"
    assert np.array_equal(result.pcm, heard(pcm))
    assert result.voiced_seconds == pytest.approx(2.0)


def test_max_length_cuts_exactly():
    rec = Recorder("PCMU", max_seconds=2.0)
    results = feed_all(rec, frames(tone(3.0)))
    assert results[99] == "max_length" and set(results[:99]) == {None}
    assert rec.packets == 100  # later packets are not even looked at
    result = rec.result()
    assert isinstance(result, Recording) and result.reason == "max_length"
    assert len(result.pcm) == 2 * RATE


def test_max_length_inside_a_packet():
    rec = Recorder("PCMU", max_seconds=1.01)  # 50.5 frames
    feed_all(rec, frames(tone(2.0)))
    assert rec.reason == "max_length" and len(rec.result().pcm) == 8080  # type: ignore[union-attr]


def test_default_maximum_is_three_minutes():
    rec = Recorder("PCMA")
    speech = tone(0.5)
    packets = frames(np.tile(speech, 400), "PCMA")  # 200 s of sound
    results = feed_all(rec, packets)
    assert results.index("max_length") == 180 * 50 - 1
    result = rec.result()
    assert isinstance(result, Recording) and result.duration == 180.0


def test_hash_stops_and_drops_the_tone():
    pcm = np.concatenate([tone(2.0), tone(0.2, freq=941.0)])  # speech, then the key's tone
    rec = Recorder("PCMU")
    feed_all(rec, frames(pcm))
    rec.stop("digit", drop_seconds=0.25)
    rec.stop("hangup")  # later stops change nothing
    result = rec.result()
    assert isinstance(result, Recording) and result.reason == "digit"
    assert np.array_equal(result.pcm, heard(pcm)[: round(1.95 * RATE)])
    assert rec.feed(65535, b"\x00" * FRAME) == "digit"


def test_reordering_within_the_window_is_undone():
    pcm = tone(3.0, freq=300.0) + tone(3.0, dbfs=-20, freq=1234.0)
    packets = frames(pcm, start=65530)
    rng = random.Random(7)
    shuffled: list[tuple[int, bytes]] = []
    for k in range(0, len(packets), 5):  # shuffle blocks of five (within the window)
        block = packets[k : k + 5]
        rng.shuffle(block)
        shuffled.extend(block)
    rec = Recorder("PCMU")
    assert set(feed_all(rec, shuffled)) == {None}
    rec.stop("hangup")
    result = rec.result()
    assert isinstance(result, Recording)
    assert np.array_equal(result.pcm, heard(pcm))
    assert (rec.lost, rec.discarded) == (0, 0)


def test_lost_packets_become_silence_of_the_same_length():
    pcm = tone(2.0)
    packets = frames(pcm)
    kept = [p for i, p in enumerate(packets) if i not in (10, 11, 40)]
    rec = Recorder("PCMU")
    feed_all(rec, kept)
    rec.stop("hangup")
    result = rec.result()
    assert isinstance(result, Recording)
    expected = heard(pcm).copy()
    for i in (10, 11, 40):
        expected[i * FRAME : (i + 1) * FRAME] = 0
    assert np.array_equal(result.pcm, expected)
    assert rec.lost == 3


def test_a_late_packet_waits_in_the_buffer():
    packets = frames(tone(1.5))
    order = [*packets[:10], *packets[11:15], packets[10], *packets[15:]]  # 4 behind: in time
    rec = Recorder("PCMU", reorder_packets=8)
    feed_all(rec, order)
    rec.stop("hangup")
    assert rec.lost == 0 and np.array_equal(rec.result().pcm, heard(tone(1.5)))  # type: ignore[union-attr]


def test_a_packet_later_than_the_window_is_dropped_as_lost():
    packets = frames(tone(1.5))
    order = [*packets[:10], *packets[11:21], packets[10], *packets[21:]]
    rec = Recorder("PCMU", reorder_packets=8)
    feed_all(rec, order)
    rec.stop("hangup")
    assert (rec.lost, rec.discarded) == (1, 1)
    assert not rec.result().pcm[10 * FRAME : 11 * FRAME].any()  # type: ignore[union-attr]


def test_duplicates_are_ignored():
    pcm = tone(1.5)
    packets = frames(pcm)
    doubled = [p for pair in zip(packets, packets, strict=True) for p in pair]
    doubled[100:100] = packets[30:33]  # old ones again, 20 packets later
    rec = Recorder("PCMU")
    feed_all(rec, doubled)
    rec.stop("hangup")
    assert rec.discarded == len(packets) + 3
    assert np.array_equal(rec.result().pcm, heard(pcm))  # type: ignore[union-attr]


def test_hang_up_flushes_the_buffer_and_fills_its_gaps():
    packets = frames(tone(1.5))
    rec = Recorder("PCMU")
    feed_all(rec, [*packets[:70], *packets[71:74]])  # 70 missing; 71-73 wait for it
    assert rec.duration == pytest.approx(70 * 0.02)
    rec.stop("hangup")
    result = rec.result()
    assert isinstance(result, Recording)
    assert len(result.pcm) == 74 * FRAME and not result.pcm[70 * FRAME : 71 * FRAME].any()


def test_sequence_restart_resynchronises_without_filling():
    first, second = tone(1.0), tone(1.0, freq=600.0)
    rec = Recorder("PCMU")
    feed_all(rec, frames(first, start=100) + frames(second, start=40000))
    rec.stop("hangup")
    assert rec.resyncs == 1 and rec.lost == 0
    assert np.array_equal(rec.result().pcm, heard(np.concatenate([first, second])))  # type: ignore[union-attr]


def test_too_short_is_discarded():
    rec = Recorder("PCMU")
    feed_all(rec, frames(np.concatenate([silence(0.5), tone(0.9)])))
    rec.stop("hangup")
    result = rec.result()
    assert isinstance(result, TooShort)
    assert result.reason == "hangup" and result.voiced_seconds == pytest.approx(0.9)


def test_nothing_said_stops_on_silence_and_is_too_short():
    rec = Recorder("PCMA")
    results = feed_all(rec, frames(silence(4.0), "PCMA"))
    assert results.index("silence") == 149
    assert rec.result() == TooShort("silence", 0.0)


def test_the_silence_level_is_a_threshold():
    quiet, audible = tone(2.0, dbfs=-50.0), tone(2.0, dbfs=-40.0)
    rec = Recorder("PCMU", silence_seconds=1.5)
    assert feed_all(rec, frames(quiet))[74] == "silence"
    rec = Recorder("PCMU", silence_seconds=1.5)
    assert set(feed_all(rec, frames(audible))) == {None}


def test_min_seconds_counts_voiced_audio_only():
    rec = Recorder("PCMU", min_seconds=2.0)
    feed_all(rec, frames(np.concatenate([tone(1.0), silence(2.0), tone(0.9)])))
    rec.stop("digit")
    assert isinstance(rec.result(), TooShort)


def test_result_needs_a_stop():
    rec = Recorder("PCMU")
    feed_all(rec, frames(tone(1.0)))
    with pytest.raises(RuntimeError, match="still recording"):
        rec.result()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_seconds": 0},
        {"silence_seconds": -1},
        {"silence_dbfs": 3},
        {"min_seconds": 200},
        {"reorder_packets": 0},
        {"reorder_packets": 300, "max_gap_packets": 250},
    ],
)
def test_bad_limits_are_refused(kwargs):
    with pytest.raises(ValueError):
        Recorder("PCMU", **kwargs)


def test_bad_codec_and_input_are_refused():
    with pytest.raises(ValueError):
        Recorder("G722")
    rec = Recorder("pcmu")
    assert rec.codec == "PCMU"
    with pytest.raises(ValueError):
        rec.feed(70000, b"\xff")
    with pytest.raises(ValueError):
        rec.stop("bored")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        rec.stop("digit", drop_seconds=-1)
    assert rec.feed(1, b"") is None and rec.packets == 0


def test_recorder_is_pure():
    source = Path(__file__).resolve().parents[1] / "ivr" / "media" / "recorder.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "dataclasses", "typing", "numpy", "ivr"}
