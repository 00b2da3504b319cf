"""Recordings made from the phone: greetings per profile, recorded names, system prompts.

Files (8 kHz mono 16-bit WAV, written atomically) under the recordings directory::

    greetings/<extension>/<profile>.wav     the redirect greeting callers hear
    names/<extension>/name.wav              the name said instead of the extension digits

(the admin API serves the same files). A take is trimmed of leading and trailing
silence and levelled like the shipped prompts (:func:`ivr.prompt_import.level`), and
refused when what is left is shorter than the configured minimum. System prompts go
through :class:`ivr.prompt_import.CustomPrompts` (the previous custom version is
kept as ``<name>.previous.wav``). Blocking (disk, CPU): run it off the reactor
(calls read what they play with :func:`recorded` in a thread while the 200 goes out).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from ivr.media.prompts import load_wav
from ivr.prompt_import import CustomPrompts, ImportLimits, Rejected, import_prompt
from ivr.record_menu import Greeting, Name, RecordingTarget, SystemPrompt
from ivr.store.files import atomic_write

__all__ = [
    "RATE",
    "Recorded",
    "TooShort",
    "delete",
    "greeting",
    "level_take",
    "load",
    "name",
    "path_of",
    "recorded",
    "save",
    "user_dirs",
]

RATE = 8000
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
PCM = npt.NDArray[np.int16]


class TooShort(ValueError):
    """The take is shorter than the minimum once its silence is cut (or is silent)."""


def _safe(part: str, what: str) -> str:
    if _SAFE.fullmatch(part) is None:
        raise ValueError(f"invalid {what} {part!r}")
    return part


def path_of(root: Path, target: Greeting | Name) -> Path:
    """Where ``target``'s recording lives under the recordings directory ``root``."""
    if isinstance(target, Greeting):
        ext, profile = _safe(target.extension, "extension"), _safe(target.profile, "profile")
        return Path(root) / "greetings" / ext / f"{profile}.wav"
    return Path(root) / "names" / _safe(target.extension, "extension") / "name.wav"


def user_dirs(root: Path, extension: str) -> dict[str, Path]:
    """The directories holding ``extension``'s recordings, by kind (removed with the user)."""
    ext = _safe(extension, "extension")
    return {"greetings": Path(root) / "greetings" / ext, "name": Path(root) / "names" / ext}


def _wav(pcm: PCM) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, pcm, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def level_take(pcm: PCM, min_seconds: float) -> PCM:
    """Trim and level a take like the shipped prompts; :class:`TooShort` when less than
    ``min_seconds`` remain (or it is silent)."""
    samples = np.asarray(pcm, dtype=np.int16)
    if len(samples) < round(min_seconds * RATE):
        raise TooShort(f"{len(samples) / RATE:.2f} s recorded")
    try:
        imported = import_prompt(_wav(samples), ImportLimits(silence_dbfs=-50.0))
    except Rejected as exc:
        raise TooShort(exc.reason) from None
    if imported.duration < min_seconds:
        raise TooShort(f"{imported.duration:.2f} s of sound")
    return imported.pcm


def save(
    root: Path,
    target: RecordingTarget,
    pcm: PCM,
    *,
    custom_prompts: CustomPrompts | None = None,
    by: str = "",
    at: datetime | None = None,
) -> Path:
    """Store an already levelled take for ``target`` atomically; returns its path."""
    if isinstance(target, SystemPrompt):
        if custom_prompts is None:
            raise ValueError("system prompts need the custom prompt directory")
        return _save_prompt(custom_prompts, target, pcm, by, at or datetime.now().astimezone())
    path = path_of(root, target)
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    atomic_write(path, _wav(np.asarray(pcm, dtype=np.int16)))
    return path


def _save_prompt(
    prompts: CustomPrompts, target: SystemPrompt, pcm: PCM, by: str, at: datetime
) -> Path:
    """Replace a system prompt (levelled by the import pipeline), keeping the previous
    custom version beside it."""
    imported = import_prompt(_wav(np.asarray(pcm, dtype=np.int16)))
    current = prompts.find(target.lang, target.name)
    if current is not None and current.source == "custom":
        keep = current.path.with_name(f"{target.name}.previous.wav")
        tmp = keep.with_name(f".{keep.name}.tmp")
        shutil.copyfile(current.path, tmp)
        os.replace(tmp, keep)
    record, _created = prompts.save(target.lang, target.name, imported, uploaded_by=by, at=at)
    return record.path


def delete(root: Path, target: Greeting | Name) -> bool:
    """Remove ``target``'s recording (the composed phrase is used again)."""
    try:
        path_of(root, target).unlink()
    except FileNotFoundError:
        return False
    return True


def load(root: Path, target: Greeting | Name) -> PCM | None:
    """The stored recording as 8 kHz int16, or None when there is none."""
    path = path_of(root, target)
    with contextlib.suppress(FileNotFoundError):
        if path.is_file():
            return load_wav(path)
    return None


def greeting(root: Path, extension: str, profile: str) -> PCM | None:
    """The user's greeting for ``profile``, or None."""
    return load(root, Greeting(extension=extension, profile=profile))


def name(root: Path, extension: str) -> PCM | None:
    """The user's recorded name, or None."""
    return load(root, Name(extension=extension))


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a call to ``extension`` may play: the greeting for the profile and the name."""

    greeting: PCM | None = None
    name: PCM | None = None


def recorded(root: Path, extension: str, profile: str | None = None) -> Recorded:
    """Read ``extension``'s recorded name and (with ``profile``) its greeting (blocking)."""
    return Recorded(
        greeting=None if profile is None else greeting(root, extension, profile),
        name=name(root, extension),
    )
