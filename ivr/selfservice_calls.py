"""Phone self-service on an answered feature-code call: voicemail (``*97``/``*98``),
greetings (``*24*p#``), and acting for another extension (``*33*ext*PIN#<code>``).

The Twisted edge of the pure flows :class:`ivr.mailbox_menu.MailboxMenu` and
:class:`ivr.record_menu.RecordMenu` and of the PIN guard (:mod:`ivr.pin_guard`): it
plays prompts (and messages and takes), arms timers, records from the stream, and
does the store and file work the flows ask for. A :class:`ivr.media_calls.FeatureCall`
hands its call over with :func:`handles`/:class:`SelfService`::

    service = SelfService(call, command)   # before answering
    service.start()                        # on the ACK
    service.digit(event) / service.end()   # key presses / the call is over
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import phonenumbers
from twisted.internet import threads
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall

from ivr import greetings
from ivr.confirm import confirmation
from ivr.dtmf.collector import FIRST_DIGIT, CancelTimer, StartTimer, StopPrompt
from ivr.dtmf.events import DigitEvent
from ivr.flows import Execute, Flow, FlowRunner, Hangup, Play, ProfileMenu
from ivr.logs import Logger
from ivr.mailbox_menu import (
    AccountChecked,
    ChangePin,
    CheckAccount,
    CheckPin,
    DeleteMessage,
    LoadMessages,
    MailboxMenu,
    MarkHeard,
    MessageInfo,
    MessagesLoaded,
    PinChanged,
    PinChecked,
    SaveMessage,
)
from ivr.media import g711
from ivr.media.prompts import load_wav
from ivr.media.recorder import Recorder, StopReason, TooShort
from ivr.media.rtp import RtpPacket
from ivr.pin_guard import (
    PinAttempts,
    PinPolicy,
    PinRecord,
    PinVerdict,
    SecurityEvent,
    is_locked,
    refused,
)
from ivr.prompt_import import CustomPrompts
from ivr.prompt_menu import PromptMenu
from ivr.record_menu import (
    TAKE,
    DeleteRecording,
    Greeting,
    KeepRecording,
    Recorded,
    RecordMenu,
    StartRecording,
    Stored,
    SystemPrompt,
)
from ivr.routing.commands import PROFILE_COMMANDS, CommandResult
from ivr.routing.features import (
    FeatureCommand,
    Interactive,
    OnBehalf,
    QueuePause,
    QueueToggle,
    RecordGreeting,
    SystemPromptCode,
    VoicemailAccess,
)
from ivr.routing.queues import QueueChange, confirmation_words
from ivr.routing.state import AuditEntry
from ivr.voicemail import DIGIT_TAIL_SECONDS

if TYPE_CHECKING:
    from ivr.config import User
    from ivr.media_calls import FeatureCall

__all__ = ["SELF_SERVICE", "SelfService", "behalf_route", "handles", "log_security_event"]

log = Logger(namespace="ivr.selfservice")
security_log = Logger(namespace="ivr.security")

SELF_SERVICE = (VoicemailAccess, RecordGreeting, OnBehalf, SystemPromptCode)
_MESSAGE = re.compile(r"message_([0-9]+)")
CAP_SLACK_SECONDS = 2.0


def spoken_number(caller: str, region: str) -> str:
    """The caller's number as said to a user: national form for numbers of the
    company's own country ("+46701740699" -> "0701740699"), else as it came."""
    if not caller.startswith("+"):
        return caller
    try:
        parsed = phonenumbers.parse(caller, region)
    except phonenumbers.NumberParseException:
        return caller
    if phonenumbers.region_code_for_number(parsed) != region:
        return caller
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(c for c in national if c.isdigit())


def handles(command: object) -> bool:
    """True for the codes this module runs."""
    return isinstance(command, SELF_SERVICE)


BehalfRoute = Literal["profile", "queue", "menu", "flow"]


def behalf_route(command: FeatureCommand) -> BehalfRoute:
    """How a code after ``*33*ext*PIN#`` runs for ``ext``: a profile command stored at
    once, a queue toggle, the ``*23`` keypad menu, or a self-service flow (voicemail,
    greetings, system prompts). Every code but a nested ``*33`` has a route."""
    if isinstance(command, PROFILE_COMMANDS):
        return "profile"
    if isinstance(command, QueueToggle | QueuePause):
        return "queue"
    if isinstance(command, Interactive):
        return "menu"
    if isinstance(command, VoicemailAccess | RecordGreeting | SystemPromptCode):
        return "flow"
    raise ValueError(f"{type(command).__name__} cannot be run on behalf")


