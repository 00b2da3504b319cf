"""Dialogs (RFC 3261 §12): creation, route sets, CSeq ordering, target refresh, lookup."""

from __future__ import annotations

import random

import pytest

from ivr.sip.build import make_response
from ivr.sip.dialog import CONFIRMED, EARLY, TERMINATED, Dialog, DialogError, DialogTable
from ivr.sip.ids import Ids
from ivr.sip.message import Request, Response, parse_message

ALICE_CONTACT = "sip:alice@pc33.atlanta.example.com"
BOB_CONTACT = "sip:bob@192.0.2.4"
CALL_ID = "a84b4c76e66710@pc33.atlanta.example.com"


def invite(
    *,
    method: str = "INVITE",
    cseq: int = 314159,
    uri: str = "sip:bob@biloxi.example.com",
    to: str = "Bob <sip:bob@biloxi.example.com>",
    extra: str = "",
    contact: str | None = f"<{ALICE_CONTACT}>",
) -> Request:
    raw = (
        f"{method} {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        + (f"Contact: {contact}\r\n" if contact else "")
        + extra
        + "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(raw.encode())
    assert isinstance(message, Request)
    return message


def answer(
    request: Request, status: int = 200, *, rr: str = "", to_tag: str = "a6c85cf"
) -> Response:
    headers = [("Contact", f"<{BOB_CONTACT}>")]
    if rr:
        headers.insert(0, ("Record-Route", rr))
    return make_response(request, status, to_tag=to_tag, headers=headers)


def uac_dialog(rr: str = "", status: int = 200) -> Dialog:
    request = invite()
    return Dialog.as_uac(request, answer(request, status, rr=rr))


def uas_dialog(extra: str = "") -> Dialog:
    return Dialog.as_uas(invite(extra=extra), "as83", "<sip:ivr@192.0.2.1:5060>", confirmed=True)


def ids() -> Ids:
    return Ids(random.Random(7))


# -- creation --------------------------------------------------------------------


def test_as_uas_takes_ids_uris_target_and_cseq_from_the_request() -> None:
    dialog = Dialog.as_uas(
        invite(extra="Record-Route: <sip:p1.example.com;lr>\r\n"), "as83", "<sip:ivr@192.0.2.1>"
    )
    assert dialog.id == (CALL_ID, "as83", "1928301774")
    assert str(dialog.local_uri) == "Bob <sip:bob@biloxi.example.com>"
    assert str(dialog.remote_uri) == "Alice <sip:alice@atlanta.example.com>"
    assert str(dialog.remote_target) == ALICE_CONTACT
    assert [str(r) for r in dialog.route_set] == ["<sip:p1.example.com;lr>"]
    assert (dialog.remote_cseq, dialog.local_cseq) == (314159, 1)
    assert dialog.state == EARLY and not dialog.secure
    dialog.confirm()
    assert dialog.state == CONFIRMED


def test_as_uac_takes_ids_from_request_and_response() -> None:
    dialog = uac_dialog("<sip:p1.example.com;lr>, <sip:p2.example.com;lr>")
    assert dialog.id == (CALL_ID, "1928301774", "a6c85cf")
    assert str(dialog.local_uri) == "Alice <sip:alice@atlanta.example.com>"
    assert str(dialog.remote_uri) == "Bob <sip:bob@biloxi.example.com>"
    assert str(dialog.remote_target) == BOB_CONTACT
    assert [str(r) for r in dialog.route_set] == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
    ]
    assert (dialog.local_cseq, dialog.remote_cseq, dialog.invite_cseq) == (314160, None, 314159)
    assert dialog.local_contact == f"<{ALICE_CONTACT}>"
    assert dialog.state == CONFIRMED
    assert uac_dialog(status=180).state == EARLY


@pytest.mark.parametrize(
    ("uri", "tls", "secure"),
    [
        ("sips:bob@biloxi.example.com", True, True),
        ("sips:bob@biloxi.example.com", False, False),
        ("sip:bob@biloxi.example.com", True, False),
    ],
)
def test_secure_flag(uri: str, tls: bool, secure: bool) -> None:
    request = invite(uri=uri)
    assert Dialog.as_uas(request, "t", "<sip:ivr@h>", tls=tls).secure is secure
    assert Dialog.as_uac(request, answer(request), tls=tls).secure is secure


@pytest.mark.parametrize(
    ("status", "to_tag", "message"),
    [
        (100, "x", "does not create"),
        (180, None, "does not create"),
        (486, "x", "does not create"),
    ],
)
def test_as_uac_rejects_non_dialog_responses(status: int, to_tag: str | None, message: str) -> None:
    request = invite()
    response = make_response(request, status, to_tag=to_tag)
    with pytest.raises(DialogError, match=message):
        Dialog.as_uac(request, response)


def test_as_uac_2xx_without_tag_or_contact() -> None:
    request = invite()
    dialog = Dialog.as_uac(request, make_response(request, 200))
    assert dialog.remote_tag == ""
    assert str(dialog.remote_target) == "sip:bob@biloxi.example.com"  # the Request-URI


