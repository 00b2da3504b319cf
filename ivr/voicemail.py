"""The voicemail call controller: greeting → beep → record → save.

Thin Twisted edge around :class:`ivr.media.recorder.Recorder` (pure): it routes the
stream's audio packets and key presses to the recorder, runs two timers from an
injected clock (no audio packet for ``silence_seconds``: a silent or DTX stream;
``max_seconds`` plus slack: a hard cap), and hands the result to the store.

Handing a call over (``ivr/calls.py`` on a plan's ``then: voicemail``), once the call
is answered and the stream configured::

    session = VoicemailSession(stream, prompts, store, user.extension, caller, called,
                               user.language, now, on_finished, clock=reactor)
    session.start()                  # takes stream.on_rtp and the digit listener
    INFO digit      -> session.digit(event)
    BYE or CANCEL   -> session.hangup(), then close the stream
    on_finished(message_id or None)  # the stream is the caller's again: hang up

``#`` during the greeting skips to the beep; ``#`` while recording ends the message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ivr.dtmf.events import DigitEvent
from ivr.dtmf.merge import DigitMerger
from ivr.logs import Logger
from ivr.media import g711, phrases
from ivr.media.player import Player
from ivr.media.prompts import PromptLibrary
from ivr.media.recorder import Recorder, StopReason, TooShort
from ivr.media.rtp import RtpPacket
from ivr.store.errors import MailboxPurged
from ivr.store.protocols import VoicemailMessage

__all__ = [
    "DIGIT_TAIL_SECONDS",
    "RECORDED_NAME",
    "VoicemailSession",
    "VoicemailSink",
    "VoicemailStream",
    "greeting_prompts",
]

log = Logger(namespace="ivr.voicemail")

DIGIT_TAIL_SECONDS: Final = 0.25
"""Cut from the end of a message ended with ``#``: the key's tone (in-band detection
reports it only after hearing it for a while)."""
CAP_SLACK_SECONDS: Final = 2.0
RECORDED_NAME: Final = "recorded_name"
"""The placeholder for the user's recorded name in :func:`greeting_prompts`."""

PCM = npt.NDArray[np.int16]


class VoicemailStream(Protocol):
    """What the session needs of a call's media (``ivr.media.session.MediaStream``)."""

    codec: str | None
    payload_type: int | None
    on_rtp: Callable[[RtpPacket], None] | None
    on_digit: Callable[[DigitEvent], None] | None

    def play(self, player: Player, on_done: Callable[[], None] | None = None) -> None: ...

    def stop(self) -> None: ...

    def listen_for_digits(
        self, on_digit: Callable[[DigitEvent], None], *, inband: bool
    ) -> None: ...


class VoicemailSink(Protocol):
    """Where messages go (``ivr.store.async_store.AsyncStore`` fits)."""

    def add_voicemail(
        self,
        *,
        mailbox: str,
        caller: str,
        called: str,
        received_at: datetime,
        pcm: PCM,
    ) -> Deferred[VoicemailMessage]: ...


def greeting_prompts(mailbox: str, *, announce: bool, has_name: bool) -> list[str]:
    """The system greeting as prompt names.

    ``announce``: "‹name› svarar inte just nu. Lämna ett meddelande." with the recorded
    name (:data:`RECORDED_NAME`) or the extension read digit by digit; otherwise just
    "Lämna ett meddelande." (after a spoken redirect that already said who it is).
    """
    if not announce:
        return ["leave_message"]
    if has_name:
        name = [RECORDED_NAME]
    elif mailbox.isascii() and mailbox.isdigit():
        name = phrases.digits(mailbox)
    else:
        name = []
    return [*name, "redirect_1", phrases.PAUSE, "leave_message"]


