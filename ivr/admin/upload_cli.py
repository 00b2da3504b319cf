"""``ivr prompts import DIR``: upload a folder of prompts to a running service.

``DIR/<lang>/<name>.<ext>`` (``sv``, ``en``), or ``DIR/<name>.<ext>`` with ``--lang``;
any format the service imports (WAV, FLAC, OGG, AIFF). Each file is one
``POST /api/v1/prompts/{lang}/{name}``; a progress bar runs on stderr, a summary
follows. Exit 0 when every file was stored, 1 when some were rejected, 2 on an error
that stops the run (no token, service unreachable, token refused).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ivr.config import load_config
from ivr.prompt_import import check_name
from ivr.routing.model import LANGUAGES

TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".aif": "audio/aiff",
    ".aiff": "audio/aiff",
}


class Fatal(Exception):
    """Stops the whole run (printed as one line)."""


@dataclass(frozen=True, slots=True)
class Upload:
    lang: str
    name: str
    path: Path


def register(subparsers: Any) -> None:
    prompts = subparsers.add_parser("prompts", help="system prompts")
    sub = prompts.add_subparsers(dest="prompts_command", required=True, metavar="COMMAND")
    upload = sub.add_parser("import", help="upload a folder of prompts over the HTTP API")
    upload.add_argument("directory", type=Path, metavar="DIR")
    upload.add_argument("--url", help="the service, e.g. http://127.0.0.1:8080 (default: config)")
    upload.add_argument("--token", help="an admin bearer token (default: $IVR_TOKEN)")
    upload.add_argument("--lang", choices=LANGUAGES, help="language of files directly in DIR")
    upload.set_defaults(func=cmd_import)


def find(directory: Path, lang: str | None) -> tuple[list[Upload], list[str]]:
    """The files to upload, and why others are skipped."""
    if not directory.is_dir():
        raise Fatal(f"{directory} is not a directory")
    found: list[Upload] = []
    skipped: list[str] = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        relative = path.relative_to(directory)
        if path.suffix.lower() not in TYPES:
            skipped.append(f"{relative}: not an audio file name ({', '.join(TYPES)})")
            continue
        file_lang = relative.parts[0] if len(relative.parts) == 2 else lang
        if len(relative.parts) > 2 or file_lang is None:
            skipped.append(f"{relative}: put it in {directory}/<lang>/ or pass --lang")
            continue
        errors = check_name(file_lang, path.stem, LANGUAGES)
        if errors:
            skipped.append(f"{relative}: " + "; ".join(f"{k} {v}" for k, v in errors.items()))
            continue
        found.append(Upload(file_lang, path.stem, path))
    return found, skipped


def upload(base: str, token: str, item: Upload, timeout: float = 120.0) -> tuple[int, Any]:
    url = f"{base.rstrip('/')}/api/v1/prompts/{item.lang}/{item.name}"
    request = urllib.request.Request(url, data=item.path.read_bytes(), method="POST")
    request.add_header("Content-Type", TYPES[item.path.suffix.lower()])
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"null")
        except ValueError:
            body = None
        if exc.code in (401, 403, 429):
            reason = body.get("error") if isinstance(body, dict) else exc.reason
            raise Fatal(f"{url}: {exc.code} {reason}") from None
        return exc.code, body
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Fatal(f"cannot reach {base}: {reason}") from None


def _why(body: Any) -> str:
    if isinstance(body, dict):
        fields = body.get("fields")
        if isinstance(fields, dict) and fields:
            return "; ".join(f"{k}: {v}" for k, v in fields.items())
        return str(body.get("error", body))
    return str(body)


def cmd_import(args: argparse.Namespace) -> int:
    """``ivr prompts import DIR``."""
    try:
        return _run(args)
    except Fatal as exc:
        print(f"ivr: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("IVR_TOKEN")
    if not token:
        raise Fatal("an admin token is needed: --token or $IVR_TOKEN (ivr token create --admin)")
    base = args.url
    if base is None:
        http = load_config(args.config).http
        base = f"http://{http.host}:{http.port}"
    items, skipped = find(args.directory, args.lang)
    if not items:
        raise Fatal(f"no audio files to upload in {args.directory}")
    created = replaced = 0
    rejected: list[str] = list(skipped)
    bar = tqdm(items, unit="file", file=sys.stderr, disable=None)
    for item in bar:
        bar.set_postfix_str(f"{item.lang}/{item.name}")
        status, body = upload(base, token, item)
        if status == 201:
            created += 1
        elif status == 200:
            replaced += 1
        else:
            rejected.append(f"{item.path}: {status} {_why(body)}")
    bar.close()
    for line in rejected:
        print(f"  rejected {line}", file=sys.stderr)
    print(
        f"{created + replaced} of {len(items) + len(skipped)} prompts stored "
        f"({created} new, {replaced} replaced), {len(rejected)} rejected"
    )
    return 1 if rejected else 0
