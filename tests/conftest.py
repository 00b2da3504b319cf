"""Shared fixtures: a real `ivr serve` process on loopback, and real peers (SIPp)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ivr.testing.demo_config import demo_config_text, write_config
from ivr.testing.rtp_sink import RtpSink
from ivr.testing.service import RunningService, ServiceError, start_service

REPO = Path(__file__).resolve().parents[1]


def require_binary(name: str, package: str) -> str:
    """The path of a real peer; a missing peer FAILS the test (it never skips)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required (Debian package {package}; scripts/peers installs it)")
    return path


StartIvr = Callable[..., RunningService]


@pytest.fixture
def start_ivr(tmp_path: Path) -> Iterator[StartIvr]:
    """``start_ivr(*flags, clean_log=False, **kwargs)`` runs `ivr serve` in ``tmp_path``
    (arguments as ``start_service``); after the test each one started must exit 0 on
    SIGTERM and, with ``clean_log``, have logged no Traceback."""
    started: list[tuple[RunningService, bool]] = []

    def start(*flags: str, clean_log: bool = False, **kwargs: object) -> RunningService:
        try:
            running = start_service(tmp_path, *flags, **kwargs)  # type: ignore[arg-type]
        except ServiceError as exc:
            pytest.fail(str(exc))
        started.append((running, clean_log))
        return running

    yield start
    for running, clean_log in started:
        code = running.stop()
        assert code == 0, f"ivr serve exited {code}:\n{running.log()}"
        if clean_log:
            assert "Traceback" not in running.log(), running.log()


@pytest.fixture
def service(start_ivr: StartIvr) -> RunningService:
    return start_ivr()


@pytest.fixture
def demo_config(tmp_path: Path) -> Path:
    """``tmp_path/ivr.toml``: the demo company, shipped prompts, recordings in ``tmp_path``."""
    return write_config(tmp_path, demo_config_text(tmp_path))


@pytest.fixture
def demo_service(start_ivr: StartIvr, demo_config: Path) -> RunningService:
    return start_ivr(config=demo_config)


@pytest.fixture
def md5_service(start_ivr: StartIvr) -> RunningService:
    """`ivr serve` challenging with MD5 only (baresip 1.0.0, libre 1.1, gives up on a
    challenge set naming any other algorithm), strict digest uri."""
    flags = ["--auth-algorithms", "MD5", "--auth-uri-check", "strict"]
    return start_ivr(*flags, sipp_compatible=False)


@pytest.fixture
def sink() -> Iterator[RtpSink]:
    """An RTP receiver standing in for the phone's RTP port."""
    made = RtpSink()
    yield made
    made.close()


@pytest.fixture
def sipp_binary() -> str:
    return require_binary("sipp", "sip-tester")
