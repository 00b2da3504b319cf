"""End to end: `ivr serve` against the real SIPp over UDP and TCP."""

from __future__ import annotations

import pytest

from ivr.testing.devices import auth_row
from ivr.testing.sipp import Sipp

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_with_digest_gets_a_binding(service, sipp_binary, transport) -> None:
    result = Sipp(
        scenario="register_auth.xml",
        remote=(service.host, service.sip_port),
        transport=transport,
        inf_rows=[auth_row("1001", "anna-desk-1001")],
        timeout=20,
    )()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert "WWW-Authenticate: Digest" in result.messages
    assert "algorithm=SHA-256" in result.messages and "algorithm=MD5" in result.messages
    status, health = service.get_json("/health")
    assert status == 200
    assert health["registrations"] == 1


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_wrong_password_is_refused_and_binds_nothing(service, sipp_binary, transport) -> None:
    result = Sipp(
        scenario="register_rejected.xml",
        remote=(service.host, service.sip_port),
        transport=transport,
        inf_rows=[auth_row("1001", "not-the-password")],
        timeout=20,
    )()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    _, health = service.get_json("/health")
    assert health["registrations"] == 0
    assert "auth-failure" in service.log() and "user=1001" in service.log()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_options_is_answered_with_capabilities(service, sipp_binary, transport) -> None:
    result = Sipp(
        scenario="options.xml",
        remote=(service.host, service.sip_port),
        transport=transport,
        timeout=20,
    )()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert "Allow: INVITE" in result.messages
    assert "Supported:" in result.messages
