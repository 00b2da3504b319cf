"""End to end: phone self-service with real SIPp (RFC 4733 keys from pcaps) and baresip.

- A caller leaves a voicemail; ``*97`` from the owner's softphone (baresip, recording
  what it hears) announces one new message, reads its envelope and plays it (found in
  the recording by content); ``3`` deletes it: the row and the WAV file are gone.
- ``*24*2#`` records a greeting (speech, ``#``, listen, ``1`` keep); a call to the user
  in Lunch then hears that greeting (matched by content), not the composed phrase.
- Three wrong PINs on ``*98`` end the call; a fourth call is refused without asking
  for the PIN (even with the right one keyed); the security log has the events.
- ``*33*1002*PIN#*23*3#`` from Anna's softphone sets Bengt to Möte, audited with both
  identities (actor 1001, on behalf of 1002, device 1001-soft); ``*33…#*45`` logs Bengt
  out of his queues and ``*33…#*23`` runs the keypad menu for him.
- A PIN changed from the mailbox options (0, 3, the new PIN twice) is stored in the
  directory (audited, via phone) and works at once on ``*98``; the old one is refused.

baresip key presses wait on what the phone has heard (its recording grows as it hears)
or on what the service logs ("deleted"), not on sleeps counted from the answer. SIPp
streams are scripted: a key waits out only what the test listens to (barge-in cuts the
rest of a menu short) plus a margin for store work; calls that do not depend on each
other run at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from conftest import StartIvr, require_binary
from test_e2e_softphone import correlate, heard_codec, load, phrase_match

from ivr import greetings
from ivr.media import g711, phrases
from ivr.media.prompts import PromptLibrary
from ivr.store.sqlite import SqliteStore
from ivr.testing.audit import audit_log
from ivr.testing.baresip import Baresip
from ivr.testing.demo_config import demo_config_text, write_config
from ivr.testing.devices import DOMAIN
from ivr.testing.devices import auth_row as row
from ivr.testing.pcap import RtpStream
from ivr.testing.polling import poll
from ivr.testing.rtp_sink import RtpSink
from ivr.testing.service import RunningService
from ivr.testing.sipp import Sipp, SippResult

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Europe/Stockholm")
LIBRARY = PromptLibrary(REPO / "prompts")
ANNA = ("1001", "anna-desk-1001")
ANNA_SOFT = ("1001-soft", "anna-soft-1001")
BENGT = ("1002", "bengt-desk-1002")
MATCH = 0.85  # NCC of recorded audio against what was stored (G.711 round trips)
UNRELATED = 0.5

Signal = npt.NDArray[np.float64]
KEY_MS = 80  # an RFC 4733 key press, and the gap after it
STORE_MS = 800  # after a key the server answers from its store (PIN check, messages, files)
START_MS = 500  # from the ACK to the first key (the flow starts on the ACK)


# --- helpers -------------------------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path, start_ivr: StartIvr) -> RunningService:
    """The demo company, recordings in ``tmp_path``, Anna without her lunch schedule and
    her mobile (a call to her goes to voicemail at once at any hour, not after 25 s of
    ringing the trunk), MD5-only challenges (baresip)."""
    text = demo_config_text(tmp_path)
    for what, pattern in (
        ("Anna's lunch schedule", r'\[\[users\.schedules\]\]\nid = "lunch"\n'),
        ("Anna's mobile", r'\[\[users\.devices\]\]\nid = "1001-mobile"\n'),
    ):
        text, removed = re.subn(pattern + r"(?:[^\[\n][^\n]*\n)*", "", text, count=1)
        assert removed == 1, f"the demo config changed: {what} not found"
    config = write_config(tmp_path, text)
    return start_ivr("--auth-algorithms", "MD5", config=config, clean_log=True)


def recordings(service: RunningService) -> Path:
    return service.db.parent / "recordings"


def speech(words: list[str], lang: str = "sv") -> npt.NDArray[np.int16]:
    """Real speech to say into a phone: prompts of the library, one after another."""
    return np.concatenate([LIBRARY.pcm(lang, w) for w in words])


def seconds(words: list[str], lang: str = "sv") -> float:
    return sum(LIBRARY.duration(lang, w) for w in words)


def dial(
    service: RunningService,
    account: tuple[str, str],
    code: str,
    stream: RtpStream,
    workdir: Path,
    sink: RtpSink,
) -> SippResult:
    """SIPp dials ``code`` as ``account``, plays ``stream`` (audio and RFC 4733 keys)
    from the answer on, and waits for the server's BYE."""
    workdir.mkdir(parents=True)
    stream.write(workdir / "caller.pcap")
    result = Sipp(
        scenario="selfservice_call.xml",
        remote=(service.host, service.sip_port),
        inf_rows=[row(*account)],
        keys={"callee": code, "rtp_port": str(sink.port)},
        timeout=60,
        workdir=workdir,
    )()
    assert result.returncode == 0 and result.successful == 1, result.explain()
    assert "BYE sip:" in result.messages, "the server sent no BYE\n" + result.explain()
    return result


