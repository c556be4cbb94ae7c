"""The README's first hour matches what the code does: the set-up commands in a virtual
environment, where the default network lives, where the terminal logs, every ``botc up``
option, and ``botc init``'s bounds."""

from __future__ import annotations

import re
from pathlib import Path

from peers.cli import build_parser
from peers.marketplace import default_netdir
from peers.netdir import (
    MAX_CLIENTS,
    MAX_DEALERS,
    MAX_GUARANTORS,
    MIN_CLIENTS,
    MIN_DEALERS,
    MIN_GUARANTORS,
    NetDir,
)

README = (Path(__file__).parents[3] / "README.md").read_text()
VENV = "python3 -m venv .venv && . .venv/bin/activate"


def command_row(command: str) -> str:
    return next(line for line in README.splitlines() if line.startswith(f"| `botc {command} "))


def sh_blocks() -> list[list[str]]:
    return [block.strip().splitlines() for block in re.findall(r"```sh\n(.*?)```", README, re.S)]


def test_both_set_up_commands_run_in_a_virtual_environment():
    blocks = sh_blocks()
    for command in ("pip install -e . && botc up", "pip install -e '.[test]' && pytest"):
        block = next(b for b in blocks if command in b)
        assert block.index(VENV) < block.index(command), block


def test_the_default_network_directory_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    named = "~/" + str(default_netdir().relative_to(tmp_path))
    assert named == "~/.local/share/botc/network"
    assert f"`{named}`" in README


def test_the_terminal_log_is_where_both_botc_up_and_botc_tui_write_it(tmp_path):
    log = NetDir(tmp_path).terminal_log("ID").relative_to(tmp_path)
    assert f"`NETDIR/{log}`" in README
    assert "data/ID/tui.log" not in README and "logs/tui.log" not in README


def test_the_up_row_lists_every_option_of_botc_up():
    row = command_row("up")
    up = next(
        action.choices["up"]
        for action in build_parser()._actions
        if getattr(action, "choices", None) and "up" in action.choices
    )
    for action in up._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert flag in row, flag


def test_the_init_row_states_the_bounds():
    row = command_row("init")
    assert f"--dealers {MIN_DEALERS}..{MAX_DEALERS}" in row
    assert f"--clients {MIN_CLIENTS}..{MAX_CLIENTS}" in row
    assert f"--guarantors {MIN_GUARANTORS}..{MAX_GUARANTORS}" in row
