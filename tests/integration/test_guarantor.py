"""The guarantor peer and ``botc guarantor`` against four authorities over a real nats-server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys

import pytest

from peers.cli import main
from peers.guarantor import GuarantorError, GuarantorService, asset_id
from peers.ledger_client import LedgerClient
from rfq.money import to_micros as M
from rfq.queries import GuaranteesQuery

from .chainkit import TxFactory, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration

RECEIPT = "warehouse receipt WR-2026-118"


def botc(*argv: str):
    return asyncio.to_thread(main, list(argv))


async def test_guarantor_g1_grants_client_c1_a_line_with_botc_and_the_same_asset_twice_is_refused(
    network, nats_server, bus_factory, capsys
):
    nodes = await start_authorities(network, bus_factory)
    async with LedgerClient(await bus_factory("REG"), network.genesis()) as reg:
        net = str(network.path)
        grant = ("guarantor", "--net", net, "--id", "G1", "grant", "--client", "C1")
        pledge = ("--line", "1e6", "--asset", RECEIPT, "--asset-value", "2e6")
        capsys.readouterr()

        assert await botc(*grant, *pledge, "--id", "g1") == 0
        assert capsys.readouterr().out.startswith(
            "ok: guarantee g1 for C1, line 1,000,000.00 against asset"
        )
        [g1] = (await reg.query(GuaranteesQuery())).guarantees
        assert (g1.id, g1.guarantor, g1.client, g1.line, g1.asset_value) == (
            "g1",
            "G1",
            "C1",
            M(1e6),
            M(2e6),
        )
        assert g1.asset_id == hashlib.sha256(RECEIPT.encode()).hexdigest() == asset_id(RECEIPT)

        assert await botc(*grant, *pledge, "--id", "g2") == 1
        assert capsys.readouterr().out.strip() == "refused: asset already pledged to guarantee g1"

        assert (
            await botc("guarantor", "--net", net, "--id", "G1", "revoke", "--guarantee", "g1") == 0
        )
        assert capsys.readouterr().out.startswith("ok: guarantee g1 revoked")
        again = ("guarantor", "--net", net, "--id", "G1", "revoke", "--guarantee", "g1", "--json")
        assert await botc(*again) == 1
        refused = json.loads(capsys.readouterr().out)
        assert refused["ok"] is False and refused["reason"] == "guarantee g1 is already revoked"

        assert await botc(*grant, *pledge, "--id", "g2") == 0  # the asset is free again
        capsys.readouterr()
        assert await botc("guarantor", "--net", net, "--id", "G1", "lines", "--json") == 0
        lines = json.loads(capsys.readouterr().out)
        assert {g["id"]: g["status"] for g in lines["lines"]} == {"g1": "revoked", "g2": "live"}
        assert lines["exposure"]["outstanding"] == 1e6
        assert {g["id"]: (g["line"], g["asset_value"]) for g in lines["lines"]}["g2"] == (1e6, 2e6)
        assert lines["exposure"]["free_capacity"] == 3e8 - 1e6
        for node in nodes.values():
            await node.stop()


async def test_guarantor_g1s_monitor_sees_its_line_cover_client_c1s_initial_margin(
    network, nats_server, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    async with GuarantorService(
        await bus_factory("G1"), network.genesis(), poll_s=0.2
    ) as guarantor:
        receipt = await guarantor.grant(
            "C1", line=10_000.0, asset=RECEIPT, asset_value=20_000.0, guarantee_id="g1"
        )
        assert receipt.ok, receipt.reason
        await submit(await bus_factory("C1"), [TxFactory(network).trade("r1", client="C1")])
        await wait_for(
            lambda: "g1" in guarantor.lines and guarantor.lines["g1"].allocated > 0,
            timeout=20,
            what="the line allocated to r1's initial margin",
        )
        line = guarantor.lines["g1"]
        assert line.allocated == M(10_000) and line.available == 0 and line.paid == 0
        exposure = guarantor.exposure()
        assert (exposure.outstanding, exposure.allocated, exposure.live_lines) == (1e4, 1e4, 1)
        revoke = await guarantor.revoke("g1")
        assert not revoke.ok
        assert revoke.reason == "guarantee g1 covers margin of live trades (10000.0)"
    assert guarantor.status == "closed"
    for node in nodes.values():
        await node.stop()


async def test_botc_guarantor_with_its_node_follows_the_chain_and_logs_its_new_line(
    network, nats_server, bus_factory, capsys
):
    nodes = await start_authorities(network, bus_factory)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "peers.cli", "guarantor", "--net", str(network.path)),
        *("--id", "G1", "--node", "--poll-s", "0.2"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        banner = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert banner.decode().startswith("guarantor G1 following its lines (capacity 3e+08")
        capsys.readouterr()
        grant = ("guarantor", "--net", str(network.path), "--id", "G1", "grant")
        assert (
            await botc(
                *grant,
                "--client",
                "C2",
                *("--line", "5e5", "--asset", RECEIPT),
                *("--asset-value", "1e6", "--id", "g-c2"),
            )
            == 0
        )
        seen = None
        for _ in range(100):
            line = await asyncio.wait_for(proc.stderr.readline(), 20)
            event = json.loads(line) if line.startswith(b"{") else {}
            if event.get("event") == "line_seen" and event.get("guarantee") == "g-c2":
                seen = event
                break
        assert seen is not None
        assert (seen["line"], seen["available"], seen["allocated"], seen["paid"]) == (
            5e5,
            5e5,
            0.0,
            0.0,
        )
        observer = LedgerClient(await bus_factory("REG"), network.genesis(), authorities=["G1"])
        async with observer as g1:
            status = await g1.chain_status()  # G1's own node answers: an observer at the tip
        assert status.authority == "G1" and not status.is_authority
        assert status.height >= nodes["CCP"].head.height - 1
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 20)  # drain the pipes while it stops
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    for node in nodes.values():
        await node.stop()


async def test_guarantor_input_is_checked_before_anything_is_submitted(
    network, nats_server, bus_factory
):
    g1 = GuarantorService(await bus_factory("G1"), network.genesis())
    for bad in (
        {"line": -5.0, "asset": RECEIPT, "asset_value": 1.0},
        {"line": 5.0, "asset": "  ", "asset_value": 1.0},
        {"line": 5.0, "asset": RECEIPT, "asset_value": float("nan")},
    ):
        with pytest.raises(GuarantorError):
            await g1.grant("C1", **bad)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--id", "G1", "grant", "--client", "C1", "--line", "-1", *("--asset", "x")], "line"),
        (["--id", "G1", "grant", "--client", "D1", "--line", "1", *("--asset", "x")], "D1 is a"),
        (["--id", "C1", "revoke", "--guarantee", "g1"], "C1 is a client, not a guarantor"),
        (["--id", "G9", "lines"], "no member 'G9'"),
    ],
)
def test_botc_guarantor_refuses_bad_input_in_one_line(network, capsys, argv, message):
    if "grant" in argv:
        argv = [*argv, "--asset-value", "10"]
    assert main(["guarantor", "--net", str(network.path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
