"""The hot state's size for a stream of maturing trades, without and with retention (not a
test: a measure for the roadmap's figures).

Waves of contracts open (initial margin paid), take a margin call (met), mature and settle
(settlement and margin return paid), while ``live`` long contracts stay open throughout.
Run from the worktree: ``python -m tests.unit.ledger.retention_measure WAVES PER_WAVE LIVE``.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import sys
import time
from typing import Any

from rfq.ledger.tx import PaymentConfirmed, PriceFixing
from tests.unit.ledger.harness import TODAY, Chain, make_net, swap_terms, trade_tx

BLOCK_TXS = 1000


def confirm(chain: Chain) -> None:
    at = chain.head.timestamp_ms + 1000
    pending = sorted(
        (p for p in chain.state.payments.values() if p.status == "pending"), key=lambda p: p.id
    )
    txs = [
        chain.net.tx("BANK", PaymentConfirmed(p.id, p.amount, f"ref-{p.id}"), at_ms=at)
        for p in pending
    ]
    for k in range(0, len(txs), BLOCK_TXS):
        chain.block(*txs[k : k + BLOCK_TXS], at_ms=at + k)


def fix(chain: Chain, date: dt.date, price: float) -> None:
    at = chain.head.timestamp_ms + 1000
    tx = chain.net.tx("ORACLE", PriceFixing(date, (("RB2705", price),)), at_ms=at)
    chain.block(tx, at_ms=at)


def trades(chain: Chain, ids: list[str], days: int, client: str) -> None:
    at = chain.head.timestamp_ms + 1000
    terms = swap_terms(days=days)
    for k in range(0, len(ids), BLOCK_TXS):
        txs = [
            trade_tx(
                chain.net,
                rfq_id=r,
                terms=terms,
                at_ms=at,
                valid_ms=500,
                im_rate=0.001,
                client=client,
            )
            for r in ids[k : k + BLOCK_TXS]
        ]
        chain.block(*txs, at_ms=at + 300)
    confirm(chain)


def run(retain: int, waves: int, per_wave: int, live: int) -> list[dict[str, Any]]:
    chain = Chain(make_net(retain_blocks=retain))
    trades(chain, [f"live{i}" for i in range(live)], 160, "C2")
    rows = []
    for w in range(waves):
        trades(chain, [f"w{w}-{i}" for i in range(per_wave)], 2 * w + 2, "C1")
        fix(chain, TODAY + dt.timedelta(days=2 * w + 1), 3100.0 + 10 * (w % 3))  # calls
        confirm(chain)
        fix(chain, TODAY + dt.timedelta(days=2 * w + 2), 3300.0)  # the wave settles
        confirm(chain)
        chain.block(at_ms=chain.head.timestamp_ms + 10_000)
        for _ in range(40):  # the window, and the blocks a wave's pruning takes
            chain.block()
        s = chain.state
        rows.append(
            {
                "settled": (w + 1) * per_wave,
                "live": s.book.open_count,
                "payments": len(s.payments),
                "book": len(s.book),
                "trades": len(s.trades),
                "seen_keys": len(s.book._seen),
                "snapshot_bytes": len(s.snapshot()),
            }
        )
    return rows


def main() -> None:
    """``WAVES PER_WAVE LIVE [RETAIN]``: both runs, or only the one with ``RETAIN`` (then
    the process's peak RSS is that run's)."""
    waves, per_wave, live = (int(a) for a in sys.argv[1:4])
    runs = (("no pruning", 10**9), ("retain_blocks=10", 10))
    if len(sys.argv) > 4:
        runs = ((f"retain_blocks={sys.argv[4]}", int(sys.argv[4])),)
    for label, retain in runs:
        started = time.perf_counter()
        rows = run(retain, waves, per_wave, live)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{label}: {time.perf_counter() - started:.1f}s, peak RSS {peak:.0f} MB")
        for row in rows:
            print("  ", json.dumps(row))


if __name__ == "__main__":
    main()
