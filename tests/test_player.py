"""The frame player: fragments → 160-byte frames, gaps, padding, skip and stop."""

from __future__ import annotations

import pytest

from ivr.media.player import FRAME_SAMPLES, Player

U = 0xFF  # μ-law silence
A = 0xD5  # A-law silence


def test_frames_in_order_with_the_last_one_padded():
    player = Player([b"\x01" * 200, b"\x02" * 100], codec="PCMU")
    assert (player.total_frames, player.duration) == (2, 0.04)
    frames = list(player)
    assert frames == [b"\x01" * 160, b"\x01" * 40 + b"\x02" * 100 + bytes([U]) * 20]
    assert player.done and not player.stopped
    assert player.next_frame() is None


def test_gap_between_fragments_only():
    player = Player([b"\x01" * 160, b"\x02" * 160], codec="PCMA", gap_ms=20)
    assert list(player) == [b"\x01" * 160, bytes([A]) * 160, b"\x02" * 160]


@pytest.mark.parametrize(
    ("fragments", "gap_ms", "frames"),
    [
        ([], 0, 0),
        ([b""], 100, 0),
        ([b"\x00"], 0, 1),
        ([b"\x00" * 160] * 3, 0, 3),
        ([b"\x00" * 160] * 3, 10, 4),  # 2 gaps of 80 samples
        ([b"\x00" * 8000], 0, 50),
    ],
)
def test_total_length(fragments, gap_ms, frames):
    player = Player(fragments, codec="PCMU", gap_ms=gap_ms)
    assert player.total_frames == frames
    assert player.remaining_frames == frames
    assert len(list(player)) == frames
    assert player.position == frames


def test_empty_player_is_done_at_once():
    player = Player([], codec="PCMU")
    assert player.done and player.next_frame() is None


def test_skip_and_position():
    player = Player([bytes(range(160)) * 5], codec="PCMU")
    assert player.next_frame() == bytes(range(160))
    assert player.skip(2) == 2
    assert player.position == 3 and player.remaining_frames == 2
    assert player.skip(10) == 2
    assert player.done
    with pytest.raises(ValueError):
        player.skip(-1)


def test_stop_is_barge_in():
    player = Player([b"\x00" * 1600], codec="PCMU")
    player.next_frame()
    player.stop()
    assert player.done and player.stopped
    assert player.remaining_frames == 0
    assert player.next_frame() is None
    assert list(player) == []


def test_accepts_bytearray_and_memoryview_and_other_frame_sizes():
    player = Player([bytearray(b"\x03" * 80), memoryview(b"\x04" * 80)], codec="PCMU")
    assert list(player) == [b"\x03" * 80 + b"\x04" * 80]
    ten_ms = Player([b"\x05" * 160], codec="PCMU", frame_samples=80)
    assert ten_ms.total_frames == 2 and ten_ms.duration == 0.02


@pytest.mark.parametrize(
    "kwargs",
    [{"codec": "G722"}, {"codec": "PCMU", "gap_ms": -1}, {"codec": "PCMU", "frame_samples": 0}],
)
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        Player([b"\x00"], **kwargs)


def test_repr_and_constants():
    assert FRAME_SAMPLES == 160
    player = Player([b"\x00" * 320], codec="PCMA")
    player.next_frame()
    assert repr(player) == "<Player PCMA 1/2 frames>"
    player.stop()
    assert repr(player) == "<Player PCMA 1/2 frames stopped>"
