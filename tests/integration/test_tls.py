"""TLS on a real nats-server: clients trade over TLS, plaintext and foreign certificates are
refused, and a server without a CA-signed certificate cannot join the cluster's routes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from pathlib import Path

import pytest

from bus.client import Bus, ConnectError
from bus.server import NatsCluster, NatsServer
from bus.tls import TlsError, TlsSettings, write_ca, write_certificate
from peers.runtime import open_bus
from rfq.identity import Directory

from .chainkit import rebar_swap

pytestmark = pytest.mark.integration


def tls_version(bus: Bus) -> str | None:
    """The TLS version of the bus's live connection (None for plaintext)."""
    transport = bus.nc._transport
    writer = getattr(transport, "_io_writer", None)
    ssl_object = writer.get_extra_info("ssl_object") if writer is not None else None
    return ssl_object.version() if ssl_object is not None else None


def wait_for_log(server: NatsServer, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log_path.read_text(errors="replace")
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{server.name} never logged {text!r}")


def foreign_tls(directory: Path, hosts: list[str]) -> TlsSettings:
    """A server certificate from a CA the network does not trust."""
    write_ca(directory, "Rogue")
    cert, key = write_certificate(directory, directory / "server", hosts=hosts)
    return TlsSettings(ca_file=directory / "ca.pem", cert_file=cert, key_file=key)


@pytest.mark.tls
async def test_client_c1_trades_over_tls_with_dealers_and_authorities_on_tls(live_market):
    c1 = live_market.clients["C1"]
    assert tls_version(c1.bus) in ("TLSv1.2", "TLSv1.3")
    assert all(tls_version(d.bus) is not None for d in live_market.dealers.values())
    handle = await c1.send_rfq(rebar_swap(live_market.today), deadline_s=10)
    await handle.collect()
    assert {q.dealer for q in handle.quotes} == {"D1", "D2", "D3"}
    accept = await c1.accept(handle.best())
    receipt = await c1.committed(accept)
    assert receipt.ok, receipt.reason


@pytest.mark.tls
async def test_a_plaintext_client_is_refused_by_a_tls_server(nats_server, network):
    genesis = network.genesis()
    plain = Bus(
        network.identity("C1"),
        Directory(genesis.members),
        genesis.chain_id,
        [nats_server.url],
        connect_timeout=1.0,
        initial_attempts=1,
    )
    with pytest.raises(ConnectError, match="C1 cannot connect"):
        await plain.connect()
    await plain.close()
    await asyncio.to_thread(wait_for_log, nats_server, "TLS handshake error")
    over_tls = await open_bus(network, "C1")
    assert tls_version(over_tls) is not None
    await over_tls.close()


@pytest.mark.tls
async def test_a_server_certificate_for_another_host_is_refused_by_the_client(
    network, tmp_path, monkeypatch
):
    """A server (not started by botc, which would have refused it) presents a certificate of
    the network's CA issued for localhost; a client connecting to 127.0.0.1 refuses it."""
    settings = network.tls()
    cert, key = write_certificate(
        settings.ca_file.parent, tmp_path / "localhost", hosts=["localhost"]
    )
    monkeypatch.setattr(TlsSettings, "check_server", lambda self, host=None: None)
    foreign = dataclasses.replace(settings, cert_file=cert, key_file=key)
    with (
        NatsServer(tmp_path / "nats", auth=network.auth_conf(), tls=foreign) as server,
        pytest.raises(ConnectError) as refused,
    ):
        await open_bus(network, "C1", servers=[server.url])
    line = str(refused.value)
    assert "\n" not in line
    assert "127.0.0.1" in line and str(settings.ca_file) in line
    assert "not valid for '127.0.0.1'" in line


@pytest.mark.tls
async def test_a_server_certificate_another_ca_signed_is_refused_by_the_client(
    network, tmp_path, monkeypatch
):
    rogue = foreign_tls(tmp_path / "rogue", ["127.0.0.1"])
    monkeypatch.setattr(TlsSettings, "check_server", lambda self, host=None: None)
    impostor = dataclasses.replace(
        network.tls(), cert_file=rogue.cert_file, key_file=rogue.key_file
    )
    with (
        NatsServer(tmp_path / "nats", auth=network.auth_conf(), tls=impostor) as server,
        pytest.raises(ConnectError) as refused,
    ):
        await open_bus(network, "C1", servers=[server.url])
    line = str(refused.value)
    assert "\n" not in line and "unable to get local issuer certificate" in line
    assert str(network.tls().ca_file) in line


@pytest.mark.tls
def test_botc_refuses_to_start_a_server_whose_certificate_is_for_another_host(network, tmp_path):
    settings = network.tls()
    cert, key = write_certificate(
        settings.ca_file.parent, tmp_path / "other", hosts=["other.example"]
    )
    wrong = dataclasses.replace(settings, cert_file=cert, key_file=key)
    server = NatsServer(tmp_path / "nats", auth=network.auth_conf(), tls=wrong)
    with pytest.raises(TlsError) as refused:
        server.start()
    assert str(refused.value) == (
        f"{cert}: certificate is for other.example, not for host 127.0.0.1"
    )
    assert not server.running


@pytest.mark.tls
def test_botc_refuses_to_start_a_server_whose_certificate_another_ca_signed(network, tmp_path):
    rogue = foreign_tls(tmp_path / "rogue", ["127.0.0.1"])
    mixed = dataclasses.replace(network.tls(), cert_file=rogue.cert_file, key_file=rogue.key_file)
    with pytest.raises(TlsError, match="not signed by the CA in"):
        NatsServer(tmp_path / "nats", auth=network.auth_conf(), tls=mixed).start()


@pytest.mark.tls
async def test_a_tls_cluster_carries_messages_between_its_nodes_over_mutual_tls(
    nats_cluster, network
):
    """The fixture proved a round trip from the first node to the last; every route is TLS."""
    for node in nats_cluster.nodes:
        text = node.log_path.read_text(errors="replace")
        assert "Route connection created" in text
        assert "TLS handshake error" not in text
    conf = nats_cluster.nodes[0].config_path.read_text()
    assert "verify: true" in conf.split("cluster {", 1)[1].split("\n", 1)[0]


@pytest.mark.tls
def test_a_route_from_a_server_without_a_ca_signed_certificate_is_refused(network, tmp_path):
    """Node n2 has a certificate from another CA: n1 refuses its route (and n2 n1's), so
    the rogue never joins the cluster."""
    cluster = NatsCluster(tmp_path / "cluster", 2, auth=network.auth_conf(), tls=network.tls())
    honest, rogue = cluster.nodes
    rogue.tls = foreign_tls(tmp_path / "rogue", ["127.0.0.1"])
    errors: list[BaseException] = []

    def boot(node: NatsServer) -> None:
        try:
            node.start(20)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=boot, args=(n,)) for n in cluster.nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        log = wait_for_log(honest, "TLS route handshake error")
        assert "Route connection created" not in log
        assert "Route connection created" not in rogue.log_path.read_text(errors="replace")
    finally:
        cluster.stop()


