"""``botc guarantor --net NETDIR --id G1 [grant|revoke|lines ...]``: a third-party guarantor."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "guarantor",
        help="run a guarantor (monitor its lines), or grant / revoke a credit line",
        description=(
            "Without a subcommand: follow this guarantor's credit lines on chain (available, "
            "allocated to live trades' initial margin, paid on defaults) and log each change, "
            "until Ctrl-C; with --node also run its authority node in the same process "
            "(guarantors are authority candidates; outside the set the node follows the chain). "
            "'grant' grants a client a line against an asset pledged off chain (the chain "
            "sees the SHA-256 hex of the asset's identifier; one asset backs one live "
            "guarantee), 'revoke' revokes a line no live trade uses, 'lines' prints the lines. "
            "grant and revoke print the receipt, ok or the chain's reason, and exit 0 when "
            "ok, 1 when refused, 2 on bad input."
        ),
    )
    parser.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    parser.add_argument("--id", required=True, dest="member", help="the guarantor's member id")
    parser.add_argument("--servers", default=None, help="comma-separated NATS URLs")
    parser.add_argument(
        "--poll-s", type=float, default=2.0, metavar="S", help="service: seconds between looks"
    )
    parser.add_argument(
        "--node", action="store_true", help="service: also run this guarantor's authority node"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    grant = actions.add_parser(
        "grant",
        help="grant a client a credit line against a pledged asset",
        description="Grant CLIENT a credit line backed by an asset pledged off chain.",
    )
    grant.add_argument("--client", required=True, help="the client's member id")
    grant.add_argument("--line", required=True, type=float, help="the credit line (CNY)")
    grant.add_argument(
        "--asset",
        required=True,
        help="the pledged asset's off-chain identifier (e.g. 'warehouse receipt WR-2026-118')",
    )
    grant.add_argument(
        "--asset-value", required=True, type=float, help="the pledged asset's value (CNY)"
    )
    grant.add_argument(
        "--id",
        dest="guarantee_id",
        default=None,
        help="the guarantee's id (default GUARANTOR-CLIENT-<asset id prefix>)",
    )
    revoke = actions.add_parser(
        "revoke",
        help="revoke a credit line no live trade uses",
        description="Revoke one of this guarantor's lines; the pledged asset is freed.",
    )
    revoke.add_argument("--guarantee", required=True, help="the guarantee's id")
    lines = actions.add_parser(
        "lines",
        help="print this guarantor's lines and exposure",
        description="Print this guarantor's credit lines: available, allocated, paid.",
    )
    for sub in (grant, revoke, lines):
        sub.add_argument("--json", action="store_true", help="print one JSON object")
    for sub in (grant, revoke):
        sub.add_argument(
            "--timeout", type=float, default=15.0, help="seconds to wait for the receipt (15)"
        )
    parser.set_defaults(handler=run, action=None)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import math
    import sys

    import msgspec

    from peers.errors import CliError
    from peers.guarantor import GuarantorError, GuarantorService, make_grant
    from peers.ledger_client import LedgerUnavailable
    from peers.netdir import NetDir
    from peers.runtime import open_bus, run_until_signal
    from rfq.identity import Role
    from rfq.ledger.state import Receipt
    from rfq.money import from_micros

    net = NetDir(args.net)
    genesis = net.genesis()
    servers = args.servers.split(",") if args.servers else None
    if not (math.isfinite(args.poll_s) and args.poll_s > 0):
        raise CliError("--poll-s must be positive")
    if getattr(args, "timeout", 1.0) <= 0:
        raise CliError("--timeout must be positive")

    # Bad input is refused before connecting anywhere (exit 2).
    roles = {m.id: m.role for m in genesis.members}
    if args.member not in roles:
        raise CliError(f"{net.genesis_path}: no member {args.member!r}")
    if roles[args.member] != Role.GUARANTOR:
        raise CliError(f"{args.member} is a {roles[args.member]}, not a guarantor")
    grant_tx = None
    if args.action == "grant":
        if roles.get(args.client) not in (Role.CLIENT, None):
            raise CliError(f"--client {args.client} is a {roles[args.client]}, not a client")
        try:
            grant_tx = make_grant(
                args.member,
                args.client,
                line=args.line,
                asset=args.asset,
                asset_value=args.asset_value,
                guarantee_id=args.guarantee_id,
            )
        except GuarantorError as exc:
            raise CliError(str(exc)) from None
    if args.action == "revoke" and not args.guarantee.strip():
        raise CliError("--guarantee is empty")

    def show(receipt: Receipt, what: str) -> int:
        if args.json:
            print(json.dumps({**msgspec.to_builtins(receipt), "what": what}, sort_keys=True))
        elif receipt.ok:
            print(f"ok: {what} (height {receipt.height}, tx {receipt.tx_id[:12]})")
        else:
            print(f"refused: {receipt.reason}")
        return 0 if receipt.ok else 1

    async def once() -> int:
        bus = await open_bus(net, args.member, servers=servers, roles={Role.GUARANTOR})
        try:
            service = await GuarantorService(bus, genesis).start(monitor=False)
            try:
                if args.action == "grant":
                    assert grant_tx is not None
                    receipt = await service.submit_grant(grant_tx, timeout=args.timeout)
                    what = (
                        f"guarantee {grant_tx.id} for {grant_tx.client}, "
                        f"line {from_micros(grant_tx.line):,.2f} against asset "
                        f"{grant_tx.asset_id[:16]}… worth {from_micros(grant_tx.asset_value):,.2f}"
                    )
                    return show(receipt, what)
                if args.action == "revoke":
                    receipt = await service.revoke(args.guarantee, timeout=args.timeout)
                    return show(receipt, f"guarantee {args.guarantee} revoked")
                await service.refresh()
                exposure = service.exposure()
                if args.json:
                    print(
                        json.dumps(
                            {
                                "guarantor": args.member,
                                "exposure": msgspec.to_builtins(exposure),
                                "lines": [_line_json(g) for g in service.lines.values()],
                            },
                            sort_keys=True,
                        )
                    )
                else:
                    _print_lines(args.member, service)
                return 0
            finally:
                await service.close()
        except LedgerUnavailable as exc:
            print(f"botc guarantor: ledger unavailable: {exc}", file=sys.stderr)
            return 1
        finally:
            await bus.close()

    if args.action is not None:
        return asyncio.run(once())

    async def serve(stop: asyncio.Event) -> int:
        from peers.authority.node import AuthorityNode

        bus = await open_bus(net, args.member, servers=servers, roles={Role.GUARANTOR})
        node = None
        try:
            if args.node:
                node = await AuthorityNode(bus, genesis, net.data_dir(args.member)).start()
            async with GuarantorService(bus, genesis, poll_s=args.poll_s) as service:
                print(
                    f"guarantor {args.member} following its lines (capacity "
                    f"{service.capacity:g}{', with its node' if node else ''}; Ctrl-C to stop)",
                    flush=True,
                )
                await stop.wait()
        finally:
            if node is not None:
                await node.stop()
            await bus.close()
        return 0

    return run_until_signal(serve)


def _line_json(guarantee: Any) -> dict[str, Any]:
    """A line as the JSON report shows it: its amounts in currency units, like the exposure
    (the chain holds them as integer micros)."""
    import msgspec

    from rfq.money import from_micros

    money = ("line", "asset_value", "allocated", "paid")
    out: dict[str, Any] = msgspec.to_builtins(guarantee)
    return {**out, **{f: from_micros(getattr(guarantee, f)) for f in money}}


def _print_lines(member: str, service: Any) -> None:
    from rfq.money import from_micros

    e = service.exposure()
    print(
        f"{member}: capacity {e.capacity:,.0f}, outstanding {e.outstanding:,.0f}, "
        f"allocated {e.allocated:,.0f}, paid {e.paid:,.0f}, free {e.free_capacity:,.0f}"
    )
    print(f"{'guarantee':<24} {'client':<8} {'line':>14} {'allocated':>14} {'paid':>14} status")
    for g in sorted(service.lines.values(), key=lambda g: g.id):
        print(
            f"{g.id:<24} {g.client:<8} {from_micros(g.line):>14,.0f} "
            f"{from_micros(g.allocated):>14,.0f} {from_micros(g.paid):>14,.0f} {g.status}"
        )
