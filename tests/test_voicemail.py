"""VoicemailSession with a fake stream, a Clock and a real store: greeting → beep →
record → saved WAV that matches what the caller sent."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import pytest_twisted
import soundfile as sf
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from ivr.dtmf.events import DigitEvent
from ivr.media import g711
from ivr.media.player import Player
from ivr.media.prompts import PromptLibrary
from ivr.media.rtp import RtpPacket, RtpSender, parse_rtp
from ivr.store import SqliteStore
from ivr.store.async_store import AsyncStore
from ivr.store.protocols import VoicemailMessage
from ivr.voicemail import (
    DIGIT_TAIL_SECONDS,
    RECORDED_NAME,
    VoicemailSession,
    greeting_prompts,
)

PROMPTS = PromptLibrary(Path(__file__).resolve().parents[1] / "prompts")
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
TE_PT = 101


class FakeStream:
    """The parts of MediaStream a VoicemailSession uses."""

    def __init__(self, codec: str = "PCMU") -> None:
        self.codec: str | None = codec
        self.payload_type: int | None = g711.PAYLOAD_TYPES[codec]
        self.on_rtp: Callable[[RtpPacket], None] | None = None
        self.on_digit: Callable[[DigitEvent], None] | None = None
        self.played: list[Player] = []
        self.stops = 0
        self.inband: bool | None = None
        self._on_done: Callable[[], None] | None = None

    def play(self, player: Player, on_done: Callable[[], None] | None = None) -> None:
        self.played.append(player)
        self._on_done = on_done

    def stop(self) -> None:
        self.stops += 1
        self._on_done = None

    def listen_for_digits(self, on_digit: Callable[[DigitEvent], None], *, inband: bool) -> None:
        self.on_digit = on_digit
        self.inband = inband

    def prompt_ends(self) -> None:
        callback, self._on_done = self._on_done, None
        assert callback is not None, "nothing is playing"
        callback()


class SyncSink:
    """A real SqliteStore behind the Deferred interface (fires at once)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def add_voicemail(self, **fields: Any) -> Deferred[VoicemailMessage]:
        return succeed(self.store.voicemail.add(**fields))


class Call:
    """One voicemail call: clock, stream, store, session, and what the caller sends."""

    def __init__(self, tmp_path: Path, codec: str = "PCMU", **kwargs: Any) -> None:
        self.clock = Clock()
        self.clock.advance(1000.0)
        self.stream = FakeStream(codec)
        self.db = SqliteStore(tmp_path / "ivr.db", recordings_dir=tmp_path / "recordings")
        self.sink = kwargs.pop("sink", None) or SyncSink(self.db)
        self.finished: list[int | None] = []
        self.sender = RtpSender(random.Random(5), g711.PAYLOAD_TYPES[codec])
        self.codec = codec
        self.session = VoicemailSession(
            self.stream,
            PROMPTS,
            self.sink,
            "1001",
            "+46701234567",
            "+46812345001",
            kwargs.pop("lang", "sv"),
            lambda: T0 + timedelta(seconds=self.clock.seconds() - 1000.0),
            self.finished.append,
            clock=self.clock,
            **kwargs,
        )

    def to_recording(self) -> None:
        self.session.start()
        self.stream.prompt_ends()  # greeting
        self.stream.prompt_ends()  # beep
        assert self.session.state == "recording"

    def send(self, pcm: np.ndarray, *, every: float = 0.02) -> None:
        """20 ms packets in real time (``every`` apart on the clock)."""
        data = g711.encode(self.codec, pcm)
        for k in range(0, len(data), 160):
            if self.stream.on_rtp is not None:
                self.stream.on_rtp(parse_rtp(self.sender.packet(data[k : k + 160], 160)))
            self.clock.advance(every)

    def send_event(self) -> None:
        """An RFC 4733 packet: not audio."""
        if self.stream.on_rtp is not None:
            payload = bytes([11, 0x0A, 0, 160])
            self.stream.on_rtp(parse_rtp(self.sender.packet(payload, 0, payload_type=TE_PT)))

    def press(self, digit: str = "#", source: str = "rfc4733") -> None:
        event = DigitEvent(digit=digit, source=source, start=self.clock.seconds())
        if source == "info":
            self.session.digit(event)
        else:
            assert self.stream.on_digit is not None
            self.stream.on_digit(event)

    def saved(self) -> tuple[VoicemailMessage, np.ndarray]:
        assert len(self.finished) == 1 and self.finished[0] is not None
        message = self.db.voicemail.get(self.finished[0])
        assert message is not None
        data, rate = sf.read(str(self.db.voicemail.file(message)), dtype="int16")
        assert rate == 8000
        return message, data


