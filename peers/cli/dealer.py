"""``botc dealer --net NETDIR --id D1``: a headless dealer bot."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dealer",
        help="run a headless dealer bot",
        description=(
            "Answer RFQs with signed, firm, time-limited quotes (or declines), priced from the "
            "oracle's prices with a rating-adjusted credit charge. A custom strategy "
            "(--strategy MODULE:CLASS) is a class whose price(rfq, context) method returns a "
            "Quote or a Decline; the README's Pre-trade section describes the default one."
        ),
    )
    parser.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    parser.add_argument("--id", required=True, dest="member", help="the dealer's member id")
    parser.add_argument(
        "--strategy", default=None, metavar="MODULE:CLASS", help="a custom pricing strategy"
    )
    parser.add_argument(
        "--credit-limit",
        type=float,
        default=5.0e7,
        help="per-client exposure limit, CNY (default 5e7)",
    )
    parser.add_argument(
        "--half-spread-bps",
        type=float,
        default=10.0,
        help="half the bid-ask spread, basis points (default 10)",
    )
    parser.add_argument(
        "--quote-ttl", type=float, default=30.0, help="seconds a quote is firm (default 30)"
    )
    parser.add_argument("--servers", default=None, help="comma-separated NATS URLs")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from peers.dealer import DealerBot, DefaultStrategy, load_strategy
    from peers.errors import CliError
    from peers.netdir import NetDir
    from peers.runtime import open_bus, run_until_signal
    from rfq.identity import Role
    from rfq.pricing.strategy import QuoteParams

    if args.credit_limit < 0 or args.half_spread_bps < 0 or args.quote_ttl <= 0:
        raise CliError("--credit-limit and --half-spread-bps must be >= 0, --quote-ttl > 0")
    net = NetDir(args.net)
    strategy = (
        load_strategy(args.strategy)
        if args.strategy
        else DefaultStrategy(
            QuoteParams(half_spread_bps=args.half_spread_bps, ttl_s=args.quote_ttl)
        )
    )
    servers = args.servers.split(",") if args.servers else None

    async def main(stop: asyncio.Event) -> int:
        bus = await open_bus(net, args.member, servers=servers, roles={Role.DEALER})
        bot = DealerBot(bus, net.genesis(), strategy=strategy, credit_limit=args.credit_limit)
        await bot.start(follow_chain=True)
        print(f"dealer {args.member} quoting (Ctrl-C to stop)", flush=True)
        await stop.wait()
        await bus.close()
        return 0

    return run_until_signal(main)
