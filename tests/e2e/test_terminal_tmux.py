"""``botc up`` in a real terminal (tmux): a person trades from the keyboard."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from rfq.instruments import listed_futures

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def pane(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-t", session, "-p"], capture_output=True, text=True
    ).stdout


def wait_for_text(session: str, text: str, timeout: float, logs: Path | None = None) -> float:
    started = time.monotonic()
    while text not in pane(session):
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"{text!r} not on screen after {timeout}s:\n{pane(session)}\n{tails(logs)}"
            )
        time.sleep(0.25)
    return time.monotonic() - started


def tails(logs: Path | None) -> str:
    """The last lines of every service's output, to see why a screen never came."""
    if logs is None or not logs.exists():
        return ""
    return "\n".join(
        f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-4:])
        for f in sorted(logs.iterdir())
    )


def alive(session: str) -> bool:
    return (
        subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0
    )


def test_a_client_trades_from_the_terminal_botc_up_opens(tmp_path: Path):
    assert shutil.which("tmux"), "tmux is needed for this test (apt-get install tmux)"
    net = tmp_path / "net"
    subprocess.run(
        [sys.executable, "-m", "peers.cli", "init", str(net)], check=True, capture_output=True
    )
    session = f"botc-{uuid.uuid4().hex[:8]}"
    # pytest exports COLUMNS/LINES (80x24), which Textual would obey over the pane's size.
    command = f"env -u COLUMNS -u LINES {sys.executable} -m peers.cli up --net {net} --clients 0"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "45", command], check=True
    )
    try:
        ready = wait_for_text(session, "Send RFQ", 60, net / "logs")
        print(f"terminal ready {ready:.1f}s after botc up")
        # The market watch lists the months trading on the business date botc up starts
        # from (today); HC's front month shows in no ticket field, only in the watch.
        front = listed_futures("HC", dt.date.today())[0].id
        wait_for_text(session, front, 20, net / "logs")
        subprocess.run(["tmux", "send-keys", "-t", session, "C-s"], check=True)
        wait_for_text(session, "3/3 answered", 20, net / "logs")
        screen = pane(session)
        assert "★ best" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "b"], check=True)
        wait_for_text(session, "Trade final at height", 30, net / "logs")
        subprocess.run(["tmux", "send-keys", "-t", session, "F3"], check=True)
        wait_for_text(session, "My contracts", 10)
        assert "live" in pane(session)
        subprocess.run(["tmux", "send-keys", "-t", session, "C-q"], check=True)
        deadline = time.monotonic() + 30
        while alive(session) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert not alive(session), "botc up did not exit after the terminal quit"
        leftover = subprocess.run(["pgrep", "-f", str(net)], capture_output=True, text=True)
        assert leftover.stdout.strip() == "", "services outlived botc up"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
