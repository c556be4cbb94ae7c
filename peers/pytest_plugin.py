"""pytest fixtures for testing peers against a real nats-server (entry point ``pytest11``).

Installed with B-OTC, so a dealer's quant can test a strategy against a real local bus:

```python
async def test_my_strategy_quotes(network, nats_server, bus_factory):
    client = await bus_factory("C1")
    ...
```

- ``network``: a fresh network directory (``botc init`` with 3 dealers, 5 clients); plaintext,
  or with TLS (a CA, certificates, NETDIR/nats/tls/tls.toml) for a test marked ``@pytest.mark.tls``
  (``pytest --botc-tls``: every test's).
- ``nats_server``: one nats-server (port 0, JetStream in a temp dir) with the network's auth
  and its TLS if it has some: its auth callout (``peers.callout``, in a thread) admits members
  from the chain's registry; the network's run file points at it.
- ``nats_cluster``: three such nodes, fully routed (over mutual TLS with the marker), one
  callout each.
- ``auth_callout``: the ``peers.callout.AuthCallout`` beside ``nats_server``.
- ``bus_factory``: ``await bus_factory("C1")`` returns a connected ``bus.client.Bus`` for a
  member (closed at teardown); ``servers=`` picks other URLs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from bus import subjects
from bus.client import Bus
from bus.server import NatsCluster, NatsServer, ServerError
from peers.callout import AuthCallout, CalloutThread, start_callout
from peers.netdir import NetDir, create_network
from peers.runtime import open_bus

BusFactory = Callable[..., Awaitable[Bus]]


TLS_MARKER = "tls"


TLS_OPTION = "--botc-tls"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        TLS_OPTION,
        action="store_true",
        help="every test's network fixture has TLS, as if each test were marked tls",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{TLS_MARKER}: the network fixture has TLS (every NATS connection over TLS)"
    )


@pytest.fixture
def network(tmp_path: Path, request: pytest.FixtureRequest) -> NetDir:
    """A fresh network: D1-D3, CCP, G1, REG, ORACLE, BANK and C1-C5 (TLS when marked)."""
    tls = request.node.get_closest_marker(TLS_MARKER) is not None or bool(
        request.config.getoption(TLS_OPTION)
    )
    return create_network(tmp_path / "net", dealers=3, clients=5, tls=tls)


@pytest.fixture
def nats_server(network: NetDir, tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats", auth=network.auth_conf(), tls=network.tls()).start()
    network.write_run_file([server.url])
    callouts = []
    try:
        callouts.append(start_callout(network, [server.url]))
        _CALLOUTS[server.url] = callouts
        _prove_round_trip(network, server.url, server.url)
        yield server
    finally:
        _CALLOUTS.pop(server.url, None)
        _stop_callouts(callouts)
        server.stop()
        _report_server_trouble(server)


@pytest.fixture
def nats_cluster(network: NetDir, tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(
        tmp_path / "cluster",
        3,
        auth=network.auth_conf(),
        route_password=network.route_password(),
        tls=network.tls(),
    ).start()
    network.write_run_file(cluster.urls)
    callouts = []
    try:
        for url in cluster.urls:
            callouts.append(start_callout(network, [url]))
        _prove_round_trip(network, cluster.urls[0], cluster.urls[-1])
        yield cluster
    finally:
        _stop_callouts(callouts)
        cluster.stop()
        _report_server_trouble(*cluster.nodes)


def _prove_round_trip(network: NetDir, subscribe_at: str, publish_at: str) -> None:
    """Hand a test a bus that carries messages, not one that has merely said it is ready.

    A freshly started server has twice lost the first messages after a subscription that
    flush() had confirmed, and a cluster spreads interest between nodes in the background.
    The regulator (who may read everything) publishes to its own query subject, which nothing
    stores, until it hears itself; in a separate thread, so no test's event loop is touched.
    """

    async def round_trip() -> None:
        listener = await _open_bus(network, "REG", [subscribe_at])
        speaker = await _open_bus(network, "REG", [publish_at])
        try:
            heard = asyncio.Event()

            async def on_message(msg: Msg) -> None:
                heard.set()

            subject = subjects.query("REG")
            await listener.nc.subscribe(subject, cb=on_message)
            await listener.flush()
            for _ in range(40):
                await speaker.nc.publish(subject, b"round trip")
                try:
                    await asyncio.wait_for(heard.wait(), 0.25)
                    return
                except TimeoutError:
                    continue
            raise ServerError(f"no message crossed {publish_at} -> {subscribe_at} within 10 s")
        finally:
            await listener.close()
            await speaker.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, round_trip()).result()


_CALLOUTS: dict[str, list[CalloutThread | None]] = {}
"""The callouts the ``nats_server`` fixtures run, by server URL."""


@pytest.fixture
def auth_callout(nats_server: NatsServer) -> AuthCallout:
    """The auth callout beside ``nats_server``: its ``stats`` and ``refusals``."""
    running = [c for c in _CALLOUTS.get(nats_server.url, []) if c is not None]
    if not running or running[0].callout is None:
        raise ServerError("the network's server config has no auth callout")
    return running[0].callout


def _stop_callouts(callouts: Sequence[CalloutThread | None]) -> None:
    for callout in callouts:
        if callout is not None:
            callout.stop()


def _report_server_trouble(*servers: NatsServer) -> None:
    """Echo the servers' warnings and errors to stderr: pytest shows them beside a failure."""
    for server in servers:
        if server.log_path.exists():
            for line in server.log_path.read_text(errors="replace").splitlines():
                if "[WRN]" in line or "[ERR]" in line:
                    print(f"{server.name}: {line}", file=sys.stderr)


async def _open_bus(network: NetDir, member_id: str, servers: Sequence[str] | None = None) -> Bus:
    return await open_bus(network, member_id, servers=servers)


@pytest_asyncio.fixture
async def bus_factory(network: NetDir) -> AsyncIterator[BusFactory]:
    opened: list[Bus] = []

    async def make(member_id: str, *, servers: Sequence[str] | None = None) -> Bus:
        bus = await _open_bus(network, member_id, servers)
        opened.append(bus)
        return bus

    yield make
    for bus in opened:
        await bus.close()
