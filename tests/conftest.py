"""Shared fixtures: a real `ivr serve` process on loopback, and real peers (SIPp)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.testing.service import RunningService, ServiceError, start_service

REPO = Path(__file__).resolve().parents[1]


def require_binary(name: str, package: str) -> str:
    """The path of a real peer; a missing peer FAILS the test (it never skips)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required (Debian package {package}; scripts/peers installs it)")
    return path


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    try:
        running = start_service(tmp_path)
    except ServiceError as exc:
        pytest.fail(str(exc))
    yield running
    code = running.stop()
    assert code == 0, f"ivr serve exited {code}:\n{running.log()}"


@pytest.fixture
def sipp_binary() -> str:
    return require_binary("sipp", "sip-tester")
