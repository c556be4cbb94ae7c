"""The regulator's observer node: it follows final blocks and keeps its own state, trusting no
single authority (real nats-server, four in-process authorities)."""

from __future__ import annotations

import msgspec
import pytest

from bus import subjects
from peers.observer import ChainFollower

from .chainkit import TxFactory, committed, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration


async def test_the_observer_reaches_every_authoritys_state_root_block_by_block(
    nats_server, network, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    client = await bus_factory("C1")
    await submit(client, [factory.trade(f"early-{i}") for i in range(3)])
    await wait_for(committed(nodes.values(), 3), what="three trades final")

    # started late: the blocks before it are fetched from the authorities and checked
    async with ChainFollower(await bus_factory("REG"), network.genesis()) as follower:
        await wait_for(lambda: follower.height >= nodes["D1"].head.height, what="caught up")
        await submit(client, [factory.trade(f"late-{i}") for i in range(3)])
        await wait_for(committed(nodes.values(), 6), what="six trades final")
        target = nodes["D1"].head.height
        await wait_for(lambda: follower.height >= target, what="the new blocks followed")
        block = nodes["D1"].store.block(follower.height)
        assert block is not None
        assert follower.state.state_root() == block.header.state_root
        assert set(follower.state.trades) >= {f"late-{i}" for i in range(3)}
        assert follower.stats["blocks"] == follower.height
        assert follower.stats["block_refused"] == 0


async def test_a_block_on_the_chain_subject_without_a_quorum_of_seals_is_refused_and_counted(
    nats_server, network, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    client = await bus_factory("C1")
    async with ChainFollower(await bus_factory("REG"), network.genesis()) as follower:
        await submit(client, [factory.trade("real")])
        await wait_for(committed(nodes.values(), 1), what="one trade final")
        await wait_for(lambda: "real" in follower.state.trades, what="the trade followed")

        # one authority (D1's own key) announces the next height with its seal alone
        d1 = nodes["D1"]
        following = d1.store.block(d1.head.height)
        assert following is not None
        forged = msgspec.structs.replace(
            following,
            header=msgspec.structs.replace(following.header, height=follower.height + 1),
            seals=following.seals[:1],
        )
        attacker = await bus_factory("D1")
        await attacker.nc.publish(
            subjects.chain_block(follower.height + 1), msgspec.msgpack.encode(forged)
        )
        await attacker.flush()
        await wait_for(lambda: follower.stats["block_refused"] >= 1, what="the forgery refused")
        real = d1.store.block(follower.height)
        assert real is not None and follower.head == real.header  # still the real chain

        # and the chain goes on: the next real block is followed
        await submit(client, [factory.trade("after")])
        await wait_for(lambda: "after" in follower.state.trades, what="the next trade followed")


async def test_an_observer_with_a_store_restarts_from_its_snapshot_not_from_the_genesis(
    nats_server, network, bus_factory, tmp_path
):
    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    client = await bus_factory("C1")
    path = tmp_path / "regulator-follower.db"
    await submit(client, [factory.trade(f"first-{i}") for i in range(3)])
    await wait_for(committed(nodes.values(), 3), what="three trades final")
    reg = await bus_factory("REG")
    async with ChainFollower(reg, network.genesis(), store_path=path) as follower:
        await wait_for(lambda: follower.height >= nodes["D1"].head.height, what="caught up")
        stopped_at = follower.height
    assert follower.stats["blocks"] == stopped_at  # every block from the genesis, once

    await submit(client, [factory.trade("while-down")])
    await wait_for(committed(nodes.values(), 4), what="a trade while it was down")
    async with ChainFollower(reg, network.genesis(), store_path=path) as again:
        # its own snapshot at the height it stopped: no block re-executed from its store
        assert again.stats["replayed_blocks"] == 0 and again.stats["snapshot_rejected"] == 0
        assert set(again.state.trades) >= {f"first-{i}" for i in range(3)}
        await wait_for(lambda: "while-down" in again.state.trades, what="the missed block")
        # only the blocks after its snapshot came from the authorities
        assert again.stats["blocks"] == again.height - stopped_at
        block = nodes["D1"].store.block(again.height)
        assert block is not None and again.state.state_root() == block.header.state_root


async def test_an_unusable_store_is_moved_aside_and_the_observer_follows_from_the_genesis(
    nats_server, network, bus_factory, tmp_path
):
    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    client = await bus_factory("C1")
    await submit(client, [factory.trade("before")])
    await wait_for(committed(nodes.values(), 1), what="a trade final")
    path = tmp_path / "regulator-follower.db"
    path.write_bytes(b"not a database, " * 1000)
    reg = await bus_factory("REG")
    async with ChainFollower(reg, network.genesis(), store_path=path) as follower:
        assert follower.stats["store_unusable"] == 1
        assert (tmp_path / "regulator-follower.db.unusable").read_bytes().startswith(b"not a")
        await wait_for(lambda: "before" in follower.state.trades, what="followed afresh")
        assert follower.stats["blocks"] == follower.height  # every block, from the genesis
    # and the fresh store it wrote is the one the next start uses
    async with ChainFollower(reg, network.genesis(), store_path=path) as again:
        assert again.stats["store_unusable"] == 0 and again.stats["replayed_blocks"] == 0
        assert "before" in again.state.trades
