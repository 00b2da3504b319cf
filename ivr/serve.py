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
from ivr.logs import set_level

# SIP keeps every completed transaction for 32 s (Timers J/H/K absorb retransmissions), so
# under load ~10^5 live objects sit in the oldest generation: with the default thresholds
# the collector rescans them every few seconds (a 300-500 ms stall at 1,000 REGISTERs/s,
# enough for peers to retransmit). They die by reference counting, not as cycles: collect
# the young generation a little less often, the middle one often enough to keep its pauses
# short, and the old one rarely; a full collection every FULL_GC_INTERVAL bounds what
# cyclic garbage (Twisted failures, generator frames) can pile up meanwhile.
GC_THRESHOLDS = (3000, 10, 1000)
FULL_GC_INTERVAL = 300.0


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
    from twisted.internet import reactor, task

    from ivr.app import Overrides, start

    set_level(args.log_level)  # lines below it are dropped before they are built
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
        gc.set_threshold(*GC_THRESHOLDS)
        full_gc = task.LoopingCall(gc.collect)
        full_gc.clock = reactor
        full_gc.start(FULL_GC_INTERVAL, now=False)

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
