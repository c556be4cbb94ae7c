"""``botc bench scale``: what an authority, the regulator and a client pay as the market grows.

For each size N (10k, 50k, 100k live contracts; 200k with ``--full``) a child process builds a
ledger state of N live contracts and ``--settled`` x N settled ones through the pure core, by
executing blocks of real signed trades exactly as an authority does (signatures checked at
admission, as the node's mempool does, so execution skips them). The bank confirms each
trade's initial margin and what the settled ones pay, and the retention window
(``retain_blocks``) passes, so the settled contracts leave the hot state as they do in a
running market (``ended_contracts``: those still in it). Then it measures:

- ``trade_exec_us``: per-trade execution in a block of trades on top of N;
- ``fixing_block_ms``: a block holding one price fixing (every live contract marks and is
  margined), execution plus the state root (also reported apart: ``fixing_exec_ms``,
  ``fixing_root_ms``). Before each of the three fixings the bank pays the calls still open
  and the price moves the other way, so each fixing calls margin on every live contract
  again (``fixing_margin_calls``, the fewest of the three, of ``fixing_live_contracts``);
- ``regulator_update_p99_ms`` (and p50): the observer regulator's update after a block of
  trades (the contracts it changed into the incremental monitor, then the assessment);
  ``regulator_fixing_block_ms`` the same after a fixing (every live contract re-read);
  ``regulator_by_queries_ms`` the baseline: the refresh as it was before the regulator followed
  blocks (the whole market read from an authority's query service, the whole monitor run),
  only up to ``OLD_PATH_LIMIT`` live contracts, where that path could still run (else null);
- ``client_query_p99_ms`` (and p50): one client's paged contracts query, answer encoded;
- ``snapshot_ms``: the snapshot a node writes every ``snapshot_every`` blocks, as rows since
  the one before (``rfq.ledger.snapshot``), after ``SNAPSHOT_TRADES`` trades on top of N:
  captured, encoded and written to a SQLite store; ``full_snapshot_ms`` every row of the state
  written the same way (a node's first snapshot);
- ``restart_s``: what a restarting authority pays before it replays: the snapshot read back
  from that store, restored, and its root checked;
- ``authority_rss_mb``: the child's resident memory holding the state (before the snapshot
  and the restore), with ``rss_per_live_contract_kb`` above an empty state's; it keeps the
  high-water mark of the build (the settled wave's memory, freed, stays with the allocator);
  ``restored_rss_mb`` that of a fresh process holding the snapshot restored: the hot state.

Each figure stands beside its target at 100k live contracts (``targets``). ``--json`` prints
``{"benchmark": "scale", "sizes": [...], "targets": {...}}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peers.prebuild import MarketBuilder

SIZES = (10_000, 50_000, 100_000)
FULL_SIZES = (*SIZES, 200_000)
TRADES_PER_CLIENT = 200
TARGETS = {
    "fixing_block_ms": 200.0,
    "regulator_update_p99_ms": 50.0,
    "client_query_p99_ms": 20.0,
    "restart_s": 3.0,
}
"""At 100k live contracts (roadmap [4/5])."""
SNAPSHOT_TRADES = 1_000
"""Trades between the two snapshots of ``snapshot_ms`` (a node's ``snapshot_every`` blocks of
the busy market in ``botc bench chain`` hold about 10,000)."""
OLD_PATH_LIMIT = 15_000
"""Live contracts above which the baseline is not run: the whole-read regulator's reply passed
nats' 8 MB max payload at about 15,800 live contracts, so the old path could not run there
(in process, without that limit, it reads every page by building every view: quadratic)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--contracts",
        type=int,
        action="append",
        metavar="N",
        help="live contracts (repeatable; default 10000, 50000, 100000)",
    )
    parser.add_argument("--full", action="store_true", help="add 200,000 live contracts")
    parser.add_argument(
        "--settled",
        type=float,
        default=0.5,
        metavar="X",
        help="settled contracts per live one (default 0.5)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    sizes = tuple(args.contracts or (FULL_SIZES if args.full else SIZES))
    bad = [n for n in sizes if not 1_000 <= n <= 1_000_000]
    if bad or not 0 <= args.settled <= 4:
        what = f"--contracts {bad[0]} is outside 1000..1000000" if bad else "--settled: 0..4"
        print(f"botc bench scale: {what}")
        return 2
    context = mp.get_context("spawn")
    results = []
    for size in sizes:
        with context.Pool(1) as pool:
            result = pool.apply(measure, (size, int(size * args.settled)))
        results.append(result)
        if not args.json:
            print(_line(result), flush=True)
    if args.json:
        print(json.dumps({"benchmark": "scale", "sizes": results, "targets": TARGETS}))
    else:
        print("targets at 100k live: " + ", ".join(f"{k} <= {v:g}" for k, v in TARGETS.items()))
    return 0


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['contracts']:>7} live {r['settled']:>7} settled: trade {r['trade_exec_us']:.0f} us, "
        f"fixing block {r['fixing_block_ms']:.0f} ms (exec {r['fixing_exec_ms']:.0f} + root "
        f"{r['fixing_root_ms']:.0f}; {r['fixing_margin_calls']} calls), "
        f"regulator p99 {r['regulator_update_p99_ms']:.1f} ms "
        f"(fixing {r['regulator_fixing_block_ms']:.0f}, "
        f"by queries {_ms(r['regulator_by_queries_ms'])}), "
        f"client query p50/p99 {r['client_query_p50_ms']:.1f}/{r['client_query_p99_ms']:.1f} ms, "
        f"snapshot {r['snapshot_ms']:.0f} ms (all rows {r['full_snapshot_ms']:.0f}), "
        f"restart {r['restart_s']:.2f} s, "
        f"RSS {r['authority_rss_mb']:.0f} MB ({r['rss_per_live_contract_kb']:.2f} kB/contract), "
        f"restored {r['restored_rss_mb']:.0f} MB"
    )


