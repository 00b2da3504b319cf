"""End to end over IPv6: `ivr serve` on ::1, REGISTER with digest from the real SIPp, OPTIONS."""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path

import pytest
from conftest import StartIvr
from sip_client import Reply, TcpClient, UdpClient, hostport, new_branch, options

from ivr.testing.devices import auth_row
from ivr.testing.service import RunningService
from ivr.testing.sipp import Sipp

pytestmark = pytest.mark.e2e

HOST = "::1"
DOMAIN = "ivr.local"
WAIT = 2.0


@pytest.fixture
def service6(start_ivr: StartIvr) -> RunningService:
    return start_ivr(host=HOST)


def test_sipp_command_brackets_ipv6_remote() -> None:
    """SIPp needs ``[::1]:port`` for an IPv6 remote and a bare ``::1`` for ``-i``."""
    sipp = Sipp(scenario="options.xml", remote=(HOST, 5099), local_host=HOST, local_port=5098)
    cmd = sipp.command(Path("/nonexistent"))
    assert cmd[1] == "[::1]:5099"
    assert cmd[cmd.index("-i") + 1] == HOST
    assert cmd[cmd.index("-p") + 1] == "5098"


def test_service_listens_on_ipv6(service6: RunningService) -> None:
    assert service6.host == HOST
    status, health = service6.get_json("/health")
    assert status == 200
    assert health["sip"] == {"host": HOST, "port": service6.sip_port}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_with_digest_over_ipv6(
    service6: RunningService, sipp_binary: str, transport: str
) -> None:
    """SIPp 3.6.1 digests ``sip:`` + remote_ip:remote_port without brackets by default
    (``uri="sip:::1:PORT"``, not a URI at all); ``-auth_uri`` makes it digest the
    Request-URI it actually sent, ``sip:[::1]:PORT``."""
    target = hostport(HOST, service6.sip_port)
    result = Sipp(
        scenario="register_auth.xml",
        local_host=HOST,
        remote=(HOST, service6.sip_port),
        transport=transport,
        inf_rows=[auth_row("1001", "anna-desk-1001")],
        extra=["-auth_uri", target],
        timeout=20,
    )()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert "WWW-Authenticate: Digest" in result.messages
    # SIPp wrote IPv6 references in brackets; the server's answers carry them back.
    assert f"REGISTER sip:{target} SIP/2.0" in result.messages
    assert f'uri="sip:{target}"' in result.messages
    assert "SIP/2.0 200" in result.messages
    status, health = service6.get_json("/health")
    assert status == 200
    assert health["registrations"] == 1


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_options_over_ipv6_with_sipp(
    service6: RunningService, sipp_binary: str, transport: str
) -> None:
    result = Sipp(
        scenario="options.xml",
        local_host=HOST,
        remote=(HOST, service6.sip_port),
        transport=transport,
        timeout=20,
    )()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert "Allow: INVITE" in result.messages


def test_raw_options_over_ipv6_udp(service6: RunningService) -> None:
    server = (HOST, service6.sip_port)
    with UdpClient(HOST) as udp:
        udp.send(options(*server, local=udp.local), server)
        replies = udp.collect(WAIT, until_final=True)
        local_port = udp.local[1]
    assert [r.status for r in replies] == [200], [str(r) for r in replies]
    via = replies[0].header("via") or ""
    assert via.startswith(f"SIP/2.0/UDP [::1]:{local_port};")
    assert "rport=" in via


def test_raw_options_over_ipv6_tcp(service6: RunningService) -> None:
    server = (HOST, service6.sip_port)
    with TcpClient(server) as tcp:
        tcp.send(options(*server, local=tcp.local, transport="TCP"))
        replies = tcp.collect(WAIT, until_final=True)
    assert [r.status for r in replies] == [200], [str(r) for r in replies]
    assert "OPTIONS" in (replies[0].header("allow") or "")


def register(
    local: tuple[str, int], *, call_id: str, cseq: int, authorization: str | None = None
) -> bytes:
    """A REGISTER for 1001 to the domain (the usual registrar Request-URI)."""
    lines = [
        f"REGISTER sip:{DOMAIN} SIP/2.0",
        f"Via: SIP/2.0/UDP {hostport(*local)};branch={new_branch()};rport",
        "Max-Forwards: 70",
        f"From: <sip:1001@{DOMAIN}>;tag=reg{call_id[:6]}",
        f"To: <sip:1001@{DOMAIN}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:1001@{hostport(*local)}>",
        "Expires: 600",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()


def md5_authorization(challenge: Reply, uri: str, password: str) -> str:
    """RFC 2617/3261 MD5 digest (qop=auth) for the challenge's MD5 offer."""
    offer = next(v for v in challenge.headers("www-authenticate") if "algorithm=MD5" in v)
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', offer))
    realm, nonce = fields["realm"], fields["nonce"]
    cnonce, nc = secrets.token_hex(4), "00000001"

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"1001:{realm}:{password}")
    ha2 = md5(f"REGISTER:{uri}")
    response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    opaque = f', opaque="{fields["opaque"]}"' if "opaque" in fields else ""
    return (
        f'Digest username="1001", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"{opaque}'
    )


@pytest.mark.parametrize("host", ["127.0.0.1", HOST])
def test_digest_uri_naming_the_server_itself_is_accepted(start_ivr: StartIvr, host: str) -> None:
    """``--auth-uri-check server`` (set by the test harness for SIPp) accepts a digest uri
    ``sip:HOST:PORT`` naming this server; an IPv6 server is named ``sip:[::1]:PORT``."""
    service = start_ivr(host=host)
    try:
        server = (host, service.sip_port)
        uri = f"sip:{hostport(*server)}"
        with UdpClient(host) as udp:
            call_id = secrets.token_hex(8)
            udp.send(register(udp.local, call_id=call_id, cseq=1), server)
            first = udp.collect(WAIT, until_final=True)
            assert [r.status for r in first] == [401], [str(r) for r in first]
            authorization = md5_authorization(first[0], uri, "anna-desk-1001")
            udp.send(
                register(udp.local, call_id=call_id, cseq=2, authorization=authorization), server
            )
            second = udp.collect(WAIT, until_final=True)
        assert [r.status for r in second] == [200], [str(r) for r in second] + [service.log()]
    finally:
        code = service.stop()
    assert code == 0, service.log()
