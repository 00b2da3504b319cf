"""``ivr serve``: logging, the reactor, clean shutdown on SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import gc
import resource
import sys
from typing import Any

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from ivr.config import Config


def _observer(level: str) -> Any:
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    return FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])


def raise_open_file_limit() -> None:
    """Every call holds an RTP socket: use the hard limit of open files, not the soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(config: Config, args: argparse.Namespace) -> int:
    """Start the service and run the reactor until a signal stops it."""
    from twisted.internet import reactor

    from ivr.app import Overrides, start

    globalLogBeginner.beginLoggingTo([_observer(args.log_level)], redirectStandardIO=False)
    overrides = Overrides(
        sip_host=args.sip_host,
        sip_port=args.sip_port,
        http_host=args.http_host,
        http_port=args.http_port,
        rtp_ports=args.rtp_ports,
        db=args.db,
        auth_algorithms=args.auth_algorithms,
        auth_uri_check=args.auth_uri_check,
    )
    outcome: dict[str, Any] = {"code": 0}

    def started(service: Any) -> None:
        reactor.addSystemEventTrigger("before", "shutdown", service.stop)
        gc.collect()
        gc.freeze()  # startup objects (config, prompts) leave the collector's generations

    def failed(failure: Any) -> None:
        print(f"ivr: cannot start: {failure.getErrorMessage()}", file=sys.stderr)
        outcome["code"] = 1
        reactor.stop()

    def boot() -> None:
        d = start(reactor, config, overrides)
        d.addCallbacks(started, failed)

    raise_open_file_limit()
    reactor.callWhenRunning(boot)
    reactor.run()
    return int(outcome["code"])
