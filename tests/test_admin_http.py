"""The HTTP plumbing: the OpenAPI document (valid, and in step with the routes), route
matching, the API resource's error mapping, and the Prometheus text format."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from openapi_spec_validator import validate
from twisted.internet import defer
from twisted.web.test.requesthelper import DummyRequest

from ivr.admin.api import Api, ApiContext
from ivr.admin.auth import Authenticator, FailureLimiter, Principal
from ivr.admin.calls_api import CallsApi
from ivr.admin.directory_api import DirectoryApi
from ivr.admin.errors import ApiError
from ivr.admin.greetings_api import GreetingApi
from ivr.admin.http import ApiRequest, ApiResource, Reply, Route
from ivr.admin.metrics import Metrics
from ivr.admin.openapi import document
from ivr.admin.prompts import PromptApi
from ivr.admin.queues_api import QueuesApi
from ivr.admin.voicemail_api import VoicemailApi
from ivr.config import load_config
from ivr.directory import Directory
from ivr.prompt_import import CustomPrompts, ImportLimits
from ivr.sip.registrar import Registrar

REPO = Path(__file__).resolve().parents[1]
CONFIG = load_config(REPO / "config" / "ivr.toml")


def NOW() -> datetime:
    return datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def all_routes() -> list[Route]:
    ctx: Any = ApiContext(
        directory=Directory(CONFIG),
        profiles=None,  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
        registrar=None,  # type: ignore[arg-type]
        clock=lambda: 0.0,
        health=lambda: {"status": "ok"},
        metrics=lambda: "ivr_up 1\n",
    )
    prompts = PromptApi(
        CustomPrompts(Path("/nonexistent"), REPO / "prompts"),
        limits=ImportLimits(),
        run_blocking=defer.maybeDeferred,
        now=lambda: None,  # type: ignore[arg-type, return-value]
        metrics=Metrics(dict),
    )
    directory: Any = SimpleNamespace(config=CONFIG, directory=Directory(CONFIG))
    store: Any = None
    return [
        *Api(ctx).routes(),
        *DirectoryApi(directory, Registrar(), lambda: 0.0).routes(),
        *VoicemailApi(lambda: CONFIG, store, run_blocking=defer.maybeDeferred, now=NOW).routes(),
        *GreetingApi(
            lambda: CONFIG, store, limits=ImportLimits(), run_blocking=defer.maybeDeferred, now=NOW
        ).routes(),
        *prompts.routes(),
        *CallsApi(store).routes(),
        *QueuesApi(store).routes(),  # the routes only; the service is not called here
    ]


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    json.dumps(doc)  # serialisable as served


def test_every_route_is_documented_and_every_operation_routed() -> None:
    doc = document()
    routed = {(r.path, r.method.lower()) for r in all_routes()}
    documented = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }
    assert routed == documented
    for route in all_routes():
        op = doc["paths"][route.path][route.method.lower()]
        assert (op.get("security") == []) == (route.auth == "none"), route.path
        if route.auth != "none":
            assert {"401", "429"} <= set(op["responses"]), route.path
        if route.auth == "admin":
            assert "403" in op["responses"], route.path


def test_route_matching() -> None:
    route = Route("GET", "/users/{ext}/profile", lambda req: Reply.json(200, {}))
    assert route.match(["users", "1001", "profile"]) == {"ext": "1001"}
    assert route.match(["users", "", "profile"]) is None
    assert route.match(["users", "1001"]) is None
    assert route.match(["user", "1001", "profile"]) is None


class Fixture:
    def __init__(self, *routes: Route) -> None:
        self.metrics = Metrics(lambda: {"ivr_up": ("Up", 1.0)})
        auth = Authenticator(
            find_token=lambda digest: defer.succeed(None),
            user=CONFIG.user,
            limiter=FailureLimiter(),
            clock=lambda: 0.0,
        )
        self.resource = ApiResource(routes, auth, self.metrics)

    def get(self, path: str, method: bytes = b"GET") -> tuple[int, dict[str, Any], Any]:
        request = DummyRequest([p.encode() for p in path.strip("/").split("/")])
        request.method = method
        request.uri = b"/api/v1" + path.encode()
        request.content = io.BytesIO(b"")
        self.resource.render(request)
        assert request.finished
        headers = {k.decode(): v[0].decode() for k, v in request.responseHeaders.getAllRawHeaders()}
        return request.responseCode or 200, headers, json.loads(b"".join(request.written))


def test_errors_become_json() -> None:
    def boom(req: ApiRequest) -> Reply:
        raise RuntimeError("a bug")

    def teapot(req: ApiRequest) -> Reply:
        raise ApiError(418, "short and stout", headers={"X-Why": "tea"}, fields={"a": "b"})

    fx = Fixture(
        Route("GET", "/boom", boom, auth="none"),
        Route("GET", "/teapot", teapot, auth="none"),
        Route("GET", "/private", teapot),
    )
    status, _, body = fx.get("/boom")
    assert (status, body) == (500, {"error": "internal error"})
    status, headers, body = fx.get("/teapot")
    assert status == 418 and headers["X-Why"] == "tea" and body["fields"] == {"a": "b"}
    status, headers, _ = fx.get("/teapot", b"DELETE")
    assert status == 405 and headers["Allow"] == "GET"
    status, _, body = fx.get("/private")
    assert status == 401 and body["error"] == "a bearer token is required"
    status, _, _ = fx.get("/nothing/here")
    assert status == 404
    text = fx.metrics.render()
    assert 'ivr_api_requests_total{status="500"} 1' in text
    assert 'ivr_api_requests_total{status="401"} 1' in text


def test_may_access() -> None:
    user = Principal(extension="1001", admin=False, token_id=1)
    admin = Principal(extension="1000", admin=True, token_id=2)
    assert user.may_access("1001") and not user.may_access("1002")
    assert admin.may_access("1002")


def test_prometheus_text() -> None:
    metrics = Metrics(lambda: {"ivr_active_calls": ("Calls in progress", 3.0)})
    metrics.prompt_uploads.inc(result="stored")
    metrics.prompt_uploads.inc(result="stored")
    metrics.auth_failures.inc(reason='we"ird\n')
    text = metrics.render()
    assert text.endswith("\n")
    assert "# TYPE ivr_active_calls gauge\nivr_active_calls 3\n" in text
    assert 'ivr_prompt_uploads_total{result="stored"} 2\n' in text
    assert 'ivr_api_auth_failures_total{reason="we\\"ird\\n"} 1\n' in text


def test_public_resources_need_no_token() -> None:
    fx = Fixture(*all_routes())
    status, _, body = fx.get("/openapi.json")
    assert status == 200 and body["openapi"] == "3.1.0"
    assert fx.get("/health")[2] == {"status": "ok"}
