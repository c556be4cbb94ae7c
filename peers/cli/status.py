"""``botc status --net NETDIR [--json]``: each authority's height, the set, governance."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BEHIND_BLOCKS = 5
"""An authority more blocks than this below the highest answer is behind (catching up)."""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="show each authority's height and last block, the authority set, governance",
        description=(
            "Ask every authority of the network for its status: height, last block time, "
            "mempool, the authority set and candidates, and the regulator's latest governance "
            "actions. An authority that does not answer is shown as down. The network is "
            "healthy when every authority answers, none is more than 5 blocks behind, and the "
            "set has at least 4 authorities (so it tolerates a faulty one); otherwise the last "
            "line says what is wrong (degraded, or unhealthy when no quorum answers). Exit 0 "
            "when healthy, 1 otherwise."
        ),
    )
    parser.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--as", dest="member", default="REG", help="query as (default REG)")
    parser.add_argument("--servers", default=None, help="comma-separated NATS URLs")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import datetime as dt
    import json

    import msgspec

    from peers.ledger_client import LedgerClient
    from peers.netdir import NetDir
    from peers.runtime import open_bus
    from rfq.identity import AUTHORITY_ELIGIBLE
    from rfq.queries import StatusQuery, StatusReply

    net = NetDir(args.net)
    genesis = net.genesis()
    servers = args.servers.split(",") if args.servers else None
    eligible = [m.id for m in genesis.members if m.role in AUTHORITY_ELIGIBLE]

    async def gather() -> dict[str, Any]:
        bus = await open_bus(net, args.member, servers=servers)
        try:
            client = LedgerClient(bus, genesis, authorities=eligible)
            return await client.ask_all(StatusQuery(), timeout=1.5)
        finally:
            await bus.close()

    answers = asyncio.run(gather())
    up = {a: r for a, r in answers.items() if isinstance(r, StatusReply)}
    newest = max(up.values(), key=lambda r: r.height, default=None)
    authorities = newest.authorities if newest else genesis.authorities.initial
    candidates = newest.candidates if newest else ()
    health = assess(authorities, candidates, up)
    if args.json:
        print(
            json.dumps(
                {
                    "healthy": health.healthy,
                    "authorities": list(authorities),
                    "candidates": list(candidates),
                    "nodes": {
                        a: msgspec.to_builtins(r) if isinstance(r, StatusReply) else {"down": r}
                        for a, r in answers.items()
                    },
                    "governance": msgspec.to_builtins(newest.governance) if newest else [],
                    "quorum": health.quorum,
                    "tolerates": health.tolerates,
                    "problems": list(health.problems),
                }
            )
        )
        return 0 if health.healthy else 1
    print(f"network {genesis.name} ({genesis.chain_id})")
    print(f"authorities: {', '.join(authorities)}   candidates: {', '.join(candidates) or '-'}")
    for member in eligible:
        reply = answers.get(member)
        if isinstance(reply, StatusReply):
            when = dt.datetime.fromtimestamp(reply.last_block_ms / 1000, dt.UTC).strftime(
                "%H:%M:%S"
            )
            role = "authority" if reply.is_authority else "observer"
            print(
                f"  {member:6} {role:9} height {reply.height:7}  last block {when} UTC  "
                f"mempool {reply.mempool:5}  contracts {reply.open_contracts}"
            )
        elif member in authorities:
            print(f"  {member:6} DOWN ({reply})")
    if newest and newest.governance:
        print("governance:")
        for event in newest.governance[-10:]:
            print(f"  height {event.height:6}  {event.action:9} {event.member:10} {event.reason}")
    print(health.line())
    return 0 if health.healthy else 1


@dataclass(frozen=True)
class Health:
    healthy: bool
    quorum: bool
    """Enough authorities answer to finalise blocks."""
    tolerates: int
    """How many faulty authorities the set survives: ``f`` of ``n = 3f + 1``."""
    problems: tuple[str, ...]
    size: int

    def line(self) -> str:
        if self.healthy:
            return f"healthy: {self.size} authorities tolerate {self.tolerates} faulty"
        return ("degraded: " if self.quorum else "UNHEALTHY: ") + "; ".join(self.problems)


def assess(authorities: Sequence[str], candidates: Sequence[str], up: Mapping[str, Any]) -> Health:
    """Healthy only with every authority answering and keeping up, and a set that survives a
    faulty member: three authorities finalise blocks but tolerate no fault at all."""
    from rfq.ledger.block import quorum

    size = len(authorities)
    tolerates = (size - 1) // 3
    serving = [a for a in authorities if a in up]
    has_quorum = len(serving) >= quorum(size) if size else False
    problems: list[str] = []
    if not has_quorum:
        problems.append(f"{len(serving)} of {size} authorities answer, a quorum is {quorum(size)}")
    if tolerates == 0:
        waiting = f"candidates {', '.join(candidates)}" if candidates else "no candidates"
        problems.append(f"{size} authorities tolerate 0 faulty, {waiting}")
    top = max((reply.height for reply in up.values()), default=0)
    for authority in authorities:
        if authority not in up:
            problems.append(f"{authority} not answering")
        elif up[authority].height < top - BEHIND_BLOCKS:
            problems.append(f"{authority} behind (height {up[authority].height} of {top})")
    return Health(
        healthy=not problems,
        quorum=has_quorum,
        tolerates=tolerates,
        problems=tuple(problems),
        size=size,
    )
