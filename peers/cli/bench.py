"""``botc bench NAME``: the speed targets, measured with same-run baselines.

Each benchmark lives in ``peers.benchmarks.<name>`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``; this module only dispatches, importing the benchmark when it runs.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

BENCHMARKS = {
    "rfq": "time from an RFQ to every dealer's answer (p50, p99), against a plain NATS fan-out",
    "chain": "committed transactions per second and finality latency (four authorities)",
    "query": "a query's round trip with and without its proof (p50, p99), and its size",
    "contracts": "time to revalue 100,000 live contracts on one price fixing",
    "risk": "SA-CCR over 10,000 trades; cascade and DebtRank on 1,000 institutions",
    "scale": "an authority, the regulator and a client at 10k, 50k and 100k live contracts",
    "flood": "other clients' RFQ round trips while one client floods 10,000 RFQs/s",
}

DESCRIPTION = (
    "Measure one of the speed targets. Each benchmark also measures a baseline in the same "
    "run (a plain NATS fan-out, raw signature checks, a simple loop), so that a busy machine "
    "slows both and the ratio stays meaningful. --json prints one JSON object."
)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="run a benchmark", description=DESCRIPTION
    )
    inner = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, summary in BENCHMARKS.items():
        sub = inner.add_parser(name, help=summary, description=summary)
        module = importlib.import_module(f"peers.benchmarks.{name}")
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
