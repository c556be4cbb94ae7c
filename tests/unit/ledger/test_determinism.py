"""No platform-dependent float result reaches a state root: a long random run re-executed in
another interpreter with numpy's SIMD dispatch switched off and another OpenBLAS kernel gives
the same root at every height (the determinism across machines, shown on one)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

from rfq.instruments import Side

from .test_snapshot_roundtrip import NET, Run

SIMD_OFF = {
    # Every dispatch target above the x86-64-v2 baseline (numpy refuses unknown names).
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Prescott",
}

REPLAY = """
import pickle, sys
from rfq.ledger.state import LedgerState
genesis, blocks = pickle.loads(open(sys.argv[1], "rb").read())
state = LedgerState(genesis)
for height, timestamp, parent, txs, _ in blocks:
    state.execute(height, timestamp, parent, txs)
    sys.stdout.write(state.state_root().hex() + "\\n")
"""


def _ops() -> list[tuple]:  # type: ignore[type-arg]
    ops: list[tuple] = []  # type: ignore[type-arg]
    for i in range(60):
        side = Side.BUY if i % 2 else Side.SELL
        ops.append(("trade", f"C{i % 2 + 1}", f"D{i % 3 + 1}", side, 100 + i, 2 + i % 5,
                    i % 4 == 0, 0.1, 1000 * (i % 3)))  # fmt: skip
        ops.append(("fix", ((i * 37) % 17 - 8) / 100.0))
        ops.append(("confirm", (i % 5) / 5))
        if i % 7 == 3:
            ops.append(("fail", i % 4))
        if i % 11 == 5:
            ops.append(("close", i % 3))
        if i == 40:
            ops.append(("credit", "C2"))
    return ops


def test_a_long_run_replays_to_the_same_roots_with_numpy_simd_dispatch_switched_off(tmp_path):
    run = Run()
    for op in _ops():
        run.step(op)
    blocks = run.chain.blocks
    assert len(blocks) > 150
    assert any(r.evidence for r in run.chain.state.ratings.values())  # settlements happened
    data = tmp_path / "blocks.pickle"
    data.write_bytes(pickle.dumps((NET.genesis, blocks)))
    env = {**os.environ, **SIMD_OFF, "PYTHONPATH": str(Path(__file__).parents[3])}
    done = subprocess.run(
        [sys.executable, "-c", REPLAY, str(data)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [root.hex() for *_, root in blocks]
