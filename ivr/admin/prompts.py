"""``/api/v1/prompts``: list, download, upload (admin) and delete (admin) prompts.

Uploads are decoded, levelled and written in a worker thread (at most
``concurrency`` at once), so the reactor keeps pacing calls meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from twisted.internet import defer

from ivr.admin.errors import ApiError, invalid, not_found
from ivr.admin.http import ApiRequest, Reply, Route
from ivr.admin.metrics import Metrics
from ivr.admin.uploads import upload_bytes
from ivr.admin.validate import single
from ivr.prompt_import import (
    CustomPrompts,
    ImportLimits,
    PromptRecord,
    Rejected,
    check_name,
    import_prompt,
)
from ivr.routing.model import LANGUAGES

WAV_TYPE = "audio/wav"

Blocking = Callable[..., "defer.Deferred[Any]"]


class PromptApi:
    """Prompt resources over a :class:`CustomPrompts` directory."""

    def __init__(
        self,
        store: CustomPrompts,
        *,
        limits: ImportLimits,
        run_blocking: Blocking,
        now: Callable[[], datetime],
        metrics: Metrics,
        concurrency: int = 2,
    ) -> None:
        self.store = store
        self.limits = limits
        self._run = run_blocking
        self._now = now
        self.metrics = metrics
        self._slots = defer.DeferredSemaphore(concurrency)

    def routes(self) -> list[Route]:
        """The table this class answers, under /api/v1."""
        return [
            Route("GET", "/prompts/{lang}", self.list),
            Route("GET", "/prompts/{lang}/{name}", self.download),
            Route(
                "POST",
                "/prompts/{lang}/{name}",
                self.upload,
                auth="admin",
                max_body=self.limits.max_bytes,
            ),
            Route("DELETE", "/prompts/{lang}/{name}", self.delete, auth="admin"),
        ]

    def _checked(self, req: ApiRequest) -> tuple[str, str]:
        single(req.query, frozenset())
        lang, name = req.params["lang"], req.params.get("name")
        errors = check_name(lang, name, LANGUAGES)
        if errors:
            raise invalid(errors)
        return lang, name or ""

    def list(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """GET /prompts/{lang}: every prompt and whether it is custom or shipped."""
        lang, _ = self._checked(req)
        d = self._run(self.store.list, lang)
        return d.addCallback(lambda found: Reply.json(200, [r.as_json() for r in found]))

    def download(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """GET /prompts/{lang}/{name}: the WAV that calls play."""
        lang, name = self._checked(req)

        def read() -> tuple[PromptRecord, bytes]:
            record = self.store.find(lang, name)
            if record is None:
                raise not_found("prompt", lang=lang, name=name)
            return record, record.path.read_bytes()

        d = self._run(read)
        return d.addCallback(
            lambda found: Reply(200, found[1], WAV_TYPE, (("X-Prompt-Source", found[0].source),))
        )

    def upload(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """POST /prompts/{lang}/{name} (admin): import and store; 201 new, 200 replaced.
        The body is the audio file itself or a ``multipart/form-data`` form with one file."""
        try:
            lang, name = self._checked(req)
        except ApiError:
            self.metrics.prompt_uploads.inc(result="rejected")
            raise
        uploader = req.who.extension
        at = self._now()

        def work() -> tuple[PromptRecord, bool]:
            prompt = import_prompt(upload_bytes(req.body, req.content_type), self.limits)
            return self.store.save(lang, name, prompt, uploaded_by=uploader, at=at)

        def done(saved: tuple[PromptRecord, bool]) -> Reply:
            record, created = saved
            self.metrics.prompt_uploads.inc(result="stored")
            location = f"/api/v1/prompts/{lang}/{name}"
            return Reply.json(201 if created else 200, record.as_json(), (("Location", location),))

        def failed(failure: Any) -> Any:
            self.metrics.prompt_uploads.inc(result="rejected")
            if failure.check(Rejected):
                exc: Rejected = failure.value
                raise ApiError(exc.status, "upload rejected", fields={exc.field: exc.reason})
            return failure

        d = self._slots.run(self._run, work)
        return d.addCallbacks(done, failed)

    def delete(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """DELETE /prompts/{lang}/{name} (admin): the shipped prompt plays again."""
        lang, name = self._checked(req)

        def work() -> PromptRecord | None:
            if not self.store.delete(lang, name):
                raise not_found("custom prompt", lang=lang, name=name)
            return self.store.find(lang, name)

        def done(now_playing: PromptRecord | None) -> Reply:
            after = None if now_playing is None else now_playing.source
            return Reply.json(200, {"lang": lang, "name": name, "deleted": True, "now": after})

        return self._run(work).addCallback(done)
