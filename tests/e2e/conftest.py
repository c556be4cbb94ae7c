"""End-to-end fixtures: a fast network (tight block times) and the whole marketplace in-process.

Every peer is the real service on a real nats-server: four authorities (D1-D3, CCP), the
oracle putting closes on chain, three dealer bots, clients C1 and C2, the settlement bank,
guarantor G1 and the regulator's ledger view (``marketplace.Marketplace``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from peers.netdir import NetDir, create_network
from rfq.identity import NetworkParams

from .marketplace import Marketplace


@pytest.fixture
def net_params() -> NetworkParams:
    """Blocks every 50 ms while transactions wait, every 300 ms when idle."""
    return NetworkParams(
        block_time_ms=50,
        idle_block_ms=300,
        round_timeout_ms=1000,
    )


@pytest.fixture
def network(tmp_path: Path, net_params: NetworkParams) -> NetDir:
    return create_network(tmp_path / "net", dealers=3, clients=5, params=net_params)


@pytest.fixture
def bank_autostart() -> bool:
    """Whether the marketplace starts the settlement bank (a test may start its own)."""
    return True


@pytest_asyncio.fixture
async def marketplace(
    network, nats_server, bus_factory, bank_autostart
) -> AsyncIterator[Marketplace]:
    market = await Marketplace.open(network, bus_factory)
    if bank_autostart:
        await market.start_bank()
    try:
        yield market
    finally:
        await market.close()
