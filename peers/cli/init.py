"""``botc init NETDIR``: create a network (genesis, member keys, nats-server configs)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "init",
        help="create a network directory",
        description=(
            "Write NETDIR/genesis.toml, one key file per member (mode 0600) under NETDIR/keys, "
            "and a nats-server configuration in which every member is an nkey user with "
            "subject permissions by role; unless --no-tls, a CA, a server certificate for "
            "loopback and the docker-compose nodes, and NETDIR/nats/tls/tls.toml, so every NATS "
            "connection is TLS. Members: dealers D1..Dn, a CCP, guarantors G1..Gn, "
            "the regulator REG, the price ORACLE, the settlement BANK and clients C1..Cn; the "
            "initial authorities are the first N-1 dealers and the CCP (--authorities N, 4 to "
            "10; default 4: D1-D3 and the CCP), other dealers and guarantors are "
            "candidates. The network is written completely or not at all: a failure leaves "
            "nothing behind, and --force replaces an existing network only once the new one "
            "is complete. NETDIR may be new, empty, or a directory without a network."
        ),
    )
    parser.add_argument("netdir", metavar="NETDIR", help="directory to create the network in")
    parser.add_argument(
        "--dealers",
        type=int,
        default=None,
        help="number of dealers, 3 to 64 (default 3, or N-1 for --authorities N)",
    )
    parser.add_argument(
        "--authorities",
        type=int,
        default=4,
        metavar="N",
        help="initial authorities, 4 to 10: the first N-1 dealers and the CCP (default 4)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=5,
        help="number of clients, 1 to 1000 (default 5)",
    )
    parser.add_argument(
        "--guarantors",
        type=int,
        default=1,
        help="number of guarantors, 0 to 16 (default 1)",
    )
    parser.add_argument("--name", default="botc-local", help="network name (default botc-local)")
    parser.add_argument("--force", action="store_true", help="replace an existing network")
    parser.add_argument(
        "--no-tls",
        dest="tls",
        action="store_false",
        help="plaintext NATS (default: TLS, with a CA and certificates in NETDIR/nats/tls)",
    )
    parser.set_defaults(handler=run)


def default_dealers(authorities: int) -> int:
    """Enough dealers for the authority set: N-1 of them sit in it beside the CCP."""
    return max(3, authorities - 1)


def run(args: argparse.Namespace) -> int:
    from peers.netdir import create_network

    net = create_network(
        args.netdir,
        dealers=default_dealers(args.authorities) if args.dealers is None else args.dealers,
        authorities=args.authorities,
        clients=args.clients,
        guarantors=args.guarantors,
        name=args.name,
        force=args.force,
        tls=args.tls,
    )
    genesis = net.genesis()
    print(f"created network {genesis.name} ({genesis.chain_id}) in {net.path}")
    print(f"  members:     {', '.join(m.id for m in genesis.members)}")
    print(f"  authorities: {', '.join(genesis.authorities.initial)}")
    print(f"  candidates:  {', '.join(genesis.authorities.candidates) or '-'}")
    tls = net.tls()
    print(f"  tls:         {f'on (CA {tls.ca_file})' if tls else 'off (--no-tls)'}")
    print(f"  next:        botc nats --net {net.path}   (or: botc up --net {net.path})")
    return 0
