"""The README's first command, `scripts/serve`, starts the service on the demo config.

Run as a new user would (plus free ports and a temporary database): the script's own
command line must parse, the service must answer /health, and SIGTERM must stop it
cleanly. CLI parsing of `--config` before and after the command is checked too.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ivr import cli

REPO = Path(__file__).resolve().parents[1]


def test_config_is_accepted_before_and_after_the_command() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["serve"]).config == cli.DEFAULT_CONFIG
    assert parser.parse_args(["--config", "a.toml", "serve"]).config == Path("a.toml")
    assert parser.parse_args(["serve", "--config", "b.toml"]).config == Path("b.toml")
    after = parser.parse_args(["--config", "a.toml", "serve", "--config", "b.toml"])
    assert after.config == Path("b.toml")
    assert parser.parse_args(["profile", "show", "1001", "--config", "c.toml"]).config == Path(
        "c.toml"
    )


@pytest.mark.e2e
def test_scripts_serve_runs_the_service_on_the_demo_config(tmp_path: Path) -> None:
    cmd = [
        str(REPO / "scripts" / "serve"),
        "--sip-port",
        "0",
        "--http-port",
        "0",
        "--db",
        str(tmp_path / "ivr.sqlite3"),
        "--rtp-ports",
        "47000-47999",
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 180  # scripts/setup may still have to install
        ready = None
        lines: list[str] = []
        assert proc.stdout is not None
        while ready is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            ready = re.match(r"READY sip=\S+:(\d+) http=\S+:(\d+)", line)
        assert ready is not None, "".join(lines[-20:])
        url = f"http://127.0.0.1:{ready.group(2)}/health"
        with urllib.request.urlopen(url, timeout=5) as answer:
            health = json.loads(answer.read())
        assert health["status"] == "ok" and health["sip"]["port"] == int(ready.group(1))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
