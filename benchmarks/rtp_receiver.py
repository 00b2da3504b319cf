"""RTP capture process for the benchmarks: one UDP port, every stream, per-SSRC statistics.

Binds ``--host``:``--port`` (0 picks one), prints ``READY <host> <port>`` and records the
12-byte RTP header and the kernel's arrival time (``SO_TIMESTAMPNS``, so the receiver's own
scheduling does not count as the sender's jitter) of every datagram, until SIGTERM/SIGINT or
``--deadline`` seconds. Then it writes a JSON summary to ``--out``: per-stream loss (sequence
gaps), frames the sender skipped (RTP timestamp gaps without a sequence gap), inter-arrival
jitter as |Δarrival − frame interval| percentiles, the peak number of streams active at once
(a stream is active from its first to its last packet; ``--settle`` leaves a start-up
transient out of loss and jitter), and the datagrams the kernel dropped
because this receiver fell behind (``SO_RXQ_OVFL``).

    python -m benchmarks.rtp_receiver --port 0 --deadline 30 --out summary.json

:class:`ReceiverProcess` starts it from another benchmark and collects the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Linux values; Python's socket module does not export them
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
HEADER = 12
RECORD = HEADER + 16  # RTP header, then the arrival time as (seconds, nanoseconds)
_TIMESPEC = struct.Struct("=qq")
_CHECK_EVERY = 1 << 14


class _Stop(Exception):
    """Raised by the signal handler to leave the capture loop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def open_socket(host: str, port: int, rcvbuf: int) -> tuple[socket.socket, bool]:
    """A non-blocking UDP socket with a large buffer; True when kernel timestamps work."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)  # root: above rmem_max
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    kernel_time = True
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        kernel_time = False
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock, kernel_time


def capture(
    sock: socket.socket, deadline: float, poll: float = 0.002
) -> tuple[bytearray, int, int]:
    """Records until stopped or ``deadline`` (monotonic); returns (records, drops, short).

    An empty socket is looked at again after ``poll`` seconds."""
    records = bytearray()
    drops = short = 0
    anc_size = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(4)
    recvmsg = sock.recvmsg
    clock = time.time_ns
    pack = _TIMESPEC.pack
    count = 0
    try:
        while True:
            try:
                data, anc, _flags, _addr = recvmsg(64, anc_size)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                # Poll, don't wait on the socket: a receiver asleep in select() is woken
                # by every datagram, and on loopback the sender's CPU pays for each wake-up
                # (measured: a tick of 2,000 packets took ~20 ms instead of ~10 ms). The
                # kernel timestamps arrival whether or not anyone waits.
                time.sleep(poll)
                continue
            if len(data) < HEADER:
                short += 1
                continue
            records += data[:HEADER]
            stamp = None
            for _level, kind, value in anc:
                if kind == SO_TIMESTAMPNS and len(value) == 16:
                    stamp = value
                elif kind == SO_RXQ_OVFL:
                    drops = int.from_bytes(value[:4], sys.byteorder)
            if stamp is None:
                now = clock()
                stamp = pack(now // 1_000_000_000, now % 1_000_000_000)
            records += stamp
            count += 1
            if count % _CHECK_EVERY == 0 and time.monotonic() >= deadline:
                break
    except _Stop:
        pass
    if len(records) % RECORD:
        del records[len(records) - len(records) % RECORD :]  # a signal between the two parts
    return records, drops, short


def summarize(
    records: bytes, frame_ms: float, settle_s: float = 0.0, sample_rate: int = 8000
) -> dict[str, Any]:
    """Per-stream loss, skipped frames, jitter percentiles and peak concurrency.

    Loss, skipped frames and jitter count only packet pairs whose first packet arrived
    ``settle_s`` or more after the first packet of the capture (a start-up transient).
    """
    import numpy as np

    dtype = np.dtype(
        [
            ("b0", "u1"),
            ("pt", "u1"),
            ("seq", ">u2"),
            ("ts", ">u4"),
            ("ssrc", ">u4"),
            ("sec", "=i8"),
            ("nsec", "=i8"),
        ]
    )
    rows = np.frombuffer(records, dtype=dtype)
    rows = rows[(rows["b0"] >> 6) == 2]  # RTP version 2 only
    out: dict[str, Any] = {"packets": len(rows)}
    if len(rows) == 0:
        empty = {"p50": None, "p99": None, "max": None}
        out.update(streams=0, lost=0, streams_with_loss=0, skipped=0, duplicates=0)
        out.update(reordered=0, peak_streams=0, seconds=0.0, jitter_ms=empty)
        return out
    arrival = rows["sec"].astype(np.int64) * 1_000_000_000 + rows["nsec"].astype(np.int64)
    order = np.lexsort((arrival, rows["ssrc"]))  # by stream, then arrival
    ssrc = rows["ssrc"][order]
    seq = rows["seq"][order].astype(np.int64)
    ts = rows["ts"][order].astype(np.int64)
    arr = arrival[order]
    same = ssrc[1:] == ssrc[:-1]
    counted = same & (arr[:-1] >= arrival.min() + round(settle_s * 1e9))
    dseq = (seq[1:] - seq[:-1]) % 65536
    frame_samples = round(sample_rate * frame_ms / 1000)
    dframes = ((ts[1:] - ts[:-1]) % (1 << 32)) / frame_samples
    forward = counted & (dseq >= 1) & (dseq < 32768)
    lost = int(np.sum(np.where(forward, dseq - 1, 0)))
    skipped = int(np.sum(np.where(forward, np.maximum(np.rint(dframes) - dseq, 0), 0)))
    duplicates = int(np.sum(counted & (dseq == 0)))
    reordered = int(np.sum(counted & (dseq >= 32768)))
    jitter = np.abs((arr[1:] - arr[:-1])[counted] / 1e6 - frame_ms)
    starts = np.flatnonzero(np.r_[True, ~same])
    ends = np.r_[starts[1:] - 1, len(ssrc) - 1]
    first, last = arr[starts], arr[ends]
    times = np.r_[first, last]
    steps = np.r_[np.ones(len(first), np.int64), -np.ones(len(last), np.int64)]
    sweep = np.lexsort((-steps, times))  # at equal times, count the start first
    peak = int(np.max(np.cumsum(steps[sweep])))
    stream_of_pair = np.cumsum(~same)  # pair i joins rows i and i+1
    per_stream_lost = np.bincount(stream_of_pair[forward], weights=(dseq - 1)[forward])
    out.update(
        streams=len(starts),
        lost=lost,
        streams_with_loss=int(np.sum(per_stream_lost > 0)),
        skipped=skipped,
        duplicates=duplicates,
        reordered=reordered,
        peak_streams=peak,
        seconds=float((arr.max() - arr.min()) / 1e9),
        settle_s=settle_s,
        jitter_ms={
            "p50": float(np.percentile(jitter, 50)) if len(jitter) else None,
            "p99": float(np.percentile(jitter, 99)) if len(jitter) else None,
            "max": float(np.max(jitter)) if len(jitter) else None,
        },
    )
    return out


class ReceiverProcess:
    """This module running in a child process; :meth:`stop` returns its summary."""

    def __init__(
        self, workdir: Path, deadline: float, settle: float = 0.0, host: str = "127.0.0.1"
    ) -> None:
        self.out = workdir / f"rtp-{time.monotonic_ns()}.json"
        cmd = [sys.executable, "-m", "benchmarks.rtp_receiver", "--host", host, "--port", "0"]
        cmd += ["--deadline", f"{deadline:g}", "--settle", f"{settle:g}", "--out", str(self.out)]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"RTP receiver did not start: {line!r}")
        _, self.host, port = line.split()
        self.port = int(port)

    def stop(self, timeout: float = 120.0) -> dict[str, Any]:
        """SIGTERM, then wait for the summary (analysing a big capture takes a while)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("RTP receiver did not finish its summary") from None
        if self.proc.returncode != 0 or not self.out.exists():
            raise RuntimeError(f"RTP receiver exited {self.proc.returncode} without a summary")
        return dict(json.loads(self.out.read_text()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=60.0, help="stop after this many s")
    parser.add_argument("--frame-ms", type=float, default=20.0, help="expected packet interval")
    parser.add_argument("--settle", type=float, default=0.0, help="s of start-up not counted")
    parser.add_argument("--rcvbuf", type=int, default=64 << 20, help="socket buffer, bytes")
    parser.add_argument("--out", type=Path, required=True, help="where the JSON summary goes")
    parser.add_argument("--raw", type=Path, help="also keep the 28-byte records here")
    args = parser.parse_args(argv)
    if not 0 < args.deadline <= 3600:
        parser.error("--deadline must be in (0, 3600] seconds")

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    sock, kernel_time = open_socket(args.host, args.port, args.rcvbuf)
    host, port = sock.getsockname()[:2]
    print(f"READY {host} {port}", flush=True)
    cpu0, wall0 = time.process_time(), time.monotonic()
    records, drops, short = capture(sock, wall0 + args.deadline)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    sock.close()
    if args.raw is not None:
        args.raw.write_bytes(records)
    summary = summarize(bytes(records), args.frame_ms, args.settle)
    summary.update(
        receiver_drops=drops,
        short_datagrams=short,
        kernel_timestamps=kernel_time,
        receiver_cpu_s=cpu,
        receiver_wall_s=wall,
    )
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
