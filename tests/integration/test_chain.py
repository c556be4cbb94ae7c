"""Four authorities over a real nats-server: commits, crashes, catch-up."""

from __future__ import annotations

import pytest

from .chainkit import AUTHORITIES, TxFactory, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration


async def test_four_authorities_commit_a_thousand_transactions_identically(
    nats_server, network, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    c1, c2 = await bus_factory("C1"), await bus_factory("C2")
    await submit(c1, [factory.trade(f"r{i}", client="C1", dealer=f"D{i % 3 + 1}") for i in range(500)])
    await submit(c2, [factory.trade(f"s{i}", client="C2", dealer=f"D{i % 3 + 1}") for i in range(500)])
    await wait_for(
        lambda: all(len(n.state.trades) == 1000 for n in nodes.values()),
        timeout=120,
        what="1000 trades on every authority",
    )
    tip = min(n.head.height for n in nodes.values())
    for h in range(1, tip + 1):
        hashes = {n.store.block(h).hash() for n in nodes.values()}
        assert len(hashes) == 1, f"fork at height {h}"
    assert len({n.store.block(tip).header.state_root for n in nodes.values()}) == 1
    for node in nodes.values():
        await node.stop()
