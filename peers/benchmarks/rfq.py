"""``botc bench rfq``: time from sending an RFQ to holding every dealer's answer.

Both measurements run in the same layout: the client in this process, the responders spread
over ``--workers`` processes (one per core by default), all through one nats-server with the
network's nkey authentication and permissions.

- **rfq**: the real thing. A client session sends a public RFQ (signed); each dealer bot
  verifies it, prices it with the default strategy (forwards, Black-76 with GARCH vol, credit
  charge), signs and seals a quote to the client; the session opens, verifies and checks each
  quote. Terms rotate over a price swap, a spread swap and an option.
- **baseline**: the floor. A plain nats-py client publishes a 200-byte payload with an Ed25519
  signature on the same subject; each responder verifies it, signs a 200-byte reply and
  publishes it; the client verifies every reply.

Both kinds of responder run side by side and the client alternates one baseline round with
one RFQ round, so on a shared, noisy machine each pair of measurements sees the same load.
Reported: p50 and p99 of each, and ``ratio_p50 = p50 / baseline_p50``.

``--tls`` runs the embedded network with TLS (every connection, the baseline's too; a ``--net``
network follows its own NETDIR/nats/tls). ``--paired`` runs the same measurement without TLS and
then with it, in one run (two nats-servers, one plaintext and one TLS, each with its own
responders, their rounds interleaved), and reports ``tls_over_plain_p50``: what TLS costs an RFQ.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from peers.benchmarks import add_network_choice, serve

DEFAULT_ROUNDS = 300
BENCH_RFQ_RATE = 2000.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_network_choice(parser)
    parser.add_argument("--dealers", type=int, default=10, help="dealers answering (default 10)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="measured RFQs")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured RFQs first")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="responder processes"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="the embedded network over TLS")
    tls.add_argument(
        "--paired",
        action="store_true",
        help="the embedded network without TLS, then with it; report both and their ratio",
    )


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# -- responders (worker processes) ------------------------------------------------------------


def _worker(netdir: str, servers: list[str], members: list[str], ready: Any) -> None:
    """Entry point of a responder process: serve until SIGTERM."""
    from peers.logging import configure_logging

    configure_logging("error")
    asyncio.run(_serve(Path(netdir), servers, members, ready))


async def _serve(netdir: Path, servers: list[str], members: list[str], ready: Any) -> None:
    """A baseline responder and a dealer bot for each member (sharing one market cache)."""
    from peers.dealer import DealerBot
    from peers.market import MarketData
    from peers.netdir import NetDir
    from peers.runtime import open_bus

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    net = NetDir(netdir)
    market = MarketData()
    closers = []
    for i, member in enumerate(members):
        closers.append(await _baseline_responder(net, servers, member))
        bus = await open_bus(net, member, servers=servers)
        bot = DealerBot(
            bus,
            net.genesis(),
            market=market,
            credit_limit=1e18,
            attach_market=i == 0,
            rfq_rate_per_s=BENCH_RFQ_RATE,  # one client asking back to back: no flood
            rfq_burst=int(BENCH_RFQ_RATE),
        )
        await bot.start()
        closers.append(bus.close)
    ready.put(len(members))
    await stop.wait()
    for close in closers:
        await close()


async def _baseline_responder(net: Any, servers: list[str], member: str) -> Any:
    import nats

    from bus import subjects
    from bus.tls import connect_options
    from rfq.identity import verify_signature

    identity = net.identity(member)
    client_key = net.genesis().member("C1").verify_key
    nc = await nats.connect(
        **connect_options(net.tls()),
        servers=servers,
        nkeys_seed_str=identity.nkey_seed,
        inbox_prefix=subjects.inbox_prefix(member),
    )
    # 200 bytes naming the responder (as an envelope's sender field does), then the signature.
    reply_payload = member.encode().ljust(16, b"\0") + os.urandom(184)

    async def on_request(msg: Any) -> None:
        payload, signature = msg.data[:-64], msg.data[-64:]
        if not verify_signature(client_key, signature, payload):
            return
        await nc.publish(
            subjects.quote("C1", "bench"), reply_payload + identity.sign(reply_payload)
        )

    await nc.subscribe(subjects.rfq_public("commodity", "BENCH"), cb=on_request)
    await nc.flush()
    return nc.close


# -- the client (this process) ----------------------------------------------------------------


class _BaselineClient:
    """Plain nats-py: publish a signed 200-byte payload, verify every signed reply."""

    def __init__(self, net: Any, servers: list[str], dealers: list[str]) -> None:
        self.net, self.servers, self.dealers = net, servers, dealers
        self.identity = net.identity("C1")
        self.keys = {
            d.encode().ljust(16, b"\0"): net.genesis().member(d).verify_key for d in dealers
        }
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    async def open(self) -> None:
        import nats

        from bus import subjects
        from bus.tls import connect_options

        self.nc = await nats.connect(
            **connect_options(self.net.tls()),
            servers=self.servers,
            nkeys_seed_str=self.identity.nkey_seed,
            inbox_prefix=subjects.inbox_prefix("C1"),
        )

        async def on_reply(msg: Any) -> None:
            self.replies.put_nowait(msg.data)

        await self.nc.subscribe(subjects.quote("C1", "bench"), cb=on_reply)
        await self.nc.flush()

    async def round(self) -> float:
        from bus import subjects
        from rfq.identity import verify_signature

        started = time.perf_counter()
        payload = os.urandom(200)
        await self.nc.publish(
            subjects.rfq_public("commodity", "BENCH"), payload + self.identity.sign(payload)
        )
        for _ in self.dealers:
            data = await asyncio.wait_for(self.replies.get(), 5)
            body, signature = data[:-64], data[-64:]
            if not verify_signature(self.keys[body[:16]], signature, body):
                raise RuntimeError("a baseline reply does not verify")
        return (time.perf_counter() - started) * 1000

    async def close(self) -> None:
        await self.nc.close()


class _RfqClient:
    """A real client session: public RFQs, every dealer's sealed, signed answer."""

    def __init__(self, net: Any, servers: list[str], dealers: list[str]) -> None:
        self.net, self.servers, self.dealers = net, servers, dealers
        self.rounds = 0

    async def open(self) -> None:
        from peers.counterparty import ClientSession
        from peers.runtime import open_bus

        self.bus = await open_bus(self.net, "C1", servers=self.servers)
        self.session = ClientSession(self.bus, self.net.genesis(), submit_accepts=False)
        await self.session.start()
        await self.session.market.attach(self.bus)
        self.terms = _bench_terms(self.session.market.today)

    async def round(self) -> float:
        terms = self.terms[self.rounds % len(self.terms)]
        self.rounds += 1
        started = time.perf_counter()
        handle = await self.session.send_rfq(terms, deadline_s=5)
        answers = await handle.collect()
        elapsed = (time.perf_counter() - started) * 1000
        if len(answers) != len(self.dealers):
            raise RuntimeError(f"RFQ {handle.id}: {len(answers)} of {len(self.dealers)} answers")
        return elapsed

    async def close(self) -> None:
        await self.bus.close()


