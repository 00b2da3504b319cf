"""``/api/v1/users/{ext}/voicemail``: list, fetch (JSON and WAV), mark heard or saved,
delete.

A user reaches only their own mailbox (the mailbox is the extension); an admin every
one, audited with both identities. Deleting removes the row and its WAV file together
(row first: a crash leaves at worst an orphan file, swept later, never a row without
audio). ``saved`` is the flag key 5 sets on the phone (a saved message is heard too).
Changes are audited (``voicemail.heard``, ``voicemail.saved``, ``voicemail.delete``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from twisted.internet import defer

from ivr.admin.errors import forbidden, invalid, not_found
from ivr.admin.http import ApiRequest, Reply, Route
from ivr.admin.validate import json_object, single
from ivr.config import Config
from ivr.routing.state import AuditEntry
from ivr.store.async_store import AsyncStore
from ivr.store.protocols import VoicemailMessage

WAV_TYPE = "audio/wav"
Blocking = Callable[..., "defer.Deferred[Any]"]


def message_json(m: VoicemailMessage, saved: bool = False) -> dict[str, object]:
    return {
        "id": m.id,
        "mailbox": m.mailbox,
        "caller": m.caller,
        "called": m.called,
        "received_at": m.received_at.isoformat(),
        "duration": round(m.duration, 3),
        "heard": m.heard,
        "saved": saved,
    }


class VoicemailApi:
    """A user's voicemail over HTTP."""

    def __init__(
        self,
        config: Callable[[], Config],
        store: AsyncStore,
        *,
        run_blocking: Blocking,
        now: Callable[[], datetime],
    ) -> None:
        self._config = config
        self.store = store
        self._run = run_blocking
        self._now = now

    def routes(self) -> list[Route]:
        """The table this class answers, under /api/v1."""
        return [
            Route("GET", "/users/{ext}/voicemail", self.list),
            Route("GET", "/users/{ext}/voicemail/{id}", self.get),
            Route("GET", "/users/{ext}/voicemail/{id}/audio", self.audio),
            Route("PATCH", "/users/{ext}/voicemail/{id}", self.patch),
            Route("DELETE", "/users/{ext}/voicemail/{id}", self.delete),
        ]

    def _mailbox(self, req: ApiRequest) -> str:
        ext = req.params["ext"]
        if self._config().user(ext) is None:
            raise not_found("user", extension=ext)
        if not req.who.may_access(ext):
            raise forbidden(f"only {ext} or an admin may do this")
        return ext

    def _message(self, req: ApiRequest) -> defer.Deferred[VoicemailMessage]:
        mailbox = self._mailbox(req)
        text = req.params["id"]
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            raise not_found("message", id=text)
        d: defer.Deferred[Any] = self.store.get_voicemail(int(text))

        def found(m: VoicemailMessage | None) -> VoicemailMessage:
            if m is None or m.mailbox != mailbox:
                raise not_found("message", id=text)
            return m

        return d.addCallback(found)

    def _saved(self, mailbox: str) -> defer.Deferred[frozenset[int]]:
        """The ids of the mailbox's saved messages."""
        d: defer.Deferred[frozenset[int]] = self.store.run(
            lambda s: s.selfservice.saved_ids(mailbox)
        )
        return d

    def _reply(self, m: VoicemailMessage) -> defer.Deferred[Reply]:
        return self._saved(m.mailbox).addCallback(
            lambda saved: Reply.json(200, message_json(m, m.id in saved))
        )

    def _audit(self, req: ApiRequest, m: VoicemailMessage, action: str, **detail: object) -> Any:
        actor = req.who.extension
        entry = AuditEntry(
            at=self._now(),
            actor=actor,
            action=action,
            target_user=m.mailbox,
            via="api",
            detail={"message": m.id, **detail},
            on_behalf_of=None if actor == m.mailbox else m.mailbox,
        )
        return self.store.append_audit(entry)

    def list(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """GET /users/{ext}/voicemail[?heard=true|false]: oldest first."""
        mailbox = self._mailbox(req)
        given = single(req.query, frozenset({"heard"}))
        heard: bool | None = None
        if "heard" in given:
            if given["heard"] not in ("true", "false"):
                raise invalid({"heard": "must be true or false"})
            heard = given["heard"] == "true"

        @defer.inlineCallbacks
        def listed() -> Any:
            messages = yield self.store.list_voicemail(mailbox, heard=heard)
            saved = yield self._saved(mailbox)
            return Reply.json(200, [message_json(m, m.id in saved) for m in messages])

        d: defer.Deferred[Reply] = listed()
        return d

    def get(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """GET /users/{ext}/voicemail/{id}: the message's details."""
        single(req.query, frozenset())
        return self._message(req).addCallback(self._reply)

    def audio(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """GET /users/{ext}/voicemail/{id}/audio: the WAV (8 kHz mono)."""
        single(req.query, frozenset())

        def read(m: VoicemailMessage) -> defer.Deferred[Any]:
            path = Path(self._config().recordings_dir) / m.path
            return self._run(path.read_bytes)

        def missing(failure: Any) -> Any:
            failure.trap(FileNotFoundError)
            raise not_found("recording", id=req.params["id"])

        d = self._message(req).addCallback(read).addErrback(missing)
        return d.addCallback(lambda data: Reply(200, data, WAV_TYPE))

    def patch(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """PATCH /users/{ext}/voicemail/{id} ``{"heard": true}`` and/or ``{"saved": true}``
        (saving marks the message heard too; unsaving leaves it heard)."""
        single(req.query, frozenset())
        body = json_object(req.body, req.content_type)
        errors = {k: "unknown field" for k in body if k not in ("heard", "saved")}
        for key in ("heard", "saved"):
            if key in body and not isinstance(body[key], bool):
                errors[key] = "must be true or false"
        if not errors and not body:
            errors["heard"] = "give heard and/or saved: true or false"
        if not errors and body.get("saved") is True and body.get("heard") is False:
            errors["heard"] = "a saved message is heard: not false with saved true"
        if errors:
            raise invalid(errors)
        heard: bool | None = body.get("heard")
        saved: bool | None = body.get("saved")

        @defer.inlineCallbacks
        def change(m: VoicemailMessage) -> Any:
            if heard is not None and m.heard != heard:
                yield self.store.mark_voicemail_heard(m.id, heard)
                yield self._audit(req, m, "voicemail.heard", heard=heard)
            if saved is not None:
                was = yield self._saved(m.mailbox)
                if (m.id in was) != saved:
                    found = yield self.store.run(lambda s: s.selfservice.mark_saved(m.id, saved))
                    if not found:
                        raise not_found("message", id=m.id)
                    yield self._audit(req, m, "voicemail.saved", saved=saved)
            fresh = yield self.store.get_voicemail(m.id)
            if fresh is None:
                raise not_found("message", id=m.id)
            reply = yield self._reply(fresh)
            return reply

        return self._message(req).addCallback(change)

    def delete(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """DELETE /users/{ext}/voicemail/{id}: the row and the WAV file go."""
        single(req.query, frozenset())

        @defer.inlineCallbacks
        def remove(m: VoicemailMessage) -> Any:
            gone = yield self.store.delete_voicemail(m.id)
            if not gone:
                raise not_found("message", id=m.id)
            yield self._audit(req, m, "voicemail.delete")
            return Reply(204, b"")

        return self._message(req).addCallback(remove)
