"""The OpenAPI 3.1 document of the HTTP API (served at ``/api/v1/openapi.json``).

Built from plain dicts; the schemas describe exactly what ``views.py`` produces and
the tests validate real responses against them.
"""

from __future__ import annotations

from typing import Any

from ivr import __version__
from ivr.routing.model import DEVICE_KINDS, HOLIDAY_RULES, LANGUAGES, PRESENCES, RETURN_KINDS
from ivr.routing.state import SOURCES, VIAS

JSON = "application/json"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def _object(required: list[str], properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "required": required, "properties": properties, **extra}


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


_TEXT = _object(["sv", "en"], {"sv": {"type": "string"}, "en": {"type": "string"}})
_DATETIME = {"type": "string", "format": "date-time"}
_CLOCK = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}
_SCHEDULE_FIELDS: Schema = {  # a schedule as read and as written ([[users.schedules]])
    "id": {"type": "string"},
    "profile": {"type": "string"},
    "holidays": {"enum": list(HOLIDAY_RULES)},
    "days": _array({"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}),
    "start": _CLOCK,
    "end": _CLOCK,
    "from": {"type": "string", "format": "date"},
    "to": {"type": "string", "format": "date"},
}

SCHEMAS: dict[str, Schema] = {
    "Error": _object(
        ["error"],
        {
            "error": {"type": "string"},
            "fields": {
                "type": "object",
                "description": "each invalid input and why",
                "additionalProperties": {"type": "string"},
            },
            "reason": {"type": "string"},
        },
    ),
    "Schedule": _object(
        ["id", "profile", "holidays"],
        _SCHEDULE_FIELDS,
    ),
    "User": _object(
        ["extension", "name", "language", "did", "mobile", "admin", "queues", "devices"],
        {
            "extension": {"type": "string"},
            "name": {"type": "string"},
            "language": {"enum": list(LANGUAGES)},
            "did": _nullable("string"),
            "mobile": _nullable("string"),
            "admin": {"type": "boolean"},
            "queues": _array({"type": "string"}),
            "devices": _array({"type": "string"}),
            "vip": {**_array({"type": "string"}), "description": "own user or admin only"},
            "schedules": {**_array(ref("Schedule")), "description": "own user or admin only"},
        },
        additionalProperties=False,
    ),
    "Device": _object(
        ["id", "kind", "username", "number", "auth_algorithms"],
        {
            "id": {"type": "string"},
            "kind": {"enum": list(DEVICE_KINDS)},
            "username": _nullable("string"),
            "number": _nullable("string"),
            "auth_algorithms": {"type": ["array", "null"], "items": {"type": "string"}},
            "registrations": _array(
                _object(
                    ["contact", "expires_in", "source"],
                    {
                        "contact": {"type": "string"},
                        "expires_in": {"type": "integer", "minimum": 0},
                        "source": {"type": "string"},
                    },
                )
            ),
        },
        additionalProperties=False,
        description="a SIP account or mobile extension; passwords are never shown",
    ),
    "Profile": _object(
        [
            "id",
            "number",
            "name",
            "status",
            "colour",
            "icon",
            "priority",
            "presence",
            "return",
            "return_at",
            "reason",
            "plan",
        ],
        {
            "id": {"type": "string"},
            "number": {"type": "integer", "minimum": 1, "maximum": 9},
            "name": _TEXT,
            "status": _TEXT,
            "colour": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
            "icon": {"type": "string"},
            "priority": {"type": "integer"},
            "presence": {"enum": list(PRESENCES)},
            "return": {"enum": list(RETURN_KINDS)},
            "return_at": {"type": ["string", "null"]},
            "reason": {"type": "boolean"},
            "plan": {"type": "object", "description": "the routing plan"},
        },
    ),
    "ActiveProfile": _object(
        [
            "extension",
            "profile",
            "number",
            "name",
            "text",
            "presence",
            "colour",
            "icon",
            "source",
            "until",
            "set_by",
            "set_via",
            "set_at",
        ],
        {
            "extension": {"type": "string"},
            "profile": {"type": "string"},
            "number": {"type": "integer"},
            "name": {"type": "string"},
            "text": {"type": "string"},
            "presence": {"enum": list(PRESENCES)},
            "colour": {"type": "string"},
            "icon": {"type": "string"},
            "source": {"enum": sorted(SOURCES)},
            "until": {"type": ["string", "null"], "format": "date-time"},
            "set_by": _nullable("string"),
            "set_via": {"enum": [*sorted(VIAS), None]},
            "set_at": {"type": ["string", "null"], "format": "date-time"},
            "changed": {"type": "boolean", "description": "in answers to PUT and DELETE"},
        },
    ),
    "Activate": _object(
        ["profile"],
        {
            "profile": {
                "oneOf": [
                    {"type": "string", "description": "profile id, e.g. lunch"},
                    {"type": "integer", "minimum": 1, "maximum": 9, "description": "number p"},
                ]
            },
            "until": {
                "type": ["string", "null"],
                "description": "HH:MM (today, or tomorrow once passed), YYYY-MM-DD (back "
                "that day at the profile's return time), an ISO 8601 date-time on a whole "
                "minute within 24 hours, or null (the profile's default return)",
                "examples": ["13:00", None],
            },
        },
        additionalProperties=False,
    ),
    "Presence": _object(
        ["extension", "name", "profile", "presence", "icon", "colour", "text", "until"],
        {
            "extension": {"type": "string"},
            "name": {"type": "string"},
            "profile": {"type": "string"},
            "presence": {"enum": list(PRESENCES)},
            "icon": {"type": "string"},
            "colour": {"type": "string"},
            "text": {"type": "string"},
            "until": {"type": ["string", "null"], "format": "date-time"},
        },
        additionalProperties=False,
    ),
    "AuditEntry": _object(
        ["at", "actor", "on_behalf_of", "target_user", "action", "via", "detail"],
        {
            "at": _DATETIME,
            "actor": {"type": "string", "description": "who did it"},
            "on_behalf_of": {
                "type": ["string", "null"],
                "description": "the user an admin (or PIN holder) acted for",
            },
            "target_user": {"type": "string"},
            "action": {"type": "string"},
            "via": {"type": "string"},
            "detail": {"type": "object"},
        },
        additionalProperties=False,
    ),
    "Prompt": _object(
        ["lang", "name", "source", "meta"],
        {
            "lang": {"enum": list(LANGUAGES)},
            "name": {"type": "string"},
            "source": {"enum": ["custom", "shipped"]},
            "meta": {
                "type": ["object", "null"],
                "description": "uploader, time, source format, what was done (custom only)",
            },
        },
        additionalProperties=False,
    ),
    "PromptDeleted": _object(
        ["lang", "name", "deleted", "now"],
        {
            "lang": {"type": "string"},
            "name": {"type": "string"},
            "deleted": {"const": True},
            "now": {"enum": ["shipped", None], "description": "what plays from now on"},
        },
    ),
    "Health": _object(
        ["status", "version", "uptime", "registrations", "active_calls"],
        {
            "status": {"const": "ok"},
            "version": {"type": "string"},
            "uptime": {"type": "number"},
            "registrations": {"type": "integer"},
            "active_calls": {"type": "integer"},
            "overloaded": {
                "type": "boolean",
                "description": "new calls are refused with 503 while the reactor runs late",
            },
            "sip": {"type": "object"},
        },
    ),
    "Queue": _object(  # ivr.admin.queues_api.QueuesApi
        ["id", "number", "name", "ring_seconds", "fallback", "members"],
        {
            "id": {"type": "string"},
            "number": {"type": "string", "pattern": "^[0-9]+$"},
            "name": {"type": "string"},
            "ring_seconds": {"type": "integer", "minimum": 1},
            "fallback": {"type": "string", "description": "busy | voicemail:<ext> | forward:<to>"},
            "members": _array(
                _object(
                    [
                        *("extension", "name", "logged_in", "paused", "why", "ring"),
                        *("profile", "presence", "rings"),
                    ],
                    {
                        "extension": {"type": "string"},
                        "name": {"type": "string"},
                        "logged_in": {"type": "boolean"},
                        "paused": {"type": "boolean"},
                        "why": {"type": "string", "description": "profile, or how (*45) set"},
                        "ring": _array({"enum": ["desk", "softphone", "mobile"]}),
                        "profile": {"type": "string"},
                        "presence": {"type": "string"},
                        "rings": {"type": "boolean", "description": "a call now would ring"},
                    },
                )
            ),
        },
    ),
    "CallRecord": _object(  # ivr.call_records.CallRecord.as_json
        ["id", "kind", "caller", "dialled", "users", "started_at", "ended_at", "outcome"],
        {
            "id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
            "kind": {"enum": ["user", "outgoing", "queue"]},
            "caller": {"type": "string", "description": "extension or number as presented"},
            "caller_user": _nullable("string", description="the calling user, if one of ours"),
            "dialled": {"type": "string"},
            "user": _nullable("string", description="the user called first"),
            "users": _array({"type": "string"}),
            "started_at": _DATETIME,
            "answered_at": {"type": ["string", "null"], "format": "date-time"},
            "ended_at": _DATETIME,
            "duration": {"type": "number", "description": "seconds from answer to end"},
            "outcome": {
                "enum": [
                    "answered",
                    "voicemail",
                    "redirect",
                    "busy",
                    "forwarded",
                    "cancelled",
                    "failed",
                ]
            },
            "status": _nullable("integer", description="final SIP status the caller got"),
            "legs": _array(
                _object(
                    ["device", "contact", "status", "answered"],
                    {
                        "device": {"type": "string"},
                        "contact": {"type": "string"},
                        "status": _nullable("integer"),
                        "answered": {"type": "boolean"},
                    },
                )
            ),
            "decisions": _array(
                _object(
                    ["user", "at", "trace"],
                    {
                        "user": {"type": "string"},
                        "at": _DATETIME,
                        "trace": _array({"type": "string"}),
                    },
                )
            ),
            "steps": _array(_object(["at", "step"], {"at": _DATETIME, "step": {"type": "string"}})),
        },
    ),
}

_SECRET = "write-only: never returned; leave it out of a PUT to keep the stored one"
_FILE_SHAPE = "the config file's shape as JSON (what GET returns may be sent back; null = not set)"

SCHEMAS.update(
    {
        "UserInput": {
            "type": "object",
            "description": "a [[users]] table: " + _FILE_SHAPE,
            "properties": {
                "extension": {"type": ["string", "integer"]},
                "name": {"type": "string"},
                "language": {"enum": list(LANGUAGES)},
                "pin": {"type": "string", "pattern": "^[0-9]{4,8}$", "description": _SECRET},
                "mobile": _nullable("string"),
                "did": _nullable("string"),
                "admin": {"type": "boolean"},
                "devices": _array(
                    {
                        "oneOf": [
                            {"type": "string", "description": "a kept device's id"},
                            ref("DeviceInput"),
                        ]
                    }
                ),
                "queues": _array({"type": "string"}),
                "vip": _array({"type": "string"}),
                "schedules": _array(ref("ScheduleInput")),
            },
        },
        "DeviceInput": {
            "type": "object",
            "description": "a [[users.devices]] table: " + _FILE_SHAPE,
            "properties": {
                "id": {"type": "string"},
                "kind": {"enum": list(DEVICE_KINDS)},
                "username": _nullable("string"),
                "password": {"type": "string", "minLength": 8, "description": _SECRET},
                "number": _nullable("string"),
                "auth_algorithms": {"type": ["array", "null"], "items": {"type": "string"}},
            },
        },
        "ProfileInput": {
            "type": "object",
            "description": "a [[profiles]] table: " + _FILE_SHAPE,
            "properties": {
                "id": {"type": "string"},
                "number": {"type": "integer", "minimum": 1, "maximum": 9},
                "name": _TEXT,
                "status": _TEXT,
                "colour": {"type": "string"},
                "icon": {"type": "string"},
                "priority": {"type": "integer"},
                "presence": {"enum": list(PRESENCES)},
                "return": {"enum": list(RETURN_KINDS)},
                "return_at": {"type": ["string", "null"]},
                "reason": {"type": "boolean"},
                "plan": {
                    "type": "object",
                    "description": "ring, ring_seconds, then, direct, exceptions, mex_off, "
                    "soft, offer_mobile, queues, caller_id",
                },
            },
        },
        "ScheduleInput": {
            "type": "object",
            "description": "a [[users.schedules]] table: days/start/end or from/to",
            "properties": _SCHEDULE_FIELDS,
        },
        "Voicemail": _object(
            ["id", "mailbox", "caller", "called", "received_at", "duration", "heard", "saved"],
            {
                "id": {"type": "integer"},
                "mailbox": {"type": "string"},
                "caller": {"type": "string"},
                "called": {"type": "string"},
                "received_at": _DATETIME,
                "duration": {"type": "number", "minimum": 0},
                "heard": {"type": "boolean"},
                "saved": {"type": "boolean", "description": "kept (key 5 on the phone)"},
            },
            additionalProperties=False,
        ),
        "VoicemailChange": _object(
            [],
            {
                "heard": {"type": "boolean"},
                "saved": {"type": "boolean", "description": "saving also marks heard"},
            },
            additionalProperties=False,
            minProperties=1,
        ),
        "Greeting": _object(
            ["extension", "profile", "meta"],
            {
                "extension": {"type": "string"},
                "profile": {"type": "string"},
                "meta": {"type": ["object", "null"], "description": "uploader, time, source"},
            },
            additionalProperties=False,
        ),
    }
)

_ERRORS = {
    "400": "malformed request (body not a JSON object, bad query encoding)",
    "401": "no bearer token, or a bad one",
    "403": "the token's user may not do this",
    "404": "unknown user, profile or prompt",
    "405": "method not allowed on this path",
    "409": "conflicting concurrent change",
    "413": "request body too large",
    "415": "unsupported media type",
    "422": "invalid input; `fields` names each bad field",
    "429": "too many failed token attempts from this address",
}


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _op(
    summary: str,
    ok: dict[str, Any],
    errors: str,
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    public: bool = False,
    created: dict[str, Any] | None = None,
    status: str = "200",
) -> dict[str, Any]:
    responses = {status: ok} if created is None else {status: ok, "201": created}
    if not public:
        errors = "400 401 422 429 " + errors  # every operation checks its query string
    for code in sorted(set(errors.split())):
        responses[code] = _json(ref("Error"), _ERRORS[code])
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    if public:
        op["security"] = []
    return op


def _path(name: str, description: str, schema: Schema, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
        "example": example,
    }


def _query(name: str, description: str, schema: Schema) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}  # fmt: skip


EXT = _path("ext", "the user's extension", {"type": "string", "pattern": "^[0-9]+$"}, "1001")
LANG = _path("lang", "prompt language", {"enum": list(LANGUAGES)}, "sv")
NAME = _path(
    "name", "prompt name", {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"}, "goodbye"
)
LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
MOMENT = {
    "type": "string",
    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    "([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$",
    "description": "ISO 8601 date or date-time (local time when no offset)",
}


def paths() -> dict[str, Any]:
    wav = {"description": "the prompt, 8 kHz mono 16-bit WAV", "content": {"audio/wav": {}}}
    upload = {
        "required": True,
        "description": "the audio file itself (WAV PCM/float/G.711/extensible, FLAC, "
        "Ogg Vorbis or AIFF; any rate and channel count; at most 10 MB and 5 minutes)",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    return {
        "/openapi.json": {
            "get": _op("This document", _json({"type": "object"}, "OpenAPI 3.1"), "", public=True)
        },
        "/users": {
            "get": _op("Every user (the directory)", _json(_array(ref("User")), "users"), "")
        },
        "/users/{ext}": {
            "parameters": [EXT],
            "get": _op("One user", _json(ref("User"), "the user"), "404"),
        },
        "/users/{ext}/devices": {
            "parameters": [EXT],
            "get": _op(
                "A user's devices and registrations (own user or admin)",
                _json(_array(ref("Device")), "devices"),
                "403 404",
            ),
        },
        "/users/{ext}/profile": {
            "parameters": [EXT],
            "get": _op(
                "The active profile, where it comes from and until when",
                _json(ref("ActiveProfile"), "the active profile"),
                "404",
            ),
            "put": _op(
                "Activate a profile (own user, or an admin acting for the user)",
                _json(ref("ActiveProfile"), "the profile now active"),
                "400 403 404 409 413 415 422",
                body={"required": True, "content": {JSON: {"schema": ref("Activate")}}},
            ),
            "delete": _op(
                "Back to the standard profile (clears manual and forced)",
                _json(ref("ActiveProfile"), "the profile now active"),
                "403 404 409",
            ),
        },
        "/profiles": {"get": _op("Every profile", _json(_array(ref("Profile")), "profiles"), "")},
        "/profiles/{profile}": {
            "parameters": [_path("profile", "profile id or number", {"type": "string"}, "lunch")],
            "get": _op("One profile", _json(ref("Profile"), "the profile"), "404"),
        },
        "/presence": {
            "get": _op(
                "Every user's current profile, for contact lists",
                _json(_array(ref("Presence")), "presence"),
                "422",
                params=[_query("lang", "language of texts", {"enum": list(LANGUAGES)})],
            )
        },
        "/audit": {
            "get": _op(
                "The audit log, newest first (admin; a user sees their own)",
                _json(_array(ref("AuditEntry")), "entries"),
                "403 422",
                params=[
                    _query("user", "target user (extension)", {"type": "string", "minLength": 1}),
                    _query("since", "from (inclusive)", MOMENT),
                    _query("until", "to (exclusive)", MOMENT),
                    _query("limit", "at most this many", LIMIT),
                ],
            )
        },
        "/prompts/{lang}": {
            "parameters": [LANG],
            "get": _op(
                "The prompts of a language and where each comes from",
                _json(_array(ref("Prompt")), "prompts"),
                "422",
            ),
        },
        "/prompts/{lang}/{name}": {
            "parameters": [LANG, NAME],
            "get": _op("The prompt calls play, as WAV", wav, "404 422"),
            "post": _op(
                "Upload a prompt (admin): mono, 8 kHz, trimmed, levelled, stored",
                _json(ref("Prompt"), "replaced a custom prompt"),
                "400 403 413 415 422",
                body=upload,
                created=_json(ref("Prompt"), "a new custom prompt"),
            ),
            "delete": _op(
                "Remove a custom prompt (admin); the shipped one plays again",
                _json(ref("PromptDeleted"), "deleted"),
                "403 404 422",
            ),
        },
        "/calls": {
            "get": _op(
                "Call records, newest first: a user's own calls (admin: anyone's or all); "
                "also at /api/calls",
                _json(_array(ref("CallRecord")), "records"),
                "403",
                params=[
                    _query(
                        "user",
                        "caller or called user",
                        {"type": "string", "pattern": "^[0-9]{1,32}$"},
                    ),
                    _query("limit", "at most this many", LIMIT),
                ],
            )
        },
        "/calls/{id}": {
            "parameters": [_path("id", "call record id", {"type": "string"}, "5f1c0a9e3b7d2c41")],
            "get": _op(
                "One call: legs, decision traces, steps, outcome (also at /api/calls/{id})",
                _json(ref("CallRecord"), "the record"),
                "404",
            ),
        },
        "/queues": {
            "get": _op(
                "The call queues and their members (logged in, paused, ringing)",
                _json(_array(ref("Queue")), "queues"),
                "",
            )
        },
        "/queues/{id}": {
            "parameters": [_path("id", "queue id or number", {"type": "string"}, "support")],
            "get": _op("One call queue and its members", _json(ref("Queue"), "the queue"), "404"),
        },
        "/health": {
            "get": _op(
                "Liveness and counts (also at /health)", _json(ref("Health"), "ok"), "", public=True
            ),
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (also at /metrics)",
                {"description": "text format 0.0.4", "content": {"text/plain": {}}},
                "",
                public=True,
            ),
        },
    }


IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "the ETag of the version this change is based on (409 when stale)",
    "schema": {"type": "string"},
}
DEVICE = _path("device", "device id", {"type": "string"}, "1001-desk")
PROFILE = _path("profile", "profile id", {"type": "string"}, "lunch")
SCHEDULE = _path("schedule", "schedule id", {"type": "string"}, "s1")
MESSAGE = _path("id", "message id", {"type": "string", "pattern": "^[0-9]+$"}, "1")
_ETAG = {"ETag": {"description": "the object's version", "schema": {"type": "string"}}}
GONE = {"description": "deleted"}


def _tagged(schema: Schema, description: str) -> dict[str, Any]:
    return {**_json(schema, description), "headers": _ETAG}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": ref(name)}}}


def _crud(
    what: str,
    schema: str,
    *,
    admin: bool,
    params: list[dict[str, Any]],
    key: dict[str, Any],
    listing: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(collection, item)`` path items: POST (+ GET list) and GET/PUT/DELETE one."""
    who = "admin" if admin else "own user or admin"
    writes = "400 403 404 409 413 415 422"
    collection: dict[str, Any] = {
        "parameters": params,
        "post": _op(
            f"Create a {what} ({who})",
            _tagged(ref(schema), "created"),
            writes,
            body=_body(f"{schema}Input"),
            status="201",
        ),
    }
    if listing:
        collection["get"] = _op(
            f"Every {what} ({who})", _tagged(_array(ref(schema)), what + "s"), "403 404"
        )
    item = {
        "parameters": [*params, key],
        "get": _op(f"One {what}", _tagged(ref(schema), "the " + what), "403 404"),
        "put": _op(
            f"Replace a {what} ({who}); secrets left out are kept",
            _tagged(ref(schema), "replaced"),
            writes,
            body=_body(f"{schema}Input"),
            params=[IF_MATCH],
        ),
        "delete": _op(
            f"Delete a {what} ({who})", GONE, "403 404 409", params=[IF_MATCH], status="204"
        ),
    }
    return collection, item


def directory_paths() -> dict[str, Any]:
    """The live directory, voicemail and greetings (``directory_api.py`` and friends)."""
    users, user = _crud("user", "User", admin=True, params=[], key=EXT)
    devices, device = _crud("device", "Device", admin=True, params=[EXT], key=DEVICE)
    profiles, profile = _crud("profile", "Profile", admin=True, params=[], key=PROFILE)
    schedules, schedule = _crud(
        "schedule", "Schedule", admin=False, params=[EXT], key=SCHEDULE, listing=True
    )
    del user["get"], devices["parameters"], profile["get"], profile["parameters"]
    del profiles["parameters"]
    del users["parameters"]
    wav = {"description": "8 kHz mono 16-bit WAV", "content": {"audio/wav": {}}}
    audio = {
        "required": True,
        "description": "the audio file itself, or multipart/form-data with one file part",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    }
    return {
        "/users": users,
        "/users/{ext}": user,
        "/users/{ext}/devices": devices,
        "/users/{ext}/devices/{device}": device,
        "/profiles": profiles,
        "/profiles/{profile}": profile,
        "/users/{ext}/schedules": schedules,
        "/users/{ext}/schedules/{schedule}": schedule,
        "/users/{ext}/voicemail": {
            "parameters": [EXT],
            "get": _op(
                "A mailbox's messages, oldest first (own user or admin)",
                _json(_array(ref("Voicemail")), "messages"),
                "403 404",
                params=[_query("heard", "only heard or unheard", {"enum": ["true", "false"]})],
            ),
        },
        "/users/{ext}/voicemail/{id}": {
            "parameters": [EXT, MESSAGE],
            "get": _op("One message", _json(ref("Voicemail"), "the message"), "403 404"),
            "patch": _op(
                "Mark heard or unheard, saved or not",
                _json(ref("Voicemail"), "the message"),
                "403 404 413 415",
                body=_body("VoicemailChange"),
            ),
            "delete": _op("Delete the message and its audio", GONE, "403 404", status="204"),
        },
        "/users/{ext}/voicemail/{id}/audio": {
            "parameters": [EXT, MESSAGE],
            "get": _op("The message as WAV", wav, "403 404"),
        },
        "/users/{ext}/greetings": {
            "parameters": [EXT],
            "get": _op(
                "The profiles with a recorded greeting (own user or admin)",
                _json(_array(ref("Greeting")), "greetings"),
                "403 404",
            ),
        },
        "/users/{ext}/greetings/{profile}": {
            "parameters": [EXT, PROFILE],
            "get": _op("The greeting callers hear, as WAV", wav, "403 404"),
            "put": _op(
                "Upload a greeting: any prompt format, trimmed, levelled, stored",
                _json(ref("Greeting"), "replaced"),
                "403 404 413 415",
                body=audio,
                created=_json(ref("Greeting"), "a new greeting"),
            ),
            "delete": _op("Delete the greeting", GONE, "403 404", status="204"),
        },
    }


def _merge(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    for path, item in more.items():
        into.setdefault(path, {}).update(item)
    return into


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ivr admin and user API",
            "version": __version__,
            "description": "Users, devices, profiles, the active profile, presence, "
            "audit and prompts. Authenticate with `Authorization: Bearer <token>` "
            "(created with `ivr token create`).",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": _merge(paths(), directory_paths()),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
