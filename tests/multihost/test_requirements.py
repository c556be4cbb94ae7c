"""What the harness needs is named, never skipped over; leftovers of a crashed run go."""

from __future__ import annotations

import os
import subprocess

import pytest

from . import netns
from .netns import (
    PREFIX,
    cleanup_leftovers,
    missing_requirements,
    namespaces,
    requirements_message,
)


def test_a_machine_without_root_ip_or_tc_is_told_what_is_missing(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(netns.shutil, "which", lambda tool: None if tool == "tc" else "/x")
    assert missing_requirements() == [
        "root (network namespaces need CAP_NET_ADMIN; run pytest as root)",
        "the 'tc' command (package iproute2)",
    ]


def test_the_hosts_fixture_fails_with_one_line_naming_it(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda tool: None if tool == "ip" else "/x")
    assert requirements_message() == (
        "the multi-host harness needs the 'ip' command (package iproute2)"
    )
    monkeypatch.setattr(netns.shutil, "which", lambda tool: "/x")
    assert requirements_message() is None


@pytest.mark.multihost
def test_the_namespaces_of_a_crashed_run_are_removed_and_a_live_runs_kept():
    missing = requirements_message()
    if missing:
        pytest.fail(missing, pytrace=False)
    dead = subprocess.Popen(["true"])
    dead.wait()
    crashed, live = f"{PREFIX}{dead.pid}-leftover", f"{PREFIX}{os.getpid()}-live"
    for ns in (crashed, live):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        removed = cleanup_leftovers()
        assert crashed in removed and crashed not in namespaces()
        assert live in namespaces()
    finally:
        for ns in (crashed, live):
            subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)