def _ms(value: float | None) -> str:
    return "not run" if value is None else f"{value:.0f}"


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _restored_rss(genesis: Any, store_path: Path) -> float:
    """The RSS of a fresh process that restored the store's snapshot: what the hot state
    costs an authority that starts on it, without the high-water mark this process's build
    left (freed memory the allocator keeps is reused, not given back)."""
    import subprocess
    import sys

    import msgspec

    genesis_path = store_path.with_suffix(".genesis")
    genesis_path.write_bytes(msgspec.msgpack.encode(genesis))
    script = (
        "import sys; from peers.benchmarks.scale import _restore_and_report; "
        "_restore_and_report(sys.argv[1], sys.argv[2])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(genesis_path), str(store_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.split()[-1])


def _restore_and_report(genesis_path: str, store_path: str) -> None:
    import msgspec

    from peers.authority.store import SqliteChainStore
    from rfq.identity import Genesis
    from rfq.ledger.state import LedgerState

    genesis = msgspec.msgpack.decode(Path(genesis_path).read_bytes(), type=Genesis)
    store = SqliteChainStore(Path(store_path))
    found = store.latest_snapshot()
    assert found is not None
    state = LedgerState.restore(genesis, found[2])
    del found
    gc.collect()
    print(round(_rss_mb(), 1), flush=True)
    store.close()
    del state


def _regulator_by_queries(market: MarketBuilder, queries: Any) -> float:
    """The regulator's refresh before it followed blocks, in process: every open contract,
    pending and failed payment, rating and guarantee read from an authority's query service,
    then the whole-market monitor. The baseline of ``regulator_update_*``."""
    import msgspec

    from rfq.identity import Role
    from rfq.ledger.state import business_date
    from rfq.queries import ContractsQuery, GuaranteesQuery, PaymentsQuery, RatingsQuery
    from rfq.risk.monitor import MonitorInput, assess

    started = time.perf_counter()
    state, head = market.state, market.head

    def ask_all(query: Any, rows: str) -> list[Any]:
        out: list[Any] = []
        while True:
            reply = queries.answer(state, head, 0, "REG", Role.REGULATOR, query)
            msgspec.msgpack.encode(reply)  # what the authority sends
            out.extend(getattr(reply, rows))
            if not reply.next_cursor:
                return out
            query = msgspec.structs.replace(query, cursor=reply.next_cursor)

    live = ask_all(ContractsQuery(open_only=True), "contracts")
    ask_all(PaymentsQuery(status="pending"), "payments")
    ask_all(PaymentsQuery(status="failed"), "payments")
    ratings = queries.answer(state, head, 0, "REG", Role.REGULATOR, RatingsQuery())
    guarantees = ask_all(GuaranteesQuery(), "guarantees")
    assess(
        MonitorInput(
            height=head.height,
            as_of=business_date(state.timestamp_ms, state.book),
            members=tuple(state.members.values()),
            contracts=tuple(live),
            ratings=ratings.ratings,
            guarantees=tuple(guarantees),
        )
    )
    return time.perf_counter() - started


def _regulator_following(market: MarketBuilder, monitor: Any, result: Any) -> float:
    """The observer regulator's update for one block it executed: the contracts the block
    changed into the incremental monitor, then its assessment (``peers.regulator``)."""
    from rfq.ledger.state import business_date
    from rfq.risk.incremental import feed, named_contracts

    started = time.perf_counter()
    state = market.state
    if result is None:  # the first, whole read
        feed(monitor, state, None)
    else:
        feed(monitor, state, named_contracts(state, result), result.fixed)
    monitor.assess(
        state.height,
        business_date(state.timestamp_ms, state.book),
        tuple(state.members.values()),
        {m: r.score for m, r in state.ratings.items()},
        tuple(state.guarantees.values()),
    )
    return time.perf_counter() - started


def _client_queries(market: MarketBuilder, queries: Any, samples: int) -> list[float]:
    import msgspec

    from rfq.identity import Role
    from rfq.queries import ContractsQuery

    timings = []
    for i in range(samples):
        client = market.clients[i % len(market.clients)]
        started = time.perf_counter()
        reply = queries.answer(
            market.state, market.head, 0, client, Role.CLIENT, ContractsQuery(open_only=True)
        )
        msgspec.msgpack.encode(reply)
        timings.append(time.perf_counter() - started)
    return timings


def _next_weekday(day: dt.date) -> dt.date:
    day += dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(live: int, settled: int) -> dict[str, Any]:
    """Build one state of ``live`` + ``settled`` contracts and time everything on it."""
    from peers.authority.queries import QueryService
    from peers.authority.store import SqliteChainStore
    from peers.logging import configure_logging
    from peers.prebuild import bench_market
    from rfq.contracts.model import PaymentKind
    from rfq.ledger.state import LedgerState

    configure_logging("error")
    clients = max(1, min(1_000, (live + settled) // TRADES_PER_CLIENT))
    market = bench_market(clients)
    gc.collect()
    empty_rss = _rss_mb()
    started = time.perf_counter()
    market.fill(settled, days=30)
    market.pay((PaymentKind.INITIAL_MARGIN,))  # the bank pays each trade's initial margin
    if settled:
        # the short contracts mature and settle on a fixing after their maturity; the bank
        # pays what they settle and returns their margins
        maturity = market.state.book.get(
            next(iter(market.state.book.ids()))
        ).contract.terms.maturity
        market.block([market.fixing(_next_weekday(maturity), 3210.0)], set())
        market.pay(tuple(PaymentKind))
    market.fill(live, days=240)
    market.pay((PaymentKind.INITIAL_MARGIN,))
    market.pass_retention()  # the settled leave the hot state
    build_s = time.perf_counter() - started
    open_now = market.state.book.open_count
    gc.collect()
    gc.freeze()  # as the regulator does after its first read: full passes skip the built state

    trade_timings = []
    for _ in range(3):
        txs, verified = market.trades(500, days=240)
        _, exec_s, _ = market.block(txs, verified)
        trade_timings.append(exec_s / len(txs) * 1e6)

    from rfq.contracts.events import MarginCalls
    from rfq.risk.incremental import IncrementalMonitor

    monitor = IncrementalMonitor()
    market.block([], set())
    _regulator_following(market, monitor, None)  # the first, whole read
    fixing_exec, fixing_root, fixing_regulator = [], [], []
    date = market.business_date()
    fixing_calls = []
    fixing_live = market.state.book.open_count
    for step in range(3):
        paid = market.pay_margin_calls()  # yesterday's calls met: today's fixing calls afresh
        if paid:
            result, _, _ = market.block(paid, set())
            _regulator_following(market, monitor, result)
        date = _next_weekday(date)
        tx = market.fixing(date, 3200.0 + (10.0 if step % 2 else -10.0))
        result, exec_s, root_s = market.block([tx], set())
        fixing_exec.append(exec_s * 1000)
        fixing_root.append(root_s * 1000)
        fixing_calls.append(
            sum(len(o.contract_ids) for o in result.outputs if isinstance(o, MarginCalls))
        )
        fixing_regulator.append(_regulator_following(market, monitor, result) * 1000)

    with tempfile.TemporaryDirectory() as tmp:
        queries = QueryService("D1", SqliteChainStore(Path(tmp) / "chain.db"))
        regulator: list[float] = []
        by_queries: list[float] = []
        for _ in range(20):
            txs, verified = market.trades(20, days=240)
            result, _, _ = market.block(txs, verified)
            regulator.append(_regulator_following(market, monitor, result) * 1000)
            if live <= OLD_PATH_LIMIT and len(by_queries) < 3:
                by_queries.append(_regulator_by_queries(market, queries) * 1000)
        client = [t * 1000 for t in _client_queries(market, queries, 100)]

    gc.collect()
    rss = _rss_mb()  # the state held, before a snapshot and a restore raise the high-water mark
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteChainStore(Path(tmp) / "snapshot.db")
        began = time.perf_counter()
        store.save_snapshot(market.state.state_root(), market.state.snapshot_rows()())
        full_snapshot_ms = (time.perf_counter() - began) * 1000
        for _ in range(SNAPSHOT_TRADES // 500):
            market.block(*market.trades(500, days=240))
        began = time.perf_counter()
        rows = market.state.snapshot_rows(store.snapshot_height())()
        store.save_snapshot(market.state.state_root(), rows)
        snapshot_ms = (time.perf_counter() - began) * 1000
        began = time.perf_counter()
        found = store.latest_snapshot()
        assert found is not None
        restored = LedgerState.restore(market.genesis, found[2])
        if restored.state_root() != found[1]:
            raise AssertionError("the snapshot read back does not restore to its root")
        restart_s = time.perf_counter() - began
        store.close()
        restored_rss = _restored_rss(market.genesis, Path(tmp) / "snapshot.db")
    del restored, found
    fixing_block = [e + r for e, r in zip(fixing_exec, fixing_root, strict=True)]
    return {
        "contracts": open_now,
        "settled": settled,
        "build_s": round(build_s, 1),
        "trade_exec_us": round(statistics.median(trade_timings), 1),
        "fixing_block_ms": round(statistics.median(fixing_block), 1),
        "fixing_exec_ms": round(statistics.median(fixing_exec), 1),
        "fixing_root_ms": round(statistics.median(fixing_root), 1),
        "fixing_margin_calls": min(fixing_calls),
        "fixing_live_contracts": fixing_live,
        "regulator_update_p50_ms": round(statistics.median(regulator), 1),
        "regulator_update_p99_ms": round(_percentile(regulator, 0.99), 1),
        "regulator_fixing_block_ms": round(statistics.median(fixing_regulator), 1),
        "regulator_by_queries_ms": (
            round(statistics.median(by_queries), 1) if by_queries else None
        ),
        "client_query_p50_ms": round(statistics.median(client), 2),
        "client_query_p99_ms": round(_percentile(client, 0.99), 2),
        "snapshot_ms": round(snapshot_ms, 1),
        "snapshot_rows": rows.row_count,
        "full_snapshot_ms": round(full_snapshot_ms, 1),
        "restart_s": round(restart_s, 2),
        "authority_rss_mb": round(rss, 1),
        "restored_rss_mb": restored_rss,
        "rss_per_live_contract_kb": round((rss - empty_rss) * 1024 / max(open_now, 1), 2),
        "ended_contracts": sum(1 for _ in market.state.book.ids()) - market.state.book.open_count,
        "payments": len(market.state.payments),
    }