def keys(stream: RtpStream, entry: str, gap_ms: float = KEY_MS) -> RtpStream:
    for key in entry:
        stream.event(key, KEY_MS).silence(gap_ms)
    return stream


def together(*calls: Callable[[], SippResult]) -> list[SippResult]:
    """Run independent calls at once (each its own SIPp, workdir and sink)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def wait_log(service: RunningService, pattern: str, count: int = 1, timeout: float = 30) -> None:
    """Until the service has logged ``pattern`` ``count`` times (an observable event, not
    a sleep computed from prompt lengths: robust on a slow machine)."""
    found = poll(lambda: len(re.findall(pattern, service.log())) >= count, timeout)
    assert found, f"never logged {pattern!r} x{count}:\n{service.log()[-3000:]}"


def best_ncc(recording: Signal, reference: Signal) -> tuple[float, int]:
    """The peak normalised cross-correlation of ``reference`` inside ``recording``."""
    corr, window = correlate(np.pad(recording, len(reference)), reference)
    ncc = corr / np.sqrt(window * float(reference @ reference))
    at = int(np.argmax(ncc))
    return float(ncc[at]), at - len(reference)


def as_heard(pcm: npt.NDArray[np.int16], codec: str) -> Signal:
    return g711.decode(codec, g711.encode(codec, pcm)).astype(np.float64) / 32768.0


def heard_so_far(phone: Baresip) -> Signal:
    """What baresip has heard in its call so far: its recording grows as it hears (the
    WAV header is completed only at the end, so the samples are read after ``data``)."""
    found = phone.recordings()
    raw = found[-1].read_bytes() if found else b""
    at = raw.find(b"data")
    body = raw[at + 8 :] if at >= 0 else b""
    return np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0


def wait_heard(phone: Baresip, reference: Signal, timeout: float) -> None:
    """Until the phone has heard ``reference`` to its end (an observable event, not a
    sleep computed from prompt lengths: robust on a slow machine)."""

    def ended() -> bool:
        heard = heard_so_far(phone)
        if len(heard) < len(reference):
            return False
        found, at = best_ncc(heard, reference)
        return found >= MATCH and at + len(reference) + 800 <= len(heard)

    assert poll(ended, timeout, interval=0.2), "the phone never heard it to its end"


# --- voicemail retrieval ------------------------------------------------------------------


INTRO = ["record_after_beep", "beep"]
MESSAGE_WORDS = ["profile_6", "redirect_7", "weekday_4", "month_9"]
OTHER_WORDS = ["profile_3", "redirect_5", "weekday_1", "month_2"]


def leave_message(service: RunningService, sink: RtpSink, workdir: Path) -> None:
    """Bengt calls Anna (nobody registered: voicemail at once), skips the greeting with
    ``#`` (the beep follows), says a few words and ends the message with ``#``."""
    stream = keys(RtpStream(codec="PCMA").silence(START_MS), "#")
    stream.silence(seconds(["beep"]) * 1000 + 600).pcm(speech(MESSAGE_WORDS)).silence(300)
    keys(stream, "#").silence(3000)
    dial(service, BENGT, "1001", stream, workdir, sink)


