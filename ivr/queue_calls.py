"""Call queues at the edge: membership over the store, and calls to a queue's number.

:class:`QueueService` runs the queue commands (``*45`` login/logout toggle, ``*46``
pause) against the store with their audit entries, clears a user's own choice when
their profile changes (a :class:`~ivr.profile_service.ProfileService` listener), and
reads what a queue call needs. The rules are pure, in :mod:`ivr.routing.queues`.

:class:`QueueCall` carries out a call to a queue: every logged-in, unpaused, available
member's chosen devices ring at once through one :class:`~ivr.b2bua.Bridge` (run by
:class:`~ivr.user_calls.BridgeRunner`): the first answer wins and the others are
CANCELled. No answer within the queue's ring time, or nobody to ring: the queue's
fallback, handed to a :class:`~ivr.user_calls.UserCall` (voicemail in the named box,
a forward routed like any forward, or busy).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from ivr.b2bua import NotReached, Target
from ivr.call_records import CallRecordBuilder
from ivr.config import User
from ivr.logs import Logger
from ivr.routing import decide as routing
from ivr.routing.commands import CommandResult
from ivr.routing.features import QueuePause, QueueToggle
from ivr.routing.profiles import Effective
from ivr.routing.queues import (
    Candidate,
    Membership,
    Queue,
    QueueChange,
    QueueState,
    as_queue_period,
    memberships,
    profile_changed,
    queue_decision,
    queue_effective,
    toggle_login,
    toggle_pause,
)
from ivr.routing.state import AuditEntry, UserState, Via
from ivr.sip.core import ServerRequest
from ivr.store.errors import ConflictError
from ivr.user_calls import (
    BridgeRunner,
    Identity,
    RingingCall,
    UserCall,
    mobile_targets,
    with_public_identity,
)

if TYPE_CHECKING:
    from ivr.calls import CallManager
    from ivr.profile_service import ProfileService

log = Logger(namespace="ivr.queues")

MAX_ATTEMPTS = 3


def _snapshot(store: Any, users: list[str]) -> dict[str, tuple[UserState, QueueState]]:
    """On the store thread: each user's profile state and queue state."""
    queues = store.queues.get_many(users)
    return {user: (store.states.get(user), queues[user]) for user in users}


