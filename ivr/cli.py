"""The ``ivr`` command line: ``ivr serve``, ``ivr profile show``, ``ivr dtmf ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ivr.config import Config, ConfigError, ConfigErrors, load_config

DEFAULT_CONFIG = Path("config/ivr.toml")


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH, got {text!r}") from None
    if not sep or not 1024 <= lo < hi <= 65535:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH within 1024-65535, got {text!r}")
    return lo, hi


def _algorithms(text: str) -> tuple[str, ...]:
    names = tuple(part.strip().upper() for part in text.split(",") if part.strip())
    if not names or len(set(names)) != len(names) or not set(names) <= {"SHA-256", "MD5"}:
        raise argparse.ArgumentTypeError(f"expected SHA-256 and/or MD5, comma-separated: {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config file")
    sub = parser.add_subparsers(dest="command", required=True)

    # `--config` may also come after the command (`ivr serve --config FILE`): there it
    # overrides the one before it, and leaves it alone when absent
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="config file")

    serve = sub.add_parser("serve", help="run the SIP feature server", parents=[after])
    serve.add_argument("--sip-host", help="SIP bind address (IPv4 or IPv6)")
    serve.add_argument("--sip-port", type=_port, help="SIP port (UDP and TCP); 0 picks one")
    serve.add_argument("--http-host", help="HTTP bind address")
    serve.add_argument("--http-port", type=_port, help="HTTP port; 0 picks one")
    serve.add_argument("--rtp-ports", type=_port_range, help="RTP port range LOW-HIGH")
    serve.add_argument("--db", help="SQLite database path")
    serve.add_argument(
        "--auth-algorithms",
        type=_algorithms,
        help="digest challenge order, e.g. MD5,SHA-256 for UAs that read only the first",
    )
    serve.add_argument(
        "--auth-uri-check",
        choices=["strict", "server"],
        help="digest uri: the Request-URI only (strict), or also the server's own address",
    )
    serve.add_argument(
        "--trunk",
        metavar="URI",
        help="outbound trunk peer, e.g. sip:192.0.2.10:5060 (overrides [trunk] peer)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warn", "error"])
    serve.set_defaults(func=_serve)

    profile = sub.add_parser("profile", help="users' profiles")
    profile_sub = profile.add_subparsers(dest="profile_command", required=True)
    show = profile_sub.add_parser("show", help="the active profile of a user", parents=[after])
    show.add_argument("extension")
    show.add_argument("--db", help="SQLite database path (default: from the config)")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(func=_profile_show)

    from ivr.dtmf import cli as dtmf_cli

    dtmf_cli.register(sub)

    from ivr.admin import cli as admin_cli

    admin_cli.register(sub)

    return parser


def _serve(args: argparse.Namespace) -> int:
    from ivr.serve import run

    config = load_config(args.config)
    if args.trunk:
        config = _with_trunk(config, args.trunk)
    return run(config, args)


def _with_trunk(config: Config, uri: str) -> Config:
    """``config`` with its trunk peer replaced (a config without one gets a trunk that
    allows no forward targets)."""
    from dataclasses import replace

    from ivr.trunk import Trunk, parse_peer

    try:
        host, port, transport = parse_peer(uri)
    except ValueError as exc:
        raise CliError(f"--trunk: {exc}") from None
    if config.trunk is None:
        return replace(config, trunk=Trunk(host=host, port=port, transport=transport))
    return replace(config, trunk=replace(config.trunk, host=host, port=port, transport=transport))


def _profile_show(args: argparse.Namespace) -> int:
    import json
    from datetime import datetime

    from ivr.directory import overlay
    from ivr.profile_service import effective_json
    from ivr.routing.profiles import effective, expire
    from ivr.store.sqlite import SqliteStore

    config = load_config(args.config)
    db = Path(args.db) if args.db else config.store.path
    if db.exists():  # the live directory: the file plus changes made over the API
        with SqliteStore(db) as store:
            config = overlay(config, store.directory.load()).config
    user = config.user(args.extension)
    if user is None:
        raise CliError(f"no user with extension {args.extension!r} in {config.path}")
    if not db.exists():
        raise CliError(f"no database at {db} (start the service once, or pass --db)")
    now = datetime.now(config.company.tz)
    with SqliteStore(db) as store:
        state = store.states.get(user.extension)
    found = effective(expire(state, now), user.schedules, now, config.rules)
    view = effective_json(found, user.language)
    if args.json:
        print(json.dumps({"extension": user.extension, **view}, ensure_ascii=False))
    else:
        described = found.describe(now, config.rules.calendar, user.language)
        print(f"{user.extension} {user.name}: {described}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigErrors as exc:  # every bad key of the file, one line each
        for error in exc.errors:
            print(f"ivr: {error}", file=sys.stderr)
        return 2
    except (ConfigError, CliError) as exc:
        print(f"ivr: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
