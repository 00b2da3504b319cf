"""The architecture's import rules hold (DESIGN.md: layers and who may import whom)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ivr"

# Modules that must stay pure: stdlib, numpy and (for routing) phonenumbers/holidays only.
PURE_PACKAGES = ("sip", "dtmf", "routing")
PURE_EXCEPTIONS = {"sip/transport.py", "dtmf/cli.py"}
PURE_MODULES = (
    "media/rtp.py",
    "media/g711.py",
    "media/player.py",
    "media/recorder.py",
    "b2bua.py",
    "media/phrases.py",
    "registration.py",
    "flows.py",
)
IO_LIBRARIES = ("twisted", "socket", "sqlite3", "soundfile", "subprocess", "threading", "asyncio")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _pure_files() -> list[Path]:
    files: list[Path] = []
    for package in PURE_PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            if str(path.relative_to(ROOT)) not in PURE_EXCEPTIONS:
                files.append(path)
    files.extend(ROOT / rel for rel in PURE_MODULES if (ROOT / rel).exists())
    return files


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_do_no_io(path: Path) -> None:
    bad = {
        name
        for name in _imports(path)
        if name.split(".")[0] in IO_LIBRARIES or name in ("ivr.app", "time")
    }
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_pure_modules_exist() -> None:
    assert len(_pure_files()) >= 5


@pytest.mark.parametrize(("package", "forbidden"), [("routing", "ivr.sip"), ("sip", "ivr.routing")])
def test_routing_and_sip_do_not_import_each_other(package: str, forbidden: str) -> None:
    for path in sorted((ROOT / package).glob("*.py")):
        offending = {n for n in _imports(path) if n == forbidden or n.startswith(forbidden + ".")}
        assert not offending, f"{path.relative_to(ROOT)} imports {sorted(offending)}"


def test_nothing_imports_the_composition_root() -> None:
    for path in ROOT.rglob("*.py"):
        if path.name in ("app.py", "serve.py"):
            continue
        assert "ivr.app" not in _imports(path), f"{path.relative_to(ROOT)} imports ivr.app"
