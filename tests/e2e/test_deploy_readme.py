"""The README's "Deploying a consortium" runs as written: every ``sh`` block, in order, in
one directory standing for all the machines (``institutions/<ID>`` each institution's own),
through the real ``botc`` command line. Afterwards every institution holds the sealed genesis
it installed and its own key only, the NATS node operators share one cluster configuration,
and every directory docker-compose.yml mounts is there with what its services read; and the
consortium starts and trades over TLS, each peer opening its bus from its own directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from bus.server import find_binary
from peers.genesis import read_genesis
from peers.netdir import NetDir
from peers.runtime import open_bus
from tests.deploy_readme import ROOT, institutions, sh_blocks

from .marketplace import Marketplace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the README's commands ran (``institutions/``, ``ceremony/``, ``received/``)."""
    root = tmp_path_factory.mktemp("consortium")
    shim = root / "bin" / "botc"  # `botc`, from this checkout
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m peers.cli "$@"\n')
    shim.chmod(0o755)
    machines = root / "machines"
    machines.mkdir()
    env = {
        **os.environ,
        "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    script = "set -eu\n" + "\n".join(sh_blocks())
    done = subprocess.run(
        ["bash", "-c", script], cwd=machines, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return machines


def test_every_institution_installed_the_sealed_genesis_and_holds_only_its_own_key(consortium):
    members = institutions()
    sealed = read_genesis(consortium / "ceremony" / "genesis.toml")
    assert sorted(m.id for m in sealed.members) == sorted(members)
    seeds = {}
    for member in members:
        net = NetDir(consortium / "institutions" / member)
        assert net.genesis().hash() == sealed.hash()
        seeds[member] = net.identity(member).nkey_seed.encode()
        keys = sorted(p.name for p in (net.path / "keys").iterdir() if p.suffix == ".key")
        assert keys == [f"{member}.key"]
    ca_key = (consortium / "ceremony" / "ca" / "ca.key").read_bytes()
    for member in members:
        home = consortium / "institutions" / member
        held = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
        for other, seed in seeds.items():
            assert (seed in held) == (other == member), (member, other)
        assert ca_key not in held, member  # the CA key stays with the CA


def test_the_node_operators_share_one_cluster_and_each_config_is_valid(consortium):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    nodes = {
        name: service["labels"]["botc.institution"]
        for name, service in compose["services"].items()
        if service.get("image", "").startswith("nats:")
    }
    shared = set()
    for name, operator in nodes.items():
        nats = consortium / "institutions" / operator / "nats"
        shared.add(tuple((nats / f).read_bytes() for f in ("auth.conf", "route.secret")))
        tls = NetDir(nats.parent).tls()
        assert tls is not None and tls.cert_file == nats / "tls" / f"{name}.pem"
        tls.check_server(name)
        # The config as the container reads it, with /etc/nats and /data where they are here.
        conf = (nats / "cluster.conf").read_text()
        local = conf.replace("/etc/nats/", f"{nats}/").replace('"/data"', f'"{nats}/data"')
        check = nats / "check.conf"
        check.write_text(local)
        checked = subprocess.run(
            [find_binary(), "-c", str(check), "-t"],
            env={**os.environ, "NODE": f"n{name[-1]}"},
            capture_output=True,
            text=True,
        )
        check.unlink()
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len(shared) == 1  # one auth callout issuer and route password for the cluster


def test_every_directory_compose_mounts_holds_what_its_service_reads(consortium):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for volume in service["volumes"]:
            host, container = volume.split(":")[:2]
            if not host.startswith("./"):
                continue
            path = consortium / host
            if container == "/etc/nats":
                assert (path / "cluster.conf").is_file() and (path / "auth.conf").is_file()
                continue
            member = service["labels"]["botc.institution"]
            net = NetDir(path)
            assert net.genesis().hash()  # sealed, checked
            net.identity(member)
            tls = net.tls()
            assert tls is not None and tls.ca_file.is_relative_to(path), name
            written = tomllib.loads((path / "nats" / "tls" / "tls.toml").read_text())
            assert "/" not in written["ca_file"], "the CA by a path the container has too"


class Consortium(NetDir):
    """The regulator's directory, as the test's nats-server and its callout see the network
    (``botc nats --net institutions/REG``); every member's data stays in its own."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / "REG")
        self.root = root

    def home(self, member_id: str) -> NetDir:
        return NetDir(self.root / member_id)

    def data_dir(self, member_id: str) -> Path:
        return self.home(member_id).data_dir(member_id)


@pytest.fixture
def network(consortium: Path) -> Consortium:
    return Consortium(consortium / "institutions")


@pytest_asyncio.fixture
async def bus_factory(network: Consortium, nats_server):
    opened = []

    async def make(member_id: str, *, servers=None):
        bus = await open_bus(
            network.home(member_id), member_id, servers=servers or [nats_server.url]
        )
        opened.append(bus)
        return bus

    yield make
    for bus in opened:
        await bus.close()


@pytest.mark.integration
async def test_the_consortium_the_readme_builds_starts_and_trades_over_tls(
    network: Consortium, nats_server, bus_factory
):
    assert network.tls() is not None and nats_server.url.startswith(("nats://", "tls://"))
    market = await Marketplace.open(network, bus_factory)
    try:
        traded = await market.trade("C1")
        assert traded.trade.client == "C1"
        assert (network.root / "D1" / "data" / "D1").is_dir()
        assert not (network.root / "REG" / "data" / "D1").exists()
    finally:
        await market.close()
