"""Pure parts of the directory API: If-Match parsing, GET's profile shape going back in,
and audio upload bodies (raw or multipart)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.admin.directory_api import bad_fields, if_match, profile_input, refuse
from ivr.admin.errors import ApiError
from ivr.admin.http import ApiRequest
from ivr.admin.uploads import upload_bytes
from ivr.admin.views import profile_json
from ivr.config import ConfigError, load_config, parse_profile
from ivr.prompt_import import Rejected

REPO = Path(__file__).resolve().parents[1]
CONFIG = load_config(REPO / "config" / "ivr.toml")


def request(**headers: str) -> ApiRequest:
    return ApiRequest(
        method="PUT", params={}, query={}, body=b"", content_type=None, principal=None,
        source="127.0.0.1", headers=headers,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("header", "version"), [(None, None), ("*", None), ('"3"', 3), ('W/"12"', 12), ("7", 7)]
)
def test_if_match_names_a_version(header: str | None, version: int | None) -> None:
    headers = {} if header is None else {"if-match": header}
    assert if_match(request(**headers)) == version


@pytest.mark.parametrize("header", ['"abc"', '"-1"', '"1.5"', '"٣"', '"' + "9" * 20 + '"'])
def test_a_foreign_if_match_is_400_naming_the_header(header: str) -> None:
    with pytest.raises(ApiError) as caught:
        if_match(request(**{"if-match": header}))
    assert caught.value.status == 400 and "If-Match" in caught.value.body()["fields"]


@pytest.mark.parametrize("profile", CONFIG.profiles, ids=lambda p: p.id)
def test_what_get_shows_of_a_profile_parses_back_to_it(profile) -> None:
    shown = profile_json(profile)
    assert parse_profile(profile_input(shown), CONFIG.company, "/p") == profile


def test_an_unknown_key_in_a_then_object_is_named() -> None:
    shown = profile_json(CONFIG.profiles[1])
    shown["plan"]["then"]["whom"] = "x"  # type: ignore[index]
    with pytest.raises(ApiError) as caught:
        profile_input(shown)
    assert caught.value.body()["fields"] == {"plan.then.whom": "unknown key"}


def test_a_parse_error_is_one_422_naming_every_field() -> None:
    shown = profile_json(CONFIG.profiles[1])
    shown.update(colour="red", icon=5)
    del shown["id"]

    def parse() -> object:
        return parse_profile(profile_input(dict(shown)), CONFIG.company, "/p")

    found = refuse(parse, fallback={"id": "is required (a string)", "presence": "unused"})
    assert found.status == 422 and found.body() == {
        "error": "invalid request",
        "fields": {
            "id": "is required",
            "presence": "unused",
            "colour": "must be #RRGGBB, got 'red'",
            "icon": "must be a string, got 5",
        },
    }, "the parser's reasons win over the fallback's"
    mine = refuse(parse, known={"colour": "mine"}).body()["fields"]
    assert mine["colour"] == "mine" and mine["icon"] == "must be a string, got 5"  # type: ignore[index]
    assert bad_fields(ConfigError("/p", "", "must be a table")) == {"body": "must be a table"}


def _form(boundary: str, *parts: tuple[str, bytes, bool]) -> bytes:
    out = b""
    for name, data, is_file in parts:
        filename = f'; filename="{name}.wav"' if is_file else ""
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


def test_uploads_raw_and_multipart() -> None:
    assert upload_bytes(b"RIFF....", "audio/wav") == b"RIFF....", "raw bodies pass through"
    assert upload_bytes(b"RIFF", None) == b"RIFF"
    body = _form("zz", ("note", b"hi", False), ("file", b"\r\nRIFF--zz\r\x00", True))
    assert upload_bytes(body, "multipart/form-data; boundary=zz") == b"\r\nRIFF--zz\r\x00"
    quoted = upload_bytes(body, 'Multipart/Form-Data; boundary="zz"')
    assert quoted == b"\r\nRIFF--zz\r\x00"


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        (_form("zz", ("note", b"hi", False)), "multipart/form-data; boundary=zz", "got 0"),
        (
            _form("zz", ("a", b"1", True), ("b", b"2", True)),
            "multipart/form-data; boundary=zz",
            "got 2",
        ),
        (b"no boundary here", "multipart/form-data; boundary=zz", "malformed"),
        (b"", "multipart/form-data", "boundary parameter"),
    ],
)
def test_bad_multipart_bodies_are_400(body: bytes, content_type: str, why: str) -> None:
    with pytest.raises(Rejected) as caught:
        upload_bytes(body, content_type)
    assert caught.value.status == 400 and why in caught.value.reason
