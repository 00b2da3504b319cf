"""Builds the HTTP side from the running service's parts (called by ``ivr.app``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.logger import Logger
from twisted.web import server

from ivr.admin.api import Api, ApiContext
from ivr.admin.auth import Authenticator, FailureLimiter
from ivr.admin.calls_api import CallsApi, unversioned
from ivr.admin.directory_api import DirectoryApi
from ivr.admin.greetings_api import GreetingApi
from ivr.admin.http import ApiResource, Root, site
from ivr.admin.metrics import Metrics
from ivr.admin.prompts import PromptApi
from ivr.admin.queues_api import QueuesApi
from ivr.admin.voicemail_api import VoicemailApi
from ivr.config import Config
from ivr.directory_service import DirectoryService
from ivr.metrics import Counter
from ivr.profile_service import ProfileService
from ivr.prompt_import import CustomPrompts, ImportLimits
from ivr.queue_calls import QueueService
from ivr.sip.registrar import Registrar
from ivr.store.async_store import AsyncStore

security_log = Logger(namespace="ivr.security")

_GAUGES = {
    "uptime": ("ivr_uptime_seconds", "Seconds since the service started"),
    "registrations": ("ivr_registrations", "Live SIP registrations (bindings)"),
    "active_calls": ("ivr_active_calls", "Calls in progress"),
    "overloaded": ("ivr_overloaded", "1 while new calls are refused with 503 (reactor late)"),
}


def custom_prompts_dir(db: str) -> Path:
    """Where uploaded prompts live by default: ``prompts/`` beside the database."""
    return Path("var/prompts") if db == ":memory:" else Path(db).parent / "prompts"


def _gauges(health: Callable[[], dict[str, object]]) -> Any:
    def read() -> dict[str, tuple[str, float]]:
        values = health()
        return {
            name: (text, float(values[key]))  # type: ignore[arg-type]
            for key, (name, text) in _GAUGES.items()
        }

    return read


def admin_site(
    *,
    reactor: Any,
    directory: DirectoryService,
    profiles: ProfileService,
    store: AsyncStore,
    registrar: Registrar,
    health: Callable[[], dict[str, object]],
    profile_view: Callable[[str], Any],
    custom_prompts: Path,
    now: Callable[[], datetime],
    limits: ImportLimits | None = None,
    limiter: FailureLimiter | None = None,
    counters: tuple[Counter, ...] = (),
) -> server.Site:
    """The site: ``/health``, ``/metrics``, ``/api/users/{ext}/profile``, ``/api/v1``."""
    limits = limits or ImportLimits()

    def config() -> Config:
        return directory.config

    metrics = Metrics(_gauges(health), counters)

    def auth_failed(source: str, reason: str) -> None:
        metrics.auth_failures.inc(reason=reason)
        security_log.warn(
            "api-auth-failure source={source} reason={reason}",
            source=source,
            reason=reason,
            security_event="api-auth-failure",
        )

    authenticator = Authenticator(
        find_token=store.find_token,
        user=lambda extension: directory.config.user(extension),
        limiter=limiter or FailureLimiter(),
        clock=reactor.seconds,
        on_failure=auth_failed,
    )

    def run_blocking(fn: Callable[..., Any], *args: Any) -> Any:
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

    api = Api(
        ApiContext(
            directory=directory.directory,
            profiles=profiles,
            store=store,
            registrar=registrar,
            clock=reactor.seconds,
            health=health,
            metrics=metrics.render,
        )
    )
    prompt_api = PromptApi(
        CustomPrompts(custom_prompts, config().prompts_dir),
        limits=limits,
        run_blocking=run_blocking,
        now=now,
        metrics=metrics,
    )
    calls_api = CallsApi(store)
    voicemail = VoicemailApi(config, store, run_blocking=run_blocking, now=now)
    greetings = GreetingApi(config, store, limits=limits, run_blocking=run_blocking, now=now)
    routes = [
        *api.routes(),
        *DirectoryApi(directory, registrar, reactor.seconds).routes(),
        *voicemail.routes(),
        *greetings.routes(),
        *prompt_api.routes(),
        *calls_api.routes(),
        *QueuesApi(QueueService(profiles, listen=False)).routes(),
    ]
    resource = ApiResource(routes, authenticator, metrics)
    root = Root(health, profile_view, api=resource, metrics=metrics)
    root.putChild(b"api", unversioned(root, resource))  # /api/calls as the issue names it
    return site(root, max_body=limits.max_bytes)
