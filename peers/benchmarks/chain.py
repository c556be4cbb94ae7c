"""``botc bench chain``: committed transactions per second and finality latency.

A temporary network and nats-server; ``--authorities`` authority nodes, each in its own
process (the deployment shape: one node per institution); pre-signed trade transactions (a
client's accept carrying a dealer's signed quote: two signatures to verify, a contract to
open, initial margin to book) submitted as fast as the network accepts them, keeping at most
``--window`` in flight. Reported:

- ``tps``: committed transactions / seconds from the first submission to the last commit;
- ``finality_p50_ms`` / ``finality_p99_ms``: submission to the receipt of the final block;
- ``verify_per_s``: single-core Ed25519 verifications per second in this process (libsodium),
  the same-run reference: every authority verifies each trade's two signatures, so
  ``tps / verify_per_s`` shows how close the chain runs to its cryptographic floor;
- ``tps_at`` (with ``--at N``): the rate over the ``AT_WINDOW`` commits after the N-th, so one
  run shows whether throughput holds as the chain fills (``--tx 70000 --at 1000 --at 60000``,
  so that the window ends well before the last commits, whose drain measures nothing).

``--tls`` runs every connection over TLS; ``--paired`` runs without TLS and with it in one
invocation, in the order plain, TLS, TLS, plain (half of ``--tx`` each, so a load drifting
during the run weighs on both alike), and reports ``tls_over_plain_tps`` and
``tls_over_plain_finality_p50``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peers.benchmarks import serve
from peers.benchmarks.rfq import percentile
from rfq.signing import tx_id

if TYPE_CHECKING:
    from peers.netdir import NetDir


TX_TTL_S = 15 * 60
"""How long a quote and a transaction of the bench stay valid."""
AT_WINDOW = 4_000
"""Commits over which ``--at`` measures a rate."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--authorities", type=int, default=4, help="authority nodes (>= 4)")
    parser.add_argument("--tx", type=int, default=20_000, help="transactions (default 20000)")
    parser.add_argument("--window", type=int, default=600, help="most in flight (default 600)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--at",
        type=int,
        action="append",
        metavar="N",
        help=f"also the rate while the chain holds N trades: the {AT_WINDOW:,} commits after "
        "the N-th (repeatable; e.g. --tx 70000 --at 1000 --at 60000)",
    )
    parser.add_argument(
        "--profile", metavar="DIR", default=None, help="write a cProfile dump per authority"
    )
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="every connection over TLS")
    tls.add_argument(
        "--paired", action="store_true", help="without TLS, then with it; report both and ratios"
    )


def _authority(
    netdir: str, servers: list[str], member: str, ready: Any, profile: str | None
) -> None:
    from peers.logging import configure_logging

    configure_logging("warning")
    if profile is None:
        asyncio.run(_serve(Path(netdir), servers, member, ready))
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(_serve(Path(netdir), servers, member, ready))
    finally:
        profiler.disable()
        Path(profile).mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(Path(profile) / f"{member}.prof"))


async def _serve(netdir: Path, servers: list[str], member: str, ready: Any) -> None:
    from peers.authority.node import AuthorityNode
    from peers.netdir import NetDir
    from peers.runtime import open_bus

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    net = NetDir(netdir)
    bus = await open_bus(net, member, servers=servers)
    node = await AuthorityNode(bus, net.genesis(), net.data_dir(member)).start()
    ready.put(member)
    await stop.wait()
    await node.stop()
    await bus.close()


def verify_rate(seconds: float = 1.0) -> float:
    """Single-core Ed25519 verifications per second (libsodium, 300-byte messages)."""
    from rfq.identity import Identity, Role, verify_signature

    identity = Identity.generate("X", Role.CLIENT)
    key = identity.sign_key.verify_key
    message = os.urandom(300)
    signature = identity.sign(message)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(200):
            verify_signature(key, signature, message)
        count += 200
    return count / (time.perf_counter() - started)


