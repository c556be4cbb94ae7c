"""Running ``botc`` in process, as the CLI tests do: its exit code and output, and the one line
a refusal must be."""

from __future__ import annotations

import pytest

from peers.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``botc ARGV``: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    """The single line of ``err``; fails on a traceback or more than one line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]