class QueueService:
    """The one way queue membership changes (phone, profile changes), and its reads.

    Built on the profile service: the same store, clock and (live) directory. With
    ``listen`` (the one the call manager makes) it registers for profile changes; a
    read-only one (the HTTP API's) does not."""

    def __init__(self, profiles: ProfileService, *, listen: bool = True) -> None:
        self.profiles = profiles
        self._locks: dict[str, defer.DeferredLock] = {}
        if listen:
            profiles.listeners.append(self.profile_changed)

    # -- reads -----------------------------------------------------------------------

    @defer.inlineCallbacks
    def _read(self, users: Iterable[User]) -> Any:
        """``(user, effective profile now, stored queue state)`` for each user."""
        users = list(users)
        rows = yield self.profiles.store.run(_snapshot, [u.extension for u in users])
        now = self.profiles.now()
        rules = self.profiles.config.rules
        found: list[Candidate] = []
        for user in users:
            state, queue_state = rows[user.extension]
            eff = queue_effective(state, user.schedules, now, rules)
            found.append(Candidate(user=user, effective=eff, state=queue_state))
        return found

    def candidates(self, queue: Queue) -> defer.Deferred[list[Candidate]]:
        """Every user who belongs to ``queue``, with their profile and queue state now."""
        users = [u for u in self.profiles.config.users if queue.id in u.queues]
        return self._read(users)

    def everyone(self) -> defer.Deferred[list[Candidate]]:
        """Every user who belongs to any queue (for the API)."""
        return self._read(u for u in self.profiles.config.users if u.queues)

    def memberships(self, candidate: Candidate) -> tuple[Membership, ...]:
        """The candidate's queues: logged in, paused, ring kinds."""
        rules = self.profiles.config.rules
        return memberships(candidate.user, candidate.effective, candidate.state, rules)

    # -- *45 / *46 ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def execute(
        self,
        extension: str,
        command: QueueToggle | QueuePause,
        *,
        actor: str,
        via: Via,
        on_behalf_of: str | None = None,
    ) -> Any:
        """Toggle login (``*45``) or pause (``*46``) for ``extension``; fires with the
        :class:`~ivr.routing.queues.QueueChange` (stored with its audit entry)."""
        user = self.profiles.config.user(extension)
        if user is None:
            raise LookupError(extension)
        lock = self._locks.setdefault(extension, defer.DeferredLock())
        yield lock.acquire()
        try:
            for attempt in range(MAX_ATTEMPTS):
                (found,) = yield self._read([user])
                now = self.profiles.now()
                rules = self.profiles.config.rules
                step = toggle_login if isinstance(command, QueueToggle) else toggle_pause
                change: QueueChange = step(
                    user, found.effective, found.state, rules, by=actor, via=via, now=now
                )
                if not change.changed:
                    return change
                entry = AuditEntry(
                    at=now,
                    actor=actor,
                    action=change.action,
                    target_user=extension,
                    via=via,
                    detail=change.detail,
                    on_behalf_of=on_behalf_of,
                )
                try:
                    saved = yield self.profiles.store.save_queue_state(
                        change.state, found.state.version, entry
                    )
                except ConflictError:
                    if attempt == MAX_ATTEMPTS - 1:
                        raise
                    continue
                return replace(change, state=saved)
        finally:
            lock.release()
        raise AssertionError("unreachable")

    # -- profile changes -----------------------------------------------------------------

    def profile_changed(
        self, user: User, result: CommandResult, entry: AuditEntry
    ) -> defer.Deferred[None]:
        """A stored profile change: the user's own queue choice (``*45``/``*46``) lapses
        and the new profile decides. A login or logout it brings gets an audit entry of
        its own (same actor, way and time, ``because`` naming the profile). Never fails
        (the profile change is already stored): problems are logged."""
        d = self._profile_changed(user, result.before, result.after, entry)
        d.addErrback(
            lambda f: log.failure("queue update after a profile change failed", f, user=user)
        )
        return d

    @defer.inlineCallbacks
    def _profile_changed(
        self, user: User, before: Effective, after: Effective, cause: AuditEntry
    ) -> Any:
        if not user.queues:
            return None
        rules = self.profiles.config.rules
        # the periods as the queue side dates them, so that a *45 choice is recognised
        before = as_queue_period(before, user.schedules, cause.at, rules)
        after = as_queue_period(after, user.schedules, cause.at, rules)
        lock = self._locks.setdefault(user.extension, defer.DeferredLock())
        yield lock.acquire()
        try:
            for attempt in range(MAX_ATTEMPTS):
                states = yield self.profiles.store.get_queue_states([user.extension])
                state = states[user.extension]
                rules = self.profiles.config.rules
                change = profile_changed(user, before, after, state, rules)
                entry = None
                if change.action != "none":
                    entry = AuditEntry(
                        at=cause.at,
                        actor=cause.actor,
                        action=change.action,
                        target_user=user.extension,
                        via=cause.via,
                        detail={**change.detail, "because": f"profile {after.profile.id}"},
                        on_behalf_of=cause.on_behalf_of,
                    )
                if not change.changed:
                    if entry is not None:
                        yield self.profiles.store.append_audit(entry)
                    return None
                try:
                    yield self.profiles.store.save_queue_state(change.state, state.version, entry)
                except ConflictError:
                    if attempt == MAX_ATTEMPTS - 1:
                        raise
                    continue
                return None
        finally:
            lock.release()
        return None


