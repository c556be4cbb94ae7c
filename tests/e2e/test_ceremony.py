"""A network built by the genesis ceremony, not by ``botc init``: every institution makes its
key in its own directory, sends the regulator only its identity file, installs the sealed
genesis, and the marketplace starts and trades with each member's bus opened from its own
directory. No directory ever holds another member's secret.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from bus.client import Bus
from peers.runtime import open_bus
from rfq.identity import NetworkParams

from ..ceremony import Institutions, ceremony, foreign_secrets
from .marketplace import Marketplace

pytestmark = pytest.mark.integration


def test_every_directory_holds_its_own_secret_only(network: Institutions):
    assert foreign_secrets(network) == []


@pytest.fixture
def network(tmp_path: Path, net_params: NetworkParams) -> Institutions:
    return ceremony(tmp_path / "machines", net_params)


@pytest_asyncio.fixture
async def bus_factory(network: Institutions, nats_server) -> AsyncIterator[object]:
    """Each member's bus opened from its own directory, with its own key."""
    opened: list[Bus] = []

    async def make(member_id: str, *, servers: Sequence[str] | None = None) -> Bus:
        bus = await open_bus(
            network.home(member_id), member_id, servers=servers or [nats_server.url]
        )
        opened.append(bus)
        return bus

    yield make
    for bus in opened:
        await bus.close()


async def test_a_network_built_by_the_ceremony_starts_and_trades(
    network: Institutions, nats_server, bus_factory
):
    market = await Marketplace.open(network, bus_factory)
    try:
        traded = await market.trade("C1")
        assert traded.trade.client == "C1" and traded.trade.dealer in ("D1", "D2", "D3")
        assert (network.root / "D1" / "data" / "D1").is_dir()
        assert not (network.root / "REG" / "data" / "D1").exists()
    finally:
        await market.close()
