"""``botc load --net NETDIR --clients N --rfqs M [--json]``: simulated clients."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "load",
        help="run simulated clients against a running network",
        description=(
            "Simulated clients (C1..CN of the network) send RFQs with varied terms to every "
            "dealer, take the best quote (or walk away now and then) and wait for the trade to "
            "be final. Prints a final summary: RFQs sent, quotes, declines, accepts, committed "
            "trades, accepts still unconfirmed when it was stopped (SIGINT/SIGTERM stop it at "
            "once), RFQs cancelled, expired quotes probed and refused, failures by reason and "
            "the accept-to-receipt finality p50/p99 in ms. Exits 1 when trades were accepted "
            "and none committed."
        ),
    )
    parser.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    parser.add_argument("--clients", type=int, default=2, help="simulated clients (default 2)")
    parser.add_argument("--rfqs", type=int, default=None, help="RFQs in total (default: no cap)")
    parser.add_argument("--rate", type=float, default=None, help="RFQs per second over all")
    parser.add_argument("--duration", type=float, default=None, help="seconds to run")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--stats-file", default=None, help="keep live statistics (JSON) in this file"
    )
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="ID", help="a client not to simulate"
    )
    parser.add_argument(
        "--id",
        action="append",
        default=[],
        dest="only",
        metavar="ID",
        help="simulate this client only (repeat for several; its institution's key alone)",
    )
    parser.add_argument("--servers", default=None, help="comma-separated NATS URLs")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--take", type=float, default=0.85, help="share of quoted RFQs accepted (0.85)"
    )
    parser.add_argument(
        "--cancel-share",
        type=float,
        default=0.0,
        metavar="P",
        help="share of RFQs withdrawn after the first answer, never accepted (0)",
    )
    parser.add_argument(
        "--stale-share",
        type=float,
        default=0.0,
        metavar="P",
        help="share of best quotes accepted after they expired, a probe the chain refuses (0)",
    )
    parser.add_argument(
        "--events-file", default=None, help="append one JSON line per RFQ outcome here"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import json
    from pathlib import Path

    from peers.errors import CliError
    from peers.load import Behaviour, run_load
    from peers.netdir import NetDir
    from peers.runtime import run_until_signal
    from rfq.identity import Role

    if args.clients < 1:
        raise CliError("--clients must be at least 1")
    if args.rfqs is None and args.duration is None:
        raise CliError("give --rfqs or --duration (or both)")
    if (args.rfqs is not None and args.rfqs < 1) or (args.rate is not None and args.rate <= 0):
        raise CliError("--rfqs and --rate must be positive")
    for name in ("take", "cancel_share", "stale_share"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise CliError(f"--{name.replace('_', '-')} must be between 0 and 1")
    net = NetDir(args.net)
    clients = [
        m.id for m in net.genesis().members if m.role == Role.CLIENT and m.id not in args.exclude
    ]
    if args.only:
        unknown = [c for c in args.only if c not in clients]
        if unknown:
            raise CliError(f"--id {unknown[0]}: not a client of {net.path}")
        clients = list(dict.fromkeys(args.only))
        args.clients = len(clients)
    if args.clients > len(clients):
        raise CliError(f"{net.path} has {len(clients)} clients, --clients asks {args.clients}")
    servers = args.servers.split(",") if args.servers else None

    async def main(stop: asyncio.Event) -> int:
        stats = await run_load(
            net,
            clients[: args.clients],
            rfqs=args.rfqs,
            rate=args.rate,
            duration=args.duration,
            servers=servers,
            seed=args.seed,
            stats_file=Path(args.stats_file) if args.stats_file else None,
            stop=stop,
            behaviour=Behaviour(
                take=args.take, cancel_share=args.cancel_share, stale_share=args.stale_share
            ),
            events_file=Path(args.events_file) if args.events_file else None,
        )
        summary = stats.summary()
        if args.json:
            print(json.dumps(summary))
        else:
            for key, value in summary.items():
                print(f"{key:12} {value}")
        return 0 if stats.committed or not stats.accepts else 1

    return run_until_signal(main)
