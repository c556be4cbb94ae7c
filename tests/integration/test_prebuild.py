"""``botc chain prebuild``: a chain of real trades written into every authority's store, that
the authorities start from as from any chain they made themselves, and go on from."""

from __future__ import annotations

import json

import pytest

from peers.authority.store import SqliteChainStore
from peers.authority.verify import verify_chain
from peers.cli import main
from peers.observer import ChainFollower

from .chainkit import AUTHORITIES, TxFactory, start_authorities, wait_for

pytestmark = pytest.mark.integration

TRADES = 2_500


async def test_authorities_start_from_a_prebuilt_chain_by_its_snapshot_and_go_on_trading(
    network, nats_server, bus_factory, capsys
):
    argv = ["chain", "prebuild", "--net", str(network.path), "--contracts", str(TRADES), "--json"]
    assert main(argv) == 0
    built = json.loads(capsys.readouterr().out)
    # four authorities, the candidate standing by, the regulator's two followers (its
    # monitor's, the callout's)
    assert built["live_contracts"] == TRADES and len(built["stores"]) == 7
    height, limit = built["height"], network.genesis().params.max_block_bytes
    for member in (*AUTHORITIES, "G1"):  # sealed by a quorum, re-executing to every root
        store = SqliteChainStore(network.data_dir(member) / "chain.db")
        verdict = verify_chain(network.genesis(), store)
        assert verdict.ok and verdict.height == height, (member, verdict)
        assert all(len(store.raw_block(h) or b"") <= limit + 65_536 for h in range(1, height + 1))
        store.close()

    nodes = await start_authorities(network, bus_factory)
    for node in nodes.values():  # three up may already have decided an idle block on top
        assert node.head.height >= height and node.state.book.open_count == TRADES
        assert node.stats["replayed_blocks"] == 0 and node.stats["snapshot_rejected"] == 0
    regulator = network.genesis().regulator.id
    follower = ChainFollower(
        await bus_factory(regulator),
        network.genesis(),
        store_path=network.follower_store(regulator, "regulator"),
    )
    await follower.start()  # the regulator's monitor starts from the same snapshot
    assert follower.stats["replayed_blocks"] == 0 and follower.height >= height
    assert follower.state.book.open_count == TRADES
    client = await bus_factory("C1")
    await client.nc.publish("otc.tx.C1", TxFactory(network).trade("after", client="C1"))
    await wait_for(
        lambda: all(len(n.state.trades) == TRADES + 1 for n in nodes.values()),
        what="a trade on top of the prebuilt chain",
    )
    await wait_for(lambda: "after" in follower.state.trades, what="the follower following it")
    await follower.close()
    for node in nodes.values():
        await node.stop()


def test_a_chain_that_has_started_is_not_prebuilt_again(network, capsys):
    argv = ["chain", "prebuild", "--net", str(network.path), "--contracts", "10"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    assert "chain already has blocks" in capsys.readouterr().err


def test_a_prebuild_of_no_contracts_is_refused(network, capsys):
    assert main(["chain", "prebuild", "--net", str(network.path), "--contracts", "0"]) == 2
    assert "--contracts 0: give 1..1000000" in capsys.readouterr().err