@pytest.mark.tls
async def test_with_verify_clients_a_peer_needs_a_ca_signed_client_certificate(network, tmp_path):
    settings = dataclasses.replace(network.tls(), verify_clients=True)
    toml = network.tls_settings_path
    toml.write_text(toml.read_text().replace("verify_clients = false", "verify_clients = true"))
    assert network.tls() == dataclasses.replace(settings, source=toml)
    with NatsServer(tmp_path / "nats", auth=network.auth_conf(), tls=settings) as server:
        mutual = await open_bus(network, "C1", servers=[server.url])
        assert tls_version(mutual) is not None
        await mutual.close()
        genesis = network.genesis()
        without = Bus(
            network.identity("C2"),
            Directory(genesis.members),
            genesis.chain_id,
            [server.url],
            tls=dataclasses.replace(settings, verify_clients=False),
            connect_timeout=1.0,
            initial_attempts=1,
        )
        with pytest.raises(ConnectError, match="C2 cannot connect"):
            await without.connect()
        await without.close()


@pytest.mark.tls
async def test_a_peer_over_tls_rides_out_a_server_restart(nats_server, network):
    from bus import subjects
    from bus.client import BusStatus

    reg = await open_bus(network, "REG")
    seen: list[BusStatus] = []
    reg.listeners.append(lambda status, _detail: seen.append(status))
    heard = asyncio.Event()

    async def on_message(msg) -> None:
        heard.set()

    await reg.nc.subscribe(subjects.query("REG"), cb=on_message)
    await reg.flush()
    await asyncio.to_thread(nats_server.restart)

    def reconnected() -> bool:
        if BusStatus.DISCONNECTED not in seen:
            return False
        return BusStatus.CONNECTED in seen[seen.index(BusStatus.DISCONNECTED) :]

    deadline = time.monotonic() + 20
    while not reconnected():
        assert time.monotonic() < deadline, f"never reconnected: {seen}"
        await asyncio.sleep(0.05)
    while not heard.is_set():
        assert time.monotonic() < deadline, "no message after the restart"
        await reg.nc.publish(subjects.query("REG"), b"after the restart")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(heard.wait(), 0.25)
    assert tls_version(reg) is not None
    await reg.close()


@pytest.mark.tls
def test_botc_nats_serves_a_tls_network_that_peers_join_over_tls(network):
    import signal
    import subprocess
    import sys

    async def join() -> str | None:
        bus = await open_bus(network, "C1")  # the run file names the server
        version = tls_version(bus)
        await bus.close()
        return version

    command = [sys.executable, "-m", "peers.cli", "--log-level", "error", "nats"]
    process = subprocess.Popen(
        [*command, "--net", str(network.path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("nats ready: nats://127.0.0.1:"), line
        assert asyncio.run(join()) in ("TLSv1.2", "TLSv1.3")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    assert process.returncode == 0
