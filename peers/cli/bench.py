"""``botc bench rfq|chain|contracts|risk``: the speed targets, measured with same-run baselines.

Each benchmark lives in ``peers.benchmarks.<name>`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``; this module only dispatches, importing the benchmark when it runs.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

BENCHMARKS = {
    "rfq": "RFQ to all answers, p50/p99, against a plain nats-py fan-out",
    "chain": "committed tx/s and finality latency with four authorities",
    "contracts": "revaluing 100,000 live contracts on one fixing tick",
    "risk": "SA-CCR over 10,000 trades; cascade and DebtRank on 1,000 institutions",
}


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="run a benchmark", description=__doc__
    )
    inner = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, summary in BENCHMARKS.items():
        sub = inner.add_parser(name, help=summary, description=summary)
        module = importlib.import_module(f"peers.benchmarks.{name}")
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
