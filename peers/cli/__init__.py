"""The ``botc`` command line.

Each command lives in its own module of this package and exposes ``register(subparsers)``;
registration is cheap (heavy imports happen inside the handlers), so ``botc contract run``
does not pay for Textual. Handlers return an exit code. Bad input raised as one of the
packages' root errors becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bus.errors import BusError
from peers.errors import PeerError
from peers.logging import LEVELS, configure_logging
from rfq.errors import RfqError

COMMANDS = (
    "init",
    "nats",
    "oracle",
    "dealer",
    "authority",
    "regulator",
    "guarantor",
    "bank",
    "up",
    "load",
    "soak",
    "status",
    "chain",
    "contract",
    "risk",
    "bench",
    "tui",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="botc",
        description="B-OTC: an RFQ marketplace for OTC derivatives on a PoA ledger.",
    )
    parser.add_argument("--log-level", default="info", choices=LEVELS, help="default: info")
    parser.add_argument("--log-file", default=None, help="write logs (JSON lines) to this file")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"peers.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_file)
    try:
        code = args.handler(args)
    except (RfqError, BusError, PeerError) as exc:
        print(f"botc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