@pytest.mark.parametrize(
    ("contact", "message"),
    [(None, "without Contact"), ("*", "Bad Contact"), ("<bad uri>", "Bad Contact")],
)
def test_as_uas_needs_a_contact(contact: str | None, message: str) -> None:
    with pytest.raises(DialogError, match=message) as info:
        Dialog.as_uas(invite(contact=contact), "t", "<sip:ivr@h>")
    assert info.value.status == 400


# -- in-dialog requests: routing -------------------------------------------------

# (role, Record-Route header values, expected Request-URI, expected Route values)
ROUTE_CASES = [
    ("uas", [], ALICE_CONTACT, []),
    (
        "uas",
        ["<sip:p2.example.com;lr>, <sip:p1.example.com;lr>"],
        ALICE_CONTACT,
        ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"],
    ),
    (
        "uas",
        ["<sip:p2.example.com;lr>;x=1", "<sip:p1.example.com;lr>"],
        ALICE_CONTACT,
        ["<sip:p2.example.com;lr>;x=1", "<sip:p1.example.com;lr>"],
    ),
    (  # strict first hop: it becomes the Request-URI, the target goes last
        "uas",
        ["<sip:p2.example.com;maddr=10.0.0.2;method=INVITE?h=v>, <sip:p1.example.com;lr>"],
        "sip:p2.example.com;maddr=10.0.0.2",
        ["<sip:p1.example.com;lr>", f"<{ALICE_CONTACT}>"],
    ),
    ("uac", [], BOB_CONTACT, []),
    (
        "uac",
        ["<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"],
        BOB_CONTACT,
        ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"],
    ),
    (
        "uac",
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com>"],
        "sip:p2.example.com",
        ["<sip:p1.example.com;lr>", f"<{BOB_CONTACT}>"],
    ),
    ("uac", ["<sip:p1.example.com>"], "sip:p1.example.com", [f"<{BOB_CONTACT}>"]),
]


@pytest.mark.parametrize(("role", "record_route", "uri", "routes"), ROUTE_CASES)
def test_route_set_and_request_uri(
    role: str, record_route: list[str], uri: str, routes: list[str]
) -> None:
    if role == "uas":
        dialog = uas_dialog("".join(f"Record-Route: {rr}\r\n" for rr in record_route))
    else:
        request = invite()
        response = answer(request)
        for rr in record_route:
            response.headers.add("Record-Route", rr)
        dialog = Dialog.as_uac(request, response)
    assert dialog.request_target() == (uri, routes)
    bye = dialog.create_request("BYE", ids(), "192.0.2.1", 5060, "udp")
    assert bye.uri == uri
    assert bye.headers.values("route") == routes


def test_create_request_exact_bytes() -> None:
    dialog = uac_dialog("<sip:p1.example.com;lr>")
    branch = ids().branch()
    bye = dialog.create_request("BYE", ids(), "192.0.2.1", 5060, "udp")
    assert bye.to_bytes().decode() == (
        "BYE sip:bob@192.0.2.4 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "Route: <sip:p1.example.com;lr>\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        "CSeq: 314160 BYE\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    assert dialog.local_cseq == 314161


def test_local_cseq_sequence_ack_and_contact() -> None:
    dialog = uac_dialog()
    rng = ids()
    sent = [
        dialog.create_request(m, rng, "h", 5060, "tcp") for m in ("ACK", "INVITE", "ACK", "INFO")
    ]
    assert [r.headers.get("cseq") for r in sent] == [
        "314159 ACK",
        "314160 INVITE",
        "314160 ACK",
        "314161 INFO",
    ]
    assert [r.headers.get("contact") for r in sent] == [None, f"<{ALICE_CONTACT}>", None, None]
    assert sent[1].headers.get("via", "").startswith("SIP/2.0/TCP h:5060;branch=z9hG4bK")
    branches = {r.headers.get("via") for r in sent}
    assert len(branches) == 4  # every request gets a new branch

    uas = uas_dialog()
    assert uas.create_request("BYE", rng, "h", 5060, "udp").headers.get("cseq") == "1 BYE"
    assert uas.create_request("NOTIFY", rng, "h", 5060, "udp").headers.get("cseq") == "2 NOTIFY"
    with pytest.raises(DialogError, match="No INVITE"):
        uas.create_request("ACK", rng, "h", 5060, "udp")
    with pytest.raises(DialogError, match="CANCEL"):
        uas.create_request("CANCEL", rng, "h", 5060, "udp")
    uas.terminate()
    with pytest.raises(DialogError, match="terminated"):
        uas.create_request("BYE", rng, "h", 5060, "udp")


# -- in-dialog requests received ---------------------------------------------------

# (remote CSeq before, method, CSeq of the request, result, remote CSeq after)
CSEQ_CASES = [
    (314159, "BYE", 314160, None, 314160),
    (314159, "INFO", 314159, None, 314159),
    (314159, "INFO", 314158, "CSeq 314158 lower than 314159", 314159),
    (314159, "ACK", 1, None, 314159),
    (314159, "CANCEL", 3, None, 314159),
    (None, "BYE", 9, None, 9),
    (None, "BYE", 0, None, 0),
]


@pytest.mark.parametrize(("before", "method", "cseq", "result", "after"), CSEQ_CASES)
def test_remote_cseq_ordering(
    before: int | None, method: str, cseq: int, result: str | None, after: int
) -> None:
    dialog = uas_dialog()
    dialog.remote_cseq = before
    assert dialog.receive_request(invite(method=method, cseq=cseq)) == result
    assert dialog.remote_cseq == after


@pytest.mark.parametrize(
    ("method", "contact", "target"),
    [
        ("INVITE", "<sip:alice@10.0.0.9:5062>", "sip:alice@10.0.0.9:5062"),
        ("UPDATE", "sip:alice@10.0.0.9;transport=tcp", "sip:alice@10.0.0.9"),
        ("INVITE", None, ALICE_CONTACT),
        ("INFO", "<sip:alice@10.0.0.9>", ALICE_CONTACT),
        ("BYE", "<sip:alice@10.0.0.9>", ALICE_CONTACT),
    ],
)
def test_target_refresh(method: str, contact: str | None, target: str) -> None:
    dialog = uas_dialog()
    assert dialog.receive_request(invite(method=method, cseq=314160, contact=contact)) is None
    assert str(dialog.remote_target) == target


# -- responses to our requests -----------------------------------------------------


def test_early_dialog_confirmed_by_2xx_recomputes_route_set() -> None:
    request = invite()
    dialog = Dialog.as_uac(request, answer(request, 180, rr="<sip:old.example.com;lr>"))
    assert dialog.state == EARLY
    ok = answer(request, 200, rr="<sip:p1.example.com;lr>, <sip:p2.example.com;lr>")
    ok.headers.set("Contact", "<sip:bob@192.0.2.99>")
    dialog.receive_response(ok)
    assert dialog.state == CONFIRMED
    assert [str(r) for r in dialog.route_set] == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
    ]
    assert str(dialog.remote_target) == "sip:bob@192.0.2.99"


