"""``botc soak`` as a user runs it: a short soak of a fresh network, bad input, Ctrl-C.

The two-day soak asserts ``ok``: while the ledger has known defects (the soak finds them), it
fails with the violations it found, which is what it is for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peers.soak import INVARIANTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BOTC = [sys.executable, "-m", "peers.cli"]


def soak(*args: str, timeout: float = 170) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BOTC, "soak", *args], capture_output=True, text=True, timeout=timeout)


def test_a_two_day_soak_of_three_clients_reports_every_invariant_and_holds():
    done = soak("--days", "2", "--day-seconds", "20", "--clients", "3", "--json")
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report = json.loads(done.stdout)
    for key in (
        "ok", "violations", "days", "trades", "defaults", "height", "restarts", "tx_per_s",
        "finality_p50_ms", "finality_p99_ms", "rss_mb", "checks", "interrupted",
    ):  # fmt: skip
        assert key in report, key
    assert set(report["checks"]) == set(INVARIANTS)
    assert report["days"] == 2 and report["interrupted"] is False
    assert report["trades"] > 0 and report["height"] > 0
    assert report["restarts"] >= 1 and report["kill"]["back_after_s"] is not None
    assert report["finality_p50_ms"] is not None and report["tx_per_s"] > 0
    assert {"start", "end"} <= set(report["rss_mb"]["authority-D1"])
    assert [c["conduct"] for c in report["clients"]] == ["on_time", "late", "failing"]
    for violation in report["violations"]:
        assert set(violation) == {"invariant", "height", "ids", "detail"}
        assert violation["invariant"] in INVARIANTS
    for default in report["defaults"]:
        assert default["member"] and default["cause"]
    assert not Path(report["net"]).exists()  # the fresh network is removed
    assert report["ok"] and done.returncode == 0, json.dumps(report["violations"], indent=1)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--days", "0"], "--days"),
        (["--clients", "0"], "--clients"),
        (["--day-seconds", "0"], "--day-seconds"),
        (["--day-seconds", "-3"], "--day-seconds"),
        (["--clients", "9"], "--clients"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_naming_the_problem(args, named, tmp_path):
    subprocess.run([*BOTC, "init", str(tmp_path / "net")], check=True, capture_output=True)
    done = soak("--net", str(tmp_path / "net"), *args, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in done.stderr


def test_a_directory_that_is_not_a_network_exits_2_with_one_line(tmp_path):
    done = soak("--net", str(tmp_path), timeout=60)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert str(tmp_path) in line


def test_ctrl_c_stops_every_process_and_still_prints_the_report(tmp_path):
    process = subprocess.Popen(
        [*BOTC, "soak", "--days", "5", "--day-seconds", "20", "--json", "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 90
    for line in process.stderr:
        if "marketplace ready" in line or time.monotonic() > deadline:
            break
    time.sleep(3)  # a little trading
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=90)
    report = json.loads(out)
    net = Path(report["kept"])
    try:
        assert process.returncode in (1, 130)
        assert report["interrupted"] is True
        assert report["checks"]["views_match_chain"].startswith("skipped")
        assert report["height"] > 0
        assert not (net / "run" / "nats.json").exists()
        assert not _processes_using(net), "a process of the soak outlived it"
    finally:
        import shutil

        shutil.rmtree(net.parent, ignore_errors=True)


def _processes_using(net: Path) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(net) in cmdline:
            found.append(f"{pid}: {cmdline[:120]}")
    return found
