"""``botc soak``: the whole marketplace for simulated business days, invariants checked."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "soak",
        help="run the whole marketplace for simulated days and check its invariants",
        description=(
            "Run every peer headless (as botc up does) for N simulated business days with a "
            "client population that behaves like a market: most clients pay on time, some "
            "late (within the margin cure period), a few are designed to fail (the bank "
            "gives them too little money); clients withdraw some RFQs and probe the chain "
            "with accepts of expired quotes. Mid-run one authority is SIGKILLed after "
            "several state snapshots (the supervisor restarts it). Checked as it runs and at "
            "the end: chain_verifies, no_solvent_default, chain_progress, bank_conserves, "
            "no_error_logs, no_bad_trades, views_match_chain, memory_bounded. Without --net "
            "a fresh network in a temporary directory (removed afterwards unless --keep). "
            "Prints a report (--json: one JSON object with ok, violations [{invariant, "
            "height, ids, detail}], days, trades, defaults [{member, cause, ...}], height, "
            "restarts, tx_per_s, finality_p50_ms, finality_p99_ms, rss_mb {peer: {start, "
            "end}}, ...). Exit 0 when every invariant holds, 1 when one is broken, 2 for bad "
            "input; Ctrl-C or SIGTERM stops every process it started and still prints the "
            "report so far (interrupted: true; exit 130 unless a violation was found)."
        ),
    )
    parser.add_argument("--net", default=None, metavar="NETDIR", help="network directory")
    parser.add_argument("--days", type=int, default=3, help="simulated business days (3)")
    parser.add_argument(
        "--day-seconds", type=float, default=20.0, help="seconds per simulated day (20)"
    )
    parser.add_argument("--clients", type=int, default=3, help="simulated clients (3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--rate", type=float, default=2.0, help="RFQs per second over all (2)")
    parser.add_argument("--no-kill", action="store_true", help="do not SIGKILL an authority")
    parser.add_argument("--keep", action="store_true", help="keep the fresh network's directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json
    import signal
    import sys
    import threading
    from pathlib import Path

    from peers.errors import CliError
    from peers.logging import configure_logging
    from peers.netdir import NetDir
    from peers.soak import (
        Soak,
        SoakConfig,
        SoakError,
        check_bad_input,
        fresh_network,
        human_report,
        remove_network,
    )

    config = SoakConfig(
        days=args.days,
        day_seconds=args.day_seconds,
        clients=args.clients,
        seed=args.seed,
        rate=args.rate,
        kill=not args.no_kill,
    )
    problem = check_bad_input(config)
    if problem is not None:
        raise CliError(problem)
    root = None
    if args.net is not None:
        net = NetDir(Path(args.net))
        net.genesis()  # not a network: one line, exit 2
    else:
        net, root = fresh_network(config.clients)
    try:
        if args.log_file is None:
            configure_logging(args.log_level, net.path / "logs" / "soak.log")
        stop = threading.Event()

        def interrupt(signum: int, frame: object) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}

        def say(text: str) -> None:
            print(f"soak: {text}", file=sys.stderr, flush=True)

        try:
            soak = Soak(net, config, stop=stop, progress=say)
        except SoakError as exc:
            raise CliError(str(exc)) from None
        try:
            report = soak.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if root is not None and args.keep:
            report["kept"] = str(net.path)
        print(json.dumps(report) if args.json else human_report(report), flush=True)
        if report["violations"]:
            return 1
        return 130 if report["interrupted"] else 0
    finally:
        if root is not None and not args.keep:
            remove_network(root)
