"""The transaction user behind the SIP core: routes each request to its service.

REGISTER goes to the registration service, calls (INVITE and in-dialog requests)
to the call manager. Failed authentications become one security log line each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ivr.logs import Logger
from ivr.registration import AuthFailure, RegisterOutcome, RegistrationService
from ivr.sip.core import Peer, ServerRequest
from ivr.sip.message import Request, Response

security_log = Logger(namespace="ivr.security")
log = Logger(namespace="ivr.sipapp")


class CallHandler(Protocol):
    def handle_invite(self, request: ServerRequest) -> None: ...
    def handle_in_dialog(self, request: ServerRequest) -> bool: ...
    def handle_ack(self, request: Request, peer: Peer) -> None: ...
    def handle_cancel(self, request: ServerRequest) -> None: ...
    def handle_ack_timeout(self, response: Response) -> None: ...


def log_auth_failure(failure: AuthFailure) -> None:
    """One structured line per failed authentication (fail2ban matches on it)."""
    security_log.warn(
        "auth-failure source={source} user={user} method={method} reason={reason}",
        source=failure.source,
        user=failure.user or "-",
        method=failure.method,
        reason=failure.reason,
        security_event="auth-failure",
    )


class SipApplication:
    """Dispatches validated, de-duplicated requests to the services."""

    def __init__(
        self,
        *,
        registration: RegistrationService,
        now: Callable[[], float],
        on_bindings_changed: Callable[[RegisterOutcome], None] = lambda outcome: None,
        calls: CallHandler | None = None,
    ) -> None:
        self.registration = registration
        self.now = now
        self.on_bindings_changed = on_bindings_changed
        self.calls = calls

    def handle_request(self, request: ServerRequest) -> None:
        method = request.request.method
        if method == "REGISTER":
            self._register(request)
        elif method == "INVITE" and self.calls is not None:
            self.calls.handle_invite(request)
        elif self.calls is not None and self.calls.handle_in_dialog(request):
            return
        elif method == "INVITE":
            request.respond(480, "No call service")
        else:
            request.respond(481)

    def handle_ack(self, request: Request, peer: Peer) -> None:
        if self.calls is not None:
            self.calls.handle_ack(request, peer)

    def handle_cancel(self, cancelled: ServerRequest) -> None:
        if self.calls is not None:
            self.calls.handle_cancel(cancelled)

    def handle_ack_timeout(self, response: Response) -> None:
        if self.calls is not None:
            self.calls.handle_ack_timeout(response)

    def _register(self, request: ServerRequest) -> None:
        outcome = self.registration.handle(request.request, str(request.peer), self.now())
        if outcome.failure is not None:
            log_auth_failure(outcome.failure)
        reply = outcome.reply
        request.respond(reply.status, reply.reason, headers=reply.headers)
        if outcome.changed or outcome.removed:
            self.on_bindings_changed(outcome)
