"""End to end: the outbound trunk over TCP (``--trunk sip:HOST:PORT;transport=tcp``),
with real SIPp on every side (``-t t1`` for the trunk).

A desk phone dialling a public number: the service opens a TCP connection to the trunk,
the INVITE (Via and Contact saying TCP, the profile's caller-ID) goes over it, the ACK
and our BYE reuse it, and the caller's media reaches the trunk. A call from the trunk
over TCP to a DID rings the desk (the trunk is trusted by address, whatever the
transport). A trunk nobody listens on: the caller gets 503 at once (the refused
connection fails the leg's transaction), not after Timer B's 32 s, and no call is left.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StartIvr
from test_e2e_b2bua import DESK, PCAP_FRAMES, call, device
from test_e2e_trunk import TRUNK_HOST, Trunk, from_trunk, when

from ivr.testing.api import idle
from ivr.testing.demo_config import demo_config_text, write_config
from ivr.testing.devices import DOMAIN
from ivr.testing.rtp_sink import RtpSink
from ivr.testing.service import RunningService
from ivr.testing.sip_trace import header, received

pytestmark = pytest.mark.e2e


@pytest.fixture
def trunk() -> Trunk:
    return Trunk(transport="tcp")


@pytest.fixture
def service(tmp_path: Path, trunk: Trunk, start_ivr: StartIvr) -> RunningService:
    """The demo company, 127.0.0.2 trusted as the trunk, the trunk at SIPp's TCP port."""
    text = demo_config_text(tmp_path)
    text = text.replace("ring_seconds = 25", "ring_seconds = 3", 1)
    text = text.replace("trusted_peers = []", f'trusted_peers = ["{TRUNK_HOST}/32"]', 1)
    trunk_uri = f"sip:{TRUNK_HOST}:{trunk.port};transport=tcp"
    return start_ivr("--trunk", trunk_uri, config=write_config(tmp_path, text), clean_log=True)


@pytest.fixture
def sinks() -> Iterator[dict[str, RtpSink]]:
    # The trunk's SDP names SIPp's address (127.0.0.2): its media sink listens there.
    made = {"caller": RtpSink(), "desk": RtpSink(), "trunk": RtpSink(TRUNK_HOST)}
    yield made
    for sink in made.values():
        sink.close()


def test_a_desk_phone_calls_out_through_the_tcp_trunk(
    service: RunningService,
    sipp_binary: str,
    trunk: Trunk,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    uas = trunk.uas("trunk_uas.xml", tmp_path, sinks["trunk"])
    caller = call(service, "b2b_call.xml", sinks["caller"], tmp_path, "0701234567")
    assert caller.returncode == 0 and caller.successful == 1, caller.explain()
    result = uas.wait()
    assert result.returncode == 0, result.explain()
    assert "TCP message received" in result.messages and "UDP message" not in result.messages

    (invite,) = received(result, "INVITE ")
    assert invite.startswith(f"INVITE sip:+46701234567@{TRUNK_HOST}:{trunk.port}")
    assert header(invite, "Via").startswith(f"SIP/2.0/TCP 127.0.0.1:{service.sip_port};branch=")
    assert header(invite, "Contact").endswith(";transport=tcp>"), header(invite, "Contact")
    # Tillgänglig: the caller-ID is Anna's direct number, as over UDP.
    assert header(invite, "From").startswith(f'"Anna Andersson" <sip:+46846500401@{DOMAIN}>')
    assert header(invite, "P-Asserted-Identity") == f"<sip:+46846500401@{DOMAIN}>"
    assert header(invite, "Max-Forwards") == "69"
    assert f"m=audio {sinks['caller'].port} " in invite  # the caller's SDP, passed through
    ok = next(m for m in received(caller, "SIP/2.0 200") if "INVITE" in header(m, "CSeq"))
    assert f"m=audio {sinks['trunk'].port} " in ok

    # The caller's audio reached the trunk; the ACK and the relayed BYE came over TCP too.
    assert sinks["trunk"].ssrcs() == {0xCA11}
    assert abs(len(sinks["trunk"].packets) - PCAP_FRAMES) <= 2
    (ack,) = received(result, "ACK ")
    (bye,) = received(result, "BYE ")
    for message in (ack, bye):
        assert header(message, "Via").startswith("SIP/2.0/TCP ")
        assert header(message, "Call-ID") == header(invite, "Call-ID")
    assert idle(service), "call state left behind"


def test_a_call_from_the_trunk_over_tcp_rings_the_desk_without_digest(
    service: RunningService,
    sipp_binary: str,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    desk = device(service, DESK, "b2b_device_answer.xml", sinks["desk"], tmp_path)
    result = from_trunk(
        service,
        "trunk_call.xml",
        "0846500402",
        sinks["caller"],
        tmp_path,
        caller="0855512345",
        transport="tcp",
    )
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert "TCP message received" in result.messages
    assert not received(result, "SIP/2.0 407"), "the trunk is trusted by address over TCP too"
    desk_result = desk.wait()
    assert desk_result.returncode == 0, desk_result.explain()
    (invite,) = received(desk_result, "INVITE ")
    assert invite.startswith("INVITE sip:1002@127.0.0.1:")
    assert header(invite, "From").startswith(f'"Extern" <sip:+46855512345@{DOMAIN}>')
    assert received(desk_result, "BYE ")
    assert idle(service), "call state left behind"


def test_a_tcp_trunk_nobody_listens_on_fails_the_call_at_once(
    service: RunningService,
    sipp_binary: str,
    trunk: Trunk,
    sinks: dict[str, RtpSink],
    tmp_path: Path,
) -> None:
    # No SIPp on the trunk's port: the connection is refused.
    result = call(
        service, "b2b_call_refused.xml", sinks["caller"], tmp_path, "0701234567", max_forwards="70"
    )
    assert result.returncode == 0 and result.successful == 1, result.explain()
    (final,) = received(result, "SIP/2.0 503")
    assert header(final, "CSeq") == "2 INVITE"
    waited = when(result, "received", "SIP/2.0 503") - when(result, "received", "SIP/2.0 407")
    assert waited.total_seconds() < 2.0, waited  # not Timer B (32 s)
    log = service.log()
    assert f"TCP to tcp:{TRUNK_HOST}:{trunk.port} failed" in log
    assert "trunk call failed" in log and "(503)" in log
    assert idle(service), "call state left behind"
