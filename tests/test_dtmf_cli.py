"""`ivr dtmf detect` and `ivr dtmf generate`, through a parser built the way ivr.cli builds it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr.dtmf import cli, generate


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ivr")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_generate_then_detect_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = tmp_path / "code.wav"
    assert _run(["dtmf", "generate", "*23*4#", "-o", str(wav), "--tone-ms", "60"]) == 0
    samples, rate = soundfile.read(wav, dtype="int16")
    assert rate == 8000 and samples.dtype == np.int16
    assert _run(["dtmf", "detect", str(wav), "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["file"] == str(wav)
    assert "".join(d["digit"] for d in line["digits"]) == "*23*4#"
    first = line["digits"][0]
    assert abs(first["start"] - 0.1) < 0.01 and abs(first["end"] - 0.16) < 0.01


def test_generate_options(tmp_path: Path) -> None:
    wav = tmp_path / "odd.wav"
    argv = ["dtmf", "generate", "a1", "-o", str(wav), "--rate", "16000", "--level", "-20"]
    argv += ["--twist", "3", "--offset", "1.0", "--gap-ms", "50", "--lead-ms", "0"]
    assert _run(argv) == 0
    samples, rate = soundfile.read(wav, dtype="int16")
    assert rate == 16000 and len(samples) == 16 * (100 + 50 + 100 + 100)
    expected = generate(
        "A1",
        rate=16000,
        level_dbm0=-20,
        twist_db=3,
        freq_offset_pct=1.0,
        gap_ms=50,
        lead_ms=0,
        trail_ms=100,
    )
    assert np.array_equal(samples, expected)


def test_detect_reads_other_formats_and_rates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = generate("147", rate=44100, tone_ms=70, gap_ms=70, lead_ms=100, trail_ms=100)
    flac = tmp_path / "stereo.flac"
    soundfile.write(flac, np.stack([x, x // 2], axis=1), 44100)
    silent = tmp_path / "silence.wav"
    soundfile.write(silent, np.zeros(8000, dtype=np.int16), 8000)
    assert _run(["dtmf", "detect", str(flac), str(silent)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{flac}: 147  [1 0.") and out[1] == f"{silent}: (no digits)"


def test_a_bad_file_is_one_line_on_stderr_and_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.wav"
    soundfile.write(good, generate("9", lead_ms=100, trail_ms=100), 8000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file")
    missing = tmp_path / "missing.wav"
    assert _run(["dtmf", "detect", "--json", str(junk), str(good), str(missing)]) == 1
    captured = capsys.readouterr()
    errors = captured.err.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"ivr dtmf detect: {junk}: ")
    assert errors[1].startswith(f"ivr dtmf detect: {missing}: ")
    assert [json.loads(line)["file"] for line in captured.out.splitlines()] == [str(good)]


def test_generate_reports_an_unwritable_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "no-such-dir" / "x.wav"
    assert _run(["dtmf", "generate", "1", "-o", str(target)]) == 1
    assert capsys.readouterr().err.startswith(f"ivr dtmf generate: {target}: ")


def test_bad_digits_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _run(["dtmf", "generate", "12E", "-o", "x.wav"])
    assert exit_.value.code == 2 and "DIGITS must be" in capsys.readouterr().err


def test_dtmf_without_a_command_shows_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["dtmf"]) == 2
    assert "detect or generate" in capsys.readouterr().err