def test_star97_announces_plays_and_deletes_a_message(
    service: RunningService, sipp_binary: str, sink: RtpSink, tmp_path: Path
) -> None:
    leave_message(service, sink, tmp_path / "caller")
    with SqliteStore(service.db, recordings_dir=recordings(service)) as store:
        (message,) = store.voicemail.list("1001")
        path = store.voicemail.file(message)
    stored = sf.read(str(path), dtype="int16")[0]
    assert message.caller == "1002" and not message.heard
    received = message.received_at.astimezone(TZ)

    binary = require_binary("baresip", "baresip-core")
    user, password = ANNA_SOFT
    account = (
        f"<sip:{user}@{DOMAIN}>;auth_pass={password};"
        f'outbound="sip:{service.host}:{service.sip_port}";regint=0'
    )
    phone = Baresip(
        account, max_seconds=120, mic_seconds=110, workdir=tmp_path / "baresip", binary=binary
    )
    now = datetime.now(TZ)
    lead = ["you_have", "num_1", "new_message", phrases.PAUSE]
    day = "today" if received.date() == now.date() else f"weekday_{received.weekday()}"
    envelope = [
        "message_from",
        *phrases.digits("1002"),
        phrases.PAUSE,
        day,
        "at",
        *phrases.time_words(received.time(), "sv"),
    ]
    until_message = seconds([*lead, *envelope]) + len(stored) / 8000
    with phone:
        reply = phone.dial(f"sip:*97@{DOMAIN}")
        assert reply.get("ok"), reply
        phone.wait_event("CALL_ESTABLISHED", timeout=10)
        assert poll(lambda: "audio rx pipeline" in phone.log(), 10), phone.log()[-3000:]
        codec = heard_codec(phone)
        # keys go on what the phone has heard, not on sleeps counted from the answer:
        # once the message has played, 3 deletes it (cutting the message menu short) ...
        wait_heard(phone, as_heard(stored, codec), timeout=until_message + 30)
        assert phone.command("sndcode", "3").get("ok")
        # ... "deleted, no more messages" is said from the deletion on, then # (cutting
        # the end menu short) says goodbye
        wait_log(service, rf"voicemail {message.id} deleted by 1001-soft")
        deleted_words = speech(["message_deleted", "no_more_messages"])
        wait_heard(phone, as_heard(deleted_words, codec), timeout=30)
        assert phone.command("sndcode", "#").get("ok")
        phone.wait_event("CALL_CLOSED", timeout=20)

    # the row and the file are gone together
    with SqliteStore(service.db, recordings_dir=recordings(service)) as store:
        assert store.voicemail.list("1001") == []
    assert not path.exists()
    assert "voicemail {id} deleted".replace("{id}", str(message.id)) in service.log()

    (heard_path,) = phone.recordings()
    heard = load(heard_path)
    assert heard_codec(phone) == codec
    said = phrase_match(heard, [*lead, *envelope], "sv", codec)
    assert said.aligned >= MATCH and said.weakest >= 0.7, said
    other = phrase_match(heard, ["you_have", "num_2", "new_messages"], "sv", codec)
    assert other.weakest < said.weakest, other
    found, at = best_ncc(heard, as_heard(stored, codec))
    assert found >= MATCH, f"the message was not heard: NCC {found:.3f}"
    expected_at = said.lag + sum(len(LIBRARY.pcm("sv", w)) for w in [*lead, *envelope])
    assert abs(at - expected_at) <= 1600, (at, expected_at)
    unrelated, _ = best_ncc(heard, as_heard(speech(OTHER_WORDS), codec))
    assert unrelated <= UNRELATED, unrelated
    deleted = phrase_match(heard, ["message_deleted", "no_more_messages"], "sv", codec)
    assert deleted.aligned >= MATCH, deleted


# --- greetings ------------------------------------------------------------------------------


