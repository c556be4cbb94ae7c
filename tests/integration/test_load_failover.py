"""A simulated client whose bus cannot publish (closed, or failing over with its buffer full)
loses that round, counted and logged as a warning, and goes on: the load never logs an error
for a bus fault (a multi-host test's NATS-node kill saw ``load_round_failed``)."""

from __future__ import annotations

import random

import pytest

from peers.counterparty import ClientSession
from peers.load import LoadStats, SimulatedClient

pytestmark = pytest.mark.integration


async def test_a_round_whose_rfq_cannot_be_published_is_counted_not_raised(
    nats_server, network, bus_factory
):
    bus = await bus_factory("C1")
    session = await ClientSession(bus, network.genesis()).start()
    stats = LoadStats()
    client = SimulatedClient(session, stats, random.Random(1))
    await bus.nc.close()
    await client.one_round()
    assert stats.failures == {"rfq not sent": 1} and stats.rfqs == 0
