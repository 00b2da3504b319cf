"""DTMF: RFC 4733 telephone events, SIP INFO relay, in-band detection, generation and merging.

Pure code (stdlib and numpy); the audio file commands live in :mod:`ivr.dtmf.cli`.
"""

from ivr.dtmf.events import DIGITS, DigitEvent
from ivr.dtmf.generate import generate, tone_pair
from ivr.dtmf.inband import Detection, InbandDetector, detect, detect_for_score, resample
from ivr.dtmf.info import CONTENT_TYPES, InfoBodyError, parse_info
from ivr.dtmf.merge import DigitMerger
from ivr.dtmf.rfc4733 import (
    Packet,
    PayloadError,
    TelephoneEventReceiver,
    encode_digit,
    parse_payload,
)

__all__ = [
    "CONTENT_TYPES",
    "DIGITS",
    "Detection",
    "DigitEvent",
    "DigitMerger",
    "InbandDetector",
    "InfoBodyError",
    "Packet",
    "PayloadError",
    "TelephoneEventReceiver",
    "detect",
    "detect_for_score",
    "encode_digit",
    "generate",
    "parse_info",
    "parse_payload",
    "resample",
    "tone_pair",
]
