"""The regulator manages the authority set of a live chain (paper section II.1).

Four in-process authorities (CCP, D1-D3) seal blocks over a real nats-server; the guarantor G1,
the genesis' candidate, runs a node that follows the chain as an observer until it joins. The
regulator acts through ``botc regulator`` subcommands (separate processes) and, for
equivocation, through its running ``RegulatorService``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bus import subjects
from peers.authority.node import AuthorityNode
from peers.regulator import RegulatorService
from rfq.ledger.block import quorum
from rfq.ledger.consensus import Prepare

from .chainkit import AUTHORITIES, TxFactory, botc_regulator, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration


def sealed_by(node: AuthorityNode, height: int) -> set[str]:
    block = node.store.block(height)
    assert block is not None, f"no block {height}"
    return {seal.authority for seal in block.seals}


async def keep_blocks_coming(network: Any, bus_factory: Any, count: int, tag: str) -> None:
    """A few trades so the next heights come at block time, not the idle interval."""
    factory = TxFactory(network)
    client = await bus_factory("C2")
    for i in range(count):
        await submit(client, [factory.trade(f"{tag}-{i}", client="C2", dealer="D1")])
        await asyncio.sleep(0.3)


async def test_the_regulator_vetoes_renominates_and_evicts_by_cli_and_the_new_set_seals_blocks(
    nats_server, network, bus_factory
):
    nodes = await start_authorities(network, bus_factory, ids=(*AUTHORITIES, "G1"))
    ccp = nodes["CCP"]
    assert ccp.state.gov.candidates == ("G1",)

    code, out, _ = await botc_regulator(network, "veto", "G1")
    assert code == 0 and out is not None and out["ok"] and out["action"] == "veto"
    await wait_for(lambda: ccp.state.gov.vetoed == ("G1",), what="G1 vetoed")
    code, out, _ = await botc_regulator(network, "nominate", "G1")
    assert code == 0 and out is not None and out["ok"]
    await wait_for(lambda: ccp.state.gov.candidates == ("G1",), what="G1 a candidate again")

    code, out, err = await botc_regulator(network, "nominate", "G1")
    assert code == 1 and out is not None and not out["ok"]
    assert "already an authority or candidate" in out["reason"] and "refused" in err
    code, out, err = await botc_regulator(network, "nominate", "NOBODY")
    assert code == 2 and out is None and "no member 'NOBODY'" in err
    code, _, err = await botc_regulator(network, "rating", "C1", "Z")
    assert code == 2 and "grade 'Z'" in err

    code, out, _ = await botc_regulator(network, "evict", "D3", "--reason", "operator request")
    assert code == 0 and out is not None and out["ok"], out
    evicted_at = out["height"]
    new_set = ("CCP", "D1", "D2", "G1")
    await wait_for(
        lambda: all(n.state.authorities == new_set for n in nodes.values()),
        what="every node on the new set",
    )
    events = [(e.action, e.member, e.effective_height) for e in ccp.state.gov.log[-2:]]
    assert events == [("evict", "D3", evicted_at + 1), ("join", "G1", evicted_at + 1)]

    await keep_blocks_coming(network, bus_factory, 4, "after-evict")
    last = evicted_at + 4
    await wait_for(
        lambda: all(nodes[a].head.height >= last for a in new_set), what="four more final blocks"
    )
    for height in range(evicted_at + 1, last + 1):
        seals = sealed_by(ccp, height)
        assert seals <= set(new_set) and len(seals) >= quorum(4), (height, seals)
        assert ccp.store.block(height).header.proposer in new_set
    # D3 keeps following as an observer: same chain, no longer signing.
    await wait_for(lambda: nodes["D3"].head.height >= last, what="D3 following")
    assert nodes["D3"].store.block(last).hash() == ccp.store.block(last).hash()
    for node in nodes.values():
        await node.stop()


async def test_an_equivocating_authority_is_reported_by_the_regulator_evicted_and_replaced(
    nats_server, network, bus_factory
):
    nodes = await start_authorities(network, bus_factory, ids=(*AUTHORITIES, "G1"))
    genesis = network.genesis()
    regulator = await RegulatorService(await bus_factory("REG"), genesis, poll_s=0.5).start()
    await keep_blocks_coming(network, bus_factory, 2, "before")
    await wait_for(lambda: all(n.head.height >= 2 for n in nodes.values()), what="two blocks")

    # D2 turns Byzantine: two prepares for one height and round naming different blocks,
    # signed with its real key and published on otc.ibft.<height>.
    d2 = nodes["D2"]
    height = d2.head.height
    for fake in (b"\x01" * 32, b"\x02" * 32):
        signed = d2.bus.outbox.sign(Prepare(height=height, round=0, block_hash=fake))
        await d2.bus.publish_signed(subjects.consensus(height), signed)
    await d2.bus.flush()

    await wait_for(
        lambda: regulator.evidence and regulator.evidence[0].receipt is not None,
        what="the regulator's evidence committed",
    )
    [report] = regulator.evidence
    assert report.offender == "D2" and report.kind == "ibft_prepare"
    assert report.receipt is not None and report.receipt.ok, report.receipt
    assert regulator.stats["evidence_submitted"] == 1
    evicted_at = report.receipt.height

    new_set = ("CCP", "D1", "D3", "G1")
    await wait_for(
        lambda: all(n.state.authorities == new_set for n in nodes.values()),
        what="D2 evicted, G1 joined",
    )
    ccp = nodes["CCP"]
    [evict, join] = [e for e in ccp.state.gov.log if e.height == evicted_at]
    assert (evict.action, evict.member) == ("evict", "D2")
    assert "equivocation" in evict.reason
    assert (join.action, join.member) == ("join", "G1")
    assert "D2" in ccp.state.gov.banned

    await keep_blocks_coming(network, bus_factory, 4, "after")
    last = evicted_at + 4
    await wait_for(
        lambda: all(nodes[a].head.height >= last for a in new_set), what="blocks by the new set"
    )
    for h in range(evicted_at + 1, last + 1):
        seals = sealed_by(ccp, h)
        assert "D2" not in seals and seals <= set(new_set) and len(seals) >= quorum(4)
    assert regulator.stats["equivocations"] == 1  # reported once, not once per message
    await regulator.close()
    for node in nodes.values():
        await node.stop()
