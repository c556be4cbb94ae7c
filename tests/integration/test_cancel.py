"""Cancelling an RFQ over a real nats-server: its quotes can no longer be taken."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from bus import subjects
from peers.counterparty import AcceptRefused, ClientSession, RfqHandle
from peers.dealer import DealerBot
from peers.oracle import OracleService, Simulator
from rfq.messages import Quote

from .chainkit import rebar, rebar_swap

pytestmark = pytest.mark.integration


@pytest.fixture
async def client_c1(nats_server, bus_factory, network) -> ClientSession:
    """Client C1's session, with dealers D1 and D2 quoting on one simulated day's prices."""
    genesis = network.genesis()
    oracle = OracleService(await bus_factory("ORACLE"))
    sim = Simulator(start=dt.date.today(), seed=7, ticks_per_day=2)
    oracle.history = {k: list(v) for k, v in sim.history.items()}
    await oracle.start()
    dealers = [await DealerBot(await bus_factory(d), genesis).start() for d in ("D1", "D2")]
    client = await ClientSession(await bus_factory("C1"), genesis).start()
    await client.market.attach(client.bus)
    for price in sim.ticks():
        await oracle.publish(price)
    await oracle.bus.flush()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(rebar() in d.market.latest for d in dealers):
        await asyncio.sleep(0.02)
    return client


async def test_a_quote_of_a_cancelled_rfq_is_refused_and_nothing_is_submitted(client_c1):
    rfq = await client_c1.send_rfq(rebar_swap(dt.date.today()), dealers=["D1", "D2"])
    answers = await rfq.collect()
    assert len(rfq.quotes) == 2, answers
    best = rfq.best()
    assert best is not None and best.valid_until_ms > time.time() * 1000

    await client_c1.cancel(rfq)

    with pytest.raises(AcceptRefused) as refused:
        await client_c1.accept(best)
    assert refused.value.reason == "cancelled"
    assert "cancelled" in str(refused.value)
    assert client_c1.accepted == {}
    assert client_c1.scoreboard.dealers["D1"].trades == 0


def quote_from(dealer: str, rfq: RfqHandle, price: float) -> Quote:
    return Quote(
        id=f"{rfq.id}-{dealer}",
        rfq_id=rfq.id,
        client=rfq.rfq.client,
        dealer=dealer,
        terms=rfq.rfq.terms,
        price=price,
        valid_until_ms=int(time.time() * 1000) + 30_000,
        initial_margin_rate=0.1,
        credit_line=0.0,
    )


async def test_an_answer_that_arrives_after_the_cancel_is_not_taken(client_c1, bus_factory):
    today = dt.date.today()
    cancelled = await client_c1.send_rfq(rebar_swap(today), dealers=["D3"], deadline_s=10)
    probe = await client_c1.send_rfq(rebar_swap(today), dealers=["D3"], deadline_s=10)
    await client_c1.cancel(cancelled)
    d3 = await bus_factory("D3")  # no bot runs for D3: this test answers in its name
    for rfq in (cancelled, probe):  # in this order, on one connection: they arrive in order
        await d3.publish(
            subjects.quote("C1", rfq.id), quote_from("D3", rfq, 3200.0), seal_to=["C1"]
        )
    await d3.flush()
    deadline = time.monotonic() + 5
    while "D3" not in probe.answers and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert "D3" in probe.answers
    assert cancelled.answers == {}
    assert cancelled.best() is None
