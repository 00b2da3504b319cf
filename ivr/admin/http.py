"""The small HTTP endpoint: health, and a read-only view of a user's profile."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.web import resource, server


def write_json(request: server.Request, status: int, body: object) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")


class JsonResource(resource.Resource):
    """Answers GET with the JSON from ``produce`` (a value or a Deferred)."""

    isLeaf = True

    def __init__(self, produce: Callable[[server.Request], Any]) -> None:
        super().__init__()
        self.produce = produce

    def render_GET(self, request: server.Request) -> bytes | int:
        d = defer.maybeDeferred(self.produce, request)

        def done(result: tuple[int, object]) -> None:
            status, body = result
            request.write(write_json(request, status, body))
            request.finish()

        def failed(failure: Any) -> None:
            request.write(write_json(request, 500, {"error": "internal error"}))
            request.finish()

        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET


class NotFound(resource.Resource):
    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        return write_json(request, 404, {"error": "not found", "path": request.path.decode()})


class Root(resource.Resource):
    """Routes /health and /api/users/{ext}/profile."""

    def __init__(
        self,
        health: Callable[[], dict[str, object]],
        profile_view: Callable[[str], Any],
    ) -> None:
        super().__init__()
        self.health = health
        self.profile_view = profile_view

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        parts = [p.decode("utf-8", "replace") for p in request.postpath]
        full = [path.decode("utf-8", "replace"), *parts]
        if full == ["health"]:
            return JsonResource(lambda _req: (200, self.health()))
        if len(full) == 4 and full[:2] == ["api", "users"] and full[3] == "profile":
            ext = full[2]
            return JsonResource(lambda _req: self.profile_view(ext))
        return NotFound()


def site(root: resource.Resource) -> server.Site:
    factory = server.Site(root)
    factory.displayTracebacks = False
    factory.noisy = False
    return factory
