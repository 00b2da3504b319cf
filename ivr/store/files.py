"""Crash-safe file replacement (for recordings and prompts). Blocking: run off the reactor."""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["atomic_write"]


def _fsync_dir(directory: str) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except (PermissionError, IsADirectoryError):  # platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o640) -> None:
    """Replace ``path`` with ``data`` so that, after a crash, it holds the old or the new
    content in full, never a mix: temp file in the same directory, fsync, rename, fsync
    of the directory. ``mode`` sets the new file's permissions."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
