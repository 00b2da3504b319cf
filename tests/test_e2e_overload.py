"""End to end: a starved `ivr serve` refuses new calls with 503 + Retry-After, then recovers.

The service is starved of CPU for real: SIGSTOP for half a second, SIGCONT for a moment,
again and again, as a host with no CPU to spare would do to it. Its reactor then runs
its ticks late; after three late ticks in a row new INVITEs get ``503 Overloaded`` with
``Retry-After`` before any digest work, ``/health`` says so, and ``/metrics`` counts the
refusals. Once it runs on time again (a second of calm ticks) calls go through.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from ivr.testing import devices
from ivr.testing.api import health, metric
from ivr.testing.devices import ANNA, CALLER_TONE, auth_row, next_workdir, tone_capture
from ivr.testing.polling import poll
from ivr.testing.rtp_sink import RtpSink
from ivr.testing.service import RunningService
from ivr.testing.sip_trace import header, received
from ivr.testing.sipp import Sipp

pytestmark = pytest.mark.e2e


def starve(service: RunningService, seconds: float) -> None:
    """Stop and continue the service in turns (0.5 s stopped, 30 ms running)."""
    pid = service.process.pid
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.5)
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.03)


def test_a_starved_service_sheds_new_calls_with_503_and_recovers(
    demo_service: RunningService, sipp_binary: str, sink: RtpSink, tmp_path: Path
) -> None:
    service = demo_service
    assert health(service)["overloaded"] is False
    starve(service, 2.0)  # at least three late ticks in a row: overloaded now
    workdir = next_workdir(tmp_path, "caller")
    workdir.mkdir()
    tone_capture(workdir / "caller.pcap", *CALLER_TONE)
    caller = Sipp(
        scenario="call_overloaded.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[auth_row(*ANNA)],
        keys={"callee": "1002", "rtp_port": str(sink.port)},
        timeout=30,
        workdir=workdir,
    ).start()
    starve(service, 1.5)  # still starved while the INVITE arrives
    result = caller.wait()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    refusal = received(result, "SIP/2.0 503")[0]  # retransmitted INVITEs: the same 503
    assert refusal.startswith("SIP/2.0 503 Overloaded")
    assert int(header(refusal, "Retry-After")) > 0
    assert not received(result, "SIP/2.0 407"), "shed before any digest work"

    assert poll(lambda: health(service)["overloaded"] is False, 10.0), "never recovered"
    assert metric(service, "ivr_calls_total", "outcome").get("overloaded", 0) >= 1
    heard = devices.feature_code(service, "*#23%23", ANNA, next_workdir(tmp_path, "code"))
    assert heard.packets, "a call after the recovery is served"
