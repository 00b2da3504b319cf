"""Recording from the keypad: the pure record/review flow, and the files it leaves
(greetings per profile, names, system prompts: trimmed, levelled, atomic)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ivr import greetings
from ivr.config import load_config
from ivr.flows import Collect, FlowError, Hangup, Play, PromptDone, Timeout
from ivr.flows import Digits as D
from ivr.mailbox_menu import AccountChecked, CheckAccount, CheckPin, PinChecked
from ivr.media.prompts import PromptLibrary
from ivr.prompt_import import CustomPrompts
from ivr.prompt_menu import PromptMenu
from ivr.record_menu import (
    TAKE,
    DeleteRecording,
    Greeting,
    KeepRecording,
    Name,
    Recorded,
    RecordMenu,
    StartRecording,
    Stored,
    SystemPrompt,
)
from ivr.routing.features import InvalidCode, SystemPromptCode

REPO = Path(__file__).resolve().parents[1]
KEYS = "0123456789*#ABCD"
TARGET = Greeting(extension="1002", profile="lunch")
INTRO = ("record_after_beep", "beep")
REVIEW = (TAKE, "review_recording")


def plays(actions: list[object]) -> tuple[str, ...]:
    found = [a for a in actions if isinstance(a, Play)]
    assert len(found) == 1, actions
    return found[0].prompts


def reviewing(**kwargs: object) -> RecordMenu:
    flow = RecordMenu(TARGET, **kwargs)  # type: ignore[arg-type]
    assert plays(flow.start()) == INTRO
    assert flow.handle(PromptDone()) == [StartRecording(120.0)]
    actions = flow.handle(Recorded(ok=True))
    assert plays(actions) == REVIEW
    assert actions[-1] == Collect(max_digits=1, terminators="", first_timeout=5.0)
    assert flow.state == "review"
    return flow


# --- the flow -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_every_key_when_reviewing(key: str) -> None:
    flow = reviewing()
    actions = flow.handle(D(key))
    if key == "1":
        assert actions == [KeepRecording(TARGET)] and flow.state == "storing"
    elif key == "2":
        assert plays(actions) == INTRO and flow.state == "intro"
    elif key == "3":
        assert actions == [DeleteRecording(TARGET)] and flow.state == "deleting"
    else:
        assert plays(actions) == ("invalid_choice", *REVIEW) and flow.state == "review"


def test_kept_says_saved_and_hangs_up() -> None:
    flow = reviewing()
    flow.handle(D("1"))
    assert plays(flow.handle(Stored(ok=True))) == ("recording_saved",)
    assert flow.handle(PromptDone()) == [Hangup()] and flow.done and flow.finished


def test_deleted_says_so_the_composed_phrase_is_back() -> None:
    flow = reviewing()
    flow.handle(D("3"))
    assert plays(flow.handle(Stored(ok=True))) == ("recording_deleted",)
    assert flow.handle(PromptDone()) == [Hangup()]


def test_a_failed_save_says_so() -> None:
    flow = reviewing()
    flow.handle(D("1"))
    assert plays(flow.handle(Stored(ok=False))) == ("recording_failed", "goodbye")


def test_too_short_records_again_and_three_in_a_row_end() -> None:
    flow = RecordMenu(Name(extension="1001"), max_seconds=30)
    flow.start()
    for _ in range(2):
        assert flow.handle(PromptDone()) == [StartRecording(30)]
        assert plays(flow.handle(Recorded(ok=False))) == ("recording_too_short", *INTRO)
    flow.handle(PromptDone())
    assert plays(flow.handle(Recorded(ok=False))) == ("recording_too_short", "goodbye")
    assert flow.handle(PromptDone()) == [Hangup()]


def test_no_key_asks_again_then_ends() -> None:
    flow = reviewing()
    assert plays(flow.handle(Timeout())) == REVIEW
    assert plays(flow.handle(Timeout())) == REVIEW
    assert plays(flow.handle(Timeout())) == ("goodbye",)


def test_record_again_resets_the_count() -> None:
    flow = reviewing(max_tries=2)
    flow.handle(D("9"))  # one failure
    flow.handle(D("2"))  # record again: a fresh start
    flow.handle(PromptDone())
    flow.handle(Recorded(ok=True))
    assert plays(flow.handle(D("9"))) == ("invalid_choice", *REVIEW)


def test_embedded_does_not_hang_up() -> None:
    flow = reviewing(embedded=True)
    flow.handle(D("1"))
    flow.handle(Stored(ok=True))
    assert flow.handle(PromptDone()) == []
    assert flow.finished and not flow.done


def test_out_of_place_events_and_bad_arguments() -> None:
    flow = RecordMenu(TARGET)
    with pytest.raises(FlowError):
        flow.handle(Recorded(ok=True))
    flow.start()
    with pytest.raises(FlowError):
        flow.start()
    with pytest.raises(FlowError):
        flow.handle(D("1"))  # still in the intro
    with pytest.raises(ValueError):
        RecordMenu(TARGET, max_tries=0)
    with pytest.raises(ValueError):
        RecordMenu(TARGET, max_seconds=0)


# --- the files ------------------------------------------------------------------------------


def voice(seconds: float, level: float = 0.05) -> np.ndarray:
    """A quiet, speech-like signal with silence around it."""
    t = np.arange(int(seconds * 8000)) / 8000
    tone = level * np.sin(2 * np.pi * 300 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    quiet = np.zeros(4000)
    return np.round(np.concatenate([quiet, tone, quiet]) * 32767).astype(np.int16)


def rms_dbfs(pcm: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean((pcm / 32768.0) ** 2))))


def test_a_take_is_trimmed_and_levelled_like_the_prompts() -> None:
    take = voice(1.5)
    levelled = greetings.level_take(take, 0.5)
    assert 1.5 <= len(levelled) / 8000 <= 1.6, "the half seconds of silence are cut"
    shipped = PromptLibrary(REPO / "prompts").pcm("sv", "goodbye")
    assert abs(rms_dbfs(levelled) - rms_dbfs(shipped)) < 3.5
    assert rms_dbfs(take) < rms_dbfs(levelled) - 10


@pytest.mark.parametrize("pcm", [voice(0.3), np.zeros(16000, dtype=np.int16), voice(0.0)])
def test_short_or_silent_takes_are_refused(pcm: np.ndarray) -> None:
    with pytest.raises(greetings.TooShort):
        greetings.level_take(pcm, 0.5)


def test_greetings_and_names_are_stored_loaded_and_deleted(tmp_path: Path) -> None:
    pcm = greetings.level_take(voice(1.0), 0.5)
    path = greetings.save(tmp_path, TARGET, pcm)
    assert path == tmp_path / "greetings" / "1002" / "lunch.wav"
    data, rate = sf.read(str(path), dtype="int16")
    assert rate == 8000 and np.array_equal(data, pcm)
    assert [p.name for p in path.parent.iterdir()] == ["lunch.wav"], "no temporary left"
    loaded = greetings.greeting(tmp_path, "1002", "lunch")
    assert loaded is not None and np.array_equal(loaded, pcm)
    assert greetings.greeting(tmp_path, "1002", "meeting") is None

    name = greetings.save(tmp_path, Name(extension="1002"), pcm)
    assert name == tmp_path / "names" / "1002" / "name.wav"
    assert greetings.name(tmp_path, "1002") is not None

    # what a call reads ahead (in a thread, while the 200 goes out)
    both = greetings.recorded(tmp_path, "1002", "lunch")
    assert both.greeting is not None and np.array_equal(both.greeting, pcm)
    assert both.name is not None and np.array_equal(both.name, pcm)
    assert greetings.recorded(tmp_path, "1002").greeting is None, "no profile: no greeting"
    assert greetings.recorded(tmp_path, "1003", "lunch") == greetings.Recorded()

    assert greetings.delete(tmp_path, TARGET) and not path.exists()
    assert not greetings.delete(tmp_path, TARGET)
    assert greetings.greeting(tmp_path, "1002", "lunch") is None


@pytest.mark.parametrize(
    "target",
    [Greeting(extension="../x", profile="lunch"), Greeting(extension="1", profile="a/b")],
)
def test_unsafe_names_are_refused(tmp_path: Path, target: Greeting) -> None:
    with pytest.raises(ValueError):
        greetings.path_of(tmp_path, target)


def test_a_system_prompt_is_replaced_keeping_the_previous_version(tmp_path: Path) -> None:
    prompts = CustomPrompts(tmp_path / "custom", REPO / "prompts")
    target = SystemPrompt(lang="sv", name="goodbye")
    at = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    first = greetings.level_take(voice(1.0), 0.5)
    path = greetings.save(tmp_path, target, first, custom_prompts=prompts, by="1000", at=at)
    assert path == tmp_path / "custom" / "sv" / "goodbye.wav"
    assert not (tmp_path / "custom" / "sv" / "goodbye.previous.wav").exists(), "shipped stays"
    second = greetings.level_take(voice(2.0), 0.5)
    greetings.save(tmp_path, target, second, custom_prompts=prompts, by="1000", at=at)
    previous = tmp_path / "custom" / "sv" / "goodbye.previous.wav"
    assert abs(len(sf.read(str(previous))[0]) / 8000 - 1.0) < 0.2
    assert abs(len(sf.read(str(path))[0]) / 8000 - 2.0) < 0.2
    record = prompts.find("sv", "goodbye")
    assert record is not None and record.meta is not None
    assert record.meta["uploaded_by"] == "1000"

    # the kept version is no prompt: not preloaded, not listed by the admin API
    library = PromptLibrary(REPO / "prompts", custom=tmp_path / "custom")
    names = library.names("sv")
    assert "goodbye" in names and "goodbye.previous" not in names
    assert not any(n.endswith(".previous") for n in names)
    assert library.path("sv", "goodbye") == path, "the custom one plays"
    listed = [r.name for r in prompts.list("sv")]
    assert "goodbye" in listed and not any("previous" in n for n in listed)


# --- system prompts from the phone (*77<id>, *99<id>) -----------------------------------


def prompt_menu(mode: str) -> PromptMenu:
    target = SystemPrompt(lang="sv", name="goodbye")
    menu = PromptMenu(mode=mode, target=target, account="1000")  # type: ignore[arg-type]
    assert menu.start() == [CheckAccount("1000")]
    assert plays(menu.handle(AccountChecked(exists=True))) == ("enter_pin",)
    return menu


def test_star99_plays_the_prompt_after_the_pin() -> None:
    menu = prompt_menu("play")
    assert menu.handle(D("2580", "#")) == [CheckPin("1000", "2580")]
    assert plays(menu.handle(PinChecked("ok"))) == ("goodbye",)
    assert menu.handle(PromptDone()) == [Hangup()] and menu.done


def test_star77_records_the_prompt_after_the_pin() -> None:
    menu = prompt_menu("record")
    menu.handle(D("2580", "#"))
    assert plays(menu.handle(PinChecked("ok"))) == INTRO
    assert menu.handle(PromptDone()) == [StartRecording(120.0)]
    menu.handle(Recorded(ok=True))
    target = SystemPrompt(lang="sv", name="goodbye")
    assert menu.handle(D("1")) == [KeepRecording(target)]
    menu.handle(Stored(ok=True))
    assert menu.handle(PromptDone()) == [Hangup()] and menu.done


def test_prompt_pins_wrong_locked_and_missing() -> None:
    menu = prompt_menu("play")
    menu.handle(D("1111", "#"))
    assert plays(menu.handle(PinChecked("wrong"))) == ("wrong_pin", "enter_pin")
    menu.handle(D("1111", "#"))
    assert plays(menu.handle(PinChecked("locked"))) == ("wrong_pin", "pin_locked")
    assert menu.handle(PromptDone()) == [Hangup()]

    locked = PromptMenu(mode="play", target=SystemPrompt(lang="sv", name="goodbye"), account="1")
    locked.start()
    assert plays(locked.handle(AccountChecked(exists=True, locked=True))) == ("pin_locked",)
    quiet = prompt_menu("record")
    assert plays(quiet.handle(Timeout())) == ("enter_pin",)
    assert plays(quiet.handle(Timeout())) == ("enter_pin",)
    assert plays(quiet.handle(Timeout())) == ("goodbye",)
    with pytest.raises(FlowError):
        quiet.handle(PinChecked("ok"))


def test_the_demo_codes_for_system_prompts_parse() -> None:
    codes = load_config(REPO / "config" / "ivr.toml").feature_codes
    assert codes.parse("*771") == SystemPromptCode(mode="record", prompt_id=1)
    assert codes.parse("*9912") == SystemPromptCode(mode="play", prompt_id=12)
    assert isinstance(codes.parse("*77"), InvalidCode)
    assert isinstance(codes.parse("*7712345"), InvalidCode)
