"""The ledger client as a service: started and closed once, and a light client throughout."""

from __future__ import annotations

import hashlib

import pytest

from peers.ledger_client import LedgerClient
from peers.service import ServiceStatus
from rfq.queries import StatusReply

from .chainkit import TxFactory, start_authorities, submit, wait_for

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
