"""Registrar: RFC 3261 §10.3 rules as a table, then expiry, ordering and persistence."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ivr.sip.registrar import Binding, ContactBinding, RegisterResult, Registrar

AOR = "sip:1001@pbx.example.com"
DESK = "sip:1001@192.0.2.10:5060"
SOFT = "sip:1001@198.51.100.7:5062;transport=tcp"
PHONE3 = "sip:1001@203.0.113.3"


def c(contact: str, **kw: object) -> ContactBinding:
    return ContactBinding(contact=contact, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Req:
    contacts: list[ContactBinding] | str
    expires: int | None = None
    call_id: str = "call-a"
    cseq: int = 1
    now: float = 0.0


@dataclass(frozen=True)
class Case:
    name: str
    request: Req
    status: int
    contacts: dict[str, int] = field(default_factory=dict)  # contact -> remaining seconds
    before: tuple[Req, ...] = ()
    min_expires: int | None = None


CASES = [
    Case("default expires", Req([c(DESK)]), 200, {DESK: 3600}),
    Case("expires header", Req([c(DESK)], expires=600), 200, {DESK: 600}),
    Case("contact param wins", Req([c(DESK, expires=120)], expires=600), 200, {DESK: 120}),
    Case("clamped to max", Req([c(DESK)], expires=86400), 200, {DESK: 3600}),
    Case("exactly min", Req([c(DESK)], expires=60), 200, {DESK: 60}),
    Case("too brief header", Req([c(DESK)], expires=30), 423, min_expires=60),
    Case("too brief param", Req([c(DESK, expires=59)], expires=600), 423, min_expires=60),
    Case(
        "too brief fails all",
        Req([c(DESK), c(SOFT, expires=10)]),
        423,
        min_expires=60,
    ),
    Case("negative expires", Req([c(DESK)], expires=-1), 400),
    Case("duplicate contact", Req([c(DESK), c(DESK)]), 400),
    Case("two contacts", Req([c(DESK), c(SOFT, expires=300)]), 200, {DESK: 3600, SOFT: 300}),
    Case(
        "query lists bindings",
        Req([], call_id="other"),
        200,
        {DESK: 3590},
        before=(Req([c(DESK)], now=-10.0),),
    ),
    Case("query when empty", Req([]), 200, {}),
    Case(
        "refresh same call-id",
        Req([c(DESK)], cseq=2, now=100.0),
        200,
        {DESK: 3600},
        before=(Req([c(DESK)]),),
    ),
    Case(
        "same cseq is out of order",
        Req([c(DESK)], cseq=1, now=1.0),
        500,
        before=(Req([c(DESK)]),),
    ),
    Case(
        "lower cseq is out of order",
        Req([c(DESK)], cseq=4),
        500,
        before=(Req([c(DESK)], cseq=5),),
    ),
    Case(
        "out of order aborts whole request",
        Req([c(SOFT), c(DESK)], cseq=1),
        500,
        before=(Req([c(DESK)], cseq=1),),
    ),
    Case(
        "other call-id replaces",
        Req([c(DESK)], call_id="call-b", cseq=1, expires=120),
        200,
        {DESK: 120},
        before=(Req([c(DESK)], cseq=9),),
    ),
    Case(
        "expired binding ignores cseq",
        Req([c(DESK)], cseq=1, now=4000.0),
        200,
        {DESK: 3600},
        before=(Req([c(DESK)], cseq=1),),
    ),
    Case(
        "expires 0 removes one",
        Req([c(DESK, expires=0)], cseq=2),
        200,
        {SOFT: 3600},
        before=(Req([c(DESK), c(SOFT)]),),
    ),
    Case(
        "expires 0 of unknown is fine",
        Req([c(DESK)], expires=0),
        200,
        {},
    ),
    Case(
        "wildcard removes all",
        Req("*", expires=0, cseq=2),
        200,
        {},
        before=(Req([c(DESK), c(SOFT)]),),
    ),
    Case("wildcard in list", Req([c("*")], expires=0), 200, {}),
    Case("wildcard needs expires 0", Req("*", expires=60), 400),
    Case("wildcard needs expires header", Req("*"), 400),
    Case("wildcard param is not header", Req([c("*", expires=0)]), 400),
    Case("wildcard must be alone", Req([c("*"), c(DESK)], expires=0), 400),
    Case(
        "wildcard out of order",
        Req("*", expires=0, cseq=3),
        500,
        before=(Req([c(DESK)], cseq=3),),
    ),
    Case(
        "wildcard other call-id",
        Req("*", expires=0, call_id="call-z", cseq=1),
        200,
        {},
        before=(Req([c(DESK)], cseq=3),),
    ),
    Case("bad cseq", Req([c(DESK)], cseq=-1), 400),
    Case("empty call-id", Req([c(DESK)], call_id=""), 400),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_register_table(case: Case) -> None:
    reg = Registrar()
    for r in case.before:
        assert register(reg, r).status == 200
    before = {b.key: b for b in reg.all_bindings()}
    result = register(reg, case.request)
    assert result.status == case.status, result.reason
    assert result.min_expires == case.min_expires
    assert {b.contact: left for b, left in result.contacts} == case.contacts
    if case.status != 200:
        assert {b.key: b for b in reg.all_bindings()} == before  # nothing changed
        assert not result.changed and not result.removed


def register(
    reg: Registrar, r: Req, aor: str = AOR, source: str = "udp:192.0.2.10:5060"
) -> RegisterResult:
    return reg.register(aor, r.contacts, r.expires, r.call_id, r.cseq, source, r.now)


def test_binding_fields_and_changes() -> None:
    reg = Registrar()
    result = reg.register(
        AOR,
        [c(DESK, q=0.5, instance="<urn:uuid:1>", reg_id=1)],
        600,
        "cid",
        7,
        "tcp:192.0.2.10:40000",
        10.0,
    )
    expected = Binding(
        aor=AOR,
        contact=DESK,
        expires_at=610.0,
        call_id="cid",
        cseq=7,
        q=0.5,
        source="tcp:192.0.2.10:40000",
        instance="<urn:uuid:1>",
        reg_id=1,
    )
    assert result == RegisterResult(
        status=200, reason="OK", contacts=((expected, 600),), changed=(expected,)
    )
    removal = reg.register(AOR, [c(DESK, expires=0)], None, "cid", 8, "x", 20.0)
    assert removal.removed == (expected,) and removal.changed == ()


def test_lookup_orders_by_q_then_freshness_and_skips_expired() -> None:
    reg = Registrar()
    register(reg, Req([c(DESK, q=0.5)], expires=600))
    register(reg, Req([c(SOFT)], call_id="b", expires=600, now=5.0))
    register(reg, Req([c(PHONE3, q=1.0)], call_id="c", expires=600, now=10.0))
    assert [b.contact for b in reg.lookup(AOR, 11.0)] == [PHONE3, SOFT, DESK]
    assert [b.contact for b in reg.lookup(AOR, 604.0)] == [PHONE3, SOFT]
    assert reg.lookup("sip:nobody@pbx.example.com", 0.0) == []
    assert reg.count(11.0) == 3 and reg.count(604.0) == 2


def test_expire_removes_due_bindings_once() -> None:
    reg = Registrar()
    register(reg, Req([c(DESK)], expires=100))
    register(reg, Req([c(SOFT)], call_id="b", expires=200))
    register(reg, Req([c(DESK)], expires=300, cseq=2, now=50.0))  # refresh: old timer is void
    assert reg.expire(150.0) == []
    assert [b.contact for b in reg.expire(200.0)] == [SOFT]
    assert reg.expire(200.0) == []
    assert [b.contact for b in reg.expire(1000.0)] == [DESK]
    assert reg.all_bindings() == [] and len(reg) == 0


def test_instance_replaces_binding_from_new_address() -> None:
    reg = Registrar()
    register(reg, Req([c(DESK, instance="<urn:uuid:a>", reg_id=1)]))
    moved = register(reg, Req([c(PHONE3, instance="<urn:uuid:a>", reg_id=1)], call_id="new"))
    assert [b.contact for b, _ in moved.contacts] == [PHONE3]
    assert [b.contact for b in moved.removed] == [DESK]
    other_flow = register(reg, Req([c(SOFT, instance="<urn:uuid:a>", reg_id=2)], call_id="z"))
    assert {b.contact for b, _ in other_flow.contacts} == {PHONE3, SOFT}


def test_instance_replacement_honours_cseq() -> None:
    reg = Registrar()
    register(reg, Req([c(DESK, instance="<urn:uuid:a>")], cseq=5))
    stale = register(reg, Req([c(PHONE3, instance="<urn:uuid:a>")], cseq=5))
    assert stale.status == 500
    assert [b.contact for b in reg.lookup(AOR, 1.0)] == [DESK]


def test_too_many_bindings_evicts_soonest_expiring() -> None:
    reg = Registrar(max_bindings_per_aor=2)
    register(reg, Req([c(DESK)], expires=100, call_id="a"))
    register(reg, Req([c(SOFT)], expires=200, call_id="b"))
    result = register(reg, Req([c(PHONE3)], call_id="c"))
    assert result.status == 200
    assert [b.contact for b in result.removed] == [DESK]
    assert {b.contact for b, _ in result.contacts} == {SOFT, PHONE3}
    too_many = register(reg, Req([c(DESK), c(SOFT), c(PHONE3)], call_id="d"))
    assert too_many.status == 403


def test_expired_bindings_are_reported_when_replaced_or_evicted() -> None:
    reg = Registrar(max_bindings_per_aor=1)
    register(reg, Req([c(DESK)], expires=60))
    result = register(reg, Req([c(SOFT)], call_id="b", now=100.0))
    assert [b.contact for b in result.removed] == [DESK]
    assert [b.contact for b in result.changed] == [SOFT]


def test_wildcard_reports_removed_for_persistence() -> None:
    reg = Registrar()
    register(reg, Req([c(DESK), c(SOFT)]))
    result = register(reg, Req("*", expires=0, call_id="x"))
    assert {b.contact for b in result.removed} == {DESK, SOFT}
    assert reg.all_bindings() == []


def test_restore_round_trip() -> None:
    reg = Registrar()
    register(reg, Req([c(DESK, q=0.3), c(SOFT)], expires=500))
    register(reg, Req([c(PHONE3)], call_id="x"), aor="sip:1002@pbx.example.com")
    saved = reg.all_bindings()
    again = Registrar()
    again.restore(saved)
    assert sorted(again.all_bindings(), key=lambda b: b.key) == sorted(saved, key=lambda b: b.key)
    assert again.lookup(AOR, 1.0) == reg.lookup(AOR, 1.0)
    assert [b.contact for b in again.expire(500.0)] == [DESK, SOFT]
    refresh = register(again, Req([c(PHONE3)], call_id="x", cseq=1), aor="sip:1002@pbx.example.com")
    assert refresh.status == 500  # restored CSeq still guards ordering


@pytest.mark.parametrize(
    "kwargs",
    [
        {"contact": ""},
        {"contact": "<sip:a@b>"},
        {"contact": " sip:a@b"},
        {"contact": "sip:a@b", "expires": -1},
        {"contact": "sip:a@b", "q": 1.5},
        {"contact": "sip:a@b", "reg_id": 1},
        {"contact": "sip:a@b", "instance": "<urn:uuid:1>", "reg_id": 0},
    ],
)
def test_contact_binding_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ContactBinding(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"contact": "*"},
        {"expires_at": float("inf")},
        {"cseq": 2**31},
        {"call_id": ""},
        {"q": -0.1},
    ],
)
def test_binding_validates(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "aor": AOR,
        "contact": DESK,
        "expires_at": 1.0,
        "call_id": "c",
        "cseq": 1,
    }
    args.update(kwargs)
    with pytest.raises(ValueError):
        Binding(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_expires": 0},
        {"min_expires": 100, "default_expires": 50},
        {"default_expires": 4000},
        {"max_bindings_per_aor": 0},
    ],
)
def test_registrar_validates(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Registrar(**kwargs)


def test_remaining_rounds_up() -> None:
    b = Binding(aor=AOR, contact=DESK, expires_at=100.0, call_id="c", cseq=1)
    assert (b.remaining(0.0), b.remaining(99.5), b.remaining(100.0), b.remaining(200.0)) == (
        100,
        1,
        0,
        0,
    )