def test_star24_records_a_greeting_that_callers_hear_in_lunch(
    service: RunningService, sipp_binary: str, sink: RtpSink, tmp_path: Path
) -> None:
    said = speech(OTHER_WORDS)
    blip = speech(["num_1"])[:1600]  # 0.2 s: refused with a spoken message
    intro = seconds(["record_after_beep", "beep"])
    stream = RtpStream(codec="PCMA").silence(intro * 1000 + 500).pcm(blip)
    keys(stream, "#")
    stream.silence((seconds(["recording_too_short"]) + intro) * 1000 + 500)
    stream.pcm(said).silence(300)
    keys(stream, "#")
    stream.silence(STORE_MS)  # the take is levelled, then played back: 1 (keep) cuts it short
    keys(stream, "1").silence(4000)
    # Bengt goes to lunch meanwhile (a call of its own: the greeting does not depend on it)
    lunch, lunch_sink = RtpStream(codec="PCMA").silence(500), RtpSink()
    try:
        together(
            lambda: dial(service, BENGT, "*24*2%23", stream, tmp_path / "record", sink),
            lambda: dial(service, BENGT, "*23*2%23", lunch, tmp_path / "lunch", lunch_sink),
        )
    finally:
        lunch_sink.close()
    too_short = phrase_match(sink.audio(), ["recording_too_short", *INTRO], "sv", "PCMA")
    assert too_short.rigid >= MATCH, too_short

    target = greetings.Greeting(extension="1002", profile="lunch")
    path = greetings.path_of(recordings(service), target)
    assert path.is_file(), service.log()[-3000:]
    kept, rate = sf.read(str(path), dtype="int16")
    assert rate == 8000 and 0.5 < len(kept) / 8000 < len(said) / 8000 + 0.5
    level = 20 * np.log10(np.sqrt(np.mean((kept / 32768.0) ** 2)))
    assert -30 < level < -15, f"levelled like the prompts: {level:.1f} dBFS"
    found, _ = best_ncc(as_heard(kept, "PCMA"), as_heard(said, "PCMA"))
    assert found >= MATCH, found

    # Bengt is at lunch; Anna calls him and hears his own greeting ("leave a message",
    # the beep), then ends with # (nothing recorded)
    status, view = service.get_json("/api/users/1002/profile")
    assert status == 200 and isinstance(view, dict) and view["profile"] == "lunch", view
    listener = RtpSink()
    try:
        greeting = len(kept) / 8000 + seconds(["leave_message", "beep"])
        caller = RtpStream(codec="PCMA").silence(greeting * 1000 + 1000)
        keys(caller, "#").silence(12000)
        dial(service, ANNA, "1002", caller, tmp_path / "caller", listener)
        heard = listener.audio()
    finally:
        listener.close()
    found, at = best_ncc(heard, as_heard(kept, "PCMA"))
    assert found >= MATCH, f"the greeting was not heard: {found:.3f}"
    assert at < 8000, "the greeting comes first"
    composed = phrase_match(heard, [*phrases.digits("1002"), "redirect_2"], "sv", "PCMA")
    assert composed.rigid < UNRELATED, composed


# --- the PIN guard --------------------------------------------------------------------------


def test_three_wrong_pins_lock_and_the_next_call_is_refused_without_a_pin(
    service: RunningService, sipp_binary: str, sink: RtpSink, tmp_path: Path
) -> None:
    stream = RtpStream(codec="PCMA").silence(START_MS)
    keys(stream, "1002#").silence(STORE_MS)
    for wrong in ("1111#", "2222#", "3333#"):  # each cuts "wrong PIN, enter PIN" short
        keys(stream, wrong).silence(STORE_MS)
    stream.silence(6000)
    dial(service, ANNA, "*98", stream, tmp_path / "first", sink)
    log = service.log()
    assert len(re.findall(r"pin-failure source=\S+ account=1002 device=1001", log)) == 3, log
    assert len(re.findall(r"pin-lockout source=\S+ account=1002 ", log)) == 1, log

    with SqliteStore(service.db) as store:
        record = store.selfservice.pin_record("1002")
    assert record.locked_until is not None and record.locked_until > time.time() + 800
    assert len(record.failures) == 3

    # a fourth call, even with the right PIN keyed, is refused before the PIN is asked
    refused = RtpSink()
    try:
        again = RtpStream(codec="PCMA").silence(START_MS)
        keys(again, "1002#").silence(STORE_MS)
        keys(again, "2345#").silence(6000)
        dial(service, ANNA, "*98", again, tmp_path / "fourth", refused)
        heard = refused.audio()
    finally:
        refused.close()
    log = service.log()
    assert len(re.findall(r"pin-refused source=\S+ account=1002 ", log)) == 1, log
    assert len(re.findall(r"pin-failure", log)) == 3, "no PIN was checked"
    locked = phrase_match(heard, ["pin_locked"], "sv", "PCMA")
    assert locked.rigid >= MATCH, locked  # our own RTP, unjittered: one lag fits
    asked, _ = best_ncc(heard, as_heard(LIBRARY.pcm("sv", "enter_pin"), "PCMA"))
    assert asked <= UNRELATED, f"the PIN was asked for: {asked:.3f}"
    with SqliteStore(service.db) as store:
        assert store.selfservice.pin_record("1002") == record, "nothing counted"


