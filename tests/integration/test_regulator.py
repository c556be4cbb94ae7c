"""The regulator's live monitor over a real nats-server and four in-process authorities.

C1 (threshold 100,000) keeps buying 100 t of rebar at 3200 from D1 (capital 150,000). With no
fixing yet each trade adds SA-CCR EAD 1.4 x 18% x 320,000 x 0.3 = 24,192 both ways (margined,
MPOR 10 days), so the fifth trade takes C1 past its threshold; C1's default would then cost D1
60% of 120,960 = 72,576, leaving 77,424 of capital against the 120,960 D1 owes C1: D1 falls too.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from pathlib import Path

import msgspec
import pytest

from bus import subjects
from bus.envelope import Channel, Received
from peers.genesis import genesis_text
from peers.netdir import NetDir, create_network
from peers.regulator import RegulatorService
from rfq.genesis import seal_genesis
from rfq.queries import (
    ALERT_ROLES,
    REGULATOR_REPLY_ROLES,
    QueryRefused,
    RegulatorReply,
    RiskAlert,
    RiskQuery,
    RiskReply,
    WhatIfQuery,
    WhatIfReply,
)

from .chainkit import TxFactory, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration

ONE_TRADE = 1.4 * 0.18 * 320_000 * 0.3  # 24,192
ALERTS: Channel[RiskAlert] = Channel.of("alerts", RiskAlert, ALERT_ROLES)
REPLIES: Channel[RegulatorReply] = Channel.of("reg_reply", RegulatorReply, REGULATOR_REPLY_ROLES)


@pytest.fixture
def network(tmp_path: Path) -> NetDir:
    """The usual network, with C1's alert threshold at 100,000 and D1 thinly capitalised."""
    net = create_network(tmp_path / "net", dealers=3, clients=3)
    genesis = net.genesis()
    members = []
    for m in genesis.members:
        if m.id == "C1":
            m = msgspec.structs.replace(m, ccr_threshold=100_000.0)
        elif m.id == "D1":
            m = msgspec.structs.replace(m, capital=150_000.0)
        members.append(m)
    genesis = seal_genesis(
        msgspec.structs.replace(genesis, members=tuple(members)), net.identity("REG")
    )
    net.genesis_path.write_text(genesis_text(genesis))
    return NetDir(net.path)


def _row(service: RegulatorService, who: str):
    return service.assessment.row(who) if service.assessment else None


def _open(service: RegulatorService, who: str) -> int:
    row = _row(service, who)
    return row.open_contracts if row else -1


async def test_c1s_growing_book_raises_one_alert_with_its_cascade_and_the_risk_tables_show_it(
    nats_server, network, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    genesis = network.genesis()
    service = await RegulatorService(await bus_factory("REG"), genesis, poll_s=0.2).start()
    heard: list[RiskAlert] = []

    async def on_alert(received: Received[RiskAlert], msg) -> None:
        heard.append(received.payload)

    # Only the regulator may read otc.risk.alert (netdir permissions): its terminal listens.
    terminal = await bus_factory("REG")
    await terminal.subscribe(subjects.RISK_ALERTS, ALERTS, on_alert)
    await terminal.flush()

    factory = TxFactory(network)
    c1, c2 = await bus_factory("C1"), await bus_factory("C2")
    await submit(c1, [factory.trade(f"c1-{i}") for i in range(4)])
    await submit(c2, [factory.trade("c2-0", client="C2", dealer="D2")])
    await wait_for(
        lambda: _open(service, "C1") == 4 and _open(service, "C2") == 1, what="four C1 trades"
    )
    # its first whole read froze what it holds: a full collection no longer walks the state
    assert gc.get_freeze_count() > 0
    gc.unfreeze()
    row = _row(service, "C1")
    assert row.ead == pytest.approx(4 * ONE_TRADE)  # 96,768: below 100,000
    assert not row.alert and not heard and not service.alerts

    await submit(c1, [factory.trade("c1-4")])
    await wait_for(lambda: heard, what="the alert on otc.risk.alert")
    [alert] = heard
    assert alert.institution == "C1"
    assert alert.ead == pytest.approx(5 * ONE_TRADE)
    assert alert.threshold == 100_000.0
    assert alert.cascade_rounds == (("C1",), ("D1",))
    assert alert.cascade_defaulted == ("D1", "C1")  # in the genesis order of members
    assert list(service.alerts) == [alert]

    # A sixth trade keeps C1 above its threshold: no second alert for the same crossing.
    await submit(c1, [factory.trade("c1-5")])
    await wait_for(lambda: _open(service, "C1") == 6, what="the sixth trade")
    assert len(service.alerts) == 1  # decided in the refresh that counted the sixth trade
    # A round trip to the regulator on the listening connection: an alert it published before
    # answering would have arrived first (one publisher's messages reach a subscriber in order).
    await terminal.request(subjects.query("REG"), RiskQuery(), REPLIES)
    assert len(heard) == 1

    # G1 (authority-eligible) reads the whole table; C1 is flagged.
    g1 = await bus_factory("G1")
    reply = (await g1.request(subjects.query("REG"), RiskQuery(), REPLIES)).payload
    assert isinstance(reply, RiskReply)
    rows = {r.institution: r for r in reply.rows}
    assert {"C1", "C2", "C3", "D1", "D2", "D3", "CCP", "G1"} <= rows.keys()
    assert rows["C1"].alert and rows["C1"].ead == pytest.approx(6 * ONE_TRADE)
    assert rows["C1"].el == pytest.approx(rows["C1"].pd * rows["C1"].ead * rows["C1"].lgd)
    assert (rows["C1"].netting_sets, rows["C1"].open_contracts) == (1, 6)
    assert rows["D1"].ead == pytest.approx(6 * ONE_TRADE) and not rows["D1"].alert
    assert [r.institution for r in reply.rows if r.alert] == ["C1"]
    assert reply.alerts == (alert,)

    what = (await g1.request(subjects.query("REG"), WhatIfQuery(("C1",)), REPLIES)).payload
    assert isinstance(what, WhatIfReply)
    assert what.rounds == (("C1",), ("D1",))
    assert what.losses["D1"] == pytest.approx(0.6 * 6 * ONE_TRADE)
    ranked = await g1.request(subjects.query("REG"), WhatIfQuery(("C1",), "debtrank"), REPLIES)
    assert isinstance(ranked.payload, WhatIfReply) and ranked.payload.model == "debtrank"

    # A client sees its own row and alerts only, and may not run what-if.
    c3 = await bus_factory("C3")
    own = (await c3.request(subjects.query("REG"), RiskQuery(), REPLIES)).payload
    assert isinstance(own, RiskReply)
    assert [r.institution for r in own.rows] == ["C3"] and own.alerts == ()
    refused = (await c3.request(subjects.query("REG"), WhatIfQuery(("C1",)), REPLIES)).payload
    assert isinstance(refused, QueryRefused)

    await service.close()
    for node in nodes.values():
        await node.stop()


async def test_botc_regulator_runs_the_monitor_until_interrupted(nats_server, network, bus_factory):
    nodes = await start_authorities(network, bus_factory)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "peers.cli",
        "regulator",
        "--net",
        str(network.path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert b"regulator REG monitoring 0 live contracts at height" in line
    # it says so once its monitor holds the market: its first answer is an assessment
    g1 = await bus_factory("G1")
    reply = (await g1.request(subjects.query("REG"), RiskQuery(), REPLIES)).payload
    assert isinstance(reply, RiskReply) and reply.rows
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    for node in nodes.values():
        await node.stop()
