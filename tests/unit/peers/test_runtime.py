"""A service started by ``botc up``'s supervisor stops when the supervisor dies, however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from bus.server import pid_running
from peers.runtime import SUPERVISOR_PID_ENV

# A stand-in service: runs until stopped, then says how.
SERVICE = textwrap.dedent(
    """
    import asyncio, sys
    from peers.runtime import run_until_signal

    async def main(stop):
        print("serving", flush=True)
        await stop.wait()
        print("stopped cleanly", flush=True)
        return 0

    sys.exit(run_until_signal(main))
    """
)

# A stand-in supervisor: starts the service as its child, then waits to be killed.
SUPERVISOR = textwrap.dedent(
    """
    import os, subprocess, sys, time
    out = open(sys.argv[1], "w")
    env = dict(os.environ)
    if sys.argv[2] == "watched":
        env[sys.argv[3]] = str(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", sys.argv[4]], stdout=out, env=env)
    print(child.pid, flush=True)
    time.sleep(600)
    """
)


def _start(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], int, Path]:
    out = tmp_path / "service.out"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(out), mode, SUPERVISOR_PID_ENV, SERVICE],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert supervisor.stdout is not None
    service_pid = int(supervisor.stdout.readline())
    deadline = time.monotonic() + 20
    while "serving" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "serving" in out.read_text()
    return supervisor, service_pid, out


def test_a_service_stops_cleanly_when_its_supervisor_is_killed_with_sigkill(tmp_path):
    supervisor, service_pid, out = _start(tmp_path, "watched")
    supervisor.kill()
    supervisor.wait()
    deadline = time.monotonic() + 10
    while pid_running(service_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not pid_running(service_pid)
        assert "stopped cleanly" in out.read_text()
    finally:
        if pid_running(service_pid):
            os.kill(service_pid, signal.SIGKILL)


def test_a_service_run_by_hand_does_not_watch_its_parent(tmp_path):
    supervisor, service_pid, out = _start(tmp_path, "unwatched")
    try:
        supervisor.kill()
        supervisor.wait()
        time.sleep(2.5)  # more than two of the watcher's polls
        assert pid_running(service_pid)
    finally:
        os.kill(service_pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pid_running(service_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "stopped cleanly" in out.read_text()
