"""``botc chain verify --net NETDIR --id A1``: re-verify an authority's chain from the genesis;
``botc chain prebuild --net NETDIR --contracts N``: start a network from a chain of N trades."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "chain",
        help="inspect an authority's chain database",
        description=(
            "Check an authority's chain database: 'botc chain verify --net NETDIR --id D1' "
            "re-verifies it from the genesis."
        ),
    )
    inner = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = inner.add_parser(
        "verify",
        help="re-verify hashes, seals and state roots from the genesis",
        description=(
            "Re-verify NETDIR/data/ID/chain.db from the genesis: each block's hash, link, "
            "transactions root and commit seals (a quorum of that height's authorities), then "
            "re-execute it and compare the state root; check every stored state snapshot. "
            "Prints the verified height (exit 0) or the first bad height and why (exit 1). "
            "Safe while the authority runs (read only)."
        ),
    )
    verify.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    verify.add_argument("--id", required=True, dest="member", help="the authority's member id")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(handler=run_verify)
    prebuild = inner.add_parser(
        "prebuild",
        help="write a chain of N live trades into every authority's store, before botc up",
        description=(
            "For a network made by 'botc init' (its directory holds every authority's key): "
            "execute N real signed trades between its clients and dealers in blocks cut as a "
            "proposer cuts them (the genesis' max_block_bytes), outside consensus, seal each "
            "block with every initial authority's key and write "
            "the blocks and a snapshot of the final state into every initial authority's "
            "store, so 'botc up' starts a market that already holds N live contracts through "
            "its normal start-up. The trades ask no initial margin, so nothing waits on the "
            "bank. Refuses a network whose chain has started."
        ),
    )
    prebuild.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    prebuild.add_argument(
        "--contracts", type=int, required=True, metavar="N", help="live trades (1..1,000,000)"
    )
    prebuild.add_argument(
        "--days", type=int, default=240, help="days to maturity, at most (default 240)"
    )
    prebuild.add_argument("--json", action="store_true", help="print one JSON object")
    prebuild.set_defaults(handler=run_prebuild)


def run_prebuild(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from peers.errors import CliError
    from peers.netdir import NetDir
    from peers.prebuild import prebuild_chain

    if not 1 <= args.contracts <= 1_000_000:
        raise CliError(f"--contracts {args.contracts}: give 1..1000000")
    if not 2 <= args.days <= 3650:
        raise CliError(f"--days {args.days}: give 2..3650")
    net = NetDir(args.net)

    def progress(made: int) -> None:
        if not args.json and made % 10_000 == 0:
            print(f"{made:,} trades", flush=True)

    built = prebuild_chain(net, args.contracts, days=args.days, progress=progress)
    if args.json:
        print(json.dumps(dataclasses.asdict(built)))
    else:
        print(
            f"height {built.height}: {built.live_contracts:,} live contracts in "
            f"{len(built.stores)} stores ({built.seconds:.1f} s)"
        )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    import json

    from peers.authority.store import SqliteChainStore
    from peers.authority.verify import verify_chain
    from peers.errors import CliError
    from peers.netdir import NetDir

    net = NetDir(args.net)
    genesis = net.genesis()
    if args.member not in {m.id for m in genesis.members}:
        raise CliError(f"{args.member!r} is not a member of {net.path}")
    path = net.path / "data" / args.member / "chain.db"
    if not path.is_file():
        raise CliError(f"{path}: no chain database (has {args.member} run as an authority?)")
    store = SqliteChainStore(path)
    try:
        verdict = verify_chain(genesis, store)
    finally:
        store.close()
    if args.json:
        print(
            json.dumps(
                {
                    "ok": verdict.ok,
                    "height": verdict.height,
                    "reason": verdict.reason,
                    "state_root": verdict.state_root,
                }
            )
        )
    elif verdict.ok:
        print(f"{args.member}: verified {verdict.height} blocks, state root {verdict.state_root}")
    else:
        print(f"{args.member}: first bad height {verdict.height}: {verdict.reason}")
    return 0 if verdict.ok else 1
