"""``botc status --net NETDIR [--json]``: each authority's height, the set, governance."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="show each authority's height and last block, the authority set, governance",
        description=(
            "Ask every authority of the network for its status: height, last block time, "
            "mempool, the authority set and candidates, and the regulator's latest governance "
            "actions. An authority that does not answer is shown as down. Exit 0 when a "
            "quorum answered, 1 otherwise."
        ),
    )
    parser.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--as", dest="member", default="REG", help="query as (default REG)")
    parser.add_argument("--servers", default=None, help="comma-separated NATS URLs")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import datetime as dt
    import json

    import msgspec

    from peers.ledger_client import LedgerClient
    from peers.netdir import NetDir
    from peers.runtime import open_bus
    from rfq.identity import AUTHORITY_ELIGIBLE
    from rfq.ledger.block import quorum
    from rfq.queries import StatusQuery, StatusReply

    net = NetDir(args.net)
    genesis = net.genesis()
    servers = args.servers.split(",") if args.servers else None
    eligible = [m.id for m in genesis.members if m.role in AUTHORITY_ELIGIBLE]

    async def gather() -> dict[str, Any]:
        bus = await open_bus(net, args.member, servers=servers)
        try:
            client = LedgerClient(bus, genesis, authorities=eligible)
            return await client.ask_all(StatusQuery(), timeout=1.5)
        finally:
            await bus.close()

    answers = asyncio.run(gather())
    up = {a: r for a, r in answers.items() if isinstance(r, StatusReply)}
    newest = max(up.values(), key=lambda r: r.height, default=None)
    authorities = newest.authorities if newest else genesis.authorities.initial
    serving = [a for a in authorities if a in up]
    healthy = len(serving) >= quorum(len(authorities))
    if args.json:
        print(
            json.dumps(
                {
                    "healthy": healthy,
                    "authorities": list(authorities),
                    "candidates": list(newest.candidates) if newest else [],
                    "nodes": {
                        a: msgspec.to_builtins(r) if isinstance(r, StatusReply) else {"down": r}
                        for a, r in answers.items()
                    },
                    "governance": msgspec.to_builtins(newest.governance) if newest else [],
                }
            )
        )
        return 0 if healthy else 1
    print(f"network {genesis.name} ({genesis.chain_id})")
    print(
        f"authorities: {', '.join(authorities)}   candidates: "
        f"{', '.join(newest.candidates) if newest and newest.candidates else '-'}"
    )
    for member in eligible:
        reply = answers.get(member)
        if isinstance(reply, StatusReply):
            when = dt.datetime.fromtimestamp(reply.last_block_ms / 1000, dt.UTC).strftime(
                "%H:%M:%S"
            )
            role = "authority" if reply.is_authority else "observer"
            print(
                f"  {member:6} {role:9} height {reply.height:7}  last block {when} UTC  "
                f"mempool {reply.mempool:5}  contracts {reply.open_contracts}"
            )
        elif member in authorities:
            print(f"  {member:6} DOWN ({reply})")
    if newest and newest.governance:
        print("governance:")
        for event in newest.governance[-10:]:
            print(f"  height {event.height:6}  {event.action:9} {event.member:10} {event.reason}")
    print("healthy" if healthy else f"UNHEALTHY: {len(serving)} of {len(authorities)} answer")
    return 0 if healthy else 1
