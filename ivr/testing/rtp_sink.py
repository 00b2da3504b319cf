"""A UDP receiver standing in for a phone's RTP port, and speech-frame counting."""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ivr.media import g711
from ivr.media.prompts import PromptLibrary

SILENT = frozenset({0xD5, 0xFF, 0x55, 0x7F})  # G.711 codes at (or next to) zero
PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
_CODECS = {0: "PCMU", 8: "PCMA"}


@dataclass(frozen=True, slots=True)
class Packet:
    """One received RTP packet: wall-clock arrival, source, header fields, payload."""

    at: float
    source: tuple[str, int]
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes

    @property
    def speech(self) -> bool:
        return bool(set(self.payload) - SILENT)


@dataclass
class RtpSink:
    """Collects every RTP packet (12 bytes or more) sent to ``port`` on ``host``."""

    host: str = "127.0.0.1"
    packets: list[Packet] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            if len(data) >= 12:
                _, pt, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
                packet = Packet(time.time(), source, pt & 0x7F, seq, ts, ssrc, data[12:])
                self.packets.append(packet)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def ssrcs(self) -> set[int]:
        return {p.ssrc for p in self.packets}

    def speech_frames(self) -> int:
        """Packets that carry sound (not idle silence)."""
        return sum(1 for p in self.packets if p.speech)

    def speech_payloads(self, payload_type: int, silent: frozenset[int]) -> list[bytes]:
        """Payloads of ``payload_type`` packets with a byte outside ``silent``."""
        return [
            p.payload
            for p in self.packets
            if p.payload and p.payload_type == payload_type and set(p.payload) - silent
        ]

    def audio(self) -> npt.NDArray[np.float64]:
        """The G.711 audio received, in arrival order, as floats."""
        chunks = [
            g711.decode(_CODECS[p.payload_type], p.payload)
            for p in self.packets
            if p.payload_type in _CODECS
        ]
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return pcm.astype(np.float64) / 32768.0


def speech_frames_of(
    words: list[str], lang: str = "sv", codec: str = "PCMA", prompts: Path = PROMPTS
) -> int:
    """How many 20 ms frames of the prompt sequence carry sound (as ``speech_frames`` counts)."""
    library = PromptLibrary(prompts)
    audio = b"".join(library.encoded(lang, w, codec) for w in words)
    return sum(1 for i in range(0, len(audio), 160) if set(audio[i : i + 160]) - SILENT)
