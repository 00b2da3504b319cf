"""The voicemail retrieval menu (pure): every key in every state, timeouts, retries,
barge-in, the PIN and mailbox questions, the words it says."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ivr.dtmf.collector import StopPrompt
from ivr.flows import Collect, FlowError, FlowRunner, Hangup, Play, PromptDone, Timeout
from ivr.flows import Digits as D
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
    envelope,
    summary,
)
from ivr.media import phrases
from ivr.record_menu import Greeting, KeepRecording, Name, Recorded, StartRecording, Stored
from ivr.selfservice_calls import spoken_number

TZ = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=TZ)  # a Thursday
KEYS = "0123456789*#ABCD"
PROFILES = {2: "lunch", 3: "meeting"}
NEW = MessageInfo(id=7, caller="+46701740699", received=NOW.replace(hour=9, minute=5))
OLD = MessageInfo(
    id=3, caller="1002", received=datetime(2026, 11, 24, 13, 30, tzinfo=TZ), heard=True, saved=True
)


def menu(**kwargs: object) -> MailboxMenu:
    args: dict[str, object] = {
        "lang": "sv",
        "now": NOW,
        "mailbox": "1001",
        "ask_pin": False,
        "profiles": PROFILES,
    }
    args.update(kwargs)
    return MailboxMenu(**args)  # type: ignore[arg-type]


def plays(actions: list[object]) -> tuple[str, ...]:
    found = [a for a in actions if isinstance(a, Play)]
    assert len(found) == 1, actions
    return found[0].prompts


def at_message(index: int = 0) -> MailboxMenu:
    """The menu at a message of [NEW, OLD] (NEW first: new messages come first)."""
    m = menu()
    assert m.start() == [LoadMessages("1001")]
    m.handle(MessagesLoaded((OLD, NEW)))
    if index:
        m.handle(D("2"))
    assert m.state == "message" and m.index == index
    return m


def at_end() -> MailboxMenu:
    m = at_message(1)
    m.handle(D("2"))
    assert m.state == "end"
    return m


ENV_NEW = envelope(NEW, NOW, "sv")
ENV_OLD = envelope(OLD, NOW, "sv")


# --- words ---------------------------------------------------------------------------------


def test_summary_counts_new_and_saved_messages() -> None:
    assert summary([NEW, OLD]) == [
        "you_have",
        "num_1",
        "new_message",
        "and",
        "num_1",
        "saved_message",
    ]
    two = [NEW, MessageInfo(id=8, caller="1", received=NOW)]
    assert summary(two) == ["you_have", "num_2", "new_messages"]
    assert summary([]) == ["you_have", "no", "new_messages"]
    heard = MessageInfo(id=9, caller="1", received=NOW, heard=True)
    assert summary([heard]) == ["you_have", "no", "new_messages"]


def test_the_envelope_reads_the_caller_and_when() -> None:
    assert [
        "message_from",
        *phrases.digits("46701740699"),
        phrases.PAUSE,
        "today",
        "at",
        "num_9",
        "and",
        "num_5",
    ] == ENV_NEW
    assert [
        "message_from",
        *phrases.digits("1002"),
        phrases.PAUSE,
        "weekday_1",
        "at",
        "num_13",
        "and",
        "num_30",
    ] == ENV_OLD
    anonymous = MessageInfo(id=1, caller="anonymous", received=NOW)
    assert envelope(anonymous, NOW, "en")[1] == "unknown_caller"
    assert envelope(OLD, NOW, "en")[-3:] == ["num_1", "num_30", "pm"]


# --- getting in ------------------------------------------------------------------------------


def test_own_mailbox_without_pin_loads_at_once_and_announces() -> None:
    m = menu()
    assert m.start() == [LoadMessages("1001")]
    actions = m.handle(MessagesLoaded((OLD, NEW)))
    assert actions[0] == MarkHeard(7)
    assert plays(actions) == (
        *summary([NEW, OLD]),
        phrases.PAUSE,
        *ENV_NEW,
        "message_7",
        "message_menu",
    )
    assert actions[-1] == Collect(max_digits=1, terminators="", first_timeout=5.0)
    play = next(a for a in actions if isinstance(a, Play))
    assert play.barge_in


def test_an_empty_mailbox_says_so_and_offers_the_end_menu() -> None:
    m = menu()
    m.start()
    actions = m.handle(MessagesLoaded(()))
    assert plays(actions) == ("you_have", "no", "new_messages", phrases.PAUSE, "end_menu")
    assert m.state == "end"


def test_own_mailbox_with_pin_checks_the_account_then_asks() -> None:
    m = menu(ask_pin=True)
    assert m.start() == [CheckAccount("1001")]
    assert plays(m.handle(AccountChecked(exists=True))) == ("enter_pin",)
    assert m.handle(D("1234", "#")) == [CheckPin("1001", "1234")]
    assert m.handle(PinChecked("ok")) == [LoadMessages("1001")]
    assert "1234" not in repr(CheckPin("1001", "1234"))


def test_any_mailbox_asks_for_it_then_the_pin() -> None:
    m = menu(mailbox=None, ask_pin=True)
    actions = m.start()
    assert plays(actions) == ("enter_mailbox",)
    assert actions[-1] == Collect(max_digits=15, terminators="#", first_timeout=5.0)
    assert m.handle(D("1002", "#")) == [CheckAccount("1002")]
    actions = m.handle(AccountChecked(exists=True))
    assert plays(actions) == ("enter_pin",)
    assert actions[-1] == Collect(max_digits=8, terminators="#", first_timeout=5.0)
    assert m.handle(Timeout("2345")) == [CheckPin("1002", "2345")], "no # needed"
    assert m.handle(PinChecked("ok")) == [LoadMessages("1002")]


def test_a_wrong_pin_asks_again_and_a_lock_ends_the_call() -> None:
    m = menu(mailbox=None, ask_pin=True)
    m.start()
    m.handle(D("1002", "#"))
    m.handle(AccountChecked(exists=True))
    for _ in range(2):
        m.handle(D("0000", "#"))
        assert plays(m.handle(PinChecked("wrong"))) == ("wrong_pin", "enter_pin")
    m.handle(D("0000", "#"))
    assert plays(m.handle(PinChecked("locked"))) == ("wrong_pin", "pin_locked")
    assert m.handle(PromptDone()) == [Hangup()] and m.done


def test_a_locked_account_is_refused_before_the_pin_is_asked() -> None:
    m = menu(mailbox=None, ask_pin=True)
    m.start()
    m.handle(D("1002", "#"))
    assert plays(m.handle(AccountChecked(exists=True, locked=True))) == ("pin_locked",)
    assert m.handle(PromptDone()) == [Hangup()]


def test_an_unknown_mailbox_may_be_typed_again_three_times() -> None:
    m = menu(mailbox=None, ask_pin=True)
    m.start()
    for _ in range(2):
        m.handle(D("9999", "#"))
        assert plays(m.handle(AccountChecked(exists=False))) == ("invalid_choice", "enter_mailbox")
    m.handle(D("9999", "#"))
    assert plays(m.handle(AccountChecked(exists=False))) == ("invalid_choice", "goodbye")
    assert m.handle(PromptDone()) == [Hangup()]


def test_the_own_mailbox_missing_ends_at_once() -> None:
    m = menu(ask_pin=True)
    m.start()
    assert plays(m.handle(AccountChecked(exists=False))) == ("invalid_choice", "goodbye")


@pytest.mark.parametrize("state", ["mailbox", "pin"])
def test_no_entry_asks_again_then_says_goodbye(state: str) -> None:
    m = menu(mailbox=None, ask_pin=True)
    m.start()
    prompt = "enter_mailbox"
    if state == "pin":
        m.handle(D("1002", "#"))
        m.handle(AccountChecked(exists=True))
        prompt = "enter_pin"
    assert plays(m.handle(Timeout())) == (prompt,)
    assert plays(m.handle(Timeout())) == (prompt,)
    assert plays(m.handle(Timeout())) == ("goodbye",)
    assert m.handle(PromptDone()) == [Hangup()]


def test_star_in_a_pin_is_not_a_pin() -> None:
    m = menu(ask_pin=True)
    m.start()
    m.handle(AccountChecked(exists=True))
    assert plays(m.handle(D("12*4", "#"))) == ("wrong_pin", "enter_pin")


# --- every key at a message and at the end ----------------------------------------------


MESSAGE_KEYS: dict[str, tuple[str, int, tuple[str, ...]]] = {
    # key: (state after, index after, prompts played)
    "1": ("message", 0, (*ENV_NEW, "message_7", "message_menu")),
    "2": ("message", 1, (*ENV_OLD, "message_3", "message_menu")),
    "#": ("message", 1, (*ENV_OLD, "message_3", "message_menu")),
    "3": ("message", 0, ("message_deleted", *ENV_OLD, "message_3", "message_menu")),
    "4": ("message", 0, (*ENV_NEW, "message_7", "message_menu")),
    "5": ("message", 0, ("message_saved", "message_menu")),
    "0": ("options", 0, ("mailbox_options",)),
    "*": ("message", 0, (*ENV_NEW, "message_7", "message_menu")),
}


@pytest.mark.parametrize("key", KEYS)
def test_every_key_at_the_first_message(key: str) -> None:
    m = at_message(0)
    actions = m.handle(D(key))
    state, index, prompts = MESSAGE_KEYS.get(
        key, ("message", 0, ("invalid_choice", "message_menu"))
    )
    assert plays(actions) == prompts
    assert (m.state, m.index) == (state, index)
    assert actions[-1] == Collect(max_digits=1, terminators="", first_timeout=5.0)
    store = [a for a in actions if not isinstance(a, Play | Collect)]
    if key == "3":
        assert store == [DeleteMessage(7)] and [x.id for x in m.messages] == [3]
    elif key == "5":
        assert store == [SaveMessage(7)] and m.messages[0].saved
    else:
        assert store == [], "the first message was marked heard already"


@pytest.mark.parametrize("key", KEYS)
def test_every_key_at_the_second_message(key: str) -> None:
    m = at_message(1)
    actions = m.handle(D(key))
    expected = {
        "1": ("message", 1, (*ENV_OLD, "message_3", "message_menu")),
        "2": ("end", 2, ("no_more_messages", "end_menu")),
        "#": ("end", 2, ("no_more_messages", "end_menu")),
        "3": ("end", 1, ("message_deleted", "no_more_messages", "end_menu")),
        "4": ("message", 0, (*ENV_NEW, "message_7", "message_menu")),
        "5": ("message", 1, ("message_saved", "message_menu")),
        "0": ("options", 1, ("mailbox_options",)),
        "*": ("message", 0, (*ENV_NEW, "message_7", "message_menu")),
    }.get(key, ("message", 1, ("invalid_choice", "message_menu")))
    assert (m.state, m.index, plays(actions)) == expected


@pytest.mark.parametrize("key", KEYS)
def test_every_key_at_the_end(key: str) -> None:
    m = at_end()
    actions = m.handle(D(key))
    expected = {
        "1": ("end", ("no_more_messages", "end_menu")),
        "2": ("bye", ("goodbye",)),
        "#": ("bye", ("goodbye",)),
        "4": ("message", (*ENV_OLD, "message_3", "message_menu")),
        "0": ("options", ("mailbox_options",)),
        "*": ("message", (*ENV_NEW, "message_7", "message_menu")),
    }.get(key, ("end", ("invalid_choice", "end_menu")))
    assert (m.state, plays(actions)) == expected
    if key in "2#":
        assert m.handle(PromptDone()) == [Hangup()] and m.done


@pytest.mark.parametrize("key", "4*")
def test_previous_and_first_need_messages_at_the_end(key: str) -> None:
    m = menu()
    m.start()
    m.handle(MessagesLoaded(()))
    assert plays(m.handle(D(key))) == ("invalid_choice", "end_menu")


def test_a_replayed_message_is_marked_heard_once() -> None:
    m = at_message(0)
    assert MarkHeard(7) not in m.handle(D("1"))
    m.handle(D("2"))
    assert m.messages[1].heard  # OLD was heard already: no MarkHeard for it either


@pytest.mark.parametrize("state", ["message", "end", "options"])
def test_no_key_asks_again_then_says_goodbye(state: str) -> None:
    m = at_end() if state == "end" else at_message(0)
    if state == "options":
        m.handle(D("0"))
    prompt = {"message": "message_menu", "end": "end_menu", "options": "mailbox_options"}[state]
    assert plays(m.handle(Timeout())) == (prompt,)
    assert plays(m.handle(Timeout())) == (prompt,)
    assert plays(m.handle(Timeout())) == ("goodbye",)
    assert m.handle(PromptDone()) == [Hangup()]


def test_invalid_keys_count_as_failures_and_a_valid_key_resets_the_count() -> None:
    m = at_message(0)
    m.handle(D("9"))
    m.handle(D("9"))
    m.handle(D("1"))  # valid: the count starts again
    m.handle(D("9"))
    assert plays(m.handle(D("9"))) == ("invalid_choice", "message_menu")
    assert plays(m.handle(D("9"))) == ("invalid_choice", "goodbye")


# --- mailbox options ----------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_every_key_in_the_options(key: str) -> None:
    m = at_message(0)
    m.handle(D("0"))
    actions = m.handle(D(key))
    expected = {
        "1": ("greeting_profile", ("choose_profile",)),
        "2": ("recording", ("record_after_beep", "beep")),
        "3": ("new_pin", ("enter_new_pin",)),
        "*": ("message", (*ENV_NEW, "message_7", "message_menu")),
    }.get(key, ("options", ("invalid_choice", "mailbox_options")))
    assert (m.state, plays(actions)) == expected
    if key == "2":
        assert m.child is not None and m.child.target == Name(extension="1001")


@pytest.mark.parametrize("key", KEYS)
def test_every_key_when_choosing_the_greeting_s_profile(key: str) -> None:
    m = at_message(0)
    m.handle(D("0"))
    m.handle(D("1"))
    actions = m.handle(D(key))
    if key in "23" and key.isdigit():
        assert (m.state, plays(actions)) == ("recording", ("record_after_beep", "beep"))
        assert m.child is not None
        assert m.child.target == Greeting(extension="1001", profile=PROFILES[int(key)])
    elif key == "*":
        assert (m.state, plays(actions)) == ("options", ("mailbox_options",))
    else:
        assert (m.state, plays(actions)) == (
            "greeting_profile",
            ("invalid_choice", "choose_profile"),
        )


def test_a_recording_from_the_options_returns_to_the_options() -> None:
    m = at_message(0)
    m.handle(D("0"))
    m.handle(D("2"))
    assert m.handle(PromptDone()) == [StartRecording(120.0)]
    assert plays(m.handle(Recorded(ok=True)))[0] == "recording"
    assert m.handle(D("1")) == [KeepRecording(Name(extension="1001"))]
    assert plays(m.handle(Stored(ok=True))) == ("recording_saved",)
    actions = m.handle(PromptDone())
    assert Hangup() not in actions, "the embedded recording does not hang up"
    assert (m.state, plays(actions)) == ("options", ("mailbox_options",))
    assert m.child is None


# --- change PIN ---------------------------------------------------------------------------


def at_new_pin(**kwargs: object) -> MailboxMenu:
    m = menu(**kwargs)
    m.start()
    m.handle(MessagesLoaded(()))
    assert plays(m.handle(D("0"))) == ("mailbox_options",)
    actions = m.handle(D("3"))
    assert (m.state, plays(actions)) == ("new_pin", ("enter_new_pin",))
    collect = [a for a in actions if isinstance(a, Collect)]
    assert collect and collect[0].terminators == "#" and collect[0].max_digits == 9
    return m


def test_a_new_pin_entered_twice_is_stored_then_the_options_again() -> None:
    m = at_new_pin()
    assert (plays(m.handle(D("4711", "#"))), m.state) == (("repeat_new_pin",), "new_pin_again")
    actions = m.handle(D("4711", "#"))
    assert actions == [ChangePin("1001", "4711")] and m.state == "changing"
    assert "4711" not in repr(actions), "the PIN stays out of logs"
    assert (plays(m.handle(PinChanged(ok=True))), m.state) == (
        ("pin_changed", "mailbox_options"),
        "options",
    )


def test_a_pin_that_could_not_be_stored_says_so() -> None:
    m = at_new_pin()
    m.handle(D("12345678", "#"))
    assert m.handle(D("12345678", "#")) == [ChangePin("1001", "12345678")]
    assert plays(m.handle(PinChanged(ok=False))) == ("pin_not_changed", "mailbox_options")


@pytest.mark.parametrize("entry", ["", "1", "123", "123456789", "12#4", "12*4", "A123", "*1"])
def test_an_invalid_new_pin_is_said_and_asked_again(entry: str) -> None:
    m = at_new_pin()
    actions = m.handle(D(entry.replace("#", ""), "#") if "#" in entry else D(entry, "#"))
    assert (m.state, plays(actions)) == ("new_pin", ("invalid_new_pin", "enter_new_pin"))


@pytest.mark.parametrize("key", KEYS)
def test_every_single_key_as_a_new_pin(key: str) -> None:
    m = at_new_pin()
    actions = m.handle(D(key))
    if key == "*":  # back to the options
        assert (m.state, plays(actions)) == ("options", ("mailbox_options",))
    else:  # one digit is no PIN
        assert (m.state, plays(actions)) == ("new_pin", ("invalid_new_pin", "enter_new_pin"))


@pytest.mark.parametrize("key", KEYS)
def test_every_single_key_as_the_repeated_pin(key: str) -> None:
    m = at_new_pin()
    m.handle(D("4711", "#"))
    actions = m.handle(D(key))
    if key == "*":
        assert (m.state, plays(actions)) == ("options", ("mailbox_options",))
    else:  # never the same as 4711: start again from the first entry
        assert (m.state, plays(actions)) == ("new_pin", ("pins_differ", "enter_new_pin"))


def test_a_mismatch_starts_again_and_the_new_entries_count() -> None:
    m = at_new_pin()
    m.handle(D("4711", "#"))
    assert plays(m.handle(D("4712", "#"))) == ("pins_differ", "enter_new_pin")
    assert plays(m.handle(D("2468", "#"))) == ("repeat_new_pin",)
    assert m.handle(D("2468", "#")) == [ChangePin("1001", "2468")], "the first entry is gone"


def test_a_timed_out_entry_with_digits_counts_as_entered() -> None:
    m = at_new_pin()
    assert plays(m.handle(Timeout("13579"))) == ("repeat_new_pin",)
    assert m.handle(Timeout("13579")) == [ChangePin("1001", "13579")]


@pytest.mark.parametrize("again", [False, True])
def test_no_entry_asks_again_then_goodbye(again: bool) -> None:
    m = at_new_pin()
    prompt = "enter_new_pin"
    if again:
        m.handle(D("4711", "#"))
        prompt = "repeat_new_pin"
    assert plays(m.handle(Timeout())) == (prompt,)
    assert plays(m.handle(Timeout())) == (prompt,)
    assert plays(m.handle(Timeout())) == ("goodbye",)
    assert m.handle(PromptDone()) == [Hangup()]


def test_failures_in_a_row_end_the_call_and_a_success_resets_them() -> None:
    m = at_new_pin(max_tries=2)
    assert plays(m.handle(D("1", "#"))) == ("invalid_new_pin", "enter_new_pin")
    assert plays(m.handle(D("1", "#"))) == ("invalid_new_pin", "goodbye")
    m = at_new_pin(max_tries=2)
    m.handle(D("1", "#"))
    m.handle(D("4711", "#"))
    m.handle(D("4711", "#"))
    m.handle(PinChanged(ok=True))
    assert plays(m.handle(D("9"))) == ("invalid_choice", "mailbox_options"), "count reset"


def test_the_pin_of_a_mailbox_asked_for_is_changed_for_that_mailbox() -> None:
    m = menu(mailbox=None, ask_pin=True)
    m.start()
    m.handle(D("1002", "#"))
    m.handle(AccountChecked(exists=True))
    m.handle(D("2345", "#"))
    m.handle(PinChecked("ok"))
    m.handle(MessagesLoaded(()))
    m.handle(D("0"))
    m.handle(D("3"))
    m.handle(D("8642", "#"))
    assert m.handle(D("8642", "#")) == [ChangePin("1002", "8642")]


def test_change_pin_events_out_of_place_are_flow_errors() -> None:
    m = at_new_pin()
    with pytest.raises(FlowError):
        m.handle(PinChanged(ok=True))  # nothing was stored yet


# --- contract -------------------------------------------------------------------------------


def test_events_out_of_place_are_flow_errors() -> None:
    m = menu()
    with pytest.raises(FlowError):
        m.handle(D("1"))  # not started
    m.start()
    with pytest.raises(FlowError):
        m.handle(PinChecked("ok"))  # no PIN was asked
    with pytest.raises(FlowError):
        m.start()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        menu(lang="de")
    with pytest.raises(ValueError):
        menu(mailbox=None, ask_pin=False)
    with pytest.raises(ValueError):
        menu(max_tries=0)


def test_barge_in_through_the_flow_runner_stops_the_prompt_and_collects() -> None:
    runner = FlowRunner(menu())
    assert runner.start(0.0) == [LoadMessages("1001")]
    actions = runner.event(MessagesLoaded((NEW,)), 0.1)
    assert [type(a).__name__ for a in actions] == ["MarkHeard", "Play"]
    # a key while the announcement plays stops it at once and is acted on
    actions = runner.digit("5", 1.0)
    assert actions[0] == StopPrompt()
    assert SaveMessage(7) in actions
    assert plays(actions) == ("message_saved", "message_menu")
    # no key after the menu: the timer asks again
    assert runner.prompt_finished(2.0)[0].name == "first_digit"  # type: ignore[union-attr]
    again = runner.timer_fired("first_digit", 7.0)
    assert plays(again) == ("message_menu",)


@pytest.mark.parametrize(
    ("caller", "said"),
    [
        ("+46701740699", "0701740699"),  # our own country: the national form
        ("+4930123456", "+4930123456"),  # abroad: as it came (the envelope reads digits)
        ("1002", "1002"),
        ("anonymous", "anonymous"),
    ],
)
def test_callers_are_read_the_way_users_know_them(caller: str, said: str) -> None:
    assert spoken_number(caller, "SE") == said
