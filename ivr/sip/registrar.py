"""Registrar bindings with expiry (RFC 3261 §10.3, RFC 5626 instance matching).

Pure: ``now`` is passed in. The caller canonicalises the address-of-record (``aor``)
and strips ``<...>`` from each Contact; contact URIs are compared as exact strings.

A binding is keyed by (aor, contact). A contact carrying ``+sip.instance`` also
replaces any binding of the same AOR with the same (instance, reg-id): the device
re-registered from a new address. When an AOR would exceed ``max_bindings_per_aor``,
the bindings this request did not touch are evicted soonest-expiring first; a request
that alone names more contacts than allowed gets 403.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Binding", "ContactBinding", "RegisterResult", "Registrar"]

_MAX_CSEQ = 2**31 - 1


def _check_q(q: float | None) -> None:
    if q is not None and not (0.0 <= q <= 1.0):
        raise ValueError(f"q must be within 0..1, got {q!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactBinding:
    """One Contact of a REGISTER, as parsed by the caller (``<...>`` stripped).

    ``contact="*"`` is the wildcard; it must then be the only contact.
    """

    contact: str
    expires: int | None = None
    q: float | None = None
    instance: str | None = None
    reg_id: int | None = None

    def __post_init__(self) -> None:
        if not self.contact or self.contact != self.contact.strip():
            raise ValueError("contact must be a non-empty URI without surrounding spaces")
        if self.contact.startswith("<") or self.contact.endswith(">"):
            raise ValueError("contact must be given without <...>")
        if self.expires is not None and self.expires < 0:
            raise ValueError("expires must not be negative")
        _check_q(self.q)
        if self.reg_id is not None and (self.reg_id < 1 or self.instance is None):
            raise ValueError("reg-id must be positive and needs +sip.instance")


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """A stored binding of an AOR to a contact until ``expires_at`` (seconds, ``now`` scale)."""

    aor: str
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    q: float | None = None
    source: str = ""
    instance: str | None = None
    reg_id: int | None = None

    def __post_init__(self) -> None:
        if not self.aor or not self.contact or self.contact == "*":
            raise ValueError("a binding needs an aor and a concrete contact")
        if not math.isfinite(self.expires_at):
            raise ValueError("expires_at must be finite")
        if not self.call_id:
            raise ValueError("call_id must not be empty")
        if not 0 <= self.cseq <= _MAX_CSEQ:
            raise ValueError("cseq must be within 0..2**31-1")
        _check_q(self.q)

    def remaining(self, now: float) -> int:
        """Whole seconds left (for the ``expires`` parameter of a 200's Contact)."""
        return max(0, math.ceil(self.expires_at - now - 1e-9))

    @property
    def key(self) -> tuple[str, str]:
        return (self.aor, self.contact)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterResult:
    """What to answer and what changed.

    ``contacts`` are the AOR's current bindings with their remaining seconds (for the
    200's Contact headers); ``min_expires`` is set with 423. ``changed``/``removed``
    drive write-behind persistence and are empty unless ``status == 200``.
    """

    status: int
    reason: str
    contacts: tuple[tuple[Binding, int], ...] = ()
    min_expires: int | None = None
    changed: tuple[Binding, ...] = ()
    removed: tuple[Binding, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in (200, 400, 403, 423, 500):
            raise ValueError(f"unexpected status {self.status}")
        if (self.status == 423) != (self.min_expires is not None):
            raise ValueError("min_expires is set exactly for 423")
        if self.status != 200 and (self.contacts or self.changed or self.removed):
            raise ValueError("only a 200 carries bindings")


def _ordered(bindings: Iterable[Binding]) -> list[Binding]:
    return sorted(bindings, key=lambda b: (-(1.0 if b.q is None else b.q), -b.expires_at))


class Registrar:
    """In-memory location service: bindings per AOR with expiry."""

    __slots__ = (
        "_by_aor",
        "_heap",
        "default_expires",
        "max_bindings_per_aor",
        "max_expires",
        "min_expires",
    )

    def __init__(
        self,
        *,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        max_bindings_per_aor: int = 10,
    ) -> None:
        if not 0 < min_expires <= default_expires <= max_expires:
            raise ValueError("need 0 < min_expires <= default_expires <= max_expires")
        if max_bindings_per_aor < 1:
            raise ValueError("max_bindings_per_aor must be at least 1")
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_bindings_per_aor = max_bindings_per_aor
        self._by_aor: dict[str, dict[str, Binding]] = {}
        self._heap: list[tuple[float, str, str]] = []

    def register(
        self,
        aor: str,
        contacts: Sequence[ContactBinding] | Literal["*"],
        expires_header: int | None,
        call_id: str,
        cseq: int,
        source: str,
        now: float,
    ) -> RegisterResult:
        """Apply one REGISTER atomically: either every change happens or none.

        ``contacts`` is ``"*"`` or the parsed Contact list (which may hold a lone
        wildcard). Bindings already expired count as absent.
        """
        if isinstance(contacts, str) and contacts != "*":
            raise ValueError("contacts must be '*' or a sequence of ContactBinding")
        if not aor or not call_id or not 0 <= cseq <= _MAX_CSEQ:
            return RegisterResult(status=400, reason="Bad Request")
        if expires_header is not None and expires_header < 0:
            return RegisterResult(status=400, reason="Invalid Expires")
        stored = self._by_aor.get(aor, {})

        if contacts == "*" or any(c.contact == "*" for c in contacts):
            if len(contacts) != 1:
                return RegisterResult(status=400, reason="Wildcard Contact must be alone")
            if expires_header != 0:
                return RegisterResult(status=400, reason="Wildcard Contact requires Expires: 0")
            for b in stored.values():
                if b.expires_at > now and b.call_id == call_id and cseq <= b.cseq:
                    return RegisterResult(status=500, reason="Out of order CSeq")
            self._by_aor.pop(aor, None)
            return RegisterResult(status=200, reason="OK", removed=tuple(stored.values()))

        seen: set[str] = set()
        plan: list[tuple[ContactBinding, int]] = []
        for c in contacts:
            if c.contact in seen:
                return RegisterResult(status=400, reason="Duplicate Contact")
            seen.add(c.contact)
            expires = c.expires if c.expires is not None else expires_header
            if expires is None:
                expires = self.default_expires
            if 0 < expires < self.min_expires:
                return RegisterResult(
                    status=423, reason="Interval Too Brief", min_expires=self.min_expires
                )
            plan.append((c, min(expires, self.max_expires)))

        updated = dict(stored)
        removed: dict[str, Binding] = {}
        changed: dict[str, Binding] = {}
        for c, expires in plan:
            olds = [b for b in (stored.get(c.contact),) if b is not None]
            if c.instance is not None:
                olds += [
                    b
                    for b in stored.values()
                    if b.contact not in seen and b.instance == c.instance and b.reg_id == c.reg_id
                ]
            for old in olds:
                if old.expires_at > now and old.call_id == call_id and cseq <= old.cseq:
                    return RegisterResult(status=500, reason="Out of order CSeq")
                if old.contact != c.contact:
                    removed[old.contact] = updated.pop(old.contact, old)
            if expires == 0:
                if c.contact in updated:
                    removed[c.contact] = updated.pop(c.contact)
                continue
            binding = Binding(
                aor=aor,
                contact=c.contact,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                q=c.q,
                source=source,
                instance=c.instance,
                reg_id=c.reg_id,
            )
            updated[c.contact] = changed[c.contact] = binding

        excess = len(updated) - self.max_bindings_per_aor
        if excess > 0:
            if len(changed) > self.max_bindings_per_aor:
                return RegisterResult(status=403, reason="Too Many Contacts")
            untouched = sorted(
                (b for k, b in updated.items() if k not in changed), key=lambda b: b.expires_at
            )
            for b in untouched[:excess]:
                removed[b.contact] = updated.pop(b.contact)

        if updated:
            self._by_aor[aor] = updated
        else:
            self._by_aor.pop(aor, None)
        for b in changed.values():
            heapq.heappush(self._heap, (b.expires_at, aor, b.contact))
        return self._ok(aor, now, changed=tuple(changed.values()), removed=tuple(removed.values()))

    def _ok(
        self,
        aor: str,
        now: float,
        *,
        changed: tuple[Binding, ...] = (),
        removed: tuple[Binding, ...] = (),
    ) -> RegisterResult:
        contacts = tuple((b, b.remaining(now)) for b in self.lookup(aor, now))
        return RegisterResult(
            status=200, reason="OK", contacts=contacts, changed=changed, removed=removed
        )

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Live bindings of ``aor``, highest q first, then most recently refreshed."""
        bindings = self._by_aor.get(aor)
        if not bindings:
            return []
        return _ordered(b for b in bindings.values() if b.expires_at > now)

    def expire(self, now: float) -> list[Binding]:
        """Remove and return every binding whose time is up."""
        removed: list[Binding] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires_at, aor, contact = heapq.heappop(heap)
            bindings = self._by_aor.get(aor)
            if bindings is None:
                continue
            b = bindings.get(contact)
            if b is None or b.expires_at != expires_at:
                continue
            del bindings[contact]
            if not bindings:
                del self._by_aor[aor]
            removed.append(b)
        return removed

    def count(self, now: float) -> int:
        """Number of live bindings."""
        return sum(1 for bs in self._by_aor.values() for b in bs.values() if b.expires_at > now)

    def all_bindings(self) -> list[Binding]:
        """Every stored binding (expired ones not yet removed included), for persistence."""
        return [b for bs in self._by_aor.values() for b in bs.values()]

    def restore(self, bindings: Iterable[Binding]) -> None:
        """Replace all state with ``bindings`` (e.g. loaded from the store at start-up)."""
        self._by_aor = {}
        for b in bindings:
            self._by_aor.setdefault(b.aor, {})[b.contact] = b
        self._heap = [(b.expires_at, b.aor, b.contact) for b in self.all_bindings()]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return sum(len(bs) for bs in self._by_aor.values())