def log_security_event(event: SecurityEvent, *, source: str, device: str) -> None:
    """One structured line per PIN failure, lockout or refusal (fail2ban matches on it)."""
    detail = " ".join(f"{k}={v}" for k, v in event.detail.items())
    security_log.warn(
        "{kind} source={source} account={account} device={device} {detail}",
        kind=event.kind,
        source=source,
        account=event.account,
        device=device,
        detail=detail,
        security_event=event.kind,
    )


class SelfService:
    """Runs one self-service command on ``call`` (answered by the caller's device)."""

    def __init__(self, call: FeatureCall, command: FeatureCommand) -> None:
        self.call = call
        self.command = command
        self.runner: FlowRunner | None = None
        self.guard = PinAttempts(self._policy())
        self.take: Any = None  # the last levelled take (int16 PCM)
        self.paths: dict[int, str] = {}  # message id -> path under the recordings dir
        self.recorder: Recorder | None = None
        self._timers: dict[str, IDelayedCall] = {}
        self._idle: IDelayedCall | None = None
        self._cap: IDelayedCall | None = None
        self.behalf: str | None = None  # the extension acted for after *33*ext*PIN#
        self._plays = 0  # counts Play/StopPrompt: a message read late plays only if current
        self.ended = False

    # --- what the call gives us ---------------------------------------------------------

    @property
    def services(self) -> Any:
        return self.call.manager.services

    @property
    def user(self) -> User:
        return self.call.user

    @property
    def device(self) -> str:
        return self.call.actor

    @property
    def source(self) -> str:
        return str(self.call.invite.peer)

    def _policy(self) -> PinPolicy:
        cfg = self.services.config.selfservice
        return PinPolicy(
            tries_per_call=cfg.pin_tries_per_call,
            failures_per_hour=cfg.pin_failures_per_hour,
            lockout_seconds=cfg.pin_lockout_seconds,
        )

    def _now(self) -> float:
        return float(self.call.clock())

    def _epoch(self) -> float:
        return self.services.now().timestamp()

    # --- the start ----------------------------------------------------------------------

    def start(self) -> None:
        """The caller ACKed: listen for keys and run the command."""
        self.call.stream.listen_for_digits(self.call.digit, inband=True)
        command = self.command
        if isinstance(command, OnBehalf):
            self._on_behalf(command)
        else:
            self._run_for(self.user.extension, command, pin_given=False)

    def _run_for(self, extension: str, command: FeatureCommand, *, pin_given: bool) -> None:
        """Start the flow for ``command`` acting on ``extension``'s mailbox/greetings."""
        config = self.services.config
        cfg = config.selfservice
        if isinstance(command, VoicemailAccess):
            company = config.company
            flow: Flow = MailboxMenu(
                lang=self.call.lang,
                now=self.services.now().astimezone(company.tz),
                mailbox=None if command.mailbox == "any" else extension,
                ask_pin=command.mailbox == "any" or (cfg.own_mailbox_pin and not pin_given),
                profiles={p.number: p.id for p in config.profiles},
                clock=company.clock if self.call.lang == "en" else None,
                max_tries=cfg.pin_tries_per_call,
                record_seconds=cfg.recording_max_seconds,
            )
        elif isinstance(command, RecordGreeting):
            flow = RecordMenu(
                Greeting(extension=extension, profile=command.profile),
                max_seconds=cfg.recording_max_seconds,
            )
        elif isinstance(command, SystemPromptCode) and self._is_admin(extension):
            names = cfg.system_prompts
            if not 1 <= command.prompt_id <= len(names):
                self._say(["invalid_code"])
                return
            flow = PromptMenu(
                mode=command.mode,
                target=SystemPrompt(lang=self.call.lang, name=names[command.prompt_id - 1]),
                account=extension,
                max_tries=cfg.pin_tries_per_call,
                record_seconds=cfg.recording_max_seconds,
            )
        else:
            self._say(["invalid_code"])
            return
        self.runner = FlowRunner(flow)
        self.perform(self.runner.start(self._now()))

    def _is_admin(self, extension: str) -> bool:
        acting = self.services.config.user(extension)
        return acting is not None and acting.admin

    def _say(self, words: Sequence[str]) -> None:
        """Play ``words``, then hang up."""
        if self.call.state == "playing":
            self._play(words, self.call.hang_up)

    # --- *33*ext*PIN#<code> -----------------------------------------------------------------

    def _on_behalf(self, command: OnBehalf) -> None:
        target = self.services.config.user(command.extension)
        inner = command.command
        if target is None:
            log.info(
                "on behalf of unknown {ext} from {device}",
                ext=command.extension,
                device=self.device,
            )
            self._say(["invalid_code"])
            return
        d = self._pin(target.extension, command.pin, target.pin)

        def checked(outcome: str) -> None:
            if outcome == "locked":
                self._say(["pin_locked"])
            elif outcome == "wrong":
                self._say(["wrong_pin", "goodbye"])
            else:
                self.behalf = target.extension
                self._behalf(target, inner)

        d.addCallbacks(checked, self._failed)

    def _behalf(self, target: User, inner: FeatureCommand) -> None:
        """The PIN checked out: run ``inner`` for ``target``, audited with both identities
        (``actor`` the caller, ``on_behalf_of`` the target, the caller's device)."""
        log.info(
            "{actor} acts for {target} from {device}: {code}",
            actor=self.user.extension,
            target=target.extension,
            device=self.device,
            code=type(inner).__name__,
        )
        route = behalf_route(inner)
        if route == "profile":
            self._behalf_profile(target, inner)
        elif route == "queue":
            assert isinstance(inner, QueueToggle | QueuePause)
            self._behalf_queue(target, inner)
        elif route == "menu":
            company = self.services.config.company
            menu = ProfileMenu(
                self.services.config.rules,
                self.call.lang,
                clock=company.clock if self.call.lang == "en" else None,
            )
            self.runner = FlowRunner(menu)
            self.perform(self.runner.start(self._now()))
        else:
            self._run_for(target.extension, inner, pin_given=True)

    def _behalf_queue(self, target: User, command: QueueToggle | QueuePause) -> None:
        d = self.call.manager.queues.execute(
            target.extension,
            command,
            actor=self.user.extension,
            via="phone",
            on_behalf_of=target.extension,
        )

        def done(change: QueueChange) -> None:
            self._say(confirmation_words(change))

        d.addCallbacks(done, self._failed)

    def _execute(self, command: Any) -> None:
        """The ``*23`` menu (on behalf) chose a profile: store it for the target."""
        target = self.behalf or self.user.extension
        d = self.services.profiles.execute(
            target,
            command,
            actor=self.user.extension,
            via="ivr",
            on_behalf_of=target if target != self.user.extension else None,
            device=self.device,
        )

        def done(result: CommandResult) -> None:
            if self.runner is not None and not self.ended and self.call.state == "playing":
                self.perform(self.runner.command_done(result, self.services.now(), self._now()))

        d.addCallbacks(done, self._failed)

    def _behalf_profile(self, target: User, command: Any) -> None:
        d = self.services.profiles.execute(
            target.extension,
            command,
            actor=self.user.extension,
            via="phone",
            on_behalf_of=target.extension,
            device=self.device,
        )

        def done(result: CommandResult) -> None:
            company = self.services.config.company
            words = confirmation(
                command,
                result,
                rules=self.services.config.rules,
                lang=self.call.lang,
                clock=company.clock if self.call.lang == "en" else None,
                now=self.services.now(),
            )
            self._say(words)

        d.addCallbacks(done, self._failed)

    # --- the PIN guard ----------------------------------------------------------------------

    def _pin(self, account: str, entered: str, expected: str) -> Deferred[str]:
        """Check a PIN against the stored counters; fires with the outcome."""
        guard, now = self.guard, self._epoch()

        def judge(record: PinRecord) -> tuple[PinVerdict, PinRecord | None]:
            verdict = guard.check(record, entered, expected, now)
            return verdict, verdict.record if verdict.changed else None

        def judged(verdict: PinVerdict) -> str:
            for event in verdict.events:
                log_security_event(event, source=self.source, device=self.device)
            return verdict.outcome

        store = self.services.store
        d: Deferred[PinVerdict] = store.run(lambda s: s.selfservice.judge_pin(account, judge))
        return d.addCallback(judged)

    def _account(self, mailbox: str) -> Deferred[AccountChecked]:
        user = self.services.config.user(mailbox)
        if user is None:
            return succeed(AccountChecked(exists=False))
        store = self.services.store

        def seen(record: PinRecord) -> AccountChecked:
            locked = is_locked(record, self._epoch())
            if locked:
                log_security_event(
                    refused(record, self._epoch()), source=self.source, device=self.device
                )
            return AccountChecked(exists=True, locked=locked)

        return store.run(lambda s: s.selfservice.pin_record(mailbox)).addCallback(seen)

    # --- performing the flow's actions ------------------------------------------------

    def perform(self, actions: Sequence[Any]) -> None:
        for action in actions:
            if self.ended or self.call.state != "playing":
                return
            if isinstance(action, Play):
                self._play(action.prompts, self._prompt_finished)
            elif isinstance(action, StopPrompt):
                self._plays += 1
                self.call.stream.stop()
            elif isinstance(action, StartTimer):
                self._cancel(action.name)
                if action.name == FIRST_DIGIT and self.runner is not None:
                    # the prompt has played out: what tests (and people reading logs) wait on
                    log.info(
                        "{device} waits for a key in {state}",
                        device=self.device,
                        state=getattr(self.runner.flow, "state", "?"),
                    )
                reactor = self.services.reactor
                self._timers[action.name] = reactor.callLater(
                    action.delay, self._timer_fired, action.name
                )
            elif isinstance(action, CancelTimer):
                self._cancel(action.name)
            elif isinstance(action, Hangup):
                self.call.hang_up()
            elif isinstance(action, Execute):
                self._execute(action.command)
            else:
                self._store_action(action)

    def _store_action(self, action: Any) -> None:
        store = self.services.store
        if isinstance(action, CheckAccount):
            self._answer(self._account(action.mailbox))
        elif isinstance(action, CheckPin):
            user = self.services.config.user(action.mailbox)
            if user is None:
                self._feed(PinChecked("wrong"))
                return
            pin = self._pin(user.extension, action.pin, user.pin)
            self._answer(pin.addCallback(lambda outcome: PinChecked(outcome)))
        elif isinstance(action, LoadMessages):
            self._answer(self._load(action.mailbox))
        elif isinstance(action, MarkHeard):
            self._quietly(store.mark_voicemail_heard(action.message_id))
        elif isinstance(action, SaveMessage):
            message_id = action.message_id
            self._quietly(store.run(lambda s: s.selfservice.mark_saved(message_id)))
        elif isinstance(action, DeleteMessage):
            log.info("voicemail {id} deleted by {device}", id=action.message_id, device=self.device)
            self._quietly(store.delete_voicemail(action.message_id))
        elif isinstance(action, ChangePin):
            self._answer(self._change_pin(action))
        elif isinstance(action, KeepRecording | DeleteRecording):
            self._answer(self._file_work(action))
        elif isinstance(action, StartRecording):
            self._start_recording(action.max_seconds)
        else:
            log.error("self-service: unknown action {action!r}", action=action)
            self.call.hang_up()

    def _answer(self, d: Deferred[Any]) -> None:
        d.addCallbacks(self._feed, self._failed)

    def _quietly(self, d: Deferred[Any]) -> None:
        d.addErrback(lambda f: log.failure("self-service store work failed", f))

    def _feed(self, event: object) -> None:
        if self.runner is not None and not self.ended and self.call.state == "playing":
            self.perform(self.runner.event(event, self._now()))

    def _failed(self, failure: Any) -> None:
        log.failure("self-service failed for {device}", failure, device=self.device)
        self.call.hang_up()

    def _change_pin(self, action: ChangePin) -> Deferred[PinChanged]:
        """Store the mailbox owner's new PIN in the live directory (audited, via phone);
        the next PIN check uses it."""
        services = self.services
        committer = services.directory_service
        if committer is None:
            return fail(RuntimeError("the directory cannot be changed here"))
        mailbox = action.mailbox

        def build(config: Any) -> User:
            user = config.user(mailbox)
            if user is None:
                raise LookupError(f"no user {mailbox}")
            return replace(user, pin=action.pin)

        d = committer.commit(
            "user",
            mailbox,
            build,
            if_match=None,
            actor=self.user.extension,
            action="pin_changed",
            target_user=mailbox,
            on_behalf_of=mailbox if mailbox != self.user.extension else None,
            via="phone",
        )

        def done(_committed: Any) -> PinChanged:
            log.info("PIN of {mailbox} changed from {device}", mailbox=mailbox, device=self.device)
            return PinChanged(True)

        def failed(failure: Any) -> PinChanged:
            log.failure("PIN change of {mailbox} failed", failure, mailbox=mailbox)
            return PinChanged(False)

        return d.addCallbacks(done, failed)

    def _load(self, mailbox: str) -> Deferred[MessagesLoaded]:
        tz = self.services.config.company.tz
        region = self.services.config.company.region

        def read(store: Any) -> tuple[list[Any], frozenset[int]]:
            return store.voicemail.list(mailbox), store.selfservice.saved_ids(mailbox)

        def loaded(found: tuple[list[Any], frozenset[int]]) -> MessagesLoaded:
            messages, saved = found
            self.paths = {m.id: m.path for m in messages}
            return MessagesLoaded(
                tuple(
                    MessageInfo(
                        id=m.id,
                        caller=spoken_number(m.caller, region),
                        received=m.received_at.astimezone(tz),
                        heard=m.heard,
                        saved=m.id in saved,
                    )
                    for m in messages
                )
            )

        return self.services.store.run(read).addCallback(loaded)

    def _file_work(self, action: KeepRecording | DeleteRecording) -> Deferred[Stored]:
        root = self.services.config.recordings_dir
        target = action.target
        take = self.take
        library = self.services.prompts
        custom = None if library.custom is None else CustomPrompts(library.custom, library.root)

        gone = not isinstance(target, SystemPrompt) and (
            self.services.config.user(target.extension) is None
        )  # deleted during the call: its recordings must not outlive the purge

        def work() -> bool:
            if isinstance(action, KeepRecording):
                if take is None or gone:
                    return False
                greetings.save(root, target, take, custom_prompts=custom, by=self.user.extension)
                return True
            if isinstance(target, SystemPrompt):
                return False
            greetings.delete(root, target)
            return True

        reactor = self.services.reactor
        d: Deferred[bool] = threads.deferToThreadPool(reactor, reactor.getThreadPool(), work)

        def done(ok: bool) -> Stored:
            if gone:
                log.info("recording {target} not kept: the user was deleted", target=repr(target))
                return Stored(False)
            what = "kept" if isinstance(action, KeepRecording) else "deleted"
            log.info(
                "recording {target} {what} by {device}",
                target=repr(target),
                what=what,
                device=self.device,
            )
            self._audit(target, what)
            return Stored(ok)

        def failed(failure: Any) -> Stored:
            log.failure("recording {target} failed", failure, target=repr(target))
            return Stored(False)

        return d.addCallbacks(done, failed)

    def _audit(self, target: Any, what: str) -> None:
        owner = getattr(target, "extension", self.behalf or self.user.extension)
        kind = type(target).__name__.lower()
        detail: dict[str, object] = {"device": self.device}
        if isinstance(target, Greeting):
            detail["profile"] = target.profile
        entry = AuditEntry(
            at=self.services.now(),
            actor=self.user.extension,
            action=f"{kind}_{what}",
            target_user=owner,
            via="phone",
            detail=detail,
            on_behalf_of=owner if owner != self.user.extension else None,
        )
        self._quietly(self.services.store.append_audit(entry))

    # --- prompts, messages and takes ------------------------------------------------------

    def _play(self, words: Sequence[str], on_done: Any) -> None:
        """Play ``words``; a message's audio is read in a thread first (the reactor never
        waits for the disk), what played meanwhile stops, and a key pressed meanwhile
        (a newer Play or StopPrompt) drops it."""
        self._plays += 1
        root = self.services.config.recordings_dir
        files = {
            word: root / self.paths[int(m[1])]
            for word in words
            if (m := _MESSAGE.fullmatch(word)) and int(m[1]) in self.paths
        }
        if not files:
            self._start_player(words, on_done, {})
            return
        self.call.stream.stop()
        current = self._plays
        reactor = self.services.reactor

        def read() -> dict[str, Any]:
            return {word: load_wav(path) for word, path in files.items()}

        def loaded(audio: dict[str, Any]) -> None:
            if current == self._plays and not self.ended and self.call.state == "playing":
                self._start_player(words, on_done, audio)

        def unreadable(failure: Any) -> None:
            log.failure("voicemail audio unreadable", failure)
            if current == self._plays and not self.ended:
                self.call.hang_up()

        d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), read)
        d.addCallbacks(loaded, unreadable)

    def _start_player(self, words: Sequence[str], on_done: Any, audio: dict[str, Any]) -> None:
        call = self.call
        codec = call.stream.codec or "PCMU"
        extra = {word: g711.encode(codec, pcm) for word, pcm in audio.items()}
        try:
            if TAKE in words and self.take is not None:
                extra[TAKE] = g711.encode(codec, self.take)
            player = self.services.prompts.player(call.lang, words, codec, extra=extra)
        except (KeyError, OSError, RuntimeError) as exc:
            log.error("self-service prompt missing: {err}", err=exc)
            call.hang_up()
            return
        call.stream.play(player, on_done=on_done)

    def _prompt_finished(self) -> None:
        if self.runner is not None and not self.ended:
            self.perform(self.runner.prompt_finished(self._now()))

    def _timer_fired(self, name: str) -> None:
        self._timers.pop(name, None)
        if self.runner is not None and not self.ended:
            self.perform(self.runner.timer_fired(name, self._now()))

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    # --- keys -----------------------------------------------------------------------------

    def digit(self, event: DigitEvent) -> None:
        if self.ended:
            return
        if self.recorder is not None:
            if event.digit == "#":
                self._stop_recording("digit", DIGIT_TAIL_SECONDS)
            return
        if self.runner is not None:
            self.perform(self.runner.digit(event, self._now()))

    # --- recording ------------------------------------------------------------------------

    def _start_recording(self, max_seconds: float) -> None:
        cfg = self.services.config.selfservice
        stream = self.call.stream
        self.take = None
        self.recorder = Recorder(
            stream.codec or "PCMU",
            max_seconds=max_seconds,
            silence_seconds=cfg.recording_silence_seconds,
            min_seconds=min(cfg.recording_min_seconds, max_seconds),
        )
        stream.on_rtp = self._rtp
        reactor = self.services.reactor
        self._idle = reactor.callLater(
            cfg.recording_silence_seconds, self._stop_recording, "silence"
        )
        self._cap = reactor.callLater(
            max_seconds + CAP_SLACK_SECONDS, self._stop_recording, "max_length"
        )

    def _rtp(self, packet: RtpPacket) -> None:
        recorder = self.recorder
        stream = self.call.stream
        if recorder is None:
            return
        if packet.payload_type != stream.payload_type or stream.codec != recorder.codec:
            return
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.services.config.selfservice.recording_silence_seconds)
        if recorder.feed(packet.sequence, packet.payload) is not None:
            self._conclude()

    def _stop_recording(self, reason: StopReason, drop: float = 0.0) -> None:
        if self.recorder is None:
            return
        self.recorder.stop(reason, drop_seconds=drop)
        self._conclude()

    def _conclude(self) -> None:
        recorder, self.recorder = self.recorder, None
        self._detach()
        if recorder is None:
            return
        result = recorder.result()
        ok = False
        if not isinstance(result, TooShort):
            minimum = self.services.config.selfservice.recording_min_seconds
            try:
                self.take = greetings.level_take(result.pcm, minimum)
                ok = True
            except greetings.TooShort as exc:
                log.info("recording refused: {why}", why=str(exc))
        else:
            log.info("recording refused: {s:.2f} s voiced", s=result.voiced_seconds)
        self._feed(Recorded(ok))

    def _detach(self) -> None:
        for timer in (self._idle, self._cap):
            if timer is not None and timer.active():
                timer.cancel()
        self._idle = self._cap = None
        stream = self.call.stream
        if stream.on_rtp == self._rtp:
            stream.on_rtp = None

    # --- the end ----------------------------------------------------------------------------

    def end(self) -> None:
        """The call is over (either side hung up)."""
        self.ended = True
        self.recorder = None
        self._detach()
        for name in list(self._timers):
            self._cancel(name)
