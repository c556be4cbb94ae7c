"""A service started by ``botc up``'s supervisor stops when the supervisor dies, however it dies."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from bus.server import pid_running
from peers.runtime import SUPERVISOR_PID_ENV

# A stand-in service: runs until stopped, then says how. Once it sees it is orphaned it says so,
# and says so again after two orphan checks' worth of its own loop time: a watcher in the same
# loop would have checked at least twice by then (its timers come due first), whatever the
# machine's load did to the wall clock.
SERVICE = textwrap.dedent(
    """
    import asyncio, os, sys
    from peers.runtime import ORPHAN_CHECK_S, run_until_signal

    async def outlive_two_orphan_checks(parent):
        while os.getppid() == parent:
            await asyncio.sleep(0.05)
        print("orphaned", flush=True)
        await asyncio.sleep(2 * ORPHAN_CHECK_S + 0.5)
        print("outlived two orphan checks", flush=True)

    async def main(stop):
        print("serving", flush=True)
        orphaned = asyncio.create_task(outlive_two_orphan_checks(os.getppid()))
        await stop.wait()
        orphaned.cancel()
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


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def _start(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], int, Path]:
    out = tmp_path / "service.out"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(out), mode, SUPERVISOR_PID_ENV, SERVICE],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert supervisor.stdout is not None
    service_pid = int(supervisor.stdout.readline())
    wait_until(lambda: "serving" in out.read_text(), 20, "the service to say it is serving")
    return supervisor, service_pid, out


def test_a_service_stops_cleanly_when_its_supervisor_is_killed_with_sigkill(tmp_path):
    supervisor, service_pid, out = _start(tmp_path, "watched")
    supervisor.kill()
    supervisor.wait()
    try:
        wait_until(lambda: not pid_running(service_pid), 10, "the orphaned service to stop")
        assert "stopped cleanly" in out.read_text()
    finally:
        if pid_running(service_pid):
            os.kill(service_pid, signal.SIGKILL)


def test_a_service_run_by_hand_does_not_watch_its_parent(tmp_path):
    supervisor, service_pid, out = _start(tmp_path, "unwatched")
    try:
        supervisor.kill()
        supervisor.wait()
        wait_until(
            lambda: "outlived" in out.read_text() or not pid_running(service_pid),
            30,
            "the orphaned service to outlive two orphan checks (or to stop)",
        )
        assert pid_running(service_pid)
        assert "stopped cleanly" not in out.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(service_pid, signal.SIGTERM)
    wait_until(lambda: not pid_running(service_pid), 10, "the service to stop on SIGTERM")
    assert "stopped cleanly" in out.read_text()
