"""``botc status`` as a user sees it: with no server, one line naming the URL it tried; and
``healthy`` only when the authority set tolerates a fault and every authority keeps up."""

from __future__ import annotations

import pytest

from bus.server import reserve_port
from peers.cli import main
from peers.logging import configure_logging
from peers.netdir import create_network


@pytest.fixture(autouse=True)
def logging_back_to_stderr():
    yield
    configure_logging("info")


@pytest.fixture
def net(tmp_path):
    return create_network(tmp_path / "net")


def test_no_server_is_one_line_naming_the_url_tried(net, capsys):
    url = f"nats://127.0.0.1:{reserve_port()}"
    code = main(["status", "--net", str(net.path), "--servers", url])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("botc status: error:") and url in lines[0]
    assert "nats_error" not in err


def test_no_server_at_the_run_files_url_is_named_too(net, capsys):
    url = f"nats://127.0.0.1:{reserve_port()}"
    net.write_run_file([url])
    code = main(["status", "--net", str(net.path), "--json"])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and url in err
