"""The shipped demo configuration, adapted for one test's service."""

from __future__ import annotations

from pathlib import Path

from ivr.testing.service import DEFAULT_CONFIG, REPO


def demo_config_text(workdir: Path) -> str:
    """``config/ivr.toml`` with the shipped prompts and recordings in ``workdir``."""
    text = DEFAULT_CONFIG.read_text()
    text = text.replace('prompts_dir = "prompts"', f'prompts_dir = "{REPO / "prompts"}"')
    recordings = workdir / "recordings"
    return text.replace('recordings_dir = "recordings"', f'recordings_dir = "{recordings}"')


def replace_after(text: str, anchor: str, old: str, new: str) -> str:
    """``text`` with the first ``old`` after ``anchor`` replaced by ``new``."""
    at = text.index(anchor)
    cut = text.index(old, at)
    return text[:cut] + new + text[cut + len(old) :]


def write_config(workdir: Path, text: str) -> Path:
    """``text`` as ``workdir/ivr.toml``."""
    config = workdir / "ivr.toml"
    config.write_text(text)
    return config
