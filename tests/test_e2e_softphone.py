"""End to end with a real softphone: baresip dials feature codes and records what it hears.

baresip (Debian ``baresip-core``) authenticates with its own digest code, negotiates
G.711, plays the confirmation through its jitter buffer and decoder, and its
``sndfile`` module writes the decoded audio to a WAV. We show that the recording IS
the expected phrase: its normalised cross-correlation (NCC) with the composed prompt
sequence (PromptLibrary PCM through a G.711 round trip) is near 1 and every word sits
at its place, while a phrase that differs in one word misses that word and an
unrelated phrase does not correlate.

baresip 1.0.0 (libre 1.1) gives up with ENOSYS on a challenge set that contains any
algorithm but MD5, even when MD5 is offered too, so the service here challenges with
MD5 only (``--auth-algorithms MD5``) and checks digest uris strictly.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from conftest import require_binary

from ivr.media import g711, phrases
from ivr.media.prompts import PromptLibrary
from ivr.testing.api import health, profile
from ivr.testing.baresip import Baresip
from ivr.testing.polling import poll
from ivr.testing.service import RunningService

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Europe/Stockholm")
LIBRARY = PromptLibrary(REPO / "prompts")
MATCH = 0.85  # chunk-aligned NCC of the expected phrase (measured here: > 0.999)
WORD = 0.7  # each spoken word of the expected phrase (one frame lost inside it: ~0.77)
MISSED = 0.55  # a phrase differing in one word scores that word below this (measured < 0.5)
UNRELATED = 0.6  # a different sentence altogether (measured < 0.45)
CHUNK = 800  # samples (100 ms): the pieces of a word that are aligned on their own
TOLERANCE = 800  # samples (100 ms) a chunk may sit off the place the previous ones predict
TRACK = 0.8  # a chunk matched at least this well moves the place predicted for the next

Signal = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PhraseMatch:
    """How well a recording matches a prompt sequence.

    ``rigid``: the peak normalised cross-correlation (NCC) of the whole sequence at a
    single lag, ``lag`` samples (negative: the recording starts ``-lag`` samples into
    the phrase). A frame lost or late anywhere (the service skips frames when its
    tick runs late; a jitter buffer may drop or stretch) shifts the rest of the audio
    and pulls this down, so ``aligned`` is the NCC when each 100 ms chunk of each word
    may sit up to ``TOLERANCE`` off its predicted place, the prediction following the
    drift seen so far. ``words``: each spoken word's own NCC, chunk-aligned alike.
    """

    rigid: float
    lag: int
    aligned: float
    words: tuple[tuple[str, float], ...]

    @property
    def weakest(self) -> float:
        return min(score for _, score in self.words)

    def __str__(self) -> str:
        words = " ".join(f"{name}={score:.3f}" for name, score in self.words)
        return f"rigid={self.rigid:.4f}@{self.lag} aligned={self.aligned:.4f} [{words}]"


def decoded(pcm: npt.NDArray[np.int16], codec: str) -> Signal:
    """``pcm`` as the phone hears it after a G.711 round trip, as floats in [-1, 1)."""
    return g711.decode(codec, g711.encode(codec, pcm)).astype(np.float64) / 32768.0


def correlate(x: Signal, ref: Signal) -> tuple[Signal, Signal]:
    """Cross-correlation of ``ref`` at every full overlap with ``x``, and the energy of
    ``x`` under it (floored, so that silence makes no spurious peaks)."""
    valid = len(x) - len(ref) + 1
    size = 1 << (len(x) + len(ref) - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(ref, size)), size)[:valid]
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    window = np.maximum(energy[len(ref) :] - energy[:valid], 1e-3 * float(ref @ ref))
    return corr, window


def phrase_match(recording: Signal, words: list[str], lang: str, codec: str) -> PhraseMatch:
    """Match ``recording`` against the prompt sequence ``words`` (see :class:`PhraseMatch`)."""
    refs = [decoded(LIBRARY.pcm(lang, word), codec) for word in words]
    whole = np.concatenate(refs)
    corr, window = correlate(np.pad(recording, len(whole)), whole)
    ncc = corr / np.sqrt(window * float(whole @ whole))
    best = int(np.argmax(ncc))
    lag = best - len(whole)

    pad = len(whole) + 2 * TOLERANCE
    padded = np.pad(recording, pad)
    lowest, highest = TOLERANCE - pad, len(recording) + pad - TOLERANCE
    total = np.zeros(3)  # dot products, recording energies, reference energies
    scores: list[tuple[str, float]] = []
    start, drift = lag, 0
    for word, ref in zip(words, refs, strict=True):
        here, start = start, start + len(ref)
        if float(ref @ ref) < 1e-6 * len(ref):
            continue  # a pause: nothing to recognise
        sums = np.zeros(3)
        pieces = max(1, len(ref) // CHUNK)
        bounds = [len(ref) * i // pieces for i in range(pieces + 1)]
        for a, b in itertools.pairwise(bounds):
            chunk = ref[a:b]
            chunk_energy = float(chunk @ chunk)
            at = min(max(here + a + drift, lowest), highest - len(chunk))
            c, w = correlate(
                padded[at - TOLERANCE + pad : at + TOLERANCE + pad + len(chunk)], chunk
            )
            i = int(np.argmax(c / np.sqrt(w)))
            if c[i] >= TRACK * np.sqrt(w[i] * chunk_energy):
                drift += i - TOLERANCE
            sums += (c[i], w[i], chunk_energy)
        scores.append((word, float(sums[0] / np.sqrt(sums[1] * sums[2]))))
        total += sums
    aligned = float(total[0] / np.sqrt(total[1] * total[2]))
    return PhraseMatch(float(ncc[best]), lag, aligned, tuple(scores))


def assert_heard(
    recording: Signal,
    words: list[str],
    near_misses: dict[str, list[str]],
    unrelated: list[str],
    lang: str,
    codec: str,
) -> dict[str, PhraseMatch]:
    """The recording is ``words``: every word at its place; a phrase that differs in one
    word misses that word; an unrelated phrase does not match at all."""
    figures = {"expected": phrase_match(recording, words, lang, codec)}
    for name, phrase in near_misses.items():
        figures[name] = phrase_match(recording, phrase, lang, codec)
    figures["unrelated"] = phrase_match(recording, unrelated, lang, codec)
    report = "\n".join(f"{name}: {match}" for name, match in figures.items())
    print(report)
    expected = figures["expected"]
    assert expected.aligned >= MATCH, report
    assert expected.weakest >= WORD, report
    assert abs(expected.lag) <= 8000, f"the phrase starts {expected.lag / 8000:.2f} s off\n{report}"
    for name in near_misses:
        assert figures[name].weakest <= MISSED, f"{name} was not told apart\n{report}"
        assert figures[name].aligned < expected.aligned, report
    assert figures["unrelated"].aligned <= UNRELATED, report
    return figures


def heard_codec(phone: Baresip) -> str:
    """The decoder baresip put in its receive pipeline (``... <--- PCMU``)."""
    found = re.findall(r"audio rx pipeline:.*<--- (\w+)", phone.log())
    assert found, "baresip logged no audio receive pipeline:\n" + phone.log()[-3000:]
    return found[-1]


def load(path: Path) -> Signal:
    """A recording as 8 kHz mono floats."""
    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    assert rate == 8000, f"{path.name}: {rate} Hz"
    return data.mean(axis=1)


def softphone(
    service: RunningService,
    tmp_path: Path,
    user: str,
    password: str,
    *,
    register: bool,
    host: str = "127.0.0.1",
) -> Baresip:
    """A baresip account for ``user`` that reaches the service through an outbound proxy.

    A missing baresip fails the test (it never skips)."""
    binary = require_binary("baresip", "baresip-core")
    account = (
        f"<sip:{user}@ivr.local>;auth_pass={password};"
        f'outbound="sip:{service.host}:{service.sip_port}";regint={600 if register else 0}'
    )
    workdir = tmp_path / f"baresip-{user}"
    return Baresip(account, host=host, max_seconds=45, workdir=workdir, binary=binary)


def call(phone: Baresip, code: str) -> dict[str, object]:
    """Dial ``code`` (``#`` already as ``%23``); wait until the server has hung up."""
    start = len(phone.events)
    reply = phone.dial(f"sip:{code}@ivr.local")
    assert reply.get("ok"), reply
    phone.wait_event("CALL_ESTABLISHED", timeout=10, start=start)
    closed = phone.wait_event("CALL_CLOSED", timeout=20, start=start)
    return closed


def test_softphone_hears_lunch_confirmation(md5_service: RunningService, tmp_path: Path) -> None:
    phone = softphone(md5_service, tmp_path, "1001-soft", "anna-soft-1001", register=True)
    with phone:
        # registration completes before the control socket connects: read the registrar
        assert poll(lambda: health(md5_service)["registrations"] == 1), "not registered"
        reginfo = phone.command("reginfo")
        assert reginfo.get("ok") and "OK" in str(reginfo.get("data")), reginfo
        now = datetime.now(TZ)
        closed = call(phone, "*23*2*1300%23")
    assert phone.process is not None and phone.process.returncode == 0, phone.log()[-2000:]
    assert poll(lambda: health(md5_service)["registrations"] == 0), "no unregister on quit"
    server = f"UDP {md5_service.host}:{md5_service.sip_port} -> "
    assert re.search(re.escape(server) + r"\S+\r?\nBYE sip:", phone.log()), "no BYE from the server"
    assert closed["param"] == "Connection reset by peer", closed  # baresip's word for a BYE

    view = profile(md5_service, "1001")
    assert (view["profile"], view["source"], view["set_via"]) == ("lunch", "manual", "phone")
    until = datetime.fromisoformat(view["until"])
    assert until.astimezone(TZ).hour == 13 and until > now

    recordings = phone.recordings()
    assert len(recordings) == 1, recordings
    heard = load(recordings[0])
    codec = heard_codec(phone)
    assert codec == "PCMU", "baresip offers PCMU first; the server must take it"

    words = phrases.activated(2, until, now, "sv")  # "Lunch aktiverad. Åter ... klockan 13."
    assert_heard(
        heard,
        words,
        near_misses={
            "meeting": phrases.activated(3, until, now, "sv"),
            "at 14": phrases.activated(2, until.replace(hour=14), now, "sv"),
        },
        unrelated=phrases.invalid_code("sv"),
        lang="sv",
        codec=codec,
    )
    spoken = sum(len(LIBRARY.pcm("sv", word)) for word in words)
    assert len(heard) >= spoken - 1600, "the prompt was cut short"


def test_english_softphone_hears_dnd_and_query(md5_service: RunningService, tmp_path: Path) -> None:
    # a phone on another loopback address: its SDP and signalling name 127.0.0.2
    phone = softphone(
        md5_service, tmp_path, "1003", "carol-desk-1003", register=False, host="127.0.0.2"
    )
    with phone:
        now = datetime.now(TZ)
        call(phone, "*78")
        view = profile(md5_service, "1003")
        assert (view["profile"], view["presence"]) == ("dnd", "dnd")
        call(phone, "*%2323%23")
    assert profile(md5_service, "1003")["profile"] == "dnd", "a query changes nothing"

    recordings = phone.recordings()
    assert len(recordings) == 2, recordings
    codec = heard_codec(phone)
    dnd_on, query = (load(path) for path in recordings)

    said = phrases.activated(9, None, now, "en")  # "Do not disturb activated."
    asked = phrases.current_profile(9, None, now, "en")  # "Your profile is Do not disturb..."
    assert_heard(
        dnd_on,
        said,
        near_misses={
            "deactivated": phrases.deactivated(9, "en"),
            "lunch": phrases.activated(2, None, now, "en"),
        },
        unrelated=phrases.invalid_code("en"),
        lang="en",
        codec=codec,
    )
    assert_heard(
        query,
        asked,
        near_misses={"lunch": phrases.current_profile(2, None, now, "en"), "activated": said},
        unrelated=phrases.invalid_code("en"),
        lang="en",
        codec=codec,
    )


CLI = (sys.executable, "-m", "ivr.cli")


def admin_token(service: RunningService) -> str:
    """An admin API token made with the real CLI (``ivr token create --admin``)."""
    cli = subprocess.run(
        [*CLI, "token", "create", "--user", "1000", "--admin", "--db", str(service.db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    return cli.stdout.strip()


def put_json(service: RunningService, path: str, token: str, body: dict[str, object]) -> Any:
    """PUT a JSON body with a bearer token; the decoded answer (2xx only)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{service.http_port}{path}",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_caller_hears_the_spoken_redirect_of_a_user_at_lunch(
    md5_service: RunningService, tmp_path: Path
) -> None:
    # Lunch set over the API (admin acting for Bengt) takes effect on the next SIP call.
    view = put_json(
        md5_service,
        "/api/v1/users/1002/profile",
        admin_token(md5_service),
        {"profile": "lunch", "until": "13:00"},
    )
    assert view["profile"] == "lunch", view
    until = datetime.fromisoformat(view["until"]).astimezone(TZ)
    assert (until.hour, until.minute) == (13, 0)

    phone = softphone(md5_service, tmp_path, "1001-soft", "anna-soft-1001", register=False)
    with phone:
        now = datetime.now(TZ)
        start = len(phone.events)
        reply = phone.dial("sip:1002@ivr.local")
        assert reply.get("ok"), reply
        phone.wait_event("CALL_ESTABLISHED", timeout=10, start=start)
        # redirect, "leave a message", beep; silence from the phone ends the recording
        phone.wait_event("CALL_CLOSED", timeout=30, start=start)
    recordings = phone.recordings()
    assert len(recordings) == 1, recordings
    heard = load(recordings[0])
    codec = heard_codec(phone)

    redirect = phrases.redirect("1002", 2, until, now, "sv")  # "… är på lunch, åter klockan 13"
    assert_heard(
        heard,
        [*redirect, "leave_message", "beep"],
        near_misses={
            "gone": [*phrases.redirect("1002", 4, until, now, "sv"), "leave_message", "beep"],
            "at 14": [
                *phrases.redirect("1002", 2, until.replace(hour=14), now, "sv"),
                "leave_message",
                "beep",
            ],
        },
        unrelated=phrases.invalid_code("sv"),
        lang="sv",
        codec=codec,
    )
