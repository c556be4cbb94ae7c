"""``botc up``: the whole marketplace on one machine, each peer its own process.

The embedded nats-server (JetStream), the initial authorities and every other authority-
eligible member as an observer node (so an elected candidate is already in sync), the
simulated oracle, the settlement bank, each guarantor, the regulator, a dealer bot per dealer
and, if asked, simulated clients (``botc load``) — all under the supervisor.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import platformdirs

from bus.server import NatsCluster, NatsServer
from peers.callout import CalloutThread, start_callout
from peers.netdir import GENESIS, NetDir, NetDirError, create_network
from peers.supervisor import Service, Supervisor
from rfq.identity import AUTHORITY_ELIGIBLE, NetworkParams, Role

CLIENTS = "clients"
"""The supervised simulated-clients job (``botc load``)."""


def default_netdir() -> Path:
    """Where ``botc up`` keeps its network without ``--net``: platformdirs' user data
    directory (on Linux ``~/.local/share/botc/network``)."""
    return Path(platformdirs.user_data_dir("botc")) / "network"


def ensure_network(path: Path | None, *, authorities: int = 4) -> tuple[NetDir, bool]:
    """The given network, or the default one; ``True`` if it was created just now.

    A directory that does not exist yet or is empty gets a fresh network (``authorities``
    initial authorities: N-1 dealers, at least three, and the CCP; five clients; TLS on as with
    ``botc init``); a directory with other files in it is refused, never written into. An
    existing network keeps its own authority set (``authorities`` then must be its size or the
    default).
    """
    target = default_netdir() if path is None else path
    net = NetDir(target)
    if not (target / GENESIS).exists() and _absent_or_empty(target):
        dealers = max(3, authorities - 1)
        created = create_network(
            target,
            dealers=dealers,
            clients=5,
            authorities=authorities,
            params=NetworkParams(),
            tls=True,
        )
        return created, True
    genesis = net.genesis()  # not a network: one line naming the directory
    have = len(genesis.authorities.initial)
    if authorities not in (4, have):
        raise NetDirError(
            f"--authorities {authorities}: {target} already has {have} initial authorities"
        )
    return net, False


def _absent_or_empty(path: Path) -> bool:
    try:
        return not path.exists() or (path.is_dir() and next(path.iterdir(), None) is None)
    except OSError as exc:
        raise NetDirError(f"{path}: cannot read ({exc.strerror or exc})") from None


def service_list(
    net: NetDir,
    *,
    clients: int,
    rate: float | None,
    duration: float | None,
    human: str | None,
    day_seconds: float,
    extra_args: Mapping[str, Sequence[str]] | None = None,
) -> list[Service]:
    """Every peer of ``net`` as a supervised service; ``extra_args`` appends arguments to the
    named services' command lines (``botc soak`` shapes the bank and the clients with it)."""
    genesis = net.genesis()
    path = str(net.path)
    services: list[Service] = []
    for member in genesis.members:
        if member.role in AUTHORITY_ELIGIBLE:
            services.append(
                Service(f"authority-{member.id}", ("authority", "--net", path, "--id", member.id))
            )
    services.append(
        Service(
            "oracle",
            ("oracle", "--net", path, "--simulate", "--day-seconds", str(day_seconds)),
        )
    )
    services.append(Service("bank", ("bank", "--net", path)))
    for member in genesis.by_role(Role.GUARANTOR):
        services.append(
            Service(f"guarantor-{member.id}", ("guarantor", "--net", path, "--id", member.id))
        )
    services.append(Service("regulator", ("regulator", "--net", path)))
    for member in genesis.by_role(Role.DEALER):
        services.append(
            Service(f"dealer-{member.id}", ("dealer", "--net", path, "--id", member.id))
        )
    available = [m.id for m in genesis.by_role(Role.CLIENT) if m.id != human]
    if clients > 0:
        args = ["load", "--net", path, "--clients", str(min(clients, len(available)))]
        for client in [m.id for m in genesis.by_role(Role.CLIENT)]:
            if client == human:
                args += ["--exclude", client]
        if rate:
            args += ["--rate", str(rate)]
        args += ["--duration", str(duration if duration else 10**9)]
        args += ["--stats-file", str(net.path / "run" / "load.json")]
        services.append(Service(CLIENTS, tuple(args), oneshot=True))
    for service in services:
        service.args = (*service.args, *(extra_args or {}).get(service.name, ()))
    return services


