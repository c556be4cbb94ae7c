"""An authority restarts from its newest snapshot and the blocks after it, never from the
genesis, and is ready in about the time restoring the snapshot takes.

Every authority's store is given the same chain of ``BOTC_RESTART_CONTRACTS`` trades (1,500
by default, in blocks of 500; the figure at scale is this test run with a larger number)
with a snapshot one block before its head, as a node that crashed after that block would
leave it. The authorities start on it, each replays just the one block, and the network goes
on deciding blocks from there.
"""

from __future__ import annotations

import itertools
import os
import time

import pytest

from peers.authority.store import SqliteChainStore
from peers.netdir import NetDir, create_network
from rfq.identity import NetworkParams
from rfq.ledger.block import build_block, proposer_for
from rfq.ledger.snapshot import SnapshotRows
from rfq.ledger.state import LedgerState, genesis_header

from .chainkit import AUTHORITIES, TxFactory, committed, start_authorities, wait_for

pytestmark = pytest.mark.integration

CONTRACTS = int(os.environ.get("BOTC_RESTART_CONTRACTS", "1500"))
PER_BLOCK = 500


@pytest.fixture
def network(tmp_path) -> NetDir:
    params = NetworkParams(block_time_ms=50, idle_block_ms=100, snapshot_every=1000)
    return create_network(tmp_path / "net", dealers=3, clients=5, params=params)


def _store_chain(network: NetDir, contracts: int) -> tuple[int, int]:
    """Execute ``contracts`` trades into blocks and store them, with a snapshot of the state
    after the last block but one, in every authority's store: (head height, snapshot height)."""
    genesis = network.genesis()
    factory = TxFactory(network)
    state = LedgerState(genesis)
    head = genesis_header(genesis)
    blocks = []
    snapshot: tuple[bytes, SnapshotRows] | None = None
    made = 0
    while made < contracts:
        count = min(PER_BLOCK, contracts - made)
        txs = [
            factory.trade(
                f"big{made + i}", client=f"C{(made + i) % 5 + 1}", dealer="D1", credit_line=1e12
            )
            for i in range(count)
        ]
        made += count
        height = head.height + 1
        timestamp = max(int(time.time() * 1000), head.timestamp_ms + 1)
        result = state.execute(height, timestamp, head, txs)
        refused = [r.reason for r in result.receipts if not r.ok]
        assert not refused, refused[:3]
        block = build_block(
            head,
            proposer=proposer_for(height, 0, state.gov.previous_set),
            round=0,
            timestamp_ms=timestamp,
            txs=txs,
            state_root=state.state_root(),
            authorities=state.gov.previous_set,
        )
        blocks.append(block)
        head = block.header
        if made + PER_BLOCK >= contracts and snapshot is None and made < contracts:
            snapshot = (head.state_root, state.snapshot_rows()())
    if snapshot is None:  # a single block: snapshot the genesis' successor anyway
        snapshot = (head.state_root, state.snapshot_rows()())
    for member in AUTHORITIES:
        store = SqliteChainStore(network.data_dir(member) / "chain.db")
        for block in blocks:
            store.append(block)
        store.save_snapshot(*snapshot)
        store.close()
    return head.height, snapshot[1].height


async def test_authorities_restart_from_the_newest_snapshot_not_the_genesis_and_decide_on(
    nats_server, network, bus_factory
):
    head, snapshot_height = _store_chain(network, CONTRACTS)
    began = time.perf_counter()
    nodes = await start_authorities(network, bus_factory)
    started_s = time.perf_counter() - began
    for node in nodes.values():
        assert node.stats["snapshot_rejected"] == 0
        assert node.stats["replayed_blocks"] == head - snapshot_height
        assert len(node.state.trades) == CONTRACTS
    load_s = []
    for node in nodes.values():
        again = time.perf_counter()
        state, header = node.rebuild_from_store()  # what a restart loads, timed alone
        load_s.append(time.perf_counter() - again)
        assert header.height >= head and len(state.trades) == CONTRACTS
    node = nodes["D1"]
    phases = [time.perf_counter()]
    found = node.store.latest_snapshot()
    assert found is not None
    phases.append(time.perf_counter())
    restored = LedgerState.restore(network.genesis(), found[2])
    phases.append(time.perf_counter())
    assert restored.state_root() == found[1]
    phases.append(time.perf_counter())
    read_s, restore_s, root_s = (b - a for a, b in itertools.pairwise(phases))
    print(
        f"\n{CONTRACTS} contracts: 4 authorities started in {started_s:.2f} s; "
        f"snapshot + replay per authority {min(load_s):.2f}..{max(load_s):.2f} s "
        f"(read {read_s:.2f} s, restore {restore_s:.2f} s, root {root_s:.2f} s, "
        f"{len(found[2]) / 2**20:.0f} MB)"
    )
    factory = TxFactory(network)
    c1 = await bus_factory("C1")
    await c1.nc.publish("otc.tx.C1", factory.trade("after-restart", client="C1"))
    await wait_for(committed(nodes.values(), CONTRACTS + 1), what="a trade after the restart")
    for node in nodes.values():
        await node.stop()
