"""The composition root: config → stores → SIP core → transports → HTTP. Nothing imports it."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from ivr import __version__
from ivr.admin.service import admin_site, custom_prompts_dir
from ivr.calls import CallManager, CallServices
from ivr.config import Config
from ivr.directory import Directory
from ivr.directory_service import DirectoryService, dropped_usernames
from ivr.lag_probe import LagProbe
from ivr.media.prompts import PromptLibrary
from ivr.media.session import MediaEngine
from ivr.profile_service import ProfileService, effective_json
from ivr.randomness import PooledSystemRandom
from ivr.registration import RegisterOutcome, RegistrationService, server_uri_policy
from ivr.sip.auth import DigestAuth
from ivr.sip.core import SipCore
from ivr.sip.ids import Ids
from ivr.sip.registrar import Binding, Registrar
from ivr.sip.transport import SipRuntime
from ivr.sipapp import SipApplication
from ivr.store.async_store import AsyncStore

log = Logger(namespace="ivr.app")

ORPHAN_SWEEP_INTERVAL = 3600.0  # seconds between sweeps of voicemail files without a row
FLUSH_INTERVAL = 1.0


@dataclass
class Overrides:
    """Command-line values that win over the config file."""

    sip_host: str | None = None
    sip_port: int | None = None
    http_host: str | None = None
    http_port: int | None = None
    rtp_ports: tuple[int, int] | None = None
    db: str | None = None
    auth_algorithms: tuple[str, ...] | None = None
    auth_uri_check: str | None = None
    custom_prompts_dir: str | None = None


@dataclass
class Service:
    """A running ivr: what ``start`` built, for ``stop`` and for tests."""

    config: Config
    reactor: Any
    store: AsyncStore
    registrar: Registrar
    core: SipCore
    runtime: SipRuntime
    sip_port: int = 0
    http_port: int = 0
    started_at: float = 0.0
    media: Any = None
    calls: Any = None
    _http: Any = None
    _loops: list[task.LoopingCall] = field(default_factory=list)
    lag_probe: LagProbe | None = None  # feeds the overload guard
    _upserts: dict[tuple[str, str], Binding] = field(default_factory=dict)
    _deletes: set[tuple[str, str]] = field(default_factory=set)

    def health(self) -> dict[str, object]:
        now = self.reactor.seconds()
        return {
            "status": "ok",
            "version": __version__,
            "uptime": round(now - self.started_at, 3),
            "registrations": self.registrar.count(now),
            "active_calls": self.calls.active_calls if self.calls is not None else 0,
            "overloaded": self.calls.services.overload.overloaded if self.calls else False,
            "sip": {"host": self.runtime.host, "port": self.sip_port},
        }

    def bindings_changed(self, outcome: RegisterOutcome) -> None:
        for binding in outcome.changed:
            self._deletes.discard(binding.key)
            self._upserts[binding.key] = binding
        self._forget(outcome.removed)

    def directory_changed(self, old: Config, new: Config) -> None:
        """A device (SIP username) left the directory: drop its bindings."""
        gone = dropped_usernames(old, new)
        if not gone:
            return
        domain = new.sip.domain
        aors = {f"sip:{name}@{domain}" for name in gone}
        kept = [b for b in self.registrar.all_bindings() if b.aor not in aors]
        dropped = [b for b in self.registrar.all_bindings() if b.aor in aors]
        self.registrar.restore(kept)
        self._forget(dropped)

    def _forget(self, bindings: Iterable[Binding]) -> None:
        for binding in bindings:
            self._upserts.pop(binding.key, None)
            self._deletes.add(binding.key)

    def flush_bindings(self) -> defer.Deferred[None]:
        """Write-behind: persist binding changes since the last flush in one transaction."""
        self._forget(self.registrar.expire(self.reactor.seconds()))
        if not self._upserts and not self._deletes:
            return defer.succeed(None)
        upserts, self._upserts = list(self._upserts.values()), {}
        deletes, self._deletes = list(self._deletes), set()
        return self.store.apply_registrations(upserts=upserts, deletes=deletes)

    @defer.inlineCallbacks
    def stop(self) -> Any:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        if self.lag_probe is not None:
            self.lag_probe.stop()
        yield self.runtime.stop()
        if self.media is not None:
            self.media.close()
        if self._http is not None:
            yield self._http.stopListening()
        yield self.flush_bindings()
        yield self.store.stop()


def sweep_orphans(store: AsyncStore) -> Any:
    """Remove voicemail files no row points at (logged; a failure is logged, not raised)."""

    def swept(paths: list[Path]) -> None:
        if paths:
            log.info("removed {n} voicemail files without a message", n=len(paths))

    d = store.remove_voicemail_orphans()
    d.addCallbacks(swept, lambda f: log.failure("voicemail orphan sweep failed", f))
    return d


def device_algorithms(config: Config | Directory) -> Any:
    """The digest algorithms configured for a device (None: the server's list), read from
    the live directory at each request."""
    directory = config if isinstance(config, Directory) else Directory(config)

    def algorithms(username: str) -> tuple[str, ...] | None:
        found = directory.config.device_by_username(username)
        return None if found is None else found[1].auth_algorithms

    return algorithms


def profile_view(profiles: ProfileService) -> Any:
    """GET /api/users/{ext}/profile: the effective profile, with source and end."""

    def view(extension: str) -> Any:
        user = profiles.config.user(extension)
        if user is None:
            return (404, {"error": "unknown user", "field": "extension", "value": extension})
        d = profiles.current(user.extension)
        return d.addCallback(lambda found: (200, effective_json(found, user.language)))

    return view


@defer.inlineCallbacks
def start(reactor: Any, config: Config, overrides: Overrides | None = None) -> Any:
    """Build and start every part; returns the running :class:`Service`."""
    o = overrides or Overrides()
    sip_host = o.sip_host or config.sip.host
    sip_port = config.sip.port if o.sip_port is None else o.sip_port
    http_host = o.http_host or config.http.host
    http_port = config.http.port if o.http_port is None else o.http_port
    db_path = o.db or str(config.store.path)

    store = AsyncStore.for_path(db_path, reactor, recordings_dir=config.recordings_dir)
    yield store.start()
    secret = config.sip.auth_secret
    if secret is None:
        secret_bytes = yield store.auth_secret()
    else:
        secret_bytes = secret.encode("utf-8")
    registrar = Registrar(
        min_expires=config.sip.min_expires,
        max_expires=config.sip.max_expires,
        default_expires=config.sip.default_expires,
    )
    stored = yield store.load_registrations()
    now = reactor.seconds()
    registrar.restore([b for b in stored if b.expires_at > now])

    rng = PooledSystemRandom()
    auth = DigestAuth(
        config.sip.realm,
        secret_bytes,
        nonce_lifetime=config.sip.nonce_lifetime,
        algorithms=o.auth_algorithms or config.sip.auth_algorithms,
        random_bytes=rng.randbytes,
    )

    tz = config.company.tz

    def wall_now() -> datetime:
        return datetime.fromtimestamp(reactor.seconds(), tz=tz)

    directory_service = yield DirectoryService.load(config, store, wall_now)
    directory = directory_service.directory

    def lookup(username: str) -> str | None:
        found = directory.config.device_by_username(username)
        return None if found is None else found[1].password

    uri_check = o.auth_uri_check or config.sip.auth_uri_check
    core_ref: dict[str, SipCore] = {}

    def our_names() -> tuple[set[str], int]:
        core = core_ref["core"]
        return {core.host, config.sip.domain, config.sip.realm}, core.port

    registration = RegistrationService(
        domain=config.sip.domain,
        auth=auth,
        registrar=registrar,
        lookup=lookup,
        server_uri_ok=server_uri_policy(our_names) if uri_check == "server" else None,
        algorithms_for=device_algorithms(directory),
    )
    service_ref: dict[str, Service] = {}
    application = SipApplication(
        registration=registration,
        now=reactor.seconds,
        on_bindings_changed=lambda outcome: service_ref["s"].bindings_changed(outcome),
    )
    core = SipCore(
        application,
        host=sip_host,
        port=sip_port,
        max_size=config.sip.max_message_size,
        ids=Ids(rng),
    )
    core_ref["core"] = core
    profiles = ProfileService(directory, store, wall_now)
    rtp_low, rtp_high = o.rtp_ports or (config.rtp.port_min, config.rtp.port_max)
    rtp_host = config.rtp.host
    # A late tick sends up to 10 frames at once: the phone's jitter buffer absorbs a burst,
    # while skipped frames would be gone from the prompt for good.
    media = MediaEngine(reactor, rtp_host, rtp_low, rtp_high, rng, max_burst=10)
    custom_prompts = Path(o.custom_prompts_dir or custom_prompts_dir(db_path))
    prompts = PromptLibrary(config.prompts_dir, custom=custom_prompts)
    for lang in ("sv", "en"):
        prompts.preload(lang, prompts.names(lang))
    calls = CallManager(
        CallServices(
            core=core,
            directory=directory,
            auth=registration,
            profiles=profiles,
            media=media,
            prompts=prompts,
            rng=rng,
            now=wall_now,
            rtp_host=rtp_host,
            reactor=reactor,
            registrar=registrar,
            store=store,
            directory_service=directory_service,
        )
    )
    application.calls = calls
    runtime = SipRuntime(
        reactor,
        core,
        host=sip_host,
        port=sip_port,
        transports=config.sip.transports,
        tcp_idle_timeout=config.sip.tcp_idle_timeout,
        max_size=config.sip.max_message_size,
    )
    service = Service(
        config=config,
        reactor=reactor,
        store=store,
        registrar=registrar,
        core=core,
        runtime=runtime,
        started_at=reactor.seconds(),
    )
    service_ref["s"] = service
    directory.on_change(service.directory_changed)
    service.sip_port = runtime.start()

    service.media = media
    service.calls = calls
    http_site = admin_site(
        reactor=reactor,
        directory=directory_service,
        profiles=profiles,
        store=store,
        registrar=registrar,
        health=service.health,
        profile_view=profile_view(profiles),
        custom_prompts=custom_prompts,
        now=wall_now,
        counters=calls.services.counters.all,
    )
    service._http = reactor.listenTCP(http_port, http_site, interface=http_host)
    service.http_port = service._http.getHost().port

    flush = task.LoopingCall(service.flush_bindings)
    flush.clock = reactor
    flush.start(FLUSH_INTERVAL, now=False).addErrback(
        lambda f: log.failure("binding flush failed", f)
    )
    service._loops.append(flush)
    # voicemail files without a row (a crash between file and row, or after a purge):
    # swept now and hourly (only files older than 10 minutes: never one being saved)
    sweep = task.LoopingCall(sweep_orphans, store)
    sweep.clock = reactor
    sweep.start(ORPHAN_SWEEP_INTERVAL, now=True).addErrback(
        lambda f: log.failure("voicemail orphan sweep failed", f)
    )
    service._loops.append(sweep)
    service.lag_probe = LagProbe(reactor, calls.services.overload)
    service.lag_probe.start()
    log.info(
        "ivr {version} listening: SIP {transports} {host}:{port}, HTTP {hhost}:{hport}",
        version=__version__,
        transports="/".join(config.sip.transports),
        host=sip_host,
        port=service.sip_port,
        hhost=http_host,
        hport=service.http_port,
    )
    # A machine-readable line for tests and scripts that start us on port 0.
    print(
        f"READY sip={sip_host}:{service.sip_port} http={http_host}:{service.http_port}",
        file=sys.stdout,
        flush=True,
    )
    return service
