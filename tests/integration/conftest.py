import asyncio
import datetime as dt
import time
from dataclasses import dataclass

import pytest

from peers.authority.node import AuthorityNode
from peers.counterparty import ClientSession
from peers.dealer import DealerBot
from peers.oracle import OracleService, Simulator
from rfq.instruments import listed_futures


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@dataclass
class LiveMarket:
    """In-process peers over a real nats-server: the oracle, four authorities, three dealer
    bots and the sessions of clients C1 and C2."""

    oracle: OracleService
    authorities: dict[str, AuthorityNode]
    dealers: dict[str, DealerBot]
    clients: dict[str, ClientSession]
    today: dt.date


@pytest.fixture
async def live_market(nats_server, network, bus_factory):
    genesis = network.genesis()
    authorities = {}
    for member in genesis.authorities.initial:
        bus = await bus_factory(member)
        authorities[member] = await AuthorityNode(bus, genesis, network.data_dir(member)).start()
    oracle = OracleService(await bus_factory("ORACLE"))
    sim = Simulator(start=dt.date.today(), seed=3, ticks_per_day=2)
    oracle.history = {k: list(v) for k, v in sim.history.items()}
    await oracle.start()
    dealers = {}
    for dealer in ("D1", "D2", "D3"):
        dealers[dealer] = await DealerBot(await bus_factory(dealer), genesis).start()
    clients = {}
    for client in ("C1", "C2"):
        session = await ClientSession(await bus_factory(client), genesis).start()
        await session.market.attach(session.bus)
        clients[client] = session
    for price in sim.ticks():
        await oracle.publish(price)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
        listed_futures("RB", sim.start)[-1].id in d.market.latest for d in dealers.values()
    ):
        await asyncio.sleep(0.05)
    yield LiveMarket(oracle, authorities, dealers, clients, sim.start)
    for node in authorities.values():
        await node.stop()
