"""A small process supervisor for ``botc up``: every peer is its own process.

Services start in parallel; a service is ready when it prints its ready line on stdout (every
``botc`` service prints one line once it serves). Output goes to ``NETDIR/logs/<name>.log``.
A service that exits while the supervisor runs is restarted after a backoff that doubles from
0.5 s to 30 s and resets once it has stayed up for a minute. ``stop`` sends SIGTERM to every
child, waits, then SIGKILLs stragglers. Children stop by themselves if the supervisor dies
(``peers.runtime.run_until_signal`` watches it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from peers.runtime import SUPERVISOR_PID_ENV

log = structlog.get_logger(__name__)

MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0


@dataclass
class Service:
    name: str
    args: Sequence[str]
    """``botc`` arguments, e.g. ``("authority", "--net", NETDIR, "--id", "D1")``."""
    oneshot: bool = False
    """A job that ends: exit code 0 means done (not restarted)."""
    wrapper: Sequence[str] = ()
    """Argv the command runs under, e.g. ``("ip", "netns", "exec", "ns1")`` (a host apart)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment set for this service only (read at each start, so a test may change it
    between ``hold`` and ``release``)."""
    ready: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen[str] | None = None
    started_at: float = 0.0
    ready_after_s: float | None = None
    restarts: int = 0
    backoff_s: float = MIN_BACKOFF_S
    restart_at: float | None = None
    held: bool = False
    last_exit: int | None = None
    last_line: str = ""


def botc_command(args: Sequence[str], log_file: Path, level: str = "info") -> list[str]:
    """The argv that runs ``botc`` with this interpreter (no dependence on PATH)."""
    return [
        sys.executable,
        "-m",
        "peers.cli",
        "--log-level",
        level,
        "--log-file",
        str(log_file),
        *args,
    ]


class Supervisor:
    def __init__(
        self,
        services: Sequence[Service],
        log_dir: Path,
        *,
        on_event: Callable[[Service, str], None] | None = None,
    ) -> None:
        self.services = list(services)
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.on_event = on_event or (lambda service, event: None)
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._lock = threading.Lock()

    def _spawn(self, service: Service) -> None:
        log_path = self.log_dir / f"{service.name}.log"
        out = (self.log_dir / f"{service.name}.out").open("a", buffering=1)
        env = {
            **os.environ,
            **service.env,
            "PYTHONUNBUFFERED": "1",
            SUPERVISOR_PID_ENV: str(os.getpid()),
        }
        service.ready.clear()
        service.started_at = time.monotonic()
        service.process = subprocess.Popen(
            [*service.wrapper, *botc_command(service.args, log_path)],
            stdout=subprocess.PIPE,
            stderr=out,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=env,
            start_new_session=True,
        )
        threading.Thread(
            target=self._read, args=(service, service.process, out), daemon=True
        ).start()
        self.on_event(service, "started")

    def _read(self, service: Service, process: subprocess.Popen[str], out: object) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            service.last_line = line.strip()
            out.write(line)  # type: ignore[attr-defined]
            if not service.ready.is_set():
                service.ready_after_s = time.monotonic() - service.started_at
                service.ready.set()
                self.on_event(service, "ready")
        out.close()  # type: ignore[attr-defined]

    def start(self, names: Sequence[str] | None = None) -> None:
        """Start the named services (all by default); the watcher starts with the first."""
        with self._lock:
            for service in self.services:
                if (names is None or service.name in names) and service.process is None:
                    self._spawn(service)
        if self._monitor is None:
            self._monitor = threading.Thread(target=self._watch, daemon=True, name="supervisor")
            self._monitor.start()

    def wait_ready(self, timeout: float, names: Sequence[str] | None = None) -> list[Service]:
        """Block until the named services (all by default) are ready or ``timeout``; returns
        those that are not."""
        deadline = time.monotonic() + timeout
        chosen = [s for s in self.services if names is None or s.name in names]
        for service in chosen:
            service.ready.wait(max(deadline - time.monotonic(), 0))
        return [s for s in chosen if not s.ready.is_set()]

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            now = time.monotonic()
            for service in self.services:
                with self._lock:
                    process = service.process
                    if process is None:
                        if service.held or self._stopping.is_set():
                            continue  # never start a peer that ``stop`` would not see
                        if service.restart_at is not None and now >= service.restart_at:
                            service.restart_at = None
                            service.restarts += 1
                            self._spawn(service)
                        continue
                    code = process.poll()
                    if code is None:
                        if now - service.started_at > STABLE_AFTER_S:
                            service.backoff_s = MIN_BACKOFF_S
                        continue
                    if self._stopping.is_set():
                        return
                    service.last_exit = code
                    service.process = None
                    if service.oneshot and code == 0:
                        self.on_event(service, "finished")
                        continue
                    service.restart_at = now + service.backoff_s
                    log.warning(
                        "service_exited",
                        service=service.name,
                        code=code,
                        restart_in_s=service.backoff_s,
                    )
                    self.on_event(
                        service, f"exited with {code}; restarting in {service.backoff_s:.1f}s"
                    )
                    service.backoff_s = min(service.backoff_s * 2, MAX_BACKOFF_S)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a service (fault injection); the supervisor restarts it."""
        for service in self.services:
            if service.name == name and service.process is not None:
                service.process.send_signal(sig)

    def hold(self, name: str, timeout: float = 8.0) -> None:
        """Stop a service and keep it down (an outage) until ``release``."""
        with self._lock:
            service = self._named(name)
            service.held = True
            process, service.process = service.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.on_event(service, "held down")

    def release(self, name: str) -> None:
        """Bring a held service back."""
        with self._lock:
            service = self._named(name)
            service.held = False
            service.restart_at = None
            service.restarts += 1
            self._spawn(service)

    def _named(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def stop(self, timeout: float = 8.0) -> None:
        self._stopping.set()
        with self._lock:
            running = [s.process for s in self.services if s.process is not None]
            for process in running:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for process in running:
                try:
                    process.wait(max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        if self._monitor is not None:
            self._monitor.join(2)
