"""Users, devices, profiles and schedules: create, replace, delete (``/api/v1``).

Bodies have the config file's shape (``[[users]]``, ``[[users.devices]]``,
``[[profiles]]``, ``[[users.schedules]]`` as JSON) and go through the same parser, so
the API and the file accept the same things; what ``GET`` returns may be sent back
(``null`` means "not set", a device may be named by its id, a profile's ``then`` may be
the object ``GET`` shows). Secrets are write-only: leave ``pin`` or a device's
``password`` out to keep the stored one.

Every change is committed by :class:`~ivr.directory_service.DirectoryService` (checked,
stored with its audit entry, swapped in). ``ETag`` carries the object's version (a
device's or schedule's is its user's); a write with an ``If-Match`` that is no longer
current is 409. Users, devices and profiles are admin-only; a user may edit their own
schedules (an admin acting for them is audited with both identities).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet import defer

from ivr.admin import views
from ivr.admin.errors import ApiError, forbidden, invalid, not_found
from ivr.admin.http import ApiRequest, Reply, Route
from ivr.admin.validate import json_object, single
from ivr.config import (
    Config,
    ConfigError,
    ConfigErrors,
    parse_device,
    parse_profile,
    parse_schedule,
    parse_user,
)
from ivr.directory import device_data, schedule_data
from ivr.directory_service import Committed, DirectoryService, Inconsistent, VersionConflict
from ivr.routing.model import Device, Profile, Schedule, User
from ivr.sip.registrar import Registrar
from ivr.store.directory import DirectoryConflict

API = "/api/v1"


def _strip(value: Any) -> Any:
    """JSON ``null`` means "not set": drop such keys (the file has no null)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def bad_fields(exc: ConfigError) -> dict[str, str]:
    """Each key a parse error names, and why (the first reason when a key repeats);
    the keys are paths in the body (``name``, ``devices[0].password``)."""
    found: dict[str, str] = {}
    for error in exc.errors if isinstance(exc, ConfigErrors) else (exc,):
        found.setdefault(error.key or "body", error.reason)
    return found


def refuse(
    parse: Callable[[], object],
    known: dict[str, str] | None = None,
    fallback: dict[str, str] | None = None,
) -> ApiError:
    """The 422 for a body known to be bad, naming every field ``parse`` (which reads the
    whole body) finds wrong, the ``known`` ones (these win), and the ``fallback`` ones
    the parser does not name."""
    found = dict(fallback or {})
    try:
        parse()
    except ConfigError as exc:
        found.update(bad_fields(exc))
    return invalid({**found, **(known or {})})


def if_match(req: ApiRequest) -> int | None:
    """The version named by ``If-Match`` (``"3"``, ``W/"3"``, ``3``); ``*`` = any."""
    text = req.headers.get("if-match")
    if text is None or text.strip() == "*":
        return None
    tag = text.strip().removeprefix("W/").strip('"')
    if not tag.isascii() or not tag.isdigit() or len(tag) > 12:
        raise invalid({"If-Match": 'must be an ETag of this API (e.g. "3") or *'}, 400)
    return int(tag)


def etag(version: int) -> tuple[str, str]:
    return ("ETag", f'"{version}"')


def _same(body: dict[str, Any], name: str, expected: str) -> None:
    given = body.get(name, expected)
    if str(given) != expected:
        raise invalid({name: f"must match the path ({expected})"})
    body[name] = given


def profile_input(body: dict[str, Any]) -> dict[str, Any]:
    """A profile body in ``GET``'s shape → the file's shape."""
    body = _strip(body)
    plan = body.get("plan")
    if isinstance(plan, dict):
        then = plan.get("then")
        if isinstance(then, dict):
            action = then.get("action", "voicemail")
            if action == "forward" and then.get("target") is not None:
                action = f"forward:{then['target']}"
            steps = ["redirect", action] if then.get("redirect") else [action]
            extra = set(then) - {"redirect", "action", "target"}
            if extra:
                raise invalid({f"plan.then.{sorted(extra)[0]}": "unknown key"})
            plan["then"] = steps
        exceptions = plan.get("exceptions")
        if isinstance(exceptions, list):
            for e in exceptions:
                if isinstance(e, dict) and "callers" in e and "caller" not in e:
                    e["caller"] = e.pop("callers")
                if isinstance(e, dict) and e.get("ring") == []:
                    del e["ring"]
                if isinstance(e, dict) and e.get("caller") == []:
                    del e["caller"]
    return body


