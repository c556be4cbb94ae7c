"""Paged queries at scale: the state ``botc bench scale`` builds, and the time one page takes
for a client, a dealer and the regulator (answered by ``QueryService.answer`` and encoded).

``python -m peers.benchmarks.paged 20000 100000`` prints one JSON line per size.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from peers.benchmarks.scale import TRADES_PER_CLIENT, _percentile


def _timed(ask: Callable[[int], Any], samples: int) -> dict[str, float]:
    timings = []
    for i in range(samples):
        began = time.perf_counter()
        msgspec.msgpack.encode(ask(i))
        timings.append((time.perf_counter() - began) * 1000)
    return {
        "p50_ms": round(statistics.median(timings), 2),
        "p99_ms": round(_percentile(timings, 0.99), 2),
    }


def measure(live: int, samples: int = 100) -> dict[str, Any]:
    from peers.authority.queries import QueryService
    from peers.authority.store import SqliteChainStore
    from peers.logging import configure_logging
    from rfq.identity import Role
    from rfq.queries import ContractsQuery, TradesQuery

    configure_logging("error")
    from peers.prebuild import bench_market

    market = bench_market(max(1, min(1_000, live // TRADES_PER_CLIENT)))
    began = time.perf_counter()
    market.fill(live, days=240)
    build_s = time.perf_counter() - began
    tmp = tempfile.mkdtemp(prefix="bench-paged-")
    service = QueryService("CCP", SqliteChainStore(Path(tmp) / "chain.db"))
    state, head = market.state, market.head

    def answer(who: str, role: Role, query: Any) -> Any:
        return service.answer(state, head, 0, who, role, query)

    def client(i: int) -> Any:
        who = market.clients[i % len(market.clients)]
        return answer(who, Role.CLIENT, ContractsQuery(open_only=True))

    # A dealer's and the regulator's second page (the cursor from the first).
    dealer_first = answer("D1", Role.DEALER, ContractsQuery(open_only=True))
    reg_first = answer("REG", Role.REGULATOR, ContractsQuery())
    trades_first = answer("D1", Role.DEALER, TradesQuery(party="D1"))
    result = {
        "contracts": state.book.open_count,
        "build_s": round(build_s, 1),
        "client_contracts": _timed(client, samples),
        "dealer_contracts_page2": _timed(
            lambda _: answer(
                "D1",
                Role.DEALER,
                ContractsQuery(open_only=True, cursor=dealer_first.next_cursor),
            ),
            samples // 4,
        ),
        "regulator_contracts_page2": _timed(
            lambda _: answer("REG", Role.REGULATOR, ContractsQuery(cursor=reg_first.next_cursor)),
            samples // 4,
        ),
        "dealer_trades_page2": _timed(
            lambda _: answer(
                "D1", Role.DEALER, TradesQuery(party="D1", cursor=trades_first.next_cursor)
            ),
            samples // 4,
        ),
    }
    return result


def main(argv: list[str]) -> int:
    for size in [int(a) for a in argv] or [20_000]:
        print(json.dumps(measure(size)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
