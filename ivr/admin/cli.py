"""``ivr token create|list|revoke``: bearer tokens for the HTTP API.

``create`` prints the new token once; only its SHA-256 is stored in the database.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from ivr.admin.auth import new_token, token_hash
from ivr.config import Config, load_config
from ivr.directory import overlay
from ivr.store.sqlite import SqliteStore
from ivr.store.tokens import ApiToken


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``token create``, ``token list`` and ``token revoke`` to the main parser."""
    token = subparsers.add_parser("token", help="bearer tokens for the HTTP API")
    sub = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")

    create = sub.add_parser("create", help="create a token for a user (printed once)")
    create.add_argument("--user", required=True, metavar="EXT", help="the user's extension")
    create.add_argument(
        "--admin", action="store_true", help="admin rights (the user must be an admin)"
    )
    create.add_argument("--label", default="", help="a note: what or who the token is for")
    create.set_defaults(func=cmd_create)

    listing = sub.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--user", metavar="EXT", help="only this user's tokens")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=cmd_list)

    revoke = sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_revoke)

    for parser in (create, listing, revoke):
        parser.add_argument("--db", help="SQLite database path (default: from the config)")

    from ivr.admin import upload_cli

    upload_cli.register(subparsers)
    return token


def _fail(message: str) -> int:
    print(f"ivr: {message}", file=sys.stderr)
    return 2


def _db(args: argparse.Namespace, config: Config, *, create: bool) -> Path | None:
    db = Path(args.db) if args.db else config.store.path
    if create:
        db.parent.mkdir(parents=True, exist_ok=True)
    elif not db.exists():
        return None
    return db


def _now(config: Config) -> datetime:
    return datetime.now(config.company.tz)


def cmd_create(args: argparse.Namespace) -> int:
    """``ivr token create``: print a new token once."""
    config = load_config(args.config)
    db = _db(args, config, create=True)
    assert db is not None
    token = new_token()
    with SqliteStore(db) as store:
        live = overlay(config, store.directory.load()).config  # users added over the API too
        user = live.user(args.user)
        if user is None:
            return _fail(f"no user with extension {args.user!r} in {config.path} or the API")
        if args.admin and not user.admin:
            return _fail(f"{user.extension} is not an admin (admin = true)")
        row = store.tokens.add(
            token_hash=token_hash(token),
            user=user.extension,
            admin=args.admin,
            label=args.label,
            created_at=_now(config),
        )
    scope = "admin" if row.admin else "user"
    print(token)
    print(
        f"token {row.id} for {user.extension} {user.name} ({scope}); it is shown only now",
        file=sys.stderr,
    )
    return 0


def _row(token: ApiToken) -> dict[str, object]:
    return {
        "id": token.id,
        "user": token.user,
        "admin": token.admin,
        "label": token.label,
        "created_at": token.created_at.isoformat(),
        "revoked_at": None if token.revoked_at is None else token.revoked_at.isoformat(),
    }


def cmd_list(args: argparse.Namespace) -> int:
    """``ivr token list``: ids, users, scopes, states (never secrets)."""
    config = load_config(args.config)
    db = _db(args, config, create=False)
    if db is None:
        return _fail("no database (start the service once, or pass --db)")
    with SqliteStore(db) as store:
        tokens = store.tokens.list(args.user)
    for token in tokens:
        if args.json:
            print(json.dumps(_row(token)))
        else:
            state = "revoked" if token.revoked_at is not None else "live"
            scope = "admin" if token.admin else "user"
            created = token.created_at.strftime("%Y-%m-%d %H:%M")
            print(f"{token.id}\t{token.user}\t{scope}\t{state}\t{created}\t{token.label}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """``ivr token revoke ID``."""
    config = load_config(args.config)
    db = _db(args, config, create=False)
    if db is None:
        return _fail("no database (start the service once, or pass --db)")
    with SqliteStore(db) as store:
        done = store.tokens.revoke(args.id, _now(config))
    if not done:
        return _fail(f"no live token with id {args.id}")
    print(f"token {args.id} revoked")
    return 0