@pytest.fixture
def call(tmp_path: Path) -> Iterator[Call]:
    c = Call(tmp_path)
    yield c
    c.db.close()


def speech(seconds: float, seed: int = 1) -> np.ndarray:
    """Speech-like noise: band-limited, about -15 dBFS, never quiet for a 20 ms frame."""
    rng = np.random.default_rng(seed)
    x = np.convolve(rng.standard_normal(round(seconds * 8000)), np.ones(4) / 4, mode="same")
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3 * np.arange(len(x)) / 8000)
    return np.round(x / x.std() * envelope * 32768 * 10 ** (-15 / 20)).astype(np.int16)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


def frames_of(player: Player) -> list[bytes]:
    return list(player)


# --- the whole flow ------------------------------------------------------------------


def test_greeting_beep_record_until_hash_and_save(call: Call) -> None:
    call.session.start()
    assert call.stream.on_rtp is not None and call.stream.inband is True
    assert call.session.state == "greeting"
    expected = PROMPTS.player("sv", greeting_prompts("1001", announce=True, has_name=False), "PCMU")
    assert frames_of(call.stream.played[0]) == frames_of(expected)
    call.send(speech(0.5, seed=9))  # talking over the greeting: not recorded
    call.stream.prompt_ends()
    assert call.session.state == "beep"
    assert frames_of(call.stream.played[1]) == frames_of(PROMPTS.player("sv", ["beep"], "PCMU"))
    call.clock.advance(0.4)
    call.stream.prompt_ends()
    assert call.session.state == "recording"
    started = call.clock.seconds()

    sent = speech(3.0)
    call.send(sent[:12000])
    call.send_event()  # not audio, but it takes a sequence number: 20 ms of silence
    call.send(sent[12000:])
    call.press("#")
    assert call.session.state == "finished" and call.finished == [1]
    assert call.stream.on_rtp is None and call.stream.on_digit is None

    message, audio = call.saved()
    heard = np.concatenate([sent[:12000], np.zeros(160, np.int16), sent[12000:]])
    kept = len(heard) - round(DIGIT_TAIL_SECONDS * 8000)
    assert len(audio) == kept
    assert correlation(audio, heard[:kept]) > 0.99
    assert not audio[12000:12160].any()
    assert message.mailbox == "1001" and message.path == "1001/1.wav"
    assert (message.caller, message.called) == ("+46701234567", "+46812345001")
    assert message.received_at == T0 + timedelta(seconds=started - 1000.0)
    assert message.duration == pytest.approx(kept / 8000) and message.heard is False
    assert call.session.message_id == 1


def test_three_seconds_of_silence_end_the_message_trimmed(call: Call) -> None:
    call.to_recording()
    sent = speech(2.0)
    call.send(np.concatenate([sent, np.zeros(5 * 8000, np.int16)]))
    assert call.finished == [1] and call.session.recorder.reason == "silence"  # type: ignore[union-attr]
    _, audio = call.saved()
    assert len(audio) == len(sent) and correlation(audio, sent) > 0.99


def test_maximum_length(tmp_path: Path) -> None:
    call = Call(tmp_path, max_seconds=2.0)
    call.to_recording()
    call.send(speech(3.0))
    assert call.session.recorder.reason == "max_length"  # type: ignore[union-attr]
    message, audio = call.saved()
    assert len(audio) == 16000 and message.duration == 2.0
    call.db.close()


