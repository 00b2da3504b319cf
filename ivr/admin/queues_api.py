"""``/api/v1/queues``: the call queues and their members, read-only.

Each member shows whether they are logged in (and why: their profile or their own
``*45``), paused (``*46``), which device kinds ring for the queue, their profile in
force, and whether a queue call would ring them now.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from ivr.admin.errors import not_found
from ivr.admin.http import ApiRequest, Reply, Route
from ivr.admin.validate import single
from ivr.queue_calls import QueueService
from ivr.routing.queues import Candidate, Queue


class QueuesApi:
    """Queue resources over a (read-only) :class:`QueueService`."""

    def __init__(self, queues: QueueService) -> None:
        self.queues = queues

    def routes(self) -> list[Route]:
        """The table this class answers, under /api/v1 (any authenticated user)."""
        return [
            Route("GET", "/queues", self.list),
            Route("GET", "/queues/{id}", self.show),
        ]

    def _view(self, queue: Queue, found: list[Candidate]) -> dict[str, object]:
        members: list[dict[str, object]] = []
        for c in found:
            membership = next((m for m in self.queues.memberships(c) if m.queue == queue.id), None)
            if membership is None:
                continue
            profile = c.effective.profile
            members.append(
                {
                    "extension": c.user.extension,
                    "name": c.user.name,
                    "logged_in": membership.logged_in,
                    "paused": membership.paused,
                    "why": membership.why,
                    "ring": list(membership.ring),
                    "profile": profile.id,
                    "presence": profile.presence,
                    "rings": membership.active and profile.presence == "available",
                }
            )
        return {
            "id": queue.id,
            "number": queue.number,
            "name": queue.name,
            "ring_seconds": queue.ring_seconds,
            "fallback": str(queue.fallback),
            "members": members,
        }

    @defer.inlineCallbacks
    def list(self, req: ApiRequest) -> Any:
        """GET /queues: every queue with its members."""
        single(req.query, frozenset())
        found = yield self.queues.everyone()
        config = self.queues.profiles.config
        return Reply.json(200, [self._view(q, found) for q in config.queues])

    @defer.inlineCallbacks
    def show(self, req: ApiRequest) -> Any:
        """GET /queues/{id}: one queue (by id or number) with its members."""
        single(req.query, frozenset())
        config = self.queues.profiles.config
        key = req.params["id"]
        queue = config.queue(key) or config.queue_by_number(key)
        if queue is None:
            raise not_found("queue", id=key)
        found = yield self.queues.candidates(queue)
        return Reply.json(200, self._view(queue, found))
