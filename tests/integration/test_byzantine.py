"""A Byzantine authority that proposes two different blocks for one height and round."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from bus import subjects
from peers.authority.node import AuthorityNode
from peers.cli import main
from rfq.ledger.block import build_block
from rfq.ledger.consensus import Broadcast, ConsensusMessage, Proposal

from .chainkit import TxFactory, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration


class EquivocatingNode(AuthorityNode):
    """Whenever it proposes, also signs and broadcasts an empty block for the same round."""

    def _run(self, actions):
        super()._run(actions)
        for action in actions:
            if not isinstance(action, Broadcast) or action.message.kind != "ibft_proposal":
                continue
            honest_state, head = self.rebuild_from_store()
            real = msgspec.msgpack.decode(action.message.body, type=ConsensusMessage)
            timestamp = real.block.header.timestamp_ms + 1
            honest_state.execute(real.height, timestamp, head, ())
            other = build_block(
                head,
                proposer=self.me,
                round=real.round,
                timestamp_ms=timestamp,
                txs=(),
                state_root=honest_state.state_root(),
                authorities=honest_state.gov.previous_set,
            )
            twin = self.bus.outbox.sign(
                Proposal(real.height, real.round, other, real.justification)
            )
            self._spawn(self.bus.publish_signed(subjects.consensus(real.height), twin))
            self.stats["equivocations"] += 1


async def test_a_double_proposing_authority_forks_nothing_and_is_replaced_by_a_candidate(
    nats_server, network, bus_factory
):
    genesis = network.genesis()
    nodes: dict[str, AuthorityNode] = {}
    for member in ("CCP", "D1", "D2", "G1"):
        nodes[member] = await AuthorityNode(
            await bus_factory(member), genesis, network.data_dir(member)
        ).start()
    nodes["D3"] = await EquivocatingNode(
        await bus_factory("D3"), genesis, network.data_dir("D3")
    ).start()
    honest = [nodes[m] for m in ("CCP", "D1", "D2", "G1")]
    factory = TxFactory(network)
    client = await bus_factory("C1")
    for batch in range(12):
        await submit(client, [factory.trade(f"x{batch}-{i}") for i in range(5)])
        await asyncio.sleep(0.3)
        if "D3" not in nodes["CCP"].state.authorities:
            break
    await wait_for(
        lambda: all("D3" not in n.state.authorities for n in honest), timeout=60, what="D3 evicted"
    )
    assert nodes["D3"].stats["equivocations"] >= 1
    assert nodes["CCP"].state.authorities == ("CCP", "D1", "D2", "G1")
    events = nodes["CCP"].state.gov.log
    assert [(e.action, e.member) for e in events][-2:] == [("evict", "D3"), ("join", "G1")]
    assert "equivocation" in events[-2].reason
    evicted_at = events[-2].height
    await submit(client, [factory.trade(f"after{i}") for i in range(10)])
    await wait_for(
        lambda: all(n.head.height >= evicted_at + 3 for n in honest),
        timeout=60,
        what="blocks after the eviction",
    )
    tip = min(n.head.height for n in honest)
    for h in range(1, tip + 1):
        assert len({n.store.block(h).hash() for n in honest}) == 1, f"fork at {h}"
    later = nodes["CCP"].store.block(tip)
    sealers = {seal.authority for seal in later.seals}
    assert "D3" not in sealers
    assert sealers <= {"CCP", "D1", "D2", "G1"}
    for node in nodes.values():
        await node.stop()
    assert main(["chain", "verify", "--net", str(network.path), "--id", "G1"]) == 0


async def test_botc_status_reports_each_authority_and_the_set(
    nats_server, network, bus_factory, capsys
):
    nodes = await start_authorities(network, bus_factory)
    await wait_for(lambda: all(n.head.height >= 1 for n in nodes.values()), timeout=20)
    code = await asyncio.to_thread(main, ["status", "--net", str(network.path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["healthy"] is True
    assert report["authorities"] == ["CCP", "D1", "D2", "D3"]
    assert all(report["nodes"][a]["height"] >= 1 for a in report["authorities"])
    assert "down" in report["nodes"]["G1"]
    for node in nodes.values():
        await node.stop()
