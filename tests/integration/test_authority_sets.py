"""Networks of more than four authorities: seven nodes decide blocks together."""

from __future__ import annotations

import pytest

from peers.netdir import create_network

from .chainkit import TxFactory, committed, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def network(tmp_path):
    """Seven initial authorities: D1-D6 and the CCP (f = 2)."""
    return create_network(tmp_path / "net", dealers=6, clients=3, authorities=7)


async def test_seven_authorities_commit_trades_and_each_block_carries_a_quorum_of_five_seals(
    nats_server, network, bus_factory
):
    ids = network.genesis().authorities.initial
    assert len(ids) == 7
    nodes = await start_authorities(network, bus_factory, ids=ids)
    factory = TxFactory(network)
    client = await bus_factory("C1")
    await submit(client, [factory.trade(f"seven-{i}") for i in range(5)])
    await wait_for(committed(nodes.values(), 5), timeout=60, what="five trades on seven nodes")
    heads = {n.head.hash() for n in nodes.values() if n.head.height == nodes["D1"].head.height}
    assert len(heads) == 1  # one chain
    block = nodes["D1"].store.block(nodes["D1"].head.height)
    assert block is not None and len(block.seals) >= 5  # 2f + 1 of 7