def _bench_terms(today: dt.date) -> list[Any]:
    from rfq.instruments import Leg, OptionTerms, Side, Template, Terms, listed_futures

    maturity = today + dt.timedelta(days=120)
    rb, hc, sc = (listed_futures(root, today)[-1].id for root in ("RB", "HC", "SC"))
    return [
        Terms(Template.PRICE_SWAP, (Leg(rb),), Side.BUY, 1000, today, maturity),
        Terms(
            Template.SPREAD_SWAP,
            (Leg(hc, 1.0), Leg(rb, -1.0)),
            Side.SELL,
            1000,
            today,
            maturity,
        ),
        Terms(
            Template.EUROPEAN_OPTION,
            (Leg(sc),),
            Side.BUY,
            500,
            today,
            maturity,
            option=OptionTerms("call", 540.0),
        ),
    ]


class _Side:
    """One network's market for the benchmark: an oracle (a year of history, one simulated
    day), the responders in their processes, a baseline client and a real client."""

    def __init__(self, net: Any, servers: list[str], dealers: list[str], workers: int) -> None:
        self.net, self.servers, self.dealers, self.workers = net, servers, dealers, workers
        self.procs: list[Any] = []
        self.base_ms: list[float] = []
        self.real_ms: list[float] = []

    async def open(self) -> None:
        from peers.oracle import OracleService, Simulator
        from peers.runtime import open_bus
        from rfq.clock import utc_today

        net, servers = self.net, self.servers
        self.oracle = OracleService(await open_bus(net, "ORACLE", servers=servers))
        sim = Simulator(start=utc_today(), seed=1, ticks_per_day=2)
        self.oracle.history = {k: list(v) for k, v in sim.history.items()}
        await self.oracle.start()
        self.procs = await asyncio.to_thread(
            _start_workers, net.path, servers, self.dealers, self.workers
        )
        for price in sim.ticks():
            await self.oracle.publish(price)
        await self.oracle.bus.flush()
        self.baseline = _BaselineClient(net, servers, self.dealers)
        self.real = _RfqClient(net, servers, self.dealers)
        await self.baseline.open()
        await self.real.open()

    async def round(self, measured: bool) -> None:
        b, r = await self.baseline.round(), await self.real.round()
        if measured:
            self.base_ms.append(b)
            self.real_ms.append(r)

    async def close(self) -> None:
        for close in (
            getattr(getattr(self, "baseline", None), "close", None),
            getattr(getattr(self, "real", None), "close", None),
        ):
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        oracle = getattr(self, "oracle", None)
        if oracle is not None:
            await oracle.bus.close()
        await asyncio.to_thread(_stop_workers, self.procs)


