"""benchmarks/b2bua_load.py runs once end to end with tiny bounded parameters.

Real SIPp (caller, desk and softphone UAS, the reference UAS), a real `ivr serve` and a
real loopback capture: a missing SIPp fails the test (it never skips). The structure of
the output is checked, and that the tiny step held with every call paired on the wire.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from benchmarks import b2bua_load

_STEP = re.compile(
    r"^ivr  rate     4/s  achieved +[\d.]+/s  ok +(\d+)  failed +(\d+)  "
    r"added delay p50 +([\d.]+) ms p99 +([\d.]+) ms \((\d+) paired\)  "
    r"setup p50 +\d+ ms p99 +\d+ ms  simultaneous calls peak +(\d+)  "
    r"server cpu +([\d.]+)% \( *(\d+) µs/call, reactor thread +([\d.]+)%\)  "
    r"waited for a cpu +\d+ ms  held$",
    re.M,
)


@pytest.mark.benchmark
@pytest.mark.e2e
def test_b2bua_load_runs_and_reports(sipp_binary: str, capsys: pytest.CaptureFixture) -> None:
    argv = ["--rates", "4", "--reference-rates", "4", "--seconds", "1.5", "--hold", "0.5"]
    argv += ["--users", "2"]
    assert b2bua_load.main(argv) == 0
    out = capsys.readouterr().out
    step = _STEP.search(out)
    assert step is not None, out
    ok, failed, p50, p99, paired, peak, cpu, cpu_us, reactor = step.groups()
    assert (int(ok), int(failed)) == (6, 0)
    assert int(paired) == 6, "every caller INVITE paired with its leg INVITE on the wire"
    assert 0 < float(p50) <= float(p99) < 1000
    assert 1 <= int(peak) <= 6
    assert int(cpu_us) > 0
    assert 0 <= float(reactor) <= float(cpu) + 2  # one thread of the process (± a clock tick)
    assert re.search(r"^sipp rate     4/s  achieved .* uas cpu .* held$", out, re.M), out
    assert "ivr  highest rate held: 4 forked call setups/s" in out
    assert "sipp highest rate held: 4 call setups/s" in out
    assert "ratio ivr/sipp: 1.00" in out


def test_bad_parameters_are_refused() -> None:
    for argv in (
        ["--rates", "0"],
        ["--rates", "a,b"],
        ["--reference-rates", "9000"],
        ["--seconds", "600"],
        ["--hold", "-1"],
        ["--users", "0"],
    ):
        with pytest.raises(SystemExit):
            b2bua_load.main(argv)


def _pcap(path: Path, packets: list[tuple[float, int, int, bytes]]) -> Path:
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for at, sport, dport, payload in packets:
        udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         b"\x7f\0\0\1", b"\x7f\0\0\1")  # fmt: skip
        frame = b"\0" * 12 + b"\x08\x00" + ip + udp
        sec, usec = int(at), round((at - int(at)) * 1e6)
        data += struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame
    path.write_bytes(data)
    return path


def test_added_delay_pairs_the_authenticated_invite_with_the_first_leg(tmp_path: Path) -> None:
    def invite(number: int, auth: bool) -> bytes:
        head = b"INVITE sip:x SIP/2.0\r\n" + (b"Proxy-Authorization: Digest x\r\n" if auth else b"")
        return head + b"\r\nv=0\r\no=- " + str(number).encode() + b" 1 IN IP4 127.0.0.1\r\n"

    ivr = 5060
    path = _pcap(
        tmp_path / "sip.pcap",
        [
            (10.000, 7000, ivr, invite(1, False)),  # challenged: not counted
            (10.010, 7000, ivr, invite(1, True)),
            (10.012, ivr, 8000, invite(1, False)),  # desk leg: 2 ms later
            (10.013, ivr, 8001, invite(1, False)),  # softphone leg: the first one counts
            (10.020, 7000, ivr, invite(2, True)),
            (10.020, 7000, ivr, invite(2, True)),  # a retransmission
            (10.025, ivr, 8000, invite(2, False)),
            (10.030, 7000, ivr, invite(3, True)),  # never forwarded: not paired
        ],
    )
    delays = sorted(round(d * 1000, 3) for d in b2bua_load.added_delays(path, ivr))
    assert delays == [2.0, 5.0]
