"""atomic_write: whole old or whole new content, never a temp file left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ivr.store import files
from ivr.store.files import atomic_write


def test_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "greeting.wav"
    atomic_write(target, b"first")
    assert target.read_bytes() == b"first"
    atomic_write(str(target), b"second, longer content")
    assert target.read_bytes() == b"second, longer content"
    assert os.listdir(tmp_path) == ["greeting.wav"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_mode_is_applied(tmp_path: Path) -> None:
    target = tmp_path / "x"
    atomic_write(target, b"", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b""


def test_failure_keeps_old_content_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "msg.wav"
    target.write_bytes(b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["msg.wav"]


def test_file_and_directory_are_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", spy)
    atomic_write(tmp_path / "a", b"data")
    assert synced == ["file", "dir"]


def test_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "nope" / "a", b"x")
