"""G.711 against a scalar transcription of the ITU-T reference (G.191 STL g711.c)."""

from __future__ import annotations

import numpy as np
import pytest

from ivr.media import g711


def ref_ulaw_compress(lin: int) -> int:
    absno = ((~lin) >> 2) + 33 if lin < 0 else (lin >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i:
        segno += 1
        i >>= 1
    high = 0x08 - segno
    low = 0x0F - ((absno >> segno) & 0x0F)
    code = (high << 4) | low
    return code | 0x80 if lin >= 0 else code


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_compress(lin: int) -> int:
    ix = (~lin) >> 4 if lin < 0 else lin >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if lin >= 0:
        ix |= 0x80
    return ix ^ 0x55


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0x0F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x08
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)

LAWS = [
    pytest.param(g711.ulaw_encode, g711.ulaw_decode, ref_ulaw_compress, ref_ulaw_expand, id="ulaw"),
    pytest.param(g711.alaw_encode, g711.alaw_decode, ref_alaw_compress, ref_alaw_expand, id="alaw"),
]


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), LAWS)
def test_decode_matches_reference_for_all_256_codes(encode, decode, ref_encode, ref_decode):
    expected = [ref_decode(c) for c in range(256)]
    assert decode(ALL_CODES).tolist() == expected
    assert decode(bytes(range(256))).tolist() == expected


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), LAWS)
def test_encode_matches_reference_for_all_65536_inputs(encode, decode, ref_encode, ref_decode):
    expected = [ref_encode(x) for x in range(-32768, 32768)]
    assert encode(ALL_SAMPLES).tolist() == expected


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), LAWS)
def test_code_round_trip(encode, decode, ref_encode, ref_decode):
    back = encode(decode(ALL_CODES))
    if encode is g711.ulaw_encode:
        # 0x7F is μ-law's "negative zero": it decodes to 0, which encodes as 0xFF
        assert back[0x7F] == 0xFF
        back[0x7F] = 0x7F
    assert back.tolist() == ALL_CODES.tolist()


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), LAWS)
def test_quantisation_is_monotonic_and_symmetric(encode, decode, ref_encode, ref_decode):
    y = decode(encode(ALL_SAMPLES)).astype(np.int32)
    assert np.all(np.diff(y) >= 0)
    # one's complement input: x < 0 lands in the mirror image of -1 - x
    negative = ALL_SAMPLES[:32768].astype(np.int32)
    mirrored = (-1 - negative).astype(np.int16)
    y_neg = decode(encode(negative.astype(np.int16))).astype(np.int32)
    assert np.array_equal(y_neg, -decode(encode(mirrored)).astype(np.int32))


def test_known_values():
    # the G.711 end points and the codes around zero
    assert g711.ulaw_decode(bytes([0x00, 0x80, 0xFF, 0x7F, 0xFE])).tolist() == [
        -32124,
        32124,
        0,
        0,
        8,
    ]
    assert g711.alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]
    assert g711.ulaw_encode(np.array([0, -1, 32767, -32768], dtype=np.int16)).tolist() == [
        0xFF,
        0x7F,
        0x80,
        0x00,
    ]
    assert g711.alaw_encode(np.array([0, -1, 32767, -32768], dtype=np.int16)).tolist() == [
        0xD5,
        0x55,
        0xAA,
        0x2A,
    ]


def test_quantisation_error_is_within_half_a_step():
    for encode, decode, clip in (
        (g711.ulaw_encode, g711.ulaw_decode, 32124),
        (g711.alaw_encode, g711.alaw_decode, 32256),
    ):
        x = ALL_SAMPLES.astype(np.int32)
        err = np.abs(decode(encode(ALL_SAMPLES)).astype(np.int32) - x)
        inside = np.abs(x) <= clip
        # the largest step is 1024 in both laws: at most half a step off
        assert err[inside].max() <= 512
        # the smallest steps are 8 (μ-law) and 16 (A-law)
        small = np.abs(x) < 64
        assert err[small].max() <= 8


def test_shapes_and_generic_api():
    block = np.zeros((3, 160), dtype=np.int16)
    assert g711.ulaw_encode(block).shape == (3, 160)
    assert g711.alaw_decode(np.zeros((2, 5), dtype=np.uint8)).shape == (2, 5)
    pcm = np.array([1000, -1000, 0], dtype=np.int16)
    for codec in ("PCMU", "pcma"):
        data = g711.encode(codec, pcm)
        assert isinstance(data, bytes) and len(data) == 3
        assert np.abs(g711.decode(codec, data).astype(int) - pcm).max() <= 32
    assert g711.encode("PCMU", [0, 0]) == bytes([0xFF, 0xFF])
    assert g711.encode("PCMA", np.zeros(2, dtype=np.int16)) == bytes([0xD5, 0xD5])
    assert g711.decode("PCMU", bytes([g711.SILENCE["PCMU"]])).tolist() == [0]


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="unsupported codec"):
        g711.encode("G729", [0])
    with pytest.raises(TypeError):
        g711.ulaw_encode(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="int16 range"):
        g711.ulaw_encode(np.array([40000]))
    with pytest.raises(TypeError):
        g711.ulaw_decode(np.zeros(3, dtype=np.int16))
