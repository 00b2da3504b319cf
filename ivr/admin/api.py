"""The ``/api/v1`` resources: each handler checks access, validates its input, calls one
domain function and maps the result (or error) to a status and JSON.

Users, devices and profiles come from the live directory (written by
``directory_api.py``; reads here carry the ``ETag`` a write may send back); the active
profile goes through :class:`~ivr.profile_service.ProfileService` (``via="api"``,
audited with the caller as actor and, when an admin acts for someone else, that
user as ``on_behalf_of``); prompts through ``prompt_import``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from ivr.admin import views
from ivr.admin.errors import ApiError, forbidden, invalid, not_found
from ivr.admin.http import ApiRequest, Reply, Route
from ivr.admin.metrics import CONTENT_TYPE as METRICS_TYPE
from ivr.admin.openapi import document
from ivr.admin.validate import activation, audit_query, json_object, profile_ref, single
from ivr.config import Config
from ivr.directory import Directory
from ivr.profile_service import ProfileService, UnknownUser
from ivr.routing.commands import CommandResult, ProfileCommand
from ivr.routing.features import ActivateProfile, BackToStandard
from ivr.routing.model import LANGUAGES, User
from ivr.routing.profiles import Effective
from ivr.sip.registrar import Registrar
from ivr.store.async_store import AsyncStore
from ivr.store.errors import ConflictError


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiContext:
    """What the handlers need from the running service."""

    directory: Directory
    profiles: ProfileService
    store: AsyncStore
    registrar: Registrar
    clock: Callable[[], float]
    health: Callable[[], dict[str, object]]
    metrics: Callable[[], str]

    @property
    def config(self) -> Config:
        """The directory's current snapshot."""
        return self.directory.config


