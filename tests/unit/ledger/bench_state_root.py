"""Same-process benchmark of the state root: this tree's ledger against a baseline's.

Both trees are imported into one process (each under its own ``rfq`` and ``tests`` modules) and
run interleaved (alternating which goes first), so machine noise falls on both alike; CPU
time of the process, medians, and the ratio new / baseline are reported. Measured:

- blocks of ``--trades`` trades built with ``tests/unit/ledger/harness.py`` (signatures
  pre-verified, as an authority that checked them on admission; each trade opens a contract
  and books a cash initial-margin instruction): the block's execution and its state root
  (``state_root()`` after the block); then ``--fixings`` blocks of one fixing each, after a
  block confirming every pending payment: each fixing marks and margin-calls every contract
  the trade blocks opened (the daily worst case: every record and a payment per contract);
- a map of ``--entries`` entries (10,000 and 100,000 by default): ``--writes`` writes (half
  new keys, half updates), then ``digest()``.

Run from the worktree (make the baseline tree first)::

    git archive <ref> rfq tests | tar -x -C /tmp/base
    python -m tests.unit.ledger.bench_state_root --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
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

    def fixing(self, n: int) -> tuple[float, float]:
        """Confirm every pending payment (untimed: margin calls met), then execute a block of
        one fixing 3% below the last: every live contract is marked and called again."""
        h, chain, net = self.h, self.chain, self.net
        at = chain.head.timestamp_ms + 1000
        pending = [p for p in chain.state.payments.values() if p.status == "pending"]
        confirms = [
            net.tx("BANK", self.tx_mod.PaymentConfirmed(p.id, p.amount, f"ref-{p.id}"), at_ms=at)
            for p in pending
        ]
        self._timed(at, confirms, {self.state_mod.tx_id_of(tx) for tx in confirms})
        at += 1000
        self.day = getattr(self, "day", h.TODAY) + dt.timedelta(days=1)
        price = round(3200.0 * (1 - 0.03 * (n + 1)), 1)
        fixing = self.tx_mod.PriceFixing(self.day, (("RB2705", price),))
        return self._timed(at, [net.tx("ORACLE", fixing, at_ms=at)], set())

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
        return self._timed(at, txs, verified)

    def _timed(self, at: int, txs: list[bytes], verified: set[bytes]) -> tuple[float, float]:
        h, chain = self.h, self.chain
        height = chain.head.height + 1
        gc.collect()
        started = clock()
        result = chain.state.execute(height, at, chain.head, txs, verified=verified)
        executed = clock()
        root = chain.state.state_root()
        rooted = clock()
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
    gc.collect()
    started = clock()
    for j in range(writes):
        i = entries + j if j % 2 else (j * 7919) % entries
        m[f"p{i}"] = make(i, 2.0)
    written = clock()
    m.digest()
    digested = clock()
    return (written - started) * 1000, (digested - written) * 1000


clock = time.process_time
"""CPU time of this process: the machine may be shared, and waiting for a core is not cost."""


def proof_sizes(state: Any) -> dict[str, int]:
    """Encoded size of a proof of one entry of each kind (this tree's state after the run)."""
    payment = next(iter(state.payments))
    contract = state.book.ids()[0]
    tx_hex = next(iter(state.committed))
    wanted = {
        "payment": ("payments", payment),
        "contract": ("contracts", contract),
        "committed_tx": ("committed", tx_hex),
        "absent_payment": ("payments", "no-such-payment"),
        "member": ("members", "C1"),
        "governance": ("governance", ""),
    }
    encode = msgspec.msgpack.encode
    return {name: len(encode(state.prove(c, k))) for name, (c, k) in wanted.items()}


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 2)


def summary(timings: dict[str, dict[str, list[float]]], per_trade: int | None) -> dict[str, Any]:
    """Medians per tree and the ratios new / baseline."""
    out: dict[str, Any] = {}
    for name, t in timings.items():
        per_block = [e + r for e, r in zip(t["execute_ms"], t["state_root_ms"], strict=True)]
        out[name] = {
            "execute_ms": median(t["execute_ms"]),
            "state_root_ms": median(t["state_root_ms"]),
            "block_ms": median(per_block),
        }
        if per_trade:
            out[name]["per_trade_us"] = round(median(t["execute_ms"]) * 1000 / per_trade, 1)
    for key in ("execute_ms", "state_root_ms", "block_ms"):
        out[f"ratio_{key}"] = round(out["new"][key] / out["baseline"][key], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="directory holding rfq/ and tests/")
    parser.add_argument("--trades", type=int, default=2000, help="trades per block (2000)")
    parser.add_argument("--blocks", type=int, default=10, help="timed blocks per tree (10)")
    parser.add_argument("--fixings", type=int, default=3, help="fixing blocks after them (3)")
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
    for n in range(args.blocks):
        for name, run in sorted(runs.items(), reverse=bool(n % 2)):  # alternate who goes first
            execute_ms, root_ms = run.block(args.trades)
            timings[name]["execute_ms"].append(execute_ms)
            timings[name]["state_root_ms"].append(root_ms)
    fixings: dict[str, dict[str, list[float]]] = {
        name: {"execute_ms": [], "state_root_ms": []} for name in trees
    }
    for n in range(args.fixings):
        for name, run in sorted(runs.items(), reverse=bool(n % 2)):
            execute_ms, root_ms = run.fixing(n)
            fixings[name]["execute_ms"].append(execute_ms)
            fixings[name]["state_root_ms"].append(root_ms)
    report: dict[str, Any] = {
        "trades_per_block": args.trades,
        "blocks": args.blocks,
        "trade_blocks": summary(timings, per_trade=args.trades),
        "fixing_blocks": summary(fixings, per_trade=None),
        "proof_bytes": proof_sizes(runs["new"].chain.state),
    }
    for entries in args.entries:
        maps: dict[str, dict[str, list[float]]] = {n: {"w": [], "d": []} for n in trees}
        for n in range(args.repeat):
            for name, tree in sorted(trees.items(), reverse=bool(n % 2)):
                write_ms, digest_ms = map_run(tree, entries, args.writes)
                maps[name]["w"].append(write_ms)
                maps[name]["d"].append(digest_ms)
        section: dict[str, Any] = {
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
