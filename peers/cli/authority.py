"""``botc authority --net NETDIR --id A1``: a PoA authority node."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "authority",
        help="run an authority node (QBFT committer, SQLite chain, query service)",
        description=(
            "Validate and seal blocks with the other authorities (QBFT, immediate finality), "
            "keep the chain and state in NETDIR/data/ID/chain.db (SQLite, WAL), publish final "
            "blocks to the JetStream stream CHAIN, catch up from it or from other authorities "
            "on start, and answer members' queries on otc.query.ID. A member not in the "
            "current authority set follows the chain as an observer."
        ),
    )
    parser.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    parser.add_argument("--id", required=True, dest="member", help="the authority's member id")
    parser.add_argument("--servers", default=None, help="comma-separated NATS URLs")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from peers.authority.node import AuthorityNode
    from peers.netdir import NetDir
    from peers.runtime import open_bus, run_until_signal
    from rfq.identity import AUTHORITY_ELIGIBLE

    net = NetDir(args.net)
    servers = args.servers.split(",") if args.servers else None

    async def main(stop: asyncio.Event) -> int:
        bus = await open_bus(net, args.member, servers=servers, roles=set(AUTHORITY_ELIGIBLE))
        node = await AuthorityNode(bus, net.genesis(), net.data_dir(args.member)).start()
        print(f"authority {args.member} at height {node.head.height} (Ctrl-C to stop)", flush=True)
        await stop.wait()
        await node.stop()
        await bus.close()
        return 0

    return run_until_signal(main)
