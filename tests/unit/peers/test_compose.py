"""docker-compose.yml and the Dockerfile agree with what ``botc init`` writes and botc accepts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from bus.server import find_binary
from peers.cli import build_parser
from peers.netdir import create_network
from rfq.identity import AUTHORITY_ELIGIBLE, Role

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture
def net(tmp_path):
    return create_network(tmp_path / "net")  # what `botc init ./net` makes


def peer_services(compose: dict) -> dict[str, list[str]]:
    return {
        name: svc["command"]
        for name, svc in compose["services"].items()
        if not name.startswith("nats")
    }


def test_three_nats_nodes_run_the_cluster_config_botc_init_writes(compose, net):
    nats = {n: s for n, s in compose["services"].items() if n.startswith("nats")}
    assert sorted(nats) == ["nats1", "nats2", "nats3"]
    conf = (net.path / "nats" / "cluster.conf").read_text()
    for name, svc in nats.items():
        assert svc["command"] == ["-c", "/etc/nats/cluster.conf"]
        assert "./net/nats:/etc/nats:ro" in svc["volumes"]
        assert f"@{name}:6222" in conf
    assert 'include "auth.conf"' in conf
    assert {s["environment"]["NODE"] for s in nats.values()} == {"n1", "n2", "n3"}


def test_the_cluster_config_is_valid_for_the_real_nats_server(net):
    checked = subprocess.run(
        [find_binary(), "-c", str(net.path / "nats" / "cluster.conf"), "-t"],
        env={**os.environ, "NODE": "n1"},
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_peer_command_is_one_botc_accepts(compose):
    parser = build_parser()
    for name, command in peer_services(compose).items():
        args = parser.parse_args(command)
        assert args.handler is not None, name
        assert getattr(args, "net", "/net") == "/net"


def test_every_member_that_runs_a_service_has_one(compose, net):
    genesis = net.genesis()
    commands = peer_services(compose).values()
    ids = {(c[0], c[c.index("--id") + 1]) for c in commands if "--id" in c}
    kinds = {c[0] for c in commands}
    for member in genesis.members:
        if member.role in AUTHORITY_ELIGIBLE:
            assert ("authority", member.id) in ids, member.id
        if member.role == Role.DEALER:
            assert ("dealer", member.id) in ids
        if member.role == Role.GUARANTOR:
            assert ("guarantor", member.id) in ids
    assert {"oracle", "bank", "regulator", "load"} <= kinds


def test_peers_mount_the_network_and_reach_every_nats_node(compose):
    anchor = compose["x-peer"]
    assert "./net:/net" in anchor["volumes"]
    for name, command in peer_services(compose).items():
        servers = command[command.index("--servers") + 1].split(",")
        if command[0] == "callout":  # one beside each node, on that node
            assert servers == [f"nats://nats{name[-1]}:4222"]
        else:
            assert servers == [f"nats://nats{i}:4222" for i in (1, 2, 3)]


def test_each_nats_node_has_its_auth_callout(compose):
    callouts = [c for c in peer_services(compose).values() if c[0] == "callout"]
    assert sorted(c[c.index("--servers") + 1] for c in callouts) == [
        f"nats://nats{i}:4222" for i in (1, 2, 3)
    ]


def test_the_image_installs_every_package_and_runs_botc():
    text = (ROOT / "Dockerfile").read_text()
    for package in ("rfq", "bus", "peers", "tui"):
        assert f"COPY {package} ./{package}" in text
    assert "RUN pip install ." in text
    assert 'ENTRYPOINT ["botc"' in text
