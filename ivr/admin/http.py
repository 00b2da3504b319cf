"""The HTTP edge (twisted.web): health, metrics, the legacy profile view, and ``/api/v1``.

``/api/v1`` is one leaf resource that matches a table of :class:`Route`s, checks the
bearer token (``auth.py``), reads the body, runs the route's handler and writes its
:class:`Reply` or :class:`~ivr.admin.errors.ApiError` as JSON. Request bodies are
capped while they arrive (:class:`LimitedRequest`): a declared or streamed body over
the site's ceiling is answered 413 and the connection closed, nothing buffered.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from ivr.admin.auth import Authenticator, Principal
from ivr.admin.errors import ApiError, forbidden
from ivr.admin.metrics import CONTENT_TYPE as METRICS_TYPE
from ivr.admin.metrics import Metrics

log = Logger(namespace="ivr.admin")

JSON_TYPE = "application/json; charset=utf-8"
DEFAULT_MAX_BODY = 64 * 1024
MAX_QUERY_FIELDS = 32
_PASSED_HEADERS = frozenset({b"if-match", b"accept"})


def write_json(request: server.Request, status: int, body: object) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_TYPE.encode())
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


class TextResource(resource.Resource):
    """Answers GET with text from ``produce`` (e.g. Prometheus metrics)."""

    isLeaf = True

    def __init__(self, produce: Callable[[], str], content_type: str) -> None:
        super().__init__()
        self.produce = produce
        self.content_type = content_type

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", self.content_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        return self.produce().encode("utf-8")


class NotFound(resource.Resource):
    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        return write_json(request, 404, {"error": "not found", "path": request.path.decode()})


# --- /api/v1 --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's successful answer."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, value: object, headers: Sequence[tuple[str, str]] = ()) -> Reply:
        data = json.dumps(value, ensure_ascii=False).encode("utf-8")
        return cls(status, data, JSON_TYPE, tuple(headers))


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiRequest:
    """What a handler sees: path parameters, query, body and who is asking."""

    method: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: bytes
    content_type: str | None
    principal: Principal | None
    source: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def who(self) -> Principal:
        """The authenticated caller (routes with ``auth`` set always have one)."""
        if self.principal is None:
            raise ApiError(401, "a bearer token is required")
        return self.principal


Handler = Callable[[ApiRequest], "Reply | defer.Deferred[Reply]"]
Auth = Literal["none", "user", "admin"]


@dataclass(frozen=True, slots=True)
class Route:
    """``method`` + ``path`` (``/users/{ext}/profile``) → ``handler``."""

    method: str
    path: str
    handler: Handler
    auth: Auth = "user"
    max_body: int = DEFAULT_MAX_BODY
    segments: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.path.strip("/").split("/")))

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        if len(segments) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for want, got in zip(self.segments, segments, strict=True):
            if want.startswith("{") and want.endswith("}"):
                if not got:
                    return None
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


def query_args(uri: bytes) -> dict[str, list[str]]:
    """The query string's parameters (never the body's, whatever its content type)."""
    _, _, query = uri.partition(b"?")
    try:
        text = query.decode("ascii")
        return urllib.parse.parse_qs(
            text, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise ApiError(
            400, f"the query string is not UTF-8 percent-encoding of <= {MAX_QUERY_FIELDS} fields"
        ) from None


class ApiResource(resource.Resource):
    """``/api/v1/...``: routes, token checks, JSON errors."""

    isLeaf = True

    def __init__(
        self, routes: Sequence[Route], authenticator: Authenticator, metrics: Metrics
    ) -> None:
        super().__init__()
        self.routes = tuple(routes)
        self.authenticator = authenticator
        self.metrics = metrics

    def _route(self, method: str, segments: list[str]) -> tuple[Route, dict[str, str]]:
        if method == "HEAD":
            method = "GET"
        allowed: list[str] = []
        for route in self.routes:
            params = route.match(segments)
            if params is None:
                continue
            if route.method == method:
                return route, params
            allowed.append(route.method)
        if allowed:
            raise ApiError(
                405, "method not allowed", allowed=allowed, headers={"Allow": ", ".join(allowed)}
            )
        raise ApiError(404, "not found", path="/api/v1/" + "/".join(segments))

    def render(self, request: server.Request) -> int:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _f: gone.append(True))
        d = defer.maybeDeferred(self._handle, request)
        d.addErrback(self._error)
        d.addCallback(self._write, request, gone)
        d.addErrback(lambda f: log.failure("writing an API response failed", f))
        return server.NOT_DONE_YET

    @defer.inlineCallbacks
    def _handle(self, request: server.Request) -> Any:
        method = request.method.decode("ascii", "replace")
        try:
            segments = [s.decode("utf-8") for s in request.postpath]
        except UnicodeDecodeError:
            raise ApiError(404, "not found") from None
        if len(segments) > 1 and segments[-1] == "":
            segments.pop()
        route, params = self._route(method, segments)
        principal: Principal | None = None
        address = request.getClientAddress()
        source = str(getattr(address, "host", "unknown"))
        if route.auth != "none":
            headers = request.requestHeaders.getRawHeaders(b"authorization")
            header = None if not headers else headers[0] if len(headers) == 1 else b""
            principal = yield self.authenticator.authenticate(header, source)
            if route.auth == "admin" and not principal.admin:
                raise forbidden("this needs an admin token")
        assert request.content is not None
        request.content.seek(0)
        body = request.content.read(route.max_body + 1)
        if len(body) > route.max_body:
            raise ApiError(413, "request body too large", limit=route.max_body)
        content_type = request.getHeader(b"content-type")
        api_request = ApiRequest(
            method=method,
            params=params,
            query=query_args(request.uri),
            body=body,
            content_type=None if content_type is None else content_type.decode("latin-1"),
            principal=principal,
            source=source,
            headers={
                k.decode("latin-1").lower(): v[0].decode("latin-1")
                for k, v in request.requestHeaders.getAllRawHeaders()
                if k.lower() in _PASSED_HEADERS and v
            },
        )
        reply = yield route.handler(api_request)
        return reply

    def _error(self, failure: Any) -> Reply:
        if failure.check(ApiError):
            exc: ApiError = failure.value
            return Reply.json(exc.status, exc.body(), tuple(exc.headers.items()))
        log.failure("API request failed", failure)
        return Reply.json(500, {"error": "internal error"})

    def _write(self, reply: Reply, request: server.Request, gone: list[bool]) -> None:
        self.metrics.api_requests.inc(status=str(reply.status))
        if gone:
            return
        request.setResponseCode(reply.status)
        if reply.status != 204:
            request.setHeader(b"content-type", reply.content_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        for name, value in reply.headers:
            request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        if reply.status != 204:
            request.setHeader(b"content-length", str(len(reply.body)).encode())
            request.write(reply.body)
        request.finish()


# --- the root and the site ---------------------------------------------------------------


class Root(resource.Resource):
    """Routes /health, /metrics, /api/users/{ext}/profile and /api/v1/..."""

    def __init__(
        self,
        health: Callable[[], dict[str, object]],
        profile_view: Callable[[str], Any],
        *,
        api: resource.Resource | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__()
        self.health = health
        self.profile_view = profile_view
        self.api = api
        self.metrics = metrics

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        parts = [p.decode("utf-8", "replace") for p in request.postpath]
        full = [path.decode("utf-8", "replace"), *parts]
        if full == ["health"]:
            return JsonResource(lambda _req: (200, self.health()))
        if full == ["metrics"] and self.metrics is not None:
            return TextResource(self.metrics.render, METRICS_TYPE)
        if len(full) == 4 and full[:2] == ["api", "users"] and full[3] == "profile":
            ext = full[2]
            return JsonResource(lambda _req: self.profile_view(ext))
        if full[:2] == ["api", "v1"] and self.api is not None:
            request.prepath.append(request.postpath.pop(0))
            return self.api
        return NotFound()


def _refusal(status: int, phrase: str, body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: {JSON_TYPE}\r\n"
        f"content-length: {len(data)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + data


class LimitedRequest(server.Request):
    """A request whose body may not exceed ``max_body`` bytes (the site's ceiling).

    A larger ``Content-Length`` is refused as soon as the headers are in (no ``100
    Continue``); a chunked body is refused when it grows past the ceiling. Either way
    the client gets a JSON 413 and the connection is closed; nothing more is stored.
    """

    max_body = 10 * 1024 * 1024
    refused = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body:
            super().gotLength(0)
            self.requestHeaders.removeHeader(b"expect")
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        assert self.content is not None
        if self.content.tell() + len(data) > self.max_body:
            self._refuse()
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        if not self.refused:
            super().process()

    def _refuse(self) -> None:
        self.refused = True
        channel = self.channel
        if channel is None:
            return
        body = {"error": "request body too large", "limit": self.max_body}
        channel.transport.write(_refusal(413, "Payload Too Large", body))
        channel.loseConnection()


def site(root: resource.Resource, *, max_body: int = LimitedRequest.max_body) -> server.Site:
    """The HTTP site; request bodies are capped at ``max_body`` bytes."""

    class Request(LimitedRequest):
        pass

    Request.max_body = max_body
    factory = server.Site(root, requestFactory=Request)
    factory.displayTracebacks = False
    factory.noisy = False
    return factory