@pytest.mark.parametrize(
    ("start", "method", "status", "state", "target"),
    [
        (EARLY, "INVITE", 486, TERMINATED, BOB_CONTACT),
        (EARLY, "INVITE", 183, EARLY, "sip:bob@192.0.2.99"),
        (CONFIRMED, "INVITE", 200, CONFIRMED, "sip:bob@192.0.2.99"),  # re-INVITE refresh
        (CONFIRMED, "INVITE", 491, CONFIRMED, BOB_CONTACT),
        (CONFIRMED, "INFO", 200, CONFIRMED, BOB_CONTACT),
        (CONFIRMED, "BYE", 481, TERMINATED, BOB_CONTACT),
        (CONFIRMED, "INFO", 408, TERMINATED, BOB_CONTACT),
    ],
)
def test_receive_response(start: str, method: str, status: int, state: str, target: str) -> None:
    dialog = uac_dialog(status=180 if start == EARLY else 200)
    cseq = 314159 if start == EARLY else 314160
    response = answer(invite(method=method, cseq=cseq), status)
    response.headers.set("Contact", "<sip:bob@192.0.2.99>")
    if start == CONFIRMED and method == "INVITE":
        dialog.create_request("INVITE", ids(), "h", 5060, "udp")
    dialog.receive_response(response)
    assert dialog.state == state
    assert str(dialog.remote_target) == target


# -- the table ---------------------------------------------------------------------


def test_dialog_table_lookup() -> None:
    table = DialogTable()
    dialog = uas_dialog()
    table.add(dialog)
    assert len(table) == 1 and dialog.id in table and list(table) == [dialog]
    in_dialog = invite(method="BYE", cseq=314160, to="<sip:bob@biloxi.example.com>;tag=as83")
    assert table.find_request(in_dialog) is dialog
    assert table.lookup(in_dialog) is dialog
    assert table.lookup(invite()) is None  # no To-tag: not in a dialog

    unknown = invite(method="BYE", cseq=2, to="<sip:bob@biloxi.example.com>;tag=nope")
    assert table.find_request(unknown) is None
    with pytest.raises(DialogError) as info:
        table.lookup(unknown)
    assert info.value.status == 481
    stray_ack = invite(method="ACK", cseq=2, to="<sip:bob@biloxi.example.com>;tag=nope")
    with pytest.raises(DialogError) as info:
        table.lookup(stray_ack)
    assert info.value.status is None  # an ACK is never answered

    dialog.terminate()
    with pytest.raises(DialogError):
        table.lookup(in_dialog)
    assert table.remove(dialog.id) is dialog and len(table) == 0
    assert table.get(dialog.id) is None


def test_dialog_table_finds_uac_dialogs_by_response() -> None:
    table = DialogTable()
    request = invite()
    fork1 = Dialog.as_uac(request, answer(request, 180, to_tag="f1"))
    fork2 = Dialog.as_uac(request, answer(request, 180, to_tag="f2"))
    table.add(fork1)
    table.add(fork2)
    assert table.find_response(answer(request, 200, to_tag="f2")) is fork2
    assert table.find_response(answer(request, 200, to_tag="f3")) is None
    assert table.get((CALL_ID, "1928301774", "f1")) is fork1