class Marketplace:
    """NATS plus the supervised peers of one network."""

    def __init__(
        self,
        net: NetDir,
        *,
        clients: int = 2,
        rate: float | None = 2.0,
        duration: float | None = None,
        human: str | None = "C1",
        port: int = 0,
        day_seconds: float = 30.0,
        cluster: int = 1,
        on_event: Callable[[Service, str], None] | None = None,
        extra_args: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.net = net
        self.port = port
        self.cluster_size = cluster
        self.server: NatsServer | None = None
        self.cluster: NatsCluster | None = None
        self.callouts: list[CalloutThread] = []
        self.started_at = time.monotonic()
        self.supervisor = Supervisor(
            service_list(
                net,
                clients=clients,
                rate=rate,
                duration=duration,
                human=human,
                day_seconds=day_seconds,
                extra_args=extra_args,
            ),
            net.path / "logs",
            on_event=on_event,
        )

    def start(self, timeout: float = 60.0) -> list[Service]:
        """Start everything; returns the services not ready within ``timeout``."""
        stats = self.net.path / "run" / "load.json"
        stats.unlink(missing_ok=True)
        # Kept before starting, so a stop signal while it starts still finds it to stop.
        if self.cluster_size > 1:
            self.cluster = NatsCluster(
                self.net.data_dir("nats"),
                self.cluster_size,
                auth=self.net.auth_conf(),
                route_password=self.net.route_password(),
                tls=self.net.tls(),
            )
            self.net.write_run_file(self.cluster.start().urls)
            self.start_callouts(self.cluster.urls)
        else:
            self.server = NatsServer(
                self.net.data_dir("nats"),
                port=self.port,
                auth=self.net.auth_conf(),
                tls=self.net.tls(),
            )
            self.net.write_run_file([self.server.start().url])
            self.start_callouts([self.server.url])
        # The market first; simulated clients once there are dealers to answer them.
        names = [s.name for s in self.supervisor.services]
        market = [n for n in names if n != CLIENTS]
        self.supervisor.start(market)
        missing = self.supervisor.wait_ready(timeout, market)
        if CLIENTS in names:
            self.supervisor.start([CLIENTS])
            missing += self.supervisor.wait_ready(timeout, [CLIENTS])
        return missing

    def start_callouts(self, urls: Sequence[str]) -> None:
        """One auth callout per server, in this process (``peers.callout``): members reach
        the bus as the chain's registry says, before any peer starts."""
        for url in urls:
            callout = start_callout(self.net, [url])
            if callout is not None:
                self.callouts.append(callout)

    def stop(self) -> None:
        """Every peer first (they may still flush to the bus), then the callouts and the
        nats-server(s)."""
        try:
            self.supervisor.stop()
            for callout in self.callouts:
                callout.stop()
        finally:
            if self.server is not None:
                self.server.stop()
            if self.cluster is not None:
                self.cluster.stop()
            self.net.run_file.unlink(missing_ok=True)

    def load_stats(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.net.path / "run" / "load.json").read_text())
            return data
        except (OSError, ValueError):
            return {}


async def chain_view(net: NetDir) -> Any:
    """A connection the headless summary reads the chain through (as the regulator)."""
    from peers.ledger_client import LedgerClient
    from peers.runtime import open_bus

    bus = await open_bus(net, net.genesis().regulator.id)
    return LedgerClient(bus, net.genesis())


async def chain_numbers(ledger: Any, window_s: float = 10.0) -> dict[str, Any]:
    """Height and committed transactions per second over the recent blocks."""
    from peers.ledger_client import LedgerUnavailable
    from rfq.queries import HeadersQuery, HeadersReply

    try:
        reply = await ledger.query(HeadersQuery(limit=100), timeout=1.0)
    except LedgerUnavailable:
        return {"height": None, "tx_per_s": None}
    if not isinstance(reply, HeadersReply) or not reply.headers:
        return {"height": 0, "tx_per_s": 0.0}
    newest = reply.headers[0]
    recent = [h for h in reply.headers if newest.timestamp_ms - h.timestamp_ms <= window_s * 1000]
    span = max((newest.timestamp_ms - recent[-1].timestamp_ms) / 1000, 1.0)
    return {
        "height": newest.height,
        "tx_per_s": round(sum(h.tx_count for h in recent) / span, 1),
    }


def summary_line(stats: dict[str, Any], chain: dict[str, Any], elapsed: float) -> str:
    return (
        f"[{elapsed:6.1f}s] RFQs {stats.get('rfqs', 0):5}  quotes {stats.get('quotes', 0):6}  "
        f"trades {stats.get('committed', 0):5}  height {chain.get('height') or '-':>6}  "
        f"tx/s {chain.get('tx_per_s') if chain.get('tx_per_s') is not None else '-'}"
    )


def print_progress(service: Service, event: str) -> None:
    """One write per line: the supervisor's threads call this while ``botc up`` prints too."""
    if event == "ready":
        _write_line(sys.stdout, f"  ready    {service.name:22} {service.ready_after_s or 0:5.1f}s")
    elif event.startswith("exited"):
        _write_line(sys.stderr, f"  {service.name} {event}")


def _write_line(stream: Any, text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # the terminal may be gone (SIGHUP)
        stream.write(text + "\n")
        stream.flush()
