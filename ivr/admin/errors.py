"""The one error type of the HTTP API: a status, a message and JSON details."""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    """An answer other than success: ``status``, an ``error`` message, extra JSON fields
    (``fields`` names each invalid input) and extra response headers."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        headers: Mapping[str, str] | None = None,
        **details: object,
    ) -> None:
        super().__init__(f"{status} {error}")
        self.status = status
        self.error = error
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        return {"error": self.error, **self.details}


def invalid(fields: Mapping[str, str], status: int = 422) -> ApiError:
    """A validation failure naming each bad field and why."""
    return ApiError(status, "invalid request", fields=dict(fields))


def not_found(what: str, **details: object) -> ApiError:
    return ApiError(404, f"unknown {what}", **details)


def forbidden(reason: str) -> ApiError:
    return ApiError(403, "forbidden", reason=reason)
