"""End to end: the voicemail ``saved`` flag (key 5 on the phone) over real HTTP.

A running ``ivr serve``; messages stored in its SQLite store; every answer checked
against the served OpenAPI document (through the shared client).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from test_e2e_admin import TZ
from test_e2e_admin_directory import Clients, audit

from ivr.store.sqlite import SqliteStore
from ivr.testing.service import RunningService

pytestmark = pytest.mark.e2e


@pytest.fixture
def running(demo_service: RunningService) -> RunningService:
    return demo_service


def test_saved_is_shown_and_set_over_the_api(tmp_path: Path, running: RunningService) -> None:
    api = Clients(running)
    recordings = tmp_path / "recordings"
    pcm = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16)
    with SqliteStore(running.db, recordings_dir=recordings) as store:
        first, second = (
            store.voicemail.add(
                mailbox="1001", caller=caller, called="1001", received_at=datetime.now(TZ), pcm=pcm
            )
            for caller in ("1002", "1003")
        )
        assert store.selfservice.mark_saved(second.id)  # as key 5 does on the phone
    listed = api.anna.call("GET", "/api/v1/users/1001/voicemail")
    assert listed.status == 200, listed.body
    assert [(m["id"], m["saved"], m["heard"]) for m in listed.json] == [
        (first.id, False, False),
        (second.id, True, True),
    ]

    base = f"/api/v1/users/1001/voicemail/{first.id}"
    saved = api.anna.call("PATCH", base, {"saved": True})
    assert saved.status == 200, saved.body
    assert (saved.json["saved"], saved.json["heard"]) == (True, True), "saving marks heard"
    assert api.anna.call("GET", base).json["saved"] is True
    with SqliteStore(running.db) as store:
        assert store.selfservice.saved_ids("1001") == {first.id, second.id}, "stored"

    unsaved = api.admin.call("PATCH", base, {"saved": False})
    assert unsaved.status == 200 and unsaved.json["saved"] is False
    assert unsaved.json["heard"] is True, "unsaving leaves it heard"
    both = api.anna.call("PATCH", base, {"saved": False, "heard": False})
    assert both.status == 200 and (both.json["saved"], both.json["heard"]) == (False, False)
    again = api.anna.call("PATCH", base, {"saved": False})  # no change: not audited
    assert again.status == 200

    for body, field in (
        ({"saved": "yes"}, "saved"),
        ({}, "heard"),
        ({"saved": True, "heard": False}, "heard"),
        ({"saved": True, "starred": True}, "starred"),
    ):
        bad = api.anna.call("PATCH", base, body)
        assert bad.status == 422 and field in bad.json["fields"], (body, bad.json)
    assert api.bengt.call("PATCH", base, {"saved": True}).status == 403
    missing = api.anna.call("PATCH", "/api/v1/users/1001/voicemail/999999", {"saved": True})
    assert missing.status == 404

    rows = [
        (e.action, e.actor, e.on_behalf_of, e.detail)  # type: ignore[attr-defined]
        for e in audit(running, "1001")
    ]
    assert rows == [
        ("voicemail.heard", "1001", None, {"message": first.id, "heard": False}),
        ("voicemail.saved", "1000", "1001", {"message": first.id, "saved": False}),
        ("voicemail.saved", "1001", None, {"message": first.id, "saved": True}),
    ]
