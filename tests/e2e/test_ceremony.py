"""A network built by the genesis ceremony, not by ``botc init``: every institution makes its
key in its own directory, sends the regulator only its identity file, installs the sealed
genesis, and the marketplace starts and trades with each member's bus opened from its own
directory. No directory ever holds another member's secret.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from bus.client import Bus
from peers.cli import main
from peers.netdir import NetDir, member_extras, member_ids
from peers.runtime import open_bus
from rfq.identity import NetworkParams, Role

from .marketplace import Marketplace

pytestmark = pytest.mark.integration

MEMBERS = member_ids(dealers=3, clients=2, guarantors=1)


def botc(*argv: str | Path) -> None:
    code = main([str(a) for a in argv])
    assert code == 0, f"botc {' '.join(map(str, argv))} exited {code}"


class Institutions(NetDir):
    """The regulator's NETDIR, as the test's marketplace sees the network: the nats-server's
    auth and run file live there, while each member keeps its data in its own directory."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / "REG")
        self.root = root

    def home(self, member_id: str) -> NetDir:
        return NetDir(self.root / member_id)

    def data_dir(self, member_id: str) -> Path:
        return self.home(member_id).data_dir(member_id)


def ceremony(root: Path, params: NetworkParams) -> Institutions:
    """The README's steps, machine by machine (each machine a directory under ``root``)."""
    for member_id, role in MEMBERS:  # on each institution's machine
        botc("keygen", "--id", member_id, "--role", role, root / member_id / "keys")
    reg = root / "REG"
    inbox = reg / "inbox"  # what the institutions send the regulator: public files only
    inbox.mkdir()
    for member_id, _ in MEMBERS:
        name = f"{member_id}.identity.json"
        shutil.copy(root / member_id / "keys" / name, inbox / name)
    draft = reg / "draft.json"
    botc("genesis", "draft", "--regulator", inbox / "REG.identity.json", "--name", "t", draft)
    clients = 0
    for member_id, role in MEMBERS:
        if role == Role.REGULATOR:
            continue
        extra = member_extras(role, clients)
        clients += role == Role.CLIENT
        options = ["--capital", extra["capital"], "--ccr-threshold", extra.get("ccr_threshold", 0)]
        if "external_rating" in extra:
            options += ["--rating", extra["external_rating"]]
        botc("genesis", "add", draft, inbox / f"{member_id}.identity.json", *options)
    botc("genesis", "authorities", draft, "--initial", "D1,D2,D3,CCP", "--candidates", "G1")
    botc(
        "genesis", "params", draft,
        "--set", f"block_time_ms={params.block_time_ms}",
        "--set", f"idle_block_ms={params.idle_block_ms}",
        "--set", f"round_timeout_ms={params.round_timeout_ms}",
    )  # fmt: skip
    sealed = reg / "genesis.sealed.toml"
    botc("genesis", "seal", draft, "--key", reg / "keys" / "REG.key", sealed)
    for member_id, _ in MEMBERS:  # each machine checks the sha256 and installs the genesis
        botc("genesis", "show", sealed)
        botc("genesis", "install", sealed, root / member_id)
    return Institutions(root)


def test_every_directory_holds_its_own_secret_only(network: Institutions):
    seeds = {mid: network.home(mid).identity(mid).nkey_seed for mid, _ in MEMBERS}
    for member_id, _ in MEMBERS:
        home = network.root / member_id
        keys = sorted(p.name for p in home.rglob("*.key"))
        assert keys == [f"{member_id}.key"], home
        text = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
        for other, seed in seeds.items():
            assert (seed.encode() in text) == (other == member_id), (home, other)


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
