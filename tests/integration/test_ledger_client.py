"""The ledger client as a service: started and closed once, and a light client throughout."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from peers.ledger_client import LedgerClient
from peers.service import ServiceStatus
from rfq.messages import Accept
from rfq.queries import StatusReply
from rfq.signing import SignedMessage

from .chainkit import AUTHORITIES, TxFactory, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration


async def test_client_c1s_ledger_client_is_started_and_closed_once_by_async_with(
    network, nats_server, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    ledger = LedgerClient(await bus_factory("C1"), network.genesis())
    assert ledger.status == ServiceStatus.NEW
    async with ledger as c1:
        assert c1 is ledger and c1.status == ServiceStatus.RUNNING
        assert await c1.start() is c1  # a second start does nothing
        status = await c1.chain_status()
        assert isinstance(status, StatusReply) and status.proof is not None
        assert not c1.dropped
    assert ledger.status == ServiceStatus.CLOSED
    await ledger.close()  # a second close does nothing
    assert ledger.status == ServiceStatus.CLOSED
    for node in nodes.values():
        await node.stop()


async def test_client_c1_hears_its_trade_final_with_a_proof_and_follows_the_set(
    network, nats_server, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    async with LedgerClient(await bus_factory("C1"), network.genesis()) as c1:
        tx = TxFactory(network).trade("r1", client="C1")
        await submit(c1.bus, [tx])
        receipt = await c1.wait(hashlib.sha256(tx).hexdigest(), timeout=20)
        assert receipt.ok and c1.final(receipt.tx_id) == receipt
        await wait_for(lambda: c1.light.height >= receipt.height, what="a header verified")
        assert c1.authorities_in_force == ("CCP", "D1", "D2", "D3")
        assert not c1.dropped and c1.stats["proven_ok"] == 1
    for node in nodes.values():
        await node.stop()


async def test_candidate_g1_standing_by_sends_client_c1_no_note_of_a_transaction_it_refuses(
    network, nats_server, bus_factory
):
    """G1 runs a node beside the four authorities, standing by: it admits and refuses as they
    do, but only the set in force tells C1 (a note of G1's would be dropped, or counted by a
    client that trusted any node)."""
    nodes = await start_authorities(network, bus_factory, (*AUTHORITIES, "G1"))
    factory = TxFactory(network)
    async with LedgerClient(await bus_factory("C1"), network.genesis()) as c1:
        # an accept of a quote whose dealer's signature does not verify: refused at admission
        accept = msgspec.msgpack.decode(
            msgspec.msgpack.decode(factory.trade("r0"), type=SignedMessage).body, type=Accept
        )
        bad_quote = msgspec.structs.replace(accept.quote, signature=bytes(64))
        refused = factory.sign("C1", msgspec.structs.replace(accept, quote=bad_quote))
        await submit(c1.bus, [refused])
        await wait_for(lambda: nodes["G1"].stats["tx_refused"] == 1, what="G1 refused it too")
        await nodes["G1"].bus.flush()  # whatever G1 said of it has reached the server
        verdict = await c1.wait(hashlib.sha256(refused).hexdigest(), timeout=20)
        assert not verdict.ok and verdict.index == -1  # refused at admission by f+1
        # a trade's notes, from the authorities, reach C1 after anything G1 said before
        tx = factory.trade("r1", client="C1")
        await submit(c1.bus, [tx])
        assert (await c1.wait(hashlib.sha256(tx).hexdigest(), timeout=20)).ok
        assert c1.dropped["note_not_from_authority"] == 0
    for node in nodes.values():
        await node.stop()