def _presign(net: Any, count: int) -> list[tuple[str, Any]]:
    """(client, accept) pairs: trades spread over the clients and dealers, each dealer's
    quote signed up front. The client signs its accept as it sends it (``_drive``), as a
    client does: the bus refuses a message whose nonce is more than its replay window (60 s)
    behind the sender's newest, and the clients' own queries carry current nonces, so a
    transaction signed long before it is sent would be dropped as a replay."""
    import datetime as dt

    from rfq.clock import utc_today
    from rfq.instruments import Leg, Side, Template, Terms, listed_futures
    from rfq.messages import Accept, Quote
    from rfq.signing import sign_payload

    genesis = net.genesis()
    clients = [m.id for m in genesis.members if m.role == "client"]
    dealers = [m.id for m in genesis.members if m.role == "dealer"]
    keys = {m: net.identity(m) for m in clients + dealers}
    today = utc_today()
    terms = Terms(
        Template.PRICE_SWAP,
        (Leg(listed_futures("RB", today)[-1].id),),
        Side.BUY,
        100,
        today,
        today + dt.timedelta(days=90),
    )
    now = int(time.time() * 1000)
    ttl = TX_TTL_S * 1000
    out = []
    for i in range(count):
        client, dealer = clients[i % len(clients)], dealers[i % len(dealers)]
        rfq_id = f"bench-{i}"
        quote = Quote(
            f"{rfq_id}-{dealer}",
            rfq_id,
            client,
            dealer,
            terms,
            3200.0 + i % 50,
            now + ttl,
            0.0,
            0.0,
        )
        signed_quote = sign_payload(
            keys[dealer],
            quote,
            chain_id=genesis.chain_id,
            nonce=now * 1000 + i,
            timestamp_ms=now,
            expires_ms=now + ttl,
        )
        out.append((client, Accept(rfq_id, quote.id, client, dealer, signed_quote)))
    return out


async def _drive(
    net: Any, servers: list[str], txs: list[tuple[str, Any]], window: int
) -> dict[str, Any]:
    from bus import subjects
    from peers.ledger_client import LedgerClient
    from peers.runtime import open_bus

    genesis = net.genesis()
    clients = sorted({c for c, _ in txs})
    ledgers = {}
    for client in clients:
        ledgers[client] = await LedgerClient(
            await open_bus(net, client, servers=servers), genesis
        ).start()
    submitted: dict[str, float] = {}
    finality: list[float] = []
    commit_times: list[float] = []
    refused: dict[str, int] = {}
    done = asyncio.Event()
    in_flight = asyncio.Semaphore(window)
    last_commit = [0.0]

    def on_receipt(receipt: Any) -> None:
        started = submitted.pop(receipt.tx_id, None)
        if started is None:
            return
        in_flight.release()
        if receipt.ok:
            last_commit[0] = time.perf_counter()
            finality.append((last_commit[0] - started) * 1000)
            commit_times.append(last_commit[0])
        else:
            refused[receipt.reason] = refused.get(receipt.reason, 0) + 1
        if len(finality) + sum(refused.values()) == len(txs):
            done.set()

    for ledger in ledgers.values():
        ledger.listeners.append(on_receipt)
    first = time.perf_counter()
    for client, accept in txs:
        await in_flight.acquire()
        data = ledgers[client].bus.outbox.encode(accept, ttl_s=TX_TTL_S)
        submitted[tx_id(data).hex()] = time.perf_counter()
        await ledgers[client].bus.nc.publish(subjects.tx(client), data)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=max(120.0, len(txs) / 100))
    elapsed = (last_commit[0] or time.perf_counter()) - first
    for ledger in ledgers.values():
        await ledger.bus.close()
    return {
        "committed": len(finality),
        "refused": refused,
        "lost": len(submitted),
        "seconds": elapsed,
        "finality": finality,
        "commit_times": commit_times,
    }


def run(args: argparse.Namespace) -> int:
    from peers.errors import CliError

    if args.authorities < 4 or args.tx < 1 or args.window < 1:
        raise CliError("--authorities must be >= 4, --tx and --window >= 1")
    if args.at and (args.paired or max(args.at) + AT_WINDOW > args.tx or min(args.at) < 0):
        raise CliError(f"--at N needs one run (not --paired) and N + {AT_WINDOW} <= --tx")
    if not args.paired:
        result = measure(args, tls=args.tls)
        print(json.dumps(result) if args.json else _report(result))
        return 0
    # A B B A: plaintext, TLS, TLS, plaintext, each with half the transactions, so a load
    # that drifts during the run weighs on both alike.
    half = max(1, args.tx // 2)
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for tls_on in (False, True, True, False):
        runs[tls_on].append(_run_once(args, tls=tls_on, tx=half))
    plain, tls = _summary(args, False, runs[False]), _summary(args, True, runs[True])

    def ratio(key: str) -> float | None:
        a, b = tls[key], plain[key]
        return round(a / b, 3) if a is not None and b else None

    paired = {
        "plain": plain,
        "tls": tls,
        "tls_over_plain_tps": ratio("tps"),
        "tls_over_plain_finality_p50": ratio("finality_p50_ms"),
        "tls_over_plain_finality_p99": ratio("finality_p99_ms"),
    }
    if args.json:
        print(json.dumps(paired))
    else:
        print(_report(plain))
        print(_report(tls))
        print(
            f"TLS over plaintext: tps x{paired['tls_over_plain_tps']}, "
            f"finality p50 x{paired['tls_over_plain_finality_p50']}, "
            f"p99 x{paired['tls_over_plain_finality_p99']}"
        )
    return 0


def measure(args: argparse.Namespace, *, tls: bool) -> dict[str, Any]:
    """One run on a temporary network (with TLS or without)."""
    return _summary(args, tls, [_run_once(args, tls=tls, tx=args.tx)])


@contextlib.contextmanager
def running_authorities(net: NetDir, servers: list[str], profile: str | None) -> Iterator[None]:
    """The genesis authorities, one process each, ready (caught up) on entry, stopped on exit."""
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    procs = [
        ctx.Process(
            target=_authority, args=(str(net.path), servers, m, ready, profile), daemon=True
        )
        for m in net.genesis().authorities.initial
    ]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=60)
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(15)


