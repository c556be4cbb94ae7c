"""``botc up`` keeps running while a new member is admitted: its server is never restarted,
and the member's own ``botc dealer`` connects once the chain has admitted it."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


UP = (sys.executable, "-m", "peers.cli", "up")


def botc(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peers.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return out


def wait_for_line(lines: queue.Queue[str], needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} within {timeout}s")


def test_a_dealer_admitted_while_botc_up_runs_connects_without_a_server_restart(tmp_path: Path):
    net = tmp_path / "net"
    assert botc("init", str(net)).returncode == 0
    up = subprocess.Popen(
        [*UP, "--net", str(net), "--headless", "--clients", "1", "--duration", "90"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    dealer = None
    try:
        up_lines = lines_of(up)
        wait_for_line(up_lines, "marketplace ready", 90)
        pid_file = net / "data" / "nats" / "n1.pid"
        server_pid = pid_file.read_text()
        made = botc("keygen", "--id", "D4", "--role", "dealer", str(net / "keys"))
        assert made.returncode == 0, made.stderr
        admitted = botc(
            "regulator", "--net", str(net), "admit", str(net / "keys" / "D4.identity.json")
        )
        assert admitted.returncode == 0, admitted.stderr[-2000:]
        assert json.loads(admitted.stdout)["ok"]
        started = time.monotonic()
        dealer = subprocess.Popen(
            [sys.executable, "-m", "peers.cli", "dealer", "--net", str(net), "--id", "D4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        wait_for_line(lines_of(dealer), "dealer D4 quoting", 30)
        assert time.monotonic() - started < 30
        assert pid_file.read_text() == server_pid  # the same nats-server process
        assert up.poll() is None  # the marketplace ran on throughout
    finally:
        for proc in (dealer, up):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
