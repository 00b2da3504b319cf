"""Bounded polling: wait for an observable state instead of sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable


def poll(check: Callable[[], bool], timeout: float = 5.0, interval: float = 0.05) -> bool:
    """True once ``check()`` holds, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
