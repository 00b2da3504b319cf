"""G.711 μ-law (PCMU) and A-law (PCMA) through numpy lookup tables.

Encoding indexes a 65536-entry table with the 16-bit sample reinterpreted as
``uint16``; decoding indexes a 256-entry ``int16`` table. Both follow the ITU-T
G.711 segment algorithm as written in the ITU's reference software (G.191 STL):
negative samples are taken in one's complement so the quantiser is symmetric,
μ-law uses the 14 most significant bits and A-law the 13 most significant bits.
Pure: numpy only. Works on arrays of any shape.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "CODECS",
    "PAYLOAD_TYPES",
    "SILENCE",
    "alaw_decode",
    "alaw_encode",
    "decode",
    "encode",
    "ulaw_decode",
    "ulaw_encode",
]

PAYLOAD_TYPES: Final[dict[str, int]] = {"PCMU": 0, "PCMA": 8}
"""Static RTP payload types (RFC 3551)."""
CODECS: Final[tuple[str, ...]] = ("PCMU", "PCMA")
SILENCE: Final[dict[str, int]] = {"PCMU": 0xFF, "PCMA": 0xD5}
"""The code that decodes to zero (μ-law) or to the smallest positive level (A-law)."""

_BytesLike = bytes | bytearray | memoryview


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its uint16 bit pattern (the table index)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _ones_complement_magnitude(x: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    return np.where(x < 0, ~x, x)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    x = _all_int16()
    mag = np.minimum((_ones_complement_magnitude(x) >> 2) + 33, 0x1FFF)
    # segment number 1..8: bit length of (mag >> 6), plus one
    seg = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), mag) + 1
    low = 0x0F - ((mag >> seg) & 0x0F)
    code = ((8 - seg) << 4) | low
    code = np.where(x >= 0, code | 0x80, code)
    return code.astype(np.uint8)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32)
    inv = ~code & 0xFF
    exponent = (inv >> 4) & 0x07
    mantissa = inv & 0x0F
    step = 4 << (exponent + 1)
    mag = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    return np.where(code < 0x80, -mag, mag).astype(np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x = _all_int16()
    ix = _ones_complement_magnitude(x) >> 4  # 0..2047
    # segment 0 for ix <= 15, else the bit length of ix minus 4 (1..7)
    ends = np.array([0x0F, 0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF])
    seg = np.searchsorted(ends, ix)
    mant = np.where(seg == 0, ix, (ix >> np.maximum(seg - 1, 0)) - 16)
    code = (seg << 4) | mant
    code = np.where(x >= 0, code | 0x80, code) ^ 0x55
    return code.astype(np.uint8)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32)
    ix = (code ^ 0x55) & 0x7F
    exp = ix >> 4
    mant = ix & 0x0F
    mant = np.where(exp > 0, mant + 16, mant)
    mag = (mant << 4) + 8
    mag = np.where(exp > 1, mag << np.maximum(exp - 1, 0), mag)
    return np.where(code > 127, mag, -mag).astype(np.int16)


_ULAW_ENC: Final = _build_ulaw_encode()
_ULAW_DEC: Final = _build_ulaw_decode()
_ALAW_ENC: Final = _build_alaw_encode()
_ALAW_DEC: Final = _build_alaw_decode()
for _table in (_ULAW_ENC, _ULAW_DEC, _ALAW_ENC, _ALAW_DEC):
    _table.flags.writeable = False


def _as_index(pcm: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    arr = np.asarray(pcm)
    if arr.dtype != np.int16:
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"G.711 encodes int16 samples, got {arr.dtype}")
        if arr.size and (arr.min() < -32768 or arr.max() > 32767):
            raise ValueError("sample out of int16 range")
        arr = arr.astype(np.int16)
    return arr.view(np.uint16)


def _as_codes(data: _BytesLike | npt.ArrayLike) -> npt.NDArray[np.uint8]:
    if isinstance(data, bytes | bytearray | memoryview):
        return np.frombuffer(data, dtype=np.uint8)
    arr = np.asarray(data)
    if arr.dtype != np.uint8:
        raise TypeError(f"G.711 decodes uint8 codes, got {arr.dtype}")
    return arr


def ulaw_encode(pcm: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """int16 samples (any shape) → μ-law codes of the same shape."""
    return _ULAW_ENC[_as_index(pcm)]


def ulaw_decode(codes: _BytesLike | npt.ArrayLike) -> npt.NDArray[np.int16]:
    """μ-law codes (bytes or a uint8 array of any shape) → int16 samples."""
    return _ULAW_DEC[_as_codes(codes)]


def alaw_encode(pcm: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """int16 samples (any shape) → A-law codes of the same shape."""
    return _ALAW_ENC[_as_index(pcm)]


def alaw_decode(codes: _BytesLike | npt.ArrayLike) -> npt.NDArray[np.int16]:
    """A-law codes (bytes or a uint8 array of any shape) → int16 samples."""
    return _ALAW_DEC[_as_codes(codes)]


def _codec(name: str) -> str:
    upper = name.upper()
    if upper not in PAYLOAD_TYPES:
        raise ValueError(f"unsupported codec {name!r} (expected PCMU or PCMA)")
    return upper


def encode(codec: str, pcm: npt.ArrayLike) -> bytes:
    """Encode int16 samples with ``codec`` ("PCMU" or "PCMA") to payload bytes."""
    table = _ULAW_ENC if _codec(codec) == "PCMU" else _ALAW_ENC
    return table[_as_index(pcm)].tobytes()


def decode(codec: str, data: _BytesLike | npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Decode ``codec`` payload bytes (or a uint8 array) to int16 samples."""
    table = _ULAW_DEC if _codec(codec) == "PCMU" else _ALAW_DEC
    return table[_as_codes(data)]