class VoicemailSession:
    """One caller leaving one message in ``mailbox``.

    ``state``: ``new`` → ``greeting`` → ``beep`` → ``recording`` → ``saving`` →
    ``finished``. ``on_finished`` is called exactly once, with the stored message's id
    or None (nothing recorded, too short, or the save failed). ``personal_greeting``
    (8 kHz int16) replaces the system greeting; ``recorded_name`` goes into it.
    """

    def __init__(
        self,
        stream: VoicemailStream,
        prompts: PromptLibrary,
        store: VoicemailSink,
        mailbox: str,
        caller: str,
        called: str,
        lang: str,
        now: Callable[[], datetime],
        on_finished: Callable[[int | None], None],
        *,
        clock: IReactorTime,
        announce: bool = True,
        recorded_name: PCM | None = None,
        personal_greeting: PCM | None = None,
        max_seconds: float = 180.0,
        silence_seconds: float = 3.0,
        silence_dbfs: float = -45.0,
        min_seconds: float = 1.0,
        digits: DigitMerger | None = None,
    ) -> None:
        if lang not in phrases.LANGS:
            raise ValueError(f"unsupported language {lang!r}")
        self.stream = stream
        self.prompts = prompts
        self.store = store
        self.mailbox = mailbox
        self.caller = caller
        self.called = called
        self.lang = lang
        self.now = now
        self.on_finished = on_finished
        self.clock = clock
        self.announce = announce
        self.recorded_name = recorded_name
        self.personal_greeting = personal_greeting
        self._limits = {
            "max_seconds": max_seconds,
            "silence_seconds": silence_seconds,
            "silence_dbfs": silence_dbfs,
            "min_seconds": min_seconds,
        }
        Recorder("PCMU", **self._limits)  # validate the limits now, not at the beep
        self.state = "new"
        self.recorder: Recorder | None = None
        self.received_at: datetime | None = None
        self.message_id: int | None = None
        self.hung_up = False
        self._digits = digits or DigitMerger()
        self._idle: IDelayedCall | None = None
        self._cap: IDelayedCall | None = None

    # --- the flow ------------------------------------------------------------------

    def start(self) -> None:
        """Take the stream's audio and digits and play the greeting."""
        if self.state != "new":
            raise RuntimeError(f"session already started (state {self.state})")
        codec = self.stream.codec
        if codec is None:
            raise RuntimeError("configure the stream before starting voicemail")
        self.stream.on_rtp = self._rtp
        self.stream.listen_for_digits(self.digit, inband=True)
        self.state = "greeting"
        player = self._greeting(codec)
        if player is None:
            self._beep()
        else:
            self.stream.play(player, self._greeting_done)

    def _greeting(self, codec: str) -> Player | None:
        if self.personal_greeting is not None:
            return Player([g711.encode(codec, self.personal_greeting)], codec=codec)
        names = greeting_prompts(
            self.mailbox, announce=self.announce, has_name=self.recorded_name is not None
        )
        extra = {}
        if self.recorded_name is not None:
            extra[RECORDED_NAME] = g711.encode(codec, self.recorded_name)
        return self._player(names, codec, extra)

    def _player(
        self, names: Sequence[str], codec: str, extra: dict[str, bytes] | None = None
    ) -> Player | None:
        try:
            return self.prompts.player(self.lang, names, codec, extra=extra)
        except KeyError as exc:  # PromptNotFound: go on without it
            log.error("voicemail {mailbox}: {err}", mailbox=self.mailbox, err=exc)
            return None

    def _greeting_done(self) -> None:
        if self.state == "greeting":
            self._beep()

    def _beep(self) -> None:
        self.state = "beep"
        player = self._player(["beep"], self.stream.codec or "PCMU")
        if player is None:
            self._record()
        else:
            self.stream.play(player, self._record)

    def _record(self) -> None:
        if self.state != "beep":
            return
        codec = self.stream.codec or "PCMU"
        self.recorder = Recorder(codec, **self._limits)
        self.received_at = self.now()
        self.state = "recording"
        self._idle = self.clock.callLater(self._limits["silence_seconds"], self._stop, "silence")
        self._cap = self.clock.callLater(
            self._limits["max_seconds"] + CAP_SLACK_SECONDS, self._stop, "max_length"
        )

    # --- input -----------------------------------------------------------------------

    def _rtp(self, packet: RtpPacket) -> None:
        recorder = self.recorder
        if self.state != "recording" or recorder is None:
            return
        if packet.payload_type != self.stream.payload_type or self.stream.codec != recorder.codec:
            return  # telephone-event, comfort noise, or a codec we are not recording
        if self._idle is not None and self._idle.active():
            self._idle.reset(self._limits["silence_seconds"])
        if recorder.feed(packet.sequence, packet.payload) is not None:
            self._conclude()

    def digit(self, event: DigitEvent) -> None:
        """A key press from the stream (RFC 4733, in-band) or relayed by the call (INFO)."""
        if self.state not in ("greeting", "beep", "recording"):
            return
        if self._digits.add(event) is None or event.digit != "#":
            return
        if self.state == "greeting":
            self.stream.stop()
            self._beep()
        elif self.state == "recording":
            self._stop("digit", DIGIT_TAIL_SECONDS)

    def hangup(self) -> None:
        """The caller hung up: keep what was recorded (if long enough); never touch the
        stream again. Call before closing the stream."""
        self.hung_up = True
        if self.state in ("new", "greeting", "beep"):
            self._detach()
            self._finish(None)
        elif self.state == "recording":
            self._stop("hangup")

    # --- the end -----------------------------------------------------------------------

    def _stop(self, reason: StopReason, drop_seconds: float = 0.0) -> None:
        if self.state != "recording" or self.recorder is None:
            return
        self.recorder.stop(reason, drop_seconds=drop_seconds)
        self._conclude()

    def _conclude(self) -> None:
        recorder = self.recorder
        assert recorder is not None and self.received_at is not None
        self.state = "saving"
        self._detach()
        result = recorder.result()
        fields = {"mailbox": self.mailbox, "caller": self.caller, "reason": result.reason}
        if isinstance(result, TooShort):
            log.info(
                "voicemail {mailbox} from {caller}: discarded ({reason}, {voiced:.2f} s voiced)",
                voiced=result.voiced_seconds,
                **fields,
            )
            self._finish(None)
            return
        log.info(
            "voicemail {mailbox} from {caller}: {duration:.1f} s ({reason}), saving",
            duration=result.duration,
            **fields,
        )
        d: Deferred[VoicemailMessage] = maybeDeferred(
            self.store.add_voicemail,
            mailbox=self.mailbox,
            caller=self.caller,
            called=self.called,
            received_at=self.received_at,
            pcm=result.pcm,
        )
        d.addCallbacks(lambda message: self._finish(message.id), self._save_failed)

    def _save_failed(self, failure: Any) -> None:
        if failure.check(MailboxPurged):
            log.info(
                "voicemail {mailbox}: the user was deleted meanwhile, not kept",
                mailbox=self.mailbox,
            )
        else:
            log.failure("voicemail {mailbox}: saving failed", failure, mailbox=self.mailbox)
        self._finish(None)

    def _detach(self) -> None:
        for timer in (self._idle, self._cap):
            if timer is not None and timer.active():
                timer.cancel()
        self._idle = self._cap = None
        stream = self.stream
        if stream.on_rtp == self._rtp:
            stream.on_rtp = None
        if stream.on_digit == self.digit:
            stream.on_digit = None
        if not self.hung_up:
            stream.stop()

    def _finish(self, message_id: int | None) -> None:
        if self.state == "finished":
            return
        self.state = "finished"
        self.message_id = message_id
        try:
            self.on_finished(message_id)
        except Exception:
            log.failure("voicemail {mailbox}: on_finished failed", mailbox=self.mailbox)
