"""``/api/v1/calls`` (also ``/api/calls``): call records with legs, traces and outcome.

A user sees the calls they made or received; an admin sees every call. The records are
read on the store's thread (:class:`~ivr.store.async_store.AsyncStore`). The issue names
the unversioned paths (``GET /api/calls?user=1001``, ``GET /api/calls/{id}``):
:func:`unversioned` serves them from the same route table, with the same bearer-token
checks, while every other ``/api/...`` path goes to the root as before.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import defer
from twisted.web import resource, server

from ivr.admin.errors import forbidden, invalid, not_found
from ivr.admin.http import ApiRequest, NotFound, Reply, Route
from ivr.admin.validate import single
from ivr.call_records import CallRecord
from ivr.store.call_records import MAX_LIMIT

_ID = re.compile(r"[0-9a-f]{16}")
_USER = re.compile(r"[0-9]{1,32}")
UNVERSIONED = (b"calls",)


class CallsApi:
    """Call records over the store (``list_call_records`` / ``get_call_record``)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def routes(self) -> list[Route]:
        """The table this class answers, under /api/v1 (and /api)."""
        return [
            Route("GET", "/calls", self.list),
            Route("GET", "/calls/{id}", self.get),
        ]

    def list(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """GET /calls?user=EXT&limit=N: newest first; a user's own calls, or (admin) anyone's."""
        given = single(req.query, frozenset({"user", "limit"}))
        errors: dict[str, str] = {}
        user = given.get("user")
        if user is not None and not _USER.fullmatch(user):
            errors["user"] = "must be an extension (digits)"
        limit = 100
        text = given.get("limit")
        if text is not None:
            if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
                errors["limit"] = f"must be an integer 1-{MAX_LIMIT}"
            else:
                limit = int(text)
        if errors:
            raise invalid(errors)
        who = req.who
        if not who.admin:
            if user is not None and user != who.extension:
                raise forbidden("a user may read only their own calls")
            user = who.extension
        d: defer.Deferred[list[CallRecord]] = self.store.list_call_records(user=user, limit=limit)
        return d.addCallback(lambda found: Reply.json(200, [r.as_json() for r in found]))

    def get(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """GET /calls/{id}: one record (a user's own calls only: others are 404 to them)."""
        single(req.query, frozenset())
        record_id = req.params["id"]
        if not _ID.fullmatch(record_id):
            raise not_found("call", id=record_id)
        who = req.who

        def found(record: CallRecord | None) -> Reply:
            if record is None or not (who.admin or who.extension in record.parties):
                raise not_found("call", id=record_id)
            return Reply.json(200, record.as_json())

        d: defer.Deferred[CallRecord | None] = self.store.get_call_record(record_id)
        return d.addCallback(found)


class _Unversioned(resource.Resource):
    """``/api``: ``/api/calls...`` to the API's route table, the rest to the root."""

    def __init__(self, root: resource.Resource, api: resource.Resource) -> None:
        super().__init__()
        self.root = root
        self.api = api

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        # Undo Twisted's step past ``path``: both receivers expect it still to come.
        assert request.postpath is not None and request.prepath is not None
        request.postpath.insert(0, path)
        request.prepath.pop()
        if path in UNVERSIONED:
            return self.api
        return self.root.getChild(b"api", request)

    def render(self, request: server.Request) -> bytes:
        return NotFound().render(request)


def unversioned(root: resource.Resource, api: resource.Resource) -> resource.Resource:
    """What ``root`` serves at ``/api`` so that ``/api/calls`` reaches ``api`` too."""
    return _Unversioned(root, api)
