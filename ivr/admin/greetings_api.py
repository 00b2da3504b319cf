"""``/api/v1/users/{ext}/greetings``: a user's recorded redirect greeting per profile.

The files are the ones the phone records (``*24*p#``) and calls play:
``<recordings>/greetings/<ext>/<profile>.wav`` (:func:`ivr.greetings.path_of`) with a
``.json`` metadata file beside it. An upload (raw audio or multipart, any format the
prompt import takes) goes through the prompt pipeline (decode, resample to 8 kHz mono,
trim, level) and is written atomically, audio first. Own user or admin (audited with
both identities).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from twisted.internet import defer

from ivr.admin.errors import ApiError, forbidden, not_found
from ivr.admin.http import ApiRequest, Reply, Route
from ivr.admin.uploads import upload_bytes
from ivr.admin.validate import single
from ivr.config import Config
from ivr.greetings import path_of
from ivr.prompt_import import ImportLimits, Rejected, import_prompt
from ivr.record_menu import Greeting
from ivr.routing.state import AuditEntry
from ivr.store.async_store import AsyncStore
from ivr.store.files import atomic_write

WAV_TYPE = "audio/wav"
Blocking = Callable[..., "defer.Deferred[Any]"]


def _meta_path(wav: Path) -> Path:
    return wav.with_suffix(".json")


def _read_meta(wav: Path) -> dict[str, object] | None:
    try:
        value = json.loads(_meta_path(wav).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class GreetingApi:
    """Greetings per user and profile."""

    def __init__(
        self,
        config: Callable[[], Config],
        store: AsyncStore,
        *,
        limits: ImportLimits,
        run_blocking: Blocking,
        now: Callable[[], datetime],
    ) -> None:
        self._config = config
        self.store = store
        self.limits = limits
        self._run = run_blocking
        self._now = now

    def routes(self) -> list[Route]:
        """The table this class answers, under /api/v1."""
        return [
            Route("GET", "/users/{ext}/greetings", self.list),
            Route("GET", "/users/{ext}/greetings/{profile}", self.download),
            Route(
                "PUT",
                "/users/{ext}/greetings/{profile}",
                self.upload,
                max_body=self.limits.max_bytes,
            ),
            Route("DELETE", "/users/{ext}/greetings/{profile}", self.delete),
        ]

    def _target(self, req: ApiRequest, with_profile: bool = True) -> tuple[str, str]:
        single(req.query, frozenset())
        config = self._config()
        ext = req.params["ext"]
        if config.user(ext) is None:
            raise not_found("user", extension=ext)
        if not req.who.may_access(ext):
            raise forbidden(f"only {ext} or an admin may do this")
        profile = req.params.get("profile", "")
        if with_profile and config.rules.get(profile) is None:
            raise not_found("profile", profile=profile)
        return ext, profile

    def _path(self, ext: str, profile: str) -> Path:
        root = Path(self._config().recordings_dir)
        return path_of(root, Greeting(extension=ext, profile=profile))

    def _audit(self, req: ApiRequest, ext: str, action: str, profile: str) -> Any:
        actor = req.who.extension
        entry = AuditEntry(
            at=self._now(),
            actor=actor,
            action=action,
            target_user=ext,
            via="api",
            detail={"profile": profile},
            on_behalf_of=None if actor == ext else ext,
        )
        return self.store.append_audit(entry)

    def _json(self, ext: str, profile: str, meta: dict[str, object] | None) -> dict[str, object]:
        return {"extension": ext, "profile": profile, "meta": meta}

    def list(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """GET /users/{ext}/greetings: the profiles with a recorded greeting."""
        ext, _ = self._target(req, with_profile=False)
        profiles = [p.id for p in self._config().profiles]

        def scan() -> list[dict[str, object]]:
            found = []
            for profile in profiles:
                wav = self._path(ext, profile)
                if wav.is_file():
                    found.append(self._json(ext, profile, _read_meta(wav)))
            return found

        return self._run(scan).addCallback(lambda rows: Reply.json(200, rows))

    def download(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """GET /users/{ext}/greetings/{profile}: the WAV callers hear."""
        ext, profile = self._target(req)
        wav = self._path(ext, profile)

        def missing(failure: Any) -> Any:
            failure.trap(FileNotFoundError, IsADirectoryError)
            raise not_found("greeting", extension=ext, profile=profile)

        d = self._run(wav.read_bytes).addErrback(missing)
        return d.addCallback(lambda data: Reply(200, data, WAV_TYPE))

    def upload(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """PUT /users/{ext}/greetings/{profile}: store a greeting; 201 new, 200 replaced."""
        ext, profile = self._target(req)
        wav = self._path(ext, profile)
        by, at = req.who.extension, self._now()

        def work() -> tuple[dict[str, object], bool]:
            prompt = import_prompt(upload_bytes(req.body, req.content_type), self.limits)
            created = not wav.exists()
            wav.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            meta: dict[str, object] = {
                "uploaded_by": by,
                "uploaded_at": at.isoformat(),
                "via": "api",
                "source": prompt.source.as_json(),
                "duration": round(prompt.duration, 3),
            }
            atomic_write(wav, prompt.wav())
            atomic_write(_meta_path(wav), json.dumps(meta, indent=2).encode("utf-8"))
            return meta, created

        @defer.inlineCallbacks
        def done(saved: tuple[dict[str, object], bool]) -> Any:
            meta, created = saved
            yield self._audit(req, ext, "greeting.store", profile)
            where = f"/api/v1/users/{ext}/greetings/{profile}"
            body = self._json(ext, profile, meta)
            return Reply.json(201 if created else 200, body, (("Location", where),))

        def failed(failure: Any) -> Any:
            if failure.check(Rejected):
                exc: Rejected = failure.value
                raise ApiError(exc.status, "upload rejected", fields={exc.field: exc.reason})
            return failure

        return self._run(work).addCallbacks(done, failed)

    def delete(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """DELETE /users/{ext}/greetings/{profile}: callers hear the composed phrase again."""
        ext, profile = self._target(req)
        wav = self._path(ext, profile)

        def work() -> bool:
            try:
                wav.unlink()
            except FileNotFoundError:
                return False
            with contextlib.suppress(FileNotFoundError):
                _meta_path(wav).unlink()
            return True

        @defer.inlineCallbacks
        def done(gone: bool) -> Any:
            if not gone:
                raise not_found("greeting", extension=ext, profile=profile)
            yield self._audit(req, ext, "greeting.delete", profile)
            return Reply(204, b"")

        return self._run(work).addCallback(done)
