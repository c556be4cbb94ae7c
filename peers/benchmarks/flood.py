"""``botc bench flood``: other clients' RFQ round trips while one client floods RFQs.

Layout: the dealer bots in ``--workers`` processes, the oracle and the measuring client (C2)
in this process, the flooding client (C1) in a process of its own, all through one
nats-server with the network's nkey authentication and permissions. The flood is the real
attack: validly signed RFQs (signed before the clock starts) with live deadlines, published
on a public RFQ subject every dealer listens to, at ``--rate`` messages a second.

Measured in one run: C2's round trip (RFQ sent to every dealer's answer held) for
``--seconds`` without the flood (the baseline), then for ``--seconds`` during it; the
dealers' resident memory before and after the flood; what the dealers dropped. Targets:
p50 and p99 during the flood within 2x the baseline's, and the dealers' memory flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from peers.benchmarks import add_network_choice, serve
from peers.benchmarks.rfq import _bench_terms, percentile

DEFAULT_RATE = 10_000.0
DEFAULT_SECONDS = 10.0
FLOODER = "C1"
CLIENT = "C2"
TARGET_RATIO = 2.0
DEFAULT_CLIENT_RATE = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_network_choice(parser)
    parser.add_argument("--dealers", type=int, default=3, help="dealers answering (default 3)")
    parser.add_argument(
        "--rate", type=float, default=DEFAULT_RATE, help="flood messages a second (10,000)"
    )
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS, help="baseline and flood, each (10)"
    )
    parser.add_argument(
        "--workers", type=int, default=max((os.cpu_count() or 2) - 1, 1), help="dealer processes"
    )
    parser.add_argument(
        "--client-rate",
        type=float,
        default=DEFAULT_CLIENT_RATE,
        help="C2's RFQs a second (10; an honest client stays within the dealers' rate)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


# -- the flooder (a process of its own) -------------------------------------------------------


def start_flooder(
    netdir: Path, servers: list[str], *, rate: float, seconds: float, client: str = FLOODER
) -> tuple[Any, Any, Any]:
    """A process that signs ``rate * seconds`` RFQs as ``client``, then, once its ``go``
    event is set, publishes them at ``rate``; returns (process, go, results queue). The
    queue gets ``"ready"`` when signed and connected, then the rate achieved."""
    ctx = mp.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=_flooder,
        args=(str(netdir), servers, client, rate, seconds, go, results),
        daemon=True,
    )
    proc.start()
    return proc, go, results


def _flooder(
    netdir: str,
    servers: list[str],
    client: str,
    rate: float,
    seconds: float,
    go: Any,
    results: Any,
) -> None:
    from peers.logging import configure_logging

    configure_logging("error")
    asyncio.run(_flood(Path(netdir), servers, client, rate, seconds, go, results))


async def _flood(
    netdir: Path,
    servers: list[str],
    client: str,
    rate: float,
    seconds: float,
    go: Any,
    results: Any,
) -> None:
    import nats

    from bus import subjects
    from bus.envelope import Outbox
    from peers.netdir import NetDir
    from rfq.clock import utc_today
    from rfq.messages import Rfq

    net = NetDir(netdir)
    identity = net.identity(client)
    outbox = Outbox(identity, net.genesis().chain_id, ttl_s=seconds + 60)
    terms = _bench_terms(utc_today())[0]
    deadline_ms = int(time.time() * 1000) + int((seconds + 60) * 1000)
    count = max(int(rate * seconds), 1)
    rfqs = (
        Rfq(id=f"{client}-flood-{i}", client=client, terms=terms, deadline_ms=deadline_ms)
        for i in range(count)
    )
    messages = [outbox.encode(rfq) for rfq in rfqs]
    subject = subjects.rfq_public("commodity", terms.legs[0].underlying)
    nc = await nats.connect(
        servers=servers,
        nkeys_seed_str=identity.nkey_seed,
        inbox_prefix=subjects.inbox_prefix(client),
    )
    results.put("ready")
    await asyncio.to_thread(go.wait)
    started = time.perf_counter()
    batch = max(1, int(rate / 500))  # 2 ms slices
    for i in range(0, count, batch):
        for data in messages[i : i + batch]:
            await nc.publish(subject, data)
        lag = started + (i + batch) / rate - time.perf_counter()
        await asyncio.sleep(max(lag, 0))
    await nc.flush()
    results.put(count / (time.perf_counter() - started))
    await nc.close()


# -- the dealers (worker processes) -----------------------------------------------------------


def _worker(netdir: str, servers: list[str], members: list[str], ready: Any, out: Any) -> None:
    from peers.logging import configure_logging

    configure_logging("error")
    asyncio.run(_serve(Path(netdir), servers, members, ready, out))


async def _serve(
    netdir: Path, servers: list[str], members: list[str], ready: Any, out: Any
) -> None:
    """Dealer bots (sharing one market cache) until SIGTERM; then report their counts."""
    from peers.dealer import DealerBot
    from peers.market import MarketData
    from peers.netdir import NetDir
    from peers.runtime import open_bus

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    net = NetDir(netdir)
    market = MarketData()
    bots = []
    for i, member in enumerate(members):
        bus = await open_bus(net, member, servers=servers)
        bot = DealerBot(bus, net.genesis(), market=market, credit_limit=1e18, attach_market=i == 0)
        bots.append(await bot.start())
    ready.put(os.getpid())
    await stop.wait()
    cpu_s = time.process_time() / len(bots)
    for bot in bots:
        out.put(
            {
                "dealer": bot.me,
                "verifier_drops": dict(bot.bus.verifier.drops),
                "queue_drops": bot.stats["rate_limited"],
                "rfqs_priced": bot.stats["rfqs"],
                "cpu_s": round(cpu_s, 2),
            }
        )
        await bot.close()
        await bot.bus.close()


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux ``/proc``; 0 where unavailable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# -- the measuring client (this process) ------------------------------------------------------


async def _answered(handle: Any, dealers: frozenset[str]) -> bool:
    """Wait until every one of ``dealers`` answered (False: the deadline came first)."""
    got: set[str] = set()
    async for answer in handle:
        got.add(answer.dealer)
        if dealers <= got:
            break
    handle.cancelled = True  # done listening: the dealers not measured are not missed
    return dealers <= got


async def _round_trips(
    session: Any, terms: list[Any], dealers: frozenset[str], seconds: float, per_s: float
) -> list[float]:
    """C2's round trips, ``per_s`` a second, for ``seconds``; a missing answer counts as the
    whole deadline (5 s)."""
    times: list[float] = []
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        started = time.perf_counter()
        handle = await session.send_rfq(terms[len(times) % len(terms)], deadline_s=5)
        answered = await _answered(handle, dealers)
        elapsed = (time.perf_counter() - started) * 1000
        times.append(elapsed if answered else 5000.0)
        await asyncio.sleep(max(started + 1 / per_s - time.perf_counter(), 0))
    return times


async def _measure(
    net: Any,
    servers: list[str],
    dealers: list[str],
    workers: int,
    rate: float,
    seconds: float,
    client_rate: float,
) -> dict[str, Any]:
    from peers.counterparty import ClientSession
    from peers.oracle import OracleService, Simulator
    from peers.runtime import open_bus
    from rfq.clock import utc_today

    oracle = OracleService(await open_bus(net, "ORACLE", servers=servers))
    sim = Simulator(start=utc_today(), seed=1, ticks_per_day=2)
    oracle.history = {k: list(v) for k, v in sim.history.items()}
    await oracle.start()
    flooder, go, flood_results = start_flooder(net.path, servers, rate=rate, seconds=seconds)
    procs, pids, out = await asyncio.to_thread(_start_workers, net.path, servers, dealers, workers)
    for price in sim.ticks():
        await oracle.publish(price)
    await oracle.bus.flush()
    bus = await open_bus(net, CLIENT, servers=servers)
    session = ClientSession(bus, net.genesis(), submit_accepts=False)
    await session.start()
    await session.market.attach(bus)
    terms = _bench_terms(session.market.today)
    reports: list[dict[str, Any]] = []
    try:
        n = frozenset(dealers)
        await _round_trips(session, terms, n, min(seconds, 2.0), client_rate)  # warm up
        baseline = await _round_trips(session, terms, n, seconds, client_rate)
        rss_before = {pid: rss_bytes(pid) for pid in pids}
        if await asyncio.to_thread(flood_results.get, True, 120) != "ready":
            raise RuntimeError("the flooder did not start")
        go.set()
        flooded = await _round_trips(session, terms, n, seconds, client_rate)
        achieved = await asyncio.to_thread(flood_results.get, True, seconds + 60)
        rss_after = {pid: rss_bytes(pid) for pid in pids}
    finally:
        await bus.close()
        await oracle.bus.close()
        reports = await asyncio.to_thread(_stop_workers, procs, out, len(dealers))
        flooder.terminate()
        flooder.join(10)
    return {
        "baseline": baseline,
        "flooded": flooded,
        "achieved_rate": achieved,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "dealers": reports,
    }


def _start_workers(
    netdir: Path, servers: list[str], dealers: list[str], workers: int
) -> tuple[list[Any], list[int], Any]:
    ctx = mp.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    shares = [dealers[i::workers] for i in range(workers)]
    procs = [
        ctx.Process(target=_worker, args=(str(netdir), servers, share, ready, out), daemon=True)
        for share in shares
        if share
    ]
    for p in procs:
        p.start()
    pids = [ready.get(timeout=60) for _ in procs]
    return procs, pids, out


def _stop_workers(procs: list[Any], out: Any, dealers: int) -> list[dict[str, Any]]:
    for p in procs:
        p.terminate()
    reports = []
    try:
        for _ in range(dealers):
            reports.append(out.get(timeout=20))
    except Exception:  # a worker that died reports nothing; the others still count
        pass
    for p in procs:
        p.join(10)
    return reports


def run(args: argparse.Namespace) -> int:
    from peers.errors import CliError
    from peers.netdir import NetDir, create_network

    if args.dealers < 1 or args.workers < 1:
        raise CliError("--dealers and --workers must be >= 1")
    if not (args.rate > 0 and args.seconds > 0 and args.client_rate > 0):
        raise CliError("--rate, --seconds and --client-rate must be positive")
    with ExitStack() as stack:
        if args.embedded:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="botc-bench-")))
            net = create_network(tmp / "net", dealers=max(args.dealers, 3), clients=2)
            servers = serve(stack, net, tmp / "nats")
        else:
            net = NetDir(args.net)
            servers = net.server_urls()
        genesis = net.genesis()
        dealers = [m.id for m in genesis.members if m.role == "dealer"][: args.dealers]
        if len(dealers) < args.dealers:
            raise CliError(f"{net.path} has {len(dealers)} dealers, --dealers asks {args.dealers}")
        for member in (FLOODER, CLIENT):
            if not any(m.id == member for m in genesis.members):
                raise CliError(f"{net.path} has no client {member} (the flood needs C1 and C2)")
        workers = min(args.workers, len(dealers))
        measured = asyncio.run(
            _measure(net, servers, dealers, workers, args.rate, args.seconds, args.client_rate)
        )
    result = summarise(measured, rate=args.rate, dealers=len(dealers), workers=workers)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"C2's RFQ to {len(dealers)} dealers while C1 floods {result['flood_rate']:,.0f} "
            f"RFQs/s ({workers} dealer processes)"
        )
        for label, key in (("baseline", "baseline"), ("flood", "flood")):
            print(
                f"  {label:9} p50 {result[key + '_p50_ms']:8.2f} ms   "
                f"p99 {result[key + '_p99_ms']:8.2f} ms   ({result[key + '_rounds']} rounds)"
            )
        print(
            f"  ratio p50 {result['ratio_p50']:.2f}  p99 {result['ratio_p99']:.2f}"
            f"  (target <= {TARGET_RATIO:.0f})"
        )
        print(
            f"  dealer RSS {result['rss_before_mb']:.1f} MB before, "
            f"{result['rss_after_mb']:.1f} MB after"
        )
        print(
            f"  flood dropped: {result['dropped_rate']:,} by rate before the signature check, "
            f"{result['dropped_queue']:,} from full client queues; {result['flood_priced']:,} "
            "priced"
        )
    return 0


def summarise(
    measured: dict[str, Any], *, rate: float, dealers: int, workers: int
) -> dict[str, Any]:
    base, flood = measured["baseline"], measured["flooded"]
    reports = measured["dealers"]
    mb = 1024 * 1024
    return {
        "dealers": dealers,
        "workers": workers,
        "target_rate": rate,
        "flood_rate": round(measured["achieved_rate"], 1),
        "baseline_rounds": len(base),
        "flood_rounds": len(flood),
        "baseline_p50_ms": round(statistics.median(base), 3),
        "baseline_p99_ms": round(percentile(base, 99), 3),
        "flood_p50_ms": round(statistics.median(flood), 3),
        "flood_p99_ms": round(percentile(flood, 99), 3),
        "ratio_p50": round(statistics.median(flood) / statistics.median(base), 3),
        "ratio_p99": round(percentile(flood, 99) / percentile(base, 99), 3),
        "rss_before_mb": round(sum(measured["rss_before"].values()) / mb, 1),
        "rss_after_mb": round(sum(measured["rss_after"].values()) / mb, 1),
        "dropped_rate": sum(r["verifier_drops"].get("rate_limited", 0) for r in reports),
        "dropped_queue": sum(r["queue_drops"] for r in reports),
        "flood_priced": sum(r["rfqs_priced"] for r in reports),
        "dealer_cpu_s": round(sum(r["cpu_s"] for r in reports), 2),
        "target": {"ratio_p50": TARGET_RATIO, "ratio_p99": TARGET_RATIO, "rss": "flat"},
    }
