"""docker-compose.yml deploys the consortium of the README's "Deploying a consortium": one
service group per institution, each mounting its own directory only, the NATS nodes run by
three institutions, and every member's peers; its commands are ones botc accepts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from bus.server import find_binary
from peers.cli import build_parser
from peers.netdir import create_network
from tests.deploy_readme import commands, institutions

ROOT = Path(__file__).resolve().parents[3]
NATS_URLS = [f"nats://nats{i}:4222" for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def members() -> dict[str, str]:
    """The consortium's institutions and roles, as the README's ceremony makes them."""
    return institutions()


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def institution(service: dict[str, Any]) -> str:
    label: str = service["labels"]["botc.institution"]
    return label


def nats_nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services(compose).items() if s.get("image", "").startswith("nats:")}


def peers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nodes = nats_nodes(compose)
    return {n: s for n, s in services(compose).items() if n not in nodes}


def host_mounts(service: dict[str, Any]) -> list[tuple[PurePosixPath, str, bool]]:
    """(host path, container path, read-only) of each bind mount; named volumes left out."""
    found = []
    for volume in service.get("volumes", []):
        host, container, *options = volume.split(":")
        if host.startswith(("./", "/", "../")):
            found.append((PurePosixPath(os.path.normpath(host)), container, "ro" in options))
    return found


def peers_of(compose: dict[str, Any], member: str) -> dict[str, list[str]]:
    """The botc command of each of ``member``'s peer services, by service name."""
    return {n: s["command"] for n, s in peers(compose).items() if institution(s) == member}


def test_every_service_belongs_to_an_institution_of_the_consortium(compose, members):
    owners = {institution(s) for s in services(compose).values()}
    assert owners == set(members)


def test_every_service_mounts_only_its_own_institutions_directory(compose, members):
    for name, service in services(compose).items():
        own = PurePosixPath("institutions") / institution(service)
        mounts = host_mounts(service)
        assert mounts, name
        for host, _, _ in mounts:
            assert host == own or own in host.parents, (name, str(host))
            for other in members:
                theirs = PurePosixPath("institutions") / other
                if theirs != own:
                    assert theirs != host and theirs not in host.parents, (name, other)


def test_each_peer_sees_its_institution_as_its_network_directory(compose):
    for name, service in peers(compose).items():
        own = f"./institutions/{institution(service)}"
        assert service["volumes"] == [f"{own}:/net"], name
        assert service["command"][service["command"].index("--net") + 1] == "/net"


def test_named_volumes_are_each_one_nodes_own(compose):
    users: dict[str, list[str]] = {}
    for name, service in services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("./", "/", "../")):
                users.setdefault(source, []).append(name)
    assert set(users) == set(compose["volumes"])
    assert all(len(names) == 1 for names in users.values()), users


def test_the_three_nats_nodes_are_run_by_three_institutions(compose, members):
    nodes = nats_nodes(compose)
    assert sorted(nodes) == ["nats1", "nats2", "nats3"]
    operators = {name: institution(s) for name, s in nodes.items()}
    assert len(set(operators.values())) == 3
    for name, node in nodes.items():
        operator = operators[name]
        assert node["command"] == ["-c", "/etc/nats/cluster.conf"]
        assert node["environment"]["NODE"] == f"n{name[-1]}"
        assert host_mounts(node) == [
            (PurePosixPath(f"institutions/{operator}/nats"), "/etc/nats", True)
        ]
        # its callout follows the final blocks as the operator: one that may read them
        assert members[operator] in {"regulator", "dealer", "ccp", "guarantor"}, operator


def test_each_node_has_its_operators_auth_callout_beside_it(compose):
    for name, node in nats_nodes(compose).items():
        operator = institution(node)
        callouts = [c for c in peers_of(compose, operator).values() if c[0] == "callout"]
        assert len(callouts) == 1, operator
        (command,) = callouts
        assert command[command.index("--servers") + 1] == f"nats://{name}:4222"
        if "--id" in command:  # it follows the chain as its operator (default: the regulator)
            assert command[command.index("--id") + 1] == operator


def test_each_node_operator_gets_its_nodes_certificate_in_the_readme(compose, members):
    """The README turns TLS on for each operator with the certificate of the node it runs
    (and the cluster's secrets go to it before it installs the genesis)."""
    steps = commands()
    for name, node in nats_nodes(compose).items():
        operator = institution(node)
        net = f"institutions/{operator}"
        tls_use = ["botc", "tls", "use"]
        uses = [w for w in steps if w[:3] == tls_use and w[w.index("--net") + 1] == net]
        assert len(uses) == 1, operator
        (use,) = uses
        assert use[use.index("--host") + 1] == name
        assert use[use.index("--cert-file") + 1].endswith(f"/nats/tls/{name}.pem")
        copied = [w for w in steps if w[0] == "cp" and any(x.endswith("/route.secret") for x in w)]
        shared = any(w[-1] == f"institutions/{operator}/nats/" for w in copied)
        assert shared or members[operator] == "regulator", operator  # it made the secrets


def test_every_peer_command_is_one_botc_accepts_as_its_own_member(compose):
    parser = build_parser()
    for name, service in peers(compose).items():
        command = service["command"]
        args = parser.parse_args(command)
        assert args.handler is not None, name
        if "--id" in command:
            assert command[command.index("--id") + 1] == institution(service), name
        servers = command[command.index("--servers") + 1].split(",")
        if command[0] == "callout":
            assert len(servers) == 1 and servers[0] in NATS_URLS
        else:
            assert servers == NATS_URLS, name


def test_every_member_runs_the_peers_of_its_role(compose, members):
    need = {
        "dealer": [("authority", True), ("dealer", True)],
        "ccp": [("authority", True)],
        "guarantor": [("authority", True), ("guarantor", True)],
        "regulator": [("regulator", False)],
        "oracle": [("oracle", True)],
        "bank": [("bank", True)],
        "client": [("load", True)],
    }
    for member, role in members.items():
        mine = list(peers_of(compose, member).values())
        for kind, with_id in need[role]:
            found = [c for c in mine if c[0] == kind]
            assert len(found) == 1, (member, kind)
            if with_id:
                assert found[0][found[0].index("--id") + 1] == member


def test_the_cluster_config_is_valid_for_the_real_nats_server(tmp_path):
    net = create_network(tmp_path / "net", tls=False)
    checked = subprocess.run(
        [find_binary(), "-c", str(net.path / "nats" / "cluster.conf"), "-t"],
        env={**os.environ, "NODE": "n1"},
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_image_installs_every_package_and_runs_botc():
    text = (ROOT / "Dockerfile").read_text()
    for package in ("rfq", "bus", "peers", "tui"):
        assert f"COPY {package} ./{package}" in text
    assert "RUN pip install ." in text
    assert 'ENTRYPOINT ["botc"' in text
