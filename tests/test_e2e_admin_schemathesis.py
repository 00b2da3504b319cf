"""schemathesis against a running `ivr serve`: every documented operation, with an admin
token, gets generated requests (valid and invalid); no answer may be a 5xx, use an
undocumented status or content type, or break its documented schema.

Bounded: a fixed number of examples per operation (reads first, deletes last, so the
directory is still there while most operations run), well under a minute in all.
"""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ivr.testing.api import add_token
from ivr.testing.service import RunningService

pytestmark = pytest.mark.e2e

EXAMPLES = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ORDER = {"get": 0, "patch": 1, "put": 2, "post": 3, "delete": 4}


@pytest.fixture
def service(demo_service: RunningService) -> RunningService:
    return demo_service


def test_no_server_errors_and_every_answer_matches_the_document(service: RunningService) -> None:
    base = f"http://127.0.0.1:{service.http_port}"
    schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json")
    token = add_token(service, "1000", admin=True)
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: (ORDER.get(op.method.lower(), 5), op.path))
    failures: list[str] = []
    calls: list[int] = []

    def fuzz(operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
        name = f"{operation.method.upper()} {operation.path} ({mode.value})"

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            calls.append(1)
            response = case.call(base_url=base + "/api/v1", headers=headers, timeout=10)
            try:
                case.validate_response(response, checks=CHECKS)
            except Exception as exc:  # a check failed: collect it, report all at the end
                failures.append(f"{name}: {exc}")

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, f"{name}: no valid request can be made"

    started = time.monotonic()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode)
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures[:10])
    assert len(calls) >= 200, f"only {len(calls)} requests"
    assert elapsed < 60, f"took {elapsed:.0f} s"
    assert "Traceback" not in service.log(), service.log()[-3000:]
