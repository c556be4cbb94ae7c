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
            "oracle's prices with a rating-adjusted credit charge. Each dealer's defaults "
            "(half-spread, skew, grade tightening, credit limit, notional and tenor limits) "
            "are derived from its id, so dealers differ out of the box; the flags override "
            "them. A custom strategy (--strategy MODULE:CLASS) is a class whose "
            "price(rfq, context) method returns a Quote or a Decline; the README's Pre-trade "
            "section describes the default one."
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
        default=None,
        help="per-client exposure limit, CNY (default: appetite x 50,000,000)",
    )
    parser.add_argument(
        "--half-spread-bps", type=float, default=None, help="half-spread (default: 4 to 20 by id)"
    )
    parser.add_argument(
        "--skew-per-unit",
        type=float,
        default=None,
        help="price shift per unit of inventory (default: 0.00005 to 0.0002 by id)",
    )
    parser.add_argument(
        "--tighten-bps-per-grade",
        type=float,
        default=None,
        help="half-spread cut per grade above BBB (default: 0 to 0.5 by id)",
    )
    parser.add_argument(
        "--max-notional",
        type=float,
        default=None,
        help="per-trade gross notional limit, CNY (default: appetite x 1,000,000,000)",
    )
    parser.add_argument(
        "--max-tenor-days",
        type=int,
        default=None,
        help="per-trade tenor limit, days (default: 365 x (1 + 2 x appetite))",
    )
    parser.add_argument("--quote-ttl", type=float, default=30.0, help="seconds a quote is firm")
    parser.add_argument("--servers", default=None, help="comma-separated NATS URLs")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import math

    import msgspec

    from peers.dealer import DealerBot, DefaultStrategy, load_strategy
    from peers.errors import CliError
    from peers.netdir import NetDir
    from peers.runtime import open_bus, run_until_signal
    from rfq.identity import Role
    from rfq.pricing.strategy import dealer_profile

    for flag, value in (
        ("--credit-limit", args.credit_limit),
        ("--half-spread-bps", args.half_spread_bps),
        ("--skew-per-unit", args.skew_per_unit),
        ("--tighten-bps-per-grade", args.tighten_bps_per_grade),
    ):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise CliError(f"{flag} must be a number >= 0")
    if args.max_notional is not None and not args.max_notional > 0:
        raise CliError("--max-notional must be > 0")
    if args.max_tenor_days is not None and args.max_tenor_days < 1:
        raise CliError("--max-tenor-days must be at least 1")
    if not (math.isfinite(args.quote_ttl) and args.quote_ttl > 0):
        raise CliError("--quote-ttl must be > 0")
    profile = dealer_profile(args.member)
    params = profile.params
    limits = msgspec.structs.replace(
        params.limits,
        **{
            k: v
            for k, v in (
                ("max_notional", args.max_notional),
                ("max_tenor_days", args.max_tenor_days),
            )
            if v is not None
        },
    )
    params = msgspec.structs.replace(
        params,
        ttl_s=args.quote_ttl,
        limits=limits,
        **{
            k: v
            for k, v in (
                ("half_spread_bps", args.half_spread_bps),
                ("skew_per_unit", args.skew_per_unit),
                ("tighten_bps_per_grade", args.tighten_bps_per_grade),
            )
            if v is not None
        },
    )
    credit_limit = profile.credit_limit if args.credit_limit is None else args.credit_limit
    net = NetDir(args.net)
    strategy = load_strategy(args.strategy) if args.strategy else DefaultStrategy(params)
    servers = args.servers.split(",") if args.servers else None

    async def main(stop: asyncio.Event) -> int:
        bus = await open_bus(net, args.member, servers=servers, roles={Role.DEALER})
        bot = DealerBot(bus, net.genesis(), strategy=strategy, credit_limit=credit_limit)
        await bot.start(follow_chain=True)
        if args.strategy:
            print(f"dealer {args.member} quoting with {args.strategy} (Ctrl-C to stop)", flush=True)
        else:
            print(
                f"dealer {args.member} quoting: half-spread {params.half_spread_bps:g} bp, "
                f"skew {params.skew_per_unit:g}/unit, tighten {params.tighten_bps_per_grade:g} "
                f"bp/grade, credit limit {credit_limit:,.0f}, max notional "
                f"{params.limits.max_notional:,.0f}, max tenor {params.limits.max_tenor_days} "
                "days (Ctrl-C to stop)",
                flush=True,
            )
        await stop.wait()
        await bus.close()
        return 0

    return run_until_signal(main)
