"""``botc up`` as a user runs it: real processes, a fresh network."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
