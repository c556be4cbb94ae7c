"""``botc callout --net NETDIR``: the auth callout beside a NATS server, until Ctrl-C."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Answer the NATS server's auth callout ($SYS.REQ.USER.AUTH) from the chain's member registry:
follow the final blocks as a full observer node (as --id, default the regulator), admit a
member the chain knows with its role's permissions, refuse an unknown key, a bad nonce
signature or a suspended or offboarded member, and kick a member's connections at the block
that bars it. Run one beside each server (botc up and botc nats run their own); it needs
NETDIR/nats/callout.secret, the keys the server's auth.conf names.
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "callout",
        help="answer a NATS server's auth callout from the chain's member registry",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    parser.add_argument("--id", dest="member", default=None, help="member to follow the chain as")
    parser.add_argument("--servers", default=None, help="comma-separated NATS URLs (its server)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from peers.callout import open_callout
    from peers.netdir import NetDir
    from peers.runtime import run_until_signal

    net = NetDir(args.net)
    servers = args.servers.split(",") if args.servers else net.server_urls()

    async def main(stop: asyncio.Event) -> int:
        callout, follower, bus = await open_callout(net, servers, member=args.member)
        print(f"auth callout for {' '.join(servers)} (Ctrl-C to stop)", flush=True)
        await stop.wait()
        await callout.close()
        await follower.close()
        await bus.close()
        return 0

    return run_until_signal(main)
