"""Same-process benchmark of the state root: this tree's ledger against a baseline's.

Both trees are imported into one process (each under its own ``rfq`` and ``tests`` modules) and
run interleaved, so machine noise falls on both alike; medians are reported with the ratio
new / baseline. Measured:

- blocks of ``--trades`` trades built with ``tests/unit/ledger/harness.py`` (signatures
  pre-verified, as an authority that checked them on admission; each trade opens a contract
  and books a cash initial-margin instruction): the block's execution and its state root
  (``state_root()`` after the block);
- a map of ``--entries`` entries (10,000 and 100,000 by default): ``--writes`` writes (half
  new keys, half updates), then ``digest()``.

Run from the worktree (make the baseline tree first)::

    git archive <ref> rfq tests | tar -x -C /tmp/base
    python -m tests.unit.ledger.bench_state_root --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec


def load_tree(root: str | None) -> dict[str, ModuleType]:
    """Import ``rfq`` and the ledger test harness from ``root`` (None: from ``sys.path``)."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("rfq", "tests")]:
        del sys.modules[name]
    if root is not None:
        sys.path.insert(0, root)
    try:
        return {
            name: importlib.import_module(name)
            for name in (
                "rfq.ledger.state",
                "rfq.ledger.digest",
                "rfq.ledger.tx",
                "tests.unit.ledger.harness",
            )
        }
    finally:
        if root is not None:
            sys.path.remove(root)


class BlockRun:
    """One tree's chain, fed blocks of trades."""

    def __init__(self, tree: dict[str, ModuleType]) -> None:
        self.h = tree["tests.unit.ledger.harness"]
        self.state_mod = tree["rfq.ledger.state"]
        self.tx_mod = tree["rfq.ledger.tx"]
        self.net = self.h.make_net()
        self.chain = self.h.Chain(self.net)
        self.blocks = 0

    def block(self, trades: int) -> tuple[float, float]:
        """Execute one block of ``trades`` trades: (execution ms, state root ms)."""
        h, chain, net = self.h, self.chain, self.net
        at = chain.head.timestamp_ms + 1000
        clients, dealers = ("C1", "C2"), ("D1", "D2", "D3")
        terms = h.swap_terms(quantity=1)  # cash initial margin: a payment and margin in use
        txs = [
            h.trade_tx(
                net,
                rfq_id=f"b{self.blocks}-{i}",
                client=clients[i % 2],
                dealer=dealers[i % 3],
                terms=terms,
                at_ms=at - 500,
            )
            for i in range(trades)
        ]
        verified = set()
        encoder = msgspec.msgpack.Encoder()
        for tx in txs:
            verified.add(self.state_mod.tx_id_of(tx))
            accept = self.tx_mod.tx_decoder.decode(self.tx_mod.signed_decoder.decode(tx).body)
            verified.add(self.state_mod.tx_id_of(encoder.encode(accept.quote)))
        self.blocks += 1
        height = chain.head.height + 1
        started = time.perf_counter()
        result = chain.state.execute(height, at, chain.head, txs, verified=verified)
        executed = time.perf_counter()
        root = chain.state.state_root()
        rooted = time.perf_counter()
        if not all(r.ok for r in result.receipts):
            refused = next(r for r in result.receipts if not r.ok)
            raise SystemExit(f"a benchmark trade was refused: {refused.reason}")
        chain.head = h.build_block(
            chain.head,
            proposer=h.proposer_for(height, 0, chain.state.gov.previous_set),
            round=0,
            timestamp_ms=at,
            txs=txs,
            state_root=root,
            authorities=chain.state.gov.previous_set,
        ).header
        return (executed - started) * 1000, (rooted - executed) * 1000


def map_run(tree: dict[str, ModuleType], entries: int, writes: int) -> tuple[float, float]:
    """A map of ``entries`` payments: ``writes`` writes then ``digest()``, in ms."""
    state_mod, digest_mod = tree["rfq.ledger.state"], tree["rfq.ledger.digest"]
    payment = state_mod.Payment

    def make(i: int, amount: float) -> Any:
        return payment(f"p{i}", f"c{i}", "initial_margin", "C1", "CUSTODY", amount, 1)

    m = digest_mod.DigestMap("payments", payment)
    for i in range(entries):
        m[f"p{i}"] = make(i, 1.0)
    m.digest()
    started = time.perf_counter()
    for j in range(writes):
        i = entries + j if j % 2 else (j * 7919) % entries
        m[f"p{i}"] = make(i, 2.0)
    written = time.perf_counter()
    m.digest()
    digested = time.perf_counter()
    return (written - started) * 1000, (digested - written) * 1000


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="directory holding rfq/ and tests/")
    parser.add_argument("--trades", type=int, default=2000, help="trades per block (2000)")
    parser.add_argument("--blocks", type=int, default=6, help="timed blocks per tree (6)")
    parser.add_argument("--entries", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--writes", type=int, default=2000, help="map writes per digest")
    parser.add_argument("--repeat", type=int, default=5, help="map runs per size (5)")
    args = parser.parse_args()
    baseline = str(Path(args.baseline).resolve())
    trees = {"baseline": load_tree(baseline), "new": load_tree(None)}
    runs = {name: BlockRun(tree) for name, tree in trees.items()}
    timings: dict[str, dict[str, list[float]]] = {
        name: {"execute_ms": [], "state_root_ms": []} for name in trees
    }
    for _ in range(args.blocks):
        for name, run in runs.items():
            execute_ms, root_ms = run.block(args.trades)
            timings[name]["execute_ms"].append(execute_ms)
            timings[name]["state_root_ms"].append(root_ms)
    report: dict[str, Any] = {"trades_per_block": args.trades, "blocks": args.blocks}
    for name in trees:
        t = timings[name]
        per_block = [e + r for e, r in zip(t["execute_ms"], t["state_root_ms"], strict=True)]
        report[name] = {
            "execute_ms": median(t["execute_ms"]),
            "per_trade_us": round(median(t["execute_ms"]) * 1000 / args.trades, 1),
            "state_root_ms": median(t["state_root_ms"]),
            "block_ms": median(per_block),
        }
    for key in ("execute_ms", "state_root_ms", "block_ms"):
        report[f"ratio_{key}"] = round(report["new"][key] / report["baseline"][key], 3)
    for entries in args.entries:
        maps: dict[str, dict[str, list[float]]] = {n: {"w": [], "d": []} for n in trees}
        for _ in range(args.repeat):
            for name, tree in trees.items():
                write_ms, digest_ms = map_run(tree, entries, args.writes)
                maps[name]["w"].append(write_ms)
                maps[name]["d"].append(digest_ms)
        section = {
            name: {
                "writes_ms": median(maps[name]["w"]),
                "digest_ms": median(maps[name]["d"]),
                "total_ms": median([w + d for w, d in zip(*maps[name].values(), strict=True)]),
            }
            for name in trees
        }
        section["ratio_total"] = round(
            section["new"]["total_ms"] / section["baseline"]["total_ms"], 3
        )
        report[f"map_{entries}"] = section
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
