"""``botc oracle --net NETDIR (--simulate [--seed N] | --replay FILE.csv)``."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "oracle",
        help="publish signed price fixings (simulated or replayed)",
        description=(
            "Publish signed prices on otc.px.<underlying>. --simulate runs a seeded, correlated "
            "random walk for SHFE rebar and hot-rolled coil, DCE polypropylene, soybean oil and "
            "corn, INE crude (the next three of the January/May/September months each, rolling "
            "as months pass their last trading day, the 15th), Tangshan billet spot and the "
            "CSI 300, one business day every --day-seconds. --replay publishes a CSV "
            "(date,underlying,price) as daily closes, one date every --interval seconds, "
            "skipping months past their last trading day."
        ),
    )
    parser.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--simulate", action="store_true", help="simulate prices")
    mode.add_argument("--replay", metavar="FILE.csv", help="replay prices from a CSV")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    parser.add_argument(
        "--day-seconds", type=float, default=30.0, help="wall seconds per business day (default 30)"
    )
    parser.add_argument(
        "--ticks-per-day", type=int, default=20, help="price updates per business day (default 20)"
    )
    parser.add_argument("--start", default=None, help="first simulated date (default today)")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="replay: seconds per date (default 1)"
    )
    parser.add_argument("--id", dest="member", default="ORACLE", help="the oracle's member id")
    parser.add_argument("--servers", default=None, help="comma-separated NATS URLs")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import datetime as dt
    from pathlib import Path

    from peers.errors import CliError
    from peers.ledger_client import LedgerClient
    from peers.netdir import NetDir
    from peers.oracle import OracleService, Simulator, read_replay
    from peers.runtime import open_bus, run_until_signal
    from rfq.clock import utc_today
    from rfq.identity import Role

    if args.day_seconds <= 0 or args.ticks_per_day < 1 or args.interval < 0:
        raise CliError("--day-seconds and --ticks-per-day must be positive, --interval >= 0")
    try:
        start = dt.date.fromisoformat(args.start) if args.start else utc_today()
    except ValueError:
        raise CliError(f"--start {args.start!r} is not YYYY-MM-DD") from None
    days = read_replay(Path(args.replay)) if args.replay else None
    net = NetDir(args.net)
    servers = args.servers.split(",") if args.servers else None

    async def main(stop: asyncio.Event) -> int:
        bus = await open_bus(net, args.member, servers=servers, roles={Role.ORACLE})
        ledger = await LedgerClient(bus, net.genesis()).start()
        oracle = OracleService(bus, ledger=ledger)
        await oracle.start()
        if days is not None:
            print(f"oracle replaying {len(days)} dates from {args.replay}", flush=True)
            await oracle.run_replay(days, interval=args.interval, stop=stop)
        else:
            sim = Simulator(start=start, seed=args.seed, ticks_per_day=args.ticks_per_day)
            print(f"oracle simulating from {start} (seed {args.seed})", flush=True)
            await oracle.run_simulation(sim, day_seconds=args.day_seconds, stop=stop)
        await bus.close()
        return 0

    return run_until_signal(main)
