"""CPU per SIP exchange through the pure core, without sockets or a reactor.

Drives :class:`ivr.sip.core.SipCore` directly with the real registration service
(digest auth + registrar) and times only the server side (``core.receive``); the
client's work (building requests, computing digests) is outside the timed region.

- **REGISTER pair**: REGISTER → 401 challenge, REGISTER with digest → 200 (one
  registration, as SIPp's ``register_auth.xml`` does it);
- **OPTIONS**: OPTIONS → 200;
- **INVITE setup**: INVITE with SDP → 407, INVITE with proxy digest → 200 with
  SDP → ACK → BYE → 200 (a feature call's signalling, without media or the store).

Timer actions go to a sink that only counts them: the reactor's cost of arming timers
is not included (see ``benchmarks/register_load.py`` for the whole server).

    python -m benchmarks.sip_core --count 20000
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ivr.registration import RegistrationService
from ivr.serve import GC_THRESHOLDS
from ivr.sip.auth import DigestAuth, digest_response
from ivr.sip.core import Peer, ServerRequest, SetTimer, SipCore, Transmit
from ivr.sip.dialog import Dialog, DialogTable
from ivr.sip.ids import Ids
from ivr.sip.message import Request, Response
from ivr.sip.registrar import Registrar
from ivr.sipapp import SipApplication

HOST = "192.0.2.1"
PORT = 5060
DOMAIN = "ivr.local"
REALM = "ivr.local"
USERS = 200
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
)
_NONCE_RE = re.compile(rb'nonce="([^"]+)"')
_TO_RE = re.compile(rb"^To: (.*)$", re.M)


def password(user: str) -> str:
    return f"secret-{user}"


class Sink:
    """The core's action sink: keeps the last datagram, counts timers."""

    __slots__ = ("last", "sent", "timers")

    def __init__(self) -> None:
        self.sent = 0
        self.timers = 0
        self.last = b""

    def __call__(self, actions: Iterable[object]) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                self.sent += 1
                self.last = action.data
            elif isinstance(action, SetTimer):
                self.timers += 1


class Answerer:
    """A call handler that authenticates an INVITE (407) and answers it 200 with SDP."""

    def __init__(self, registration: RegistrationService, core_ref: list[SipCore]) -> None:
        self.registration = registration
        self.core_ref = core_ref
        self.dialogs = DialogTable()

    def handle_invite(self, request: ServerRequest) -> None:
        core = self.core_ref[0]
        req = request.request
        _user, refusal = self.registration.authenticate(
            req, str(request.peer), core.now(), proxy=True
        )
        if refusal is not None:
            request.respond(refusal.reply.status, headers=refusal.reply.headers)
            return
        contact = f"<sip:{HOST}:{PORT}>"
        dialog = Dialog.as_uas(req, request.to_tag, contact, confirmed=True)
        self.dialogs.add(dialog)
        request.respond(
            200,
            to_tag=request.to_tag,
            headers=[("Contact", contact), ("Content-Type", "application/sdp")],
            body=SDP,
        )

    def handle_in_dialog(self, request: ServerRequest) -> bool:
        dialog = self.dialogs.lookup(request.request)
        if dialog is None:
            return False
        request.respond(200)
        if request.request.method == "BYE":
            self.dialogs.remove(dialog.id)
        return True

    def handle_ack(self, request: Request, peer: Peer) -> None:
        self.dialogs.find_request(request)

    def handle_cancel(self, request: ServerRequest) -> None:
        pass

    def handle_ack_timeout(self, response: Response) -> None:
        pass


@dataclass
class Bench:
    core: SipCore
    sink: Sink
    clock: list[float]
    peer: Peer

    def feed(self, data: bytes) -> float:
        """Seconds of CPU the core spent on ``data`` (this thread's CPU time, so that
        other processes on a shared machine do not count)."""
        started = time.thread_time()
        self.core.receive(data, self.peer)
        return time.thread_time() - started


def build(seed: int = 1) -> Bench:
    rng = random.Random(seed)
    clock = [1_000_000.0]
    auth = DigestAuth(
        REALM,
        b"0123456789abcdef0123456789abcdef",
        random_bytes=lambda n: rng.getrandbits(8 * n).to_bytes(n, "big"),
    )
    registration = RegistrationService(
        domain=DOMAIN,
        auth=auth,
        registrar=Registrar(),
        lookup=lambda user: password(user) if user.startswith("u") else None,
    )
    core_ref: list[SipCore] = []
    app = SipApplication(registration=registration, now=lambda: clock[0])
    app.calls = Answerer(registration, core_ref)
    core = SipCore(app, host=HOST, port=PORT, ids=Ids(rng))
    core_ref.append(core)
    sink = Sink()
    core.attach(sink, lambda: clock[0])
    return Bench(core, sink, clock, Peer("udp", "192.0.2.10", 5062))


