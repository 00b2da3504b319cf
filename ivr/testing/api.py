"""A client for a running service's admin HTTP API, with bearer tokens made in its store."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jsonschema import Draft202012Validator

from ivr.admin.auth import new_token, token_hash
from ivr.store.sqlite import SqliteStore
from ivr.testing.polling import poll
from ivr.testing.service import RunningService

TZ = ZoneInfo("Europe/Stockholm")


def add_token(service: RunningService, user: str, admin: bool = False, label: str = "test") -> str:
    """A new API token for ``user``, written straight into the service's store."""
    token = new_token()
    with SqliteStore(service.db) as store:
        store.tokens.add(
            token_hash=token_hash(token),
            user=user,
            admin=admin,
            label=label,
            created_at=datetime.now(TZ),
        )
    return token


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """HTTP calls with ``token``; with ``doc`` (the OpenAPI document) every JSON answer
    is checked against it."""

    service: RunningService
    token: str | None = None
    doc: dict[str, Any] = field(default_factory=dict)
    timeout: float = 20

    def call(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, object] | None = None,
        *,
        token: str | None = "default",
        content_type: str | None = None,
    ) -> Answer:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        if isinstance(body, dict):
            content_type = content_type or "application/json"
        url = f"http://127.0.0.1:{self.service.http_port}{path}"
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", content_type or "application/octet-stream")
        bearer = self.token if token == "default" else token
        if bearer is not None:
            request.add_header("Authorization", f"Bearer {bearer}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            answer = Answer(exc.code, dict(exc.headers), exc.read())
        if answer.headers.get("Content-Type", "").startswith("application/json") and self.doc:
            conforms(self.doc, method, path, answer)
        return answer

    def as_user(self, token: str) -> Client:
        return Client(self.service, token, self.doc, self.timeout)


def conforms(doc: dict[str, Any], method: str, path: str, answer: Answer) -> None:
    """The answer matches the OpenAPI document's schema for its path and status."""
    route = path.split("?", 1)[0]
    if route.startswith("/api/v1"):
        route = route[len("/api/v1") :]
    elif route not in ("/health", "/metrics"):
        return
    parts = route.strip("/").split("/")
    templates = [
        t
        for t in doc["paths"]
        if len(t.strip("/").split("/")) == len(parts)
        and all(
            a == b or (a.startswith("{") and a.endswith("}"))
            for a, b in zip(t.strip("/").split("/"), parts, strict=True)
        )
    ]
    template = templates[0] if templates else None
    if template is None:
        return  # an unknown path (answered 404): nothing to check against
    operation = doc["paths"][template].get(method.lower())
    if operation is None:
        assert answer.status == 405, f"{method} {template} is not documented"
        return
    response = operation["responses"].get(str(answer.status))
    assert response is not None, f"{method} {template} {answer.status} is not documented"
    schema = response["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": doc["components"]}).validate(answer.json)


def health(service: RunningService) -> dict[str, Any]:
    """GET /health (asserts a 200 with a JSON object)."""
    status, body = service.get_json("/health")
    assert status == 200 and isinstance(body, dict), (status, body)
    return body


def idle(service: RunningService, timeout: float = 5.0) -> bool:
    """Bounded polling until the service reports no active call."""
    return poll(lambda: health(service)["active_calls"] == 0, timeout)


def profile(service: RunningService, ext: str) -> dict[str, Any]:
    """GET /api/users/{ext}/profile (asserts a 200 with a JSON object)."""
    status, view = service.get_json(f"/api/users/{ext}/profile")
    assert status == 200 and isinstance(view, dict), (status, view)
    return view


def metric(service: RunningService, name: str, label: str) -> dict[str, int]:
    """A labelled counter from ``GET /metrics``: label value → count."""
    url = f"http://127.0.0.1:{service.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    pattern = rf'(?m)^{re.escape(name)}\{{{re.escape(label)}="([^"]*)"\}} (\d+)$'
    return {value: int(count) for value, count in re.findall(pattern, text)}
