"""``botc up`` as a user runs it: real processes, a fresh network."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from bus.server import pid_running

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_botc_up_headless_for_twenty_seconds_commits_trades_and_exits_0(tmp_path):
    net = tmp_path / "net"
    subprocess.run(
        [sys.executable, "-m", "peers.cli", "init", str(net)], check=True, capture_output=True
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "peers.cli",
            "up",
            "--net",
            str(net),
            "--headless",
            "--duration",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["trades"] > 0
    assert summary["rfqs"] >= summary["trades"]
    assert summary["failures"] == {}
    assert summary["height"] > 0
    lines = done.stdout.splitlines()
    assert any(line.startswith("  ready    authority-D1") for line in lines)
    assert any("RFQs" in line and "height" in line for line in lines)
    assert (net / "logs" / "authority-D1.log").stat().st_size > 0
    assert not (net / "run" / "nats.json").exists()


def processes_naming(path: Path) -> list[int]:
    """Every live process whose command line names ``path`` (peers, nats-server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in argv and pid_running(int(entry.name)):
            found.append(int(entry.name))
    return found


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout}s")
        time.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT])
def test_a_closed_terminal_stops_every_peer_and_then_the_nats_server(tmp_path, sig):
    net = tmp_path / "fresh"  # does not exist yet: botc up creates it
    botc = [sys.executable, "-m", "peers.cli"]
    up = subprocess.Popen(
        [*botc, "up", "--net", str(net), "--headless", "--clients", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in up.stdout], daemon=True).start()
    nats_pid = None
    try:
        deadline = time.monotonic() + 120
        seen: list[str] = []
        while not any("marketplace ready" in line for line in seen):
            assert time.monotonic() < deadline, f"botc up not ready: {seen}"
            assert up.poll() is None, f"botc up exited: {seen} {up.stderr.read()}"
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=1).rstrip("\n"))
        assert f"created a network in {net}" in seen
        nats_pid = int((net / "data" / "nats" / "n1.pid").read_text())
        assert pid_running(nats_pid)
        peers = [p for p in processes_naming(net) if p not in (nats_pid, up.pid)]
        assert len(peers) >= 10  # four authorities, observers, oracle, bank, dealers...
        up.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            up.wait(timeout=60)
        wait_until(lambda: not pid_running(nats_pid), 10, "the nats-server gone")
        wait_until(lambda: processes_naming(net) == [], 10, "every peer gone")
        assert up.returncode is not None and up.returncode >= 0, "killed by the signal"
        assert "stopping" in up.stderr.read()
        assert not (net / "run" / "nats.json").exists()
    finally:
        if up.poll() is None:
            up.kill()
        for pid in processes_naming(net):  # what a failed run left behind
            os.kill(pid, signal.SIGKILL)


def test_killing_the_tmux_session_of_the_terminal_stops_everything(tmp_path):
    assert shutil.which("tmux"), "tmux is needed for this test (apt-get install tmux)"
    net = tmp_path / "net"
    session = f"botc-{uuid.uuid4().hex[:8]}"
    # pytest exports COLUMNS/LINES (80x24), which Textual would obey over the pane's size.
    command = f"env -u COLUMNS -u LINES {sys.executable} -m peers.cli up --net {net} --clients 0"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "45", command], check=True
    )

    def screen() -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-t", session, "-p"], capture_output=True, text=True
        ).stdout

    try:
        wait_until(lambda: "Send RFQ" in screen(), 90, "the terminal open")
        nats_pid = int((net / "data" / "nats" / "n1.pid").read_text())
        assert pid_running(nats_pid)
        subprocess.run(["tmux", "kill-session", "-t", session], check=True)  # SIGHUP
        wait_until(lambda: not pid_running(nats_pid), 30, "the nats-server gone")
        wait_until(lambda: processes_naming(net) == [], 10, "every peer gone")
        logs = (net / "logs" / "tui-C1.log").read_text() + (net / "logs" / "up.log").read_text()
        assert "nats_stopped" in logs  # stopped by botc up, not orphaned
        assert not any("supervisor_gone" in f.read_text() for f in (net / "logs").glob("*.log"))
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        for pid in processes_naming(net):
            os.kill(pid, signal.SIGKILL)
