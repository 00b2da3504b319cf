"""The frame player: fragments → 160-byte frames, gaps, padding, skip and stop."""

from __future__ import annotations

import pytest

from ivr.media.player import FRAME_SAMPLES, SILENCE_ROWS, FrameArena, Player

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


# --- the frame arena -------------------------------------------------------------------


def test_arena_keeps_silence_rows_and_shares_one_buffer():
    arena = FrameArena(rows=8)
    assert bytes(arena.frames[SILENCE_ROWS["PCMU"]]) == bytes([U]) * 160
    assert bytes(arena.frames[SILENCE_ROWS["PCMA"]]) == bytes([A]) * 160
    buffer = bytes(range(160)) + b"\x07" * 160
    first, moved = arena.place(buffer)
    again, _ = arena.place(buffer)
    assert again is first and first.refs == 2 and moved == {}
    assert bytes(arena.frames[first.start + 1]) == b"\x07" * 160
    other, _ = arena.place(bytes(bytearray(buffer)))  # equal, another object: own rows
    assert other is not first and other.start == first.start + 2
    with pytest.raises(ValueError, match="not whole 160-byte frames"):
        arena.place(b"\x00" * 100)


def test_arena_compacts_live_regions_and_reports_the_moves():
    arena = FrameArena(rows=6)  # 2 silence rows + 4
    dead, _ = arena.place(b"\x01" * 320)
    live, _ = arena.place(b"\x02" * 320)
    arena.release(dead)
    assert live.start == 4
    big, moved = arena.place(b"\x03" * 480)  # no room: pack the live region, then grow
    assert moved == {id(live): -2} and live.start == 2
    assert bytes(arena.frames[2:4].tobytes()) == b"\x02" * 320
    assert bytes(arena.frames[big.start : big.start + 3].tobytes()) == b"\x03" * 480
    assert len(arena.frames) >= 2 * (2 + 2 + 3)
    assert arena.live_rows == 5
    arena.release(big)  # the newest region: its rows are reused at once
    assert arena.top == big.start


class _Owner:
    def __init__(self) -> None:
        self.position = 0
        self.stops = 0

    def _player_position(self) -> int:
        return self.position

    def _player_seek(self, position: int) -> None:
        self.position = position

    def _player_stopped(self) -> None:
        self.stops += 1


def test_an_owner_keeps_the_position_while_attached():
    player = Player([bytes([i]) * 160 for i in range(5)], codec="PCMU")
    owner = _Owner()
    player._attach(owner)
    owner.position = 3
    assert player.position == 3 and player.remaining_frames == 2
    assert player.next_frame() == b"\x03" * 160 and owner.position == 4
    with pytest.raises(RuntimeError, match="another stream"):
        player._attach(_Owner())
    player.stop()
    assert owner.stops == 1
    player._detach(4)
    assert player.position == 4 and player.done
