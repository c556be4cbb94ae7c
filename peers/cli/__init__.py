"""The ``botc`` command line.

Each command lives in its own module of this package and exposes ``register(subparsers)``;
registration is cheap (heavy imports happen inside the handlers), so ``botc contract run``
does not pay for Textual. Handlers return an exit code. Bad input raised as one of the
packages' root errors becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from types import ModuleType

from bus.errors import BusError
from peers.errors import CliError, PeerError
from peers.logging import LEVELS, configure_logging
from rfq.errors import RfqError

COMMANDS = (
    "init",
    "keygen",
    "genesis",
    "nats",
    "tls",
    "callout",
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
)
PLUGIN_GROUP = "botc.commands"
"""Entry points that add commands from other packages (the terminal's ``botc tui``), so
``peers`` never imports them."""


def plugin_commands() -> dict[str, ModuleType]:
    """The modules other installed packages register as ``botc`` commands, by name."""
    return {ep.name: ep.load() for ep in entry_points(group=PLUGIN_GROUP)}


def plugin_command(name: str) -> ModuleType:
    """One registered command's module; a clear error when it is not installed."""
    module = plugin_commands().get(name)
    if module is None:
        raise CliError(f"the {name!r} command is not installed (reinstall botc: pip install -e .)")
    return module


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
    for module in plugin_commands().values():
        module.register(subparsers)
    return parser


FILE_MODE_MASK = 0o077
"""What ``botc`` and every process it starts create is readable by its owner only: chain and
bank databases, WAL files, logs, the nats-server's store (files 0600, directories 0700)."""


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(FILE_MODE_MASK)
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