def test_a_slow_stream_is_capped_by_the_clock(tmp_path: Path) -> None:
    call = Call(tmp_path, max_seconds=2.0)
    call.to_recording()
    call.send(speech(1.5), every=0.04)  # half speed: 1.5 s of audio in 3 s of clock
    assert call.finished == []
    call.clock.advance(0.9)
    assert call.finished == []
    call.clock.advance(0.2)  # 4 s: max_seconds plus slack
    assert call.session.recorder.reason == "max_length"  # type: ignore[union-attr]
    assert call.saved()[0].duration == 1.5
    call.db.close()


def test_a_stream_that_goes_quiet_is_silence(call: Call) -> None:
    call.to_recording()
    call.send(speech(1.5))
    call.clock.advance(2.9)
    assert call.finished == []
    call.clock.advance(0.2)
    assert call.session.recorder.reason == "silence"  # type: ignore[union-attr]
    assert call.saved()[0].duration == 1.5


def test_nothing_said_is_discarded(call: Call) -> None:
    call.to_recording()
    call.clock.advance(3.0)
    assert call.finished == [None] and call.session.state == "finished"
    assert call.db.voicemail.list("1001") == []


def test_too_short_is_discarded(call: Call) -> None:
    call.to_recording()
    call.send(speech(0.8))
    call.press("#")
    assert call.finished == [None]
    assert call.db.voicemail.list("1001") == []
    assert not (call.db.voicemail.root / "1001").exists()  # type: ignore[operator]


def test_hang_up_mid_recording_keeps_what_was_said(call: Call) -> None:
    call.to_recording()
    sent = speech(2.0)
    call.send(sent)
    stops = call.stream.stops
    call.session.hangup()
    assert call.stream.stops == stops  # the stream is not touched after a hang-up
    assert call.session.recorder.reason == "hangup"  # type: ignore[union-attr]
    _, audio = call.saved()
    assert len(audio) == len(sent) and correlation(audio, sent) > 0.99
    call.session.hangup()
    call.clock.advance(10)
    assert len(call.finished) == 1


@pytest.mark.parametrize("prompts_played", [0, 1])
def test_hang_up_before_the_beep_ends_at_once(call: Call, prompts_played: int) -> None:
    call.session.start()
    for _ in range(prompts_played):
        call.stream.prompt_ends()
    call.session.hangup()
    assert call.finished == [None] and call.stream.on_rtp is None
    assert call.clock.getDelayedCalls() == []


def test_hash_during_the_greeting_skips_to_the_beep(call: Call) -> None:
    call.session.start()
    call.press("5")
    assert call.session.state == "greeting"
    call.press("#")
    assert call.session.state == "beep" and call.stream.stops == 1
    assert len(call.stream.played) == 2
    call.stream.prompt_ends()
    assert call.session.state == "recording"


def test_hash_by_sip_info_ends_the_message(call: Call) -> None:
    call.to_recording()
    call.send(speech(1.5))
    call.press("#", source="info")
    assert call.finished == [1]
    call.session.digit(DigitEvent(digit="#", source="inband", start=call.clock.seconds()))
    assert call.finished == [1]


def test_one_press_seen_by_two_sources_counts_once(call: Call) -> None:
    call.session.start()
    call.press("#", source="inband")  # skips the greeting
    assert call.session.state == "beep"
    call.stream.prompt_ends()
    call.press("#", source="info")  # the same press, relayed: not a second one
    assert call.session.state == "recording"


def test_a_failed_save_finishes_without_an_id(tmp_path: Path) -> None:
    class Broken:
        def add_voicemail(self, **fields: Any) -> Deferred[VoicemailMessage]:
            return fail(OSError("disk full"))

    call = Call(tmp_path, sink=Broken())
    call.to_recording()
    call.send(speech(1.5))
    call.session.hangup()
    assert call.finished == [None]
    call.db.close()


def test_hang_up_while_saving_changes_nothing(tmp_path: Path) -> None:
    pending: Deferred[VoicemailMessage] = Deferred()

    class Slow:
        def add_voicemail(self, **fields: Any) -> Deferred[VoicemailMessage]:
            self.fields = fields
            return pending

    sink = Slow()
    call = Call(tmp_path, sink=sink)
    call.to_recording()
    call.send(speech(1.5))
    call.press("#")
    assert call.session.state == "saving" and call.finished == []
    call.session.hangup()
    pending.callback(call.db.voicemail.add(**sink.fields))
    assert call.finished == [1]
    call.db.close()


