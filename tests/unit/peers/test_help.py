"""Every ``botc ... --help`` is written for users: it works, and it carries no reStructuredText
markup or pointers into the code meant for developers."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from peers.cli import build_parser, main


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple]:
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


EVERY_COMMAND = list(commands(build_parser()))


def test_the_walk_finds_every_command_and_subcommand():
    names = {" ".join(path) for path in EVERY_COMMAND}
    assert {"init", "up", "status", "bench", "bench chain", "chain verify", "tui"} <= names
    assert {"regulator nominate", "guarantor grant", "risk saccr", "contract run"} <= names
    assert len(names) >= 30


@pytest.mark.parametrize("path", EVERY_COMMAND, ids=lambda path: " ".join(path) or "botc")
def test_help_is_plain_words_for_users(path, capsys):
    with pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: botc")
    assert "``" not in text
    assert not re.search(r"\b(peers|rfq|bus|tui)[./][a-z_]+", text), "a path into the code"
    assert "add_arguments" not in text and "-> int" not in text
