"""``botc bank --net NETDIR [--id BANK]``: the settlement bank adapter."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bank",
        help="run the settlement bank (executes payment instructions, confirms them on chain)",
        description=(
            "Poll the authorities for pending payment instructions, execute each exactly once "
            "on the bank's own books (NETDIR/data/BANK/bank.db, SQLite WAL: an account per "
            "member plus CUSTODY, a journal keyed by instruction id) and confirm it on chain, "
            "resubmitting the same signed confirmation until it is final. A payer without the "
            "funds gets one payment-failed notice with the reason; the instruction is executed "
            "later if the balance allows. Accounts are opened on "
            "first start: clients with --opening-balance, dealers, the CCP and guarantors "
            "with --institution-balance, CUSTODY and the others with 0. --show prints the "
            "books as JSON and exits."
        ),
    )
    parser.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    parser.add_argument("--id", dest="member", default="BANK", help="the bank's id (BANK)")
    parser.add_argument(
        "--opening-balance",
        type=float,
        default=None,
        metavar="X",
        help="each client's opening balance (default 5e7)",
    )
    parser.add_argument(
        "--institution-balance",
        type=float,
        default=None,
        metavar="X",
        help="each dealer's, the CCP's and each guarantor's opening balance (default 5e9)",
    )
    parser.add_argument(
        "--balance",
        action="append",
        default=[],
        metavar="MEMBER=AMOUNT",
        help="open MEMBER's account with AMOUNT instead (repeatable; e.g. C3=0)",
    )
    parser.add_argument(
        "--late",
        action="append",
        default=[],
        metavar="MEMBER=SECONDS",
        help="MEMBER pays its margin calls SECONDS late, within the cure period (repeatable)",
    )
    parser.add_argument(
        "--poll-s", type=float, default=1.0, metavar="S", help="seconds between polls (1)"
    )
    parser.add_argument("--show", action="store_true", help="print the books as JSON and exit")
    parser.add_argument("--servers", default=None, help="comma-separated NATS URLs")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import math

    from peers.bank import (
        DEFAULT_CLIENT_BALANCE,
        DEFAULT_INSTITUTION_BALANCE,
        BankBooks,
        BankConfig,
        BankService,
        parse_balances,
    )
    from peers.errors import CliError
    from peers.netdir import NetDir
    from peers.runtime import open_bus, run_until_signal
    from rfq.identity import Role
    from rfq.money import from_micros

    for name in ("opening_balance", "institution_balance"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise CliError(f"--{name.replace('_', '-')} must be a finite number >= 0")
    if not (math.isfinite(args.poll_s) and args.poll_s > 0):
        raise CliError("--poll-s must be positive")
    try:
        overrides = parse_balances(args.balance)
    except ValueError as exc:
        raise CliError(f"--balance {exc}") from None
    try:
        late = parse_balances(args.late)
    except ValueError as exc:
        raise CliError(f"--late {exc}".replace("the amount", "the delay")) from None
    net = NetDir(args.net)
    genesis = net.genesis()
    try:
        member = genesis.member(args.member)
    except Exception:
        raise CliError(f"{net.genesis_path}: no member {args.member!r}") from None
    if member.role != Role.BANK:
        raise CliError(f"{args.member} is a {member.role}, the bank service runs as a bank")
    db_path = net.data_dir(args.member) / "bank.db"

    if args.show:
        books = BankBooks(db_path, bank_id=args.member)
        try:
            report = {
                "bank": args.member,
                "db": str(db_path),
                "balances": {m: from_micros(b) for m, b in books.balances().items()},
                "total": from_micros(books.total_micros()),
                "balanced": books.balanced(),
                **books.summary(),
            }
        finally:
            books.close()
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0

    config = BankConfig(
        client_balance=(
            DEFAULT_CLIENT_BALANCE if args.opening_balance is None else args.opening_balance
        ),
        institution_balance=(
            DEFAULT_INSTITUTION_BALANCE
            if args.institution_balance is None
            else args.institution_balance
        ),
        balances=overrides,
        poll_s=args.poll_s,
        late=late,
    )
    servers = args.servers.split(",") if args.servers else None

    async def main(stop: asyncio.Event) -> int:
        bus = await open_bus(net, args.member, servers=servers, roles={Role.BANK})
        books = BankBooks(db_path, bank_id=args.member)
        try:
            async with BankService(bus, genesis, books, config=config) as bank:
                print(
                    f"bank {args.member} settling from {db_path} (Ctrl-C to stop)",
                    flush=True,
                )
                await stop.wait()
            print(json.dumps({"bank": args.member, **bank.counts()}, sort_keys=True), flush=True)
        finally:
            books.close()
            await bus.close()
        return 0

    return run_until_signal(main)