class QueueCall(RingingCall):
    """A call to a queue: ring the available members' devices at once, first answer
    wins; else the queue's fallback. Implements what :class:`BridgeRunner` calls back.

    ``state``: ``routing`` → ``ringing`` → ``bridged``, ``handed-over`` (the fallback's
    :class:`UserCall` has the call, and the call record with it) or ``ended``. The
    call record (kind ``queue``, user = the queue's number) lists the members rung."""

    def __init__(
        self,
        manager: CallManager,
        invite: ServerRequest,
        caller: User,
        max_forwards: int,
        queue: Queue,
        *,
        kind: str = "desk",
    ) -> None:
        self.caller = caller
        self.queue = queue
        self.kind = kind  # the calling device's kind: its caller-ID towards the trunk
        self._members: list[User] = []  # the candidates, while their devices ring
        self._public: tuple[str, tuple[tuple[str, str], ...]] | None = None  # for mobiles
        record = CallRecordBuilder(
            id=manager.record_ids(),
            kind="queue",
            caller=caller.extension,
            caller_user=caller.extension,
            dialled=queue.number,
            started_at=manager.services.now(),
        )
        super().__init__(manager, invite, max_forwards, record)

    def describe(self) -> str:
        return f"queue {self.queue.id} call from {self.caller.extension}"

    def start(self, queues: QueueService) -> None:
        """Read the members' state, then ring (or fall back at once)."""
        d = queues.candidates(self.queue)
        d.addCallbacks(self._decide, self._failed)

    def _decide(self, candidates: list[Candidate]) -> None:
        if self.state != "routing":
            return  # cancelled meanwhile
        rules = self.manager.services.config.rules
        decision = queue_decision(self.queue, candidates, rules)
        self.record.decided(self.queue.number, decision.trace, self.manager.services.now())
        if isinstance(decision, routing.Ring):  # the members rung are parties too
            rung = {d.id for d in decision.devices}
            users = self.record.users
            for c in candidates:
                ext = c.user.extension
                if ext not in users and any(d.id in rung for d in c.user.devices):
                    users.append(ext)
        log.info(
            "call {caller} → queue {queue}: {trace}",
            caller=self.caller.extension,
            queue=self.queue.id,
            trace=decision.explain(),
        )
        if isinstance(decision, routing.Ring):
            self._members = [c.user for c in candidates]
            self._ring_with_mobiles(decision)
        else:
            self._fallback(decision)

    def _ring_with_mobiles(self, decision: routing.Ring) -> None:
        """Members' mobiles ring through the trunk and show the caller's caller-ID (from
        their active profile): read it first when a mobile is to ring."""
        services = self.manager.services
        mobiles = [d for d in decision.devices if d.kind == "mobile" and d.number]
        if not mobiles or services.config.trunk is None:
            self._ring(decision)
            return

        def go(identity: Identity) -> None:
            self._public = identity
            self._ring(decision)

        with_public_identity(self, self.caller, self.kind, go, self._failed)

    def _mobile_targets(self, decision: routing.Ring) -> list[Target]:
        """A leg through the trunk to each ringing member's mobile (MEX)."""
        config = self.manager.services.config
        trunk, public = config.trunk, self._public
        if trunk is None or public is None:
            return []
        found: list[Target] = []
        for member in self._members:
            mine = [d for d in member.devices if d.kind == "mobile" and d in decision.devices]
            found += mobile_targets(trunk, mine, member, config, public)
        return found

    def _failed(self, failure: Any) -> None:
        log.failure("queue call to {queue} failed", failure, queue=self.queue.id)
        self.reject(500, "Queue routing failed")

    def _ring(self, decision: routing.Ring) -> None:
        targets: list[Target] = self.manager.targets(decision.devices)
        targets += self._mobile_targets(decision)
        if not targets:
            log.info("no registered member device: {then}", then=decision.then.explain())
            self._fallback(decision.then)
            return
        self.record.carried_out(decision, self.manager.services.now())
        self._fork(targets, float(decision.timeout), decision.then, self.queue.number)

    def _from_value(self, domain: str) -> str:
        """The caller as members see it: "Queue: Name" <sip:ext@domain>."""
        name = f"{self.queue.name}: {self.caller.name}".replace("\\", "\\\\").replace('"', '\\"')
        return f'"{name}" <sip:{self.caller.extension}@{domain}>'

    def _fallback(self, decision: routing.Decision) -> None:
        """Hand the call to a :class:`UserCall` that carries out the fallback."""
        if self.state not in ("routing", "ringing"):
            return
        self.state = "handed-over"
        self.runner = None
        call = UserCall(self.manager, self.invite, self.caller, self.max_forwards, kind=self.kind)
        call.record = self.record  # one record for the whole call
        call.dialled = self.queue.number
        if isinstance(decision, routing.Voicemail):
            owner = self.manager.services.config.user(decision.box)
            if owner is None:
                call.reject(480, "Queue mailbox missing")
                return
            call.user = owner
        call.run(decision)

    # -- from the bridge -----------------------------------------------------------------

    def not_reached(self, runner: BridgeRunner, result: NotReached) -> None:
        if runner is not self.runner or self.state != "ringing" or self.then is None:
            return
        now = self.manager.services.now()
        self.record.not_reached(runner.leg_base, result.statuses, result.reason, now)
        log.info(
            "queue {queue}: nobody answered ({reason}, {statuses}): {then}",
            queue=self.queue.id,
            reason=result.reason,
            statuses=result.statuses,
            then=self.then.explain(),
        )
        self._fallback(self.then)