def _register(user: str, n: int, cseq: int, authorization: str | None) -> bytes:
    lines = [
        f"REGISTER sip:{HOST}:{PORT} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-r{n}-{cseq};rport",
        f"From: <sip:{user}@{DOMAIN}>;tag=t{n}",
        f"To: <sip:{user}@{DOMAIN}>",
        f"Call-ID: reg-{n}@192.0.2.10",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@192.0.2.10:5062;transport=udp>",
    ]
    if authorization:
        lines.append(authorization)
    lines += ["Max-Forwards: 70", "Expires: 600", "User-Agent: SIPp", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def _authorization(header: str, user: str, method: str, uri: str, challenge: bytes) -> str:
    found = _NONCE_RE.search(challenge)
    assert found is not None, challenge[:200]
    nonce = found.group(1).decode()
    response = digest_response(
        algorithm="SHA-256",
        username=user,
        realm=REALM,
        password=password(user),
        method=method,
        uri=uri,
        nonce=nonce,
        nc="00000001",
        cnonce="abcdef01",
    )
    opaque = re.search(rb'opaque="([^"]+)"', challenge)
    assert opaque is not None
    return (
        f'{header}: Digest username="{user}",realm="{REALM}",nonce="{nonce}",uri="{uri}",'
        f'response="{response}",algorithm=SHA-256,qop=auth,nc=00000001,cnonce="abcdef01",'
        f'opaque="{opaque.group(1).decode()}"'
    )


def register_pair(bench: Bench, n: int) -> float:
    user = f"u{n % USERS}"
    spent = bench.feed(_register(user, n, 1, None))
    challenge = bench.sink.last
    assert challenge.startswith(b"SIP/2.0 401 "), challenge[:80]
    uri = f"sip:{HOST}:{PORT}"
    authorization = _authorization("Authorization", user, "REGISTER", uri, challenge)
    spent += bench.feed(_register(user, n, 2, authorization))
    assert bench.sink.last.startswith(b"SIP/2.0 200 "), bench.sink.last[:200]
    return spent


def options(bench: Bench, n: int) -> float:
    data = (
        f"OPTIONS sip:{HOST}:{PORT} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-o{n};rport\r\n"
        f"From: <sip:probe@{DOMAIN}>;tag=o{n}\r\nTo: <sip:{HOST}:{PORT}>\r\n"
        f"Call-ID: opt-{n}@192.0.2.10\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Accept: application/sdp\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    spent = bench.feed(data)
    assert bench.sink.last.startswith(b"SIP/2.0 200 "), bench.sink.last[:80]
    return spent


def _invite_head(user: str, n: int, cseq: int, method: str, to: str, branch: str) -> list[str]:
    return [
        f"{method} sip:*23*2*1300%23@{DOMAIN} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-{branch};rport",
        f"From: <sip:{user}@{DOMAIN}>;tag=i{n}",
        f"To: {to}",
        f"Call-ID: inv-{n}@192.0.2.10",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:{user}@192.0.2.10:5062>",
        "Max-Forwards: 70",
    ]


def _with_body(lines: list[str], body: bytes) -> bytes:
    if body:
        lines = [*lines, "Content-Type: application/sdp"]
    lines = [*lines, f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


def invite_setup(bench: Bench, n: int) -> float:
    user = f"u{n % USERS}"
    plain_to = f"<sip:*23*2*1300%23@{DOMAIN}>"
    first = _invite_head(user, n, 1, "INVITE", plain_to, f"i{n}a")
    spent = bench.feed(_with_body(first, SDP))
    challenge = bench.sink.last
    assert challenge.startswith(b"SIP/2.0 407 "), challenge[:80]
    ack = _invite_head(user, n, 1, "ACK", _to_of(challenge), f"i{n}a")
    spent += bench.feed(_with_body(ack, b""))
    uri = f"sip:*23*2*1300%23@{DOMAIN}"
    authorization = _authorization("Proxy-Authorization", user, "INVITE", uri, challenge)
    second = [*_invite_head(user, n, 2, "INVITE", plain_to, f"i{n}b"), authorization]
    spent += bench.feed(_with_body(second, SDP))
    answer = bench.sink.last
    assert answer.startswith(b"SIP/2.0 200 "), answer[:200]
    to = _to_of(answer)
    spent += bench.feed(_with_body(_invite_head(user, n, 2, "ACK", to, f"i{n}c"), b""))
    spent += bench.feed(_with_body(_invite_head(user, n, 3, "BYE", to, f"i{n}d"), b""))
    assert bench.sink.last.startswith(b"SIP/2.0 200 "), bench.sink.last[:80]
    return spent


def _to_of(response: bytes) -> str:
    found = _TO_RE.search(response)
    assert found is not None
    return found.group(1).decode().strip()


def measure(name: str, step: Callable[[Bench, int], float], count: int, warmup: int) -> float:
    """Microseconds of server CPU per ``step``, after ``warmup`` unmeasured ones."""
    bench = build()
    for n in range(warmup):
        step(bench, n)
    total = 0.0
    for n in range(warmup, warmup + count):
        total += step(bench, n)
        bench.clock[0] += 0.0005
    return total / count * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="measured exchanges of each kind")
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 1_000_000 or not 0 <= args.warmup <= 100_000:
        parser.error("--count must be within 1..1000000 and --warmup within 0..100000")
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)  # as `ivr serve` runs
    try:
        for name, step, what in (
            ("REGISTER pair", register_pair, "401 + 200"),
            ("OPTIONS", options, "200"),
            ("INVITE setup", invite_setup, "407, ACK, 200, ACK, BYE"),
        ):
            us = measure(name, step, args.count, args.warmup)
            print(f"{name:14} {us:8.1f} µs per exchange ({what})  [{args.count} measured]")
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
