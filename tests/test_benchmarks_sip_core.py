"""benchmarks/sip_core.py runs once with tiny parameters (so it never rots).

Each exchange asserts its own responses (401 then 200 for REGISTER, 200 for OPTIONS,
407/100/200/200 for the INVITE setup), so a run that completes went through the real
registration service, digest auth and transactions.
"""

from __future__ import annotations

import gc
import re

import pytest

from benchmarks import sip_core


@pytest.mark.benchmark
def test_sip_core_benchmark_runs_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    thresholds = gc.get_threshold()
    assert sip_core.main(["--count", "30", "--warmup", "5"]) == 0
    assert gc.get_threshold() == thresholds, "the benchmark must restore the collector"
    out = capsys.readouterr().out
    for name in ("REGISTER pair", "OPTIONS", "INVITE setup"):
        found = re.search(rf"^{name} +([0-9.]+) µs per exchange .*\[30 measured\]$", out, re.M)
        assert found is not None, out
        assert float(found.group(1)) > 0


def test_exchanges_see_the_expected_answers() -> None:
    bench = sip_core.build(seed=3)
    assert sip_core.register_pair(bench, 1) > 0
    assert bench.core.handler.registration.registrar.count(bench.clock[0]) == 1
    assert sip_core.options(bench, 2) > 0
    assert sip_core.invite_setup(bench, 3) > 0
    assert bench.sink.timers > 0  # transactions armed their timers through the sink


def test_rejects_unbounded_parameters() -> None:
    with pytest.raises(SystemExit):
        sip_core.main(["--count", "0"])
