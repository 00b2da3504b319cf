"""The media-engine benchmark runs once, with tiny bounded parameters.

A real MediaEngine child on the real reactor sends to the real capture process over
loopback. The output's structure is checked, and what any machine must manage at this
size: every stream seen, the packet rate of N streams at 50 frames/s, nothing lost.
"""

from __future__ import annotations

import json
import re

import pytest

from benchmarks import media_engine

_LINE = re.compile(
    r"^N +(?P<n>\d+) +(?P<pps>\d+) pkt/s +sender cpu +(?P<cpu>[\d.]+)% +"
    r"(?P<us>[\d.]+) µs/packet +waited +\d+ ms for a CPU +"
    r"tick p50 (?P<tick>[\d.]+) p99 [\d.]+ ms, started late p99 -?[\d.]+ ms +"
    r"receiver cpu +[\d.]+% +"
    r"jitter p50 (?P<p50>[\d.]+) p99 (?P<p99>[\d.]+) max [\d.]+ ms +"
    r"lost (?P<lost>\d+) +skipped (?P<skipped>\d+) \(engine (?P<engine>\d+)\) +"
    r"send errors (?P<errors>\d+) +streams seen (?P<seen>\d+) +(?P<held>held|NOT held)$"
)


@pytest.mark.benchmark
def test_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--streams", "4,12", "--seconds", "1", "--settle", "0.2", "--full-ramp", "--json"]
    assert media_engine.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("media engine alone:") and "p99 jitter < 5 ms" in lines[0]
    steps = [m for line in lines[1:3] if (m := _LINE.match(line)) is not None]
    assert [int(m["n"]) for m in steps] == [4, 12], lines
    for m in steps:
        n = int(m["n"])
        assert int(m["seen"]) == n
        assert 0.8 * 50 * n <= int(m["pps"]) <= 1.2 * 50 * n  # 20 ms frames
        assert int(m["lost"]) == 0 and int(m["errors"]) == 0
        assert float(m["us"]) > 0 and float(m["tick"]) > 0
        assert float(m["p50"]) <= float(m["p99"])
    held = [int(m["n"]) for m in steps if m["held"] == "held"]
    assert lines[3] == f"largest N held: {max(held, default=0)}"
    result = json.loads(lines[4])
    assert [s["streams"] for s in result["steps"]] == [4, 12]
    assert result["largest_held"] == max(held, default=0)
    assert all(s["sent"] >= 0.8 * 50 * s["streams"] for s in result["steps"])


@pytest.mark.parametrize(
    "argv",
    [["--streams", "0"], ["--streams", "100000"], ["--seconds", "600"], ["--max-burst", "0"]],
)
def test_benchmark_rejects_unbounded_parameters(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        media_engine.main(argv)
