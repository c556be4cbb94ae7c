"""``botc status`` as a user sees it: with no server, one line naming the URL it tried; and
``healthy`` only when the authority set tolerates a fault and every authority keeps up."""

from __future__ import annotations

import json

import pytest

from bus.server import reserve_port
from peers.cli import main
from peers.cli.status import BEHIND_BLOCKS
from peers.ledger_client import LedgerClient
from peers.logging import configure_logging
from peers.netdir import create_network
from rfq.queries import StatusReply


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


def status_reply(authority: str, height: int, authorities, candidates=()) -> StatusReply:
    return StatusReply(
        authority=authority,
        height=height,
        last_hash="00" * 32,
        last_block_ms=1_700_000_000_000,
        authorities=tuple(authorities),
        candidates=tuple(candidates),
        governance=(),
        mempool=0,
        is_authority=authority in authorities,
    )


def answers_for(heights: dict[str, int | None], authorities, candidates=()) -> dict[str, object]:
    """What ``ask_all`` gives: a reply per answering member, an error string for the rest."""
    return {
        member: "no responders"
        if height is None
        else status_reply(member, height, authorities, candidates)
        for member, height in heights.items()
    }


@pytest.fixture
def ask(monkeypatch):
    """``botc status`` against canned answers instead of a running network."""

    class NoBus:
        async def close(self) -> None:
            pass

    async def no_bus(*args, **kwargs):
        return NoBus()

    canned: dict[str, object] = {}

    async def ask_all(self, query, *, timeout=2.0):
        return canned

    monkeypatch.setattr("peers.runtime.open_bus", no_bus)
    monkeypatch.setattr(LedgerClient, "ask_all", ask_all)
    return canned


def status(capsys, net, *flags: str) -> tuple[int, str]:
    code = main(["status", "--net", str(net.path), *flags])
    return code, capsys.readouterr().out


FOUR = ("CCP", "D1", "D2", "D3")
THREE = ("CCP", "D1", "D2")


def test_three_authorities_and_no_candidates_are_not_healthy(net, ask, capsys):
    ask.update(answers_for({"CCP": 9, "D1": 9, "D2": 9, "D3": 9, "G1": None}, THREE))
    code, out = status(capsys, net)
    assert code == 1
    assert out.splitlines()[-1] == "degraded: 3 authorities tolerate 0 faulty, no candidates"
    code, out = status(capsys, net, "--json")
    report = json.loads(out)
    assert code == 1 and report["healthy"] is False
    assert {"healthy", "authorities", "candidates", "nodes", "governance"} <= set(report)
    assert report["authorities"] == list(THREE) and report["tolerates"] == 0
    assert report["quorum"] is True


def test_three_authorities_name_the_candidates_that_could_join(net, ask, capsys):
    ask.update(answers_for({"CCP": 9, "D1": 9, "D2": 9, "G1": 9}, THREE, ("G1",)))
    code, out = status(capsys, net)
    assert code == 1
    assert out.splitlines()[-1] == "degraded: 3 authorities tolerate 0 faulty, candidates G1"


def test_four_authorities_keeping_up_are_healthy(net, ask, capsys):
    ask.update(answers_for({"CCP": 9, "D1": 9, "D2": 8, "D3": 9, "G1": None}, FOUR, ("G1",)))
    code, out = status(capsys, net)
    assert code == 0
    assert out.splitlines()[-1] == "healthy: 4 authorities tolerate 1 faulty"
    code, out = status(capsys, net, "--json")
    assert code == 0 and json.loads(out)["healthy"] is True  # a candidate down is no fault


def test_an_authority_not_answering_is_named_and_not_healthy(net, ask, capsys):
    ask.update(answers_for({"CCP": 9, "D1": 9, "D2": 9, "D3": None, "G1": 9}, FOUR, ("G1",)))
    code, out = status(capsys, net)
    assert code == 1
    assert "  D3     DOWN (no responders)" in out
    assert out.splitlines()[-1] == "degraded: D3 not answering"
    assert json.loads(status(capsys, net, "--json")[1])["healthy"] is False


def test_an_authority_behind_is_named_and_not_healthy(net, ask, capsys):
    behind = 30 - BEHIND_BLOCKS - 1
    ask.update(answers_for({"CCP": 30, "D1": 30, "D2": behind, "D3": 29, "G1": 30}, FOUR))
    code, out = status(capsys, net)
    assert code == 1
    assert out.splitlines()[-1] == f"degraded: D2 behind (height {behind} of 30)"
    assert json.loads(status(capsys, net, "--json")[1])["problems"] == [
        f"D2 behind (height {behind} of 30)"
    ]


def test_no_quorum_is_unhealthy(net, ask, capsys):
    ask.update(answers_for({"CCP": 9, "D1": 9, "D2": None, "D3": None, "G1": None}, FOUR))
    code, out = status(capsys, net)
    assert code == 1
    assert out.splitlines()[-1].startswith("UNHEALTHY: 2 of 4 authorities answer, a quorum is 3")
