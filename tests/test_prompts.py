"""The prompt library: shipped files, lookup with fallback, resampling, caching."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tomllib
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ivr.media import g711, phrases
from ivr.media.prompts import PromptLibrary, PromptNotFound, load_wav, resample

REPO = Path(__file__).resolve().parents[1]
PROMPTS = REPO / "prompts"
MANIFEST = tomllib.loads((PROMPTS / "prompts.toml").read_text(encoding="utf-8"))
LANGS = ("sv", "en")
SYNTHETIC = {"beep", "pause"}


@pytest.fixture(scope="module")
def shipped() -> PromptLibrary:
    return PromptLibrary(PROMPTS)


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def write(path: Path, samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, rate, subtype=subtype)
    return path


# --- the shipped library ---------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_every_manifest_entry_is_shipped_and_nothing_else(lang, shipped):
    assert shipped.names(lang) == set(MANIFEST[lang]) | SYNTHETIC


def test_shipped_files_are_8k_mono_16bit_and_small():
    files = sorted(PROMPTS.glob("*/*.wav"))
    assert len(files) == sum(len(MANIFEST[lang]) + len(SYNTHETIC) for lang in LANGS)
    for path in files:
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16"), path
        assert path.stat().st_size < 160_000, f"{path}: over 10 s of speech"
    assert sum(p.stat().st_size for p in files) < 10_000_000


@pytest.mark.parametrize("lang", LANGS)
def test_speech_is_trimmed_and_levelled(lang, shipped):
    levels = []
    for name in MANIFEST[lang]:
        x = shipped.pcm(lang, name).astype(np.float64) / 32768
        assert np.abs(x).max() <= 10 ** (-1 / 20) + 1e-3, name  # peak ceiling -1 dBFS
        assert abs(x[0]) < 0.01 and abs(x[-1]) < 0.01, name  # faded edges
        window = np.sqrt(np.mean(x[: len(x) // 40 * 40].reshape(-1, 40) ** 2, axis=1))
        loud = np.nonzero(window >= window.max() * 10 ** (-40 / 20))[0]
        assert loud[0] * 5 <= 20 and (len(window) - 1 - loud[-1]) * 5 <= 20, name  # ≤ 20 ms
        active = window[window >= window.max() * 10 ** (-30 / 20)]
        levels.append(20 * np.log10(np.sqrt(np.mean(active**2))))
    assert max(levels) - min(levels) < 6  # one common level (peak-limited ones a bit lower)
    assert np.median(levels) == pytest.approx(-20, abs=1)


def test_beep_is_a_one_kilohertz_tone(shipped):
    x = shipped.pcm("sv", "beep").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x))
    assert np.argmax(spectrum) * 8000 / len(x) == pytest.approx(1000, abs=10)
    assert np.array_equal(shipped.pcm("sv", "beep"), shipped.pcm("en", "beep"))
    assert not shipped.pcm("en", "pause").any()


def _phrase_grid(lang: str) -> set[str]:
    names: set[str] = set()
    now = datetime(2026, 1, 1, 9, 0)
    moments = [now.replace(hour=0, minute=0) + timedelta(minutes=m) for m in range(0, 1440)]
    days = [now.date() + timedelta(days=d) for d in range(366)]
    for clock in ("12h", "24h"):
        for t in moments:
            names.update(phrases.time_words(t.time(), lang, clock))
    for d in days:
        names.update(phrases.when_words(d, now, lang, lead="back"))
        names.update(phrases.when_words(datetime.combine(d, time(8)), now, lang, lead="until"))
    for p in range(1, 10):
        back = datetime(2026, 1, 20, 13, 30)
        names.update(phrases.activated(p, back, now, lang))
        names.update(phrases.activated(p, None, now, lang))
        names.update(phrases.deactivated(p, lang))
        names.update(phrases.current_profile(p, date(2026, 2, 3), now, lang))
        names.update(phrases.current_profile(p, None, now, lang))
        names.update(phrases.redirect("0123456789", p, back, now, lang))
    names.update(phrases.invalid_code(lang))
    return names


@pytest.mark.parametrize("lang", LANGS)
def test_every_name_the_phrases_can_say_exists(lang, shipped):
    missing = _phrase_grid(lang) - shipped.names(lang)
    assert not missing


def test_generator_reproduces_a_shipped_prompt():
    for tool, package in (("espeak-ng", "espeak-ng"), ("sox", "sox")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required (Debian package {package}; scripts/peers installs it)")
    spec = importlib.util.spec_from_file_location("gen_prompts", REPO / "tools" / "gen_prompts.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    voice = MANIFEST["voices"]["sv"]
    speech = gen.speak(MANIFEST["sv"]["profile_2"], voice["voice"], int(voice["speed"]))
    assert gen.to_wav(gen.trim_and_level(speech)) == (PROMPTS / "sv" / "profile_2.wav").read_bytes()
    assert gen.to_wav(gen.beep()) == (PROMPTS / "en" / "beep.wav").read_bytes()


# --- lookup ----------------------------------------------------------------------------


def test_custom_directory_comes_first_then_shipped(tmp_path, shipped):
    custom = tmp_path / "custom"
    mine = write(custom / "sv" / "profile_2.wav", tone(440, 0.1, 8000), 8000)
    library = PromptLibrary(PROMPTS, custom)
    assert library.directories == (custom, PROMPTS)
    assert library.path("sv", "profile_2") == mine
    assert len(library.pcm("sv", "profile_2")) == 800
    assert library.path("sv", "profile_3") == PROMPTS / "sv" / "profile_3.wav"
    assert np.array_equal(library.pcm("sv", "profile_3"), shipped.pcm("sv", "profile_3"))
    write(custom / "sv" / "name_1001.wav", tone(300, 0.2, 8000), 8000)
    assert "name_1001" in library.names("sv") and "name_1001" not in shipped.names("sv")
    assert library.has("sv", "name_1001") and not shipped.has("sv", "name_1001")


def test_missing_prompt_is_a_key_error_naming_lang_and_name(tmp_path):
    library = PromptLibrary(PROMPTS, tmp_path)
    with pytest.raises(KeyError) as info:
        library.encoded("en", "no_such_prompt", "PCMU")
    err = info.value
    assert isinstance(err, PromptNotFound)
    assert (err.lang, err.name) == ("en", "no_such_prompt")
    assert str(err).startswith("no prompt 'no_such_prompt' for language 'en' (looked in ")
    assert str(tmp_path / "en" / "no_such_prompt.wav") in str(err)
    with pytest.raises(PromptNotFound):
        library.pcm("fi", "profile_2")


@pytest.mark.parametrize(
    ("lang", "name"), [("sv", "../sv/profile_2"), ("sv", "a/b"), ("sv", ""), ("../x", "beep")]
)
def test_names_cannot_escape_the_directories(lang, name, shipped):
    with pytest.raises(ValueError):
        shipped.path(lang, name)


# --- loading, resampling ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "channels", "subtype"),
    [(8000, 1, "PCM_16"), (16000, 1, "PCM_16"), (44100, 2, "FLOAT"), (48000, 1, "PCM_24")],
)
def test_load_wav_resamples_and_mixes_to_8k_mono(tmp_path, rate, channels, subtype):
    x = tone(1000, 0.5, rate)
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    pcm = load_wav(write(tmp_path / "t.wav", data, rate, subtype))
    assert pcm.dtype == np.int16 and len(pcm) == 4000
    assert not pcm.flags.writeable
    expected = tone(1000, 0.5, 8000) * 32768
    assert np.abs(pcm[100:-100] - expected[100:-100]).max() < 40  # ~ -58 dB


def test_resample_is_band_limited_and_exact_in_time():
    x = tone(1000, 1.0, 44100) + tone(6000, 1.0, 44100)  # 6 kHz cannot exist at 8 kHz
    y = resample(x, 44100, 8000)
    assert len(y) == 8000
    assert np.abs(y[200:-200] - tone(1000, 1.0, 8000)[200:-200]).max() < 1e-3
    up = resample(tone(500, 0.25, 8000), 8000, 22050)
    assert len(up) == 5512
    assert np.abs(up[200:-200] - tone(500, 0.25, 22050)[200:-200]).max() < 1e-3
    assert np.array_equal(resample([1.0, 2.0], 8000, 8000), [1.0, 2.0])
    with pytest.raises(ValueError):
        resample([1.0], 0, 8000)
    with pytest.raises(ValueError):
        resample(np.zeros((2, 2)), 16000, 8000)


# --- encoding, cache, players ----------------------------------------------------------


def test_encoded_is_cached_per_codec(shipped):
    ulaw = shipped.encoded("sv", "profile_2", "PCMU")
    assert ulaw is shipped.encoded("sv", "profile_2", "pcmu")
    assert ulaw == g711.encode("PCMU", shipped.pcm("sv", "profile_2"))
    alaw = shipped.encoded("sv", "profile_2", "PCMA")
    assert alaw == g711.encode("PCMA", shipped.pcm("sv", "profile_2")) and alaw != ulaw
    assert shipped.duration("sv", "profile_2") == len(ulaw) / 8000


def test_a_replaced_file_is_reloaded(tmp_path):
    path = write(tmp_path / "sv" / "greeting.wav", tone(440, 0.1, 8000), 8000)
    clock = [100.0]
    library = PromptLibrary(tmp_path, recheck_seconds=2.0, clock=lambda: clock[0])
    first = library.encoded("sv", "greeting", "PCMU")
    assert library.encoded("sv", "greeting", "PCMU") is first
    write(path, tone(440, 0.3, 8000), 8000)
    stamp = path.stat().st_mtime_ns + 1_000_000
    os.utime(path, ns=(stamp, stamp))
    clock[0] += 1.0
    assert library.encoded("sv", "greeting", "PCMU") is first  # not looked at again yet
    clock[0] += 1.5
    assert len(library.encoded("sv", "greeting", "PCMU")) == 2400


def test_player_for_a_phrase(shipped):
    names = phrases.activated(2, datetime(2026, 1, 1, 13, 30), datetime(2026, 1, 1, 9), "sv")
    player = shipped.player("sv", names, "PCMA", gap_ms=40)
    samples = sum(len(shipped.encoded("sv", n, "PCMA")) for n in names) + 40 * 8 * (len(names) - 1)
    assert player.codec == "PCMA"
    assert player.total_frames == -(-samples // 160)
    frames = list(player)
    assert frames[0] == shipped.encoded("sv", "profile_2", "PCMA")[:160]


def test_player_with_a_recorded_name_and_preload(shipped):
    recorded = b"\x42" * 320
    player = shipped.player(
        "en", ["name_1001", "redirect_2"], "PCMU", extra={"name_1001": recorded}
    )
    assert next(iter(player)) == b"\x42" * 160
    shipped.preload("en", ["beep", "pause"])
    with pytest.raises(PromptNotFound):
        shipped.preload("en", ["beep", "nope"])


def test_calls_saying_the_same_phrase_share_its_frames_until_a_prompt_changes(tmp_path):
    path = write(tmp_path / "sv" / "greeting.wav", tone(440, 0.1, 8000), 8000)
    write(tmp_path / "sv" / "beep.wav", tone(1000, 0.05, 8000), 8000)
    clock = [100.0]
    library = PromptLibrary(tmp_path, recheck_seconds=2.0, clock=lambda: clock[0])
    first = library.player("sv", ["greeting", "beep"], "PCMU", gap_ms=20)
    again = library.player("sv", ["greeting", "beep"], "PCMU", gap_ms=20)
    assert again.buffer is first.buffer and len(first.buffer) % 160 == 0
    assert library.player("sv", ["greeting", "beep"], "PCMA", gap_ms=20).buffer != first.buffer
    assert library.player("sv", ["beep", "greeting"], "PCMU", gap_ms=20).buffer is not first.buffer
    single = library.player("sv", ["greeting"], "PCMU")
    assert library.player("sv", ["greeting"], "PCMU").buffer is single.buffer

    write(path, tone(440, 0.3, 8000), 8000)  # replaced (an upload): the next call hears it
    stamp = path.stat().st_mtime_ns + 1_000_000
    os.utime(path, ns=(stamp, stamp))
    clock[0] += 3.0
    changed = library.player("sv", ["greeting", "beep"], "PCMU", gap_ms=20)
    assert changed.buffer is not first.buffer
    assert changed.total_frames > first.total_frames
    assert first.buffer == again.buffer  # a call in progress keeps what it started
