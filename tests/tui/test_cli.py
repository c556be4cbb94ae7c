"""``botc tui``: bad members and directories are one line and exit 2; logs go to a file."""

from __future__ import annotations

import pytest

from peers.cli import main
from peers.logging import configure_logging
from tui.app import BotcApp


@pytest.fixture(autouse=True)
def logging_back_to_stderr():
    """``botc`` configures logging for the process: put it back for the tests that follow."""
    yield
    configure_logging("info")


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_an_unknown_member_is_one_line_and_exit_code_2(network, capsys):
    assert main(["tui", "--net", str(network.path), "--as", "C9"]) == 2
    line = one_line_error(capsys)
    assert line.startswith("botc tui: error:")
    assert "no member 'C9'" in line


def test_a_directory_that_is_not_a_network_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert main(["tui", "--net", str(tmp_path / "nowhere"), "--as", "C1"]) == 2
    assert "no such directory" in one_line_error(capsys)
    (tmp_path / "empty").mkdir()
    assert main(["tui", "--net", str(tmp_path / "empty"), "--as", "C1"]) == 2
    assert "not a B-OTC network" in one_line_error(capsys)


def test_a_member_without_a_terminal_mode_is_refused(network, capsys):
    assert main(["tui", "--net", str(network.path), "--as", "ORACLE"]) == 2
    assert "runs as a client, a dealer or the regulator" in one_line_error(capsys)


def test_the_terminal_logs_to_a_file_never_to_the_screen(network, tmp_path, monkeypatch, capsys):
    started: list[BotcApp] = []

    def run_headless(app: BotcApp) -> int:
        started.append(app)
        import structlog

        structlog.get_logger("tui").info("terminal_started", member=app.member_id)
        return 0

    monkeypatch.setattr(BotcApp, "run", run_headless)
    log_file = tmp_path / "c1.log"
    argv = ["tui", "--net", str(network.path), "--as", "C1", "--log-file", str(log_file)]
    assert main([*argv, "--servers", "nats://127.0.0.1:4999", "--poll", "0.5"]) == 0
    [app] = started
    assert (app.mode, app.servers, app.poll_s) == ("client", ["nats://127.0.0.1:4999"], 0.5)
    assert "terminal_started" in log_file.read_text()
    assert "terminal_started" not in capsys.readouterr().err

    assert main(["tui", "--net", str(network.path), "--as", "D1", "--manual"]) == 0
    assert started[-1].mode == "dealer" and started[-1].auto_quote is False
    assert (network.path / "logs" / "tui-D1.log").exists()  # beside botc up's logs


def test_help_names_the_options(capsys):
    with pytest.raises(SystemExit) as done:
        main(["tui", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option in ("--net", "--as", "--servers", "--log-file", "--manual"):
        assert option in text


def test_the_services_never_import_the_terminal_it_registers_its_own_command():
    """peers, bus and rfq do not import tui: `botc tui` comes from the terminal's entry
    point, and `botc up` finds the terminal the same way."""
    import ast
    from pathlib import Path

    from peers.cli import plugin_commands

    root = Path(__file__).parents[2]
    offenders = []
    for package in ("peers", "bus", "rfq"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                offenders += [f"{path}: {n}" for n in names if n == "tui" or n.startswith("tui.")]
    assert offenders == []
    assert plugin_commands()["tui"].__name__ == "tui.cli"
