"""benchmarks/register_load.py runs once with tiny bounded parameters (so it never rots)."""

from __future__ import annotations

import pytest

from benchmarks import register_load


@pytest.mark.benchmark
def test_register_load_runs_and_reports(sipp_binary: str, capsys: pytest.CaptureFixture) -> None:
    assert register_load.main(["--rates", "20,40", "--seconds", "1"]) == 0
    out = capsys.readouterr().out
    assert "ivr   rate      20/s" in out
    assert "sipp  rate      20/s" in out
    assert "ivr  highest rate held: 40 authenticated REGISTERs/s" in out
    assert "ratio ivr/sipp: 1.00" in out