# --- on behalf --------------------------------------------------------------------------


def test_on_behalf_sets_another_user_s_profile_audited_with_both_identities(
    service: RunningService, sipp_binary: str, sink: RtpSink, tmp_path: Path
) -> None:
    stream = RtpStream(codec="PCMA").silence(4000)
    dial(service, ANNA_SOFT, "*33*1002*2345%23*23*3%23", stream, tmp_path / "behalf", sink)
    status, view = service.get_json("/api/users/1002/profile")
    assert status == 200 and isinstance(view, dict), view
    assert (view["profile"], view["set_by"], view["set_via"]) == ("meeting", "1001", "phone")
    logout, entry = audit_log(service, "1002")  # Möte logs Bengt out of his queues too
    assert audit_log(service, "1001") == []
    assert (entry.actor, entry.target_user, entry.on_behalf_of) == ("1001", "1002", "1002")
    assert (logout.action, logout.actor, logout.on_behalf_of) == ("queue_logout", "1001", "1002")
    assert entry.detail["device"] == "1001-soft" and entry.detail["to"] == "meeting"
    heard = sink.audio()
    confirmed = phrase_match(heard, ["profile_3", "activated"], "sv", "PCMA")
    assert confirmed.rigid >= MATCH, confirmed

    # a wrong PIN changes nothing and is logged
    wrong = RtpSink()
    try:
        dial(
            service,
            ANNA_SOFT,
            "*33*1002*9999%23%2323%23",
            RtpStream(codec="PCMA").silence(3000),
            tmp_path / "wrong",
            wrong,
        )
    finally:
        wrong.close()
    assert re.search(r"pin-failure source=\S+ account=1002 device=1001-soft", service.log())
    status, view = service.get_json("/api/users/1002/profile")
    assert isinstance(view, dict) and view["profile"] == "meeting"


# --- system prompts from the phone ----------------------------------------------------------


RECEPTION = ("1000", "reception-desk-4711")


def test_an_admin_records_a_system_prompt_and_plays_it_back(
    service: RunningService, sipp_binary: str, sink: RtpSink, tmp_path: Path
) -> None:
    said = speech(MESSAGE_WORDS)
    stream = RtpStream(codec="PCMA").silence(START_MS)
    keys(stream, "2580#")
    stream.silence(STORE_MS + seconds(["record_after_beep", "beep"]) * 1000)
    stream.pcm(said).silence(300)
    keys(stream, "#").silence(STORE_MS)  # 1 (keep) cuts the take's playback short
    keys(stream, "1").silence(3000)
    dial(service, RECEPTION, "*772", stream, tmp_path / "record", sink)  # "invalid_code"

    custom = service.db.parent / "prompts" / "sv" / "invalid_code.wav"
    assert custom.is_file(), service.log()[-3000:]
    stored = sf.read(str(custom), dtype="int16")[0]
    found, _ = best_ncc(as_heard(stored, "PCMA"), as_heard(said, "PCMA"))
    assert found >= MATCH, found

    # *992 plays it (the custom recording, not the shipped prompt); meanwhile a user who
    # is not an admin dials *992 and hears "Ogiltig kod", no PIN asked
    listener, refused = RtpSink(), RtpSink()
    try:
        again = RtpStream(codec="PCMA").silence(START_MS)
        keys(again, "2580#").silence(len(stored) / 8 + 1500)
        together(
            lambda: dial(service, RECEPTION, "*992", again, tmp_path / "play", listener),
            lambda: dial(
                service,
                BENGT,
                "*992",
                RtpStream(codec="PCMA").silence(3000),
                tmp_path / "no",
                refused,
            ),
        )
        heard, refused_heard = listener.audio(), refused.audio()
    finally:
        listener.close()
        refused.close()
    found, _ = best_ncc(heard, as_heard(stored, "PCMA"))
    assert found >= MATCH, f"the new prompt was not played: {found:.3f}"
    shipped, _ = best_ncc(heard, as_heard(LIBRARY.pcm("sv", "invalid_code"), "PCMA"))
    assert shipped <= UNRELATED, shipped

    heard = refused_heard
    # "Ogiltig kod" is the prompt just re-recorded: every call says it with the new voice
    assert best_ncc(heard, as_heard(stored, "PCMA"))[0] >= MATCH
    assert len(heard) < len(stored) + 8000, "nothing but the refusal was said"


