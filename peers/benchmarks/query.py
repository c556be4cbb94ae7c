"""``botc bench query``: a query's round trip with and without its proof (p50, p99).

A temporary network and nats-server, four authority processes (as ``botc bench chain``),
``--trades`` trades committed first (so the maps hold that many trades and committed ids).
Then the regulator (it may read every trade) asks, ``--rounds`` times each, three queries in
two ways, taking turns so that both see the same load:

- ``plain``: the answer as an authority gives it (``LedgerClient(verify=False)``);
- ``proven``: with the final header, its commit seals and a witness per row, checked by the
  light client (``rfq.ledger.light``) before it is taken: seals, root parts, every witness.

The queries: ``status`` (the header and governance only), ``trades`` (a page of ``--page``
trades, each with its witness) and ``receipt`` (one transaction's
receipt, with the witness of its id in ``committed``). Reported per query and way: round
trip p50 and p99 (ms, the request to a checked answer) and the answer's size (bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import msgspec

from peers.benchmarks import serve
from peers.benchmarks.chain import _presign, running_authorities
from peers.benchmarks.rfq import percentile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trades", type=int, default=2000, help="trades first (default 2000)")
    parser.add_argument("--rounds", type=int, default=200, help="queries each (default 200)")
    parser.add_argument("--page", type=int, default=100, help="payments a page (default 100)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


async def _measure(net: Any, servers: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from peers.ledger_client import LedgerClient
    from peers.runtime import open_bus
    from rfq.queries import Query, ReceiptsQuery, StatusQuery, TradesQuery

    genesis = net.genesis()
    txs = _presign(net, args.trades)
    clients = sorted({c for c, _ in txs})
    buses = {c: await open_bus(net, c, servers=servers) for c in clients}
    ledgers = {c: await LedgerClient(buses[c], genesis).start() for c in clients}
    last = ""
    for client, accept in txs:
        last = await ledgers[client].submit(accept)
    await ledgers[txs[-1][0]].wait(last, timeout=max(60.0, args.trades / 50))
    for ledger in ledgers.values():
        await ledger.close()
    reg_bus = await open_bus(net, "REG", servers=servers)
    queries: dict[str, Query] = {
        "status": StatusQuery(),
        "trades": TradesQuery(limit=args.page),
        "receipt": ReceiptsQuery((last,)),
    }
    times: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    plain = await LedgerClient(reg_bus, genesis, verify=False).start()
    proven = await LedgerClient(reg_bus, genesis).start()
    for _ in range(args.rounds):
        for name, query in queries.items():
            for way, ledger in (("plain", plain), ("proven", proven)):
                started = time.perf_counter()
                reply = await ledger.query(query)
                times.setdefault(f"{name}_{way}", []).append((time.perf_counter() - started) * 1000)
                sizes[f"{name}_{way}"] = len(msgspec.msgpack.encode(reply))
    out: dict[str, Any] = {
        key: {
            "p50_ms": round(statistics.median(values), 2),
            "p99_ms": round(percentile(values, 99), 2),
            "bytes": sizes[key],
        }
        for key, values in times.items()
    }
    out["dropped"] = dict(proven.dropped)
    await plain.close()
    await proven.close()
    await reg_bus.close()
    for bus in buses.values():
        await bus.close()
    return out


def run(args: argparse.Namespace) -> int:
    from peers.errors import CliError
    from peers.netdir import create_network
    from rfq.identity import NetworkParams

    if args.trades < 1 or args.rounds < 1 or args.page < 1:
        raise CliError("--trades, --rounds and --page must be >= 1")
    with tempfile.TemporaryDirectory(prefix="botc-query-") as tmp:
        net = create_network(
            Path(tmp) / "net",
            clients=5,
            params=NetworkParams(block_time_ms=30, idle_block_ms=1000, mempool_max=200_000),
        )
        with ExitStack() as stack:
            servers = serve(stack, net, Path(tmp) / "nats")
            stack.enter_context(running_authorities(net, servers, None))
            result = asyncio.run(_measure(net, servers, args))
    result = {"trades": args.trades, "rounds": args.rounds, "page": args.page, **result}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.trades} trades on chain, {args.rounds} queries each, pages of {args.page}")
    print(f"  {'query':<18}{'p50 ms':>10}{'p99 ms':>10}{'bytes':>10}")
    for key, row in result.items():
        if isinstance(row, dict) and "p50_ms" in row:
            print(f"  {key:<18}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['bytes']:>10}")
    if result.get("dropped"):
        print(f"  dropped {result['dropped']}")
    return 0