def test_pcma_and_english(tmp_path: Path) -> None:
    call = Call(tmp_path, codec="PCMA", lang="en", announce=False)
    call.session.start()
    expected = PROMPTS.player("en", ["leave_message"], "PCMA")
    assert frames_of(call.stream.played[0]) == frames_of(expected)
    call.stream.prompt_ends()
    call.stream.prompt_ends()
    sent = speech(1.6, seed=4)
    call.send(sent)
    call.press("#")
    _, audio = call.saved()
    assert correlation(audio, sent[: len(audio)]) > 0.99
    call.db.close()


def test_personal_greeting_and_recorded_name(tmp_path: Path) -> None:
    greeting = speech(0.7, seed=2)
    call = Call(tmp_path, personal_greeting=greeting)
    call.session.start()
    assert b"".join(frames_of(call.stream.played[0]))[: len(greeting)] == g711.encode(
        "PCMU", greeting
    )
    call.db.close()

    name = speech(0.5, seed=3)
    call = Call(tmp_path, recorded_name=name)
    call.session.start()
    words = greeting_prompts("1001", announce=True, has_name=True)
    expected = PROMPTS.player("sv", words, "PCMU", extra={RECORDED_NAME: g711.encode("PCMU", name)})
    assert frames_of(call.stream.played[0]) == frames_of(expected)
    call.db.close()


def test_greeting_prompts() -> None:
    assert greeting_prompts("1001", announce=False, has_name=False) == ["leave_message"]
    assert greeting_prompts("1001", announce=True, has_name=False) == [
        *["num_1", "num_0", "num_0", "num_1"],
        *["redirect_1", "pause", "leave_message"],
    ]
    assert greeting_prompts("1001", announce=True, has_name=True)[0] == RECORDED_NAME
    assert greeting_prompts("sales", announce=True, has_name=False)[0] == "redirect_1"
    for lang in ("sv", "en"):
        PROMPTS.player(lang, greeting_prompts("1001", announce=True, has_name=False), "PCMU")


def test_missing_prompts_do_not_stop_the_message(tmp_path: Path) -> None:
    empty = tmp_path / "no-prompts"
    (empty / "sv").mkdir(parents=True)
    call = Call(tmp_path)
    call.session.prompts = PromptLibrary(empty)
    call.session.start()
    assert call.session.state == "recording" and call.stream.played == []
    call.db.close()


def test_bad_arguments(call: Call) -> None:
    with pytest.raises(ValueError):
        VoicemailSession(
            call.stream,
            PROMPTS,
            call.sink,
            "1001",
            "a",
            "b",
            "fi",
            datetime.now,
            print,
            clock=call.clock,
        )
    with pytest.raises(ValueError):
        VoicemailSession(
            call.stream,
            PROMPTS,
            call.sink,
            "1001",
            "a",
            "b",
            "sv",
            datetime.now,
            print,
            clock=call.clock,
            silence_seconds=0,
        )
    call.session.start()
    with pytest.raises(RuntimeError):
        call.session.start()


# --- with the real AsyncStore --------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_session_saves_through_the_async_store(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = AsyncStore.for_path(tmp_path / "a.db", reactor, recordings_dir=tmp_path / "rec")
    yield store.start()
    done: Deferred[int | None] = Deferred()
    call = Call(tmp_path, sink=store)
    call.session.on_finished = done.callback
    call.to_recording()
    sent = speech(2.0)
    call.send(sent)
    call.press("#")
    message_id = yield done
    message = yield store.get_voicemail(message_id)
    audio, rate = sf.read(str(tmp_path / "rec" / message.path), dtype="int16")
    assert rate == 8000 and correlation(audio, sent[: len(audio)]) > 0.99
    assert message.duration == pytest.approx(2.0 - DIGIT_TAIL_SECONDS)
    yield store.stop()
    call.db.close()