# --- the recorded name ------------------------------------------------------------------------


def test_a_name_recorded_from_the_mailbox_options_replaces_the_digits(
    service: RunningService, sipp_binary: str, sink: RtpSink, tmp_path: Path
) -> None:
    name = speech(["profile_7", "profile_6"])
    stream = RtpStream(codec="PCMA").silence(START_MS + STORE_MS)  # (the mailbox is empty)
    keys(stream, "0").silence(300)  # mailbox options
    keys(stream, "2").silence(seconds(INTRO) * 1000 + 500)  # record my name
    stream.pcm(name).silence(300)
    keys(stream, "#").silence(STORE_MS)  # 1 (keep) cuts the take's playback short
    keys(stream, "1").silence(seconds(["recording_saved"]) * 1000 + STORE_MS)  # keep it
    keys(stream, "*").silence(300)  # back: "no more messages", the end menu
    keys(stream, "#").silence(3000)  # goodbye
    dial(service, ANNA, "*97", stream, tmp_path / "name", sink)
    path = greetings.path_of(recordings(service), greetings.Name(extension="1001"))
    assert path.is_file(), service.log()[-3000:]
    kept = sf.read(str(path), dtype="int16")[0]
    assert best_ncc(as_heard(kept, "PCMA"), as_heard(name, "PCMA"))[0] >= MATCH

    # Bengt calls Anna (nobody registered: voicemail): "‹name› svarar inte just nu.", then
    # (once the beep has gone) ends with # (nothing recorded)
    listener = RtpSink()
    try:
        greeting = ["redirect_1", phrases.PAUSE, "leave_message", "beep"]
        caller = RtpStream(codec="PCMA").silence((len(kept) / 8000 + seconds(greeting)) * 1000)
        keys(caller.silence(1000), "#").silence(9000)
        dial(service, BENGT, "1001", caller, tmp_path / "caller", listener)
        heard = listener.audio()
    finally:
        listener.close()
    found, at = best_ncc(heard, as_heard(kept, "PCMA"))
    assert found >= MATCH and at < 4000, (found, at)
    rest = phrase_match(heard[at + len(kept) :], ["redirect_1"], "sv", "PCMA")
    assert rest.rigid >= MATCH, rest
    digits = phrase_match(heard, phrases.digits("1001"), "sv", "PCMA")
    assert digits.rigid < UNRELATED, "the extension is not read out any more"


# --- change PIN -------------------------------------------------------------------------------


