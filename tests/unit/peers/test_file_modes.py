"""Files a network's processes write are their owner's alone (0600, directories 0700)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path


def botc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peers.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_everything_botc_writes_under_the_network_is_readable_by_its_owner_only(tmp_path):
    net = tmp_path / "net"
    assert botc("init", str(net)).returncode == 0
    log = net / "logs" / "status.log"
    botc("--log-file", str(log), "status", "--net", str(net), "--servers", "nats://127.0.0.1:1")
    assert log.exists()
    loose = [
        f"{path}: {stat.filemode(path.stat().st_mode)}"
        for path in [net, *Path(net).rglob("*")]
        if path.stat().st_mode & 0o077
    ]
    assert loose == []
