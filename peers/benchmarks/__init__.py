"""Benchmarks behind ``botc bench``; each reports its figures next to a same-run baseline."""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peers.netdir import NetDir


def add_network_choice(parser: argparse.ArgumentParser) -> None:
    """``--net NETDIR`` (a running network) or ``--embedded`` (a temporary one), one required."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--net", metavar="NETDIR", help="a network whose NATS is running")
    where.add_argument(
        "--embedded", action="store_true", help="a temporary network and nats-server"
    )


def serve(stack: ExitStack, net: NetDir, nats_dir: Path) -> list[str]:
    """A nats-server for ``net`` (over its TLS, if it has any) with the auth callout members
    connect through, both stopped with ``stack``: the server's urls."""
    from bus.server import NatsServer
    from peers.callout import start_callout

    server = stack.enter_context(NatsServer(nats_dir, auth=net.auth_conf(), tls=net.tls()))
    callout = start_callout(net, [server.url])
    if callout is not None:
        stack.callback(callout.stop)
    return [server.url]