def test_a_pin_changed_from_the_mailbox_options_works_at_once_and_the_old_one_is_refused(
    service: RunningService, sipp_binary: str, sink: RtpSink, tmp_path: Path
) -> None:
    # Anna's own phone (no PIN asked): 0 options, 3 change PIN, the new PIN twice
    stream = RtpStream(codec="PCMA").silence(START_MS + STORE_MS)
    keys(stream, "0").silence(300)
    keys(stream, "3").silence(300)
    keys(stream, "12#").silence(seconds(["invalid_new_pin"]) * 1000 + 400)  # too short
    keys(stream, "9753#").silence(seconds(["repeat_new_pin"]) * 1000 + 400)
    keys(stream, "9753#").silence(seconds(["pin_changed"]) * 1000 + STORE_MS)
    keys(stream, "*").silence(300)  # back: the end menu
    keys(stream, "#").silence(3000)  # goodbye
    dial(service, ANNA, "*97", stream, tmp_path / "change", sink)
    heard = sink.audio()
    for words in (["invalid_new_pin"], ["repeat_new_pin"], ["pin_changed"]):
        said = phrase_match(heard, words, "sv", "PCMA")
        assert said.rigid >= MATCH, (words, said)
    assert "PIN of 1001 changed from 1001" in service.log()
    with SqliteStore(service.db) as store:
        entries = [e for e in store.audit.query(user="1001") if e.action == "pin_changed"]
    (entry,) = entries
    assert (entry.actor, entry.target_user, entry.via, entry.on_behalf_of) == (
        "1001",
        "1001",
        "phone",
        None,
    )
    assert entry.detail["fields"] == ["pin"] and "9753" not in repr(entry.detail)

    # *98 from Bengt's phone: the old PIN is refused, the new one opens the mailbox
    listener = RtpSink()
    try:
        again = RtpStream(codec="PCMA").silence(START_MS)
        keys(again, "1001#").silence(STORE_MS)
        keys(again, "1234#").silence(seconds(["wrong_pin"]) * 1000 + STORE_MS)
        summary = seconds(["you_have", "no", "new_messages"])
        keys(again, "9753#").silence(summary * 1000 + STORE_MS)
        keys(again, "#").silence(3000)
        dial(service, BENGT, "*98", again, tmp_path / "check", listener)
        heard = listener.audio()
    finally:
        listener.close()
    log = service.log()
    assert len(re.findall(r"pin-failure source=\S+ account=1001 device=1002", log)) == 1, log
    wrong = phrase_match(heard, ["wrong_pin"], "sv", "PCMA")
    assert wrong.rigid >= MATCH, wrong
    opened = phrase_match(heard, ["you_have", "no", "new_messages"], "sv", "PCMA")
    assert opened.rigid >= MATCH, opened


# --- on behalf: any code -------------------------------------------------------------------------


def test_on_behalf_runs_queue_codes_and_the_interactive_menu_for_the_target(
    service: RunningService, sipp_binary: str, sink: RtpSink, tmp_path: Path
) -> None:
    # *33*1002*PIN#*45: Bengt (logged in by Tillgänglig) is logged out of his queues
    stream = RtpStream(codec="PCMA").silence(4000)
    dial(service, ANNA_SOFT, "*33*1002*2345%23*45", stream, tmp_path / "queue", sink)
    said = phrase_match(sink.audio(), ["queue_logged_out"], "sv", "PCMA")
    assert said.rigid >= MATCH, said
    with SqliteStore(service.db) as store:
        (entry,) = store.audit.query(user="1002")
    assert (entry.action, entry.actor, entry.on_behalf_of) == ("queue_logout", "1001", "1002")

    # *33*1002*PIN#*23: the keypad menu, 3 (Möte) and # (its default return time)
    listener = RtpSink()
    try:
        menu = RtpStream(codec="PCMA").silence(START_MS + STORE_MS)  # after the PIN check
        keys(menu, "3").silence(300)
        keys(menu, "#").silence(5000)
        dial(service, ANNA_SOFT, "*33*1002*2345%23*23", menu, tmp_path / "menu", listener)
        heard = listener.audio()
    finally:
        listener.close()
    status, view = service.get_json("/api/users/1002/profile")
    assert status == 200 and isinstance(view, dict), view
    assert (view["profile"], view["set_by"]) == ("meeting", "1001"), view
    with SqliteStore(service.db) as store:
        entries = [e for e in store.audit.query(user="1002") if e.action != "queue_logout"]
        assert store.audit.query(user="1001") == []
    activated = [e for e in entries if e.detail.get("to") == "meeting"]
    assert activated, entries
    entry = activated[0]
    assert (entry.actor, entry.target_user, entry.on_behalf_of, entry.via) == (
        "1001",
        "1002",
        "1002",
        "ivr",
    )
    assert entry.detail["device"] == "1001-soft"
    confirmed = phrase_match(heard, ["profile_3", "activated"], "sv", "PCMA")
    assert confirmed.rigid >= MATCH, confirmed
    assert "invalid_code" not in service.log()