async def _measure_sides(sides: list[_Side], warmup: int, rounds: int) -> None:
    """Open every side, then alternate their rounds (a baseline and an RFQ round each), so a
    noisy machine's load falls on every side alike."""
    try:
        for side in sides:
            await side.open()
        for i in range(warmup + rounds):
            for side in sides:
                await side.round(i >= warmup)
    finally:
        for side in sides:
            await side.close()


async def _measure(
    net: Any, servers: list[str], dealers: list[str], workers: int, warmup: int, rounds: int
) -> tuple[list[float], list[float]]:
    """One network: alternate baseline and RFQ rounds."""
    side = _Side(net, servers, dealers, workers)
    await _measure_sides([side], warmup, rounds)
    return side.base_ms, side.real_ms


def _start_workers(netdir: Path, servers: list[str], dealers: list[str], workers: int) -> list[Any]:
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    shares = [dealers[i::workers] for i in range(workers)]
    procs = [
        ctx.Process(target=_worker, args=(str(netdir), servers, share, ready), daemon=True)
        for share in shares
        if share
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    return procs


def _stop_workers(procs: list[Any]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(10)


def run(args: argparse.Namespace) -> int:
    from peers.errors import CliError

    if args.dealers < 1 or args.rounds < 1 or args.workers < 1 or args.warmup < 0:
        raise CliError("--dealers, --rounds and --workers must be >= 1, --warmup >= 0")
    if (args.tls or args.paired) and not args.embedded:
        raise CliError("--tls and --paired need --embedded (a --net network follows its own TLS)")
    if not args.paired:
        result = measure(args, tls=args.tls)
        print(json.dumps(result) if args.json else _report(result))
        return 0
    plain, tls = measure_paired(args)
    paired = {
        "plain": plain,
        "tls": tls,
        "tls_over_plain_p50": round(tls["p50_ms"] / plain["p50_ms"], 3),
        "tls_over_plain_p99": round(tls["p99_ms"] / plain["p99_ms"], 3),
        "tls_over_plain_baseline_p50": round(tls["baseline_p50_ms"] / plain["baseline_p50_ms"], 3),
    }
    if args.json:
        print(json.dumps(paired))
    else:
        print(_report(plain))
        print(_report(tls))
        print(
            f"TLS over plaintext: rfq p50 x{paired['tls_over_plain_p50']:.2f}, "
            f"p99 x{paired['tls_over_plain_p99']:.2f}, "
            f"baseline p50 x{paired['tls_over_plain_baseline_p50']:.2f}"
        )
    return 0


def measure_paired(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same network twice in one run: once through a plaintext nats-server, once through
    a TLS one (a copy of the network directory without tls.toml), their rounds interleaved."""
    from peers.netdir import NetDir, create_network

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="botc-bench-")))
        net = create_network(tmp / "tls", dealers=max(args.dealers, 3), clients=1, tls=True)
        shutil.copytree(net.path, tmp / "plain")
        plain = NetDir(tmp / "plain")
        plain.tls_settings_path.unlink()
        plain_servers = serve(stack, plain, tmp / "nats-plain")
        tls_servers = serve(stack, net, tmp / "nats-tls")
        dealers = [m.id for m in net.genesis().members if m.role == "dealer"][: args.dealers]
        workers = min(args.workers, len(dealers))
        sides = [
            _Side(plain, plain_servers, dealers, workers),
            _Side(net, tls_servers, dealers, workers),
        ]
        asyncio.run(_measure_sides(sides, args.warmup, args.rounds))
    plain_side, tls_side = sides
    return (
        _result(args, dealers, workers, False, plain_side.base_ms, plain_side.real_ms),
        _result(args, dealers, workers, True, tls_side.base_ms, tls_side.real_ms),
    )


def measure(args: argparse.Namespace, *, tls: bool) -> dict[str, Any]:
    """One measurement: a temporary network (TLS or not) with ``--embedded``, else ``--net``."""
    from peers.errors import CliError
    from peers.netdir import NetDir, create_network

    with ExitStack() as stack:
        if args.embedded:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="botc-bench-")))
            net = create_network(tmp / "net", dealers=max(args.dealers, 3), clients=1, tls=tls)
            servers = serve(stack, net, tmp / "nats")
        else:
            net = NetDir(args.net)
            servers = net.server_urls()
        genesis = net.genesis()
        dealers = [m.id for m in genesis.members if m.role == "dealer"][: args.dealers]
        if len(dealers) < args.dealers:
            raise CliError(f"{net.path} has {len(dealers)} dealers, --dealers asks {args.dealers}")
        workers = min(args.workers, len(dealers))
        base, real = asyncio.run(_measure(net, servers, dealers, workers, args.warmup, args.rounds))
        tls_on = net.tls() is not None
    return _result(args, dealers, workers, tls_on, base, real)


def _result(
    args: argparse.Namespace,
    dealers: list[str],
    workers: int,
    tls_on: bool,
    base: list[float],
    real: list[float],
) -> dict[str, Any]:
    return {
        "dealers": len(dealers),
        "rounds": args.rounds,
        "workers": workers,
        "tls": tls_on,
        "p50_ms": round(statistics.median(real), 3),
        "p99_ms": round(percentile(real, 99), 3),
        "baseline_p50_ms": round(statistics.median(base), 3),
        "baseline_p99_ms": round(percentile(base, 99), 3),
        "ratio_p50": round(statistics.median(real) / statistics.median(base), 3),
        "target": {"ratio_p50": 1.5, "p99_ms": 20.0},
    }


def _report(result: dict[str, Any]) -> str:
    over = "over TLS" if result["tls"] else "plaintext"
    return "\n".join(
        [
            f"RFQ to {result['dealers']} dealers, {result['rounds']} rounds, "
            f"{result['workers']} responder processes, {over}",
            f"  rfq       p50 {result['p50_ms']:8.2f} ms   p99 {result['p99_ms']:8.2f} ms",
            f"  baseline  p50 {result['baseline_p50_ms']:8.2f} ms   "
            f"p99 {result['baseline_p99_ms']:8.2f} ms",
            f"  ratio p50 {result['ratio_p50']:.2f}  (target <= 1.5; p99 target < 20 ms)",
        ]
    )
