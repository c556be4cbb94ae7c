"""An authority that never shows up is evicted for its missed turns, and the chain goes on.

The genesis evicts an authority after ``liveness_missed_rounds`` missed proposals in a row.
The block that counts the last miss is still decided by the old set; the evicted one's place
goes to the candidate G1 from the next height. (Naming the new set in that block made every
proposal of its height invalid to its validators: the chain halted there.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from peers.netdir import NetDir, create_network
from rfq.identity import NetworkParams

from .chainkit import start_authorities, wait_for


@pytest.fixture
def network(tmp_path: Path) -> NetDir:
    params = NetworkParams(
        block_time_ms=50, idle_block_ms=200, round_timeout_ms=400, liveness_missed_rounds=3
    )
    return create_network(tmp_path / "net", dealers=3, clients=2, params=params)


async def test_an_absent_authority_is_evicted_and_the_new_set_goes_on(
    nats_server, network, bus_factory
):
    nodes = await start_authorities(network, bus_factory, ids=("CCP", "D1", "D2", "G1"))
    try:
        ccp = nodes["CCP"]
        await wait_for(lambda: "D3" not in ccp.state.authorities, timeout=60, what="D3 evicted")
        [evict] = [e for e in ccp.state.gov.log if e.action == "evict"]
        assert evict.member == "D3" and "missed 3 proposals in a row" in evict.reason
        target = evict.effective_height + 5
        await wait_for(
            lambda: all(n.head.height >= target for n in nodes.values()),
            timeout=60,
            what="five blocks after the eviction",
        )
        for height in range(evict.effective_height, target + 1):
            block = ccp.store.block(height)
            assert block is not None
            assert {s.authority for s in block.seals} <= {"CCP", "D1", "D2", "G1"}
    finally:
        for node in nodes.values():
            await node.stop()