class Api:
    """Users, devices, profiles, the active profile, presence, audit, OpenAPI, health."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._document: bytes | None = None

    @property
    def config(self) -> Config:
        """The directory's current snapshot (read at the moment of use)."""
        return self.ctx.directory.config

    def routes(self) -> list[Route]:
        """The table this class answers, under /api/v1."""
        return [
            Route("GET", "/openapi.json", self.openapi, auth="none"),
            Route("GET", "/health", self.health, auth="none"),
            Route("GET", "/metrics", self.metrics, auth="none"),
            Route("GET", "/users", self.list_users),
            Route("GET", "/users/{ext}", self.get_user),
            Route("GET", "/users/{ext}/devices", self.list_devices),
            Route("GET", "/users/{ext}/profile", self.get_active),
            Route("PUT", "/users/{ext}/profile", self.put_active),
            Route("DELETE", "/users/{ext}/profile", self.delete_active),
            Route("GET", "/profiles", self.list_profiles),
            Route("GET", "/profiles/{profile}", self.get_profile),
            Route("GET", "/presence", self.presence),
            Route("GET", "/audit", self.audit),
        ]

    # helpers

    def _user(self, extension: str) -> User:
        user = self.config.user(extension)
        if user is None:
            raise not_found("user", extension=extension)
        return user

    def _own(self, req: ApiRequest, extension: str) -> User:
        """The user ``extension``, if the caller may reach their data (404, then 403)."""
        user = self._user(extension)
        if not req.who.may_access(user.extension):
            raise forbidden(f"only {user.extension} or an admin may do this")
        return user

    def _language(self, req: ApiRequest) -> str:
        lang = single(req.query, frozenset({"lang"})).get("lang")
        if lang is None:
            me = self.config.user(req.who.extension)
            return me.language if me is not None else self.config.company.language
        if lang not in LANGUAGES:
            raise invalid({"lang": f"must be one of {', '.join(LANGUAGES)}"})
        return lang

    def _no_query(self, req: ApiRequest) -> None:
        single(req.query, frozenset())

    # resources

    def openapi(self, req: ApiRequest) -> Reply:
        """GET /openapi.json: the OpenAPI 3.1 document (no token)."""
        if self._document is None:
            self._document = Reply.json(200, document()).body
        return Reply(200, self._document)

    def health(self, req: ApiRequest) -> Reply:
        """GET /health (no token)."""
        return Reply.json(200, self.ctx.health())

    def metrics(self, req: ApiRequest) -> Reply:
        """GET /metrics: Prometheus text (no token)."""
        return Reply(200, self.ctx.metrics().encode("utf-8"), METRICS_TYPE)

    def list_users(self, req: ApiRequest) -> Reply:
        """GET /users: the directory."""
        self._no_query(req)
        who = req.who
        users = [views.user_json(u, private=who.may_access(u.extension)) for u in self.config.users]
        return Reply.json(200, users)

    def get_user(self, req: ApiRequest) -> Reply:
        """GET /users/{ext}."""
        self._no_query(req)
        user = self._user(req.params["ext"])
        view = views.user_json(user, private=req.who.may_access(user.extension))
        version = self.ctx.directory.version("user", user.extension)
        return Reply.json(200, view, [("ETag", f'"{version}"')])

    def list_devices(self, req: ApiRequest) -> Reply:
        """GET /users/{ext}/devices: own user or admin; no passwords."""
        self._no_query(req)
        user = self._own(req, req.params["ext"])
        now = self.ctx.clock()
        domain = self.config.sip.domain
        devices = [
            views.device_json(
                d,
                self.ctx.registrar.lookup(f"sip:{d.username}@{domain}", now) if d.is_sip else [],
                now,
            )
            for d in user.devices
        ]
        return Reply.json(200, devices)

    def list_profiles(self, req: ApiRequest) -> Reply:
        """GET /profiles."""
        self._no_query(req)
        return Reply.json(200, [views.profile_json(p) for p in self.config.profiles])

    def get_profile(self, req: ApiRequest) -> Reply:
        """GET /profiles/{id or number}."""
        self._no_query(req)
        key = req.params["profile"]
        try:
            profile = profile_ref(
                int(key) if key.isascii() and key.isdigit() else key, self.config.rules
            )
        except ValueError:
            raise not_found("profile", profile=key) from None
        version = self.ctx.directory.version("profile", profile.id)
        return Reply.json(200, views.profile_json(profile), [("ETag", f'"{version}"')])

    def get_active(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """GET /users/{ext}/profile: the active profile with its source."""
        self._no_query(req)
        user = self._user(req.params["ext"])
        d: defer.Deferred[Any] = self.ctx.profiles.current(user.extension)
        return d.addCallback(
            lambda found: Reply.json(200, views.active_json(user, found, user.language))
        )

    def put_active(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """PUT /users/{ext}/profile: activate a profile (own user or admin)."""
        self._no_query(req)
        user = self._own(req, req.params["ext"])
        body = json_object(req.body, req.content_type)
        command = activation(body, self.config.rules, self.ctx.profiles.now())
        return self._execute(req, user, command)

    def delete_active(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """DELETE /users/{ext}/profile: back to the standard profile."""
        self._no_query(req)
        user = self._own(req, req.params["ext"])
        return self._execute(req, user, BackToStandard())

    def _execute(
        self, req: ApiRequest, user: User, command: ProfileCommand
    ) -> defer.Deferred[Reply]:
        actor = req.who.extension
        d: defer.Deferred[Any] = self.ctx.profiles.execute(
            user.extension,
            command,
            actor=actor,
            via="api",
            on_behalf_of=None if actor == user.extension else user.extension,
        )

        def done(result: CommandResult) -> Reply:
            view = views.active_json(user, result.after, user.language)
            return Reply.json(200, {**view, "changed": result.changed})

        def failed(failure: Any) -> Any:
            if failure.check(UnknownUser):
                raise not_found("user", extension=user.extension)
            if failure.check(ConflictError):
                raise ApiError(409, "the profile was changed meanwhile; try again")
            if failure.check(ValueError) and isinstance(command, ActivateProfile):
                raise invalid({"until": str(failure.value)})
            return failure

        return d.addCallbacks(done, failed)

    def presence(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """GET /presence: every user's current profile, for contact lists."""
        lang = self._language(req)
        users = self.config.users
        d = defer.gatherResults(
            [self.ctx.profiles.current(u.extension) for u in users], consumeErrors=True
        )

        def done(found: list[Effective]) -> Reply:
            rows = [views.presence_json(u, f, lang) for u, f in zip(users, found, strict=True)]
            return Reply.json(200, rows)

        return d.addCallback(done)

    def audit(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """GET /audit: admins see everything, users their own entries."""
        query = audit_query(req.query, self.config.rules.calendar)
        who = req.who
        user = query.user
        if not who.admin:
            if user is not None and user != who.extension:
                raise forbidden("a user may read only their own audit log")
            user = who.extension
        d: defer.Deferred[Any] = self.ctx.store.query_audit(
            user=user, since=query.since, until=query.until, limit=query.limit
        )
        return d.addCallback(
            lambda entries: Reply.json(200, [views.audit_json(e) for e in entries])
        )