def _run_once(args: argparse.Namespace, *, tls: bool, tx: int) -> dict[str, Any]:
    """A temporary network, its authorities, ``tx`` transactions: the raw outcome."""
    from peers.netdir import create_network
    from peers.runtime import keep_out_of_full_collections
    from rfq.identity import NetworkParams

    with tempfile.TemporaryDirectory(prefix="botc-chain-") as tmp, ExitStack() as stack:
        net = create_network(
            Path(tmp) / "net",
            dealers=args.authorities - 1,
            clients=5,
            authorities=args.authorities,
            params=NetworkParams(block_time_ms=30, idle_block_ms=1000, mempool_max=200_000),
            tls=tls,
        )
        servers = serve(stack, net, Path(tmp) / "nats")
        txs = _presign(net, tx)
        keep_out_of_full_collections()  # the driver's presigned load
        stack.enter_context(running_authorities(net, servers, args.profile))
        outcome = asyncio.run(_drive(net, servers, txs, args.window))
    outcome["verify_per_s"] = verify_rate()
    outcome["tx"] = tx
    return outcome


def _summary(args: argparse.Namespace, tls: bool, outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one or more runs in the same mode, taken together."""
    finality = [f for o in outcomes for f in o["finality"]]
    committed = sum(o["committed"] for o in outcomes)
    seconds = sum(o["seconds"] for o in outcomes)
    refused: dict[str, int] = {}
    for o in outcomes:
        for reason, count in o["refused"].items():
            refused[reason] = refused.get(reason, 0) + count
    rate = statistics.mean(o["verify_per_s"] for o in outcomes)
    tps = committed / seconds if seconds > 0 else 0.0
    times = outcomes[0]["commit_times"]
    tps_at = {
        str(n): round(AT_WINDOW / (times[n + AT_WINDOW - 1] - times[n - 1 if n else 0]), 1)
        for n in getattr(args, "at", None) or ()
        if n + AT_WINDOW <= len(times)
    }
    return {
        "authorities": args.authorities,
        "tx": sum(o["tx"] for o in outcomes),
        "tls": tls,
        "runs": len(outcomes),
        "committed": committed,
        "refused": refused,
        "lost": sum(o["lost"] for o in outcomes),
        "seconds": round(seconds, 2),
        "tps": round(tps, 1),
        "finality_p50_ms": round(statistics.median(finality), 1) if finality else None,
        "finality_p99_ms": round(percentile(finality, 99), 1) if finality else None,
        "verify_per_s": round(rate, 1),
        "tps_per_verify_rate": round(tps / rate, 4),
        "tps_at": tps_at,
        "target": {"tps": 1500, "finality_p50_ms": 250},
    }


def _report(result: dict[str, Any]) -> str:
    over = "over TLS" if result["tls"] else "plaintext"
    lines = [
        f"{result['authorities']} authorities, {over}, {result['committed']} of {result['tx']} "
        f"committed in {result['seconds']:.1f} s",
        f"  tps              {result['tps']:10.1f}   (target >= 1500)",
        f"  finality p50     {result['finality_p50_ms']} ms   (target < 250)",
        f"  finality p99     {result['finality_p99_ms']} ms",
        f"  verify/s (1 core){result['verify_per_s']:10.1f}   tps/verify "
        f"{result['tps_per_verify_rate']:.3f}",
    ]
    for n, at in result["tps_at"].items():
        lines.append(f"  tps at {int(n):>7,} trades on chain {at:10.1f}")
    if result["refused"] or result["lost"]:
        lines.append(f"  refused {result['refused']}  no receipt {result['lost']}")
    return "\n".join(lines)
