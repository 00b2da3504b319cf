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
    # phone self-service menus and the PIN guard
    "pin_guard.py",
    "mailbox_menu.py",
    "record_menu.py",
    "prompt_menu.py",
    # the trunk, the live directory's snapshot logic, call detail records
    "trunk.py",
    "directory.py",
    "call_records.py",
    "metrics.py",
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
    missing = [rel for rel in PURE_MODULES if not (ROOT / rel).exists()]
    assert not missing, f"listed as pure but gone: {missing}"


def _module_file(name: str) -> Path | None:
    """The file of an ``ivr`` module (or of the module an imported name lives in)."""
    base = ROOT.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _reachable(path: Path) -> dict[str, str]:
    """Every name imported by ``path`` and the ``ivr`` modules it imports, transitively:
    imported name -> the module importing it."""
    found: dict[str, str] = {}
    todo, seen = [path], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        who = str(current.relative_to(ROOT.parent))
        for name in _imports(current):
            found.setdefault(name, who)
        for name in _ivr_modules(current):
            target = _module_file(name)
            if target is not None:
                todo.append(target)
    return found


def _ivr_modules(path: Path) -> set[str]:
    """The ``ivr`` modules ``path`` imports ("from ivr.media import phrases" is
    ``ivr.media`` and, being a module, ``ivr.media.phrases``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "ivr")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.split(".")[0] == "ivr"
        ):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_reach_no_io_through_other_modules(path: Path) -> None:
    bad = {
        f"{name} (by {who})"
        for name, who in _reachable(path).items()
        if name.split(".")[0] in IO_LIBRARIES or name in ("ivr.app", "time")
    }
    assert not bad, f"{path.relative_to(ROOT)} reaches {sorted(bad)}"


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
