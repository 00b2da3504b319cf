"""``ivr dtmf detect`` and ``ivr dtmf generate``: the DTMF commands of the main CLI.

Audio files are read and written with soundfile, imported when a command runs so that the
package itself stays stdlib + numpy.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ivr.dtmf.events import DIGITS
from ivr.dtmf.generate import generate
from ivr.dtmf.inband import detect


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``dtmf detect`` and ``dtmf generate`` to the main parser's subparsers."""
    dtmf = subparsers.add_parser("dtmf", help="detect or generate DTMF tones in audio files")
    dtmf.set_defaults(func=lambda _args: _usage(dtmf))
    sub = dtmf.add_subparsers(title="commands", metavar="COMMAND")

    det = sub.add_parser("detect", help="list the DTMF digits in audio files")
    det.add_argument("files", nargs="+", metavar="FILE", help="any format soundfile reads")
    det.add_argument("--json", action="store_true", help="one JSON object per line and file")
    det.set_defaults(func=cmd_detect)

    gen = sub.add_parser("generate", help="write DIGITS as DTMF tones to a WAV file")
    gen.add_argument("digits", metavar="DIGITS", type=_digits, help=f"characters of {DIGITS}")
    gen.add_argument("-o", "--output", required=True, metavar="FILE.wav")
    gen.add_argument("--rate", type=int, default=8000, help="sample rate in Hz (8000)")
    gen.add_argument("--tone-ms", type=float, default=100, help="tone length (100)")
    gen.add_argument("--gap-ms", type=float, default=100, help="pause between digits (100)")
    gen.add_argument("--level", type=float, default=-10, help="level per tone in dBm0 (-10)")
    gen.add_argument("--twist", type=float, default=0, help="high minus low group in dB (0)")
    gen.add_argument(
        "--offset", type=float, default=0.0, help="frequency offset of both tones in %% (0)"
    )
    gen.add_argument("--lead-ms", type=float, default=100, help="silence before (100)")
    gen.add_argument("--trail-ms", type=float, default=100, help="silence after (100)")
    gen.set_defaults(func=cmd_generate)
    return dtmf


def cmd_detect(args: argparse.Namespace) -> int:
    """Print the digits of each file; a file that cannot be read is reported on stderr."""
    import soundfile

    status = 0
    for path in args.files:
        try:
            samples, rate = soundfile.read(path, dtype="float64", always_2d=True)
        except (OSError, RuntimeError, ValueError) as exc:  # soundfile.LibsndfileError et al.
            print(f"ivr dtmf detect: {path}: {_reason(exc)}", file=sys.stderr)
            status = 1
            continue
        found = detect(samples.mean(axis=1), rate) if len(samples) else []
        digits = [{"digit": d.digit, "start": d.start, "end": d.end} for d in found]
        if args.json:
            print(json.dumps({"file": path, "digits": digits}))
        else:
            spans = ", ".join(f"{d.digit} {d.start:.3f}-{d.end:.3f} s" for d in found)
            text = "".join(d.digit for d in found) or "(no digits)"
            print(f"{path}: {text}" + (f"  [{spans}]" if spans else ""))
    return status


def cmd_generate(args: argparse.Namespace) -> int:
    """Write the tones to ``args.output`` as 16-bit PCM."""
    import soundfile

    try:
        samples = generate(
            args.digits,
            rate=args.rate,
            tone_ms=args.tone_ms,
            gap_ms=args.gap_ms,
            level_dbm0=args.level,
            twist_db=args.twist,
            freq_offset_pct=args.offset,
            lead_ms=args.lead_ms,
            trail_ms=args.trail_ms,
        )
        soundfile.write(args.output, samples, args.rate, subtype="PCM_16")
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"ivr dtmf generate: {args.output}: {_reason(exc)}", file=sys.stderr)
        return 1
    return 0


def _digits(text: str) -> str:
    bad = sorted({c for c in text.upper() if c not in DIGITS})
    if not text or bad:
        raise argparse.ArgumentTypeError(f"DIGITS must be characters of {DIGITS}, got {text!r}")
    return text.upper()


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print("ivr dtmf: choose a command: detect or generate", file=sys.stderr)
    return 2
