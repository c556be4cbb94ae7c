"""``botc tui --net NETDIR --as ID``: the Textual trading terminal, in the member's role.

The terminal registers this command itself (the ``botc.commands`` entry point in
pyproject.toml), so the services of ``peers`` never import the terminal: ``botc up`` finds it
the same way (``peers.cli.plugin_command``) to open it after starting the market.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "tui",
        help="the trading terminal (client, dealer or regulator mode)",
        description=(
            "A terminal UI whose mode follows the member's role. Client: market watch, RFQ "
            "ticket, live quotes (accept / cancel), blotter, credit and chain panels. Dealer: "
            "incoming RFQs quoted by an embedded dealer bot, automatically or by hand, with "
            "positions and exposure per client. Regulator: authorities and governance, CCR "
            "per institution with alerts, contagion what-ifs, the trade repository. "
            "Ctrl+P opens the command palette; Ctrl+Q quits. Logs go to a file, never to "
            "the screen (default NETDIR/logs/tui-ID.log)."
        ),
    )
    parser.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    parser.add_argument(
        "--as", required=True, dest="member", metavar="ID", help="member id, e.g. C1, D1, REG"
    )
    parser.add_argument("--servers", default=None, help="comma-separated NATS URLs")
    parser.add_argument(
        "--log-file", dest="tui_log_file", default=None, metavar="PATH", help="log file"
    )
    parser.add_argument(
        "--manual",
        action="store_true",
        help="dealer mode: start with auto-quote off (RFQs wait for a manual quote)",
    )
    parser.add_argument(
        "--poll", type=float, default=2.0, metavar="SECONDS", help="chain poll period (2)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from peers.errors import CliError
    from peers.logging import configure_logging
    from peers.netdir import NetDir
    from tui.app import BotcApp

    if args.poll <= 0:
        raise CliError("--poll must be positive")
    net = NetDir(args.net)
    net.identity(args.member)  # an unknown member or a bad NETDIR: one line, exit 2
    servers = [s for s in args.servers.split(",") if s] if args.servers else None
    log_file = args.tui_log_file or getattr(args, "log_file", None)
    configure_logging(getattr(args, "log_level", "info"), log_file or net.terminal_log(args.member))
    app = BotcApp(
        net,
        args.member,
        servers,
        poll_s=args.poll,
        auto_quote=not args.manual,
    )
    result = app.run()
    return int(result or 0)


def terminal(net: Any, member: str) -> Any:
    """The terminal for ``member`` (what ``botc up`` opens once the market is ready)."""
    from tui.app import BotcApp

    return BotcApp(net, member)
