"""The chain stall's cause, kept as a regression test.

A round change makes an authority undo the proposal it executed: it reloads the newest
snapshot and replays the blocks after it. Snapshots taken after a contract had settled did not
restore to their root, so every undo was rejected back to the genesis and replayed the whole
chain synchronously on the event loop, for longer than the round timeouts; the network then
fell from round change to round change and never decided again. Here contracts settle, mature
and default across several snapshots, and every undo must come back from the newest snapshot
with the live node's root.
"""

from __future__ import annotations

import datetime as dt

import pytest

from peers.netdir import NetDir, create_network
from rfq.identity import NetworkParams
from rfq.ledger.tx import CreditEventTx, PriceFixing

from .chainkit import TxFactory, committed, rebar, start_authorities, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def network(tmp_path) -> NetDir:
    params = NetworkParams(block_time_ms=50, idle_block_ms=100, snapshot_every=5)
    return create_network(tmp_path / "net", dealers=3, clients=5, params=params)


async def test_an_undo_after_settlements_reloads_from_the_newest_snapshot_not_the_genesis(
    nats_server, network, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    factory = TxFactory(network)
    c1, c2, oracle, reg = [await bus_factory(m) for m in ("C1", "C2", "ORACLE", "REG")]
    await c1.nc.publish("otc.tx.C1", factory.trade("r1", client="C1"))
    await c2.nc.publish("otc.tx.C2", factory.trade("r2", client="C2", dealer="D2"))
    await wait_for(committed(nodes.values(), 2), what="two trades final")
    # Past the maturity (90 days): both contracts settle on this fixing.
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=91)
    await oracle.nc.publish(
        "otc.tx.ORACLE", factory.sign("ORACLE", PriceFixing(day, ((rebar(), 3300.0),)))
    )
    await reg.nc.publish("otc.tx.REG", factory.sign("REG", CreditEventTx("C3", "elsewhere")))
    await wait_for(
        lambda: all(
            not n.speculating and n.state.ratings["C1"].evidence and n.state.standing.get("C3")
            for n in nodes.values()
        ),
        what="settlements and a credit event final",
    )
    tip = max(n.head.height for n in nodes.values())
    await wait_for(
        lambda: all(n.head.height >= tip + 12 for n in nodes.values()),
        what="two more snapshots after the settlements",
    )
    for node in nodes.values():
        live_root = node.state.state_root()
        rejected, replayed = node.stats["snapshot_rejected"], node.stats["replayed_blocks"]
        state, head = node.rebuild_from_store()
        assert head.hash() == node.head.hash()
        assert state.state_root() == live_root
        assert node.stats["snapshot_rejected"] == rejected
        # From the newest snapshot: fewer blocks than the snapshot interval.
        assert node.stats["replayed_blocks"] - replayed < network.genesis().params.snapshot_every
    for node in nodes.values():
        await node.stop()
