"""SIPp phones of the demo company: registered UAS devices, calls and feature codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ivr.testing.pcap import RtpStream
from ivr.testing.rtp_sink import RtpSink
from ivr.testing.service import RunningService
from ivr.testing.sipp import Sipp, SippProcess, SippResult, free_port

DOMAIN = "ivr.local"
ANNA = ("1001", "anna-desk-1001")
TONE_FRAMES = 30  # 0.6 s of tone in each capture
DEVICE_TONE = (440.0, 0xDE5C)  # (Hz, SSRC) of what a device's microphone sends
CALLER_TONE = (1000.0, 0xCA11)


def auth_row(user: str, password: str, domain: str = DOMAIN) -> list[str]:
    """SIPp's CSV fields: user, the whole authentication keyword, domain."""
    return [user, f"[authentication username={user} password={password}]", domain]


def next_workdir(tmp: Path, prefix: str) -> Path:
    """``tmp/prefix-N``, N counting the ones already there."""
    return tmp / f"{prefix}-{len(list(tmp.glob(f'{prefix}-*')))}"


def tone_capture(path: Path, hz: float, ssrc: int, frames: int = TONE_FRAMES) -> Path:
    """A capture of ``frames`` 20 ms PCMU frames of a tone (a phone's microphone)."""
    t = np.arange(frames * 160) / 8000
    pcm = (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return RtpStream(codec="PCMU", ssrc=ssrc).pcm(pcm).write(path)


def register(
    service: RunningService, account: tuple[str, str], contact_port: int, workdir: Path
) -> None:
    """A SIPp REGISTER (digest auth) naming ``127.0.0.1:contact_port`` as the Contact."""
    registered = Sipp(
        scenario="b2b_register.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[auth_row(*account)],
        keys={"contact_port": str(contact_port)},
        timeout=10,
        workdir=workdir,
    )()
    assert registered.returncode == 0 and registered.successful == 1, registered.explain()


def device(
    service: RunningService,
    account: tuple[str, str],
    scenario: str,
    rtp_port: int,
    workdir: Path,
) -> SippProcess:
    """A SIPp UAS running ``scenario`` as one of the user's devices, registered at its
    address; it sends its tone capture to ``rtp_port``."""
    user = account[0]
    workdir.mkdir()
    tone_capture(workdir / "device.pcap", *DEVICE_TONE)
    port = free_port()
    uas = Sipp(
        scenario=scenario,
        local_port=port,
        keys={"user": user, "rtp_port": str(rtp_port)},
        timeout=30,
        workdir=workdir,
    ).start()
    register(service, account, port, workdir / "register")
    return uas


def place_call(
    service: RunningService,
    scenario: str,
    rtp_port: int,
    workdir: Path,
    callee: str,
    *,
    caller: tuple[str, str] = ANNA,
    **keys: str,
) -> SippResult:
    """``caller``'s desk phone calls ``callee`` (sending its tone capture, media to
    ``rtp_port``); waits until the call is over."""
    workdir.mkdir()
    tone_capture(workdir / "caller.pcap", *CALLER_TONE)
    return Sipp(
        scenario=scenario,
        remote=(service.host, service.sip_port),
        inf_rows=[auth_row(*caller)],
        keys={"callee": callee, "rtp_port": str(rtp_port), **keys},
        timeout=40,
        workdir=workdir,
    )()


def dial_code(
    service: RunningService,
    code: str,
    account: tuple[str, str],
    rtp_port: int,
    workdir: Path | None = None,
    timeout: float = 30,
) -> SippResult:
    """``account`` dials a feature code (``feature_code.xml``); the server answers,
    confirms to ``rtp_port`` and hangs up. The result is not checked here."""
    return Sipp(
        scenario="feature_code.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[auth_row(*account)],
        keys={"code": code, "rtp_port": str(rtp_port)},
        timeout=timeout,
        workdir=workdir,
    )()


def feature_code(
    service: RunningService, code: str, account: tuple[str, str], workdir: Path | None = None
) -> RtpSink:
    """``account`` dials ``code`` and the call must succeed; returns what they heard."""
    heard = RtpSink()
    try:
        result = dial_code(service, code, account, heard.port, workdir)
    finally:
        heard.close()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    return heard