class DirectoryApi:
    """The directory's write resources (and the reads that carry ETags)."""

    def __init__(self, service: DirectoryService, registrar: Registrar, clock: Callable[[], float]):
        self.service = service
        self.registrar = registrar
        self.clock = clock

    @property
    def config(self) -> Config:
        return self.service.config

    def routes(self) -> list[Route]:
        """The table this class answers, under /api/v1."""
        return [
            Route("POST", "/users", self.create_user, auth="admin"),
            Route("PUT", "/users/{ext}", self.put_user, auth="admin"),
            Route("DELETE", "/users/{ext}", self.delete_user, auth="admin"),
            Route("POST", "/users/{ext}/devices", self.create_device, auth="admin"),
            Route("GET", "/users/{ext}/devices/{device}", self.get_device),
            Route("PUT", "/users/{ext}/devices/{device}", self.put_device, auth="admin"),
            Route("DELETE", "/users/{ext}/devices/{device}", self.delete_device, auth="admin"),
            Route("POST", "/profiles", self.create_profile, auth="admin"),
            Route("PUT", "/profiles/{profile}", self.put_profile, auth="admin"),
            Route("DELETE", "/profiles/{profile}", self.delete_profile, auth="admin"),
            Route("GET", "/users/{ext}/schedules", self.list_schedules),
            Route("POST", "/users/{ext}/schedules", self.create_schedule),
            Route("GET", "/users/{ext}/schedules/{schedule}", self.get_schedule),
            Route("PUT", "/users/{ext}/schedules/{schedule}", self.put_schedule),
            Route("DELETE", "/users/{ext}/schedules/{schedule}", self.delete_schedule),
        ]

    # helpers

    def _user(self, config: Config, extension: str) -> User:
        user = config.user(extension)
        if user is None:
            raise not_found("user", extension=extension)
        return user

    def _own(self, req: ApiRequest, extension: str) -> User:
        user = self._user(self.config, extension)
        if not req.who.may_access(user.extension):
            raise forbidden(f"only {user.extension} or an admin may do this")
        return user

    def _commit(
        self,
        req: ApiRequest,
        kind: str,
        key: str,
        build: Callable[[Config], Any],
        action: str,
        target_user: str,
        deleting: bool = False,
    ) -> defer.Deferred[Committed]:
        actor = req.who.extension
        behalf = target_user if target_user not in ("*", actor) else None
        d = self.service.commit(
            kind,
            key,
            build,
            if_match=if_match(req),
            actor=actor,
            action=action,
            target_user=target_user,
            on_behalf_of=behalf,
        )
        return d.addErrback(self._failed, kind, key, deleting)

    @staticmethod
    def _failed(failure: Any, kind: str, key: str, deleting: bool) -> Any:
        if failure.check(ConfigError):
            raise invalid(bad_fields(failure.value))
        if failure.check(ValueError):
            raise invalid({"body": str(failure.value)})
        if failure.check(VersionConflict):
            raise ApiError(
                409,
                "the object was changed meanwhile; fetch it and try again",
                current_version=failure.value.actual,
            )
        if failure.check(DirectoryConflict):
            raise ApiError(409, "the object was changed meanwhile; try again")
        if failure.check(Inconsistent):
            found = failure.value.problems
            mine = [p for p in found if p.kind == kind and p.key in (key, "*")]
            if mine and not deleting:
                raise invalid({p.field: p.reason for p in mine})
            raise ApiError(
                409,
                "the change would break other parts of the directory",
                conflicts=[f"{p.kind} {p.key}: {p.field}: {p.reason}" for p in found],
            )
        return failure

    def _user_reply(self, status: int, user: User, version: int) -> Reply:
        headers = [etag(version)]
        if status == 201:
            headers.append(("Location", f"{API}/users/{user.extension}"))
        return Reply.json(status, views.user_json(user, private=True), headers)

    # users

    def _user_body(self, body: dict[str, Any], old: User | None, config: Config) -> User:
        """The new user from a body; ``old`` supplies what the body leaves out."""
        body = _strip(body)
        if old is not None:
            _same(body, "extension", old.extension)
            body.setdefault("pin", old.pin)
            kept = {d.id: device_data(d, secrets=True) for d in old.devices}
            if "devices" not in body:
                body["devices"] = list(kept.values())
            if "schedules" not in body:
                body["schedules"] = [schedule_data(s) for s in old.schedules]
        else:
            kept = {}
        devices = body.get("devices")
        unknown: dict[str, str] = {}  # named with the parser's findings
        if isinstance(devices, list):
            out = []
            for i, item in enumerate(devices):
                if isinstance(item, str):
                    if item not in kept:
                        unknown[f"devices[{i}]"] = f"no device {item!r} (give a table)"
                    out.append(kept.get(item, item))
                    continue
                if isinstance(item, dict):
                    item = {k: v for k, v in item.items() if k != "registrations"}
                    prev = kept.get(str(item.get("id")))
                    if prev is not None and "password" in prev and prev["kind"] == item.get("kind"):
                        item.setdefault("password", prev["password"])
                out.append(item)
            body["devices"] = out
        path = f"{API}/users" + ("" if old is None else f"/{old.extension}")
        if unknown:
            raise refuse(lambda: parse_user(body, config.company, config.profiles, path), unknown)
        return parse_user(body, config.company, config.profiles, path)

    def create_user(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """POST /users (admin): a new user with devices and schedules."""
        single(req.query, frozenset())
        body = json_object(req.body, req.content_type)
        raw = body.get("extension")
        key = str(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else ""

        def build(config: Config) -> User:
            user = self._user_body(body, None, config)
            if config.user(user.extension) is not None:
                raise ApiError(409, "a user with this extension exists", extension=user.extension)
            return user

        if not key:
            config = self.config
            raise refuse(
                lambda: self._user_body(body, None, config), fallback={"extension": "is required"}
            )
        d = self._commit(req, "user", key, build, "user.create", key)
        return d.addCallback(lambda c: self._user_reply(201, c.obj, c.version))

    def put_user(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """PUT /users/{ext} (admin): replace a user (secrets and devices kept if left out)."""
        single(req.query, frozenset())
        ext = req.params["ext"]
        self._user(self.config, ext)
        body = json_object(req.body, req.content_type)

        def build(config: Config) -> User:
            return self._user_body(dict(body), self._user(config, ext), config)

        d = self._commit(req, "user", ext, build, "user.update", ext)
        return d.addCallback(lambda c: self._user_reply(200, c.obj, c.version))

    def delete_user(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """DELETE /users/{ext} (admin): the user and their devices' registrations go, and
        their stored data with them (state, queue choice, tokens, voicemail, greetings,
        name, PIN counters; the audit entry counts what went): a new user given the
        extension starts clean. Calls in progress go on."""
        single(req.query, frozenset())
        ext = req.params["ext"]
        self._user(self.config, ext)
        if ext == req.who.extension:
            raise ApiError(409, "you cannot delete your own user")

        def build(config: Config) -> None:
            self._user(config, ext)
            return _delete(config)

        d = self._commit(req, "user", ext, build, "user.delete", ext, deleting=True)
        return d.addCallback(lambda _c: Reply(204, b""))

    # devices

    def _device_reply(self, status: int, user: User, device: Device, version: int) -> Reply:
        now = self.clock()
        domain = self.config.sip.domain
        bindings = (
            self.registrar.lookup(f"sip:{device.username}@{domain}", now) if device.is_sip else []
        )
        headers = [etag(version)]
        if status == 201:
            headers.append(("Location", f"{API}/users/{user.extension}/devices/{device.id}"))
        return Reply.json(status, views.device_json(device, bindings, now), headers)

    def _device(self, user: User, device_id: str) -> Device:
        device = user.device(device_id)
        if device is None:
            raise not_found("device", extension=user.extension, device=device_id)
        return device

    def _device_body(
        self, body: dict[str, Any], user: User, old: Device | None, config: Config
    ) -> Device:
        body = _strip({k: v for k, v in body.items() if k != "registrations"})
        path = f"{API}/users/{user.extension}/devices"
        if old is not None:
            _same(body, "id", old.id)
            path += f"/{old.id}"
            if old.password is not None and body.get("kind", old.kind) == old.kind:
                body.setdefault("password", old.password)
        return parse_device(body, user, config.company, path)

    def get_device(self, req: ApiRequest) -> Reply:
        """GET /users/{ext}/devices/{device}: own user or admin; no password."""
        single(req.query, frozenset())
        user = self._own(req, req.params["ext"])
        device = self._device(user, req.params["device"])
        version = self.service.directory.version("user", user.extension)
        return self._device_reply(200, user, device, version)

    def create_device(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """POST /users/{ext}/devices (admin)."""
        single(req.query, frozenset())
        ext = req.params["ext"]
        self._user(self.config, ext)
        body = json_object(req.body, req.content_type)
        made: list[Device] = []

        def build(config: Config) -> User:
            user = self._user(config, ext)
            device = self._device_body(dict(body), user, None, config)
            if user.device(device.id) is not None:
                raise ApiError(409, "the user has a device with this id", device=device.id)
            made.append(device)
            return _with_devices(user, (*user.devices, device))

        d = self._commit(req, "user", ext, build, "device.create", ext)
        return d.addCallback(lambda c: self._device_reply(201, c.obj, made[-1], c.version))

    def put_device(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """PUT /users/{ext}/devices/{device} (admin): a new password applies at the next
        REGISTER; a changed username drops the old registrations."""
        single(req.query, frozenset())
        ext, device_id = req.params["ext"], req.params["device"]
        self._device(self._user(self.config, ext), device_id)
        body = json_object(req.body, req.content_type)
        made: list[Device] = []

        def build(config: Config) -> User:
            user = self._user(config, ext)
            old = self._device(user, device_id)
            device = self._device_body(dict(body), user, old, config)
            made.append(device)
            return _with_devices(user, tuple(device if d.id == old.id else d for d in user.devices))

        d = self._commit(req, "user", ext, build, "device.update", ext)
        return d.addCallback(lambda c: self._device_reply(200, c.obj, made[-1], c.version))

    def delete_device(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """DELETE /users/{ext}/devices/{device} (admin): its registrations are dropped."""
        single(req.query, frozenset())
        ext, device_id = req.params["ext"], req.params["device"]
        self._device(self._user(self.config, ext), device_id)

        def build(config: Config) -> User:
            user = self._user(config, ext)
            self._device(user, device_id)
            return _with_devices(user, tuple(d for d in user.devices if d.id != device_id))

        d = self._commit(req, "user", ext, build, "device.delete", ext)
        return d.addCallback(lambda _c: Reply(204, b""))

    # profiles

    def _profile(self, config: Config, key: str) -> Profile:
        found = config.rules.get(key)
        if found is None:
            raise not_found("profile", profile=key)
        return found

    def _profile_reply(self, status: int, profile: Profile, version: int) -> Reply:
        headers = [etag(version)]
        if status == 201:
            headers.append(("Location", f"{API}/profiles/{profile.id}"))
        return Reply.json(status, views.profile_json(profile), headers)

    def create_profile(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """POST /profiles (admin)."""
        single(req.query, frozenset())
        body = profile_input(json_object(req.body, req.content_type))
        key = body.get("id")
        if not isinstance(key, str) or not key:
            company = self.config.company
            raise refuse(
                lambda: parse_profile(dict(body), company, f"{API}/profiles"),
                fallback={"id": "is required (a string)"},
            )

        def build(config: Config) -> Profile:
            profile = parse_profile(dict(body), config.company, f"{API}/profiles")
            if config.rules.get(profile.id) is not None:
                raise ApiError(409, "a profile with this id exists", profile=profile.id)
            return profile

        d = self._commit(req, "profile", key, build, "profile.create", "*")
        return d.addCallback(lambda c: self._profile_reply(201, c.obj, c.version))

    def put_profile(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """PUT /profiles/{profile} (admin): replace a profile (by id)."""
        single(req.query, frozenset())
        key = req.params["profile"]
        self._profile(self.config, key)
        body = profile_input(json_object(req.body, req.content_type))
        _same(body, "id", key)

        def build(config: Config) -> Profile:
            self._profile(config, key)
            return parse_profile(dict(body), config.company, f"{API}/profiles/{key}")

        d = self._commit(req, "profile", key, build, "profile.update", "*")
        return d.addCallback(lambda c: self._profile_reply(200, c.obj, c.version))

    def delete_profile(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """DELETE /profiles/{profile} (admin): refused (409) while schedules use it or it is
        the standard profile; active entries naming it are skipped from then on."""
        single(req.query, frozenset())
        key = req.params["profile"]
        self._profile(self.config, key)

        def build(config: Config) -> None:
            self._profile(config, key)
            return _delete(config)

        d = self._commit(req, "profile", key, build, "profile.delete", "*", deleting=True)
        return d.addCallback(lambda _c: Reply(204, b""))

    # schedules

    def _schedule_reply(self, status: int, user: User, schedule_id: str, version: int) -> Reply:
        schedule = next(s for s in user.schedules if s.id == schedule_id)
        headers = [etag(version)]
        if status == 201:
            where = f"{API}/users/{user.extension}/schedules/{schedule.id}"
            headers.append(("Location", where))
        return Reply.json(status, views.schedule_json(schedule), headers)

    def _schedule_index(self, user: User, schedule_id: str) -> int:
        for i, s in enumerate(user.schedules):
            if s.id == schedule_id:
                return i
        raise not_found("schedule", extension=user.extension, schedule=schedule_id)

    def list_schedules(self, req: ApiRequest) -> Reply:
        """GET /users/{ext}/schedules: own user or admin."""
        single(req.query, frozenset())
        user = self._own(req, req.params["ext"])
        version = self.service.directory.version("user", user.extension)
        body = [views.schedule_json(s) for s in user.schedules]
        return Reply.json(200, body, [etag(version)])

    def get_schedule(self, req: ApiRequest) -> Reply:
        """GET /users/{ext}/schedules/{schedule}: own user or admin."""
        single(req.query, frozenset())
        user = self._own(req, req.params["ext"])
        self._schedule_index(user, req.params["schedule"])
        version = self.service.directory.version("user", user.extension)
        return self._schedule_reply(200, user, req.params["schedule"], version)

    def _schedule_write(
        self, req: ApiRequest, schedule_id: str | None, action: str
    ) -> defer.Deferred[Reply]:
        single(req.query, frozenset())
        ext = self._own(req, req.params["ext"]).extension
        body = _strip(json_object(req.body, req.content_type))
        if schedule_id is not None:
            self._schedule_index(self._user(self.config, ext), schedule_id)
            _same(body, "id", schedule_id)
        made: list[str] = []

        def build(config: Config) -> User:
            user = self._user(config, ext)
            items = list(user.schedules)
            if schedule_id is None:
                where = f"{API}/users/{ext}/schedules"
                schedule = parse_schedule(dict(body), config.profiles, where, len(items))
                if any(s.id == schedule.id for s in items):
                    raise ApiError(409, "the user has a schedule with this id", id=schedule.id)
                items.append(schedule)
            else:
                where = f"{API}/users/{ext}/schedules/{schedule_id}"
                i = self._schedule_index(user, schedule_id)
                items[i] = schedule = parse_schedule(dict(body), config.profiles, where, i)
            made.append(schedule.id)
            return _with_schedules(user, tuple(items))

        d = self._commit(req, "user", ext, build, action, ext)
        status = 201 if schedule_id is None else 200
        return d.addCallback(lambda c: self._schedule_reply(status, c.obj, made[-1], c.version))

    def create_schedule(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """POST /users/{ext}/schedules: own user or admin."""
        return self._schedule_write(req, None, "schedule.create")

    def put_schedule(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """PUT /users/{ext}/schedules/{schedule}: own user or admin."""
        return self._schedule_write(req, req.params["schedule"], "schedule.update")

    def delete_schedule(self, req: ApiRequest) -> defer.Deferred[Reply]:
        """DELETE /users/{ext}/schedules/{schedule}: own user or admin."""
        single(req.query, frozenset())
        ext = self._own(req, req.params["ext"]).extension
        schedule_id = req.params["schedule"]
        self._schedule_index(self._user(self.config, ext), schedule_id)

        def build(config: Config) -> User:
            user = self._user(config, ext)
            self._schedule_index(user, schedule_id)
            return _with_schedules(user, tuple(s for s in user.schedules if s.id != schedule_id))

        d = self._commit(req, "user", ext, build, "schedule.delete", ext)
        return d.addCallback(lambda _c: Reply(204, b""))


def _delete(config: Config) -> None:
    """A build that deletes the object."""
    return None


def _with_devices(user: User, devices: tuple[Device, ...]) -> User:
    return replace(user, devices=devices)


def _with_schedules(user: User, schedules: tuple[Schedule, ...]) -> User:
    return replace(user, schedules=schedules)
