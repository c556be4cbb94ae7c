"""A proposal that is not decided is discarded on its overlay: no reload, no replay."""

from __future__ import annotations

import pytest

from peers.authority.node import AuthorityNode
from peers.netdir import NetDir, create_network
from rfq.identity import NetworkParams
from rfq.ledger.block import Block, proposer_for
from rfq.ledger.state import BlockResult

from .chainkit import AUTHORITIES, TxFactory, committed, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def network(tmp_path) -> NetDir:
    # Blocks only when there are transactions (no idle blocks racing the test); snapshots
    # rarely, so that undoing by a reload would replay every stored block.
    params = NetworkParams(
        block_time_ms=50, idle_block_ms=600_000, round_timeout_ms=1000, snapshot_every=1000
    )
    return create_network(tmp_path / "net", dealers=3, clients=5, params=params)


async def test_a_proposal_not_decided_leaves_the_final_root_and_replays_no_block(
    nats_server, network, bus_factory
):
    """A few blocks are final, then the next height's first proposer runs alone: its block
    executes but cannot be decided. The others join, the round changes and another
    proposer's block is decided: the lone node discards its proposal (the final root is
    then exactly the last final block's), commits that block, and replays nothing."""
    factory = TxFactory(network)
    client = await bus_factory("C1")
    nodes = await start_authorities(network, bus_factory)
    for i in range(3):
        await submit(client, [factory.trade(f"before{i}")])
        await wait_for(committed(nodes.values(), i + 1), what=f"trade {i} final everywhere")
    await wait_for(lambda: len({n.head.height for n in nodes.values()}) == 1, what="one head")
    head = nodes["CCP"].head
    for node in nodes.values():
        await node.crash()

    genesis = network.genesis()
    first = proposer_for(head.height + 1, 0, nodes["CCP"].state.authorities)
    alone = (await start_authorities(network, bus_factory, ids=(first,)))[first]
    assert alone.head == head
    replayed = alone.stats["replayed_blocks"]  # on start: the blocks after the genesis
    assert replayed == head.height
    decided: list[Block] = []

    def on_decided(block: Block, _result: BlockResult | None) -> None:
        decided.append(block)

    alone.decided_listeners.append(on_decided)
    roots_after_discard: list[bytes] = []
    discard = alone.executor.discard

    def discard_and_look() -> None:
        had = alone.executor.pending is not None
        discard()
        if had:
            roots_after_discard.append(alone.state.state_root())

    alone.executor.discard = discard_and_look  # type: ignore[method-assign]
    await submit(client, [factory.trade("undecided")])
    await wait_for(lambda: alone.speculating, what="the lone proposer executes its block")
    assert "undecided" not in alone.state.trades  # the final maps are apart from it
    others: dict[str, AuthorityNode] = {}
    for member in AUTHORITIES:
        if member != first:
            bus = await bus_factory(member)
            others[member] = await AuthorityNode(bus, genesis, network.data_dir(member)).start()
    await wait_for(lambda: bool(decided), timeout=60, what="the next height decided")
    block = decided[0]
    assert block.height == head.height + 1 and block.header.proposer != first
    assert "undecided" not in alone.state.trades
    assert alone.stats["proposals_discarded"] >= 1
    assert roots_after_discard[0] == head.state_root
    assert alone.stats["replayed_blocks"] == replayed  # nothing replayed to undo
    assert alone.head.height >= block.height
    proposer = others[block.header.proposer]
    await wait_for(lambda: proposer.head.height >= block.height, what="the proposer's copy")
    assert alone.store.block(block.height).hash() == proposer.store.block(block.height).hash()
    for node in (alone, *others.values()):
        await node.stop()
