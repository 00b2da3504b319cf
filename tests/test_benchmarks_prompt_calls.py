"""The prompt-calls benchmark runs end to end once, with tiny bounded parameters.

Real SIPp, a real `ivr serve` with the generated config and long greeting, and the real
capture process: a missing SIPp fails the test (it never skips). The output's shape is
checked, and that the tiny step held: every call set up, all playing at once, media for
the whole hold (so the callers heard the redirect and then the long greeting, not a
server hang-up).
"""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

import pytest

from benchmarks import prompt_calls
from ivr.config import load_config
from ivr.testing.service import DEFAULT_CONFIG


def _run_tiny(capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, Any]]:
    argv = ["--calls", "3", "--rate", "6", "--window", "6", "--users", "4", "--json"]
    assert prompt_calls.main(argv) == 0
    out = capsys.readouterr().out
    return out, json.loads(out.splitlines()[-1])


@pytest.mark.benchmark
@pytest.mark.e2e
def test_benchmark_smoke(sipp_binary: str, capsys: pytest.CaptureFixture[str]) -> None:
    out, result = _run_tiny(capsys)
    (step,) = result["steps"]
    if not step["held"] and step["ok"] == 3 and step["media"]["lost"] == 0:
        # p99 jitter of ~1,000 intervals on a machine shared with other test runs: a
        # few stalls of the server's process push it over 5 ms; once more, then it counts
        out, result = _run_tiny(capsys)
        (step,) = result["steps"]
    lines = out.splitlines()
    assert lines[0].startswith("prompt-playing calls through SIP") and "loadavg" in lines[0]
    (line,) = [line for line in lines if line.startswith("N ")]
    for part in ("set up", "ok 3 failed 0", "peak simultaneous", "all playing: lost 0"):
        assert part in line
    assert "whole step: lost" in line and "jitter p50" in line and "µs/packet" in line
    assert "server cpu" in line and "loadavg" in line
    assert line.endswith(" held") and "NOT held" not in line
    assert "largest N held (simultaneous prompt-playing calls set up through SIP): 3" in out
    assert result["largest_held"] == 3
    assert step["held"] and step["calls"] == 3 and step["ok"] == 3 and step["failed"] == 0
    assert step["hold_s"] == pytest.approx(3 / 6 + 6)
    media = step["media"]
    assert media["streams"] == 3 and media["peak_streams"] == 3
    assert media["lost"] == 0 and media["skipped"] == 0 and media["p99_ms"] < 5.0
    # 50 packets/s for the whole hold: the greeting outlasts it and nobody hung up early
    assert media["packets"] >= 0.9 * 3 * step["hold_s"] * prompt_calls.PACKETS_PER_S
    assert step["setups_per_s"] > 0 and step["us_per_packet"] > 0
    assert step["plateau_s"] > 0 and step["late_byes"] >= 0 and step["reasons"] == []
    whole = step["whole"]  # the same capture, every packet pair counted
    assert whole["peak_streams"] == 3 and whole["packets"] == media["packets"]
    assert whole["lost"] == 0 and whole["p99_ms"] >= 0 and whole["max_ms"] >= media["max_ms"]


def test_generated_config_puts_every_user_in_lunch(tmp_path: Path) -> None:
    config = load_config(prompt_calls.write_config(DEFAULT_CONFIG, 3, tmp_path))
    assert config.recordings_dir == tmp_path / "recordings"
    for ext in ("30000", "30001", "30002"):
        user = config.user(ext)
        assert user is not None and [d.username for d in user.devices] == [ext]
        (schedule,) = user.schedules
        assert schedule.profile == "lunch" and len(schedule.when.days) == 7
    rows = prompt_calls.call_rows(3, config.sip.domain)
    assert [(row[0], row[3]) for row in rows] == [
        ("30000", "30001"),
        ("30001", "30002"),
        ("30002", "30000"),
    ]
    assert rows[0][1] == "[authentication username=30000 password=prompt-30000]"


def test_long_greeting_is_at_least_as_long_as_asked(tmp_path: Path) -> None:
    lengths = prompt_calls.write_greeting(DEFAULT_CONFIG.parent.parent / "prompts", tmp_path, 12)
    for lang in prompt_calls.LANGS:
        with wave.open(str(tmp_path / lang / "leave_message.wav"), "rb") as w:
            seconds = w.getnframes() / w.getframerate()
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert 12 <= seconds < 30 and seconds == pytest.approx(lengths[lang])


def test_sipp_events_tell_failures_from_late_byes_and_planned_timeouts() -> None:
    stamp = "2026-11-26\t03:24:4{}.979743\t1795663480.979743: "
    errors = (
        stamp.format(0)
        + "Dead call 2-1@127.0.0.1 (successful), received 'BYE sip:x SIP/2.0\nVia: x\n'\n"
        + stamp.format(1)
        + "Aborting call on unexpected message for Call-Id '1-2@x': while expecting '200' "
        "(index 8), received 'SIP/2.0 486 Busy Here\nVia: x'\n"
        + stamp.format(2)
        + "Call-Id: 1-3@127.0.0.1, receive timeout on message prompt-playing call:13, "
        "jumping to label 15"
        + stamp.format(3)
        + "Aborting call on unexpected message for Call-Id '1-4@x': while expecting '200' "
        "(index 8), received 'SIP/2.0 486 Busy Here\nVia: x'\n"
    )
    reasons, late = prompt_calls.sipp_events(errors)
    assert reasons == [("486 Busy Here", 2)] and late == 1


def test_benchmark_rejects_unbounded_parameters() -> None:
    for argv in (
        ["--calls", "0"],
        ["--calls", "20000"],
        ["--rate", "0"],
        ["--window", "600"],
        ["--users", "1"],
        ["--calls", "3000", "--rtp-ports", "20000-21000"],
        ["--calls", "9000", "--rate", "10"],
        ["--nice", "-30"],
    ):
        with pytest.raises(SystemExit):
            prompt_calls.main(argv)
