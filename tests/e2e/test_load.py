"""``botc load`` as its own process against a live marketplace: its summary is the chain's,
a SIGTERM stops it at once (even with trades waiting for a receipt), bad input exits 2."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rfq.queries import TradesQuery, TradesReply

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIMULATED = ("C3", "C4")


async def start_load(network, *args: str) -> asyncio.subprocess.Process:
    excluded = [a for c in ("C1", "C2", "C5") for a in ("--exclude", c)]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "peers.cli",
        "load",
        "--net",
        str(network.path),
        "--clients",
        str(len(SIMULATED)),
        *excluded,
        "--json",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def load_events(path: Path) -> list[str]:
    """The events ``botc load --events-file`` has written so far (whole lines only)."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines(keepends=True)
    return [json.loads(line)["event"] for line in lines if line.endswith("\n")]


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_botc_load_sends_its_rfqs_and_its_committed_count_is_the_chains(marketplace, network):
    proc = await start_load(network, "--rfqs", "6")
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary["rfqs"] == 6
    assert summary["committed"] >= 1
    assert summary["quotes"] >= summary["accepts"] >= summary["committed"]
    assert summary["unconfirmed_at_stop"] == 0
    reply = await marketplace.reg.query(TradesQuery(limit=1000))
    assert isinstance(reply, TradesReply)
    on_chain = [t for t in reply.trades if t.client in SIMULATED]
    assert len(on_chain) == summary["committed"]


async def test_a_sigterm_stops_botc_load_at_once_even_while_it_waits_for_receipts(
    marketplace, network
):
    """Two of four authorities stop, so accepted trades cannot be final: the simulated
    clients sit waiting for receipts (up to 30 s each) when the SIGTERM comes."""
    for member in ("D2", "D3"):
        await marketplace.nodes.pop(member).stop()
    events = network.path / "load-events.jsonl"
    proc = await start_load(
        network, "--duration", "120", "--rate", "4", "--events-file", str(events)
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.startswith(b"simulating 2 clients")
        # The SIGTERM comes once a simulated client has accepted (it then waits for a receipt
        # that cannot come: the accepted event is written just before that wait begins).
        await until(lambda: "accepted" in load_events(events), 90, "a simulated client's accept")
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary["accepts"] >= 1
    assert summary["committed"] == 0
    assert summary["unconfirmed_at_stop"] >= 1
    assert proc.returncode == 1, err.decode()[-2000:]  # accepts, none committed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clients", "0", "--rfqs", "1"], "--clients must be at least 1"),
        (["--clients", "9", "--rfqs", "1"], "has 5 clients, --clients asks 9"),
        (["--clients", "1"], "give --rfqs or --duration"),
        (["--clients", "1", "--rfqs", "0"], "--rfqs and --rate must be positive"),
        (["--id", "D1", "--rfqs", "1"], "--id D1: not a client of"),
    ],
)
def test_bad_botc_load_arguments_exit_2_naming_the_problem(network, args, message):
    done = subprocess.run(
        [sys.executable, "-m", "peers.cli", "load", "--net", str(network.path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
