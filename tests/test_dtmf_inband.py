"""In-band DTMF receiver: the ITU-T Q.24 operate / non-operate table, talk-off, many channels."""

from __future__ import annotations

import numpy as np
import pytest

from ivr.dtmf import DIGITS, InbandDetector, detect, generate, resample
from ivr.dtmf.events import DigitEvent
from ivr.dtmf.generate import HIGH, LOW

RATE = 8000
DBM0_RMS = 16107.0


def _signal(digit: str = "5", ms: float = 80, **kw: object) -> np.ndarray:
    opts = {"tone_ms": ms, "gap_ms": 60, "lead_ms": 120, "trail_ms": 150, **kw}
    return generate(digit, **opts)  # type: ignore[arg-type]


def _digits(x: np.ndarray, rate: int = RATE) -> str:
    return "".join(d.digit for d in detect(x, rate))


def _sine(freqs: tuple[float, ...], seconds: float, level: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return sum(
        DBM0_RMS * np.sqrt(2) * 10 ** (level / 20) * np.sin(2 * np.pi * f * t) for f in freqs
    )


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


# -- a tiny G.711 (segment search with numpy), independent of ivr.media -----------------------

_SEG_ENDS = np.array([0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF])


def _ulaw_roundtrip(x: np.ndarray) -> np.ndarray:
    pcm = x.astype(np.int64) >> 2
    mag = np.minimum(np.abs(pcm), 8159) + 33
    seg = np.searchsorted(_SEG_ENDS >> 2, mag)
    mant = (mag >> (seg + 1)) & 0x0F
    out = (((mant << 1) + 33) << seg) - 33
    return (np.where(pcm < 0, -out, out) << 2).astype(np.int16)


def _alaw_roundtrip(x: np.ndarray) -> np.ndarray:
    pcm = x.astype(np.int64) >> 3
    mag = np.minimum(np.where(pcm < 0, -pcm - 1, pcm), 4095)
    seg = np.searchsorted(_SEG_ENDS >> 3, mag)
    mant = np.where(seg == 0, mag >> 1, mag >> seg) & 0x0F
    out = np.where(seg == 0, (mant << 4) + 8, ((mant << 4) + 0x108) << np.maximum(seg - 1, 0))
    return np.where(pcm < 0, -out, out).astype(np.int16)


def test_g711_helpers_are_faithful() -> None:
    x = _int16(_sine((1000.0,), 0.1, -10))
    for codec in (_ulaw_roundtrip, _alaw_roundtrip):
        err = codec(x).astype(float) - x
        assert np.sqrt(np.mean(err**2)) < 0.03 * np.sqrt(np.mean(x.astype(float) ** 2))


# -- Q.24 operate region: every digit must be detected exactly once -----------------------------

ACCEPT = {
    "nominal": {},
    "low -1.5%": {"freq_offset_pct": (-1.5, 0.0)},
    "low +1.5%": {"freq_offset_pct": (1.5, 0.0)},
    "high -1.5%": {"freq_offset_pct": (0.0, -1.5)},
    "high +1.5%": {"freq_offset_pct": (0.0, 1.5)},
    "both -1.5%": {"freq_offset_pct": -1.5},
    "both +1.5%": {"freq_offset_pct": 1.5},
    "low -1.5% high +1.5%": {"freq_offset_pct": (-1.5, 1.5)},
    "low +1.5% high -1.5%": {"freq_offset_pct": (1.5, -1.5)},
    "40 ms": {"ms": 40},
    "45 ms": {"ms": 45},
    "twist +4 dB": {"twist_db": 4.0},
    "twist -8 dB": {"twist_db": -8.0},
    "-3 dBm0 per tone": {"level_dbm0": -3.0},
    "-36 dBm0 per tone": {"level_dbm0": -36.0},
    "-36 dBm0, twist -8 dB": {"level_dbm0": -32.0, "twist_db": -8.0},
    "40 ms at +1.5%, twist +4 dB": {"ms": 40, "freq_offset_pct": 1.5, "twist_db": 4.0},
}


@pytest.mark.parametrize("case", list(ACCEPT), ids=list(ACCEPT))
def test_operate_region_detects_every_digit_once(case: str) -> None:
    for digit in DIGITS:
        assert _digits(_signal(digit, **ACCEPT[case])) == digit, f"{case}: {digit}"


def test_reported_edges_are_within_10_ms_of_the_tone() -> None:
    x = _signal("7", ms=100, lead_ms=250)
    (found,) = detect(x, RATE)
    assert abs(found.start - 0.250) < 0.010 and abs(found.end - 0.350) < 0.010


@pytest.mark.parametrize("tone_ms", [40, 60])
@pytest.mark.parametrize("gap_ms", [40, 60])
@pytest.mark.parametrize("digits", ["5555", "0123456789*#ABCD", "1122"])
def test_40_ms_pauses_separate_digits(digits: str, tone_ms: int, gap_ms: int) -> None:
    assert _digits(_signal(digits, ms=tone_ms, gap_ms=gap_ms)) == digits


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_15_db_snr_white_noise(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for digit in DIGITS:
        x = _signal(digit, ms=int(rng.integers(45, 100)), level_dbm0=float(rng.uniform(-20, -8)))
        tone = x[960:-1200].astype(float)  # power of the tone part only
        sigma = np.sqrt(np.mean(tone**2) / 10**1.5)
        assert _digits(_int16(x + rng.normal(0, sigma, len(x)))) == digit, digit


@pytest.mark.parametrize("codec", [_ulaw_roundtrip, _alaw_roundtrip], ids=["ulaw", "alaw"])
@pytest.mark.parametrize("level", [-3.0, -20.0, -36.0])
def test_g711_round_trip(codec: object, level: float) -> None:
    for digit in DIGITS:
        assert _digits(codec(_signal(digit, level_dbm0=level))) == digit  # type: ignore[operator]


def test_digits_over_dial_tone() -> None:
    for digit in DIGITS:
        x = _signal(digit, ms=70, level_dbm0=-15.0).astype(float)
        x += _sine((350.0, 440.0), len(x) / RATE, -13.0)
        assert _digits(_int16(x)) == digit


def test_a_10_ms_drop_out_does_not_split_a_digit() -> None:
    x = _signal("9", ms=60)
    tone = np.flatnonzero(x)
    gap = np.zeros(80, dtype=np.int16)
    joined = np.concatenate([x[: tone[-1] + 1], gap, x[tone[0] :]])
    assert _digits(joined) == "9"


# -- Q.24 non-operate region: nothing may be reported ------------------------------------------

REJECT = {
    "low -3.5%": {"freq_offset_pct": (-3.5, 0.0)},
    "low +3.5%": {"freq_offset_pct": (3.5, 0.0)},
    "high -3.5%": {"freq_offset_pct": (0.0, -3.5)},
    "high +3.5%": {"freq_offset_pct": (0.0, 3.5)},
    "both -3.5%": {"freq_offset_pct": -3.5},
    "both +3.5%": {"freq_offset_pct": 3.5},
    "low -5%": {"freq_offset_pct": (-5.0, 0.0)},
    "high +5%": {"freq_offset_pct": (0.0, 5.0)},
    "23 ms": {"ms": 23},
    "20 ms": {"ms": 20},
    "10 ms": {"ms": 10},
    "twist +10 dB": {"twist_db": 10.0},
    "twist -16 dB": {"twist_db": -16.0},
    "-50 dBm0 per tone": {"level_dbm0": -50.0},
}


@pytest.mark.parametrize("case", list(REJECT), ids=list(REJECT))
def test_non_operate_region_reports_nothing(case: str) -> None:
    for digit in DIGITS:
        assert _digits(_signal(digit, **REJECT[case])) == "", f"{case}: {digit}"


@pytest.mark.parametrize("freq", LOW + HIGH)
def test_single_tones_are_not_digits(freq: float) -> None:
    for level in (-5.0, -25.0):
        x = np.concatenate([np.zeros(800), _sine((freq,), 0.4, level), np.zeros(1600)])
        assert _digits(_int16(x)) == ""


@pytest.mark.parametrize("group", [LOW, HIGH], ids=["low", "high"])
def test_same_group_pairs_are_not_digits(group: tuple[float, ...]) -> None:
    for i, f1 in enumerate(group):
        for f2 in group[i + 1 :]:
            for level in (-8.0, -20.0):
                x = np.concatenate([np.zeros(800), _sine((f1, f2), 0.15, level), np.zeros(1600)])
                assert _digits(_int16(x)) == "", (f1, f2)


# -- talk-off: call-progress tones, noise, speech- and music-like signals -----------------------


def _cadence(freqs: tuple[float, ...], on: float, off: float, seconds: float, level: float):
    x = _sine(freqs, seconds, level)
    if off:
        t = np.arange(len(x)) / RATE
        x = x * ((t % (on + off)) < on)
    return x


CALL_PROGRESS = {
    "dial 350+440": ((350.0, 440.0), 1.0, 0.0),
    "ringback 440+480": ((440.0, 480.0), 2.0, 4.0),
    "busy 480+620": ((480.0, 620.0), 0.5, 0.5),
    "congestion 480+620": ((480.0, 620.0), 0.25, 0.25),
    "uk dial 350+450": ((350.0, 450.0), 1.0, 0.0),
    "uk ringing 400+450": ((400.0, 450.0), 0.4, 0.2),
    "eu dial 425": ((425.0,), 1.0, 0.0),
    "eu busy 425": ((425.0,), 0.5, 0.5),
}


@pytest.mark.parametrize("name", list(CALL_PROGRESS), ids=list(CALL_PROGRESS))
def test_call_progress_tones_are_not_digits(name: str) -> None:
    freqs, on, off = CALL_PROGRESS[name]
    for level in (-6.0, -20.0):
        assert _digits(_int16(_cadence(freqs, on, off, 8.0, level))) == ""


def test_special_information_tones_are_not_digits() -> None:
    parts = []
    for _ in range(4):
        parts += [_sine((f,), 0.33, -12.0) for f in (913.8, 1370.6, 1776.7)]
        parts.append(np.zeros(RATE))
    assert _digits(_int16(np.concatenate(parts))) == ""


@pytest.mark.parametrize("level", [-30.0, -10.0])
def test_noise_is_not_digits(level: float) -> None:
    rng = np.random.default_rng(7)
    white = rng.normal(0, DBM0_RMS * 10 ** (level / 20), 15 * RATE)
    brown = np.cumsum(rng.normal(0, 1, 15 * RATE))
    brown -= np.convolve(brown, np.ones(64) / 64, mode="same")  # keep it from drifting
    brown *= DBM0_RMS * 10 ** (level / 20) / np.std(brown)
    assert _digits(_int16(white)) == "" and _digits(_int16(brown)) == ""


def _speech_like(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Voiced syllables: a gliding pitch with jitter, harmonics shaped by three moving formants,
    syllable envelopes and unvoiced noise bursts between them."""
    out = []
    while sum(map(len, out)) < seconds * RATE:
        n = int(rng.uniform(0.08, 0.35) * RATE)
        t = np.arange(n) / RATE
        f0 = rng.uniform(85, 260) * (1 + rng.uniform(-0.15, 0.15) * t / t[-1])
        f0 = f0 * (1 + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(n))
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        formants = [rng.uniform(300, 900), rng.uniform(900, 2400), rng.uniform(2300, 3300)]
        x = np.zeros(n)
        for h in range(1, int(3800 / f0.max())):
            f = h * f0.mean()
            gain = sum(1 / (1 + ((f - fm) / (60 + 0.1 * fm)) ** 2) for fm in formants)
            x += gain / h**0.5 * np.sin(h * phase + rng.uniform(0, 6.3))
        env = np.sin(np.pi * t / t[-1]).clip(0) ** 0.7
        x *= env * DBM0_RMS * 10 ** (rng.uniform(-25, -8) / 20) / (np.std(x) + 1e-9)
        noise = rng.normal(0, DBM0_RMS * 10 ** (rng.uniform(-40, -25) / 20), int(0.06 * RATE))
        out += [x, noise]
    return np.concatenate(out)


def _music_like(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Chords of equal-tempered notes with decaying harmonics, avoiding DTMF-like note pairs."""
    dtmf = np.array(LOW + HIGH)
    out = []
    while sum(map(len, out)) < seconds * RATE:
        notes = 440.0 * 2 ** (rng.integers(-24, 20, int(rng.integers(2, 5))) / 12)
        partials = [(f * h, 0.6**h) for f in notes for h in range(1, 5) if f * h < 3800]
        near = [np.min(np.abs(dtmf / f - 1)) < 0.04 for f, a in partials if a > 0.2]
        if sum(near) >= 2:
            continue
        n = int(rng.uniform(0.15, 0.6) * RATE)
        t = np.arange(n) / RATE
        x = sum(a * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) for f, a in partials)
        x *= np.minimum(1, t / 0.01) * np.exp(-t / rng.uniform(0.1, 0.5))
        out.append(x * DBM0_RMS * 10 ** (rng.uniform(-25, -8) / 20) / np.max(np.abs(x)))
    return np.concatenate(out)


def test_two_tone_whistles_just_outside_the_limits_are_not_digits() -> None:
    """Pure DTMF-like pairs 3.5-5 % off, with vibrato, as a flute duet or whistling would be."""
    rng = np.random.default_rng(31)
    out = []
    for _ in range(60):
        t = np.arange(int(rng.uniform(0.1, 0.5) * RATE)) / RATE
        dev = rng.choice([-1.0, 1.0], 2) * rng.uniform(0.035, 0.05, 2)
        vibrato = 1 + 0.003 * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
        pair = (rng.choice(LOW) * (1 + dev[0]), rng.choice(HIGH) * (1 + dev[1]))
        x = sum(np.sin(2 * np.pi * np.cumsum(f * vibrato) / RATE) for f in pair)
        out += [x * DBM0_RMS * 10 ** (rng.uniform(-25, -8) / 20), np.zeros(800)]
    assert _digits(_int16(np.concatenate(out))) == ""


def test_a_train_of_short_bursts_is_not_a_digit() -> None:
    burst = _signal("8", ms=20, lead_ms=0, trail_ms=0)
    train = np.concatenate([np.zeros(800)] + [burst, np.zeros(240, dtype=np.int16)] * 10)
    assert _digits(train) == ""


@pytest.mark.parametrize("seed", [11, 12])
def test_speech_like_signals_are_not_digits(seed: int) -> None:
    assert _digits(_int16(_speech_like(np.random.default_rng(seed), 30))) == ""


@pytest.mark.parametrize("seed", [21, 22])
def test_music_like_signals_are_not_digits(seed: int) -> None:
    assert _digits(_int16(_music_like(np.random.default_rng(seed), 30))) == ""


# -- many channels, any block size, channels that come and go -----------------------------------


def _channels() -> np.ndarray:
    rng = np.random.default_rng(5)
    n = 3 * RATE
    noisy = _signal("98D", ms=90).astype(float)
    rows = [
        _signal("123A", ms=50, gap_ms=45),
        _ulaw_roundtrip(_signal("#*0", ms=70, level_dbm0=-30.0)),
        _int16(_speech_like(rng, 3)),
        np.zeros(n, dtype=np.int16),
        _alaw_roundtrip(_signal("5555", ms=40, gap_ms=40, twist_db=-6.0)),
        _int16(noisy + rng.normal(0, 300, len(noisy))),
    ]
    return np.stack([np.pad(r[:n], (0, n - len(r[:n]))) for r in rows])


def _by_channel(events: list[tuple[int, DigitEvent]], count: int) -> list[list[DigitEvent]]:
    out: list[list[DigitEvent]] = [[] for _ in range(count)]
    for ch, event in events:
        out[ch].append(event)
    return out


def test_a_block_of_channels_equals_each_channel_alone() -> None:
    block = _channels()
    det = InbandDetector(len(block))
    events = []
    for i in range(0, block.shape[1], 160):
        events += det.feed(block[:, i : i + 160])
    events += det.flush()
    together = _by_channel(events, len(block))
    for ch, row in enumerate(block):
        alone = [(d.digit, d.start, d.end) for d in detect(row, RATE)]
        assert [(e.digit, e.start, e.end) for e in together[ch]] == alone
        assert all(e.source == "inband" and e.duration is not None for e in together[ch])
    assert "".join(e.digit for e in together[0]) == "123A"
    assert "".join(e.digit for e in together[4]) == "5555"
    assert together[2] == [] and together[3] == []


def test_block_size_does_not_change_the_result() -> None:
    block = _channels()
    whole = InbandDetector(len(block))
    reference = whole.feed(block) + whole.flush()
    rng = np.random.default_rng(3)
    det = InbandDetector(len(block))
    events, i = [], 0
    while i < block.shape[1]:
        step = int(rng.choice([1, 7, 40, 159, 160, 333, 2000]))
        events += det.feed(block[:, i : i + step])
        i += step
    events += det.flush()
    assert sorted(events, key=lambda e: (e[0], e[1].start)) == sorted(
        reference, key=lambda e: (e[0], e[1].start)
    )


def test_float_blocks_are_full_scale() -> None:
    x = _signal("4")
    det = InbandDetector(1)
    events = det.feed((x / 32768.0).astype(np.float32)[None, :]) + det.flush()
    assert [e.digit for _, e in events] == ["4"]


def test_channels_come_and_go() -> None:
    det = InbandDetector(0)
    a = det.add_channel()
    assert (a, det.channels) == (0, 1)
    det.feed(np.zeros((1, 800), dtype=np.int16))
    b = det.add_channel()  # joins 0.1 s later: its clock starts now
    tone = _signal("6", ms=100, lead_ms=200, trail_ms=0)  # the tone is still on at the end
    events = det.feed(np.stack([np.zeros_like(tone), tone]))
    assert events == [] and det.pressed(b) == "6" and det.held() == {b: "6"}
    (held,) = det.remove_channel(b)
    assert held.digit == "6" and abs(held.start - 0.2) < 0.01
    assert det.channels == 2
    c = det.add_channel()  # reuses the free slot, with a fresh clock
    assert c == b
    x = _signal("B", lead_ms=300)
    events = det.feed(np.stack([np.zeros_like(x), x])) + det.flush()
    assert [(ch, e.digit) for ch, e in events] == [(c, "B")]
    assert abs(events[0][1].start - 0.3) < 0.01
    with pytest.raises(ValueError, match="no such channel"):
        det.pressed(7)


def test_free_slots_are_ignored() -> None:
    det = InbandDetector(2)
    det.remove_channel(0)
    x = _signal("2")
    events = det.feed(np.stack([x, x])) + det.flush()
    assert [(ch, e.digit) for ch, e in events] == [(1, "2")]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="block must be"):
        InbandDetector(2).feed(np.zeros((3, 160), dtype=np.int16))
    with pytest.raises(ValueError, match="rate"):
        InbandDetector(1, rate=7000)
    with pytest.raises(ValueError, match="mono"):
        detect(np.zeros((2, 2, 2)), RATE)


# -- other sample rates -------------------------------------------------------------------------


def test_wideband_detector() -> None:
    x = generate("0#7", rate=16000, tone_ms=50, gap_ms=50, lead_ms=100, trail_ms=100)
    det = InbandDetector(1, rate=16000)
    events = det.feed(x[None, :]) + det.flush()
    assert "".join(e.digit for _, e in events) == "0#7"
    assert abs(events[0][1].start - 0.1) < 0.01


@pytest.mark.parametrize("rate", [11025, 22050, 44100, 48000])
def test_detect_resamples_any_rate(rate: int) -> None:
    x = generate("19C", rate=rate, tone_ms=60, gap_ms=60, lead_ms=100, trail_ms=100)
    found = detect((x / 32768.0).astype(np.float32), rate)
    assert "".join(d.digit for d in found) == "19C"
    assert abs(found[0].start - 0.1) < 0.01 and abs(found[2].end - 0.4) < 0.01


def test_resample_keeps_a_tone_and_removes_what_is_above_the_new_nyquist() -> None:
    t = np.arange(48000) / 48000
    x = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 6000 * t)
    y = resample(x, 48000, 8000)[400:-400]
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / 8000)
    peak = spectrum[np.argmin(np.abs(freqs - 1000))]
    alias = spectrum[np.argmin(np.abs(freqs - 2000))]  # where 6 kHz would fold to
    assert len(resample(x, 48000, 8000)) == 8000
    assert 0.95 < np.sqrt(2) * np.std(y) < 1.05 and alias < peak * 1e-3
